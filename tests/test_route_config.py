"""proxy, tls and allow_plaintext in config; routes in stats; a supervisor behind proxies."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import trio
import trustme

from actors import ConfigError
from supervisor import Config, loads_config, open_supervisor
from supervisor.cli import main as cli_main
from supervisor.testing import open_fake_exchange
from supervisor.testing.proxies import open_microsocks, open_tinyproxy

SRC = "config.toml"


def load(text: str) -> Config:
    return loads_config(textwrap.dedent(text), source=SRC)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return caught.value.problems


def test_proxies_load_with_the_default_kept_apart() -> None:
    config = load(
        """
        [defaults]
        exchange = "raw"
        proxy = "socks5://u:pw@corp:1080"
        [connections.a]
        url = "wss://a.example/ws"
        [connections.b]
        url = "wss://b.example/ws"
        proxy = ["socks5h://x:1080", "http://y:3128"]
        [connections.c]
        url = "wss://c.example/ws"
        proxy = "none"
        """
    )
    assert config.default_proxy == "socks5://u:pw@corp:1080"
    assert [c.proxy for c in config.connections] == [
        None,
        ("socks5h://x:1080", "http://y:3128"),
        "none",
    ]


def test_invalid_proxies_are_config_errors_naming_the_key_without_the_password() -> None:
    assert problems_of(
        """
        [defaults]
        exchange = "raw"
        proxy = "ftp://u:hunter2@h"
        [connections.a]
        url = "wss://a.example/ws"
        proxy = ["socks5://x", "none"]
        [connections.b]
        url = "wss://b.example/ws"
        proxy = "socks5://u:hunter2@h:99999"
        [connections.c]
        url = "wss://c.example/ws"
        proxy = 5
        """
    ) == [
        "config.toml:4: defaults.proxy: 'ftp://u:***@h' has an unsupported scheme 'ftp' "
        "(expected http, https, socks4, socks4a, socks5, socks5h)",
        'config.toml:7: connections.a.proxy: "none" at index 1 cannot be a hop of a chain '
        '(expected proxy URLs, or proxy = "none" alone)',
        "config.toml:10: connections.b.proxy: 'socks5://u:***@h:99999' has an invalid host "
        "or port (expected host:port with a port from 1 to 65535)",
        "config.toml:13: connections.c.proxy: 5 is an integer (expected a string or an array "
        "of strings)",
    ]


def test_tls_settings_load_merged_with_defaults(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert = ca.issue_cert("client.example")
    cert_file = tmp_path / "client.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    config = load(
        f"""
        [defaults.tls]
        ca_file = "{ca_file}"
        [connections.a]
        exchange = "raw"
        url = "wss://127.0.0.1:9/ws"
        tls.server_hostname = "venue.example"
        tls.cert_file = "{cert_file}"
        tls.verify = false
        """
    )
    tls = config.connections[0].tls
    assert (tls.ca_file, tls.cert_file, tls.key_file) == (str(ca_file), str(cert_file), None)
    assert (tls.verify, tls.server_hostname) == (False, "venue.example")


def test_tls_problems_name_the_key(tmp_path: Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    assert problems_of(
        f"""
        [defaults.tls]
        verify = false
        [connections.a]
        exchange = "raw"
        url = "wss://a.example/ws"
        tls.ca_file = "{tmp_path}/missing.pem"
        [connections.b]
        exchange = "raw"
        url = "wss://b.example/ws"
        tls.ca_file = "{not_pem}"
        tls.key_file = "{not_pem}"
        [connections.c]
        exchange = "raw"
        url = "wss://c.example/ws"
        tls.cert_file = "{not_pem}"
        """
    ) == [
        "config.toml:3: defaults.tls.verify: not allowed in [defaults] (expected it per "
        "connection: switching verification off must be a decision about one connection)",
        f"config.toml:7: connections.a.tls.ca_file: cannot read '{tmp_path}/missing.pem': no "
        "such file (expected a PEM file of CA certificates)",
        f"config.toml:11: connections.b.tls.ca_file: '{not_pem}' holds no usable "
        "certificate: no certificate or crl found (expected a PEM file of CA certificates)",
        "config.toml:12: connections.b.tls.key_file: set without cert_file (expected both, "
        "or neither)",
        f"config.toml:16: connections.c.tls.cert_file: '{not_pem}' are not a usable "
        "certificate and key: not PEM, or the key does not belong to the certificate "
        "(expected a PEM certificate and its private key)",
    ]


def test_check_exits_2_for_an_unreadable_ca_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "feed.toml"
    path.write_text(
        '[connections.a]\nexchange = "raw"\nurl = "wss://a.example/ws"\n'
        'proxy = "http://u:hunter2@proxy:3128"\ntls.ca_file = "/nonexistent/ca.pem"\n'
    )
    assert cli_main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"{path}:5: connections.a.tls.ca_file: cannot read '/nonexistent/ca.pem': no such "
        "file (expected a PEM file of CA certificates)\n"
    )


def test_plaintext_off_this_machine_is_refused_unless_allowed() -> None:
    assert problems_of(
        """
        [defaults]
        exchange = "raw"
        url = "ws://stream.example.com/ws"
        [connections.a]
        [connections.b]
        url = "ws://u:***@stream.binance.com:9443/ws"
        """
    ) == [
        # inherited: reported where the URL is written
        "config.toml:4: connections.a.url: 'ws://stream.example.com/ws' is plaintext to "
        "'stream.example.com', a host off this machine (expected wss://; or set "
        "allow_plaintext = true to accept that anyone on the route can read and change the "
        "feed)",
        "config.toml:7: connections.b.url: 'ws://u:***@stream.binance.com:9443/ws' is "
        "plaintext to 'stream.binance.com', a host off this machine (expected wss://; or set "
        "allow_plaintext = true to accept that anyone on the route can read and change the "
        "feed)",
    ]
    config = load(
        """
        [defaults]
        exchange = "raw"
        [connections.a]
        url = "ws://stream.example.com/ws"
        allow_plaintext = true
        [connections.b]
        url = "ws://127.0.0.1:9/ws"
        [connections.c]
        url = "ws://[::1]:9/ws"
        [connections.d]
        url = "ws://localhost:9/ws"
        [connections.e]
        url = "ws://venue.fake.invalid/ws"
        """
    )
    assert len(config.connections) == 5


# -- the supervisor behind real proxies -----------------------------------------------------


def feed(url: str, extra: str = "", defaults: str = "") -> Config:
    return load(
        f"""
        [supervisor]
        shutdown_timeout = 2.0
        [defaults]
        {defaults}
        [connections.feed]
        exchange = "raw"
        url = "{url}"
        subscribe = ['{{"op":"subscribe"}}']
        backoff.initial = 0.05
        backoff.max = 0.05
        backoff.jitter = "none"
        {extra}
        """
    )


async def test_stats_show_the_route_and_the_fake_sees_the_last_hop(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with (
            open_fake_exchange(name="venue", interval=0.05) as fake,
            open_microsocks(tmp_path, auth=("alice", "pw-1")) as first,
            open_tinyproxy(tmp_path) as second,
        ):
            config = feed(fake.url, f'proxy = ["{first.url()}", "{second.url()}"]')
            async with open_supervisor(config, environ={}) as sup:
                async for _ in sup.messages():
                    break
                stats = (await sup.stats()).connections[0]
    assert stats.route == (
        f"socks5://alice:***@127.0.0.1:{first.port}",
        f"http://127.0.0.1:{second.port}",
    )
    assert stats.route_reason == "connections.feed.proxy"
    assert {s.peer[0] for s in fake.sessions if s.peer} == {second.outgoing}
    assert "pw-1" not in repr(stats)


async def test_environment_proxies_and_no_proxy_reach_stats(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with (
            open_fake_exchange(name="venue", interval=0.05) as fake,
            open_tinyproxy(tmp_path) as proxy,
        ):
            environ = {"http_proxy": proxy.url(), "NO_PROXY": "example.com"}
            async with open_supervisor(feed(fake.url), environ=environ) as sup:
                async for _ in sup.messages():
                    break
                stats = (await sup.stats()).connections[0]
            assert (stats.route, stats.route_reason) == (
                (proxy.url(),),
                "environment http_proxy",
            )
            assert {s.peer[0] for s in fake.sessions if s.peer} == {proxy.outgoing}
            bypass = {"http_proxy": proxy.url(), "NO_PROXY": "127.0.0.0/8"}
            async with open_supervisor(feed(fake.url), environ=bypass) as sup:
                async for _ in sup.messages():
                    break
                stats = (await sup.stats()).connections[0]
    assert (stats.route, stats.route_reason) == (
        (),
        "NO_PROXY entry '127.0.0.0/8' matches 127.0.0.1",
    )
    assert fake.sessions[-1].peer is not None
    assert fake.sessions[-1].peer[0] == "127.0.0.1"


async def test_rejected_credentials_fail_after_three_and_never_go_direct(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with (
            open_fake_exchange(name="venue", interval=0.05) as fake,
            open_tinyproxy(tmp_path, auth=("alice", "right")) as proxy,
        ):
            config = feed(fake.url, defaults=f'proxy = "{proxy.url(password="wrong")}"')
            async with open_supervisor(config, environ={}) as sup:
                # Nothing outside the supervisor signals a state change: poll its stats
                # (at most 20 s: the deadline above).
                for _ in range(2000):
                    stats = (await sup.stats()).connections[0]
                    if stats.state == "failed":
                        break
                    await trio.sleep(0.01)
    assert stats.route_reason == "[defaults] proxy"
    assert stats.last_error == (
        f"ProxyRejected: proxy hop 1 of 1 (http://alice:***@127.0.0.1:{proxy.port}) rejected "
        f"the credentials: HTTP 401 Unauthorized (asked to connect to 127.0.0.1:{fake.port})"
    )
    assert stats.connects == 0
    assert fake.sessions == []


async def test_an_invalid_environment_proxy_is_a_config_error() -> None:
    config = feed("wss://stream.example.com/ws")
    with pytest.raises(ConfigError) as caught:
        async with open_supervisor(config, environ={"HTTPS_PROXY": "http://u:pw@h:0"}):
            pass
    assert caught.value.problems == [
        "config.toml: connections.feed: environment HTTPS_PROXY: 'http://u:***@h:0' has an "
        "invalid port (expected a port from 1 to 65535)"
    ]
