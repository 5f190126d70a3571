"""The ``marketprism`` command: argument parsing and the run, check and demo commands.

Exit codes: 0 success (including a clean stop on SIGINT/SIGTERM), 1 the supervisor gave
up (restart intensity exceeded; the message names the connection and its last error),
2 a usage or configuration problem (one ``FILE:LINE: key: problem`` line each).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import Final, TextIO

import msgspec
import trio

from actors import ConfigError, GaveUp, RestartLimitExceeded
from actors.registry import Stats
from supervisor.api import open_supervisor
from supervisor.cli.demo import run_demo
from supervisor.cli.signals import stop_on_signals
from supervisor.config import Config, load_config
from supervisor.tree import Supervisor

__all__ = ["main"]

logger = logging.getLogger("marketprism.cli")

EXIT_OK: Final = 0
EXIT_GAVE_UP: Final = 1
EXIT_CONFIG: Final = 2
DEFAULT_CONFIG: Final = "config.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marketprism",
        description="Supervise WebSocket market-data connections to crypto exchanges.",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity on stderr (default: info)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the supervisor from a TOML config")
    run.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help="config file")
    run.add_argument(
        "--output",
        choices=["jsonl", "none"],
        default="jsonl",
        help="jsonl: one JSON object per delivered message on stdout (default); "
        "none: deliver and count only",
    )
    run.add_argument("--duration", type=_seconds, default=None, help="stop cleanly after SECONDS")

    check = commands.add_parser("check", help="validate a config file and start nothing")
    check.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help="config file")

    demo = commands.add_parser(
        "demo", help="offline demo: built-in fake exchanges with injected faults"
    )
    demo.add_argument("--duration", type=_seconds, default=None, help="stop after SECONDS")
    demo.add_argument(
        "--fault-every",
        type=_seconds,
        default=3.0,
        help="seconds between injected faults (default: 3)",
    )
    demo.add_argument("--seed", type=int, default=None, help="seed for faults and jitter")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    root = logging.getLogger("marketprism")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``marketprism`` console script.

    Args:
        argv: the arguments after the program name; default ``sys.argv[1:]``.

    Returns:
        The process exit code (see the module docstring).
    """
    args = _parser().parse_args(argv)
    _configure_logging(args.log_level)
    if args.command == "check":
        return _check(args.config)
    if args.command == "run":
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            return _report_config_error(exc)
        return _run_supervised(_run, config, args.output, args.duration)
    return _run_supervised(run_demo, args.duration, args.fault_every, args.seed)


def _check(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _report_config_error(exc)
    names = ", ".join(c.name for c in config.connections)
    print(f"{path}: OK: {len(config.connections)} connection(s): {names}")
    return EXIT_OK


def _report_config_error(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    return EXIT_CONFIG


def _run_supervised(fn: object, *args: object) -> int:
    try:
        trio.run(fn, *args)  # type: ignore[arg-type]
    except RestartLimitExceeded as exc:
        print(f"marketprism: gave up on connection {exc.connection!r}: {exc}", file=sys.stderr)
        return EXIT_GAVE_UP
    except GaveUp as exc:
        print(f"marketprism: {exc}", file=sys.stderr)
        return EXIT_GAVE_UP
    except ConfigError as exc:
        return _report_config_error(exc)
    return EXIT_OK


async def _run(config: Config, output: str, duration: float | None) -> None:
    out = sys.stdout.buffer
    encode = msgspec.json.Encoder().encode_into
    buffer = bytearray()
    async with open_supervisor(config) as sup, trio.open_nursery() as nursery:
        nursery.start_soon(stop_on_signals, sup)
        if duration is not None:
            nursery.start_soon(_stop_after, sup, duration)
        try:
            async for batch in sup.batches():
                if output == "none":
                    continue
                buffer.clear()
                for message in batch:
                    encode(message, buffer, -1)
                    buffer += b"\n"
                out.write(buffer)
                out.flush()
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, as Unix tools do.
            _silence_stdout()
            logger.info("stdout closed; stopping")
        await sup.stop()
        _print_summary(await sup.stats(), sys.stderr)
        nursery.cancel_scope.cancel(reason="supervisor stopped")


async def _stop_after(sup: Supervisor, duration: float) -> None:
    await trio.sleep(duration)
    logger.info("--duration %g s reached; stopping", duration)
    await sup.stop()


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _print_summary(stats: Stats, stream: TextIO) -> None:
    for conn in stats.connections:
        print(
            f"{conn.name}: {conn.messages} messages, {conn.connects} connects, "
            f"{conn.restarts} restarts, {conn.dropped} dropped, {conn.malformed} malformed"
            + (f"; last error: {conn.last_error}" if conn.last_error else ""),
            file=stream,
        )
