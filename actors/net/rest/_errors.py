"""What a REST call raises when the venue says no, and how each venue says it.

Theory of operation: every venue wraps its errors in its own JSON envelope. One pure
function, :func:`venue_error`, reads the envelope of any venue (the shapes are
disjoint) and returns the venue's code and message, or nothing when the body is a
success. The client raises :class:`RestError` with them; callers match on
``status`` and ``venue_code`` without knowing the envelope.

Envelopes (sources in each venue's table of :mod:`actors.net.rest._limits`):

- Binance (spot and USD-M): ``{"code": -1121, "msg": "Invalid symbol."}`` with an HTTP
  4xx status; success bodies have no ``code``.
- OKX: ``{"code": "51000", "msg": "...", "data": [...]}``; ``"0"`` is success, anything
  else an error, even under HTTP 200.
- Deribit (JSON-RPC 2.0): ``{"jsonrpc": "2.0", "error": {"code": 10028, "message":
  "too_many_requests"}}``.
- Bybit v5: ``{"retCode": 10001, "retMsg": "...", "result": {...}}``; ``0`` is success,
  anything else an error, even under HTTP 200.

Codes are kept as the venue sends them (``int`` for Binance, Deribit and Bybit, ``str``
for OKX) so they compare equal to the venues' documentation.

The classes sit under :class:`~actors._errors.SupervisorError`::

    SupervisorError
    ├── RestError           the venue answered with an error (status, venue code)
    └── RateLimited         the host is held or the budget is spent for longer than
                            the caller's ``max_wait`` (the wait, and why)

Transport failures (connect, reset, timeout) stay the tree's
:class:`~actors._errors.ConnectError` and :class:`~actors._errors.ConnectionLost`.
"""

from __future__ import annotations

from typing import Any

from actors._errors import SupervisorError
from actors.net.urls import redact_url

__all__ = ["RateLimited", "RestError", "venue_error"]


class RestError(SupervisorError):
    """The venue answered a request with an error.

    Attributes:
        status: the HTTP status (``200`` when the venue put an error code in a 200 body,
            as OKX and Bybit do).
        venue_code: the venue's own code (``-1121``, ``"51000"``, ``10028``), or
            ``None`` when the body carried none (an HTML error page, an empty 502).
        message: the venue's message, or the start of the body when it had none.
        url: the request URL with credentials masked.
    """

    def __init__(
        self, *, status: int, venue_code: int | str | None, message: str, url: str
    ) -> None:
        self.status = status
        self.venue_code = venue_code
        self.message = message
        self.url = redact_url(url)
        code = "" if venue_code is None else f" code {venue_code!r}"
        super().__init__(f"{self.url}: HTTP {status}{code}: {message}")


class RateLimited(SupervisorError):
    """A request would have to wait longer than the caller allowed (``max_wait``).

    Raised before anything is sent when the host is held (after a 429 or a ban) or its
    budget is spent until later, and after a 429/418 whose hold is longer than
    ``max_wait``.

    Attributes:
        wait: seconds from now until the request could go.
        host: the host the hold or budget belongs to.
        reason: why: ``"held after HTTP 429"``, ``"IP banned (HTTP 418)"``,
            ``"weight budget"``, ...
        status: the HTTP status that caused the hold, or ``None`` for our own budget.
    """

    def __init__(self, *, wait: float, host: str, reason: str, status: int | None) -> None:
        self.wait = wait
        self.host = host
        self.reason = reason
        self.status = status
        super().__init__(
            f"{host}: rate limited ({reason}); the next request could go in {wait:.3f} s, "
            "beyond max_wait; retry later or pass a larger max_wait"
        )


def venue_error(body: Any) -> tuple[int | str | None, str] | None:
    """The venue's ``(code, message)`` if ``body`` is an error envelope, else ``None``.

    Args:
        body: the decoded JSON body (any shape; non-envelopes are not errors).

    Returns:
        ``(code, message)`` for Binance ``code``/``msg`` (an integer code), OKX
        ``code``/``msg`` (a string code; ``"0"`` and ``0`` are success), a JSON-RPC ``error``
        object, or Bybit ``retCode``/``retMsg`` (other than ``0``); ``None`` otherwise.
    """
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and "code" in error:
        return _code(error["code"]), str(error.get("message", ""))
    if "retCode" in body:
        code = body["retCode"]
        return None if code == 0 else (_code(code), str(body.get("retMsg", "")))
    if "code" in body:
        code = body["code"]
        if code in ("0", 0):
            return None
        if isinstance(code, int | str) and not isinstance(code, bool):
            return code, str(body.get("msg", ""))
    return None


def _code(value: object) -> int | str | None:
    if isinstance(value, int | str) and not isinstance(value, bool):
        return value
    return None
