"""``marketprism run|demo --status HOST:PORT`` in a child process, as a user runs it.

The children bind port 0 where a test needs a free port and say in their log where they
listen; the test reads that line and then talks to the port. A bound listener queues
connections from that moment, so nothing is polled and nothing waits on time.
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path
from typing import Final

import httpx
import msgspec
import pytest
import trio
from test_cli import CLI, DEADLINE, ENV, QUICK, running_cli, write_config

from supervisor.cli.main import _host_port
from supervisor.testing import open_fake_exchange

#: The log line that says where the endpoint listens.
LISTENING: Final = re.compile(r"status endpoint: http://(?P<address>[^/]+)/status ")


async def test_demo_serves_status_while_it_runs() -> None:
    with trio.fail_after(DEADLINE):
        async with running_cli(
            "demo", "--status", "127.0.0.1:0", "--duration", "4", cwd=Path.cwd()
        ) as child:
            await child.stderr.wait_until(lambda text: LISTENING.search(text) is not None)
            match = LISTENING.search(child.stderr.text)
            assert match is not None
            async with httpx.AsyncClient(
                base_url=f"http://{match['address']}", trust_env=False
            ) as client:
                status = await client.get("/status")
                live = await client.get("/livez")
                metrics = await client.get("/metrics")
        assert child.process.returncode == 0, child.stderr.text
    assert status.status_code == 200
    connections = msgspec.json.decode(status.content)["connections"]
    assert sorted(connections) == ["binance", "bybit", "deribit", "okx"]
    assert live.status_code == 200
    assert 'marketprism_connects_total{connection="okx",exchange="okx"}' in metrics.text


async def test_run_serves_status_and_stops_with_the_supervisor(tmp_path: Path) -> None:
    async with open_fake_exchange(name="feed", interval=0.05) as fake:
        write_config(tmp_path / "config.toml", fake.url)
        with trio.fail_after(DEADLINE):
            async with running_cli(
                "run",
                "--status",
                "127.0.0.1:0",
                "--output",
                "none",
                "--duration",
                "3",
                cwd=tmp_path,
            ) as child:
                await child.stderr.wait_until(lambda text: LISTENING.search(text) is not None)
                match = LISTENING.search(child.stderr.text)
                assert match is not None
                await fake.wait_until(lambda f: bool(f.sessions))
                async with httpx.AsyncClient(
                    base_url=f"http://{match['address']}", trust_env=False
                ) as client:
                    status = await client.get("/status")
            assert child.process.returncode == 0, child.stderr.text
    assert status.status_code == 200
    assert list(msgspec.json.decode(status.content)["connections"]) == ["feed"]
    # Stopped with the supervisor: the port is free again.
    host, port = match["address"].rsplit(":", 1)
    with socket.socket() as again:
        again.bind((host, int(port)))


@pytest.mark.parametrize("command", ["run", "demo"])
async def test_a_taken_port_exits_2_before_anything_connects(tmp_path: Path, command: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        async with open_fake_exchange(name="feed", interval=0.05) as fake:
            write_config(tmp_path / "config.toml", fake.url)
            with trio.fail_after(DEADLINE):
                result = await trio.run_process(
                    [*CLI, command, "--status", f"127.0.0.1:{port}"],
                    cwd=tmp_path,
                    env=ENV,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
            assert fake.sessions == []
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"marketprism: --status: cannot serve the status endpoint on 127.0.0.1:{port}: the "
        "address is already in use (another marketprism, or another program, listens "
        "there); stop it or choose another port\n"
    )
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("9464", "'9464' is not HOST:PORT (e.g. 127.0.0.1:9464 or [::1]:9464; PORT 0-65535)"),
        (
            "127.0.0.1:http",
            "'127.0.0.1:http' is not HOST:PORT (e.g. 127.0.0.1:9464 or [::1]:9464; PORT 0-65535)",
        ),
        (
            "127.0.0.1:65536",
            "'127.0.0.1:65536' is not HOST:PORT (e.g. 127.0.0.1:9464 or [::1]:9464; PORT 0-65535)",
        ),
        ("::1:9464", "'::1:9464': write an IPv6 address in brackets, e.g. [::1]:9464"),
    ],
)
@pytest.mark.parametrize("command", ["run", "demo"])
def test_a_bad_status_value_exits_2_naming_it(command: str, value: str, problem: str) -> None:
    result = subprocess.run(
        [*CLI, command, "--status", value],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=QUICK,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"marketprism {command}: error: argument --status: {problem}"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_status_values_parse(value: str, address: tuple[str, int]) -> None:
    assert _host_port(value) == address


def test_an_address_not_of_this_machine_exits_2_naming_it(tmp_path: Path) -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never an address of this machine.
    result = subprocess.run(
        [*CLI, "demo", "--status", "192.0.2.1:9464", "--duration", "1"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=QUICK,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "marketprism: --status: cannot serve the status endpoint on 192.0.2.1:9464: "
        "Cannot assign requested address\n"
    )
