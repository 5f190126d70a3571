"""Route resolution (pure): precedence, NO_PROXY matching, proxy URL parsing and masking."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.net.route import (
    DIRECT,
    ProxySetting,
    ProxyURL,
    Route,
    no_proxy_match,
    parse_proxy_setting,
    resolve_route,
)

WSS = "wss://stream.binance.com:9443/ws"
WS = "ws://stream.binance.com/ws"


def route(
    connection: ProxySetting | None = None,
    defaults: ProxySetting | None = None,
    environ: Mapping[str, str] | None = None,
    target: str = WSS,
) -> Route:
    return resolve_route(
        connection_proxy=connection,
        defaults_proxy=defaults,
        environ=environ or {},
        target_url=target,
        connection="b",
    )


def shown(r: Route) -> tuple[tuple[str, ...], str]:
    return r.masked_hops, r.reason


# -- precedence -------------------------------------------------------------------------

ENV = {"HTTPS_PROXY": "http://env:3128", "HTTP_PROXY": "http://plain:3128"}

PRECEDENCE = [
    # (connection, defaults, environ, target) -> (hops, reason)
    ((None, None, {}, WSS), ((), "no proxy configured")),
    (("socks5://c:1080", None, ENV, WSS), (("socks5://c:1080",), "connections.b.proxy")),
    (("socks5://c:1080", "http://d:3128", ENV, WSS), (("socks5://c:1080",), "connections.b.proxy")),
    ((None, "http://d:3128", ENV, WSS), (("http://d:3128",), "[defaults] proxy")),
    ((None, None, ENV, WSS), (("http://env:3128",), "environment HTTPS_PROXY")),
    ((None, None, ENV, WS), (("http://plain:3128",), "environment HTTP_PROXY")),
    (("none", "http://d:3128", ENV, WSS), ((), 'proxy = "none" in connections.b.proxy')),
    ((None, "none", ENV, WSS), ((), 'proxy = "none" in [defaults] proxy')),
    ((" None ", None, ENV, WSS), ((), 'proxy = "none" in connections.b.proxy')),
    (
        (("socks5://a:1080", "http://b:3128"), None, {}, WSS),
        (("socks5://a:1080", "http://b:3128"), "connections.b.proxy"),
    ),
    # lowercase wins over uppercase, as in curl and urllib
    (
        (None, None, {"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2"}, WSS),
        (("http://low:1",), "environment https_proxy"),
    ),
    (
        (None, None, {"HTTPS_PROXY": "http://up:2"}, WSS),
        (("http://up:2",), "environment HTTPS_PROXY"),
    ),
    # the scheme's variable before ALL_PROXY; ALL_PROXY when it is missing or empty
    (
        (None, None, {"ALL_PROXY": "socks5h://all:1080", "HTTPS_PROXY": "http://s:1"}, WSS),
        (("http://s:1",), "environment HTTPS_PROXY"),
    ),
    (
        (None, None, {"ALL_PROXY": "socks5h://all:1080", "HTTPS_PROXY": " "}, WSS),
        (("socks5h://all:1080",), "environment ALL_PROXY"),
    ),
    (
        (None, None, {"all_proxy": "socks5://l:1", "ALL_PROXY": "socks5://u:1"}, WS),
        (("socks5://l:1",), "environment all_proxy"),
    ),
    # https_proxy is not for ws://, http_proxy not for wss://
    ((None, None, {"HTTPS_PROXY": "http://s:1"}, WS), ((), "no proxy configured")),
    ((None, None, {"http_proxy": "http://p:1"}, WSS), ((), "no proxy configured")),
    (
        (None, None, {"http_proxy": "http://p:1"}, "http://api.x/v1"),
        (("http://p:1",), "environment http_proxy"),
    ),
    (
        (None, None, {"https_proxy": "http://s:1"}, "https://api.x/v1"),
        (("http://s:1",), "environment https_proxy"),
    ),
    # no scheme in the environment: http:// (curl)
    (
        (None, None, {"HTTPS_PROXY": "u:pw@corp:8080"}, WSS),
        (("http://u:***@corp:8080",), "environment HTTPS_PROXY"),
    ),
    # NO_PROXY applies to the environment only
    (
        (None, None, {**ENV, "NO_PROXY": ".binance.com"}, WSS),
        ((), "NO_PROXY entry '.binance.com' matches stream.binance.com"),
    ),
    (
        ("socks5://c:1080", None, {**ENV, "NO_PROXY": "*"}, WSS),
        (("socks5://c:1080",), "connections.b.proxy"),
    ),
    (
        (None, "http://d:3128", {**ENV, "NO_PROXY": "*"}, WSS),
        (("http://d:3128",), "[defaults] proxy"),
    ),
    (
        (None, None, {**ENV, "no_proxy": "okx.com", "NO_PROXY": "*"}, WSS),
        (("http://env:3128",), "environment HTTPS_PROXY"),
    ),
    ((None, None, {"NO_PROXY": "*"}, WSS), ((), "no proxy configured")),
]


@pytest.mark.parametrize(("args", "expected"), PRECEDENCE)
def test_precedence(
    args: tuple[ProxySetting | None, ProxySetting | None, dict[str, str], str],
    expected: tuple[tuple[str, ...], str],
) -> None:
    connection, defaults, environ, target = args
    assert shown(route(connection, defaults, environ, target)) == expected


def test_without_a_connection_name_the_reason_still_says_where() -> None:
    r = resolve_route(
        connection_proxy="http://p:1", defaults_proxy=None, environ={}, target_url=WSS
    )
    assert r.reason == "the connection's proxy"


def test_an_invalid_environment_proxy_names_the_variable_and_masks_the_password() -> None:
    with pytest.raises(
        ValueError,
        match=r"^environment HTTPS_PROXY: 'ftp://u:\*\*\*@h:1' has an unsupported scheme 'ftp' "
        r"\(expected http, https, socks4, socks4a, socks5, socks5h\)$",
    ):
        route(environ={"HTTPS_PROXY": "ftp://u:hunter2@h:1"})


def test_describe_and_str() -> None:
    r = route(("socks5://u:pw@a:1080", "http://b:3128"))
    assert r.describe() == "socks5://u:***@a:1080 -> http://b:3128 (connections.b.proxy)"
    assert str(r) == r.describe()
    assert str(DIRECT) == "direct (no proxy configured)"
    assert "pw" not in repr(r)


# -- NO_PROXY ---------------------------------------------------------------------------

NO_PROXY = [
    # (NO_PROXY, host, port) -> matching entry or None
    ("*", "anything.example", 443, "*"),
    ("binance.com", "binance.com", 443, "binance.com"),
    ("binance.com", "stream.binance.com", 443, "binance.com"),
    (".binance.com", "binance.com", 443, ".binance.com"),
    (".binance.com", "stream.binance.com", 443, ".binance.com"),
    ("*.binance.com", "stream.binance.com", 443, "*.binance.com"),
    ("binance.com", "notbinance.com", 443, None),
    ("binance.com", "binance.com.evil.io", 443, None),
    ("BINANCE.com.", "stream.binance.com", 443, "BINANCE.com."),
    ("okx.com, binance.com", "stream.binance.com", 443, "binance.com"),
    ("okx.com binance.com", "stream.binance.com", 443, "binance.com"),
    ("okx.com,,  ,binance.com", "stream.binance.com", 443, "binance.com"),
    ("binance.com:9443", "stream.binance.com", 9443, "binance.com:9443"),
    ("binance.com:9443", "stream.binance.com", 443, None),
    ("10.1.2.3", "10.1.2.3", 443, "10.1.2.3"),
    ("10.1.2.3", "10.1.2.4", 443, None),
    ("10.0.0.0/8", "10.200.1.1", 443, "10.0.0.0/8"),
    ("10.0.0.0/8", "11.0.0.1", 443, None),
    ("10.0.0.0/8", "ten.example", 443, None),  # names are never resolved
    ("10.1.2.3:443", "10.1.2.3", 443, "10.1.2.3:443"),
    ("10.1.2.3:443", "10.1.2.3", 80, None),
    ("::1", "::1", 443, "::1"),
    ("[::1]:443", "::1", 443, "[::1]:443"),
    ("[::1]:443", "::1", 80, None),
    ("fd00::/8", "fd12::1", 443, "fd00::/8"),
    ("fd00::/8", "fe80::1", 443, None),
    ("999.0.0.0/8, not a cidr/x", "10.0.0.1", 443, None),  # garbage entries are ignored
    ("", "binance.com", 443, None),
    ("localhost", "127.0.0.1", 443, None),  # no name <-> address magic
]


@pytest.mark.parametrize(("no_proxy", "host", "port", "expected"), NO_PROXY)
def test_no_proxy_matching(no_proxy: str, host: str, port: int, expected: str | None) -> None:
    assert no_proxy_match(no_proxy, host, port) == expected


def test_no_proxy_sees_the_targets_default_port_and_ipv6_host() -> None:
    env = {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "[::1]:443"}
    assert route(environ=env, target="wss://[::1]/ws").hops == ()
    assert route(environ=env, target="wss://[::1]:9443/ws").masked_hops == ("http://p:1",)


labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
#: A top-level label starts with a letter, so that a name is never an IP address.
tlds = st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True)


@given(st.lists(labels, max_size=3), tlds, st.lists(labels, min_size=1, max_size=3))
def test_a_domain_matches_exactly_itself_and_its_subdomains(
    domain: list[str], tld: str, prefix: list[str]
) -> None:
    name = ".".join([*domain, tld])
    sub = ".".join([*prefix, name])
    for entry in (name, "." + name, "*." + name):
        assert no_proxy_match(entry, name, 443) == entry
        assert no_proxy_match(entry, sub, 443) == entry
        # glued onto a longer label: not a subdomain
        assert no_proxy_match(entry, "x" + name, 443) is None


@given(st.ip_addresses(v=4), st.integers(min_value=0, max_value=32))
def test_a_cidr_matches_exactly_its_addresses(address: object, bits: int) -> None:
    import ipaddress

    ip = ipaddress.ip_address(str(address))
    network = ipaddress.ip_network(f"{ip}/{bits}", strict=False)
    assert no_proxy_match(str(network), str(ip), 1) == str(network)
    outside = (
        network.broadcast_address + 1 if network.broadcast_address.packed != b"\xff" * 4 else None
    )
    if outside is not None:
        assert no_proxy_match(str(network), str(outside), 1) is None


# -- proxy URLs -------------------------------------------------------------------------

GOOD = [
    ("http://h", ProxyURL("http", "h", 80)),
    ("https://h", ProxyURL("https", "h", 443)),
    ("socks4://h", ProxyURL("socks4", "h", 1080)),
    ("socks4a://id@h:9", ProxyURL("socks4a", "h", 9, "id")),
    ("SOCKS5://U:P@H:1", ProxyURL("socks5", "h", 1, "U", "P")),
    ("socks5h://a%40b:p%3Aw%2F@h:2/", ProxyURL("socks5h", "h", 2, "a@b", "p:w/")),
    ("http://[::1]:3128", ProxyURL("http", "::1", 3128)),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_proxy_urls_parse(text: str, expected: ProxyURL) -> None:
    assert ProxyURL.parse(text) == expected


def test_proxy_url_round_trips_and_masks() -> None:
    proxy = ProxyURL.parse("socks5h://a%40b:p%3Aw%2F@h:2")
    assert proxy.url == "socks5h://a%40b:p%3Aw%2F@h:2"
    assert ProxyURL.parse(proxy.url) == proxy
    assert str(proxy) == proxy.masked == "socks5h://a%40b:***@h:2"
    assert repr(proxy) == "ProxyURL('socks5h://a%40b:***@h:2')"
    assert repr(ProxyURL.parse("http://[::1]")) == "ProxyURL('http://[::1]:80')"
    # a bare token in the user-info is masked whole
    assert str(ProxyURL.parse("socks5://TOKEN@h")) == "socks5://***@h:1080"


SCHEMES = "http, https, socks4, socks4a, socks5, socks5h"
BAD_PORT = "has an invalid host or port (expected host:port with a port from 1 to 65535)"
BAD = [
    (
        "h:1",
        f"'h:1' has no scheme (expected a URL such as 'socks5://host:1080' with one of: {SCHEMES})",
    ),
    ("ftp://u:pw@h", f"'ftp://u:***@h' has an unsupported scheme 'ftp' (expected {SCHEMES})"),
    ("socks5://u:pw@:1", "'socks5://u:***@:1' has no host (expected socks5://host:port)"),
    ("socks5://h:0", "'socks5://h:0' has an invalid port (expected a port from 1 to 65535)"),
    (
        "socks5://u:pw@h:99999",
        "'socks5://u:***@h:99999' has an invalid host or port (expected host:port with a port "
        "from 1 to 65535)",
    ),
    (
        "socks5://h:x",
        f"'socks5://h:x' {BAD_PORT}",
    ),
    (
        "http://[::1",
        f"'http://[::1' {BAD_PORT}",
    ),
    (
        "http://h/p",
        "'http://h/p' has a path, query or fragment (expected only http://[user:password@]host[:port])",
    ),
    (
        "http://h?x=1",
        "'http://h?x=***' has a path, query or fragment (expected only http://[user:password@]host[:port])",
    ),
    (
        "socks4://u:pw@h",
        "'socks4://u:***@h': SOCKS4 has no passwords, only a user id (expected "
        "socks4://userid@host:port, or socks5:// for user:password)",
    ),
    ("http://a%3Ab:pw@h", "'http://a%3Ab:***@h': the user name may not contain ':' (RFC 7617)"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_invalid_proxy_urls_say_why_without_the_password(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        ProxyURL.parse(text)
    assert str(caught.value) == message
    assert "pw" not in str(caught.value).replace("pw@", "")


def test_proxy_settings() -> None:
    assert parse_proxy_setting("none") is None
    assert parse_proxy_setting("NONE") is None
    assert parse_proxy_setting("http://h:1") == (ProxyURL("http", "h", 1),)
    assert parse_proxy_setting(("socks5://a", "http://b")) == (
        ProxyURL("socks5", "a", 1080),
        ProxyURL("http", "b", 80),
    )
    with pytest.raises(ValueError) as caught:
        parse_proxy_setting(())
    assert str(caught.value) == (
        'an empty chain (expected one or more proxy URLs; write proxy = "none" for a direct '
        "connection)"
    )
    with pytest.raises(ValueError) as caught:
        parse_proxy_setting(("socks5://a", "none"))
    assert str(caught.value) == (
        '"none" at index 1 cannot be a hop of a chain (expected proxy URLs, or proxy = "none" '
        "alone)"
    )
    with pytest.raises(ValueError) as caught:
        parse_proxy_setting(("socks5://a", "ftp://u:pw@b"))
    assert str(caught.value) == (
        f"at index 1: 'ftp://u:***@b' has an unsupported scheme 'ftp' (expected {SCHEMES})"
    )


@given(st.text(min_size=1, max_size=12).filter(lambda p: p.strip() == p and p.isprintable()))
def test_no_password_survives_in_any_shown_form(password: str) -> None:
    from urllib.parse import quote

    secret = "S3" + password
    proxy = ProxyURL.parse(f"socks5://user:{quote(secret, safe='')}@h:1")
    assert proxy.password == secret
    r = route(proxy.url)
    for text in (str(proxy), repr(proxy), proxy.masked, r.describe(), repr(r), *r.masked_hops):
        assert secret not in text
        assert quote(secret, safe="") not in text


def test_the_route_decision_imports_nothing_that_does_io() -> None:
    # The decision stays pure (tables and hypothesis test it without sockets); opening
    # a tunnel is actors/net/tunnel.py's.
    import ast
    import pathlib

    import actors.net.route as module

    assert module.__file__ is not None
    tree = ast.parse(pathlib.Path(module.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported & {"trio", "python_socks", "socket", "ssl", "httpx", "anyio"} == set()
