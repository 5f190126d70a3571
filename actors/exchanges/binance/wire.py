"""Binance market-stream payloads as msgspec Structs (unknown fields are ignored).

Sources: https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams and
https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

__all__ = [
    "AggTrade",
    "BookTicker",
    "Decoders",
    "Depth",
    "Error",
    "PartialDepth",
    "Probe",
    "Shutdown",
    "Trade",
]


class Trade(msgspec.Struct):
    """``<sym>@trade``: ``t`` id, ``p`` price, ``q`` qty, ``T`` time, ``m`` buyer is maker."""

    t: int
    p: Decimal
    q: Decimal
    T: int
    m: bool


class AggTrade(msgspec.Struct):
    """``<sym>@aggTrade``: like a trade, with the aggregate id ``a``."""

    a: int
    p: Decimal
    q: Decimal
    T: int
    m: bool


class BookTicker(msgspec.Struct):
    """``<sym>@bookTicker``: best bid ``b``/``B``, best ask ``a``/``A``; USD-M adds E/T."""

    b: Decimal
    B: Decimal
    a: Decimal
    A: Decimal
    T: int | None = None
    E: int | None = None


class Depth(msgspec.Struct):
    """``depthUpdate``: ``U``..``u`` update ids, levels ``b``/``a``; USD-M adds pu/T."""

    E: int
    U: int
    u: int
    b: tuple[tuple[Decimal, Decimal], ...]
    a: tuple[tuple[Decimal, Decimal], ...]
    pu: int | None = None
    T: int | None = None


class PartialDepth(msgspec.Struct):
    """Spot ``<sym>@depth<N>``: a top-N book without event fields."""

    lastUpdateId: int
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]


class RestDepth(msgspec.Struct):
    """``GET /api/v3/depth`` (spot) or ``/fapi/v1/depth`` (USD-M, adds ``E``/``T``)."""

    lastUpdateId: int
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]
    E: int | None = None
    T: int | None = None


class Error(msgspec.Struct):
    """The inner error object of ``{"error":{"code":2,"msg":"..."},"id":N}``."""

    code: int
    msg: str


class Probe(msgspec.Struct):
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
    error: Error | None = None
    code: int | None = None
    msg: str | None = None
    e: str | None = None
    s: str | None = None
    E: int | None = None
    u: int | None = None


class Shutdown(msgspec.Struct):
    """``{"e":"serverShutdown","E":ms}``."""

    E: int | None = None


def _envelope(payload: type[msgspec.Struct]) -> msgspec.json.Decoder[Any]:
    """A decoder for ``{"stream": ..., "data": <payload>}`` that yields the payload Struct."""
    envelope = msgspec.defstruct(f"{payload.__name__}Frame", [("data", payload)])
    return msgspec.json.Decoder(envelope)


class Decoders:
    """Every msgspec Decoder an adapter uses, built once per adapter."""

    def __init__(self) -> None:
        self.probe = msgspec.json.Decoder(Probe)
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
