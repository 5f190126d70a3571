"""What an adapter asks of its venue's REST API, and when (pure).

Rules of this file: no I/O, no clock; the caller passes ``now`` (its monotonic clock) and,
for the server time, the Unix times it measured at the socket.

An adapter names its REST calls (:class:`RestCall`) and reads their answers; the
connection actor makes the calls through the connection's REST client, in a task of its
own, so a slow or failing REST API never holds up the WebSocket session. Two purposes
exist today:

- **Server time** (:data:`TIME`), at the start and every :data:`DEFAULT_TIME_REFRESH`
  seconds. The clock offset is the venue's time minus the midpoint of our send and
  receive (:func:`clock_offset`): the usual NTP-style estimate, right to within half the
  round trip.
- **Instruments** (purposes starting with :data:`INSTRUMENTS`), once: the venue's list of
  symbols, to tell the operator about a configured symbol the venue does not list
  (:func:`unknown_symbols`, with a suggestion).

A failed call is tried again after a capped exponential delay (:class:`RestSchedule`);
it never ends the session.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Iterable, Mapping
from typing import Final

import msgspec

__all__ = [
    "DEFAULT_RETRY_INITIAL",
    "DEFAULT_RETRY_MAX",
    "DEFAULT_TIME_REFRESH",
    "INSTRUMENTS",
    "TIME",
    "RestCall",
    "RestSchedule",
    "clock_offset",
    "unknown_symbols",
]

#: The purpose of a server-time call.
TIME: Final = "time"
#: The prefix of the purposes of instrument-list calls (one per list, e.g.
#: ``instruments SPOT``).
INSTRUMENTS: Final = "instruments"
#: Seconds between server-time calls. Clocks drift by milliseconds per hour; ten
#: minutes keeps the estimate fresh at a cost of one weight-1 call (Binance
#: ``/api/v3/time``) per connection per ten minutes.
DEFAULT_TIME_REFRESH: Final = 600.0
#: Seconds before the first retry of a failed call; doubled per failure in a row.
DEFAULT_RETRY_INITIAL: Final = 5.0
#: The longest wait between retries of a failed call.
DEFAULT_RETRY_MAX: Final = 300.0


class RestCall(msgspec.Struct, frozen=True, kw_only=True):
    """One REST request an adapter asks the caller to make (``GET base_url + path``).

    Attributes:
        purpose: what the answer is for (:data:`TIME`, ``instruments ...``); the caller
            hands it back with the answer.
        path: the path below the venue's REST origin, e.g. ``/api/v3/time``.
        params: query parameters, in order.
    """

    purpose: str
    path: str
    params: tuple[tuple[str, str], ...] = ()


class RestSchedule:
    """When each of an adapter's REST purposes is next due.

    A purpose is due at once when created. :meth:`take` hands out the due ones and marks
    them in flight (not due again until answered); :meth:`succeeded` schedules the next
    refresh (``refresh`` seconds later, or never); :meth:`failed` schedules a retry after
    a delay that doubles per failure in a row, from ``initial`` up to ``maximum``.

    Args:
        refresh: seconds between successful calls per purpose; ``None``: once only.
        initial: the first retry delay.
        maximum: the largest retry delay.
    """

    def __init__(
        self,
        refresh: Mapping[str, float | None],
        *,
        initial: float = DEFAULT_RETRY_INITIAL,
        maximum: float = DEFAULT_RETRY_MAX,
    ) -> None:
        self._refresh = dict(refresh)
        self._due = dict.fromkeys(refresh, -math.inf)
        self._failures = dict.fromkeys(refresh, 0)
        self._initial = initial
        self._maximum = maximum

    def take(self, now: float) -> list[str]:
        """The purposes due at ``now``, in declaration order; they are now in flight."""
        due = [purpose for purpose, at in self._due.items() if at <= now]
        for purpose in due:
            self._due[purpose] = math.inf
        return due

    def deadline(self) -> float:
        """The earliest time a purpose is due (``inf``: none until an answer comes)."""
        return min(self._due.values(), default=math.inf)

    def succeeded(self, purpose: str, now: float) -> None:
        """``purpose`` was answered at ``now``: due again after its refresh, if any."""
        self._failures[purpose] = 0
        every = self._refresh[purpose]
        self._due[purpose] = math.inf if every is None else now + every

    def failed(self, purpose: str, now: float) -> tuple[float, int]:
        """``purpose`` failed at ``now``.

        Returns:
            ``(delay, failures)``: seconds until it is tried again, and how many times in
            a row it has failed now (1 for the first).
        """
        failures = self._failures[purpose] = self._failures[purpose] + 1
        delay = min(self._maximum, self._initial * 2.0 ** (failures - 1))
        self._due[purpose] = now + delay
        return delay, failures


def clock_offset(server_time: float, sent_at: float, received_at: float) -> float:
    """The venue's clock minus ours: ``server_time`` minus the midpoint of the exchange.

    Args:
        server_time: the venue's Unix time in the answer, in seconds.
        sent_at: our Unix time when the request was sent.
        received_at: our Unix time when the answer arrived.

    Returns:
        Seconds to add to our clock to read the venue's (positive: the venue is ahead).
    """
    return server_time - (sent_at + received_at) / 2


def unknown_symbols(configured: Iterable[str], listed: Collection[str]) -> dict[str, str | None]:
    """The configured native symbols the venue does not list, each with a suggestion.

    Args:
        configured: the native names the connection subscribes.
        listed: every native name the venue lists.

    Returns:
        ``native -> the closest listed name`` (``difflib.get_close_matches``), or
        ``native -> None`` when nothing listed is close; empty when all are listed.
    """
    unknown: dict[str, str | None] = {}
    for native in configured:
        if native in listed or native in unknown:
            continue
        close = difflib.get_close_matches(native, listed, n=1)
        unknown[native] = close[0] if close else None
    return unknown
