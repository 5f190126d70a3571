"""Binance configuration: limits, stream names, and what ``check()`` refuses.

Everything here is about the connection spec, not about frames: which streams a spec
subscribes (:func:`topics_of`), how symbols map to stream names, and the problems only
Binance can see. Limits cite https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams
(``web-socket-streams.md``) and the USD-M market-streams pages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from actors._spec import ConnectionSpec
from actors.exchanges.sdk import symbols
from actors.exchanges.sdk.checks import Problem, check_channels, not_used
from actors.exchanges.sdk.symbols import parse_symbol

__all__ = [
    "CHANNEL_STREAM",
    "DEFAULT_MAX_PARAMS",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_SUBSCRIBE_SPACING",
    "DEFAULT_USDM_SUBSCRIBE_SPACING",
    "DIFF_DEPTH",
    "KNOWN_QUOTES",
    "PARTIAL_DEPTH",
    "check",
    "check_usdm",
    "from_native",
    "stream_symbol",
    "stream_type",
    "topics_of",
    "usdm_path",
]

#: Streams one connection may carry, spot and USD-M alike ("A single connection can listen
#: to a maximum of 1024 streams", web-socket-streams.md §WebSocket Limits; USD-M observed:
#: the 1025th is refused with code 4).
DEFAULT_MAX_STREAMS: Final = 1024
#: Stream names per SUBSCRIBE request. USD-M was observed to accept 200 names in one
#: request (polyoxide OBSERVED.md, 2026-10-07); spot documents no cap, so the same is used.
DEFAULT_MAX_PARAMS: Final = 200
#: Seconds between two SUBSCRIBE requests on spot. Spot allows 5 incoming messages per
#: second per connection, pings, pongs and JSON control messages included
#: (web-socket-streams.md §WebSocket Limits); one request every 250 ms was observed to be
#: closed with 1008, one every 500 ms held (polyoxide-binance 0.48 spot/ws). At 0.5 s a
#: 1 s window holds at most 3 requests plus our one pong per 20 s ping: 4 < 5.
DEFAULT_SUBSCRIBE_SPACING: Final = 0.5
#: Seconds between two SUBSCRIBE requests on USD-M (10 incoming messages/s, BFD; 15
#: back-to-back observed to pass, 40 to be closed): at most 5 per window plus a pong.
DEFAULT_USDM_SUBSCRIBE_SPACING: Final = 0.25
#: Quote assets tried, longest first, to split a native spot/USD-M name (``BTCUSDT`` ->
#: ``BTC-USDT``). Binance's exchangeInfo is the real source (``quoteAsset``); this covers
#: the quote assets Binance lists markets in, so no REST call is needed at startup.
# fmt: off
KNOWN_QUOTES: Final = tuple(sorted(
    ["USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "DAI", "BTC", "ETH", "BNB", "EUR",
     "GBP", "TRY", "BRL", "JPY", "AUD", "ZAR", "UAH", "RUB", "PLN", "RON", "ARS", "MXN",
     "COP", "CZK"],
    key=len, reverse=True,
))
# fmt: on

#: Stream suffix per channel.
CHANNEL_STREAM: Final = {"trades": "trade", "ticker": "bookTicker", "book": "depth@100ms"}
#: A native name as Binance lists it: no separator, no blanks, already upper case
#: (non-ASCII names exist, web-socket-streams.md: symbols are UTF-8).
#: Quote assets of USD-M perpetuals (https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info).
_USDM_QUOTES: Final = frozenset({"USDT", "USDC"})
_NATIVE: Final = re.compile(r"^[^\s@/!\-]+$")
DIFF_DEPTH: Final = re.compile(r"^depth(@\d+ms)?$")
PARTIAL_DEPTH: Final = re.compile(r"^depth(5|10|20)(@\d+ms)?$")
#: USD-M stream types served under /public since the 2026 URL split (GOB-809; ``trade``
#: per the RUSTRADE tier map). Depth types are matched by prefix.
_USDM_PUBLIC: Final = frozenset({"bookTicker", "trade"})
#: USD-M stream types served under /market (GOB-809, BFN).
# fmt: off
_USDM_MARKET: Final = frozenset(
    {"aggTrade", "markPrice", "markPrice@1s", "markPrice@arr", "markPrice@arr@1s", "ticker",
     "ticker@arr", "miniTicker", "miniTicker@arr", "forceOrder", "forceOrder@arr",
     "compositeIndex", "contractInfo", "assetIndex", "assetIndex@arr"}
)
# fmt: on
_USDM_MARKET_PREFIXES: Final = (
    "kline_",
    "continuousKline_",
    "indexPriceKline_",
    "markPriceKline_",
)


def split_native(native: str) -> str:
    """``BTCUSDT`` -> ``BTC-USDT`` by a known quote suffix; the native name if none fits."""
    return symbols.split_native(native, KNOWN_QUOTES)


def stream_type(topic: str) -> str:
    """``btcusdt@depth@100ms`` -> ``depth@100ms``; ``!markPrice@arr`` -> ``markPrice@arr``."""
    if topic.startswith("!"):
        return topic[1:]
    return topic.partition("@")[2]


def usdm_path(topic: str) -> str | None:
    """``/public`` or ``/market``: where a USD-M stream is served since 2026; None if unknown."""
    kind = stream_type(topic)
    if kind in _USDM_PUBLIC or kind.startswith("depth"):
        return "/public"
    if kind in _USDM_MARKET or kind.startswith(_USDM_MARKET_PREFIXES):
        return "/market"
    return None


def _few(names: Sequence[str]) -> str:
    """``a, b, c and 4 more``."""
    shown = ", ".join(names[:3])
    return shown if len(names) <= 3 else f"{shown} and {len(names) - 3} more"


def stream_symbol(symbol: str) -> str:
    """Config symbol -> the lower-case symbol in stream names (``BTC-USDT`` -> ``btcusdt``)."""
    parsed = parse_symbol(symbol)
    if parsed is not None:
        return f"{parsed.base}{parsed.quote}".lower()
    return symbol.lower()


def from_native(native: str, *, perp: bool) -> str:
    """The message symbol for a native name (``BTCUSDT`` -> ``BTC-USDT[-PERP]``)."""
    return symbols.from_native(native, KNOWN_QUOTES, perp=perp)


def topics_of(spec: ConnectionSpec) -> list[str]:
    """Every stream the spec subscribes, in order, without duplicates (unchecked)."""
    topics: dict[str, None] = {}
    for symbol in spec.symbols:
        name = stream_symbol(symbol)
        for channel in spec.channels:
            suffix = CHANNEL_STREAM.get(channel)
            if suffix is not None:
                topics[f"{name}@{suffix}"] = None
    for topic in spec.raw:
        topics[topic] = None
    return list(topics)


def _symbol_problem(symbol: str, *, perp: bool) -> str | None:
    """What is wrong with one configured symbol, or None."""
    parsed = parse_symbol(symbol)
    if parsed is not None:
        if parsed.perp and not perp:
            return (
                f"{symbol!r} is a perpetual swap (expected a spot symbol such as "
                f"BTC-USDT on exchange 'binance'; use exchange = 'binance_usdm' for "
                f"USD-M perpetuals)"
            )
        if perp and not parsed.perp:
            return (
                f"{symbol!r} is a spot symbol (expected a perpetual such as "
                f"{symbol}-PERP on exchange 'binance_usdm'; use exchange = 'binance' "
                f"for spot)"
            )
        if perp and parsed.quote not in _USDM_QUOTES:
            # USD-M acks any stream name and then sends nothing for it, so a wrong
            # quote would look live and then go stale over and over.
            return (
                f"{symbol!r} has no USD-M market (expected a USDT- or USDC-margined "
                f"perpetual such as {parsed.base}-USDT-PERP)"
            )
        return None
    example = "BTC-USDT-PERP or BTCUSDT" if perp else "BTC-USDT or BTCUSDT"
    if not _NATIVE.match(symbol) or symbol != symbol.upper():
        return (
            f"{symbol!r} is not a symbol (expected {example}: normalized, or "
            f"Binance's upper-case native name)"
        )
    if perp and "_" in symbol:
        return (
            f"{symbol!r} is a dated future (expected a perpetual such as {example}; "
            f"delivery contracts are not supported)"
        )
    return None


def _raw_problem(topic: str) -> str | None:
    if not topic or topic != topic.strip() or any(c.isspace() for c in topic):
        return f"{topic!r} is not a stream name (expected e.g. btcusdt@aggTrade)"
    if topic.startswith("!"):
        return None
    symbol, at, kind = topic.partition("@")
    if not at or not symbol or not kind:
        return f"{topic!r} is not a stream name (expected <symbol>@<type>, e.g. btcusdt@aggTrade)"
    if symbol != symbol.lower():
        return (
            f"{topic!r} has an upper-case symbol (expected {symbol.lower()}@{kind}: "
            f"Binance stream names use lower-case symbols)"
        )
    return None


def check(spec: ConnectionSpec, *, exchange: str, perp: bool) -> list[Problem]:
    """Problems only Binance can see: channels, symbols, raw names, stream count."""
    problems = check_channels(spec, CHANNEL_STREAM, raw="streams")
    for symbol in spec.symbols:
        problem = _symbol_problem(symbol, perp=perp)
        if problem is not None:
            problems.append(("symbols", problem))
    for topic in spec.raw:
        problem = _raw_problem(topic)
        if problem is not None:
            problems.append(("raw", problem))
    if spec.subscribe:
        problems.append(
            not_used(
                "subscribe",
                exchange,
                "it builds its SUBSCRIBE requests from channels, symbols and raw",
            )
        )
    if spec.heartbeat is not None:
        problems.append(
            not_used(
                "heartbeat",
                exchange,
                "Binance's server sends the pings and the WebSocket client answers them; "
                "remove the key",
            )
        )
    count = len(topics_of(spec))
    if count > DEFAULT_MAX_STREAMS:
        parts = -(-count // DEFAULT_MAX_STREAMS)
        problems.append(
            (
                "symbols",
                f"{count} streams (channels x symbols + raw) on one connection "
                f"(expected at most {DEFAULT_MAX_STREAMS}, Binance's limit per "
                f"connection; split the symbols over {parts} connections)",
            )
        )
    return problems


def check_usdm(spec: ConnectionSpec) -> list[Problem]:
    """The 2026 ``/public`` vs ``/market`` split: one connection reaches one of them."""
    problems: list[Problem] = []
    by_path: dict[str, list[str]] = {"/public": [], "/market": []}
    for topic in topics_of(spec):
        path = usdm_path(topic)
        if path is not None:
            by_path[path].append(topic)
    public, market = by_path["/public"], by_path["/market"]
    url_path = None
    if spec.url is not None:
        first = "/" + urlsplit(spec.url).path.lstrip("/").partition("/")[0]
        url_path = first if first in by_path else None
    if url_path is None and spec.url is None and public and market:
        problems.append(
            (
                "raw",
                f"{_few(market)} served under /market but {_few(public)} under /public "
                "since Binance's 2026 URL split; one connection reaches one of them "
                "(expected two connections: one for the /public streams, one for the "
                "/market streams)",
            )
        )
    elif url_path is not None:
        other = "/market" if url_path == "/public" else "/public"
        wrong = by_path[other]
        if wrong:
            problems.append(
                (
                    "url",
                    f"{url_path} does not serve {_few(wrong)} (served under {other} "
                    f"since Binance's 2026 URL split; expected a {other} URL, or two "
                    "connections)",
                )
            )
    return problems
