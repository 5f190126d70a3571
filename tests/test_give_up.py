"""``give_up_after``: a connection not live for that long stops for good.

Supervisor tests run on Trio's MockClock against in-memory fakes and assert exact virtual
times: with the helpers' backoff (initial 1, multiplier 2, max 8, no jitter) a refused
connection attempts at 0, 1, 3, 7, 15, 23, ... so with ``give_up_after = 20`` the wait
after the attempt at 15 (which would end at 23) ends at 20, and the connection gives up
at exactly 20. The CLI test runs ``marketprism run`` in process against a loopback port
that refuses connections.
"""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path

import pytest
import trio
from helpers import RecordingConnector, make_config

from supervisor import GaveUp, RestartLimitExceeded, open_supervisor
from supervisor.cli import main as cli_main
from supervisor.testing import FakeExchange, open_fake_exchange


def refused(fake: FakeExchange, until: float = 1e6) -> str:
    """The last error of a connection to ``fake`` while ``fake.refuse(until)`` holds."""
    return (
        f"ConnectError: cannot connect to {fake.url}: [Errno 111] fake exchange "
        f"{fake.name!r} refused the connection to {fake.url!r} "
        f"(refuse() in force until t={until})"
    )


def gave_up(seconds: str, after: str, last_error: str) -> str:
    return f"not live for {seconds} s (give_up_after = {after}); last error: {last_error}"


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_refused_connection_gives_up_at_the_computed_time_and_siblings_run_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        open_fake_exchange(name="a", transport="memory", interval=1.0) as bad,
        open_fake_exchange(name="b", transport="memory", interval=1.0) as good,
    ):
        bad.refuse(1e6)
        connector = RecordingConnector(bad, good)
        config = make_config(bad, good, per_connection={"a": {"give_up_after": 20.0}})
        with trio.fail_after(300):
            async with open_supervisor(config, connector=connector) as sup:
                await trio.sleep_until(19.5)
                before = (await sup.stats()).connections[0]
                await trio.sleep_until(30.0)
                stats = {c.name: c for c in (await sup.stats()).connections}
                assert not sup.finished.is_set()  # b is permanent and still running
    # the wait after the attempt at 15 would end at 23: it ends at 20, and a gives up
    assert connector.times(bad.url) == [0.0, 1.0, 3.0, 7.0, 15.0]
    assert (before.state, before.restarts) == ("backoff", 5)
    why = gave_up("20", "20", refused(bad))
    assert (stats["a"].state, stats["a"].state_for) == ("failed", 10.0)  # since t = 20
    assert stats["a"].last_error == f"gave up: {why}"
    assert (stats["a"].restarts, stats["a"].disconnects) == (5, 5)  # no attempt at 20
    assert stats["b"].state == "live"  # the sibling keeps delivering
    assert stats["b"].messages == 29  # one per second from t = 1
    assert errors(caplog) == [f"a: gave up: {why}"]


async def test_the_only_permanent_connection_giving_up_stops_the_supervisor(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        fake.refuse(1e6)
        connector = RecordingConnector(fake)
        config = make_config(fake, give_up_after=20.0)
        with trio.fail_after(300), pytest.raises(GaveUp) as raised:
            async with open_supervisor(config, connector=connector) as sup:
                await trio.sleep_forever()  # the body is cancelled when it gives up
    assert trio.current_time() == 20.0
    why = gave_up("20", "20", refused(fake))
    assert str(raised.value) == f"no permanent connection left running: 'a' gave up: {why}"
    assert raised.value.last_errors == {"a": refused(fake)}
    assert connector.times() == [0.0, 1.0, 3.0, 7.0, 15.0]
    stats = (await sup.stats()).connections[0]
    assert (stats.state, stats.last_error) == ("failed", f"gave up: {why}")
    assert sup.finished.is_set()
    assert errors(caplog) == [f"a: gave up: {why}"]


async def test_going_live_restarts_the_clock(autojump_clock: trio.testing.MockClock) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        fake.refuse(10.0)  # attempts at 0, 1, 3, 7 refused; at 15 live
        connector = RecordingConnector(fake)
        config = make_config(fake, give_up_after=20.0)
        with trio.fail_after(300), pytest.raises(GaveUp) as raised:
            async with open_supervisor(config, connector=connector) as sup:
                await fake.wait_until(lambda f: len(f.sessions) == 1)
                await trio.sleep_until(18.0)
                live = (await sup.stats()).connections[0].state
                fake.refuse(1e6)
                await fake.close(4000)  # the live session ends at 18: the clock starts
                await trio.sleep_forever()
    assert live == "live"
    # live 3 s < reset_after: the backoff goes on growing (8, the cap): 26, 34; the wait
    # after 34 would end at 42, past 18 + 20: it gives up at 38, not at 20.
    assert connector.times() == [0.0, 1.0, 3.0, 7.0, 15.0, 26.0, 34.0]
    assert trio.current_time() == 38.0
    last_error = refused(fake, until=18.0 + 1e6)
    assert raised.value.last_errors == {"a": last_error}
    assert str(raised.value) == (
        f"no permanent connection left running: 'a' gave up: {gave_up('20', '20', last_error)}"
    )


async def test_an_attempt_in_progress_is_not_cut_short(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts: list[float] = []

    async def hang(url: str) -> trio.abc.Stream:
        attempts.append(trio.current_time())
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        config = make_config(fake, connect_timeout=5.0, give_up_after=16.0)
        with trio.fail_after(300), pytest.raises(GaveUp) as raised:
            async with open_supervisor(config, connector=hang):
                await trio.sleep_forever()
    # attempts 0-5, 6-11, 13-18: the deadline 16 falls inside the third, which runs to
    # its connect_timeout; the connection gives up when it ends.
    assert attempts == [0.0, 6.0, 13.0]
    assert trio.current_time() == 18.0
    timeout = f"ConnectError: connecting to {fake.url} took longer than 5 s"
    assert str(raised.value) == (
        f"no permanent connection left running: 'a' gave up: {gave_up('18', '16', timeout)}"
    )


@pytest.mark.parametrize(
    ("bad_restart", "good_restart", "stops"),
    [
        # a permanent connection is still running: the supervisor goes on
        ("transient", "permanent", None),
        ("transient", "transient", None),
        # the one permanent connection gave up: a transient sibling does not keep it up
        ("permanent", "transient", "no permanent connection left running"),
        # no permanent connection at all: it stops when none is left running
        ("transient", None, "no connection left running"),
    ],
)
async def test_what_a_give_up_leaves_running_decides_whether_the_supervisor_stops(
    autojump_clock: trio.testing.MockClock,
    bad_restart: str,
    good_restart: str | None,
    stops: str | None,
) -> None:
    async with (
        open_fake_exchange(name="a", transport="memory", interval=1.0) as bad,
        open_fake_exchange(name="b", transport="memory", interval=1.0) as good,
    ):
        bad.refuse(1e6)
        fakes = (bad,) if good_restart is None else (bad, good)
        per_connection = {"a": {"give_up_after": 20.0, "restart": bad_restart}}
        if good_restart is not None:
            per_connection["b"] = {"restart": good_restart}
        config = make_config(*fakes, per_connection=per_connection)
        with trio.fail_after(300):
            try:
                async with open_supervisor(config, connector=RecordingConnector(*fakes)) as sup:
                    await trio.sleep_until(30.0)
                    running = not sup.finished.is_set()
            except GaveUp as exc:
                error: GaveUp | None = exc
            else:
                error = None
    why = gave_up("20", "20", refused(bad))
    if stops is None:
        assert running
        assert error is None
    else:
        assert error is not None
        assert str(error) == f"{stops}: 'a' gave up: {why}"
        assert trio.current_time() == 20.0
    states = {c.name: c.state for c in (await sup.stats()).connections}
    assert states["a"] == "failed"  # also in the final stats


async def test_a_manual_restart_revives_a_connection_that_gave_up_with_a_fresh_clock(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        open_fake_exchange(name="a", transport="memory", interval=1.0) as bad,
        open_fake_exchange(name="b", transport="memory", interval=1.0) as good,
    ):
        bad.refuse(1e6)
        connector = RecordingConnector(bad, good)
        config = make_config(bad, good, per_connection={"a": {"give_up_after": 20.0}})
        with trio.fail_after(300):
            async with open_supervisor(config, connector=connector) as sup:
                await trio.sleep_until(30.0)
                assert len(errors(caplog)) == 1
                await sup.restart("a")
                await trio.sleep_until(49.9)
                assert len(errors(caplog)) == 1
                await trio.sleep_until(50.0)
                await trio.testing.wait_all_tasks_blocked()
                assert len(errors(caplog)) == 2
                await trio.sleep_until(60.0)
                stats = (await sup.stats()).connections[0]
    # gave up at 20; restarted at 30 (at once) with a fresh clock and the backoff where
    # it was (8, the cap): 38, 46; the wait after 46 would end at 54 > 30 + 20, so it
    # gives up again at 50.
    assert connector.times(bad.url) == [0.0, 1.0, 3.0, 7.0, 15.0, 30.0, 38.0, 46.0]
    assert errors(caplog) == [f"a: gave up: {gave_up('20', '20', refused(bad))}"] * 2
    assert stats.state == "failed"


async def test_crashes_still_escalate_before_the_give_up_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def crash(url: str) -> trio.abc.Stream:
        raise RuntimeError(f"bug while connecting to {url}")

    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        config = make_config(
            fake, give_up_after=10.0, supervisor={"max_restarts": 2, "within": 60.0}
        )
        with trio.fail_after(60), pytest.raises(RestartLimitExceeded):
            async with open_supervisor(config, connector=crash):
                await trio.sleep_forever()
    assert trio.current_time() == 3.0  # crashes at 0, 1, 3: as without give_up_after


def test_cli_run_exits_1_with_one_line_when_the_only_connection_gives_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A loopback port that is bound but not listening refuses every connection.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        url = f"ws://127.0.0.1:{port}/ws"
        path = tmp_path / "feed.toml"
        path.write_text(
            "[supervisor]\n"
            "shutdown_timeout = 1.0\n"
            "connect_attempts = 100\n"  # no connect pacing: attempts follow the backoff
            "\n"
            "[connections.feed]\n"
            'exchange = "raw"\n'
            f'url = "{url}"\n'
            "subscribe = ['{}']\n"
            "give_up_after = 0.3\n"
            "\n"
            "[connections.feed.backoff]\n"
            "initial = 0.2\n"
            "max = 0.2\n"
            'jitter = "none"\n',
            encoding="utf-8",
        )
        assert cli_main(["run", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    # Attempts at 0 and 0.2 s; the wait to 0.4 ends at 0.3 (on the real clock, so the
    # seconds are not pinned: the MockClock tests above pin them).
    last_error = (
        f"ConnectError: cannot connect to {url}: all attempts to connect to 127.0.0.1:{port} failed"
    )
    assert re.fullmatch(
        re.escape("marketprism: no permanent connection left running: 'feed' gave up: ")
        + r"not live for 0\.3\d* s "
        + re.escape(f"(give_up_after = 0.3); last error: {last_error}"),
        captured.err.splitlines()[-1],
    ), captured.err
