"""The HTTP API (FastAPI): gateway endpoints, operator endpoints, the live stream."""
