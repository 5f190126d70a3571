"""httpx over an injected stream opener: the route (and TLS) decide how bytes reach a host.

Theory of operation
-------------------
httpx pools connections in httpcore's :class:`httpcore.AsyncConnectionPool`, which opens
them through a *network backend*: ``connect_tcp(host, port)`` returns a stream, and for
``https`` the pool then calls ``stream.start_tls(ssl_context, server_hostname)``. Through
a proxy chain, TLS must run end to end to the venue *inside* the tunnel, so only the
route's opener can do it. :class:`OpenerBackend` therefore defers the work:

- ``connect_tcp`` for an ``https`` client returns an unopened :class:`OpenerStream`
  holding the host and port; its ``start_tls`` calls the opener with the pool's TLS
  context and server name (which honours httpx's ``sni_hostname`` extension) and
  returns the opener's already-encrypted stream;
- for ``http`` ``connect_tcp`` calls the opener without TLS at once.

:class:`OpenerTransport` is the small httpx transport around such a pool (httpx's own
``AsyncHTTPTransport`` takes no backend): it converts requests and responses and maps
httpcore's exceptions to httpx's, the way ``httpx/_transports/default.py`` does.

The opener contract (shared with :mod:`actors.net.route`)::

    async def open_stream(host, port, *, ssl_context, server_hostname, timeout)
        -> trio.abc.Stream

It raises :class:`~actors._errors.ConnectError` (or ``OSError``) when it cannot connect,
and does the TLS handshake itself when ``ssl_context`` is given. :func:`open_direct_stream`
is the direct one.
"""

from __future__ import annotations

import contextlib
import math
import ssl
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol, final

import httpcore
import httpx
import trio

from actors._errors import ConnectError

__all__ = ["OpenStream", "OpenerBackend", "OpenerStream", "OpenerTransport", "open_direct_stream"]


class OpenStream(Protocol):
    """Opens a byte stream to ``host:port``, through whatever route it stands for."""

    def __call__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        timeout: float | None,
    ) -> Awaitable[trio.abc.Stream]: ...


async def open_direct_stream(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str | None,
    timeout: float | None,  # noqa: ASYNC109 (the opener contract)
) -> trio.abc.Stream:
    """Open TCP to ``host:port``, then TLS with ``ssl_context`` if one is given.

    Args:
        host: the host name or address.
        port: the TCP port.
        ssl_context: the TLS client context, or ``None`` for plain TCP.
        server_hostname: SNI and the name the certificate must carry (default ``host``).
        timeout: seconds for TCP and TLS together, ``None`` for no limit of its own.

    Returns:
        The connected stream; with TLS, the handshake has completed.

    Raises:
        ConnectError: DNS, TCP or TLS failed, or ``timeout`` passed (the cause is chained).

    Cancellation: may be partial; a half-open socket is closed on the way out.
    """
    where = f"{host}:{port}"
    with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
        try:
            tcp: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise ConnectError(f"cannot connect to {where}: {exc}") from exc
        if ssl_context is None:
            return tcp
        tls = trio.SSLStream(
            tcp, ssl_context, server_hostname=server_hostname or host, https_compatible=True
        )
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(tcp)
            raise ConnectError(f"TLS handshake with {where} failed: {exc.__cause__}") from exc
        except BaseException:
            await trio.aclose_forcefully(tcp)
            raise
        return tls
    assert scope.cancelled_caught
    raise ConnectError(f"connecting to {where} took longer than {timeout} s")


@final
class OpenerStream(httpcore.AsyncNetworkStream):
    """A trio stream as httpcore sees it; for ``https`` it opens itself in ``start_tls``."""

    def __init__(
        self,
        opener: OpenStream,
        host: str,
        port: int,
        stream: trio.abc.Stream | None = None,
    ) -> None:
        self._opener = opener
        self._host = host
        self._port = port
        self._stream = stream

    def _opened(self) -> trio.abc.Stream:
        if self._stream is None:
            raise httpcore.ReadError(f"stream to {self._host}:{self._port} was never opened")
        return self._stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            with trio.fail_after(math.inf if timeout is None else timeout):
                return bytes(await self._opened().receive_some(max_bytes))
        raise AssertionError("unreachable")  # pragma: no cover (mypy: the with may swallow)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            with trio.fail_after(math.inf if timeout is None else timeout):
                await self._opened().send_all(buffer)

    async def aclose(self) -> None:
        if self._stream is not None:
            await trio.aclose_forcefully(self._stream)

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        if self._stream is not None:
            raise RuntimeError("start_tls on an open stream: TLS is the opener's job")
        self._stream = await _open(
            self._opener, self._host, self._port, ssl_context, server_hostname, timeout
        )
        return self

    def get_extra_info(self, info: str) -> Any:
        stream = self._stream
        if info == "ssl_object":
            # httpcore asks for the negotiated ALPN protocol; trio keeps the SSLObject
            # private (python-trio/trio#542), as httpcore's own trio backend notes.
            return stream._ssl_object if isinstance(stream, trio.SSLStream) else None
        socket = _socket_of(stream)
        if info == "is_readable":
            # An idle pooled connection that became readable was closed by the server.
            return socket is not None and socket.is_readable()
        if info == "socket":
            return socket
        if info == "server_addr" and socket is not None:
            return socket.getpeername()
        if info == "client_addr" and socket is not None:
            return socket.getsockname()
        return None


def _socket_of(stream: trio.abc.Stream | None) -> Any:
    """The socket under TLS layers (python-socks' streams are trio SocketStreams too)."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream.socket if isinstance(stream, trio.SocketStream) else None


@contextlib.contextmanager
def _mapped(timeout: type[Exception], broken: type[Exception]) -> Iterator[None]:
    """Map trio's timeout and broken/closed errors to httpcore's."""
    try:
        yield
    except trio.TooSlowError as exc:
        raise timeout(str(exc)) from exc
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        raise broken(str(exc) or type(exc).__name__) from exc


async def _open(
    opener: OpenStream,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str | None,
    timeout: float | None,  # noqa: ASYNC109 (the opener contract)
) -> trio.abc.Stream:
    try:
        return await opener(
            host, port, ssl_context=ssl_context, server_hostname=server_hostname, timeout=timeout
        )
    except (ConnectError, OSError) as exc:
        raise httpcore.ConnectError(str(exc)) from exc


@final
class OpenerBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend over an opener.

    Args:
        opener: opens streams (direct, or through the route's proxies).
        tls: whether the pool's origin is ``https`` (then TLS waits for ``start_tls``).
    """

    def __init__(self, opener: OpenStream, *, tls: bool) -> None:
        self._opener = opener
        self._tls = tls

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._tls:
            return OpenerStream(self._opener, host, port)
        stream = await _open(self._opener, host, port, None, None, timeout)
        return OpenerStream(self._opener, host, port, stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("REST clients do not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


# httpcore's exceptions, most specific first, and what httpx calls them.
_EXCEPTIONS: list[tuple[type[Exception], type[httpx.HTTPError]]] = [
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProtocolError, httpx.ProtocolError),
]


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """Re-raise httpcore's exceptions as httpx's."""
    try:
        yield
    except Exception as exc:
        for theirs, ours in _EXCEPTIONS:
            if isinstance(exc, theirs):
                raise ours(str(exc)) from exc
        raise


@final
class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: typing.AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close: Callable[[], Awaitable[None]] | None = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


@final
class OpenerTransport(httpx.AsyncBaseTransport):
    """An httpx transport: one pool of HTTP/1.1 connections, opened through ``opener``.

    Args:
        opener: opens streams.
        ssl_context: TLS settings for ``https`` origins (verification is the context's).
        tls: whether the origin is ``https``.
        max_connections: connections kept open at once.
        keepalive_expiry: seconds an idle connection stays in the pool.
    """

    def __init__(
        self,
        opener: OpenStream,
        *,
        ssl_context: ssl.SSLContext,
        tls: bool,
        max_connections: int,
        keepalive_expiry: float,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
            network_backend=OpenerBackend(opener, tls=tls),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core)
        assert isinstance(response.stream, typing.AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
