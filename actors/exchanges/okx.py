"""OKX v5 public adapter (being written: see docs/adapters.md)."""

from __future__ import annotations

from typing import ClassVar

from actors.exchanges._base import ExchangeProtocol, Frame
from actors.exchanges._messages import Batch

__all__ = ["OkxProtocol"]


class OkxProtocol(ExchangeProtocol):
    """OKX v5 public."""

    exchange: ClassVar[str] = "okx"
    default_url: ClassVar[str | None] = "wss://ws.okx.com:8443/ws/v5/public"

    def _on_start(self, now: float) -> None:
        raise NotImplementedError

    def receive_frame(self, data: Frame, now: float, received_at: float) -> Batch:
        raise NotImplementedError
