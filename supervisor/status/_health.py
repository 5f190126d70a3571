"""Health, liveness and readiness, decided from one stats snapshot (pure: no I/O, no clock).

Which connections count: the permanent ones, or every connection in a configuration
without a permanent one. That is the same rule the supervisor uses to decide whether it
has given up (``GaveUp``), so ``/livez``, ``/readyz`` and ``/healthz`` never disagree
with it about which connections matter.
"""

from __future__ import annotations

from typing import Final

import msgspec

from actors.registry import ConnectionState, ConnectionStats, Stats
from supervisor.config import Config
from supervisor.policy import RestartType

#: States in which a connection that was live once is still "ready": live, or on its way
#: back (backing off within its backoff, reconnecting, resubscribing). ``failed`` (the
#: exchange keeps refusing the way a wrong configuration does) and ``stopped`` are not.
_READY_STATES: Final = frozenset(
    {
        ConnectionState.LIVE.value,
        ConnectionState.SUBSCRIBING.value,
        ConnectionState.CONNECTING.value,
        ConnectionState.BACKOFF.value,
    }
)


class Reason(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Why one connection makes a probe fail.

    Attributes:
        connection: the connection's name.
        exchange: its adapter.
        why: ``state`` (the connection is not where it must be), ``never live`` (it has
            not completed a handshake yet) or ``subscription`` (a topic is failed or
            silent).
        state: the connection's state, or for ``subscription`` the topic's.
        subscription: the native topic, for ``subscription``.
        last_error: why the connection's last session ended, if it did.
    """

    connection: str
    exchange: str
    why: str
    state: str
    subscription: str = ""
    last_error: str = ""


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to one probe.

    Attributes:
        status: ``ok`` or what is wrong (``unhealthy``, ``not ready``, ``stopped``).
        at: trio time of the snapshot the verdict was read from.
        reasons: one entry per problem; empty when ``status`` is ``ok``.
    """

    status: str
    at: float
    reasons: tuple[Reason, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the probe passes (HTTP 200)."""
        return not self.reasons and self.status == "ok"


def watched(config: Config, stats: Stats) -> list[ConnectionStats]:
    """The connections the probes look at: permanent ones, or all if none is permanent."""
    permanent = {c.name for c in config.connections if c.restart is RestartType.PERMANENT}
    return [c for c in stats.connections if not permanent or c.name in permanent]


def health(config: Config, stats: Stats) -> Verdict:
    """``/healthz``: every watched connection is live and none of its topics is failed or silent.

    Args:
        config: the supervisor's configuration (for the restart types).
        stats: one snapshot.

    Returns:
        ``ok``, or ``unhealthy`` with a reason per connection that is not live and per
        topic that is ``failed: ...`` or ``silent``.
    """
    reasons: list[Reason] = []
    for conn in watched(config, stats):
        if conn.state != ConnectionState.LIVE.value:
            reasons.append(_state_reason(conn, "state"))
        for topic, state in conn.subscriptions.items():
            if state == "silent" or state.startswith("failed"):
                reasons.append(
                    Reason(
                        connection=conn.name,
                        exchange=conn.exchange,
                        why="subscription",
                        subscription=topic,
                        state=state,
                    )
                )
    return Verdict(status="unhealthy" if reasons else "ok", at=stats.at, reasons=tuple(reasons))


def readiness(config: Config, stats: Stats, *, running: bool) -> Verdict:
    """``/readyz``: every watched connection was live once and is live or reconnecting.

    "Was live once" is read as ``connects > 0`` (a handshake succeeded); "reconnecting
    within its backoff" as a state other than ``failed`` and ``stopped``.

    Args:
        config: the supervisor's configuration (for the restart types).
        stats: one snapshot.
        running: whether the supervisor still runs; a stopped one is never ready.

    Returns:
        ``ok``, ``not ready`` with a reason per connection, or ``stopped``.
    """
    if not running:
        return Verdict(status="stopped", at=stats.at)
    reasons: list[Reason] = []
    for conn in watched(config, stats):
        if conn.connects == 0:
            reasons.append(_state_reason(conn, "never live"))
        elif conn.state not in _READY_STATES:
            reasons.append(_state_reason(conn, "state"))
    return Verdict(status="not ready" if reasons else "ok", at=stats.at, reasons=tuple(reasons))


def _state_reason(conn: ConnectionStats, why: str) -> Reason:
    return Reason(
        connection=conn.name,
        exchange=conn.exchange,
        why=why,
        state=conn.state,
        last_error=conn.last_error,
    )
