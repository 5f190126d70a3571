"""Showing values without their secrets: the one set of masking rules for the project.

Theory of operation: a secret reaches output in one of four shapes, and each has one
function here. Every log line, stats snapshot, error message, config problem and
``repr`` that shows a configured value passes it through one of them first:

- a URL (:func:`redact_url`): user-info, query values and token-shaped path segments;
- a frame the ``raw`` adapter sends (:func:`redact_frame`): JSON values under
  secret-looking keys, and every value of a login frame;
- free text that may embed either (:func:`redact_text`), e.g. the ``repr`` of a list;
- a configuration Struct (:func:`redacted_repr`, :func:`redacted_fields`), field by field
  through :func:`redact_value`.

The rules favour masking too much over too little: a masked value costs a reader some
detail, a shown one may cost the user their account. The query rule is therefore an
allow-list (values of known-safe parameters are shown, every other value is masked)
while JSON keys and ``name=value`` pairs in free text, which have no fixed vocabulary,
are masked by a deny-list of secret-looking name fragments.

Every function here is pure and never raises on any ``str`` (malformed URLs and
frames are exactly what error messages have to show), and applying one to its own
output changes nothing. This module imports only the standard library and msgspec, so
the sans-IO adapters may use it.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, Final

import msgspec

__all__ = [
    "MASK",
    "MIN_PATH_TOKEN",
    "SAFE_QUERY_PARAMS",
    "SECRET_KEY_PARTS",
    "is_secret_key",
    "looks_like_token",
    "redact_frame",
    "redact_text",
    "redact_url",
    "redact_value",
    "redacted_fields",
    "redacted_repr",
    "userinfo",
]

#: What a secret is replaced with.
MASK: Final = "***"

#: Query parameters whose values are shown (compared case-insensitively after
#: percent-decoding); every other parameter's value is masked. They name market data,
#: never an account: the adapters' WebSocket URLs (Binance ``streams`` and ``timeUnit``,
#: https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams; Bybit
#: ``max_active_time``) and the public REST endpoints of
#: ../shared/reference/exchanges.md (Binance ``symbol``/``limit``, OKX ``instId``/``sz``/
#: ``instType``, Bybit ``category``, Deribit ``instrument_name``/``currency``/``kind``/
#: ``depth``), plus their paging and time-range companions.
SAFE_QUERY_PARAMS: Final = frozenset(
    name.casefold()
    for name in (
        # Binance
        "streams",
        "timeUnit",
        "symbol",
        "symbols",
        "limit",
        "interval",
        "startTime",
        "endTime",
        "fromId",
        # OKX
        "instId",
        "instType",
        "instFamily",
        "uly",
        "sz",
        "source",
        "ccy",
        "bar",
        "after",
        "before",
        # Bybit
        "category",
        "baseCoin",
        "settleCoin",
        "max_active_time",
        # Deribit
        "instrument_name",
        "currency",
        "kind",
        "depth",
        "expired",
        "count",
        "resolution",
        "start_timestamp",
        "end_timestamp",
    )
)

#: Fragments of key names whose values are masked in JSON frames and in ``name=value``
#: text, matched in the name lowercased with everything but letters and digits removed
#: (so ``apiKey``, ``api_key``, ``X-Api-Key`` and ``client_secret`` all match). ``sig``
#: and ``pass`` also cover ``sign``, ``signature``, ``passphrase`` and ``password``.
SECRET_KEY_PARTS: Final = (
    "key",
    "secret",
    "token",
    "pass",
    "pwd",
    "sig",
    "auth",
    "credential",
    "jwt",
    "cookie",
    "session",
    "private",
    "clientid",
)

#: A path segment at least this long, of token characters, mixing character classes,
#: is a token (a Binance listenKey is 60 characters; see :func:`looks_like_token`).
MIN_PATH_TOKEN: Final = 16

#: The fields of a JSON frame that name its operation; a login frame says so in one.
_OPERATION_KEYS: Final = frozenset({"op", "method", "action", "event", "type", "cmd", "channel"})
#: Words in an operation that make a frame a login: OKX ``login``, Binance WS API
#: ``session.logon``, Bybit/Bitfinex/Deribit ``auth``/``public/auth``.
_LOGIN_WORDS: Final = ("login", "logon", "auth")

_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9._~+=%-]+")
_NON_ALNUM_RE: Final = re.compile(r"[^a-z0-9]")
#: A URL inside free text: a scheme, then everything up to whitespace or a quote, less
#: the punctuation that ends a sentence or a clause (``... to wss://h/ws: refused``).
_URL_IN_TEXT_RE: Final = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,;:!?)\]]")
#: ``"key": value`` in JSON-like text (double or single quotes, as in a Python repr).
_QUOTED_PAIR_RE: Final = re.compile(
    r"""(?P<q>["'])(?P<key>[^"'\\]{1,64})(?P=q)(?P<sep>\s*:\s*)"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[^\s,}\]{\[]+)"""
)
#: ``name=value`` or ``name: value`` outside quotes (query strings, headers, forms).
_BARE_PAIR_RE: Final = re.compile(
    r"(?P<key>\b[A-Za-z][A-Za-z0-9_.-]{0,63})(?P<sep>=|:[ \t]*)(?P<value>[^\s&,;'\"]+)"
)
#: ``Bearer <token>`` / ``Basic <token>`` as written in an Authorization header.
_SCHEME_TOKEN_RE: Final = re.compile(
    r"\b(?P<key>Bearer|Basic)(?P<sep>\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})"
)
_FRAME_DECODER: Final = msgspec.json.Decoder()


def is_secret_key(name: str) -> bool:
    """Whether a key named ``name`` holds a secret (see :data:`SECRET_KEY_PARTS`)."""
    folded = _NON_ALNUM_RE.sub("", name.lower())
    return any(part in folded for part in SECRET_KEY_PARTS)


def looks_like_token(text: str, *, min_length: int = MIN_PATH_TOKEN) -> bool:
    """Whether ``text`` is shaped like a generated token rather than a word.

    The rule: at least ``min_length`` characters, all of them from the alphabets tokens
    are written in (letters, digits and ``. _ ~ + = % -``: base62, hex, base64url, a
    JWT), and characters from at least two of the classes digits, lowercase letters
    and uppercase letters. So ``LISTENKEY0123456789abcdef``, a hex digest and a UUID
    are tokens, while ``btcusdt@aggTrade`` (an ``@``), ``marketdatastream`` (one class)
    and ``v5`` (too short) are not. Long instrument names in a path
    (``BTC-29MAR24-60000-C``) are masked too; a false positive costs a reader detail,
    a false negative a credential.

    Args:
        text: one path segment (or any short string).
        min_length: the shortest text that can be a token.

    Returns:
        True if ``text`` should be masked.
    """
    if len(text) < min_length or not _TOKEN_RE.fullmatch(text):
        return False
    classes = (
        any(c.isdigit() for c in text)
        + any(c.islower() for c in text)
        + any(c.isupper() for c in text)
    )
    return classes >= 2


def userinfo(url: str) -> str | None:
    """The user-info of ``url`` (``user:password`` of ``user:password@host``), else None.

    Works on the text without a full parse, so it never raises on a malformed URL: the
    authority runs from after ``://`` (or the start, without a scheme) to the first
    ``/``, ``?`` or ``#``, and only its last ``@`` ends the user-info.
    """
    start, authority_end = _authority(url)
    info, at, _ = url[start:authority_end].rpartition("@")
    return info if at else None


def redact_url(url: str, *, keep_username: bool = False) -> str:
    """``url`` safe for logs, stats, errors, reprs and config problems.

    Rules:

    - user-info becomes ``***@``. With ``keep_username`` (meant for proxy URLs only)
      ``user:password@`` becomes ``user:***@``: a proxy's user name is the account the
      proxy provider bills, which an operator needs to tell which hop refused which
      credentials, and it grants nothing without the password. An exchange URL never
      keeps it: exchanges and gateways put API keys there. A bare ``token@`` is masked
      whole either way;
    - every query value becomes ``***`` unless its parameter is in
      :data:`SAFE_QUERY_PARAMS`; a bare parameter (``?LISTENKEY``) is masked whole
      unless it is safe; empty values stay empty;
    - the fragment follows the query's rules (an OAuth ``#access_token=...``);
    - each path segment that :func:`looks_like_token` (a Binance listenKey in
      ``/ws/<listenKey>``) becomes ``***``;
    - the scheme, host and port are kept as written.

    Never raises, even for malformed URLs (an unclosed ``[`` of an IPv6 host, a port
    beyond 65535: exactly the URLs a config problem has to show).

    Args:
        url: any URL, well-formed or not.
        keep_username: keep a proxy's user name in front of its masked password.

    Returns:
        The URL with its secrets replaced by ``***``; a URL with nothing to mask is
        returned unchanged.
    """
    start, authority_end = _authority(url)
    fragment_start = _find_first(url, "#", authority_end)
    query_start = _find_first(url, "?", authority_end, fragment_start)

    authority = url[start:authority_end]
    info, at, host = authority.rpartition("@")
    if at:
        user, colon, _ = info.partition(":")
        authority = f"{user}:{MASK}@{host}" if keep_username and colon else f"{MASK}@{host}"

    path = "/".join(
        MASK if looks_like_token(segment) else segment
        for segment in url[authority_end:query_start].split("/")
    )
    query = url[query_start:fragment_start]  # with its "?", or empty
    fragment = url[fragment_start:]  # with its "#", or empty
    return (
        f"{url[:start]}{authority}{path}{query[:1]}{_redact_pairs(query[1:])}"
        f"{fragment[:1]}{_redact_pairs(fragment[1:])}"
    )


def redact_frame(frame: str | bytes) -> str:
    """A frame we send (a ``raw`` adapter's ``subscribe`` entry) safe to show.

    A frame that is JSON is decoded and shown re-encoded (compact) with:

    - every value under a secret-looking key (:func:`is_secret_key`: ``apiKey``,
      ``passphrase``, ``sign``, ``token``, ...) replaced by ``"***"``, at any depth;
    - a login frame (one whose ``op``/``method``/``action``/``event``/``type``/``cmd``/
      ``channel`` names a login or auth: OKX ``{"op":"login"}``, Binance
      ``session.logon``, Bybit ``{"op":"auth","args":[key, expires, signature]}``, whose
      secrets are positional) reduced to those naming fields, every other value
      ``"***"``;
    - every string that is a URL passed through :func:`redact_url`.

    Anything else (not JSON, not UTF-8) is shown through :func:`redact_text`.

    Args:
        frame: the frame as configured or sent.

    Returns:
        Text with the frame's secrets replaced by ``***``.
    """
    text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
    try:
        value = _FRAME_DECODER.decode(text)
        if isinstance(value, dict) and _is_login(value):
            value = {
                k: v if k.lower() in _OPERATION_KEYS and isinstance(v, str) else MASK
                for k, v in value.items()
            }
        elif isinstance(value, dict | list):
            value = _redact_json(value)
        else:
            return redact_text(text)
        return msgspec.json.encode(value).decode()
    except (msgspec.DecodeError, RecursionError):
        # Not JSON, or nested too deep to walk (msgspec and this walk both recurse).
        return redact_text(text)


def redact_text(text: str) -> str:
    """Free text (an error, a log argument, a ``repr``) safe to show.

    Masks every URL in it (:func:`redact_url`), the value of every ``"key": value``
    pair (JSON or a Python repr), ``key=value`` and ``key: value`` whose key is
    secret-looking (:func:`is_secret_key`), and the credentials after ``Bearer`` or
    ``Basic``. A value that is cut short (a truncated repr) is masked to its end.
    Everything else is kept as written.

    Args:
        text: any text.

    Returns:
        ``text`` with its secrets replaced by ``***``.
    """
    text = _URL_IN_TEXT_RE.sub(lambda m: redact_url(m.group()), text)
    text = _SCHEME_TOKEN_RE.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)
    text = _QUOTED_PAIR_RE.sub(_mask_pair, text)
    return _BARE_PAIR_RE.sub(_mask_pair, text)


def redact_value(value: Any, *, mask_tokens: bool = False) -> Any:
    """``value`` with every string in it shown through :func:`redact_frame`.

    For showing configuration values: a string becomes its redacted form (a URL, a
    JSON frame or free text, each by its rule), tuples and lists are redacted item by
    item, dicts value by value (a secret-looking key masks its value whole); anything
    else (numbers, enums, Structs, whose own ``repr`` redacts) is returned as it is.

    Args:
        value: a configuration value.
        mask_tokens: also mask every string that :func:`looks_like_token` whole. For a
            value shown where it does not belong (a config problem: a key pasted into
            the wrong line), where the file and line already say which value it is;
            not for reprs, where it would hide long instrument names.

    Returns:
        A value of the same shape whose ``repr`` shows no secret.
    """
    if isinstance(value, str):
        return MASK if mask_tokens and looks_like_token(value) else redact_frame(value)
    if isinstance(value, tuple | list):
        items = [redact_value(item, mask_tokens=mask_tokens) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {
            k: MASK
            if isinstance(k, str) and is_secret_key(k)
            else redact_value(v, mask_tokens=mask_tokens)
            for k, v in value.items()
        }
    return value


def redacted_fields(struct: msgspec.Struct) -> list[tuple[str, Any]]:
    """A Struct's ``(field, redacted value)`` pairs, in field order (``__rich_repr__``)."""
    return [(name, redact_value(getattr(struct, name))) for name in struct.__struct_fields__]


def redacted_repr(struct: msgspec.Struct) -> str:
    """``repr(struct)`` as msgspec writes it, with every value through :func:`redact_value`.

    For the ``__repr__`` of Structs that hold URLs or frames (msgspec lets a Struct
    define its own ``__repr__``; subclasses inherit it, so one definition on
    ``ConnectionSpec`` covers ``ConnectionConfig`` and, through the tuple's ``repr``,
    ``Config``).
    """
    shown = ", ".join(f"{name}={value!r}" for name, value in redacted_fields(struct))
    return f"{type(struct).__name__}({shown})"


# -- internals ------------------------------------------------------------------------


def _authority(url: str) -> tuple[int, int]:
    """Start and end of the authority (``user:password@host:port``) in ``url``."""
    scheme_end = url.find("://")
    start = 0 if scheme_end < 0 else scheme_end + 3
    return start, _find_first(url, "/?#", start)


def _find_first(text: str, chars: str, start: int, end: int | None = None) -> int:
    """Index of the first of ``chars`` in ``text[start:end]``, else ``end`` (or its length)."""
    stop = len(text) if end is None else end
    found = [i for i in (text.find(c, start, stop) for c in chars) if i >= 0]
    return min(found, default=stop)


def _redact_pairs(pairs: str) -> str:
    """``a=1&b=2`` with every value masked unless its name is in SAFE_QUERY_PARAMS."""
    if not pairs:
        return pairs
    out = []
    for pair in pairs.split("&"):
        name, eq, value = pair.partition("=")
        if urllib.parse.unquote(name).casefold() in SAFE_QUERY_PARAMS:
            out.append(pair)
        elif eq:
            out.append(f"{name}={MASK if value else ''}")
        else:
            out.append(MASK if name else "")
    return "&".join(out)


def _is_login(frame: dict[str, Any]) -> bool:
    return any(
        key.lower() in _OPERATION_KEYS
        and isinstance(value, str)
        and any(word in value.lower() for word in _LOGIN_WORDS)
        for key, value in frame.items()
    )


def _redact_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: MASK if is_secret_key(k) else _redact_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(item) for item in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


def _mask_pair(match: re.Match[str]) -> str:
    if not is_secret_key(match["key"]):
        return match.group()
    value = match["value"]
    quote = value[:1] if value[:1] in ("'", '"') else ""
    closed = quote if len(value) > 1 and value.endswith(quote) else ""
    return f"{match.group()[: match.start('value') - match.start()]}{quote}{MASK}{closed}"
