"""The ``buffer_bytes`` key (audit M8): its default, its bounds, and that it reaches the
connection's consumer queue."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from actors import RegistryClient
from actors._spec import DEFAULT_BUFFER_BYTES
from actors.registry import RegistryEvent
from supervisor import ConfigError, config_from_dict, loads_config
from supervisor.wiring import build_actors

URL = "wss://stream.example.com/ws"
RANGE = "(expected an integer >= 65536 and <= 1099511627776)"


def test_the_default_is_64_mib() -> None:
    assert DEFAULT_BUFFER_BYTES == 64 * 1024 * 1024
    config = loads_config(f'[connections.a]\nexchange = "raw"\nurl = "{URL}"\n')
    assert config.connections[0].buffer_bytes == DEFAULT_BUFFER_BYTES


def test_defaults_and_connections_set_it() -> None:
    config = loads_config(
        textwrap.dedent(
            f"""\
            [defaults]
            buffer_bytes = 8388608
            [connections.a]
            exchange = "raw"
            url = "{URL}"
            [connections.b]
            exchange = "raw"
            url = "{URL}"
            buffer_bytes = 65536
            """
        )
    )
    assert [c.buffer_bytes for c in config.connections] == [8 * 1024 * 1024, 65536]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("65535", f"65535 is out of range {RANGE}"),
        ("1099511627777", f"1099511627777 is out of range {RANGE}"),
        ('"64MiB"', f"'64MiB' is a string {RANGE}"),
    ],
)
def test_out_of_range_values_name_the_key_and_line(value: str, problem: str) -> None:
    text = f'[connections.a]\nexchange = "raw"\nurl = "{URL}"\nbuffer_bytes = {value}\n'
    with pytest.raises(ConfigError) as exc:
        loads_config(text, source="config.toml")
    assert exc.value.problems == [f"config.toml:4: connections.a.buffer_bytes: {problem}"]


def test_check_refuses_it_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        f'[connections.a]\nexchange = "raw"\nurl = "{URL}"\nbuffer_bytes = 0\n', encoding="utf-8"
    )
    cli = "import sys; from supervisor.cli import main; sys.exit(main())"
    result = subprocess.run(
        [sys.executable, "-c", cli, "check", "bad.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"bad.toml:4: connections.a.buffer_bytes: 0 is out of range {RANGE}\n"


def test_the_queue_gets_the_connection_budget() -> None:
    config = config_from_dict(
        {
            "connections": {
                "a": {"exchange": "raw", "url": URL, "buffer_bytes": 1 << 20, "buffer": 7},
                "b": {"exchange": "raw", "url": URL},
            }
        }
    )
    send, _ = trio.open_memory_channel[RegistryEvent](1)

    async def never(url: str) -> trio.abc.Stream:  # pragma: no cover - nothing connects
        raise AssertionError(url)

    a, b = build_actors(
        config, registry=RegistryClient(send), connectors=[never] * len(config.connections)
    )
    assert (a.queue.max_bytes, a.queue.capacity) == (1 << 20, 7)
    assert (b.queue.max_bytes, b.queue.capacity) == (DEFAULT_BUFFER_BYTES, 1024)
