"""The ConnectionActor: one exchange connection, one session per ``run()``.

Theory of operation: the supervisor keeps one actor per configured connection for the
whole life of the supervisor and calls :meth:`ConnectionActor.run` once per session:

    permit (registry paces connects per host)
    -> connect (connector: TCP/TLS or a fake) -> WebSocket handshake
    -> adapter.start_session (subscribe frames)
    -> pump: frames in -> adapter -> batches out, until the session ends
    -> close (close frame sent, bounded by ``close_timeout``, even when cancelled)

A session ends by raising a typed error from :mod:`actors._errors`, or by returning when
the exchange closed the connection normally (code 1000). The actor decides nothing about
restarts: that is the supervisor's job. It does own everything that must survive a
restart: the adapter (and so the subscriptions), the outbox toward the consumer, and which
kinds of malformed frame were already logged.

The liveness watchdog is the receive deadline itself: ``stale_after`` counts only time
spent waiting on the socket, so a consumer that blocks the outbox never makes a healthy
feed look stale.

Make-before-break: when the exchange announces that it will close the connection
(``ReconnectRequested``: Binance ``serverShutdown``, OKX 64008), the current session keeps
delivering while a successor session (a fresh adapter on a new socket) connects and
subscribes, buffering what it receives. Once the successor is live, the old session
stops reading, finishes delivering what it holds and closes cleanly; the successor's
buffer is then delivered without what the old session already delivered (trades by
trade id, book deltas by sequence until a new snapshot), and it carries on. If the
successor cannot be built, the old session goes on until the exchange closes it, and the
supervisor then reconnects at once (``ServerClosing``).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from actors._errors import ConnectionLost, FeedStale, ServerClosing
from actors._outbox import Outbox
from actors._spec import ConnectionSpec
from actors.exchanges._base import AdapterState, ExchangeProtocol
from actors.exchanges._messages import (
    Batch,
    Event,
    HeartbeatMissed,
    MalformedFrame,
    ReconnectRequested,
    SequenceGap,
    Subscribed,
    SubscriptionFailed,
)
from actors.exchanges.sdk import default_mark
from actors.handover import ContinuityLedger
from actors.net._connect import Connector, redact_url, split_ws_url
from actors.net.websocket import NORMAL_CLOSURE, ClosedNormally, WebSocket, open_websocket
from actors.registry import (
    Connected,
    ConnectionState,
    RegistryClient,
    StateChanged,
    SubscriptionStates,
    Traffic,
)

__all__ = ["DEFAULT_FLUSH_INTERVAL", "DEFAULT_HANDOVER_WAIT", "ConnectionActor"]

logger = logging.getLogger("marketprism.connection")

#: Seconds between traffic reports to the registry while frames flow; stats lag by at
#: most this much.
DEFAULT_FLUSH_INTERVAL: Final = 0.25
#: Seconds a live make-before-break successor waits for the old session to deliver up
#: to where the successor's buffer starts, before switching anyway.
DEFAULT_HANDOVER_WAIT: Final = 10.0


class _Session:
    """One open WebSocket with its own adapter; owned by the task that pumps it."""

    def __init__(
        self,
        proto: ExchangeProtocol,
        ws: WebSocket,
        deliver: Callable[[Batch], Awaitable[None]],
    ) -> None:
        self.proto = proto
        self.ws = ws
        #: Where batches go: the outbox, or a successor's buffer before its handover.
        self.deliver = deliver
        #: Set by a successor's handover: stop reading, finish delivering, close.
        self.retiring = False
        #: The current receive wait, cancelled to wake a retiring session at once.
        self.wait: trio.CancelScope | None = None
        #: Set once the session's socket is closed.
        self.closed = trio.Event()

    def wake(self, why: str) -> None:
        """Interrupt the current receive wait (the pump re-checks its state)."""
        if self.wait is not None:
            self.wait.cancel(reason=why)

    def retire(self) -> None:
        self.retiring = True
        self.wake("handed over to the successor session")


class _Handover:
    """Make-before-break while a successor session is being built.

    The switch waits until the old session has delivered up to where the successor's
    buffer starts (:class:`~actors.handover.ContinuityLedger`), so that nothing falls
    between them, or until ``DEFAULT_HANDOVER_WAIT`` passes after the successor went
    live. The successor's buffer is then delivered minus what the old session already
    delivered.
    """

    def __init__(self, previous: _Session) -> None:
        self.previous = previous
        self.successor: _Session | None = None
        self.done = trio.Event()
        self.succeeded = False
        #: trio time the successor's subscriptions were confirmed, or None.
        self.ready_at: float | None = None
        self.ledger = ContinuityLedger(default_mark)
        self.buffer: list[Batch] = []

    async def track(self, put: Callable[[Batch], Awaitable[None]], batch: Batch) -> None:
        """Deliver one of the old session's batches and remember where it got to.

        The marks are set before the (possibly blocking) put: a switch waits for the old
        session to finish, so this batch is delivered before the successor's buffer.
        """
        self.ledger.delivered(batch)
        if self.successor is not None and self.ready_at is not None and self.caught_up():
            self.successor.wake("the old session caught up")
        await put(batch)

    async def hold(self, batch: Batch) -> None:
        """Buffer one of the successor's batches until the switch."""
        self.buffer.append(batch)
        self.ledger.buffered(batch)
        await trio.lowlevel.checkpoint()

    def caught_up(self) -> bool:
        """Has the old session delivered everything up to the successor's buffer?"""
        return self.ledger.caught_up()

    @property
    def passed(self) -> bool:
        """The successor has moved past everything the old session delivered."""
        return self.ledger.passed

    async def deliver_unseen(self, put: Callable[[Batch], Awaitable[None]], batch: Batch) -> None:
        """The successor's delivery until it has passed the old session's last ids."""
        kept = self.ledger.unseen(batch)
        if kept:
            await put(kept)


class ConnectionActor:
    """Owns one connection's socket, adapter and outbox across its sessions.

    Args:
        spec: the connection.
        new_adapter: builds a fresh adapter for ``spec.exchange``; called once here (that
            adapter is kept across sessions) and once per make-before-break successor,
            so both are built the same way.
        outbox: the queue toward the consumer (kept across sessions).
        registry: where state changes and traffic go.
        connector: opens the stream under the WebSocket.
        close_timeout: seconds the closing handshake may take.
    """

    def __init__(
        self,
        spec: ConnectionSpec,
        *,
        new_adapter: Callable[[], ExchangeProtocol],
        outbox: Outbox,
        registry: RegistryClient,
        connector: Connector,
        close_timeout: float,
    ) -> None:
        self.spec = spec
        self._new_adapter = new_adapter
        self.protocol = new_adapter()
        self.outbox = outbox
        self._registry = registry
        self._connector = connector
        self._close_timeout = close_timeout
        #: trio time the current/last session's subscriptions were confirmed, or None.
        self.live_since: float | None = None
        self._logged_kinds: set[str] = set()
        # Traffic not yet reported to the registry.
        self._frames = self._messages = self._bytes = self._malformed = self._gaps = 0
        self._dropped_reported = 0
        self._last_frame_at = 0.0
        # Per incarnation: the nursery holding its sessions, and a handover under way.
        self._nursery: trio.Nursery | None = None
        self._handover: _Handover | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run one session: connect, subscribe, receive until it ends.

        ``task_status.started()`` is called once the subscriptions are confirmed.

        Returns:
            When the exchange closed the connection normally (close code 1000).

        Raises:
            ConnectError: TCP/TLS failed, or connect + handshake took longer than
                ``connect_timeout``.
            HandshakeRejected: the server refused the upgrade with an HTTP status.
            ConnectionLost: the connection broke or was closed with a code other than
                1000.
            FeedStale: no frame for ``stale_after`` seconds.

        Cancellation: the WebSocket is closed with code 1000 on the way out; the closing
        handshake is shielded but bounded by ``close_timeout``.
        """
        self.live_since = None
        url = self.protocol.url
        _, host, _, _ = split_ws_url(url)
        await self._set_state(ConnectionState.CONNECTING)
        await self._registry.permit(host, self.protocol.connect_rate)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._handover = None
                ended: ConnectionLost | None = None
                try:
                    await self._run_session(nursery, self.protocol, self.outbox.put, task_status)
                except ConnectionLost as exc:
                    if self._handover is None or isinstance(exc, FeedStale):
                        raise
                    ended = exc
                handover = self._handover
                if handover is not None:
                    # The session ended after an announcement (closed as announced, or
                    # handed over): wait for the successor, which then goes on in this
                    # nursery; without one, reconnect at once.
                    await handover.done.wait()
                    if not handover.succeeded:
                        raise ServerClosing(
                            "the exchange closed the connection as announced and no "
                            "successor session could be opened"
                            + (f": {ended}" if ended is not None else ""),
                            code=ended.code if ended is not None else NORMAL_CLOSURE,
                            reason=ended.reason if ended is not None else "",
                        ) from ended
        finally:
            self._nursery = None
            self._handover = None
            with trio.CancelScope(shield=True), trio.move_on_after(self._close_timeout):
                await self._flush(trio.current_time())

    async def _run_session(
        self,
        nursery: trio.Nursery,
        proto: ExchangeProtocol,
        deliver: Callable[[Batch], Awaitable[None]],
        task_status: trio.TaskStatus[None] | None,
        handover: _Handover | None = None,
    ) -> None:
        """Open a session for ``proto``, pump it until it ends, then close it."""
        session: _Session | None = None
        try:
            async with open_websocket(
                nursery,
                proto.url,
                connector=self._connector,
                connect_timeout=self.spec.connect_timeout,
                max_message_size=self.spec.max_message_size,
                close_timeout=self._close_timeout,
            ) as ws:
                await self._registry.report(
                    Connected(connection=self.spec.name, at=trio.current_time())
                )
                logger.info("%s: connected to %s", self.spec.name, redact_url(proto.url))
                session = _Session(proto, ws, deliver)
                if handover is not None:
                    handover.successor = session
                try:
                    if task_status is not None:
                        await self._set_state(ConnectionState.SUBSCRIBING)
                    await self._pump(session, task_status, handover)
                except FeedStale:
                    # A silent peer would not answer a closing handshake either: drop
                    # the socket instead of waiting for it.
                    await ws.abort()
                    raise
        finally:
            if session is not None:
                session.proto.end_session()
                session.closed.set()
                handover = self._handover
                if handover is not None and handover.previous is session and handover.successor:
                    handover.successor.wake("the old session ended")

    def _on_notice(self, session: _Session, notice: ReconnectRequested) -> None:
        if self._nursery is None or session.proto is not self.protocol:
            # A successor told before its handover that it will be closed too: give it
            # up; the current session goes on.
            raise ServerClosing(f"the exchange announced a disconnect: {notice.reason}")
        pending = self._handover
        if session.retiring or (pending is not None and not pending.done.is_set()):
            return  # a successor is already on its way
        logger.info(
            "%s: %s; opening a successor session before closing this one",
            self.spec.name,
            notice.reason,
        )
        handover = self._handover = _Handover(session)
        put = session.deliver
        session.deliver = functools.partial(handover.track, put)
        self._nursery.start_soon(self._successor, self._nursery, handover, notice)

    async def _successor(
        self, nursery: trio.Nursery, handover: _Handover, notice: ReconnectRequested
    ) -> None:
        # A fresh adapter for the new socket, built like the first one (so it draws on
        # the same shared request budget).
        proto = self._new_adapter()
        try:
            await self._registry.permit(split_ws_url(proto.url)[1], proto.connect_rate)
            await self._run_session(nursery, proto, handover.hold, None, handover)
        except Exception as exc:
            if handover.succeeded:
                raise  # the successor is the connection now: its end is the actor's
            self._abandon(handover, exc)
        finally:
            if not handover.done.is_set():
                self._abandon(handover, "it closed before taking over")

    def _abandon(self, handover: _Handover, why: BaseException | str) -> None:
        logger.warning(
            "%s: could not open a successor session (%s); the current session goes on "
            "until the exchange closes it",
            self.spec.name,
            why,
        )
        handover.done.set()

    async def _hand_over(self, session: _Session, why: str) -> None:
        """``session`` (the successor) is live: retire the old one and take its place."""
        handover = self._handover
        assert handover is not None
        previous = handover.previous
        previous.retire()
        await previous.closed.wait()
        put = self.outbox.put
        buffer, handover.buffer = handover.buffer, []
        for batch in buffer:
            await handover.deliver_unseen(put, batch)
        # Until the successor passes the old session's last ids (it may lag behind the
        # old one), keep filtering for a while; then deliver directly.
        filter_until = trio.current_time() + DEFAULT_HANDOVER_WAIT

        async def deliver(batch: Batch) -> None:
            if handover.passed or trio.current_time() >= filter_until:
                session.deliver = put
                await put(batch)
            else:
                await handover.deliver_unseen(put, batch)

        session.deliver = put if handover.passed else deliver
        self.protocol = session.proto
        handover.succeeded = True
        self._handover = None
        handover.done.set()
        await self._report_subscriptions()
        if self.live_since is None:
            # The old session never got live; the successor is, from now on.
            self.live_since = trio.current_time()
            await self._set_state(ConnectionState.LIVE)
        logger.info("%s: switched to the successor session (%s)", self.spec.name, why)

    async def _pump(
        self,
        session: _Session,
        task_status: trio.TaskStatus[None] | None,
        handover: _Handover | None = None,
    ) -> None:
        """Receive, decode and deliver until the session ends.

        ``handover`` is given for a make-before-break successor: it must go live
        within ``stale_after``, then takes over once the old session caught up (or
        after ``DEFAULT_HANDOVER_WAIT``).
        """
        proto = session.proto
        ws = session.ws
        stale_after = self.spec.stale_after
        receive = ws.receive
        live = False
        now = trio.current_time()
        last_frame = now
        next_flush = math.inf
        # A successor must be confirmed within stale_after, and switches over at the
        # latest DEFAULT_HANDOVER_WAIT after that.
        switch_by = now + stale_after if handover is not None else math.inf
        proto.start_session(now)
        if task_status is not None:
            await self._report_subscriptions()
        try:
            while not session.retiring:
                if handover is not None and handover.ready_at is not None:
                    now = trio.current_time()
                    if handover.caught_up():
                        why = "the old session caught up: no gap"
                    elif handover.previous.closed.is_set():
                        why = "the old session ended"
                    elif now >= switch_by:
                        why = (
                            f"the old session did not catch up within "
                            f"{DEFAULT_HANDOVER_WAIT:g} s: a gap is possible"
                        )
                    else:
                        why = ""
                    if why:
                        await self._hand_over(session, why)
                        handover = None
                        switch_by = math.inf
                        last_frame = trio.current_time()  # the switch is not silence
                for frame in proto.frames_to_send():
                    await ws.send(frame)
                events = proto.events()
                if events:
                    await self._handle(events, session)
                if not live and proto.state is AdapterState.LIVE:
                    live = True
                    if handover is not None:
                        handover.ready_at = trio.current_time()
                        switch_by = handover.ready_at + DEFAULT_HANDOVER_WAIT
                        continue  # maybe switch at once
                    if task_status is not None:
                        self.live_since = trio.current_time()
                        await self._set_state(ConnectionState.LIVE)
                        task_status.started()
                stale_at = last_frame + stale_after
                wake_at = min(stale_at, proto.deadline(), next_flush, switch_by)
                with trio.move_on_at(wake_at) as waited:
                    session.wait = waited
                    data = await receive()
                session.wait = None
                now = trio.current_time()
                if waited.cancelled_caught:
                    if session.retiring:
                        break
                    if handover is not None and now >= switch_by and handover.ready_at is None:
                        raise FeedStale(
                            f"the successor session's subscriptions were not confirmed "
                            f"within {stale_after:g} s",
                            code=None,
                        )
                    if now >= stale_at and ws.last_received > last_frame:
                        # Only control frames (an exchange's WebSocket pings) arrived:
                        # the connection is alive, so the stale clock restarts there.
                        last_frame = ws.last_received
                    elif now >= stale_at:
                        raise FeedStale(
                            f"stale: no frame for {stale_after:g} s from {redact_url(proto.url)}",
                            code=None,
                        )
                    if now >= next_flush:
                        await self._flush(now)
                        next_flush = math.inf
                    proto.tick(now)
                    continue
                last_frame = now
                self._frames += 1
                self._bytes += len(data)
                self._last_frame_at = now
                try:
                    batch = proto.receive_frame(data, now, time.time())
                except Exception as exc:
                    # Adapters report bad frames as MalformedFrame; anything that still
                    # escapes (a hostile frame deep enough to hit RecursionError, an
                    # adapter bug) is counted and logged the same way, never fatal.
                    batch = ()
                    self._malformed += 1
                    sample = data if isinstance(data, str) else data.decode("utf-8", "replace")
                    self._log_malformed(
                        MalformedFrame(
                            kind=f"adapter raised {type(exc).__name__}",
                            detail=str(exc),
                            sample=sample[:200],
                        )
                    )
                if batch:
                    self._messages += len(batch)
                    await session.deliver(batch)
                    # Time spent blocked on the consumer is not silence from the
                    # exchange: the stale clock restarts once we can read again.
                    last_frame = trio.current_time()
                if next_flush == math.inf:
                    next_flush = now + DEFAULT_FLUSH_INTERVAL
                elif now >= next_flush:
                    await self._flush(now)
                    next_flush = math.inf
        except ClosedNormally:
            logger.info("%s: the exchange closed the connection normally", self.spec.name)

    async def _handle(self, events: list[Event], session: _Session) -> None:
        name = self.spec.name
        subscriptions_changed = False
        for event in events:
            if isinstance(event, MalformedFrame):
                self._malformed += 1
                self._log_malformed(event)
            elif isinstance(event, Subscribed):
                subscriptions_changed = True
            elif isinstance(event, SubscriptionFailed):
                subscriptions_changed = True
                logger.error(
                    "%s: the exchange refused subscription %r: %s %s (check channels/symbols)",
                    name,
                    event.topic,
                    event.code,
                    event.message,
                )
            elif isinstance(event, SequenceGap):
                self._gaps += 1
                logger.warning(
                    "%s: %s book sequence gap: expected to continue from %d, got %d",
                    name,
                    event.symbol,
                    event.expected,
                    event.received,
                )
            elif isinstance(event, HeartbeatMissed):
                raise FeedStale(f"heartbeat missed: {event.detail}")
            elif isinstance(event, ReconnectRequested):
                self._on_notice(session, event)
        if subscriptions_changed and session.proto is self.protocol:
            await self._report_subscriptions()

    async def _report_subscriptions(self) -> None:
        states = tuple(self.protocol.subscriptions.items())
        if states:
            await self._registry.report(
                SubscriptionStates(connection=self.spec.name, states=states)
            )

    def _log_malformed(self, event: MalformedFrame) -> None:
        if event.kind in self._logged_kinds:
            return
        self._logged_kinds.add(event.kind)
        logger.warning(
            "%s: dropped a malformed frame (%s: %s): %r; further frames of this kind are "
            "counted in stats, not logged",
            self.spec.name,
            event.kind,
            event.detail,
            event.sample,
        )

    async def _set_state(self, state: ConnectionState) -> None:
        await self._registry.report(
            StateChanged(connection=self.spec.name, state=state, at=trio.current_time())
        )

    async def _flush(self, now: float) -> None:
        dropped = self.outbox.dropped - self._dropped_reported
        if not (self._frames or self._malformed or dropped or self._gaps):
            return
        event = Traffic(
            connection=self.spec.name,
            frames=self._frames,
            messages=self._messages,
            bytes=self._bytes,
            dropped=dropped,
            malformed=self._malformed,
            gaps=self._gaps,
            last_frame_at=self._last_frame_at,
            at=now,
        )
        self._frames = self._messages = self._bytes = self._malformed = self._gaps = 0
        self._dropped_reported += dropped
        try:
            await self._registry.report(event)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            logger.debug("%s: registry gone; traffic counts not reported", self.spec.name)
