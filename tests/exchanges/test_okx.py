"""OKX v5 public: recorded frames through the sans-IO adapter, synchronously.

Two parts: (1) recorded frames from ``tests/data/okx/`` through the adapter, with every
value pinned; (2) the adapter alone, without sockets or clocks (state machine, pacing,
heartbeat, ack bookkeeping, ``check()``). The fake is tested in ``test_okx_fake.py``,
the supervisor against it in ``test_okx_end_to_end.py``.
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors._errors import LocalProtocolError
from actors._spec import ConnectionSpec
from actors.exchanges.messages import (
    BookDelta,
    BookSnapshot,
    HeartbeatMissed,
    MalformedFrame,
    Message,
    ProbeAnswered,
    RawMessage,
    ReconnectRequested,
    SequenceGap,
    Subscribed,
    SubscriptionFailed,
    Ticker,
    Trade,
)
from actors.exchanges.okx import OkxProtocol
from actors.exchanges.sdk.protocol import AdapterState
from exchanges.helpers import TinyOkx, connection_spec, fixture_lines, okx_config
from supervisor import ConfigError

D = Decimal
NOTICE = "The connection will soon be closed for a service upgrade. Please reconnect."
lines = fixture_lines("okx")


def make_spec(**values: Any) -> ConnectionSpec:
    # stale_after 60: OKX's default ping (25 s) applies as such; under the default 30 the
    # ping follows half of stale_after (test_the_default_ping_follows_stale_after).
    return connection_spec("okx", "okx", **{"stale_after": 60.0, **values})


def started(cls: type[OkxProtocol] = OkxProtocol, **values: Any) -> OkxProtocol:
    proto = cls(make_spec(**values))
    proto.start_session(0.0)
    return proto


def feed(proto: OkxProtocol, frame: str, now: float = 1.0) -> tuple[Message, ...]:
    return proto.receive_frame(frame, now, 1234.5)


def ack(channel: str, inst_id: str) -> str:
    return f'{{"event":"subscribe","arg":{{"channel":"{channel}","instId":"{inst_id}"}}}}'


def trade(**values: Any) -> Trade:
    base: dict[str, Any] = {"connection": "okx", "exchange": "okx", "received_at": 1234.5}
    return Trade(**{**base, **values})


def ticker(**values: Any) -> Ticker:
    base: dict[str, Any] = {"connection": "okx", "exchange": "okx", "received_at": 1234.5}
    return Ticker(**{**base, **values})


# -- 1. recorded frames ---------------------------------------------------------------
def test_trade_2025_decodes_exactly() -> None:
    proto = started(channels=["trades"], symbols=["BTC-USDT-PERP"])
    [frame] = lines("trades_2025.jsonl")
    assert feed(proto, frame) == (
        trade(
            symbol="BTC-USDT-PERP",
            side="sell",
            price=D("91467.1"),
            amount=D("0.03"),
            trade_id="2005639579",
            timestamp=1765201257145,
        ),
    )
    assert proto.events() == []


def test_trades_2022_spot_swap_and_dated_future() -> None:
    proto = started(channels=["trades"], symbols=["BTC-USD-220527", "UNI-USD-SWAP", "BTC-USDT"])
    got = [msg for frame in lines("trades_2022.jsonl") for msg in feed(proto, frame)]
    assert len(got) == 74  # one trade per frame
    assert got[:3] == [
        trade(
            symbol="BTC-USD-220527",  # dated futures have no normalized form
            side="buy",
            price=D("30218.8"),
            amount=D("1"),
            trade_id="7849",
            timestamp=1652459199958,
        ),
        trade(
            symbol="UNI-USD-PERP",
            side="sell",
            price=D("5.123"),
            amount=D("100"),
            trade_id="12883020",
            timestamp=1652459215150,
        ),
        trade(
            symbol="BTC-USDT",
            side="buy",
            price=D("30236"),
            amount=D("0.0002"),
            trade_id="338476307",
            timestamp=1652459224818,
        ),
    ]
    assert got[-1] == trade(
        symbol="BTC-USDT",
        side="buy",
        price=D("30227.6"),
        amount=D("8.8E-7"),
        trade_id="338476375",
        timestamp=1652459235576,
    )
    assert proto.events() == []


def test_ticker_2025_decodes_exactly() -> None:
    proto = started(channels=["ticker"], symbols=["BTC-USD"])
    [frame] = lines("tickers_2025.jsonl")
    assert feed(proto, frame) == (
        ticker(
            symbol="BTC-USD",
            bid=D("91527.2"),
            bid_size=D("0.0135"),
            ask=D("91527.3"),
            ask_size=D("1.54613591"),
            timestamp=1765201256914,
        ),
    )


def test_tickers_2022() -> None:
    proto = started(channels=["ticker"], symbols=["BTC-USD-220527", "UNI-USD-SWAP", "BTC-USDT"])
    got = [msg for frame in lines("tickers_2022.jsonl") for msg in feed(proto, frame)]
    assert len(got) == 28
    assert got[:2] == [
        ticker(
            symbol="BTC-USD-220527",
            bid=D("30210.4"),
            bid_size=D("4"),
            ask=D("30220.1"),
            ask_size=D("3"),
            timestamp=1652459223003,
        ),
        ticker(
            symbol="UNI-USD-PERP",
            bid=D("5.134"),
            bid_size=D("96"),
            ask=D("5.142"),
            ask_size=D("25"),
            timestamp=1652459223143,
        ),
    ]
    assert proto.events() == []


def test_books_2025_snapshot_then_chained_update() -> None:
    proto = started(channels=["book"], symbols=["NEAR-USDT"])
    snapshot, update = lines("books_seqid_2025_truncated.jsonl")
    common: dict[str, Any] = {
        "connection": "okx",
        "exchange": "okx",
        "received_at": 1234.5,
        "symbol": "NEAR-USDT",
    }
    assert feed(proto, snapshot) == (
        BookSnapshot(
            **common,
            bids=(
                (D("1.782"), D("2173.46443964")),
                (D("1.781"), D("14620.34390321")),
                (D("1.32"), D("541.81794985")),
            ),
            asks=(
                (D("1.783"), D("411.15719291")),
                (D("1.784"), D("5842.06737585")),
                (D("2.194"), D("1.02075576")),
            ),
            sequence=9690930615,
            timestamp=1765201257005,
            checksum=-1197821412,  # as sent (roq truncated the levels: it cannot verify)
        ),
    )
    assert feed(proto, update) == (
        BookDelta(
            **common,
            bids=((D("1.781"), D("14694.07509503")), (D("1.78"), D("12102.991384"))),
            asks=(),
            sequence=9690930617,
            prev_sequence=9690930615,
            timestamp=1765201257205,
            checksum=1923732318,
        ),
    )
    assert proto.events() == []  # prevSeqId continues the snapshot's seqId: no gap


def test_books_2022_without_seq_ids_are_not_gap_checked() -> None:
    proto = started(channels=["book"], symbols=["BTC-USDT"])
    frames = lines("books_btc_usdt_2022_checksum.jsonl")
    got = [msg for frame in frames for msg in feed(proto, frame)]
    assert [type(m) for m in got] == [BookSnapshot] + [BookDelta] * 97
    snapshot = got[0]
    assert isinstance(snapshot, BookSnapshot)
    assert (len(snapshot.bids), len(snapshot.asks)) == (400, 400)
    assert (snapshot.bids[0], snapshot.asks[0]) == (
        (D("30243.4"), D("0.0012029")),
        (D("30243.5"), D("1.44679")),
    )
    assert (snapshot.bids[-1], snapshot.asks[-1]) == (
        (D("29999.7"), D("0.00276686")),
        (D("30650.2"), D("0.00102749")),
    )
    assert (snapshot.sequence, snapshot.timestamp) == (None, 1652459225381)
    first = got[1]
    assert isinstance(first, BookDelta)
    assert first.bids[0] == (D("30237.2"), D("0"))  # size 0 removes the level
    assert first.asks[:2] == ((D("30243.5"), D("1.2112")), (D("30243.6"), D("0.059")))
    assert (first.sequence, first.prev_sequence, first.timestamp) == (None, None, 1652459225453)
    assert proto.events() == []


def test_books_docs_example_and_bbo_tbt() -> None:
    proto = started(channels=["book"], symbols=["BTC-USDT"], raw=["bbo-tbt:BTC-USDT"])
    snapshot, bbo = lines("books_docs_example.jsonl")
    [book] = feed(proto, snapshot)
    assert isinstance(book, BookSnapshot)
    assert (book.symbol, book.sequence, book.timestamp) == ("BTC-USDT", 123456, 1597026383085)
    assert (book.bids[0], book.asks[-1]) == ((D("8476.97"), D("256")), (D("8506.96"), D("100")))
    assert (len(book.bids), len(book.asks)) == (8, 8)
    assert feed(proto, bbo) == (
        ticker(
            symbol="BTC-USDT",
            bid=D("8476.97"),
            bid_size=D("256"),
            ask=D("8476.98"),
            ask_size=D("415"),
            timestamp=1597026383085,
        ),
    )


def test_bbo_tbt_2025_is_a_ticker() -> None:
    proto = started(raw=["bbo-tbt:LTC-USDC"])
    [frame] = lines("bbo_tbt_2025.jsonl")
    assert feed(proto, frame) == (
        ticker(
            symbol="LTC-USDC",
            bid=D("83.8"),
            bid_size=D("11.93317"),
            ask=D("83.81"),
            ask_size=D("11.93175"),
            timestamp=1765201257149,
        ),
    )


def test_books5_is_a_snapshot_per_push() -> None:
    proto = started(raw=["books5:PERP-USDT"])
    [frame] = lines("books5_2022.jsonl")
    [book] = feed(proto, frame)
    assert book == BookSnapshot(
        connection="okx",
        exchange="okx",
        received_at=1234.5,
        symbol="PERP-USDT",
        bids=(
            (D("0.771"), D("1111.147468")),
            (D("0.77"), D("727.91547")),
            (D("0.769"), D("5428.837019")),
            (D("0.768"), D("2720.056497")),
            (D("0.767"), D("2006.682024")),
        ),
        asks=(
            (D("0.773"), D("2.160647")),
            (D("0.774"), D("1348.469769")),
            (D("0.775"), D("1563.669577")),
            (D("0.776"), D("1276.742269")),
            (D("0.777"), D("192")),
        ),
        sequence=None,
        timestamp=1656326389967,
    )


def test_subscribe_frame_matches_the_2022_capture_byte_for_byte() -> None:
    proto = started(
        channels=["ticker", "trades", "book"],
        symbols=["BTC-USD-220527", "UNI-USD-SWAP", "BTC-USDT"],
    )
    assert proto.frames_to_send() == [lines("subscribe_requests_2022.jsonl")[2]]
    proto = started(channels=["book"], symbols=["BTC-USDT"])
    assert proto.frames_to_send() == [lines("control_docs_and_synthetic.jsonl")[0]]


def test_acks_2022_confirm_each_topic_once() -> None:
    proto = started(
        channels=["ticker", "trades", "book"],
        symbols=["BTC-USD-220527", "UNI-USD-SWAP", "BTC-USDT"],
    )
    assert proto.state is AdapterState.SUBSCRIBING
    for frame in lines("subscribe_ack_2022.jsonl"):
        assert feed(proto, frame) == ()
    topics = [
        f"{channel}:{inst}"
        for channel in ("tickers", "trades", "books")
        for inst in ("BTC-USD-220527", "UNI-USD-SWAP", "BTC-USDT")
    ]
    # cryptofeed re-sent growing lists, so OKX acked tickers three times: counted once
    assert proto.events() == [Subscribed(topics=(topic,)) for topic in topics]
    assert proto.subscriptions == dict.fromkeys(topics, "live")
    assert proto.state is AdapterState.LIVE


def test_acks_2025_with_connid_and_raw_topics() -> None:
    proto = started(
        channels=["ticker", "trades", "book"],
        symbols=["BTC-USD"],
        raw=[
            "status",
            "instruments:instType=SPOT",
            "bbo-tbt:BTC-USD",
            "index-tickers:BTC-USD",
            "funding-rate:BTC-USD-SWAP",
        ],
    )
    [request] = proto.frames_to_send()
    assert request == (
        '{"op":"subscribe","args":[{"channel":"tickers","instId":"BTC-USD"},'
        '{"channel":"trades","instId":"BTC-USD"},{"channel":"books","instId":"BTC-USD"},'
        '{"channel":"status"},{"channel":"instruments","instType":"SPOT"},'
        '{"channel":"bbo-tbt","instId":"BTC-USD"},{"channel":"index-tickers","instId":"BTC-USD"},'
        '{"channel":"funding-rate","instId":"BTC-USD-SWAP"}]}'
    )
    for frame in lines("subscribe_ack_2025.jsonl"):
        assert feed(proto, frame) == ()
    assert proto.subscriptions == {
        "tickers:BTC-USD": "live",
        "trades:BTC-USD": "live",
        "books:BTC-USD": "live",
        "status": "live",
        "instruments:instType=SPOT": "live",
        "bbo-tbt:BTC-USD": "live",
        "index-tickers:BTC-USD": "live",
        "funding-rate:BTC-USD-SWAP": "live",
    }
    assert len(proto.events()) == 8
    assert proto.state is AdapterState.LIVE


def test_error_60018_fails_the_topic_its_message_names() -> None:
    proto = started(
        channels=["trades"], symbols=["NEAR-USDT"], raw=["index-tickers:NEAR-USDT-SWAP"]
    )
    api_key, wrong, notice, conn_count = lines("errors_notices_2025.jsonl")
    message = (
        "Wrong URL or channel:index-tickers, instId:NEAR-USDT-SWAP doesn't exist. Please use "
        "the correct URL, channel and parameters referring to API document."
    )
    assert feed(proto, wrong) == ()
    assert proto.events() == [
        SubscriptionFailed(topic="index-tickers:NEAR-USDT-SWAP", code="60018", message=message)
    ]
    assert proto.subscriptions == {
        "trades:NEAR-USDT": "pending",
        "index-tickers:NEAR-USDT-SWAP": f"failed: 60018 {message}",
    }
    assert proto.state is AdapterState.SUBSCRIBING
    assert feed(proto, ack("trades", "NEAR-USDT")) == ()
    assert proto.events() == [Subscribed(topics=("trades:NEAR-USDT",))]
    assert proto.state is AdapterState.LIVE
    # nothing outstanding: an error cannot be tied to a subscription; counted, logged once
    assert feed(proto, api_key) == ()
    assert proto.events() == [
        MalformedFrame(
            kind="unexpected_error",
            detail='OKX error 60032 "API key doesn\'t exist" while no subscription is outstanding',
            sample=api_key,
        )
    ]
    assert feed(proto, notice) == ()
    assert proto.events() == [ReconnectRequested(reason=f"OKX notice 64008: {NOTICE}")]
    assert feed(proto, conn_count) == ()
    assert proto.events() == []  # channel-conn-count is ignored, not malformed


def test_control_docs_unsubscribe_ack_ignored_and_60012_fails_the_whole_request() -> None:
    proto = started(channels=["book"], symbols=["BTC-USDT", "ETH-USDT"])
    _, _, unsubscribed, invalid = lines("control_docs_and_synthetic.jsonl")
    assert feed(proto, unsubscribed) == ()
    assert proto.events() == []
    assert feed(proto, invalid) == ()
    assert proto.events() == [
        SubscriptionFailed(topic="books:BTC-USDT", code="60012", message="Invalid request"),
        SubscriptionFailed(topic="books:ETH-USDT", code="60012", message="Invalid request"),
    ]
    assert proto.state is AdapterState.LIVE  # every subscription is answered


def test_heartbeat_frames_are_the_bare_texts() -> None:
    ping, pong = (
        msgspec.json.decode(line)["payload"] for line in lines("heartbeat_frames_described.jsonl")
    )
    proto = started(channels=["trades"], symbols=["BTC-USDT"])
    proto.frames_to_send()
    proto.tick(25.0)
    assert proto.frames_to_send() == [ping]
    assert proto.receive_frame(pong, 25.5, 1234.5) == ()
    # Neither delivered nor malformed: the answer to our ping, with its round trip.
    assert proto.events() == [ProbeAnswered(rtt=0.5)]


@pytest.mark.parametrize(
    ("frame", "kind", "detail"),
    [
        ("\x00garbage{", "invalid_json", "JSON is malformed: invalid character (byte 0)"),
        ("PONG", "invalid_json", "JSON is malformed: invalid character (byte 0)"),
        ("[1,2]", "invalid_frame", "Expected `object`, got `array`"),
        (
            '{"arg":{"instId":"BTC-USDT"},"data":[]}',
            "invalid_frame",
            "Object missing required field `channel` - at `$.arg`",
        ),
        ("{}", "unknown_frame", "neither data nor event"),
        ('{"data":[]}', "invalid_frame", "data frame without arg"),
        ('{"arg":{"channel":"trades"},"data":[]}', "invalid_data", "trades frame without instId"),
        (
            '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"tradeId":"1",'
            '"px":"abc","sz":"1","side":"buy","ts":"1"}]}',
            "invalid_data",
            "trades: Invalid decimal string - at `$[0].px`",
        ),
        (
            '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"tradeId":"1",'
            '"px":"1","sz":"1","side":"hold","ts":"1"}]}',
            "invalid_data",
            "trades: Invalid enum value 'hold' - at `$[0].side`",
        ),
        (
            '{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"bidPx":"x",'
            '"bidSz":"1","askPx":"1","askSz":"1","ts":"1"}]}',
            "invalid_data",
            "tickers: a price is not a number",
        ),
        (
            '{"arg":{"channel":"books","instId":"BTC-USDT"},"data":[{"asks":[],"bids":[],'
            '"ts":"1"}]}',
            "invalid_data",
            "books frame with action None (expected snapshot or update)",
        ),
        (
            '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":'
            '[{"asks":[["1"]],"bids":[],"ts":"1"}]}',
            "invalid_data",
            "books: Expected `array` of at least length 2, got 1 - at `$[0].asks[0]`",
        ),
        ('{"event":"subscribe"}', "invalid_frame", "subscribe ack without arg"),
    ],
)
def test_garbage_is_malformed_and_nothing_else(frame: str, kind: str, detail: str) -> None:
    proto = started(channels=["trades", "ticker", "book"], symbols=["BTC-USDT"])
    proto.frames_to_send()
    assert feed(proto, frame) == ()
    assert proto.events() == [MalformedFrame(kind=kind, detail=detail, sample=frame)]
    assert proto.frames_to_send() == []
    assert proto.state is AdapterState.SUBSCRIBING


# -- 2. the adapter alone -------------------------------------------------------------
def test_state_machine_and_resubscription_each_session() -> None:
    proto = OkxProtocol(make_spec(channels=["trades"], symbols=["BTC-USDT", "ETH-USDT-PERP"]))
    request = (
        '{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"},'
        '{"channel":"trades","instId":"ETH-USDT-SWAP"}]}'
    )
    assert proto.state is AdapterState.IDLE
    assert proto.deadline() == math.inf
    proto.start_session(0.0)
    assert proto.state is AdapterState.SUBSCRIBING
    assert proto.frames_to_send() == [request]
    assert proto.subscriptions == {"trades:BTC-USDT": "pending", "trades:ETH-USDT-SWAP": "pending"}
    with pytest.raises(
        LocalProtocolError,
        match=r"^start_session is not allowed while OkxProtocol for connection 'okx' is "
        r"SUBSCRIBING; end the session first$",
    ):
        proto.start_session(1.0)
    feed(proto, ack("trades", "BTC-USDT"))
    assert proto.state is AdapterState.SUBSCRIBING
    feed(proto, ack("trades", "ETH-USDT-SWAP"))
    assert proto.state is AdapterState.LIVE
    proto.end_session()
    assert proto.state is AdapterState.IDLE
    assert proto.deadline() == math.inf  # no heartbeat outside a session
    proto.end_session()  # idempotent
    proto.start_session(100.0)
    assert proto.frames_to_send() == [request]
    assert proto.subscriptions == {"trades:BTC-USDT": "pending", "trades:ETH-USDT-SWAP": "pending"}
    assert proto.deadline() == 125.0


def test_same_instrument_named_twice_is_subscribed_once() -> None:
    proto = started(
        channels=["trades", "trades"],
        symbols=["BTC-USDT-PERP", "BTC-USDT-SWAP"],
        raw=["trades:BTC-USDT-SWAP"],
    )
    assert proto.frames_to_send() == [
        '{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT-SWAP"}]}'
    ]


def test_heartbeat_ping_after_silence_then_miss() -> None:
    proto = started(channels=["trades"], symbols=["BTC-USDT"])
    proto.frames_to_send()
    assert proto.deadline() == 25.0
    proto.tick(24.9)
    assert proto.frames_to_send() == []
    feed(proto, ack("trades", "BTC-USDT"), now=20.0)  # any frame restarts the timer
    assert proto.deadline() == 45.0
    proto.tick(45.0)
    assert proto.frames_to_send() == ["ping"]
    assert proto.deadline() == 70.0  # pong (or any frame) is due within another 25 s
    proto.tick(60.0)
    assert (proto.frames_to_send(), proto.events()) == (
        [],
        [Subscribed(topics=("trades:BTC-USDT",))],
    )
    assert proto.receive_frame("pong", 61.0, 0.0) == ()
    assert proto.deadline() == 86.0
    proto.tick(86.0)
    assert proto.frames_to_send() == ["ping"]
    proto.tick(111.0)
    assert proto.events() == [
        ProbeAnswered(rtt=16.0),  # the pong at 61 to the ping at 45
        HeartbeatMissed(detail="no frame within 25 s of our ping (OKX answers ping with pong)"),
    ]
    assert proto.frames_to_send() == []
    assert proto.deadline() == math.inf  # reported once; the actor ends the session


def test_heartbeat_follows_config() -> None:
    proto = started(channels=["trades"], symbols=["BTC-USDT"], heartbeat=10)
    proto.frames_to_send()
    proto.tick(10.0)
    assert proto.frames_to_send() == ["ping"]
    proto.tick(20.0)
    assert proto.events() == [
        HeartbeatMissed(detail="no frame within 10 s of our ping (OKX answers ping with pong)")
    ]


def test_requests_are_packed_and_paced_by_the_request_budget() -> None:
    symbols = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "DOGE-USDT"]
    proto = started(TinyOkx, channels=["trades", "book"], symbols=symbols)
    topics = [f"{c}:{s}" for c in ("trades", "books") for s in symbols]

    def request(*pairs: tuple[str, str]) -> str:
        args = ",".join(f'{{"channel":"{c}","instId":"{s}"}}' for c, s in pairs)
        return f'{{"op":"subscribe","args":[{args}]}}'

    # 10 args, two per 120-byte request: 5 requests, 2 per 10 s window
    assert proto.frames_to_send() == [
        request(("trades", "BTC-USDT"), ("trades", "ETH-USDT")),
        request(("trades", "SOL-USDT"), ("trades", "XRP-USDT")),
    ]
    assert proto.subscriptions == dict.fromkeys(topics, "pending")  # all expected at once
    assert proto.deadline() == 10.0
    proto.tick(9.999)
    assert proto.frames_to_send() == []
    proto.tick(10.0)
    assert proto.frames_to_send() == [
        request(("trades", "DOGE-USDT"), ("books", "BTC-USDT")),
        request(("books", "ETH-USDT"), ("books", "SOL-USDT")),
    ]
    assert proto.deadline() == 20.0
    proto.tick(20.0)
    assert proto.frames_to_send() == [request(("books", "XRP-USDT"), ("books", "DOGE-USDT"))]
    assert proto.deadline() == 25.0  # only the heartbeat is left


def test_default_limits_split_only_past_64_kb() -> None:
    symbols = [f"C{i:04d}-USDT" for i in range(600)]
    proto = started(channels=["trades", "ticker", "book"], symbols=symbols)
    frames = [f for f in proto.frames_to_send() if isinstance(f, str)]
    assert [len(f.encode()) for f in frames] == [65499, 11955]  # both sent at once
    args = [arg for f in frames for arg in msgspec.json.decode(f)["args"]]
    assert len(args) == 1800
    assert args[0] == {"channel": "trades", "instId": "C0000-USDT"}
    assert args[-1] == {"channel": "books", "instId": "C0599-USDT"}
    # the first frame is full: the next arg would not have fitted
    next_arg = msgspec.json.encode(args[len(msgspec.json.decode(frames[0])["args"])])
    assert len(frames[0].encode()) + 1 + len(next_arg) > 65536


def test_unattributed_error_fails_the_unacked_args_once_all_are_answered() -> None:
    proto = started(channels=["trades"], symbols=["BTC-USDT", "ETH-USDT", "BTC-USDT-PERP"])
    proto.frames_to_send()
    assert feed(proto, '{"event":"error","code":"60018","msg":"boom","connId":"1"}') == ()
    assert proto.events() == []  # 1 of 3 args answered: which one failed is unknown yet
    feed(proto, ack("trades", "BTC-USDT"))
    assert proto.events() == [Subscribed(topics=("trades:BTC-USDT",))]
    feed(proto, ack("trades", "BTC-USDT-SWAP"))
    assert proto.events() == [
        Subscribed(topics=("trades:BTC-USDT-SWAP",)),
        SubscriptionFailed(topic="trades:ETH-USDT", code="60018", message="boom"),
    ]
    assert proto.state is AdapterState.LIVE


def test_an_answer_to_a_later_request_settles_the_earlier_one() -> None:
    proto = started(TinyOkx, channels=["trades"], symbols=["BTC-USDT", "ETH-USDT", "SOL-USDT"])
    assert len(proto.frames_to_send()) == 2
    feed(proto, '{"event":"error","code":"60018","msg":"boom"}')  # for request 0
    assert proto.events() == []
    feed(proto, ack("trades", "SOL-USDT"))  # request 1: request 0 is done
    assert proto.events() == [
        SubscriptionFailed(topic="trades:BTC-USDT", code="60018", message="boom"),
        SubscriptionFailed(topic="trades:ETH-USDT", code="60018", message="boom"),
        Subscribed(topics=("trades:SOL-USDT",)),
    ]
    assert proto.state is AdapterState.LIVE


def test_error_code_may_be_a_number_and_unknown_acks_are_ignored() -> None:
    proto = started(channels=["trades"], symbols=["BTC-USDT"])
    feed(proto, ack("trades", "ETH-USDT"))  # never asked for
    assert proto.events() == []
    feed(proto, '{"event":"error","code":60014,"msg":"Requests too frequent."}')
    assert proto.events() == [
        SubscriptionFailed(topic="trades:BTC-USDT", code="60014", message="Requests too frequent.")
    ]


def test_sequence_gap_is_reported_once_and_tracking_goes_on() -> None:
    proto = started(channels=["book"], symbols=["BTC-USDT-PERP"])

    def book(action: str, seq: int, prev: int) -> str:
        return (
            '{"arg":{"channel":"books","instId":"BTC-USDT-SWAP"},"action":"' + action + '",'
            '"data":[{"asks":[],"bids":[["1.5","2","0","1"]],"ts":"7","checksum":0,'
            f'"seqId":{seq},"prevSeqId":{prev}}}]}}'
        )

    feed(proto, book("update", 8, 6))  # before any snapshot: nothing to check against
    feed(proto, book("snapshot", 10, -1))
    [delta] = feed(proto, book("update", 12, 10))
    assert isinstance(delta, BookDelta)
    assert (delta.symbol, delta.sequence, delta.prev_sequence) == ("BTC-USDT-PERP", 12, 10)
    assert proto.events() == []
    feed(proto, book("update", 16, 14))  # 14 never arrived
    assert proto.events() == [SequenceGap(symbol="BTC-USDT-PERP", expected=12, received=14)]
    feed(proto, book("update", 16, 16))  # idle book: seqId == prevSeqId
    feed(proto, book("update", 3, 16))  # sequence reset after maintenance: lower seqId
    feed(proto, book("update", 5, 3))
    assert proto.events() == []
    feed(proto, book("snapshot", 100, -1))  # a new snapshot restarts the chain
    feed(proto, book("update", 102, 100))
    assert proto.events() == []
    proto.end_session()
    proto.start_session(0.0)
    feed(proto, book("update", 200, 198))  # a new session forgets the old chain
    assert proto.events() == []


def test_other_channels_are_raw_messages_and_empty_quotes_are_skipped() -> None:
    proto = started(
        channels=["ticker"], symbols=["BTC-USD-250627-100000-C"], raw=["mark-price:BTC-USDT-SWAP"]
    )
    frame = (
        '{"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":[{"instType":"SWAP",'
        '"instId":"BTC-USDT-SWAP","markPx":"91467.1","ts":"1765201257145"}]}'
    )
    assert feed(proto, frame) == (
        RawMessage(
            connection="okx",
            exchange="okx",
            received_at=1234.5,
            data={
                "arg": {"channel": "mark-price", "instId": "BTC-USDT-SWAP"},
                "data": [
                    {
                        "instType": "SWAP",
                        "instId": "BTC-USDT-SWAP",
                        "markPx": "91467.1",
                        "ts": "1765201257145",
                    }
                ],
            },
        ),
    )
    no_bid = (
        '{"arg":{"channel":"tickers","instId":"BTC-USD-250627-100000-C"},"data":[{"bidPx":"",'
        '"bidSz":"","askPx":"0.05","askSz":"10","ts":"1765201257145"}]}'
    )
    assert feed(proto, no_bid) == ()
    assert proto.events() == []


def test_adapter_imports_no_io() -> None:
    import actors.exchanges.okx as module

    files = sorted(Path(module.__file__).parent.glob("*.py"))
    assert len(files) >= 4  # __init__, wire, config, protocol
    for path in files:
        source = path.read_text()
        for banned in ("import trio", "import json", "import time", "import socket"):
            assert banned not in source, path


@pytest.mark.parametrize(
    ("values", "problems"),
    [
        (
            {
                "channels": ["trades", "ticker", "book"],
                "symbols": [
                    "BTC-USDT",
                    "BTC-USDT-PERP",
                    "BTC-USD-SWAP",
                    "BTC-USD-250627",
                    "BTC-USD-250627-100000-C",
                ],
                "heartbeat": 29.5,
            },
            [],
        ),
        ({"raw": ["status"]}, []),
        (
            {"channels": ["trades", "depth"], "symbols": ["BTC-USDT"]},
            [("channels", "unknown channel 'depth' (expected trades, ticker or book)")],
        ),
        (
            {"channels": ["trades"], "symbols": ["btc-usdt", "BTCUSDT"]},
            [
                (
                    "symbols",
                    f"{name!r} is not an OKX instrument (expected BASE-QUOTE or BASE-QUOTE-PERP "
                    "such as BTC-USDT or BTC-USDT-PERP, or an OKX instId such as BTC-USDT-SWAP "
                    "or BTC-USD-250627)",
                )
                for name in ("btc-usdt", "BTCUSDT")
            ],
        ),
        (
            {"raw": ["books5:", "x:foo=1", ":BTC-USDT"]},
            [
                (
                    "raw",
                    f"{text!r} is not an OKX topic (expected channel, channel:instId or "
                    "channel:key=value,... with keys instId, instType, instFamily, ccy; e.g. "
                    "'books5:BTC-USDT' or 'instruments:instType=SPOT')",
                )
                for text in ("books5:", "x:foo=1", ":BTC-USDT")
            ],
        ),
        (
            {"channels": ["trades"], "symbols": ["BTC-USDT"], "heartbeat": 30},
            [
                (
                    "heartbeat",
                    "30 s is too long (expected less than 30 s: OKX closes a connection that "
                    "was sent nothing for 30 s)",
                )
            ],
        ),
        (
            {"channels": ["trades"]},
            [("symbols", "missing (expected at least one symbol for the channels, e.g. BTC-USDT)")],
        ),
        (
            {"symbols": ["BTC-USDT"]},
            [("channels", "missing (expected trades, ticker and/or book for the symbols)")],
        ),
        (
            {},
            [
                (
                    "channels",
                    "nothing to subscribe (expected channels and symbols, or raw topics: OKX "
                    "closes a connection without subscriptions after 30 s)",
                )
            ],
        ),
        (
            {"raw": ["status"], "subscribe": ["{}"]},
            [
                (
                    "subscribe",
                    "not used by the okx adapter (list channels and symbols, or native topics in "
                    "raw such as 'books5:BTC-USDT')",
                )
            ],
        ),
    ],
)
def test_check(values: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    assert OkxProtocol.check(make_spec(**values)) == problems


def test_check_rejects_more_requests_than_one_connection_may_send() -> None:
    fits = make_spec(channels=["trades"], symbols=["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT"])
    assert TinyOkx.check(fits) == []  # 2 requests
    too_many = make_spec(
        channels=["trades"], symbols=["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "ADA-USDT"]
    )
    assert TinyOkx.check(too_many) == [
        (
            "symbols",
            "5 subscriptions need 3 subscribe requests (expected at most 2: OKX allows 2 per "
            "10 s per connection; split them over several connections)",
        )
    ]
    long_topic = make_spec(raw=["status:instType=" + "X" * 200])
    assert TinyOkx.check(long_topic)[0] == (
        "raw",
        "'status:instType=" + "X" * 200 + "' needs a 262 byte request on its own (expected at "
        "most 120 bytes per OKX subscribe request)",
    )


def test_check_runs_when_the_config_is_loaded() -> None:
    with pytest.raises(ConfigError) as raised:
        okx_config(channels=["trades"], symbols=["BTC-USDT"], heartbeat=45)
    assert raised.value.problems == [
        "<test>: connections.okx.heartbeat: 45 s is too long (expected less than 30 s: OKX "
        "closes a connection that was sent nothing for 30 s)"
    ]
