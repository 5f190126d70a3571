"""The ``marketprism`` command end to end, run the way a user runs it: in a child process.

Rules of this file: every test starts the real entry point (``CLI``; ``supervisor.cli``
has no ``__main__`` guard, so ``python -m supervisor.cli`` would do nothing) and asserts
exact output lines and exit codes. Tests that need an exchange serve a TCP fake exchange
(``supervisor.testing``) from the test's own Trio loop on loopback and write a config
file pointing at it; the child connects to it. They wait on the fake's state
(``wait_until``) or on the child's output, never on time. Every test has a hard deadline:
``trio.fail_after`` (real seconds) or ``timeout=`` on ``subprocess.run``.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, Final, final

import pytest
import trio
import trio.testing

import supervisor.tree
from supervisor.cli import main as cli_main
from supervisor.testing import FakeBinance, FakeExchange, open_fake_exchange
from supervisor.testing.fakes.rest import open_fake_rest

#: The real entry point, exactly as the ``marketprism`` console script calls it.
CLI: Final = [
    sys.executable,
    "-c",
    "import sys; from supervisor.cli import main; sys.exit(main())",
]
#: The repository root, home of the example ``config.toml``.
REPO: Final = Path(__file__).resolve().parent.parent
#: The child's environment: no terminal size or colour overrides, so output is stable.
ENV: Final = {
    key: value
    for key, value in os.environ.items()
    if key not in {"COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE"}
    and not key.lower().endswith("_proxy")  # the routes `check` prints come from config
}
#: Hard deadline of a test that runs the child against a fake, in real seconds.
DEADLINE: Final = 20.0
#: ``timeout=`` of ``subprocess.run`` for commands that start nothing.
QUICK: Final = 15.0
#: ``[supervisor] shutdown_timeout`` of the configs below: a clean stop must end within it.
SHUTDOWN_TIMEOUT: Final = 3.0
#: The frame the test connection sends after every connect.
SUBSCRIBE: Final = '{"op":"subscribe","args":["trades"]}'
#: The keys of every JSON line ``run --output jsonl`` prints for the raw adapter.
MESSAGE_KEYS: Final = {"connection", "exchange", "kind", "received_at", "data"}
#: The per-connection summary ``run`` prints on stderr when it stops cleanly.
SUMMARY: Final = re.compile(
    r"feed: (?P<messages>\d+) messages, 1 connects, 0 restarts, 0 dropped, 0 malformed"
)


def write_config(
    path: Path, url: str, *, supervisor: str = "", connection: str = "", backoff: str = ""
) -> Path:
    """Write a config with one raw connection ``feed`` to ``url``; return ``path``.

    ``supervisor``, ``connection`` and ``backoff`` are extra TOML lines for the
    ``[supervisor]``, ``[connections.feed]`` and ``[connections.feed.backoff]`` tables,
    which start on lines 1, 5 and 11; the extra lines go on lines 3, 9 and 12.
    """
    lines = [
        "[supervisor]",
        f"shutdown_timeout = {SHUTDOWN_TIMEOUT}",
        supervisor,
        "",
        "[connections.feed]",
        'exchange = "raw"',
        f'url = "{url}"',
        f"subscribe = ['{SUBSCRIBE}']",
        connection,
        "",
        "[connections.feed.backoff]",
        backoff,
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``marketprism ARGS`` to completion (for commands that start nothing)."""
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=QUICK,
        check=False,
    )


async def kill(process: trio.Process) -> None:
    """``deliver_cancel`` for the children: SIGKILL at once.

    Trio's default sends SIGTERM and warns before its SIGKILL five seconds later; under
    ``filterwarnings = error`` that warning raises and the SIGKILL never comes, so a child
    that ignores SIGTERM (one whose loop is blocked, audit H1) would hang the test.
    """
    process.kill()


async def run_cli_async(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """Run ``marketprism ARGS`` to completion while the test's fakes keep serving."""
    return await trio.run_process(
        [*CLI, *args],
        cwd=cwd,
        env=ENV,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        deliver_cancel=kill,
    )


def messages_of(stdout: str) -> list[dict[str, Any]]:
    """Parse ``run --output jsonl`` output; assert the exact shape of every line."""
    messages: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        message = json.loads(line)
        assert isinstance(message, dict), line
        assert set(message) == MESSAGE_KEYS, line
        assert (message["connection"], message["exchange"], message["kind"]) == (
            "feed",
            "raw",
            "raw",
        ), line
        assert type(message["received_at"]) is float, line
        messages.append(message)
    return messages


def assert_consecutive(messages: list[dict[str, Any]]) -> None:
    """The fake's frames of session 0, all of them, in order, from seq 0."""
    assert [m["data"] for m in messages] == [
        {"seq": seq, "session": 0} for seq in range(len(messages))
    ]
    stamps = [m["received_at"] for m in messages]
    assert stamps == sorted(stamps)


def summary_count(stderr: str) -> int:
    """The message count of the summary, which must be stderr's last line."""
    match = SUMMARY.fullmatch(stderr.splitlines()[-1])
    assert match is not None, stderr
    return int(match["messages"])


class Capture:
    """Everything a child process writes to one pipe; tests wait on its content."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._closed = False
        self._changed = trio.Event()

    @property
    def text(self) -> str:
        return self._data.decode()

    async def drain(self, stream: trio.abc.ReceiveStream) -> None:
        async with stream:
            async for chunk in stream:
                self._data += chunk
                self._wake()
        self._closed = True
        self._wake()

    async def wait_until(self, predicate: Callable[[str], bool]) -> None:
        """Wait until ``predicate(text)`` holds; fail if the pipe closes first."""
        while not predicate(self.text):
            if self._closed:
                raise AssertionError(f"output ended before the awaited state:\n{self.text}")
            await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


@final
class Child:
    """A running ``marketprism`` child process with its stdout and stderr captured."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.stdout = Capture()
        self.stderr = Capture()


@asynccontextmanager
async def running_cli(
    *args: str, cwd: Path, stdout: int | None = None, stderr: int | None = None
) -> AsyncIterator[Child]:
    """Start ``marketprism ARGS``; on exit wait for it and for both pipes to close.

    ``stdout``, ``stderr``: a descriptor for the child's stream, which the test then reads
    (or not) itself; ``child.stdout`` or ``child.stderr`` stays empty. By default both
    are captured. If the block raises, the child is killed (``trio.run_process`` on
    cancellation).
    """
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                [*CLI, *args],
                cwd=cwd,
                env=ENV,
                stdout=subprocess.PIPE if stdout is None else stdout,
                stderr=subprocess.PIPE if stderr is None else stderr,
                check=False,
                deliver_cancel=kill,
            )
        )
        child = Child(process)
        if process.stdout is not None:
            nursery.start_soon(child.stdout.drain, process.stdout)
        if process.stderr is not None:
            nursery.start_soon(child.stderr.drain, process.stderr)
        yield child


async def wait_closed_by_client(fake: FakeExchange) -> int | None:
    """Wait until the fake's only session ended; return the close code the client sent."""
    await fake.wait_until(lambda f: len(f.sessions) == 1 and not f.sessions[0].open)
    return fake.sessions[0].close_code


def subscribed(fake: FakeExchange) -> bool:
    return len(fake.sessions) == 1 and fake.sessions[0].subscribed


# -- check ------------------------------------------------------------------------------


def test_check_example_config_is_ok() -> None:
    result = run_cli("check", "config.toml", cwd=REPO)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "config.toml: OK: 4 connection(s): binance, okx, deribit, bybit",
        *(f"  {name}: direct (no proxy configured)" for name in DEMO_NAMES),
    ]


DEMO_NAMES: Final = ("binance", "okx", "deribit", "bybit")


def test_check_default_path_is_config_toml() -> None:
    result = run_cli("check", cwd=REPO)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[0] == (
        "config.toml: OK: 4 connection(s): binance, okx, deribit, bybit"
    )


def test_check_shows_the_route_the_environment_gives_each_connection() -> None:
    env = {**ENV, "HTTPS_PROXY": "socks5h://bob:S3CRET@p.example:1080", "NO_PROXY": ".okx.com"}
    result = subprocess.run(
        [*CLI, "check", "config.toml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=QUICK,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[1:] == [
        "  binance: socks5h://bob:***@p.example:1080 (environment HTTPS_PROXY)",
        "  okx: direct (NO_PROXY entry '.okx.com' matches ws.okx.com)",
        "  deribit: socks5h://bob:***@p.example:1080 (environment HTTPS_PROXY)",
        "  bybit: socks5h://bob:***@p.example:1080 (environment HTTPS_PROXY)",
    ]


def test_check_refuses_an_invalid_environment_proxy() -> None:
    env = {**ENV, "https_proxy": "bogus://u:S3CRET@x"}
    result = subprocess.run(
        [*CLI, "check", "config.toml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=QUICK,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert "S3CRET" not in result.stderr
    assert result.stderr.startswith(
        "config.toml: connections.binance: environment https_proxy: 'bogus://u:***@x' has an "
        "unsupported scheme 'bogus'"
    )


BROKEN: Final = """\
[supervisor]
max_restrats = 3
within = -5

[connections.a]
exchange = "binanse"
url = "http://example.com/ws"

[connections.b]
exchange = "raw"
url = "not a url"
stale_after = 0
"""

BROKEN_PROBLEMS: Final = [
    "broken.toml:2: supervisor.max_restrats: unknown key; did you mean 'max_restarts'? "
    "(expected one of: connect_attempts, connect_interval, max_restarts, shutdown_timeout, "
    "strategy, within)",
    "broken.toml:3: supervisor.within: -5 is out of range (expected a number > 0 and <= 86400.0)",
    "broken.toml:6: connections.a.exchange: unknown exchange 'binanse'; did you mean 'binance'?"
    " (expected one of: binance, binance_usdm, bybit, bybit_linear, deribit, okx, raw)",
    "broken.toml:7: connections.a.url: 'http://example.com/ws' is not a WebSocket URL "
    "(expected ws:// or wss:// with a host)",
    "broken.toml:11: connections.b.url: 'not a url' is not a WebSocket URL "
    "(expected ws:// or wss:// with a host)",
    "broken.toml:12: connections.b.stale_after: 0 is out of range "
    "(expected a number >= 1 and <= 86400.0)",
]


#: A raw connection whose ``subscribe`` is an array nested ``{open}`` deep (audit L4:
#: tomllib's RecursionError was a 3000-line traceback and exit 1).
DEEP: Final = '[connections.x]\nexchange = "raw"\nurl = "ws://h/"\nsubscribe = {open}{close}\n'
TOO_DEEP: Final = (
    "nested deeper than 64 levels (expected tables, arrays and inline tables a few levels "
    "deep; look for a runaway '[', '{' or dotted key)"
)


@pytest.mark.parametrize(
    ("name", "text", "problems"),
    [
        pytest.param("broken.toml", BROKEN, BROKEN_PROBLEMS, id="every-problem-one-line-each"),
        pytest.param(
            "syntax.toml",
            "[supervisor]\nwithin = 1.0\n[connections\n",
            [
                "syntax.toml:3: syntax: Expected ']' at the end of a table declaration "
                "(fix the TOML syntax at column 13)"
            ],
            id="toml-syntax-error",
        ),
        *(
            pytest.param(
                "deep.toml",
                DEEP.format(open="[" * depth, close="]" * depth),
                [f"deep.toml:4: connections.x.subscribe: {TOO_DEEP}"],
                id=f"nested-{depth}-deep",
            )
            for depth in (1000, 100_000)
        ),
    ],
)
def test_check_bad_config_prints_problems_and_exits_2(
    tmp_path: Path, name: str, text: str, problems: list[str]
) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    result = run_cli("check", name, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == problems


def test_check_missing_file_is_one_line(tmp_path: Path) -> None:
    result = run_cli("check", "missing.toml", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "missing.toml: cannot read: no such file (pass the path of a TOML config file)\n"
    )


# -- run: bad config --------------------------------------------------------------------


async def test_run_bad_config_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(interval=0.05) as fake:
            # Any TCP connection, even one that never finishes its handshake, counts.
            fake.refuse(1e6)
            write_config(
                tmp_path / "bad.toml",
                fake.url,
                supervisor="max_restarts = -1",
                connection='overflow = "drop"',
                backoff="initial = -1.0",
            )
            result = await run_cli_async("run", "bad.toml", "--duration", "5", cwd=tmp_path)
            await trio.testing.wait_all_tasks_blocked()
            assert (fake.refused, fake.sessions) == (0, [])
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.decode().splitlines() == [
        "bad.toml:3: supervisor.max_restarts: -1 is out of range "
        "(expected an integer >= 0 and <= 1000000)",
        "bad.toml:9: connections.feed.overflow: unknown overflow 'drop' "
        "(expected one of: block, drop_oldest, drop_newest)",
        "bad.toml:12: connections.feed.backoff.initial: -1.0 is out of range "
        "(expected a number >= 0 and <= 3600.0)",
    ]


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_run_deeply_nested_config_is_one_problem_and_exits_2(tmp_path: Path, depth: int) -> None:
    text = DEEP.format(open="[" * depth, close="]" * depth)
    (tmp_path / "deep.toml").write_text(text, encoding="utf-8")
    result = run_cli("run", "deep.toml", "--duration", "1", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"deep.toml:4: connections.x.subscribe: {TOO_DEEP}\n"


def test_run_missing_default_config_exits_2(tmp_path: Path) -> None:
    result = run_cli("run", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "config.toml: cannot read: no such file (pass the path of a TOML config file)\n"
    )


# -- run against a fake exchange --------------------------------------------------------


async def test_run_jsonl_for_duration_prints_every_frame_and_closes_1000(
    tmp_path: Path,
) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(interval=0.05) as fake:
            write_config(tmp_path / "feed.toml", fake.url)
            before = time.time()
            result = await run_cli_async(
                "run", "feed.toml", "--output", "jsonl", "--duration", "2", cwd=tmp_path
            )
            after = time.time()
            close_code = await wait_closed_by_client(fake)
            session = fake.sessions[0]
    assert result.returncode == 0
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    messages = messages_of(result.stdout.decode())
    # 2 s at one frame per 0.05 s is about 40; allow a slow machine plenty of slack.
    assert len(messages) >= 10
    assert_consecutive(messages)
    assert all(before <= m["received_at"] <= after for m in messages)
    assert session.received == [SUBSCRIBE]
    assert close_code == 1000
    assert len(messages) <= session.sent
    assert summary_count(stderr) >= len(messages)
    assert any(line.endswith("--duration 2 s reached; stopping") for line in stderr.splitlines())


def write_binance_config(
    path: Path,
    url: str,
    channels: tuple[str, ...] = ("trades",),
    *,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
) -> Path:
    """Write a config with one Binance connection ``spot`` (BTC-USDT) to a fake's ``url``."""
    path.write_text(
        "[supervisor]\n"
        f"shutdown_timeout = {shutdown_timeout}\n"
        "[connections.spot]\n"
        'exchange = "binance"\n'
        f'url = "{url.removesuffix("/ws")}/stream"\n'
        f"channels = {json.dumps(list(channels))}\n"
        'symbols = ["BTC-USDT"]\n',
        encoding="utf-8",
    )
    return path


async def test_run_jsonl_prints_normalized_exchange_messages(tmp_path: Path) -> None:
    # A real adapter against the rule-enforcing Binance fake over loopback TCP.
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(
            name="binance", interval=0.05, handler=FakeBinance(combined=True)
        ) as fake:
            write_binance_config(tmp_path / "binance.toml", fake.url, ("trades", "ticker", "book"))
            result = await run_cli_async(
                "run", "binance.toml", "--output", "jsonl", "--duration", "1.5", cwd=tmp_path
            )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    kinds = {line["kind"] for line in lines}
    assert kinds == {"trade", "ticker", "book_delta"}
    for line in lines:
        assert (line["connection"], line["exchange"], line["symbol"]) == (
            "spot",
            "binance",
            "BTC-USDT",
        )
        assert isinstance(line["received_at"], float)
    trade = next(line for line in lines if line["kind"] == "trade")
    assert set(trade) == {
        "kind",
        "connection",
        "exchange",
        "received_at",
        "symbol",
        "side",
        "price",
        "amount",
        "trade_id",
        "timestamp",
    }
    # exact decimals travel as strings, never floats
    assert isinstance(trade["price"], str) and isinstance(trade["amount"], str)
    Decimal(trade["price"])
    assert trade["side"] in ("buy", "sell")


async def test_run_jsonl_prints_a_checked_book_chain(tmp_path: Path) -> None:
    # Local books over loopback TCP: the WebSocket fake and its REST depth endpoint.
    binance = FakeBinance(combined=True)
    with trio.fail_after(DEADLINE):
        async with (
            open_fake_exchange(name="binance", interval=0.05, handler=binance) as fake,
            open_fake_rest() as rest,
        ):
            rest.serve_venue("binance", ["BTCUSDT"])
            rest.serve_books(binance)
            (tmp_path / "books.toml").write_text(
                "[connections.spot]\n"
                'exchange = "binance"\n'
                f'url = "{fake.url.removesuffix("/ws")}/stream"\n'
                'channels = ["book"]\n'
                'symbols = ["BTC-USDT"]\n'
                "[connections.spot.rest]\n"
                f'base_url = "{rest.url}"\n',
                encoding="utf-8",
            )
            result = await run_cli_async(
                "run", "books.toml", "--output", "jsonl", "--duration", "1.5", cwd=tmp_path
            )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    books = [line for line in lines if line["kind"].startswith("book")]
    # A snapshot, then deltas chained on it, until the stop's BookInvalid.
    assert books[0]["kind"] == "book_snapshot" and isinstance(books[0]["sequence"], int)
    assert books[-1]["kind"] == "book_invalid"
    assert books[-1]["reason"] == "the connection was lost"
    deltas = books[1:-1]
    assert len(deltas) >= 5 and {d["kind"] for d in deltas} == {"book_delta"}
    previous = books[0]["sequence"]
    for delta in deltas:
        assert delta["prev_sequence"] == previous
        previous = delta["sequence"]
    assert books[-1]["sequence"] == previous
    assert [r.path for r in rest.requests].count("/api/v3/depth") == 1


async def test_run_output_none_prints_nothing_but_delivers(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(interval=0.05) as fake:
            write_config(tmp_path / "feed.toml", fake.url)
            result = await run_cli_async(
                "run", "feed.toml", "--output", "none", "--duration", "1", cwd=tmp_path
            )
            close_code = await wait_closed_by_client(fake)
    assert (result.returncode, result.stdout) == (0, b"")
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    assert summary_count(stderr) > 0
    assert close_code == 1000


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_run_stops_cleanly_on_signal(tmp_path: Path, signum: signal.Signals) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(interval=0.05) as fake:
            write_config(tmp_path / "feed.toml", fake.url)
            async with running_cli("run", "feed.toml", cwd=tmp_path) as child:
                await fake.wait_until(subscribed)
                await child.stdout.wait_until(lambda text: text.count("\n") >= 3)
                child.process.send_signal(signum)
                with trio.fail_after(SHUTDOWN_TIMEOUT):
                    await child.process.wait()
            close_code = await wait_closed_by_client(fake)
    assert child.process.returncode == 0
    assert close_code == 1000
    messages = messages_of(child.stdout.text)
    assert len(messages) >= 3
    assert_consecutive(messages)
    stderr = child.stderr.text
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert any(line.endswith(f"received {signum.name}; stopping cleanly") for line in lines)
    assert summary_count(stderr) >= len(messages)


async def test_run_second_sigint_during_shutdown_exits_without_traceback(
    tmp_path: Path,
) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(interval=0.05) as fake:
            write_config(tmp_path / "feed.toml", fake.url)
            async with running_cli("run", "feed.toml", cwd=tmp_path) as child:
                await fake.wait_until(subscribed)
                # A stalled exchange never answers the close frame, so the clean stop
                # takes the whole shutdown_timeout: time for an impatient second Ctrl-C.
                fake.stall()
                child.process.send_signal(signal.SIGINT)
                await child.stderr.wait_until(lambda text: "stopping cleanly" in text)
                child.process.send_signal(signal.SIGINT)
                with trio.fail_after(SHUTDOWN_TIMEOUT + 2):
                    await child.process.wait()
    assert "Traceback" not in child.stderr.text
    assert "received SIGINT; already stopping (at most 3 s more)" in child.stderr.text
    assert child.process.returncode == 0


# -- run: a reader of stdout that does not keep up (audit H1) ---------------------------
#
# The child's stdout is a pipe of one page (4096 bytes) that the test does not read, and
# ``--output-buffer 0.0625`` holds 64 KiB more: both fill within a second of data.

#: ``--output-buffer`` of these tests, in MiB (64 KiB).
OUTPUT_BUFFER: Final = "0.0625"
#: The one warning of the first dropped line.
DROPPING: Final = re.compile(
    r"WARNING stdout is not read fast enough: its 64 KiB buffer is full, so \d+ line\(s\) "
    r"were dropped and more will be until the reader catches up \(the total is reported "
    r"at exit\)"
)
#: The total at exit: dropped lines out of every line ``run`` had to print.
DROPPED: Final = re.compile(
    r"WARNING stdout: (?P<dropped>\d+) of (?P<lines>\d+) line\(s\) dropped in all because the "
    r"reader did not keep up \(a bigger --output-buffer than 0.0625 MiB absorbs longer "
    r"pauses\)"
)
#: What the flush at exit gave up on, after ``shutdown_timeout`` (3 s).
GAVE_UP: Final = re.compile(
    r"WARNING stdout: gave up after 3 s waiting for the reader; (?P<lines>\d+) buffered "
    r"line\(s\) were not written"
)


def small_pipe() -> tuple[int, int]:
    """A pipe of one page: ``(read end, write end)``."""
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 4096)
    return read, write


def one_match(pattern: re.Pattern[str], stderr: str) -> re.Match[str]:
    """The one line of ``stderr`` that ends with ``pattern``."""
    found = [
        m for line in stderr.splitlines() if (m := pattern.search(line)) and m.end() == len(line)
    ]
    assert len(found) == 1, stderr
    return found[0]


async def test_run_answers_pings_while_nobody_reads_stdout_and_stops_on_sigint(
    tmp_path: Path,
) -> None:
    # A Binance that pings every 0.5 s and closes with 1008 after 1 s without a pong: a
    # loop blocked on stdout loses the session within 1.5 s (audit H1, repro
    # d_stdout_block.sh: "closed_for=['1008 No pong within 5 s']").
    binance = FakeBinance(combined=True, ping_interval=0.5, pong_timeout=1.0)
    read, write = small_pipe()
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(name="binance", interval=0.002, handler=binance) as fake:
            write_binance_config(tmp_path / "binance.toml", fake.url)
            async with running_cli(
                "run", "binance.toml", "--output-buffer", OUTPUT_BUFFER, cwd=tmp_path, stdout=write
            ) as child:
                os.close(write)  # the child holds its own copy
                await child.stderr.wait_until(lambda text: DROPPING.search(text) is not None)
                # stdout is stuck from here on: the pipe is full and the buffer too.
                state = binance.sessions[0]
                pongs = state.pongs
                await fake.wait_until(lambda _: state.pongs >= pongs + 3)
                assert (fake.sessions[0].open, state.closed_for, len(fake.sessions)) == (
                    True,
                    None,
                    1,
                )
                child.process.send_signal(signal.SIGINT)
                # The clean stop, then at most shutdown_timeout for the flush.
                with trio.fail_after(2 * SHUTDOWN_TIMEOUT + 1):
                    await child.process.wait()
            close_code = await wait_closed_by_client(fake)
    with os.fdopen(read, "rb") as pipe:
        printed = pipe.read()
    assert child.process.returncode == 0
    assert (close_code, state.closed_for) == (1000, None)
    stderr = child.stderr.text
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert "received SIGINT; stopping cleanly" in stderr
    # Only whole lines reached the pipe; every line run had is written, dropped or
    # given up, exactly.
    assert printed.endswith(b"\n")
    lines = [json.loads(line) for line in printed.splitlines()]
    assert {line["kind"] for line in lines} == {"trade"}
    one_match(DROPPING, stderr)
    dropped = one_match(DROPPED, stderr)
    unwritten = int(one_match(GAVE_UP, stderr)["lines"])
    assert int(dropped["lines"]) == len(lines) + int(dropped["dropped"]) + unwritten
    assert unwritten > 0
    summary = re.fullmatch(
        r"spot: (\d+) messages, 1 connects, 0 restarts, 0 dropped, 0 malformed",
        stderr.splitlines()[-1],
    )
    assert summary is not None, stderr
    assert int(summary[1]) >= int(dropped["lines"])


#: The exit summary of the ``spot`` connection on stderr.
SPOT_SUMMARY: Final = re.compile(
    r"spot: \d+ messages, 1 connects, 0 restarts, 0 dropped, 0 malformed"
)
#: A log line as ``run`` writes it on stderr.
LOG_LINE: Final = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) +\S.*"
)


async def test_run_with_both_streams_in_one_unread_pipe_still_answers_pings(
    tmp_path: Path,
) -> None:
    # ``marketprism run 2>&1 | slow-consumer``: the log lines (the drop warning among
    # them) go to the stuck pipe too, and must not block the loop either.
    binance = FakeBinance(combined=True, ping_interval=0.5, pong_timeout=1.0)
    read, write = small_pipe()
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(name="binance", interval=0.002, handler=binance) as fake:
            # Each stream's flush gives up after shutdown_timeout: keep it short here.
            write_binance_config(tmp_path / "binance.toml", fake.url, shutdown_timeout=1.0)
            async with running_cli(
                "run",
                "binance.toml",
                "--output-buffer",
                OUTPUT_BUFFER,
                cwd=tmp_path,
                stdout=write,
                stderr=write,
            ) as child:
                os.close(write)
                # 1000 trade lines are about 250 KB: far more than the pipe and the
                # buffer hold, so both streams are stuck from here on.
                await fake.wait_until(lambda f: bool(f.sessions) and f.sessions[0].sent >= 1000)
                state = binance.sessions[0]
                pongs = state.pongs
                await fake.wait_until(lambda _: state.pongs >= pongs + 3)
                assert (fake.sessions[0].open, state.closed_for, len(fake.sessions)) == (
                    True,
                    None,
                    1,
                )
                child.process.send_signal(signal.SIGINT)
                # The clean stop, then at most shutdown_timeout (1 s) for each stream.
                with trio.fail_after(3 * 1.0 + 2):
                    await child.process.wait()
            close_code = await wait_closed_by_client(fake)
    with os.fdopen(read, "rb") as pipe:
        printed = pipe.read().decode()
    assert (child.process.returncode, close_code, state.closed_for) == (0, 1000, None)
    # Two writers share the pipe, each writing whole lines atomically: no line is torn.
    assert printed.endswith("\n")
    lines = printed.splitlines()
    logs = [line for line in lines if LOG_LINE.fullmatch(line)]
    assert logs, printed
    live = f"INFO    spot: live: connected to {fake.url.removesuffix('/ws')}/stream and "
    assert re.search(re.escape(live) + r"subscribed in \d+\.\d\d s$", logs[0]), logs[0]
    for line in lines:
        # The exit summary makes it out when stderr drains within its flush time.
        if line not in logs and not SPOT_SUMMARY.fullmatch(line):
            assert line.startswith('{"kind":"trade",'), printed
            assert json.loads(line)["kind"] == "trade", printed


async def test_run_writes_the_buffered_lines_in_order_when_the_reader_resumes(
    tmp_path: Path,
) -> None:
    read, write = small_pipe()
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(interval=0.001) as fake:
            write_config(tmp_path / "feed.toml", fake.url)
            async with running_cli(
                "run", "feed.toml", "--output-buffer", OUTPUT_BUFFER, cwd=tmp_path, stdout=write
            ) as child:
                os.close(write)
                await child.stderr.wait_until(lambda text: DROPPING.search(text) is not None)
                sent = fake.sessions[0].sent
                # Frames keep arriving and being delivered while stdout is stuck.
                await fake.wait_until(lambda f: f.sessions[0].sent >= sent + 200)
                child.process.send_signal(signal.SIGINT)
                await child.stderr.wait_until(lambda text: "stopping cleanly" in text)
                output = Capture()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(output.drain, trio.lowlevel.FdStream(read))
                    with trio.fail_after(SHUTDOWN_TIMEOUT + 1):
                        await child.process.wait()
            close_code = await wait_closed_by_client(fake)
    assert (child.process.returncode, close_code) == (0, 1000)
    stderr = child.stderr.text
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert GAVE_UP.search(stderr) is None, stderr
    # Whole lines in the order of delivery, from frame 0 on; a line is missing only
    # where the buffer was full (the newest lines are dropped), and each one is counted.
    messages = messages_of(output.text)
    seqs = [m["data"]["seq"] for m in messages]
    assert seqs[0] == 0
    assert all(a < b for a, b in itertools.pairwise(seqs)), seqs
    assert {m["data"]["session"] for m in messages} == {0}
    dropped = one_match(DROPPED, stderr)
    assert int(dropped["lines"]) == len(messages) + int(dropped["dropped"])
    assert summary_count(stderr) >= int(dropped["lines"])


async def test_run_stops_cleanly_when_the_reader_of_stdout_goes_away(tmp_path: Path) -> None:
    # ``marketprism run | head -3``: the reader exits; run stops without a traceback.
    read, write = os.pipe()
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(interval=0.05) as fake:
            write_config(tmp_path / "feed.toml", fake.url)
            async with running_cli("run", "feed.toml", cwd=tmp_path, stdout=write) as child:
                os.close(write)
                head = Capture()
                stream = trio.lowlevel.FdStream(read)
                while head.text.count("\n") < 3:
                    head._data += await stream.receive_some()
                await stream.aclose()
                with trio.fail_after(SHUTDOWN_TIMEOUT + 1):
                    await child.process.wait()
            close_code = await wait_closed_by_client(fake)
    assert (child.process.returncode, close_code) == (0, 1000)
    assert len(messages_of("".join(head.text.splitlines(keepends=True)[:3]))) == 3
    stderr = child.stderr.text
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert any(
        line.endswith("INFO    stdout closed by its reader; stopping")
        for line in stderr.splitlines()
    )
    assert summary_count(stderr) >= 3


async def test_run_exits_1_when_stdout_cannot_be_written(tmp_path: Path) -> None:
    # Not a reader that left but a destination that fails (a full disk): say so, exit 1.
    full = os.open("/dev/full", os.O_WRONLY)
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(interval=0.05) as fake:
            write_config(tmp_path / "feed.toml", fake.url)
            async with running_cli("run", "feed.toml", cwd=tmp_path, stdout=full) as child:
                os.close(full)
                await child.stderr.wait_until(lambda text: "cannot write stdout" in text)
                with trio.fail_after(SHUTDOWN_TIMEOUT + 1):
                    await child.process.wait()
            close_code = await wait_closed_by_client(fake)
    assert (child.process.returncode, close_code) == (1, 1000)
    stderr = child.stderr.text
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert any(
        line.endswith("ERROR   cannot write stdout: [Errno 28] No space left on device; stopping")
        for line in stderr.splitlines()
    ), stderr
    assert summary_count(stderr) >= 1


# -- run: the network is waited out; crashes give up loudly ------------------------------


@pytest.mark.parametrize(
    ("status", "last_error"),
    [
        pytest.param(None, r"ConnectError: .*{url}.*", id="tcp-reset"),
        pytest.param(
            429,
            r"HandshakeRejected: {url} rejected the WebSocket upgrade with HTTP 429",
            id="http-429",
        ),
    ],
)
async def test_run_keeps_trying_when_the_network_fails_and_says_why(
    tmp_path: Path, status: int | None, last_error: str
) -> None:
    # Was "gives up with exit 1" after max_restarts = 1: the network's failures no
    # longer count toward restart intensity (issue 12). A crash still does (below).
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(interval=0.05) as fake:
            fake.refuse(1e6, status=status)
            write_config(
                tmp_path / "feed.toml",
                fake.url,
                supervisor="max_restarts = 1\nwithin = 60.0",
                backoff='initial = 0.05\nmax = 0.05\njitter = "none"',
            )
            async with running_cli("run", "feed.toml", cwd=tmp_path) as child:
                await fake.wait_until(lambda f: f.refused >= 4)
                assert child.process.returncode is None  # still trying
                child.process.send_signal(signal.SIGINT)
    assert child.process.returncode == 0
    assert child.stdout.text == ""
    stderr = child.stderr.text
    assert "Traceback" not in stderr
    ended = re.escape("WARNING feed: session ended: ") + last_error.format(url=re.escape(fake.url))
    # Said once, with the reason class and what next; the refusals after it, all within
    # the 60 s summary window, are counted instead of logged (tests/test_logs.py).
    assert len(re.findall(ended, stderr)) == 1, stderr
    assert re.search(ended + r" \((connect|handshake 429)\); reconnecting in 0\.05 s", stderr)


def test_run_gives_up_loudly_with_exit_1_when_our_code_keeps_crashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Crashing:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass  # built like TcpTlsConnector, per connection

        async def __call__(self, url: str) -> trio.abc.Stream:
            raise RuntimeError(f"bug while connecting to {url}")

    monkeypatch.setattr(supervisor.tree, "TcpTlsConnector", Crashing)
    path = write_config(
        tmp_path / "feed.toml",
        "ws://127.0.0.1:9/ws",
        supervisor="max_restarts = 1\nwithin = 60.0",
        backoff='initial = 0.05\njitter = "none"',
    )
    assert cli_main(["run", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1] == (
        "marketprism: gave up on connection 'feed': connection 'feed' needed more than "
        "1 restarts within 60 s; last error: RuntimeError: bug while connecting to "
        "ws://127.0.0.1:9/ws"
    )


# -- demo -------------------------------------------------------------------------------

DEMO_NAMES: Final = ["binance", "okx", "deribit", "bybit"]
DEMO_TITLE: Final = re.compile(r"marketprism demo: (\d+) messages delivered")
DEMO_FAULT: Final = re.compile(
    r"\+\s*\d+\.\d s  (binance|okx|deribit): "
    r"(close 1001|TCP reset|stall|garbage frame|book gap|serverShutdown|notice 64008|"
    r"maintenance|oversized frame|refuse 2 s|slow sender)"
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """One ``marketprism demo`` run with frequent faults; stdout is a pipe, not a TTY."""
    return subprocess.run(
        [*CLI, "demo", "--duration", "4", "--fault-every", "0.5", "--seed", "3"],
        cwd=tmp_path_factory.mktemp("demo"),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_demo_runs_for_duration_and_exits_0(demo: subprocess.CompletedProcess[str]) -> None:
    assert demo.returncode == 0, demo.stderr
    assert "Traceback" not in demo.stdout + demo.stderr
    delivered = [int(n) for n in DEMO_TITLE.findall(demo.stdout)]
    assert delivered, demo.stdout
    assert delivered == sorted(delivered)
    assert delivered[-1] > 0
    for name in DEMO_NAMES:
        assert f"{name}: live: connected to ws://127.0.0.1:" in demo.stderr


def test_demo_final_table_shows_every_connection(
    demo: subprocess.CompletedProcess[str],
) -> None:
    final = demo.stdout[demo.stdout.rindex("marketprism demo: ") :]
    title = DEMO_TITLE.search(final)
    assert title is not None
    rows = [
        [cell.strip() for cell in line.strip().split("│")[1:-1]]
        for line in final.splitlines()
        if line.strip().startswith("│")
    ]
    assert [row[0] for row in rows] == DEMO_NAMES, final
    assert [row[2].split()[0] for row in rows] == ["stopped"] * 4, final
    received = [int(row[5]) for row in rows]
    # every connection subscribed its trades, tickers and books (and deribit's notices)
    assert [row[14] for row in rows] == ["6/6", "6/6", "7/7", "6/6"], final
    assert all(count > 0 for count in received), final
    # Every delivered message was received by some connection first.
    assert 0 < int(title[1]) <= sum(received), final
    faults = [line.strip() for line in final.splitlines() if DEMO_FAULT.fullmatch(line.strip())]
    assert faults, final


# -- usage errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        pytest.param(
            ["run", "--duration", "-1"],
            "marketprism run: error: argument --duration: '-1' must be a positive number "
            "of seconds",
            id="negative-duration",
        ),
        pytest.param(
            ["run", "--duration", "nan"],
            "marketprism run: error: argument --duration: 'nan' must be a positive number "
            "of seconds",
            id="nan-duration",
        ),
        pytest.param(
            ["run", "--duration", "soon"],
            "marketprism run: error: argument --duration: 'soon' is not a number of seconds",
            id="word-duration",
        ),
        pytest.param(
            ["demo", "--fault-every", "0"],
            "marketprism demo: error: argument --fault-every: '0' must be a positive number "
            "of seconds",
            id="zero-fault-every",
        ),
        pytest.param(
            ["run", "--output-buffer", "0"],
            "marketprism run: error: argument --output-buffer: '0' must be a number of MiB "
            "above 0 and at most 4096",
            id="zero-output-buffer",
        ),
        pytest.param(
            ["run", "--output-buffer", "8M"],
            "marketprism run: error: argument --output-buffer: '8M' is not a number of MiB",
            id="word-output-buffer",
        ),
        pytest.param(
            ["run", "--output", "xml"],
            "marketprism run: error: argument --output: invalid choice: 'xml'",
            id="unknown-output",
        ),
        pytest.param(
            ["frob"],
            "marketprism: error: argument COMMAND: invalid choice: 'frob'",
            id="unknown-command",
        ),
        pytest.param(
            [],
            "marketprism: error: the following arguments are required: COMMAND",
            id="no-command",
        ),
    ],
)
def test_usage_error_exits_2_with_one_error_line(
    tmp_path: Path, args: list[str], error: str
) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    # argparse's own format: usage lines, then the error line last.
    assert len(errors) == 1, result.stderr
    assert result.stderr.splitlines()[-1] == errors[0]
    assert errors[0].startswith(error), result.stderr
