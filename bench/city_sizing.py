"""From the city bench's measured figures to what a city of 500,000 homes needs.

Every figure scales with the heartbeat rate (homes / interval) except the database's growth,
which scales with alarms (one per home per day). The rules of thumb, stated so they can be
argued with:

- a dispatchd process is one event loop: it uses at most one core, and is sized to run at half
  of it, so that when one process fails (or after a city-wide outage, when every gateway sends
  its backlog at once) its peers absorb its gateways; one spare on top (N+1);
- PostgreSQL's cores likewise at half their capacity;
- PostgreSQL's memory: shared buffers at twice the hot set (every gateway row and the nonces kept
  for the freshness window are touched every interval), shared buffers a quarter of the RAM;
- disk: a year of alarm growth, the heartbeat tables, room for the WAL kept between
  checkpoints and for a copy of the largest table during maintenance (2x the data).
"""

from __future__ import annotations

import math

from contract.signing import MAX_SKEW_S

__all__ = ["CITY_HOMES", "sizing"]

CITY_HOMES = 500_000
#: A nonce is kept until its timestamp could no longer pass the freshness check.
NONCE_RETENTION_S = MAX_SKEW_S + 60
UTILISATION = 0.5
GIB = 2**30


def sizing(
    *,
    gateways: int,
    interval_s: float,
    window_s: float,
    heartbeats_ok: int,
    cpu: dict[str, float],
    bytes_per_day: float,
    heartbeat_tables_bytes: float,
    nonce_bytes: float,
    gateway_rows_bytes: float,
    wal_bytes_per_heartbeat: float,
) -> list[str]:
    """Notes stating the sizing for CITY_HOMES, each with the measured figure it comes from."""
    if heartbeats_ok == 0:
        return ["sizing: no heartbeat answered, nothing to scale from"]
    scale = CITY_HOMES / gateways
    city_rate = CITY_HOMES / interval_s
    dispatch_cpu_s = sum(v for k, v in cpu.items() if k.startswith("dispatchd")) / 100 * window_s
    pg_cpu_s = sum(v for k, v in cpu.items() if k.startswith("PostgreSQL")) / 100 * window_s
    dispatch_per_beat = dispatch_cpu_s / heartbeats_ok
    pg_per_beat = pg_cpu_s / heartbeats_ok
    dispatch_cores = city_rate * dispatch_per_beat
    processes = math.ceil(dispatch_cores / UTILISATION) + 1
    pg_cores = math.ceil(city_rate * pg_per_beat / UTILISATION)
    nonce_per_beat = nonce_bytes / heartbeats_ok
    hot = gateway_rows_bytes * scale + nonce_per_beat * city_rate * NONCE_RETENTION_S
    shared_buffers = 2 * hot
    ram = max(4 * shared_buffers, 4 * GIB)
    year = bytes_per_day * scale * 365
    disk = 2 * (year + hot) + 16 * GIB
    wal_per_s = wal_bytes_per_heartbeat * city_rate
    return [
        f"sizing for {CITY_HOMES:,} homes ({city_rate:,.0f} heartbeats/s, "
        f"{CITY_HOMES / 86_400:.1f} alarms/s mean): dispatchd used "
        f"{dispatch_per_beat * 1e6:,.0f} us of CPU per heartbeat (alarms included) -> "
        f"{dispatch_cores:.1f} cores -> {processes} processes at <= {UTILISATION:.0%} of a core "
        "each, one of them spare",
        f"sizing: PostgreSQL used {pg_per_beat * 1e6:,.0f} us per heartbeat -> {pg_cores} cores "
        f"at <= {UTILISATION:.0%}",
        f"sizing: hot set {hot / GIB:.2f} GiB (gateway rows {gateway_rows_bytes * scale / GIB:.2f}"
        f" GiB, nonces kept {NONCE_RETENTION_S} s) -> shared_buffers {shared_buffers / GIB:.1f} "
        f"GiB, RAM {ram / GIB:.0f} GiB",
        f"sizing: database growth {bytes_per_day * scale / 2**20:,.0f} MiB/day -> "
        f"{year / GIB:,.1f} GiB/year; disk {disk / GIB:,.0f} GiB for the first year "
        "(2x data, 16 GiB of WAL)",
        f"sizing: WAL written {wal_per_s / 2**20:,.1f} MiB/s ({wal_per_s * 86_400 / GIB:,.0f} "
        "GiB/day: what archiving and a replica must carry), measured on the whole server",
        f"sizing: heartbeat tables at this run's end {heartbeat_tables_bytes / 2**20:,.1f} MiB "
        f"for {gateways:,} gateways",
    ]
