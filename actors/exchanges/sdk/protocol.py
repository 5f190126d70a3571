"""The sans-IO adapter contract every exchange implements.

Rules of this file:

- An adapter never imports trio, trio_websocket, httpx or anyio, never reads a clock and
  never sends anything. Time arrives as ``now`` (the caller's monotonic clock, seconds)
  and ``received_at`` (Unix time, for stamping messages).
- Everything the caller must do comes back as data: frames to write
  (:meth:`ExchangeProtocol.frames_to_send`), control events
  (:meth:`ExchangeProtocol.events`), and a deadline by which :meth:`tick` must be called
  (:meth:`ExchangeProtocol.deadline`).
- State lives in :class:`AdapterState`; the legal transitions are in ``TRANSITIONS``
  below and nowhere else. An illegal one raises ``LocalProtocolError`` and leaves the
  state unchanged. The rest of an adapter's state lives in SDK objects that own it: the
  :class:`SubscriptionBook` (topic states, request ids, acks), the :class:`BookChain`
  (book sequences), the :class:`Heartbeat` policy (timers) and, for paced requests, a
  :class:`Pacer`. Subclasses change state only through the methods under "for
  subclasses" below, never by touching this class's fields.

The caller's loop, for one session::

    proto.start_session(now)                      # queues (paced) subscribe frames
    loop:
        write every frame in proto.frames_to_send()
        handle every event in proto.events()
        wait for a frame until min(proto.deadline(), stale deadline)
        on timeout: proto.tick(now)
        on a frame: batch = proto.receive_frame(data, now, received_at)
                    write its frames, handle its events, then deliver batch
    proto.end_session()

At any time, ``proto.send(Subscribe(...) | Unsubscribe(...), now)`` changes what the
connection subscribes, now (frames to write) and for every later session.

Liveness the base keeps for every adapter (sans-IO; the caller only calls :meth:`tick`
by :meth:`deadline`):

- **Probes.** The caller decides *when* to probe (after half of ``stale_after`` without
  any frame: it sees WebSocket control frames, the adapter does not) and calls
  :meth:`probe`; the adapter says *how*: its own request (:meth:`_probe_frame`: OKX
  ``ping``, Deribit ``public/test``, Bybit ``{"op":"ping"}``) or, by default, a
  WebSocket ping the caller sends. An adapter that recognises the answer calls
  :meth:`probe_answered`, which reports the round trip as ``ProbeAnswered`` (the answer
  to a heartbeat ping of the policy's counts too).
- **Acks have a deadline.** Once every request frame of the session is written, acks
  are due within ``stale_after`` (:attr:`acks`) of the last request or answer. The
  topics still pending are requested once more; if they are still unanswered after
  another ``stale_after`` they fail with code ``timeout`` ("no acknowledgement"), so a
  lost ack never leaves a connection ``subscribing`` for ever.
- **Data per subscription** (``silent_after``, off by default). Adapters call
  :meth:`heard` with the topic of every data frame (adapters without topics,
  ``tracks_topics = False``, count any data for all); the counts feed the per-subscription
  stats whether or not ``silent_after`` is set. A confirmed topic without data for
  ``silent_after`` seconds is marked ``silent`` (``SubscriptionSilent``), unsubscribed
  and subscribed again once; data makes it ``live`` again (``Subscribed``). When every
  confirmed topic is silent, the session is dead in all but name: ``HeartbeatMissed``.
"""

from __future__ import annotations

import abc
import collections
import enum
import math
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar, TypeVar

import msgspec

from actors._errors import ConfigError, LocalProtocolError
from actors._spec import ConnectionSpec
from actors.exchanges.messages import (
    Batch,
    BookSnapshot,
    Command,
    Event,
    HeartbeatMissed,
    MalformedFrame,
    Message,
    ProbeAnswered,
    Subscribe,
    Subscribed,
    SubscriptionFailed,
    SubscriptionSilent,
)
from actors.exchanges.sdk.books import BookChain, Mark, default_mark
from actors.exchanges.sdk.booksync import SyncRule
from actors.exchanges.sdk.heartbeat import Heartbeat, ServerPings
from actors.exchanges.sdk.liveness import AckClock, DataClocks
from actors.exchanges.sdk.pacing import Pacer
from actors.exchanges.sdk.rest import (
    DEFAULT_TIME_REFRESH,
    INSTRUMENTS,
    TIME,
    RestCall,
    RestSchedule,
    clock_offset,
    unknown_symbols,
)
from actors.exchanges.sdk.stamp import InvalidValue, Stamp
from actors.exchanges.sdk.subscriptions import Outcome, SubscriptionBook

__all__ = ["TRANSITIONS", "AdapterState", "ExchangeProtocol", "Frame"]

_T = TypeVar("_T")

#: What goes over the WebSocket: text frames as ``str``, binary frames as ``bytes``.
Frame = str | bytes


class AdapterState(enum.Enum):
    """Where an adapter is in its session."""

    #: No session: before the first connect or after one ended.
    IDLE = "idle"
    #: Connected; subscribe frames queued or sent, acks outstanding (also after a
    #: run-time ``Subscribe`` until its acks arrive).
    SUBSCRIBING = "subscribing"
    #: Every subscription is confirmed; data flows.
    LIVE = "live"


#: The legal transitions: (from, to). Everything else is a LocalProtocolError.
TRANSITIONS: frozenset[tuple[AdapterState, AdapterState]] = frozenset(
    {
        (AdapterState.IDLE, AdapterState.SUBSCRIBING),
        (AdapterState.SUBSCRIBING, AdapterState.LIVE),
        (AdapterState.SUBSCRIBING, AdapterState.IDLE),
        (AdapterState.LIVE, AdapterState.IDLE),
        # send(Subscribe(...)) at run time: new acks outstanding.
        (AdapterState.LIVE, AdapterState.SUBSCRIBING),
    }
)


class ExchangeProtocol(abc.ABC):
    """One exchange's protocol for one connection, as a plain object.

    The object lives as long as its connection (across sessions); per-session state is
    reset by :meth:`start_session`. An adapter declares its tables (class attributes)
    and writes its codecs: :meth:`_configure` (routes for a spec), :meth:`topics`,
    :meth:`_subscribe` / :meth:`_unsubscribe` (requests, queued with
    :meth:`send_at`/:meth:`send_now`, ids from :attr:`book`), and :meth:`decode` (one
    frame in, messages out; acks reported with :meth:`confirm` / :meth:`refuse` /
    :meth:`report`, gaps with :meth:`chain`), plus :meth:`_check` for config. It may
    choose a heartbeat policy (:meth:`_heartbeat`) and override :meth:`_on_start` (to
    send a setup request first), :meth:`_on_end`, :meth:`_timer`, :meth:`_on_tick`.
    docs/adapters.md walks through writing one.

    Args:
        spec: the connection this adapter serves (name, channels, symbols, ...).
        pacer: the shared request budget (see :attr:`shared_pacing`), if any.
    """

    #: The ``exchange`` value that selects this adapter in config.
    exchange: ClassVar[str]
    #: The endpoint used when the config gives no ``url``; ``None`` makes ``url`` required.
    default_url: ClassVar[str | None] = None
    #: ``(burst, spacing)`` of a request budget the exchange counts per IP or account
    #: rather than per connection; the supervisor then shares one :class:`Pacer` among
    #: all connections of this exchange to the same host. ``None``: no shared budget.
    shared_pacing: ClassVar[tuple[int, float] | None] = None
    #: ``(attempts, seconds)``: the exchange's connection-attempt limit per IP; the
    #: registry paces connects to the host accordingly. ``None``: the supervisor's
    #: ``connect_attempts`` / ``connect_interval``.
    connect_rate: ClassVar[tuple[int, float] | None] = None
    #: Does :meth:`decode` call :meth:`heard` with each data frame's topic? If not, any
    #: data message counts as data on every topic.
    tracks_topics: ClassVar[bool] = True
    #: Whose REST limits apply to this adapter's REST calls (a venue of
    #: :data:`actors.net.rest.VENUES`); ``None``: the adapter makes no REST calls.
    rest_venue: ClassVar[str | None] = None
    #: The venue's REST origin when config gives no ``rest.base_url``.
    rest_url: ClassVar[str | None] = None

    def __init__(self, spec: ConnectionSpec, *, pacer: Pacer | None = None) -> None:
        self.spec = spec
        #: Builds this connection's messages (connection and exchange filled in).
        self.stamp = Stamp(spec.name, self.exchange)
        if pacer is None and self.shared_pacing is not None:
            pacer = Pacer(*self.shared_pacing)
        #: The shared request pacer (see :attr:`shared_pacing`), or None.
        self.pacer = pacer
        #: Topic states and this session's requests.
        self.book = SubscriptionBook()
        #: Book-sequence chains of this session.
        self.chains = BookChain()
        #: The heartbeat policy.
        self.heartbeat = self._heartbeat()
        self._state = AdapterState.IDLE
        self._pending_frames: list[Frame] = []
        #: Topics unsubscribed at run time this session (see :meth:`unrouted`).
        self._dropped: set[str] = set()
        self._events: list[Event] = []
        self._scheduled: collections.deque[tuple[float, Frame]] = collections.deque()
        self._released_at = -math.inf
        #: The caller's time as of the last call that passed one.
        self._now = 0.0
        #: When this session's acks are due (within ``stale_after``).
        self.acks = AckClock(spec.stale_after)
        #: The subscriptions' data clocks (``silent_after``).
        self.data = DataClocks(spec.silent_after, per_topic=self.tracks_topics)
        #: When the probe (or heartbeat ping) now awaiting its answer was queued.
        self._probe_sent_at: float | None = None
        #: The venue's clock minus ours, in seconds, from the last server-time answer;
        #: ``None`` until one arrived.
        self.clock_offset: float | None = None
        #: When each REST purpose is due (built on first use: it needs the spec's calls).
        self._rest_schedule: RestSchedule | None = None
        #: Instrument lists answered so far, by purpose.
        self._listed: dict[str, frozenset[str]] = {}
        #: Topics of symbols the venue does not list -> (code, message) of their failure.
        self._unknown: dict[str, tuple[str, str]] = {}

    # -- configuration -------------------------------------------------------------

    @classmethod
    def check(cls, spec: ConnectionSpec) -> list[tuple[str, str]]:
        """Problems with a connection spec that only this adapter can see.

        Args:
            spec: the decoded connection.

        Returns:
            ``(key, problem)`` pairs, e.g. ``("url", "missing (...)")``; empty when the
            spec is usable.
        """
        problems: list[tuple[str, str]] = []
        if spec.url is None and cls.default_url is None:
            problems.append(
                (
                    "url",
                    f"missing (expected a ws:// or wss:// URL; the {cls.exchange} adapter "
                    "has no default endpoint)",
                )
            )
        problems += cls._check(spec)
        if not problems and cls.book_rule is not None and spec.book_sync:
            problems += cls(spec)._book_conflicts()
        return problems

    @classmethod
    def _check(cls, spec: ConnectionSpec) -> list[tuple[str, str]]:
        """The adapter's own checks (usually its ``config.check``), worded with
        ``sdk.checks``; :meth:`check` adds the ones every adapter shares."""
        return []

    @property
    def url(self) -> str:
        """The WebSocket URL to open: the configured one, else the adapter's default."""
        url = self.spec.url or self.default_url
        if url is None:  # pragma: no cover - check() rejects this config
            raise ValueError(f"connection {self.spec.name!r} has no url")
        return url

    @property
    def subscriptions(self) -> dict[str, str]:
        """Every subscription's state by native topic: ``pending``, ``live``, or
        ``failed: CODE MESSAGE``; kept across sessions for stats."""
        return self.book.states

    def mark(self, message: Message) -> Mark | None:
        """Where ``message`` puts its stream, for make-before-break (see sdk.books).

        Called only while a handover is under way, once per message the old session
        delivers, the successor buffers, or the successor delivers while filtering; never
        on the ordinary path. Override it when the venue's ids say more than
        :func:`~actors.exchanges.sdk.default_mark` can read (Deribit's ``ETH-123``), or
        less (two id spaces that become the same message type, as Binance's ``@trade``
        and ``@aggTrade``).
        """
        return default_mark(message)

    # -- state ---------------------------------------------------------------------

    @property
    def state(self) -> AdapterState:
        """The current :class:`AdapterState`."""
        return self._state

    def _move(self, new: AdapterState, why: str) -> None:
        if (self._state, new) not in TRANSITIONS:
            raise LocalProtocolError(
                f"{why} is not allowed while {type(self).__name__} for connection "
                f"{self.spec.name!r} is {self._state.name}; end the session first"
            )
        self._state = new

    # -- session -------------------------------------------------------------------

    def start_session(self, now: float) -> None:
        """A new connection is open: reset per-session state and queue subscriptions.

        Side effects for the caller: write :meth:`frames_to_send`, handle :meth:`events`,
        call :meth:`tick` by :meth:`deadline`.

        Raises:
            LocalProtocolError: a session is already running.
        """
        self._move(AdapterState.SUBSCRIBING, "start_session")
        self._events.clear()
        self._forget_session()
        self._now = now
        self.acks.reset(now)
        self.heartbeat.start(now)
        self._on_start(now)
        self._release(now)
        self._maybe_live()

    def end_session(self) -> None:
        """The connection is gone; forget per-session state. Idempotent."""
        if self._state is not AdapterState.IDLE:
            self._move(AdapterState.IDLE, "end_session")
        self._on_end()
        self._forget_session()
        self.heartbeat.stop()

    def _forget_session(self) -> None:
        self._pending_frames.clear()
        self._scheduled.clear()
        self._dropped.clear()
        self.book.new_session()
        self.chains.clear()
        self.data.reset()
        self._probe_sent_at = None

    def frames_to_send(self) -> list[Frame]:
        """Frames the caller must write now, in order; the adapter forgets them."""
        out, self._pending_frames = self._pending_frames, []
        return out

    def events(self) -> list[Event]:
        """Control events produced since the last call; the adapter forgets them."""
        out, self._events = self._events, []
        return out

    @property
    def has_output(self) -> bool:
        """Are frames or events waiting (so the caller need not poll otherwise)?"""
        return bool(self._pending_frames or self._events)

    def deadline(self) -> float:
        """The caller's monotonic time by which :meth:`tick` must be called (or ``inf``)."""
        if self._scheduled:
            due = self._scheduled[0][0]
        elif self.book.settled:
            due = math.inf
        else:
            due = self.acks.due
        return min(due, self.heartbeat.deadline(), self._timer(), self.data.next_check)

    def tick(self, now: float) -> None:
        """Time passed: release paced frames that are due, run heartbeat timers, check
        ack deadlines and silent subscriptions.

        Side effects for the caller: write :meth:`frames_to_send`, handle :meth:`events`.
        """
        self._now = now
        self._release(now)
        frame, missed = self.heartbeat.tick(now)
        if frame is not None:
            self._pending_frames.append(frame)
            self._probe_sent_at = now  # an answer is timed against the newest ping
        if missed is not None:
            self._events.append(missed)
        if (
            self._state is not AdapterState.IDLE
            and not self._scheduled
            and not self.book.settled
            and now >= self.acks.due
        ):
            self._acks_overdue(now)
        if now >= self.data.next_check:
            self._check_silence(now)
        self._on_tick(now)

    def probe(self, now: float) -> bool:
        """The caller found the connection quiet: queue the adapter's probe, if it has
        one.

        Returns:
            True if the adapter probes: a probe frame was queued (write
            :meth:`frames_to_send`), or its heartbeat policy pings within half of
            ``stale_after`` by itself; False if the caller must send a WebSocket ping
            instead (RFC 6455 section 5.5.2: the peer must answer it).
        """
        self._now = now
        if self.heartbeat.pings_within(self.spec.stale_after / 2):
            return True
        frame = self._probe_frame(now)
        if frame is None:
            return False
        self._pending_frames.append(frame)
        self._probe_sent_at = now
        return True

    def receive_frame(self, data: Frame, now: float, received_at: float) -> Batch:
        """Take one received frame; return the messages to deliver (maybe empty).

        Every frame is a sign of life for the heartbeat policy. Control events and reply
        frames are queued for :meth:`events` and :meth:`frames_to_send`. A frame that
        cannot be understood queues a ``MalformedFrame`` event and never raises; so does a
        frame carrying a value no market has (a NaN or negative price, a negative size or
        timestamp: see :mod:`~actors.exchanges.sdk.stamp`), kind ``invalid_value``, and
        none of that frame's messages is delivered.
        """
        self._now = now
        self.heartbeat.received(now)
        try:
            batch = self.decode(data, now, received_at)
        except InvalidValue as exc:
            self.malformed("invalid_value", str(exc), data)
            return ()
        except (UnicodeDecodeError, RecursionError) as exc:
            # msgspec raises these, not DecodeError, for invalid UTF-8 in a binary frame
            # and for nesting past Python's recursion limit: still only a bad frame.
            self.malformed("invalid_json", f"{type(exc).__name__}: {exc}", data)
            return ()
        if not self.tracks_topics and batch:
            for topic in self.data.any_data(now):
                self._resumed(topic)
        return batch

    # -- liveness (see the module docstring) ---------------------------------------------

    def _acks_overdue(self, now: float) -> None:
        """Acks are overdue: request the pending topics again, or fail retried ones."""
        again, give_up = self.acks.overdue(now, self.book.pending())
        if give_up:
            message = f"no acknowledgement within {self.acks.timeout:g} s of two requests"
            self.report([self.book.refuse(topic, "timeout", message) for topic in give_up])
        if again:
            self._subscribe(now, again)
            self._release(now)

    def heard(self, topic: str) -> None:
        """A data frame of ``topic`` arrived (call it from :meth:`decode` for every data
        frame: it counts the topic's messages for the stats and ends a silent spell)."""
        if self.data.heard(topic, self._now):
            self._resumed(topic)

    def _resumed(self, topic: str) -> None:
        if self.book.states.get(topic) == "silent":
            self.book.set_silent(topic, False)
            self._events.append(Subscribed(topics=(topic,)))

    def _check_silence(self, now: float) -> None:
        if self._state is AdapterState.IDLE:
            return
        newly, every = self.data.check(now, self.book.live())
        if not newly:
            return
        for topic, silent_for in newly:
            self.book.set_silent(topic, True)
            self._events.append(SubscriptionSilent(topic=topic, silent_for=silent_for))
        if every or not self.tracks_topics:  # one clock for all: silent together
            self._events.append(
                HeartbeatMissed(
                    detail=f"every subscription silent for {self.data.limit:g} s: data "
                    "stopped while the connection stays up"
                )
            )
            return
        # Ask again once per silent spell; the answer does not make it live, data does.
        topics = [topic for topic, _ in newly]
        self._unsubscribe(now, topics)
        self._subscribe(now, topics)
        self._release(now)

    def send(self, command: Command, now: float) -> None:
        """Change the subscriptions at run time; they then hold for every later session.

        ``Subscribe`` adds channels, symbols and raw topics; ``Unsubscribe`` removes them.
        The changed connection must pass :meth:`check` as config would. Outside a session
        only the plan changes (the next session subscribes it); inside one, the new
        topics are requested (paced like the opening ones, state ``SUBSCRIBING`` until
        their acks) and the dropped ones unsubscribed, and their states forgotten.

        Side effects for the caller: write :meth:`frames_to_send`, handle :meth:`events`.

        Raises:
            ConfigError: the changed connection is not valid; nothing changed.
        """
        self._now = now
        spec = self.spec
        if isinstance(command, Subscribe):
            changed = msgspec.structs.replace(
                spec,
                channels=tuple(dict.fromkeys(spec.channels + command.channels)),
                symbols=tuple(dict.fromkeys(spec.symbols + command.symbols)),
                raw=tuple(dict.fromkeys(spec.raw + command.raw)),
            )
        else:
            changed = msgspec.structs.replace(
                spec,
                channels=tuple(c for c in spec.channels if c not in command.channels),
                symbols=tuple(s for s in spec.symbols if s not in command.symbols),
                raw=tuple(t for t in spec.raw if t not in command.raw),
            )
        problems = type(self).check(changed)
        if problems:
            raise ConfigError(
                [
                    f"{type(command).__name__} on connection {spec.name!r}: "
                    f"connections.{spec.name}.{key}: {problem}"
                    for key, problem in problems
                ]
            )
        before = self.topics()
        self.spec = changed
        self._configure(changed)
        after = self.topics()
        kept = set(after)
        removed = [t for t in before if t not in kept]
        existing = set(before)
        added = [t for t in after if t not in existing]
        states = self.book.states
        # Topics refused or never confirmed (an unknown symbol) have nothing to end.
        active = [t for t in removed if not states.get(t, "failed").startswith("failed")]
        self.book.forget(removed)
        if self._state is AdapterState.IDLE:
            return
        self._dropped.update(removed)
        self._dropped.difference_update(added)
        if active:
            self._unsubscribe(now, active)
        if added:
            if self._state is AdapterState.LIVE:
                self._move(AdapterState.SUBSCRIBING, f"{type(command).__name__} at run time")
            self.expect(added)
            self._subscribe(now, added)
        self._release(now)
        self._maybe_live()

    # -- REST (see the module docstring) -----------------------------------------------

    def rest_requests(self, now: float) -> list[RestCall]:
        """The REST calls due at ``now``; they count as in flight until answered.

        Side effects for the caller: make each call (``GET`` on the connection's REST
        client) and hand back its answer with :meth:`receive_rest` or its failure with
        :meth:`rest_failed`; ask again by :meth:`rest_deadline`.
        """
        calls = self._rest_calls()
        return [calls[purpose] for purpose in self._schedule(calls).take(now)]

    def rest_deadline(self) -> float:
        """The caller's monotonic time by which :meth:`rest_requests` has calls due."""
        return self._schedule(self._rest_calls()).deadline()

    def receive_rest(
        self, call: RestCall, body: object, now: float, *, sent_at: float, received_at: float
    ) -> list[str]:
        """Take the answer to ``call``.

        A server time sets :attr:`clock_offset`. Once every instrument list has come,
        the subscriptions of configured symbols the venue does not list are marked
        failed (``unknown symbol (did you mean X?)``) and never requested again; the
        connection may go live without them.

        Args:
            call: the call answered (from :meth:`rest_requests`).
            body: the decoded JSON body.
            now: the caller's monotonic time.
            sent_at: our Unix time when the request was sent.
            received_at: our Unix time when the answer arrived.

        Returns:
            Problems for the operator, one line each (an unknown symbol, with a
            suggestion); the caller logs them once.

        Raises:
            ValueError: the answer does not have the expected shape; the call counts as
                failed (call :meth:`rest_failed`).
        """
        schedule = self._schedule(self._rest_calls())
        if call.purpose == TIME:
            server = self._server_time(body)
            if server is None:
                raise ValueError(f"{call.path}: the answer carries no server time")
            self.clock_offset = clock_offset(server, sent_at, received_at)
            schedule.succeeded(TIME, now)
            return []
        names = self._listed_names(call, body)
        if names is None:
            raise ValueError(f"{call.path}: the answer carries no instrument list")
        self._listed[call.purpose] = frozenset(names)
        schedule.succeeded(call.purpose, now)
        wanted = [p for p in self._rest_calls() if p.startswith(INSTRUMENTS)]
        if not all(purpose in self._listed for purpose in wanted):
            return []
        return self._check_symbols(frozenset().union(*self._listed.values()))

    def rest_failed(self, call: RestCall, now: float) -> tuple[float, int]:
        """``call`` failed (an error, a timeout, an answer not understood).

        Returns:
            ``(delay, failures)``: it is due again ``delay`` seconds from ``now``; it
            has failed ``failures`` times in a row.
        """
        return self._schedule(self._rest_calls()).failed(call.purpose, now)

    def adopt_rest(self, other: ExchangeProtocol) -> None:
        """Take over what ``other`` (the adapter this one succeeds) learnt by REST: the
        clock offset, the instrument lists and the unknown symbols, so a successor
        session does not request them again (the server time is still refreshed)."""
        self.clock_offset = other.clock_offset
        self._listed = dict(other._listed)
        self._unknown = dict(other._unknown)
        schedule = self._schedule(self._rest_calls())
        for purpose in self._listed:
            if purpose in self._rest_calls():
                schedule.succeeded(purpose, self._now)

    def _schedule(self, calls: dict[str, RestCall]) -> RestSchedule:
        schedule = self._rest_schedule
        if schedule is None:
            refresh: dict[str, float | None] = {
                purpose: DEFAULT_TIME_REFRESH if purpose == TIME else None for purpose in calls
            }
            schedule = self._rest_schedule = RestSchedule(refresh)
        return schedule

    def _rest_calls(self) -> dict[str, RestCall]:
        """Every REST call of this adapter by purpose (none without a ``rest_venue``)."""
        if self.rest_venue is None:
            return {}
        calls = [self._time_call(), *self._instrument_calls()]
        return {call.purpose: call for call in calls if call is not None}

    def _check_symbols(self, listed: frozenset[str]) -> list[str]:
        """Fail the subscriptions of configured symbols that ``listed`` lacks."""
        by_symbol = self._symbol_topics()
        problems = []
        for native, close in unknown_symbols(by_symbol, listed).items():
            hint = f"did you mean {close}?" if close else f"{self.exchange} lists no such symbol"
            topics = by_symbol[native]
            for topic in topics:
                self._unknown[topic] = ("unknown", f"symbol ({hint})")
            self._fail_unknown(topics)
            problems.append(
                f"unknown symbol {native!r} ({hint}): its subscriptions "
                f"{', '.join(topics)} failed; the others run on"
            )
        self._maybe_live()
        return problems

    def _fail_unknown(self, topics: list[str]) -> None:
        """Show ``topics`` (of unknown symbols) as failed; no ack is awaited for them."""
        book = self.book
        for topic in topics:
            code, message = self._unknown[topic]
            book.expect((topic,))
            book.refuse(topic, code, message)

    def time_call(self) -> RestCall | None:
        """The venue's server-time request, for a one-off caller (``marketprism probe``);
        ``None`` when the adapter has no REST API. Read the answer with
        :meth:`server_time`."""
        return self._time_call() if self.rest_venue is not None else None

    def server_time(self, body: object) -> float | None:
        """The venue's Unix time in seconds from the answer to :meth:`time_call`
        (``None``: the answer has no such field)."""
        return self._server_time(body)

    def _time_call(self) -> RestCall | None:
        """The venue's server-time call (purpose :data:`~sdk.rest.TIME`), if any."""
        return None

    def _server_time(self, body: object) -> float | None:
        """The venue's Unix time in seconds from a server-time answer (None: no such
        field)."""
        return None

    def _instrument_calls(self) -> list[RestCall]:
        """The calls that list the venue's instruments for this spec (purposes starting
        with :data:`~sdk.rest.INSTRUMENTS`, one per list)."""
        return []

    def _listed_names(self, call: RestCall, body: object) -> Iterable[str] | None:
        """Every native name in one instrument list (None: the answer has no list)."""
        return None

    def _symbol_topics(self) -> dict[str, list[str]]:
        """The topics of each configured native symbol (what an unknown symbol fails)."""
        return {}

    # -- local books (actors/books.py keeps them; sdk/booksync.py the rules) -----------

    def book_topics(self) -> dict[str, str]:
        """The ``book`` channel's streams this spec subscribes: message symbol -> native
        topic. Only these symbols get a local book (raw topics never do). Empty when
        :attr:`book_rule` is ``None`` or the spec has no ``book`` channel."""
        if self.book_rule is None or "book" not in self.spec.channels:
            return {}
        return self._book_topics()

    def _book_conflicts(self) -> list[tuple[str, str]]:
        """Raw topics that would feed a kept book a second stream of book messages."""
        kept = self.book_topics()
        problems = []
        for topic, symbol in self._book_streams().items():
            if symbol in kept and kept[symbol] != topic:
                problems.append(
                    (
                        "raw",
                        f"{topic!r} delivers book messages of {symbol}, whose local book "
                        f"the book channel keeps from {kept[symbol]!r}, and one book "
                        "cannot follow two streams (remove it from raw, or set "
                        "book_sync = false to get both streams unchecked)",
                    )
                )
        return problems

    def book_snapshot_call(self, symbol: str) -> RestCall | None:
        """The REST request for a snapshot of ``symbol``'s book (``spec.book_depth``
        levels where the venue lets us choose), for rules with ``rest_snapshot``; its
        purpose is ``book SYMBOL``. ``None``: the venue has no such call."""
        return None

    def book_snapshot(self, symbol: str, body: object, received_at: float) -> BookSnapshot:
        """The answer to :meth:`book_snapshot_call` as a :class:`BookSnapshot`.

        Raises:
            ValueError: the answer is not a book (an error body, a missing sequence).
        """
        raise ValueError(f"{self.exchange} has no REST book snapshot")

    def resync_book(self, symbol: str, now: float) -> bool:
        """Subscribe ``symbol``'s book stream again, for a fresh snapshot (venues whose
        stream starts with one: OKX, Deribit, Bybit). The unsubscribe and subscribe are
        paced like every request.

        Side effects for the caller: write :meth:`frames_to_send`.

        Returns:
            False if nothing was sent: the venue's stream has no snapshot (REST it is),
            no session, or the topic is not live (its next subscription brings a
            snapshot anyway).
        """
        rule = self.book_rule
        topic = self.book_topics().get(symbol)
        if rule is None or rule.rest_snapshot or topic is None:
            return False
        if self._state is AdapterState.IDLE:
            return False
        if self.book.states.get(topic) != "live":
            return False
        self._now = now
        self._unsubscribe(now, [topic])
        self._subscribe(now, [topic])
        self._release(now)
        return True

    # -- for subclasses ------------------------------------------------------------

    #: The sync rule of the ``book`` channel's stream (:mod:`~actors.exchanges.sdk.booksync`);
    #: ``None``: this adapter keeps no local books.
    book_rule: ClassVar[SyncRule | None] = None

    def _book_topics(self) -> dict[str, str]:
        """Message symbol -> native topic of each ``book`` channel stream of the spec."""
        return {}

    def _book_streams(self) -> dict[str, str]:
        """Every topic of the spec (channel or raw) whose frames become BookSnapshot or
        BookDelta messages -> their symbol (the check that no raw topic feeds a kept
        book a second stream)."""
        return {}

    @abc.abstractmethod
    def decode(self, data: Frame, now: float, received_at: float) -> Batch:
        """One frame in, the messages to deliver out (see :meth:`receive_frame`)."""

    def _on_start(self, now: float) -> None:
        """Queue the session's opening frames: by default, subscribe every topic.

        Adapters with per-session setup (a pacer to reset, a heartbeat request) do it
        and then call this.
        """
        unknown = self._unknown
        topics = [topic for topic in self.topics() if topic not in unknown]
        if unknown:
            self._fail_unknown(list(unknown))
        self.expect(topics)
        if topics:
            self._subscribe(now, topics)

    @abc.abstractmethod
    def topics(self) -> list[str]:
        """Every native topic the current spec subscribes, in request order."""

    @abc.abstractmethod
    def _configure(self, spec: ConnectionSpec) -> None:
        """(Re)build routing tables for ``spec`` (at construction and on ``send``)."""

    @abc.abstractmethod
    def _subscribe(self, now: float, topics: list[str]) -> None:
        """Queue the requests that subscribe ``topics`` (their acks are expected)."""

    @abc.abstractmethod
    def _unsubscribe(self, now: float, topics: list[str]) -> None:
        """Queue the requests that end ``topics`` (their replies confirm nothing)."""

    def _heartbeat(self) -> Heartbeat:
        """The heartbeat policy for :attr:`spec` (default: the server pings)."""
        return ServerPings()

    def _on_end(self) -> None:  # noqa: B027 - optional hook
        """Forget per-session state of the subclass (before the base forgets its own)."""

    def _timer(self) -> float:
        """The subclass's own next timer deadline, or ``inf``."""
        return math.inf

    def _on_tick(self, now: float) -> None:  # noqa: B027 - optional hook
        """The subclass's own timers are due (or may be)."""

    def _probe_frame(self, now: float) -> Frame | None:
        """The adapter's probe request, or None for a WebSocket ping (the default)."""
        return None

    def probe_answered(self) -> None:
        """The answer to our probe or heartbeat ping arrived: report its round trip."""
        sent = self._probe_sent_at
        if sent is not None:
            self._probe_sent_at = None
            self._events.append(ProbeAnswered(rtt=self._now - sent))

    def emit(self, event: Event) -> None:
        """Queue a control event for the caller."""
        self._events.append(event)

    def send_now(self, frame: Frame) -> None:
        """Queue a frame to write now."""
        self._pending_frames.append(frame)

    def send_at(self, at: float, frame: Frame) -> None:
        """Queue a frame to write at ``at`` (calls must come in non-decreasing ``at``)."""
        self._scheduled.append((at, frame))

    def drop_scheduled(self) -> None:
        """Forget every frame scheduled but not yet released (a dying session)."""
        self._scheduled.clear()

    @property
    def next_release(self) -> float:
        """The time the next scheduled frame is due (``inf`` if none)."""
        return self._scheduled[0][0] if self._scheduled else math.inf

    @property
    def released_at(self) -> float:
        """The last time scheduled frames were released: every frame due by then was
        handed to the caller (so, for a budget, spent)."""
        return self._released_at

    def _release(self, now: float) -> None:
        self._released_at = now
        scheduled = self._scheduled
        if scheduled and scheduled[0][0] <= now:
            self.acks.restart(now)  # requests written: their acks are due from now
            while scheduled and scheduled[0][0] <= now:
                self._pending_frames.append(scheduled.popleft()[1])

    def expect(self, topics: Iterable[str]) -> None:
        """These topics are requested this session; their acks are outstanding."""
        self.book.expect(topics)
        self.acks.restart(self._now)

    def confirm(self, topics: Sequence[str]) -> None:
        """The exchange acknowledged ``topics``."""
        self.report([self.book.confirm(topics)])

    def refuse(self, topic: str, code: str, message: str) -> None:
        """The exchange refused ``topic``."""
        self.report([self.book.refuse(topic, code, message)])

    def report(self, outcomes: Iterable[Outcome]) -> None:
        """Turn the book's outcomes into ``Subscribed`` / ``SubscriptionFailed`` events."""
        events = self._events
        now = self._now
        self.acks.restart(now)
        for topics, refusal in outcomes:
            if refusal is None:
                if self._unknown and any(topic in self._unknown for topic in topics):
                    # A late ack of a symbol the venue does not list: it stays failed.
                    self._fail_unknown([t for t in topics if t in self._unknown])
                    topics = tuple(t for t in topics if t not in self._unknown)
                if topics:
                    data = self.data
                    data.confirmed(topics, now)
                    for topic in topics:
                        if topic in data.silent:
                            # The answer to the request after a silent spell: still
                            # silent until data comes.
                            self.book.set_silent(topic, True)
                    events.append(Subscribed(topics=topics))
            else:
                code, message = refusal
                if self._unknown and any(topic in self._unknown for topic in topics):
                    # The venue refusing a symbol it does not list: the operator was told
                    # already, with a suggestion, which the state keeps.
                    self._fail_unknown([t for t in topics if t in self._unknown])
                    topics = tuple(t for t in topics if t not in self._unknown)
                events.extend(
                    SubscriptionFailed(topic=topic, code=code, message=message) for topic in topics
                )
        self._maybe_live()

    def chain(self, key: object, symbol: str, prev: int, seq: int) -> None:
        """A book delta ``prev -> seq`` of stream ``key``: report a gap if it breaks."""
        gap = self.chains.check(key, symbol, prev, seq)
        if gap is not None:
            self._events.append(gap)

    def _maybe_live(self) -> None:
        if self._state is AdapterState.SUBSCRIBING and self.book.settled:
            self._move(AdapterState.LIVE, "confirming subscriptions")

    def parse(self, decode: Callable[[Frame], _T], data: Frame) -> _T | None:
        """Decode ``data`` with one of the adapter's msgspec decoders, or report it.

        A frame that is not JSON is reported as ``invalid_json``, JSON of another shape as
        ``invalid_frame``; either way the result is None and the session goes on.
        """
        try:
            return decode(data)
        except msgspec.ValidationError as exc:
            self.malformed("invalid_frame", str(exc), data)
        except msgspec.DecodeError as exc:
            self.malformed("invalid_json", str(exc), data)
        return None

    def unrouted(self, topic: str, kind: str, detail: str, data: Frame) -> None:
        """Data for ``topic``, which the adapter has no route for: a malformed frame,
        unless the topic was unsubscribed at run time this session (frames the exchange
        sent before it took the unsubscribe are still on their way: dropped quietly)."""
        if topic not in self._dropped:
            self.malformed(kind, detail, data)

    def malformed(self, kind: str, detail: str, data: Frame) -> None:
        """Queue a MalformedFrame event for ``data``."""
        sample = data if isinstance(data, str) else data.decode("utf-8", "replace")
        self._events.append(MalformedFrame(kind=kind, detail=detail, sample=sample[:200]))
