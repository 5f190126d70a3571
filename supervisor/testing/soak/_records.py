"""What a soak run is asked to do and what it measured (plain data, no behaviour)."""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from actors.registry import ConnectionStats
from supervisor.config import Config
from supervisor.testing.soak._faults import Fault, FaultKind
from supervisor.testing.soak._ledger import Ledger

__all__ = ["FaultRecord", "KindStats", "Leaks", "RunResult", "SoakOptions", "Transport"]

Transport = Literal["memory", "tcp"]


@dataclass(frozen=True)
class SoakOptions:
    """What to run (see ``python -m supervisor.testing.soak --help``).

    Attributes:
        config: the configuration file whose settings are soaked.
        faults: how many faults to inject.
        seed: names the run: faults, parameters, backoff jitter (and, in memory,
            Trio's scheduling order).
        transport: ``memory`` (MockClock, virtual time) or ``tcp`` (loopback, real time).
        kinds: the enabled fault kinds.
        interval: seconds between two data frames of one topic; None for half the shortest
            ``stale_after``.
        max_outage: the longest outage or refusal window, in seconds.
        warmup: share of the faults after which the RSS baseline is taken.
        progress: called with one line per round (None: silent).
        keep_records: keep every fault's :class:`FaultRecord` (for ``--json``; about
            0.5 KiB each, which shows in RSS); otherwise only those that broke a bound
            are kept and each kind is summed up in a :class:`KindStats`.
    """

    config: str
    faults: int
    seed: int
    transport: Transport
    kinds: frozenset[FaultKind]
    interval: float | None = None
    max_outage: float = 60.0
    warmup: float = 0.1
    progress: Callable[[str], None] | None = None
    keep_records: bool = False


@dataclass(slots=True)
class FaultRecord:
    """What happened to one fault.

    Attributes:
        fault: the fault.
        round: the round it belonged to.
        at: trio time it started (since the run started).
        end: seconds from its start to its end (outage, refusal window, slow consumer).
        detected: seconds from its start until the client gave the session up (None:
            it did not, or the kind ends no session).
        recovered: seconds from the fault's end (a stall: its start) until the
            connection was live again (a notice: handed over); None if it never was.
        delay: the backoff delay drawn for the reconnect (0: no restart).
        bound: ``delay + stale_after + 1``.
        restarts: restarts the supervisor scheduled during the fault.
        last_error: the connection's last error afterwards.
        problems: the bounds and checks this fault broke.
        disconnects: the connection's disconnects once it recovered.
        slow_disconnects: SLOW: every connection's disconnects once all recovered.
    """

    fault: Fault
    round: int
    at: float
    end: float = 0.0
    detected: float | None = None
    recovered: float | None = None
    delay: float = 0.0
    bound: float = 0.0
    restarts: int = 0
    last_error: str = ""
    problems: list[str] = field(default_factory=list)
    disconnects: int = 0
    slow_disconnects: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class KindStats:
    """One fault kind over a run, in constant memory per fault (two floats).

    Attributes:
        count: faults of this kind.
        detected: each fault's detection time, where it has one.
        recovered: each fault's recovery time, where it recovered.
        bound_min: the smallest bound of a recovered fault.
        bound_max: the largest bound of a recovered fault.
        over_bound: faults that recovered later than their bound.
        restarts: restarts the supervisor scheduled during these faults.
        violations: bounds and checks these faults broke.
    """

    count: int = 0
    detected: array[float] = field(default_factory=lambda: array("d"))
    recovered: array[float] = field(default_factory=lambda: array("d"))
    bound_min: float = math.inf
    bound_max: float = 0.0
    over_bound: int = 0
    restarts: int = 0
    violations: int = 0

    def add(self, record: FaultRecord) -> None:
        """Fold one finished fault in."""
        self.count += 1
        if record.detected is not None:
            self.detected.append(record.detected)
        if record.recovered is not None:
            self.recovered.append(record.recovered)
            self.bound_min = min(self.bound_min, record.bound)
            self.bound_max = max(self.bound_max, record.bound)
            if record.recovered > record.bound:
                self.over_bound += 1
        self.restarts += record.restarts
        self.violations += len(record.problems)


@dataclass
class Leaks:
    """Leak probes over the run."""

    fds_baseline: int = -1
    tasks_baseline: int = -1
    fds_last: int = -1
    tasks_last: int = -1
    checkpoints: int = 0
    off_baseline: int = 0
    rss_warm: int = -1
    rss_last: int = -1
    rss_max: int = -1
    #: ``(faults done, RSS)`` at each tenth of the run.
    rss_curve: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class RunResult:
    """Everything a run measured; the report is built from it.

    Attributes:
        faults: faults injected.
        rounds: rounds run.
        kinds: each kind's aggregates.
        records: every fault's record if ``keep_records``, else none.
        broken: the records of the faults that broke a bound or check (at most
            ``MAX_BROKEN``).
        garbage: garbage frames sent, per connection.
    """

    options: SoakOptions
    config: Config
    interval: float
    faults: int
    rounds: int
    kinds: dict[FaultKind, KindStats]
    records: list[FaultRecord]
    broken: list[FaultRecord]
    garbage: dict[str, int]
    ledger: Ledger
    leaks: Leaks
    stats: tuple[ConnectionStats, ...]
    problems: list[str]
    log_counts: dict[str, int]
    log_errors: list[str]
    elapsed: float
    cpu: float
    virtual: float
    refused: dict[str, int]
    stopped: str | None
