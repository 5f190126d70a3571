"""REST wired into the supervisor: ``sup.rest(name)``, server time, exchange info.

The WebSocket side is the memory fake (MockClock, autojump); the REST side is the real
loopback REST fake in the same trio run, so virtual times stay exact. The wall clock is
injected as the fake's own (``DEFAULT_EPOCH`` plus the Trio clock), so a venue clock
``offset`` ahead shows as exactly that clock offset.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from exchanges.helpers import exchange_config

from actors.exchanges.messages import Trade
from supervisor import Config, ConnectionStats, open_supervisor
from supervisor.testing import open_fake_exchange
from supervisor.testing.fakes.binance import FakeBinance
from supervisor.testing.fakes.okx import FakeOkx
from supervisor.testing.fakes.rest import DEFAULT_EPOCH, FakeRest, open_fake_rest
from supervisor.testing.proxies import open_tinyproxy

URL = "ws://binance.fake.invalid/stream"
DEADLINE = 60.0


def wall() -> float:
    """The REST fake's wall clock, read the way the supervisor reads ``time.time``."""
    return DEFAULT_EPOCH.timestamp() + trio.current_time()


def config(rest: FakeRest | None, *, symbols: list[str], **keys: Any) -> Config:
    table: dict[str, Any] = {
        "exchange": "binance",
        "url": URL,
        "channels": ["trades"],
        "symbols": symbols,
        **keys,
    }
    if rest is not None:
        table["rest"] = {"base_url": rest.url, **table.get("rest", {})}
    return exchange_config(b=table)


async def first_trades(sup: Any, count: int) -> list[tuple[float, Trade]]:
    got: list[tuple[float, Trade]] = []
    async for message in sup.messages():
        if isinstance(message, Trade):
            got.append((trio.current_time(), message))
            if len(got) == count:
                return got
    raise AssertionError("the message stream ended")


async def stats_of(sup: Any) -> ConnectionStats:
    stats: ConnectionStats = (await sup.stats()).connections[0]
    return stats


async def test_clock_offset_is_the_venues_clock_minus_ours(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_fake_exchange(
            name="binance", transport="memory", interval=1.0, handler=FakeBinance()
        ) as fake,
        open_fake_rest() as rest,
    ):
        rest.serve_venue("binance", ["BTCUSDT", "ETHUSDT"], offset=1.5)
        cfg = config(rest, symbols=["BTC-USDT"])
        with trio.fail_after(DEADLINE):
            async with open_supervisor(cfg, connector=fake.connect, wall_clock=wall) as sup:
                got = await first_trades(sup, 1)
                stats = await stats_of(sup)
    # REST never held the session up: the first trade came at the fake's first interval.
    assert [t for t, _ in got] == [1.0]
    assert stats.clock_offset == 1.5
    assert stats.rest is not None
    # /api/v3/time (1) + /api/v3/exchangeInfo (20), Binance's spot weights.
    assert (stats.rest.used_weight, stats.rest.held_for, stats.rest.failing) == (21, None, ())
    assert [(r.path, r.at) for r in rest.requests] == [
        ("/api/v3/time", 0.0),
        ("/api/v3/exchangeInfo", 0.0),
    ]
    assert stats.subscriptions == {"btcusdt@trade": "live"}


async def test_clock_offset_leaves_out_a_slow_tls_handshake(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    trustme = pytest.importorskip("trustme", reason="pip install trustme (the test extra has it)")
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with (
        open_fake_exchange(
            name="binance", transport="memory", interval=1.0, handler=FakeBinance()
        ) as fake,
        open_fake_rest(ssl_context=server) as rest,
    ):
        rest.serve_venue("binance", ["BTCUSDT", "ETHUSDT"], offset=1.5)
        # A far venue: the TLS handshake of the first call takes 2 s. Counted as round
        # trip, it would put the venue 1 s further ahead than it is (2.5).
        rest.accept_delay = 2.0
        cfg = config(rest, symbols=["BTC-USDT"], tls={"ca_file": str(ca_file)})
        with trio.fail_after(DEADLINE):
            async with open_supervisor(cfg, connector=fake.connect, wall_clock=wall) as sup:
                await first_trades(sup, 3)
                stats = await stats_of(sup)
    assert [(r.path, r.at) for r in rest.requests][:1] == [("/api/v3/time", 2.0)]
    assert stats.clock_offset == 1.5


async def test_sup_rest_shares_the_adapters_client_and_weight_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_fake_exchange(
            name="binance", transport="memory", interval=1.0, handler=FakeBinance()
        ) as fake,
        open_fake_rest() as rest,
    ):
        rest.serve_venue("binance", ["BTCUSDT"])
        rest.weigh({"/api/v3/exchangeInfo": 20}, limit=6000, window=60.0)
        cfg = exchange_config(
            b={
                "exchange": "binance",
                "url": URL,
                "channels": ["trades"],
                "symbols": ["BTC-USDT"],
                "rest": {"base_url": rest.url},
            },
            b2={
                "exchange": "binance",
                "url": URL,
                "channels": ["trades"],
                "symbols": ["ETH-USDT"],
                "rest": {"base_url": rest.url},
            },
        )
        with trio.fail_after(DEADLINE):
            async with open_supervisor(cfg, connector=fake.connect, wall_clock=wall) as sup:
                await first_trades(sup, 1)
                client = sup.rest("b")
                assert sup.rest("b") is client
                # Same venue, origin, route and TLS: the second connection's client too.
                assert sup.rest("b2") is client
                await rest.wait_until(lambda: len(rest.statuses) == 4)
                answer = await client.get("/api/v3/time")
                budget = client.limiter.budget("weight")
                used = budget.used
    # Both adapters' time (1 + 1) and exchangeInfo (20 + 20), then ours (1): one budget,
    # counted by the venue (its header) and by the shared limiter. The limiter adds the
    # calls it still has in flight to a header it reads (it cannot know whether the venue
    # counted them yet), so when the first time answer comes back while the other time
    # call is in flight (an order the scheduler decides), that call's 1 is counted twice
    # until the window ends: never less than the venue, at most the overlap more.
    assert rest.used == 43
    assert used in (43, 44)
    assert set(answer) == {"serverTime"}


async def test_an_unknown_symbol_fails_with_a_suggestion_and_the_others_go_live(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with (
        open_fake_exchange(
            name="binance", transport="memory", interval=1.0, handler=FakeBinance()
        ) as fake,
        open_fake_rest() as rest,
    ):
        rest.serve_venue("binance", ["BTCUSDT", "ETHUSDT"])
        cfg = config(rest, symbols=["BTC-USDT", "BTCUSDX"])
        with trio.fail_after(DEADLINE):
            async with open_supervisor(cfg, connector=fake.connect, wall_clock=wall) as sup:
                got = await first_trades(sup, 2)
                stats = await stats_of(sup)
    assert stats.state == "live"
    assert stats.subscriptions == {
        "btcusdt@trade": "live",
        "btcusdx@trade": "failed: unknown symbol (did you mean BTCUSDT?)",
    }
    assert {m.symbol for _, m in got} == {"BTC-USDT"}
    warnings = [r.getMessage() for r in caplog.records if "unknown symbol" in r.getMessage()]
    assert warnings == [
        "b: unknown symbol 'BTCUSDX' (did you mean BTCUSDT?): its subscriptions "
        "btcusdx@trade failed; the others run on"
    ]


async def test_okx_time_and_instruments_through_its_own_shapes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_fake_exchange(name="okx", transport="memory", interval=1.0, handler=FakeOkx()) as fake,
        open_fake_rest() as rest,
    ):
        rest.serve_venue("okx", ["BTC-USDT", "ETH-USDT"], offset=-0.25)
        cfg = exchange_config(
            o={
                "exchange": "okx",
                "url": "ws://okx.fake.invalid/ws/v5/public",
                "channels": ["trades"],
                "symbols": ["BTC-USDT", "ETH-USDC"],
                "rest": {"base_url": rest.url},
            }
        )
        with trio.fail_after(DEADLINE):
            async with open_supervisor(cfg, connector=fake.connect, wall_clock=wall) as sup:
                await first_trades(sup, 1)
                stats = await stats_of(sup)
    assert stats.clock_offset == -0.25
    assert stats.subscriptions == {
        "trades:BTC-USDT": "live",
        "trades:ETH-USDC": "failed: unknown symbol (did you mean ETH-USDT?)",
    }
    assert [(r.path, r.query) for r in rest.requests] == [
        ("/api/v5/public/time", {}),
        ("/api/v5/public/instruments", {"instType": "SPOT"}),
    ]


async def test_rest_failures_are_one_quiet_line_and_never_touch_the_session(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="marketprism.connection")
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=FakeBinance()
    ) as fake:
        async with open_fake_rest() as rest:
            closed = rest.url  # nothing listens there once the fake has closed
        cfg = exchange_config(
            b={
                "exchange": "binance",
                "url": URL,
                "channels": ["trades"],
                "symbols": ["BTC-USDT"],
                "rest": {"base_url": closed, "attempts": 1},
            }
        )
        with trio.fail_after(DEADLINE):
            async with open_supervisor(cfg, connector=fake.connect, wall_clock=wall) as sup:
                got = await first_trades(sup, 30)
                stats = await stats_of(sup)
    # Thirty seconds of trades on time, while REST failed and retried at 5, 15, ... s.
    assert [t for t, _ in got] == [float(n) for n in range(1, 31)]
    assert stats.state == "live"
    assert stats.clock_offset is None
    assert stats.rest is not None and stats.rest.failing == ("instruments", "time")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(" failed: ")[0] for r in warnings] == [
        "b: REST time (/api/v3/time)",
        "b: REST instruments (/api/v3/exchangeInfo)",
    ]
    assert all("trying again in 5 s" in r.getMessage() for r in warnings)


async def test_rest_goes_through_the_connections_proxy(tmp_path: Path) -> None:
    # Real time: tinyproxy is a real process. The fake's peer address proves the route.
    async with (
        open_fake_exchange(
            name="binance", transport="memory", interval=0.05, handler=FakeBinance()
        ) as fake,
        open_fake_rest() as rest,
        open_tinyproxy(tmp_path) as proxy,
    ):
        rest.serve_venue("binance", ["BTCUSDT"])
        cfg = config(rest, symbols=["BTC-USDT"], proxy=proxy.url())
        with trio.fail_after(DEADLINE):
            async with open_supervisor(cfg, connector=fake.connect, environ={}) as sup:
                await rest.wait_until(lambda: len(rest.statuses) == 2)
                answer = await sup.rest("b").get("/api/v3/time")
    assert set(answer) == {"serverTime"}
    assert {r.peer.rpartition(":")[0] for r in rest.requests} == {proxy.outgoing}
    port = rest.url.rsplit(":", 1)[1]
    assert f"CONNECT 127.0.0.1:{port} HTTP/1.1" in proxy.log_text()


async def test_sup_rest_names_the_known_connections_and_says_why_there_is_none(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=FakeBinance()
    ) as fake:
        cfg = exchange_config(
            b={"exchange": "binance", "url": URL, "channels": ["trades"], "symbols": ["BTC-USDT"]},
            r={"exchange": "raw", "url": "ws://raw.fake.invalid/", "subscribe": []},
        )
        with trio.fail_after(DEADLINE):
            async with open_supervisor(cfg, connector=fake.connect) as sup:
                with pytest.raises(
                    ValueError, match=r"^no connection named 'x' \(connections: b, r\)$"
                ):
                    sup.rest("x")
                with pytest.raises(
                    ValueError,
                    match=r"^connection 'r' \(raw\) has no REST API: set \[connections\.r\.rest\] "
                    r"base_url and venue ",
                ):
                    sup.rest("r")
                # A local fake's url is not on binance.com: no default REST API either.
                with pytest.raises(ValueError, match=r"^connection 'b' \(binance\) has no REST"):
                    sup.rest("b")
                stats = await stats_of(sup)
    assert (stats.clock_offset, stats.rest) == (None, None)
