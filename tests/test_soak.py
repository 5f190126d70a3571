"""What the fault soak relies on in the fakes (the soak itself comes with its runner).

- Numbered mode (one market for every session), checked with a bare trio-websocket
  client on MockClock.
- The generic fake's soak features: the data tap, closing or resetting one session,
  forgetting closed sessions, stalls that hold a handler's pings and rule closes, OKX
  counting scripted frames as pushes.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
import trio_websocket

from supervisor.testing import (
    FakeBinance,
    FakeBybit,
    FakeDeribit,
    FakeExchange,
    FakeOkx,
    open_fake_exchange,
)
from supervisor.testing.fake import FakeSession

OKX_SUBSCRIBE = (
    '{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"},'
    '{"channel":"tickers","instId":"BTC-USDT"}]}'
)


@asynccontextmanager
async def client(
    fake: FakeExchange, nursery: trio.Nursery, path: str = "/ws"
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A bare trio-websocket client connected to ``fake`` (memory transport)."""
    stream = await fake.connect(fake.url)
    ws = await trio_websocket.wrap_client_stream(nursery, stream, f"{fake.name}.invalid", path)
    try:
        yield ws
    finally:
        await ws.aclose()


def body(frame: str | bytes) -> Any:
    return msgspec.json.decode(frame)


# -- numbered fakes: one market for every session -------------------------------------


async def test_numbered_okx_sessions_send_the_same_ids_for_the_same_market_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    okx = FakeOkx(numbered=True)
    seen: list[tuple[float, str, str, str]] = []

    async def watch(fake: FakeExchange, name: str, at: float, frames: int) -> None:
        await trio.sleep_until(at)
        async with trio.open_nursery() as nursery, client(fake, nursery) as ws:
            await ws.send_message(OKX_SUBSCRIBE)
            while frames:
                message = body(await ws.get_message())
                if "data" in message:
                    entry = message["data"][0]
                    number = entry.get("tradeId") or entry["bidSz"]
                    seen.append((trio.current_time(), name, message["arg"]["channel"], number))
                    frames -= 1
            nursery.cancel_scope.cancel()

    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=okx
    ) as fake:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch, fake, "A", 0.0, 7)
                nursery.start_soon(watch, fake, "B", 2.5, 4)
            # A reconnect continues where the market stands.
            await watch(fake, "C", 10.0, 2)
    assert seen == [
        (1.0, "A", "trades", "1000000"),
        (1.0, "A", "tickers", "1"),
        (2.0, "A", "trades", "1000001"),
        (2.0, "A", "tickers", "2"),
        (3.0, "A", "trades", "1000002"),
        (3.0, "A", "tickers", "3"),
        (3.5, "B", "trades", "1000003"),  # B joins the market where it stands
        (3.5, "B", "tickers", "4"),
        (4.0, "A", "trades", "1000003"),  # ... and A sends the same trade a bit later
        (4.5, "B", "trades", "1000004"),
        (4.5, "B", "tickers", "5"),
        (11.0, "C", "trades", "1000005"),
        (11.0, "C", "tickers", "6"),
    ]


async def test_numbered_deribit_trades_quotes_and_books_continue_across_sessions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deribit = FakeDeribit(numbered=True)
    channels = ["trades.BTC-PERPETUAL.100ms", "quote.BTC-PERPETUAL", "book.BTC-PERPETUAL.100ms"]
    request = msgspec.json.encode(
        {"jsonrpc": "2.0", "id": 1, "method": "public/subscribe", "params": {"channels": channels}}
    ).decode()

    async def session(fake: FakeExchange) -> list[Any]:
        got: list[Any] = []
        async with trio.open_nursery() as nursery, client(fake, nursery) as ws:
            await ws.send_message(request)
            assert body(await ws.get_message())["result"] == channels
            while len(got) < 6:
                got.append(body(await ws.get_message())["params"]["data"])
        return got

    async with open_fake_exchange(
        name="deribit", transport="memory", interval=1.0, handler=deribit
    ) as fake:
        with trio.fail_after(30):
            first = await session(fake)
            second = await session(fake)
    trades = [[t["trade_id"] for t in data] for data in first[0::3] + second[0::3]]
    assert trades == [
        ["403691824", "403691825"],
        ["403691826", "403691827"],
        ["403691828", "403691829"],  # the second session continues the market's count
        ["403691830", "403691831"],
    ]
    quotes = [data["best_bid_amount"] for data in first[1::3] + second[1::3]]
    assert quotes == [1.0, 2.0, 3.0, 4.0]
    books = [(d["type"], d["prev_change_id"], d["change_id"]) for d in first[2::3] + second[2::3]]
    assert books == [
        ("snapshot", None, 133112427566),
        ("change", 133112427566, 133112427567),
        ("snapshot", None, 133112427567),  # the new session's book starts where it stands
        ("change", 133112427567, 133112427568),
    ]


async def test_numbered_binance_and_bybit_tickers_carry_their_update_id_as_bid_size(
    autojump_clock: trio.testing.MockClock,
) -> None:
    binance = FakeBinance(numbered=True)
    bybit = FakeBybit(numbered=True)
    async with (
        open_fake_exchange(
            name="binance", transport="memory", interval=1.0, handler=binance
        ) as binance_fake,
        open_fake_exchange(name="bybit", transport="memory", interval=1.0, handler=bybit) as fake,
    ):
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                async with client(binance_fake, nursery, "/stream") as ws:
                    subscribe = '{"method":"SUBSCRIBE","params":["btcusdt@bookTicker"],"id":1}'
                    await ws.send_message(subscribe)
                    assert await ws.get_message() == '{"result":null,"id":1}'
                    ticker = body(await ws.get_message())["data"]
                async with client(fake, nursery, "/v5/public/spot") as ws:
                    await ws.send_message('{"op":"subscribe","args":["orderbook.1.BTCUSDT"]}')
                    assert body(await ws.get_message())["success"] is True
                    top = body(await ws.get_message())["data"]
    assert (ticker["u"], ticker["B"], ticker["A"]) == (10000003, "10000003", "10000003")
    assert (top["u"], top["b"][0][1]) == (18521288, "18521288")


# -- the generic fake's soak features ------------------------------------------------


async def test_the_data_tap_sees_every_data_frame_before_it_is_written(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tapped: list[tuple[float, int, str | bytes, int]] = []
    async with open_fake_exchange(transport="memory", interval=1.0) as fake:

        def tap(session: FakeSession, frame: str | bytes) -> None:
            tapped.append((trio.current_time(), session.index, frame, session.sent))

        fake.data_tap = tap
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery, client(fake, nursery) as ws:
                await ws.send_message("subscribe")
                assert await ws.get_message() == '{"seq":0,"session":0}'
                assert await ws.get_message() == '{"seq":1,"session":0}'
                await fake.send("not data")  # scripted frames are not data
                assert await ws.get_message() == "not data"
    # Tapped before the write: ``sent`` still counts the frames before this one.
    assert tapped[:2] == [
        (1.0, 0, '{"seq":0,"session":0}', 0),
        (2.0, 0, '{"seq":1,"session":0}', 1),
    ]


async def test_one_session_can_be_closed_or_reset_and_closed_ones_forgotten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(transport="memory", interval=math.inf) as fake:
        with trio.fail_after(30):
            async with (
                trio.open_nursery() as nursery,
                client(fake, nursery) as a,
                client(fake, nursery) as b,
            ):
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                await fake.close(4000, "only a", session=0)
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await a.get_message()
                assert (closed.value.reason.code, closed.value.reason.reason) == (
                    4000,
                    "only a",
                )
                await fake.reset(session=1)
                with pytest.raises(trio_websocket.ConnectionClosed) as reset:
                    await b.get_message()
                assert reset.value.reason.code == 1006
                async with client(fake, nursery):
                    await fake.wait_until(lambda f: len(f.sessions) == 3)
                    codes = [(s.index, s.open, s.fake_close_code) for s in fake.sessions]
                    assert fake.forget_closed() == 2
                    assert [s.index for s in fake.sessions] == [2]
    assert codes == [(0, False, 4000), (1, False, 1006), (2, True, None)]
    assert [(s.index, s.fake_close_code, s.close_code) for s in fake.sessions] == [
        (2, None, 1000)  # the client closed it
    ]


async def test_a_stalled_session_holds_the_exchanges_pings_and_rule_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A half-open connection: whatever the exchange's rules do meanwhile, nothing reaches
    # the client until the path is back. OKX closes a session idle for 30 s (4004);
    # Binance pings every 5 s here.
    okx = FakeOkx()
    binance = FakeBinance(ping_interval=5.0, pong_timeout=100.0)
    async with (
        open_fake_exchange(name="okx", transport="memory", interval=math.inf, handler=okx) as o,
        open_fake_exchange(
            name="binance", transport="memory", interval=math.inf, handler=binance
        ) as b,
    ):
        with trio.fail_after(100):
            async with (
                trio.open_nursery() as nursery,
                client(o, nursery) as okx_ws,
                client(b, nursery),
            ):
                await okx_ws.send_message(OKX_SUBSCRIBE)
                await okx_ws.get_message()
                await okx_ws.get_message()  # acks at t=0: the last push
                await trio.sleep_until(7.0)  # the fake's side of the story
                assert binance.sessions[0].pings == 1  # the ping at 5 s was answered
                o.stall()
                b.stall()
                await trio.sleep_until(40.0)
                assert okx.closes == [(30.0, 0, 4004, "No data received in 30s")]
                assert o.sessions[0].open  # ... but held: nothing went out
                assert binance.sessions[0].pongs == 1
                o.resume()
                b.resume()
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await okx_ws.get_message()
                assert (trio.current_time(), closed.value.reason.code) == (40.0, 4004)
                await b.wait_until(lambda f: binance.sessions[0].pongs > 1)
                assert trio.current_time() == 40.0  # the held pings go out now
                nursery.cancel_scope.cancel()


async def test_okx_counts_scripted_frames_as_pushes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    okx = FakeOkx()
    async with open_fake_exchange(
        name="okx", transport="memory", interval=math.inf, handler=okx
    ) as fake:
        with trio.fail_after(100):
            async with trio.open_nursery() as nursery, client(fake, nursery) as ws:
                await ws.send_message(OKX_SUBSCRIBE)
                await ws.get_message()
                await ws.get_message()
                await trio.sleep_until(20.0)
                await fake.garbage()
                assert await ws.get_message() == "\x00garbage{"
                with pytest.raises(trio_websocket.ConnectionClosed):
                    await ws.get_message()
    assert okx.closes == [(50.0, 0, 4004, "No data received in 30s")]
