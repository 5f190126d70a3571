"""The fast WebSocket transport: one task reads, parses and hands back whole reads.

Theory of operation: the client side of RFC 6455 on a trio stream, with no task of its
own. The session's pump calls :meth:`FastWebSocket.receive_batch`, which reads up to
``_RECEIVE_SIZE`` bytes with one ``receive_some``, parses every complete frame in them
with :class:`~actors.net.frames.FrameReader` and returns all the data messages at once
(a busy feed hands back hundreds per read). Control frames are handled on the way:

- a ping is answered with a pong carrying its payload (RFC 6455 section 5.5.2);
- a pong that answers our ping (same payload) reports its round trip;
- the server's Close is echoed, and ends the socket *after* the messages that came
  before it in the same read were returned: 1000 raises :class:`ClosedNormally`, any
  other code :class:`~actors._errors.ConnectionLost` with that code and reason;
- a protocol violation (:class:`~actors.net.frames.FrameError`) sends a Close with its
  code (1002, 1007, 1009) and ends the socket the same way, again after the messages
  parsed before it.

Why (issue 16): trio-websocket runs a reader task that parses with wsproto and passes
each message through a channel to the reader; that costs a task switch and about 12 µs
of wsproto per message. Here a read of 300 trade frames costs one wake-up and one
parser loop.

Writes (our messages, pongs, pings, closes) go through one lock, since they come from
the pump, from a ping task and from the read path; control frames are written shielded
from cancellation, so a deadline that fires mid-write never leaves half a frame on the
wire, and bounded by ``_CONTROL_WRITE_TIMEOUT`` (a peer that has not read for that long
is gone: the socket is dropped).

The opening handshake is HTTP/1.1 through h11 (the parser wsproto itself uses), with
the key and its accept token from wsproto's utilities; what arrived after the ``101``
answer (a server may send its first frames in the same packet) is h11's
``trailing_data`` and goes to the frame parser first. No extension and no subprotocol is
offered, so a server that names one in its answer is refused (see
:mod:`actors.net.frames` on permessage-deflate).

Messages and close codes read the same as on the reference transport
(trio-websocket), so logs and stats do not depend on the transport: close names come
from ``trio_websocket.CloseReason``, a TCP connection that ends without a Close is
1006, and a message over ``max_message_size`` is 1009 with trio-websocket's reason text.
One difference: a protocol violation by the server is reported with its own code (1002
or 1007) where trio-websocket reports 1006.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterable
from typing import Final

import h11
import trio
import wsproto.utilities

from actors._errors import ConnectError, ConnectionLost, HandshakeRejected
from actors.net._closing import (
    ABNORMAL_CLOSURE,
    MESSAGE_TOO_BIG,
    NORMAL_CLOSURE,
    ClosedNormally,
    closed_by_peer,
)
from actors.net.frames import (
    Close,
    FrameError,
    FrameReader,
    Message,
    Opcode,
    Ping,
    Pong,
    close_payload,
    encode_frame,
)
from actors.net.urls import redact_url

__all__ = ["FastWebSocket", "client_handshake"]

#: Bytes asked for per read: a busy depth stream's read holds many frames, and a paced
#: feed returns what arrived whatever the size asked.
_RECEIVE_SIZE: Final = 256 * 1024
#: Seconds a control frame (pong, ping, close) may take to write before the peer is
#: taken for gone.
_CONTROL_WRITE_TIMEOUT: Final = 10.0
#: The largest HTTP answer to the upgrade we read before giving up on it.
_MAX_HANDSHAKE_BYTES: Final = 64 * 1024


async def client_handshake(
    stream: trio.abc.Stream, host_header: str, resource: str, url: str
) -> bytes:
    """The client's opening handshake (RFC 6455 section 4.1) on ``stream``.

    Returns:
        The bytes that arrived after the server's ``101`` answer (the first frames, if
        the server sent them at once).

    Raises:
        HandshakeRejected: the server answered with another status.
        ConnectError: the peer hung up or broke HTTP or the upgrade's rules.

    Cancellation: the stream is left mid-handshake; its owner closes it.
    """
    shown = redact_url(url)
    nonce = wsproto.utilities.generate_nonce()
    http = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HANDSHAKE_BYTES)
    request = h11.Request(
        method="GET",
        target=resource,
        headers=[
            (b"Host", host_header.encode("idna")),
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Key", nonce),
            (b"Sec-WebSocket-Version", b"13"),
        ],
    )
    try:
        await stream.send_all(http.send(request) + (http.send(h11.EndOfMessage()) or b""))
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise ConnectError(f"{shown} closed the connection during the WebSocket handshake") from exc
    while True:
        try:
            event = http.next_event()
        except h11.RemoteProtocolError as exc:
            raise ConnectError(
                f"{shown} answered the WebSocket upgrade with bad HTTP: {exc}"
            ) from exc
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(16384)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectError(
                    f"{shown} closed the connection during the WebSocket handshake"
                ) from exc
            if not data:
                raise ConnectError(f"{shown} closed the connection during the WebSocket handshake")
            http.receive_data(bytes(data))
            continue
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            _check_accept(event.headers, nonce, shown)
            trailing, _ = http.trailing_data
            return bytes(trailing)
        if isinstance(event, h11.InformationalResponse):
            continue  # 100 Continue and the like: the answer is still to come
        if isinstance(event, h11.Response):
            status = event.status_code
            raise HandshakeRejected(
                f"{shown} rejected the WebSocket upgrade with HTTP {status}", status=status
            )
        raise ConnectError(f"{shown} ended the WebSocket handshake without an answer")


def _check_accept(headers: Iterable[tuple[bytes, bytes]], nonce: bytes, shown: str) -> None:
    """The ``101`` answer's headers, as RFC 6455 section 4.1 requires of a client."""
    fields: dict[bytes, bytes] = {}
    for name, value in headers:
        fields[name.lower()] = value
    problems = []
    if fields.get(b"upgrade", b"").lower() != b"websocket":
        problems.append("no 'Upgrade: websocket'")
    tokens = [t.strip().lower() for t in fields.get(b"connection", b"").split(b",")]
    if b"upgrade" not in tokens:
        problems.append("no 'Connection: Upgrade'")
    if fields.get(b"sec-websocket-accept") != wsproto.utilities.generate_accept_token(nonce):
        problems.append("a wrong Sec-WebSocket-Accept")
    if fields.get(b"sec-websocket-extensions"):
        problems.append("an extension we did not offer")
    if fields.get(b"sec-websocket-protocol"):
        problems.append("a subprotocol we did not offer")
    if problems:
        raise ConnectError(f"{shown} answered the WebSocket upgrade with " + " and ".join(problems))


class FastWebSocket:
    """One open client WebSocket on the fast transport; owned by the task that reads it.

    Built by :func:`actors.net.websocket.open_websocket` after :func:`client_handshake`.

    Args:
        stream: the open stream, past the handshake.
        url: the URL it was opened to (may hold credentials: logged redacted).
        nursery: where ping writes run (cancelled when the socket closes).
        max_message_size: longer messages close the connection with 1009.
        trailing: bytes that arrived with the handshake's answer.
    """

    __slots__ = (
        "_ended",
        "_last_received",
        "_max_message_size",
        "_nursery",
        "_on_pong",
        "_pending",
        "_ping_payload",
        "_ping_sent",
        "_reader",
        "_scope",
        "_sent_close",
        "_stream",
        "_trailing",
        "_write_lock",
        "url",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        url: str,
        nursery: trio.Nursery,
        *,
        max_message_size: int,
        trailing: bytes = b"",
    ) -> None:
        self._stream = stream
        self.url = url
        self._nursery = nursery
        self._reader = FrameReader(max_message_size)
        self._max_message_size = max_message_size
        self._trailing = trailing
        self._write_lock = trio.StrictFIFOLock()
        #: trio time bytes last arrived.
        self._last_received = trio.current_time()
        #: Messages read but not yet handed out by :meth:`receive`.
        self._pending: collections.deque[str | bytes] = collections.deque()
        #: Set once the socket is over: raised by every later receive and send.
        self._ended: Exception | None = None
        self._sent_close = False
        self._ping_payload: bytes | None = None
        self._ping_sent = 0.0
        self._on_pong: Callable[[float], None] | None = None
        #: Covers the newest ping's write; cancelled when the socket closes.
        self._scope: trio.CancelScope | None = None

    @property
    def last_received(self) -> float:
        """trio time bytes last arrived: data or control frames (pings) alike."""
        return self._last_received

    async def receive_batch(self) -> list[str | bytes]:
        """Every message of the next read that carried any, in order (at least one).

        Raises:
            ClosedNormally: the peer closed with code 1000.
            ConnectionLost: the connection was closed with another code, broke, or the
                peer broke the protocol.

        Cancellation: atomic; a cancelled call took nothing.
        """
        if self._pending:
            out = list(self._pending)
            self._pending.clear()
            return out
        while True:
            if self._ended is not None:
                raise self._ended
            data: bytes | bytearray = self._trailing
            if data:
                self._trailing = b""
            else:
                try:
                    data = await self._stream.receive_some(_RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self._ended = closed_by_peer(ABNORMAL_CLOSURE, "", self.url)
                    raise self._ended from exc
                if not data:
                    self._ended = closed_by_peer(ABNORMAL_CLOSURE, "", self.url)
                    raise self._ended
                self._last_received = trio.current_time()
            try:
                events = self._reader.feed(data)
            except FrameError as exc:
                events = exc.events
                await self._fail(exc)
            for event in events:
                kind = type(event)
                if kind is not str and kind is not bytes:
                    events = await self._with_control(events)  # type: ignore[assignment]
                    break
            if events:
                return events  # type: ignore[return-value]  # only str and bytes here

    async def _with_control(self, events: list[Message]) -> list[str | bytes]:
        """The data messages of ``events``; control events handled in their place (a
        Close ends the list and the socket: later calls raise)."""
        out: list[str | bytes] = []
        for event in events:
            if isinstance(event, (str, bytes)):
                out.append(event)
            elif isinstance(event, Ping):
                await self._write_control(Opcode.PONG, event.payload)
            elif isinstance(event, Pong):
                self._ponged(event.payload)
            elif isinstance(event, Close):
                if not self._sent_close:
                    code = NORMAL_CLOSURE if event.code is None else event.code
                    await self._write_control(Opcode.CLOSE, close_payload(code, ""))
                    self._sent_close = True
                self._ended = closed_by_peer(event.code, event.reason, self.url)
                break
        return out

    async def _fail(self, error: FrameError) -> None:
        """The server broke the protocol: close with the error's code."""
        reason = error.reason
        if error.code == MESSAGE_TOO_BIG:
            # trio-websocket's words, so the log reads the same on either transport.
            reason = f"Exceeded maximum message size: {self._max_message_size} bytes"
        if not self._sent_close:
            self._sent_close = True
            await self._write_control(Opcode.CLOSE, close_payload(error.code, reason[:123]))
        self._ended = closed_by_peer(error.code, reason, self.url)

    async def receive(self) -> str | bytes:
        """The next message from the peer.

        Raises:
            ClosedNormally: the peer closed with code 1000.
            ConnectionLost: the connection was closed with another code, or broke.

        Cancellation: atomic; a cancelled receive took no message.
        """
        if not self._pending:
            self._pending.extend(await self.receive_batch())
        return self._pending.popleft()

    async def send(self, frame: str | bytes) -> None:
        """Write one message (text for ``str``, binary for ``bytes``).

        Raises:
            ClosedNormally: the peer had closed with code 1000.
            ConnectionLost: the connection is closed or broke.

        Cancellation: partial; the frame may have been sent in part, in which case the
        connection is unusable (the session ends anyway when cancelled).
        """
        if self._ended is not None:
            raise self._ended
        if isinstance(frame, str):
            data = encode_frame(Opcode.TEXT, frame.encode(), mask=os.urandom(4))
        else:
            data = encode_frame(Opcode.BINARY, frame, mask=os.urandom(4))
        await self._write(data)

    async def _write(self, data: bytes) -> None:
        async with self._write_lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                if self._ended is None:
                    self._ended = closed_by_peer(ABNORMAL_CLOSURE, "", self.url)
                raise self._ended from exc

    async def _write_control(self, opcode: Opcode, payload: bytes) -> None:
        """Write a control frame whole, whatever is cancelled meanwhile (bounded)."""
        data = encode_frame(opcode, payload, mask=os.urandom(4))
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + _CONTROL_WRITE_TIMEOUT
            try:
                await self._write(data)
            except (ClosedNormally, ConnectionLost):
                return  # the read path raises the end in its turn
        if scope.cancelled_caught:
            if self._ended is None:
                self._ended = ConnectionLost(
                    f"connection lost: could not write a control frame for "
                    f"{_CONTROL_WRITE_TIMEOUT:g} s to {redact_url(self.url)}",
                    code=ABNORMAL_CLOSURE,
                )
            await trio.aclose_forcefully(self._stream)

    def ping(self, on_pong: Callable[[float], None]) -> None:
        """Send a WebSocket ping without waiting for its pong (RFC 6455 section 5.5.2:
        the peer must answer); ``on_pong(seconds)`` gets the round trip when it comes.

        At most one ping is in flight: a call while one is unanswered does nothing. The
        pong arrives through :meth:`receive_batch` (it restarts :attr:`last_received`
        like any frame). Closing the socket forgets an unanswered ping.
        """
        if self._ping_payload is not None or self._ended is not None:
            return
        payload = os.urandom(4)
        self._ping_payload = payload
        self._ping_sent = trio.current_time()
        self._on_pong = on_pong
        scope = self._scope = trio.CancelScope()
        self._nursery.start_soon(self._send_ping, scope, payload)

    async def _send_ping(self, scope: trio.CancelScope, payload: bytes) -> None:
        with scope:
            await self._write_control(Opcode.PING, payload)

    def _ponged(self, payload: bytes) -> None:
        if payload != self._ping_payload:
            return  # unsolicited, or the answer to a ping we forgot
        on_pong = self._on_pong
        self._ping_payload = self._on_pong = None
        if on_pong is not None:
            on_pong(trio.current_time() - self._ping_sent)

    def _forget_ping(self) -> None:
        self._ping_payload = self._on_pong = None
        if self._scope is not None:
            self._scope.cancel(reason="WebSocket closed")

    async def abort(self) -> None:
        """Drop the socket without a closing handshake (a silent peer would not answer).

        Cancellation: none; the socket is closed at once.
        """
        self._forget_ping()
        if self._ended is None:
            self._ended = closed_by_peer(ABNORMAL_CLOSURE, "", self.url)
        await trio.aclose_forcefully(self._stream)

    async def close(self, close_timeout: float) -> None:
        """Close with 1000 and wait (shielded, at most ``close_timeout``) for the peer's
        Close; then close the stream. If the peer closed first, only the stream."""
        self._forget_ping()
        with trio.CancelScope(shield=True), trio.move_on_after(close_timeout):
            if not self._sent_close and self._ended is None:
                self._sent_close = True
                await self._write_control(Opcode.CLOSE, close_payload(NORMAL_CLOSURE, ""))
                await self._await_close()
        if self._ended is None:
            self._ended = ConnectionLost(
                f"connection lost: closed by us from {redact_url(self.url)}", code=NORMAL_CLOSURE
            )
        await trio.aclose_forcefully(self._stream)

    async def _await_close(self) -> None:
        """Read (and drop) what comes until the peer's Close or the end of the stream."""
        reader = self._reader
        while not reader.closed and self._ended is None:
            try:
                data = self._trailing or await self._stream.receive_some(_RECEIVE_SIZE)
                self._trailing = b""
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            try:
                reader.feed(data)
            except FrameError:
                return
