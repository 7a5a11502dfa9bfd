"""`python -m dispatch`: the same as the `dispatchd` command."""

from __future__ import annotations

from dispatch.cli import main

if __name__ == "__main__":
    main()
