"""OKX v5 public WebSocket frames as msgspec Structs (unknown fields allowed: OKX adds
fields). https://www.okx.com/docs-v5/en/#public-data-websocket
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final, Literal

import msgspec

__all__ = ["NO_DATA", "Arg", "Book", "BookLevel", "Envelope", "Tick", "TradeEntry"]


class Arg(msgspec.Struct, gc=False):
    """The ``arg`` of a data frame or an ack."""

    channel: str
    instId: str | None = None
    instType: str | None = None
    instFamily: str | None = None
    ccy: str | None = None


NO_DATA: Final = msgspec.Raw()


class Envelope(msgspec.Struct, gc=False):
    """Every OKX frame: data (``arg`` + ``data`` [+ ``action``]) or an event."""

    arg: Arg | None = None
    action: str | None = None
    data: msgspec.Raw = NO_DATA
    event: str | None = None
    code: str | int | None = None
    msg: str = ""


class TradeEntry(msgspec.Struct, gc=False):
    """One entry of ``trades`` (``ts`` is a string of ms: decoded with strict=False)."""

    tradeId: str
    px: Decimal
    sz: Decimal
    side: Literal["buy", "sell"]
    ts: int


class Tick(msgspec.Struct, gc=False):
    """The best bid/ask fields of ``tickers`` (``""`` when a side is empty)."""

    bidPx: str
    bidSz: str
    askPx: str
    askSz: str
    ts: int


class BookLevel(msgspec.Struct, array_like=True, gc=False):
    """``[px, sz, "0", numOrders]``: the trailing elements are ignored."""

    px: Decimal
    sz: Decimal


class Book(msgspec.Struct, gc=False):
    """One entry of ``books``/``books5``/``bbo-tbt`` (seqIds absent before 2023)."""

    asks: list[BookLevel]
    bids: list[BookLevel]
    ts: int
    seqId: int | None = None
    prevSeqId: int | None = None
    #: CRC32 of the top 25 levels as a signed int; 0 on every frame since 2026-06-23.
    checksum: int | None = None


class RestBooks(msgspec.Struct):
    """``GET /api/v5/market/books``: ``{"code": "0", "msg": "", "data": [Book]}``."""

    code: str
    msg: str = ""
    data: list[Book] = []
