"""The fakes' venue-true books: :class:`VenueBook`, and the fakes that stream and serve it.

The book's invariants are checked with hypothesis (never crossed, depth bounded, every
change real, :meth:`VenueBook.at` equal to the book after each step, deterministic per
seed). Then a client rebuilds the book from a fake's frames with our own
:class:`OrderBook` (Binance diffs after a REST snapshot, OKX snapshot and updates with
real checksums, OKX without a snapshot synced from REST) and must hold exactly the
venue's book at the last sequence it saw. The REST bodies go over real loopback HTTP
through :class:`FakeRest`; the WebSocket sessions run over in-memory streams on the
MockClock.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import msgspec
import pytest
import trio
import trio.testing
import trio_websocket
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.exchanges.sdk.orderbook import OrderBook, okx_checksum
from supervisor.testing import FakeExchange, open_fake_exchange
from supervisor.testing.fakes.binance import FakeBinance, FakeBinanceUsdm
from supervisor.testing.fakes.bybit import FIRST_UPDATE_ID, FakeBybit
from supervisor.testing.fakes.deribit import FakeDeribit
from supervisor.testing.fakes.okx import FakeOkx
from supervisor.testing.fakes.rest import DEFAULT_EPOCH, FakeRest, Reply, open_fake_rest
from supervisor.testing.fakes.venue_book import (
    BINANCE_SPOT,
    BINANCE_USDM,
    OKX,
    BookFormat,
    VenueBook,
    okx_checksum_of,
)

Levels = list[list[str]]
DEADLINE = 600.0


def decimals(side: Levels) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(price), Decimal(size)) for price, size, *_ in side]


def as_sent(book: OrderBook) -> tuple[Levels, Levels]:
    """The book best first, written back as the strings the venue sent."""
    return (
        [[format(p, "f"), format(s, "f")] for p, s in book.iter_bids()],
        [[format(p, "f"), format(s, "f")] for p, s in book.iter_asks()],
    )


def apply(state: dict[str, dict[str, str]], bids: Levels, asks: Levels) -> None:
    for side, levels in (("bids", bids), ("asks", asks)):
        for price, size in levels:
            if Decimal(size) == 0:
                state[side].pop(price, None)
            else:
                state[side][price] = size


def best_first(state: dict[str, dict[str, str]]) -> tuple[Levels, Levels]:
    bids = sorted(state["bids"].items(), key=lambda kv: Decimal(kv[0]), reverse=True)
    asks = sorted(state["asks"].items(), key=lambda kv: Decimal(kv[0]))
    return [list(kv) for kv in bids], [list(kv) for kv in asks]


# -- the book itself ---------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    steps=st.integers(1, 400),
    max_levels=st.integers(5, 60),
    fmt=st.sampled_from([BINANCE_SPOT, BINANCE_USDM, OKX]),
)
def test_every_step_is_a_real_change_of_a_sound_book(
    seed: int, steps: int, max_levels: int, fmt: BookFormat
) -> None:
    book = VenueBook(
        seed=seed,
        price=10_000,
        sequence=7,
        fmt=fmt,
        seq_step=3,
        levels=min(20, max_levels),
        max_levels=max_levels,
    )
    twin = VenueBook(
        seed=seed,
        price=10_000,
        sequence=7,
        fmt=fmt,
        seq_step=3,
        levels=min(20, max_levels),
        max_levels=max_levels,
    )
    mirror: dict[str, dict[str, str]] = {"bids": book.bids, "asks": book.asks}
    assert book.at(7) == book.snapshot() == best_first(mirror)
    seen = {7: book.snapshot()}
    for n in range(1, steps + 1):
        bids, asks = book.step()
        assert (bids, asks) == twin.step()  # deterministic for a seed
        assert bids or asks
        before = best_first(mirror)
        apply(mirror, bids, asks)
        assert best_first(mirror) != before  # a real change
        assert book.sequence == 7 + 3 * n
        snapshot = book.snapshot()
        assert snapshot == best_first(mirror) == book.at(book.sequence)
        assert (book.bids, book.asks) == (mirror["bids"], mirror["asks"])
        top_bids, top_asks = snapshot
        assert Decimal(top_bids[0][0]) < Decimal(top_asks[0][0])  # never crossed
        assert 5 <= len(top_bids) <= max_levels and 5 <= len(top_asks) <= max_levels
        assert [Decimal(p) for p, _ in top_bids] == sorted(
            (Decimal(p) for p, _ in top_bids), reverse=True
        )
        assert [Decimal(p) for p, _ in top_asks] == sorted(Decimal(p) for p, _ in top_asks)
        seen[book.sequence] = snapshot
    for sequence, snapshot in seen.items():  # every earlier book, not only the last
        assert book.at(sequence) == snapshot
    assert book.diff(7, book.sequence) is not None
    assert book.snapshot(3) == (seen[book.sequence][0][:3], seen[book.sequence][1][:3])


def test_at_answers_for_the_last_history_changes_and_none_otherwise() -> None:
    book = VenueBook(seed=5, price=5_000, sequence=100, fmt=OKX, seq_step=2, history=50)
    seen = {100: book.snapshot()}
    for _ in range(200):
        book.step()
        seen[book.sequence] = book.snapshot()
    assert book.sequence == 500
    remembered = [s for s in seen if book.at(s) is not None]
    assert remembered == list(range(402, 502, 2))  # the last 50 changes
    assert all(book.at(s) == seen[s] for s in remembered)
    assert book.at(401) is None  # never set (an odd one between two steps)
    assert book.at(502) is None  # not yet
    assert book.following(498) == 500 and book.following(500) is None
    assert book.next_after(498) == 500 and book.sequence == 500  # read, not stepped
    assert book.next_after(500) == 502 and book.sequence == 502  # stepped at the head


def test_the_default_history_is_ten_thousand_changes_and_cheap() -> None:
    book = VenueBook(seed=1, price=10_000, sequence=0, fmt=BINANCE_SPOT)
    for _ in range(10_001):
        book.step()
    assert book.at(10_001) == book.snapshot()
    assert book.at(2) is not None and book.at(1) is None  # the last 10_000 changes
    middle = book.at(5_000)
    assert middle is not None
    replay = VenueBook(seed=1, price=10_000, sequence=0, fmt=BINANCE_SPOT)
    for _ in range(5_000):
        replay.step()
    assert middle == replay.snapshot()


def test_diff_merges_the_changes_between_two_sequences() -> None:
    book = VenueBook(seed=3, price=10_000, sequence=0, fmt=BINANCE_USDM)
    start = book.snapshot()
    for _ in range(10):
        book.step()
    merged = book.diff(0, 10)
    assert merged is not None
    state: dict[str, dict[str, str]] = {
        "bids": {price: size for price, size in start[0]},
        "asks": {price: size for price, size in start[1]},
    }
    apply(state, *merged)
    assert best_first(state) == book.snapshot()
    assert book.diff(4, 4) == ([], [])
    assert book.diff(10, 4) is None and book.diff(11, 12) is None


def test_prices_and_sizes_are_written_like_the_venue() -> None:
    assert (BINANCE_SPOT.price(10_001), BINANCE_SPOT.size(200)) == ("100.01000000", "0.00200000")
    assert (BINANCE_SPOT.size(0), BINANCE_USDM.size(0), OKX.size(0)) == ("0.00000000", "0.000", "0")
    assert (BINANCE_USDM.price(8_308_430), BINANCE_USDM.size(2_986)) == ("83084.30", "2.986")
    assert (OKX.price(1_004), OKX.price(1_000), OKX.size(60_038_921)) == (
        "100.4",
        "100",
        "0.60038921",
    )
    assert OKX.size(1_210_000_000) == "12.1"
    for fmt, pattern in (
        (BINANCE_SPOT, r"^\d+\.\d{8}$"),
        (BINANCE_USDM, r"^\d+\.\d{2,3}$"),
        (OKX, r"^\d+(\.\d*[1-9])?$"),
    ):
        book = VenueBook(seed=9, price=20_000, sequence=0, fmt=fmt)
        for _ in range(50):
            book.step()
        bids, asks = book.snapshot()
        assert all(re.match(pattern, text) for level in bids + asks for text in level)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^price, seq_step and history must be positive"):
        VenueBook(seed=0, price=100, sequence=0, fmt=OKX, seq_step=0)
    with pytest.raises(ValueError, match=r"^levels must lie in \[5, max_levels=10\], got 11$"):
        VenueBook(seed=0, price=100, sequence=0, fmt=OKX, levels=11, max_levels=10)
    with pytest.raises(ValueError, match=r"^venue_book\('DOGEUSDT'\): the fake lists only "):
        FakeBinance().venue_book("DOGEUSDT")
    with pytest.raises(ValueError, match=r"^venue_book\('DOGE-USDT'\): the fake lists only "):
        FakeOkx().venue_book("DOGE-USDT")


def test_our_checksum_agrees_with_the_adapters() -> None:
    book = VenueBook(seed=11, price=41_006, sequence=0, fmt=OKX, levels=40)
    ours = _loaded(*book.snapshot())
    assert okx_checksum_of(*book.snapshot()) == okx_checksum(ours)
    for _ in range(300):
        bids, asks = book.step()
        ours.apply(decimals(bids), decimals(asks))
        assert okx_checksum_of(*book.snapshot()) == okx_checksum(ours)
    # A one-sided tail (one side shorter than 25 levels) and OKX's documented example.
    assert okx_checksum_of([["3366.1", "7"]], [["3366.8", "9"], ["3368", "8"]]) == okx_checksum(
        _loaded([["3366.1", "7"]], [["3366.8", "9"], ["3368", "8"]])
    )


def _loaded(bids: Levels, asks: Levels) -> OrderBook:
    book = OrderBook()
    book.load(decimals(bids), decimals(asks))
    return book


# -- the fakes' WebSocket frames, replayed onto our own book -----------------------------


@asynccontextmanager
async def _client(
    fake: FakeExchange, path: str, url: str | None = None
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    async with trio.open_nursery() as nursery:
        stream = await fake.connect(url or fake.url)
        ws = await trio_websocket.wrap_client_stream(
            nursery,
            stream,  # type: ignore[arg-type]  # any trio Stream works
            "venue.fake.invalid",
            path,
        )
        yield ws
        await ws.aclose()


@asynccontextmanager
async def _http(rest: FakeRest) -> AsyncIterator[httpx.AsyncClient]:
    # Callers own timeouts (trio.fail_after on the MockClock); httpx's own would jump.
    async with httpx.AsyncClient(base_url=rest.url, trust_env=False, timeout=None) as client:
        yield client


@pytest.mark.parametrize("usdm", [False, True])
async def test_binance_diffs_on_a_rest_snapshot_rebuild_the_venue_book(
    autojump_clock: trio.testing.MockClock, usdm: bool
) -> None:
    # Pings far apart: this test is about the book, not about answering pings.
    binance = FakeBinanceUsdm(ping_interval=3600.0) if usdm else FakeBinance(ping_interval=3600.0)
    path = "/fapi/v1/depth" if usdm else "/api/v3/depth"
    diffs: list[dict[str, Any]] = []
    with trio.fail_after(DEADLINE):
        async with (
            open_fake_exchange(
                name="binance", transport="memory", interval=1.0, handler=binance
            ) as fake,
            open_fake_rest() as rest,
        ):
            rest.serve_books(binance)
            async with _http(rest) as http:
                answer = await http.get(path, params={"symbol": "BTCUSDT", "limit": "1000"})
            snapshot = answer.json()
            async with _client(fake, "/stream") as ws:
                await ws.send_message(
                    '{"method":"SUBSCRIBE","params":["btcusdt@depth@100ms"],"id":1}'
                )
                assert await ws.get_message() == '{"result":null,"id":1}'
                while len(diffs) < 40:
                    diffs.append(msgspec.json.decode(await ws.get_message())["data"])
                    if len(diffs) == 25:
                        binance.inject_gap("BTCUSDT")
    venue = binance.venue_book("BTCUSDT")
    assert answer.status_code == 200
    assert snapshot["lastUpdateId"] == 10_000_000  # no session had moved the book yet
    assert (snapshot["bids"], snapshot["asks"]) == venue.at(10_000_000)
    book = OrderBook()
    book.load(decimals(snapshot["bids"]), decimals(snapshot["asks"]))
    last = snapshot["lastUpdateId"]
    gaps = []
    for diff in diffs:
        if diff["U"] != last + 1 or (usdm and diff["pu"] != last):
            gaps.append((last, diff["U"]))
            break
        book.apply(decimals(diff["b"]), decimals(diff["a"]))
        last = diff["u"]
        assert as_sent(book) == venue.at(last)  # our book is the venue's at every sequence
        assert not book.crossed()
    # The 26th diff (ids 10_000_076..78) was lost: the 26th sent one starts at 79.
    assert gaps == [(10_000_075, 10_000_079)]
    assert [d["u"] for d in diffs[:3]] == [10_000_003, 10_000_006, 10_000_009]
    # After the gap: a fresh snapshot and the rest of the diffs bring it back exactly.
    fresh = venue.at(diffs[30]["u"])
    assert fresh is not None
    book.load(*(decimals(side) for side in fresh))
    for diff in diffs[31:]:
        book.apply(decimals(diff["b"]), decimals(diff["a"]))
    assert as_sent(book) == venue.at(diffs[-1]["u"]) == venue.snapshot()


async def test_okx_snapshot_and_updates_rebuild_the_venue_book_and_every_checksum_verifies(
    autojump_clock: trio.testing.MockClock,
) -> None:
    okx = FakeOkx(checksums=True)
    frames: list[dict[str, Any]] = []
    with trio.fail_after(DEADLINE):
        async with (
            open_fake_exchange(name="okx", transport="memory", interval=1.0, handler=okx) as fake,
            _client(fake, "/ws") as ws,
        ):
            await ws.send_message(
                '{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}'
            )
            assert msgspec.json.decode(await ws.get_message())["event"] == "subscribe"
            while len(frames) < 60:
                frames.append(msgspec.json.decode(await ws.get_message()))
    venue = okx.venue_book("BTC-USDT")
    assert [f["action"] for f in frames] == ["snapshot"] + ["update"] * 59
    entries = [f["data"][0] for f in frames]
    assert [(e["prevSeqId"], e["seqId"]) for e in entries[:3]] == [
        (-1, 1000),
        (1000, 1002),
        (1002, 1004),
    ]
    book = OrderBook()
    book.load(decimals(entries[0]["bids"]), decimals(entries[0]["asks"]))
    assert as_sent(book) == venue.at(1000)
    assert okx_checksum(book) == entries[0]["checksum"] != 0
    for prev, entry in itertools.pairwise(entries):
        assert entry["prevSeqId"] == prev["seqId"]
        book.apply(decimals(entry["bids"]), decimals(entry["asks"]))
        assert okx_checksum(book) == entry["checksum"]  # every one verifies
        assert as_sent(book) == venue.at(entry["seqId"])
        assert all(len(level) == 4 and level[2] == "0" for level in entry["bids"] + entry["asks"])
        assert all(
            (level[1] == "0") == (level[3] == "0") for level in entry["bids"] + entry["asks"]
        )
    assert entries[-1]["seqId"] == 1000 + 2 * 59 == venue.sequence


async def test_okx_without_snapshots_syncs_from_rest_with_the_seqid_bridge(
    autojump_clock: trio.testing.MockClock,
) -> None:
    okx = FakeOkx(book_snapshots=False)
    frames: list[dict[str, Any]] = []
    with trio.fail_after(DEADLINE):
        async with (
            open_fake_exchange(name="okx", transport="memory", interval=1.0, handler=okx) as fake,
            _client(fake, "/ws") as ws,
        ):
            await ws.send_message(
                '{"op":"subscribe","args":[{"channel":"books","instId":"ETH-USDT"}]}'
            )
            assert msgspec.json.decode(await ws.get_message())["event"] == "subscribe"
            frames.append(msgspec.json.decode(await ws.get_message()))
            assert trio.current_time() == 1.0  # nothing between the ack and the update
            while len(frames) < 6:
                frames.append(msgspec.json.decode(await ws.get_message()))
            # The REST snapshot now: the book as the fake's updates left it.
            rest = okx.books_body("ETH-USDT", 400)
            while len(frames) < 12:
                frames.append(msgspec.json.decode(await ws.get_message()))
    venue = okx.venue_book("ETH-USDT")
    assert [f["action"] for f in frames] == ["update"] * 12
    entries = [f["data"][0] for f in frames]
    assert (entries[0]["prevSeqId"], entries[0]["seqId"]) == (1000, 1002)
    assert all(e["checksum"] == 0 for e in entries)  # as OKX does since 2026-06-23
    snapshot = rest["data"][0]
    assert (rest["code"], snapshot["seqId"]) == ("0", 1012)
    book = OrderBook()
    book.load(decimals(snapshot["bids"]), decimals(snapshot["asks"]))
    later = [e for e in entries if e["seqId"] > snapshot["seqId"]]
    assert later[0]["prevSeqId"] <= snapshot["seqId"] < later[0]["seqId"]  # the bridge
    for entry in later:
        book.apply(decimals(entry["bids"]), decimals(entry["asks"]))
    assert as_sent(book) == venue.at(later[-1]["seqId"]) == venue.snapshot()


async def test_two_sessions_see_one_book(autojump_clock: trio.testing.MockClock) -> None:
    """Sessions of one fake share the venue book: the same ids carry the same changes."""
    binance = FakeBinance()
    got: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(
            name="binance", transport="memory", interval=1.0, handler=binance
        ) as fake:

            async def session(index: int) -> None:
                async with _client(fake, "/stream") as ws:
                    await ws.send_message(
                        '{"method":"SUBSCRIBE","params":["ethusdt@depth@100ms"],"id":1}'
                    )
                    await ws.get_message()
                    while len(got[index]) < 10:
                        got[index].append(msgspec.json.decode(await ws.get_message())["data"])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(session, 0)
                await trio.sleep(3.5)  # the fake's clock: the second session joins later
                nursery.start_soon(session, 1)
    first = {d["u"]: (d["b"], d["a"]) for d in got[0]}
    second = {d["u"]: (d["b"], d["a"]) for d in got[1]}
    shared = sorted(first.keys() & second.keys())
    # The second session joins where the venue's ids stand and shares every later diff.
    assert min(second) > min(first) and len(shared) >= 5
    assert shared == [u for u in sorted(second) if u <= max(first)]
    assert all(first[u] == second[u] for u in shared)
    for diffs in got.values():
        assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(diffs))


async def test_deribit_snapshot_and_changes_rebuild_the_venue_book(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deribit = FakeDeribit()
    channel = "book.BTC-PERPETUAL.100ms"
    books: list[dict[str, Any]] = []
    again: dict[str, Any] = {}

    async def call(ws: trio_websocket.WebSocketConnection, method: str) -> Any:
        await ws.send_message(
            msgspec.json.encode(
                {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"channels": [channel]}}
            ).decode()
        )
        return msgspec.json.decode(await ws.get_message())["result"]

    with trio.fail_after(DEADLINE):
        async with (
            open_fake_exchange(
                name="deribit", transport="memory", interval=1.0, handler=deribit
            ) as fake,
            _client(fake, "/ws") as ws,
        ):
            assert await call(ws, "public/subscribe") == [channel]
            while len(books) < 30:
                books.append(msgspec.json.decode(await ws.get_message())["params"]["data"])
            assert await call(ws, "public/unsubscribe") == [channel]
            for _ in range(3):  # the book moves on while nobody watches it ...
                deribit.venue_book("BTC-PERPETUAL").step()
            assert await call(ws, "public/subscribe") == [channel]
            again = msgspec.json.decode(await ws.get_message())["params"]["data"]
    venue = deribit.venue_book("BTC-PERPETUAL")
    assert [b["type"] for b in books] == ["snapshot"] + ["change"] * 29
    assert (books[0]["prev_change_id"], books[0]["change_id"]) == (None, 133_112_427_566)
    book = OrderBook()
    book.load(
        [(Decimal(str(p)), Decimal(str(a))) for _, p, a in books[0]["bids"]],
        [(Decimal(str(p)), Decimal(str(a))) for _, p, a in books[0]["asks"]],
    )
    for prev, change in itertools.pairwise(books):
        assert change["prev_change_id"] == prev["change_id"]
        for side, levels in ((book.bids, change["bids"]), (book.asks, change["asks"])):
            for action, price, amount in levels:
                # new: a price the book did not hold; change: one it did; delete: amount 0.
                held = Decimal(str(price)) in side.sizes
                assert action == ("delete" if amount == 0 else "change" if held else "new")
                assert held or action == "new"
        book.apply(
            [(Decimal(str(p)), Decimal(str(a))) for _, p, a in change["bids"]],
            [(Decimal(str(p)), Decimal(str(a))) for _, p, a in change["asks"]],
        )
        state = venue.at(change["change_id"])
        assert state is not None
        assert list(book.iter_bids()) == decimals(state[0])
        assert list(book.iter_asks()) == decimals(state[1])
    # ... and a new subscription starts with the true state as it stands now.
    assert (again["type"], again["change_id"]) == ("snapshot", books[-1]["change_id"] + 3)
    assert again["change_id"] == venue.sequence
    top = venue.snapshot()
    assert [[Decimal(str(p)), Decimal(str(a))] for _, p, a in again["bids"]] == [
        list(level) for level in decimals(top[0])
    ]


async def test_bybit_top_50_snapshot_and_deltas_rebuild_the_venue_books_top(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    topic = "orderbook.50.ETHUSDT"
    frames: list[dict[str, Any]] = []
    with trio.fail_after(DEADLINE):
        async with (
            open_fake_exchange(
                name="bybit", transport="memory", interval=1.0, handler=bybit
            ) as fake,
            _client(fake, "/v5/public/linear", "wss://stream.bybit.com/v5/public/linear") as ws,
        ):
            await ws.send_message(f'{{"op":"subscribe","args":["{topic}","orderbook.1.ETHUSDT"]}}')
            assert msgspec.json.decode(await ws.get_message())["success"] is True
            while len(frames) < 80:
                frame = msgspec.json.decode(await ws.get_message())
                if frame["topic"] == topic:
                    frames.append(frame)
                if len(frames) == 60:
                    bybit.inject_gap(topic)
    venue = bybit.venue_book("linear", "ETHUSDT")
    assert frames[0]["type"] == "snapshot" and frames[0]["data"]["u"] == FIRST_UPDATE_ID
    book = OrderBook()
    book.load(decimals(frames[0]["data"]["b"]), decimals(frames[0]["data"]["a"]))
    gaps = []
    for prev, frame in itertools.pairwise(frames):
        data = frame["data"]
        assert frame["type"] == "delta"
        if data["u"] != prev["data"]["u"] + 1:
            gaps.append((prev["data"]["u"], data["u"]))
            break
        book.apply(decimals(data["b"]), decimals(data["a"]))
        state = venue.at(data["u"])
        assert state is not None
        assert as_sent(book) == (state[0][:50], state[1][:50])  # the venue's top 50
    assert gaps == [(FIRST_UPDATE_ID + 59, FIRST_UPDATE_ID + 61)]  # one delta lost


# -- the REST bodies, over loopback HTTP -------------------------------------------------


async def test_binance_depth_bodies_over_http(autojump_clock: trio.testing.MockClock) -> None:
    spot, usdm = FakeBinance(), FakeBinanceUsdm()
    for _ in range(5):
        spot.venue_book("BTCUSDT").step()
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as spot_rest, open_fake_rest() as usdm_rest:
            spot_rest.serve_books(spot)
            usdm_rest.serve_books(usdm)
            spot_rest.weigh({"/api/v3/depth": 5}, limit=20)
            async with _http(spot_rest) as http:
                five = (await http.get("/api/v3/depth?symbol=BTCUSDT&limit=5")).json()
                whole = (await http.get("/api/v3/depth?symbol=BTCUSDT")).json()
                unknown = await http.get("/api/v3/depth?symbol=btcusdt")
                spot.snapshot_lag = 2
                stale = (await http.get("/api/v3/depth?symbol=BTCUSDT&limit=1000")).json()
                over = await http.get("/api/v3/depth?symbol=BTCUSDT")
            async with _http(usdm_rest) as http:
                await trio.sleep(0.5)
                futures = (await http.get("/fapi/v1/depth?symbol=ETHUSDT&limit=5")).json()
                bad_limit = await http.get("/fapi/v1/depth?symbol=ETHUSDT&limit=7")
    venue = spot.venue_book("BTCUSDT")
    assert venue.sequence == 10_000_015
    assert five == {
        "lastUpdateId": 10_000_015,
        "bids": venue.snapshot(5)[0],
        "asks": venue.snapshot(5)[1],
    }
    assert len(five["bids"]) == len(five["asks"]) == 5
    assert whole["lastUpdateId"] == 10_000_015
    assert [whole["bids"], whole["asks"]] == list(venue.snapshot())
    assert (unknown.status_code, unknown.json()) == (400, {"code": -1121, "msg": "Invalid symbol."})
    older = venue.at(10_000_009)  # two changes (3 ids each) before the head
    assert older is not None
    assert stale == {"lastUpdateId": 10_000_009, "bids": older[0], "asks": older[1]}
    assert over.status_code == 429  # weighed like any other path: 5 x 4 = 20, then over
    assert [(r.path, r.query) for r in spot_rest.requests] == [
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "5"}),
        ("/api/v3/depth", {"symbol": "BTCUSDT"}),
        ("/api/v3/depth", {"symbol": "btcusdt"}),
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "1000"}),
        ("/api/v3/depth", {"symbol": "BTCUSDT"}),
    ]
    now_ms = 1_790_649_900_000 + 500
    eth = usdm.venue_book("ETHUSDT")
    assert futures == {
        "lastUpdateId": 20_000_000,
        "E": now_ms,
        "T": now_ms - 1,
        "bids": eth.snapshot(5)[0],
        "asks": eth.snapshot(5)[1],
    }
    assert list(futures) == ["lastUpdateId", "E", "T", "bids", "asks"]  # the venue's order
    assert re.match(r"^\d+\.\d{2}$", futures["bids"][0][0])
    assert (bad_limit.status_code, bad_limit.json()) == (
        400,
        {"code": -4021, "msg": "7 is not valid depth limit"},
    )


async def test_okx_books_bodies_over_http(autojump_clock: trio.testing.MockClock) -> None:
    okx = FakeOkx()
    venue = okx.venue_book("BTC-USDT")
    for _ in range(3):
        venue.step()
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as rest:
            rest.serve_books(okx)
            async with _http(rest) as http:
                await trio.sleep(2.0)
                two = (await http.get("/api/v5/market/books?instId=BTC-USDT&sz=2")).json()
                one = (await http.get("/api/v5/market/books?instId=BTC-USDT")).json()
                unknown = await http.get("/api/v5/market/books?instId=DOGE-USDT&sz=5")
                okx.snapshot_lag = 1
                stale = (await http.get("/api/v5/market/books?instId=BTC-USDT&sz=400")).json()
    bids, asks = venue.snapshot(2)
    entry = two["data"][0]
    assert (two["code"], two["msg"]) == ("0", "")
    assert list(entry) == ["asks", "bids", "ts", "seqId"]
    assert (entry["seqId"], entry["ts"]) == (1006, str(okx.epoch_ms + 2000))
    assert [level[:2] for level in entry["bids"]] == bids
    assert [level[:2] for level in entry["asks"]] == asks
    assert all(level[2] == "0" and int(level[3]) >= 1 for level in entry["bids"] + entry["asks"])
    assert len(one["data"][0]["bids"]) == 1  # sz defaults to 1
    assert (unknown.status_code, unknown.json()) == (
        200,
        {"code": "51001", "msg": "Instrument ID does not exist", "data": []},
    )
    old = venue.at(1004)
    assert old is not None
    assert stale["data"][0]["seqId"] == 1004
    assert [level[:2] for level in stale["data"][0]["bids"]] == old[0]
    assert [level[:2] for level in stale["data"][0]["asks"]] == old[1]


async def test_serve_path_answers_from_the_query(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as rest:
            rest.serve_path("/echo", lambda query: {"got": query})
            rest.serve_path("/teapot", lambda query: Reply(status=418, body={"n": query["n"]}))
            async with _http(rest) as http:
                echo = await http.get("/echo?a=1&b=two")
                teapot = await http.get("/teapot?n=3")
                rest.route("/echo", Reply(status=503))  # a standing route goes first
                routed = await http.get("/echo?a=1")
    assert (echo.status_code, echo.json()) == (200, {"got": {"a": "1", "b": "two"}})
    assert (teapot.status_code, teapot.json()) == (418, {"n": "3"})
    assert routed.status_code == 503
    assert rest.statuses == [200, 418, 503]
    assert echo.headers["Date"] == f"{DEFAULT_EPOCH:%a, %d %b %Y %H:%M:%S} GMT"
