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
subscribes, buffering what it receives. Once the successor is live, the old session
stops reading, finishes delivering what it holds and closes cleanly; the successor's
buffer is then delivered without what the old session already delivered (the
continuity ledger, :mod:`actors.handover`, decides), and it carries on. If the
successor cannot be built, the old session goes on until the exchange closes it, and
the supervisor then reconnects at once (``ServerClosing``).

Who runs what: ``run_session()`` runs the first session itself and starts one task, the
successor runner, which owns the nursery its successors run in. A session that hears a
notice sends a request to the runner over a channel (each session holds its own clone
of the send end) instead of spawning anything. The connection ends when the session
that is the connection at the time ends with nothing pending. Each session opens a
small nursery of its own for its socket's reader, so no nursery is handed between
tasks.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from actors._errors import ConnectionLost, FeedStale, ServerClosing
from actors._spec import ConnectionSpec
from actors.consumer_queue import ConsumerQueue
from actors.exchanges.messages import Batch, ReconnectRequested
from actors.exchanges.sdk.protocol import AdapterState, ExchangeProtocol
from actors.handover import ContinuityLedger
from actors.net import Connector, redact_url, split_ws_url
from actors.net.websocket import NORMAL_CLOSURE, ClosedNormally, open_websocket
from actors.registry import (
    Connected,
    ConnectionState,
    RegistryClient,
    StateChanged,
    SubscriptionStates,
)
from actors.session import Session, TrafficCounter

__all__ = ["DEFAULT_HANDOVER_WAIT", "ConnectionActor"]

logger = logging.getLogger("marketprism.connection")

#: Seconds a live make-before-break successor waits for the old session to deliver up
#: to where the successor's buffer starts, before switching anyway.
DEFAULT_HANDOVER_WAIT: Final = 10.0


class _Handover:
    """Make-before-break while a successor session is being built.

    The switch waits until the old session has delivered up to where the successor's
    buffer starts (:class:`~actors.handover.ContinuityLedger`), so that nothing falls
    between them, or until ``DEFAULT_HANDOVER_WAIT`` passes after the successor went
    live. The successor's buffer is then delivered minus what the old session already
    delivered.
    """

    def __init__(self, previous: Session, requests: trio.MemorySendChannel[_Handover]) -> None:
        self.previous = previous
        #: The successor's own handle on the successor runner (for when it is the
        #: connection and hears a notice in turn); the successor's task closes it.
        self.requests = requests
        self.successor: Session | None = None
        self.done = trio.Event()
        self.succeeded = False
        #: trio time the successor's subscriptions were confirmed, or None.
        self.ready_at: float | None = None
        # The adapter knows which of its messages carry an order (ExchangeProtocol.mark).
        self.ledger = ContinuityLedger(previous.proto.mark)
        self.buffer: list[Batch] = []

    async def track(self, put: Callable[[Batch], Awaitable[None]], batch: Batch) -> None:
        """Deliver one of the old session's batches and remember where it got to.

        The marks are set before the (possibly blocking) put: a switch waits for the old
        session to finish, so this batch is delivered before the successor's buffer.
        """
        self.ledger.delivered(batch)
        if self.successor is not None and self.ready_at is not None and self.ledger.caught_up():
            self.successor.wake("the old session caught up")
        await put(batch)

    async def hold(self, batch: Batch) -> None:
        """Buffer one of the successor's batches until the switch."""
        self.buffer.append(batch)
        self.ledger.buffered(batch)
        await trio.lowlevel.checkpoint()

    async def deliver_unseen(self, put: Callable[[Batch], Awaitable[None]], batch: Batch) -> None:
        """The successor's delivery until it has passed the old session's last ids."""
        kept = self.ledger.unseen(batch)
        if kept:
            await put(kept)


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
        self._traffic = TrafficCounter(spec.name, registry, queue)
        #: The handover under way (or the last one, failed), per incarnation.
        self._handover: _Handover | None = None

    @property
    def url(self) -> str:
        """The URL the connection opens (may hold credentials: log it redacted)."""
        return self.protocol.url

    async def run_session(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run one session: connect, subscribe, receive until it ends.

        ``task_status.started()`` is called once the subscriptions are confirmed. A
        make-before-break handover happens inside one ``run_session()``: it goes on with the
        successor.

        Returns:
            When the exchange closed the connection normally (close code 1000).

        Raises:
            ConnectError: TCP/TLS failed, or connect + handshake took longer than
                ``connect_timeout``.
            HandshakeRejected: the server refused the upgrade with an HTTP status.
            ConnectionLost: the connection broke or was closed with a code other than
                1000.
            FeedStale: no frame for ``stale_after`` seconds, or a heartbeat missed.
            ServerClosing: the exchange closed the connection as announced and no
                successor session could take over.

        Cancellation: every open WebSocket is closed with code 1000 on the way out; the
        closing handshake is shielded but bounded by ``close_timeout``. The traffic
        counted so far is reported, bounded the same way.
        """
        self.live_since = None
        self._handover = None
        _, host, _, _ = split_ws_url(self.protocol.url)
        await self._set_state(ConnectionState.CONNECTING)
        await self._registry.permit(host, self.protocol.connect_rate)
        try:
            async with trio.open_nursery() as nursery:
                requests, incoming = trio.open_memory_channel[_Handover](1)
                nursery.start_soon(self._run_successors, incoming)
                await self._run_session(self.protocol, requests, task_status=task_status)
        finally:
            self._handover = None
            with trio.CancelScope(shield=True), trio.move_on_after(self._close_timeout):
                await self._traffic.flush(trio.current_time())

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
        *,
        handover: _Handover | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """One session from connect to close: the connection's own, or ``handover``'s
        successor (which becomes the connection if it takes over).

        ``requests`` is this session's handle on the successor runner; it is closed on
        the way out. After an announced disconnect the session waits for its successor
        once its socket is closed, and raises ServerClosing if none took over.
        """
        ended: ConnectionLost | None = None
        session: Session | None = None
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
                    ) as ws,
                ):
                    now = trio.current_time()
                    await self._registry.report(Connected(connection=self.spec.name, at=now))
                    logger.info("%s: connected to %s", self.spec.name, redact_url(ws.url))
                    session = Session(
                        self.spec.name,
                        proto,
                        ws,
                        stale_after=self.spec.stale_after,
                        traffic=self._traffic,
                        deliver=self.queue.put if handover is None else handover.hold,
                        on_subscriptions=self._on_subscriptions,
                        on_notice=functools.partial(self._on_notice, requests),
                    )
                    try:
                        if handover is None:
                            await self._pump_first(session, task_status)
                        else:
                            handover.successor = session
                            await self._pump_successor(session, handover)
                    except FeedStale:
                        # A silent peer would not answer a closing handshake either:
                        # drop the socket instead of waiting for it.
                        await ws.abort()
                        raise
                    except ClosedNormally:
                        logger.info(
                            "%s: the exchange closed the connection normally", self.spec.name
                        )
                    except ConnectionLost as exc:
                        if self._announced_by(session) is None:
                            raise
                        ended = exc  # closed as announced: see below
            finally:
                if session is not None:
                    proto.end_session()
                    session.closed.set()
                    pending = self._announced_by(session)
                    if pending is not None and pending.successor is not None:
                        pending.successor.wake("the old session ended")
            pending = self._announced_by(session) if session is not None else None
            if pending is not None:
                # Ended after an announcement (closed as announced, or handed over):
                # wait for the successor, which then goes on; without one, reconnect
                # at once.
                await pending.done.wait()
                if not pending.succeeded:
                    raise ServerClosing(
                        "the exchange closed the connection as announced and no "
                        "successor session could be opened"
                        + (f": {ended}" if ended is not None else ""),
                        code=ended.code if ended is not None else NORMAL_CLOSURE,
                        reason=ended.reason if ended is not None else "",
                    ) from ended

    def _announced_by(self, session: Session) -> _Handover | None:
        handover = self._handover
        return handover if handover is not None and handover.previous is session else None

    async def _pump_first(self, session: Session, task_status: trio.TaskStatus[None]) -> None:
        """The connection's own session: subscribe, go live, pump until handed over."""
        proto = session.proto
        await self._set_state(ConnectionState.SUBSCRIBING)
        session.start()
        await self._report_subscriptions()
        await session.pump(until=lambda: session.retiring or proto.state is AdapterState.LIVE)
        if session.retiring:
            return
        self.live_since = trio.current_time()
        await self._set_state(ConnectionState.LIVE)
        task_status.started()
        await session.pump(until=lambda: session.retiring)

    async def _pump_successor(self, session: Session, handover: _Handover) -> None:
        """Confirm within ``stale_after``, buffer until the switch, then be the connection."""
        proto = session.proto
        previous = handover.previous
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
            until=lambda: handover.ledger.caught_up() or previous.closed.is_set(),
            by=handover.ready_at + DEFAULT_HANDOVER_WAIT,
        )
        if handover.ledger.caught_up():
            why = "the old session caught up: no gap"
        elif previous.closed.is_set():
            why = "the old session ended"
        else:
            why = (
                f"the old session did not catch up within {DEFAULT_HANDOVER_WAIT:g} s: "
                "a gap is possible"
            )
        await self._hand_over(session, handover, why)
        session.last_frame = trio.current_time()  # the switch is not silence
        await session.pump(until=lambda: session.retiring)

    async def _on_subscriptions(self, session: Session) -> None:
        if session.proto is self.protocol:
            await self._report_subscriptions()

    async def _on_notice(
        self,
        requests: trio.MemorySendChannel[_Handover],
        session: Session,
        notice: ReconnectRequested,
    ) -> None:
        if session.proto is not self.protocol:
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
        handover = self._handover = _Handover(session, requests.clone())
        session.deliver = functools.partial(handover.track, session.deliver)
        await requests.send(handover)

    async def _successor(self, handover: _Handover) -> None:
        # A fresh adapter for the new socket, built like the first one (so it draws on
        # the same shared request budget), for what the connection subscribes now.
        proto = self._new_adapter(self.protocol.spec)
        try:
            await self._registry.permit(split_ws_url(proto.url)[1], proto.connect_rate)
            await self._run_session(proto, handover.requests, handover=handover)
        except Exception as exc:
            if handover.succeeded:
                raise  # the successor is the connection now: its end is the actor's
            self._abandon(handover, exc)
        finally:
            handover.requests.close()  # if the session never opened
            if not handover.done.is_set():
                self._abandon(handover, "it closed before taking over")

    def _abandon(self, handover: _Handover, why: BaseException | str) -> None:
        while isinstance(why, BaseExceptionGroup) and len(why.exceptions) == 1:
            why = why.exceptions[0]  # the session's own nursery wrapped it
        logger.warning(
            "%s: could not open a successor session (%s); the current session goes on "
            "until the exchange closes it",
            self.spec.name,
            why,
        )
        handover.done.set()

    async def _hand_over(self, session: Session, handover: _Handover, why: str) -> None:
        """``session`` (the successor) is live: retire the old one and take its place."""
        previous = handover.previous
        previous.retire()
        await previous.closed.wait()
        put = self.queue.put
        buffer, handover.buffer = handover.buffer, []
        for batch in buffer:
            await handover.deliver_unseen(put, batch)
        # Until the successor passes the old session's last ids (it may lag behind the
        # old one), keep filtering for a while; then deliver directly.
        filter_until = trio.current_time() + DEFAULT_HANDOVER_WAIT

        async def deliver(batch: Batch) -> None:
            if handover.ledger.passed or trio.current_time() >= filter_until:
                session.deliver = put
                await put(batch)
            else:
                await handover.deliver_unseen(put, batch)

        session.deliver = put if handover.ledger.passed else deliver
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

    async def _report_subscriptions(self) -> None:
        states = tuple(self.protocol.subscriptions.items())
        if states:
            await self._registry.report(
                SubscriptionStates(connection=self.spec.name, states=states)
            )

    async def _set_state(self, state: ConnectionState) -> None:
        await self._registry.report(
            StateChanged(connection=self.spec.name, state=state, at=trio.current_time())
        )
