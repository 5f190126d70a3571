"""Per-frame CPU cost of the receive path, side by side with baselines.

What is measured
----------------
A local server streams ``N`` Binance combined-stream trade frames as fast as the kernel
takes them; each *client* receives all ``N`` and the script reports, for the client
process only, CPU microseconds per message and messages per second:

``ours: messages()``
    ``open_supervisor(config)`` with one ``binance`` connection (``channels=["trades"]``,
    ``symbols=["BTC-USDT"]``, default buffer and overflow), consuming ``sup.messages()``
    until ``N`` ``Trade`` structs (exact ``Decimal`` prices) arrived. This is the whole
    product path: socket, trio-websocket/wsproto, the connection actor, the Binance
    adapter's decode and normalization, the outbox and the consumer channel.
``ours: batches()``
    The same, consuming ``sup.batches()`` (one item per frame) and counting messages.
``trio-websocket + adapter``
    trio-websocket's ``get_message()`` loop feeding every frame to the Binance adapter
    (``ADAPTERS["binance"](spec).receive_frame``) in the same task: the transport and
    decode our product uses, without the supervisor, actor and channels around them.
    Uses the same ``message_queue_size``/``receive_buffer_size`` as the actor.
``trio-websocket``
    A bare ``get_message()`` loop, no decode (library defaults).
``websockets`` / ``websockets + msgspec``
    The ``websockets`` asyncio client's ``recv()`` loop, no decode, and the same loop
    plus a generic ``msgspec.json.decode`` (to ``dict``) of every message.
``cryptofeed`` (when installed: ``pip install cryptofeed``, a C build of about a minute)
    cryptofeed's ``FeedHandler`` with its ``Binance`` feed, ``TRADES`` for ``BTC-USDT``,
    counting the ``Trade`` objects its callback gets: its whole receive path (websockets,
    its connection handler, its JSON decode with ``Decimal`` floats, its ``Trade``
    build) on uvloop, its default loop. Its Binance trades are ``aggTrade`` frames
    subscribed in the URL, so the server sends it the same stream as aggTrade frames
    (same values, about 200 bytes each). What is set up differently for the local
    server, none of it per frame, is in ``client_cryptofeed``'s docstring.

Plus a micro-benchmark of the adapter alone, in one process without I/O: an adapter built
from the public API (``ADAPTERS["binance"](spec)``, ``start_session``, subscriptions
acknowledged) timed on ``receive_frame(frame, 0.0, 0.0)`` over ``N`` distinct ``str``
frames, next to a plain ``msgspec.json.decode`` of the same frames.

How
---
- The server is a separate OS process (on a two-CPU machine it runs on the other core;
  with ``--pin``, the default when there are at least two CPUs, the server is pinned to
  one CPU and every client to another). It is a raw-socket WebSocket server: it answers
  the upgrade, waits for ``{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":ID}``,
  answers ``{"result":null,"id":ID}``, writes all ``N`` frames (pre-framed once, at
  start-up, into one buffer, ``t`` incrementing) with a single ``sendall``, then a close
  frame with code 1000. Writing pre-framed bytes costs the server next to nothing, so the
  client is the bottleneck (the ``cpu/wall`` column shows how CPU-bound each client was).
- Every trial runs in a fresh client process (no state such as heap or caches carried over
  between trials), and the repetitions are interleaved (ours, ours batches, trio-ws +
  adapter, trio-ws, websockets, websockets + msgspec, then again) so slow drift of the
  machine affects every client alike. Each row shows the median and [min-max] over the
  repetitions.
- Each trial is timed from just before connecting until the ``N``-th message was in the
  consumer's hands: connecting, the upgrade and the subscribe round trip are included
  (a few milliseconds, amortized over ``N``); shutting down is not. Every client checks
  that the last message is the expected one (``t`` of the last frame).

Why ``time.process_time``
-------------------------
Wall time on a loopback benchmark mixes the client's work with the server's speed,
scheduling and the other core's load. ``process_time()`` counts the CPU time (user +
system, all threads) of the client process only, which is what the receive path costs
us in production, per message. The wall-clock rate is reported as well; with a client at
~100% CPU the two agree.

Caveats
-------
- Loopback TCP, no TLS, no compression (the server declines permessage-deflate), small
  (~180 byte) frames, one stream: real feeds add TLS (decrypt cost per byte) and
  network pacing, where frames arrive in smaller bursts and per-wakeup costs weigh more.
- A full buffer all the time is the best case for batching inside the libraries; with
  ``overflow = "block"`` (the default) nothing is dropped, so ours is back-pressured by
  its own consumer, as in production.
- GC is left on (the product runs with it on); ``Trade`` structs with ``Decimal`` fields
  are allocated and dropped at full rate.
- Numbers from a shared or virtualized machine wander by several percent between runs;
  compare rows from the same run, and runs from the same machine. Other processes
  competing for the CPUs inflate even CPU time (caches, SMT siblings, the hypervisor), so
  each trial measures the load of everything else from /proc/stat (``other load``
  column) and a section written under load above ``NOISY_LOAD`` carries a caution.

Usage::

    python bench/receive_path.py                  # full run: N=200000, 5 repetitions
    python bench/receive_path.py --quick          # smoke run: N=20000, 2 repetitions
    python bench/receive_path.py --write --label "before (commit 593178c)"
    python bench/receive_path.py --clients cryptofeed,websockets   # only these rows

``--write`` adds (or replaces, by label) a section in ``BENCHMARKS.md`` at the repo root.
Only public API is used: ``supervisor.open_supervisor``, ``supervisor.loads_config``,
``supervisor.Trade`` and ``actors.exchanges.ADAPTERS``, so the same script measures any
later restructure of the internals.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import shlex
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"

STREAM = "btcusdt@trade"
FIRST_TRADE_ID = 12345
FULL_N = 200_000
FULL_REPS = 5
QUICK_N = 20_000
QUICK_REPS = 2
#: trio-websocket settings of the connection actor (actors/connection.py), copied here so
#: the "trio-websocket + adapter" client reads the socket the way ours does.
ACTOR_MESSAGE_QUEUE = 64
ACTOR_RECEIVE_BUFFER = 64 * 1024

#: Client kinds in run order: (key, label, what it does).
CLIENTS: list[tuple[str, str]] = [
    ("ours_messages", "ours: `sup.messages()`"),
    ("ours_batches", "ours: `sup.batches()`"),
    ("ours_reference", 'ours, `transport = "reference"`: `sup.messages()`'),
    ("trio_ws_adapter", "trio-websocket `get_message()` + adapter `receive_frame`"),
    ("trio_ws", "trio-websocket `get_message()`, no decode"),
    ("websockets", "websockets `recv()`, no decode"),
    ("websockets_msgspec", "websockets `recv()` + `msgspec.json.decode`"),
    ("aiohttp_msgspec", "aiohttp `receive()` + `msgspec.json.decode`"),
    ("picows_msgspec", "picows `on_ws_frame` + `msgspec.json.decode`"),
    ("cryptofeed", "cryptofeed `FeedHandler` + `Binance` feed → `Trade` (aggTrade frames)"),
]
#: Clients whose library may be missing (``pip install -e '.[bench]'`` has aiohttp and
#: picows; cryptofeed, a C build of about a minute with its own dependencies, is left to
#: ``pip install cryptofeed``): a run without it leaves their rows out.
OPTIONAL: dict[str, str] = {
    "aiohttp_msgspec": "aiohttp",
    "picows_msgspec": "picows",
    "cryptofeed": "cryptofeed",
}
#: The client kinds of this run when ``--clients`` names some (all of CLIENTS otherwise).
ONLY: set[str] = set()


def _clients() -> list[tuple[str, str]]:
    """The client kinds of this run: CLIENTS, and the baseline's "ours" beside ours."""
    import importlib.util

    clients = [
        (k, v)
        for k, v in CLIENTS
        if importlib.util.find_spec(OPTIONAL.get(k, "json")) and (not ONLY or k in ONLY)
    ]
    if not BASELINE:
        return clients
    label = BASELINE["label"]
    extra = [
        ("base_ours_messages", f"{label}: `sup.messages()`"),
        ("base_ours_batches", f"{label}: `sup.batches()`"),
    ]
    return clients[:2] + extra + clients[2:]


#: Average CPUs busy with other work above which a section carries a caution.
NOISY_LOAD = 0.25

SECTION_BEGIN = "<!-- receive_path: {label} -->"
SECTION_END = "<!-- /receive_path: {label} -->"


# -- frames ------------------------------------------------------------------------------


def trade_frame(i: int) -> bytes:
    """The ``i``-th trade frame (0-based) as the server sends it."""
    return (
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000000,"s":"BTCUSDT",'
        b'"t":%d,"p":"37000.01","q":"0.001","T":1700000000000,"m":true,"M":true}}'
        % (FIRST_TRADE_ID + i)
    )


AGG_STREAM = "btcusdt@aggTrade"


def agg_trade_frame(i: int) -> bytes:
    """The ``i``-th aggTrade frame (0-based), for the ``cryptofeed`` client.

    cryptofeed's Binance ``TRADES`` channel is ``<symbol>@aggTrade`` (subscribed in the
    URL, ``/stream?streams=btcusdt@aggTrade``), so its connection gets these instead of
    :func:`trade_frame`: the same price, quantity and times, the id in ``a`` (about 200
    bytes against 170).
    """
    return (
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1700000000000,'
        b'"s":"BTCUSDT","a":%d,"p":"37000.01","q":"0.001","f":100,"l":100,'
        b'"T":1700000000000,"m":true,"M":true}}' % (FIRST_TRADE_ID + i)
    )


def last_trade_id(n: int) -> int:
    return FIRST_TRADE_ID + n - 1


def subscribe_request(request_id: int = 1) -> str:
    return json.dumps(
        {"method": "SUBSCRIBE", "params": [STREAM], "id": request_id}, separators=(",", ":")
    )


def config_toml(port: int) -> str:
    """The supervisor config of the ``ours`` clients (and of the adapter micro-benchmark)."""
    return f"""
[supervisor]
shutdown_timeout = 5.0

[connections.bench]
exchange = "binance"
url = "ws://127.0.0.1:{port}/stream"
channels = ["trades"]
symbols = ["BTC-USDT"]
restart = "temporary"   # the server closes after N frames; no reconnect
"""


# -- server ------------------------------------------------------------------------------

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def server_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked, unfragmented server-to-client frame (RFC 6455 section 5.2)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


class _Reader:
    """Buffered reads from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("client hung up")
        self.buf += chunk

    def read_until(self, marker: bytes) -> bytes:
        while (end := self.buf.find(marker)) < 0:
            self.fill()
        end += len(marker)
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def read(self, size: int) -> bytes:
        while len(self.buf) < size:
            self.fill()
        out, self.buf = self.buf[:size], self.buf[size:]
        return out

    def frame(self) -> tuple[int, bytes]:
        """One client frame (masked): (opcode, unmasked payload)."""
        first, second = self.read(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self.read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self.read(8))
        mask = self.read(4) if second & 0x80 else b"\0\0\0\0"
        data = self.read(size)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return first & 0x0F, payload


def accept_upgrade(conn: socket.socket, reader: _Reader) -> None:
    """Read the client's upgrade request and answer 101 (RFC 6455 section 4.2.2).

    Raises:
        ValueError: the request is not a WebSocket upgrade.
    """
    request = reader.read_until(b"\r\n\r\n").decode("latin-1")
    match = re.search(r"(?im)^sec-websocket-key:\s*(\S+)\s*$", request)
    if match is None:
        raise ValueError(f"not a WebSocket upgrade: {request[:200]!r}")
    accept = base64.b64encode(hashlib.sha1(match.group(1).encode() + _WS_GUID).digest())
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def _serve_one(conn: socket.socket, stream_bytes: bytes, agg_bytes: bytes) -> None:
    reader = _Reader(conn)
    request = reader.read_until(b"\r\n\r\n")
    reader.buf = request + reader.buf  # accept_upgrade reads it again
    accept_upgrade(conn, reader)
    if f"streams={AGG_STREAM}".encode() in request.partition(b"\r\n")[0]:
        # Subscribed in the URL (cryptofeed): no SUBSCRIBE request, no ack.
        _stream_and_close(conn, reader, agg_bytes)
        return
    while True:
        opcode, payload = reader.frame()
        if opcode == 0x8:
            return
        if opcode != 0x1:
            continue
        request_json = json.loads(payload)
        if request_json.get("method") == "SUBSCRIBE" and request_json.get("params") == [STREAM]:
            break
        raise ValueError(f"unexpected request {payload!r}")
    ack = json.dumps({"result": None, "id": request_json["id"]}, separators=(",", ":"))
    conn.sendall(server_frame(ack.encode()))
    _stream_and_close(conn, reader, stream_bytes)


def _stream_and_close(conn: socket.socket, reader: _Reader, stream_bytes: bytes) -> None:
    conn.sendall(stream_bytes)
    conn.sendall(server_frame(struct.pack("!H", 1000), opcode=0x8))
    # Wait for the client's close frame (or hang-up) before closing the socket.
    conn.settimeout(30.0)
    try:
        while reader.frame()[0] != 0x8:
            pass
    except (ConnectionError, TimeoutError, OSError):
        pass


def serve(n: int, cpu: int | None) -> None:
    """Serve every connection, one at a time, until killed; print the port first."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    stream_bytes = b"".join(server_frame(trade_frame(i)) for i in range(n))
    agg_bytes = b"".join(server_frame(agg_trade_frame(i)) for i in range(n))
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                _serve_one(conn, stream_bytes, agg_bytes)
            except (ConnectionError, OSError, ValueError) as exc:
                print(f"server: {exc!r}", file=sys.stderr, flush=True)


# -- clients -----------------------------------------------------------------------------


class _Clock:
    """Wall and CPU time of this process from ``start()`` to ``stop()``."""

    def start(self) -> None:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def _check_trade(message: Any, n: int) -> None:
    from decimal import Decimal

    from supervisor import Trade

    if not (
        isinstance(message, Trade)
        and message.trade_id == str(last_trade_id(n))
        and message.price == Decimal("37000.01")
    ):
        raise AssertionError(f"unexpected last message {message!r}")


def _check_raw(message: str | bytes, n: int) -> None:
    text = message if isinstance(message, str) else message.decode()
    if f'"t":{last_trade_id(n)},' not in text:
        raise AssertionError(f"unexpected last frame {text!r}")


async def client_ours(
    port: int, n: int, clock: _Clock, *, batches: bool, transport: str | None = None
) -> None:
    from supervisor import loads_config, open_supervisor

    toml = config_toml(port)
    if transport is not None:
        toml += f'transport = "{transport}"\n'
    config = loads_config(toml, source="bench")
    count = 0
    last: Any = None
    clock.start()
    async with open_supervisor(config) as sup:
        if batches:
            async for batch in sup.batches():
                count += len(batch)
                if count >= n:
                    last = batch[-1]
                    break
        else:
            async for message in sup.messages():
                count += 1
                if count >= n:
                    last = message
                    break
        clock.stop()
    if count != n:
        raise AssertionError(f"got {count} messages, expected {n}")
    _check_trade(last, n)


async def client_trio_ws(port: int, n: int, clock: _Clock, *, adapter: bool) -> None:
    import trio_websocket

    url = f"ws://127.0.0.1:{port}/stream"
    options: dict[str, Any] = {}
    receive: Callable[[str | bytes], Any] | None = None
    if adapter:
        options = {
            "message_queue_size": ACTOR_MESSAGE_QUEUE,
            "receive_buffer_size": ACTOR_RECEIVE_BUFFER,
        }
        proto = live_adapter(port)
        receive = proto.receive_frame
    clock.start()
    async with trio_websocket.open_websocket_url(url, **options) as ws:
        await ws.send_message(subscribe_request())
        ack = await ws.get_message()
        if json.loads(ack) != {"result": None, "id": 1}:
            raise AssertionError(f"unexpected ack {ack!r}")
        get_message = ws.get_message
        if receive is None:
            for _ in range(n):
                message = await get_message()
            clock.stop()
            _check_raw(message, n)
        else:
            for _ in range(n):
                batch = receive(await get_message(), 0.0, 0.0)
            clock.stop()
            _check_trade(batch[-1], n)


async def client_websockets(port: int, n: int, clock: _Clock, *, decode: bool) -> None:
    import msgspec
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}/stream"
    clock.start()
    async with connect(url, compression=None, max_size=2**22) as ws:
        await ws.send(subscribe_request())
        ack = await ws.recv()
        if json.loads(ack) != {"result": None, "id": 1}:
            raise AssertionError(f"unexpected ack {ack!r}")
        recv = ws.recv
        if decode:
            json_decode = msgspec.json.decode
            for _ in range(n):
                decoded = json_decode(await recv())
            clock.stop()
            if decoded["data"]["t"] != last_trade_id(n):
                raise AssertionError(f"unexpected last message {decoded!r}")
        else:
            for _ in range(n):
                message = await recv()
            clock.stop()
            _check_raw(message, n)


async def client_aiohttp(port: int, n: int, clock: _Clock) -> None:
    import aiohttp
    import msgspec

    decode = msgspec.json.decode
    clock.start()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"ws://127.0.0.1:{port}/stream", compress=0, max_msg_size=2**22, autoping=True
        ) as ws,
    ):
        await ws.send_str(subscribe_request())
        ack = (await ws.receive()).data
        if json.loads(ack) != {"result": None, "id": 1}:
            raise AssertionError(f"unexpected ack {ack!r}")
        receive = ws.receive
        for _ in range(n):
            decoded = decode((await receive()).data)
        clock.stop()
    if decoded["data"]["t"] != last_trade_id(n):
        raise AssertionError(f"unexpected last message {decoded!r}")


async def client_picows(port: int, n: int, clock: _Clock) -> None:
    """picows (Cython WebSocket on asyncio): frames arrive by callback, no await each."""
    import asyncio

    import msgspec
    import picows

    decode = msgspec.json.decode
    done = asyncio.get_running_loop().create_future()

    class Listener(picows.WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.count = -1  # the ack comes first
            self.last: Any = None

        def on_ws_connected(self, transport: Any) -> None:
            transport.send(picows.WSMsgType.TEXT, subscribe_request().encode())

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not picows.WSMsgType.TEXT:
                return
            if self.count < 0:
                ack = frame.get_payload_as_bytes()
                if json.loads(ack) != {"result": None, "id": 1}:
                    done.set_exception(AssertionError(f"unexpected ack {ack!r}"))
                self.count = 0
                return
            self.last = decode(frame.get_payload_as_memoryview())
            self.count += 1
            if self.count == n:
                clock.stop()
                done.set_result(self.last)

    clock.start()
    transport, _ = await picows.ws_connect(Listener, f"ws://127.0.0.1:{port}/stream")
    last = await done
    transport.disconnect()
    await transport.wait_disconnected()
    if last["data"]["t"] != last_trade_id(n):
        raise AssertionError(f"unexpected last message {last!r}")


def client_cryptofeed(port: int, n: int, clock: _Clock) -> None:
    """cryptofeed's ``FeedHandler`` running its ``Binance`` feed, as a user runs it.

    The feed subscribes ``TRADES`` for ``BTC-USDT`` (``/stream?streams=btcusdt@aggTrade``),
    and every frame takes cryptofeed's own path: its ``websockets`` connection, its
    connection handler, ``Binance.message_handler`` (``yapic.json.loads`` with
    ``parse_float=Decimal``) and ``Binance._trade``, which builds its ``Trade`` (Cython,
    ``Decimal`` price and amount) and awaits our callback. FeedHandler's defaults stand
    (uvloop as the event loop, the 10 s ping, the 120 s stale-feed watcher). Three things
    are changed to point it at the local server, neither on the per-frame path: the
    symbol table is set in advance (cryptofeed reads it from ``/api/v3/exchangeInfo`` over
    HTTPS otherwise), and the endpoint is ``ws://127.0.0.1:PORT``: its ``WSAsyncConn``
    refuses anything but ``wss://``, so the feed is given ``wss://127.0.0.1:PORT`` and
    its ``connect()`` rewrites the scheme of the connections it makes; and an event loop
    is set before ``FeedHandler.run()``, which fails with uvloop >= 0.22 otherwise ("There
    is no current event loop").
    """
    import asyncio
    from decimal import Decimal

    from cryptofeed import FeedHandler
    from cryptofeed.connection import WebsocketEndpoint
    from cryptofeed.defines import BINANCE, SPOT, TRADES
    from cryptofeed.exchanges import Binance
    from cryptofeed.symbols import Symbols

    Symbols.set(
        BINANCE,
        {"BTC-USDT": "BTCUSDT"},
        {"tick_size": {"BTC-USDT": "0.01"}, "instrument_type": {"BTC-USDT": SPOT}},
    )

    class LocalBinance(Binance):  # type: ignore[misc]
        websocket_endpoints = [WebsocketEndpoint(f"wss://127.0.0.1:{port}")]

        def connect(self) -> list[Any]:
            connections: list[Any] = super().connect()
            for connection, *_ in connections:
                connection.address = "ws://" + connection.address.removeprefix("wss://")
            return connections

    count = 0
    last: Any = None

    async def on_trade(trade: Any, receipt_timestamp: float) -> None:
        nonlocal count, last
        count += 1
        if count == n:
            clock.stop()
            last = trade
            asyncio.get_running_loop().stop()

    handler = FeedHandler(config={"uvloop": True, "log": {"disabled": True}})
    handler.add_feed(
        LocalBinance(symbols=["BTC-USDT"], channels=[TRADES], callbacks={TRADES: on_trade})
    )
    # FeedHandler.run() asks for the current loop, which uvloop >= 0.22's policy no longer
    # makes up: set one (a uvloop loop: FeedHandler() installed uvloop's policy).
    asyncio.set_event_loop(asyncio.new_event_loop())
    clock.start()
    handler.run(install_signal_handlers=False)
    if not (
        count == n
        and last is not None
        and last.id == str(last_trade_id(n))
        and last.price == Decimal("37000.01")
        and last.symbol == "BTC-USDT"
    ):
        raise AssertionError(f"unexpected last trade {last!r} after {count} trades")


def run_client(kind: str, port: int, n: int) -> dict[str, float]:
    """One trial in this process; returns wall and CPU seconds."""
    clock = _Clock()
    if kind == "ours_reference":
        import trio

        trio.run(lambda: client_ours(port, n, clock, batches=False, transport="reference"))
    elif kind.startswith("ours"):
        import trio

        trio.run(lambda: client_ours(port, n, clock, batches=kind == "ours_batches"))
    elif kind == "aiohttp_msgspec":
        import asyncio

        asyncio.run(client_aiohttp(port, n, clock))
    elif kind == "picows_msgspec":
        import asyncio

        asyncio.run(client_picows(port, n, clock))
    elif kind == "cryptofeed":
        client_cryptofeed(port, n, clock)
    elif kind.startswith("trio_ws"):
        import trio

        trio.run(lambda: client_trio_ws(port, n, clock, adapter=kind == "trio_ws_adapter"))
    elif kind.startswith("websockets"):
        import asyncio

        asyncio.run(client_websockets(port, n, clock, decode=kind == "websockets_msgspec"))
    else:
        raise ValueError(f"unknown client {kind!r}")
    return {"wall": clock.wall, "cpu": clock.cpu}


# -- adapter micro-benchmark ---------------------------------------------------------------


def live_adapter(port: int = 9) -> Any:
    """A Binance adapter from the public API with its subscription acknowledged."""
    from actors.exchanges import ADAPTERS
    from supervisor import loads_config

    spec = loads_config(config_toml(port), source="bench").connections[0]
    proto = ADAPTERS["binance"](spec)
    proto.start_session(0.0)
    proto.tick(math.inf)
    for frame in proto.frames_to_send():
        request_id = json.loads(frame)["id"]
        proto.receive_frame(f'{{"result":null,"id":{request_id}}}', 0.0, 0.0)
    proto.events()
    if proto.state.name != "LIVE":
        raise AssertionError(f"adapter is {proto.state}, expected LIVE")
    return proto


def run_micro(n: int, reps: int) -> dict[str, list[float]]:
    """CPU seconds per pass over ``n`` frames, ``reps`` passes each, interleaved."""
    import msgspec

    frames = [trade_frame(i).decode() for i in range(n)]
    decode = msgspec.json.decode
    out: dict[str, list[float]] = {"adapter": [], "msgspec": []}
    for _ in range(reps):
        proto = live_adapter()
        receive = proto.receive_frame
        cpu0 = time.process_time()
        for frame in frames:
            batch = receive(frame, 0.0, 0.0)
        out["adapter"].append(time.process_time() - cpu0)
        _check_trade(batch[-1], n)
        if proto.events():
            raise AssertionError("the adapter reported events on trade frames")
        cpu0 = time.process_time()
        for frame in frames:
            decode(frame)
        out["msgspec"].append(time.process_time() - cpu0)
    return out


# -- orchestration -----------------------------------------------------------------------


def _pin_args(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["--cpu", str(cpu)]


#: Another interpreter whose environment has an earlier commit of this project installed
#: (``--baseline``): its "ours" clients and adapter run beside the current ones.
BASELINE: dict[str, str] = {}


def _child(args: list[str], cpu: int | None, python: str | None = None) -> dict[str, Any]:
    command = [python or sys.executable, __file__, *args, *_pin_args(cpu)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(args)} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def choose_cpus(pin: bool) -> tuple[int | None, int | None]:
    """(server CPU, client CPU), or Nones when not pinning."""
    if not pin:
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[-1], cpus[0]


def _cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return math.nan, math.nan
    ticks = [int(value) for value in fields]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / hz, steal / hz


def _own_seconds(server_pid: int | None = None) -> float:
    """CPU seconds of this process, its waited-for children and the running server."""
    times = os.times()
    own = times.user + times.system + times.children_user + times.children_system
    if server_pid is not None:
        try:
            fields = Path(f"/proc/{server_pid}/stat").read_text().rpartition(")")[2].split()
            own += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return math.nan
    return own


class _LoadMeter:
    """CPUs kept busy by anything but this benchmark (other processes, steal), on average.

    Other work competing for the two CPUs inflates even CPU time (shared caches, SMT
    siblings, the hypervisor), so every trial reports it next to its numbers.
    """

    def __init__(self, server_pid: int | None = None) -> None:
        self.server_pid = server_pid
        self.wall0 = time.perf_counter()
        (self.busy0, self.steal0), self.own0 = _cpu_seconds(), _own_seconds(server_pid)

    def read(self) -> tuple[float, float]:
        """(other load, steal) in CPUs since construction."""
        wall = time.perf_counter() - self.wall0
        (busy, steal), own = _cpu_seconds(), _own_seconds(self.server_pid)
        return (busy - self.busy0 - (own - self.own0)) / wall, (steal - self.steal0) / wall


def measure(n: int, reps: int, pin: bool) -> dict[str, Any]:
    server_cpu, client_cpu = choose_cpus(pin)
    run_meter = _LoadMeter()
    server = subprocess.Popen(
        [sys.executable, __file__, "_serve", "--n", str(n), *_pin_args(server_cpu)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        trials: dict[str, list[dict[str, float]]] = {kind: [] for kind, _ in _clients()}
        for rep in range(reps):
            for kind, _ in _clients():
                meter = _LoadMeter(server.pid)
                python = None
                if kind.startswith("base_"):
                    python, kind_run = BASELINE["python"], kind.removeprefix("base_")
                else:
                    kind_run = kind
                result = _child(
                    ["_client", kind_run, "--port", str(port), "--n", str(n)], client_cpu, python
                )
                result["other_load"] = meter.read()[0]
                trials[kind].append(result)
                print(
                    f"rep {rep + 1}/{reps} {kind:<20} {result['cpu'] / n * 1e6:7.2f} us/msg CPU"
                    f"  {n / result['wall']:>9,.0f} msg/s  other load {result['other_load']:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
        micro = _child(["_micro", "--n", str(n), "--reps", str(reps)], client_cpu)
        if BASELINE:
            base = _child(
                ["_micro", "--n", str(n), "--reps", str(reps)], client_cpu, BASELINE["python"]
            )
            micro["base_adapter"] = base["adapter"]
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
        "trials": trials,
        "micro": micro,
    }


def _spread(values: list[float], fmt: str) -> str:
    return (
        f"{format(statistics.median(values), fmt)} "
        f"[{format(min(values), fmt)}-{format(max(values), fmt)}]"
    )


def render_table(results: dict[str, Any]) -> str:
    n = results["n"]
    rows = [
        "| client | CPU µs/msg | msgs/s (wall) | cpu/wall | other load |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for kind, label in _clients():
        trials = results["trials"][kind]
        cpu_us = [t["cpu"] / n * 1e6 for t in trials]
        rate = [n / t["wall"] / 1000 for t in trials]
        busy = [t["cpu"] / t["wall"] for t in trials]
        other = [t["other_load"] for t in trials]
        rows.append(
            f"| {label} | {_spread(cpu_us, '.2f')} | {_spread(rate, ',.1f')} k "
            f"| {statistics.median(busy):.2f} | {statistics.median(other):.2f} |"
        )
    rows += [
        "",
        "| adapter micro-benchmark (no I/O) | CPU µs/frame |",
        "| --- | ---: |",
    ]
    micro_labels = {
        "adapter": "Binance adapter `receive_frame(frame, 0.0, 0.0)` → `Trade`",
        "msgspec": "`msgspec.json.decode(frame)` → `dict` (reference)",
    }
    if "base_adapter" in results["micro"]:
        micro_labels["base_adapter"] = (
            f"{BASELINE['label']}: Binance adapter `receive_frame` → `Trade`"
        )
    for key, label in micro_labels.items():
        per_frame = [seconds / n * 1e6 for seconds in results["micro"][key]]
        rows.append(f"| {label} | {_spread(per_frame, '.2f')} |")
    return "\n".join(rows)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
    model = match.group(1).strip() if match else "unknown"
    if flags and "hypervisor" in flags.group(1).split():
        model += " (virtualized)"
    return model


def _git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            # Only the measured code counts: bench/, BENCHMARKS.md... may be uncommitted.
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "supervisor", "actors"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" (with uncommitted changes in supervisor/ or actors/)" if dirty else "")


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
        f"wsproto {_version('wsproto')}, msgspec {_version('msgspec')}, "
        f"websockets {_version('websockets')}"
        + (
            f", cryptofeed {_version('cryptofeed')} (on uvloop {_version('uvloop')})"
            if "cryptofeed" in results["trials"]
            else ""
        ),
        f"- Code: commit {_git_commit()}",
        f"- N = {results['n']:,} messages per trial, {results['reps']} interleaved "
        f"repetitions; median [min-max]; run took {results['run_seconds']:.0f} s",
        f"- Other load: {results['other_load']:.2f} CPUs on average were busy with work other "
        f"than this benchmark during the run (steal {results['steal']:.2f}); the `other load` "
        "column is the median per trial",
    ]
    if results["other_load"] > NOISY_LOAD:
        machine.append(
            f"- **Caution: a shared machine.** Other work kept {results['other_load']:.2f} CPUs "
            "busy on average: CPU times are inflated and noisy, wall rates are unreliable. "
            "Compare with a run on a quiet machine only with this in mind."
        )
    return "\n".join(
        [
            SECTION_BEGIN.format(label=label),
            f"## {label}",
            "",
            *machine,
            "",
            "```sh",
            command,
            "```",
            "",
            render_table(results),
            SECTION_END.format(label=label),
        ]
    )


BENCHMARKS_HEADER = """# Benchmarks

## Receive path (`bench/receive_path.py`)

CPU time of the client process per received message, for our supervisor and for plain
WebSocket clients in the same run, against a local server that streams Binance
combined-stream trade frames as fast as the kernel takes them (see the script's docstring
for what each row does, how it is timed and the caveats). Lower CPU µs/msg is better;
`cpu/wall` near 1.00 means the client, not the server, was the bottleneck. Compare rows
within a section; compare sections only when they come from the same machine.
"""


def write_section(section: str, label: str) -> None:
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else BENCHMARKS_HEADER
    begin, end = SECTION_BEGIN.format(label=label), SECTION_END.format(label=label)
    start = text.find(begin)
    if start >= 0:
        stop = text.index(end, start) + len(end)
        text = text[:start] + section + text[stop:]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    BENCHMARKS.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="internal")
    serve_p = sub.add_parser("_serve", help=argparse.SUPPRESS)
    serve_p.add_argument("--n", type=int, required=True)
    serve_p.add_argument("--cpu", type=int)
    client_p = sub.add_parser("_client", help=argparse.SUPPRESS)
    client_p.add_argument("kind", choices=[kind for kind, _ in CLIENTS])
    client_p.add_argument("--port", type=int, required=True)
    client_p.add_argument("--n", type=int, required=True)
    client_p.add_argument("--cpu", type=int)
    micro_p = sub.add_parser("_micro", help=argparse.SUPPRESS)
    micro_p.add_argument("--n", type=int, required=True)
    micro_p.add_argument("--reps", type=int, required=True)
    micro_p.add_argument("--cpu", type=int)
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer messages, reps")
    parser.add_argument("--n", type=int, help=f"messages per trial (default {FULL_N:,})")
    parser.add_argument("--reps", type=int, help=f"repetitions (default {FULL_REPS})")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin server and client CPUs"
    )
    parser.add_argument(
        "--clients",
        metavar="KIND,...",
        help="run only these clients (default: all); one of "
        + ", ".join(kind for kind, _ in CLIENTS),
    )
    parser.add_argument("--write", action="store_true", help="add/replace a BENCHMARKS.md section")
    parser.add_argument("--label", help="section title in BENCHMARKS.md (default: the commit)")
    parser.add_argument(
        "--baseline",
        metavar="PYTHON",
        help="also run our clients and adapter with this interpreter (an environment with an "
        "earlier commit installed), interleaved in the same run",
    )
    parser.add_argument(
        "--baseline-label", default="baseline", help="what the baseline rows are called"
    )
    args = parser.parse_args(argv)
    if args.clients:
        known = {kind for kind, _ in CLIENTS}
        wanted = set(args.clients.split(","))
        if wanted - known:
            parser.error(
                f"--clients: unknown client {sorted(wanted - known)[0]!r} "
                f"(known: {', '.join(kind for kind, _ in CLIENTS)})"
            )
        ONLY.update(wanted)
    if args.baseline:
        BASELINE.update(python=args.baseline, label=args.baseline_label)

    if args.internal == "_serve":
        serve(args.n, args.cpu)
        return
    if args.internal in ("_client", "_micro") and args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.internal == "_client":
        print(json.dumps(run_client(args.kind, args.port, args.n)))
        return
    if args.internal == "_micro":
        print(json.dumps(run_micro(args.n, args.reps)))
        return

    n = args.n or (QUICK_N if args.quick else FULL_N)
    reps = args.reps or (QUICK_REPS if args.quick else FULL_REPS)
    results = measure(n, reps, args.pin)
    given = sys.argv[1:] if argv is None else argv
    command = ".venv/bin/python " + shlex.join(["bench/receive_path.py", *given])
    label = args.label or f"commit {_git_commit()}"
    section = render_section(results, label, command)
    print(section)
    if args.write:
        write_section(section, label)
        print(f"\nwrote section {label!r} to {BENCHMARKS}", file=sys.stderr)


if __name__ == "__main__":
    main()
