"""Delivery of the buffer's events to dispatch, through any outage.

- :mod:`forwarder.client`: the signed HTTP client of the dispatch API and the gateway credential;
- :mod:`forwarder.delivery`: the forwarder (batches, back-off, alarms first) and the heartbeat.
"""
