"""The fake exchange behind real proxies (tinyproxy, microsocks, danted) on loopback.

Every route is proven from the far end: each proxy binds its outgoing connections to
its own loopback address (supervisor/testing/proxies.py), so the peer address the fake
exchange sees says which proxy the WebSocket came through; the proxies' logs show the
hops of a chain. A missing daemon fails these tests with the package to install.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from actors import ConnectError, ProxyError, ProxyRejected
from actors.net import Route, TcpTlsConnector
from actors.net.route import ProxyURL
from actors.net.websocket import open_websocket
from supervisor.testing import open_fake_exchange, proxies
from supervisor.testing.fake import FakeExchange
from supervisor.testing.proxies import (
    ProxyUnavailable,
    RunningProxy,
    open_danted,
    open_microsocks,
    open_tinyproxy,
)

#: Every test here talks to real daemons over loopback: a hard deadline each.
DEADLINE = 20.0
AUTH = ("alice", "s3cret-pw")


def via(*urls: str, reason: str = "test") -> Route:
    return Route(tuple(ProxyURL.parse(url) for url in urls), reason)


async def handshake(
    fake: FakeExchange,
    connector: TcpTlsConnector,
    url: str | None = None,
    *,
    connect_timeout: float = DEADLINE / 2,
) -> None:
    """Open a WebSocket to the fake through ``connector`` and close it again; a failure
    is raised as itself (not in the nursery's group)."""
    try:
        async with (
            trio.open_nursery() as nursery,
            open_websocket(
                nursery,
                url or fake.url,
                connector=connector,
                connect_timeout=connect_timeout,
                max_message_size=1 << 20,
                close_timeout=2.0,
            ),
        ):
            await fake.wait_until(lambda f: len(f.sessions) > 0)
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0]  # noqa: B904  # keep its own __cause__
        raise


@asynccontextmanager
async def fake_exchange() -> AsyncIterator[FakeExchange]:
    async with open_fake_exchange(name="venue", interval=60.0) as fake:
        yield fake


def peers(fake: FakeExchange) -> list[str]:
    return [s.peer[0] for s in fake.sessions if s.peer is not None]


async def test_direct_the_fake_sees_us() -> None:
    with trio.fail_after(DEADLINE):
        async with fake_exchange() as fake:
            await handshake(fake, TcpTlsConnector())
    assert peers(fake) == ["127.0.0.1"]


async def test_http_connect_without_auth(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with fake_exchange() as fake, open_tinyproxy(tmp_path) as proxy:
            await handshake(fake, TcpTlsConnector(route=via(proxy.url())))
    assert peers(fake) == [proxy.outgoing]
    assert f"CONNECT 127.0.0.1:{fake.port} HTTP/1.1" in proxy.log_text()


async def test_http_connect_with_basic_auth(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with fake_exchange() as fake, open_tinyproxy(tmp_path, auth=AUTH) as proxy:
            await handshake(fake, TcpTlsConnector(route=via(proxy.url())))
    assert peers(fake) == [proxy.outgoing]


async def test_http_connect_wrong_password_names_the_hop_and_never_goes_direct(
    tmp_path: Path,
) -> None:
    with trio.fail_after(DEADLINE):
        async with fake_exchange() as fake, open_tinyproxy(tmp_path, auth=AUTH) as proxy:
            connector = TcpTlsConnector(route=via(proxy.url(password="wrong")))
            with pytest.raises(ProxyRejected) as caught:
                await handshake(fake, connector)
    error = caught.value
    assert str(error) == (
        f"proxy hop 1 of 1 (http://alice:***@127.0.0.1:{proxy.port}) rejected the "
        "credentials: HTTP 401 Unauthorized (asked to connect to "
        f"127.0.0.1:{fake.port})"
    )
    assert (error.hop, error.index) == (f"http://alice:***@127.0.0.1:{proxy.port}", 1)
    assert fake.sessions == []  # no fallback to a direct connection
    assert "wrong" not in str(error)


async def test_http_connect_without_credentials_when_required(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with fake_exchange() as fake, open_tinyproxy(tmp_path, auth=AUTH) as proxy:
            bare = f"http://127.0.0.1:{proxy.port}"
            with pytest.raises(ProxyRejected, match=r"rejected the credentials: HTTP 407"):
                await handshake(fake, TcpTlsConnector(route=via(bare)))
    assert fake.sessions == []


async def test_http_proxy_forbidding_the_port_is_configuration_shaped(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            fake_exchange() as fake,
            open_tinyproxy(tmp_path, connect_ports=[443]) as proxy,
        ):
            with pytest.raises(ProxyRejected, match=r"answered: HTTP 403 "):
                await handshake(fake, TcpTlsConnector(route=via(proxy.url())))
    assert fake.sessions == []


async def test_socks5_with_user_and_password(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with fake_exchange() as fake, open_microsocks(tmp_path, auth=AUTH) as proxy:
            await handshake(fake, TcpTlsConnector(route=via(proxy.url())))
    assert peers(fake) == [proxy.outgoing]


async def test_socks5_wrong_password(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with fake_exchange() as fake, open_microsocks(tmp_path, auth=AUTH) as proxy:
            connector = TcpTlsConnector(route=via(proxy.url(password="nope")))
            with pytest.raises(ProxyRejected) as caught:
                await handshake(fake, connector)
    assert str(caught.value) == (
        f"proxy hop 1 of 1 (socks5://alice:***@127.0.0.1:{proxy.port}) rejected the "
        "credentials: Username and password authentication failure (asked to connect to "
        f"127.0.0.1:{fake.port})"
    )
    assert fake.sessions == []


# Not socks4a: Dante speaks SOCKS4 without the 4a extension (it tries to connect to
# 0.0.0.1, the 4a marker address), and no other daemon here speaks SOCKS4 at all.
@pytest.mark.parametrize("scheme", ["socks4", "socks5", "socks5h"])
async def test_dante_socks4_and_socks5(tmp_path: Path, scheme: str) -> None:
    with trio.fail_after(DEADLINE):
        async with fake_exchange() as fake, open_danted(tmp_path) as proxy:
            connector = TcpTlsConnector(route=via(proxy.url(scheme=scheme)))
            # A name, so that socks4a/socks5h have the proxy resolve it.
            await handshake(fake, connector, url=f"ws://localhost:{fake.port}/ws")
    assert peers(fake) == [proxy.outgoing]
    passed = re.compile(
        rf"tcp/connect \[: 127\.0\.0\.1\.\d+ 127\.0\.0\.1\.{proxy.port} -> "
        rf"{re.escape(proxy.outgoing)}\.\d+ 127\.0\.0\.1\.{fake.port}"
    )
    assert passed.search(proxy.log_text()), proxy.log_text()


async def test_a_two_hop_chain_goes_through_both_in_order(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            fake_exchange() as fake,
            open_microsocks(tmp_path, auth=AUTH) as first,
            open_tinyproxy(tmp_path, auth=("bob", "other-pw")) as second,
        ):
            await handshake(fake, TcpTlsConnector(route=via(first.url(), second.url())))
    # The fake was reached from the second hop, which was reached from the first.
    assert peers(fake) == [second.outgoing]
    log = second.log_text()
    assert re.search(rf"Connect \(file descriptor \d+\): {re.escape(first.outgoing)}\b", log), log
    assert f"CONNECT 127.0.0.1:{fake.port} HTTP/1.1" in log


async def test_a_dead_second_hop_is_named(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with fake_exchange() as fake, open_microsocks(tmp_path) as first:
            async with open_tinyproxy(tmp_path) as second:
                dead = second.url()
            with pytest.raises(ProxyError) as caught:
                await handshake(fake, TcpTlsConnector(route=via(first.url(), dead)))
    error = caught.value
    assert not isinstance(error, ProxyRejected)
    assert (error.index, error.hop) == (1, f"socks5://127.0.0.1:{first.port}")
    assert str(error) == (
        f"proxy hop 1 of 2 (socks5://127.0.0.1:{first.port}) answered: SOCKS5 reply 0x05 "
        f"Connection refused by destination host (asked to connect to 127.0.0.1:{second.port})"
    )
    assert fake.sessions == []


async def test_an_unreachable_first_hop(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with fake_exchange() as fake:
            async with open_tinyproxy(tmp_path) as gone:
                url = gone.url()
            with pytest.raises(ProxyError) as caught:
                await handshake(fake, TcpTlsConnector(route=via(url)))
    assert str(caught.value).startswith(
        f"proxy hop 1 of 1 (http://127.0.0.1:{gone.port}) cannot be reached: "
    )
    assert caught.value.reason.startswith("cannot be reached: ")
    assert fake.sessions == []


async def test_a_silent_hop_times_out_by_name(tmp_path: Path) -> None:
    # A listener that accepts and never answers: the SOCKS greeting waits forever.
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    async with listener:
        with trio.fail_after(DEADLINE):
            async with fake_exchange() as fake:
                connector = TcpTlsConnector(route=via(f"socks5://127.0.0.1:{port}"))
                with pytest.raises(ProxyError) as caught:
                    await handshake(fake, connector, connect_timeout=2.0)
    assert str(caught.value) == (
        f"proxy hop 1 of 1 (socks5://127.0.0.1:{port}) timed out after 1.9 s (asked to "
        f"connect to {fake.url})"
    )
    assert fake.sessions == []


async def test_proxy_helpers_fail_with_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proxies, "_binary", _missing)
    with pytest.raises(ProxyUnavailable, match=r"apt-get install -y dante-server$"):
        async with open_danted(tmp_path):
            pass


def _missing(name: str, package: str) -> str:
    raise ProxyUnavailable(
        f"{name} is not installed; install it with: apt-get install -y {package}"
    )


def test_running_proxy_urls() -> None:
    proxy = RunningProxy(
        kind="x",
        scheme="socks5",
        host="127.0.0.1",
        port=1,
        outgoing="127.0.0.9",
        username="a b",
        password="p@ss",
        log=Path("/nonexistent"),
    )
    assert proxy.url() == "socks5://a%20b:p%40ss@127.0.0.1:1"
    assert proxy.url(scheme="socks4a", password="") == "socks4a://a%20b:@127.0.0.1:1"
    assert proxy.log_text() == ""


async def test_connect_errors_are_connect_errors() -> None:
    assert issubclass(ProxyError, ConnectError)
    assert issubclass(ProxyRejected, ProxyError)
