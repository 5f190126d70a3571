"""Binance routes: how one subscribed stream's frames become messages.

One route object per stream, found by one dict lookup on the stream name; each decodes
its payload with the msgspec Struct of its type (:mod:`.wire`) and builds messages with
the adapter's :class:`~actors.exchanges.sdk.stamp.Stamp`. Book diffs check their chain
through the adapter's ``chain`` (the SDK's BookChain).
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Protocol

import msgspec

from actors.exchanges.binance import config, wire
from actors.exchanges.messages import Batch, Event, ReconnectRequested
from actors.exchanges.sdk.protocol import Frame
from actors.exchanges.sdk.stamp import Stamp

__all__ = [
    "AggTradeRoute",
    "DepthRoute",
    "RawRoute",
    "Route",
    "RouteOwner",
    "ShutdownRoute",
    "SpotPartialRoute",
    "TickerRoute",
    "TradeRoute",
    "UsdmPartialRoute",
    "route_type",
]


class RouteOwner(Protocol):
    """What a route uses of its adapter."""

    stamp: Stamp
    decoders: wire.Decoders

    def chain(self, key: object, symbol: str, prev: int, seq: int) -> None: ...

    def emit(self, event: Event) -> None: ...


# -- routes: one per subscribed stream ------------------------------------------------------


class Route:
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

    def __init__(self, owner: RouteOwner, stream: str, symbol: str, native: str) -> None:
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


class TradeRoute(Route):
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


class AggTradeRoute(Route):
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


class TickerRoute(Route):
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


class DepthRoute(Route):
    """Diff depth: a BookDelta per frame, checked against this stream's update-id chain."""

    __slots__ = ()
    payload = wire.Depth
    event_name = "depthUpdate"

    def build(self, payload: wire.Depth, received_at: float) -> Batch:
        # USD-M links each diff to the previous one with pu; spot with U = previous u + 1.
        prev = payload.pu if payload.pu is not None else payload.U - 1
        timestamp = payload.T if payload.T is not None else payload.E
        # Built (so checked) before the chain moves: a refused delta leaves it in place.
        delta = self.stamp.delta(
            received_at, self.symbol, payload.b, payload.a, payload.u, prev, timestamp
        )
        self.owner.chain(self.stream, self.symbol, prev, payload.u)
        return (delta,)


class SpotPartialRoute(Route):
    """Spot ``@depth<N>``: the top N levels, as a BookSnapshot."""

    __slots__ = ()
    payload = wire.PartialDepth

    def build(self, payload: wire.PartialDepth, received_at: float) -> Batch:
        return (
            self.stamp.snapshot(
                received_at, self.symbol, payload.bids, payload.asks, payload.lastUpdateId, None
            ),
        )


class UsdmPartialRoute(Route):
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


class RawRoute(Route):
    """A stream we do not decode: delivered as a RawMessage of the whole frame."""

    __slots__ = ()

    def enveloped(self, data: Frame, received_at: float) -> Batch:
        return self.bare(data, received_at)

    def bare(self, data: Frame, received_at: float) -> Batch:
        return (self.stamp.raw(received_at, self.owner.decoders.any.decode(data)),)


class ShutdownRoute(Route):
    """``!serverShutdown``: ask the actor to reconnect now."""

    __slots__ = ()
    payload = wire.Shutdown

    def build(self, payload: wire.Shutdown, received_at: float) -> Batch:
        self.owner.emit(ReconnectRequested(reason=f"Binance serverShutdown notice (E={payload.E})"))
        return ()


def route_type(kind: str, *, perp: bool) -> type[Route]:
    if kind == "trade":
        return TradeRoute
    if kind == "aggTrade":
        return AggTradeRoute
    if kind == "bookTicker":
        return TickerRoute
    if config.DIFF_DEPTH.match(kind):
        return DepthRoute
    if config.PARTIAL_DEPTH.match(kind):
        return UsdmPartialRoute if perp else SpotPartialRoute
    return RawRoute
