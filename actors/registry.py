"""The RegistryActor: the only owner of shared state (stats, states, connect pacing).

Theory of operation: actors and the supervisor never share mutable objects. They send
small frozen events over one bounded channel; this actor folds them into per-connection
records. Readers ask for a :class:`Stats` snapshot with a request that carries its own
one-shot reply channel. Connection attempts ask for a permit per host the same way: the
registry answers at once with the time at which the attempt may start, so that at most
``attempts`` attempts start in any window of ``interval`` seconds per host. A mass
disconnect (Binance cuts every connection after 24 h) thus becomes a paced reconnect
instead of a burst of HTTP 429s.

Traffic is counted locally by each actor and flushed here a few times a second, so the
per-message cost of statistics is an integer increment, not a channel hop.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import msgspec
import trio

from actors.books import BookStats
from actors.consumer_queue import ConsumerQueue
from actors.histogram import Buckets, Histogram

__all__ = [
    "DEFAULT_RATE_WINDOW",
    "LATENCY_SAMPLES",
    "LATENCY_WINDOW",
    "RATE_1M_WINDOW",
    "RATE_1S_WINDOW",
    "Connected",
    "ConnectionState",
    "ConnectionStats",
    "Disconnected",
    "PermitRequest",
    "Registered",
    "RegistryActor",
    "RegistryClient",
    "RegistryEvent",
    "RestInfo",
    "RestStats",
    "Restarting",
    "SnapshotRequest",
    "StateChanged",
    "Stats",
    "SubscriptionStates",
    "SubscriptionStats",
    "Totals",
    "Traffic",
    "Unregistered",
    "percentile",
]

#: Seconds over which the message rate is averaged.
DEFAULT_RATE_WINDOW: Final = 5.0
#: The windows of ``rate_1s`` and ``rate_1m``, seconds.
RATE_1S_WINDOW: Final = 1.0
RATE_1M_WINDOW: Final = 60.0
#: Seconds of feed latency samples behind ``feed_latency_p50``/``_p99``.
LATENCY_WINDOW: Final = 60.0
#: At most this many latency samples are kept per connection (one per traffic flush:
#: at most 4 a second while frames flow, 240 a minute; the cap only bounds memory).
LATENCY_SAMPLES: Final = 1024


class ConnectionState(enum.Enum):
    """Where a supervised connection is."""

    #: Waiting for a connect permit, or opening TCP/TLS/WebSocket.
    CONNECTING = "connecting"
    #: Open; subscriptions sent, acknowledgements outstanding.
    SUBSCRIBING = "subscribing"
    #: Subscriptions confirmed; data flows.
    LIVE = "live"
    #: The last session ended; waiting out the backoff delay before the next.
    BACKOFF = "backoff"
    #: The exchange keeps refusing the way a wrong configuration does (HTTP 4xx at the
    #: upgrade, a certificate that fails verification): still retried, at the backoff
    #: cap, and shown as failed until a session goes live again.
    FAILED = "failed"
    #: Not running and not going to restart (temporary/transient end, or shutdown).
    STOPPED = "stopped"


class Unregistered(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A connection leaves the registry (``sup.remove_connection``): its record, queue
    and books are forgotten; later events about it are ignored."""

    connection: str


class Registered(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A connection joins the registry (sent once, before anything else about it).

    ``route`` is its proxy hops (passwords masked; empty: direct) and ``route_reason``
    why that route was chosen.
    """

    connection: str
    exchange: str
    url: str
    route: tuple[str, ...] = ()
    route_reason: str = ""


class StateChanged(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A connection moved to ``state`` at trio time ``at``.

    ``error``, when not empty, becomes the connection's ``last_error`` (a state entered
    for a reason of its own, such as giving up, rather than by a session's end).
    """

    connection: str
    state: ConnectionState
    at: float
    error: str = ""


class Connected(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A session's WebSocket handshake succeeded at ``at``."""

    connection: str
    at: float


class Disconnected(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A session ended at ``at``; ``error`` describes why (empty for a normal end).

    ``reason`` is the same in one of a few fixed labels (``close 1001``, ``reset``,
    ``stale``, ``heartbeat missed``, ``tls``, ``proxy``, ``handshake 503``, ``server
    notice``, ``connect``, ``crash``; see ``supervisor.tree.disconnect_reason``), counted
    per label in ``disconnects_by_reason``; empty counts as ``unknown``.
    """

    connection: str
    error: str
    at: float
    reason: str = ""


class Restarting(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """The supervisor will restart the connection after ``delay`` seconds.

    ``attempt`` is the backoff's count of consecutive delays so far (this one included;
    it restarts after a session stayed live for ``reset_after``).
    """

    connection: str
    delay: float
    at: float
    attempt: int = 0


class Traffic(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Counts since the previous Traffic event of this connection.

    Attributes:
        frames: WebSocket messages received.
        messages: normalized messages produced.
        bytes: payload size received (characters for text frames, bytes for binary).
        dropped: messages discarded by the overflow policy.
        malformed: frames that could not be understood.
        gaps: book sequence gaps detected.
        last_frame_at: trio time of the newest frame counted here.
        rtt: the newest probe round trip in seconds, if one was answered since.
        rtt_smoothed: the smoothed probe round trip so far, if any.
        at: trio time of the flush.
        malformed_kinds: ``(kind, count)`` of the frames counted in ``malformed``.
        latency: one feed latency sample, if a message with an exchange timestamp
            arrived since: our wall time at its receipt minus its exchange time, in
            seconds, not yet corrected by the clock offset.
        topics: ``(topic, data frames, trio time of the latest)`` per topic that carried
            data since (none from adapters without topics).
    """

    connection: str
    frames: int
    messages: int
    bytes: int
    dropped: int
    malformed: int
    gaps: int
    last_frame_at: float
    at: float
    rtt: float | None = None
    rtt_smoothed: float | None = None
    malformed_kinds: tuple[tuple[str, int], ...] = ()
    latency: float | None = None
    topics: tuple[tuple[str, int, float], ...] = ()


class SubscriptionStates(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """The state of every subscription of a connection (native topic -> state)."""

    connection: str
    states: tuple[tuple[str, str], ...]


class RestInfo(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """What the connection's REST calls showed, after each of them.

    Attributes:
        clock_offset: the venue's clock minus ours in seconds, ``None`` until known.
        used_weight: the weight counted in the venue's current window (Binance), if the
            venue counts weight.
        held_for: seconds the REST host is still held (after a 429/418), if it is.
        hold_reason: why it is held (``held after HTTP 429``, ``IP banned (HTTP 418)``).
        failing: the REST purposes (``time``, ``instruments ...``) failing now.
    """

    connection: str
    clock_offset: float | None
    used_weight: int | None = None
    held_for: float | None = None
    hold_reason: str = ""
    failing: tuple[str, ...] = ()


class SnapshotRequest(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Ask for a :class:`Stats` snapshot, answered on ``reply``."""

    reply: Any


class PermitRequest(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Ask when a connection attempt to ``host`` may start; the trio time comes on ``reply``.

    ``rate`` is the exchange's published ``(attempts, seconds)`` limit for the host, or
    ``None`` for the supervisor's ``connect_attempts`` / ``connect_interval``.
    """

    host: str
    reply: Any
    rate: tuple[int, float] | None = None


RegistryEvent = (
    Registered
    | Unregistered
    | StateChanged
    | Connected
    | Disconnected
    | Restarting
    | Traffic
    | SubscriptionStates
    | RestInfo
    | SnapshotRequest
    | PermitRequest
)


class RestStats(msgspec.Struct, frozen=True, kw_only=True):
    """A connection's REST client as of its last call (see :class:`RestInfo`).

    Attributes:
        used_weight: weight counted in the venue's current window, if it counts weight.
        held_for: seconds the host was still held at that call, if it was.
        hold_reason: why it was held.
        failing: the REST purposes failing then (``time``, ``instruments ...``).
    """

    used_weight: int | None = None
    held_for: float | None = None
    hold_reason: str = ""
    failing: tuple[str, ...] = ()


class SubscriptionStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one subscription.

    Attributes:
        state: ``pending``, ``live``, ``silent`` or ``failed: CODE MSG`` (as in
            ``ConnectionStats.subscriptions``).
        state_for: seconds since the registry saw it enter that state (for ``silent``:
            how long it has been silent; it went silent ``silent_after`` seconds after
            its last data).
        messages: data frames of this topic so far (a frame may carry several
            messages), across sessions; ``None`` while none was counted: no data yet,
            or an adapter without topics (raw), which cannot tell them apart.
        last_message_age: seconds since its latest data frame, ``None`` as above.
    """

    state: str
    state_for: float
    messages: int | None = None
    last_message_age: float | None = None


class ConnectionStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one connection.

    Attributes:
        name: the connection's name.
        exchange: its adapter.
        url: the URL it opens (credentials never included).
        state: the :class:`ConnectionState` value.
        state_for: seconds spent in that state.
        connects: sessions whose handshake succeeded.
        disconnects: sessions that ended.
        restarts: restarts scheduled by the supervisor.
        frames: WebSocket messages received.
        messages: normalized messages produced (from frames, and by the local books:
            REST snapshots, and the BookInvalid of each valid book when a session ends).
        bytes: payload size received.
        dropped: messages discarded by the overflow policy.
        queued_bytes: estimated bytes of decoded messages waiting in the consumer queue
            (``buffer_bytes`` bounds it), read from the queue when the snapshot is taken.
        malformed: frames that could not be understood.
        gaps: book sequence gaps detected.
        rate: messages per second over the last few seconds.
        idle_for: seconds since the last frame, ``None`` before the first.
        backoff: the current (or last) restart delay in seconds.
        last_error: why the last session ended, empty if none has.
        subscriptions: native topic -> ``pending``, ``live``, ``silent`` or
            ``failed: CODE MSG``.
        probe_rtt: round trip of the last answered liveness probe or heartbeat ping,
            seconds; ``None`` before the first.
        probe_rtt_smoothed: the same, smoothed (RFC 6298 SRTT, weight 1/8).
        route: the proxies the connection goes through, in order, as URLs with their
            passwords masked; empty when it connects directly.
        route_reason: why that route was chosen (``connections.x.proxy``,
            ``[defaults] proxy``, ``environment HTTPS_PROXY``, ``NO_PROXY entry
            '.binance.com' matches stream.binance.com``, ``no proxy configured``).
        clock_offset: the venue's clock minus ours in seconds, from its server-time
            endpoint (half the round trip is the error bound); ``None`` until known or
            without REST.
        rest: the REST client's state as of its last call, ``None`` before the first
            or without REST.
        disconnects_by_reason: ``disconnects`` split by why the session ended
            (``close 1001``, ``reset``, ``stale``, ``heartbeat missed``, ``tls``,
            ``proxy``, ``handshake 503``, ``server notice``, ``connect``, ``crash``;
            ``close 1000`` for a normal close); the counts sum to ``disconnects``.
        attempt: the backoff's count of consecutive restart delays (the one in
            ``backoff`` included); 0 before the first restart, and back to 1 at the
            first restart after a session stayed live for ``reset_after``.
        rate_1s: messages per second over the last second.
        rate_1m: messages per second over the last minute.
        session_uptime: seconds since the connection went live, ``None`` when it is
            not live (a make-before-break handover keeps it live).
        malformed_by_kind: ``malformed`` split by the adapter's kind of problem; the
            counts sum to ``malformed``.
        feed_latency_p50: median over the last minute of our receive time minus the
            exchange's event time of a message, in seconds, plus ``clock_offset`` when
            known; one sample per traffic flush (the newest timestamped message then),
            nearest-rank percentile; ``None`` without samples in the last minute.
        feed_latency_p99: the 99th percentile of the same samples.
        feed_latency: every feed latency sample so far as a cumulative histogram
            (the same samples, each corrected by the clock offset known when it was
            taken; below zero counted as zero).
        probe_rtt_histogram: every probe round trip reported so far (one per traffic
            flush that carried a new answer) as a cumulative histogram.
        queue_depth: batches waiting in the consumer queue, read when the snapshot is
            taken.
        subscription_stats: native topic -> :class:`SubscriptionStats` (the same
            topics as ``subscriptions``).
        silent_total: times a subscription went silent on this connection.
        books: symbol -> :class:`~actors.books.BookStats` of each local book (the
            ``book`` channel's symbols; empty without local books), read when the
            snapshot is taken.
    """

    name: str
    exchange: str
    url: str
    state: str
    state_for: float
    connects: int
    disconnects: int
    restarts: int
    frames: int
    messages: int
    bytes: int
    dropped: int
    queued_bytes: int
    malformed: int
    gaps: int
    rate: float
    idle_for: float | None
    backoff: float
    last_error: str
    subscriptions: dict[str, str]
    probe_rtt: float | None = None
    probe_rtt_smoothed: float | None = None
    route: tuple[str, ...] = ()
    route_reason: str = ""
    clock_offset: float | None = None
    rest: RestStats | None = None
    disconnects_by_reason: dict[str, int] = msgspec.field(default_factory=dict)
    attempt: int = 0
    rate_1s: float = 0.0
    rate_1m: float = 0.0
    session_uptime: float | None = None
    malformed_by_kind: dict[str, int] = msgspec.field(default_factory=dict)
    feed_latency_p50: float | None = None
    feed_latency_p99: float | None = None
    queue_depth: int = 0
    subscription_stats: dict[str, SubscriptionStats] = msgspec.field(default_factory=dict)
    silent_total: int = 0
    feed_latency: Histogram | None = None
    probe_rtt_histogram: Histogram | None = None
    books: dict[str, BookStats] = msgspec.field(default_factory=dict)


class Totals(msgspec.Struct, frozen=True, kw_only=True):
    """Sums over a set of connections (one exchange's, or all of them).

    Attributes:
        connections: how many connections.
        states: :class:`ConnectionState` value -> connections in that state (every
            state present, 0 included).
        connects, disconnects, restarts, frames, messages, bytes, dropped, malformed,
        gaps, silent_total: the sums of the connections' counters of those names.
        disconnects_by_reason: the sum of the connections' ``disconnects_by_reason``.
    """

    connections: int
    states: dict[str, int]
    connects: int
    disconnects: int
    restarts: int
    frames: int
    messages: int
    bytes: int
    dropped: int
    malformed: int
    gaps: int
    silent_total: int
    disconnects_by_reason: dict[str, int]

    @classmethod
    def of(cls, connections: Iterable[ConnectionStats]) -> Totals:
        """The sums over ``connections``."""
        conns = list(connections)
        states = dict.fromkeys((state.value for state in ConnectionState), 0)
        reasons: dict[str, int] = {}
        for conn in conns:
            states[conn.state] = states.get(conn.state, 0) + 1
            for reason, count in conn.disconnects_by_reason.items():
                reasons[reason] = reasons.get(reason, 0) + count
        return cls(
            connections=len(conns),
            states=states,
            connects=sum(c.connects for c in conns),
            disconnects=sum(c.disconnects for c in conns),
            restarts=sum(c.restarts for c in conns),
            frames=sum(c.frames for c in conns),
            messages=sum(c.messages for c in conns),
            bytes=sum(c.bytes for c in conns),
            dropped=sum(c.dropped for c in conns),
            malformed=sum(c.malformed for c in conns),
            gaps=sum(c.gaps for c in conns),
            silent_total=sum(c.silent_total for c in conns),
            disconnects_by_reason=dict(sorted(reasons.items())),
        )


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of every connection, in configuration order.

    Every counter (``connects``, ``disconnects`` and its reasons, ``restarts``,
    ``frames``, ``messages``, ``bytes``, ``dropped``, ``malformed`` and its kinds,
    ``gaps``, ``silent_total``) only ever grows, across reconnects and restarts, so
    exporters may publish them as Prometheus ``_total`` counters.

    Attributes:
        at: trio time of the snapshot.
        connections: one :class:`ConnectionStats` per connection.
        totals: sums over every connection.
        exchanges: exchange -> sums over its connections (in order of first
            appearance).
    """

    at: float
    connections: tuple[ConnectionStats, ...]
    totals: Totals | None = None
    exchanges: dict[str, Totals] = msgspec.field(default_factory=dict)


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ``values`` (sorted ascending, non-empty):
    the smallest value with at least ``p`` % of the values at or below it."""
    rank = max(1, math.ceil(p / 100 * len(values)))
    return values[rank - 1]


class _Record:
    """Mutable per-connection state, touched only by the registry task."""

    __slots__ = (
        "attempt",
        "backoff",
        "bytes",
        "clock_offset",
        "connects",
        "disconnects",
        "dropped",
        "exchange",
        "frames",
        "gaps",
        "last_error",
        "last_frame_at",
        "latencies",
        "latency_buckets",
        "malformed",
        "malformed_kinds",
        "messages",
        "reasons",
        "rest",
        "restarts",
        "route",
        "route_reason",
        "rtt",
        "rtt_buckets",
        "rtt_smoothed",
        "samples",
        "silent_total",
        "since",
        "state",
        "sub_since",
        "subscriptions",
        "topic_heard_at",
        "topic_messages",
        "url",
    )

    def __init__(
        self, exchange: str, url: str, now: float, route: tuple[str, ...], route_reason: str
    ) -> None:
        self.exchange = exchange
        self.url = url
        self.route = route
        self.route_reason = route_reason
        self.state = ConnectionState.CONNECTING
        self.since = now
        self.connects = self.disconnects = self.restarts = 0
        self.frames = self.messages = self.bytes = self.dropped = self.malformed = 0
        self.gaps = 0
        self.subscriptions: dict[str, str] = {}
        self.last_frame_at: float | None = None
        self.backoff = 0.0
        self.last_error = ""
        self.rtt: float | None = None
        self.rtt_smoothed: float | None = None
        self.clock_offset: float | None = None
        self.rest: RestStats | None = None
        # (trio time, messages so far) samples for the rates; oldest first.
        self.samples: collections.deque[tuple[float, int]] = collections.deque()
        self.reasons: dict[str, int] = {}
        self.attempt = 0
        self.malformed_kinds: dict[str, int] = {}
        # (trio time, latency before the clock offset) per flush; oldest first.
        self.latencies: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=LATENCY_SAMPLES
        )
        #: topic -> trio time its current state was first seen.
        self.sub_since: dict[str, float] = {}
        self.silent_total = 0
        #: topic -> data frames counted, and trio time of its latest.
        self.topic_messages: dict[str, int] = {}
        self.topic_heard_at: dict[str, float] = {}
        self.latency_buckets = Buckets()
        self.rtt_buckets = Buckets()


class RegistryActor:
    """Owns every connection's record and the per-host connect pacing.

    Args:
        connect_attempts: attempts granted per host per ``connect_interval``.
        connect_interval: the pacing window in seconds.
        rate_window: seconds over which ``rate`` is averaged.
    """

    def __init__(
        self,
        *,
        connect_attempts: int,
        connect_interval: float,
        rate_window: float = DEFAULT_RATE_WINDOW,
    ) -> None:
        self._attempts = connect_attempts
        self._interval = connect_interval
        self._rate_window = rate_window
        self._records: dict[str, _Record] = {}
        self._grants: dict[str, collections.deque[float]] = {}
        self._queues: dict[str, ConsumerQueue] = {}
        self._books: dict[str, Callable[[], dict[str, BookStats]]] = {}

    def watch_books(self, connection: str, stats: Callable[[], dict[str, BookStats]]) -> None:
        """Report ``stats()`` as ``connection``'s ``books`` in snapshots (read then)."""
        self._books[connection] = stats

    def watch_queue(self, connection: str, queue: ConsumerQueue) -> None:
        """Report ``queue``'s level as ``connection``'s ``queued_bytes`` in snapshots.

        Read when a snapshot is taken, so the figure is current also when no frame
        arrives (a consumer that drains the queue in a quiet spell).
        """
        self._queues[connection] = queue

    async def run(
        self,
        events: trio.MemoryReceiveChannel[RegistryEvent],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Fold events into records until every sender is closed.

        Cancellation: stops at once, but first applies every event still queued and
        answers every request among them, then closes ``events``; there is no
        checkpoint in between, so each request either is answered or finds the channel
        closed (its send raises ``trio.BrokenResourceError``): none waits for ever.
        """
        task_status.started()
        async with events:
            try:
                async for event in events:
                    self.handle(event, trio.current_time())
            finally:
                # A stop cancels this task with requests still queued; an unread
                # request's reply channel would never be closed and its caller would
                # hang (audit M6). The close that follows (`async with`) is immediate.
                self._drain(events)

    def handle(self, event: RegistryEvent, now: float) -> None:
        """Apply one event at trio time ``now`` (answers requests with ``send_nowait``)."""
        if type(event) is not Registered:
            about = getattr(event, "connection", None)
            if about is not None and about not in self._records:
                return  # removed (Unregistered) while this was on its way
        if isinstance(event, Traffic):
            rec = self._records[event.connection]
            rec.frames += event.frames
            rec.messages += event.messages
            rec.bytes += event.bytes
            rec.dropped += event.dropped
            rec.malformed += event.malformed
            rec.gaps += event.gaps
            if event.frames:
                rec.last_frame_at = event.last_frame_at
            if event.rtt is not None:
                rec.rtt = event.rtt
                rec.rtt_smoothed = event.rtt_smoothed
                rec.rtt_buckets.observe(event.rtt)
            kinds = rec.malformed_kinds
            for kind, count in event.malformed_kinds:
                kinds[kind] = kinds.get(kind, 0) + count
            if event.latency is not None:
                rec.latencies.append((event.at, event.latency))
                rec.latency_buckets.observe(event.latency + (rec.clock_offset or 0.0))
            if event.topics:
                topic_messages = rec.topic_messages
                for topic, count, heard_at in event.topics:
                    topic_messages[topic] = topic_messages.get(topic, 0) + count
                    rec.topic_heard_at[topic] = heard_at
            self._sample(rec, event.at)
        elif isinstance(event, StateChanged):
            rec = self._records[event.connection]
            self._set_state(rec, event.state, event.at)
            if event.error:
                rec.last_error = event.error
        elif isinstance(event, SubscriptionStates):
            self._fold_subscriptions(self._records[event.connection], event.states, now)
        elif isinstance(event, RestInfo):
            rec = self._records[event.connection]
            if event.clock_offset is not None:
                rec.clock_offset = event.clock_offset
            rec.rest = RestStats(
                used_weight=event.used_weight,
                held_for=event.held_for,
                hold_reason=event.hold_reason,
                failing=event.failing,
            )
        elif isinstance(event, Connected):
            self._records[event.connection].connects += 1
        elif isinstance(event, Disconnected):
            rec = self._records[event.connection]
            rec.disconnects += 1
            rec.last_error = event.error
            reason = event.reason or "unknown"
            rec.reasons[reason] = rec.reasons.get(reason, 0) + 1
        elif isinstance(event, Restarting):
            rec = self._records[event.connection]
            rec.restarts += 1
            rec.backoff = event.delay
            rec.attempt = event.attempt
            self._set_state(rec, ConnectionState.BACKOFF, event.at)
        elif isinstance(event, Registered):
            self._records[event.connection] = _Record(
                event.exchange, event.url, now, event.route, event.route_reason
            )
        elif isinstance(event, Unregistered):
            del self._records[event.connection]
            self._queues.pop(event.connection, None)
            self._books.pop(event.connection, None)
        elif isinstance(event, PermitRequest):
            self._answer(event.reply, self.grant(event.host, now, event.rate))
        elif isinstance(event, SnapshotRequest):
            self._answer(event.reply, self.snapshot(now))

    def _drain(self, events: trio.MemoryReceiveChannel[RegistryEvent]) -> None:
        now = trio.current_time()
        while True:
            try:
                event = events.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            self.handle(event, now)

    @staticmethod
    def _fold_subscriptions(rec: _Record, states: tuple[tuple[str, str], ...], now: float) -> None:
        old = rec.subscriptions
        since = rec.sub_since
        new = dict(states)
        for topic, state in new.items():
            if old.get(topic) != state or topic not in since:
                since[topic] = now
                if state == "silent":
                    rec.silent_total += 1
        for topic in list(since):
            if topic not in new:
                del since[topic]
        rec.subscriptions = new

    @staticmethod
    def _set_state(rec: _Record, state: ConnectionState, at: float) -> None:
        # FAILED sticks through the retries (connecting, backoff) until a session is
        # live again or the connection stops.
        if rec.state is ConnectionState.FAILED and state not in (
            ConnectionState.LIVE,
            ConnectionState.STOPPED,
        ):
            return
        if rec.state is not state:
            rec.state = state
            rec.since = at

    @staticmethod
    def _answer(reply: trio.MemorySendChannel[Any], value: object) -> None:
        # A requester that was cancelled closed its end: nobody is left to answer.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            reply.send_nowait(value)

    def grant(self, host: str, now: float, rate: tuple[int, float] | None = None) -> float:
        """Reserve the earliest start time for an attempt to ``host``.

        Args:
            host: the host connected to.
            now: trio time of the request.
            rate: ``(attempts, seconds)`` published by the exchange for this host; default
                ``(connect_attempts, connect_interval)``.

        Returns:
            The trio time at which the attempt may start (``now`` or later). At most
            ``attempts`` grants fall in any window of ``seconds``.
        """
        attempts, interval = rate if rate is not None else (self._attempts, self._interval)
        grants = self._grants.setdefault(host, collections.deque())
        at = now
        if len(grants) >= attempts:
            at = max(now, grants[-attempts] + interval)
        grants.append(at)
        while len(grants) > attempts:
            grants.popleft()
        return at

    def _sample(self, rec: _Record, at: float) -> None:
        samples = rec.samples
        samples.append((at, rec.messages))
        # Keep one sample at or before the longest window's start so each rate spans
        # its window.
        keep = max(self._rate_window, RATE_1M_WINDOW)
        while len(samples) > 2 and samples[1][0] <= at - keep:
            samples.popleft()
        latencies = rec.latencies
        while latencies and latencies[0][0] <= at - LATENCY_WINDOW:
            latencies.popleft()

    @staticmethod
    def _rate(rec: _Record, now: float, window: float) -> float:
        # Messages per second since the newest sample at or before the window start
        # (or since the first sample, when there is less history than one window).
        if not rec.samples:
            return 0.0
        start = now - window
        base_t, base_n = rec.samples[0]
        for t, n in rec.samples:
            if t > start:
                break
            base_t, base_n = t, n
        span = now - base_t
        return (rec.messages - base_n) / span if span > 0 else 0.0

    @staticmethod
    def _latency(rec: _Record, now: float) -> tuple[float | None, float | None]:
        offset = rec.clock_offset or 0.0
        start = now - LATENCY_WINDOW
        values = sorted(latency + offset for at, latency in rec.latencies if at > start)
        if not values:
            return None, None
        return percentile(values, 50), percentile(values, 99)

    @staticmethod
    def _subscription(rec: _Record, topic: str, state: str, now: float) -> SubscriptionStats:
        heard_at = rec.topic_heard_at.get(topic)
        return SubscriptionStats(
            state=state,
            state_for=now - rec.sub_since[topic],
            messages=rec.topic_messages.get(topic),
            last_message_age=None if heard_at is None else now - heard_at,
        )

    def snapshot(self, now: float) -> Stats:
        """Every connection's stats at trio time ``now``."""
        connections = tuple(self._connection(name, rec, now) for name, rec in self._records.items())
        exchanges: dict[str, list[ConnectionStats]] = {}
        for conn in connections:
            exchanges.setdefault(conn.exchange, []).append(conn)
        return Stats(
            at=now,
            connections=connections,
            totals=Totals.of(connections),
            exchanges={exchange: Totals.of(conns) for exchange, conns in exchanges.items()},
        )

    def _connection(self, name: str, rec: _Record, now: float) -> ConnectionStats:
        p50, p99 = self._latency(rec, now)
        queue = self._queues.get(name)
        live = rec.state is ConnectionState.LIVE
        return ConnectionStats(
            name=name,
            exchange=rec.exchange,
            url=rec.url,
            state=rec.state.value,
            state_for=now - rec.since,
            connects=rec.connects,
            disconnects=rec.disconnects,
            restarts=rec.restarts,
            frames=rec.frames,
            messages=rec.messages,
            bytes=rec.bytes,
            dropped=rec.dropped,
            queued_bytes=0 if queue is None else queue.queued_bytes,
            malformed=rec.malformed,
            gaps=rec.gaps,
            rate=self._rate(rec, now, self._rate_window),
            idle_for=None if rec.last_frame_at is None else now - rec.last_frame_at,
            backoff=rec.backoff,
            last_error=rec.last_error,
            subscriptions=dict(rec.subscriptions),
            probe_rtt=rec.rtt,
            probe_rtt_smoothed=rec.rtt_smoothed,
            route=rec.route,
            route_reason=rec.route_reason,
            clock_offset=rec.clock_offset,
            rest=rec.rest,
            disconnects_by_reason=dict(sorted(rec.reasons.items())),
            attempt=rec.attempt,
            rate_1s=self._rate(rec, now, RATE_1S_WINDOW),
            rate_1m=self._rate(rec, now, RATE_1M_WINDOW),
            session_uptime=now - rec.since if live else None,
            malformed_by_kind=dict(sorted(rec.malformed_kinds.items())),
            feed_latency_p50=p50,
            feed_latency_p99=p99,
            queue_depth=0 if queue is None else len(queue),
            subscription_stats={
                topic: self._subscription(rec, topic, state, now)
                for topic, state in rec.subscriptions.items()
            },
            silent_total=rec.silent_total,
            feed_latency=rec.latency_buckets.snapshot(),
            probe_rtt_histogram=rec.rtt_buckets.snapshot(),
            books=books() if (books := self._books.get(name)) is not None else {},
        )


class RegistryClient:
    """What actors and the supervisor hold to talk to the registry.

    Args:
        send: a send channel into the registry (the client owns it; close with
            :meth:`aclose`).
    """

    def __init__(self, send: trio.MemorySendChannel[RegistryEvent]) -> None:
        self._send = send

    def clone(self) -> RegistryClient:
        """A client with its own clone of the channel, for another task to own."""
        return RegistryClient(self._send.clone())

    async def report(self, event: RegistryEvent) -> None:
        """Send one event.

        Cancellation: atomic; a cancelled report delivered nothing.
        """
        await self._send.send(event)

    async def permit(self, host: str, rate: tuple[int, float] | None = None) -> None:
        """Wait until a connection attempt to ``host`` may start.

        Args:
            host: the host to connect to.
            rate: the exchange's ``(attempts, seconds)`` limit, or ``None`` for the
                supervisor's default.

        Cancellation: may be partial: a cancelled wait may leave its reserved slot
        unused, which only makes pacing stricter.
        """
        send, receive = trio.open_memory_channel[float](1)
        await self._send.send(PermitRequest(host=host, reply=send, rate=rate))
        async with receive:
            at = await receive.receive()
        await trio.sleep_until(at)

    async def snapshot(self) -> Stats:
        """The current :class:`Stats`.

        Raises:
            trio.BrokenResourceError: the registry has stopped (it answers every
                request queued before it stopped, so nothing waits for ever).

        Cancellation: atomic.
        """
        send, receive = trio.open_memory_channel[Stats](1)
        await self._send.send(SnapshotRequest(reply=send))
        async with receive:
            return await receive.receive()

    async def aclose(self) -> None:
        """Close this client's channel. Idempotent.

        Cancellation: the channel is closed even if this is cancelled (closing a memory
        channel end is immediate; trio checkpoints only afterwards).
        """
        await self._send.aclose()
