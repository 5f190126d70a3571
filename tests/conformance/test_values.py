"""Hostile values (audit L2): every adapter, every numeric field of its recorded frames.

For each registered adapter, every numeric field of every recorded frame (a JSON number,
or a string holding one, as Binance, OKX and Bybit send prices) is replaced in turn by
``NaN``, ``sNaN``, ``Infinity``, ``-Infinity``, ``-1`` and ``0`` (and ``2**64`` where the
field is an integer). The frame then goes to two adapters built from the same spec: the
real one, and an *oracle* whose message factory builds messages without checking them.
This file's own :func:`violations` judges the oracle's messages:

- if they are all valid, the value was legal there (a book level's size 0, a ticker's
  empty side, a field the messages do not carry, a trade id): the real adapter must
  deliver exactly the oracle's messages and events;
- otherwise it must deliver nothing and report exactly one ``MalformedFrame`` of kind
  ``invalid_value`` whose detail names the field and the value.

Either way ``receive_frame`` never raises. Named cases pin the decisions the rules make on
real fields, and a refused delta is shown to leave its book chain where it was.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Literal

import msgspec
import pytest

from actors import ConnectionSpec
from actors.exchanges import (
    ADAPTERS,
    BookDelta,
    BookSnapshot,
    ExchangeProtocol,
    Message,
    RawMessage,
    Ticker,
    Trade,
)
from actors.exchanges.messages import Level, MalformedFrame, SequenceGap
from actors.exchanges.sdk import protocol as sdk_protocol
from actors.exchanges.sdk.stamp import Stamp
from conformance.test_adapters import AdapterPair
from conformance.venues import VENUES

DATA = pathlib.Path(__file__).resolve().parent.parent / "data"
RECEIVED_AT = 1_700_000_000.0

#: Per adapter: a spec that routes its recorded frames, and the fixture directory. The
#: raw book topics of the channel's symbols route their recorded frames too; local books
#: (which refuse a second stream of one symbol) are tested in test_books_end_to_end.
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "binance": (
        {
            "channels": ["trades", "ticker", "book"],
            "symbols": ["BTC-USDT", "ETH-USDT", "BNBBTC", "NKNUSDT", "BNBUSDT"],
            "raw": ["btcusdt@aggTrade", "bnbbtc@depth5", "!ticker@arr"],
            "book_sync": False,
        },
        "binance",
    ),
    "binance_usdm": (
        {
            "channels": ["trades", "ticker", "book"],
            "symbols": ["BTC-USDT-PERP", "ETH-USDT-PERP", "SUSHIUSDT"],
            "raw": ["btcusdt@depth20@100ms"],
            "book_sync": False,
        },
        "binance",
    ),
    "okx": (
        {
            "channels": ["trades", "ticker", "book"],
            "symbols": ["BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-220527", "NEAR-USDT", "ETH-USDT"],
            "raw": ["books5:BTC-USDT", "bbo-tbt:BTC-USDT"],
            "book_sync": False,
        },
        "okx",
    ),
    "deribit": (
        {
            "channels": ["trades", "ticker", "book"],
            "symbols": ["BTC-PERPETUAL", "ETH-PERPETUAL"],
            "raw": [
                "trades.option.BTC.100ms",
                "platform_state",
                "deribit_price_index.btc_usd",
                "ticker.ETH-30JUL21-2800-C.100ms",
                "ticker.ETH-27AUG21-4000-P.100ms",
                "ticker.ETH-23JUL21-2300-C.100ms",
                "book.BTC-24SEP21-40000-P.100ms",
                "ticker.BTC-PERPETUAL.100ms",
            ],
        },
        "deribit",
    ),
    "bybit": ({"channels": ["trades", "ticker", "book"], "symbols": ["BTC-USDT"]}, "bybit"),
    "bybit_linear": (
        {"channels": ["trades", "book"], "symbols": ["BTC-USDT-PERP"], "raw": ["tickers.BTCUSDT"]},
        "bybit",
    ),
    "raw": ({"url": "wss://example.com/ws", "subscribe": ["{}"]}, "okx"),
}

_NUMERIC = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_TEXTS = ("NaN", "sNaN", "Infinity", "-Infinity", "-1", "0")
_BEYOND_64_BITS = 2**64


def test_every_adapter_has_a_value_case() -> None:
    assert set(CASES) == set(ADAPTERS)


# -- the oracle ------------------------------------------------------------------------


class UncheckedStamp(Stamp):
    """Builds messages exactly as given: what an adapter would deliver without checks."""

    def trade(
        self,
        received_at: float,
        symbol: str,
        side: Literal["buy", "sell"],
        price: Decimal,
        amount: Decimal,
        trade_id: str,
        timestamp: int,
    ) -> Trade:
        return Trade(
            connection=self.connection,
            exchange=self.exchange,
            received_at=received_at,
            symbol=symbol,
            side=side,
            price=price,
            amount=amount,
            trade_id=trade_id,
            timestamp=timestamp,
        )

    def ticker(
        self,
        received_at: float,
        symbol: str,
        bid: Decimal,
        bid_size: Decimal,
        ask: Decimal,
        ask_size: Decimal,
        timestamp: int | None,
    ) -> Ticker:
        return Ticker(
            connection=self.connection,
            exchange=self.exchange,
            received_at=received_at,
            symbol=symbol,
            bid=bid,
            bid_size=bid_size,
            ask=ask,
            ask_size=ask_size,
            timestamp=timestamp,
        )

    def snapshot(
        self,
        received_at: float,
        symbol: str,
        bids: tuple[Level, ...],
        asks: tuple[Level, ...],
        sequence: int | None,
        timestamp: int | None,
        *,
        checksum: int | None = None,
    ) -> BookSnapshot:
        return BookSnapshot(
            connection=self.connection,
            exchange=self.exchange,
            received_at=received_at,
            symbol=symbol,
            bids=bids,
            asks=asks,
            sequence=sequence,
            timestamp=timestamp,
            checksum=checksum,
        )

    def delta(
        self,
        received_at: float,
        symbol: str,
        bids: tuple[Level, ...],
        asks: tuple[Level, ...],
        sequence: int | None,
        prev_sequence: int | None,
        timestamp: int | None,
        *,
        checksum: int | None = None,
    ) -> BookDelta:
        return BookDelta(
            connection=self.connection,
            exchange=self.exchange,
            received_at=received_at,
            symbol=symbol,
            bids=bids,
            asks=asks,
            sequence=sequence,
            prev_sequence=prev_sequence,
            timestamp=timestamp,
            checksum=checksum,
        )


def _finite(value: object) -> bool:
    return isinstance(value, Decimal) and value.is_finite()


def _time_ok(value: int | None) -> bool:
    return value is None or 0 <= value < 2**63


def _seq_ok(value: int | None) -> bool:
    return value is None or 0 <= value < 2**64


def violations(message: Message) -> list[tuple[str, object]]:
    """``(field, value)`` for every value of ``message`` no market has (L2's rules)."""
    bad: list[tuple[str, object]] = []
    if isinstance(message, Trade):
        for field in ("price", "amount"):
            value = getattr(message, field)
            if not (_finite(value) and value > 0):
                bad.append((field, value))
        if not _time_ok(message.timestamp):
            bad.append(("timestamp", message.timestamp))
    elif isinstance(message, Ticker):
        for field in ("bid", "bid_size", "ask", "ask_size"):
            value = getattr(message, field)
            if not (_finite(value) and value >= 0):
                bad.append((field, value))
        if not _time_ok(message.timestamp):
            bad.append(("timestamp", message.timestamp))
    elif isinstance(message, (BookSnapshot, BookDelta)):
        for side in ("bids", "asks"):
            for index, (price, size) in enumerate(getattr(message, side)):
                if not (_finite(price) and price > 0):
                    bad.append((f"{side}[{index}] price", price))
                if not (_finite(size) and size >= 0):
                    bad.append((f"{side}[{index}] size", size))
        fields = ["sequence"] + (["prev_sequence"] if isinstance(message, BookDelta) else [])
        for field in fields:
            if not _seq_ok(getattr(message, field)):
                bad.append((field, getattr(message, field)))
        if not _time_ok(message.timestamp):
            bad.append(("timestamp", message.timestamp))
    else:
        assert isinstance(message, RawMessage)
        msgspec.json.encode(message.data)  # JSON values only: finite numbers
    return bad


def _adapter(exchange: str, monkeypatch: pytest.MonkeyPatch, *, checked: bool) -> ExchangeProtocol:
    values, _ = CASES[exchange]
    spec = msgspec.convert({"name": "v", "exchange": exchange, **values}, ConnectionSpec)
    assert ADAPTERS[exchange].check(spec) == []
    with monkeypatch.context() as patch:
        if not checked:
            patch.setattr(sdk_protocol, "Stamp", UncheckedStamp)
        proto = ADAPTERS[exchange](spec)
    proto.start_session(0.0)
    proto.frames_to_send()
    proto.events()
    return proto


# -- the frames ------------------------------------------------------------------------


def _recorded(directory: str) -> Iterator[tuple[str, Any]]:
    """``(file name, JSON value)`` of every recorded frame in ``tests/data/<directory>``."""
    for path in sorted((DATA / directory).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue  # the garbage samples: not a field to substitute
            if isinstance(value, dict) and "_synthetic_description" in value:
                continue
            if directory == "deribit":
                # The 2021 option captures came on .raw channels, which need a login this
                # adapter does not do; the same payloads come on .100ms.
                value = json.loads(line.replace(".raw", ".100ms"))
            yield path.name, value


def _numeric_leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numeric_leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numeric_leaves(item, (*path, index))
    elif isinstance(value, bool):
        return
    elif isinstance(value, (int, float)) or (isinstance(value, str) and _NUMERIC.fullmatch(value)):
        yield path


def _replaced(value: Any, path: tuple[Any, ...], new: object) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    return [_replaced(item, rest, new) if i == head else item for i, item in enumerate(value)]


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def _hostile(original: object) -> list[object]:
    """The values to try in place of ``original``, in its own JSON type where possible."""
    texts: list[object] = list(_TEXTS)
    if isinstance(original, str):
        if re.fullmatch(r"-?[0-9]+", original):
            texts.append(str(_BEYOND_64_BITS))
        return texts
    # A JSON number: NaN and the infinities have no JSON number form, so they go as the
    # strings msgspec also reads into a Decimal.
    numbers: list[object] = ["NaN", "sNaN", "Infinity", "-Infinity", -1, 0]
    if isinstance(original, int):
        numbers.append(_BEYOND_64_BITS)
    return numbers


def substitutions(directory: str) -> Iterator[tuple[str, tuple[Any, ...], object, str]]:
    """``(file, path, value, frame)``: each numeric field of each file (its first
    occurrence, array indexes generalized) with each hostile value."""
    seen: set[tuple[str, tuple[Any, ...]]] = set()
    for name, value in _recorded(directory):
        for path in _numeric_leaves(value):
            field = (name, tuple("*" if isinstance(step, int) else step for step in path))
            if field in seen:
                continue
            seen.add(field)
            for new in _hostile(_at(value, path)):
                frame = json.dumps(_replaced(value, path, new), separators=(",", ":"))
                yield name, path, new, frame


def _feed(proto: ExchangeProtocol, frame: str) -> tuple[tuple[Message, ...], list[Any]]:
    proto.chains.clear()  # each frame on its own: no gap from the frame before
    batch = proto.receive_frame(frame, 1.0, RECEIVED_AT)
    events = proto.events()
    proto.frames_to_send()
    return batch, events


# -- the suite -------------------------------------------------------------------------


@pytest.mark.parametrize("exchange", sorted(ADAPTERS))
def test_every_numeric_field_takes_hostile_values(
    exchange: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = _adapter(exchange, monkeypatch, checked=True)
    oracle = _adapter(exchange, monkeypatch, checked=False)
    outcomes: Counter[str] = Counter()
    for name, path, new, frame in substitutions(CASES[exchange][1]):
        where = f"{name} {path} = {new!r}"
        batch, events = _feed(checked, frame)  # never raises
        expected_batch, expected_events = _feed(oracle, frame)
        bad = [problem for message in expected_batch for problem in violations(message)]
        if not bad:
            assert (batch, events) == (expected_batch, expected_events), where
            outcomes["accepted" if batch else "no messages"] += 1
            continue
        assert batch == (), where
        assert len(events) == 1 and isinstance(events[0], MalformedFrame), where
        [event] = events
        field, value = bad[0]
        assert event.kind == "invalid_value", where
        assert f" {field} {value} " in event.detail, (where, event.detail)
        assert event.sample == frame[:200]
        outcomes["refused"] += 1
    if exchange == "raw":
        # Any JSON value is a raw message: nothing is refused, everything delivered.
        assert set(outcomes) == {"accepted"}
    else:
        assert outcomes["refused"] > 0 and outcomes["accepted"] > 0, outcomes


def _first_frame(directory: str, file: str, contains: str) -> Any:
    for name, value in _recorded(directory):
        if name == file and contains in json.dumps(value, separators=(",", ":")):
            return value
    raise LookupError(f"no frame in {directory}/{file} contains {contains!r}")


# (exchange, fixture file, a text the frame contains, path, value, refused?)
NAMED: list[tuple[str, str, str, tuple[Any, ...], object, bool]] = [
    # A book level's size 0 removes the level; its price must still be above 0.
    ("binance", "spot_depth_diff_nknusdt_combined.jsonl", "depthUpdate",
     ("data", "b", 0, 1), "0", False),
    ("binance", "spot_depth_diff_nknusdt_combined.jsonl", "depthUpdate",
     ("data", "b", 0, 0), "0", True),
    ("binance", "spot_depth_diff_nknusdt_combined.jsonl", "depthUpdate",
     ("data", "b", 0, 1), "-1", True),
    ("okx", "books_seqid_2025_truncated.jsonl", '"action":"update"',
     ("data", 0, "bids", 0, 1), "0", False),
    ("okx", "books_seqid_2025_truncated.jsonl", '"action":"update"',
     ("data", 0, "bids", 0, 0), "sNaN", True),
    ("deribit", "book_100ms_synthetic.jsonl", '"type":"change"',
     ("params", "data", "bids", 0, 2), 0, False),
    ("bybit", "spot_orderbook50.jsonl", '"type":"delta"', ("data", "b", 0, 1), "0", False),
    # -0 equals 0: a legal size (and ticker price), never a price above 0.
    ("binance", "spot_depth_diff_nknusdt_combined.jsonl", "depthUpdate",
     ("data", "b", 0, 1), "-0", False),
    ("binance", "spot_depth_diff_nknusdt_combined.jsonl", "depthUpdate",
     ("data", "b", 0, 0), "-0.0", True),
    ("deribit", "ticker_and_quote_btc_perpetual_2025.jsonl", "quote.BTC-PERPETUAL",
     ("params", "data", "best_ask_amount"), -0.0, False),
    # A trade's price and amount are above 0.
    ("binance", "spot_trade.jsonl", '"e":"trade"', ("data", "q"), "0", True),
    ("okx", "trades_2022.jsonl", '"channel":"trades"', ("data", 0, "px"), "Infinity", True),
    ("deribit", "trades_100ms_btc_perpetual_2025.jsonl", "trades", ("params", "data", 0,
     "amount"), -1, True),
    ("bybit", "spot_trades.jsonl", "publicTrade", ("data", 0, "p"), "NaN", True),
    # Deribit reports an empty book side as a 0 best bid/ask: a legal ticker.
    ("deribit", "ticker_and_quote_btc_perpetual_2025.jsonl", "quote.BTC-PERPETUAL",
     ("params", "data", "best_bid_price"), 0, False),
    ("deribit", "ticker_and_quote_btc_perpetual_2025.jsonl", "quote.BTC-PERPETUAL",
     ("params", "data", "best_bid_price"), -1, True),
    # Fields the messages do not carry may be negative: a 24 h price change, funding.
    ("deribit", "ticker_and_quote_btc_perpetual_2025.jsonl", "ticker.BTC-PERPETUAL",
     ("params", "data", "stats", "price_change"), -1, False),
    ("deribit", "ticker_and_quote_btc_perpetual_2025.jsonl", "ticker.BTC-PERPETUAL",
     ("params", "data", "current_funding"), -1, False),
    ("bybit_linear", "linear_tickers.jsonl", "tickers.BTCUSDT",
     ("data", "fundingRate"), "-0.0001", False),
    # Timestamps and sequence ids.
    ("okx", "trades_2022.jsonl", '"channel":"trades"', ("data", 0, "ts"), "-1", True),
    ("binance_usdm", "usdm_2026_combined.jsonl", "depthUpdate", ("data", "u"),
     2**64, True),
    ("binance", "spot_depth_diff_nknusdt_combined.jsonl", "depthUpdate", ("data", "U"), 0, True),
    ("okx", "books_seqid_2025_truncated.jsonl", '"action":"update"', ("data", 0, "seqId"), -1,
     True),
]  # fmt: skip


@pytest.mark.parametrize(("exchange", "file", "contains", "path", "value", "refused"), NAMED)
def test_named_decisions(
    exchange: str,
    file: str,
    contains: str,
    path: tuple[Any, ...],
    value: object,
    refused: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = CASES[exchange][1]
    original = _first_frame(directory, file, contains)
    assert isinstance(_at(original, path), (str, int, float))  # the field exists
    frame = json.dumps(_replaced(original, path, value), separators=(",", ":"))
    proto = _adapter(exchange, monkeypatch, checked=True)
    batch, events = _feed(proto, frame)
    kinds = [e.kind for e in events if isinstance(e, MalformedFrame)]
    if refused:
        assert (batch, kinds) == ((), ["invalid_value"])
    else:
        assert batch and kinds == []


def test_the_detail_names_the_message_the_field_and_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = _first_frame("binance", "spot_trade.jsonl", '"e":"trade"')
    proto = _adapter("binance", monkeypatch, checked=True)
    frame = json.dumps(_replaced(original, ("data", "p"), "sNaN"), separators=(",", ":"))
    assert _feed(proto, frame) == (
        (),
        [
            MalformedFrame(
                kind="invalid_value",
                detail="trade BTC-USDT price sNaN is not a finite number "
                "(expected a finite number above 0)",
                sample=frame[:200],
            )
        ],
    )
    frame = json.dumps(_replaced(original, ("data", "T"), -5), separators=(",", ":"))
    [event] = _feed(proto, frame)[1]
    assert isinstance(event, MalformedFrame)
    assert event.detail == (
        "trade BTC-USDT timestamp -5 is negative (expected Unix milliseconds in [0, 2**63))"
    )


_TIME_KEYS = frozenset({"E", "T", "ts", "timestamp"})


def _with_negative_time(frame: str | bytes) -> str:
    """``frame`` with every timestamp field set to -1 (as a string where it was one)."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (("-1" if isinstance(v, str) else -1) if k in _TIME_KEYS else walk(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return json.dumps(walk(json.loads(frame)), separators=(",", ":"))


@pytest.mark.parametrize("exchange", sorted(e for e in ADAPTERS if VENUES[e].book_topic))
def test_a_refused_delta_leaves_the_chain_so_the_next_one_reports_the_gap(
    exchange: str,
) -> None:
    pair = AdapterPair(exchange)
    pair.start()
    pair.settle()
    venue = pair.venue
    *head, refused, after = venue.book(100, 3)
    for frame in head:
        pair.feed(frame)
    assert [e for e in pair.proto.events() if isinstance(e, SequenceGap)] == []
    last = [m for m in pair.delivered if isinstance(m, BookDelta)][-1]
    assert pair.feed(_with_negative_time(refused)) == ()
    assert [type(e) for e in pair.proto.events()] == [MalformedFrame]
    [delta] = pair.feed(after)
    assert isinstance(delta, BookDelta)
    assert pair.proto.events() == [
        SequenceGap(symbol=venue.book_symbol, expected=last.sequence, received=delta.prev_sequence)
    ]
