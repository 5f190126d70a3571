"""The fast transport (actors/net/fast_websocket.py) against a byte-level server on
loopback TCP: the server writes exactly the bytes a test names (several frames in one
write, frames glued to the handshake's answer, protocol violations), and reads what the
client wrote through wsproto's own frame parser, an independent check of our framing.

Time-dependent cases (the close timeout) run on memory streams with the MockClock; the
rest on real sockets with the real clock and no sleeps.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
import wsproto.frame_protocol as fp

from actors import ConnectError, ConnectionLost, HandshakeRejected
from actors.net.fast_websocket import FastWebSocket
from actors.net.websocket import ClosedNormally, WebSocket, open_websocket

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload: bytes | str, opcode: int = 0x1, *, fin: bool = True, rsv: int = 0) -> bytes:
    """One unmasked server frame (RFC 6455 section 5.2)."""
    data = payload.encode() if isinstance(payload, str) else payload
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(data)
    if size < 126:
        return struct.pack("!BB", first, size) + data
    if size < 1 << 16:
        return struct.pack("!BBH", first, 126, size) + data
    return struct.pack("!BBQ", first, 127, size) + data


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(struct.pack("!H", code) + reason.encode(), 0x8)


class Peer:
    """The server's end of one connection: reads the upgrade, answers, writes bytes."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.request = b""
        self.parser = fp.FrameProtocol(client=False, extensions=[])

    async def read_request(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            data = await self.stream.receive_some(65536)
            assert data, "the client hung up during the upgrade"
            self.buf += data
        end = self.buf.index(b"\r\n\r\n") + 4
        self.request, self.buf = bytes(self.buf[:end]), self.buf[end:]
        return self.request

    def accept_token(self) -> bytes:
        for line in self.request.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                return base64.b64encode(hashlib.sha1(value.strip() + _GUID).digest())
        raise AssertionError(f"no Sec-WebSocket-Key in {self.request!r}")

    async def accept(self, then: bytes = b"", *, headers: bytes | None = None) -> None:
        """Answer 101 and write ``then`` in the same write."""
        await self.read_request()
        if headers is None:
            headers = (
                b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + self.accept_token() + b"\r\n"
            )
        await self.stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\n" + headers + b"\r\n" + then
        )

    async def client_frames(self, count: int) -> list[fp.Frame]:
        """The next ``count`` frames the client wrote, parsed by wsproto."""
        out: list[fp.Frame] = []
        if self.buf:
            self.parser.receive_bytes(bytes(self.buf))
            self.buf.clear()
        while True:
            out.extend(self.parser.received_frames())
            if len(out) >= count:
                return out
            data = await self.stream.receive_some(65536)
            assert data, f"the client hung up after {len(out)} frames"
            self.parser.receive_bytes(data)


@asynccontextmanager
async def tcp_pair(
    serve: Callable[[Peer], object] | None = None, *, max_message_size: int = 1 << 20
) -> AsyncIterator[tuple[WebSocket, Peer]]:
    """A fast-transport WebSocket to a loopback listener, and the server's Peer, after
    ``await serve(peer)`` ran the server's side of the handshake (default: accept)."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    peers: list[Peer] = []
    served = trio.Event()

    async def server() -> None:
        peer = Peer(await listener.accept())
        peers.append(peer)
        await (serve or Peer.accept)(peer)  # type: ignore[misc]
        served.set()

    async def connector(url: str) -> trio.abc.Stream:
        return await trio.open_tcp_stream("127.0.0.1", port)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        async with open_websocket(
            nursery,
            f"ws://127.0.0.1:{port}/ws",
            connector=connector,
            connect_timeout=10.0,
            max_message_size=max_message_size,
            close_timeout=0.5,
            transport="fast",
        ) as ws:
            assert isinstance(ws, FastWebSocket)
            await served.wait()  # the server's write of its answer has returned
            yield ws, peers[0]
        await peers[0].stream.aclose()
        await listener.aclose()


async def test_frames_glued_to_the_upgrade_answer_are_the_first_messages() -> None:
    async def serve(peer: Peer) -> None:
        await peer.accept(frame("one") + frame(b"\x00\x01", 0x2) + frame("three"))

    with trio.fail_after(10):
        async with tcp_pair(serve) as (ws, peer):
            assert await ws.receive_batch() == ["one", b"\x00\x01", "three"]
    request = peer.request.decode()
    assert request.startswith("GET /ws HTTP/1.1\r\n")
    assert "Host: 127.0.0.1:" in request and "Sec-WebSocket-Version: 13\r\n" in request
    assert "Sec-WebSocket-Extensions" not in request  # nothing offered: no deflate


async def test_every_frame_of_one_read_comes_in_one_batch() -> None:
    trades = [f'{{"t":{i}}}' for i in range(300)]
    with trio.fail_after(10):
        async with tcp_pair() as (ws, peer):
            await peer.stream.send_all(b"".join(frame(t) for t in trades[:150]))
            first = await ws.receive_batch()
            await peer.stream.send_all(b"".join(frame(t) for t in trades[150:]))
            got = list(first)
            while len(got) < 300:
                got += await ws.receive_batch()
    assert got == trades
    assert len(first) > 1  # one read took many frames (the kernel delivered them at once)


async def test_a_ping_is_answered_in_its_place_and_receive_hands_out_one_at_a_time() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ws, peer):
            await peer.stream.send_all(frame("a") + frame(b"hb-1", 0x9) + frame("b"))
            assert await ws.receive() == "a"
            assert await ws.receive() == "b"
            (pong,) = await peer.client_frames(1)
    assert (pong.opcode, bytes(pong.payload)) == (fp.Opcode.PONG, b"hb-1")


async def test_our_ping_reports_its_round_trip_when_the_matching_pong_comes() -> None:
    rtts: list[float] = []
    with trio.fail_after(10):
        async with tcp_pair() as (ws, peer):
            ws.ping(rtts.append)
            ws.ping(rtts.append)  # one in flight: ignored
            (ping,) = await peer.client_frames(1)
            assert ping.opcode == fp.Opcode.PING and len(ping.payload) == 4
            other = frame(b"nope", 0xA)
            answer = frame(bytes(ping.payload), 0xA)
            await peer.stream.send_all(other + answer + frame("after"))
            assert await ws.receive_batch() == ["after"]
    assert len(rtts) == 1 and 0 <= rtts[0] < 10


@pytest.mark.parametrize("code", [1000, 1001, 4000])
async def test_messages_before_the_close_come_first_then_the_close_decides(code: int) -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ws, peer):
            await peer.stream.send_all(frame("last") + close_frame(code, "bye") + frame("never"))
            assert await ws.receive_batch() == ["last"]
            if code == 1000:
                with pytest.raises(ClosedNormally):
                    await ws.receive_batch()
            else:
                with pytest.raises(ConnectionLost) as caught:
                    await ws.receive_batch()
                assert (caught.value.code, caught.value.reason) == (code, "bye")
                name = {1001: "GOING_AWAY", 4000: "PRIVATE_RESERVED"}[code]
                assert str(caught.value) == (
                    f"connection lost: close code {code} ({name}) 'bye' from {ws.url}"
                )
            with pytest.raises((ClosedNormally, ConnectionLost)):
                await ws.send("too late")  # the socket is over
            (echo,) = await peer.client_frames(1)
    assert echo.opcode == fp.Opcode.CLOSE
    assert echo.payload[0] == code  # wsproto parses a Close into (code, reason)


@pytest.mark.parametrize(
    ("bad", "code", "reason"),
    [
        (frame("x", rsv=4), 1002, None),
        (frame(b"\xff\xfe"), 1007, None),
        (frame("y" * 2000), 1009, "Exceeded maximum message size: 1024 bytes"),
    ],
    ids=["rsv-bit", "invalid-utf8", "too-big"],
)
async def test_a_protocol_violation_closes_with_its_code_after_what_came_before(
    bad: bytes, code: int, reason: str | None
) -> None:
    with trio.fail_after(10):
        async with tcp_pair(max_message_size=1024) as (ws, peer):
            await peer.stream.send_all(frame("fine") + bad)
            assert await ws.receive_batch() == ["fine"]
            with pytest.raises(ConnectionLost) as caught:
                await ws.receive_batch()
            (sent,) = await peer.client_frames(1)
    assert caught.value.code == code
    assert sent.opcode == fp.Opcode.CLOSE
    assert sent.payload[0] == code  # wsproto parses a Close into (code, reason)
    if reason is not None:
        assert caught.value.reason == reason
        assert sent.payload[1] == reason


async def test_a_tcp_end_without_a_close_is_1006() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ws, peer):
            await peer.stream.send_all(frame("x"))
            await peer.stream.aclose()
            assert await ws.receive_batch() == ["x"]
            with pytest.raises(ConnectionLost) as caught:
                await ws.receive_batch()
    assert caught.value.code == 1006
    assert str(caught.value) == f"connection lost: close code 1006 (ABNORMAL_CLOSURE) from {ws.url}"


async def test_leaving_the_block_closes_with_1000_and_waits_for_the_answer() -> None:
    closes: list[fp.Frame] = []

    async def answer(peer: Peer) -> None:
        (close,) = await peer.client_frames(1)
        closes.append(close)
        await peer.stream.send_all(close_frame(1000))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery, tcp_pair() as (ws, peer):
            await ws.send("subscribe")
            (text,) = await peer.client_frames(1)
            assert (text.opcode, text.payload) == (fp.Opcode.TEXT, "subscribe")
            nursery.start_soon(answer, peer)
    (close,) = closes
    assert close.opcode == fp.Opcode.CLOSE
    assert close.payload == (1000, "")


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (
            b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 4\r\n\r\nslow",
            HandshakeRejected,
            "rejected the WebSocket upgrade with HTTP 429",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n",
            ConnectError,
            "answered the WebSocket upgrade with a wrong Sec-WebSocket-Accept",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            ConnectError,
            "answered the WebSocket upgrade with an extension we did not offer",
        ),
        (b"", ConnectError, "closed the connection during the WebSocket handshake"),
        (b"NOT HTTP AT ALL\r\n\r\n", ConnectError, "answered the WebSocket upgrade with bad HTTP"),
    ],
    ids=["429", "bad-accept", "unoffered-extension", "hang-up", "garbage"],
)
async def test_a_failed_upgrade_names_the_url_and_why(
    answer: bytes, error: type[Exception], text: str
) -> None:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]

    async def server() -> None:
        async with await listener.accept() as stream:
            peer = Peer(stream)
            await peer.read_request()
            await stream.send_all(answer.replace(b"{accept}", peer.accept_token()))

    async def connector(url: str) -> trio.abc.Stream:
        return await trio.open_tcp_stream("127.0.0.1", port)

    with trio.fail_after(10):
        async with listener, trio.open_nursery() as nursery:
            nursery.start_soon(server)
            with pytest.raises(error) as caught:
                async with open_websocket(
                    nursery,
                    f"ws://127.0.0.1:{port}/ws",
                    connector=connector,
                    connect_timeout=10.0,
                    max_message_size=1 << 20,
                    close_timeout=0.5,
                    transport="fast",
                ):
                    raise AssertionError("the upgrade should have failed")
    assert str(caught.value).startswith(f"ws://127.0.0.1:{port}/ws ")
    assert text in str(caught.value)
    if isinstance(caught.value, HandshakeRejected):
        assert caught.value.status == 429


async def test_a_cancelled_receive_loses_nothing() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (ws, peer):
            with trio.move_on_after(0.01) as scope:
                await ws.receive_batch()  # nothing sent yet
            assert scope.cancelled_caught
            await peer.stream.send_all(frame("kept"))
            assert await ws.receive_batch() == ["kept"]


async def test_a_silent_peer_gets_close_timeout_to_answer_our_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    peer = Peer(server)

    async def connector(url: str) -> trio.abc.Stream:
        return client

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.accept)
            async with open_websocket(
                nursery,
                "ws://venue.invalid/ws",
                connector=connector,
                connect_timeout=10.0,
                max_message_size=1 << 20,
                close_timeout=2.5,
                transport="fast",
            ):
                started = trio.current_time()
            # the peer never answers: the close waited close_timeout, then dropped
            assert trio.current_time() - started == 2.5
            (close,) = await peer.client_frames(1)
    assert close.opcode == fp.Opcode.CLOSE
