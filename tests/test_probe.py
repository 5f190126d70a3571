"""``marketprism probe`` end to end: the real command against fakes and real proxies.

Rules of this file: every probe runs the real entry point in a child process (as
tests/test_cli.py does), against the rule-enforcing Binance fake served over loopback
TCP (TLS from a trustme CA where the test says so), the REST fake for the REST stage
(``--rest-url``), and the real tinyproxy and microsocks daemons
(supervisor/testing/proxies.py). Routes are proven from the far end: the fakes see the
proxy's outgoing address. Stage durations are real, so only their presence and order
are asserted; every other part of a line is asserted exactly. The child's environment
has no proxy variables unless a test sets them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
import trio
import trustme
from test_cli import CLI, kill
from test_proxies import AUTH

from actors import ConnectionSpec
from actors.exchanges import ADAPTERS
from supervisor.cli import main as cli_main
from supervisor.cli.probe import PROBE_SUBSCRIPTIONS, ProbeTarget, venue_of
from supervisor.testing import FakeBinance, FakeExchange, open_fake_exchange
from supervisor.testing.fakes.rest import FakeRest, Reply, open_fake_rest
from supervisor.testing.proxies import open_microsocks, open_tinyproxy

#: Hard deadline of a test, in real seconds.
DEADLINE: Final = 30.0
#: The child's environment: no proxy variables (the host's must not reroute a test).
PROXY_VARIABLES: Final = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
ENV: Final = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
#: How far ahead of our clock the REST fake's server time is, in seconds.
AHEAD: Final = 5.0
#: One stage line of the text report.
STAGE_LINE: Final = re.compile(
    r"^  (?P<label>[a-z]+(?: \d+/\d+)?) +(?P<status>ok|FAILED|skipped) +"
    r"(?:(?P<seconds>\d+\.\d{3}) s)? +(?P<detail>.+)$"
)
#: The subscription line for the one Binance stream the configs below subscribe.
ACKED: Final = "acknowledged: btcusdt@trade (1 of 1 subscription(s) confirmed so far)"


def write_config(path: Path, url: str, extra: str = "") -> Path:
    """A config with one Binance connection ``spot`` to ``url``; ``extra``: more keys of
    ``[connections.spot]`` (and tables after it)."""
    path.write_text(
        "[connections.spot]\n"
        'exchange = "binance"\n'
        f'url = "{url.removesuffix("/ws")}/stream"\n'
        'channels = ["trades"]\n'
        'symbols = ["BTC-USDT"]\n' + extra,
        encoding="utf-8",
    )
    return path


async def run_probe(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``marketprism probe ARGS`` in a child, while the test's fakes keep serving."""
    return await trio.run_process(
        [*CLI, "probe", *args],
        cwd=cwd,
        env=ENV if env is None else env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        deliver_cancel=kill,
    )


def stages_of(stdout: str) -> list[tuple[str, str, str]]:
    """``(label, status, detail)`` of every stage line; a ran stage has its seconds."""
    found = []
    for line in stdout.splitlines()[1:-1]:
        match = STAGE_LINE.fullmatch(line)
        assert match is not None, line
        assert (match["seconds"] is None) == (match["status"] == "skipped"), line
        found.append((match["label"], match["status"], match["detail"]))
    return found


@asynccontextmanager
async def binance(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[FakeExchange]:
    async with open_fake_exchange(
        name="binance", interval=0.05, handler=FakeBinance(combined=True), ssl_context=ssl_context
    ) as fake:
        yield fake


@asynccontextmanager
async def rest(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[FakeRest]:
    """The REST fake answering Binance's time endpoint, AHEAD seconds ahead of us."""
    async with open_fake_rest(ssl_context=ssl_context) as fake:
        fake.route("/api/v3/time", Reply(body={"serverTime": int((time.time() + AHEAD) * 1000)}))
        fake.weigh({"/api/v3/time": 1}, limit=6000)
        yield fake


def offset_is_ahead(offset: float, elapsed: float) -> bool:
    """Is ``offset`` what a probe within ``elapsed`` seconds of :func:`rest` reports?

    The fake's server time is fixed when :func:`rest` starts, so the offset shrinks by the
    time until the call (a busy machine takes seconds to start the probe's process);
    1 ms of slack for the whole milliseconds on the wire and the text's rounding.
    """
    return AHEAD - elapsed - 0.001 <= offset <= AHEAD + 0.001


def rest_line(detail: str, url: str, route: str) -> float:
    """Check the REST stage's detail; return the clock offset it reports."""
    match = re.fullmatch(
        rf"GET {re.escape(url)}/api/v3/time via {re.escape(route)}: HTTP 200; "
        r"X-MBX-USED-WEIGHT-1M: 1; clock offset (?P<offset>[+-]\d+\.\d{3}) s "
        r"\(round trip \d+\.\d{3} s\)",
        detail,
    )
    assert match is not None, detail
    return float(match["offset"])


def peers(fake: FakeExchange) -> list[str]:
    return [s.peer[0] for s in fake.sessions if s.peer is not None]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- every stage passes ---------------------------------------------------------------


async def test_a_direct_connection_passes_every_stage(tmp_path: Path) -> None:
    started = time.time()
    with trio.fail_after(DEADLINE):
        async with binance() as fake, rest() as api:
            write_config(tmp_path / "config.toml", fake.url)
            result = await run_probe("spot", "--rest-url", api.url, cwd=tmp_path)
    elapsed = time.time() - started
    assert (result.returncode, result.stderr) == (0, b""), result.stderr
    stdout = result.stdout.decode()
    lines = stdout.splitlines()
    url = f"ws://127.0.0.1:{fake.port}/stream"
    assert lines[0] == f"probe spot (binance): {url}"
    assert lines[-1] == "OK: every stage passed"
    stages = stages_of(stdout)
    assert stages[:-1] == [
        ("route", "ok", "direct (no proxy configured)"),
        ("dns", "ok", "127.0.0.1 -> 127.0.0.1"),
        ("tcp", "ok", f"connected to 127.0.0.1:{fake.port}"),
        ("upgrade", "ok", "HTTP 101 Switching Protocols"),
        ("subscription", "ok", ACKED),
        ("data", "ok", "trade BTC-USDT"),
    ]
    label, status, detail = stages[-1]
    assert (label, status) == ("rest", "ok")
    offset = rest_line(detail, api.url, "direct (no proxy configured)")
    assert offset_is_ahead(offset, elapsed)
    assert [(r.method, r.path) for r in api.requests] == [("GET", "/api/v3/time")]


async def test_the_rest_stage_calls_the_connections_configured_rest_origin(
    tmp_path: Path,
) -> None:
    with trio.fail_after(DEADLINE):
        async with binance() as fake, rest() as api:
            extra = f'[connections.spot.rest]\nbase_url = "{api.url}"\n'
            write_config(tmp_path / "config.toml", fake.url, extra)
            result = await run_probe("spot", cwd=tmp_path)
            # Without base_url (and on a host that is not the venue's), no REST stage.
            write_config(tmp_path / "config.toml", fake.url)
            without = await run_probe("spot", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, b""), result.stderr
    label, status, detail = stages_of(result.stdout.decode())[-1]
    assert (label, status) == ("rest", "ok")
    rest_line(detail, api.url, "direct (no proxy configured)")
    assert [(r.method, r.path) for r in api.requests] == [("GET", "/api/v3/time")]
    assert without.returncode == 0, without.stdout + without.stderr
    assert stages_of(without.stdout.decode())[-1] == (
        "rest",
        "skipped",
        "no REST API for this connection (set [connections.spot.rest] base_url)",
    )


async def test_through_tinyproxy_both_websocket_and_rest(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with binance() as fake, rest() as api, open_tinyproxy(tmp_path, auth=AUTH) as proxy:
            write_config(tmp_path / "config.toml", fake.url, f'proxy = "{proxy.url()}"\n')
            result = await run_probe("spot", "--rest-url", api.url, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    hop = f"http://alice:***@127.0.0.1:{proxy.port}"
    stages = stages_of(result.stdout.decode())
    assert stages[:-1] == [
        ("route", "ok", f"{hop} (connections.spot.proxy)"),
        ("dns", "ok", "127.0.0.1 -> 127.0.0.1; 127.0.0.1 is resolved by the proxy"),
        ("tcp", "ok", f"connected to 127.0.0.1:{proxy.port}"),
        (
            "proxy 1/1",
            "ok",
            f"{hop}: HTTP CONNECT with credentials done, tunnel open to the endpoint",
        ),
        ("upgrade", "ok", "HTTP 101 Switching Protocols"),
        ("subscription", "ok", ACKED),
        ("data", "ok", "trade BTC-USDT"),
    ]
    rest_line(stages[-1][2], api.url, f"{hop} (connections.spot.proxy)")
    # The far ends saw the proxy, not us.
    assert peers(fake) == [proxy.outgoing]
    assert [r.peer.rpartition(":")[0] for r in api.requests] == [proxy.outgoing]
    assert AUTH[1] not in result.stdout.decode()


async def test_through_a_two_hop_chain(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            binance() as fake,
            rest() as api,
            open_microsocks(tmp_path, auth=AUTH) as first,
            open_tinyproxy(tmp_path) as second,
        ):
            chain = f'proxy = ["{first.url()}", "{second.url()}"]\n'
            write_config(tmp_path / "config.toml", fake.url, chain)
            result = await run_probe("spot", "--rest-url", api.url, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    one = f"socks5://alice:***@127.0.0.1:{first.port}"
    two = f"http://127.0.0.1:{second.port}"
    route = f"{one} -> {two} (connections.spot.proxy)"
    stages = stages_of(result.stdout.decode())
    assert stages[:-1] == [
        ("route", "ok", route),
        ("dns", "ok", "127.0.0.1 -> 127.0.0.1; 127.0.0.1 is resolved by the proxy"),
        ("tcp", "ok", f"connected to 127.0.0.1:{first.port}"),
        ("proxy 1/2", "ok", f"{one}: SOCKS5 handshake with credentials done, tunnel open to hop 2"),
        ("proxy 2/2", "ok", f"{two}: HTTP CONNECT done, tunnel open to the endpoint"),
        ("upgrade", "ok", "HTTP 101 Switching Protocols"),
        ("subscription", "ok", ACKED),
        ("data", "ok", "trade BTC-USDT"),
    ]
    rest_line(stages[-1][2], api.url, route)
    assert peers(fake) == [second.outgoing]
    assert [r.peer.rpartition(":")[0] for r in api.requests] == [second.outgoing]


async def test_tls_with_a_trusted_ca_shows_the_certificate(ca: trustme.CA, tmp_path: Path) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert = ca.issue_cert("127.0.0.1")
    with trio.fail_after(DEADLINE):
        async with binance(server_context(cert)) as fake, rest(server_context(cert)) as api:
            write_config(
                tmp_path / "config.toml", fake.url, '[connections.spot.tls]\nca_file = "ca.pem"\n'
            )
            result = await run_probe("spot", "--rest-url", api.url, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, b""), result.stdout + result.stderr
    stages = stages_of(result.stdout.decode())
    assert [label for label, _, _ in stages] == [
        "route",
        "dns",
        "tcp",
        "tls",
        "upgrade",
        "subscription",
        "data",
        "rest",
    ]
    assert all(status == "ok" for _, status, _ in stages)
    issuer = "O=trustme v" + trustme.__version__
    assert re.fullmatch(
        rf"TLSv1\.3 TLS_\w+; subject {re.escape(issuer)}; names IP Address:127\.0\.0\.1; "
        rf"issuer {re.escape(issuer)}; expires Jan  1 00:00:00 3000 GMT",
        stages[3][2],
    ), stages[3][2]
    assert api.url.startswith("https://")
    rest_line(stages[-1][2], api.url, "direct (no proxy configured)")


# -- the first failing stage ----------------------------------------------------------


def assert_failed_at(
    result: subprocess.CompletedProcess[bytes], labels: list[str], why: str
) -> None:
    """Exit 1; the stages up to the failed one, in order; the failure's reason twice."""
    assert result.returncode == 1, result.stdout + result.stderr
    stdout = result.stdout.decode()
    stages = stages_of(stdout)
    assert [label for label, _, _ in stages] == labels
    assert [status for _, status, _ in stages] == ["ok"] * (len(labels) - 1) + ["FAILED"]
    assert stages[-1][2] == why
    assert stdout.splitlines()[-1] == f"FAILED at {labels[-1]}: {why}"


async def test_a_wrong_host_certificate_fails_at_tls(ca: trustme.CA, tmp_path: Path) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert = ca.issue_cert("other.example")
    with trio.fail_after(DEADLINE):
        async with binance(server_context(cert)) as fake:
            write_config(
                tmp_path / "config.toml", fake.url, '[connections.spot.tls]\nca_file = "ca.pem"\n'
            )
            result = await run_probe("spot", cwd=tmp_path)
    assert_failed_at(
        result,
        ["route", "dns", "tcp", "tls"],
        f"TLS certificate of wss://127.0.0.1:{fake.port}/stream refused: wrong host (IP "
        "address mismatch, certificate is not valid for '127.0.0.1'., verify code 64)",
    )
    assert fake.sessions == []


async def test_wrong_proxy_credentials_fail_at_that_hop(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with binance() as fake, open_tinyproxy(tmp_path, auth=AUTH) as proxy:
            bad = proxy.url(password="wrong-pw")
            write_config(tmp_path / "config.toml", fake.url, f'proxy = "{bad}"\n')
            result = await run_probe("spot", cwd=tmp_path)
    hop = f"http://alice:***@127.0.0.1:{proxy.port}"
    assert_failed_at(
        result,
        ["route", "dns", "tcp", "proxy 1/1"],
        f"proxy hop 1 of 1 ({hop}) rejected the credentials: HTTP 401 Unauthorized "
        f"(asked to connect to 127.0.0.1:{fake.port})",
    )
    assert fake.sessions == []  # never a direct fallback
    assert b"wrong-pw" not in result.stdout + result.stderr


async def test_a_refused_port_fails_at_tcp(tmp_path: Path, refusing_port: int) -> None:
    write_config(tmp_path / "config.toml", f"ws://127.0.0.1:{refusing_port}/ws")
    with trio.fail_after(DEADLINE):
        result = await run_probe("spot", cwd=tmp_path)
    assert_failed_at(
        result,
        ["route", "dns", "tcp"],
        f"cannot connect to ws://127.0.0.1:{refusing_port}/stream: all attempts to "
        f"connect to 127.0.0.1:{refusing_port} failed",
    )


async def test_a_silent_server_fails_at_the_upgrade_after_the_timeout(tmp_path: Path) -> None:
    # Accepts TCP and never answers the upgrade request.
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    write_config(tmp_path / "config.toml", f"ws://127.0.0.1:{port}/ws")
    async with listener:
        with trio.fail_after(DEADLINE):
            result = await run_probe("spot", "--timeout", "0.5", cwd=tmp_path)
    assert_failed_at(
        result, ["route", "dns", "tcp", "upgrade"], "timed out after 0.5 s (--timeout)"
    )


async def test_a_refused_subscription_fails_there(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with binance() as fake:
            write_config(tmp_path / "config.toml", fake.url)
            text = (tmp_path / "config.toml").read_text().replace("BTC-USDT", "XYZ-USDT")
            (tmp_path / "config.toml").write_text(text)
            result = await run_probe("spot", cwd=tmp_path)
    assert_failed_at(
        result,
        ["route", "dns", "tcp", "upgrade", "subscription"],
        "the exchange refused 'xyzusdt@trade': 2 Invalid request: invalid stream",
    )


# -- --json ---------------------------------------------------------------------------


async def test_json_is_one_object_with_every_stage(tmp_path: Path) -> None:
    started = time.time()
    with trio.fail_after(DEADLINE):
        async with binance() as fake, rest() as api, open_tinyproxy(tmp_path, auth=AUTH) as proxy:
            write_config(tmp_path / "config.toml", fake.url, f'proxy = "{proxy.url()}"\n')
            result = await run_probe("spot", "--json", "--rest-url", api.url, cwd=tmp_path)
    elapsed = time.time() - started
    assert (result.returncode, result.stderr) == (0, b""), result.stderr
    stdout = result.stdout.decode()
    assert stdout.count("\n") == 1 and stdout.endswith("\n")
    report = json.loads(stdout)
    assert set(report) == {"target", "connection", "exchange", "ok", "stages"}
    assert (report["target"], report["connection"], report["exchange"], report["ok"]) == (
        f"ws://127.0.0.1:{fake.port}/stream",
        "spot",
        "binance",
        True,
    )
    stages = report["stages"]
    assert [s["name"] for s in stages] == [
        "route",
        "dns",
        "tcp",
        "proxy",
        "upgrade",
        "subscription",
        "data",
        "rest",
    ]
    for stage in stages:
        assert set(stage) == {"name", "status", "ok", "seconds", "detail", "info"}
        assert (stage["status"], stage["ok"]) == ("passed", True)
        assert type(stage["seconds"]) is float and stage["seconds"] >= 0
    by_name: dict[str, dict[str, Any]] = {s["name"]: s for s in stages}
    hop = f"http://alice:***@127.0.0.1:{proxy.port}"
    assert by_name["route"]["info"] == {"hops": [hop], "reason": "connections.spot.proxy"}
    assert by_name["dns"]["info"] == {
        "host": "127.0.0.1",
        "addresses": ["127.0.0.1"],
        "endpoint_resolved_by": "the proxy",
    }
    assert by_name["tcp"]["info"] == {
        "host": "127.0.0.1",
        "port": proxy.port,
        "peer": f"127.0.0.1:{proxy.port}",
    }
    assert by_name["proxy"]["info"] == {
        "index": 1,
        "hops": 1,
        "hop": hop,
        "handshake": "HTTP CONNECT with credentials",
    }
    assert by_name["upgrade"]["info"] == {"status": 101}
    assert by_name["subscription"]["info"] == {"topics": ["btcusdt@trade"]}
    assert by_name["data"]["info"] == {"type": "trade", "symbol": "BTC-USDT"}
    info = by_name["rest"]["info"]
    assert set(info) == {"url", "route", "status", "headers", "clock_offset", "round_trip"}
    assert (info["url"], info["route"], info["status"], info["headers"]) == (
        f"{api.url}/api/v3/time",
        [hop],
        200,
        {"X-MBX-USED-WEIGHT-1M": "1"},
    )
    assert offset_is_ahead(info["clock_offset"], elapsed)
    assert 0 <= info["round_trip"] < DEADLINE
    assert AUTH[1] not in stdout


async def test_json_of_a_failure_ends_at_the_failed_stage(
    tmp_path: Path, refusing_port: int
) -> None:
    write_config(tmp_path / "config.toml", f"ws://127.0.0.1:{refusing_port}/ws")
    with trio.fail_after(DEADLINE):
        result = await run_probe("spot", "--json", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (1, b"")
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [(s["name"], s["status"], s["ok"]) for s in report["stages"]] == [
        ("route", "passed", True),
        ("dns", "passed", True),
        ("tcp", "failed", False),
    ]
    assert report["stages"][-1]["detail"].startswith(
        f"cannot connect to ws://127.0.0.1:{refusing_port}/stream: "
    )


# -- a bare URL -----------------------------------------------------------------------


async def test_a_bare_url_without_a_known_adapter_stops_after_the_upgrade(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(interval=60.0) as fake:
            result = await run_probe(fake.url, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["connection"], report["exchange"], report["ok"]) == (None, None, True)
    assert [(s["name"], s["status"], s["ok"]) for s in report["stages"]] == [
        ("route", "passed", True),
        ("dns", "passed", True),
        ("tcp", "passed", True),
        ("upgrade", "passed", True),
        ("subscription", "skipped", None),
        ("data", "skipped", None),
        ("rest", "skipped", None),
    ]
    why = (
        "no adapter is known for host '127.0.0.1' (not a venue's default endpoint); probe a "
        "configured connection NAME to subscribe; stopped after the upgrade"
    )
    assert [(s["detail"], s["seconds"]) for s in report["stages"][4:]] == [
        (why, None),
        (why, None),
        ("no REST API is known for a URL without an adapter", None),
    ]


async def test_a_bare_url_takes_its_route_from_the_environment(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        async with open_fake_exchange(interval=60.0) as fake, open_tinyproxy(tmp_path) as proxy:
            env = {**ENV, "HTTP_PROXY": proxy.url()}
            result = await run_probe(fake.url, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    stages = stages_of(result.stdout.decode())
    assert stages[0] == ("route", "ok", f"{proxy.url()} (environment HTTP_PROXY)")
    assert [label for label, _, _ in stages] == [
        "route",
        "dns",
        "tcp",
        "proxy 1/1",
        "upgrade",
        "subscription",
        "data",
        "rest",
    ]
    assert peers(fake) == [proxy.outgoing]


def test_venue_defaults_select_their_adapter_and_a_valid_probe_subscription() -> None:
    for name, adapter in ADAPTERS.items():
        if adapter.default_url is None:
            assert name not in PROBE_SUBSCRIPTIONS
            continue
        assert venue_of(adapter.default_url) == name
        target = ProbeTarget.for_url(adapter.default_url)
        assert target.spec is not None
        assert adapter.check(target.spec) == []
        assert target.rest_origin == adapter.rest_url is not None
        assert target.rest_venue == adapter.rest_venue is not None
        assert adapter(target.spec, pacer=None).time_call() is not None
    assert venue_of("wss://stream.bybit.com/v5/public/linear") == "bybit_linear"
    assert venue_of("wss://stream.binance.com:9443/ws") == "binance"
    assert venue_of("wss://example.com/ws") is None
    spec = ProbeTarget.for_url("wss://ws.okx.com:8443/ws/v5/public").spec
    assert spec == msgspec.convert(
        {
            "name": "probe",
            "exchange": "okx",
            "url": "wss://ws.okx.com:8443/ws/v5/public",
            "channels": ["trades"],
            "symbols": ["BTC-USDT"],
        },
        type=ConnectionSpec,
    )


# -- usage and config errors: exit 2, one line, no traceback ---------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["nope"],
            "marketprism probe: {config}: no connection named 'nope' (connections: spot)",
        ),
        (
            ["http://example.com/ws"],
            "marketprism probe: 'http://example.com/ws' is not a WebSocket URL (expected "
            "ws:// or wss:// with a host)",
        ),
        (
            ["wss://example.com/ws", "--config", "{config}"],
            "marketprism probe: --config applies to a connection NAME; a URL is probed on its own",
        ),
        (
            ["spot", "--rest-url", "https://api.example.com/api/v3?key=s3cret"],
            "marketprism probe: --rest-url 'https://api.example.com/api/v3?key=***' has a "
            "path or query (expected only http(s)://host[:port]; the probe adds the venue's "
            "time path)",
        ),
        (
            ["spot", "--rest-url", "ftp://api.example.com"],
            "marketprism probe: --rest-url 'ftp://api.example.com' is not a REST origin "
            "(expected http(s)://host[:port])",
        ),
    ],
)
def test_usage_errors_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "config.toml", "ws://127.0.0.1:9/ws")
    argv = ["probe", *(a.format(config=config) for a in args)]
    if "--config" not in argv and "://" not in argv[1]:
        argv += ["--config", str(config)]
    assert cli_main(argv) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", message.format(config=config) + "\n")


def test_config_problems_exit_2_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path / "config.toml", "ws://127.0.0.1:9/ws", 'proxy = "socks9://a:b@h:1"\n'
    )
    assert cli_main(["probe", "spot", "--config", str(config)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"{config}:6: connections.spot.proxy: 'socks9://a:***@h:1' has an unsupported scheme "
        "'socks9' (expected http, https, socks4, socks4a, socks5, socks5h)\n"
    )


def test_the_default_config_is_config_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(["probe", "spot"]) == 2
    assert capsys.readouterr().err == (
        "config.toml: cannot read: no such file (pass the path of a TOML config file)\n"
    )


async def test_verify_false_passes_and_says_the_certificate_was_not_verified(
    ca: trustme.CA, tmp_path: Path
) -> None:
    cert = ca.issue_cert("other.example")
    with trio.fail_after(DEADLINE):
        async with binance(server_context(cert)) as fake, rest() as api:
            tls = "[connections.spot.tls]\nverify = false\n"
            write_config(tmp_path / "config.toml", fake.url, tls)
            result = await run_probe("spot", "--rest-url", api.url, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    stages = stages_of(result.stdout.decode())
    assert stages[3][:2] == ("tls", "ok")
    assert re.fullmatch(
        r"TLSv1\.3 TLS_\w+; certificate NOT verified \(tls\.verify = false\)", stages[3][2]
    )
    # The supervisor's connector warns, as at every connect.
    assert (
        result.stderr.decode()
        .rstrip()
        .endswith(
            f"spot: TLS certificate verification is OFF for wss://127.0.0.1:{fake.port}/stream "
            "(tls.verify = false); anyone on the route can read and change this feed"
        )
    )
