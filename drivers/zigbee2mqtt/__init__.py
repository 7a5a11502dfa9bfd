"""Zigbee devices through Zigbee2MQTT: the transport, the parser, the bridge's messages, pairing.

- :class:`Zigbee2MqttDriver` (``type = "zigbee2mqtt"``): the MQTT transport and local outputs.
- :class:`Zigbee2MqttParser`: merged device state in, readings of what changed out.
- :mod:`drivers.zigbee2mqtt.pairing`: open the network, await a join and its interview.
"""

from drivers.zigbee2mqtt.bridge import BridgeDevice, BridgeEvent
from drivers.zigbee2mqtt.options import BrokerAddress, Zigbee2MqttOptions
from drivers.zigbee2mqtt.parser import Zigbee2MqttParser
from drivers.zigbee2mqtt.transport import Zigbee2MqttDriver

__all__ = [
    "BridgeDevice",
    "BridgeEvent",
    "BrokerAddress",
    "Zigbee2MqttDriver",
    "Zigbee2MqttOptions",
    "Zigbee2MqttParser",
]
