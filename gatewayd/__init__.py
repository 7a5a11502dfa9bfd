"""gatewayd: the home alarm gateway daemon."""

__version__ = "0.1.0"
