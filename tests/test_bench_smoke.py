"""The benchmark runner runs a benchmark end to end and reports figures beside their limits.

Not a timing test: it checks the shape of what is reported (figures, limits, ratios), never the
numbers themselves.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.fixtures.procs import run_module


def test_runner_reports_dispatch_ingest_figures_with_limits_and_ratios() -> None:
    result = run_module(
        "bench",
        "--quick",
        "--only",
        "dispatch_ingest",
        "--",
        "--backends",
        "sqlite",
        "--processes",
        "1",
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["benchmark"] for line in lines] == ["dispatch_ingest"]
    figures = {f["name"]: f for f in lines[0]["figures"]}
    assert set(figures) == {
        "events/s (sqlite, 1 proc)",
        "events/s, limit of the table's shape (sqlite, 1 proc)",
        "heartbeats/s (sqlite, 1 proc)",
        "events per CPU-second (sqlite, 1 proc)",
        "events per CPU-second, limit of the table's shape (sqlite, 1 proc)",
        "heartbeats per CPU-second (sqlite, 1 proc)",
    }
    for figure in figures.values():
        assert figure["value"] > 0
        assert figure["limit"] > 0
        assert figure["ratio"] == pytest.approx(figure["value"] / figure["limit"], abs=1e-4)
    assert lines[0]["machine"]["cpus"] >= 1
    assert "== summary" in result.stdout


@pytest.mark.postgres
def test_city_bench_runs_signed_gateways_against_two_processes_and_sizes_a_city() -> None:
    result = run_module(
        "bench",
        "--only",
        "city",
        "--",
        "--gateways",
        "200",
        "--interval",
        "2",
        "--warmup",
        "2",
        "--duration",
        "3",
        "--alarm-rate",
        "5",
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["benchmark"] for line in lines] == ["city"]
    figures = {f["name"]: f for f in lines[0]["figures"]}
    # Every request was signed as a gateway signs it and accepted: no refusal, no lost alarm.
    assert figures["errors"]["value"] == 0, lines[0]["notes"]
    assert figures["heartbeats answered/s"]["value"] > 0
    assert figures["heartbeats answered/s"]["limit"] == pytest.approx(100.0)
    assert figures["alarms stored/s"]["value"] > 0
    assert figures["alarm latency p99"]["value"] >= figures["alarm latency p50"]["value"] > 0
    assert {"CPU dispatchd 1", "CPU dispatchd 2", "CPU PostgreSQL backends"} <= set(figures)
    assert figures["database bytes per alarm"]["value"] > 0
    assert any(note.startswith("sizing for 500,000 homes") for note in lines[0]["notes"])


def test_settle_waits_for_a_quiet_machine_and_gives_up_when_told(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bench.__main__ as runner

    loads = iter([3.0, 2.0, 1.4, 0.8, 0.5])
    monkeypatch.setattr(os, "getloadavg", lambda: (next(loads), 0.0, 0.0))
    assert runner.settle(1.0, longest_s=60, poll_s=0) == 0.8
    assert "under 1.0 (now 3.00)" in capsys.readouterr().out

    monkeypatch.setattr(os, "getloadavg", lambda: (4.0, 0.0, 0.0))
    assert runner.settle(1.0, longest_s=0.05, poll_s=0.01) == 4.0
    assert "still 4.00 after 0 s: running anyway" in capsys.readouterr().out
