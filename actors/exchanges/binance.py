"""Binance spot and USD-M adapters (being written: see docs/adapters.md)."""

from __future__ import annotations

from typing import ClassVar

from actors.exchanges._base import ExchangeProtocol, Frame
from actors.exchanges._messages import Batch

__all__ = ["BinanceProtocol", "BinanceUsdmProtocol"]


class BinanceProtocol(ExchangeProtocol):
    """Binance spot."""

    exchange: ClassVar[str] = "binance"
    default_url: ClassVar[str | None] = "wss://stream.binance.com:9443/ws"

    def _on_start(self, now: float) -> None:
        raise NotImplementedError

    def receive_frame(self, data: Frame, now: float, received_at: float) -> Batch:
        raise NotImplementedError


class BinanceUsdmProtocol(BinanceProtocol):
    """Binance USD-M perpetual futures."""

    exchange: ClassVar[str] = "binance_usdm"
    default_url: ClassVar[str | None] = "wss://fstream.binance.com/public/ws"
