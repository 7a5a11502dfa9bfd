"""`gatewayd enroll`: exchange a one-time code from dispatch for this gateway's credential.

Exit codes: 0 enrolled; 2 the code or the gateway id was refused (unknown, used or expired code;
an id enrolled elsewhere) or a flag is wrong; 3 a config or state-folder problem (nothing was
sent, so the code is not used up), or an answer that says the URL, TLS or gateway id is wrong
(see :mod:`gatewayd.commands.enroll_failures`); 4 dispatch could not be reached or answered with
an error (try again).
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import tempfile
from pathlib import Path

import click

from contract.home import (
    DEFAULT_STATE_DIR,
    INSECURE_FLAG,
    INSECURE_KEY,
    ConfigError,
    insecure_url_problem,
    load_config,
)
from forwarder.client import CREDENTIAL_FILE, DispatchClient, DispatchError
from gatewayd.cli import EXIT_CONFIG, EXIT_USAGE
from gatewayd.commands.daemon_options import DEFAULT_CONFIG
from gatewayd.commands.enroll_failures import AnswerWitness, explain
from runtime.cli import fail

__all__ = ["enroll"]

_GATEWAY_ID = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")


_fail = functools.partial(fail, prefix="gatewayd enroll:")


def _check_writable(folder: Path) -> None:
    """Fail before the code is spent if the credential could not be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".enroll-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        _fail(f"state folder {folder} is not writable: {exc}", EXIT_CONFIG)


def _give_to_folder_owner(target: Path, folder: Path) -> None:
    """Enrolled as root (sudo) for a daemon that runs as its own user: the credential (mode
    0600) belongs to the state folder's owner, or the daemon could not read it."""
    if os.geteuid() != 0:
        return
    try:
        owner = folder.stat()
        if owner.st_uid != 0:
            os.chown(target, owner.st_uid, owner.st_gid)
    except OSError as exc:
        _fail(
            f"credential saved to {target}, but it could not be given to the owner of {folder} "
            f"({exc}); run: chown --reference={folder} {target}",
            EXIT_CONFIG,
        )


@click.command()
@click.option("--dispatch", "dispatch_url", metavar="URL", help="Dispatch base URL (https://...).")
@click.option("--code", required=True, help="The one-time enrolment code from `dispatchd`.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="GATEWAYD_CONFIG",
    help=f"The home config: gives the gateway id, state folder, dispatch URL and CA file "
    f"(also $GATEWAYD_CONFIG; default: {DEFAULT_CONFIG} if it exists).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help=f"Where the credential is kept (default: from the config, else {DEFAULT_STATE_DIR}).",
)
@click.option("--gateway-id", help="This gateway's id (default: from the config).")
@click.option(
    "--ca-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CA certificate that signed dispatch's TLS certificate (a private CA).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=300),
    default=10.0,
    show_default=True,
    help="Seconds to wait for dispatch's answer.",
)
@click.option("--force", is_flag=True, help="Replace an existing credential.")
@click.option(
    INSECURE_FLAG,
    "insecure_http",
    is_flag=True,
    help="Allow a plain http:// dispatch URL (the secret crosses the network in clear; a "
    "loopback demo or test only).",
)
def enroll(
    dispatch_url: str | None,
    code: str,
    config_path: Path | None,
    state_dir: Path | None,
    gateway_id: str | None,
    ca_file: Path | None,
    timeout: float,
    force: bool,
    insecure_http: bool,
) -> None:
    """Enrol this gateway with dispatch and store its credential (mode 0600).

    A running gateway starts forwarding by itself once the credential is stored.
    """
    if config_path is None and gateway_id is None and DEFAULT_CONFIG.exists():
        config_path = DEFAULT_CONFIG
    if config_path is not None:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            _fail("the config is not valid:\n  " + "\n  ".join(exc.problems), EXIT_CONFIG)
        gateway_id = gateway_id or config.gateway.id
        state_dir = state_dir or config.gateway.state_dir
        dispatch_url = dispatch_url or config.dispatch.url or None
        ca_file = ca_file or config.dispatch.ca_file
        insecure_http = insecure_http or config.dispatch.insecure_http
    if not gateway_id:
        _fail(
            f"no gateway id: pass --config (no {DEFAULT_CONFIG} here; write one with "
            f"`gatewayd init`) or --gateway-id with --state-dir",
            EXIT_CONFIG,
        )
    if not _GATEWAY_ID.match(gateway_id):
        _fail(
            f"gateway id {gateway_id!r} may hold only letters, digits and _.:@- (1-128)",
            EXIT_USAGE,
        )
    if not dispatch_url:
        _fail("no dispatch URL: pass --dispatch or set [dispatch] url in the config", EXIT_CONFIG)
    if not dispatch_url.startswith(("http://", "https://")):
        _fail(f"dispatch URL must start with https:// or http://, got {dispatch_url!r}", EXIT_USAGE)
    refused = insecure_url_problem(
        dispatch_url, allowed=insecure_http, option=f"{INSECURE_FLAG} (or {INSECURE_KEY})"
    )
    if refused:
        _fail(refused, EXIT_USAGE)
    if ca_file is not None and not ca_file.is_file():
        _fail(f"CA file {ca_file} does not exist", EXIT_CONFIG)
    if not code.strip():
        _fail("the enrolment code is empty", EXIT_USAGE)
    folder = state_dir or DEFAULT_STATE_DIR
    target = folder / CREDENTIAL_FILE
    if target.exists() and not force:
        _fail(
            f"{target} already exists (this gateway is enrolled); pass --force to replace it",
            EXIT_CONFIG,
        )
    _check_writable(folder)

    try:
        witness = AnswerWitness(dispatch_url, ca_file)
    except DispatchError as exc:  # a CA file that is not a certificate
        _fail(str(exc), EXIT_CONFIG)
    try:
        credential = asyncio.run(
            DispatchClient.enroll(
                dispatch_url,
                code=code.strip(),
                gateway_id=gateway_id,
                ca_file=ca_file,
                timeout=timeout,
                transport=witness,
                insecure_http=insecure_http,
            )
        )
    except DispatchError as exc:
        failure = explain(exc, dispatch_url, gateway_id, witness)
        _fail(failure.message, failure.exit_code)
    try:
        credential.save(target)
    except OSError as exc:
        _fail(f"cannot write {target}: {exc} (the code is used up; ask for a new one)", EXIT_CONFIG)
    _give_to_folder_owner(target, folder)
    click.echo(
        f"enrolled gateway {credential.gateway_id} (household {credential.household_id or '-'}) "
        f"with {dispatch_url}; credential saved to {target}"
    )
