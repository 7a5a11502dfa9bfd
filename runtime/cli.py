"""How a command-line tool of this project gives up: one line to stderr, one exit code.

The message is printed as it is: paths, values and config problems come from the user, so
square brackets or ``:smile:`` in them are text, never terminal markup or emoji codes. The
prefix (``error:`` by default, or the tool's own name) is bold red on a terminal only.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

__all__ = ["fail"]


def fail(message: str, code: int, *, prefix: str = "error:") -> NoReturn:
    """Print ``prefix message`` to stderr and exit with ``code``."""
    click.echo(f"{click.style(prefix, fg='red', bold=True)} {message}", err=True)
    sys.exit(code)
