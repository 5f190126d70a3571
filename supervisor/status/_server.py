"""The status HTTP server: /status, /metrics, /healthz, /livez, /readyz, on Trio and h11.

Theory of operation
-------------------
:func:`serve_status` binds one listening socket on exactly the address it is given
(:func:`bind_status`) and accepts connections on it; each connection gets its own task,
which owns the socket and one ``h11.Connection`` (sans-IO HTTP/1.1) and closes the
socket on the way out. No threads: a scrape's JSON or text is built in the request task
from one ``await sup.stats()`` snapshot.

Per connection, requests are served one after another (keep-alive). Each request must
arrive whole within :data:`DEFAULT_READ_TIMEOUT` seconds of the server starting to wait
for it, and the answer must be taken within :data:`DEFAULT_WRITE_TIMEOUT`; an idle
keep-alive connection is closed silently after the read timeout, one that stopped in the
middle of a request gets ``408``. A request's head is bounded by h11's
``max_incomplete_event_size`` (:data:`DEFAULT_MAX_HEAD`), its header count by
:data:`DEFAULT_MAX_HEADERS` and its body by :data:`DEFAULT_MAX_BODY`. Every error answer
(400, 404, 405, 408, 413, 431) is JSON; the protocol-level ones (400, 408, 413, 431)
carry ``Connection: close`` and end the connection, because the stream may be out of
step. A client that misbehaves costs its own connection only: the listener and every
other connection keep running.

Cancellation: cancelling :func:`serve_status` closes the listener and every connection
(their tasks live in its nursery); a response may be cut short.
"""

from __future__ import annotations

import errno
import http
import socket
from typing import TYPE_CHECKING, Final, NoReturn

import h11
import msgspec
import trio

from supervisor.status._health import Verdict, health, readiness
from supervisor.status._metrics import render_metrics

if TYPE_CHECKING:
    from actors.registry import Stats
    from supervisor.tree import Supervisor

__all__ = [
    "StatusAddressInUse",
    "bind_status",
    "serve_status",
    "serve_status_listener",
    "status_document",
]

#: Seconds a client has to send one whole request (head and body) once the server waits
#: for it; also how long an idle keep-alive connection is kept. Prometheus' default
#: scrape_timeout is 10 s, and a kubelet probe's timeoutSeconds defaults to 1 s.
DEFAULT_READ_TIMEOUT: Final = 10.0
#: Seconds a client has to take one whole response.
DEFAULT_WRITE_TIMEOUT: Final = 10.0
#: Bytes of request line and headers: h11's own default (16 KiB), stated here.
DEFAULT_MAX_HEAD: Final = 16 * 1024
#: Header fields in one request; curl, Prometheus and kubelet send fewer than ten.
DEFAULT_MAX_HEADERS: Final = 64
#: Bytes of request body: GET and HEAD have none that means anything (RFC 9110 9.3.1).
DEFAULT_MAX_BODY: Final = 4096
#: Connections served at once; more wait in the listen backlog until one ends. A scraper
#: and a few probes and curls need a handful; the cap bounds what a misbehaving client
#: can hold (each open connection costs a task and a socket until its read timeout).
DEFAULT_MAX_CONNECTIONS: Final = 64
#: Bytes read from the socket at a time.
_RECEIVE_SIZE: Final = 4096
#: How long, and how many bytes, to keep reading after an error answer (see _linger).
_LINGER_SECONDS: Final = 2.0
_LINGER_BYTES: Final = 256 * 1024
#: The paths served, in the order a 404 lists them.
ENDPOINTS: Final = ("/status", "/metrics", "/healthz", "/livez", "/readyz")

_JSON: Final = b"application/json"
#: The text exposition format 0.0.4, which every Prometheus (2.x and 3.x) and every
#: scraper that speaks it reads; ``generate_latest`` writes exactly that for names and
#: labels that need no escaping, as ours do (prometheus_client's own CONTENT_TYPE_LATEST
#: says ``version=1.0.0`` since 0.22, which older scrapers do not know).
_PROMETHEUS_TEXT: Final = b"text/plain; version=0.0.4; charset=utf-8"
_encoder: Final = msgspec.json.Encoder()


class StatusAddressInUse(OSError):
    """The status endpoint's address is taken by another socket.

    An ``OSError`` with ``errno.EADDRINUSE``, so code that handles bind failures in
    general still catches it.

    Attributes:
        host: the host it was asked to bind.
        port: the port it was asked to bind.
    """

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            errno.EADDRINUSE,
            f"cannot serve the status endpoint on {_hostport(host, port)}: the address is "
            "already in use (another marketprism, or another program, listens there); "
            "stop it or choose another port",
        )
        self.host = host
        self.port = port

    def __str__(self) -> str:
        return str(self.strerror)


async def bind_status(host: str, port: int) -> trio.SocketListener:
    """Bind and listen on ``host``:``port`` only (the first address ``host`` resolves to).

    Args:
        host: an address or name, e.g. ``127.0.0.1``, ``::1`` or ``localhost``.
        port: the port; 0 lets the system pick a free one.

    Returns:
        The listener; the caller owns it (``serve_status_listener`` closes it).

    Raises:
        StatusAddressInUse: something else listens on that address.
        OSError: ``host`` does not resolve, or is not an address of this machine.

    Cancellation: atomic; a socket created before the cancellation is closed.
    """
    try:
        infos = await trio.socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise OSError(
            exc.errno,
            f"cannot serve the status endpoint on {_hostport(host, port)}: "
            f"{host!r} does not resolve ({exc.strerror})",
        ) from exc
    family, type_, proto, _, address = infos[0]
    sock = trio.socket.socket(family, type_, proto)
    try:
        # As trio.open_tcp_listeners does: a restarted process can bind again at once
        # despite connections of the previous one in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            await sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StatusAddressInUse(host, port) from exc
            raise OSError(
                exc.errno,
                f"cannot serve the status endpoint on {_hostport(host, port)}: {exc.strerror}",
            ) from exc
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def serve_status(
    sup: Supervisor,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``sup``'s status over HTTP/1.1 on ``host``:``port`` until cancelled.

    ``GET`` (and ``HEAD``) of:

    - ``/status``: ``{"at": T, "connections": {NAME: ConnectionStats, ...}}`` as JSON;
    - ``/metrics``: Prometheus text exposition, names prefixed ``marketprism_``;
    - ``/healthz``: 200 when every permanent connection (every connection, if none is
      permanent) is live and none of its subscriptions is failed or silent, else 503;
    - ``/livez``: 200 until the supervisor has stopped (given up, or finished), else 503;
    - ``/readyz``: 200 when every permanent connection has connected once and is live
      or reconnecting (not ``failed`` or ``stopped``), else 503.

    The probes answer ``{"status": ..., "at": T, "reasons": [...]}``.

    Args:
        sup: the running supervisor (from :func:`~supervisor.open_supervisor`).
        host: the one address to listen on, e.g. ``127.0.0.1``.
        port: the port; 0 picks a free one.
        task_status: started with ``(host, port)`` as bound, once the socket listens.

    Raises:
        StatusAddressInUse: the address is taken (raised before ``started``).
        OSError: ``host`` does not resolve or is not local (before ``started``).

    Cancellation: the listener and every open connection are closed.
    """
    listener = await bind_status(host, port)
    await serve_status_listener(sup, listener, task_status=task_status)


async def serve_status_listener(
    sup: Supervisor,
    listener: trio.SocketListener,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """:func:`serve_status` on a listener from :func:`bind_status`, which it then owns.

    For callers that must know the port is theirs before starting anything else (the
    CLI binds first, then opens the supervisor, then serves).

    Args:
        sup: the running supervisor.
        listener: from :func:`bind_status`; closed when this returns or is cancelled.
        task_status: started with ``(host, port)`` of the listener.

    Cancellation: the listener and every open connection are closed.
    """
    async with listener, trio.open_nursery() as nursery:
        sockname = listener.socket.getsockname()
        task_status.started((str(sockname[0]), int(sockname[1])))
        slots = trio.Semaphore(DEFAULT_MAX_CONNECTIONS)
        while True:
            await slots.acquire()
            try:
                stream = await listener.accept()
            except OSError:
                slots.release()
                # EMFILE/ENFILE and friends: trio.serve_listeners waits and retries too.
                await trio.sleep(0.1)
                continue
            nursery.start_soon(_serve_connection, sup, stream, slots)


class _Close(Exception):
    """End this connection (the peer went away, timed out, or broke the protocol)."""


class _Linger(Exception):
    """End this connection after an error answer, reading what the peer still sends."""


async def _serve_connection(
    sup: Supervisor, stream: trio.SocketStream, slots: trio.Semaphore
) -> None:
    try:
        await _serve_stream(sup, stream)
    finally:
        slots.release()


async def _serve_stream(sup: Supervisor, stream: trio.SocketStream) -> None:
    async with stream:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=DEFAULT_MAX_HEAD)
        try:
            while True:
                await _serve_one(sup, stream, conn)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except _Linger:
            await _linger(stream)
        except (_Close, trio.BrokenResourceError, trio.ClosedResourceError):
            return


async def _linger(stream: trio.SocketStream) -> None:
    """Half-close, then read and discard until the peer closes (bounded in time and bytes).

    Closing a socket with unread input makes the kernel send a reset, and a reset can
    destroy the error answer before the client has read it (RFC 9112 9.6, "lingering
    close"); draining first lets the answer arrive.
    """
    received = 0
    with trio.move_on_after(_LINGER_SECONDS):
        try:
            await stream.send_eof()
            while received < _LINGER_BYTES:
                chunk = await stream.receive_some(_RECEIVE_SIZE)
                if not chunk:
                    return
                received += len(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


async def _serve_one(sup: Supervisor, stream: trio.SocketStream, conn: h11.Connection) -> None:
    """Read one request and answer it."""
    request, error = await _receive_request(stream, conn)
    if error is not None:
        status, why = error
        await _error(stream, conn, status, why)
        return
    assert request is not None
    status, headers, payload = await _route(sup, request)
    headers = [*headers, (b"content-length", str(len(payload)).encode())]
    # HEAD: the same head as GET (Content-Length included), no body (RFC 9110 9.3.2).
    await _send(stream, conn, status, headers, b"" if request.method == b"HEAD" else payload)


async def _receive_request(
    stream: trio.SocketStream, conn: h11.Connection
) -> tuple[h11.Request | None, tuple[int, str] | None]:
    """The next whole request, or the error status to answer instead.

    Raises:
        _Close: the peer closed, or an idle keep-alive connection timed out.
    """
    request: h11.Request | None = None
    body = 0
    with trio.move_on_after(DEFAULT_READ_TIMEOUT):
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(_RECEIVE_SIZE))
                elif isinstance(event, h11.Request):
                    request = event
                    if len(event.headers) > DEFAULT_MAX_HEADERS:
                        return None, (431, "too many header fields")
                elif isinstance(event, h11.Data):
                    body += len(event.data)
                    if body > DEFAULT_MAX_BODY:
                        return None, (413, "request body too large")
                elif isinstance(event, h11.EndOfMessage):
                    return request, None
                else:  # ConnectionClosed (PAUSED cannot happen: we answer each request)
                    raise _Close
        except h11.RemoteProtocolError as exc:
            return None, (exc.error_status_hint, f"bad request: {exc}")
    if request is None and not conn.trailing_data[0]:
        raise _Close  # an idle keep-alive connection: close without a word
    return None, (408, "request not received in time")


async def _route(
    sup: Supervisor, request: h11.Request
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    path = request.target.split(b"?", 1)[0].decode("ascii", "replace")
    if path not in ENDPOINTS:
        return _json(404, {"error": "not found", "path": path, "endpoints": list(ENDPOINTS)})
    if request.method not in (b"GET", b"HEAD"):
        status, headers, payload = _json(
            405,
            {
                "error": "method not allowed",
                "method": request.method.decode("ascii", "replace"),
                "allow": ["GET", "HEAD"],
            },
        )
        return status, [*headers, (b"allow", b"GET, HEAD")], payload
    stats = await sup.stats()
    if path == "/status":
        return _json(200, status_document(stats))
    if path == "/metrics":
        return 200, [(b"content-type", _PROMETHEUS_TEXT)], render_metrics(stats)
    verdict: Verdict
    if path == "/healthz":
        verdict = health(sup.config, stats)
    elif path == "/readyz":
        verdict = readiness(sup.config, stats, running=not sup.finished.is_set())
    else:  # /livez
        verdict = _liveness(sup, stats.at)
    return _json(200 if verdict.ok else 503, verdict)


def status_document(stats: Stats) -> dict[str, object]:
    """The ``/status`` body: ``stats`` with its connections keyed by name.

    Every other field of :class:`~actors.registry.Stats` (``at``, and whatever totals it
    grows) is carried over as it is, so a new stats field needs no change here.
    """
    document: dict[str, object] = {name: getattr(stats, name) for name in stats.__struct_fields__}
    document["connections"] = {conn.name: conn for conn in stats.connections}
    return document


def _liveness(sup: Supervisor, at: float) -> Verdict:
    if not sup.finished.is_set():
        return Verdict(status="ok", at=at)
    if sup.fatal is not None:
        return Verdict(status=f"gave up: {sup.fatal}", at=at)
    return Verdict(status="stopped", at=at)


def _json(status: int, body: object) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return status, [(b"content-type", _JSON)], _encoder.encode(body) + b"\n"


async def _error(stream: trio.SocketStream, conn: h11.Connection, status: int, why: str) -> None:
    """Answer ``status`` with ``Connection: close`` if a response can still be sent."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        raise _Close
    _, headers, payload = _json(status, {"error": why})
    headers = [
        *headers,
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    await _send(stream, conn, status, headers, payload)
    raise _Linger


async def _send(
    stream: trio.SocketStream,
    conn: h11.Connection,
    status: int,
    headers: list[tuple[bytes, bytes]],
    payload: bytes,
) -> None:
    data = bytearray()
    for event in (
        h11.Response(
            status_code=status, headers=headers, reason=http.HTTPStatus(status).phrase.encode()
        ),
        h11.Data(data=payload),
        h11.EndOfMessage(),
    ):
        if isinstance(event, h11.Data) and not payload:
            continue
        chunk = conn.send(event)
        if chunk:
            data += chunk
    with trio.move_on_after(DEFAULT_WRITE_TIMEOUT) as deadline:
        await stream.send_all(data)
    if deadline.cancelled_caught:
        raise _Close


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
