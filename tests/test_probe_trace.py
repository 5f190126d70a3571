"""The route's trace hook (actors.net.route, "Tracing"), against real sockets and proxies.

The hook only reports; these tests prove the events come in order with the right facts
and that a traced connect fails exactly as an untraced one does.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path

import msgspec
import pytest
import trio
import trustme
from test_proxies import AUTH, DEADLINE, via

from actors import ConnectError, ProxyError
from actors.net import build_ssl_context, open_stream
from actors.net.route import DIRECT
from actors.net.tls import TlsSettings
from supervisor.testing.proxies import open_microsocks, open_tinyproxy


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def __call__(self, event: str, info: Mapping[str, object]) -> None:
        self.events.append((event, dict(info)))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]


async def echo_listener() -> tuple[trio.SocketListener, int]:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    return listener, listener.socket.getsockname()[1]


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_a_direct_connect_reports_tcp() -> None:
    listener, port = await echo_listener()
    trace = Recorder()
    async with listener:
        with trio.fail_after(DEADLINE):
            stream = await open_stream(DIRECT, "127.0.0.1", port, trace=trace)
            await stream.aclose()
    assert trace.events == [
        ("tcp.started", {"host": "127.0.0.1", "port": port}),
        ("tcp.complete", {"peer": f"127.0.0.1:{port}"}),
    ]


async def test_a_chain_reports_tcp_to_the_first_hop_then_each_handshake_then_tls(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    listener, port = await echo_listener()
    tls_listener = trio.SSLListener(listener, server)
    trace = Recorder()

    async def serve(stream: trio.abc.Stream) -> None:
        async with stream:
            await stream.receive_some(1)

    with trio.fail_after(DEADLINE):
        async with (
            trio.open_nursery() as nursery,
            open_microsocks(tmp_path, auth=AUTH) as first,
            open_tinyproxy(tmp_path) as second,
        ):
            await nursery.start(trio.serve_listeners, serve, [tls_listener])
            route = via(first.url(), second.url())
            context = build_ssl_context(msgspec.convert({"ca_file": str(ca_file)}, TlsSettings))
            stream = await open_stream(route, "127.0.0.1", port, ssl_context=context, trace=trace)
            await stream.aclose()
            nursery.cancel_scope.cancel()
    assert trace.names == [
        "tcp.started",
        "tcp.complete",
        "proxy.complete",
        "proxy.complete",
        "tls.started",
        "tls.complete",
    ]
    events = dict(trace.events[:2])
    assert events["tcp.started"] == {"host": "127.0.0.1", "port": first.port}
    assert events["tcp.complete"] == {"peer": f"127.0.0.1:{first.port}"}
    assert [info for name, info in trace.events if name == "proxy.complete"] == [
        {"index": 1, "hop": f"socks5://alice:***@127.0.0.1:{first.port}"},
        {"index": 2, "hop": f"http://127.0.0.1:{second.port}"},
    ]
    assert trace.events[4] == ("tls.started", {"server_hostname": "127.0.0.1"})
    tls = trace.events[5][1]["stream"]
    assert isinstance(tls, trio.SSLStream)
    assert tls is stream


async def test_an_unreachable_first_hop_fails_as_without_a_trace(refusing_port: int) -> None:
    route = via(f"http://127.0.0.1:{refusing_port}")
    trace = Recorder()
    with trio.fail_after(DEADLINE):
        with pytest.raises(ProxyError) as traced:
            await open_stream(route, "127.0.0.1", 9, trace=trace)
        with pytest.raises(ProxyError) as untraced:
            await open_stream(route, "127.0.0.1", 9)
    assert str(traced.value) == str(untraced.value)
    assert str(traced.value) == (
        f"proxy hop 1 of 1 (http://127.0.0.1:{refusing_port}) cannot be reached: all "
        f"attempts to connect to 127.0.0.1:{refusing_port} failed (asked to connect to "
        "127.0.0.1:9)"
    )
    assert trace.names == ["tcp.started"]


async def test_a_refused_direct_connect_reports_only_its_start(refusing_port: int) -> None:
    trace = Recorder()
    with (
        trio.fail_after(DEADLINE),
        pytest.raises(ConnectError, match=rf"^cannot connect to 127\.0\.0\.1:{refusing_port}: "),
    ):
        await open_stream(DIRECT, "127.0.0.1", refusing_port, trace=trace)
    assert trace.events == [("tcp.started", {"host": "127.0.0.1", "port": refusing_port})]
