"""Smoke runs of bench/latency.py and bench/paced.py: they run and count right.

No timing is asserted (CI machines are shared): each script runs its smallest shape in a
subprocess with ``--read-all`` (every client reads every frame even if it fell behind,
so the counts are exact whatever the timing) and ``--json``; the tests check that every
client received exactly what the server sent, that the measuring window held what it
should, and that the percentiles are ordered.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"
CLIENTS = ["ours", "trio_ws", "websockets"]


def run_bench(script: str, *args: str, tmp_path: pathlib.Path) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(out.read_text())
    return done.stdout, results


def test_latency_runs_and_counts_right(tmp_path: pathlib.Path) -> None:
    # 200 msgs/s: 0.5 s warm-up (100 frames), 1 s window (200), 0.5 s tail (100).
    stdout, results = run_bench(
        "latency.py",
        *("--rates", "200", "--warmup", "0.5", "--duration", "1", "--reps", "1"),
        "--read-all",
        tmp_path=tmp_path,
    )
    assert sorted(results["trials"]) == ["ours@200", "trio_ws@200", "websockets@200"]
    for kind in CLIENTS:
        [trial] = results["trials"][f"{kind}@200"]
        assert trial["server"]["sent"] == 400, kind
        assert trial["received"] == 400, kind
        assert trial["window_messages"] == 200, kind
        assert trial["server"]["left_early"] == 0, kind
        assert trial["server"]["closed"] == 1, kind
        assert 0 < trial["p50_us"] <= trial["p99_us"] <= trial["p999_us"] <= trial["max_us"]
        assert trial["cpu_us"] > 0, kind
    ours = results["trials"]["ours@200"][0]
    assert 0 < ours["in_process_p50_us"] <= ours["in_process_p99_us"]
    # One table row per client, and ours' in-process note.
    assert "## Latency: " in stdout
    assert [line.split(" | ")[1] for line in stdout.splitlines() if line.startswith("| 200")] == [
        "ours: `sup.messages()`",
        "trio-websocket `get_message()` + msgspec",
        "websockets `recv()` + msgspec",
    ]
    assert "- 200 msgs/s: ours' in-process part" in stdout


def test_paced_runs_and_counts_right(tmp_path: pathlib.Path) -> None:
    # 2 connections x 100 msgs/s for 0.5 + 1 + 1 s: 250 frames per connection.
    stdout, results = run_bench(
        "paced.py",
        *("--connections", "2", "--rate", "100", "--warmup", "0.5", "--duration", "1"),
        *("--reps", "1", "--read-all"),
        tmp_path=tmp_path,
    )
    assert results["frames"] == 250
    assert sorted(results["trials"]) == sorted(CLIENTS)
    for kind in CLIENTS:
        [trial] = results["trials"][kind]
        assert trial["server"]["sent"] == 500, kind
        assert trial["received"] == 500, kind
        assert trial["complete"] is True, kind
        assert trial["server"]["connections"] == 2, kind
        assert trial["server"]["left_early"] == 0, kind
        assert trial["server"]["closed"] == 2, kind
        assert trial["server"]["resets"] == 0, kind
        assert 0 < trial["messages"] < 500, kind
        assert trial["cpu"] > 0 and trial["wall"] > 0, kind
    assert results["trials"]["ours"][0]["frames_read_rate"] > 0
    assert "## CPU at paced rates: " in stdout
    assert [line.split(" | ")[0] for line in stdout.splitlines() if line.startswith("| ")] == [
        "| client",
        "| ---",
        "| ours: `sup.messages()`",
        "| trio-websocket `get_message()` + msgspec",
        "| websockets `recv()` + msgspec",
    ]


def test_bad_arguments_exit_2_with_the_input_named() -> None:
    cases = [
        (
            "latency.py",
            ["--rates", "1k,0"],
            "argument --rates: expected positive rates like 1k,10k,50k, got '1k,0'",
        ),
        ("latency.py", ["--reps", "0"], "argument --reps: --reps must be 1 or more, got '0'"),
        (
            "latency.py",
            ["--rates", "1", "--duration", "1"],
            "--duration 1 s at 1 msgs/s is under 2 messages",
        ),
        (
            "paced.py",
            ["--connections", "0"],
            "argument --connections: --connections must be 1 or more, got '0'",
        ),
        (
            "paced.py",
            ["--rate", "fast"],
            "argument --rate: --rate must be a positive number of msgs/s, got 'fast'",
        ),
        (
            "paced.py",
            ["--duration", "-1"],
            "argument --duration: --duration must be a positive number, got '-1'",
        ),
    ]
    for script, args, message in cases:
        done = subprocess.run(
            [sys.executable, str(BENCH / script), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 2, (script, args, done.stderr)
        assert done.stderr.splitlines()[-1] == f"{script}: error: {message}", done.stderr
        assert "Traceback" not in done.stderr


def test_transport_is_added_only_when_given() -> None:
    # The key exists only once the fast transport lands; without --transport the
    # configs must load on any commit.
    from supervisor import loads_config

    sys.path.insert(0, str(BENCH))
    try:
        import latency
        import paced
    finally:
        sys.path.remove(str(BENCH))
    single = latency.config_toml(9, None)
    many = paced.config_toml(9, 3, None)
    assert "transport" not in single + many
    assert [c.name for c in loads_config(single, source="bench").connections] == ["bench"]
    assert [c.name for c in loads_config(many, source="bench").connections] == [
        "bench0",
        "bench1",
        "bench2",
    ]
    assert latency.config_toml(9, "fast").count('\ntransport = "fast"\n') == 1
    assert paced.config_toml(9, 3, "reference").count('\ntransport = "reference"\n') == 3


def test_write_section_adds_then_replaces_by_label(tmp_path: pathlib.Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import _paced_server as paced_server
    finally:
        sys.path.remove(str(BENCH))
    path = tmp_path / "BENCHMARKS.md"

    def section(label: str, body: str) -> str:
        begin, end = paced_server.markers("latency", label)
        return f"{begin}\n## Latency: {label}\n{body}\n{end}"

    paced_server.write_section(path, "latency", section("a", "one"), "a", "# Benchmarks\n")
    paced_server.write_section(path, "latency", section("b", "two"), "b", "# Benchmarks\n")
    paced_server.write_section(path, "latency", section("a", "three"), "a", "# Benchmarks\n")
    assert path.read_text() == (
        "# Benchmarks\n\n"
        "<!-- latency: a -->\n## Latency: a\nthree\n<!-- /latency: a -->\n\n"
        "<!-- latency: b -->\n## Latency: b\ntwo\n<!-- /latency: b -->\n"
    )
