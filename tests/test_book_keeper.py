"""The connection's BookKeeper and the BookSync behaviours it relies on (pure, no I/O).

The recorded-stream replays are in tests/exchanges/test_books.py; the supervisor end to
end in tests/exchanges/test_books_end_to_end.py.
"""

from __future__ import annotations

import math
from decimal import Decimal

import msgspec
from exchanges.test_books import Consumer, delta, nknusdt_deltas, nknusdt_rest_snapshot, snapshot

from actors.books import BookKeeper, BookStats
from actors.exchanges.messages import BookDelta, BookInvalid, BookSnapshot, BookTop, Trade
from actors.exchanges.sdk.booksync import BINANCE_SPOT, DERIBIT, OKX, OKX_REST, BookState, BookSync

D = Decimal


def trade(symbol: str = "S") -> Trade:
    return Trade(
        connection="c",
        exchange="x",
        received_at=1.0,
        symbol=symbol,
        side="buy",
        price=D(1),
        amount=D(1),
        trade_id="1",
        timestamp=1,
    )


def at(message: BookDelta, received_at: float) -> BookDelta:
    return msgspec.structs.replace(message, received_at=received_at)


def test_a_batch_without_kept_book_messages_is_returned_as_it_came() -> None:
    keeper = BookKeeper("c", "x", DERIBIT, ["S"])
    other = msgspec.structs.replace(delta(5, 4), symbol="OTHER")  # no book kept for it
    plain = (trade(), other)
    assert keeper.process(plain) is plain
    assert keeper.process(()) == ()


def test_book_messages_are_replaced_in_place_and_others_keep_their_order() -> None:
    keeper = BookKeeper("c", "x", DERIBIT, ["S"])
    first = snapshot(10, (("99", "1"),), (("101", "1"),))
    out = keeper.process((trade(), first, trade("T")))
    assert [type(m).__name__ for m in out] == ["Trade", "BookSnapshot", "Trade"]
    assert out[1] == first  # a snapshot that syncs as it came is delivered as it came
    # A duplicate is dropped; the next delta passes, chained.
    assert keeper.process((delta(10, 9),)) == ()
    (passed,) = keeper.process((delta(11, 10, (("99", "2"),)),))
    assert isinstance(passed, BookDelta) and (passed.prev_sequence, passed.sequence) == (10, 11)
    view = keeper.view("S")
    assert view is not None and view.valid and view.sequence == 11
    assert view.bids() == [(D("99"), D("2"))] and view.best_ask() == (D("101"), D("1"))
    assert view.mid() == D("100")
    assert keeper.view("T") is None


def test_a_gap_invalidates_one_book_and_asks_for_a_resubscribe() -> None:
    keeper = BookKeeper("c", "x", DERIBIT, ["S", "T"])
    keeper.process((snapshot(10, (("99", "1"),), (("101", "1"),)),))
    t_snapshot = msgspec.structs.replace(snapshot(50, (("9", "1"),), ()), symbol="T")
    keeper.process((t_snapshot,))
    (invalid,) = keeper.process((delta(13, 12),))
    assert isinstance(invalid, BookInvalid)
    assert (invalid.symbol, invalid.sequence) == ("S", 10)
    assert invalid.reason == "sequence gap: update 12->13 does not continue 10"
    assert keeper.pending
    assert keeper.wanted() == [("S", False)]  # subscribe its stream again
    assert not keeper.pending and keeper.wanted() == []
    # Nothing of S is delivered until its new snapshot; T goes on.
    assert keeper.process((delta(14, 13),)) == ()
    t_delta = msgspec.structs.replace(delta(51, 50), symbol="T")
    assert keeper.process((t_delta,)) == (t_delta,)
    again = snapshot(20, (("98", "1"),), (("101", "1"),))
    assert keeper.process((again,)) == (again,)
    stats = keeper.stats(now=3.0)
    assert list(stats) == ["S", "T"]
    assert stats["S"] == BookStats(
        state="valid",
        bids=1,
        asks=1,
        sequence=20,
        age=2.0,
        resyncs=1,
        reason="sequence gap: update 12->13 does not continue 10",
        snapshots=2,
    )
    assert (stats["T"].state, stats["T"].resyncs, stats["T"].sequence) == ("valid", 0, 51)


def test_binance_waits_for_a_buffered_delta_before_asking_for_rest() -> None:
    deltas = nknusdt_deltas()
    keeper = BookKeeper("b", "binance", BINANCE_SPOT, ["NKN-USDT"])
    # Wanted from the start, but not worth fetching before the stream has a delta.
    assert not keeper.pending and keeper.wanted() == []
    assert keeper.process((deltas[0],)) == ()
    assert keeper.wanted() == [("NKN-USDT", True)]
    consumer = Consumer()
    for d in deltas[1:10]:
        assert keeper.process((d,)) == ()  # buffered
    out = keeper.take_snapshot(nknusdt_rest_snapshot())
    consumer.take(out)
    assert [type(m) for m in out] == [BookSnapshot]
    for d in deltas[10:]:
        consumer.take(list(keeper.process((d,))))
    view = keeper.view("NKN-USDT")
    assert view is not None and view.valid
    assert consumer.book.top() == (tuple(view.bids()), tuple(view.asks()))
    assert consumer.sequence == view.sequence == deltas[-1].sequence
    # An answer nobody waits for any more is ignored.
    assert keeper.take_snapshot(nknusdt_rest_snapshot()) == []


def test_a_failed_snapshot_is_asked_for_again() -> None:
    deltas = nknusdt_deltas()
    keeper = BookKeeper("b", "binance", BINANCE_SPOT, ["NKN-USDT"])
    keeper.process((deltas[0],))
    assert keeper.wanted() == [("NKN-USDT", True)]
    assert not keeper.pending
    keeper.snapshot_failed("NKN-USDT")
    assert keeper.wanted() == [("NKN-USDT", True)]


def test_a_lost_session_invalidates_valid_books_once() -> None:
    keeper = BookKeeper("c", "x", DERIBIT, ["S", "T"])
    keeper.process((snapshot(10, (("99", "1"),), (("101", "1"),)),))
    (invalid,) = keeper.lost("the connection was lost", 7.5)
    assert invalid == BookInvalid(
        connection="c",
        exchange="x",
        received_at=7.5,
        symbol="S",
        reason="the connection was lost",
        sequence=10,
    )
    assert keeper.lost("again", 8.0) == []  # told already; T never synced
    # The next session's stream brings the snapshot: nothing to ask for.
    assert keeper.wanted() == []
    sync = keeper.syncs["S"]
    assert (sync.state, sync.resyncs) == (BookState.SYNCING, 0)  # a loss is no doubt


def test_a_rest_venue_refreshes_a_valid_book_and_delivers_the_refreshed_one() -> None:
    deltas = nknusdt_deltas()
    keeper = BookKeeper("b", "binance", BINANCE_SPOT, ["NKN-USDT"], refresh=600.0)
    consumer = Consumer()
    keeper.process((at(deltas[0], 100.0),))
    keeper.wanted()
    consumer.take(keeper.take_snapshot(nknusdt_rest_snapshot()))
    assert keeper.syncs["NKN-USDT"].state is BookState.VALID
    for d in deltas[1:40]:
        consumer.take(list(keeper.process((at(d, 200.0),))))
    assert keeper.wanted() == []
    # 600 s after the sync (at 2.0, the snapshot's receive time): a refresh starts, and
    # the book stays valid and delivered meanwhile.
    for d in deltas[40:50]:
        consumer.take(list(keeper.process((at(d, 602.0),))))
    assert keeper.wanted() == [("NKN-USDT", True)]
    view = keeper.view("NKN-USDT")
    assert view is not None and view.valid and view.sequence == deltas[49].sequence
    # The refresh's snapshot is the one fetched at the start (older than every delta
    # since): too old to bridge, so the book we have goes on and another is asked for.
    assert keeper.take_snapshot(nknusdt_rest_snapshot()) == []
    assert view.valid and keeper.wanted() == [("NKN-USDT", True)]
    # A snapshot taken at deltas[45]: the deltas after it bridge it; the refreshed book
    # is delivered as a snapshot and equals the one we had.
    before = (tuple(view.bids()), tuple(view.asks()))
    fresh = BookSnapshot(
        connection="b",
        exchange="binance",
        received_at=603.0,
        symbol="NKN-USDT",
        bids=before[0],
        asks=before[1],
        sequence=deltas[49].sequence,
        timestamp=None,
    )
    out = keeper.take_snapshot(fresh)
    assert [type(m) for m in out] == [BookSnapshot]
    consumer.take(out)
    assert consumer.snapshots == 2 and consumer.sequence == deltas[49].sequence
    for d in deltas[50:]:
        consumer.take(list(keeper.process((at(d, 604.0),))))
    assert consumer.book.top() == (tuple(view.bids()), tuple(view.asks()))
    assert keeper.stats(605.0)["NKN-USDT"].snapshots == 2


def test_okx_without_a_stream_snapshot_falls_back_to_rest() -> None:
    sync = BookSync(OKX)
    assert not sync.wants_snapshot
    assert sync.on_delta(delta(12, 10)) == []
    assert sync.rule is OKX_REST and sync.ready
    sync.snapshot_requested()
    assert sync.on_delta(delta(14, 12, (("99", "1"),))) == []
    (synced,) = sync.on_snapshot(snapshot(12, (("98", "1"),), (("101", "1"),)))
    assert isinstance(synced, BookSnapshot)
    assert (sync.state, sync.sequence) == (BookState.VALID, 14)
    assert sync.book.top() == (((D("99"), D("1")), (D("98"), D("1"))), ((D("101"), D("1")),))


def test_with_top_the_book_is_delivered_as_conflated_tops() -> None:
    keeper = BookKeeper("c", "x", DERIBIT, ["S"], top=1, interval=1.0)
    first = snapshot(10, (("99", "1"), ("98", "5")), (("101", "1"),))
    assert keeper.process((trade(), first)) == (trade(),)  # no snapshot: a top follows
    assert keeper.changed == {"S"}
    tops, later = keeper.tops(now=5.0)
    assert tops == [
        BookTop(
            connection="c",
            exchange="x",
            received_at=1.0,
            symbol="S",
            bids=((D("99"), D("1")),),
            asks=((D("101"), D("1")),),
            sequence=10,
            timestamp=None,
        )
    ]
    assert (keeper.changed, later) == (set(), math.inf)
    # Two changes within the interval: one top, of the newer book, once it is due.
    assert keeper.process((delta(11, 10, (("99", "2"),)),)) == ()
    assert keeper.process((delta(12, 11, (("99", "3"),)),)) == ()
    assert keeper.tops(now=5.5) == ([], 6.0)
    (top,), later = keeper.tops(now=6.0)
    assert (top.sequence, top.bids, later) == (12, ((D("99"), D("3")),), math.inf)
    # A doubt still goes out at once, and no top follows until the book is valid.
    (invalid,) = keeper.process((delta(14, 13),))
    assert isinstance(invalid, BookInvalid)
    assert keeper.tops(now=9.0) == ([], math.inf)
    assert keeper.process((snapshot(20, (("97", "1"),), (("101", "1"),)),)) == ()
    (top,), _ = keeper.tops(now=9.0)
    assert (top.sequence, top.bids) == (20, ((D("97"), D("1")),))
