"""Bybit end to end: the supervisor against :class:`FakeBybit` over in-memory streams on
MockClock, with exact virtual times.

FakeBybit data (``interval`` 1 s): symbol ``k`` (0-based) of a category's list has base
price ``10_000 * (k + 1)``. Every second after a session's first subscription, each
subscribed topic gets one frame, in subscription order; ``orderbook`` and ``tickers``
topics also send a frame right after the ack. Trade ``n`` of a symbol (counted across
sessions) has price ``{base + n}.50``, side Buy for even ``n``, id ``FIRST_TRADE_ID + n``
on spot and a UUID ending in ``n`` on linear. A book's first ``u`` is ``FIRST_UPDATE_ID`` and
rises by 1 per frame; depth 1 sends a snapshot every time. The levels are the fake's true
book (``FakeBybit.venue_book``): a snapshot is its top levels at ``u``, a delta the change
of those levels from ``u - 1``. ``ts`` is
``DEFAULT_EPOCH_MS + 1000 t`` and a trade's ``T`` is 1 ms earlier.
"""

from __future__ import annotations

import logging
import math
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from actors.exchanges.messages import BookDelta, BookSnapshot, Message, RawMessage, Ticker, Trade
from exchanges.helpers import Dialer, bare, bybit_subscribe, exchange_config, levels
from supervisor import open_supervisor
from supervisor.testing import FakeBybit, FakeExchange, open_fake_exchange
from supervisor.testing.fakes.bybit import (
    DEFAULT_EPOCH_MS,
    FIRST_TRADE_ID,
    FIRST_UPDATE_ID,
    Category,
)

D = Decimal
SPOT_URL = "wss://stream.bybit.com/v5/public/spot"
LINEAR_URL = "wss://stream.bybit.com/v5/public/linear"
PING = '{"op":"ping"}'
DETAIL = "no frame within 20 s of our ping (Bybit answers ping with pong)"
#: 25 spot symbols: C00-USDT ... C24-USDT.
SYMBOLS_25 = [f"C{i:02d}-USDT" for i in range(25)]
TOPICS_25 = [f"publicTrade.C{i:02d}USDT" for i in range(25)]
EPOCH = DEFAULT_EPOCH_MS


def common(connection: str, exchange: str, symbol: str) -> dict[str, Any]:
    return {"connection": connection, "exchange": exchange, "received_at": 0.0, "symbol": symbol}


def venue_top(
    bybit: FakeBybit, category: Category, native: str, u: int, depth: int
) -> tuple[list[list[str]], list[list[str]]]:
    """The venue book's top ``depth`` levels a side at ``u`` (the fake's true book)."""
    state = bybit.venue_book(category, native).at(u)
    assert state is not None
    return state[0][:depth], state[1][:depth]


def e2e_top(
    who: dict[str, Any], bybit: FakeBybit, category: Category, native: str, u: int, at: float
) -> Ticker:
    """The fake's orderbook.1 frame with ``u`` at ``at``: the venue book's best levels."""
    (bid,), (ask,) = venue_top(bybit, category, native, u, 1)
    return Ticker(
        **who,
        bid=D(bid[0]),
        bid_size=D(bid[1]),
        ask=D(ask[0]),
        ask_size=D(ask[1]),
        timestamp=EPOCH + int(at * 1000),
    )


def e2e_snapshot(
    who: dict[str, Any], bybit: FakeBybit, category: Category, native: str, u: int = FIRST_UPDATE_ID
) -> BookSnapshot:
    bids, asks = venue_top(bybit, category, native, u, 50)
    return BookSnapshot(
        **who,
        bids=levels(*((p, s) for p, s in bids)),
        asks=levels(*((p, s) for p, s in asks)),
        sequence=u,
        timestamp=EPOCH,
    )


def e2e_delta(
    who: dict[str, Any], bybit: FakeBybit, category: Category, native: str, u: int, at: float
) -> BookDelta:
    """The change of the venue book's top 50 from ``u - 1`` to ``u`` (removals: size 0)."""
    before = venue_top(bybit, category, native, u - 1, 50)
    after = venue_top(bybit, category, native, u, 50)
    sides = []
    for old_side, new_side, descending in (
        (before[0], after[0], True),
        (before[1], after[1], False),
    ):
        old = {p: s for p, s in old_side}
        new = {p: s for p, s in new_side}
        changed = [(p, s) for p, s in new.items() if old.get(p) != s]
        changed += [(p, "0") for p in old if p not in new]
        changed.sort(key=lambda level: D(level[0]), reverse=descending)
        sides.append(levels(*changed))
    assert sides != [(), ()]
    return BookDelta(
        **who,
        bids=sides[0],
        asks=sides[1],
        sequence=u,
        prev_sequence=u - 1,
        timestamp=EPOCH + int(at * 1000),
    )


async def test_spot_and_linear_go_live_and_deliver_typed_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=1.0, handler=bybit
    ) as fake:
        dialer = Dialer(fake)
        config = exchange_config(
            spot={
                "exchange": "bybit",
                "channels": ["trades", "ticker", "book"],
                "symbols": ["BTC-USDT", "ETH-BTC"],
            },
            perp={
                "exchange": "bybit_linear",
                "channels": ["trades", "ticker", "book"],
                "symbols": ["ETH-USDT-PERP"],
                "raw": ["tickers.BTCUSDT"],
            },
        )
        got: dict[str, list[tuple[float, Message]]] = {"spot": [], "perp": []}
        with trio.fail_after(30):
            async with open_supervisor(config, connector=dialer) as sup:
                async for msg in sup.messages():
                    if trio.current_time() >= 2.0:
                        break
                    got[msg.connection].append((trio.current_time(), bare(msg)))
                stats = {c.name: c for c in (await sup.stats()).connections}
    assert sorted(dialer.attempts) == [(0.0, LINEAR_URL), (0.0, SPOT_URL)]  # default URLs
    btc = common("spot", "bybit", "BTC-USDT")
    ethbtc = common("spot", "bybit", "ETH-BTC")
    spot_trade = Trade(
        **btc,
        side="buy",
        price=D("10000.50"),
        amount=D("0.00903"),
        trade_id=str(FIRST_TRADE_ID),
        timestamp=EPOCH + 999,
    )
    # BTCUSDT and ETHBTC are symbols 0 and 3 of the fake's spot list
    assert got["spot"] == [
        # orderbook snapshots right after the ack
        (0.0, e2e_top(btc, bybit, "spot", "BTCUSDT", FIRST_UPDATE_ID, 0.0)),
        (0.0, e2e_snapshot(btc, bybit, "spot", "BTCUSDT")),
        (0.0, e2e_top(ethbtc, bybit, "spot", "ETHBTC", FIRST_UPDATE_ID, 0.0)),
        (0.0, e2e_snapshot(ethbtc, bybit, "spot", "ETHBTC")),
        (1.0, spot_trade),
        (1.0, e2e_top(btc, bybit, "spot", "BTCUSDT", FIRST_UPDATE_ID + 1, 1.0)),
        (1.0, e2e_delta(btc, bybit, "spot", "BTCUSDT", FIRST_UPDATE_ID + 1, 1.0)),
        (1.0, msgspec.structs.replace(spot_trade, **ethbtc, price=D("40000.50"))),
        (1.0, e2e_top(ethbtc, bybit, "spot", "ETHBTC", FIRST_UPDATE_ID + 1, 1.0)),
        (1.0, e2e_delta(ethbtc, bybit, "spot", "ETHBTC", FIRST_UPDATE_ID + 1, 1.0)),
    ]
    eth = common("perp", "bybit_linear", "ETH-USDT-PERP")
    perp = got["perp"]
    assert perp[:2] + perp[3:6] == [
        (0.0, e2e_top(eth, bybit, "linear", "ETHUSDT", FIRST_UPDATE_ID, 0.0)),
        (0.0, e2e_snapshot(eth, bybit, "linear", "ETHUSDT")),
        (
            1.0,
            Trade(
                **eth,
                side="buy",
                price=D("20000.50"),
                amount=D("0.001"),
                trade_id="00000000-0000-5000-8000-000000000000",
                timestamp=EPOCH + 999,
            ),
        ),
        (1.0, e2e_top(eth, bybit, "linear", "ETHUSDT", FIRST_UPDATE_ID + 1, 1.0)),
        (1.0, e2e_delta(eth, bybit, "linear", "ETHUSDT", FIRST_UPDATE_ID + 1, 1.0)),
    ]
    assert len(perp) == 7
    raw = [(t, m) for t, m in perp if isinstance(m, RawMessage)]
    assert [(t, m.data["topic"], m.data["type"], m.data["data"]["bid1Price"]) for t, m in raw] == [
        (0.0, "tickers.BTCUSDT", "snapshot", "10000.40"),
        (1.0, "tickers.BTCUSDT", "delta", "10001.40"),
    ]
    assert [raw[0][1], raw[1][1]] == [perp[2][1], perp[6][1]]
    by_category = {s.category: s for s in bybit.sessions.values()}
    assert fake.sessions[by_category["spot"].index].received == [
        bybit_subscribe(1, *by_category["spot"].topics)
    ]
    assert fake.sessions[by_category["linear"].index].received == [
        bybit_subscribe(1, *by_category["linear"].topics)
    ]
    assert (
        list(by_category["spot"].topics)
        == list(stats["spot"].subscriptions)
        == [
            "publicTrade.BTCUSDT",
            "orderbook.1.BTCUSDT",
            "orderbook.50.BTCUSDT",
            "publicTrade.ETHBTC",
            "orderbook.1.ETHBTC",
            "orderbook.50.ETHBTC",
        ]
    )
    assert (
        list(by_category["linear"].topics)
        == list(stats["perp"].subscriptions)
        == [
            "publicTrade.ETHUSDT",
            "orderbook.1.ETHUSDT",
            "orderbook.50.ETHUSDT",
            "tickers.BTCUSDT",
        ]
    )
    for name in ("spot", "perp"):
        assert set(stats[name].subscriptions.values()) == {"live"}
        assert (stats[name].state, stats[name].malformed, stats[name].gaps) == ("live", 0, 0)
    assert bybit.closes == []


@pytest.mark.parametrize(("limit", "failed"), [(10, 0), (5, 20)])
async def test_25_spot_topics_go_out_as_requests_of_10_10_and_5(
    autojump_clock: trio.testing.MockClock, limit: int, failed: int
) -> None:
    bybit = FakeBybit(spot_symbols=[t.partition(".")[2] for t in TOPICS_25], spot_max_args=limit)
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=math.inf, handler=bybit
    ) as fake:
        config = exchange_config(
            spot={"exchange": "bybit", "channels": ["trades"], "symbols": SYMBOLS_25}
        )
        with trio.fail_after(30):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await trio.sleep_until(0.5)
                stats = (await sup.stats()).connections[0]
    assert fake.sessions[0].received == [
        bybit_subscribe(1, *TOPICS_25[:10]),
        bybit_subscribe(2, *TOPICS_25[10:20]),
        bybit_subscribe(3, *TOPICS_25[20:]),
    ]
    refused = f"failed: args size >{limit} args size >{limit}"
    assert stats.subscriptions == {
        topic: refused if i < failed else "live" for i, topic in enumerate(TOPICS_25)
    }
    assert list(bybit.sessions[0].topics) == TOPICS_25[failed:]
    assert (stats.state, stats.connects, stats.malformed) == ("live", 1, 0)
    assert bybit.closes == []


async def test_an_unknown_symbol_fails_its_topics_and_the_rest_go_live(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    bybit = FakeBybit(spot_symbols=("BTCUSDT", "ETHUSDT"))
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=1.0, handler=bybit
    ) as fake:
        config = exchange_config(
            spot={
                "exchange": "bybit",
                "channels": ["trades", "book"],
                "symbols": ["BTC-USDT", "SOL-USDT", "ETH-USDT"],
            }
        )
        with trio.fail_after(30):
            async with open_supervisor(config, connector=fake.connect) as sup:
                first = bare(await sup.messages().__anext__())
                assert trio.current_time() == 0.0
                stats = (await sup.stats()).connections[0]
    topics = [
        "publicTrade.BTCUSDT",
        "orderbook.50.BTCUSDT",
        "publicTrade.SOLUSDT",
        "orderbook.50.SOLUSDT",
        "publicTrade.ETHUSDT",
        "orderbook.50.ETHUSDT",
    ]
    # Each refusal names the first bad topic; the rest go again without it.
    assert fake.sessions[0].received == [
        bybit_subscribe(1, *topics),
        bybit_subscribe(2, *topics[:2], *topics[3:]),
        bybit_subscribe(3, *topics[:2], *topics[4:]),
    ]
    not_found = "failed: handler not found error:handler not found,topic:"
    assert stats.subscriptions == {
        "publicTrade.BTCUSDT": "live",
        "orderbook.50.BTCUSDT": "live",
        "publicTrade.SOLUSDT": f"{not_found}publicTrade.SOLUSDT",
        "orderbook.50.SOLUSDT": f"{not_found}orderbook.50.SOLUSDT",
        "publicTrade.ETHUSDT": "live",
        "orderbook.50.ETHUSDT": "live",
    }
    assert stats.state == "live"
    assert first == e2e_snapshot(common("spot", "bybit", "BTC-USDT"), bybit, "spot", "BTCUSDT")
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert logged == [
        f"spot: the exchange refused subscription {topic!r}: handler not found "
        f"error:handler not found,topic:{topic} (check channels/symbols)"
        for topic in ("publicTrade.SOLUSDT", "orderbook.50.SOLUSDT")
    ]


async def book_chain(
    bybit: FakeBybit, fake: FakeExchange, inject: str, count: int, *, book_sync: bool = True
) -> tuple[list[tuple[float, str, int | None, int | None]], Any]:
    """Run a spot book of BTC-USDT; after the first delta, call ``bybit.<inject>``."""
    spot = {"exchange": "bybit", "channels": ["book"], "symbols": ["BTC-USDT"]}
    config = exchange_config(spot={**spot, "book_sync": book_sync})
    chain: list[tuple[float, str, int | None, int | None]] = []
    async with open_supervisor(config, connector=fake.connect) as sup:
        async for msg in sup.messages():
            if isinstance(msg, BookSnapshot):
                chain.append((trio.current_time(), "snapshot", None, msg.sequence))
            else:
                assert isinstance(msg, BookDelta)
                chain.append((trio.current_time(), "delta", msg.prev_sequence, msg.sequence))
            if len(chain) == 2:
                if inject == "gap":
                    bybit.inject_gap("orderbook.50.BTCUSDT")
                else:
                    bybit.restart_books()
            if len(chain) == count:
                break
        await sup.stop()
        stats = (await sup.stats()).connections[0]
    return chain, stats


async def test_an_injected_gap_is_counted_and_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    bybit = FakeBybit()
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=1.0, handler=bybit
    ) as fake:
        with trio.fail_after(30):
            # The venue's stream as it comes, to see the gap (local books: test_books_*).
            chain, stats = await book_chain(bybit, fake, "gap", 4, book_sync=False)
    u = FIRST_UPDATE_ID
    assert chain == [
        (0.0, "snapshot", None, u),
        (1.0, "delta", u, u + 1),
        (2.0, "delta", u + 2, u + 3),  # u + 2 was lost
        (3.0, "delta", u + 3, u + 4),
    ]
    assert (stats.gaps, stats.restarts, stats.connects) == (1, 0, 1)
    assert len(fake.sessions) == 1
    gaps = [r.getMessage() for r in caplog.records if "gap" in r.getMessage()]
    assert gaps == [
        f"spot: BTC-USDT book sequence gap: expected to continue from {u + 1}, got {u + 2}"
    ]


async def test_a_service_restart_snapshot_is_no_gap(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    bybit = FakeBybit()
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=1.0, handler=bybit
    ) as fake:
        with trio.fail_after(30):
            chain, stats = await book_chain(bybit, fake, "restart", 5)
    u = FIRST_UPDATE_ID
    assert chain == [
        (0.0, "snapshot", None, u),
        (1.0, "delta", u, u + 1),
        (2.0, "snapshot", None, 1),  # u = 1: overwrite the book
        (3.0, "delta", 1, 2),
        (4.0, "delta", 2, 3),
    ]
    assert (stats.gaps, stats.restarts) == (0, 0)
    assert [r for r in caplog.records if "gap" in r.getMessage()] == []


TRADES_AND_BOOK = ["publicTrade.BTCUSDT", "orderbook.50.BTCUSDT"]


@pytest.mark.parametrize(
    ("stale_after", "reconnect_at", "error"),
    [
        (60.0, 41.0, f"FeedStale: heartbeat missed: {DETAIL}"),
        (
            # heartbeat 20 (configured) with stale_after 30: the ping alone is not a
            # probe within 15 s, so the session adds one at 16; unanswered, stale at 31.
            30.0,
            32.0,
            "FeedStale: stale: no frame for 30 s (a probe after 15 s went unanswered) "
            f"from {SPOT_URL}",
        ),
    ],
    ids=["heartbeat-missed", "stale"],
)
async def test_a_silent_server_is_left_and_everything_resubscribed(
    autojump_clock: trio.testing.MockClock, stale_after: float, reconnect_at: float, error: str
) -> None:
    bybit = FakeBybit()
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=1.0, handler=bybit
    ) as fake:
        dialer = Dialer(fake)
        config = exchange_config(
            spot={
                "exchange": "bybit",
                "channels": ["trades", "book"],
                "symbols": ["BTC-USDT"],
                "stale_after": stale_after,
                "heartbeat": 20.0,
            }
        )
        with trio.fail_after(300):
            async with open_supervisor(config, connector=dialer) as sup:
                await trio.sleep_until(1.5)  # snapshot at 0, trade and delta at 1
                fake.interval = math.inf  # no more data...
                bybit.answer_pings = False  # ...and no pongs
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                assert trio.current_time() == reconnect_at
                await trio.sleep_until(reconnect_at + 0.5)
                stats = (await sup.stats()).connections[0]
    # last frame at 1; our ping at 20 is not answered: by 40 (heartbeat) or at 31
    # (stale_after 30) the session is given up; backoff 1 s.
    assert dialer.times() == [0.0, reconnect_at]
    assert stats.last_error == error
    pings = [PING] if stale_after == 60.0 else [PING, PING]  # the probe at 16, the ping at 20
    assert fake.sessions[0].received == [bybit_subscribe(1, *TRADES_AND_BOOK), *pings]
    assert bybit.sessions[0].pings == len(pings)
    # the new session asks for everything again, under a new request id
    assert fake.sessions[1].received == [bybit_subscribe(2, *TRADES_AND_BOOK)]
    assert list(bybit.sessions[1].topics) == list(bybit.sessions[0].topics) == TRADES_AND_BOOK
    assert stats.subscriptions == dict.fromkeys(TRADES_AND_BOOK, "live")
    assert (stats.state, stats.connects, stats.restarts) == ("live", 2, 1)
    assert bybit.closes == []


async def test_pongs_keep_quiet_connections_alive(autojump_clock: trio.testing.MockClock) -> None:
    bybit = FakeBybit()
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=math.inf, handler=bybit
    ) as fake:
        config = exchange_config(
            quiet={"exchange": "bybit", "channels": ["trades"], "symbols": ["BTC-USDT"]},
            busy={"exchange": "bybit_linear", "channels": ["trades"], "symbols": ["BTC-USDT-PERP"]},
        )
        with trio.fail_after(300):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await trio.sleep_until(200.0)
                stats = (await sup.stats()).connections
    # No data at all (interval inf) on either; the fake answers pings: a ping every 15 s
    # (half of stale_after 30, below Bybit's 20) keeps both alive well past stale_after.
    assert [len(s.received) for s in fake.sessions] == [14, 14]  # subscribe + 13 pings
    assert {s.received[-1] for s in fake.sessions} == {PING}
    assert [s.pings for s in bybit.sessions.values()] == [13, 13]
    assert [(s.state, s.connects, s.restarts, s.frames) for s in stats] == [
        ("live", 1, 0, 14),  # the ack + 13 pongs
        ("live", 1, 0, 14),
    ]
    assert bybit.closes == []


async def test_data_keeps_a_connection_alive_when_pongs_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    bybit.answer_pings = False
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=1.0, handler=bybit
    ) as fake:
        config = exchange_config(
            spot={"exchange": "bybit", "channels": ["trades"], "symbols": ["BTC-USDT"]}
        )
        with trio.fail_after(300):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await trio.sleep_until(110.0)
                stats = (await sup.stats()).connections[0]
    # pings go out every 15 s (half of stale_after) whatever arrives; the trades each
    # second answer for them
    assert fake.sessions[0].received == [bybit_subscribe(1, "publicTrade.BTCUSDT")] + [PING] * 7
    assert bybit.sessions[0].pings == 7
    assert len(fake.sessions) == 1
    assert (stats.state, stats.connects, stats.restarts, stats.last_error) == ("live", 1, 0, "")
