"""Deribit JSON-RPC frames as msgspec Structs (unknown fields allowed: Deribit adds fields).

https://docs.deribit.com/ (subscriptions: trades, quote, book; heartbeats; replies).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "BookLevel",
    "Data",
    "Envelope",
    "Error",
    "Params",
    "RawEnvelope",
    "RawParams",
    "TradeEntry",
]


class TradeEntry(msgspec.Struct, gc=False):
    """One element of a ``trades.*`` notification."""

    trade_id: str
    price: Decimal
    amount: Decimal
    direction: Literal["buy", "sell"]
    timestamp: int
    instrument_name: str = ""


BookLevel = tuple[Literal["new", "change", "delete"], Decimal, Decimal]


class Data(msgspec.Struct, gc=False):
    """The object form of notification data: book, quote, ticker, platform_state."""

    type: str = ""
    instrument_name: str = ""
    timestamp: int | None = None
    change_id: int | None = None
    prev_change_id: int | None = None
    bids: list[BookLevel] = []
    asks: list[BookLevel] = []
    best_bid_price: Decimal | UnsetType | None = UNSET
    best_bid_amount: Decimal | UnsetType | None = UNSET
    best_ask_price: Decimal | UnsetType | None = UNSET
    best_ask_amount: Decimal | UnsetType | None = UNSET
    maintenance: bool | None = None


class Params(msgspec.Struct, gc=False):
    """``params`` of a notification (``subscription``) or of a ``heartbeat``."""

    channel: str = ""
    data: list[TradeEntry] | Data | None = None
    type: str = ""


class Error(msgspec.Struct, gc=False):
    """``error`` of a JSON-RPC reply."""

    code: int
    message: str = ""


class Envelope(msgspec.Struct, gc=False):
    """Any frame Deribit sends: a notification (``method``) or a reply (``id``)."""

    method: str = ""
    params: Params | None = None
    id: int | None = None
    result: list[str] | str | dict[str, Any] | UnsetType | None = UNSET
    error: Error | None = None


class RawParams(msgspec.Struct, gc=False):
    channel: str = ""
    data: Any = None


class RawEnvelope(msgspec.Struct, gc=False):
    """A notification whose data is delivered as-is (``raw`` channels)."""

    method: str = ""
    params: RawParams | None = None
