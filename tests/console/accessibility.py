"""axe-core for the console's browser tests: found under tests/console/axe/, installed there from
its lock file (``npm ci``) when missing, and injected into a page by the test (never served by
dispatchd, never fetched from a CDN).
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

AXE_DIR = Path(__file__).with_name("axe")
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
#: The impacts that fail a page (WCAG 2.2 AA; axe's "minor" and "moderate" are reported only).
FAILING = ("serious", "critical")


@cache
def axe_source() -> str:
    """The text of axe.min.js, installing the locked axe-core first if it is not there."""
    if not AXE_JS.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is missing: install Debian's npm package to check accessibility")
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=AXE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0 or not AXE_JS.exists():
            pytest.fail(f"npm ci in {AXE_DIR.name}/ failed:\n{result.stderr[-2000:]}")
    return AXE_JS.read_text(encoding="utf-8")


def violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now.

    The page's Content-Security-Policy allows only its own scripts, so the context running this
    is opened with ``bypass_csp=True``; the console itself is unchanged.
    """
    if not page.evaluate("() => Boolean(window.axe)"):
        page.add_script_tag(content=axe_source())
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await axe.run(document, { resultTypes: ["violations"] });
            return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + " :: "
                    + (n.failureSummary || "").slice(0, 300)) }));
        }"""
    )
    return [v for v in found if v["impact"] in FAILING]
