"""The sans-IO frame reader and encoder (actors/net/frames.py).

Differential first: hypothesis builds server byte streams (valid messages, fragments with
control frames between them, every close code, and every kind of violation), cuts them
at arbitrary points, and feeds the same chunks to our :class:`FrameReader` and to
wsproto's own frame layer (``FrameProtocol(client=True, extensions=[])``). wsproto hands
back frames, possibly partial; the test reassembles them into messages. Both must give
the same messages in the same chunks, or fail with the same close code after the same
messages. Then exact unit tests for each error reason, the size limit and the encoder.
"""

from __future__ import annotations

import inspect
import itertools
import os
import pathlib
import struct
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, ParseFailed
from wsproto.frame_protocol import Opcode as WsOpcode

from actors._errors import ProtocolError, SupervisorError
from actors.net.frames import (
    Close,
    FrameError,
    FrameReader,
    Message,
    Opcode,
    Ping,
    Pong,
    close_payload,
    encode_frame,
)

NO_LIMIT = 2**63


# --- raw server frames, any field wrong on purpose -------------------------------------


def raw_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    width: int | None = None,
    declared: int | None = None,
) -> bytes:
    """A frame as a server might send it; ``width`` forces the length encoding (7, 16, 64)."""
    length = len(payload) if declared is None else declared
    if width is None:
        width = 7 if length < 126 else 16 if length < 65536 else 64
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if width == 7:
        head = bytes((first, mask_bit | length))
    elif width == 16:
        head = bytes((first, mask_bit | 126)) + struct.pack("!H", length)
    else:
        head = bytes((first, mask_bit | 127)) + struct.pack("!Q", length)
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


# --- running both parsers ----------------------------------------------------------------


def run_ours(chunks: list[bytes], limit: int = NO_LIMIT) -> tuple[list[list[Message]], int | None]:
    reader = FrameReader(limit)
    per_feed: list[list[Message]] = []
    for i, chunk in enumerate(chunks):
        # bytes are parsed in place when nothing is pending; the others are copied:
        # cycle the three types so every path meets every cut.
        data = chunk if i % 3 == 0 else bytearray(chunk) if i % 3 == 1 else memoryview(chunk)
        try:
            per_feed.append(reader.feed(data))
        except FrameError as exc:
            per_feed.append(exc.events)
            # Dead from here on: the same code again, nothing delivered.
            with pytest.raises(FrameError) as again:
                reader.feed(b"\x81\x00")
            assert (again.value.code, again.value.reason) == (exc.code, exc.reason)
            assert again.value.events == []
            return per_feed, exc.code
    return per_feed, None


def run_wsproto(chunks: list[bytes]) -> tuple[list[list[Message]], int | None]:
    """wsproto's frames reassembled into messages, one list per chunk."""
    protocol = FrameProtocol(client=True, extensions=[])
    parts: list[str | bytes] = []
    per_feed: list[list[Message]] = []
    for chunk in chunks:
        protocol.receive_bytes(chunk)
        events: list[Message] = []
        per_feed.append(events)
        try:
            for frame in protocol.received_frames():
                if frame.opcode is WsOpcode.PING:
                    assert isinstance(frame.payload, bytes)
                    events.append(Ping(payload=frame.payload))
                elif frame.opcode is WsOpcode.PONG:
                    assert isinstance(frame.payload, bytes)
                    events.append(Pong(payload=frame.payload))
                elif frame.opcode is WsOpcode.CLOSE:
                    assert isinstance(frame.payload, tuple)
                    code, reason = frame.payload
                    # wsproto reports an empty close payload as 1005 (RFC 6455 7.1.5).
                    events.append(Close(code=None if code == 1005 else int(code), reason=reason))
                else:
                    assert isinstance(frame.payload, str | bytes)
                    parts.append(frame.payload)
                    if frame.message_finished:
                        if frame.opcode is WsOpcode.TEXT:
                            events.append("".join(p for p in parts if isinstance(p, str)))
                        else:
                            events.append(b"".join(p for p in parts if isinstance(p, bytes)))
                        parts = []
        except ParseFailed as exc:
            return per_feed, int(exc.code)
    return per_feed, None


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted({p for p in points if 0 < p < len(stream)}), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)] or [b""]


def assert_same(stream: bytes, points: list[int]) -> tuple[list[list[Message]], int | None]:
    chunks = cut(stream, points)
    ours, our_code = run_ours(chunks)
    theirs, their_code = run_wsproto(chunks)
    assert our_code == their_code
    if our_code is None:
        # Same messages, released by the same chunk.
        assert ours == theirs
    else:
        # Both failed with the same code after the same messages. (We may fail a few
        # bytes earlier: a stray continuation fails here at its header, in wsproto at
        # its first payload byte; and UTF-8 is checked here when a frame is complete.)
        assert [m for feed in ours for m in feed] == [m for feed in theirs for m in feed]
    return ours, our_code


# --- strategies -------------------------------------------------------------------------

CLOSE_CODES = st.one_of(
    st.integers(0, 5000),
    st.sampled_from([999, 1000, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 2999, 3000, 4999]),
    st.integers(0, 65535),
)
TEXTS = st.text(max_size=40)
INVALID_UTF8 = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"a\x80b", b"\xf4\x90\x80\x80"])


@st.composite
def text_payload(draw: st.DrawFn) -> bytes:
    text = draw(TEXTS).encode()
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(INVALID_UTF8) + text[at:]
    return text


@st.composite
def blob(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 19))
    if kind == 0:  # a 16-bit length
        return bytes([draw(st.integers(0, 255))]) * draw(st.integers(126, 300))
    if kind == 1:  # a 64-bit length
        return bytes([draw(st.integers(0, 255))]) * draw(st.sampled_from([65535, 65536, 70000]))
    return draw(st.binary(max_size=40))


@st.composite
def control_frame(draw: st.DrawFn) -> bytes:
    opcode = draw(st.sampled_from([8, 9, 10]))
    if opcode == 8:
        form = draw(st.integers(0, 5))
        if form == 0:
            payload = b""
        elif form == 1:
            payload = bytes([draw(st.integers(0, 255))])
        else:
            reason = draw(text_payload())[:100]
            payload = struct.pack("!H", draw(CLOSE_CODES)) + reason
    else:
        payload = draw(st.binary(max_size=125))
    return raw_frame(opcode, payload)


@st.composite
def message_frames(draw: st.DrawFn) -> list[bytes]:
    """One text or binary message, in 1-4 fragments, control frames between them."""
    text = draw(st.booleans())
    payload = draw(text_payload()) if text else draw(blob())
    count = draw(st.integers(1, 4))
    points = sorted(
        draw(st.lists(st.integers(0, len(payload)), min_size=count - 1, max_size=count - 1))
    )
    pieces = [payload[a:b] for a, b in zip([0, *points], [*points, len(payload)], strict=True)]
    frames: list[bytes] = []
    for i, piece in enumerate(pieces):
        opcode = (1 if text else 2) if i == 0 else 0
        frames.append(raw_frame(opcode, piece, fin=i == len(pieces) - 1))
        if i < len(pieces) - 1 and draw(st.integers(0, 2)) == 0:
            frames.append(draw(control_frame()))
    return frames


FAULTS = ["opcode", "fin", "rsv", "mask", "width", "top bit", "continuation", "control length"]


@st.composite
def faulty_frame(draw: st.DrawFn) -> bytes:
    """A plausible frame with one or two faults injected, or every field chosen freely."""
    opcode = draw(st.sampled_from([1, 2, 8, 9, 10]))
    if opcode == 8:
        payload = struct.pack("!H", draw(CLOSE_CODES)) + draw(text_payload())[:100]
    elif opcode in (9, 10):
        payload = draw(st.binary(max_size=125))
    else:
        payload = draw(st.one_of(text_payload(), blob()))
    fin, rsv, mask, width, declared = True, 0, None, None, None
    faults = draw(st.lists(st.sampled_from([*FAULTS, "free"]), min_size=1, max_size=2))
    for fault in faults:
        if fault == "opcode":
            opcode = draw(st.integers(0, 15))
        elif fault == "fin":
            fin = False
        elif fault == "rsv":
            rsv = draw(st.integers(1, 7))
        elif fault == "mask":
            mask = draw(st.binary(min_size=4, max_size=4))
        elif fault == "width" and declared is None:
            width = 64 if len(payload) < 65536 and draw(st.booleans()) else 16
            width = max(width, 16 if len(payload) < 65536 else 64)
        elif fault == "top bit":  # header only: the length can never arrive
            payload, width, declared = b"", 64, 2**63 + draw(st.integers(0, 5))
        elif fault == "continuation":
            opcode = 0
        elif fault == "control length":
            opcode, payload = draw(st.sampled_from([8, 9, 10])), b"x" * draw(st.integers(126, 130))
        else:
            opcode, fin = draw(st.integers(0, 15)), draw(st.booleans())
            rsv = draw(st.sampled_from([0, 0, 1, 2, 4, 7]))
            mask = draw(st.sampled_from([None, b"\x01\x02\x03\x04"]))
    return raw_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask, width=width, declared=declared)


@st.composite
def server_stream(draw: st.DrawFn) -> bytes:
    frames: list[bytes] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 9))
        if kind < 5:
            frames.extend(draw(message_frames()))
        elif kind < 7:
            frames.append(draw(control_frame()))
        else:
            frames.append(draw(faulty_frame()))
    return b"".join(frames)


@st.composite
def cut_points(draw: st.DrawFn, stream: bytes) -> list[int]:
    mode = draw(st.integers(0, 4))
    if mode == 0:  # whole
        return []
    if mode == 1:  # one byte at a time (short streams only; long ones get random cuts)
        return list(range(1, len(stream))) if len(stream) <= 2000 else [len(stream) // 2]
    if mode == 2:  # fixed chunk size
        size = draw(st.integers(1, 200))
        return list(range(size, len(stream), size))
    return draw(st.lists(st.integers(0, len(stream)), max_size=30))


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.data())
def test_same_as_wsproto_on_random_streams(data: st.DataObject) -> None:
    stream = data.draw(server_stream())
    assert_same(stream, data.draw(cut_points(stream)))


@SETTINGS
@given(st.data())
def test_same_as_wsproto_on_valid_streams(data: st.DataObject) -> None:
    # Only well-formed messages and pings/pongs (no close, no faults): long streams
    # through without error unless the text is invalid UTF-8.
    frames: list[bytes] = []
    for _ in range(data.draw(st.integers(0, 12))):
        frames.extend(data.draw(message_frames()))
        if data.draw(st.booleans()):
            frames.append(
                raw_frame(data.draw(st.sampled_from([9, 10])), data.draw(st.binary(max_size=125)))
            )
    stream = b"".join(frames)
    assert_same(stream, data.draw(cut_points(stream)))


@SETTINGS
@given(st.data())
def test_same_as_wsproto_on_one_fault_between_valid_messages(data: st.DataObject) -> None:
    before = [f for _ in range(data.draw(st.integers(0, 3))) for f in data.draw(message_frames())]
    after = [f for _ in range(data.draw(st.integers(0, 2))) for f in data.draw(message_frames())]
    stream = b"".join([*before, data.draw(faulty_frame()), *after])
    assert_same(stream, data.draw(cut_points(stream)))


@settings(max_examples=1000, deadline=None)
@given(code=st.integers(0, 65535), reason=text_payload(), points=st.lists(st.integers(0, 140)))
def test_every_close_code_as_wsproto_judges_it(code: int, reason: bytes, points: list[int]) -> None:
    stream = raw_frame(1, b"before") + raw_frame(8, struct.pack("!H", code) + reason[:123])
    ours, our_code = assert_same(stream + b"after the close: ignored", points)
    if our_code is None:
        assert [m for feed in ours for m in feed] == [
            "before",
            Close(code=code, reason=reason.decode()),
        ]


def test_all_close_codes_0_to_5000_exhaustively() -> None:
    accepted = []
    for code in range(0, 5001):
        stream = raw_frame(8, struct.pack("!H", code) + b"bye")
        _, our_code = assert_same(stream, [])
        if our_code is None:
            accepted.append(code)
        else:
            assert our_code == 1002
    assert accepted == [1000, 1001, 1002, 1003, *range(1007, 1014), *range(3000, 5000)]


# --- exact values: messages -------------------------------------------------------------


def test_many_frames_in_one_chunk_and_one_byte_at_a_time() -> None:
    stream = (
        raw_frame(1, "héllo".encode())
        + raw_frame(2, b"\x00\x01")
        + raw_frame(9, b"p")
        + raw_frame(1, b"x" * 200)
        + raw_frame(2, b"y" * 70000)
    )
    expected: list[Message] = ["héllo", b"\x00\x01", Ping(payload=b"p"), "x" * 200, b"y" * 70000]
    assert FrameReader(NO_LIMIT).feed(stream) == expected
    reader = FrameReader(NO_LIMIT)
    one_by_one = [m for i in range(len(stream)) for m in reader.feed(stream[i : i + 1])]
    assert one_by_one == expected


def test_accepts_bytearray_and_memoryview_and_empty_chunks() -> None:
    reader = FrameReader(100)
    assert reader.feed(b"") == []
    assert reader.feed(bytearray(raw_frame(1, b"a"))) == ["a"]
    assert reader.feed(memoryview(raw_frame(2, b"b"))) == [b"b"]


def test_an_unfinished_tail_is_kept_and_the_callers_buffer_is_not() -> None:
    first, second = raw_frame(1, b"one"), raw_frame(2, b"x" * 300)
    reader = FrameReader(1000)
    assert reader.feed(first + second[:5]) == ["one"]  # bytes, parsed in place
    chunk = bytearray(second[5:-1])
    assert reader.feed(chunk) == []
    chunk[:] = b"\x00" * len(chunk)  # the caller reuses its read buffer
    assert reader.feed(second[-1:] + first) == [b"x" * 300, "one"]
    assert reader.feed(b"\x81") == []  # one byte of a header, nothing pending before
    assert reader.feed(b"\x02hi") == ["hi"]


def test_fragments_with_control_frames_between_them() -> None:
    stream = (
        raw_frame(1, "h\xc3".encode("latin-1"), fin=False)  # "h" and half of "é"
        + raw_frame(9, b"1")
        + raw_frame(0, b"\xa9", fin=False)
        + raw_frame(10, b"2")
        + raw_frame(0, b"!", fin=True)
    )
    assert FrameReader(NO_LIMIT).feed(stream) == [Ping(payload=b"1"), Pong(payload=b"2"), "hé!"]


def test_close_events_and_data_after_close_ignored() -> None:
    reader = FrameReader(100)
    stream = raw_frame(8, b"") + b"\xff\xff garbage"
    assert reader.feed(stream) == [Close(code=None, reason="")]
    assert reader.closed
    assert reader.feed(b"\x81\x01a") == []
    assert FrameReader(100).feed(raw_frame(8, close_payload(1001, "going away"))) == [
        Close(code=1001, reason="going away")
    ]


def test_events_before_a_violation_ride_on_the_error() -> None:
    reader = FrameReader(100)
    with pytest.raises(FrameError) as caught:
        reader.feed(raw_frame(1, b"a") + raw_frame(9, b"") + raw_frame(3, b""))
    assert caught.value.events == ["a", Ping(payload=b"")]
    assert str(caught.value) == "WebSocket protocol error 1002: unknown opcode 0x3"


# --- exact values: every error reason ---------------------------------------------------

ERRORS = [
    (raw_frame(3, b""), 1002, "unknown opcode 0x3"),
    (raw_frame(0xB, b""), 1002, "unknown opcode 0xb"),
    (raw_frame(9, b"", fin=False), 1002, "fragmented control frame (opcode 0x9)"),
    (raw_frame(8, b"x" * 126), 1002, "control frame (opcode 0x8) longer than 125 bytes"),
    (raw_frame(1, b"x" * 125, width=16), 1002, "length 125 sent in 16 bits"),
    (raw_frame(2, b"x" * 65535, width=64), 1002, "length 65535 sent in 64 bits"),
    (raw_frame(2, b"", width=64, declared=2**63), 1002, "64-bit length with the top bit set"),
    (raw_frame(1, b"a", rsv=4), 1002, "reserved bits 0x40 set, no extension negotiated"),
    (raw_frame(1, b"a", rsv=1), 1002, "reserved bits 0x10 set, no extension negotiated"),
    (raw_frame(1, b"a", mask=b"abcd"), 1002, "masked frame from the server"),
    (raw_frame(0, b"a"), 1002, "continuation frame with no message started"),
    (
        raw_frame(1, b"a", fin=False) + raw_frame(2, b"b"),
        1002,
        "opcode 0x2 inside a fragmented message",
    ),
    (raw_frame(8, b"\x03"), 1002, "close frame with a 1-byte payload"),
    (raw_frame(8, b"\x03\xe7"), 1002, "close code 999 may not be sent"),
    (raw_frame(8, b"\x03\xed"), 1002, "close code 1005 may not be sent"),
    (raw_frame(8, b"\x03\xf6"), 1002, "close code 1014 may not be sent"),
    (raw_frame(8, b"\x13\x88"), 1002, "close code 5000 may not be sent"),
    (raw_frame(8, b"\x03\xe8ok\xff"), 1007, "invalid UTF-8 in the close reason at byte 2"),
    (raw_frame(1, b"ab\xff"), 1007, "invalid UTF-8 in a text message at byte 2"),
    (raw_frame(1, b"x" * 130 + b"\xc3"), 1007, "invalid UTF-8 in a text message at byte 130"),
    (
        raw_frame(1, b"abc", fin=False) + raw_frame(0, b"d\xff"),
        1007,
        "invalid UTF-8 in a text message at byte 4",
    ),
    (
        raw_frame(1, b"a\xc3", fin=False) + raw_frame(0, b""),
        1007,
        "invalid UTF-8 in a text message at byte 1",
    ),
    (raw_frame(1, b"x" * 11), 1009, "message of at least 11 bytes, limit 10"),
    (
        raw_frame(2, b"x" * 6, fin=False) + raw_frame(0, b"x" * 5),
        1009,
        "message of at least 11 bytes, limit 10",
    ),
]


@pytest.mark.parametrize(("stream", "code", "reason"), ERRORS, ids=[e[2] for e in ERRORS])
def test_each_violation_code_and_reason(stream: bytes, code: int, reason: str) -> None:
    reader = FrameReader(10 if code == 1009 else NO_LIMIT)
    with pytest.raises(FrameError, match=rf"^WebSocket protocol error {code}: ") as caught:
        reader.feed(stream)
    assert (caught.value.code, caught.value.reason) == (code, reason)
    # The reason fits in the close frame the caller answers with.
    assert len(caught.value.reason.encode("ascii")) <= 123
    with pytest.raises(FrameError) as again:
        reader.feed(b"")
    assert (again.value.code, again.value.reason) == (code, reason)
    if code != 1009:  # wsproto has no size limit
        assert run_wsproto([stream])[1] == code


# --- max_message_size -------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
def test_size_limit_boundary(size: int) -> None:
    assert FrameReader(size).feed(raw_frame(2, b"z" * size)) == [b"z" * size]
    assert FrameReader(size).feed(raw_frame(1, b"z" * size)) == ["z" * size]
    with pytest.raises(FrameError) as caught:
        FrameReader(size).feed(raw_frame(1, b"z" * (size + 1)))
    assert (caught.value.code, caught.value.reason) == (
        1009,
        f"message of at least {size + 1} bytes, limit {size}",
    )


def test_size_limit_across_fragments_fails_at_the_header_of_the_fragment_past_it() -> None:
    ok = raw_frame(1, b"abcd", fin=False) + raw_frame(9, b"") + raw_frame(0, b"efghij")
    assert FrameReader(10).feed(ok) == [Ping(payload=b""), "abcdefghij"]
    reader = FrameReader(10)
    assert reader.feed(raw_frame(1, b"abcd", fin=False) + raw_frame(0, b"efgh", fin=False)) == []
    with pytest.raises(FrameError) as caught:
        reader.feed(raw_frame(0, b"ijk")[:2])  # only the header: 8 + 3 > 10
    assert (caught.value.code, caught.value.reason) == (
        1009,
        "message of at least 11 bytes, limit 10",
    )


def test_huge_declared_length_fails_before_its_payload() -> None:
    reader = FrameReader(1 << 20)
    header = raw_frame(2, b"", width=64, declared=1 << 40)
    assert len(header) == 10
    assert reader.feed(header[:9]) == []
    with pytest.raises(FrameError) as caught:
        reader.feed(header[9:])
    assert (caught.value.code, caught.value.reason) == (
        1009,
        f"message of at least {1 << 40} bytes, limit {1 << 20}",
    )


def test_large_frame_in_64k_chunks() -> None:
    payload = os.urandom(3 * 1024 * 1024 + 5)
    stream = raw_frame(2, payload) + raw_frame(1, b"next")
    reader = FrameReader(len(payload))
    out = [m for i in range(0, len(stream), 65536) for m in reader.feed(stream[i : i + 65536])]
    assert out == [payload, "next"]


def test_negative_limit_refused() -> None:
    with pytest.raises(ValueError, match=r"^max_message_size must be 0 or more, got -1$"):
        FrameReader(-1)


# --- encode_frame -----------------------------------------------------------------------


def mask_reference(payload: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 125, 126, 65535, 65536, 70001])
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_wsproto_server_parses_what_we_encode(opcode: Opcode, length: int) -> None:
    payload = bytes(97 + i % 26 for i in range(length))
    mask = b"\x9a\x00\xffZ"
    frame = encode_frame(opcode, payload, mask=mask)
    header = {0: 2, 1: 2, 3: 2, 4: 2, 5: 2, 125: 2, 126: 4, 65535: 4}.get(length, 10)
    assert frame[header : header + 4] == mask
    assert frame[header + 4 :] == mask_reference(payload, mask)
    server = FrameProtocol(client=False, extensions=[])
    server.receive_bytes(frame)
    frames = list(server.received_frames())
    got = b"".join(
        f.payload if isinstance(f.payload, bytes) else str(f.payload).encode() for f in frames
    )
    assert got == payload
    assert frames[-1].message_finished
    assert {f.opcode for f in frames} == {WsOpcode(opcode)}


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG])
@pytest.mark.parametrize("length", [0, 1, 125])
def test_control_frames_encode(opcode: Opcode, length: int) -> None:
    payload = bytes(range(length))
    server = FrameProtocol(client=False, extensions=[])
    server.receive_bytes(encode_frame(opcode, payload, mask=os.urandom(4)))
    [frame] = server.received_frames()
    assert (frame.opcode, frame.payload) == (WsOpcode(opcode), payload)


def test_close_encodes() -> None:
    server = FrameProtocol(client=False, extensions=[])
    server.receive_bytes(
        encode_frame(Opcode.CLOSE, close_payload(1000, "done é"), mask=b"\x01\x02\x03\x04")
    )
    [frame] = server.received_frames()
    assert (frame.opcode, frame.payload) == (WsOpcode.CLOSE, (1000, "done é"))


def test_fragments_encode() -> None:
    mask = b"abcd"
    frames = (
        encode_frame(Opcode.TEXT, "hé".encode()[:2], mask=mask, fin=False)
        + encode_frame(Opcode.PING, b"", mask=mask)
        + encode_frame(Opcode.CONTINUATION, "hé".encode()[2:] + b"!", mask=mask)
    )
    assert frames[:2] == b"\x01\x82"
    server = FrameProtocol(client=False, extensions=[])
    server.receive_bytes(frames)
    got = [(f.opcode, f.payload, f.message_finished) for f in server.received_frames()]
    assert got == [
        (WsOpcode.TEXT, "h", False),
        (WsOpcode.PING, b"", True),
        (WsOpcode.TEXT, "é!", True),
    ]


@given(payload=st.binary(max_size=300), mask=st.binary(min_size=4, max_size=4))
def test_masking_equals_the_byte_by_byte_reference(payload: bytes, mask: bytes) -> None:
    frame = encode_frame(Opcode.BINARY, payload, mask=mask)
    assert frame.endswith(mask + mask_reference(payload, mask))
    assert len(frame) == (2 if len(payload) < 126 else 4) + 4 + len(payload)


def test_encode_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^mask must be 4 bytes, got 3: b'abc'$"):
        encode_frame(Opcode.TEXT, b"", mask=b"abc")
    with pytest.raises(ValueError, match=r"^PING payload is 126 bytes, at most 125 allowed$"):
        encode_frame(Opcode.PING, b"x" * 126, mask=b"abcd")
    with pytest.raises(ValueError, match=r"^CLOSE frames cannot be fragmented \(fin=False\)$"):
        encode_frame(Opcode.CLOSE, b"", mask=b"abcd", fin=False)


def test_close_payload() -> None:
    assert close_payload(1000) == b"\x03\xe8"
    assert close_payload(4999, "é") == b"\x13\x87\xc3\xa9"
    assert len(close_payload(3000, "x" * 123)) == 125
    with pytest.raises(
        ValueError, match=r"^close code 1005 may not be sent \(RFC 6455 section 7.4\)$"
    ):
        close_payload(1005)
    with pytest.raises(
        ValueError, match=r"^close reason is 124 bytes in UTF-8, at most 123 fit: 'x{124}'$"
    ):
        close_payload(1000, "x" * 124)


def test_opcode_values() -> None:
    assert [int(op) for op in Opcode] == [0, 1, 2, 8, 9, 10]
    assert [op.name for op in Opcode] == [op.name for op in WsOpcode]


def test_frame_error_is_a_protocol_error() -> None:
    assert issubclass(FrameError, ProtocolError)
    assert issubclass(FrameError, SupervisorError)


def test_bench_runs_and_counts_right() -> None:
    # Smoke only: the benchmark runs, every parser returned every message, a table came out.
    bench = pathlib.Path(__file__).resolve().parent.parent / "bench" / "frames.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--frames", "300", "--reps", "1", "--chunk", "1000"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert (done.returncode, done.stderr) == (0, "")
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| parser",
        "| `FrameReader.feed`, 1000 B chunks",
        "| `FrameReader.feed`, one frame per call",
        "| wsproto `FrameProtocol`",
        "| wsproto `WSConnection` events",
    ]


def test_bench_refuses_bad_arguments() -> None:
    bench = pathlib.Path(__file__).resolve().parent.parent / "bench" / "frames.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--reps", "0"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "frames.py: error: --reps must be 1 or more, got 0"


def test_all_names_what_the_module_defines() -> None:
    import actors.net.frames as frames

    public = {
        name
        for name, value in vars(frames).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and getattr(value, "__module__", frames.__name__) == frames.__name__
    }
    # ``Message`` is a type alias (a ``types.UnionType``): it names no module of its own.
    assert set(frames.__all__) == public | {"Message"}
