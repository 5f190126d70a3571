"""URL handling at the transport boundary: parsing and secret masking."""

from __future__ import annotations

import pytest

from actors.net import redact_url, split_ws_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("wss://stream.example.com/ws", "wss://stream.example.com/ws"),
        ("wss://alice:hunter2@stream.example.com:9443/ws", "wss://***@stream.example.com:9443/ws"),
        ("wss://SECRETTOKEN@stream.example.com/ws", "wss://***@stream.example.com/ws"),
        (
            "wss://h.example/ws?apiKey=abc&streams=btcusdt@trade&signature=s1",
            "wss://h.example/ws?apiKey=***&streams=btcusdt@trade&signature=***",
        ),
        ("wss://h.example/stream?streams=a/b", "wss://h.example/stream?streams=a/b"),
    ],
)
def test_redact_url_masks_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


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
