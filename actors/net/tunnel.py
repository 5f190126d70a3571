"""Opening a byte stream through a route: TCP, each proxy hop, then TLS.

Theory of operation. This module opens a byte stream through a route decided by
:func:`actors.net.route.resolve_route` (:func:`open_stream`), with
python-socks' Trio backend (v2). Each hop is a ``python_socks`` proxy whose ``forward``
is the previous hop, so hop 1 is contacted over TCP and each later hop is reached
through the tunnel of the one before it; the last hop is asked for the destination.
The TCP connection to the first hop is ours (:class:`_FirstLeg`, hop 1's ``forward``),
not python-socks', so TCP and each hop's handshake are separate steps.
Every hop is wrapped (:class:`_Hop`) so a failure names the hop that failed (masked)
and why, as :class:`~actors._errors.ProxyError`; a proxy that rejects the credentials
or forbids the destination raises :class:`~actors._errors.ProxyRejected`. There is no
fallback to a direct connection, ever. TLS to the destination is not python-socks':
:func:`~actors.net.tls.start_tls` runs it over the tunnel exactly as over a direct TCP
stream, so SNI (``server_hostname``), verification and its error messages are the same
on every route.

Tracing: ``open_stream(..., trace=callback)`` calls ``callback(event, info)`` as each step
of the connect ends, in order (after httpcore's ``trace`` extension), so a diagnostic
(``marketprism probe``) can time and name every step without a second way to connect:

- ``tcp.started`` ``{"host", "port"}`` and ``tcp.complete`` ``{"peer"}`` (``ip:port``):
  TCP to the endpoint when direct, else to the first hop (name resolution included);
- ``proxy.complete`` ``{"index", "hop"}`` (the hop's masked URL): hop ``index``'s
  handshake is done, which began when the step before it completed;
- ``tls.started`` ``{"server_hostname"}`` and ``tls.complete`` ``{"stream"}`` (the
  ``trio.SSLStream``, for its protocol, cipher and certificate).

A step that fails raises as without a trace; the step in progress is the one after the
last event. The callback must not raise or block.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final

import trio
from python_socks import ProxyConnectionError as _SocksConnectionError
from python_socks import ProxyError as _SocksProxyError
from python_socks import ProxyTimeoutError as _SocksTimeoutError
from python_socks import ProxyType
from python_socks.async_.trio.v2 import Proxy as _SocksProxy

# The stream python-socks itself wraps its first hop's TCP connection in (v2/_connect.py);
# not exported, but the later hops and python-socks' TLS expect exactly this type.
from python_socks.async_.trio.v2._stream import TrioSocketStream as _SocksStream

from actors._errors import ConnectError, ProxyError, ProxyRejected
from actors.net.route import ProxyURL, Route
from actors.net.tls import build_ssl_context, start_tls

__all__ = ["Trace", "open_stream"]

#: ``trace(event, info)``: see "Tracing" in the module docstring.
Trace = Callable[[str, Mapping[str, object]], None]


_SOCKS_TYPES: Final = {
    "http": ProxyType.HTTP,
    "https": ProxyType.HTTP,
    "socks4": ProxyType.SOCKS4,
    "socks4a": ProxyType.SOCKS4,
    "socks5": ProxyType.SOCKS5,
    "socks5h": ProxyType.SOCKS5,
}
#: SOCKS5 reply 0x02 "connection not allowed by ruleset" (RFC 1928 section 6).
_SOCKS5_NOT_ALLOWED: Final = 0x02
#: SOCKS4 replies 0x5C/0x5D: identd unreachable / user id mismatch (the SOCKS4 spec).
_SOCKS4_IDENT_REFUSALS: Final = frozenset({0x5C, 0x5D})
#: python-socks' messages when a SOCKS5 proxy refuses our authentication.
_SOCKS5_AUTH_FAILURES: Final = (
    "Username and password authentication failure",
    "No acceptable authentication methods were offered",
)


class _Progress:
    """Which hop is being contacted or negotiated (``len(hops) + 1``: the endpoint)."""

    def __init__(self) -> None:
        self.hop = 1


class _Hop:
    """One hop of a chain: a python-socks proxy whose failures name this hop.

    python-socks calls :meth:`connect` of the previous hop (its ``forward``) to reach
    this hop's proxy, so a wrapper around each hop sees exactly its own failures.
    """

    def __init__(
        self,
        proxy: ProxyURL,
        index: int,
        total: int,
        progress: _Progress,
        forward: _Hop | _FirstLeg | None,
        trace: Trace | None = None,
        proxy_ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.proxy = proxy
        self.index = index
        self.total = total
        self._progress = progress
        self._trace = trace
        self._socks = _SocksProxy(
            _SOCKS_TYPES[proxy.scheme],
            proxy.host,
            proxy.port,
            proxy.username,
            proxy.password,
            rdns=proxy.scheme in ("socks4a", "socks5h"),
            proxy_ssl=(proxy_ssl_context or build_ssl_context(None))
            if proxy.scheme == "https"
            else None,
            forward=forward,  # type: ignore[arg-type]  # duck-typed: only connect() is used
        )

    def failed(self, reason: str, target: str, *, rejected: bool = False) -> ProxyError:
        error = ProxyRejected if rejected else ProxyError
        return error(
            f"proxy hop {self.index} of {self.total} ({self.proxy.masked}) {reason} "
            f"(asked to connect to {target})",
            hop=self.proxy.masked,
            index=self.index,
            reason=reason,
        )

    async def connect(self, dest_host: str, dest_port: int, **_: Any) -> Any:
        """Open a tunnel through this hop (and the ones before it) to the destination."""
        self._progress.hop = self.index
        target = f"{_host_port(dest_host, dest_port)}"
        try:
            # Deadlines are open_stream's (it knows which hop was in progress).
            stream = await self._socks.connect(dest_host, dest_port, timeout=math.inf)
        except ProxyError:
            raise  # an earlier hop failed and said so
        except _SocksConnectionError as exc:
            raise self.failed(f"cannot be reached: {exc.__cause__ or exc}", target) from exc
        except _SocksTimeoutError as exc:  # pragma: no cover - no python-socks deadline
            raise self.failed("timed out", target) from exc
        except _SocksProxyError as exc:
            reason, rejected = self._reply_reason(exc)
            raise self.failed(reason, target, rejected=rejected) from exc
        except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
            cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
            raise self.failed(f"broke the connection: {cause or exc}", target) from exc
        self._progress.hop = self.index + 1
        if self._trace is not None:
            self._trace("proxy.complete", {"index": self.index, "hop": self.proxy.masked})
        return stream

    def _reply_reason(self, exc: _SocksProxyError) -> tuple[str, bool]:
        """(the proxy's answer in words, whether it is configuration-shaped)."""
        code, text = exc.error_code, str(exc)
        if self.proxy.scheme.startswith("http"):
            if code is None:
                return f"answered badly: {text}", False
            rejected = code in (401, 403, 407)
            what = "rejected the credentials" if code in (401, 407) else "answered"
            return f"{what}: HTTP {text}", rejected
        if self.proxy.scheme.startswith("socks5"):
            if text in _SOCKS5_AUTH_FAILURES:
                return f"rejected the credentials: {text}", True
            if code is not None:
                return f"answered: SOCKS5 reply {code:#04x} {text}", code == _SOCKS5_NOT_ALLOWED
            return f"answered badly: {text}", False
        if code is not None:
            return f"answered: SOCKS4 reply {code:#04x} {text}", code in _SOCKS4_IDENT_REFUSALS
        return f"answered badly: {text}", False


class _FirstLeg:
    """TCP to the first hop: its python-socks proxy's ``forward``.

    python-socks would open this connection itself; doing it here lets a trace tell TCP
    from the first hop's handshake. A failure is reported exactly as python-socks
    reports its own (``ProxyConnectionError``, "Couldn't connect to proxy ...").
    """

    def __init__(self, trace: Trace | None) -> None:
        self._trace = trace

    async def connect(self, dest_host: str, dest_port: int, **_: Any) -> _SocksStream:
        """Open TCP to the first hop's proxy at ``dest_host``:``dest_port``."""
        try:
            stream = await _connect_tcp(dest_host, dest_port, self._trace)
        except OSError as exc:
            raise _SocksConnectionError(
                exc.errno, f"Couldn't connect to proxy {dest_host}:{dest_port} [{exc.strerror}]"
            ) from exc
        return _SocksStream(stream)


async def _connect_tcp(host: str, port: int, trace: Trace | None) -> trio.SocketStream:
    """``trio.open_tcp_stream``, traced (see the module docstring)."""
    if trace is not None:
        trace("tcp.started", {"host": host, "port": port})
    stream = await trio.open_tcp_stream(host, port)
    if trace is not None:
        peer = stream.socket.getpeername()
        trace("tcp.complete", {"peer": _host_port(peer[0], peer[1])})
    return stream


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def open_stream(
    route: Route,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    # The deadline is an argument (not only the caller's cancel scope) so that a timeout
    # can name the hop in progress: a caller's scope would end this with Cancelled.
    timeout: float | None = None,  # noqa: ASYNC109
    target: str | None = None,
    trace: Trace | None = None,
    proxy_ssl_context: ssl.SSLContext | None = None,
) -> trio.abc.Stream:
    """TCP to ``host``:``port`` through ``route``'s hops (direct if none); TLS over it
    when ``ssl_context`` is given.

    Args:
        route: from :func:`resolve_route`.
        host: the endpoint's host name or IP address.
        port: the endpoint's port.
        ssl_context: TLS to the endpoint with this context (:func:`build_ssl_context`);
            ``None`` for plaintext.
        server_hostname: SNI and the name the certificate must carry; default ``host``.
        timeout: seconds the whole connect (every hop and TLS) may take; ``None`` for
            no limit here (the caller's own deadline applies).
        target: how to show the endpoint in errors (e.g. the redacted URL); default
            ``host:port``.
        trace: called as each step ends (see "Tracing" in the module docstring).
        proxy_ssl_context: how ``https://`` hops are verified (TLS to the proxy itself);
            default certifi's roots (:func:`build_ssl_context` of ``None``). Give the
            connection's extra roots for a proxy whose certificate a private CA issued;
            verification is never off for a proxy.

    Returns:
        A connected stream (a ``trio.SSLStream`` for TLS), owned by the caller.

    Raises:
        ProxyError: a hop could not be reached, broke the connection, timed out or
            answered with an error (the message names the hop, masked, and why).
        ProxyRejected: a hop rejected the credentials or forbids the destination.
        ConnectError: the direct TCP connect failed or timed out, or TLS failed (a
            refused certificate says why, and the route if proxied).

    Cancellation: may be partial; whatever was opened is closed on the way out.
    """
    shown = target or _host_port(host, port)
    progress = _Progress()
    with trio.move_on_after(math.inf if timeout is None else timeout) as deadline:
        stream = await _open_tunnel(route, host, port, shown, progress, trace, proxy_ssl_context)
        if ssl_context is None:
            return stream
        where = shown if not route.hops else f"{shown} via {' -> '.join(route.masked_hops)}"
        name = server_hostname or host
        if trace is not None:
            trace("tls.started", {"server_hostname": name})
        tls = await start_tls(stream, ssl_context, server_hostname=name, where=where)
        if trace is not None:
            trace("tls.complete", {"stream": tls})
        return tls
    assert deadline.cancelled_caught
    if progress.hop <= len(route.hops):
        hop = _Hop(route.hops[progress.hop - 1], progress.hop, len(route.hops), progress, None)
        raise hop.failed(f"timed out after {timeout:.3g} s", shown)
    raise ConnectError(f"connecting to {shown} took longer than {timeout:.3g} s")


async def _open_tunnel(
    route: Route,
    host: str,
    port: int,
    shown: str,
    progress: _Progress,
    trace: Trace | None,
    proxy_ssl_context: ssl.SSLContext | None,
) -> trio.abc.Stream:
    if not route.hops:
        try:
            return await _connect_tcp(host, port, trace)
        except OSError as exc:
            raise ConnectError(f"cannot connect to {shown}: {exc}") from exc
    hop: _Hop | _FirstLeg = _FirstLeg(trace)
    for index, proxy in enumerate(route.hops, start=1):
        hop = _Hop(proxy, index, len(route.hops), progress, hop, trace, proxy_ssl_context)
    assert isinstance(hop, _Hop)
    tunnel = await hop.connect(host, port)
    stream: trio.abc.Stream = tunnel.trio_stream
    return stream
