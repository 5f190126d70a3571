"""Smoke run of bench/aio_path.py (the asyncio front door's cost): every client counts right.

No timing is asserted: each client receives all ``N`` trade frames from receive_path's
server in a fresh process and checks the count and the last ``Trade`` itself (a wrong one
fails the run with a non-zero exit). Here: the run succeeds, and the table has one row per
client (uvloop's only where uvloop is installed).
"""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def test_aio_path_runs_every_client_to_the_last_frame() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "aio_path.py"), "--n", "2000", "--reps", "1", "--no-pin"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split(" | ")[0] for line in done.stdout.splitlines() if line.startswith("| ")]
    expected = [
        "| ours on Trio: `supervisor.open_supervisor`, `sup.messages()`",
        "| ours on asyncio: `supervisor.aio.open_supervisor`, `sup.messages()`",
    ]
    costs = ["- guest-mode cost, asyncio: "]
    if importlib.util.find_spec("uvloop") is not None:
        expected.append("| ours on uvloop: `supervisor.aio.open_supervisor`, `sup.messages()`")
        costs.append("- guest-mode cost, uvloop: ")
    assert rows[2:] == expected
    lines = done.stdout.splitlines()
    assert [next(line for line in lines if line.startswith(c))[: len(c)] for c in costs] == costs
