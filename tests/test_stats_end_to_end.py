"""The stats model end to end: counts match what the fake exchange did.

Real WebSocket handshakes over in-memory streams, on Trio's MockClock (autojump), so
every time below is exact. The fake's default payload is ``{"seq": N, "session": K}``.
Stats lag the feed by the traffic flush (0.25 s): snapshots are taken half a second
after a frame, between frames.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import trio
import trio.testing
from exchanges.helpers import Dialer, okx_config
from helpers import make_config
from trio_websocket import ConnectionClosed

from actors.registry import ConnectionStats, SubscriptionStats
from supervisor import RawMessage, open_supervisor
from supervisor.testing import FakeExchange, SessionIO, open_fake_exchange

#: Counters that must never go down (exported as Prometheus ``_total`` counters).
COUNTERS = (
    "connects",
    "disconnects",
    "restarts",
    "frames",
    "messages",
    "bytes",
    "dropped",
    "malformed",
    "gaps",
    "silent_total",
)


def session_of(msg: object) -> int:
    assert isinstance(msg, RawMessage) and isinstance(msg.data, dict)
    session = msg.data["session"]
    assert isinstance(session, int)
    return session


def assert_grew(before: ConnectionStats, after: ConnectionStats) -> None:
    for name in COUNTERS:
        assert getattr(after, name) >= getattr(before, name), name
    for reason, count in before.disconnects_by_reason.items():
        assert after.disconnects_by_reason[reason] >= count, reason
    for kind, count in before.malformed_by_kind.items():
        assert after.malformed_by_kind[kind] >= count, kind


async def close_4000(fake: FakeExchange) -> None:
    await fake.close(4000, "maintenance")


async def reset(fake: FakeExchange) -> None:
    await fake.reset()


async def stall(fake: FakeExchange) -> None:
    fake.stall()


async def refuse_then_close_1001(fake: FakeExchange) -> None:
    fake.refuse(2.5)
    await fake.close(1001, "going away")


async def reject_503_then_close_4000(fake: FakeExchange) -> None:
    fake.refuse(2.5, status=503)
    await fake.close(4000, "maintenance")


async def test_injected_faults_give_exactly_those_disconnect_reasons(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Each session that was live resets the backoff (reset_after 0.5 s): the restart
    # after it waits 1 s; one after a refused attempt waits 2 s (attempt 2).
    faults = [
        # (fault at, fault, next session's first frame at)
        (1.0, close_4000, 3.0),  # restart at 2
        (3.0, reset, 5.0),  # restart at 4
        (5.0, stall, 12.0),  # stale at 5 + 5, restart at 11
        (12.0, refuse_then_close_1001, 16.0),  # 13 refused, 15 connects
        (16.0, reject_503_then_close_4000, 20.0),  # 17 rejected with 503, 19 connects
    ]
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        config = make_config(fake, backoff={"reset_after": 0.5})
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect) as sup:
                stream = sup.messages()
                consumed = 1
                first = await stream.__anext__()
                assert (session_of(first), trio.current_time()) == (0, 1.0)
                snapshots = []
                for k, (at, fault, resumed_at) in enumerate(faults, start=1):
                    assert trio.current_time() == at
                    await fault(fake)
                    msg = await stream.__anext__()
                    consumed += 1
                    assert (session_of(msg), trio.current_time()) == (k, resumed_at)
                    snapshots.append((await sup.stats()).connections[0])
                await fake.garbage()
                await fake.garbage()
                for _ in range(2):
                    await stream.__anext__()
                    consumed += 1
                assert trio.current_time() == 22.0
                await trio.sleep_until(22.5)  # past the flush of the frame at 22
                (stats,) = (await sup.stats()).connections
                snapshots.append(stats)
    for before, after in itertools.pairwise(snapshots):
        assert_grew(before, after)
    assert stats.disconnects_by_reason == {
        "close 1001": 1,
        "close 4000": 2,
        "connect": 1,
        "handshake 503": 1,
        "reset": 1,
        "stale": 1,
    }
    assert stats.disconnects == 7
    assert (stats.connects, stats.restarts) == (6, 7)
    # Messages counted exactly: every one the consumer read, and no other.
    assert stats.messages == consumed == 1 + 5 + 2
    assert stats.frames == consumed + 2
    assert stats.malformed_by_kind == {"invalid_json": 2}
    assert stats.malformed == 2
    # The last restart came after the rejected attempt: the backoff's second delay.
    assert (stats.attempt, stats.backoff) == (2, 2.0)
    # Live since 19 (raw subscriptions need no ack).
    assert (stats.state, stats.session_uptime) == ("live", 3.5)
    # The 1 s window holds the frame at 22 (flushed at 22.25); its base is the flush at
    # 21.25. The 1 min window reaches back to the first flush: at 1.0, when the first
    # session (one message) ended.
    assert stats.rate_1s == 1 / (22.5 - 21.25)
    assert stats.rate_1m == (consumed - 1) / (22.5 - 1.0)
    assert stats.queue_depth == 0  # the consumer keeps up
    assert stats.feed_latency_p50 is None  # raw messages carry no exchange time


async def test_counters_survive_a_manual_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        with trio.fail_after(30):
            async with open_supervisor(make_config(fake), connector=fake.connect) as sup:
                stream = sup.messages()
                for _ in range(3):
                    await stream.__anext__()
                await fake.garbage()
                await trio.sleep_until(3.5)
                (before,) = (await sup.stats()).connections
                await sup.restart("a")
                async for msg in stream:
                    if session_of(msg) == 1:
                        break
                await trio.sleep_until(trio.current_time() + 0.5)
                (after,) = (await sup.stats()).connections
    assert_grew(before, after)
    assert (before.messages, before.frames, before.malformed) == (3, 4, 1)
    assert (after.messages, after.frames, after.malformed) == (4, 5, 1)
    assert (after.connects, after.restarts) == (2, 1)
    assert after.disconnects_by_reason == before.disconnects_by_reason == {}


async def test_queue_depth_counts_the_batches_waiting_for_the_consumer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        with trio.fail_after(30):
            async with open_supervisor(make_config(fake), connector=fake.connect) as sup:
                await trio.sleep_until(5.5)  # frames at 1..5; nobody reads
                (waiting,) = (await sup.stats()).connections
                stream = sup.messages()
                for _ in range(5):
                    await stream.__anext__()
                (drained,) = (await sup.stats()).connections
    # All five wait in the connection's queue: nothing holds a batch outside it.
    assert (waiting.messages, waiting.queue_depth) == (5, 5)
    assert drained.queue_depth == 0


# -- feed latency -------------------------------------------------------------------------

#: Wall time is 1,000 s plus the trio time (exact in binary at these steps).
WALL_BASE = 1000.0
#: How far behind our receive time each frame's exchange timestamp is, seconds.
LAG = 0.125
FRAMES = 40


def wall() -> float:
    return WALL_BASE + trio.current_time()


class LaggingBooks:
    """OKX's server side for one ``books`` topic: an update every 0.25 s whose ``ts`` is
    ``LAG`` behind the wall clock at sending (the memory transport adds no delay)."""

    def __init__(self) -> None:
        self.sent = 0

    def frame(self, n: int) -> str:
        ts = round(wall() * 1000 - LAG * 1000)
        entry = {
            "asks": [["30246.1", "0.5", "0", "2"]],
            "bids": [["30246.0", "0.5", "0", "2"]],
            "ts": str(ts),
            "seqId": 1001 + n,
            "prevSeqId": 1000 + n,
        }
        arg = {"channel": "books", "instId": "BTC-USDT"}
        return json.dumps({"arg": arg, "action": "update", "data": [entry]})

    async def __call__(self, io: SessionIO) -> None:
        request: Any = json.loads(await io.receive())
        for arg in request["args"]:
            await io.send(json.dumps({"event": "subscribe", "arg": arg}), data=False)
        try:
            due = trio.current_time()
            for n in range(FRAMES):
                due = await io.wait_interval(due)
                await io.send(self.frame(n))
                self.sent += 1
            await trio.sleep_forever()
        except ConnectionClosed:
            pass  # the client left


async def test_feed_latency_is_receive_time_minus_exchange_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    books = LaggingBooks()
    async with open_fake_exchange(
        name="okx", transport="memory", interval=0.25, handler=books
    ) as fake:
        # Updates without a snapshot, delivered as they come: this is about latency.
        config = okx_config(channels=["book"], symbols=["BTC-USDT"], book_sync=False)
        with trio.fail_after(60):
            async with open_supervisor(config, connector=Dialer(fake), wall_clock=wall) as sup:
                got = 0
                async for _batch in sup.batches():
                    got += 1
                    if got == FRAMES:
                        break
                assert trio.current_time() == FRAMES * 0.25
                await trio.sleep_until(FRAMES * 0.25 + 0.5)
                (stats,) = (await sup.stats()).connections
    assert books.sent == FRAMES
    assert stats.messages == FRAMES
    assert (stats.feed_latency_p50, stats.feed_latency_p99) == (LAG, LAG)
    assert stats.clock_offset is None  # no REST in this config: uncorrected


async def lagging_books_stats(**keys: Any) -> ConnectionStats:
    """OKX books for BTC-USDT (data every 0.25 s) and ETH-USDT (acknowledged, then quiet):
    the connection's stats 0.5 s after the FRAMES-th data frame."""
    books = LaggingBooks()
    async with open_fake_exchange(
        name="okx", transport="memory", interval=0.25, handler=books
    ) as fake:
        config = okx_config(
            channels=["book"], symbols=["BTC-USDT", "ETH-USDT"], book_sync=False, **keys
        )
        with trio.fail_after(60):
            async with open_supervisor(config, connector=Dialer(fake), wall_clock=wall) as sup:
                got = 0
                async for _batch in sup.batches():
                    got += 1
                    if got == FRAMES:
                        break
                await trio.sleep_until(FRAMES * 0.25 + 0.5)
                (stats,) = (await sup.stats()).connections
    return stats


async def test_subscription_stats_count_each_topics_data_frames(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stats = await lagging_books_stats(silent_after=5.0)
    assert stats.subscriptions == {"books:BTC-USDT": "live", "books:ETH-USDT": "silent"}
    assert stats.subscription_stats == {
        "books:BTC-USDT": SubscriptionStats(
            state="live", state_for=10.5, messages=FRAMES, last_message_age=0.5
        ),
        # Confirmed at 0, silent at 5: no data counted.
        "books:ETH-USDT": SubscriptionStats(state="silent", state_for=5.5),
    }
    assert stats.silent_total == 1


async def test_subscription_counts_need_no_silent_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stats = await lagging_books_stats()
    # Without silent_after nothing goes silent, and every data frame is still counted.
    assert stats.subscription_stats == {
        "books:BTC-USDT": SubscriptionStats(
            state="live", state_for=10.5, messages=FRAMES, last_message_age=0.5
        ),
        "books:ETH-USDT": SubscriptionStats(state="live", state_for=10.5),
    }
    assert stats.silent_total == 0
