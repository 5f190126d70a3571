"""The status table: the pure renderer, the ``/status`` decoder and the live view.

The renderer is fed hand-built snapshots and captured with ``Console(file=StringIO())``;
rows are read back cell by cell. The decoder is checked against a real status endpoint
on loopback serving a supervisor on memory fakes. The live view writes through a real
``LineWriter`` into a pipe; its frames are read back byte for byte.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import msgspec
import pytest
import trio
import trio.testing
from helpers import RecordingConnector, make_config
from rich.console import Console, RenderableType
from rich.text import Text

from actors.registry import ConnectionStats, Stats, Totals
from supervisor import RawMessage, Supervisor, open_supervisor, serve_status
from supervisor.cli.output import LineWriter
from supervisor.cli.table import (
    LiveView,
    StatusDocumentError,
    decode_status,
    live_table,
    open_live_view,
    render_text,
    status_table,
)
from supervisor.status import status_document
from supervisor.testing import FakeExchange, open_fake_exchange

DEADLINE = 20
#: The table's header cells, in order.
HEADER = [
    "connection",
    "exchange",
    "state",
    "route",
    "msg/s",
    "messages",
    "last msg",
    "rtt ms",
    "latency ms",
    "reconnects",
    "backoff",
    "drops",
    "malformed",
    "clock ms",
    "subs",
    "books",
]


def connection(name: str, **fields: object) -> ConnectionStats:
    """A connection snapshot with every required field zero or empty, then ``fields``."""
    base: dict[str, object] = {
        "name": name,
        "exchange": "raw",
        "url": f"wss://{name}.example/ws",
        "state": "live",
        "state_for": 0.0,
        "connects": 0,
        "disconnects": 0,
        "restarts": 0,
        "frames": 0,
        "messages": 0,
        "bytes": 0,
        "dropped": 0,
        "queued_bytes": 0,
        "malformed": 0,
        "gaps": 0,
        "rate": 0.0,
        "idle_for": None,
        "backoff": 0.0,
        "last_error": "",
        "subscriptions": {},
    }
    return msgspec.convert({**base, **fields}, ConnectionStats)


#: One valid local book's stats.
BOOK = {
    "state": "valid",
    "bids": 40,
    "asks": 38,
    "sequence": 1234,
    "age": 0.1,
    "resyncs": 0,
    "reason": "",
    "snapshots": 1,
}

#: A live connection with every value known, one in backoff through a proxy with every
#: optional value unknown, and one failed with subscriptions in each state but live.
STATS = Stats(
    at=100.0,
    connections=(
        connection(
            "binance-spot",
            exchange="binance",
            state="live",
            state_for=754.2,
            restarts=2,
            messages=123456,
            dropped=3,
            malformed=1,
            rate_1s=812.4,
            idle_for=0.012,
            probe_rtt=0.0234,
            feed_latency_p50=0.0061,
            feed_latency_p99=0.0412,
            clock_offset=-0.0083,
            attempt=2,
            backoff=0.5,
            subscriptions={"btcusdt@trade": "live", "btcusdt@depth": "pending"},
            subscription_stats={
                "btcusdt@trade": {"state": "live", "state_for": 700.0},
                "btcusdt@depth": {"state": "pending", "state_for": 3.25},
            },
            books={
                "BTC-USDT": BOOK,
                "ETH-USDT": {**BOOK, "state": "syncing", "sequence": None, "age": None},
                "BNB-USDT": {
                    **BOOK,
                    "state": "invalid",
                    "resyncs": 2,
                    "reason": "sequence gap: update 7->9 does not continue 5",
                },
            },
        ),
        connection(
            "okx",
            exchange="okx",
            state="backoff",
            state_for=1.5,
            restarts=7,
            attempt=4,
            backoff=4.0,
            route=("socks5://alice:hunter2@proxy.example:1080", "http://gw.example:3128"),
            last_error="ConnectionLost: reset by peer",
        ),
        connection(
            "deribit",
            exchange="deribit",
            state="failed",
            state_for=4000.0,
            messages=10,
            idle_for=65.0,
            subscriptions={
                "trades.BTC-PERPETUAL.raw": "silent",
                "book.X.raw": "failed: 11050 bad request",
                "ticker.BTC-PERPETUAL.raw": "live",
            },
            subscription_stats={
                "trades.BTC-PERPETUAL.raw": {
                    "state": "silent",
                    "state_for": 12.0,
                    "messages": 5,
                    "last_message_age": 42.0,
                },
                "book.X.raw": {"state": "failed: 11050 bad request", "state_for": 0.4},
                "ticker.BTC-PERPETUAL.raw": {"state": "live", "state_for": 60.0},
            },
            last_error="HandshakeRejected: HTTP 403",
        ),
    ),
)


def capture(renderable: RenderableType, width: int = 250) -> str:
    console = Console(file=io.StringIO(), width=width)
    console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def rows(text: str) -> list[list[str]]:
    """The table's header and body rows, cell by cell, stripped."""
    return [
        [cell.strip() for cell in line.strip()[1:-1].split(line.strip()[0])]
        for line in text.splitlines()
        if line.strip()[:1] in ("┃", "│")
    ]


def test_one_row_per_connection_with_its_values() -> None:
    text = capture(status_table(STATS, title="marketprism status: test"))
    assert text.splitlines()[0].strip() == "marketprism status: test"
    header, *body = rows(text)
    assert header == HEADER
    assert body == [
        [
            "binance-spot",
            "binance",
            "live 12m34s",
            "direct",
            "812",
            "123456",
            "0.0 s",
            "23",
            "6.1/41",
            "2",
            "0.50 s #2",
            "3",
            "1",
            "-8",
            "1/2",
            "1/3",
        ],
        [
            "okx",
            "okx",
            "backoff 1.5 s",
            # The password is masked even if the snapshot carried it.
            "socks5://alice:***@proxy.example:1080 -> http://gw.example:3128",
            "0",
            "0",
            "-",
            "-",
            "-",
            "7",
            "4.00 s #4",
            "0",
            "0",
            "-",
            "0/0",
            "-",
        ],
        [
            "deribit",
            "deribit",
            "failed 1h06m",
            "direct",
            "0",
            "10",
            "1m05s",
            "-",
            "-",
            "0",
            "-",
            "0",
            "0",
            "-",
            "1/3",
            "-",
        ],
    ]


@pytest.mark.parametrize(
    ("width", "dropped"),
    [
        (250, []),
        (160, ["messages", "exchange", "books", "clock ms", "route"]),
        (100, ["messages", "exchange", "books", "clock ms", "route", "malformed", "latency ms"]),
    ],
)
def test_a_narrow_terminal_drops_whole_columns_least_useful_first(
    width: int, dropped: list[str]
) -> None:
    text = capture(status_table(STATS, title="t"), width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    header, *body = rows(text)
    assert header == [column for column in HEADER if column not in dropped]
    full = rows(capture(status_table(STATS, title="t"), width=250))[1:]
    keep = [HEADER.index(column) for column in header]
    assert body == [[row[i] for i in keep] for row in full]


def test_not_live_subscriptions_and_connections_are_listed_below() -> None:
    text = capture(status_table(STATS, title="t", caption="recent faults:\n  (none yet)"))
    below = text[text.index("└") :].splitlines()[1:]
    assert below == [
        "not live:",
        "  binance-spot btcusdt@depth: pending for 3.2 s",
        "  binance-spot ETH-USDT: book syncing",
        "  binance-spot BNB-USDT: book invalid (sequence gap: update 7->9 does not continue "
        "5); 2 resyncs",
        "  okx: backoff; last error: ConnectionLost: reset by peer",
        "  deribit: failed; last error: HandshakeRejected: HTTP 403",
        "  deribit trades.BTC-PERPETUAL.raw: silent for 12 s, last data 42 s ago",
        "  deribit book.X.raw: failed: 11050 bad request for 0.4 s",
        "recent faults:",
        "  (none yet)",
    ]


def test_every_live_and_stopped_connection_lists_nothing_below() -> None:
    stats = Stats(
        at=1.0,
        connections=(
            connection("a", subscriptions={"t": "live"}),
            connection("b", state="stopped", last_error="close 1000"),
        ),
    )
    text = capture(status_table(stats, title="t"))
    assert text.rstrip().splitlines()[-1].startswith("└")
    assert [row[2] for row in rows(text)[1:]] == ["live 0.0 s", "stopped 0.0 s"]


def test_an_empty_snapshot_renders_the_header_only() -> None:
    assert rows(capture(status_table(Stats(at=0.0, connections=()), title="t"))) == [HEADER]


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ("live", "\x1b[32m"),
        ("connecting", "\x1b[36m"),
        ("backoff", "\x1b[33m"),
        ("failed", "\x1b[1;31m"),
        ("stopped", "\x1b[2m"),
    ],
)
def test_the_state_is_coloured_by_state(state: str, code: str) -> None:
    console = Console(file=io.StringIO(), width=250, force_terminal=True, color_system="standard")
    console.print(
        status_table(Stats(at=0.0, connections=(connection("a", state=state),)), title="t")
    )
    assert f"{code}{state} 0.0 s\x1b[0m" in console.file.getvalue()  # type: ignore[attr-defined]


def test_render_text_is_plain_without_colour() -> None:
    text = render_text(status_table(STATS, title="t"), width=250, color=False)
    assert "\x1b" not in text
    assert text == capture(status_table(STATS, title="t"))


# -- decoding /status -------------------------------------------------------------------


FAST_BACKOFF = {"initial": 0.05, "max": 0.1, "reset_after": 60.0}


@asynccontextmanager
async def served(*fakes: FakeExchange) -> AsyncIterator[tuple[Supervisor, httpx.AsyncClient]]:
    """A supervisor over memory ``fakes`` with its status endpoint on 127.0.0.1."""
    conf = make_config(*fakes, backoff=FAST_BACKOFF)
    async with (
        open_supervisor(conf, connector=RecordingConnector(*fakes)) as sup,
        trio.open_nursery() as nursery,
    ):
        host, port = await nursery.start(serve_status, sup, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", trust_env=False) as client:
            yield sup, client
        nursery.cancel_scope.cancel(reason="test done")


async def first_message(sup: Supervisor) -> None:
    async for msg in sup.messages():
        assert isinstance(msg, RawMessage)
        return


async def test_status_json_decodes_to_the_supervisors_stats() -> None:
    async with (
        open_fake_exchange(name="a", transport="memory", interval=0.02) as a,
        open_fake_exchange(name="b", transport="memory", interval=0.02) as b,
    ):
        with trio.fail_after(DEADLINE):
            async with served(a, b) as (sup, client):
                await first_message(sup)
                running = decode_status((await client.get("/status")).content)
                await sup.stop()
                final = await sup.stats()
                response = await client.get("/status")
    assert [c.name for c in running.connections] == ["a", "b"]
    assert running.totals is not None
    assert running.totals.connections == 2
    # Stopped, the snapshot no longer changes: the round trip gives it back exactly.
    assert decode_status(response.content) == final
    assert final.totals is not None
    assert final.totals.messages > 0


def test_a_newer_servers_extra_fields_are_ignored() -> None:
    document = msgspec.to_builtins(status_document(STATS))
    document["histograms"] = {"a": [1, 2]}
    for conn in document["connections"].values():
        conn["feed_latency_histogram"] = {"le": [0.01], "counts": [3]}
    assert decode_status(msgspec.json.encode(document)) == STATS


def test_totals_round_trip() -> None:
    stats = Stats(
        at=2.0,
        connections=STATS.connections,
        totals=Totals.of(STATS.connections),
        exchanges={"okx": Totals.of(STATS.connections[1:2])},
    )
    assert decode_status(msgspec.json.encode(status_document(stats))) == stats


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>hello</html>", "JSON is malformed: invalid character (byte 0)"),
        (b'{"connections": {}}', "Object missing required field `at`"),
        (
            b'{"at": 1.0, "connections": {"a": {"name": "a", "state_for": "long"}}}',
            "Expected `float`, got `str` - at `$.connections[...].state_for`",
        ),
        (b'{"at": 1.0, "connections": []}', "Expected `object`, got `array` - at `$.connections`"),
    ],
)
def test_a_foreign_document_is_a_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(StatusDocumentError, match=rf"^{re.escape(message)}$"):
        decode_status(body)


def test_a_connection_named_unlike_its_key_is_an_error() -> None:
    document = msgspec.to_builtins(status_document(STATS))
    document["connections"]["okx"]["name"] = "bybit"
    with pytest.raises(
        StatusDocumentError,
        match=r"^connection 'okx' calls itself 'bybit' - at `\$\.connections\.okx\.name`$",
    ):
        decode_status(msgspec.json.encode(document))


# -- the live view ----------------------------------------------------------------------


@contextmanager
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    try:
        yield read, write
    finally:
        os.close(read)
        os.close(write)


def drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return b"".join(chunks)
        chunks.append(chunk)


def erase(lines: int) -> bytes:
    return f"\r\x1b[{lines}A\x1b[J".encode()


async def test_frames_redraw_in_place_and_logs_scroll_above(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pipe has no terminal size: the view falls back to COLUMNS and LINES.
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("LINES", "20")
    monkeypatch.setenv("TERM", "dumb")  # no colour codes in the frames
    with pipe() as (read, write):
        writer = LineWriter(write, name="test", budget=1 << 20)
        view = LiveView(writer, terminal=True, fd=write)
        # The worker has not started: nothing is written, so the first frame stays
        # pending and the next ones are skipped until forced.
        assert await view.show(Text("one\ntwo"))
        assert not await view.show(Text("skipped"))
        view.log("a log line")
        assert await view.show(Text("three"), force=True)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            await writer.aclose()
        assert drain(read) == (
            b"one\ntwo\n" + erase(2) + b"a log line\none\ntwo\n" + erase(2) + b"three\n"
        )


async def test_a_frame_taller_than_the_terminal_is_cropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("LINES", "5")
    monkeypatch.setenv("TERM", "dumb")
    with pipe() as (read, write):
        writer = LineWriter(write, name="test", budget=1 << 20)
        view = LiveView(writer, terminal=True, fd=write)
        assert await view.show(Text("\n".join(str(n) for n in range(10))))
        assert await view.show(Text("x"), force=True)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            await writer.aclose()
        # At most LINES - 1 lines, so that the cursor can reach the frame's top again.
        assert drain(read) == b"0\n1\n2\n...\n" + erase(4) + b"x\n"


async def test_not_a_terminal_appends_plain_frames_and_logs() -> None:
    with pipe() as (read, write):
        writer = LineWriter(write, name="test", budget=1 << 20)
        view = LiveView(writer, terminal=False, fd=write)
        assert await view.show(Text("one", style="red"))
        view.log("a log line")
        assert await view.show(Text("two"), force=True)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            await writer.aclose()
        assert drain(read) == b"one\na log line\ntwo\n"


async def test_the_view_refreshes_four_times_a_second_and_ends_with_the_final_frame(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[tuple[float, bool]] = []
    fourth = trio.Event()

    async def frame(final: bool) -> RenderableType:
        calls.append((trio.current_time(), final))
        if len(calls) == 4:
            fourth.set()
        return Text("final" if final else f"frame {len(calls)}")

    with pipe() as (_, write):
        # No deadline in the block: the clock would jump to it while a frame renders in
        # the worker thread. What reaches the pipe is not asserted here (the clock may
        # jump over the final flush while the writer's thread works; see the next test).
        async with open_live_view(
            frame, fd=write, terminal=False, every=0.1, logs=False, flush_for=1.0
        ):
            await fourth.wait()
    # `every` below 0.25 s is raised to it: at most 4 frames a second.
    assert calls == [(0.0, False), (0.25, False), (0.5, False), (0.75, False), (0.75, True)]


async def test_the_view_writes_the_log_above_and_the_final_frame_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def frame(final: bool) -> RenderableType:
        return Text("final" if final else "frame")

    logger = logging.getLogger("marketprism")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    monkeypatch.setattr(logger, "handlers", [handler])
    monkeypatch.setattr(logger, "disabled", False)
    level = logger.level
    logger.setLevel(logging.INFO)
    saved = logger.handlers[:]
    with pipe() as (read, write), trio.fail_after(DEADLINE):
        async with open_live_view(
            frame, fd=write, terminal=False, every=0.25, logs=True, flush_for=DEADLINE
        ):
            assert logger.handlers != saved
            logger.warning("through the view")
        assert logger.handlers == saved
        lines = drain(read).decode().splitlines()
    logger.setLevel(level)
    # The first refresh may or may not have come before the log line; nothing else. The
    # handler's formatter is kept.
    assert lines in (
        ["WARNING through the view", "final"],
        ["frame", "WARNING through the view", "final"],
        ["WARNING through the view", "frame", "final"],
    )


async def test_a_terminal_that_does_not_read_costs_frames_not_the_loop() -> None:
    frame = Text("\n".join("x" * 99 for _ in range(100)))  # 10,000 bytes
    with pipe() as (_, write):
        # Nobody reads this pipe, and it holds 4 KiB: the first frame can never be
        # written whole, so the writer's thread stays blocked in write() from now on.
        fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 4096)
        writer = LineWriter(write, name="test", budget=1 << 20)
        view = LiveView(writer, terminal=False, fd=write)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            with trio.fail_after(DEADLINE):
                shown = [await view.show(frame)]
                await trio.testing.wait_all_tasks_blocked()
                shown += [await view.show(frame) for _ in range(99)]
            # Every later frame is skipped at once, none queued behind the first.
            assert shown == [True] + [False] * 99
            assert writer.pending_bytes > 0
            assert (writer.accepted_lines, writer.dropped_lines) == (100, 0)
            # The worker is abandoned; closing the pipe ends its write with EPIPE.
            nursery.cancel_scope.cancel(reason="test done")


async def test_live_table_draws_nothing_when_not_a_terminal() -> None:
    async def stats() -> Stats:
        raise AssertionError("not asked for without a terminal")

    with pipe() as (read, write):
        async with live_table(stats, "marketprism run", fd=write, flush_for=1.0):
            await trio.lowlevel.checkpoint()
        assert drain(read) == b""
