"""Troubles and battery telemetry: tamper, low battery, a driver's link.

``tamper`` True/False opens and restores ``tamper:<device>``; ``battery_low``, or a ``battery``
percent below ``battery_low_percent``, opens ``low_battery:<device>``. A ``battery`` reading is
reported at most every ``battery_report_every_s`` per device, and whenever it crosses the
threshold. A driver's ``link`` False/True opens and restores ``driver_fault:<driver>``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from contract.devices import DeviceSpec
from contract.wire import EventKind, Reading
from rules.decisions import Decision, EmitEvent
from rules.state import EngineState, payload

__all__ = ["Troubles"]

K = EventKind


class Troubles:
    def __init__(self, state: EngineState) -> None:
        self.state = state
        self.low_percent = state.rules.battery_low_percent
        self.report_every = timedelta(seconds=state.rules.battery_report_every_s)
        #: Each device's battery_low flag, last percent, and when its battery was last reported.
        self.battery_flag: dict[str, bool] = {}
        self.battery_pct: dict[str, float] = {}
        self.battery_sent: dict[str, datetime] = {}

    def link(self, out: list[Decision], reading: Reading, at: datetime) -> None:
        key = f"driver_fault:{reading.device}"
        detail = {"driver": reading.device, "property": "link", "value": reading.value}
        detail.update({k: v for k, v in reading.extra.items() if k == "reason"})
        if reading.value is False:
            self.state.open(out, K.DRIVER_FAULT, None, key, detail, at)
        elif reading.value is True:
            self.state.restore(out, key, at, detail)

    def tamper(self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime) -> None:
        dev = spec.id
        if reading.value is True:
            self.state.open(out, K.TAMPER, dev, f"tamper:{dev}", payload(spec, reading), at)
        elif reading.value is False:
            self.state.restore(out, f"tamper:{dev}", at, payload(spec, reading))

    def battery_low(
        self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime
    ) -> None:
        if isinstance(reading.value, bool):
            self.battery_flag[spec.id] = reading.value
            self.battery_state(out, spec, reading, at)

    def battery(
        self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime
    ) -> None:
        value = reading.value
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            return
        dev = spec.id
        threshold = self.low_percent
        before = self.battery_pct.get(dev)
        self.battery_pct[dev] = float(value)
        crossed = before is not None and (before < threshold) != (value < threshold)
        last = self.battery_sent.get(dev)
        if crossed or last is None or at - last >= self.report_every:
            self.battery_sent[dev] = at
            detail = payload(spec, reading, low=value < threshold)
            out.append(EmitEvent(K.BATTERY, dev, f"battery:{dev}", detail))
        self.battery_state(out, spec, reading, at)

    def battery_state(
        self, out: list[Decision], spec: DeviceSpec, reading: Reading, at: datetime
    ) -> None:
        dev = spec.id
        flag = self.battery_flag.get(dev)
        pct = self.battery_pct.get(dev)
        low = flag is True or (pct is not None and pct < self.low_percent)
        detail = payload(spec, reading, threshold=self.low_percent)
        if low:
            self.state.open(out, K.LOW_BATTERY, dev, f"low_battery:{dev}", detail, at)
        elif f"low_battery:{dev}" in self.state.active:
            self.state.restore(out, f"low_battery:{dev}", at, detail)
