"""``marketprism run|demo --status HOST:PORT`` and ``marketprism status``, as a user runs them.

The children bind port 0 where a test needs a free port and say in their log where they
listen; the test reads that line and then talks to the port. A bound listener queues
connections from that moment, so nothing is polled and nothing waits on time.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Final, final

import httpx
import msgspec
import pytest
import trio
import trio.testing
from helpers import RecordingConnector, make_config
from test_cli import (
    CLI,
    DEADLINE,
    ENV,
    QUICK,
    Capture,
    run_cli_async,
    running_cli,
    write_config,
)

import supervisor.cli.status
from supervisor import open_supervisor, serve_status
from supervisor.cli import main as cli_main
from supervisor.cli.main import _host_port
from supervisor.cli.status import DEFAULT_TIMEOUT as DEFAULT_STATUS_TIMEOUT
from supervisor.cli.status import StatusUnavailable, fetch_status
from supervisor.testing import open_fake_exchange

#: The log line that says where the endpoint listens.
LISTENING: Final = re.compile(r"status endpoint: http://(?P<address>[^/]+)/status ")


async def test_demo_serves_status_while_it_runs() -> None:
    with trio.fail_after(DEADLINE):
        async with running_cli(
            "demo", "--status", "127.0.0.1:0", "--duration", "4", cwd=Path.cwd()
        ) as child:
            await child.stderr.wait_until(lambda text: LISTENING.search(text) is not None)
            match = LISTENING.search(child.stderr.text)
            assert match is not None
            async with httpx.AsyncClient(
                base_url=f"http://{match['address']}", trust_env=False
            ) as client:
                status = await client.get("/status")
                live = await client.get("/livez")
                metrics = await client.get("/metrics")
        assert child.process.returncode == 0, child.stderr.text
    assert status.status_code == 200
    connections = msgspec.json.decode(status.content)["connections"]
    assert sorted(connections) == ["binance", "bybit", "deribit", "okx"]
    assert live.status_code == 200
    assert 'marketprism_connects_total{connection="okx",exchange="okx"}' in metrics.text


async def test_run_serves_status_and_stops_with_the_supervisor(tmp_path: Path) -> None:
    async with open_fake_exchange(name="feed", interval=0.05) as fake:
        write_config(tmp_path / "config.toml", fake.url)
        with trio.fail_after(DEADLINE):
            async with running_cli(
                "run",
                "--status",
                "127.0.0.1:0",
                "--output",
                "none",
                "--duration",
                "3",
                cwd=tmp_path,
            ) as child:
                await child.stderr.wait_until(lambda text: LISTENING.search(text) is not None)
                match = LISTENING.search(child.stderr.text)
                assert match is not None
                await fake.wait_until(lambda f: bool(f.sessions))
                async with httpx.AsyncClient(
                    base_url=f"http://{match['address']}", trust_env=False
                ) as client:
                    status = await client.get("/status")
            assert child.process.returncode == 0, child.stderr.text
    assert status.status_code == 200
    assert list(msgspec.json.decode(status.content)["connections"]) == ["feed"]
    # Stopped with the supervisor: the port is free again.
    host, port = match["address"].rsplit(":", 1)
    with socket.socket() as again:
        again.bind((host, int(port)))


@pytest.mark.parametrize("command", ["run", "demo"])
async def test_a_taken_port_exits_2_before_anything_connects(tmp_path: Path, command: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        async with open_fake_exchange(name="feed", interval=0.05) as fake:
            write_config(tmp_path / "config.toml", fake.url)
            with trio.fail_after(DEADLINE):
                result = await trio.run_process(
                    [*CLI, command, "--status", f"127.0.0.1:{port}"],
                    cwd=tmp_path,
                    env=ENV,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
            assert fake.sessions == []
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"marketprism: --status: cannot serve the status endpoint on 127.0.0.1:{port}: the "
        "address is already in use (another marketprism, or another program, listens "
        "there); stop it or choose another port\n"
    )
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("9464", "'9464' is not HOST:PORT (e.g. 127.0.0.1:9464 or [::1]:9464; PORT 0-65535)"),
        (
            "127.0.0.1:http",
            "'127.0.0.1:http' is not HOST:PORT (e.g. 127.0.0.1:9464 or [::1]:9464; PORT 0-65535)",
        ),
        (
            "127.0.0.1:65536",
            "'127.0.0.1:65536' is not HOST:PORT (e.g. 127.0.0.1:9464 or [::1]:9464; PORT 0-65535)",
        ),
        ("::1:9464", "'::1:9464': write an IPv6 address in brackets, e.g. [::1]:9464"),
    ],
)
@pytest.mark.parametrize("command", ["run", "demo"])
def test_a_bad_status_value_exits_2_naming_it(command: str, value: str, problem: str) -> None:
    result = subprocess.run(
        [*CLI, command, "--status", value],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=QUICK,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"marketprism {command}: error: argument --status: {problem}"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_status_values_parse(value: str, address: tuple[str, int]) -> None:
    assert _host_port(value) == address


def test_an_address_not_of_this_machine_exits_2_naming_it(tmp_path: Path) -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never an address of this machine.
    result = subprocess.run(
        [*CLI, "demo", "--status", "192.0.2.1:9464", "--duration", "1"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=QUICK,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "marketprism: --status: cannot serve the status endpoint on 192.0.2.1:9464: "
        "Cannot assign requested address\n"
    )


# -- marketprism status -----------------------------------------------------------------

FAST_BACKOFF: Final = {"initial": 0.05, "max": 0.1, "reset_after": 60.0}


def table_rows(text: str) -> list[list[str]]:
    """The table's body rows of ``status`` output: cells, stripped."""
    return [
        [cell.strip() for cell in line.strip()[1:-1].split("│")]
        for line in text.splitlines()
        if line.strip().startswith("│")
    ]


def unreachable(address: str, problem: str) -> str:
    return (
        f"marketprism status: http://{address}/status: {problem}; is `marketprism run "
        f"--status {address}` (or `marketprism demo --status {address}`) running?\n"
    )


@asynccontextmanager
async def served_supervisor() -> AsyncIterator[tuple[str, trio.CancelScope]]:
    """A supervisor on memory fakes, ``a`` live and ``b`` stopped, serving its status.

    ``b`` is temporary and refused, so it stops for good after its first attempt; ``a``
    is permanent and live. Yields the endpoint's ``HOST:PORT`` and the server's scope.
    """
    async with (
        open_fake_exchange(name="a", transport="memory", interval=0.02) as a,
        open_fake_exchange(name="b", transport="memory", interval=0.02) as b,
    ):
        b.refuse(3600.0)
        config = make_config(
            a, b, backoff=FAST_BACKOFF, per_connection={"b": {"restart": "temporary"}}
        )
        async with (
            open_supervisor(config, connector=RecordingConnector(a, b)) as sup,
            trio.open_nursery() as nursery,
        ):
            await a.wait_until(lambda f: bool(f.sessions) and f.sessions[0].subscribed)
            await b.wait_until(lambda f: f.refused >= 1)
            # The registry hears of both a moment later; nothing waits on time meanwhile.
            while [(c.state) for c in (await sup.stats()).connections] != ["live", "stopped"]:
                await trio.testing.wait_all_tasks_blocked()
            server = trio.CancelScope()

            async def serve(*, task_status: trio.TaskStatus[tuple[str, int]]) -> None:
                with server:
                    await serve_status(sup, "127.0.0.1", 0, task_status=task_status)

            host, port = await nursery.start(serve)
            yield f"{host}:{port}", server
            nursery.cancel_scope.cancel(reason="test done")


def assert_status_rows(stdout: str, address: str) -> None:
    assert (
        stdout.splitlines()[0]
        .strip()
        .startswith(f"marketprism status: http://{address}/status at ")
    )
    rows = table_rows(stdout)
    assert [row[:3] for row in rows] == [["a", "raw", rows[0][2]], ["b", "raw", rows[1][2]]]
    assert [row[2].split()[0] for row in rows] == ["live", "stopped"]
    assert [row[14] for row in rows] == ["1/1", "0/0"]


async def test_status_once_prints_one_row_per_connection(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with trio.fail_after(DEADLINE):
        async with served_supervisor() as (address, _):
            code = await trio.to_thread.run_sync(cli_main, ["status", address, "--once"])
    assert code == 0
    assert_status_rows(capsys.readouterr().out, address)


async def test_status_into_a_pipe_prints_one_table_and_exits_0(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with served_supervisor() as (address, _):
            result = await run_cli_async("status", address, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, b"")
    assert_status_rows(result.stdout.decode(), address)


async def test_status_of_nothing_listening_exits_1_saying_what_to_do(tmp_path: Path) -> None:
    # Bound but not listening: connections to it are refused, and the port stays ours.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
        with trio.fail_after(DEADLINE):
            result = await run_cli_async("status", address, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.decode() == unreachable(address, "cannot connect: Connection refused")
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        (
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "answered HTTP 404 Not Found, not a marketprism status document",
        ),
        (
            b'HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{"status":"ok"}',
            "the answer is not a status document of this marketprism version "
            "(Object missing required field `at`)",
        ),
        (
            b"SSH-2.0-OpenSSH_9.6\r\n",
            "no HTTP answer: Server disconnected without sending a response",
        ),
    ],
    ids=["404", "other-json", "not-http"],
)
async def test_status_of_another_server_exits_1_naming_it(
    tmp_path: Path, response: bytes, problem: str
) -> None:
    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await stream.receive_some(4096)
            await stream.send_all(response)

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, answer, 0, host="127.0.0.1"))
            address = f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
            result = await run_cli_async("status", address, cwd=tmp_path)
            nursery.cancel_scope.cancel(reason="test done")
    assert result.returncode == 1
    assert result.stderr.decode() == unreachable(address, problem)


async def test_a_status_endpoint_that_does_not_answer_times_out_at_5_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async with httpx.AsyncClient(transport=httpx.MockTransport(never)) as client:
        with pytest.raises(
            StatusUnavailable, match=r"^http://127\.0\.0\.1:9464/status: no answer within 5 s$"
        ):
            await fetch_status(client, "http://127.0.0.1:9464/status")
    assert trio.current_time() == DEFAULT_STATUS_TIMEOUT == 5.0


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("9464", "'9464' is not HOST:PORT (e.g. 127.0.0.1:9464 or [::1]:9464; PORT 0-65535)"),
        ("::1:9464", "'::1:9464': write an IPv6 address in brackets, e.g. [::1]:9464"),
        (
            "localhost:99999",
            "'localhost:99999' is not HOST:PORT (e.g. 127.0.0.1:9464 or [::1]:9464; PORT 0-65535)",
        ),
    ],
)
def test_status_with_a_bad_address_exits_2_naming_it(value: str, problem: str) -> None:
    result = subprocess.run(
        [*CLI, "status", value],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=QUICK,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"marketprism status: error: argument HOST:PORT: {problem}"
    )
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


#: An ECMA-48 control sequence: colours, cursor moves, erasures.
CSI: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@final
class Screen(Capture):
    """What a child writes to a terminal; tests wait on its content.

    As ``test_cli.Capture``, but a character cut between two reads decodes as U+FFFD
    until its rest arrives (a terminal's output is read in arbitrary pieces), and
    :attr:`text` leaves out the control sequences.
    """

    @property
    def raw(self) -> bytes:
        """The output as written."""
        return bytes(self._data)

    @property
    def text(self) -> str:
        """The output with its control sequences (colours, cursor moves) removed."""
        return CSI.sub("", self._data.decode(errors="replace"))


@final
class PtyMaster(trio.abc.ReceiveStream):
    """A pty's master side, ending (b"") where Linux says EIO: every slave fd closed."""

    def __init__(self, fd: int) -> None:
        self._stream = trio.lowlevel.FdStream(fd)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            return await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, OSError):
            return b""

    async def aclose(self) -> None:
        await self._stream.aclose()


async def test_status_on_a_terminal_is_live_shows_a_lost_endpoint_and_exits_0_on_ctrl_c(
    tmp_path: Path,
) -> None:
    master, slave = pty.openpty()
    # Wide enough for the table on one line per row.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 220, 0, 0))
    screen = Screen()
    with trio.fail_after(DEADLINE):
        async with served_supervisor() as (address, server), trio.open_nursery() as nursery:
            nursery.start_soon(screen.drain, PtyMaster(master))
            try:
                async with running_cli(
                    "status", address, "--interval", "0.25", cwd=tmp_path, stdout=slave
                ) as child:
                    await screen.wait_until(lambda text: "live " in text and "stopped " in text)
                    server.cancel(reason="the instance goes away")
                    await screen.wait_until(lambda text: "unreachable since" in text)
                    child.process.send_signal(signal.SIGINT)
            finally:
                os.close(slave)
    assert child.process.returncode == 0, child.stderr.text
    assert child.stderr.text == ""
    assert f"marketprism status: http://{address}/status: unreachable since " in screen.text
    assert "(cannot connect: Connection refused); retrying" in screen.text


# -- the table in `run` -----------------------------------------------------------------


@asynccontextmanager
async def terminal() -> AsyncIterator[tuple[int, Screen]]:
    """A pty 220 columns wide: yields its slave side (for a child's stdout) and what
    arrives on its master side. The slave is closed on the way out."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 220, 0, 0))
    screen = Screen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(screen.drain, PtyMaster(master))
        try:
            yield slave, screen
        finally:
            os.close(slave)


async def test_run_output_none_on_a_terminal_shows_the_table(tmp_path: Path) -> None:
    async with open_fake_exchange(name="feed", interval=0.05) as fake:
        write_config(tmp_path / "config.toml", fake.url)
        with trio.fail_after(DEADLINE):
            async with (
                terminal() as (slave, screen),
                running_cli("run", "--output", "none", cwd=tmp_path, stdout=slave) as child,
            ):
                await screen.wait_until(lambda text: "marketprism run (Ctrl-C to stop)" in text)
                await screen.wait_until(lambda text: "│ feed " in text and " live " in text)
                child.process.send_signal(signal.SIGINT)
    assert child.process.returncode == 0, child.stderr.text
    final = screen.text[screen.text.rindex("marketprism run (stopped)") :]
    rows = table_rows(final)
    assert [(row[0], row[1], row[2].split()[0]) for row in rows] == [("feed", "raw", "stopped")]
    # stderr is not the terminal: the log and the summary stay there.
    assert "feed: live: connected to ws://127.0.0.1:" in child.stderr.text
    assert child.stderr.text.splitlines()[-1].startswith("feed: ")


async def test_run_jsonl_on_a_terminal_gets_no_table(tmp_path: Path) -> None:
    async with open_fake_exchange(name="feed", interval=0.05) as fake:
        write_config(tmp_path / "config.toml", fake.url)
        with trio.fail_after(DEADLINE):
            async with (
                terminal() as (slave, screen),
                running_cli("run", cwd=tmp_path, stdout=slave) as child,
            ):
                await screen.wait_until(lambda text: text.count("\n") >= 3)
                child.process.send_signal(signal.SIGINT)
    assert child.process.returncode == 0, child.stderr.text
    assert "marketprism run" not in screen.text
    assert "│" not in screen.text
    assert screen.text.startswith('{"kind":"raw","connection":"feed"')


async def test_demo_on_a_terminal_redraws_the_table_with_the_log_above(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            terminal() as (slave, screen),
            running_cli(
                "demo",
                "--duration",
                "2",
                "--fault-every",
                "0.5",
                "--seed",
                "3",
                cwd=tmp_path,
                stdout=slave,
            ) as child,
        ):
            await screen.wait_until(lambda text: "(stopped)" in text)
    assert child.process.returncode == 0, child.stderr.text
    # On a terminal the log goes above the table, on the same stream: stderr is silent.
    assert child.stderr.text == ""
    text = screen.text
    final = text[text.rindex("marketprism demo: ") :]
    assert re.match(r"marketprism demo: \d+ messages delivered \(stopped\)", final), final
    rows = table_rows(final)
    assert [(row[0], row[2].split()[0]) for row in rows] == [
        (name, "stopped") for name in ("binance", "okx", "deribit", "bybit")
    ]
    before = text[: text.rindex("marketprism demo: ")]
    for name in ("binance", "okx", "deribit", "bybit"):
        assert f"{name}: live: connected to ws://127.0.0.1:" in before
    # Frames were redrawn in place: every title but the first follows an erasure (cursor
    # up over the previous frame, erase to the end of the screen).
    titles = text.count("marketprism demo: ")
    assert titles > 1
    assert len(re.findall(rb"\r\x1b\[\d+A\x1b\[J", screen.raw)) >= titles - 1
    assert "recent faults:" in final


async def test_demo_on_a_terminal_keeps_json_logs_on_stderr(tmp_path: Path) -> None:
    argv = ["--log-format", "json", "demo", "--duration", "2", "--fault-every", "0.5"]
    with trio.fail_after(DEADLINE):
        async with (
            terminal() as (slave, screen),
            running_cli(*argv, "--seed", "3", cwd=tmp_path, stdout=slave) as child,
        ):
            await screen.wait_until(lambda text: "(stopped)" in text)
    assert child.process.returncode == 0, child.stderr.text
    # JSON lines are for a machine reading stderr: none scrolls above the table.
    lines = child.stderr.text.splitlines()
    assert lines
    events = [json.loads(line) for line in lines]
    assert {"binance", "okx", "deribit", "bybit"} <= {e.get("connection") for e in events}
    assert '"level":' not in screen.text
    assert ": live: connected to" not in screen.text


@pytest.mark.parametrize(
    "raised",
    [
        KeyboardInterrupt(),
        BaseExceptionGroup("in a task group", [KeyboardInterrupt()]),
        BaseExceptionGroup("nested", [BaseExceptionGroup("inner", [KeyboardInterrupt()])]),
    ],
    ids=["bare", "grouped", "nested"],
)
def test_ctrl_c_anywhere_in_status_exits_0(
    monkeypatch: pytest.MonkeyPatch, raised: BaseException
) -> None:
    async def interrupted(*args: object) -> int:
        raise raised

    monkeypatch.setattr(supervisor.cli.status, "_status", interrupted)
    assert supervisor.cli.status.run_status("127.0.0.1", 9464, interval=1.0, once=True) == 0


def test_a_bug_grouped_with_ctrl_c_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: object) -> int:
        raise BaseExceptionGroup("both", [KeyboardInterrupt(), ValueError("a bug")])

    monkeypatch.setattr(supervisor.cli.status, "_status", broken)
    with pytest.raises(BaseExceptionGroup) as caught:
        supervisor.cli.status.run_status("127.0.0.1", 9464, interval=1.0, once=True)
    assert caught.group_contains(ValueError, match=r"^a bug$")
