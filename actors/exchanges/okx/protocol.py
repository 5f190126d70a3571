"""The OKX adapter: the hot path, acks in order, notices and the text heartbeat.

See the package docstring for the theory of operation; limits, topics and ``check()``
are in :mod:`.config`, frame Structs in :mod:`.wire`.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import ClassVar, TypeVar

import msgspec

from actors._spec import ConnectionSpec
from actors.exchanges.messages import Batch, BookSnapshot, Level, Message, ReconnectRequested
from actors.exchanges.okx import config, wire
from actors.exchanges.sdk.booksync import OKX, SyncRule
from actors.exchanges.sdk.heartbeat import ClientPing, Heartbeat
from actors.exchanges.sdk.pacing import Pacer, WindowPacer
from actors.exchanges.sdk.protocol import ExchangeProtocol, Frame
from actors.exchanges.sdk.rest import INSTRUMENTS, TIME, RestCall

__all__ = ["OkxProtocol"]

#: Channels whose frames become BookSnapshot/BookDelta messages.
_BOOK_CHANNELS = frozenset({"books", "books-l2-tbt", "books50-l2-tbt", "books5"})

_E = TypeVar("_E")
_Route = Callable[[wire.Arg, str | None, msgspec.Raw, float, Frame], Batch]


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
    rest_venue: ClassVar[str | None] = "okx"
    #: https://www.okx.com/docs-v5/en/#overview-production-trading-services
    rest_url: ClassVar[str | None] = "https://www.okx.com"
    #: The ``books`` stream's snapshot, or a REST one when the stream sends none.
    book_rule: ClassVar[SyncRule | None] = OKX
    #: ``data[0]`` = ``{asks, bids, ts, seqId}``, 40 requests per 2 s per IP (reference §3.6).
    rest_books_path: ClassVar[str] = "/api/v5/market/books"
    #: Levels per side the REST book holds at most.
    rest_books_max: ClassVar[int] = 400
    max_request_bytes: ClassVar[int] = config.DEFAULT_MAX_REQUEST_BYTES
    requests_per_window: ClassVar[int] = config.DEFAULT_REQUESTS_PER_WINDOW
    request_window: ClassVar[float] = config.DEFAULT_REQUEST_WINDOW

    def __init__(self, spec: ConnectionSpec, *, pacer: Pacer | None = None) -> None:
        super().__init__(spec, pacer=pacer)
        self._window = WindowPacer(self.requests_per_window, self.request_window)
        self._symbols: dict[str, str] = {}
        self._targets: dict[str, config.Target] = {}
        #: Every arg ever planned (so a topic dropped at run time can be unsubscribed).
        self._known: dict[str, config.Target] = {}
        self._configure(spec)
        self._decode = msgspec.json.Decoder(wire.Envelope).decode
        self._decode_trades = msgspec.json.Decoder(list[wire.TradeEntry], strict=False).decode
        self._decode_ticks = msgspec.json.Decoder(list[wire.Tick], strict=False).decode
        self._decode_books = msgspec.json.Decoder(list[wire.Book], strict=False).decode
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

    @classmethod
    def _check(cls, spec: ConnectionSpec) -> list[tuple[str, str]]:
        return config.check(
            spec,
            max_request_bytes=cls.max_request_bytes,
            requests_per_window=cls.requests_per_window,
            window=cls.request_window,
        )

    def _heartbeat(self) -> Heartbeat:
        every = self.spec.heartbeat
        if every is None:
            # Our ping is the connection's liveness probe too: after half of
            # stale_after without a frame at the latest, so a quiet feed is never stale.
            every = min(config.DEFAULT_HEARTBEAT, self.spec.stale_after / 2)
        return ClientPing(
            every,
            "ping",
            idle=True,
            detail=f"no frame within {every:g} s of our ping (OKX answers ping with pong)",
        )

    def _probe_frame(self, now: float) -> Frame | None:
        return "ping"  # answered with the text "pong"

    # -- session -----------------------------------------------------------------------

    def _configure(self, spec: ConnectionSpec) -> None:
        plan = config.plan(spec)
        self._symbols = plan.symbols
        self._targets = {target.topic: target for target in plan.targets}
        self._known.update(self._targets)

    def topics(self) -> list[str]:
        return list(self._targets)

    # -- REST ------------------------------------------------------------------------

    def _time_call(self) -> RestCall | None:
        # {"code":"0","msg":"","data":[{"ts":"<ms>"}]} (reference §3.6)
        return RestCall(purpose=TIME, path="/api/v5/public/time")

    def _server_time(self, body: object) -> float | None:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            return None
        ts = data[0].get("ts")
        return int(ts) / 1000 if isinstance(ts, str) and ts.isdigit() else None

    def _instrument_calls(self) -> list[RestCall]:
        # One list per instType (rule "IP + Instrument Type", 20 per 2 s).
        kinds = dict.fromkeys(config.inst_type(native) for native in self._symbol_topics())
        return [
            RestCall(
                purpose=f"{INSTRUMENTS} {kind}",
                path="/api/v5/public/instruments",
                params=(("instType", kind),),
            )
            for kind in kinds
        ]

    def _listed_names(self, call: RestCall, body: object) -> list[str] | None:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            return None
        return [i["instId"] for i in data if isinstance(i, dict) and "instId" in i]

    def _symbol_topics(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for topic in self._targets:
            _, _, inst_id = topic.partition(":")
            if inst_id in self._symbols:
                out.setdefault(inst_id, []).append(topic)
        return out

    # -- local books ------------------------------------------------------------------

    def _book_topics(self) -> dict[str, str]:
        prefix = config.CHANNELS["book"] + ":"
        return {
            self._symbol(topic[len(prefix) :]): topic
            for topic in self._targets
            if topic.startswith(prefix)
        }

    def _book_streams(self) -> dict[str, str]:
        out = {}
        for topic in self._targets:
            channel, _, inst_id = topic.partition(":")
            if channel in _BOOK_CHANNELS and inst_id:
                out[topic] = self._symbol(inst_id)
        return out

    def book_snapshot_call(self, symbol: str) -> RestCall | None:
        topic = self.book_topics().get(symbol)
        if topic is None:
            return None
        size = min(self.spec.book_depth, self.rest_books_max)
        return RestCall(
            purpose=f"book {symbol}",
            path=self.rest_books_path,
            params=(("instId", topic.partition(":")[2]), ("sz", str(size)), ("source", "0")),
        )

    def book_snapshot(self, symbol: str, body: object, received_at: float) -> BookSnapshot:
        try:
            answer = msgspec.convert(body, wire.RestBooks, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(f"{self.rest_books_path}: not a book ({exc})") from None
        if answer.code != "0" or not answer.data:
            raise ValueError(
                f"{self.rest_books_path}: OKX answered code {answer.code} {answer.msg!r}"
            )
        entry = answer.data[0]
        if entry.seqId is None:
            raise ValueError(f"{self.rest_books_path}: the book carries no seqId to sync on")
        return self.stamp.snapshot(
            received_at,
            symbol,
            tuple([(level.px, level.sz) for level in entry.bids]),
            tuple([(level.px, level.sz) for level in entry.asks]),
            entry.seqId,
            entry.ts,
        )

    def _on_start(self, now: float) -> None:
        # All requests are queued at the start of a session; the window pacer keeps any
        # window at or under OKX's per-connection request limit (subscribe and
        # unsubscribe requests count alike).
        self._window.reset()
        super()._on_start(now)

    def _subscribe(self, now: float, topics: list[str]) -> None:
        targets = [self._targets[topic] for topic in topics]
        for frame, group in config.pack(targets, self.max_request_bytes):
            self.book.request(group)
            self.send_at(self._window.reserve(now), frame)

    def _unsubscribe(self, now: float, topics: list[str]) -> None:
        # OKX answers each arg with an "unsubscribe" event, in order with the others.
        targets = [self._known[topic] for topic in topics]
        for frame, group in config.pack(targets, self.max_request_bytes, op="unsubscribe"):
            self.book.request(group, "unsubscribe")
            self.send_at(self._window.reserve(now), frame)

    # -- frames in ---------------------------------------------------------------------

    def decode(self, data: Frame, now: float, received_at: float) -> Batch:
        """Decode one OKX frame.

        Returns:
            Trades, tickers, book snapshots/deltas, or raw messages of other channels;
            empty for control frames (acks, errors, notices, ``pong``).

        Side effects for the caller: ``Subscribed``/``SubscriptionFailed`` from acks and
        errors, ``SequenceGap``, ``ReconnectRequested`` (notice 64008) and
        ``MalformedFrame`` are queued in :meth:`events`.
        """
        if len(data) == 4 and (data == "pong" or data == b"pong"):
            self.probe_answered()
            return ()
        envelope = self.parse(self._decode, data)
        if envelope is None:
            return ()
        raw = envelope.data
        if raw is not wire.NO_DATA:
            arg = envelope.arg
            if arg is None:
                self.malformed("invalid_frame", "data frame without arg", data)
                return ()
            inst_id = arg.instId
            if (
                inst_id is not None
                and arg.instType is None
                and arg.instFamily is None
                and arg.ccy is None
            ):
                self.heard(f"{arg.channel}:{inst_id}")  # config.topic_of, inlined
            else:
                self.heard(config.arg_topic(arg))
            route = self._routes.get(arg.channel)
            if route is None:
                return self._on_raw(data, received_at)
            return route(arg, envelope.action, raw, received_at, data)
        if envelope.event is not None:
            self._on_event(envelope, data)
            return ()
        self.malformed("unknown_frame", "neither data nor event", data)
        return ()

    def _symbol(self, inst_id: str) -> str:
        symbol = self._symbols.get(inst_id)
        return symbol if symbol is not None else config.normalize(inst_id)

    def _on_trades(
        self, arg: wire.Arg, action: str | None, raw: msgspec.Raw, received_at: float, data: Frame
    ) -> Batch:
        entries = self._entries(arg, raw, data, self._decode_trades)
        if entries is None:
            return ()
        symbol = self._symbol(arg.instId or "")
        trade = self.stamp.trade
        return tuple(
            [trade(received_at, symbol, e.side, e.px, e.sz, e.tradeId, e.ts) for e in entries]
        )

    def _on_tickers(
        self, arg: wire.Arg, action: str | None, raw: msgspec.Raw, received_at: float, data: Frame
    ) -> Batch:
        entries = self._entries(arg, raw, data, self._decode_ticks)
        if entries is None:
            return ()
        symbol = self._symbol(arg.instId or "")
        out: list[Message] = []
        for entry in entries:
            if not (entry.bidPx and entry.bidSz and entry.askPx and entry.askSz):
                continue  # one side of the book is empty: no best bid/ask to report
            try:
                ticker = self.stamp.ticker(
                    received_at,
                    symbol,
                    Decimal(entry.bidPx),
                    Decimal(entry.bidSz),
                    Decimal(entry.askPx),
                    Decimal(entry.askSz),
                    entry.ts,
                )
            except InvalidOperation:
                self.malformed("invalid_data", f"{arg.channel}: a price is not a number", data)
                return ()
            out.append(ticker)
        return tuple(out)

    def _decode_book(self, arg: wire.Arg, raw: msgspec.Raw, data: Frame) -> list[wire.Book] | None:
        return self._entries(arg, raw, data, self._decode_books)

    def _entries(
        self, arg: wire.Arg, raw: msgspec.Raw, data: Frame, decode: Callable[[msgspec.Raw], _E]
    ) -> _E | None:
        """A data frame's entries, or None once reported (no instId, wrong shape)."""
        if arg.instId is None:
            self.malformed("invalid_data", f"{arg.channel} frame without instId", data)
            return None
        try:
            return decode(raw)
        except msgspec.DecodeError as exc:
            self.malformed("invalid_data", f"{arg.channel}: {exc}", data)
            return None

    def _on_books(
        self, arg: wire.Arg, action: str | None, raw: msgspec.Raw, received_at: float, data: Frame
    ) -> Batch:
        if action != "update" and action != "snapshot":
            self.malformed(
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
        stamp = self.stamp
        out: list[Message] = []
        # Every message is built (so checked) before the chain moves: a refused frame
        # leaves it in place.
        for entry in entries:
            bids: tuple[Level, ...] = tuple([(level.px, level.sz) for level in entry.bids])
            asks: tuple[Level, ...] = tuple([(level.px, level.sz) for level in entry.asks])
            if action == "update":
                delta = stamp.delta(
                    received_at,
                    symbol,
                    bids,
                    asks,
                    entry.seqId,
                    entry.prevSeqId,
                    entry.ts,
                    checksum=entry.checksum,
                )
                out.append(delta)
            else:
                out.append(
                    stamp.snapshot(
                        received_at,
                        symbol,
                        bids,
                        asks,
                        entry.seqId,
                        entry.ts,
                        checksum=entry.checksum,
                    )
                )
        for entry in entries:
            seq = entry.seqId
            if action != "update":
                self.chains.start(key, seq)
            elif seq is not None and entry.prevSeqId is not None:
                self.chain(key, symbol, entry.prevSeqId, seq)
        return tuple(out)

    def _on_books5(
        self, arg: wire.Arg, action: str | None, raw: msgspec.Raw, received_at: float, data: Frame
    ) -> Batch:
        entries = self._decode_book(arg, raw, data)
        if entries is None:
            return ()
        assert arg.instId is not None
        symbol = self._symbol(arg.instId)
        return tuple(
            [
                self.stamp.snapshot(
                    received_at,
                    symbol,
                    tuple([(level.px, level.sz) for level in entry.bids]),
                    tuple([(level.px, level.sz) for level in entry.asks]),
                    entry.seqId,
                    entry.ts,
                )
                for entry in entries
            ]
        )

    def _on_bbo(
        self, arg: wire.Arg, action: str | None, raw: msgspec.Raw, received_at: float, data: Frame
    ) -> Batch:
        entries = self._decode_book(arg, raw, data)
        if entries is None:
            return ()
        assert arg.instId is not None
        symbol = self._symbol(arg.instId)
        return tuple(
            [
                self.stamp.ticker(
                    received_at,
                    symbol,
                    entry.bids[0].px,
                    entry.bids[0].sz,
                    entry.asks[0].px,
                    entry.asks[0].sz,
                    entry.ts,
                )
                for entry in entries
                if entry.bids and entry.asks
            ]
        )

    def _on_raw(self, data: Frame, received_at: float) -> Batch:
        # The envelope decoded, so the frame is valid JSON.
        return (self.stamp.raw(received_at, self._decode_any(data)),)

    # -- control frames ----------------------------------------------------------------

    def _on_event(self, envelope: wire.Envelope, data: Frame) -> None:
        event = envelope.event
        code = "" if envelope.code is None else str(envelope.code)
        if event == "subscribe":
            if envelope.arg is None:
                self.malformed("invalid_frame", "subscribe ack without arg", data)
            else:
                # OKX answers requests in order: an answer to one means earlier requests
                # will get no more answers.
                self.report(self.book.ack_in_order(config.arg_topic(envelope.arg)))
        elif event == "unsubscribe" and envelope.arg is not None:
            self.report(self.book.unsubscribed_in_order(config.arg_topic(envelope.arg)))
        elif event == "error":
            self._on_error(code, envelope.msg, data)
        elif event == "notice" and code == config.RECONNECT_NOTICE:
            reason = f"OKX notice {code}: {envelope.msg}" if envelope.msg else f"OKX notice {code}"
            self.emit(ReconnectRequested(reason=reason))
        # Anything else (channel-conn-count, other notices) is valid OKX traffic this
        # adapter has no use for.

    def _on_error(self, code: str, message: str, data: Frame) -> None:
        topic = self._topic_named_in(message)
        if topic is not None:
            named = self.book.refuse_named(topic, code, message)
            if named is not None:
                self.report(named)
                return
        answered = self.book.error_in_order(
            code, message, whole_request=code in config.REQUEST_ERRORS
        )
        if answered is None:
            self.malformed(
                "unexpected_error",
                f"OKX error {code} {message!r} while no subscription is outstanding",
                data,
            )
            return
        request, outcomes = answered
        if request.method == "unsubscribe":
            self.malformed("request_failed", f"unsubscribe failed: {code} {message}", data)
        self.report(outcomes)

    @staticmethod
    def _topic_named_in(message: str) -> str | None:
        """The topic an error message names (``channel:x, instId:y``), if any."""
        params = dict(config.MESSAGE_PARAM.findall(message))
        channel = params.pop("channel", None)
        if channel is None:
            return None
        return config.topic_of(channel, {k: params[k] for k in config.ARG_KEYS if k in params})
