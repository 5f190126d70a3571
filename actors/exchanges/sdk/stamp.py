"""Build normalized messages with the connection and exchange filled in.

Every message carries ``connection``, ``exchange`` and ``received_at``; an adapter's
decoder supplies only what the frame says. Arguments are positional on purpose: this is
the hot path (one call per message).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from actors.exchanges.messages import BookDelta, BookSnapshot, Level, RawMessage, Ticker, Trade

__all__ = ["Stamp"]


class Stamp:
    """Message factory for one connection of one exchange."""

    __slots__ = ("connection", "exchange")

    def __init__(self, connection: str, exchange: str) -> None:
        self.connection = connection
        self.exchange = exchange

    def trade(
        self,
        received_at: float,
        symbol: str,
        side: Literal["buy", "sell"],
        price: Decimal,
        amount: Decimal,
        trade_id: str,
        timestamp: int,
    ) -> Trade:
        """A :class:`Trade`."""
        return Trade(
            connection=self.connection,
            exchange=self.exchange,
            received_at=received_at,
            symbol=symbol,
            side=side,
            price=price,
            amount=amount,
            trade_id=trade_id,
            timestamp=timestamp,
        )

    def ticker(
        self,
        received_at: float,
        symbol: str,
        bid: Decimal,
        bid_size: Decimal,
        ask: Decimal,
        ask_size: Decimal,
        timestamp: int | None,
    ) -> Ticker:
        """A :class:`Ticker`."""
        return Ticker(
            connection=self.connection,
            exchange=self.exchange,
            received_at=received_at,
            symbol=symbol,
            bid=bid,
            bid_size=bid_size,
            ask=ask,
            ask_size=ask_size,
            timestamp=timestamp,
        )

    def snapshot(
        self,
        received_at: float,
        symbol: str,
        bids: tuple[Level, ...],
        asks: tuple[Level, ...],
        sequence: int | None,
        timestamp: int | None,
    ) -> BookSnapshot:
        """A :class:`BookSnapshot`."""
        return BookSnapshot(
            connection=self.connection,
            exchange=self.exchange,
            received_at=received_at,
            symbol=symbol,
            bids=bids,
            asks=asks,
            sequence=sequence,
            timestamp=timestamp,
        )

    def delta(
        self,
        received_at: float,
        symbol: str,
        bids: tuple[Level, ...],
        asks: tuple[Level, ...],
        sequence: int | None,
        prev_sequence: int | None,
        timestamp: int | None,
    ) -> BookDelta:
        """A :class:`BookDelta`."""
        return BookDelta(
            connection=self.connection,
            exchange=self.exchange,
            received_at=received_at,
            symbol=symbol,
            bids=bids,
            asks=asks,
            sequence=sequence,
            prev_sequence=prev_sequence,
            timestamp=timestamp,
        )

    def raw(self, received_at: float, data: Any) -> RawMessage:
        """A :class:`RawMessage` holding a decoded JSON value."""
        return RawMessage(
            connection=self.connection, exchange=self.exchange, received_at=received_at, data=data
        )
