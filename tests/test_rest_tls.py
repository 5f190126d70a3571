"""REST over TLS: verified against a trustme CA, refused for an untrusted or wrong-host
certificate, and TLS done by the route's opener (end to end through any proxy)."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
import trio

from actors import ConnectError
from actors.net.rest import RestClient, RetryPolicy, WireTimes, open_direct_stream
from supervisor.testing.fakes.rest import Reply, open_fake_rest

# trustme is in the test extra (added with the proxy routes); without it, say how to get it.
trustme = pytest.importorskip("trustme", reason="pip install trustme (the test extra has it)")

DEADLINE = 60.0
ONCE = RetryPolicy(attempts=1)


def _server_context(ca: Any, *identities: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*identities).configure_cert(context)
    return context


def _client_context(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_https_is_verified_against_the_given_ca_and_done_by_the_opener(
    autojump_clock: Any,
) -> None:
    ca = trustme.CA()
    calls: list[tuple[Any, ...]] = []
    client_context = _client_context(ca)

    async def opener(
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        timeout: float | None,  # noqa: ASYNC109
    ) -> trio.abc.Stream:
        calls.append((host, ssl_context is client_context, server_hostname))
        return await open_direct_stream(
            host, port, ssl_context=ssl_context, server_hostname=server_hostname, timeout=timeout
        )

    with trio.fail_after(DEADLINE):
        async with open_fake_rest(ssl_context=_server_context(ca, "127.0.0.1")) as fake:
            fake.route("/api/v3/time", Reply(body={"serverTime": 1}))
            async with RestClient(
                "binance", fake.url, ssl_context=client_context, opener=opener
            ) as client:
                assert await client.get("/api/v3/time") == {"serverTime": 1}
                assert await client.get("/api/v3/time") == {"serverTime": 1}
        assert fake.url.startswith("https://127.0.0.1:")
        assert fake.accepts == 1
        assert calls == [("127.0.0.1", True, "127.0.0.1")]


async def test_an_untrusted_certificate_is_refused(autojump_clock: Any) -> None:
    ca = trustme.CA()
    with trio.fail_after(DEADLINE):
        async with open_fake_rest(ssl_context=_server_context(ca, "127.0.0.1")) as fake:
            fake.route("/api/v3/time", Reply(body={"serverTime": 1}))
            # Default: certifi's roots, which do not include the test CA.
            async with RestClient("binance", fake.url, retry=ONCE) as client:
                with pytest.raises(ConnectError, match=r"certificate verify failed") as caught:
                    await client.get("/api/v3/time")
            async with RestClient(
                "binance", fake.url, retry=ONCE, ssl_context=_client_context(trustme.CA())
            ) as client:
                with pytest.raises(ConnectError, match=r"unable to get local issuer certificate"):
                    await client.get("/api/v3/time")
        assert str(caught.value).startswith(f"cannot connect to {fake.url}/api/v3/time: ")
        assert fake.requests == []


async def test_a_certificate_for_another_host_is_refused(autojump_clock: Any) -> None:
    ca = trustme.CA()
    with trio.fail_after(DEADLINE):
        server = _server_context(ca, "api.binance.com")
        async with open_fake_rest(ssl_context=server) as fake:
            client = RestClient("binance", fake.url, retry=ONCE, ssl_context=_client_context(ca))
            async with client:
                with pytest.raises(ConnectError, match=r"IP address mismatch"):
                    await client.get("/api/v3/time")
        assert fake.requests == []


async def test_wire_times_leave_out_the_connect_and_the_tls_handshake(autojump_clock: Any) -> None:
    ca = trustme.CA()
    with trio.fail_after(DEADLINE):
        async with open_fake_rest(ssl_context=_server_context(ca, "127.0.0.1")) as fake:
            # A far venue: the handshake takes 2 s, the answer 0.5 s more.
            fake.accept_delay = 2.0
            fake.route("/api/v3/time", Reply(body={"serverTime": 1}, delay=0.5))
            async with RestClient("binance", fake.url, ssl_context=_client_context(ca)) as client:
                first = WireTimes()
                assert await client.get("/api/v3/time", wire=first) == {"serverTime": 1}
                assert (first.sent, first.answered) == (2.0, 2.5)
                # On the pooled connection there is no handshake left to leave out.
                second = WireTimes()
                await client.get("/api/v3/time", wire=second)
                assert (second.sent, second.answered) == (2.5, 3.0)
