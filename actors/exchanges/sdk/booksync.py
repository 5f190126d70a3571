"""Keeping one local book in sync with its venue: snapshot, deltas, doubt, resync.

Rules of this file: pure bookkeeping, no I/O, no clock. The owner (the adapter) feeds
every book message of one symbol to its :class:`BookSync`, delivers what comes back, and
acts on :attr:`BookSync.wants_snapshot`: fetch a REST snapshot (venues whose stream
carries none) or subscribe the channel again (venues that send one on subscribe).

Theory of operation
-------------------
Adapters decode a venue's book stream into :class:`BookSnapshot` and :class:`BookDelta`
with ``sequence``/``prev_sequence`` in one shape (Binance spot ``u``/``U - 1``, USD-M
``u``/``pu``, OKX ``seqId``/``prevSeqId``, Deribit ``change_id``/``prev_change_id``,
Bybit ``u``/``u - 1``). What differs per venue is a :class:`SyncRule`:

- where the first snapshot comes from (:attr:`SyncRule.rest_snapshot`);
- which deltas a snapshot already contains (:meth:`SyncRule.stale`), and which one may
  be the first applied on top of it (:meth:`SyncRule.bridges`);
- whether a delta continues the book (:meth:`SyncRule.follows`): apply, drop as a
  duplicate, or a gap;
- whether the venue's checksum matches (:meth:`SyncRule.verify`).

A book is in one of three states (:class:`BookState`):

- ``syncing``: no trusted snapshot yet. Deltas are buffered (bounded, oldest dropped) for
  a REST snapshot to bridge; for venues that send their own snapshot they are dropped.
- ``valid``: every applied update passed the rule, the checksum (when the venue sends a
  non-zero one) and the crossed-book check. Each applied delta is delivered with
  ``prev_sequence`` set to the sequence the book had before it, so the delivered
  messages form one unbroken chain from the last delivered snapshot: a consumer that
  applies them holds exactly this book.
- ``invalid`` (venues with their own snapshot): a doubt was found; nothing of this book
  is delivered until the snapshot of the new subscription arrives.

Any doubt (a gap, a checksum mismatch, a crossed book, a snapshot that does not bridge
the buffered deltas) delivers one :class:`BookInvalid`, counts a resync with its reason,
and sets :attr:`BookSync.wants_snapshot`. A crossed book is never repaired by deleting
levels: the venue's next snapshot decides.

A resync delivers one :class:`BookSnapshot` of the book as synced (after the buffered
deltas the REST snapshot bridged), so every sync starts a consumer's chain afresh.
"""

from __future__ import annotations

import collections
import enum
from typing import ClassVar, Final, Literal

import msgspec

from actors.exchanges.messages import BookDelta, BookInvalid, BookSnapshot, Message
from actors.exchanges.sdk.orderbook import OrderBook, okx_checksum

__all__ = [
    "BINANCE_SPOT",
    "BINANCE_USDM",
    "BYBIT",
    "DEFAULT_BUFFER",
    "DERIBIT",
    "OKX",
    "OKX_REST",
    "BookState",
    "BookSync",
    "Follow",
    "SyncRule",
]

#: Deltas held while a REST snapshot is on its way: at 10 updates a second, more than
#: three minutes of a held REST host. Older ones are dropped first (a snapshot fetched
#: later is newer than them anyway; if it is not, it fails to bridge and is fetched again).
DEFAULT_BUFFER: Final = 2048


class BookState(enum.Enum):
    """Where a book stands (see the module docstring)."""

    SYNCING = "syncing"
    VALID = "valid"
    INVALID = "invalid"


class Follow(enum.Enum):
    """What a delta is to a valid book."""

    APPLY = "apply"
    #: Already in the book (a duplicate, or older than the snapshot): ignore it.
    DROP = "drop"
    GAP = "gap"


class SyncRule:
    """One venue's sync rules; the base class is the exact chain (``prev == local``).

    Attributes:
        name: the rule's name, for reasons and docs.
        rest_snapshot: the stream carries no snapshot; the first comes from REST.
    """

    name: ClassVar[str] = "exact chain"
    rest_snapshot: ClassVar[bool] = False
    #: The rule to switch to when a delta arrives on a new subscription before any
    #: snapshot (OKX's announced REST mode); ``None``: such deltas are dropped.
    fallback: ClassVar[SyncRule | None] = None
    #: Sequences only grow (so a delta at or below the book's sequence is a duplicate).
    monotonic: ClassVar[bool] = True

    def stale(self, delta: BookDelta, snapshot: int) -> bool:
        """Is everything ``delta`` changes already in a snapshot at ``snapshot``?"""
        return delta.sequence is not None and delta.sequence <= snapshot

    def bridges(self, delta: BookDelta, snapshot: int) -> bool:
        """May ``delta`` (not stale) be the first applied on a snapshot at ``snapshot``?"""
        return delta.prev_sequence == snapshot

    def follows(self, delta: BookDelta, local: int | None) -> Follow:
        """Does ``delta`` continue a valid book at sequence ``local``?"""
        seq, prev = delta.sequence, delta.prev_sequence
        if seq is None or prev is None or local is None:
            # No chain to check (OKX frames before 2023): the checksum is the guard.
            return Follow.APPLY
        if prev == local:
            return Follow.APPLY
        if self.monotonic and seq <= local:
            return Follow.DROP
        return Follow.GAP

    def verify(self, book: OrderBook, checksum: int | None) -> bool:
        """Does the venue's checksum (if it sent one) match ``book``?"""
        return True


class _BinanceSpot(SyncRule):
    """Binance spot diff depth (reference/exchanges.md §2, corrected 2025-11-12).

    Drop events with ``u <= lastUpdateId``; the first applied has ``U <= lastUpdateId +
    1``; after it, a gap is ``U > local + 1``, and an event with ``U <= local < u``
    overlaps and applies (sizes are absolute).
    """

    name = "binance spot"
    rest_snapshot = True

    def bridges(self, delta: BookDelta, snapshot: int) -> bool:
        prev = delta.prev_sequence
        return prev is not None and prev <= snapshot

    def follows(self, delta: BookDelta, local: int | None) -> Follow:
        seq, prev = delta.sequence, delta.prev_sequence
        if seq is None or prev is None or local is None:
            return Follow.GAP  # Binance always sends both: a delta without is no chain
        if seq <= local:
            return Follow.DROP
        return Follow.GAP if prev > local else Follow.APPLY


class _BinanceUsdm(SyncRule):
    """Binance USD-M diff depth: drop ``u < lastUpdateId``; the first applied has ``U <=
    lastUpdateId <= u``; then each ``pu`` equals the previous ``u``.

    Deltas carry ``pu`` as ``prev_sequence``, not ``U``. Ids between ``pu`` and ``U``
    changed nothing of this symbol (ids are shared by every symbol), so ``pu <
    lastUpdateId <= u`` is the documented condition; ``pu == lastUpdateId`` continues the
    snapshot exactly and is accepted too.
    """

    name = "binance usd-m"
    rest_snapshot = True

    def stale(self, delta: BookDelta, snapshot: int) -> bool:
        return delta.sequence is not None and delta.sequence < snapshot

    def bridges(self, delta: BookDelta, snapshot: int) -> bool:
        seq, prev = delta.sequence, delta.prev_sequence
        return seq is not None and prev is not None and prev <= snapshot <= seq


class _Okx(SyncRule):
    """OKX ``books``: the subscription's snapshot (``prevSeqId = -1``), then
    ``prevSeqId == previous seqId``. Sequences may restart lower after maintenance, so a
    delta is never dropped as old: anything but the exact chain is a gap. A non-zero
    ``checksum`` (0 on every frame since 2026-06-23) must match the top 25 levels.
    """

    name = "okx"
    monotonic = False

    def verify(self, book: OrderBook, checksum: int | None) -> bool:
        return not checksum or okx_checksum(book) == checksum


class _OkxRest(_Okx):
    """OKX without the initial WebSocket snapshot (announced for 2026): a REST snapshot
    (``GET /api/v5/market/books?source=0``) with its ``seqId``; drop buffered events with
    ``seqId <= snapshot``; the first applied has ``prevSeqId <= snapshot < seqId``."""

    name = "okx rest"
    rest_snapshot = True

    def bridges(self, delta: BookDelta, snapshot: int) -> bool:
        prev = delta.prev_sequence
        return prev is not None and prev <= snapshot


#: The rules per venue.
BINANCE_SPOT: Final[SyncRule] = _BinanceSpot()
BINANCE_USDM: Final[SyncRule] = _BinanceUsdm()
OKX_REST: Final[SyncRule] = _OkxRest()
_Okx.fallback = OKX_REST
OKX: Final[SyncRule] = _Okx()
#: Deribit ``book.{instrument}.100ms``: the first notification is the snapshot, then
#: ``prev_change_id == previous change_id``.
DERIBIT: Final[SyncRule] = SyncRule()
#: Bybit ``orderbook.N``: a snapshot (also whenever ``u`` restarts at 1), then deltas
#: whose ``u`` rises by one.
BYBIT: Final[SyncRule] = SyncRule()


class BookSync:
    """One symbol's local book and its sync state (see the module docstring).

    Args:
        rule: the venue's :class:`SyncRule`.
        buffer: deltas held while waiting for a REST snapshot.

    Attributes:
        book: the levels.
        state: the :class:`BookState`.
        sequence: the sequence of the last update applied, ``None`` before.
        timestamp: the venue's time of the last update applied (Unix ms), if sent.
        received_at: our Unix time when the last update applied arrived (0 before).
        resyncs: doubts found so far (each started a resync).
        reason: why the last resync started, empty before the first.
        wants_snapshot: the owner should get a snapshot now (REST, or subscribe again);
            the owner clears it when it asks (:meth:`snapshot_requested`).
    """

    __slots__ = (
        "_bridged",
        "_buffer",
        "_refreshing",
        "book",
        "reason",
        "received_at",
        "resyncs",
        "rule",
        "sequence",
        "state",
        "timestamp",
        "wants_snapshot",
    )

    def __init__(self, rule: SyncRule, *, buffer: int = DEFAULT_BUFFER) -> None:
        self.rule = rule
        self.book = OrderBook()
        self.state = BookState.SYNCING
        self.sequence: int | None = None
        self.timestamp: int | None = None
        self.received_at = 0.0
        self.resyncs = 0
        self.reason = ""
        self.wants_snapshot = rule.rest_snapshot
        self._buffer: collections.deque[BookDelta] = collections.deque(maxlen=buffer)
        # After a REST snapshot, until the first delta bridged it.
        self._bridged = True
        # A valid book waiting for a fresh REST snapshot (refresh): deltas apply and
        # are kept for it to bridge.
        self._refreshing = False

    @property
    def ready(self) -> bool:
        """Does the book want a snapshot that can be used now? A REST snapshot is worth
        fetching only once a delta is buffered for it to bridge (fetched earlier, it
        would likely be older than the stream's first delta and be fetched again)."""
        return self.wants_snapshot and (not self.rule.rest_snapshot or bool(self._buffer))

    def refresh(self) -> bool:
        """Ask for a fresh REST snapshot while the book stays valid (levels that left
        the snapshot's depth and came back unchanged are cleared by it).

        Returns:
            True if a refresh started (a valid book of a REST-snapshot venue, not
            already refreshing).
        """
        if self.state is not BookState.VALID or not self.rule.rest_snapshot or self._refreshing:
            return False
        self._refreshing = True
        self.wants_snapshot = True
        self._buffer.clear()
        return True

    def lost(
        self, reason: str, received_at: float, connection: str, exchange: str, symbol: str
    ) -> BookInvalid | None:
        """The stream stopped (the session ended): the book is no longer kept up to date.

        Returns:
            The :class:`BookInvalid` to deliver, or ``None`` when the book was not valid
            (its consumers were told already, or it never synced).
        """
        was_valid = self.state is BookState.VALID
        last = self.sequence
        self._reset(BookState.SYNCING)
        self.wants_snapshot = self.rule.rest_snapshot
        if not was_valid:
            return None
        return BookInvalid(
            connection=connection,
            exchange=exchange,
            received_at=received_at,
            symbol=symbol,
            reason=reason,
            sequence=last,
        )

    def _reset(self, state: BookState) -> None:
        self.state = state
        self.book.clear()
        self._buffer.clear()
        self._bridged = True
        self._refreshing = False

    def snapshot_requested(self) -> None:
        """The owner asked for a snapshot: do not ask again until a new doubt."""
        self.wants_snapshot = False

    def on_snapshot(self, snapshot: BookSnapshot) -> list[Message]:
        """A snapshot arrived (the stream's, or a REST one made into a BookSnapshot).

        Returns:
            What to deliver: the synced book as one :class:`BookSnapshot`, or nothing
            while a REST snapshot is too old for the buffered deltas (another is
            wanted), or a :class:`BookInvalid` when the snapshot itself is crossed or
            fails its checksum.
        """
        out = self._snapshot(snapshot)
        if self.state is BookState.VALID and not self._refreshing:
            self.wants_snapshot = False
        return out

    @property
    def refreshing(self) -> bool:
        """Is a valid book waiting for a refresh's snapshot (:meth:`refresh`)?"""
        return self._refreshing

    def _snapshot(self, snapshot: BookSnapshot) -> list[Message]:
        rule = self.rule
        if self._refreshing and self.state is BookState.VALID:
            return self._refreshed(snapshot)
        self._refreshing = False
        book = self.book
        book.load(snapshot.bids, snapshot.asks)
        self.sequence = snapshot.sequence
        self.timestamp = snapshot.timestamp
        self.received_at = snapshot.received_at
        if not rule.verify(book, snapshot.checksum):
            return self._doubt(snapshot, f"checksum mismatch on the snapshot at {self.sequence}")
        if not rule.rest_snapshot:
            self.state = BookState.VALID
            self._bridged = True
            if book.crossed():
                return self._doubt(snapshot, "crossed snapshot")
            return [self._as_synced(snapshot)]
        return self._bridge(snapshot)

    def _refreshed(self, snapshot: BookSnapshot) -> list[Message]:
        """A refresh's snapshot: the deltas applied since the refresh started, on top
        of it, become the book; a snapshot too old for them is fetched again while the
        current book goes on."""
        kept = (self.book, self.sequence, self.timestamp, self.received_at)
        buffered = list(self._buffer)
        self.book = OrderBook()
        self.book.load(snapshot.bids, snapshot.asks)
        self.sequence = snapshot.sequence
        self.timestamp = snapshot.timestamp
        self.received_at = snapshot.received_at
        self._refreshing = False
        out = self._bridge(snapshot)
        if self.state is BookState.SYNCING and not out:
            # Too old to bridge: keep the book we had, and keep refreshing.
            self.book, self.sequence, self.timestamp, self.received_at = kept
            self.state = BookState.VALID
            self._bridged = True
            self._refreshing = True
            self._buffer.clear()
            self._buffer.extend(buffered)
        return out

    def _bridge(self, snapshot: BookSnapshot) -> list[Message]:
        rule = self.rule
        at = snapshot.sequence
        if at is None:
            return self._doubt(snapshot, "REST snapshot without a sequence")
        buffer = self._buffer
        while buffer and rule.stale(buffer[0], at):
            buffer.popleft()
        self.state = BookState.VALID
        self._bridged = False
        applied: list[BookDelta] = []
        if buffer:
            first = buffer[0]
            if not rule.bridges(first, at):
                # Older than the buffered deltas: the snapshot misses some; fetch again
                # (the deltas stay buffered).
                self.state = BookState.SYNCING
                self.wants_snapshot = True
                self.book.clear()
                self.sequence = self.timestamp = None
                return []
            while buffer:
                delta = buffer.popleft()
                verdict = self._fold(delta)
                if isinstance(verdict, str):
                    # The failing delta and the ones after it wait for the next snapshot.
                    return self._doubt(delta, verdict, keep=[delta, *buffer])
                if verdict is None:
                    applied.append(delta)
        if self.book.crossed():
            # The next snapshot decides: one older than these deltas crosses again, a
            # newer one drops them.
            return self._doubt(
                snapshot, f"crossed book after syncing at {self.sequence}", keep=applied
            )
        return [self._as_synced(snapshot)]

    def on_delta(self, delta: BookDelta) -> list[Message]:
        """A delta arrived.

        Returns:
            What to deliver: the delta chained to our book's sequence, nothing (buffered,
            dropped while invalid, or a duplicate), or a :class:`BookInvalid`.
        """
        state = self.state
        if state is BookState.SYNCING:
            rule = self.rule
            if not rule.rest_snapshot and rule.fallback is not None:
                # A new subscription's first book message is a delta: the venue sends
                # no snapshot (OKX's announced mode); sync from REST from now on.
                self.rule = rule = rule.fallback
                self.wants_snapshot = True
            if rule.rest_snapshot:
                self._buffer.append(delta)
            return []
        if state is BookState.INVALID:
            return []
        prev = self.sequence
        verdict = self._fold(delta)
        if verdict is Follow.DROP:
            return []
        if verdict is not None:
            return self._doubt(delta, verdict, keep=[delta])
        if self.book.crossed():
            return self._doubt(delta, f"crossed book after {delta.sequence}", keep=[delta])
        if self._refreshing:
            self._buffer.append(delta)
        if delta.prev_sequence == prev:
            return [delta]
        return [msgspec.structs.replace(delta, prev_sequence=prev)]

    def _fold(self, delta: BookDelta) -> Literal[Follow.DROP] | str | None:
        """Apply ``delta`` to a valid book if the rule says so.

        Returns ``None`` when applied and verified, :attr:`Follow.DROP` when ignored, else
        why it failed (a gap: not applied; a checksum mismatch: applied).
        """
        rule = self.rule
        local = self.sequence
        if not self._bridged:
            assert local is not None  # set by the REST snapshot
            if rule.stale(delta, local):
                return Follow.DROP
            if not rule.bridges(delta, local):
                return (
                    f"snapshot at {local} does not bridge to update "
                    f"{delta.prev_sequence}->{delta.sequence}"
                )
        else:
            verdict = rule.follows(delta, local)
            if verdict is Follow.DROP:
                return verdict
            if verdict is Follow.GAP:
                return (
                    f"sequence gap: update {delta.prev_sequence}->{delta.sequence} "
                    f"does not continue {local}"
                )
        self.book.apply(delta.bids, delta.asks)
        self._bridged = True
        self.sequence = delta.sequence
        self.timestamp = delta.timestamp
        self.received_at = delta.received_at
        if not rule.verify(self.book, delta.checksum):
            return f"checksum mismatch after {delta.sequence}"
        return None

    def _doubt(
        self, cause: BookSnapshot | BookDelta, reason: str, *, keep: list[BookDelta] | None = None
    ) -> list[Message]:
        """Mark the book invalid and start a resync.

        ``keep``: deltas not applied yet that the next REST snapshot may still bridge
        (the one that revealed the doubt first): they are newer than anything applied.
        """
        self.resyncs += 1
        self.reason = reason
        self.wants_snapshot = True
        last = self.sequence
        if self.rule.rest_snapshot:
            self._reset(BookState.SYNCING)
            self._buffer.extend(keep or ())
        else:
            self._reset(BookState.INVALID)
        return [
            BookInvalid(
                connection=cause.connection,
                exchange=cause.exchange,
                received_at=cause.received_at,
                symbol=cause.symbol,
                reason=reason,
                sequence=last,
            )
        ]

    def _as_synced(self, snapshot: BookSnapshot) -> BookSnapshot:
        bids, asks = self.book.top()
        return BookSnapshot(
            connection=snapshot.connection,
            exchange=snapshot.exchange,
            received_at=snapshot.received_at,
            symbol=snapshot.symbol,
            bids=bids,
            asks=asks,
            sequence=self.sequence,
            timestamp=self.timestamp,
            checksum=snapshot.checksum if self.sequence == snapshot.sequence else None,
        )
