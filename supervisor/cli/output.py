"""Writing ``run``'s output lines without ever blocking the Trio loop.

Theory of operation
-------------------
A blocking ``write()`` to a pipe whose reader is slow (``marketprism run | slow-consumer``)
would stop the whole event loop: no pongs, no heartbeats, no stale detection, no signals,
and the exchange drops us (audit H1). :class:`LineWriter` therefore splits the job in two:

- the Trio side, :meth:`LineWriter.send_nowait`, only appends bytes to a queue under a
  ``threading.Lock`` held for a few list operations, never during I/O. It never waits;
- one worker thread (``trio.to_thread.run_sync``, started by :meth:`LineWriter.run`) does
  the blocking writes on its own ``dup`` of the descriptor.

Why a thread and not a non-blocking :class:`trio.lowlevel.FdStream`: ``O_NONBLOCK`` lives
on the open file description, which a ``dup`` shares, and so does every other holder of
the same terminal or pipe (the shell, siblings in a pipeline), whose blocking writes would
start failing with ``EAGAIN``; and epoll refuses regular files (``> out.jsonl``) outright.
A thread doing plain blocking writes works the same on pipes, FIFOs, terminals, sockets and
files and changes nothing for anyone else.

Policy when the reader cannot keep up: the queue holds at most ``budget`` bytes that were
accepted but not yet written (the piece being written included). Lines that do not fit are
dropped, newest first (what is queued is never torn or taken back), and counted; the first
drop logs one warning, and the caller reports the total at exit. The loop keeps running
whatever the reader does.

Whole lines only: the worker writes line-aligned pieces of at most ``select.PIPE_BUF``
bytes (4096 on Linux), which POSIX makes atomic on pipes and FIFOs, so a reader never sees
part of a line, even when the writer gives up at exit in the middle of the output. A
single line longer than ``PIPE_BUF`` is written alone and is the one exception. Small
pieces cost more system calls, but a worker thread sustains hundreds of MB/s that way
even while the loop is busy, far above what ``run`` produces.

Shutdown: :meth:`LineWriter.aclose` lets the worker write what is queued; the caller
bounds that wait (``trio.move_on_after``). On cancellation the worker is abandoned: it
stops after the piece in flight, and if that piece never completes (a reader that never
reads), the thread and its descriptor go away with the process (Trio's worker threads are
daemon threads, and the worker never holds a Python-level lock while it writes, so
interpreter shutdown cannot deadlock on it). :attr:`LineWriter.unwritten_lines` says how
many accepted lines were given up.

A reader that goes away (``EPIPE``, e.g. ``| head``; Python ignores ``SIGPIPE``) or any
other write error ends the worker: :meth:`LineWriter.run` returns, :attr:`LineWriter.error`
holds the error, and further :meth:`LineWriter.send_nowait` calls raise
:class:`trio.BrokenResourceError`.
"""

from __future__ import annotations

import enum
import logging
import os
import select
import threading
from collections import deque
from typing import Final, final

import trio

__all__ = ["DEFAULT_OUTPUT_BUDGET", "LineWriter"]

logger = logging.getLogger("marketprism.cli")

#: Bytes of output held for a reader that does not keep up before lines are dropped:
#: about 30,000 JSON lines of trades, a few seconds of a busy feed.
DEFAULT_OUTPUT_BUDGET: Final = 8 * 1024 * 1024
#: The largest write that a pipe takes atomically (POSIX ``PIPE_BUF``; 4096 on Linux).
_PIECE: Final = select.PIPE_BUF
#: How often, in milliseconds, a worker waiting on a descriptor that someone else made
#: non-blocking checks whether it was abandoned.
_RECHECK_MS: Final = 100


class _State(enum.Enum):
    #: Accepting lines.
    OPEN = "open"
    #: :meth:`LineWriter.aclose` was called: the worker writes what is queued, then ends.
    CLOSING = "closing"
    #: The worker ended after writing everything, or it was never started.
    CLOSED = "closed"
    #: A write failed (the reader went away, or another error): nothing more is written.
    BROKEN = "broken"


@final
class LineWriter:
    """Writes complete lines to a file descriptor from a worker thread, never blocking Trio.

    Args:
        fd: the descriptor to write to (not closed here: the worker writes to its own
            ``dup`` of it, taken by :meth:`run`).
        name: what to call the output in log messages, e.g. ``"stdout"``.
        budget: the most bytes accepted but not yet written; lines beyond it are dropped.

    Raises:
        ValueError: ``budget`` is below 1.
    """

    def __init__(self, fd: int, *, name: str, budget: int) -> None:
        if budget < 1:
            raise ValueError(f"LineWriter budget must be at least 1 byte, got {budget!r}")
        self.name = name
        self.budget = budget
        self._fd = fd
        # Guards every attribute below; held only for queue and counter updates.
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: deque[bytes] = deque()
        self._state = _State.OPEN
        self._abandoned = False
        self._started = False
        self._pending = 0
        self._accepted_lines = 0
        self._written_lines = 0
        self._dropped_lines = 0
        self._unwritten_lines = 0
        self._error: OSError | None = None
        self._done = trio.Event()
        self._worker_scope = trio.CancelScope()

    # -- what callers read -------------------------------------------------------------

    @property
    def accepted_lines(self) -> int:
        """Lines taken into the buffer (written, waiting, or given up at the end)."""
        return self._accepted_lines

    @property
    def written_lines(self) -> int:
        """Lines written so far."""
        return self._written_lines

    @property
    def dropped_lines(self) -> int:
        """Lines dropped because the budget was full."""
        return self._dropped_lines

    @property
    def pending_bytes(self) -> int:
        """Bytes accepted and not yet written (what counts against the budget)."""
        return self._pending

    @property
    def unwritten_lines(self) -> int:
        """Accepted lines that were given up: 0 until the writer was abandoned or broke."""
        return self._unwritten_lines

    @property
    def error(self) -> OSError | None:
        """Why writing stopped early (``BrokenPipeError`` when the reader went away)."""
        return self._error

    # -- the Trio side -----------------------------------------------------------------

    def send_nowait(self, data: bytes | bytearray) -> None:
        """Queue complete lines for writing; drop the lines that do not fit the budget.

        Never waits and never touches the descriptor. Lines that fit are accepted in
        order; from the first one that does not fit, the rest of ``data`` is dropped and
        counted in :attr:`dropped_lines` (the first drop of the writer's life logs one
        warning).

        Args:
            data: one or more lines, each ending with ``b"\\n"``; copied, so the caller
                may reuse its buffer.

        Raises:
            ValueError: ``data`` does not end with a newline.
            trio.BrokenResourceError: writing failed earlier (see :attr:`error`); nothing
                was queued.
            trio.ClosedResourceError: :meth:`aclose` was called.
        """
        if not data:
            return
        if data[-1] != 0x0A:
            raise ValueError(
                f"{self.name}: send_nowait() takes complete lines ending with b'\\n', got "
                f"{bytes(data[-20:])!r} at the end; buffer partial lines until they are whole"
            )
        first_drop = 0
        with self._lock:
            if self._state is _State.BROKEN:
                raise trio.BrokenResourceError(
                    f"{self.name} cannot be written any more: {self._error}"
                )
            if self._state is not _State.OPEN:
                raise trio.ClosedResourceError(f"{self.name} writer was closed")
            room = self.budget - self._pending
            cut = len(data) if len(data) <= room else data.rfind(b"\n", 0, max(room, 0)) + 1
            if cut:
                accepted = bytes(data[:cut])
                self._queue.append(accepted)
                self._pending += cut
                self._accepted_lines += accepted.count(b"\n")
                self._wakeup.notify()
            if cut < len(data):
                dropped = data.count(b"\n", cut)
                if self._dropped_lines == 0:
                    first_drop = dropped
                self._dropped_lines += dropped
        if first_drop:
            logger.warning(
                "%s is not read fast enough: its %s buffer is full, so %d line(s) were "
                "dropped and more will be until the reader catches up (the total is "
                "reported at exit)",
                self.name,
                _size(self.budget),
                first_drop,
            )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the worker thread until the writer is closed, breaks or is abandoned.

        Calls ``task_status.started()`` at once: the worker duplicates the descriptor
        itself, and a descriptor that cannot be duplicated breaks the writer like a
        failed write. Returns when the worker has written everything after
        :meth:`aclose`, when a write failed (:attr:`error` is set), or when a cancelled
        :meth:`aclose` abandoned the worker.

        Raises:
            RuntimeError: ``run`` was called before on this writer, or it was closed.

        Cancellation: the worker is abandoned: it stops after the piece it is writing,
        which may never end if nobody reads; it then closes its descriptor. The lines it
        did not write are counted in :attr:`unwritten_lines`.
        """
        if self._started or self._state is not _State.OPEN:
            raise RuntimeError(
                f"{self.name}: LineWriter.run() was already called, or the writer was "
                "closed before it ran; use a new LineWriter"
            )
        self._started = True
        task_status.started()
        try:
            # The worker owns its descriptor from dup to close, so a cancellation before
            # the thread starts leaks nothing.
            with self._worker_scope:
                await trio.to_thread.run_sync(
                    self._work, thread_name=f"{self.name} writer", abandon_on_cancel=True
                )
        except BaseException:
            self._abandon()
            raise
        finally:
            self._done.set()

    async def aclose(self) -> None:
        """Write every accepted line, then end the worker. Idempotent.

        Waits as long as the reader takes: callers bound it with ``trio.move_on_after``.

        Cancellation: forceful: the worker is abandoned as in :meth:`run` and the lines it
        has not written are counted in :attr:`unwritten_lines`; the descriptor is closed
        by the worker when its last write returns, or at process exit.
        """
        with self._lock:
            if self._state is _State.OPEN:
                self._state = _State.CLOSING
                self._wakeup.notify()
            started = self._started
        if not started:
            with self._lock:
                self._state = _State.CLOSED
                self._unwritten_lines = self._accepted_lines - self._written_lines
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._done.wait()
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """Tell the worker to stop after its current write, and stop waiting for it."""
        with self._lock:
            if self._state is _State.CLOSED or self._abandoned:
                return
            self._abandoned = True
            if self._state is not _State.BROKEN:
                self._unwritten_lines = self._accepted_lines - self._written_lines
            self._wakeup.notify()
        self._worker_scope.cancel(reason=f"{self.name} writer abandoned")

    def _break(self, exc: OSError) -> None:
        with self._lock:
            self._error = exc
            self._state = _State.BROKEN
            self._unwritten_lines = self._accepted_lines - self._written_lines
            self._queue.clear()
            self._pending = 0

    # -- the worker thread -------------------------------------------------------------

    def _work(self) -> None:
        """The worker: take queued bytes, write them, until closed, broken or abandoned."""
        try:
            fd = os.dup(self._fd)
        except OSError as exc:
            self._break(exc)
            return
        try:
            while True:
                data = self._take()
                if data is None or not self._write(fd, data):
                    return
        except OSError as exc:
            self._break(exc)
        finally:
            os.close(fd)

    def _take(self) -> bytes | None:
        """Wait for queued bytes; join up to ``_PIECE`` of them. None: time to stop."""
        with self._lock:
            while not self._queue and self._state is _State.OPEN and not self._abandoned:
                self._wakeup.wait()
            if self._abandoned or not self._queue:
                if self._state is _State.CLOSING:
                    self._state = _State.CLOSED
                return None
            chunks = [self._queue.popleft()]
            size = len(chunks[0])
            while self._queue and size + len(self._queue[0]) <= _PIECE:
                size += len(self._queue[0])
                chunks.append(self._queue.popleft())
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _write(self, fd: int, data: bytes) -> bool:
        """Write ``data`` in atomic line-aligned pieces; False if abandoned meanwhile."""
        view = memoryview(data)
        start = 0
        while start < len(data):
            end = start + _PIECE
            if end >= len(data):
                end = len(data)
            else:
                # Whole lines only; a line longer than a piece goes out alone.
                cut = data.rfind(b"\n", start, end)
                end = (cut if cut >= 0 else data.index(b"\n", end)) + 1
            if not self._write_all(fd, view[start:end]):
                return False
            with self._lock:
                self._pending -= end - start
                self._written_lines += data.count(b"\n", start, end)
                if self._abandoned:
                    return False
            start = end
        return True

    def _write_all(self, fd: int, piece: memoryview) -> bool:
        """One blocking write of ``piece`` (more only if the descriptor takes less).

        Returns False if the writer was abandoned while waiting on a non-blocking
        descriptor (then only part of ``piece``, or none of it, was written).
        """
        while piece:
            try:
                piece = piece[os.write(fd, piece) :]
            except BlockingIOError:
                # Someone else made the shared description non-blocking (some programs do
                # that to a terminal); wait until it takes data, rechecking for abandon.
                poller = select.poll()
                poller.register(fd, select.POLLOUT)
                while not poller.poll(_RECHECK_MS):
                    if self._abandoned:
                        return False
        return True


def _size(count: int) -> str:
    """A byte count for people: ``8 MiB``, ``64 KiB``, ``100 bytes``."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count} bytes"
