"""The adapter conformance suite: every registered adapter, one contract.

Each test runs over every entry of ``ADAPTERS`` (or every entry the property applies to:
the raw adapter has no acks, books or budget) through an :class:`AdapterPair`: our
adapter on one end, the exchange's sans-IO :mod:`venue <conformance.venues>` on the
other, a fake link between them, time passed in (h11's ``ConnectionPair`` is the model).
A new adapter joins by adding a venue; ``test_every_adapter_has_a_venue`` makes sure it
cannot be forgotten.

What it pins:

- sans-IO: adapter packages import no trio, sockets, clocks;
- garbage in -> one ``MalformedFrame`` and no messages, never an exception;
- subscriptions are re-sent on every session and confirmed by the venue's acks;
- a refusal fails the topic with the exchange's own code, and only what it refused;
- a book gap is reported by the very frame that carries the gapped delta (the actor
  handles a frame's events before it delivers the frame's batch);
- request budgets hold against the exchange's published rule, for any subscription size.
"""

from __future__ import annotations

import ast
import importlib
import math
import pathlib
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import ConfigError, ConnectionSpec
from actors.exchanges import ADAPTERS, AdapterState, BookDelta, ExchangeProtocol, Message
from actors.exchanges.messages import (
    Event,
    MalformedFrame,
    SequenceGap,
    Subscribe,
    SubscriptionFailed,
    Unsubscribe,
)
from conformance.venues import VENUES, Frame, Venue

ALL = sorted(ADAPTERS)
WITH_ACKS = sorted(e for e in ALL if VENUES[e].refused_topic is not None)
WITH_BOOKS = sorted(e for e in ALL if VENUES[e].book_topic is not None)
WITH_BUDGET = sorted(e for e in ALL if VENUES[e].has_budget)
NOT_RAW = sorted(e for e in ALL if e != "raw")
RECEIVED_AT = 1_700_000_000.0


class AdapterPair:
    """Our adapter and a venue joined by a fake link; ``now`` is advanced by hand."""

    def __init__(self, exchange: str, values: dict[str, Any] | None = None) -> None:
        self.venue: Venue = VENUES[exchange]()
        values = values if values is not None else self.venue.spec
        spec = msgspec.convert({"name": "c", "exchange": exchange, **values}, ConnectionSpec)
        assert ADAPTERS[exchange].check(spec) == []
        self.proto: ExchangeProtocol = ADAPTERS[exchange](spec)
        self.now = 0.0
        #: ``(time, frame)`` the adapter wrote, this session.
        self.sent: list[tuple[float, Frame]] = []
        self.events: list[Event] = []
        self.delivered: list[Message] = []

    def start(self) -> None:
        self.sent = []
        self.venue.requested = []
        self.venue.unsubscribed = []
        self.proto.start_session(self.now)
        self.exchange_frames()

    def end(self, after: float = 1.0) -> None:
        self.proto.end_session()
        self.now += after

    def exchange_frames(self) -> None:
        """Write what the adapter queued; feed back what the venue answers; until quiet."""
        while True:
            self.events += self.proto.events()
            frames = self.proto.frames_to_send()
            if not frames:
                return
            for frame in frames:
                self.sent.append((self.now, frame))
                for reply in self.venue.receive(frame):
                    self.feed(reply)

    def feed(self, frame: Frame) -> tuple[Message, ...]:
        batch = self.proto.receive_frame(frame, self.now, RECEIVED_AT + self.now)
        self.delivered += batch
        return batch

    def settle(self) -> None:
        """Advance time through every scheduled request (pings on the way answered)."""
        while self.proto.next_release != math.inf:
            self.now = max(self.now, self.proto.deadline())
            self.proto.tick(self.now)
            self.exchange_frames()


def _banned_imports(path: pathlib.Path) -> set[str]:
    banned = {"trio", "trio_websocket", "httpx", "anyio", "socket", "ssl", "time", "asyncio"}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & banned


def test_every_adapter_has_a_venue() -> None:
    assert set(VENUES) == set(ADAPTERS)


@pytest.mark.parametrize("exchange", ALL)
def test_adapter_modules_are_sans_io(exchange: str) -> None:
    module = importlib.import_module(ADAPTERS[exchange].__module__)
    assert module.__file__ is not None
    package = pathlib.Path(module.__file__).parent
    files = (
        sorted(package.glob("*.py"))
        if package.name != "exchanges"
        else [pathlib.Path(module.__file__)]
    )
    assert files
    for path in files:
        assert _banned_imports(path) == set(), path


# -- garbage ---------------------------------------------------------------------------

#: Valid JSON that no exchange sends: each must be reported, not delivered.
JSON_GARBAGE = [
    "[]",
    "null",
    "123",
    '"x"',
    "{}",
    '{"a":1}',
    "[1,2,3]",
    '{"stream":1}',
    '{"data":"x"}',
    '{"arg":{}}',
    '{"method":5}',
    '{"topic":7}',
    '{"id":"zz","result":[]}',
    '{"stream":"btcusdt@trade","data":{"p":"not a number"}}',
    '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"px":"x"}]}',
    '{"topic":"publicTrade.BTCUSDT","type":"snapshot","data":[{"p":"x"}]}',
    '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.100ms","data":7}}',
    "[" * 5000 + "]" * 5000,
]


def _started(exchange: str) -> AdapterPair:
    pair = AdapterPair(exchange)
    pair.start()
    pair.settle()
    pair.events.clear()
    return pair


def _is_json(data: str | bytes) -> bool:
    try:
        msgspec.json.decode(data)
    # msgspec raises UnicodeDecodeError, not DecodeError, for invalid UTF-8 inside a
    # string (b'"\x80"'), as the adapters know (sdk/protocol.py).
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False
    return True


@pytest.mark.parametrize("exchange", ALL)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_non_json_is_one_malformed_frame(exchange: str, data: str | bytes) -> None:
    if _is_json(data) or data in ("pong", b"pong"):  # OKX's pong is not JSON
        return
    pair = _started(exchange)
    assert pair.proto.receive_frame(data, 1.0, RECEIVED_AT) == ()
    [event] = pair.proto.events()
    assert isinstance(event, MalformedFrame)


@pytest.mark.parametrize("frame", JSON_GARBAGE, ids=range(len(JSON_GARBAGE)))
@pytest.mark.parametrize("exchange", NOT_RAW)
def test_json_garbage_is_reported_not_delivered(exchange: str, frame: str) -> None:
    pair = _started(exchange)
    assert pair.proto.receive_frame(frame, 1.0, RECEIVED_AT) == ()
    events = pair.proto.events()
    assert events
    assert all(isinstance(event, MalformedFrame) for event in events)
    assert pair.proto.state is AdapterState.LIVE


# -- subscriptions -----------------------------------------------------------------------


@pytest.mark.parametrize("exchange", ALL)
def test_subscriptions_are_resent_every_session_and_confirmed(exchange: str) -> None:
    pair = AdapterPair(exchange)
    first: list[str] = []
    for session in range(3):
        pair.start()
        pair.settle()
        assert pair.proto.state is AdapterState.LIVE
        assert pair.venue.requested, "nothing was requested"
        assert set(pair.proto.subscriptions.values()) == {"live"}
        if session == 0:
            first = list(pair.venue.requested)
            assert set(pair.proto.subscriptions) == set(first)
        else:
            assert pair.venue.requested == first
        pair.end()


@pytest.mark.parametrize("exchange", WITH_ACKS)
def test_a_refusal_fails_the_topic_with_the_exchange_code(exchange: str) -> None:
    pair = AdapterPair(exchange)
    venue = pair.venue
    assert venue.refused_topic is not None and venue.book_topic is not None
    venue.refuse = {venue.refused_topic}
    pair.start()
    pair.settle()
    state = pair.proto.subscriptions[venue.refused_topic]
    assert state.startswith(f"failed: {venue.refusal_code} ")
    failed = [e for e in pair.events if isinstance(e, SubscriptionFailed)]
    assert venue.refused_topic in {e.topic for e in failed}
    assert {e.code for e in failed} == {venue.refusal_code}
    assert pair.proto.subscriptions[venue.book_topic] == "live"  # another instrument's
    assert pair.proto.state is AdapterState.LIVE


# -- books -------------------------------------------------------------------------------


@pytest.mark.parametrize("exchange", WITH_BOOKS)
def test_a_gap_is_reported_by_the_frame_that_carries_it(exchange: str) -> None:
    pair = _started(exchange)
    venue = pair.venue
    frames = venue.book(100, 3, skip=2)
    deltas: list[BookDelta] = []
    for frame in frames[:-1]:
        pair.feed(frame)
        assert [e for e in pair.proto.events() if isinstance(e, SequenceGap)] == []
    deltas = [m for m in pair.delivered if isinstance(m, BookDelta)]
    batch = pair.feed(frames[-1])
    [delta] = batch
    assert isinstance(delta, BookDelta)
    assert delta.symbol == venue.book_symbol
    gaps = [e for e in pair.proto.events() if isinstance(e, SequenceGap)]
    assert gaps == [
        SequenceGap(
            symbol=venue.book_symbol, expected=deltas[-1].sequence, received=delta.prev_sequence
        )
    ]


@pytest.mark.parametrize("exchange", WITH_BOOKS)
def test_a_new_session_starts_every_book_chain_afresh(exchange: str) -> None:
    pair = _started(exchange)
    for frame in pair.venue.book(100, 2):
        pair.feed(frame)
    pair.end()
    pair.start()
    pair.settle()
    pair.events.clear()
    for frame in pair.venue.book(500, 2):  # far from where the last session was
        pair.feed(frame)
    assert [e for e in pair.proto.events() if isinstance(e, SequenceGap)] == []


@pytest.mark.parametrize("exchange", WITH_BOOKS)
def test_every_book_channel_stream_gets_a_local_book_and_a_way_to_resync(exchange: str) -> None:
    pair = _started(exchange)
    venue, proto = pair.venue, pair.proto
    topics = proto.book_topics()
    assert topics[venue.book_symbol] == venue.book_topic
    assert len(topics) == len(venue.spec["symbols"])
    rule = type(proto).book_rule
    assert rule is not None
    if rule.rest_snapshot:
        # No snapshot on the stream: a REST one, of the symbol's native name.
        call = proto.book_snapshot_call(venue.book_symbol)
        assert call is not None and call.purpose == f"book {venue.book_symbol}"
        assert not proto.resync_book(venue.book_symbol, pair.now)
        return
    # The stream starts with a snapshot: subscribe that one stream again.
    live_before = dict(proto.subscriptions)
    venue.requested, venue.unsubscribed = [], []
    assert proto.resync_book(venue.book_symbol, pair.now)
    pair.exchange_frames()
    pair.settle()
    assert venue.unsubscribed == [venue.book_topic]
    assert venue.requested == [venue.book_topic]
    assert proto.subscriptions == live_before  # still live: no state went back
    assert proto.state is AdapterState.LIVE
    assert not proto.resync_book("NOT-LISTED", pair.now)
    pair.end()
    assert not proto.resync_book(venue.book_symbol, pair.now)  # no session: next one will


# -- budgets -----------------------------------------------------------------------------


@pytest.mark.parametrize("exchange", WITH_BUDGET)
@pytest.mark.parametrize("symbols", [1, 7, 60, 512])
def test_requests_keep_the_exchange_budget(exchange: str, symbols: int) -> None:
    venue = VENUES[exchange]()
    symbols = min(symbols, venue.max_symbols)
    pair = AdapterPair(exchange, pair_values := venue.spec_for(symbols))
    assert pair_values["symbols"]
    everything: list[tuple[float, Frame]] = []
    for _ in range(2):  # a session, then a reconnect one second after it ended
        pair.start()
        pair.settle()
        assert set(pair.proto.subscriptions.values()) == {"live"}
        pair.venue.check_budget(pair.sent)
        everything += pair.sent
        pair.end(after=1.0)
    if pair.venue.per_ip:
        pair.venue.check_budget(everything)


# -- subscriptions changed at run time ---------------------------------------------------

#: A symbol each venue's exchange lists besides the spec's, in the form its config takes.
EXTRA_SYMBOL = {
    "binance": "SOL-USDT",
    "binance_usdm": "SOL-USDT-PERP",
    "bybit": "SOL-USDT",
    "bybit_linear": "SOL-USDT-PERP",
    "deribit": "SOL-USDC-PERP",
    "okx": "SOL-USDT",
}


@pytest.mark.parametrize("exchange", sorted(EXTRA_SYMBOL))
def test_a_run_time_subscribe_is_requested_confirmed_and_kept(exchange: str) -> None:
    pair = _started(exchange)
    before = set(pair.proto.subscriptions)
    pair.now += 5.0
    pair.proto.send(Subscribe(symbols=(EXTRA_SYMBOL[exchange],)), pair.now)
    assert pair.proto.state is AdapterState.SUBSCRIBING
    pair.venue.requested = []
    pair.exchange_frames()
    pair.settle()
    added = set(pair.proto.subscriptions) - before
    assert added and set(pair.venue.requested) == added  # only the new topics
    assert set(pair.proto.subscriptions.values()) == {"live"}
    assert pair.proto.state is AdapterState.LIVE
    pair.end()
    pair.start()
    pair.settle()
    assert set(pair.venue.requested) == before | added  # the next session keeps them


@pytest.mark.parametrize("exchange", sorted(EXTRA_SYMBOL))
def test_a_run_time_unsubscribe_ends_the_topics_for_good(exchange: str) -> None:
    pair = _started(exchange)
    venue = pair.venue
    symbol = venue.spec["symbols"][1]
    before = dict(pair.proto.subscriptions)
    pair.proto.send(Unsubscribe(symbols=(symbol,)), pair.now)
    pair.exchange_frames()
    pair.settle()
    dropped = set(before) - set(pair.proto.subscriptions)
    assert dropped and set(venue.unsubscribed) == dropped
    assert venue.book_topic not in dropped  # the first symbol's book stays
    assert pair.proto.state is AdapterState.LIVE
    pair.end()
    pair.start()
    pair.settle()
    assert set(venue.requested) == set(before) - dropped


@pytest.mark.parametrize("exchange", sorted(EXTRA_SYMBOL))
def test_an_invalid_change_raises_and_changes_nothing(exchange: str) -> None:
    pair = _started(exchange)
    before = dict(pair.proto.subscriptions)
    with pytest.raises(ConfigError, match=r"^Subscribe on connection 'c': connections\.c\."):
        pair.proto.send(Subscribe(channels=("candles",)), pair.now)
    assert pair.proto.frames_to_send() == []
    assert pair.proto.subscriptions == before
    assert pair.proto.state is AdapterState.LIVE


def test_every_adapter_with_symbols_is_tested_at_run_time() -> None:
    assert set(EXTRA_SYMBOL) == set(ADAPTERS) - {"raw"}


@pytest.mark.parametrize("exchange", sorted(EXTRA_SYMBOL))
def test_run_time_changes_keep_the_exchange_budget(exchange: str) -> None:
    # One Subscribe a second, each adding a symbol (so a request or more each), for as
    # many symbols as one connection may hold (OKX: more than its 480 requests an hour).
    pair = _started(exchange)
    venue = pair.venue
    start = len(venue.spec["symbols"])
    extra = venue.spec_for(venue.max_symbols)["symbols"][: venue.max_symbols - start]
    assert len(extra) > 480 or venue.max_symbols < 512
    for symbol in extra:
        pair.now += 1.0
        pair.proto.send(Subscribe(symbols=(symbol,)), pair.now)
        pair.exchange_frames()
        # Answer what is due by now; requests held back by the budget wait their turn.
        while pair.proto.next_release <= pair.now:
            pair.proto.tick(pair.now)
            pair.exchange_frames()
    pair.settle()
    assert set(pair.proto.subscriptions.values()) == {"live"}
    assert len(pair.proto.subscriptions) == len(pair.proto.topics())
    venue.check_budget(pair.sent)


#: Frames msgspec turns into UnicodeDecodeError or RecursionError rather than a
#: DecodeError (audit L3): invalid UTF-8 inside a binary frame's string, deep nesting.
HOSTILE = [
    b'{"stream":"btcusdt@trade","data":{"p":"\xff"}}',
    b'{"arg":{"channel":"trades","instId":"\xff"},"data":[]}',
    '{"a":' * 3000 + "1" + "}" * 3000,
    "[" * 3000 + "]" * 3000,
]


@pytest.mark.parametrize("frame", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("exchange", ALL)
def test_hostile_frames_are_malformed_never_an_exception(exchange: str, frame: str | bytes) -> None:
    pair = _started(exchange)
    assert pair.proto.receive_frame(frame, 1.0, RECEIVED_AT) == ()
    events = pair.proto.events()
    assert events and all(isinstance(event, MalformedFrame) for event in events)


@pytest.mark.parametrize(
    ("exchange", "symbol", "raw", "kept"),
    [
        ("binance", "BTC-USDT", "btcusdt@depth5", "btcusdt@depth@100ms"),
        ("binance_usdm", "BTC-USDT-PERP", "btcusdt@depth@500ms", "btcusdt@depth@100ms"),
        ("okx", "BTC-USDT", "books5:BTC-USDT", "books:BTC-USDT"),
        ("deribit", "BTC-USD-PERP", "book.BTC-PERPETUAL.agg2", "book.BTC-PERPETUAL.100ms"),
        ("bybit", "BTC-USDT", "orderbook.200.BTCUSDT", "orderbook.50.BTCUSDT"),
        ("bybit_linear", "BTC-USDT-PERP", "orderbook.1.BTCUSDT", "orderbook.50.BTCUSDT"),
    ],
)
def test_a_raw_topic_may_not_feed_a_kept_book_a_second_stream(
    exchange: str, symbol: str, raw: str, kept: str
) -> None:
    values = {"name": "c", "exchange": exchange, "channels": ["book"], "symbols": [symbol]}
    spec = msgspec.convert({**values, "raw": [raw]}, ConnectionSpec)
    assert ADAPTERS[exchange].check(spec) == [
        (
            "raw",
            f"{raw!r} delivers book messages of {symbol}, whose local book the book channel "
            f"keeps from {kept!r}, and one book cannot follow two streams (remove it from "
            "raw, or set book_sync = false to get both streams unchecked)",
        )
    ]
    # Unchecked, both streams are fine; so is a raw book of another symbol.
    unchecked = msgspec.convert({**values, "raw": [raw], "book_sync": False}, ConnectionSpec)
    assert ADAPTERS[exchange].check(unchecked) == []
    assert ADAPTERS[exchange].check(msgspec.convert(values, ConnectionSpec)) == []
