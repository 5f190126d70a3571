"""Helpers shared by the per-exchange tests (``tests/exchanges/test_<exchange>*.py``).

Only code that more than one file needs lives here: generic helpers that were copied
between the exchange files (fixture reading, spec and config builders, message
filters, the recording dialer), and the few exchange-specific helpers that two files of
one exchange share (named after their exchange). Constants stay in the files that use
them; a helper used by one file stays in it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Final

import msgspec
import trio

from actors._spec import ConnectionSpec
from actors.exchanges.messages import BookDelta, Message
from actors.exchanges.okx import OkxProtocol
from actors.exchanges.sdk.protocol import AdapterState, ExchangeProtocol
from supervisor import Config, config_from_dict
from supervisor.testing import FakeExchange

#: Recorded frames, one folder per exchange (provenance in ``tests/data/SOURCES.md``).
DATA: Final = Path(__file__).resolve().parent.parent / "data"

D = Decimal

#: Restarts after 1, 2, 4, ... s (at most 8 s), no jitter; 10 s of uptime resets it.
BACKOFF: Final[dict[str, Any]] = {
    "initial": 1.0,
    "max": 8.0,
    "multiplier": 2.0,
    "jitter": "none",
    "reset_after": 10.0,
}


# -- recorded frames and adapters -----------------------------------------------------


def fixture_lines(exchange: str) -> Callable[[str], list[str]]:
    """``lines(name)``: the lines of ``tests/data/<exchange>/<name>``."""
    folder = DATA / exchange

    def lines(name: str) -> list[str]:
        return (folder / name).read_text(encoding="utf-8").splitlines()

    return lines


def connection_spec(name: str, exchange: str, **keys: Any) -> ConnectionSpec:
    """The ``ConnectionSpec`` an adapter is built from: connection ``name`` on ``exchange``."""
    return msgspec.convert({"name": name, "exchange": exchange, **keys}, ConnectionSpec)


def state(proto: ExchangeProtocol) -> AdapterState:
    """``proto.state``, read fresh (no type narrowing across calls)."""
    return proto.state


def levels(*pairs: tuple[str, str]) -> tuple[tuple[Decimal, Decimal], ...]:
    return tuple((D(price), D(size)) for price, size in pairs)


def deltas(batch: tuple[Message, ...]) -> list[BookDelta]:
    """The batch, which must hold only BookDeltas."""
    out = [m for m in batch if isinstance(m, BookDelta)]
    assert len(out) == len(batch)
    return out


# -- end to end -----------------------------------------------------------------------


def exchange_config(**connections: dict[str, Any]) -> Config:
    """These connections; restarts after 1, 2, 4... s, no jitter; 1 s shutdown timeout."""
    return config_from_dict(
        {
            "supervisor": {"shutdown_timeout": 1.0},
            "defaults": {"backoff": dict(BACKOFF)},
            "connections": connections,
        },
        source="<test>",
    )


class Dialer:
    """Sends every URL to one memory fake and records when it was dialled."""

    def __init__(self, fake: FakeExchange) -> None:
        self.fake = fake
        self.attempts: list[tuple[float, str]] = []

    async def __call__(self, url: str) -> trio.abc.Stream:
        self.attempts.append((trio.current_time(), url))
        return await self.fake.connect(url)

    def times(self) -> list[float]:
        return [at for at, _ in self.attempts]


def bare(msg: Message) -> Message:
    """The message without its wall-clock stamp."""
    assert msg.received_at > 0
    return msgspec.structs.replace(msg, received_at=0.0)


# -- shared by two files of one exchange ----------------------------------------------


class TinyOkx(OkxProtocol):
    """OKX with small limits: two ~45-byte args per request, two requests per 10 s."""

    max_request_bytes: ClassVar[int] = 120
    requests_per_window: ClassVar[int] = 2
    request_window: ClassVar[float] = 10.0


def okx_config(**connection: Any) -> Config:
    """One OKX connection ``okx`` (see :func:`exchange_config`)."""
    return exchange_config(okx={"exchange": "okx", **connection})


def deribit_symbols(count: int) -> list[str]:
    return [f"C{i}-PERPETUAL" for i in range(count)]


def bybit_subscribe(req_id: int, *topics: str) -> str:
    args = ",".join(f'"{t}"' for t in topics)
    return f'{{"req_id":"{req_id}","op":"subscribe","args":[{args}]}}'
