"""The Supervisor: one nursery, one ConnectionActor per connection, OTP-style restarts.

Theory of operation. Each configured connection is a *child*: an actor that lives as
long as the supervisor, plus a restart type, a backoff and its place in file order. A
child runs as a series of *incarnations*; each incarnation is a task in the supervisor's
nursery with its own cancel scope that waits for the previous incarnation to finish,
sleeps the backoff delay, then runs one session (``actor.run_session()``). When it ends it sends
an exit record to the control loop, which alone decides what happens next:

- the restart type says whether to restart at all (permanent: always; transient: only
  after a failure; temporary: never);
- failures are of two kinds (ARCHITECTURE.md, "Two kinds of failure"). The network's
  (every error a ``TransportError``: connect, handshake, close codes, stale feeds,
  announced disconnects) are expected: never counted, waited out with the backoff
  however long they last. Anything else is a crash in our own code: it is recorded in
  the intensity window, and crossing ``max_restarts`` within ``within`` seconds
  escalates: every child is stopped cleanly and ``RestartLimitExceeded`` leaves
  ``open_supervisor``;
- failures shaped like a wrong configuration (HTTP 4xx other than 408/418/429 at the
  upgrade, a certificate that fails verification) are expected too, but after
  ``CONFIG_FAILURES`` in a row the connection shows as ``failed`` (one error line in the
  log) and is retried at the backoff cap, in case the operator fixes the route;
- ``give_up_after`` (optional, per connection): a connection not live for that long
  (since its last live session ended, or since it was started if it never was) stops
  for good, shown as ``failed`` with one error line. The deadline is checked only while
  the connection is not live: when an attempt ends (an attempt in progress, its wait for
  a connect permit included, is never cut short; connect_timeout and stale_after bound
  it) and when a backoff wait would pass it
  (the wait then ends at the deadline, so the give-up time is exact). If that leaves no
  permanent connection running (or none at all, when none is permanent), every child is
  stopped cleanly and ``GaveUp`` leaves ``open_supervisor``;
- the backoff resets if the session stayed live for ``reset_after``; the next delay is
  drawn;
- the strategy picks the group that restarts together (one_for_one: the child;
  one_for_all: everyone; rest_for_one: the child and those declared after it). Siblings
  in the group are cancelled (their sockets closed cleanly) and respawned after the
  same delay.

Exits caused by the supervisor itself (a group restart, ``restart()``, shutdown) are
recognised by their cancelled scope and ignored. When every child has stopped for good,
the supervisor shuts down and the message stream ends.

Logging: each end of a session is one line, written here with what happens next
("session ended: WHY (REASON); reconnecting in D s (attempt N)"), unless the actor's
:class:`~actors.logs.FailureLog` counts it into a summary ("failed N times in T s:
REASON"); the actor logs the matching "live" line. See :mod:`actors.logs` for the list
of events that produce a line.

Delivery: each child's actor writes batches into its own bounded ConsumerQueue (overflow
policy applied there); the consumer reads them all through one
:class:`~actors.consumer_queue.MergedReceiver`, in the order they were queued, with no
task in between: a batch stays in its connection's queue, under its bounds, until the
consumer takes it, and the stream ends once the supervisor has stopped and the consumer
has taken what was still queued.
"""

from __future__ import annotations

import logging
import math
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Final, NamedTuple

import msgspec
import outcome
import trio

from actors import (
    ConfigError,
    ConnectError,
    ConnectionActor,
    ConnectionLost,
    FeedStale,
    GaveUp,
    HandshakeRejected,
    MergedReceiver,
    ProxyError,
    ProxyRejected,
    RestartLimitExceeded,
    ServerClosing,
    SubscriptionRefused,
    SupervisorError,
    TransportError,
)
from actors.books import BookKeeper, BookStats, BookView
from actors.exchanges import ADAPTERS, Batch, Pacer, Subscribe, Unsubscribe
from actors.logs import log_fields
from actors.net import Connector, TcpTlsConnector, redact_url
from actors.net.rest import RestClient, RestClients
from actors.registry import (
    ConnectionState,
    Disconnected,
    Registered,
    RegistryActor,
    RegistryClient,
    RegistryEvent,
    Restarting,
    StateChanged,
    Stats,
    Unregistered,
)
from supervisor._stream import MessageStream
from supervisor.config import Config, ConnectionConfig
from supervisor.config.load import connection_config
from supervisor.policy import Backoff, RestartIntensity, RestartType, Strategy
from supervisor.shards import base_name, place, shard_name
from supervisor.wiring import build_actors, resolve_routes, rest_clients

__all__ = ["Supervisor"]

logger = logging.getLogger("marketprism.supervisor")

#: Events queued toward the registry before senders wait; the registry only updates
#: counters, so it keeps up easily.
_REGISTRY_QUEUE: Final = 1024
#: Extra seconds, beyond ``shutdown_timeout``, before a stop gives up waiting.
_STOP_GRACE: Final = 1.0


def _book_stats(
    books: BookKeeper, wall_clock: Callable[[], float]
) -> Callable[[], dict[str, BookStats]]:
    """What the registry reads for ``books`` in each snapshot."""
    return lambda: books.stats(wall_clock())


class _Child:
    """Per-child supervision state; touched only by the supervisor's tasks."""

    __slots__ = (
        "actor",
        "announced",
        "backoff",
        "config",
        "config_failures",
        "done",
        "gave_up",
        "last_error",
        "not_live_since",
        "removed",
        "rest",
        "route",
        "scope",
        "stopped",
    )

    def __init__(
        self,
        config: ConnectionConfig,
        actor: ConnectionActor,
        backoff: Backoff,
        *,
        rest: RestClient | None,
        route: tuple[tuple[str, ...], str],
    ) -> None:
        self.config = config
        self.actor = actor
        self.backoff = backoff
        #: The connection's REST client (shared with its adapter), or None.
        self.rest = rest
        #: (masked proxy hops, why that route), for stats.
        self.route = route
        #: Taken out by remove_connection(): its exits are not acted on.
        self.removed = False
        self.scope: trio.CancelScope | None = None
        self.done = trio.Event()
        self.done.set()
        self.stopped = False
        #: Announced disconnects in a row whose sessions were short-lived.
        self.announced = 0
        #: Configuration-shaped failures in a row.
        self.config_failures = 0
        #: Why the last session ended (describe_error), for the give-up message.
        self.last_error = ""
        #: trio time the last live session ended, or the child was (re)started if no
        #: session has been live since: the start of the give_up_after clock.
        self.not_live_since = 0.0
        #: Why it gave up (it then stays stopped), or None.
        self.gave_up: str | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def give_up_at(self) -> float | None:
        """The trio time at which it gives up if not live by then; None: never."""
        after = self.config.give_up_after
        return None if after is None else self.not_live_since + after


def _lists(**lists: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The lists of a run-time change as tuples, refusing a bare string."""
    for key, value in lists.items():
        if isinstance(value, str):
            name = "topics" if key == "raw" else key
            raise TypeError(f"{name} must be a list of strings: {name}=[{value!r}]")
    if not any(lists.values()):
        raise ValueError("name at least one of channels, symbols or topics")
    return {key: tuple(value) for key, value in lists.items()}


class _Exit(NamedTuple):
    child: _Child
    scope: trio.CancelScope
    error: BaseException | None
    cancelled: bool
    live_for: float | None
    #: The backoff wait reached the give_up_after deadline; no session was run.
    gave_up: bool


class _SessionEnd(NamedTuple):
    """How a session of ``child`` ended, for its one log line."""

    child: _Child
    at: float
    #: describe_error of the error (or of the normal close).
    why: str
    #: disconnect_reason of the error: the class repeated failures are counted under.
    reason: str
    #: The error when it is a crash (a bug in our code: logged with its traceback).
    crash: BaseException | None


def _fields(child: _Child, **fields: object) -> dict[str, object]:
    """The ``extra=`` of a log record about ``child``."""
    return log_fields(child.name, child.config.exchange, **fields)


def _seconds(value: float) -> str:
    """Seconds for a log line: to a tenth, without a trailing ``.0``."""
    return f"{round(value, 1):g}"


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _expected(error: BaseException) -> bool:
    """Is this the network's failure (waited out), rather than a crash in our code?"""
    return all(isinstance(leaf, TransportError) for leaf in _leaves(error))


#: HTTP statuses at the upgrade that say "come back later", not "you are wrong here".
_TRANSIENT_STATUSES: Final = frozenset({408, 418, 429})
#: Configuration-shaped failures in a row before a connection is shown as failed.
CONFIG_FAILURES: Final = 3


def _config_shaped(error: BaseException) -> bool:
    """A failure a wrong URL, route or certificate would cause (4xx, TLS verification, a
    proxy rejecting the credentials or forbidding the destination).

    A proxy that refuses connections, times out or cannot reach the next hop is not
    configuration-shaped: proxies and their upstreams go down like any network. One that
    answers "wrong credentials" or "forbidden" will say so until someone changes the
    configuration, exactly like an HTTP 401/403 at the upgrade.
    """
    for leaf in _leaves(error):
        if isinstance(leaf, ProxyRejected):
            continue
        if isinstance(leaf, HandshakeRejected):
            status = leaf.status
            if not (400 <= status < 500) or status in _TRANSIENT_STATUSES:
                return False
        elif not _verification_failed(leaf):
            return False
    return True


def _verification_failed(error: BaseException) -> bool:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


#: Close codes that mean the TCP connection broke rather than closed (RFC 6455 7.4.1:
#: 1006 is reserved for "closed abnormally, without a close frame"); ``None``: no close
#: frame at all.
_RESET_CODES: Final = frozenset({None, 1006})


def disconnect_reason(exc: BaseException | None) -> str:
    """Why a session ended, as one of a small fixed set of labels (for
    ``disconnects_by_reason`` in stats and the ``reason`` label of metrics).

    The first leaf of a group decides (as in :func:`describe_error`):

    - ``None`` (the exchange closed with 1000): ``close 1000``;
    - :class:`ServerClosing` (an announced disconnect): ``server notice``;
    - :class:`FeedStale`: ``heartbeat missed`` when a protocol heartbeat went
      unanswered, else ``stale``;
    - :class:`ConnectionLost`: ``reset`` when the socket broke without a close frame
      (code ``None`` or 1006), else ``close CODE``;
    - :class:`HandshakeRejected`: ``handshake STATUS``;
    - :class:`ProxyError`: ``proxy``;
    - :class:`ConnectError` caused by a TLS error: ``tls``; any other: ``connect``
      (refused, DNS, timed out);
    - anything else (a bug, not the network): ``crash``.
    """
    if exc is None:
        return "close 1000"
    leaf = next(_leaves(exc), exc)
    if isinstance(leaf, ServerClosing):
        return "server notice"
    if isinstance(leaf, FeedStale):
        return "heartbeat missed" if leaf.heartbeat else "stale"
    if isinstance(leaf, ConnectionLost):
        return "reset" if leaf.code in _RESET_CODES else f"close {leaf.code}"
    if isinstance(leaf, HandshakeRejected):
        return f"handshake {leaf.status}"
    if isinstance(leaf, ProxyError):
        return "proxy"
    if isinstance(leaf, ConnectError):
        return "tls" if _tls_failed(leaf) else "connect"
    return "crash"


def _tls_failed(error: BaseException) -> bool:
    cause: BaseException | None = error.__cause__ or error.__context__
    while cause is not None:
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def describe_error(exc: BaseException | None) -> str:
    """One line naming an error's type and message (the first leaf of a group)."""
    if exc is None:
        return ""
    leaf = next(_leaves(exc), exc)
    text = str(leaf)
    return f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__


class Supervisor:
    """Runs the supervision tree for one :class:`~supervisor.config.Config`.

    Users get one from :func:`supervisor.open_supervisor`; they call :meth:`messages`
    (or :meth:`batches`), :meth:`stats`, :meth:`rest`, :meth:`book`, :meth:`restart` and
    :meth:`stop`, and change what runs with :meth:`subscribe`, :meth:`unsubscribe`,
    :meth:`add_connection` and :meth:`remove_connection`.

    Args:
        config: what to run.
        connector: opens streams under every connection's WebSocket; default one
            :class:`~actors.net.TcpTlsConnector` per connection, through the
            connection's route with its TLS settings.
        rng: the randomness for backoff jitter; default a fresh ``random.Random()``.
        environ: where environment proxies (``HTTPS_PROXY``, ``NO_PROXY``, ...) are
            read from; default ``os.environ``. WebSocket routes use it only when
            ``connector`` is not given; REST routes always do.
        wall_clock: Unix time for the clock offsets; default ``time.time``.

    Raises:
        ConfigError: an environment proxy variable holds an invalid URL.
    """

    def __init__(
        self,
        config: Config,
        *,
        connector: Connector | None = None,
        rng: random.Random | None = None,
        environ: Mapping[str, str] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        settings = config.supervisor
        self._config = config
        self._rng = rng if rng is not None else random.Random()
        self._intensity = RestartIntensity(settings.max_restarts, settings.within)
        registry_send, self._registry_receive = trio.open_memory_channel[RegistryEvent](
            _REGISTRY_QUEUE
        )
        self._registry = RegistryClient(registry_send)
        self._registry_actor = RegistryActor(
            connect_attempts=settings.connect_attempts,
            connect_interval=settings.connect_interval,
        )
        self._merged = MergedReceiver()
        # One iterator for the supervisor, so a batch half-consumed by one `async for`
        # is continued by the next instead of being lost.
        self._stream = MessageStream(self._merged)
        # One holder for every REST client: the adapters' calls and sup.rest(name) share
        # one client and one budget per (venue, host, route). Closed last, in run().
        self._rest_holder = RestClients()
        self._connector = connector
        self._environ = os.environ if environ is None else environ
        self._wall_clock = wall_clock
        # One request pacer per (exchange, host) for exchanges whose limits are per IP,
        # shared with connections added at run time.
        self._pacers: dict[tuple[str, str], Pacer] = {}
        self._children = self._build_children(config)
        # Each incarnation sends exactly one tiny exit record and never waits to do so;
        # the control loop drains them. Unbounded is safe: incarnations are only created
        # by the control loop and restart(), and each ends before sending.
        self._exits_send, self._exits_receive = trio.open_memory_channel[_Exit](math.inf)
        self._nursery: trio.Nursery | None = None
        self._registry_scope = trio.CancelScope(shield=True)
        self._stopping = False
        self._finished = trio.Event()
        self._final_stats: Stats | None = None
        #: Set when restart intensity was exceeded, or when connections gave up and none
        #: that must run is left; open_supervisor raises it.
        self.fatal: RestartLimitExceeded | GaveUp | None = None

    def _build_children(self, config: Config) -> list[_Child]:
        """A child per connection of ``config``, watched by the registry; not started.

        Raises:
            ConfigError: an environment proxy variable holds an invalid URL.
        """
        n = len(config.connections)
        connectors: list[Connector]
        routes: list[tuple[tuple[str, ...], str]]
        if self._connector is not None:
            connectors = [self._connector] * n
            routes = [((), "connector supplied by the caller")] * n
        else:
            resolved = resolve_routes(config, self._environ)
            connectors = [
                TcpTlsConnector(route=route, tls=spec.tls, name=spec.name, exchange=spec.exchange)
                for spec, route in zip(config.connections, resolved, strict=True)
            ]
            routes = [(route.masked_hops, route.reason) for route in resolved]
        rest = rest_clients(config, self._rest_holder, self._environ)
        actors = build_actors(
            config,
            registry=self._registry,
            connectors=connectors,
            rest=rest,
            wall_clock=self._wall_clock,
            pacers=self._pacers,
        )
        children = []
        for spec, actor, client, route in zip(
            config.connections, actors, rest, routes, strict=True
        ):
            children.append(
                _Child(spec, actor, Backoff(spec.backoff, self._rng), rest=client, route=route)
            )
            self._registry_actor.watch_queue(spec.name, actor.queue)
            if actor.books is not None:
                self._registry_actor.watch_books(
                    spec.name, _book_stats(actor.books, self._wall_clock)
                )
        return children

    async def _register(self, child: _Child) -> None:
        spec = child.config
        hops, reason = child.route
        await self._registry.report(
            Registered(
                connection=spec.name,
                exchange=spec.exchange,
                url=redact_url(child.actor.protocol.url),
                route=hops,
                route_reason=reason,
            )
        )
        self._merged.add(child.actor.queue)

    # -- public handle -------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The configuration this supervisor runs."""
        return self._config

    @property
    def finished(self) -> trio.Event:
        """Set once the supervisor has stopped (by request, escalation, or completion)."""
        return self._finished

    def messages(self) -> MessageStream:
        """Every delivered message, in arrival order, as typed msgspec Structs.

        Iteration ends when the supervisor stops. Every call returns the same iterator,
        so leaving one ``async for`` early and starting another loses nothing.
        """
        return self._stream

    def batches(self) -> trio.abc.ReceiveChannel[Batch]:
        """The stream of batches (all messages decoded from one read of one connection's
        socket: one frame on a paced feed, hundreds on a busy one), in arrival order.

        Iterating ends when the supervisor stops. Prefer :meth:`messages` unless you
        process many messages per frame and want to skip a per-message step.
        """
        return self._merged

    async def stats(self) -> Stats:
        """A snapshot of every connection's state and counters.

        Once the supervisor has taken its final snapshot at shutdown, that snapshot:
        every call answered after :attr:`finished` is set returns the same object.
        A call racing :meth:`stop` always returns (audit M6).

        Cancellation: atomic.
        """
        if self._final_stats is not None:
            return self._final_stats
        try:
            stats = await self._registry.snapshot()
        except trio.BrokenResourceError:
            # The registry stopped after the check above; it is cancelled only once
            # _shutdown has recorded the final snapshot.
            stats = None
        if self._final_stats is not None:
            return self._final_stats
        if stats is None:
            # Unreachable unless the registry ended some other way; read it directly,
            # as _shutdown does when the registry does not answer in time.
            return self._registry_actor.snapshot(trio.current_time())
        return stats

    def rest(self, name: str) -> RestClient:
        """The REST client of connection ``name``: the one its adapter uses.

        Calls through it share the connection's route, TLS settings, pooled connections
        and the venue's budget with the adapter's own calls (server time, exchange
        info), so a bot's calls and ours never get the IP banned together::

            price = await sup.rest("binance").get(
                "/api/v3/ticker/price", params={"symbol": "BTCUSDT"}
            )

        Raises:
            ValueError: no connection is called ``name``, or it has no REST API (a
                ``raw`` connection without ``rest.base_url``, or one whose WebSocket
                URL is not on the venue's domain and sets no ``rest.base_url``).
        """
        child = self._child(name)
        client = child.rest
        if client is None:
            spec = child.config
            raise ValueError(
                f"connection {name!r} ({spec.exchange}) has no REST API: set "
                f"[connections.{name}.rest] base_url"
                + (" and venue" if spec.exchange == "raw" else "")
                + " (an adapter's default REST URL applies only when its WebSocket url "
                "is on the venue's own domain)"
            )
        return client

    def book(self, connection: str, symbol: str) -> BookView:
        """The local book of ``symbol`` on ``connection``, as a live read-only view.

        The view answers for the moment each of its methods is called (best-first
        ``bids()`` and ``asks()``, ``best_bid()``, ``sequence``, ``timestamp``,
        ``age(now)``, ``valid``), so one view can be kept and read on every message; it
        may be ahead of the messages the consumer is still processing (compare
        ``sequence``). Levels are empty while the book is not valid. See docs/books.md.

        Raises:
            ValueError: no connection is called ``connection``, or it keeps no book
                for ``symbol`` (only the ``book`` channel's symbols have one, and only
                with ``book_sync``).
        """
        child = self._child(connection)
        books = child.actor.books
        view = None if books is None else books.view(symbol)
        if view is None:
            kept = sorted(books.syncs) if books is not None else []
            raise ValueError(
                f"connection {connection!r} keeps no local book for {symbol!r}"
                + (
                    f" (it keeps {', '.join(kept)})"
                    if kept
                    else " (it keeps none: local "
                    "books are kept for the symbols of the book channel, with book_sync)"
                )
            )
        return view

    async def subscribe(
        self,
        connection: str,
        *,
        channels: Sequence[str] = (),
        symbols: Sequence[str] = (),
        topics: Sequence[str] = (),
    ) -> None:
        """Subscribe more on a running connection; returns when it is live.

        ``channels`` and ``symbols`` are added to the connection's lists (so every
        channel is subscribed for every symbol, as in config), ``topics`` to its ``raw``
        topics. The requests are paced and batched within the exchange's limits like
        the opening ones, and the call returns once the exchange confirmed every topic
        added; the change then holds for every later session, make-before-break
        successor and restart. Books of the ``book`` channel follow. Callers own
        timeouts: while the connection is down the call waits for the next session to
        confirm (``with trio.fail_after(10): await sup.subscribe(...)``).

        Raises:
            ValueError: no connection is called ``connection``, or nothing was named.
            TypeError: a list was given as one string (``symbols="BTC-USDT"``).
            ConfigError: the connection would not be valid with the change (an unknown
                channel, a raw topic of a kept book, more streams than the exchange
                allows on one connection); nothing changed.
            SubscriptionRefused: the exchange refused topics, each with its code and
                message (see its ``kept``).
            RuntimeError: the supervisor or the connection is not running, or the
                supervisor stopped while the call waited.

        Cancellation: the change is made before the first checkpoint; cancelling stops
        the wait only.
        """
        command = Subscribe(**_lists(channels=channels, symbols=symbols, raw=topics))
        child = self._running(connection)
        group = self._shards(child)
        what = f"sup.subscribe({connection!r}, ...)"
        if group is None:
            await self._unless_stopped(what, child.actor.change(command))
        else:
            await self._unless_stopped(what, self._subscribe_shards(connection, group, command))

    async def _unless_stopped(self, what: str, wait: Awaitable[None]) -> None:
        """Await ``wait``, unless the supervisor stops first: then raise RuntimeError.

        ``wait`` runs in the caller's task up to its first checkpoint, as if awaited
        directly (a change is made before it waits)."""
        stopped = False
        async with trio.open_nursery() as nursery:

            async def on_stop() -> None:
                nonlocal stopped
                await self._finished.wait()
                stopped = True
                nursery.cancel_scope.cancel(reason="the supervisor stopped")

            nursery.start_soon(on_stop)

            async def waited() -> None:
                await wait

            # Captured, so that its error leaves unwrapped (not in an exception group).
            result = await outcome.acapture(waited)
            nursery.cancel_scope.cancel(reason="done")
        if stopped:
            raise RuntimeError(f"{what} did not complete: the supervisor stopped")
        result.unwrap()

    async def unsubscribe(
        self,
        connection: str,
        *,
        channels: Sequence[str] = (),
        symbols: Sequence[str] = (),
        topics: Sequence[str] = (),
    ) -> None:
        """Stop subscriptions on a running connection; the change holds from then on.

        ``channels`` and ``symbols`` are removed from the connection's lists (every
        topic made of them ends), ``topics`` from its ``raw`` topics. Returns once the
        plan changed and the session was told to write the requests. A dropped symbol
        of the ``book`` channel loses its local book; consumers get a ``BookInvalid``
        (reason ``unsubscribed``) if it was valid.

        Raises:
            ValueError, TypeError, ConfigError, RuntimeError: as :meth:`subscribe`
                (a connection left with nothing to subscribe is a ConfigError).

        Cancellation: atomic before its first checkpoint; the change is made.
        """
        command = Unsubscribe(**_lists(channels=channels, symbols=symbols, raw=topics))
        child = self._running(connection)
        group = self._shards(child)
        if group is None:
            await child.actor.change(command)
            return
        for shard in group:
            spec = shard.actor.protocol.spec
            mine = Unsubscribe(
                channels=command.channels,
                symbols=tuple(s for s in command.symbols if s in spec.symbols),
                raw=tuple(t for t in command.raw if t in spec.raw),
            )
            if shard is not group[0] and not (set(spec.symbols) - set(mine.symbols)):
                await self.remove_connection(shard.name)  # a shard left with nothing
            elif mine.channels or mine.symbols or mine.raw:
                await shard.actor.change(mine)

    def _shards(self, child: _Child) -> list[_Child] | None:
        """The shards of a sharded connection named by its configured name, in order;
        None for any other connection (or a shard named as such)."""
        if not child.config.shard or base_name(child.name) != child.name:
            return None
        return [c for c in self._children if base_name(c.name) == child.name]

    async def _subscribe_shards(self, name: str, group: list[_Child], command: Subscribe) -> None:
        """Subscribe on a sharded connection: new symbols (and raw topics) go to the
        shards with room, or to new shards; new channels go to every shard."""
        specs = [shard.actor.protocol.spec for shard in group]
        if command.channels:
            problems = [
                f"connections.{spec.name}.{key}: {problem}"
                for spec in specs
                for key, problem in ADAPTERS[spec.exchange].check(
                    msgspec.structs.replace(
                        spec, channels=tuple(dict.fromkeys(spec.channels + command.channels))
                    )
                )
            ]
            if problems:
                raise ConfigError(
                    [f"Subscribe on sharded connection {name!r}: {p}" for p in problems]
                    + [f"(a channel added at run time must fit every shard of {name!r})"]
                )
        plan = place(
            [(shard.actor.protocol.spec, len(shard.actor.protocol.topics())) for shard in group],
            command.symbols,
            command.raw,
        )
        if plan.unplaced:
            limit = ADAPTERS[specs[0].exchange].max_topics
            raise ConfigError(
                [
                    f"Subscribe on sharded connection {name!r}: topics {', '.join(plan.unplaced)}: "
                    f"no shard has room (each holds at most {limit}; raw topics go on a shard "
                    "with room, so unsubscribe some first); nothing changed"
                ]
            )
        refused: list[SubscriptionRefused] = []
        changes = 0

        async def change(shard: _Child, what: Subscribe) -> None:
            try:
                await shard.actor.change(what)
            except SubscriptionRefused as exc:
                refused.append(exc)

        async with trio.open_nursery() as nursery:
            for shard in group:
                what = Subscribe(
                    channels=command.channels,
                    symbols=tuple(plan.symbols.get(shard.name, ())),
                    raw=tuple(plan.raw.get(shard.name, ())),
                )
                if what.channels or what.symbols or what.raw:
                    changes += 1
                    nursery.start_soon(change, shard, what)
            if plan.new:
                last = max(int(c.name.partition("#")[2] or 1) for c in group)
                first = group[0].config
                channels = tuple(dict.fromkeys(specs[0].channels + command.channels))
                new = [
                    msgspec.structs.replace(
                        first,
                        name=shard_name(name, last + i),
                        channels=channels,
                        symbols=tuple(chunk),
                        raw=(),
                    )
                    for i, chunk in enumerate(plan.new, start=1)
                ]
                for shard in await self._start_children(new):
                    changes += 1
                    nursery.start_soon(shard.actor.went_live.wait)
        if refused:
            topics = {t: state for exc in refused for t, state in exc.refused.items()}
            kept = len(refused) < changes or any(exc.kept for exc in refused)
            raise SubscriptionRefused(name, topics, kept=kept)

    async def add_connection(self, name: str, table: Mapping[str, Any]) -> None:
        """Start one more connection; returns once it is live (subscriptions confirmed).

        ``table`` holds the connection's keys as a ``[connections.NAME]`` table of the
        file would (``{"exchange": "okx", "channels": ["trades"], "symbols": [...]}``),
        and is checked the same way, under the file's ``[defaults]``; the route comes
        from its ``proxy``, the file's default proxy or the environment, as at start.
        Its messages join ``messages()``/``batches()``, its stats ``stats()``, and
        :attr:`config` lists it. It is supervised like the others (restart type,
        backoff, ``give_up_after``; last in ``rest_for_one`` order). Callers own
        timeouts: while the venue cannot be reached the call waits (the connection
        keeps trying; :meth:`remove_connection` takes it out).

        Raises:
            ConfigError: the table is not a valid connection, or the name is taken;
                ``problems`` lists every problem (``add_connection: connections.NAME.key:
                ...``); nothing was started.
            RuntimeError: the supervisor is not running, or it stopped while the call
                waited.

        Cancellation: the connection is started before the first checkpoint; a cancelled
        call stops waiting for it to be live, and it keeps running.
        """
        if self._stopping or self._nursery is None:
            raise RuntimeError(f"cannot add {name!r}: the supervisor is not running")
        if not isinstance(table, Mapping):
            raise TypeError(
                f"add_connection() takes the connection's keys as a mapping shaped like its "
                f"[connections.{name}] table, not {type(table).__name__}"
            )
        specs = connection_config(self._config, name, table)
        children = await self._start_children(specs)

        async def live() -> None:
            for child in children:
                await child.actor.went_live.wait()

        await self._unless_stopped(f"sup.add_connection({name!r}, ...)", live())

    async def _start_children(self, specs: Sequence[ConnectionConfig]) -> list[_Child]:
        """Build, register and start a child per spec (checked already), last in order."""
        config = msgspec.structs.replace(self._config, connections=tuple(specs))
        children = self._build_children(config)
        self._config = msgspec.structs.replace(
            self._config, connections=(*self._config.connections, *specs)
        )
        for child in children:
            self._children.append(child)
            await self._register(child)  # no checkpoint before it is queued
            child.not_live_since = trio.current_time()
            self._spawn(child, 0.0)
            logger.info("%s: added at run time", child.name, extra=_fields(child, event="added"))
        return children

    async def remove_connection(self, name: str) -> None:
        """Stop one connection cleanly and forget it; returns once its socket is closed.

        Its session closes as at a stop (close frame, bounded by ``shutdown_timeout``);
        what it still had queued for the consumer is discarded, so no message of it is
        delivered after this returns; it leaves ``stats()`` and :attr:`config`. The
        supervisor keeps running with the others (also with none: add more, or stop).

        Raises:
            ValueError: no connection is called ``name``.
            RuntimeError: the supervisor is not running.

        Cancellation: shielded, bounded by ``shutdown_timeout``: the connection is
        removed whether or not the caller is cancelled meanwhile.
        """
        child = self._child(name)
        if self._stopping or self._nursery is None:
            raise RuntimeError(f"cannot remove {name!r}: the supervisor is not running")
        child.removed = child.stopped = True
        self._children.remove(child)
        self._config = msgspec.structs.replace(
            self._config,
            connections=tuple(c for c in self._config.connections if c is not child.config),
        )
        timeout = self._config.supervisor.shutdown_timeout
        with trio.CancelScope(shield=True):
            if child.scope is not None:
                child.scope.cancel(reason="removed")
            with trio.move_on_after(timeout + _STOP_GRACE):
                await child.done.wait()
            self._merged.remove(child.actor.queue)
            await self._registry.report(Unregistered(connection=name))
        logger.info("%s: removed", name, extra=_fields(child, event="removed"))

    def _running(self, name: str) -> _Child:
        child = self._child(name)
        if self._stopping or self._nursery is None:
            raise RuntimeError(f"cannot change {name!r}: the supervisor is not running")
        if child.stopped:
            why = f" ({child.gave_up})" if child.gave_up else ""
            raise RuntimeError(
                f"cannot change {name!r}: the connection is stopped{why}; "
                f"sup.restart({name!r}) starts it again"
            )
        return child

    async def restart(self, name: str) -> None:
        """Restart one connection now: close its session cleanly and reconnect at once.

        A manual restart skips the backoff delay and does not count toward restart
        intensity. A stopped (temporary, finished or given-up) connection starts again,
        with its ``give_up_after`` clock started afresh, as long as the supervisor still
        runs (it stops once every connection has stopped).

        Raises:
            ValueError: no connection is called ``name``.
            RuntimeError: the supervisor is stopping or stopped.

        Cancellation: atomic; the restart is scheduled before the first checkpoint.
        """
        child = self._child(name)
        if self._stopping or self._nursery is None:
            raise RuntimeError(f"cannot restart {name!r}: the supervisor is not running")
        logger.info("%s: restart requested", name, extra=_fields(child, event="restart_requested"))
        if child.scope is not None:
            child.scope.cancel(reason="restart requested")
        if child.stopped:
            child.not_live_since = trio.current_time()
            child.gave_up = None
        child.stopped = False
        self._spawn(child, 0.0)
        await self._registry.report(
            Restarting(
                connection=name,
                delay=0.0,
                at=trio.current_time(),
                attempt=child.backoff.attempt,
            )
        )

    async def stop(self) -> None:
        """Stop every connection cleanly and end the message stream. Idempotent.

        Close frames are sent and answered within ``shutdown_timeout``; sockets still
        open after that are closed hard.

        Cancellation: shielded; stop finishes even if the caller is cancelled, bounded by
        ``shutdown_timeout``.
        """
        await self._shutdown("stop requested")

    # -- running -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the tree until it stops; ``started()`` once every child is launched.

        Escalation and giving up do not raise here: they set :attr:`fatal` and return,
        so that ``open_supervisor`` can raise it unwrapped.

        Cancellation: when cancelled, every connection is still closed cleanly (close
        frames sent), bounded by ``shutdown_timeout``.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._run_registry)
                try:
                    await self._supervise(nursery, task_status)
                finally:
                    # Also when cancelled from outside: close every session cleanly.
                    await self._shutdown("supervisor cancelled")
        finally:
            # Last: every connection (and its REST task) has stopped by now. The
            # message stream ends once the consumer has taken what is still queued.
            self._merged.close()
            await self._rest_holder.aclose()

    async def _run_registry(self) -> None:
        # Shielded so that the registry outlives an outer cancellation long enough for
        # _shutdown to record the final states; _shutdown cancels it last.
        with self._registry_scope:
            await self._registry_actor.run(self._registry_receive)

    async def _supervise(self, nursery: trio.Nursery, task_status: trio.TaskStatus[None]) -> None:
        for child in self._children:
            await self._register(child)
        started = trio.current_time()
        for child in self._children:
            child.not_live_since = started
            self._spawn(child, 0.0)
        task_status.started()
        if not self._children:
            await self._shutdown("no connections")
        async for ended in self._exits_receive:
            await self._on_exit(ended)

    def _child(self, name: str) -> _Child:
        for child in self._children:
            if child.name == name:
                return child
        known = ", ".join(c.name for c in self._children)
        raise ValueError(f"no connection named {name!r} (connections: {known})")

    def _spawn(self, child: _Child, delay: float) -> None:
        assert self._nursery is not None
        if self._stopping:
            return
        previous = child.done
        child.done = trio.Event()
        child.scope = trio.CancelScope()
        self._nursery.start_soon(self._incarnation, child, child.scope, child.done, previous, delay)

    async def _incarnation(
        self,
        child: _Child,
        scope: trio.CancelScope,
        done: trio.Event,
        previous: trio.Event,
        delay: float,
    ) -> None:
        error: BaseException | None = None
        live_for: float | None = None
        ran = gave_up = False
        try:
            with scope:
                await previous.wait()
                # Read only now: the previous incarnation may have been live until it
                # ended (a group restart spawns this one while that one still runs).
                give_up_at = child.give_up_at()
                if give_up_at is not None and trio.current_time() + delay >= give_up_at:
                    # Not live, and the wait would pass the deadline: it ends there.
                    await trio.sleep_until(give_up_at)
                    gave_up = True
                else:
                    await trio.sleep(delay)
                    ran = True
                    try:
                        await child.actor.run_session()
                    except* trio.Cancelled:
                        raise
                    except* Exception as group:
                        # Nurseries nest groups; a lone failure is reported as itself.
                        leaves = list(_leaves(group))
                        error = leaves[0] if len(leaves) == 1 else group
            live_since = child.actor.live_since
            if ran and live_since is not None:
                now = trio.current_time()
                live_for = now - live_since
                # Also when cancelled (restart(), a group restart): the connection was
                # live until now, so its give_up_after clock starts now.
                child.not_live_since = now
        finally:
            # Never let a successor start while the predecessor still holds the
            # actor (a cancelled waiter would otherwise break the chain).
            with trio.CancelScope(shield=True):
                await previous.wait()
            done.set()
        self._exits_send.send_nowait(
            _Exit(child, scope, error, scope.cancelled_caught, live_for, gave_up)
        )

    async def _on_exit(self, ended: _Exit) -> None:
        child = ended.child
        # Exits the supervisor caused (group restart, restart(), stop) and exits of
        # incarnations already replaced are not failures to act on.
        if ended.cancelled or self._stopping or child.scope is not ended.scope or child.removed:
            return
        now = trio.current_time()
        name = child.name
        if ended.gave_up:
            # The wait ended at the deadline: exactly give_up_after without being live.
            assert child.config.give_up_after is not None
            await self._give_up(child, now, child.config.give_up_after)
            return
        why = describe_error(ended.error) or "the exchange closed the connection normally"
        child.last_error = why
        reason = disconnect_reason(ended.error)
        await self._registry.report(Disconnected(connection=name, error=why, at=now, reason=reason))
        crashed_here = ended.error is not None and not all(
            isinstance(leaf, SupervisorError) for leaf in _leaves(ended.error)
        )
        end = _SessionEnd(child, now, why, reason, ended.error if crashed_here else None)

        restart = child.config.restart
        if restart is RestartType.TEMPORARY or (
            restart is RestartType.TRANSIENT and ended.error is None
        ):
            self._log_end(end, f"stopped for good (restart = {restart.value!r})", always=True)
            await self._retire(child, f"restart = {restart.value!r}", log=False)
            return

        crashed = ended.error is not None and not _expected(ended.error)
        if crashed and self._intensity.record(now):
            settings = self._config.supervisor
            self.fatal = RestartLimitExceeded(
                f"connection {name!r} needed more than {settings.max_restarts} restarts "
                f"within {settings.within:g} s; last error: {why}",
                connection=name,
                last_error=why,
            )
            self._log_end(end, "not restarted: restart intensity exceeded", always=True)
            logger.error("giving up: %s", self.fatal)
            await self._shutdown("restart intensity exceeded")
            return

        # Not live (a live session restarted the clock when it ended) since the deadline:
        # no further attempt. Siblings run on; no group restart for a connection that
        # stops for good. Its "gave up" line names the last error: no line of its own
        # for this end, unless it was a crash (its traceback is worth a line).
        give_up_at = child.give_up_at()
        if give_up_at is not None and now >= give_up_at:
            if end.crash is not None:
                self._log_end(end, "giving up (give_up_after)", always=True)
            await self._give_up(child, now, now - child.not_live_since)
            return

        reset_after = child.config.backoff.reset_after
        healthy = ended.live_for is not None and ended.live_for >= reset_after
        if healthy:
            child.backoff.reset()
        # A planned disconnect announced by the exchange (Binance serverShutdown, OKX
        # 64008) is not a failure: reconnect at once, as the exchanges ask, without
        # growing the backoff. Announcements in a row from short-lived sessions take the
        # backoff, so an exchange that announces in a loop cannot make us spin.
        announced = isinstance(ended.error, ServerClosing)
        delay = 0.0 if announced and child.announced == 0 else child.backoff.next_delay()
        child.announced = child.announced + 1 if announced and not healthy else 0
        if ended.error is not None and _config_shaped(ended.error):
            child.config_failures += 1
            if child.config_failures >= CONFIG_FAILURES:
                delay = child.config.backoff.max
                if child.config_failures == CONFIG_FAILURES:
                    logger.error(
                        "%s: %s refused %d times in a row the way a wrong configuration "
                        "does (%s); shown as failed, retried every %g s (check url, "
                        "symbols and network route)",
                        name,
                        redact_url(child.actor.url),
                        CONFIG_FAILURES,
                        why,
                        delay,
                        extra=_fields(child, event="failed", reason=reason, delay=delay),
                    )
        else:
            child.config_failures = 0
        for member in self._group(child):
            if member is not child:
                if member.config.restart is RestartType.TEMPORARY:
                    if member.scope is not None:
                        member.scope.cancel(reason=f"{name} failed ({self._strategy_name})")
                    await self._retire(member, f"{name} failed; temporary children stay down")
                    continue
                if member.stopped:
                    continue
                if member.scope is not None:
                    member.scope.cancel(reason=f"{name} failed ({self._strategy_name})")
                logger.info(
                    "%s: restarting with %s (%s)",
                    member.name,
                    name,
                    self._strategy_name,
                    extra=_fields(member, event="group_restart", cause=name, delay=delay),
                )
            await self._registry.report(
                Restarting(
                    connection=member.name,
                    delay=delay,
                    at=now,
                    attempt=member.backoff.attempt,
                )
            )
            if member.config_failures >= CONFIG_FAILURES:
                state = StateChanged(connection=member.name, state=ConnectionState.FAILED, at=now)
                await self._registry.report(state)
            self._spawn(member, delay)
        if give_up_at is not None and now + delay >= give_up_at:
            self._log_end(
                end,
                f"giving up in {give_up_at - now:.2f} s (the next attempt would come after "
                "give_up_after)",
                delay=give_up_at - now,
            )
        else:
            attempt = child.backoff.attempt
            self._log_end(
                end,
                f"reconnecting in {delay:.2f} s (attempt {attempt})",
                delay=delay,
                attempt=attempt,
            )

    def _log_end(
        self, end: _SessionEnd, then: str, *, always: bool = False, **fields: object
    ) -> None:
        """Log the end of a session once, with what happens next (``then``), unless the
        child's :class:`FailureLog` counts it into a summary instead.

        A crash (a bug, not the network) and an end after which the child stops
        (``always``) are logged in full every time.
        """
        child = end.child
        name = child.name
        verdict = child.actor.failures.failed(end.at, end.reason)
        rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in fields.items()}
        summary = verdict.summary
        if summary is not None:
            counted = (
                f"{name}: failed {summary.failures} time{'s' if summary.failures != 1 else ''} "
                f"in {_seconds(summary.span)} s: {summary.reason}"
            )
            extra = _fields(
                child,
                event="failures_summarized",
                reason=summary.reason,
                failures=summary.failures,
                span=round(summary.span, 3),
            )
            if verdict.log or always or end.crash is not None:
                logger.warning("%s (not logged one by one)", counted, extra=extra)
            else:
                logger.warning("%s; %s", counted, then, extra={**extra, **rounded})
                return
        if end.crash is not None:
            logger.error(
                "%s: crashed: %s; %s",
                name,
                end.why,
                then,
                exc_info=end.crash,
                extra=_fields(child, event="crashed", reason=end.reason, **rounded),
            )
        elif verdict.log or always:
            logger.warning(
                "%s: session ended: %s (%s); %s",
                name,
                end.why,
                end.reason,
                then,
                extra=_fields(child, event="session_ended", reason=end.reason, **rounded),
            )

    @property
    def _strategy_name(self) -> str:
        return self._config.supervisor.strategy.value

    def _group(self, child: _Child) -> list[_Child]:
        strategy = self._config.supervisor.strategy
        if strategy is Strategy.ONE_FOR_ALL:
            return list(self._children)
        if strategy is Strategy.REST_FOR_ONE:
            return self._children[self._children.index(child) :]
        return [child]

    async def _retire(self, child: _Child, why: str, *, log: bool = True) -> None:
        child.stopped = True
        child.scope = None
        await self._registry.report(
            StateChanged(
                connection=child.name, state=ConnectionState.STOPPED, at=trio.current_time()
            )
        )
        if log:
            logger.info(
                "%s: stopped for good (%s)", child.name, why, extra=_fields(child, event="stopped")
            )
        await self._stop_if_nothing_left()

    async def _give_up(self, child: _Child, now: float, not_live_for: float) -> None:
        after = child.config.give_up_after
        assert after is not None
        reason = (
            f"not live for {round(not_live_for, 3):g} s (give_up_after = {after:g}); "
            f"last error: {child.last_error or 'none'}"
        )
        child.gave_up = reason
        child.stopped = True
        child.scope = None
        logger.error("%s: gave up: %s", child.name, reason, extra=_fields(child, event="gave_up"))
        await self._registry.report(
            StateChanged(
                connection=child.name,
                state=ConnectionState.FAILED,
                at=now,
                error=f"gave up: {reason}",
            )
        )
        await self._stop_if_nothing_left()

    async def _stop_if_nothing_left(self) -> None:
        """Stop once no connection that must run is left running.

        Those are the permanent connections, or every connection in a configuration
        without a permanent one. Stopping because some gave up is a failure (``GaveUp``);
        stopping because every connection ended by its restart type is not.
        """
        permanent = [c for c in self._children if c.config.restart is RestartType.PERMANENT]
        if not all(c.stopped for c in permanent or self._children):
            return
        gave_up = [c for c in self._children if c.gave_up is not None]
        if gave_up:
            what = "permanent connection" if permanent else "connection"
            self.fatal = GaveUp(
                f"no {what} left running: "
                + " | ".join(f"{c.name!r} gave up: {c.gave_up}" for c in gave_up),
                last_errors={c.name: c.last_error for c in gave_up},
            )
            await self._shutdown(f"no {what} left running")
        elif all(c.stopped for c in self._children):
            await self._shutdown("every connection has stopped")

    async def _shutdown(self, why: str) -> None:
        if self._stopping:
            with trio.CancelScope(shield=True):
                await self._finished.wait()
            return
        self._stopping = True
        logger.info("stopping: %s", why)
        try:
            await self._stop_children(why)
        finally:
            if self._final_stats is None:
                # The registry did not answer in time: read what it has directly (its
                # task is being cancelled, so nothing else touches it any more). This is
                # the one deliberate exception to "the registry alone owns the stats"
                # (review P6): asking it over its channel cannot work once it stopped
                # answering, and stats() must still return the final states.
                self._final_stats = self._registry_actor.snapshot(trio.current_time())
            self._registry_scope.cancel(reason="supervisor stopped")
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel(reason=f"supervisor stopped: {why}")
            self._finished.set()

    async def _stop_children(self, why: str) -> None:
        timeout = self._config.supervisor.shutdown_timeout
        with trio.CancelScope(shield=True):
            with trio.move_on_after(timeout + _STOP_GRACE) as waited:
                for child in self._children:
                    if child.scope is not None:
                        child.scope.cancel(reason=f"supervisor stopping: {why}")
                for child in self._children:
                    await child.done.wait()
                now = trio.current_time()
                for child in self._children:
                    if child.gave_up is not None:
                        continue  # stays failed, with why, in the final stats
                    await self._registry.report(
                        StateChanged(connection=child.name, state=ConnectionState.STOPPED, at=now)
                    )
                self._final_stats = await self._registry.snapshot()
            if waited.cancelled_caught:
                logger.error("connections did not close within %g s; closed hard", timeout)
