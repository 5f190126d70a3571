"""The rules of :class:`FakeOkx`, checked with a bare trio-websocket client.

The client talks to the fake over in-memory streams on MockClock (autojump); no
supervisor is involved. The fake's data frames are compared with the shapes of the 2025
captures in ``tests/data/okx/``.
"""

from __future__ import annotations

import msgspec
import trio
import trio.testing
import trio_websocket

from exchanges.helpers import fixture_lines
from supervisor.testing import open_fake_exchange
from supervisor.testing.fakes.okx import FakeOkx

NOTICE = "The connection will soon be closed for a service upgrade. Please reconnect."
lines = fixture_lines("okx")


async def test_fake_answers_requests_like_okx(autojump_clock: trio.testing.MockClock) -> None:
    okx = FakeOkx()
    okx.mute()
    conn = "94d38800"
    exchanges = [
        (
            "not json",
            '{"event":"error","msg":"Invalid request: not json","code":"60012",'
            f'"connId":"{conn}"}}',
        ),
        (
            '{"op":"login","args":[]}',
            f'{{"event":"error","msg":"Invalid op: login","code":"60019","connId":"{conn}"}}',
        ),
        (
            '{"op":"subscribe","args":[]}',
            f'{{"event":"error","msg":"Invalid args","code":"60013","connId":"{conn}"}}',
        ),
        (
            '{"op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT"}]}',
            '{"event":"error","msg":"Wrong URL or channel:candle1m, instId:BTC-USDT doesn\'t '
            "exist. Please use the correct URL, channel and parameters referring to API "
            f'document.","code":"60018","connId":"{conn}"}}',
        ),
        (
            '{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"}]}',
            '{"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},'
            f'"connId":"{conn}"}}',
        ),
        (
            '{"op":"unsubscribe","args":[{"channel":"trades","instId":"BTC-USDT"}]}',
            '{"event":"unsubscribe","arg":{"channel":"trades","instId":"BTC-USDT"},'
            f'"connId":"{conn}"}}',
        ),
        ("ping", "pong"),
    ]
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=okx
    ) as fake:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                stream = await fake.connect(fake.url)
                ws = await trio_websocket.wrap_client_stream(
                    nursery, stream, "okx.fake.invalid", "/ws"
                )
                for request, answer in exchanges:
                    await ws.send_message(request)
                    assert await ws.get_message() == answer
                await okx.notice()
                assert await ws.get_message() == (
                    f'{{"event":"notice","msg":"{NOTICE}","code":"64008","connId":"{conn}"}}'
                )
                await ws.aclose()
    assert okx.closes == []


def keys(frame: str | bytes) -> tuple[list[str], list[str]]:
    """The frame's top-level keys and its first data entry's keys."""
    value = msgspec.json.decode(frame)
    return list(value), list(value["data"][0])


async def test_fake_data_frames_are_shaped_like_the_2025_captures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    okx = FakeOkx()
    args = ",".join(
        f'{{"channel":"{c}","instId":"BTC-USDT-SWAP"}}' for c in ("trades", "tickers", "books")
    )
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=okx
    ) as fake:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                stream = await fake.connect(fake.url)
                ws = await trio_websocket.wrap_client_stream(
                    nursery, stream, "okx.fake.invalid", "/ws"
                )
                await ws.send_message(f'{{"op":"subscribe","args":[{args}]}}')
                frames = [await ws.get_message() for _ in range(7)]
                assert trio.current_time() == 1.0
                okx.inject_gap("BTC-USDT-SWAP")
                later = [await ws.get_message() for _ in range(3)]
                await ws.aclose()
    acks, snapshot, (trade_frame, ticker_frame, update) = frames[:3], frames[3], frames[4:]
    assert [msgspec.json.decode(a)["event"] for a in acks] == ["subscribe"] * 3
    assert keys(trade_frame) == keys(lines("trades_2025.jsonl")[0])
    assert keys(ticker_frame) == keys(lines("tickers_2025.jsonl")[0])
    real_snapshot, real_update = lines("books_seqid_2025_truncated.jsonl")
    assert sorted(keys(snapshot)[1]) == sorted(keys(real_snapshot)[1])
    assert sorted(keys(update)[1]) == sorted(keys(real_update)[1])
    assert keys(snapshot)[0] == keys(real_snapshot)[0] == ["arg", "action", "data"]
    chain = [
        (e["prevSeqId"], e["seqId"])
        for e in (msgspec.json.decode(f)["data"][0] for f in (snapshot, update, later[2]))
    ]
    assert chain == [(-1, 1000), (1000, 1002), (1004, 1006)]  # 1004 never sent
