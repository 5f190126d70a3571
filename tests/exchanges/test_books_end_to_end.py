"""Local books end to end: the supervisor against the fake venues, a consumer rebuilding
each book from what it is delivered.

Every test checks the documented guarantee (docs/books.md) message by message: a
``BookSnapshot`` starts a chain, each ``BookDelta`` continues it (``prev_sequence`` is the
sequence before it), a ``BookInvalid`` ends it; and whenever the consumer's book is at
the sequence ``sup.book()`` shows, the two hold the same levels.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from actors.exchanges.messages import BookDelta, BookInvalid, BookSnapshot, BookTop, Message
from actors.exchanges.sdk.orderbook import OrderBook
from exchanges.helpers import Dialer, exchange_config
from supervisor import BookView, Config, Supervisor, open_supervisor
from supervisor.testing import FakeExchange, open_fake_exchange
from supervisor.testing.fakes.bybit import FakeBybit
from supervisor.testing.fakes.deribit import FakeDeribit


class Rebuilt:
    """One consumer's books, built only from delivered messages, checking the chain."""

    def __init__(self, sup: Supervisor, connection: str) -> None:
        self.sup = sup
        self.connection = connection
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
    # Two queued tops, one per symbol, each the book as it is now; before them only the
    # one batch the forwarder had taken before the consumer stalled.
    assert stats.queue_depth == 2
    # The forwarder's batch (the first top it took) and one top per symbol.
    assert len(got) == 3
    assert sorted(top.symbol for top in got[1:]) == ["BTC-USD-PERP", "ETH-USD-PERP"]
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
