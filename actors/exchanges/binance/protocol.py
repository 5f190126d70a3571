"""The Binance adapters: routes per stream, the hot path, acks and the shutdown notice.

See the package docstring for the theory of operation; limits and stream names are in
:mod:`.config`, payload Structs in :mod:`.wire`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Final

import msgspec

from actors._spec import ConnectionSpec
from actors.exchanges.binance import config, wire
from actors.exchanges.messages import Batch, ReconnectRequested
from actors.exchanges.sdk.pacing import Pacer
from actors.exchanges.sdk.protocol import ExchangeProtocol, Frame
from actors.exchanges.sdk.symbols import parse_symbol

__all__ = ["BinanceProtocol", "BinanceUsdmProtocol"]

#: ``e`` values of the payloads the adapter decodes (others may belong to raw streams).
_DECODED_EVENTS: Final = frozenset({"trade", "aggTrade", "bookTicker", "depthUpdate"})
_SNIFF: Final = '{"stream":"'
_SNIFF_BYTES: Final = b'{"stream":"'
_SNIFF_LEN: Final = len(_SNIFF)
#: Error code of a SUBSCRIBE refused for an invalid stream name: bisect to find it.
_INVALID_NAME: Final = frozenset({"2"})
_SUBSCRIBE: Final = "SUBSCRIBE"
_UNSUBSCRIBE: Final = "UNSUBSCRIBE"


# -- routes: one per subscribed stream ------------------------------------------------------


class _Route:
    """How to turn one stream's frames into messages.

    Attributes:
        stream: the native stream name.
        symbol: the normalized symbol its messages carry (``""`` if it has none).
        native: the upper-case native symbol (``""`` if none), for frames without
            envelope.
        event: the ``e`` value its payloads carry without envelope (``""`` if none).
    """

    __slots__ = ("_bare", "_envelope", "event", "native", "owner", "stamp", "stream", "symbol")

    payload: ClassVar[type[msgspec.Struct] | None] = None
    event_name: ClassVar[str] = ""

    def __init__(self, owner: BinanceProtocol, stream: str, symbol: str, native: str) -> None:
        self.owner = owner
        self.stamp = owner.stamp
        self.stream = stream
        self.symbol = symbol
        self.native = native
        self.event = self.event_name
        payload = self.payload
        if payload is not None:
            self._envelope = owner.decoders.envelope(payload)
            self._bare = owner.decoders.bare(payload)

    def enveloped(self, data: Frame, received_at: float) -> Batch:
        """Decode a ``{"stream","data"}`` frame of this stream (may raise DecodeError)."""
        return self.build(self._envelope.decode(data).data, received_at)

    def bare(self, data: Frame, received_at: float) -> Batch:
        """Decode a payload without envelope (may raise DecodeError)."""
        return self.build(self._bare.decode(data), received_at)

    def build(self, payload: Any, received_at: float) -> Batch:  # pragma: no cover
        raise NotImplementedError


class _TradeRoute(_Route):
    __slots__ = ()
    payload = wire.Trade
    event_name = "trade"

    def build(self, payload: wire.Trade, received_at: float) -> Batch:
        side: Final = "sell" if payload.m else "buy"
        return (
            self.stamp.trade(
                received_at, self.symbol, side, payload.p, payload.q, str(payload.t), payload.T
            ),
        )


class _AggTradeRoute(_Route):
    __slots__ = ()
    payload = wire.AggTrade
    event_name = "aggTrade"

    def build(self, payload: wire.AggTrade, received_at: float) -> Batch:
        side: Final = "sell" if payload.m else "buy"
        return (
            self.stamp.trade(
                received_at, self.symbol, side, payload.p, payload.q, str(payload.a), payload.T
            ),
        )


class _TickerRoute(_Route):
    __slots__ = ()
    payload = wire.BookTicker
    event_name = "bookTicker"

    def build(self, payload: wire.BookTicker, received_at: float) -> Batch:
        timestamp = payload.T if payload.T is not None else payload.E
        return (
            self.stamp.ticker(
                received_at, self.symbol, payload.b, payload.B, payload.a, payload.A, timestamp
            ),
        )


class _DepthRoute(_Route):
    """Diff depth: a BookDelta per frame, checked against this stream's update-id chain."""

    __slots__ = ()
    payload = wire.Depth
    event_name = "depthUpdate"

    def build(self, payload: wire.Depth, received_at: float) -> Batch:
        # USD-M links each diff to the previous one with pu; spot with U = previous u + 1.
        prev = payload.pu if payload.pu is not None else payload.U - 1
        self.owner.chain(self.stream, self.symbol, prev, payload.u)
        timestamp = payload.T if payload.T is not None else payload.E
        return (
            self.stamp.delta(
                received_at, self.symbol, payload.b, payload.a, payload.u, prev, timestamp
            ),
        )


class _SpotPartialRoute(_Route):
    """Spot ``@depth<N>``: the top N levels, as a BookSnapshot."""

    __slots__ = ()
    payload = wire.PartialDepth

    def build(self, payload: wire.PartialDepth, received_at: float) -> Batch:
        return (
            self.stamp.snapshot(
                received_at, self.symbol, payload.bids, payload.asks, payload.lastUpdateId, None
            ),
        )


class _UsdmPartialRoute(_Route):
    """USD-M ``@depth<N>``: a ``depthUpdate`` holding the top N levels, as a BookSnapshot."""

    __slots__ = ()
    payload = wire.Depth

    def build(self, payload: wire.Depth, received_at: float) -> Batch:
        timestamp = payload.T if payload.T is not None else payload.E
        return (
            self.stamp.snapshot(
                received_at, self.symbol, payload.b, payload.a, payload.u, timestamp
            ),
        )


class _RawRoute(_Route):
    """A stream we do not decode: delivered as a RawMessage of the whole frame."""

    __slots__ = ()

    def enveloped(self, data: Frame, received_at: float) -> Batch:
        return self.bare(data, received_at)

    def bare(self, data: Frame, received_at: float) -> Batch:
        return (self.stamp.raw(received_at, self.owner.decoders.any.decode(data)),)


class _ShutdownRoute(_Route):
    """``!serverShutdown``: ask the actor to reconnect now."""

    __slots__ = ()
    payload = wire.Shutdown

    def build(self, payload: wire.Shutdown, received_at: float) -> Batch:
        self.owner.emit(ReconnectRequested(reason=f"Binance serverShutdown notice (E={payload.E})"))
        return ()


def _route_type(kind: str, *, perp: bool) -> type[_Route]:
    if kind == "trade":
        return _TradeRoute
    if kind == "aggTrade":
        return _AggTradeRoute
    if kind == "bookTicker":
        return _TickerRoute
    if config.DIFF_DEPTH.match(kind):
        return _DepthRoute
    if config.PARTIAL_DEPTH.match(kind):
        return _UsdmPartialRoute if perp else _SpotPartialRoute
    return _RawRoute


class BinanceProtocol(ExchangeProtocol):
    """Binance spot market streams over one combined-stream connection.

    Side effects for the caller: write :meth:`frames_to_send` (paced SUBSCRIBE requests,
    released by :meth:`tick` at :meth:`deadline`); handle :meth:`events`
    (``SequenceGap``, ``ReconnectRequested``, ``Subscribed``/``SubscriptionFailed``,
    ``MalformedFrame``). Answering the server's pings is the WebSocket client's job.

    Args:
        spec: the connection (``check()`` must have passed).
    """

    exchange: ClassVar[str] = "binance"
    #: 300 connection attempts per 5 minutes per IP (web-socket-streams.md, Limits).
    connect_rate: ClassVar[tuple[int, float] | None] = (300, 300.0)
    #: Combined-stream base on the main host; port 9443 as documented first
    #: (web-socket-streams.md §General WSS information).
    default_url: ClassVar[str | None] = "wss://stream.binance.com:9443/stream"
    #: Seconds between SUBSCRIBE requests.
    subscribe_spacing: ClassVar[float] = config.DEFAULT_SUBSCRIBE_SPACING
    #: Whether symbols are perpetual swaps (USD-M) rather than spot.
    perp: ClassVar[bool] = False

    def __init__(self, spec: ConnectionSpec, *, pacer: Pacer | None = None) -> None:
        super().__init__(spec, pacer=pacer)
        #: Every msgspec Decoder the routes use, built once.
        self.decoders = wire.Decoders()
        self._probe = self.decoders.probe.decode
        self._routes: dict[str, _Route] = {}
        self._bare_routes: dict[tuple[str, str], _Route] = {}
        self._topics: list[str] = []
        self._has_raw = False
        # Requests on one connection: one every subscribe_spacing, per session.
        self._spacing = Pacer(1, self.subscribe_spacing)
        self._configure(spec)

    def _configure(self, spec: ConnectionSpec) -> None:
        self._routes = {}
        self._bare_routes = {}
        for topic, route_type, symbol, native in self._plan(spec):
            route = route_type(self, topic, symbol, native)
            self._routes[topic] = route
            if route.event and route.native:
                self._bare_routes.setdefault((route.event, route.native), route)
        self._topics = list(self._routes)
        self._routes["!serverShutdown"] = _ShutdownRoute(self, "!serverShutdown", "", "")
        self._has_raw = any(type(r) is _RawRoute for r in self._routes.values())

    def topics(self) -> list[str]:
        return list(self._topics)

    @classmethod
    def _check(cls, spec: ConnectionSpec) -> list[tuple[str, str]]:
        return config.check(spec, exchange=cls.exchange, perp=cls.perp)

    def _plan(self, spec: ConnectionSpec) -> Iterable[tuple[str, type[_Route], str, str]]:
        """(stream, route class, message symbol, native symbol) for every stream."""
        perp = self.perp
        normalized: dict[str, str] = {}  # lower-case stream symbol -> message symbol
        for symbol in spec.symbols:
            parsed = parse_symbol(symbol)
            if parsed is not None:
                normalized[f"{parsed.base}{parsed.quote}".lower()] = str(parsed)
            else:
                normalized[symbol.lower()] = config.from_native(symbol, perp=perp)
        for topic in config.topics_of(spec):
            if topic.startswith("!"):
                yield topic, _RawRoute, "", ""
                continue
            name = topic.partition("@")[0]
            symbol = normalized.get(name) or config.from_native(name.upper(), perp=perp)
            route_type = _route_type(config.stream_type(topic), perp=perp)
            yield topic, route_type, symbol, name.upper()

    # -- session ----------------------------------------------------------------------

    def _on_start(self, now: float) -> None:
        self._spacing.reset()
        super()._on_start(now)

    def _subscribe(self, now: float, topics: list[str]) -> None:
        step = config.DEFAULT_MAX_PARAMS
        for start in range(0, len(topics), step):
            self._request(now, topics[start : start + step])

    def _unsubscribe(self, now: float, topics: list[str]) -> None:
        step = config.DEFAULT_MAX_PARAMS
        for start in range(0, len(topics), step):
            self._request(now, topics[start : start + step], _UNSUBSCRIBE)

    def _request(self, now: float, params: Iterable[str], method: str = _SUBSCRIBE) -> None:
        """Queue one SUBSCRIBE (or UNSUBSCRIBE) for ``params``, paced after the last one."""
        request = self.book.request(list(params), method)
        at, _ = self._spacing.reserve(now)
        frame = msgspec.json.encode({"method": method, "params": request.topics, "id": request.id})
        self.send_at(at, frame.decode())

    # -- the hot path -------------------------------------------------------------------

    def decode(self, data: Frame, now: float, received_at: float) -> Batch:
        """Decode one frame; see the class docstring for the side effects.

        Emits ``SequenceGap`` for a broken book chain, ``ReconnectRequested`` for
        ``serverShutdown``, ``Subscribed``/``SubscriptionFailed`` for acks (and may queue
        paced SUBSCRIBE frames to isolate invalid streams), ``MalformedFrame`` for anything
        it cannot understand. Never raises.
        """
        route: _Route | None = None
        if isinstance(data, str):
            if data.startswith(_SNIFF):
                route = self._routes.get(data[_SNIFF_LEN : data.find('"', _SNIFF_LEN)])
        elif data.startswith(_SNIFF_BYTES):
            name = data[_SNIFF_LEN : data.find(b'"', _SNIFF_LEN)]
            route = self._routes.get(name.decode("utf-8", "replace"))
        if route is not None:
            try:
                return route.enveloped(data, received_at)
            except msgspec.DecodeError as exc:
                return self._bad(exc, data, route.stream)
        return self._other(data, now, received_at)

    def _bad(self, exc: msgspec.DecodeError, data: Frame, stream: str | None) -> Batch:
        where = f" on stream {stream!r}" if stream else ""
        if isinstance(exc, msgspec.ValidationError):
            self.malformed("unexpected_shape", f"{exc}{where}", data)
        else:
            self.malformed("invalid_json", f"{exc}{where}", data)
        return ()

    def _other(self, data: Frame, now: float, received_at: float) -> Batch:
        """Everything but a known stream's enveloped frame."""
        try:
            probe = self._probe(data)
        except msgspec.DecodeError as exc:
            return self._bad(exc, data, None)
        if probe.stream is not None:
            route = self._routes.get(probe.stream)
            if route is None or not probe.data:
                self.malformed(
                    "unknown_stream", f"data for stream {probe.stream!r}, not subscribed", data
                )
                return ()
            try:
                if type(route) is _RawRoute:
                    return route.bare(data, received_at)
                return route.bare(probe.data, received_at)
            except msgspec.DecodeError as exc:
                return self._bad(exc, data, route.stream)
        if probe.error is not None:
            return self._failed(probe.id, str(probe.error.code), probe.error.msg, data, now)
        if probe.code is not None and probe.msg is not None:
            # The documented error table's bare form: {"code":0,"msg":"...","id":5}.
            return self._failed(probe.id, str(probe.code), probe.msg, data, now)
        if probe.e is not None:
            return self._unwrapped(probe, data, received_at)
        if probe.u is not None and probe.s is not None:
            # Spot bookTicker without envelope: the only payload without "e".
            return self._unwrapped(probe, data, received_at)
        if probe.id is not None:
            request = self.book.answer(probe.id)
            if request is None:
                self.malformed("unknown_request", f"ack for request id {probe.id!r}", data)
            elif request.method == _SUBSCRIBE:
                self.confirm(request.topics)
            return ()
        self.malformed("unknown_frame", "not a stream frame, ack, error or notice", data)
        return ()

    def _unwrapped(self, probe: wire.Probe, data: Frame, received_at: float) -> Batch:
        """A payload without envelope (``/ws`` URLs, raw ``serverShutdown``)."""
        event = probe.e if probe.e is not None else "bookTicker"
        if event == "serverShutdown":
            self.emit(ReconnectRequested(reason=f"Binance serverShutdown notice (E={probe.E})"))
            return ()
        route = self._bare_routes.get((event, probe.s or ""))
        if route is None:
            if self._has_raw and event not in _DECODED_EVENTS:
                return (self.stamp.raw(received_at, self.decoders.any.decode(data)),)
            self.malformed(
                "unknown_stream", f"{event!r} event for {probe.s!r}, not subscribed", data
            )
            return ()
        try:
            return route.bare(data, received_at)
        except msgspec.DecodeError as exc:
            return self._bad(exc, data, route.stream)

    def _failed(
        self, request_id: int | str | None, code: str, msg: str, data: Frame, now: float
    ) -> Batch:
        """An error reply: refuse the request's streams, or bisect an invalid-stream batch."""
        request = self.book.answer(request_id)
        if request is None:
            self.malformed(
                "unknown_request", f"error {code} {msg!r} for request id {request_id!r}", data
            )
            return ()
        if request.method != _SUBSCRIBE:
            self.malformed("request_failed", f"{request.method} failed: {code} {msg}", data)
            return ()
        # Spot refuses the whole request for one invalid name: split it to find it.
        outcomes, resend = self.book.refuse_request(request, code, msg, bisect=_INVALID_NAME)
        for half in resend:
            self._request(now, half)
        if outcomes:
            self.report(outcomes)
        return ()


class BinanceUsdmProtocol(BinanceProtocol):
    """Binance USD-M perpetual futures market streams.

    Same protocol as spot with these differences: symbols are perpetuals
    (``BTC-USDT-PERP`` -> ``btcusdt``), book diffs chain on ``pu``, bookTicker carries
    ``T``/``E``, the limit is 10 incoming messages per second, and since the 2026 URL split
    a connection reaches either ``/public`` or ``/market`` streams (see the package doc).
    USD-M acks every SUBSCRIBE, even for unknown streams (observed 2026-10-07), so an
    invalid stream shows as ``live`` but never delivers.
    """

    exchange: ClassVar[str] = "binance_usdm"
    #: /public serves bookTicker, depth and trade (BFN, GOB-809).
    default_url: ClassVar[str | None] = "wss://fstream.binance.com/public/stream"
    #: The /market endpoint, for connections with only /market streams.
    market_url: ClassVar[str] = "wss://fstream.binance.com/market/stream"
    subscribe_spacing: ClassVar[float] = config.DEFAULT_USDM_SUBSCRIBE_SPACING
    perp: ClassVar[bool] = True

    @property
    def url(self) -> str:
        """The configured URL; else /market if all streams are served there, else /public."""
        if self.spec.url is not None:
            return self.spec.url
        paths = {config.usdm_path(topic) for topic in self._topics}
        if paths == {"/market"}:
            return self.market_url
        return self.default_url or self.market_url

    @classmethod
    def _check(cls, spec: ConnectionSpec) -> list[tuple[str, str]]:
        # Spot's checks plus the 2026 /public vs /market split.
        return super()._check(spec) + config.check_usdm(spec)
