"""One symbol's true order book on the venue side of a fake exchange.

Theory of operation
-------------------
A fake venue keeps one :class:`VenueBook` per listed symbol and shares it between every
session, as a real venue has one book per market: each depth diff a fake sends is a real
change of that book, its REST snapshot is that book, and a test can ask what the book
was at any recent sequence (:meth:`VenueBook.at`) to check what a client rebuilt.

Each side is a dict from price to size, both integers in the venue's smallest units
(price in ticks, size in lots), written as the venue writes them only on the way out
(:class:`BookFormat`: Binance spot pads to 8 decimals, USD-M to the tick and lot, OKX
writes the plain number without trailing zeros). :meth:`VenueBook.step` makes one
deterministic change from a seeded ``random.Random``: a few levels added, resized or
removed near the top, and now and then the best level of one side moves by a tick. A
new level never reaches the other side's best, so the book is never crossed (best bid
below best ask, always), and a side that grows past ``max_levels`` loses its worst
levels (sent as removals, as a venue's depth-limited feed does). Each side keeps at
least ``min_levels``, so there is always a best bid and a best ask.

A step advances :attr:`VenueBook.sequence` by ``seq_step`` (the fake picks its venue's
id scheme: Binance's ``U..u`` span of update ids, OKX's ``seqId`` step) and records the
change with the sequence before and after it. The last ``history`` changes are kept,
and every :data:`CHECKPOINT` steps a full copy of the book, so :meth:`VenueBook.at`
rebuilds the book at any recent sequence from the nearest checkpoint with at most
``CHECKPOINT - 1`` changes (microseconds for a 60-level book), and
:meth:`VenueBook.diff` merges the changes between two sequences (a session that fell
behind another one reads the changes the other one caused, so every session of a
venue sees the same book and the same ids).
"""

from __future__ import annotations

import collections
import dataclasses
import random
import zlib
from typing import Final, final

__all__ = [
    "BINANCE_SPOT",
    "BINANCE_USDM",
    "BYBIT",
    "CHECKPOINT",
    "DEFAULT_HISTORY",
    "DEFAULT_MAX_LEVELS",
    "DERIBIT",
    "OKX",
    "BookFormat",
    "VenueBook",
    "okx_checksum_of",
]

#: Changes :meth:`VenueBook.at` can still answer for (the brief's "last 10_000").
DEFAULT_HISTORY: Final = 10_000
#: Levels per side at most (the fakes' books are small; real venues serve thousands).
DEFAULT_MAX_LEVELS: Final = 60
#: Levels per side at least, so that a best bid and a best ask always exist.
DEFAULT_MIN_LEVELS: Final = 5
#: Levels per side the changes steer towards.
TARGET_LEVELS: Final = 30
#: Steps between two full copies of the book kept for :meth:`VenueBook.at`.
CHECKPOINT: Final = 64

Levels = list[list[str]]


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class BookFormat:
    """How a venue writes prices and sizes.

    Attributes:
        tick_decimals: decimals of one price tick (2: a tick of 0.01).
        price_decimals: decimals written (at least ``tick_decimals``; padded with zeros).
        lot_decimals: decimals of one size lot.
        size_decimals: decimals written for sizes.
        plain: write the plain number, trailing zeros (and a bare point) dropped, as OKX
            does (``"1.78"``, ``"2"``).
        tick: units of the last price decimal in one tick (5 with 2 decimals: 0.05).
    """

    tick_decimals: int
    price_decimals: int
    lot_decimals: int
    size_decimals: int
    plain: bool = False
    tick: int = 1

    def price(self, ticks: int) -> str:
        return _write(ticks * self.tick, self.tick_decimals, self.price_decimals, self.plain)

    def size(self, lots: int) -> str:
        return _write(lots, self.lot_decimals, self.size_decimals, self.plain)


#: Binance spot: every price and quantity with 8 decimals (``"0.35210000"``,
#: ``tests/data/binance/spot_rest_depth_snapshot_nknusdt_limit1000.json``).
BINANCE_SPOT: Final = BookFormat(tick_decimals=2, price_decimals=8, lot_decimals=5, size_decimals=8)
#: Binance USD-M: the tick's and the lot's decimals (``["83084.30","2.986"]``,
#: ``tests/data/rest/binance_usdm_depth_limit5.json``).
BINANCE_USDM: Final = BookFormat(tick_decimals=2, price_decimals=2, lot_decimals=3, size_decimals=3)
#: OKX: plain numbers (``["1.78","12102.991384"]``,
#: ``tests/data/okx/books_seqid_2025_truncated.jsonl``).
OKX: Final = BookFormat(
    tick_decimals=1, price_decimals=1, lot_decimals=8, size_decimals=8, plain=True
)
#: Bybit: the tick's and the lot's decimals (``["10088.40","1.000"]``, like the fake's
#: earlier frames and ``tests/data/bybit``).
BYBIT: Final = BookFormat(tick_decimals=2, price_decimals=2, lot_decimals=3, size_decimals=3)
#: Deribit: JSON numbers (the fake writes them from these plain strings), prices on a
#: 0.25 grid (``92294.5``, ``3120.25``, ``tests/data/deribit``).
DERIBIT: Final = BookFormat(
    tick_decimals=2, price_decimals=2, lot_decimals=3, size_decimals=3, plain=True, tick=25
)


def _write(units: int, unit_decimals: int, written: int, plain: bool) -> str:
    if unit_decimals == 0:
        whole, fraction = str(units), ""
    else:
        scale = 10**unit_decimals
        whole, fraction = str(units // scale), f"{units % scale:0{unit_decimals}d}"
    fraction = fraction.ljust(written, "0")
    if plain:
        fraction = fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


class _Step:
    """One change: the sequence before and after it, its levels, maybe a full copy."""

    __slots__ = ("asks", "base", "bids", "prev", "seq")

    def __init__(
        self,
        prev: int | None,
        seq: int,
        bids: dict[int, int],
        asks: dict[int, int],
        base: tuple[dict[int, int], dict[int, int]] | None,
    ) -> None:
        self.prev = prev
        self.seq = seq
        self.bids = bids
        self.asks = asks
        self.base = base


@final
class VenueBook:
    """One symbol's true book (module docstring).

    Args:
        seed: seeds the changes; the same arguments give the same book, step by step.
        price: the best bid at the start, in ticks; the best ask starts one to three
            ticks above it.
        sequence: the sequence of the starting book.
        fmt: how the venue writes prices and sizes.
        seq_step: how far one step advances :attr:`sequence`.
        levels: levels per side at the start.
        max_levels: levels per side at most.
        history: changes :meth:`at` and :meth:`diff` can still answer for.

    Attributes:
        sequence: the sequence after the last step (the starting one before any).
        fmt: the venue's number format.
        seq_step: the sequence advance per step.

    Raises:
        ValueError: a non-positive ``price``, ``seq_step`` or ``history``, or ``levels``
            outside ``[5, max_levels]``.
    """

    def __init__(
        self,
        *,
        seed: int,
        price: int,
        sequence: int,
        fmt: BookFormat,
        seq_step: int = 1,
        levels: int = 20,
        max_levels: int = DEFAULT_MAX_LEVELS,
        history: int = DEFAULT_HISTORY,
    ) -> None:
        if price <= 0 or seq_step <= 0 or history <= 0:
            raise ValueError(
                f"price, seq_step and history must be positive, got {price!r}, "
                f"{seq_step!r}, {history!r}"
            )
        if not DEFAULT_MIN_LEVELS <= levels <= max_levels:
            raise ValueError(
                f"levels must lie in [{DEFAULT_MIN_LEVELS}, max_levels={max_levels}], "
                f"got {levels!r}"
            )
        self.fmt = fmt
        self.seq_step = seq_step
        self.sequence = sequence
        self._max = max_levels
        self._history = history
        self._rng = random.Random(seed)
        rng = self._rng
        self._lot = 10**fmt.lot_decimals
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}
        bid, ask = price, price + rng.randint(1, 3)
        for _ in range(levels):
            self._bids[bid] = self._size()
            self._asks[ask] = self._size()
            bid -= rng.randint(1, 3)
            ask += rng.randint(1, 3)
        if min(self._bids) <= 0:
            raise ValueError(f"price {price!r} ticks leaves no room for {levels} bid levels")
        #: Retained changes, oldest first, and the same by sequence and by the one before.
        self._steps: collections.deque[_Step] = collections.deque()
        self._by_seq: dict[int, _Step] = {}
        self._after: dict[int, _Step] = {}
        self._count = 0
        self._record(_Step(None, sequence, {}, {}, (dict(self._bids), dict(self._asks))))

    # -- the venue's side ---------------------------------------------------------------

    def _size(self) -> int:
        """A new level's size in lots: 0.001 to 5 units, skewed small."""
        rng = self._rng
        return max(
            1, int(self._lot * rng.choice((0.001, 0.01, 0.1, 1.0)) * rng.randint(1, 5000) / 1000)
        )

    def step(self) -> tuple[Levels, Levels]:
        """Change the book once; advance :attr:`sequence` by ``seq_step``.

        Returns:
            The changed bid and ask levels as ``[price, size]`` (size zero: removed),
            each side best first.
        """
        rng = self._rng
        bids, asks = self._bids, self._asks
        before_bids: dict[int, int] = {}
        before_asks: dict[int, int] = {}

        def put(side: dict[int, int], before: dict[int, int], price: int, size: int) -> None:
            if price not in before:
                before[price] = side.get(price, 0)
            if size:
                side[price] = size
            else:
                side.pop(price, None)

        for _ in range(rng.randint(1, 4)):
            is_bid = rng.random() < 0.5
            side, before = (bids, before_bids) if is_bid else (asks, before_asks)
            best_bid, best_ask = max(bids), min(asks)
            roll = rng.random()
            # Adds outweigh removals below TARGET_LEVELS and the other way above it, and
            # new levels land near the top (sometimes inside the spread), so the book
            # keeps its shape over any number of steps.
            fill = len(side) < TARGET_LEVELS
            add, remove = (0.45, 0.1) if fill else (0.3, 0.25)
            if roll < 0.1 and len(side) > DEFAULT_MIN_LEVELS:
                # The best level moves one tick, into the spread when there is room.
                old = best_bid if is_bid else best_ask
                if is_bid:
                    new = old + 1 if old + 1 < best_ask else old - 1
                else:
                    new = old - 1 if old - 1 > best_bid else old + 1
                size = side[old]
                put(side, before, old, 0)
                put(side, before, new, size)
            elif roll < 0.1 + add:
                offset = int(rng.expovariate(0.2)) - 2
                if is_bid:
                    price = min(best_bid - offset, best_ask - 1)
                else:
                    price = max(best_ask + offset, best_bid + 1)
                if price > 0:
                    put(side, before, price, self._size())
            elif roll < 0.1 + add + remove and len(side) > DEFAULT_MIN_LEVELS:
                prices = sorted(side, reverse=is_bid)
                put(side, before, prices[min(int(rng.expovariate(0.2)), len(prices) - 1)], 0)
            else:
                prices = sorted(side, reverse=is_bid)
                price = prices[min(int(rng.expovariate(0.3)), len(prices) - 1)]
                put(side, before, price, self._size())
            for trimmed, worst, was in ((bids, min, before_bids), (asks, max, before_asks)):
                while len(trimmed) > self._max:
                    put(trimmed, was, worst(trimmed), 0)
        changed_bids = {p: bids.get(p, 0) for p, s in before_bids.items() if bids.get(p, 0) != s}
        changed_asks = {p: asks.get(p, 0) for p, s in before_asks.items() if asks.get(p, 0) != s}
        if not changed_bids and not changed_asks:
            # Every change undid another: resize the best bid, so that a step always changes.
            best = max(bids)
            size = bids[best] + 1
            bids[best] = size
            changed_bids[best] = size
        prev = self.sequence
        self.sequence += self.seq_step
        self._count += 1
        base = (dict(bids), dict(asks)) if self._count % CHECKPOINT == 0 else None
        self._record(_Step(prev, self.sequence, changed_bids, changed_asks, base))
        return self._levels(changed_bids, True), self._levels(changed_asks, False)

    def _record(self, step: _Step) -> None:
        self._steps.append(step)
        self._by_seq[step.seq] = step
        if step.prev is not None:
            self._after[step.prev] = step
        # Keep CHECKPOINT more than promised, so that the oldest promised change can
        # still walk back to a full copy.
        while len(self._steps) > self._history + CHECKPOINT:
            old = self._steps.popleft()
            del self._by_seq[old.seq]
            if old.prev is not None:
                self._after.pop(old.prev, None)

    # -- what clients and tests see ---------------------------------------------------

    @property
    def bids(self) -> dict[str, str]:
        """The bids now, price -> size, as the venue writes them."""
        price, size = self.fmt.price, self.fmt.size
        return {price(p): size(s) for p, s in self._bids.items()}

    @property
    def asks(self) -> dict[str, str]:
        """The asks now, price -> size, as the venue writes them."""
        price, size = self.fmt.price, self.fmt.size
        return {price(p): size(s) for p, s in self._asks.items()}

    def snapshot(self, depth: int | None = None) -> tuple[Levels, Levels]:
        """The book now: bids descending and asks ascending, at most ``depth`` a side."""
        return self._render(self._bids, self._asks, depth)

    def at(self, sequence: int) -> tuple[Levels, Levels] | None:
        """The whole book, best first, right after the change that set ``sequence``.

        Returns:
            ``None`` when ``sequence`` was never set by a step (nor is the starting
            one), or is older than the last ``history`` changes.
        """
        step = self._by_seq.get(sequence)
        if step is None or self._index(step) < len(self._steps) - self._history:
            return None
        if sequence == self.sequence:
            return self.snapshot()
        chain: list[_Step] = []
        while step.base is None:
            chain.append(step)
            assert step.prev is not None
            step = self._by_seq[step.prev]
        bids, asks = dict(step.base[0]), dict(step.base[1])
        for change in reversed(chain):
            _apply(bids, change.bids)
            _apply(asks, change.asks)
        return self._render(bids, asks, None)

    def following(self, sequence: int) -> int | None:
        """The sequence the change after ``sequence`` set, or ``None`` (the head, unknown)."""
        step = self._after.get(sequence)
        return None if step is None else step.seq

    def next_after(self, sequence: int) -> int:
        """The sequence of the change after ``sequence``, stepping the book at its head.

        A session behind another one reads the changes the other one caused; one at
        the head makes the next change. A ``sequence`` whose next change is forgotten
        (a session far behind) gets a new change at the head: its next diff shows a gap.
        """
        following = self.following(sequence)
        if following is not None:
            return following
        self.step()
        return self.sequence

    def diff(self, after: int, upto: int) -> tuple[Levels, Levels] | None:
        """The changes from ``after`` (exclusive) to ``upto`` merged: one diff, best first.

        Returns:
            ``None`` when the changes between them are not known (forgotten, or
            ``upto`` does not follow ``after``).
        """
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        at = after
        while at != upto:
            step = self._after.get(at)
            if step is None:
                return None
            bids.update(step.bids)
            asks.update(step.asks)
            at = step.seq
        return self._levels(bids, True), self._levels(asks, False)

    def _index(self, step: _Step) -> int:
        """The position of ``step`` among the retained changes (the sequence is monotone)."""
        first = self._steps[0]
        return (step.seq - first.seq) // self.seq_step

    def _levels(self, changed: dict[int, int], is_bid: bool) -> Levels:
        price, size = self.fmt.price, self.fmt.size
        return [[price(p), size(changed[p])] for p in sorted(changed, reverse=is_bid)]

    def _render(
        self, bids: dict[int, int], asks: dict[int, int], depth: int | None
    ) -> tuple[Levels, Levels]:
        price, size = self.fmt.price, self.fmt.size
        top_bids = sorted(bids, reverse=True)[:depth]
        top_asks = sorted(asks)[:depth]
        return (
            [[price(p), size(bids[p])] for p in top_bids],
            [[price(p), size(asks[p])] for p in top_asks],
        )

    def __repr__(self) -> str:
        return (
            f"<VenueBook sequence={self.sequence} {len(self._bids)} bids "
            f"(best {max(self._bids)}) {len(self._asks)} asks (best {min(self._asks)}) ticks>"
        )


def _apply(side: dict[int, int], changes: dict[int, int]) -> None:
    for price, size in changes.items():
        if size:
            side[price] = size
        else:
            side.pop(price, None)


def okx_checksum_of(bids: Levels, asks: Levels) -> int:
    """OKX's CRC32 over the top 25 levels (best first) as the strings are sent.

    Our own reimplementation, kept apart from
    :func:`actors.exchanges.sdk.orderbook.okx_checksum` so that a test can show the two
    agree: ``bidPx:bidSz:askPx:askSz`` interleaved level by level, one side going on
    alone when the other runs out, as a signed 32-bit integer
    (https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel).
    """
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts.extend(bids[i][:2])
        if i < len(asks):
            parts.extend(asks[i][:2])
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc
