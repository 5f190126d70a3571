"""Request budgets: when the next request may be written.

Two kinds of rule cover the exchanges' request limits, each one class with the same
``reserve`` shape:

- a *rate with a burst* ("10 calls, then 3.33 per second", "one request per 0.5 s"):
  :class:`Pacer`, GCRA virtual scheduling. Per connection (Binance: ``Pacer(1, 0.5)``,
  reset each session) or shared: some limits are per IP or per account, not per
  connection (Deribit's subscribe credits), so one :class:`Pacer` per (exchange, host)
  is created by the supervisor and handed to every adapter of that exchange, and their
  requests together stay within the budget.
- a *count per window* ("480 requests per hour per connection", OKX):
  :class:`WindowPacer`, a log of the last ``limit`` send times. A GCRA cannot express it
  without either exceeding the count in some window or delaying requests the rule
  allows at once.

Plain bookkeeping with time passed in, used only from the supervisor's single Trio
thread; adapters stay free of I/O and clocks.
"""

from __future__ import annotations

import collections
import math

__all__ = ["Pacer", "Reservations", "WindowPacer"]


class Pacer:
    """GCRA (virtual scheduling): a burst of ``burst`` requests, then one per ``spacing``.

    Args:
        burst: requests allowed back to back.
        spacing: seconds between requests once the burst is used.

    Raises:
        ValueError: ``burst`` below 1 or ``spacing`` not positive.
    """

    def __init__(self, burst: int, spacing: float) -> None:
        if burst < 1 or not spacing > 0:
            raise ValueError(f"Pacer needs burst >= 1 and spacing > 0, got {burst!r}, {spacing!r}")
        self.burst = burst
        self.spacing = spacing
        #: The theoretical arrival time of the next request.
        self.tat = -math.inf

    def reset(self) -> None:
        """Forget every reservation (a per-connection budget at a new session)."""
        self.tat = -math.inf

    def reserve(self, now: float) -> tuple[float, float]:
        """Reserve the earliest slot at or after ``now``.

        Returns:
            ``(at, previous_tat)``: when the request may be sent, and the state before
            this reservation (for :meth:`give_back`).
        """
        previous = self.tat
        at = max(now, previous - (self.burst - 1) * self.spacing)
        self.tat = max(at, previous) + self.spacing
        return at, previous

    def give_back(self, previous_tat: float, last_tat: float) -> None:
        """Return unused reservations, if nobody reserved after them.

        Args:
            previous_tat: the state before the first unused reservation.
            last_tat: the state right after the caller's last reservation; if another
                connection reserved since, nothing is returned (that only makes the
                pacing stricter).
        """
        if self.tat == last_tat:
            self.tat = previous_tat


class WindowPacer:
    """At most ``limit`` requests in any ``window`` seconds, per connection.

    A request may go at ``now`` unless ``limit`` requests already went within the last
    ``window`` seconds; then it waits until the oldest of them is ``window`` old. Times
    never go backwards, so requests stay in order.

    Args:
        limit: requests allowed per window.
        window: the window's length in seconds.

    Raises:
        ValueError: ``limit`` below 1 or ``window`` not positive.
    """

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or not window > 0:
            raise ValueError(
                f"WindowPacer needs limit >= 1 and window > 0, got {limit!r}, {window!r}"
            )
        self.limit = limit
        self.window = window
        self._sent: collections.deque[float] = collections.deque(maxlen=limit)

    def reset(self) -> None:
        """A new connection: nothing was sent on it yet."""
        self._sent.clear()

    def reserve(self, now: float) -> float:
        """The time the next request may be written, at or after ``now``."""
        sent = self._sent
        at = now
        if sent:
            at = max(at, sent[-1])
            if len(sent) == self.limit:
                at = max(at, sent[0] + self.window)
        sent.append(at)
        return at


class Reservations:
    """One session's reservations on a shared :class:`Pacer`, to give back unsent ones.

    A session that ends before writing the requests it reserved slots for cost the
    exchange nothing; giving their slots back keeps the next session (or a sibling
    connection) from waiting for a budget nobody used.

    Args:
        pacer: the (shared) budget.
    """

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self._paced: list[tuple[float, float]] = []
        self._last_tat = -math.inf

    def reserve(self, now: float) -> float:
        """The time the next request may be written (and remember the reservation)."""
        at, tat_before = self.pacer.reserve(now)
        self._paced.append((at, tat_before))
        self._last_tat = self.pacer.tat
        return at

    def give_back_unsent(self, released_up_to: float) -> None:
        """The session ends: return the slots of requests due after ``released_up_to``.

        They are the tail of the schedule; if another connection reserved since, the
        pacer keeps them (that only makes the pacing stricter).
        """
        for at, tat_before in self._paced:
            if at > released_up_to:
                self.pacer.give_back(tat_before, self._last_tat)
                break
        self._paced.clear()
