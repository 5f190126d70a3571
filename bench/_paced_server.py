"""What the paced benchmarks share: the paced server, the stamped frames, the report.

Theory of operation
-------------------
``bench/receive_path.py`` measures a client flooded by a pre-framed buffer. Most users
see the opposite: frames arriving at a steady rate, one or a few per wake-up. The server
here sends on a schedule instead:

- **The protocol** is receive_path's: a raw-socket WebSocket server (RFC 6455 upgrade,
  unmasked server frames) that waits for ``{"method":"SUBSCRIBE","params":
  ["btcusdt@trade"],"id":ID}``, answers ``{"result":null,"id":ID}`` and then sends
  Binance combined-stream trade frames (:func:`stamped_trade`).
- **Every frame carries two numbers the Binance adapter keeps**: the trade id ``t`` is
  the server's ``time.monotonic_ns()`` read just before the frames of one write are
  built and sent (plus the frame's index within that write, so ids stay distinct and
  increasing; building takes about a microsecond per frame, so a burst of ``k`` frames
  adds up to ``k`` µs to the latency measured), and the
  trade time ``T`` is the frame's sequence number on its connection (0, 1, 2, ...). A
  client reads them back from ``Trade.trade_id`` / ``Trade.timestamp`` (ours) or from the
  decoded JSON (``data.t`` / ``data.T``). ``CLOCK_MONOTONIC`` is one clock for every
  process on Linux, so ``time.monotonic_ns()`` in the client minus ``t`` is the time from
  the server's write to the consumer holding the decoded message. ``T`` lets the client
  check that nothing was lost, duplicated or reordered, and pick its measuring window by
  sequence number, so the count in the window is exact.
- **Pacing** is an absolute schedule: frame ``k`` is due at ``t0 + k / rate`` (no drift
  from late wake-ups). The server sends every frame that is due (at most
  :data:`MAX_BURST` per write), then sleeps until the next one is due. A wake-up that
  comes late sends the frames due by then in one write: that is the only batching, and
  the report says how much of it there was (frames per write, worst lateness).
- **The end**: after its last frame the server does not close; it waits for the
  client's close frame and echoes it. A client that keeps up reads every frame and then
  closes; one that falls behind may stop at the end of its measuring window and close
  early, and the server then stops sending to it. (Closing first would make our
  supervisor, with ``restart = "temporary"``, stop and drop what its queues still
  held.) The orchestrator reads one JSON line per served trial from the server's stdout.

:func:`serve_one_at_a_time` serves one connection at a time (the latency benchmark);
:func:`serve_many` serves ``connections`` at once and starts sending only when all of
them subscribed (the paced-CPU benchmark).

The rest are the helpers both scripts use to report: percentiles, a :class:`Window` of
CPU and wall time, and writing a section into ``BENCHMARKS.md``.
"""

from __future__ import annotations

import json
import math
import os
import select
import selectors
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from receive_path import STREAM, _Reader, accept_upgrade, server_frame

#: At most this many frames go into one write when the server wakes up late.
MAX_BURST: Final = 64
#: Seconds the server waits for a client's close frame after its last frame (a client
#: that keeps up closes at once; one behind stops at the end of its window).
CLOSE_WAIT: Final = 120.0
#: Seconds the many-connection server waits for all its clients to subscribe.
SUBSCRIBE_WAIT: Final = 120.0
#: The server's answer to a client's close frame (RFC 6455 section 5.5.1).
_CLOSE_1000: Final = server_frame(b"\x03\xe8", opcode=0x8)


def stamped_trade(stamp_ns: int, seq: int) -> bytes:
    """One trade frame's payload: trade id ``t`` = ``stamp_ns``, trade time ``T`` = ``seq``."""
    return (
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000000,"s":"BTCUSDT",'
        b'"t":%d,"p":"37000.01","q":"0.001","T":%d,"m":true,"M":true}}' % (stamp_ns, seq)
    )


# -- server ------------------------------------------------------------------------------


def accept_subscriber(conn: socket.socket) -> _Reader:
    """Answer the upgrade and the SUBSCRIBE of one client; returns its reader.

    Raises:
        ValueError: not a WebSocket upgrade, or a request other than the expected
            SUBSCRIBE.
        ConnectionError: the client hung up first.
    """
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = _Reader(conn)
    accept_upgrade(conn, reader)
    while True:
        opcode, payload = reader.frame()
        if opcode == 0x8:
            raise ConnectionError("client closed before subscribing")
        if opcode != 0x1:
            continue
        request_json = json.loads(payload)
        if request_json.get("method") == "SUBSCRIBE" and request_json.get("params") == [STREAM]:
            break
        raise ValueError(f"unexpected request {payload!r}")
    ack = json.dumps({"result": None, "id": request_json["id"]}, separators=(",", ":"))
    conn.sendall(server_frame(ack.encode()))
    return reader


def _answer(conn: socket.socket, reader: _Reader) -> bool:
    """Handle one client frame: pong a ping, echo a close. Returns whether it closed."""
    opcode, payload = reader.frame()
    if opcode == 0x9:
        conn.sendall(server_frame(payload, opcode=0xA))
    elif opcode == 0x8:
        conn.sendall(_CLOSE_1000)
        return True
    return False


def _await_close(conn: socket.socket, reader: _Reader) -> bool:
    """Wait (at most :data:`CLOSE_WAIT` s) for the client's close frame and echo it.

    Returns whether the client closed (a hang-up or the timeout count as not).
    """
    conn.settimeout(CLOSE_WAIT)
    try:
        while not _answer(conn, reader):
            pass
    except (ConnectionError, TimeoutError, OSError):
        return False
    finally:
        conn.settimeout(None)
    return True


def stream_paced(conn: socket.socket, reader: _Reader, rate: float, frames: int) -> dict[str, Any]:
    """Send ``frames`` stamped trade frames at ``rate`` per second on an absolute schedule.

    The client may close before the last frame (it could not keep up and stopped): the
    server then stops too. After the last frame it does not close: it waits for the
    client's close frame, so a client still reading its backlog loses nothing.

    Returns:
        What was sent: ``sent``, ``writes`` (``sendall`` calls), ``late_max_us`` (worst
        delay of a write behind its first frame's due time), ``seconds`` (first to last
        write), ``left_early`` (1 if the client closed before the last frame, else 0),
        ``closed`` (1 if the client closed with a close frame, else 0), ``resets`` (1 if
        it left without one, else 0).
    """
    interval = 1e9 / rate
    t0 = time.monotonic_ns()
    sent = writes = 0
    late_max = 0
    last = t0
    clock = time.monotonic_ns
    left_early = reset = False
    while sent < frames:
        now = clock()
        due = min(frames, int((now - t0) / interval) + 1)
        timeout = 0.0
        if due > sent:
            burst = min(due - sent, MAX_BURST)
            late_max = max(late_max, now - (t0 + int(sent * interval)))
            stamp = clock()
            payload = b"".join(
                server_frame(stamped_trade(stamp + j, sent + j)) for j in range(burst)
            )
            try:
                conn.sendall(payload)
            except OSError:  # reset by a client that left early
                left_early, reset = True, True
                break
            sent += burst
            writes += 1
            last = stamp
        else:
            timeout = (t0 + int(sent * interval) - now) / 1e9
        # Sleep until the next frame is due (or only look, when one is due already),
        # waking early for a client frame: a client that stops early is heard even
        # while its back-pressure keeps the server behind schedule.
        readable, _, _ = select.select([conn], [], [], max(0.0, timeout))
        try:
            if readable and _answer(conn, reader):
                left_early = True
                break
        except OSError:  # ConnectionError included: a client that left without closing
            left_early, reset = True, True
            break
    closed = (left_early and not reset) or (not left_early and _await_close(conn, reader))
    return {
        "sent": sent,
        "writes": writes,
        "late_max_us": late_max / 1e3,
        "seconds": (last - t0) / 1e9,
        "left_early": int(left_early),
        "closed": int(closed),
        "resets": int(reset),
    }


def _affinity(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def serve_one_at_a_time(rate: float, frames: int, cpu: int | None) -> None:
    """Serve every connection in turn until killed: ``frames`` frames at ``rate`` each.

    Prints the port first, then one JSON line per served connection (what
    :func:`stream_paced` returns, or ``{"error": ...}``).
    """
    _affinity(cpu)
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                reader = accept_subscriber(conn)
                report = stream_paced(conn, reader, rate, frames)
            except (ConnectionError, OSError, ValueError) as exc:
                report = {"error": repr(exc)}
        print(json.dumps(report), flush=True)


def serve_many(connections: int, rate: float, frames: int, pattern: str, cpu: int | None) -> None:
    """Serve trials of ``connections`` clients at once, until killed.

    Each trial: accept and subscribe all ``connections`` (one at a time, in accept
    order), then send each connection ``frames`` frames at ``rate`` per second; with
    ``pattern`` ``"burst"`` every connection's frame ``k`` is due at ``t0 + k / rate``
    (a burst of one frame per connection every ``1 / rate`` s), with ``"staggered"``
    connection ``c``'s is due ``c / (connections * rate)`` later (evenly spread). Each
    frame is its own ``sendall`` on its connection's socket. A connection whose client
    closes early gets no more frames; after the last frame the server waits for every
    client's close frame. Prints the port first, then one JSON line per trial.
    """
    _affinity(cpu)
    listener = socket.create_server(("127.0.0.1", 0), backlog=max(128, connections + 16))
    print(listener.getsockname()[1], flush=True)
    while True:
        socks: list[socket.socket] = []
        try:
            readers: list[_Reader] = []
            listener.settimeout(None)
            while len(socks) < connections:
                conn, _ = listener.accept()
                # The first client starts the clock for the rest.
                listener.settimeout(SUBSCRIBE_WAIT)
                socks.append(conn)
                conn.settimeout(SUBSCRIBE_WAIT)
                readers.append(accept_subscriber(conn))
                conn.settimeout(None)
            report = _stream_many(socks, readers, rate, frames, pattern)
        except (ConnectionError, OSError, ValueError) as exc:
            report = {"error": repr(exc), "accepted": len(socks)}
        finally:
            for conn in socks:
                conn.close()
        print(json.dumps(report), flush=True)


def _stream_many(
    socks: Sequence[socket.socket],
    readers: Sequence[_Reader],
    rate: float,
    frames: int,
    pattern: str,
) -> dict[str, Any]:
    """One trial of :func:`serve_many` on subscribed sockets.

    Returns:
        ``sent`` (frames written), ``connections``, ``wakeups`` (times the server woke
        with frames due), ``late_max_us`` (worst lateness of a wake-up), ``seconds``,
        ``left_early`` (connections closed before their last frame), ``closed``
        (connections that sent a close frame), ``resets`` (connections that left
        without one).
    """
    n = len(socks)
    total = n * frames
    if pattern == "burst":

        def due(event: int) -> int:
            return t0 + int(event // n * 1e9 / rate)

    else:

        def due(event: int) -> int:
            return t0 + int(event * 1e9 / (n * rate))

    open_ = [True] * n
    sent_to = [0] * n
    selector = selectors.DefaultSelector()
    for index, conn in enumerate(socks):
        selector.register(conn, selectors.EVENT_READ, index)
    clock = time.monotonic_ns
    t0 = clock()
    event = sent = wakeups = resets = 0
    late_max = 0
    try:
        while event < total:
            now = clock()
            if due(event) <= now:
                late_max = max(late_max, now - due(event))
                stamp = clock()
                # + j keeps a connection's ids increasing if one wake-up sends it two.
                j = 0
                while event < total and due(event) <= now:
                    conn_index, seq = event % n, event // n
                    if open_[conn_index]:
                        try:
                            socks[conn_index].sendall(server_frame(stamped_trade(stamp + j, seq)))
                            sent += 1
                            sent_to[conn_index] += 1
                        except OSError:  # reset by a client that left early
                            resets += 1
                            open_[conn_index] = False
                            selector.unregister(socks[conn_index])
                    event += 1
                    j += 1
                wakeups += 1
            for key, _ in selector.select(0):
                index = key.data
                try:
                    closing = _answer(socks[index], readers[index])
                except OSError:  # ConnectionError included: a hang-up or a reset
                    closing, resets = True, resets + 1
                if closing:
                    open_[index] = False
                    selector.unregister(socks[index])
            if event < total:
                time.sleep(max(0, due(event) - clock()) / 1e9)
    finally:
        selector.close()
    seconds = (clock() - t0) / 1e9
    left_early = sum(count < frames for count in sent_to)
    closed = (
        n
        - sum(open_)
        - resets
        + sum(
            _await_close(conn, reader)
            for conn, reader, still in zip(socks, readers, open_, strict=True)
            if still
        )
    )
    return {
        "sent": sent,
        "connections": n,
        "wakeups": wakeups,
        "late_max_us": late_max / 1e3,
        "seconds": seconds,
        "left_early": left_early,
        "closed": closed,
        "resets": resets,
    }


# -- client-side helpers ---------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank ``p``-th percentile of ``values`` sorted ascending (non-empty)."""
    rank = max(1, math.ceil(p / 100 * len(values)))
    return values[rank - 1]


class Window:
    """CPU and wall time of this process over a window of the receive clock.

    The first :meth:`tick` opens the clock; the window starts at the first tick at least
    ``warmup`` seconds later and ends at the first tick at least ``duration`` seconds
    after that. Call :meth:`tick` once per message with the count received so far
    (including this one).
    """

    __slots__ = (
        "count0",
        "count1",
        "cpu0",
        "cpu1",
        "duration",
        "end",
        "first",
        "start",
        "state",
        "wall0",
        "wall1",
        "warmup",
    )

    def __init__(self, warmup: float, duration: float) -> None:
        self.warmup = int(warmup * 1e9)
        self.duration = int(duration * 1e9)
        self.state = 0
        self.first = self.start = self.end = 0
        self.count0 = self.count1 = 0
        self.cpu0 = self.cpu1 = 0.0
        self.wall0 = self.wall1 = 0

    def tick(self, count: int) -> None:
        state = self.state
        if state == 3:
            return
        now = time.monotonic_ns()
        if state == 0:
            self.first = now
            self.start = now + self.warmup
            self.state = 1
        elif state == 1:
            if now >= self.start:
                self.cpu0, self.wall0, self.count0 = time.process_time(), now, count
                self.end = now + self.duration
                self.state = 2
        elif now >= self.end:
            self.cpu1, self.wall1, self.count1 = time.process_time(), now, count
            self.state = 3

    def result(self) -> dict[str, float]:
        """``messages``, ``cpu`` and ``wall`` (seconds) inside the window.

        Raises:
            AssertionError: the stream ended before the window did (too few frames for
                ``warmup + duration``).
        """
        if self.state != 3:
            raise AssertionError(
                "the stream ended before the measuring window did; send more frames"
            )
        return {
            "messages": self.count1 - self.count0,
            "cpu": self.cpu1 - self.cpu0,
            "wall": (self.wall1 - self.wall0) / 1e9,
        }


# -- BENCHMARKS.md -----------------------------------------------------------------------


def write_section(path: Path, key: str, section: str, label: str, header: str) -> None:
    """Add (or replace, by ``key`` and ``label``) a section in the file at ``path``.

    ``section`` must start with ``<!-- {key}: {label} -->`` and end with
    ``<!-- /{key}: {label} -->`` (:func:`markers`); ``header`` opens a new file.
    """
    begin, end = markers(key, label)
    text = path.read_text() if path.exists() else header
    start = text.find(begin)
    if start >= 0:
        stop = text.index(end, start) + len(end)
        text = text[:start] + section + text[stop:]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def markers(key: str, label: str) -> tuple[str, str]:
    return f"<!-- {key}: {label} -->", f"<!-- /{key}: {label} -->"


def parse_rate(text: str) -> float:
    """``"1000"``, ``"1k"`` or ``"2.5k"`` -> messages per second.

    Raises:
        ValueError: not a positive number.
    """
    scale = 1000.0 if text.lower().endswith("k") else 1.0
    value = float(text[:-1] if scale != 1.0 else text) * scale
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(text)
    return value


def rate_label(rate: float) -> str:
    return f"{rate / 1000:g} k" if rate >= 1000 else f"{rate:g}"


def run_json_child(command: list[str], timeout: float) -> dict[str, Any]:
    """Run ``command``; its last stdout line is a JSON object, returned.

    Raises:
        RuntimeError: it exited with an error (its stderr is in the message).
    """
    import subprocess

    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[2:]} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
