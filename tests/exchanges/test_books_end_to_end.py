"""Local books end to end: the supervisor against the fake venues, a consumer rebuilding
each book from what it is delivered.

Every test checks the documented guarantee (docs/books.md) message by message: a
``BookSnapshot`` starts a chain, each ``BookDelta`` continues it (``prev_sequence`` is the
sequence before it), a ``BookInvalid`` ends it; and whenever the consumer's book is at
the sequence ``sup.book()`` shows, the two hold the same levels.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
import trio
import trio.testing

from actors.exchanges.messages import BookDelta, BookInvalid, BookSnapshot, BookTop, Message
from actors.exchanges.sdk.orderbook import OrderBook
from exchanges.helpers import Dialer, exchange_config, okx_config
from supervisor import BookView, Config, Supervisor, open_supervisor
from supervisor.testing import FakeExchange, open_fake_exchange
from supervisor.testing.fakes.binance import FakeBinance, FakeBinanceUsdm
from supervisor.testing.fakes.bybit import FakeBybit
from supervisor.testing.fakes.deribit import FakeDeribit
from supervisor.testing.fakes.okx import FakeOkx
from supervisor.testing.fakes.rest import DEFAULT_EPOCH, FakeRest, Reply, open_fake_rest
from supervisor.testing.fakes.venue_book import VenueBook


class Rebuilt:
    """One consumer's books, built only from delivered messages, checking the chain."""

    def __init__(
        self,
        sup: Supervisor,
        connection: str,
        venue: Callable[[str], VenueBook] | None = None,
    ) -> None:
        self.sup = sup
        self.connection = connection
        #: The fake venue's true book of a symbol: ours must equal it at every sequence.
        self.venue = venue
        #: Per symbol, the sequences at which ours was compared with the venue's.
        self.matched: dict[str, int] = {}
        self.books: dict[str, OrderBook] = {}
        self.sequence: dict[str, int | None] = {}
        #: Per symbol, what arrived: ``snapshot``, ``delta``, ``invalid: REASON``.
        self.seen: dict[str, list[str]] = {}
        #: Times the consumer's book was compared with the view at the same sequence.
        self.compared = 0

    def take(self, message: Message) -> str | None:
        """Apply one message; return its symbol if it was a book message."""
        if isinstance(message, BookSnapshot):
            symbol = message.symbol
            book = self.books[symbol] = OrderBook()
            book.load(message.bids, message.asks)
            self.sequence[symbol] = message.sequence
            self.seen.setdefault(symbol, []).append("snapshot")
        elif isinstance(message, BookDelta):
            symbol = message.symbol
            assert symbol in self.books, f"a delta of {symbol} before any snapshot"
            assert message.prev_sequence == self.sequence[symbol], (
                f"{symbol}: delta {message.prev_sequence}->{message.sequence} does not "
                f"continue {self.sequence[symbol]}"
            )
            self.books[symbol].apply(message.bids, message.asks)
            self.sequence[symbol] = message.sequence
            self.seen.setdefault(symbol, []).append("delta")
        elif isinstance(message, BookInvalid):
            symbol = message.symbol
            self.books.pop(symbol, None)
            self.sequence.pop(symbol, None)
            self.seen.setdefault(symbol, []).append(f"invalid: {message.reason}")
        else:
            return None
        self.check(symbol)
        if self.venue is not None and symbol in self.books:
            ours = self.books[symbol].top()
            assert ours == venue_levels(self.venue(symbol), self.sequence[symbol])
            self.matched[symbol] = self.matched.get(symbol, 0) + 1
        return symbol

    def check(self, symbol: str) -> None:
        view: BookView = self.sup.book(self.connection, symbol)
        book = self.books.get(symbol)
        if book is None or not view.valid or view.sequence != self.sequence[symbol]:
            return  # the view is ahead of (or resyncing after) what we were delivered
        assert book.top() == (tuple(view.bids()), tuple(view.asks()))
        self.compared += 1


@asynccontextmanager
async def deribit_fake() -> AsyncIterator[tuple[FakeExchange, FakeDeribit]]:
    deribit = FakeDeribit()
    async with open_fake_exchange(
        name="deribit", transport="memory", handler=deribit, interval=1.0
    ) as exchange:
        yield exchange, deribit


def deribit_config(**connection: Any) -> Config:
    return exchange_config(d={"exchange": "deribit", "stale_after": 60.0, **connection})


async def test_deribit_a_gap_resyncs_that_book_only_by_subscribing_it_again(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "marketprism")
    config = deribit_config(channels=["book"], symbols=["BTC-USD-PERP", "ETH-USD-PERP"])
    async with deribit_fake() as (exchange, deribit):
        with trio.fail_after(30):
            async with open_supervisor(config, connector=Dialer(exchange)) as sup:
                rebuilt = Rebuilt(sup, "d")
                injected = False
                async for message in sup.messages():
                    symbol = rebuilt.take(message)
                    seen = rebuilt.seen.get("BTC-USD-PERP", [])
                    if symbol == "BTC-USD-PERP" and seen == ["snapshot", "delta"]:
                        assert deribit.inject_gap("BTC-PERPETUAL") == 1
                        injected = True
                    if injected and seen.count("snapshot") == 2 and seen[-1] == "delta":
                        break
                stats = (await sup.stats()).connections[0]
    btc, eth = rebuilt.seen["BTC-USD-PERP"], rebuilt.seen["ETH-USD-PERP"]
    invalid = [entry for entry in btc if entry.startswith("invalid")]
    assert len(invalid) == 1 and invalid[0].startswith("invalid: sequence gap: update ")
    assert btc[: btc.index(invalid[0])] == ["snapshot", "delta", "delta"][: btc.index(invalid[0])]
    assert btc[btc.index(invalid[0]) + 1] == "snapshot"  # nothing of BTC until it resynced
    # ETH went on untouched: one snapshot, then deltas only.
    assert eth[0] == "snapshot" and set(eth[1:]) == {"delta"}
    # The one gapped book was subscribed again, on the same session.
    assert len(exchange.sessions) == 1
    subscribes = [topics for _, topics in deribit.sessions[0].subscribes]
    assert subscribes[-1] == ("book.BTC-PERPETUAL.100ms",)
    assert stats.books["BTC-USD-PERP"].resyncs == 1
    assert stats.books["BTC-USD-PERP"].state == "valid"
    assert stats.books["ETH-USD-PERP"].resyncs == 0
    assert (stats.gaps, stats.restarts) == (1, 0)
    assert rebuilt.compared >= 4
    lines = [r.getMessage() for r in caplog.records if r.name == "marketprism.connection"]
    reason = invalid[0].removeprefix("invalid: ")
    assert f"d: book BTC-USD-PERP invalid ({reason}); subscribing its stream again" in lines
    (resynced,) = [line for line in lines if "resynced" in line]
    assert resynced.startswith("d: book BTC-USD-PERP resynced at ")


async def test_bybit_a_reconnect_resyncs_every_book_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    config = exchange_config(
        spot={"exchange": "bybit", "channels": ["book"], "symbols": ["BTC-USDT", "ETH-USDT"]}
    )
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=1.0, handler=bybit
    ) as exchange:
        with trio.fail_after(30):
            async with open_supervisor(config, connector=exchange.connect) as sup:
                rebuilt = Rebuilt(sup, "spot")
                closed = False
                async for message in sup.messages():
                    rebuilt.take(message)
                    seen = rebuilt.seen
                    two_each = len(seen) == 2 and all(s.count("delta") >= 2 for s in seen.values())
                    if not closed and two_each:
                        await exchange.close(1011, "restart")
                        closed = True
                    if closed and all(
                        s.count("snapshot") == 2 and s[-1] == "delta" for s in seen.values()
                    ):
                        break
                stats = (await sup.stats()).connections[0]
    for symbol in ("BTC-USDT", "ETH-USDT"):
        seen = rebuilt.seen[symbol]
        lost = seen.index("invalid: the connection was lost")
        assert seen[lost + 1] == "snapshot"
        assert seen.count("invalid: the connection was lost") == 1
        assert stats.books[symbol].resyncs == 0  # a loss is not a doubt in the book
        assert stats.books[symbol].snapshots == 2
    assert stats.connects == 2


async def test_book_top_conflates_for_a_slow_consumer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = deribit_config(channels=["book"], symbols=["BTC-USD-PERP", "ETH-USD-PERP"], book_top=2)
    async with deribit_fake() as (exchange, _):
        with trio.fail_after(60):
            async with open_supervisor(config, connector=Dialer(exchange)) as sup:
                await trio.sleep_until(20.5)  # 20 changes of each book, nothing read
                stats = (await sup.stats()).connections[0]
                got: list[BookTop] = []
                batches = sup.batches()
                while True:
                    with trio.move_on_after(0.1):
                        (top,) = await batches.receive()
                        assert isinstance(top, BookTop)
                        got.append(top)
                        continue
                    break
                views = {s: sup.book("d", s) for s in ("BTC-USD-PERP", "ETH-USD-PERP")}
                now = {
                    s: (v.sequence, tuple(v.bids(2)), tuple(v.asks(2))) for s, v in views.items()
                }
    # Two queued tops, one per symbol, each the book as it is now, and nothing else:
    # no batch waits outside the queue.
    assert stats.queue_depth == 2
    assert len(got) == 2
    assert sorted(top.symbol for top in got) == ["BTC-USD-PERP", "ETH-USD-PERP"]
    newest = {top.symbol: top for top in got}
    for symbol, (sequence, bids, asks) in now.items():
        top = newest[symbol]
        assert (top.sequence, top.bids, top.asks) == (sequence, bids, asks)
        assert len(top.bids) == 2 and 1 <= len(top.asks) <= 2
    assert stats.dropped == 0  # replaced, not dropped


async def test_book_top_at_most_once_per_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = deribit_config(
        channels=["book"], symbols=["BTC-USD-PERP"], book_top=1, book_interval=2.5
    )
    async with deribit_fake() as (exchange, _):
        with trio.fail_after(60):
            async with open_supervisor(config, connector=Dialer(exchange)) as sup:
                times: list[float] = []
                async for message in sup.messages():
                    assert isinstance(message, BookTop)
                    times.append(trio.current_time())
                    if len(times) == 4:
                        break
    # The book changes every second (snapshot at 1): tops at 1, then every 2.5 s.
    assert times == [1.0, 3.5, 6.0, 8.5]


# -- venues whose stream has no snapshot: REST ---------------------------------------------


def venue_levels(book: VenueBook, sequence: int | None) -> tuple[tuple[Any, ...], ...]:
    """The venue's book at ``sequence`` as our views show it (Decimals, best first)."""
    assert sequence is not None
    levels = book.at(sequence)
    assert levels is not None, f"the fake no longer remembers {sequence}"
    bids, asks = levels
    return (
        tuple((Decimal(p), Decimal(s)) for p, s in bids),
        tuple((Decimal(p), Decimal(s)) for p, s in asks),
    )


def wall() -> float:
    return DEFAULT_EPOCH.timestamp() + trio.current_time()


@asynccontextmanager
async def with_rest(
    handler: FakeBinance | FakeOkx, venue: str, natives: list[str]
) -> AsyncIterator[tuple[FakeExchange, FakeRest]]:
    """The fake venue on the memory transport (data every second), and its REST API
    (server time, instruments, book snapshots from the same books)."""
    async with (
        open_fake_exchange(name=venue, transport="memory", interval=1.0, handler=handler) as fake,
        open_fake_rest() as rest,
    ):
        rest.serve_venue(venue, natives)
        rest.serve_books(handler)
        yield fake, rest


def rest_config(rest: FakeRest, name: str, exchange: str, url: str, **keys: Any) -> Config:
    """One connection ``name`` with the book channel, its REST API at ``rest``."""
    table = {"exchange": exchange, "url": url, "channels": ["book"], **keys}
    return exchange_config(**{name: {**table, "rest": {"base_url": rest.url}}})


def binance_config(rest: FakeRest, symbols: list[str], **keys: Any) -> Config:
    return rest_config(rest, "b", "binance", BINANCE_URL, symbols=symbols, **keys)


def native(symbol: str) -> str:
    """BTC-USDT (or BTC-USDT-PERP) -> BTCUSDT."""
    return "".join(symbol.split("-")[:2])


BINANCE_URL = "ws://binance.fake.invalid/stream"


async def test_binance_syncs_from_rest_resyncs_one_book_after_a_gap_and_matches_the_venue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    binance = FakeBinance()
    async with with_rest(binance, "binance", ["BTCUSDT", "ETHUSDT"]) as (fake, rest):
        config = binance_config(rest, ["BTC-USDT", "ETH-USDT"], book_depth=100)
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect, wall_clock=wall) as sup:
                rebuilt = Rebuilt(sup, "b", lambda s: binance.venue_book(native(s)))
                gapped = False
                async for message in sup.messages():
                    rebuilt.take(message)
                    seen = rebuilt.seen.get("BTC-USDT", [])
                    if not gapped and seen.count("delta") == 2:
                        binance.inject_gap("BTCUSDT")
                        gapped = True
                    if gapped and seen.count("snapshot") == 2 and seen[-1] == "delta":
                        break
                stats = (await sup.stats()).connections[0]
    btc, eth = rebuilt.seen["BTC-USDT"], rebuilt.seen["ETH-USDT"]
    (invalid,) = [entry for entry in btc if entry.startswith("invalid")]
    assert invalid.startswith("invalid: sequence gap: update ")
    assert btc[btc.index(invalid) + 1] == "snapshot"
    assert eth[0] == "snapshot" and set(eth[1:]) == {"delta"}
    depth = [r for r in rest.requests if r.path == "/api/v3/depth"]
    # One snapshot per book at the start, one more for the gapped book only.
    assert sorted(r.query["symbol"] for r in depth) == ["BTCUSDT", "BTCUSDT", "ETHUSDT"]
    assert {r.query["limit"] for r in depth} == {"100"}
    assert (stats.books["BTC-USDT"].resyncs, stats.books["ETH-USDT"].resyncs) == (1, 0)
    assert stats.books["BTC-USDT"].snapshots == 2
    assert min(rebuilt.matched["BTC-USDT"], rebuilt.matched["ETH-USDT"]) >= 3
    assert len(fake.sessions) == 1


async def test_binance_a_snapshot_older_than_the_stream_is_fetched_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    binance = FakeBinance()
    async with with_rest(binance, "binance", ["BTCUSDT"]) as (fake, rest):
        # The first answer is older than anything the stream will send (a lagging
        # replica): lastUpdateId below the first diff's U - 1.
        stale = binance.depth_body("BTCUSDT", 1000)
        older = {**stale, "lastUpdateId": stale["lastUpdateId"] - 9}
        rest.script("/api/v3/depth", Reply(body=older))
        with trio.fail_after(60):
            config = binance_config(rest, ["BTC-USDT"])
            async with open_supervisor(config, connector=fake.connect, wall_clock=wall) as sup:
                rebuilt = Rebuilt(sup, "b", lambda s: binance.venue_book(native(s)))
                async for message in sup.messages():
                    rebuilt.take(message)
                    if rebuilt.seen.get("BTC-USDT", [])[-1:] == ["delta"]:
                        break
                stats = (await sup.stats()).connections[0]
    depth = [r.at for r in rest.requests if r.path == "/api/v3/depth"]
    # Asked once the first diff was buffered (t=1), and at once again when the answer
    # was too old to bridge it; that is no doubt in the book, nothing was delivered.
    assert depth == [1.0, 1.0]
    assert rebuilt.seen["BTC-USDT"][:2] == ["snapshot", "delta"]
    assert (stats.books["BTC-USDT"].resyncs, stats.books["BTC-USDT"].snapshots) == (0, 1)


async def test_okx_with_real_checksums_verifies_each_and_resyncs_a_gap_by_resubscribing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    okx = FakeOkx(checksums=True)
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=okx
    ) as fake:
        config = okx_config(channels=["book"], symbols=["BTC-USDT", "ETH-USDT"])
        checksums = 0
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect) as sup:
                rebuilt = Rebuilt(sup, "okx", okx.venue_book)
                gapped = False
                async for message in sup.messages():
                    if isinstance(message, BookDelta | BookSnapshot) and message.checksum:
                        checksums += 1
                    rebuilt.take(message)
                    seen = rebuilt.seen.get("BTC-USDT", [])
                    if not gapped and seen.count("delta") == 2:
                        okx.inject_gap("BTC-USDT")
                        gapped = True
                    if gapped and seen.count("snapshot") == 2 and seen[-1] == "delta":
                        break
                stats = (await sup.stats()).connections[0]
    btc = rebuilt.seen["BTC-USDT"]
    (invalid,) = [entry for entry in btc if entry.startswith("invalid")]
    assert invalid.startswith("invalid: sequence gap: update ")
    assert btc[btc.index(invalid) + 1] == "snapshot"
    # Every message carried a non-zero checksum and every one matched (a mismatch is
    # a doubt, and there was exactly one: the gap).
    assert checksums >= 6
    assert (stats.books["BTC-USDT"].resyncs, stats.books["ETH-USDT"].resyncs) == (1, 0)
    assert len(fake.sessions) == 1


async def test_okx_without_a_stream_snapshot_syncs_from_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    okx = FakeOkx(book_snapshots=False)
    async with with_rest(okx, "okx", ["BTC-USDT"]) as (fake, rest):
        url = "ws://okx.fake.invalid/ws/v5/public"
        config = rest_config(rest, "okx", "okx", url, symbols=["BTC-USDT"])
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect, wall_clock=wall) as sup:
                rebuilt = Rebuilt(sup, "okx", okx.venue_book)
                async for message in sup.messages():
                    rebuilt.take(message)
                    if rebuilt.seen.get("BTC-USDT", []).count("delta") == 3:
                        break
                stats = (await sup.stats()).connections[0]
    books = [r for r in rest.requests if r.path == "/api/v5/market/books"]
    assert [(r.query["instId"], r.query["sz"], r.query["source"]) for r in books] == [
        ("BTC-USDT", "400", "0")
    ]
    assert rebuilt.seen["BTC-USDT"] == ["snapshot", "delta", "delta", "delta"]
    assert (stats.books["BTC-USDT"].state, stats.books["BTC-USDT"].resyncs) == ("valid", 0)


async def test_a_reconnect_resyncs_every_binance_book_once_within_the_weight_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    natives = [f"C{i:02d}USDT" for i in range(30)]
    binance = FakeBinance(symbols=natives)
    async with with_rest(binance, "binance", natives) as (fake, rest):
        # The venue's own budget: 6,000 weight per minute; a 5,000-level depth weighs 250.
        rest.weigh({"/api/v3/depth": 250, "/api/v3/exchangeInfo": 20}, limit=6000)
        config = binance_config(rest, natives, book_depth=5000)

        async def all_valid(sup: Supervisor, count: int) -> float:
            while True:
                stats = (await sup.stats()).connections[0]
                books = stats.books.values()
                if all(b.state == "valid" and b.snapshots == count for b in books):
                    return trio.current_time()
                await trio.sleep(0.5)

        async def consume(sup: Supervisor) -> None:
            async for _ in sup.messages():
                pass

        with trio.fail_after(600):
            async with (
                open_supervisor(config, connector=fake.connect, wall_clock=wall) as sup,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(consume, sup)
                first = await all_valid(sup, 1)
                await fake.close(1011, "restart")
                second = await all_valid(sup, 2)
                stats = (await sup.stats()).connections[0]
                nursery.cancel_scope.cancel()
    assert 429 not in rest.statuses and 418 not in rest.statuses
    depth = [r.at for r in rest.requests if r.path == "/api/v3/depth"]
    assert len(depth) == 60  # each book once at the start and once after the reconnect
    # 23 fit the first minute beside /time (1) and /exchangeInfo (20); the rest waited
    # for the next minute instead of being refused.
    assert depth[:23] == [1.0] * 23 and min(depth[23:30]) == 60.0
    assert 60.0 <= first < 62.0
    assert second > first
    assert all(book.resyncs == 0 for book in stats.books.values())  # losses, no doubts
    assert stats.connects == 2


async def test_a_make_before_break_handover_keeps_the_binance_book_without_a_resync(
    autojump_clock: trio.testing.MockClock,
) -> None:
    binance = FakeBinance()
    async with with_rest(binance, "binance", ["BTCUSDT"]) as (fake, rest):
        config = binance_config(rest, ["BTC-USDT"])
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect, wall_clock=wall) as sup:
                rebuilt = Rebuilt(sup, "b", lambda s: binance.venue_book(native(s)))
                noticed = False
                async for message in sup.messages():
                    rebuilt.take(message)
                    seen = rebuilt.seen.get("BTC-USDT", [])
                    if not noticed and seen.count("delta") == 2:
                        await binance.server_shutdown()
                        noticed = True
                    switched = len(fake.sessions) == 2 and not fake.sessions[0].open
                    if noticed and switched and seen.count("delta") >= 8:
                        break
                stats = (await sup.stats()).connections[0]
    # The successor took over and the one book went on: one snapshot, deltas only, no
    # BookInvalid, no second REST snapshot.
    assert rebuilt.seen["BTC-USDT"][0] == "snapshot"
    assert set(rebuilt.seen["BTC-USDT"][1:]) == {"delta"}
    assert [r.query["symbol"] for r in rest.requests if r.path == "/api/v3/depth"] == ["BTCUSDT"]
    assert (stats.books["BTC-USDT"].resyncs, stats.books["BTC-USDT"].snapshots) == (0, 1)
    assert (stats.restarts, stats.connects) == (0, 2)


async def test_an_okx_handover_restarts_the_chain_from_the_successors_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    okx = FakeOkx()
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=okx
    ) as fake:
        config = okx_config(channels=["book"], symbols=["BTC-USDT"])
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect) as sup:
                rebuilt = Rebuilt(sup, "okx", okx.venue_book)
                noticed = False
                async for message in sup.messages():
                    rebuilt.take(message)
                    seen = rebuilt.seen.get("BTC-USDT", [])
                    if not noticed and seen.count("delta") == 2:
                        await okx.notice()
                        noticed = True
                    switched = len(fake.sessions) == 2 and not fake.sessions[0].open
                    if noticed and switched and seen[-3:] == ["delta"] * 3:
                        break
                stats = (await sup.stats()).connections[0]
    seen = rebuilt.seen["BTC-USDT"]
    # No BookInvalid: the successor's own snapshot starts a new chain where the old
    # session's ended.
    assert not [entry for entry in seen if entry.startswith("invalid")]
    assert seen.count("snapshot") == 2
    assert stats.books["BTC-USDT"].resyncs == 0
    assert stats.restarts == 0


async def test_binance_usdm_bridges_its_rest_snapshot_on_pu(
    autojump_clock: trio.testing.MockClock,
) -> None:
    binance = FakeBinanceUsdm()
    async with with_rest(binance, "binance_usdm", ["BTCUSDT"]) as (fake, rest):
        url = "ws://fstream.fake.invalid/public/stream"
        symbols = ["BTC-USDT-PERP"]
        config = rest_config(rest, "f", "binance_usdm", url, symbols=symbols, book_depth=200)
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect, wall_clock=wall) as sup:
                rebuilt = Rebuilt(sup, "f", lambda s: binance.venue_book(native(s)))
                async for message in sup.messages():
                    rebuilt.take(message)
                    if rebuilt.seen.get("BTC-USDT-PERP", []).count("delta") == 4:
                        break
    (depth,) = [r for r in rest.requests if r.path == "/fapi/v1/depth"]
    # 200 levels are not a limit USD-M takes: the next one that holds them is asked for.
    assert (depth.query["symbol"], depth.query["limit"]) == ("BTCUSDT", "500")
    assert rebuilt.seen["BTC-USDT-PERP"] == ["snapshot"] + ["delta"] * 4


async def test_a_valid_binance_book_is_refreshed_from_rest_and_stays_delivered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    binance = FakeBinance()
    async with with_rest(binance, "binance", ["BTCUSDT"]) as (fake, rest):
        config = binance_config(rest, ["BTC-USDT"], book_refresh=5.0)
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect, wall_clock=wall) as sup:
                rebuilt = Rebuilt(sup, "b", lambda s: binance.venue_book(native(s)))
                async for message in sup.messages():
                    rebuilt.take(message)
                    if trio.current_time() >= 12.0:
                        break
                stats = (await sup.stats()).connections[0]
    depth = [r.at for r in rest.requests if r.path == "/api/v3/depth"]
    # Synced at 1 (the first diff buffered), refreshed 5 s after each sync.
    assert depth == [1.0, 6.0, 11.0]
    seen = rebuilt.seen["BTC-USDT"]
    assert seen.count("snapshot") == 3 and not [e for e in seen if e.startswith("invalid")]
    assert (stats.books["BTC-USDT"].resyncs, stats.books["BTC-USDT"].snapshots) == (0, 3)


async def test_okx_without_a_snapshot_and_without_rest_says_so_once_and_stays_syncing(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    okx = FakeOkx(book_snapshots=False)
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=okx
    ) as fake:
        # Off the venue's domain and no rest.base_url: no REST API at all.
        config = okx_config(url="ws://okx.fake.invalid/ws", channels=["book"], symbols=["BTC-USDT"])
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await trio.sleep(10)
                stats = (await sup.stats()).connections[0]
    assert stats.books["BTC-USDT"].state == "syncing"
    lines = [r.getMessage() for r in caplog.records if "needs a REST snapshot" in r.getMessage()]
    assert lines == [
        "okx: book BTC-USDT needs a REST snapshot (the stream sent none) and the connection "
        "has no REST API: it stays syncing (set [connections.okx.rest] base_url)"
    ]


async def test_binance_book_subscribed_and_dropped_at_run_time_matches_the_venue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The connection starts with trades only; the book channel comes at run time, is
    # synced from REST like one configured at start, and goes again with its book.
    binance = FakeBinance()
    async with with_rest(binance, "binance", ["BTCUSDT"]) as (fake, rest):
        config = binance_config(rest, ["BTC-USDT"], channels=["trades"])
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect, wall_clock=wall) as sup:
                rebuilt = Rebuilt(sup, "b", lambda s: binance.venue_book(native(s)))
                stream = sup.messages()
                await stream.__anext__()
                await sup.subscribe("b", channels=["book"])
                async for message in stream:
                    rebuilt.take(message)
                    if rebuilt.seen.get("BTC-USDT", []).count("delta") == 3:
                        break
                await sup.unsubscribe("b", channels=["book"])
                later: list[Message] = []
                with trio.move_on_after(3):
                    async for message in stream:
                        later.append(message)
                stats = (await sup.stats()).connections[0]
    assert rebuilt.seen["BTC-USDT"] == ["snapshot", "delta", "delta", "delta"]
    books = [m for m in later if isinstance(m, BookSnapshot | BookDelta | BookInvalid)]
    assert len(books) == 1  # nothing of the book after its end
    (end,) = books
    assert isinstance(end, BookInvalid)
    assert (end.reason, end.sequence) == ("unsubscribed", rebuilt.sequence["BTC-USDT"])
    assert {type(m).__name__ for m in later} == {"Trade", "BookInvalid"}
    assert rebuilt.matched["BTC-USDT"] >= 3
    assert [r.query["symbol"] for r in rest.requests if r.path == "/api/v3/depth"] == ["BTCUSDT"]
    assert (stats.books, stats.subscriptions) == ({}, {"btcusdt@trade": "live"})
    assert len(fake.sessions) == 1
