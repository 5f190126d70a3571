"""Many quiet connections in one process: setup, memory, idle CPU, and a reconnect storm.

What is measured
----------------
A local server holds ``--connections`` (1,000) WebSocket connections, each a quiet
Binance combined-stream feed: after the subscription ack, ``--trickle`` (one) trade
frame per second per connection, spread evenly over the second (``--trickle 0``: silent
feeds, to separate the cost of idling from that of the trickle). Two clients, each in a
fresh process:

``ours``
    ``open_supervisor(config)`` with one ``binance`` connection per feed (the TOML is
    generated: ``channels=["trades"]``, ``symbols=["BTC-USDT"]``, the default backoff,
    ``stale_after`` and buffer) and a consumer task draining ``sup.batches()``.
``trio-websocket``
    ``open_websocket`` + subscribe + a ``get_message()`` loop per feed, one task each, in
    one process; on a lost connection it reconnects at once (no backoff, no pacing).

For each client:

setup
    From just before ``open_supervisor`` (or starting the tasks) until every connection
    is *live*: for ours, the moment the last connection's ``live`` log record is emitted
    (the actor writes it as it reports the state ``live``, subscriptions acknowledged,
    to the registry; a ``logging.Handler`` stamps it, so nothing is polled), checked
    afterwards against ``sup.stats()`` (every ``state`` is ``live``); for
    trio-websocket, every task has its subscription ack.
RSS per connection
    ``VmRSS`` (``/proc/self/status``) after setup minus ``VmRSS`` of the same process just
    before connecting (imports done, config loaded), divided by the connection count.
idle CPU
    CPU time of the client process (``time.process_time``) over a ``--window`` (10 s)
    wall window at the trickle, started ``SETTLE`` s after setup, as % of one core, next
    to the messages the consumer got in the window against those the server sent
    (connections x window): fewer means the client could not keep up (CPU-starved).
storm
    The server closes every connection at once (TCP close, no closing handshake). The
    server counts accepted connections per 100 ms bucket from that moment (attempts per
    second) and the peak of connections accepted but not yet upgraded (handshakes in
    flight), and the seconds by which half, 90 % and all of the reconnects were
    accepted; the client reports when every connection is live again (ours: each logged
    ``live`` again, checked against ``sup.stats()``: one more ``disconnects`` each and
    every state ``live``; trio-websocket: each task subscribed again) and, for ours, by
    when half, 90 % and all of the sessions' ends were logged (``session_ended``: a
    session noticed the drop and the control loop handled its exit), which separates
    noticing the drop from reconnecting.
``sup.stats()`` latency
    For ours, the wall time of one ``sup.stats()`` call at the trickle with every
    connection live (median of 3), what a status endpoint or a monitoring loop waits per
    scrape: the registry answers after the events queued before the request and then
    builds the snapshot (both grow with the connection count).

Connect pacing: the registry grants Binance connects per host at Binance's published
limit, 300 per 5 minutes (``actors/exchanges/binance/protocol.py: connect_rate``),
keyed by the URL's host. 1,000 connections to one host would take 15 minutes to set up,
which is right for one IP against Binance but measures nothing of ours, so the feeds are
spread over ``--per-host`` (100) connections per loopback address (127.0.0.1,
127.0.0.2, ...; each a distinct host to the registry). The report states, per host, the
permits the setup used and what the rule leaves for the storm inside the same 5 minutes;
with ``--per-host`` above 150 the storm is permit-limited by design (the first
``300 - per_host`` reconnects per host at once, the rest 5 minutes after the setup's).

How
---
- The server is asyncio with ``asyncio.Protocol`` (``bench/_ws_server.py``): no task per
  connection, pre-framed writes, so it is not the bottleneck (its CPU is reported). Server
  and client run on different CPUs when there are two (``--no-pin`` to not).
- RLIMIT_NOFILE is raised to its hard limit in both processes; below ~2,100 the script
  says so (each side needs one descriptor per connection, plus a few).
- Coordination through pipes (commands to the server, events from the client), never
  sleeps; server and client stamp times with ``time.monotonic()``, the machine-wide
  ``CLOCK_MONOTONIC``, so the storm's start (server) and the all-live time (client)
  compare directly.
- ``--reps`` (3) repetitions, interleaved (ours, trio-websocket, ours, ...), median
  [min-max].

Caveats
-------
- Loopback, no TLS: a TLS handshake per connection would add CPU to setup and storm.
- The log handler that stamps ``live`` is the benchmark's, not the product's; its cost
  (a set insertion per record) is noise. The records themselves (a ``LogRecord`` per
  state change) are made in production too, whatever the handlers.
- On a shared two-CPU machine the load of other processes leaks into wall times
  (setup, storm), less into CPU time; the ``other load`` column says how busy it was.
  A client pinned to a CPU that others use gets only part of it: compare ``messages in
  the window`` with what was sent before reading the idle CPU as a cost.

Usage::

    python bench/scale.py                      # 1,000 connections, 3 repetitions
    python bench/scale.py --quick              # 50 connections, 1 repetition, 3 s window
    python bench/scale.py --connections 20 --per-host 10 --reps 1 --window 0.5  # smoke size
    python bench/scale.py --write --label "commit abc1234"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _ws_server import (
    Hub,
    WsConn,
    listen,
    percentile,
    raise_fd_limit,
    reply,
    serve_control,
    write_section,
)
from receive_path import (
    _cpu_model,
    _git_commit,
    _LoadMeter,
    _pin_args,
    _version,
    choose_cpus,
    subscribe_request,
)

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"

FULL_CONNECTIONS = 1_000
QUICK_CONNECTIONS = 50
FULL_REPS = 3
FULL_WINDOW = 10.0
QUICK_WINDOW = 3.0
#: Seconds between setup and the idle-CPU window (startup work, e.g. the first stats
#: flushes and garbage collection, is over by then).
SETTLE = 1.0
#: Width of the server's accept-count buckets during the storm.
BUCKET = 0.1
#: Binance's published connect limit, which the registry applies per host.
BINANCE_CONNECT_RATE = (300, 300.0)
#: Seconds any single step may take before the run is declared stuck (a failure guard).
STEP_TIMEOUT = 600.0

KINDS: list[tuple[str, str]] = [
    ("ours", "ours: `open_supervisor`, binance adapter, `sup.batches()`"),
    ("trio_ws", "trio-websocket `open_websocket` + `get_message()` per connection"),
]


def rss_kib() -> int:
    """This process's resident set size in KiB (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def hosts_for(connections: int, per_host: int) -> list[str]:
    """The loopback addresses the connections are spread over, ``per_host`` each."""
    count = math.ceil(connections / per_host)
    if count > 254:
        raise ValueError(f"{count} loopback addresses needed; raise --per-host")
    return [f"127.0.0.{i + 1}" for i in range(count)]


# -- server --------------------------------------------------------------------------------


class ScaleHub(Hub):
    """Every subscribed connection gets one trade per second; a storm drops them all."""

    def __init__(self) -> None:
        super().__init__()
        self.subs: dict[WsConn, None] = {}
        self.storm_at = 0.0
        self.empty = asyncio.Event()
        self.empty.set()

    def accepted_one(self, conn: WsConn) -> None:
        super().accepted_one(conn)
        self.empty.clear()

    def subscribed(self, conn: WsConn) -> None:
        self.subs[conn] = None

    def lost(self, conn: WsConn) -> None:
        super().lost(conn)
        self.subs.pop(conn, None)
        if not self.conns:
            self.empty.set()

    async def trickle(self, rate: float) -> None:
        """``rate`` trades per second per connection, each round in 100 slices."""
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        at = loop.time()
        batch: list[WsConn] = []
        slot = 0
        while True:
            if slot == 0:
                batch = list(self.subs)
            size = len(batch)
            for conn in batch[slot * size // 100 : (slot + 1) * size // 100]:
                if conn.live:
                    conn.send_trade(conn.sent)
            slot = (slot + 1) % 100
            at += 0.01 / rate
            await asyncio.sleep(max(0.0, at - loop.time()))

    async def command(self, words: list[str]) -> dict[str, Any] | None:
        match words:
            case ["quit"]:
                return None
            case ["counts"]:
                return {
                    "conns": len(self.conns),
                    "subscribed": len(self.subs),
                    "accepted": self.accepted,
                    "cpu": time.process_time(),
                }
            case ["storm"]:
                self.accept_times.clear()
                self.record_accepts = True
                victims = list(self.subs)
                self.storm_at = time.monotonic()
                for conn in victims:
                    conn.drop()
                self.reset_peak()
                return {"t": self.storm_at, "dropped": len(victims)}
            case ["storm_report"]:
                self.record_accepts = False
                times = [t - self.storm_at for t in self.accept_times]
                buckets = [0] * (int(max(times, default=0.0) / BUCKET) + 1)
                for t in times:
                    buckets[int(t / BUCKET)] += 1
                return {
                    "accepts": len(times),
                    "offsets": sorted(round(t, 4) for t in times),
                    "buckets": buckets,
                    "first": min(times, default=math.nan),
                    "last": max(times, default=math.nan),
                    "peak_in_handshake": self.peak_in_handshake,
                }
            case ["wait_empty"]:
                await self.empty.wait()
                return {"conns": 0}
        return {"error": f"unknown command {words!r}"}


async def serve(hosts: list[str], rate: float) -> None:
    _, warning = raise_fd_limit()
    if warning:
        print(f"server: {warning}", file=sys.stderr, flush=True)
    hub = ScaleHub()
    addresses = await listen(hub, hosts)
    reply({"targets": [f"{host}:{port}" for host, port in addresses]})
    trickle = asyncio.create_task(hub.trickle(rate))
    try:
        await serve_control(hub.command)
    finally:
        trickle.cancel()


# -- clients -------------------------------------------------------------------------------


def _out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def assign(targets: list[str], connections: int, per_host: int) -> list[tuple[str, int]]:
    """(host, port) of every connection: the first ``per_host`` on the first target..."""
    out = []
    for i in range(connections):
        host, _, port = targets[i // per_host].rpartition(":")
        out.append((host, int(port)))
    return out


def config_toml(addresses: list[tuple[str, int]], transport: str | None) -> str:
    extra = f'transport = "{transport}"\n' if transport else ""
    parts = ["[supervisor]\nshutdown_timeout = 5.0\n"]
    for i, (host, port) in enumerate(addresses):
        parts.append(
            f'[connections.c{i:04d}]\nexchange = "binance"\nurl = "ws://{host}:{port}/stream"\n'
            f'channels = ["trades"]\nsymbols = ["BTC-USDT"]\n{extra}'
        )
    return "\n".join(parts)


async def _read_stdin_line() -> str:
    import trio

    return await trio.to_thread.run_sync(sys.stdin.readline)


async def _idle_window(window: float, count: list[int]) -> dict[str, float]:
    import trio

    await trio.sleep(SETTLE)
    messages0, cpu0, wall0 = count[0], time.process_time(), time.monotonic()
    await trio.sleep(window)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    return {"idle_cpu": cpu / wall, "idle_messages": count[0] - messages0, "window": wall}


class _LiveLog(logging.Handler):
    """Counts the connections whose ``live`` record was emitted since :meth:`arm`.

    The actor writes that record as it reports the state ``live`` to the registry
    (``actors/connection.py: _went_live``), so it marks the moment a connection is live
    without polling ``sup.stats()`` (a snapshot of 1,000 connections costs the registry
    100-250 ms of CPU here, and the registry also grants connect permits: polling it
    every 50 ms stretched a storm's recovery from about 10 s to 77 s).
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.arm()

    def arm(self) -> None:
        import trio

        self.live: set[str] = set()
        self.all_live = trio.Event()
        self.at = math.nan
        self.ends: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", None)
        if event in ("session_ended", "failures_summarized", "crashed"):
            self.ends.append(time.monotonic())
        if event != "live":
            return
        self.live.add(getattr(record, "connection", ""))
        if len(self.live) == self.n and not self.all_live.is_set():
            self.at = time.monotonic()
            self.all_live.set()


async def client_ours(
    addresses: list[tuple[str, int]], window: float, transport: str | None
) -> None:
    import trio

    from supervisor import loads_config, open_supervisor

    config = loads_config(config_toml(addresses, transport), source="bench")
    n = len(addresses)
    count = [0]
    live_log = _LiveLog(n)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(live_log)

    async def consume(sup: Any) -> None:
        async for batch in sup.batches():
            count[0] += len(batch)

    async def check(sup: Any, more_than: list[int] | None) -> list[int]:
        # Every connection live in stats too (and, after the storm, one more disconnect).
        stats = await sup.stats()
        bad = [
            c.name
            for i, c in enumerate(stats.connections)
            if c.state != "live" or (more_than is not None and c.disconnects <= more_than[i])
        ]
        if bad:
            raise AssertionError(f"not live again in stats: {bad[:5]} ({len(bad)} in all)")
        return [c.disconnects for c in stats.connections]

    rss0 = rss_kib()
    t0 = time.monotonic()
    async with open_supervisor(config) as sup, trio.open_nursery() as nursery:
        nursery.start_soon(consume, sup)
        await live_log.all_live.wait()
        t_live = live_log.at
        rss1 = rss_kib()
        before = await check(sup, None)
        idle = await _idle_window(window, count)
        snapshot_wall = []
        for _ in range(3):
            wall0 = time.monotonic()
            await sup.stats()
            snapshot_wall.append(time.monotonic() - wall0)
        _out(
            {
                "ev": "ready",
                "setup": t_live - t0,
                "rss0": rss0,
                "rss1": rss1,
                "snapshot_wall": statistics.median(snapshot_wall),
                **idle,
            }
        )
        line = await _read_stdin_line()
        live_log.arm()
        storm_at = float(line.split()[1])
        await live_log.all_live.wait()
        t_again = live_log.at
        await check(sup, before)
        stats = await sup.stats()
        _out(
            {
                "ev": "storm",
                "all_live": t_again - storm_at,
                "ends": sorted(round(t - storm_at, 4) for t in live_log.ends),
                "max_delay": max(c.backoff for c in stats.connections),
                "connects": sum(c.connects for c in stats.connections),
                "n": n,
            }
        )
        nursery.cancel_scope.cancel(reason="benchmark done")


async def client_trio_ws(addresses: list[tuple[str, int]], window: float) -> None:
    import trio
    import trio_websocket

    n = len(addresses)
    count = [0]
    sessions = [0] * n
    live_counts: dict[int, int] = {}
    done: dict[int, trio.Event] = {1: trio.Event(), 2: trio.Event()}

    async def feed(i: int, host: str, port: int) -> None:
        while True:
            try:
                async with trio_websocket.open_websocket(
                    host, port, "/stream", use_ssl=False
                ) as ws:
                    await ws.send_message(subscribe_request())
                    ack = await ws.get_message()
                    if json.loads(ack) != {"result": None, "id": 1}:
                        raise AssertionError(f"unexpected ack {ack!r}")
                    sessions[i] += 1
                    k = sessions[i]
                    live_counts[k] = live_counts.get(k, 0) + 1
                    if live_counts[k] == n and k in done:
                        done[k].set()
                    while True:
                        await ws.get_message()
                        count[0] += 1
            except (trio_websocket.ConnectionClosed, trio_websocket.HandshakeError, OSError):
                continue

    rss0 = rss_kib()
    t0 = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i, (host, port) in enumerate(addresses):
            nursery.start_soon(feed, i, host, port)
        await done[1].wait()
        t_live = time.monotonic()
        rss1 = rss_kib()
        idle = await _idle_window(window, count)
        _out({"ev": "ready", "setup": t_live - t0, "rss0": rss0, "rss1": rss1, **idle})
        line = await _read_stdin_line()
        storm_at = float(line.split()[1])
        await done[2].wait()
        _out(
            {
                "ev": "storm",
                "all_live": time.monotonic() - storm_at,
                "max_delay": 0.0,
                "connects": sum(sessions),
                "n": n,
            }
        )
        nursery.cancel_scope.cancel(reason="benchmark done")


def run_client(
    kind: str, addresses: list[tuple[str, int]], window: float, transport: str | None
) -> None:
    import trio

    _, warning = raise_fd_limit()
    if warning:
        print(f"client: {warning}", file=sys.stderr, flush=True)
    # The records are still made (their cost is ours); a thousand "session ended" lines
    # on stderr are not wanted. Without a handler, logging would print them (lastResort).
    logging.getLogger().addHandler(logging.NullHandler())
    if kind == "ours":
        trio.run(client_ours, addresses, window, transport)
    else:
        trio.run(client_trio_ws, addresses, window)


# -- orchestration -------------------------------------------------------------------------


def _send(proc: subprocess.Popen[bytes], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line.encode() + b"\n")
    proc.stdin.flush()


def _command(server: subprocess.Popen[bytes], lines: Any, command: str) -> dict[str, Any]:
    _send(server, command)
    answer: dict[str, Any] = lines.next(STEP_TIMEOUT)
    if "error" in answer:
        raise RuntimeError(f"server: {answer['error']}")
    return answer


def measure(
    connections: int,
    per_host: int,
    reps: int,
    window: float,
    pin: bool,
    transport: str | None,
    trickle: float = 1.0,
) -> dict[str, Any]:
    from recovery import _Lines

    _, warning = raise_fd_limit()
    if warning:
        print(warning, file=sys.stderr, flush=True)
    server_cpu, client_cpu = choose_cpus(pin)
    me = str(Path(__file__).resolve())
    hosts = hosts_for(connections, per_host)
    run_meter = _LoadMeter()
    server = subprocess.Popen(
        [
            *(sys.executable, me, "_serve", "--hosts", ",".join(hosts)),
            *("--trickle", str(trickle), *_pin_args(server_cpu)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    trials: dict[str, list[dict[str, Any]]] = {kind: [] for kind, _ in KINDS}
    try:
        from_server = _Lines(server, "server")
        targets = from_server.next(STEP_TIMEOUT)["targets"]
        for rep in range(reps):
            for kind, _ in KINDS:
                meter = _LoadMeter(server.pid)
                server_cpu0 = _command(server, from_server, "counts")["cpu"]
                args = [me, "_client", kind, "--targets", ",".join(targets)]
                args += ["--connections", str(connections), "--per-host", str(per_host)]
                args += ["--window", str(window)]
                if transport and kind == "ours":
                    args += ["--transport", transport]
                client = subprocess.Popen(
                    [sys.executable, *args, *_pin_args(client_cpu)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                try:
                    events = _Lines(client, f"{kind} client")
                    ready = events.next(STEP_TIMEOUT)
                    storm = _command(server, from_server, "storm")
                    _send(client, f"storm {storm['t']}")
                    again = events.next(STEP_TIMEOUT)
                    report = _command(server, from_server, "storm_report")
                    if client.wait(timeout=STEP_TIMEOUT) != 0:
                        raise RuntimeError(f"{kind} client exited with {client.returncode}")
                finally:
                    if client.poll() is None:
                        client.kill()
                        client.wait()
                _command(server, from_server, "wait_empty")
                server_cpu1 = _command(server, from_server, "counts")["cpu"]
                trial = {
                    **ready,
                    "dropped": storm["dropped"],
                    "all_live": again["all_live"],
                    "ends": again.get("ends", []),
                    "max_delay": again["max_delay"],
                    "client_connects": again["connects"],
                    "accepts": report["accepts"],
                    "buckets": report["buckets"],
                    "offsets": report["offsets"],
                    "accept_first": report["first"],
                    "accept_last": report["last"],
                    "peak_in_handshake": report["peak_in_handshake"],
                    "server_cpu": server_cpu1 - server_cpu0,
                    "other_load": meter.read()[0],
                }
                trials[kind].append(trial)
                print(
                    f"rep {rep + 1}/{reps} {kind:<8} setup {trial['setup']:.2f} s  "
                    f"RSS {(trial['rss1'] - trial['rss0']) / connections:.1f} KiB/conn  "
                    f"idle CPU {trial['idle_cpu'] * 100:.1f} %  storm: {trial['accepts']} "
                    f"accepts, peak {max(trial['buckets']) / BUCKET:,.0f}/s, all live after "
                    f"{trial['all_live']:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
        _send(server, "quit")
        server.wait(timeout=STEP_TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
    other_load, steal = run_meter.read()
    return {
        "connections": connections,
        "trickle": trickle,
        "per_host": per_host,
        "hosts": len(hosts),
        "reps": reps,
        "window": window,
        "transport": transport,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "trials": trials,
        "other_load": other_load,
        "steal": steal,
        "run_seconds": time.perf_counter() - run_meter.wall0,
    }


# -- report --------------------------------------------------------------------------------


def _spread(values: list[float], fmt: str) -> str:
    return (
        f"{format(statistics.median(values), fmt)} "
        f"[{format(min(values), fmt)}-{format(max(values), fmt)}]"
    )


def render_tables(run: dict[str, Any]) -> str:
    n = run["connections"]
    labels = dict(KINDS)
    rows = [
        "| client | setup s | RSS KiB per connection | idle CPU % of a core "
        "| messages in the window (of sent) | `sup.stats()` latency ms | other load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, _ in KINDS:
        trials = run["trials"][kind]
        snapshots = [t["snapshot_wall"] * 1e3 for t in trials if "snapshot_wall" in t]
        snapshot = _spread(snapshots, ".1f") if snapshots else "-"
        rows.append(
            f"| {labels[kind]} | {_spread([t['setup'] for t in trials], '.2f')} "
            f"| {_spread([(t['rss1'] - t['rss0']) / n for t in trials], '.1f')} "
            f"| {_spread([t['idle_cpu'] * 100 for t in trials], '.1f')} "
            f"| {statistics.median([t['idle_messages'] for t in trials]):,.0f} of "
            f"{statistics.median([t['window'] for t in trials]) * n * run['trickle']:,.0f} "
            f"| {snapshot} "
            f"| {statistics.median([t['other_load'] for t in trials]):.2f} |"
        )
    rows += [
        "",
        "| storm: client | dropped | reconnects seen by the server | peak attempts/s (100 ms) "
        "| mean attempts/s (first to last) | half / 90 % / all ends logged s "
        "| half / 90 % / all reconnected s "
        "| peak handshakes in flight | all live again s | largest backoff drawn s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, _ in KINDS:
        trials = run["trials"][kind]
        mean_rate = [
            t["accepts"] / max(t["accept_last"] - t["accept_first"], BUCKET) for t in trials
        ]
        rows.append(
            f"| {labels[kind]} | {statistics.median([t['dropped'] for t in trials]):,.0f} "
            f"| {statistics.median([t['accepts'] for t in trials]):,.0f} "
            f"| {_spread([max(t['buckets']) / BUCKET for t in trials], ',.0f')} "
            f"| {_spread(mean_rate, ',.0f')} "
            f"| {_marks(trials, 'ends')} "
            f"| {_marks(trials, 'offsets')} "
            f"| {_spread([t['peak_in_handshake'] for t in trials], ',.0f')} "
            f"| {_spread([t['all_live'] for t in trials], '.2f')} "
            f"| {_spread([t['max_delay'] for t in trials], '.2f')} |"
        )
    return "\n".join(rows)


def _marks(trials: list[dict[str, Any]], key: str) -> str:
    """Seconds after the storm by which half, 90 % and all of ``key`` happened (medians
    over the trials): ``offsets``, the server's accepts; ``ends``, ours' session ends
    logged (a session noticed the drop and the supervisor handled its exit)."""
    if not all(t[key] for t in trials):
        return "-"
    marks = [
        statistics.median(percentile(t[key], share) for t in trials) for share in (50, 90, 100)
    ]
    return " / ".join(f"{mark:.2f}" for mark in marks)


def permit_note(run: dict[str, Any]) -> str:
    attempts, seconds = BINANCE_CONNECT_RATE
    per_host = min(run["per_host"], run["connections"])
    left = max(0, attempts - per_host)
    limited = per_host > left
    verdict = (
        f"so the storm's {per_host} reconnects per host exceed it: {left} per host may start "
        f"at once, the rest {seconds:g} s after the setup's grants"
        if limited
        else f"so the storm's {per_host} reconnects per host fit in it: the permits do not pace "
        "this storm (the backoff's jitter spreads it)"
    )
    return (
        f"- Connect permits: Binance's {attempts} per {seconds:g} s per host; {run['hosts']} "
        f"loopback host{'s' if run['hosts'] != 1 else ''} with up to {per_host} connections "
        f"each; the setup used {per_host} "
        f"grants per host, leaving {left} in the same {seconds:g} s, {verdict}"
    )


def render_body(run: dict[str, Any], command: str) -> str:
    pinned = (
        f"server on CPU {run['server_cpu']}, clients on CPU {run['client_cpu']}"
        if run["server_cpu"] is not None
        else "not pinned"
    )
    server_cpu = [t["server_cpu"] for kind, _ in KINDS for t in run["trials"][kind]]
    lines = [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical CPUs ({pinned})",
        f"- OS: {platform.system()} {platform.release()}; Python "
        f"{platform.python_version()}, trio {_version('trio')}, trio-websocket "
        f"{_version('trio-websocket')}, wsproto {_version('wsproto')}",
        f"- Code: commit {_git_commit()}; transport {run['transport'] or '(not set: the default)'}",
        f"- {run['connections']:,} connections, {run['trickle']:g} trade/s each; "
        f"{run['reps']} interleaved "
        f"repetition{'s' if run['reps'] != 1 else ''}, median [min-max]; idle window "
        f"{run['window']:g} s; run took "
        f"{run['run_seconds']:.0f} s; other load {run['other_load']:.2f} CPUs (steal "
        f"{run['steal']:.2f}); server CPU per trial {max(server_cpu):.1f} s at most",
        "- ours: default backoff (initial 0.5 s, full jitter: a first delay uniform in "
        "[0, 0.5] s), default stale_after 30 s; live = the connection's `live` log record "
        "(state `live`, subscriptions acknowledged), checked against `sup.stats()`",
        permit_note(run),
        "",
        "```sh",
        command,
        "```",
        "",
        render_tables(run),
    ]
    return "\n".join(lines)


INTRO = """Many quiet connections in one process (`bench/scale.py`): setup time, RSS per
connection and idle CPU for ours and for raw trio-websocket, then a storm where the
server drops every connection at once: reconnect attempts per second and handshakes in
flight as the server saw them, and the time until all are live again (see the script's
docstring for definitions and caveats)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scale.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="internal")
    serve_p = sub.add_parser("_serve", help=argparse.SUPPRESS)
    serve_p.add_argument("--hosts", required=True)
    serve_p.add_argument("--trickle", type=float, required=True)
    serve_p.add_argument("--cpu", type=int)
    client_p = sub.add_parser("_client", help=argparse.SUPPRESS)
    client_p.add_argument("kind", choices=[kind for kind, _ in KINDS])
    client_p.add_argument("--targets", required=True)
    client_p.add_argument("--connections", type=int, required=True)
    client_p.add_argument("--per-host", type=int, required=True)
    client_p.add_argument("--window", type=float, required=True)
    client_p.add_argument("--transport")
    client_p.add_argument("--cpu", type=int)
    parser.add_argument(
        "--connections", type=int, help=f"connections (default {FULL_CONNECTIONS:,})"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_CONNECTIONS} connections, 1 repetition, {QUICK_WINDOW:g} s window",
    )
    parser.add_argument("--reps", type=int, help=f"repetitions (default {FULL_REPS})")
    parser.add_argument(
        "--window", type=float, help=f"idle CPU window in seconds (default {FULL_WINDOW:g})"
    )
    parser.add_argument(
        "--per-host", type=int, default=100, help="connections per loopback address (100)"
    )
    parser.add_argument(
        "--trickle",
        type=float,
        default=1.0,
        help="trades per second per connection (1; 0 for silent feeds)",
    )
    parser.add_argument(
        "--transport", help='adds transport = "NAME" to our connections (only when given)'
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
        asyncio.run(serve(args.hosts.split(","), args.trickle))
        return
    if args.internal == "_client":
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        addresses = assign(args.targets.split(","), args.connections, args.per_host)
        run_client(args.kind, addresses, args.window, args.transport)
        return

    connections = (
        args.connections
        if args.connections is not None
        else QUICK_CONNECTIONS
        if args.quick
        else FULL_CONNECTIONS
    )
    reps = args.reps if args.reps is not None else 1 if args.quick else FULL_REPS
    window = args.window if args.window is not None else QUICK_WINDOW if args.quick else FULL_WINDOW
    if connections < 1:
        parser.error(f"--connections must be 1 or more, got {connections}")
    if reps < 1:
        parser.error(f"--reps must be 1 or more, got {reps}")
    if not 0 <= args.trickle <= 100:
        parser.error(f"--trickle must be within [0, 100] trades/s, got {args.trickle:g}")
    if not window > 0:
        parser.error(f"--window must be more than 0 s, got {window:g}")
    if not 1 <= args.per_host <= BINANCE_CONNECT_RATE[0]:
        parser.error(
            f"--per-host must be within [1, {BINANCE_CONNECT_RATE[0]}] (Binance's connect "
            f"limit per 5 minutes; more makes the setup itself wait for permits), "
            f"got {args.per_host}"
        )
    if math.ceil(connections / args.per_host) > 254:
        parser.error(
            f"--connections {connections} with --per-host {args.per_host} needs more than "
            "254 loopback addresses; raise --per-host"
        )
    run = measure(connections, args.per_host, reps, window, args.pin, args.transport, args.trickle)
    given = sys.argv[1:] if argv is None else argv
    command = ".venv/bin/python " + shlex.join(["bench/scale.py", *given])
    label = args.label or f"commit {_git_commit()}"
    body = render_body(run, command)
    print(f"## Scale: {label}\n\n{body}")
    if args.json:
        print(json.dumps(run))
    if args.write:
        write_section(BENCHMARKS, "## Scale (`bench/scale.py`)", INTRO, "scale", label, body)
        print(f"\nwrote section {label!r} to {BENCHMARKS}", file=sys.stderr)


if __name__ == "__main__":
    main()
