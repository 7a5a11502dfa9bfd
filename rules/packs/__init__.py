"""Rule packs shipped as TOML package data (loaded with importlib.resources)."""
