"""Render the library's scenarios: ``python -m firmware_sim.scenarios render NAME [--expected]``."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence

from firmware_sim.scenarios import LIBRARY, folder


def render(name: str, *, expected: bool) -> None:
    out = folder(name)
    rendered = LIBRARY[name]().render()
    trace, config = rendered.write(out)
    print(f"{name}: {len(rendered.frames)} frames -> {trace}, {config}")
    if expected:
        # The expectation is what the real pipeline decides: replay through the command itself.
        target = out / "expected.jsonl"
        # Leading comment lines (notes for reviewers) survive a re-render.
        notes = []
        if target.exists():
            for line in target.read_text(encoding="utf-8").splitlines():
                if not line.startswith("#"):
                    break
                notes.append(line)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "gatewayd",
                "replay",
                str(trace),
                "--config",
                str(config),
                "--out",
                str(target),
                "--no-progress",
            ],
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"{name}: replay failed with exit status {result.returncode}")
        if notes:
            target.write_text("\n".join(notes) + "\n" + target.read_text(encoding="utf-8"))
        print(f"{name}: expected decisions -> {target} (review the diff before committing)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim.scenarios")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the scenarios")
    render_cmd = sub.add_parser("render", help="render scenarios into their folders")
    render_cmd.add_argument("names", nargs="*", help="scenarios (default: all)")
    render_cmd.add_argument(
        "--expected", action="store_true", help="also write expected.jsonl by replaying"
    )
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, build in sorted(LIBRARY.items()):
            doc = (build.__doc__ or "").strip().splitlines()[0]
            print(f"{name:14} {doc}")
        return
    for name in args.names or sorted(LIBRARY):
        if name not in LIBRARY:
            parser.error(f"no scenario {name!r}; the library has {', '.join(sorted(LIBRARY))}")
        render(name, expected=args.expected)


if __name__ == "__main__":
    main()
