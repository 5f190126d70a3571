"""Normalized messages delivered to consumers, and the adapters' control events.

Messages are tagged msgspec Structs: the tag field is ``kind`` and its value is what
``marketprism run --output jsonl`` prints (``raw`` now; ``trade``, ``ticker``,
``book_snapshot``, ``book_delta`` with the exchange adapters). Every message carries the
connection it came from, the exchange, and ``received_at`` (Unix time in seconds, taken
when the frame was read from the socket).

Control events are what an adapter tells its actor besides data. They are tagged with
their class name and never reach consumers directly.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec

__all__ = [
    "Batch",
    "MalformedFrame",
    "Message",
    "RawMessage",
    "Subscribed",
]


class RawMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="raw"):
    """One frame received by the ``raw`` adapter, decoded as JSON.

    Attributes:
        connection: the connection's configured name.
        exchange: always ``"raw"``.
        received_at: Unix time (seconds) when the frame was read.
        data: the frame's JSON value (object, array, string, number, ...).
    """

    connection: str
    exchange: str
    received_at: float
    data: Any


#: Every message type a consumer can receive.
Message: TypeAlias = RawMessage
#: Everything decoded from one received frame, delivered together.
Batch: TypeAlias = "tuple[Message, ...]"


class Subscribed(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """The adapter's subscriptions for this session are confirmed (or need no ack).

    Attributes:
        topics: the native topics now live.
    """

    topics: tuple[str, ...]


class MalformedFrame(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A received frame could not be understood; it was dropped, the session goes on.

    Attributes:
        kind: a short stable label for this sort of problem (``invalid_json``, ...),
            used to log each kind once per connection.
        detail: what was wrong, for the log.
        sample: the start of the offending frame (at most 200 characters).
    """

    kind: str
    detail: str
    sample: str


#: Control events an adapter may emit.
Event: TypeAlias = Subscribed | MalformedFrame
