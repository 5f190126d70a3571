"""The ``rest`` keys of a connection and of ``[defaults.rest]``: merged key by key,
validated with ``FILE:LINE: key.path: problem`` lines, and which connections get a
REST API at all."""

from __future__ import annotations

import textwrap

import pytest

from actors import ConfigError
from supervisor.config import Config, RestSettings, loads_config
from supervisor.wiring import rest_base_url

SRC = "config.toml"


def load(text: str) -> Config:
    return loads_config(textwrap.dedent(text), source=SRC)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return caught.value.problems


def test_defaults_rest_merges_key_by_key() -> None:
    config = load(
        """
        [defaults.rest]
        read_timeout = 3.0
        attempts = 2

        [connections.a]
        exchange = "binance"
        channels = ["trades"]
        symbols = ["BTC-USDT"]
        [connections.a.rest]
        attempts = 5
        base_url = "https://api1.binance.com"

        [connections.b]
        exchange = "okx"
        channels = ["trades"]
        symbols = ["BTC-USDT"]
        """
    )
    a, b = config.connections
    assert a.rest == RestSettings(base_url="https://api1.binance.com", read_timeout=3.0, attempts=5)
    assert b.rest == RestSettings(read_timeout=3.0, attempts=2)


def test_default_rest_url_only_on_the_venues_own_domain() -> None:
    config = load(
        """
        [connections.spot]
        exchange = "binance"
        channels = ["trades"]
        symbols = ["BTC-USDT"]
        [connections.usdm]
        exchange = "binance_usdm"
        channels = ["trades"]
        symbols = ["BTC-USDT-PERP"]
        [connections.okx]
        exchange = "okx"
        channels = ["trades"]
        symbols = ["BTC-USDT"]
        [connections.deribit]
        exchange = "deribit"
        channels = ["trades"]
        symbols = ["BTC-PERPETUAL"]
        [connections.bybit]
        exchange = "bybit"
        channels = ["trades"]
        symbols = ["BTC-USDT"]
        [connections.vision]
        exchange = "binance"
        channels = ["trades"]
        symbols = ["BTC-USDT"]
        url = "wss://data-stream.binance.vision/stream"
        [connections.local]
        exchange = "binance"
        channels = ["trades"]
        symbols = ["BTC-USDT"]
        url = "ws://127.0.0.1:9000/stream"
        [connections.local_rest]
        exchange = "binance"
        channels = ["trades"]
        symbols = ["BTC-USDT"]
        url = "ws://127.0.0.1:9000/stream"
        rest = { base_url = "http://127.0.0.1:9001" }
        [connections.raw]
        exchange = "raw"
        subscribe = ["{}"]
        url = "wss://example.com/ws"
        """
    )
    assert [rest_base_url(spec) for spec in config.connections] == [
        "https://api.binance.com",
        "https://fapi.binance.com",
        "https://www.okx.com",
        "https://www.deribit.com",
        "https://api.bybit.com",
        None,
        None,
        "http://127.0.0.1:9001",
        None,
    ]


def test_a_bad_default_rest_key_is_reported_once_at_defaults() -> None:
    assert problems_of(
        """
        [defaults.rest]
        attempts = 0

        [connections.a]
        exchange = "binance"
        channels = ["trades"]
        symbols = ["BTC-USDT"]
        """
    ) == [
        "config.toml:3: defaults.rest.attempts: 0 is out of range (expected an integer "
        ">= 1 and <= 100)"
    ]


def test_bad_rest_keys_are_reported_with_their_lines() -> None:
    assert problems_of(
        """
        [connections.a]
        exchange = "binance"
        channels = ["trades"]
        symbols = ["BTC-USDT"]
        [connections.a.rest]
        base_url = "ftp://api.binance.com"
        read_timeout = -1
        venu = "binance"

        [connections.b]
        exchange = "binance"
        channels = ["trades"]
        symbols = ["BTC-USDT"]
        rest = { base_url = "http://api.binance.com" }

        [connections.c]
        exchange = "binance"
        channels = ["trades"]
        symbols = ["BTC-USDT"]
        rest = { base_url = "https://user:secret@api.binance.com/api/v3", venue = "binanse" }

        [connections.d]
        exchange = "raw"
        subscribe = ["{}"]
        url = "wss://example.com/ws"
        rest = { base_url = "https://example.com" }

        [connections.e]
        exchange = "binance"
        channels = ["trades"]
        symbols = ["BTC-USDT"]
        allow_plaintext = true
        rest = { base_url = "http://api.binance.com" }
        """
    ) == [
        "config.toml:7: connections.a.rest.base_url: 'ftp://api.binance.com' is not a REST base "
        "URL (expected http:// or https:// with a host)",
        "config.toml:8: connections.a.rest.read_timeout: -1 is out of range (expected a number "
        "> 0 and <= 86400.0)",
        "config.toml:9: connections.a.rest.venu: unknown key; did you mean 'venue'? (expected "
        "one of: attempts, base_url, connect_timeout, read_timeout, total_timeout, venue)",
        "config.toml:15: connections.b.rest.base_url: 'http://api.binance.com' is plaintext to "
        "'api.binance.com', a host off this machine (expected https://; or set allow_plaintext "
        "= true to accept that anyone on the route can read and change the answers)",
        "config.toml:21: connections.c.rest.base_url: 'https://***@api.binance.com/api/v3' has "
        "a path, query or fragment (expected only the origin, https://host[:port]; the adapter "
        "adds each endpoint's path)",
        "config.toml:21: connections.c.rest.base_url: 'https://***@api.binance.com/api/v3' has "
        "credentials in clear (expected a URL without user:password@; keep secrets out of the "
        "config)",
        "config.toml:21: connections.c.rest.venue: unknown REST venue 'binanse'; did you mean "
        "'binance'? (expected one of: binance, binance_usdm, okx, deribit, bybit)",
        "config.toml:27: connections.d.rest.venue: missing (expected one of: binance, "
        "binance_usdm, okx, deribit, bybit, whose REST limits apply to rest.base_url; the raw "
        "adapter has none of its own)",
    ]
    text = 'rest = { base_url = "https://u:hunter2@h/x" }'
    problems = problems_of(f"[defaults]\n{text}\n[connections.c]\nexchange = 'raw'\n")
    assert problems and "hunter2" not in "\n".join(problems)
