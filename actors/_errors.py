"""The exceptions MarketPrism raises, in one tree.

Theory of operation: every failure that can end a connection's session is converted at
the boundary where it happens (socket, TLS, WebSocket handshake, exchange protocol) into
one of these types, with ``raise Ours(...) from exc`` so the original stays attached. The
supervisor decides what to do from the type alone. Bugs (exceptions nobody typed) are not
converted: they travel up as themselves and count as crashes.

::

    SupervisorError
    ├── ConfigError                 the configuration is unusable (never retried)
    ├── TransportError              the network failed us (expected; restarted)
    │   ├── ConnectError            TCP/TLS/proxy connect failed, or timed out
    │   │   └── ProxyError          a proxy hop failed (which hop, masked, and why)
    │   │       └── ProxyRejected   a proxy refused us as a wrong configuration would
    │   ├── HandshakeRejected       the server answered the upgrade with an HTTP status
    │   └── ConnectionLost          an open connection ended (close code/reason, reset, EOF)
    │       ├── FeedStale           no frame for ``stale_after`` s, or a heartbeat missed
    │       └── ServerClosing       the exchange announced it will close the connection
    ├── ProtocolError               one side broke the exchange protocol
    │   └── LocalProtocolError      our misuse of an adapter (a bug on our side)
    ├── RestartLimitExceeded        restart intensity exceeded; the supervisor gave up loudly
    ├── GaveUp                      connections not live for ``give_up_after`` stopped for
    │                               good and no permanent connection is left running
    ├── RestError                   a venue answered a REST request with an error (HTTP
    │                               status, the venue's own code and message)
    └── RateLimited                 a REST request would wait longer than the caller's
                                    ``max_wait`` (the host is held or its budget spent)

REST transport failures (connect, reset, timeout) are the tree's ``ConnectError`` and
``ConnectionLost``; :mod:`actors.net.rest` raises the two REST errors and reads each
venue's error envelope.

An exchange that breaks its own protocol never raises: a frame that cannot be understood
is counted and logged (``MalformedFrame``) and the session goes on; an exchange that
stops answering is stale. (A ``RemoteProtocolError`` existed and was never raised; it
was removed in issue 12.)

Following Trio's split, *closed* means we closed something ourselves and *broken* means
something outside did. API misuse raises ``RuntimeError``, ``TypeError`` or ``ValueError``
and is never retried.
"""

from __future__ import annotations

from collections.abc import Mapping

from actors.redact import redact_url

__all__ = [
    "ConfigError",
    "ConnectError",
    "ConnectionLost",
    "FeedStale",
    "GaveUp",
    "HandshakeRejected",
    "LocalProtocolError",
    "ProtocolError",
    "ProxyError",
    "ProxyRejected",
    "RateLimited",
    "RestError",
    "RestartLimitExceeded",
    "ServerClosing",
    "SubscriptionRefused",
    "SupervisorError",
    "TransportError",
]


class SupervisorError(Exception):
    """Base class of every error MarketPrism raises on purpose."""


class ConfigError(SupervisorError):
    """The configuration cannot be used.

    Attributes:
        problems: one line per problem, ``FILE:LINE: key.path: what is wrong (expected)``.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class TransportError(SupervisorError):
    """The network failed; the session ends and the connection is restarted."""


class ConnectError(TransportError):
    """Opening the connection (DNS, TCP, proxy, TLS, or its deadline) failed."""


class ProxyError(ConnectError):
    """A proxy hop of the connection's route failed: it could not be reached, timed out,
    closed the connection, or answered with an error.

    Never followed by a direct connection: the session ends, and the connection backs
    off and retries through the same route.

    Attributes:
        hop: the hop's proxy URL with its password masked (``socks5://user:***@h:1080``).
        index: the hop's position in the route, 1 for the first proxy contacted.
        reason: why, in a few words (``connection refused``, ``timed out``,
            ``HTTP 502 Bad Gateway``, ``SOCKS5 reply: host unreachable``).
    """

    def __init__(self, message: str, *, hop: str, index: int, reason: str) -> None:
        self.hop = hop
        self.index = index
        self.reason = reason
        super().__init__(message)


class ProxyRejected(ProxyError):
    """A proxy answered and refused us the way a wrong configuration does: it rejected
    the credentials (HTTP 407, SOCKS5 authentication failure, no acceptable
    authentication method) or its rules forbid the destination (HTTP 403, SOCKS5
    "not allowed by ruleset", SOCKS4 identd refusals).

    Like an HTTP 4xx at the WebSocket upgrade, it is retried, but after a few in a row
    the connection shows as ``failed``.
    """


class HandshakeRejected(TransportError):
    """The server answered the WebSocket upgrade with an HTTP error status.

    Attributes:
        status: the HTTP status code, e.g. 429 or 503.
    """

    def __init__(self, message: str, *, status: int) -> None:
        self.status = status
        super().__init__(message)


class ConnectionLost(TransportError):
    """An established connection ended without us asking for it.

    Attributes:
        code: the WebSocket close code (1006 when the TCP connection broke without a
            close frame), or ``None`` when no code applies.
        reason: the close reason the peer sent, possibly empty.
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(message)


class FeedStale(ConnectionLost):
    """No frame arrived for ``stale_after`` seconds while we waited on the socket, or a
    heartbeat the exchange protocol requires went unanswered.

    A busy consumer never causes this: only time spent waiting for the exchange counts.

    Attributes:
        heartbeat: True when a heartbeat the protocol requires went unanswered (or every
            subscription went silent), False when no frame arrived at all.
    """

    def __init__(
        self, message: str, *, code: int | None = None, reason: str = "", heartbeat: bool = False
    ) -> None:
        self.heartbeat = heartbeat
        super().__init__(message, code=code, reason=reason)


class ServerClosing(ConnectionLost):
    """The exchange announced that it will close this connection soon (Binance
    ``serverShutdown``, OKX notice 64008); the session ends so a new one starts now."""


class ProtocolError(SupervisorError):
    """One side broke the exchange protocol."""


class LocalProtocolError(ProtocolError):
    """We misused an adapter (wrong command for its state): a bug on our side."""


class RestartLimitExceeded(SupervisorError):
    """More than ``max_restarts`` restarts happened within ``within`` seconds.

    The supervisor stopped every child cleanly before raising this.

    Attributes:
        connection: the name of the connection whose failure crossed the limit.
        last_error: a one-line description of that connection's last error.
    """

    def __init__(self, message: str, *, connection: str, last_error: str) -> None:
        self.connection = connection
        self.last_error = last_error
        super().__init__(message)


class GaveUp(SupervisorError):
    """Connections gave up (not live for their ``give_up_after``) and none that must run is
    left: no permanent connection is running (or, in a configuration without permanent
    connections, none at all).

    The supervisor stopped every child cleanly before raising this.

    Attributes:
        last_errors: for every connection that gave up, in configuration order, its name
            -> a one-line description of its last error before it gave up.
    """

    def __init__(self, message: str, *, last_errors: Mapping[str, str]) -> None:
        self.last_errors = dict(last_errors)
        super().__init__(message)


class SubscriptionRefused(SupervisorError):
    """The exchange refused topics asked for at run time (``sup.subscribe``).

    Attributes:
        connection: the connection's name.
        refused: every refused native topic -> the exchange's code and message, as
            stats show it (``failed: CODE MESSAGE``, secrets masked).
        kept: True when other topics of the same request went live: the refused ones
            then stay in the connection's plan (shown failed in stats, asked again at
            the next session) until unsubscribed; False when everything asked for was
            refused and taken out of the plan again.
    """

    def __init__(self, connection: str, refused: Mapping[str, str], *, kept: bool) -> None:
        self.connection = connection
        self.refused = dict(refused)
        self.kept = kept
        listed = "; ".join(f"{topic}: {state}" for topic, state in self.refused.items())
        what = (
            "they stay planned, shown failed in stats, until unsubscribed"
            if kept
            else "nothing asked for was kept"
        )
        super().__init__(
            f"{connection}: the exchange refused {len(self.refused)} "
            f"topic{'' if len(self.refused) == 1 else 's'} ({listed}); {what}"
        )


class RestError(SupervisorError):
    """The venue answered a request with an error.

    Attributes:
        status: the HTTP status (``200`` when the venue put an error code in a 200 body,
            as OKX and Bybit do).
        venue_code: the venue's own code (``-1121``, ``"51000"``, ``10028``), or
            ``None`` when the body carried none (an HTML error page, an empty 502).
        message: the venue's message, or the start of the body when it had none.
        url: the request URL with credentials masked.
    """

    def __init__(
        self, *, status: int, venue_code: int | str | None, message: str, url: str
    ) -> None:
        self.status = status
        self.venue_code = venue_code
        self.message = message
        self.url = redact_url(url)
        code = "" if venue_code is None else f" code {venue_code!r}"
        super().__init__(f"{self.url}: HTTP {status}{code}: {message}")


class RateLimited(SupervisorError):
    """A request would have to wait longer than the caller allowed (``max_wait``).

    Raised before anything is sent when the host is held (after a 429 or a ban) or its
    budget is spent until later, and after a 429/418 whose hold is longer than
    ``max_wait``.

    Attributes:
        wait: seconds from now until the request could go.
        host: the host the hold or budget belongs to.
        reason: why: ``"held after HTTP 429"``, ``"IP banned (HTTP 418)"``,
            ``"weight budget"``, ...
        status: the HTTP status that caused the hold, or ``None`` for our own budget.
    """

    def __init__(self, *, wait: float, host: str, reason: str, status: int | None) -> None:
        self.wait = wait
        self.host = host
        self.reason = reason
        self.status = status
        super().__init__(
            f"{host}: rate limited ({reason}); the next request could go in {wait:.3f} s, "
            "beyond max_wait; retry later or pass a larger max_wait"
        )
