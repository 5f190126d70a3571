"""LineWriter (``supervisor/cli/output.py``): stdout off the Trio loop, bounded, whole lines.

Rules of this file: every test writes to a real ``os.pipe`` shrunk to one page
(``F_SETPIPE_SZ``), so "the reader does not keep up" is a pipe that is full and not read.
A test that needs the writer to be stuck fills the pipe *before* the writer starts: its
first write then blocks for certain, nothing is written until the test reads, and every
count is exact. Tests that only need the loop to keep running use ``autojump_clock`` and
assert exact virtual times; tests that wait for the worker thread to write use the real
clock under ``trio.fail_after(DEADLINE)`` (autojump would jump past a thread's work).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
from collections.abc import Iterator
from typing import Final

import pytest
import trio
import trio.testing

from supervisor.cli.output import LineWriter

#: Hard deadline, in real seconds, of a test that waits for the worker thread.
DEADLINE: Final = 10.0
#: The capacity the tests give their pipes: one page, the least Linux allows.
CAPACITY: Final = 4096


class Pipe:
    """A pipe of ``CAPACITY`` bytes; the test reads ``r``, the writer gets ``w``."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        fcntl.fcntl(self.w, fcntl.F_SETPIPE_SZ, CAPACITY)
        assert fcntl.fcntl(self.w, fcntl.F_GETPIPE_SZ) == CAPACITY

    def fill(self) -> bytes:
        """Fill the pipe to the brim; return what was written (the test's own bytes)."""
        os.set_blocking(self.w, False)
        written = bytearray()
        try:
            while True:
                chunk = b"#" * 512
                written += chunk[: os.write(self.w, chunk)]
        except BlockingIOError:
            pass
        finally:
            os.set_blocking(self.w, True)
        return bytes(written)

    def read_now(self) -> bytes:
        """Everything in the pipe right now, without waiting."""
        os.set_blocking(self.r, False)
        data = bytearray()
        try:
            while chunk := os.read(self.r, 65536):
                data += chunk
        except BlockingIOError:
            pass
        finally:
            os.set_blocking(self.r, True)
        return bytes(data)

    def close(self) -> None:
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError as exc:
                assert exc.errno == errno.EBADF


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    pipe = Pipe()
    yield pipe
    pipe.close()


def line(number: int, width: int = 100) -> bytes:
    """Line ``number``, exactly ``width`` bytes with its newline; its digits lead."""
    return f"{number:06d}".ljust(width - 1, ".").encode() + b"\n"


def read_to_eof(fd: int) -> bytes:
    """Read ``fd`` until EOF, waiting at most ``DEADLINE`` real seconds for each read."""
    data = bytearray()
    while True:
        ready, _, _ = select.select([fd], [], [], DEADLINE)
        assert ready, f"no EOF within {DEADLINE} s after {len(data)} bytes"
        chunk = os.read(fd, 65536)
        if not chunk:
            return bytes(data)
        data += chunk


async def read_until(stream: trio.lowlevel.FdStream, data: bytearray, size: int) -> None:
    while len(data) < size:
        chunk = await stream.receive_some()
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk


async def test_a_reader_that_never_reads_costs_lines_never_loop_time(
    pipe: Pipe, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    filler = pipe.fill()
    writer = LineWriter(pipe.w, name="stdout", budget=6000)
    # 70 lines of 100 bytes before the worker starts: 60 fit the budget, 10 are dropped.
    for number in range(70):
        writer.send_nowait(line(number))
    assert (writer.accepted_lines, writer.dropped_lines) == (60, 10)
    ticks: list[float] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            # The worker takes 40 lines (4000 bytes: whole lines up to PIPE_BUF) and is
            # stuck writing them into the full pipe; the loop ticks on, one line a second.
            for number in range(70, 100):
                writer.send_nowait(line(number))
                await trio.sleep(1)
                ticks.append(trio.current_time())
            assert ticks == [float(t) for t in range(1, 31)]
            assert (writer.accepted_lines, writer.dropped_lines) == (60, 40)
            assert (writer.written_lines, writer.pending_bytes) == (0, 6000)
            # The caller bounds the flush: a reader that never reads is given up on.
            with trio.move_on_after(5) as flush:
                await writer.aclose()
            assert flush.cancelled_caught
            assert trio.current_time() == 35.0
            assert (writer.unwritten_lines, writer.error) == (60, None)
            with pytest.raises(trio.ClosedResourceError, match=r"^stdout writer was closed$"):
                writer.send_nowait(line(100))
        # run() returned by itself once the worker was abandoned.
        assert trio.current_time() == 35.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "stdout is not read fast enough: its 5.85938 KiB buffer is full, so 1 line(s) were "
        "dropped and more will be until the reader catches up (the total is reported at exit)"
    ]
    # Once the pipe has room, the abandoned worker finishes the piece it was writing
    # (if it had started it: virtual time does not wait for the thread), whole, writes
    # nothing more and closes its descriptor.
    os.close(pipe.w)
    data = read_to_eof(pipe.r)
    assert data[: len(filler)] == filler
    assert data[len(filler) :] in (b"", b"".join(line(n) for n in range(40)))


async def test_buffered_lines_arrive_whole_and_in_order_once_the_reader_reads(
    pipe: Pipe,
) -> None:
    filler = pipe.fill()
    budget = 20_000
    writer = LineWriter(pipe.w, name="stdout", budget=budget)
    # Lines of many lengths, some longer than a pipe's atomic write (PIPE_BUF, 4096),
    # sent several per call as the CLI does with a batch.
    widths = [1, 7, 100, 5000, 30, 4095, 4096, 4097, 2, 800, 9000, 60, 3000, 11]
    lines = [line(n, width=max(w, 8)) for n, w in enumerate(widths)]
    calls = [lines[0:3], lines[3:5], lines[5:9], lines[9:12], lines[12:]]
    expected = bytearray()
    dropped = 0
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for call in calls:
                writer.send_nowait(b"".join(call))
                # Nothing is written while the pipe is full, so what fits is exact: the
                # lines of a call that fit, up to the first one that does not.
                fits = 0
                while fits < len(call) and len(expected) + len(call[fits]) <= budget:
                    expected += call[fits]
                    fits += 1
                dropped += len(call) - fits
            assert (writer.dropped_lines, writer.written_lines) == (dropped, 0)
            assert writer.pending_bytes == len(expected)
            assert 0 < dropped < len(lines)
            received = bytearray()
            reader = trio.lowlevel.FdStream(os.dup(pipe.r))
            async with reader:
                await read_until(reader, received, len(filler) + len(expected))
                await writer.aclose()
                os.close(pipe.w)  # the writer closed its own copy: EOF comes next
                assert await reader.receive_some() == b""
    assert bytes(received) == filler + expected
    assert writer.written_lines == writer.accepted_lines == len(lines) - dropped
    assert (writer.pending_bytes, writer.unwritten_lines, writer.error) == (0, 0, None)


async def test_a_reader_that_goes_away_breaks_the_writer_cleanly(pipe: Pipe) -> None:
    os.close(pipe.r)
    writer = LineWriter(pipe.w, name="stdout", budget=1000)
    writer.send_nowait(line(0) + line(1))
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
        # run() returned on its own: the write failed with EPIPE (Python ignores SIGPIPE).
    assert isinstance(writer.error, BrokenPipeError)
    assert (writer.written_lines, writer.unwritten_lines, writer.pending_bytes) == (0, 2, 0)
    with pytest.raises(
        trio.BrokenResourceError, match=r"^stdout cannot be written any more: \[Errno 32\]"
    ):
        writer.send_nowait(line(2))
    assert writer.dropped_lines == 0
    await writer.aclose()  # returns at once, nothing to flush


async def test_close_with_nothing_queued_ends_the_worker_and_releases_its_descriptor(
    pipe: Pipe,
) -> None:
    writer = LineWriter(pipe.w, name="out", budget=1000)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            writer.send_nowait(line(0))
            await writer.aclose()
            await writer.aclose()  # idempotent
    os.close(pipe.w)
    # EOF: the worker's duplicate of the descriptor is closed too.
    assert os.read(pipe.r, 4096) == line(0)
    assert os.read(pipe.r, 4096) == b""
    assert (writer.written_lines, writer.unwritten_lines) == (1, 0)
    with pytest.raises(RuntimeError, match=r"^out: LineWriter.run\(\) was already called"):
        await writer.run()


async def test_close_before_run_gives_up_what_was_queued(pipe: Pipe) -> None:
    writer = LineWriter(pipe.w, name="out", budget=1000)
    writer.send_nowait(line(0) + line(1))
    await writer.aclose()
    assert (writer.unwritten_lines, writer.written_lines) == (2, 0)
    with pytest.raises(RuntimeError, match=r"^out: LineWriter.run\(\) was already called, or"):
        await writer.run()


async def test_a_descriptor_that_cannot_be_used_breaks_the_writer(pipe: Pipe) -> None:
    fd = pipe.w
    pipe.close()
    writer = LineWriter(fd, name="stdout", budget=1000)
    with trio.fail_after(DEADLINE):
        await writer.run()
    assert isinstance(writer.error, OSError)
    assert writer.error.errno == errno.EBADF


def test_partial_lines_and_bad_budgets_are_refused(pipe: Pipe) -> None:
    writer = LineWriter(pipe.w, name="stdout", budget=10)
    with pytest.raises(
        ValueError,
        match=r"^stdout: send_nowait\(\) takes complete lines ending with b'\\n', got "
        r"b'a\\nb' at the end; buffer partial lines until they are whole$",
    ):
        writer.send_nowait(b"a\nb")
    writer.send_nowait(b"")
    assert writer.accepted_lines == writer.dropped_lines == 0
    with pytest.raises(ValueError, match=r"^LineWriter budget must be at least 1 byte, got 0$"):
        LineWriter(pipe.w, name="stdout", budget=0)


def test_a_line_longer_than_the_budget_is_dropped_and_later_ones_still_fit(pipe: Pipe) -> None:
    writer = LineWriter(pipe.w, name="stdout", budget=100)
    writer.send_nowait(line(0, width=101))
    assert (writer.accepted_lines, writer.dropped_lines, writer.pending_bytes) == (0, 1, 0)
    # A call is cut after its last line that fits; the rest of it is dropped.
    writer.send_nowait(line(1, width=50) + line(2, width=60))
    assert (writer.accepted_lines, writer.dropped_lines, writer.pending_bytes) == (1, 2, 50)
    writer.send_nowait(line(3, width=50))
    assert (writer.accepted_lines, writer.dropped_lines, writer.pending_bytes) == (2, 2, 100)
