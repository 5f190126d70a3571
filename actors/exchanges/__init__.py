"""Sans-IO exchange adapters and the normalized message types."""

from __future__ import annotations

import typing

from actors.exchanges.binance import BinanceProtocol as BinanceProtocol
from actors.exchanges.binance import BinanceUsdmProtocol as BinanceUsdmProtocol
from actors.exchanges.bybit import BybitLinearProtocol as BybitLinearProtocol
from actors.exchanges.bybit import BybitProtocol as BybitProtocol
from actors.exchanges.deribit import DeribitProtocol as DeribitProtocol
from actors.exchanges.messages import Batch as Batch
from actors.exchanges.messages import BookDelta as BookDelta
from actors.exchanges.messages import BookInvalid as BookInvalid
from actors.exchanges.messages import BookSnapshot as BookSnapshot
from actors.exchanges.messages import BookTop as BookTop
from actors.exchanges.messages import Command as Command
from actors.exchanges.messages import MalformedFrame as MalformedFrame
from actors.exchanges.messages import Message as Message
from actors.exchanges.messages import RawMessage as RawMessage
from actors.exchanges.messages import Subscribe as Subscribe
from actors.exchanges.messages import Subscribed as Subscribed
from actors.exchanges.messages import Ticker as Ticker
from actors.exchanges.messages import Trade as Trade
from actors.exchanges.messages import Unsubscribe as Unsubscribe
from actors.exchanges.okx import OkxProtocol as OkxProtocol
from actors.exchanges.raw import RawProtocol as RawProtocol
from actors.exchanges.sdk.pacing import Pacer as Pacer
from actors.exchanges.sdk.protocol import AdapterState as AdapterState
from actors.exchanges.sdk.protocol import ExchangeProtocol as ExchangeProtocol

__all__ = [
    "ADAPTERS",
    "AdapterState",
    "Batch",
    "BinanceProtocol",
    "BinanceUsdmProtocol",
    "BookDelta",
    "BookInvalid",
    "BookSnapshot",
    "BookTop",
    "BybitLinearProtocol",
    "BybitProtocol",
    "Command",
    "DeribitProtocol",
    "ExchangeProtocol",
    "MalformedFrame",
    "Message",
    "OkxProtocol",
    "Pacer",
    "RawMessage",
    "RawProtocol",
    "Subscribe",
    "Subscribed",
    "Ticker",
    "Trade",
    "Unsubscribe",
]

#: Adapter classes by the ``exchange`` name used in config.
ADAPTERS: typing.Final[dict[str, type[ExchangeProtocol]]] = {
    cls.exchange: cls
    for cls in (
        BinanceProtocol,
        BinanceUsdmProtocol,
        BybitProtocol,
        BybitLinearProtocol,
        DeribitProtocol,
        OkxProtocol,
        RawProtocol,
    )
}
