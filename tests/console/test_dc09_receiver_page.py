"""The gateways page shows what the DC-09 receiver rejected, by reason, in both languages: a
transmitter with a wrong account or a line that corrupts frames is seen in the console, not only
in the server's log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from contract.dc09 import Dc09Message, encode
from tests.console.conftest import Centre, log_in
from tests.dc09.test_serve import exchange
from tests.fixtures.broker import free_port

pytestmark = pytest.mark.browser

PORT = free_port()


@pytest.mark.centre_args("--dc09-port", str(PORT))
def test_the_gateways_page_shows_dc09_rejections_by_reason(centre: Centre, page_for: Any) -> None:
    page = page_for()
    log_in(page, centre)
    page.click("[data-nav=gateways]")
    page.wait_for_selector("#dc09-receiver:not(.hidden)")
    assert "nothing rejected" in page.inner_text("#dc09-receiver")

    unknown = Dc09Message("NULL", 0, "DEAD01", timestamp=datetime.now(UTC))
    good = bytearray(encode(unknown))
    bad_crc = bytes(good[:1] + b"0000" + good[5:])
    # The broken frame gets no answer; the unknown account after it gets a NAK.
    assert b"NAK" in exchange(PORT, bad_crc + bytes(good))

    page.reload()
    page.wait_for_selector("#app:not(.hidden)")
    page.click("[data-nav=gateways]")
    crc = page.wait_for_selector("#dc09-receiver tr[data-reason=crc]")
    assert crc.inner_text().split("\t") == ["Bad CRC", "1"]
    account = page.inner_text("#dc09-receiver tr[data-reason=unknown_account]")
    assert account.split("\t") == ["Unknown account", "1"]
    page.select_option("#lang", "zh-CN")
    page.wait_for_function("() => document.documentElement.lang === 'zh-CN'")
    assert "CRC 错误" in page.inner_text("#dc09-receiver")
    assert "dc09_" not in page.inner_text("body")
