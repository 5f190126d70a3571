"""A local order book: one symbol's price levels as the venue's snapshot and deltas say.

Rules of this file: pure bookkeeping, no I/O, no clock.

Theory of operation
-------------------
Each side is a :class:`sortedcontainers.SortedDict` from price to size, both
:class:`~decimal.Decimal` as the adapters decode them from the venue's strings, in
ascending price order: the best bid is the last bid, the best ask the first ask, so
neither side needs a key function (which would run on every comparison). A delta's
sizes are absolute: a size replaces the level's, 0 removes it, and removing a level
that is not there is not an error (Binance documents it as normal; a level can leave
the snapshot's depth and come back as a removal).

The book checks nothing about sequences: that is the sync rule's job
(:mod:`actors.exchanges.sdk.booksync`), which decides whether an update applies. The
book answers the questions the rules and consumers ask: the best levels, whether it is
crossed (best bid at or above best ask, which a correct book never is), its top N
levels, and OKX's CRC32 checksum over the strings as the venue sent them.

Why Decimal keys and not integer ticks: the adapters already deliver Decimal (exact,
and a venue's tick size changes while we run), a Decimal compares in about 60 ns, and the
book keeps the venue's own digits, which the checksum needs (``format(d, "f")`` gives
back exactly the plain-notation string a Decimal was made from, trailing zeros
included). The measurement is in BENCHMARKS.md ("order book").
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Final

from sortedcontainers import SortedDict

from actors.exchanges.messages import Level

__all__ = ["OKX_CHECKSUM_DEPTH", "OrderBook", "okx_checksum"]

#: Levels per side that OKX's book checksum covers.
OKX_CHECKSUM_DEPTH: Final = 25
_ZERO: Final = Decimal(0)


class OrderBook:
    """One symbol's bids and asks.

    Attributes:
        bids: price -> size, ascending (best bid last).
        asks: price -> size, ascending (best ask first).
    """

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids: SortedDict[Decimal, Decimal] = SortedDict()
        self.asks: SortedDict[Decimal, Decimal] = SortedDict()

    def load(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the whole book with a snapshot's levels (levels of size 0 are left out)."""
        self.bids = SortedDict((price, size) for price, size in bids if size)
        self.asks = SortedDict((price, size) for price, size in asks if size)

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Apply a delta's levels: a size replaces the level's, 0 removes it."""
        _apply(self.bids, bids)
        _apply(self.asks, asks)

    def clear(self) -> None:
        """Forget every level (a book that is being resynced)."""
        self.bids.clear()
        self.asks.clear()

    def best_bid(self) -> Level | None:
        """The highest bid, or ``None`` when there is none."""
        return self.bids.peekitem(-1) if self.bids else None

    def best_ask(self) -> Level | None:
        """The lowest ask, or ``None`` when there is none."""
        return self.asks.peekitem(0) if self.asks else None

    def crossed(self) -> bool:
        """Is the best bid at or above the best ask? (A correct book never is.)"""
        bids, asks = self.bids, self.asks
        return bool(bids) and bool(asks) and bids.peekitem(-1)[0] >= asks.peekitem(0)[0]

    def top(self, depth: int | None = None) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """The best ``depth`` levels per side (all without a depth), best first."""
        return tuple(self.iter_bids(depth)), tuple(self.iter_asks(depth))

    def iter_bids(self, depth: int | None = None) -> Iterator[Level]:
        """Bids best (highest) first, at most ``depth`` of them."""
        return itertools.islice(reversed(self.bids.items()), depth)

    def iter_asks(self, depth: int | None = None) -> Iterator[Level]:
        """Asks best (lowest) first, at most ``depth`` of them."""
        return itertools.islice(self.asks.items(), depth)

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)

    def __repr__(self) -> str:
        return (
            f"<OrderBook {len(self.bids)} bids (best {self.best_bid()}), "
            f"{len(self.asks)} asks (best {self.best_ask()})>"
        )


def _apply(side: SortedDict[Decimal, Decimal], levels: Iterable[Level]) -> None:
    for price, size in levels:
        if size == _ZERO:
            side.pop(price, None)
        else:
            side[price] = size


def okx_checksum(book: OrderBook) -> int:
    """OKX's book checksum: CRC32 of the top 25 levels, as a signed 32-bit int.

    The string interleaves ``bidPx:bidSz:askPx:askSz`` level by level, best first; when
    one side runs out, the other's levels go on alone (reference/exchanges.md §3.5,
    matched on every frame of the 2022 recording). Prices and sizes are written as the
    venue sent them, which ``format(value, "f")`` restores from the Decimals.
    """
    parts: list[str] = []
    for bid, ask in itertools.zip_longest(
        book.iter_bids(OKX_CHECKSUM_DEPTH), book.iter_asks(OKX_CHECKSUM_DEPTH)
    ):
        if bid is not None:
            parts.append(f"{bid[0]:f}:{bid[1]:f}")
        if ask is not None:
            parts.append(f"{ask[0]:f}:{ask[1]:f}")
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc
