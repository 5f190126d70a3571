"""A fake venue REST server: real HTTP/1.1 (h11) over loopback TCP or TLS, scripted.

Theory of operation
-------------------
:func:`open_fake_rest` owns one nursery: the accept loop on ``127.0.0.1`` (wrapped in
TLS when given a server context, e.g. a trustme certificate) and one task per
connection. Each connection task owns its stream and one ``h11.Connection``: it reads a
request, answers it, and starts the next cycle, so a client's keep-alive connection
serves many requests (:attr:`FakeRest.accepts` counts TCP connections, which is how
tests prove pooling). A connection that breaks (a client refusing our certificate, a
client cancelled mid-request) ends that task only.

Answers, in order of precedence:

1. the next one-shot :class:`Reply` scripted for the path (:meth:`FakeRest.script`);
2. the weight budget (:meth:`FakeRest.weigh`): like Binance, the fake counts weight per
   fixed window of the Trio clock, reports it in the used-weight header on every
   answer, and answers 429 with ``Retry-After`` (seconds to the next window) to a
   request that would exceed it (rest-api.md, LIMITS);
3. the path's standing :class:`Reply` (:meth:`FakeRest.route`);
4. the path's handler (:meth:`FakeRest.serve_path`), which answers from the query: a
   :class:`Reply`, or a JSON body sent with 200. :meth:`FakeRest.serve_books` routes a
   fake venue's book endpoint to its true book (``/api/v3/depth`` to a
   :class:`FakeBinance`, ``/fapi/v1/depth`` to a :class:`FakeBinanceUsdm`,
   ``/api/v5/market/books`` to a :class:`FakeOkx`), so that a client syncing a book
   from REST gets the same book the fake's WebSocket diffs change;
5. else 404 with Binance's ``{"code": -1, ...}``-shaped body.

Venue endpoints (:meth:`FakeRest.serve_venue`): a venue's server-time and instrument
list, shaped like the recorded bodies in ``tests/data/rest/`` (``binance_time.json``,
``okx_time.json``, ``deribit_get_time.json``; the instrument lists follow each venue's
documentation, see ``tests/data/rest/SOURCES.md``). The time is computed per request
from :data:`DEFAULT_EPOCH` plus the Trio clock plus the venue's ``offset``, so a test
knows the clock offset the client must find exactly.

A :class:`Reply` may be slow (``delay``, slept on the Trio clock, so autojump tests
stay exact) or close the connection after answering. Every answer carries a ``Date``
header computed from :data:`DEFAULT_EPOCH` plus the Trio clock, so HTTP-date
``Retry-After`` values can be tested without a wall clock.

Every observable change wakes :meth:`FakeRest.wait_until`; tests wait for state, not
for time.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import math
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, final
from urllib.parse import parse_qsl, urlsplit

import h11
import msgspec
import trio

from supervisor.testing.fakes import binance as _binance
from supervisor.testing.fakes import okx as _okx

__all__ = [
    "BOOK_PATHS",
    "DEFAULT_EPOCH",
    "VENUE_PATHS",
    "FakeRest",
    "RecordedRequest",
    "Reply",
    "open_fake_rest",
]

#: The fake's wall clock at Trio time 0 (for ``Date`` and HTTP-date ``Retry-After``).
DEFAULT_EPOCH: Final = datetime.datetime(2026, 11, 2, tzinfo=datetime.UTC)

_MAX_REQUEST_BYTES: Final = 65536

#: Each book-serving fake's REST book path (:meth:`FakeRest.serve_books`).
BOOK_PATHS: Final[Mapping[str, str]] = {
    "binance": "/api/v3/depth",
    "binance_usdm": "/fapi/v1/depth",
    "okx": "/api/v5/market/books",
}

#: Each venue's (server-time path, instrument-list path), as its adapter calls them.
VENUE_PATHS: Final[Mapping[str, tuple[str, str]]] = {
    "binance": ("/api/v3/time", "/api/v3/exchangeInfo"),
    "binance_usdm": ("/fapi/v1/time", "/fapi/v1/exchangeInfo"),
    "okx": ("/api/v5/public/time", "/api/v5/public/instruments"),
    "deribit": ("/api/v2/public/get_time", "/api/v2/public/get_instruments"),
    "bybit": ("/v5/market/time", "/v5/market/instruments-info"),
}


def _time_body(venue: str, seconds: float) -> Any:
    """A server-time answer carrying Unix time ``seconds`` (recorded shapes)."""
    ms = round(seconds * 1000)
    if venue in ("binance", "binance_usdm"):
        return {"serverTime": ms}
    if venue == "okx":
        return {"code": "0", "msg": "", "data": [{"ts": str(ms)}]}
    if venue == "deribit":
        return {"jsonrpc": "2.0", "id": 1, "result": ms}
    nano = round(seconds * 1e9)
    return {
        "retCode": 0,
        "retMsg": "OK",
        "result": {"timeSecond": str(nano // 10**9), "timeNano": str(nano)},
        "retExtInfo": {},
        "time": ms,
    }


def _instruments_body(venue: str, symbols: list[str], seconds: float) -> Any:
    """An instrument list naming ``symbols`` (each venue's documented shape, trimmed)."""
    ms = round(seconds * 1000)
    if venue in ("binance", "binance_usdm"):
        return {
            "timezone": "UTC",
            "serverTime": ms,
            "symbols": [{"symbol": s, "status": "TRADING"} for s in symbols],
        }
    if venue == "okx":
        return {"code": "0", "msg": "", "data": [{"instId": s, "state": "live"} for s in symbols]}
    if venue == "deribit":
        return {
            "jsonrpc": "2.0",
            "result": [{"instrument_name": s, "is_active": True} for s in symbols],
        }
    return {
        "retCode": 0,
        "retMsg": "OK",
        "result": {
            "list": [{"symbol": s, "status": "Trading"} for s in symbols],
            "nextPageCursor": "",
        },
        "time": ms,
    }


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class Reply:
    """One scripted answer.

    Attributes:
        status: the HTTP status.
        body: a JSON-encodable value, or ``bytes`` sent as they are.
        headers: extra headers (``Retry-After``, ...).
        delay: seconds (Trio clock) before the answer is sent.
        close: close the connection after answering.
    """

    status: int = 200
    body: Any = dataclasses.field(default_factory=dict)
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0
    close: bool = False


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class RecordedRequest:
    """A request the fake received.

    Attributes:
        method: the HTTP method.
        path: the path without the query.
        query: the query parameters.
        at: the Trio time the request was complete.
        connection: which accepted connection it came on (1 for the first).
        peer: the client's address as the fake saw it.
    """

    method: str
    path: str
    query: dict[str, str]
    at: float
    connection: int
    peer: str


@final
class FakeRest:
    """The server's state: routes, scripts, budget and what it saw (see the module doc).

    Attributes:
        url: ``http://127.0.0.1:PORT`` or ``https://...``.
        accepts: TCP connections accepted so far.
        requests: every request received, in order.
        statuses: the status of every answer sent, in order.
        used: weight counted in the current window (settable, to model other users).
        accept_delay: seconds (Trio clock) a new connection waits before it is served;
            over TLS the client's handshake waits that long, like a far venue's.
    """

    def __init__(self) -> None:
        self.url = ""
        self.accepts = 0
        self.accept_delay = 0.0
        self.requests: list[RecordedRequest] = []
        self.statuses: list[int] = []
        self.used = 0
        self._routes: dict[str, Reply] = {}
        self._scripts: dict[str, list[Reply]] = {}
        self._weights: dict[str, int] = {}
        self._weight_header = ""
        self._limit = 0
        self._window = math.inf
        self._window_index = 0.0
        self._changed = trio.Event()
        #: path -> the body for the fake's Unix time then (venue endpoints).
        self._dynamic: dict[str, Callable[[float], Any]] = {}
        #: path -> what answers a request's query (:meth:`serve_path`).
        self._handlers: dict[str, Callable[[dict[str, str]], Any]] = {}

    def serve_venue(self, venue: str, symbols: list[str], *, offset: float = 0.0) -> None:
        """Answer ``venue``'s server-time and instrument-list paths.

        Args:
            venue: a key of :data:`VENUE_PATHS`.
            symbols: the native names the instrument list holds (for every query).
            offset: seconds the venue's clock runs ahead of the fake's ``Date`` clock
                (:data:`DEFAULT_EPOCH` plus the Trio clock).
        """
        time_path, instruments_path = VENUE_PATHS[venue]
        listed = list(symbols)
        self._dynamic[time_path] = lambda now: _time_body(venue, now + offset)
        self._dynamic[instruments_path] = lambda now: _instruments_body(venue, listed, now + offset)

    def serve_path(self, path: str, handler: Callable[[dict[str, str]], Any]) -> None:
        """Answer ``path`` with ``handler(query)``: a :class:`Reply`, or a body sent with 200.

        A script or a standing :meth:`route` for the path still goes first, and the
        request is recorded and weighed like any other.
        """
        self._handlers[path] = handler

    def serve_books(self, fake: _binance.FakeBinance | _okx.FakeOkx) -> None:
        """Serve ``fake``'s REST book endpoint from its true books.

        ``/api/v3/depth?symbol=&limit=`` for a :class:`FakeBinance`,
        ``/fapi/v1/depth?symbol=&limit=`` for a :class:`FakeBinanceUsdm`,
        ``/api/v5/market/books?instId=&sz=`` for a :class:`FakeOkx`; each answers as the
        venue does (:meth:`FakeBinance.depth_request`, :meth:`FakeOkx.books_request`),
        errors included.
        """
        if isinstance(fake, _okx.FakeOkx):
            answer, path = fake.books_request, BOOK_PATHS["okx"]
        else:
            answer = fake.depth_request
            path = BOOK_PATHS[
                "binance_usdm" if isinstance(fake, _binance.FakeBinanceUsdm) else "binance"
            ]

        def handler(query: dict[str, str]) -> Reply:
            status, body = answer(query)
            return Reply(status=status, body=body)

        self.serve_path(path, handler)

    def route(self, path: str, reply: Reply) -> None:
        """Answer every request for ``path`` with ``reply`` (unless a script says else)."""
        self._routes[path] = reply

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests for ``path`` with ``replies``, one each, in order."""
        self._scripts.setdefault(path, []).extend(replies)

    def weigh(
        self,
        weights: Mapping[str, int],
        *,
        limit: int,
        window: float = 60.0,
        header: str = "X-MBX-USED-WEIGHT-1M",
    ) -> None:
        """Count weight like Binance: ``limit`` per fixed ``window`` of the Trio clock.

        Args:
            weights: weight per path (unlisted paths weigh 1).
            limit: weight allowed per window; a request over it gets 429.
            window: the window in seconds (windows start at multiples of it).
            header: the header that reports the weight used in the current window.
        """
        self._weights = dict(weights)
        self._limit = limit
        self._window = window
        self._weight_header = header

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true (checked after every change)."""
        while not predicate():
            await self._changed.wait()

    def _touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _answer(self, path: str, query: dict[str, str]) -> tuple[Reply, dict[str, str]]:
        """The reply for ``path`` and the budget's headers, counting its weight."""
        headers: dict[str, str] = {}
        script = self._scripts.get(path)
        if script:
            return script.pop(0), headers
        if self._weight_header:
            now = trio.current_time()
            index = math.floor(now / self._window)
            if index != self._window_index:
                self._window_index, self.used = index, 0
            weight = self._weights.get(path, 1)
            if self.used + weight > self._limit:
                # Binance counts rejected requests too (rest-api.md, LIMITS).
                self.used += weight
                headers[self._weight_header] = str(self.used)
                wait = math.ceil((index + 1) * self._window - now)
                body = {
                    "code": -1003,
                    "msg": f"Too much request weight used; current limit is {self._limit} "
                    "request weight per 1 MINUTE. Please use WebSocket Streams for live "
                    "updates to avoid polling the API.",
                }
                return Reply(status=429, body=body, headers={"Retry-After": str(wait)}), headers
            self.used += weight
            headers[self._weight_header] = str(self.used)
        reply = self._routes.get(path)
        handler = self._handlers.get(path)
        if reply is None and handler is not None:
            answer = handler(query)
            reply = answer if isinstance(answer, Reply) else Reply(body=answer)
        render = self._dynamic.get(path)
        if reply is None and render is not None:
            reply = Reply(body=render(DEFAULT_EPOCH.timestamp() + trio.current_time()))
        if reply is None:
            reply = Reply(status=404, body={"code": -1, "msg": f"no route {path}"})
        return reply, headers

    async def _serve(self, stream: trio.abc.Stream) -> None:
        self.accepts += 1
        number = self.accepts
        self._touch()
        peer = _peer(stream)
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_REQUEST_BYTES)
        try:
            while True:
                request = await _next_request(stream, connection)
                if request is None:
                    return
                parts = urlsplit(request.target.decode("ascii"))
                query = dict(parse_qsl(parts.query))
                self.requests.append(
                    RecordedRequest(
                        method=request.method.decode("ascii"),
                        path=parts.path,
                        query=dict(query),
                        at=trio.current_time(),
                        connection=number,
                        peer=peer,
                    )
                )
                self._touch()
                reply, headers = self._answer(parts.path, query)
                if reply.delay:
                    await trio.sleep(reply.delay)
                await _send(stream, connection, reply, headers)
                self.statuses.append(reply.status)
                self._touch()
                if reply.close or connection.our_state is h11.MUST_CLOSE:
                    return
                connection.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await trio.aclose_forcefully(stream)
            self._touch()


def _peer(stream: trio.abc.Stream) -> str:
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        host, port, *_ = stream.socket.getpeername()
        return f"{host}:{port}"
    return ""


async def _next_request(stream: trio.abc.Stream, connection: h11.Connection) -> h11.Request | None:
    """The next complete request (body read and dropped), or ``None`` at EOF."""
    request: h11.Request | None = None
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            connection.receive_data(bytes(data))
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


async def _send(
    stream: trio.abc.Stream, connection: h11.Connection, reply: Reply, extra: Mapping[str, str]
) -> None:
    body = reply.body if isinstance(reply.body, bytes) else msgspec.json.encode(reply.body)
    now = DEFAULT_EPOCH + datetime.timedelta(seconds=trio.current_time())
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Date": email.utils.format_datetime(now, usegmt=True),
        **extra,
        **reply.headers,
    }
    if reply.close:
        headers["Connection"] = "close"
    out = connection.send(h11.Response(status_code=reply.status, headers=list(headers.items())))
    out += connection.send(h11.Data(data=body)) or b""
    out += connection.send(h11.EndOfMessage()) or b""
    await stream.send_all(out or b"")


@asynccontextmanager
async def open_fake_rest(*, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[FakeRest]:
    """Run a fake REST server on a free loopback port for the ``async with`` body.

    Args:
        ssl_context: a server TLS context (e.g. from a trustme certificate for
            ``127.0.0.1``); plain HTTP without one.

    Yields:
        The fake; its :attr:`FakeRest.url` is set.

    Cancellation: leaving the body closes the listener and every connection.
    """
    fake = FakeRest()
    listeners: list[trio.abc.Listener[Any]] = list(
        await trio.open_tcp_listeners(0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]  # type: ignore[attr-defined]
    if ssl_context is not None:
        listeners = [
            trio.SSLListener(listener, ssl_context, https_compatible=True) for listener in listeners
        ]
    fake.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    async def handle(stream: trio.abc.Stream) -> None:
        await trio.sleep(fake.accept_delay)
        await fake._serve(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel(reason="fake REST server closed")
