"""The REST client end to end: real sockets on loopback against the fake REST server,
on the Trio MockClock (the server runs in the same trio run, so autojump stays exact)."""

from __future__ import annotations

import datetime
import email.utils
import pathlib
import random
import socket
import ssl
from typing import Any

import msgspec
import pytest
import trio

from actors import ConnectError, ConnectionLost
from actors.net.rest import (
    RateLimited,
    RestClient,
    RestClients,
    RestError,
    RestTimeouts,
    RetryPolicy,
    open_direct_stream,
)
from supervisor.testing.fakes.rest import DEFAULT_EPOCH, FakeRest, Reply, open_fake_rest

DATA = pathlib.Path(__file__).parent / "data" / "rest"
DEADLINE = 3600.0


def _fixture(name: str) -> Any:
    return msgspec.json.decode((DATA / name).read_bytes())


class HalfRandom(random.Random):
    """Jitter at the middle: delays are 3/4 of their cap (0.375, 0.75, 1.5, ...)."""

    def random(self) -> float:
        return 0.5


def _client(fake: FakeRest, venue: str = "binance", **kwargs: Any) -> RestClient:
    return RestClient(venue, fake.url, rng=HalfRandom(), **kwargs)


def _times(fake: FakeRest) -> list[float]:
    return [request.at for request in fake.requests]


async def test_one_pooled_connection_serves_every_request(autojump_clock: Any) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as fake, _client(fake) as client:
            fake.route("/api/v3/time", Reply(body=_fixture("binance_time.json")))
            fake.route("/api/v3/ping", Reply(body=_fixture("binance_ping.json")))
            answers = [await client.get("/api/v3/time") for _ in range(5)]
            assert await client.get("/api/v3/ping") == {}
        assert answers == [{"serverTime": 1499827319559}] * 5
        assert fake.accepts == 1
        assert [r.connection for r in fake.requests] == [1] * 6


async def test_the_route_opener_is_called_with_the_contracts_arguments(
    autojump_clock: Any,
) -> None:
    calls: list[tuple[Any, ...]] = []

    async def opener(
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        timeout: float | None,  # noqa: ASYNC109
    ) -> trio.abc.Stream:
        calls.append((host, port, ssl_context, server_hostname, timeout))
        return await open_direct_stream(
            host, port, ssl_context=ssl_context, server_hostname=server_hostname, timeout=timeout
        )

    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as fake:
            fake.route("/api/v3/time", Reply(body={"serverTime": 1}))
            timeouts = RestTimeouts(connect=4.0, read=5.0, total=6.0)
            async with _client(fake, opener=opener, timeouts=timeouts) as client:
                await client.get("/api/v3/time")
                await client.get("/api/v3/time")
            port = int(fake.url.rsplit(":", 1)[1])
        # Plain http: no TLS, one connection for both requests.
        assert calls == [("127.0.0.1", port, None, None, 4.0)]


async def test_5xx_is_retried_with_capped_jittered_backoff(autojump_clock: Any) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as fake, _client(fake) as client:
            fake.script("/api/v3/time", Reply(status=503, body=b""), Reply(status=502, body=b""))
            fake.route("/api/v3/time", Reply(body={"serverTime": 1}))
            assert await client.get("/api/v3/time") == {"serverTime": 1}
            assert trio.current_time() == 1.125
        assert _times(fake) == [0.0, 0.375, 1.125]


async def test_5xx_every_time_raises_the_last_error_from_all_attempts(autojump_clock: Any) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as fake, _client(fake) as client:
            fake.route("/api/v3/time", Reply(status=503, body=b"<html>busy</html>"))
            with pytest.raises(RestError) as caught:
                await client.get("/api/v3/time")
            assert trio.current_time() == 2.625
        error = caught.value
        assert (error.status, error.venue_code) == (503, None)
        assert str(error) == (
            f"{fake.url}/api/v3/time: HTTP 503: answer is not JSON: '<html>busy</html>'"
        )
        assert isinstance(error.__cause__, ExceptionGroup)
        assert len(error.__cause__.exceptions) == 4
        assert _times(fake) == [0.0, 0.375, 1.125, 2.625]


async def test_a_post_is_not_retried_after_a_5xx(autojump_clock: Any) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as fake, _client(fake) as client:
            fake.route("/api/v3/order", Reply(status=500, body={"code": -1000, "msg": "unknown"}))
            with pytest.raises(RestError, match=r"HTTP 500 code -1000: unknown$"):
                await client.request("POST", "/api/v3/order", json={"x": 1})
        assert _times(fake) == [0.0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_retried_then_raised_as_connect_error(
    autojump_clock: Any,
) -> None:
    port = _closed_port()
    with trio.fail_after(DEADLINE):
        async with RestClient("binance", f"http://127.0.0.1:{port}", rng=HalfRandom()) as client:
            with pytest.raises(ConnectError) as caught:
                await client.get("/api/v3/time")
            assert trio.current_time() == 2.625
    assert str(caught.value).startswith(f"cannot connect to http://127.0.0.1:{port}/api/v3/time: ")
    assert len(caught.value.__cause__.exceptions) == 4  # type: ignore[union-attr]
    # Nothing was sent, so nothing stays counted against the budget.
    assert client.limiter.budget("weight").used == 0  # type: ignore[attr-defined]


class HopRefused(ConnectError):
    """Stands for the route's ProxyRejected: an opener's own ConnectError subclass."""


async def test_the_openers_own_connect_error_reaches_the_caller(autojump_clock: Any) -> None:
    async def opener(
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        timeout: float | None,  # noqa: ASYNC109
    ) -> trio.abc.Stream:
        raise HopRefused("proxy socks5://***@127.0.0.1:1080 rejected the credentials")

    with trio.fail_after(DEADLINE):
        async with RestClient(
            "binance", "https://api.binance.com", opener=opener, rng=HalfRandom()
        ) as client:
            with pytest.raises(HopRefused, match=r"^proxy socks5://\*\*\*@127\.0\.0\.1:1080 "):
                await client.get("/api/v3/time")
            assert trio.current_time() == 2.625


async def test_429_holds_the_whole_host_for_retry_after(autojump_clock: Any) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as fake, _client(fake) as client:
            fake.script(
                "/api/v3/time",
                Reply(
                    status=429,
                    body={"code": -1003, "msg": "Too much"},
                    headers={"Retry-After": "7"},
                ),
            )
            fake.route("/api/v3/time", Reply(body={"serverTime": 1}))
            fake.route("/api/v3/exchangeInfo", Reply(body={"symbols": []}))
            done: list[tuple[str, float]] = []

            async def call(path: str) -> None:
                await client.get(path)
                done.append((path, trio.current_time()))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, "/api/v3/time")
                await fake.wait_until(lambda: client.limiter.hold_until > 0)
                # Another endpoint of the same host, asked during the hold, waits too.
                nursery.start_soon(call, "/api/v3/exchangeInfo")
        assert sorted(done) == [("/api/v3/exchangeInfo", 7.0), ("/api/v3/time", 7.0)]
        assert _times(fake) == [0.0, 7.0, 7.0]


async def test_418_ban_with_an_http_date_holds_and_max_wait_raises_rate_limited(
    autojump_clock: Any,
) -> None:
    until = email.utils.format_datetime(
        DEFAULT_EPOCH + datetime.timedelta(seconds=120), usegmt=True
    )
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as fake, _client(fake) as client:
            fake.script(
                "/api/v3/time",
                Reply(
                    status=418,
                    body={"code": -1003, "msg": "banned"},
                    headers={"Retry-After": until},
                ),
            )
            fake.route("/api/v3/time", Reply(body={"serverTime": 1}))
            with pytest.raises(RateLimited) as caught:
                await client.get("/api/v3/time", max_wait=10.0)
            assert (caught.value.wait, caught.value.status) == (120.0, 418)
            assert str(caught.value) == (
                "127.0.0.1: rate limited (IP banned (HTTP 418)); the next request could go in "
                "120.000 s, beyond max_wait; retry later or pass a larger max_wait"
            )
            # During the ban nothing is sent at all.
            with pytest.raises(RateLimited):
                await client.get("/api/v3/ping", max_wait=0.0)
            assert len(fake.requests) == 1
            # Without max_wait the call waits out the ban.
            assert await client.get("/api/v3/time") == {"serverTime": 1}
            assert trio.current_time() == 120.0
        assert _times(fake) == [0.0, 120.0]


async def test_used_weight_header_makes_the_next_request_wait_for_the_next_minute(
    autojump_clock: Any,
) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as fake, _client(fake) as client:
            fake.weigh({"/api/v3/time": 1, "/api/v3/avgPrice": 10}, limit=6000)
            fake.route("/api/v3/time", Reply(body={"serverTime": 1}))
            fake.route("/api/v3/avgPrice", Reply(body={"mins": 5, "price": "1"}))
            fake.used = 5989  # other users of the IP
            await client.get("/api/v3/time")  # the fake now says 5,990
            await client.get("/api/v3/avgPrice", weight=10)  # 6,000: exactly the limit
            assert trio.current_time() == 0.0
            await client.get("/api/v3/avgPrice", weight=10)  # 6,010 would exceed it
            assert trio.current_time() == 60.0
            fake.used = 5991  # a minute later, someone else used most of it again
            await client.get("/api/v3/time")
            await client.get("/api/v3/avgPrice", weight=10)
            assert trio.current_time() == 120.0
        assert _times(fake) == [0.0, 0.0, 60.0, 60.0, 120.0]
        assert fake.statuses == [200] * 5


async def test_the_fake_budget_answers_429_and_the_client_honours_it(autojump_clock: Any) -> None:
    # A second client on the same IP (not sharing our limiter) spent the budget: the
    # fake answers 429 with Retry-After to the next window; our client holds the host.
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as fake, _client(fake) as client:
            fake.weigh({"/api/v3/depth": 50}, limit=6000)
            fake.route("/api/v3/depth", Reply(body={"lastUpdateId": 1, "bids": [], "asks": []}))
            fake.used = 5990
            answer = await client.get("/api/v3/depth", params={"symbol": "X", "limit": 1000})
            assert answer["lastUpdateId"] == 1
            assert trio.current_time() == 60.0
        assert _times(fake) == [0.0, 60.0]
        assert fake.statuses == [429, 200]


@pytest.mark.parametrize(
    ("venue", "status", "body", "expected"),
    [
        (
            "binance",
            400,
            _fixture("binance_error_invalid_symbol.json"),
            r"HTTP 400 code -1121: Invalid symbol\.",
        ),
        (
            "binance_usdm",
            400,
            _fixture("binance_usdm_error_depth_limit.json"),
            r"HTTP 400 code -4021: 7 is not valid depth limit",
        ),
        (
            "okx",
            200,
            {"code": "51001", "msg": "Instrument ID does not exist", "data": []},
            r"HTTP 200 code '51001': Instrument ID does not exist",
        ),
        (
            "deribit",
            400,
            _fixture("deribit_error_invalid_params.json"),
            r"HTTP 400 code -32602: Invalid params",
        ),
        (
            "bybit",
            200,
            {"retCode": 10001, "retMsg": "params error", "result": {}},
            r"HTTP 200 code 10001: params error",
        ),
    ],
)
async def test_errors_are_typed_per_venue_and_urls_masked(
    autojump_clock: Any, venue: str, status: int, body: Any, expected: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as fake, _client(fake, venue) as client:
            fake.route("/x", Reply(status=status, body=body))
            with pytest.raises(
                RestError, match=rf"^{fake.url}/x\?signature=\*\*\*&symbol=BTCUSDT: {expected}$"
            ) as caught:
                await client.get("/x", params={"signature": "SECRET", "symbol": "BTCUSDT"})
        assert caught.value.status == status
        assert "SECRET" not in repr(caught.value.__cause__)
        assert _times(fake) == [0.0]  # 4xx and error codes are never retried


async def test_a_rate_limit_code_in_the_body_holds_then_retries(autojump_clock: Any) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as fake, _client(fake, "deribit") as client:
            fake.script(
                "/api/v2/public/get_time",
                Reply(status=400, body=_fixture("deribit_error_too_many_requests.json")),
            )
            fake.route("/api/v2/public/get_time", Reply(body=_fixture("deribit_get_time.json")))
            answer = await client.get("/api/v2/public/get_time")
        assert answer["result"] == 1733338800000
        assert _times(fake) == [0.0, 1.0]


async def test_slow_answers_hit_the_read_then_the_total_timeout(autojump_clock: Any) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as fake:
            fake.route("/api/v3/time", Reply(body={"serverTime": 1}, delay=40.0))
            once = RetryPolicy(attempts=1)
            async with _client(fake, retry=once, timeouts=RestTimeouts(read=10.0)) as client:
                with pytest.raises(ConnectionLost, match=r"^GET .*/api/v3/time timed out: "):
                    await client.get("/api/v3/time")
                assert trio.current_time() == 10.0
            start = trio.current_time()
            slow = RestTimeouts(read=100.0, total=30.0)
            async with _client(fake, retry=once, timeouts=slow) as client:
                with pytest.raises(ConnectionLost, match=r"^GET .*/api/v3/time timed out: "):
                    await client.get("/api/v3/time")
                assert trio.current_time() == start + 30.0


async def test_a_dropped_keep_alive_connection_is_retried_on_a_new_one(autojump_clock: Any) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as fake, _client(fake) as client:
            fake.script("/api/v3/time", Reply(body={"serverTime": 1}, close=True))
            fake.route("/api/v3/time", Reply(body={"serverTime": 2}))
            assert await client.get("/api/v3/time") == {"serverTime": 1}
            assert await client.get("/api/v3/time") == {"serverTime": 2}
        assert fake.accepts == 2


async def test_cancelled_waiters_give_their_weight_back(autojump_clock: Any) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_rest() as fake, _client(fake) as client:
            fake.route("/api/v3/time", Reply(body={"serverTime": 1}))
            await client.get("/api/v3/time", weight=6000)
            with trio.move_on_after(5.0):
                await client.get("/api/v3/time", weight=100)  # waits for t=60
            window = client.limiter.budget("weight")
            assert window.used == 0  # type: ignore[attr-defined]
            assert trio.current_time() == 5.0
        assert _times(fake) == [0.0]


async def test_rest_clients_share_clients_and_budgets(autojump_clock: Any) -> None:
    async with open_fake_rest() as fake, RestClients() as clients:
        first = clients.client("binance", fake.url)
        assert clients.client("binance", fake.url + "/") is first
        other_tls = clients.client("binance", fake.url, tls="ca_file=x.pem")
        other_route = clients.client("binance", fake.url, route="socks5://proxy:1080")
        assert other_tls is not first and other_tls.limiter is first.limiter
        assert other_route.limiter is not first.limiter
        fake.route("/api/v3/time", Reply(body={"serverTime": 1}))
        await other_tls.get("/api/v3/time")
    with pytest.raises(
        RuntimeError,
        match=r"^<RestClient binance http://127\.0\.0\.1:\d+> is closed; "
        r"REST calls need an open client$",
    ):
        await first.get("/api/v3/time")
    with pytest.raises(RuntimeError, match=r"^RestClients is closed; no new REST clients$"):
        clients.client("binance", fake.url)


def test_bad_venue_and_base_url_are_refused() -> None:
    with pytest.raises(
        ValueError,
        match=r"^unknown REST venue 'kraken'; known: binance, binance_usdm, bybit, deribit, okx$",
    ):
        RestClient("kraken", "https://api.kraken.com")
    with pytest.raises(
        ValueError,
        match=r"^'wss://\*\*\*@x\.com' is not a REST base URL \(expected http\(s\)://host\)$",
    ):
        RestClient("binance", "wss://key:secret@x.com")
