"""Routes: how a connection reaches its endpoint (direct, one proxy, or a chain).

Theory of operation. This module is pure: :class:`ProxyURL` parses and
validates one proxy, :class:`Route` is the ordered hops plus the reason they were
chosen, and :func:`resolve_route` is the one place a route is decided (precedence and
``NO_PROXY`` below). Nothing else in the project picks a proxy; a later issue adds
alternative routes and failover on top of this function.

Opening a stream through a route is :mod:`actors.net.tunnel`'s.

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
from collections.abc import Mapping
from typing import Final
from urllib.parse import quote, unquote, urlsplit

# The stream python-socks itself wraps its first hop's TCP connection in (v2/_connect.py);
# not exported, but the later hops and python-socks' TLS expect exactly this type.
from actors._spec import ProxySetting
from actors.net.urls import redact_url

__all__ = [
    "DEFAULT_PROXY_PORTS",
    "DIRECT",
    "PROXY_SCHEMES",
    "ProxySetting",
    "ProxyURL",
    "Route",
    "no_proxy_match",
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
