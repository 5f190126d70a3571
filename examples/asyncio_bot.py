"""The bot of examples/trio_bot.py on asyncio: the supervisor runs inside this asyncio loop.

    python examples/asyncio_bot.py          # the real venues (needs their WebSocket APIs)
    python examples/asyncio_bot.py --demo   # offline, against the built-in fake venues

It prints each trade, subscribes ETH-USDT on Binance after the fifth trade (the call
returns once Binance acknowledged it), prints a stats line every 20 trades, and stops
cleanly on Ctrl-C (every connection closed with a close frame first). Any asyncio code
(aiohttp, ccxt, your order logic) runs beside it in the same loop and thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from supervisor import Trade, config_from_dict
from supervisor.aio import open_supervisor
from supervisor.testing import FakeBinance, FakeOkx, fake_exchange_in_thread


def config(urls: dict[str, str]) -> dict[str, Any]:
    """Two connections; ``urls`` points them elsewhere (the demo's fakes)."""
    connections: dict[str, dict[str, Any]] = {
        "binance": {"exchange": "binance", "channels": ["trades"], "symbols": ["BTC-USDT"]},
        "okx": {"exchange": "okx", "channels": ["trades"], "symbols": ["BTC-USDT"]},
    }
    for name, url in urls.items():
        connections[name]["url"] = url
    return {"connections": connections}


@contextlib.contextmanager
def venues(demo: bool) -> Iterator[dict[str, str]]:
    """With ``demo``, fake Binance and OKX on loopback (threads of their own)."""
    if not demo:
        yield {}
        return
    with (
        fake_exchange_in_thread("binance", FakeBinance(), interval=0.2) as binance,
        fake_exchange_in_thread("okx", FakeOkx(), interval=0.3) as okx,
    ):
        # Binance's combined streams live under /stream.
        yield {"binance": binance.url.removesuffix("/ws") + "/stream", "okx": okx.url}


async def run(urls: dict[str, str]) -> None:
    async with open_supervisor(config_from_dict(config(urls))) as sup:
        trades = 0
        async for msg in sup.messages():
            if not isinstance(msg, Trade):
                continue
            trades += 1
            print(f"{msg.exchange:8} {msg.symbol:9} {msg.side:4} {msg.amount} @ {msg.price}")
            if trades == 5:
                async with asyncio.timeout(10):
                    await sup.subscribe("binance", symbols=["ETH-USDT"])
                print("-- subscribed ETH-USDT on binance")
            if trades % 20 == 0:
                stats = await sup.stats()
                states = ", ".join(f"{c.name} {c.state}" for c in stats.connections)
                print(f"-- {stats.totals.messages} messages; {states}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="run against built-in fakes")
    args = parser.parse_args()
    # The supervisor's own lines (live, reconnects, stop) go to stderr.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with venues(args.demo) as urls:
        try:
            asyncio.run(run(urls))
        except KeyboardInterrupt:  # asyncio.run cancels the bot; the supervisor stops
            print("-- stopped")


if __name__ == "__main__":
    main()
