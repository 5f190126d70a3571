"""The status table: one renderer for ``status``, ``demo`` and ``run``, and its live view.

Theory of operation
-------------------
:func:`status_table` is pure: a :class:`~actors.registry.Stats` in, a rich renderable
out (the connection table, then one line per subscription that is not live and per
connection that is not live with its last error). It reads nothing else, so the same
snapshot renders the same text whether it came from ``sup.stats()`` (``demo``, ``run``)
or from a status endpoint's JSON (``marketprism status``, through :func:`decode_status`).

:class:`LiveView` puts frames on a terminal without ever blocking the Trio loop, which
answers pings and watches heartbeats (audit H1: a blocking write to a slow terminal or
pipe stops everything). The renderable is built in the loop from one snapshot (cheap:
strings and ``Text``), rendered to text in a worker thread (rich ``Console`` on a
``StringIO`` at the terminal's width; tens of milliseconds, too long for the loop) and
handed as bytes to a :class:`~supervisor.cli.output.LineWriter`, whose worker thread
does the blocking write. The redraw is rich ``Live``'s, done as text: move the
cursor up over the previous frame (CSI ``n A``), erase to the end of the screen
(CSI ``J``), write the new one. Log lines go through the same writer, erased frame
first and redrawn after them, so they scroll above the table in order, as rich's
``Live`` does with its console's log. One ordered byte stream is what makes that
correct; two writers (stdout, stderr) on one terminal would interleave mid-frame.

Why not rich ``Live`` itself: it writes from the loop (or from its own refresh thread
holding a lock the loop also takes on ``update``), so a terminal that does not read
(scroll lock, a stopped ``ssh``) blocks the loop. Why not a full-screen clear: clearing
then drawing flickers, and the alternate screen would hide the log.

A frame is only queued when the previous one has been written (``pending_bytes`` is 0),
so a slow terminal costs skipped frames, never a growing queue or a torn frame; the
final frame is always queued. Frames are cropped to the terminal's height minus one
line, because the cursor cannot move above the top of the screen to erase what scrolled
off.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, Literal, final

import msgspec
import trio
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from actors.redact import redact_text, redact_url
from actors.registry import ConnectionStats, Stats, Totals
from supervisor.cli.logs import is_json
from supervisor.cli.output import LineWriter

__all__ = [
    "DEFAULT_REFRESH",
    "LiveView",
    "StatusDocumentError",
    "decode_status",
    "live_table",
    "open_live_view",
    "render_text",
    "status_table",
]

#: Seconds between frames on a terminal: 4 a second at most, as rich ``Live``'s default.
DEFAULT_REFRESH: Final = 0.25
#: Bytes of frames and log lines held for a terminal that does not keep up: many frames.
_VIEW_BUDGET: Final = 1 << 20
#: Width of a frame written to something that is not a terminal (a pipe, a file): wide
#: enough that no column is cut.
_PIPE_WIDTH: Final = 200
#: The standard error descriptor (whether logs share the table's terminal).
_STDERR: Final = 2
#: The most columns the route takes (longer chains end in an ellipsis).
_ROUTE_WIDTH: Final = 64
#: What a missing value shows as.
_NONE: Final = "-"
#: The state cell's style per connection state.
_STATE_STYLES: Final = {
    "live": "green",
    "connecting": "cyan",
    "subscribing": "cyan",
    "backoff": "yellow",
    "failed": "bold red",
    "stopped": "dim",
}
#: The style of a subscription line by the first word of its state.
_SUBSCRIPTION_STYLES: Final = {"pending": "cyan", "silent": "magenta", "failed:": "bold red"}
_COLUMNS: Final[tuple[tuple[str, Literal["left", "right"]], ...]] = (
    ("connection", "left"),
    ("exchange", "left"),
    ("state", "left"),
    ("route", "left"),
    ("msg/s", "right"),
    ("messages", "right"),
    ("last msg", "right"),
    ("rtt ms", "right"),
    ("latency ms", "right"),
    ("reconnects", "right"),
    ("backoff", "right"),
    ("drops", "right"),
    ("malformed", "right"),
    ("clock ms", "right"),
    ("subs", "right"),
    ("books", "right"),
)

#: The columns a narrow terminal drops, first to last.
_DROP_ORDER: Final = (
    "messages",
    "exchange",
    "books",
    "clock ms",
    "route",
    "malformed",
    "latency ms",
    "rtt ms",
)

# -- decoding /status --------------------------------------------------------------------


class StatusDocumentError(ValueError):
    """A ``/status`` body is not a status document this version can read."""


class _StatusDocument(msgspec.Struct, frozen=True, kw_only=True):
    """The ``/status`` body (``supervisor.status.status_document``): ``Stats`` with its
    connections keyed by name. Unknown fields are ignored (a newer server's additions);
    a field of the wrong type or a missing required one is an error."""

    at: float
    connections: dict[str, ConnectionStats]
    totals: Totals | None = None
    exchanges: dict[str, Totals] = msgspec.field(default_factory=dict)


_DOCUMENT_DECODER: Final = msgspec.json.Decoder(_StatusDocument)


def decode_status(data: bytes) -> Stats:
    """The :class:`~actors.registry.Stats` a ``GET /status`` body carries.

    Strict: every field must have its type (msgspec's strict mode), so a server of
    another version whose fields changed meaning is an error naming the field, not a
    wrong table. Fields this version does not know are ignored.

    Args:
        data: the response body.

    Returns:
        The snapshot, connections in the document's order.

    Raises:
        StatusDocumentError: ``data`` is not JSON, or not a status document (the
            message carries msgspec's path, e.g. ``$.connections[...].state_for``), or a
            connection's ``name`` differs from its key.
    """
    try:
        document = _DOCUMENT_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise StatusDocumentError(str(exc)) from None
    for key, conn in document.connections.items():
        if conn.name != key:
            raise StatusDocumentError(
                f"connection {key!r} calls itself {conn.name!r} - at `$.connections.{key}.name`"
            )
    return Stats(
        at=document.at,
        connections=tuple(document.connections.values()),
        totals=document.totals,
        exchanges=document.exchanges,
    )


# -- the table ---------------------------------------------------------------------------


def status_table(stats: Stats, *, title: str, caption: str | None = None) -> Group:
    """The status table of ``stats``.

    One row per connection: name, exchange, state and time in it, route (``direct`` or
    the proxy hops, passwords masked), messages per second over the last second,
    messages, age of the last frame, probe round trip, feed latency p50/p99, reconnects
    (restarts), backoff (current delay and attempt), drops, malformed frames, REST clock
    offset, live/all subscriptions and valid/all local books. Below it, one line per
    subscription that is not live (pending, failed with its code and message, silent with
    how long), one per local book that is not valid (syncing, or invalid with why), and
    one per connection that is not live with its last error. A value not known (``None``)
    shows as ``-``. Where the table is wider than the console, whole columns are left
    out, least useful first (see ``_FittedTable``).

    Args:
        stats: the snapshot, from ``sup.stats()`` or :func:`decode_status`.
        title: the line above the table.
        caption: text under everything (``demo``'s recent faults), if any.

    Returns:
        The renderable; print it on any rich ``Console``.
    """
    table = _FittedTable(title, [_row(conn) for conn in stats.connections])
    lines: list[RenderableType] = [table]
    notes = _not_live(stats)
    if notes:
        lines.append(Text("not live:"))
        lines.extend(notes)
    if caption is not None:
        lines.append(Text(caption))
    return Group(*lines)


@final
class _FittedTable:
    """The connection table, without the columns that do not fit the width it is given.

    Rendered at the console's width: on a narrow terminal whole columns go, least
    useful first (:data:`_DROP_ORDER`), rather than every column being cut to an
    ellipsis. The name, state, rate, last message age, reconnects, backoff, drops and
    subscriptions always stay.
    """

    def __init__(self, title: str, rows: list[tuple[Text | str, ...]]) -> None:
        self._title = title
        self._rows = rows

    def _table(self, dropped: frozenset[str]) -> Table:
        table = Table(title=self._title)
        keep = [i for i, (name, _) in enumerate(_COLUMNS) if name not in dropped]
        for i in keep:
            column, justify = _COLUMNS[i]
            table.add_column(
                column,
                justify=justify,
                no_wrap=True,
                min_width=len(column),
                # Proxy chains get long; the rest of the row matters more.
                max_width=_ROUTE_WIDTH if column == "route" else None,
            )
        for row in self._rows:
            table.add_row(*(row[i] for i in keep))
        return table

    def _width(self, dropped: frozenset[str]) -> int:
        """The table's natural width without ``dropped``: its cells' widths, padding (1
        each side) and borders (one between columns and one at each end). Computed, not
        measured with rich, which would render every cell once more per try."""
        total = 1
        for i, (column, _) in enumerate(_COLUMNS):
            if column in dropped:
                continue
            width = max([len(column), *(cell_len(_plain(row[i])) for row in self._rows)])
            if column == "route":
                width = min(width, _ROUTE_WIDTH)
            total += width + 3
        return total

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        dropped: frozenset[str] = frozenset()
        for column in _DROP_ORDER:
            if self._width(dropped) <= options.max_width:
                break
            dropped |= {column}
        yield self._table(dropped)


def _plain(cell: Text | str) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _row(conn: ConnectionStats) -> tuple[Text | str, ...]:
    route = " -> ".join(redact_url(hop, keep_username=True) for hop in conn.route) or "direct"
    backoff = _NONE if conn.attempt == 0 else f"{conn.backoff:.2f} s #{conn.attempt}"
    latency = (
        _NONE
        if conn.feed_latency_p50 is None
        else f"{_ms(conn.feed_latency_p50)}/{_ms(conn.feed_latency_p99)}"
    )
    live = sum(state == "live" for state in conn.subscriptions.values())
    return (
        conn.name,
        conn.exchange,
        Text(
            f"{conn.state} {_duration(conn.state_for)}",
            style=_STATE_STYLES.get(conn.state, ""),
        ),
        route,
        f"{conn.rate_1s:.0f}",
        str(conn.messages),
        _duration(conn.idle_for),
        _ms(conn.probe_rtt),
        latency,
        str(conn.restarts),
        backoff,
        str(conn.dropped),
        str(conn.malformed),
        # Whole milliseconds: the offset's error bound is half a REST round trip.
        _NONE if conn.clock_offset is None else f"{conn.clock_offset * 1000:+.0f}",
        f"{live}/{len(conn.subscriptions)}",
        _books(conn),
    )


def _books(conn: ConnectionStats) -> str:
    """Valid/all local books, ``-`` without any."""
    if not conn.books:
        return _NONE
    valid = sum(book.state == "valid" for book in conn.books.values())
    return f"{valid}/{len(conn.books)}"


def _not_live(stats: Stats) -> list[Text]:
    lines: list[Text] = []
    for conn in stats.connections:
        # Why it is not live; a stopped one stopped on purpose (its error is history).
        if conn.state not in ("live", "stopped") and conn.last_error:
            lines.append(
                Text(
                    f"  {conn.name}: {conn.state}; last error: {redact_text(conn.last_error)}",
                    style=_STATE_STYLES.get(conn.state, ""),
                )
            )
        for topic, state in conn.subscriptions.items():
            if state == "live":
                continue
            sub = conn.subscription_stats.get(topic)
            shown = state
            if sub is not None:
                shown += f" for {_duration(sub.state_for)}"
                if state == "silent" and sub.last_message_age is not None:
                    shown += f", last data {_duration(sub.last_message_age)} ago"
            lines.append(
                Text(
                    f"  {conn.name} {redact_text(topic)}: {shown}",
                    style=_SUBSCRIPTION_STYLES.get(state.split(" ", 1)[0], ""),
                )
            )
        for symbol, book in conn.books.items():
            if book.state == "valid" or conn.state == "stopped":
                continue  # a stopped connection's books stopped with it
            shown = f"book {book.state}"
            if book.reason and book.state == "invalid":
                shown += f" ({book.reason})"
            if book.resyncs:
                shown += f"; {book.resyncs} resync{'s' if book.resyncs > 1 else ''}"
            lines.append(
                Text(
                    f"  {conn.name} {symbol}: {shown}",
                    style="yellow" if book.state == "syncing" else "red",
                )
            )
    return lines


def _duration(seconds: float | None) -> str:
    """``0.4 s``, ``12 s``, ``3m05s``, ``2h07m``; ``-`` for ``None``."""
    if seconds is None:
        return _NONE
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole // 60 % 60:02d}m"


def _ms(seconds: float | None) -> str:
    """Milliseconds, one decimal below 10 ms; ``-`` for ``None``."""
    if seconds is None:
        return _NONE
    ms = seconds * 1000
    return f"{ms:.1f}" if abs(ms) < 10 else f"{ms:.0f}"


def render_text(renderable: RenderableType, *, width: int, color: bool) -> str:
    """``renderable`` as the text a terminal (``color``) or a file would get.

    Args:
        renderable: what to render.
        width: columns to fit.
        color: emit ANSI styles (the colour system is detected from ``TERM`` and
            ``COLORTERM``; ``NO_COLOR`` is honoured), else plain text.

    Returns:
        The text, every line ending with a newline.
    """
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        color_system="auto" if color else None,
        legacy_windows=False,
    )
    console.print(renderable)
    return buffer.getvalue()


# -- the live view -----------------------------------------------------------------------


def _erase(lines: int) -> str:
    """Back to the start of a frame ``lines`` high, erased (ECMA-48: CSI n A moves the
    cursor n lines up, CSI J erases from the cursor to the end of the screen)."""
    return f"\r\x1b[{lines}A\x1b[J" if lines else ""


@final
class LiveView:
    """Frames and log lines through one :class:`LineWriter`; never blocks.

    Args:
        writer: where the bytes go (the view does not own it).
        terminal: redraw in place with colours (a TTY), else append plain frames.
        fd: the descriptor whose terminal size sets the frame's width and height.
    """

    def __init__(self, writer: LineWriter, *, terminal: bool, fd: int) -> None:
        self._writer = writer
        self._terminal = terminal
        self._fd = fd
        self._frame = ""
        self._height = 0

    def _size(self) -> tuple[int, int]:
        if not self._terminal:
            return _PIPE_WIDTH, 0
        try:
            size = os.get_terminal_size(self._fd)
        except OSError:
            size = shutil.get_terminal_size()
        return size.columns, size.lines

    async def show(self, renderable: RenderableType, *, force: bool = False) -> bool:
        """Draw ``renderable`` in place of the previous frame.

        Skipped while the previous frame is still being written, unless ``force``.
        ``renderable`` is rendered in a worker thread and must not be changed meanwhile
        (:func:`status_table` builds a new one from an immutable snapshot each time).

        Returns:
            Whether the frame was queued.

        Cancellation: waits for the rendering (milliseconds) to end, then nothing is
        queued.
        """
        if not force and self._writer.pending_bytes:
            await trio.lowlevel.checkpoint()
            return False
        width, height = self._size()
        # Rich is pure Python and slow: about 20 ms for 4 rows and 60 ms for 40 on this
        # machine, too long to hold the loop 4 times a second; in a thread the GIL
        # hands the loop a turn every switch interval (5 ms).
        frame = await trio.to_thread.run_sync(
            functools.partial(render_text, renderable, width=width, color=self._terminal)
        )
        if self._terminal and height > 1:
            lines = frame.splitlines(keepends=True)
            if len(lines) > height - 1:
                frame = "".join(lines[: height - 2]) + "...\n"
        erase = _erase(self._height) if self._terminal else ""
        if self._send(erase + frame):
            self._frame = frame
            self._height = frame.count("\n") if self._terminal else 0
            return True
        return False

    def log(self, text: str) -> None:
        """Write ``text`` (lines without their final newline) above the frame."""
        if self._terminal:
            self._send(f"{_erase(self._height)}{text}\n{self._frame}")
        else:
            self._send(f"{text}\n")

    def _send(self, text: str) -> bool:
        try:
            self._writer.send_nowait(text.encode(errors="backslashreplace"))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True


@final
class _ViewLogHandler(logging.Handler):
    """Hands formatted log records to a :class:`LiveView`, above its table."""

    def __init__(self, view: LiveView, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self._view = view
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._view.log(self.format(record))
        except Exception:
            self.handleError(record)


@contextlib.asynccontextmanager
async def open_live_view(
    frame: Callable[[bool], Awaitable[RenderableType]],
    *,
    fd: int,
    terminal: bool,
    every: float,
    logs: bool,
    flush_for: float,
) -> AsyncIterator[LiveView]:
    """Show ``await frame(False)`` every ``every`` seconds on ``fd`` until the block ends.

    On the way out the final frame, ``await frame(True)``, is drawn and the writer gets
    ``flush_for`` seconds to write what is queued.

    Args:
        frame: makes the renderable; its argument says whether this is the final frame.
        fd: the descriptor to write to (not closed here).
        terminal: ``fd`` is a terminal: redraw in place, in colour.
        every: seconds between frames (at least :data:`DEFAULT_REFRESH`).
        logs: while the block runs, the ``marketprism`` logger writes above the table
            through the same writer (its handlers are restored on the way out; the
            first one's formatter is kept). Only useful when the log would land on the
            same terminal.
        flush_for: seconds the final flush may take.

    Yields:
        The view.

    Cancellation: the refresh stops and the writer is abandoned (its thread stops after
    the piece it is writing); the logger's handlers are restored.
    """
    writer = LineWriter(fd, name="the status table", budget=_VIEW_BUDGET)
    # Whatever Python buffered for the descriptor goes first; from here on only the
    # writer writes there.
    sys.stdout.flush()
    view = LiveView(writer, terminal=terminal, fd=fd)
    every = max(every, DEFAULT_REFRESH)
    root = logging.getLogger("marketprism")
    saved = root.handlers[:]
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        # JSON log lines are for machines reading stderr: they stay there, never above
        # the table.
        if logs and not is_json(root):
            formatter = saved[0].formatter if saved else None
            root.handlers[:] = [_ViewLogHandler(view, formatter)]
        try:
            refresh = trio.CancelScope()
            nursery.start_soon(_refresh, view, frame, every, refresh)
            yield view
            refresh.cancel(reason="the view's block ended")
            await view.show(await frame(True), force=True)
        finally:
            root.handlers[:] = saved
        with trio.move_on_after(flush_for):
            await writer.aclose()
        nursery.cancel_scope.cancel(reason="the status table was written or given up")


@contextlib.asynccontextmanager
async def live_table(
    stats: Callable[[], Awaitable[Stats]], title: str, *, fd: int, flush_for: float
) -> AsyncIterator[None]:
    """While the block runs, :func:`status_table` of ``await stats()`` live on ``fd``, if
    ``fd`` is a terminal; else nothing.

    Log lines of the ``marketprism`` logger scroll above the table when stderr is a
    terminal too (both land on the same screen); otherwise they stay where they went.

    Args:
        stats: the snapshot source (``sup.stats``).
        title: the table's title; `` (Ctrl-C to stop)`` is added, `` (stopped)`` on the
            final frame.
        fd: the descriptor to draw on (``run``: standard output).
        flush_for: seconds the final frame may take to be written.

    Cancellation: as :func:`open_live_view`.
    """
    if not os.isatty(fd):
        yield
        return

    async def frame(final: bool) -> RenderableType:
        hint = "stopped" if final else "Ctrl-C to stop"
        return status_table(await stats(), title=f"{title} ({hint})")

    async with open_live_view(
        frame,
        fd=fd,
        terminal=True,
        every=DEFAULT_REFRESH,
        logs=os.isatty(_STDERR),
        flush_for=flush_for,
    ):
        yield


async def _refresh(
    view: LiveView,
    frame: Callable[[bool], Awaitable[RenderableType]],
    every: float,
    scope: trio.CancelScope,
) -> None:
    with scope:
        # Frames start at least `every` apart, on a fixed schedule: time spent rendering
        # counts toward the wait, and a slow render skips slots instead of piling up.
        next_at = trio.current_time()
        while True:
            await view.show(await frame(False))
            next_at = max(next_at + every, trio.current_time())
            await trio.sleep_until(next_at)
