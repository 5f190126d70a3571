"""Bybit v5 public (spot ``bybit``, linear ``bybit_linear``): adapter, fake, end to end.

Four parts: (1) the fixture frames of ``tests/data/bybit/`` (see SOURCES.md: rebuilt from
the docs and quoted frames, not captures) through the adapter, every value pinned; (2)
the heartbeat, driven by explicit ``now`` values; (3) ``check()``; (4) the supervisor
against :class:`FakeBybit` over in-memory streams on MockClock, with exact virtual times.

FakeBybit data (``interval`` 1 s): symbol ``k`` (0-based) of a category's list has base
price ``10_000 * (k + 1)``. Every second after a session's first subscription, each
subscribed topic gets one frame, in subscription order; ``orderbook`` and ``tickers``
topics also send a frame right after the ack. Trade ``n`` of a symbol (counted across
sessions) has price ``{base + n}.50``, side Buy for even ``n``, id ``FIRST_TRADE_ID + n``
on spot and a UUID ending in ``n`` on linear. A book's first ``u`` is ``FIRST_UPDATE_ID`` and
rises by 1 per frame; depth 1 sends a snapshot every time. ``ts`` is
``DEFAULT_EPOCH_MS + 1000 t`` and a trade's ``T`` is 1 ms earlier.
"""

from __future__ import annotations

import logging
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from actors._spec import ConnectionSpec
from actors.exchanges.bybit import BybitLinearProtocol, BybitProtocol
from actors.exchanges.messages import (
    BookDelta,
    BookSnapshot,
    HeartbeatMissed,
    MalformedFrame,
    Message,
    RawMessage,
    SequenceGap,
    Subscribed,
    SubscriptionFailed,
    Ticker,
    Trade,
)
from actors.exchanges.sdk.protocol import AdapterState
from supervisor import Config, ConfigError, config_from_dict, open_supervisor
from supervisor.testing import FakeBybit, FakeExchange, open_fake_exchange
from supervisor.testing.fakes.bybit import DEFAULT_EPOCH_MS, FIRST_TRADE_ID, FIRST_UPDATE_ID

DATA = Path(__file__).parent / "data" / "bybit"
#: The ``received_at`` the synchronous tests pass to the adapter.
AT = 1234.5
D = Decimal
SPOT_URL = "wss://stream.bybit.com/v5/public/spot"
LINEAR_URL = "wss://stream.bybit.com/v5/public/linear"
PING = '{"op":"ping"}'
DETAIL = "no frame within 20 s of our ping (Bybit answers ping with pong)"


def lines(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def make_spec(exchange: str = "bybit", **values: Any) -> ConnectionSpec:
    return msgspec.convert({"name": exchange, "exchange": exchange, **values}, ConnectionSpec)


def started(cls: type[BybitProtocol] = BybitProtocol, **values: Any) -> BybitProtocol:
    """An adapter in its first session (started at 0), subscribe frames still queued."""
    proto = cls(make_spec(cls.exchange, **values))
    proto.start_session(0.0)
    return proto


def feed(proto: BybitProtocol, frame: str, now: float = 1.0) -> tuple[Message, ...]:
    return proto.receive_frame(frame, now, AT)


def state(proto: BybitProtocol) -> AdapterState:
    """``proto.state``, read fresh (no type narrowing across calls)."""
    return proto.state


def subscribe(req_id: int, *topics: str) -> str:
    args = ",".join(f'"{t}"' for t in topics)
    return f'{{"req_id":"{req_id}","op":"subscribe","args":[{args}]}}'


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


def levels(*pairs: tuple[str, str]) -> tuple[tuple[Decimal, Decimal], ...]:
    return tuple((D(price), D(size)) for price, size in pairs)


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
    assert proto.frames_to_send() == [subscribe(1, "tickers.BTCUSDT")]
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
    assert proto.frames_to_send() == [subscribe(1, *topics)]
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
    assert proto.frames_to_send() == [subscribe(1, *topics)]
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
    assert proto.frames_to_send() == [subscribe(1, "orderbook.1.ETHUSDT", "orderbook.1.BTCUSDT")]
    assert feed(proto, answered(ALREADY, "1")) == ()
    assert proto.events() == [Subscribed(topics=("orderbook.1.ETHUSDT",))]
    assert proto.frames_to_send() == [subscribe(2, "orderbook.1.BTCUSDT")]
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
    assert proto.events() == []
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
    first = [subscribe(1, *TOPICS_25[:10]), subscribe(2, *TOPICS_25[10:20])]
    first.append(subscribe(3, *TOPICS_25[20:]))
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
        subscribe(4, *TOPICS_25[:10]),
        subscribe(5, *TOPICS_25[10:20]),
        subscribe(6, *TOPICS_25[20:]),
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
        subscribe(
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
    assert proto.events() == []


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
        HeartbeatMissed(detail="no frame within 5 s of our ping (Bybit answers ping with pong)")
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
        bybit_config(
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


# -- 4. end to end --------------------------------------------------------------------

EPOCH = DEFAULT_EPOCH_MS


def bybit_config(**connections: dict[str, Any]) -> Config:
    """Connections to Bybit's default URLs; restarts after 1, 2, 4... s, no jitter."""
    return config_from_dict(
        {
            "supervisor": {"shutdown_timeout": 1.0},
            "defaults": {
                "backoff": {
                    "initial": 1.0,
                    "max": 8.0,
                    "multiplier": 2.0,
                    "jitter": "none",
                    "reset_after": 10.0,
                },
            },
            "connections": connections,
        },
        source="<test>",
    )


def bare(msg: Message) -> Message:
    """The message without its wall-clock stamp."""
    assert msg.received_at > 0
    return msgspec.structs.replace(msg, received_at=0.0)


class Dialer:
    """Sends every URL to one memory fake and records when it was dialled."""

    def __init__(self, fake: FakeExchange) -> None:
        self.fake = fake
        self.attempts: list[tuple[float, str]] = []

    async def __call__(self, url: str) -> trio.abc.Stream:
        self.attempts.append((trio.current_time(), url))
        return await self.fake.connect(url)

    def times(self) -> list[float]:
        return [at for at, _ in self.attempts]


def common(connection: str, exchange: str, symbol: str) -> dict[str, Any]:
    return {"connection": connection, "exchange": exchange, "received_at": 0.0, "symbol": symbol}


def e2e_top(who: dict[str, Any], base: int, at: float) -> Ticker:
    """The fake's orderbook.1 frame at ``at`` (a book whose u started at FIRST_UPDATE_ID)."""
    price = base + FIRST_UPDATE_ID % 100
    return Ticker(
        **who,
        bid=D(f"{price}.40"),
        bid_size=D("1.000"),
        ask=D(f"{price}.60"),
        ask_size=D("2.000"),
        timestamp=EPOCH + int(at * 1000),
    )


def e2e_snapshot(who: dict[str, Any], base: int, u: int = FIRST_UPDATE_ID) -> BookSnapshot:
    price = base + u % 100
    return BookSnapshot(
        **who,
        bids=levels(*((f"{price - i}.40", f"{i + 1}.000") for i in range(3))),
        asks=levels(*((f"{price + i}.60", f"{i + 2}.000") for i in range(3))),
        sequence=u,
        timestamp=EPOCH,
    )


def e2e_delta(who: dict[str, Any], base: int, u: int, at: float) -> BookDelta:
    price = base + (u - 1) % 100
    return BookDelta(
        **who,
        bids=levels((f"{price}.40", f"{u % 7}.000")),
        asks=levels((f"{price + 1}.60", "0")),
        sequence=u,
        prev_sequence=u - 1,
        timestamp=EPOCH + int(at * 1000),
    )


async def test_spot_and_linear_go_live_and_deliver_typed_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=1.0, handler=bybit
    ) as fake:
        dialer = Dialer(fake)
        config = bybit_config(
            spot={
                "exchange": "bybit",
                "channels": ["trades", "ticker", "book"],
                "symbols": ["BTC-USDT", "ETH-BTC"],
            },
            perp={
                "exchange": "bybit_linear",
                "channels": ["trades", "ticker", "book"],
                "symbols": ["ETH-USDT-PERP"],
                "raw": ["tickers.BTCUSDT"],
            },
        )
        got: dict[str, list[tuple[float, Message]]] = {"spot": [], "perp": []}
        with trio.fail_after(30):
            async with open_supervisor(config, connector=dialer) as sup:
                async for msg in sup.messages():
                    if trio.current_time() >= 2.0:
                        break
                    got[msg.connection].append((trio.current_time(), bare(msg)))
                stats = {c.name: c for c in (await sup.stats()).connections}
    assert sorted(dialer.attempts) == [(0.0, LINEAR_URL), (0.0, SPOT_URL)]  # default URLs
    btc = common("spot", "bybit", "BTC-USDT")
    ethbtc = common("spot", "bybit", "ETH-BTC")
    spot_trade = Trade(
        **btc,
        side="buy",
        price=D("10000.50"),
        amount=D("0.00903"),
        trade_id=str(FIRST_TRADE_ID),
        timestamp=EPOCH + 999,
    )
    # BTCUSDT and ETHBTC are symbols 0 and 3 of the fake's spot list
    assert got["spot"] == [
        (0.0, e2e_top(btc, 10_000, 0.0)),  # orderbook snapshots right after the ack
        (0.0, e2e_snapshot(btc, 10_000)),
        (0.0, e2e_top(ethbtc, 40_000, 0.0)),
        (0.0, e2e_snapshot(ethbtc, 40_000)),
        (1.0, spot_trade),
        (1.0, e2e_top(btc, 10_000, 1.0)),
        (1.0, e2e_delta(btc, 10_000, FIRST_UPDATE_ID + 1, 1.0)),
        (1.0, msgspec.structs.replace(spot_trade, **ethbtc, price=D("40000.50"))),
        (1.0, e2e_top(ethbtc, 40_000, 1.0)),
        (1.0, e2e_delta(ethbtc, 40_000, FIRST_UPDATE_ID + 1, 1.0)),
    ]
    eth = common("perp", "bybit_linear", "ETH-USDT-PERP")
    perp = got["perp"]
    assert perp[:2] + perp[3:6] == [
        (0.0, e2e_top(eth, 20_000, 0.0)),
        (0.0, e2e_snapshot(eth, 20_000)),
        (
            1.0,
            Trade(
                **eth,
                side="buy",
                price=D("20000.50"),
                amount=D("0.001"),
                trade_id="00000000-0000-5000-8000-000000000000",
                timestamp=EPOCH + 999,
            ),
        ),
        (1.0, e2e_top(eth, 20_000, 1.0)),
        (1.0, e2e_delta(eth, 20_000, FIRST_UPDATE_ID + 1, 1.0)),
    ]
    assert len(perp) == 7
    raw = [(t, m) for t, m in perp if isinstance(m, RawMessage)]
    assert [(t, m.data["topic"], m.data["type"], m.data["data"]["bid1Price"]) for t, m in raw] == [
        (0.0, "tickers.BTCUSDT", "snapshot", "10000.40"),
        (1.0, "tickers.BTCUSDT", "delta", "10001.40"),
    ]
    assert [raw[0][1], raw[1][1]] == [perp[2][1], perp[6][1]]
    by_category = {s.category: s for s in bybit.sessions.values()}
    assert fake.sessions[by_category["spot"].index].received == [
        subscribe(1, *by_category["spot"].topics)
    ]
    assert fake.sessions[by_category["linear"].index].received == [
        subscribe(1, *by_category["linear"].topics)
    ]
    assert (
        list(by_category["spot"].topics)
        == list(stats["spot"].subscriptions)
        == [
            "publicTrade.BTCUSDT",
            "orderbook.1.BTCUSDT",
            "orderbook.50.BTCUSDT",
            "publicTrade.ETHBTC",
            "orderbook.1.ETHBTC",
            "orderbook.50.ETHBTC",
        ]
    )
    assert (
        list(by_category["linear"].topics)
        == list(stats["perp"].subscriptions)
        == [
            "publicTrade.ETHUSDT",
            "orderbook.1.ETHUSDT",
            "orderbook.50.ETHUSDT",
            "tickers.BTCUSDT",
        ]
    )
    for name in ("spot", "perp"):
        assert set(stats[name].subscriptions.values()) == {"live"}
        assert (stats[name].state, stats[name].malformed, stats[name].gaps) == ("live", 0, 0)
    assert bybit.closes == []


@pytest.mark.parametrize(("limit", "failed"), [(10, 0), (5, 20)])
async def test_25_spot_topics_go_out_as_requests_of_10_10_and_5(
    autojump_clock: trio.testing.MockClock, limit: int, failed: int
) -> None:
    bybit = FakeBybit(spot_symbols=[t.partition(".")[2] for t in TOPICS_25], spot_max_args=limit)
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=math.inf, handler=bybit
    ) as fake:
        config = bybit_config(
            spot={"exchange": "bybit", "channels": ["trades"], "symbols": SYMBOLS_25}
        )
        with trio.fail_after(30):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await trio.sleep_until(0.5)
                stats = (await sup.stats()).connections[0]
    assert fake.sessions[0].received == [
        subscribe(1, *TOPICS_25[:10]),
        subscribe(2, *TOPICS_25[10:20]),
        subscribe(3, *TOPICS_25[20:]),
    ]
    refused = f"failed: args size >{limit} args size >{limit}"
    assert stats.subscriptions == {
        topic: refused if i < failed else "live" for i, topic in enumerate(TOPICS_25)
    }
    assert list(bybit.sessions[0].topics) == TOPICS_25[failed:]
    assert (stats.state, stats.connects, stats.malformed) == ("live", 1, 0)
    assert bybit.closes == []


async def test_an_unknown_symbol_fails_its_topics_and_the_rest_go_live(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    bybit = FakeBybit(spot_symbols=("BTCUSDT", "ETHUSDT"))
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=1.0, handler=bybit
    ) as fake:
        config = bybit_config(
            spot={
                "exchange": "bybit",
                "channels": ["trades", "book"],
                "symbols": ["BTC-USDT", "SOL-USDT", "ETH-USDT"],
            }
        )
        with trio.fail_after(30):
            async with open_supervisor(config, connector=fake.connect) as sup:
                first = bare(await sup.messages().__anext__())
                assert trio.current_time() == 0.0
                stats = (await sup.stats()).connections[0]
    topics = [
        "publicTrade.BTCUSDT",
        "orderbook.50.BTCUSDT",
        "publicTrade.SOLUSDT",
        "orderbook.50.SOLUSDT",
        "publicTrade.ETHUSDT",
        "orderbook.50.ETHUSDT",
    ]
    # Each refusal names the first bad topic; the rest go again without it.
    assert fake.sessions[0].received == [
        subscribe(1, *topics),
        subscribe(2, *topics[:2], *topics[3:]),
        subscribe(3, *topics[:2], *topics[4:]),
    ]
    not_found = "failed: handler not found error:handler not found,topic:"
    assert stats.subscriptions == {
        "publicTrade.BTCUSDT": "live",
        "orderbook.50.BTCUSDT": "live",
        "publicTrade.SOLUSDT": f"{not_found}publicTrade.SOLUSDT",
        "orderbook.50.SOLUSDT": f"{not_found}orderbook.50.SOLUSDT",
        "publicTrade.ETHUSDT": "live",
        "orderbook.50.ETHUSDT": "live",
    }
    assert stats.state == "live"
    assert first == e2e_snapshot(common("spot", "bybit", "BTC-USDT"), 10_000)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert logged == [
        f"spot: the exchange refused subscription {topic!r}: handler not found "
        f"error:handler not found,topic:{topic} (check channels/symbols)"
        for topic in ("publicTrade.SOLUSDT", "orderbook.50.SOLUSDT")
    ]


async def book_chain(
    bybit: FakeBybit, fake: FakeExchange, inject: str, count: int
) -> tuple[list[tuple[float, str, int | None, int | None]], Any]:
    """Run a spot book of BTC-USDT; after the first delta, call ``bybit.<inject>``."""
    config = bybit_config(spot={"exchange": "bybit", "channels": ["book"], "symbols": ["BTC-USDT"]})
    chain: list[tuple[float, str, int | None, int | None]] = []
    async with open_supervisor(config, connector=fake.connect) as sup:
        async for msg in sup.messages():
            if isinstance(msg, BookSnapshot):
                chain.append((trio.current_time(), "snapshot", None, msg.sequence))
            else:
                assert isinstance(msg, BookDelta)
                chain.append((trio.current_time(), "delta", msg.prev_sequence, msg.sequence))
            if len(chain) == 2:
                if inject == "gap":
                    bybit.inject_gap("orderbook.50.BTCUSDT")
                else:
                    bybit.restart_books()
            if len(chain) == count:
                break
        await sup.stop()
        stats = (await sup.stats()).connections[0]
    return chain, stats


async def test_an_injected_gap_is_counted_and_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    bybit = FakeBybit()
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=1.0, handler=bybit
    ) as fake:
        with trio.fail_after(30):
            chain, stats = await book_chain(bybit, fake, "gap", 4)
    u = FIRST_UPDATE_ID
    assert chain == [
        (0.0, "snapshot", None, u),
        (1.0, "delta", u, u + 1),
        (2.0, "delta", u + 2, u + 3),  # u + 2 was lost
        (3.0, "delta", u + 3, u + 4),
    ]
    assert (stats.gaps, stats.restarts, stats.connects) == (1, 0, 1)
    assert len(fake.sessions) == 1
    gaps = [r.getMessage() for r in caplog.records if "gap" in r.getMessage()]
    assert gaps == [
        f"spot: BTC-USDT book sequence gap: expected to continue from {u + 1}, got {u + 2}"
    ]


async def test_a_service_restart_snapshot_is_no_gap(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    bybit = FakeBybit()
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=1.0, handler=bybit
    ) as fake:
        with trio.fail_after(30):
            chain, stats = await book_chain(bybit, fake, "restart", 5)
    u = FIRST_UPDATE_ID
    assert chain == [
        (0.0, "snapshot", None, u),
        (1.0, "delta", u, u + 1),
        (2.0, "snapshot", None, 1),  # u = 1: overwrite the book
        (3.0, "delta", 1, 2),
        (4.0, "delta", 2, 3),
    ]
    assert (stats.gaps, stats.restarts) == (0, 0)
    assert [r for r in caplog.records if "gap" in r.getMessage()] == []


TRADES_AND_BOOK = ["publicTrade.BTCUSDT", "orderbook.50.BTCUSDT"]


@pytest.mark.parametrize(
    ("stale_after", "reconnect_at", "error"),
    [
        (60.0, 41.0, f"FeedStale: heartbeat missed: {DETAIL}"),
        (30.0, 32.0, f"FeedStale: stale: no frame for 30 s from {SPOT_URL}"),
    ],
    ids=["heartbeat-missed", "stale"],
)
async def test_a_silent_server_is_left_and_everything_resubscribed(
    autojump_clock: trio.testing.MockClock, stale_after: float, reconnect_at: float, error: str
) -> None:
    bybit = FakeBybit()
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=1.0, handler=bybit
    ) as fake:
        dialer = Dialer(fake)
        config = bybit_config(
            spot={
                "exchange": "bybit",
                "channels": ["trades", "book"],
                "symbols": ["BTC-USDT"],
                "stale_after": stale_after,
            }
        )
        with trio.fail_after(300):
            async with open_supervisor(config, connector=dialer) as sup:
                await trio.sleep_until(1.5)  # snapshot at 0, trade and delta at 1
                fake.interval = math.inf  # no more data...
                bybit.answer_pings = False  # ...and no pongs
                await fake.wait_until(lambda f: len(f.sessions) == 2)
                assert trio.current_time() == reconnect_at
                await trio.sleep_until(reconnect_at + 0.5)
                stats = (await sup.stats()).connections[0]
    # last frame at 1; our ping at 20 is not answered: by 40 (heartbeat) or at 31
    # (stale_after 30) the session is given up; backoff 1 s.
    assert dialer.times() == [0.0, reconnect_at]
    assert stats.last_error == error
    assert fake.sessions[0].received == [subscribe(1, *TRADES_AND_BOOK), PING]
    assert bybit.sessions[0].pings == 1
    # the new session asks for everything again, under a new request id
    assert fake.sessions[1].received == [subscribe(2, *TRADES_AND_BOOK)]
    assert list(bybit.sessions[1].topics) == list(bybit.sessions[0].topics) == TRADES_AND_BOOK
    assert stats.subscriptions == dict.fromkeys(TRADES_AND_BOOK, "live")
    assert (stats.state, stats.connects, stats.restarts) == ("live", 2, 1)
    assert bybit.closes == []


async def test_pongs_keep_quiet_connections_alive(autojump_clock: trio.testing.MockClock) -> None:
    bybit = FakeBybit()
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=math.inf, handler=bybit
    ) as fake:
        config = bybit_config(
            quiet={"exchange": "bybit", "channels": ["trades"], "symbols": ["BTC-USDT"]},
            busy={"exchange": "bybit_linear", "channels": ["trades"], "symbols": ["BTC-USDT-PERP"]},
        )
        with trio.fail_after(300):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await trio.sleep_until(210.0)
                stats = (await sup.stats()).connections
    # No data at all (interval inf) on either; the fake answers pings: a ping every 20 s
    # keeps both alive well past stale_after (30 s).
    assert [len(s.received) for s in fake.sessions] == [11, 11]  # subscribe + 10 pings
    assert {s.received[-1] for s in fake.sessions} == {PING}
    assert [s.pings for s in bybit.sessions.values()] == [10, 10]
    assert [(s.state, s.connects, s.restarts, s.frames) for s in stats] == [
        ("live", 1, 0, 11),  # the ack + 10 pongs
        ("live", 1, 0, 11),
    ]
    assert bybit.closes == []


async def test_data_keeps_a_connection_alive_when_pongs_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bybit = FakeBybit()
    bybit.answer_pings = False
    async with open_fake_exchange(
        name="bybit", transport="memory", interval=1.0, handler=bybit
    ) as fake:
        config = bybit_config(
            spot={"exchange": "bybit", "channels": ["trades"], "symbols": ["BTC-USDT"]}
        )
        with trio.fail_after(300):
            async with open_supervisor(config, connector=fake.connect) as sup:
                await trio.sleep_until(110.0)
                stats = (await sup.stats()).connections[0]
    # pings go out every 20 s whatever arrives; the trades each second answer for them
    assert fake.sessions[0].received == [subscribe(1, "publicTrade.BTCUSDT")] + [PING] * 5
    assert bybit.sessions[0].pings == 5
    assert len(fake.sessions) == 1
    assert (stats.state, stats.connects, stats.restarts, stats.last_error) == ("live", 1, 0, "")
