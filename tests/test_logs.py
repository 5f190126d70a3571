"""Logs: the text and JSON formats, the fields of a connection's records, one line per
event, repeated failures summarized, secrets masked.

Supervisor tests run on Trio's MockClock against in-memory fakes with the helpers'
backoff (initial 1, multiplier 2, max 8, no jitter): a refused connection attempts at 0,
1, 3, 7, 15, then every 8 s (23, 31, ...). With the 60 s summary window, the first
failure gets a full line and every later one is counted until the first failure at
least 60 s after the last line, which is reported as a summary of all counted since:
at 63 (10 failures, 0 excluded: 1 .. 63), then every 64 s (8 failures each: 71 .. 127,
...). So 10 virtual minutes of refusals log 1 + 9 lines, where one line per failure
would be 78; the bound for any backoff is 1 + ceil(600 / 60) = 11.
"""

from __future__ import annotations

import datetime
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from helpers import RecordingConnector, make_config
from test_proxies import via

from actors import ConnectError, ProxyError
from actors.logs import FailureLog, Recovery, Summary, Verdict, log_fields
from actors.net import TcpTlsConnector
from supervisor import open_supervisor
from supervisor.cli import main as cli_main
from supervisor.cli.logs import JsonFormatter, TextFormatter, formatter, json_line
from supervisor.testing import FakeExchange, open_fake_exchange, route
from supervisor.testing.proxies import free_port

#: 2026-11-29 18:30:00.250 UTC.
CREATED = datetime.datetime(2026, 11, 29, 18, 30, 0, 250000, tzinfo=datetime.UTC).timestamp()
PASSWORD = "hunter2-proxy-pass"
TOKEN = "tok-9f8e7d6c5b4a39281706"
PROXY = f"http://trader:{PASSWORD}@proxy.internal:3128"
URL = f"wss://ws.example.com/ws?token={TOKEN}"


def record(
    msg: str,
    *args: object,
    level: int = logging.WARNING,
    name: str = "marketprism.supervisor",
    extra: dict[str, object] | None = None,
    exc: BaseException | None = None,
) -> logging.LogRecord:
    """A record as ``logger.log(level, msg, *args, extra=extra, exc_info=exc)`` makes it,
    created at ``CREATED``."""
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    made = logging.getLogger(name).makeRecord(
        name, level, "x.py", 1, msg, args, exc_info, extra=extra
    )
    made.created = CREATED
    made.msecs = 250.0
    return made


def text_formatter() -> TextFormatter:
    text = TextFormatter()
    text.converter = time.gmtime  # the machine's zone must not matter here
    return text


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


# -- formats ---------------------------------------------------------------------------


def test_text_is_time_level_message_without_fields() -> None:
    line = text_formatter().format(
        record(
            "%s: session ended: %s (%s); reconnecting in %.2f s (attempt %d)",
            "okx",
            "ConnectionLost: reset",
            "reset",
            1.5,
            2,
            extra=log_fields("okx", "okx", event="session_ended", delay=1.5),
        )
    )
    assert line == (
        "2026-11-29 18:30:00,250 WARNING okx: session ended: ConnectionLost: reset (reset); "
        "reconnecting in 1.50 s (attempt 2)"
    )


def test_text_shows_line_breaks_in_a_message_escaped() -> None:
    # An exchange's error text cannot forge a second log line.
    line = text_formatter().format(
        record("%s: refused %r: %s", "okx", "trades", "bad\n2026-11-29 00:00:00,000 INFO fake")
    )
    assert line == (
        "2026-11-29 18:30:00,250 WARNING okx: refused 'trades': "
        "bad\\n2026-11-29 00:00:00,000 INFO fake"
    )


def test_json_has_the_keys_in_order_with_connection_fields() -> None:
    line = JsonFormatter().format(
        record(
            "%s: live: connected to %s and subscribed in %.2f s",
            "okx",
            "ws://127.0.0.1:1/ws",
            0.25,
            level=logging.INFO,
            name="marketprism.connection",
            extra=log_fields("okx", "okx", event="live", took=0.25),
        )
    )
    assert line == (
        '{"ts":"2026-11-29T18:30:00.250Z","level":"INFO","logger":"marketprism.connection",'
        '"message":"okx: live: connected to ws://127.0.0.1:1/ws and subscribed in 0.25 s",'
        '"connection":"okx","exchange":"okx","event":"live","took":0.25}'
    )


def test_json_without_connection_fields_has_only_the_four_keys() -> None:
    line = JsonFormatter().format(record("stopping: %s", "stop requested", level=logging.INFO))
    assert json.loads(line) == {
        "ts": "2026-11-29T18:30:00.250Z",
        "level": "INFO",
        "logger": "marketprism.supervisor",
        "message": "stopping: stop requested",
    }


def exception_record() -> logging.LogRecord:
    """A crash whose message, arguments and exception all carry the planted secrets."""
    cause = raised(OSError(f"proxy {PROXY} said 407"))
    try:
        raise ConnectError(f"cannot connect to {URL} through {PROXY}") from cause
    except ConnectError as exc:
        error: BaseException = exc
    return record(
        "%s: crashed: connecting to %s; reconnecting in %.2f s (attempt %d)",
        "feed",
        URL,
        1.0,
        1,
        level=logging.ERROR,
        extra=log_fields("feed", "raw", event="crashed", url=URL),
        exc=error,
    )


def test_text_with_an_exception_masks_message_arguments_and_traceback() -> None:
    line = text_formatter().format(exception_record())
    lines = line.splitlines()
    assert lines[0] == (
        "2026-11-29 18:30:00,250 ERROR   feed: crashed: connecting to "
        "wss://ws.example.com/ws?token=***; reconnecting in 1.00 s (attempt 1)"
    )
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == (
        "actors._errors.ConnectError: cannot connect to wss://ws.example.com/ws?token=*** "
        "through http://***@proxy.internal:3128"
    )
    assert "OSError: proxy http://***@proxy.internal:3128 said 407" in lines
    assert PASSWORD not in line and TOKEN not in line


def test_json_with_an_exception_has_it_as_one_masked_string() -> None:
    line = JsonFormatter().format(exception_record())
    assert "\n" not in line
    fields = json.loads(line)
    assert list(fields) == [
        "ts",
        "level",
        "logger",
        "message",
        "connection",
        "exchange",
        "event",
        "url",
        "exc",
    ]
    assert fields["message"] == (
        "feed: crashed: connecting to wss://ws.example.com/ws?token=***; "
        "reconnecting in 1.00 s (attempt 1)"
    )
    assert fields["url"] == "wss://ws.example.com/ws?token=***"
    assert fields["exc"].startswith("Traceback (most recent call last):\n")
    assert "\nOSError: proxy http://***@proxy.internal:3128 said 407\n" in fields["exc"]
    assert fields["exc"].endswith(
        "actors._errors.ConnectError: cannot connect to wss://ws.example.com/ws?token=*** "
        "through http://***@proxy.internal:3128"
    )
    assert PASSWORD not in line and TOKEN not in line


def test_formatter_names_an_unknown_format() -> None:
    assert isinstance(formatter("text"), TextFormatter)
    assert isinstance(formatter("json"), JsonFormatter)
    with pytest.raises(
        ValueError, match=r"^unknown log format 'xml' \(expected one of: text, json\)$"
    ):
        formatter("xml")


def test_json_line_wraps_plain_text() -> None:
    line = json_line(logging.getLogger("marketprism.cli"), logging.ERROR, f"bad url {URL}")
    fields = json.loads(line)
    assert (fields["level"], fields["logger"], fields["message"]) == (
        "ERROR",
        "marketprism.cli",
        "bad url wss://ws.example.com/ws?token=***",
    )


# -- the failure summary -------------------------------------------------------------


def test_failure_log_logs_the_first_counts_the_rest_and_summarizes_once_per_window() -> None:
    failures = FailureLog(window=60.0)
    verdicts = {t: failures.failed(t, "connect") for t in (0.0, 1.0, 3.0, 7.0, 15.0, 59.9)}
    assert verdicts == {
        0.0: Verdict(None, True),
        1.0: Verdict(None, False),
        3.0: Verdict(None, False),
        7.0: Verdict(None, False),
        15.0: Verdict(None, False),
        59.9: Verdict(None, False),
    }
    # 60 s after the line at 0: a summary of the 6 counted since (this one included)
    assert failures.failed(60.0, "connect") == Verdict(Summary("connect", 6, 60.0), False)
    assert failures.failed(90.0, "connect") == Verdict(None, False)
    assert failures.failed(120.0, "connect") == Verdict(Summary("connect", 2, 60.0), False)
    assert failures.live(125.5) == Recovery(9, 125.5)
    # live: forgotten; the next failure gets its own line again
    assert failures.live(130.0) is None
    assert failures.failed(200.0, "connect") == Verdict(None, True)


def test_failure_log_logs_a_new_reason_at_once_after_summarizing_the_old() -> None:
    failures = FailureLog(window=60.0)
    assert failures.failed(10.0, "connect") == Verdict(None, True)
    assert failures.failed(12.0, "connect") == Verdict(None, False)
    assert failures.failed(16.0, "connect") == Verdict(None, False)
    assert failures.failed(20.0, "handshake 503") == Verdict(Summary("connect", 2, 10.0), True)
    # nothing counted under the new reason yet: straight back, nothing to summarize
    assert failures.failed(21.0, "connect") == Verdict(None, True)
    assert failures.live(31.0) == Recovery(5, 21.0)


def test_failure_log_refuses_a_window_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match=r"^window must be a positive number of seconds, not 0$"):
        FailureLog(window=0)


# -- end to end on the MockClock -----------------------------------------------------


def about(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    """The INFO-and-above records of the supervisor and connection loggers about ``name``."""
    return [
        r
        for r in caplog.records
        if r.name in ("marketprism.supervisor", "marketprism.connection")
        and r.levelno >= logging.INFO
        and r.getMessage().startswith(f"{name}: ")
    ]


def refused(fake: FakeExchange, until: float) -> str:
    return (
        f"ConnectError: cannot connect to {fake.url}: [Errno 111] fake exchange "
        f"{fake.name!r} refused the connection to {fake.url!r} "
        f"(refuse() in force until t={until})"
    )


async def test_a_refused_connection_for_10_minutes_logs_a_bounded_summary_then_live_again(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "marketprism")
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        fake.refuse(600.0)
        connector = RecordingConnector(fake)
        with trio.fail_after(900):
            async with open_supervisor(make_config(fake), connector=connector) as sup:
                await trio.sleep_until(599.5)
                during = [r.getMessage() for r in about(caplog, "a")]
                await trio.sleep_until(700.0)
                stats = (await sup.stats()).connections[0]
    times = connector.times()
    assert times[:6] == [0.0, 1.0, 3.0, 7.0, 15.0, 23.0]
    assert times[-2:] == [599.0, 607.0]
    assert len(times) == 79  # 78 refused, then live at 607
    assert stats.state == "live"
    summaries = [
        f"a: failed {n} times in {span} s: connect; reconnecting in 8.00 s (attempt {attempt})"
        for n, span, attempt in [
            (10, 63, 11),
            (8, 64, 19),
            (8, 64, 27),
            (8, 64, 35),
            (8, 64, 43),
            (8, 64, 51),
            (8, 64, 59),
            (8, 64, 67),
            (8, 64, 75),
        ]
    ]
    assert during == [
        f"a: session ended: {refused(fake, 600.0)} (connect); reconnecting in 1.00 s (attempt 1)",
        *summaries,
    ]
    assert len(during) <= 1 + 600 // 60
    lines = about(caplog, "a")
    assert [r.getMessage() for r in lines[len(during) :]] == [
        f"a: live again after 78 failures in 607 s: connected to {fake.url} and "
        "subscribed in 0.00 s"
    ]
    # every line about the connection carries its fields
    assert {(r.__dict__["connection"], r.__dict__["exchange"]) for r in lines} == {("a", "raw")}
    events = [r.__dict__["event"] for r in lines]
    assert events == ["session_ended"] + ["failures_summarized"] * 9 + ["live"]
    assert [r.__dict__["failures"] for r in lines[1:-1]] == [10] + [8] * 8


async def test_a_reconnect_cycle_logs_exactly_two_lines(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "marketprism")
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        with trio.fail_after(300):
            async with open_supervisor(make_config(fake), connector=route(fake)) as sup:
                await trio.sleep_until(5.0)
                await fake.close(1001, "going away")
                await trio.sleep_until(20.0)
                await fake.reset()
                await trio.sleep_until(40.0)
                await sup.stop()
    messages = [r.getMessage() for r in about(caplog, "a")]
    going_away = (
        f"ConnectionLost: connection lost: close code 1001 (GOING_AWAY) 'going away' from "
        f"{fake.url}"
    )
    reset = f"ConnectionLost: connection lost: close code 1006 (ABNORMAL_CLOSURE) from {fake.url}"
    live = f"connected to {fake.url} and subscribed in 0.00 s"
    assert messages == [
        f"a: live: {live}",
        f"a: session ended: {going_away} (close 1001); reconnecting in 1.00 s (attempt 1)",
        f"a: live again after 1 failure in 1 s: {live}",
        # live for 14 s >= reset_after (10 s): the backoff starts over
        f"a: session ended: {reset} (reset); reconnecting in 1.00 s (attempt 1)",
        f"a: live again after 1 failure in 1 s: {live}",
    ]
    other = [r.getMessage() for r in caplog.records if r not in about(caplog, "a")]
    assert other == ["stopping: stop requested"]
    assert not hasattr(caplog.records[-1], "connection")


async def test_the_connectors_warnings_carry_the_connection_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Through a loopback proxy that is not listening: nothing leaves this machine.
    proxy = f"http://127.0.0.1:{free_port()}"
    named = TcpTlsConnector(route=via(proxy), name="feed", exchange="okx")
    anonymous = TcpTlsConnector(route=via(proxy))
    with caplog.at_level(logging.WARNING, logger="marketprism.connection"), trio.fail_after(10):
        for connector in (named, anonymous):
            with pytest.raises(ProxyError):
                await connector("ws://stream.example.com/ws")
    fields = [
        {k: r.__dict__.get(k) for k in ("connection", "exchange", "event")}
        for r in caplog.records
        if "plaintext" in r.getMessage()
    ]
    assert fields == [
        {"connection": "feed", "exchange": "okx", "event": "plaintext"},
        # no connection named: not about one, so neither field
        {"connection": None, "exchange": None, "event": "plaintext"},
    ]


# -- the command line ----------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``main`` configures the ``marketprism`` logger for the process: put it back."""
    log = logging.getLogger("marketprism")
    saved = (log.handlers[:], log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]


def json_lines(text: str) -> list[dict[str, object]]:
    lines = text.splitlines()
    assert lines, "nothing on stderr"
    return [json.loads(line) for line in lines]


def test_check_with_json_logs_prints_each_problem_as_a_json_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[connections.feed]\nexchange = "raw"\nurl = "wss://x.example.com/ws"\nsubscribe = 3\n',
        encoding="utf-8",
    )
    assert cli_main(["--log-format", "json", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = json_lines(captured.err)
    assert (line["level"], line["logger"]) == ("ERROR", "marketprism.cli")
    assert line["message"] == (
        f"{path}:4: connections.feed.subscribe: 3 is an integer (expected an array of strings)"
    )


def test_log_format_must_be_text_or_json(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["--log-format", "xml", "check"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "marketprism: error: argument --log-format: invalid choice: 'xml' "
        "(choose from 'text', 'json')"
    )


def test_run_with_json_logs_writes_only_json_lines_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    # A loopback port that is bound but not listening refuses every connection.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        url = f"ws://127.0.0.1:{port}/ws?token={TOKEN}"
        path = tmp_path / "feed.toml"
        path.write_text(
            "[supervisor]\nshutdown_timeout = 1.0\nconnect_attempts = 100\n\n"
            f'[connections.feed]\nexchange = "raw"\nurl = "{url}"\n'
            "subscribe = ['{}']\n\n"
            '[connections.feed.backoff]\ninitial = 0.05\nmax = 0.05\njitter = "none"\n',
            encoding="utf-8",
        )
        code = cli_main(["--log-format", "json", "run", "--duration", "0.5", str(path)])
    assert code == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert TOKEN not in captured.err
    lines = json_lines(captured.err)
    ended = [line for line in lines if line.get("event") == "session_ended"]
    assert len(ended) == 1  # the failures after it are counted, not logged (window 60 s)
    assert {k: ended[0][k] for k in ("level", "connection", "exchange", "reason")} == {
        "level": "WARNING",
        "connection": "feed",
        "exchange": "raw",
        "reason": "connect",
    }
    assert str(ended[0]["message"]).startswith(
        f"feed: session ended: ConnectError: cannot connect to ws://127.0.0.1:{port}/ws?token=***"
    )
    assert (ended[0]["delay"], ended[0]["attempt"]) == (0.05, 1)
    assert [line["message"] for line in lines[-3:-1]] == [
        "--duration 0.5 s reached; stopping",
        "stopping: stop requested",
    ]
    # the summary at exit, one JSON line per connection
    summary = lines[-1]
    assert (summary["level"], summary["logger"]) == ("INFO", "marketprism.cli")
    assert str(summary["message"]).startswith("feed: 0 messages, 0 connects, ")


def test_demo_with_json_logs_writes_only_json_lines_on_stderr(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    # Faults every 0.5 s for 2 s: session ends and live lines, each with its fields.
    argv = ["--log-format", "json", "demo", "--duration", "2", "--fault-every", "0.5"]
    assert cli_main([*argv, "--seed", "3"]) == 0
    lines = json_lines(capsys.readouterr().err)
    names = {"binance", "okx", "deribit", "bybit"}
    live = [line for line in lines if line.get("event") == "live"]
    assert {line["connection"] for line in live} == names
    assert any(line.get("event") == "session_ended" for line in lines)  # the fault at 0.5 s
    for line in lines:
        if "connection" in line:
            assert line["connection"] in names
            assert line["exchange"] == line["connection"]
            assert str(line["message"]).startswith(f"{line['connection']}: ")
        else:
            assert line["logger"] in ("marketprism.supervisor", "marketprism.cli"), line
    assert lines[-1]["message"] == "stopping: stop requested"
