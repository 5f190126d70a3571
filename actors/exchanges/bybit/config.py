"""Bybit configuration: limits, topic names, symbols and ``check()``.

Sources are in docs/exchanges/bybit.md (§ numbers below).
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from actors._spec import ConnectionSpec
from actors.exchanges.sdk import symbols
from actors.exchanges.sdk.checks import Problem, check_channels, not_used
from actors.exchanges.sdk.symbols import parse_symbol

__all__ = [
    "CHANNEL_TOPICS",
    "DEFAULT_HEARTBEAT",
    "IDLE_CLOSE",
    "KNOWN_QUOTES",
    "MAX_ARGS",
    "MAX_ARGS_CHARS",
    "check",
    "from_native",
    "to_native",
    "topics_of",
]

#: "Spot can input up to 10 args for each subscription request" (§3); linear documents
#: no limit, and clients batch both by 10, so one value serves both.
MAX_ARGS: Final = 10
#: "For one public connection, you cannot have length of "args" array over 21,000
#: characters" (§3); whether per request or per connection is unconfirmed, so the
#: stricter reading is checked: all of a connection's topics together.
MAX_ARGS_CHARS: Final = 21_000
#: Seconds between our ``{"op":"ping"}``: Bybit recommends 20 s (§4). Without
#: ``heartbeat`` in config the adapter uses the smaller of this and half of
#: ``stale_after`` (the ping is the liveness probe).
DEFAULT_HEARTBEAT: Final = 20.0
#: Bybit cuts a connection with neither ping nor data for 10 minutes (§4).
IDLE_CLOSE: Final = 600.0
#: Normalized channel -> topic template. Spot tickers carry no best bid/ask (§6.2), so
#: ``ticker`` is the top of book, ``orderbook.1``, on both categories.
CHANNEL_TOPICS: Final = {
    "trades": "publicTrade.{}",
    "ticker": "orderbook.1.{}",
    "book": "orderbook.50.{}",
}
#: Quote assets tried, longest first, to split a native name (``BTCUSDT`` -> BTC-USDT).
KNOWN_QUOTES: Final = ("USDT", "USDC", "USDE", "EUR", "BRL", "BTC", "ETH", "DAI", "MNT")
#: Depths served on spot and linear (§5; linear 500 is gone since 2025).
_DEPTHS: Final = frozenset({"1", "50", "200", "1000"})
_NATIVE: Final = re.compile(r"^[A-Z0-9]{2,30}$")
#: Topic family -> how many dot-separated parts follow it (``kline.5.BTCUSDT``: 2).
_FAMILIES: Final = {"publicTrade": 1, "tickers": 1, "orderbook": 2, "kline": 2, "allLiquidation": 1}


def to_native(symbol: str, *, perp: bool) -> str | None:
    """Config symbol -> Bybit's name (``BTC-USDT[-PERP]`` -> ``BTCUSDT``), or None."""
    parsed = parse_symbol(symbol)
    if parsed is not None:
        return f"{parsed.base}{parsed.quote}" if parsed.perp == perp else None
    return symbol if _NATIVE.match(symbol) else None


def from_native(native: str, *, perp: bool) -> str:
    """Bybit's name -> the message symbol (the native name when no quote splits it)."""
    return symbols.from_native(native, KNOWN_QUOTES, perp=perp)


def topics_of(spec: ConnectionSpec, *, perp: bool) -> dict[str, str]:
    """Every topic the spec subscribes -> the native symbol it carries ("" if unknown)."""
    topics: dict[str, str] = {}
    for symbol in spec.symbols:
        native = to_native(symbol, perp=perp)
        for channel in spec.channels:
            template = CHANNEL_TOPICS.get(channel)
            if native is not None and template is not None:
                topics[template.format(native)] = native
    for topic in spec.raw:
        topics.setdefault(topic, topic.rpartition(".")[2])
    return topics


def _raw_problem(topic: str) -> str | None:
    family, _, rest = topic.partition(".")
    parts = rest.split(".")
    if _FAMILIES.get(family) != len(parts) or not rest or not _NATIVE.match(parts[-1]):
        return (
            f"{topic!r} is not a Bybit public topic (expected e.g. 'tickers.BTCUSDT', "
            "'orderbook.200.BTCUSDT' or 'publicTrade.BTCUSDT', symbols in upper case)"
        )
    if family == "orderbook" and parts[0] not in _DEPTHS:
        return f"{topic!r} has no depth Bybit serves (expected orderbook.1|50|200|1000.SYMBOL)"
    return None


def check(spec: ConnectionSpec, *, exchange: str, perp: bool) -> list[Problem]:
    """Problems only Bybit can see: symbols of the wrong category, raw topics, heartbeat."""
    problems = check_channels(spec, CHANNEL_TOPICS, raw="topics")
    example, other = ("BTC-USDT-PERP", "bybit") if perp else ("BTC-USDT", "bybit_linear")
    for symbol in spec.symbols:
        if to_native(symbol, perp=perp) is None:
            problems.append(
                (
                    "symbols",
                    f"{symbol!r} is not a {exchange} symbol (expected {example} or Bybit's "
                    f"upper-case name such as BTCUSDT; use exchange = '{other}' for "
                    f"{'spot' if perp else 'linear perpetuals'})",
                )
            )
    problems += [("raw", p) for p in map(_raw_problem, spec.raw) if p is not None]
    chars = len(msgspec.json.encode(list(topics_of(spec, perp=perp))))
    if chars > MAX_ARGS_CHARS:
        problems.append(
            (
                "symbols" if spec.symbols else "raw",
                f"the topics need {chars} characters of args (expected at most "
                f"{MAX_ARGS_CHARS} per connection, Bybit's limit; split the symbols over "
                "several connections)",
            )
        )
    if spec.subscribe:
        problems.append(not_used("subscribe", exchange, "list channels and symbols, or raw"))
    if spec.heartbeat is not None and spec.heartbeat >= IDLE_CLOSE:
        problems.append(
            (
                "heartbeat",
                f"{spec.heartbeat:g} s is too long (expected less than {IDLE_CLOSE:g} s: "
                "Bybit cuts a connection without ping or data for 10 minutes)",
            )
        )
    return problems
