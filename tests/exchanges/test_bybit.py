"""Bybit v5 public (spot ``bybit``, linear ``bybit_linear``): the sans-IO adapter.

Three parts: (1) the fixture frames of ``tests/data/bybit/`` (see SOURCES.md: rebuilt from
the docs and quoted frames, not captures) through the adapter, every value pinned; (2)
the heartbeat, driven by explicit ``now`` values; (3) ``check()``. The fake is tested in
``test_bybit_fake.py``, the supervisor against it in ``test_bybit_end_to_end.py``.
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors._spec import ConnectionSpec
from actors.exchanges.bybit import BybitLinearProtocol, BybitProtocol
from actors.exchanges.messages import (
    BookDelta,
    BookSnapshot,
    HeartbeatMissed,
    MalformedFrame,
    Message,
    ProbeAnswered,
    RawMessage,
    SequenceGap,
    Subscribed,
    SubscriptionFailed,
    Ticker,
    Trade,
)
from actors.exchanges.sdk.protocol import AdapterState
from exchanges.helpers import (
    bybit_subscribe,
    connection_spec,
    exchange_config,
    fixture_lines,
    levels,
    state,
)
from supervisor import ConfigError

#: The ``received_at`` the synchronous tests pass to the adapter.
AT = 1234.5
D = Decimal
SPOT_URL = "wss://stream.bybit.com/v5/public/spot"
LINEAR_URL = "wss://stream.bybit.com/v5/public/linear"
PING = '{"op":"ping"}'
DETAIL = "no frame within 20 s of our ping (Bybit answers ping with pong)"
lines = fixture_lines("bybit")


def make_spec(exchange: str = "bybit", **values: Any) -> ConnectionSpec:
    # stale_after 60: Bybit's default ping (20 s) applies as such; under the default 30
    # the ping follows half of stale_after (test_the_default_ping_follows_stale_after).
    return connection_spec(exchange, exchange, **{"stale_after": 60.0, **values})


def started(cls: type[BybitProtocol] = BybitProtocol, **values: Any) -> BybitProtocol:
    """An adapter in its first session (started at 0), subscribe frames still queued."""
    proto = cls(make_spec(cls.exchange, **values))
    proto.start_session(0.0)
    return proto


def feed(proto: BybitProtocol, frame: str, now: float = 1.0) -> tuple[Message, ...]:
    return proto.receive_frame(frame, now, AT)


def answered(line: str, req_id: str) -> str:
    """A fixture reply with our ``req_id`` (Bybit echoes it; the samples carry their own).

    Key order is kept; a reply that had no ``req_id`` gets it last.
    """
    value = msgspec.json.decode(line)
    value["req_id"] = req_id
    return msgspec.json.encode(value).decode()


ACKS = lines("acks.jsonl")
SPOT_ACK, LINEAR_ACK, ARGS_SIZE, NOT_FOUND, ALREADY = ACKS[:5]
PONGS = ACKS[5:]


def live(cls: type[BybitProtocol] = BybitProtocol, **values: Any) -> BybitProtocol:
    """An adapter whose first session has every subscription acknowledged."""
    proto = started(cls, **values)
    for frame in proto.frames_to_send():
        assert isinstance(frame, str)
        req_id = msgspec.json.decode(frame)["req_id"]
        assert feed(proto, answered(SPOT_ACK, req_id), now=0.0) == ()
    proto.events()
    assert proto.state is AdapterState.LIVE
    return proto


def trade(exchange: str = "bybit", **values: Any) -> Trade:
    return Trade(connection=exchange, exchange=exchange, received_at=AT, **values)


# -- 1. recorded frames ---------------------------------------------------------------
def test_spot_trades_one_frame_may_hold_several() -> None:
    proto = live(channels=["trades"], symbols=["BTC-USDT"])
    got = [[*feed(proto, frame)] for frame in lines("spot_trades.jsonl")]
    first = 2290000000923750370
    assert got == [
        [
            trade(
                symbol="BTC-USDT",
                side="buy",
                price=D("86723.40"),
                amount=D("0.00903"),
                trade_id=str(first),
                timestamp=1790134712129,
            )
        ],
        [
            trade(
                symbol="BTC-USDT",
                side="sell",
                price=D("86723.50"),
                amount=D("0.00903"),
                trade_id=str(first + 1),
                timestamp=1790134712166,
            )
        ],
        [  # two trades in one frame, in match order
            trade(
                symbol="BTC-USDT",
                side="buy",
                price=D("86723.50"),
                amount=D("0.00903"),
                trade_id=str(first + 2),
                timestamp=1790134712241,
            ),
            trade(
                symbol="BTC-USDT",
                side="buy",
                price=D("86723.50"),
                amount=D("0.0412"),
                trade_id=str(first + 3),
                timestamp=1790134712241,
            ),
        ],
        [
            trade(
                symbol="BTC-USDT",
                side="sell",
                price=D("86723.30"),
                amount=D("0.00903"),
                trade_id=str(first + 4),
                timestamp=1790134712389,
            )
        ],
    ]
    first_trade = got[0][0]
    assert isinstance(first_trade, Trade)
    assert str(first_trade.price) == "86723.40"  # the exact decimal string, trailing zero kept
    assert proto.events() == []


def test_linear_trades_have_uuid_ids() -> None:
    proto = live(BybitLinearProtocol, channels=["trades"], symbols=["BTC-USDT-PERP"])
    got = [msg for frame in lines("linear_trades.jsonl") for msg in feed(proto, frame)]

    def perp(**values: Any) -> Trade:
        return trade("bybit_linear", symbol="BTC-USDT-PERP", **values)

    assert got == [
        perp(
            side="buy",
            price=D("16578.50"),
            amount=D("0.001"),
            trade_id="20f43950-d8dd-5b31-9112-a178eb6023af",
            timestamp=1672304486865,
        ),
        perp(
            side="sell",
            price=D("16578.00"),
            amount=D("0.003"),
            trade_id="5f6b0c2e-1d3a-5b8e-9c41-0e2f7a9d3b10",
            timestamp=1672304486880,
        ),
        perp(
            side="sell",
            price=D("16577.50"),
            amount=D("0.120"),
            trade_id="a3c1e7d4-8b2f-5e60-b1d9-4f7c2a6e8d21",
            timestamp=1672304486910,
        ),
        perp(
            side="buy",
            price=D("16578.00"),
            amount=D("0.010"),
            trade_id="0c9e4b7a-2f61-5d38-8a05-9b3e1c7f4a32",
            timestamp=1672304486955,
        ),
    ]
    assert proto.events() == []


BOOK = lines("spot_orderbook50.jsonl")
BTC: dict[str, Any] = {
    "connection": "bybit",
    "exchange": "bybit",
    "received_at": AT,
    "symbol": "BTC-USDT",
}


def book_delta(u: int, ts: int, bids: Any = (), asks: Any = ()) -> BookDelta:
    return BookDelta(
        **BTC,
        bids=levels(*bids),
        asks=levels(*asks),
        sequence=u,
        prev_sequence=u - 1,
        timestamp=ts,
    )


#: What each line of spot_orderbook50.jsonl decodes to.
BOOK_MESSAGES: list[Message] = [
    BookSnapshot(
        **BTC,
        bids=levels(("86723.40", "0.194"), ("86723.30", "0.002"), ("86722.30", "0.001")),
        asks=levels(("86723.50", "5.959"), ("86723.60", "0.320"), ("86723.80", "0.870")),
        sequence=18521288,
        timestamp=1790134712126,
    ),
    book_delta(18521289, 1790134712146, bids=[("86723.40", "0.201")]),
    book_delta(18521290, 1790134712166, asks=[("86723.50", "5.100"), ("86723.60", "0")]),
    book_delta(
        18521291,
        1790134712186,
        bids=[("86723.30", "0"), ("86722.90", "0.050")],
        asks=[("86723.70", "0.412")],
    ),
    book_delta(18521292, 1790134712206, bids=[("86723.40", "0.180")], asks=[("86723.50", "4.987")]),
    BookSnapshot(  # u = 1: Bybit's service restarted; the book starts afresh
        **BTC,
        bids=levels(("86723.40", "0.180"), ("86722.90", "0.050"), ("86722.30", "0.001")),
        asks=levels(("86723.50", "4.987"), ("86723.70", "0.412"), ("86723.80", "0.870")),
        sequence=1,
        timestamp=1790134712226,
    ),
    book_delta(2, 1790134712246, bids=[("86723.40", "0.175")]),
    book_delta(3, 1790134712266, asks=[("86723.70", "0")]),
]


def test_spot_book_snapshot_deltas_and_restart_snapshot_chain_without_gaps() -> None:
    proto = live(channels=["book"], symbols=["BTC-USDT"])
    for frame, expected in zip(BOOK, BOOK_MESSAGES, strict=True):
        assert feed(proto, frame) == (expected,)
        assert proto.events() == []  # u + 1 each time; the u = 1 snapshot restarts the chain


def test_a_delta_after_a_skipped_u_is_a_gap_and_is_still_delivered() -> None:
    proto = live(channels=["book"], symbols=["BTC-USDT"])
    feed(proto, BOOK[0])
    feed(proto, BOOK[1])  # u 18521289
    # BOOK[2] (u 18521290) is lost
    assert feed(proto, BOOK[3]) == (BOOK_MESSAGES[3],)
    assert proto.events() == [SequenceGap(symbol="BTC-USDT", expected=18521289, received=18521290)]
    assert feed(proto, BOOK[4]) == (BOOK_MESSAGES[4],)
    assert proto.events() == []  # the chain goes on from the delta after the gap


def test_without_the_restart_snapshot_its_deltas_would_be_a_gap() -> None:
    proto = live(channels=["book"], symbols=["BTC-USDT"])
    for frame in BOOK[:5]:
        feed(proto, frame)
    assert feed(proto, BOOK[6]) == (BOOK_MESSAGES[6],)  # u 2, the u = 1 snapshot skipped
    assert proto.events() == [SequenceGap(symbol="BTC-USDT", expected=18521292, received=1)]


def top_of_book(frame: str, bids: int = 1, asks: int = 1) -> str:
    """BOOK line as an ``orderbook.1`` frame (same shape) with the first levels kept."""
    value = msgspec.json.decode(frame)
    value["topic"] = "orderbook.1.BTCUSDT"
    value["data"]["b"] = value["data"]["b"][:bids]
    value["data"]["a"] = value["data"]["a"][:asks]
    return msgspec.json.encode(value).decode()


@pytest.mark.parametrize(
    ("cls", "symbol"), [(BybitProtocol, "BTC-USDT"), (BybitLinearProtocol, "BTC-USDT-PERP")]
)
def test_orderbook_1_is_the_ticker(cls: type[BybitProtocol], symbol: str) -> None:
    proto = live(cls, channels=["ticker"], symbols=[symbol])
    assert proto.subscriptions == {"orderbook.1.BTCUSDT": "live"}
    assert feed(proto, top_of_book(BOOK[0])) == (
        Ticker(
            connection=cls.exchange,
            exchange=cls.exchange,
            received_at=AT,
            symbol=symbol,
            bid=D("86723.40"),
            bid_size=D("0.194"),
            ask=D("86723.50"),
            ask_size=D("5.959"),
            timestamp=1790134712126,
        ),
    )
    # Bybit repeats a depth-1 snapshot with the same u after 3 s: still just a ticker
    assert len(feed(proto, top_of_book(BOOK[0]))) == 1
    assert feed(proto, top_of_book(BOOK[0], bids=0)) == ()  # no best bid: no ticker
    assert feed(proto, top_of_book(BOOK[0], asks=0)) == ()
    assert feed(proto, top_of_book(BOOK[0], bids=0, asks=0)) == ()
    assert proto.events() == []


def test_linear_tickers_via_raw_are_raw_messages_of_the_whole_frame() -> None:
    proto = started(BybitLinearProtocol, raw=["tickers.BTCUSDT"])
    assert proto.frames_to_send() == [bybit_subscribe(1, "tickers.BTCUSDT")]
    for frame in lines("linear_tickers.jsonl"):
        assert feed(proto, frame) == (
            RawMessage(
                connection="bybit_linear",
                exchange="bybit_linear",
                received_at=AT,
                data=msgspec.json.decode(frame),
            ),
        )
    assert proto.events() == []
    assert proto.state is AdapterState.SUBSCRIBING  # data before the ack is still delivered


@pytest.mark.parametrize(
    ("cls", "ack"), [(BybitProtocol, SPOT_ACK), (BybitLinearProtocol, LINEAR_ACK)]
)
def test_a_successful_reply_confirms_every_topic_of_its_request(
    cls: type[BybitProtocol], ack: str
) -> None:
    symbol = "BTC-USDT-PERP" if cls.perp else "BTC-USDT"
    proto = started(cls, channels=["trades", "book"], symbols=[symbol, "ETHUSDT"])
    topics = (
        "publicTrade.BTCUSDT",
        "orderbook.50.BTCUSDT",
        "publicTrade.ETHUSDT",
        "orderbook.50.ETHUSDT",
    )
    assert proto.frames_to_send() == [bybit_subscribe(1, *topics)]
    assert proto.subscriptions == dict.fromkeys(topics, "pending")
    assert proto.state is AdapterState.SUBSCRIBING
    assert feed(proto, answered(ack, "1")) == ()
    assert proto.events() == [Subscribed(topics=topics)]
    assert proto.subscriptions == dict.fromkeys(topics, "live")
    assert state(proto) is AdapterState.LIVE
    assert proto.frames_to_send() == []


def test_handler_not_found_fails_the_named_topic_and_requests_the_rest_again() -> None:
    proto = started(channels=["book"], symbols=["NOPE-USDT", "BTC-USDT", "ETH-USDT"])
    topics = ("orderbook.50.NOPEUSDT", "orderbook.50.BTCUSDT", "orderbook.50.ETHUSDT")
    assert proto.frames_to_send() == [bybit_subscribe(1, *topics)]
    message = "error:handler not found,topic:orderbook.50.NOPEUSDT"
    assert feed(proto, answered(NOT_FOUND, "1")) == ()
    assert proto.events() == [
        SubscriptionFailed(topic="orderbook.50.NOPEUSDT", code="handler not found", message=message)
    ]
    # Bybit subscribed nothing of request 1: the others go again as request 2
    assert proto.frames_to_send() == [
        '{"req_id":"2","op":"subscribe","args":["orderbook.50.BTCUSDT","orderbook.50.ETHUSDT"]}'
    ]
    assert proto.subscriptions == {
        "orderbook.50.NOPEUSDT": f"failed: handler not found {message}",
        "orderbook.50.BTCUSDT": "pending",
        "orderbook.50.ETHUSDT": "pending",
    }
    assert proto.state is AdapterState.SUBSCRIBING
    assert feed(proto, answered(SPOT_ACK, "2")) == ()
    assert proto.events() == [Subscribed(topics=topics[1:])]
    assert state(proto) is AdapterState.LIVE
    # request 1 was answered already: a second reply to it belongs to nothing
    late = answered(SPOT_ACK, "1")
    assert feed(proto, late) == ()
    assert proto.events() == [
        MalformedFrame(kind="unknown_request", detail="reply for request id '1'", sample=late)
    ]


def test_a_refused_single_topic_request_is_not_sent_again() -> None:
    proto = started(channels=["book"], symbols=["NOPE-USDT"])
    proto.frames_to_send()
    feed(proto, answered(NOT_FOUND, "1"))
    assert [type(e) for e in proto.events()] == [SubscriptionFailed]
    assert proto.frames_to_send() == []
    assert proto.state is AdapterState.LIVE  # every subscription is answered


def test_already_subscribed_counts_the_named_topic_live() -> None:
    proto = started(BybitLinearProtocol, channels=["ticker"], symbols=["ETHUSDT", "BTCUSDT"])
    assert proto.frames_to_send() == [
        bybit_subscribe(1, "orderbook.1.ETHUSDT", "orderbook.1.BTCUSDT")
    ]
    assert feed(proto, answered(ALREADY, "1")) == ()
    assert proto.events() == [Subscribed(topics=("orderbook.1.ETHUSDT",))]
    assert proto.frames_to_send() == [bybit_subscribe(2, "orderbook.1.BTCUSDT")]
    assert proto.subscriptions == {
        "orderbook.1.ETHUSDT": "live",
        "orderbook.1.BTCUSDT": "pending",
    }
    assert proto.state is AdapterState.SUBSCRIBING
    feed(proto, answered(LINEAR_ACK, "2"))
    assert proto.events() == [Subscribed(topics=("orderbook.1.BTCUSDT",))]
    assert state(proto) is AdapterState.LIVE


def test_args_size_fails_every_topic_of_the_request() -> None:
    proto = started(channels=["trades"], symbols=["BTC-USDT", "ETH-USDT"])
    proto.frames_to_send()
    reply = answered(ARGS_SIZE, "1")
    assert reply.endswith(',"op":"subscribe","req_id":"1"}')
    assert feed(proto, reply) == ()
    assert proto.events() == [
        SubscriptionFailed(topic=topic, code="args size >10", message="args size >10")
        for topic in ("publicTrade.BTCUSDT", "publicTrade.ETHUSDT")
    ]
    assert proto.frames_to_send() == []  # no topic named: nothing to request again
    assert proto.subscriptions == {
        "publicTrade.BTCUSDT": "failed: args size >10 args size >10",
        "publicTrade.ETHUSDT": "failed: args size >10 args size >10",
    }
    assert proto.state is AdapterState.LIVE


def test_replies_to_requests_we_never_sent_are_malformed() -> None:
    proto = started(channels=["trades"], symbols=["BTC-USDT"])
    proto.frames_to_send()
    # the samples verbatim: req_id "10001", "" (linear, none sent) and none at all
    for frame, req_id in zip(ACKS[:3], ("'10001'", "''", "None"), strict=True):
        assert feed(proto, frame) == ()
        assert proto.events() == [
            MalformedFrame(
                kind="unknown_request", detail=f"reply for request id {req_id}", sample=frame
            )
        ]
    assert proto.subscriptions == {"publicTrade.BTCUSDT": "pending"}
    assert proto.state is AdapterState.SUBSCRIBING


@pytest.mark.parametrize(
    "pong",
    [*PONGS, '{"op":"pong","args":["1672304486868"]}'],
    ids=["spot", "linear", "linear-req-id", "op-pong"],
)
def test_pongs_are_consumed(pong: str) -> None:
    proto = live(channels=["trades"], symbols=["BTC-USDT"])
    proto.tick(20.0)
    assert proto.frames_to_send() == [PING]
    assert feed(proto, pong, now=20.5) == ()
    assert proto.events() == [ProbeAnswered(rtt=0.5)]  # consumed, its round trip kept
    assert proto.deadline() == 40.0  # answered: no miss pending, next ping on the cadence


@pytest.mark.parametrize(
    ("frame", "kind", "detail"),
    [
        ("\x00garbage{", "invalid_json", "JSON is malformed: invalid character (byte 0)"),
        ("pong", "invalid_json", "JSON is malformed: invalid character (byte 0)"),
        ("[1,2]", "invalid_frame", "Expected `object`, got `array`"),
        ('{"topic":5}', "invalid_frame", "Expected `str | null`, got `int` - at `$.topic`"),
        (
            '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1}',
            "invalid_frame",
            "publicTrade.BTCUSDT frame without data",
        ),
        (
            '{"topic":"publicTrade.ETHUSDT","type":"snapshot","ts":1,"data":[]}',
            "unknown_topic",
            "data for topic 'publicTrade.ETHUSDT', not subscribed",
        ),
        ("{}", "unknown_frame", "neither data, an ack nor a pong"),
        ('{"op":"ping"}', "unknown_frame", "neither data, an ack nor a pong"),
        (
            '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"i":"1","T":1,'
            '"p":"abc","v":"1","S":"Buy"}]}',
            "invalid_data",
            "publicTrade.BTCUSDT: Invalid decimal string - at `$[0].p`",
        ),
        (
            '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"i":"1","T":1,'
            '"p":"1","v":"1","S":"Hold"}]}',
            "invalid_data",
            "publicTrade.BTCUSDT: Invalid enum value 'Hold' - at `$[0].S`",
        ),
        (
            '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"b":[["1"]],"a":[],'
            '"u":1}}',
            "invalid_data",
            "orderbook.50.BTCUSDT: Expected `array` of length 2 - at `$.b[0]`",
        ),
        (
            '{"topic":"orderbook.50.BTCUSDT","type":"reset","ts":1,"data":{"b":[],"a":[],"u":1}}',
            "invalid_data",
            "orderbook.50.BTCUSDT: unknown type 'reset'",
        ),
    ],
)
def test_garbage_is_malformed_and_nothing_else(frame: str, kind: str, detail: str) -> None:
    proto = started(channels=["trades", "book"], symbols=["BTC-USDT"])
    proto.frames_to_send()
    assert feed(proto, frame) == ()
    assert proto.events() == [MalformedFrame(kind=kind, detail=detail, sample=frame)]
    assert proto.frames_to_send() == []
    assert proto.state is AdapterState.SUBSCRIBING


# -- 1b. subscribe requests -----------------------------------------------------------

#: 25 spot symbols: C00-USDT ... C24-USDT.
SYMBOLS_25 = [f"C{i:02d}-USDT" for i in range(25)]
TOPICS_25 = [f"publicTrade.C{i:02d}USDT" for i in range(25)]


def test_subscribe_requests_hold_at_most_10_topics_and_ids_count_on_across_sessions() -> None:
    proto = BybitProtocol(make_spec(channels=["trades"], symbols=SYMBOLS_25))
    assert proto.state is AdapterState.IDLE
    assert proto.deadline() == math.inf
    proto.start_session(0.0)
    first = [bybit_subscribe(1, *TOPICS_25[:10]), bybit_subscribe(2, *TOPICS_25[10:20])]
    first.append(bybit_subscribe(3, *TOPICS_25[20:]))
    assert proto.frames_to_send() == first  # all at once: Bybit documents no request rate
    assert first[0] == (
        '{"req_id":"1","op":"subscribe","args":["publicTrade.C00USDT","publicTrade.C01USDT",'
        '"publicTrade.C02USDT","publicTrade.C03USDT","publicTrade.C04USDT","publicTrade.C05USDT",'
        '"publicTrade.C06USDT","publicTrade.C07USDT","publicTrade.C08USDT","publicTrade.C09USDT"]}'
    )
    for req_id in ("3", "1", "2"):  # replies may come in any order
        feed(proto, answered(SPOT_ACK, req_id))
    assert proto.events() == [
        Subscribed(topics=tuple(TOPICS_25[20:])),
        Subscribed(topics=tuple(TOPICS_25[:10])),
        Subscribed(topics=tuple(TOPICS_25[10:20])),
    ]
    assert state(proto) is AdapterState.LIVE
    proto.end_session()
    assert proto.state is AdapterState.IDLE
    assert proto.deadline() == math.inf
    proto.start_session(100.0)
    # everything again, with fresh request ids: never reused on one connection
    assert proto.frames_to_send() == [
        bybit_subscribe(4, *TOPICS_25[:10]),
        bybit_subscribe(5, *TOPICS_25[10:20]),
        bybit_subscribe(6, *TOPICS_25[20:]),
    ]
    assert proto.subscriptions == dict.fromkeys(TOPICS_25, "pending")
    stale = answered(SPOT_ACK, "1")  # a reply meant for the last session
    feed(proto, stale)
    assert proto.events() == [
        MalformedFrame(kind="unknown_request", detail="reply for request id '1'", sample=stale)
    ]
    assert proto.deadline() == 120.0


def test_topics_follow_symbols_then_channels_then_raw_without_duplicates() -> None:
    proto = started(
        channels=["trades", "ticker", "book"],
        symbols=["BTC-USDT", "ETHBTC", "BTCUSDT"],
        raw=["tickers.BTCUSDT", "orderbook.50.BTCUSDT", "kline.5.ETHBTC"],
    )
    assert proto.frames_to_send() == [
        bybit_subscribe(
            1,
            "publicTrade.BTCUSDT",
            "orderbook.1.BTCUSDT",
            "orderbook.50.BTCUSDT",
            "publicTrade.ETHBTC",
            "orderbook.1.ETHBTC",
            "orderbook.50.ETHBTC",
            "tickers.BTCUSDT",
            "kline.5.ETHBTC",
        )
    ]
    trade_frame = lines("spot_trades.jsonl")[0].replace("BTCUSDT", "ETHBTC")
    [got] = feed(proto, trade_frame)
    assert isinstance(got, Trade) and got.symbol == "ETH-BTC"


def test_endpoints_connect_rate_and_no_io() -> None:
    assert (BybitProtocol.default_url, BybitLinearProtocol.default_url) == (SPOT_URL, LINEAR_URL)
    assert BybitProtocol.connect_rate == BybitLinearProtocol.connect_rate == (500, 300.0)
    assert started(channels=["trades"], symbols=["BTC-USDT"]).url == SPOT_URL
    import actors.exchanges.bybit as package

    for module in ("__init__.py", "config.py", "protocol.py", "wire.py"):
        source = (Path(package.__file__).parent / module).read_text()
        for banned in ("import trio", "import json", "import time", "import socket"):
            assert banned not in source


# -- 2. heartbeat ---------------------------------------------------------------------
def test_ping_every_20_s_whatever_arrives() -> None:
    proto = live(channels=["trades"], symbols=["BTC-USDT"])
    assert proto.deadline() == 20.0
    proto.tick(19.999)
    assert proto.frames_to_send() == []
    feed(proto, lines("spot_trades.jsonl")[0], now=10.0)  # data does not move the ping
    assert proto.deadline() == 20.0
    proto.tick(20.0)
    assert proto.frames_to_send() == [PING]
    assert proto.deadline() == 40.0  # the answer is due by 40, the next ping too
    for now in (21.0, 30.0, 39.5):
        feed(proto, lines("spot_trades.jsonl")[1], now=now)
        assert proto.deadline() == 40.0
    proto.tick(40.0)
    assert proto.frames_to_send() == [PING]
    feed(proto, PONGS[0], now=40.2)
    proto.tick(60.0)
    assert proto.frames_to_send() == [PING]
    # The pong at 40.2 is timed against the newest ping (40).
    assert proto.events() == [ProbeAnswered(rtt=pytest.approx(0.2))]


def test_no_frame_within_20_s_of_a_ping_is_a_missed_heartbeat() -> None:
    proto = live(channels=["trades"], symbols=["BTC-USDT"])
    feed(proto, lines("spot_trades.jsonl")[0], now=19.0)
    proto.tick(20.0)
    assert proto.frames_to_send() == [PING]
    proto.tick(39.999)
    assert (proto.frames_to_send(), proto.events()) == ([], [])
    proto.tick(40.0)
    assert proto.events() == [HeartbeatMissed(detail=DETAIL)]
    assert proto.frames_to_send() == []  # no ping into a dead connection
    assert proto.deadline() == math.inf  # reported once; the actor ends the session
    proto.tick(100.0)
    assert (proto.frames_to_send(), proto.events()) == ([], [])


def test_heartbeat_follows_config() -> None:
    proto = live(channels=["trades"], symbols=["BTC-USDT"], heartbeat=5)
    assert proto.deadline() == 5.0
    proto.tick(5.0)
    assert proto.frames_to_send() == [PING]
    feed(proto, PONGS[1], now=5.1)
    proto.tick(10.0)
    assert proto.frames_to_send() == [PING]
    proto.tick(15.0)
    assert proto.events() == [
        ProbeAnswered(rtt=pytest.approx(0.1)),
        HeartbeatMissed(detail="no frame within 5 s of our ping (Bybit answers ping with pong)"),
    ]


def test_each_session_restarts_the_ping_cadence() -> None:
    proto = live(channels=["trades"], symbols=["BTC-USDT"])
    proto.tick(20.0)
    proto.end_session()
    proto.start_session(33.0)
    assert proto.deadline() == 53.0
    proto.tick(53.0)
    assert proto.frames_to_send()[-1] == PING


# -- 3. check() -----------------------------------------------------------------------
RAW_TOPIC = (
    "{!r} is not a Bybit public topic (expected e.g. 'tickers.BTCUSDT', "
    "'orderbook.200.BTCUSDT' or 'publicTrade.BTCUSDT', symbols in upper case)"
)
DEPTH = "{!r} has no depth Bybit serves (expected orderbook.1|50|200|1000.SYMBOL)"


def not_a_symbol(symbol: str, exchange: str) -> tuple[str, str]:
    if exchange == "bybit":
        expected, other = "BTC-USDT", "exchange = 'bybit_linear' for linear perpetuals"
    else:
        expected, other = "BTC-USDT-PERP", "exchange = 'bybit' for spot"
    return (
        "symbols",
        f"{symbol!r} is not a {exchange} symbol (expected {expected} or Bybit's upper-case "
        f"name such as BTCUSDT; use {other})",
    )


@pytest.mark.parametrize(
    ("exchange", "values", "problems"),
    [
        (
            "bybit",
            {
                "channels": ["trades", "ticker", "book"],
                "symbols": ["BTC-USDT", "ETH-BTC", "BTCUSDT"],
                "raw": ["tickers.BTCUSDT", "orderbook.1000.BTCUSDT", "kline.5.BTCUSDT"],
                "heartbeat": 599.5,
                # orderbook.1000 beside the book channel's orderbook.50: unchecked only.
                "book_sync": False,
            },
            [],
        ),
        (
            "bybit_linear",
            {"channels": ["book"], "symbols": ["BTC-USDT-PERP", "BTCUSDT", "BTCPERP"]},
            [],
        ),
        ("bybit_linear", {"raw": ["allLiquidation.BTCUSDT"]}, []),
        (
            "bybit",
            {"channels": ["trades"], "symbols": ["BTC-USDT-PERP", "btcusdt", "BTC-USDT"]},
            [not_a_symbol("BTC-USDT-PERP", "bybit"), not_a_symbol("btcusdt", "bybit")],
        ),
        (
            "bybit_linear",
            {"channels": ["trades"], "symbols": ["BTC-USDT", "ethusdt"]},
            [not_a_symbol("BTC-USDT", "bybit_linear"), not_a_symbol("ethusdt", "bybit_linear")],
        ),
        (
            "bybit",
            {
                "raw": [
                    "depth.BTCUSDT",
                    "orderbook.500.BTCUSDT",
                    "orderbook.30.BTCUSDT",
                    "tickers.btcusdt",
                    "publicTrade",
                    "tickers.50.BTCUSDT",
                    "orderbook.50",
                    "kline.BTCUSDT",
                    "tickers.BTCUSDT",
                ]
            },
            [
                ("raw", RAW_TOPIC.format("depth.BTCUSDT")),
                ("raw", DEPTH.format("orderbook.500.BTCUSDT")),
                ("raw", DEPTH.format("orderbook.30.BTCUSDT")),
                ("raw", RAW_TOPIC.format("tickers.btcusdt")),
                ("raw", RAW_TOPIC.format("publicTrade")),
                ("raw", RAW_TOPIC.format("tickers.50.BTCUSDT")),
                ("raw", RAW_TOPIC.format("orderbook.50")),
                ("raw", RAW_TOPIC.format("kline.BTCUSDT")),
            ],
        ),
        (
            "bybit",
            {"raw": ["tickers.BTCUSDT"], "subscribe": ['{"op":"subscribe"}']},
            [
                (
                    "subscribe",
                    "not used by the bybit adapter (list channels and symbols, or raw)",
                )
            ],
        ),
        (
            "bybit_linear",
            {"raw": ["tickers.BTCUSDT"], "heartbeat": 600},
            [
                (
                    "heartbeat",
                    "600 s is too long (expected less than 600 s: Bybit cuts a connection "
                    "without ping or data for 10 minutes)",
                )
            ],
        ),
        (
            "bybit",
            {"channels": ["trades", "depth"], "symbols": ["BTC-USDT"]},
            [("channels", "unknown channel 'depth' (expected trades, ticker or book)")],
        ),
        (
            "bybit",
            {"channels": ["trades"]},
            [("symbols", "missing (expected at least one symbol for the channels, e.g. BTC-USDT)")],
        ),
        (
            "bybit_linear",
            {"symbols": ["BTC-USDT-PERP"]},
            [("channels", "missing (expected trades, ticker and/or book for the symbols)")],
        ),
        (
            "bybit",
            {},
            [
                (
                    "channels",
                    "nothing to subscribe (expected channels and symbols, or raw topics)",
                )
            ],
        ),
    ],
)
def test_check(exchange: str, values: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    cls = BybitLinearProtocol if exchange == "bybit_linear" else BybitProtocol
    assert cls.check(make_spec(exchange, **values)) == problems


def test_check_runs_when_the_config_is_loaded() -> None:
    with pytest.raises(ConfigError) as raised:
        exchange_config(
            spot={"exchange": "bybit", "channels": ["book"], "symbols": ["BTC-USDT-PERP"]},
            perp={"exchange": "bybit_linear", "raw": ["orderbook.500.BTCUSDT"]},
        )
    assert raised.value.problems == [
        "<test>: connections.spot.symbols: 'BTC-USDT-PERP' is not a bybit symbol (expected "
        "BTC-USDT or Bybit's upper-case name such as BTCUSDT; use exchange = 'bybit_linear' "
        "for linear perpetuals)",
        "<test>: connections.perp.raw: 'orderbook.500.BTCUSDT' has no depth Bybit serves "
        "(expected orderbook.1|50|200|1000.SYMBOL)",
    ]


@pytest.mark.parametrize("req_id", ["\u00b2", "\u0661"])
def test_a_reply_id_of_non_ascii_digits_is_an_unknown_request(req_id: str) -> None:
    # "\u00b2".isdigit() is true but int() raises; int() reads Arabic-Indic "\u0661" as 1.
    proto = live(channels=["trades"], symbols=["BTC-USDT"])
    frame = msgspec.json.encode(
        {"success": True, "ret_msg": "subscribe", "req_id": req_id, "op": "subscribe"}
    ).decode()
    assert feed(proto, frame) == ()
    assert proto.events() == [
        MalformedFrame(
            kind="unknown_request", detail=f"reply for request id {req_id!r}", sample=frame
        )
    ]
