"""The asyncio front door (``supervisor.aio``) end to end, over loopback TCP.

Each test is a plain function that runs its asyncio program with ``asyncio.Runner`` (on
asyncio's own loop, and on uvloop's where the ``run`` fixture says so) against a fake
exchange served by ``trio.run`` in a thread of its own (:class:`aio_helpers.FakeThread`):
the one Trio run of the test's thread is the supervisor's guest. No MockClock fits under
a real asyncio loop, so these tests wait for events and state only (a state polled
through ``await sup.stats()``, each poll one round trip through the guest), never for
time; every program runs under a 30 s ``asyncio.timeout``. The fake's default payload is
``{"seq": N, "session": K}``.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import trio
from aio_helpers import FakeThread, one_byte_reads, open_fds
from helpers import make_config

from supervisor import (
    BookDelta,
    BookSnapshot,
    ConfigError,
    ConnectError,
    GaveUp,
    Message,
    RawMessage,
    RestartLimitExceeded,
    SubscriptionRefused,
    Trade,
    config_from_dict,
)
from supervisor import open_supervisor as open_trio_supervisor
from supervisor.aio import AioSupervisor, open_supervisor
from supervisor.testing import FakeOkx, SessionIO

try:
    import uvloop
except ImportError:  # pragma: no cover - the test extra installs it
    uvloop = None

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]

DEADLINE = 30.0


@pytest.fixture(
    params=[
        "asyncio",
        pytest.param(
            "uvloop",
            marks=pytest.mark.skipif(
                uvloop is None, reason="uvloop is not installed (pip install uvloop)"
            ),
        ),
    ]
)
def run(request: pytest.FixtureRequest) -> Run[Any]:
    """Runs a coroutine to completion on a fresh loop of the parametrized kind."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else None

    def run(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)

    return run


def data(msg: object) -> dict[str, Any]:
    assert isinstance(msg, RawMessage)
    assert isinstance(msg.data, dict)
    return msg.data


async def wait_state(sup: AioSupervisor, state: str) -> None:
    """Poll the first connection's state through the bridge (no timers involved)."""
    while (await sup.stats()).connections[0].state != state:
        pass


# -- the handle ------------------------------------------------------------------------


def test_messages_batches_stats_restart_and_stop_cross_the_bridge(run: Run[None]) -> None:
    with FakeThread(name="a", interval=0.01) as fake:

        async def main() -> None:
            async with asyncio.timeout(DEADLINE), open_supervisor(make_config(fake.fake)) as sup:
                got = []
                async for msg in sup.messages():
                    assert (msg.connection, msg.exchange) == ("a", "raw")
                    got.append(data(msg))
                    if len(got) == 3:
                        break
                assert got == [{"seq": n, "session": 0} for n in range(3)]
                batch = await anext(sup.batches())
                assert isinstance(batch, tuple)
                # One read's frames (one, unless the machine was slow to read them).
                assert [data(m) for m in batch] == [
                    {"seq": n, "session": 0} for n in range(3, 3 + len(batch))
                ]
                assert sup.messages() is sup.messages()
                assert sup.batches() is sup.batches()
                assert sup.config.connections[0].name == "a"
                stats = (await sup.stats()).connections[0]
                assert (stats.name, stats.state, stats.connects) == ("a", "live", 1)

                await sup.restart("a")
                async for msg in sup.messages():
                    if data(msg)["session"] == 1:
                        break
                with pytest.raises(
                    ValueError, match=r"^no connection named 'b' \(connections: a\)$"
                ):
                    await sup.restart("b")

                await sup.stop()
                async for _ in sup.messages():
                    pass  # what was queued, then the end
                with pytest.raises(StopAsyncIteration):
                    await anext(sup.messages())
                stats = (await sup.stats()).connections[0]
                assert (stats.state, stats.connects) == ("stopped", 2)
                await sup.stop()  # idempotent
            await fake.wait_until(lambda f: not any(s.open for s in f.sessions))

        run(main())
    assert [s.close_code for s in fake.fake.sessions] == [1000, 1000]


def test_book_is_a_plain_call_raising_the_trio_error(run: Run[None]) -> None:
    with FakeThread(name="a", interval=0.01) as fake:

        async def main() -> None:
            async with asyncio.timeout(DEADLINE), open_supervisor(make_config(fake.fake)) as sup:
                with pytest.raises(
                    ValueError,
                    match=r"^connection 'a' keeps no local book for 'BTC-USDT' \(it keeps none",
                ):
                    sup.book("a", "BTC-USDT")
                with pytest.raises(ValueError, match=r"^no connection named 'b'"):
                    sup.book("b", "BTC-USDT")

        run(main())


def test_book_is_a_live_view_read_on_the_loops_thread(run: Run[None]) -> None:
    with FakeThread(name="okx", interval=0.05, handler=FakeOkx()) as fake:
        config = config_from_dict(
            {
                "connections": {
                    "okx": {
                        "exchange": "okx",
                        "url": f"{fake.url}/ws/v5/public",
                        "channels": ["book"],
                        "symbols": ["BTC-USDT"],
                    }
                }
            },
            source="<test>",
        )

        async def main() -> None:
            async with asyncio.timeout(DEADLINE), open_supervisor(config) as sup:
                snapshot = None
                async for msg in sup.messages():
                    if isinstance(msg, BookSnapshot):
                        snapshot = msg
                        break
                assert snapshot is not None and snapshot.sequence is not None
                view = sup.book("okx", "BTC-USDT")  # no await: a plain call
                assert view.valid
                assert view.sequence is not None and view.sequence >= snapshot.sequence
                assert view.best_bid() == view.bids()[0]
                # The same view follows the book as the guest applies later updates.
                async for msg in sup.messages():
                    if isinstance(msg, BookDelta):
                        assert msg.sequence is not None
                        assert view.sequence >= msg.sequence
                        break

        run(main())


# -- backpressure ----------------------------------------------------------------------

#: Frames of the burst and the connection's ``buffer`` (batches; one frame each, read
#: one byte at a time: see aio_helpers.OneByteReads).
BURST, BUFFER = 50, 4


async def burst(io: SessionIO) -> None:
    """Answer the subscribe with ``BURST`` frames at once, then close normally."""
    await io.receive()
    for seq in range(BURST):
        await io.send(f'{{"seq":{seq}}}')
    io.close(1000)


def burst_config(fake: FakeThread, overflow: str) -> Any:
    return make_config(fake.fake, buffer=BUFFER, overflow=overflow, restart="temporary")


async def slow_trio_consumer(fake: FakeThread, overflow: str) -> tuple[list[int], int]:
    # Reads nothing until the supervisor stopped (the burst and the close are in).
    config = burst_config(fake, overflow)
    async with open_trio_supervisor(config, connector=one_byte_reads) as sup:
        await sup.finished.wait()
        seqs = [data(m)["seq"] async for m in sup.messages()]
        return seqs, (await sup.stats()).connections[0].dropped


async def slow_aio_consumer(fake: FakeThread, overflow: str) -> tuple[list[int], int]:
    config = burst_config(fake, overflow)
    async with asyncio.timeout(DEADLINE), open_supervisor(config, connector=one_byte_reads) as sup:
        await wait_state(sup, "stopped")
        seqs = [data(m)["seq"] async for m in sup.messages()]
        return seqs, (await sup.stats()).connections[0].dropped


@pytest.mark.parametrize(
    ("overflow", "kept"),
    [
        ("drop_newest", list(range(BUFFER))),
        ("drop_oldest", list(range(BURST - BUFFER, BURST))),
    ],
)
def test_a_slow_asyncio_consumer_sees_exactly_the_trio_consumers_drops(
    run: Run[tuple[list[int], int]], overflow: str, kept: list[int]
) -> None:
    with FakeThread(name="a", interval=1.0, handler=burst) as fake:
        on_trio = trio.run(slow_trio_consumer, fake, overflow)
        on_asyncio = run(slow_aio_consumer(fake, overflow))
    assert on_trio == on_asyncio == (kept, BURST - BUFFER)


def test_under_block_a_slow_asyncio_consumer_loses_nothing(run: Run[None]) -> None:
    with FakeThread(name="a", interval=1.0, handler=burst) as fake:

        async def main() -> None:
            async with (
                asyncio.timeout(DEADLINE),
                open_supervisor(burst_config(fake, "block")) as sup,
            ):
                seqs = []
                async for msg in sup.messages():
                    seqs.append(data(msg)["seq"])
                    await sup.stats()  # slow: one more round trip per message
                stats = (await sup.stats()).connections[0]
                assert seqs == list(range(BURST))
                assert (stats.dropped, stats.frames) == (0, BURST)

        run(main())


# -- lifetime --------------------------------------------------------------------------


class Boom(Exception):
    pass


@pytest.mark.parametrize("ending", ["returns", "raises", "is cancelled"])
def test_the_trio_run_has_ended_when_the_async_with_exits(run: Run[None], ending: str) -> None:
    with FakeThread(name="a", interval=0.01) as fake:
        threads_before = set(threading.enumerate())

        async def main() -> None:
            fds_before = open_fds()
            sigint = signal.getsignal(signal.SIGINT)
            first = asyncio.Event()
            door = open_supervisor(make_config(fake.fake))
            at_exit: list[tuple[bool, bool]] = []

            async def program() -> None:
                try:
                    async with door as sup:
                        # Trio installed no KeyboardInterrupt handler: the host's stays.
                        assert signal.getsignal(signal.SIGINT) is sigint
                        await anext(sup.messages())
                        first.set()
                        if ending == "raises":
                            raise Boom("from the body")
                        if ending == "is cancelled":
                            await asyncio.Event().wait()
                finally:
                    guest = door._guest
                    assert guest is not None
                    at_exit.append((trio.lowlevel.in_trio_run(), guest._finished.done()))

            async with asyncio.timeout(DEADLINE):
                task = asyncio.create_task(program())
                if ending == "is cancelled":
                    await first.wait()
                    task.cancel()
                if ending == "returns":
                    await task
                else:
                    with pytest.raises(Boom if ending == "raises" else asyncio.CancelledError):
                        await task
                # No Trio run, the done callback fired, before the async with was left.
                assert at_exit == [(False, True)]
                assert asyncio.all_tasks() == {asyncio.current_task()}
                await fake.wait_until(lambda f: not f.sessions[0].open)
                # Nothing of ours left open (others may close meanwhile: the suite runs on).
                assert open_fds() - fds_before == set()

        run(main())
        assert fake.fake.sessions[0].close_code == 1000
        # Trio's I/O thread is not joined: it went back to Trio's thread cache (daemon,
        # idle; it exits after 10 s without work, or serves the next Trio run).
        left = set(threading.enumerate()) - threads_before
        assert all(t.daemon and t.name.startswith("Trio thread ") for t in left), left
        assert len(left) <= 1


# -- errors from the supervisor ----------------------------------------------------------


class CrashingConnector:
    """A bug in our own code: every connect raises an exception nobody typed."""

    async def __call__(self, url: str) -> trio.abc.Stream:
        raise RuntimeError(f"bug while connecting to {url}")


class RefusingConnector:
    """The network's failure: every connect is refused."""

    async def __call__(self, url: str) -> trio.abc.Stream:
        raise ConnectError(f"refused: {url}")


CONFIG = {
    "supervisor": {"shutdown_timeout": 1.0, "max_restarts": 0, "within": 60.0},
    "connections": {
        "a": {"exchange": "raw", "url": "ws://a.invalid/ws", "subscribe": ['{"op":"x"}']}
    },
}


async def cancelled_body(door: Any, reached: list[str]) -> None:
    async with door as sup:
        assert isinstance(sup, AioSupervisor)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            reached.append("body cancelled")
            raise
        reached.append("never")


def test_restart_limit_exceeded_cancels_the_body_and_leaves_the_async_with(
    run: Run[None],
) -> None:
    async def main() -> None:
        reached: list[str] = []
        config = config_from_dict(CONFIG, source="<test>")
        async with asyncio.timeout(DEADLINE):
            with pytest.raises(RestartLimitExceeded) as raised:
                await cancelled_body(
                    open_supervisor(config, connector=CrashingConnector()), reached
                )
            # The cancellation was ours and is consumed: nothing left to cancel here.
            task = asyncio.current_task()
            assert task is not None and task.cancelling() == 0
        assert reached == ["body cancelled"]
        assert str(raised.value) == (
            "connection 'a' needed more than 0 restarts within 60 s; last error: "
            "RuntimeError: bug while connecting to ws://a.invalid/ws"
        )

    run(main())


def test_gave_up_cancels_the_body_and_leaves_the_async_with(run: Run[None]) -> None:
    async def main() -> None:
        reached: list[str] = []
        raw = {**CONFIG, "defaults": {"give_up_after": 0.05, "backoff": {"initial": 0.01}}}
        config = config_from_dict(raw, source="<test>")
        async with asyncio.timeout(DEADLINE):
            with pytest.raises(GaveUp, match=r"^no permanent connection left running: 'a' gave up"):
                await cancelled_body(
                    open_supervisor(config, connector=RefusingConnector()), reached
                )
        assert reached == ["body cancelled"]

    run(main())


def test_a_config_error_at_start_leaves_the_async_with_before_the_body(run: Run[None]) -> None:
    async def main() -> None:
        raw = {"connections": {"a": {**CONFIG["connections"]["a"], "url": "wss://a.invalid/ws"}}}
        config = config_from_dict(raw, source="<test>")
        door = open_supervisor(config, environ={"HTTPS_PROXY": "ftp://u:hunter2@h:1"})
        async with asyncio.timeout(DEADLINE):
            with pytest.raises(
                ConfigError,
                match=r"^<test>: connections.a: environment HTTPS_PROXY: 'ftp://u:\*\*\*@h:1' "
                r"has an unsupported scheme 'ftp'",
            ):
                async with door:
                    pytest.fail("the body must not run")
        assert not trio.lowlevel.in_trio_run()

    run(main())


# -- the bridge --------------------------------------------------------------------------


def test_a_cancelled_step_cancels_the_trio_call_and_loses_nothing(run: Run[None]) -> None:
    # interval=inf: the fake sends only what the test tells it to.
    with FakeThread(name="a", interval=float("inf")) as fake:

        async def main() -> None:
            async with asyncio.timeout(DEADLINE), open_supervisor(make_config(fake.fake)) as sup:
                await wait_state(sup, "live")
                guest = sup._guest
                waiting = asyncio.create_task(anext(sup.messages()))
                await sup.stats()  # the step's call was spawned before stats answers
                assert [c.what for c in guest._pending] == ["sup.batches()"]
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                assert guest._pending == set()  # the Trio call ended before the cancel did
                await fake.call(fake.fake.send, '{"seq":7}')
                assert data(await anext(sup.messages())) == {"seq": 7}

        run(main())


def test_a_call_the_shutdown_cancels_raises_a_clear_error(run: Run[None]) -> None:
    with FakeThread(name="a", interval=float("inf")) as fake:

        async def main() -> None:
            async with asyncio.timeout(DEADLINE):
                async with open_supervisor(make_config(fake.fake)) as sup:
                    stuck = asyncio.create_task(
                        sup._guest.call("a call", trio.sleep_forever)  # type: ignore[arg-type]
                    )
                    await sup.stats()
                with pytest.raises(
                    RuntimeError, match=r"^a call did not complete: the supervisor stopped$"
                ):
                    await stuck
                with pytest.raises(
                    RuntimeError,
                    match=r"^cannot call sup.restart\('a'\): the supervisor is not running$",
                ):
                    await sup.restart("a")
                # The final snapshot stays readable, as with the Trio API.
                final = await sup.stats()
                assert final is await sup.stats()
                assert final.connections[0].state == "stopped"

        run(main())


def test_the_handle_refuses_another_thread(run: Run[None]) -> None:
    with FakeThread(name="a", interval=float("inf")) as fake:

        async def main() -> None:
            async with asyncio.timeout(DEADLINE), open_supervisor(make_config(fake.fake)) as sup:
                errors: list[BaseException] = []

                def elsewhere() -> None:
                    try:
                        asyncio.run(sup.stats())
                    except BaseException as exc:
                        errors.append(exc)

                # It raises before touching the guest, so joining here cannot deadlock.
                thread = threading.Thread(target=elsewhere)
                thread.start()
                thread.join(DEADLINE)
                [error] = errors
                assert isinstance(error, RuntimeError)
                assert str(error) == (
                    "sup.stats() was called from another event loop; call the supervisor "
                    "from the loop (and thread) that opened it"
                )

        run(main())


# -- one guest per loop ------------------------------------------------------------------


def test_a_second_supervisor_in_the_same_loop_is_refused_and_sequential_use_works(
    run: Run[None],
) -> None:
    with FakeThread(name="a", interval=0.01) as fake:
        config = make_config(fake.fake)

        async def main() -> None:
            async with asyncio.timeout(DEADLINE):
                async with open_supervisor(config) as sup:
                    with pytest.raises(
                        RuntimeError,
                        match=r"^a Trio run is already active in this thread \(a "
                        r"supervisor.aio.open_supervisor still running in this event loop\?\): "
                        r"only one Trio guest run fits in one thread; use one supervisor with "
                        r"more connections \(list them all in its config, or add them with "
                        r"sup.add_connection\)$",
                    ):
                        async with open_supervisor(config):
                            pytest.fail("a second guest must not start")
                    assert data(await anext(sup.messages()))["session"] == 0
                async with open_supervisor(config) as sup:
                    assert data(await anext(sup.messages()))["session"] == 1

        run(main())


# -- signals -----------------------------------------------------------------------------


def test_trios_keyboard_interrupt_handler_is_not_left_installed_under_a_bare_loop() -> None:
    # Without asyncio.run, Python's default SIGINT handler is in place; Trio would
    # install its own on seeing it. The host's (here: Python's default) is put back.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with FakeThread(name="a", interval=0.01) as fake:

        async def main() -> None:
            async with asyncio.timeout(DEADLINE), open_supervisor(make_config(fake.fake)) as sup:
                assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
                await anext(sup.messages())

        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- run-time changes ----------------------------------------------------------------------
# Against the fake OKX, which sends one trade per subscribed topic every ``interval``
# seconds and refuses unknown instruments with its code 60018.


def okx_config(url: str, symbols: list[str]) -> Any:
    return config_from_dict(
        {
            "supervisor": {"shutdown_timeout": 2.0},
            "connections": {
                "okx": {"exchange": "okx", "url": url, "channels": ["trades"], "symbols": symbols}
            },
        },
        source="<test>",
    )


async def next_trade(sup: AioSupervisor, connection: str, symbol: str) -> Message:
    async for msg in sup.messages():
        if isinstance(msg, Trade) and (msg.connection, msg.symbol) == (connection, symbol):
            return msg
    raise AssertionError(f"the stream ended before a trade of {symbol} on {connection}")


def test_subscribe_and_unsubscribe_at_run_time_or_refused(run: Run[None]) -> None:
    with FakeThread(name="okx", interval=0.02, handler=FakeOkx()) as fake:
        config = okx_config(fake.url, ["BTC-USDT"])

        async def main() -> None:
            async with asyncio.timeout(DEADLINE), open_supervisor(config) as sup:
                await next_trade(sup, "okx", "BTC-USDT")
                await sup.subscribe("okx", symbols=["ETH-USDT"])  # returns once acked
                live = (await sup.stats()).connections[0].subscriptions
                assert live == {"trades:BTC-USDT": "live", "trades:ETH-USDT": "live"}
                await next_trade(sup, "okx", "ETH-USDT")

                with pytest.raises(SubscriptionRefused) as refused:
                    await sup.subscribe("okx", symbols=["NOPE-USDT"])
                error = refused.value
                assert (error.connection, error.kept) == ("okx", False)
                assert list(error.refused) == ["trades:NOPE-USDT"]
                assert error.refused["trades:NOPE-USDT"].startswith("failed: 60018 ")

                await sup.unsubscribe("okx", symbols=["ETH-USDT"])
                left = (await sup.stats()).connections[0].subscriptions
                assert left == {"trades:BTC-USDT": "live"}
                with pytest.raises(
                    ValueError, match=r"^no connection named 'nope' \(connections: okx\)$"
                ):
                    await sup.unsubscribe("nope", symbols=["ETH-USDT"])
                with pytest.raises(TypeError):
                    await sup.subscribe("okx", symbols="BTC-USDT")  # type: ignore[arg-type]

        run(main())


def test_add_and_remove_a_connection_at_run_time_or_refused(run: Run[None]) -> None:
    with FakeThread(name="okx", interval=0.02, handler=FakeOkx()) as fake:
        config = okx_config(fake.url, ["BTC-USDT"])
        table = {
            "exchange": "okx",
            "url": fake.url,
            "channels": ["trades"],
            "symbols": ["ETH-USDT"],
        }

        async def main() -> None:
            async with asyncio.timeout(DEADLINE), open_supervisor(config) as sup:
                await next_trade(sup, "okx", "BTC-USDT")
                await sup.add_connection("okx2", table)  # returns once live
                assert [c.name for c in sup.config.connections] == ["okx", "okx2"]
                await next_trade(sup, "okx2", "ETH-USDT")
                states = {c.name: c.state for c in (await sup.stats()).connections}
                assert states == {"okx": "live", "okx2": "live"}

                with pytest.raises(ConfigError) as taken:
                    await sup.add_connection("OKX", table)
                assert taken.value.problems == [
                    "add_connection: connections.OKX: same name as the running connection "
                    "'okx' (names must be unique, ignoring case; remove_connection() it "
                    "first to replace it)"
                ]

                await sup.remove_connection("okx2")  # returns once its socket is closed
                assert [c.name for c in (await sup.stats()).connections] == ["okx"]
                with pytest.raises(
                    ValueError, match=r"^no connection named 'okx2' \(connections: okx\)$"
                ):
                    await sup.remove_connection("okx2")
                await next_trade(sup, "okx", "BTC-USDT")  # the others run on

        run(main())
    # okx2's session, then okx's at the end: both closed cleanly.
    assert sorted(s.close_code for s in fake.fake.sessions) == [1000, 1000]
