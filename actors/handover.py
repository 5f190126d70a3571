"""The continuity ledger of a make-before-break handover.

Rules of this file: pure bookkeeping, no I/O, no clock, no trio. The actor
(``actors/connection.py``) does the waiting and switching; this file only answers "may
we switch without a gap?" and "which of the successor's messages were already
delivered?". It knows nothing about trades or books: each message is asked for its
:class:`~actors.exchanges.sdk.Mark`. Messages without a mark carry no order and pass
through untouched.

Theory of operation. When the exchange announces a disconnect, the old session keeps
delivering while a successor session subscribes and buffers. Both record into one
:class:`ContinuityLedger`, per stream (one id space: a mark's ``(kind, symbol)``):

- the old session, where it got to (:meth:`delivered`): the last position of an ordered
  stream, or the keys of an identified stream's messages;
- the successor, where its buffer starts (:meth:`buffered`): the position it continues
  from, or that it starts the stream afresh, or the key of its first message.

The switch is gap-free once :meth:`caught_up`: every stream the old session delivered is
either started afresh in the buffer or continues from a position the old session reached
(ordered), or the old session delivered the buffer's first message of it (identified);
and every stream the buffer continues was delivered by the old session (else a frame
still unread on the old socket could be lost). For trades (never fresh) the two sessions
must therefore have seen the same streams. A stream with an *unknown* mark on either
side (an id whose format nobody could read) never counts as caught up: the actor then
switches when the old session ends or its wait runs out, and says that a gap is
possible.

After the switch the successor's messages go through :meth:`unseen`, which drops what
the old session already delivered: per ordered stream until the first message past the
old session's last position (the successor may lag behind the old session for a
while), per identified stream for as long as the actor keeps filtering (their order may
differ between sessions, so one new message proves nothing about the next). Messages
with unknown marks are never dropped. :attr:`passed` says when no ordered stream and no
identified stream needs checking any more.

Cost: nothing unless a handover is under way; then one ``mark()`` call per message
delivered by the old session or buffered by the successor, and one per message the
successor delivers while filtering. The keys of identified messages are remembered up to
``DEFAULT_MAX_IDENTIFIED`` (the oldest are forgotten first).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Final

from actors.exchanges import Batch, Message
from actors.exchanges.sdk import Mark

__all__ = ["DEFAULT_MAX_IDENTIFIED", "ContinuityLedger"]

_Stream = tuple[str, str]

#: Keys of identified messages one ledger remembers from the old session (about 10 s of
#: Binance's busiest trade streams for a few symbols; not an exchange limit). Past it the
#: oldest are forgotten: the successor is then unlikely to be that far behind.
DEFAULT_MAX_IDENTIFIED: Final = 100_000


class ContinuityLedger:
    """Where the old and the successor session are, per stream, during one handover.

    Args:
        mark: a message's mark, or ``None`` when it carries no order (use
            :func:`actors.exchanges.sdk.default_mark` unless the adapter knows better).
        max_identified: keys of identified messages remembered (see the module doc).

    Raises:
        ValueError: ``max_identified`` is below 1.
    """

    __slots__ = (
        "_buffered_any",
        "_first_key",
        "_first_prev",
        "_fresh",
        "_last",
        "_mark",
        "_max_identified",
        "_seen",
        "_seen_streams",
        "_unknown",
    )

    def __init__(
        self,
        mark: Callable[[Message], Mark | None],
        *,
        max_identified: int = DEFAULT_MAX_IDENTIFIED,
    ) -> None:
        if max_identified < 1:
            raise ValueError(f"max_identified must be at least 1, got {max_identified!r}")
        self._mark: Final = mark
        self._max_identified: Final = max_identified
        #: Per ordered stream, the last position the old session delivered.
        self._last: dict[_Stream, int] = {}
        #: (stream, key) of identified messages the old session delivered, oldest first.
        self._seen: dict[tuple[_Stream, Hashable], None] = {}
        #: Identified streams the old session delivered.
        self._seen_streams: set[_Stream] = set()
        #: Streams with an unknown mark on either side: continuity cannot be proven.
        self._unknown: set[_Stream] = set()
        #: Per ordered stream, the position the successor's buffer continues from
        #: (recorded only while the stream had not been started afresh in the buffer).
        self._first_prev: dict[_Stream, int] = {}
        #: Ordered streams the successor's buffer started afresh.
        self._fresh: set[_Stream] = set()
        #: Per identified stream, the key of the successor's first buffered message.
        self._first_key: dict[_Stream, Hashable] = {}
        self._buffered_any = False

    def delivered(self, batch: Batch) -> None:
        """The old session delivered ``batch``: remember where each stream got to."""
        mark = self._mark
        last = self._last
        for message in batch:
            m = mark(message)
            if m is None:
                continue
            if m.seq is not None:
                last[m.stream] = m.seq
            elif m.key is not None:
                seen = self._seen
                seen[(m.stream, m.key)] = None
                self._seen_streams.add(m.stream)
                if len(seen) > self._max_identified:
                    del seen[next(iter(seen))]
            else:
                self._unknown.add(m.stream)

    def buffered(self, batch: Batch) -> None:
        """The successor buffered ``batch``: remember where each stream starts in it."""
        mark = self._mark
        self._buffered_any = True
        for message in batch:
            m = mark(message)
            if m is None:
                continue
            stream = m.stream
            if m.seq is not None:
                if m.prev is None:
                    self._fresh.add(stream)
                elif stream not in self._fresh:
                    self._first_prev.setdefault(stream, m.prev)
            elif m.key is not None:
                self._first_key.setdefault(stream, m.key)
            else:
                self._unknown.add(stream)

    def rebuffered(self, batches: Iterable[Batch]) -> None:
        """The successor's buffer now holds only ``batches`` (its oldest were dropped):
        where each stream starts is recorded again from them.

        Streams marked unknown stay unknown (that can only delay a switch).
        """
        self._first_prev.clear()
        self._fresh.clear()
        self._first_key.clear()
        self._buffered_any = False
        for batch in batches:
            self.buffered(batch)

    def caught_up(self) -> bool:
        """Has the old session delivered everything up to the successor's buffer?

        False while the buffer is empty, and while any stream has an unknown mark.
        Otherwise true when every stream the old session delivered is started afresh in
        the buffer, continues from a position the old session reached (``last >=
        prev``), or (identified) had the buffer's first message delivered by the old
        session; and every stream the buffer continues was delivered by the old session.
        """
        if not self._buffered_any or self._unknown:
            return False
        first_prev = self._first_prev
        fresh = self._fresh
        for stream, last in self._last.items():
            if stream in fresh:
                continue  # the successor starts that stream afresh
            prev = first_prev.get(stream)
            if prev is None or last < prev:
                return False
        if not first_prev.keys() <= self._last.keys():
            return False
        first_key = self._first_key
        if not self._seen_streams <= first_key.keys():
            return False
        seen = self._seen
        return all((stream, key) in seen for stream, key in first_key.items())

    def unseen(self, batch: Batch) -> Batch:
        """``batch`` (the successor's) without what the old session already delivered.

        A message at or before the old session's last position of its ordered stream is
        dropped; the first one past it ends the checks for that stream, and a message
        that starts its stream afresh ends them too. An identified message the old
        session delivered is dropped. Unknown marks pass.
        """
        mark = self._mark
        last = self._last
        seen = self._seen
        kept = []
        for message in batch:
            m = mark(message)
            if m is not None:
                if m.seq is None:
                    if m.key is not None and (m.stream, m.key) in seen:
                        continue
                elif m.prev is None:
                    last.pop(m.stream, None)
                else:
                    position = last.get(m.stream)
                    if position is not None:
                        if m.seq <= position:
                            continue
                        del last[m.stream]  # passed it: no more checks
            kept.append(message)
        return tuple(kept)

    @property
    def passed(self) -> bool:
        """Nothing left to check: the successor moved past every ordered stream the old
        session delivered, and the old session delivered no identified message."""
        return not self._last and not self._seen

    @property
    def unknown(self) -> frozenset[_Stream]:
        """Streams whose continuity cannot be proven (an unknown mark on either side)."""
        return frozenset(self._unknown)
