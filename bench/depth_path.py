"""Per-frame CPU cost of depth streams (local books), side by side with baselines.

What is measured
----------------
A local server streams ``N`` order-book frames of one venue as fast as the kernel takes
them; each *client* receives all of them and the script reports, for the client process
only, CPU microseconds per frame and per level change, and frames per second. Two
streams, each generated once at server start-up from one deterministic book
(:class:`DepthBook`, seed fixed):

``okx``
    OKX ``books`` for ``BTC-USDT``, shaped as
    ``tests/data/okx/books_seqid_2025_truncated.jsonl``: a ``snapshot`` of 400 levels a
    side (``prevSeqId`` -1), then ``N - 1`` ``update``
    frames of about 42 level entries each (the 2022 recording: 43 on average,
    ``tests/data/okx/books_btc_usdt_2022_checksum.jsonl``), every ``prevSeqId`` the previous
    ``seqId``, every ``checksum`` the real CRC32 of the top 25 levels after the frame
    (``okx_checksum_of`` from the fakes' venue book), so a client with a local book
    verifies every one of them. The book keeps 400 levels a side: a change resizes a
    level or moves one (removed at one depth, added at another, near the top).
``binance``
    Binance spot diff depth on the combined stream (``btcusdt@depth@100ms``,
    ``depthUpdate`` frames as in ``tests/data/binance/spot_depth_diff_nknusdt_combined.jsonl``),
    ``N`` frames of about 25 level entries each (an assumption: the NKN-USDT recording
    has 2.5, BTC-USDT many more) over a book of 1,000
    levels a side, every ``U`` the previous ``u`` + 1. The same server process answers
    ``GET /api/v3/depth`` with the book after the first frame (``lastUpdateId`` its
    ``u``), all 1,000 levels a side.

Clients, per stream:

``ours, book_sync = true``
    ``open_supervisor(config)`` with one connection (``channels = ["book"]``,
    ``symbols = ["BTC-USDT"]``, ``book_sync = true``), consuming ``sup.messages()`` until
    the message of the stream's last sequence: the whole product path with the local
    book kept and checked on every frame (chain, crossed book, and for OKX the CRC32),
    and ``BookSnapshot``/``BookDelta`` structs with ``Decimal`` levels delivered. For
    Binance the connection's REST client fetches the snapshot from the same server
    (``[connections.bench.rest] base_url``, ``book_depth = 1000``, ``book_refresh = 0``):
    the server sends the first diff, waits until that snapshot was served, then sends the
    rest (as the venue documents, the book asks for it once a diff is buffered). The
    diffs that arrive while the snapshot is read are applied in it, so the connection
    delivers one ``BookSnapshot`` and then fewer ``BookDelta`` than diffs. The trial
    includes the connection's REST calls at start (server time, ``exchangeInfo``, the
    snapshot: a few milliseconds, amortized over ``N``).
``ours, book_sync = false``
    The same with ``book_sync = false``: the venue's stream decoded and normalized to
    ``BookSnapshot``/``BookDelta`` as it comes, no local book.
``websockets + msgspec``
    The ``websockets`` asyncio client's ``recv()`` loop with ``msgspec.json.decode`` (to
    ``dict``) of every frame: the decode any Python client pays, no book.
``picows + msgspec`` (when picows is installed)
    picows' ``on_ws_frame`` callback with the same decode.
``cryptofeed`` (Binance only, when cryptofeed is installed)
    cryptofeed's ``FeedHandler`` with its ``Binance`` feed, ``L2_BOOK``: its own REST
    snapshot from the same server, its ``U``/``u`` check, its ``OrderBook`` (a C
    extension) updated with ``Decimal`` levels, the book handed to a callback per diff;
    no crossed-book check (its ``cross_check`` is off by default). The peer with a local
    book (``client_cryptofeed`` says how it is pointed at the local server).

Plus a micro-benchmark without I/O, one process, per stream, on the same frames as
``str``: the adapter alone (``ADAPTERS[venue](spec).receive_frame``, subscription
acknowledged, ``book_sync = true``: decode, normalization, the chain check, no book),
``msgspec.json.decode`` to ``dict``, and the typed decode the adapters use split in two to
measure **``Decimal`` construction**: the frames decoded into Structs shaped like the
adapter's wire Structs with every price and size a ``Decimal``, and the same Structs with
``str`` fields. The difference is the cost of building the ``Decimal`` objects; its share
of the adapter and of ``ours, book_sync = true`` is in the table.

Every client checks the end: the last sequence seen is the stream's last, no
``BookInvalid`` arrived, and with ``book_sync = true`` the book (``sup.book()``) is valid at
that sequence and its 25 best levels a side equal the generator's, price and size.

How
---
As ``bench/receive_path.py`` (its helpers are imported): a separate server process on
its own CPU (``--pin``, the default with two CPUs or more) writing pre-framed bytes with
one ``sendall``, every trial in a fresh client process pinned to the other CPU, the
repetitions interleaved (every client of both streams, then again), CPU time from
``time.process_time`` from just before connecting until the last frame's message was in
the consumer's hands, median [min-max] over the repetitions, and the load of everything
else from /proc/stat per trial.

Caveats
-------
- The stream is generated, not recorded: the shapes, sizes and number formats are the
  venues' (OKX plain numbers, Binance's 8 decimals), the level changes per frame an
  assumption (the 2022 OKX recording's updates carry 6 to 163 level entries, 43 on
  average). Per level change is the figure that carries over best.
- OKX has sent ``checksum`` 0 on every frame since 2026-06-23 (docs/books.md); with real
  checksums, as here, our book verifies each one: the CRC32 is a large part of the
  ``book_sync`` cost (``bench/orderbook.py`` measures it alone).
- Loopback, no TLS, no compression, one stream at full rate: the best case for batching.
- Numbers from a shared machine are noisy: see the ``other load`` column and the caution
  a section written under load carries.

Usage::

    python bench/depth_path.py                  # full run: N=20000 frames, 5 repetitions
    python bench/depth_path.py --quick          # smoke run: N=2000, 2 repetitions
    python bench/depth_path.py --write --label "shared machine"

``--write`` adds (or replaces, by label) a section in ``BENCHMARKS.md`` at the repo root.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import random
import shlex
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import _paced_server as paced
from receive_path import (
    BENCHMARKS,
    NOISY_LOAD,
    _Clock,
    _cpu_model,
    _git_commit,
    _LoadMeter,
    _pin_args,
    _Reader,
    _spread,
    _version,
    accept_upgrade,
    choose_cpus,
    server_frame,
)

from supervisor.testing.fakes.venue_book import BINANCE_SPOT, OKX, BookFormat, okx_checksum_of

FULL_N = 20_000
FULL_REPS = 5
QUICK_N = 2_000
QUICK_REPS = 2
SEED = 16
#: Levels a side of each stream's book.
OKX_LEVELS = 400
BINANCE_LEVELS = 1000
#: Changes drawn per update frame: a resize is one level entry, a move two, a level
#: changed twice in a frame is written once (36: about 42 entries, 20: about 25).
OKX_CHANGES = 36
BINANCE_CHANGES = 20
#: Levels a side the clients compare with the generator's book at the end.
CHECK_DEPTH = 25
OKX_FIRST_SEQ = 9_690_930_615
BINANCE_FIRST_U = 499_869_750
FIRST_TS = 1_765_201_257_005
SECTION_KEY = "depth_path"
VENUES = ("okx", "binance")

#: Client kinds in run order (per venue): (key, label).
CLIENTS: list[tuple[str, str]] = [
    ("ours_sync", "ours, `book_sync = true`: `sup.messages()`"),
    ("ours_nosync", "ours, `book_sync = false`: `sup.messages()`"),
    ("websockets_msgspec", "websockets `recv()` + `msgspec.json.decode`"),
    ("picows_msgspec", "picows `on_ws_frame` + `msgspec.json.decode`"),
    ("cryptofeed", "cryptofeed `FeedHandler` + `Binance` feed, `L2_BOOK` (its own book)"),
]
#: Clients whose library may be missing: a run without it leaves their rows out.
OPTIONAL: dict[str, str] = {"picows_msgspec": "picows", "cryptofeed": "cryptofeed"}
#: Clients of one venue only.
VENUE_ONLY: dict[str, str] = {"cryptofeed": "binance"}

HEADER = """# Benchmarks
"""


def _clients(venue: str) -> list[tuple[str, str]]:
    """The client kinds of ``venue`` in this run (those whose library is installed)."""
    import importlib.util

    return [
        (k, v)
        for k, v in CLIENTS
        if importlib.util.find_spec(OPTIONAL.get(k, "json")) and VENUE_ONLY.get(k, venue) == venue
    ]


# -- the generated book ----------------------------------------------------------------


class DepthBook:
    """One deterministic book that changes frame by frame, never crossed.

    Prices are integer ticks, written by the venue's :class:`BookFormat` (the fakes'
    formats), and each level's size is kept as written. Each side keeps exactly ``levels``
    levels: a change either resizes a level (its depth drawn with a mean of 15 levels from
    the top) or moves one (a level removed at a depth with a mean of 30 levels, a new one
    added at a free price with a mean of 40 ticks from the best, inside the spread when
    there is room), so the book keeps its shape over any number of frames and is never
    crossed.
    """

    def __init__(self, *, seed: int, fmt: BookFormat, price: int, levels: int) -> None:
        self.fmt = fmt
        self.rng = random.Random(seed)
        self.max_lots = 20 * 10**fmt.lot_decimals
        self.removed = fmt.size(0)
        self._price_text: dict[int, str] = {}
        rng = self.rng
        #: Price in ticks -> size as written, per side.
        self.bids: dict[int, str] = {}
        self.asks: dict[int, str] = {}
        bid, ask = price, price + rng.randint(1, 3)
        for _ in range(levels):
            self.bids[bid] = self._size()
            self.asks[ask] = self._size()
            bid -= rng.randint(1, 3)
            ask += rng.randint(1, 3)
        #: Prices ascending, both sides (best bid last, best ask first).
        self.bid_prices = sorted(self.bids)
        self.ask_prices = sorted(self.asks)

    def _size(self) -> str:
        return self.fmt.size(self.rng.randint(1, self.max_lots))

    def _price(self, ticks: int) -> str:
        text = self._price_text.get(ticks)
        if text is None:
            text = self._price_text[ticks] = self.fmt.price(ticks)
        return text

    def change(self, count: int) -> tuple[dict[int, str], dict[int, str]]:
        """``count`` random changes; the changed levels per side, price -> size as written
        (``fmt.size(0)``: removed)."""
        rng = self.rng
        changed_bids: dict[int, str] = {}
        changed_asks: dict[int, str] = {}
        for _ in range(count):
            is_bid = rng.random() < 0.5
            side, prices, changed = (
                (self.bids, self.bid_prices, changed_bids)
                if is_bid
                else (self.asks, self.ask_prices, changed_asks)
            )
            if rng.random() < 0.6:
                depth = min(int(rng.expovariate(1 / 15)), len(prices) - 1)
                price = prices[-1 - depth] if is_bid else prices[depth]
                side[price] = changed[price] = self._size()
                continue
            depth = min(int(rng.expovariate(1 / 30)), len(prices) - 1)
            gone = prices.pop(-1 - depth if is_bid else depth)
            del side[gone]
            changed[gone] = self.removed
            best_bid, best_ask = self.bid_prices[-1], self.ask_prices[0]
            for _attempt in range(20):
                offset = int(rng.expovariate(1 / 40)) - 1
                price = (
                    min(best_bid - offset, best_ask - 1)
                    if is_bid
                    else max(best_ask + offset, best_bid + 1)
                )
                if price > 0 and price not in side:
                    break
            else:  # no free price near the top: put the removed level back
                price = gone
            bisect.insort(prices, price)
            side[price] = changed[price] = self._size()
        return changed_bids, changed_asks

    def written(self, changed: dict[int, str], is_bid: bool) -> list[list[str]]:
        """Levels as the venue writes them, best first."""
        price = self._price
        return [[price(p), changed[p]] for p in sorted(changed, reverse=is_bid)]

    def top(self, depth: int | None) -> tuple[list[list[str]], list[list[str]]]:
        """The ``depth`` best levels a side (all with ``None``), best first, as written."""
        price, bids, asks = self._price, self.bids, self.asks
        bid_prices = self.bid_prices[::-1] if depth is None else self.bid_prices[: -depth - 1 : -1]
        ask_prices = self.ask_prices if depth is None else self.ask_prices[:depth]
        return (
            [[price(p), bids[p]] for p in bid_prices],
            [[price(p), asks[p]] for p in ask_prices],
        )


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _okx_levels(levels: list[list[str]]) -> list[list[str]]:
    """``[px, sz, "0", orders]``: OKX's four-element levels (0 orders for a removal)."""
    return [[px, sz, "0", "0" if sz == "0" else "1"] for px, sz in levels]


class Stream:
    """One venue's frames, pre-framed, and what a client must see at the end.

    Attributes:
        first: the first frame (OKX: the snapshot; Binance: the diff the REST snapshot
            follows).
        rest: every other frame, concatenated.
        frames: frames in all (``N``).
        levels: level entries in all frames (the snapshot's included).
        last: the last frame's sequence (OKX ``seqId``, Binance ``u``).
        top: the book after the last frame, ``CHECK_DEPTH`` levels a side as written.
        snapshot_body: Binance: the REST answer (the book after the first frame).
        frames_text: the frames as ``str``, for the micro-benchmark (kept only there).
    """

    def __init__(self) -> None:
        self.first = b""
        self.rest = b""
        self.frames = 0
        self.levels = 0
        self.last = 0
        self.top: dict[str, list[list[str]]] = {}
        self.snapshot_body: dict[str, Any] = {}
        self.frames_text: list[str] = []


def okx_stream(n: int, *, keep_text: bool = False) -> Stream:
    """``n`` OKX ``books`` frames: a 400-level snapshot, then updates (module docstring)."""
    book = DepthBook(seed=SEED, fmt=OKX, price=370_000, levels=OKX_LEVELS)
    rng = random.Random(SEED + 1)
    arg = {"channel": "books", "instId": "BTC-USDT"}
    out = Stream()
    parts: list[bytes] = []
    seq = OKX_FIRST_SEQ
    bids, asks = book.top(None)
    top25 = book.top(25)
    frame = _encode(
        {
            "arg": arg,
            "action": "snapshot",
            "data": [
                {
                    "asks": _okx_levels(asks),
                    "bids": _okx_levels(bids),
                    "ts": str(FIRST_TS),
                    "checksum": okx_checksum_of(*top25),
                    "seqId": seq,
                    "prevSeqId": -1,
                }
            ],
        }
    )
    out.first = server_frame(frame)
    out.levels += len(bids) + len(asks)
    if keep_text:
        out.frames_text.append(frame.decode())
    for i in range(1, n):
        changed_bids, changed_asks = book.change(OKX_CHANGES)
        prev, seq = seq, seq + rng.randint(1, 4)
        bids, asks = book.written(changed_bids, True), book.written(changed_asks, False)
        frame = _encode(
            {
                "arg": arg,
                "action": "update",
                "data": [
                    {
                        "asks": _okx_levels(asks),
                        "bids": _okx_levels(bids),
                        "ts": str(FIRST_TS + 100 * i),
                        "checksum": okx_checksum_of(*book.top(25)),
                        "seqId": seq,
                        "prevSeqId": prev,
                    }
                ],
            }
        )
        parts.append(server_frame(frame))
        out.levels += len(bids) + len(asks)
        if keep_text:
            out.frames_text.append(frame.decode())
    out.rest = b"".join(parts)
    out.frames = n
    out.last = seq
    top_bids, top_asks = book.top(CHECK_DEPTH)
    out.top = {"bids": top_bids, "asks": top_asks}
    return out


def binance_stream(n: int, *, keep_text: bool = False) -> Stream:
    """``n`` Binance ``depthUpdate`` frames and the REST snapshot after the first one."""
    book = DepthBook(seed=SEED, fmt=BINANCE_SPOT, price=3_700_000, levels=BINANCE_LEVELS)
    out = Stream()
    parts: list[bytes] = []
    last_u = BINANCE_FIRST_U - 1
    for i in range(n):
        changed_bids, changed_asks = book.change(BINANCE_CHANGES)
        first_u, last_u = last_u + 1, last_u + BINANCE_CHANGES
        bids, asks = book.written(changed_bids, True), book.written(changed_asks, False)
        ts = FIRST_TS + 100 * i
        frame = (
            b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":%d,"s":"BTCUSDT",'
            b'"U":%d,"u":%d,"b":%s,"a":%s}}' % (ts, first_u, last_u, _encode(bids), _encode(asks))
        )
        out.levels += len(bids) + len(asks)
        if keep_text:
            out.frames_text.append(frame.decode())
        if i == 0:
            out.first = server_frame(frame)
            snapshot_bids, snapshot_asks = book.top(None)
            out.snapshot_body = {
                "lastUpdateId": last_u,
                "bids": snapshot_bids,
                "asks": snapshot_asks,
            }
        else:
            parts.append(server_frame(frame))
    out.rest = b"".join(parts)
    out.frames = n
    out.last = last_u
    top_bids, top_asks = book.top(CHECK_DEPTH)
    out.top = {"bids": top_bids, "asks": top_asks}
    return out


def make_stream(venue: str, n: int, *, keep_text: bool = False) -> Stream:
    return (okx_stream if venue == "okx" else binance_stream)(n, keep_text=keep_text)


# -- server ------------------------------------------------------------------------------


class _Server:
    """The streams and the hand-off between a Binance sync session and its REST call."""

    def __init__(self, n: int) -> None:
        self.streams = {venue: make_stream(venue, n) for venue in VENUES}
        self.snapshot_served = threading.Event()

    def serve_one(self, conn: socket.socket) -> None:
        reader = _Reader(conn)
        request = reader.read_until(b"\r\n\r\n")
        request_line = request.partition(b"\r\n")[0].decode("latin-1")
        if request_line.startswith("GET /api/"):
            self._answer_rest(conn, request_line)
            return
        reader.buf = request + reader.buf  # accept_upgrade reads it again
        accept_upgrade(conn, reader)
        path = request_line.split(" ")[1]
        venue = "okx" if path.startswith("/ws/v5/") else "binance"
        stream = self.streams[venue]
        if "streams=" not in path:  # else subscribed in the URL (cryptofeed)
            self._await_subscribe(conn, reader, venue)
        conn.sendall(stream.first)
        if path.startswith("/sync/"):
            # Ours with book_sync: its book asks for the REST snapshot once it holds the
            # first diff; the rest of the stream follows once that snapshot is served.
            if not self.snapshot_served.wait(30.0):
                raise TimeoutError("no REST snapshot request within 30 s")
            self.snapshot_served.clear()
        conn.sendall(stream.rest)
        conn.sendall(server_frame(struct.pack("!H", 1000), opcode=0x8))
        conn.settimeout(30.0)
        try:
            while reader.frame()[0] != 0x8:
                pass
        except (ConnectionError, TimeoutError, OSError):
            pass

    def _await_subscribe(self, conn: socket.socket, reader: _Reader, venue: str) -> None:
        """Read text frames until the subscription; acknowledge it as the venue does."""
        while True:
            opcode, payload = reader.frame()
            if opcode == 0x8:
                raise ConnectionError("closed before subscribing")
            if opcode != 0x1 or payload == b"ping":
                continue
            request = json.loads(payload)
            if venue == "okx" and request.get("op") == "subscribe":
                for arg in request["args"]:
                    ack = {"event": "subscribe", "arg": arg, "connId": "bench"}
                    conn.sendall(server_frame(_encode(ack)))
                return
            if venue == "binance" and request.get("method") == "SUBSCRIBE":
                conn.sendall(server_frame(_encode({"result": None, "id": request["id"]})))
                return
            raise ValueError(f"unexpected request {payload!r}")

    def _answer_rest(self, conn: socket.socket, request_line: str) -> None:
        """Binance's REST calls a connection makes: server time, symbols, the snapshot."""
        from urllib.parse import parse_qs, urlsplit

        target = urlsplit(request_line.split(" ")[1])
        status = b"200 OK"
        body: dict[str, Any]
        if target.path == "/api/v3/depth":
            limit = int(parse_qs(target.query).get("limit", ["100"])[0])
            snapshot = self.streams["binance"].snapshot_body
            body = {
                "lastUpdateId": snapshot["lastUpdateId"],
                "bids": snapshot["bids"][:limit],
                "asks": snapshot["asks"][:limit],
            }
        elif target.path == "/api/v3/time":
            body = {"serverTime": int(time.time() * 1000)}
        elif target.path == "/api/v3/exchangeInfo":
            body = {"symbols": [{"symbol": "BTCUSDT", "status": "TRADING"}]}
        else:
            status, body = b"404 Not Found", {"code": -1, "msg": f"no {target.path}"}
        data = _encode(body)
        conn.sendall(
            b"HTTP/1.1 %s\r\nContent-Type: application/json;charset=UTF-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, len(data), data)
        )
        if target.path == "/api/v3/depth":
            self.snapshot_served.set()


def serve(n: int, cpu: int | None, expect_path: str) -> None:
    """Serve every connection, each in a thread, until killed; print the port first."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    server = _Server(n)
    expect = {
        venue: {
            "last": stream.last,
            "top": stream.top,
            "frames": stream.frames,
            "levels": stream.levels,
        }
        for venue, stream in server.streams.items()
    }
    Path(expect_path).write_text(json.dumps(expect))
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)

    def handle(conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                server.serve_one(conn)
            except (ConnectionError, OSError, ValueError) as exc:
                print(f"server: {exc!r}", file=sys.stderr, flush=True)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


# -- clients -----------------------------------------------------------------------------


def config_toml(venue: str, port: int, *, sync: bool) -> str:
    """The supervisor config of the ``ours`` clients (and of the adapter micro-benchmark)."""
    if venue == "okx":
        url = f"ws://127.0.0.1:{port}/ws/v5/public"
        extra = ""
    else:
        url = f"ws://127.0.0.1:{port}/{'sync/' if sync else ''}stream"
        extra = (
            "book_depth = 1000\nbook_refresh = 0\n\n"
            f'[connections.bench.rest]\nbase_url = "http://127.0.0.1:{port}"\n'
            if sync
            else ""
        )
    return f"""
[supervisor]
shutdown_timeout = 5.0

[connections.bench]
exchange = "{venue}"
url = "{url}"
channels = ["book"]
symbols = ["BTC-USDT"]
book_sync = {"true" if sync else "false"}
restart = "temporary"   # the server closes after N frames; no reconnect
{extra}"""


def _levels_equal(got: list[tuple[Decimal, Decimal]], want: list[list[str]]) -> bool:
    return got == [(Decimal(p), Decimal(s)) for p, s in want]


async def client_ours(
    venue: str, port: int, expect: dict[str, Any], clock: _Clock, *, sync: bool
) -> None:
    from supervisor import BookDelta, BookInvalid, BookSnapshot, loads_config, open_supervisor

    config = loads_config(config_toml(venue, port, sync=sync), source="bench")
    last = expect["last"]
    messages = 0
    clock.start()
    async with open_supervisor(config) as sup:
        view = sup.book("bench", "BTC-USDT") if sync else None
        async for message in sup.messages():
            if isinstance(message, BookInvalid):
                raise AssertionError(f"the book was invalidated: {message!r}")
            if isinstance(message, BookSnapshot | BookDelta):
                messages += 1
                if message.sequence == last:
                    clock.stop()
                    break
        if view is not None:
            top = expect["top"]
            if not (
                view.valid
                and view.sequence == last
                and _levels_equal(view.bids(CHECK_DEPTH), top["bids"])
                and _levels_equal(view.asks(CHECK_DEPTH), top["asks"])
            ):
                raise AssertionError(
                    f"book at {view.sequence} (valid {view.valid}) is not the venue's at "
                    f"{last}: bids {view.bids(3)}, asks {view.asks(3)}"
                )
    # A message per frame (OKX's snapshot, then its updates; Binance's diffs); Binance with
    # book_sync: the REST snapshot, with the diffs that arrived while it was fetched
    # applied in it (on a small stream, all of them), then one delta per diff after them.
    wanted = expect["frames"]
    if not (messages == wanted or (sync and venue == "binance" and 1 <= messages <= wanted)):
        raise AssertionError(f"{messages} book messages, expected {wanted}")


def subscribe_request(venue: str) -> str:
    if venue == "okx":
        return json.dumps(
            {"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]},
            separators=(",", ":"),
        )
    return json.dumps(
        {"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 1},
        separators=(",", ":"),
    )


def _sequence_of(venue: str, decoded: dict[str, Any]) -> int:
    if venue == "okx":
        seq: int = decoded["data"][0]["seqId"]
        return seq
    u: int = decoded["data"]["u"]
    return u


def url_of(venue: str, port: int) -> str:
    return f"ws://127.0.0.1:{port}" + ("/ws/v5/public" if venue == "okx" else "/stream")


async def client_websockets(venue: str, port: int, expect: dict[str, Any], clock: _Clock) -> None:
    import msgspec
    from websockets.asyncio.client import connect

    decode = msgspec.json.decode
    clock.start()
    async with connect(url_of(venue, port), compression=None, max_size=2**24) as ws:
        await ws.send(subscribe_request(venue))
        await ws.recv()  # the ack
        recv = ws.recv
        for _ in range(expect["frames"]):
            decoded = decode(await recv())
        clock.stop()
    if _sequence_of(venue, decoded) != expect["last"]:
        raise AssertionError(f"unexpected last frame {str(decoded)[:300]}")


async def client_picows(venue: str, port: int, expect: dict[str, Any], clock: _Clock) -> None:
    import asyncio

    import msgspec
    import picows

    decode = msgspec.json.decode
    frames = expect["frames"]
    done = asyncio.get_running_loop().create_future()

    class Listener(picows.WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.count = -1  # the ack comes first

        def on_ws_connected(self, transport: Any) -> None:
            transport.send(picows.WSMsgType.TEXT, subscribe_request(venue).encode())

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not picows.WSMsgType.TEXT:
                return
            if self.count < 0:
                self.count = 0
                return
            decoded = decode(frame.get_payload_as_memoryview())
            self.count += 1
            if self.count == frames:
                clock.stop()
                done.set_result(decoded)

    clock.start()
    transport, _ = await picows.ws_connect(Listener, url_of(venue, port), max_frame_size=2**24)
    last = await done
    transport.disconnect()
    await transport.wait_disconnected()
    if _sequence_of(venue, last) != expect["last"]:
        raise AssertionError(f"unexpected last frame {str(last)[:300]}")


def client_cryptofeed(port: int, expect: dict[str, Any], clock: _Clock) -> None:
    """cryptofeed's ``FeedHandler`` with its ``Binance`` feed keeping its own book.

    ``L2_BOOK`` for ``BTC-USDT``: on the first diff the feed fetches its REST snapshot
    (``limit=1000``, from the same server), then applies every diff to its ``OrderBook``
    (the ``order_book`` C extension, ``Decimal`` keys and values) after its ``U``/``u``
    check and hands the book to our callback, counted here. Pointed at the local server
    as in ``bench/receive_path.py``'s cryptofeed row (symbol table set in advance, the
    ``wss://`` endpoint rewritten to ``ws://`` in ``connect()``, an event loop set for
    uvloop), plus its REST endpoint at ``http://127.0.0.1:PORT``. At the end its book is
    checked like ours: the last ``u``, and the 25 best levels a side.
    """
    import asyncio

    from cryptofeed import FeedHandler
    from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
    from cryptofeed.defines import ASK, BID, BINANCE, L2_BOOK, SPOT
    from cryptofeed.exchanges import Binance
    from cryptofeed.symbols import Symbols

    Symbols.set(
        BINANCE,
        {"BTC-USDT": "BTCUSDT"},
        {"tick_size": {"BTC-USDT": "0.01"}, "instrument_type": {"BTC-USDT": SPOT}},
    )

    class LocalBinance(Binance):  # type: ignore[misc]
        # /sync/: the server holds the stream after the first diff until the snapshot.
        websocket_endpoints = [WebsocketEndpoint(f"wss://127.0.0.1:{port}/sync")]
        rest_endpoints = [
            RestEndpoint(
                f"http://127.0.0.1:{port}",
                routes=Routes("/api/v3/exchangeInfo", l2book="/api/v3/depth?symbol={}&limit={}"),
            )
        ]

        def connect(self) -> list[Any]:
            connections: list[Any] = super().connect()
            for connection, *_ in connections:
                connection.address = "ws://" + connection.address.removeprefix("wss://")
            return connections

    last = expect["last"]
    count = 0
    top: dict[str, list[tuple[Decimal, Decimal]]] = {}

    async def on_book(book: Any, receipt_timestamp: float) -> None:
        nonlocal count
        count += 1
        if book.sequence_number == last:
            clock.stop()
            for side, name in ((book.book[BID], "bids"), (book.book[ASK], "asks")):
                top[name] = [side.index(i) for i in range(CHECK_DEPTH)]
            asyncio.get_running_loop().stop()

    handler = FeedHandler(config={"uvloop": True, "log": {"disabled": True}})
    handler.add_feed(
        LocalBinance(symbols=["BTC-USDT"], channels=[L2_BOOK], callbacks={L2_BOOK: on_book})
    )
    asyncio.set_event_loop(asyncio.new_event_loop())
    clock.start()
    handler.run(install_signal_handlers=False)
    want = expect["top"]
    if not (
        count == expect["frames"]
        and top
        and _levels_equal(top["bids"], want["bids"])
        and _levels_equal(top["asks"], want["asks"])
    ):
        raise AssertionError(
            f"{count} books, expected {expect['frames']}; top {str(top)[:300]} is not the venue's"
        )


def run_client(kind: str, venue: str, port: int, expect: dict[str, Any]) -> dict[str, float]:
    """One trial in this process; returns wall and CPU seconds."""
    clock = _Clock()
    if kind.startswith("ours"):
        import trio

        trio.run(lambda: client_ours(venue, port, expect, clock, sync=kind == "ours_sync"))
    elif kind == "websockets_msgspec":
        import asyncio

        asyncio.run(client_websockets(venue, port, expect, clock))
    elif kind == "picows_msgspec":
        import asyncio

        asyncio.run(client_picows(venue, port, expect, clock))
    elif kind == "cryptofeed" and venue == "binance":
        client_cryptofeed(port, expect, clock)
    else:
        raise ValueError(f"unknown client {kind!r}")
    return {"wall": clock.wall, "cpu": clock.cpu}


# -- micro-benchmark -----------------------------------------------------------------------


def live_adapter(venue: str) -> Any:
    """An adapter from the public API (``book_sync = true``) with its subscription acked."""
    from actors.exchanges import ADAPTERS
    from supervisor import loads_config

    spec = loads_config(config_toml(venue, 9, sync=True), source="bench").connections[0]
    proto = ADAPTERS[venue](spec)
    proto.start_session(0.0)
    proto.tick(float("inf"))
    for frame in proto.frames_to_send():
        if frame == "ping":  # OKX's keep-alive
            continue
        request = json.loads(frame)
        if venue == "okx":
            for arg in request["args"]:
                ack = {"event": "subscribe", "arg": arg, "connId": "bench"}
                proto.receive_frame(json.dumps(ack), 0.0, 0.0)
        else:
            proto.receive_frame(f'{{"result":null,"id":{request["id"]}}}', 0.0, 0.0)
    proto.events()
    if proto.state.name != "LIVE":
        raise AssertionError(f"adapter is {proto.state}, expected LIVE")
    return proto


def _typed_decoders(venue: str) -> tuple[Any, Any]:
    """(decode with Decimal fields, decode with str fields) of one frame, adapter-shaped.

    The Structs mirror the adapters' wire Structs (``actors/exchanges/*/wire.py``): levels
    decoded ``array_like`` with the trailing elements ignored, only the fields the
    adapter reads.
    """
    import msgspec

    def shapes(number: type) -> Any:
        level = msgspec.defstruct(
            "Level", [("px", number), ("sz", number)], array_like=True, gc=False
        )
        if venue == "okx":
            entry = msgspec.defstruct(
                "Entry",
                [
                    ("asks", list[level]),  # type: ignore[valid-type]
                    ("bids", list[level]),  # type: ignore[valid-type]
                    ("ts", int),
                    ("seqId", int | None, None),
                    ("prevSeqId", int | None, None),
                    ("checksum", int | None, None),
                ],
                gc=False,
            )
            arg = msgspec.defstruct("Arg", [("channel", str), ("instId", str | None, None)])
            frame = msgspec.defstruct(
                "Frame",
                [("arg", arg), ("data", list[entry]), ("action", str | None, None)],  # type: ignore[valid-type]
                gc=False,
            )
            return msgspec.json.Decoder(frame, strict=False).decode
        diff = msgspec.defstruct(
            "Diff",
            [
                ("e", str),
                ("E", int),
                ("s", str),
                ("U", int),
                ("u", int),
                ("b", list[level]),  # type: ignore[valid-type]
                ("a", list[level]),  # type: ignore[valid-type]
            ],
            gc=False,
        )
        combined = msgspec.defstruct("Combined", [("stream", str), ("data", diff)], gc=False)
        return msgspec.json.Decoder(combined).decode

    return shapes(Decimal), shapes(str)


def run_micro(venue: str, n: int, reps: int) -> dict[str, list[float]]:
    """CPU seconds per pass over the ``n`` frames of ``venue``, ``reps`` passes, interleaved."""
    import msgspec

    from supervisor import BookDelta

    stream = make_stream(venue, n, keep_text=True)
    frames = stream.frames_text
    decode = msgspec.json.decode
    decimal_decode, str_decode = _typed_decoders(venue)
    out: dict[str, list[float]] = {"adapter": [], "msgspec": [], "decimal": [], "str": []}
    for _ in range(reps):
        proto = live_adapter(venue)
        receive = proto.receive_frame
        cpu0 = time.process_time()
        for frame in frames:
            batch = receive(frame, 0.0, 0.0)
        out["adapter"].append(time.process_time() - cpu0)
        if not (isinstance(batch[-1], BookDelta) and batch[-1].sequence == stream.last):
            raise AssertionError(f"unexpected last message {batch[-1]!r}")
        for key, function in (
            ("msgspec", decode),
            ("decimal", decimal_decode),
            ("str", str_decode),
        ):
            cpu0 = time.process_time()
            for frame in frames:
                function(frame)
            out[key].append(time.process_time() - cpu0)
    return out


# -- orchestration -----------------------------------------------------------------------


def _child(args: list[str], cpu: int | None) -> dict[str, Any]:
    return paced.run_json_child([sys.executable, __file__, *args, *_pin_args(cpu)], timeout=600)


def measure(n: int, reps: int, pin: bool) -> dict[str, Any]:
    server_cpu, client_cpu = choose_cpus(pin)
    run_meter = _LoadMeter()
    with tempfile.TemporaryDirectory(prefix="depth_path") as tmp:
        expect_path = str(Path(tmp) / "expect.json")
        server = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "_serve",
                "--n",
                str(n),
                "--expect",
                expect_path,
                *_pin_args(server_cpu),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            expect = json.loads(Path(expect_path).read_text())
            kinds = [(venue, kind) for venue in VENUES for kind, _ in _clients(venue)]
            trials: dict[str, list[dict[str, float]]] = {f"{v}:{k}": [] for v, k in kinds}
            for rep in range(reps):
                for venue, kind in kinds:
                    meter = _LoadMeter(server.pid)
                    result = _child(
                        ["_client", kind, venue, "--port", str(port), "--expect", expect_path],
                        client_cpu,
                    )
                    result["other_load"] = meter.read()[0]
                    trials[f"{venue}:{kind}"].append(result)
                    frames = expect[venue]["frames"]
                    print(
                        f"rep {rep + 1}/{reps} {venue:<8} {kind:<19} "
                        f"{result['cpu'] / frames * 1e6:8.2f} us/frame CPU  "
                        f"{frames / result['wall']:>9,.0f} frames/s  "
                        f"other load {result['other_load']:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
            micro = {
                venue: _child(["_micro", venue, "--n", str(n), "--reps", str(reps)], client_cpu)
                for venue in VENUES
            }
        finally:
            server.kill()
            server.wait()
    other_load, steal = run_meter.read()
    return {
        "other_load": other_load,
        "steal": steal,
        "run_seconds": time.perf_counter() - run_meter.wall0,
        "n": n,
        "reps": reps,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "expect": expect,
        "trials": trials,
        "micro": micro,
    }


VENUE_TITLES = {
    "okx": f"OKX `books`, {OKX_LEVELS}-level snapshot then updates, CRC32 checksums",
    "binance": f"Binance spot diff depth (`depthUpdate`), REST snapshot of {BINANCE_LEVELS} levels",
}
MICRO_LABELS = {
    "adapter": "adapter `receive_frame` → `BookSnapshot`/`BookDelta` (no book)",
    "msgspec": "`msgspec.json.decode(frame)` → `dict`",
    "decimal": "typed decode, levels as `Decimal`",
    "str": "typed decode, levels as `str`",
}


def render_table(results: dict[str, Any]) -> str:
    rows: list[str] = []
    for venue in VENUES:
        expect = results["expect"][venue]
        frames, levels = expect["frames"], expect["levels"]
        rows += [
            f"**{VENUE_TITLES[venue]}**: {frames:,} frames, {levels:,} level changes "
            f"({levels / frames:.1f} per frame, the first frame's included)",
            "",
            "| client | CPU µs/frame | CPU µs/level | frames/s (wall) | cpu/wall | other load |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for kind, label in _clients(venue):
            trials = results["trials"][f"{venue}:{kind}"]
            cpu_us = [t["cpu"] / frames * 1e6 for t in trials]
            per_level = [t["cpu"] / levels * 1e6 for t in trials]
            rate = [frames / t["wall"] / 1000 for t in trials]
            busy = [t["cpu"] / t["wall"] for t in trials]
            other = [t["other_load"] for t in trials]
            rows.append(
                f"| {label} | {_spread(cpu_us, '.1f')} | {_spread(per_level, '.2f')} "
                f"| {_spread(rate, ',.1f')} k | {statistics.median(busy):.2f} "
                f"| {statistics.median(other):.2f} |"
            )
        micro = results["micro"][venue]
        rows += [
            "",
            "| micro-benchmark (no I/O), same frames | CPU µs/frame | CPU µs/level |",
            "| --- | ---: | ---: |",
        ]
        for key, label in MICRO_LABELS.items():
            per_frame = [seconds / frames * 1e6 for seconds in micro[key]]
            per_level = [seconds / levels * 1e6 for seconds in micro[key]]
            rows.append(f"| {label} | {_spread(per_frame, '.1f')} | {_spread(per_level, '.3f')} |")
        decimal_us = (
            (statistics.median(micro["decimal"]) - statistics.median(micro["str"])) / frames * 1e6
        )
        adapter_us = statistics.median(micro["adapter"]) / frames * 1e6
        sync = results["trials"][f"{venue}:ours_sync"]
        sync_us = statistics.median(t["cpu"] for t in sync) / frames * 1e6
        rows += [
            "",
            f"`Decimal` construction (typed decode with `Decimal` minus with `str`, medians): "
            f"{decimal_us:.1f} µs/frame, {decimal_us * frames / levels * 1000:.0f} ns per "
            f"level (two `Decimal`s), {decimal_us / adapter_us:.0%} of the adapter, "
            f"{decimal_us / sync_us:.0%} of ours with `book_sync = true`.",
            "",
        ]
    return "\n".join(rows).rstrip("\n")


def render_section(results: dict[str, Any], label: str, command: str) -> str:
    pinned = (
        f"server on CPU {results['server_cpu']}, clients on CPU {results['client_cpu']}"
        if results["server_cpu"] is not None
        else "not pinned"
    )
    machine = [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical CPUs ({pinned})",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"trio {_version('trio')}, trio-websocket {_version('trio-websocket')}, "
        f"msgspec {_version('msgspec')}, websockets {_version('websockets')}, "
        f"picows {_version('picows')}",
        f"- Code: commit {_git_commit()}",
        f"- N = {results['n']:,} frames per trial and stream, {results['reps']} interleaved "
        f"repetitions, fresh client process each; median [min-max]; run took "
        f"{results['run_seconds']:.0f} s",
        f"- Other load: {results['other_load']:.2f} CPUs on average were busy with work other "
        f"than this benchmark during the run (steal {results['steal']:.2f}); the `other load` "
        "column is the median per trial",
    ]
    if results["other_load"] > NOISY_LOAD:
        machine.append(
            f"- **Caution: a shared machine.** Other work kept {results['other_load']:.2f} CPUs "
            "busy on average: CPU times are inflated and noisy, wall rates are unreliable."
        )
    begin, end = paced.markers(SECTION_KEY, label)
    return "\n".join(
        [
            begin,
            f"## Depth streams: {label}",
            "",
            "CPU time of the client process per order-book frame and per level change "
            "(`bench/depth_path.py`; its docstring says what each row does, how the stream "
            "is generated and how it is timed). Lower is better.",
            "",
            *machine,
            "",
            "```sh",
            command,
            "```",
            "",
            render_table(results),
            end,
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="internal")
    serve_p = sub.add_parser("_serve", help=argparse.SUPPRESS)
    serve_p.add_argument("--n", type=int, required=True)
    serve_p.add_argument("--expect", required=True)
    serve_p.add_argument("--cpu", type=int)
    client_p = sub.add_parser("_client", help=argparse.SUPPRESS)
    client_p.add_argument("kind", choices=[kind for kind, _ in CLIENTS])
    client_p.add_argument("venue", choices=VENUES)
    client_p.add_argument("--port", type=int, required=True)
    client_p.add_argument("--expect", required=True)
    client_p.add_argument("--cpu", type=int)
    micro_p = sub.add_parser("_micro", help=argparse.SUPPRESS)
    micro_p.add_argument("venue", choices=VENUES)
    micro_p.add_argument("--n", type=int, required=True)
    micro_p.add_argument("--reps", type=int, required=True)
    micro_p.add_argument("--cpu", type=int)
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer frames, reps")
    parser.add_argument("--n", type=int, help=f"frames per trial and stream (default {FULL_N:,})")
    parser.add_argument("--reps", type=int, help=f"repetitions (default {FULL_REPS})")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin server and client CPUs"
    )
    parser.add_argument("--write", action="store_true", help="add/replace a BENCHMARKS.md section")
    parser.add_argument("--label", help="section title in BENCHMARKS.md (default: the commit)")
    args = parser.parse_args(argv)

    if args.internal == "_serve":
        serve(args.n, args.cpu, args.expect)
        return
    if args.internal in ("_client", "_micro") and args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.internal == "_client":
        expect = json.loads(Path(args.expect).read_text())[args.venue]
        print(json.dumps(run_client(args.kind, args.venue, args.port, expect)))
        return
    if args.internal == "_micro":
        print(json.dumps(run_micro(args.venue, args.n, args.reps)))
        return

    for name in ("n", "reps"):
        value = getattr(args, name)
        if value is not None and value < (2 if name == "n" else 1):
            parser.error(f"--{name}: must be at least {2 if name == 'n' else 1}, got {value}")
    n = args.n or (QUICK_N if args.quick else FULL_N)
    reps = args.reps or (QUICK_REPS if args.quick else FULL_REPS)
    results = measure(n, reps, args.pin)
    given = sys.argv[1:] if argv is None else argv
    command = ".venv/bin/python " + shlex.join(["bench/depth_path.py", *given])
    label = args.label or f"commit {_git_commit()}"
    section = render_section(results, label, command)
    print(section)
    if args.write:
        paced.write_section(BENCHMARKS, SECTION_KEY, section, label, HEADER)
        print(f"\nwrote section {label!r} to {BENCHMARKS}", file=sys.stderr)


if __name__ == "__main__":
    main()
