"""The ``raw`` adapter: send configured frames verbatim, deliver every frame as JSON.

Useful for any exchange we have no adapter for yet, and for tests. It has no acks, so its
subscriptions count as confirmed once queued; every received text or binary frame must be
one JSON value, anything else is counted as malformed and dropped.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from actors._errors import LocalProtocolError
from actors._spec import ConnectionSpec
from actors.exchanges.messages import Batch
from actors.exchanges.sdk.checks import not_used
from actors.exchanges.sdk.pacing import Pacer
from actors.exchanges.sdk.protocol import ExchangeProtocol, Frame

__all__ = ["RawProtocol"]


class RawProtocol(ExchangeProtocol):
    """Pass-through adapter: ``subscribe`` frames out, JSON values in."""

    exchange: ClassVar[str] = "raw"
    default_url: ClassVar[str | None] = None
    #: Frames carry no topic we know: any data message is data on every subscription.
    tracks_topics: ClassVar[bool] = False

    def __init__(self, spec: ConnectionSpec, *, pacer: Pacer | None = None) -> None:
        super().__init__(spec, pacer=pacer)
        self._decode = msgspec.json.Decoder().decode

    @classmethod
    def _check(cls, spec: ConnectionSpec) -> list[tuple[str, str]]:
        keys = ("channels", "symbols", "raw")
        why = "list the frames to send in subscribe"
        return [not_used(key, cls.exchange, why) for key in keys if getattr(spec, key)]

    def topics(self) -> list[str]:
        return list(self.spec.subscribe)

    def _configure(self, spec: ConnectionSpec) -> None:
        pass  # nothing to route: every frame is delivered as it is

    def _subscribe(self, now: float, topics: list[str]) -> None:
        # No acks in a raw protocol: the frames count as confirmed once queued.
        for frame in topics:
            self.send_now(frame)
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
