"""The fault soak (``python -m supervisor.testing.soak``) and what it relies on in the fakes.

- The fakes' soak features, checked with a bare trio-websocket client on MockClock:
  numbered mode (one market for every session), the data tap, closing or resetting one
  session, forgetting closed sessions, stalls that hold a handler's pings and rule
  closes, OKX counting scripted frames as pushes.
- The ledger's accounting, synchronously: how each undelivered message is classified.
- A short soak on each transport with a fixed seed (300 faults in memory, 20 over
  loopback TCP): no bound broken, nothing lost silently, no leak. The long runs are
  documented in docs/reliability.md.
- The soak reports a broken bound with the fault and the command that replays it.
- The command line: bad input exits 2 with one line and no traceback; --json; --quiet.

No fault kind fails on this code today, so no case is marked xfail (see
docs/reliability.md for what each kind proves).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
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
from supervisor.testing.soak import FaultKind, SoakOptions, run_soak
from supervisor.testing.soak._cli import main
from supervisor.testing.soak._ledger import End, Ledger
from supervisor.testing.soak._report import replay_command, summarize
from supervisor.testing.soak._venues import Item

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config.toml"
PROG = "python -m supervisor.testing.soak"
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
            await watch(fake, "C", 10.0, 2)
    assert seen == [
        (1.0, "A", "trades", "1000000"),
        (1.0, "A", "tickers", "1"),
        (2.0, "A", "trades", "1000001"),
        (2.0, "A", "tickers", "2"),
        (3.0, "A", "trades", "1000002"),
        (3.0, "A", "tickers", "3"),
        (3.5, "B", "trades", "1000002"),  # B also gets the event on its way to A ...
        (3.5, "B", "tickers", "3"),
        (4.0, "A", "trades", "1000003"),  # ... and from then on both get every event
        (4.5, "B", "trades", "1000003"),
        (4.5, "B", "tickers", "4"),
        (11.0, "C", "trades", "1000004"),  # alone after a reconnect: the market moved on
        (11.0, "C", "tickers", "5"),
    ]


async def test_a_numbered_binance_session_joining_another_repeats_its_last_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    binance = FakeBinance(numbered=True)
    subscribe = '{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@depth@100ms"],"id":1}'
    seen: list[tuple[float, str, Any]] = []

    async def watch(fake: FakeExchange, name: str, at: float, frames: int) -> None:
        await trio.sleep_until(at)
        async with trio.open_nursery() as nursery, client(fake, nursery, "/stream") as ws:
            await ws.send_message(subscribe)
            assert await ws.get_message() == '{"result":null,"id":1}'
            for _ in range(frames):
                data = body(await ws.get_message())["data"]
                seen.append((trio.current_time(), name, data.get("t") or (data["U"], data["u"])))

    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=binance
    ) as fake:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch, fake, "A", 0.0, 6)
                nursery.start_soon(watch, fake, "B", 1.5, 4)
    assert seen == [
        (1.0, "A", 1000001),
        (1.0, "A", (10000001, 10000003)),
        (2.0, "A", 1000002),
        (2.0, "A", (10000004, 10000006)),
        (2.5, "B", 1000002),  # B also gets the events on their way to A
        (2.5, "B", (10000004, 10000006)),
        (3.0, "A", 1000003),
        (3.0, "A", (10000007, 10000009)),
        (3.5, "B", 1000003),  # ... and from then on every event A gets
        (3.5, "B", (10000007, 10000009)),
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


# -- the ledger ------------------------------------------------------------------------


def trades(*ids: int) -> list[Item]:
    return [Item("trade", "BTCUSDT", i) for i in ids]


def test_the_ledger_classifies_every_message_the_consumer_missed() -> None:
    ledger = Ledger()
    # Session 0 ends with the fake's close frame: everything written must arrive.
    for n in (1, 2, 3):
        ledger.sent("c", 0, trades(n))
    ledger.delivered("c", Item("trade", "BTCUSDT", 1))
    ledger.delivered("c", Item("trade", "BTCUSDT", 3))
    ledger.ended("c", 0, End.CLOSED, 3, "close #0")
    # Session 1 is reset: 5 arrived, 6 and 7 were on the wire, 8 was cut mid-write.
    for n in (4, 5, 6, 7, 8):
        ledger.sent("c", 1, trades(n))
    ledger.delivered("c", Item("trade", "BTCUSDT", 5))
    ledger.ended("c", 1, End.ABRUPT, 4, "reset #1")
    # Session 2 is live: 10 arrived, 9 did not.
    for n in (9, 10, 11):
        ledger.sent("c", 2, trades(n))
    ledger.delivered("c", Item("trade", "BTCUSDT", 10))
    ledger.settle("c", live=2, mark=2)
    totals = ledger.totals
    assert (totals.sent, totals.delivered, totals.settled) == (11, 4, 10)
    assert (totals.silent, totals.in_flight, totals.cut, totals.max_tail) == (3, 2, 1, 2)
    assert dict(totals.in_flight_by_fault) == {"reset": 2}
    assert [(loss.id, loss.session, loss.why) for loss in ledger.losses] == [
        (2, 0, "lost before the fake's close frame"),
        (4, 1, "lost before the last delivered frame of an abruptly ended session"),
        (9, 2, "lost on a live session (a later frame was delivered)"),
    ]
    assert ledger.unsettled() == 1  # 11: written after the mark
    # A session joining later repeats the latest settled event: a copy, as good as
    # delivered (the handover drops it), not a new message to wait for.
    ledger.sent("c", 3, trades(10))
    assert (totals.sent, totals.overlaps, ledger.unsettled()) == (12, 1, 1)
    assert ledger.last_delivered("c", 3) == 0
    # Delivered but not yet final (no later frame yet): unsettled, but no longer owed.
    assert ledger.unsettled_undelivered() == 1
    ledger.delivered("c", Item("trade", "BTCUSDT", 11))
    assert (ledger.unsettled(), ledger.unsettled_undelivered()) == (1, 0)


def test_a_frame_of_a_retired_session_waits_for_the_successor_to_pass_it() -> None:
    ledger = Ledger()
    # Session 0 is retired at a handover with trade 3 unread on its socket; the successor
    # (session 1) joined at 2 and writes 3 on its own beat, after the checkpoint.
    for n in (1, 2, 3):
        ledger.sent("c", 0, trades(n))
    ledger.sent("c", 1, trades(2))
    for n in (1, 2):
        ledger.delivered("c", Item("trade", "BTCUSDT", n))
    ledger.ended("c", 0, End.RETIRED, 3, "notice #0")
    ledger.settle("c", live=1, mark=1)
    assert (ledger.totals.silent, ledger.unsettled_undelivered()) == (0, 1)  # 3 waits
    ledger.sent("c", 1, trades(3))
    ledger.sent("c", 1, trades(4))
    ledger.delivered("c", Item("trade", "BTCUSDT", 3))
    ledger.delivered("c", Item("trade", "BTCUSDT", 4))
    ledger.settle("c", live=1, mark=3)
    assert (ledger.totals.silent, ledger.totals.settled, ledger.unsettled()) == (0, 4, 0)
    # A frame the successor skipped is lost once the delivered stream has passed it.
    for n in (5, 6, 7):
        ledger.sent("c", 1, trades(n))
    ledger.delivered("c", Item("trade", "BTCUSDT", 5))
    ledger.ended("c", 1, End.RETIRED, 6, "notice #1")
    ledger.sent("c", 2, trades(7))
    ledger.delivered("c", Item("trade", "BTCUSDT", 7))
    ledger.settle("c", live=2, mark=1)
    assert ledger.totals.silent == 1
    assert [(loss.id, loss.why) for loss in ledger.losses] == [
        (6, "lost when the client retired the session (not covered by its successor)")
    ]


def test_the_ledger_checks_the_order_of_what_arrives() -> None:
    ledger = Ledger()
    book = "book"
    ledger.sent("c", 0, trades(1, 2))
    ledger.sent("c", 0, [Item("ticker", "BTCUSDT", 7)])
    ledger.sent("c", 0, [Item(book, "BTCUSDT", 10, None, True), Item(book, "BTCUSDT", 12, 10)])
    ledger.sent("c", 0, [Item(book, "BTCUSDT", 16, 14)])  # the fake skipped 14: a gap
    ledger.sent("c", 1, [Item(book, "BTCUSDT", 20, 18)])  # a new session's first delta
    for n in (1, 2, 1):
        ledger.delivered("c", Item("trade", "BTCUSDT", n))
    ledger.handovers.add("c")
    ledger.delivered("c", Item("ticker", "BTCUSDT", 7))
    ledger.delivered("c", Item("ticker", "BTCUSDT", 7))  # during a handover: allowed
    ledger.handovers.clear()
    ledger.delivered("c", Item("ticker", "BTCUSDT", 7))  # not any more
    ledger.delivered("c", Item(book, "BTCUSDT", 10, None, True))
    ledger.delivered("c", Item(book, "BTCUSDT", 12, 10))
    ledger.delivered("c", Item(book, "BTCUSDT", 16, 14))
    ledger.delivered("c", Item(book, "BTCUSDT", 20, 18))
    ledger.delivered("c", Item(book, "BTCUSDT", 12, 10))  # again: behind the chain
    totals = ledger.totals
    assert (totals.duplicates, totals.repeated_tickers, totals.repeated_outside_handover) == (
        1,
        2,
        1,
    )
    assert (totals.gaps_written, totals.gaps_delivered, totals.breaks) == (1, 1, 2)
    assert (totals.session_breaks, totals.unexplained_breaks, totals.backwards) == (1, 0, 1)
    assert ledger.anomalies == [
        "c trade BTCUSDT: trade 1 delivered after 2 (a duplicate or out of order)",
        "c ticker BTCUSDT: ticker 7 repeated after 7",
        "c book BTCUSDT: delta 10->12 delivered after 20 (a duplicate or out of order)",
    ]


# -- short soaks -------------------------------------------------------------------------


def check_clean(result: Any) -> dict[str, Any]:
    summary, violations = summarize(result)
    assert [v.text for v in violations] == [], "\n".join(v.text for v in violations)
    assert summary["supervisor"]["stopped_early"] is None
    messages = summary["messages"]
    assert messages["silent_losses"] == 0
    assert messages["trade_duplicates"] == messages["book_backwards"] == 0
    assert messages["unexpected"] == messages["book_breaks_unexplained"] == 0
    assert messages["delivered"] > 0
    assert messages["dropped_by_policy"] == 0  # overflow = "block"
    # Every message written once is delivered once, or accounted as never fully sent.
    assert messages["written"] - messages["written_by_two_sessions"] == (
        messages["delivered"]
        - messages["delivered_again"]
        + messages["cut_mid_write"]
        + messages["lost_in_flight"]
        + messages["unsettled_undelivered_at_end"]
    )
    assert summary["leaks"]["off_baseline"] == 0
    assert summary["leaks"]["checkpoints"] == summary["rounds"] + 1
    return summary


async def test_a_short_memory_soak_of_the_shipped_config_breaks_no_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    options = SoakOptions(
        config=str(CONFIG), faults=300, seed=2026, transport="memory", kinds=frozenset(FaultKind)
    )
    result = await run_soak(options)
    summary = check_clean(result)
    assert summary["faults"] == 300
    assert set(summary["kinds"]) == {kind.value for kind in FaultKind}
    assert all(row["over_bound"] == 0 for row in summary["kinds"].values())
    assert summary["config"]["stale_after"] == [30.0]
    assert summary["config"]["backoff"]["reset_after"] == 60.0


def fast_config(path: Path) -> Path:
    """config.toml with times a CI run can afford (Deribit's heartbeat needs 12 s)."""
    text = CONFIG.read_text()
    for old, new in (
        ("shutdown_timeout = 5.0", "shutdown_timeout = 1.0"),
        ("stale_after = 30.0", "stale_after = 2.0"),
        ("connect_timeout = 10.0", "connect_timeout = 2.0"),
        ("initial = 0.5", "initial = 0.05"),
        ("max = 30.0", "max = 0.5"),
        ("reset_after = 60.0", "reset_after = 1.0"),
        ('exchange = "deribit"', 'exchange = "deribit"\nstale_after = 12.0\nheartbeat = 10.0'),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)
    return path


async def test_a_short_soak_over_loopback_tcp_breaks_no_bound(tmp_path: Path) -> None:
    kinds = frozenset(FaultKind) - {FaultKind.STALL}  # a Deribit stall takes 12 s here
    options = SoakOptions(
        config=str(fast_config(tmp_path / "fast.toml")),
        faults=20,
        seed=7,
        transport="tcp",
        kinds=kinds,
        max_outage=0.5,
    )
    with trio.fail_after(60):
        result = await run_soak(options)
    summary = check_clean(result)
    assert summary["faults"] == 20
    assert summary["leaks"]["fds"]["last"] == summary["leaks"]["fds"]["baseline"]


async def test_the_soak_names_the_fault_that_broke_a_bound(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    # One connection attempt per 100 s per host: far slower than the backoff, so the
    # reconnect after the close comes long after delay + stale_after + 1 s.
    path = tmp_path / "slow-permits.toml"
    path.write_text(
        "[supervisor]\nconnect_attempts = 1\nconnect_interval = 100.0\n"
        '[connections.deribit]\nexchange = "deribit"\nchannels = ["trades"]\n'
        'symbols = ["BTC-USDT"]\n'
    )
    options = SoakOptions(
        config=str(path), faults=1, seed=1, transport="memory", kinds=frozenset({FaultKind.CLOSE})
    )
    result = await run_soak(options)
    _, violations = summarize(result)
    (record,) = result.broken
    assert record.recovered is not None and record.bound < 31.6
    assert record.recovered == pytest.approx(100.0 - record.at, abs=1e-6)
    assert [(v.fault, v.kind, v.venue) for v in violations] == [(0, "close", "deribit")]
    assert violations[0].text == (
        f"live again after {record.recovered:.2f} s > bound {record.bound:.2f} s "
        f"(delay {record.delay:.2f} + stale_after 30 + 1)"
    )
    assert replay_command(result, 1) == (
        f"{PROG} --transport memory --seed 1 --faults 1 --kinds close --config {path}"
    )


# -- the command line --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--kinds", "stall,nope"],
            "--kinds 'stall,nope': unknown fault kind(s) 'nope'; choose from close, reset, "
            "stall, refuse, reject, garbage, oversized, notice, gap, slow, outage",
        ),
        (["--faults", "0"], "--faults 0: inject at least 1 fault"),
        (["--max-outage", "nan"], "--max-outage nan: expected a positive number of seconds"),
        (["--fault-list"], "--fault-list lists every fault in the --json file; add --json FILE"),
        (
            ["--config", "missing.toml"],
            "missing.toml: cannot read: no such file (pass the path of a TOML config file)",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"{PROG}: error: {message}\n")


def test_a_config_without_fakes_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "raw.toml"
    path.write_text('[connections.r]\nexchange = "raw"\nurl = "wss://example.com/ws"\n')
    assert main(["--config", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"{PROG}: error: {path}: connection 'r' uses exchange 'raw', which has no "
        "rule-enforcing fake; the soak runs binance, binance_usdm, okx, deribit, bybit, "
        "bybit_linear\n"
    )


def test_the_command_line_runs_a_soak_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "supervisor.testing.soak", "--faults", "8", "--seed", "3"),
            *("--json", str(out), "--fault-list", "--quiet"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "soak: 8 faults, seed 3: no violations\n",
        "",
    )
    document = json.loads(out.read_text())
    assert document["command"] == f"{PROG} --transport memory --seed 3 --faults 8"
    assert (document["faults"], document["violations"], document["violation_list"]) == (8, 0, [])
    assert [fault["index"] for fault in document["fault_list"]] == list(range(8))
    assert document["broken_faults"] == []
    assert document["messages"]["silent_losses"] == 0
