"""The consumer queue's size estimate against the memory batches really hold (audit M8).

``batch_bytes`` must stay within a factor of 2 of what ``tracemalloc`` measures for the
batches every adapter builds from its recorded frames, for a deep book (the audit's
case: a 4 MiB OKX book frame) and for big raw frames, or the byte budget bounds nothing.
"""

from __future__ import annotations

import gc
import json
import pathlib
import tracemalloc
from typing import Any

import msgspec
import pytest

from actors import ConnectionSpec
from actors.consumer_queue import batch_bytes, json_bytes
from actors.exchanges import ADAPTERS, Batch, ExchangeProtocol

DATA = pathlib.Path(__file__).resolve().parent / "data"
#: Copies of each frame decoded and kept, so per-batch costs dominate the measurement.
COPIES = 20


def adapter(exchange: str, **values: Any) -> ExchangeProtocol:
    spec = msgspec.convert({"name": "q", "exchange": exchange, **values}, ConnectionSpec)
    proto = ADAPTERS[exchange](spec)
    proto.start_session(0.0)
    proto.frames_to_send()
    proto.events()
    return proto


def measured(proto: ExchangeProtocol, frames: list[str], copies: int = COPIES) -> tuple[int, int]:
    """(bytes tracemalloc counts as held by the batches, their batch_bytes), over
    ``copies`` decodes of every frame that yields messages."""
    frames = [f for f in frames if proto.receive_frame(f, 1.0, 1.0)]  # warm every route
    proto.events()
    assert frames
    kept: list[Batch] = []
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for copy in range(copies):
            for frame in frames:
                proto.chains.clear()
                kept.append(proto.receive_frame(frame, 1.0, 1_700_000_000.0 + copy))
        proto.events()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    held -= 8 * len(kept)  # the list of kept batches is the test's, not theirs
    return held, sum(batch_bytes(batch) for batch in kept)


def lines(directory: str, name: str) -> list[str]:
    """The first 30 frames of a recorded file."""
    text = (DATA / directory / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()][:30]


SPECS: dict[str, dict[str, Any]] = {
    "binance": {
        "channels": ["trades", "ticker", "book"],
        "symbols": ["BTC-USDT", "BNBBTC", "NKNUSDT", "BNBUSDT"],
        "raw": ["nknusdt@aggTrade", "bnbbtc@depth5"],
    },
    "okx": {
        "channels": ["trades", "ticker", "book"],
        "symbols": ["BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-220527", "NEAR-USDT"],
        "raw": ["bbo-tbt:BTC-USDT", "books5:BTC-USDT"],
    },
    "deribit": {
        "channels": ["trades", "ticker", "book"],
        "symbols": ["BTC-PERPETUAL"],
        "raw": ["book.BTC-24SEP21-40000-P.100ms"],
    },
    "bybit": {"channels": ["trades", "ticker", "book"], "symbols": ["BTC-USDT"]},
    "raw": {"url": "wss://example.com/ws", "subscribe": ["{}"]},
}

FILES: list[tuple[str, str, str]] = [
    ("binance", "binance", "spot_trade.jsonl"),
    ("binance", "binance", "spot_aggTrade_combined.jsonl"),
    ("binance", "binance", "spot_bookTicker_combined.jsonl"),
    ("binance", "binance", "spot_depth_diff_nknusdt_combined.jsonl"),
    ("okx", "okx", "trades_2025.jsonl"),
    ("okx", "okx", "tickers_2025.jsonl"),
    ("okx", "okx", "books_btc_usdt_2022_checksum.jsonl"),
    ("okx", "okx", "books_seqid_2025_truncated.jsonl"),
    ("okx", "okx", "bbo_tbt_2025.jsonl"),
    ("deribit", "deribit", "trades_100ms_btc_perpetual_2025.jsonl"),
    ("deribit", "deribit", "ticker_and_quote_btc_perpetual_2025.jsonl"),
    ("deribit", "deribit", "book_100ms_synthetic.jsonl"),
    ("bybit", "bybit", "spot_trades.jsonl"),
    ("bybit", "bybit", "spot_orderbook50.jsonl"),
    ("raw", "okx", "tickers_2025.jsonl"),
    ("raw", "binance", "spot_depth_diff_nknusdt_combined.jsonl"),
    ("raw", "deribit", "ticker_raw_options_2021.jsonl"),
]


@pytest.mark.parametrize(("exchange", "directory", "name"), FILES)
def test_the_estimate_is_within_2x_of_recorded_batches(
    exchange: str, directory: str, name: str
) -> None:
    held, estimate = measured(adapter(exchange, **SPECS[exchange]), lines(directory, name))
    assert held / 2 <= estimate <= held * 2, (held, estimate)


def okx_book(levels: int) -> str:
    """An OKX books update with ``levels`` levels per side (the audit's frame shape)."""
    level = '["30246.1","0.00107854","0","2"]'
    side = ",".join([level] * levels)
    data = f'[{{"asks":[{side}],"bids":[{side}],"ts":"1","seqId":2,"prevSeqId":1}}]'
    return f'{{"arg":{{"channel":"books","instId":"BTC-USDT"}},"action":"update","data":{data}}}'


def test_the_estimate_is_within_2x_for_a_deep_book() -> None:
    held, estimate = measured(adapter("okx", **SPECS["okx"]), [okx_book(2000)], copies=2)
    assert held / 2 <= estimate <= held * 2, (held, estimate)
    assert estimate == 2 * (64 + 8 + 250 + 272 * 4000)


def ticker_array(count: int) -> str:
    """A Binance ``!ticker@arr``-like frame: ``count`` objects of 23 fields."""
    entry = {
        "e": "24hrTicker", "E": 1672515782136, "p": "0.0015", "P": "250.00",
        "w": "0.0018", "x": "0.0009", "c": "0.0025", "Q": "10", "b": "0.0024", "B": "10",
        "a": "0.0026", "A": "100", "o": "0.0010", "h": "0.0025", "l": "0.0010",
        "v": "10000", "q": "18", "O": 0, "C": 86400000, "F": 0, "L": 18150, "n": 18151,
    }  # fmt: skip
    return json.dumps([{**entry, "s": f"SYM{i}USDT"} for i in range(count)])


@pytest.mark.parametrize(
    "frame",
    [
        ticker_array(2000),
        json.dumps([[1.5 * i, 2.5 * i] for i in range(20_000)]),  # numbers only
        json.dumps({"text": ["x" * 1000] * 500}),  # long strings
        json.dumps([{"a": [{"b": [i, str(i)]}]} for i in range(3000)]),  # nested
    ],
    ids=["ticker-array", "numbers", "strings", "nested"],
)
def test_the_estimate_is_within_2x_for_big_raw_frames(frame: str) -> None:
    held, estimate = measured(adapter("raw", **SPECS["raw"]), [frame], copies=2)
    assert held / 2 <= estimate <= held * 2, (held, estimate)


def test_a_raw_value_costs_a_bounded_walk_whatever_its_depth() -> None:
    deep: Any = 0
    for _ in range(900):  # deeper than the recursion a walk could afford here
        deep = [deep]
    assert json_bytes(deep) == 900 * (56 + 8) + 32
    wide = [[list(range(100)) for _ in range(100)] for _ in range(100)]  # 10**6 ints
    # 100 of 100 of 100: sampled 16 per level and scaled back up, exactly.
    assert json_bytes(wide) == (56 + 800) * (1 + 100 + 100**2) + 32 * 100**3
