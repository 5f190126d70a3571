"""Deribit v2: recorded frames through the sans-IO adapter, synchronously.

Rules of this file: fixtures come from ``tests/data/deribit`` (byte copies of
``../shared/fixtures/deribit``). Where a recorded reply must answer one of our requests,
its ``"id"`` is rewritten to our request's id (``with_id``) and nothing else changes.
Adapter tests are synchronous: frames in, messages, events and frames out, time passed
as numbers. The fake is tested in ``test_deribit_fake.py``, the supervisor against it in
``test_deribit_end_to_end.py``.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from actors._errors import ConfigError, LocalProtocolError
from actors._spec import ConnectionSpec
from actors.exchanges.deribit import DeribitProtocol
from actors.exchanges.messages import (
    BookDelta,
    BookSnapshot,
    HeartbeatMissed,
    MalformedFrame,
    RawMessage,
    ReconnectRequested,
    SequenceGap,
    Subscribed,
    SubscriptionFailed,
    Ticker,
    Trade,
)
from actors.exchanges.sdk.protocol import AdapterState
from exchanges.helpers import connection_spec, deribit_symbols, fixture_lines
from supervisor import config_from_dict

D = Decimal
BTC = ("trades.BTC-PERPETUAL.100ms", "quote.BTC-PERPETUAL", "book.BTC-PERPETUAL.100ms")
ETH = ("trades.ETH-PERPETUAL.100ms", "quote.ETH-PERPETUAL", "book.ETH-PERPETUAL.100ms")
HEARTBEAT_MISSED = (
    "no frame from Deribit for 20 s although public/set_heartbeat asked for a heartbeat every 10 s"
)
lines = fixture_lines("deribit")


def with_id(frame: str, request_id: int) -> str:
    """``frame`` (one recorded reply) answering our request ``request_id``."""
    rewritten, count = re.subn(r'"id":\d+', f'"id":{request_id}', frame, count=1)
    assert count == 1
    return rewritten


def spec(**values: Any) -> ConnectionSpec:
    return connection_spec("d", "deribit", **values)


def requests(frames: list[str | bytes]) -> list[dict[str, Any]]:
    return [msgspec.json.decode(frame) for frame in frames]


def started(now: float = 0.0, **values: Any) -> tuple[DeribitProtocol, list[dict[str, Any]]]:
    """An adapter whose session started at ``now``; the frames it wrote at once."""
    proto = DeribitProtocol(spec(**values))
    proto.start_session(now)
    return proto, requests(proto.frames_to_send())


def live(**values: Any) -> DeribitProtocol:
    """A LIVE adapter: every subscribe request of the first burst acknowledged."""
    proto, sent = started(**values)
    proto.receive_frame(f'{{"jsonrpc":"2.0","id":{sent[0]["id"]},"result":"ok"}}', 0, 0)
    batch = sent[1:]
    while batch:
        for request in batch:
            result = msgspec.json.encode(request["params"]["channels"]).decode()
            reply = f'{{"jsonrpc":"2.0","id":{request["id"]},"result":{result}}}'
            proto.receive_frame(reply, 0, 0)
        if proto.state is AdapterState.LIVE:
            break
        proto.tick(proto.deadline())  # release the paced rest
        batch = requests(proto.frames_to_send())
    assert proto.state is AdapterState.LIVE
    proto.events()
    return proto


def feed(proto: DeribitProtocol, frame: str | bytes, now: float = 1.0) -> tuple[Any, ...]:
    return proto.receive_frame(frame, now, 1700000000.5)


def trade(**values: Any) -> Trade:
    return Trade(connection="d", exchange="deribit", received_at=1700000000.5, **values)


def ticker(**values: Any) -> Ticker:
    return Ticker(connection="d", exchange="deribit", received_at=1700000000.5, **values)


# -- fixtures: every copied frame ---------------------------------------------------------
def test_trades_fixture_is_an_array_of_taker_trades() -> None:
    proto = live(channels=["trades"], symbols=["BTC-USD-PERP"])
    [frame] = lines("trades_100ms_btc_perpetual_2025.jsonl")
    assert feed(proto, frame) == (
        trade(
            symbol="BTC-USD-PERP",
            side="sell",
            price=D("92294.5"),
            amount=D("10.0"),
            trade_id="403691824",
            timestamp=1765531356452,
        ),
        trade(
            symbol="BTC-USD-PERP",
            side="sell",
            price=D("92288.5"),
            amount=D("750.0"),
            trade_id="403691825",
            timestamp=1765531356452,
        ),
    )
    assert proto.events() == []
    assert proto.frames_to_send() == []


def test_ticker_and_quote_fixtures_are_best_bid_ask() -> None:
    # ticker is a recognised raw channel; quote is what the "ticker" channel subscribes.
    proto = live(channels=["ticker"], symbols=["BTC-PERPETUAL"], raw=["ticker.BTC-PERPETUAL.100ms"])
    ticker_frame, quote_frame = lines("ticker_and_quote_btc_perpetual_2025.jsonl")
    assert feed(proto, ticker_frame) == (
        ticker(
            symbol="BTC-USD-PERP",
            bid=D("92283.5"),
            bid_size=D("117660.0"),
            ask=D("92284.0"),
            ask_size=D("186520.0"),
            timestamp=1765541474086,
        ),
    )
    assert feed(proto, quote_frame) == (
        ticker(
            symbol="BTC-USD-PERP",
            bid=D("92288.0"),
            bid_size=D("133440.0"),
            ask=D("92288.5"),
            ask_size=D("99470.0"),
            timestamp=1765541767174,
        ),
    )
    assert proto.events() == []


def test_book_fixture_snapshot_then_change_with_delete_as_zero() -> None:
    proto = live(channels=["book"], symbols=["BTC-USD-PERP"])
    snapshot, change = lines("book_100ms_synthetic.jsonl")
    base: dict[str, Any] = {"connection": "d", "exchange": "deribit", "received_at": 1700000000.5}
    assert feed(proto, snapshot) == (
        BookSnapshot(
            **base,
            symbol="BTC-USD-PERP",
            bids=(
                (D("42500.0"), D("1000.0")),
                (D("42499.5"), D("500.0")),
                (D("42499.0"), D("750.0")),
                (D("42498.5"), D("1200.0")),
                (D("42498.0"), D("800.0")),
            ),
            asks=(
                (D("42501.0"), D("800.0")),
                (D("42501.5"), D("600.0")),
                (D("42502.0"), D("400.0")),
                (D("42502.5"), D("900.0")),
                (D("42503.0"), D("550.0")),
            ),
            sequence=123456789,
            timestamp=1699999999000,
        ),
    )
    assert feed(proto, change) == (
        BookDelta(
            **base,
            symbol="BTC-USD-PERP",
            bids=((D("42500.0"), D("950.0")), (D("42498.5"), D("300.0"))),
            asks=((D("42501.0"), D(0)), (D("42501.5"), D("700.0"))),
            sequence=123456790,
            prev_sequence=123456789,
            timestamp=1699999999500,
        ),
    )
    assert proto.events() == []


# The 2021 captures use .raw channels, which check() now rejects (they need auth); the
# adapter itself still decodes them, so these tests build the spec without check().
OPTION_BOOKS = sorted(
    {
        msgspec.json.decode(line)["params"]["channel"]
        for line in lines("book_raw_options_2021.jsonl")
    }
)


def test_book_raw_options_2021_chain_has_no_gap() -> None:
    proto = live(raw=OPTION_BOOKS)
    out: list[Any] = []
    for line in lines("book_raw_options_2021.jsonl"):
        out.extend(feed(proto, line))
    assert proto.events() == []  # 36 changes, every prev_change_id links
    assert [type(m).__name__ for m in out].count("BookSnapshot") == 10
    assert [type(m).__name__ for m in out].count("BookDelta") == 36
    base: dict[str, Any] = {"connection": "d", "exchange": "deribit", "received_at": 1700000000.5}
    # Options have no normalized form: the instrument name is the symbol.
    assert out[10] == BookDelta(
        **base,
        symbol="BTC-24SEP21-8000-P",
        bids=(),
        asks=((D("0.001"), D("2.6")),),
        sequence=33195894355,
        prev_sequence=33195894164,
        timestamp=1626993724318,
    )
    assert out[11] == BookDelta(
        **base,
        symbol="BTC-24SEP21-8000-P",
        bids=(),
        asks=((D("0.001"), D(0)),),
        sequence=33195894358,
        prev_sequence=33195894355,
        timestamp=1626993724337,
    )
    assert out[1] == BookSnapshot(
        **base, symbol="ETH-27AUG21-4000-P", bids=(), asks=(), sequence=13167318455,
        timestamp=1626993723632,
    )  # fmt: skip


def test_ticker_raw_options_2021() -> None:
    channels = sorted(
        {
            msgspec.json.decode(line)["params"]["channel"]
            for line in lines("ticker_raw_options_2021.jsonl")
        }
    )
    proto = live(raw=channels)
    out: list[Any] = []
    for line in lines("ticker_raw_options_2021.jsonl"):
        out.extend(feed(proto, line))
    assert len(out) == 40
    assert out[:3] == [
        ticker(
            symbol="ETH-30JUL21-2800-C",
            bid=D("0.0015"),
            bid_size=D("4714.0"),
            ask=D("0.0025"),
            ask_size=D("873.0"),
            timestamp=1626993723632,
        ),
        ticker(
            symbol="ETH-27AUG21-4000-P",
            bid=D("0.0"),
            bid_size=D("0.0"),
            ask=D("0.0"),
            ask_size=D("0.0"),
            timestamp=1626993723632,
        ),
        ticker(
            symbol="ETH-23JUL21-2300-C",
            bid=D("0.0"),
            bid_size=D("0.0"),
            ask=D("0.001"),
            ask_size=D("274.0"),
            timestamp=1626993723632,
        ),
    ]
    assert proto.events() == []


def test_control_fixture_request_shape_ack_and_stray_replies() -> None:
    request, ack, unsubscribe, unsubscribed, unsubscribe_all, ok = lines(
        "control_docs_and_synthetic.jsonl"
    )
    proto = DeribitProtocol(spec(channels=["trades", "book"], symbols=["BTC-PERPETUAL"]))
    proto.start_session(0.0)
    _, subscribe = proto.frames_to_send()
    assert subscribe == with_id(request, 2)  # byte for byte, but for our id
    assert feed(proto, with_id(ack, 2)) == ()
    assert proto.events() == [
        Subscribed(topics=("trades.BTC-PERPETUAL.100ms", "book.BTC-PERPETUAL.100ms"))
    ]
    assert proto.state is AdapterState.LIVE
    # Replies to requests this session never sent, and requests (a server never sends
    # those): each is counted as malformed, nothing else happens.
    for frame, kind in [
        (unsubscribed, "unexpected_reply"),
        (ok, "unexpected_reply"),
        (request, "unknown_method"),
        (unsubscribe, "unknown_method"),
        (unsubscribe_all, "unknown_method"),
    ]:
        assert feed(proto, frame) == ()
        [event] = proto.events()
        assert isinstance(event, MalformedFrame)
        assert (event.kind, event.sample) == (kind, frame)
    assert proto.frames_to_send() == []


def test_subscribe_ack_2021_confirms_only_what_was_requested() -> None:
    request, ack = lines("subscribe_request_and_ack_2021_raw_options.jsonl")
    proto = DeribitProtocol(spec(raw=["book.BTC-24SEP21-8000-P.raw"]))
    proto.start_session(0.0)
    _, subscribe = requests(proto.frames_to_send())
    recorded = msgspec.json.decode(request)
    assert subscribe.keys() == recorded.keys()
    assert (subscribe["jsonrpc"], subscribe["method"]) == ("2.0", "public/subscribe")
    # The 2021 ack lists 30 channels of cryptofeed's request; only ours is confirmed.
    assert feed(proto, with_id(ack, 2)) == ()
    assert proto.events() == [Subscribed(topics=("book.BTC-24SEP21-8000-P.raw",))]
    assert proto.subscriptions == {"book.BTC-24SEP21-8000-P.raw": "live"}


def test_heartbeat_fixture_test_request_answered_reply_consumed() -> None:
    set_heartbeat, ok, heartbeat, test_request, public_test, version = lines("heartbeat.jsonl")
    proto = DeribitProtocol(spec(channels=["trades"], symbols=["BTC-USD-PERP"], heartbeat=30))
    proto.start_session(0.0)
    frames = proto.frames_to_send()
    assert frames[0] == with_id(set_heartbeat, 1)
    assert feed(proto, with_id(ok, 1)) == ()
    assert feed(proto, heartbeat) == ()
    assert proto.frames_to_send() == []
    assert feed(proto, test_request) == ()
    assert proto.frames_to_send() == [with_id(public_test, 3)]  # answered at once
    assert feed(proto, with_id(version, 3)) == ()  # consumed silently, not malformed
    assert proto.events() == []
    # Two 30 s intervals after the last frame; the subscribe's ack (never sent here) is
    # due earlier, at stale_after (30 s) after the request was written.
    assert proto.heartbeat.deadline() == 1.0 + 60.0
    assert proto.deadline() == 30.0


@pytest.mark.parametrize(
    ("index", "code", "message"),
    [
        (0, "10028", "too_many_requests"),
        (1, "13778", "raw_subscriptions_not_available_for_unauthorized"),
        (2, "-32602", "Invalid params"),
        (3, "13009", "invalid_token"),
    ],
)
def test_errors_fixture_refuses_the_whole_request(index: int, code: str, message: str) -> None:
    frame = lines("errors.jsonl")[index]
    proto, _ = started(channels=["trades", "ticker", "book"], symbols=["BTC-USD-PERP"])
    assert feed(proto, with_id(frame, 2)) == ()
    assert proto.events() == [
        SubscriptionFailed(topic=topic, code=code, message=message) for topic in BTC
    ]
    assert proto.subscriptions == dict.fromkeys(BTC, f"failed: {code} {message}")
    assert proto.state is AdapterState.LIVE  # nothing left pending
    assert proto.frames_to_send() == []


# -- the adapter without sockets or clocks ----------------------------------------------
def test_session_frames_state_machine_and_ids_across_sessions() -> None:
    proto = DeribitProtocol(
        spec(channels=["trades", "ticker", "book"], symbols=["BTC-USD-PERP", "ETH-PERPETUAL"])
    )
    assert proto.state is AdapterState.IDLE
    assert proto.url == "wss://www.deribit.com/ws/api/v2"
    proto.start_session(0.0)
    assert proto.state is AdapterState.SUBSCRIBING
    assert proto.frames_to_send() == [
        '{"jsonrpc":"2.0","id":1,"method":"public/set_heartbeat","params":{"interval":10}}',
        '{"jsonrpc":"2.0","id":2,"method":"public/subscribe","params":{"channels":'
        '["trades.BTC-PERPETUAL.100ms","quote.BTC-PERPETUAL","book.BTC-PERPETUAL.100ms"]}}',
        '{"jsonrpc":"2.0","id":3,"method":"public/subscribe","params":{"channels":'
        '["trades.ETH-PERPETUAL.100ms","quote.ETH-PERPETUAL","book.ETH-PERPETUAL.100ms"]}}',
    ]
    assert proto.subscriptions == dict.fromkeys(BTC + ETH, "pending")
    with pytest.raises(LocalProtocolError):
        proto.start_session(0.0)
    feed(proto, '{"jsonrpc":"2.0","id":3,"result":' + msgspec.json.encode(ETH).decode() + "}")
    assert proto.state is AdapterState.SUBSCRIBING
    feed(proto, '{"jsonrpc":"2.0","id":2,"result":' + msgspec.json.encode(BTC).decode() + "}")
    assert proto.state is AdapterState.LIVE
    assert proto.events() == [Subscribed(topics=ETH), Subscribed(topics=BTC)]
    proto.end_session()
    assert proto.state is AdapterState.IDLE
    assert proto.deadline() == math.inf
    proto.end_session()  # idempotent
    # A new session subscribes again, with new ids.
    proto.start_session(5.0)
    assert [r["id"] for r in requests(proto.frames_to_send())] == [4, 5, 6]
    assert proto.subscriptions == dict.fromkeys(BTC + ETH, "pending")
    # A reply to the previous session's id is stray now.
    assert feed(proto, '{"jsonrpc":"2.0","id":2,"result":[]}', 5.0) == ()
    assert [e.kind for e in proto.events() if isinstance(e, MalformedFrame)] == ["unexpected_reply"]


def release_times(proto: DeribitProtocol, until: float) -> list[float]:
    """Tick the adapter at each deadline before ``until``; when each frame was released."""
    times: list[float] = []
    while (at := proto.deadline()) < until:
        proto.tick(at)
        times.extend(at for _ in proto.frames_to_send())
    return times


def test_subscribe_pacing_burst_then_spacing() -> None:
    proto, sent = started(channels=["trades", "book"], symbols=deribit_symbols(12))
    assert [r["method"] for r in sent] == ["public/set_heartbeat"] + ["public/subscribe"] * 5
    assert proto.deadline() == 0.375
    assert release_times(proto, until=20.0) == [0.375, 0.75, 1.125, 1.5, 1.875, 2.25, 2.625]
    assert proto.deadline() == 20.0  # only the heartbeat deadline is left


def test_pacing_remembers_credits_across_sessions_and_returns_unsent_slots() -> None:
    proto, sent = started(channels=["book"], symbols=deribit_symbols(12))
    assert len(sent) == 6
    proto.tick(0.375)
    assert len(proto.frames_to_send()) == 1
    proto.end_session()  # at 0.5: six calls written, six never written
    # One second later Deribit's bucket still misses credits: only one call at once.
    proto.start_session(1.0)
    assert len(proto.frames_to_send()) == 2  # set_heartbeat + one subscribe
    assert release_times(proto, until=20.0) == [
        1.125, 1.5, 1.875, 2.25, 2.625, 3.0, 3.375, 3.75, 4.125, 4.5, 4.875,
    ]  # fmt: skip
    proto.end_session()
    # Right after a burst at t=100 (5 written, 7 given back), a session at the same instant
    # writes nothing but set_heartbeat; ending it gives every one of its slots back.
    proto.start_session(100.0)
    assert len(proto.frames_to_send()) == 6
    proto.end_session()
    for _ in range(2):
        proto.start_session(100.0)
        assert len(proto.frames_to_send()) == 1
        assert proto.deadline() == 100.375
        proto.end_session()


def test_heartbeat_deadline_moves_with_every_frame_and_misses_once() -> None:
    proto = live(channels=["trades"], symbols=["BTC-USD-PERP"])
    assert proto.deadline() == 20.0
    feed(proto, "garbage", now=7.0)  # even a bad frame proves the connection alive
    proto.events()
    assert proto.deadline() == 27.0
    proto.tick(26.5)
    assert proto.events() == []
    proto.tick(27.0)
    assert proto.events() == [HeartbeatMissed(detail=HEARTBEAT_MISSED)]
    assert proto.deadline() == math.inf
    proto.tick(40.0)
    assert proto.events() == []


def test_too_many_requests_refuses_and_drops_unwritten_subscribes() -> None:
    proto, sent = started(channels=["trades", "ticker", "book"], symbols=deribit_symbols(7))
    assert proto.deadline() == 0.375  # two subscribes still scheduled
    [error] = [line for line in lines("errors.jsonl") if "10028" in line]
    assert feed(proto, with_id(error, 6), now=0.1) == ()
    topics = sent[5]["params"]["channels"]
    assert proto.events() == [
        SubscriptionFailed(topic=t, code="10028", message="too_many_requests") for t in topics
    ]  # and no ReconnectRequested: the server closes, the supervisor backs off
    assert proto.deadline() == 20.1  # nothing scheduled any more
    assert proto.frames_to_send() == []
    assert proto.state is AdapterState.SUBSCRIBING


def test_a_channel_missing_from_the_result_is_refused() -> None:
    proto, _ = started(channels=["trades", "ticker", "book"], symbols=["BTC-USD-PERP"])
    feed(proto, '{"jsonrpc":"2.0","id":2,"result":["quote.BTC-PERPETUAL"]}')
    assert proto.events() == [
        Subscribed(topics=("quote.BTC-PERPETUAL",)),
        SubscriptionFailed(
            topic="trades.BTC-PERPETUAL.100ms",
            code="unconfirmed",
            message="missing from the public/subscribe result",
        ),
        SubscriptionFailed(
            topic="book.BTC-PERPETUAL.100ms",
            code="unconfirmed",
            message="missing from the public/subscribe result",
        ),
    ]


def test_failed_heartbeat_setup_is_reported_as_request_failed() -> None:
    proto, _ = started(channels=["trades"], symbols=["BTC-USD-PERP"])
    feed(proto, '{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Invalid params"}}')
    [event] = proto.events()
    assert isinstance(event, MalformedFrame)
    assert (event.kind, event.detail) == (
        "request_failed",
        "public/set_heartbeat failed: -32602 Invalid params",
    )


def book_change(change_id: int, prev: int) -> str:
    return (
        '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms",'
        f'"data":{{"type":"change","instrument_name":"BTC-PERPETUAL","timestamp":1,'
        f'"change_id":{change_id},"prev_change_id":{prev},"bids":[],"asks":[["new",1.5,2]]}}}}}}'
    )


def test_sequence_gap_is_reported_and_the_chain_goes_on() -> None:
    proto = live(channels=["book"], symbols=["BTC-USD-PERP"])
    snapshot, change = lines("book_100ms_synthetic.jsonl")
    feed(proto, snapshot)
    feed(proto, change)  # 123456789 -> 123456790
    [delta] = feed(proto, book_change(123456795, prev=123456792))
    assert isinstance(delta, BookDelta)
    assert (delta.sequence, delta.prev_sequence, delta.asks) == (
        123456795,
        123456792,
        ((D("1.5"), D(2)),),
    )
    assert proto.events() == [
        SequenceGap(symbol="BTC-USD-PERP", expected=123456790, received=123456792)
    ]
    feed(proto, book_change(123456796, prev=123456795))
    assert proto.events() == []
    feed(proto, snapshot)  # a new snapshot restarts the chain
    feed(proto, change)
    assert proto.events() == []


def test_platform_state_maintenance_requests_a_reconnect() -> None:
    proto = live(raw=["platform_state"])

    def notice(data: str) -> str:
        return (
            '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"platform_state",'
            f'"data":{data}}}}}'
        )

    raw: dict[str, Any] = {"connection": "d", "exchange": "deribit", "received_at": 1700000000.5}
    assert feed(proto, notice('{"maintenance":true}')) == (
        RawMessage(**raw, data={"maintenance": True}),
    )
    assert proto.events() == [
        ReconnectRequested(reason="Deribit platform_state: maintenance started")
    ]
    assert feed(proto, notice('{"maintenance":false}')) == (
        RawMessage(**raw, data={"maintenance": False}),
    )
    # The documented index-lock example is not a disconnect.
    assert feed(proto, notice('{"price_index":"sol_usdc","locked":true}')) == (
        RawMessage(**raw, data={"price_index": "sol_usdc", "locked": True}),
    )
    assert proto.events() == []


def test_raw_channels_recognised_or_delivered_as_is() -> None:
    proto = live(
        raw=[
            "deribit_price_index.btc_usd",
            "book.BTC-PERPETUAL.none.10.100ms",
            "trades.option.BTC.100ms",
            "quote.BTC_USDC",
        ]
    )
    raw: dict[str, Any] = {"connection": "d", "exchange": "deribit", "received_at": 1700000000.5}

    def notification(channel: str, data: str) -> str:
        return (
            '{"jsonrpc":"2.0","method":"subscription","params":'
            f'{{"channel":"{channel}","data":{data}}}}}'
        )

    index = '{"index_name":"btc_usd","price":3937.89,"timestamp":1550588002899}'
    assert feed(proto, notification("deribit_price_index.btc_usd", index)) == (
        RawMessage(
            **raw, data={"index_name": "btc_usd", "price": 3937.89, "timestamp": 1550588002899}
        ),
    )
    # A grouped book has [price, amount] levels: not our typed shape, still delivered.
    grouped = (
        '{"timestamp":1,"instrument_name":"BTC-PERPETUAL","change_id":5,"bids":[[1.5,2]],"asks":[]}'
    )
    [message] = feed(proto, notification("book.BTC-PERPETUAL.none.10.100ms", grouped))
    assert isinstance(message, RawMessage)
    assert message.data["bids"] == [[1.5, 2]]
    # trades.{kind}.{currency}.{interval}: each trade names its instrument.
    option_trades = (
        '[{"trade_id":"1","price":0.05,"amount":1.5,"direction":"buy","timestamp":7,'
        '"instrument_name":"BTC-27DEC24-100000-C"},{"trade_id":"2","price":0.06,"amount":2,'
        '"direction":"sell","timestamp":8,"instrument_name":"BTC-PERPETUAL"}]'
    )
    assert feed(proto, notification("trades.option.BTC.100ms", option_trades)) == (
        trade(symbol="BTC-27DEC24-100000-C", side="buy", price=D("0.05"), amount=D("1.5"),
              trade_id="1", timestamp=7),
        trade(symbol="BTC-USD-PERP", side="sell", price=D("0.06"), amount=D(2), trade_id="2",
              timestamp=8),
    )  # fmt: skip
    # quote with an empty side: null is delivered as 0 (the ticker channel's convention).
    quote = (
        '{"timestamp":9,"instrument_name":"BTC_USDC","best_bid_price":null,'
        '"best_bid_amount":null,"best_ask_price":92000.5,"best_ask_amount":0.25}'
    )
    assert feed(proto, notification("quote.BTC_USDC", quote)) == (
        ticker(symbol="BTC-USDC", bid=D(0), bid_size=D(0), ask=D("92000.5"),
               ask_size=D("0.25"), timestamp=9),
    )  # fmt: skip
    assert proto.events() == []


def subscription(channel: str, data: str) -> str:
    return (
        '{"jsonrpc":"2.0","method":"subscription","params":'
        f'{{"channel":"{channel}","data":{data}}}}}'
    )


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        ("not json", "invalid_json"),
        (b"\xff\xfe{", "invalid_json"),
        ("", "invalid_json"),
        ("[]", "invalid_payload"),
        ('{"jsonrpc":"2.0","id":"x","result":[]}', "invalid_payload"),
        ('{"foo":1}', "unexpected_reply"),
        ('{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"}}', "unexpected_reply"),
        ('{"jsonrpc":"2.0","id":99,"result":"ok"}', "unexpected_reply"),
        ('{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"other"}}', "unknown_heartbeat"),
        ('{"jsonrpc":"2.0","method":"announcements","params":{}}', "unknown_method"),
        (subscription("trades.XRP-PERPETUAL.100ms", "[]"), "unknown_channel"),
        (subscription("trades.BTC-PERPETUAL.100ms", '{"a":1}'), "invalid_payload"),
        (
            subscription(
                "trades.BTC-PERPETUAL.100ms",
                '[{"trade_id":"1","price":"abc","amount":1,"direction":"buy","timestamp":1}]',
            ),
            "invalid_payload",
        ),
        (
            subscription(
                "trades.BTC-PERPETUAL.100ms",
                '[{"trade_id":"1","price":1,"amount":1,"direction":"up","timestamp":1}]',
            ),
            "invalid_payload",
        ),
        (subscription("quote.BTC-PERPETUAL", '{"timestamp":1}'), "invalid_payload"),
        (subscription("quote.BTC-PERPETUAL", "[]"), "invalid_payload"),
        (
            subscription("book.BTC-PERPETUAL.100ms", '{"type":"full","change_id":1}'),
            "invalid_payload",
        ),
        (subscription("book.BTC-PERPETUAL.100ms", '{"type":"change"}'), "invalid_payload"),
        (
            subscription(
                "book.BTC-PERPETUAL.100ms",
                '{"type":"change","change_id":2,"bids":[["move",1,1]],"asks":[]}',
            ),
            "invalid_payload",
        ),
    ],
)
def test_garbage_and_unknown_frames_are_malformed_and_nothing_else(
    frame: str | bytes, kind: str
) -> None:
    proto = live(channels=["trades", "ticker", "book"], symbols=["BTC-USD-PERP"])
    assert feed(proto, frame) == ()
    [event] = proto.events()
    assert isinstance(event, MalformedFrame)
    assert event.kind == kind
    assert proto.frames_to_send() == []
    assert proto.state is AdapterState.LIVE
    assert set(proto.subscriptions.values()) == {"live"}


@pytest.mark.parametrize(
    ("symbol", "native", "normalized"),
    [
        ("BTC-USD-PERP", "BTC-PERPETUAL", "BTC-USD-PERP"),
        ("ETH-USD-PERP", "ETH-PERPETUAL", "ETH-USD-PERP"),
        ("BTC-USDC-PERP", "BTC_USDC-PERPETUAL", "BTC-USDC-PERP"),
        ("BTC-USDC", "BTC_USDC", "BTC-USDC"),
        ("BTC-PERPETUAL", "BTC-PERPETUAL", "BTC-USD-PERP"),
        ("ETH-PERPETUAL", "ETH-PERPETUAL", "ETH-USD-PERP"),
        ("BTC_USDC-PERPETUAL", "BTC_USDC-PERPETUAL", "BTC-USDC-PERP"),
        ("BTC_USDC", "BTC_USDC", "BTC-USDC"),
        ("BTC-27DEC24", "BTC-27DEC24", "BTC-27DEC24"),
        ("BTC-24SEP21-40000-P", "BTC-24SEP21-40000-P", "BTC-24SEP21-40000-P"),
        ("XRP_USDC-30JUN23-0d625-C", "XRP_USDC-30JUN23-0d625-C", "XRP_USDC-30JUN23-0d625-C"),
    ],
)
def test_symbols_map_both_ways(symbol: str, native: str, normalized: str) -> None:
    assert DeribitProtocol.check(spec(channels=["ticker"], symbols=[symbol])) == []
    proto = live(channels=["ticker"], symbols=[symbol])
    quote = (
        f'{{"timestamp":1,"instrument_name":"{native}","best_bid_price":1,"best_bid_amount":2,'
        '"best_ask_price":3,"best_ask_amount":4}'
    )
    [message] = feed(proto, subscription(f"quote.{native}", quote))
    assert isinstance(message, Ticker)
    assert message.symbol == normalized
    assert list(proto.subscriptions) == [f"quote.{native}"]


@pytest.mark.parametrize(
    ("values", "problems"),
    [
        ({"channels": ["trades"], "symbols": ["BTC-USD-PERP"]}, []),
        ({"raw": ["platform_state"]}, []),
        (
            {"channels": ["trades", "depth"], "symbols": ["BTC-USD-PERP"]},
            [("channels", "unknown channel 'depth' (expected trades, ticker or book)")],
        ),
        (
            {"channels": ["trades"], "symbols": ["btc-perpetual"]},
            [
                (
                    "symbols",
                    "'btc-perpetual' is neither a normalized symbol nor a Deribit instrument "
                    "(expected e.g. BTC-USD-PERP, BTC-USDC-PERP, BTC-USDC, BTC-PERPETUAL, "
                    "BTC_USDC-PERPETUAL, BTC_USDC or BTC-27DEC24)",
                )
            ],
        ),
        (
            {"channels": ["trades"], "symbols": ["BTC-USD-PERP", "BTC-PERPETUAL"]},
            [
                (
                    "symbols",
                    "'BTC-USD-PERP' and 'BTC-PERPETUAL' are the same Deribit instrument "
                    "'BTC-PERPETUAL' (keep one)",
                )
            ],
        ),
        (
            {"channels": ["trades"]},
            [("symbols", "missing (expected at least one symbol for the channels, e.g. BTC-USDT)")],
        ),
        (
            {"symbols": ["BTC-USD-PERP"]},
            [("channels", "missing (expected trades, ticker and/or book for the symbols)")],
        ),
        (
            {},
            [
                (
                    "channels",
                    "nothing to subscribe (expected channels and symbols, or raw Deribit channels)",
                )
            ],
        ),
        (
            {"raw": ["book.BTC-PERPETUAL.raw"]},
            [
                (
                    "raw",
                    "'book.BTC-PERPETUAL.raw' needs an authenticated connection: Deribit "
                    "refuses .raw channels to unauthorized clients (13778 "
                    "raw_subscriptions_not_available_for_unauthorized) and this adapter does "
                    "not log in (expected the 100ms or agg2 interval, e.g. "
                    "'book.BTC-PERPETUAL.100ms')",
                )
            ],
        ),
        (
            {
                "channels": ["trades"],
                "symbols": ["ETH-USD-PERP"],
                "raw": ["trades.ETH-PERPETUAL.100ms", "platform_state", "platform_state", " x"],
            },
            [
                (
                    "raw",
                    "'trades.ETH-PERPETUAL.100ms' is already subscribed through channels and "
                    "symbols (remove it from raw)",
                ),
                ("raw", "'platform_state' is listed twice (keep one)"),
                (
                    "raw",
                    "' x' is not a Deribit channel name (expected e.g. "
                    "'ticker.BTC-PERPETUAL.100ms' or 'platform_state')",
                ),
            ],
        ),
        (
            {"raw": ["platform_state"], "subscribe": ["{}"]},
            [
                (
                    "subscribe",
                    "not used by the deribit adapter (list native Deribit channels in raw, "
                    "e.g. 'deribit_price_index.btc_usd')",
                )
            ],
        ),
        (
            {"raw": ["platform_state"], "heartbeat": 9.5},
            [
                (
                    "heartbeat",
                    "9.5 s is below Deribit's minimum public/set_heartbeat interval (expected "
                    "at least 10 s)",
                )
            ],
        ),
        # Issue 12: probes keep a quiet feed alive, so the heartbeat interval and
        # stale_after are independent (both were refused before).
        ({"raw": ["platform_state"], "heartbeat": 30}, []),
        ({"raw": ["platform_state"], "stale_after": 1}, []),
    ],
)
def test_check_problems(values: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    assert DeribitProtocol.check(spec(**values)) == problems


def test_check_runs_in_config_loading() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^<test>: connections\.d\.heartbeat: 9\.5 s is below Deribit's minimum "
        r"public/set_heartbeat interval \(expected at least 10 s\)$",
    ):
        config_from_dict(
            {
                "connections": {
                    "d": {"exchange": "deribit", "raw": ["platform_state"], "heartbeat": 9.5}
                }
            },
            source="<test>",
        )
