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

The classes live in :mod:`actors._errors` (the project's one error tree, drawn there)
and are re-exported here::

    SupervisorError
    ├── RestError           the venue answered with an error (status, venue code)
    └── RateLimited         the host is held or the budget is spent for longer than
                            the caller's ``max_wait`` (the wait, and why)

Transport failures (connect, reset, timeout) stay the tree's
:class:`~actors._errors.ConnectError` and :class:`~actors._errors.ConnectionLost`.
"""

from __future__ import annotations

from typing import Any

from actors._errors import RateLimited, RestError

__all__ = ["RateLimited", "RestError", "venue_error"]


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
