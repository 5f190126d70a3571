"""A small Trio bot: trades from Binance and OKX, a symbol added while it runs, stats.

    python examples/trio_bot.py          # the real venues (needs their WebSocket APIs)
    python examples/trio_bot.py --demo   # offline, against the built-in fake venues

It prints each trade, subscribes ETH-USDT on Binance after the fifth trade (the call
returns once Binance acknowledged it), prints a stats line every 20 trades, and stops
cleanly on Ctrl-C (every connection closed with a close frame first). The same bot on
asyncio is examples/asyncio_bot.py.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import trio

from supervisor import Trade, config_from_dict, open_supervisor
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
                with trio.fail_after(10):
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
            trio.run(run, urls)
        except* KeyboardInterrupt:  # Trio delivers Ctrl-C inside the supervisor's nursery
            print("-- stopped")


if __name__ == "__main__":
    main()
