"""Smoke runs of bench/recovery.py and bench/scale.py at their smallest sizes.

They check that each benchmark runs and counts right (every cycle completed with the
fault it injected, every connection live again after the storm, every reconnect seen by
the server), never how fast: timings belong to BENCHMARKS.md, measured on a quiet machine.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _results(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def _table_labels(stdout: str) -> list[str]:
    return [line.split(" | ")[0] for line in stdout.splitlines() if line.startswith("| ")]


def test_recovery_runs_every_fault_and_counts_right() -> None:
    done = _run("recovery.py", "--cycles", "3", "--stale-after", "1", "--json")
    run = _results(done)
    results = run["results"]
    assert sorted(results) == ["close", "reset", "stall"]
    assert [len(results[kind]) for kind in ("close", "reset", "stall")] == [3, 3, 3]
    # Each fault was seen as what it was, and every reconnect waited the configured,
    # jitter-free backoff.
    assert {c["reason"] for c in results["close"]} == {"close 1001"}
    assert {c["reason"] for c in results["reset"]} == {"reset"}
    assert {c["reason"] for c in results["stall"]} == {"stale"}
    assert {c["delay"] for kind in results for c in results[kind]} == {0.1}
    # Causal order within a cycle (not a timing claim): the end is logged before the new
    # session is live, and it is live before its first trade reaches the consumer.
    for kind in results:
        for cycle in results[kind]:
            assert 0 < cycle["detect"] <= cycle["live"] <= cycle["first"]
    assert _table_labels(done.stdout) == [
        "| fault",
        "| ---",
        "| close frame 1001",
        "| TCP reset (SO_LINGER 0)",
        "| half-open stall",
    ]


def test_scale_runs_a_storm_and_counts_right() -> None:
    done = _run(
        "scale.py",
        "--connections",
        "20",
        "--per-host",
        "10",
        "--reps",
        "1",
        "--window",
        "0.5",
        "--json",
    )
    run = _results(done)
    assert (run["connections"], run["hosts"]) == (20, 2)
    trials = run["trials"]
    assert sorted(trials) == ["ours", "trio_ws"]
    for kind in ("ours", "trio_ws"):
        (trial,) = trials[kind]
        # The server dropped every connection and saw every one come back, once.
        assert (trial["dropped"], trial["accepts"]) == (20, 20)
        assert sum(trial["buckets"]) == 20
        # Two sessions per connection: the setup's and the storm's.
        assert trial["client_connects"] == 40
        assert trial["rss1"] > 0 and trial["rss0"] > 0
    # Every drop was noticed and its session's end handled (logged) once.
    assert len(trials["ours"][0]["ends"]) == 20
    assert trials["ours"][0]["max_delay"] <= 0.5  # the default backoff's first delay
    labels = _table_labels(done.stdout)
    assert labels.count("| ours: `open_supervisor`, binance adapter, `sup.batches()`") == 2
    assert labels.count("| trio-websocket `open_websocket` + `get_message()` per connection") == 2


def test_recovery_refuses_bad_arguments() -> None:
    done = _run("recovery.py", "--cycles", "0")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "recovery.py: error: --cycles must be 1 or more, got 0"
    done = _run("recovery.py", "--stale-after", "0.5")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "recovery.py: error: --stale-after must be at least 1 s (the config's minimum), got 0.5"
    )


def test_scale_refuses_bad_arguments() -> None:
    done = _run("scale.py", "--per-host", "301")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "scale.py: error: --per-host must be within [1, 300] (Binance's connect limit per "
        "5 minutes; more makes the setup itself wait for permits), got 301"
    )
    done = _run("scale.py", "--connections", "0")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "scale.py: error: --connections must be 1 or more, got 0"
