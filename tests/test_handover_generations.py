"""Make-before-break after make-before-break: every generation of successor handles an
announced disconnect as the first session does (audit H2), and notices whose successors
fail leave nothing behind (audit L1).

The venue fake gives every session the same ids for the same (virtual) second, as
sessions of a real exchange see one venue, and announces to and closes one session at a
time, as a real exchange does when it drains one server.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
from handover_venue import Dialler, Venue

from supervisor import Config, Trade, config_from_dict, open_supervisor
from supervisor.testing import open_fake_exchange

URL = "ws://binance.fake.invalid/stream"


def make_config(**keys: Any) -> Config:
    return config_from_dict(
        {
            "supervisor": {"shutdown_timeout": 1.0},
            "connections": {
                "b": {
                    "exchange": "binance",
                    "url": URL,
                    "channels": ["trades"],
                    "symbols": ["BTC-USDT"],
                    "stale_after": 5.0,
                    "backoff": {"initial": 4.0, "jitter": "none"},
                    **keys,
                }
            },
        },
        source="<test>",
    )


def ids(messages: list[Any]) -> list[int]:
    return [int(m.trade_id) for m in messages if isinstance(m, Trade)]


def assert_each_once(got: list[int]) -> None:
    """Every id from the first to the last, each exactly once, in order."""
    assert got == list(range(got[0], got[0] + len(got))), got


@pytest.mark.parametrize(
    "orders",
    [
        ["before"] * 4,
        ["after"] * 4,
        ["never"] * 4,
        ["before", "after", "before", "after"],
        ["after", "before", "after", "before"],
        ["never", "before", "after", "never"],
    ],
    ids="-".join,
)
async def test_every_generation_hands_over_an_announced_disconnect_without_loss(
    autojump_clock: trio.testing.MockClock, orders: list[str]
) -> None:
    # Generation g (session g) is announced; the exchange then closes it at once
    # ("before" its successor connected), once its successor is live ("after": the old
    # session lags 0.9 s so the successor is ahead of it), or never (we close it at the
    # switch).
    venue = Venue()
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=venue
    ) as fake:
        dial = Dialler(fake)
        got: list[Any] = []
        with trio.fail_after(200):
            async with open_supervisor(make_config(), connector=dial) as sup:
                stream = sup.messages()
                got.append(await stream.__anext__())
                for g, order in enumerate(orders):
                    if order == "after":
                        dial.streams[g].delay = 0.9
                    await venue.announce(g)
                    if order == "before":
                        venue.close_session(g)
                    elif order == "after":
                        await fake.wait_until(
                            lambda f, g=g: len(f.sessions) == g + 2 and f.sessions[g + 1].sent > 0
                        )
                        assert fake.sessions[g].open  # still delivering, behind its successor
                        venue.close_session(g)
                    await fake.wait_until(
                        lambda f, g=g: len(f.sessions) == g + 2 and not f.sessions[g].open
                    )
                    until = trio.current_time() + 6.0
                    while trio.current_time() < until:
                        got.append(await stream.__anext__())
                stats = (await sup.stats()).connections[0]
    assert_each_once(ids(got))
    assert len(dial.times) == len(orders) + 1
    assert (stats.state, stats.connects, stats.restarts, stats.last_error) == (
        "live",
        len(orders) + 1,
        0,
        "",
    )
    for g, order in enumerate(orders):
        # The exchange closed the "before"/"after" ones (no close code from us); the
        # "never" ones we closed at the switch, normally.
        assert fake.sessions[g].close_code == (1000 if order == "never" else None), (g, order)


@pytest.mark.parametrize("generation", [0, 1, 2, 3])
async def test_a_failed_successor_in_any_generation_means_reconnect_at_once(
    autojump_clock: trio.testing.MockClock, generation: int
) -> None:
    # After `generation` clean handovers, the next notice's successor is refused; the
    # exchange closes the announcing session 1 s later: ServerClosing, delay 0.
    venue = Venue()
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=venue
    ) as fake:
        dial = Dialler(fake)
        with trio.fail_after(100):
            async with open_supervisor(make_config(), connector=dial) as sup:
                stream = sup.messages()
                await stream.__anext__()  # t=1
                for g in range(generation):
                    await venue.announce(g)
                    await fake.wait_until(
                        lambda f, g=g: len(f.sessions) == g + 2 and not f.sessions[g].open
                    )
                    await stream.__anext__()
                fake.refuse(2.0, status=503)
                refused_at = trio.current_time()
                await venue.announce(generation)
                await fake.wait_until(lambda f: f.refused == 1)
                await trio.sleep_until(refused_at + 1.0)
                venue.close_session(generation)
                await fake.wait_until(lambda f: f.refused == 2)
                while trio.current_time() < refused_at + 6.0:  # the new session's first
                    await stream.__anext__()
                stats = (await sup.stats()).connections[0]
    start = 1.0 + generation  # each clean handover takes one second of trades
    assert refused_at == start
    # successor refused at `start`; the announced close at start + 1 is restarted at
    # once (refused again, still inside the 2 s refusal), then after the 4 s backoff.
    assert dial.times == [0.0, *[1.0 + g for g in range(generation)], start, start + 1, start + 5]
    assert (stats.connects, stats.restarts) == (generation + 2, 2)


async def test_notices_whose_successors_fail_leave_nothing_behind(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Audit L1: each abandoned handover used to wrap the session's delivery once more
    # (RecursionError after ~990 notices) and keep its state, so that a later ordinary
    # loss was reported as the announced close.
    caplog.set_level(logging.ERROR)
    venue = Venue()
    notices = 1200
    got: list[Any] = []

    async def consume(stream: Any) -> None:
        async for message in stream:
            got.append(message)

    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=venue
    ) as fake:
        dial = Dialler(fake)
        with trio.fail_after(10_000):
            async with (
                open_supervisor(make_config(stale_after=30.0), connector=dial) as sup,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(consume, sup.messages())
                await fake.wait_until(lambda f: f.sessions and f.sessions[0].sent > 0)
                actor = sup._children[0].actor
                session = actor._session
                assert session is not None
                assert session.deliver == actor.queue.put
                fake.refuse(10**9, status=503)
                for i in range(notices):
                    await venue.announce(0)
                    await fake.wait_until(lambda f, i=i: f.refused == i + 1)
                    await trio.testing.wait_all_tasks_blocked()
                    # the successor was given up: delivery is the queue's put again
                    assert actor._handover is None
                    assert session.deliver == actor.queue.put
                last_notice = trio.current_time()
                assert actor._session is session
                fake.refuse(0)
                await trio.sleep_until(last_notice + 601.0)  # past DEFAULT_ANNOUNCED_FOR
                await fake.reset()  # an ordinary loss, long after the last notice
                lost_at = trio.current_time()
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                stats = (await sup.stats()).connections[0]
                nursery.cancel_scope.cancel(reason="test over")
    # Binance allows 300 connects per 5 min: the 1201st attempt waits until t=1200.
    assert (last_notice, lost_at) == (1200.0, 1801.0)
    # the first session delivered every trade from t=1 until the reset, once
    assert ids(got) == list(range(1_000_001, 1_001_801))
    assert len(dial.times) == notices + 2
    assert dial.times[-1] == lost_at + 4.0  # the backoff, not the announced delay 0
    assert stats.last_error.startswith("ConnectionLost: "), stats.last_error
    assert [r.getMessage() for r in caplog.records] == []  # no crash, no traceback


async def test_a_notice_while_the_last_switch_still_filters_is_tracked_all_the_same(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Session 1 runs 3 s behind the venue, so after the first switch (t=2) its trades
    # are checked against session 0's last (id 2) until it passes it (id 3, at t=6).
    # It hears its own notice at t=5; the end of that filter must not end the tracking
    # of the second handover too. (It used to replace the whole delivery from t=7 on, so
    # the switch to session 2, whose first id is 6, waited 10 s for session 1 to reach
    # 5 and then delivered again what session 1 had.)
    venue = Venue()
    venue.behind[1] = 3
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=venue
    ) as fake:
        dial = Dialler(fake)
        got: list[Any] = []
        with trio.fail_after(60):
            async with open_supervisor(make_config(), connector=dial) as sup:
                actor = sup._children[0].actor
                stream = sup.messages()
                got.append(await stream.__anext__())  # t=1
                await venue.announce(0)
                await fake.wait_until(lambda f: len(f.sessions) == 2 and not f.sessions[0].open)
                await trio.testing.wait_all_tasks_blocked()  # the switch is done
                assert (trio.current_time(), actor._filtering is not None) == (2.0, True)
                await trio.sleep_until(5.0)
                await venue.announce(1)
                await fake.wait_until(lambda f: len(f.sessions) == 3 and not f.sessions[1].open)
                switched_at = trio.current_time()
                while trio.current_time() < 20.0:
                    got.append(await stream.__anext__())
                stats = (await sup.stats()).connections[0]
    assert_each_once(ids(got))
    assert switched_at == 8.0  # session 1 delivered id 5, right before session 2's first
    assert (stats.connects, stats.restarts, dial.times) == (3, 0, [0.0, 1.0, 5.0])
