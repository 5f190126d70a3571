"""Normalized symbols: ``BASE-QUOTE`` for spot, ``BASE-QUOTE-PERP`` for perpetual swaps.

Each adapter maps these to and from its exchange's native names; this module only
parses and formats the normalized form. A symbol given in config may also be the
exchange's native name (``BTCUSDT``, ``BTC-USDT-SWAP``, ``BTC-PERPETUAL``); adapters try
the normalized form first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

__all__ = ["Symbol", "SymbolMap", "from_native", "parse_symbol", "split_native"]

_NORMALIZED: Final = re.compile(r"^([A-Z0-9]{1,20})-([A-Z0-9]{1,20})(-PERP)?$")


class Symbol(NamedTuple):
    """A parsed normalized symbol."""

    base: str
    quote: str
    perp: bool

    def __str__(self) -> str:
        return f"{self.base}-{self.quote}-PERP" if self.perp else f"{self.base}-{self.quote}"


def parse_symbol(text: str) -> Symbol | None:
    """Parse ``BTC-USDT`` / ``BTC-USDT-PERP``; ``None`` if ``text`` is not in that form."""
    match = _NORMALIZED.match(text)
    if match is None:
        return None
    return Symbol(match[1], match[2], match[3] is not None)


def split_native(native: str, quotes: Sequence[str]) -> str:
    """``BTCUSDT`` -> ``BTC-USDT`` by a known quote suffix; the native name if none fits.

    Args:
        native: an exchange's name without separator.
        quotes: the quote assets to try, longest first.
    """
    for quote in quotes:
        if native.endswith(quote) and len(native) > len(quote):
            normalized = f"{native[: -len(quote)]}-{quote}"
            if parse_symbol(normalized) is not None:
                return normalized
    return native


def from_native(native: str, quotes: Sequence[str], *, perp: bool) -> str:
    """The message symbol for a native name without separator: ``BTCUSDT`` ->
    ``BTC-USDT`` (``BTC-USDT-PERP`` for perpetuals); the native name if no quote fits."""
    split = split_native(native, quotes)
    if split == native:
        return native
    return f"{split}-PERP" if perp else split


class SymbolMap:
    """Native ↔ normalized symbols for one connection, computed once per name.

    Args:
        to_native: config symbol (normalized or native) -> the exchange's name, or None
            if the text is in no form the exchange knows.
        to_normalized: the exchange's name -> the symbol messages carry (the native
            name itself when no normalized form exists, e.g. dated futures).
    """

    __slots__ = ("_limit", "_native", "_normalized", "_to_native", "_to_normalized")

    def __init__(
        self,
        to_native: Callable[[str], str | None],
        to_normalized: Callable[[str], str],
        *,
        limit: int = 10_000,
    ) -> None:
        self._to_native = to_native
        self._to_normalized = to_normalized
        self._normalized: dict[str, str] = {}
        self._native: dict[str, str | None] = {}
        #: Most names remembered: names seen only in frames (Deribit's per-currency
        #: trade channels name every instrument) are computed again once it is reached,
        #: so a long life or a hostile server cannot grow the map without bound.
        self._limit = limit

    def add(self, symbol: str) -> str | None:
        """Register a config symbol; its native name, or None if it is not one.

        Messages carry the normalized form of the native name, whichever form config
        used.
        """
        native = self.native(symbol)
        if native is not None and native not in self._normalized:
            self._normalized[native] = self._to_normalized(native)
        return native

    def native(self, symbol: str) -> str | None:
        """The exchange's name for a config symbol (None if it is in no known form)."""
        try:
            return self._native[symbol]
        except KeyError:
            native = self._to_native(symbol)
            if len(self._native) < self._limit:
                self._native[symbol] = native
            return native

    def normalized(self, native: str) -> str:
        """The symbol messages carry for the exchange's name ``native``."""
        try:
            return self._normalized[native]
        except KeyError:
            symbol = self._to_normalized(native)
            if len(self._normalized) < self._limit:
                self._normalized[native] = symbol
            return symbol

    def natives(self) -> list[str]:
        """Every registered native name, in registration order."""
        return list(self._normalized)
