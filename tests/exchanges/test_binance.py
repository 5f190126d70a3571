"""Binance spot and USD-M: recorded frames through the sans-IO adapter, synchronously.

Two layers:

1. Every fixture frame in ``tests/data/binance`` (copied byte-for-byte from
   ``shared/fixtures/binance``) fed to the adapter, with the exact message or event.
2. The adapter alone: frames in, events and frames out, pacing via ``deadline()`` /
   ``tick()``, ``check()`` messages.

No sockets and no clocks: time is passed as numbers. The fake's own rules are tested in
``test_binance_fake.py``, the supervisor against the fake in
``test_binance_end_to_end.py``.
"""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from actors._errors import LocalProtocolError
from actors._spec import ConnectionSpec
from actors.exchanges.binance import BinanceProtocol, BinanceUsdmProtocol
from actors.exchanges.messages import (
    BookDelta,
    BookSnapshot,
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
from actors.exchanges.sdk.protocol import AdapterState
from exchanges.helpers import connection_spec, deltas, fixture_lines, levels, state
from supervisor import ConfigError, config_from_dict

#: Where test connections point; the memory fake serves any URL.
URL = "ws://binance.fake.invalid/stream"
#: The ``received_at`` the synchronous tests pass to the adapter.
AT = 1_800_000_000.25
D = Decimal
lines = fixture_lines("binance")


def make_spec(exchange: str = "binance", **keys: Any) -> ConnectionSpec:
    return connection_spec("b", exchange, **keys)


def request_ids(frames: list[str | bytes]) -> list[int]:
    return [msgspec.json.decode(frame)["id"] for frame in frames]


def params(frame: str | bytes) -> list[str]:
    value: list[str] = msgspec.json.decode(frame)["params"]
    return value


def live(cls: type[BinanceProtocol] = BinanceProtocol, **keys: Any) -> BinanceProtocol:
    """An adapter whose first session has every subscription acknowledged."""
    proto = cls(make_spec(cls.exchange, **keys))
    proto.start_session(0.0)
    proto.tick(math.inf)
    for request_id in request_ids(proto.frames_to_send()):
        assert proto.receive_frame(f'{{"result":null,"id":{request_id}}}', 0.0, AT) == ()
    proto.events()
    assert proto.state is AdapterState.LIVE
    return proto


def feed(proto: BinanceProtocol, frame: str | bytes) -> tuple[tuple[Message, ...], list[Any]]:
    batch = proto.receive_frame(frame, 1.0, AT)
    return batch, proto.events()


def trade(symbol: str, **fields: Any) -> Trade:
    return Trade(connection="b", exchange="binance", received_at=AT, symbol=symbol, **fields)


def ticker(symbol: str, exchange: str = "binance", **fields: Any) -> Ticker:
    return Ticker(connection="b", exchange=exchange, received_at=AT, symbol=symbol, **fields)


# == 1. recorded frames ====================================================================
def test_spot_trade_frames() -> None:
    combined, documented = lines("spot_trade.jsonl")
    proto = live(channels=["trades"], symbols=["BTC-USDT", "BNBBTC"])
    assert feed(proto, combined) == (
        (
            trade(
                "BTC-USDT",
                side="sell",  # m: the buyer was the maker, so the taker sold
                price=D("83034.29000000"),
                amount=D("0.00062000"),
                trade_id="6720857582",
                timestamp=1790649901913,
            ),
        ),
        [],
    )
    # The documented example has no envelope (a /ws connection): routed by e and s.
    assert feed(proto, documented) == (
        (
            trade(
                "BNB-BTC",
                side="sell",
                price=D("0.001"),
                amount=D("100"),
                trade_id="12345",
                timestamp=1672515782136,
            ),
        ),
        [],
    )


def test_spot_agg_trade_frames_are_trades_with_the_aggregate_id() -> None:
    nkn, lrc = lines("spot_aggTrade_combined.jsonl")
    proto = live(raw=["nknusdt@aggTrade", "lrcbtc@aggTrade"])
    assert feed(proto, nkn) == (
        (
            trade(
                "NKN-USDT",
                side="buy",
                price=D("0.35280000"),
                amount=D("58.00000000"),
                trade_id="15683430",
                timestamp=1633998523963,
            ),
        ),
        [],
    )
    assert feed(proto, lrc) == (
        (
            trade(
                "LRC-BTC",
                side="buy",
                price=D("0.00000638"),
                amount=D("177.00000000"),
                trade_id="9213679",
                timestamp=1633998534486,
            ),
        ),
        [],
    )


def test_spot_book_ticker_frames_have_no_timestamp() -> None:
    frames = lines("spot_bookTicker_combined.jsonl")
    proto = live(channels=["ticker"], symbols=["NKN-USDT", "LRCBTC", "BLZ-ETH"])
    out = [feed(proto, frame) for frame in frames]
    assert all(events == [] and len(batch) == 1 for batch, events in out)
    tickers = [batch[0] for batch, _ in out]
    assert out[0][0] == (
        ticker(
            "NKN-USDT",
            bid=D("0.35210000"),
            bid_size=D("672.00000000"),
            ask=D("0.35260000"),
            ask_size=D("3199.00000000"),
            timestamp=None,
        ),
    )
    assert tickers[-1] == ticker(
        "NKN-USDT",
        bid=D("0.35270000"),
        bid_size=D("9602.00000000"),
        ask=D("0.35310000"),
        ask_size=D("152.00000000"),
        timestamp=None,
    )
    counts: dict[str, int] = {}
    for message in tickers:
        assert isinstance(message, Ticker)
        assert message.timestamp is None
        counts[message.symbol] = counts.get(message.symbol, 0) + 1
    assert counts == {"NKN-USDT": 74, "LRC-BTC": 9, "BLZ-ETH": 1}


def test_spot_depth_diff_chain_is_gap_free() -> None:
    frames = lines("spot_depth_diff_nknusdt_combined.jsonl")
    proto = live(channels=["book"], symbols=["NKN-USDT"])
    deltas = []
    for frame in frames:
        batch, events = feed(proto, frame)
        assert events == []
        (delta,) = batch
        assert isinstance(delta, BookDelta)
        deltas.append(delta)
    assert len(deltas) == 150
    assert deltas[0] == BookDelta(
        connection="b",
        exchange="binance",
        received_at=AT,
        symbol="NKN-USDT",
        bids=levels(
            ("0.35130000", "6195.00000000"),
            ("0.34750000", "5548.00000000"),
            ("0.34640000", "6222.00000000"),
        ),
        asks=(),
        sequence=499869752,
        prev_sequence=499869749,  # U - 1
        timestamp=1633998512068,
    )
    assert deltas[-1] == BookDelta(
        connection="b",
        exchange="binance",
        received_at=AT,
        symbol="NKN-USDT",
        bids=(),
        asks=levels(("0.35360000", "16324.00000000")),
        sequence=499870179,
        prev_sequence=499870178,
        timestamp=1633998542082,
    )
    assert all(b.prev_sequence == a.sequence for a, b in itertools.pairwise(deltas))
    # A removed level keeps its exact zero.
    assert deltas[6].asks[-1] == (D("0.35340000"), D("0.00000000"))


def test_spot_depth_diff_with_a_lost_frame_is_one_gap() -> None:
    frames = lines("spot_depth_diff_nknusdt_combined.jsonl")
    proto = live(channels=["book"], symbols=["NKN-USDT"])
    for frame in frames[:5]:
        feed(proto, frame)
    # frames[5] ([499869761, 499869764]) is lost.
    batch, events = feed(proto, frames[6])
    assert events == [SequenceGap(symbol="NKN-USDT", expected=499869760, received=499869764)]
    assert [(m.sequence, m.prev_sequence) for m in batch if isinstance(m, BookDelta)] == [
        (499869767, 499869764)
    ]
    # The chain goes on from the frame after the gap.
    assert feed(proto, frames[7])[1] == []


def test_spot_partial_depth_and_ticker_documented_frames() -> None:
    partial, book_ticker, day_ticker = lines("spot_partial_depth_and_ticker_docs.jsonl")
    proto = live(
        url="wss://stream.binance.com:9443/ws",
        channels=["ticker"],
        symbols=["BNBUSDT"],
        raw=["bnbbtc@depth5", "bnbbtc@ticker"],
    )
    # Without envelope a partial book carries no symbol: it cannot be attributed.
    assert feed(proto, partial) == (
        (),
        [
            MalformedFrame(
                kind="unknown_frame",
                detail="not a stream frame, ack, error or notice",
                sample=partial,
            )
        ],
    )
    assert feed(proto, f'{{"stream":"bnbbtc@depth5","data":{partial}}}') == (
        (
            BookSnapshot(
                connection="b",
                exchange="binance",
                received_at=AT,
                symbol="BNB-BTC",
                bids=levels(("0.0024", "10")),
                asks=levels(("0.0026", "100")),
                sequence=160,
                timestamp=None,
            ),
        ),
        [],
    )
    assert feed(proto, book_ticker) == (
        (
            ticker(
                "BNB-USDT",
                bid=D("25.35190000"),
                bid_size=D("31.21000000"),
                ask=D("25.36520000"),
                ask_size=D("40.66000000"),
                timestamp=None,
            ),
        ),
        [],
    )
    # 24hrTicker is not a channel: a raw stream's frame, delivered as JSON.
    batch, events = feed(proto, day_ticker)
    assert events == []
    assert batch == (
        RawMessage(
            connection="b",
            exchange="binance",
            received_at=AT,
            data=msgspec.json.decode(day_ticker),
        ),
    )


def test_server_shutdown_frames_request_a_reconnect() -> None:
    proto = live(channels=["trades"], symbols=["BTC-USDT"])
    for frame in lines("spot_server_shutdown_docs.jsonl"):
        assert feed(proto, frame) == (
            (),
            [ReconnectRequested(reason="Binance serverShutdown notice (E=1770123456789)")],
        )


def _streams(count: int) -> dict[str, Any]:
    """Config keys for ``count`` trade streams (SUBSCRIBE ids 1, 2, ... of 200 each)."""
    return {"channels": ["trades"], "symbols": [f"S{i}-USDT" for i in range(count)]}


def test_error_frames_refuse_or_bisect_their_request() -> None:
    invalid, missing, too_many, bad_id, unknown, bad_type, bad_json = lines("spot_ws_errors.jsonl")
    proto = BinanceProtocol(make_spec(**_streams(401)))  # requests 1 (200), 2 (200), 3 (1)
    proto.start_session(0.0)
    proto.tick(1.0)
    assert request_ids(proto.frames_to_send()) == [1, 2, 3]

    # Code 2 on a 200-stream request: split in two to find the invalid name.
    assert feed(proto, invalid) == ((), [])
    assert proto.deadline() == 1.5
    proto.tick(2.0)
    split = proto.frames_to_send()
    assert request_ids(split) == [4, 5]
    assert params(split[0]) == [f"s{i}usdt@trade" for i in range(200, 300)]
    assert params(split[1]) == [f"s{i}usdt@trade" for i in range(300, 400)]

    # A lone stream is refused with the code as text.
    assert feed(proto, missing) == (
        (),
        [
            SubscriptionFailed(
                topic="s400usdt@trade",
                code="2",
                message="Invalid request: missing field `method` at line 4 column 1",
            )
        ],
    )
    # Other codes refuse the whole request.
    _, events = feed(proto, too_many)
    assert events == [
        SubscriptionFailed(topic=f"s{i}usdt@trade", code="4", message="Too many subscriptions")
        for i in range(200)
    ]
    assert proto.subscriptions["s0usdt@trade"] == "failed: 4 Too many subscriptions"
    # Request 1 is settled: a second answer cannot be attributed.
    assert feed(proto, bad_id) == (
        (),
        [
            MalformedFrame(
                kind="unknown_request",
                detail="error 2 'Invalid request: request ID must be an unsigned integer' "
                "for request id 1",
                sample=bad_id,
            )
        ],
    )
    # The documented bare form {"code","msg","id"} is understood too.
    _, events = feed(proto, unknown)
    assert events[0] == SubscriptionFailed(
        topic="s300usdt@trade", code="0", message="Unknown property"
    )
    assert len(events) == 100
    for frame, code, msg in (
        (bad_type, 1, "Invalid value type: expected Boolean"),
        (bad_json, 3, "Invalid JSON: expected value at line 1 column 1"),
    ):
        assert feed(proto, frame) == (
            (),
            [
                MalformedFrame(
                    kind="unknown_request",
                    detail=f"error {code} {msg!r} for request id None",
                    sample=frame,
                )
            ],
        )
    assert proto.state is AdapterState.SUBSCRIBING  # request 4 is still outstanding


def test_documented_acks() -> None:
    responses = lines("spot_control_responses_docs.jsonl")
    proto = BinanceProtocol(make_spec(raw=["btcusdt@aggTrade", "btcusdt@depth"]))
    proto.start_session(0.0)
    proto.frames_to_send()
    assert feed(proto, responses[0]) == (
        (),
        [Subscribed(topics=("btcusdt@aggTrade", "btcusdt@depth"))],
    )
    assert proto.state is AdapterState.LIVE
    assert proto.subscriptions == {"btcusdt@aggTrade": "live", "btcusdt@depth": "live"}
    for frame in responses[1:]:
        request_id = msgspec.json.decode(frame)["id"]
        assert feed(proto, frame) == (
            (),
            [
                MalformedFrame(
                    kind="unknown_request",
                    detail=f"ack for request id {request_id}",
                    sample=frame,
                )
            ],
        )


def test_subscribe_frame_is_the_documented_request() -> None:
    documented = lines("spot_control_requests_docs.jsonl")[0]
    proto = BinanceProtocol(make_spec(raw=["btcusdt@aggTrade", "btcusdt@depth"]))
    proto.start_session(0.0)
    assert proto.frames_to_send() == [documented]


def test_usdm_2026_frames() -> None:
    book_ticker, agg_trade, depth20, trade_frame = lines("usdm_2026_combined.jsonl")
    proto = live(
        BinanceUsdmProtocol,
        channels=["trades", "ticker"],
        symbols=["BTC-USDT-PERP"],
        raw=["btcusdt@aggTrade", "btcusdt@depth20@100ms"],
        url="wss://fstream.binance.com/stream",
    )

    def usdm(message: type[Any], **fields: Any) -> Any:
        return message(
            connection="b",
            exchange="binance_usdm",
            received_at=AT,
            symbol="BTC-USDT-PERP",
            **fields,
        )

    assert feed(proto, book_ticker) == (
        (
            usdm(
                Ticker,
                bid=D("83091.60"),
                bid_size=D("4.215"),
                ask=D("83091.70"),
                ask_size=D("3.763"),
                timestamp=1791382994657,  # T, the transaction time
            ),
        ),
        [],
    )
    assert feed(proto, agg_trade) == (
        (
            usdm(
                Trade,
                side="buy",
                price=D("83091.70"),
                amount=D("0.022"),
                trade_id="3477868433",
                timestamp=1791382992338,
            ),
        ),
        [],
    )
    assert feed(proto, depth20) == (
        (
            usdm(
                BookSnapshot,
                bids=levels(("83091.60", "4.215"), ("83091.50", "0.200"), ("83091.40", "0.002")),
                asks=levels(("83091.70", "3.768"), ("83091.80", "0.002"), ("83092.00", "0.002")),
                sequence=11757092625654,
                timestamp=1791382994613,
            ),
        ),
        [],
    )
    assert feed(proto, trade_frame) == (
        (
            usdm(
                Trade,
                side="buy",
                price=D("63113.20"),
                amount=D("0.001"),
                trade_id="7947325360",
                timestamp=1785685177439,
            ),
        ),
        [],
    )


def test_usdm_2021_frames() -> None:
    frames = lines("usdm_bookTicker_aggTrade_2021_combined.jsonl")
    proto = live(
        BinanceUsdmProtocol,
        channels=["ticker"],
        symbols=["SUSHIUSDT"],
        raw=["sushiusdt@aggTrade"],
        url="wss://fstream.binance.com/stream",
    )
    messages: list[Message] = []
    for frame in frames:
        batch, events = feed(proto, frame)
        assert events == []
        messages.extend(batch)
    assert len(messages) == 60
    assert messages[0] == ticker(
        "SUSHI-USDT-PERP",
        exchange="binance_usdm",
        bid=D("7.6110"),
        bid_size=D("2"),
        ask=D("7.6120"),
        ask_size=D("297"),
        timestamp=1626992741012,
    )
    trades = [m for m in messages if isinstance(m, Trade)]
    assert len(trades) == 5
    assert trades[0] == Trade(
        connection="b",
        exchange="binance_usdm",
        received_at=AT,
        symbol="SUSHI-USDT-PERP",
        side="buy",
        price=D("7.6120"),
        amount=D("297"),
        trade_id="87353230",
        timestamp=1626992744108,
    )
    assert trades[1].side == "sell"


@pytest.mark.parametrize(
    ("frame", "kind", "detail"),
    [
        ("\x00garbage{", "invalid_json", "JSON is malformed: invalid character (byte 0)"),
        ("", "invalid_json", "Input data was truncated"),
        ("[1,2]", "unexpected_shape", "Expected `object`, got `array`"),
        ("null", "unexpected_shape", "Expected `object`, got `null`"),
        ('{"hello":"world"}', "unknown_frame", "not a stream frame, ack, error or notice"),
        (
            '{"stream":"btcusdt@trade","data":{"e":"trade","t":1}}',
            "unexpected_shape",
            "Object missing required field `p` - at `$.data` on stream 'btcusdt@trade'",
        ),
        (
            '{"stream":"btcusdt@trade","data":{"t":1,"p":"x","q":"1","T":1,"m":true}}',
            "unexpected_shape",
            "Invalid decimal string - at `$.data.p` on stream 'btcusdt@trade'",
        ),
        (
            '{"stream":"ethusdt@trade","data":{"e":"trade"}}',
            "unknown_stream",
            "data for stream 'ethusdt@trade', not subscribed",
        ),
        (
            '{"data":{"t":1},"stream":"btcusdt@trade"}',
            "unexpected_shape",
            "Object missing required field `p` on stream 'btcusdt@trade'",
        ),
        (
            '{"e":"trade","s":"ETHUSDT","t":1}',
            "unknown_stream",
            "'trade' event for 'ETHUSDT', not subscribed",
        ),
        ('{"result":null,"id":"abc"}', "unknown_request", "ack for request id 'abc'"),
        ('{"result":null,"id":99}', "unknown_request", "ack for request id 99"),
        ('{"id":1.5}', "unexpected_shape", "Expected `int | str | null`, got `float` - at `$.id`"),
    ],
)
def test_garbage_and_unknown_frames_are_malformed_and_nothing_else(
    frame: str, kind: str, detail: str
) -> None:
    proto = live(channels=["trades"], symbols=["BTC-USDT"])
    assert feed(proto, frame) == ((), [MalformedFrame(kind=kind, detail=detail, sample=frame)])
    assert proto.state is AdapterState.LIVE
    assert proto.subscriptions == {"btcusdt@trade": "live"}


# == 2. the adapter alone ==================================================================
def test_subscriptions_are_batched_and_paced_on_spot() -> None:
    # 341 symbols x 3 channels + 1 raw = 1024 streams, the most one connection may carry.
    keys: dict[str, Any] = {
        "channels": ["trades", "ticker", "book"],
        "symbols": [f"S{i}-USDT" for i in range(341)],
        "raw": ["btcusdt@aggTrade"],
    }
    spec = make_spec(**keys)
    assert BinanceProtocol.check(spec) == []
    proto = BinanceProtocol(spec)
    proto.start_session(100.0)
    assert proto.state is AdapterState.SUBSCRIBING
    released: list[tuple[float, list[str | bytes]]] = [(100.0, proto.frames_to_send())]
    while proto.next_release != math.inf:  # the paced requests (acks are never sent)
        now = proto.next_release
        proto.tick(now - 0.001)
        assert proto.frames_to_send() == []  # nothing early
        proto.tick(now)
        released.append((now, proto.frames_to_send()))
    assert [(at, len(frames)) for at, frames in released] == [
        (100.0, 1),
        (100.5, 1),
        (101.0, 1),
        (101.5, 1),
        (102.0, 1),
        (102.5, 1),
    ]
    frames = [frame for _, batch in released for frame in batch]
    assert request_ids(frames) == [1, 2, 3, 4, 5, 6]
    assert [len(params(frame)) for frame in frames] == [200, 200, 200, 200, 200, 24]
    assert params(frames[0])[:4] == [
        "s0usdt@trade",
        "s0usdt@bookTicker",
        "s0usdt@depth@100ms",
        "s1usdt@trade",
    ]
    assert params(frames[-1])[-1] == "btcusdt@aggTrade"
    assert set(proto.subscriptions.values()) == {"pending"}
    assert len(proto.subscriptions) == 1024
    assert all(isinstance(frame, str) for frame in frames)  # text frames


def test_subscriptions_are_paced_faster_on_usdm() -> None:
    proto = BinanceUsdmProtocol(
        make_spec(
            "binance_usdm", **{**_streams(601), "symbols": [f"S{i}-USDT-PERP" for i in range(601)]}
        )
    )
    proto.start_session(0.0)
    times = [0.0] if proto.frames_to_send() else []
    while proto.next_release != math.inf:  # the paced requests (acks are never sent)
        now = proto.next_release
        proto.tick(now)
        assert len(proto.frames_to_send()) == 1
        times.append(now)
    assert times == [0.0, 0.25, 0.5, 0.75]


def test_state_machine_and_resubscription_on_every_session() -> None:
    proto = BinanceProtocol(make_spec(channels=["trades", "book"], symbols=["BTC-USDT"]))
    assert state(proto) is AdapterState.IDLE
    proto.start_session(0.0)
    assert state(proto) is AdapterState.SUBSCRIBING
    assert proto.frames_to_send() == [
        '{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@depth@100ms"],"id":1}'
    ]
    assert proto.subscriptions == {"btcusdt@trade": "pending", "btcusdt@depth@100ms": "pending"}
    with pytest.raises(
        LocalProtocolError,
        match=r"^start_session is not allowed while BinanceProtocol for connection 'b' is "
        r"SUBSCRIBING; end the session first$",
    ):
        proto.start_session(0.0)
    assert feed(proto, '{"result":null,"id":1}') == (
        (),
        [Subscribed(topics=("btcusdt@trade", "btcusdt@depth@100ms"))],
    )
    assert proto.state is AdapterState.LIVE
    proto.end_session()
    assert state(proto) is AdapterState.IDLE
    assert proto.subscriptions == {"btcusdt@trade": "live", "btcusdt@depth@100ms": "live"}
    # The next session sends the same streams again under a new id; the old id is dead.
    proto.start_session(50.0)
    assert proto.frames_to_send() == [
        '{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@depth@100ms"],"id":2}'
    ]
    assert proto.subscriptions == {"btcusdt@trade": "pending", "btcusdt@depth@100ms": "pending"}
    assert feed(proto, '{"result":null,"id":1}')[1][0].kind == "unknown_request"
    assert feed(proto, '{"result":null,"id":2}')[1] == [
        Subscribed(topics=("btcusdt@trade", "btcusdt@depth@100ms"))
    ]
    assert proto.state is AdapterState.LIVE
    assert proto.deadline() == math.inf  # no heartbeat timer: the server pings


def test_an_invalid_stream_is_isolated_and_the_rest_goes_live() -> None:
    proto = BinanceProtocol(
        make_spec(
            channels=["trades", "ticker", "book"],
            symbols=["BTC-USDT"],
            raw=["xyzusdt@trade", "btcusdt@kline_1m"],
        )
    )
    refused = '{{"error":{{"code":2,"msg":"Invalid request: invalid stream"}},"id":{}}}'
    proto.start_session(0.0)
    sent: list[tuple[float, list[str]]] = [(0.0, params(proto.frames_to_send()[0]))]
    answers = {
        1: refused.format(1),
        2: '{"result":null,"id":2}',
        3: refused.format(3),
        4: '{"result":null,"id":4}',
        5: refused.format(5),
        6: refused.format(6),
        7: '{"result":null,"id":7}',
    }
    events: list[Any] = []
    request_id, now = 1, 0.0
    while True:  # each request is answered at once
        assert proto.receive_frame(answers[request_id], now, AT) == ()
        events.extend(proto.events())
        if proto.deadline() == math.inf:
            break
        now = proto.deadline()
        proto.tick(now)
        (frame,) = proto.frames_to_send()
        request_id = msgspec.json.decode(frame)["id"]
        sent.append((now, params(frame)))
    assert sent == [
        (
            0.0,
            [
                "btcusdt@trade",
                "btcusdt@bookTicker",
                "btcusdt@depth@100ms",
                "xyzusdt@trade",
                "btcusdt@kline_1m",
            ],
        ),
        (0.5, ["btcusdt@trade", "btcusdt@bookTicker"]),
        (1.0, ["btcusdt@depth@100ms", "xyzusdt@trade", "btcusdt@kline_1m"]),
        (1.5, ["btcusdt@depth@100ms"]),
        (2.0, ["xyzusdt@trade", "btcusdt@kline_1m"]),
        (2.5, ["xyzusdt@trade"]),
        (3.0, ["btcusdt@kline_1m"]),
    ]
    invalid = "Invalid request: invalid stream"
    assert events == [
        Subscribed(topics=("btcusdt@trade", "btcusdt@bookTicker")),
        Subscribed(topics=("btcusdt@depth@100ms",)),
        SubscriptionFailed(topic="xyzusdt@trade", code="2", message=invalid),
        Subscribed(topics=("btcusdt@kline_1m",)),
    ]
    assert proto.state is AdapterState.LIVE
    assert proto.subscriptions == {
        "btcusdt@trade": "live",
        "btcusdt@bookTicker": "live",
        "btcusdt@depth@100ms": "live",
        "xyzusdt@trade": "failed: 2 Invalid request: invalid stream",
        "btcusdt@kline_1m": "live",
    }


def _depth(stream: str, first: int, last: int, prev: int | None = None) -> str:
    pu = "" if prev is None else f',"pu":{prev}'
    return (
        f'{{"stream":"{stream}","data":{{"e":"depthUpdate","E":5,"s":"X","U":{first},'
        f'"u":{last}{pu},"b":[],"a":[]}}}}'
    )


def test_book_chain_starts_unchecked_on_every_session() -> None:
    proto = live(channels=["book"], symbols=["BTC-USDT", "ETH-USDT"])
    stream = "btcusdt@depth@100ms"
    assert feed(proto, _depth(stream, 50, 60))[1] == []  # first diff: no check
    assert feed(proto, _depth("ethusdt@depth@100ms", 7, 9))[1] == []  # chains per stream
    assert feed(proto, _depth(stream, 61, 65))[1] == []
    assert feed(proto, _depth(stream, 70, 71))[1] == [
        SequenceGap(symbol="BTC-USDT", expected=65, received=69)
    ]
    assert feed(proto, _depth(stream, 72, 72))[1] == []  # goes on from the gap
    proto.end_session()
    proto.start_session(9.0)
    proto.frames_to_send()
    assert feed(proto, _depth(stream, 500, 510))[1] == []  # a new session, a new chain
    assert feed(proto, _depth(stream, 511, 512))[1] == []


def test_usdm_book_chain_follows_pu() -> None:
    proto = live(BinanceUsdmProtocol, channels=["book"], symbols=["BTC-USDT-PERP"])
    stream = "btcusdt@depth@100ms"
    batch, events = feed(proto, _depth(stream, 100, 110, prev=95))
    assert [(d.sequence, d.prev_sequence) for d in deltas(batch)] == [(110, 95)]
    assert events == []
    # USD-M ids are not contiguous across events: only pu == previous u counts.
    assert feed(proto, _depth(stream, 130, 140, prev=110))[1] == []
    batch, events = feed(proto, _depth(stream, 160, 170, prev=150))
    assert [d.prev_sequence for d in deltas(batch)] == [150]
    assert events == [SequenceGap(symbol="BTC-USDT-PERP", expected=140, received=150)]


@pytest.mark.parametrize(
    ("cls", "symbol", "stream", "normalized"),
    [
        (BinanceProtocol, "BTC-USDT", "btcusdt", "BTC-USDT"),
        (BinanceProtocol, "BTCUSDT", "btcusdt", "BTC-USDT"),
        (BinanceProtocol, "ETHBTC", "ethbtc", "ETH-BTC"),
        (BinanceProtocol, "BNBFDUSD", "bnbfdusd", "BNB-FDUSD"),
        (BinanceProtocol, "FDUSDUSDT", "fdusdusdt", "FDUSD-USDT"),
        (BinanceProtocol, "USDTTRY", "usdttry", "USDT-TRY"),
        (BinanceProtocol, "ABCXYZ", "abcxyz", "ABCXYZ"),  # no known quote: kept native
        (BinanceUsdmProtocol, "BTC-USDT-PERP", "btcusdt", "BTC-USDT-PERP"),
        (BinanceUsdmProtocol, "BTCUSDT", "btcusdt", "BTC-USDT-PERP"),
        (BinanceUsdmProtocol, "1000PEPEUSDT", "1000pepeusdt", "1000PEPE-USDT-PERP"),
    ],
)
def test_symbols_map_to_streams_and_back(
    cls: type[BinanceProtocol], symbol: str, stream: str, normalized: str
) -> None:
    spec = make_spec(cls.exchange, channels=["trades"], symbols=[symbol])
    assert cls.check(spec) == []
    proto = cls(spec)
    proto.start_session(0.0)
    (frame,) = proto.frames_to_send()
    assert params(frame) == [f"{stream}@trade"]
    data = '{"e":"trade","E":1,"s":"S","t":7,"p":"1.5","q":"2","T":3,"m":false}'
    (message,) = proto.receive_frame(f'{{"stream":"{stream}@trade","data":{data}}}', 0.0, AT)
    assert message == Trade(
        connection="b",
        exchange=cls.exchange,
        received_at=AT,
        symbol=normalized,
        side="buy",
        price=D("1.5"),
        amount=D("2"),
        trade_id="7",
        timestamp=3,
    )


def test_frames_without_envelope_are_routed_by_event_and_symbol() -> None:
    proto = live(url="wss://stream.binance.com:9443/ws", channels=["book"], symbols=["BTC-USDT"])
    bare = '{"e":"depthUpdate","E":5,"s":"BTCUSDT","U":1,"u":2,"b":[["1.0","2"]],"a":[]}'
    (delta,), events = feed(proto, bare)
    assert events == []
    assert delta == BookDelta(
        connection="b",
        exchange="binance",
        received_at=AT,
        symbol="BTC-USDT",
        bids=levels(("1.0", "2")),
        asks=(),
        sequence=2,
        prev_sequence=0,
        timestamp=5,
    )


def test_binary_frames_are_understood() -> None:
    proto = live(channels=["trades"], symbols=["BTC-USDT"])
    combined = lines("spot_trade.jsonl")[0]
    (message,) = proto.receive_frame(combined.encode(), 0.0, AT)
    assert isinstance(message, Trade)
    assert message.trade_id == "6720857582"
    assert proto.receive_frame(b'{"e":"serverShutdown","E":1}', 0.0, AT) == ()
    assert proto.events() == [ReconnectRequested(reason="Binance serverShutdown notice (E=1)")]


def test_default_endpoints() -> None:
    assert BinanceProtocol(make_spec(channels=["trades"], symbols=["BTC-USDT"])).url == (
        "wss://stream.binance.com:9443/stream"
    )
    usdm = "binance_usdm"
    assert BinanceUsdmProtocol(
        make_spec(usdm, channels=["trades", "ticker", "book"], symbols=["BTC-USDT-PERP"])
    ).url == ("wss://fstream.binance.com/public/stream")
    assert BinanceUsdmProtocol(make_spec(usdm, raw=["btcusdt@aggTrade", "!markPrice@arr"])).url == (
        "wss://fstream.binance.com/market/stream"
    )
    assert BinanceUsdmProtocol(make_spec(usdm, url=URL, raw=["btcusdt@aggTrade"])).url == URL


_SPOT_ONLY = (
    "(expected a spot symbol such as BTC-USDT on exchange 'binance'; "
    "use exchange = 'binance_usdm' for USD-M perpetuals)"
)


@pytest.mark.parametrize(
    ("exchange", "keys", "problems"),
    [
        (
            "binance",
            {"channels": ["trades", "ticker", "book"], "symbols": ["BTC-USDT", "ETHBTC"]},
            [],
        ),
        ("binance", {"raw": ["btcusdt@aggTrade", "!miniTicker@arr"]}, []),
        (
            "binance",
            {"channels": ["trades", "candles"], "symbols": ["BTC-USDT"]},
            [("channels", "unknown channel 'candles' (expected trades, ticker or book)")],
        ),
        (
            "binance",
            {"channels": ["trades"], "symbols": ["BTC-USDT-PERP"]},
            [("symbols", f"'BTC-USDT-PERP' is a perpetual swap {_SPOT_ONLY}")],
        ),
        (
            "binance_usdm",
            {"channels": ["trades"], "symbols": ["BTC-USDT"]},
            [
                (
                    "symbols",
                    "'BTC-USDT' is a spot symbol (expected a perpetual such as BTC-USDT-PERP "
                    "on exchange 'binance_usdm'; use exchange = 'binance' for spot)",
                )
            ],
        ),
        (
            "binance",
            {"channels": ["trades"], "symbols": ["btcusdt", "BTC/USDT"]},
            [
                (
                    "symbols",
                    "'btcusdt' is not a symbol (expected BTC-USDT or BTCUSDT: normalized, or "
                    "Binance's upper-case native name)",
                ),
                (
                    "symbols",
                    "'BTC/USDT' is not a symbol (expected BTC-USDT or BTCUSDT: normalized, or "
                    "Binance's upper-case native name)",
                ),
            ],
        ),
        (
            "binance_usdm",
            {"channels": ["trades"], "symbols": ["BTCUSDT_261225"]},
            [
                (
                    "symbols",
                    "'BTCUSDT_261225' is a dated future (expected a perpetual such as "
                    "BTC-USDT-PERP or BTCUSDT; delivery contracts are not supported)",
                )
            ],
        ),
        (
            "binance",
            {"raw": ["BTCUSDT@trade", "btcusdt", "btc usdt@trade"]},
            [
                (
                    "raw",
                    "'BTCUSDT@trade' has an upper-case symbol (expected btcusdt@trade: Binance "
                    "stream names use lower-case symbols)",
                ),
                (
                    "raw",
                    "'btcusdt' is not a stream name (expected <symbol>@<type>, e.g. "
                    "btcusdt@aggTrade)",
                ),
                ("raw", "'btc usdt@trade' is not a stream name (expected e.g. btcusdt@aggTrade)"),
            ],
        ),
        (
            "binance",
            {"channels": ["trades"]},
            [("symbols", "missing (expected at least one symbol for the channels, e.g. BTC-USDT)")],
        ),
        (
            "binance",
            {"symbols": ["BTC-USDT"]},
            [("channels", "missing (expected trades, ticker and/or book for the symbols)")],
        ),
        (
            "binance",
            {},
            [("channels", "nothing to subscribe (expected channels and symbols, or raw streams)")],
        ),
        (
            "binance",
            {"raw": ["btcusdt@trade"], "heartbeat": 20.0, "subscribe": ["{}"]},
            [
                (
                    "subscribe",
                    "not used by the binance adapter (it builds its SUBSCRIBE requests from "
                    "channels, symbols and raw)",
                ),
                (
                    "heartbeat",
                    "not used by the binance adapter (Binance's server sends the pings and the "
                    "WebSocket client answers them; remove the key)",
                ),
            ],
        ),
        (
            "binance",
            {**_streams(1024), "raw": ["btcusdt@aggTrade"]},
            [
                (
                    "symbols",
                    "1025 streams (channels x symbols + raw) on one connection (expected at most "
                    "1024, Binance's limit per connection; split the symbols over 2 connections)",
                )
            ],
        ),
        (
            "binance_usdm",
            {
                "channels": ["trades", "book"],
                "symbols": ["BTC-USDT-PERP"],
                "raw": ["btcusdt@aggTrade", "!markPrice@arr"],
            },
            [
                (
                    "raw",
                    "btcusdt@aggTrade, !markPrice@arr served under /market but btcusdt@trade, "
                    "btcusdt@depth@100ms under /public since Binance's 2026 URL split; one "
                    "connection reaches one of them (expected two connections: one for the "
                    "/public streams, one for the /market streams)",
                )
            ],
        ),
        (
            "binance_usdm",
            {
                "url": "wss://fstream.binance.com/public/stream",
                "channels": ["ticker"],
                "symbols": ["BTC-USDT-PERP"],
                "raw": ["btcusdt@aggTrade"],
            },
            [
                (
                    "url",
                    "/public does not serve btcusdt@aggTrade (served under /market since "
                    "Binance's 2026 URL split; expected a /market URL, or two connections)",
                )
            ],
        ),
        (
            "binance_usdm",
            {
                "url": "wss://fstream.binance.com/market/ws",
                "channels": ["trades", "ticker", "book"],
                "symbols": ["BTC-USDT-PERP", "ETH-USDT-PERP"],
            },
            [
                (
                    "url",
                    "/market does not serve btcusdt@trade, btcusdt@bookTicker, "
                    "btcusdt@depth@100ms and 3 more (served under /public since Binance's 2026 "
                    "URL split; expected a /public URL, or two connections)",
                )
            ],
        ),
        # A URL outside the routed layout (legacy, a proxy, a fake) is not second-guessed.
        (
            "binance_usdm",
            {
                "url": URL,
                "channels": ["trades"],
                "symbols": ["BTCUSDT"],
                "raw": ["btcusdt@aggTrade"],
            },
            [],
        ),
    ],
)
def test_check(exchange: str, keys: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    cls = BinanceUsdmProtocol if exchange == "binance_usdm" else BinanceProtocol
    assert cls.check(make_spec(exchange, **keys)) == problems


def test_config_errors_name_the_connection_and_the_exchange_to_use() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(
            {
                "connections": {
                    "spot": {
                        "exchange": "binance",
                        "channels": ["book"],
                        "symbols": ["BTC-USDT-PERP"],
                    }
                }
            },
            source="<test>",
        )
    assert caught.value.problems == [
        f"<test>: connections.spot.symbols: 'BTC-USDT-PERP' is a perpetual swap {_SPOT_ONLY}"
    ]


def test_usdm_rejects_quotes_without_a_usdm_market() -> None:
    with pytest.raises(ConfigError) as raised:
        config_from_dict(
            {
                "connections": {
                    "u": {
                        "exchange": "binance_usdm",
                        "channels": ["trades"],
                        "symbols": ["BTC-USD-PERP", "ETH-USDC-PERP"],
                    }
                }
            }
        )
    assert raised.value.problems == [
        "<dict>: connections.u.symbols: 'BTC-USD-PERP' has no USD-M market (expected a USDT- "
        "or USDC-margined perpetual such as BTC-USDT-PERP)"
    ]
