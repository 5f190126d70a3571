"""``run_soak``: one Trio run with the fakes, the supervisor, a consumer and the driver.

Theory of operation: :func:`run_soak` loads the configuration with the project's
loader, starts one fake per connection (:mod:`._venues`), opens the real supervisor
with that configuration pointed at the fakes and the transport's own connector wrapped
in an :class:`~._observe.Observer`, taps every fake's data frames into the
:class:`~._ledger.Ledger`, consumes ``sup.batches()`` into it, and lets the
:class:`~._driver.Driver` run the rounds. At the end it stops the supervisor while the
consumer still reads, so that the final stats are exact, and returns everything
measured as a :class:`~._records.RunResult`. The supervisor's log goes to a counter,
not to the terminal.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from pathlib import Path
from urllib.parse import urlsplit

import trio

from actors.net import Connector, TcpTlsConnector
from actors.registry import ConnectionStats
from supervisor.api import open_supervisor
from supervisor.testing.fake import route
from supervisor.testing.soak._driver import Driver, GiveUp
from supervisor.testing.soak._ledger import Ledger
from supervisor.testing.soak._observe import LogCounter, Observer
from supervisor.testing.soak._probes import pin_mmap_threshold
from supervisor.testing.soak._records import RunResult, SoakOptions
from supervisor.testing.soak._venues import open_venues, soak_config

__all__ = ["run_soak"]


async def run_soak(options: SoakOptions) -> RunResult:
    """Run one soak and return what it measured.

    Raises:
        ConfigError: the configuration file is not valid.
        SoakConfigError: it cannot be soaked (an exchange without a fake).

    Cancellation: the supervisor and every fake are closed on the way out.
    """
    config, raw = soak_config(_path(options.config))
    pin_mmap_threshold()
    stale_after = min(spec.stale_after for spec in config.connections)
    interval = options.interval if options.interval is not None else stale_after / 2
    ledger = Ledger()
    logs = LogCounter()
    logger = logging.getLogger("marketprism")
    logger.addHandler(logs)
    previous_level, previous_propagate = logger.level, logger.propagate
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    clock_start = time.monotonic()
    cpu_start = time.process_time()
    trio_start = trio.current_time()
    soak: Driver | None = None
    stopped: str | None = None
    final: tuple[ConnectionStats, ...] = ()
    refused: dict[str, int] = {}
    try:
        async with open_venues(
            config, raw, transport=options.transport, interval=interval, source=options.config
        ) as (venues, soaked):
            fakes = {venue.name: venue.fake for venue in venues}
            if options.transport == "memory":
                inner: Connector = route(*fakes.values())
                hosts = {urlsplit(fake.url).hostname: name for name, fake in fakes.items()}
            else:
                inner = TcpTlsConnector()
                hosts = {str(fake.port): name for name, fake in fakes.items()}

            def venue_of(url: str) -> str:
                parts = urlsplit(url)
                key = parts.hostname if options.transport == "memory" else str(parts.port)
                return hosts[key]

            observer = Observer(inner, venue_of)
            async with open_supervisor(
                soaked, connector=observer, rng=random.Random(options.seed)
            ) as sup:
                soak = Driver(options, soaked, venues, sup, observer, ledger)
                for venue in venues:
                    venue.fake.data_tap = functools.partial(soak.tap, venue)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(soak.consume)
                    try:
                        await soak.run()
                    except GiveUp as exc:
                        stopped = str(exc)
                    for venue in venues:
                        venue.fake.data_tap = None  # what is written now is not accounted
                        venue.fake.resume()
                    # Stop while the consumer still reads: the final stats are exact.
                    await sup.stop()
                    final = (await sup.stats()).connections
                    nursery.cancel_scope.cancel(reason="soak finished")
            refused = {venue.name: venue.fake.refused for venue in venues}
    finally:
        logger.removeHandler(logs)
        logger.setLevel(previous_level)
        logger.propagate = previous_propagate
    assert soak is not None
    return RunResult(
        options=options,
        config=config,
        interval=interval,
        faults=soak.done,
        rounds=soak.rounds,
        kinds=soak.kinds,
        records=soak.records,
        broken=soak.broken,
        garbage=dict(soak.garbage),
        ledger=ledger,
        leaks=soak.leaks,
        stats=final,
        problems=soak.problems,
        log_counts=logs.counts,
        log_errors=logs.errors,
        elapsed=time.monotonic() - clock_start,
        cpu=time.process_time() - cpu_start,
        virtual=trio.current_time() - trio_start,
        refused=refused,
        stopped=stopped,
    )


def _path(config: str) -> Path:
    return Path(config)
