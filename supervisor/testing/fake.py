"""A fake exchange: a real WebSocket server whose faults a test scripts.

Theory of operation
-------------------
:func:`open_fake_exchange` owns one nursery. Everything the fake runs lives in it: the
TCP accept loop (``transport="tcp"``) and one handler task per incoming connection,
whether it arrived over the loopback listener or through :meth:`FakeExchange.connect`
(``transport="memory"``). The server side of each connection is trio-websocket's own
(``wrap_server_stream``), so clients meet a real RFC 6455 peer at the socket boundary.

Each handler owns its stream and its WebSocket (one owner per resource). It opens a
per-connection nursery for trio-websocket's reader task, reads the upgrade request,
then either rejects it (a scripted refusal) or accepts it and runs the session: a
receive loop that records client frames and a data task that sends one frame every
``interval`` seconds. Faults that end a session (:meth:`FakeExchange.close`,
:meth:`FakeExchange.reset`) do not touch the socket themselves: they record what should
happen, cancel the session's scope and wait until the owning handler has done it.
Faults that only write a frame go through trio-websocket's ``send_message``, which
serialises writers with its own FIFO lock.

Between the transport stream and trio-websocket sits :class:`_GatedStream`. While a
session is stalled it holds back every byte it has read, so the server neither sees
client frames nor answers pings, and the data task waits at the same gate; the
connection itself stays open.

Every observable change (session opened or closed, frame received or sent, fault
applied, connection refused) wakes :meth:`FakeExchange.wait_until` through a
``trio.Event`` that is set and replaced, so tests wait for state, never for time.

Network errors are per connection: a client vanishing mid-send ends that session only
(``ConnectionClosed``, ``trio.BrokenResourceError`` and ``trio.ClosedResourceError`` are
caught per handler). Anything else, such as an exception raised by a ``payload``
callback, is a bug in the test and propagates out of :func:`open_fake_exchange`.

Why one module
--------------
This module is kept whole (about 1200 lines) on purpose. The natural cut by job, the
server plumbing (accept loop, handshake, session loop) against the fault-injection API
(``close``, ``reset``, ``stall``, ``refuse``, ...), runs through the middle of
:class:`FakeExchange`: both halves are methods of it (the class alone is about 620
lines) and share its private state (the session list, the change event, the refusal
window, the closing flag). Moving only the leaf classes (``_GatedStream``,
:class:`FakeSession`, :class:`SessionIO`, 250 lines) out would leave about 950 lines
here and one module reaching into the other's privates; splitting the class itself
needs a new internal server object behind a delegating facade, which is a redesign, not
a move. Exchange rules live in :mod:`supervisor.testing.fakes`, one per exchange.
"""

from __future__ import annotations

import collections
import enum
import errno
import math
import re
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Final, Literal, final
from urllib.parse import urlsplit

import trio
import trio.testing
import wsproto.utilities
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    wrap_server_stream,
)

from actors.net import redact_url

__all__ = [
    "DEFAULT_CLOSE_GRACE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "SHUTDOWN_CLOSE_CODE",
    "TOO_MANY_CONNECTS_STATUS",
    "DataTap",
    "FakeExchange",
    "FakeSession",
    "SessionHandler",
    "SessionIO",
    "open_fake_exchange",
    "route",
]

#: Largest message the fake accepts from a client. Generous on purpose: real exchanges
#: cap subscribe requests far lower, but the fake must never be the reason a test fails.
DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 2**20

#: Seconds the fake waits for the client's answering close frame before it closes the
#: TCP connection anyway. RFC 6455 section 7.1.1: the server closes the TCP connection
#: once the closing handshake is done; trio-websocket's own server waits up to 60 s
#: (``CONN_TIMEOUT``), far too long for a test double.
DEFAULT_CLOSE_GRACE: Final = 5.0

#: Close code the fake sends to every open session when its context exits.
#: RFC 6455 section 7.4.1: 1001 "going away", e.g. a server going down.
SHUTDOWN_CLOSE_CODE: Final = 1001

#: Codes an endpoint must never put in a close frame (RFC 6455 section 7.4.1): 1005 and
#: 1006 only report a missing status or an abnormal closure locally, 1015 a TLS failure.
_UNSENDABLE_CLOSE_CODES: Final = frozenset({1004, 1005, 1006, 1015})

#: HTTP status of a handshake refused for exceeding ``max_connects`` (RFC 6585 section 4).
TOO_MANY_CONNECTS_STATUS: Final = 429
#: A close frame's payload is at most 125 bytes: a 2-byte code and up to 123 bytes of
#: UTF-8 reason (RFC 6455 section 5.5).
_MAX_CLOSE_REASON_BYTES: Final = 123

_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?")
_LINGER_RESET: Final = struct.pack("ii", 1, 0)

_Transport = Literal["tcp", "memory"]
_Payload = Callable[["FakeSession", int], str | bytes]
#: Sees every data frame just before it is written: ``tap(session, frame)``.
DataTap = Callable[["FakeSession", str | bytes], None]
#: An exchange-specific session program: runs one client session over a SessionIO.
SessionHandler = Callable[["SessionIO"], Awaitable[None]]


class _EndKind(enum.Enum):
    """How a fault asked a session to end."""

    #: Send a close frame, wait for the client's answer, close the connection.
    CLOSE = enum.auto()
    #: Drop the connection without a close frame (TCP: RST).
    RESET = enum.auto()


@final
class _GatedStream(trio.abc.Stream):
    """A stream wrapper that can stop reading while the connection stays open.

    Data that arrives while the gate is stalled is held until :meth:`resume`, so a
    stalled session neither processes client frames nor answers pings. Sending is never
    gated. ``ended`` is set once the peer finished (EOF, broken) or the gate was closed,
    which lets the handshake stop waiting for a request that will never come.
    """

    def __init__(self, inner: trio.abc.Stream, transport: trio.SocketStream | None) -> None:
        self._inner = inner
        self._transport = transport
        self._stalled = False
        self._resumed = trio.Event()
        self._resumed.set()
        self._closed = False
        self.ended = trio.Event()

    @property
    def stalled(self) -> bool:
        return self._stalled

    def stall(self) -> None:
        if not self._stalled and not self._closed:
            self._stalled = True
            self._resumed = trio.Event()

    def resume(self) -> None:
        self._stalled = False
        self._resumed.set()

    async def wait_resumed(self) -> None:
        while self._stalled and not self._closed:
            await self._resumed.wait()
        if self._closed:
            raise trio.ClosedResourceError("the fake exchange closed this connection")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        await self.wait_resumed()
        try:
            data = await self._inner.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.ended.set()
            raise
        if not data:
            self.ended.set()
        # Bytes that arrived just as the gate closed are held too; otherwise a ping
        # read before stall() returned would still get its pong.
        await self.wait_resumed()
        return data

    def _mark_closed(self) -> None:
        self._closed = True
        self._resumed.set()
        self.ended.set()

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._mark_closed()
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._inner.aclose()

    async def reset(self) -> None:
        """End the connection without a close frame: TCP RST, or EOF in memory."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        if self._transport is None:
            await self.aclose()
            return
        self._mark_closed()
        # SO_LINGER on with a zero timeout makes close() send RST instead of FIN and
        # drop unsent data (socket(7)). Under TLS this skips close_notify on purpose.
        self._transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        await self._transport.aclose()


@final
class FakeSession:
    """One accepted WebSocket session on a :class:`FakeExchange`.

    Created by the fake only; tests read it. The fake updates the attributes as the
    session runs.

    Attributes:
        index: the session's number on its fake: 0 for the first session accepted, then
            1, 2, ... (its position in :attr:`FakeExchange.sessions` as long as
            :meth:`FakeExchange.forget_closed` was not called).
        received: every frame the client sent, in order (``str`` for text frames,
            ``bytes`` for binary ones).
        sent: how many data frames the fake sent (scripted fault frames do not count).
        open: True from the accepted handshake until the connection is closed.
        close_code: the close code the client sent if the client closed the session
            (1005 if its close frame carried no code); None while open, and when the
            fake closed it or the connection broke without a close frame. A client
            message over ``DEFAULT_MAX_MESSAGE_SIZE`` makes trio-websocket close with
            1009, which is recorded here too.
        subscribed: True once any frame was received from the client.
        fake_close_code: how the fake ended the session: the code of the close frame it
            sent (a scripted :meth:`FakeExchange.close` or the exchange's own rules),
            1006 when it reset the connection; None while open, and when the client
            closed it or the connection broke first.
        last_written: trio time the fake last wrote a frame to the client (data, a
            handler's replies, a scripted :meth:`FakeExchange.send`, :meth:`FakeExchange.
            garbage` or :meth:`FakeExchange.oversized`); the accept time before that.
        peer: the client's ``(address, port)`` as the fake's TCP socket sees it (what
            proves which proxy, if any, a connection came through); None in memory.
    """

    def __init__(self, index: int, ws: WebSocketConnection, gate: _GatedStream) -> None:
        self.index: int = index
        transport = gate._transport
        self.peer: tuple[str, int] | None = (
            None if transport is None else tuple(transport.socket.getpeername()[:2])
        )
        self.received: list[str | bytes] = []
        self.sent: int = 0
        self.open: bool = True
        self.close_code: int | None = None
        self.subscribed: bool = False
        self.fake_close_code: int | None = None
        self.last_written: float = trio.current_time()
        self._ws = ws
        self._gate = gate
        self._scope = trio.CancelScope()
        self._ended = trio.Event()
        self._end_kind: _EndKind | None = None
        self._end_code = 1000
        self._end_reason = ""
        #: The handler closed the session while it was stalled: the close waits for
        #: resume() (a frozen session's own close cannot reach the client either).
        self._end_held = False

    def _end(self, kind: _EndKind, code: int, reason: str) -> None:
        """Ask the owning handler to end this session; the first request wins."""
        if self._end_kind is not None or self._ended.is_set():
            return
        self._end_kind = kind
        self._end_code = code
        self._end_reason = reason
        self._scope.cancel(reason=f"fake exchange fault: {kind.name.lower()}")

    def __repr__(self) -> str:
        state = "open" if self.open else f"closed (close_code={self.close_code!r})"
        return (
            f"<FakeSession index={self.index} {state} received={len(self.received)} "
            f"sent={self.sent} subscribed={self.subscribed}>"
        )


def _check_close(code: int, reason: str) -> None:
    if not 1000 <= code <= 4999 or code in _UNSENDABLE_CLOSE_CODES:
        raise ValueError(
            f"close code {code!r} may not be sent (RFC 6455 section 7.4); "
            f"use 1000-4999 except 1004, 1005, 1006 and 1015, e.g. 1000 or 4000"
        )
    if len(reason.encode()) > _MAX_CLOSE_REASON_BYTES:
        raise ValueError(
            f"close reason {reason[:20]!r}... is {len(reason.encode())} bytes of UTF-8; "
            f"a close frame holds at most {_MAX_CLOSE_REASON_BYTES} (RFC 6455 section 5.5)"
        )


class SessionIO:
    """One client session as an exchange-specific fake handler sees it.

    A handler (see ``open_fake_exchange(handler=...)``) is a plain async program that
    implements an exchange's server side for one session: read the client's frames,
    answer them, push data, ping. The generic fake keeps owning the transport, so every
    fault (close, reset, stall, garbage, oversized, refuse, slow) still applies.

    Created by the fake only.

    Attributes:
        session: the :class:`FakeSession` being served.
        fake: the :class:`FakeExchange` serving it.
    """

    def __init__(
        self, fake: FakeExchange, session: FakeSession, ws: WebSocketConnection, gate: _GatedStream
    ) -> None:
        self.fake = fake
        self.session = session
        self._ws = ws
        self._gate = gate

    @property
    def stalled(self) -> bool:
        """Whether the session is stalled (:meth:`FakeExchange.stall`), not yet resumed."""
        return self._gate.stalled

    @property
    def path(self) -> str:
        """The request target of the client's upgrade request, e.g. ``/v5/public/spot``.

        Exchanges that serve several products on one host by path (Bybit) read it to
        pick the product; the query string, if any, is included as sent.
        """
        return self._ws.path or "/"

    async def receive(self) -> str | bytes:
        """The client's next frame (also recorded in ``session.received``).

        Raises:
            trio_websocket.ConnectionClosed: the client closed or went away.

        Cancellation: atomic.
        """
        message = await self._ws.get_message()
        self.session.received.append(message)
        self.session.subscribed = True
        self.fake._changed()
        return message

    async def send(self, frame: str | bytes, *, data: bool = True) -> None:
        """Send one frame to the client, waiting while the session is stalled.

        Args:
            frame: the frame.
            data: count it in ``session.sent`` (False for acks, pongs, notices).

        Raises:
            trio_websocket.ConnectionClosed: the client is gone.

        Cancellation: may be partial (the frame may be on the wire).
        """
        if self._gate.stalled:
            await self._gate.wait_resumed()
        if data and self.fake.data_tap is not None:
            self.fake.data_tap(self.session, frame)
        await self._ws.send_message(frame)
        self.session.last_written = trio.current_time()
        if data:
            self.session.sent += 1
        self.fake._changed()

    async def ping(self, payload: bytes) -> None:
        """Send a WebSocket ping and wait for the matching pong.

        While the session is stalled the ping waits for :meth:`FakeExchange.resume`
        first: a frozen session sends nothing. Callers bound the wait
        (``trio.move_on_after``) to model an exchange's pong deadline.

        Raises:
            trio_websocket.ConnectionClosed: the client is gone.

        Cancellation: may be partial (the ping may be on the wire).
        """
        if self._gate.stalled:
            await self._gate.wait_resumed()
        await self._ws.ping(payload)

    def close(self, code: int, reason: str = "") -> None:
        """End this session with a close frame (code, reason), as the exchange would.

        The handler's tasks are cancelled at once. If the session is stalled, the close
        frame waits for :meth:`FakeExchange.resume` (or a scripted :meth:`FakeExchange.
        close` / :meth:`FakeExchange.reset`): the connection of a frozen session stays
        silently open, as a half-open one would, whatever the exchange's rules decide.
        """
        _check_close(code, reason)
        session = self.session
        if session._end_kind is None and not session._ended.is_set():
            session._end_held = self._gate.stalled
        session._end(_EndKind.CLOSE, code, reason)

    async def wait_interval(self, since: float) -> float:
        """Sleep until ``since + fake.interval`` (re-read on changes); return that time."""
        return await self.fake._wait_interval(since)


def _default_payload(session: FakeSession, seq: int) -> str:
    return f'{{"seq":{seq},"session":{session.index}}}'


def _check_interval(interval: float) -> float:
    if math.isnan(interval) or interval <= 0:
        raise ValueError(
            f"interval must be a positive number of seconds (math.inf for no data frames), "
            f"got {interval!r}"
        )
    return float(interval)


@final
class FakeExchange:
    """A running fake exchange; obtain one from :func:`open_fake_exchange`.

    Data: every session, once subscribed (at once when ``require_subscribe`` is False),
    gets one data frame every :attr:`interval` seconds: ``payload(session, seq)``, or by
    default the JSON text ``{"seq":N,"session":K}`` with ``N`` counting from 0 per
    session and ``K`` the session index. Frame ``k`` of a session is due ``(k + 1) *
    interval`` after the session subscribed, as long as the interval is unchanged.

    Faults apply to every session open at the moment of the call. The async ones
    return once the fault has been applied: frames written, or sessions ended.

    Attributes:
        data_tap: ``None``, or a callable the fake calls with ``(session, frame)`` just
            before it writes each data frame: the default ``payload`` frames, and every
            :meth:`SessionIO.send` with ``data=True`` (after a stall has been resumed).
            A frame whose write completed is counted in :attr:`FakeSession.sent`, so
            the frames a session was tapped for beyond its final ``sent`` count were
            cut mid-write by the session's end. It must not block; an exception it
            raises propagates like one from ``payload``.
    """

    def __init__(
        self,
        *,
        name: str,
        transport: _Transport,
        url: str,
        port: int,
        nursery: trio.Nursery,
        ssl_context: ssl.SSLContext | None,
        interval: float,
        require_subscribe: bool,
        payload: _Payload | None,
        handler: SessionHandler | None = None,
        max_connects: tuple[int, float] | None = None,
    ) -> None:
        """Do not call; use :func:`open_fake_exchange`, which starts and stops the fake."""
        self._handler = handler
        self._max_connects = max_connects
        self._attempts: collections.deque[float] = collections.deque()
        self._name = name
        self._transport = transport
        self._url = url
        self._port = port
        self._nursery = nursery
        self._ssl_context = ssl_context
        self._interval = interval
        self._require_subscribe = require_subscribe
        self._payload: _Payload = payload if payload is not None else _default_payload
        self._sessions: list[FakeSession] = []
        self._accepted = 0
        self._refused = 0
        self._refuse_until = -math.inf
        self._refuse_status: int | None = None
        self._closing = False
        self._accepting = trio.CancelScope()
        self._change = trio.Event()
        self._changes = 0
        #: Called with ``(session, frame)`` just before every data frame is written
        #: (see :attr:`data_tap`).
        self.data_tap: DataTap | None = None

    # -- identity -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The name given to :func:`open_fake_exchange`."""
        return self._name

    @property
    def handler(self) -> SessionHandler | None:
        """The session handler given to :func:`open_fake_exchange` (a venue's rules,
        such as a :class:`~supervisor.testing.FakeOkx`, to inject gaps or notices), or
        ``None`` for the generic numbered feed."""
        return self._handler

    @property
    def url(self) -> str:
        """Where clients connect.

        ``ws://127.0.0.1:PORT/ws`` over TCP (``wss://`` with an SSL context), and
        ``ws://NAME.fake.invalid/ws`` in memory (``.invalid`` never resolves, RFC 2606).
        """
        return self._url

    @property
    def port(self) -> int:
        """The TCP port the fake listens on; 0 for the memory transport."""
        return self._port

    @property
    def transport(self) -> _Transport:
        """``"tcp"`` or ``"memory"``."""
        return self._transport

    # -- behaviour ------------------------------------------------------------------

    @property
    def interval(self) -> float:
        """Seconds between two data frames of one session.

        Setting it applies at once, also to the wait in progress: the next frame is due
        ``interval`` seconds after the previous one (or after the subscription).
        ``math.inf`` stops data frames.

        Raises:
            ValueError: on assignment of a value that is not positive.
        """
        return self._interval

    @interval.setter
    def interval(self, interval: float) -> None:
        self._interval = _check_interval(interval)
        self._changed()

    @property
    def require_subscribe(self) -> bool:
        """Whether a session waits for its first client frame before data flows."""
        return self._require_subscribe

    @require_subscribe.setter
    def require_subscribe(self, value: bool) -> None:
        self._require_subscribe = value
        self._changed()

    # -- observation ----------------------------------------------------------------

    @property
    def sessions(self) -> list[FakeSession]:
        """Every accepted WebSocket session, in accept order (read, don't modify).

        Sessions dropped by :meth:`forget_closed` are no longer listed.
        """
        return self._sessions

    def forget_closed(self) -> int:
        """Stop listing closed sessions in :attr:`sessions`; return how many were dropped.

        For long runs (a soak, a demo left running): every closed session otherwise
        stays listed, with all the frames it received, for the fake's life. Indices
        keep counting (the next session's :attr:`FakeSession.index` is unchanged), so
        after this call an index is no longer a position in :attr:`sessions`.
        """
        kept = [session for session in self._sessions if session.open]
        dropped = len(self._sessions) - len(kept)
        self._sessions = kept
        return dropped

    @property
    def refused(self) -> int:
        """How many connection attempts :meth:`refuse` turned away."""
        return self._refused

    @property
    def changes(self) -> int:
        """How many observable changes happened so far (see :meth:`wait_until`).

        ``wait_until(lambda f: f.changes > n)`` waits for the next change after the one
        numbered ``n``, e.g. to re-check a condition that also depends on the client.
        """
        return self._changes

    @property
    def refusing_until(self) -> float:
        """Trio time at which the current refusal window ends (``-inf`` if none)."""
        return self._refuse_until

    async def wait_until(self, predicate: Callable[[FakeExchange], bool]) -> None:
        """Wait until ``predicate(self)`` is true.

        The predicate is checked at once and again after every change of the fake's
        state: a session opened or closed, a frame received or sent, a fault applied, a
        connection refused. Put a deadline around the call (``trio.fail_after``).

        Args:
            predicate: called with this fake; must not block.

        Cancellation:
            Atomic: waiting has no effect on the fake.
        """
        await trio.lowlevel.checkpoint()
        while not predicate(self):
            await self._change.wait()

    # -- connecting -----------------------------------------------------------------

    async def connect(self, url: str) -> trio.abc.Stream:
        """Open an in-memory connection to this fake (memory transport only).

        The fake serves the other end of a ``trio.testing.memory_stream_pair()``; the
        caller does the WebSocket handshake over the returned stream, e.g. with
        ``trio_websocket.wrap_client_stream``. This is the connector an actor takes; use
        :func:`route` to serve several fakes from one connector.

        Args:
            url: the URL being connected to. Not checked (any URL reaches this fake).

        Returns:
            The client end of the connection.

        Raises:
            RuntimeError: the fake uses the TCP transport, or has been closed.
            ConnectionRefusedError: :meth:`refuse` without a status is in force; no
                session is created.

        Cancellation:
            Atomic: when cancelled, no connection was made.
        """
        await trio.lowlevel.checkpoint()
        if self._transport != "memory":
            raise RuntimeError(
                f"fake exchange {self._name!r} uses transport={self._transport!r}; "
                f"connect() serves transport='memory' only, connect to {self._url} instead"
            )
        if self._closing:
            raise RuntimeError(
                f"fake exchange {self._name!r} is closed; connect inside open_fake_exchange()"
            )
        refusing, status = self._refusal()
        if refusing and status is None:
            self._refused += 1
            self._changed()
            raise ConnectionRefusedError(
                errno.ECONNREFUSED,
                f"fake exchange {self._name!r} refused the connection to {redact_url(url)!r} "
                f"(refuse() in force until t={self._refuse_until})",
            )
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self._serve, server, None, status if refusing else None)
        return client

    # -- faults ---------------------------------------------------------------------

    async def close(
        self, code: int = 1000, reason: str = "", *, session: int | None = None
    ) -> None:
        """Close every open session with a WebSocket close frame.

        Each session sends the close frame, waits up to ``DEFAULT_CLOSE_GRACE`` seconds
        for the client's answering close frame, then closes the connection. A stalled
        session is resumed first, so that the answer can be read.

        Args:
            code: the close code (1000-4999, not 1004, 1005, 1006 or 1015).
            reason: the close reason, at most 123 bytes of UTF-8.
            session: close only the open session with this :attr:`FakeSession.index`
                (none if it is closed already); default every open session.

        Raises:
            ValueError: ``code`` may not be sent, or ``reason`` is too long.

        Cancellation:
            Partial: sessions already asked to close still close, in their own tasks.
        """
        _check_close(code, reason)
        await self._end_sessions(_EndKind.CLOSE, code, reason, session)

    async def reset(self, *, session: int | None = None) -> None:
        """End every open session abruptly, without a close frame.

        Over TCP the socket is closed with ``SO_LINGER`` set to zero, so the client gets
        an RST (under TLS, no ``close_notify`` either). In memory the server end is
        closed, so the client reads EOF. Clients see close code 1006.

        Args:
            session: reset only the open session with this :attr:`FakeSession.index`
                (none if it is closed already); default every open session.

        Cancellation:
            Partial: sessions already asked to reset still reset, in their own tasks.
        """
        await self._end_sessions(_EndKind.RESET, 1006, "", session)

    def stall(self) -> None:
        """Freeze every open session while keeping its connection open.

        A stalled session sends no data frames and reads nothing from its socket:
        client frames are not processed and pings get no pong. A handler's own pings
        wait too, and a close its rules decide (:meth:`SessionIO.close`) is held until
        the resume: to the client the connection is half-open, nothing arrives.
        Sessions accepted later are not stalled. A session stays stalled until
        :meth:`resume`, or until it is closed (:meth:`close` resumes it first so the
        close handshake works). Scripted frames (:meth:`send`, :meth:`garbage`,
        :meth:`oversized`) are still written.
        """
        for session in self._open_sessions():
            session._gate.stall()
        self._changed()

    def resume(self) -> None:
        """Undo :meth:`stall` on every open session.

        Held client data is processed at once; the next data frame is due
        :attr:`interval` seconds after the resume (frames due during the stall are
        skipped, not sent late).
        """
        for session in self._open_sessions():
            session._gate.resume()
        self._changed()

    async def garbage(self, frame: str = "\x00garbage{") -> None:
        """Send every open session one text frame that is not JSON.

        Args:
            frame: the text to send.

        Cancellation:
            Partial: some sessions may have been sent the frame.
        """
        await self._broadcast(frame)

    async def oversized(self, size: int) -> None:
        """Send every open session one text frame of exactly ``size`` characters.

        The frame is a JSON string literal, ``'"' + 'x' * (size - 2) + '"'``, so only
        its size is wrong.

        Args:
            size: the frame length in characters, at least 2.

        Raises:
            ValueError: ``size`` is less than 2.

        Cancellation:
            Partial: some sessions may have been sent the frame.
        """
        if size < 2:
            raise ValueError(f"oversized() needs size >= 2 for a JSON string, got {size!r}")
        await self._broadcast('"' + "x" * (size - 2) + '"')

    async def send(self, frame: str | bytes) -> None:
        """Send every open session one frame.

        Args:
            frame: ``str`` for a text frame, ``bytes`` for a binary frame.

        Cancellation:
            Partial: some sessions may have been sent the frame.
        """
        await self._broadcast(frame)

    def refuse(self, seconds: float, *, status: int | None = None) -> None:
        """Refuse new connections for the next ``seconds`` of Trio time.

        A connection is refused when it arrives before ``trio.current_time() +
        seconds``; from that instant on connections are accepted again. Open sessions
        are not affected. Each refusal counts in :attr:`refused`. A new call replaces
        the window in force.

        Args:
            seconds: length of the window, from now (0 ends a window early).
            status: None to refuse at the transport level: over TCP the fake accepts the
                connection and resets it at once (RST) before any handshake; in memory
                :meth:`connect` raises ``ConnectionRefusedError``. An HTTP status to
                read the upgrade request and reject it with that status instead
                (``trio_websocket.ConnectionRejected`` on the client).

        Raises:
            ValueError: ``seconds`` is negative or NaN, or ``status`` is not 200-599
                (or is 101, which would accept the upgrade).
        """
        if math.isnan(seconds) or seconds < 0:
            raise ValueError(f"refuse() needs seconds >= 0, got {seconds!r}")
        if status is not None and not 200 <= status <= 599:
            raise ValueError(f"refuse() needs an HTTP status of 200-599, got {status!r}")
        self._refuse_until = trio.current_time() + seconds
        self._refuse_status = status
        self._changed()

    def slow(self, interval: float) -> None:
        """Make the fake a slow sender: set :attr:`interval`, effective at once.

        Args:
            interval: new seconds between data frames of each session.

        Raises:
            ValueError: ``interval`` is not positive.
        """
        self.interval = interval

    # -- internals ------------------------------------------------------------------

    def __repr__(self) -> str:
        open_count = len(self._open_sessions())
        return (
            f"<FakeExchange {self._name!r} {self._url} sessions={len(self._sessions)} "
            f"open={open_count} refused={self._refused}>"
        )

    def _changed(self) -> None:
        self._changes += 1
        self._change.set()
        self._change = trio.Event()

    def _open_sessions(self) -> list[FakeSession]:
        return [session for session in self._sessions if session.open]

    def _refusal(self) -> tuple[bool, int | None]:
        """Whether to refuse the connection attempt being made now, and how."""
        now = trio.current_time()
        if now < self._refuse_until:
            return True, self._refuse_status
        if self._max_connects is not None:
            # Exchanges count attempts, refused ones included (Binance: 300 connection
            # attempts per 5 minutes per IP; OKX: 3 per second per IP).
            limit, window = self._max_connects
            recent = self._attempts
            while recent and recent[0] <= now - window:
                recent.popleft()
            recent.append(now)
            if len(recent) > limit:
                return True, TOO_MANY_CONNECTS_STATUS
        return False, None

    async def _end_sessions(
        self, kind: _EndKind, code: int, reason: str, index: int | None = None
    ) -> None:
        targets = [s for s in self._open_sessions() if index is None or s.index == index]
        await trio.lowlevel.checkpoint()
        for session in targets:
            if session._end_held:
                session._gate.resume()  # let the held close go out, then wait for it
            session._end(kind, code, reason)
        for session in targets:
            await session._ended.wait()

    async def _broadcast(self, frame: str | bytes) -> None:
        targets = self._open_sessions()
        await trio.lowlevel.checkpoint()
        async with trio.open_nursery() as nursery:
            for session in targets:
                nursery.start_soon(self._send_frame, session, frame)

    async def _send_frame(self, session: FakeSession, frame: str | bytes) -> None:
        try:
            await session._ws.send_message(frame)
        except ConnectionClosed:
            return  # the session is ending anyway
        session.last_written = trio.current_time()
        self._changed()

    async def _shutdown(self) -> None:
        """Stop accepting, then close open sessions with 1001 (going away)."""
        self._closing = True
        self._accepting.cancel(reason=f"fake exchange {self._name!r} is shutting down")
        await self._end_sessions(_EndKind.CLOSE, SHUTDOWN_CLOSE_CODE, "fake exchange shut down")

    async def _serve_tcp(self, listener: trio.SocketListener) -> None:
        try:
            with self._accepting:
                await trio.serve_listeners(
                    self._handle_tcp, [listener], handler_nursery=self._nursery
                )
        finally:
            await listener.aclose()  # also when cancelled before serve_listeners ran

    async def _handle_tcp(self, stream: trio.SocketStream) -> None:
        refusing, status = self._refusal()
        if refusing and status is None:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            await stream.aclose()
            self._refused += 1
            self._changed()
            return
        app_stream: trio.abc.Stream = stream
        if self._ssl_context is not None:
            # https_compatible: don't wait for close_notify in aclose(); a client that
            # never finished the TLS handshake must not hold the fake up.
            app_stream = trio.SSLStream(
                stream, self._ssl_context, server_side=True, https_compatible=True
            )
        await self._serve(app_stream, stream, status if refusing else None)

    async def _serve(
        self,
        stream: trio.abc.Stream,
        transport: trio.SocketStream | None,
        refuse_status: int | None,
    ) -> None:
        """Own one connection: handshake, then reject it or run its session."""
        gate = _GatedStream(stream, transport)
        try:
            async with trio.open_nursery() as connection_nursery:
                try:
                    await self._serve_gated(connection_nursery, gate, refuse_status)
                finally:
                    # Lets trio-websocket's reader task end, so the nursery can close.
                    await gate.aclose()
        except* (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; only this connection is affected
        except* wsproto.utilities.LocalProtocolError:
            # The client's ping arrived while we were closing: trio-websocket's reader
            # then fails to answer it (wsproto refuses a Pong in LOCAL_CLOSING). The
            # connection was ending anyway; only it is affected.
            pass

    async def _serve_gated(
        self, connection_nursery: trio.Nursery, gate: _GatedStream, refuse_status: int | None
    ) -> None:
        request = await self._read_request(connection_nursery, gate)
        if request is None:
            return  # the client left before completing its upgrade request
        if refuse_status is not None:
            # Counted before the answer is written: a client may hang up as soon as it
            # has read the status line, before the body is through.
            self._refused += 1
            self._changed()
            await request.reject(
                refuse_status,
                body=f"refused by fake exchange {self._name!r}".encode(),
            )
            return
        if self._closing:
            return  # shutting down: drop the connection instead of opening a session
        ws = await request.accept()
        session = FakeSession(self._accepted, ws, gate)
        self._accepted += 1
        self._sessions.append(session)
        self._changed()
        try:
            await self._run_session(session, ws, gate)
        finally:
            try:
                await gate.aclose()
            finally:
                session.open = False
                session._ended.set()
                self._changed()

    async def _read_request(
        self, connection_nursery: trio.Nursery, gate: _GatedStream
    ) -> WebSocketRequest | None:
        """Return the client's upgrade request, or None if the client left first.

        ``wrap_server_stream`` alone would wait forever for a request from a client
        that disconnected, since trio-websocket's reader then just stops.
        """
        request: WebSocketRequest | None = None

        async def read() -> None:
            nonlocal request
            request = await wrap_server_stream(
                connection_nursery, gate, max_message_size=DEFAULT_MAX_MESSAGE_SIZE
            )
            race.cancel_scope.cancel(reason="upgrade request received")

        async with trio.open_nursery() as race:
            race.start_soon(read)
            await gate.ended.wait()
            race.cancel_scope.cancel(reason="client left before its upgrade request")
        return request

    async def _run_session(
        self, session: FakeSession, ws: WebSocketConnection, gate: _GatedStream
    ) -> None:
        with session._scope:
            if self._handler is not None:
                with suppress(ConnectionClosed):
                    await self._handler(SessionIO(self, session, ws, gate))
            else:
                async with trio.open_nursery() as tasks:
                    tasks.start_soon(self._send_data, session, ws, gate)
                    await self._receive(session, ws)
                    tasks.cancel_scope.cancel(reason="session ended by the client")
        if session._end_kind is _EndKind.RESET:
            session.fake_close_code = 1006
            await gate.reset()
        elif session._end_kind is _EndKind.CLOSE:
            session.fake_close_code = session._end_code
            if session._end_held:
                with suppress(trio.ClosedResourceError):
                    await gate.wait_resumed()
            gate.resume()
            with trio.move_on_after(DEFAULT_CLOSE_GRACE):
                await ws.aclose(session._end_code, session._end_reason)
        else:
            reason = ws.closed
            # 1006 is never on the wire: trio-websocket reports it when the
            # connection broke without a close frame (RFC 6455 section 7.4.1).
            if reason is not None and reason.code != 1006:
                session.close_code = int(reason.code)  # may be a wsproto IntEnum

    async def _receive(self, session: FakeSession, ws: WebSocketConnection) -> None:
        while True:
            try:
                message = await ws.get_message()
            except ConnectionClosed:
                return
            session.received.append(message)
            session.subscribed = True
            self._changed()

    async def _send_data(
        self, session: FakeSession, ws: WebSocketConnection, gate: _GatedStream
    ) -> None:
        while self._require_subscribe and not session.subscribed:
            await self._change.wait()
        due = trio.current_time()
        seq = 0
        while True:
            due = await self._wait_interval(due)
            if gate.stalled:
                try:
                    await gate.wait_resumed()
                except trio.ClosedResourceError:
                    return
                due = trio.current_time()
                continue
            frame = self._payload(session, seq)
            if self.data_tap is not None:
                self.data_tap(session, frame)
            try:
                await ws.send_message(frame)
            except ConnectionClosed:
                return
            seq += 1
            session.sent += 1
            session.last_written = trio.current_time()
            self._changed()

    async def _wait_interval(self, since: float) -> float:
        """Sleep until ``since + interval`` (re-read on every change); return that time."""
        while True:
            due = since + self._interval
            now = trio.current_time()
            if now >= due:
                # More than one whole interval late (a slow client over TCP): start a
                # new schedule rather than sending a burst to catch up.
                return due if now - due < self._interval else now
            with trio.move_on_at(due):
                await self._change.wait()


def _tcp_url(host: str, port: int, secure: bool) -> str:
    netloc = f"[{host}]" if ":" in host else host
    return f"{'wss' if secure else 'ws'}://{netloc}:{port}/ws"


@asynccontextmanager
async def open_fake_exchange(
    *,
    name: str = "fake",
    transport: _Transport = "tcp",
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    interval: float = 0.1,
    require_subscribe: bool = True,
    payload: _Payload | None = None,
    handler: SessionHandler | None = None,
    max_connects: tuple[int, float] | None = None,
) -> AsyncIterator[FakeExchange]:
    """Run a fake exchange WebSocket server for the duration of the block.

    Over TCP the fake is listening before the block runs; connect to
    :attr:`FakeExchange.url`. In memory, connect with :meth:`FakeExchange.connect` (or
    :func:`route`). On exit the fake stops accepting, closes every open session with
    close code 1001 (waiting up to ``DEFAULT_CLOSE_GRACE`` seconds per session for the
    client's answer), closes the listener and leaves no task behind. When the block
    raises, sessions are dropped without the close handshake and the exception
    propagates unchanged (not wrapped in an exception group).

    Args:
        name: names the fake in messages and in the memory URL; letters, digits, ``-``
            and ``_``.
        transport: ``"tcp"`` for a real loopback listener, ``"memory"`` for in-memory
            streams (combine with the ``autojump_clock`` fixture for exact times).
        host: address to listen on (TCP only). If it resolves to several addresses, the
            first is used.
        port: port to listen on (TCP only); 0 picks a free port.
        ssl_context: a server-side SSL context to serve ``wss://`` (TCP only).
        interval: initial :attr:`FakeExchange.interval`.
        require_subscribe: initial :attr:`FakeExchange.require_subscribe`.
        payload: ``payload(session, seq)`` returns data frame ``seq`` of ``session``;
            the default is ``{"seq":N,"session":K}``. Exceptions it raises propagate
            out of this context manager.
        handler: an exchange-specific session program (see :class:`SessionIO`) that
            replaces the default behaviour (record frames, push ``payload`` frames);
            ``interval``, ``require_subscribe`` and ``payload`` are then the handler's
            to use or ignore.
        max_connects: ``(attempts, seconds)``: an exchange's connection-rate limit per
            IP; an attempt beyond it is rejected with HTTP 429 and counted in
            :attr:`FakeExchange.refused`. ``None``: no limit.

    Yields:
        The running fake.

    Raises:
        ValueError: an invalid ``name``, ``transport`` or ``interval``, or TCP-only
            options given for the memory transport.
        OSError: the TCP listener could not be opened (e.g. port in use).

    Cancellation:
        Cancelling the block or the exit drops all connections abruptly; the listener
        and every task of the fake are still closed before the cancellation propagates.
    """
    if not _NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"fake exchange name {name!r} must be letters, digits, '-' and '_' "
            f"(it becomes a host name)"
        )
    if transport not in ("tcp", "memory"):
        raise ValueError(f"transport must be 'tcp' or 'memory', got {transport!r}")
    _check_interval(interval)
    if transport == "memory" and (ssl_context is not None or port != 0):
        raise ValueError(
            f"fake exchange {name!r}: ssl_context and port apply to transport='tcp' only"
        )

    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        listener: trio.SocketListener | None = None
        if transport == "tcp":
            listeners = await trio.open_tcp_listeners(port, host=host)
            listener = listeners[0]
            for extra in listeners[1:]:
                await extra.aclose()
            bound_host, bound_port = listener.socket.getsockname()[:2]
            url = _tcp_url(bound_host, bound_port, ssl_context is not None)
        else:
            bound_port = 0
            url = f"ws://{name}.fake.invalid/ws"
        fake = FakeExchange(
            name=name,
            transport=transport,
            url=url,
            port=bound_port,
            nursery=nursery,
            ssl_context=ssl_context,
            interval=float(interval),
            require_subscribe=require_subscribe,
            payload=payload,
            handler=handler,
            max_connects=max_connects,
        )
        if listener is not None:
            # Already listening (open_tcp_listeners), so clients may connect at once.
            nursery.start_soon(fake._serve_tcp, listener)
        try:
            yield fake
            await fake._shutdown()
        except BaseException as exc:
            # Keep the block's own exception out of the nursery, which would wrap it
            # in an ExceptionGroup; it is re-raised unchanged below.
            error = exc
        finally:
            fake._closing = True
            nursery.cancel_scope.cancel(reason=f"fake exchange {name!r} closed")
    if error is not None:
        raise error


def route(*fakes: FakeExchange) -> Callable[[str], Awaitable[trio.abc.Stream]]:
    """Build one connector that dispatches each URL to the memory fake serving its host.

    Args:
        *fakes: fakes with ``transport="memory"``, each with a distinct name.

    Returns:
        ``connect(url)``: connects to the fake whose :attr:`FakeExchange.url` host
        matches the host of ``url`` (case-insensitive; scheme, port and path are not
        compared) and returns the client end, like :meth:`FakeExchange.connect`. It
        raises ``ValueError`` naming the URL and the known hosts when no fake matches.

    Raises:
        ValueError: a fake does not use the memory transport, or two fakes share a host.
    """
    by_host: dict[str, FakeExchange] = {}
    for fake in fakes:
        if fake.transport != "memory":
            raise ValueError(
                f"route() dispatches to transport='memory' fakes; {fake.name!r} uses "
                f"transport={fake.transport!r}, connect to {fake.url} directly"
            )
        host = (urlsplit(fake.url).hostname or "").lower()
        if host in by_host:
            raise ValueError(f"route() got two fakes serving host {host!r}; names must differ")
        by_host[host] = fake
    known = ", ".join(sorted(by_host)) or "(none)"

    async def connect(url: str) -> trio.abc.Stream:
        host = (urlsplit(url).hostname or "").lower()
        fake = by_host.get(host)
        if fake is None:
            raise ValueError(f"no fake exchange serves {redact_url(url)!r}; known hosts: {known}")
        return await fake.connect(url)

    return connect
