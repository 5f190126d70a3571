"""Configuration: TOML -> frozen msgspec Structs, with errors that name file, line and key.

Schema (the names are part of the public contract)::

    [supervisor]               SupervisorSettings
    [defaults]                 any connection key; inherited by every connection
    [defaults.backoff]         merged key by key into each connection's backoff
    [connections.NAME]         ConnectionConfig (NAME becomes ``name``)
    [connections.NAME.backoff] BackoffPolicy
"""

from __future__ import annotations

import ast
import datetime
import difflib
import enum
import json
import os
import re
import tomllib
import types
import typing
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final

import msgspec

from actors import ConfigError, ConnectionSpec
from actors.exchanges import ADAPTERS
from actors.net import redact_url
from supervisor._tomlpos import Entry, Kind, key_entries, key_lines
from supervisor.policy import (
    DEFAULT_INITIAL,
    DEFAULT_MAX,
    BackoffPolicy,
    RestartType,
    Strategy,
)

#: Restarts allowed inside ``within`` seconds before the supervisor escalates. With the
#: default backoff (cap 30 s) a long outage retries about twice a minute and never
#: escalates; only a tight crash loop does.
DEFAULT_MAX_RESTARTS: Final = 10
#: The sliding window, in seconds, for ``max_restarts``.
DEFAULT_WITHIN: Final = 60.0
#: Seconds a clean shutdown may take (close frames sent and answered) before sockets
#: are closed hard.
DEFAULT_SHUTDOWN_TIMEOUT: Final = 5.0
#: Connection attempts granted per host per ``connect_interval``. OKX allows 3 per
#: second per IP (https://www.okx.com/docs-v5/en/#overview-websocket-connect), the
#: strictest of the three exchanges; Binance allows 300 per 5 minutes.
DEFAULT_CONNECT_ATTEMPTS: Final = 3
DEFAULT_CONNECT_INTERVAL: Final = 1.0


class SupervisorSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[supervisor]`` table.

    Attributes:
        strategy: ``one_for_one``, ``one_for_all`` or ``rest_for_one``.
        max_restarts: restarts tolerated within ``within`` seconds, across all children.
        within: the restart-intensity window in seconds.
        shutdown_timeout: seconds a clean stop may take before sockets are closed hard.
        connect_attempts: connection attempts granted per host per ``connect_interval``.
        connect_interval: the pacing window for ``connect_attempts``, in seconds.
    """

    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = DEFAULT_MAX_RESTARTS
    within: Annotated[float, msgspec.Meta(gt=0, le=86_400.0)] = DEFAULT_WITHIN
    shutdown_timeout: Annotated[float, msgspec.Meta(gt=0, le=3600.0)] = DEFAULT_SHUTDOWN_TIMEOUT
    connect_attempts: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = DEFAULT_CONNECT_ATTEMPTS
    connect_interval: Annotated[float, msgspec.Meta(gt=0, le=86_400.0)] = DEFAULT_CONNECT_INTERVAL


class ConnectionConfig(ConnectionSpec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[connections.NAME]`` table: a :class:`ConnectionSpec` plus supervision keys.

    Attributes:
        restart: ``permanent``, ``transient`` or ``temporary``.
        backoff: delays between restarts.
    """

    restart: RestartType = RestartType.PERMANENT
    backoff: BackoffPolicy = BackoffPolicy()


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A whole configuration.

    Attributes:
        supervisor: the ``[supervisor]`` table.
        connections: the connections in file order (order matters for ``rest_for_one``).
        source: the file it was read from, or ``"<dict>"``/``"<string>"``.
    """

    supervisor: SupervisorSettings = SupervisorSettings()
    connections: tuple[ConnectionConfig, ...] = ()
    source: str = "<dict>"


# -- loading ---------------------------------------------------------------------------
#
# Theory of operation: tomllib turns the text into plain dicts (or a syntax error, which
# becomes one problem). Every value is then checked on its own against its field's
# annotated type with ``msgspec.convert``, so that one run reports every problem instead
# of the first; the problem is phrased from the type (bounds, choices) rather than copied
# from msgspec. Valid values are kept, ``[defaults]`` are merged under each connection
# (``backoff`` key by key), the semantic checks run (exchange, URL, names, backoff
# order, the adapter's own ``check``), and only when nothing is wrong is the whole
# ``Config`` built once with ``msgspec.convert``. Lines come from ``_tomlpos.key_lines``;
# a path with no line of its own (a missing key) is reported at its nearest written
# ancestor, usually the table header.

_Path = tuple[str, ...]

_TOP_LEVEL: Final = ("connections", "defaults", "supervisor")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_BARE_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_POSITION_RE: Final = re.compile(
    r"^(?P<message>.*) \(at (?:line (?P<line>\d+), column (?P<column>\d+)|end of document)\)$",
    re.DOTALL,
)
_DECLARED_TWICE_RE: Final = re.compile(r"^Cannot declare (?P<path>\(.*\)) twice$")
_IMMUTABLE_RE: Final = re.compile(r"^Cannot mutate immutable namespace (?P<path>\(.*\))$")
_DUPLICATE_INLINE_RE: Final = re.compile(r"^Duplicate inline table key (?P<key>.+)$")
_MAX_SHOWN: Final = 60


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML configuration file.

    Args:
        path: the file to read (UTF-8). It becomes ``Config.source`` as given, and the
            prefix of every problem.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8, is not valid TOML, or breaks
            the schema; ``problems`` lists every problem found, sorted by line.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ConfigError(
            [f"{source}: cannot read: {_os_reason(exc)} (pass the path of a TOML config file)"]
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [
                f"{source}:{line}: cannot read: byte 0x{data[exc.start]:02x} is not valid UTF-8 "
                "(save the file as UTF-8)"
            ]
        ) from exc
    # Editors on Windows may start UTF-8 files with a byte order mark; TOML has no use
    # for it and tomllib rejects it.
    return loads_config(text.removeprefix("\ufeff"), source=source)


def loads_config(text: str, *, source: str = "<string>") -> Config:
    """Validate a configuration given as TOML text.

    Args:
        text: the TOML document.
        source: the name to print in problems and store as ``Config.source``.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the text is not valid TOML or breaks the schema; ``problems`` lists
            every problem found as ``SOURCE:LINE: key.path: what is wrong (expected)``,
            sorted by line.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(text, str(exc), source)]) from exc
    return _build(data, source=source, lines=key_lines(text))


def config_from_dict(data: Mapping[str, Any], *, source: str = "<dict>") -> Config:
    """Validate a configuration given as nested mappings shaped like the TOML file.

    Args:
        data: ``{"supervisor": {...}, "defaults": {...}, "connections": {NAME: {...}}}``
            with the values TOML would give (strings for enums, lists for arrays).
            ``supervisor`` and ``backoff`` may also be given as their Structs.
        source: the name to print in problems and store as ``Config.source``.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the data breaks the schema; ``problems`` lists every problem found
            as ``SOURCE: key.path: what is wrong (expected)`` (there are no lines).
        TypeError: ``data`` is not a mapping.
    """
    if not isinstance(data, Mapping):
        raise TypeError(
            f"config_from_dict() takes a mapping shaped like the TOML file, not "
            f"{type(data).__name__}; pass a dict such as {{'connections': {{...}}}}"
        )
    return _build(data, source=source, lines=None)


class _Report:
    """Collects problems with their key paths and turns them into sorted lines."""

    def __init__(self, source: str, lines: dict[_Path, int] | None) -> None:
        self.source = source
        self.lines = lines
        self.problems: list[tuple[int | None, _Path, str]] = []

    def line_of(self, path: _Path) -> int | None:
        """The line of ``path``, else of its nearest written ancestor, else ``None``."""
        if self.lines is None:
            return None
        for depth in range(len(path), 0, -1):
            line = self.lines.get(path[:depth])
            if line is not None:
                return line
        return None

    def add(self, path: _Path, text: str, *, at: _Path | None = None) -> None:
        """Record ``text`` about ``path``, at the line of ``at`` (default ``path``)."""
        self.problems.append((self.line_of(path if at is None else at), path, text))

    def has_problems_under(self, prefix: _Path) -> bool:
        return any(path[: len(prefix)] == prefix for _, path, _ in self.problems)

    def messages(self) -> list[str]:
        ordered = sorted(self.problems, key=lambda p: (p[0] is None, p[0] or 0))
        out = []
        for line, path, text in ordered:
            where = self.source if line is None else f"{self.source}:{line}"
            out.append(f"{where}: {_dotted(path)}: {text}")
        return out


def _build(data: Mapping[str, Any], *, source: str, lines: dict[_Path, int] | None) -> Config:
    report = _Report(source, lines)
    for key, value in data.items():
        if key not in _TOP_LEVEL:
            what = "table" if isinstance(value, Mapping) else "key"
            report.add(
                (str(key),),
                f"unknown {what}{_did_you_mean(str(key), _TOP_LEVEL)} "
                f"(expected one of: {', '.join(_TOP_LEVEL)})",
            )

    supervisor: dict[str, Any] = {}
    table = _as_table(report, ("supervisor",), data.get("supervisor", {}), SupervisorSettings)
    if table is not None:
        supervisor = _check_table(report, ("supervisor",), table, SupervisorSettings)

    defaults_raw: Mapping[str, Any] = {}
    defaults: dict[str, Any] = {}
    table = _as_table(report, ("defaults",), data.get("defaults", {}), None)
    if table is not None:
        defaults_raw = table
        defaults = _check_table(
            report,
            ("defaults",),
            table,
            ConnectionConfig,
            special={
                "name": "unknown key (each connection's name comes from its "
                "[connections.NAME] header)"
            },
        )
        _check_semantics(report, ("defaults",), defaults)

    specs = _check_connections(report, data.get("connections", {}), defaults_raw, defaults)

    if report.problems:
        raise ConfigError(report.messages())
    try:
        return msgspec.convert(
            {"supervisor": supervisor, "connections": specs, "source": source}, type=Config
        )
    except msgspec.ValidationError as exc:  # pragma: no cover - the checks above cover it
        raise ConfigError(
            [f"{source}: {exc} (the loader missed this problem; please report it)"]
        ) from exc


def _check_connections(
    report: _Report,
    value: Any,
    defaults_raw: Mapping[str, Any],
    defaults: dict[str, Any],
) -> list[ConnectionConfig]:
    """Check every ``[connections.NAME]``; return the specs of the fully valid ones."""
    path: _Path = ("connections",)
    if isinstance(value, list):
        report.add(
            path,
            "written as [[connections]] (expected one [connections.NAME] table per connection)",
        )
        return []
    if not isinstance(value, Mapping):
        report.add(path, f"{_show(value)} is {_kind(value)} (expected a table)")
        return []
    if not value:
        report.add(path, "no connections (expected at least one [connections.NAME] table)")
        return []
    required = [f.name for f in msgspec.structs.fields(ConnectionConfig) if f.required]
    seen: dict[str, str] = {}
    specs: list[ConnectionConfig] = []
    for raw_name, raw_table in value.items():
        name = str(raw_name)
        conn: _Path = (*path, name)
        if not _NAME_RE.fullmatch(name):
            report.add(
                conn,
                f"{name!r} is not a valid name (expected letters, digits, '_' and '-', "
                "starting with a letter or digit)",
            )
        folded = name.casefold()
        if folded in seen:
            first: _Path = (*path, seen[folded])
            first_line = report.line_of(first)
            on_line = "" if first_line is None else f" on line {first_line}"
            report.add(
                conn,
                f"same name as {_dotted(first)}{on_line} (names must be unique, ignoring case)",
            )
        else:
            seen[folded] = name
        table = _as_table(report, conn, raw_table, None)
        if table is None:
            continue
        own = _check_table(
            report,
            conn,
            table,
            ConnectionConfig,
            special={
                "name": f"unknown key (the name comes from the table header [{_dotted(conn)}])"
            },
        )
        for key in required:
            if key != "name" and key not in table and key not in defaults_raw:
                report.add(
                    (*conn, key),
                    f"missing (expected {_describe_key(key)}; set it here or in [defaults])",
                )
        _check_semantics(report, conn, own)
        order_ok = _check_backoff_order(report, conn, own, defaults)
        if not order_ok or not _is_clean(report, conn, table):
            continue
        try:
            spec = _connection_spec(name, own, defaults)
        except msgspec.ValidationError as exc:  # pragma: no cover - checked key by key above
            report.add(conn, f"{exc} (the loader missed this problem; please report it)")
            continue
        for key, problem in ADAPTERS[spec.exchange].check(spec):
            report.add((*conn, key), problem)
        specs.append(spec)
    return specs


def _connection_spec(name: str, own: dict[str, Any], defaults: dict[str, Any]) -> ConnectionConfig:
    """Merge valid defaults under valid own values (``backoff`` key by key) and decode."""
    merged = {**defaults, **own, "name": name}
    if "backoff" in defaults and "backoff" in own:
        merged["backoff"] = {**defaults["backoff"], **own["backoff"]}
    return msgspec.convert(merged, type=ConnectionConfig)


def _is_clean(report: _Report, conn: _Path, table: Mapping[str, Any]) -> bool:
    """No problem in the connection itself nor in a default value it inherits."""
    if report.has_problems_under(conn):
        return False
    own_backoff = table.get("backoff")
    for _, path, _ in report.problems:
        if path[:1] != ("defaults",) or len(path) < 2:
            continue
        key = path[1]
        if key not in table:
            return False
        if (
            key == "backoff"
            and isinstance(own_backoff, Mapping)
            and (len(path) < 3 or path[2] not in own_backoff)
        ):
            return False
    return True


def _check_semantics(report: _Report, path: _Path, values: dict[str, Any]) -> None:
    """Check what types cannot say about the valid values of one table.

    The exchange must have an adapter and the URL must be a WebSocket URL without
    credentials. ``values`` are those written in a connection or in ``[defaults]``, so
    a bad default is reported once, at ``defaults.KEY``.
    """
    exchange = values.get("exchange")
    if exchange is not None and exchange not in ADAPTERS:
        report.add(
            (*path, "exchange"),
            f"unknown exchange {exchange!r}{_did_you_mean(exchange, ADAPTERS)} "
            f"(expected one of: {', '.join(ADAPTERS)})",
        )
    url = values.get("url")
    if url is not None:
        for problem in _url_problems(url):
            report.add((*path, "url"), problem)


def _check_backoff_order(
    report: _Report, conn: _Path, own: dict[str, Any], defaults: dict[str, Any]
) -> bool:
    """Check ``backoff.initial <= backoff.max`` for one connection, defaults merged in.

    A violation is reported where it was written: in the connection when it sets
    ``initial`` or ``max`` itself, else once in ``[defaults]`` however many connections
    inherit it.

    Returns:
        Whether the order is fine.
    """
    own_backoff: dict[str, Any] = own.get("backoff", {})
    default_backoff: dict[str, Any] = defaults.get("backoff", {})
    merged = {**default_backoff, **own_backoff}
    initial = merged.get("initial", DEFAULT_INITIAL)
    maximum = merged.get("max", DEFAULT_MAX)
    if initial <= maximum:
        return True
    in_own = "initial" in own_backoff or "max" in own_backoff
    table: _Path = (*conn, "backoff") if in_own else ("defaults", "backoff")
    written = own_backoff if in_own else default_backoff
    text = f"initial {initial!r} is greater than max {maximum!r} (expected initial <= max)"
    if not any(path == table and problem == text for _, path, problem in report.problems):
        key = "initial" if "initial" in written else "max"
        report.add(table, text, at=(*table, key))
    return False


def _url_problems(url: str) -> list[str]:
    """What is wrong with a WebSocket URL; the URL is shown with its secrets masked."""
    # The user name stays visible so the problem says whose credentials these are.
    shown = redact_url(url, keep_username=True)
    problems = []
    try:
        parts = urllib.parse.urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError:  # e.g. an unclosed "[" of an IPv6 address
        scheme, host = "", None
    if scheme not in ("ws", "wss") or not host:
        problems.append(f"{shown!r} is not a WebSocket URL (expected ws:// or wss:// with a host)")
    else:
        try:
            port_ok = parts.port != 0  # the property raises for a port beyond 65535
        except ValueError:
            port_ok = False
        if not port_ok:
            problems.append(f"{shown!r} has an invalid port (expected a port from 1 to 65535)")
    if _has_credentials(url):
        problems.append(
            f"{shown!r} has credentials in clear (expected a URL without user:password@; "
            "keep secrets out of the config)"
        )
    return problems


def _has_credentials(url: str) -> bool:
    """Whether ``url`` carries ``user:password@`` or ``token@`` (works on malformed URLs).

    User-info that is already masked (``***@``, ``user:***@``) holds no secret.
    """
    scheme_end = url.find("://")
    authority = url[0 if scheme_end < 0 else scheme_end + 3 :]
    for stop in "/?#":
        authority = authority.partition(stop)[0]
    userinfo, at, _ = authority.rpartition("@")
    return bool(at) and "***" not in (userinfo, userinfo.partition(":")[2])


def _as_table(
    report: _Report, path: _Path, value: Any, cls: type[msgspec.Struct] | None
) -> Mapping[str, Any] | None:
    """``value`` as a mapping (a Struct of ``cls`` becomes its fields), or report it."""
    if isinstance(value, Mapping):
        return value
    if cls is not None and isinstance(value, cls):
        return msgspec.structs.asdict(value)
    report.add(path, f"{_show(value)} is {_kind(value)} (expected a table)")
    return None


def _check_table(
    report: _Report,
    path: _Path,
    table: Mapping[str, Any],
    cls: type[msgspec.Struct],
    *,
    special: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Check each key of ``table`` against ``cls``; return the valid ones.

    Args:
        report: where problems go.
        path: the table's key path.
        table: the table as written.
        cls: the Struct it must fit (nested Struct fields are checked recursively).
        special: fields of ``cls`` that may not be written here, with the problem text.

    Returns:
        The keys whose values are valid, with values as written (nested tables filtered
        the same way), ready to be merged and converted.
    """
    special = special or {}
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = [f.name for f in msgspec.structs.fields(cls) if f.name not in special]
    valid: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = str(raw_key)
        key_path = (*path, key)
        if key in special:
            report.add(key_path, special[key])
            continue
        if key not in fields:
            report.add(
                key_path,
                f"unknown key{_did_you_mean(key, fields)} "
                f"(expected one of: {', '.join(sorted(fields))})",
            )
            continue
        field_type = hints[key]
        if isinstance(field_type, type) and issubclass(field_type, msgspec.Struct):
            nested = _as_table(report, key_path, value, field_type)
            if nested is not None:
                valid[key] = _check_table(report, key_path, nested, field_type)
            continue
        problem = _value_problem(key, value, field_type)
        if problem is None:
            valid[key] = value
        else:
            report.add(key_path, problem)
    return valid


def _value_problem(key: str, value: Any, field_type: Any) -> str | None:
    """Why ``value`` does not fit ``field_type`` (``None`` if it does), for humans."""
    try:
        msgspec.convert(value, type=field_type)
    except msgspec.ValidationError:
        pass
    else:
        return None
    expected = _describe(field_type)
    base = _base_type(field_type)
    if isinstance(base, type) and issubclass(base, enum.Enum):
        if isinstance(value, str):
            choices = [str(member.value) for member in base]
            return f"unknown {key} {value!r}{_did_you_mean(value, choices)} (expected {expected})"
    elif typing.get_origin(base) is tuple and isinstance(value, list | tuple):
        item_type = typing.get_args(base)[0]
        for index, item in enumerate(value):
            try:
                msgspec.convert(item, type=item_type)
            except msgspec.ValidationError:
                return f"{_show(item)} at index {index} is {_kind(item)} (expected {expected})"
    else:
        try:
            msgspec.convert(value, type=base)
        except msgspec.ValidationError:
            pass
        else:
            return f"{_show(value)} is out of range (expected {expected})"
    return f"{_show(value)} is {_kind(value)} (expected {expected})"


def _base_type(field_type: Any) -> Any:
    """The type without its ``Annotated`` constraints and without ``| None``."""
    if typing.get_origin(field_type) is Annotated:
        return _base_type(typing.get_args(field_type)[0])
    if isinstance(field_type, types.UnionType):
        arms = [arm for arm in typing.get_args(field_type) if arm is not type(None)]
        return _base_type(arms[0]) if len(arms) == 1 else field_type
    return field_type


def _describe(field_type: Any) -> str:
    """What a value of ``field_type`` looks like in TOML: ``a number > 0 and <= 60.0``."""
    if typing.get_origin(field_type) is Annotated:
        base, *extras = typing.get_args(field_type)
        bounds = [
            f"{symbol} {getattr(meta, attr)!r}"
            for meta in extras
            if isinstance(meta, msgspec.Meta)
            for attr, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
            if getattr(meta, attr) is not None
        ]
        return " ".join([_describe(base), " and ".join(bounds)]) if bounds else _describe(base)
    base = _base_type(field_type)
    if base is not field_type:
        return _describe(base)
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return "one of: " + ", ".join(str(member.value) for member in base)
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return "a table"
    if typing.get_origin(base) is tuple:
        return "an array of strings" if typing.get_args(base)[0] is str else "an array"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        base, str(base)
    )


def _describe_key(key: str) -> str:
    if key == "exchange":
        return "one of: " + ", ".join(ADAPTERS)
    return _describe(typing.get_type_hints(ConnectionConfig, include_extras=True)[key])


def _kind(value: Any) -> str:
    """``value``'s TOML kind with an article: ``a string``, ``an array``."""
    if value is None:
        return "not a value"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, datetime.datetime):
        return "a date-time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, datetime.time):
        return "a time"
    return f"a {type(value).__name__}"


def _show(value: Any) -> str:
    """``repr(value)`` cut to a readable length; dates and times as TOML writes them."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    lowered = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1)
    return f"; did you mean {lowered[close[0]]!r}?" if close else ""


def _dotted(path: _Path) -> str:
    """A key path as TOML writes it: ``connections."my conn".url``."""
    return ".".join(
        part if _BARE_KEY_RE.fullmatch(part) else json.dumps(part, ensure_ascii=False)
        for part in path
    )


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "it is a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


# -- TOML syntax errors ----------------------------------------------------------------


def _syntax_problem(text: str, error: str, source: str) -> str:
    """One problem line for a ``tomllib.TOMLDecodeError`` message."""
    match = _POSITION_RE.match(error)
    if match is None:  # pragma: no cover - every tomllib error carries a position
        return f"{source}: syntax: {error} (fix the TOML syntax)"
    message = match["message"]
    if match["line"] is None:
        line = max(1, len(text.splitlines()))
        where = "at the end of the file"
    else:
        line = int(match["line"])
        where = f"at column {match['column']}"
    specific = _duplicate_problem(text, message, line)
    if specific is not None:
        return f"{source}:{line}: {specific}"
    return f"{source}:{line}: syntax: {message} (fix the TOML syntax {where})"


def _duplicate_problem(text: str, message: str, line: int) -> str | None:
    """A clearer ``key.path: problem (expected)`` for tomllib's redefinition errors."""
    declared = _DECLARED_TWICE_RE.match(message)
    if declared is not None:
        path = _literal_path(declared["path"])
        if path is None:
            return None
        if len(path) == 2 and path[0] == "connections":
            return f"{_dotted(path)}: defined twice (each [connections.NAME] must be unique)"
        return f"{_dotted(path)}: defined twice (each table may appear once)"
    immutable = _IMMUTABLE_RE.match(message)
    if immutable is not None:
        path = _literal_path(immutable["path"])
        if path is None:
            return None
        return (
            f"{_dotted(path)}: extended after being written inline "
            "(expected all of an inline table's keys inside its { ... })"
        )
    duplicate_inline = _DUPLICATE_INLINE_RE.match(message)
    if message != "Cannot overwrite a value" and duplicate_inline is None:
        return None
    last_key = None if duplicate_inline is None else _literal_str(duplicate_inline["key"])
    entry = _repeated_entry(text, line, last_key)
    if entry is None:
        return None
    if entry.kind is Kind.HEADER:
        return f"{_dotted(entry.path)}: defined twice (each table may appear once)"
    return f"{_dotted(entry.path)}: set twice (each key may appear once per table)"


def _repeated_entry(text: str, line: int, last_key: str | None) -> Entry | None:
    """The first path written on ``line`` that was already written before it."""
    end = -1
    for _ in range(line):
        end = text.find("\n", end + 1)
        if end < 0:
            end = len(text)
            break
    seen: dict[_Path, Kind] = {}
    for entry in key_entries(text[:end]):
        before = seen.get(entry.path)
        if (
            entry.line == line
            and before is not None
            and (entry.kind is not Kind.DOTTED or before is Kind.KEY)
            and (last_key is None or entry.path[-1] == last_key)
        ):
            return entry
        seen.setdefault(entry.path, entry.kind)
    return None


def _literal_path(text: str) -> _Path | None:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, tuple) and all(isinstance(part, str) for part in value):
        return value
    return None


def _literal_str(text: str) -> str | None:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) else None
