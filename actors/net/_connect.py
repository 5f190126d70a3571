"""Opening the byte stream under a WebSocket: TCP, then TLS for ``wss://``.

Theory of operation: a *connector* is any ``async (url) -> trio.abc.Stream``. The actor
asks it for a stream and runs the WebSocket handshake over whatever comes back, so tests
and users can substitute an in-memory or proxied stream without touching the actor
(``supervisor.testing`` provides in-memory fakes). The default connector opens TCP and,
for ``wss://``, TLS verified against certifi's CA bundle: verification is never switched
off here.

Errors are converted at this boundary: every failure to produce a working stream becomes
:class:`~actors._errors.ConnectError` naming the URL (with credentials masked).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import certifi
import trio

from actors._errors import ConnectError

# Re-exported: connection.py imports them from here.
from actors.net.urls import DEFAULT_PORTS, redact_url, split_ws_url

__all__ = [
    "DEFAULT_PORTS",
    "Connector",
    "TcpTlsConnector",
    "default_tls_context",
    "redact_url",
    "split_ws_url",
]

#: What the actor calls to obtain a stream for a WebSocket URL.
Connector = Callable[[str], Awaitable[trio.abc.Stream]]


def default_tls_context() -> ssl.SSLContext:
    """A verifying client TLS context trusting certifi's CA bundle."""
    return ssl.create_default_context(cafile=certifi.where())


class TcpTlsConnector:
    """The default connector: TCP to the URL's host, plus verified TLS for ``wss://``.

    One instance is shared by a supervisor's connections so the CA bundle is loaded
    once; it holds no per-connection state.

    Args:
        ssl_context: the TLS client context; default :func:`default_tls_context`.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context

    async def __call__(self, url: str) -> trio.abc.Stream:
        """Open a stream for ``url``.

        Args:
            url: a ws:// or wss:// URL.

        Returns:
            A connected stream; for wss the TLS handshake has completed.

        Raises:
            ConnectError: DNS, TCP or TLS failed (the cause is chained).
            ValueError: ``url`` is not a WebSocket URL.

        Cancellation: may be partial; a half-open socket is closed on the way out.
        """
        parts, host, port, _ = split_ws_url(url)
        try:
            tcp = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise ConnectError(f"cannot connect to {redact_url(url)}: {exc}") from exc
        if parts.scheme == "ws":
            return tcp
        if self._ssl_context is None:
            self._ssl_context = default_tls_context()
        tls = trio.SSLStream(tcp, self._ssl_context, server_hostname=host)
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
            await trio.aclose_forcefully(tcp)
            cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
            raise ConnectError(f"TLS handshake with {redact_url(url)} failed: {cause}") from exc
        except BaseException:
            await trio.aclose_forcefully(tcp)
            raise
        return tls
