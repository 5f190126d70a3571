"""Where the receive path's time goes, per message: a profile of ``sup.messages()``.

Runs the ``ours: messages()`` client of ``receive_path.py`` (one Binance connection, a
local server streaming ``N`` trade frames as fast as the kernel takes them, the consumer
reading ``sup.messages()``) once under ``cProfile``, and sums each function's *own* time
into the part of the stack it belongs to, by the file it is defined in:

- ``trio scheduler``: trio's run loop, tasks, cancel scopes, parking lots (``trio/_core``),
  the memory channels (``trio/_channel.py``) and the rest of trio;
- ``trio-websocket``, ``wsproto`` (the WebSocket frame parser and its events);
- ``session pump`` (``actors/session.py``), ``connection`` (``actors/connection.py``),
  ``consumer queue`` (``actors/consumer_queue.py``), ``books``;
- ``adapter`` (``actors/exchanges``, msgspec's decode included: it runs in C under the
  adapter's frames);
- ``supervisor`` (the forwarder and ``messages()``, ``supervisor/``);
- ``other`` (the standard library, this script).

cProfile slows Python code down (about 2x here), C code much less, so the shares are
indicative, not the µs of an unprofiled run (``receive_path.py`` measures those); the
share of each part is what tells where to work.

Usage::

    python bench/profile_receive.py [--n 50000] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import receive_path  # noqa: E402

#: (part, substring of the function's file), first match wins.
PARTS: tuple[tuple[str, str], ...] = (
    ("trio-websocket", "trio_websocket"),
    ("wsproto", "wsproto"),
    ("trio scheduler", "/trio/"),
    ("outcome/sniffio", "/outcome/"),
    ("session pump", "actors/session.py"),
    ("connection", "actors/connection.py"),
    ("consumer queue", "actors/consumer_queue.py"),
    ("books", "actors/books.py"),
    ("adapter", "actors/exchanges"),
    ("actors (other)", "/actors/"),
    ("supervisor", "/supervisor/"),
)


def part_of(filename: str) -> str:
    if filename.startswith("~"):  # a C function: its caller's part is not known here
        return "builtins (C)"
    for part, needle in PARTS:
        if needle in filename:
            return part
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "receive_path.py"), "_serve", "--n", str(args.n)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        profile = cProfile.Profile(time.process_time)  # CPU, not the waits in epoll
        started = time.process_time()
        profile.enable()
        receive_path.run_client("ours", port, args.n)
        profile.disable()
        spent = time.process_time() - started
    finally:
        server.kill()
    stats = pstats.Stats(profile)
    parts: dict[str, float] = {}
    total = 0.0
    for (filename, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        parts[part_of(filename)] = parts.get(part_of(filename), 0.0) + own
        total += own
    n = args.n
    print(f"python {sys.version.split()[0]}, N = {n}, profiled CPU {spent / n * 1e6:.1f} µs/msg")
    print("| part | own time, µs per message (profiled) | share |")
    print("| --- | ---: | ---: |")
    for part, own in sorted(parts.items(), key=lambda item: -item[1]):
        print(f"| {part} | {own / n * 1e6:.1f} | {own / total:.0%} |")
    print()
    print(f"Top {args.top} functions by own time:")
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
