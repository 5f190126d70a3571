"""The soak's verdict: violations, the summary table, and the JSON document.

Theory of operation: :func:`summarize` turns a :class:`~._runner.RunResult` into plain
data (the JSON document, less the per-fault list) and the list of violations, each
naming the fault that broke a bound (kind, venue, index, time) so that the run can be
replayed with the same seed (:func:`replay_command`). :func:`render` prints that data
as text. Nothing here measures anything.
"""

from __future__ import annotations

import math
import platform
import sys
from dataclasses import dataclass
from typing import Any, Final

import trio

from supervisor.testing.soak._faults import FaultKind
from supervisor.testing.soak._records import FaultRecord, RunResult

__all__ = ["DEFINITIONS", "Violation", "render", "replay_command", "summarize"]

#: RSS may grow this much after the warm-up (checked over TCP; reported in memory).
RSS_LIMIT: Final = 0.05

#: What each accounting line means (printed with the summary).
DEFINITIONS: Final = """\
accounting: every data message a fake wrote is one market event with its own number
  (trade id, book sequence, ticker number); 'written' counts what the fakes started to
  write on a session whose subscription they had acknowledged; two sessions open at once
  (a handover) write the same numbers, and the consumer must get each exactly once
  (trades, book updates) or at least once (tickers carry no order to deduplicate by).
  delivered      received by the consumer
  cut mid-write  the session ended while the frame was being written: never fully sent
  in flight      after the last frame the consumer got from a session that ended
                 abruptly (reset, dropped half-open socket, 1009): lost on the wire; allowed
  dropped        discarded by the overflow policy and counted in stats().dropped
  silent         anything else: before a close frame, before a delivered frame, at a
                 handover the successor did not cover: a violation
bounds: live again (every topic acknowledged by the fake, the supervisor's state live)
  within the backoff delay drawn for the reconnect + stale_after + 1 s, counted from the
  fault's end (outages and refusal windows: their end; a stall: its start; a slow
  consumer: its end); a notice must hand over within stale_after + 1 s, no restart."""


@dataclass(frozen=True)
class Violation:
    """One broken bound or check.

    Attributes:
        text: what broke.
        fault: the fault's index, if one fault broke it.
        kind: that fault's kind.
        venue: that fault's connection.
        at: seconds into the run when that fault started.
    """

    text: str
    fault: int | None = None
    kind: str | None = None
    venue: str | None = None
    at: float | None = None


def _percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "p50": _percentile(values, 0.5),
        "p99": _percentile(values, 0.99),
        "max": max(values),
    }


def replay_command(result: RunResult, faults: int | None = None) -> str:
    """The command line that replays ``result``'s run (up to ``faults`` faults)."""
    options = result.options
    parts = [
        "python -m supervisor.testing.soak",
        f"--transport {options.transport}",
        f"--seed {options.seed}",
        f"--faults {faults if faults is not None else options.faults}",
    ]
    if options.kinds != frozenset(FaultKind):
        parts.append("--kinds " + ",".join(sorted(k.value for k in options.kinds)))
    if options.config != "config.toml":
        parts.append(f"--config {options.config}")
    if options.interval is not None:
        parts.append(f"--interval {options.interval:g}")
    if options.max_outage != 60.0:
        parts.append(f"--max-outage {options.max_outage:g}")
    return " ".join(parts)


def _record_violations(record: FaultRecord) -> list[Violation]:
    fault = record.fault
    return [
        Violation(text, fault.index, fault.kind.value, fault.venue, record.at)
        for text in record.problems
    ]


def summarize(result: RunResult) -> tuple[dict[str, Any], list[Violation]]:
    """The run's summary as plain data, and every violation."""
    violations: list[Violation] = []
    for record in result.broken:
        violations.extend(_record_violations(record))
    violations.extend(Violation(text) for text in result.problems)
    if result.stopped is not None:
        violations.append(Violation(f"the run stopped early: {result.stopped}"))
    totals = result.ledger.totals
    stats = {conn.name: conn for conn in result.stats}
    dropped = sum(conn.dropped for conn in result.stats)
    silent = max(0, totals.silent - dropped)
    if silent:
        violations.append(Violation(f"{silent} message(s) lost silently"))
        for loss in result.ledger.losses:
            connection, stream_kind, symbol = loss.stream
            violations.append(
                Violation(
                    f"lost {connection} {stream_kind} {symbol} {loss.id} (session {loss.session}, "
                    f"frame {loss.frame}, session {loss.end.value}"
                    + (f" by {loss.fault}" if loss.fault else "")
                    + f"): {loss.why}"
                )
            )
    for count, what in (
        (totals.duplicates, "trade(s) delivered twice or out of order"),
        (totals.backwards, "book delta(s) delivered twice or out of order"),
        (totals.unexpected, "message(s) delivered that no fake wrote (or after settlement)"),
        (totals.repeated_outside_handover, "ticker(s) repeated outside a handover"),
        (totals.unexplained_breaks, "book chain break(s) the fakes did not write"),
    ):
        if count:
            violations.append(Violation(f"{count} {what}"))
    if any((totals.duplicates, totals.backwards, totals.unexpected)) or (
        totals.repeated_outside_handover or totals.unexplained_breaks
    ):
        violations.extend(Violation(f"  e.g. {text}") for text in result.ledger.anomalies)
    once = totals.sent - totals.overlaps
    accounted = (
        totals.delivered
        - totals.redelivered
        - totals.unexpected
        + totals.cut
        + totals.in_flight
        + totals.silent
        + result.ledger.unsettled_undelivered()
    )
    if once != accounted:
        violations.append(
            Violation(
                f"the ledger does not balance: {once} message(s) written once, {accounted} "
                "delivered once or accounted for"
            )
        )
    garbage = result.garbage
    per_connection: dict[str, Any] = {}
    for name, conn in stats.items():
        gaps_written = totals.gaps_by_connection.get(name, 0)
        if conn.gaps != gaps_written:
            violations.append(
                Violation(
                    f"{name}: the supervisor counted {conn.gaps} gap(s); the fake wrote "
                    f"{gaps_written} that the consumer received"
                )
            )
        if conn.malformed != garbage.get(name, 0):
            violations.append(
                Violation(
                    f"{name}: the supervisor counted {conn.malformed} malformed frame(s) for "
                    f"{garbage.get(name, 0)} garbage frame(s)"
                )
            )
        per_connection[name] = {
            "exchange": conn.exchange,
            "connects": conn.connects,
            "restarts": conn.restarts,
            "messages": conn.messages,
            "dropped": conn.dropped,
            "malformed": conn.malformed,
            "gaps": conn.gaps,
            "refused_by_fake": result.refused.get(name, 0),
        }
    errors = [text for text in result.log_errors]
    if errors:
        violations.append(Violation(f"{result.log_counts.get('ERROR', 0)} error(s) logged"))
        violations.extend(Violation(f"  logged: {text}") for text in errors[:5])
    leaks = result.leaks
    growth = (
        (leaks.rss_last - leaks.rss_warm) / leaks.rss_warm
        if leaks.rss_warm > 0 and leaks.rss_last > 0
        else None
    )
    if growth is not None and growth >= RSS_LIMIT and result.options.transport == "tcp":
        violations.append(
            Violation(
                f"RSS grew {growth:.1%} after the warm-up "
                f"({leaks.rss_warm / 2**20:.1f} -> {leaks.rss_last / 2**20:.1f} MiB)"
            )
        )
    kinds: dict[str, Any] = {}
    for kind in FaultKind:
        row = result.kinds.get(kind)
        if row is None:
            continue
        kinds[kind.value] = {
            "count": row.count,
            "detected": _spread(list(row.detected)),
            "recovered": _spread(list(row.recovered)),
            "bound": {"min": row.bound_min, "max": row.bound_max} if row.recovered else None,
            "over_bound": row.over_bound,
            "violations": row.violations,
            "restarts": row.restarts,
            "lost_in_flight": totals.in_flight_by_fault.get(kind.value, 0),
        }
    spec = result.config.connections[0]
    summary: dict[str, Any] = {
        "command": replay_command(result),
        "transport": result.options.transport,
        "seed": result.options.seed,
        "faults": result.faults,
        "rounds": result.rounds,
        "kinds": kinds,
        "config": {
            "file": result.options.config,
            "stale_after": sorted({c.stale_after for c in result.config.connections}),
            "backoff": {
                "initial": spec.backoff.initial,
                "max": spec.backoff.max,
                "multiplier": spec.backoff.multiplier,
                "jitter": spec.backoff.jitter.value,
                "reset_after": spec.backoff.reset_after,
            },
            "overflow": spec.overflow.value,
            "buffer": spec.buffer,
            "interval": result.interval,
        },
        "messages": {
            "written": totals.sent,
            "written_by_two_sessions": totals.overlaps,
            "delivered": totals.delivered,
            "delivered_again": totals.redelivered,
            "settled": totals.settled,
            "unsettled_at_end": result.ledger.unsettled(),
            "unsettled_undelivered_at_end": result.ledger.unsettled_undelivered(),
            "cut_mid_write": totals.cut,
            "lost_in_flight": totals.in_flight,
            "longest_tail": totals.max_tail,
            "dropped_by_policy": dropped,
            "silent_losses": silent,
            "trade_duplicates": totals.duplicates,
            "book_backwards": totals.backwards,
            "unexpected": totals.unexpected,
            "tickers_repeated_at_handovers": totals.repeated_tickers
            - totals.repeated_outside_handover,
            "tickers_repeated_elsewhere": totals.repeated_outside_handover,
            "book_gaps_written": totals.gaps_written,
            "book_gaps_delivered": totals.gaps_delivered,
            "book_breaks_at_new_sessions": totals.session_breaks,
            "book_breaks_unexplained": totals.unexplained_breaks,
            "raw_messages": totals.other,
        },
        "connections": per_connection,
        "leaks": {
            "checkpoints": leaks.checkpoints,
            "off_baseline": leaks.off_baseline,
            "fds": {"baseline": leaks.fds_baseline, "last": leaks.fds_last},
            "tasks": {"baseline": leaks.tasks_baseline, "last": leaks.tasks_last},
            "rss_mib": {
                "after_warmup": round(leaks.rss_warm / 2**20, 1),
                "last": round(leaks.rss_last / 2**20, 1),
                "max": round(leaks.rss_max / 2**20, 1),
                "growth": None if growth is None else round(growth, 4),
                "curve": [[done, round(rss / 2**20, 1)] for done, rss in leaks.rss_curve],
                "checked": result.options.transport == "tcp",
            },
        },
        "supervisor": {
            "stopped_early": result.stopped,
            "log_records": dict(result.log_counts),
        },
        "time": {
            "trio_seconds": round(result.virtual, 1),
            "wall_seconds": round(result.elapsed, 1),
            "cpu_seconds": round(result.cpu, 1),
        },
        "environment": {
            "python": sys.version.split()[0],
            "trio": trio.__version__,
            "platform": platform.platform(),
            "machine": platform.machine(),
        },
        "violations": len(violations),
    }
    return summary, violations


def _fmt(spread: dict[str, float] | None) -> str:
    if spread is None:
        return "-"
    return f"{spread['p50']:.2f} / {spread['p99']:.2f} / {spread['max']:.2f}"


def render(summary: dict[str, Any], violations: list[Violation], *, replay: str) -> str:
    """The summary as text: header, table per fault kind, accounting, leaks, verdict."""
    lines: list[str] = []
    add = lines.append
    cfg = summary["config"]
    backoff = cfg["backoff"]
    t = summary["time"]
    add(
        f"MarketPrism fault soak: {summary['faults']} faults in {summary['rounds']} rounds, "
        f"{summary['transport']} transport, seed {summary['seed']}"
    )
    add(
        f"  {t['trio_seconds']:.0f} s of trio time in {t['wall_seconds']:.1f} s "
        f"({t['cpu_seconds']:.1f} s CPU); {summary['environment']['platform']}, "
        f"Python {summary['environment']['python']}, trio {summary['environment']['trio']}"
    )
    stale = ", ".join(f"{s:g}" for s in cfg["stale_after"])
    add(
        f"  config {cfg['file']}: stale_after {stale} s, backoff {backoff['initial']:g}..."
        f"{backoff['max']:g} s x{backoff['multiplier']:g} {backoff['jitter']} jitter, "
        f"reset_after {backoff['reset_after']:g} s, overflow {cfg['overflow']}, buffer "
        f"{cfg['buffer']}; data every {cfg['interval']:g} s per topic"
    )
    add("")
    header = (
        f"{'kind':<10} {'count':>6}  {'detected p50 / p99 / max s':>26}  "
        f"{'recovered p50 / p99 / max s':>27}  {'bound s':>13}  {'over':>4}  {'restarts':>8}"
    )
    add(header)
    add("-" * len(header))
    for kind, row in summary["kinds"].items():
        bound = row["bound"]
        bounds = f"{bound['min']:.1f}..{bound['max']:.1f}" if bound else "-"
        add(
            f"{kind:<10} {row['count']:>6}  {_fmt(row['detected']):>26}  "
            f"{_fmt(row['recovered']):>27}  {bounds:>13}  {row['over_bound']:>4}  "
            f"{row['restarts']:>8}"
        )
    m = summary["messages"]
    add("")
    add(
        f"messages: written {m['written']} ({m['written_by_two_sessions']} by two sessions "
        f"at once), delivered {m['delivered']} ({m['delivered_again']} a second time), "
        f"cut mid-write "
        f"{m['cut_mid_write']}, lost in flight {m['lost_in_flight']} (longest tail "
        f"{m['longest_tail']} frame(s)), dropped by policy {m['dropped_by_policy']}, "
        f"silent losses {m['silent_losses']}"
    )
    once = m["written"] - m["written_by_two_sessions"]
    add(
        f"  balance: written once {once} = delivered once "
        f"{m['delivered'] - m['delivered_again'] - m['unexpected']} + cut "
        f"{m['cut_mid_write']} + in flight {m['lost_in_flight']} + lost "
        f"{m['silent_losses'] + m['dropped_by_policy']} + unsettled and undelivered "
        f"{m['unsettled_undelivered_at_end']}"
    )
    add(
        f"  duplicates: trades {m['trade_duplicates']}, book deltas {m['book_backwards']}; "
        f"tickers repeated at handovers {m['tickers_repeated_at_handovers']} (no order to "
        f"deduplicate by), elsewhere {m['tickers_repeated_elsewhere']}; unexpected "
        f"{m['unexpected']}; unsettled at the end {m['unsettled_at_end']}"
    )
    add(
        f"  book gaps: written {m['book_gaps_written']}, delivered "
        f"{m['book_gaps_delivered']}, counted by the supervisor "
        f"{sum(c['gaps'] for c in summary['connections'].values())}; chain restarts at new "
        f"sessions {m['book_breaks_at_new_sessions']}, unexplained "
        f"{m['book_breaks_unexplained']}"
    )
    leaks = summary["leaks"]
    rss = leaks["rss_mib"]
    growth = "n/a" if rss["growth"] is None else f"{rss['growth']:+.1%}"
    add(
        f"leaks: {leaks['checkpoints']} checkpoints, {leaks['off_baseline']} off baseline; "
        f"fds {leaks['fds']['baseline']} -> {leaks['fds']['last']}, tasks "
        f"{leaks['tasks']['baseline']} -> {leaks['tasks']['last']}; RSS {rss['after_warmup']} "
        f"-> {rss['last']} MiB after warm-up ({growth}"
        + (", limit +5 %)" if rss["checked"] else ", reported only)")
    )
    conns = summary["connections"]
    add(
        "supervisor: "
        + ("kept running" if summary["supervisor"]["stopped_early"] is None else "STOPPED")
        + "; "
        + ", ".join(
            f"{name} {c['connects']} connects / {c['restarts']} restarts"
            for name, c in conns.items()
        )
    )
    add("")
    add(DEFINITIONS)
    add("")
    if not violations:
        add("verdict: no violations")
    else:
        add(f"verdict: {len(violations)} violation(s)")
        for violation in violations[:60]:
            where = ""
            if violation.fault is not None:
                at = f"{violation.at:.1f}" if violation.at is not None else "?"
                where = f"[{violation.kind} #{violation.fault} on {violation.venue} at t={at} s] "
            add(f"  {where}{violation.text}")
        if len(violations) > 60:
            add(f"  ... and {len(violations) - 60} more (see --json)")
        first = next((v for v in violations if v.fault is not None), None)
        if first is not None and first.fault is not None:
            add(f"replay: {replay} (fault #{first.fault} is the first that broke a bound)")
        else:
            add(f"replay: {replay}")
    return "\n".join(lines)
