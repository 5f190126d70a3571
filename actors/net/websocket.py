"""The WebSocket under a session: open it, watch it, close it.

Theory of operation: :func:`open_websocket` connects (through the actor's connector: TCP
and TLS, or a fake), runs the opening handshake and yields a :class:`WebSocket`; leaving
the block closes it. This module is the one place where trio-websocket's exceptions are
converted into ours (see :mod:`actors._errors`):

- connect failures and the connect deadline: :class:`~actors._errors.ConnectError`;
- a refused upgrade: :class:`~actors._errors.HandshakeRejected` with its HTTP status;
- an open connection that ends with any close code but 1000, or breaks:
  :class:`~actors._errors.ConnectionLost` with ``code`` and ``reason``;
- the peer closing with 1000 (RFC 6455 section 7.4.1, normal closure) is not an error:
  :meth:`WebSocket.receive` and :meth:`WebSocket.send` raise :class:`ClosedNormally`,
  which the session turns into a normal return. (An exception rather than a ``None``
  return: the end of a session unwinds the same way as its failures, and the hot path
  carries no extra check.)

Three things trio-websocket does not do for us:

1. **Fail the handshake at once when the peer hangs up.** trio-websocket waits for the
   upgrade answer forever if the server drops TCP first; the stream is watched
   (:class:`_WatchedStream`) and the handshake raced against its end, so it fails at
   once instead of at the connect deadline.
2. **Close cleanly in one round trip even when cancelled.** trio-websocket's reader task
   is what reads the peer's answer to our close frame. It runs in the caller's nursery
   (passed down) under a shielded scope (:class:`_ShieldedReaderNursery`), so a restart,
   stop or outer timeout that cancels the session does not cancel the reader; the
   closing handshake is shielded but bounded by ``close_timeout``, and the reader's scope
   is cancelled in a ``finally`` so it never outlives the socket.
3. **Close the socket on every path.** trio-websocket leaves the stream open when the
   handshake is rejected, times out or is cancelled, and when the peer closed first; we
   close it ourselves each time (a test counts file descriptors).

Liveness: :attr:`WebSocket.last_received` is when bytes last arrived, data or control
frames (an exchange's pings): the session's stale clock restarts there.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, Protocol

import trio
import trio_websocket
import wsproto.utilities

from actors._errors import ConnectError, HandshakeRejected
from actors.net._closing import NORMAL_CLOSURE, ClosedNormally, closed_by_peer
from actors.net._connect import Connector
from actors.net.fast_websocket import FastWebSocket, client_handshake
from actors.net.urls import redact_url, split_ws_url

__all__ = [
    "NORMAL_CLOSURE",
    "TRANSPORTS",
    "ClosedNormally",
    "ReferenceWebSocket",
    "WebSocket",
    "open_websocket",
]

#: The transports :func:`open_websocket` knows: ``fast`` (:mod:`actors.net.fast_websocket`)
#: and ``reference`` (trio-websocket, with wsproto's parser and its own reader task).
TRANSPORTS: Final = ("fast", "reference")

logger = logging.getLogger("marketprism.connection")

#: trio-websocket reads the socket in chunks of this size (its default is 4 KiB, which
#: costs one extra read per few frames on busy depth streams).
_RECEIVE_BUFFER: Final = 64 * 1024
#: Frames trio-websocket may hold between its reader and ours.
_MESSAGE_QUEUE: Final = 64


class _WatchedStream(trio.abc.Stream):
    """Forwards to a stream and records when it hits EOF or breaks, and when bytes came."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ended = trio.Event()
        #: trio time bytes last arrived (data or control frames such as pings).
        self.last_received = trio.current_time()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.ended.set()
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self.stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.ended.set()
            raise
        if data:
            self.last_received = trio.current_time()
        else:
            self.ended.set()
        return data

    async def aclose(self) -> None:
        self.ended.set()
        await self.stream.aclose()


class _ShieldedReaderNursery:
    """Looks like a nursery to trio-websocket; runs its reader task shielded.

    ``wrap_client_stream`` starts the reader in the nursery it is given; that reader is
    what receives the peer's answer to our close frame, so it must not be cancelled with
    the session (see the module docstring). The reader runs in the caller's nursery
    under :attr:`scope`, shielded, which :func:`open_websocket` cancels once the socket
    is closed. Only ``start_soon`` is provided: it is all trio-websocket uses.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.scope = trio.CancelScope(shield=True)
        #: The server's refusal of the upgrade, if it refused; set with :attr:`failed`.
        self.rejected: trio_websocket.ConnectionRejected | None = None
        self.failed = trio.Event()

    def start_soon(self, fn: Callable[[], Awaitable[object]]) -> None:
        self._nursery.start_soon(self._run, fn)

    async def _run(self, fn: Callable[[], Awaitable[object]]) -> None:
        with self.scope:
            try:
                await fn()
            except trio_websocket.ConnectionRejected as exc:
                # trio-websocket reports a refused upgrade by raising in its reader;
                # keep it here, where the handshake reads it, instead of letting it
                # tear down every task that shares the nursery.
                self.rejected = exc
                self.failed.set()
            except wsproto.utilities.LocalProtocolError as exc:
                # The reader tried to answer a ping that arrived while our close
                # handshake was under way (wsproto refuses a Pong then): the
                # connection is closing anyway, so this ends the reader, not the actor.
                logger.debug("WebSocket reader ended during close: %s", exc)


class WebSocket(Protocol):
    """One open client WebSocket, on either transport; owned by the task that opened it.

    Get one from :func:`open_websocket`. Messages are ``str`` (text) or ``bytes``
    (binary).
    """

    #: The URL this socket was opened to (may hold credentials: log it redacted).
    url: str

    @property
    def last_received(self) -> float:
        """trio time bytes last arrived: data or control frames (pings) alike."""

    async def receive(self) -> str | bytes:
        """The next message (see :meth:`ReferenceWebSocket.receive`)."""

    async def receive_batch(self) -> list[str | bytes]:
        """The next messages, at least one: all that one read of the socket completed
        on the fast transport, one on the reference transport. Raises as
        :meth:`receive`; atomic under cancellation."""

    async def send(self, frame: str | bytes) -> None:
        """Write one message (see :meth:`ReferenceWebSocket.send`)."""

    def ping(self, on_pong: Callable[[float], None]) -> None:
        """Send a ping; ``on_pong(seconds)`` gets its round trip."""

    async def abort(self) -> None:
        """Drop the socket without a closing handshake."""

    async def close(self, close_timeout: float) -> None:
        """Close with 1000, waiting at most ``close_timeout`` for the peer's answer."""


class ReferenceWebSocket:
    """One open client WebSocket on trio-websocket (``transport = "reference"``).

    Get one from :func:`open_websocket`. Frames are ``str`` (text) or ``bytes``
    (binary).
    """

    __slots__ = ("_nursery", "_ping_scope", "_stream", "_ws", "url")

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        stream: _WatchedStream,
        url: str,
        nursery: trio.Nursery,
    ) -> None:
        self._ws = ws
        self._stream = stream
        #: The URL this socket was opened to (may hold credentials: log it redacted).
        self.url = url
        self._nursery = nursery
        self._ping_scope: trio.CancelScope | None = None

    def ping(self, on_pong: Callable[[float], None]) -> None:
        """Send a WebSocket ping without waiting for its pong (RFC 6455 section 5.5.2:
        the peer must answer); ``on_pong(seconds)`` gets the round trip when it comes.

        At most one ping is in flight: a call while one is unanswered does nothing. The
        pong's bytes restart :attr:`last_received` like any frame. Closing the socket
        forgets an unanswered ping.
        """
        if self._ping_scope is None:
            self._ping_scope = trio.CancelScope()
            self._nursery.start_soon(self._ping, self._ping_scope, on_pong)

    async def _ping(self, scope: trio.CancelScope, on_pong: Callable[[float], None]) -> None:
        with scope:
            sent = trio.current_time()
            try:
                await self._ws.ping()
            except (trio_websocket.ConnectionClosed, trio.BrokenResourceError):
                return  # the session ends on its own; the ping just goes unanswered
            finally:
                self._ping_scope = None
            on_pong(trio.current_time() - sent)

    def _forget_ping(self) -> None:
        if self._ping_scope is not None:
            self._ping_scope.cancel(reason="WebSocket closed")

    @property
    def last_received(self) -> float:
        """trio time bytes last arrived: data or control frames (pings) alike."""
        return self._stream.last_received

    async def receive(self) -> str | bytes:
        """The next message from the peer.

        Raises:
            ClosedNormally: the peer closed with code 1000.
            ConnectionLost: the connection was closed with another code, or broke.

        Cancellation: atomic; a cancelled receive took no message.
        """
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise self._converted(exc) from exc

    async def receive_batch(self) -> list[str | bytes]:
        """The next message, in a list (trio-websocket hands them out one by one).

        Raises and cancellation: as :meth:`receive`.
        """
        return [await self.receive()]

    async def send(self, frame: str | bytes) -> None:
        """Write one message (text for ``str``, binary for ``bytes``).

        Raises:
            ClosedNormally: the peer had closed with code 1000.
            ConnectionLost: the connection is closed or broke.

        Cancellation: partial; the frame may have been sent in part, in which case the
        connection is unusable (the session ends anyway when cancelled).
        """
        try:
            await self._ws.send_message(frame)
        except trio_websocket.ConnectionClosed as exc:
            raise self._converted(exc) from exc

    async def abort(self) -> None:
        """Drop the socket without a closing handshake (a silent peer would not answer).

        Cancellation: none; the socket is closed at once.
        """
        self._forget_ping()
        await trio.aclose_forcefully(self._stream)

    async def close(self, close_timeout: float) -> None:
        """Close with 1000 and wait (shielded, at most ``close_timeout``) for the answer;
        then close the stream."""
        self._forget_ping()
        with trio.CancelScope(shield=True), trio.move_on_after(close_timeout):
            await self._ws.aclose(NORMAL_CLOSURE)
        # trio-websocket leaves the socket open when the peer closed first; the closing
        # handshake is over either way, so no TLS close_notify is owed.
        await trio.aclose_forcefully(self._stream)

    def _converted(self, exc: trio_websocket.ConnectionClosed) -> Exception:
        reason = exc.reason
        if reason is None:
            return closed_by_peer(None, "", self.url)
        return closed_by_peer(reason.code, reason.reason or "", self.url)


@contextlib.asynccontextmanager
async def open_websocket(
    nursery: trio.Nursery,
    url: str,
    *,
    connector: Connector,
    connect_timeout: float,
    max_message_size: int,
    close_timeout: float,
    transport: str = "fast",
) -> AsyncIterator[WebSocket]:
    """Connect and upgrade to a WebSocket; close it when the block is left.

    Args:
        nursery: where the socket's background tasks run (trio-websocket's reader,
            shielded, see the module docstring; the fast transport's pings). They are
            released when the block is left.
        url: ``ws://`` or ``wss://`` URL.
        connector: opens the stream under the WebSocket.
        connect_timeout: seconds connect and handshake together may take.
        max_message_size: larger messages close the connection with code 1009.
        close_timeout: seconds the closing handshake may take.
        transport: ``"fast"`` (:class:`~actors.net.fast_websocket.FastWebSocket`) or
            ``"reference"`` (:class:`ReferenceWebSocket`, trio-websocket).

    Raises:
        ConnectError: the connector failed, the peer hung up during the handshake, or
            connect + handshake took longer than ``connect_timeout``.
        HandshakeRejected: the server refused the upgrade with an HTTP status.
        ValueError: ``transport`` is not one of :data:`TRANSPORTS`.

    Cancellation: the socket is closed on every way out. Once open, leaving the block
    sends a close frame with code 1000 and waits for the answer, shielded but bounded
    by ``close_timeout``; call :meth:`WebSocket.abort` first to skip that.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    shown = redact_url(url)
    _, host, port, resource = split_ws_url(url)
    host_header = host if port in (80, 443) else f"{host}:{port}"
    reader = _ShieldedReaderNursery(nursery)
    try:
        with trio.move_on_after(connect_timeout) as deadline:
            try:
                stream = await connector(url)
            except OSError as exc:
                raise ConnectError(f"cannot connect to {shown}: {exc}") from exc
        if deadline.cancelled_caught:
            raise ConnectError(f"connecting to {shown} took longer than {connect_timeout:g} s")
        socket: WebSocket
        if transport == "fast":
            try:
                with trio.move_on_at(deadline.deadline) as deadline:
                    trailing = await client_handshake(stream, host_header, resource, url)
                if deadline.cancelled_caught:
                    raise ConnectError(
                        f"connecting to {shown} took longer than {connect_timeout:g} s"
                    )
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            socket = FastWebSocket(
                stream, url, nursery, max_message_size=max_message_size, trailing=trailing
            )
        else:
            watched = _WatchedStream(stream)
            try:
                with trio.move_on_at(deadline.deadline) as deadline:
                    ws = await _handshake(reader, watched, host_header, resource, max_message_size)
                if reader.rejected is not None:
                    status = reader.rejected.status_code
                    raise HandshakeRejected(
                        f"{shown} rejected the WebSocket upgrade with HTTP {status}",
                        status=status,
                    ) from reader.rejected
                if deadline.cancelled_caught:
                    raise ConnectError(
                        f"connecting to {shown} took longer than {connect_timeout:g} s"
                    )
                if ws is None:
                    raise ConnectError(
                        f"{shown} closed the connection during the WebSocket handshake"
                    )
            except BaseException:
                # Rejected, timed out, cancelled: trio-websocket does not close the
                # stream on any of these, so the socket would leak.
                await trio.aclose_forcefully(watched)
                raise
            socket = ReferenceWebSocket(ws, watched, url, nursery)
        try:
            yield socket
        finally:
            await socket.close(close_timeout)
    finally:
        reader.scope.cancel(reason="WebSocket closed")


async def _handshake(
    reader: _ShieldedReaderNursery,
    watched: _WatchedStream,
    host_header: str,
    resource: str,
    max_message_size: int,
) -> trio_websocket.WebSocketConnection | None:
    """The WebSocket upgrade; None if the peer hung up (or refused) before it finished."""
    ws: trio_websocket.WebSocketConnection | None = None
    async with trio.open_nursery() as race:

        async def watch(event: trio.Event, why: str) -> None:
            await event.wait()
            race.cancel_scope.cancel(reason=why)

        race.start_soon(watch, watched.ended, "stream ended during handshake")
        race.start_soon(watch, reader.failed, "upgrade rejected")
        ws = await trio_websocket.wrap_client_stream(
            reader,  # type: ignore[arg-type]  # only start_soon is used
            watched,  # type: ignore[arg-type]  # any trio Stream works
            host_header,
            resource,
            message_queue_size=_MESSAGE_QUEUE,
            max_message_size=max_message_size,
            receive_buffer_size=_RECEIVE_BUFFER,
        )
        race.cancel_scope.cancel(reason="handshake done")
    return ws
