"""Tests for :class:`supervisor.testing.FakeBybit`, Bybit's v5 public stream server.

Rules of this file: a plain trio-websocket client talks to the fake over in-memory
streams on MockClock (``autojump_clock``), so every time asserted is exact virtual time.
The fake pushes data every 1 s (``interval=1.0``) unless a test stops it
(``math.inf``). Nothing sleeps to synchronize: a test waits for the next frame, for the
connection to close, or for the fake's state (``wait_until``). Every test has a deadline
in virtual seconds.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, final

import msgspec
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from exchanges.helpers import fixture_lines
from supervisor.testing import FakeBybit, FakeExchange, open_fake_exchange
from supervisor.testing.fakes.bybit import (
    DEFAULT_EPOCH_MS,
    DEFAULT_MAX_CONNECTS,
    FIRST_SEQ,
    FIRST_TRADE_ID,
    FIRST_UPDATE_ID,
)

SPOT = "/v5/public/spot"
LINEAR = "/v5/public/linear"
DEADLINE = 10_000
#: conn_id of session 0 and 1.
CONN0 = "00000000-0000-4000-8000-000000000000"
CONN1 = "00000000-0000-4000-8000-000000000001"


@final
class Client:
    """One trio-websocket client session with JSON helpers."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws

    async def send(self, request: dict[str, Any] | str) -> None:
        text = request if isinstance(request, str) else msgspec.json.encode(request).decode()
        await self.ws.send_message(text)

    async def text(self) -> str:
        message = await self.ws.get_message()
        assert isinstance(message, str)
        return message

    async def frame(self) -> dict[str, Any]:
        decoded = msgspec.json.decode(await self.text())
        assert isinstance(decoded, dict)
        return decoded

    async def timed(self) -> tuple[float, str]:
        """The next text frame and the virtual time it arrived."""
        text = await self.text()
        return trio.current_time(), text

    async def closed(self) -> tuple[float, int, str | None]:
        """Read until the server closes; return (time, close code, reason)."""
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await self.ws.get_message()
        reason = info.value.reason
        return trio.current_time(), int(reason.code), reason.reason


@asynccontextmanager
async def running(
    bybit: FakeBybit, *, interval: float = 1.0
) -> AsyncIterator[tuple[FakeExchange, trio.Nursery, list[trio.abc.Stream]]]:
    streams: list[trio.abc.Stream] = []
    try:
        async with (
            open_fake_exchange(
                name="bybit", transport="memory", interval=interval, handler=bybit
            ) as fake,
            trio.open_nursery() as nursery,
        ):
            yield fake, nursery, streams
            nursery.cancel_scope.cancel(reason="test done")
    finally:
        for stream in streams:
            await stream.aclose()


async def connect(
    fake: FakeExchange, nursery: trio.Nursery, streams: list[trio.abc.Stream], path: str
) -> Client:
    stream = await fake.connect(f"wss://stream.bybit.com{path}")
    streams.append(stream)
    ws = await wrap_client_stream(
        nursery,
        stream,  # type: ignore[arg-type]  # any trio Stream works
        "stream.bybit.com",
        path,
    )
    return Client(ws)


def ms(t: float) -> int:
    return DEFAULT_EPOCH_MS + round(t * 1000)


# == requests and acks ===============================================================


async def test_spot_ack_echoes_req_id_and_says_subscribe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    async with running(bybit, interval=math.inf) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, SPOT)
            await client.send(
                {"req_id": "10001", "op": "subscribe", "args": ["publicTrade.BTCUSDT"]}
            )
            ack = await client.text()
            await client.send({"op": "subscribe", "args": ["publicTrade.ETHUSDT"]})
            bare = await client.text()
            await client.send({"req_id": 7, "op": "unsubscribe", "args": ["publicTrade.ETHUSDT"]})
            unsub = await client.text()
    assert ack == (
        f'{{"success":true,"ret_msg":"subscribe","conn_id":"{CONN0}","req_id":"10001",'
        f'"op":"subscribe"}}'
    )
    # Spot leaves req_id out when the request had none (documented pong example).
    assert bare == f'{{"success":true,"ret_msg":"subscribe","conn_id":"{CONN0}","op":"subscribe"}}'
    assert unsub == (
        f'{{"success":true,"ret_msg":"unsubscribe","conn_id":"{CONN0}","req_id":7,'
        f'"op":"unsubscribe"}}'
    )
    assert list(bybit.sessions[0].topics) == ["publicTrade.BTCUSDT"]
    assert bybit.sessions[0].category == "spot"


async def test_linear_ack_has_empty_ret_msg_and_req_id(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    async with running(bybit, interval=math.inf) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, LINEAR)
            await client.send({"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
            ack = await client.text()
            await client.send({"req_id": "r2", "op": "subscribe", "args": ["publicTrade.SOLUSDT"]})
            ack2 = await client.text()
    assert ack == (
        f'{{"success":true,"ret_msg":"","conn_id":"{CONN0}","req_id":"","op":"subscribe"}}'
    )
    assert ack2 == (
        f'{{"success":true,"ret_msg":"","conn_id":"{CONN0}","req_id":"r2","op":"subscribe"}}'
    )
    assert bybit.sessions[0].category == "linear"


async def test_spot_refuses_more_than_ten_args_linear_takes_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    eleven = [f"publicTrade.{s}" for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ETHBTC")]
    eleven += [f"tickers.{s}" for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ETHBTC")]
    eleven += ["orderbook.1.BTCUSDT", "orderbook.50.BTCUSDT", "orderbook.200.BTCUSDT"]
    linear = [topic.replace("ETHBTC", "BTCPERP") for topic in eleven]
    bybit = FakeBybit()
    async with running(bybit, interval=math.inf) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            spot = await connect(fake, nursery, streams, SPOT)
            await spot.send({"req_id": "a", "op": "subscribe", "args": eleven})
            refused = await spot.text()
            await spot.send({"req_id": "b", "op": "subscribe", "args": eleven[:10]})
            accepted = await spot.frame()
            perp = await connect(fake, nursery, streams, LINEAR)
            await perp.send({"req_id": "c", "op": "subscribe", "args": linear})
            linear_ack = await perp.frame()
    assert refused == (
        f'{{"success":false,"ret_msg":"args size >10","conn_id":"{CONN0}","req_id":"a",'
        f'"op":"subscribe"}}'
    )
    assert (accepted["success"], accepted["req_id"]) == (True, "b")
    assert list(bybit.sessions[0].topics) == eleven[:10]
    assert (linear_ack["success"], linear_ack["req_id"]) == (True, "c")
    assert list(bybit.sessions[1].topics) == linear


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (SPOT, "publicTrade.btcusdt"),  # symbols are case-sensitive
        (SPOT, "publicTrade.BTCPERP"),  # a linear symbol on spot
        (SPOT, "orderbook.500.BTCUSDT"),
        (LINEAR, "orderbook.500.BTCUSDT"),  # removed from the docs in 2025, refused live
        (LINEAR, "orderbook.30.BTCUSDT"),
        (LINEAR, "kline.1.BTCUSDT"),  # a real topic the fake does not serve
        (LINEAR, "order"),  # private
        (LINEAR, "orderbook.x.BTCUSDT"),
    ],
)
async def test_unknown_topic_refuses_the_whole_request(
    autojump_clock: trio.testing.MockClock, path: str, bad: str
) -> None:
    bybit = FakeBybit()
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, path)
            await client.send(
                {"req_id": "e1", "op": "subscribe", "args": ["publicTrade.ETHUSDT", bad]}
            )
            reply = await client.frame()
            # Nothing was subscribed, so nothing flows: the next frame is the pong.
            await client.send({"op": "ping"})
            pong = await client.frame()
    assert reply == {
        "success": False,
        "ret_msg": f"error:handler not found,topic:{bad}",
        "conn_id": CONN0,
        "req_id": "e1",
        "op": "subscribe",
    }
    assert pong["ret_msg"] == "pong"
    assert bybit.sessions[0].topics == {}


async def test_already_subscribed_refuses_the_request_and_the_first_keeps_streaming(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, LINEAR)
            await client.send({"req_id": "1", "op": "subscribe", "args": ["publicTrade.ETHUSDT"]})
            assert (await client.frame())["success"] is True
            await client.send(
                {
                    "req_id": "2",
                    "op": "subscribe",
                    "args": ["publicTrade.BTCUSDT", "publicTrade.ETHUSDT"],
                }
            )
            again = await client.frame()
            await client.send(
                {"req_id": "3", "op": "subscribe", "args": ["tickers.SOLUSDT", "tickers.SOLUSDT"]}
            )
            twice = await client.frame()
            trade = await client.frame()
            when = trio.current_time()
    assert again == {
        "success": False,
        "ret_msg": "error:already subscribed,topic:publicTrade.ETHUSDT",
        "conn_id": CONN0,
        "req_id": "2",
        "op": "subscribe",
    }
    assert twice["ret_msg"] == "error:already subscribed,topic:tickers.SOLUSDT"
    assert (when, trade["topic"]) == (1.0, "publicTrade.ETHUSDT")
    assert list(bybit.sessions[0].topics) == ["publicTrade.ETHUSDT"]


@pytest.mark.parametrize(
    ("request_text", "ret_msg", "req_id", "op"),
    [
        ('{"req_id":"x","op":"nope"}', "error:invalid op", "x", "nope"),
        ('{"op":"subscribe"}', "Params Error", "", "subscribe"),
        ('{"op":"subscribe","args":[]}', "Params Error", "", "subscribe"),
        ('{"op":"subscribe","args":[1]}', "Params Error", "", "subscribe"),
        ('{"op":"subscribe","args":"tickers.BTCUSDT"}', "Params Error", "", "subscribe"),
    ],
)
async def test_malformed_requests_get_a_failure(
    autojump_clock: trio.testing.MockClock,
    request_text: str,
    ret_msg: str,
    req_id: str,
    op: str,
) -> None:
    bybit = FakeBybit()
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, LINEAR)
            await client.send(request_text)
            reply = await client.frame()
    assert reply == {
        "success": False,
        "ret_msg": ret_msg,
        "conn_id": CONN0,
        "req_id": req_id,
        "op": op,
    }


async def test_text_that_is_not_json_keeps_the_socket_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, SPOT)
            await client.send("hello")
            reply = await client.frame()
            await client.send("[1]")
            array = await client.frame()
            await client.send({"op": "ping"})
            pong = await client.frame()
    assert reply["success"] is False
    assert reply["ret_msg"].startswith("Failed to decode incoming data:")
    assert set(reply) == {"success", "ret_msg", "conn_id"}
    assert array["ret_msg"] == "Failed to decode incoming data:expect an object"
    assert pong["ret_msg"] == "pong"


async def test_args_over_the_character_limit_are_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # ["tickers.BTCUSDT"] is 19 characters of JSON; two such topics are 37.
    bybit = FakeBybit(max_args_chars=19)
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, LINEAR)
            await client.send(
                {"req_id": "1", "op": "subscribe", "args": ["tickers.BTCUSDT", "tickers.SOLUSDT"]}
            )
            refused = await client.frame()
            await client.send({"req_id": "2", "op": "subscribe", "args": ["tickers.BTCUSDT"]})
            accepted = await client.frame()
    assert (refused["success"], refused["ret_msg"]) == (False, "error:args too long")
    assert (accepted["success"], accepted["req_id"]) == (True, "2")
    assert list(bybit.sessions[0].topics) == ["tickers.BTCUSDT"]


# == heartbeat and the idle rule =====================================================


async def test_ping_is_answered_per_category(autojump_clock: trio.testing.MockClock) -> None:
    bybit = FakeBybit()
    async with running(bybit, interval=math.inf) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            spot = await connect(fake, nursery, streams, SPOT)
            await spot.send({"req_id": "100001", "op": "ping"})
            spot_pong = await spot.text()
            await spot.send({"op": "ping"})
            spot_bare = await spot.text()
            perp = await connect(fake, nursery, streams, LINEAR)
            await perp.send({"op": "ping"})
            linear_pong = await perp.text()
    assert spot_pong == (
        f'{{"success":true,"ret_msg":"pong","conn_id":"{CONN0}","req_id":"100001","op":"ping"}}'
    )
    assert spot_bare == f'{{"success":true,"ret_msg":"pong","conn_id":"{CONN0}","op":"ping"}}'
    assert linear_pong == (
        f'{{"success":true,"ret_msg":"pong","conn_id":"{CONN1}","req_id":"","op":"ping"}}'
    )
    assert (bybit.sessions[0].pings, bybit.sessions[1].pings) == (2, 1)


async def test_silent_session_is_closed_after_ten_minutes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, SPOT)
            closed = await client.closed()
    assert closed == (600.0, 1000, "no ping or data for 600 s")
    assert bybit.closes == [(600.0, 0, 1000, "no ping or data for 600 s")]
    assert bybit.sessions[0].closed_for == "1000 no ping or data for 600 s"


async def test_idle_check_runs_every_30_s_so_a_late_ping_moves_the_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, SPOT)
            await trio.sleep_until(15.0)  # the client pings once, at t=15
            await client.send({"op": "ping"})
            assert (await client.frame())["ret_msg"] == "pong"
            closed = await client.closed()
    # Idle since t=15; the check at 600 finds 585 s, the one at 630 finds 615 s.
    assert closed == (630.0, 1000, "no ping or data for 600 s")


async def test_pings_every_20_s_keep_a_quiet_session_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit(idle_timeout=60.0, idle_check_interval=10.0)
    async with running(bybit, interval=math.inf) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, LINEAR)
            for n in range(1, 31):
                await trio.sleep_until(20.0 * n)  # the client's heartbeat period
                await client.send({"op": "ping"})
                assert (await client.frame())["ret_msg"] == "pong"
            assert trio.current_time() == 600.0
            bybit.answer_pings = False  # the server stops answering: pings no longer count
            await client.send({"op": "ping"})
            closed = await client.closed()
    assert closed == (660.0, 1000, "no ping or data for 60 s")
    assert bybit.sessions[0].pings == 31


async def test_streaming_data_keeps_a_session_open_without_pings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit(idle_timeout=60.0)
    async with running(bybit, interval=50.0) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, SPOT)
            await client.send({"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
            await client.frame()  # ack
            times = []
            for _ in range(20):
                await client.frame()
                times.append(trio.current_time())
            fake.interval = 100.0  # the next frame is 100 s after the previous one
            closed = await client.closed()
    assert times == [50.0 * n for n in range(1, 21)]
    # Last data at 1000; checks at 1050 (50 s idle) and 1080 (80 s): closed at 1080.
    assert closed == (1080.0, 1000, "no ping or data for 60 s")


async def test_unknown_path_is_closed_at_once(autojump_clock: trio.testing.MockClock) -> None:
    bybit = FakeBybit()
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, "/v5/public/inverse")
            closed = await client.closed()
    assert closed == (0.0, 1008, "no public stream at /v5/public/inverse")
    assert bybit.sessions[0].category is None


async def test_paths_and_the_query_string(autojump_clock: trio.testing.MockClock) -> None:
    bybit = FakeBybit(paths={"/ws": "linear"})
    async with running(bybit, interval=math.inf) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, "/ws?max_active_time=1m")
            await client.send({"op": "ping"})
            pong = await client.frame()
    assert pong["req_id"] == ""  # linear
    assert bybit.sessions[0].category == "linear"


# == data ============================================================================


async def test_spot_trades_book_and_ticker_frames(autojump_clock: trio.testing.MockClock) -> None:
    bybit = FakeBybit()
    args = ["publicTrade.BTCUSDT", "orderbook.50.BTCUSDT", "tickers.BTCUSDT"]
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, SPOT)
            await client.send({"req_id": "s", "op": "subscribe", "args": args})
            await client.frame()  # ack
            texts = [await client.timed() for _ in range(5)]
    stamps = [when for when, _ in texts]
    assert stamps == [0.0, 0.0, 1.0, 1.0, 1.0]
    snapshot, ticker, trade, delta, ticker2 = (text for _, text in texts)
    u0, s0 = FIRST_UPDATE_ID, FIRST_SEQ
    # The levels are the venue's true book: its top 50 at u0, then the change to u0 + 1.
    venue = bybit.venue_book("spot", "BTCUSDT")
    start, then = venue.at(u0), venue.at(u0 + 1)
    assert start is not None and then is not None
    bids, asks = (msgspec.json.encode(side[:50]).decode() for side in start)
    assert bids.startswith('[["10000.40","') and asks.startswith('[["1000')
    assert snapshot == (
        f'{{"topic":"orderbook.50.BTCUSDT","ts":{ms(0)},"type":"snapshot","data":{{"s":"BTCUSDT",'
        f'"b":{bids},"a":{asks},'
        f'"u":{u0},"seq":{s0}}},"cts":{ms(0) - 2}}}'
    )
    change = []
    for old_side, new_side, descending in ((start[0], then[0], True), (start[1], then[1], False)):
        old = {p: s for p, s in old_side[:50]}
        new = {p: s for p, s in new_side[:50]}
        levels = [[p, s] for p, s in new.items() if old.get(p) != s]
        levels += [[p, "0"] for p in old if p not in new]
        change.append(sorted(levels, key=lambda level: float(level[0]), reverse=descending))
    assert change != [[], []]
    assert ticker == (
        f'{{"topic":"tickers.BTCUSDT","ts":{ms(0)},"type":"snapshot","cs":{s0 + 3},'
        f'"data":{{"symbol":"BTCUSDT","lastPrice":"10001.50","highPrice24h":"10500.00",'
        f'"lowPrice24h":"9500.00","prevPrice24h":"10000.00","volume24h":"6780.866843",'
        f'"turnover24h":"141946527.22907118","price24hPcnt":"0.0196",'
        f'"usdIndexPrice":"10001.50"}}}}'
    )
    assert trade == (
        f'{{"topic":"publicTrade.BTCUSDT","ts":{ms(1)},"type":"snapshot","data":[{{'
        f'"i":"{FIRST_TRADE_ID}","T":{ms(1) - 1},"p":"10000.50","v":"0.00903","S":"Buy",'
        f'"seq":{s0 + 6},"s":"BTCUSDT","BT":false,"RPI":false}}]}}'
    )
    assert msgspec.json.decode(delta) == {
        "topic": "orderbook.50.BTCUSDT",
        "ts": ms(1),
        "type": "delta",
        "data": {
            "s": "BTCUSDT",
            "b": change[0],
            "a": change[1],
            "u": u0 + 1,
            "seq": s0 + 9,
        },
        "cts": ms(1) - 2,
    }
    assert msgspec.json.decode(ticker2)["type"] == "snapshot"  # spot tickers: snapshots only


async def test_book_u_chain_gap_and_service_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, LINEAR)
            await client.send({"op": "subscribe", "args": ["orderbook.200.ETHUSDT"]})
            await client.frame()  # ack
            seen = []
            for n in range(9):
                if n == 3:
                    bybit.inject_gap("orderbook.200.ETHUSDT")
                if n == 6:
                    bybit.restart_books()
                frame = await client.frame()
                seen.append(
                    (trio.current_time(), frame["type"], frame["data"]["u"], frame["data"]["seq"])
                )
    u0, s0 = FIRST_UPDATE_ID, FIRST_SEQ
    assert seen == [
        (0.0, "snapshot", u0, s0),
        (1.0, "delta", u0 + 1, s0 + 3),
        (2.0, "delta", u0 + 2, s0 + 6),
        (3.0, "delta", u0 + 4, s0 + 9),  # u0 + 3 was lost
        (4.0, "delta", u0 + 5, s0 + 12),
        (5.0, "delta", u0 + 6, s0 + 15),
        (6.0, "snapshot", 1, s0 + 18),  # service restart: replace the book
        (7.0, "delta", 2, s0 + 21),
        (8.0, "delta", 3, s0 + 24),
    ]


async def test_linear_book_puts_type_before_ts_and_depth_1_is_all_snapshots(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, LINEAR)
            await client.send(
                {"op": "subscribe", "args": ["orderbook.50.BTCUSDT", "orderbook.1.SOLUSDT"]}
            )
            await client.frame()  # ack
            texts = [await client.text() for _ in range(6)]
    frames = [msgspec.json.decode(text) for text in texts]
    assert [list(f)[:3] for f in frames[:2]] == [
        ["topic", "type", "ts"],  # linear level 50: type before ts
        ["topic", "ts", "type"],  # level 1: ts before type
    ]
    level1 = [(f["type"], f["data"]["u"]) for f in frames if f["topic"] == "orderbook.1.SOLUSDT"]
    assert level1 == [
        ("snapshot", FIRST_UPDATE_ID),
        ("snapshot", FIRST_UPDATE_ID + 1),
        ("snapshot", FIRST_UPDATE_ID + 2),
    ]
    # Level 50: the venue book's whole top 50 (it holds fewer); level 1: the best bid.
    btc = bybit.venue_book("linear", "BTCUSDT").at(FIRST_UPDATE_ID)
    assert btc is not None and 5 <= len(btc[0]) <= 50
    assert [len(f["data"]["b"]) for f in frames if f["type"] == "snapshot"] == [
        len(btc[0]),
        1,
        1,
        1,
    ]


async def test_linear_ticker_snapshot_then_deltas(autojump_clock: trio.testing.MockClock) -> None:
    bybit = FakeBybit()
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, LINEAR)
            await client.send({"op": "subscribe", "args": ["tickers.BTCUSDT"]})
            await client.frame()  # ack
            frames = [await client.frame() for _ in range(3)]
    snapshot, first, second = frames
    assert list(snapshot) == ["topic", "type", "data", "cs", "ts"]
    assert (snapshot["type"], snapshot["cs"], snapshot["ts"]) == ("snapshot", FIRST_SEQ, ms(0))
    assert {"bid1Price", "bid1Size", "ask1Price", "ask1Size", "fundingRate"} <= set(
        snapshot["data"]
    )
    assert (snapshot["data"]["bid1Price"], snapshot["data"]["ask1Price"]) == (
        "10000.40",
        "10000.60",
    )
    assert first == {
        "topic": "tickers.BTCUSDT",
        "type": "delta",
        "data": {
            "symbol": "BTCUSDT",
            "lastPrice": "10001.50",
            "bid1Price": "10001.40",
            "bid1Size": "85.489",
            "ask1Price": "10001.60",
            "ask1Size": "83.020",
        },
        "cs": FIRST_SEQ + 3,
        "ts": ms(1),
    }
    assert (second["type"], second["cs"], second["ts"]) == ("delta", FIRST_SEQ + 6, ms(2))


async def test_linear_trade_ids_increase_and_carry_tick_direction(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, LINEAR)
            await client.send({"op": "subscribe", "args": ["publicTrade.ETHUSDT"]})
            await client.frame()  # ack
            first = await client.text()
            rest = [await client.frame() for _ in range(2)]
    assert first == (
        f'{{"topic":"publicTrade.ETHUSDT","type":"snapshot","ts":{ms(1)},"data":[{{'
        f'"T":{ms(1) - 1},"s":"ETHUSDT","S":"Buy","v":"0.001","p":"20000.50","L":"PlusTick",'
        f'"i":"00000000-0000-5000-8000-000000000000","BT":false,"seq":{FIRST_SEQ}}}]}}'
    )
    assert [(f["data"][0]["i"], f["data"][0]["S"], f["data"][0]["L"]) for f in rest] == [
        ("00000000-0000-5000-8000-000000000001", "Sell", "MinusTick"),
        ("00000000-0000-5000-8000-000000000002", "Buy", "PlusTick"),
    ]


async def test_a_new_session_continues_trade_ids_and_book_ids(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    args = ["publicTrade.BTCUSDT", "orderbook.50.BTCUSDT"]
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            first = await connect(fake, nursery, streams, SPOT)
            await first.send({"op": "subscribe", "args": args})
            await first.frame()  # ack
            book = [await first.frame() for _ in range(5)]  # snapshot, then 2 x (trade, delta)
            await first.ws.aclose()
            await fake.wait_until(lambda f: not f.sessions[0].open)
            second = await connect(fake, nursery, streams, SPOT)
            await second.send({"op": "subscribe", "args": args})
            await second.frame()  # ack
            again = [await second.frame() for _ in range(3)]
    assert [f["data"]["u"] for f in (book[0], book[2], book[4])] == [
        FIRST_UPDATE_ID,
        FIRST_UPDATE_ID + 1,
        FIRST_UPDATE_ID + 2,
    ]
    assert [f["data"][0]["i"] for f in (book[1], book[3])] == [
        str(FIRST_TRADE_ID),
        str(FIRST_TRADE_ID + 1),
    ]
    assert (again[0]["type"], again[0]["data"]["u"]) == ("snapshot", FIRST_UPDATE_ID + 3)
    assert again[1]["data"][0]["i"] == str(FIRST_TRADE_ID + 2)
    assert (again[2]["type"], again[2]["data"]["u"]) == ("delta", FIRST_UPDATE_ID + 4)


async def test_unsubscribe_stops_the_topic(autojump_clock: trio.testing.MockClock) -> None:
    bybit = FakeBybit()
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            client = await connect(fake, nursery, streams, SPOT)
            await client.send(
                {"op": "subscribe", "args": ["publicTrade.BTCUSDT", "publicTrade.ETHUSDT"]}
            )
            await client.frame()  # ack
            topics = [(await client.frame())["topic"] for _ in range(2)]
            await client.send({"op": "unsubscribe", "args": ["publicTrade.BTCUSDT"]})
            unsub = await client.frame()
            after = [await client.timed() for _ in range(2)]
    assert topics == ["publicTrade.BTCUSDT", "publicTrade.ETHUSDT"]
    assert (unsub["op"], unsub["ret_msg"]) == ("unsubscribe", "unsubscribe")
    assert [(when, msgspec.json.decode(text)["topic"]) for when, text in after] == [
        (2.0, "publicTrade.ETHUSDT"),
        (3.0, "publicTrade.ETHUSDT"),
    ]


def test_fake_rejects_bad_constants() -> None:
    assert DEFAULT_MAX_CONNECTS == (500, 300.0)  # for open_fake_exchange(max_connects=...)
    with pytest.raises(ValueError, match=r"^idle_timeout must be positive, got 0$"):
        FakeBybit(idle_timeout=0)
    with pytest.raises(ValueError, match=r"^spot_max_args must be positive, got 0$"):
        FakeBybit(spot_max_args=0)
    with pytest.raises(ValueError, match=r"^linear_symbols must list at least one symbol"):
        FakeBybit(linear_symbols=())
    with pytest.raises(ValueError, match=r"^paths must map at least one path to a category$"):
        FakeBybit(paths={})
    with pytest.raises(ValueError, match=r"^inject_gap\('tickers.BTCUSDT'\): expected a topic"):
        FakeBybit().inject_gap("tickers.BTCUSDT")


# == the fake against the documented shapes (tests/data/bybit) ======================

lines = fixture_lines("bybit")


def fixture(name: str) -> list[dict[str, Any]]:
    return [msgspec.json.decode(line) for line in lines(name)]


def shape(frame: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Top-level keys and the keys of the (first) data object, in wire order."""
    data = frame.get("data")
    inner = data[0] if isinstance(data, list) else data
    return list(frame), list(inner) if isinstance(inner, dict) else []


def test_fixture_chains_are_consistent() -> None:
    book = fixture("spot_orderbook50.jsonl")
    chain = [(f["type"], f["data"]["u"]) for f in book]
    first = chain[0][1]
    assert chain == [
        ("snapshot", first),
        ("delta", first + 1),
        ("delta", first + 2),
        ("delta", first + 3),
        ("delta", first + 4),
        ("snapshot", 1),  # service restart: overwrite the local book
        ("delta", 2),
        ("delta", 3),
    ]
    seqs = [f["data"]["seq"] for f in book]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    ids = [int(t["i"]) for f in fixture("spot_trades.jsonl") for t in f["data"]]
    assert ids == list(range(ids[0], ids[0] + 5))
    tickers = fixture("linear_tickers.jsonl")
    assert [f["type"] for f in tickers] == ["snapshot"] + ["delta"] * 4
    assert [f["cs"] for f in tickers] == sorted(f["cs"] for f in tickers)
    acks = fixture("acks.jsonl")
    assert [(a["success"], a["ret_msg"].partition(",")[0]) for a in acks] == [
        (True, "subscribe"),
        (True, ""),
        (False, "args size >10"),
        (False, "error:handler not found"),
        (False, "error:already subscribed"),
        (True, "pong"),
        (True, "pong"),
        (True, "pong"),
    ]


async def test_fake_frames_have_the_fixture_shapes(autojump_clock: trio.testing.MockClock) -> None:
    bybit = FakeBybit()
    async with running(bybit) as (fake, nursery, streams):
        with trio.fail_after(DEADLINE):
            spot = await connect(fake, nursery, streams, SPOT)
            await spot.send(
                {"req_id": "10001", "op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}
            )
            spot_ack = await spot.frame()
            spot_frames = [await spot.frame() for _ in range(2)]
            await spot.send({"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
            await spot.frame()  # ack
            spot_frames += [await spot.frame() for _ in range(2)]
            perp = await connect(fake, nursery, streams, LINEAR)
            await perp.send({"op": "subscribe", "args": ["tickers.BTCUSDT", "publicTrade.BTCUSDT"]})
            linear_ack = await perp.frame()
            linear_frames = [await perp.frame() for _ in range(3)]
            await perp.send({"op": "ping"})
            linear_pong = await perp.frame()
    acks = fixture("acks.jsonl")
    assert list(spot_ack) == list(acks[0])
    assert list(linear_ack) == list(acks[1])
    assert list(linear_pong) == list(acks[6])
    by_kind = {(f["topic"].partition(".")[0], f["type"]): f for f in spot_frames}
    book = fixture("spot_orderbook50.jsonl")
    assert shape(by_kind[("orderbook", "snapshot")]) == shape(book[0])
    assert shape(by_kind[("orderbook", "delta")]) == shape(book[1])
    assert shape(by_kind[("publicTrade", "snapshot")]) == shape(fixture("spot_trades.jsonl")[0])
    linear = {(f["topic"].partition(".")[0], f["type"]): f for f in linear_frames}
    tickers = fixture("linear_tickers.jsonl")
    assert shape(linear[("tickers", "snapshot")]) == shape(tickers[0])
    assert list(linear[("tickers", "delta")]) == list(tickers[1])
    assert shape(linear[("publicTrade", "snapshot")]) == shape(fixture("linear_trades.jsonl")[0])
