"""The rules of :class:`FakeDeribit`, checked with a bare trio-websocket client.

Tests run on the memory transport under ``autojump_clock`` with exact virtual times;
every one has a ``fail_after`` deadline. No supervisor is involved.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection

from supervisor.testing import FakeExchange, open_fake_exchange
from supervisor.testing.fakes.deribit import FakeDeribit

#: Exchange time of the fake at trio time 0 (FakeDeribit's start_ms default).
T0 = 1765541474086


@asynccontextmanager
async def client(exchange: FakeExchange) -> AsyncIterator[WebSocketConnection]:
    stream = await exchange.connect(exchange.url)
    async with trio.open_nursery() as nursery:
        ws = await trio_websocket.wrap_client_stream(nursery, stream, "deribit", "/ws")  # type: ignore[arg-type]
        try:
            yield ws
        finally:
            await ws.aclose()
            await stream.aclose()


async def call(ws: WebSocketConnection, request_id: int, method: str, **params: Any) -> Any:
    request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    await ws.send_message(msgspec.json.encode(request).decode())
    return msgspec.json.decode(await ws.get_message())


def error_of(reply: dict[str, Any]) -> tuple[int, str]:
    return reply["error"]["code"], reply["error"]["message"]


@pytest.mark.parametrize(("answer_window", "closed_at"), [(None, 20.0), (2.5, 12.5)])
async def test_fake_closes_a_client_that_ignores_test_request(
    autojump_clock: trio.testing.MockClock, answer_window: float | None, closed_at: float
) -> None:
    deribit = FakeDeribit(answer_window=answer_window)
    with trio.fail_after(100):
        async with (
            open_fake_exchange(name="deribit", transport="memory", handler=deribit) as exchange,
            client(exchange) as ws,
        ):
            reply = await call(ws, 1, "public/set_heartbeat", interval=10)
            assert (reply["id"], reply["result"]) == (1, "ok")
            assert await ws.get_message() == (
                '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}'
            )
            assert await ws.get_message() == (
                '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}'
            )
            assert trio.current_time() == 10.0
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert trio.current_time() == closed_at
    reason = closed.value.reason
    assert reason is not None
    assert reason.code == 1008
    assert deribit.sessions[0].closed == reason.reason
    assert (deribit.sessions[0].test_requests, deribit.sessions[0].answered) == (1, 0)


async def test_fake_keeps_a_client_that_answers(autojump_clock: trio.testing.MockClock) -> None:
    deribit = FakeDeribit(answer_window=0.5)
    with trio.fail_after(100):
        async with (
            open_fake_exchange(name="deribit", transport="memory", handler=deribit) as exchange,
            client(exchange) as ws,
        ):
            await call(ws, 1, "public/set_heartbeat", interval=10)
            for n in range(2, 6):
                await ws.get_message()  # heartbeat
                await ws.get_message()  # test_request
                reply = await call(ws, n, "public/test")
                assert reply["result"] == {"version": "1.2.26"}
            assert trio.current_time() == 40.0
    session = deribit.sessions[0]
    assert (session.test_requests, session.answered, session.closed) == (4, 4, None)


async def test_fake_refuses_bad_requests_as_deribit_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deribit = FakeDeribit()
    with trio.fail_after(100):
        async with (
            open_fake_exchange(
                name="deribit", transport="memory", handler=deribit, interval=1.0
            ) as exchange,
            client(exchange) as ws,
        ):
            short = await call(ws, 1, "public/set_heartbeat", interval=5)
            assert short["error"] == {
                "code": -32602,
                "message": "Invalid params",
                "data": {"param": "interval", "reason": "must be a number of seconds, at least 10"},
            }
            assert error_of(await call(ws, 2, "public/nope")) == (-32601, "Method not found")
            await ws.send_message("{not json")
            assert error_of(msgspec.json.decode(await ws.get_message())) == (-32700, "Parse error")
            raw = await call(
                ws,
                3,
                "public/subscribe",
                channels=["trades.BTC-PERPETUAL.100ms", "book.BTC-PERPETUAL.raw"],
            )
            assert error_of(raw) == (13778, "raw_subscriptions_not_available_for_unauthorized")
            unknown = await call(
                ws, 4, "public/subscribe", channels=["quote.BTC-PERPETUAL", "quote.NOPE-PERPETUAL"]
            )
            assert unknown["error"]["data"] == {
                "param": "channels",
                "reason": "unknown instrument in channel quote.NOPE-PERPETUAL",
            }
            # Whole-request rejection: nothing of those requests was subscribed, no data.
            assert deribit.sessions[0].channels == []
            ok = await call(ws, 5, "public/subscribe", channels=["quote.ETH-PERPETUAL"])
            assert ok["result"] == ["quote.ETH-PERPETUAL"]
            quote = msgspec.json.decode(await ws.get_message())
            assert trio.current_time() == 1.0
            assert quote["params"] == {
                "channel": "quote.ETH-PERPETUAL",
                "data": {
                    "timestamp": T0 + 1000,
                    "instrument_name": "ETH-PERPETUAL",
                    "best_ask_price": 3120.75,
                    "best_bid_price": 3120.25,
                    "best_ask_amount": 99470.0,
                    "best_bid_amount": 133440.0,
                },
            }
    assert deribit.sessions[0].errors == [
        (-32602, "Invalid params"),
        (-32601, "Method not found"),
        (-32700, "Parse error"),
        (13778, "raw_subscriptions_not_available_for_unauthorized"),
        (-32602, "Invalid params"),
    ]


async def test_fake_subscribe_bucket_answers_10028_then_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deribit = FakeDeribit(subscribe_burst=2, subscribe_rate=1.0)
    with trio.fail_after(100):
        async with (
            open_fake_exchange(name="deribit", transport="memory", handler=deribit) as exchange,
            client(exchange) as ws,
        ):
            for n in (1, 2):
                reply = await call(ws, n, "public/subscribe", channels=["quote.BTC-PERPETUAL"])
                assert reply["result"] == ["quote.BTC-PERPETUAL"]
            # Other methods draw on their own bucket.
            assert (await call(ws, 3, "public/test"))["result"] == {"version": "1.2.26"}
            refused = await call(ws, 4, "public/subscribe", channels=["quote.ETH-PERPETUAL"])
            assert refused["id"] == 4
            assert error_of(refused) == (10028, "too_many_requests")
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert trio.current_time() == 0.0
    assert closed.value.reason is not None
    assert (closed.value.reason.code, closed.value.reason.reason) == (1008, "too_many_requests")


async def test_fake_book_gap_injection(autojump_clock: trio.testing.MockClock) -> None:
    deribit = FakeDeribit()
    with trio.fail_after(100):
        async with (
            open_fake_exchange(
                name="deribit", transport="memory", handler=deribit, interval=1.0
            ) as exchange,
            client(exchange) as ws,
        ):
            await call(ws, 1, "public/subscribe", channels=["book.BTC-PERPETUAL.100ms"])
            books = []
            for _ in range(2):
                books.append(msgspec.json.decode(await ws.get_message())["params"]["data"])
            assert deribit.inject_gap("BTC-PERPETUAL") == 1
            assert deribit.inject_gap("ETH-PERPETUAL") == 0
            for _ in range(2):
                books.append(msgspec.json.decode(await ws.get_message())["params"]["data"])
    assert [(b["type"], b["prev_change_id"], b["change_id"]) for b in books] == [
        ("snapshot", None, 133112427566),
        ("change", 133112427566, 133112427567),
        ("change", 133112427568, 133112427569),  # 133112427568 was never sent
        ("change", 133112427569, 133112427570),
    ]
