"""What the log says about a connection: its fields, and which of its failures get a line.

Theory of operation. Every log record about one connection carries two ``extra``
fields, ``connection`` (the ``NAME`` of ``[connections.NAME]``) and ``exchange`` (its
adapter), built by :func:`log_fields` and nowhere else, so that a JSON consumer can
filter on them; records not about one connection (``stopping: ...``) carry neither.
Structured fields (``event``, ``reason``, ``delay``, ``attempt``, ...) ride along in the
same dict; the JSON format prints each as a key of its own, the text format shows only
the message, which already says the same in words.

Which events produce a line, once each (the rest of the state changes are in stats):

- ``live`` (info, ``actors/connection.py``): the subscriptions are confirmed; the line
  names the URL, the seconds from the start of the connect to the confirmation, and,
  after failures, how many and over how long ("live again after 14 failures in 75 s");
- ``session_ended`` (warning; ``crashed``, error with the traceback, for a bug in our
  code), in ``supervisor/tree.py``: why, as the full error text and as the stable reason
  class of ``disconnect_reason`` ("connect", "reset", "close 1001", "tls", "proxy", ...),
  and in the same line what happens next (reconnecting in D s, attempt N; giving up in
  S s; stopped for good);
- ``failures_summarized`` (warning, tree): see :class:`FailureLog`;
- ``failed`` (a configuration-shaped failure repeated), ``gave_up``, ``stopped``,
  ``restart_requested``, ``group_restart`` (tree), and the rarer lines of the actors
  (a handover, a REST call failing and working again, a refused subscription, the first
  malformed frame of a kind, a sequence gap), each said once where it happens.

The connect and the closing handshake log nothing at info: a connect is either followed
by ``live`` or by ``session_ended`` with its error.
"""

from __future__ import annotations

from typing import Final, NamedTuple, final

__all__ = ["DEFAULT_SUMMARY_WINDOW", "FailureLog", "Recovery", "Summary", "Verdict", "log_fields"]

#: Seconds over which repeated failures of one kind are counted into one line.
DEFAULT_SUMMARY_WINDOW: Final = 60.0


def log_fields(connection: str, exchange: str, /, **fields: object) -> dict[str, object]:
    """The ``extra=`` of a log record about one connection.

    Args:
        connection: the connection's name.
        exchange: its adapter (``binance``, ``okx``, ``raw``, ...).
        fields: structured fields for the JSON format (``event="live"``, ``delay=1.5``);
            values are ``str``, ``int``, ``float``, ``bool`` or ``None``.

    Returns:
        ``{"connection": connection, "exchange": exchange, **fields}``.
    """
    return {"connection": connection, "exchange": exchange, **fields}


class Summary(NamedTuple):
    """Failures of one kind that got no line of their own.

    Attributes:
        reason: their reason class.
        failures: how many.
        span: seconds from the last line about this kind of failure to the newest one.
    """

    reason: str
    failures: int
    span: float


class Verdict(NamedTuple):
    """What to log for one failure.

    Attributes:
        summary: failures to report first (or instead, see ``log``), if any.
        log: whether this failure gets its own full line.
    """

    summary: Summary | None
    log: bool


class Recovery(NamedTuple):
    """Failures between two live sessions.

    Attributes:
        failures: how many sessions ended since the connection was last live.
        span: seconds from the first of them to the moment it is live again.
    """

    failures: int
    span: float


@final
class FailureLog:
    """Decides which failures of one connection get a log line of their own.

    A pure class: the caller passes the time (``trio.current_time()``) and logs what
    it is told to.

    - The first failure after the connection was live, and any failure whose reason
      class differs from the one before, gets a full line at once (with its error text).
      A change of reason first reports, as a summary, the failures of the previous kind
      that were only counted.
    - Further failures with the same reason are counted, not logged, until ``window``
      seconds have passed since the last line about that reason; the first failure after
      that is reported as a summary of every failure counted since that line, itself
      included ("failed 12 times in 61 s"), and a new window starts there. So a
      connection that keeps failing the same way logs at most one line per window.
    - Once the connection is live again, :meth:`live` says how many failures it took
      and forgets them: the next failure gets a full line again.

    Args:
        window: seconds over which failures of one kind are summarized.

    Raises:
        ValueError: ``window`` is not a positive number.
    """

    def __init__(self, *, window: float = DEFAULT_SUMMARY_WINDOW) -> None:
        if not window > 0:
            raise ValueError(f"window must be a positive number of seconds, not {window!r}")
        self.window = window
        self._reason: str | None = None
        #: trio time of the last line about ``_reason``.
        self._line_at = 0.0
        #: Failures of ``_reason`` counted since that line.
        self._counted = 0
        #: trio time of the first failure since the connection was last live.
        self._first_at: float | None = None
        self._failures = 0

    def failed(self, now: float, reason: str) -> Verdict:
        """Record a failure with reason class ``reason`` at ``now``; say what to log.

        Args:
            now: the time of the failure.
            reason: its reason class (``disconnect_reason``).

        Returns:
            ``Verdict(summary, log)``: with ``log``, log the failure in full (after
            ``summary``, if given: the counted failures of the previous reason); without
            ``log``, log ``summary`` in its place, or nothing when it is ``None``.
        """
        if self._first_at is None:
            self._first_at = now
        self._failures += 1
        if reason != self._reason:
            summary = self._summary(now)
            self._reason, self._line_at, self._counted = reason, now, 0
            return Verdict(summary, True)
        self._counted += 1
        if now - self._line_at < self.window:
            return Verdict(None, False)
        summary = self._summary(now)
        self._line_at, self._counted = now, 0
        return Verdict(summary, False)

    def live(self, now: float) -> Recovery | None:
        """The connection is live at ``now``: the failures since it last was, if any.

        Args:
            now: the time it became live.

        Returns:
            How many failures and over how long, or ``None`` when there were none.
        """
        first, failures = self._first_at, self._failures
        self._first_at, self._failures = None, 0
        self._reason, self._counted = None, 0
        if first is None:
            return None
        return Recovery(failures, now - first)

    def _summary(self, now: float) -> Summary | None:
        if self._reason is None or not self._counted:
            return None
        return Summary(self._reason, self._counted, now - self._line_at)
