"""OKX end to end: the supervisor against :class:`FakeOkx` over in-memory streams on
MockClock, with exact virtual times.

FakeOkx data (``interval`` 1 s): for every subscribed topic one frame per second after
the subscription; ``books`` also sends its snapshot right after the ack. Trade ``n`` of a
topic in session ``k`` has tradeId ``1_000_000 * (k + 1) + n`` and price ``{100 + n}.5``;
a book starts at seqId 1000 and steps by 2.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from actors.connection import DEFAULT_HANDOVER_WAIT
from actors.exchanges import ADAPTERS
from actors.exchanges.messages import BookDelta, BookSnapshot, Message, Ticker, Trade
from exchanges.helpers import Dialer, TinyOkx, bare, okx_config
from supervisor import config_from_dict, open_supervisor
from supervisor.testing import open_fake_exchange
from supervisor.testing.fakes.okx import EPOCH_MS, FakeOkx

URL = "wss://ws.okx.com:8443/ws/v5/public"
D = Decimal
WRONG_TRADES_NOPE = (
    "Wrong URL or channel:trades, instId:NOPE-USDT doesn't exist. Please use the correct "
    "URL, channel and parameters referring to API document."
)


def e2e_trade(symbol: str, n: int, at: float, session: int = 0) -> Trade:
    return Trade(
        connection="okx",
        exchange="okx",
        received_at=0.0,
        symbol=symbol,
        side="buy" if n % 2 == 0 else "sell",
        price=D(f"{100 + n}.5"),
        amount=D("0.01"),
        trade_id=str(1_000_000 * (session + 1) + n),
        timestamp=EPOCH_MS + int(at * 1000),
    )


def subscribe_frame(*pairs: tuple[str, str]) -> str:
    args = ",".join(f'{{"channel":"{c}","instId":"{s}"}}' for c, s in pairs)
    return f'{{"op":"subscribe","args":[{args}]}}'


async def test_data_flows_as_typed_messages(autojump_clock: trio.testing.MockClock) -> None:
    okx = FakeOkx()
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=okx
    ) as fake:
        dialer = Dialer(fake)
        config = okx_config(
            channels=["trades", "ticker", "book"], symbols=["BTC-USDT", "ETH-USDT-PERP"]
        )
        got: list[tuple[float, Message]] = []
        with trio.fail_after(30):
            async with open_supervisor(config, connector=dialer) as sup:
                async for msg in sup.messages():
                    got.append((trio.current_time(), bare(msg)))
                    if len(got) == 8:
                        break
                stats = (await sup.stats()).connections[0]
    common: dict[str, Any] = {"connection": "okx", "exchange": "okx", "received_at": 0.0}
    native = {"BTC-USDT": "BTC-USDT", "ETH-USDT-PERP": "ETH-USDT-SWAP"}

    def decimals(side: list[list[str]]) -> tuple[tuple[D, D], ...]:
        return tuple((D(price), D(size)) for price, size in side)

    def snapshot(symbol: str) -> BookSnapshot:
        # The venue's true book at seqId 1000, as it stood when the session subscribed.
        book = okx.venue_book(native[symbol]).at(1000)
        assert book is not None
        return BookSnapshot(
            **common,
            symbol=symbol,
            bids=decimals(book[0]),
            asks=decimals(book[1]),
            sequence=1000,
            timestamp=EPOCH_MS,
            checksum=0,  # the fake sends 0, as OKX does since 2026-06-23
        )

    def quote(symbol: str) -> Ticker:
        return Ticker(
            **common,
            symbol=symbol,
            bid=D("100.4"),
            bid_size=D("1.5"),
            ask=D("100.6"),
            ask_size=D("2.25"),
            timestamp=EPOCH_MS + 1000,
        )

    def delta(symbol: str) -> BookDelta:
        # The venue book's first change (seqId 1000 -> 1002).
        change = okx.venue_book(native[symbol]).diff(1000, 1002)
        assert change is not None and change != ([], [])
        return BookDelta(
            **common,
            symbol=symbol,
            bids=decimals(change[0]),
            asks=decimals(change[1]),
            sequence=1002,
            prev_sequence=1000,
            timestamp=EPOCH_MS + 1000,
            checksum=0,
        )

    assert got == [
        (0.0, snapshot("BTC-USDT")),  # right after the books ack
        (0.0, snapshot("ETH-USDT-PERP")),
        (1.0, e2e_trade("BTC-USDT", 0, 1.0)),
        (1.0, e2e_trade("ETH-USDT-PERP", 0, 1.0)),
        (1.0, quote("BTC-USDT")),
        (1.0, quote("ETH-USDT-PERP")),
        (1.0, delta("BTC-USDT")),
        (1.0, delta("ETH-USDT-PERP")),
    ]
    assert dialer.attempts == [(0.0, URL)]  # the default endpoint
    assert fake.sessions[0].received[0] == subscribe_frame(
        ("trades", "BTC-USDT"),
        ("trades", "ETH-USDT-SWAP"),
        ("tickers", "BTC-USDT"),
        ("tickers", "ETH-USDT-SWAP"),
        ("books", "BTC-USDT"),
        ("books", "ETH-USDT-SWAP"),
    )
    assert stats.subscriptions == {
        "trades:BTC-USDT": "live",
        "trades:ETH-USDT-SWAP": "live",
        "tickers:BTC-USDT": "live",
        "tickers:ETH-USDT-SWAP": "live",
        "books:BTC-USDT": "live",
        "books:ETH-USDT-SWAP": "live",
    }
    assert (stats.state, stats.malformed, stats.gaps) == ("live", 0, 0)


async def test_quiet_channel_kept_alive_by_ping(autojump_clock: trio.testing.MockClock) -> None:
    okx = FakeOkx()  # closes a session that was pushed nothing for 30 s
    okx.mute()
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=okx
    ) as fake:
        with trio.fail_after(300):
            async with open_supervisor(
                okx_config(channels=["trades"], symbols=["BTC-USDT"]), connector=fake.connect
            ) as sup:
                await trio.sleep_until(190.0)  # 12 heartbeat periods of silence
                stats = (await sup.stats()).connections[0]
    # The ack at 0 was the last data; the ping follows half of stale_after (30 s):
    # ping at 15, pong, ping at 30, ... ping at 180.
    assert fake.sessions[0].received == [subscribe_frame(("trades", "BTC-USDT"))] + ["ping"] * 12
    assert okx.closes == []
    assert len(fake.sessions) == 1
    assert (stats.connects, stats.restarts, stats.frames) == (1, 0, 13)  # ack + 12 pongs


async def test_a_steady_feed_needs_no_ping(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=FakeOkx()
    ) as fake:
        with trio.fail_after(300):
            async with open_supervisor(
                okx_config(channels=["trades"], symbols=["BTC-USDT"]), connector=fake.connect
            ):
                await trio.sleep_until(100.0)
    assert "ping" not in fake.sessions[0].received
    assert len(fake.sessions) == 1


@pytest.mark.parametrize(
    "subscribe",
    [[], ['{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"}]}']],
    ids=["never-subscribes", "never-pings"],
)
async def test_fake_drops_a_client_that_breaks_the_idle_rules(
    autojump_clock: trio.testing.MockClock, subscribe: list[str]
) -> None:
    okx = FakeOkx()
    okx.mute()
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=okx
    ) as fake:
        config = config_from_dict(
            {
                "supervisor": {"shutdown_timeout": 1.0},
                "connections": {
                    "raw": {
                        "exchange": "raw",
                        "url": fake.url,
                        "subscribe": subscribe,
                        "stale_after": 100.0,
                        "backoff": {"initial": 1.0, "jitter": "none"},
                    }
                },
            },
            source="<test>",
        )
        with trio.fail_after(300):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                assert trio.current_time() == 31.0  # closed at 30, backoff 1 s
                stats = (await sup.stats()).connections[0]
    assert okx.closes[0] == (30.0, 0, 4004, "No data received in 30s")
    assert stats.last_error == (
        "ConnectionLost: connection lost: close code 4004 (PRIVATE_RESERVED) "
        f"'No data received in 30s' from {fake.url}"
    )


async def test_server_that_stops_answering_is_left_at_the_exact_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    okx = FakeOkx()
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=okx
    ) as fake:
        dialer = Dialer(fake)
        config = okx_config(channels=["trades"], symbols=["BTC-USDT"], heartbeat=10)
        with trio.fail_after(300):
            async with open_supervisor(config, connector=dialer) as sup:
                stream = sup.messages()
                await stream.__anext__()
                assert trio.current_time() == 1.0
                okx.mute()
                okx.answer_pings = False
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                stats = (await sup.stats()).connections[0]
    # last frame at 1; ping at 11; nothing by 21: heartbeat missed; backoff 1 s -> 22
    assert dialer.times() == [0.0, 22.0]
    assert stats.last_error == (
        "FeedStale: heartbeat missed: no frame within 10 s of our ping (OKX answers ping with pong)"
    )
    assert fake.sessions[0].received == [subscribe_frame(("trades", "BTC-USDT")), "ping"]
    # the actor drops a silent peer's socket rather than wait for a close handshake
    assert fake.sessions[0].close_code is None
    assert okx.closes == []


async def test_many_subscriptions_stay_within_the_fakes_limits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    symbols = [f"C{i:04d}-USDT" for i in range(600)]
    okx = FakeOkx(instruments=symbols)
    async with open_fake_exchange(
        name="okx", transport="memory", interval=math.inf, handler=okx
    ) as fake:
        config = okx_config(channels=["trades", "ticker", "book"], symbols=symbols)
        with trio.fail_after(300):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await trio.sleep_until(40.0)  # past the fake's 30 s rules
                stats = (await sup.stats()).connections[0]
    *requests, ping, ping_again = fake.sessions[0].received
    assert [len(r.encode()) for r in requests if isinstance(r, str)] == [65499, 11955]
    # At 15 and 30 (half of stale_after): no data flows (interval inf), only the acks at 0.
    assert ping == ping_again == "ping"
    assert okx.closes == []
    assert len(fake.sessions) == 1
    assert len(stats.subscriptions) == 1800
    assert set(stats.subscriptions.values()) == {"live"}
    assert stats.state == "live"


@pytest.mark.parametrize("limit", [2, 1])
async def test_requests_at_a_lowered_limit(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    # TinyOkx packs two args per request and may send two requests per 10 s: a fake
    # with the same limits never trips; one that allows a single request does.
    monkeypatch.setitem(ADAPTERS, "okx", TinyOkx)
    symbols = ["BTC-USDT", "ETH-USDT", "BTC-USDT-SWAP", "ETH-USDT-SWAP"]
    okx = FakeOkx(max_requests=limit, request_window=10.0, max_request_bytes=120)
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=okx
    ) as fake:
        config = okx_config(channels=["trades"], symbols=symbols)
        with trio.fail_after(300):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await trio.sleep_until(0.5)
                stats = (await sup.stats()).connections[0]
    assert fake.sessions[0].received == [
        subscribe_frame(("trades", "BTC-USDT"), ("trades", "ETH-USDT")),
        subscribe_frame(("trades", "BTC-USDT-SWAP"), ("trades", "ETH-USDT-SWAP")),
    ]
    if limit == 2:
        assert okx.closes == []
        assert stats.subscriptions == dict.fromkeys([f"trades:{s}" for s in symbols], "live")
        assert (stats.state, stats.connects) == ("live", 1)
    else:
        assert okx.closes == [(0.0, 0, 4002, "Requests too frequent")]
        assert stats.subscriptions == {
            "trades:BTC-USDT": "live",
            "trades:ETH-USDT": "live",
            "trades:BTC-USDT-SWAP": "failed: 60014 Requests too frequent.",
            "trades:ETH-USDT-SWAP": "failed: 60014 Requests too frequent.",
        }
        assert stats.last_error == (
            "ConnectionLost: connection lost: close code 4002 (PRIVATE_RESERVED) "
            f"'Requests too frequent' from {URL}"
        )


@pytest.mark.parametrize(
    ("fake_okx", "close", "error"),
    [
        (
            FakeOkx(max_requests=0),
            (0.0, 0, 4002, "Requests too frequent"),
            "close code 4002 (PRIVATE_RESERVED) 'Requests too frequent'",
        ),
        (
            FakeOkx(max_request_bytes=100),
            (0.0, 0, 1009, "Request message exceeds the maximum frame length"),
            "close code 1009 (MESSAGE_TOO_BIG) 'Request message exceeds the maximum frame length'",
        ),
    ],
    ids=["requests-per-hour", "request-size"],
)
async def test_a_misconfigured_fake_limit_is_enforced(
    autojump_clock: trio.testing.MockClock,
    fake_okx: FakeOkx,
    close: tuple[float, int, int, str],
    error: str,
) -> None:
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=fake_okx
    ) as fake:
        config = okx_config(channels=["trades", "book"], symbols=["BTC-USDT", "ETH-USDT"])
        with trio.fail_after(30):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                assert trio.current_time() == 1.0
                stats = (await sup.stats()).connections[0]
    assert fake_okx.closes[0] == close
    assert stats.last_error == f"ConnectionLost: connection lost: {error} from {URL}"


async def test_subscription_failures_show_in_stats(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=FakeOkx()
    ) as fake:
        config = okx_config(channels=["trades"], symbols=["BTC-USDT", "NOPE-USDT"])
        with trio.fail_after(30):
            async with open_supervisor(config, connector=fake.connect) as sup:
                msg = await sup.messages().__anext__()
                stats = (await sup.stats()).connections[0]
    assert bare(msg) == e2e_trade("BTC-USDT", 0, 1.0)
    assert stats.subscriptions == {
        "trades:BTC-USDT": "live",
        "trades:NOPE-USDT": f"failed: 60018 {WRONG_TRADES_NOPE}",
    }
    assert stats.state == "live"


async def test_resubscribed_after_a_reconnect(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=FakeOkx()
    ) as fake:
        dialer = Dialer(fake)
        config = okx_config(channels=["trades"], symbols=["BTC-USDT"])
        with trio.fail_after(30):
            async with open_supervisor(config, connector=dialer) as sup:
                stream = sup.messages()
                assert bare(await stream.__anext__()) == e2e_trade("BTC-USDT", 0, 1.0)
                await fake.close(4000, "maintenance")
                msg = await stream.__anext__()
                assert trio.current_time() == 3.0  # reconnect at 2, first trade 1 s later
                stats = (await sup.stats()).connections[0]
    assert bare(msg) == e2e_trade("BTC-USDT", 0, 3.0, session=1)
    assert dialer.times() == [0.0, 2.0]
    request = subscribe_frame(("trades", "BTC-USDT"))
    assert [s.received for s in fake.sessions] == [[request], [request]]
    assert stats.subscriptions == {"trades:BTC-USDT": "live"}  # acked on the new session


async def test_notice_64008_hands_over_to_a_successor_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    okx = FakeOkx()
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=okx
    ) as fake:
        dialer = Dialer(fake)
        config = okx_config(channels=["trades"], symbols=["BTC-USDT"])
        got: list[tuple[float, Message]] = []
        with trio.fail_after(30):
            async with open_supervisor(config, connector=dialer) as sup:
                stream = sup.messages()
                await stream.__anext__()
                await okx.notice()  # at t=1
                while trio.current_time() < 13.0:
                    msg = await stream.__anext__()
                    got.append((trio.current_time(), bare(msg)))
                stats = (await sup.stats()).connections[0]
    assert dialer.times() == [0.0, 1.0]  # make-before-break: connected at once
    # This fake numbers trades per session, so the successor's buffer never lines up
    # with the old session's deliveries: the old session keeps delivering for the whole
    # DEFAULT_HANDOVER_WAIT after the successor went live (t=1), then the successor's
    # buffer follows and it carries on. Nothing is lost.
    switch = 1.0 + DEFAULT_HANDOVER_WAIT
    ids = [(t, int(m.trade_id)) for t, m in got if isinstance(m, Trade)]
    old = [(t, i) for t, i in ids if i < 2_000_000]
    new = [(t, i) for t, i in ids if i >= 2_000_000]
    assert ids == old + new  # the old session's trades, then the successor's
    assert [i for _, i in old] == list(range(1_000_001, 1_000_001 + len(old)))
    assert [i for _, i in new] == list(range(2_000_000, 2_000_000 + len(new)))
    # The old session delivered until the switch (its t=11 trade may or may not come
    # first: same instant); the successor's buffer went out at the switch.
    assert old[-1][0] in (switch - 1, switch)
    assert new[0][0] == switch
    assert (stats.restarts, stats.connects, stats.last_error) == (0, 2, "")
    assert stats.subscriptions == {"trades:BTC-USDT": "live"}  # acked on the new session
    assert fake.sessions[0].close_code == 1000  # the old session closed cleanly


async def test_injected_gap_is_counted_and_the_session_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    okx = FakeOkx()
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=okx
    ) as fake:
        # The venue's stream as it comes, to see the gap (local books: test_books_*).
        config = okx_config(channels=["book"], symbols=["BTC-USDT"], book_sync=False)
        chain: list[tuple[int | None, int | None]] = []
        with trio.fail_after(30):
            async with open_supervisor(config, connector=fake.connect) as sup:
                async for msg in sup.messages():
                    assert isinstance(msg, (BookSnapshot, BookDelta))
                    if isinstance(msg, BookDelta):
                        chain.append((msg.prev_sequence, msg.sequence))
                        if len(chain) == 1:
                            okx.inject_gap("BTC-USDT")
                        if len(chain) == 3:
                            break
                await sup.stop()
                stats = (await sup.stats()).connections[0]
    assert chain == [(1000, 1002), (1004, 1006), (1006, 1008)]  # 1004 was lost
    assert stats.gaps == 1
    assert len(fake.sessions) == 1
    assert stats.restarts == 0


async def test_e2e_connects_are_paced_to_okx_limit_of_three_per_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_fake_exchange(
        name="okx", transport="memory", interval=1.0, handler=FakeOkx(), max_connects=(3, 1.0)
    ) as fake:
        dialer = Dialer(fake)
        one = okx_config(channels=["trades"], symbols=["BTC-USDT"])
        six = tuple(msgspec.structs.replace(one.connections[0], name=f"okx{i}") for i in range(6))
        config = msgspec.structs.replace(one, connections=six)
        with trio.fail_after(30):
            async with open_supervisor(config, connector=dialer) as sup:
                await fake.wait_until(lambda f: len(f.sessions) == 6)
                stats = (await sup.stats()).connections
    assert dialer.times() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert fake.refused == 0
    assert [s.restarts for s in stats] == [0] * 6
