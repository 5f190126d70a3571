"""Loading configuration: TOML text, files or dicts -> a validated :class:`Config`.

Theory of operation: text nested deeper than ``_toml.MAX_NESTING`` levels is refused
first (one problem, with its line), because tomllib would exhaust the recursion limit
on it or take quadratic time. tomllib then turns the text into plain dicts (or a syntax
error, which becomes one problem, see :mod:`supervisor.config._toml`). Every value is
then checked on its own against its field's annotated type with ``msgspec.convert``, so
that one run reports every problem instead of the first (a deliberate choice,
docs/architecture.md decision 6); :mod:`supervisor.config._check` does that for any
Struct and phrases each problem from the type (bounds, choices) rather than copying
msgspec. Valid values are
kept, ``[defaults]`` are merged under each connection (``backoff`` key by key), the
semantic checks run (exchange, URL, names, backoff order, the adapter's own ``check``),
and only when nothing is wrong is the whole ``Config`` built once with
``msgspec.convert``. Lines come from ``_toml.key_lines``; a path with no line of its own
(a missing key) is reported at its nearest written ancestor, usually the table header.
"""

from __future__ import annotations

import os
import re
import ssl
import tomllib
import typing
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from actors import ConfigError
from actors.exchanges import ADAPTERS
from actors.net import is_local_host, split_ws_url
from actors.net.rest import VENUES as REST_VENUES
from actors.net.route import parse_proxy_setting
from actors.redact import MASK, redact_url, userinfo
from supervisor.config._check import (
    Path,
    Report,
    as_table,
    check_table,
    describe,
    did_you_mean,
    kind,
    show,
)
from supervisor.config._toml import dotted, key_lines, nesting_problem, syntax_problem
from supervisor.config.schema import Config, ConnectionConfig, SupervisorSettings
from supervisor.policy import DEFAULT_INITIAL, DEFAULT_MAX

__all__ = ["config_from_dict", "connection_config", "load_config", "loads_config"]

_TOP_LEVEL: Final = ("connections", "defaults", "supervisor")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


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
        ConfigError: the text is not valid TOML, nests too deep, or breaks the schema;
            ``problems`` lists every problem found as ``SOURCE:LINE: key.path: what is
            wrong (expected)``, sorted by line.
    """
    too_deep = nesting_problem(text, source)
    if too_deep is not None:
        raise ConfigError([too_deep])
    try:
        data = tomllib.loads(text)
        lines = key_lines(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([syntax_problem(text, str(exc), source)]) from exc
    except RecursionError as exc:  # pragma: no cover - nesting_problem stops this first
        # Only if the scanner read the nesting differently from tomllib: still one line.
        raise ConfigError(
            [
                f"{source}: syntax: nested too deep to parse (expected tables, arrays and "
                "inline tables a few levels deep; look for a runaway '[' or '{')"
            ]
        ) from exc
    return _build(data, source=source, lines=lines)


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
            as ``SOURCE: key.path: what is wrong (expected)`` (there are no lines), or is
            the one problem ``SOURCE: nested too deep ...``.
        TypeError: ``data`` is not a mapping.
    """
    if not isinstance(data, Mapping):
        raise TypeError(
            f"config_from_dict() takes a mapping shaped like the TOML file, not "
            f"{type(data).__name__}; pass a dict such as {{'connections': {{...}}}}"
        )
    try:
        return _build(data, source=source, lines=None)
    except RecursionError as exc:
        # TOML text is refused before this depth (nesting_problem); Python data is not.
        raise ConfigError(
            [
                f"{source}: nested too deep to check (expected tables, arrays and inline "
                "tables a few levels deep, shaped like the TOML file)"
            ]
        ) from exc


def connection_config(config: Config, name: str, table: Mapping[str, Any]) -> ConnectionConfig:
    """Validate one more connection for ``config``, as its ``[connections.NAME]`` table
    would be in the file: every check, under the file's ``[defaults]``, and a name that
    no connection of ``config`` has (ignoring case).

    Args:
        config: the configuration the connection joins.
        name: the new connection's name.
        table: the connection's keys, shaped like the TOML table.

    Raises:
        ConfigError: ``problems`` lists every problem, as
            ``add_connection: connections.NAME.key: what is wrong (expected)``.
    """
    report = Report("add_connection", None)
    taken = {spec.name.casefold(): spec.name for spec in config.connections}
    if not isinstance(name, str):
        raise ConfigError([f"add_connection: the name {name!r} is not a string"])
    if name.casefold() in taken:
        report.add(
            ("connections", name),
            f"same name as the running connection {taken[name.casefold()]!r} (names must "
            "be unique, ignoring case; remove_connection() it first to replace it)",
        )
    specs = _check_connections(report, {name: table}, config.defaults, config.defaults)
    if report.problems:
        raise ConfigError(report.messages())
    return specs[0]


def _build(data: Mapping[str, Any], *, source: str, lines: dict[Path, int] | None) -> Config:
    report = Report(source, lines)
    for key, value in data.items():
        if key not in _TOP_LEVEL:
            what = "table" if isinstance(value, Mapping) else "key"
            report.add(
                (str(key),),
                f"unknown {what}{did_you_mean(str(key), _TOP_LEVEL)} "
                f"(expected one of: {', '.join(_TOP_LEVEL)})",
            )

    supervisor: dict[str, Any] = {}
    table = as_table(report, ("supervisor",), data.get("supervisor", {}), SupervisorSettings)
    if table is not None:
        supervisor = check_table(report, ("supervisor",), table, SupervisorSettings)

    defaults_raw: Mapping[str, Any] = {}
    defaults: dict[str, Any] = {}
    table = as_table(report, ("defaults",), data.get("defaults", {}), None)
    if table is not None:
        defaults_raw = table
        defaults = check_table(
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
            {
                "supervisor": supervisor,
                "connections": specs,
                "default_proxy": defaults.get("proxy"),
                "source": source,
                "defaults": {k: v for k, v in defaults.items() if k != "proxy"},
            },
            type=Config,
        )
    except msgspec.ValidationError as exc:  # pragma: no cover - the checks above cover it
        raise ConfigError(
            [f"{source}: {exc} (the loader missed this problem; please report it)"]
        ) from exc


def _check_connections(
    report: Report,
    value: Any,
    defaults_raw: Mapping[str, Any],
    defaults: dict[str, Any],
) -> list[ConnectionConfig]:
    """Check every ``[connections.NAME]``; return the specs of the fully valid ones."""
    path: Path = ("connections",)
    if isinstance(value, list):
        report.add(
            path,
            "written as [[connections]] (expected one [connections.NAME] table per connection)",
        )
        return []
    if not isinstance(value, Mapping):
        report.add(path, f"{show(value)} is {kind(value)} (expected a table)")
        return []
    if not value:
        report.add(path, "no connections (expected at least one [connections.NAME] table)")
        return []
    required = [f.name for f in msgspec.structs.fields(ConnectionConfig) if f.required]
    seen: dict[str, str] = {}
    specs: list[ConnectionConfig] = []
    for raw_name, raw_table in value.items():
        name = str(raw_name)
        conn: Path = (*path, name)
        if not _NAME_RE.fullmatch(name):
            report.add(
                conn,
                f"{name!r} is not a valid name (expected letters, digits, '_' and '-', "
                "starting with a letter or digit)",
            )
        folded = name.casefold()
        if folded in seen:
            first: Path = (*path, seen[folded])
            first_line = report.line_of(first)
            on_line = "" if first_line is None else f" on line {first_line}"
            report.add(
                conn,
                f"same name as {dotted(first)}{on_line} (names must be unique, ignoring case)",
            )
        else:
            seen[folded] = name
        table = as_table(report, conn, raw_table, None)
        if table is None:
            continue
        own = check_table(
            report,
            conn,
            table,
            ConnectionConfig,
            special={
                "name": f"unknown key (the name comes from the table header [{dotted(conn)}])"
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
        _check_plaintext(report, conn, own, spec)
        _check_rest(report, conn, own, spec)
        _check_books(report, conn, own, spec)
        for key, problem in ADAPTERS[spec.exchange].check(spec):
            report.add((*conn, key), problem)
        specs.append(spec)
    return specs


#: Tables of a connection that are merged with ``[defaults]`` key by key.
_MERGED_TABLES: Final = ("backoff", "rest", "tls")


def _connection_spec(name: str, own: dict[str, Any], defaults: dict[str, Any]) -> ConnectionConfig:
    """Merge valid defaults under valid own values (tables key by key) and decode.

    ``[defaults] proxy`` is not merged: it stays in ``Config.default_proxy`` so the
    route can tell a connection's own proxy from the default one.
    """
    inherited = {key: value for key, value in defaults.items() if key != "proxy"}
    merged = {**inherited, **own, "name": name}
    for table in _MERGED_TABLES:
        if table in defaults and table in own:
            merged[table] = {**defaults[table], **own[table]}
    return msgspec.convert(merged, type=ConnectionConfig)


def _is_clean(report: Report, conn: Path, table: Mapping[str, Any]) -> bool:
    """No problem in the connection itself nor in a default value it inherits."""
    if report.has_problems_under(conn):
        return False
    for _, path, _ in report.problems:
        if path[:1] != ("defaults",) or len(path) < 2:
            continue
        key = path[1]
        if key not in table:
            return False
        own_table = table.get(key)
        if (
            key in _MERGED_TABLES
            and isinstance(own_table, Mapping)
            and (len(path) < 3 or path[2] not in own_table)
        ):
            return False
    return True


def _check_semantics(report: Report, path: Path, values: dict[str, Any]) -> None:
    """Check what types cannot say about the valid values of one table.

    The exchange must have an adapter and the URL must be a WebSocket URL without
    credentials. ``values`` are those written in a connection or in ``[defaults]``, so
    a bad default is reported once, at ``defaults.KEY``.
    """
    exchange = values.get("exchange")
    if exchange is not None and exchange not in ADAPTERS:
        report.add(
            (*path, "exchange"),
            f"unknown exchange {show(exchange)}{did_you_mean(exchange, ADAPTERS)} "
            f"(expected one of: {', '.join(ADAPTERS)})",
        )
    url = values.get("url")
    if url is not None:
        for problem in _url_problems(url):
            report.add((*path, "url"), problem)
    proxy = values.get("proxy")
    if proxy is not None:
        try:
            parse_proxy_setting(proxy)
        except ValueError as exc:
            report.add((*path, "proxy"), str(exc))
    tls = values.get("tls")
    if isinstance(tls, Mapping):
        for key, problem in _tls_problems(tls, in_defaults=path == ("defaults",)):
            report.add((*path, "tls", key), problem)
    rest = values.get("rest")
    if isinstance(rest, Mapping):
        base_url = rest.get("base_url")
        if base_url is not None:
            for problem in _rest_url_problems(base_url):
                report.add((*path, "rest", "base_url"), problem)
        venue = rest.get("venue")
        if venue is not None and venue not in REST_VENUES:
            report.add(
                (*path, "rest", "venue"),
                f"unknown REST venue {show(venue)}{did_you_mean(venue, REST_VENUES)} "
                f"(expected one of: {', '.join(REST_VENUES)})",
            )


def _rest_url_problems(url: str) -> list[str]:
    """What is wrong with a REST ``base_url``; the URL is shown with its secrets masked."""
    shown = redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
        port_ok = parts.port != 0  # the property raises for a port beyond 65535
    except ValueError:
        scheme, host, port_ok = "", None, False
    if scheme not in ("http", "https") or not host:
        return [f"{shown!r} is not a REST base URL (expected http:// or https:// with a host)"]
    problems = []
    if not port_ok:
        problems.append(f"{shown!r} has an invalid port (expected a port from 1 to 65535)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        problems.append(
            f"{shown!r} has a path, query or fragment (expected only the origin, "
            f"{scheme}://host[:port]; the adapter adds each endpoint's path)"
        )
    if _has_credentials(url):
        problems.append(
            f"{shown!r} has credentials in clear (expected a URL without user:password@; "
            "keep secrets out of the config)"
        )
    return problems


def _check_rest(report: Report, conn: Path, own: dict[str, Any], spec: ConnectionConfig) -> None:
    """The ``rest`` table once defaults are merged: plaintext, and a venue for ``raw``."""
    rest = spec.rest
    own_rest: Mapping[str, Any] = own.get("rest", {})

    def where(key: str) -> Path:
        at: Path = (*conn, "rest", key) if key in own_rest else ("defaults", "rest", key)
        return at if report.line_of(at) is not None else conn

    if rest.base_url is None:
        return
    if ADAPTERS[spec.exchange].rest_venue is None and rest.venue is None:
        report.add(
            (*conn, "rest", "venue"),
            f"missing (expected one of: {', '.join(REST_VENUES)}, whose REST limits apply "
            f"to rest.base_url; the {spec.exchange} adapter has none of its own)",
            at=where("base_url"),
        )
    if spec.allow_plaintext:
        return
    parts = urllib.parse.urlsplit(rest.base_url)
    host = parts.hostname or ""
    if parts.scheme.lower() != "http" or is_local_host(host):
        return
    report.add(
        (*conn, "rest", "base_url"),
        f"{redact_url(rest.base_url)!r} is plaintext to {host!r}, a host off this machine "
        "(expected https://; or set allow_plaintext = true to accept that anyone on the "
        "route can read and change the answers)",
        at=where("base_url"),
    )


def _check_books(report: Report, conn: Path, own: dict[str, Any], spec: ConnectionConfig) -> None:
    """``book_top`` and ``book_interval`` only mean something with a local book."""

    def where(key: str) -> Path:
        at: Path = (*conn, key) if key in own else ("defaults", key)
        return at if report.line_of(at) is not None else conn

    if spec.book_top is not None and not spec.book_sync:
        report.add(
            (*conn, "book_top"),
            "needs book_sync = true (the tops are read from the local book; remove "
            "book_sync = false, or book_top)",
            at=where("book_top"),
        )
    if spec.book_interval and spec.book_top is None:
        report.add(
            (*conn, "book_interval"),
            "applies only with book_top (set book_top = N for the N best levels, or "
            "remove book_interval)",
            at=where("book_interval"),
        )


def _check_plaintext(
    report: Report, conn: Path, own: dict[str, Any], spec: ConnectionConfig
) -> None:
    """Refuse ``ws://`` to a host off this machine unless ``allow_plaintext`` (audit L6)."""
    if spec.url is None or spec.allow_plaintext:
        return
    parts, host, _, _ = split_ws_url(spec.url)
    if parts.scheme != "ws" or is_local_host(host):
        return
    at: Path = (*conn, "url") if "url" in own else ("defaults", "url")
    report.add(
        (*conn, "url"),
        f"{redact_url(spec.url, keep_username=True)!r} is plaintext to {host!r}, a host off "
        "this machine (expected wss://; or set allow_plaintext = true to accept that "
        "anyone on the route can read and change the feed)",
        at=at if report.line_of(at) is not None else conn,
    )


def _tls_problems(tls: Mapping[str, Any], *, in_defaults: bool) -> list[tuple[str, str]]:
    """What is wrong with a ``tls`` table's valid values: (key, problem) pairs.

    The files are loaded the way the connection will load them, so a file that is
    missing, unreadable or not PEM is reported here rather than at the first connect.
    """
    problems: list[tuple[str, str]] = []
    if in_defaults and "verify" in tls:
        problems.append(
            (
                "verify",
                "not allowed in [defaults] (expected it per connection: switching "
                "verification off must be a decision about one connection)",
            )
        )
    ca_file, cert_file, key_file = tls.get("ca_file"), tls.get("cert_file"), tls.get("key_file")
    context = ssl.create_default_context()
    if ca_file is not None:
        problem = _unreadable(ca_file)
        if problem is None:
            try:
                context.load_verify_locations(cafile=ca_file)
            except ssl.SSLError as exc:
                problem = f"{ca_file!r} holds no usable certificate: {_ssl_reason(exc)}"
        if problem is not None:
            problems.append(("ca_file", f"{problem} (expected a PEM file of CA certificates)"))
    if key_file is not None and cert_file is None:
        problems.append(("key_file", "set without cert_file (expected both, or neither)"))
    if cert_file is not None:
        cert_problem = _unreadable(cert_file)
        key_problem = None if key_file is None else _unreadable(key_file)
        if cert_problem is not None:
            problems.append(("cert_file", f"{cert_problem} (expected a PEM client certificate)"))
        if key_problem is not None:
            problems.append(("key_file", f"{key_problem} (expected a PEM private key)"))
        if cert_problem is None and key_problem is None:
            try:
                context.load_cert_chain(cert_file, key_file)
            except ssl.SSLError as exc:
                files = repr(cert_file) if key_file is None else f"{cert_file!r} and {key_file!r}"
                problems.append(
                    (
                        "cert_file",
                        f"{files} are not a usable certificate and key: {_ssl_reason(exc)} "
                        "(expected a PEM certificate and its private key)",
                    )
                )
    server_hostname = tls.get("server_hostname")
    if server_hostname is not None and (not server_hostname or "/" in server_hostname):
        problems.append(
            (
                "server_hostname",
                f"{server_hostname!r} is not a host name (expected e.g. 'stream.binance.com')",
            )
        )
    return problems


def _unreadable(path: str) -> str | None:
    """Why ``path`` cannot be read, or None."""
    try:
        with open(path, "rb") as file:
            file.read(1)
    except OSError as exc:
        return f"cannot read {path!r}: {_os_reason(exc)}"
    return None


def _ssl_reason(exc: ssl.SSLError) -> str:
    if not exc.reason:  # OpenSSL's bare "PEM lib": nothing PEM-shaped, or a mismatch
        return "not PEM, or the key does not belong to the certificate"
    return str(exc.reason).lower().replace("_", " ")


def _check_backoff_order(
    report: Report, conn: Path, own: dict[str, Any], defaults: dict[str, Any]
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
    table: Path = (*conn, "backoff") if in_own else ("defaults", "backoff")
    written = own_backoff if in_own else default_backoff
    text = f"initial {initial!r} is greater than max {maximum!r} (expected initial <= max)"
    if not any(path == table and problem == text for _, path, problem in report.problems):
        key = "initial" if "initial" in written else "max"
        report.add(table, text, at=(*table, key))
    return False


def _url_problems(url: str) -> list[str]:
    """What is wrong with a WebSocket URL; the URL is shown with its secrets masked."""
    # User-info masked whole: an exchange URL's user name is often the API key (M7).
    shown = redact_url(url)
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
    info = userinfo(url)
    return info is not None and MASK not in (info, info.partition(":")[2])


def _describe_key(key: str) -> str:
    if key == "exchange":
        return "one of: " + ", ".join(ADAPTERS)
    return describe(typing.get_type_hints(ConnectionConfig, include_extras=True)[key])


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "it is a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)
