"""``sup.subscribe`` / ``sup.unsubscribe`` end to end against the rule-enforcing fakes.

In-memory streams on Trio's MockClock (autojump), so every time is exact. FakeOkx sends
one frame per subscribed topic per second after its ack; trade ``n`` of a topic in
session ``k`` has tradeId ``1_000_000 * (k + 1) + n``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from exchanges.helpers import Dialer, exchange_config, okx_config

from actors.exchanges.messages import (
    BookDelta,
    BookInvalid,
    BookSnapshot,
    Message,
    Ticker,
    Trade,
)
from supervisor import ConfigError, SubscriptionRefused, open_supervisor
from supervisor.testing import (
    FakeBinance,
    FakeBybit,
    FakeDeribit,
    FakeExchange,
    open_fake_exchange,
)
from supervisor.testing.fakes.okx import FakeOkx


def okx_args(frame: str | bytes) -> list[str]:
    """``channel:instId`` of every arg of an OKX request frame, with its op."""
    request = json.loads(frame)
    return [f"{request['op']} {a['channel']}:{a['instId']}" for a in request["args"]]


def trades(got: list[tuple[float, Message]], symbol: str) -> list[tuple[float, int]]:
    return [(t, int(m.trade_id)) for t, m in got if isinstance(m, Trade) and m.symbol == symbol]


@contextlib.asynccontextmanager
async def okx_venue() -> AsyncIterator[tuple[FakeOkx, FakeExchange]]:
    """FakeOkx in memory, one frame per subscribed topic per second."""
    okx = FakeOkx()
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=okx
    ) as fake:
        yield okx, fake


async def test_okx_subscribe_returns_when_acked_and_the_data_flows(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with okx_venue() as (okx, fake):
        config = okx_config(channels=["trades"], symbols=["BTC-USDT"])
        got: list[tuple[float, Message]] = []
        with trio.fail_after(30):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                stream = sup.messages()
                await stream.__anext__()  # t=1
                await trio.sleep(0.5)
                await sup.subscribe("okx", symbols=["ETH-USDT"])
                returned_at = trio.current_time()
                subscribed = okx.subscribed(0)
                stats = (await sup.stats()).connections[0]
                while len(trades(got, "ETH-USDT")) < 2:
                    msg = await stream.__anext__()
                    got.append((trio.current_time(), msg))
    # Written at once (the pump was woken), acked by the fake in the same instant.
    assert returned_at == 1.5
    assert subscribed == {"trades:BTC-USDT", "trades:ETH-USDT"}
    assert [okx_args(f) for f in fake.sessions[0].received] == [
        ["subscribe trades:BTC-USDT"],
        ["subscribe trades:ETH-USDT"],
    ]
    assert stats.subscriptions == {"trades:BTC-USDT": "live", "trades:ETH-USDT": "live"}
    # The fake's beat is on whole seconds; each topic counts its own trades.
    assert trades(got, "ETH-USDT") == [(2.0, 1_000_000), (3.0, 1_000_001)]
    assert trades(got, "BTC-USDT") == [(2.0, 1_000_001), (3.0, 1_000_002)]


async def test_okx_refusal_raises_with_the_exchanges_code_and_undoes_the_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with okx_venue() as (_okx, fake):
        config = okx_config(channels=["trades"], symbols=["BTC-USDT"])
        with trio.fail_after(30):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                await sup.messages().__anext__()
                with pytest.raises(SubscriptionRefused) as refused:
                    await sup.subscribe("okx", symbols=["NOPE-USDT"])
                stats = (await sup.stats()).connections[0]
                await sup.restart("okx")
                await fake.wait_until(
                    lambda f: len(f.sessions) == 2 and bool(f.sessions[1].received)
                )
    error = refused.value
    assert (error.connection, error.kept) == ("okx", False)
    assert list(error.refused) == ["trades:NOPE-USDT"]
    assert error.refused["trades:NOPE-USDT"].startswith("failed: 60018 ")
    assert "okx: the exchange refused 1 topic (trades:NOPE-USDT: failed: 60018" in str(error)
    assert str(error).endswith("nothing asked for was kept")
    # Out of the plan: not in stats, and the next session does not ask for it.
    assert stats.subscriptions == {"trades:BTC-USDT": "live"}
    assert [okx_args(f) for f in fake.sessions[1].received] == [["subscribe trades:BTC-USDT"]]


async def test_okx_a_run_time_change_holds_across_reconnect_and_handover(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with okx_venue() as (okx, fake):
        config = okx_config(channels=["trades"], symbols=["BTC-USDT"])
        dialer = Dialer(fake)
        with trio.fail_after(60):
            async with open_supervisor(config, connector=dialer) as sup:
                await sup.messages().__anext__()  # t=1
                await sup.subscribe("okx", symbols=["ETH-USDT"])
                await sup.unsubscribe("okx", symbols=["BTC-USDT"])
                await fake.wait_until(lambda f: len(f.sessions[0].received) == 3)
                await fake.close(4000, "maintenance")  # reconnects after 1 s
                await fake.wait_until(lambda f: okx.subscribed(1) == {"trades:ETH-USDT"})
                await okx.notice()  # make-before-break: a successor subscribes
                await fake.wait_until(lambda f: okx.subscribed(2) == {"trades:ETH-USDT"})
                stats = (await sup.stats()).connections[0]
    # Closed at t=1: the backoff's 1 s; the notice at t=2 opens the successor at once.
    assert dialer.times() == [0.0, 2.0, 2.0]
    assert [okx_args(f) for f in fake.sessions[0].received] == [
        ["subscribe trades:BTC-USDT"],
        ["subscribe trades:ETH-USDT"],
        ["unsubscribe trades:BTC-USDT"],
    ]
    assert okx_args(fake.sessions[1].received[0]) == ["subscribe trades:ETH-USDT"]
    assert okx_args(fake.sessions[2].received[0]) == ["subscribe trades:ETH-USDT"]
    assert stats.subscriptions == {"trades:ETH-USDT": "live"}
    assert stats.malformed == 0


async def test_okx_unsubscribe_stops_the_topic_and_nothing_is_malformed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with okx_venue() as (okx, fake):
        config = okx_config(channels=["trades"], symbols=["BTC-USDT", "ETH-USDT"])
        got: list[tuple[float, Message]] = []
        with trio.fail_after(30):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                stream = sup.messages()
                await stream.__anext__()  # t=1
                await sup.unsubscribe("okx", symbols=["ETH-USDT"])
                unsubscribed_at = trio.current_time()
                await fake.wait_until(lambda f: len(f.sessions[0].received) == 2)
                subscribed = okx.subscribed(0)
                while trio.current_time() < 4.0:
                    msg = await stream.__anext__()
                    got.append((trio.current_time(), msg))
                stats = (await sup.stats()).connections[0]
    assert unsubscribed_at == 1.0
    assert subscribed == {"trades:BTC-USDT"}
    assert okx_args(fake.sessions[0].received[-1]) == ["unsubscribe trades:ETH-USDT"]
    # ETH's t=1 trade came in the same read as the first BTC trade, before the change.
    assert trades(got, "ETH-USDT") == [(1.0, 1_000_000)]
    assert trades(got, "BTC-USDT") == [(2.0, 1_000_001), (3.0, 1_000_002), (4.0, 1_000_003)]
    assert (stats.subscriptions, stats.malformed) == ({"trades:BTC-USDT": "live"}, 0)


async def test_a_subscribe_while_the_connection_is_down_returns_once_the_next_session_acks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with okx_venue() as (_okx, fake):
        config = okx_config(channels=["trades"], symbols=["BTC-USDT"])
        with trio.fail_after(30):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                await sup.messages().__anext__()  # t=1
                await fake.close(4000, "maintenance")
                await fake.wait_until(lambda f: not f.sessions[0].open)
                await sup.subscribe("okx", symbols=["ETH-USDT"])
                returned_at = trio.current_time()
    assert returned_at == 2.0  # the backoff's 1 s, then the new session's ack
    assert okx_args(fake.sessions[1].received[0]) == [
        "subscribe trades:BTC-USDT",
        "subscribe trades:ETH-USDT",
    ]


@pytest.mark.parametrize(
    ("exchange", "handler", "symbol", "added"),
    [
        ("binance", FakeBinance, "BTC-USDT", "ethusdt@trade"),
        ("bybit", FakeBybit, "BTC-USDT", "publicTrade.ETHUSDT"),
        ("deribit", FakeDeribit, "BTC-USD-PERP", "trades.ETH-PERPETUAL.100ms"),
    ],
)
async def test_each_venue_subscribes_at_run_time_and_confirms(
    autojump_clock: trio.testing.MockClock,
    exchange: str,
    handler: Any,
    symbol: str,
    added: str,
) -> None:
    venue = handler()
    async with open_fake_exchange(
        name=exchange, transport="memory", interval=1.0, handler=venue
    ) as fake:
        config = exchange_config(
            c={"exchange": exchange, "channels": ["trades"], "symbols": [symbol]}
        )
        with trio.fail_after(30):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                await sup.messages().__anext__()
                before = venue.subscribed(0)
                called_at = trio.current_time()
                await sup.subscribe("c", symbols=[symbol.replace("BTC", "ETH")])
                returned_at = trio.current_time()
                after = venue.subscribed(0)
                stats = (await sup.stats()).connections[0]
    assert after - before == {added}
    assert stats.subscriptions[added] == "live"
    assert returned_at == called_at


async def test_okx_book_channel_added_and_dropped_at_run_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with okx_venue() as (_okx, fake):
        config = okx_config(channels=["trades"], symbols=["BTC-USDT"])
        books: list[Message] = []
        with trio.fail_after(30):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                stream = sup.messages()
                await stream.__anext__()  # t=1
                await sup.subscribe("okx", channels=["book"])
                async for msg in stream:
                    if isinstance(msg, BookSnapshot | BookDelta | BookInvalid):
                        books.append(msg)
                    if len(books) == 3:
                        break
                view_valid = sup.book("okx", "BTC-USDT").valid
                await sup.unsubscribe("okx", channels=["book"])
                async for msg in stream:
                    if isinstance(msg, BookInvalid):
                        books.append(msg)
                        break
                with pytest.raises(ValueError, match="no local book"):
                    sup.book("okx", "BTC-USDT")
                stats = (await sup.stats()).connections[0]
    assert isinstance(books[0], BookSnapshot) and books[0].sequence == 1000
    assert [getattr(m, "prev_sequence", None) for m in books[1:3]] == [1000, 1002]
    assert view_valid
    last = books[-1]
    assert isinstance(last, BookInvalid)
    assert (last.symbol, last.reason, last.sequence) == ("BTC-USDT", "unsubscribed", 1004)
    assert stats.books == {}
    assert stats.subscriptions == {"trades:BTC-USDT": "live"}


async def test_bad_calls_name_the_problem_and_change_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with okx_venue() as (_okx, fake):
        config = okx_config(channels=["trades"], symbols=["BTC-USDT"])
        with trio.fail_after(30):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                await sup.messages().__anext__()
                with pytest.raises(
                    ValueError, match=r"no connection named 'nope' \(connections: okx\)"
                ):
                    await sup.subscribe("nope", symbols=["ETH-USDT"])
                with pytest.raises(
                    TypeError, match=r"symbols must be a list of strings: symbols=\['ETH-USDT'\]"
                ):
                    await sup.subscribe("okx", symbols="ETH-USDT")  # a str is a Sequence[str]
                with pytest.raises(
                    ValueError, match="name at least one of channels, symbols or topics"
                ):
                    await sup.subscribe("okx")
                with pytest.raises(ConfigError) as bad:
                    await sup.subscribe("okx", channels=["trade"])
                with pytest.raises(ConfigError) as empty:
                    await sup.unsubscribe("okx", symbols=["BTC-USDT"])
                stats = (await sup.stats()).connections[0]
            with pytest.raises(RuntimeError, match="the supervisor is not running"):
                await sup.subscribe("okx", symbols=["ETH-USDT"])
    assert bad.value.problems == [
        "Subscribe on connection 'okx': connections.okx.channels: unknown channel 'trade' "
        "(expected trades, ticker or book)"
    ]
    assert empty.value.problems == [
        "Unsubscribe on connection 'okx': connections.okx.symbols: missing (expected at "
        "least one symbol for the channels, e.g. BTC-USDT)"
    ]
    assert stats.subscriptions == {"trades:BTC-USDT": "live"}
    assert len(fake.sessions[0].received) == 1


async def test_okx_partial_refusal_keeps_what_went_live_and_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with okx_venue() as (okx, fake):
        config = okx_config(channels=["trades"], symbols=["BTC-USDT"])
        with trio.fail_after(30):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                await sup.messages().__anext__()
                with pytest.raises(SubscriptionRefused) as refused:
                    await sup.subscribe("okx", symbols=["ETH-USDT", "NOPE-USDT"])
                subscribed = okx.subscribed(0)
                stats = (await sup.stats()).connections[0]
    error = refused.value
    assert (list(error.refused), error.kept) == (["trades:NOPE-USDT"], True)
    assert str(error).endswith("they stay planned, shown failed in stats, until unsubscribed")
    assert subscribed == {"trades:BTC-USDT", "trades:ETH-USDT"}
    assert stats.subscriptions["trades:ETH-USDT"] == "live"
    assert stats.subscriptions["trades:NOPE-USDT"].startswith("failed: 60018 ")


async def test_add_and_remove_a_connection_at_run_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with okx_venue() as (_okx, fake):
        config = okx_config(channels=["trades"], symbols=["BTC-USDT"])
        got: list[tuple[float, str, str]] = []
        with trio.fail_after(30):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                stream = sup.messages()
                await stream.__anext__()  # t=1
                table = {"exchange": "okx", "channels": ["trades"], "symbols": ["ETH-USDT"]}
                await sup.add_connection("okx2", table)
                live_at = trio.current_time()
                names = [c.name for c in sup.config.connections]
                while sum(c == "okx2" for _, c, _ in got) < 2:  # t=2 and t=3
                    msg = await stream.__anext__()
                    assert isinstance(msg, Trade)
                    got.append((trio.current_time(), msg.connection, msg.symbol))
                added = {c.name: c.subscriptions for c in (await sup.stats()).connections}
                await sup.remove_connection("okx2")
                removed_at = trio.current_time()
                after = [c.name for c in (await sup.stats()).connections]
                while got[-1] != (5.0, "okx", "BTC-USDT"):
                    msg = await stream.__anext__()
                    assert isinstance(msg, Trade)
                    got.append((trio.current_time(), msg.connection, msg.symbol))
                with pytest.raises(ConfigError) as taken:
                    await sup.add_connection("OKX", table)
    assert live_at == 1.0
    assert names == ["okx", "okx2"]
    assert added == {
        "okx": {"trades:BTC-USDT": "live"},
        "okx2": {"trades:ETH-USDT": "live"},
    }
    assert (removed_at, after) == (3.0, ["okx"])
    assert fake.sessions[1].close_code == 1000  # closed cleanly
    # Trio orders tasks woken at the same instant at random: compare each instant's set.
    assert sorted(got) == [
        (2.0, "okx", "BTC-USDT"),
        (2.0, "okx2", "ETH-USDT"),
        (3.0, "okx", "BTC-USDT"),
        (3.0, "okx2", "ETH-USDT"),
        (4.0, "okx", "BTC-USDT"),
        (5.0, "okx", "BTC-USDT"),
    ]
    assert taken.value.problems == [
        "add_connection: connections.OKX: same name as the running connection 'okx' "
        "(names must be unique, ignoring case; remove_connection() it first to replace it)"
    ]


async def test_binance_many_run_time_subscribes_are_paced_within_its_message_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Twelve callers at once: the adapter writes their SUBSCRIBEs within Binance's 5
    # incoming messages per second (the fake closes a connection that sends a sixth),
    # batched, and every caller returns once its own stream is acked.
    symbols = [f"C{i}-USDT" for i in range(12)]
    binance = FakeBinance(symbols=["BTCUSDT", *(s.replace("-", "") for s in symbols)])
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=binance
    ) as fake:
        config = exchange_config(
            b={"exchange": "binance", "channels": ["trades"], "symbols": ["BTC-USDT"]}
        )
        returned: dict[str, float] = {}
        with trio.fail_after(60):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                await sup.messages().__anext__()
                start = trio.current_time()

                async def one(symbol: str) -> None:
                    await sup.subscribe("b", symbols=[symbol])
                    returned[symbol] = trio.current_time() - start

                async with trio.open_nursery() as nursery:
                    for symbol in symbols:
                        nursery.start_soon(one, symbol)
                stats = (await sup.stats()).connections[0]
    assert len(fake.sessions) == 1 and fake.sessions[0].open is False  # never closed early
    assert stats.disconnects == 0
    assert stats.subscriptions == {
        "btcusdt@trade": "live",
        **{f"c{i}usdt@trade": "live" for i in range(12)},
    }
    requests = [json.loads(f) for f in fake.sessions[0].received]
    assert [r["method"] for r in requests] == ["SUBSCRIBE"] * len(requests)
    assert sorted(p for r in requests[1:] for p in r["params"]) == sorted(
        f"c{i}usdt@trade" for i in range(12)
    )
    # The last caller waited for pacing: more than one second after the first.
    # The first caller's request went at once; the eleven that came while it was the
    # last written joined one request, written after Binance's spacing (0.5 s).
    assert [len(r["params"]) for r in requests] == [1, 1, 11]
    assert sorted(returned.values()) == [0.0] + [0.5] * 11


async def test_binance_raw_topic_subscribed_at_run_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    binance = FakeBinance()
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=binance
    ) as fake:
        config = exchange_config(
            b={"exchange": "binance", "channels": ["trades"], "symbols": ["BTC-USDT"]}
        )
        with trio.fail_after(60):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                stream = sup.messages()
                await stream.__anext__()
                await sup.subscribe("b", topics=["ethusdt@bookTicker"])
                async for msg in stream:
                    if not isinstance(msg, Trade):
                        first = (trio.current_time(), msg)
                        break
                stats = (await sup.stats()).connections[0]
    assert stats.subscriptions == {"btcusdt@trade": "live", "ethusdt@bookTicker": "live"}
    # A raw topic naming a stream the adapter knows is decoded like a channel's.
    at, ticker = first
    assert isinstance(ticker, Ticker)
    assert (at, ticker.symbol, ticker.connection) == (2.0, "ETH-USDT", "b")


async def test_okx_a_subscribe_while_a_successor_connects_reaches_the_successor_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with okx_venue() as (okx, fake):
        attempts: list[float] = []
        connecting = trio.Event()

        async def slow_second_connect(url: str) -> trio.abc.Stream:
            # The socket boundary: the successor's connect takes 5 s.
            attempts.append(trio.current_time())
            if len(attempts) == 2:
                connecting.set()
                await trio.sleep(5)
            return await fake.connect(url)

        config = okx_config(channels=["trades"], symbols=["BTC-USDT"])
        with trio.fail_after(60):
            async with open_supervisor(config, connector=slow_second_connect) as sup:
                await sup.messages().__anext__()  # t=1
                await okx.notice()
                await connecting.wait()  # the successor's adapter is built: it connects
                await sup.subscribe("okx", symbols=["ETH-USDT"])  # acked on the old one
                returned_at = trio.current_time()
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                both = {"trades:BTC-USDT", "trades:ETH-USDT"}
                await fake.wait_until(lambda f: okx.subscribed(1) == both)
                switched_at = trio.current_time()
                stats = (await sup.stats()).connections[0]
    assert attempts == [0.0, 1.0]
    assert returned_at == 1.0
    assert okx_args(fake.sessions[0].received[1]) == ["subscribe trades:ETH-USDT"]
    # The successor asks for what the connection subscribes now, in one request.
    assert okx_args(fake.sessions[1].received[0]) == [
        "subscribe trades:BTC-USDT",
        "subscribe trades:ETH-USDT",
    ]
    assert switched_at == 6.0  # the successor connected after its 5 s and acked both
    assert stats.subscriptions == {"trades:BTC-USDT": "live", "trades:ETH-USDT": "live"}


@pytest.mark.parametrize(
    ("exchange", "handler", "symbol", "bad", "refusal"),
    [
        (
            "binance",
            FakeBinance,
            "BTC-USDT",
            "NOPE-USDT",
            {"nopeusdt@trade": "failed: 2 Invalid request: invalid stream"},
        ),
        (
            "bybit",
            FakeBybit,
            "BTC-USDT",
            "NOPE-USDT",
            {
                "publicTrade.NOPEUSDT": "failed: handler not found "
                "error:handler not found,topic:publicTrade.NOPEUSDT"
            },
        ),
        (
            "deribit",
            FakeDeribit,
            "BTC-USD-PERP",
            "NOPE-USD-PERP",
            {"trades.NOPE-PERPETUAL.100ms": "failed: -32602 Invalid params"},
        ),
    ],
)
async def test_each_venue_refuses_an_unknown_symbol_with_its_own_code_and_it_is_undone(
    autojump_clock: trio.testing.MockClock,
    exchange: str,
    handler: Any,
    symbol: str,
    bad: str,
    refusal: dict[str, str],
) -> None:
    async with open_fake_exchange(
        name=exchange, transport="memory", interval=1.0, handler=handler()
    ) as fake:
        config = exchange_config(
            c={"exchange": exchange, "channels": ["trades"], "symbols": [symbol]}
        )
        with trio.fail_after(30):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                await sup.messages().__anext__()
                with pytest.raises(SubscriptionRefused) as refused:
                    await sup.subscribe("c", symbols=[bad])
                stats = (await sup.stats()).connections[0]
    assert (refused.value.refused, refused.value.kept) == (refusal, False)
    live = {
        "binance": "btcusdt@trade",
        "bybit": "publicTrade.BTCUSDT",
        "deribit": "trades.BTC-PERPETUAL.100ms",
    }
    assert stats.subscriptions == {live[exchange]: "live"}  # the refused one is gone


async def test_a_subscribe_still_waiting_when_the_supervisor_stops_raises(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with okx_venue() as (_okx, fake):
        config = okx_config(channels=["trades"], symbols=["BTC-USDT"])
        with trio.fail_after(60):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                await sup.messages().__anext__()  # t=1
                fake.refuse(100.0)  # the venue is down: no session to confirm it
                await fake.close(4000, "maintenance")

                async def stop_at_5() -> None:
                    await trio.sleep_until(5.0)
                    await sup.stop()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(stop_at_5)
                    with pytest.raises(RuntimeError) as stopped:
                        await sup.subscribe("okx", symbols=["ETH-USDT"])
                    raised_at = trio.current_time()
    assert str(stopped.value) == (
        "sup.subscribe('okx', ...) did not complete: the supervisor stopped"
    )
    assert raised_at == 5.0
