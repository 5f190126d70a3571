"""OKX v5 public WebSocket adapter (``exchange = "okx"``).

Theory of operation
-------------------
OKX has one URL per service (``wss://ws.okx.com:8443/ws/v5/public`` for public market
data) and chooses streams by message: ``{"op":"subscribe","args":[{"channel":"trades",
"instId":"BTC-USDT"}, ...]}``. Every arg is answered by its own frame: an ack
``{"event":"subscribe","arg":{...}}`` or an error ``{"event":"error","code":"60018",
"msg":...}``, which, unlike the ack, does not say which arg it refuses. Data frames are
``{"arg":{"channel":..,"instId":..},"data":[...]}`` (book channels add ``"action"``).
https://www.okx.com/docs-v5/en/#overview-websocket-subscribe

Topics (the native names in stats) are ``channel:instId`` (``trades:BTC-USDT``), just
``channel`` for an arg without parameters (``status``), and
``channel:key=value,...`` for any other arg (``instruments:instType=SPOT``).

Hot path: every frame is decoded once by one envelope Struct whose ``data`` stays a
``msgspec.Raw`` slice; the envelope's ``arg.channel`` picks (one dict lookup) the typed
decoder for that slice, so the bytes of the data are parsed exactly once, whatever the
key order of the frame. The instrument is normalized with one dict lookup built from the
config.

Heartbeat (client-driven, text frames; OKX closes a connection to which nothing was
pushed for 30 s): ``heartbeat`` seconds (default 25, must be < 30) after the last
received frame the adapter sends the text ``ping``; the server answers the text ``pong``.
If no frame at all arrives within another ``heartbeat`` seconds, the adapter reports
``HeartbeatMissed``. ``pong`` is neither delivered nor counted as malformed.

Limits respected when subscribing (https://www.okx.com/docs-v5/en/#overview-websocket):
a subscribe request may not exceed 64 KB, so args are packed greedily into as few
requests as fit in :attr:`OkxProtocol.max_request_bytes` (the whole frame is measured,
which is stricter than measuring ``args`` alone); a connection may send 480
subscribe/unsubscribe requests per hour, so ``check()`` rejects a connection that would
need more than 480 requests. Every request of a checked connection therefore goes out at
the start of the session; should a spec bypass ``check()``, request ``k`` is held until
``start + (k // 480) * 3600`` (released through ``deadline()``/``tick()``), which still
never sends more than 480 in any hour of a session.

Decisions where the OKX documentation is silent:

- Symbols: ``BTC-USDT`` is spot as-is, ``BTC-USDT-PERP`` subscribes ``BTC-USDT-SWAP``.
  Native instIds are accepted in config too: ``BTC-USDT-SWAP`` (delivered as
  ``BTC-USDT-PERP``), dated futures ``BTC-USD-250627`` and options
  ``BTC-USD-250627-100000-C`` (no normalized form exists: delivered under the instId).
  Two config names for the same instrument subscribe it once.
- Channels: ``trades`` -> ``trades``, ``ticker`` -> ``tickers``, ``book`` -> ``books``
  (400 levels, snapshot then updates). ``raw`` topics of channels this adapter knows are
  decoded like them: ``trades-all`` as trades; ``books-l2-tbt``/``books50-l2-tbt`` as
  books; ``books5`` as a ``BookSnapshot`` per push; ``bbo-tbt`` as a ``Ticker``.
  Frames of any other channel are delivered as ``RawMessage`` (the whole frame).
- A ticker (or ``bbo-tbt``) without one side of the book (OKX sends ``""``/no level)
  yields no ``Ticker``: there is no best bid/ask to report. It is not malformed.
- Book sequencing: each update's ``prevSeqId`` must equal the previous ``seqId`` of the
  same channel and instId; otherwise a ``SequenceGap`` is reported once and tracking
  continues from the new ``seqId``. A snapshot restarts the chain. Frames without
  ``seqId`` (captures before 2023) and an update before any snapshot are not checked.
  The deprecated ``checksum`` is ignored (always 0 since 2026-06).
- Which subscription an error refuses: first from the message (OKX names
  ``channel:..., instId:...`` in 60018); else it answers the oldest request with
  unanswered args. Request-level codes (60012 invalid request, 60013 invalid args, 60014
  too frequent, 60019 invalid op) fail every unanswered arg of that request at once; any
  other error counts as one answer, and once every arg of the request is answered (or a
  later request gets an answer: OKX answers requests in order) the args still unacked
  fail with that error's code and message.
- An error while no subscription is outstanding is reported as ``MalformedFrame``
  (kind ``unexpected_error``) so that it is logged once and counted.
- Events: ``notice`` 64008 -> ``ReconnectRequested``. Other notices,
  ``channel-conn-count``, ``channel-conn-count-error``, ``unsubscribe``, ``login`` and any
  other event are ignored silently (they are valid OKX frames, not malformed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import ClassVar, Final, Literal, NamedTuple

import msgspec

from actors._spec import ConnectionSpec
from actors.exchanges.messages import (
    Batch,
    BookDelta,
    BookSnapshot,
    HeartbeatMissed,
    Level,
    Message,
    RawMessage,
    ReconnectRequested,
    SequenceGap,
    Ticker,
    Trade,
)
from actors.exchanges.sdk.pacing import Pacer
from actors.exchanges.sdk.protocol import ExchangeProtocol, Frame
from actors.exchanges.sdk.symbols import parse_symbol

__all__ = [
    "CHANNELS",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_REQUESTS_PER_WINDOW",
    "DEFAULT_REQUEST_WINDOW",
    "MAX_HEARTBEAT",
    "OkxProtocol",
]

#: Seconds without a received frame before we send ``ping``, and then seconds to wait
#: for any frame before the session counts as dead. OKX: "set a timer of N seconds
#: (N < 30) ... if no pong within N seconds, reconnect"
#: (https://www.okx.com/docs-v5/en/#overview-websocket-connect); 25 leaves 5 s of margin
#: for latency before OKX's 30 s idle close.
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
_RECONNECT_NOTICE: Final = "64008"
#: Error codes that reject a whole request rather than one of its args.
_REQUEST_ERRORS: Final = frozenset({"60012", "60013", "60014", "60019"})
#: Arg keys besides ``channel`` a raw topic may give, in the order they are encoded.
_ARG_KEYS: Final = ("instId", "instType", "instFamily", "ccy")
#: Native instIds accepted in config: swaps, dated futures, options.
_NATIVE: Final = re.compile(
    r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}-(?:SWAP|[0-9]{6}|[0-9]{6}-[0-9]+(?:\.[0-9]+)?-[CP])"
)
_CHANNEL_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_ARG_VALUE: Final = re.compile(r"[A-Za-z0-9_.-]+")
#: ``channel:books, instId:BTC-USDT`` as OKX writes them in error messages (60018).
_MESSAGE_PARAM: Final = re.compile(
    r"\b(channel|instId|instType|instFamily|ccy)\s*:\s*([A-Za-z0-9_.-]+)"
)
_REQUEST_HEAD: Final = '{"op":"subscribe","args":['
_REQUEST_TAIL: Final = "]}"
_PING: Final = "ping"
_EXCHANGE: Final = "okx"


# -- exchange payloads (unknown fields allowed: OKX adds fields) ------------------------


class _Arg(msgspec.Struct, gc=False):
    """The ``arg`` of a data frame or an ack."""

    channel: str
    instId: str | None = None
    instType: str | None = None
    instFamily: str | None = None
    ccy: str | None = None


_NO_DATA: Final = msgspec.Raw()


class _Envelope(msgspec.Struct, gc=False):
    """Every OKX frame: data (``arg`` + ``data`` [+ ``action``]) or an event."""

    arg: _Arg | None = None
    action: str | None = None
    data: msgspec.Raw = _NO_DATA
    event: str | None = None
    code: str | int | None = None
    msg: str = ""


class _Trade(msgspec.Struct, gc=False):
    """One entry of ``trades`` (``ts`` is a string of ms: decoded with strict=False)."""

    tradeId: str
    px: Decimal
    sz: Decimal
    side: Literal["buy", "sell"]
    ts: int


class _Tick(msgspec.Struct, gc=False):
    """The best bid/ask fields of ``tickers`` (``""`` when a side is empty)."""

    bidPx: str
    bidSz: str
    askPx: str
    askSz: str
    ts: int


class _Level(msgspec.Struct, array_like=True, gc=False):
    """``[px, sz, "0", numOrders]``: the trailing elements are ignored."""

    px: Decimal
    sz: Decimal


class _Book(msgspec.Struct, gc=False):
    """One entry of ``books``/``books5``/``bbo-tbt`` (seqIds absent before 2023)."""

    asks: list[_Level]
    bids: list[_Level]
    ts: int
    seqId: int | None = None
    prevSeqId: int | None = None


# -- config -> subscriptions ------------------------------------------------------------


def _normalize(inst_id: str) -> str:
    """OKX instId -> normalized symbol (``-SWAP`` -> ``-PERP``; others unchanged)."""
    if inst_id.endswith("-SWAP"):
        return inst_id[:-5] + "-PERP"
    return inst_id


def _native(text: str) -> str | None:
    """Config symbol -> OKX instId, or None if ``text`` is in no recognisable form."""
    symbol = parse_symbol(text)
    if symbol is not None:
        return f"{symbol.base}-{symbol.quote}-SWAP" if symbol.perp else str(symbol)
    if _NATIVE.fullmatch(text):
        return text
    return None


def _topic(channel: str, params: dict[str, str]) -> str:
    """The native topic name of an arg (see the module docstring)."""
    if not params:
        return channel
    if len(params) == 1 and "instId" in params:
        return f"{channel}:{params['instId']}"
    return channel + ":" + ",".join(f"{k}={params[k]}" for k in _ARG_KEYS if k in params)


def _arg_topic(arg: _Arg) -> str:
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
    return _topic(arg.channel, params)


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
        if not eq or key not in _ARG_KEYS or key in params or not _ARG_VALUE.fullmatch(value):
            return None
        params[key] = value
    return channel, {k: params[k] for k in _ARG_KEYS if k in params}


class _Target(NamedTuple):
    """One arg to subscribe: its topic and its JSON text."""

    topic: str
    arg: bytes


class _Plan(NamedTuple):
    """What a spec subscribes, and what is wrong with it."""

    targets: list[_Target]
    symbols: dict[str, str]
    problems: list[tuple[str, str]]


def _plan(spec: ConnectionSpec) -> _Plan:
    problems: list[tuple[str, str]] = []
    symbols: dict[str, str] = {}
    channels: list[str] = []
    for channel in spec.channels:
        native = CHANNELS.get(channel)
        if native is None:
            problems.append(
                ("channels", f"unknown channel {channel!r} (expected trades, ticker or book)")
            )
        elif native not in channels:
            channels.append(native)
    for text in spec.symbols:
        inst_id = _native(text)
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
            symbols.setdefault(inst_id, _normalize(inst_id))
    seen: set[str] = set()
    targets: list[_Target] = []

    def add(channel: str, params: dict[str, str]) -> None:
        topic = _topic(channel, params)
        if topic not in seen:
            seen.add(topic)
            targets.append(_Target(topic, msgspec.json.encode({"channel": channel, **params})))

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
            symbols.setdefault(inst_id, _normalize(inst_id))
        add(channel, params)
    return _Plan(targets, symbols, problems)


def _batch(targets: list[_Target], max_bytes: int) -> list[tuple[str, tuple[str, ...]]]:
    """Pack args greedily, in order, into subscribe frames of at most ``max_bytes``."""
    overhead = len(_REQUEST_HEAD) + len(_REQUEST_TAIL)
    requests: list[tuple[str, tuple[str, ...]]] = []
    args: list[bytes] = []
    topics: list[str] = []
    size = overhead

    def flush() -> None:
        frame = _REQUEST_HEAD + b",".join(args).decode() + _REQUEST_TAIL
        requests.append((frame, tuple(topics)))

    for target in targets:
        extra = len(target.arg) + (1 if args else 0)
        if args and size + extra > max_bytes:
            flush()
            args, topics, size, extra = [], [], overhead, len(target.arg)
        args.append(target.arg)
        topics.append(target.topic)
        size += extra
    if args:
        flush()
    return requests


class _Request:
    """One subscribe request of the session and how far OKX answered it."""

    __slots__ = ("answered", "error", "index", "topics")

    def __init__(self, index: int, topics: tuple[str, ...]) -> None:
        self.index = index
        self.topics = topics
        #: Args answered so far (acks and errors).
        self.answered = 0
        #: The last error that could not be tied to one arg: (code, message).
        self.error: tuple[str, str] | None = None


_Route = Callable[[_Arg, str | None, msgspec.Raw, float, Frame], Batch]


class OkxProtocol(ExchangeProtocol):
    """OKX v5 public market data: trades, best bid/ask, order books.

    Side effects for the caller (see :class:`ExchangeProtocol`): write
    :meth:`frames_to_send` (subscribe requests, paced; ``ping`` text frames), handle
    :meth:`events`, call :meth:`tick` by :meth:`deadline` (request pacing and the
    heartbeat).

    Class attributes (OKX's limits; a subclass may lower them):

    Attributes:
        max_request_bytes: largest subscribe frame, in UTF-8 bytes.
        requests_per_window: subscribe requests allowed per ``request_window``.
        request_window: seconds of that window.
    """

    exchange: ClassVar[str] = "okx"
    #: 3 connection attempts per second per IP (https://www.okx.com/docs-v5/en/#overview-websocket).
    connect_rate: ClassVar[tuple[int, float] | None] = (3, 1.0)
    default_url: ClassVar[str | None] = "wss://ws.okx.com:8443/ws/v5/public"
    max_request_bytes: ClassVar[int] = DEFAULT_MAX_REQUEST_BYTES
    requests_per_window: ClassVar[int] = DEFAULT_REQUESTS_PER_WINDOW
    request_window: ClassVar[float] = DEFAULT_REQUEST_WINDOW

    def __init__(self, spec: ConnectionSpec, *, pacer: Pacer | None = None) -> None:
        super().__init__(spec, pacer=pacer)
        plan = _plan(spec)
        self._symbols = plan.symbols
        self._requests_plan = _batch(plan.targets, self.max_request_bytes)
        self._heartbeat = spec.heartbeat if spec.heartbeat is not None else DEFAULT_HEARTBEAT
        self._name = spec.name
        self._decode = msgspec.json.Decoder(_Envelope).decode
        self._decode_trades = msgspec.json.Decoder(list[_Trade], strict=False).decode
        self._decode_ticks = msgspec.json.Decoder(list[_Tick], strict=False).decode
        self._decode_books = msgspec.json.Decoder(list[_Book], strict=False).decode
        self._decode_any = msgspec.json.Decoder().decode
        self._routes: dict[str, _Route] = {
            "trades": self._on_trades,
            "trades-all": self._on_trades,
            "tickers": self._on_tickers,
            "books": self._on_books,
            "books-l2-tbt": self._on_books,
            "books50-l2-tbt": self._on_books,
            "books5": self._on_books5,
            "bbo-tbt": self._on_bbo,
        }
        # Per session (reset by _on_start / _on_end).
        self._book_seqs: dict[tuple[str, str], int] = {}
        self._requests: list[_Request] = []
        self._request_of: dict[str, _Request] = {}
        self._last_rx = 0.0
        self._pinged = False
        self._ping_at = 0.0
        self._dead = True  # no heartbeat timer outside a session

    # -- configuration -----------------------------------------------------------------

    @classmethod
    def check(cls, spec: ConnectionSpec) -> list[tuple[str, str]]:
        """Problems with an OKX connection spec.

        Checks channels, symbols and raw topics; that there is something to subscribe
        (OKX closes a connection without subscriptions after 30 s); ``heartbeat`` below
        30 s; and that the subscriptions fit in ``requests_per_window`` requests of at
        most ``max_request_bytes`` each.

        Args:
            spec: the decoded connection.

        Returns:
            ``(key, problem)`` pairs; empty when the spec is usable.
        """
        problems = super().check(spec)
        if spec.subscribe:
            problems.append(
                (
                    "subscribe",
                    "not used by the okx adapter (list channels and symbols, or native "
                    "topics in raw such as 'books5:BTC-USDT')",
                )
            )
        plan = _plan(spec)
        problems.extend(plan.problems)
        if spec.heartbeat is not None and spec.heartbeat >= MAX_HEARTBEAT:
            problems.append(
                (
                    "heartbeat",
                    f"{spec.heartbeat:g} s is too long (expected less than {MAX_HEARTBEAT:g} "
                    "s: OKX closes a connection that was sent nothing for 30 s)",
                )
            )
        if plan.problems:
            return problems
        if not plan.targets:
            if spec.channels and not spec.symbols:
                problem = ("symbols", "missing (expected at least one symbol for the channels)")
            elif spec.symbols and not spec.channels:
                problem = ("channels", "missing (expected trades, ticker and/or book)")
            else:
                problem = (
                    "channels",
                    "nothing to subscribe (expected channels and symbols, or raw topics: "
                    "OKX closes a connection without subscriptions after 30 s)",
                )
            problems.append(problem)
            return problems
        for target in plan.targets:
            size = len(_REQUEST_HEAD) + len(target.arg) + len(_REQUEST_TAIL)
            if size > cls.max_request_bytes:
                problems.append(
                    (
                        "raw",
                        f"{target.topic!r} needs a {size} byte request on its own (expected "
                        f"at most {cls.max_request_bytes} bytes per OKX subscribe request)",
                    )
                )
        needed = len(_batch(plan.targets, cls.max_request_bytes))
        if needed > cls.requests_per_window:
            problems.append(
                (
                    "symbols" if spec.symbols else "raw",
                    f"{len(plan.targets)} subscriptions need {needed} subscribe requests "
                    f"(expected at most {cls.requests_per_window}: OKX allows "
                    f"{cls.requests_per_window} per {cls.request_window:g} s per "
                    "connection; split them over several connections)",
                )
            )
        return problems

    # -- session -----------------------------------------------------------------------

    def _on_start(self, now: float) -> None:
        self._book_seqs.clear()
        self._requests = []
        self._request_of = {}
        self._last_rx = now
        self._pinged = False
        self._dead = False
        limit = self.requests_per_window
        for index, (frame, topics) in enumerate(self._requests_plan):
            request = _Request(index, topics)
            self._requests.append(request)
            for topic in topics:
                self._request_of[topic] = request
            self._expect(topics)
            # All requests are queued at the start of a session, so spacing them by
            # whole windows keeps any window at or under the limit.
            self._send_at(now + (index // limit) * self.request_window, frame)

    def _on_end(self) -> None:
        self._book_seqs.clear()
        self._requests = []
        self._request_of = {}
        self._dead = True

    def _timer(self) -> float:
        if self._dead:
            return math.inf
        if self._pinged:
            return self._ping_at + self._heartbeat
        return self._last_rx + self._heartbeat

    def _on_tick(self, now: float) -> None:
        """Send ``ping`` after ``heartbeat`` s of silence; report a miss after another.

        Side effects for the caller: write the ``ping`` frame; a ``HeartbeatMissed``
        event means the session is dead.
        """
        if self._dead:
            return
        if self._pinged:
            if now >= self._ping_at + self._heartbeat:
                self._dead = True
                self._events.append(
                    HeartbeatMissed(
                        detail=f"no frame within {self._heartbeat:g} s of our ping "
                        "(OKX answers ping with pong)"
                    )
                )
        elif now >= self._last_rx + self._heartbeat:
            self._send(_PING)
            self._pinged = True
            self._ping_at = now

    # -- frames in ---------------------------------------------------------------------

    def receive_frame(self, data: Frame, now: float, received_at: float) -> Batch:
        """Decode one OKX frame.

        Returns:
            Trades, tickers, book snapshots/deltas, or raw messages of other channels;
            empty for control frames (acks, errors, notices, ``pong``).

        Side effects for the caller: ``Subscribed``/``SubscriptionFailed`` from acks and
        errors, ``SequenceGap``, ``ReconnectRequested`` (notice 64008) and
        ``MalformedFrame`` are queued in :meth:`events`.
        """
        self._last_rx = now
        self._pinged = False
        if len(data) == 4 and (data == "pong" or data == b"pong"):
            return ()
        try:
            envelope = self._decode(data)
        except msgspec.ValidationError as exc:
            self._malformed("invalid_frame", str(exc), data)
            return ()
        except msgspec.DecodeError as exc:
            self._malformed("invalid_json", str(exc), data)
            return ()
        raw = envelope.data
        if raw is not _NO_DATA:
            arg = envelope.arg
            if arg is None:
                self._malformed("invalid_frame", "data frame without arg", data)
                return ()
            route = self._routes.get(arg.channel)
            if route is None:
                return self._on_raw(data, received_at)
            return route(arg, envelope.action, raw, received_at, data)
        if envelope.event is not None:
            self._on_event(envelope, data)
            return ()
        self._malformed("unknown_frame", "neither data nor event", data)
        return ()

    def _symbol(self, inst_id: str) -> str:
        symbol = self._symbols.get(inst_id)
        return symbol if symbol is not None else _normalize(inst_id)

    def _on_trades(
        self, arg: _Arg, action: str | None, raw: msgspec.Raw, received_at: float, data: Frame
    ) -> Batch:
        inst_id = arg.instId
        if inst_id is None:
            self._malformed("invalid_data", f"{arg.channel} frame without instId", data)
            return ()
        try:
            entries = self._decode_trades(raw)
        except msgspec.DecodeError as exc:
            self._malformed("invalid_data", f"{arg.channel}: {exc}", data)
            return ()
        symbol = self._symbol(inst_id)
        name = self._name
        return tuple(
            [
                Trade(
                    connection=name,
                    exchange=_EXCHANGE,
                    received_at=received_at,
                    symbol=symbol,
                    side=entry.side,
                    price=entry.px,
                    amount=entry.sz,
                    trade_id=entry.tradeId,
                    timestamp=entry.ts,
                )
                for entry in entries
            ]
        )

    def _on_tickers(
        self, arg: _Arg, action: str | None, raw: msgspec.Raw, received_at: float, data: Frame
    ) -> Batch:
        inst_id = arg.instId
        if inst_id is None:
            self._malformed("invalid_data", f"{arg.channel} frame without instId", data)
            return ()
        try:
            entries = self._decode_ticks(raw)
        except msgspec.DecodeError as exc:
            self._malformed("invalid_data", f"{arg.channel}: {exc}", data)
            return ()
        symbol = self._symbol(inst_id)
        out: list[Message] = []
        for entry in entries:
            if not (entry.bidPx and entry.bidSz and entry.askPx and entry.askSz):
                continue  # one side of the book is empty: no best bid/ask to report
            try:
                ticker = Ticker(
                    connection=self._name,
                    exchange=_EXCHANGE,
                    received_at=received_at,
                    symbol=symbol,
                    bid=Decimal(entry.bidPx),
                    bid_size=Decimal(entry.bidSz),
                    ask=Decimal(entry.askPx),
                    ask_size=Decimal(entry.askSz),
                    timestamp=entry.ts,
                )
            except InvalidOperation:
                self._malformed("invalid_data", f"{arg.channel}: a price is not a number", data)
                return ()
            out.append(ticker)
        return tuple(out)

    def _decode_book(self, arg: _Arg, raw: msgspec.Raw, data: Frame) -> list[_Book] | None:
        if arg.instId is None:
            self._malformed("invalid_data", f"{arg.channel} frame without instId", data)
            return None
        try:
            return self._decode_books(raw)
        except msgspec.DecodeError as exc:
            self._malformed("invalid_data", f"{arg.channel}: {exc}", data)
            return None

    def _on_books(
        self, arg: _Arg, action: str | None, raw: msgspec.Raw, received_at: float, data: Frame
    ) -> Batch:
        if action != "update" and action != "snapshot":
            self._malformed(
                "invalid_data",
                f"{arg.channel} frame with action {action!r} (expected snapshot or update)",
                data,
            )
            return ()
        entries = self._decode_book(arg, raw, data)
        if entries is None:
            return ()
        inst_id = arg.instId
        assert inst_id is not None  # _decode_book checked it
        symbol = self._symbol(inst_id)
        key = (arg.channel, inst_id)
        seqs = self._book_seqs
        name = self._name
        out: list[Message] = []
        for entry in entries:
            bids: tuple[Level, ...] = tuple([(level.px, level.sz) for level in entry.bids])
            asks: tuple[Level, ...] = tuple([(level.px, level.sz) for level in entry.asks])
            seq = entry.seqId
            if action == "update":
                prev = entry.prevSeqId
                if seq is not None and prev is not None:
                    last = seqs.get(key)
                    if last is not None and prev != last:
                        self._events.append(
                            SequenceGap(symbol=symbol, expected=last, received=prev)
                        )
                    seqs[key] = seq
                out.append(
                    BookDelta(
                        connection=name,
                        exchange=_EXCHANGE,
                        received_at=received_at,
                        symbol=symbol,
                        bids=bids,
                        asks=asks,
                        sequence=seq,
                        prev_sequence=prev,
                        timestamp=entry.ts,
                    )
                )
            else:
                if seq is not None:
                    seqs[key] = seq
                else:
                    seqs.pop(key, None)
                out.append(
                    BookSnapshot(
                        connection=name,
                        exchange=_EXCHANGE,
                        received_at=received_at,
                        symbol=symbol,
                        bids=bids,
                        asks=asks,
                        sequence=seq,
                        timestamp=entry.ts,
                    )
                )
        return tuple(out)

    def _on_books5(
        self, arg: _Arg, action: str | None, raw: msgspec.Raw, received_at: float, data: Frame
    ) -> Batch:
        entries = self._decode_book(arg, raw, data)
        if entries is None:
            return ()
        assert arg.instId is not None
        symbol = self._symbol(arg.instId)
        return tuple(
            [
                BookSnapshot(
                    connection=self._name,
                    exchange=_EXCHANGE,
                    received_at=received_at,
                    symbol=symbol,
                    bids=tuple([(level.px, level.sz) for level in entry.bids]),
                    asks=tuple([(level.px, level.sz) for level in entry.asks]),
                    sequence=entry.seqId,
                    timestamp=entry.ts,
                )
                for entry in entries
            ]
        )

    def _on_bbo(
        self, arg: _Arg, action: str | None, raw: msgspec.Raw, received_at: float, data: Frame
    ) -> Batch:
        entries = self._decode_book(arg, raw, data)
        if entries is None:
            return ()
        assert arg.instId is not None
        symbol = self._symbol(arg.instId)
        return tuple(
            [
                Ticker(
                    connection=self._name,
                    exchange=_EXCHANGE,
                    received_at=received_at,
                    symbol=symbol,
                    bid=entry.bids[0].px,
                    bid_size=entry.bids[0].sz,
                    ask=entry.asks[0].px,
                    ask_size=entry.asks[0].sz,
                    timestamp=entry.ts,
                )
                for entry in entries
                if entry.bids and entry.asks
            ]
        )

    def _on_raw(self, data: Frame, received_at: float) -> Batch:
        # The envelope decoded, so the frame is valid JSON.
        return (
            RawMessage(
                connection=self._name,
                exchange=_EXCHANGE,
                received_at=received_at,
                data=self._decode_any(data),
            ),
        )

    # -- control frames ----------------------------------------------------------------

    def _on_event(self, envelope: _Envelope, data: Frame) -> None:
        event = envelope.event
        code = "" if envelope.code is None else str(envelope.code)
        if event == "subscribe":
            if envelope.arg is None:
                self._malformed("invalid_frame", "subscribe ack without arg", data)
            else:
                self._acked(_arg_topic(envelope.arg))
        elif event == "error":
            self._on_error(code, envelope.msg, data)
        elif event == "notice" and code == _RECONNECT_NOTICE:
            reason = f"OKX notice {code}: {envelope.msg}" if envelope.msg else f"OKX notice {code}"
            self._events.append(ReconnectRequested(reason=reason))
        # Anything else (unsubscribe acks, channel-conn-count, other notices) is valid
        # OKX traffic this adapter has no use for.

    def _acked(self, topic: str) -> None:
        request = self._request_of.get(topic)
        if request is None or topic not in self._pending:
            return  # not ours, or a repeated ack
        request.answered += 1
        # OKX answers requests in order: an answer to this one means earlier requests
        # will get no more answers.
        for earlier in self._requests[: request.index]:
            self._fail_rest(earlier)
        self._confirm((topic,))
        self._settle(request)

    def _on_error(self, code: str, message: str, data: Frame) -> None:
        topic = self._topic_named_in(message)
        if topic is not None:
            named = self._request_of[topic]
            named.answered += 1
            self._refuse(topic, code, message)
            self._settle(named)
            return
        request = next(
            (r for r in self._requests if any(t in self._pending for t in r.topics)), None
        )
        if request is None:
            self._malformed(
                "unexpected_error",
                f"OKX error {code} {message!r} while no subscription is outstanding",
                data,
            )
            return
        request.error = (code, message)
        if code in _REQUEST_ERRORS:
            self._fail_rest(request)
        else:
            request.answered += 1
            self._settle(request)

    def _topic_named_in(self, message: str) -> str | None:
        """The outstanding topic an error message names (``channel:x, instId:y``)."""
        params = dict(_MESSAGE_PARAM.findall(message))
        channel = params.pop("channel", None)
        if channel is None:
            return None
        topic = _topic(channel, {k: params[k] for k in _ARG_KEYS if k in params})
        return topic if topic in self._pending and topic in self._request_of else None

    def _settle(self, request: _Request) -> None:
        if request.answered >= len(request.topics):
            self._fail_rest(request)

    def _fail_rest(self, request: _Request) -> None:
        """Refuse the request's unacked args with its unattributed error, if any."""
        if request.error is None:
            return
        code, message = request.error
        for topic in request.topics:
            if topic in self._pending:
                self._refuse(topic, code, message)
