"""How a WebSocket's end reads, the same on either transport.

:class:`ClosedNormally` for the peer's 1000; :class:`~actors._errors.ConnectionLost`
named as trio-websocket names close codes (``close code 1001 (GOING_AWAY) 'bye' from
URL``) for any other end, so logs, stats and tests do not depend on the transport.
"""

from __future__ import annotations

from typing import Final

import trio_websocket

from actors._errors import ConnectionLost
from actors.net.urls import redact_url

__all__ = [
    "ABNORMAL_CLOSURE",
    "MESSAGE_TOO_BIG",
    "NORMAL_CLOSURE",
    "ClosedNormally",
    "closed_by_peer",
]

#: RFC 6455 section 7.4.1: 1000 is a normal closure.
NORMAL_CLOSURE: Final = 1000
#: A TCP connection that ended without a Close frame (section 7.1.5).
ABNORMAL_CLOSURE: Final = 1006
#: A message longer than the receiver accepts.
MESSAGE_TOO_BIG: Final = 1009


class ClosedNormally(Exception):
    """The peer closed the WebSocket with code 1000: the session is over, nothing failed.

    Not a :class:`~actors._errors.SupervisorError`: it never leaves the actor, which
    turns it into a normal return of ``run()``.
    """


def closed_by_peer(code: int | None, reason: str, url: str) -> Exception:
    """What an end with close ``code`` (``None``: the Close had no code, 1005) raises."""
    if code == NORMAL_CLOSURE:
        return ClosedNormally()
    named = trio_websocket.CloseReason(1005 if code is None else code, reason or None)
    return ConnectionLost(
        f"connection lost: close code {named.code} ({named.name})"
        + (f" {reason!r}" if reason else "")
        + f" from {redact_url(url)}",
        code=named.code,
        reason=reason,
    )
