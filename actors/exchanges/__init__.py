"""Sans-IO exchange adapters and the normalized message types."""

from __future__ import annotations

import typing

from actors.exchanges._base import AdapterState as AdapterState
from actors.exchanges._base import ExchangeProtocol as ExchangeProtocol
from actors.exchanges._messages import Batch as Batch
from actors.exchanges._messages import BookDelta as BookDelta
from actors.exchanges._messages import BookSnapshot as BookSnapshot
from actors.exchanges._messages import MalformedFrame as MalformedFrame
from actors.exchanges._messages import Message as Message
from actors.exchanges._messages import RawMessage as RawMessage
from actors.exchanges._messages import Subscribed as Subscribed
from actors.exchanges._messages import Ticker as Ticker
from actors.exchanges._messages import Trade as Trade
from actors.exchanges._pacing import Pacer as Pacer
from actors.exchanges.binance import BinanceProtocol as BinanceProtocol
from actors.exchanges.binance import BinanceUsdmProtocol as BinanceUsdmProtocol
from actors.exchanges.deribit import DeribitProtocol as DeribitProtocol
from actors.exchanges.okx import OkxProtocol as OkxProtocol
from actors.exchanges.raw import RawProtocol as RawProtocol

__all__ = [
    "ADAPTERS",
    "AdapterState",
    "Batch",
    "BinanceProtocol",
    "BinanceUsdmProtocol",
    "BookDelta",
    "BookSnapshot",
    "DeribitProtocol",
    "ExchangeProtocol",
    "MalformedFrame",
    "Message",
    "OkxProtocol",
    "Pacer",
    "RawMessage",
    "RawProtocol",
    "Subscribed",
    "Ticker",
    "Trade",
]

#: Adapter classes by the ``exchange`` name used in config.
ADAPTERS: typing.Final[dict[str, type[ExchangeProtocol]]] = {
    cls.exchange: cls
    for cls in (
        BinanceProtocol,
        BinanceUsdmProtocol,
        DeribitProtocol,
        OkxProtocol,
        RawProtocol,
    )
}
