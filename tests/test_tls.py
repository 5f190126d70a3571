"""TLS to a fake exchange serving trustme certificates, direct and through real proxies."""

from __future__ import annotations

import datetime
import functools
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
import trio
import trustme
from test_proxies import DEADLINE, handshake, peers, via

from actors import ConnectError, ProxyError
from actors.net import TcpTlsConnector, TlsSettings, build_ssl_context
from supervisor.testing import open_fake_exchange
from supervisor.testing.fake import FakeExchange
from supervisor.testing.proxies import free_port, open_microsocks, open_tinyproxy


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@asynccontextmanager
async def tls_fake(cert: trustme.LeafCert) -> AsyncIterator[FakeExchange]:
    async with open_fake_exchange(
        name="venue", interval=60.0, ssl_context=server_context(cert)
    ) as fake:
        yield fake


def settings(**values: object) -> TlsSettings:
    return msgspec.convert(values, type=TlsSettings)


async def test_a_trusted_certificate_is_accepted(ca: trustme.CA, ca_file: str) -> None:
    with trio.fail_after(DEADLINE):
        async with tls_fake(ca.issue_cert("127.0.0.1")) as fake:
            await handshake(fake, TcpTlsConnector(tls=settings(ca_file=ca_file)))
    assert fake.url.startswith("wss://127.0.0.1:")
    assert peers(fake) == ["127.0.0.1"]


async def test_server_hostname_sets_sni_and_the_name_checked(ca: trustme.CA, ca_file: str) -> None:
    tls = settings(ca_file=ca_file, server_hostname="venue.example")
    with trio.fail_after(DEADLINE):
        async with tls_fake(ca.issue_cert("venue.example")) as fake:
            await handshake(fake, TcpTlsConnector(tls=tls))
    assert len(fake.sessions) == 1


async def test_an_untrusted_issuer_is_refused_with_the_reason(ca: trustme.CA) -> None:
    with trio.fail_after(DEADLINE):
        async with tls_fake(ca.issue_cert("127.0.0.1")) as fake:
            with pytest.raises(ConnectError) as caught:
                await handshake(fake, TcpTlsConnector())
    assert str(caught.value) == (
        f"TLS certificate of {fake.url} refused: untrusted issuer (unable to get local "
        "issuer certificate, verify code 20)"
    )
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert fake.sessions == []


async def test_a_wrong_host_is_refused_with_the_reason(ca: trustme.CA, ca_file: str) -> None:
    with trio.fail_after(DEADLINE):
        async with tls_fake(ca.issue_cert("other.example")) as fake:
            with pytest.raises(ConnectError) as caught:
                await handshake(fake, TcpTlsConnector(tls=settings(ca_file=ca_file)))
    assert str(caught.value) == (
        f"TLS certificate of {fake.url} refused: wrong host (IP address mismatch, "
        "certificate is not valid for '127.0.0.1'., verify code 64)"
    )


async def test_an_expired_certificate_is_refused_with_the_reason(
    ca: trustme.CA, ca_file: str
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    cert = ca.issue_cert(
        "127.0.0.1",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    with trio.fail_after(DEADLINE):
        async with tls_fake(cert) as fake:
            with pytest.raises(ConnectError) as caught:
                await handshake(fake, TcpTlsConnector(tls=settings(ca_file=ca_file)))
    assert str(caught.value) == (
        f"TLS certificate of {fake.url} refused: expired (certificate has expired, verify code 10)"
    )


async def test_tls_through_an_http_proxy(ca: trustme.CA, ca_file: str, tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            tls_fake(ca.issue_cert("127.0.0.1")) as fake,
            open_tinyproxy(tmp_path, auth=("alice", "pw")) as proxy,
        ):
            connector = TcpTlsConnector(route=via(proxy.url()), tls=settings(ca_file=ca_file))
            await handshake(fake, connector)
    assert peers(fake) == [proxy.outgoing]


async def test_a_refused_certificate_through_a_chain_names_the_route(
    ca: trustme.CA, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            tls_fake(ca.issue_cert("127.0.0.1")) as fake,
            open_microsocks(tmp_path, auth=("alice", "pw")) as first,
            open_tinyproxy(tmp_path) as second,
        ):
            connector = TcpTlsConnector(route=via(first.url(), second.url()))
            with pytest.raises(ConnectError) as caught:
                await handshake(fake, connector)
    assert str(caught.value) == (
        f"TLS certificate of {fake.url} via socks5://alice:***@127.0.0.1:{first.port} -> "
        f"http://127.0.0.1:{second.port} refused: untrusted issuer (unable to get local "
        "issuer certificate, verify code 20)"
    )
    assert fake.sessions == []


async def test_verify_false_connects_and_warns_at_every_connect(
    ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    connector = TcpTlsConnector(tls=settings(verify=False), name="deribit-main")
    with trio.fail_after(DEADLINE):
        async with tls_fake(ca.issue_cert("other.example")) as fake:
            with caplog.at_level(logging.WARNING, logger="marketprism.connection"):
                await handshake(fake, connector)
                await handshake(fake, connector)
    warnings = [r.getMessage() for r in caplog.records if "verification is OFF" in r.getMessage()]
    assert (
        warnings
        == [
            f"deribit-main: TLS certificate verification is OFF for {fake.url} (tls.verify = "
            "false); anyone on the route can read and change this feed"
        ]
        * 2
    )


async def test_plaintext_off_this_machine_warns_at_every_connect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Through a loopback proxy that is not listening: nothing leaves this machine.
    connector = TcpTlsConnector(route=via(f"http://127.0.0.1:{free_port()}"), name="feed")
    with caplog.at_level(logging.WARNING, logger="marketprism.connection"):
        for _ in range(2):
            with pytest.raises(ProxyError):
                await connector("ws://stream.example.com/ws")
    assert [r.getMessage() for r in caplog.records if "plaintext" in r.getMessage()] == [
        "feed: plaintext ws:// to ws://stream.example.com/ws (allow_plaintext); anyone on "
        "the route can read and change this feed"
    ] * 2


def test_contexts_are_built_once_per_distinct_settings(ca_file: str) -> None:
    a = build_ssl_context(settings(ca_file=ca_file))
    assert build_ssl_context(settings(ca_file=ca_file)) is a
    assert build_ssl_context(None) is build_ssl_context(TlsSettings())
    assert build_ssl_context(settings(ca_file=ca_file, verify=False)) is not a
    off = build_ssl_context(settings(verify=False))
    assert (off.check_hostname, off.verify_mode) == (False, ssl.CERT_NONE)
    assert (a.check_hostname, a.verify_mode) == (True, ssl.CERT_REQUIRED)


# -- client certificates ---------------------------------------------------------------


def mutual_context(cert: trustme.LeafCert, client_ca: trustme.CA) -> ssl.SSLContext:
    """A server context that requires a client certificate issued by ``client_ca``."""
    context = server_context(cert)
    context.verify_mode = ssl.CERT_REQUIRED
    client_ca.configure_trust(context)
    return context


async def test_a_client_certificate_is_presented_when_configured(
    ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    client_ca = trustme.CA()
    client = client_ca.issue_cert("bot@example.com")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    with_cert = settings(ca_file=ca_file, cert_file=str(cert_file), key_file=str(key_file))
    context = mutual_context(ca.issue_cert("127.0.0.1"), client_ca)
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(name="venue", interval=60.0, ssl_context=context) as fake:
            await handshake(fake, TcpTlsConnector(tls=with_cert))
            assert len(fake.sessions) == 1  # the server verified our certificate
            # Without one, the server refuses (TLS 1.3: after our side of the handshake,
            # so the WebSocket upgrade is what fails).
            with pytest.raises(ConnectError):
                await handshake(fake, TcpTlsConnector(tls=settings(ca_file=ca_file)))
    assert len(fake.sessions) == 1


# -- https:// proxies -------------------------------------------------------------------


@asynccontextmanager
async def https_front(cert: trustme.LeafCert, backend_port: int) -> AsyncIterator[int]:
    """An ``https://`` proxy: TLS (``cert``) terminated in front of a real tinyproxy on
    ``backend_port``, bytes piped both ways. Yields the port it listens on."""
    context = server_context(cert)

    async def pump(source: trio.abc.Stream, sink: trio.abc.Stream, done: trio.CancelScope) -> None:
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()

    async def handle(client: trio.SocketStream) -> None:
        tls = trio.SSLStream(client, context, server_side=True)
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError:
            await trio.aclose_forcefully(client)  # the client refused our certificate
            return
        backend = await trio.open_tcp_stream("127.0.0.1", backend_port)
        async with backend, tls, trio.open_nursery() as nursery:
            nursery.start_soon(pump, tls, backend, nursery.cancel_scope)
            nursery.start_soon(pump, backend, tls, nursery.cancel_scope)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1")
        )
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def test_an_https_proxy_is_verified_with_the_connections_ca_file(
    ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            open_fake_exchange(name="venue", interval=60.0) as fake,
            open_tinyproxy(tmp_path, connect_ports=[fake.port]) as proxy,
            https_front(ca.issue_cert("127.0.0.1"), proxy.port) as port,
        ):
            route = via(f"https://127.0.0.1:{port}")
            await handshake(fake, TcpTlsConnector(route=route, tls=settings(ca_file=ca_file)))
            assert peers(fake) == [proxy.outgoing]  # through tinyproxy, behind TLS
            # Without the private CA, the proxy's certificate is refused, by hop.
            with pytest.raises(ProxyError) as caught:
                await handshake(fake, TcpTlsConnector(route=route))
    assert str(caught.value).startswith(
        f"proxy hop 1 of 1 (https://127.0.0.1:{port}) broke the connection: "
        "[SSL: CERTIFICATE_VERIFY_FAILED]"
    )
    assert len(fake.sessions) == 1
