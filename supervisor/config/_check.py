"""Checking a table against a Struct key by key, and saying what is wrong in TOML words.

Theory of operation: the loader checks each value on its own against its field's
annotated type with ``msgspec.convert`` (:func:`check_table`), keeping the valid ones
and recording every problem in a :class:`Report` with its key path, so one run reports
every problem. When a value fails, :func:`value_problem` phrases the problem from the
type itself (bounds from ``msgspec.Meta``, enum choices, array items) rather than
copying msgspec's message, so problems read like the TOML the user wrote: ``0 is out of
range (expected an integer >= 1 and <= 1000000)``. Nothing here knows the schema; it
works for any Struct.
"""

from __future__ import annotations

import datetime
import difflib
import enum
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final

import msgspec

from actors.redact import redact_value
from supervisor.config._toml import dotted

__all__ = [
    "Path",
    "Report",
    "as_table",
    "base_type",
    "check_table",
    "describe",
    "did_you_mean",
    "kind",
    "show",
    "value_problem",
]

#: A key path from the document root: ``("connections", "a", "url")``.
Path = tuple[str, ...]

_MAX_SHOWN: Final = 60


def value_problem(key: str, value: Any, field_type: Any) -> str | None:
    """Why ``value`` does not fit ``field_type`` (``None`` if it does), for humans."""
    try:
        msgspec.convert(value, type=field_type)
    except msgspec.ValidationError:
        pass
    else:
        return None
    expected = describe(field_type)
    base = base_type(field_type)
    if isinstance(base, type) and issubclass(base, enum.Enum):
        if isinstance(value, str):
            choices = [str(member.value) for member in base]
            return (
                f"unknown {key} {show(value)}{did_you_mean(value, choices)} (expected {expected})"
            )
    elif typing.get_origin(base) is tuple and isinstance(value, list | tuple):
        item_type = typing.get_args(base)[0]
        for index, item in enumerate(value):
            try:
                msgspec.convert(item, type=item_type)
            except msgspec.ValidationError:
                return f"{show(item)} at index {index} is {kind(item)} (expected {expected})"
    else:
        try:
            msgspec.convert(value, type=base)
        except msgspec.ValidationError:
            pass
        else:
            return f"{show(value)} is out of range (expected {expected})"
    return f"{show(value)} is {kind(value)} (expected {expected})"


def base_type(field_type: Any) -> Any:
    """The type without its ``Annotated`` constraints and without ``| None``."""
    if typing.get_origin(field_type) is Annotated:
        return base_type(typing.get_args(field_type)[0])
    optional = _without_none(field_type)
    return field_type if optional is None else base_type(optional)


def _without_none(field_type: Any) -> Any:
    """``T`` for ``T | None`` (also ``Annotated[...] | None``, a ``typing.Union``), else None."""
    if isinstance(field_type, types.UnionType) or typing.get_origin(field_type) is typing.Union:
        arms = [arm for arm in typing.get_args(field_type) if arm is not type(None)]
        if len(arms) == 1:
            return arms[0]
    return None


def describe(field_type: Any) -> str:
    """What a value of ``field_type`` looks like in TOML: ``a number > 0 and <= 60.0``."""
    optional = _without_none(field_type)
    if optional is not None:
        # TOML has no null: an optional key is either absent or a value of this type.
        return describe(optional)
    if isinstance(field_type, types.UnionType) or typing.get_origin(field_type) is typing.Union:
        arms = [arm for arm in typing.get_args(field_type) if arm is not type(None)]
        return " or ".join(describe(arm) for arm in arms)
    if typing.get_origin(field_type) is Annotated:
        base, *extras = typing.get_args(field_type)
        bounds = [
            f"{symbol} {getattr(meta, attr)!r}"
            for meta in extras
            if isinstance(meta, msgspec.Meta)
            for attr, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
            if getattr(meta, attr) is not None
        ]
        return " ".join([describe(base), " and ".join(bounds)]) if bounds else describe(base)
    base = base_type(field_type)
    if base is not field_type:
        return describe(base)
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return "one of: " + ", ".join(str(member.value) for member in base)
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return "a table"
    if typing.get_origin(base) is tuple:
        return "an array of strings" if typing.get_args(base)[0] is str else "an array"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        base, str(base)
    )


def kind(value: Any) -> str:
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


def show(value: Any) -> str:
    """``repr(value)`` without secrets, cut to a readable length; dates and times as TOML
    writes them. Redaction (:func:`actors.redact.redact_value`, token-shaped strings
    too) comes before the cut, so a cut never leaves half a secret unmasked."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    text = repr(redact_value(value, mask_tokens=True))
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    lowered = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1)
    return f"; did you mean {lowered[close[0]]!r}?" if close else ""


class Report:
    """Collects problems with their key paths and turns them into sorted lines."""

    def __init__(self, source: str, lines: dict[Path, int] | None) -> None:
        self.source = source
        self.lines = lines
        self.problems: list[tuple[int | None, Path, str]] = []

    def line_of(self, path: Path) -> int | None:
        """The line of ``path``, else of its nearest written ancestor, else ``None``."""
        if self.lines is None:
            return None
        for depth in range(len(path), 0, -1):
            line = self.lines.get(path[:depth])
            if line is not None:
                return line
        return None

    def add(self, path: Path, text: str, *, at: Path | None = None) -> None:
        """Record ``text`` about ``path``, at the line of ``at`` (default ``path``)."""
        self.problems.append((self.line_of(path if at is None else at), path, text))

    def has_problems_under(self, prefix: Path) -> bool:
        return any(path[: len(prefix)] == prefix for _, path, _ in self.problems)

    def messages(self) -> list[str]:
        ordered = sorted(self.problems, key=lambda p: (p[0] is None, p[0] or 0))
        out = []
        for line, path, text in ordered:
            where = self.source if line is None else f"{self.source}:{line}"
            out.append(f"{where}: {dotted(path)}: {text}")
        return out


def as_table(
    report: Report, path: Path, value: Any, cls: type[msgspec.Struct] | None
) -> Mapping[str, Any] | None:
    """``value`` as a mapping (a Struct of ``cls`` becomes its fields), or report it."""
    if isinstance(value, Mapping):
        return value
    if cls is not None and isinstance(value, cls):
        return msgspec.structs.asdict(value)
    report.add(path, f"{show(value)} is {kind(value)} (expected a table)")
    return None


def check_table(
    report: Report,
    path: Path,
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
                f"unknown key{did_you_mean(key, fields)} "
                f"(expected one of: {', '.join(sorted(fields))})",
            )
            continue
        field_type = hints[key]
        if isinstance(field_type, type) and issubclass(field_type, msgspec.Struct):
            nested = as_table(report, key_path, value, field_type)
            if nested is not None:
                valid[key] = check_table(report, key_path, nested, field_type)
            continue
        problem = value_problem(key, value, field_type)
        if problem is None:
            valid[key] = value
        else:
            report.add(key_path, problem)
    return valid
