"""The continuity ledger of a make-before-break handover.

Rules of this file: pure bookkeeping, no I/O, no clock, no trio. The actor
(``actors/connection.py``) does the waiting and switching; this file only answers "may
we switch without a gap?" and "which of the successor's messages were already
delivered?". It knows nothing about trades or books: each message is asked for its
:class:`~actors.exchanges.sdk.Mark` (stream, position, previous position; ``prev=None``
when the message starts its stream afresh, like a book snapshot). Messages without a
mark carry no order and pass through untouched.

Theory of operation. When the exchange announces a disconnect, the old session keeps
delivering while a successor session subscribes and buffers. Both record into one
:class:`ContinuityLedger`:

- the old session, per stream, the last position it delivered (:meth:`delivered`);
- the successor, per stream, the position its buffer continues from, or that its
  buffer starts the stream afresh (:meth:`buffered`).

The switch is gap-free once :meth:`caught_up`: every stream the old session delivered is
either started afresh in the buffer or continues from a position the old session
reached, and every stream the buffer continues was delivered by the old session (else a
frame still unread on the old socket could be lost). For trades (never fresh) the two
sessions must therefore have seen the same streams. After the switch the successor's
messages go through :meth:`unseen`, which drops what the old session already delivered,
until :attr:`passed` (the successor may lag behind the old session for a while).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from actors.exchanges import Batch, Message
from actors.exchanges.sdk import Mark

__all__ = ["ContinuityLedger"]

_Stream = tuple[str, str]


class ContinuityLedger:
    """Where the old and the successor session are, per stream, during one handover.

    Args:
        mark: a message's mark, or ``None`` when it carries no order (use
            :func:`actors.exchanges.sdk.default_mark` unless the adapter knows better).
    """

    __slots__ = ("_buffered_any", "_first_prev", "_fresh", "_last", "_mark")

    def __init__(self, mark: Callable[[Message], Mark | None]) -> None:
        self._mark: Final = mark
        #: Per stream, the last position the old session delivered.
        self._last: dict[_Stream, int] = {}
        #: Per stream, the position the successor's buffer continues from (recorded
        #: only while the stream had not been started afresh in the buffer).
        self._first_prev: dict[_Stream, int] = {}
        #: Streams the successor's buffer started afresh.
        self._fresh: set[_Stream] = set()
        self._buffered_any = False

    def delivered(self, batch: Batch) -> None:
        """The old session delivered ``batch``: remember where each stream got to."""
        mark = self._mark
        last = self._last
        for message in batch:
            m = mark(message)
            if m is not None:
                last[m.stream] = m.seq

    def buffered(self, batch: Batch) -> None:
        """The successor buffered ``batch``: remember where each stream starts in it."""
        mark = self._mark
        self._buffered_any = True
        for message in batch:
            m = mark(message)
            if m is None:
                continue
            if m.prev is None:
                self._fresh.add(m.stream)
            elif m.stream not in self._fresh:
                self._first_prev.setdefault(m.stream, m.prev)

    def caught_up(self) -> bool:
        """Has the old session delivered everything up to the successor's buffer?

        False while the buffer is empty. Otherwise true when every stream the old
        session delivered is started afresh in the buffer or continues from a position
        the old session reached (``last >= prev``), and every stream the buffer
        continues was delivered by the old session.
        """
        if not self._buffered_any:
            return False
        first_prev = self._first_prev
        fresh = self._fresh
        for stream, last in self._last.items():
            if stream in fresh:
                continue  # the successor starts that stream afresh
            prev = first_prev.get(stream)
            if prev is None or last < prev:
                return False
        return first_prev.keys() <= self._last.keys()

    def unseen(self, batch: Batch) -> Batch:
        """``batch`` (the successor's) without what the old session already delivered.

        A message at or before the old session's last position of its stream is
        dropped; the first one past it ends the checks for that stream, and a message
        that starts its stream afresh ends them too.
        """
        mark = self._mark
        last = self._last
        kept = []
        for message in batch:
            m = mark(message)
            if m is not None:
                if m.prev is None:
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
        """The successor has moved past everything the old session delivered."""
        return not self._last
