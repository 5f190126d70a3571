"""Bybit v5 public WebSocket frames as msgspec Structs (unknown fields allowed).

Shapes: docs/exchanges/bybit.md §6 (https://bybit-exchange.github.io/docs/v5/websocket/public/trade,
.../orderbook). Prices and sizes are decimal strings, decoded exactly as ``Decimal``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

__all__ = ["NO_DATA", "Book", "Envelope", "TradeEntry"]

NO_DATA = msgspec.Raw()


class Envelope(msgspec.Struct, gc=False):
    """Any frame: data (``topic``, ``type``, ``ts``, ``data``) or a reply (``op``...)."""

    topic: str | None = None
    type: str = ""
    ts: int | None = None
    data: msgspec.Raw = NO_DATA
    op: str | None = None
    success: bool | None = None
    ret_msg: str = ""
    req_id: str | int | None = None


class TradeEntry(msgspec.Struct, gc=False):
    """One trade of ``publicTrade``: ``i`` id, ``T`` time, ``S`` taker side, ``p``, ``v``."""

    i: str
    T: int
    S: Literal["Buy", "Sell"]
    p: Decimal
    v: Decimal


class Book(msgspec.Struct, gc=False):
    """``orderbook.{depth}`` data: levels ``b``/``a``, update id ``u`` (+1 per delta)."""

    b: tuple[tuple[Decimal, Decimal], ...]
    a: tuple[tuple[Decimal, Decimal], ...]
    u: int
