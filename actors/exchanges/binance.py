"""Binance spot (``binance``) and USD-M perpetual futures (``binance_usdm``) adapters.

Theory of operation
-------------------
One connection is one combined stream. The adapter connects to the bare combined-stream
base (``/stream``) and adds its streams with live ``SUBSCRIBE`` requests, so every data
frame arrives in the ``{"stream": NAME, "data": PAYLOAD}`` envelope and is routed by its
stream name with one dict lookup. Binance writes ``stream`` as the first key, so the hot
path reads the name straight off the frame's prefix (a ``startswith`` and a ``find``, no
parsing) and then decodes the whole frame exactly once with the msgspec Struct of that
stream's payload type. Anything else (acks, errors, notices, frames without envelope as a
``/ws`` URL delivers them, a reordered envelope) takes the slow path: one decode into a
small probe Struct, then, for a payload, a second decode with the payload's Struct.

Channels map to streams (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams):

=========  ======================  ==============================================
channel    stream                  message
=========  ======================  ==============================================
trades     ``<sym>@trade``         Trade (``t`` id, ``T`` time, ``m`` -> side)
ticker     ``<sym>@bookTicker``    Ticker (spot: no time -> ``None``; USD-M: ``T``)
book       ``<sym>@depth@100ms``   BookDelta (``sequence`` = ``u``)
=========  ======================  ==============================================

Book sequencing: there is no REST snapshot yet, so the first diff of each stream after
subscribing starts the chain unchecked. From then on spot reports ``prev_sequence =
U - 1`` and a gap when ``U != previous u + 1``; USD-M reports ``prev_sequence = pu`` and a
gap when ``pu != previous u``. A gap is a ``SequenceGap`` event; the delta is still
delivered and the chain goes on from its ``u``.

Subscribing: every session sends the streams in ``SUBSCRIBE`` requests of at most
``DEFAULT_MAX_PARAMS`` names, paced ``DEFAULT_SUBSCRIBE_SPACING`` (spot) or
``DEFAULT_USDM_SUBSCRIBE_SPACING`` (USD-M) apart so that, together with the pongs our
WebSocket client sends (at most one per server ping), no 1 s window ever holds as many
incoming messages as Binance allows. Request ids are unsigned integers counting up from 1
for the adapter's life. ``{"result":null,"id":N}`` confirms every stream of request N;
``{"error":{"code":C,"msg":M},"id":N}`` refuses them with code ``str(C)``.

Heartbeat: Binance's server pings (spot every 20 s, USD-M every 3 min) and drops a client
that does not pong in time; trio-websocket answers every ping by itself, so the adapter has
no heartbeat timer. ``serverShutdown`` (raw or ``!serverShutdown`` in an envelope) ->
``ReconnectRequested``.

Decisions where the references are silent:

- **Invalid streams in a batch.** Spot rejects a whole ``SUBSCRIBE`` with code 2 if one
  name is invalid. Rather than fail every stream of the batch, the adapter bisects: a
  refused multi-stream request is re-sent as two halves (paced like the rest) until the
  invalid names stand alone; only those end up ``failed`` (one bad name among 200 costs
  about 16 extra requests, 8 s on spot). Other codes (e.g. 4 "Too many subscriptions")
  fail the whole request at once.
- **USD-M URL split (2026).** ``@bookTicker``, ``@depth*`` and ``@trade`` are served under
  ``/public`` (GOB-809, RUSTRADE tier map; §2 of the reference), ``@aggTrade``,
  ``@markPrice``, ``@kline_*``, ``@ticker``, ``@miniTicker``, ``@forceOrder``... under
  ``/market``. All three channels are therefore ``/public``, the default endpoint. The
  default URL switches to ``/market`` when only ``/market`` streams are configured; a
  connection needing both is a config error suggesting two connections, and so is a
  ``/public`` or ``/market`` URL given with streams of the other path.
- **Recognised raw topics.** ``raw`` streams of the types above are decoded like the
  channels, ``@aggTrade`` becomes a ``Trade`` whose ``trade_id`` is the aggregate id
  ``a``, partial depth (``@depth5|10|20``) becomes a ``BookSnapshot``; every other raw
  stream is delivered as a ``RawMessage`` holding the whole envelope (so the stream name
  comes along).
- **Timestamps.** Trade and USD-M ticker/depth use ``T`` (the matching-engine time the
  event happened); spot depth has only ``E``; spot bookTicker has none (``None``).
- **Symbols.** ``BTC-USDT`` -> ``btcusdt``. A native ``BTCUSDT`` is accepted and mapped
  back by splitting off a known quote asset (``KNOWN_QUOTES``, longest match first); if
  none matches, the native name is the message symbol. Native names must be written in
  upper case, as Binance lists them; stream names are the lower-cased symbol.
- **Frames without envelope** (a ``/ws`` URL) are routed by ``e`` and ``s``; when a
  symbol has several depth streams they cannot be told apart, and the first configured
  one takes them. Prefer ``/stream``.
- An ack or error for a request id we never sent, or an error with ``"id":null``, is
  counted as a malformed frame: it cannot be attributed to a stream.
- ``heartbeat`` and ``subscribe`` are config errors on a Binance connection: neither
  means anything here, and silently ignoring a key the user set would hide a mistake.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import msgspec

from actors._spec import ConnectionSpec
from actors.exchanges.messages import (
    Batch,
    BookDelta,
    BookSnapshot,
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
    "DEFAULT_MAX_PARAMS",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_SUBSCRIBE_SPACING",
    "DEFAULT_USDM_SUBSCRIBE_SPACING",
    "KNOWN_QUOTES",
    "BinanceProtocol",
    "BinanceUsdmProtocol",
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
_CHANNEL_STREAM: Final = {"trades": "trade", "ticker": "bookTicker", "book": "depth@100ms"}
#: A native name as Binance lists it: no separator, no blanks, already upper case
#: (non-ASCII names exist, web-socket-streams.md: symbols are UTF-8).
#: Quote assets of USD-M perpetuals (https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info).
_USDM_QUOTES: Final = frozenset({"USDT", "USDC"})
_NATIVE: Final = re.compile(r"^[^\s@/!\-]+$")
_DIFF_DEPTH: Final = re.compile(r"^depth(@\d+ms)?$")
_PARTIAL_DEPTH: Final = re.compile(r"^depth(5|10|20)(@\d+ms)?$")
#: ``e`` values of the payloads the adapter decodes (others may belong to raw streams).
_DECODED_EVENTS: Final = frozenset({"trade", "aggTrade", "bookTicker", "depthUpdate"})
_SNIFF: Final = '{"stream":"'
_SNIFF_BYTES: Final = b'{"stream":"'
_SNIFF_LEN: Final = len(_SNIFF)

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


# -- payloads (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams,
#    .../derivatives/usds-margined-futures/websocket-market-streams); unknown fields ignored.


class _Trade(msgspec.Struct):
    """``<sym>@trade``: ``t`` id, ``p`` price, ``q`` qty, ``T`` time, ``m`` buyer is maker."""

    t: int
    p: Decimal
    q: Decimal
    T: int
    m: bool


class _AggTrade(msgspec.Struct):
    """``<sym>@aggTrade``: like a trade, with the aggregate id ``a``."""

    a: int
    p: Decimal
    q: Decimal
    T: int
    m: bool


class _BookTicker(msgspec.Struct):
    """``<sym>@bookTicker``: best bid ``b``/``B``, best ask ``a``/``A``; USD-M adds E/T."""

    b: Decimal
    B: Decimal
    a: Decimal
    A: Decimal
    T: int | None = None
    E: int | None = None


class _Depth(msgspec.Struct):
    """``depthUpdate``: ``U``..``u`` update ids, levels ``b``/``a``; USD-M adds pu/T."""

    E: int
    U: int
    u: int
    b: tuple[tuple[Decimal, Decimal], ...]
    a: tuple[tuple[Decimal, Decimal], ...]
    pu: int | None = None
    T: int | None = None


class _PartialDepth(msgspec.Struct):
    """Spot ``<sym>@depth<N>``: a top-N book without event fields."""

    lastUpdateId: int
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]


class _Error(msgspec.Struct):
    """The inner error object of ``{"error":{"code":2,"msg":"..."},"id":N}``."""

    code: int
    msg: str


class _Probe(msgspec.Struct):
    """Every field the slow path needs to tell a frame's kind.

    Attributes:
        stream: the envelope's stream name (combined streams).
        data: the envelope's payload, undecoded.
        id: the request id of an ack or error.
        error: the error of a refused request.
        code: the error code of the bare documented error form ``{"code","msg","id"}``.
        msg: its message.
        e: the event type of a payload without envelope.
        s: its symbol (upper case).
        E: its event time.
        u: an update id (spot bookTicker has ``u`` but no ``e``).
    """

    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    id: int | str | None = None
    error: _Error | None = None
    code: int | None = None
    msg: str | None = None
    e: str | None = None
    s: str | None = None
    E: int | None = None
    u: int | None = None


class _Shutdown(msgspec.Struct):
    """``{"e":"serverShutdown","E":ms}``."""

    E: int | None = None


def _envelope(payload: type[msgspec.Struct]) -> msgspec.json.Decoder[Any]:
    """A decoder for ``{"stream": ..., "data": <payload>}`` that yields the payload Struct."""
    envelope = msgspec.defstruct(f"_{payload.__name__}Frame", [("data", payload)])
    return msgspec.json.Decoder(envelope)


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

    __slots__ = ("_bare", "_envelope", "event", "native", "owner", "stream", "symbol")

    payload: ClassVar[type[msgspec.Struct] | None] = None
    event_name: ClassVar[str] = ""

    def __init__(self, owner: BinanceProtocol, stream: str, symbol: str, native: str) -> None:
        self.owner = owner
        self.stream = stream
        self.symbol = symbol
        self.native = native
        self.event = self.event_name
        payload = self.payload
        if payload is not None:
            self._envelope = owner._decoders.envelope(payload)
            self._bare = owner._decoders.bare(payload)

    def enveloped(self, data: Frame, received_at: float) -> Batch:
        """Decode a ``{"stream","data"}`` frame of this stream (may raise DecodeError)."""
        return self.build(self._envelope.decode(data).data, received_at)

    def bare(self, data: Frame, received_at: float) -> Batch:
        """Decode a payload without envelope (may raise DecodeError)."""
        return self.build(self._bare.decode(data), received_at)

    def build(self, payload: Any, received_at: float) -> Batch:  # pragma: no cover
        raise NotImplementedError

    def reset(self) -> None:
        """Forget per-session state (book chains)."""


class _TradeRoute(_Route):
    __slots__ = ()
    payload = _Trade
    event_name = "trade"

    def build(self, payload: _Trade, received_at: float) -> Batch:
        owner = self.owner
        return (
            Trade(
                connection=owner._name,
                exchange=owner.exchange,
                received_at=received_at,
                symbol=self.symbol,
                side="sell" if payload.m else "buy",
                price=payload.p,
                amount=payload.q,
                trade_id=str(payload.t),
                timestamp=payload.T,
            ),
        )


class _AggTradeRoute(_Route):
    __slots__ = ()
    payload = _AggTrade
    event_name = "aggTrade"

    def build(self, payload: _AggTrade, received_at: float) -> Batch:
        owner = self.owner
        return (
            Trade(
                connection=owner._name,
                exchange=owner.exchange,
                received_at=received_at,
                symbol=self.symbol,
                side="sell" if payload.m else "buy",
                price=payload.p,
                amount=payload.q,
                trade_id=str(payload.a),
                timestamp=payload.T,
            ),
        )


class _TickerRoute(_Route):
    __slots__ = ()
    payload = _BookTicker
    event_name = "bookTicker"

    def build(self, payload: _BookTicker, received_at: float) -> Batch:
        owner = self.owner
        return (
            Ticker(
                connection=owner._name,
                exchange=owner.exchange,
                received_at=received_at,
                symbol=self.symbol,
                bid=payload.b,
                bid_size=payload.B,
                ask=payload.a,
                ask_size=payload.A,
                timestamp=payload.T if payload.T is not None else payload.E,
            ),
        )


class _DepthRoute(_Route):
    """Diff depth: a BookDelta per frame, and the update-id chain of this stream."""

    __slots__ = ("last",)
    payload = _Depth
    event_name = "depthUpdate"

    def __init__(self, owner: BinanceProtocol, stream: str, symbol: str, native: str) -> None:
        super().__init__(owner, stream, symbol, native)
        #: ``u`` of the previous diff this session, or None before the first.
        self.last: int | None = None

    def build(self, payload: _Depth, received_at: float) -> Batch:
        # USD-M links each diff to the previous one with pu; spot with U = previous u + 1.
        prev = payload.pu if payload.pu is not None else payload.U - 1
        last = self.last
        if last is not None and prev != last:
            self.owner._events.append(SequenceGap(symbol=self.symbol, expected=last, received=prev))
        self.last = payload.u
        owner = self.owner
        return (
            BookDelta(
                connection=owner._name,
                exchange=owner.exchange,
                received_at=received_at,
                symbol=self.symbol,
                bids=payload.b,
                asks=payload.a,
                sequence=payload.u,
                prev_sequence=prev,
                timestamp=payload.T if payload.T is not None else payload.E,
            ),
        )

    def reset(self) -> None:
        self.last = None


class _SpotPartialRoute(_Route):
    """Spot ``@depth<N>``: the top N levels, as a BookSnapshot."""

    __slots__ = ()
    payload = _PartialDepth

    def build(self, payload: _PartialDepth, received_at: float) -> Batch:
        owner = self.owner
        return (
            BookSnapshot(
                connection=owner._name,
                exchange=owner.exchange,
                received_at=received_at,
                symbol=self.symbol,
                bids=payload.bids,
                asks=payload.asks,
                sequence=payload.lastUpdateId,
                timestamp=None,
            ),
        )


class _UsdmPartialRoute(_Route):
    """USD-M ``@depth<N>``: a ``depthUpdate`` holding the top N levels, as a BookSnapshot."""

    __slots__ = ()
    payload = _Depth

    def build(self, payload: _Depth, received_at: float) -> Batch:
        owner = self.owner
        return (
            BookSnapshot(
                connection=owner._name,
                exchange=owner.exchange,
                received_at=received_at,
                symbol=self.symbol,
                bids=payload.b,
                asks=payload.a,
                sequence=payload.u,
                timestamp=payload.T if payload.T is not None else payload.E,
            ),
        )


class _RawRoute(_Route):
    """A stream we do not decode: delivered as a RawMessage of the whole frame."""

    __slots__ = ()

    def enveloped(self, data: Frame, received_at: float) -> Batch:
        return self.bare(data, received_at)

    def bare(self, data: Frame, received_at: float) -> Batch:
        owner = self.owner
        value = owner._decoders.any.decode(data)
        return (
            RawMessage(
                connection=owner._name,
                exchange=owner.exchange,
                received_at=received_at,
                data=value,
            ),
        )


class _ShutdownRoute(_Route):
    """``!serverShutdown``: ask the actor to reconnect now."""

    __slots__ = ()
    payload = _Shutdown

    def build(self, payload: _Shutdown, received_at: float) -> Batch:
        self.owner._events.append(
            ReconnectRequested(reason=f"Binance serverShutdown notice (E={payload.E})")
        )
        return ()


class _Decoders:
    """Every msgspec Decoder an adapter uses, built once per adapter."""

    def __init__(self) -> None:
        self.probe = msgspec.json.Decoder(_Probe)
        self.any = msgspec.json.Decoder()
        self._envelopes: dict[type[msgspec.Struct], msgspec.json.Decoder[Any]] = {}
        self._bare: dict[type[msgspec.Struct], msgspec.json.Decoder[Any]] = {}

    def envelope(self, payload: type[msgspec.Struct]) -> msgspec.json.Decoder[Any]:
        decoder = self._envelopes.get(payload)
        if decoder is None:
            decoder = self._envelopes[payload] = _envelope(payload)
        return decoder

    def bare(self, payload: type[msgspec.Struct]) -> msgspec.json.Decoder[Any]:
        decoder = self._bare.get(payload)
        if decoder is None:
            decoder = self._bare[payload] = msgspec.json.Decoder(payload)
        return decoder


# -- symbols and streams ------------------------------------------------------------------


def _split_native(native: str) -> str:
    """``BTCUSDT`` -> ``BTC-USDT`` by a known quote suffix; the native name if none fits."""
    for quote in KNOWN_QUOTES:
        if native.endswith(quote) and len(native) > len(quote):
            normalized = f"{native[: -len(quote)]}-{quote}"
            if parse_symbol(normalized) is not None:
                return normalized
    return native


def _stream_type(topic: str) -> str:
    """``btcusdt@depth@100ms`` -> ``depth@100ms``; ``!markPrice@arr`` -> ``markPrice@arr``."""
    if topic.startswith("!"):
        return topic[1:]
    return topic.partition("@")[2]


def _usdm_path(topic: str) -> str | None:
    """``/public`` or ``/market``: where a USD-M stream is served since 2026; None if unknown."""
    kind = _stream_type(topic)
    if kind in _USDM_PUBLIC or kind.startswith("depth"):
        return "/public"
    if kind in _USDM_MARKET or kind.startswith(_USDM_MARKET_PREFIXES):
        return "/market"
    return None


def _few(names: Sequence[str]) -> str:
    """``a, b, c and 4 more``."""
    shown = ", ".join(names[:3])
    return shown if len(names) <= 3 else f"{shown} and {len(names) - 3} more"


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
    subscribe_spacing: ClassVar[float] = DEFAULT_SUBSCRIBE_SPACING
    #: Whether symbols are perpetual swaps (USD-M) rather than spot.
    _perp: ClassVar[bool] = False

    def __init__(self, spec: ConnectionSpec, *, pacer: Pacer | None = None) -> None:
        super().__init__(spec, pacer=pacer)
        self._name = spec.name
        self._decoders = _Decoders()
        self._probe = self._decoders.probe.decode
        self._routes: dict[str, _Route] = {}
        self._depth_routes: list[_DepthRoute] = []
        self._bare_routes: dict[tuple[str, str], _Route] = {}
        for topic, route_type, symbol, native in self._plan(spec):
            route = route_type(self, topic, symbol, native)
            self._routes[topic] = route
            if isinstance(route, _DepthRoute):
                self._depth_routes.append(route)
            if route.event and route.native:
                self._bare_routes.setdefault((route.event, route.native), route)
        self._topics = list(self._routes)
        self._routes["!serverShutdown"] = _ShutdownRoute(self, "!serverShutdown", "", "")
        self._has_raw = any(type(r) is _RawRoute for r in self._routes.values())
        self._next_id = 1
        self._requests: dict[int, list[str]] = {}
        self._last_at = -math.inf

    # -- configuration -------------------------------------------------------------

    @classmethod
    def _symbol_problem(cls, symbol: str) -> str | None:
        """What is wrong with one configured symbol, or None."""
        parsed = parse_symbol(symbol)
        if parsed is not None:
            if parsed.perp and not cls._perp:
                return (
                    f"{symbol!r} is a perpetual swap (expected a spot symbol such as "
                    f"BTC-USDT on exchange 'binance'; use exchange = 'binance_usdm' for "
                    f"USD-M perpetuals)"
                )
            if cls._perp and not parsed.perp:
                return (
                    f"{symbol!r} is a spot symbol (expected a perpetual such as "
                    f"{symbol}-PERP on exchange 'binance_usdm'; use exchange = 'binance' "
                    f"for spot)"
                )
            if cls._perp and parsed.quote not in _USDM_QUOTES:
                # USD-M acks any stream name and then sends nothing for it, so a wrong
                # quote would look live and then go stale over and over.
                return (
                    f"{symbol!r} has no USD-M market (expected a USDT- or USDC-margined "
                    f"perpetual such as {parsed.base}-USDT-PERP)"
                )
            return None
        example = "BTC-USDT-PERP or BTCUSDT" if cls._perp else "BTC-USDT or BTCUSDT"
        if not _NATIVE.match(symbol) or symbol != symbol.upper():
            return (
                f"{symbol!r} is not a symbol (expected {example}: normalized, or "
                f"Binance's upper-case native name)"
            )
        if cls._perp and "_" in symbol:
            return (
                f"{symbol!r} is a dated future (expected a perpetual such as {example}; "
                f"delivery contracts are not supported)"
            )
        return None

    @classmethod
    def _raw_problem(cls, topic: str) -> str | None:
        if not topic or topic != topic.strip() or any(c.isspace() for c in topic):
            return f"{topic!r} is not a stream name (expected e.g. btcusdt@aggTrade)"
        if topic.startswith("!"):
            return None
        symbol, at, kind = topic.partition("@")
        if not at or not symbol or not kind:
            return (
                f"{topic!r} is not a stream name (expected <symbol>@<type>, e.g. btcusdt@aggTrade)"
            )
        if symbol != symbol.lower():
            return (
                f"{topic!r} has an upper-case symbol (expected {symbol.lower()}@{kind}: "
                f"Binance stream names use lower-case symbols)"
            )
        return None

    @classmethod
    def _topics_of(cls, spec: ConnectionSpec) -> list[str]:
        """Every stream the spec subscribes, in order, without duplicates (unchecked)."""
        topics: dict[str, None] = {}
        for symbol in spec.symbols:
            stream_symbol = cls._stream_symbol(symbol)
            for channel in spec.channels:
                suffix = _CHANNEL_STREAM.get(channel)
                if suffix is not None:
                    topics[f"{stream_symbol}@{suffix}"] = None
        for topic in spec.raw:
            topics[topic] = None
        return list(topics)

    @classmethod
    def _stream_symbol(cls, symbol: str) -> str:
        parsed = parse_symbol(symbol)
        if parsed is not None:
            return f"{parsed.base}{parsed.quote}".lower()
        return symbol.lower()

    @classmethod
    def check(cls, spec: ConnectionSpec) -> list[tuple[str, str]]:
        """Problems only Binance can see: channels, symbols, raw names, stream count.

        Args:
            spec: the decoded connection.

        Returns:
            ``(key, problem)`` pairs; empty when the spec is usable.
        """
        problems = super().check(spec)
        for channel in spec.channels:
            if channel not in _CHANNEL_STREAM:
                problems.append(
                    (
                        "channels",
                        f"unknown channel {channel!r} (expected one of: trades, ticker, book)",
                    )
                )
        for symbol in spec.symbols:
            problem = cls._symbol_problem(symbol)
            if problem is not None:
                problems.append(("symbols", problem))
        for topic in spec.raw:
            problem = cls._raw_problem(topic)
            if problem is not None:
                problems.append(("raw", problem))
        if spec.channels and not spec.symbols:
            problems.append(
                ("symbols", "empty (expected at least one symbol for the channels, e.g. BTC-USDT)")
            )
        if spec.symbols and not spec.channels:
            problems.append(
                (
                    "channels",
                    "empty (expected at least one of trades, ticker, book for the symbols)",
                )
            )
        if not spec.channels and not spec.symbols and not spec.raw:
            problems.append(
                ("channels", "nothing to subscribe (expected channels and symbols, or raw streams)")
            )
        if spec.subscribe:
            problems.append(
                (
                    "subscribe",
                    f"not used by the {cls.exchange} adapter (it builds its SUBSCRIBE "
                    "requests from channels, symbols and raw)",
                )
            )
        if spec.heartbeat is not None:
            problems.append(
                (
                    "heartbeat",
                    f"not used by the {cls.exchange} adapter (Binance's server sends the "
                    "pings and the WebSocket client answers them; remove the key)",
                )
            )
        count = len(cls._topics_of(spec))
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

    # -- session ----------------------------------------------------------------------

    @staticmethod
    def _route_type(kind: str) -> type[_Route]:
        if kind == "trade":
            return _TradeRoute
        if kind == "aggTrade":
            return _AggTradeRoute
        if kind == "bookTicker":
            return _TickerRoute
        if _DIFF_DEPTH.match(kind):
            return _DepthRoute
        return _RawRoute

    def _plan(self, spec: ConnectionSpec) -> Iterable[tuple[str, type[_Route], str, str]]:
        """(stream, route class, message symbol, native symbol) for every stream."""
        normalized: dict[str, str] = {}  # lower-case stream symbol -> message symbol
        for symbol in spec.symbols:
            parsed = parse_symbol(symbol)
            if parsed is not None:
                normalized[f"{parsed.base}{parsed.quote}".lower()] = str(parsed)
            else:
                normalized[symbol.lower()] = self._from_native(symbol)
        for topic in self._topics_of(spec):
            kind = _stream_type(topic)
            if topic.startswith("!"):
                yield topic, _RawRoute, "", ""
                continue
            stream_symbol = topic.partition("@")[0]
            symbol = normalized.get(stream_symbol) or self._from_native(stream_symbol.upper())
            route_type = self._route_type(kind)
            if route_type is _RawRoute and _PARTIAL_DEPTH.match(kind):
                route_type = _UsdmPartialRoute if self._perp else _SpotPartialRoute
            yield topic, route_type, symbol, stream_symbol.upper()

    @classmethod
    def _from_native(cls, native: str) -> str:
        """The message symbol for a native name."""
        split = _split_native(native)
        if split == native:
            return native
        return f"{split}-PERP" if cls._perp else split

    def _on_start(self, now: float) -> None:
        self._last_at = -math.inf
        topics = self._topics
        step = DEFAULT_MAX_PARAMS
        for start in range(0, len(topics), step):
            self._request(now, topics[start : start + step])
        self._expect(topics)

    def _request(self, now: float, params: list[str]) -> None:
        """Queue one SUBSCRIBE for ``params``, paced after the previous one."""
        request_id = self._next_id
        self._next_id += 1
        self._requests[request_id] = params
        at = max(now, self._last_at + self.subscribe_spacing)
        self._last_at = at
        frame = msgspec.json.encode({"method": "SUBSCRIBE", "params": params, "id": request_id})
        self._send_at(at, frame.decode())

    def _on_end(self) -> None:
        self._requests.clear()
        for route in self._depth_routes:
            route.reset()

    # -- the hot path -------------------------------------------------------------------

    def receive_frame(self, data: Frame, now: float, received_at: float) -> Batch:
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
        return self._slow(data, now, received_at)

    def _bad(self, exc: msgspec.DecodeError, data: Frame, stream: str | None) -> Batch:
        where = f" on stream {stream!r}" if stream else ""
        if isinstance(exc, msgspec.ValidationError):
            self._malformed("unexpected_shape", f"{exc}{where}", data)
        else:
            self._malformed("invalid_json", f"{exc}{where}", data)
        return ()

    def _slow(self, data: Frame, now: float, received_at: float) -> Batch:
        """Everything but a known stream's enveloped frame."""
        try:
            probe = self._probe(data)
        except msgspec.DecodeError as exc:
            return self._bad(exc, data, None)
        if probe.stream is not None:
            route = self._routes.get(probe.stream)
            if route is None or not probe.data:
                self._malformed(
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
            return self._bare(probe, data, received_at)
        if probe.u is not None and probe.s is not None:
            # Spot bookTicker without envelope: the only payload without "e".
            return self._bare(probe, data, received_at)
        if probe.id is not None:
            topics = self._requests.pop(probe.id, None) if isinstance(probe.id, int) else None
            if topics is None:
                self._malformed("unknown_request", f"ack for request id {probe.id!r}", data)
            else:
                self._confirm(topics)
            return ()
        self._malformed("unknown_frame", "not a stream frame, ack, error or notice", data)
        return ()

    def _bare(self, probe: _Probe, data: Frame, received_at: float) -> Batch:
        """A payload without envelope (``/ws`` URLs, raw ``serverShutdown``)."""
        event = probe.e if probe.e is not None else "bookTicker"
        if event == "serverShutdown":
            self._events.append(
                ReconnectRequested(reason=f"Binance serverShutdown notice (E={probe.E})")
            )
            return ()
        route = self._bare_routes.get((event, probe.s or ""))
        if route is None:
            if self._has_raw and event not in _DECODED_EVENTS:
                return (
                    RawMessage(
                        connection=self._name,
                        exchange=self.exchange,
                        received_at=received_at,
                        data=self._decoders.any.decode(data),
                    ),
                )
            self._malformed(
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
        topics = self._requests.pop(request_id, None) if isinstance(request_id, int) else None
        if topics is None:
            self._malformed(
                "unknown_request", f"error {code} {msg!r} for request id {request_id!r}", data
            )
            return ()
        if code == "2" and len(topics) > 1:
            # Spot refuses the whole request for one invalid name: split it to find it.
            half = len(topics) // 2
            self._request(now, topics[:half])
            self._request(now, topics[half:])
            return ()
        for topic in topics:
            self._refuse(topic, code, msg)
        return ()


class BinanceUsdmProtocol(BinanceProtocol):
    """Binance USD-M perpetual futures market streams.

    Same protocol as spot with these differences: symbols are perpetuals
    (``BTC-USDT-PERP`` -> ``btcusdt``), book diffs chain on ``pu``, bookTicker carries
    ``T``/``E``, the limit is 10 incoming messages per second, and since the 2026 URL split
    a connection reaches either ``/public`` or ``/market`` streams (see the module doc).
    USD-M acks every SUBSCRIBE, even for unknown streams (observed 2026-10-07), so an
    invalid stream shows as ``live`` but never delivers.
    """

    exchange: ClassVar[str] = "binance_usdm"
    #: /public serves bookTicker, depth and trade (BFN, GOB-809).
    default_url: ClassVar[str | None] = "wss://fstream.binance.com/public/stream"
    #: The /market endpoint, for connections with only /market streams.
    market_url: ClassVar[str] = "wss://fstream.binance.com/market/stream"
    subscribe_spacing: ClassVar[float] = DEFAULT_USDM_SUBSCRIBE_SPACING
    _perp: ClassVar[bool] = True

    @property
    def url(self) -> str:
        """The configured URL; else /market if all streams are served there, else /public."""
        if self.spec.url is not None:
            return self.spec.url
        paths = {_usdm_path(topic) for topic in self._topics}
        if paths == {"/market"}:
            return self.market_url
        return self.default_url or self.market_url

    @classmethod
    def check(cls, spec: ConnectionSpec) -> list[tuple[str, str]]:
        """Spot's checks plus the 2026 ``/public`` vs ``/market`` split.

        Args:
            spec: the decoded connection.

        Returns:
            ``(key, problem)`` pairs; empty when the spec is usable.
        """
        problems = super().check(spec)
        by_path: dict[str, list[str]] = {"/public": [], "/market": []}
        for topic in cls._topics_of(spec):
            path = _usdm_path(topic)
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
