"""The ``marketprism`` command: argument parsing and the run, check, demo, probe and status
commands.

Exit codes: 0 success (including a clean stop on SIGINT/SIGTERM, and a reader of stdout
that went away, as with ``| head``), 1 the supervisor gave up (restart intensity
exceeded; the message names the connection and its last error) or stdout could not be
written (``status``: the endpoint could not be read), 2 a usage or configuration problem
(one ``FILE:LINE: key: problem`` line each; also a ``--status`` address that is taken or
not local, checked before anything connects).

``run`` never writes stdout or stderr from the event loop: its JSON lines, its log lines
and its summary go to two :class:`~supervisor.cli.output.LineWriter` (one per stream),
whose worker threads do the blocking writes. A reader that does not keep up (``run |
slow``, or both streams in one pipe with ``2>&1``) costs dropped lines (stdout beyond
``--output-buffer`` MiB, stderr beyond 1 MiB; one warning, and the total at exit), never
pongs or heartbeats. At exit each stream's buffer gets ``[supervisor] shutdown_timeout``
seconds to be written; what is still unwritten then is given up and counted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import Final, final

import msgspec
import trio

from actors import ConfigError, GaveUp, RestartLimitExceeded
from actors.registry import Stats
from supervisor.api import open_supervisor
from supervisor.cli.demo import run_demo
from supervisor.cli.logs import (
    LOG_FORMATS,
    JsonFormatter,
    TextFormatter,
    formatter,
    is_json,
    json_line,
)
from supervisor.cli.output import DEFAULT_OUTPUT_BUDGET, LineWriter
from supervisor.cli.probe import DEFAULT_TIMEOUT as DEFAULT_PROBE_TIMEOUT
from supervisor.cli.probe import run_command as run_probe
from supervisor.cli.signals import stop_on_signals
from supervisor.cli.status import DEFAULT_ADDRESS as DEFAULT_STATUS_ADDRESS
from supervisor.cli.status import DEFAULT_INTERVAL as DEFAULT_STATUS_INTERVAL
from supervisor.cli.status import run_status
from supervisor.cli.table import live_table
from supervisor.config import Config, load_config
from supervisor.status import bind_status, serve_status_listener
from supervisor.tree import Supervisor
from supervisor.wiring import resolve_routes

__all__ = ["main"]

logger = logging.getLogger("marketprism.cli")

EXIT_OK: Final = 0
EXIT_GAVE_UP: Final = 1
EXIT_CONFIG: Final = 2
DEFAULT_CONFIG: Final = "config.toml"
#: The descriptor ``run`` writes its JSON lines to: the process's standard output (not
#: ``sys.stdout``, which the writer's thread must not share with the interpreter).
_STDOUT: Final = 1
#: The largest ``--output-buffer``, in MiB.
_MAX_OUTPUT_BUFFER: Final = 4096.0
#: Bytes of log lines held for a reader of stderr that does not keep up: thousands of
#: lines, far more than a run logs between two reads of any live reader.
_STDERR_BUDGET: Final = 1 << 20


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
    parser.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="text: one readable line per event (default); json: one JSON object per "
        "line, with connection and exchange fields (every line of stderr, then, is JSON)",
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
    run.add_argument(
        "--output-buffer",
        type=_mebibytes,
        default=DEFAULT_OUTPUT_BUDGET,
        metavar="MIB",
        help="output held for a slow reader of stdout before lines are dropped, in MiB "
        f"(default: {DEFAULT_OUTPUT_BUDGET >> 20})",
    )
    _add_status_option(run)

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
    _add_status_option(demo)

    status = commands.add_parser(
        "status", help="live status table of a running `run|demo --status HOST:PORT`"
    )
    status.add_argument(
        "address",
        nargs="?",
        type=_host_port,
        default=DEFAULT_STATUS_ADDRESS,
        metavar="HOST:PORT",
        help=f"its status endpoint (default: {DEFAULT_STATUS_ADDRESS})",
    )
    status.add_argument(
        "--interval",
        type=_seconds,
        default=DEFAULT_STATUS_INTERVAL,
        help=f"seconds between polls (default: {DEFAULT_STATUS_INTERVAL:g})",
    )
    status.add_argument(
        "--once",
        action="store_true",
        help="print one table and exit (the default when stdout is not a terminal)",
    )

    probe = commands.add_parser(
        "probe",
        help="connect once, stage by stage (route, DNS, TCP, proxies, TLS, upgrade, "
        "subscription, data, REST), and say which stage fails",
    )
    probe.add_argument(
        "target", metavar="NAME|URL", help="a connection of the config, or a ws:// or wss:// URL"
    )
    probe.add_argument(
        "--config", default=None, help=f"config file for a NAME (default: {DEFAULT_CONFIG})"
    )
    probe.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    probe.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_PROBE_TIMEOUT,
        help="seconds each stage may take; the connect (TCP, proxies, TLS) counts as one "
        f"(default: {DEFAULT_PROBE_TIMEOUT:g})",
    )
    probe.add_argument(
        "--rest-url",
        default=None,
        metavar="ORIGIN",
        help="REST origin to call for the time stage instead of the venue's "
        "(e.g. https://api1.binance.com)",
    )
    return parser


def _add_status_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--status",
        type=_host_port,
        default=None,
        metavar="HOST:PORT",
        help="serve /status, /metrics, /healthz, /livez and /readyz over HTTP on HOST:PORT "
        "(e.g. 127.0.0.1:9464, [::1]:9464; off by default)",
    )


def _host_port(text: str) -> tuple[str, int]:
    """``--status``: ``HOST:PORT`` or ``[IPV6]:PORT``, port 0-65535 (0: any free port)."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9464"
        )
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9464 or [::1]:9464; PORT 0-65535)"
        )
    return host, int(port)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _mebibytes(text: str) -> int:
    """``--output-buffer``: a positive number of MiB, as whole bytes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of MiB") from None
    if not (math.isfinite(value) and 0 < value <= _MAX_OUTPUT_BUFFER):
        raise argparse.ArgumentTypeError(
            f"{text!r} must be a number of MiB above 0 and at most {_MAX_OUTPUT_BUFFER:g}"
        )
    return max(1, round(value * (1 << 20)))


def _configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
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
    _configure_logging(args.log_level, args.log_format)
    if args.command == "check":
        return _check(args.config)
    if args.command == "probe":
        return run_probe(
            args.target,
            config=args.config,
            default_config=DEFAULT_CONFIG,
            as_json=args.json,
            timeout=args.timeout,
            rest_url=args.rest_url,
            environ=os.environ,
        )
    if args.command == "status":
        return run_status(*args.address, interval=args.interval, once=args.once)
    if args.command == "run":
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            return _report_config_error(exc)
        return _run_supervised(
            _run, config, args.output, args.duration, args.output_buffer, args.status
        )
    return _run_supervised(_demo, args.status, args.duration, args.fault_every, args.seed)


def _check(path: str) -> int:
    try:
        config = load_config(path)
        # The routes as `run` would take them now (the environment's proxies included).
        routes = resolve_routes(config, os.environ)
    except ConfigError as exc:
        return _report_config_error(exc)
    names = ", ".join(c.name for c in config.connections)
    print(f"{path}: OK: {len(config.connections)} connection(s): {names}")
    for spec, route in zip(config.connections, routes, strict=True):
        print(f"  {spec.name}: {route.describe()}")
    return EXIT_OK


def _report_config_error(exc: ConfigError) -> int:
    for problem in exc.problems:
        _print_stderr(problem)
    return EXIT_CONFIG


def _print_stderr(line: str) -> None:
    """Print an error line on stderr outside a log call: a JSON line with --log-format json."""
    log = logging.getLogger("marketprism")
    print(json_line(logger, logging.ERROR, line) if is_json(log) else line, file=sys.stderr)


def _run_supervised(fn: object, *args: object) -> int:
    try:
        code: object = trio.run(fn, *args)  # type: ignore[arg-type]
    except (RestartLimitExceeded, GaveUp) as exc:
        _print_stderr(_gave_up(exc))
        return EXIT_GAVE_UP
    except ConfigError as exc:
        return _report_config_error(exc)
    except _StatusUnavailable as exc:
        _print_stderr(f"marketprism: --status: {exc}")
        return EXIT_CONFIG
    return code if isinstance(code, int) else EXIT_OK


class _StatusUnavailable(Exception):
    """``--status`` cannot be served there (taken, not local, does not resolve)."""


async def _bind_status(status: tuple[str, int] | None) -> trio.SocketListener | None:
    """Bind ``--status`` before anything connects, so a taken port stops the command first."""
    if status is None:
        return None
    try:
        listener = await bind_status(*status)
    except OSError as exc:
        raise _StatusUnavailable(str(exc) if exc.strerror is None else exc.strerror) from None
    host, port = listener.socket.getsockname()[:2]
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    logger.info("status endpoint: http://%s/status (also /metrics /healthz /livez /readyz)", shown)
    return listener


async def _demo(
    status: tuple[str, int] | None,
    duration: float | None,
    fault_every: float,
    seed: int | None,
) -> None:
    """``marketprism demo``, with its status endpoint bound first if asked for."""
    listener = await _bind_status(status)
    async with listener if listener is not None else contextlib.nullcontext():
        await run_demo(duration, fault_every, seed, status=listener)


def _gave_up(exc: RestartLimitExceeded | GaveUp) -> str:
    if isinstance(exc, GaveUp):
        return f"marketprism: {exc}"
    return f"marketprism: gave up on connection {exc.connection!r}: {exc}"


async def _run(
    config: Config,
    output: str,
    duration: float | None,
    output_buffer: int,
    status: tuple[str, int] | None,
) -> int:
    """``marketprism run``; returns the exit code (a broken stdout other than EPIPE: 1)."""
    flush_for = config.supervisor.shutdown_timeout
    log = logging.getLogger("marketprism")
    stderr = _Stderr.for_sys_stderr(JsonFormatter() if is_json(log) else TextFormatter())
    saved = log.handlers[:]
    code = EXIT_OK
    failure: BaseException | None = None
    async with trio.open_nursery() as nursery:
        if stderr.writer is not None:
            sys.stderr.flush()
            await nursery.start(stderr.writer.run)
        log.handlers[:] = [stderr]
        try:
            code = await _run_supervisor(config, output, duration, output_buffer, stderr, status)
        except (RestartLimitExceeded, GaveUp) as exc:
            stderr.print([_gave_up(exc)], logging.ERROR)
            code = EXIT_GAVE_UP
        except BaseException as exc:
            # Raised again below, outside this nursery, so that it is not wrapped in an
            # ExceptionGroup.
            failure = exc
        finally:
            log.handlers[:] = saved
        if stderr.writer is not None:
            if stderr.writer.dropped_lines:
                stderr.print(
                    [
                        f"marketprism: {stderr.writer.dropped_lines} line(s) of log dropped "
                        "because stderr was not read fast enough"
                    ]
                )
            # Shielded, so that a cancelled run still says why, and bounded.
            with trio.CancelScope(shield=True), trio.move_on_after(flush_for):
                await stderr.writer.aclose()
        nursery.cancel_scope.cancel(reason="stderr written or given up")
    if failure is not None:
        raise failure
    return code


async def _run_supervisor(
    config: Config,
    output: str,
    duration: float | None,
    output_buffer: int,
    stderr: _Stderr,
    status: tuple[str, int] | None,
) -> int:
    stdout: LineWriter | None = None
    listener = await _bind_status(status)
    async with (
        listener if listener is not None else contextlib.nullcontext(),
        open_supervisor(config) as sup,
        trio.open_nursery() as nursery,
    ):
        if listener is not None:
            await nursery.start(serve_status_listener, sup, listener)
        nursery.start_soon(stop_on_signals, sup)
        if duration is not None:
            nursery.start_soon(_stop_after, sup, duration)
        if output == "jsonl":
            # Whatever Python buffered for fd 1 goes first; from here on only the writer
            # writes there.
            sys.stdout.flush()
            stdout = LineWriter(_STDOUT, name="stdout", budget=output_buffer)
            await nursery.start(_watch_output, stdout, sup)
            await _print_batches(sup, stdout)
        else:
            # The table on a terminal (JSON lines to stdout never get one).
            flush_for = config.supervisor.shutdown_timeout
            async with live_table(sup.stats, "marketprism run", fd=_STDOUT, flush_for=flush_for):
                async for _ in sup.batches():
                    pass
        await sup.stop()
        if stdout is not None:
            flush_for = config.supervisor.shutdown_timeout
            with trio.move_on_after(flush_for):
                await stdout.aclose()
            _report_output(stdout, flush_for)
        stderr.print(_summary(await sup.stats()))
        nursery.cancel_scope.cancel(reason="supervisor stopped")
    if stdout is not None and not isinstance(stdout.error, BrokenPipeError | None):
        return EXIT_GAVE_UP
    return EXIT_OK


@final
class _Stderr(logging.Handler):
    """The ``marketprism`` log handler and summary printer while ``run``'s loop runs.

    Hands each line, formatted by ``log_formatter`` (``--log-format``), to a
    :class:`LineWriter` on stderr, or, without one (``sys.stderr`` is not a file, as
    under pytest's ``capsys``), prints it to ``sys.stderr`` as the handler it replaces
    did.
    """

    def __init__(self, writer: LineWriter | None, log_formatter: logging.Formatter) -> None:
        super().__init__()
        self.writer = writer
        self.setFormatter(log_formatter)

    @classmethod
    def for_sys_stderr(cls, log_formatter: logging.Formatter) -> _Stderr:
        """A handler writing to ``sys.stderr``'s descriptor, if it has one."""
        try:
            fd = sys.stderr.fileno()
        except (AttributeError, ValueError, io.UnsupportedOperation):
            return cls(None, log_formatter)
        return cls(LineWriter(fd, name="stderr", budget=_STDERR_BUDGET), log_formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write([self.format(record)])
        except Exception:
            self.handleError(record)

    def print(self, lines: list[str], level: int = logging.INFO) -> None:
        """Write ``lines`` (no newlines at their ends) without blocking the loop; with
        ``--log-format json``, each as a JSON line (``logger`` ``marketprism.cli``)."""
        if isinstance(self.formatter, JsonFormatter):
            lines = [json_line(logger, level, line) for line in lines]
        self._write(lines)

    def _write(self, lines: list[str]) -> None:
        if self.writer is None:
            for line in lines:
                print(line, file=sys.stderr)
            return
        data = "".join(f"{line}\n" for line in lines).encode(errors="backslashreplace")
        # If stderr is gone or already being flushed, there is nowhere left to say it.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            self.writer.send_nowait(data)


async def _print_batches(sup: Supervisor, stdout: LineWriter) -> None:
    """Hand every delivered message to ``stdout`` as one JSON line; never waits on it."""
    encode = msgspec.json.Encoder().encode_into
    buffer = bytearray()
    async for batch in sup.batches():
        buffer.clear()
        for message in batch:
            encode(message, buffer, -1)
            buffer += b"\n"
        try:
            stdout.send_nowait(buffer)
        except trio.BrokenResourceError:
            return  # _watch_output says why and stops the supervisor


async def _watch_output(
    stdout: LineWriter, sup: Supervisor, *, task_status: trio.TaskStatus[None]
) -> None:
    """Run ``stdout``'s worker; if writing fails, say why and stop the supervisor."""
    await stdout.run(task_status=task_status)
    if stdout.error is None:
        return
    if isinstance(stdout.error, BrokenPipeError):
        # The reader went away (``| head``): stop quietly, as Unix tools do.
        logger.info("stdout closed by its reader; stopping")
    else:
        logger.error("cannot write stdout: %s; stopping", stdout.error)
    await sup.stop()


def _report_output(stdout: LineWriter, flush_for: float) -> None:
    """After ``stdout`` was closed: one warning per kind of loss, with its count."""
    if stdout.dropped_lines:
        logger.warning(
            "stdout: %d of %d line(s) dropped in all because the reader did not keep up "
            "(a bigger --output-buffer than %g MiB absorbs longer pauses)",
            stdout.dropped_lines,
            stdout.dropped_lines + stdout.accepted_lines,
            stdout.budget / (1 << 20),
        )
    if stdout.unwritten_lines and stdout.error is None:
        logger.warning(
            "stdout: gave up after %g s waiting for the reader; %d buffered line(s) were "
            "not written",
            flush_for,
            stdout.unwritten_lines,
        )


async def _stop_after(sup: Supervisor, duration: float) -> None:
    await trio.sleep(duration)
    logger.info("--duration %g s reached; stopping", duration)
    await sup.stop()


def _summary(stats: Stats) -> list[str]:
    return [
        f"{conn.name}: {conn.messages} messages, {conn.connects} connects, "
        f"{conn.restarts} restarts, {conn.dropped} dropped, {conn.malformed} malformed"
        + (f"; last error: {conn.last_error}" if conn.last_error else "")
        for conn in stats.connections
    ]
