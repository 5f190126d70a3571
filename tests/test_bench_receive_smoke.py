"""Smoke run of bench/receive_path.py (throughput): every client runs and counts right.

No timing is asserted: each client of the script receives all ``N`` trade frames from the
script's server in a fresh process and checks the last one itself (a wrong count or a
wrong last message fails the run with a non-zero exit), and the adapter micro-benchmark
checks its last ``Trade``. Here: the run succeeds, and the table has one row per client.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def test_receive_path_runs_every_client_to_the_last_frame() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "receive_path.py"), "--n", "2000", "--reps", "1", "--no-pin"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split(" | ")[0] for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[2:11] == [
        "| ours: `sup.messages()`",
        "| ours: `sup.batches()`",
        '| ours, `transport = "reference"`: `sup.messages()`',
        "| trio-websocket `get_message()` + adapter `receive_frame`",
        "| trio-websocket `get_message()`, no decode",
        "| websockets `recv()`, no decode",
        "| websockets `recv()` + `msgspec.json.decode`",
        "| aiohttp `receive()` + `msgspec.json.decode`",
        "| picows `on_ws_frame` + `msgspec.json.decode`",
    ]
    assert "| Binance adapter `receive_frame(frame, 0.0, 0.0)` → `Trade`" in rows
