"""The supervision tree end to end: real WebSocket handshakes against the fake exchange.

Timing tests use in-memory streams on Trio's MockClock (autojump) and assert exact
virtual times; the shutdown/no-leak tests use real loopback sockets. The fake's default
payload is ``{"seq": N, "session": K}``: N counts frames within session K.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
import trio
from helpers import SUBSCRIBE, RecordingConnector, make_config

from supervisor import RawMessage, RestartLimitExceeded, Stats, Supervisor, open_supervisor
from supervisor.testing import FakeExchange, SessionIO, open_fake_exchange


def data(msg: object) -> dict[str, Any]:
    assert isinstance(msg, RawMessage)
    assert isinstance(msg.data, dict)
    return msg.data


async def test_messages_flow_typed_with_subscription_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        connector = RecordingConnector(fake)
        got: list[tuple[float, dict[str, Any]]] = []
        with trio.fail_after(30):
            async with open_supervisor(make_config(fake), connector=connector) as sup:
                async for msg in sup.messages():
                    assert isinstance(msg, RawMessage)
                    assert (msg.connection, msg.exchange) == ("a", "raw")
                    got.append((trio.current_time(), data(msg)))
                    if len(got) == 3:
                        break
        assert got == [
            (1.0, {"seq": 0, "session": 0}),
            (2.0, {"seq": 1, "session": 0}),
            (3.0, {"seq": 2, "session": 0}),
        ]
        assert fake.sessions[0].received == [SUBSCRIBE]
        assert fake.sessions[0].close_code == 1000  # we closed cleanly on the way out
        assert connector.times() == [0.0]


# -- every fault recovers -------------------------------------------------------------

Fault = Callable[[FakeExchange], Awaitable[None]]


async def close_4000(fake: FakeExchange) -> None:
    await fake.close(4000, "maintenance")


async def reset(fake: FakeExchange) -> None:
    await fake.reset()


async def stall(fake: FakeExchange) -> None:
    fake.stall()


async def oversized(fake: FakeExchange) -> None:
    await fake.oversized(2048)  # the connection's max_message_size is 1024


async def refuse_then_close(fake: FakeExchange) -> None:
    fake.refuse(2.5)
    await fake.close(1001, "going away")


async def reject_429_then_close(fake: FakeExchange) -> None:
    fake.refuse(2.5, status=429)
    await fake.close(1001, "going away")


@pytest.mark.parametrize(
    ("fault", "error", "resumed_at", "attempts"),
    [
        # fault at t=1 (right after frame 0); backoff none: 1 s, then 2 s, then 4 s.
        (
            close_4000,
            "ConnectionLost: connection lost: close code 4000 (PRIVATE_RESERVED) "
            "'maintenance' from ws://a.fake.invalid/ws",
            3.0,
            [0.0, 2.0],
        ),
        (
            reset,
            "ConnectionLost: connection lost: close code 1006 (ABNORMAL_CLOSURE) "
            "from ws://a.fake.invalid/ws",
            3.0,
            [0.0, 2.0],
        ),
        # silent from t=1: stale at 1 + stale_after(5) = 6, reconnect at 7, frame at 8.
        (
            stall,
            "FeedStale: stale: no frame for 5 s (a probe after 2.5 s went unanswered) from ws://a.fake.invalid/ws",
            8.0,
            [0.0, 7.0],
        ),
        (
            oversized,
            "ConnectionLost: connection lost: close code 1009 (MESSAGE_TOO_BIG) "
            "'Exceeded maximum message size: 1024 bytes' from ws://a.fake.invalid/ws",
            3.0,
            [0.0, 2.0],
        ),
        # refused until 3.5: attempts at 2 (refused), 2+2=4 (ok), first frame at 5.
        (
            refuse_then_close,
            "ConnectError: cannot connect to ws://a.fake.invalid/ws: "
            "[Errno 111] fake exchange 'a' refused the connection to 'ws://a.fake.invalid/ws' "
            "(refuse() in force until t=3.5)",
            5.0,
            [0.0, 2.0, 4.0],
        ),
        (
            reject_429_then_close,
            "HandshakeRejected: ws://a.fake.invalid/ws rejected the "
            "WebSocket upgrade with HTTP 429",
            5.0,
            [0.0, 2.0, 4.0],
        ),
    ],
    ids=["close", "reset", "stall", "oversized", "refuse", "reject-429"],
)
@pytest.mark.parametrize("transport", ["fast", "reference"])
async def test_fault_recovers_with_subscription_resent(
    autojump_clock: trio.testing.MockClock,
    fault: Fault,
    error: str,
    resumed_at: float,
    attempts: list[float],
    transport: str,
) -> None:
    # Both WebSocket transports fail, recover and report alike (actors/net/_closing.py).
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        connector = RecordingConnector(fake)
        config = make_config(fake, max_message_size=1024, transport=transport)
        with trio.fail_after(60):
            async with open_supervisor(config, connector=connector) as sup:
                stream = sup.messages()
                assert data(await stream.__anext__()) == {"seq": 0, "session": 0}
                assert trio.current_time() == 1.0
                await fault(fake)
                async for msg in stream:
                    if data(msg)["session"] > 0:
                        break
                assert trio.current_time() == resumed_at
                last = fake.sessions[-1]
                assert data(msg) == {"seq": 0, "session": last.index}
                assert last.received == [SUBSCRIBE]
                stats = (await sup.stats()).connections[0]
        assert connector.times() == attempts
        assert stats.connects == 2
        assert stats.restarts == len(attempts) - 1
        assert stats.last_error == error
        assert stats.state == "live"


async def test_garbage_frame_is_counted_and_the_session_goes_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        with trio.fail_after(30):
            async with open_supervisor(make_config(fake), connector=fake.connect) as sup:
                stream = sup.messages()
                await stream.__anext__()
                await fake.garbage()
                await fake.garbage("also not json")
                await fake.garbage()
                seen = [data(await stream.__anext__()) for _ in range(2)]
                await sup.stop()
                stats = (await sup.stats()).connections[0]
    assert seen == [{"seq": 1, "session": 0}, {"seq": 2, "session": 0}]
    assert len(fake.sessions) == 1
    assert (stats.malformed, stats.messages, stats.frames, stats.restarts) == (3, 3, 6, 0)
    logged = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(logged) == 1  # once per kind of problem, not once per frame
    assert logged[0].startswith("a: dropped a malformed frame (invalid_json: ")


async def test_slow_sender_is_not_a_failure(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        with trio.fail_after(60):
            async with open_supervisor(make_config(fake), connector=fake.connect) as sup:
                stream = sup.messages()
                await stream.__anext__()
                fake.slow(4.0)  # slower than before, still within stale_after = 5
                times = []
                for _ in range(3):
                    await stream.__anext__()
                    times.append(trio.current_time())
    assert times == [5.0, 9.0, 13.0]
    assert len(fake.sessions) == 1


# -- backoff --------------------------------------------------------------------------


async def test_delays_between_attempts_are_the_configured_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        connector = RecordingConnector(fake)
        with trio.fail_after(60):
            async with open_supervisor(make_config(fake), connector=connector) as sup:
                stream = sup.messages()
                await stream.__anext__()
                fake.refuse(20.0)
                await fake.close(1001)  # at t=1
                async for msg in stream:
                    if data(msg)["session"] == 1:
                        break
                stats = (await sup.stats()).connections[0]
    # initial 1, multiplier 2, max 8: attempts at 1+1, 2+2, 4+4, 8+8, 16+8 (ok at 24 > 21).
    assert connector.times() == [0.0, 2.0, 4.0, 8.0, 16.0, 24.0]
    assert trio.current_time() == 25.0
    assert stats.backoff == 8.0
    assert stats.restarts == 5


async def test_backoff_resets_only_after_a_healthy_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=0.5) as fake:
        connector = RecordingConnector(fake)
        with trio.fail_after(60):
            async with open_supervisor(make_config(fake), connector=connector):
                # live from 0; fails at 3 (healthy 3 s < reset_after 10): delay 1.
                await trio.sleep_until(3.0)
                await fake.close(4000)
                # live from 4; fails at 4.5 (0.5 s): delay 2 (no reset on connect).
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                await trio.sleep_until(4.5)
                await fake.close(4000)
                # live from 6.5; fails at 17 (10.5 s >= 10): delay back to 1.
                await fake.wait_until(lambda f: len(f.sessions) == 3)
                await trio.sleep_until(17.0)
                await fake.close(4000)
                await fake.wait_until(lambda f: len(f.sessions) == 4)
    assert connector.times() == [0.0, 4.0, 6.5, 18.0]


# -- restart intensity ----------------------------------------------------------------


class CrashingConnector:
    """A bug in our own code: every connect raises an exception nobody typed."""

    def __init__(self) -> None:
        self.attempts: list[float] = []

    async def __call__(self, url: str) -> trio.abc.Stream:
        self.attempts.append(trio.current_time())
        raise RuntimeError(f"bug while connecting to {url}")


async def test_too_many_crashes_escalate_loudly(autojump_clock: trio.testing.MockClock) -> None:
    # Was driven by refused connects; the network no longer counts (issue 12), crashes do.
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        connector = CrashingConnector()
        config = make_config(fake, supervisor={"max_restarts": 2, "within": 60.0})
        with trio.fail_after(60), pytest.raises(RestartLimitExceeded) as raised:
            async with open_supervisor(config, connector=connector) as sup:
                await trio.sleep_forever()  # the body is cancelled by the escalation
    # crashes at 0, 1 and 3; the third restart within 60 s crosses max_restarts=2.
    assert connector.attempts == [0.0, 1.0, 3.0]
    assert trio.current_time() == 3.0
    assert raised.value.connection == "a"
    assert raised.value.last_error == (
        "RuntimeError: bug while connecting to ws://a.fake.invalid/ws"
    )
    assert str(raised.value) == (
        f"connection 'a' needed more than 2 restarts within 60 s; last error: "
        f"{raised.value.last_error}"
    )
    assert (await sup.stats()).connections[0].state == "stopped"


async def test_crashes_spread_wider_than_the_window_never_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        connector = CrashingConnector()
        config = make_config(
            fake,
            supervisor={"max_restarts": 1, "within": 5.0},
            backoff={"initial": 5.0, "multiplier": 1.0},
        )
        with trio.fail_after(60):
            async with open_supervisor(config, connector=connector) as sup:
                await trio.sleep_until(32.0)
                stats = (await sup.stats()).connections[0]
    # one restart every 5 s: each window (t-5, t] holds exactly one.
    assert connector.attempts == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    assert stats.restarts == 7  # one per failed attempt, 30 included


async def test_a_ten_minute_outage_never_escalates_and_follows_the_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Every connect is refused for 10 minutes with a tight restart limit: the network's
    # failures are waited out with the backoff, not counted (issue 12).
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        fake.refuse(600.0)
        connector = RecordingConnector(fake)
        config = make_config(
            fake,
            supervisor={"max_restarts": 2, "within": 60.0},
            backoff={"initial": 1.0, "max": 60.0, "multiplier": 2.0},
        )
        with trio.fail_after(900):
            async with open_supervisor(config, connector=connector) as sup:
                await anext(sup.messages())  # live again: data flows
                stats = (await sup.stats()).connections[0]
    # 1, 2, 4, ... 32 s, then the 60 s cap, until the refusals end at 600 s.
    assert connector.times() == [
        0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 123.0, 183.0, 243.0, 303.0, 363.0, 423.0,
        483.0, 543.0, 603.0,
    ]  # fmt: skip
    assert stats.state == "live"
    assert stats.restarts == 15


async def test_an_outage_over_real_sockets_never_escalates() -> None:
    # The same outage over loopback TCP with the real clock: every connect is reset for
    # 3 s (a venue that refuses), then a 503 at the upgrade for 1 s, with a restart limit
    # the attempts would cross many times over if they counted.
    async with open_fake_exchange(name="a", transport="tcp", interval=0.05) as fake:
        fake.refuse(3.0)
        config = make_config(
            fake,
            supervisor={"max_restarts": 1, "within": 60.0},
            backoff={"initial": 0.05, "max": 0.2, "multiplier": 2.0},
        )
        with trio.fail_after(30):
            async with open_supervisor(config) as sup:
                await fake.wait_until(lambda f: f.refused >= 5)
                fake.refuse(1.0, status=503)
                message = await anext(sup.messages())  # live again: data flows
                stats = (await sup.stats()).connections[0]
    assert message.connection == "a"
    assert fake.refused > 5  # resets, then 503s: all waited out
    assert (stats.state, stats.connects) == ("live", 1)
    assert stats.restarts == fake.refused
    assert stats.last_error.startswith("HandshakeRejected: ") and "HTTP 503" in stats.last_error


# -- failure classes --------------------------------------------------------------------


async def test_a_4xx_handshake_is_shown_failed_after_3_and_retried_at_the_cap(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        open_fake_exchange(name="a", transport="memory", interval=1.0) as bad,
        open_fake_exchange(name="b", transport="memory", interval=1.0) as good,
    ):
        bad.refuse(1e6, status=403)
        connector = RecordingConnector(bad, good)
        config = make_config(bad, good, backoff={"initial": 1.0, "max": 30.0, "multiplier": 2.0})
        with trio.fail_after(300):
            async with open_supervisor(config, connector=connector) as sup:
                await trio.sleep_until(100.0)
                stats = {c.name: c for c in (await sup.stats()).connections}
    # 1 s, 2 s, then the third refusal: failed, retried every 30 s (the cap).
    assert connector.times(bad.url) == [0.0, 1.0, 3.0, 33.0, 63.0, 93.0]
    assert stats["a"].state == "failed"
    assert stats["a"].last_error.startswith("HandshakeRejected: ")
    assert stats["b"].state == "live"  # the sibling keeps delivering
    assert stats["b"].messages > 90
    lines = [r.getMessage() for r in caplog.records if "refused 3 times" in r.getMessage()]
    assert lines == [
        f"a: {bad.url} refused 3 times in a row the way a wrong configuration does "
        f"(HandshakeRejected: {bad.url} rejected the WebSocket upgrade with HTTP 403); "
        "shown as failed, retried every 30 s (check url, symbols and network route)"
    ]


async def test_429_at_the_handshake_is_waited_out_not_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        fake.refuse(20.0, status=429)
        connector = RecordingConnector(fake)
        config = make_config(fake, backoff={"initial": 1.0, "max": 30.0, "multiplier": 2.0})
        with trio.fail_after(300):
            async with open_supervisor(config, connector=connector) as sup:
                await trio.sleep_until(18.0)
                during = (await sup.stats()).connections[0].state
                await anext(sup.messages())  # live again: data flows
                after = (await sup.stats()).connections[0].state
    assert connector.times() == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0]
    assert (during, after) == ("backoff", "live")


# -- strategies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [
        ("one_for_one", ["b"]),
        ("one_for_all", ["a", "b", "c"]),
        ("rest_for_one", ["b", "c"]),
    ],
)
async def test_strategy_restarts_the_right_siblings(
    autojump_clock: trio.testing.MockClock, strategy: str, restarted: list[str]
) -> None:
    async with (
        open_fake_exchange(name="a", transport="memory", interval=1.0) as a,
        open_fake_exchange(name="b", transport="memory", interval=1.0) as b,
        open_fake_exchange(name="c", transport="memory", interval=1.0) as c,
    ):
        fakes = {"a": a, "b": b, "c": c}
        connector = RecordingConnector(a, b, c)
        config = make_config(a, b, c, supervisor={"strategy": strategy})
        with trio.fail_after(60):
            async with open_supervisor(config, connector=connector) as sup:
                await trio.sleep_until(1.5)
                await b.close(4000)
                for name in restarted:
                    await fakes[name].wait_until(lambda f: len(f.sessions) == 2)
                await trio.sleep_until(10.0)
                stats = {s.name: s for s in (await sup.stats()).connections}
        for name, fake in fakes.items():
            expected = 2 if name in restarted else 1
            assert len(fake.sessions) == expected, name
            assert stats[name].connects == expected
            assert fake.sessions[-1].received == [SUBSCRIBE]
            if name in restarted and name != "b":
                # a sibling restarted with b is closed cleanly by us first
                assert fake.sessions[0].close_code == 1000
            if name in restarted:
                assert connector.times(fake.url) == [0.0, 2.5]


# -- slow consumers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overflow", "expected_seqs", "dropped"),
    [
        # frame k arrives at t=k+1; the consumer takes 0, then sleeps until 10.5.
        # The buffer (2) holds two of frames 1-9 (nothing waits outside it), the other
        # seven are dropped.
        ("drop_newest", [0, 1, 2, 10, 11, 12], 7),
        ("drop_oldest", [0, 8, 9, 10, 11, 12], 7),
        ("block", [0, 1, 2, 3, 4, 5], 0),
    ],
)
async def test_slow_consumer_under_each_overflow_policy(
    autojump_clock: trio.testing.MockClock, overflow: str, expected_seqs: list[int], dropped: int
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        config = make_config(fake, overflow=overflow, buffer=2)
        with trio.fail_after(60):
            async with open_supervisor(config, connector=fake.connect) as sup:
                stream = sup.messages()
                seqs = [data(await stream.__anext__())["seq"]]
                await trio.sleep_until(10.5)  # a consumer busy for 9.5 s > stale_after
                for _ in range(5):
                    seqs.append(data(await stream.__anext__())["seq"])
                await sup.stop()
                stats = (await sup.stats()).connections[0]
    assert seqs == expected_seqs
    assert stats.dropped == dropped
    # a busy consumer is not a stale feed: one session throughout
    assert len(fake.sessions) == 1
    assert stats.restarts == 0


# -- shutdown -------------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _all_tasks() -> set[trio.lowlevel.Task]:
    tasks: set[trio.lowlevel.Task] = set()
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        assert task is not None
        tasks.add(task)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return tasks


async def test_clean_shutdown_over_tcp_leaves_no_task_and_no_socket() -> None:
    async with (
        open_fake_exchange(name="a", interval=0.01) as a,
        open_fake_exchange(name="b", interval=0.01) as b,
    ):
        tasks_before = _all_tasks()
        fds_before = _open_fds()
        with trio.fail_after(10):
            async with open_supervisor(make_config(a, b)) as sup:
                names = set()
                async for msg in sup.messages():
                    names.add(msg.connection)
                    if names == {"a", "b"}:
                        break
        for fake in (a, b):
            assert len(fake.sessions) == 1
            assert fake.sessions[0].close_code == 1000
            await fake.wait_until(lambda f: not f.sessions[0].open)
        leftover = {t.name for t in _all_tasks() - tasks_before}
        # the fakes accept and serve on tasks of their own; nothing of ours may remain
        assert {n for n in leftover if "testing" not in n and "serve" not in n} == set()
        assert _open_fds() == fds_before


async def test_stop_is_bounded_by_shutdown_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        with trio.fail_after(30):
            async with open_supervisor(make_config(fake), connector=fake.connect) as sup:
                await sup.messages().__anext__()
                fake.stall()  # the peer will never answer our close frame
                started = trio.current_time()
                await sup.stop()
                assert trio.current_time() - started == 1.0  # shutdown_timeout
                async for _ in sup.messages():
                    pytest.fail("the message stream must end after stop()")
        assert fake.sessions[0].received == [SUBSCRIBE]


async def test_cancelling_the_caller_still_closes_cleanly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        with trio.move_on_after(2.5):
            async with open_supervisor(make_config(fake), connector=fake.connect):
                await trio.sleep_forever()
        await fake.wait_until(lambda f: not f.sessions[0].open)
        assert fake.sessions[0].close_code == 1000


# -- manual restart, restart types ----------------------------------------------------


async def test_manual_restart_is_immediate_and_not_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        connector = RecordingConnector(fake)
        config = make_config(fake, supervisor={"max_restarts": 0})
        with trio.fail_after(30):
            async with open_supervisor(config, connector=connector) as sup:
                await trio.sleep_until(2.5)
                await sup.restart("a")
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                with pytest.raises(
                    ValueError, match=r"^no connection named 'x' \(connections: a\)$"
                ):
                    await sup.restart("x")
        assert connector.times() == [0.0, 2.5]
        assert fake.sessions[0].close_code == 1000


@pytest.mark.parametrize(
    ("restart", "code", "restarted"),
    [
        ("temporary", 4000, False),
        ("transient", 4000, True),
        ("transient", 1000, False),  # a normal close ends a transient connection
        ("permanent", 1000, True),
    ],
)
async def test_restart_types(
    autojump_clock: trio.testing.MockClock, restart: str, code: int, restarted: bool
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        config = make_config(fake, restart=restart)
        with trio.fail_after(30):
            async with open_supervisor(config, connector=fake.connect) as sup:
                stream = sup.messages()
                await stream.__anext__()
                await fake.close(code)
                if restarted:
                    await fake.wait_until(lambda f: len(f.sessions) == 2)
                    await sup.stop()
                else:
                    # the only connection stopped for good: the stream ends by itself
                    async for _ in stream:
                        pytest.fail("no message after the connection stopped")
                stats = (await sup.stats()).connections[0]
    assert len(fake.sessions) == (2 if restarted else 1)
    assert stats.state == "stopped"


# -- pacing and deadlines -------------------------------------------------------------


async def test_connect_permits_pace_connections_per_host(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        connector = RecordingConnector(fake)
        config = make_config(
            fake,
            supervisor={"connect_attempts": 2, "connect_interval": 1.0},
            per_connection={},
        )
        five = config.connections[0]
        config = msgspec.structs.replace(
            config,
            connections=tuple(msgspec.structs.replace(five, name=f"c{i}") for i in range(5)),
        )
        with trio.fail_after(30):
            async with open_supervisor(config, connector=connector):
                await fake.wait_until(lambda f: len(f.sessions) == 5)
    assert connector.times() == [0.0, 0.0, 1.0, 1.0, 2.0]


async def test_connect_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async def hang(url: str) -> trio.abc.Stream:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        config = make_config(fake, connect_timeout=2.0, supervisor={"max_restarts": 0})
        with trio.fail_after(30):
            async with open_supervisor(config, connector=hang) as sup:
                await trio.sleep_until(2.5)  # the first attempt timed out at 2.0
                stats = (await sup.stats()).connections[0]
    # A timeout is the network's failure: retried, never escalated (max_restarts = 0).
    assert stats.last_error == (
        "ConnectError: connecting to ws://a.fake.invalid/ws took longer than 2 s"
    )
    assert (stats.state, stats.restarts) == ("backoff", 1)


async def test_a_bug_is_a_crash_logged_with_traceback_and_restarted(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        calls = 0

        async def buggy_once(url: str) -> trio.abc.Stream:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise KeyError("bug")
            return await fake.connect(url)

        with trio.fail_after(30):
            async with open_supervisor(make_config(fake), connector=buggy_once) as sup:
                msg = await sup.messages().__anext__()
                assert trio.current_time() == 2.0  # crash at 0, backoff 1, frame 1 s later
                stats = (await sup.stats()).connections[0]
    assert data(msg) == {"seq": 0, "session": 0}
    assert stats.restarts == 1
    assert stats.last_error == "KeyError: 'bug'"
    crash = [r for r in caplog.records if r.levelno == logging.ERROR]
    # one line for the crash, saying what happens next
    assert [r.getMessage() for r in crash] == [
        "a: crashed: KeyError: 'bug'; reconnecting in 1.00 s (attempt 1)"
    ]
    assert crash[0].exc_info is not None


# -- regressions found in review ------------------------------------------------------


@pytest.mark.parametrize("checkpoints", range(6))
async def test_stop_while_permit_requests_are_queued(
    autojump_clock: trio.testing.MockClock, checkpoints: int
) -> None:
    # A stop abandons permit requests still queued at the registry; answering them
    # must not kill the registry (which used to hang the shutdown forever).
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        config = make_config(fake)
        many = tuple(
            msgspec.structs.replace(config.connections[0], name=f"c{i}") for i in range(10)
        )
        config = msgspec.structs.replace(config, connections=many)
        with trio.fail_after(30):
            async with open_supervisor(config, connector=fake.connect) as sup:
                for _ in range(checkpoints):
                    await trio.lowlevel.checkpoint()
                await sup.stop()
                stats = await sup.stats()
    assert [s.state for s in stats.connections] == ["stopped"] * 10


async def test_abandoned_stats_requests_do_not_break_the_registry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        with trio.fail_after(30):
            async with open_supervisor(make_config(fake), connector=fake.connect) as sup:
                async with trio.open_nursery() as nursery:
                    for _ in range(3):
                        nursery.start_soon(sup.stats)
                    await trio.lowlevel.checkpoint()
                    nursery.cancel_scope.cancel()
                msg = await sup.messages().__anext__()
                await sup.stop()
                assert (await sup.stats()).connections[0].messages == 1
    assert data(msg) == {"seq": 0, "session": 0}


async def test_stats_racing_stop_always_returns_and_then_the_final_stats(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Audit M6: a request queued after stop's final snapshot was answered, but before
    # the registry was cancelled, was never answered: stats() hung for ever. Pollers
    # spin on stats() while stop() runs; each trial starts stop() a few scheduling
    # steps later, so the calls land on every step of the shutdown.
    calls = hung = 0
    for trial in range(24):
        start = trio.current_time()
        async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
            with trio.fail_after(30):
                async with open_supervisor(make_config(fake), connector=fake.connect) as sup:
                    await sup.messages().__anext__()
                    after_stop: list[Stats] = []

                    async def poll(sup: Supervisor = sup, after: list[Stats] = after_stop) -> None:
                        nonlocal calls, hung
                        while not sup.finished.is_set():
                            calls += 1
                            with trio.move_on_after(5.0) as waited:
                                stats = await sup.stats()
                            if waited.cancelled_caught:
                                hung += 1
                                return
                            if sup.finished.is_set():
                                after.append(stats)

                    async with trio.open_nursery() as nursery:
                        for _ in range(8):
                            nursery.start_soon(poll)
                        for _ in range(trial):
                            await trio.lowlevel.checkpoint()
                        await sup.stop()
                    final = await sup.stats()
            # every answer given once the supervisor had finished is the final snapshot
            assert after_stop
            assert all(stats is final for stats in after_stop)
            assert [c.state for c in final.connections] == ["stopped"]
            assert trio.current_time() == start + 1.0  # the first frame; no deadline hit
    assert hung == 0
    assert calls > 24 * 8  # every poller asked at least once per trial


@pytest.mark.parametrize("concurrent", [False, True])
async def test_repeated_manual_restarts_never_overlap_sessions(
    autojump_clock: trio.testing.MockClock, concurrent: bool
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        config = make_config(fake, supervisor={"max_restarts": 0})
        with trio.fail_after(30):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await sup.messages().__anext__()
                fake.stall()  # our close frame goes unanswered until close_timeout (1 s)
                if concurrent:
                    async with trio.open_nursery() as nursery:
                        for _ in range(8):  # more than a fixed-size exit queue held
                            nursery.start_soon(sup.restart, "a")
                else:
                    await sup.restart("a")
                    await sup.restart("a")
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                # the successor connected only after the first session was closed
                assert trio.current_time() == 2.0
                fake.resume()
                msg = await sup.messages().__anext__()
                stats = (await sup.stats()).connections[0]
    assert data(msg) == {"seq": 0, "session": 1}
    assert len(fake.sessions) == 2
    assert stats.last_error == ""  # no session collided with another


async def test_failed_handshakes_leak_no_socket() -> None:
    async with open_fake_exchange(name="a", interval=1.0) as fake:
        fake.refuse(1e6, status=429)
        config = make_config(
            fake, supervisor={"max_restarts": 2}, backoff={"initial": 0.01, "max": 0.01}
        )
        fds_before = _open_fds()
        with trio.fail_after(10):
            async with open_supervisor(config):
                await fake.wait_until(lambda f: f.refused >= 3)
        assert fake.refused >= 3
        assert _open_fds() == fds_before


async def test_a_batch_is_continued_by_the_next_loop() -> None:
    from supervisor import MessageStream, Supervisor, config_from_dict

    # every messages() call hands out the one iterator that holds the current batch
    config = config_from_dict(
        {"connections": {"a": {"exchange": "raw", "url": "ws://example.invalid/ws"}}}
    )
    sup = Supervisor(config)
    assert sup.messages() is sup.messages()

    send, receive = trio.open_memory_channel[tuple[RawMessage, ...]](1)
    stream = MessageStream(receive)
    batch = tuple(
        RawMessage(connection="a", exchange="raw", received_at=0.0, data=n) for n in range(3)
    )
    await send.send(batch)
    await send.aclose()
    async for msg in stream:
        assert msg.data == 0
        break
    assert [msg.data async for msg in stream] == [1, 2]


async def test_a_cancelled_next_consumes_nothing(autojump_clock: trio.testing.MockClock) -> None:
    # Audit M5: the buffered path took the message before checking for cancellation,
    # so a deadline expiring mid-batch lost the message the cancelled call had taken.
    from supervisor import MessageStream

    send, receive = trio.open_memory_channel[tuple[RawMessage, ...]](1)
    stream = MessageStream(receive)
    batch = tuple(
        RawMessage(connection="a", exchange="raw", received_at=0.0, data=n) for n in range(3)
    )
    await send.send(batch)
    with trio.fail_after(1):
        got = [(await stream.__anext__()).data]
        with trio.CancelScope() as scope:
            scope.cancel()
            await stream.__anext__()  # mid-batch: raises Cancelled, takes nothing
        assert scope.cancelled_caught
        got.append((await stream.__anext__()).data)
        assert got == [0, 1]
        got.append((await stream.__anext__()).data)
        with trio.CancelScope() as scope:
            scope.cancel()
            await stream.__anext__()  # batch used up: the channel receive is atomic too
        assert scope.cancelled_caught
        await send.send(batch)
        await send.aclose()
        got.extend([msg.data async for msg in stream])
    assert got == [0, 1, 2, 0, 1, 2]


async def test_websocket_pings_alone_keep_a_quiet_connection_alive(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Binance-style: the server pings every 10 s and sends no data at all. The
    # connection is alive (the exchange's own heartbeat says so): no stale restart.
    async def pinger(io: SessionIO) -> None:
        await io.receive()  # the subscribe frame
        while True:
            await trio.sleep(10.0)
            await io.ping(b"hb")

    async with open_fake_exchange(name="a", transport="memory", handler=pinger) as fake:
        config = make_config(fake, stale_after=15.0)
        with trio.fail_after(300):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await trio.sleep_until(100.0)
                quiet = (await sup.stats()).connections[0]
                fake.stall()  # now truly silent: stale 15 s after the last ping (t=100)
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                assert trio.current_time() == 116.0  # stale at 115, backoff 1 s
    assert (quiet.restarts, quiet.state) == (0, "live")


async def test_a_frame_that_makes_the_adapter_raise_is_counted_not_fatal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        with trio.fail_after(30):
            async with open_supervisor(make_config(fake), connector=fake.connect) as sup:
                stream = sup.messages()
                await stream.__anext__()
                await fake.garbage("[" * 5000 + "]" * 5000)  # RecursionError in decoding
                after = await stream.__anext__()
                await sup.stop()
                stats = (await sup.stats()).connections[0]
    assert data(after) == {"seq": 1, "session": 0}
    assert (stats.malformed, stats.restarts, len(fake.sessions)) == (1, 0, 1)


async def test_a_fake_connection_rate_limit_rejects_a_burst_with_429(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(
        name="a", transport="memory", interval=1.0, max_connects=(3, 1.0)
    ) as fake:
        connector = RecordingConnector(fake)
        config = make_config(fake, supervisor={"connect_attempts": 10, "connect_interval": 1.0})
        five = tuple(msgspec.structs.replace(config.connections[0], name=f"c{i}") for i in range(5))
        config = msgspec.structs.replace(config, connections=five)
        with trio.fail_after(30):
            async with open_supervisor(config, connector=connector) as sup:
                await fake.wait_until(lambda f: len(f.sessions) == 5)
                stats = (await sup.stats()).connections
    assert fake.refused == 2  # attempts 4 and 5 of the first second
    assert sorted(s.last_error for s in stats)[-1] == (
        "HandshakeRejected: ws://a.fake.invalid/ws rejected the WebSocket upgrade with HTTP 429"
    )


def test_which_failures_look_like_a_wrong_configuration() -> None:
    from actors import ConnectError, ConnectionLost, HandshakeRejected
    from supervisor.tree import _config_shaped, _expected

    def raised(error: Exception, cause: BaseException) -> Exception:
        try:
            raise error from cause
        except Exception as exc:
            return exc

    verification = ssl.SSLCertVerificationError(1, "certificate verify failed")
    bad_cert = raised(ConnectError("cannot connect to wss://x/ws: TLS"), verification)
    refused = raised(ConnectError("cannot connect to wss://x/ws"), ConnectionRefusedError())
    assert [
        _config_shaped(error)
        for error in (
            HandshakeRejected("403", status=403),
            HandshakeRejected("451", status=451),
            HandshakeRejected("429", status=429),
            HandshakeRejected("408", status=408),
            HandshakeRejected("503", status=503),
            bad_cert,
            refused,
            ConnectionLost("gone", code=1006),
        )
    ] == [True, True, False, False, False, True, False, False]
    assert _expected(ExceptionGroup("both", [bad_cert, ConnectionLost("x", code=1001)]))
    assert not _expected(ExceptionGroup("mixed", [refused, RuntimeError("bug")]))
