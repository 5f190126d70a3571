"""What a soak run is asked to do and what it measured (plain data, no behaviour)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from actors.registry import ConnectionStats
from supervisor.config import Config
from supervisor.testing.soak._faults import Fault, FaultKind
from supervisor.testing.soak._ledger import Ledger

__all__ = ["FaultRecord", "Leaks", "RunResult", "SoakOptions", "Transport"]

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
    """Everything a run measured; the report is built from it."""

    options: SoakOptions
    config: Config
    interval: float
    records: list[FaultRecord]
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
