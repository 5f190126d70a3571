"""BookSync under random faults (hypothesis): never wrong while valid; faults resync.

The venue's true book moves through N updates on a small price grid. It always holds a
bid at 99 and an ask at 101 that no update touches, so a bid injected at 101 always
crosses it. The stream we feed is the true one with faults: lost updates, duplicates,
swapped neighbours, stale replays, and updates with a crossing level added. Whenever a
BookSync wants a snapshot it gets the true book as of the newest update sent so far
(or, for a REST venue, sometimes an older one, which must be refetched).

Properties, checked after every message:
- while a book is valid, it equals the true book at its sequence (so a lost, swapped or
  crossing update that went unnoticed would fail here: every such fault resyncs);
- a consumer applying only what was delivered holds exactly our book while valid;
- duplicates and stale replays alone never resync;
- after the stream, the book resyncs if it must and equals the true book as of the
  newest update sent.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.exchanges.messages import BookDelta, BookInvalid, BookSnapshot, Message
from actors.exchanges.sdk.booksync import BINANCE_SPOT, DERIBIT, BookState, BookSync, SyncRule
from actors.exchanges.sdk.orderbook import OrderBook

D = Decimal
PINNED_BID, PINNED_ASK = D(99), D(101)

levels = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 3)), min_size=1, max_size=4
)  # (offset from the touch, size; 0 removes)
updates = st.lists(st.tuples(levels, levels, st.integers(1, 3)), min_size=3, max_size=40)
faults = st.lists(
    st.tuples(
        st.sampled_from(["lose", "duplicate", "swap", "replay", "cross"]), st.integers(0, 39)
    ),
    max_size=4,
)


def true_updates(
    drawn: list[tuple[list[tuple[int, int]], list[tuple[int, int]], int]],
) -> list[BookDelta]:
    out = []
    seq = 100
    for bids, asks, step in drawn:
        prev, seq = seq, seq + step
        out.append(
            delta(
                seq,
                prev,
                # Bids at 94..98, asks at 102..106: never the pinned levels.
                tuple((D(98 - off), D(size)) for off, size in bids),
                tuple((D(102 + off), D(size)) for off, size in asks),
            )
        )
    return out


def delta(
    seq: int,
    prev: int,
    bids: tuple[tuple[Decimal, Decimal], ...],
    asks: tuple[tuple[Decimal, Decimal], ...],
) -> BookDelta:
    return BookDelta(
        connection="c",
        exchange="x",
        received_at=0.0,
        symbol="S",
        bids=bids,
        asks=asks,
        sequence=seq,
        prev_sequence=prev,
        timestamp=None,
    )


def truth_after(true: list[BookDelta]) -> dict[int, OrderBook]:
    """The true book after each sequence (and at the start, 100)."""
    book = OrderBook()
    book.load([(PINNED_BID, D(1))], [(PINNED_ASK, D(1))])
    states = {100: _copy(book)}
    for update in true:
        book.apply(update.bids, update.asks)
        assert update.sequence is not None
        states[update.sequence] = _copy(book)
    return states


def _copy(book: OrderBook) -> OrderBook:
    copy = OrderBook()
    copy.load(book.iter_bids(), book.iter_asks())
    return copy


def faulty(true: list[BookDelta], drawn: list[tuple[str, int]]) -> tuple[list[BookDelta], bool]:
    """The stream with faults, and whether only harmless ones (duplicates, replays) hit."""
    stream = list(true)
    harmless = True
    for kind, at in drawn:
        i = at % len(stream)
        last = i == len(stream) - 1
        if kind == "lose" and not last:
            del stream[i]
            harmless = False
        elif kind == "duplicate":
            stream.insert(i + 1, stream[i])
        elif kind == "swap" and not last:
            stream[i], stream[i + 1] = stream[i + 1], stream[i]
            harmless = False
        elif kind == "replay" and i > 0:
            stream.insert(i + 1, stream[i - 1])
        elif kind == "cross":
            crossing = (*stream[i].bids, (PINNED_ASK, D(1)))
            stream[i] = BookDelta(**{**_fields(stream[i]), "bids": crossing})
            harmless = False
    return stream, harmless


def _fields(message: BookDelta) -> dict[str, object]:
    return {name: getattr(message, name) for name in message.__struct_fields__}


def snapshot_at(states: dict[int, OrderBook], seq: int) -> BookSnapshot:
    book = states[seq]
    bids, asks = book.top()
    return BookSnapshot(
        connection="c",
        exchange="x",
        received_at=0.0,
        symbol="S",
        bids=bids,
        asks=asks,
        sequence=seq,
        timestamp=None,
    )


class Consumer:
    def __init__(self) -> None:
        self.book = OrderBook()
        self.sequence: int | None = None
        self.valid = False

    def take(self, messages: list[Message]) -> None:
        for message in messages:
            if isinstance(message, BookSnapshot):
                self.book.load(message.bids, message.asks)
                self.sequence, self.valid = message.sequence, True
            elif isinstance(message, BookDelta):
                assert self.valid and message.prev_sequence == self.sequence
                self.book.apply(message.bids, message.asks)
                self.sequence = message.sequence
            elif isinstance(message, BookInvalid):
                self.valid = False


def run(
    rule: SyncRule, true: list[BookDelta], stream: list[BookDelta], lags: list[int]
) -> BookSync:
    states = truth_after(true)
    order = [100] + [u.sequence for u in true]
    sync = BookSync(rule)
    consumer = Consumer()
    newest = 100  # the newest true sequence the venue has sent so far
    lag_iter = iter(lags)

    def check() -> None:
        if sync.state is BookState.VALID:
            assert sync.sequence is not None
            assert sync.book.top() == states[sync.sequence].top(), sync.sequence
            assert consumer.valid
            assert consumer.book.top() == sync.book.top()

    def serve_snapshot() -> None:
        sync.snapshot_requested()
        # REST snapshots may be a little older than the stream (refetched) or current.
        lag = next(lag_iter, 0) if rule.rest_snapshot else 0
        index = max(0, order.index(newest) - lag)
        consumer.take(sync.on_snapshot(snapshot_at(states, order[index])))
        check()

    if not rule.rest_snapshot:
        consumer.take(sync.on_snapshot(snapshot_at(states, 100)))
    for message in stream:
        assert message.sequence is not None
        newest = max(newest, message.sequence, key=order.index)
        consumer.take(sync.on_delta(message))
        check()
        for _ in range(5):  # an old REST snapshot is refetched; at most a few times
            if not sync.wants_snapshot:
                break
            serve_snapshot()
    # After the stream: one more sync if one is due (the venue is at its last update).
    for _ in range(5):
        if not sync.wants_snapshot and sync.state is BookState.VALID:
            break
        newest = order[-1]
        lags.clear()
        serve_snapshot()
    assert sync.state is BookState.VALID
    # Up to date with the newest update the venue sent (lost ones at the end included:
    # nothing tells that they were lost until the next update or snapshot).
    assert sync.book.top() == states[newest].top()
    return sync


@settings(max_examples=300, deadline=None)
@given(updates, faults)
def test_a_venue_with_its_own_snapshot(drawn: list, drawn_faults: list) -> None:
    true = true_updates(drawn)
    stream, harmless = faulty(true, drawn_faults)
    sync = run(DERIBIT, true, stream, [])
    if harmless:
        assert sync.resyncs == 0


@settings(max_examples=300, deadline=None)
@given(updates, faults, st.lists(st.integers(0, 2), max_size=6))
def test_a_venue_with_rest_snapshots(drawn: list, drawn_faults: list, lags: list[int]) -> None:
    true = true_updates(drawn)
    stream, harmless = faulty(true, drawn_faults)
    sync = run(BINANCE_SPOT, true, stream, lags)
    if harmless:
        assert sync.resyncs == 0
