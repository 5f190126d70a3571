"""The fault repertoire and how a round of faults is drawn.

Theory of operation: the soak runs in *rounds*. A round is either one slow-consumer
fault (it affects every connection at once) or, for each venue independently, with
probability ``VENUE_CHANCE``, one fault drawn uniformly from the enabled kinds that
apply to it (at least one venue is hit). All faults of a round start at the same
moment; the round ends once every connection recovered, followed by a quiet period.
Every draw comes from one ``random.Random(seed)``, so a seed names a run.

Durations follow the brief and scale with the configuration where a fixed number would
make no sense: outages last 1 s to ``max_outage`` (60 s by default), refusal windows 1
to 15 s (both capped by ``max_outage``), a slow consumer lasts from a sixth of
``stale_after`` to twice it and takes 1 % to 10 % of ``stale_after`` per batch.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BUSY_INTERVAL",
    "BUSY_LEAD",
    "CLOSE_CODES",
    "GARBAGE_FRAMES",
    "VENUE_CHANCE",
    "Fault",
    "FaultKind",
    "draw_round",
]


class FaultKind(enum.Enum):
    """What a fault does (the value is its name on the command line)."""

    #: The fake closes the session with a close frame of a drawn code.
    CLOSE = "close"
    #: The fake drops the connection without a close frame (TCP RST; EOF in memory).
    RESET = "reset"
    #: Half-open: the connection stays open and nothing arrives in either direction.
    STALL = "stall"
    #: The fake closes the session (1001) and refuses connections (TCP RST) for a while.
    REFUSE = "refuse"
    #: The fake closes the session (1013) and answers upgrades with HTTP 503 or 429.
    REJECT = "reject"
    #: One text frame that is not JSON (or not the exchange's JSON).
    GARBAGE = "garbage"
    #: One frame one byte over the connection's ``max_message_size`` (client closes 1009).
    OVERSIZED = "oversized"
    #: The exchange announces a disconnect (Binance serverShutdown, OKX 64008) in a busy
    #: market, and often closes the announced session soon after.
    NOTICE = "notice"
    #: The next book update of every symbol is lost (the fake skips a sequence number).
    GAP = "gap"
    #: The consumer is slow for a while (every connection at once).
    SLOW = "slow"
    #: The whole venue is unreachable: every session reset, connections refused.
    OUTAGE = "outage"


#: Close codes drawn for CLOSE (RFC 6455 section 7.4.1 and the exchanges' own 4xxx).
CLOSE_CODES: Final = (1000, 1001, 1008, 1011, 1012, 1013, 4000, 4001, 4004, 4500)
#: Frames drawn for GARBAGE.
GARBAGE_FRAMES: Final = (
    "\x00garbage{",
    '{"unterminated',
    "[1,2,3]",
    "null",
    '{"event":"nonsense","data":[{"x":1}]}',
)
#: Seconds between two data frames of a topic around a notice: a busy market, so that a
#: make-before-break successor overlaps the old session (both get the same events).
BUSY_INTERVAL: Final = 0.1
#: Seconds the market is busy before the notice.
BUSY_LEAD: Final = 1.0
#: Chance that a venue gets a fault in a round that is not a slow-consumer round.
VENUE_CHANCE: Final = 0.8
#: Kinds that end the session they hit (recovery needs a new session).
ENDS_SESSION: Final = frozenset(
    {
        FaultKind.CLOSE,
        FaultKind.RESET,
        FaultKind.STALL,
        FaultKind.REFUSE,
        FaultKind.REJECT,
        FaultKind.OVERSIZED,
        FaultKind.OUTAGE,
    }
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One drawn fault.

    Attributes:
        index: its position in the run (0-based), for replay.
        kind: what it does.
        venue: the connection it hits (None for SLOW: all of them).
        code: CLOSE: the close code; REJECT: the HTTP status.
        seconds: how long it lasts (REFUSE, REJECT, OUTAGE, SLOW), or for NOTICE how
            long after the notice the fake closes the announced session (None: never).
        pause: SLOW: seconds the consumer takes per batch.
        frame: GARBAGE: the frame.
    """

    index: int
    kind: FaultKind
    venue: str | None
    code: int = 0
    seconds: float | None = None
    pause: float = 0.0
    frame: str = ""

    def describe(self) -> str:
        """One line naming the fault and its parameters."""
        kind = self.kind
        where = f" on {self.venue}" if self.venue is not None else ""
        if kind is FaultKind.CLOSE:
            return f"close {self.code}{where}"
        if kind in (FaultKind.REFUSE, FaultKind.OUTAGE):
            return f"{kind.value} {self.seconds:.1f} s{where}"
        if kind is FaultKind.REJECT:
            return f"reject HTTP {self.code} for {self.seconds:.1f} s{where}"
        if kind is FaultKind.SLOW:
            return f"slow consumer {self.seconds:.1f} s, {self.pause:.2f} s per batch"
        if kind is FaultKind.NOTICE:
            after = "never" if self.seconds is None else f"{self.seconds:.1f} s later"
            return f"notice{where}, closed as announced {after}"
        if kind is FaultKind.GARBAGE:
            return f"garbage {self.frame!r}{where}"
        return f"{kind.value}{where}"


def draw_round(
    rng: random.Random,
    *,
    first: int,
    budget: int,
    venues: list[tuple[str, bool]],
    kinds: frozenset[FaultKind],
    stale_after: float,
    max_outage: float,
) -> list[Fault]:
    """Draw the faults of one round.

    Args:
        rng: the run's randomness.
        first: the index of the round's first fault.
        budget: at most this many faults (the run's remainder).
        venues: ``(name, announces disconnects)`` per venue, in configuration order.
        kinds: the enabled kinds.
        stale_after: the shortest ``stale_after`` of the connections (scales SLOW).
        max_outage: the longest outage or refusal window, in seconds.

    Returns:
        The round's faults (at least one, at most ``budget``).
    """
    per_venue = kinds - {FaultKind.SLOW}
    slow_share = 1 / len(kinds) if FaultKind.SLOW in kinds else 0.0
    if not per_venue or rng.random() < slow_share:
        seconds = rng.uniform(stale_after / 6, 2 * stale_after)
        pause = rng.uniform(0.01, 0.1) * stale_after
        return [Fault(first, FaultKind.SLOW, None, seconds=seconds, pause=pause)]
    faults: list[Fault] = []
    hit = [name for name, _ in venues if rng.random() < VENUE_CHANCE]
    if not hit:
        hit = [rng.choice(venues)[0]]
    notices = dict(venues)
    for name in hit:
        if len(faults) == budget:
            break
        choices = sorted(
            (k for k in per_venue if k is not FaultKind.NOTICE or notices[name]),
            key=lambda k: k.value,
        )
        if not choices:
            continue
        kind = rng.choice(choices)
        faults.append(_draw(rng, first + len(faults), kind, name, stale_after, max_outage))
    if not faults:  # only NOTICE enabled and the drawn venues announce nothing
        announcing = [name for name, announces in venues if announces]
        name = rng.choice(announcing)
        faults.append(_draw(rng, first, FaultKind.NOTICE, name, stale_after, max_outage))
    return faults


def _draw(
    rng: random.Random,
    index: int,
    kind: FaultKind,
    venue: str,
    stale_after: float,
    max_outage: float,
) -> Fault:
    shortest = min(1.0, max_outage)
    if kind is FaultKind.CLOSE:
        return Fault(index, kind, venue, code=rng.choice(CLOSE_CODES))
    if kind is FaultKind.REFUSE:
        return Fault(index, kind, venue, seconds=rng.uniform(shortest, min(15.0, max_outage)))
    if kind is FaultKind.REJECT:
        seconds = rng.uniform(shortest, min(15.0, max_outage))
        return Fault(index, kind, venue, code=rng.choice((503, 429)), seconds=seconds)
    if kind is FaultKind.OUTAGE:
        return Fault(index, kind, venue, seconds=rng.uniform(shortest, max_outage))
    if kind is FaultKind.GARBAGE:
        return Fault(index, kind, venue, frame=rng.choice(GARBAGE_FRAMES))
    if kind is FaultKind.NOTICE:
        # Never closed; closed about when the successor takes over (its first busy
        # frames), often before; or closed a while later.
        later = rng.choice((None, 2 * BUSY_INTERVAL, stale_after / 3))
        return Fault(index, kind, venue, seconds=None if later is None else rng.uniform(0.0, later))
    return Fault(index, kind, venue)
