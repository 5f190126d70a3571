"""Local books: recorded streams replayed through the real adapters into BookSync.

Each replay checks the book two ways: against the venue's own check where it has one
(OKX's CRC32 on every 2022 frame) or a book built independently from the same frames,
and against a consumer that applies only what BookSync delivered (the documented
guarantee: snapshot + chained deltas = our book).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.exchanges.messages import BookDelta, BookInvalid, BookSnapshot, Message
from actors.exchanges.sdk.booksync import (
    BINANCE_SPOT,
    DERIBIT,
    OKX,
    BookState,
    BookSync,
)
from actors.exchanges.sdk.orderbook import OrderBook, okx_checksum
from exchanges.test_binance import feed as binance_feed
from exchanges.test_binance import live as binance_live
from exchanges.test_deribit import OPTION_BOOKS
from exchanges.test_deribit import feed as deribit_feed
from exchanges.test_deribit import live as deribit_live
from exchanges.test_okx import feed as okx_feed
from exchanges.test_okx import lines as okx_lines
from exchanges.test_okx import started as okx_started

DATA = Path(__file__).resolve().parent.parent / "data"
D = Decimal


class Consumer:
    """A user's book built only from delivered messages, checking the chain."""

    def __init__(self) -> None:
        self.book = OrderBook()
        self.sequence: int | None = None
        self.valid = False
        self.snapshots = 0
        self.invalids: list[str] = []

    def take(self, messages: list[Message]) -> None:
        for message in messages:
            if isinstance(message, BookSnapshot):
                self.book.load(message.bids, message.asks)
                self.sequence = message.sequence
                self.valid = True
                self.snapshots += 1
            elif isinstance(message, BookDelta):
                assert self.valid, "a delta after BookInvalid and before a snapshot"
                assert message.prev_sequence == self.sequence, (message, self.sequence)
                self.book.apply(message.bids, message.asks)
                self.sequence = message.sequence
            elif isinstance(message, BookInvalid):
                self.valid = False
                self.invalids.append(message.reason)


def same(a: OrderBook, b: OrderBook) -> bool:
    return a.top() == b.top()


# -- OKX: the 2022 recording, every checksum ------------------------------------------


def okx_book_messages(frames: list[str]) -> list[BookSnapshot | BookDelta]:
    proto = okx_started(channels=["book"], symbols=["BTC-USDT"])
    out = [m for frame in frames for m in okx_feed(proto, frame)]
    assert all(isinstance(m, BookSnapshot | BookDelta) for m in out)
    return out  # type: ignore[return-value]


def test_okx_2022_recording_verifies_every_checksum() -> None:
    messages = okx_book_messages(okx_lines("books_btc_usdt_2022_checksum.jsonl"))
    assert len(messages) == 98
    # Every frame of the recording carries a real (non-zero) checksum.
    assert all(m.checksum for m in messages)
    sync = BookSync(OKX)
    consumer = Consumer()
    for message in messages:
        if isinstance(message, BookSnapshot):
            consumer.take(sync.on_snapshot(message))
        else:
            consumer.take(sync.on_delta(message))
        assert sync.state is BookState.VALID, sync.reason
        assert okx_checksum(sync.book) == message.checksum
        assert same(consumer.book, sync.book)
    assert (sync.resyncs, consumer.snapshots, consumer.invalids) == (0, 1, [])
    assert (len(sync.book.bids), len(sync.book.asks)) == (400, 400)
    assert sync.book.best_bid() == (D("30236.1"), D("0.18050747"))
    assert sync.book.best_ask() == (D("30236.2"), D("0.001"))


def test_okx_a_wrong_size_fails_the_checksum_and_only_a_new_snapshot_recovers() -> None:
    frames = okx_lines("books_btc_usdt_2022_checksum.jsonl")
    update = json.loads(frames[5])
    asks = update["data"][0]["asks"]
    asks[0][1] = str(D(asks[0][1]) + D("0.00000001"))  # one size off by one satoshi
    frames[5] = json.dumps(update, separators=(",", ":"))
    messages = okx_book_messages(frames)
    sync = BookSync(OKX)
    consumer = Consumer()
    consumer.take(sync.on_snapshot(messages[0]))  # type: ignore[arg-type]
    for message in messages[1:5]:
        consumer.take(sync.on_delta(message))  # type: ignore[arg-type]
    delivered = sync.on_delta(messages[5])  # type: ignore[arg-type]
    (invalid,) = delivered
    assert isinstance(invalid, BookInvalid)
    assert invalid.reason == f"checksum mismatch after {messages[5].sequence}"
    assert (sync.state, sync.wants_snapshot, sync.resyncs) == (BookState.INVALID, True, 1)
    consumer.take(delivered)
    # Until the next snapshot nothing of this book is delivered.
    for message in messages[6:10]:
        assert sync.on_delta(message) == []  # type: ignore[arg-type]
    assert not consumer.valid


def test_okx_zero_checksums_are_not_checked() -> None:
    messages = okx_book_messages(okx_lines("books_btc_usdt_2022_checksum.jsonl"))
    sync = BookSync(OKX)
    for index, message in enumerate(messages):
        zeroed = msgspec.structs.replace(message, checksum=0)
        if isinstance(zeroed, BookSnapshot):
            sync.on_snapshot(zeroed)
        elif index == 5:
            # The size that fails the real checksum above goes unnoticed: 0 is "none".
            (price, size), *rest = zeroed.asks
            sync.on_delta(msgspec.structs.replace(zeroed, asks=((price, size + D("1E-8")), *rest)))
        else:
            sync.on_delta(zeroed)
    assert (sync.state, sync.resyncs) == (BookState.VALID, 0)


# -- Binance spot: 150 recorded diffs and the REST snapshot they pair with -------------


def nknusdt_rest_snapshot(**change: Any) -> BookSnapshot:
    body = json.loads(
        (DATA / "binance" / "spot_rest_depth_snapshot_nknusdt_limit1000.json").read_text()
    )
    return BookSnapshot(
        connection="b",
        exchange="binance",
        received_at=2.0,
        symbol="NKN-USDT",
        bids=tuple((D(p), D(q)) for p, q in body["bids"]),
        asks=tuple((D(p), D(q)) for p, q in body["asks"]),
        sequence=change.get("sequence", body["lastUpdateId"]),
        timestamp=None,
    )


def nknusdt_deltas() -> list[BookDelta]:
    proto = binance_live(channels=["book"], symbols=["NKN-USDT"])
    frames = (DATA / "binance" / "spot_depth_diff_nknusdt_combined.jsonl").read_text().splitlines()
    out: list[BookDelta] = []
    for frame in frames:
        (delta,), _ = binance_feed(proto, frame)
        assert isinstance(delta, BookDelta)
        out.append(delta)
    return out


def reference_book(snapshot: BookSnapshot, deltas: list[BookDelta]) -> OrderBook:
    """The venue's documented procedure done by hand with dicts."""
    last = snapshot.sequence
    assert last is not None
    bids = {p: q for p, q in snapshot.bids if q}
    asks = {p: q for p, q in snapshot.asks if q}
    for delta in deltas:
        assert delta.sequence is not None
        if delta.sequence <= last:
            continue
        for side, levels in ((bids, delta.bids), (asks, delta.asks)):
            for price, size in levels:
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)
    book = OrderBook()
    book.load(bids.items(), asks.items())
    return book


def test_binance_spot_buffers_until_the_rest_snapshot_then_bridges() -> None:
    deltas = nknusdt_deltas()
    snapshot = nknusdt_rest_snapshot()
    assert snapshot.sequence == 499869752
    sync = BookSync(BINANCE_SPOT)
    consumer = Consumer()
    assert (sync.state, sync.wants_snapshot) == (BookState.SYNCING, True)
    sync.snapshot_requested()
    # The first 20 diffs arrive while the snapshot is on its way: buffered.
    for delta in deltas[:20]:
        assert sync.on_delta(delta) == []
    delivered = sync.on_snapshot(snapshot)
    consumer.take(delivered)
    (synced,) = delivered
    assert isinstance(synced, BookSnapshot)
    # The first diff ([499869750, 499869752]) is in the snapshot; the other 19 applied.
    assert synced.sequence == deltas[19].sequence
    for delta in deltas[20:]:
        consumer.take(sync.on_delta(delta))
    assert (sync.state, sync.resyncs, sync.sequence) == (BookState.VALID, 0, deltas[-1].sequence)
    assert same(sync.book, reference_book(snapshot, deltas))
    assert same(consumer.book, sync.book)
    assert not sync.book.crossed()


def test_binance_spot_a_snapshot_older_than_the_buffer_is_fetched_again() -> None:
    deltas = nknusdt_deltas()
    sync = BookSync(BINANCE_SPOT)
    sync.snapshot_requested()
    for delta in deltas[5:20]:
        sync.on_delta(delta)
    # lastUpdateId older than the first buffered U - 1: diffs in between are missing.
    old = nknusdt_rest_snapshot()
    assert sync.on_snapshot(old) == []
    assert (sync.state, sync.wants_snapshot, sync.resyncs) == (BookState.SYNCING, True, 0)
    assert (sync.sequence, len(sync.book)) == (None, 0)
    sync.snapshot_requested()
    # A newer one (as of diff 9) bridges: diffs 10.. apply on top of it.
    newer = nknusdt_rest_snapshot(sequence=deltas[9].sequence)
    (synced,) = sync.on_snapshot(newer)
    assert isinstance(synced, BookSnapshot)
    assert (sync.state, synced.sequence) == (BookState.VALID, deltas[19].sequence)


def test_binance_spot_a_lost_diff_invalidates_and_buffers_for_the_next_snapshot() -> None:
    deltas = nknusdt_deltas()
    sync = BookSync(BINANCE_SPOT)
    consumer = Consumer()
    consumer.take(sync.on_snapshot(nknusdt_rest_snapshot()))
    for delta in deltas[1:30]:
        consumer.take(sync.on_delta(delta))
    # deltas[30] is lost.
    delivered = sync.on_delta(deltas[31])
    consumer.take(delivered)
    (invalid,) = delivered
    assert isinstance(invalid, BookInvalid)
    assert invalid.reason == (
        f"sequence gap: update {deltas[31].prev_sequence}->{deltas[31].sequence} "
        f"does not continue {deltas[29].sequence}"
    )
    assert invalid.sequence == deltas[29].sequence
    assert (sync.state, sync.wants_snapshot, sync.resyncs) == (BookState.SYNCING, True, 1)
    # A duplicate of an applied diff would have been dropped, not a gap:
    for delta in deltas[32:40]:
        assert sync.on_delta(delta) == []
    # The next snapshot (as of diff 33) bridges the buffer, which kept deltas[31] on.
    (synced,) = sync.on_snapshot(nknusdt_rest_snapshot(sequence=deltas[33].sequence))
    consumer.take([synced])
    for delta in deltas[40:]:
        consumer.take(sync.on_delta(delta))
    assert same(consumer.book, sync.book)
    assert consumer.invalids == [invalid.reason]


def test_binance_spot_duplicates_are_dropped() -> None:
    deltas = nknusdt_deltas()
    sync = BookSync(BINANCE_SPOT)
    sync.on_snapshot(nknusdt_rest_snapshot())
    for delta in deltas[1:10]:
        sync.on_delta(delta)
    assert sync.on_delta(deltas[5]) == []
    assert sync.on_delta(deltas[9]) == []
    assert (sync.state, sync.resyncs) == (BookState.VALID, 0)


# -- Deribit: the 2021 option books ----------------------------------------------------


def test_deribit_2021_books_chain_through_every_change() -> None:
    proto = deribit_live(raw=OPTION_BOOKS)
    lines = (DATA / "deribit" / "book_raw_options_2021.jsonl").read_text().splitlines()
    syncs: dict[str, BookSync] = {}
    consumers: dict[str, Consumer] = {}
    for line in lines:
        for message in deribit_feed(proto, line):
            assert isinstance(message, BookSnapshot | BookDelta)
            sync = syncs.setdefault(message.symbol, BookSync(DERIBIT))
            consumer = consumers.setdefault(message.symbol, Consumer())
            if isinstance(message, BookSnapshot):
                consumer.take(sync.on_snapshot(message))
            else:
                consumer.take(sync.on_delta(message))
    assert len(syncs) == 10
    for symbol, sync in syncs.items():
        assert (sync.state, sync.resyncs) == (BookState.VALID, 0), symbol
        assert same(consumers[symbol].book, sync.book), symbol


# -- rules in isolation ---------------------------------------------------------------


def delta(seq: int, prev: int, bids: tuple[tuple[str, str], ...] = (), **kw: Any) -> BookDelta:
    return BookDelta(
        connection="c",
        exchange="x",
        received_at=1.0,
        symbol="S",
        bids=tuple((D(p), D(q)) for p, q in bids),
        asks=tuple((D(p), D(q)) for p, q in kw.pop("asks", ())),
        sequence=seq,
        prev_sequence=prev,
        timestamp=None,
        **kw,
    )


def snapshot(
    seq: int, bids: tuple[tuple[str, str], ...], asks: tuple[tuple[str, str], ...]
) -> BookSnapshot:
    return BookSnapshot(
        connection="c",
        exchange="x",
        received_at=1.0,
        symbol="S",
        bids=tuple((D(p), D(q)) for p, q in bids),
        asks=tuple((D(p), D(q)) for p, q in asks),
        sequence=seq,
        timestamp=None,
    )


def test_a_crossing_update_invalidates_and_deletes_nothing() -> None:
    sync = BookSync(DERIBIT)
    sync.on_snapshot(snapshot(1, (("99", "1"),), (("101", "1"),)))
    (invalid,) = sync.on_delta(delta(2, 1, (("101", "2"),)))
    assert isinstance(invalid, BookInvalid)
    assert invalid.reason == "crossed book after 2"
    assert (sync.state, sync.wants_snapshot) == (BookState.INVALID, True)
    # The next snapshot makes it valid again; nothing was repaired in between.
    (synced,) = sync.on_snapshot(snapshot(7, (("99", "1"),), (("100", "1"),)))
    assert isinstance(synced, BookSnapshot)
    assert (sync.state, sync.sequence, sync.resyncs) == (BookState.VALID, 7, 1)


def test_a_crossed_snapshot_is_invalid() -> None:
    sync = BookSync(DERIBIT)
    (invalid,) = sync.on_snapshot(snapshot(1, (("101", "1"),), (("100", "1"),)))
    assert isinstance(invalid, BookInvalid)
    assert invalid.reason == "crossed snapshot"


def test_okx_sequences_may_restart_lower_but_must_chain() -> None:
    sync = BookSync(OKX)
    sync.on_snapshot(snapshot(500, (("99", "1"),), (("101", "1"),)))
    assert sync.on_delta(delta(500, 500)) != []  # an idle update: seqId == prevSeqId
    (restarted,) = sync.on_delta(delta(3, 500, (("98", "1"),)))
    assert isinstance(restarted, BookDelta)
    assert (sync.state, sync.sequence) == (BookState.VALID, 3)
    (invalid,) = sync.on_delta(delta(2, 1))  # not a continuation, even though lower
    assert isinstance(invalid, BookInvalid)


@pytest.mark.parametrize("stale_at", [499, 500])
def test_binance_usdm_bridges_on_pu(stale_at: int) -> None:
    from actors.exchanges.sdk.booksync import BINANCE_USDM

    sync = BookSync(BINANCE_USDM)
    sync.on_delta(delta(stale_at, 480))
    sync.on_delta(delta(510, stale_at))  # pu < 505 <= u: bridges a snapshot at 505
    sync.on_delta(delta(520, 510))
    (synced,) = sync.on_snapshot(snapshot(505, (("99", "1"),), (("101", "1"),)))
    assert isinstance(synced, BookSnapshot)
    assert synced.sequence == 520


def test_the_okx_checksum_uses_the_strings_as_sent() -> None:
    import zlib

    book = OrderBook()
    # str(Decimal("0.00000001")) reads 1E-8; OKX hashes the string it sent.
    book.load([(D("1000.0"), D("0.00000001")), (D("999"), D("3"))], [(D("1000.5"), D("2.50"))])
    text = "1000.0:0.00000001:1000.5:2.50:999:3"
    crc = zlib.crc32(text.encode())
    assert okx_checksum(book) == (crc - (1 << 32) if crc >= 1 << 31 else crc)
    assert okx_checksum(book) != okx_checksum(OrderBook())
