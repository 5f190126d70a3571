"""Per-message CPU cost of the asyncio front door (``supervisor.aio``) next to native Trio.

What is measured
----------------
The throughput benchmark of ``bench/receive_path.py`` (same server, same frames, same
config: one ``binance`` connection, ``trades`` of ``BTC-USDT``), consumed three ways;
for the client process only, CPU microseconds per message and messages per second:

``ours_trio``
    ``supervisor.open_supervisor`` under ``trio.run``, consuming ``sup.messages()``:
    exactly receive_path's ``ours: sup.messages()`` client (imported from it).
``ours_aio``
    The same config through ``supervisor.aio.open_supervisor`` under ``asyncio.run``:
    the supervisor runs as a Trio guest of the asyncio loop, and the consumer's
    ``async for msg in sup.messages()`` pulls each batch across the bridge.
``ours_aio_uvloop``
    The same on a uvloop loop (``asyncio.Runner(loop_factory=uvloop.new_event_loop)``),
    when uvloop is installed.

The difference between ``ours_aio`` and ``ours_trio`` is the guest-mode cost: Trio's
ticks scheduled as asyncio callbacks, its I/O waits done in a worker thread that posts
back with ``call_soon_threadsafe``, and one bridge round trip (``run_sync_soon`` into
the guest, an asyncio future back) per batch.

How
---
As receive_path.py, whose helpers this script imports (server, config, checks, CPU
pinning, load meter): the server is a separate process (pinned to one CPU with
``--pin``, the default with two CPUs or more, the clients to another) writing all ``N``
pre-framed trade frames at once; every trial is a fresh client process; the repetitions
are interleaved (trio, aio, aio on uvloop, then again); each row shows the median and
[min-max]. Each trial is timed from just before connecting until the ``N``-th message was
in the consumer's hands, and checks the count and the last ``Trade``.

Why ``time.process_time``
-------------------------
It counts the CPU time of every thread of the client process: with guest mode, Trio's
I/O thread is part of the cost and is counted.

Caveats
-------
- All of receive_path.py's caveats apply (loopback, no TLS, a full buffer all the time:
  many frames per read, so few batches and few bridge round trips per message; a paced
  feed has one frame per batch, where the per-batch costs weigh more).
- Numbers from a shared machine wander; compare rows of one run.

Usage::

    python bench/aio_path.py                  # full run: N=200000, 5 repetitions
    python bench/aio_path.py --quick          # smoke run: N=20000, 2 repetitions
    python bench/aio_path.py --write --label "guest mode (commit abc1234)"

``--write`` adds (or replaces, by label) a section in ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any

import receive_path as rp

#: Client kinds in run order: (key, label).
CLIENTS: list[tuple[str, str]] = [
    ("ours_trio", "ours on Trio: `supervisor.open_supervisor`, `sup.messages()`"),
    ("ours_aio", "ours on asyncio: `supervisor.aio.open_supervisor`, `sup.messages()`"),
    ("ours_aio_uvloop", "ours on uvloop: `supervisor.aio.open_supervisor`, `sup.messages()`"),
]
#: Clients whose library may be missing: a run without it leaves the row out.
OPTIONAL: dict[str, str] = {"ours_aio_uvloop": "uvloop"}

SECTION_BEGIN = "<!-- aio_path: {label} -->"
SECTION_END = "<!-- /aio_path: {label} -->"


def _clients() -> list[tuple[str, str]]:
    return [
        (kind, label)
        for kind, label in CLIENTS
        if kind not in OPTIONAL or importlib.util.find_spec(OPTIONAL[kind])
    ]


# -- clients -----------------------------------------------------------------------------


async def client_aio(port: int, n: int, clock: rp._Clock) -> None:
    from supervisor import loads_config
    from supervisor.aio import open_supervisor

    config = loads_config(rp.config_toml(port), source="bench")
    count = 0
    last: Any = None
    clock.start()
    async with open_supervisor(config) as sup:
        async for message in sup.messages():
            count += 1
            if count >= n:
                last = message
                break
        clock.stop()
    if count != n:
        raise AssertionError(f"got {count} messages, expected {n}")
    rp._check_trade(last, n)


def run_client(kind: str, port: int, n: int) -> dict[str, float]:
    """One trial in this process; returns wall and CPU seconds."""
    clock = rp._Clock()
    if kind == "ours_trio":
        import trio

        trio.run(lambda: rp.client_ours(port, n, clock, batches=False))
    elif kind == "ours_aio":
        import asyncio

        asyncio.run(client_aio(port, n, clock))
    elif kind == "ours_aio_uvloop":
        import asyncio

        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(client_aio(port, n, clock))
    else:
        raise ValueError(f"unknown client {kind!r}")
    return {"wall": clock.wall, "cpu": clock.cpu}


# -- orchestration -----------------------------------------------------------------------


def _child(args: list[str], cpu: int | None) -> dict[str, Any]:
    command = [sys.executable, __file__, *args, *rp._pin_args(cpu)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(args)} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(n: int, reps: int, pin: bool) -> dict[str, Any]:
    server_cpu, client_cpu = rp.choose_cpus(pin)
    run_meter = rp._LoadMeter()
    server = subprocess.Popen(
        [sys.executable, __file__, "_serve", "--n", str(n), *rp._pin_args(server_cpu)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        trials: dict[str, list[dict[str, float]]] = {kind: [] for kind, _ in _clients()}
        for rep in range(reps):
            for kind, _ in _clients():
                meter = rp._LoadMeter(server.pid)
                result = _child(["_client", kind, "--port", str(port), "--n", str(n)], client_cpu)
                result["other_load"] = meter.read()[0]
                trials[kind].append(result)
                print(
                    f"rep {rep + 1}/{reps} {kind:<16} {result['cpu'] / n * 1e6:7.2f} us/msg CPU"
                    f"  {n / result['wall']:>9,.0f} msg/s  other load {result['other_load']:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        server.kill()
        server.wait()
    other_load, steal = run_meter.read()
    return {
        "other_load": other_load,
        "steal": steal,
        "run_seconds": time.perf_counter() - run_meter.wall0,
        "n": n,
        "reps": reps,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "trials": trials,
    }


def render_table(results: dict[str, Any]) -> str:
    n = results["n"]
    rows = [
        "| client | CPU µs/msg | msgs/s (wall) | cpu/wall | other load |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    medians: dict[str, float] = {}
    for kind, label in _clients():
        trials = results["trials"][kind]
        cpu_us = [t["cpu"] / n * 1e6 for t in trials]
        rate = [n / t["wall"] / 1000 for t in trials]
        busy = [t["cpu"] / t["wall"] for t in trials]
        other = [t["other_load"] for t in trials]
        medians[kind] = statistics.median(cpu_us)
        rows.append(
            f"| {label} | {rp._spread(cpu_us, '.2f')} | {rp._spread(rate, ',.1f')} k "
            f"| {statistics.median(busy):.2f} | {statistics.median(other):.2f} |"
        )
    rows.append("")
    base = medians["ours_trio"]
    for kind, label in _clients():
        if kind != "ours_trio":
            extra = medians[kind] - base
            rows.append(
                f"- guest-mode cost, {label.split(':')[0].removeprefix('ours on ')}: "
                f"{extra:+.2f} µs/msg CPU ({extra / base:+.0%}) over native Trio (medians)"
            )
    return "\n".join(rows)


def render_section(results: dict[str, Any], label: str, command: str) -> str:
    pinned = (
        f"server on CPU {results['server_cpu']}, clients on CPU {results['client_cpu']}"
        if results["server_cpu"] is not None
        else "not pinned"
    )
    machine = [
        f"- CPU: {rp._cpu_model()}, {os.cpu_count()} logical CPUs ({pinned})",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"trio {rp._version('trio')}, msgspec {rp._version('msgspec')}, "
        f"uvloop {rp._version('uvloop')}",
        f"- Code: commit {rp._git_commit()}",
        f"- N = {results['n']:,} messages per trial, {results['reps']} interleaved "
        f"repetitions; median [min-max]; run took {results['run_seconds']:.0f} s",
        f"- Other load: {results['other_load']:.2f} CPUs on average were busy with work other "
        f"than this benchmark during the run (steal {results['steal']:.2f}); the `other load` "
        "column is the median per trial",
    ]
    if results["other_load"] > rp.NOISY_LOAD:
        machine.append(
            f"- **Caution: a shared machine.** Other work kept {results['other_load']:.2f} CPUs "
            "busy on average: CPU times are inflated and noisy, wall rates are unreliable."
        )
    return "\n".join(
        [
            SECTION_BEGIN.format(label=label),
            f"## asyncio front door (`bench/aio_path.py`): {label}",
            "",
            "CPU time of the client process per received message, native Trio against the "
            "same supervisor run as a Trio guest of an asyncio loop (see the script's "
            "docstring). Lower is better.",
            "",
            *machine,
            "",
            "```sh",
            command,
            "```",
            "",
            render_table(results),
            SECTION_END.format(label=label),
        ]
    )


def write_section(section: str, label: str) -> None:
    text = rp.BENCHMARKS.read_text() if rp.BENCHMARKS.exists() else rp.BENCHMARKS_HEADER
    begin, end = SECTION_BEGIN.format(label=label), SECTION_END.format(label=label)
    start = text.find(begin)
    if start >= 0:
        stop = text.index(end, start) + len(end)
        text = text[:start] + section + text[stop:]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    rp.BENCHMARKS.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="internal")
    serve_p = sub.add_parser("_serve", help=argparse.SUPPRESS)
    serve_p.add_argument("--n", type=int, required=True)
    serve_p.add_argument("--cpu", type=int)
    client_p = sub.add_parser("_client", help=argparse.SUPPRESS)
    client_p.add_argument("kind", choices=[kind for kind, _ in CLIENTS])
    client_p.add_argument("--port", type=int, required=True)
    client_p.add_argument("--n", type=int, required=True)
    client_p.add_argument("--cpu", type=int)
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer messages, reps")
    parser.add_argument("--n", type=int, help=f"messages per trial (default {rp.FULL_N:,})")
    parser.add_argument("--reps", type=int, help=f"repetitions (default {rp.FULL_REPS})")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin server and client CPUs"
    )
    parser.add_argument("--write", action="store_true", help="add/replace a BENCHMARKS.md section")
    parser.add_argument("--label", help="section title in BENCHMARKS.md (default: the commit)")
    args = parser.parse_args(argv)

    if args.internal == "_serve":
        rp.serve(args.n, args.cpu)
        return
    if args.internal == "_client":
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        print(json.dumps(run_client(args.kind, args.port, args.n)))
        return

    n = args.n or (rp.QUICK_N if args.quick else rp.FULL_N)
    reps = args.reps or (rp.QUICK_REPS if args.quick else rp.FULL_REPS)
    results = measure(n, reps, args.pin)
    given = sys.argv[1:] if argv is None else argv
    command = ".venv/bin/python " + shlex.join(["bench/aio_path.py", *given])
    label = args.label or f"commit {rp._git_commit()}"
    section = render_section(results, label, command)
    print(section)
    if args.write:
        write_section(section, label)
        print(f"\nwrote section {label!r} to {rp.BENCHMARKS}", file=sys.stderr)


if __name__ == "__main__":
    main()
