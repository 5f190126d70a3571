"""The public entry: ``open_supervisor(config)`` and the per-message iterator.

::

    async with open_supervisor(load_config("config.toml")) as sup:
        async for msg in sup.messages():
            ...

Everything the supervisor starts lives inside the ``async with``: no globals, no
threads, nothing left running after it exits. That includes the one holder of REST
clients: ``await sup.rest("binance").get("/api/v3/ticker/price", params=...)`` calls
through the connection's own client, closed when the supervisor stops.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import trio

from actors.net import Connector
from supervisor.config import Config
from supervisor.tree import Supervisor

__all__ = ["open_supervisor"]


@asynccontextmanager
async def open_supervisor(
    config: Config,
    *,
    connector: Connector | None = None,
    rng: random.Random | None = None,
    environ: Mapping[str, str] | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[Supervisor]:
    """Run a supervision tree for ``config`` while the ``async with`` body runs.

    Args:
        config: from :func:`~supervisor.config.load_config` (or ``loads_config``,
            ``config_from_dict``).
        connector: opens the stream under each WebSocket; default, per connection,
            TCP through the connection's route (proxies) and verified TLS. Tests pass
            an in-memory connector from :mod:`supervisor.testing`.
        rng: randomness for backoff jitter; pass a seeded ``random.Random`` for
            reproducible delays.
        environ: where environment proxies (``HTTPS_PROXY``, ``NO_PROXY``, ...) are
            read from; default ``os.environ``.
        wall_clock: Unix time, read around each server-time call for the clock offsets
            in stats; default ``time.time`` (tests pass one tied to the Trio clock).

    Yields:
        The running :class:`~supervisor.tree.Supervisor`.

    Raises:
        ConfigError: an environment proxy variable holds an invalid URL.
        RestartLimitExceeded: restart intensity was exceeded; every connection was
            closed cleanly first and the body was cancelled.
        GaveUp: connections were not live for their ``give_up_after`` and no permanent
            connection (none at all, if none is permanent) is left running; every
            connection was closed cleanly first and the body was cancelled.

    Cancellation: on exit, whether normal, by exception or by cancellation, every
    connection is closed cleanly within ``shutdown_timeout``; the REST clients
    (``sup.rest(name)``) are closed last.
    """
    sup = Supervisor(config, connector=connector, rng=rng, environ=environ, wall_clock=wall_clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)

        async def cancel_body_on_escalation() -> None:
            await sup.finished.wait()
            if sup.fatal is not None:
                nursery.cancel_scope.cancel(reason=f"supervisor gave up: {sup.fatal}")

        nursery.start_soon(cancel_body_on_escalation)
        try:
            yield sup
        finally:
            await sup.stop()
    if sup.fatal is not None:
        raise sup.fatal
