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
a quiet exit). Trio is told that the host uses ``signal.set_wakeup_fd``
(``host_uses_signal_set_wakeup_fd=True``: asyncio's loops do, uvloop's too), and the
host's SIGINT handler stays the host's: should Trio install its own KeyboardInterrupt
delivery (it does when it finds Python's default handler, e.g. under a bare
``loop.run_until_complete``), the host's handler is put back at once.

Limits
------
- One guest per thread, so one supervisor per event loop: a second
  :func:`open_supervisor` while one runs raises ``RuntimeError``. Put every connection
  in one supervisor (its config, or ``add_connection``). Sequential use is fine.
- Call the handle from the loop's thread only (it raises ``RuntimeError`` otherwise).
- ``sup.rest(name)`` of the Trio API has no asyncio twin: its client is a Trio object.
- Each step of ``messages``/``batches`` that finds no batch queued costs a round trip
  through Trio's wake-up socket; see BENCHMARKS.md (``bench/aio_path.py``) for the cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Generic, NamedTuple, TypeVar, TypeVarTuple, final

import outcome
import trio

from actors import MergedReceiver
from actors.books import BookView
from actors.exchanges import Batch, Message
from actors.net import Connector
from actors.registry import Stats
from supervisor import api
from supervisor.config import Config
from supervisor.tree import Supervisor

__all__ = ["AioBatchStream", "AioMessageStream", "AioSupervisor", "open_supervisor"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: What the second open_supervisor in one loop is told.
_ONE_GUEST: Final = (
    "a Trio run is already active in this thread (a supervisor.aio.open_supervisor still "
    "running in this event loop?): only one Trio guest run fits in one thread; use one "
    "supervisor with more connections (list them all in its config, or add them with "
    "sup.add_connection)"
)


class _Options(NamedTuple):
    """The keyword arguments of :func:`supervisor.open_supervisor`, passed through."""

    connector: Connector | None
    rng: random.Random | None
    environ: Mapping[str, str] | None
    wall_clock: Callable[[], float]


@final
class _Call(Generic[T]):
    """One call across the bridge: its Trio cancel scope and, once ended, its outcome.

    The scope is made only when the call needs a Trio task (a call answered at once by
    ``nowait`` needs none; a scope costs about as much as the rest of the round trip).
    """

    __slots__ = ("result", "scope", "waiter", "what")

    def __init__(self, what: str, waiter: asyncio.Future[None]) -> None:
        self.what = what
        self.waiter = waiter
        self.scope: trio.CancelScope | None = None
        self.result: outcome.Outcome[T] | None = None

    def resolve(self, result: outcome.Outcome[T]) -> None:
        """Record the outcome and wake the asyncio side (called on the loop's thread)."""
        if self.result is None:
            self.result = result
            if not self.waiter.done():
                self.waiter.set_result(None)


@final
class _Guest:
    """The Trio guest run of one :func:`open_supervisor`, and the bridge into it."""

    def __init__(self, config: Config, options: _Options) -> None:
        self._config = config
        self._options = options
        self._loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[Supervisor] = self._loop.create_future()
        self._finished: asyncio.Future[outcome.Outcome[None]] = self._loop.create_future()
        #: The asyncio task that entered the ``async with``; cancelled if the supervisor
        #: ends the run by itself.
        self._host: asyncio.Task[object] | None = asyncio.current_task()
        self._body = trio.CancelScope()
        self._calls: trio.Nursery | None = None
        self._pending: set[_Call[Any]] = set()
        self._leaving = False
        #: Whether the body was cancelled because the run ended on its own.
        self.cancelled_body = False
        #: The supervisor's final snapshot, once it stopped.
        self.final_stats: Stats | None = None

    # -- host side ------------------------------------------------------------------

    def start(self) -> None:
        """Start the guest run (its first ticks run synchronously, no user code)."""
        if trio.lowlevel.in_trio_run():
            raise RuntimeError(_ONE_GUEST)
        sigint = signal.getsignal(signal.SIGINT)
        trio.lowlevel.start_guest_run(
            self._main,
            run_sync_soon_threadsafe=self._loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=self._loop.call_soon,
            done_callback=self._done,
            host_uses_signal_set_wakeup_fd=True,
        )
        # Trio installs its own KeyboardInterrupt delivery when it finds Python's default
        # SIGINT handler; Ctrl-C belongs to the host here (asyncio.run cancels the main
        # task), so the host's handler is put back.
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is not sigint
        ):
            signal.signal(signal.SIGINT, sigint)
        self._token = trio.lowlevel.current_trio_token()

    async def ready(self) -> Supervisor:
        """Wait until the supervisor runs; raise what ended the run if it never did."""
        try:
            return await asyncio.shield(self._ready)
        except asyncio.CancelledError:
            await self.leave()
            raise

    async def leave(self) -> outcome.Outcome[None]:
        """Leave the guest's body and wait for the end of the run; return its outcome.

        Cancellation: the run is always awaited to its end; a cancellation meanwhile is
        re-raised once it ended.
        """
        if not self._leaving:
            self._leaving = True
            if not self._finished.done():
                self._soon(self._body.cancel, "the asyncio body exited")
        cancelled = False
        while not self._finished.done():
            try:
                await asyncio.shield(self._finished)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        return self._finished.result()

    async def call(
        self,
        what: str,
        fn: Callable[[*Ts], Awaitable[T]],
        *args: *Ts,
        nowait: Callable[[], T] | None = None,
        orphan: Callable[[T], None] | None = None,
    ) -> T:
        """Await ``fn(*args)`` run as a Trio task in the guest; return or raise its outcome.

        Args:
            what: the call as the user wrote it, for error messages (``"sup.stats()"``).
            fn: the Trio async function.
            args: its positional arguments.
            nowait: tried first, synchronously inside the guest; raising
                ``trio.WouldBlock`` falls back to ``fn``.
            orphan: receives a value that arrived although the caller was cancelled.

        Raises:
            RuntimeError: called from another thread or loop; the guest is not running;
                the guest stopped while the call ran (``what`` is named).
            Exception: whatever ``fn`` raised, the same object.

        Cancellation: cancels the Trio call and waits for it to end before the
        ``CancelledError`` propagates.
        """
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError(
                f"{what} was called from another event loop; call the supervisor from "
                "the loop (and thread) that opened it"
            )
        call: _Call[T] = _Call(what, self._loop.create_future())
        try:
            self._token.run_sync_soon(self._spawn, call, fn, args, nowait)
        except trio.RunFinishedError:
            raise RuntimeError(f"cannot call {what}: the supervisor is not running") from None
        self._pending.add(call)
        try:
            try:
                await call.waiter
            except asyncio.CancelledError:
                if call.result is None:
                    self._soon(self._cancel, call)
                    await self._settle(call)
                if orphan is not None and isinstance(call.result, outcome.Value):
                    orphan(call.result.value)
                raise
        finally:
            self._pending.discard(call)
        assert call.result is not None
        return call.result.unwrap()

    async def _settle(self, call: _Call[T]) -> None:
        """Wait, through further cancellations, until the Trio side ended ``call``."""
        while call.result is None:
            call.waiter = self._loop.create_future()
            try:
                await call.waiter
            except asyncio.CancelledError:
                continue

    def _soon(self, fn: Callable[[T], object], arg: T) -> None:
        # Already over: the done callback resolved everything.
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn, arg)

    # -- guest side (Trio) ----------------------------------------------------------

    async def _main(self) -> None:
        async with trio.open_nursery() as calls:
            self._calls = calls
            try:
                # Captured, so that the supervisor's own error leaves this nursery
                # unwrapped (not inside an exception group) and reaches the host as is.
                result = await outcome.acapture(self._supervise)
            finally:
                self._calls = None
                calls.cancel_scope.cancel(reason="the supervisor stopped")
        result.unwrap()

    async def _supervise(self) -> None:
        o = self._options
        sup: Supervisor | None = None
        try:
            async with api.open_supervisor(
                self._config,
                connector=o.connector,
                rng=o.rng,
                environ=o.environ,
                wall_clock=o.wall_clock,
            ) as sup:
                if not self._ready.done():
                    self._ready.set_result(sup)
                with self._body:
                    await trio.sleep_forever()
        finally:
            if sup is not None and sup.finished.is_set():
                # Kept for stats() after the run (as the Trio API answers it).
                with trio.CancelScope(shield=True):
                    self.final_stats = await sup.stats()

    def _spawn(
        self,
        call: _Call[T],
        fn: Callable[[*Ts], Awaitable[T]],
        args: tuple[*Ts],
        nowait: Callable[[], T] | None,
    ) -> None:
        # Runs inside the guest (Trio's entry queue), in order with the cancel requests.
        if self._calls is None:
            call.resolve(outcome.Error(self._stopped(call)))
            return
        if nowait is not None:
            try:
                result: outcome.Outcome[T] = outcome.Value(nowait())
            except trio.WouldBlock:
                pass
            except Exception as exc:
                result = outcome.Error(exc)
                call.resolve(result)
                return
            else:
                call.resolve(result)
                return
        call.scope = trio.CancelScope()
        self._calls.start_soon(self._run, call, call.scope, fn, args, name=call.what)

    def _cancel(self, call: _Call[T]) -> None:
        # Runs inside the guest after the call's _spawn (Trio's entry queue is FIFO).
        if call.scope is not None:
            call.scope.cancel(reason=f"{call.what} was cancelled in asyncio")

    async def _run(
        self,
        call: _Call[T],
        scope: trio.CancelScope,
        fn: Callable[[*Ts], Awaitable[T]],
        args: tuple[*Ts],
    ) -> None:
        try:
            with scope:
                try:
                    value = await fn(*args)
                except trio.Cancelled:
                    raise
                except Exception as exc:
                    call.resolve(outcome.Error(exc))
                else:
                    call.resolve(outcome.Value(value))
        finally:
            # Cancelled by the asyncio caller (it ignores this) or by the shutdown.
            call.resolve(outcome.Error(self._stopped(call)))

    def _stopped(self, call: _Call[T]) -> RuntimeError:
        return RuntimeError(f"{call.what} did not complete: the supervisor stopped")

    def _done(self, result: outcome.Outcome[None]) -> None:
        # Called by Trio on the loop's thread once the run is over.
        for call in list(self._pending):
            call.resolve(outcome.Error(self._stopped(call)))
        started = self._ready.done()
        if not started:
            if isinstance(result, outcome.Error):
                self._ready.set_exception(result.error)
            else:
                self._ready.set_exception(RuntimeError("the supervisor ended before it started"))
            self._ready.exception()  # retrieved here if nobody awaits it
        self._finished.set_result(result)
        host = self._host
        if started and not self._leaving and host is not None and not host.done():
            # The supervisor ended the run by itself (escalation, giving up): cancel the
            # body, as the Trio API does; __aexit__ raises the reason.
            self.cancelled_body = True
            host.cancel(msg="the supervisor stopped")


def _receive_nowait(receiver: MergedReceiver) -> Batch | None:
    try:
        return receiver.receive_nowait()
    except (trio.EndOfChannel, trio.ClosedResourceError):
        return None


async def _receive(receiver: trio.abc.ReceiveChannel[Batch]) -> Batch | None:
    try:
        return await receiver.receive()
    except (trio.EndOfChannel, trio.ClosedResourceError):
        return None


@final
class AioBatchStream:
    """``async for batch in sup.batches()``: one :class:`~actors.exchanges.Batch` per step.

    Each step takes the next batch from the supervisor's queues (see the module's
    "Backpressure"); iteration ends when the supervisor has stopped and everything
    queued was taken. Created by :meth:`AioSupervisor.batches` only.
    """

    def __init__(self, guest: _Guest, receiver: trio.abc.ReceiveChannel[Batch]) -> None:
        self._guest = guest
        self._receiver = receiver
        # A queued batch is taken synchronously inside the guest, without a Trio task.
        self._nowait: Callable[[], Batch | None] | None = (
            functools.partial(_receive_nowait, receiver)
            if isinstance(receiver, MergedReceiver)
            else None
        )
        self._kept: Batch | None = None
        self._ended = False

    def __aiter__(self) -> AioBatchStream:
        return self

    async def __anext__(self) -> Batch:
        """The next batch; ``StopAsyncIteration`` once the supervisor stopped.

        Raises:
            RuntimeError: the supervisor's run ended before the stream did.

        Cancellation: atomic; a batch taken after the cancellation is kept for the next
        call.
        """
        if self._kept is not None:
            batch, self._kept = self._kept, None
            return batch
        if self._ended:
            raise StopAsyncIteration
        receiver = self._receiver
        got = await self._guest.call(
            "sup.batches()",
            _receive,
            receiver,
            nowait=None if self._nowait is None else self._nowait,
            orphan=self._keep,
        )
        if got is None:
            self._ended = True
            raise StopAsyncIteration
        return got

    def _keep(self, batch: Batch | None) -> None:
        if batch is None:
            self._ended = True
        else:
            self._kept = batch


@final
class AioMessageStream:
    """``async for msg in sup.messages()``: the messages of each batch, one by one.

    Created by :meth:`AioSupervisor.messages` only.
    """

    def __init__(self, batches: AioBatchStream) -> None:
        self._batches = batches
        self._pending: Batch = ()
        self._next = 0

    def __aiter__(self) -> AioMessageStream:
        return self

    async def __anext__(self) -> Message:
        """The next message; ``StopAsyncIteration`` once the supervisor stopped.

        Raises:
            RuntimeError: the supervisor's run ended before the stream did.

        Cancellation: atomic; nothing is consumed by a cancelled call.
        """
        if self._next < len(self._pending):
            message = self._pending[self._next]
            self._next += 1
            return message
        batch = await self._batches.__anext__()
        self._pending, self._next = batch, 1
        return batch[0]


@final
class AioSupervisor:
    """The running supervisor, seen from asyncio; get one from :func:`open_supervisor`.

    Mirrors :class:`~supervisor.tree.Supervisor`: every ``async`` method runs the Trio
    method of the same name in the guest and raises what it raises (same types).
    """

    def __init__(self, guest: _Guest, sup: Supervisor) -> None:
        self._guest = guest
        self._sup = sup
        self._batches = AioBatchStream(guest, sup.batches())
        self._messages = AioMessageStream(self._batches)

    @property
    def config(self) -> Config:
        """The configuration this supervisor runs."""
        return self._sup.config

    def messages(self) -> AioMessageStream:
        """Every delivered message, in arrival order (the Trio side's objects).

        Iteration ends when the supervisor stops. Every call returns the same iterator,
        so leaving one ``async for`` early and starting another loses nothing.
        """
        return self._messages

    def batches(self) -> AioBatchStream:
        """The stream of batches (all messages of one read of one connection's socket).

        Iteration ends when the supervisor stops. Every call returns the same iterator.
        """
        return self._batches

    async def stats(self) -> Stats:
        """A snapshot of every connection's state and counters.

        Once the supervisor has stopped, its final snapshot, also after the ``async
        with`` (the same object every time).

        Cancellation: atomic.
        """
        final = self._guest.final_stats
        if final is not None:
            return final
        return await self._guest.call("sup.stats()", self._sup.stats)

    def book(self, connection: str, symbol: str) -> BookView:
        """The local book of ``symbol`` on ``connection``, as a live read-only view.

        A plain call: the view is read on the loop's thread, between the guest's steps,
        and answers for the moment each of its methods is called (see
        :meth:`supervisor.tree.Supervisor.book`).

        Raises:
            ValueError: no connection is called ``connection``, or it keeps no book for
                ``symbol``.
        """
        return self._sup.book(connection, symbol)

    async def subscribe(
        self,
        connection: str,
        *,
        channels: Sequence[str] = (),
        symbols: Sequence[str] = (),
        topics: Sequence[str] = (),
    ) -> None:
        """Subscribe more on a running connection; returns when the exchange confirmed it.

        See :meth:`supervisor.tree.Supervisor.subscribe`: the change holds for every
        later session; callers own timeouts (``async with asyncio.timeout(10):``).

        Raises:
            ValueError: no connection is called ``connection``, or nothing was named.
            TypeError: a list was given as one string (``symbols="BTC-USDT"``).
            ConfigError: the connection would not be valid with the change; nothing
                changed.
            SubscriptionRefused: the exchange refused topics, each with its code and
                message.
            RuntimeError: the supervisor or the connection is not running.

        Cancellation: the change is made in the guest before its first checkpoint;
        cancelling stops the wait only (the Trio call is cancelled and awaited).
        """
        call = functools.partial(
            self._sup.subscribe, connection, channels=channels, symbols=symbols, topics=topics
        )
        await self._guest.call(f"sup.subscribe({connection!r})", call)

    async def unsubscribe(
        self,
        connection: str,
        *,
        channels: Sequence[str] = (),
        symbols: Sequence[str] = (),
        topics: Sequence[str] = (),
    ) -> None:
        """Stop subscriptions on a running connection (see
        :meth:`supervisor.tree.Supervisor.unsubscribe`).

        Raises:
            ValueError, TypeError, ConfigError, RuntimeError: as :meth:`subscribe`.

        Cancellation: the change is made in the guest before its first checkpoint.
        """
        call = functools.partial(
            self._sup.unsubscribe, connection, channels=channels, symbols=symbols, topics=topics
        )
        await self._guest.call(f"sup.unsubscribe({connection!r})", call)

    async def add_connection(self, name: str, table: Mapping[str, Any]) -> None:
        """Start one more connection; returns once it is live (see
        :meth:`supervisor.tree.Supervisor.add_connection`).

        Args:
            name: the new connection's name.
            table: its keys, as its ``[connections.NAME]`` table in the file would hold
                them (checked the same way, under the file's ``[defaults]``).

        Raises:
            ConfigError: the table is not a valid connection, or the name is taken
                (``problems`` lists every problem); nothing was started.
            TypeError: ``table`` is not a mapping.
            RuntimeError: the supervisor is not running.

        Cancellation: the connection is started in the guest before its first
        checkpoint; a cancelled call stops waiting for it to be live, and it keeps
        running.
        """
        await self._guest.call(
            f"sup.add_connection({name!r})", self._sup.add_connection, name, table
        )

    async def remove_connection(self, name: str) -> None:
        """Stop one connection cleanly and forget it; returns once its socket is closed
        (see :meth:`supervisor.tree.Supervisor.remove_connection`).

        Raises:
            ValueError: no connection is called ``name``.
            RuntimeError: the supervisor is not running.

        Cancellation: the removal completes in the guest (shielded there, bounded by
        ``shutdown_timeout``); a cancelled caller waits for it before the cancellation
        propagates.
        """
        await self._guest.call(
            f"sup.remove_connection({name!r})", self._sup.remove_connection, name
        )

    async def restart(self, name: str) -> None:
        """Restart one connection now (see :meth:`supervisor.tree.Supervisor.restart`).

        Raises:
            ValueError: no connection is called ``name``.
            RuntimeError: the supervisor is stopping or stopped.

        Cancellation: atomic; the restart is scheduled before the first checkpoint.
        """
        await self._guest.call(f"sup.restart({name!r})", self._sup.restart, name)

    async def stop(self) -> None:
        """Stop every connection cleanly and end the message stream. Idempotent.

        Cancellation: the stop finishes in the guest even if the caller is cancelled,
        bounded by ``shutdown_timeout``; the caller waits for it.
        """
        await self._guest.call("sup.stop()", self._sup.stop)


@final
class _FrontDoor:
    """The async context manager :func:`open_supervisor` returns."""

    def __init__(self, config: Config, options: _Options) -> None:
        self._config = config
        self._options = options
        self._guest: _Guest | None = None

    async def __aenter__(self) -> AioSupervisor:
        if self._guest is not None:
            raise RuntimeError("this open_supervisor(...) was already entered; call it again")
        guest = self._guest = _Guest(self._config, self._options)
        guest.start()
        return AioSupervisor(guest, await guest.ready())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        guest = self._guest
        assert guest is not None
        result = await guest.leave()
        if guest.cancelled_body:
            host = asyncio.current_task()
            others = host.uncancel() if host is not None else 0
            if others == 0 and (isinstance(exc, asyncio.CancelledError) or exc is None):
                # The run ended on its own and cancelled the body: raise why it ended.
                result.unwrap()
                return True
        if exc is None:
            result.unwrap()
        return False


def open_supervisor(
    config: Config,
    *,
    connector: Connector | None = None,
    rng: random.Random | None = None,
    environ: Mapping[str, str] | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> contextlib.AbstractAsyncContextManager[AioSupervisor]:
    """Run a supervision tree for ``config`` in the running asyncio loop, for the body.

    ``async with open_supervisor(config) as sup:`` runs :func:`supervisor.open_supervisor`
    as a Trio guest of the loop (see the module docstring); the arguments are the same.

    Args:
        config: from :func:`~supervisor.config.load_config` (or ``loads_config``,
            ``config_from_dict``).
        connector: opens the stream under each WebSocket (a Trio connector).
        rng: randomness for backoff jitter.
        environ: where environment proxies are read from; default ``os.environ``.
        wall_clock: Unix time, read around each server-time call.

    Returns:
        An async context manager yielding the running :class:`AioSupervisor`.

    Raises:
        RuntimeError: (on entry) another Trio run is active in this thread, such as a
            supervisor still open in this loop: use one supervisor with more
            connections; or no asyncio loop is running.
        ConfigError: an environment proxy variable holds an invalid URL.
        RestartLimitExceeded: restart intensity was exceeded; every connection was
            closed cleanly first and the body was cancelled.
        GaveUp: connections were not live for their ``give_up_after``; every connection
            was closed cleanly first and the body was cancelled.

    Cancellation: on exit, whether normal, by exception or by cancellation, every
    connection is closed cleanly within ``shutdown_timeout`` and the Trio run has ended
    before the ``async with`` is left.
    """
    return _FrontDoor(config, _Options(connector, rng, environ, wall_clock))
