"""URL handling at the transport boundary: parsing (masking is in tests/test_redact.py)."""

from __future__ import annotations

import pytest

from actors.net import split_ws_url


def test_split_ws_url() -> None:
    parts, host, port, resource = split_ws_url("wss://h.example/stream?streams=a/b")
    assert (parts.scheme, host, port, resource) == ("wss", "h.example", 443, "/stream?streams=a/b")
    assert split_ws_url("ws://127.0.0.1:8080")[1:] == ("127.0.0.1", 8080, "/")


def test_split_ws_url_rejects_other_schemes_without_leaking_secrets() -> None:
    with pytest.raises(
        ValueError,
        match=r"^'https://\*\*\*@h\.example/' is not a WebSocket URL "
        r"\(expected ws:// or wss:// with a host\)$",
    ):
        split_ws_url("https://user:pw@h.example/")
