"""The ConnectionActor: one exchange connection, one session per ``run_session()``.

Theory of operation: the supervisor keeps one actor per configured connection for the
whole life of the supervisor and calls :meth:`ConnectionActor.run_session` once per session:

    permit (registry paces connects per host)
    -> connect (connector: TCP/TLS or a fake) -> WebSocket handshake   net/websocket.py
    -> adapter.start_session (subscribe frames)
    -> pump: frames in -> adapter -> batches out, until it ends       session.py
    -> close (close frame sent, bounded by ``close_timeout``, even when cancelled)

A session ends by raising a typed error from :mod:`actors._errors`, or by returning when
the exchange closed the connection normally (code 1000). The actor decides nothing about
restarts: that is the supervisor's job. It does own everything that must survive a
restart: the adapter (and so the subscriptions), the queue toward the consumer, and the
traffic counter (with the kinds of malformed frame already logged).

Make-before-break: when the exchange announces that it will close the connection
(``ReconnectRequested``: Binance ``serverShutdown``, OKX 64008), the current session keeps
delivering while a successor session (a fresh adapter on a new socket) connects and
subscribes, buffering what it receives (at most the connection's ``buffer`` batches).
Once the successor is live, the old session stops reading, finishes delivering what it
holds and closes cleanly; the successor's buffer is then delivered without what the old
session already delivered (the continuity ledger, :mod:`actors.handover`, decides), and
it carries on as the connection. If the successor cannot be built, the handover is
abandoned (the old session's delivery is as before it), the old session goes on until
the exchange closes it, and the supervisor then reconnects at once (``ServerClosing``).

Generations: a successor that took over is the connection exactly as the first session
was, and :meth:`ConnectionActor._run_session` is the one code path for both: the first
session subscribes and goes live, a successor confirms and takes over, and from there on
each is pumped, announced, handed over or closed as announced the same way, however many
handovers came before it within one ``run_session()``.

Who runs what: ``run_session()`` runs the first session itself and starts one task, the
successor runner, which owns the nursery its successors run in. A session that hears a
notice sends a request to the runner over a channel (each session holds its own clone
of the send end) instead of spawning anything. The connection ends when the session
that is the connection at the time ends with nothing pending. Each session opens a
small nursery of its own for its socket's reader, so no nursery is handed between
tasks.

REST: a connection with a REST client (``rest=``) runs its adapter's REST calls (server
time, instrument lists; :mod:`actors.exchanges.sdk.rest`) in a task of its own in the
``run_session()`` nursery, beside the sessions and cancelled when they end. It never
writes to a socket and never raises: a failed call is logged once (until one succeeds
again) and tried again after the adapter's backoff, so REST can neither end nor delay a
session. Its results reach stats as ``RestInfo`` (clock offset, used weight, hold), and
an unknown symbol's subscriptions as failed states; the Binance weight window is aligned
to the venue's clock with the measured offset.

Delivery: the session that is the connection delivers through a callable composed from
the actor's state by one method, never by wrapping what is already there: the queue's
``put``; around it the ledger of the handover it announced (``track``); around that,
right after a switch, the previous handover's filter (``unseen``). Each change of that
state (a notice, an abandoned handover, a switch, the end of the filter) composes it
anew, so nothing stacks however many notices come.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from actors._errors import (
    ConnectionLost,
    FeedStale,
    RateLimited,
    ServerClosing,
    SubscriptionRefused,
)
from actors._spec import ConnectionSpec
from actors.books import BookKeeper
from actors.consumer_queue import ConsumerQueue
from actors.exchanges.messages import (
    Batch,
    BookInvalid,
    Command,
    Message,
    ReconnectRequested,
    Subscribe,
    Unsubscribe,
)
from actors.exchanges.sdk.protocol import AdapterState, ExchangeProtocol
from actors.exchanges.sdk.rest import TIME, RestCall
from actors.handover import ContinuityLedger
from actors.logs import FailureLog, log_fields
from actors.net import Connector, redact_url, split_ws_url
from actors.net.rest import RestClient, WeightWindow, WireTimes
from actors.net.websocket import NORMAL_CLOSURE, ClosedNormally, open_websocket
from actors.registry import (
    Connected,
    ConnectionState,
    RegistryClient,
    RestInfo,
    StateChanged,
    SubscriptionStates,
)
from actors.session import Session, TrafficCounter

__all__ = [
    "DEFAULT_ANNOUNCED_FOR",
    "DEFAULT_BOOK_RETRY",
    "DEFAULT_BOOK_RETRY_MAX",
    "DEFAULT_HANDOVER_WAIT",
    "ConnectionActor",
]

logger = logging.getLogger("marketprism.connection")

#: Seconds a live make-before-break successor waits for the old session to deliver up
#: to where the successor's buffer starts, before switching anyway; and seconds after a
#: switch during which the successor's messages are checked against the old session's.
DEFAULT_HANDOVER_WAIT: Final = 10.0
#: Seconds after a disconnect notice during which the end of the announced session is
#: the announced close (``ServerClosing``: reconnect at once) although no successor took
#: over. Binance sent ``serverShutdown`` "10 minutes before" until 2026-06 (reference
#: §1.1), OKX sends 64008 about 30 s ahead; a loss later than this is an ordinary one.
DEFAULT_ANNOUNCED_FOR: Final = 600.0
#: Seconds before a failed book snapshot is asked for again; doubled per failure of that
#: book in a row, up to ``DEFAULT_BOOK_RETRY_MAX``.
DEFAULT_BOOK_RETRY: Final = 1.0
DEFAULT_BOOK_RETRY_MAX: Final = 60.0

_Deliver = Callable[[Batch], Awaitable[None]]


class _Handover:
    """Make-before-break while a successor session is being built, and the successor's
    filter right after it took over.

    The switch waits until the old session has delivered up to where the successor's
    buffer starts (:class:`~actors.handover.ContinuityLedger`), so that nothing falls
    between them, or until ``DEFAULT_HANDOVER_WAIT`` passes after the successor went
    live, or until the successor's buffer holds ``limit`` batches. The successor's
    buffer is then delivered minus what the old session already delivered.

    Args:
        name: the connection's name (for the log).
        previous: the session that is the connection and heard the notice.
        requests: the successor's own handle on the successor runner.
        limit: batches the successor may buffer (the connection's ``buffer``).
    """

    def __init__(
        self,
        name: str,
        previous: Session,
        requests: trio.MemorySendChannel[_Handover],
        *,
        limit: int,
        exchange: str,
    ) -> None:
        self.name = name
        self.exchange = exchange
        self.previous = previous
        #: The successor's own handle on the successor runner (for when it is the
        #: connection and hears a notice in turn); the successor's task closes it.
        self.requests = requests
        self.successor: Session | None = None
        #: The successor's adapter once built (run-time changes go to it too).
        self.proto: ExchangeProtocol | None = None
        self.done = trio.Event()
        self.succeeded = False
        #: trio time the successor's subscriptions were confirmed, or None.
        self.ready_at: float | None = None
        # The adapter knows which of its messages carry an order (ExchangeProtocol.mark).
        self.ledger = ContinuityLedger(previous.proto.mark)
        self.buffer: collections.deque[Batch] = collections.deque()
        self.limit = limit
        #: Messages dropped from the buffer's head while the successor was not yet live.
        self.dropped = 0
        #: After the switch: trio time until which the successor's batches are filtered.
        self.filter_until = math.inf

    @property
    def full(self) -> bool:
        """The successor's buffer holds ``limit`` batches."""
        return len(self.buffer) >= self.limit

    async def track(self, put: _Deliver, batch: Batch) -> None:
        """Deliver one of the old session's batches and remember where it got to.

        The marks are set before the (possibly blocking) put: a switch waits for the old
        session to finish, so this batch is delivered before the successor's buffer.
        """
        self.ledger.delivered(batch)
        if self.successor is not None and self.ready_at is not None and self.ledger.caught_up():
            self.successor.wake("the old session caught up")
        await put(batch)

    async def hold(self, batch: Batch) -> None:
        """Buffer one of the successor's batches until the switch.

        A live successor switches once its buffer is full (its pump checks
        :attr:`full`). One that is not live yet cannot: it drops the oldest quarter of
        its buffer (at least one batch) instead, which the old session, still the
        connection, delivers; the ledger records again where the buffer now starts.
        """
        buffer = self.buffer
        if len(buffer) >= self.limit:
            if not self.dropped:
                logger.warning(
                    "%s: the successor session's buffer is full (%d batches) before its "
                    "subscriptions are confirmed; dropping its oldest batches (the "
                    "current session still delivers them)",
                    self.name,
                    self.limit,
                    extra=log_fields(self.name, self.exchange, event="successor_buffer_full"),
                )
            for _ in range(max(1, self.limit // 4)):
                self.dropped += len(buffer.popleft())
            self.ledger.rebuffered(buffer)
        buffer.append(batch)
        self.ledger.buffered(batch)
        await trio.lowlevel.checkpoint()


class ConnectionActor:
    """Owns one connection's socket, adapter and queue across its sessions.

    Args:
        spec: the connection.
        new_adapter: builds a fresh adapter for ``spec.exchange`` from a spec; called once
            here with ``spec`` (that adapter is kept across sessions) and once per
            make-before-break successor with the current adapter's spec (so
            subscriptions changed at run time carry over), so both are built the same way.
        queue: the queue toward the consumer (kept across sessions).
        registry: where state changes and traffic go.
        connector: opens the stream under the WebSocket.
        close_timeout: seconds the closing handshake may take.
        rest: the connection's REST client (shared with ``sup.rest(name)``), or ``None``
            for a connection without REST.
        wall_clock: Unix time, read around each server-time call (tests inject one).
    """

    def __init__(
        self,
        spec: ConnectionSpec,
        *,
        new_adapter: Callable[[ConnectionSpec], ExchangeProtocol],
        queue: ConsumerQueue,
        registry: RegistryClient,
        connector: Connector,
        close_timeout: float,
        rest: RestClient | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self._new_adapter = new_adapter
        #: The adapter of the session that is the connection (a successor's, once it
        #: took over).
        self.protocol = new_adapter(spec)
        self.queue = queue
        self._registry = registry
        self._connector = connector
        self._close_timeout = close_timeout
        #: trio time the current/last session's subscriptions were confirmed, or None.
        self.live_since: float | None = None
        #: Set once the connection was first live (it stays set).
        self.went_live = trio.Event()
        self._traffic = TrafficCounter(
            spec.name, registry, queue, wall_clock=wall_clock, exchange=spec.exchange
        )
        #: Which session ends get a log line: the supervisor reports each end to it, and
        #: the live line says how many failures it took to get live again.
        self.failures = FailureLog()
        # Per run_session(), reset at its start and end:
        #: The session that is the connection (the first one, or the successor that
        #: took over last).
        self._session: Session | None = None
        #: The handover under way (a successor being built), if any.
        self._handover: _Handover | None = None
        #: The handover that switched last, while it still filters the successor.
        self._filtering: _Handover | None = None
        #: The session that heard the latest disconnect notice, and when.
        self._announced: tuple[Session, float] | None = None
        #: ``task_status.started`` until the connection is first live.
        self._started: Callable[[], None] | None = None
        #: The connection's REST client, or None.
        self.rest = rest
        self._wall_clock = wall_clock
        #: REST purposes whose failure was logged (until they succeed again).
        self._rest_failing: set[str] = set()
        #: The connection's local books (actors/books.py), or None.
        self.books = self._book_keeper()
        if self.books is not None:
            self._traffic.silent_gaps = frozenset(self.books.syncs)
        # Snapshots from REST and the stream's deltas reach the queue in the order the
        # books took them.
        self._books_lock = trio.Lock()
        # Set when a book wants a snapshot; replaced once the books task woke.
        self._books_wanted = trio.Event()
        # Set when a book changed (book_top); replaced once the tops task woke.
        self._tops_wanted = trio.Event()
        #: Consecutive snapshot failures per book symbol.
        self._book_failures: dict[str, int] = {}
        # Set (and replaced) whenever the connection's subscription states changed:
        # run-time subscribe calls wait on it for their topics' acks.
        self._subscriptions_changed = trio.Event()

    def _book_keeper(self) -> BookKeeper | None:
        """Local books for the ``book`` channel, when the spec wants them and they can be
        synced (a venue whose stream has no snapshot needs the REST client).

        Kept also while the channel has no symbol, so that one subscribed at run time
        gets its book; delivery bypasses the keeper while it keeps none (``_put``).
        """
        proto = self.protocol
        rule = proto.book_rule
        symbols = proto.book_topics()
        spec = self.spec
        if rule is None or not spec.book_sync:
            return None
        if rule.rest_snapshot and self.rest is None:
            if not symbols:
                return None
            logger.warning(
                "%s: the %s book stream has no snapshot and this connection has no REST "
                "API to fetch one, so its books are delivered unchecked (set "
                "[connections.%s.rest] base_url, or book_sync = false to silence this)",
                spec.name,
                spec.exchange,
                spec.name,
                extra=self._log_fields(event="books_unchecked"),
            )
            return None
        return BookKeeper(
            spec.name,
            spec.exchange,
            rule,
            symbols,
            refresh=spec.book_refresh,
            top=spec.book_top,
            interval=spec.book_interval,
        )

    def _log_fields(self, **fields: object) -> dict[str, object]:
        return log_fields(self.spec.name, self.spec.exchange, **fields)

    @property
    def url(self) -> str:
        """The URL the connection opens (may hold credentials: log it redacted)."""
        return self.protocol.url

    async def run_session(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run one session: connect, subscribe, receive until it ends.

        ``task_status.started()`` is called once the subscriptions are confirmed (the
        first session's, or a successor's that took over before). Make-before-break
        handovers happen inside one ``run_session()``, any number of them: it goes on
        with each successor.

        Returns:
            When the exchange closed the connection normally (close code 1000).

        Raises:
            ConnectError: TCP/TLS failed, or connect + handshake took longer than
                ``connect_timeout``.
            HandshakeRejected: the server refused the upgrade with an HTTP status.
            ConnectionLost: the connection broke or was closed with a code other than
                1000.
            FeedStale: no frame for ``stale_after`` seconds, or a heartbeat missed.
            ServerClosing: the exchange closed the connection as announced (within
                ``DEFAULT_ANNOUNCED_FOR`` of its notice) and no successor session could
                take over.

        Cancellation: every open WebSocket is closed with code 1000 on the way out; the
        closing handshake is shielded but bounded by ``close_timeout``. The traffic
        counted so far is reported, bounded the same way.
        """
        self.live_since = None
        self._forget_lineage()
        self._started = task_status.started
        _, host, _, _ = split_ws_url(self.protocol.url)
        await self._set_state(ConnectionState.CONNECTING)
        await self._registry.permit(host, self.protocol.connect_rate)
        try:
            async with trio.open_nursery() as nursery:
                requests, incoming = trio.open_memory_channel[_Handover](1)
                nursery.start_soon(self._run_successors, incoming)
                rest, books, tops = trio.CancelScope(), trio.CancelScope(), trio.CancelScope()
                if self.rest is not None:
                    nursery.start_soon(self._run_rest, self.rest, rest)
                if self.books is not None:
                    nursery.start_soon(self._run_books, self.books, books)
                    if self.books.top is not None:
                        nursery.start_soon(self._run_tops, self.books, tops)
                try:
                    await self._run_session(self.protocol, requests, None)
                finally:
                    rest.cancel(reason="the session ended")
                    books.cancel(reason="the session ended")
                    tops.cancel(reason="the session ended")
        finally:
            self._forget_lineage()
            with trio.CancelScope(shield=True), trio.move_on_after(self._close_timeout):
                if self.books is not None:
                    await self._books_lost()
                await self._traffic.flush(trio.current_time())

    def _forget_lineage(self) -> None:
        self._session = self._handover = self._filtering = None
        self._announced = None
        self._started = None

    async def _run_successors(self, incoming: trio.MemoryReceiveChannel[_Handover]) -> None:
        """The successor runner: one successor session per request, in its own nursery.

        Ends once every session's request handle is closed and its successors ended.
        """
        async with incoming, trio.open_nursery() as successors:
            async for handover in incoming:
                successors.start_soon(self._successor, handover)

    async def _run_session(
        self,
        proto: ExchangeProtocol,
        requests: trio.MemorySendChannel[_Handover],
        handover: _Handover | None,
    ) -> None:
        """One session from connect to close, whatever its generation: the first one
        (``handover`` is None) subscribes and goes live; ``handover``'s successor
        confirms and takes over. Either is then the connection until it is handed over
        or ends, and ends the same way.

        ``requests`` is this session's handle on the successor runner; it is closed on
        the way out. A session that ends while its successor is being built waits for
        it; one that the exchange closed as announced, with no successor taking over,
        raises ServerClosing.
        """
        ended: ConnectionLost | None = None
        session: Session | None = None
        pending: _Handover | None = None
        connecting_at = trio.current_time()
        async with requests:
            try:
                async with (
                    trio.open_nursery() as reader,
                    open_websocket(
                        reader,
                        proto.url,
                        connector=self._connector,
                        connect_timeout=self.spec.connect_timeout,
                        max_message_size=self.spec.max_message_size,
                        close_timeout=self._close_timeout,
                        transport=self.spec.transport.value,
                    ) as ws,
                ):
                    now = trio.current_time()
                    await self._registry.report(Connected(connection=self.spec.name, at=now))
                    # Not a line of its own: the live line names the URL, or the
                    # session-ended line says why it never got there.
                    logger.debug(
                        "%s: connected to %s",
                        self.spec.name,
                        redact_url(ws.url),
                        extra=self._log_fields(event="connected"),
                    )
                    session = Session(
                        self.spec.name,
                        proto,
                        ws,
                        stale_after=self.spec.stale_after,
                        traffic=self._traffic,
                        deliver=self._put if handover is None else handover.hold,
                        on_subscriptions=self._on_subscriptions,
                        on_notice=functools.partial(self._on_notice, requests),
                    )
                    try:
                        if handover is None:
                            self._session = session
                            await self._subscribe(session, connecting_at)
                        else:
                            handover.successor = session
                            await self._take_over(session, handover)
                        # The connection now, whichever generation: until handed over.
                        await session.pump(until=lambda: session.retiring)
                    except FeedStale:
                        # A silent peer would not answer a closing handshake either:
                        # drop the socket instead of waiting for it.
                        await ws.abort()
                        raise
                    except ClosedNormally:
                        pass  # the supervisor logs the end of the session, with what next
                    except ConnectionLost as exc:
                        if not self._closed_as_announced(session):
                            raise
                        ended = exc  # closed as announced: see below
            finally:
                if session is not None:
                    pending = self._pending_for(session)
                    proto.end_session()
                    session.closed.set()
                    if pending is not None and pending.successor is not None:
                        pending.successor.wake("the old session ended")
        if pending is not None:
            # Ended while a successor was on its way (handed over, or closed as
            # announced): the successor goes on if it takes over.
            await pending.done.wait()
            if pending.succeeded:
                return
        elif session is None or not self._closed_as_announced(session):
            return  # closed normally, unannounced
        raise ServerClosing(
            "the exchange closed the connection as announced and no "
            "successor session could be opened" + (f": {ended}" if ended is not None else ""),
            code=ended.code if ended is not None else NORMAL_CLOSURE,
            reason=ended.reason if ended is not None else "",
        ) from ended

    def _pending_for(self, session: Session) -> _Handover | None:
        """The handover under way from ``session``, if any."""
        handover = self._handover
        return handover if handover is not None and handover.previous is session else None

    def _closed_as_announced(self, session: Session) -> bool:
        """Is the end of ``session`` the close its exchange announced?"""
        if self._pending_for(session) is not None:
            return True
        announced = self._announced
        return (
            announced is not None
            and announced[0] is session
            and trio.current_time() <= announced[1] + DEFAULT_ANNOUNCED_FOR
        )

    async def _subscribe(self, session: Session, connecting_at: float) -> None:
        """The first session: subscribe and go live (unless handed over first).

        ``connecting_at``: when its connect began, for the live line."""
        proto = session.proto
        await self._set_state(ConnectionState.SUBSCRIBING)
        session.start()
        await self._report_subscriptions()
        await session.pump(until=lambda: session.retiring or proto.state is AdapterState.LIVE)
        if not session.retiring:
            await self._went_live(session, connecting_at)

    async def _take_over(self, session: Session, handover: _Handover) -> None:
        """A successor: confirm within ``stale_after``, buffer until the switch, switch."""
        proto = session.proto
        previous = handover.previous
        ledger = handover.ledger
        stale_after = self.spec.stale_after
        session.start()
        confirm_by = trio.current_time() + stale_after
        if not await session.pump(until=lambda: proto.state is AdapterState.LIVE, by=confirm_by):
            raise FeedStale(
                f"the successor session's subscriptions were not confirmed "
                f"within {stale_after:g} s",
                code=None,
            )
        handover.ready_at = trio.current_time()
        await session.pump(
            until=lambda: ledger.caught_up() or previous.closed.is_set() or handover.full,
            by=handover.ready_at + DEFAULT_HANDOVER_WAIT,
        )
        if ledger.caught_up():
            why = "the old session caught up: no gap"
        else:
            if previous.closed.is_set():
                why = "the old session ended"
            elif handover.full:
                why = (
                    f"the successor's buffer filled ({handover.limit} batches) before "
                    "the old session caught up"
                )
            else:
                why = f"the old session did not catch up within {DEFAULT_HANDOVER_WAIT:g} s"
            unknown = sorted(ledger.unknown)
            if unknown:
                streams = ", ".join(f"{kind} {symbol}" for kind, symbol in unknown[:3])
                more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
                why += (
                    f"; continuity of {streams}{more} cannot be checked (ids in no known "
                    "format): a gap or duplicates are possible"
                )
            elif not previous.closed.is_set():
                why += ": a gap is possible"
        await self._hand_over(session, handover, why)
        session.last_frame = trio.current_time()  # the switch is not silence

    async def _went_live(self, session: Session, connecting_at: float | None) -> None:
        """The connection is live: report it, and log it in one line.

        The line names the URL and, for a session that subscribed itself, the seconds
        from the start of its connect to the confirmed subscriptions
        (``connecting_at``); after failures, it says how many and over how long.
        """
        now = self.live_since = trio.current_time()
        recovered = self.failures.live(now)
        url = redact_url(session.ws.url)
        how = (
            f"connected to {url} and subscribed in {now - connecting_at:.2f} s"
            if connecting_at is not None
            else f"a make-before-break successor on {url} took over"
        )
        fields = self._log_fields(event="live", url=url)
        if connecting_at is not None:
            fields["took"] = round(now - connecting_at, 3)
        if recovered is None:
            logger.info("%s: live: %s", self.spec.name, how, extra=fields)
        else:
            failures, span = recovered
            fields.update(failures=failures, down_for=round(span, 3))
            logger.info(
                "%s: live again after %d failure%s in %s s: %s",
                self.spec.name,
                failures,
                "" if failures == 1 else "s",
                f"{round(span, 1):g}",
                how,
                extra=fields,
            )
        await self._set_state(ConnectionState.LIVE)
        self.went_live.set()
        started, self._started = self._started, None
        if started is not None:
            started()

    async def _on_subscriptions(self, session: Session) -> None:
        if session is self._session:
            await self._report_subscriptions()

    async def _on_notice(
        self,
        requests: trio.MemorySendChannel[_Handover],
        session: Session,
        notice: ReconnectRequested,
    ) -> None:
        pending = self._handover
        if session is not self._session:
            if pending is not None and pending.successor is session:
                # A successor told before its handover that it will be closed too: give
                # it up; the current session goes on.
                raise ServerClosing(f"the exchange announced a disconnect: {notice.reason}")
            return  # a session already handed over
        self._announced = (session, trio.current_time())
        if pending is not None:
            return  # a successor is already on its way
        logger.info(
            "%s: %s; opening a successor session before closing this one",
            self.spec.name,
            notice.reason,
            extra=self._log_fields(event="disconnect_announced"),
        )
        handover = self._handover = _Handover(
            self.spec.name,
            session,
            requests.clone(),
            limit=self.spec.buffer,
            exchange=self.spec.exchange,
        )
        session.deliver = self._deliver_for(session)
        await requests.send(handover)

    def _deliver_for(self, session: Session) -> _Deliver:
        """What ``session`` (the connection) delivers through, composed from the state:
        the queue, tracked by the handover it announced, filtered by the last switch."""
        put: _Deliver = self._put
        pending = self._pending_for(session)
        if pending is not None:
            put = functools.partial(pending.track, put)
        filtering = self._filtering
        if filtering is not None and filtering.successor is session:
            put = functools.partial(self._unseen, filtering, put)
        return put

    async def _unseen(self, handover: _Handover, put: _Deliver, batch: Batch) -> None:
        """A switched successor's delivery until it has passed the old session's last
        ids, or ``DEFAULT_HANDOVER_WAIT`` after the switch."""
        ledger = handover.ledger
        kept = ledger.unseen(batch)
        if ledger.passed or trio.current_time() >= handover.filter_until:
            self._filtering = None
            session = handover.successor
            assert session is not None  # only a switched handover filters
            session.deliver = self._deliver_for(session)
        if kept:
            await put(kept)

    async def _successor(self, handover: _Handover) -> None:
        # A fresh adapter for the new socket, built like the first one (so it draws on
        # the same shared request budget), for what the connection subscribes now.
        proto = handover.proto = self._new_adapter(self.protocol.spec)
        proto.adopt_rest(self.protocol)
        try:
            await self._registry.permit(split_ws_url(proto.url)[1], proto.connect_rate)
            await self._run_session(proto, handover.requests, handover)
        except Exception as exc:
            if handover.succeeded:
                raise  # it became the connection: its end is the connection's
            self._abandon(handover, exc)
        finally:
            handover.requests.close()  # if the session never opened
            if not handover.done.is_set():
                self._abandon(handover, "it closed before taking over")

    def _abandon(self, handover: _Handover, why: BaseException | str) -> None:
        """No successor takes over: the old session delivers as before the notice."""
        while isinstance(why, BaseExceptionGroup) and len(why.exceptions) == 1:
            why = why.exceptions[0]  # the session's own nursery wrapped it
        logger.warning(
            "%s: could not open a successor session (%s); the current session goes on "
            "until the exchange closes it",
            self.spec.name,
            why,
            extra=self._log_fields(event="handover_abandoned"),
        )
        if self._handover is handover:
            self._handover = None
            handover.previous.deliver = self._deliver_for(handover.previous)
        handover.buffer.clear()
        handover.done.set()

    async def _hand_over(self, session: Session, handover: _Handover, why: str) -> None:
        """``session`` (the successor) is live: retire the old one and take its place."""
        previous = handover.previous
        previous.retire()
        await previous.closed.wait()
        self._session = session
        self.protocol = session.proto
        self._handover = None
        handover.succeeded = True
        handover.filter_until = trio.current_time() + DEFAULT_HANDOVER_WAIT
        self._filtering = None if handover.ledger.passed else handover
        session.deliver = self._deliver_for(session)
        buffer, handover.buffer = handover.buffer, collections.deque()
        for batch in buffer:
            await session.deliver(batch)
        handover.done.set()
        await self._report_subscriptions()
        if self.live_since is None:
            # The old session never got live; the successor is, from now on.
            await self._went_live(session, None)
        if handover.dropped:
            why += (
                f"; messages dropped from its buffer before it was live (the old session "
                f"was still delivering them): {handover.dropped}"
            )
        logger.info(
            "%s: switched to the successor session (%s)",
            self.spec.name,
            why,
            extra=self._log_fields(event="handover"),
        )

    # -- run-time changes --------------------------------------------------------------

    async def change(self, command: Command) -> None:
        """Change the subscriptions at run time; they then hold for every later session,
        make-before-break successor and restart.

        ``Subscribe`` returns once every topic it added is confirmed by the exchange
        (at once if it added none). Outside a session the plan changes and the call
        waits for the next session to confirm it (the caller owns the timeout:
        ``trio.fail_after``). ``Unsubscribe`` returns once the plan changed and the
        session was woken to write the requests (their replies confirm nothing).
        Books of the ``book`` channel follow: a symbol added gets a book that syncs, a
        symbol dropped loses its book, and a :class:`BookInvalid` (reason
        ``unsubscribed``) tells consumers if it was valid.

        Raises:
            ConfigError: the changed connection would not be valid (as in config);
                nothing changed.
            SubscriptionRefused: the exchange refused topics this call added. When it
                refused all of them, the channels, symbols and raw topics this call
                added are taken out of the plan again; otherwise the refused topics stay
                planned (``kept``), shown failed in stats.

        Cancellation: the change is made before the first checkpoint; a cancelled
        ``Subscribe`` stops waiting, and the topics stay planned.
        """
        proto = self.protocol
        before_spec = proto.spec
        before = set(proto.topics())
        now = trio.current_time()
        proto.send(command, now)  # ConfigError: nothing changed
        # Read before any checkpoint: concurrent calls add topics of their own.
        added = [topic for topic in proto.topics() if topic not in before]
        self.spec = proto.spec
        pending = self._handover
        if pending is not None and pending.proto is not None:
            pending.proto.send(command, now)
        self._wake_sessions(f"{type(command).__name__} at run time")
        await self._follow_books()
        await self._report_subscriptions()
        if isinstance(command, Unsubscribe) or not added:
            return
        refused = await self._confirmed(added)
        if not refused:
            return
        kept = len(refused) < len(added)
        if not kept:
            await self._undo(command, before_spec)
        raise SubscriptionRefused(self.spec.name, refused, kept=kept)

    async def _confirmed(self, topics: list[str]) -> dict[str, str]:
        """Wait until no topic of ``topics`` is pending; the refused ones' states."""
        while True:
            proto = self.protocol
            states = proto.subscriptions
            planned = set(proto.topics())
            waiting = False
            refused = {}
            for topic in topics:
                if topic not in planned:
                    continue  # unsubscribed meanwhile: nothing to wait for
                state = states.get(topic)
                if state is None or state == "pending":
                    waiting = True  # not asked yet (no session), or not answered yet
                    break
                if state.startswith("failed"):
                    refused[topic] = state
            if not waiting:
                return refused
            await self._subscriptions_changed.wait()

    async def _undo(self, command: Subscribe, before: ConnectionSpec) -> None:
        """Take what ``command`` added back out of the plan (no frames: its topics were
        all refused, so there is nothing to unsubscribe)."""
        undo = Unsubscribe(
            channels=tuple(c for c in command.channels if c not in before.channels),
            symbols=tuple(s for s in command.symbols if s not in before.symbols),
            raw=tuple(t for t in command.raw if t not in before.raw),
        )
        if undo.channels or undo.symbols or undo.raw:
            await self.change(undo)

    def _wake_sessions(self, why: str) -> None:
        """Make the current session (and a successor being built) write what the
        adapter has to send now rather than at its next frame."""
        if self._session is not None:
            self._session.wake(why)
        pending = self._handover
        if pending is not None and pending.successor is not None:
            pending.successor.wake(why)

    async def _follow_books(self) -> None:
        """The books follow the ``book`` channel's symbols (see :meth:`change`)."""
        books = self.books
        if books is None:
            return
        async with self._books_lock:
            await self._deliver_books(books.follow(self.protocol.book_topics(), self._wall_clock()))
        self._traffic.silent_gaps = frozenset(books.syncs)
        if books.pending:
            self._books_wanted.set()
        # Delivery goes through the books only while there are books to keep.
        self._recompose()

    def _recompose(self) -> None:
        session = self._session
        if session is not None and not session.retiring:
            session.deliver = self._deliver_for(session)

    # -- local books -----------------------------------------------------------------

    @property
    def _put(self) -> _Deliver:
        """The innermost delivery: through the books, if any, to the queue."""
        books = self.books
        return self.queue.put if books is None or not books.syncs else self._put_books

    async def _put_books(self, batch: Batch) -> None:
        books = self.books
        assert books is not None
        async with self._books_lock:
            out = books.process(batch)
            if out:
                if books.top is not None:
                    self._seal_tops(out)
                await self.queue.put(out)
        if books.notes:
            self._log_books(books)
        if books.pending:
            self._books_wanted.set()
        if books.changed:
            self._tops_wanted.set()

    def _log_books(self, books: BookKeeper) -> None:
        """One line per doubt (and its resync under way) and per resync done."""
        notes, books.notes = books.notes, []
        name = self.spec.name
        for symbol, text, doubt in notes:
            if doubt:
                rest = books.syncs[symbol].rule.rest_snapshot
                how = "fetching a REST snapshot" if rest else "subscribing its stream again"
                logger.warning(
                    "%s: book %s invalid (%s); %s",
                    name,
                    symbol,
                    text,
                    how,
                    extra=self._log_fields(event="book_invalid", symbol=symbol),
                )
            else:
                logger.info(
                    "%s: book %s %s",
                    name,
                    symbol,
                    text,
                    extra=self._log_fields(event="book_resynced", symbol=symbol),
                )

    def _seal_tops(self, out: Batch) -> None:
        """A top queued before a BookInvalid stays before it: the next top of that
        symbol queues behind the BookInvalid instead of replacing the stale one."""
        for message in out:
            if type(message) is BookInvalid:
                self.queue.seal(("book_top", message.symbol))

    async def _run_tops(self, books: BookKeeper, scope: trio.CancelScope) -> None:
        """Deliver the tops of changed books (``book_top``), at most one per symbol per
        ``book_interval``, each replacing its symbol's top while that one still waits in
        the queue, until ``scope`` is cancelled."""
        with scope:
            while True:
                async with self._books_lock:
                    tops, later = books.tops(trio.current_time())
                    for top in tops:
                        await self.queue.put_latest(("book_top", top.symbol), (top,))
                if tops:
                    continue
                wake = self._tops_wanted = trio.Event()
                with trio.move_on_at(later):
                    await wake.wait()

    async def _deliver_books(self, messages: list[Message]) -> None:
        """Deliver what the books said outside the stream (a REST snapshot, a loss):
        messages produced like the stream's, so they count in ``messages``."""
        if messages:
            self._traffic.messages += len(messages)
            await self.queue.put(tuple(messages))

    async def _books_lost(self) -> None:
        books = self.books
        assert books is not None
        async with self._books_lock:
            await self._deliver_books(books.lost("the connection was lost", self._wall_clock()))

    async def _run_books(self, books: BookKeeper, scope: trio.CancelScope) -> None:
        """Get each book that wants one a snapshot, until ``scope`` is cancelled (the
        session ended): a REST snapshot through the connection's client (paced by the
        venue's weight budget), or the book's stream subscribed again (paced like every
        request). Never raises: a failed snapshot is asked for again after a delay."""
        retry_at: dict[str, float] = {}
        with scope:
            while True:
                wanted = books.wanted()
                now = trio.current_time()
                for symbol, by_rest in wanted:
                    if by_rest:
                        await self._book_snapshot(books, symbol, retry_at)
                    else:
                        self._resubscribe_book(symbol, now)
                if books.pending:
                    continue
                due = [s for s, at in retry_at.items() if at <= trio.current_time()]
                for symbol in due:
                    del retry_at[symbol]
                    books.snapshot_failed(symbol)
                if due:
                    continue
                wake = self._books_wanted = trio.Event()
                with trio.move_on_at(min(retry_at.values(), default=math.inf)):
                    await wake.wait()

    def _resubscribe_book(self, symbol: str, now: float) -> None:
        proto = self.protocol
        if proto.resync_book(symbol, now) and self._session is not None:
            self._session.wake(f"book {symbol} subscribed again")

    async def _book_snapshot(
        self, books: BookKeeper, symbol: str, retry_at: dict[str, float]
    ) -> None:
        """One REST snapshot for ``symbol``'s book; on failure, its retry time."""
        client = self.rest
        proto = self.protocol
        call = proto.book_snapshot_call(symbol)
        if client is None or call is None:
            # OKX stopped sending its snapshot and this connection has no REST API.
            if self._book_failures.setdefault(symbol, 0) == 0:
                self._book_failures[symbol] = 1
                logger.warning(
                    "%s: book %s needs a REST snapshot (the stream sent none) and the "
                    "connection has no REST API: it stays syncing (set [connections.%s.rest] "
                    "base_url)",
                    self.spec.name,
                    symbol,
                    self.spec.name,
                    extra=self._log_fields(event="book_snapshot_failed", symbol=symbol),
                )
            return
        try:
            body = await client.get(call.path, params=dict(call.params))
            snapshot = proto.book_snapshot(symbol, body, self._wall_clock())
        except Exception as exc:  # a snapshot never ends the session; ask again later
            failures = self._book_failures[symbol] = self._book_failures.get(symbol, 0) + 1
            delay = min(DEFAULT_BOOK_RETRY_MAX, DEFAULT_BOOK_RETRY * 2.0 ** (failures - 1))
            retry_at[symbol] = trio.current_time() + delay
            (logger.warning if failures == 1 else logger.debug)(
                "%s: book snapshot of %s (%s) failed: %s; asking again in %.0f s",
                self.spec.name,
                symbol,
                call.path,
                _rest_reason(exc),
                delay,
                extra=self._log_fields(event="book_snapshot_failed", symbol=symbol),
            )
            return
        self._book_failures.pop(symbol, None)
        async with self._books_lock:
            await self._deliver_books(books.take_snapshot(snapshot))
        if books.notes:
            self._log_books(books)

    # -- REST ------------------------------------------------------------------------

    async def _run_rest(self, client: RestClient, scope: trio.CancelScope) -> None:
        """Make the adapter's REST calls as they fall due, until ``scope`` is cancelled.

        Never raises (a failure is the adapter's to schedule again) and never touches a
        socket of the session. Calls go one at a time: they are few and small, and the
        server time is measured best on its own.
        """
        with scope:
            while True:
                proto = self.protocol
                for call in proto.rest_requests(trio.current_time()):
                    await self._rest_call(client, proto, call)
                await trio.sleep_until(proto.rest_deadline())

    async def _rest_call(self, client: RestClient, proto: ExchangeProtocol, call: RestCall) -> None:
        """One call: hand its answer or failure to ``proto``, report, log once."""
        name = self.spec.name
        wall = self._wall_clock
        sent_trio, sent_at = trio.current_time(), wall()
        # Wall clock minus Trio clock, to read Trio times as wall times.
        wall_minus_trio = sent_at - sent_trio
        wire = WireTimes()
        try:
            # The server time is read against the moments the request went out and the
            # answer came back on the wire (not the connect, not a wait for a slot:
            # either would count as round trip and skew the offset by half of it).
            body = await client.get(
                call.path,
                params=dict(call.params),
                max_wait=0.0 if call.purpose == TIME else math.inf,
                wire=wire,
            )
            received_trio, received_at = trio.current_time(), wall()
            if wire.sent is not None and wire.answered is not None:
                sent_at = wire.sent + wall_minus_trio
                received_at = wire.answered + wall_minus_trio
            problems = proto.receive_rest(
                call, body, received_trio, sent_at=sent_at, received_at=received_at
            )
        except Exception as exc:  # REST never ends the session; anything is a failure
            delay, failures = proto.rest_failed(call, trio.current_time())
            if call.purpose not in self._rest_failing:
                self._rest_failing.add(call.purpose)
                logger.warning(
                    "%s: REST %s (%s) failed: %s; trying again in %.0f s (the WebSocket "
                    "session is not affected)",
                    name,
                    call.purpose,
                    call.path,
                    _rest_reason(exc),
                    delay,
                    extra=self._log_fields(event="rest_failed", purpose=call.purpose, delay=delay),
                )
            else:
                logger.debug(
                    "%s: REST %s failed again (%d in a row)",
                    name,
                    call.purpose,
                    failures,
                    extra=self._log_fields(event="rest_failed", purpose=call.purpose),
                )
            await self._report_rest(client)
            return
        if call.purpose in self._rest_failing:
            self._rest_failing.discard(call.purpose)
            logger.info(
                "%s: REST %s works again",
                name,
                call.purpose,
                extra=self._log_fields(event="rest_recovered", purpose=call.purpose),
            )
        if call.purpose == TIME and proto.clock_offset is not None:
            budget = client.limiter.budget(client.limiter.limits.default[0])
            if isinstance(budget, WeightWindow):
                # Venue clock minus Trio clock: the venue's windows start on its minute.
                # The window counted so far is the one the venue is in now: it keeps
                # its count under its new index.
                current = budget.index(received_trio)
                budget.offset = proto.clock_offset + wall_minus_trio
                if budget.frontier == current:
                    budget.frontier = budget.index(received_trio)
        for problem in problems:
            logger.warning("%s: %s", name, problem, extra=self._log_fields(event="rest_problem"))
        if problems:
            await self._report_subscriptions()
            if self._session is not None:
                self._session.wake("REST changed the subscriptions")
        await self._report_rest(client)

    async def _report_rest(self, client: RestClient) -> None:
        limiter = client.limiter
        now = trio.current_time()
        budget = limiter.budget(limiter.limits.default[0])
        await self._registry.report(
            RestInfo(
                connection=self.spec.name,
                clock_offset=self.protocol.clock_offset,
                used_weight=budget.used if isinstance(budget, WeightWindow) else None,
                held_for=max(0.0, limiter.hold_until - now) if limiter.hold_until > now else None,
                hold_reason=limiter.hold_reason if limiter.hold_until > now else "",
                failing=tuple(sorted(self._rest_failing)),
            )
        )

    async def _report_subscriptions(self) -> None:
        changed, self._subscriptions_changed = self._subscriptions_changed, trio.Event()
        changed.set()
        states = tuple(self.protocol.subscriptions.items())
        if states:
            await self._registry.report(
                SubscriptionStates(connection=self.spec.name, states=states)
            )

    async def _set_state(self, state: ConnectionState) -> None:
        await self._registry.report(
            StateChanged(connection=self.spec.name, state=state, at=trio.current_time())
        )


def _rest_reason(exc: Exception) -> str:
    """A REST failure in one line (a rate limit says how long it waits)."""
    if isinstance(exc, RateLimited):
        return f"rate limited ({exc.reason}) for {exc.wait:.1f} s"
    return (
        f"{type(exc).__name__}: {exc}" if not str(exc).startswith(type(exc).__name__) else str(exc)
    )
