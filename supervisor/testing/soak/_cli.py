"""``python -m supervisor.testing.soak``: parse the options, run, print, exit.

Exit status: 0 when no bound or check was broken, 1 when one was (the summary names
each, with the command that replays the run), 2 for bad input (an unknown option value,
a configuration that cannot be loaded or soaked), never with a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Final

import trio
import trio.testing

from actors import ConfigError
from supervisor.testing.soak._faults import FaultKind
from supervisor.testing.soak._records import FaultRecord, RunResult, SoakOptions
from supervisor.testing.soak._report import render, replay_command, summarize
from supervisor.testing.soak._runner import run_soak
from supervisor.testing.soak._venues import SoakConfigError

__all__ = ["main"]

#: Faults per run unless ``--faults`` says otherwise: the documented long runs.
DEFAULT_FAULTS: Final = {"memory": 10_000, "tcp": 500}
_KINDS: Final = ", ".join(kind.value for kind in FaultKind)


class _Usage(Exception):
    """Bad input: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m supervisor.testing.soak",
        description=(
            "Drive the rule-enforcing fake exchanges through the supervisor with "
            "randomized faults, using a configuration file's settings, and check that "
            "every connection comes back within its bound, that no message is lost "
            "silently and that nothing leaks."
        ),
    )
    parser.add_argument(
        "--config", default="config.toml", help="configuration file (default: config.toml)"
    )
    parser.add_argument(
        "--faults",
        type=int,
        default=None,
        help="faults to inject (default: 10000 in memory, 500 over TCP)",
    )
    parser.add_argument("--seed", type=int, default=1, help="names the run (default: 1)")
    parser.add_argument(
        "--transport",
        choices=("memory", "tcp"),
        default="memory",
        help="memory: in-memory streams on trio's MockClock (fast, exact virtual times); "
        "tcp: real loopback sockets and the real clock",
    )
    parser.add_argument(
        "--kinds",
        default=None,
        help=f"comma-separated fault kinds to inject (default: all of {_KINDS})",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between two data frames of one topic (default: stale_after / 2)",
    )
    parser.add_argument(
        "--max-outage",
        type=float,
        default=60.0,
        help="longest outage or refusal window in seconds (default: 60)",
    )
    parser.add_argument(
        "--json",
        default=None,
        help="also write the results to this file: the summary, every violation and the "
        "record of each fault that broke a bound",
    )
    parser.add_argument(
        "--fault-list",
        action="store_true",
        help="with --json, list every fault's record too (keeps about 0.6 KiB per fault "
        "in memory, which then shows in the RSS line)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print only the verdict and the violations"
    )
    return parser


def _options(args: argparse.Namespace) -> SoakOptions:
    if args.kinds is None:
        kinds = frozenset(FaultKind)
    else:
        names = [name.strip() for name in args.kinds.split(",") if name.strip()]
        unknown = [name for name in names if name not in {k.value for k in FaultKind}]
        if unknown or not names:
            raise _Usage(
                f"--kinds {args.kinds!r}: unknown fault kind(s) {', '.join(map(repr, unknown))}; "
                f"choose from {_KINDS}"
                if unknown
                else f"--kinds {args.kinds!r} names no fault kind; choose from {_KINDS}"
            )
        kinds = frozenset(FaultKind(name) for name in names)
    if args.fault_list and args.json is None:
        raise _Usage("--fault-list lists every fault in the --json file; add --json FILE")
    faults = args.faults if args.faults is not None else DEFAULT_FAULTS[args.transport]
    if faults < 1:
        raise _Usage(f"--faults {faults!r}: inject at least 1 fault")
    for option, value in (("--interval", args.interval), ("--max-outage", args.max_outage)):
        if value is not None and (math.isnan(value) or math.isinf(value) or value <= 0):
            raise _Usage(f"{option} {value!r}: expected a positive number of seconds")
    return SoakOptions(
        config=args.config,
        faults=faults,
        seed=args.seed,
        transport=args.transport,
        kinds=kinds,
        interval=args.interval,
        max_outage=args.max_outage,
        progress=None if args.quiet else _progress(faults),
        keep_records=args.fault_list,
    )


def _progress(total: int) -> Any:
    step = max(1, total // 10)
    reported = [0]

    def show(line: str) -> None:
        done = int(line.split()[2].partition("/")[0])
        if done >= reported[0] + step or done >= total:
            reported[0] = done
            print(line.split(" (")[0], file=sys.stderr, flush=True)

    return show


def _run(options: SoakOptions) -> RunResult:
    if options.transport == "memory":
        # Trio shuffles its run queue with a module-level Random; seeding it makes a
        # memory run replay exactly (the same faults at the same virtual times).
        scheduler = getattr(trio._core._run, "_r", None)
        if scheduler is not None:
            scheduler.seed(options.seed)
        clock = trio.testing.MockClock(autojump_threshold=0)
        return trio.run(run_soak, options, clock=clock)
    return trio.run(run_soak, options)


def _record(record: FaultRecord) -> dict[str, Any]:
    return {
        "index": record.fault.index,
        "round": record.round,
        "kind": record.fault.kind.value,
        "fault": record.fault.describe(),
        "venue": record.fault.venue,
        "at": round(record.at, 3),
        "lasted": round(record.end, 3),
        "detected": record.detected,
        "recovered": record.recovered,
        "delay": record.delay,
        "bound": record.bound,
        "restarts": record.restarts,
        "last_error": record.last_error,
        "problems": record.problems,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak from the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        options = _options(args)
        result = _run(options)
    except _Usage as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, SoakConfigError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    summary, violations = summarize(result)
    first = next((v.fault for v in violations if v.fault is not None), None)
    replay = replay_command(result, None if first is None else first + 1)
    if args.json is not None:
        document = dict(summary)
        document["violation_list"] = [asdict(v) for v in violations]
        document["broken_faults"] = [_record(r) for r in result.broken]
        if args.fault_list:
            document["fault_list"] = [_record(r) for r in result.records]
        try:
            with open(args.json, "w") as file:
                json.dump(document, file, indent=1)
        except OSError as exc:
            print(
                f"{parser.prog}: error: cannot write --json {args.json!r}: {exc}", file=sys.stderr
            )
            return 2
    if args.quiet:
        verdict = "no violations" if not violations else f"{len(violations)} violation(s)"
        print(f"soak: {summary['faults']} faults, seed {summary['seed']}: {verdict}")
        for violation in violations[:60]:
            print(f"  {violation.text}")
        if violations:
            print(f"replay: {replay}")
    else:
        print(render(summary, violations, replay=replay))
    return 1 if violations else 0
