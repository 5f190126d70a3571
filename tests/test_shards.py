"""``shard = true``: a connection spread over siblings within the venue's topic limit
(Binance: 1024 streams per connection), at start and for symbols added at run time."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from exchanges.helpers import Dialer

from supervisor import ConfigError, config_from_dict, open_supervisor
from supervisor.shards import place, split
from supervisor.testing import FakeBinance, open_fake_exchange

URL = "ws://binance.fake.invalid/stream"


def symbols(n: int, start: int = 0) -> list[str]:
    return [f"S{i}-USDT" for i in range(start, start + n)]


def binance(n: int, **keys: Any) -> dict[str, Any]:
    table = {"exchange": "binance", "url": URL, "channels": ["trades"], "symbols": symbols(n)}
    return {"connections": {"b": {**table, **keys}}}


def test_a_sharded_connection_is_split_within_the_limit_in_order() -> None:
    config = config_from_dict(binance(2100, raw=["btcusdt@bookTicker"], shard=True))
    shards = config.connections
    assert [s.name for s in shards] == ["b", "b#2", "b#3"]
    assert [len(s.symbols) for s in shards] == [1023, 1024, 53]  # the raw topic is on b
    assert [s.raw for s in shards] == [("btcusdt@bookTicker",), (), ()]
    assert [sym for s in shards for sym in s.symbols] == symbols(2100)
    assert {s.channels for s in shards} == {("trades",)}
    assert split(shards[2]) == [shards[2]]  # a shard within the limit is itself


def test_without_shard_more_than_the_limit_is_a_config_error_and_shard_is_binance_only() -> None:
    with pytest.raises(ConfigError) as over:
        config_from_dict(binance(1030))
    assert over.value.problems == [
        "<dict>: connections.b.symbols: 1030 streams (channels x symbols + raw) on one "
        "connection (expected at most 1024, Binance's limit per connection; split the "
        "symbols over 2 connections)"
    ]
    okx = {"exchange": "okx", "channels": ["trades"], "symbols": ["BTC-USDT"], "shard": True}
    with pytest.raises(ConfigError) as no_limit:
        config_from_dict({"connections": {"o": okx}})
    assert no_limit.value.problems == [
        "<dict>: connections.o.shard: okx has no per-connection topic limit to shard over "
        "(its requests are batched within the exchange's limits; remove the key)"
    ]


def test_place_fills_shards_with_room_then_opens_new_ones() -> None:
    (b,) = config_from_dict(binance(1020, shard=True)).connections
    plan = place([(b, 1020)], [*symbols(3), *symbols(10, 5000)], ["x@bookTicker"])
    assert plan.raw == {"b": ["x@bookTicker"]}
    assert plan.symbols == {"b": symbols(3, 5000)}  # S0-S2 are on b already
    assert plan.new == [symbols(7, 5003)]
    assert plan.unplaced == []
    full = place([(b, 1024)], [], ["x@bookTicker", "y@bookTicker"])
    assert (full.raw, full.unplaced) == ({}, ["x@bookTicker", "y@bookTicker"])


async def test_symbols_subscribed_at_run_time_fill_the_shard_then_open_a_new_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    listed = [s.replace("-", "") for s in symbols(1030)]
    async with open_fake_exchange(
        name="binance", transport="memory", interval=60.0, handler=FakeBinance(symbols=listed)
    ) as fake:
        config = config_from_dict(binance(1020, shard=True))
        with trio.fail_after(120):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                await sup.subscribe("b", symbols=symbols(10, 1020))
                names = [c.name for c in sup.config.connections]
                stats = {c.name: c.subscriptions for c in (await sup.stats()).connections}
                await sup.unsubscribe("b", symbols=symbols(6, 1024))
                after = [c.name for c in (await sup.stats()).connections]
                with pytest.raises(ConfigError) as no_room:
                    await sup.subscribe("b", topics=["btcusdt@bookTicker"])  # b is full
                unchanged = (await sup.stats()).connections[0].subscriptions
    assert names == ["b", "b#2"]
    assert len(stats["b"]) == 1024 and set(stats["b"].values()) == {"live"}
    assert stats["b#2"] == {f"s{i}usdt@trade": "live" for i in range(1024, 1030)}
    assert after == ["b"]  # b#2 had nothing left: closed and removed
    # Raw topics need a shard with room (a new shard cannot hold only raw topics).
    assert no_room.value.problems == [
        "Subscribe on sharded connection 'b': topics btcusdt@bookTicker: no shard has room "
        "(each holds at most 1024; raw topics go on a shard with room, so unsubscribe some "
        "first); nothing changed"
    ]
    assert unchanged == stats["b"]
    assert len(fake.sessions) == 2 and fake.sessions[1].close_code == 1000
