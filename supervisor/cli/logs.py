"""The ``marketprism`` log formats: ``--log-format text`` (default) and ``--log-format json``.

Theory of operation. One formatter per format, used by every handler the command line
installs (``main.py``'s stderr handler and ``demo.py``'s rich handler), and each
formatted line goes through :func:`actors.redact.redact_text` as a whole: message,
arguments and exception text alike, so a proxy password or URL token inside an
exception raised deep in a library is masked like one in our own messages.

- ``text``: ``2026-11-29 18:28:10,980 INFO    okx: live: ...``, as before; the message's
  line breaks are shown as ``\\n`` (an exchange's error text cannot forge a log line),
  a traceback follows on its own lines.
- ``json``: one JSON object per line, keys ``ts`` (ISO 8601 UTC with milliseconds),
  ``level``, ``logger``, ``message``, then ``connection`` and ``exchange`` when the record
  is about one connection, then the record's other structured fields (``event``,
  ``reason``, ``delay``, ``attempt``, ...; see :mod:`actors.logs`), and ``exc`` (the
  traceback as one string) when there is one.

Which events are logged, and how repeated failures are summarized, is decided where they
happen: see :mod:`actors.logs`.
"""

from __future__ import annotations

import datetime
import logging
from typing import Final, Literal, final

import msgspec

from actors.redact import redact_text

__all__ = ["LOG_FORMATS", "JsonFormatter", "TextFormatter", "formatter", "is_json", "json_line"]

#: The values of ``--log-format``.
LOG_FORMATS: Final = ("text", "json")
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(message)s"
#: Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)
#: Keys the JSON object always has, in this order; ``extra=`` cannot replace them.
_RESERVED: Final = frozenset({"ts", "level", "logger", "message", "exc"})
_encoder: Final = msgspec.json.Encoder(enc_hook=str)


@final
class TextFormatter(logging.Formatter):
    """``--log-format text``: ``TIME LEVEL MESSAGE``, masked, one line per record (plus
    the traceback, if any).

    Args:
        fmt: the ``%``-style format; default ``%(asctime)s %(levelname)-7s %(message)s``
            (the rich handler of ``demo`` passes ``%(message)s``).
    """

    def __init__(self, fmt: str = _TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record).replace("\r", "\\r").replace("\n", "\\n")

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


@final
class JsonFormatter(logging.Formatter):
    """``--log-format json``: one JSON object per record (keys in the module docstring),
    every string in it masked."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        extra = record.__dict__
        for key in ("connection", "exchange"):
            if key in extra:
                fields[key] = _masked(extra[key])
        for key, value in extra.items():
            taken = key in _STANDARD or key in _RESERVED or key in fields
            if not taken and not key.startswith("_"):
                fields[key] = _masked(value)
        if record.exc_info:
            fields["exc"] = redact_text(self.formatException(record.exc_info))
        elif record.exc_text:
            fields["exc"] = redact_text(record.exc_text)
        if record.stack_info:
            fields["stack"] = redact_text(self.formatStack(record.stack_info))
        return _encoder.encode(fields).decode()


def formatter(log_format: Literal["text", "json"] | str) -> logging.Formatter:
    """The formatter of ``--log-format``.

    Args:
        log_format: ``text`` or ``json``.

    Returns:
        A :class:`TextFormatter` or a :class:`JsonFormatter`.

    Raises:
        ValueError: ``log_format`` is neither.
    """
    if log_format == "text":
        return TextFormatter()
    if log_format == "json":
        return JsonFormatter()
    raise ValueError(f"unknown log format {log_format!r} (expected one of: text, json)")


def is_json(logger: logging.Logger) -> bool:
    """Does ``logger`` write JSON lines?

    Args:
        logger: the ``marketprism`` logger, as :func:`~supervisor.cli.main.main` set it up.

    Returns:
        Whether its first handler has a :class:`JsonFormatter`.
    """
    return any(isinstance(handler.formatter, JsonFormatter) for handler in logger.handlers[:1])


def json_line(logger: logging.Logger, level: int, text: str) -> str:
    """``text`` as the JSON line a record of ``logger`` at ``level`` would be.

    For what the command prints on stderr outside a log call (a configuration problem,
    the summary at exit), so that in ``json`` mode every line of stderr parses.

    Args:
        logger: the logger named in the line.
        level: its level (``logging.ERROR``, ...).
        text: the line, masked like any other.

    Returns:
        One JSON object, without a newline.
    """
    record = logger.makeRecord(logger.name, level, "", 0, "%s", (text,), None)
    return JsonFormatter().format(record)


def _timestamp(created: float) -> str:
    moment = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _masked(value: object) -> object:
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_text(str(value))
