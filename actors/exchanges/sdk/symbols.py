"""Normalized symbols: ``BASE-QUOTE`` for spot, ``BASE-QUOTE-PERP`` for perpetual swaps.

Each adapter maps these to and from its exchange's native names; this module only
parses and formats the normalized form. A symbol given in config may also be the
exchange's native name (``BTCUSDT``, ``BTC-USDT-SWAP``, ``BTC-PERPETUAL``); adapters try
the normalized form first.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

__all__ = ["Symbol", "parse_symbol"]

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
