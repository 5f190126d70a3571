"""Deribit configuration: endpoints, limits, channel names, symbols and ``check()``.

Sources: https://docs.deribit.com/ (public/set_heartbeat, public/subscribe, rate limits);
the package docstring explains the decisions where Deribit is silent.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

from actors._spec import ConnectionSpec
from actors.exchanges.sdk.checks import Problem, check_channels, not_used
from actors.exchanges.sdk.symbols import parse_symbol

__all__ = [
    "CHANNELS",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_HEARTBEAT_TOLERANCE",
    "DEFAULT_SUBSCRIBE_BURST",
    "DEFAULT_SUBSCRIBE_RATE",
    "DEFAULT_URL",
    "MIN_HEARTBEAT",
    "PLATFORM_STATE",
    "SUBSCRIBE_BURST_USED",
    "SUBSCRIBE_SPACING",
    "TOO_MANY_REQUESTS",
    "ZERO",
    "check",
    "normalized",
    "to_native",
]

#: Production endpoint (https://docs.deribit.com/api-reference/session-management/public-set_heartbeat,
#: "servers"); testnet is ``wss://test.deribit.com/ws/api/v2``.
DEFAULT_URL: Final = "wss://www.deribit.com/ws/api/v2"
#: ``public/set_heartbeat`` takes an interval of at least 10 s
#: (https://docs.deribit.com/api-reference/session-management/public-set_heartbeat).
MIN_HEARTBEAT: Final = 10.0
#: Our heartbeat interval when config gives none: Deribit's minimum (the server's
#: ``test_request`` keeps the session's own liveness check; our probes, at half of
#: ``stale_after``, keep a quiet feed alive whatever the interval).
DEFAULT_HEARTBEAT: Final = 10.0
#: Heartbeat intervals without any frame after which the connection counts as dead.
DEFAULT_HEARTBEAT_TOLERANCE: Final = 2.0
#: ``public/subscribe`` burst: 30 000-credit pool / 3 000 credits per call
#: (https://docs.deribit.com/articles/rate-limits; nautilus ``nautilus_deribit`` quotas).
DEFAULT_SUBSCRIBE_BURST: Final = 10
#: ``public/subscribe`` sustained calls per second: 10 000 credits/s refill / 3 000 per call.
DEFAULT_SUBSCRIBE_RATE: Final = 10_000 / 3_000
#: Calls we send at once: half the burst, leaving room for jitter and a quick reconnect.
SUBSCRIBE_BURST_USED: Final = 5
#: Seconds between paced calls after the burst: 2.67 calls/s, 80 % of the sustained rate
#: (0.375 is exact in binary floating point, so schedules are exact too).
SUBSCRIBE_SPACING: Final = 0.375

#: Error code of a request refused for lack of credits; Deribit then terminates the
#: session (https://docs.deribit.com/articles/rate-limits).
TOO_MANY_REQUESTS: Final = 10028
ZERO: Final = Decimal(0)
#: Normalized channel -> Deribit channel for an instrument (100ms: the fastest interval
#: open to unauthenticated connections).
CHANNELS: Final = {
    "trades": "trades.{}.100ms",
    "ticker": "quote.{}",
    "book": "book.{}.100ms",
}
#: Config-time patterns of Deribit instrument names (never used per frame).
_NATIVE_PERP: Final = re.compile(r"^([A-Z0-9]+)(?:_([A-Z0-9]+))?-PERPETUAL$")
_NATIVE_SPOT: Final = re.compile(r"^([A-Z0-9]+)_([A-Z0-9]+)$")
_NATIVE_DATED: Final = re.compile(
    r"^[A-Z0-9]+(?:_[A-Z0-9]+)?-[0-9]{1,2}[A-Z]{3}[0-9]{2}(?:-[0-9]+(?:d[0-9]+)?-[CP])?$"
)
PLATFORM_STATE: Final = "platform_state"


def to_native(symbol: str) -> str | None:
    """The Deribit instrument for a config symbol (normalized or native), or None."""
    if _NATIVE_PERP.match(symbol) or _NATIVE_SPOT.match(symbol) or _NATIVE_DATED.match(symbol):
        return symbol
    parsed = parse_symbol(symbol)
    if parsed is None:
        return None
    if parsed.perp:
        if parsed.quote == "USD":
            return f"{parsed.base}-PERPETUAL"
        return f"{parsed.base}_{parsed.quote}-PERPETUAL"
    return f"{parsed.base}_{parsed.quote}"


def normalized(native: str) -> str:
    """The message symbol for a Deribit instrument; dated futures and options unchanged."""
    match = _NATIVE_PERP.match(native)
    if match is not None:
        return f"{match[1]}-{match[2] or 'USD'}-PERP"
    match = _NATIVE_SPOT.match(native)
    if match is not None:
        return f"{match[1]}-{match[2]}"
    return native


def check(spec: ConnectionSpec) -> list[Problem]:
    """Problems with ``spec`` that only the Deribit adapter can see.

    Unknown channels, symbols that are neither normalized nor Deribit instruments,
    two symbols naming one instrument, nothing to subscribe, ``raw`` channels that
    need authentication (``.raw``) or repeat a configured one, ``subscribe`` frames
    (not used), and a heartbeat below Deribit's minimum. Any ``stale_after`` is valid:
    the connection is probed (``public/test``) after half of it without a frame, so the
    heartbeat interval need not be below it.
    """
    problems: list[Problem] = []
    if spec.subscribe:
        problems.append(
            not_used(
                "subscribe",
                "deribit",
                "list native Deribit channels in raw, e.g. 'deribit_price_index.btc_usd'",
            )
        )
    problems += check_channels(spec, CHANNELS, raw="Deribit channels")
    natives: dict[str, str] = {}
    for symbol in spec.symbols:
        native = to_native(symbol)
        if native is None:
            problems.append(
                (
                    "symbols",
                    f"{symbol!r} is neither a normalized symbol nor a Deribit instrument "
                    "(expected e.g. BTC-USD-PERP, BTC-USDC-PERP, BTC-USDC, BTC-PERPETUAL, "
                    "BTC_USDC-PERPETUAL, BTC_USDC or BTC-27DEC24)",
                )
            )
        elif native in natives:
            problems.append(
                (
                    "symbols",
                    f"{natives[native]!r} and {symbol!r} are the same Deribit instrument "
                    f"{native!r} (keep one)",
                )
            )
        else:
            natives[native] = symbol
    generated = {
        CHANNELS[channel].format(native)
        for channel in spec.channels
        if channel in CHANNELS
        for native in natives
    }
    seen: set[str] = set()
    for topic in spec.raw:
        if not topic or topic != topic.strip() or " " in topic:
            problems.append(
                (
                    "raw",
                    f"{topic!r} is not a Deribit channel name (expected e.g. "
                    "'ticker.BTC-PERPETUAL.100ms' or 'platform_state')",
                )
            )
        elif topic.endswith(".raw"):
            problems.append(
                (
                    "raw",
                    f"{topic!r} needs an authenticated connection: Deribit refuses .raw "
                    "channels to unauthorized clients (13778 "
                    "raw_subscriptions_not_available_for_unauthorized) and this adapter "
                    f"does not log in (expected the 100ms or agg2 interval, e.g. "
                    f"{topic[: -len('.raw')] + '.100ms'!r})",
                )
            )
        elif topic in generated:
            problems.append(
                (
                    "raw",
                    f"{topic!r} is already subscribed through channels and symbols "
                    "(remove it from raw)",
                )
            )
        elif topic in seen:
            problems.append(("raw", f"{topic!r} is listed twice (keep one)"))
        seen.add(topic)
    heartbeat = spec.heartbeat
    if heartbeat is not None and heartbeat < MIN_HEARTBEAT:
        problems.append(
            (
                "heartbeat",
                f"{heartbeat:g} s is below Deribit's minimum public/set_heartbeat "
                f"interval (expected at least {MIN_HEARTBEAT:g} s)",
            )
        )
    return problems
