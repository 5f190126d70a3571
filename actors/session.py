"""One session: one open WebSocket and one adapter, pumped by the task that opened them.

Theory of operation: :meth:`Session.pump` is the thin IO loop of STYLE §1, in this order::

    write   every frame in proto.frames_to_send()
    route   every event in proto.events()
    wait    for a frame, until min(stale deadline, proto.deadline(), flush, ``by``)
    feed    batch = proto.receive_frame(data, now, received_at)
    route   that frame's events, and write the frames it queued
    deliver batch

A frame's events are routed *before* its batch is delivered, so a ``SequenceGap`` is
logged and counted before the consumer holds the gapped delta, and a reply (a pong, a
resubscribe) is not held up by a slow consumer.

Liveness: the stale deadline (``stale_after``) counts only time spent waiting on the
socket. It restarts when a frame arrives and again after its batch was delivered, so a
consumer that blocks delivery never makes a healthy feed look stale; bytes of WebSocket
control frames (an exchange's pings, the pongs to ours) restart it too, since the
connection is demonstrably alive. After half of ``stale_after`` without any of that the
session *probes* once: the adapter's own request where the venue has one
(:meth:`ExchangeProtocol.probe`: OKX ``ping``, Deribit ``public/test``, Bybit ``ping``),
else a WebSocket ping, which RFC 6455 obliges the peer to answer. The answer is a frame
like any other, so a quiet but healthy feed stays live, and a half-open connection is
found at ``stale_after`` on every venue, whatever its own heartbeat. One probe per
quiet spell keeps within every venue's incoming-message limit (``stale_after`` >= 1 s:
at most two probes per second). Round trips of probes and heartbeat pings go to the
traffic counter (last and smoothed) for stats. Protocol heartbeats (OKX text ping,
Deribit test_request) are the adapter's timers, run by :meth:`ExchangeProtocol.tick` at
its ``deadline()``; a ``HeartbeatMissed`` ends the session as
:class:`~actors._errors.FeedStale`.

Bad frames never end a session: the adapter reports them as ``MalformedFrame``, and an
adapter that raises anyway is counted and logged the same way. Each kind is logged once
per connection; every one is counted.

Stats cost an integer increment per frame: a :class:`TrafficCounter` per connection
counts locally and reports one ``Traffic`` event to the registry at most every
``DEFAULT_FLUSH_INTERVAL`` while frames flow.

The pump waits under one cancel scope per wake-up, not one per frame: the scope's
deadline is armed only while waiting on the socket (so a delivery or a write is never
cut short by it) and re-armed for each wait, and :meth:`Session.wake` cancels it only
during such a wait. A frame that arrives just as the scope fires is still taken, outside
the spent scope; only a wake-up (a deadline, or a wake) costs a new scope.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from actors._errors import FeedStale
from actors.consumer_queue import ConsumerQueue
from actors.exchanges.messages import (
    Batch,
    Event,
    HeartbeatMissed,
    MalformedFrame,
    Message,
    ProbeAnswered,
    ReconnectRequested,
    SequenceGap,
    Subscribed,
    SubscriptionFailed,
    SubscriptionSilent,
)
from actors.exchanges.sdk.liveness import DataClocks
from actors.exchanges.sdk.protocol import ExchangeProtocol
from actors.logs import log_fields
from actors.net.urls import redact_url
from actors.net.websocket import WebSocket
from actors.redact import redact_text
from actors.registry import RegistryClient, Traffic

__all__ = ["DEFAULT_FLUSH_INTERVAL", "Session", "TrafficCounter"]

logger = logging.getLogger("marketprism.connection")

#: Seconds between traffic reports to the registry while frames flow; stats lag by at
#: most this much.
DEFAULT_FLUSH_INTERVAL: Final = 0.25
#: Weight of a new round trip in the smoothed value (RFC 6298's alpha for SRTT).
RTT_WEIGHT: Final = 0.125


def _never() -> bool:
    return False


class TrafficCounter:
    """One connection's traffic since its last report, across its sessions.

    Feed latency costs one attribute store per frame that carried messages: the session
    keeps the newest such batch here (:attr:`last_batch`), and each report turns its
    newest message into one sample: the message's ``received_at`` (our wall time) minus
    its ``timestamp`` (the exchange's, milliseconds), if it has one (raw messages and
    some tickers do not). So there is at most one sample per ``DEFAULT_FLUSH_INTERVAL``
    while messages flow, and a slow feed (one frame a second) still gets one per frame.

    Args:
        connection: the connection's name (for the events and the log).
        registry: where ``Traffic`` goes.
        queue: the consumer queue, whose ``dropped`` count is reported as it grows.
        wall_clock: Unix time, read once per frame as the frame's receive time (tests
            inject one tied to the Trio clock).
    """

    __slots__ = (
        "_dropped_reported",
        "_log_fields",
        "_logged_kinds",
        "_malformed_kinds",
        "_name",
        "_queue",
        "_registry",
        "bytes",
        "frames",
        "gaps",
        "last_batch",
        "last_frame_at",
        "malformed",
        "messages",
        "next_flush",
        "rtt",
        "rtt_smoothed",
        "silent_gaps",
        "wall_clock",
    )

    def __init__(
        self,
        connection: str,
        registry: RegistryClient,
        queue: ConsumerQueue,
        *,
        wall_clock: Callable[[], float] = time.time,
        exchange: str = "",
    ) -> None:
        self._name = connection
        #: The ``extra=`` of this connection's log records.
        self._log_fields = log_fields(connection, exchange)
        self._registry = registry
        self._queue = queue
        self.wall_clock = wall_clock
        #: The newest batch since the last report, if any.
        self.last_batch: Batch | None = None
        #: kind -> malformed frames of that kind since the last report.
        self._malformed_kinds: dict[str, int] = {}
        self.frames = self.messages = self.bytes = self.malformed = self.gaps = 0
        self.last_frame_at = 0.0
        #: trio time of the next report, ``inf`` while nothing is waiting to be reported.
        self.next_flush = math.inf
        self._dropped_reported = 0
        self._logged_kinds: set[str] = set()
        #: The newest probe round trip not yet reported, and the smoothed one.
        self.rtt: float | None = None
        self.rtt_smoothed: float | None = None
        #: Symbols whose gaps are counted but not logged: their local book logs the
        #: doubt and its resync (actors/books.py), one line instead of two.
        self.silent_gaps: frozenset[str] = frozenset()

    def count_rtt(self, rtt: float, now: float) -> None:
        """A probe (or heartbeat ping) was answered after ``rtt`` seconds."""
        self.rtt = rtt
        smoothed = self.rtt_smoothed
        self.rtt_smoothed = rtt if smoothed is None else smoothed + RTT_WEIGHT * (rtt - smoothed)
        if self.next_flush == math.inf:
            self.next_flush = now + DEFAULT_FLUSH_INTERVAL

    def count_malformed(self, event: MalformedFrame) -> None:
        """Count a bad frame; log the first of its kind on this connection."""
        self.malformed += 1
        kinds = self._malformed_kinds
        kinds[event.kind] = kinds.get(event.kind, 0) + 1
        if event.kind in self._logged_kinds:
            return
        self._logged_kinds.add(event.kind)
        logger.warning(
            "%s: dropped a malformed frame (%s: %s): %r; further frames of this kind are "
            "counted in stats, not logged",
            self._name,
            event.kind,
            redact_text(event.detail),
            redact_text(event.sample),
            extra={**self._log_fields, "event": "malformed_frame", "kind": event.kind},
        )

    def count_gap(self, event: SequenceGap) -> None:
        """Count and log a book sequence gap (log it only if no local book does)."""
        self.gaps += 1
        if event.symbol in self.silent_gaps:
            return
        logger.warning(
            "%s: %s book sequence gap: expected to continue from %d, got %d",
            self._name,
            event.symbol,
            event.expected,
            event.received,
            extra={**self._log_fields, "event": "sequence_gap", "symbol": event.symbol},
        )

    def frame_done(self, now: float) -> bool:
        """A frame counted at ``now`` is handled: schedule a report; True if one is due
        (the caller then awaits :meth:`flush`; no coroutine per frame otherwise)."""
        if self.next_flush == math.inf:
            self.next_flush = now + DEFAULT_FLUSH_INTERVAL
            return False
        return now >= self.next_flush

    async def flush(self, now: float, clocks: DataClocks | None = None) -> None:
        """Report what was counted since the last report (nothing if nothing was).

        ``clocks`` are the reporting session's data clocks: the data frames they counted
        per topic go along (adapters without topics, ``tracks_topics = False``, have
        none to take).

        A registry that is gone already is not an error: the counts are dropped.

        Cancellation: atomic; a cancelled flush has reset the counts and sent nothing
        (stats are best-effort).
        """
        self.next_flush = math.inf
        dropped = self._queue.dropped - self._dropped_reported
        rtt = self.rtt
        topics = () if clocks is None else clocks.take_counts()
        if not (self.frames or self.malformed or dropped or self.gaps or rtt is not None):
            return
        latency = None
        batch = self.last_batch
        if batch is not None:
            self.last_batch = None
            newest = batch[-1]
            stamp = getattr(newest, "timestamp", None)
            if stamp is not None:
                latency = newest.received_at - stamp / 1000
        kinds = self._malformed_kinds
        event = Traffic(
            connection=self._name,
            frames=self.frames,
            messages=self.messages,
            bytes=self.bytes,
            dropped=dropped,
            malformed=self.malformed,
            gaps=self.gaps,
            last_frame_at=self.last_frame_at,
            rtt=rtt,
            rtt_smoothed=self.rtt_smoothed,
            at=now,
            malformed_kinds=tuple(kinds.items()) if kinds else (),
            latency=latency,
            topics=topics,
        )
        if kinds:
            self._malformed_kinds = {}
        self.rtt = None
        self.frames = self.messages = self.bytes = self.malformed = self.gaps = 0
        self._dropped_reported += dropped
        try:
            await self._registry.report(event)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            logger.debug(
                "%s: registry gone; traffic counts not reported",
                self._name,
                extra=self._log_fields,
            )


class Session:
    """One open WebSocket with its own adapter; owned by the task that pumps it.

    Args:
        name: the connection's name (for errors and the log).
        proto: the adapter; its session is started by :meth:`start`.
        ws: the open socket.
        stale_after: seconds without a frame (waiting on the socket) before the feed is
            stale.
        traffic: the connection's counter.
        deliver: where batches go (see :attr:`deliver`).
        on_subscriptions: called once per routed set of events that changed a
            subscription's state.
        on_notice: called with each ``ReconnectRequested``; it may raise to end the
            session.
    """

    def __init__(
        self,
        name: str,
        proto: ExchangeProtocol,
        ws: WebSocket,
        *,
        stale_after: float,
        traffic: TrafficCounter,
        deliver: Callable[[Batch], Awaitable[None]],
        on_subscriptions: Callable[[Session], Awaitable[None]],
        on_notice: Callable[[Session, ReconnectRequested], Awaitable[None]],
    ) -> None:
        self.name = name
        self.proto = proto
        self._exchange = proto.spec.exchange
        self.ws = ws
        self._stale_after = stale_after
        self._probe_after = stale_after / 2
        #: The value of :attr:`last_frame` when the session last probed: one probe per
        #: quiet spell.
        self._probed_for = -math.inf
        self._traffic = traffic
        #: Where batches go: the queue, or a make-before-break ledger around it.
        self.deliver = deliver
        self._on_subscriptions = on_subscriptions
        self._on_notice = on_notice
        #: trio time the stale clock last restarted (a frame, a delivery, a ping).
        self.last_frame = trio.current_time()
        #: Set by a make-before-break switch: stop pumping, so the session closes.
        self.retiring = False
        #: Set by the owner once the session's socket is closed.
        self.closed = trio.Event()
        self._waiting: trio.CancelScope | None = None
        self._receiving = False

    def start(self) -> None:
        """Start the adapter's session (it queues its subscribe frames)."""
        now = trio.current_time()
        self.last_frame = now
        self.proto.start_session(now)

    def wake(self, why: str) -> None:
        """Make the pump re-check its ``until`` condition now.

        Only a wait on the socket is interrupted; a delivery or a write in progress
        finishes first (the condition is checked again right after it).
        """
        if self._receiving and self._waiting is not None:
            self._waiting.cancel(reason=why)

    def retire(self) -> None:
        """Handed over: the pump stops at once (its current delivery finishes first)."""
        self.retiring = True
        self.wake("handed over to the successor session")

    async def pump(self, until: Callable[[], bool] = _never, by: float = math.inf) -> bool:
        """Receive, decode and deliver until ``until()`` holds or ``by`` passes.

        ``until`` is checked before each wait and whenever :meth:`wake` interrupts one.

        Returns:
            True once ``until()`` held; False when trio time ``by`` passed first.

        Raises:
            FeedStale: no frame for ``stale_after`` (pings aside), or a heartbeat missed.
            ConnectionLost: the connection broke or was closed with a code other than
                1000.
            ClosedNormally: the exchange closed the connection with 1000.
            Exception: whatever ``on_notice`` or ``on_subscriptions`` raise.

        Cancellation: may be partial: a frame may have been fed to the adapter and not
        delivered, or written in part. Nothing is closed here; the socket's owner closes
        it.
        """
        proto = self.proto
        ws = self.ws
        traffic = self._traffic
        stale_after = self._stale_after
        probe_after = self._probe_after
        while True:
            frames: list[str | bytes] | None = None
            with trio.CancelScope() as waiting:
                self._waiting = waiting
                while True:
                    # Write and route first: a session that went live inside
                    # start_session (no acks to wait for) has written its subscribe
                    # frames before anyone hears it is live. A retiring session writes
                    # nothing more.
                    if proto.has_output and not self.retiring:
                        await self._write_and_route()
                    if until():
                        return True  # checked with no checkpoint before the wait
                    last = self.last_frame
                    wake_at = min(
                        last + (probe_after if self._probed_for != last else stale_after),
                        proto.deadline(),
                        traffic.next_flush,
                        by,
                    )
                    if wake_at <= trio.current_time():
                        break  # due already: handle the wake-up before reading on
                    waiting.deadline = wake_at
                    self._receiving = True
                    try:
                        frames = await ws.receive_batch()
                    finally:
                        self._receiving = False
                    waiting.deadline = math.inf
                    if waiting.cancel_called:
                        break  # woken as the frames arrived: take them outside this scope
                    await self._take(frames)
                    frames = None
            self._waiting = None
            if frames is not None:
                await self._take(frames)
                continue
            if until():
                return True
            now = trio.current_time()
            if now >= by:
                return False
            if ws.last_received > self.last_frame:
                # Control frames (an exchange's pings, the pong to our probe) arrived:
                # the connection is alive, so the stale clock restarts there.
                self.last_frame = ws.last_received
            last = self.last_frame
            if now >= last + stale_after:
                raise FeedStale(
                    f"stale: no frame for {stale_after:g} s (a probe after "
                    f"{probe_after:g} s went unanswered) from {redact_url(ws.url)}",
                    code=None,
                )
            if now >= last + probe_after and self._probed_for != last:
                self._probed_for = last
                if not proto.probe(now):
                    ws.ping(self._pong)
            if now >= traffic.next_flush:
                await traffic.flush(now, proto.data)
            proto.tick(now)

    def _pong(self, rtt: float) -> None:
        self._traffic.count_rtt(rtt, trio.current_time())

    async def _take(self, frames: list[str | bytes]) -> None:
        """Feed the frames of one read, route what each caused, deliver their messages.

        The messages of all the frames go in one batch, except where a frame caused
        events: the messages of the frames before it are delivered first, then its
        events routed (they may switch where delivery goes, or end the session), so
        every message is delivered where and when one frame at a time would have.
        """
        now = trio.current_time()
        self.last_frame = now
        traffic = self._traffic
        proto = self.proto
        receive_frame = proto.receive_frame
        wall = traffic.wall_clock()
        size = 0
        out: Batch | list[Message] = ()
        for data in frames:
            size += len(data)
            try:
                batch = receive_frame(data, now, wall)
            except Exception as exc:
                # Adapters report bad frames as MalformedFrame; anything that still
                # escapes (a hostile frame deep enough to hit RecursionError, an adapter
                # bug) is counted and logged the same way, never fatal.
                batch = ()
                sample = data if isinstance(data, str) else data.decode("utf-8", "replace")
                traffic.count_malformed(
                    MalformedFrame(
                        kind=f"adapter raised {type(exc).__name__}",
                        detail=str(exc),
                        sample=sample[:200],
                    )
                )
            if proto.has_output:
                if out:
                    await self._deliver(out)
                    out = ()
                await self._write_and_route()
            if batch:
                if not out:
                    out = batch
                elif type(out) is tuple:
                    out = [*out, *batch]
                else:
                    out += batch  # type: ignore[operator]  # a list here
        traffic.frames += len(frames)
        traffic.bytes += size
        traffic.last_frame_at = now
        if out:
            await self._deliver(out)
        if traffic.frame_done(now):
            await traffic.flush(now, proto.data)

    async def _deliver(self, messages: Batch | list[Message]) -> None:
        batch = messages if type(messages) is tuple else tuple(messages)
        traffic = self._traffic
        traffic.messages += len(batch)
        traffic.last_batch = batch
        await self.deliver(batch)
        # Time spent blocked on the consumer is not silence from the exchange: the
        # stale clock restarts once we can read again.
        self.last_frame = trio.current_time()

    async def _write_and_route(self) -> bool:
        """Write the frames the adapter queued and route its events; False if none."""
        proto = self.proto
        frames = proto.frames_to_send()
        for frame in frames:
            await self.ws.send(frame)
        events = proto.events()
        if events:
            await self._route(events)
        return bool(frames or events)

    def _log_fields(self, **fields: object) -> dict[str, object]:
        return log_fields(self.name, self._exchange, **fields)

    async def _route(self, events: list[Event]) -> None:
        subscriptions_changed = False
        for event in events:
            if isinstance(event, MalformedFrame):
                self._traffic.count_malformed(event)
            elif isinstance(event, Subscribed):
                subscriptions_changed = True
            elif isinstance(event, SubscriptionFailed):
                subscriptions_changed = True
                logger.error(
                    "%s: the exchange refused subscription %r: %s %s (check channels/symbols)",
                    self.name,
                    event.topic,
                    event.code,
                    redact_text(event.message),
                    extra=self._log_fields(event="subscription_failed", topic=event.topic),
                )
            elif isinstance(event, SequenceGap):
                self._traffic.count_gap(event)
            elif isinstance(event, HeartbeatMissed):
                raise FeedStale(f"heartbeat missed: {event.detail}", heartbeat=True)
            elif isinstance(event, ReconnectRequested):
                await self._on_notice(self, event)
            elif isinstance(event, ProbeAnswered):
                self._traffic.count_rtt(event.rtt, trio.current_time())
            elif isinstance(event, SubscriptionSilent):
                subscriptions_changed = True
                logger.warning(
                    "%s: subscription %r delivered no data for %.0f s (silent_after); "
                    "requesting it again",
                    self.name,
                    event.topic,
                    event.silent_for,
                    extra=self._log_fields(event="subscription_silent", topic=event.topic),
                )
        if subscriptions_changed:
            await self._on_subscriptions(self)
