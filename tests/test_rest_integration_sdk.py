"""The adapters' REST hook, sans-IO: recorded server-time bodies give exact clock
offsets, instrument lists fail unknown symbols, and the schedule retries and refreshes
at exact times."""

from __future__ import annotations

import pathlib
from typing import Any

import msgspec
import pytest

from actors import ConnectionSpec
from actors.exchanges import ADAPTERS, AdapterState
from actors.exchanges.sdk.rest import RestCall

DATA = pathlib.Path(__file__).parent / "data" / "rest"


def spec(exchange: str, symbols: list[str]) -> ConnectionSpec:
    return msgspec.convert(
        {"name": "c", "exchange": exchange, "channels": ["trades"], "symbols": symbols},
        type=ConnectionSpec,
    )


def fixture(name: str) -> Any:
    return msgspec.json.decode((DATA / name).read_bytes())


@pytest.mark.parametrize(
    ("exchange", "symbols", "body", "server_ms"),
    [
        ("binance", ["BTC-USDT"], "binance_time.json", 1499827319559),
        ("binance_usdm", ["BTC-USDT-PERP"], "binance_usdm_time.json", 1791382984200),
        ("okx", ["BTC-USDT"], "okx_time.json", 1597026383085),
        ("deribit", ["BTC-PERPETUAL"], "deribit_get_time.json", 1733338800000),
    ],
)
def test_recorded_server_time_gives_the_offset_from_the_midpoint(
    exchange: str, symbols: list[str], body: str, server_ms: int
) -> None:
    proto = ADAPTERS[exchange](spec(exchange, symbols))
    calls = proto.rest_requests(0.0)
    time_call = calls[0]
    assert time_call.purpose == "time"
    # Sent at server - 1.25 s, answered 0.5 s later: the midpoint is 1.0 s behind.
    sent = server_ms / 1000 - 1.25
    problems = proto.receive_rest(
        time_call, fixture(body), 0.5, sent_at=sent, received_at=sent + 0.5
    )
    assert problems == []
    assert proto.clock_offset == pytest.approx(1.0, abs=1e-6)
    # Next server time in 600 s; nothing else due before (the instruments are in flight).
    assert proto.rest_deadline() == 600.5


def test_bybit_server_time_reads_time_nano() -> None:
    proto = ADAPTERS["bybit"](spec("bybit", ["BTC-USDT"]))
    (time_call, _) = proto.rest_requests(0.0)
    body = {"retCode": 0, "result": {"timeSecond": "1688639403", "timeNano": "1688639403423213947"}}
    proto.receive_rest(time_call, body, 0.0, sent_at=1688639403.0, received_at=1688639403.0)
    assert proto.clock_offset == pytest.approx(0.423213947, abs=1e-6)


def test_failed_calls_back_off_5_10_20_up_to_300_s_and_an_answer_resets() -> None:
    proto = ADAPTERS["binance"](spec("binance", ["BTC-USDT"]))
    time_call, info = proto.rest_requests(0.0)
    assert proto.rest_requests(0.0) == []  # in flight: not handed out twice
    delays = []
    now = 0.0
    for _ in range(8):
        delay, _failures = proto.rest_failed(time_call, now)
        delays.append(delay)
        now += delay
        assert proto.rest_requests(now - 0.001) == []
        assert proto.rest_requests(now) == [time_call]
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]
    proto.receive_rest(time_call, {"serverTime": 1000}, now, sent_at=1.0, received_at=1.0)
    assert proto.rest_failed(time_call, now) == (5.0, 1)
    with pytest.raises(ValueError, match=r"^/api/v3/exchangeInfo: the answer carries no "):
        proto.receive_rest(info, {"code": -1121}, now, sent_at=0.0, received_at=0.0)


def test_unknown_symbol_fails_only_its_topics_and_is_never_requested_again() -> None:
    proto = ADAPTERS["binance"](spec("binance", ["BTC-USDT", "ETHUSDX"]))
    proto.start_session(0.0)
    first = proto.frames_to_send()
    _, info = proto.rest_requests(0.0)
    body = {"symbols": [{"symbol": "BTCUSDT"}, {"symbol": "ETHUSDT"}]}
    problems = proto.receive_rest(info, body, 0.0, sent_at=0.0, received_at=0.0)
    assert problems == [
        "unknown symbol 'ETHUSDX' (did you mean ETHUSDT?): its subscriptions "
        "ethusdx@trade failed; the others run on"
    ]
    assert proto.subscriptions == {
        "btcusdt@trade": "pending",
        "ethusdx@trade": "failed: unknown symbol (did you mean ETHUSDT?)",
    }
    # A late ack of the whole SUBSCRIBE confirms only the known symbol.
    proto.receive_frame('{"result":null,"id":1}', 0.1, 0.0)
    assert proto.state is AdapterState.LIVE
    assert proto.subscriptions["ethusdx@trade"].startswith("failed: unknown symbol")
    assert proto.subscriptions["btcusdt@trade"] == "live"
    assert first  # the first session asked for both, before the list came
    # The next session asks only for the known one; the unknown stays failed.
    proto.end_session()
    proto.start_session(1.0)
    frames = proto.frames_to_send()
    assert [msgspec.json.decode(f)["params"] for f in frames] == [["btcusdt@trade"]]
    assert proto.subscriptions["ethusdx@trade"].startswith("failed: unknown symbol")


def test_okx_lists_instruments_per_inst_type() -> None:
    proto = ADAPTERS["okx"](spec("okx", ["BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-250627"]))
    calls = proto.rest_requests(0.0)
    assert calls[1:] == [
        RestCall(
            purpose=f"instruments {kind}",
            path="/api/v5/public/instruments",
            params=(("instType", kind),),
        )
        for kind in ("SPOT", "SWAP", "FUTURES")
    ]
    spot, swap, futures = calls[1:]
    ok = {"code": "0", "data": [{"instId": "BTC-USDT"}]}
    assert proto.receive_rest(spot, ok, 0.0, sent_at=0.0, received_at=0.0) == []
    ok = {"code": "0", "data": [{"instId": "BTC-USDT-SWAP"}]}
    assert proto.receive_rest(swap, ok, 0.0, sent_at=0.0, received_at=0.0) == []
    # Only once every list is in are symbols judged.
    none = {"code": "0", "data": [{"instId": "BTC-USD-250926"}]}
    assert proto.receive_rest(futures, none, 0.0, sent_at=0.0, received_at=0.0) == [
        "unknown symbol 'BTC-USD-250627' (did you mean BTC-USD-250926?): its subscriptions "
        "trades:BTC-USD-250627 failed; the others run on"
    ]


def test_raw_adapter_makes_no_rest_calls() -> None:
    proto = ADAPTERS["raw"](
        msgspec.convert(
            {"name": "r", "exchange": "raw", "url": "wss://x.invalid/", "subscribe": ["{}"]},
            type=ConnectionSpec,
        )
    )
    assert proto.rest_requests(0.0) == []
    assert proto.rest_deadline() == float("inf")
