"""A centre on SQLite does not load the PostgreSQL driver: a process of its own builds the
application over an SQLite database and runs its start-up, then lists what it loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fixtures.procs import REPO_ROOT, project_env

STARTS_A_CENTRE = """
import asyncio, json, sys
from asgi_lifespan import LifespanManager
import dispatch.cli
from dispatch.api.app import create_app
from dispatch.db import Database
from dispatch.migrations import migrate
from dispatch.settings import Settings

async def main(url):
    db = Database(url)
    await migrate(db)
    async with LifespanManager(create_app(db, Settings(db=url))):
        pass
    print(json.dumps(sorted(name.split(".")[0] for name in sys.modules)))

asyncio.run(main(sys.argv[1]))
"""


def test_a_centre_on_sqlite_loads_no_postgresql_driver(tmp_path: Path) -> None:
    (tmp_path / "dispatch.db").touch()
    url = f"sqlite:///{tmp_path / 'dispatch.db'}"
    result = subprocess.run(
        [sys.executable, "-c", STARTS_A_CENTRE, url],
        capture_output=True,
        text=True,
        timeout=60,
        env=project_env(),
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    assert "dispatch" in loaded
    assert "psycopg" not in loaded
