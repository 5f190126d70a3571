"""Build normalized messages with the connection and exchange filled in, and refuse values
no market has.

Every message carries ``connection``, ``exchange`` and ``received_at``; an adapter's
decoder supplies only what the frame says. Arguments are positional on purpose: this is
the hot path (one call per message).

Theory of operation (audit L2): msgspec decodes ``"NaN"``, ``"sNaN"``, ``"Infinity"`` and
``"-1"`` into a ``Decimal`` field as readily as ``"42.5"``, and a signalling NaN then raises
``InvalidOperation`` in the first comparison a consumer makes. Every normalized message is
built here, so the values are checked here, once, for every adapter:

- prices and sizes are finite;
- a trade's price and amount, and a book level's price, are above 0;
- a book level's size is 0 or more (0 removes the level); a ticker's prices and sizes are
  0 or more (Deribit reports an empty book side as a null or 0 best bid/ask);
- timestamps are Unix milliseconds in ``[0, 2**63)`` (a signed 64-bit integer, what a
  consumer's database or array stores);
- book sequence ids (and the previous id a delta continues from) are in ``[0, 2**64)``.

A message that breaks one raises :class:`InvalidValue`; :meth:`ExchangeProtocol.receive_frame`
turns it into one ``MalformedFrame`` (kind ``invalid_value``) for the whole frame, whose
messages are all dropped. Adapters build a frame's messages before they record its book
sequences, so a refused delta leaves the chain where it was and the next delta reports
the gap. Fields the normalized messages do not carry (funding rates, price changes,
which may be negative) are not checked. The checks cost two context-free tests per
Decimal (about 1,000 instructions per trade, 5 % of decoding a Binance trade frame, about
900 per book level); :func:`invalid` works out which field was wrong only once one failed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any, Final, Literal

from actors.exchanges.messages import BookDelta, BookSnapshot, Level, RawMessage, Ticker, Trade

__all__ = ["SEQUENCE_LIMIT", "TIME_LIMIT", "InvalidValue", "Stamp", "invalid"]

_ZERO: Final = Decimal(0)
#: Book sequence ids are unsigned 64-bit on every venue: at most ``2**64 - 1``.
SEQUENCE_LIMIT: Final = 2**64
#: Timestamps must fit a signed 64-bit integer: at most ``2**63 - 1``.
TIME_LIMIT: Final = 2**63


class InvalidValue(ValueError):
    """A decoded value that no market has (see the module docstring).

    Attributes:
        field: the message field, e.g. ``"price"``, ``"bids[3] size"``.
        value: the offending value.
    """

    def __init__(self, message: str, *, field: str, value: object) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


# The fast checks use only what a Decimal answers without a decimal context (is_finite,
# is_signed, truth = non-zero), about a third cheaper than comparisons, which look the
# context up; ``x >> 63`` is 0 exactly for ints in [0, 2**63), ``x >> 64`` for [0, 2**64).
# They may refuse a legal oddity (a size of -0, which equals 0): only when one fails does
# :func:`invalid` apply the rules exactly, and the message is built if it finds nothing.


def _levels_valid(levels: tuple[Level, ...]) -> bool:
    for price, size in levels:
        if not (
            price.is_finite()
            and size.is_finite()
            and price
            and not price.is_signed()
            and not size.is_signed()
        ):
            return False
    return True


def _problem(value: Any, rule: str) -> str | None:
    """What is wrong with ``value`` under ``rule``, or None (the slow path only)."""
    if rule in ("positive", "not negative"):
        if not value.is_finite():
            return "is not a finite number"
        if rule == "positive" and not value > _ZERO:
            return "is not above 0"
        if rule == "not negative" and value < _ZERO:
            return "is negative"
        return None
    if value is None:
        return None
    if value < 0:
        return "is negative"
    if rule == "sequence" and value >= SEQUENCE_LIMIT:
        return "does not fit in 64 bits"
    if rule == "time" and value >= TIME_LIMIT:
        return "does not fit in a signed 64-bit integer"
    return None


def invalid(kind: str, symbol: str, checks: Iterable[tuple[str, Any, str]]) -> InvalidValue | None:
    """The error for the first failing ``(field, value, rule)`` of a message, or None.

    Rules: ``positive`` (a finite Decimal above 0), ``not negative`` (a finite Decimal, 0
    or more), ``time`` (an int in ``[0, 2**63)``, or None), ``sequence`` (an int in
    ``[0, 2**64)``, or None).
    """
    for field, value, rule in checks:
        problem = _problem(value, rule)
        if problem is not None:
            expected = {
                "positive": "a finite number above 0",
                "not negative": "a finite number, 0 or more",
                "time": "Unix milliseconds in [0, 2**63)",
                "sequence": "an id in [0, 2**64)",
            }[rule]
            return InvalidValue(
                f"{kind} {symbol} {field} {value} {problem} (expected {expected})",
                field=field,
                value=value,
            )
    return None


def _level_checks(levels: tuple[Level, ...], side: str) -> Iterator[tuple[str, Any, str]]:
    for index, (price, size) in enumerate(levels):
        yield (f"{side}[{index}] price", price, "positive")
        yield (f"{side}[{index}] size", size, "not negative")


class Stamp:
    """Message factory for one connection of one exchange.

    Every method checks the values it is given (module docstring) before it builds.

    Raises:
        InvalidValue: from every method but :meth:`raw`, when a value is out of range.
    """

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
        if not (
            price.is_finite()
            and amount.is_finite()
            and price
            and amount
            and not price.is_signed()
            and not amount.is_signed()
            and not timestamp >> 63
        ):
            error = invalid(
                "trade",
                symbol,
                [
                    ("price", price, "positive"),
                    ("amount", amount, "positive"),
                    ("timestamp", timestamp, "time"),
                ],
            )
            if error is not None:
                raise error
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
        if not (
            bid.is_finite()
            and bid_size.is_finite()
            and ask.is_finite()
            and ask_size.is_finite()
            and not (bid.is_signed() or bid_size.is_signed() or ask.is_signed())
            and not ask_size.is_signed()
            and (timestamp is None or not timestamp >> 63)
        ):
            error = invalid(
                "ticker",
                symbol,
                [
                    ("bid", bid, "not negative"),
                    ("bid_size", bid_size, "not negative"),
                    ("ask", ask, "not negative"),
                    ("ask_size", ask_size, "not negative"),
                    ("timestamp", timestamp, "time"),
                ],
            )
            if error is not None:
                raise error
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
        *,
        checksum: int | None = None,
    ) -> BookSnapshot:
        """A :class:`BookSnapshot`."""
        if not (
            _levels_valid(bids)
            and _levels_valid(asks)
            and (sequence is None or not sequence >> 64)
            and (timestamp is None or not timestamp >> 63)
        ):
            error = invalid(
                "book_snapshot",
                symbol,
                itertools.chain(
                    _level_checks(bids, "bids"),
                    _level_checks(asks, "asks"),
                    [("sequence", sequence, "sequence"), ("timestamp", timestamp, "time")],
                ),
            )
            if error is not None:
                raise error
        return BookSnapshot(
            connection=self.connection,
            exchange=self.exchange,
            received_at=received_at,
            symbol=symbol,
            bids=bids,
            asks=asks,
            sequence=sequence,
            timestamp=timestamp,
            checksum=checksum,
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
        *,
        checksum: int | None = None,
    ) -> BookDelta:
        """A :class:`BookDelta`."""
        if not (
            _levels_valid(bids)
            and _levels_valid(asks)
            and (sequence is None or not sequence >> 64)
            and (prev_sequence is None or not prev_sequence >> 64)
            and (timestamp is None or not timestamp >> 63)
        ):
            error = invalid(
                "book_delta",
                symbol,
                itertools.chain(
                    _level_checks(bids, "bids"),
                    _level_checks(asks, "asks"),
                    [
                        ("sequence", sequence, "sequence"),
                        ("prev_sequence", prev_sequence, "sequence"),
                        ("timestamp", timestamp, "time"),
                    ],
                ),
            )
            if error is not None:
                raise error
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
            checksum=checksum,
        )

    def raw(self, received_at: float, data: Any) -> RawMessage:
        """A :class:`RawMessage` holding a decoded JSON value (not checked: msgspec
        refuses numbers out of a float's range, so every number in it is finite)."""
        return RawMessage(
            connection=self.connection, exchange=self.exchange, received_at=received_at, data=data
        )
