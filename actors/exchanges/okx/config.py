"""OKX configuration: limits, topic names, subscription plan and ``check()``.

Limits cite https://www.okx.com/docs-v5/en/#overview-websocket; the module docstring of
the package explains the topic names and the decisions where OKX is silent.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

import msgspec

from actors._spec import ConnectionSpec
from actors.exchanges.okx.wire import Arg
from actors.exchanges.sdk.checks import Problem, check_channels, not_used
from actors.exchanges.sdk.subscriptions import batches
from actors.exchanges.sdk.symbols import parse_symbol

__all__ = [
    "ARG_KEYS",
    "CHANNELS",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_REQUESTS_PER_WINDOW",
    "DEFAULT_REQUEST_WINDOW",
    "MAX_HEARTBEAT",
    "MESSAGE_PARAM",
    "RECONNECT_NOTICE",
    "REQUEST_ERRORS",
    "REQUEST_HEAD",
    "REQUEST_TAIL",
    "Plan",
    "Target",
    "arg_topic",
    "check",
    "normalize",
    "pack",
    "plan",
    "to_inst_id",
    "topic_of",
]

#: Seconds without a received frame before we send ``ping``, and then seconds to wait
#: for any frame before the session counts as dead. OKX: "set a timer of N seconds
#: (N < 30) ... if no pong within N seconds, reconnect"
#: (https://www.okx.com/docs-v5/en/#overview-websocket-connect); 25 leaves 5 s of margin
#: for latency before OKX's 30 s idle close. Without ``heartbeat`` in config the adapter
#: uses the smaller of this and half of ``stale_after`` (the ping is the liveness probe).
DEFAULT_HEARTBEAT: Final = 25.0
#: OKX closes a connection to which nothing was pushed for 30 s (close code 4004, "No
#: data received in 30s": https://www.okx.com/docs-v5/en/#error-code-websocket-public);
#: ``heartbeat`` must be below it.
MAX_HEARTBEAT: Final = 30.0
#: "The total length of multiple channels cannot exceed 64 KB"
#: (https://www.okx.com/docs-v5/en/#overview-websocket-subscribe); we measure the whole
#: UTF-8 frame, which is stricter.
DEFAULT_MAX_REQUEST_BYTES: Final = 64 * 1024
#: "480 'subscribe/unsubscribe/login' requests per hour per connection"
#: (https://www.okx.com/docs-v5/en/#overview-websocket-connect).
DEFAULT_REQUESTS_PER_WINDOW: Final = 480
#: The window of ``DEFAULT_REQUESTS_PER_WINDOW``, in seconds (one hour).
DEFAULT_REQUEST_WINDOW: Final = 3600.0
#: Normalized channel -> OKX channel.
CHANNELS: Final[dict[str, str]] = {"trades": "trades", "ticker": "tickers", "book": "books"}

#: OKX notice code announcing a disconnect for a service upgrade
#: (https://www.okx.com/docs-v5/en/#error-code-websocket-public).
RECONNECT_NOTICE: Final = "64008"
#: Error codes that reject a whole request rather than one of its args.
REQUEST_ERRORS: Final = frozenset({"60012", "60013", "60014", "60019"})
#: Arg keys besides ``channel`` a raw topic may give, in the order they are encoded.
ARG_KEYS: Final = ("instId", "instType", "instFamily", "ccy")
#: Native instIds accepted in config: swaps, dated futures, options.
_NATIVE: Final = re.compile(
    r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}-(?:SWAP|[0-9]{6}|[0-9]{6}-[0-9]+(?:\.[0-9]+)?-[CP])"
)
_CHANNEL_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_ARG_VALUE: Final = re.compile(r"[A-Za-z0-9_.-]+")
#: ``channel:books, instId:BTC-USDT`` as OKX writes them in error messages (60018).
MESSAGE_PARAM: Final = re.compile(
    r"\b(channel|instId|instType|instFamily|ccy)\s*:\s*([A-Za-z0-9_.-]+)"
)
REQUEST_HEAD: Final = '{"op":"subscribe","args":['
REQUEST_TAIL: Final = "]}"


def normalize(inst_id: str) -> str:
    """OKX instId -> normalized symbol (``-SWAP`` -> ``-PERP``; others unchanged)."""
    if inst_id.endswith("-SWAP"):
        return inst_id[:-5] + "-PERP"
    return inst_id


def to_inst_id(text: str) -> str | None:
    """Config symbol -> OKX instId, or None if ``text`` is in no recognisable form."""
    symbol = parse_symbol(text)
    if symbol is not None:
        return f"{symbol.base}-{symbol.quote}-SWAP" if symbol.perp else str(symbol)
    if _NATIVE.fullmatch(text):
        return text
    return None


#: An OKX dated future's instId ends in its delivery date: ``BTC-USD-250627``.
_DATED: Final = re.compile(r"-\d{6}$")


def inst_type(inst_id: str) -> str:
    """The ``instType`` an instId lists under (SPOT, SWAP, FUTURES or OPTION; reference
    §3.7: ``BTC-USDT``, ``BTC-USDT-SWAP``, ``BTC-USD-250627``, ``BTC-USD-250627-50000-C``)."""
    if inst_id.endswith("-SWAP"):
        return "SWAP"
    if inst_id.endswith(("-C", "-P")) and inst_id.count("-") >= 4:
        return "OPTION"
    if _DATED.search(inst_id):
        return "FUTURES"
    return "SPOT"


def topic_of(channel: str, params: dict[str, str]) -> str:
    """The native topic name of an arg (see the module docstring)."""
    if not params:
        return channel
    if len(params) == 1 and "instId" in params:
        return f"{channel}:{params['instId']}"
    return channel + ":" + ",".join(f"{k}={params[k]}" for k in ARG_KEYS if k in params)


def arg_topic(arg: Arg) -> str:
    params = {
        key: value
        for key, value in (
            ("instId", arg.instId),
            ("instType", arg.instType),
            ("instFamily", arg.instFamily),
            ("ccy", arg.ccy),
        )
        if value is not None
    }
    return topic_of(arg.channel, params)


def _parse_raw(text: str) -> tuple[str, dict[str, str]] | None:
    """``channel``, ``channel:instId`` or ``channel:key=value,...`` -> (channel, params)."""
    channel, sep, rest = text.partition(":")
    if not _CHANNEL_NAME.fullmatch(channel):
        return None
    if not sep:
        return channel, {}
    if "=" not in rest:
        return (channel, {"instId": rest}) if _ARG_VALUE.fullmatch(rest) else None
    params: dict[str, str] = {}
    for pair in rest.split(","):
        key, eq, value = pair.partition("=")
        if not eq or key not in ARG_KEYS or key in params or not _ARG_VALUE.fullmatch(value):
            return None
        params[key] = value
    return channel, {k: params[k] for k in ARG_KEYS if k in params}


class Target(NamedTuple):
    """One arg to subscribe: its topic and its JSON text."""

    topic: str
    arg: bytes


class Plan(NamedTuple):
    """What a spec subscribes, and what is wrong with it."""

    targets: list[Target]
    symbols: dict[str, str]
    problems: list[Problem]


def plan(spec: ConnectionSpec) -> Plan:
    """The args a spec subscribes, its instIds, and problems with symbols and raw topics."""
    problems: list[Problem] = []
    symbols: dict[str, str] = {}
    channels = list(dict.fromkeys(CHANNELS[c] for c in spec.channels if c in CHANNELS))
    for text in spec.symbols:
        inst_id = to_inst_id(text)
        if inst_id is None:
            problems.append(
                (
                    "symbols",
                    f"{text!r} is not an OKX instrument (expected BASE-QUOTE or "
                    "BASE-QUOTE-PERP such as BTC-USDT or BTC-USDT-PERP, or an OKX instId "
                    "such as BTC-USDT-SWAP or BTC-USD-250627)",
                )
            )
        else:
            symbols.setdefault(inst_id, normalize(inst_id))
    seen: set[str] = set()
    targets: list[Target] = []

    def add(channel: str, params: dict[str, str]) -> None:
        topic = topic_of(channel, params)
        if topic not in seen:
            seen.add(topic)
            targets.append(Target(topic, msgspec.json.encode({"channel": channel, **params})))

    for channel in channels:
        for inst_id in symbols:
            add(channel, {"instId": inst_id})
    for text in spec.raw:
        parsed = _parse_raw(text)
        if parsed is None:
            problems.append(
                (
                    "raw",
                    f"{text!r} is not an OKX topic (expected channel, channel:instId or "
                    "channel:key=value,... with keys instId, instType, instFamily, ccy; "
                    "e.g. 'books5:BTC-USDT' or 'instruments:instType=SPOT')",
                )
            )
            continue
        channel, params = parsed
        inst_id = params.get("instId")
        if inst_id is not None:
            symbols.setdefault(inst_id, normalize(inst_id))
        add(channel, params)
    return Plan(targets, symbols, problems)


def pack(
    targets: list[Target], max_bytes: int, *, op: str = "subscribe"
) -> list[tuple[str, tuple[str, ...]]]:
    """Pack args greedily, in order, into ``op`` frames of at most ``max_bytes``."""
    head = REQUEST_HEAD.replace("subscribe", op)
    args = {target.topic: target.arg for target in targets}
    groups = batches(
        [(target.topic, len(target.arg)) for target in targets],
        max_bytes=max_bytes - (len(head) - len(REQUEST_HEAD)),
        overhead=len(REQUEST_HEAD) + len(REQUEST_TAIL),
        separator=1,
    )
    return [
        (head + b",".join(args[t] for t in group).decode() + REQUEST_TAIL, tuple(group))
        for group in groups
    ]


def check(
    spec: ConnectionSpec, *, max_request_bytes: int, requests_per_window: int, window: float
) -> list[Problem]:
    """Problems with an OKX connection spec.

    Channels, symbols and raw topics; that there is something to subscribe (OKX closes a
    connection without subscriptions after 30 s); ``heartbeat`` below 30 s; and that the
    subscriptions fit in ``requests_per_window`` requests of at most
    ``max_request_bytes`` each.
    """
    problems: list[Problem] = []
    if spec.subscribe:
        problems.append(
            not_used(
                "subscribe",
                "okx",
                "list channels and symbols, or native topics in raw such as 'books5:BTC-USDT'",
            )
        )
    problems += check_channels(
        spec,
        CHANNELS,
        raw="topics",
        why_needed=": OKX closes a connection without subscriptions after 30 s",
    )
    planned = plan(spec)
    problems += planned.problems
    if spec.heartbeat is not None and spec.heartbeat >= MAX_HEARTBEAT:
        problems.append(
            (
                "heartbeat",
                f"{spec.heartbeat:g} s is too long (expected less than {MAX_HEARTBEAT:g} "
                "s: OKX closes a connection that was sent nothing for 30 s)",
            )
        )
    if problems:
        return problems
    for target in planned.targets:
        size = len(REQUEST_HEAD) + len(target.arg) + len(REQUEST_TAIL)
        if size > max_request_bytes:
            problems.append(
                (
                    "raw",
                    f"{target.topic!r} needs a {size} byte request on its own (expected "
                    f"at most {max_request_bytes} bytes per OKX subscribe request)",
                )
            )
    needed = len(pack(planned.targets, max_request_bytes))
    if needed > requests_per_window:
        problems.append(
            (
                "symbols" if spec.symbols else "raw",
                f"{len(planned.targets)} subscriptions need {needed} subscribe requests "
                f"(expected at most {requests_per_window}: OKX allows "
                f"{requests_per_window} per {window:g} s per "
                "connection; split them over several connections)",
            )
        )
    return problems
