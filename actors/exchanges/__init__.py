"""Sans-IO exchange adapters and the normalized message types."""

from __future__ import annotations

import typing

from actors.exchanges._base import AdapterState as AdapterState
from actors.exchanges._base import ExchangeProtocol as ExchangeProtocol
from actors.exchanges._messages import Batch as Batch
from actors.exchanges._messages import MalformedFrame as MalformedFrame
from actors.exchanges._messages import Message as Message
from actors.exchanges._messages import RawMessage as RawMessage
from actors.exchanges._messages import Subscribed as Subscribed
from actors.exchanges.raw import RawProtocol as RawProtocol

__all__ = [
    "ADAPTERS",
    "AdapterState",
    "Batch",
    "ExchangeProtocol",
    "MalformedFrame",
    "Message",
    "RawMessage",
    "RawProtocol",
    "Subscribed",
]

#: Adapter classes by the ``exchange`` name used in config.
ADAPTERS: typing.Final[dict[str, type[ExchangeProtocol]]] = {
    RawProtocol.exchange: RawProtocol,
}
