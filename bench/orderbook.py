"""Microseconds per book update: the local book and its sync, on recorded streams.

Replays, many times over, already decoded messages (the adapters' cost is in
``receive_path.py``) of:

- ``okx``: the 2022 OKX BTC-USDT recording: one 400-level snapshot and 97 updates
  (about 30 levels each), every one checked against its CRC32 checksum;
- ``okx-nochecksum``: the same with the checksums zeroed (OKX since 2026-06-23);
- ``binance``: 150 recorded NKN-USDT diffs (about 8 levels each) on their REST snapshot
  (about 1,000 levels a side).

For each: ``OrderBook.apply`` alone, ``BookSync.on_delta`` (chain check, apply,
crossed check, checksum when non-zero, the delivered message), and
``BookKeeper.process`` of a one-delta batch (what the connection adds per frame: the
dispatch by symbol, the refresh clock, the new batch). Only the updates are
timed (the snapshot is loaded before each replay). Median of ``--reps`` repetitions of
``--rounds`` replays each; CPU time (``time.process_time``).

Usage::

    python bench/orderbook.py [--rounds 200] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import msgspec

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from actors.books import BookKeeper  # noqa: E402
from actors.exchanges.messages import BookDelta, BookSnapshot  # noqa: E402
from actors.exchanges.sdk.booksync import BINANCE_SPOT, OKX, BookSync, SyncRule  # noqa: E402
from actors.exchanges.sdk.orderbook import OrderBook  # noqa: E402

DATA = HERE.parent / "tests" / "data"


def okx_messages() -> tuple[BookSnapshot, list[BookDelta]]:
    snapshot: BookSnapshot | None = None
    deltas: list[BookDelta] = []
    for line in (DATA / "okx" / "books_btc_usdt_2022_checksum.jsonl").read_text().splitlines():
        frame = json.loads(line)
        entry = frame["data"][0]
        bids = tuple((Decimal(p), Decimal(s)) for p, s, *_ in entry["bids"])
        asks = tuple((Decimal(p), Decimal(s)) for p, s, *_ in entry["asks"])
        common = {"connection": "c", "exchange": "okx", "received_at": 0.0, "symbol": "BTC-USDT"}
        if frame["action"] == "snapshot":
            snapshot = BookSnapshot(
                **common,
                bids=bids,
                asks=asks,
                sequence=None,
                timestamp=int(entry["ts"]),
                checksum=entry["checksum"],
            )
        else:
            deltas.append(
                BookDelta(
                    **common,
                    bids=bids,
                    asks=asks,
                    sequence=None,
                    prev_sequence=None,
                    timestamp=int(entry["ts"]),
                    checksum=entry["checksum"],
                )
            )
    assert snapshot is not None
    return snapshot, deltas


def binance_messages() -> tuple[BookSnapshot, list[BookDelta]]:
    body = json.loads(
        (DATA / "binance" / "spot_rest_depth_snapshot_nknusdt_limit1000.json").read_text()
    )
    common = {"connection": "c", "exchange": "binance", "received_at": 0.0, "symbol": "NKN-USDT"}
    snapshot = BookSnapshot(
        **common,
        bids=tuple((Decimal(p), Decimal(q)) for p, q in body["bids"]),
        asks=tuple((Decimal(p), Decimal(q)) for p, q in body["asks"]),
        sequence=body["lastUpdateId"],
        timestamp=None,
    )
    deltas = []
    lines = (DATA / "binance" / "spot_depth_diff_nknusdt_combined.jsonl").read_text().splitlines()
    for line in lines:
        event = json.loads(line)["data"]
        if event["u"] <= body["lastUpdateId"]:
            continue
        deltas.append(
            BookDelta(
                **common,
                bids=tuple((Decimal(p), Decimal(q)) for p, q in event["b"]),
                asks=tuple((Decimal(p), Decimal(q)) for p, q in event["a"]),
                sequence=event["u"],
                prev_sequence=event["U"] - 1,
                timestamp=event["E"],
            )
        )
    return snapshot, deltas


#: A round: set up (not timed), then the timed replay of every update.
Round = Callable[[], Callable[[], None]]


def per_update(prepare: Round, updates: int, rounds: int, reps: int) -> list[float]:
    """µs per update over ``rounds`` timed replays of ``updates`` updates, per rep."""
    out = []
    for _ in range(reps):
        spent = 0.0
        for _ in range(rounds):
            run = prepare()
            start = time.process_time()
            run()
            spent += time.process_time() - start
        out.append(spent / (rounds * updates) * 1e6)
    return out


def book_only(snapshot: BookSnapshot, deltas: list[BookDelta]) -> Round:
    def prepare() -> Callable[[], None]:
        book = OrderBook()
        book.load(snapshot.bids, snapshot.asks)

        def run() -> None:
            for delta in deltas:
                book.apply(delta.bids, delta.asks)

        return run

    return prepare


def synced(rule: SyncRule, snapshot: BookSnapshot, deltas: list[BookDelta]) -> Round:
    def prepare() -> Callable[[], None]:
        sync = BookSync(rule)
        sync.snapshot_requested()
        sync.on_snapshot(snapshot)

        def run() -> None:
            for delta in deltas:
                sync.on_delta(delta)
            assert sync.resyncs == 0, sync.reason

        return run

    return prepare


def kept(rule: SyncRule, snapshot: BookSnapshot, deltas: list[BookDelta]) -> Round:
    def prepare() -> Callable[[], None]:
        keeper = BookKeeper("c", "x", rule, [snapshot.symbol], refresh=600.0)
        sync = keeper.syncs[snapshot.symbol]
        sync.snapshot_requested()
        sync.on_snapshot(snapshot)
        batches = [(delta,) for delta in deltas]
        process = keeper.process

        def run() -> None:
            for batch in batches:
                process(batch)
            assert sync.resyncs == 0, sync.reason

        return run

    return prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    okx_snapshot, okx_deltas = okx_messages()
    zeroed = [msgspec.structs.replace(d, checksum=0) for d in okx_deltas]
    okx_zero = msgspec.structs.replace(okx_snapshot, checksum=0)
    nkn_snapshot, nkn_deltas = binance_messages()
    cases = [
        ("okx", "OrderBook.apply", book_only(okx_snapshot, okx_deltas), len(okx_deltas)),
        (
            "okx",
            "BookSync.on_delta + CRC32",
            synced(OKX, okx_snapshot, okx_deltas),
            len(okx_deltas),
        ),
        ("okx-nochecksum", "BookSync.on_delta", synced(OKX, okx_zero, zeroed), len(zeroed)),
        ("okx-nochecksum", "BookKeeper.process", kept(OKX, okx_zero, zeroed), len(zeroed)),
        ("binance", "OrderBook.apply", book_only(nkn_snapshot, nkn_deltas), len(nkn_deltas)),
        (
            "binance",
            "BookSync.on_delta",
            synced(BINANCE_SPOT, nkn_snapshot, nkn_deltas),
            len(nkn_deltas),
        ),
        (
            "binance",
            "BookKeeper.process",
            kept(BINANCE_SPOT, nkn_snapshot, nkn_deltas),
            len(nkn_deltas),
        ),
    ]
    levels = {
        "okx": sum(len(d.bids) + len(d.asks) for d in okx_deltas) / len(okx_deltas),
        "binance": sum(len(d.bids) + len(d.asks) for d in nkn_deltas) / len(nkn_deltas),
    }
    levels["okx-nochecksum"] = levels["okx"]
    print(f"python {sys.version.split()[0]}, {args.rounds} rounds x {args.reps} reps")
    print("| stream | what | levels per update | µs per update (median [min-max]) |")
    print("| --- | --- | ---: | ---: |")
    for stream, what, run, updates in cases:
        got = per_update(run, updates, args.rounds, args.reps)
        print(
            f"| {stream} | {what} | {levels[stream]:.1f} | "
            f"{statistics.median(got):.2f} [{min(got):.2f}-{max(got):.2f}] |"
        )


if __name__ == "__main__":
    main()
