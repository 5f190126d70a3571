"""Opening the byte stream under a WebSocket: through the connection's route, then TLS.

Theory of operation: a *connector* is any ``async (url) -> trio.abc.Stream``. The actor
asks it for a stream and runs the WebSocket handshake over whatever comes back, so tests
and users can substitute an in-memory stream without touching the actor
(``supervisor.testing`` provides in-memory fakes). The default connector,
:class:`TcpTlsConnector`, is built once per connection from the connection's
:class:`~actors.net.route.Route` (decided by :func:`~actors.net.route.resolve_route`)
and its TLS settings: it opens TCP directly or through the route's proxies
(:func:`~actors.net.tunnel.open_stream`) and, for ``wss://``, TLS verified against
certifi's roots (plus the connection's ``ca_file``). Verification is off only when the
connection says ``verify = false``, and then every connect logs a warning naming the
connection; so does every plaintext ``ws://`` connect to a host off this machine
(allowed only with ``allow_plaintext = true``).

Errors are converted at this boundary: every failure to produce a working stream becomes
:class:`~actors._errors.ConnectError` (:class:`~actors._errors.ProxyError` for a proxy
hop) naming the URL with its credentials masked.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import ssl
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from actors.logs import log_fields
from actors.net.route import DIRECT, Route
from actors.net.tls import TlsSettings, build_ssl_context, proxy_ssl_context
from actors.net.tunnel import Trace, open_stream

# Re-exported: connection.py imports them from here.
from actors.net.urls import DEFAULT_PORTS, redact_url, split_ws_url

__all__ = [
    "DEFAULT_PORTS",
    "Connector",
    "TcpTlsConnector",
    "default_tls_context",
    "is_local_host",
    "redact_url",
    "split_ws_url",
]

logger = logging.getLogger("marketprism.connection")

#: A proxied connect's own deadline ends this long (at most a tenth of the time left)
#: before the caller's connect deadline, so that a timeout is reported by the route,
#: naming the proxy hop in progress, rather than as the caller's bare "took longer
#: than". It must exceed how late trio may wake up for a deadline (the OS timer's
#: granularity plus scheduling delay); equal deadlines would let the caller's win.
_DEADLINE_MARGIN: Final = 0.1

#: What the actor calls to obtain a stream for a WebSocket URL.
Connector = Callable[[str], Awaitable[trio.abc.Stream]]


def default_tls_context() -> ssl.SSLContext:
    """A verifying client TLS context trusting certifi's CA bundle (shared, never modify)."""
    return build_ssl_context(None)


def is_local_host(host: str) -> bool:
    """Whether plaintext to ``host`` cannot leave this machine: a loopback address,
    ``localhost`` (or a name under ``.localhost``), or a name under ``.invalid``, which
    never resolves (RFC 6761 sections 6.3 and 6.4; the in-memory fakes use it)."""
    name = host.lower().rstrip(".").strip("[]")
    if name == "localhost" or name.endswith((".localhost", ".invalid")) or name == "invalid":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class TcpTlsConnector:
    """The default connector: TCP through a route, plus TLS for ``wss://``.

    Build one per connection (its route and TLS settings are the connection's); TLS
    contexts are shared between connectors with equal settings.

    Args:
        ssl_context: the TLS client context; default the one built from ``tls``.
        route: how to reach the endpoint; default direct.
        tls: the connection's TLS settings; default verified, certifi's roots.
        name: the connection's name, for the warnings. (``ws://`` to a host off this
            machine is logged as a warning at every connect; the config check refuses
            it unless the connection says ``allow_plaintext = true``.)
        exchange: the connection's adapter, the ``exchange`` field of those warnings
            (see :func:`actors.logs.log_fields`); without ``name``, neither field is set.
        trace: called as each step of a connect ends (see :mod:`actors.net.route`,
            "Tracing"); for diagnostics such as ``marketprism probe``.
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        *,
        route: Route = DIRECT,
        tls: TlsSettings | None = None,
        name: str = "",
        exchange: str = "",
        trace: Trace | None = None,
    ) -> None:
        self._ssl_context = ssl_context
        self._trace = trace
        self._tls = tls or TlsSettings()
        self.route = route
        self._name = name or "connection"
        self._exchange = exchange

    def _log_fields(self, **fields: object) -> dict[str, object]:
        if self._name == "connection":  # no connection named: not about one
            return fields
        return log_fields(self._name, self._exchange, **fields)

    async def __call__(self, url: str) -> trio.abc.Stream:
        """Open a stream for ``url``.

        Args:
            url: a ws:// or wss:// URL.

        Returns:
            A connected stream; for wss the TLS handshake has completed.

        Raises:
            ProxyError: a proxy hop failed (which hop, masked, and why).
            ConnectError: DNS, TCP or TLS failed (the cause is chained).
            ValueError: ``url`` is not a WebSocket URL.

        Cancellation: may be partial; a half-open socket is closed on the way out.
        """
        parts, host, port, _ = split_ws_url(url)
        shown = redact_url(url)
        context: ssl.SSLContext | None = None
        if parts.scheme == "wss":
            context = self._ssl_context or build_ssl_context(self._tls)
            if not self._tls.verify:
                logger.warning(
                    "%s: TLS certificate verification is OFF for %s (tls.verify = false); "
                    "anyone on the route can read and change this feed",
                    self._name,
                    shown,
                    extra=self._log_fields(event="tls_unverified"),
                )
        elif not is_local_host(host):
            logger.warning(
                "%s: plaintext ws:// to %s (allow_plaintext); anyone on the route "
                "can read and change this feed",
                self._name,
                shown,
                extra=self._log_fields(event="plaintext"),
            )
        deadline = trio.current_effective_deadline()
        timeout = None
        if self.route.hops and deadline != math.inf:
            left = deadline - trio.current_time()
            timeout = max(0.0, left - min(_DEADLINE_MARGIN, left / 10))
        return await open_stream(
            self.route,
            host,
            port,
            ssl_context=context,
            server_hostname=self._tls.server_hostname,
            timeout=timeout,
            target=shown,
            trace=self._trace,
            proxy_ssl_context=self._proxy_ssl_context(),
        )

    def _proxy_ssl_context(self) -> ssl.SSLContext | None:
        """How ``https://`` hops are verified (:func:`proxy_ssl_context`)."""
        if not any(hop.scheme == "https" for hop in self.route.hops):
            return None
        return proxy_ssl_context(self._tls)
