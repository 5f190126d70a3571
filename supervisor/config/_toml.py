"""TOML for config problems: where each header and key is written, and syntax errors.

Three jobs, all about turning TOML into ``FILE:LINE: key: problem`` lines: mapping key
paths to lines (below), refusing nesting too deep to parse safely (:func:`nesting_problem`),
and rewording tomllib's syntax errors (at the end).

Positions. Theory of operation: :mod:`tomllib` returns plain dicts and forgets positions, but
configuration errors must name the line to fix. This module re-reads the text with a
small scanner that only understands what matters for positions: headers, keys (bare,
quoted, dotted), and the extent of values (strings of all four kinds, arrays, inline
tables, comments), so that an ``=``, ``#``, ``[`` or ``]`` inside a string or a
multi-line array is never mistaken for structure. It does not validate: the text is
expected to have passed :func:`tomllib.loads` already (or, for diagnosing a tomllib
error, to be the part of the document before the error). On text it does not
understand it stops early or skips ahead; it never raises.

Depth. tomllib parses arrays and inline tables recursively (about three Python frames
a level), so about 400 nested ``[`` exhaust Python's recursion limit and raise
``RecursionError`` (audit L4); and it takes time quadratic in the parts of a dotted key
or header (a key of 20,000 parts takes seconds, one of 100,000 minutes). So
:func:`nesting_problem` runs the same scanner *before* tomllib, counting levels: each
table of a header or dotted key, each array and inline table is one level, e.g.
``[connections.x]`` then ``subscribe = ["a"]`` puts the array on level 3. Past
:data:`MAX_NESTING` it stops at once, so it too stays shallow and linear.

Paths are tuples of decoded key parts: ``[connections."my conn"]`` followed by
``backoff.initial = 1`` gives ``("connections", "my conn")`` and
``("connections", "my conn", "backoff", "initial")``, plus the implied
``("connections", "my conn", "backoff")`` on the line of the dotted key. Keys inside
``[[array.of.tables]]`` and inside arrays of inline tables are not recorded: they have
no dotted path.
"""

from __future__ import annotations

import ast
import enum
import json
import re
import tomllib
from typing import Final, NamedTuple

__all__ = [
    "MAX_NESTING",
    "Entry",
    "Kind",
    "dotted",
    "key_entries",
    "key_lines",
    "nesting_problem",
    "syntax_problem",
]

#: The deepest nesting a config may have, in levels (see the module docstring). A valid
#: config needs 4 (``connections.NAME.backoff.KEY``); serde_json stops at 128 levels and
#: toml_edit at 80 for the same reason. 64 keeps tomllib (about 3 frames a level) and
#: everything after it far from Python's default recursion limit of 1000, whatever the
#: caller's own stack depth.
MAX_NESTING: Final = 64

_BARE_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_POSITION_RE: Final = re.compile(
    r"^(?P<message>.*) \(at (?:line (?P<line>\d+), column (?P<column>\d+)|end of document)\)$",
    re.DOTALL,
)
_DECLARED_TWICE_RE: Final = re.compile(r"^Cannot declare (?P<path>\(.*\)) twice$")
_IMMUTABLE_RE: Final = re.compile(r"^Cannot mutate immutable namespace (?P<path>\(.*\))$")
_DUPLICATE_INLINE_RE: Final = re.compile(r"^Duplicate inline table key (?P<key>.+)$")

_BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# Characters that end a bare value (number, boolean, date-time) inside a document.
_VALUE_END = frozenset(",]}#\n")


class Kind(enum.Enum):
    """How a path came to be written."""

    #: A ``[table]`` or ``[[array-of-tables]]`` header.
    HEADER = "header"
    #: The full key of a ``key = value`` pair (also inside an inline table).
    KEY = "key"
    #: A table implied by a dotted key: ``a`` in ``a.b = 1``.
    DOTTED = "dotted"


class Entry(NamedTuple):
    """One path written in the document.

    Attributes:
        path: the decoded key parts from the document root.
        line: the 1-based line where the path's last key part is written.
        kind: whether it is a header, a key, or a table implied by a dotted key.
    """

    path: tuple[str, ...]
    line: int
    kind: Kind


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map every table header and key in ``text`` to the line where it first appears.

    Args:
        text: a TOML document that :func:`tomllib.loads` accepts.

    Returns:
        ``{path: line}`` with 1-based lines, in document order; a path written twice
        (possible only for implied tables) keeps its first line.
    """
    lines: dict[tuple[str, ...], int] = {}
    for entry in key_entries(text):
        lines.setdefault(entry.path, entry.line)
    return lines


def key_entries(text: str) -> list[Entry]:
    """List every table header and key in ``text`` in document order, repeats included.

    Args:
        text: a TOML document, or the start of one (used to diagnose tomllib errors such
            as a key written twice).

    Returns:
        One :class:`Entry` per header, key and dotted-key prefix, in document order.
    """
    scanner = _Scanner(text)
    scanner.run()
    return scanner.entries


def nesting_problem(text: str, source: str) -> str | None:
    """One problem line if ``text`` nests deeper than :data:`MAX_NESTING` levels.

    Meant to run before :func:`tomllib.loads`, on any text: it reads no further than the
    first place that is too deep, never recurses deeper than the limit, and takes time
    linear in the text.

    Args:
        text: a TOML document, valid or not.
        source: the file name to put in front of the problem.

    Returns:
        ``SOURCE:LINE: key.path: nested deeper than ...`` naming the key whose value is
        too deep (``syntax`` instead where there is no dotted path: inside an array of
        tables, or a key or header that is itself too long), or None if the depth is fine.
    """
    scanner = _Scanner(text, limit=MAX_NESTING)
    try:
        scanner.run()
    except _TooDeep as exc:
        path = scanner.statement
        where = "syntax" if path is None or len(path) > MAX_NESTING else dotted(path)
        return (
            f"{source}:{exc.line}: {where}: nested deeper than {MAX_NESTING} levels "
            "(expected tables, arrays and inline tables a few levels deep; look for a "
            "runaway '[', '{' or dotted key)"
        )
    return None


class _TooDeep(Exception):
    """The scanner went past its nesting limit on ``line``."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _Scanner:
    """A forgiving single-pass reader of TOML structure (see the module docstring).

    With a ``limit``, raises :class:`_TooDeep` at the first level past it.
    """

    def __init__(self, text: str, *, limit: int | None = None) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.entries: list[Entry] = []
        # None while inside [[array.of.tables]]: its keys have no dotted path.
        self.table: tuple[str, ...] | None = ()
        # The level of the current table: 0 at the root (see "Depth" above).
        self.level = 0
        self.limit = limit
        # The header or key/value statement being read, when it has a dotted path.
        self.statement: tuple[str, ...] | None = None

    # -- low level -----------------------------------------------------------------

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def advance(self, count: int = 1) -> None:
        end = min(self.pos + count, len(self.text))
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end

    def skip_blanks(self) -> None:
        """Skip spaces and tabs on the current line."""
        while self.peek() in (" ", "\t"):
            self.pos += 1

    def skip_comment(self) -> None:
        if self.peek() == "#":
            end = self.text.find("\n", self.pos)
            self.pos = len(self.text) if end < 0 else end

    def skip_space(self) -> None:
        """Skip whitespace, newlines and comments (between statements or array items)."""
        while self.pos < len(self.text):
            char = self.peek()
            if char in (" ", "\t", "\r", "\n"):
                self.advance()
            elif char == "#":
                self.skip_comment()
            else:
                return

    def skip_to_line_end(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def record(self, path: tuple[str, ...], line: int, kind: Kind) -> None:
        self.entries.append(Entry(path, line, kind))

    def check_level(self, level: int) -> None:
        """Raise :class:`_TooDeep` if ``level`` is past the limit."""
        if self.limit is not None and level > self.limit:
            raise _TooDeep(self.line)

    # -- statements ----------------------------------------------------------------

    def run(self) -> None:
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                return
            start = self.pos
            if self.peek() == "[":
                self.header()
            else:
                self.key_value(self.table, self.level, statement=True)
            if self.pos == start:  # not understood: give up on this line, keep going
                self.skip_to_line_end()
                if self.pos == start:
                    self.advance()

    def header(self) -> None:
        array = self.peek(1) == "["
        self.advance(2 if array else 1)
        self.skip_blanks()
        line = self.line
        path = self.key()
        self.statement = path
        # [[a.b]]: the array b holds tables, one level deeper.
        self.level = len(path) + (1 if array else 0)
        self.check_level(self.level)
        self.skip_blanks()
        self.advance(2 if array else 1)  # "]]" or "]"
        if path:
            self.record(path, line, Kind.HEADER)
        self.table = None if array else path
        self.skip_blanks()
        self.skip_comment()

    def key_value(
        self, prefix: tuple[str, ...] | None, level: int, *, statement: bool = False
    ) -> None:
        """Read ``key = value`` in a table on ``level``, whose path is ``prefix``."""
        line = self.line
        key = self.key()
        if not key:
            return
        if statement:
            self.statement = None if prefix is None else prefix + key
        # The implied tables of a dotted key, before recording its prefixes (quadratic).
        self.check_level(level + len(key) - 1)
        if prefix is not None:
            for depth in range(1, len(key)):
                self.record(prefix + key[:depth], line, Kind.DOTTED)
            self.record(prefix + key, line, Kind.KEY)
        self.skip_blanks()
        if self.peek() != "=":
            return
        self.advance()
        self.skip_blanks()
        self.value(None if prefix is None else prefix + key, level + len(key))

    def key(self) -> tuple[str, ...]:
        """Read a (dotted) key; return its decoded parts, empty if there is none here."""
        parts: list[str] = []
        while True:
            self.skip_blanks()
            part = self.key_part()
            if part is None:
                return tuple(parts)
            parts.append(part)
            self.skip_blanks()
            if self.peek() != ".":
                return tuple(parts)
            self.advance()

    def key_part(self) -> str | None:
        char = self.peek()
        if char in ('"', "'"):
            start = self.pos
            self.single_line_string(char)
            return _decode_quoted(self.text[start : self.pos])
        start = self.pos
        while self.peek() and self.peek() in _BARE_KEY_CHARS:
            self.pos += 1
        return self.text[start : self.pos] if self.pos > start else None

    # -- values --------------------------------------------------------------------

    def value(self, path: tuple[str, ...] | None, level: int) -> None:
        """Skip one value, an array or inline table being on ``level``; record the keys
        of an inline table under ``path``."""
        char = self.peek()
        if char in ('"', "'"):
            if self.text.startswith(char * 3, self.pos):
                self.multi_line_string(char)
            else:
                self.single_line_string(char)
        elif char == "[":
            self.check_level(level)
            self.array(level)
        elif char == "{":
            self.check_level(level)
            self.inline_table(path, level)
        else:
            while self.peek() and self.peek() not in _VALUE_END:
                self.pos += 1

    def single_line_string(self, quote: str) -> None:
        self.advance()
        while self.peek() and self.peek() not in (quote, "\n"):
            self.advance(2 if quote == '"' and self.peek() == "\\" else 1)
        if self.peek() == quote:
            self.advance()

    def multi_line_string(self, quote: str) -> None:
        self.advance(3)
        while self.pos < len(self.text):
            if quote == '"' and self.peek() == "\\":
                self.advance(2)
            elif self.text.startswith(quote * 3, self.pos):
                self.advance(3)
                # Up to two more quotes belong to the content: '''a''''' is "a''".
                for _ in range(2):
                    if self.peek() == quote:
                        self.advance()
                return
            else:
                self.advance()

    def array(self, level: int) -> None:
        self.advance()
        while True:
            self.skip_space()
            if self.peek() in ("]", ""):
                self.advance()
                return
            start = self.pos
            self.value(None, level + 1)
            self.skip_space()
            if self.peek() == ",":
                self.advance()
            elif self.pos == start:  # not understood: stop rather than loop
                return

    def inline_table(self, path: tuple[str, ...] | None, level: int) -> None:
        self.advance()
        while True:
            self.skip_space()
            if self.peek() in ("}", ""):
                self.advance()
                return
            start = self.pos
            self.key_value(path, level)
            self.skip_space()
            if self.peek() == ",":
                self.advance()
            elif self.pos == start:
                return


def _decode_quoted(token: str) -> str:
    """Decode a quoted key exactly as TOML does (escapes included) by asking tomllib."""
    try:
        return next(iter(tomllib.loads(f"{token} = 0")))
    except (tomllib.TOMLDecodeError, StopIteration):
        return token.strip("\"'")


# -- tomllib's syntax errors, reworded ------------------------------------------------
#
# tomllib reports positions only inside its message text ("... (at line 3, column 7)")
# and phrases redefinitions in terms of its internals. The regexes above match that text;
# when CPython rewords a message they stop matching and the message is shown as tomllib
# wrote it, still with file and line (tests/test_config.py pins the wording we produce).


def syntax_problem(text: str, error: str, source: str) -> str:
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
            return f"{dotted(path)}: defined twice (each [connections.NAME] must be unique)"
        return f"{dotted(path)}: defined twice (each table may appear once)"
    immutable = _IMMUTABLE_RE.match(message)
    if immutable is not None:
        path = _literal_path(immutable["path"])
        if path is None:
            return None
        return (
            f"{dotted(path)}: extended after being written inline "
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
        return f"{dotted(entry.path)}: defined twice (each table may appear once)"
    return f"{dotted(entry.path)}: set twice (each key may appear once per table)"


def _repeated_entry(text: str, line: int, last_key: str | None) -> Entry | None:
    """The first path written on ``line`` that was already written before it."""
    end = -1
    for _ in range(line):
        end = text.find("\n", end + 1)
        if end < 0:
            end = len(text)
            break
    seen: dict[tuple[str, ...], Kind] = {}
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


def _literal_path(text: str) -> tuple[str, ...] | None:
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


def dotted(path: tuple[str, ...]) -> str:
    """A key path as TOML writes it: ``connections."my conn".url``."""
    return ".".join(
        part if _BARE_KEY_RE.fullmatch(part) else json.dumps(part, ensure_ascii=False)
        for part in path
    )
