"""The operator console: a page of plain HTML, CSS and JavaScript served by dispatchd itself.

No build step and nothing from a CDN, so it works on a dispatch centre's LAN with no Internet.
Chart.js (MIT, vendored under ``static/vendor``) draws the report charts: charts done properly
are more than a page of hand-written canvas code.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "mount_console"]

STATIC_DIR = Path(__file__).parent / "static"


def mount_console(app: FastAPI) -> None:
    """Serve the console at ``/`` and its assets under ``/console/``."""
    app.mount("/console", StaticFiles(directory=STATIC_DIR), name="console")

    @app.get("/", include_in_schema=False)
    async def console_index() -> FileResponse:
        # The page itself holds no data; it must still never be served stale after an upgrade.
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})
