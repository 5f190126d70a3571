"""Smoke run of bench/depth_path.py (depth streams): every client runs and counts right.

No timing is asserted. Each client of the script receives the whole generated stream of
each venue from the script's server in a fresh process and checks the end itself (a
failed check exits non-zero): the last sequence is the stream's, no ``BookInvalid``
arrived (so every OKX CRC32 and every chain link verified), the number of book messages
is right, and with ``book_sync = true`` the local book is valid at the last sequence with
its 25 best levels a side equal to the generator's (cryptofeed's row, when it is
installed, checks its own book the same way). The adapter micro-benchmark checks its last
``BookDelta``. Here: the run succeeds, every row is there, and the table counts
the frames it was asked for.
"""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def test_depth_path_runs_every_client_of_both_streams_to_the_end() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "depth_path.py"), "--n", "60", "--reps", "1", "--no-pin"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    titles = [line.partition(":")[0] for line in lines if line.startswith("**")]
    assert titles == [
        "**OKX `books`, 400-level snapshot then updates, CRC32 checksums**",
        "**Binance spot diff depth (`depthUpdate`), REST snapshot of 1000 levels**",
    ]
    assert sum(": 60 frames, " in line for line in lines if line.startswith("**")) == 2
    rows = [line.split(" | ")[0] for line in lines if line.startswith("| ")]
    clients = [
        "| ours, `book_sync = true`: `sup.messages()`",
        "| ours, `book_sync = false`: `sup.messages()`",
        "| websockets `recv()` + `msgspec.json.decode`",
    ]
    if importlib.util.find_spec("picows"):
        clients.append("| picows `on_ws_frame` + `msgspec.json.decode`")
    micro = [
        "| adapter `receive_frame` → `BookSnapshot`/`BookDelta` (no book)",
        "| `msgspec.json.decode(frame)` → `dict`",
        "| typed decode, levels as `Decimal`",
        "| typed decode, levels as `str`",
    ]
    binance_clients = list(clients)
    if importlib.util.find_spec("cryptofeed"):
        binance_clients.append(
            "| cryptofeed `FeedHandler` + `Binance` feed, `L2_BOOK` (its own book)"
        )
    micro_head = ["| micro-benchmark (no I/O), same frames", "| ---"]
    assert rows == [
        *["| client", "| ---", *clients, *micro_head, *micro],
        *["| client", "| ---", *binance_clients, *micro_head, *micro],
    ]
    assert sum(line.startswith("`Decimal` construction") for line in lines) == 2


def test_too_few_frames_is_refused_with_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "depth_path.py"), "--n", "1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--n: must be at least 2, got 1" in done.stderr
    assert "Traceback" not in done.stderr
