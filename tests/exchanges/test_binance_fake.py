"""The rules of :class:`FakeBinance`, checked with bare WebSocket clients.

A wsproto or trio-websocket client talks to the fake over in-memory streams on
MockClock (autojump), so every time asserted is exact virtual time; no supervisor is
involved. Constructor checks are tested here too.
"""

from __future__ import annotations

import math

import msgspec
import pytest
import trio
import trio.testing
from trio_websocket import wrap_client_stream
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request

from exchanges.helpers import fixture_lines
from supervisor.testing import FakeExchange, open_fake_exchange
from supervisor.testing.fakes.binance import DEFAULT_EPOCH_MS, FakeBinance

#: Where test connections point; the memory fake serves any URL.
URL = "ws://binance.fake.invalid/stream"
lines = fixture_lines("binance")
#: Unix ms the fake stamps at trio time t: DEFAULT_EPOCH_MS + 1000 t.
EPOCH = DEFAULT_EPOCH_MS


async def test_the_fake_drops_a_client_that_does_not_pong(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A bare wsproto client that never answers pings: closed 50 s after the first ping."""
    described_ping = msgspec.json.decode(lines("heartbeat_frames_described.jsonl")[0])
    binance = FakeBinance(ping_interval=20.0, pong_timeout=50.0)
    pings: list[tuple[float, bytes]] = []
    closed: tuple[float, int, str | None] | None = None
    async with open_fake_exchange(
        name="binance", transport="memory", interval=math.inf, handler=binance
    ) as fake:
        with trio.fail_after(120):
            stream = await fake.connect(URL)
            ws = WSConnection(ConnectionType.CLIENT)
            await stream.send_all(ws.send(Request(host="binance.fake.invalid", target="/stream")))
            while closed is None:
                data = await stream.receive_some()
                ws.receive_data(bytes(data) if data else None)
                for event in ws.events():
                    if isinstance(event, Ping):
                        pings.append((trio.current_time(), bytes(event.payload)))
                    elif isinstance(event, CloseConnection):
                        closed = (trio.current_time(), event.code, event.reason)
                    else:
                        assert isinstance(event, AcceptConnection)
            await stream.aclose()
    assert [t for t, _ in pings] == [20.0, 40.0, 60.0]
    # Like the real thing: the payload is the server's time in Unix ms.
    assert pings[0][1] == str(EPOCH + 20_000).encode()
    assert len(pings[0][1]) == len(described_ping["payload_utf8"])
    assert closed == (70.0, 1008, "No pong within 50 s")
    assert binance.sessions[0].closed_for == "1008 No pong within 50 s"


def test_fake_rejects_bad_constants() -> None:
    with pytest.raises(ValueError, match=r"^pong_timeout must be positive, got 0$"):
        FakeBinance(pong_timeout=0)
    with pytest.raises(ValueError, match=r"^inject_gap\('DOGEUSDT'\): the fake lists only "):
        FakeBinance().inject_gap("DOGEUSDT")


async def _exchange(fake: FakeExchange, frames: list[str]) -> list[str]:
    """Send raw frames over a trio-websocket client; return every reply, in order."""
    replies = []
    async with trio.open_nursery() as nursery:
        ws = await wrap_client_stream(
            nursery,
            await fake.connect(URL),  # type: ignore[arg-type]  # any trio Stream works
            "binance.fake.invalid",
            "/stream",
        )
        for frame in frames:
            await ws.send_message(frame)
            replies.append(str(await ws.get_message()))
        await ws.aclose()
    return replies


async def test_fake_answers_requests_like_binance(autojump_clock: trio.testing.MockClock) -> None:
    binance = FakeBinance(max_streams=3, max_incoming=100)
    async with open_fake_exchange(
        name="binance", transport="memory", interval=math.inf, handler=binance
    ) as fake:
        with trio.fail_after(10):
            replies = await _exchange(
                fake,
                [
                    "not json",
                    '{"method":"SUBSCRIBE","params":["BTCUSDT@trade"],"id":1}',
                    '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1.5}',
                    '{"params":["btcusdt@trade"],"id":2}',
                    '{"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"],"id":"a1"}',
                    '{"method":"SUBSCRIBE","params":["bnbusdt@trade","nknusdt@trade"],"id":3}',
                    '{"method":"LIST_SUBSCRIPTIONS","id":4}',
                    '{"method":"SET_PROPERTY","params":["combined",false],"id":5}',
                    '{"method":"GET_PROPERTY","params":["combined"],"id":6}',
                    '{"method":"SET_PROPERTY","params":["combined",1],"id":7}',
                    '{"method":"GET_PROPERTY","params":["speed"],"id":8}',
                    '{"method":"UNSUBSCRIBE","params":["ethusdt@trade"],"id":null}',
                ],
            )
    assert replies == [
        '{"error":{"code":3,"msg":"Invalid JSON: JSON is malformed: invalid character '
        '(byte 4)"},"id":null}',
        '{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":1}',
        '{"error":{"code":2,"msg":"Invalid request: request ID must be an unsigned integer"},'
        '"id":null}',
        '{"error":{"code":2,"msg":"Invalid request: missing field `method`"},"id":2}',
        '{"result":null,"id":"a1"}',
        '{"error":{"code":4,"msg":"Too many subscriptions"},"id":3}',
        '{"result":["btcusdt@trade","ethusdt@trade"],"id":4}',
        '{"result":null,"id":5}',
        '{"result":false,"id":6}',
        '{"error":{"code":1,"msg":"Invalid value type: expected Boolean"},"id":7}',
        '{"error":{"code":0,"msg":"Unknown property"},"id":8}',
        '{"result":null,"id":null}',
    ]
    assert binance.sessions[0].streams == {"btcusdt@trade": None}
