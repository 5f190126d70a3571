"""WebSocket URLs: parsing them, and showing them without their secrets.

Every URL that reaches a log line, a stats snapshot, an error message or a config
problem goes through :func:`redact_url` first. It lives in :mod:`actors.redact`, with
the project's other masking rules (frames, free text, Struct reprs), and is re-exported
here and from :mod:`actors.net` for the transport code that shows URLs.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import SplitResult, urlsplit

from actors.redact import redact_url

__all__ = ["DEFAULT_PORTS", "redact_url", "split_ws_url"]

#: RFC 6455 section 3: ws defaults to port 80, wss to 443.
DEFAULT_PORTS: Final = {"ws": 80, "wss": 443}


def split_ws_url(url: str) -> tuple[SplitResult, str, int, str]:
    """Parse a ws/wss URL into (parts, host, port, resource).

    Args:
        url: the URL to parse.

    Returns:
        The :func:`urllib.parse.urlsplit` parts, the host, the port (the scheme's
        default when none is given) and the resource (path and query) for the
        handshake's request line.

    Raises:
        ValueError: not a ws:// or wss:// URL with a host (the URL in the message is
            redacted).
    """
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(
            f"{redact_url(url)!r} is not a WebSocket URL (expected ws:// or wss:// with a host)"
        )
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    resource = parts.path or "/"
    if parts.query:
        resource = f"{resource}?{parts.query}"
    return parts, parts.hostname, port, resource
