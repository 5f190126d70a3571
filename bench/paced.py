"""CPU at realistic rates: many connections, each a steady trickle, side by side with raw clients.

What is measured
----------------
A local server sends ``--connections`` (100) connections ``--rate`` (100) Binance
combined-stream trade frames per second each, on a schedule (see
``bench/_paced_server.py``); each *client* process receives all of them, decodes every
one, and the script reports the client process's CPU over a steady window, as a share
of one core and per message:

``ours: sup.messages()``
    One ``open_supervisor(config)`` with ``--connections`` ``binance`` connections
    (``channels = ["trades"]``, ``symbols = ["BTC-USDT"]`` each, the server ignores that
    they are the same; defaults otherwise; ``--transport NAME`` adds ``transport =
    "NAME"`` to each), one consumer of ``sup.messages()`` receiving normalized ``Trade``
    structs.
``trio-websocket + msgspec``
    ``--connections`` tasks in one trio process, each an ``open_websocket_url`` (library
    defaults) with a ``get_message()`` loop and ``msgspec.json.decode`` (to ``dict``).
``websockets + msgspec``
    ``--connections`` tasks in one asyncio process, each a ``websockets`` client
    (``compression=None``) with a ``recv()`` loop and ``msgspec.json.decode``.

The ``vs`` columns divide ours' CPU µs per message by each raw client's, in the same run.

How
---
- The server is one process (pinned to one CPU with ``--pin``, the default with two or
  more CPUs) serving every connection. It waits until all ``--connections`` clients have
  subscribed, then sends each connection ``rate * (warmup + duration + 1 s)`` frames.
  ``--pattern burst`` (default): every ``1 / rate`` s a burst of one frame per connection
  (each its own write on its own socket), all due at the same instant, the way a venue
  publishing on a tick might. ``--pattern staggered``: connection ``c`` is offset by
  ``c / (connections * rate)``, so writes are spread evenly (about one frame per
  wake-up). Frame ``k`` is due at an absolute time (no drift); nothing is pre-built.
- Because the server starts only when every connection subscribed, a client's first
  message means all its connections are live; the time from starting the client to
  that first message is the ``setup`` column (for ours: connect permits, handshakes and
  subscriptions of every connection). The window opens ``warmup`` s after the first
  message and lasts ``duration`` s (10 s by default) of the client's clock; CPU is
  ``time.process_time()`` across it, ``CPU %`` is CPU over wall time, and µs per message
  is CPU over the messages received inside it.
- Every client checks that each connection received every frame once, in order (the
  trade time ``T`` is the frame's sequence number), and reads them all before it closes
  its connections (the server waits for that). A client that received less than 95 % of
  the sent rate in the window is marked ``✗`` and stops at the window's end instead:
  its CPU per message is then CPU per message it got to, not a cost to compare, so its
  ratios are not given. For ours, two ``sup.stats()`` snapshots (taken by a side task,
  so the consumer never waits for them) give the frames its sessions read in the window,
  which shows whether the sessions or the consumer fell behind.
- Fresh client process per trial, repetitions interleaved (ours, trio-websocket,
  websockets, then again); median [min-max] over the repetitions.

Caveats
-------
- Loopback, no TLS; at 100 msgs/s per connection the cost per wake-up dominates, which
  is the point: that is where the schedulers, channels and timers show.
- The per-message bookkeeping (a sequence check and a clock read) is the same for all.
- On a shared or virtualized machine other work inflates CPU time: the ``other load`` is
  measured per trial as in ``bench/receive_path.py`` and a section written under load
  carries a caution.

Usage::

    python bench/paced.py                      # 100 x 100 msgs/s, 10 s window, 5 reps
    python bench/paced.py --quick              # 3 s window, 2 reps
    python bench/paced.py --pattern staggered --write --label "staggered"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any

import _paced_server as paced
from latency import _positive, _reps, _spread
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

FULL_CONNECTIONS = 100
FULL_RATE = 100.0
FULL_DURATION = 10.0
FULL_WARMUP = 2.0
FULL_REPS = 5
QUICK_DURATION = 3.0
QUICK_WARMUP = 1.0
QUICK_REPS = 2
#: Seconds of frames after the window, so the window never ends on the close.
TAIL = 1.0
#: Below this share of the sent rate a client is marked as not keeping up.
KEEP_UP_SHARE = 0.95
SECTION_KEY = "paced"
PATTERNS = ("burst", "staggered")

CLIENTS: list[tuple[str, str]] = [
    ("ours", "ours: `sup.messages()`"),
    ("trio_ws", "trio-websocket `get_message()` + msgspec"),
    ("websockets", "websockets `recv()` + msgspec"),
]

HEADER = """# Benchmarks
"""


class Plan:
    """One trial's shape: ``connections`` * ``frames`` at ``rate``, and the window."""

    def __init__(
        self, connections: int, rate: float, warmup: float, duration: float, read_all: bool
    ) -> None:
        self.connections = connections
        #: Read every frame even when behind (smoke tests: exact counts, whatever the
        #: timing).
        self.read_all = read_all
        self.rate = rate
        self.warmup = warmup
        self.duration = duration
        self.frames = round(rate * (warmup + duration + TAIL))

    def client_args(self) -> list[str]:
        return [
            "--connections",
            str(self.connections),
            "--rate",
            repr(self.rate),
            "--warmup",
            repr(self.warmup),
            "--duration",
            repr(self.duration),
            *["--read-all"] * self.read_all,
        ]

    def deadline(self) -> float:
        """Seconds a trial may take: the schedule plus two minutes for setup and drain."""
        return self.frames / self.rate + 120.0


class Counter:
    """Messages received by the whole process, with its measuring window.

    :attr:`stop` is set when the window ends and the client did not keep up (it received
    less than :data:`KEEP_UP_SHARE` of the sent rate): the client stops there rather
    than read a growing backlog.
    """

    __slots__ = ("count", "plan", "started", "stop", "window")

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.count = 0
        self.stop = False
        self.window = paced.Window(plan.warmup, plan.duration)
        self.started = time.monotonic_ns()

    def note(self) -> None:
        """One more message."""
        self.count += 1
        window = self.window
        if window.state != 3:
            window.tick(self.count)
            if window.state == 3:
                self.stop = not (self.plan.read_all or self._kept_up())

    def _kept_up(self) -> bool:
        window = self.window.result()
        sent_rate = self.plan.connections * self.plan.rate
        return window["messages"] / window["wall"] >= KEEP_UP_SHARE * sent_rate

    def result(self) -> dict[str, Any]:
        expected = self.plan.connections * self.plan.frames
        if self.count != expected and not self.stop:
            raise AssertionError(f"received {self.count} messages, expected {expected}")
        return {
            "received": self.count,
            "complete": self.count == expected,
            "kept_up": self._kept_up(),
            "setup": (self.window.first - self.started) / 1e9,
            **self.window.result(),
        }


def config_toml(port: int, connections: int, transport: str | None) -> str:
    extra = f'transport = "{transport}"\n' if transport else ""
    parts = ["[supervisor]\nshutdown_timeout = 5.0\n"]
    for index in range(connections):
        parts.append(
            f"""
[connections.bench{index}]
exchange = "binance"
url = "ws://127.0.0.1:{port}/stream"
channels = ["trades"]
symbols = ["BTC-USDT"]
restart = "temporary"   # one session per trial: never reconnect
{extra}"""
        )
    return "".join(parts)


def _out_of_order(where: str, seq: int, expected: int) -> AssertionError:
    return AssertionError(
        f"{where}: frame {seq} arrived, expected {expected}: lost, duplicated or reordered"
    )


async def client_ours(port: int, plan: Plan, transport: str | None) -> dict[str, Any]:
    import trio

    from supervisor import Trade, loads_config, open_supervisor

    config = loads_config(config_toml(port, plan.connections, transport), source="bench")
    counter = Counter(plan)
    note = counter.note
    expected = {f"bench{index}": 0 for index in range(plan.connections)}
    total = plan.connections * plan.frames
    window = counter.window
    # Frames the sessions read, from two stats snapshots taken by a side task when the
    # window opens and closes (not awaited by the consumer, which must not wait): with
    # many connections the consumer can fall behind its own sessions, and this shows it.
    opened, closed = trio.Event(), trio.Event()
    snapshots: list[tuple[float, int, float]] = []

    async def snapshot_at(event: trio.Event) -> None:
        await event.wait()
        asked = time.monotonic()
        stats = await sup.stats()
        frames = sum(c.frames for c in stats.connections)
        snapshots.append((stats.at, frames, time.monotonic() - asked))

    snapshots_done = trio.Event()

    async def snapshots_task() -> None:
        await snapshot_at(opened)
        await snapshot_at(closed)
        snapshots_done.set()

    with trio.fail_after(plan.deadline()):
        async with open_supervisor(config) as sup, trio.open_nursery() as nursery:
            nursery.start_soon(snapshots_task)
            async for message in sup.messages():
                if type(message) is not Trade:
                    raise AssertionError(f"unexpected message {message!r}")
                name, seq = message.connection, message.timestamp
                if seq != expected[name]:
                    raise _out_of_order(name, seq, expected[name])
                expected[name] = seq + 1
                state = window.state
                note()
                if window.state != state:
                    if window.state == 2:
                        opened.set()
                    elif window.state == 3:
                        closed.set()
                if counter.count == total or counter.stop:
                    break
            with trio.move_on_after(30):
                await snapshots_done.wait()
            nursery.cancel_scope.cancel(reason="trial over")
    result = counter.result()
    if len(snapshots) == 2:
        (at0, frames0, _), (at1, frames1, waited) = snapshots
        # Stats count frames in flushes (every 0.25 s while frames flow): approximate.
        result["frames_read_rate"] = (frames1 - frames0) / (at1 - at0)
        result["stats_wait"] = waited
    return result


async def client_trio_ws(port: int, plan: Plan) -> dict[str, Any]:
    import msgspec
    import trio
    import trio_websocket

    counter = Counter(plan)
    note = counter.note
    decode = msgspec.json.decode
    url = f"ws://127.0.0.1:{port}/stream"

    async def one(index: int, cancel: trio.CancelScope) -> None:
        async with trio_websocket.open_websocket_url(url) as ws:
            await ws.send_message(subscribe_request())
            ack = await ws.get_message()
            if json.loads(ack) != {"result": None, "id": 1}:
                raise AssertionError(f"unexpected ack {ack!r}")
            get_message = ws.get_message
            for expected in range(plan.frames):
                seq = decode(await get_message())["data"]["T"]
                if seq != expected:
                    raise _out_of_order(f"connection {index}", seq, expected)
                note()
                if counter.stop:
                    cancel.cancel(reason="behind at the end of the window")

    with trio.fail_after(plan.deadline()):
        async with trio.open_nursery() as nursery:
            for index in range(plan.connections):
                nursery.start_soon(one, index, nursery.cancel_scope)
    return counter.result()


async def client_websockets(port: int, plan: Plan) -> dict[str, Any]:
    import asyncio

    import msgspec
    from websockets.asyncio.client import connect

    counter = Counter(plan)
    note = counter.note
    decode = msgspec.json.decode
    url = f"ws://127.0.0.1:{port}/stream"

    async def one(index: int) -> None:
        async with connect(url, compression=None, max_size=2**22) as ws:
            await ws.send(subscribe_request())
            ack = await ws.recv()
            if json.loads(ack) != {"result": None, "id": 1}:
                raise AssertionError(f"unexpected ack {ack!r}")
            recv = ws.recv
            for expected in range(plan.frames):
                seq = decode(await recv())["data"]["T"]
                if seq != expected:
                    raise _out_of_order(f"connection {index}", seq, expected)
                note()
                if counter.stop:
                    raise _Behind

    try:
        async with asyncio.timeout(plan.deadline()), asyncio.TaskGroup() as group:
            for index in range(plan.connections):
                group.create_task(one(index))
    except* _Behind:
        pass
    return counter.result()


class _Behind(Exception):
    """Ends every task of the websockets client once it fell behind."""


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


def measure(
    plan: Plan, pattern: str, reps: int, pin: bool, transport: str | None
) -> dict[str, Any]:
    server_cpu, client_cpu = choose_cpus(pin)
    run_meter = _LoadMeter()
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "_serve",
            "--connections",
            str(plan.connections),
            "--rate",
            repr(plan.rate),
            "--frames",
            str(plan.frames),
            "--pattern",
            pattern,
            *_pin_args(server_cpu),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    trials: dict[str, list[dict[str, Any]]] = {kind: [] for kind, _ in CLIENTS}
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        for rep in range(reps):
            for kind, _ in CLIENTS:
                meter = _LoadMeter(server.pid)
                command = [sys.executable, __file__, "_client", kind, "--port", str(port)]
                command += [*plan.client_args(), *_pin_args(client_cpu)]
                if transport:
                    command += ["--transport", transport]
                result = paced.run_json_child(command, timeout=plan.deadline() + 60)
                result["server"] = json.loads(server.stdout.readline())
                if "error" in result["server"]:
                    raise RuntimeError(f"server: {result['server']['error']}")
                result["other_load"] = meter.read()[0]
                trials[kind].append(result)
                print(
                    f"rep {rep + 1}/{reps} {kind:<11} {result['cpu'] / result['wall']:7.1%} "
                    f"of a core  {result['cpu'] / result['messages'] * 1e6:6.1f} us/msg  "
                    f"{result['messages'] / result['wall']:>8,.0f} msg/s  setup "
                    f"{result['setup']:.2f} s  other load {result['other_load']:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        server.kill()
        server.wait()
    other_load, steal = run_meter.read()
    return {
        "connections": plan.connections,
        "rate": plan.rate,
        "warmup": plan.warmup,
        "duration": plan.duration,
        "frames": plan.frames,
        "pattern": pattern,
        "reps": reps,
        "transport": transport,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "other_load": other_load,
        "steal": steal,
        "run_seconds": time.perf_counter() - run_meter.wall0,
        "trials": trials,
    }


def _us_per_message(trial: dict[str, Any]) -> float:
    return float(trial["cpu"] / trial["messages"] * 1e6)


def _ratio(value: float, base: float, behind: int) -> str:
    # CPU per message of a client that fell behind is CPU per message it got to, not a
    # cost to compare.
    return "n/a (✗)" if behind else f"{value / base:.2f}x"


def render_table(results: dict[str, Any]) -> str:
    notes: list[str] = []
    rows = [
        "| client | CPU % of a core | CPU µs/msg | vs trio-websocket | vs websockets "
        "| received msgs/s | setup s | server frames/wake-up, late max µs | other load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    medians = {
        kind: statistics.median(_us_per_message(t) for t in results["trials"][kind])
        for kind, _ in CLIENTS
    }
    for kind, label in CLIENTS:
        trials = results["trials"][kind]
        if kind == "ours" and results["transport"]:
            label += f" (transport = {results['transport']})"
        wakeups = [t["server"]["sent"] / t["server"]["wakeups"] for t in trials]
        behind = sum(not t["kept_up"] for t in trials)
        mark = f" ✗ ({behind}/{len(trials)})" if behind else ""
        late = [t["server"]["late_max_us"] for t in trials]
        rows.append(
            f"| {label} "
            f"| {_spread([t['cpu'] / t['wall'] * 100 for t in trials], '.1f')} "
            f"| {_spread([_us_per_message(t) for t in trials], '.1f')} "
            f"| {_ratio(medians[kind], medians['trio_ws'], behind)} "
            f"| {_ratio(medians[kind], medians['websockets'], behind)} "
            f"| {_spread([t['messages'] / t['wall'] for t in trials], ',.0f')}{mark} "
            f"| {_spread([t['setup'] for t in trials], '.2f')} "
            f"| {statistics.median(wakeups):.1f}, {statistics.median(late):,.0f} "
            f"| {statistics.median(t['other_load'] for t in trials):.2f} |"
        )
        read = [t["frames_read_rate"] for t in trials if "frames_read_rate" in t]
        if kind == "ours" and read:
            waited = [t["stats_wait"] for t in trials if "stats_wait" in t]
            per_frame = [
                t["cpu"] / t["wall"] / t["frames_read_rate"] * 1e6
                for t in trials
                if t.get("frames_read_rate")
            ]
            notes.append(
                f"- ours' sessions read {_spread(read, ',.0f')} frames/s in the window "
                f"({_spread(per_frame, '.1f')} CPU µs per frame read; from two "
                "`sup.stats()` snapshots, flushed every 0.25 s, so ± a flush) while its "
                "consumer received the `received msgs/s` above: a gap means the consumer "
                "fell behind its own sessions. The snapshot at the window's end took "
                f"{_spread(waited, '.3f')} s to answer."
            )
    return "\n".join([*rows, "", *notes])


def render_section(results: dict[str, Any], label: str, command: str) -> str:
    pinned = (
        f"server on CPU {results['server_cpu']}, clients on CPU {results['client_cpu']}"
        if results["server_cpu"] is not None
        else "not pinned"
    )
    machine = [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical CPUs ({pinned})",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"trio {_version('trio')}, trio-websocket {_version('trio-websocket')}, "
        f"wsproto {_version('wsproto')}, msgspec {_version('msgspec')}, "
        f"websockets {_version('websockets')}",
        f"- Code: commit {_git_commit()}",
        f"- {results['connections']} connections x {results['rate']:g} msgs/s, pattern "
        f"`{results['pattern']}`; window {results['duration']:g} s after "
        f"{results['warmup']:g} s warm-up; {results['reps']} interleaved repetitions, fresh "
        f"client process each; median [min-max]; run took {results['run_seconds']:.0f} s",
        f"- Other load: {results['other_load']:.2f} CPUs on average (steal {results['steal']:.2f})",
    ]
    if results["other_load"] > NOISY_LOAD:
        machine.append(
            f"- **Caution: a shared machine.** Other work kept {results['other_load']:.2f} "
            "CPUs busy on average: CPU times are inflated and noisy."
        )
    begin, end = paced.markers(SECTION_KEY, label)
    return "\n".join(
        [
            begin,
            f"## CPU at paced rates: {label}",
            "",
            "CPU of the client process with many connections at a steady trickle "
            "(`bench/paced.py`; its docstring says what each row does and how it is timed).",
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


def _connections(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--connections must be 1 or more, got {text!r}")
    return int(text)


def _rate(text: str) -> float:
    try:
        return paced.parse_rate(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--rate must be a positive number of msgs/s, got {text!r}"
        ) from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="internal")
    serve_p = sub.add_parser("_serve", help=argparse.SUPPRESS)
    serve_p.add_argument("--connections", type=int, required=True)
    serve_p.add_argument("--rate", type=float, required=True)
    serve_p.add_argument("--frames", type=int, required=True)
    serve_p.add_argument("--pattern", choices=PATTERNS, required=True)
    serve_p.add_argument("--cpu", type=int)
    client_p = sub.add_parser("_client", help=argparse.SUPPRESS)
    client_p.add_argument("kind", choices=[kind for kind, _ in CLIENTS])
    client_p.add_argument("--port", type=int, required=True)
    client_p.add_argument("--connections", type=int, required=True)
    client_p.add_argument("--rate", type=float, required=True)
    client_p.add_argument("--warmup", type=float, required=True)
    client_p.add_argument("--duration", type=float, required=True)
    client_p.add_argument("--cpu", type=int)
    client_p.add_argument("--transport")
    client_p.add_argument("--read-all", action="store_true")
    parser.add_argument("--quick", action="store_true", help="shorter window, 2 repetitions")
    parser.add_argument(
        "--connections",
        type=_connections,
        default=FULL_CONNECTIONS,
        help=f"connections per client (default {FULL_CONNECTIONS})",
    )
    parser.add_argument(
        "--rate", type=_rate, default=FULL_RATE, help="msgs/s per connection (default 100)"
    )
    parser.add_argument(
        "--pattern",
        choices=PATTERNS,
        default="burst",
        help="burst: one frame per connection at once every 1/rate s; staggered: spread "
        "evenly (default burst)",
    )
    parser.add_argument(
        "--duration", type=_positive("--duration"), help="measured seconds per trial"
    )
    parser.add_argument(
        "--warmup", type=_positive("--warmup"), help="seconds per trial before the window"
    )
    parser.add_argument("--reps", type=_reps, help=f"repetitions (default {FULL_REPS})")
    parser.add_argument(
        "--transport", help='adds transport = "NAME" to ours\' connections (default: not set)'
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
        paced.serve_many(args.connections, args.rate, args.frames, args.pattern, args.cpu)
        return
    if args.internal == "_client":
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        plan = Plan(args.connections, args.rate, args.warmup, args.duration, args.read_all)
        print(json.dumps(run_client(args.kind, args.port, plan, args.transport)))
        return

    duration = args.duration or (QUICK_DURATION if args.quick else FULL_DURATION)
    warmup = args.warmup or (QUICK_WARMUP if args.quick else FULL_WARMUP)
    reps = args.reps or (QUICK_REPS if args.quick else FULL_REPS)
    plan = Plan(args.connections, args.rate, warmup, duration, args.read_all)
    results = measure(plan, args.pattern, reps, args.pin, args.transport)
    given = sys.argv[1:] if argv is None else argv
    command = ".venv/bin/python " + shlex.join(["bench/paced.py", *given])
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
