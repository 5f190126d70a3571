"""OKX v5 public: the sans-IO adapter, its fake server, and both end to end.

Three parts: (1) recorded frames from ``tests/data/okx/`` through the adapter, with every
value pinned; (2) the adapter alone, without sockets or clocks (state machine, pacing,
heartbeat, ack bookkeeping, ``check()``); (3) the supervisor against
:class:`FakeOkx` over in-memory streams on MockClock, with exact virtual times.

FakeOkx data (``interval`` 1 s): for every subscribed topic one frame per second after
the subscription; ``books`` also sends its snapshot right after the ack. Trade ``n`` of a
topic in session ``k`` has tradeId ``1_000_000 * (k + 1) + n`` and price ``{100 + n}.5``;
a book starts at seqId 1000 and steps by 2.
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest
import trio
import trio.testing
import trio_websocket

from actors._errors import LocalProtocolError
from actors._spec import ConnectionSpec
from actors.connection import DEFAULT_HANDOVER_WAIT
from actors.exchanges import ADAPTERS
from actors.exchanges.messages import (
    BookDelta,
    BookSnapshot,
    HeartbeatMissed,
    MalformedFrame,
    Message,
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
from supervisor import Config, ConfigError, config_from_dict, open_supervisor
from supervisor.testing import FakeExchange, open_fake_exchange
from supervisor.testing.fakes.okx import EPOCH_MS, FakeOkx

DATA = Path(__file__).parent / "data" / "okx"
URL = "wss://ws.okx.com:8443/ws/v5/public"
D = Decimal
NOTICE = "The connection will soon be closed for a service upgrade. Please reconnect."
WRONG_TRADES_NOPE = (
    "Wrong URL or channel:trades, instId:NOPE-USDT doesn't exist. Please use the correct "
    "URL, channel and parameters referring to API document."
)


def lines(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def make_spec(**values: Any) -> ConnectionSpec:
    return msgspec.convert({"name": "okx", "exchange": "okx", **values}, ConnectionSpec)


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


class TinyOkx(OkxProtocol):
    """OKX with small limits: two ~45-byte args per request, two requests per 10 s."""

    max_request_bytes: ClassVar[int] = 120
    requests_per_window: ClassVar[int] = 2
    request_window: ClassVar[float] = 10.0


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
    assert proto.events() == []  # neither delivered nor malformed


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
        HeartbeatMissed(detail="no frame within 25 s of our ping (OKX answers ping with pong)")
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

    source = Path(module.__file__).read_text()
    for banned in ("import trio", "import json", "import time", "import socket"):
        assert banned not in source


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


# -- 3. end to end --------------------------------------------------------------------


def okx_config(**connection: Any) -> Config:
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
            "connections": {"okx": {"exchange": "okx", **connection}},
        },
        source="<test>",
    )


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


def bare(msg: Message) -> Message:
    """The message without its wall-clock stamp."""
    assert msg.received_at > 0
    return msgspec.structs.replace(msg, received_at=0.0)


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

    def snapshot(symbol: str) -> BookSnapshot:
        return BookSnapshot(
            **common,
            symbol=symbol,
            bids=((D("100.4"), D("1")), (D("100.3"), D("4"))),
            asks=((D("100.6"), D("2")), (D("100.7"), D("3"))),
            sequence=1000,
            timestamp=EPOCH_MS,
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
        return BookDelta(
            **common,
            symbol=symbol,
            bids=((D("100.4"), D("2")),),
            asks=(),
            sequence=1002,
            prev_sequence=1000,
            timestamp=EPOCH_MS + 1000,
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
                await trio.sleep_until(190.0)  # 7 heartbeat periods of silence
                stats = (await sup.stats()).connections[0]
    # the ack at 0 was the last data; ping at 25, pong, ping at 50, ... ping at 175
    assert fake.sessions[0].received == [subscribe_frame(("trades", "BTC-USDT"))] + ["ping"] * 7
    assert okx.closes == []
    assert len(fake.sessions) == 1
    assert (stats.connects, stats.restarts, stats.frames) == (1, 0, 8)  # ack + 7 pongs


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
    *requests, ping = fake.sessions[0].received
    assert [len(r.encode()) for r in requests if isinstance(r, str)] == [65499, 11955]
    assert ping == "ping"  # at 25: no data flows (interval inf), only the acks at 0
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
        config = okx_config(channels=["book"], symbols=["BTC-USDT"])
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


# -- the fake on its own --------------------------------------------------------------


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
