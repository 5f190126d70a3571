"""The stats model, folded by the registry: exact values from scripted events.

The registry is driven synchronously (:meth:`RegistryActor.handle` with explicit times),
so every rate, percentile and age is an exact number. End-to-end counts against the
fake exchange are in ``test_stats_end_to_end.py``.
"""

from __future__ import annotations

import ssl

import pytest
import trio

from actors import (
    ConnectError,
    ConnectionLost,
    FeedStale,
    HandshakeRejected,
    ProxyError,
    ProxyRejected,
    ServerClosing,
)
from actors.exchanges.sdk.liveness import DataClocks
from actors.histogram import DURATION_BOUNDS, Buckets, Histogram
from actors.registry import (
    Connected,
    ConnectionState,
    ConnectionStats,
    Disconnected,
    Registered,
    RegistryActor,
    RegistryEvent,
    Restarting,
    RestInfo,
    SnapshotRequest,
    StateChanged,
    Stats,
    SubscriptionStates,
    SubscriptionStats,
    Totals,
    Traffic,
    percentile,
)
from supervisor.tree import disconnect_reason

# -- disconnect reasons -----------------------------------------------------------------


def chained(error: BaseException, *causes: BaseException) -> BaseException:
    """``error`` raised from ``causes[0]``, itself raised from ``causes[1]``, ..."""
    outer = error
    for cause in causes:
        outer.__cause__ = cause
        outer = cause
    return error


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (None, "close 1000"),
        (ServerClosing("the exchange announced a disconnect: x"), "server notice"),
        (ServerClosing("closed as announced", code=1001), "server notice"),
        (FeedStale("stale: no frame for 5 s", code=None), "stale"),
        (FeedStale("heartbeat missed: no pong within 10 s", heartbeat=True), "heartbeat missed"),
        (FeedStale("heartbeat missed, says only the text"), "stale"),
        (ConnectionLost("connection lost: close code 1006", code=1006), "reset"),
        (ConnectionLost("connection lost: EOF", code=None), "reset"),
        (ConnectionLost("connection lost: close code 1001", code=1001), "close 1001"),
        (ConnectionLost("connection lost: close code 4000", code=4000), "close 4000"),
        (HandshakeRejected("rejected with HTTP 503", status=503), "handshake 503"),
        (HandshakeRejected("rejected with HTTP 429", status=429), "handshake 429"),
        (ProxyError("proxy refused", hop="socks5://p:1080", index=0, reason="x"), "proxy"),
        (ProxyRejected("proxy 407", hop="http://p:3128", index=0, reason="x"), "proxy"),
        (
            chained(
                ConnectError("TLS certificate of x refused"),
                ssl.SSLCertVerificationError("certificate verify failed"),
            ),
            "tls",
        ),
        (
            chained(
                ConnectError("TLS handshake with x failed"),
                trio.BrokenResourceError(),
                ssl.SSLError("wrong version number"),
            ),
            "tls",
        ),
        (
            chained(ConnectError("cannot connect"), ConnectionRefusedError(111, "refused")),
            "connect",
        ),
        (
            chained(ConnectError("cannot connect"), OSError(-2, "Name or service not known")),
            "connect",
        ),
        (ConnectError("connecting to x took longer than 10 s"), "connect"),
        (RuntimeError("a bug"), "crash"),
        (ExceptionGroup("nested", [ConnectionLost("lost", code=4001)]), "close 4001"),
        (
            ExceptionGroup("two", [HandshakeRejected("503", status=503), RuntimeError("x")]),
            "handshake 503",
        ),
    ],
)
def test_disconnect_reason(error: BaseException | None, reason: str) -> None:
    assert disconnect_reason(error) == reason


# -- the registry -----------------------------------------------------------------------


def registry(*names: tuple[str, str]) -> RegistryActor:
    reg = RegistryActor(connect_attempts=5, connect_interval=1.0)
    for name, exchange in names:
        reg.handle(Registered(connection=name, exchange=exchange, url=f"wss://{name}"), 0.0)
    return reg


def traffic(name: str, at: float, **counts: object) -> Traffic:
    fields: dict[str, object] = {
        "frames": 0,
        "messages": 0,
        "bytes": 0,
        "dropped": 0,
        "malformed": 0,
        "gaps": 0,
        "last_frame_at": at,
        **counts,
    }
    return Traffic(connection=name, at=at, **fields)  # type: ignore[arg-type]


def conn(reg: RegistryActor, now: float, name: str = "a") -> ConnectionStats:
    (found,) = [c for c in reg.snapshot(now).connections if c.name == name]
    return found


def test_rates_over_one_second_one_minute_and_the_rate_window() -> None:
    reg = registry(("a", "x"))
    # A flush every 0.25 s up to 90 s: 5 messages each until 30 s, 2 until 89 s, then 20.
    for k in range(1, 361):
        at = k * 0.25
        n = 5 if at <= 30 else 2 if at <= 89 else 20
        reg.handle(traffic("a", at, frames=n, messages=n), at)
    stats = conn(reg, 90.0)
    assert stats.messages == 120 * 5 + 236 * 2 + 4 * 20
    assert stats.rate_1s == 80.0  # (89, 90]: 4 flushes of 20
    assert stats.rate_1m == (236 * 2 + 80) / 60  # (30, 90]
    assert stats.rate == (16 * 2 + 80) / 5  # (85, 90]: the 5 s window, as before
    # Half a second later without traffic: the windows slide over the quiet spell.
    later = conn(reg, 90.5)
    assert later.rate_1s == (2 * 20) / 1.0  # since the sample at 89.5
    assert later.rate_1m == (234 * 2 + 80) / 60  # since the sample at 30.5
    # Memory stays bounded: samples older than the longest window are dropped.
    assert len(reg._records["a"].samples) <= 60 / 0.25 + 2


def test_rates_with_less_history_than_the_window_span_what_there_is() -> None:
    reg = registry(("a", "x"))
    reg.handle(traffic("a", 2.0, frames=1, messages=1), 2.0)
    reg.handle(traffic("a", 2.5, frames=10, messages=10), 2.5)
    stats = conn(reg, 3.0)
    assert (stats.rate_1s, stats.rate_1m) == (10.0, 10.0)  # 10 messages since 2.0, in 1 s
    assert conn(reg, 2.0).rate_1s == 0.0  # no time since the first sample: no rate


def test_feed_latency_percentiles_over_the_last_minute_corrected_by_the_clock_offset() -> None:
    reg = registry(("a", "x"))
    assert (conn(reg, 0.0).feed_latency_p50, conn(reg, 0.0).feed_latency_p99) == (None, None)
    # One sample per flush at k/2 s, k = 1..100, falling: (101 - k)/64 s behind.
    for k in range(1, 101):
        at = k / 2
        reg.handle(traffic("a", at, frames=1, messages=1, latency=(101 - k) / 64), at)
    stats = conn(reg, 50.0)
    # Nearest rank: of 100 samples (1..100)/64, the 50th and the 99th.
    assert (stats.feed_latency_p50, stats.feed_latency_p99) == (50 / 64, 99 / 64)
    # The venue's clock is 0.5 s ahead of ours: its timestamps look 0.5 s earlier than
    # they are, so every latency grows by the offset.
    reg.handle(RestInfo(connection="a", clock_offset=0.5), 50.0)
    stats = conn(reg, 50.0)
    assert (stats.feed_latency_p50, stats.feed_latency_p99) == (50 / 64 + 0.5, 99 / 64 + 0.5)
    # At 80 s the last minute holds k = 41..100 (at > 20 s): latencies 1..60 /64.
    stats = conn(reg, 80.0)
    assert (stats.feed_latency_p50, stats.feed_latency_p99) == (30 / 64 + 0.5, 60 / 64 + 0.5)
    # A minute after the last sample there is none.
    assert conn(reg, 110.0).feed_latency_p50 is None
    assert conn(reg, 110.0).feed_latency_p99 is None


def test_latency_and_round_trip_histograms_grow_for_ever_with_the_offset_of_their_time() -> None:
    reg = registry(("a", "x"))
    empty = conn(reg, 0.0)
    assert empty.feed_latency is not None and empty.probe_rtt_histogram is not None
    assert (empty.feed_latency.count, empty.feed_latency.counts[-1]) == (0, 0)
    assert empty.feed_latency.bounds == DURATION_BOUNDS
    reg.handle(traffic("a", 1.0, frames=1, messages=1, latency=0.004, rtt=0.03), 1.0)
    # The venue runs 0.5 s ahead: from now on each sample is 0.5 s later than it reads.
    reg.handle(RestInfo(connection="a", clock_offset=0.5), 1.5)
    reg.handle(traffic("a", 2.0, frames=1, messages=1, latency=0.004), 2.0)
    # A sample that reads negative (the offset is wrong) counts as 0.
    reg.handle(traffic("a", 3.0, frames=1, messages=1, latency=-0.9), 3.0)
    # A reconnect does not reset them, nor does the minute passing.
    reg.handle(Disconnected(connection="a", error="gone", at=4.0, reason="reset"), 4.0)
    reg.handle(Connected(connection="a", at=5.0), 5.0)
    reg.handle(traffic("a", 200.0, frames=1, messages=1, rtt=0.2, rtt_smoothed=0.05), 200.0)
    stats = conn(reg, 200.0)
    latency, rtt = stats.feed_latency, stats.probe_rtt_histogram
    assert latency is not None and rtt is not None
    by_bound = dict(zip(latency.bounds, latency.counts, strict=True))
    assert (by_bound[0.001], by_bound[0.005], by_bound[0.25], by_bound[0.5], by_bound[1.0]) == (
        1,  # the -0.4 s one, as 0
        2,  # + the 0.004 s one before the offset was known
        2,
        2,
        3,  # + 0.504 s
    )
    assert (latency.count, latency.sum) == (3, 0.004 + 0.504)
    # The percentiles keep the signed values of the last minute only: none at 200 s.
    assert stats.feed_latency_p50 is None
    assert dict(zip(rtt.bounds, rtt.counts, strict=True))[0.025] == 0
    assert dict(zip(rtt.bounds, rtt.counts, strict=True))[0.05] == 1
    assert dict(zip(rtt.bounds, rtt.counts, strict=True))[0.25] == 2
    assert (rtt.count, rtt.sum) == (2, 0.03 + 0.2)


def test_histogram_bounds_must_ascend() -> None:
    with pytest.raises(ValueError, match="ascending and distinct"):
        Buckets((0.1, 0.01))
    with pytest.raises(ValueError, match="ascending and distinct"):
        Buckets((0.1, 0.1))
    buckets = Buckets((1.0,))
    buckets.observe(1.0)  # a value equal to a bound is in that bound's bucket (le)
    buckets.observe(1.5)
    assert buckets.snapshot() == Histogram(bounds=(1.0,), counts=(1,), count=2, sum=2.5)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([1.0], 50) == percentile([1.0], 99) == 1.0
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([1.0, 2.0], 99) == 2.0
    assert percentile([float(v) for v in range(1, 11)], 99) == 10.0
    assert percentile([float(v) for v in range(1, 11)], 50) == 5.0


def test_latency_samples_are_bounded() -> None:
    reg = registry(("a", "x"))
    for k in range(5000):
        at = k / 1000  # far more than one flush per 0.25 s: only the newest are kept
        reg.handle(traffic("a", at, frames=1, messages=1, latency=1.0), at)
    assert len(reg._records["a"].latencies) == 1024


def test_malformed_by_kind_and_the_sum() -> None:
    reg = registry(("a", "x"))
    reg.handle(
        traffic("a", 1.0, frames=3, malformed=3, malformed_kinds=(("invalid_json", 2), ("x", 1))),
        1.0,
    )
    reg.handle(
        traffic("a", 2.0, frames=1, malformed=1, malformed_kinds=(("invalid_json", 1),)), 2.0
    )
    stats = conn(reg, 2.0)
    assert stats.malformed_by_kind == {"invalid_json": 3, "x": 1}
    assert stats.malformed == sum(stats.malformed_by_kind.values()) == 4


def test_disconnects_by_reason_attempt_and_session_uptime() -> None:
    reg = registry(("a", "x"))
    assert conn(reg, 0.0).session_uptime is None
    reg.handle(StateChanged(connection="a", state=ConnectionState.LIVE, at=1.0), 1.0)
    assert conn(reg, 4.5).session_uptime == 3.5
    reg.handle(Disconnected(connection="a", error="x", at=5.0, reason="reset"), 5.0)
    reg.handle(Restarting(connection="a", delay=1.0, at=5.0, attempt=1), 5.0)
    stats = conn(reg, 5.5)
    assert (stats.session_uptime, stats.attempt, stats.backoff) == (None, 1, 1.0)
    reg.handle(Disconnected(connection="a", error="y", at=6.0, reason="connect"), 6.0)
    reg.handle(Restarting(connection="a", delay=2.0, at=6.0, attempt=2), 6.0)
    reg.handle(Disconnected(connection="a", error="z", at=9.0, reason="reset"), 9.0)
    reg.handle(Disconnected(connection="a", error="", at=9.0), 9.0)  # an old sender
    stats = conn(reg, 9.0)
    assert stats.disconnects_by_reason == {"connect": 1, "reset": 2, "unknown": 1}
    assert stats.disconnects == sum(stats.disconnects_by_reason.values()) == 4
    assert (stats.attempt, stats.backoff) == (2, 2.0)


def test_subscription_stats_and_silent_total() -> None:
    reg = registry(("a", "x"))

    def states(at: float, **topics: str) -> None:
        reg.handle(SubscriptionStates(connection="a", states=tuple(topics.items())), at)

    states(1.0, t1="pending", t2="pending")
    states(2.0, t1="live", t2="live")
    states(10.0, t1="silent", t2="live")
    states(11.0, t1="silent", t2="live")  # no change: the silent spell goes on
    states(12.0, t1="live", t2="live")
    states(20.0, t1="silent", t2="live")
    stats = conn(reg, 25.0)
    assert stats.subscriptions == {"t1": "silent", "t2": "live"}  # the old shape, kept
    assert stats.subscription_stats == {
        "t1": SubscriptionStats(state="silent", state_for=5.0),
        "t2": SubscriptionStats(state="live", state_for=23.0),
    }
    assert stats.silent_total == 2
    states(30.0, t2="failed: 60018 unknown symbol")  # t1 unsubscribed
    stats = conn(reg, 31.0)
    assert stats.subscription_stats == {
        "t2": SubscriptionStats(state="failed: 60018 unknown symbol", state_for=1.0)
    }
    assert stats.silent_total == 2  # a counter: never goes down


def test_totals_are_the_sums_per_exchange_and_overall() -> None:
    reg = registry(("a", "binance"), ("b", "okx"), ("c", "binance"))
    for i, name in enumerate(("a", "b", "c"), start=1):
        reg.handle(Connected(connection=name, at=0.5), 0.5)
        reg.handle(
            traffic(
                name,
                1.0,
                frames=10 * i,
                messages=9 * i,
                bytes=100 * i,
                dropped=i,
                malformed=i,
                gaps=2 * i,
            ),
            1.0,
        )
    reg.handle(StateChanged(connection="a", state=ConnectionState.LIVE, at=1.0), 1.0)
    reg.handle(StateChanged(connection="b", state=ConnectionState.LIVE, at=1.0), 1.0)
    reg.handle(Disconnected(connection="c", error="x", at=2.0, reason="stale"), 2.0)
    reg.handle(Restarting(connection="c", delay=1.0, at=2.0, attempt=1), 2.0)
    reg.handle(Disconnected(connection="a", error="x", at=2.0, reason="stale"), 2.0)
    reg.handle(Restarting(connection="a", delay=1.0, at=2.0, attempt=1), 2.0)
    reg.handle(SubscriptionStates(connection="b", states=(("t", "silent"),)), 2.0)
    snap = reg.snapshot(3.0)
    assert isinstance(snap, Stats)
    states = {state.value: 0 for state in ConnectionState}
    assert snap.totals == Totals(
        connections=3,
        states={**states, "backoff": 2, "live": 1},
        connects=3,
        disconnects=2,
        restarts=2,
        frames=60,
        messages=54,
        bytes=600,
        dropped=6,
        malformed=6,
        gaps=12,
        silent_total=1,
        disconnects_by_reason={"stale": 2},
    )
    assert list(snap.exchanges) == ["binance", "okx"]
    assert snap.exchanges["binance"] == Totals(
        connections=2,
        states={**states, "backoff": 2},
        connects=2,
        disconnects=2,
        restarts=2,
        frames=40,
        messages=36,
        bytes=400,
        dropped=4,
        malformed=4,
        gaps=8,
        silent_total=0,
        disconnects_by_reason={"stale": 2},
    )
    assert snap.exchanges["okx"] == Totals.of(c for c in snap.connections if c.name == "b")
    # Totals are the sums, field by field.
    for field in ("connects", "disconnects", "frames", "messages", "bytes", "dropped", "gaps"):
        assert getattr(snap.totals, field) == sum(getattr(c, field) for c in snap.connections)
        assert getattr(snap.totals, field) == sum(
            getattr(t, field) for t in snap.exchanges.values()
        )


def test_an_empty_supervisor_has_zero_totals() -> None:
    snap = registry().snapshot(0.0)
    assert snap.totals is not None
    assert (snap.totals.connections, snap.totals.messages, snap.exchanges) == (0, 0, {})
    assert set(snap.totals.states.values()) == {0}


def test_subscription_messages_and_last_message_age_from_traffic() -> None:
    reg = registry(("a", "x"))
    reg.handle(SubscriptionStates(connection="a", states=(("t1", "live"), ("t2", "live"))), 1.0)
    reg.handle(traffic("a", 2.0, frames=3, messages=3, topics=(("t1", 3, 1.75),)), 2.0)
    reg.handle(traffic("a", 3.0, frames=2, messages=2, topics=(("t1", 2, 2.5),)), 3.0)
    stats = conn(reg, 4.0)
    assert stats.subscription_stats == {
        "t1": SubscriptionStats(state="live", state_for=3.0, messages=5, last_message_age=1.5),
        "t2": SubscriptionStats(state="live", state_for=3.0),  # nothing counted for it
    }


def test_data_clocks_count_per_topic_across_sessions() -> None:
    clocks = DataClocks(5.0, per_topic=True)
    assert clocks.take_counts() == ()
    clocks.heard("t1", 1.0)
    clocks.heard("t1", 2.0)
    clocks.heard("t2", 2.5)
    clocks.reset()  # a session ended: the counts are still owed to stats
    clocks.heard("t1", 4.0)
    assert clocks.take_counts() == (("t1", 3, 4.0), ("t2", 1, 2.5))
    assert clocks.take_counts() == ()
    clocks.heard("t2", 6.0)
    assert clocks.take_counts() == (("t2", 1, 6.0),)


async def test_the_registry_takes_queued_events_in_streaks_so_a_request_is_not_starved() -> None:
    # 640 traffic reports queued ahead of a snapshot request: the registry applies up to
    # 64 in a row before it yields, so a task that yields once per scheduling round sees
    # the answer after about ten rounds, not 640 (trio runs each runnable task one step
    # per round; a registry that yielded per event fell behind 100 busy connections).
    reg = registry(("a", "x"))
    send, receive = trio.open_memory_channel[RegistryEvent](1024)
    for _ in range(640):
        send.send_nowait(traffic("a", 0.0, frames=1))
    reply_send, reply_receive = trio.open_memory_channel[Stats](1)
    send.send_nowait(SnapshotRequest(reply=reply_send))
    rounds = 0
    answer: list[Stats] = []

    async def wait_for_answer() -> None:
        answer.append(await reply_receive.receive())

    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run, receive)
        nursery.start_soon(wait_for_answer)
        while not answer:
            rounds += 1
            await trio.lowlevel.checkpoint()
        await send.aclose()
    assert answer[0].connections[0].frames == 640
    assert rounds <= 12  # 10 here; 641 when the registry yielded on every event
