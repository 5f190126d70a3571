"""The message ledger: every data message a fake wrote, accounted for at the consumer.

Theory of operation
-------------------
Two feeds meet here. The fakes' data tap reports each data frame just before it is
written (:meth:`Ledger.sent`): the frame gets a number within its session (0, 1, ...)
and each message in it (:class:`~._venues.Item`) is filed under its stream
``(connection, kind, symbol)`` and its identity (``(snapshot, id)``), with the
``(session, frame)`` that wrote it. The consumer reports each message it received
(:meth:`Ledger.delivered`). The fakes run in numbered mode, so an identity names one
market event: two sessions open at once (a make-before-break handover) write the same
identity for the same event, and the consumer must receive it exactly once (trades and
book updates) or at least once (tickers, which carry no order the product could
deduplicate by).

Checks made as messages arrive (ordering): trade ids of a stream only rise; a ticker
whose number does not rise is *repeated* (allowed only while a handover is under way on
its connection); a book delta continues the delivered chain, or breaks it forward (a
gap), and never goes back; a snapshot restarts the chain.

Settlement (:meth:`Ledger.settle`) happens at the soak's checkpoints: a frame is *final*
once its session has ended (the soak captured how, :meth:`Ledger.ended`) or, for the
connection's live session, once a later frame of that session was delivered (a
WebSocket delivers in order). Each final identity that was never delivered is a loss,
classified by how its session ended:

- *cut mid-write*: the frame's write had not completed when the session ended (its
  number is at or beyond the session's final ``FakeSession.sent``): never fully sent.
  A stalled session ends, for delivery, when the client leaves it; what the fake writes
  after its resume (over TCP the kernel still takes it) is cut too;
- *lost in flight*: the session ended abruptly (a reset, a dropped half-open socket, a
  1009 close) and the frame came after the last frame of that session the consumer got:
  the tail that was on the wire, legitimately lost, counted and bounded (the longest
  tail is reported);
- *silent*: anything else: a frame before a close frame, a frame earlier than one that
  was delivered, a frame of a session the client retired at a handover that the
  successor did not cover. (Such a frame is final only once the delivered stream has
  passed its number, or no session is live: the successor writes the same event on its
  own beat, which may come after the checkpoint that saw the old session end.) Each is
  a violation, unless the overflow policy counted that many drops
  (``stats().dropped``).
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass, field
from typing import Final, NamedTuple

import trio

from supervisor.testing.soak._venues import Item

__all__ = ["End", "Ledger", "Loss", "StreamKey"]

#: ``(connection, kind, canonical symbol)``.
StreamKey = tuple[str, str, str]
_Identity = tuple[bool, int]
#: At most this many individual violations of each kind are kept for the report.
_SAMPLES: Final = 20
#: Settled trade and ticker identities remembered per stream, for a joining session's
#: copy of an event that was already settled (it repeats the latest events only).
_RECENT: Final = 16


class End(enum.Enum):
    """How a session ended, as far as its undelivered frames are concerned."""

    #: Still open.
    OPEN = "open"
    #: The fake sent a close frame: everything before it reaches the client.
    CLOSED = "closed by the fake"
    #: The client closed it with 1000 (retired at a handover, or stopped).
    RETIRED = "retired by the client"
    #: No orderly end: a reset, a dropped half-open socket, a 1009 close.
    ABRUPT = "abrupt"


class _Send(NamedTuple):
    session: int
    frame: int


@dataclass
class _Session:
    tapped: int = 0
    #: The highest frame number one of whose messages was delivered (-1: none).
    last_delivered: int = -1
    end: End = End.OPEN
    #: ``FakeSession.sent`` when the session ended.
    sent_final: int = 0
    #: The fault that ended it (for the report).
    fault: str = ""


@dataclass
class _Stream:
    sent: dict[_Identity, list[_Send]] = field(default_factory=dict)
    delivered: dict[_Identity, int] = field(default_factory=dict)
    #: Last delivered id (trade, ticker) or chain position (book).
    last: int | None = None
    #: The sessions that wrote the last delivered message.
    last_from: frozenset[int] = frozenset()
    #: Per session, the last book sequence the fake wrote (to see its injected gaps).
    written: dict[int, int] = field(default_factory=dict)
    #: Identities the fake wrote as a gap (prev not the session's previous sequence).
    gaps: set[_Identity] = field(default_factory=set)
    #: The last identities settled as delivered (insertion order; at most _RECENT).
    recent: dict[_Identity, None] = field(default_factory=dict)


class Loss(NamedTuple):
    """One message the consumer never got."""

    stream: StreamKey
    id: int
    session: int
    frame: int
    end: End
    fault: str
    why: str


@dataclass
class Totals:
    """Counters over the whole run (see the module docstring for each class)."""

    sent: int = 0
    #: Messages a second session wrote while an earlier one had written them too.
    overlaps: int = 0
    delivered: int = 0
    #: Deliveries of a message the consumer had already received.
    redelivered: int = 0
    settled: int = 0
    cut: int = 0
    in_flight: int = 0
    silent: int = 0
    duplicates: int = 0
    repeated_tickers: int = 0
    repeated_outside_handover: int = 0
    backwards: int = 0
    unexpected: int = 0
    gaps_written: int = 0
    gaps_delivered: int = 0
    #: Per connection, gaps the fake wrote that the consumer received.
    gaps_by_connection: collections.Counter[str] = field(default_factory=collections.Counter)
    breaks: int = 0
    session_breaks: int = 0
    unexplained_breaks: int = 0
    other: int = 0
    #: The longest run of frames lost in flight at one abrupt end.
    max_tail: int = 0
    #: Losses in flight by the fault kind that ended the session.
    in_flight_by_fault: collections.Counter[str] = field(default_factory=collections.Counter)


class Ledger:
    """Accounts for every data message; one per soak run.

    All methods are called from the soak's tasks on one trio loop.
    """

    def __init__(self) -> None:
        self._streams: dict[StreamKey, _Stream] = {}
        self._sessions: dict[tuple[str, int], _Session] = {}
        self._by_connection: dict[str, list[StreamKey]] = collections.defaultdict(list)
        #: Connections with a handover under way (repeated tickers allowed).
        self.handovers: set[str] = set()
        self.totals = Totals()
        self.losses: list[Loss] = []
        self.anomalies: list[str] = []
        self._changed = trio.Event()

    # -- feeds ---------------------------------------------------------------------

    def _stream(self, key: StreamKey) -> _Stream:
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream()
            self._by_connection[key[0]].append(key)
        return stream

    def sent(self, connection: str, session: int, items: list[Item]) -> None:
        """The fake is about to write one data frame of ``session`` holding ``items``."""
        record = self._sessions.get((connection, session))
        if record is None:
            record = self._sessions[(connection, session)] = _Session()
        frame = record.tapped
        record.tapped += 1
        totals = self.totals
        for item in items:
            totals.sent += 1
            stream = self._stream((connection, item.kind, item.symbol))
            identity = (item.snapshot, item.id)
            if identity in stream.recent:
                # A copy of a trade or ticker delivered and settled already (a joining
                # session repeats the latest one): accounted, and as good as delivered.
                # (A book snapshot written again is a new message: the book's state.)
                totals.overlaps += 1
                record.last_delivered = max(record.last_delivered, frame)
                continue
            sends = stream.sent.setdefault(identity, [])
            if sends and all(send.session != session for send in sends):
                totals.overlaps += 1  # two sessions wrote the same event (a handover)
            sends.append(_Send(session, frame))
            if identity in stream.delivered:
                record.last_delivered = max(record.last_delivered, frame)
            if item.kind == "book":
                previous = stream.written.get(session)
                if (
                    previous is not None
                    and item.prev is not None
                    and item.prev != previous
                    and identity not in stream.gaps
                ):
                    stream.gaps.add(identity)
                    totals.gaps_written += 1
                stream.written[session] = item.id

    def written_after_end(self, count: int) -> None:
        """The fake wrote ``count`` messages to a session the client had already left.

        They can never arrive: counted as written and cut (never sent while the client
        was there), not filed under any stream.
        """
        self.totals.sent += count
        self.totals.cut += count

    def delivered(self, connection: str, item: Item) -> None:
        """The consumer received the message ``item`` from ``connection``."""
        totals = self.totals
        totals.delivered += 1
        key = (connection, item.kind, item.symbol)
        stream = self._stream(key)
        identity = (item.snapshot, item.id)
        sends = stream.sent.get(identity)
        if sends is None:
            totals.unexpected += 1
            self._anomaly(f"{_name(key)} {item.id}: delivered but never written (or twice)")
        else:
            count = stream.delivered.get(identity, 0)
            stream.delivered[identity] = count + 1
            if count:
                totals.redelivered += 1
            else:
                for send in sends:
                    record = self._sessions[(connection, send.session)]
                    record.last_delivered = max(record.last_delivered, send.frame)
                if identity in stream.gaps:
                    totals.gaps_delivered += 1
                    totals.gaps_by_connection[connection] += 1
        self._order(key, stream, item, sends)
        self._changed.set()

    def other(self) -> None:
        """The consumer received a message the soak does not account (raw)."""
        self.totals.other += 1

    def _order(
        self, key: StreamKey, stream: _Stream, item: Item, sends: list[_Send] | None
    ) -> None:
        last = stream.last
        totals = self.totals
        last_from = stream.last_from
        if sends is not None:
            stream.last_from = frozenset(send.session for send in sends)
        if item.kind == "book":
            if item.snapshot or last is None or item.prev == last:
                stream.last = item.id
            elif item.id <= last:
                totals.backwards += 1
                self._anomaly(
                    f"{_name(key)}: delta {item.prev}->{item.id} delivered after {last} "
                    "(a duplicate or out of order)"
                )
            else:
                totals.breaks += 1
                if (item.snapshot, item.id) in stream.gaps:
                    pass  # the fake wrote this gap: the supervisor must count it
                elif sends is not None and last_from.isdisjoint(stream.last_from):
                    # A new session's first delta: the chain of a new session starts
                    # unchecked (what the old one left unwritten at its end is gone).
                    totals.session_breaks += 1
                else:
                    totals.unexplained_breaks += 1
                    self._anomaly(
                        f"{_name(key)}: delta {item.prev}->{item.id} delivered after {last} "
                        "(a break the fake did not write)"
                    )
                stream.last = item.id
            return
        if last is not None and item.id <= last:
            if item.kind == "trade":
                totals.duplicates += 1
                self._anomaly(
                    f"{_name(key)}: trade {item.id} delivered after {last} "
                    "(a duplicate or out of order)"
                )
            else:
                totals.repeated_tickers += 1
                if key[0] not in self.handovers:
                    totals.repeated_outside_handover += 1
                    self._anomaly(f"{_name(key)}: ticker {item.id} repeated after {last}")
            return
        stream.last = item.id

    def _anomaly(self, text: str) -> None:
        if len(self.anomalies) < _SAMPLES:
            self.anomalies.append(text)

    # -- sessions ------------------------------------------------------------------

    def tapped(self, connection: str, session: int) -> int:
        """How many data frames ``session`` was tapped for so far."""
        record = self._sessions.get((connection, session))
        return record.tapped if record is not None else 0

    def last_delivered(self, connection: str, session: int) -> int:
        """The highest frame number of ``session`` with a delivered message (-1: none)."""
        record = self._sessions.get((connection, session))
        return record.last_delivered if record is not None else -1

    def ended(self, connection: str, session: int, end: End, sent: int, fault: str) -> None:
        """``session`` ended (``end``) after ``sent`` completed data writes."""
        record = self._sessions.get((connection, session))
        if record is None:
            record = self._sessions[(connection, session)] = _Session()
        record.end = end
        record.sent_final = sent
        record.fault = fault

    async def wait_delivered(self, connection: str, session: int, frame: int) -> None:
        """Wait until a message of frame ``frame`` (or a later one) of ``session`` arrived.

        Cancellation: atomic (nothing changes); the caller bounds the wait.
        """
        while self.last_delivered(connection, session) < frame:
            self._changed = trio.Event()
            await self._changed.wait()

    # -- settlement ----------------------------------------------------------------

    def settle(self, connection: str, live: int | None, mark: int) -> None:
        """Account for every final frame of ``connection``.

        Args:
            connection: the connection.
            live: the index of its live session (None: none is).
            mark: frames ``0 .. mark - 1`` of ``live`` are final.
        """
        sessions = self._sessions
        totals = self.totals
        for key in self._by_connection.get(connection, ()):
            stream = self._streams[key]
            for identity, sends in list(stream.sent.items()):
                final = True
                for send in sends:
                    record = sessions[(connection, send.session)]
                    if record.end is End.OPEN and not (send.session == live and send.frame < mark):
                        final = False
                        break
                if not final:
                    continue
                if (
                    live is not None
                    and not stream.delivered.get(identity)
                    and (stream.last is None or stream.last < identity[1])
                    and any(
                        sessions[(connection, send.session)].end is End.RETIRED for send in sends
                    )
                ):
                    # Retired at a handover before the consumer got it: the successor
                    # writes the same event on its own beat, possibly after this
                    # checkpoint, and delivers it then. Final once the delivered
                    # stream has passed it (or no session is live).
                    continue
                del stream.sent[identity]
                stream.gaps.discard(identity)
                totals.settled += 1
                if stream.delivered.pop(identity, 0) == 0:
                    self._lost(key, identity, sends)
                elif key[1] != "book":
                    recent = stream.recent
                    recent[identity] = None
                    if len(recent) > _RECENT:
                        del recent[next(iter(recent))]
            for session in [
                s for s in stream.written if sessions[(connection, s)].end is not End.OPEN
            ]:
                del stream.written[session]
        for (name, index), record in list(sessions.items()):
            if name == connection and record.end is not End.OPEN and not self._pending(name, index):
                del sessions[(name, index)]

    def _pending(self, connection: str, session: int) -> bool:
        """Whether any unsettled message of ``session`` remains."""
        for key in self._by_connection.get(connection, ()):
            for sends in self._streams[key].sent.values():
                if any(send.session == session for send in sends):
                    return True
        return False

    def _lost(self, key: StreamKey, identity: _Identity, sends: list[_Send]) -> None:
        totals = self.totals
        worst: tuple[str, _Send, _Session] | None = None
        for send in sends:
            record = self._sessions[(key[0], send.session)]
            if record.end is not End.OPEN and send.frame >= record.sent_final:
                totals.cut += 1
                return
            if record.end is End.ABRUPT and send.frame > record.last_delivered:
                totals.in_flight += 1
                totals.in_flight_by_fault[record.fault.partition(" ")[0] or "none"] += 1
                tail = send.frame - record.last_delivered
                totals.max_tail = max(totals.max_tail, tail)
                return
            why = {
                End.OPEN: "lost on a live session (a later frame was delivered)",
                End.CLOSED: "lost before the fake's close frame",
                End.RETIRED: "lost when the client retired the session (not covered by its "
                "successor)",
                End.ABRUPT: "lost before the last delivered frame of an abruptly ended session",
            }[record.end]
            worst = (why, send, record)
        assert worst is not None
        why, send, record = worst
        totals.silent += 1
        if len(self.losses) < _SAMPLES:
            self.losses.append(
                Loss(key, identity[1], send.session, send.frame, record.end, record.fault, why)
            )

    def unsettled(self) -> int:
        """Messages written but not yet settled."""
        return sum(len(stream.sent) for stream in self._streams.values())

    def unsettled_undelivered(self) -> int:
        """Messages written, not yet settled, and not delivered either.

        The balance counts these: an unsettled message that was delivered is already in
        "delivered once" (the run ended before a later frame of its session made it
        final).
        """
        return sum(
            1
            for stream in self._streams.values()
            for identity in stream.sent
            if not stream.delivered.get(identity)
        )


def _name(key: StreamKey) -> str:
    connection, kind, symbol = key
    return f"{connection} {kind} {symbol}"
