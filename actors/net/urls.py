"""WebSocket URLs: parsing them, and showing them without their secrets.

Theory of operation: every URL that reaches a log line, a stats snapshot, an error
message or a config problem goes through :func:`redact_url` first, so there is one set
of masking rules. Redaction works on the text without a full parse: a URL that
:func:`urllib.parse.urlsplit` rejects (an unclosed ``[`` of an IPv6 host, a port
beyond 65535) is exactly the kind a config error has to show, and it must not be shown
with its password.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import SplitResult, urlsplit

__all__ = ["DEFAULT_PORTS", "redact_url", "split_ws_url"]

#: RFC 6455 section 3: ws defaults to port 80, wss to 443.
DEFAULT_PORTS: Final = {"ws": 80, "wss": 443}

#: Query parameters whose values are masked in URLs shown anywhere (matched as
#: case-insensitive substrings of the name, so ``apiKey`` and ``X-Auth`` count).
_SECRET_PARAMS: Final = ("key", "token", "secret", "signature", "password", "passphrase", "auth")


def redact_url(url: str, *, keep_username: bool = False) -> str:
    """``url`` safe for logs, stats, errors and config problems.

    Rules:

    - user-info (``user:password@``, or a bare ``token@``, which may be a secret) becomes
      ``***@``; with ``keep_username`` a ``user:password@`` becomes ``user:***@`` so a
      config problem can say whose credentials they are, while a bare token is still
      masked whole;
    - the values of query parameters whose names look like credentials (``apiKey=``,
      ``token=``, ``signature=``, ...) become ``***``;
    - everything else, including the fragment, is kept as written. A URL with nothing to
      mask is returned unchanged.

    Never raises, even for malformed URLs.

    Args:
        url: any URL, well-formed or not.
        keep_username: keep the user name in front of a masked password.

    Returns:
        The URL with its secrets replaced by ``***``.
    """
    scheme_end = url.find("://")
    start = 0 if scheme_end < 0 else scheme_end + 3
    authority_end = _find_first(url, "/?#", start)
    fragment_start = _find_first(url, "#", authority_end)
    query_start = _find_first(url, "?", authority_end, fragment_start)

    userinfo, at, host = url[start:authority_end].rpartition("@")
    authority = url[start:authority_end]
    if at:
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}:***@{host}" if keep_username and colon else f"***@{host}"

    query = url[query_start + 1 : fragment_start] if query_start < fragment_start else ""
    if query:
        pairs = []
        for pair in query.split("&"):
            name, eq, value = pair.partition("=")
            if eq and any(word in name.lower() for word in _SECRET_PARAMS):
                value = "***"
            pairs.append(f"{name}{eq}{value}")
        query = "&".join(pairs)
        tail = f"{url[authority_end : query_start + 1]}{query}{url[fragment_start:]}"
    else:
        tail = url[authority_end:]
    return f"{url[:start]}{authority}{tail}"


def _find_first(text: str, chars: str, start: int, end: int | None = None) -> int:
    """Index of the first of ``chars`` in ``text[start:end]``, else ``end`` (or its length)."""
    stop = len(text) if end is None else end
    found = [i for i in (text.find(c, start, stop) for c in chars) if i >= 0]
    return min(found, default=stop)


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
