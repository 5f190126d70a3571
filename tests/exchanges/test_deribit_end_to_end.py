"""Deribit end to end: the supervisor against :class:`FakeDeribit`.

Tests run on the memory transport under ``autojump_clock`` with exact virtual times
(0.375 s pacing and 1 s data intervals are exact in binary); every one has a
``fail_after`` deadline. ``received_at`` is wall-clock time, so messages are compared
with it zeroed (``plain``).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import msgspec
import trio
import trio.testing

from actors.exchanges.messages import (
    BookDelta,
    BookInvalid,
    BookSnapshot,
    Message,
    RawMessage,
    Ticker,
    Trade,
)
from exchanges.helpers import Dialer, deribit_symbols, exchange_config
from supervisor import Config, config_from_dict, open_supervisor
from supervisor.testing import FakeExchange, open_fake_exchange
from supervisor.testing.fakes.deribit import FakeDeribit

D = Decimal
BTC = ("trades.BTC-PERPETUAL.100ms", "quote.BTC-PERPETUAL", "book.BTC-PERPETUAL.100ms")
ETH = ("trades.ETH-PERPETUAL.100ms", "quote.ETH-PERPETUAL", "book.ETH-PERPETUAL.100ms")
HEARTBEAT_MISSED = (
    "no frame from Deribit for 20 s although public/set_heartbeat asked for a heartbeat every 10 s"
)
#: Exchange time of the fake at trio time 0 (FakeDeribit's start_ms default).
T0 = 1765541474086


def deribit_config(**connection: Any) -> Config:
    """One Deribit connection "d" on the default endpoint; deterministic 1-2-4 s backoff."""
    return exchange_config(d={"exchange": "deribit", "stale_after": 60.0, **connection})


@asynccontextmanager
async def deribit_fake(
    interval: float = 1.0, **options: Any
) -> AsyncIterator[tuple[FakeExchange, FakeDeribit, Dialer]]:
    deribit = FakeDeribit(**options)
    async with open_fake_exchange(
        name="deribit", transport="memory", handler=deribit, interval=interval
    ) as exchange:
        yield exchange, deribit, Dialer(exchange)


def plain(message: Message) -> Message:
    """``message`` without its wall-clock ``received_at``."""
    return msgspec.structs.replace(message, received_at=0.0)


async def take(stream: AsyncIterator[Message], count: int) -> list[Message]:
    return [plain(await stream.__anext__()) for _ in range(count)]


async def test_e2e_typed_messages_flow(autojump_clock: trio.testing.MockClock) -> None:
    config = deribit_config(
        channels=["trades", "ticker", "book"], symbols=["BTC-USD-PERP", "ETH-PERPETUAL"]
    )
    base: dict[str, Any] = {"connection": "d", "exchange": "deribit", "received_at": 0.0}
    async with deribit_fake() as (exchange, deribit, connector):
        with trio.fail_after(30):
            async with open_supervisor(config, connector=connector) as sup:
                stream = sup.messages()
                first = await take(stream, 8)
                assert trio.current_time() == 1.0
                second = await take(stream, 8)
                assert trio.current_time() == 2.0
                stats = (await sup.stats()).connections[0]
    # The book frames are the venue's true book: its state at the first change_id, then
    # its first change.
    venue = deribit.venue_book("BTC-PERPETUAL")
    state, change = venue.at(133112427566), venue.diff(133112427566, 133112427567)
    assert state is not None and change is not None and change != ([], [])
    bids, asks = (tuple((D(p), D(s)) for p, s in side) for side in state)
    delta_bids, delta_asks = (tuple((D(p), D(s)) for p, s in side) for side in change)
    assert first[:5] == [
        Trade(**base, symbol="BTC-USD-PERP", side="sell", price=D("92294.5"), amount=D("10.0"),
              trade_id="403691824", timestamp=T0 + 1000),
        Trade(**base, symbol="BTC-USD-PERP", side="buy", price=D("92295.0"), amount=D("20.0"),
              trade_id="403691825", timestamp=T0 + 1000),
        Ticker(**base, symbol="BTC-USD-PERP", bid=D("92294.5"), bid_size=D("133440.0"),
               ask=D("92295.0"), ask_size=D("99470.0"), timestamp=T0 + 1000),
        BookSnapshot(
            **base, symbol="BTC-USD-PERP",
            bids=bids, asks=asks,
            sequence=133112427566, timestamp=T0 + 1000,
        ),
        Trade(**base, symbol="ETH-USD-PERP", side="sell", price=D("3120.25"), amount=D("10.0"),
              trade_id="403691824", timestamp=T0 + 1000),
    ]  # fmt: skip
    assert [type(m).__name__ for m in first[5:]] == ["Trade", "Ticker", "BookSnapshot"]
    assert second[3] == BookDelta(
        **base, symbol="BTC-USD-PERP", bids=delta_bids,
        asks=delta_asks, sequence=133112427567, prev_sequence=133112427566,
        timestamp=T0 + 2000,
    )  # fmt: skip
    assert connector.attempts == [(0.0, "wss://www.deribit.com/ws/api/v2")]
    # set_heartbeat first, then one subscribe per instrument, all at t=0.
    sent = [msgspec.json.decode(frame) for frame in exchange.sessions[0].received]
    assert [(r["id"], r["method"]) for r in sent] == [
        (1, "public/set_heartbeat"),
        (2, "public/subscribe"),
        (3, "public/subscribe"),
    ]
    assert deribit.sessions[0].subscribes == [(0.0, BTC), (0.0, ETH)]
    assert stats.state == "live"
    assert stats.subscriptions == dict.fromkeys(BTC + ETH, "live")
    assert (stats.malformed, stats.gaps) == (0, 0)


async def test_e2e_heartbeats_alone_keep_a_quiet_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = deribit_config(channels=["trades"], symbols=["BTC-USD-PERP"], stale_after=30.0)
    async with deribit_fake(interval=math.inf) as (exchange, deribit, connector):
        with trio.fail_after(100):
            async with open_supervisor(config, connector=connector) as sup:
                await trio.sleep_until(65.0)
                stats = (await sup.stats()).connections[0]
    session = deribit.sessions[0]
    assert session.heartbeat == 10.0
    assert (session.test_requests, session.answered, session.closed) == (6, 6, None)
    assert [t for t, method in session.methods if method == "public/test"] == [
        10.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    ]  # fmt: skip
    assert connector.times() == [0.0]
    assert len(exchange.sessions) == 1
    assert (stats.state, stats.connects, stats.restarts) == ("live", 1, 0)
    assert stats.frames == 1 + 1 + 12 + 6  # acks, heartbeats + test_requests, test replies


async def test_e2e_silent_exchange_is_heartbeat_missed_at_the_exact_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = deribit_config(channels=["trades"], symbols=["BTC-USD-PERP"])  # stale_after 60
    async with deribit_fake(interval=math.inf) as (exchange, deribit, connector):
        with trio.fail_after(100):
            async with open_supervisor(config, connector=connector) as sup:
                await trio.sleep_until(15.0)
                exchange.stall()  # last frames at t=10: heartbeat, test_request, test reply
                await exchange.wait_until(lambda f: len(f.sessions) == 2)
                assert trio.current_time() == 31.0  # missed at 10 + 2 * 10, backoff 1 s
                await trio.sleep_until(32.0)
                stats = (await sup.stats()).connections[0]
    assert connector.times() == [0.0, 31.0]
    assert deribit.sessions[1].subscribes == [(31.0, ("trades.BTC-PERPETUAL.100ms",))]
    assert stats.last_error == f"FeedStale: heartbeat missed: {HEARTBEAT_MISSED}"
    assert stats.subscriptions == {"trades.BTC-PERPETUAL.100ms": "live"}


async def test_e2e_fake_drops_a_client_that_never_answers_test_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The raw adapter sends set_heartbeat but knows nothing of test_request.
    async with deribit_fake(interval=math.inf) as (exchange, deribit, connector):
        set_heartbeat = (
            '{"jsonrpc":"2.0","id":1,"method":"public/set_heartbeat","params":{"interval":10}}'
        )
        config = config_from_dict(
            {
                "supervisor": {"shutdown_timeout": 1.0},
                "connections": {
                    "r": {
                        "exchange": "raw",
                        "url": exchange.url,
                        "subscribe": [set_heartbeat],
                        "stale_after": 60.0,
                        "backoff": {"initial": 1.0, "jitter": "none"},
                    }
                },
            },
            source="<test>",
        )
        with trio.fail_after(100):
            async with open_supervisor(config, connector=connector) as sup:
                await exchange.wait_until(lambda f: len(f.sessions) == 2)
                stats = (await sup.stats()).connections[0]
    # test_request at 10, unanswered for the 1 s window: closed at 11, back at 12.
    assert connector.times() == [0.0, 12.0]
    assert deribit.sessions[0].closed == "test_request not answered within 1 s"
    assert stats.last_error == (
        "ConnectionLost: connection lost: close code 1008 (POLICY_VIOLATION) "
        "'test_request not answered within 1 s' from ws://deribit.fake.invalid/ws"
    )


async def test_e2e_many_subscriptions_stay_within_the_credit_bucket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    names = deribit_symbols(40)
    config = deribit_config(channels=["trades", "ticker", "book"], symbols=names)
    # No data frames: nobody consumes them here, and a full queue (overflow = block)
    # would rightly stop the actor, pacing included.
    async with deribit_fake(math.inf, instruments=names) as (exchange, deribit, connector):
        with trio.fail_after(100):
            async with open_supervisor(config, connector=connector) as sup:
                await exchange.wait_until(
                    lambda f: bool(deribit.sessions) and len(deribit.sessions[0].subscribes) == 40
                )
                assert trio.current_time() == 35 * 0.375
                await exchange.close(1011, "restart")  # reconnect 1 s later, right after
                await exchange.wait_until(
                    lambda f: (
                        len(deribit.sessions) == 2 and len(deribit.sessions[1].subscribes) == 40
                    )
                )
                await trio.sleep_until(30.0)
                stats = (await sup.stats()).connections[0]
    first, second = deribit.sessions
    assert [t for t, _ in first.subscribes] == [0.0] * 5 + [0.375 * k for k in range(1, 36)]
    # The second session starts 1 s after the first one's last call: our bucket, empty
    # then, has refilled 2.67 calls' worth, so it does not burst five.
    assert [t for t, _ in second.subscribes][:4] == [14.125, 14.125, 14.25, 14.625]
    assert first.errors == second.errors == []
    assert (first.closed, second.closed) == (None, None)
    assert set(stats.subscriptions.values()) == {"live"}
    assert len(stats.subscriptions) == 120


async def test_e2e_a_stricter_fake_limit_is_enforced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = deribit_config(
        channels=["trades"], symbols=["BTC-USD-PERP", "ETH-USD-PERP", "BTC-USDC-PERP", "BTC-USDC"]
    )
    async with deribit_fake(subscribe_burst=2, subscribe_rate=0.1) as (
        exchange,
        deribit,
        connector,
    ):
        with trio.fail_after(100):
            async with open_supervisor(config, connector=connector) as sup:
                await exchange.wait_until(lambda f: bool(f.sessions) and not f.sessions[0].open)
                stats = (await sup.stats()).connections[0]
                await exchange.wait_until(lambda f: len(f.sessions) == 2)
    assert deribit.sessions[0].closed == "too_many_requests"
    assert stats.subscriptions == {
        "trades.BTC-PERPETUAL.100ms": "live",
        "trades.ETH-PERPETUAL.100ms": "live",
        "trades.BTC_USDC-PERPETUAL.100ms": "failed: 10028 too_many_requests",
        # written at t=0 too, but the fake closed before reading it
        "trades.BTC_USDC.100ms": "pending",
    }
    # 10028 is not a planned disconnect: the ordinary backoff (1 s) spaces the reconnect.
    assert connector.times() == [0.0, 1.0]


async def test_e2e_acks_and_refusals_in_stats(autojump_clock: trio.testing.MockClock) -> None:
    config = deribit_config(
        channels=["trades", "book"],
        symbols=["BTC-USD-PERP", "DOGE-PERPETUAL"],
        raw=["ticker.ETH-PERPETUAL.100ms", "deribit_price_index.btc_usd"],
    )
    async with deribit_fake() as (_, deribit, connector):
        with trio.fail_after(30):
            async with open_supervisor(config, connector=connector) as sup:
                stream = sup.messages()
                messages = await take(stream, 4)
                stats = (await sup.stats()).connections[0]
    assert deribit.sessions[0].errors == [(-32602, "Invalid params")] * 2
    assert stats.state == "live"
    assert stats.subscriptions == {
        "trades.BTC-PERPETUAL.100ms": "live",
        "book.BTC-PERPETUAL.100ms": "live",
        "trades.DOGE-PERPETUAL.100ms": "failed: -32602 Invalid params",
        "book.DOGE-PERPETUAL.100ms": "failed: -32602 Invalid params",
        "ticker.ETH-PERPETUAL.100ms": "live",
        "deribit_price_index.btc_usd": "failed: -32602 Invalid params",
    }
    assert [(type(m).__name__, getattr(m, "symbol", None)) for m in messages] == [
        ("Trade", "BTC-USD-PERP"),
        ("Trade", "BTC-USD-PERP"),
        ("BookSnapshot", "BTC-USD-PERP"),
        ("Ticker", "ETH-USD-PERP"),
    ]


async def test_e2e_resubscribes_after_a_reconnect(autojump_clock: trio.testing.MockClock) -> None:
    config = deribit_config(channels=["ticker", "book"], symbols=["ETH-USD-PERP"])
    topics = ("quote.ETH-PERPETUAL", "book.ETH-PERPETUAL.100ms")
    async with deribit_fake() as (exchange, deribit, connector):
        with trio.fail_after(30):
            async with open_supervisor(config, connector=connector) as sup:
                stream = sup.messages()
                await take(stream, 4)  # t=1 and t=2
                await exchange.close(1011, "restart")  # at t=2
                again = await take(stream, 3)
                assert trio.current_time() == 4.0  # reconnect at 3, first data at 4
                stats = (await sup.stats()).connections[0]
    assert connector.times() == [0.0, 3.0]
    assert deribit.sessions[1].subscribes == [(3.0, topics)]
    sent = [msgspec.json.decode(frame) for frame in exchange.sessions[1].received]
    assert [(r["id"], r["method"]) for r in sent] == [
        (3, "public/set_heartbeat"),
        (4, "public/subscribe"),
    ]
    # The local book is out of date from the loss (at t=2) until the new snapshot.
    assert [type(m).__name__ for m in again] == ["BookInvalid", "Ticker", "BookSnapshot"]
    assert isinstance(again[0], BookInvalid)
    assert (again[0].symbol, again[0].reason) == ("ETH-USD-PERP", "the connection was lost")
    assert stats.subscriptions == dict.fromkeys(topics, "live")
    assert (stats.connects, stats.state) == (2, "live")


async def test_e2e_maintenance_notice_hands_over_to_a_successor_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = deribit_config(channels=["trades"], symbols=["BTC-USD-PERP"], raw=["platform_state"])
    async with deribit_fake() as (exchange, deribit, connector):
        with trio.fail_after(30):
            async with open_supervisor(config, connector=connector) as sup:
                stream = sup.messages()
                await take(stream, 4)  # trades at t=1 and t=2
                await trio.sleep_until(2.5)
                assert await deribit.maintenance() == 1
                notice = await take(stream, 1)
                # the successor goes live, then the old session is closed
                await exchange.wait_until(lambda f: len(f.sessions) == 2)
                await exchange.wait_until(lambda f: not f.sessions[0].open)
                await sup.stop()
                stats = (await sup.stats()).connections[0]
    assert notice == [
        RawMessage(connection="d", exchange="deribit", received_at=0.0, data={"maintenance": True})
    ]
    assert connector.times() == [0.0, 2.5]  # make-before-break: connected at once
    assert (stats.restarts, stats.connects, stats.last_error) == (0, 2, "")
    assert exchange.sessions[0].close_code == 1000  # the old session closed cleanly


async def test_e2e_book_gap_is_counted_and_the_session_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The venue's stream as it comes, to see the gap (local books: test_books_*).
    config = deribit_config(channels=["book"], symbols=["BTC-USD-PERP"], book_sync=False)
    async with deribit_fake() as (exchange, deribit, connector):
        with trio.fail_after(30):
            async with open_supervisor(config, connector=connector) as sup:
                stream = sup.messages()
                await take(stream, 2)  # snapshot at 1, change at 2
                assert deribit.inject_gap("BTC-PERPETUAL") == 1
                gapped, after = await take(stream, 2)
                assert trio.current_time() == 4.0
                stats = (await sup.stats()).connections[0]
    assert isinstance(gapped, BookDelta)
    assert isinstance(after, BookDelta)
    assert (gapped.prev_sequence, gapped.sequence) == (133112427568, 133112427569)
    assert (after.prev_sequence, after.sequence) == (133112427569, 133112427570)
    assert stats.gaps == 1
    assert len(exchange.sessions) == 1
    assert (stats.restarts, stats.state) == (0, "live")


async def test_e2e_connections_to_one_host_share_the_subscribe_credits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Deribit counts subscribe credits per IP: two connections together must stay within
    # one budget (the fake's bucket is shared by all sessions, like Deribit's).
    names = [f"C{i}-PERPETUAL" for i in range(16)]
    deribit = FakeDeribit(instruments=names)
    async with open_fake_exchange(
        name="deribit", transport="memory", handler=deribit, interval=math.inf
    ) as exchange:
        config = config_from_dict(
            {
                "supervisor": {"shutdown_timeout": 1.0},
                "connections": {
                    name: {
                        "exchange": "deribit",
                        "url": exchange.url,
                        "channels": ["trades"],
                        "symbols": symbols,
                        "stale_after": 60.0,
                    }
                    for name, symbols in (("a", names[:8]), ("b", names[8:]))
                },
            },
            source="<test>",
        )
        with trio.fail_after(60):
            async with open_supervisor(config, connector=exchange.connect) as sup:
                await trio.sleep_until(5.0)
                stats = (await sup.stats()).connections
    assert [s.restarts for s in stats] == [0, 0]
    assert all(set(s.subscriptions.values()) == {"live"} for s in stats)
    times = sorted(t for session in deribit.sessions for t, _ in session.subscribes)
    # One schedule for both: a burst of 5, then one every 0.375 s.
    assert times == [0.0] * 5 + [0.375 * k for k in range(1, 12)]
    assert [session.closed for session in deribit.sessions] == [None, None]
