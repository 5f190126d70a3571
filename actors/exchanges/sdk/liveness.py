"""Liveness clocks of a session's subscriptions: ack deadlines and data silence.

Rules of this file: pure bookkeeping; time arrives as ``now``; nothing here sends a frame
or emits an event. :class:`~actors.exchanges.sdk.protocol.ExchangeProtocol` owns one of
each, asks them what is due, and turns the answers into requests and events.

- :class:`AckClock`: once a session's request frames are written, their acks are due
  within ``timeout`` of the last request or answer. Overdue topics are asked for once
  more; topics overdue a second time are given up (they fail with code ``timeout``).
- :class:`DataClocks`: when each confirmed topic last carried data (its confirmation
  starts the clock). A topic without data for ``limit`` seconds is *silent* until data
  comes again; the caller asks for it again once per silent spell. It also counts each
  topic's data frames for stats (an integer per frame, taken by the traffic report).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["AckClock", "DataClocks"]


class AckClock:
    """When the session's outstanding acks are due.

    Args:
        timeout: seconds within which an ack is due once its request was written.
    """

    __slots__ = ("_retried", "since", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        #: When the clock last restarted: a request written, an answer read.
        self.since = 0.0
        self._retried: set[str] = set()

    def reset(self, now: float) -> None:
        """A new session: nothing was asked twice yet."""
        self.since = now
        self._retried.clear()

    def restart(self, now: float) -> None:
        """A request was written or an answer read: the wait starts again."""
        self.since = now

    @property
    def due(self) -> float:
        """When the outstanding acks are overdue (if any are outstanding)."""
        return self.since + self.timeout

    def overdue(self, now: float, pending: Sequence[str]) -> tuple[list[str], list[str]]:
        """``pending`` topics are overdue at ``now``.

        Returns:
            ``(again, give_up)``: topics to request once more, and topics already
            requested twice that fail now.
        """
        self.since = now
        retried = self._retried
        again = [topic for topic in pending if topic not in retried]
        give_up = [topic for topic in pending if topic in retried]
        retried.update(again)
        return again, give_up


class DataClocks:
    """When each confirmed topic last carried data; which ones are silent.

    Args:
        limit: seconds without data after which a topic is silent (``None``: never).
        per_topic: whether the adapter reports each data frame's topic; if not, any data
            counts for every topic (:meth:`any_data`).
    """

    __slots__ = (
        "_confirmed_at",
        "_data_at",
        "counts",
        "heard_at",
        "limit",
        "next_check",
        "per_topic",
        "silent",
    )

    def __init__(self, limit: float | None, *, per_topic: bool) -> None:
        self.limit = limit
        self.per_topic = per_topic
        #: topic -> when this session confirmed it (its data times are in heard_at).
        self._confirmed_at: dict[str, float] = {}
        self._data_at = -math.inf
        #: Topics silent now (until their next data).
        self.silent: set[str] = set()
        #: When :meth:`check` must run next (``inf``: nothing to watch).
        self.next_check = math.inf
        #: topic -> data frames since the stats last took them (:meth:`take_counts`).
        self.counts: dict[str, int] = {}
        #: topic -> when its latest data frame arrived; kept across sessions.
        self.heard_at: dict[str, float] = {}

    def reset(self) -> None:
        """A session ended: forget its clocks (not the counts: stats still owe them)."""
        self._confirmed_at.clear()
        self.silent.clear()
        self._data_at = -math.inf
        self.next_check = math.inf

    def confirmed(self, topics: Iterable[str], now: float) -> None:
        """``topics`` were confirmed at ``now``: their clocks start (silent ones stay
        silent: only data ends a silent spell)."""
        silent = self.silent
        confirmed_at = self._confirmed_at
        for topic in topics:
            if topic not in silent:
                confirmed_at[topic] = now
        self._watch(now)

    def heard(self, topic: str, now: float) -> bool:
        """Data of ``topic`` arrived at ``now``; True if that ends its silent spell."""
        self.heard_at[topic] = now
        counts = self.counts
        counts[topic] = counts.get(topic, 0) + 1
        if self.silent and topic in self.silent:
            self.silent.discard(topic)
            self._watch(now)
            return True
        return False

    def take_counts(self) -> tuple[tuple[str, int, float], ...]:
        """``(topic, data frames, latest data time)`` of each topic heard since the last
        call; the counts start again from zero."""
        counts = self.counts
        if not counts:
            return ()
        self.counts = {}
        heard_at = self.heard_at
        return tuple((topic, count, heard_at[topic]) for topic, count in counts.items())

    def any_data(self, now: float) -> list[str]:
        """Data arrived at ``now`` (adapters without topics): the topics it revives."""
        self._data_at = now
        revived = list(self.silent)
        if revived:
            self.silent.clear()
            self._watch(now)
        return revived

    def check(self, now: float, confirmed: Sequence[str]) -> tuple[list[tuple[str, float]], bool]:
        """Which of the ``confirmed`` topics went silent by ``now``.

        Returns:
            ``(newly, all_silent)``: each newly silent topic with the seconds since its
            last data, and whether every confirmed topic is silent now.
        """
        limit = self.limit
        self.next_check = math.inf
        if limit is None:
            return [], False
        heard_at = self.heard_at
        confirmed_at = self._confirmed_at
        silent = self.silent
        data_at = -math.inf if self.per_topic else self._data_at
        newly: list[tuple[str, float]] = []
        next_check = math.inf
        for topic in confirmed:
            if topic in silent:
                continue
            # Its latest data or this session's confirmation, whichever came last (data
            # of an earlier session is older than the confirmation); a topic known to
            # neither starts its clock now.
            last = max(heard_at.get(topic, -math.inf), confirmed_at.get(topic, -math.inf), data_at)
            if last == -math.inf:
                last = now
            if now >= last + limit:
                silent.add(topic)
                newly.append((topic, now - last))
            else:
                next_check = min(next_check, last + limit)
        self.next_check = next_check
        every = bool(newly) and all(topic in silent for topic in confirmed)
        return newly, every

    def _watch(self, now: float) -> None:
        if self.limit is not None:
            self.next_check = min(self.next_check, now + self.limit)
