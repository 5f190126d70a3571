"""Routes: how a connection reaches its endpoint (direct, one proxy, or a chain).

Theory of operation. The first half of this module is pure: :class:`ProxyURL` parses and
validates one proxy, :class:`Route` is the ordered hops plus the reason they were
chosen, and :func:`resolve_route` is the one place a route is decided (precedence and
``NO_PROXY`` below). Nothing else in the project picks a proxy; a later issue adds
alternative routes and failover on top of this function.

The second half opens a byte stream through a route (:func:`open_stream`), with
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

Precedence (first that applies wins):

1. the connection's ``proxy`` (a URL, a list of URLs = a chain, or ``"none"``);
2. ``[defaults] proxy`` (same forms);
3. the environment: ``https_proxy``/``HTTPS_PROXY`` for ``wss://`` and ``https://``,
   ``http_proxy``/``HTTP_PROXY`` for ``ws://`` and ``http://``, then
   ``all_proxy``/``ALL_PROXY``. When both spellings are set the lowercase one wins, as in
   curl and Python's ``urllib``. An empty value counts as unset. A value without a
   scheme is taken as ``http://`` (curl does the same). ``NO_PROXY`` (lowercase wins
   too) applies to environment proxies only: configured proxies are explicit;
4. otherwise direct.

``NO_PROXY`` is a list separated by commas or whitespace. ``*`` alone matches every
host. ``example.com``, ``.example.com`` and ``*.example.com`` all match
``example.com`` and its subdomains (curl's rule since 7.86). An IP address matches
that address, a CIDR (``10.0.0.0/8``, ``fd00::/8``) every address in it; host names
are never resolved for this. Any entry may end with ``:PORT`` (IPv6 as
``[addr]:PORT``) to match that port only. Case and a trailing dot are ignored;
entries that are none of these are ignored, since the environment is shared with
other programs.

Default proxy ports (a URL without a port): ``http`` 80 and ``https`` 443 (the scheme's
own port, as httpx, requests and urllib do; curl assumes 1080 for every scheme), and
1080 for the SOCKS schemes (the IANA port of SOCKS, RFC 1928).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

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
from actors._spec import ProxySetting, TlsSettings
from actors.net.tls import build_ssl_context, start_tls
from actors.net.urls import redact_url

__all__ = [
    "DEFAULT_PROXY_PORTS",
    "DIRECT",
    "PROXY_SCHEMES",
    "ProxySetting",
    "ProxyURL",
    "Route",
    "TlsSettings",
    "Trace",
    "build_ssl_context",
    "no_proxy_match",
    "open_stream",
    "parse_proxy_setting",
    "resolve_route",
]

#: Proxy schemes: ``http`` (CONNECT), ``https`` (CONNECT over TLS to the proxy),
#: ``socks4``/``socks5`` (we resolve the destination's name), ``socks4a``/``socks5h``
#: (the proxy resolves it).
PROXY_SCHEMES: Final = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")
#: Ports of proxy URLs that give none (see the module docstring for the choice).
DEFAULT_PROXY_PORTS: Final = {
    "http": 80,
    "https": 443,
    "socks4": 1080,
    "socks4a": 1080,
    "socks5": 1080,
    "socks5h": 1080,
}
#: The value of ``proxy`` that forces a direct connection.
NO_PROXY_VALUE: Final = "none"
#: Ports of the target URL schemes, to match ``NO_PROXY`` entries with a port.
_TARGET_PORTS: Final = {"ws": 80, "wss": 443, "http": 80, "https": 443}
_SECURE_SCHEMES: Final = frozenset({"wss", "https"})


@dataclasses.dataclass(frozen=True, repr=False)
class ProxyURL:
    """One validated proxy. Its ``str`` and ``repr`` mask the password.

    Build it with :meth:`parse`.

    Attributes:
        scheme: one of :data:`PROXY_SCHEMES`, lowercase.
        host: host name or IP address (IPv6 without brackets).
        port: the given port, or the scheme's from :data:`DEFAULT_PROXY_PORTS`.
        username: the user name (percent-decoded), or ``None``.
        password: the password (percent-decoded), or ``None``.
    """

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, text: str) -> ProxyURL:
        """Parse and validate a proxy URL such as ``socks5://user:pass@host:1080``.

        Raises:
            ValueError: the URL is not a usable proxy URL; the message shows it with
                its password masked and says what is expected.
        """
        shown = repr(redact_url(text, keep_username=True))
        schemes = ", ".join(PROXY_SCHEMES)
        if "://" not in text:
            raise ValueError(
                f"{shown} has no scheme (expected a URL such as 'socks5://host:1080' "
                f"with one of: {schemes})"
            )
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise ValueError(
                f"{shown} has an invalid host or port (expected host:port with a port "
                "from 1 to 65535)"
            ) from None
        scheme = parts.scheme.lower()
        if scheme not in PROXY_SCHEMES:
            raise ValueError(f"{shown} has an unsupported scheme {scheme!r} (expected {schemes})")
        if not parts.hostname:
            raise ValueError(f"{shown} has no host (expected {scheme}://host:port)")
        if port == 0:
            raise ValueError(f"{shown} has an invalid port (expected a port from 1 to 65535)")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(
                f"{shown} has a path, query or fragment (expected only "
                f"{scheme}://[user:password@]host[:port])"
            )
        username = None if parts.username is None else unquote(parts.username)
        password = None if parts.password is None else unquote(parts.password)
        if scheme.startswith("socks4") and password is not None:
            raise ValueError(
                f"{shown}: SOCKS4 has no passwords, only a user id (expected "
                f"{scheme}://userid@host:port, or socks5:// for user:password)"
            )
        if scheme.startswith("http") and username is not None and ":" in username:
            raise ValueError(f"{shown}: the user name may not contain ':' (RFC 7617)")
        return cls(
            scheme=scheme,
            host=parts.hostname,
            port=port or DEFAULT_PROXY_PORTS[scheme],
            username=username,
            password=password,
        )

    @property
    def url(self) -> str:
        """The full URL, password included: never log it (use ``str()``)."""
        userinfo = ""
        if self.username is not None:
            userinfo = quote(self.username, safe="")
            if self.password is not None:
                userinfo += ":" + quote(self.password, safe="")
            userinfo += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{userinfo}{host}:{self.port}"

    @property
    def masked(self) -> str:
        """The URL with the password masked: ``socks5://user:***@host:1080``."""
        return redact_url(self.url, keep_username=True)

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"ProxyURL({self.masked!r})"


@dataclasses.dataclass(frozen=True)
class Route:
    """How a connection reaches its endpoint, and why.

    Attributes:
        hops: the proxies in the order they are traversed (the first is contacted over
            TCP, the last connects to the endpoint); empty means direct.
        reason: why this route was chosen, e.g. ``connections.x.proxy``,
            ``environment HTTPS_PROXY``, ``NO_PROXY entry '.binance.com' matches
            stream.binance.com``, ``no proxy configured``.
    """

    hops: tuple[ProxyURL, ...] = ()
    reason: str = "no proxy configured"

    @property
    def masked_hops(self) -> tuple[str, ...]:
        """The hops as URLs with passwords masked."""
        return tuple(hop.masked for hop in self.hops)

    def describe(self) -> str:
        """``direct (why)`` or ``socks5://u:***@a:1080 -> http://b:3128 (why)``."""
        path = " -> ".join(self.masked_hops) if self.hops else "direct"
        return f"{path} ({self.reason})"

    def __str__(self) -> str:
        return self.describe()


#: ``trace(event, info)``: see "Tracing" in the module docstring.
Trace = Callable[[str, Mapping[str, object]], None]

#: A direct route when nothing says otherwise.
DIRECT: Final = Route()


def parse_proxy_setting(value: ProxySetting) -> tuple[ProxyURL, ...] | None:
    """The hops of a configured ``proxy``; ``None`` for ``"none"`` (direct).

    Raises:
        ValueError: a URL is invalid (password masked in the message), the chain is
            empty, or ``"none"`` is a hop of a chain.
    """
    if isinstance(value, str):
        if value.strip().lower() == NO_PROXY_VALUE:
            return None
        return (ProxyURL.parse(value),)
    if not value:
        raise ValueError(
            'an empty chain (expected one or more proxy URLs; write proxy = "none" for a '
            "direct connection)"
        )
    hops = []
    for index, item in enumerate(value):
        if item.strip().lower() == NO_PROXY_VALUE:
            raise ValueError(
                f'"none" at index {index} cannot be a hop of a chain (expected proxy URLs, '
                'or proxy = "none" alone)'
            )
        try:
            hops.append(ProxyURL.parse(item))
        except ValueError as exc:
            raise ValueError(f"at index {index}: {exc}") from None
    return tuple(hops)


def resolve_route(
    *,
    connection_proxy: ProxySetting | None,
    defaults_proxy: ProxySetting | None,
    environ: Mapping[str, str],
    target_url: str,
    connection: str | None = None,
) -> Route:
    """Decide the route to ``target_url`` (see the module docstring for the rules).

    Args:
        connection_proxy: the connection's own ``proxy``, or ``None`` if it sets none.
        defaults_proxy: ``[defaults] proxy``, or ``None``.
        environ: the environment to read proxies from (``os.environ``).
        target_url: the URL to reach (``ws``, ``wss``, ``http`` or ``https``).
        connection: the connection's name, for the reason (``connections.NAME.proxy``).

    Returns:
        The route and the reason it was chosen.

    Raises:
        ValueError: a configured proxy is invalid (the loader reports these first), or
            an environment proxy is invalid (the message names the variable).
    """
    where = f"connections.{connection}.proxy" if connection else "the connection's proxy"
    for value, source in ((connection_proxy, where), (defaults_proxy, "[defaults] proxy")):
        if value is None:
            continue
        hops = parse_proxy_setting(value)
        if hops is None:
            return Route((), f'proxy = "none" in {source}')
        return Route(hops, source)

    parts = urlsplit(target_url)
    scheme = parts.scheme.lower()
    names = (
        ("https_proxy", "HTTPS_PROXY")
        if scheme in _SECURE_SCHEMES
        else ("http_proxy", "HTTP_PROXY")
    )
    found = _first_set(environ, (*names, "all_proxy", "ALL_PROXY"))
    if found is None:
        return DIRECT
    name, value = found
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or _TARGET_PORTS.get(scheme, 0)
    no_proxy = _first_set(environ, ("no_proxy", "NO_PROXY"))
    if no_proxy is not None:
        entry = no_proxy_match(no_proxy[1], host, port)
        if entry is not None:
            return Route((), f"{no_proxy[0]} entry {entry!r} matches {host}")
    text = value.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        hop = ProxyURL.parse(text)
    except ValueError as exc:
        raise ValueError(f"environment {name}: {exc}") from None
    return Route((hop,), f"environment {name}")


def _first_set(environ: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        value = environ.get(name, "")
        if value.strip():
            return name, value
    return None


def no_proxy_match(no_proxy: str, host: str, port: int) -> str | None:
    """The first ``NO_PROXY`` entry that matches ``host``:``port``, as written, or None.

    Args:
        no_proxy: the variable's value.
        host: the target host (lowercase, no brackets, no trailing dot).
        port: the target port.
    """
    host_ip = _ip(host)
    for raw in no_proxy.replace(",", " ").split():
        entry = raw.strip().lower()
        if entry == "*":
            return raw
        name, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        name = name.rstrip(".")
        if "/" in name:
            try:
                network = ipaddress.ip_network(name, strict=False)
            except ValueError:
                continue
            if host_ip is not None and host_ip in network:
                return raw
            continue
        entry_ip = _ip(name)
        if entry_ip is not None:
            if host_ip == entry_ip:
                return raw
            continue
        domain = name.removeprefix("*").removeprefix(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return raw
    return None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:443`` -> (``host``, 443); ``[::1]:443`` -> (``::1``, 443); bare IPv6 kept."""
    if entry.startswith("["):
        inside, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return inside, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, int(port) if port.isdigit() else None
    return entry, None


# -- opening a stream through a route ----------------------------------------------------

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
