"""``marketprism demo``: the supervisor against built-in fake exchanges, offline.

Three fake exchanges listen on loopback; the supervisor holds one connection to each
through the same code path as production (TCP, WebSocket handshake, raw adapter). Every
``fault_every`` seconds one fake suffers the next fault in a fixed cycle: close frame,
TCP reset, stall, garbage frame, oversized frame, refused connections, slow sender. A
live table shows each connection's state, message rate, reconnects and backoff while
messages keep flowing. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
from collections.abc import Awaitable, Callable
from typing import Final

import trio
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table

from actors.registry import Stats
from supervisor.api import open_supervisor
from supervisor.config import config_from_dict
from supervisor.testing import FakeExchange, open_fake_exchange
from supervisor.tree import Supervisor

__all__ = ["run_demo"]

_NAMES: Final = ("alpha", "beta", "gamma")
_MAX_MESSAGE_SIZE: Final = 64 * 1024
_SUBSCRIBE: Final = '{"op":"subscribe","args":["trades"]}'
_REFRESH: Final = 0.25


def _demo_config(fakes: list[FakeExchange]) -> dict[str, object]:
    return {
        "supervisor": {"max_restarts": 1000, "within": 60.0, "shutdown_timeout": 2.0},
        "defaults": {
            "exchange": "raw",
            "subscribe": [_SUBSCRIBE],
            "stale_after": 2.0,
            "connect_timeout": 2.0,
            "overflow": "drop_oldest",
            "max_message_size": _MAX_MESSAGE_SIZE,
            "backoff": {
                "initial": 0.25,
                "max": 4.0,
                "multiplier": 2.0,
                "jitter": "equal",
                "reset_after": 5.0,
            },
        },
        "connections": {fake.name: {"url": fake.url} for fake in fakes},
    }


def _faults(fake: FakeExchange) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
    async def close() -> None:
        await fake.close(1001, "going away (demo)")

    async def stall() -> None:
        fake.stall()

    async def refuse() -> None:
        fake.refuse(2.0)

    async def slow() -> None:
        fake.slow(0.5)

    async def oversized() -> None:
        await fake.oversized(_MAX_MESSAGE_SIZE + 1)

    return [
        ("close 1001", close),
        ("TCP reset", fake.reset),
        ("stall", stall),
        ("garbage frame", fake.garbage),
        ("oversized frame", oversized),
        ("refuse 2 s", refuse),
        ("slow sender", slow),
    ]


async def _inject(
    fakes: list[FakeExchange],
    every: float,
    rng: random.Random,
    log: list[str],
    scope: trio.CancelScope,
) -> None:
    with scope:
        await _inject_forever(fakes, every, rng, log)


async def _inject_forever(
    fakes: list[FakeExchange], every: float, rng: random.Random, log: list[str]
) -> None:
    cycles = [_faults(fake) for fake in fakes]
    started = trio.current_time()
    step = 0
    while True:
        await trio.sleep(every)
        fake = fakes[rng.randrange(len(fakes))]
        # Undo the previous slow-down before the next fault so rates recover.
        for other in fakes:
            other.slow(0.01)
            other.resume()
        label, fault = cycles[fakes.index(fake)][step % len(cycles[0])]
        step += 1
        await fault()
        log.append(f"  +{trio.current_time() - started:6.1f} s  {fake.name}: {label}")
        del log[:-4]


async def _consume(sup: Supervisor, counter: list[int]) -> None:
    async for batch in sup.batches():
        counter[0] += len(batch)


_COLUMNS: Final = (
    ("connection", "left"),
    ("state", "left"),
    ("msg/s", "right"),
    ("messages", "right"),
    ("reconnects", "right"),
    ("backoff s", "right"),
    ("dropped", "right"),
    ("malformed", "right"),
)


def _table(stats: Stats, delivered: int, log: list[str], *, final: bool = False) -> Table:
    hint = "stopped" if final else "Ctrl-C to stop"
    table = Table(
        title=f"marketprism demo: {delivered} messages delivered ({hint})",
        caption="recent faults:\n" + ("\n".join(log) or "(none yet)"),
        caption_justify="left",
    )
    for column, justify in _COLUMNS:
        table.add_column(column, justify=justify, no_wrap=True, min_width=len(column))  # type: ignore[arg-type]
    table.add_column("last error", no_wrap=True, overflow="ellipsis", max_width=56)
    for conn in stats.connections:
        table.add_row(
            conn.name,
            conn.state,
            f"{conn.rate:.0f}",
            str(conn.messages),
            str(conn.restarts),
            f"{conn.backoff:.2f}",
            str(conn.dropped),
            str(conn.malformed),
            conn.last_error,
        )
    return table


async def _show(sup: Supervisor, counter: list[int], log: list[str], console: Console) -> None:
    if console.is_terminal:
        with Live(console=console, auto_refresh=False) as live:
            while True:
                live.update(_table(await sup.stats(), counter[0], log), refresh=True)
                await trio.sleep(_REFRESH)
    while True:
        await trio.sleep(2.0)
        console.print(_table(await sup.stats(), counter[0], log))


async def run_demo(duration: float | None, fault_every: float, seed: int | None) -> None:
    """Run the demo until ``duration`` passes or SIGINT/SIGTERM arrives.

    Cancellation: every connection and fake is closed cleanly on the way out.
    """
    from supervisor.cli import stop_on_signals

    rng = random.Random(seed)
    console = Console(file=sys.stdout)
    if console.is_terminal:
        # Logs scroll above the live table instead of tearing through it.
        handler = RichHandler(console=console, show_path=False)
        logging.getLogger("marketprism").handlers[:] = [handler]
    else:
        console.width = max(console.width, 160)
    counter = [0]
    log: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        fakes = [
            await stack.enter_async_context(open_fake_exchange(name=name, interval=0.01))
            for name in _NAMES
        ]
        config = config_from_dict(_demo_config(fakes), source="<demo>")
        sup = await stack.enter_async_context(open_supervisor(config, rng=rng))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_signals, sup)
            faults = trio.CancelScope()
            nursery.start_soon(_inject, fakes, fault_every, rng, log, faults)
            nursery.start_soon(_show, sup, counter, log, console)
            with trio.move_on_after(duration if duration is not None else float("inf")):
                await _consume(sup, counter)
            # No new faults during the clean stop, and no stalled peer to wait for.
            faults.cancel(reason="demo stopping")
            for fake in fakes:
                fake.resume()
            await sup.stop()
            nursery.cancel_scope.cancel(reason="demo finished")
        console.print(_table(await sup.stats(), counter[0], log, final=True))
