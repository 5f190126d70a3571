"""The asyncio handle (:class:`AioSupervisor`) and :func:`open_supervisor`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, final

from actors.books import BookView
from actors.net import Connector
from actors.registry import Stats
from supervisor.aio._bridge import Guest, Options
from supervisor.aio._streams import AioBatchStream, AioMessageStream
from supervisor.config import Config
from supervisor.tree import Supervisor

__all__ = ["AioSupervisor", "open_supervisor"]


@final
class AioSupervisor:
    """The running supervisor, seen from asyncio; get one from :func:`open_supervisor`.

    Mirrors :class:`~supervisor.tree.Supervisor`: every ``async`` method runs the Trio
    method of the same name in the guest and raises what it raises (same types).
    """

    def __init__(self, guest: Guest, sup: Supervisor) -> None:
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

    def __init__(self, config: Config, options: Options) -> None:
        self._config = config
        self._options = options
        self._guest: Guest | None = None

    async def __aenter__(self) -> AioSupervisor:
        if self._guest is not None:
            raise RuntimeError("this open_supervisor(...) was already entered; call it again")
        guest = self._guest = Guest(self._config, self._options)
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
    return _FrontDoor(config, Options(connector, rng, environ, wall_clock))
