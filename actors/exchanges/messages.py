"""Normalized messages delivered to consumers, and the adapters' control events.

Messages are tagged msgspec Structs: the tag field is ``kind`` and its value is what
``marketprism run --output jsonl`` prints: ``raw``, ``trade``, ``ticker``,
``book_snapshot``, ``book_delta``, ``book_invalid``, ``book_top``. Prices and sizes are
exact ``Decimal`` values (printed as strings in JSON), never floats, and always finite: a
frame carrying a NaN, an infinity, a price at or below 0 where a price must be positive, a
negative size or timestamp, or a sequence id outside ``[0, 2**64)`` is dropped as a
``MalformedFrame`` (kind ``invalid_value``) and none of its messages is delivered
(``sdk/stamp.py``). Every message carries the connection it came from, the exchange,
and ``received_at`` (Unix time in seconds, taken when the frame was read from the
socket).

Control events are what an adapter tells its actor besides data. They are tagged with
their class name and never reach consumers directly.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal, TypeAlias

import msgspec

__all__ = [
    "Batch",
    "BookDelta",
    "BookInvalid",
    "BookSnapshot",
    "BookTop",
    "Command",
    "Event",
    "HeartbeatMissed",
    "Level",
    "MalformedFrame",
    "Message",
    "ProbeAnswered",
    "RawMessage",
    "ReconnectRequested",
    "SequenceGap",
    "Subscribe",
    "Subscribed",
    "SubscriptionFailed",
    "SubscriptionSilent",
    "Ticker",
    "Trade",
    "Unsubscribe",
]


class RawMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="raw"):
    """One frame received by the ``raw`` adapter, decoded as JSON.

    Attributes:
        connection: the connection's configured name.
        exchange: always ``"raw"``.
        received_at: Unix time (seconds) when the frame was read.
        data: the frame's JSON value (object, array, string, number, ...).
    """

    connection: str
    exchange: str
    received_at: float
    data: Any


class _Market(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Fields every normalized market message carries.

    Attributes:
        connection: the connection's configured name.
        exchange: the adapter's exchange name (``binance``, ``okx``, ``deribit``, ...).
        received_at: Unix time (seconds) when the frame was read.
        symbol: the normalized symbol: ``BASE-QUOTE`` for spot, ``BASE-QUOTE-PERP`` for
            perpetual swaps (Deribit's BTC-PERPETUAL is ``BTC-USD-PERP``).
    """

    connection: str
    exchange: str
    received_at: float
    symbol: str


class Trade(_Market, frozen=True, kw_only=True, tag="trade"):
    """One trade.

    Attributes:
        side: the taker's side, ``buy`` or ``sell``.
        price: exact price, above 0.
        amount: exact size, above 0, in the exchange's unit (base currency for spot;
            contracts on OKX swaps; USD on Deribit inverse perpetuals).
        trade_id: the exchange's trade id, as a string.
        timestamp: the exchange's trade time, Unix milliseconds (``[0, 2**63)``).
    """

    side: Literal["buy", "sell"]
    price: Decimal
    amount: Decimal
    trade_id: str
    timestamp: int


class Ticker(_Market, frozen=True, kw_only=True, tag="ticker"):
    """Best bid and ask.

    Prices and sizes are 0 or more: Deribit reports an empty side of the book as a null
    or 0 best bid/ask, delivered as 0.

    Attributes:
        bid: best bid price.
        bid_size: size at the best bid.
        ask: best ask price.
        ask_size: size at the best ask.
        timestamp: exchange time in Unix milliseconds, ``None`` when the exchange sends
            none (Binance spot bookTicker).
    """

    bid: Decimal
    bid_size: Decimal
    ask: Decimal
    ask_size: Decimal
    timestamp: int | None


#: One price level: (price, size); the price is above 0, the size 0 or more. Size 0 in a
#: delta removes the level.
Level: TypeAlias = tuple[Decimal, Decimal]


class BookSnapshot(_Market, frozen=True, kw_only=True, tag="book_snapshot"):
    """A full order book (or its top N levels).

    Attributes:
        bids: levels, best (highest) first.
        asks: levels, best (lowest) first.
        sequence: the exchange's sequence/update id of this book, if it has one.
        timestamp: exchange time in Unix milliseconds, if sent.
        checksum: the venue's checksum of the book after this message (OKX: CRC32 of the
            top 25 levels; 0 or ``None`` when the venue sends none).
    """

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    sequence: int | None
    timestamp: int | None
    checksum: int | None = None


class BookDelta(_Market, frozen=True, kw_only=True, tag="book_delta"):
    """Changed levels of an order book; size 0 removes a level.

    Attributes:
        bids: changed bid levels.
        asks: changed ask levels.
        sequence: the exchange's id of this update (Binance ``u``, OKX ``seqId``,
            Deribit ``change_id``).
        prev_sequence: the id the previous update must have had (Binance ``U - 1``,
            Binance USD-M ``pu``, OKX ``prevSeqId``, Deribit ``prev_change_id``), or
            ``None``.
        timestamp: exchange time in Unix milliseconds, if sent.
        checksum: the venue's checksum of the book after this update (as on
            :class:`BookSnapshot`).
    """

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    sequence: int | None
    prev_sequence: int | None
    timestamp: int | None
    checksum: int | None = None


class BookInvalid(_Market, frozen=True, kw_only=True, tag="book_invalid"):
    """Our book of ``symbol`` can no longer be trusted; a resync has started.

    No :class:`BookDelta` of the symbol follows until the next :class:`BookSnapshot`,
    which starts its chain afresh. Other books of the connection are not affected.

    Attributes:
        reason: what was wrong (a broken sequence chain, a checksum mismatch, a crossed
            book, a snapshot that did not bridge the buffered updates).
        sequence: the last sequence our book applied, if any.
    """

    reason: str
    sequence: int | None


class BookTop(_Market, frozen=True, kw_only=True, tag="book_top"):
    """The best levels of our book of ``symbol`` (a connection with ``book_top``).

    Sent instead of the book's snapshots and deltas, at most once per ``book_interval``
    per symbol and only when the book changed; a top still waiting for the consumer is
    replaced by the newer one, never queued behind it. A :class:`BookInvalid` still
    says when the book cannot be trusted; no top follows until it is valid again.

    Attributes:
        bids: the best ``book_top`` bid levels, best (highest) first.
        asks: the best ``book_top`` ask levels, best (lowest) first.
        sequence: the sequence of the book's last update.
        timestamp: exchange time of the book's last update in Unix milliseconds, if sent.
    """

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    sequence: int | None
    timestamp: int | None


#: Every message type a consumer can receive.
Message: TypeAlias = RawMessage | Trade | Ticker | BookSnapshot | BookDelta | BookInvalid | BookTop
#: Everything decoded from one received frame, delivered together.
Batch: TypeAlias = "tuple[Message, ...]"


class Subscribed(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """The exchange confirmed these subscriptions (native topic names).

    Attributes:
        topics: the native topics now live.
    """

    topics: tuple[str, ...]


class SubscriptionFailed(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """The exchange refused a subscription; it stays failed until the next session.

    Attributes:
        topic: the native topic.
        code: the exchange's error code, as text (``"2"``, ``"60018"``, ``"13778"``).
        message: the exchange's error message.
    """

    topic: str
    code: str
    message: str


class SequenceGap(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A book update did not follow the previous one: at least one update was lost.

    Attributes:
        symbol: the normalized symbol.
        expected: the id the update should have continued from.
        received: the id it did continue from.
    """

    symbol: str
    expected: int
    received: int


class ReconnectRequested(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """The exchange announced it will close this connection (Binance ``serverShutdown``,
    OKX notice 64008): reconnect now rather than lose data later.

    Attributes:
        reason: the notice, for the log.
    """

    reason: str


class HeartbeatMissed(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A heartbeat the exchange protocol requires went unanswered: the session is dead.

    Attributes:
        detail: what was missed (``no pong within 20 s of our ping``).
    """

    detail: str


class SubscriptionSilent(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A confirmed subscription delivered no data for ``silent_for`` seconds.

    The adapter marks it ``silent`` and requests it again; data on it makes it ``live``
    again (reported as ``Subscribed``).

    Attributes:
        topic: the native topic.
        silent_for: seconds since its last data message (or its confirmation).
    """

    topic: str
    silent_for: float


class ProbeAnswered(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """The exchange answered a liveness probe or heartbeat ping of ours.

    Attributes:
        rtt: seconds from writing the probe to reading its answer.
    """

    rtt: float


class MalformedFrame(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A received frame could not be understood; it was dropped, the session goes on.

    Attributes:
        kind: a short stable label for this sort of problem (``invalid_json``, ...),
            used to log each kind once per connection.
        detail: what was wrong, for the log.
        sample: the start of the offending frame (at most 200 characters).
    """

    kind: str
    detail: str
    sample: str


#: Control events an adapter may emit.
Event: TypeAlias = (
    Subscribed
    | SubscriptionFailed
    | SequenceGap
    | ReconnectRequested
    | HeartbeatMissed
    | MalformedFrame
    | SubscriptionSilent
    | ProbeAnswered
)


class Subscribe(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Command: subscribe more at run time (added to the connection's channels, symbols
    and raw topics; the channels x symbols product grows accordingly).

    Attributes:
        channels: normalized channels to add.
        symbols: symbols to add (normalized or native).
        raw: native topics to add.
    """

    channels: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    raw: tuple[str, ...] = ()


class Unsubscribe(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Command: stop subscriptions at run time (channels and symbols are removed from the
    connection's lists, so every topic made of them goes; raw topics are removed as named).

    Attributes:
        channels: normalized channels to drop.
        symbols: symbols to drop (as config wrote them).
        raw: native topics to drop.
    """

    channels: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    raw: tuple[str, ...] = ()


#: Commands an adapter accepts through ``send``.
Command: TypeAlias = Subscribe | Unsubscribe
