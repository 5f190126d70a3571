"""A small asyncio WebSocket server speaking Binance combined streams, for the benchmarks.

Theory of operation
-------------------
``bench/recovery.py`` and ``bench/scale.py`` need a server that holds many connections
at once, injects faults on command and counts what it sees (accepts, upgrades,
handshakes in flight), without being the bottleneck. So it is asyncio with
``asyncio.Protocol`` (no streams, no task per connection): :class:`WsConn` parses the
upgrade request and the client's masked frames from ``data_received`` and writes
pre-framed server frames with ``transport.write``. It answers pings with pongs, a close
frame with a close frame (then closes), and ``{"method":"SUBSCRIBE",...}`` with
``{"result":null,"id":ID}``, then calls :meth:`Hub.subscribed`; what is sent after that
(a trickle of trade frames) is up to the benchmark's :class:`Hub` subclass.

Faults a benchmark can inject on a connection: :meth:`WsConn.close_frame` (close frame,
then the TCP close once the client answered), :meth:`WsConn.reset` (``SO_LINGER`` 0 then
close: the kernel sends RST), :meth:`WsConn.stall` (stop sending and reading, keep the
socket open: a half-open peer that answers no ping) and :meth:`WsConn.drop` (TCP close
without a closing handshake).

Control: :func:`serve_control` reads one command per line from stdin and writes one JSON
object per line to stdout (the parent process's pipes), so the parent coordinates server
and client without sleeping. Times are ``time.monotonic()``, which on Linux is the
system-wide ``CLOCK_MONOTONIC`` that trio's clock and the clients' ``time.monotonic()``
read too, so times from different processes of one machine compare directly.

Frames and trade payloads come from ``bench/receive_path.py`` (imported, not copied).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import resource
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from receive_path import STREAM, server_frame, trade_frame

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_KEY = re.compile(rb"(?im)^sec-websocket-key:\s*(\S+)\s*$")
#: File descriptors a 1,000-connection run needs on each side, with some room.
FD_WANTED = 2_100


def raise_fd_limit() -> tuple[int, str]:
    """Raise RLIMIT_NOFILE to its hard limit; (new soft limit, a warning or "")."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    warning = ""
    if soft < FD_WANTED:
        warning = (
            f"warning: RLIMIT_NOFILE is {soft} (hard limit {hard}), below the ~{FD_WANTED} "
            "file descriptors 1,000 connections need on each side; raise the hard limit "
            "(ulimit -Hn, or LimitNOFILE= in systemd) or run fewer --connections"
        )
    return soft, warning


def trade_payload(trade_id: int) -> bytes:
    """One trade frame (server-framed) with trade id ``FIRST_TRADE_ID + trade_id``."""
    return server_frame(trade_frame(trade_id))


class Hub:
    """What the server does with connections; subclassed by each benchmark.

    Counters: ``accepted`` (TCP accepts), ``upgraded`` (101 sent), ``in_handshake``
    (accepted, not yet upgraded) and its peak since :meth:`reset_peak`.
    """

    def __init__(self) -> None:
        self.conns: set[WsConn] = set()
        self.accepted = 0
        self.upgraded = 0
        self.in_handshake = 0
        self.peak_in_handshake = 0
        self.accept_times: list[float] = []
        self.record_accepts = False

    def reset_peak(self) -> None:
        self.peak_in_handshake = self.in_handshake

    def accepted_one(self, conn: WsConn) -> None:
        self.conns.add(conn)
        self.accepted += 1
        self.in_handshake += 1
        self.peak_in_handshake = max(self.peak_in_handshake, self.in_handshake)
        if self.record_accepts:
            self.accept_times.append(time.monotonic())

    def upgraded_one(self, conn: WsConn) -> None:
        self.upgraded += 1
        self.in_handshake -= 1

    def lost(self, conn: WsConn) -> None:
        self.conns.discard(conn)
        if not conn.upgraded:
            self.in_handshake -= 1

    def subscribed(self, conn: WsConn) -> None:
        """The client's SUBSCRIBE was acknowledged; start feeding ``conn``."""


class WsConn(asyncio.Protocol):
    """One server-side WebSocket connection (see the module docstring)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.live = False  # subscribed and not faulted: the trickle goes here
        self.closed = False
        self.stalled = False
        self.close_sent = False
        self.session = -1
        self.sent = 0

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.hub.accepted_one(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.live = False
        self.hub.lost(self)

    def data_received(self, data: bytes) -> None:
        if self.stalled:
            return
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            request = bytes(self.buf[: end + 4])
            del self.buf[: end + 4]
            match = _KEY.search(request)
            if match is None:
                self.drop()
                return
            accept = base64.b64encode(hashlib.sha1(match.group(1) + _WS_GUID).digest())
            self.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.upgraded = True
            self.hub.upgraded_one(self)
        while (frame := self._next_frame()) is not None:
            opcode, payload = frame
            if opcode == 0x9:
                self.write(server_frame(payload, opcode=0xA))
            elif opcode == 0x8:
                # The client's close: answer it unless it answers ours, then close TCP.
                self.live = False
                if not self.close_sent:
                    self.write(server_frame(payload[:2], opcode=0x8))
                if self.transport is not None:
                    self.transport.close()
                return
            elif opcode == 0x1:
                request_json = json.loads(payload)
                if request_json.get("method") == "SUBSCRIBE" and request_json.get("params") == [
                    STREAM
                ]:
                    ack = json.dumps({"result": None, "id": request_json["id"]})
                    self.write(server_frame(ack.encode()))
                    self.live = True
                    self.hub.subscribed(self)

    def _next_frame(self) -> tuple[int, bytes] | None:
        buf = self.buf
        if len(buf) < 2:
            return None
        size = buf[1] & 0x7F
        at = 2
        if size == 126:
            if len(buf) < 4:
                return None
            (size,) = struct.unpack_from("!H", buf, 2)
            at = 4
        elif size == 127:
            if len(buf) < 10:
                return None
            (size,) = struct.unpack_from("!Q", buf, 2)
            at = 10
        masked = buf[1] & 0x80
        mask = bytes(buf[at : at + 4]) if masked else b"\0\0\0\0"
        at += 4 if masked else 0
        if len(buf) < at + size:
            return None
        data = bytes(buf[at : at + size])
        opcode = buf[0] & 0x0F
        del buf[: at + size]
        return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    # -- sending and faults ----------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_trade(self, trade_id: int) -> None:
        self.write(trade_payload(trade_id))
        self.sent += 1

    def close_frame(self, code: int) -> None:
        """Send a close frame; the TCP close follows the client's answer (or its EOF)."""
        self.live = False
        self.close_sent = True
        self.write(server_frame(struct.pack("!H", code), opcode=0x8))

    def reset(self) -> None:
        """Close with ``SO_LINGER`` 0: the kernel discards the buffers and sends RST."""
        self.live = False
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()

    def stall(self) -> None:
        """Stop sending and reading; the socket stays open (a half-open peer)."""
        self.live = False
        self.stalled = True
        if self.transport is not None:
            self.transport.pause_reading()

    def drop(self) -> None:
        """Close the TCP connection without a closing handshake (FIN)."""
        self.live = False
        if self.transport is not None:
            self.transport.close()


async def listen(hub: Hub, hosts: list[str], backlog: int = 4096) -> list[tuple[str, int]]:
    """Listen on each loopback address of ``hosts``; returns (host, port) per address."""
    loop = asyncio.get_running_loop()
    out = []
    for host in hosts:
        server = await loop.create_server(lambda: WsConn(hub), host, 0, backlog=backlog)
        out.append((host, server.sockets[0].getsockname()[1]))
    return out


def reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve_control(handle: Callable[[list[str]], Awaitable[dict[str, Any] | None]]) -> None:
    """Read commands from stdin (one per line) and write each answer as a JSON line.

    ``handle`` gets the command's words and returns the answer, or ``None`` to stop.
    The loop also stops at EOF (the parent went away).
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        answer = await handle(line.decode().split())
        if answer is None:
            return
        reply(answer)


# -- reporting helpers shared by recovery.py and scale.py ----------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank ``p``-th percentile (the registry's definition): the smallest value
    with at least ``p`` % of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def write_section(
    benchmarks: Any, heading: str, intro: str, key: str, label: str, body: str
) -> None:
    """Add (or replace, by ``label``) a ``### label`` section under ``heading`` in
    BENCHMARKS.md; the heading and its ``intro`` are appended the first time."""
    begin, end = f"<!-- {key}: {label} -->", f"<!-- /{key}: {label} -->"
    section = f"{begin}\n### {label}\n\n{body}\n{end}"
    text = benchmarks.read_text() if benchmarks.exists() else "# Benchmarks\n"
    start = text.find(begin)
    if start >= 0:
        stop = text.index(end, start) + len(end)
        text = text[:start] + section + text[stop:]
    else:
        if heading not in text:
            text = text.rstrip("\n") + f"\n\n{heading}\n\n{intro.strip()}\n"
        # At the end of the heading's part: before the next "## " heading, if any.
        after = text.index(heading) + len(heading)
        nxt = text.find("\n## ", after)
        stop = len(text) if nxt < 0 else nxt
        head, tail = text[:stop].rstrip("\n"), text[stop:]
        text = head + "\n\n" + section + "\n" + tail
    benchmarks.write_text(text)
