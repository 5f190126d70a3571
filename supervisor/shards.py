"""Sharding: one configured connection spread over siblings within the venue's limit.

Rules of this module: pure planning, no I/O, no trio. An exchange whose venue caps the
topics of one connection says so in its adapter's ``max_topics`` (Binance: 1024
streams). A connection with ``shard = true`` is then run as ``NAME``, ``NAME#2``,
``NAME#3``... (``#`` is never part of a configured name), each with the same keys and a
share of the symbols: :func:`split` at start, :func:`place` for symbols subscribed at
run time. Symbols are never split across shards (all channels of a symbol live on one
connection, so its book and its trades share one stream). Raw topics stay on the first
shard at start; at run time they go to the first shard with room.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TypeVar

import msgspec

from actors import ConnectionSpec
from actors.exchanges import ADAPTERS

__all__ = ["Placement", "base_name", "place", "shard_name", "split", "topics_per_symbol"]

S = TypeVar("S", bound=ConnectionSpec)

_SEP: Final = "#"


def shard_name(name: str, index: int) -> str:
    """The name of shard ``index`` (1-based) of connection ``name``."""
    return name if index == 1 else f"{name}{_SEP}{index}"


def base_name(name: str) -> str:
    """The configured name a shard belongs to (itself for an unsharded connection)."""
    return name.split(_SEP, 1)[0]


def topics_per_symbol(spec: ConnectionSpec, symbols: Sequence[str]) -> dict[str, int]:
    """How many topics each symbol costs on a connection with ``spec``'s channels."""
    adapter = ADAPTERS[spec.exchange]
    return {
        symbol: len(adapter(msgspec.structs.replace(spec, symbols=(symbol,), raw=())).topics())
        for symbol in symbols
    }


def split(spec: S) -> list[S]:
    """``spec`` as shards within its exchange's ``max_topics`` (itself if it fits).

    Symbols fill the shards in order; the raw topics stay on the first one.
    """
    limit = ADAPTERS[spec.exchange].max_topics
    if limit is None:
        return [spec]
    cost = topics_per_symbol(spec, spec.symbols)
    groups: list[list[str]] = [[]]
    used = len(spec.raw)
    for symbol in spec.symbols:
        if groups[-1] and used + cost[symbol] > limit:
            groups.append([])
            used = 0
        groups[-1].append(symbol)
        used += cost[symbol]
    return [
        msgspec.structs.replace(
            spec,
            name=shard_name(spec.name, index),
            symbols=tuple(group),
            raw=spec.raw if index == 1 else (),
        )
        for index, group in enumerate(groups, start=1)
    ]


class Placement(msgspec.Struct, frozen=True, kw_only=True):
    """Where symbols and raw topics subscribed at run time go.

    Attributes:
        symbols: shard name -> the new symbols it takes.
        raw: shard name -> the new raw topics it takes.
        new: the symbols of each shard to add, in order (none fits the others).
        unplaced: raw topics no shard has room for (a new shard cannot hold only raw
            topics: its channels need symbols).
    """

    symbols: dict[str, list[str]]
    raw: dict[str, list[str]]
    new: list[list[str]]
    unplaced: list[str]


def place(
    shards: Sequence[tuple[ConnectionSpec, int]],
    symbols: Sequence[str],
    raw: Sequence[str],
) -> Placement:
    """Place new ``symbols`` and ``raw`` topics on ``shards`` (each ``(spec, topics it
    has now)``, in order), opening new shards for what does not fit.

    Symbols and topics any shard has already are left where they are.
    """
    first = shards[0][0]
    limit = ADAPTERS[first.exchange].max_topics
    assert limit is not None, "only exchanges with max_topics are sharded"
    have_symbols = {s for spec, _ in shards for s in spec.symbols}
    have_raw = {t for spec, _ in shards for t in spec.raw}
    wanted = [s for s in dict.fromkeys(symbols) if s not in have_symbols]
    cost = topics_per_symbol(first, wanted)
    room = {spec.name: limit - used for spec, used in shards}
    out_symbols: dict[str, list[str]] = {}
    out_raw: dict[str, list[str]] = {}
    unplaced: list[str] = []
    for topic in dict.fromkeys(raw):
        if topic in have_raw:
            continue
        name = next((n for n, r in room.items() if r >= 1), None)
        if name is None:
            unplaced.append(topic)  # raw topics need a shard with symbols: no new one
            continue
        out_raw.setdefault(name, []).append(topic)
        room[name] -= 1
    new: list[list[str]] = []
    new_used = 0
    for symbol in wanted:
        name = next((n for n, r in room.items() if r >= cost[symbol]), None)
        if name is not None:
            out_symbols.setdefault(name, []).append(symbol)
            room[name] -= cost[symbol]
            continue
        if not new or new_used + cost[symbol] > limit:
            new.append([])
            new_used = 0
        new[-1].append(symbol)
        new_used += cost[symbol]
    return Placement(symbols=out_symbols, raw=out_raw, new=new, unplaced=unplaced)
