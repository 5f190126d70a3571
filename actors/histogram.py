"""Cumulative histograms of durations, as the registry keeps them and exporters read them.

Theory of operation
-------------------
A :class:`Buckets` lives in a registry record and only ever grows: each observation adds
one to the bucket of the first upper bound at or above it (``bisect_left``, so a value
equal to a bound counts in that bound's bucket, as Prometheus' ``le`` says) and the value
to the sum. A snapshot (:meth:`Buckets.snapshot`) is a frozen :class:`Histogram` with the
counts made cumulative, which is exactly Prometheus' histogram model: ``counts[i]`` is the
number of observations ``<= bounds[i]``, ``count`` the number of all of them (the
``+Inf`` bucket). Counts never go down across reconnects, so the exported ``_bucket``,
``_count`` and ``_sum`` series are counters.

Durations below zero are observed as zero. A feed latency can read negative when the
venue's clock runs ahead of ours and its offset is not known yet; counted as it is, the
``_sum`` would go down, which Prometheus forbids for a histogram of a counter's kind. The
latency percentiles in the stats keep the signed values, where a negative one is a hint
that the clock offset is wrong.
"""

from __future__ import annotations

import bisect
from typing import Final

import msgspec

__all__ = ["DURATION_BOUNDS", "Buckets", "Histogram"]

#: Upper bounds in seconds for feed latency and probe round trips: from 1 ms (loopback,
#: a colocated feed) to 10 s (a proxy chain in trouble), about three per decade, like
#: Prometheus' default buckets shifted one decade down.
DURATION_BOUNDS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Histogram(msgspec.Struct, frozen=True, kw_only=True):
    """Observations of a duration so far, in Prometheus' cumulative form.

    Attributes:
        bounds: the buckets' upper bounds in seconds, ascending (``+Inf`` implied).
        counts: per bound, the observations at or below it (cumulative; as long as
            ``bounds``).
        count: every observation (the ``+Inf`` bucket).
        sum: the observations added up, in seconds.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    sum: float


class Buckets:
    """A growing histogram over fixed upper bounds (see the module docstring).

    Args:
        bounds: ascending upper bounds in seconds.
    """

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BOUNDS) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"histogram bounds must be ascending and distinct: {bounds}")
        self._bounds = bounds
        # One slot per bound plus the +Inf bucket; not cumulative.
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation of ``value`` seconds (below zero: as zero)."""
        value = max(value, 0.0)
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> Histogram:
        """The observations so far, cumulative."""
        cumulative: list[int] = []
        running = 0
        for n in self._counts:
            running += n
            cumulative.append(running)
        return Histogram(
            bounds=self._bounds,
            counts=tuple(cumulative[:-1]),
            count=running,
            sum=self._sum,
        )
