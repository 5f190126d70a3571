"""Loading the TOML configuration: every problem, with file, line and key, in one error."""

from __future__ import annotations

import inspect
import sys
import textwrap
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from actors import ConfigError, Overflow
from supervisor.config import (
    DEFAULT_MAX_RESTARTS,
    Config,
    config_from_dict,
    load_config,
    loads_config,
)
from supervisor.config._toml import (
    MAX_NESTING,
    Entry,
    Kind,
    key_entries,
    key_lines,
    nesting_problem,
)
from supervisor.policy import BackoffPolicy, Jitter, RestartType, Strategy

SRC = "config.toml"
URL = "wss://stream.example.com/ws"
SUP_KEYS = "connect_attempts, connect_interval, max_restarts, shutdown_timeout, strategy, within"
CONN_KEYS = (
    "allow_plaintext, backoff, book_depth, book_interval, book_refresh, book_sync, book_top, "
    "buffer, buffer_bytes, channels, connect_timeout, exchange, "
    "give_up_after, heartbeat, max_message_size, overflow, proxy, raw, rest, restart, "
    "shard, silent_after, stale_after, subscribe, symbols, tls, transport, url"
)
BACKOFF_KEYS = "initial, jitter, max, multiplier, reset_after"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        loads_config(textwrap.dedent(text), source=SRC)
    return exc.value.problems


def load(text: str) -> Config:
    return loads_config(textwrap.dedent(text), source=SRC)


# -- bad configs: each pins the complete list of problems --------------------------------

BAD = [
    pytest.param(
        f"""\
        [supervisr]
        strategy = "one_for_all"
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        """,
        [
            "config.toml:1: supervisr: unknown table; did you mean 'supervisor'? "
            "(expected one of: connections, defaults, supervisor)"
        ],
        id="unknown-top-level-table",
    ),
    pytest.param(
        f"""\
        [supervisor]
        max_restart = 3
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        """,
        [
            "config.toml:2: supervisor.max_restart: unknown key; did you mean 'max_restarts'? "
            f"(expected one of: {SUP_KEYS})"
        ],
        id="unknown-supervisor-key",
    ),
    pytest.param(
        f"""\
        [defaults]
        bufer = 10
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        """,
        [
            "config.toml:2: defaults.bufer: unknown key; did you mean 'buffer'? "
            f"(expected one of: {CONN_KEYS})"
        ],
        id="unknown-defaults-key",
    ),
    pytest.param(
        f"""\
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        chanels = ["trades"]
        colour = "blue"
        """,
        [
            "config.toml:4: connections.a.chanels: unknown key; did you mean 'channels'? "
            f"(expected one of: {CONN_KEYS})",
            f"config.toml:5: connections.a.colour: unknown key (expected one of: {CONN_KEYS})",
        ],
        id="unknown-connection-key",
    ),
    pytest.param(
        f"""\
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        backoff = {{ intial = 1.0 }}
        """,
        [
            "config.toml:4: connections.a.backoff.intial: unknown key; did you mean 'initial'? "
            f"(expected one of: {BACKOFF_KEYS})"
        ],
        id="unknown-backoff-key",
    ),
    pytest.param(
        """\
        [defaults]
        book_interval = 0.5

        [connections.a]
        exchange = "okx"
        channels = ["book"]
        symbols = ["BTC-USDT"]
        book_sync = false
        book_top = 5

        [connections.b]
        exchange = "okx"
        channels = ["book"]
        symbols = ["BTC-USDT"]
        book_depth = 0

        [connections.c]
        exchange = "okx"
        channels = ["book"]
        symbols = ["BTC-USDT"]
        """,
        [
            # Set in [defaults], where the line is.
            "config.toml:2: connections.c.book_interval: applies only with book_top (set "
            "book_top = N for the N best levels, or remove book_interval)",
            "config.toml:9: connections.a.book_top: needs book_sync = true (the tops are "
            "read from the local book; remove book_sync = false, or book_top)",
            "config.toml:15: connections.b.book_depth: 0 is out of range (expected an "
            "integer >= 1 and <= 5000)",
        ],
        id="book-keys",
    ),
    pytest.param(
        f"""\
        [connections.a]
        name = "other"
        exchange = "raw"
        url = "{URL}"
        """,
        [
            "config.toml:2: connections.a.name: unknown key "
            "(the name comes from the table header [connections.a])"
        ],
        id="name-key-written",
    ),
    pytest.param(
        f"""\
        [supervisor]
        within = "60"
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        """,
        [
            "config.toml:2: supervisor.within: '60' is a string "
            "(expected a number > 0 and <= 86400.0)"
        ],
        id="string-for-number",
    ),
    pytest.param(
        f"""\
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        buffer = true
        """,
        [
            "config.toml:4: connections.a.buffer: True is a boolean "
            "(expected an integer >= 1 and <= 1000000)"
        ],
        id="bool-for-int",
    ),
    pytest.param(
        f"""\
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        symbols = 5
        subscribe = ["{{}}", 1]
        """,
        [
            "config.toml:4: connections.a.symbols: 5 is an integer (expected an array of strings)",
            "config.toml:5: connections.a.subscribe: 1 at index 1 is an integer "
            "(expected an array of strings)",
        ],
        id="number-for-list",
    ),
    pytest.param(
        f"""\
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        stale_after = -1.0
        buffer = 0
        """,
        [
            "config.toml:4: connections.a.stale_after: -1.0 is out of range "
            "(expected a number >= 1 and <= 86400.0)",
            "config.toml:5: connections.a.buffer: 0 is out of range "
            "(expected an integer >= 1 and <= 1000000)",
        ],
        id="negative-stale-after-and-zero-buffer",
    ),
    pytest.param(
        f"""\
        [supervisor]
        max_restarts = -1
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        [connections.a.backoff]
        multiplier = 0.5
        """,
        [
            "config.toml:2: supervisor.max_restarts: -1 is out of range "
            "(expected an integer >= 0 and <= 1000000)",
            "config.toml:7: connections.a.backoff.multiplier: 0.5 is out of range "
            "(expected a number >= 1.0 and <= 100.0)",
        ],
        id="max-restarts-and-multiplier-out-of-range",
    ),
    pytest.param(
        f"""\
        [supervisor]
        strategy = "one_for_on"
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        restart = "always"
        overflow = "DROP_OLDEST"
        backoff.jitter = "gaussian"
        transport = "fastest"
        """,
        [
            "config.toml:2: supervisor.strategy: unknown strategy 'one_for_on'; "
            "did you mean 'one_for_one'? (expected one of: one_for_one, one_for_all, "
            "rest_for_one)",
            "config.toml:6: connections.a.restart: unknown restart 'always' "
            "(expected one of: permanent, transient, temporary)",
            "config.toml:7: connections.a.overflow: unknown overflow 'DROP_OLDEST'; "
            "did you mean 'drop_oldest'? (expected one of: block, drop_oldest, drop_newest)",
            "config.toml:8: connections.a.backoff.jitter: unknown jitter 'gaussian' "
            "(expected one of: none, full, equal, decorrelated)",
            "config.toml:9: connections.a.transport: unknown transport 'fastest'; "
            "did you mean 'fast'? (expected one of: fast, reference)",
        ],
        id="bad-enums",
    ),
    pytest.param(
        f"""\
        [connections.a]
        exchange = "binanse"
        url = "{URL}"
        """,
        [
            "config.toml:2: connections.a.exchange: unknown exchange 'binanse'; did you mean "
            "'binance'? (expected one of: binance, binance_usdm, bybit, bybit_linear, deribit, "
            "okx, raw)"
        ],
        id="unknown-exchange",
    ),
    pytest.param(
        """\
        [connections.a]
        exchange = "raw"
        url = "http://x"
        [connections.b]
        exchange = "raw"
        url = "wss:///path-only"
        [connections.c]
        exchange = "raw"
        url = "wss://h.example:99999/"
        """,
        [
            "config.toml:3: connections.a.url: 'http://x' is not a WebSocket URL "
            "(expected ws:// or wss:// with a host)",
            "config.toml:6: connections.b.url: 'wss:///path-only' is not a WebSocket URL "
            "(expected ws:// or wss:// with a host)",
            "config.toml:9: connections.c.url: 'wss://h.example:99999/' has an invalid port "
            "(expected a port from 1 to 65535)",
        ],
        id="bad-url-scheme-host-port",
    ),
    pytest.param(
        """\
        [connections.a]
        exchange = "raw"
        url = "wss://alice:hunter2@stream.example.com/ws"
        [connections.b]
        exchange = "raw"
        url = "https://token123@stream.example.com/ws"
        """,
        [
            "config.toml:3: connections.a.url: 'wss://***@stream.example.com/ws' has "
            "credentials in clear (expected a URL without user:password@; keep secrets out "
            "of the config)",
            "config.toml:6: connections.b.url: 'https://***@stream.example.com/ws' is not a "
            "WebSocket URL (expected ws:// or wss:// with a host)",
            "config.toml:6: connections.b.url: 'https://***@stream.example.com/ws' has "
            "credentials in clear (expected a URL without user:password@; keep secrets out "
            "of the config)",
        ],
        id="url-credentials-masked",
    ),
    pytest.param(
        f"""\
        [connections.a]
        url = "{URL}"
        """,
        [
            "config.toml:1: connections.a.exchange: missing "
            "(expected one of: binance, binance_usdm, bybit, bybit_linear, deribit, okx, raw; "
            "set it here or in"
            " [defaults])"
        ],
        id="missing-exchange",
    ),
    pytest.param(
        """\
        [connections.a]
        exchange = "raw"

        [connections.a]
        url = "wss://x"
        """,
        ["config.toml:4: connections.a: defined twice (each [connections.NAME] must be unique)"],
        id="duplicate-table",
    ),
    pytest.param(
        """\
        [connections.a]
        exchange = "raw"
        url = "wss://x"
        url = "wss://y"
        """,
        ["config.toml:4: connections.a.url: set twice (each key may appear once per table)"],
        id="duplicate-key",
    ),
    pytest.param(
        """\
        [connections.a]
        backoff = { initial = 1, initial = 2 }
        """,
        [
            "config.toml:2: connections.a.backoff.initial: set twice "
            "(each key may appear once per table)"
        ],
        id="duplicate-inline-key",
    ),
    pytest.param(
        """\
        [connections.a]
        backoff = { initial = 1 }
        backoff.max = 2
        """,
        [
            "config.toml:3: connections.a.backoff: extended after being written inline "
            "(expected all of an inline table's keys inside its { ... })"
        ],
        id="inline-table-extended",
    ),
    pytest.param(
        f"""\
        [connections.binance]
        exchange = "raw"
        url = "{URL}"
        [connections.Binance]
        exchange = "raw"
        url = "{URL}"
        """,
        [
            "config.toml:4: connections.Binance: same name as connections.binance on line 1 "
            "(names must be unique, ignoring case)"
        ],
        id="names-equal-ignoring-case",
    ),
    pytest.param(
        f"""\
        [connections."my conn"]
        exchange = "raw"
        url = "{URL}"
        [connections._x]
        exchange = "raw"
        url = "{URL}"
        """,
        [
            "config.toml:1: connections.\"my conn\": 'my conn' is not a valid name "
            "(expected letters, digits, '_' and '-', starting with a letter or digit)",
            "config.toml:4: connections._x: '_x' is not a valid name "
            "(expected letters, digits, '_' and '-', starting with a letter or digit)",
        ],
        id="bad-name-characters",
    ),
    pytest.param(
        f"""\
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        backoff.initial = 10
        backoff.max = 5.0
        """,
        [
            "config.toml:4: connections.a.backoff: initial 10 is greater than max 5.0 "
            "(expected initial <= max)"
        ],
        id="initial-greater-than-max",
    ),
    pytest.param(
        f"""\
        [defaults]
        exchange = "raw"
        url = "{URL}"
        backoff.initial = 45
        [connections.a]
        [connections.b]
        [connections.c]
        backoff.max = 60
        """,
        [
            "config.toml:4: defaults.backoff: initial 45 is greater than max 30.0 "
            "(expected initial <= max)"
        ],
        id="initial-greater-than-default-max-reported-once",
    ),
    pytest.param(
        """\
        [supervisor]
        strategy = "one_for_all"
        """,
        [
            "config.toml: connections: no connections "
            "(expected at least one [connections.NAME] table)"
        ],
        id="no-connections",
    ),
    pytest.param(
        """\
        # nothing yet
        [connections]
        """,
        [
            "config.toml:2: connections: no connections "
            "(expected at least one [connections.NAME] table)"
        ],
        id="empty-connections-table",
    ),
    pytest.param(
        """\
        [[connections]]
        exchange = "raw"
        """,
        [
            "config.toml:1: connections: written as [[connections]] "
            "(expected one [connections.NAME] table per connection)"
        ],
        id="array-of-tables",
    ),
    pytest.param(
        """\
        supervisor = 3
        [connections]
        a = "raw"
        """,
        [
            "config.toml:1: supervisor: 3 is an integer (expected a table)",
            "config.toml:3: connections.a: 'raw' is a string (expected a table)",
        ],
        id="tables-of-wrong-type",
    ),
    pytest.param(
        """\
        [connections.a]
        exchange = "raw"
        subscribe = ['{"op": "subscribe"}']
        """,
        [
            "config.toml:1: connections.a.url: missing (expected a ws:// or wss:// URL;"
            " the raw adapter has no default endpoint)"
        ],
        id="raw-without-url",
    ),
    pytest.param(
        f"""\
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        channels = ["trades"]
        """,
        [
            "config.toml:4: connections.a.channels: not used by the raw adapter "
            "(list the frames to send in subscribe)"
        ],
        id="raw-with-channels",
    ),
    pytest.param(
        f"""\
        [defaults]
        exchange = "raw"
        url = "{URL}"
        stale_after = -5
        [connections.a]
        [connections.b]
        """,
        [
            "config.toml:4: defaults.stale_after: -5 is out of range "
            "(expected a number >= 1 and <= 86400.0)"
        ],
        id="bad-default-reported-once",
    ),
    pytest.param(
        f"""\
        [defaults]
        exchange = "binanse"
        name = "x"
        [connections.a]
        url = "{URL}"
        [connections.b]
        exchange = "raw"
        """,
        [
            "config.toml:2: defaults.exchange: unknown exchange 'binanse'; did you mean"
            " 'binance'? (expected one of: binance, binance_usdm, bybit, bybit_linear, deribit, "
            "okx, raw)",
            "config.toml:3: defaults.name: unknown key "
            "(each connection's name comes from its [connections.NAME] header)",
        ],
        id="bad-defaults-suppress-adapter-checks",
    ),
    pytest.param(
        """\
        [connections.a]
        exchange = "raw"
        url = "wss://x
        """,
        ["config.toml:3: syntax: Illegal character '\\n' (fix the TOML syntax at column 15)"],
        id="syntax-error",
    ),
    pytest.param(
        """\
        [connections.a]
        exchange = \"\"\"raw
        """,
        ["config.toml:2: syntax: Unterminated string (fix the TOML syntax at the end of the file)"],
        id="syntax-error-at-end",
    ),
    pytest.param(
        """\
        [connections.b]
        exchange = "raw"
        buffer = 0
        [supervisor]
        within = 0
        [connections.a]
        exchange = "rwa"
        url = "ftp://alice:s3cret@example.com"
        [defaults]
        overflow = "drop"
        """,
        [
            "config.toml:3: connections.b.buffer: 0 is out of range "
            "(expected an integer >= 1 and <= 1000000)",
            "config.toml:5: supervisor.within: 0 is out of range "
            "(expected a number > 0 and <= 86400.0)",
            "config.toml:7: connections.a.exchange: unknown exchange 'rwa'; "
            "did you mean 'raw'? (expected one of: binance, binance_usdm, bybit, bybit_linear, "
            "deribit, okx, raw)",
            "config.toml:8: connections.a.url: 'ftp://***@example.com' is not a "
            "WebSocket URL (expected ws:// or wss:// with a host)",
            "config.toml:8: connections.a.url: 'ftp://***@example.com' has credentials "
            "in clear (expected a URL without user:password@; keep secrets out of the config)",
            "config.toml:10: defaults.overflow: unknown overflow 'drop' "
            "(expected one of: block, drop_oldest, drop_newest)",
        ],
        id="many-problems-sorted-by-line",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_config_reports_every_problem(text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


def test_secrets_never_appear_in_problems() -> None:
    problems = problems_of(
        """\
        [connections.a]
        exchange = "raw"
        url = "http://alice:hunter2@[::1"
        """
    )
    assert problems == [
        "config.toml:3: connections.a.url: 'http://***@[::1' is not a WebSocket URL "
        "(expected ws:// or wss:// with a host)",
        "config.toml:3: connections.a.url: 'http://***@[::1' has credentials in clear "
        "(expected a URL without user:password@; keep secrets out of the config)",
    ]
    # The user name too: an exchange URL's user name is often the API key (audit M7).
    assert not any("hunter2" in problem or "alice" in problem for problem in problems)


def test_config_error_message_is_the_problems_joined() -> None:
    with pytest.raises(
        ConfigError,
        match=(
            r"^cfg\.toml:2: connections\.a\.buffer: 'many' is a string "
            r"\(expected an integer >= 1 and <= 1000000\)\n"
            r"cfg\.toml:3: connections\.a\.stale_after: 0 is out of range "
            r"\(expected a number >= 1 and <= 86400\.0\)$"
        ),
    ):
        loads_config(
            '[connections.a]\nbuffer = "many"\nstale_after = 0\nexchange = "raw"\n',
            source="cfg.toml",
        )


def test_wrong_type_for_date_shows_it_as_toml_writes_it() -> None:
    assert problems_of(
        f"""\
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        connect_timeout = 1979-05-27T07:32:00Z
        """
    ) == [
        "config.toml:4: connections.a.connect_timeout: 1979-05-27T07:32:00+00:00 is a "
        "date-time (expected a number > 0 and <= 86400.0)"
    ]


# -- good configs -------------------------------------------------------------------------


def test_minimal_config_uses_schema_defaults() -> None:
    config = load(
        f"""\
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        """
    )
    assert config.source == SRC
    assert config.supervisor.strategy is Strategy.ONE_FOR_ONE
    assert config.supervisor.max_restarts == DEFAULT_MAX_RESTARTS
    (conn,) = config.connections
    assert conn.name == "a"
    assert conn.exchange == "raw"
    assert conn.url == URL
    assert conn.restart is RestartType.PERMANENT
    assert conn.overflow is Overflow.BLOCK
    assert conn.backoff == BackoffPolicy()


def test_supervisor_table_is_decoded() -> None:
    config = load(
        f"""\
        [supervisor]
        strategy = "rest_for_one"
        max_restarts = 0
        within = 10
        [connections.a]
        exchange = "raw"
        url = "{URL}"
        """
    )
    assert config.supervisor.strategy is Strategy.REST_FOR_ONE
    assert config.supervisor.max_restarts == 0
    assert config.supervisor.within == 10.0
    assert isinstance(config.supervisor.within, float)


def test_defaults_are_inherited_and_backoff_merges_key_by_key() -> None:
    config = load(
        f"""\
        [defaults]
        exchange = "raw"
        url = "{URL}"
        stale_after = 5
        overflow = "drop_oldest"
        backoff = {{ initial = 2, jitter = "none" }}

        [connections.a]
        stale_after = 7.5
        restart = "temporary"
        backoff.multiplier = 3

        [connections.b]
        url = "ws://localhost:8765"
        subscribe = ['{{"op": "subscribe"}}']
        backoff = {{ jitter = "equal" }}
        """
    )
    a, b = config.connections
    assert (a.name, a.exchange, a.url) == ("a", "raw", URL)
    assert a.stale_after == 7.5
    assert a.overflow is Overflow.DROP_OLDEST
    assert a.restart is RestartType.TEMPORARY
    assert a.backoff == BackoffPolicy(initial=2.0, multiplier=3.0, jitter=Jitter.NONE)
    assert (b.name, b.url) == ("b", "ws://localhost:8765")
    assert b.stale_after == 5.0
    assert b.subscribe == ('{"op": "subscribe"}',)
    assert b.restart is RestartType.PERMANENT
    assert b.backoff == BackoffPolicy(initial=2.0, jitter=Jitter.EQUAL)


def test_connections_keep_file_order() -> None:
    config = load(
        "[defaults]\nexchange = 'raw'\nurl = 'wss://x.example'\n"
        "[connections.zeta]\n[connections.alpha]\n[connections.mid-1]\n"
    )
    assert [c.name for c in config.connections] == ["zeta", "alpha", "mid-1"]


def test_load_config_reads_a_file_and_keeps_the_path_as_source(tmp_path: Path) -> None:
    path = tmp_path / "market.toml"
    path.write_text(f'[connections.a]\nexchange = "raw"\nurl = "{URL}"\n', encoding="utf-8")
    assert load_config(path).source == str(path)
    assert load_config(str(path)).source == str(path)


def test_load_config_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(f'\ufeff[connections.a]\nexchange = "raw"\nurl = "{URL}"\n'.encode())
    assert [c.name for c in load_config(path).connections] == ["a"]


def test_load_config_problems_carry_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[connections.a]\nexchange = "raw"\nbuffer = -1\n', encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.problems == [
        f"{path}:3: connections.a.buffer: -1 is out of range "
        "(expected an integer >= 1 and <= 1000000)"
    ]


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.problems == [
        f"{path}: cannot read: no such file (pass the path of a TOML config file)"
    ]


def test_load_config_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    assert exc.value.problems == [
        f"{tmp_path}: cannot read: it is a directory (pass the path of a TOML config file)"
    ]


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[connections.a]\nexchange = "r\xe4w"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.problems == [
        f"{path}:2: cannot read: byte 0xe4 is not valid UTF-8 (save the file as UTF-8)"
    ]


def test_config_from_dict_builds_a_config() -> None:
    config = config_from_dict(
        {
            "supervisor": {"strategy": "one_for_all"},
            "defaults": {"exchange": "raw", "backoff": {"max": 5}},
            "connections": {
                "a": {"url": URL, "backoff": {"initial": 1}},
                "b": {"url": URL, "backoff": BackoffPolicy(initial=0.1, max=1.0)},
            },
        }
    )
    assert config.source == "<dict>"
    assert config.supervisor.strategy is Strategy.ONE_FOR_ALL
    a, b = config.connections
    assert a.backoff == BackoffPolicy(initial=1.0, max=5.0)
    assert b.backoff == BackoffPolicy(initial=0.1, max=1.0)


def test_config_from_dict_reports_problems_without_lines() -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_dict(
            {
                "supervisor": {"within": -1},
                "connections": {"a": {"exchange": "raw", "url": "wss://x", "bufer": 1}},
                "extra": 1,
            },
            source="demo",
        )
    assert exc.value.problems == [
        "demo: extra: unknown key (expected one of: connections, defaults, supervisor)",
        "demo: supervisor.within: -1 is out of range (expected a number > 0 and <= 86400.0)",
        f"demo: connections.a.bufer: unknown key; did you mean 'buffer'? "
        f"(expected one of: {CONN_KEYS})",
    ]


def test_config_from_dict_reports_duplicate_names_without_lines() -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"connections": {"a": {"exchange": "raw"}, "A": {"exchange": "raw"}}})
    assert exc.value.problems == [
        "<dict>: connections.a.url: missing (expected a ws:// or wss:// URL;"
        " the raw adapter has no default endpoint)",
        "<dict>: connections.A: same name as connections.a (names must be unique, ignoring case)",
    ]


def test_config_from_dict_reports_none_values() -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"connections": {"a": {"exchange": None, "url": None}}})
    assert exc.value.problems == [
        "<dict>: connections.a.exchange: None is not a value (expected a string)"
    ]


def test_config_from_dict_rejects_a_non_mapping() -> None:
    with pytest.raises(
        TypeError,
        match=(
            r"^config_from_dict\(\) takes a mapping shaped like the TOML file, not list; "
            r"pass a dict such as \{'connections': \{\.\.\.\}\}$"
        ),
    ):
        config_from_dict([])  # type: ignore[arg-type]


def test_config_from_dict_with_no_connections() -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_dict({})
    assert exc.value.problems == [
        "<dict>: connections: no connections (expected at least one [connections.NAME] table)"
    ]


# -- _toml.key_lines -------------------------------------------------------------------------


def test_key_lines_headers_keys_and_dotted_keys() -> None:
    text = textwrap.dedent(
        """\
        top = 1
        [supervisor]
        strategy = "one_for_all"

          [ connections . a ]
        backoff.initial = 1
        backoff . max = 2
        """
    )
    assert key_lines(text) == {
        ("top",): 1,
        ("supervisor",): 2,
        ("supervisor", "strategy"): 3,
        ("connections", "a"): 5,
        ("connections", "a", "backoff"): 6,
        ("connections", "a", "backoff", "initial"): 6,
        ("connections", "a", "backoff", "max"): 7,
    }


def test_key_lines_inline_tables() -> None:
    text = '[c.a]\nbackoff = { initial = 1, jitter = "none", deep = { x = 1 } }\nz = 2\n'
    assert key_lines(text) == {
        ("c", "a"): 1,
        ("c", "a", "backoff"): 2,
        ("c", "a", "backoff", "initial"): 2,
        ("c", "a", "backoff", "jitter"): 2,
        ("c", "a", "backoff", "deep"): 2,
        ("c", "a", "backoff", "deep", "x"): 2,
        ("c", "a", "z"): 3,
    }


def test_key_lines_quoted_keys() -> None:
    text = textwrap.dedent(
        """\
        [connections."my conn"]
        "k" = 1
        'lit.eral' = 2
        "esc\\u0041" = 3
        "a.b".c = 4
        """
    )
    assert key_lines(text) == {
        ("connections", "my conn"): 1,
        ("connections", "my conn", "k"): 2,
        ("connections", "my conn", "lit.eral"): 3,
        ("connections", "my conn", "escA"): 4,
        ("connections", "my conn", "a.b"): 5,
        ("connections", "my conn", "a.b", "c"): 5,
    }


def test_key_lines_are_not_fooled_by_strings_comments_and_arrays() -> None:
    text = textwrap.dedent(
        """\
        # [not.a.header] = 1
        [t] # [comment] x = 1
        s = "a = [b] # c"
        e = "quote \\" then [x] = 1"
        arr = [
          "x = 1",  # ] = 2
          [1, 2],
          { k = 1 },
        ]
        ml = \"\"\"
        [fake]
        key = 1
        \"\"\"
        lit = '''
        [fake2] "'' '''
        raw = 'C:\\path\\'
        tail = '''x'''''
        when = 1979-05-27 07:32:00Z
        last = 1
        """
    )
    tomllib.loads(text)  # the scanner's input is always valid TOML
    assert key_lines(text) == {
        ("t",): 2,
        ("t", "s"): 3,
        ("t", "e"): 4,
        ("t", "arr"): 5,
        ("t", "ml"): 10,
        ("t", "lit"): 14,
        ("t", "raw"): 16,
        ("t", "tail"): 17,
        ("t", "when"): 18,
        ("t", "last"): 19,
    }


def test_key_lines_ignore_arrays_of_tables() -> None:
    text = "[[points]]\nx = 1\n[[points]]\nx = 2\n[after]\ny = 1\n"
    assert key_lines(text) == {("points",): 1, ("after",): 5, ("after", "y"): 6}


def test_key_lines_windows_line_endings() -> None:
    assert key_lines("[a]\r\nb = 1\r\n\r\nc = 'x'\r\n") == {
        ("a",): 1,
        ("a", "b"): 2,
        ("a", "c"): 4,
    }


def test_key_entries_keep_repeats_and_kinds() -> None:
    assert key_entries("[a]\nb.c = 1\nb.d = 2\n") == [
        Entry(("a",), 1, Kind.HEADER),
        Entry(("a", "b"), 2, Kind.DOTTED),
        Entry(("a", "b", "c"), 2, Kind.KEY),
        Entry(("a", "b"), 3, Kind.DOTTED),
        Entry(("a", "b", "d"), 3, Kind.KEY),
    ]


@pytest.mark.parametrize(
    "text",
    ['a = "unterminated\nb = 1\n', "[a\nb = {", "= 1\n", "a = [1, 2", 'a = """x', "]]]"],
)
def test_key_lines_never_raise_on_broken_text(text: str) -> None:
    assert isinstance(key_lines(text), dict)


def test_an_optional_bounded_key_says_its_bounds() -> None:
    # `heartbeat` has the same shape (a bounded number or absent): its problem used to
    # print the Python type, `typing.Optional[typing.Annotated[float, ...]]`.
    assert problems_of(
        f"""\
        [connections.x]
        exchange = "raw"
        url = "{URL}"
        heartbeat = 0
        """
    ) == [
        "config.toml:4: connections.x.heartbeat: 0 is out of range (expected a number > 0 "
        "and <= 3600.0)"
    ]


# -- give_up_after -----------------------------------------------------------------------


def test_give_up_after_is_a_connection_key_inherited_from_defaults() -> None:
    config = load(
        f"""\
        [defaults]
        exchange = "raw"
        give_up_after = 600
        [connections.a]
        url = "{URL}"
        [connections.b]
        url = "{URL}"
        give_up_after = 30.5
        [connections.c]
        url = "{URL}"
        """
    )
    assert [c.give_up_after for c in config.connections] == [600.0, 30.5, 600.0]
    never = load(f'[connections.a]\nexchange = "raw"\nurl = "{URL}"\n')
    assert never.connections[0].give_up_after is None  # default: never give up


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0", "0 is out of range"),
        ("-5.0", "-5.0 is out of range"),
        ("604800.5", "604800.5 is out of range"),
        ('"1h"', "'1h' is a string"),
        ("true", "True is a boolean"),
    ],
)
def test_give_up_after_must_be_positive_seconds_up_to_a_week(value: str, problem: str) -> None:
    expected = "(expected a number > 0 and <= 604800.0)"
    assert problems_of(
        f"""\
        [defaults]
        give_up_after = {value}
        [connections.x]
        exchange = "raw"
        url = "{URL}"
        give_up_after = {value}
        """
    ) == [
        f"config.toml:2: defaults.give_up_after: {problem} {expected}",
        f"config.toml:6: connections.x.give_up_after: {problem} {expected}",
    ]


# -- nesting too deep (audit L4) ------------------------------------------------------------
#
# tomllib recurses per level and exhausts the recursion limit at about 400 nested arrays
# (RecursionError, a 3000-line traceback, exit 1), and takes quadratic time in the parts
# of a dotted key. The loader refuses anything past MAX_NESTING levels first, in one
# problem line with the line number.

DEEP_HEAD = '[connections.x]\nexchange = "raw"\nurl = "ws://h/"\n'
TOO_DEEP = (
    "nested deeper than 64 levels (expected tables, arrays and inline tables a few levels "
    "deep; look for a runaway '[', '{' or dotted key)"
)


@pytest.mark.parametrize("depth", [1000, 100_000])
@pytest.mark.parametrize(
    ("shape", "where"),
    [
        pytest.param(
            lambda n: "subscribe = " + "[" * n + "]" * n, "connections.x.subscribe", id="arrays"
        ),
        pytest.param(
            lambda n: "subscribe = " + "{a = " * n + "1" + "}" * n,
            "connections.x.subscribe",
            id="inline-tables",
        ),
        pytest.param(
            lambda n: "subscribe = " + "[{a = " * n + "1" + "}]" * n,
            "connections.x.subscribe",
            id="arrays-of-inline-tables",
        ),
        pytest.param(lambda n: "subscribe" + ".a" * n + " = 1", "syntax", id="dotted-key"),
        pytest.param(lambda n: "[connections.x" + ".a" * n + "]", "syntax", id="header"),
    ],
)
def test_deep_nesting_is_one_problem_with_its_line(
    tmp_path: Path, shape: Callable[[int], str], where: str, depth: int
) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(DEEP_HEAD + "\n" + shape(depth) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.problems == [f"{path}:5: {where}: {TOO_DEEP}"]


def test_deep_nesting_is_refused_whatever_the_callers_stack_depth() -> None:
    # The check itself recurses no deeper than the limit: it still works with only 300
    # frames of the recursion limit left to it.
    text = DEEP_HEAD + "subscribe = " + "[" * 100_000 + "]" * 100_000

    def at_depth(frames: int) -> list[str]:
        if frames:
            return at_depth(frames - 1)
        with pytest.raises(ConfigError) as exc:
            loads_config(text, source=SRC)
        return exc.value.problems

    frames = sys.getrecursionlimit() - 300 - len(inspect.stack(0))
    assert at_depth(frames) == [f"config.toml:4: connections.x.subscribe: {TOO_DEEP}"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("a = " + "[" * 64 + "]" * 64, None, id="64-arrays"),
        pytest.param("a = " + "[" * 65 + "]" * 65, f"x:1: a: {TOO_DEEP}", id="65-arrays"),
        pytest.param("[a.b]\nc = " + "[" * 62 + "]" * 62, None, id="2-tables-62-arrays"),
        pytest.param(
            "[a.b]\nc = " + "[" * 63 + "]" * 63, f"x:2: a.b.c: {TOO_DEEP}", id="2-tables-63-arrays"
        ),
        # A key of n parts makes n - 1 tables; its value is no level if not a container.
        pytest.param("k" + ".k" * 64 + " = 1", None, id="65-part-key"),
        pytest.param("k" + ".k" * 65 + " = 1", f"x:1: syntax: {TOO_DEEP}", id="66-part-key"),
        pytest.param("k" + ".k" * 63 + " = []", None, id="64-part-key-array"),
        # A key longer than the limit is not repeated in the message.
        pytest.param("k" + ".k" * 64 + " = []", f"x:1: syntax: {TOO_DEEP}", id="65-part-key-array"),
        pytest.param("[[k" + ".k" * 62 + "]]", None, id="63-part-array-of-tables"),
        pytest.param(
            "[[k" + ".k" * 63 + "]]",
            "x:1: " + ".".join(["k"] * 64) + f": {TOO_DEEP}",
            id="64-part-array-of-tables",
        ),
        pytest.param(
            "[[t]]\na = " + "[" * 63 + "]" * 63, f"x:2: syntax: {TOO_DEEP}", id="in-array-of-tables"
        ),
        pytest.param(
            "a = [\n" + "[\n" * 70 + "]\n" * 70 + "]", f"x:65: a: {TOO_DEEP}", id="multi-line"
        ),
        pytest.param('a = "' + "[" * 1000 + '"', None, id="brackets-in-a-string"),
        pytest.param("a = 1 # " + "{" * 1000, None, id="braces-in-a-comment"),
    ],
)
def test_nesting_limit_counts_tables_arrays_and_inline_tables(
    text: str, problem: str | None
) -> None:
    assert MAX_NESTING == 64
    assert nesting_problem(text, "x") == problem
    if problem is None:
        tomllib.loads(text)  # what the check lets through, tomllib parses


def test_valid_configs_are_far_from_the_nesting_limit() -> None:
    text = (Path(__file__).resolve().parent.parent / "config.toml").read_text(encoding="utf-8")
    assert nesting_problem(text, "config.toml") is None


def test_config_from_dict_nested_too_deep_is_one_problem() -> None:
    value: list[object] = []
    for _ in range(5000):
        value = [value]
    with pytest.raises(ConfigError) as exc:
        config_from_dict(
            {"connections": {"x": {"exchange": "raw", "url": URL, "subscribe": value}}}
        )
    assert exc.value.problems == [
        "<dict>: nested too deep to check (expected tables, arrays and inline tables a few "
        "levels deep, shaped like the TOML file)"
    ]
