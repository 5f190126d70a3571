"""The Bybit adapter: subscribe requests of 10, per-request acks, client pings, topics.

See the package docstring for the theory of operation; limits and ``check()`` are in
:mod:`.config`, frame Structs in :mod:`.wire`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import ClassVar, Final

import msgspec

from actors._spec import ConnectionSpec
from actors.exchanges.bybit import config, wire
from actors.exchanges.messages import Batch
from actors.exchanges.sdk.booksync import BYBIT, SyncRule
from actors.exchanges.sdk.heartbeat import ClientPing, Heartbeat
from actors.exchanges.sdk.pacing import Pacer
from actors.exchanges.sdk.protocol import ExchangeProtocol, Frame
from actors.exchanges.sdk.rest import INSTRUMENTS, TIME, RestCall
from actors.exchanges.sdk.subscriptions import batches

__all__ = ["BybitLinearProtocol", "BybitProtocol"]

#: ``error:handler not found,topic:orderbook.50.NOPEUSDT`` (docs/exchanges/bybit.md §2).
_NAMED_ERROR: Final = re.compile(r"^error:(?P<reason>[^,]+),topic:(?P<topic>\S+)$")
_ALREADY: Final = "already subscribed"
_PING: Final = '{"op":"ping"}'

_Handler = Callable[[wire.Envelope, str, str, float, Frame], Batch]


class BybitProtocol(ExchangeProtocol):
    """Bybit v5 public spot streams (``exchange = "bybit"``).

    Side effects for the caller: write :meth:`frames_to_send` (subscribe requests at
    session start, pings every ``heartbeat`` seconds, re-requests after a refusal);
    handle :meth:`events`; call :meth:`tick` by :meth:`deadline`.
    """

    exchange: ClassVar[str] = "bybit"
    #: The subscription's snapshot, then the exact chain; a gap subscribes again.
    book_rule: ClassVar[SyncRule | None] = BYBIT
    default_url: ClassVar[str | None] = "wss://stream.bybit.com/v5/public/spot"
    rest_venue: ClassVar[str | None] = "bybit"
    #: https://bybit-exchange.github.io/docs/v5/guide (mainnet REST).
    rest_url: ClassVar[str | None] = "https://api.bybit.com"
    #: The ``category`` of this adapter's instruments in the v5 REST API.
    rest_category: ClassVar[str] = "spot"
    #: "Do not build over 500 connections in 5 minutes" per domain (§3).
    connect_rate: ClassVar[tuple[int, float] | None] = (500, 300.0)
    perp: ClassVar[bool] = False

    def __init__(self, spec: ConnectionSpec, *, pacer: Pacer | None = None) -> None:
        super().__init__(spec, pacer=pacer)
        self._decode = msgspec.json.Decoder(wire.Envelope).decode
        self._decode_trades = msgspec.json.Decoder(list[wire.TradeEntry]).decode
        self._decode_book = msgspec.json.Decoder(wire.Book).decode
        self._decode_any = msgspec.json.Decoder().decode
        self._routes: dict[str, tuple[_Handler, str]] = {}
        self._configure(spec)

    def _configure(self, spec: ConnectionSpec) -> None:
        perp = self.perp
        ticker = {config.CHANNEL_TOPICS["ticker"].format(n) for n in self._natives(spec)}
        #: topic -> (handler, message symbol)
        self._routes = {}
        for topic, native in config.topics_of(spec, perp=perp).items():
            family = topic.partition(".")[0]
            handler: _Handler = self._on_raw
            if family == "publicTrade":
                handler = self._on_trades
            elif topic in ticker:
                handler = self._on_top
            elif family == "orderbook":
                handler = self._on_book
            self._routes[topic] = (handler, config.from_native(native, perp=perp))

    def topics(self) -> list[str]:
        return list(self._routes)

    # -- local books ------------------------------------------------------------------

    def _book_topics(self) -> dict[str, str]:
        prefix = config.CHANNEL_TOPICS["book"].format("")
        return {
            symbol: topic
            for topic, (handler, symbol) in self._routes.items()
            if topic.startswith(prefix) and handler == self._on_book
        }

    def _book_streams(self) -> dict[str, str]:
        return {
            topic: symbol
            for topic, (handler, symbol) in self._routes.items()
            if handler == self._on_book
        }

    # -- REST ------------------------------------------------------------------------

    def _time_call(self) -> RestCall | None:
        # {"retCode":0,"result":{"timeSecond":"..","timeNano":".."},"time":<ms>}
        # (https://bybit-exchange.github.io/docs/v5/market/time)
        return RestCall(purpose=TIME, path="/v5/market/time")

    def _server_time(self, body: object) -> float | None:
        result = body.get("result") if isinstance(body, dict) else None
        nano = result.get("timeNano") if isinstance(result, dict) else None
        return int(nano) / 1e9 if isinstance(nano, str) and nano.isdigit() else None

    def _instrument_calls(self) -> list[RestCall]:
        if not self._symbol_topics():
            return []
        # https://bybit-exchange.github.io/docs/v5/market/instrument (limit at most 1000).
        return [
            RestCall(
                purpose=INSTRUMENTS,
                path="/v5/market/instruments-info",
                params=(("category", self.rest_category), ("limit", "1000")),
            )
        ]

    def _listed_names(self, call: RestCall, body: object) -> list[str] | None:
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, dict) or not isinstance(result.get("list"), list):
            return None
        names = [i["symbol"] for i in result["list"] if isinstance(i, dict) and "symbol" in i]
        if result.get("nextPageCursor"):
            # A partial list (more than 1000 instruments): what it lacks is not known
            # to be missing, so no configured symbol is called unknown because of it.
            names.extend(self._symbol_topics())
        return names

    def _symbol_topics(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for topic, native in config.topics_of(self.spec, perp=self.perp).items():
            if native:
                out.setdefault(native, []).append(topic)
        return out

    def _natives(self, spec: ConnectionSpec) -> list[str]:
        if "ticker" not in spec.channels:
            return []
        natives = (config.to_native(s, perp=self.perp) for s in spec.symbols)
        return [n for n in natives if n is not None]

    @classmethod
    def _check(cls, spec: ConnectionSpec) -> list[tuple[str, str]]:
        return config.check(spec, exchange=cls.exchange, perp=cls.perp)

    def _heartbeat(self) -> Heartbeat:
        every = self.spec.heartbeat
        if every is None:
            # Our ping is the connection's liveness probe too: at most half of
            # stale_after apart, so a quiet feed is never stale.
            every = min(config.DEFAULT_HEARTBEAT, self.spec.stale_after / 2)
        # Bybit counts the client's pings, not its own pushes: ping on a fixed cadence.
        return ClientPing(
            every,
            _PING,
            idle=False,
            detail=f"no frame within {every:g} s of our ping (Bybit answers ping with pong)",
        )

    def _probe_frame(self, now: float) -> Frame | None:
        return _PING  # answered with a pong

    # -- session ---------------------------------------------------------------------

    def _subscribe(self, now: float, topics: list[str]) -> None:
        for group in self._groups(topics):
            self._request(group)

    def _unsubscribe(self, now: float, topics: list[str]) -> None:
        for group in self._groups(topics):
            self._request(group, "unsubscribe")

    @staticmethod
    def _groups(topics: list[str]) -> list[list[str]]:
        return batches([(t, 0) for t in topics], max_items=config.MAX_ARGS)

    def _request(self, topics: Sequence[str], op: str = "subscribe") -> None:
        request = self.book.request(topics, op)
        frame = msgspec.json.encode({"req_id": str(request.id), "op": op, "args": request.topics})
        self.send_now(frame.decode())

    # -- frames in ---------------------------------------------------------------------

    def decode(self, data: Frame, now: float, received_at: float) -> Batch:
        """Decode one Bybit frame.

        Returns:
            Trades, tickers (top of book), book snapshots and deltas, raw messages of
            other topics; empty for acks and pongs.

        Side effects for the caller: ``Subscribed``/``SubscriptionFailed`` from acks (a
        request refused for one named topic is sent again without it),
        ``SequenceGap``, ``MalformedFrame`` are queued in :meth:`events`.
        """
        envelope = self.parse(self._decode, data)
        if envelope is None:
            return ()
        topic = envelope.topic
        if topic is not None:
            route = self._routes.get(topic)
            if route is None:
                self.unrouted(
                    topic, "unknown_topic", f"data for topic {topic!r}, not subscribed", data
                )
                return ()
            if envelope.data is wire.NO_DATA:
                self.malformed("invalid_frame", f"{topic} frame without data", data)
                return ()
            handler, symbol = route
            self.heard(topic)
            try:
                return handler(envelope, topic, symbol, received_at, data)
            except msgspec.DecodeError as exc:
                self.malformed("invalid_data", f"{topic}: {exc}", data)
                return ()
        if envelope.ret_msg == "pong" or envelope.op == "pong":
            self.probe_answered()
            return ()  # a sign of life, already counted by the heartbeat policy
        if envelope.op in ("subscribe", "unsubscribe") and envelope.success is not None:
            self._on_reply(envelope, data)
            return ()
        self.malformed("unknown_frame", "neither data, an ack nor a pong", data)
        return ()

    def _on_trades(
        self, envelope: wire.Envelope, topic: str, symbol: str, received_at: float, data: Frame
    ) -> Batch:
        trade = self.stamp.trade
        return tuple(
            [
                trade(received_at, symbol, "buy" if t.S == "Buy" else "sell", t.p, t.v, t.i, t.T)
                for t in self._decode_trades(envelope.data)
            ]
        )

    def _on_top(
        self, envelope: wire.Envelope, topic: str, symbol: str, received_at: float, data: Frame
    ) -> Batch:
        book = self._decode_book(envelope.data)
        if not (book.b and book.a):
            return ()  # one side of the book is empty: no best bid/ask to report
        (bid, bid_size), (ask, ask_size) = book.b[0], book.a[0]
        return (self.stamp.ticker(received_at, symbol, bid, bid_size, ask, ask_size, envelope.ts),)

    def _on_book(
        self, envelope: wire.Envelope, topic: str, symbol: str, received_at: float, data: Frame
    ) -> Batch:
        book = self._decode_book(envelope.data)
        # Each message is built (so checked) before the chain moves: a refused one
        # leaves it in place.
        if envelope.type == "delta":
            # u rises by exactly 1 per delta (§6.3).
            delta = self.stamp.delta(
                received_at, symbol, book.b, book.a, book.u, book.u - 1, envelope.ts
            )
            self.chain(topic, symbol, book.u - 1, book.u)
            return (delta,)
        if envelope.type == "snapshot":
            # Also u = 1: the service restarted and the book starts afresh.
            snapshot = self.stamp.snapshot(received_at, symbol, book.b, book.a, book.u, envelope.ts)
            self.chains.start(topic, book.u)
            return (snapshot,)
        self.malformed("invalid_data", f"{topic}: unknown type {envelope.type!r}", data)
        return ()

    def _on_raw(
        self, envelope: wire.Envelope, topic: str, symbol: str, received_at: float, data: Frame
    ) -> Batch:
        return (self.stamp.raw(received_at, self._decode_any(data)),)

    # -- replies -----------------------------------------------------------------------

    def _on_reply(self, envelope: wire.Envelope, data: Frame) -> None:
        req_id = envelope.req_id
        key = req_id
        # isdigit() alone accepts "²" and other digits int() refuses (audit L8).
        if isinstance(req_id, str) and req_id.isascii() and req_id.isdigit():
            key = int(req_id)
        request = self.book.answer(key)
        if request is None:
            self.malformed("unknown_request", f"reply for request id {req_id!r}", data)
            return
        if request.method == "unsubscribe":
            if not envelope.success:
                self.malformed("request_failed", f"unsubscribe: {envelope.ret_msg}", data)
            return
        if envelope.success:
            self.confirm(request.topics)
            return
        # A refused request subscribes none of its topics; the error names the first
        # bad one (§2, §8.1). Settle that one and ask again for the others.
        message = envelope.ret_msg
        named = _NAMED_ERROR.match(message)
        if named is None or named["topic"] not in request.topics:
            code = message.removeprefix("error:") or "refused"
            self.report(self.book.refuse(t, code, message) for t in request.topics)
            return
        topic, reason = named["topic"], named["reason"]
        if reason == _ALREADY:
            self.confirm((topic,))  # still live from before: not a failure
        else:
            self.refuse(topic, reason, message)
        rest = [t for t in request.topics if t != topic and t in self.book.states]
        if rest:
            self._request(rest)


class BybitLinearProtocol(BybitProtocol):
    """Bybit v5 public linear perpetuals (``exchange = "bybit_linear"``): symbols are
    ``BASE-QUOTE-PERP`` (``BTC-USDT-PERP`` -> ``BTCUSDT``); the protocol is spot's."""

    exchange: ClassVar[str] = "bybit_linear"
    default_url: ClassVar[str | None] = "wss://stream.bybit.com/v5/public/linear"
    perp: ClassVar[bool] = True
    rest_category: ClassVar[str] = "linear"
