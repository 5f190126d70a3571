"""The status endpoint over real loopback sockets, against a supervisor on memory fakes.

The supervisor runs on the real clock here (the HTTP side is real TCP, which the
MockClock's autojump would race), with short backoffs; tests wait on delivered messages
and on the fake's own state, never on time.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import pytest
import trio
from helpers import RecordingConnector, assert_no_secrets, make_config
from prometheus_client.parser import text_string_to_metric_families

from actors.histogram import DURATION_BOUNDS
from supervisor import RawMessage, Stats, Supervisor, open_supervisor, serve_status
from supervisor.status import StatusAddressInUse, render_metrics, status_document
from supervisor.status._server import DEFAULT_MAX_CONNECTIONS
from supervisor.testing import FakeExchange, open_fake_exchange

FAST_BACKOFF = {"initial": 0.05, "max": 0.1, "reset_after": 60.0}
DEADLINE = 20


@asynccontextmanager
async def status_server(
    *fakes: FakeExchange, **config: Any
) -> AsyncIterator[tuple[Supervisor, httpx.AsyncClient, str]]:
    """A supervisor over ``fakes`` with its status endpoint on 127.0.0.1, and a client."""
    connector = RecordingConnector(*fakes)
    conf = make_config(*fakes, backoff=FAST_BACKOFF, **config)
    async with (
        open_supervisor(conf, connector=connector) as sup,
        trio.open_nursery() as nursery,
    ):
        host, port = await nursery.start(serve_status, sup, "127.0.0.1", 0)
        base = f"http://{host}:{port}"
        async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
            yield sup, client, base
        nursery.cancel_scope.cancel(reason="test done")


async def live_in(sup: Supervisor, session: int) -> None:
    """Wait for a message of fake session ``session`` (so the connection is live in it)."""
    async for msg in sup.messages():
        assert isinstance(msg, RawMessage)
        assert isinstance(msg.data, dict)
        if msg.data["session"] >= session:
            return


def without_at(body: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(body)
    assert isinstance(decoded.pop("at"), float)
    return decoded


async def test_probes_answer_200_when_live() -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=0.02) as fake:
        with trio.fail_after(DEADLINE):
            async with status_server(fake) as (sup, client, _):
                await live_in(sup, 0)
                for path in ("/healthz", "/livez", "/readyz"):
                    response = await client.get(path)
                    assert (response.status_code, response.headers["content-type"]) == (
                        200,
                        "application/json",
                    )
                    assert without_at(response.content) == {"status": "ok", "reasons": []}
                    head = await client.head(path)
                    assert head.status_code == 200
                    assert head.content == b""
                    # The length of the GET body of that moment (``at`` may differ).
                    assert int(head.headers["content-length"]) > 0


async def test_status_is_the_snapshot_keyed_by_connection() -> None:
    async with (
        open_fake_exchange(name="a", transport="memory", interval=0.02) as a,
        open_fake_exchange(name="b", transport="memory", interval=0.02) as b,
    ):
        with trio.fail_after(DEADLINE):
            async with status_server(a, b) as (sup, client, _):
                await live_in(sup, 0)
                response = await client.get("/status")
                assert response.status_code == 200
                assert response.headers["content-type"] == "application/json"
                body = msgspec.json.decode(response.content)
                assert sorted(body) == sorted(Stats.__struct_fields__)
                assert sorted(body["connections"]) == ["a", "b"]
                for name in ("a", "b"):
                    conn = body["connections"][name]
                    assert (conn["name"], conn["exchange"]) == (name, "raw")
                assert body["connections"]["a"]["connects"] == 1
                await sup.stop()
                # Stopped: the final snapshot, byte for byte.
                final = await sup.stats()
                response = await client.get("/status")
                assert response.content == msgspec.json.encode(status_document(final)) + b"\n"
                document = status_document(final)
                assert set(document) == set(final.__struct_fields__)
                assert document["connections"] == {c.name: c for c in final.connections}
                for field in final.__struct_fields__:
                    if field != "connections":
                        assert document[field] == getattr(final, field)
                head = await client.head("/status")
                assert head.content == b""
                assert head.headers["content-length"] == str(len(response.content))
                metrics = await client.get("/metrics")
                assert metrics.content == render_metrics(final)
                assert metrics.headers["content-type"] == (
                    "text/plain; version=0.0.4; charset=utf-8"
                )


async def test_livez_and_readyz_say_stopped_after_the_supervisor_stops() -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=0.02) as fake:
        with trio.fail_after(DEADLINE):
            async with status_server(fake) as (sup, client, _):
                await live_in(sup, 0)
                await sup.stop()
                live = await client.get("/livez")
                ready = await client.get("/readyz")
                health = await client.get("/healthz")
    assert (live.status_code, without_at(live.content)) == (
        503,
        {"status": "stopped", "reasons": []},
    )
    assert (ready.status_code, without_at(ready.content)) == (
        503,
        {"status": "stopped", "reasons": []},
    )
    assert (health.status_code, without_at(health.content)) == (
        503,
        {
            "status": "unhealthy",
            "reasons": [{"connection": "a", "exchange": "raw", "why": "state", "state": "stopped"}],
        },
    )


async def test_healthz_flips_to_503_during_an_outage_and_back() -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=0.02) as fake:
        with trio.fail_after(DEADLINE):
            async with status_server(fake) as (sup, client, _):
                await live_in(sup, 0)
                assert (await client.get("/healthz")).status_code == 200
                fake.refuse(3600.0)
                await fake.close(4000, "maintenance")
                await fake.wait_until(lambda f: f.refused >= 2)
                during = await client.get("/healthz")
                ready = await client.get("/readyz")
                fake.refuse(0.0)
                await live_in(sup, 1)
                after = await client.get("/healthz")
    assert during.status_code == 503
    reasons = without_at(during.content)["reasons"]
    assert len(reasons) == 1
    assert reasons[0]["connection"] == "a"
    assert reasons[0]["why"] == "state"
    assert reasons[0]["state"] in ("backoff", "connecting")
    assert "4000" in reasons[0]["last_error"] or "refused" in reasons[0]["last_error"]
    # Reconnecting within its backoff after having been live: still ready.
    assert (ready.status_code, without_at(ready.content)) == (200, {"status": "ok", "reasons": []})
    assert (after.status_code, without_at(after.content)) == (200, {"status": "ok", "reasons": []})


async def test_readyz_is_503_until_the_first_connect() -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=0.02) as fake:
        fake.refuse(3600.0)
        with trio.fail_after(DEADLINE):
            async with status_server(fake) as (sup, client, _):
                await fake.wait_until(lambda f: f.refused >= 1)
                ready = await client.get("/readyz")
                live = await client.get("/livez")
                fake.refuse(0.0)
                await live_in(sup, 0)
                after = await client.get("/readyz")
    assert ready.status_code == 503
    body = without_at(ready.content)
    assert body["status"] == "not ready"
    assert [(r["connection"], r["why"]) for r in body["reasons"]] == [("a", "never live")]
    assert live.status_code == 200
    assert after.status_code == 200


async def test_a_temporary_connection_does_not_count_when_a_permanent_one_exists() -> None:
    async with (
        open_fake_exchange(name="a", transport="memory", interval=0.02) as a,
        open_fake_exchange(name="t", transport="memory", interval=0.02) as t,
    ):
        t.refuse(3600.0)
        with trio.fail_after(DEADLINE):
            async with status_server(a, t, per_connection={"t": {"restart": "temporary"}}) as (
                sup,
                client,
                _,
            ):
                await live_in(sup, 0)
                await t.wait_until(lambda f: f.refused >= 1)
                health = await client.get("/healthz")
                ready = await client.get("/readyz")
    assert (health.status_code, ready.status_code) == (200, 200)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_parse_and_totals_never_go_down_across_reconnects() -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=0.02) as fake:
        with trio.fail_after(DEADLINE):
            async with status_server(fake) as (sup, client, _):
                await live_in(sup, 0)
                first = samples((await client.get("/metrics")).text)
                await fake.close(4000, "maintenance")
                await live_in(sup, 1)
                await fake.reset()
                await live_in(sup, 2)
                second = samples((await client.get("/metrics")).text)
    totals = sorted(key for key in first if key[0].endswith("_total"))
    labels = (("connection", "a"), ("exchange", "raw"))
    assert totals == sorted(
        (f"marketprism_{name}_total", labels)
        for name in (
            "connects",
            "disconnects",
            "restarts",
            "frames_received",
            "messages",
            "received_bytes",
            "dropped_messages",
            "malformed_frames",
            "gaps",
            "silent_subscriptions",
        )
    )
    for key in totals:
        assert second[key] >= first[key], key
    # The histograms are counters too: every bucket and count, for both, never goes down.
    cumulative = sorted(key for key in first if key[0].endswith(("_bucket", "_count")))
    assert {name for name, _ in cumulative} == {
        f"marketprism_{name}_seconds_{part}"
        for name in ("feed_latency", "probe_rtt")
        for part in ("bucket", "count")
    }
    assert len(cumulative) == 2 * (len(DURATION_BOUNDS) + 1 + 1)
    for key in cumulative:
        assert second[key] >= first[key], key
    assert first[("marketprism_connects_total", labels)] == 1
    assert second[("marketprism_connects_total", labels)] == 3
    assert second[("marketprism_disconnects_total", labels)] == 2
    by_reason = {
        dict(key)["reason"]: value
        for (name, key), value in second.items()
        if name == "marketprism_disconnects_by_reason_total"
    }
    assert sum(by_reason.values()) == 2
    assert (
        second[("marketprism_messages_total", labels)]
        > first[("marketprism_messages_total", labels)]
    )
    states = {
        key[1][-1][1]: value
        for key, value in second.items()
        if key[0] == "marketprism_connection_state"
    }
    assert states == {
        "connecting": 0.0,
        "subscribing": 0.0,
        "live": 1.0,
        "backoff": 0.0,
        "failed": 0.0,
        "stopped": 0.0,
    }
    subscription = {
        dict(key[1])["state"]: value
        for key, value in second.items()
        if key[0] == "marketprism_subscription_state"
    }
    assert sum(subscription.values()) == 1.0
    assert set(subscription) == {"pending", "live", "silent", "failed"}
    assert all(name.startswith("marketprism_") for name, _ in second)


async def test_status_and_metrics_carry_no_planted_secret() -> None:
    secret = "s3cr3t-PaSS"
    async with open_fake_exchange(name="a", transport="memory", interval=0.02) as fake:
        with trio.fail_after(DEADLINE):
            connector = RecordingConnector(fake)
            url = f"{fake.url}?token={secret}"
            conf = make_config(fake, backoff=FAST_BACKOFF, per_connection={"a": {"url": url}})
            async with (
                open_supervisor(conf, connector=connector) as sup,
                trio.open_nursery() as nursery,
            ):
                host, port = await nursery.start(serve_status, sup, "127.0.0.1", 0)
                await live_in(sup, 0)
                async with httpx.AsyncClient(
                    base_url=f"http://{host}:{port}", trust_env=False
                ) as client:
                    outputs = {
                        path: (await client.get(path)).text
                        for path in ("/status", "/metrics", "/healthz", "/readyz", "/livez")
                    }
                nursery.cancel_scope.cancel()
    assert "a" in msgspec.json.decode(outputs["/status"])["connections"]
    assert_no_secrets(outputs, [secret])


async def test_unknown_path_is_404_and_other_methods_405_as_json() -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=0.02) as fake:
        with trio.fail_after(DEADLINE):
            async with status_server(fake) as (_, client, _):
                missing = await client.get("/nope?x=1")
                post = await client.post("/status", content=b"{}")
                # The same connection keeps serving after both (keep-alive).
                ok = await client.get("/livez")
    assert (missing.status_code, msgspec.json.decode(missing.content)) == (
        404,
        {
            "error": "not found",
            "path": "/nope",
            "endpoints": ["/status", "/metrics", "/healthz", "/livez", "/readyz"],
        },
    )
    assert (post.status_code, post.headers["allow"], msgspec.json.decode(post.content)) == (
        405,
        "GET, HEAD",
        {"error": "method not allowed", "method": "POST", "allow": ["GET", "HEAD"]},
    )
    assert ok.status_code == 200


async def raw_exchange(base: str, request: bytes) -> bytes:
    """Send ``request`` on a fresh connection; everything the server answers until it closes."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(request)
        data = bytearray()
        async for chunk in stream:
            data += chunk
    return bytes(data)


@pytest.mark.parametrize(
    ("request_bytes", "status", "error"),
    [
        (b"GARBAGE\r\n\r\n", 400, "bad request: "),
        (b"GET /status HTTP/1.1\r\n\r\n", 400, "bad request: "),  # no Host
        (
            b"GET /status HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: y\r\n" % i for i in range(65))
            + b"\r\n",
            431,
            "too many header fields",
        ),
        (
            b"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000,
            413,
            "request body too large",
        ),
        (b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431, "bad request: "),
    ],
    ids=["garbage", "no-host", "headers", "body", "huge-head"],
)
async def test_malformed_requests_get_an_error_and_the_server_survives(
    request_bytes: bytes, status: int, error: str
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=0.02) as fake:
        with trio.fail_after(DEADLINE):
            async with status_server(fake) as (_, client, base):
                answer = await raw_exchange(base, request_bytes)
                after = await client.get("/livez")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), answer
    assert b"\r\nconnection: close" in head.lower()
    decoded = msgspec.json.decode(body)
    assert decoded["error"].startswith(error)
    assert after.status_code == 200


async def test_a_taken_port_is_a_clear_error() -> None:
    with trio.socket.socket() as taken:
        await taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        async with (
            open_fake_exchange(name="a", transport="memory", interval=0.02) as fake,
            open_supervisor(make_config(fake), connector=RecordingConnector(fake)) as sup,
        ):
            with pytest.raises(StatusAddressInUse) as info:
                await serve_status(sup, "127.0.0.1", port)
    assert info.value.errno == errno.EADDRINUSE
    assert str(info.value) == (
        f"cannot serve the status endpoint on 127.0.0.1:{port}: the address is already in "
        "use (another marketprism, or another program, listens there); stop it or choose "
        "another port"
    )


async def test_binds_only_the_address_given() -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=0.02) as fake:
        with trio.fail_after(DEADLINE):
            async with status_server(fake) as (_, client, base):
                port = int(base.rsplit(":", 1)[1])
                assert (await client.get("/livez")).status_code == 200
                # 127.0.0.2 is this machine too (all of 127/8 is loopback), but not bound.
                with pytest.raises(OSError):
                    await trio.open_tcp_stream("127.0.0.2", port)


async def test_ipv6_loopback_is_bound_when_asked() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    async with (
        open_fake_exchange(name="a", transport="memory", interval=0.02) as fake,
        open_supervisor(make_config(fake), connector=RecordingConnector(fake)) as sup,
        trio.open_nursery() as nursery,
    ):
        try:
            host, port = await nursery.start(serve_status, sup, "::1", 0)
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback: {exc}")
        assert host == "::1"
        async with httpx.AsyncClient(trust_env=False) as client:
            assert (await client.get(f"http://[::1]:{port}/livez")).status_code == 200
        nursery.cancel_scope.cancel()


# -- timeouts and limits, on the MockClock (the sockets are real, the time virtual) --------


async def read_until_eof(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    async for chunk in stream:
        data += chunk
    return bytes(data)


@asynccontextmanager
async def mock_clock_server() -> AsyncIterator[tuple[str, int]]:
    async with (
        open_fake_exchange(name="a", transport="memory", interval=1.0) as fake,
        open_supervisor(make_config(fake), connector=RecordingConnector(fake)) as sup,
        trio.open_nursery() as nursery,
    ):
        yield await nursery.start(serve_status, sup, "127.0.0.1", 0)
        nursery.cancel_scope.cancel(reason="test done")


async def test_an_idle_connection_is_closed_and_a_partial_request_gets_408_at_10s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with mock_clock_server() as (host, port):
            idle = await trio.open_tcp_stream(host, port)
            partial = await trio.open_tcp_stream(host, port)
            await partial.send_all(b"GET /status HTTP/1.1\r\nHost: x\r\n")
            async with partial:
                answer = await read_until_eof(partial)
            partial_at = trio.current_time()
            async with idle:
                silence = await read_until_eof(idle)
            idle_at = trio.current_time()
    assert (partial_at, idle_at) == (10.0, 10.0)
    assert silence == b""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 408 Request Timeout",
        b"content-type: application/json",
        b"content-length: 41",
        b"connection: close",
    ]
    assert body == b'{"error":"request not received in time"}\n'


async def test_connections_beyond_the_cap_wait_for_a_free_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with mock_clock_server() as (host, port):
            idle = [await trio.open_tcp_stream(host, port) for _ in range(DEFAULT_MAX_CONNECTIONS)]
            late = await trio.open_tcp_stream(host, port)
            async with late:
                await late.send_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = await read_until_eof(late)
            # Served only once the idle ones timed out and freed their slots.
            assert trio.current_time() == 10.0
            for stream in idle:
                await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
