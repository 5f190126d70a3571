"""Binance end to end: the supervisor against :class:`FakeBinance` and
:class:`FakeBinanceUsdm` over in-memory streams on MockClock (autojump), with exact
virtual times. Rules of the fake that only show through a client (message limit,
USD-M's close after too many streams) are asserted here, through the supervisor.

The fakes' data is deterministic: symbol ``i`` (0-based) of the fake's list starts at
trade id ``1_000_000 * (i + 1)``, aggregate id ``500_000 * (i + 1)`` and book update id
``10_000_000 * (i + 1)``; every interval each subscribed symbol gets one trade and three
book updates; prices start at ``100 * (i + 1)`` and move by 0.01 per interval.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from helpers import RecordingConnector

from actors.exchanges.messages import BookDelta, Message, Ticker, Trade
from exchanges.helpers import deltas, exchange_config, levels
from supervisor import Config, open_supervisor
from supervisor.testing import open_fake_exchange
from supervisor.testing.fakes.binance import DEFAULT_EPOCH_MS, FakeBinance, FakeBinanceUsdm

#: Where test connections point; the memory fake serves any URL.
URL = "ws://binance.fake.invalid/stream"
D = Decimal
#: Unix ms the fake stamps at trio time t: DEFAULT_EPOCH_MS + 1000 t.
EPOCH = DEFAULT_EPOCH_MS


def make_config(exchange: str = "binance", **keys: Any) -> Config:
    """One connection ``b`` to the memory fake; restarts after 1, 2, 4... s, no jitter."""
    return exchange_config(b={"exchange": exchange, "url": URL, **keys})


def subscribe(request_id: int, *streams: str) -> str:
    return msgspec.json.encode(
        {"method": "SUBSCRIBE", "params": list(streams), "id": request_id}
    ).decode()


BTC = ("btcusdt@trade", "btcusdt@bookTicker", "btcusdt@depth@100ms")


async def test_data_flows_as_typed_messages(autojump_clock: trio.testing.MockClock) -> None:
    binance = FakeBinance()
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=binance
    ) as fake:
        config = make_config(channels=["trades", "ticker", "book"], symbols=["BTC-USDT"])
        got: list[tuple[float, Message]] = []
        with trio.fail_after(30):
            async with open_supervisor(config, connector=fake.connect) as sup:
                async for message in sup.messages():
                    got.append((trio.current_time(), message))
                    if len(got) == 6:
                        break
                stats = (await sup.stats()).connections[0]
    common = {"connection": "b", "exchange": "binance", "symbol": "BTC-USDT"}
    stamped = [(t, msgspec.structs.replace(m, received_at=0.0)) for t, m in got]
    # The first diff is the venue book's first change (ids 10_000_001..10_000_003).
    change = binance.venue_book("BTCUSDT").diff(10_000_000, 10_000_003)
    assert change is not None and change != ([], [])
    first_bids, first_asks = (levels(*((p, s) for p, s in side)) for side in change)
    assert stamped[:3] == [
        (
            1.0,
            Trade(
                **common,
                received_at=0.0,
                side="sell",
                price=D("100.01000000"),
                amount=D("0.00200000"),
                trade_id="1000001",
                timestamp=EPOCH + 1000,
            ),
        ),
        (
            1.0,
            Ticker(
                **common,
                received_at=0.0,
                bid=D("100.01000000"),
                bid_size=D("0.00200000"),
                ask=D("100.02000000"),
                ask_size=D("0.00200000"),
                timestamp=None,
            ),
        ),
        (
            1.0,
            BookDelta(
                **common,
                received_at=0.0,
                bids=first_bids,
                asks=first_asks,
                sequence=10_000_003,
                prev_sequence=10_000_000,
                timestamp=EPOCH + 1000,
            ),
        ),
    ]
    trade2, _, delta2 = (m for _, m in stamped[3:])
    assert [t for t, _ in stamped[3:]] == [2.0, 2.0, 2.0]
    assert isinstance(trade2, Trade) and (trade2.trade_id, trade2.side) == ("1000002", "buy")
    assert isinstance(delta2, BookDelta)
    assert (delta2.sequence, delta2.prev_sequence) == (10_000_006, 10_000_003)
    assert fake.sessions[0].received == [subscribe(1, *BTC)]
    assert stats.subscriptions == dict.fromkeys(BTC, "live")
    assert (stats.state, stats.gaps, stats.malformed) == ("live", 0, 0)


async def _run_until(sup: Any, at: float) -> list[float]:
    """Consume messages until trio time ``at``; return their arrival times."""
    times = []
    async for _ in sup.messages():
        times.append(trio.current_time())
        if trio.current_time() >= at:
            break
    return times


async def test_our_client_answers_every_ping_for_many_periods(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The fake drops a client that leaves a ping unanswered for 60 s; 10 ping periods pass.
    binance = FakeBinance(ping_interval=20.0, pong_timeout=60.0)
    async with open_fake_exchange(
        name="binance", transport="memory", interval=5.0, handler=binance
    ) as fake:
        with trio.fail_after(300):
            async with open_supervisor(
                make_config(channels=["trades"], symbols=["BTC-USDT"]), connector=fake.connect
            ) as sup:
                times = await _run_until(sup, 205.0)
                stats = (await sup.stats()).connections[0]
    assert times[0] == 5.0 and times[-1] == 205.0 and len(times) == 41
    assert len(fake.sessions) == 1
    state = binance.sessions[0]
    assert (state.pings, state.pongs, state.closed_for) == (10, 10, None)
    assert (stats.connects, stats.restarts, stats.state) == (1, 0, "live")


async def test_a_silent_fake_leads_to_a_reconnect_at_the_stale_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    binance = FakeBinance()
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=binance
    ) as fake:
        connector = RecordingConnector(fake)
        config = make_config(channels=["trades"], symbols=["BTC-USDT"], stale_after=5.0)
        with trio.fail_after(60):
            async with open_supervisor(config, connector=connector) as sup:
                stream = sup.messages()
                await stream.__anext__()
                assert trio.current_time() == 1.0
                fake.stall()  # no data, no pings read, no pongs: the fake stops answering
                message = await stream.__anext__()
                resumed_at = trio.current_time()
                stats = (await sup.stats()).connections[0]
    # Silent from t=1: stale at 1 + 5 = 6, reconnect after 1 s, first frame 1 s later.
    assert connector.times() == [0.0, 7.0]
    assert resumed_at == 8.0
    # 1000002 was made at t=2 but never sent by the stalled session.
    assert isinstance(message, Trade) and message.trade_id == "1000003"
    assert (
        stats.last_error
        == "FeedStale: stale: no frame for 5 s (a probe after 2.5 s went unanswered) from " + URL
    )
    assert fake.sessions[1].received == [subscribe(2, "btcusdt@trade")]


async def test_many_subscriptions_never_trip_the_rate_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    symbols = [f"S{i}USDT" for i in range(340)]  # 340 x 3 = 1020 streams, 6 requests
    binance = FakeBinance(symbols=symbols)
    async with open_fake_exchange(
        name="binance", transport="memory", interval=math.inf, handler=binance
    ) as fake:
        config = make_config(channels=["trades", "ticker", "book"], symbols=symbols)
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await fake.wait_until(
                    lambda f: bool(f.sessions) and len(f.sessions[0].received) == 6
                )
                assert trio.current_time() == 2.5
                await trio.testing.wait_all_tasks_blocked()  # the last ack is processed
                stats = (await sup.stats()).connections[0]
                assert (stats.state, stats.state_for) == ("live", 0.0)
                # Pings every 20 s and data keep flowing within the limit for a while.
                fake.interval = 10.0
                await _run_until(sup, 42.5)
    state = binance.sessions[0]
    assert (state.requests, len(state.streams), state.closed_for) == (6, 1020, None)
    assert state.pongs == 2
    assert len(stats.subscriptions) == 1020
    assert set(stats.subscriptions.values()) == {"live"}
    assert len(fake.sessions) == 1


async def test_many_subscriptions_on_usdm_are_paced_at_its_own_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    symbols = [f"S{i}USDT" for i in range(340)]
    binance = FakeBinanceUsdm(symbols=symbols)
    async with open_fake_exchange(
        name="binance", transport="memory", interval=math.inf, handler=binance
    ) as fake:
        config = make_config("binance_usdm", channels=["trades", "ticker", "book"], symbols=symbols)
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect):
                await fake.wait_until(
                    lambda f: bool(f.sessions) and len(f.sessions[0].received) == 6
                )
                assert trio.current_time() == 1.25
    assert binance.sessions[0].closed_for is None
    assert len(binance.sessions[0].streams) == 1020


async def test_the_fake_enforces_its_message_limit(autojump_clock: trio.testing.MockClock) -> None:
    # Misconfigured on purpose: one message per second, and our client needs two requests.
    binance = FakeBinance(max_incoming=1, symbols=[f"S{i}USDT" for i in range(201)])
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=binance
    ) as fake:
        connector = RecordingConnector(fake)
        config = make_config(channels=["trades"], symbols=[f"S{i}USDT" for i in range(201)])
        with trio.fail_after(60):
            async with open_supervisor(config, connector=connector) as sup:
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                stats = (await sup.stats()).connections[0]
    assert connector.times() == [0.0, 1.5]  # closed at 0.5, reconnect after 1 s
    assert binance.sessions[0].closed_for == "1008 Too many requests"
    assert stats.last_error == (
        "ConnectionLost: connection lost: close code 1008 (POLICY_VIOLATION) "
        f"'Too many requests' from {URL}"
    )


async def test_acks_and_refusals_show_in_stats(autojump_clock: trio.testing.MockClock) -> None:
    binance = FakeBinance()
    async with open_fake_exchange(
        name="binance", transport="memory", interval=math.inf, handler=binance
    ) as fake:
        config = make_config(
            channels=["trades", "ticker", "book"],
            symbols=["BTC-USDT"],
            raw=["xyzusdt@trade", "btcusdt@kline_1m"],
        )
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await fake.wait_until(
                    lambda f: bool(f.sessions) and len(f.sessions[0].received) == 7
                )
                assert trio.current_time() == 3.0
                await trio.testing.wait_all_tasks_blocked()  # the last ack is processed
                stats = (await sup.stats()).connections[0]
                assert (stats.state, stats.state_for) == ("live", 0.0)
    invalid = "failed: 2 Invalid request: invalid stream"
    assert stats.subscriptions == {
        "btcusdt@trade": "live",
        "btcusdt@bookTicker": "live",
        "btcusdt@depth@100ms": "live",
        "xyzusdt@trade": invalid,
        "btcusdt@kline_1m": invalid,  # the fake knows no klines
    }
    assert binance.sessions[0].streams == dict.fromkeys(BTC)
    assert binance.sessions[0].closed_for is None


async def test_usdm_acks_every_stream_even_unknown_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    binance = FakeBinanceUsdm()
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=binance
    ) as fake:
        config = make_config(
            "binance_usdm", channels=["book"], symbols=["BTC-USDT-PERP", "XYZ-USDT-PERP"]
        )
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect) as sup:
                got: list[tuple[float, Message]] = []
                async for message in sup.messages():
                    got.append((trio.current_time(), message))
                    if len(got) == 2:
                        break
                binance.inject_gap("BTCUSDT")
                async for message in sup.messages():
                    got.append((trio.current_time(), message))
                    if len(got) == 4:
                        break
                stats = (await sup.stats()).connections[0]
    assert stats.subscriptions == {"btcusdt@depth@100ms": "live", "xyzusdt@depth@100ms": "live"}
    assert [
        (t, d.symbol, d.sequence, d.prev_sequence, d.timestamp)
        for t, m in got
        for d in deltas((m,))
    ] == [
        (1.0, "BTC-USDT-PERP", 10_000_003, 10_000_000, EPOCH + 999),  # T = E - 1
        (2.0, "BTC-USDT-PERP", 10_000_006, 10_000_003, EPOCH + 1999),
        (3.0, "BTC-USDT-PERP", 10_000_012, 10_000_009, EPOCH + 2999),  # pu: a diff was lost
        (4.0, "BTC-USDT-PERP", 10_000_015, 10_000_012, EPOCH + 3999),
    ]
    assert stats.gaps == 1


async def test_usdm_fake_closes_after_too_many_subscriptions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    binance = FakeBinanceUsdm(max_streams=2)
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=binance
    ) as fake:
        config = make_config(
            "binance_usdm", channels=["book"], symbols=["BTCUSDT", "ETHUSDT", "BNBUSDT"]
        )
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await fake.wait_until(lambda f: bool(f.sessions) and not f.sessions[0].open)
                await trio.testing.wait_all_tasks_blocked()
                assert trio.current_time() == 0.0
                stats = (await sup.stats()).connections[0]
    too_many = "failed: 4 Too many subscriptions"
    assert stats.subscriptions == {
        "btcusdt@depth@100ms": too_many,
        "ethusdt@depth@100ms": too_many,
        "bnbusdt@depth@100ms": too_many,
    }
    assert binance.sessions[0].closed_for == "1008 Invalid request"
    assert stats.last_error == (
        "ConnectionLost: connection lost: close code 1008 (POLICY_VIOLATION) "
        f"'Invalid request' from {URL}"
    )


async def test_frames_without_envelope_end_to_end(autojump_clock: trio.testing.MockClock) -> None:
    binance = FakeBinance(combined=False)  # as if connected to /ws
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=binance
    ) as fake:
        config = make_config(
            url="ws://binance.fake.invalid/ws",
            channels=["trades", "ticker", "book"],
            symbols=["BTC-USDT"],
        )
        with trio.fail_after(30):
            async with open_supervisor(config, connector=fake.connect) as sup:
                got = []
                async for message in sup.messages():
                    got.append((trio.current_time(), type(message).__name__))
                    if len(got) == 6:
                        break
                stats = (await sup.stats()).connections[0]
    assert got == [
        (1.0, "Trade"),
        (1.0, "Ticker"),
        (1.0, "BookDelta"),
        (2.0, "Trade"),
        (2.0, "Ticker"),
        (2.0, "BookDelta"),
    ]
    assert (stats.malformed, stats.gaps) == (0, 0)


async def test_resubscribes_after_a_reconnect(autojump_clock: trio.testing.MockClock) -> None:
    binance = FakeBinance()
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=binance
    ) as fake:
        connector = RecordingConnector(fake)
        config = make_config(channels=["trades", "ticker", "book"], symbols=["BTC-USDT"])
        with trio.fail_after(60):
            async with open_supervisor(config, connector=connector) as sup:
                stream = sup.messages()
                await stream.__anext__()
                await fake.reset()  # at t=1, after the first frame
                while True:
                    message = await stream.__anext__()
                    if trio.current_time() > 1.0:
                        break
                reconnected_at = trio.current_time()
                stats = (await sup.stats()).connections[0]
    assert connector.times() == [0.0, 2.0]
    assert reconnected_at == 3.0
    # Same streams, new request id, acknowledged on the new session.
    assert fake.sessions[1].received == [subscribe(2, *BTC)]
    assert binance.sessions[1].streams == dict.fromkeys(BTC)
    assert stats.subscriptions == dict.fromkeys(BTC, "live")
    assert (stats.connects, stats.gaps) == (2, 0)  # the new chain starts unchecked
    # Ids moved on while we were away, as on the real venue.
    assert isinstance(message, Trade) and message.trade_id == "1000002"


async def test_server_shutdown_is_a_make_before_break_handover_without_a_gap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Book continuity across a handover needs venue-consistent ids on both sessions,
    # which this fake does not model (each session numbers from when it subscribed):
    # see tests/test_handover.py for trades and books on a lockstep fake.
    binance = FakeBinance()
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=binance
    ) as fake:
        connector = RecordingConnector(fake)
        config = make_config(channels=["trades"], symbols=["BTC-USDT"])
        with trio.fail_after(60):
            async with open_supervisor(config, connector=connector) as sup:
                stream = sup.messages()
                got = [await stream.__anext__()]  # t=1
                await binance.server_shutdown()  # at t=1
                while trio.current_time() < 6.0:
                    got.append(await stream.__anext__())
                await fake.wait_until(lambda f: not f.sessions[0].open)
                stats = (await sup.stats()).connections[0]
    # The successor connected at once, while the old session was still delivering.
    assert connector.times() == [0.0, 1.0]
    assert fake.sessions[0].close_code == 1000  # we closed the old session cleanly
    assert fake.sessions[1].received == [subscribe(1, "btcusdt@trade")]
    # No restart, no error, and the consumer saw no gap and no duplicate.
    assert (stats.restarts, stats.connects, stats.last_error) == (0, 2, "")
    trades = [int(m.trade_id) for m in got if isinstance(m, Trade)]
    assert trades == list(range(trades[0], trades[0] + len(trades)))


@pytest.mark.parametrize("status", [None, 429], ids=["refused", "rejected-429"])
async def test_without_a_successor_the_old_session_goes_on_until_the_exchange_closes_it(
    autojump_clock: trio.testing.MockClock, status: int | None
) -> None:
    binance = FakeBinance()
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=binance
    ) as fake:
        connector = RecordingConnector(fake)
        config = make_config(channels=["trades"], symbols=["BTC-USDT"])
        with trio.fail_after(60):
            async with open_supervisor(config, connector=connector) as sup:
                stream = sup.messages()
                await stream.__anext__()  # t=1
                fake.refuse(2.0, status=status)  # no successor can connect until t=3
                await binance.server_shutdown()
                second = await stream.__anext__()  # the old session still delivers
                assert trio.current_time() == 2.0
                await trio.sleep_until(2.5)
                await fake.close(1001, "shutting down as announced")
                await fake.wait_until(lambda f: len(f.sessions) == 2)
    assert isinstance(second, Trade)
    # 1.0: successor refused; 2.5: closed as announced -> reconnect at once (refused);
    # then the ordinary backoff (1 s) -> 3.5.
    assert connector.times() == [0.0, 1.0, 2.5, 3.5]


async def test_an_injected_gap_is_reported_and_the_session_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    binance = FakeBinance()
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=binance
    ) as fake:
        config = make_config(channels=["book"], symbols=["BTC-USDT", "ETH-USDT"])
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect) as sup:
                got: list[tuple[float, str, int | None, int | None]] = []
                async for message in sup.messages():
                    assert isinstance(message, BookDelta)
                    got.append(
                        (
                            trio.current_time(),
                            message.symbol,
                            message.sequence,
                            message.prev_sequence,
                        )
                    )
                    if len(got) == 2:
                        binance.inject_gap("btcusdt")
                    if len(got) == 6:
                        break
                stats = (await sup.stats()).connections[0]
    assert got == [
        (1.0, "BTC-USDT", 10_000_003, 10_000_000),
        (1.0, "ETH-USDT", 20_000_003, 20_000_000),
        (2.0, "BTC-USDT", 10_000_009, 10_000_006),  # 10_000_004..6 was lost
        (2.0, "ETH-USDT", 20_000_006, 20_000_003),
        (3.0, "BTC-USDT", 10_000_012, 10_000_009),
        (3.0, "ETH-USDT", 20_000_009, 20_000_006),
    ]
    assert (stats.gaps, stats.connects, stats.state) == (1, 1, "live")
    assert len(fake.sessions) == 1
