"""The Binance adapters: routes per stream, the hot path, acks and the shutdown notice.

See the package docstring for the theory of operation; limits and stream names are in
:mod:`.config`, payload Structs in :mod:`.wire`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Final

import msgspec

from actors._spec import ConnectionSpec
from actors.exchanges.binance import config, routes, wire
from actors.exchanges.messages import Batch, BookSnapshot, Message, ReconnectRequested, Trade
from actors.exchanges.sdk.books import Mark, default_mark
from actors.exchanges.sdk.booksync import BINANCE_SPOT, BINANCE_USDM, SyncRule
from actors.exchanges.sdk.pacing import Pacer
from actors.exchanges.sdk.protocol import ExchangeProtocol, Frame
from actors.exchanges.sdk.rest import INSTRUMENTS, TIME, RestCall
from actors.exchanges.sdk.subscriptions import Request
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
    rest_venue: ClassVar[str | None] = "binance"
    #: rest-api.md, General API Information (the first of the documented bases).
    rest_url: ClassVar[str | None] = "https://api.binance.com"
    #: ``{"serverTime": ms}``, weight 1 (rest-api.md, Check server time).
    rest_time_path: ClassVar[str] = "/api/v3/time"
    #: ``{"symbols": [{"symbol": ...}, ...]}``, weight 20 (rest-api.md, Exchange
    #: information). The whole list: ``symbols=[...]`` fails as a whole (-1121) if one
    #: of them is unknown, and then says nothing about which.
    rest_info_path: ClassVar[str] = "/api/v3/exchangeInfo"
    #: ``{"lastUpdateId", "bids", "asks"}``, weight by ``limit`` (rest-api.md, Order book).
    rest_depth_path: ClassVar[str] = "/api/v3/depth"
    book_rule: ClassVar[SyncRule | None] = BINANCE_SPOT

    def __init__(self, spec: ConnectionSpec, *, pacer: Pacer | None = None) -> None:
        super().__init__(spec, pacer=pacer)
        #: Every msgspec Decoder the routes use, built once.
        self.decoders = wire.Decoders()
        self._probe = self.decoders.probe.decode
        self._routes: dict[str, routes.Route] = {}
        self._bare_routes: dict[tuple[str, str], routes.Route] = {}
        self._topics: list[str] = []
        self._has_raw = False
        # Requests on one connection: one every subscribe_spacing, per session.
        self._spacing = Pacer(1, self.subscribe_spacing)
        #: The last request queued and its frame (see :meth:`_request`).
        self._tail: tuple[Request, str] | None = None
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
        self._routes["!serverShutdown"] = routes.ShutdownRoute(self, "!serverShutdown", "", "")
        self._has_raw = any(type(r) is routes.RawRoute for r in self._routes.values())

    def topics(self) -> list[str]:
        return list(self._topics)

    @classmethod
    def _check(cls, spec: ConnectionSpec) -> list[tuple[str, str]]:
        return config.check(spec, exchange=cls.exchange, perp=cls.perp)

    def _plan(self, spec: ConnectionSpec) -> Iterable[tuple[str, type[routes.Route], str, str]]:
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
                yield topic, routes.RawRoute, "", ""
                continue
            name = topic.partition("@")[0]
            symbol = normalized.get(name) or config.from_native(name.upper(), perp=perp)
            route_type = routes.route_type(config.stream_type(topic), perp=perp)
            yield topic, route_type, symbol, name.upper()

    # -- REST ------------------------------------------------------------------------

    def _time_call(self) -> RestCall | None:
        return RestCall(purpose=TIME, path=self.rest_time_path)

    def _server_time(self, body: object) -> float | None:
        server = body.get("serverTime") if isinstance(body, dict) else None
        return server / 1000 if isinstance(server, int) else None

    def _instrument_calls(self) -> list[RestCall]:
        if not self._symbol_topics():
            return []
        return [RestCall(purpose=INSTRUMENTS, path=self.rest_info_path)]

    def _listed_names(self, call: RestCall, body: object) -> list[str] | None:
        symbols = body.get("symbols") if isinstance(body, dict) else None
        if not isinstance(symbols, list):
            return None
        return [s["symbol"] for s in symbols if isinstance(s, dict) and "symbol" in s]

    def _symbol_topics(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for topic, _, _, native in self._plan(self.spec):
            if native:
                out.setdefault(native, []).append(topic)
        return out

    # -- local books ------------------------------------------------------------------

    def _book_topics(self) -> dict[str, str]:
        suffix = "@" + config.CHANNEL_STREAM["book"]
        return {
            route.symbol: topic
            for topic, route in self._routes.items()
            if topic.endswith(suffix) and type(route) is routes.DepthRoute
        }

    def _book_streams(self) -> dict[str, str]:
        kinds = (routes.DepthRoute, routes.SpotPartialRoute, routes.UsdmPartialRoute)
        return {t: r.symbol for t, r in self._routes.items() if type(r) in kinds}

    def book_snapshot_call(self, symbol: str) -> RestCall | None:
        topic = self.book_topics().get(symbol)
        if topic is None:
            return None
        return RestCall(
            purpose=f"book {symbol}",
            path=self.rest_depth_path,
            params=(("symbol", self._routes[topic].native), ("limit", str(self._depth_limit()))),
        )

    def _depth_limit(self) -> int:
        """``limit`` for ``spec.book_depth`` (spot takes any value up to 5000)."""
        return self.spec.book_depth

    def book_snapshot(self, symbol: str, body: object, received_at: float) -> BookSnapshot:
        try:
            depth = msgspec.convert(body, wire.RestDepth)
        except msgspec.ValidationError as exc:
            raise ValueError(f"{self.rest_depth_path}: not a depth snapshot ({exc})") from None
        timestamp = depth.T if depth.T is not None else depth.E
        return self.stamp.snapshot(
            received_at, symbol, depth.bids, depth.asks, depth.lastUpdateId, timestamp
        )

    # -- session ----------------------------------------------------------------------

    def _on_start(self, now: float) -> None:
        self._spacing.reset()
        super()._on_start(now)

    def _subscribe(self, now: float, topics: list[str]) -> None:
        step = config.DEFAULT_MAX_PARAMS
        for start in range(0, len(topics), step):
            self._request(now, topics[start : start + step], join=True)

    def _unsubscribe(self, now: float, topics: list[str]) -> None:
        step = config.DEFAULT_MAX_PARAMS
        for start in range(0, len(topics), step):
            self._request(now, topics[start : start + step], _UNSUBSCRIBE, join=True)

    def _request(
        self, now: float, params: Iterable[str], method: str = _SUBSCRIBE, *, join: bool = False
    ) -> None:
        """Queue one SUBSCRIBE (or UNSUBSCRIBE) for ``params``, paced after the last one.

        With ``join``, changes made while the last queued request still waits for its
        turn join it, up to ``DEFAULT_MAX_PARAMS`` names: twelve callers subscribing at
        once cost two requests, not twelve spaced ``subscribe_spacing`` apart. The two
        halves of a bisected refusal never join (each must be asked on its own).
        """
        topics = list(params)
        tail = self._tail
        scheduled = self._scheduled
        if (
            join
            and tail is not None
            and scheduled
            and scheduled[-1][1] is tail[1]
            and tail[0].method == method
            and len(tail[0].topics) + len(topics) <= config.DEFAULT_MAX_PARAMS
        ):
            request, _ = tail
            self.book.extend(request, topics)
            frame = self._frame(request)
            scheduled[-1] = (scheduled[-1][0], frame)
            self._tail = (request, frame)
            return
        request = self.book.request(topics, method)
        at, _ = self._spacing.reserve(now)
        frame = self._frame(request)
        self.send_at(at, frame)
        self._tail = (request, frame) if join else None

    @staticmethod
    def _frame(request: Request) -> str:
        return msgspec.json.encode(
            {"method": request.method, "params": request.topics, "id": request.id}
        ).decode()

    # -- make-before-break ------------------------------------------------------------

    #: The routes table :attr:`_mixed` was computed for (``_configure`` replaces it).
    _mixed_for: dict[str, routes.Route] | None = None
    #: Message symbols with both a ``@trade`` and an ``@aggTrade`` stream.
    _mixed: frozenset[str] = frozenset()

    def mark(self, message: Message) -> Mark | None:
        """Where ``message`` puts its stream (see sdk.books), knowing Binance's id spaces.

        ``@trade`` ids (``t``) and ``@aggTrade`` ids (``a``) are two id spaces, but both
        become a ``Trade`` whose ``trade_id`` is the id: a symbol with only one of them
        gets the default ordered mark, a symbol with both gets an *identified* mark
        (stream ``("trade", symbol)``, key ``(trade_id, timestamp)``), since the message
        does not say which space its id is from. Called only during a handover.
        """
        if isinstance(message, Trade):
            routes_now = self._routes
            if self._mixed_for is not routes_now:
                self._mixed_for = routes_now
                self._mixed = _mixed_trade_symbols(routes_now.values())
            if message.symbol in self._mixed:
                return Mark(
                    ("trade", message.symbol), None, None, (message.trade_id, message.timestamp)
                )
        return default_mark(message)

    # -- the hot path -------------------------------------------------------------------

    def decode(self, data: Frame, now: float, received_at: float) -> Batch:
        """Decode one frame; see the class docstring for the side effects.

        Emits ``SequenceGap`` for a broken book chain, ``ReconnectRequested`` for
        ``serverShutdown``, ``Subscribed``/``SubscriptionFailed`` for acks (and may queue
        paced SUBSCRIBE frames to isolate invalid streams), ``MalformedFrame`` for anything
        it cannot understand. Never raises.
        """
        route: routes.Route | None = None
        if isinstance(data, str):
            if data.startswith(_SNIFF):
                route = self._routes.get(data[_SNIFF_LEN : data.find('"', _SNIFF_LEN)])
        elif data.startswith(_SNIFF_BYTES):
            name = data[_SNIFF_LEN : data.find(b'"', _SNIFF_LEN)]
            route = self._routes.get(name.decode("utf-8", "replace"))
        if route is not None:
            try:
                batch = route.enveloped(data, received_at)
            except msgspec.DecodeError as exc:
                return self._bad(exc, data, route.stream)
            if batch:
                self.heard(route.stream)
            return batch
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
                self.unrouted(
                    probe.stream,
                    "unknown_stream",
                    f"data for stream {probe.stream!r}, not subscribed",
                    data,
                )
                return ()
            try:
                if type(route) is routes.RawRoute:
                    batch = route.bare(data, received_at)
                else:
                    batch = route.bare(probe.data, received_at)
            except msgspec.DecodeError as exc:
                return self._bad(exc, data, route.stream)
            if batch:
                self.heard(route.stream)
            return batch
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
            batch = route.bare(data, received_at)
        except msgspec.DecodeError as exc:
            return self._bad(exc, data, route.stream)
        if batch:
            self.heard(route.stream)
        return batch

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


def _mixed_trade_symbols(table: Iterable[routes.Route]) -> frozenset[str]:
    """Message symbols that have both a ``@trade`` and an ``@aggTrade`` route."""
    trades = {r.symbol for r in table if type(r) is routes.TradeRoute}
    return frozenset(
        r.symbol for r in table if type(r) is routes.AggTradeRoute and r.symbol in trades
    )


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
    rest_venue: ClassVar[str | None] = "binance_usdm"
    #: reference §2 (NT consts): the USD-M REST base.
    rest_url: ClassVar[str | None] = "https://fapi.binance.com"
    #: Weight 1 each (reference §2).
    rest_time_path: ClassVar[str] = "/fapi/v1/time"
    rest_info_path: ClassVar[str] = "/fapi/v1/exchangeInfo"
    #: Weight 2/5/10/20 by ``limit`` in {5, 10, 20, 50, 100, 500, 1000} (reference §2).
    rest_depth_path: ClassVar[str] = "/fapi/v1/depth"
    book_rule: ClassVar[SyncRule | None] = BINANCE_USDM
    #: The ``limit`` values /fapi/v1/depth accepts (another is refused with -4021).
    depth_limits: ClassVar[tuple[int, ...]] = (5, 10, 20, 50, 100, 500, 1000)

    def _depth_limit(self) -> int:
        """The smallest accepted ``limit`` holding ``spec.book_depth`` levels (1000 at most)."""
        wanted = self.spec.book_depth
        return next((n for n in self.depth_limits if n >= wanted), self.depth_limits[-1])

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
