"""`gatewayd init`: write a new home's config, by prompts or entirely by flags.

Interactive: every value not given as a flag is asked for, with a default where there is one.
Scripted installs give the flags and ``--no-input`` (a missing required value is then an error,
never a prompt)::

    gatewayd init --no-input --gateway-id gw-0042 --household "Flat 3" \\
        --dispatch-url https://dispatch.example.org --timezone Europe/Berlin \\
        --zigbee-url mqtt://127.0.0.1:1883

The file is commented TOML that `contract.home.load_config` accepts (checked before it is
written), written atomically with mode 0640. An existing file is only replaced with ``--force``,
and then kept as ``<name>.bak``.

Exit codes: 0 written; 2 a bad or missing value; 3 the file exists or cannot be written.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import tomlkit
from rich.console import Console
from rich.prompt import Prompt

from contract.home import (
    DEFAULT_STATE_DIR,
    INSECURE_FLAG,
    ConfigError,
    insecure_url_problem,
    parse_config,
)
from drivers.registry import load_driver
from gatewayd.cli import EXIT_CONFIG, EXIT_USAGE
from gatewayd.commands.daemon_options import DEFAULT_CONFIG, fail
from rules.config import PACKS
from runtime import files

__all__ = ["ConfigExists", "HomeAnswers", "InitError", "init", "render_config", "validators"]

#: Where systemd's RuntimeDirectory=gatewayd puts the control socket.
DEFAULT_SOCKET = Path("/run/gatewayd/control.sock")
DEFAULT_RULE_PACK = "elderly_care"
DEFAULT_ZIGBEE_BASE_TOPIC = "zigbee2mqtt"
_ID = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")


class InitError(ValueError):
    """A value given to `gatewayd init` is not acceptable."""


class ConfigExists(Exception):
    """The config file exists and replacing it was not asked for."""


def check_gateway_id(value: str) -> str:
    value = value.strip()
    if not _ID.match(value):
        raise InitError(
            f"gateway id {value!r} must be 1-128 characters of letters, digits and _ . : @ -"
        )
    return value


def check_household(value: str) -> str:
    value = value.strip()
    if len(value) > 128:
        raise InitError(f"household is {len(value)} characters; at most 128")
    if any(ord(c) < 32 for c in value):
        raise InitError("household must be one line of text")
    return value


def check_dispatch_url(value: str) -> str:
    value = value.strip()
    if value and "://" not in value:
        value = "https://" + value  # a bare host name means TLS, never plain http
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise InitError(f"dispatch url must start with https:// (or http://), got {value!r}")
    if not parts.hostname:
        raise InitError(f"dispatch url {value!r} names no host")
    if parts.username or parts.password:
        raise InitError("dispatch url must not carry credentials; the gateway enrols instead")
    if parts.query or parts.fragment:
        raise InitError(f"dispatch url {value!r} must not have a query or fragment")
    _check_port(value)
    return value.rstrip("/")


def check_timezone(value: str) -> str:
    value = value.strip()
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InitError(
            f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin"
        ) from exc
    return value


def check_state_dir(value: str) -> str:
    value = value.strip()
    if not value or not Path(value).is_absolute():
        raise InitError(f"state dir must be an absolute path, got {value!r}")
    return value


def check_rule_pack(value: str) -> str:
    value = value.strip()
    if value not in PACKS:
        # The daemon refuses any other: a config it would not run is not worth writing.
        raise InitError(f"rule pack {value!r} must be one of the packs: {', '.join(PACKS)}")
    return value


def check_zigbee_url(value: str) -> str:
    """An MQTT broker URL, or empty for a home without Zigbee."""
    value = value.strip()
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise InitError(f"zigbee url must start with mqtt:// or mqtts://, got {value!r}")
    if not parts.hostname:
        raise InitError(f"zigbee url {value!r} names no host")
    _check_port(value)
    return value


def _check_port(url: str) -> None:
    try:
        urlsplit(url).port  # noqa: B018 (the property raises ValueError on a bad port)
    except ValueError as exc:
        raise InitError(f"{url!r} has a bad port; expected 1-65535") from exc


def default_timezone() -> str:
    """The host's zone (``/etc/timezone`` or the ``/etc/localtime`` link), else UTC."""
    with contextlib.suppress(OSError):
        name = Path("/etc/timezone").read_text().strip()
        with contextlib.suppress(InitError):
            return check_timezone(name)
    with contextlib.suppress(OSError, ValueError):
        target = str(Path("/etc/localtime").resolve())
        if "zoneinfo/" in target:
            with contextlib.suppress(InitError):
                return check_timezone(target.split("zoneinfo/", 1)[1])
    return "UTC"


@dataclass(frozen=True)
class Question:
    flag: str
    prompt: str
    check: Callable[[str], str]
    default: Callable[[], str | None]


#: In the order they are asked; a default of None means the answer is required.
QUESTIONS: dict[str, Question] = {
    "gateway_id": Question(
        "--gateway-id", "Gateway id (as registered at dispatch)", check_gateway_id, lambda: None
    ),
    "household": Question(
        "--household", "Household (name or address operators see)", check_household, lambda: ""
    ),
    "dispatch_url": Question(
        "--dispatch-url", "Dispatch centre URL", check_dispatch_url, lambda: None
    ),
    "timezone": Question("--timezone", "Time zone of the home", check_timezone, default_timezone),
    "state_dir": Question(
        "--state-dir", "State directory", check_state_dir, lambda: str(DEFAULT_STATE_DIR)
    ),
    "rule_pack": Question("--rule-pack", "Rule pack", check_rule_pack, lambda: DEFAULT_RULE_PACK),
    "zigbee_url": Question(
        "--zigbee-url",
        "Zigbee2MQTT broker URL (empty: no Zigbee)",
        check_zigbee_url,
        lambda: "mqtt://127.0.0.1:1883",
    ),
}

validators: dict[str, Callable[[str], str]] = {k: q.check for k, q in QUESTIONS.items()}


@dataclass(frozen=True)
class HomeAnswers:
    gateway_id: str
    dispatch_url: str
    household: str = ""
    timezone: str = "UTC"
    state_dir: str = str(DEFAULT_STATE_DIR)
    rule_pack: str = DEFAULT_RULE_PACK
    zigbee_url: str = ""
    zigbee_base_topic: str = DEFAULT_ZIGBEE_BASE_TOPIC
    status_socket: str = str(DEFAULT_SOCKET)
    insecure_http: bool = False


def _commented(table: Any, key: str, value: Any, comment: str) -> None:
    table.add(tomlkit.comment(comment))
    table.add(key, value)


def render_config(answers: HomeAnswers, *, now: datetime | None = None) -> str:
    """The home config as commented TOML."""
    now = now or datetime.now(UTC)
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"Home config of gateway {answers.gateway_id}."))
    doc.add(tomlkit.comment(f"Written by `gatewayd init` on {now:%Y-%m-%d}; edit freely."))
    doc.add(tomlkit.comment("gatewayd refuses to start with a bad file and names the line;"))
    doc.add(tomlkit.comment("on reload (systemctl reload gatewayd) it keeps the last good one."))
    doc.add(tomlkit.nl())

    gateway = tomlkit.table()
    _commented(gateway, "id", answers.gateway_id, "This gateway's id at dispatch.")
    _commented(gateway, "household", answers.household, "What dispatch operators see.")
    _commented(
        gateway,
        "state_dir",
        answers.state_dir,
        "The event buffer, traces and the enrolment secret (systemd: StateDirectory=gatewayd).",
    )
    _commented(
        gateway,
        "timezone",
        answers.timezone,
        "The home's local time: night hours and inactivity windows follow it.",
    )
    doc.add("gateway", gateway)

    dispatch = tomlkit.table()
    _commented(dispatch, "url", answers.dispatch_url, "The dispatch centre events go to.")
    if answers.insecure_http:
        _commented(
            dispatch,
            "insecure_http",
            True,
            "Plain http:// allowed: alarms and acknowledgements travel unprotected.",
        )
    dispatch.add(tomlkit.comment('ca_file = "/etc/gatewayd/dispatch-ca.pem"  # a private CA'))
    dispatch.add(tomlkit.comment("heartbeat_interval = 30.0  # seconds"))
    dispatch.add(tomlkit.comment("timeout = 10.0  # seconds per request"))
    doc.add("dispatch", dispatch)

    buffer = tomlkit.table()
    buffer.add(tomlkit.comment("Disk the buffer may use; beyond it the oldest telemetry goes"))
    buffer.add(tomlkit.comment("(never an alarm), and a buffer_evicted trouble is raised."))
    buffer.add("disk_budget_mib", 256)
    doc.add("buffer", buffer)

    status = tomlkit.table()
    _commented(
        status,
        "socket",
        answers.status_socket,
        "Control socket of `gatewayd status`, `mode` and `test` (systemd: RuntimeDirectory).",
    )
    doc.add("status", status)

    rules = tomlkit.table()
    _commented(rules, "pack", answers.rule_pack, "The rule pack that decides alarms locally.")
    doc.add("rules", rules)

    if answers.zigbee_url:
        drivers = tomlkit.aot()
        zigbee = tomlkit.table()
        zigbee.add(tomlkit.comment("Zigbee devices through Zigbee2MQTT's MQTT broker."))
        zigbee.add("id", "zigbee")
        zigbee.add("type", "zigbee2mqtt")
        zigbee.add("url", answers.zigbee_url)
        zigbee.add("base_topic", answers.zigbee_base_topic)
        driver = load_driver("zigbee2mqtt")
        for name, (value, why) in driver.initial_options(
            gateway_id=answers.gateway_id, driver_id="zigbee"
        ).items():
            _commented(zigbee, name, value, why)
        drivers.append(zigbee)
        doc.add("drivers", drivers)
    else:
        doc.add(tomlkit.comment("Drivers read the devices, e.g.:"))
        doc.add(tomlkit.comment("[[drivers]]"))
        doc.add(tomlkit.comment('id = "zigbee"'))
        doc.add(tomlkit.comment('type = "zigbee2mqtt"'))
        doc.add(tomlkit.comment('url = "mqtt://127.0.0.1:1883"'))
        doc.add(tomlkit.nl())

    doc.add(tomlkit.nl())
    doc.add(tomlkit.comment("The home's devices, one [[devices]] table each, then check them all"))
    doc.add(tomlkit.comment("with a walk test (`gatewayd test`). For example:"))
    doc.add(tomlkit.comment("[[devices]]"))
    doc.add(tomlkit.comment('id = "sos_button"'))
    doc.add(tomlkit.comment('driver = "zigbee"'))
    doc.add(tomlkit.comment('address = "0x00158d0001a2b3c4"  # Zigbee IEEE address or name'))
    doc.add(tomlkit.comment('role = "sos_button"  # smoke, gas, co, water_leak, door, ...'))
    doc.add(tomlkit.comment('room = "bedroom"'))
    return tomlkit.dumps(doc)


def write_atomically(path: Path, text: str, *, force: bool) -> Path | None:
    """Write ``text`` to ``path`` (mode 0640); returns the backup of a replaced file, if any.

    Raises :class:`ConfigExists` without ``force``, OSError when the file cannot be written.
    """
    if path.exists() and not force:
        raise ConfigExists(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    return files.write_atomically(path, text, mode=0o640, backup=True)


def _ask(console: Console, key: str, question: Question) -> str:
    default = question.default()
    while True:
        try:
            if default is None:
                answer = Prompt.ask(question.prompt, console=console)
            else:
                answer = Prompt.ask(
                    question.prompt, console=console, default=default, show_default=bool(default)
                )
        except EOFError:
            fail(
                f"no answer for {question.flag} (input ended); give it as a flag, "
                f"with --no-input for scripted installs",
                EXIT_USAGE,
            )
        if default is None and not answer.strip():
            console.print(f"[red]{question.prompt} is required.[/]")
            continue
        try:
            return question.check(answer)
        except InitError as exc:
            console.print(f"[red]{exc}[/]")


@click.command("init")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_CONFIG,
    show_default=True,
    envvar="GATEWAYD_CONFIG",
    help="Where to write the home config (also $GATEWAYD_CONFIG).",
)
@click.option("--gateway-id", help="This gateway's id at dispatch.")
@click.option("--household", help="Household name or address, as operators see it.")
@click.option("--dispatch-url", help="https:// URL of the dispatch centre.")
@click.option("--timezone", help="IANA time zone of the home, e.g. Europe/Berlin.")
@click.option("--state-dir", help=f"State directory [default: {DEFAULT_STATE_DIR}].")
@click.option("--rule-pack", help=f"Rule pack [default: {DEFAULT_RULE_PACK}].")
@click.option("--zigbee-url", help="mqtt:// URL of Zigbee2MQTT's broker; empty for no Zigbee.")
@click.option(
    "--zigbee-base-topic",
    default=DEFAULT_ZIGBEE_BASE_TOPIC,
    show_default=True,
    help="Zigbee2MQTT's base topic.",
)
@click.option(
    "--status-socket",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_SOCKET,
    show_default=True,
    help="The daemon's control socket.",
)
@click.option("--force", is_flag=True, help="Replace an existing config (kept as .bak).")
@click.option("--no-input", is_flag=True, help="Never prompt; missing required values fail.")
@click.option(
    INSECURE_FLAG,
    "insecure_http",
    is_flag=True,
    help="Allow a plain http:// dispatch URL (writes insecure_http = true; loopback only).",
)
def init(
    config_path: Path,
    force: bool,
    no_input: bool,
    insecure_http: bool,
    zigbee_base_topic: str,
    status_socket: Path,
    **given: str | None,
) -> None:
    """Create the home's config, asking for what the flags do not give.

    Exit codes: 0 written, 2 a bad or missing value, 3 the file exists or cannot be written.
    """
    console = Console(stderr=True, soft_wrap=True)
    if config_path.exists() and not force:
        fail(
            f"{config_path} exists; use --force to replace it (the old one is kept as "
            f"{config_path.name}.bak)",
            EXIT_CONFIG,
        )
    answers: dict[str, str] = {}
    for key, question in QUESTIONS.items():
        raw = given.get(key)
        if raw is not None:
            try:
                answers[key] = question.check(raw)
            except InitError as exc:
                fail(f"{question.flag}: {exc}", EXIT_USAGE)
        elif no_input:
            default = question.default()
            if default is None:
                fail(f"missing {question.flag} (required with --no-input)", EXIT_USAGE)
            answers[key] = question.check(default)
        else:
            answers[key] = _ask(console, key, question)
    if not status_socket.is_absolute():
        fail(f"--status-socket must be an absolute path, got {status_socket}", EXIT_USAGE)
    if not re.fullmatch(r"[A-Za-z0-9_\-/]{1,128}", zigbee_base_topic):
        fail(f"--zigbee-base-topic {zigbee_base_topic!r} is not a plain MQTT topic", EXIT_USAGE)
    refused = insecure_url_problem(
        answers["dispatch_url"], allowed=insecure_http, option=INSECURE_FLAG
    )
    if refused:
        fail(f"--dispatch-url: {refused}", EXIT_USAGE)
    home = HomeAnswers(
        zigbee_base_topic=zigbee_base_topic,
        status_socket=str(status_socket),
        insecure_http=insecure_http and answers["dispatch_url"].startswith("http://"),
        **answers,
    )
    text = render_config(home)
    try:
        parse_config(text, str(config_path))
    except ConfigError as exc:  # a value our checks let through but the config refuses
        fail("\n".join(exc.problems), EXIT_USAGE)
    try:
        backup = write_atomically(config_path, text, force=force)
    except ConfigExists:  # appeared while we were asking
        fail(f"{config_path} exists; use --force to replace it", EXIT_CONFIG)
    except OSError as exc:
        fail(f"cannot write {config_path}: {exc.strerror or exc}", EXIT_CONFIG)
    out = Console(soft_wrap=True, markup=False, highlight=False)
    out.print(f"Wrote {config_path}" + (f" (previous kept as {backup})" if backup else ""))
    if home.insecure_http:
        console.print("[yellow]warning: the dispatch URL is plain http:// (allowed by flag)[/]")
    out.print(
        "Next: add the home's devices ([[devices]]), then\n"
        "  systemctl enable --now gatewayd\n"
        "  gatewayd status\n"
        "  gatewayd test      # walk test: trigger every device once"
    )
