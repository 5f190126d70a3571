"""Stopping a running supervisor cleanly on SIGINT/SIGTERM, for ``run`` and ``demo``.

Both commands run a supervisor under a signal watcher; this module is what they share,
so that :mod:`supervisor.cli.main` (which starts the demo) and
:mod:`supervisor.cli.demo` (which needs the watcher) do not import each other.
"""

from __future__ import annotations

import logging
import signal

import trio

from supervisor.tree import Supervisor

__all__ = ["stop_on_signals"]

logger = logging.getLogger("marketprism.cli")


async def stop_on_signals(sup: Supervisor) -> None:
    """Stop ``sup`` cleanly on SIGINT or SIGTERM; further signals only log.

    The receiver stays open for the whole shutdown so that a second Ctrl-C is consumed
    here instead of surfacing as a KeyboardInterrupt traceback.

    Cancellation: returns at once; no signal handler stays installed.
    """
    timeout = sup.config.supervisor.shutdown_timeout
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            stopping = False
            async for signum in signals:
                name = signal.Signals(signum).name
                if stopping:
                    logger.warning(
                        "received %s; already stopping (at most %g s more)", name, timeout
                    )
                    continue
                stopping = True
                logger.info("received %s; stopping cleanly", name)
                nursery.start_soon(sup.stop)
