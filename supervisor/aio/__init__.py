"""The asyncio front door: the Trio supervisor, run as a guest in the caller's asyncio loop.

::

    import asyncio
    from supervisor import load_config
    from supervisor.aio import open_supervisor

    async def main() -> None:
        async with open_supervisor(load_config("config.toml")) as sup:
            async for msg in sup.messages():
                ...

    asyncio.run(main())

Theory of operation
-------------------
*The guest run.* :func:`open_supervisor` starts a Trio run with
``trio.lowlevel.start_guest_run`` in the thread of the running asyncio loop (never in a
thread of its own, and never through trio-asyncio, which replaces asyncio's event loop
policy for the whole process). Trio's scheduler then runs as callbacks of the asyncio
loop (``loop.call_soon``); only the wait for I/O readiness runs in a worker thread of
Trio's thread cache, which posts the next tick back with ``loop.call_soon_threadsafe``.
Every Trio task, socket and nursery of the supervisor therefore runs on the caller's
thread, between asyncio callbacks, exactly as under ``trio.run``. The guest's main task
runs :func:`supervisor.open_supervisor` (so the Trio API's semantics apply unchanged)
and, beside it, one nursery in which it serves the asyncio side's calls.

*The bridge.* Every method that waits (``stats``, ``restart``, ``stop``,
``subscribe``, ``unsubscribe``, ``add_connection``, ``remove_connection`` and each step
of ``messages``/``batches``) is one call of a Trio async function in the guest, awaited
by an asyncio coroutine: the request crosses with the guest's ``TrioToken.run_sync_soon``
(which wakes Trio if it is waiting for I/O), a Trio task runs the function in a cancel
scope of its own, and its outcome comes back through an asyncio future. An exception
raised by the Trio function is raised in asyncio as the same object (same type, same
message). Cancelling the awaiting asyncio task cancels that scope and then waits for
the Trio call to end, so nothing of a cancelled call is left running. A call still
running when the guest stops (its nursery is cancelled at shutdown, or the run ended)
raises ``RuntimeError`` naming the call, never hangs.

*Backpressure.* ``messages()`` and ``batches()`` are pull-based: each step asks the
guest for the next batch (taken at once if one is queued, else awaited), so at most one
batch per waiting consumer is outside the supervisor's queues, held by that consumer.
The connection's own queue bound and overflow policy (``block``, ``drop_oldest``,
``drop_newest``) stay the only buffer: a slow asyncio consumer sees exactly the drops a
slow Trio consumer would, and under ``block`` the back-pressure reaches TCP. A batch that
arrives after its ``__anext__`` was cancelled is kept for the next one: nothing is lost.

*Lifetime.* ``__aexit__`` tells the guest to leave its body (whether the asyncio body
returned, raised or was cancelled), which stops the supervisor as the Trio API does
(close frames answered within ``shutdown_timeout``), then waits for the guest run's
``done_callback``: when ``async with`` exits, the Trio run is over, its tasks, sockets,
epoll descriptor and wake-up socket closed; further cancellations of the exiting task
are held back until then and re-raised after. Trio's I/O worker thread is not joined:
it goes back to Trio's process-wide thread cache (a daemon thread, idle, holding no
descriptor) and exits after 10 s without work, or is reused by the next Trio run.
If the supervisor itself ends the run (``RestartLimitExceeded``, ``GaveUp``, or a
``ConfigError`` at start), the body is cancelled and that exception leaves the
``async with``, as with the Trio API. No asyncio task is created.

*Ctrl-C.* Under ``asyncio.run`` (Python 3.11+), SIGINT cancels the main task; that
cancellation reaches the body, ``__aexit__`` stops the supervisor cleanly and awaits the
end of the guest run, and ``asyncio.run`` then raises ``KeyboardInterrupt`` (an
uncaught one ends the process with status 130, -SIGINT, after printing the traceback
of the cancelled body and the ``KeyboardInterrupt``; catch it around ``asyncio.run`` for
a quiet exit). Trio is told that the host owns ``signal.set_wakeup_fd``
(``host_uses_signal_set_wakeup_fd=True``): asyncio's Unix loops point it at their own
socket for ``loop.add_signal_handler``, uvloop too, and Trio must not take it over (the
supervisor uses no Trio signal receiver). The host's SIGINT handler stays the host's:
should Trio install its own KeyboardInterrupt delivery (it does when it finds Python's
default handler, e.g. under a bare ``loop.run_until_complete``), the host's handler is
put back at once; Ctrl-C then raises ``KeyboardInterrupt`` wherever the thread is, as
it does in any asyncio program without ``asyncio.run``.

Limits
------
- One guest per thread, so one supervisor per event loop: a second
  :func:`open_supervisor` while one runs raises ``RuntimeError``. Put every connection
  in one supervisor (its config, or ``add_connection``). Sequential use is fine.
- Call the handle from the loop's thread only (it raises ``RuntimeError`` otherwise).
- ``sup.rest(name)`` of the Trio API has no asyncio twin: its client is a Trio object.
- Each step of ``messages``/``batches`` is one round trip into the guest. While the
  guest is idle (a quiet feed), that round trip wakes Trio's I/O thread, which posts the
  tick back: two thread wake-ups per step, where native Trio has none. Under load the
  guest's ticks follow each other without the thread and batches grow, so the cost
  fades; BENCHMARKS.md (``bench/aio_path.py``) has the figures.
"""

from supervisor.aio._handle import AioSupervisor as AioSupervisor
from supervisor.aio._handle import open_supervisor as open_supervisor
from supervisor.aio._streams import AioBatchStream as AioBatchStream
from supervisor.aio._streams import AioMessageStream as AioMessageStream

__all__ = ["AioBatchStream", "AioMessageStream", "AioSupervisor", "open_supervisor"]
