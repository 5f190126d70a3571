"""Deribit v2 adapter (being written: see docs/adapters.md)."""

from __future__ import annotations

from typing import ClassVar

from actors.exchanges._base import ExchangeProtocol, Frame
from actors.exchanges._messages import Batch

__all__ = ["DeribitProtocol"]


class DeribitProtocol(ExchangeProtocol):
    """Deribit v2 (JSON-RPC)."""

    exchange: ClassVar[str] = "deribit"
    default_url: ClassVar[str | None] = "wss://www.deribit.com/ws/api/v2"

    def _on_start(self, now: float) -> None:
        raise NotImplementedError

    def receive_frame(self, data: Frame, now: float, received_at: float) -> Batch:
        raise NotImplementedError
