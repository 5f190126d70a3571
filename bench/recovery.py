"""Recovery after a server close, a TCP reset and a half-open stall.

What is measured
----------------
One supervised ``binance`` connection (``channels=["trades"]``, ``symbols=["BTC-USDT"]``)
to a local server that answers the subscription, sends one trade at once and then a
steady trickle of trade frames (``--rate``, 100 msgs/s). The server injects one of three
faults, over and over:

``close``
    A close frame (``--close-code``, 1001 "going away"); the TCP close follows the
    client's answering close frame.
``reset``
    ``SO_LINGER`` 0, then close: the kernel discards the buffers and sends RST.
``stall``
    A half-open peer: the server stops sending and stops reading (so answers no ping)
    but keeps the socket open. Only the client's ``stale_after`` can find it.

For every cycle, with the fault time taken by the server just before it acts:

detect
    fault → the supervisor's ``session_ended`` log record (written by the control loop
    when it handles the session's exit, the moment it decides to reconnect; a
    ``logging.Handler`` in the client stamps it as it is emitted). This is the most
    direct observable of "the client knows": the stats' state change is the same event
    seen later, through the registry and a poll.
first message
    fault → the first ``Trade`` of the new session in the consumer (``sup.messages()``).
    The server numbers its sessions in the trade ids (``session * 1,000,000 + n``) and
    sends the first trade right after the subscription ack, so this includes detection,
    the backoff delay, the connect permit, TCP, the upgrade and the subscribe round trip.

Configured (printed with the results): backoff ``initial = max = --backoff`` (0.1 s),
``multiplier = 1``, ``jitter = "none"`` (so every delay is exactly ``--backoff``), and
``stale_after = --stale-after`` (2 s; the session probes after half of it, and a stall is
stale ``stale_after`` after the last frame it received, which came at most ``1/rate``
before the fault). Targets (issue 16): first message p99 ≤ backoff + 50 ms after a close
or a reset, a stall detected ≤ ``stale_after`` + 1 s.

How
---
- The server (``bench/_ws_server.py``, asyncio) and each client run in their own
  process, pinned to different CPUs when there are two (``--no-pin`` to not). The
  faults are interleaved (close, reset, stall, close, ...), so drift of the machine
  affects each alike.
- Coordination goes through pipes, never sleeps: the parent tells the server to inject
  a fault (it answers with the fault time and the session), then reads the client's
  event lines (``ended``, ``live``, ``first``) until the first trade of the next session.
  Server and clients stamp times with ``time.monotonic()``, the machine-wide
  ``CLOCK_MONOTONIC``, so their times compare directly.
- Binance allows 300 connects per 5 minutes per IP and the registry paces connects per
  host at that rate, so each client process runs at most ``ROUNDS_PER_CLIENT`` rounds
  (3 connects each) and a fresh process takes the next rounds; a permit wait never
  enters the numbers.

Caveats
-------
- Loopback: no network latency, no TLS; a real reconnect adds DNS, TCP and TLS round
  trips. The numbers are our own overhead on top of the configured delays.
- Wall-clock times on a shared two-CPU machine include scheduling delays of everything
  else running; the p99 and max show them.

Usage::

    python bench/recovery.py                 # 200 cycles of each fault
    python bench/recovery.py --quick         # 10 cycles of each
    python bench/recovery.py --cycles 3 --stale-after 1   # the smoke test's size
    python bench/recovery.py --write --label "commit abc1234"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _ws_server import Hub, WsConn, listen, percentile, reply, serve_control, write_section
from receive_path import (
    FIRST_TRADE_ID,
    _cpu_model,
    _git_commit,
    _LoadMeter,
    _pin_args,
    _version,
    choose_cpus,
)

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"

FAULTS = ("close", "reset", "stall")
FULL_CYCLES = 200
QUICK_CYCLES = 10
#: Trade ids of session ``k`` start at ``k * SESSION_SPAN``.
SESSION_SPAN = 1_000_000
#: Rounds (one fault of each kind) per client process: 3 connects each, plus the first,
#: stays under Binance's 300 connects per 5 minutes that the registry paces to.
ROUNDS_PER_CLIENT = 90
#: Seconds any single step may take before the run is declared stuck (a failure guard,
#: not a synchronization: every step ends on an event).
STEP_TIMEOUT = 60.0


# -- server --------------------------------------------------------------------------------


class RecoveryHub(Hub):
    """One client at a time; a trickle of trades; faults on command."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate
        self.sessions = 0
        self.current: WsConn | None = None
        self.stalled: list[WsConn] = []

    def subscribed(self, conn: WsConn) -> None:
        conn.session = self.sessions
        self.sessions += 1
        self.current = conn
        conn.send_trade(conn.session * SESSION_SPAN)

    async def trickle(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate
        at = loop.time()
        while True:
            at += period
            await asyncio.sleep(max(0.0, at - loop.time()))
            conn = self.current
            if conn is not None and conn.live:
                conn.send_trade(conn.session * SESSION_SPAN + conn.sent)

    async def command(self, words: list[str]) -> dict[str, Any] | None:
        if words[:1] == ["quit"]:
            return None
        if words[:1] != ["fault"] or len(words) != 3:
            return {"error": f"unknown command {words!r}"}
        kind, code = words[1], int(words[2])
        conn = self.current
        if conn is None or not conn.live:
            return {"error": "no live session to fault"}
        # A stalled socket of an earlier cycle is closed now: its client dropped it long ago.
        for old in self.stalled:
            old.drop()
        self.stalled.clear()
        at = time.monotonic()
        if kind == "close":
            conn.close_frame(code)
        elif kind == "reset":
            conn.reset()
        elif kind == "stall":
            conn.stall()
            self.stalled.append(conn)
        else:
            return {"error": f"unknown fault {kind!r}"}
        return {"t": at, "session": conn.session}


async def serve(rate: float) -> None:
    hub = RecoveryHub(rate)
    ((_, port),) = await listen(hub, ["127.0.0.1"])
    reply({"port": port})
    trickle = asyncio.create_task(hub.trickle())
    try:
        await serve_control(hub.command)
    finally:
        trickle.cancel()


# -- client --------------------------------------------------------------------------------


def config_toml(port: int, stale_after: float, backoff: float, transport: str | None) -> str:
    extra = f'transport = "{transport}"\n' if transport else ""
    return f"""
[supervisor]
shutdown_timeout = 2.0

[connections.recovery]
exchange = "binance"
url = "ws://127.0.0.1:{port}/stream"
channels = ["trades"]
symbols = ["BTC-USDT"]
stale_after = {stale_after}
{extra}
[connections.recovery.backoff]
initial = {backoff}
max = {backoff}
multiplier = 1.0
jitter = "none"
"""


def _out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class _Events(logging.Handler):
    """Writes the supervisor's ``session_ended`` and ``live`` records as event lines."""

    def emit(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        event = getattr(record, "event", None)
        if event in ("session_ended", "failures_summarized", "crashed"):
            _out(
                {
                    "ev": "ended",
                    "t": now,
                    "event": event,
                    "reason": getattr(record, "reason", ""),
                    "delay": getattr(record, "delay", None),
                }
            )
        elif event == "live":
            _out({"ev": "live", "t": now})


async def client(
    port: int, sessions: int, stale_after: float, backoff: float, transport: str | None
) -> None:
    from supervisor import Trade, loads_config, open_supervisor

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(_Events())
    config = loads_config(config_toml(port, stale_after, backoff, transport), source="bench")
    seen = 0
    current = -1
    async with open_supervisor(config) as sup:
        async for message in sup.messages():
            if not isinstance(message, Trade):
                continue
            session = (int(message.trade_id) - FIRST_TRADE_ID) // SESSION_SPAN
            if session != current:
                current = session
                seen += 1
                _out({"ev": "first", "t": time.monotonic(), "session": session})
                if seen >= sessions:
                    break


# -- orchestration -------------------------------------------------------------------------


class _Lines:
    """JSON lines from a child's stdout, with a deadline per line (a guard, not a sync)."""

    def __init__(self, proc: subprocess.Popen[bytes], what: str) -> None:
        assert proc.stdout is not None
        self.proc, self.fd, self.what, self.buf = proc, proc.stdout.fileno(), what, b""

    def next(self, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, left))
            if not ready:
                raise RuntimeError(f"{self.what}: no event within {timeout:g} s")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise RuntimeError(f"{self.what} exited (code {self.proc.wait()})")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        result: dict[str, Any] = json.loads(line)
        return result


def _command(server: subprocess.Popen[bytes], lines: _Lines, command: str) -> dict[str, Any]:
    assert server.stdin is not None
    server.stdin.write(command.encode() + b"\n")
    server.stdin.flush()
    answer = lines.next()
    if "error" in answer:
        raise RuntimeError(f"server: {answer['error']}")
    return answer


def measure(
    cycles: int,
    *,
    stale_after: float,
    backoff: float,
    rate: float,
    close_code: int,
    pin: bool,
    transport: str | None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``cycles`` of every fault; per fault a list of {detect, live, first, reason}."""
    server_cpu, client_cpu = choose_cpus(pin)
    meter = _LoadMeter()
    me = str(Path(__file__).resolve())
    server = subprocess.Popen(
        [sys.executable, me, "_serve", "--rate", str(rate), *_pin_args(server_cpu)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in FAULTS}
    try:
        from_server = _Lines(server, "server")
        port = from_server.next()["port"]
        done = 0
        while done < cycles:
            rounds = min(ROUNDS_PER_CLIENT, cycles - done)
            args = [me, "_client", "--port", str(port), "--sessions", str(3 * rounds + 1)]
            args += ["--stale-after", str(stale_after), "--backoff", str(backoff)]
            args += ["--transport", transport] if transport else []
            client_proc = subprocess.Popen(
                [sys.executable, *args, *_pin_args(client_cpu)], stdout=subprocess.PIPE
            )
            try:
                events = _Lines(client_proc, "client")
                while events.next()["ev"] != "first":
                    pass
                for _ in range(rounds):
                    for kind in FAULTS:
                        fault = _command(server, from_server, f"fault {kind} {close_code}")
                        results[kind].append(_one_cycle(events, fault, stale_after))
                    done += 1
                    if progress:
                        row = "  ".join(
                            f"{k} {results[k][-1]['detect'] * 1e3:7.1f}/"
                            f"{results[k][-1]['first'] * 1e3:7.1f} ms"
                            for k in FAULTS
                        )
                        print(f"cycle {done}/{cycles}  {row}", file=sys.stderr, flush=True)
                if client_proc.wait(timeout=STEP_TIMEOUT) != 0:
                    raise RuntimeError(f"client exited with {client_proc.returncode}")
            finally:
                if client_proc.poll() is None:
                    client_proc.kill()
                    client_proc.wait()
        _command_quit(server)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
    other_load, steal = meter.read()
    return {
        "results": results,
        "cycles": cycles,
        "stale_after": stale_after,
        "backoff": backoff,
        "rate": rate,
        "close_code": close_code,
        "transport": transport,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "other_load": other_load,
        "steal": steal,
        "run_seconds": time.perf_counter() - meter.wall0,
    }


def _command_quit(server: subprocess.Popen[bytes]) -> None:
    assert server.stdin is not None
    server.stdin.write(b"quit\n")
    server.stdin.flush()
    server.wait(timeout=STEP_TIMEOUT)


def _one_cycle(events: _Lines, fault: dict[str, Any], stale_after: float) -> dict[str, Any]:
    """Read client events until the next session's first trade; times since the fault."""
    t0, session = fault["t"], fault["session"]
    ended: dict[str, Any] | None = None
    live: float | None = None
    timeout = stale_after + STEP_TIMEOUT
    while True:
        event = events.next(timeout)
        if event["ev"] == "ended" and ended is None:
            ended = event
        elif event["ev"] == "live":
            live = event["t"]
        elif event["ev"] == "first" and event["session"] > session:
            break
    if ended is None or live is None:
        raise RuntimeError(f"session {session}: new session without an end and a live line")
    return {
        "detect": ended["t"] - t0,
        "live": live - t0,
        "first": event["t"] - t0,
        "reason": ended["reason"],
        "delay": ended["delay"],
    }


# -- report --------------------------------------------------------------------------------


def _ms(values: list[float]) -> str:
    return (
        f"{percentile(values, 50) * 1e3:.1f} / {percentile(values, 99) * 1e3:.1f} / "
        f"{max(values) * 1e3:.1f}"
    )


def render_table(run: dict[str, Any]) -> str:
    backoff, stale = run["backoff"], run["stale_after"]
    rows = [
        "| fault | cycles | reason logged | detect ms p50 / p99 / max "
        "| first message ms p50 / p99 / max | target | met |",
        "| --- | ---: | --- | ---: | ---: | --- | --- |",
    ]
    labels = {
        "close": f"close frame {run['close_code']}",
        "reset": "TCP reset (SO_LINGER 0)",
        "stall": "half-open stall",
    }
    for kind in FAULTS:
        cycles = run["results"][kind]
        detect = [c["detect"] for c in cycles]
        first = [c["first"] for c in cycles]
        reasons = sorted({c["reason"] for c in cycles})
        if kind == "stall":
            limit = stale + 1.0
            target = f"detect p99 ≤ stale_after + 1 s = {limit * 1e3:.0f} ms"
            met = percentile(detect, 99) <= limit
        else:
            limit = backoff + 0.05
            target = f"first p99 ≤ backoff + 50 ms = {limit * 1e3:.0f} ms"
            met = percentile(first, 99) <= limit
        rows.append(
            f"| {labels[kind]} | {len(cycles)} | {', '.join(reasons)} | {_ms(detect)} "
            f"| {_ms(first)} | {target} | {'yes' if met else '**no**'} |"
        )
    return "\n".join(rows)


def render_body(run: dict[str, Any], command: str) -> str:
    pinned = (
        f"server on CPU {run['server_cpu']}, clients on CPU {run['client_cpu']}"
        if run["server_cpu"] is not None
        else "not pinned"
    )
    transport = run["transport"] or "(not set: the default)"
    lines = [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical CPUs ({pinned})",
        f"- OS: {platform.system()} {platform.release()}; Python "
        f"{platform.python_version()}, trio {_version('trio')}, trio-websocket "
        f"{_version('trio-websocket')}, wsproto {_version('wsproto')}",
        f"- Code: commit {_git_commit()}; transport {transport}",
        f"- Configured: backoff initial = max = {run['backoff']:g} s, multiplier 1, jitter "
        f"none (every delay exactly {run['backoff']:g} s); stale_after = "
        f"{run['stale_after']:g} s (probe after {run['stale_after'] / 2:g} s); server trickle "
        f"{run['rate']:g} msgs/s",
        f"- {run['cycles']} cycles of each fault, interleaved; run took "
        f"{run['run_seconds']:.0f} s; other load {run['other_load']:.2f} CPUs "
        f"(steal {run['steal']:.2f})",
        "- detect: fault → the supervisor's `session_ended` log record; first message: "
        "fault → the first `Trade` of the new session in `sup.messages()`",
        "",
        "```sh",
        command,
        "```",
        "",
        render_table(run),
    ]
    return "\n".join(lines)


INTRO = """Time from a fault injected by a local server to the supervisor knowing (the
`session_ended` log record) and to the first trade of the new session in the consumer,
for a close frame, a TCP reset and a half-open stall, against the configured backoff and
`stale_after` (see the script's docstring). Nearest-rank percentiles over the cycles."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="recovery.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="internal")
    serve_p = sub.add_parser("_serve", help=argparse.SUPPRESS)
    serve_p.add_argument("--rate", type=float, required=True)
    serve_p.add_argument("--cpu", type=int)
    client_p = sub.add_parser("_client", help=argparse.SUPPRESS)
    client_p.add_argument("--port", type=int, required=True)
    client_p.add_argument("--sessions", type=int, required=True)
    client_p.add_argument("--stale-after", type=float, required=True)
    client_p.add_argument("--backoff", type=float, required=True)
    client_p.add_argument("--transport")
    client_p.add_argument("--cpu", type=int)
    parser.add_argument("--cycles", type=int, help=f"cycles per fault (default {FULL_CYCLES})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CYCLES} cycles per fault")
    parser.add_argument(
        "--stale-after", type=float, default=2.0, help="the connection's stale_after (2 s)"
    )
    parser.add_argument(
        "--backoff", type=float, default=0.1, help="the constant backoff delay (0.1 s)"
    )
    parser.add_argument("--rate", type=float, default=100.0, help="trickle, msgs/s (100)")
    parser.add_argument("--close-code", type=int, default=1001, help="close code (1001)")
    parser.add_argument(
        "--transport", help='adds transport = "NAME" to the connection (only when given)'
    )
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin server and client CPUs"
    )
    parser.add_argument("--write", action="store_true", help="add/replace a BENCHMARKS.md section")
    parser.add_argument("--label", help="section title in BENCHMARKS.md (default: the commit)")
    parser.add_argument(
        "--json", action="store_true", help="also print the raw results, as one JSON line, last"
    )
    args = parser.parse_args(argv)

    if args.internal == "_serve":
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        asyncio.run(serve(args.rate))
        return
    if args.internal == "_client":
        import trio

        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        trio.run(client, args.port, args.sessions, args.stale_after, args.backoff, args.transport)
        return

    cycles = args.cycles if args.cycles is not None else QUICK_CYCLES if args.quick else FULL_CYCLES
    if cycles < 1:
        parser.error(f"--cycles must be 1 or more, got {cycles}")
    if args.stale_after < 1:
        parser.error(
            f"--stale-after must be at least 1 s (the config's minimum), got {args.stale_after:g}"
        )
    if not 0 <= args.backoff <= 3600:
        parser.error(f"--backoff must be within [0, 3600] s, got {args.backoff:g}")
    if not 1 <= args.rate <= 10_000:
        parser.error(f"--rate must be within [1, 10000] msgs/s, got {args.rate:g}")
    if args.close_code not in (1000, 1001):
        parser.error(f"--close-code must be 1000 or 1001, got {args.close_code}")
    run = measure(
        cycles,
        stale_after=args.stale_after,
        backoff=args.backoff,
        rate=args.rate,
        close_code=args.close_code,
        pin=args.pin,
        transport=args.transport,
    )
    given = sys.argv[1:] if argv is None else argv
    command = ".venv/bin/python " + shlex.join(["bench/recovery.py", *given])
    label = args.label or f"commit {_git_commit()}"
    body = render_body(run, command)
    print(f"## Recovery: {label}\n\n{body}")
    if args.json:
        print(json.dumps(run))
    if args.write:
        write_section(
            BENCHMARKS, "## Recovery (`bench/recovery.py`)", INTRO, "recovery", label, body
        )
        print(f"\nwrote section {label!r} to {BENCHMARKS}", file=sys.stderr)


if __name__ == "__main__":
    main()
