"""``marketprism demo``: the supervisor against built-in fake exchanges, offline.

Fake Binance, OKX, Deribit and Bybit servers listen on loopback, each following its exchange's
protocol and rules (acks, heartbeats, rate limits); the supervisor holds one connection
to each through the same code path as production (TCP, WebSocket handshake, the real
exchange adapters), subscribed to trades, tickers and books. Every ``fault_every``
seconds one fake suffers the next fault in a fixed cycle: close frame, TCP reset,
stall, garbage frame, book sequence gap, server disconnect notice, oversized frame,
refused connections, slow sender. Next to each fake a REST fake serves the venue's
server time (a few milliseconds off this machine's clock, differently per venue) and
instrument list, so each connection's REST calls run as in production. The status table
(``supervisor.cli.table``, the same as ``marketprism status`` shows) is redrawn 4 times
a second on a terminal, with the recent faults under it and the log scrolling above it;
into a pipe or file, a plain table every 2 s. It is written by a worker thread, never
from the loop, so a terminal that stops reading cannot stall the connections. Ctrl-C
stops everything cleanly.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final, NamedTuple

import trio
from rich.console import RenderableType

from actors.registry import Stats
from supervisor.api import open_supervisor
from supervisor.cli.signals import stop_on_signals
from supervisor.cli.table import DEFAULT_REFRESH, open_live_view, status_table
from supervisor.config import config_from_dict
from supervisor.status import serve_status_listener
from supervisor.testing import (
    FakeBinance,
    FakeBybit,
    FakeDeribit,
    FakeExchange,
    FakeOkx,
    SessionHandler,
    open_fake_exchange,
)
from supervisor.testing.fakes.rest import DEFAULT_EPOCH, FakeRest, open_fake_rest
from supervisor.tree import Supervisor

__all__ = ["run_demo"]

_MAX_MESSAGE_SIZE: Final = 256 * 1024
#: Seconds between tables when stdout is not a terminal.
_PIPE_EVERY: Final = 2.0
#: The descriptor the table goes to (the process's standard output).
_STDOUT: Final = 1
_CHANNELS: Final = ["trades", "ticker", "book"]


class _Venue(NamedTuple):
    """One fake exchange in the demo and how to hurt it."""

    fake: FakeExchange
    exchange: str
    symbols: list[str]
    #: The URL path the exchange serves these symbols on (Bybit: per category).
    path: str
    #: The exchange-specific faults: (label, action).
    extra: list[tuple[str, Callable[[], Awaitable[object]]]]
    #: The venue's REST fake (server time and instruments).
    rest: FakeRest


#: Per venue: its REST fake's native instrument names, and how far (seconds) its clock
#: runs ahead of this machine's, so the table shows a different offset for each.
_REST: Final = {
    "binance": (["BTCUSDT", "ETHUSDT"], 0.012),
    "okx": (["BTC-USDT", "ETH-USDT"], -0.008),
    "deribit": (["BTC-PERPETUAL", "ETH-PERPETUAL"], 0.021),
    "bybit": (["BTCUSDT", "ETHUSDT"], 0.004),
}


def _demo_config(venues: list[_Venue]) -> dict[str, object]:
    connections: dict[str, dict[str, object]] = {}
    for venue in venues:
        table: dict[str, object] = {
            "exchange": venue.exchange,
            "url": venue.fake.url.removesuffix("/ws") + venue.path,
            "channels": _CHANNELS,
            "symbols": venue.symbols,
            "rest": {"base_url": venue.rest.url},
        }
        if venue.exchange == "deribit":
            # Deribit's heartbeat is at least 10 s and must fit inside stale_after; the
            # platform_state channel carries its maintenance notices.
            table.update(heartbeat=10.0, stale_after=12.0, raw=["platform_state"])
        connections[venue.exchange] = table
    return {
        "supervisor": {"max_restarts": 1000, "within": 60.0, "shutdown_timeout": 2.0},
        "defaults": {
            "stale_after": 3.0,
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
        "connections": connections,
    }


def _faults(venue: _Venue) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
    fake = venue.fake

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
        *venue.extra,
        ("oversized frame", oversized),
        ("refuse 2 s", refuse),
        ("slow sender", slow),
    ]


async def _open_venues(stack: contextlib.AsyncExitStack) -> list[_Venue]:
    # The fakes stamp events with their venue's clock: trio time plus an epoch, here this
    # machine's wall clock plus the venue's own offset (the one its REST fake serves), so
    # that feed latency in stats, corrected by the measured offset, is what it would be
    # live.
    wall = time.time() - trio.current_time()

    def epoch(name: str) -> int:
        return round((wall + _REST[name][1]) * 1000)

    binance_rules = FakeBinance(epoch_ms=epoch("binance"))
    okx_rules = FakeOkx(epoch_ms=epoch("okx"))
    deribit_rules = FakeDeribit(start_ms=epoch("deribit"))
    bybit_rules = FakeBybit(epoch_ms=epoch("bybit"))

    async def fake(name: str, rules: SessionHandler) -> FakeExchange:
        return await stack.enter_async_context(
            open_fake_exchange(name=name, interval=0.05, handler=rules)
        )

    # The REST fakes' clock is DEFAULT_EPOCH plus the Trio clock; shifted to this
    # machine's wall clock plus each venue's own offset.
    to_wall = time.time() - DEFAULT_EPOCH.timestamp() - trio.current_time()

    async def rest(name: str, books: FakeBinance | FakeOkx | None = None) -> FakeRest:
        served = await stack.enter_async_context(open_fake_rest())
        natives, ahead = _REST[name]
        served.serve_venue(name, natives, offset=to_wall + ahead)
        if books is not None:  # REST book snapshots of the same books the fake streams
            served.serve_books(books)
        return served

    async def deribit_gap() -> None:
        deribit_rules.inject_gap("BTC-PERPETUAL")

    async def binance_gap() -> None:
        binance_rules.inject_gap("BTCUSDT")

    async def okx_gap() -> None:
        okx_rules.inject_gap("BTC-USDT")

    async def bybit_gap() -> None:
        bybit_rules.inject_gap("orderbook.50.BTCUSDT")

    async def bybit_restart() -> None:
        bybit_rules.restart_books()

    return [
        _Venue(
            await fake("binance", binance_rules),
            "binance",
            ["BTC-USDT", "ETH-USDT"],
            "/ws",
            [("book gap", binance_gap), ("serverShutdown", binance_rules.server_shutdown)],
            await rest("binance", binance_rules),
        ),
        _Venue(
            await fake("okx", okx_rules),
            "okx",
            ["BTC-USDT", "ETH-USDT"],
            "/ws",
            [("book gap", okx_gap), ("notice 64008", okx_rules.notice)],
            await rest("okx", okx_rules),
        ),
        _Venue(
            await fake("deribit", deribit_rules),
            "deribit",
            ["BTC-USD-PERP", "ETH-USD-PERP"],
            "/ws",
            [("book gap", deribit_gap), ("maintenance", deribit_rules.maintenance)],
            await rest("deribit"),
        ),
        _Venue(
            await fake("bybit", bybit_rules),
            "bybit",
            ["BTC-USDT", "ETH-USDT"],
            "/v5/public/spot",
            [("book gap", bybit_gap), ("service restart (u=1)", bybit_restart)],
            await rest("bybit"),
        ),
    ]


async def _inject(
    venues: list[_Venue],
    every: float,
    rng: random.Random,
    log: list[str],
    scope: trio.CancelScope,
) -> None:
    with scope:
        await _inject_forever(venues, every, rng, log)


async def _inject_forever(
    venues: list[_Venue], every: float, rng: random.Random, log: list[str]
) -> None:
    cycles = [_faults(venue) for venue in venues]
    steps = [0] * len(venues)
    started = trio.current_time()
    while True:
        await trio.sleep(every)
        # Undo the previous slow-down and stall before the next fault so rates recover.
        for venue in venues:
            venue.fake.slow(0.05)
            venue.fake.resume()
        pick = rng.randrange(len(venues))
        label, fault = cycles[pick][steps[pick] % len(cycles[pick])]
        steps[pick] += 1
        await fault()
        log.append(f"  +{trio.current_time() - started:6.1f} s  {venues[pick].exchange}: {label}")
        del log[:-4]


async def _consume(sup: Supervisor, counter: list[int]) -> None:
    async for batch in sup.batches():
        counter[0] += len(batch)


def _frame(stats: Stats, delivered: int, log: list[str], *, final: bool = False) -> RenderableType:
    hint = "stopped" if final else "Ctrl-C to stop"
    return status_table(
        stats,
        title=f"marketprism demo: {delivered} messages delivered ({hint})",
        caption="recent faults:\n" + ("\n".join(log) or "(none yet)"),
    )


async def run_demo(
    duration: float | None,
    fault_every: float,
    seed: int | None,
    *,
    status: trio.SocketListener | None = None,
) -> None:
    """Run the demo until ``duration`` passes or SIGINT/SIGTERM arrives.

    ``status``: a listener from :func:`~supervisor.status.bind_status` to serve the
    status endpoint on while the supervisor runs (``--status``); closed on the way out.
    On a terminal, log lines scroll above the table, unless ``--log-format json`` was
    asked for: JSON lines stay on stderr (:func:`~supervisor.cli.table.open_live_view`
    leaves a JSON handler in place).

    Cancellation: every connection and fake is closed cleanly on the way out.
    """
    rng = random.Random(seed)
    terminal = os.isatty(_STDOUT)
    counter = [0]
    log: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        venues = await _open_venues(stack)
        config = config_from_dict(_demo_config(venues), source="<demo>")
        sup = await stack.enter_async_context(open_supervisor(config, rng=rng))

        async def frame(final: bool) -> RenderableType:
            return _frame(await sup.stats(), counter[0], log, final=final)

        async with trio.open_nursery() as nursery:
            if status is not None:
                await nursery.start(serve_status_listener, sup, status)
            nursery.start_soon(stop_on_signals, sup)
            faults = trio.CancelScope()
            nursery.start_soon(_inject, venues, fault_every, rng, log, faults)
            async with open_live_view(
                frame,
                fd=_STDOUT,
                terminal=terminal,
                every=DEFAULT_REFRESH if terminal else _PIPE_EVERY,
                # Logs scroll above the live table instead of tearing through it.
                logs=terminal,
                flush_for=config.supervisor.shutdown_timeout,
            ):
                with trio.move_on_after(duration if duration is not None else float("inf")):
                    await _consume(sup, counter)
                # No new faults during the clean stop, and no stalled peer to wait for.
                faults.cancel(reason="demo stopping")
                for venue in venues:
                    venue.fake.resume()
                await sup.stop()
            nursery.cancel_scope.cancel(reason="demo finished")
