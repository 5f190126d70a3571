"""One connection's local order books: what its consumers get, and what to ask the venue.

Rules of this file: pure bookkeeping, no I/O, no trio, no clock (times come with the
messages, or from the caller).

Theory of operation
-------------------
The connection actor owns one :class:`BookKeeper` for the whole life of the connection
(across sessions and make-before-break handovers), holding one
:class:`~actors.exchanges.sdk.booksync.BookSync` per symbol of the ``book`` channel. It
sits at the innermost point of delivery: every batch the connection delivers passes
:meth:`BookKeeper.process` right before the consumer queue, after a handover's ledger
has dropped what the old session already delivered, so each book sees one stream
whatever the sessions did. Book messages of those symbols are replaced by what their
``BookSync`` says (a synced :class:`BookSnapshot`, deltas chained to our book, a
:class:`BookInvalid`, or nothing while syncing); every other message passes untouched,
and a batch without book messages is returned as it came.

A book that wants a snapshot is listed by :meth:`BookKeeper.wanted`: the actor fetches
a REST snapshot (Binance, OKX without its stream snapshot) and hands it to
:meth:`BookKeeper.take_snapshot`, or subscribes the book's stream again (OKX, Deribit,
Bybit send a snapshot on subscribe). When a session ends, :meth:`BookKeeper.lost` marks
every book out of date (a :class:`BookInvalid` for each valid one): the next session's
stream syncs them again.

Refresh: a valid book of a REST-snapshot venue asks for a fresh snapshot every
``refresh`` seconds (by the messages' receive times), while it stays valid and
delivered; the refreshed book is delivered as a new :class:`BookSnapshot`.

The guarantee consumers get (docs/books.md): per symbol, a :class:`BookSnapshot`
starts a chain; each following :class:`BookDelta` has ``prev_sequence`` equal to the
``sequence`` before it; a :class:`BookInvalid` ends the chain until the next snapshot.
A consumer that applies them holds exactly the book :meth:`BookKeeper.view` shows at
that sequence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Final

import msgspec

from actors.exchanges.messages import (
    Batch,
    BookDelta,
    BookInvalid,
    BookSnapshot,
    BookTop,
    Level,
    Message,
)
from actors.exchanges.sdk.booksync import DEFAULT_BUFFER, BookState, BookSync, SyncRule

__all__ = ["BookKeeper", "BookStats", "BookView"]

_VALID: Final = BookState.VALID


class BookStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one local book.

    Attributes:
        state: ``syncing`` (waiting for a snapshot), ``valid`` or ``invalid`` (a doubt
            was found; waiting for the venue's snapshot).
        bids: price levels on the bid side now.
        asks: price levels on the ask side now.
        sequence: the venue's sequence of the last update applied, ``None`` before.
        age: seconds since the last update applied arrived (our clock), ``None`` before.
        resyncs: doubts found so far (each started a resync).
        reason: why the last resync started, empty before the first.
        snapshots: snapshots taken so far (the stream's or REST), refreshes included.
    """

    state: str
    bids: int
    asks: int
    sequence: int | None
    age: float | None
    resyncs: int
    reason: str
    snapshots: int


class BookView:
    """A read-only view of one local book, as the connection holds it now.

    The view reads the live book: each call answers for the moment it is made (the book
    may be ahead of the messages a consumer is still processing; compare ``sequence``).
    Reading the best levels costs a list index; :meth:`bids` and :meth:`asks` build a
    list of the levels asked for.
    """

    __slots__ = ("_sync", "connection", "symbol")

    def __init__(self, connection: str, symbol: str, sync: BookSync) -> None:
        self.connection = connection
        self.symbol = symbol
        self._sync = sync

    @property
    def valid(self) -> bool:
        """Is the book in sync with the venue (every check passed since its snapshot)?"""
        return self._sync.state is _VALID

    @property
    def state(self) -> str:
        """``syncing``, ``valid`` or ``invalid``."""
        return self._sync.state.value

    @property
    def sequence(self) -> int | None:
        """The venue's sequence of the last update applied, ``None`` when not valid."""
        sync = self._sync
        return sync.sequence if sync.state is _VALID else None

    @property
    def timestamp(self) -> int | None:
        """The venue's time of the last update applied (Unix ms), if it sent one."""
        sync = self._sync
        return sync.timestamp if sync.state is _VALID else None

    @property
    def received_at(self) -> float | None:
        """Our Unix time when the last update applied arrived, ``None`` when not valid."""
        sync = self._sync
        return sync.received_at if sync.state is _VALID else None

    def age(self, now: float) -> float | None:
        """Seconds from the last update applied to ``now`` (a Unix time)."""
        received = self.received_at
        return None if received is None else now - received

    def best_bid(self) -> Level | None:
        """The highest bid, ``None`` when there is none or the book is not valid."""
        return self._sync.book.best_bid() if self.valid else None

    def best_ask(self) -> Level | None:
        """The lowest ask, ``None`` when there is none or the book is not valid."""
        return self._sync.book.best_ask() if self.valid else None

    def bids(self, depth: int | None = None) -> list[Level]:
        """The bids best first (``depth`` of them, or all); empty when not valid."""
        return list(self._sync.book.iter_bids(depth)) if self.valid else []

    def asks(self, depth: int | None = None) -> list[Level]:
        """The asks best first (``depth`` of them, or all); empty when not valid."""
        return list(self._sync.book.iter_asks(depth)) if self.valid else []

    def mid(self) -> Decimal | None:
        """The midpoint of the best bid and ask, ``None`` without both."""
        bid, ask = self.best_bid(), self.best_ask()
        if bid is None or ask is None:
            return None
        return (bid[0] + ask[0]) / 2

    def __repr__(self) -> str:
        sync = self._sync
        return (
            f"<BookView {self.connection}/{self.symbol} {sync.state.value} "
            f"seq={sync.sequence} {len(sync.book.bids)}x{len(sync.book.asks)}>"
        )


class BookKeeper:
    """The local books of one connection (see the module docstring).

    Args:
        connection: the connection's name (for the messages it makes).
        exchange: the connection's adapter.
        rule: the venue's sync rule for its ``book`` channel.
        symbols: the symbols to keep a book for.
        refresh: seconds between refreshing snapshots of a valid book, for rules with
            REST snapshots (0: never).
        buffer: deltas held per book while a REST snapshot is on its way.
        top: deliver a :class:`BookTop` of this many levels per side instead of
            snapshots and deltas (``None``: snapshots and deltas).
        interval: with ``top``, the least time between two tops of one symbol.
    """

    __slots__ = (
        "_buffer",
        "_doubted",
        "_next_top",
        "_snapshots",
        "_synced_at",
        "changed",
        "connection",
        "exchange",
        "interval",
        "notes",
        "refresh",
        "rule",
        "syncs",
        "top",
    )

    def __init__(
        self,
        connection: str,
        exchange: str,
        rule: SyncRule,
        symbols: Iterable[str],
        *,
        refresh: float = 0.0,
        buffer: int = DEFAULT_BUFFER,
        top: int | None = None,
        interval: float = 0.0,
    ) -> None:
        self.connection = connection
        self.exchange = exchange
        self.rule = rule
        self.refresh = refresh
        self._buffer = buffer
        #: symbol -> its book.
        self.syncs: dict[str, BookSync] = {}
        #: symbol -> the receive time of the update its last snapshot synced at.
        self._synced_at: dict[str, float] = {}
        self._snapshots: dict[str, int] = {}
        self.top = top
        self.interval = interval
        #: What happened to books since the owner last took these, to log: ``(symbol,
        #: text, doubt)``: a doubt (text: the reason) or a resync done (doubt False).
        self.notes: list[tuple[str, str, bool]] = []
        # Symbols with a doubt whose resync has not completed.
        self._doubted: set[str] = set()
        #: With ``top``: the symbols whose valid book changed since their last top.
        self.changed: set[str] = set()
        #: With ``top``: symbol -> the earliest time (the caller's clock) of its next top.
        self._next_top: dict[str, float] = {}
        self.track(symbols)

    def track(self, symbols: Iterable[str]) -> list[str]:
        """Keep books for exactly ``symbols`` from now on.

        Returns:
            The symbols whose books were dropped.
        """
        wanted = dict.fromkeys(symbols)
        dropped = [symbol for symbol in self.syncs if symbol not in wanted]
        for symbol in dropped:
            del self.syncs[symbol]
            self._synced_at.pop(symbol, None)
            self._snapshots.pop(symbol, None)
            self._next_top.pop(symbol, None)
            self.changed.discard(symbol)
        for symbol in wanted:
            if symbol not in self.syncs:
                self.syncs[symbol] = BookSync(self.rule, buffer=self._buffer)
                self._snapshots[symbol] = 0
        return dropped

    def follow(self, symbols: Iterable[str], received_at: float) -> list[Message]:
        """The ``book`` channel's symbols changed at run time: keep books for exactly
        ``symbols`` (new ones start syncing) and drop the others.

        Returns:
            A :class:`BookInvalid` (reason ``unsubscribed``) for each dropped book that
            was valid: its chain ends there, and no message of it follows.
        """
        wanted = dict.fromkeys(symbols)
        out: list[Message] = []
        for symbol, sync in self.syncs.items():
            if symbol not in wanted:
                invalid = sync.lost(
                    "unsubscribed", received_at, self.connection, self.exchange, symbol
                )
                if invalid is not None:
                    out.append(invalid)
                self._doubted.discard(symbol)
        self.track(wanted)
        return out

    # -- the stream ----------------------------------------------------------------

    def process(self, batch: Batch) -> Batch:
        """What to deliver for ``batch``: its book messages replaced by their books'
        answers, everything else as it came (the same object when it has no book
        message of a kept symbol)."""
        syncs = self.syncs
        out: list[Message] | None = None
        for index, message in enumerate(batch):
            kind = type(message)
            if kind is BookDelta:
                assert isinstance(message, BookDelta)
                sync = syncs.get(message.symbol)
                if sync is not None:
                    if out is None:
                        out = list(batch[:index])
                    resyncs = sync.resyncs
                    answer = sync.on_delta(message)
                    if sync.resyncs != resyncs:
                        self._noted_doubt(message.symbol, sync.reason)
                    if self.refresh and sync.state is _VALID and sync.rule.rest_snapshot:
                        self._maybe_refresh(message.symbol, sync, message.received_at)
                    out += answer if self.top is None else self._topped(message.symbol, answer)
                    continue
            elif kind is BookSnapshot:
                assert isinstance(message, BookSnapshot)
                sync = syncs.get(message.symbol)
                if sync is not None:
                    if out is None:
                        out = list(batch[:index])
                    answer = self._snapshot(message.symbol, sync, message)
                    out += answer if self.top is None else self._topped(message.symbol, answer)
                    continue
            if out is not None:
                out.append(message)
        return batch if out is None else tuple(out)

    def _topped(self, symbol: str, answer: list[Message]) -> list[Message]:
        """With ``top``: the book's answer without its snapshots and deltas (a top
        follows instead); a :class:`BookInvalid` still goes out at once."""
        kept: list[Message] = []
        for message in answer:
            if type(message) is BookInvalid:
                kept.append(message)
                self.changed.discard(symbol)
            else:
                self.changed.add(symbol)
        return kept

    def tops(self, now: float) -> tuple[list[BookTop], float]:
        """With ``top``: the tops due at ``now`` (the caller's clock) for books that
        changed, at most one per symbol per ``interval``.

        Returns:
            ``(tops, next)``: the tops to deliver (their symbols count as sent at
            ``now``), and when the next changed book's top is due (``inf``: none
            waiting).
        """
        depth = self.top
        out: list[BookTop] = []
        later = math.inf
        for symbol in list(self.changed):
            due = self._next_top.get(symbol, -math.inf)
            if due > now:
                later = min(later, due)
                continue
            self.changed.discard(symbol)
            sync = self.syncs[symbol]
            if sync.state is not _VALID:
                continue
            bids, asks = sync.book.top(depth)
            out.append(
                BookTop(
                    connection=self.connection,
                    exchange=self.exchange,
                    received_at=sync.received_at,
                    symbol=symbol,
                    bids=bids,
                    asks=asks,
                    sequence=sync.sequence,
                    timestamp=sync.timestamp,
                )
            )
            self._next_top[symbol] = now + self.interval
        return out, later

    def _maybe_refresh(self, symbol: str, sync: BookSync, received_at: float) -> None:
        synced = self._synced_at.get(symbol)
        if synced is None:
            self._synced_at[symbol] = received_at
        elif received_at - synced >= self.refresh and sync.refresh():
            self._synced_at[symbol] = received_at  # once per period, answered or not

    def _snapshot(self, symbol: str, sync: BookSync, snapshot: BookSnapshot) -> list[Message]:
        resyncs = sync.resyncs
        out = sync.on_snapshot(snapshot)
        if sync.resyncs != resyncs:
            self._noted_doubt(symbol, sync.reason)
        elif any(type(m) is BookSnapshot for m in out):
            self._snapshots[symbol] += 1
            self._synced_at[symbol] = snapshot.received_at
            if symbol in self._doubted:
                self._doubted.discard(symbol)
                self.notes.append((symbol, f"resynced at {sync.sequence}", False))
        return out

    def _noted_doubt(self, symbol: str, reason: str) -> None:
        self._doubted.add(symbol)
        self.notes.append((symbol, reason, True))

    def lost(self, reason: str, received_at: float) -> list[Message]:
        """The session ended: every book is out of date until the next one syncs it.

        Returns:
            A :class:`BookInvalid` for each book that was valid.
        """
        out: list[Message] = []
        for symbol, sync in self.syncs.items():
            invalid = sync.lost(reason, received_at, self.connection, self.exchange, symbol)
            if invalid is not None:
                out.append(invalid)
        return out

    # -- snapshots the owner fetches -------------------------------------------------

    def wanted(self) -> list[tuple[str, bool]]:
        """The books that want a snapshot now, each as ``(symbol, by_rest)``: fetch a
        REST snapshot (then :meth:`take_snapshot` or :meth:`snapshot_failed`), or
        subscribe the book's stream again. They count as asked for from now on."""
        out = []
        for symbol, sync in self.syncs.items():
            if sync.ready:
                sync.snapshot_requested()
                out.append((symbol, sync.rule.rest_snapshot))
        return out

    @property
    def pending(self) -> bool:
        """Does any book want a snapshot now (see :meth:`wanted`)?"""
        return any(sync.ready for sync in self.syncs.values())

    def take_snapshot(self, snapshot: BookSnapshot) -> list[Message]:
        """A REST snapshot asked for by :meth:`wanted` arrived.

        Returns:
            What to deliver (see :meth:`BookSync.on_snapshot`); nothing when the book no
            longer waits for one (it was dropped, or synced otherwise meanwhile).
        """
        sync = self.syncs.get(snapshot.symbol)
        if sync is None or not sync.rule.rest_snapshot:
            return []
        if sync.state is _VALID and not sync.refreshing:
            return []
        return self._snapshot(snapshot.symbol, sync, snapshot)

    def snapshot_failed(self, symbol: str) -> None:
        """The snapshot asked for could not be had: ask again (the owner paces it)."""
        sync = self.syncs.get(symbol)
        if sync is not None and (sync.state is not _VALID or sync.refreshing):
            sync.wants_snapshot = True

    # -- reading -----------------------------------------------------------------------

    def view(self, symbol: str) -> BookView | None:
        """A live read-only view of ``symbol``'s book, ``None`` when none is kept."""
        sync = self.syncs.get(symbol)
        return None if sync is None else BookView(self.connection, symbol, sync)

    def stats(self, now: float) -> dict[str, BookStats]:
        """Every book's :class:`BookStats` at Unix time ``now``, by symbol (sorted)."""
        out = {}
        for symbol, sync in sorted(self.syncs.items()):
            valid = sync.state is _VALID
            out[symbol] = BookStats(
                state=sync.state.value,
                bids=len(sync.book.bids),
                asks=len(sync.book.asks),
                sequence=sync.sequence if valid else None,
                age=now - sync.received_at if valid else None,
                resyncs=sync.resyncs,
                reason=sync.reason,
                snapshots=self._snapshots[symbol],
            )
        return out
