"""Subscriptions changed at run time (``ExchangeProtocol.send``): replies still on their
way for dropped topics change nothing, pacing credits are kept honest, in-order answers
stay in order. Found in review; each test failed before its fix."""

from __future__ import annotations

import json

from actors.exchanges import (
    BinanceProtocol,
    BybitProtocol,
    DeribitProtocol,
    OkxProtocol,
    Subscribe,
    Unsubscribe,
)
from actors.exchanges.messages import MalformedFrame

from .helpers import connection_spec


def test_binance_late_ack_after_unsubscribe_does_not_bring_the_topic_back() -> None:
    spec = connection_spec("b", "binance", channels=["trades"], symbols=["BTC-USDT", "ETH-USDT"])
    proto = BinanceProtocol(spec)
    proto.start_session(0.0)
    request = json.loads(proto.frames_to_send()[0])
    proto.send(Unsubscribe(symbols=("ETH-USDT",)), 1.0)
    proto.tick(10.0)
    assert [json.loads(f)["method"] for f in proto.frames_to_send()] == ["UNSUBSCRIBE"]
    proto.receive_frame(json.dumps({"result": None, "id": request["id"]}), 11.0, 0.0)
    assert proto.subscriptions == {"btcusdt@trade": "live"}


def test_binance_late_refusal_after_unsubscribe_does_not_resubscribe_a_dropped_stream() -> None:
    spec = connection_spec("b", "binance", channels=["trades"], symbols=["BTC-USDT", "ETH-USDT"])
    proto = BinanceProtocol(spec)
    proto.start_session(0.0)
    request = json.loads(proto.frames_to_send()[0])
    proto.send(Unsubscribe(symbols=("ETH-USDT",)), 1.0)
    proto.tick(10.0)
    proto.frames_to_send()
    error = {"error": {"code": 2, "msg": "Invalid request"}, "id": request["id"]}
    proto.receive_frame(json.dumps(error), 11.0, 0.0)
    proto.tick(20.0)
    assert proto.frames_to_send() == []  # one stream left: no bisection, no resend
    assert proto.subscriptions == {"btcusdt@trade": "failed: 2 Invalid request"}


def test_bybit_reply_after_unsubscribe_does_not_bring_the_topic_back() -> None:
    spec = connection_spec("y", "bybit", channels=["trades"], symbols=["BTC-USDT", "ETH-USDT"])
    proto = BybitProtocol(spec)
    proto.start_session(0.0)
    request = json.loads(proto.frames_to_send()[0])
    proto.send(Unsubscribe(symbols=("ETH-USDT",)), 1.0)
    proto.frames_to_send()
    ack = {"success": True, "ret_msg": "subscribe", "req_id": request["req_id"], "op": "subscribe"}
    proto.receive_frame(json.dumps(ack), 2.0, 0.0)
    assert proto.subscriptions == {"publicTrade.BTCUSDT": "live"}


def test_bybit_named_refusal_after_unsubscribe_requests_only_what_is_still_wanted() -> None:
    spec = connection_spec(
        "y", "bybit", channels=["trades"], symbols=["BTC-USDT", "ETH-USDT", "SOL-USDT"]
    )
    proto = BybitProtocol(spec)
    proto.start_session(0.0)
    request = json.loads(proto.frames_to_send()[0])
    proto.send(Unsubscribe(symbols=("ETH-USDT",)), 1.0)
    proto.frames_to_send()
    refusal = {
        "success": False,
        "ret_msg": "error:handler not found,topic:publicTrade.SOLUSDT",
        "req_id": request["req_id"],
        "op": "subscribe",
    }
    proto.receive_frame(json.dumps(refusal), 2.0, 0.0)
    [again] = [json.loads(f) for f in proto.frames_to_send()]
    assert again["args"] == ["publicTrade.BTCUSDT"]
    assert proto.subscriptions == {
        "publicTrade.BTCUSDT": "pending",
        "publicTrade.SOLUSDT": f"failed: handler not found {refusal['ret_msg']}",
    }


def test_deribit_keeps_the_credits_of_requests_written_after_a_run_time_subscribe() -> None:
    spec = connection_spec("d", "deribit", channels=["trades"], symbols=["BTC-USD-PERP"])
    proto = DeribitProtocol(spec)
    proto.start_session(0.0)
    proto.frames_to_send()
    assert proto.pacer is not None
    proto.send(Subscribe(symbols=("ETH-USD-PERP",)), 100.0)
    assert any("ETH-PERPETUAL" in f for f in proto.frames_to_send())  # written: spent
    spent = proto.pacer.tat
    proto.end_session()
    assert proto.pacer.tat == spent  # nothing unsent to give back


def test_okx_error_answering_an_unsubscribe_is_not_blamed_on_a_pending_subscribe() -> None:
    spec = connection_spec("o", "okx", channels=["trades"], symbols=["BTC-USDT", "ETH-USDT"])
    proto = OkxProtocol(spec)
    proto.start_session(0.0)
    proto.frames_to_send()
    for inst in ("BTC-USDT", "ETH-USDT"):
        ack = {"event": "subscribe", "arg": {"channel": "trades", "instId": inst}}
        proto.receive_frame(json.dumps(ack), 1.0, 0.0)
    proto.send(Unsubscribe(symbols=("ETH-USDT",)), 2.0)  # written first, answered first
    proto.send(Subscribe(symbols=("SOL-USDT",)), 2.0)
    assert len(proto.frames_to_send()) == 2
    proto.events()
    error = {"event": "error", "code": "60012", "msg": "Invalid request"}
    proto.receive_frame(json.dumps(error), 3.0, 0.0)
    assert proto.subscriptions["trades:SOL-USDT"] == "pending"
    [event] = proto.events()
    assert isinstance(event, MalformedFrame)
    assert (event.kind, event.detail) == (
        "request_failed",
        "unsubscribe failed: 60012 Invalid request",
    )
    ack = {"event": "subscribe", "arg": {"channel": "trades", "instId": "SOL-USDT"}}
    proto.receive_frame(json.dumps(ack), 4.0, 0.0)
    assert proto.subscriptions == {"trades:BTC-USDT": "live", "trades:SOL-USDT": "live"}


def test_binance_data_still_on_its_way_for_an_unsubscribed_stream_is_dropped_quietly() -> None:
    spec = connection_spec("b", "binance", channels=["trades"], symbols=["BTC-USDT", "ETH-USDT"])
    proto = BinanceProtocol(spec)
    proto.start_session(0.0)
    request = json.loads(proto.frames_to_send()[0])
    proto.receive_frame(json.dumps({"result": None, "id": request["id"]}), 0.5, 0.0)
    proto.events()
    proto.send(Unsubscribe(symbols=("ETH-USDT",)), 1.0)
    trade = {"e": "trade", "E": 1, "s": "ETHUSDT", "t": 7, "p": "1.5", "q": "2", "T": 1, "m": True}
    late = json.dumps({"stream": "ethusdt@trade", "data": trade})
    never = json.dumps({"stream": "solusdt@trade", "data": {**trade, "s": "SOLUSDT"}})
    assert proto.receive_frame(late, 1.1, 0.0) == ()
    assert [e for e in proto.events() if isinstance(e, MalformedFrame)] == []
    assert proto.receive_frame(never, 1.2, 0.0) == ()
    (bad,) = [e for e in proto.events() if isinstance(e, MalformedFrame)]
    assert bad.kind == "unknown_stream"
    # A new session forgets it: data for it then is unexpected again.
    proto.end_session()
    proto.start_session(2.0)
    proto.receive_frame(late, 2.1, 0.0)
    assert [e.kind for e in proto.events() if isinstance(e, MalformedFrame)] == ["unknown_stream"]


def test_unsubscribing_a_refused_topic_writes_nothing() -> None:
    spec = connection_spec("o", "okx", channels=["trades"], symbols=["BTC-USDT"])
    proto = OkxProtocol(spec)
    proto.start_session(0.0)
    proto.frames_to_send()
    ack = {"event": "subscribe", "arg": {"channel": "trades", "instId": "BTC-USDT"}}
    proto.receive_frame(json.dumps(ack), 0.1, 0.0)
    proto.send(Subscribe(symbols=("NOPE-USDT",)), 1.0)
    proto.frames_to_send()
    error = {"event": "error", "code": "60018", "msg": "doesn't exist"}
    proto.receive_frame(json.dumps(error), 1.1, 0.0)
    assert proto.subscriptions["trades:NOPE-USDT"] == "failed: 60018 doesn't exist"
    proto.send(Unsubscribe(symbols=("NOPE-USDT",)), 2.0)
    proto.tick(2.0)
    assert proto.frames_to_send() == []
    assert proto.subscriptions == {"trades:BTC-USDT": "live"}
