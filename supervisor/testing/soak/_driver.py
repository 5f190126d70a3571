"""The soak's driver: the supervisor, its fakes, a consumer, rounds of faults, checkpoints.

Theory of operation
-------------------
One Trio run holds everything: the fakes (:mod:`._venues`), the real supervisor from
``open_supervisor`` with the configuration pointed at them, a consumer reading
``sup.batches()`` into the :class:`~._ledger.Ledger`, and the :class:`Driver` below. The
connector the supervisor gets is the transport's own (``route`` over the fakes in
memory, the production ``TcpTlsConnector`` over loopback) wrapped in an
:class:`Observer`, which only records when the client opened and closed each socket:
the client-side moment a fault was *detected* (the client gave the session up).

The driver runs rounds (:func:`~._faults.draw_round`). Each fault of a round runs in
its own task: it applies the fault to its venue's fake, waits out the fault's duration
(outages, refusal windows and slow consumers last a while; that wait is the fake's,
modelling the fault, not a synchronisation), then waits for *recovery*: the newest
open session on the fake has every topic of the connection acknowledged by the fake,
and the supervisor's stats show the connection live on it (for faults that end a
session: live since after the fault, with one more connect). Waiting is driven by the
fake's own change events (``FakeExchange.changes``), each followed by
``wait_all_tasks_blocked`` so that the client has handled what the fake just wrote,
never by sleeping; the exact moments come from the stats (``state_for`` gives when the
state was entered) and the observer. When every fault of the round recovered, a quiet
period passes (sometimes longer than ``reset_after``, so backoffs reset as they do in
production); no connection may go down during it, nor during the round if no fault hit
it. Then a checkpoint:

1. every session that ended is captured (how it ended, how many frames it wrote) and
   the ledger settles what is final: for each connection it first waits until the
   consumer received the last frame its live session wrote before the checkpoint
   (everything earlier on that connection is then final: one socket delivers in
   order, and earlier sessions were delivered before later ones);
2. the supervisor must still run (expected failures never stop it);
3. open file descriptors and Trio tasks must be back at their baseline, counted once
   every task is blocked (``wait_all_tasks_blocked``); RSS is sampled;
4. the fakes forget their closed sessions (the soak keeps what it needs).

At the end the supervisor is stopped (its final stats are exact) and the counts are
compared per connection: every garbage frame counted as malformed, every gap the fake
wrote and the consumer received counted as a gap.

Bounds: a fault that ends a session must be followed by a live connection within the
backoff delay drawn for the reconnect that succeeded (``stats().backoff``; 0 when the
supervisor did not restart) + ``stale_after`` + 1 s, counted from the end of the fault:
the moment it was applied, the end of an outage or refusal window, the start of a stall
(detecting the half-open connection is part of the job) or the end of a slow consumer.
A make-before-break notice must hand over within ``stale_after`` + 1 s without a
restart. The summary reports, per fault kind, the detection and recovery times against
those bounds.

Why one class: the rounds, the faults, the recovery waits and the checkpoints share one
state (the venues, the marks on sessions the soak ended, the baselines, the records), so
:class:`Driver` is kept whole (about 480 lines) rather than scattered over modules that
would reach into each other.
"""

from __future__ import annotations

import collections
import math
import random
import sys
from typing import Final

import trio
import trio.testing

from actors.registry import ConnectionStats
from supervisor.config import Config
from supervisor.testing.fake import FakeSession
from supervisor.testing.soak._faults import (
    BUSY_INTERVAL,
    BUSY_LEAD,
    ENDS_SESSION,
    FaultKind,
    draw_round,
)
from supervisor.testing.soak._ledger import End, Ledger
from supervisor.testing.soak._observe import Link, Observer
from supervisor.testing.soak._probes import open_fds, rss_bytes, task_count, task_names
from supervisor.testing.soak._records import FaultRecord, KindStats, Leaks, SoakOptions
from supervisor.testing.soak._venues import Venue, item_of
from supervisor.tree import Supervisor

__all__ = [
    "GIVE_UP_AFTER",
    "LONG_QUIET",
    "MAX_BROKEN",
    "TCP_CUSHION",
    "Driver",
    "GiveUp",
]

#: Share of rounds followed by a quiet period longer than ``reset_after``.
LONG_QUIET: Final = 0.05
#: Seconds every task must have been blocked, over TCP, before tasks are counted (a
#: pong may be crossing loopback); 0 on the MockClock, where nothing is in flight.
TCP_CUSHION: Final = 0.05
#: Extra seconds, beyond the longest possible bound, before a fault counts as never
#: recovered (connect permits, a handover's wait).
GIVE_UP_AFTER: Final = 120.0
#: Records of faults that broke a bound kept for the report (the count is always exact).
MAX_BROKEN: Final = 1000


class GiveUp(Exception):
    """A connection never recovered: the run cannot go on meaningfully."""


class Driver:
    """Runs the rounds of one soak (see the module docstring); built by ``run_soak``.

    Args:
        options: what to run.
        config: the configuration pointed at the fakes.
        venues: the fakes, one per connection.
        sup: the running supervisor.
        observer: the connector wrapper that sees the client's sockets.
        ledger: where every message is accounted.
    """

    def __init__(
        self,
        options: SoakOptions,
        config: Config,
        venues: list[Venue],
        sup: Supervisor,
        observer: Observer,
        ledger: Ledger,
    ) -> None:
        self.options = options
        self.config = config
        self.venues = {venue.name: venue for venue in venues}
        self.sup = sup
        self.observer = observer
        self.ledger = ledger
        self.rng = random.Random(options.seed)
        self.records: list[FaultRecord] = []
        self.broken: list[FaultRecord] = []
        self.kinds: dict[FaultKind, KindStats] = {}
        self.garbage: dict[str, int] = collections.Counter()
        self.rounds = 0
        self.problems: list[str] = []
        self.leaks = Leaks()
        self.started = trio.current_time()
        self.stale_after = min(spec.stale_after for spec in config.connections)
        self.reset_after = min(spec.backoff.reset_after for spec in config.connections)
        self.specs = {spec.name: spec for spec in config.connections}
        #: (venue, session index) -> how the soak ended it, and by which fault.
        self.marks: dict[tuple[str, int], tuple[End | None, str]] = {}
        self.captured: set[tuple[str, int]] = set()
        self.slow_pause = 0.0
        self.cushion = 0.0 if options.transport == "memory" else TCP_CUSHION
        self.done = 0
        self.baseline_names: collections.Counter[str] = collections.Counter()

    # -- feeds -----------------------------------------------------------------------

    def tap(self, venue: Venue, session: FakeSession, frame: str | bytes) -> None:
        items = venue.parse(frame)
        if (venue.name, session.index) in self.captured:
            # Written after the session's end was captured (:meth:`end_now`): the client
            # had closed its socket, so this frame can never arrive.
            self.ledger.written_after_end(len(items))
            return
        self.ledger.sent(venue.name, session.index, items)

    async def consume(self) -> None:
        """Read every batch the supervisor delivers into the ledger, until it stops.

        While a slow-consumer fault is on, each batch takes ``slow_pause`` seconds.

        Cancellation: stops at once; a batch in hand is fully accounted first.
        """
        ledger = self.ledger
        async for batch in self.sup.batches():
            for message in batch:
                item = item_of(message)
                if item is None:
                    ledger.other()
                else:
                    ledger.delivered(message.connection, item)
            if self.slow_pause:
                await trio.sleep(self.slow_pause)  # the slow consumer: latency it models

    # -- helpers ---------------------------------------------------------------------

    def now(self) -> float:
        return trio.current_time() - self.started

    async def stats(self, name: str) -> ConnectionStats:
        """The supervisor's stats of connection ``name``. Cancellation: atomic."""
        for conn in (await self.sup.stats()).connections:
            if conn.name == name:
                return conn
        raise AssertionError(f"no stats for {name!r}")

    def live_at(self, conn: ConnectionStats, at: float) -> float:
        return at - conn.state_for

    def problem(self, record: FaultRecord | None, text: str) -> None:
        if record is not None:
            record.problems.append(text)
        else:
            self.problems.append(text)

    # -- the run ---------------------------------------------------------------------

    async def run(self) -> None:
        """Wait until every connection is live, take the baselines, run every round.

        Raises:
            GiveUp: a connection never recovered, or the supervisor stopped.

        Cancellation: stops between two steps; the faults in flight are abandoned.
        """
        for venue in self.venues.values():
            await self._steady(venue, None)
        await trio.sleep(self.stale_after / 6)  # a first quiet moment, for baselines
        await self.checkpoint(-1)
        total = self.options.faults
        warm = max(1, math.ceil(total * self.options.warmup))
        round_ = 0
        while self.done < total:
            for venue in self.venues.values():
                await self._steady(venue, None)
            calm = {name: (await self.stats(name)).disconnects for name in self.venues}
            faults = draw_round(
                self.rng,
                first=self.done,
                budget=total - self.done,
                venues=[(v.name, v.has_notice) for v in self.venues.values()],
                kinds=self.options.kinds,
                stale_after=self.stale_after,
                max_outage=self.options.max_outage,
            )
            self.done += len(faults)
            records = [FaultRecord(fault, round_, self.now()) for fault in faults]
            async with trio.open_nursery() as nursery:
                for record in records:
                    nursery.start_soon(self.run_fault, record)
            for record in records:
                self.fold(record)
            if self.rng.random() < LONG_QUIET:
                quiet = self.reset_after * self.rng.uniform(1.0, 1.5)
            else:
                quiet = self.stale_after * self.rng.uniform(0.03, 0.3)
            for record in records:
                if record.fault.venue is not None:
                    calm[record.fault.venue] = record.disconnects
                elif record.fault.kind is FaultKind.SLOW:
                    calm.update(record.slow_disconnects)
            await trio.sleep(quiet)  # the market goes on quietly; not a synchronisation
            await self.check_calm(round_, calm)
            await self.checkpoint(round_)
            if self.leaks.rss_warm < 0 and self.done >= warm:
                self.leaks.rss_warm = rss_bytes()
            curve = self.leaks.rss_curve
            if not curve or self.done >= curve[-1][0] + max(1, total // 10) or self.done == total:
                curve.append((self.done, self.leaks.rss_last))
            if self.options.progress is not None:
                self.options.progress(
                    f"round {round_}: {self.done}/{total} faults at t={self.now():.1f} s "
                    f"({', '.join(r.fault.describe() for r in records)})"
                )
            round_ += 1
            self.rounds = round_

    def fold(self, record: FaultRecord) -> None:
        """Sum a finished fault up; keep its record only if asked or if it broke a bound."""
        kind = record.fault.kind
        stats = self.kinds.get(kind)
        if stats is None:
            stats = self.kinds[kind] = KindStats()
        stats.add(record)
        if kind is FaultKind.GARBAGE and record.fault.venue is not None:
            self.garbage[record.fault.venue] += 1
        if self.options.keep_records:
            self.records.append(record)
        if record.problems and len(self.broken) < MAX_BROKEN:
            self.broken.append(record)

    async def check_calm(self, round_: int, calm: dict[str, int]) -> None:
        """No connection may go down while no fault is active on it."""
        for name, disconnects in calm.items():
            conn = await self.stats(name)
            if conn.disconnects > disconnects:
                self.problem(
                    None,
                    f"round {round_} (t={self.now():.1f} s): {name} went down "
                    f"{conn.disconnects - disconnects} time(s) with no fault active on it; "
                    f"last error: {conn.last_error}",
                )

    # -- one fault -------------------------------------------------------------------

    async def run_fault(self, record: FaultRecord) -> None:
        """Apply one fault, wait out its duration and its recovery; fill ``record``.

        Raises:
            GiveUp: the connection never recovered.

        Cancellation: stops at once; the fake may be left refusing or stalled.
        """
        fault = record.fault
        if fault.kind is FaultKind.SLOW:
            await self.run_slow(record)
            return
        assert fault.venue is not None
        venue = self.venues[fault.venue]
        await self._run_venue_fault(record, venue, f"{fault.kind.value} #{fault.index}")

    async def _run_venue_fault(self, record: FaultRecord, venue: Venue, label: str) -> None:
        fault = record.fault
        kind = fault.kind
        fake = venue.fake
        before = await self.stats(venue.name)
        session = venue.newest_open()
        assert session is not None, f"{venue.name}: no open session at a fault"
        index = session.index
        link = self.observer.current.get(venue.name)
        start = trio.current_time()
        end = start
        if kind is FaultKind.CLOSE:
            self.marks[(venue.name, index)] = (End.CLOSED, label)
            await fake.close(fault.code, "soak: close", session=index)
        elif kind is FaultKind.RESET:
            self.marks[(venue.name, index)] = (End.ABRUPT, label)
            await fake.reset(session=index)
        elif kind is FaultKind.STALL:
            self.marks[(venue.name, index)] = (End.ABRUPT, label)
            fake.stall()
        elif kind in (FaultKind.REFUSE, FaultKind.REJECT):
            assert fault.seconds is not None
            self.marks[(venue.name, index)] = (End.CLOSED, label)
            status = fault.code if kind is FaultKind.REJECT else None
            fake.refuse(fault.seconds, status=status)
            code = 1001 if kind is FaultKind.REFUSE else 1013
            await fake.close(code, "soak: going away", session=index)
            end = start + fault.seconds
        elif kind is FaultKind.OUTAGE:
            assert fault.seconds is not None
            self.marks[(venue.name, index)] = (End.ABRUPT, label)
            fake.refuse(fault.seconds)
            await fake.reset()
            end = start + fault.seconds
        elif kind is FaultKind.OVERSIZED:
            self.marks[(venue.name, index)] = (End.ABRUPT, label)
            await fake.oversized(self.specs[venue.name].max_message_size + 1)
        elif kind is FaultKind.GARBAGE:
            await fake.garbage(fault.frame)
        elif kind is FaultKind.GAP:
            venue.inject_gap()
        elif kind is FaultKind.NOTICE:
            self.marks[(venue.name, index)] = (None, label)
            self.ledger.handovers.add(venue.name)
        record.end = end - start
        if kind is FaultKind.NOTICE:
            # A busy market around the handover, so that both sessions write the same
            # events and the handover's deduplication is put to work.
            calm_interval = fake.interval
            fake.interval = min(calm_interval, BUSY_INTERVAL)
            try:
                await trio.sleep(BUSY_LEAD)  # the market gets busy (the fake's side)
                start = trio.current_time()
                async with trio.open_nursery() as nursery:
                    await venue.notice()
                    if fault.seconds is not None:
                        nursery.start_soon(self._close_as_announced, venue, index, fault.seconds)
                    await self._recover(record, venue, before, index, start, start, link)
                    nursery.cancel_scope.cancel(reason="handed over")
            finally:
                fake.interval = calm_interval
                self.ledger.handovers.discard(venue.name)
            return
        if end > trio.current_time():
            await trio.sleep_until(end)  # the fault lasts this long (the fake's side)
        reference = start if kind is FaultKind.STALL else end
        await self._recover(record, venue, before, index, start, reference, link)
        if kind is FaultKind.STALL:
            if link is not None and link.closed is not None:
                # The client left the frozen session: for delivery, that is its end. What
                # the fake writes after the resume goes to a socket the client already
                # closed; over TCP the kernel still takes it (the write "completes"), so
                # counting it as sent would file those frames as losses.
                self.end_now(venue, session, End.ABRUPT, label)
            fake.resume()  # let the fake see the client gone

    async def _close_as_announced(self, venue: Venue, index: int, after: float) -> None:
        await trio.sleep(after)  # the exchange's own delay before it closes
        await venue.fake.close(1001, "soak: closed as announced", session=index)

    async def _recover(
        self,
        record: FaultRecord,
        venue: Venue,
        before: ConnectionStats,
        index: int,
        start: float,
        reference: float,
        link: Link | None,
    ) -> None:
        """Wait until ``venue`` is live again after ``record``'s fault; record the times."""
        kind = record.fault.kind
        ends = kind in ENDS_SESSION
        spec = self.specs[venue.name]
        worst = spec.backoff.max + spec.stale_after + 1.0
        deadline = reference + worst + GIVE_UP_AFTER
        fake = venue.fake
        while True:
            seen = fake.changes
            # Whatever the fake just wrote (an ack, say), the client handles it before
            # every task is blocked again; only then do the stats say where it is.
            await trio.testing.wait_all_tasks_blocked(self.cushion)
            conn = await self._recovered(venue, before, index, start, ends, kind)
            if conn is not None:
                break
            if trio.current_time() >= deadline:
                self.problem(
                    record,
                    f"{venue.name} not live again {deadline - reference:.0f} s after the fault "
                    f"ended (state {(await self.stats(venue.name)).state!r})",
                )
                raise GiveUp(f"{record.fault.describe()} (#{record.fault.index}): never recovered")
            with trio.move_on_at(deadline):
                await fake.wait_until(lambda f, seen=seen: f.changes > seen)  # type: ignore[misc]
        stats = await self.sup.stats()
        live_at = self.live_at(conn, stats.at)
        restarted = conn.restarts > before.restarts
        record.restarts = conn.restarts - before.restarts
        record.delay = conn.backoff if restarted else 0.0
        record.bound = record.delay + spec.stale_after + 1.0
        if restarted:
            record.last_error = sys.intern(conn.last_error)
        record.disconnects = conn.disconnects
        if link is not None and link.closed is not None and (ends or kind is FaultKind.NOTICE):
            record.detected = link.closed - start
        if kind is FaultKind.NOTICE:
            switched = link.closed if link is not None and link.closed is not None else live_at
            recovered_at = live_at if restarted else switched
            if restarted:
                self.problem(
                    record,
                    f"restarted {record.restarts} time(s) instead of handing over "
                    f"(last error: {conn.last_error})",
                )
        elif ends or conn.disconnects > before.disconnects:
            recovered_at = live_at
        else:
            recovered_at = reference
        record.recovered = max(0.0, recovered_at - reference)
        if record.recovered > record.bound:
            self.problem(
                record,
                f"live again after {record.recovered:.2f} s > bound {record.bound:.2f} s "
                f"(delay {record.delay:.2f} + stale_after {spec.stale_after:g} + 1)",
            )
        detected = record.detected
        if kind is FaultKind.STALL and detected is not None and detected > spec.stale_after + 1:
            self.problem(
                record,
                f"half-open connection detected after {detected:.2f} s > "
                f"stale_after {spec.stale_after:g} + 1",
            )

    async def _recovered(
        self,
        venue: Venue,
        before: ConnectionStats,
        index: int,
        start: float,
        ends: bool,
        kind: FaultKind,
    ) -> ConnectionStats | None:
        """The connection's stats if it is live again after the fault, else None."""
        newest = venue.newest_open()
        if newest is None or not venue.confirmed(newest):
            return None
        if (ends or kind is FaultKind.NOTICE) and newest.index <= index:
            return None
        if kind is FaultKind.NOTICE and any(
            s.open and s.index == index for s in venue.fake.sessions
        ):
            return None  # the announced session is still open
        conn = await self.stats(venue.name)
        if conn.state != "live":
            return None
        since_start = trio.current_time() - start
        if ends and (conn.connects <= before.connects or conn.state_for > since_start):
            return None  # the stats still show the session the fault ended
        if conn.disconnects > before.disconnects and conn.state_for > since_start:
            return None  # it went down during the fault and is not live again yet
        return conn

    async def run_slow(self, record: FaultRecord) -> None:
        """Slow the consumer down for a while, then wait until it caught up everywhere.

        Raises:
            GiveUp: a connection never recovered.

        Cancellation: the consumer is fast again on the way out.
        """
        fault = record.fault
        assert fault.seconds is not None
        befores = {name: await self.stats(name) for name in self.venues}
        start = trio.current_time()
        self.slow_pause = fault.pause
        try:
            await trio.sleep(fault.seconds)  # the consumer stays slow this long
        finally:
            self.slow_pause = 0.0
        end = trio.current_time()
        record.end = end - start
        worst = 0.0
        delay = 0.0
        bound = 0.0
        marks = {
            name: (s.index, self.ledger.tapped(name, s.index))
            for name, venue in self.venues.items()
            if (s := venue.newest_open()) is not None
        }
        for name, venue in self.venues.items():
            sub = FaultRecord(fault, record.round, record.at)
            await self._recover(sub, venue, befores[name], -1, start, end, None)
            if name in marks:
                session, mark = marks[name]
                if (
                    mark
                    and venue.fake.sessions
                    and any(s.index == session and s.open for s in venue.fake.sessions)
                ):
                    with trio.move_on_after(self.stale_after):
                        await self.ledger.wait_delivered(name, session, mark - 1)
            caught_up = trio.current_time() - end
            assert sub.recovered is not None
            took = max(sub.recovered, caught_up)
            if took > worst:
                worst = took
            delay = max(delay, sub.delay)
            bound = max(bound, sub.bound)
            record.restarts += sub.restarts
            record.problems.extend(sub.problems)
            record.slow_disconnects[name] = sub.disconnects
        record.recovered = worst
        record.delay = delay
        record.bound = bound
        if worst > bound:
            self.problem(
                record,
                f"caught up after {worst:.2f} s > bound {bound:.2f} s "
                f"(delay {delay:.2f} + stale_after {self.stale_after:g} + 1)",
            )

    async def _steady(self, venue: Venue, record: FaultRecord | None) -> None:
        """Wait until ``venue`` is live on a confirmed session (the run's start)."""
        fake = venue.fake
        with trio.move_on_after(GIVE_UP_AFTER) as waited:
            while True:
                seen = fake.changes
                await trio.testing.wait_all_tasks_blocked(self.cushion)
                newest = venue.newest_open()
                if newest is not None and venue.confirmed(newest):
                    conn = await self.stats(venue.name)
                    if conn.state == "live":
                        return
                await fake.wait_until(lambda f, seen=seen: f.changes > seen)  # type: ignore[misc]
        if waited.cancelled_caught:
            raise GiveUp(f"{venue.name} never went live at the start")

    # -- checkpoints -----------------------------------------------------------------

    def end_now(self, venue: Venue, session: FakeSession, end: End, label: str) -> None:
        """Tell the ledger ``session`` ended now with the writes completed so far."""
        key = (venue.name, session.index)
        self.captured.add(key)
        self.marks.pop(key, None)
        self.ledger.ended(venue.name, session.index, end, session.sent, label)

    def capture(self, venue: Venue) -> None:
        """Tell the ledger how every newly closed session of ``venue`` ended."""
        for session in venue.fake.sessions:
            key = (venue.name, session.index)
            if session.open or key in self.captured:
                continue
            self.captured.add(key)
            hint, label = self.marks.pop(key, (None, ""))
            if hint is None:
                if session.fake_close_code == 1006:
                    hint = End.ABRUPT
                elif session.fake_close_code is not None:
                    hint = End.CLOSED
                elif session.close_code == 1000:
                    hint = End.RETIRED
                else:
                    hint = End.ABRUPT
            self.ledger.ended(venue.name, session.index, hint, session.sent, label)

    async def checkpoint(self, round_: int) -> None:
        """Settle what is final, check the supervisor runs and nothing leaked.

        Raises:
            GiveUp: the supervisor stopped.

        Cancellation: stops between two connections; nothing is half settled.
        """
        ledger = self.ledger
        for venue in self.venues.values():
            self.capture(venue)
            live = venue.newest_open()
            mark = 0
            if live is not None:
                mark = ledger.tapped(venue.name, live.index)
                if mark:
                    with trio.move_on_after(self.stale_after) as waited:
                        await ledger.wait_delivered(venue.name, live.index, mark - 1)
                    if waited.cancelled_caught:
                        self.problem(
                            None,
                            f"round {round_}: {venue.name} frame {mark - 1} of live session "
                            f"{live.index} not delivered within {self.stale_after:g} s",
                        )
            ledger.settle(venue.name, live.index if live is not None else None, mark)
            venue.forget_closed()
            self.captured = {key for key in self.captured if key[0] != venue.name}
        if self.sup.finished.is_set():
            fatal = self.sup.fatal
            raise GiveUp(f"the supervisor stopped: {fatal}" if fatal else "the supervisor stopped")
        await self.check_leaks(round_)

    def tasks(self) -> int:
        """Trio tasks, less one per connection whose session came from a handover.

        After a make-before-break handover the connection's live session runs in the
        actor's successor task (``_successor``) instead of the incarnation's own task,
        one task more for as long as that incarnation lives; the next handover replaces
        it. More than one per connection would be a leak and is counted.
        """
        successors = task_names()["_successor"]
        return task_count() - min(successors, len(self.venues))

    async def check_leaks(self, round_: int) -> None:
        """Compare fds and tasks with the baseline (taken at the first call); sample RSS.

        Cancellation: atomic (only counts).
        """
        leaks = self.leaks
        fds = tasks = -1
        for _ in range(5):
            await trio.testing.wait_all_tasks_blocked(self.cushion)
            fds, tasks = open_fds(), self.tasks()
            if leaks.tasks_baseline < 0:
                leaks.fds_baseline, leaks.tasks_baseline = fds, tasks
                self.baseline_names = task_names()
            if (fds, tasks) == (leaks.fds_baseline, leaks.tasks_baseline):
                break
        leaks.fds_last, leaks.tasks_last = fds, tasks
        leaks.checkpoints += 1
        if (fds, tasks) != (leaks.fds_baseline, leaks.tasks_baseline):
            leaks.off_baseline += 1
            names = task_names()
            more = names - self.baseline_names
            fewer = self.baseline_names - names
            self.problem(
                None,
                f"round {round_} (t={self.now():.1f} s): {fds} fds and {tasks} tasks, baseline "
                f"{leaks.fds_baseline} fds and {leaks.tasks_baseline} tasks (tasks now: "
                f"+{dict(more)} -{dict(fewer)})",
            )
        rss = rss_bytes()
        leaks.rss_last = rss
        leaks.rss_max = max(leaks.rss_max, rss)
