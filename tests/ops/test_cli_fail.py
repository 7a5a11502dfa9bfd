"""The one way a command-line tool of the project gives up: the message as it is, the code."""

from __future__ import annotations

import pytest

from runtime.cli import fail


@pytest.mark.parametrize(
    ("prefix", "message", "code"),
    [
        (None, "trace:100: bad line [/b] :smile: [bold]x[/bold]", 2),
        ("dispatchd:", "operator 'ann' exists", 6),
        ("gatewayd enroll:", "the config is not valid:\n  gateway.id: too long", 3),
    ],
)
def test_prints_the_message_verbatim_to_stderr_and_exits_with_the_code(
    capsys: pytest.CaptureFixture[str], prefix: str | None, message: str, code: int
) -> None:
    kwargs = {} if prefix is None else {"prefix": prefix}
    with pytest.raises(SystemExit) as exited:
        fail(message, code, **kwargs)
    assert exited.value.code == code
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{prefix or 'error:'} {message}\n"  # no colour codes when not a terminal
