"""Liveness that does not depend on the exchange (issue 12).

End to end on the memory transport and the MockClock, against every rule-enforcing fake:
probes find a half-open peer within ``stale_after`` (+ 1 s) on every venue, and keep a
quiet but healthy feed live for an hour; ``silent_after`` finds a subscription the
exchange acknowledged and never serves. Sans-IO, with exact times: the ack deadline and
the silence clock of the adapter base.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from exchanges.helpers import Dialer, connection_spec, exchange_config

from actors.exchanges import BinanceProtocol, RawProtocol, Subscribed
from actors.exchanges.messages import HeartbeatMissed, SubscriptionFailed, SubscriptionSilent
from supervisor import open_supervisor
from supervisor.testing import open_fake_exchange
from supervisor.testing.fakes.binance import FakeBinance, FakeBinanceUsdm
from supervisor.testing.fakes.bybit import FakeBybit
from supervisor.testing.fakes.deribit import FakeDeribit
from supervisor.testing.fakes.okx import FakeOkx

#: exchange -> (fake handler factory, a connection that subscribes one trade stream).
VENUES: dict[str, tuple[Callable[[], Any], dict[str, Any]]] = {
    "binance": (FakeBinance, {"channels": ["trades"], "symbols": ["BTC-USDT"]}),
    "binance_usdm": (FakeBinanceUsdm, {"channels": ["trades"], "symbols": ["BTC-USDT-PERP"]}),
    "okx": (FakeOkx, {"channels": ["trades"], "symbols": ["BTC-USDT"]}),
    "deribit": (FakeDeribit, {"channels": ["trades"], "symbols": ["BTC-USD-PERP"]}),
    "bybit": (FakeBybit, {"channels": ["trades"], "symbols": ["BTC-USDT"]}),
}


@pytest.mark.parametrize("exchange", list(VENUES))
async def test_probes_find_a_half_open_peer_within_stale_after_on_every_venue(
    autojump_clock: trio.testing.MockClock, exchange: str
) -> None:
    handler, connection = VENUES[exchange]
    # stale_after 10: below Deribit's default heartbeat (10 s), refused before issue 12.
    config = exchange_config(c={"exchange": exchange, "stale_after": 10.0, **connection})
    async with open_fake_exchange(
        name=exchange, transport="memory", interval=1.0, handler=handler()
    ) as fake:
        dialer = Dialer(fake)
        with trio.fail_after(120):
            async with open_supervisor(config, connector=dialer) as sup:
                stream = sup.messages()
                await stream.__anext__()
                last_frame = trio.current_time()
                fake.stall()  # half-open: the socket stays up, nothing moves either way
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                reconnected = trio.current_time()
                stats = (await sup.stats()).connections[0]
    # The session ended within stale_after (+ 1 s) of the last frame, never before a
    # probe (after half of it) had its chance; then the first backoff delay, 1 s.
    ended = reconnected - 1.0
    assert last_frame + 5.0 <= ended <= last_frame + 10.0 + 1.0
    assert stats.last_error.startswith("FeedStale: ")
    assert stats.restarts == 1


@pytest.mark.parametrize("exchange", list(VENUES))
async def test_a_quiet_feed_with_answered_probes_stays_live_for_an_hour(
    autojump_clock: trio.testing.MockClock, exchange: str
) -> None:
    handler, connection = VENUES[exchange]
    config = exchange_config(c={"exchange": exchange, **connection})  # stale_after 30
    async with open_fake_exchange(
        name=exchange, transport="memory", interval=math.inf, handler=handler()
    ) as fake:
        with trio.fail_after(4000):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await trio.sleep_until(3600.0)
                stats = (await sup.stats()).connections[0]
    # No data for an hour (Binance USD-M pings only every 3 min: audit M3); the probes'
    # answers keep the one session live, and their round trip (0 on the memory
    # transport) is in stats.
    assert (stats.state, stats.connects, stats.restarts, stats.last_error) == ("live", 1, 0, "")
    assert len(fake.sessions) == 1
    if exchange == "deribit":
        # Its heartbeat (every 10 s, asked for by public/set_heartbeat) is never 15 s
        # apart: no probe was needed.
        assert (stats.probe_rtt, stats.probe_rtt_smoothed) == (None, None)
    else:
        assert (stats.probe_rtt, stats.probe_rtt_smoothed) == (0.0, 0.0)


async def test_a_subscription_acknowledged_but_never_served_goes_silent(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    usdm = FakeBinanceUsdm()  # acks every SUBSCRIBE, even for streams it never serves
    config = exchange_config(
        u={
            "exchange": "binance_usdm",
            "channels": ["trades"],
            "symbols": ["BTC-USDT-PERP"],
            "raw": ["zzzusdt@trade"],
            "silent_after": 60.0,
        }
    )
    async with open_fake_exchange(
        name="binance_usdm", transport="memory", interval=1.0, handler=usdm
    ) as fake:
        with trio.fail_after(300):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await trio.sleep_until(59.5)
                before = (await sup.stats()).connections[0]
                await trio.sleep_until(60.5)
                after = (await sup.stats()).connections[0]
    assert before.subscriptions == {"btcusdt@trade": "live", "zzzusdt@trade": "live"}
    # Acknowledged at 0, silent at 60: marked, logged once, unsubscribed and subscribed
    # again; the busy stream and the connection go on.
    assert after.subscriptions == {"btcusdt@trade": "live", "zzzusdt@trade": "silent"}
    assert (after.state, after.connects, after.restarts) == ("live", 1, 0)
    assert fake.sessions[0].received[-2:] == [
        '{"method":"UNSUBSCRIBE","params":["zzzusdt@trade"],"id":2}',
        '{"method":"SUBSCRIBE","params":["zzzusdt@trade"],"id":3}',
    ]
    silent = [r.getMessage() for r in caplog.records if "silent_after" in r.getMessage()]
    assert silent == [
        "u: subscription 'zzzusdt@trade' delivered no data for 60 s (silent_after); "
        "requesting it again"
    ]


async def test_a_connection_whose_every_subscription_is_silent_is_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = exchange_config(
        u={"exchange": "binance_usdm", "raw": ["zzzusdt@trade"], "silent_after": 60.0}
    )
    async with open_fake_exchange(
        name="binance_usdm", transport="memory", interval=1.0, handler=FakeBinanceUsdm()
    ) as fake:
        dialer = Dialer(fake)
        with trio.fail_after(300):
            async with open_supervisor(config, connector=dialer) as sup:
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                stats = (await sup.stats()).connections[0]
    # Probes keep the connection itself alive; the data clock ends it at 60, 1 s backoff.
    assert dialer.times() == [0.0, 61.0]
    assert stats.last_error == (
        "FeedStale: heartbeat missed: every subscription silent for 60 s: data stopped "
        "while the connection stays up"
    )


# -- sans-IO: the adapter base's clocks, exact times --------------------------------------


def binance(**keys: Any) -> BinanceProtocol:
    spec = connection_spec("b", "binance", channels=["trades"], **keys)
    proto = BinanceProtocol(spec)
    proto.start_session(0.0)
    return proto


def test_an_ack_that_never_comes_is_asked_again_then_the_topic_fails() -> None:
    proto = binance(symbols=["BTC-USDT", "ETH-USDT"])  # stale_after 30 = ack_timeout
    assert proto.frames_to_send() == [
        '{"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"],"id":1}'
    ]
    assert proto.deadline() == 30.0
    proto.tick(29.9)
    assert proto.frames_to_send() == []
    proto.tick(30.0)
    assert proto.frames_to_send() == [
        '{"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"],"id":2}'
    ]
    # The second request is answered for one topic: the other stays pending, then fails.
    assert proto.receive_frame('{"result":null,"id":2}', 31.0, 0.0) == ()
    assert proto.events() == [Subscribed(topics=("btcusdt@trade", "ethusdt@trade"))]
    assert proto.subscriptions == {"btcusdt@trade": "live", "ethusdt@trade": "live"}

    proto = binance(symbols=["BTC-USDT"])
    proto.frames_to_send()
    proto.tick(30.0)
    assert len(proto.frames_to_send()) == 1  # asked again at 30
    assert proto.deadline() == 60.0
    proto.tick(60.0)
    message = "no acknowledgement within 30 s of two requests"
    assert proto.events() == [
        SubscriptionFailed(topic="btcusdt@trade", code="timeout", message=message)
    ]
    assert proto.subscriptions == {"btcusdt@trade": f"failed: timeout {message}"}
    assert proto.state.name == "LIVE"  # settled: the backoff reset does not wait on it
    assert proto.deadline() == math.inf


def test_silence_is_timed_from_the_ack_and_ended_by_data() -> None:
    proto = binance(symbols=["BTC-USDT", "ETH-USDT"], silent_after=60.0)
    proto.frames_to_send()
    proto.receive_frame('{"result":null,"id":1}', 5.0, 0.0)
    proto.events()
    assert proto.deadline() == 65.0
    trade = (
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":7,'
        '"p":"1.0","q":"1.0","T":1,"m":true,"M":true}}'
    )
    assert len(proto.receive_frame(trade, 50.0, 0.0)) == 1
    proto.tick(65.0)  # ethusdt silent since its ack at 5; btcusdt heard at 50
    assert proto.events() == [SubscriptionSilent(topic="ethusdt@trade", silent_for=60.0)]
    assert proto.subscriptions == {"btcusdt@trade": "live", "ethusdt@trade": "silent"}
    assert proto.frames_to_send() == ['{"method":"UNSUBSCRIBE","params":["ethusdt@trade"],"id":2}']
    assert proto.deadline() == 65.5  # Binance: one request per 0.5 s
    proto.tick(65.5)
    assert proto.frames_to_send() == ['{"method":"SUBSCRIBE","params":["ethusdt@trade"],"id":3}']
    assert proto.deadline() == 110.0  # btcusdt's clock: heard at 50
    # The answer to the request does not make it live; data does.
    proto.receive_frame('{"result":null,"id":3}', 66.0, 0.0)
    assert proto.subscriptions["ethusdt@trade"] == "silent"
    proto.events()
    eth = trade.replace("btcusdt", "ethusdt").replace("BTCUSDT", "ETHUSDT")
    assert len(proto.receive_frame(eth, 70.0, 0.0)) == 1
    assert proto.events() == [Subscribed(topics=("ethusdt@trade",))]
    assert proto.subscriptions == {"btcusdt@trade": "live", "ethusdt@trade": "live"}
    # Nothing more from either: both silent by 130 -> the session is dead in all but name.
    proto.tick(110.0)
    assert proto.events() == [SubscriptionSilent(topic="btcusdt@trade", silent_for=60.0)]
    proto.frames_to_send()
    proto.tick(130.0)
    assert proto.events() == [
        SubscriptionSilent(topic="ethusdt@trade", silent_for=60.0),
        HeartbeatMissed(
            detail="every subscription silent for 60 s: data stopped while the connection stays up"
        ),
    ]


def test_an_adapter_without_topics_times_all_its_data_together() -> None:
    spec = connection_spec(
        "r", "raw", url="wss://example.invalid/ws", subscribe=['{"sub":1}'], silent_after=10.0
    )
    proto = RawProtocol(spec)
    proto.start_session(0.0)  # raw subscriptions count as confirmed once queued
    assert proto.subscriptions == {'subscribe[0] {"sub":1}': "live"}
    assert proto.deadline() == 10.0
    assert len(proto.receive_frame('{"x":1}', 4.0, 0.0)) == 1
    proto.events()
    proto.tick(10.0)
    assert proto.events() == []
    assert proto.deadline() == 14.0
    proto.tick(14.0)
    assert proto.events() == [
        SubscriptionSilent(topic='subscribe[0] {"sub":1}', silent_for=10.0),
        HeartbeatMissed(
            detail="every subscription silent for 10 s: data stopped while the connection stays up"
        ),
    ]
    assert proto.frames_to_send() == ['{"sub":1}']  # only the opening frame, never again


def test_without_silent_after_quiet_topics_are_never_silent() -> None:
    proto = binance(symbols=["BTC-USDT"])
    proto.frames_to_send()
    proto.receive_frame('{"result":null,"id":1}', 5.0, 0.0)
    proto.events()
    assert proto.deadline() == math.inf
    proto.tick(86_400.0)
    assert (proto.events(), proto.frames_to_send()) == ([], [])
    assert proto.subscriptions == {"btcusdt@trade": "live"}
