"""The REST client: one pooled httpx client per host, paced, retried, held, typed.

Theory of operation
-------------------
A :class:`RestClient` belongs to one venue and one origin (``https://api.binance.com``).
It owns one ``httpx.AsyncClient`` whose transport opens its connections through the
route's opener (:mod:`actors.net.rest._transport`), so REST takes the same proxies and
TLS settings as the WebSockets, and keeps them pooled (HTTP/1.1 keep-alive).

Every call goes through one loop, :meth:`RestClient.request`:

1. *Slot.* The host's :class:`~actors.net.rest._limits.HostLimiter` says when the
   request may go (after any hold, within the venue's budget); the call sleeps until
   then. A wait longer than the caller's ``max_wait`` raises :class:`RateLimited`
   instead (nothing is sent). A hold that starts while the call sleeps sends it back
   for a new slot.
2. *Attempt.* One HTTP exchange, cut at ``timeouts.total``.
3. *Answer.* The limiter sees every answer (used-weight header, 429/418, rate-limit
   codes in the body). A hold is never slept off here: the next attempt's slot waits
   for it, like every other request to the host. A 5xx, a broken or timed-out exchange
   of an idempotent request (GET, HEAD), and any failure to connect (nothing was sent)
   are retried after a capped, jittered exponential backoff; other errors raise
   :class:`RestError` at once.

After ``retry.attempts`` attempts the last failure is raised as one error (a
:class:`RestError`, :class:`~actors._errors.ConnectError` or
:class:`~actors._errors.ConnectionLost`) from an ``ExceptionGroup`` of every attempt's.

:class:`RestClients` is the holder that makes "one client, one budget per host" true
across a supervisor: connections' adapters and a user's bot ask it for the same
(venue, origin, route, TLS) and get the same client; one limiter serves every client of
a (venue, host, route), because the venue counts per IP and the route decides the IP.
"""

from __future__ import annotations

import math
import random
import ssl
from collections.abc import Hashable, Mapping
from types import TracebackType
from typing import Any, Final, Self, final

import httpx
import msgspec
import trio

from actors._errors import ConnectError, ConnectionLost
from actors.net._connect import default_tls_context
from actors.net.rest._errors import RateLimited, RestError, venue_error
from actors.net.rest._limits import VENUES, HostLimiter, Params, Reservation
from actors.net.rest._transport import OpenerTransport, OpenStream, open_direct_stream
from actors.net.urls import redact_url

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "RestClient",
    "RestClients",
    "RestTimeouts",
    "RetryPolicy",
    "WireTimes",
]

#: Connections kept open per host. Market-data callers seldom have more in flight.
DEFAULT_MAX_CONNECTIONS: Final = 8
#: Seconds an idle pooled connection is kept. Below the usual 60 s idle timeout of
#: load balancers in front of the venues, so we close first.
DEFAULT_KEEPALIVE: Final = 30.0
#: The request methods retried after a 5xx or a broken exchange (RFC 9110 §9.2.2 lists
#: more idempotent methods; only reads are retried here: PUT/DELETE on an exchange act).
IDEMPOTENT: Final = frozenset({"GET", "HEAD"})
_JSON = msgspec.json.Decoder()


class RestTimeouts(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-attempt deadlines of a REST client (callers bound a whole call themselves).

    Attributes:
        connect: seconds to open a connection (route, TCP and TLS).
        read: seconds to wait for each read of the answer.
        total: seconds one attempt may take in all.
    """

    connect: float = 10.0
    read: float = 10.0
    total: float = 30.0


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How often and how late a failed request is tried again.

    The delay before attempt ``n + 1`` (``n`` failures so far) is
    ``capped / 2 + rng.random() * capped / 2`` with ``capped = min(max, initial * 2**(n-1))``
    ("equal jitter", https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/).

    Attributes:
        attempts: attempts in all, the first included (``1``: never retry).
        initial: the first delay's cap, in seconds.
        max: the largest delay, in seconds.
    """

    attempts: int = 4
    initial: float = 0.5
    max: float = 8.0

    def delay(self, failures: int, rng: random.Random) -> float:
        """The delay after ``failures`` failed attempts (1 for the first)."""
        capped: float = min(self.max, self.initial * 2.0 ** (failures - 1))
        return capped / 2 + rng.random() * capped / 2


#: Binance answers within its own 10 s server timeout (rest-api.md, ``-1007``).
DEFAULT_TIMEOUTS: Final = RestTimeouts()
DEFAULT_RETRY: Final = RetryPolicy()


@final
class WireTimes:
    """When a request went out on the wire and when its answer's head came back.

    Trio times, filled by the client for the last attempt of a call made with it (from
    httpcore's trace events), so the time spent opening a connection (TCP, proxies, TLS)
    or waiting for a slot is left out. A server-time estimate needs exactly this: the
    venue reads its clock between the two, and the first call on a new connection to a
    far venue would otherwise count a TLS handshake as round trip (an offset too large
    by half of it).

    Attributes:
        sent: when the request head started out; ``None`` if it never did.
        answered: when the response head was read; ``None`` if it never was.
    """

    __slots__ = ("answered", "sent")

    def __init__(self) -> None:
        self.sent: float | None = None
        self.answered: float | None = None

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` extension: note the two moments."""
        if event.endswith(".send_request_headers.started"):
            self.sent, self.answered = trio.current_time(), None
        elif event.endswith(".receive_response_headers.complete"):
            self.answered = trio.current_time()


@final
class RestClient:
    """Calls one venue's REST API on one origin, within the venue's limits.

    Use it as an async context manager, or close it with :meth:`aclose`; a
    :class:`RestClients` holder closes the clients it made.

    Args:
        venue: the venue's rules (``binance``, ``binance_usdm``, ``okx``, ``deribit``,
            ``bybit``).
        base_url: the origin, e.g. ``https://api.binance.com``.
        limiter: the host's budgets and holds, shared with other clients of the same
            host and route; a new one by default.
        opener: opens connections (the route); direct by default.
        ssl_context: TLS for ``https``; verified against certifi's roots by default.
        timeouts: per-attempt deadlines.
        retry: retry policy.
        rng: randomness for the retry jitter.
        max_connections: connections pooled per host.

    Raises:
        ValueError: unknown venue, or a ``base_url`` that is not ``http(s)://host``.
    """

    def __init__(
        self,
        venue: str,
        base_url: str,
        *,
        limiter: HostLimiter | None = None,
        opener: OpenStream = open_direct_stream,
        ssl_context: ssl.SSLContext | None = None,
        timeouts: RestTimeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
        rng: random.Random | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if venue not in VENUES:
            raise ValueError(f"unknown REST venue {venue!r}; known: {', '.join(sorted(VENUES))}")
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(
                f"{redact_url(base_url)!r} is not a REST base URL (expected http(s)://host)"
            )
        self.venue = venue
        self.base_url = base_url
        self.host = url.host
        self.limiter = limiter if limiter is not None else HostLimiter(VENUES[venue], url.host)
        self._timeouts = timeouts
        self._retry = retry
        self._rng = rng if rng is not None else random.Random()
        transport = OpenerTransport(
            opener,
            ssl_context=ssl_context if ssl_context is not None else default_tls_context(),
            tls=url.scheme == "https",
            max_connections=max_connections,
            keepalive_expiry=DEFAULT_KEEPALIVE,
        )
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            trust_env=False,
            timeout=httpx.Timeout(
                connect=timeouts.connect, read=timeouts.read, write=timeouts.read, pool=None
            ),
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"<RestClient {self.venue} {redact_url(self.base_url)}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections. Idempotent.

        Cancellation: the sockets are closed even if this is cancelled.
        """
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            await self._http.aclose()

    async def get(
        self,
        path: str,
        *,
        params: Params | None = None,
        weight: int | None = None,
        max_wait: float = math.inf,
        wire: WireTimes | None = None,
    ) -> Any:
        """``GET path`` and return the decoded JSON body (see :meth:`request`)."""
        return await self.request(
            "GET", path, params=params, weight=weight, max_wait=max_wait, wire=wire
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        weight: int | None = None,
        max_wait: float = math.inf,
        wire: WireTimes | None = None,
    ) -> Any:
        """Send one request within the host's limits and return its decoded JSON body.

        Args:
            method: the HTTP method.
            path: the path below the origin, e.g. ``/api/v3/time``.
            params: query parameters.
            json: a JSON body, or ``None`` for none.
            headers: extra request headers.
            weight: the request's cost in its budget, overriding the venue table.
            max_wait: seconds the call may wait for a slot (a hold or the budget)
                before it raises :class:`RateLimited` instead; waiting is the default.
            wire: filled with when the last attempt's request went out and its answer
                came back (:class:`WireTimes`).

        Returns:
            The decoded JSON body (the venue's whole envelope).

        Raises:
            RestError: the venue answered with an error status or an error code in
                the body (after retries, for a 5xx of an idempotent request).
            RateLimited: the request would wait longer than ``max_wait``.
            ConnectError: no connection could be opened in ``retry.attempts`` attempts
                (the opener's own subclass, e.g. a route's ``ProxyRejected``, as it is).
            ConnectionLost: the exchange broke or timed out in every attempt (an
                idempotent request), or once (any other).
            RuntimeError: the client is closed.
            ValueError: ``weight`` can never fit the venue's budget.

        Cancellation: may be partial: a request may have reached the venue (and been
        counted) before the cancellation; a slot never used is given back.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; REST calls need an open client")
        method = method.upper()
        query: Params = params or {}
        failures: list[Exception] = []
        retryable = method in IDEMPOTENT
        for attempt in range(1, self._retry.attempts + 1):
            reservation = await self._slot(method, path, query, weight, max_wait)
            try:
                outcome = await self._attempt(method, path, query, json, headers, reservation, wire)
            except _Failed as failed:
                failures.append(failed.error)
                if not (failed.unsent or retryable) or attempt == self._retry.attempts:
                    break
                await trio.sleep(self._retry.delay(attempt, self._rng))
                continue
            if isinstance(outcome, _Held):
                failures.append(outcome.error)
                continue
            if isinstance(outcome, RestError):
                failures.append(outcome)
                if outcome.status < 500 or not retryable or attempt == self._retry.attempts:
                    break
                await trio.sleep(self._retry.delay(attempt, self._rng))
                continue
            return outcome.body
        raise _summary(failures[-1]) from ExceptionGroup(
            f"{method} {redact_url(self.base_url + path)}: {len(failures)} attempt(s) failed",
            failures,
        )

    async def _slot(
        self, method: str, path: str, params: Params, weight: int | None, max_wait: float
    ) -> Reservation:
        """Wait for the host's slot for one attempt (see the theory of operation)."""
        limiter = self.limiter
        while True:
            now = trio.current_time()
            reservation = limiter.reserve(method, path, params, weight, now)
            wait = reservation.at - now
            if wait > max_wait:
                limiter.release(reservation, sent=False, used=None, now=now)
                held = limiter.hold_until > now
                raise RateLimited(
                    wait=wait,
                    host=self.host,
                    reason=limiter.hold_reason if held else f"{reservation.key!r} budget",
                    status=limiter.hold_status if held else None,
                )
            try:
                await trio.sleep_until(reservation.at)
            except BaseException:
                limiter.release(reservation, sent=False, used=None, now=trio.current_time())
                raise
            if limiter.hold_until <= trio.current_time():
                return reservation
            # A hold started while this request waited: it waits for the hold too.
            limiter.release(reservation, sent=False, used=None, now=trio.current_time())

    async def _attempt(
        self,
        method: str,
        path: str,
        params: Params,
        json: Any,
        headers: Mapping[str, str] | None,
        reservation: Reservation,
        wire: WireTimes | None,
    ) -> _Ok | _Held | RestError:
        """One HTTP exchange; settles ``reservation`` whatever happens."""
        url = self.base_url + path
        limiter = self.limiter
        try:
            with trio.fail_after(self._timeouts.total):
                response = await self._http.request(
                    method,
                    path,
                    params=dict(params),
                    json=json,
                    headers=headers,
                    extensions=None if wire is None else {"trace": wire.trace},
                )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            limiter.release(reservation, sent=False, used=None, now=trio.current_time())
            # The opener's own subclass of ConnectError (a route's ProxyError or
            # ProxyRejected, naming the hop) is kept as it is; others get the URL.
            # httpcore's pool re-raises with ``from None``, so the opener's error is
            # found as the context, not the cause.
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, ConnectError):
                cause = cause.__cause__ or cause.__context__
            refused = (
                cause
                if cause is not None and type(cause) is not ConnectError
                else ConnectError(f"cannot connect to {redact_url(url)}: {exc}")
            )
            raise _Failed(refused, unsent=True) from exc
        except (httpx.TransportError, trio.TooSlowError) as exc:
            limiter.release(reservation, sent=True, used=None, now=trio.current_time())
            what = (
                "timed out"
                if isinstance(exc, trio.TooSlowError | httpx.TimeoutException)
                else "broke"
            )
            raise _Failed(
                ConnectionLost(f"{method} {redact_url(url)} {what}: {exc or type(exc).__name__}"),
                unsent=False,
            ) from exc
        except BaseException:
            limiter.release(reservation, sent=True, used=None, now=trio.current_time())
            raise
        full_url = str(response.request.url)
        status = response.status_code
        try:
            body: Any = _JSON.decode(response.content) if response.content else None
            decoded = True
        except msgspec.DecodeError:
            body, decoded = None, False
        error = None
        if status >= 400 or VENUES[self.venue].errors_in_ok:
            error = venue_error(body)
        code = error[0] if error is not None else None
        hold = limiter.observe(reservation, status, response.headers, code, trio.current_time())
        if error is not None or status >= 400 or not decoded:
            if error is not None:
                message = error[1]
            elif not decoded:
                message = f"answer is not JSON: {response.text[:200]!r}"
            else:
                message = response.reason_phrase
            failure = RestError(status=status, venue_code=code, message=message, url=full_url)
            return failure if hold is None else _Held(failure)
        return _Ok(body)


@final
class _Ok:
    __slots__ = ("body",)

    def __init__(self, body: Any) -> None:
        self.body = body


@final
class _Held:
    """The answer held the host; the next attempt waits for the hold."""

    __slots__ = ("error",)

    def __init__(self, error: RestError) -> None:
        self.error = error


@final
class _Failed(Exception):
    """One attempt failed below HTTP; ``unsent``: the request never left."""

    def __init__(self, error: ConnectError | ConnectionLost, *, unsent: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.unsent = unsent


def _summary(last: Exception) -> Exception:
    """A fresh copy of the last attempt's error, to raise from the group of all."""
    if isinstance(last, RestError):
        return RestError(
            status=last.status, venue_code=last.venue_code, message=last.message, url=last.url
        )
    if type(last) in (ConnectError, ConnectionLost):
        return type(last)(str(last))
    return last  # an opener's own error type (its constructor may take more)


@final
class RestClients:
    """The supervisor's REST clients: one per (venue, origin, route, TLS), one budget per
    (venue, host, route).

    An adapter and a user's bot that ask for the same venue, origin, route and TLS
    settings share one client (its pooled connections); clients of the same host and
    route share one :class:`HostLimiter` whatever their TLS settings, because the venue
    counts per IP. The holder owns every client it made and closes them in
    :meth:`aclose` (or on leaving ``async with``).
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str, Hashable, Hashable], RestClient] = {}
        self._limiters: dict[tuple[str, str, Hashable], HostLimiter] = {}
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def client(
        self,
        venue: str,
        base_url: str,
        *,
        route: Hashable = "direct",
        opener: OpenStream = open_direct_stream,
        tls: Hashable = "default",
        ssl_context: ssl.SSLContext | None = None,
        timeouts: RestTimeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
        rng: random.Random | None = None,
    ) -> RestClient:
        """The client for ``venue`` at ``base_url`` through ``route``, made on first use.

        Args:
            venue: the venue's rules.
            base_url: the origin.
            route: identifies the route (equal routes reach the venue from the same IP);
                ``opener`` must be that route's.
            opener: opens the route's streams (used when the client is made).
            tls: identifies the TLS settings; ``ssl_context`` must be those.
            ssl_context: TLS settings (used when the client is made).
            timeouts: per-attempt deadlines (used when the client is made).
            retry: retry policy (used when the client is made).
            rng: jitter randomness (used when the client is made).

        Returns:
            The shared client.

        Raises:
            RuntimeError: the holder is closed.
            ValueError: unknown venue or bad ``base_url`` (see :class:`RestClient`).
        """
        if self._closed:
            raise RuntimeError("RestClients is closed; no new REST clients")
        origin = str(httpx.URL(base_url).copy_with(path="/", query=None, fragment=None))
        key = (venue, origin, route, tls)
        client = self._clients.get(key)
        if client is None:
            host = httpx.URL(base_url).host
            limiter = self._limiters.get((venue, host, route))
            if limiter is None and venue in VENUES:
                limiter = self._limiters[(venue, host, route)] = HostLimiter(VENUES[venue], host)
            client = self._clients[key] = RestClient(
                venue,
                base_url,
                limiter=limiter,
                opener=opener,
                ssl_context=ssl_context,
                timeouts=timeouts,
                retry=retry,
                rng=rng,
            )
        return client

    async def aclose(self) -> None:
        """Close every client made here. Idempotent.

        Cancellation: every client's sockets are closed even if this is cancelled.
        """
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
