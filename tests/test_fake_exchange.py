"""Tests for ``supervisor.testing``: the fake exchange and its scripted faults.

Rules of this file: trio-websocket is the client throughout, so the fake is checked
against a real RFC 6455 peer. Timing is asserted on the memory transport under the
``autojump_clock`` fixture, with exact virtual times and intervals that are exact in
binary (0.5, 2.0). TCP tests run on the real clock and never wait for time: they wait
for the fake's state with ``wait_until``. Every test has a deadline (``fail_after``):
virtual seconds under autojump, real seconds otherwise. Clients run in pytest-trio's
``nursery`` fixture so they can outlive the fake's context where a test needs that.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import final
from urllib.parse import urlsplit

import pytest
import trio
import trio.testing
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection

import supervisor.testing
from supervisor.testing import FakeExchange, FakeSession, SessionIO, open_fake_exchange, route

TRANSPORTS = ["tcp", "memory"]

#: Deadline of real-clock tests, in seconds; generous for loaded CI machines.
REAL_DEADLINE = 10
#: Deadline of autojump tests, in virtual seconds.
VIRTUAL_DEADLINE = 100


@final
class Clients:
    """trio-websocket clients of fakes; their readers run in pytest-trio's nursery.

    The streams are owned here and closed at teardown: trio-websocket leaves a client's
    stream open when the server ended the connection.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._streams: list[trio.abc.Stream] = []
        self._by_client: dict[WebSocketConnection, trio.abc.Stream] = {}

    async def connect(
        self,
        fake: FakeExchange,
        *,
        connector: Callable[[str], Awaitable[trio.abc.Stream]] | None = None,
        url: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int = 2**20,
    ) -> WebSocketConnection:
        """Connect to ``fake`` (in memory through ``connector`` and ``url`` if given)."""
        stream = await self.open_stream(fake, connector=connector, url=url, ssl_context=ssl_context)
        ws = await trio_websocket.wrap_client_stream(
            self._nursery,
            stream,  # type: ignore[arg-type]
            urlsplit(fake.url).netloc,
            "/ws",
            max_message_size=max_message_size,
        )
        self._by_client[ws] = stream
        return ws

    async def open_stream(
        self,
        fake: FakeExchange,
        *,
        connector: Callable[[str], Awaitable[trio.abc.Stream]] | None = None,
        url: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> trio.abc.Stream:
        """Open a byte stream to ``fake``, owned here, without any handshake."""
        stream: trio.abc.Stream
        if fake.transport == "memory":
            stream = await (connector or fake.connect)(url or fake.url)
        elif ssl_context is None:
            stream = await trio.open_tcp_stream("127.0.0.1", fake.port)
        else:
            stream = await trio.open_ssl_over_tcp_stream(
                "127.0.0.1", fake.port, ssl_context=ssl_context, https_compatible=True
            )
        self._streams.append(stream)
        return stream

    async def rejection(self, fake: FakeExchange) -> trio_websocket.ConnectionRejected:
        """Attempt a handshake that ``fake`` rejects; return the client's error.

        trio-websocket raises the rejection from its reader task, that is into the
        nursery the reader runs in, hence the local nursery.
        """
        stream = await self.open_stream(fake)
        with pytest.RaisesGroup(trio_websocket.ConnectionRejected) as info:
            async with trio.open_nursery() as nursery:
                await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,  # type: ignore[arg-type]
                    urlsplit(fake.url).netloc,
                    "/ws",
                )
        error = info.value.exceptions[0]
        assert isinstance(error, trio_websocket.ConnectionRejected)
        return error

    async def drop(self, ws: WebSocketConnection) -> None:
        """Close the client's stream without a close frame: the client vanishes."""
        await self._by_client[ws].aclose()

    async def aclose(self) -> None:
        for stream in self._streams:
            await stream.aclose()


@pytest.fixture
async def clients(nursery: trio.Nursery) -> AsyncIterator[Clients]:
    owner = Clients(nursery)
    try:
        yield owner
    finally:
        await owner.aclose()


async def close_of(ws: WebSocketConnection) -> trio_websocket.CloseReason:
    """Read until the connection closes; return the close reason the client saw."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await ws.get_message()
    assert info.value.reason is not None
    return info.value.reason


def task_names() -> list[str]:
    """Names of every task in this run, from the root task down."""
    names: list[str] = []
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        assert task is not None
        names.append(task.name)
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return names


# -- public surface -------------------------------------------------------------------


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(supervisor.testing).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)  # .fake, .fakes
    }
    assert supervisor.testing.__all__ == sorted(supervisor.testing.__all__)
    assert set(supervisor.testing.__all__) == public
    assert supervisor.testing.__all__ == [
        "FakeBinance",
        "FakeBinanceUsdm",
        "FakeBybit",
        "FakeDeribit",
        "FakeExchange",
        "FakeOkx",
        "FakeSession",
        "SessionHandler",
        "SessionIO",
        "ThreadedFake",
        "fake_exchange_in_thread",
        "open_fake_exchange",
        "route",
    ]


async def test_urls_and_ports() -> None:
    with trio.fail_after(REAL_DEADLINE):
        async with open_fake_exchange(name="binance") as tcp:
            assert tcp.transport == "tcp"
            assert tcp.port > 0
            assert tcp.url == f"ws://127.0.0.1:{tcp.port}/ws"
            assert tcp.name == "binance"
        async with open_fake_exchange(name="okx", transport="memory") as memory:
            assert memory.transport == "memory"
            assert memory.port == 0
            assert memory.url == "ws://okx.fake.invalid/ws"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "a b"}, r"^fake exchange name 'a b' must be letters, digits, '-' and '_' "),
        ({"transport": "udp"}, r"^transport must be 'tcp' or 'memory', got 'udp'$"),
        ({"interval": 0.0}, r"^interval must be a positive number of seconds "),
        (
            {"transport": "memory", "port": 8080},
            r"^fake exchange 'fake': ssl_context and port apply to transport='tcp' only$",
        ),
    ],
)
async def test_invalid_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        async with open_fake_exchange(**kwargs):  # type: ignore[arg-type]
            pass


# -- data frames ----------------------------------------------------------------------


async def test_data_flows_only_after_subscribe_tcp(clients: Clients) -> None:
    with trio.fail_after(REAL_DEADLINE):
        async with open_fake_exchange(interval=0.01) as fake:
            ws = await clients.connect(fake)
            await fake.wait_until(lambda f: len(f.sessions) == 1)
            session = fake.sessions[0]
            assert (session.index, session.open, session.subscribed) == (0, True, False)
            assert session.sent == 0
            await ws.send_message('{"op":"subscribe"}')
            messages = [await ws.get_message() for _ in range(3)]
            assert messages == [
                '{"seq":0,"session":0}',
                '{"seq":1,"session":0}',
                '{"seq":2,"session":0}',
            ]
            assert session.received == ['{"op":"subscribe"}']
            assert session.subscribed is True
            await ws.aclose()
            await fake.wait_until(lambda f: not f.sessions[0].open)
            assert session.close_code == 1000


async def test_data_waits_for_subscribe_exact_times(
    autojump_clock: trio.testing.MockClock, clients: Clients
) -> None:
    with trio.fail_after(VIRTUAL_DEADLINE):
        async with open_fake_exchange(transport="memory", interval=0.5) as fake:
            ws = await clients.connect(fake)
            with trio.move_on_after(5) as idle:
                await ws.get_message()
            assert idle.cancelled_caught
            assert trio.current_time() == 5.0
            assert fake.sessions[0].sent == 0
            await ws.send_message(b"\x01subscribe")
            assert await ws.get_message() == '{"seq":0,"session":0}'
            assert trio.current_time() == 5.5
            assert fake.sessions[0].received == [b"\x01subscribe"]


async def test_data_flows_at_once_without_subscribe(
    autojump_clock: trio.testing.MockClock, clients: Clients
) -> None:
    with trio.fail_after(VIRTUAL_DEADLINE):
        async with open_fake_exchange(
            transport="memory", interval=0.5, require_subscribe=False
        ) as fake:
            first = await clients.connect(fake)
            second = await clients.connect(fake)
            assert await first.get_message() == '{"seq":0,"session":0}'
            assert await second.get_message() == '{"seq":0,"session":1}'
            assert trio.current_time() == 0.5
            assert await first.get_message() == '{"seq":1,"session":0}'
            assert trio.current_time() == 1.0
            session = fake.sessions[0]
            assert (session.subscribed, session.received, session.sent) == (False, [], 2)


async def test_frame_times_and_slow(
    autojump_clock: trio.testing.MockClock, clients: Clients
) -> None:
    with trio.fail_after(VIRTUAL_DEADLINE):
        async with open_fake_exchange(transport="memory", interval=0.5) as fake:
            ws = await clients.connect(fake)
            t0 = trio.current_time()
            await ws.send_message("subscribe")
            times = []
            for k in range(3):
                assert json.loads(await ws.get_message()) == {"seq": k, "session": 0}
                times.append(trio.current_time())
            assert times == [t0 + 0.5, t0 + 1.0, t0 + 1.5]
            fake.slow(2.0)
            assert fake.interval == 2.0
            for k in range(3, 5):
                assert json.loads(await ws.get_message()) == {"seq": k, "session": 0}
                times.append(trio.current_time())
            assert times[3:] == [t0 + 3.5, t0 + 5.5]
            assert fake.sessions[0].sent == 5


async def test_slow_applies_to_the_wait_in_progress(
    autojump_clock: trio.testing.MockClock, clients: Clients
) -> None:
    with trio.fail_after(VIRTUAL_DEADLINE):
        async with open_fake_exchange(
            transport="memory", interval=4.0, require_subscribe=False
        ) as fake:
            ws = await clients.connect(fake)
            assert await ws.get_message() == '{"seq":0,"session":0}'
            assert trio.current_time() == 4.0
            with trio.move_on_after(1.0):
                await ws.get_message()
            fake.interval = 0.5  # already overdue: 4.0 + 0.5 < 5.0
            assert await ws.get_message() == '{"seq":1,"session":0}'
            assert trio.current_time() == 5.0
            assert await ws.get_message() == '{"seq":2,"session":0}'
            assert trio.current_time() == 5.5
            with pytest.raises(ValueError, match=r"^interval must be a positive number"):
                fake.slow(-1.0)


async def test_require_subscribe_can_be_switched_off(
    autojump_clock: trio.testing.MockClock, clients: Clients
) -> None:
    with trio.fail_after(VIRTUAL_DEADLINE):
        async with open_fake_exchange(transport="memory", interval=0.5) as fake:
            ws = await clients.connect(fake)
            await fake.wait_until(lambda f: len(f.sessions) == 1)
            with trio.move_on_after(2):
                await ws.get_message()
            fake.require_subscribe = False
            assert await ws.get_message() == '{"seq":0,"session":0}'
            assert trio.current_time() == 2.5


async def test_payload_override(autojump_clock: trio.testing.MockClock, clients: Clients) -> None:
    def payload(session: FakeSession, seq: int) -> bytes:
        return f"{session.index}/{seq}".encode()

    with trio.fail_after(VIRTUAL_DEADLINE):
        async with open_fake_exchange(
            transport="memory", interval=0.5, require_subscribe=False, payload=payload
        ) as fake:
            ws = await clients.connect(fake)
            assert [await ws.get_message() for _ in range(2)] == [b"0/0", b"0/1"]


# -- faults that end sessions ---------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_close_sends_code_and_reason(transport: str, clients: Clients) -> None:
    with trio.fail_after(REAL_DEADLINE):
        async with open_fake_exchange(transport=transport) as fake:  # type: ignore[arg-type]
            ws = await clients.connect(fake)
            await fake.wait_until(lambda f: len(f.sessions) == 1)
            await fake.close(4000, "bye")
            session = fake.sessions[0]
            assert (session.open, session.close_code) == (False, None)
            reason = await close_of(ws)
            assert (reason.code, reason.reason) == (4000, "bye")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reset_is_abnormal_closure(transport: str, clients: Clients) -> None:
    with trio.fail_after(REAL_DEADLINE):
        async with open_fake_exchange(transport=transport, interval=0.01) as fake:  # type: ignore[arg-type]
            ws = await clients.connect(fake)
            await ws.send_message("subscribe")
            assert await ws.get_message() == '{"seq":0,"session":0}'
            await fake.reset()
            assert fake.sessions[0].open is False
            assert fake.sessions[0].close_code is None
            reason = await close_of(ws)
            assert reason.code == 1006


async def test_close_validates_code_and_reason() -> None:
    async with open_fake_exchange(transport="memory") as fake:
        with pytest.raises(ValueError, match=r"^close code 1006 may not be sent"):
            await fake.close(1006)
        with pytest.raises(ValueError, match=r"^close code 999 may not be sent"):
            await fake.close(999)
        with pytest.raises(ValueError, match=r"is 124 bytes of UTF-8; a close frame holds"):
            await fake.close(1000, "r" * 124)


async def test_client_close_code_is_recorded(clients: Clients) -> None:
    with trio.fail_after(REAL_DEADLINE):
        async with open_fake_exchange(transport="memory") as fake:
            ws = await clients.connect(fake)
            await ws.aclose(4001, "done")
            await fake.wait_until(lambda f: not f.sessions[0].open)
            assert fake.sessions[0].close_code == 4001


async def test_one_vanishing_client_does_not_affect_others(
    autojump_clock: trio.testing.MockClock, clients: Clients
) -> None:
    with trio.fail_after(VIRTUAL_DEADLINE):
        async with open_fake_exchange(
            transport="memory", interval=0.5, require_subscribe=False
        ) as fake:
            lost = await clients.connect(fake)
            kept = await clients.connect(fake)
            assert await lost.get_message() == '{"seq":0,"session":0}'
            await clients.drop(lost)  # gone without a close frame, while the fake sends
            await fake.wait_until(lambda f: not f.sessions[0].open)
            assert fake.sessions[0].close_code is None
            assert [await kept.get_message() for _ in range(3)] == [
                '{"seq":0,"session":1}',
                '{"seq":1,"session":1}',
                '{"seq":2,"session":1}',
            ]
            assert trio.current_time() == 1.5
            assert fake.sessions[1].open is True


# -- stall ----------------------------------------------------------------------------


async def test_stall_freezes_reads_and_data_until_resume(
    autojump_clock: trio.testing.MockClock, clients: Clients
) -> None:
    with trio.fail_after(VIRTUAL_DEADLINE):
        async with open_fake_exchange(transport="memory", interval=0.5) as fake:
            ws = await clients.connect(fake)
            await ws.send_message("subscribe")
            assert await ws.get_message() == '{"seq":0,"session":0}'
            assert trio.current_time() == 0.5
            fake.stall()
            with trio.move_on_after(10) as no_pong:
                await ws.ping(b"p1")
            assert no_pong.cancelled_caught
            assert trio.current_time() == 10.5
            await ws.send_message("while stalled")
            with trio.move_on_after(5) as no_data:
                await ws.get_message()
            assert no_data.cancelled_caught
            session = fake.sessions[0]
            assert (session.open, session.sent, session.received) == (True, 1, ["subscribe"])

            fake.resume()
            await ws.ping(b"p2")
            assert trio.current_time() == 15.5
            await fake.wait_until(lambda f: len(f.sessions[0].received) == 2)
            assert session.received == ["subscribe", "while stalled"]
            # Frames due during the stall are skipped; the next comes one interval on.
            assert await ws.get_message() == '{"seq":1,"session":0}'
            assert trio.current_time() == 16.0


async def test_close_ends_a_stalled_session(
    autojump_clock: trio.testing.MockClock, clients: Clients
) -> None:
    with trio.fail_after(VIRTUAL_DEADLINE):
        async with open_fake_exchange(transport="memory") as fake:
            ws = await clients.connect(fake)
            await fake.wait_until(lambda f: len(f.sessions) == 1)
            fake.stall()
            await fake.close(4002, "stalled")
            assert trio.current_time() == 0.0
            assert (await close_of(ws)).code == 4002


async def test_stall_does_not_apply_to_later_sessions(
    autojump_clock: trio.testing.MockClock, clients: Clients
) -> None:
    with trio.fail_after(VIRTUAL_DEADLINE):
        async with open_fake_exchange(
            transport="memory", interval=0.5, require_subscribe=False
        ) as fake:
            await clients.connect(fake)
            await fake.wait_until(lambda f: len(f.sessions) == 1)
            fake.stall()
            later = await clients.connect(fake)
            assert await later.get_message() == '{"seq":0,"session":1}'
            await later.ping(b"p")
            assert trio.current_time() == 0.5
            assert fake.sessions[0].sent == 0


# -- faults that write frames ---------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_garbage_and_send(transport: str, clients: Clients) -> None:
    with trio.fail_after(REAL_DEADLINE):
        async with open_fake_exchange(transport=transport) as fake:  # type: ignore[arg-type]
            ws = await clients.connect(fake)
            await fake.wait_until(lambda f: len(f.sessions) == 1)
            await fake.garbage()
            assert await ws.get_message() == "\x00garbage{"
            await fake.garbage("not json")
            assert await ws.get_message() == "not json"
            await fake.send(b"\xff\x00")
            assert await ws.get_message() == b"\xff\x00"
            assert fake.sessions[0].sent == 0  # scripted frames are not data frames


async def test_oversized_frame_has_exact_size(clients: Clients) -> None:
    with trio.fail_after(REAL_DEADLINE):
        async with open_fake_exchange(transport="memory") as fake:
            ws = await clients.connect(fake)
            await fake.wait_until(lambda f: len(f.sessions) == 1)
            await fake.oversized(2000)
            frame = await ws.get_message()
            assert isinstance(frame, str)
            assert len(frame) == 2000
            assert json.loads(frame) == "x" * 1998
            with pytest.raises(ValueError, match=r"^oversized\(\) needs size >= 2"):
                await fake.oversized(1)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_oversized_trips_client_limit(transport: str, clients: Clients) -> None:
    with trio.fail_after(REAL_DEADLINE):
        async with open_fake_exchange(transport=transport) as fake:  # type: ignore[arg-type]
            ws = await clients.connect(fake, max_message_size=1024)
            await fake.wait_until(lambda f: len(f.sessions) == 1)
            await fake.oversized(2000)
            assert (await close_of(ws)).code == 1009
            await fake.wait_until(lambda f: not f.sessions[0].open)
            assert fake.sessions[0].close_code == 1009


# -- refusals -------------------------------------------------------------------------


async def test_refuse_tcp_resets_before_handshake(clients: Clients) -> None:
    with trio.fail_after(REAL_DEADLINE):
        async with open_fake_exchange() as fake:
            fake.refuse(60)
            # At the socket: the kernel completes the TCP handshake, then the fake
            # sends RST, so the first send or receive fails.
            stream = await clients.open_stream(fake)
            await fake.wait_until(lambda f: f.refused == 1)
            with pytest.raises(trio.BrokenResourceError):
                await stream.send_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
                await stream.receive_some()
            # trio-websocket's client does not notice an RST during its handshake: its
            # reader stops without failing the connect, which then waits for the
            # caller's deadline (open_websocket_url raises ConnectionTimeout, a
            # HandshakeError, after connect_timeout).
            with trio.move_on_after(0.2) as hung:
                await clients.connect(fake)
            assert hung.cancelled_caught
            assert fake.refused == 2
            assert fake.sessions == []
            fake.refuse(0)  # ends the window early
            ws = await clients.connect(fake)
            await ws.send_message("subscribe")
            assert await ws.get_message() == '{"seq":0,"session":0}'


async def test_refuse_memory_window_is_exact(
    autojump_clock: trio.testing.MockClock, clients: Clients
) -> None:
    with trio.fail_after(VIRTUAL_DEADLINE):
        async with open_fake_exchange(name="bybit", transport="memory") as fake:
            fake.refuse(5)
            assert fake.refusing_until == 5.0
            message = (
                r"^\[Errno 111\] fake exchange 'bybit' refused the connection to "
                r"'ws://bybit\.fake\.invalid/ws' \(refuse\(\) in force until t=5\.0\)$"
            )
            with pytest.raises(ConnectionRefusedError, match=message):
                await fake.connect(fake.url)
            # The fake models time: waiting for its own deadline is not synchronisation.
            await trio.sleep_until(4.5)
            with pytest.raises(ConnectionRefusedError):
                await fake.connect(fake.url)
            assert (fake.refused, fake.sessions) == (2, [])
            await trio.sleep_until(fake.refusing_until)
            assert trio.current_time() == 5.0
            ws = await clients.connect(fake)
            await ws.send_message("subscribe")
            assert await ws.get_message() == '{"seq":0,"session":0}'
            assert fake.refused == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refuse_with_status_rejects_upgrade(transport: str, clients: Clients) -> None:
    with trio.fail_after(REAL_DEADLINE):
        async with open_fake_exchange(name="kraken", transport=transport) as fake:  # type: ignore[arg-type]
            fake.refuse(60, status=429)
            rejected = await clients.rejection(fake)
            assert rejected.status_code == 429
            assert rejected.body == b"refused by fake exchange 'kraken'"
            assert (fake.refused, fake.sessions) == (1, [])


async def test_refuse_validates_arguments() -> None:
    async with open_fake_exchange(transport="memory") as fake:
        with pytest.raises(ValueError, match=r"^refuse\(\) needs seconds >= 0, got -1$"):
            fake.refuse(-1)
        with pytest.raises(ValueError, match=r"^refuse\(\) needs an HTTP status of 200-599"):
            fake.refuse(1, status=101)


# -- connecting -----------------------------------------------------------------------


async def test_connect_is_memory_only() -> None:
    async with open_fake_exchange(name="tcpfake") as fake:
        message = (
            r"^fake exchange 'tcpfake' uses transport='tcp'; connect\(\) serves "
            r"transport='memory' only, connect to ws://127\.0\.0\.1:\d+/ws instead$"
        )
        with pytest.raises(RuntimeError, match=message):
            await fake.connect(fake.url)


async def test_route_dispatches_by_host(clients: Clients) -> None:
    with trio.fail_after(REAL_DEADLINE):
        async with (
            open_fake_exchange(name="alpha", transport="memory") as alpha,
            open_fake_exchange(name="beta", transport="memory") as beta,
        ):
            connector = route(alpha, beta)
            url = "wss://BETA.fake.invalid:443/other?x=1"
            ws = await clients.connect(beta, connector=connector, url=url)
            await beta.wait_until(lambda f: len(f.sessions) == 1)
            assert alpha.sessions == []
            await ws.aclose()
            message = (
                r"^no fake exchange serves 'ws://\*\*\*@gamma\.fake\.invalid/ws'; "
                r"known hosts: alpha\.fake\.invalid, beta\.fake\.invalid$"
            )
            with pytest.raises(ValueError, match=message):
                await connector("ws://key:secret@gamma.fake.invalid/ws")
            with pytest.raises(ValueError, match=r"^route\(\) got two fakes serving host"):
                route(alpha, alpha)


async def test_route_rejects_tcp_fakes() -> None:
    async with open_fake_exchange(name="tcpfake") as fake:
        with pytest.raises(ValueError, match=r"^route\(\) dispatches to transport='memory'"):
            route(fake)


# -- lifetime -------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_exit_closes_sessions_and_leaves_no_task(transport: str, clients: Clients) -> None:
    with trio.fail_after(REAL_DEADLINE):
        async with open_fake_exchange(transport=transport, interval=0.01) as fake:  # type: ignore[arg-type]
            sockets = [await clients.connect(fake) for _ in range(2)]
            await sockets[0].send_message("subscribe")
            assert await sockets[0].get_message() == '{"seq":0,"session":0}'
            fake.stall()  # a stalled session must not hold up the exit
            assert any("supervisor.testing.fake." in name for name in task_names())
        assert [session.open for session in fake.sessions] == [False, False]
        assert [name for name in task_names() if "supervisor.testing.fake." in name] == []
        for ws in sockets:
            reason = await close_of(ws)
            assert (reason.code, reason.reason) == (1001, "fake exchange shut down")
        if transport == "tcp":
            with pytest.raises(OSError):
                await trio.open_tcp_stream("127.0.0.1", fake.port)
        else:
            with pytest.raises(RuntimeError, match=r"^fake exchange 'fake' is closed"):
                await fake.connect(fake.url)


async def test_body_exception_propagates_unwrapped(clients: Clients) -> None:
    with trio.fail_after(REAL_DEADLINE):
        with pytest.raises(KeyError, match="boom"):
            async with open_fake_exchange(transport="memory") as fake:
                ws = await clients.connect(fake)
                await fake.wait_until(lambda f: len(f.sessions) == 1)
                raise KeyError("boom")
        assert fake.sessions[0].open is False
        assert (await close_of(ws)).code == 1006  # dropped, no close handshake


async def test_cancelled_body_still_closes_everything(
    autojump_clock: trio.testing.MockClock, clients: Clients
) -> None:
    with trio.fail_after(VIRTUAL_DEADLINE):
        with trio.move_on_after(3) as scope:
            async with open_fake_exchange(transport="memory") as fake:
                ws = await clients.connect(fake)
                await fake.wait_until(lambda f: False)
        assert scope.cancelled_caught
        assert trio.current_time() == 3.0
        assert fake.sessions[0].open is False
        assert [name for name in task_names() if "supervisor.testing.fake." in name] == []
        assert (await close_of(ws)).code == 1006


async def test_payload_error_propagates(clients: Clients) -> None:
    def payload(session: FakeSession, seq: int) -> str:
        raise ZeroDivisionError("bad payload")

    with trio.fail_after(REAL_DEADLINE):
        with pytest.RaisesGroup(ZeroDivisionError, flatten_subgroups=True):
            async with open_fake_exchange(
                transport="memory", require_subscribe=False, interval=0.01, payload=payload
            ) as fake:
                await clients.connect(fake)
                await fake.wait_until(lambda f: False)


# -- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_contexts() -> Iterator[tuple[ssl.SSLContext, ssl.SSLContext]]:
    """A server context with a throwaway self-signed cert for 127.0.0.1, and a client one."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    with tempfile.TemporaryDirectory() as folder:
        yield _make_tls_contexts(Path(folder))


def _make_tls_contexts(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


async def test_tls_data_and_reset(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext], clients: Clients
) -> None:
    server_context, client_context = tls_contexts
    with trio.fail_after(REAL_DEADLINE):
        async with open_fake_exchange(ssl_context=server_context, interval=0.01) as fake:
            assert fake.url == f"wss://127.0.0.1:{fake.port}/ws"
            ws = await clients.connect(fake, ssl_context=client_context)
            await ws.send_message("subscribe")
            assert await ws.get_message() == '{"seq":0,"session":0}'
            await fake.reset()
            assert (await close_of(ws)).code == 1006


async def test_a_handler_runs_the_session_and_faults_still_apply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def echo_upper(io: SessionIO) -> None:
        while True:
            frame = await io.receive()
            assert isinstance(frame, str)
            if frame == "bye":
                io.close(4001, "asked to")
                return
            await io.send(frame.upper(), data=False)

    with trio.fail_after(30):
        async with open_fake_exchange(transport="memory", handler=echo_upper) as fake:
            async with trio.open_nursery() as nursery:
                stream = await fake.connect(fake.url)
                ws = await trio_websocket.wrap_client_stream(nursery, stream, "fake", "/ws")
                await ws.send_message("hello")
                assert await ws.get_message() == "HELLO"
                await fake.garbage()
                assert await ws.get_message() == "\x00garbage{"
                await ws.send_message("bye")
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason is not None
                assert (closed.value.reason.code, closed.value.reason.reason) == (4001, "asked to")
                await stream.aclose()
            assert fake.sessions[0].received == ["hello", "bye"]
            assert fake.sessions[0].sent == 0
