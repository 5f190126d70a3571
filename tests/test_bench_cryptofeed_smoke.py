"""Smoke run of bench/receive_path.py's ``cryptofeed`` row: it runs and counts right.

No timing is asserted. The row's client runs cryptofeed's ``FeedHandler`` with its
``Binance`` feed against the script's server in a fresh process and checks itself that
exactly ``N`` ``Trade`` objects arrived, the last one with the last aggregate trade id
and price (a wrong count or last trade fails the run with a non-zero exit). cryptofeed
is not in the ``test`` extra (a C build of about a minute), so CI skips this unless it
is installed.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def test_cryptofeed_row_receives_every_trade_to_the_last() -> None:
    pytest.importorskip("cryptofeed", reason="cryptofeed is not installed (pip install cryptofeed)")
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "receive_path.py"),
            *("--n", "2000", "--reps", "1", "--no-pin", "--clients", "cryptofeed"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split(" | ")[0] for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[2:3] == [
        "| cryptofeed `FeedHandler` + `Binance` feed → `Trade` (aggTrade frames)",
    ]


def test_clients_names_an_unknown_client_and_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "receive_path.py"), "--clients", "cryptofeed,nope"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--clients: unknown client 'nope'" in done.stderr
    assert "Traceback" not in done.stderr
