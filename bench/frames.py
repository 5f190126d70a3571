"""CPU cost per frame of parsing server frames: our FrameReader against wsproto.

What is measured
----------------
One buffer of ``--frames`` (10,000) server frames, each an unmasked, final text frame
carrying a Binance combined-stream trade message (the first line of
``tests/data/binance/spot_trade.jsonl``, 168 bytes, with the trade id counted up so every
frame differs), is cut into ``--chunk`` (64 KiB) pieces, the way a socket read returns
them, and fed to:

``FrameReader.feed``
    ``actors.net.frames.FrameReader``: one call per chunk, every message of the chunk in
    the returned list.
``FrameReader.feed, one frame per call``
    The same reader fed one frame per call (a paced feed: one frame per wake-up).
``wsproto FrameProtocol``
    wsproto's frame layer (``FrameProtocol(client=True, extensions=[])``):
    ``receive_bytes(chunk)`` then every frame of ``received_frames()``.
``wsproto WSConnection``
    wsproto's full event path, what trio-websocket uses: a client ``WSConnection`` after
    a real opening handshake (answered by a server ``WSConnection``),
    ``receive_data(chunk)`` then every event of ``events()``.

Each parser must return all ``--frames`` messages, equal to the payloads sent (checked
once per parser before timing). Time is process CPU time (``time.process_time``) over the
whole buffer, divided by the frame count; ``--reps`` (5) repetitions, interleaved (A B C D
A B C D ...), reported as median [min-max] µs per frame, and the ratio of each median to
``FrameReader.feed``'s.

Run: ``python bench/frames.py`` (options: ``--frames``, ``--chunk``, ``--reps``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable

import wsproto
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage
from wsproto.frame_protocol import FrameProtocol

from actors.net.frames import FrameReader

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "binance" / "spot_trade.jsonl"


def trade_messages(count: int) -> list[str]:
    """``count`` Binance trade messages, the recorded one with its trade id counted up."""
    record = json.loads(SAMPLE.read_text(encoding="utf-8").splitlines()[0])
    first = record["data"]["t"]
    out = []
    for i in range(count):
        record["data"]["t"] = first + i
        out.append(json.dumps(record, separators=(",", ":")))
    return out


def server_frames(messages: list[str]) -> list[bytes]:
    server = FrameProtocol(client=False, extensions=[])
    return [bytes(server.send_data(message)) for message in messages]


def run_ours(chunks: list[bytes]) -> list[str]:
    reader = FrameReader(1 << 24)
    out: list[str] = []
    for chunk in chunks:
        out.extend(reader.feed(chunk))  # type: ignore[arg-type]
    return out


def run_frame_protocol(chunks: list[bytes]) -> list[str]:
    protocol = FrameProtocol(client=True, extensions=[])
    out: list[str] = []
    parts: list[str] = []
    for chunk in chunks:
        protocol.receive_bytes(chunk)
        for frame in protocol.received_frames():
            # A frame cut by a chunk boundary comes out in pieces: join them.
            if frame.message_finished:
                if parts:
                    parts.append(frame.payload)  # type: ignore[arg-type]
                    out.append("".join(parts))
                    parts = []
                else:
                    out.append(frame.payload)  # type: ignore[arg-type]
            else:
                parts.append(frame.payload)  # type: ignore[arg-type]
    return out


def connected_client() -> WSConnection:
    """A client WSConnection past a real opening handshake."""
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="localhost", target="/ws")))
    for event in server.events():
        assert isinstance(event, Request)
    client.receive_data(server.send(AcceptConnection()))
    assert [type(e) for e in client.events()] == [AcceptConnection]
    return client


def run_connection(chunks: list[bytes], client: WSConnection) -> list[str]:
    out: list[str] = []
    parts: list[str] = []
    for chunk in chunks:
        client.receive_data(chunk)
        for event in client.events():
            if isinstance(event, TextMessage):
                # As above: a message cut by a chunk boundary comes in pieces.
                if event.message_finished:
                    out.append("".join((*parts, event.data)) if parts else event.data)
                    parts = []
                else:
                    parts.append(event.data)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--frames", type=int, default=10_000, help="frames per buffer")
    parser.add_argument("--chunk", type=int, default=64 * 1024, help="bytes per feed")
    parser.add_argument("--reps", type=int, default=5, help="repetitions")
    args = parser.parse_args(argv)
    for name in ("frames", "chunk", "reps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be 1 or more, got {getattr(args, name)}")

    messages = trade_messages(args.frames)
    frames = server_frames(messages)
    stream = b"".join(frames)
    chunks = [stream[i : i + args.chunk] for i in range(0, len(stream), args.chunk)]

    cases: dict[str, Callable[[], list[str]]] = {
        "`FrameReader.feed`, 64 KiB chunks": lambda: run_ours(chunks),
        "`FrameReader.feed`, one frame per call": lambda: run_ours(frames),
        "wsproto `FrameProtocol`": lambda: run_frame_protocol(chunks),
        "wsproto `WSConnection` events": lambda: run_connection(chunks, connected_client()),
    }
    if args.chunk != 64 * 1024:
        cases = {name.replace("64 KiB", f"{args.chunk} B"): run for name, run in cases.items()}
    for name, run in cases.items():
        if run() != messages:
            print(f"{name} did not return the {args.frames} messages sent", file=sys.stderr)
            return 1

    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.reps):
        for name, run in cases.items():
            start = time.process_time()
            run()
            times[name].append((time.process_time() - start) / args.frames * 1e6)

    lengths = sorted({len(f) for f in frames})
    print(
        f"{args.frames} text frames of {lengths[0]}-{lengths[-1]} bytes "
        f"({len(messages[0])}-byte payloads), {len(chunks)} chunks of up to {args.chunk} "
        f"bytes, {args.reps} reps; CPython {platform.python_version()}, "
        f"wsproto {wsproto.__version__}, {platform.machine()}\n"
    )
    base = statistics.median(next(iter(times.values())))
    print("| parser | CPU µs per frame, median [min-max] | vs ours |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"| {name} | {median:.2f} [{min(values):.2f}-{max(values):.2f}] "
            f"| {median / base:.1f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
