"""`check` warns when the HTTP endpoint listens beyond loopback."""

from __future__ import annotations

import pytest

from tablemover.preflight.http_exposure import exposed_http


@pytest.mark.parametrize("address", ["", "127.0.0.1:9180", "localhost:0", "[::1]:9180", "127.0.0.5:1"])
def test_off_or_loopback_is_quiet(address: str) -> None:
    assert exposed_http(address) is None


@pytest.mark.parametrize(("address", "where"), [("0.0.0.0:9180", "0.0.0.0"), (":9180", "every interface")])
def test_beyond_loopback_is_warned_about(address: str, where: str) -> None:
    warning = exposed_http(address)
    assert warning is not None and f"listens on {where}" in warning and "127.0.0.1" in warning
