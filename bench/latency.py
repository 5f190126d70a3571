"""Wire-to-consumer latency at paced rates, side by side with raw clients.

What is measured
----------------
A local server sends Binance combined-stream trade frames at a fixed rate ``R`` (1 k,
10 k and 50 k msgs/s by default), each frame carrying the server's
``time.monotonic_ns()`` taken just before the write (see ``bench/_paced_server.py``).
Each *client* notes, for every message, ``time.monotonic_ns()`` once the decoded message
is in the consumer's hands; the difference is the message's latency: kernel, loopback,
the client's library and everything between it and the consumer. Per client and rate the
script reports latency p50 / p99 / p99.9 (µs), the receive rate it achieved, and the
client process's CPU µs per message:

``ours: sup.messages()``
    ``open_supervisor(config)`` with one ``binance`` connection (``channels =
    ["trades"]``, ``symbols = ["BTC-USDT"]``, defaults otherwise; ``--transport NAME``
    adds ``transport = "NAME"``), consuming ``sup.messages()``: the latency of the whole
    product path to a ``Trade``. Its rows also show the in-process part: consumer time
    minus ``Trade.received_at`` (the session's wall time when it took the frame from the
    WebSocket), i.e. the adapter, the queue, the forwarder and the consumer channel.
``trio-websocket + msgspec``
    ``trio_websocket.open_websocket_url`` (library defaults), a ``get_message()`` loop,
    ``msgspec.json.decode`` of every message (to ``dict``).
``websockets + msgspec``
    The ``websockets`` asyncio client (``compression=None``), a ``recv()`` loop,
    ``msgspec.json.decode`` of every message.

A client is marked as **not keeping up** (``✗`` after the rate) when it received less
than 95 % of the sent rate, or when its latency grew by more than 10 ms from the first
tenth of the window to the last (a backlog building up). Its percentiles then measure
queueing (in our queues and the kernel's buffers), not the path; once the kernel's
buffers are full the server's writes block, so its latency stops growing at the
buffers' depth.

How
---
- One server process per rate, pinned to one CPU (``--pin``, the default with at least
  two CPUs); every client runs in a fresh process pinned to another CPU. Each trial: the
  client connects and subscribes, the server sends ``R * (warmup + duration + 0.5 s)``
  frames on an absolute schedule (frame ``k`` due at ``t0 + k / R``; a late wake-up sends
  what is due in one write of at most 64 frames; no pre-built buffer), then waits for the
  client to close. The client reads every frame and closes; a client that did not keep up
  stops (and closes) right after the window's last message instead, since reading the
  rest of its backlog measures nothing more.
- The window is chosen by sequence number (the trade time ``T`` is the frame's index):
  frames ``R * warmup`` to ``R * (warmup + duration)``, so every trial measures exactly
  ``R * duration`` messages; frames before (connect, subscribe, warm-up) and after are
  received but not counted. CPU is ``time.process_time()`` between the first and the
  last message of the window, and the receive rate is the window's count over the wall
  time between them. Every client checks that every frame arrived once and in order.
- Repetitions are interleaved (for each repetition: every rate, every client) so drift
  of the machine affects all alike; each figure is the median [min-max] over the
  repetitions of the per-trial value.
- All clients do the same bookkeeping per message (a clock read, a sequence check, one
  list append inside the window), which is part of their CPU figures (well under 1 µs).

Caveats
-------
- Loopback, no TLS. The server's own scheduling shows in the figures: the
  ``server`` columns give its frames per write (1.00 = one frame per wake-up) and worst
  lateness behind schedule; a late server sends a small burst, which the client then
  reads in one go.
- p99.9 over ``R * duration`` samples rests on ``R * duration / 1000`` samples (5 at
  1 k msgs/s for 5 s): treat it as a rough figure at low rates.
- On a shared or virtualized machine, other work inflates both CPU and latency: the
  ``other load`` is measured per trial as in ``bench/receive_path.py`` and a section
  written under load carries a caution.

Usage::

    python bench/latency.py                       # 1k,10k,50k msgs/s, 5 s each, 5 reps
    python bench/latency.py --quick               # 2 s each, 2 reps
    python bench/latency.py --rates 1k,10k --duration 10 --write --label "fast path"
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import _paced_server as paced
from receive_path import (
    BENCHMARKS,
    NOISY_LOAD,
    _cpu_model,
    _git_commit,
    _LoadMeter,
    _pin_args,
    _version,
    choose_cpus,
    subscribe_request,
)

FULL_RATES = "1k,10k,50k"
FULL_DURATION = 5.0
FULL_WARMUP = 1.0
FULL_REPS = 5
QUICK_DURATION = 2.0
QUICK_WARMUP = 0.5
QUICK_REPS = 2
#: Seconds of frames after the window, so the window never ends on the close.
TAIL = 0.5
#: Below this share of the sent rate a client is marked as not keeping up.
KEEP_UP_SHARE = 0.95
#: Latency growth (ms) over the window above which a client is marked as not keeping up.
BACKLOG_GROWTH_MS = 10.0
SECTION_KEY = "latency"

CLIENTS: list[tuple[str, str]] = [
    ("ours", "ours: `sup.messages()`"),
    ("trio_ws", "trio-websocket `get_message()` + msgspec"),
    ("websockets", "websockets `recv()` + msgspec"),
]

HEADER = """# Benchmarks
"""


class Plan:
    """One trial's frame counts: ``frames`` in all, the window ``[begin, end)``."""

    def __init__(self, rate: float, warmup: float, duration: float, read_all: bool) -> None:
        self.rate = rate
        #: Read every frame even when behind (smoke tests: exact counts, whatever the
        #: timing).
        self.read_all = read_all
        self.begin = round(rate * warmup)
        self.end = self.begin + round(rate * duration)
        self.frames = self.end + round(rate * TAIL)

    def args(self) -> list[str]:
        return ["--rate", repr(self.rate), "--frames", str(self.frames)]

    def client_args(self) -> list[str]:
        return self.args() + ["--read-all"] * self.read_all


class Recorder:
    """Per message: latency inside the window, order check, CPU at the window's ends.

    Once the window's last message is in, :attr:`finished` is set if the client did not
    keep up (it stops there: reading a growing backlog measures nothing more), and
    otherwise when the last frame arrived.
    """

    __slots__ = (
        "begin",
        "cpu0",
        "cpu1",
        "end",
        "expected",
        "finished",
        "frames",
        "kept_up",
        "latencies",
        "rate",
        "read_all",
        "wall0",
        "wall1",
    )

    def __init__(self, plan: Plan) -> None:
        self.begin, self.end, self.frames, self.rate = plan.begin, plan.end, plan.frames, plan.rate
        self.read_all = plan.read_all
        self.expected = 0
        self.finished = False
        self.kept_up = True
        self.latencies: list[int] = []
        self.cpu0 = self.cpu1 = 0.0
        self.wall0 = self.wall1 = 0

    def note(self, seq: int, stamp: int) -> bool:
        """Record one message; returns whether it is inside the window.

        Raises:
            AssertionError: ``seq`` is not the next sequence number.
        """
        now = time.monotonic_ns()
        if seq != self.expected:
            raise AssertionError(
                f"frame {seq} arrived, expected {self.expected}: lost, duplicated or reordered"
            )
        self.expected = seq + 1
        if self.expected == self.frames:
            self.finished = True
        if not self.begin <= seq < self.end:
            return False
        self.latencies.append(now - stamp)
        if seq == self.begin:
            self.cpu0, self.wall0 = time.process_time(), now
        elif seq == self.end - 1:
            self.cpu1, self.wall1 = time.process_time(), now
            self.kept_up = self._rate() >= KEEP_UP_SHARE * self.rate and (
                self._growth() <= BACKLOG_GROWTH_MS * 1e6
            )
            if not (self.kept_up or self.read_all):
                self.finished = True
        return True

    def _rate(self) -> float:
        wall = (self.wall1 - self.wall0) / 1e9
        return (self.end - self.begin - 1) / wall if wall > 0 else math.inf

    def _growth(self) -> float:
        """Nanoseconds the latency grew from the window's first tenth to its last."""
        lat = self.latencies
        tenth = max(1, len(lat) // 10)
        return float(statistics.median(lat[-tenth:]) - statistics.median(lat[:tenth]))

    def result(self) -> dict[str, Any]:
        if self.expected < self.end:
            raise AssertionError(
                f"only {self.expected} frames arrived, the window ends at {self.end}"
            )
        if self.expected < self.frames and (self.kept_up or self.read_all):
            raise AssertionError(f"only {self.expected} of {self.frames} frames arrived")
        ordered = sorted(self.latencies)
        return {
            "received": self.expected,
            "window_messages": len(ordered),
            "p50_us": paced.percentile(ordered, 50) / 1e3,
            "p99_us": paced.percentile(ordered, 99) / 1e3,
            "p999_us": paced.percentile(ordered, 99.9) / 1e3,
            "max_us": ordered[-1] / 1e3,
            "rate": self._rate(),
            "cpu_us": (self.cpu1 - self.cpu0) / (self.end - self.begin - 1) * 1e6,
            "growth_ms": self._growth() / 1e6,
            "kept_up": self.kept_up,
        }


def config_toml(port: int, transport: str | None) -> str:
    extra = f'transport = "{transport}"\n' if transport else ""
    return f"""
[supervisor]
shutdown_timeout = 5.0

[connections.bench]
exchange = "binance"
url = "ws://127.0.0.1:{port}/stream"
channels = ["trades"]
symbols = ["BTC-USDT"]
restart = "temporary"   # one session per trial: never reconnect
{extra}"""


def _deadline(plan: Plan) -> float:
    """Seconds a trial may take: the schedule, plus draining at 5 k msgs/s, plus a minute."""
    return plan.frames / plan.rate + plan.frames / 5000 + 60.0


async def client_ours(port: int, plan: Plan, transport: str | None) -> dict[str, Any]:
    import trio

    from supervisor import Trade, loads_config, open_supervisor

    config = loads_config(config_toml(port, transport), source="bench")
    recorder = Recorder(plan)
    note = recorder.note
    in_process: list[float] = []
    wall = time.time
    with trio.fail_after(_deadline(plan)):
        async with open_supervisor(config) as sup:
            async for message in sup.messages():
                if type(message) is not Trade:
                    raise AssertionError(f"unexpected message {message!r}")
                now = wall()
                if note(message.timestamp, int(message.trade_id)):
                    in_process.append(now - message.received_at)
                if recorder.finished:
                    break
    result = recorder.result()
    in_process.sort()
    result["in_process_p50_us"] = paced.percentile(in_process, 50) * 1e6
    result["in_process_p99_us"] = paced.percentile(in_process, 99) * 1e6
    return result


async def client_trio_ws(port: int, plan: Plan) -> dict[str, Any]:
    import msgspec
    import trio
    import trio_websocket

    recorder = Recorder(plan)
    note = recorder.note
    decode = msgspec.json.decode
    with trio.fail_after(_deadline(plan)):
        async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/stream") as ws:
            await ws.send_message(subscribe_request())
            ack = await ws.get_message()
            if json.loads(ack) != {"result": None, "id": 1}:
                raise AssertionError(f"unexpected ack {ack!r}")
            get_message = ws.get_message
            while not recorder.finished:
                data = decode(await get_message())["data"]
                note(data["T"], data["t"])
    return recorder.result()


async def client_websockets(port: int, plan: Plan) -> dict[str, Any]:
    import asyncio

    import msgspec
    from websockets.asyncio.client import connect

    recorder = Recorder(plan)
    note = recorder.note
    decode = msgspec.json.decode
    async with asyncio.timeout(_deadline(plan)):
        url = f"ws://127.0.0.1:{port}/stream"
        async with connect(url, compression=None, max_size=2**22) as ws:
            await ws.send(subscribe_request())
            ack = await ws.recv()
            if json.loads(ack) != {"result": None, "id": 1}:
                raise AssertionError(f"unexpected ack {ack!r}")
            recv = ws.recv
            while not recorder.finished:
                data = decode(await recv())["data"]
                note(data["T"], data["t"])
    return recorder.result()


def run_client(kind: str, port: int, plan: Plan, transport: str | None) -> dict[str, Any]:
    """One trial in this process."""
    if kind == "ours":
        import trio

        return trio.run(client_ours, port, plan, transport)
    if kind == "trio_ws":
        import trio

        return trio.run(client_trio_ws, port, plan)
    if kind == "websockets":
        import asyncio

        return asyncio.run(client_websockets(port, plan))
    raise ValueError(f"unknown client {kind!r}")


# -- orchestration -----------------------------------------------------------------------


def _start_server(plan: Plan, cpu: int | None) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        [sys.executable, __file__, "_serve", *plan.args(), *_pin_args(cpu)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, int(server.stdout.readline())


def measure(
    rates: list[float],
    warmup: float,
    duration: float,
    reps: int,
    pin: bool,
    transport: str | None,
    read_all: bool = False,
) -> dict[str, Any]:
    server_cpu, client_cpu = choose_cpus(pin)
    run_meter = _LoadMeter()
    plans = [Plan(rate, warmup, duration, read_all) for rate in rates]
    servers: list[tuple[subprocess.Popen[str], int]] = []
    trials: dict[str, list[dict[str, Any]]] = {}
    try:
        for plan in plans:
            servers.append(_start_server(plan, server_cpu))
        for rep in range(reps):
            for plan, (server, port) in zip(plans, servers, strict=True):
                for kind, _ in CLIENTS:
                    meter = _LoadMeter(server.pid)
                    command = [sys.executable, __file__, "_client", kind, "--port", str(port)]
                    command += [*plan.client_args(), *_pin_args(client_cpu)]
                    command += ["--warmup", repr(warmup), "--duration", repr(duration)]
                    if transport:
                        command += ["--transport", transport]
                    result = paced.run_json_child(command, timeout=_deadline(plan) + 60)
                    assert server.stdout is not None
                    result["server"] = json.loads(server.stdout.readline())
                    if "error" in result["server"]:
                        raise RuntimeError(f"server: {result['server']['error']}")
                    result["other_load"] = meter.read()[0]
                    trials.setdefault(f"{kind}@{plan.rate:g}", []).append(result)
                    print(
                        f"rep {rep + 1}/{reps} {paced.rate_label(plan.rate):>5} msgs/s "
                        f"{kind:<11} p50 {result['p50_us']:8.1f} p99 {result['p99_us']:9.1f} "
                        f"p99.9 {result['p999_us']:9.1f} us  {result['rate']:>9,.0f} msg/s "
                        f"{result['cpu_us']:6.1f} us/msg CPU  other load "
                        f"{result['other_load']:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        for server, _ in servers:
            server.kill()
            server.wait()
    other_load, steal = run_meter.read()
    return {
        "rates": rates,
        "warmup": warmup,
        "duration": duration,
        "reps": reps,
        "transport": transport,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "other_load": other_load,
        "steal": steal,
        "run_seconds": time.perf_counter() - run_meter.wall0,
        "trials": trials,
    }


def _spread(values: list[float], fmt: str) -> str:
    return (
        f"{format(statistics.median(values), fmt)} "
        f"[{format(min(values), fmt)}-{format(max(values), fmt)}]"
    )


def _label(kind: str, label: str, transport: str | None) -> str:
    return f"{label} (transport = {transport})" if kind == "ours" and transport else label


def render_table(results: dict[str, Any]) -> str:
    rows = [
        "| rate | client | p50 µs | p99 µs | p99.9 µs | received msgs/s | CPU µs/msg "
        "| vs websockets CPU | server frames/write, late max µs | other load |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes: list[str] = []
    for rate in results["rates"]:
        base = results["trials"][f"websockets@{rate:g}"]
        base_cpu = statistics.median(t["cpu_us"] for t in base)
        for kind, label in CLIENTS:
            trials = results["trials"][f"{kind}@{rate:g}"]
            behind = sum(not t["kept_up"] for t in trials)
            mark = f" ✗ ({behind}/{len(trials)})" if behind else ""
            cpu = statistics.median(t["cpu_us"] for t in trials)
            writes = [t["server"]["sent"] / t["server"]["writes"] for t in trials]
            late = [t["server"]["late_max_us"] for t in trials]
            rows.append(
                f"| {paced.rate_label(rate)} | {_label(kind, label, results['transport'])} "
                f"| {_spread([t['p50_us'] for t in trials], ',.0f')} "
                f"| {_spread([t['p99_us'] for t in trials], ',.0f')} "
                f"| {_spread([t['p999_us'] for t in trials], ',.0f')} "
                f"| {_spread([t['rate'] for t in trials], ',.0f')}{mark} "
                f"| {_spread([t['cpu_us'] for t in trials], '.1f')} "
                f"| {cpu / base_cpu:.2f}x "
                f"| {statistics.median(writes):.2f}, {statistics.median(late):,.0f} "
                f"| {statistics.median(t['other_load'] for t in trials):.2f} |"
            )
            if kind == "ours":
                notes.append(
                    f"- {paced.rate_label(rate)} msgs/s: ours' in-process part (consumer "
                    "time minus `Trade.received_at`) p50 "
                    f"{_spread([t['in_process_p50_us'] for t in trials], ',.0f')} µs, p99 "
                    f"{_spread([t['in_process_p99_us'] for t in trials], ',.0f')} µs"
                )
    return "\n".join([*rows, "", *notes])


def render_section(results: dict[str, Any], label: str, command: str) -> str:
    pinned = (
        f"server on CPU {results['server_cpu']}, clients on CPU {results['client_cpu']}"
        if results["server_cpu"] is not None
        else "not pinned"
    )
    rates = ", ".join(paced.rate_label(rate) for rate in results["rates"])
    machine = [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical CPUs ({pinned})",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"trio {_version('trio')}, trio-websocket {_version('trio-websocket')}, "
        f"wsproto {_version('wsproto')}, msgspec {_version('msgspec')}, "
        f"websockets {_version('websockets')}",
        f"- Code: commit {_git_commit()}",
        f"- Rates {rates} msgs/s; per trial {results['warmup']:g} s warm-up, then "
        f"{results['duration']:g} s measured; {results['reps']} interleaved repetitions, "
        f"fresh client process each; median [min-max]; run took "
        f"{results['run_seconds']:.0f} s",
        "- ✗ (k/n): in k of n trials the client received < 95 % of the sent rate or its "
        "latency grew > 10 ms across the window (a backlog): its latency is queueing",
        f"- Other load: {results['other_load']:.2f} CPUs on average (steal {results['steal']:.2f})",
    ]
    if results["other_load"] > NOISY_LOAD:
        machine.append(
            f"- **Caution: a shared machine.** Other work kept {results['other_load']:.2f} "
            "CPUs busy on average: latencies and CPU times are inflated and noisy."
        )
    begin, end = paced.markers(SECTION_KEY, label)
    return "\n".join(
        [
            begin,
            f"## Latency: {label}",
            "",
            "Wire → consumer latency at paced rates (`bench/latency.py`; its docstring says "
            "what each row does and how it is timed).",
            "",
            *machine,
            "",
            "```sh",
            command,
            "```",
            "",
            render_table(results),
            end,
        ]
    )


def _rates(text: str) -> list[float]:
    try:
        return [paced.parse_rate(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected positive rates like 1k,10k,50k, got {text!r}"
        ) from None


def _positive(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{name} must be a positive number, got {text!r}")
        return value

    return parse


def _reps(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--reps must be 1 or more, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="internal")
    serve_p = sub.add_parser("_serve", help=argparse.SUPPRESS)
    serve_p.add_argument("--rate", type=float, required=True)
    serve_p.add_argument("--frames", type=int, required=True)
    serve_p.add_argument("--cpu", type=int)
    client_p = sub.add_parser("_client", help=argparse.SUPPRESS)
    client_p.add_argument("kind", choices=[kind for kind, _ in CLIENTS])
    client_p.add_argument("--port", type=int, required=True)
    client_p.add_argument("--rate", type=float, required=True)
    client_p.add_argument("--frames", type=int, required=True)
    client_p.add_argument("--warmup", type=float, required=True)
    client_p.add_argument("--duration", type=float, required=True)
    client_p.add_argument("--cpu", type=int)
    client_p.add_argument("--transport")
    client_p.add_argument("--read-all", action="store_true")
    parser.add_argument("--quick", action="store_true", help="shorter trials, 2 repetitions")
    parser.add_argument(
        "--rates", type=_rates, help=f"msgs/s, comma-separated (default {FULL_RATES})"
    )
    parser.add_argument(
        "--duration", type=_positive("--duration"), help="measured seconds per trial"
    )
    parser.add_argument(
        "--warmup", type=_positive("--warmup"), help="seconds per trial before the window"
    )
    parser.add_argument("--reps", type=_reps, help=f"repetitions (default {FULL_REPS})")
    parser.add_argument(
        "--transport",
        help='adds transport = "NAME" to ours\' connection (default: not set)',
    )
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin server and client CPUs"
    )
    parser.add_argument("--write", action="store_true", help="add/replace a BENCHMARKS.md section")
    parser.add_argument("--label", help="section title in BENCHMARKS.md (default: the commit)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results to FILE")
    parser.add_argument(
        "--read-all",
        action="store_true",
        help="clients read every frame even when behind (exact counts for smoke tests)",
    )
    args = parser.parse_args(argv)

    if args.internal == "_serve":
        paced.serve_one_at_a_time(args.rate, args.frames, args.cpu)
        return
    if args.internal == "_client":
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        plan = Plan(args.rate, args.warmup, args.duration, args.read_all)
        if plan.frames != args.frames:
            raise AssertionError(f"client plans {plan.frames} frames, server {args.frames}")
        print(json.dumps(run_client(args.kind, args.port, plan, args.transport)))
        return

    rates = args.rates or _rates(FULL_RATES)
    duration = args.duration or (QUICK_DURATION if args.quick else FULL_DURATION)
    warmup = args.warmup or (QUICK_WARMUP if args.quick else FULL_WARMUP)
    reps = args.reps or (QUICK_REPS if args.quick else FULL_REPS)
    for rate in rates:
        if round(rate * duration) < 2:
            parser.error(f"--duration {duration:g} s at {rate:g} msgs/s is under 2 messages")
    results = measure(rates, warmup, duration, reps, args.pin, args.transport, args.read_all)
    given = sys.argv[1:] if argv is None else argv
    command = ".venv/bin/python " + shlex.join(["bench/latency.py", *given])
    label = args.label or f"commit {_git_commit()}"
    section = render_section(results, label, command)
    print(section)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file)
    if args.write:
        paced.write_section(BENCHMARKS, SECTION_KEY, section, label, HEADER)
        print(f"\nwrote section {label!r} to {BENCHMARKS}", file=sys.stderr)


if __name__ == "__main__":
    main()
