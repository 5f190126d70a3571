"""Request pacing shared by every connection that draws on one exchange budget.

Some exchange limits are per IP or per account, not per connection (Deribit's subscribe
credits). One :class:`Pacer` per (exchange, host) is created by the supervisor and
handed to every adapter of that exchange, so their requests together stay within the
budget. It is plain bookkeeping with time passed in (GCRA virtual scheduling), used only
from the supervisor's single Trio thread; adapters stay free of I/O and clocks.
"""

from __future__ import annotations

import math

__all__ = ["Pacer"]


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
