"""The ``raw`` adapter: send configured frames verbatim, deliver every frame as JSON.

Useful for any exchange we have no adapter for yet, and for tests. It has no acks, so its
subscriptions count as confirmed once queued; every received text or binary frame must be
one JSON value, anything else is counted as malformed and dropped.

A ``subscribe`` entry may be a login frame with an API key, passphrase and signature
(OKX ``{"op":"login",...}``). The subscription book, and so ``stats()``, logs and the
demo, never see the frame: each entry is a topic named by its place in the list and
its redacted summary, ``subscribe[0] {"op":"login","args":"***"}``
(:func:`actors.redact.redact_frame`). The name is stable across sessions (config is
frozen) and unique even when two entries are the same frame.
"""

from __future__ import annotations

from typing import ClassVar, Final

import msgspec

from actors._errors import LocalProtocolError
from actors._spec import ConnectionSpec
from actors.exchanges.messages import Batch
from actors.exchanges.sdk.checks import not_used
from actors.exchanges.sdk.pacing import Pacer
from actors.exchanges.sdk.protocol import ExchangeProtocol, Frame
from actors.redact import redact_frame

__all__ = ["RawProtocol", "topic_name"]

#: Longest summary of a frame in its topic name: enough to tell entries apart in a
#: stats table, short enough for one line.
_SUMMARY_CHARS: Final = 80


def topic_name(index: int, frame: str) -> str:
    """The topic the ``raw`` adapter shows for ``subscribe[index]``: no secret in it.

    Args:
        index: the entry's place in ``subscribe``.
        frame: the entry.

    Returns:
        ``subscribe[INDEX] SUMMARY``, the summary being the redacted frame cut to
        80 characters (``...`` marks a cut).
    """
    summary = redact_frame(frame)
    if len(summary) > _SUMMARY_CHARS:
        summary = summary[: _SUMMARY_CHARS - 3] + "..."
    return f"subscribe[{index}] {summary}"


class RawProtocol(ExchangeProtocol):
    """Pass-through adapter: ``subscribe`` frames out, JSON values in."""

    exchange: ClassVar[str] = "raw"
    default_url: ClassVar[str | None] = None
    #: Frames carry no topic we know: any data message is data on every subscription.
    tracks_topics: ClassVar[bool] = False

    def __init__(self, spec: ConnectionSpec, *, pacer: Pacer | None = None) -> None:
        super().__init__(spec, pacer=pacer)
        #: Topic name -> the frame it sends.
        self._frames: dict[str, str] = {}
        self._configure(spec)
        self._decode = msgspec.json.Decoder().decode

    @classmethod
    def _check(cls, spec: ConnectionSpec) -> list[tuple[str, str]]:
        keys = ("channels", "symbols", "raw")
        why = "list the frames to send in subscribe"
        return [not_used(key, cls.exchange, why) for key in keys if getattr(spec, key)]

    def topics(self) -> list[str]:
        return list(self._frames)

    def _configure(self, spec: ConnectionSpec) -> None:
        # Nothing to route (every frame is delivered as it is); only the names to send by.
        self._frames = {topic_name(i, frame): frame for i, frame in enumerate(spec.subscribe)}

    def _subscribe(self, now: float, topics: list[str]) -> None:
        # No acks in a raw protocol: the frames count as confirmed once queued.
        for topic in topics:
            self.send_now(self._frames[topic])
        if topics:
            self.confirm(topics)

    def _unsubscribe(self, now: float, topics: list[str]) -> None:
        # Unreachable: the subscribe frames are config, not topics; commands cannot
        # change them (check() refuses channels, symbols and raw on this adapter).
        raise LocalProtocolError("the raw adapter cannot unsubscribe: it knows no protocol")

    def decode(self, data: Frame, now: float, received_at: float) -> Batch:
        try:
            value = self._decode(data)
        except msgspec.DecodeError as exc:
            self.malformed("invalid_json", str(exc), data)
            return ()
        return (self.stamp.raw(received_at, value),)
