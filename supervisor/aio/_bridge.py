"""The bridge: one Trio guest run in the asyncio loop's thread, and calls into it.

See :mod:`supervisor.aio` ("The guest run", "The bridge", "Lifetime", "Ctrl-C").
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Generic, NamedTuple, TypeVar, TypeVarTuple, final

import outcome
import trio

from actors.net import Connector
from actors.registry import Stats
from supervisor import api
from supervisor.config import Config
from supervisor.tree import Supervisor

__all__ = ["Guest", "Options"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: What the second open_supervisor in one loop is told.
_ONE_GUEST: Final = (
    "a Trio run is already active in this thread (a supervisor.aio.open_supervisor still "
    "running in this event loop?): only one Trio guest run fits in one thread; use one "
    "supervisor with more connections (list them all in its config, or add them with "
    "sup.add_connection)"
)


class Options(NamedTuple):
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
class Guest:
    """The Trio guest run of one :func:`open_supervisor`, and the bridge into it."""

    def __init__(self, config: Config, options: Options) -> None:
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
