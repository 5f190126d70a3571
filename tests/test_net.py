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


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # The config loader's view: whose credentials they are stays visible.
        ("wss://alice:hunter2@h.example/ws", "wss://alice:***@h.example/ws"),
        ("https://token123@h.example/ws", "https://***@h.example/ws"),
        ("ftp://alice:pw@example.com", "ftp://alice:***@example.com"),
        ("wss://h.example/ws?token=t&a=b", "wss://h.example/ws?token=***&a=b"),
        ("wss://h.example/ws", "wss://h.example/ws"),
    ],
)
def test_redact_url_can_keep_the_username(url: str, shown: str) -> None:
    assert redact_url(url, keep_username=True) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # Malformed URLs (urlsplit raises for these) are still redacted, never raised on.
        ("http://alice:hunter2@[::1", "http://***@[::1"),
        ("wss://alice:hunter2@h.example:99999/ws", "wss://***@h.example:99999/ws"),
        # No scheme: the whole text before the path is the authority.
        ("alice:hunter2@h.example/ws", "***@h.example/ws"),
        # The fragment and an empty query are kept as written.
        ("wss://u:p@h.example/ws?#k", "wss://***@h.example/ws?#k"),
        ("wss://h.example/ws?key=1#token=2", "wss://h.example/ws?key=***#token=2"),
        # Only the last '@' of the authority ends the user-info; '@' in the path is data.
        ("wss://a@b:c@h.example/x@y", "wss://***@h.example/x@y"),
    ],
)
def test_redact_url_never_parses_strictly(url: str, shown: str) -> None:
    assert redact_url(url) == shown
