"""WebSocket frames, client side, without I/O: parse what the server sends, encode what we send.

Theory of operation
-------------------
RFC 6455 after the opening handshake, seen from the client, with no extension
negotiated. :class:`FrameReader` takes the bytes a read returned, in chunks of any size
cut anywhere (1 byte to MiBs), and hands back every complete *message* and control event
in the chunk in one list: a text message as ``str``, a binary message as ``bytes``,
:class:`Ping`, :class:`Pong` and :class:`Close`. :func:`encode_frame` builds the masked
frames a client sends. Pure: no I/O, no trio, no clock; the caller reads the socket,
answers pings (``encode_frame(Opcode.PONG, ping.payload, mask=os.urandom(4))``), echoes a
close and closes the stream.

Why it exists (issue 16): wsproto parses a frame in about 12 µs of CPython, which caps any
receive path built on it near 90 k messages per second. The common case on an exchange
feed is many small unfragmented text frames in one read; this reader parses all of them
in one loop over one buffer:

- the buffer is one ``bytearray`` and an offset: a chunk is appended once, frames are
  sliced out of it at their offset, and the consumed prefix is deleted once per
  :meth:`FrameReader.feed`, not once per frame; when nothing is pending and the chunk is
  ``bytes`` (a paced feed, whole frames per read), it is parsed in place and only an
  unfinished tail is copied;
- a final, unmasked, RSV-free text or binary frame with a short or 16-bit length while
  no fragmented message is open takes a fast branch: two or four byte reads, one slice,
  one UTF-8 decode;
- everything else (continuations, control frames, 64-bit lengths, every violation) goes
  through one general path that checks in wsproto's order (below);
- a frame whose payload has not all arrived is left in the buffer, and the reader
  remembers how many bytes it needs, so a 16 MiB frame arriving in 64 KiB reads costs one
  append per read, not a re-parse; its declared length is checked against
  ``max_message_size`` as soon as the header is there, before any payload is buffered.

Fragmented messages are reassembled; control frames between fragments are returned at
their place, before the message they interrupt. A text message's UTF-8 is checked frame
by frame with an incremental decoder, so an invalid byte fails at the frame that carries
it, not at the end of the message.

What a violation does (RFC 6455 section 7.4.1 codes), raised as :class:`FrameError`:

- 1002 (protocol error): an RSV bit set (nothing negotiated gives them a meaning), a
  masked frame from the server (section 5.1), an unknown opcode, a control frame longer
  than 125 bytes or fragmented (section 5.5), a continuation frame with no message
  started, a new text/binary frame while a fragmented message is open (section 5.4), a
  length not in its minimal encoding or a 64-bit length with the top bit set (section
  5.2), a close payload of 1 byte, a close code that may not be sent (section 7.4);
- 1007: invalid UTF-8 in a text message or a close reason (section 8.1);
- 1009: a message longer than ``max_message_size``, counted over the reassembled message
  and raised as soon as the declared lengths pass it.

The messages that came before the violation in the same chunk are carried by the error
(:attr:`FrameError.events`): deliver them, then close with the error's code. After a
violation the reader is dead: every later :meth:`FrameReader.feed` raises the same code.

Where we follow wsproto rather than choose (it is the reference the tests compare to, on
the same bytes, with hypothesis):

- checks run in wsproto's order (opcode, fragmented control frame, control length, length
  encoding, RSV bits, masking, then the message state), so a frame with two faults gets
  the same code from both;
- close codes: 1000-1003, 1007-1013 and 3000-4999 are accepted; 1004-1006, 1014-2999,
  1015, below 1000 and above 4999 are refused with 1002. RFC 6455 section 7.4.2 leaves
  1000-2999 to the RFC and its extensions; IANA has since registered 1012-1014, and
  wsproto accepts 1012 and 1013 but not 1014 ("bad gateway"). We match wsproto.
- non-minimal length encodings fail (section 5.2 makes the minimal encoding a MUST for
  the sender; failing the receiver is wsproto's choice and ours);
- **data after a Close frame is ignored**: wsproto's frame layer stops parsing at the
  Close frame (``FrameProtocol._parse_more_gen``), so bytes after it, even garbage, are
  never looked at. :meth:`FrameReader.feed` returns the Close and, from then on, ``[]``.
  RFC 6455 section 5.5.1: the server sends nothing after its Close, and the client only
  waits for the TCP close.

One difference in timing, not in outcome: a continuation frame with no message open (or
a new data frame inside a fragmented message) fails here at its header; wsproto fails when
the first payload byte arrives.

**No permessage-deflate.** We do not offer it in the handshake (trio-websocket offers no
extensions, and wsproto refuses a server's unoffered ones), so RSV1 is always a protocol
error here. Inflating costs CPU on every frame, the exchanges' frames are small enough
that compression saves little, and an inflater is a decompression-bomb surface to guard.

Encoding: :func:`encode_frame` masks with the key the caller passes (a client MUST mask
with a fresh unpredictable key, section 5.3: ``os.urandom(4)``) as one integer XOR over the
whole payload rather than a loop per byte.
"""

from __future__ import annotations

import codecs
import enum
from typing import Final

import msgspec

from actors._errors import ProtocolError

__all__ = [
    "INVALID_PAYLOAD",
    "MAX_CONTROL_PAYLOAD",
    "MESSAGE_TOO_BIG",
    "PROTOCOL_ERROR",
    "Close",
    "FrameError",
    "FrameReader",
    "Message",
    "Opcode",
    "Ping",
    "Pong",
    "close_payload",
    "encode_frame",
]

#: RFC 6455 section 5.5: control frames carry at most 125 payload bytes.
MAX_CONTROL_PAYLOAD: Final = 125
#: RFC 6455 section 7.4.1.
PROTOCOL_ERROR: Final = 1002
#: RFC 6455 section 7.4.1: data not consistent with the message type (bad UTF-8).
INVALID_PAYLOAD: Final = 1007
#: RFC 6455 section 7.4.1.
MESSAGE_TOO_BIG: Final = 1009

#: Close codes 1000-2999 a peer may send: RFC 6455 section 7.4.1 (1000-1003, 1007-1011)
#: and the IANA registry's 1012-1013, as wsproto accepts them (``CloseReason``).
_PROTOCOL_CLOSE_CODES: Final = frozenset({1000, 1001, 1002, 1003, *range(1007, 1014)})

_new_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class Opcode(enum.IntEnum):
    """RFC 6455 section 5.2 frame opcodes."""

    #: A later fragment of a text or binary message.
    CONTINUATION = 0
    #: The first (or only) frame of a UTF-8 text message.
    TEXT = 1
    #: The first (or only) frame of a binary message.
    BINARY = 2
    #: Close handshake; payload is an optional code and UTF-8 reason.
    CLOSE = 8
    #: Ping; the peer answers with a pong carrying the same payload.
    PING = 9
    #: Pong, solicited or not.
    PONG = 10


class Ping(msgspec.Struct, frozen=True, kw_only=True):
    """A ping from the server: the caller must answer with a pong carrying ``payload``.

    Attributes:
        payload: application data, at most 125 bytes.
    """

    payload: bytes


class Pong(msgspec.Struct, frozen=True, kw_only=True):
    """A pong from the server.

    Attributes:
        payload: application data, at most 125 bytes.
    """

    payload: bytes


class Close(msgspec.Struct, frozen=True, kw_only=True):
    """The server's Close frame: the caller must echo a close, then close the stream.

    Attributes:
        code: the close code, ``None`` when the payload was empty (RFC 6455 section 7.1.5
            calls that 1005, "no status received").
        reason: the UTF-8 reason, ``""`` when there is none.
    """

    code: int | None
    reason: str


#: What :meth:`FrameReader.feed` hands back, in order.
Message = str | bytes | Ping | Pong | Close


class FrameError(ProtocolError):
    """The server broke RFC 6455: the caller must close the connection with :attr:`code`.

    Attributes:
        code: the close code to send: 1002 (protocol error), 1007 (invalid UTF-8) or 1009
            (message too big).
        reason: what was wrong, short enough for a close frame's reason (ASCII, at most
            123 bytes).
        events: the messages and control events parsed, in the same
            :meth:`FrameReader.feed` call, before the violation; deliver them first.
    """

    def __init__(self, code: int, reason: str, *, events: list[Message] | None = None) -> None:
        super().__init__(f"WebSocket protocol error {code}: {reason}")
        self.code = code
        self.reason = reason
        self.events: list[Message] = [] if events is None else events


def _close_code_allowed(code: int) -> bool:
    """Whether a peer may send ``code`` in a Close frame (see the module docstring)."""
    if 3000 <= code <= 4999:
        return True
    return code in _PROTOCOL_CLOSE_CODES


class FrameReader:
    """Parses the frames a server sends into messages and control events.

    Args:
        max_message_size: the longest message accepted, in payload bytes over all its
            fragments; longer fails with 1009.

    Raises:
        ValueError: ``max_message_size`` is negative.
    """

    __slots__ = (
        "_blobs",
        "_buf",
        "_closed",
        "_decoder",
        "_error",
        "_max",
        "_need",
        "_opcode",
        "_size",
        "_texts",
    )

    def __init__(self, max_message_size: int) -> None:
        if max_message_size < 0:
            raise ValueError(f"max_message_size must be 0 or more, got {max_message_size!r}")
        self._max = max_message_size
        self._buf = bytearray()
        #: Bytes the buffer must hold before parsing can make progress.
        self._need = 2
        self._error: FrameError | None = None
        self._closed = False
        #: Opcode of the open fragmented message, 0 when none is open.
        self._opcode = 0
        self._texts: list[str] = []
        self._blobs: list[bytes] = []
        #: Payload bytes of the open fragmented message so far.
        self._size = 0
        self._decoder: codecs.IncrementalDecoder | None = None

    @property
    def closed(self) -> bool:
        """Whether the server's Close frame has been returned (later bytes are ignored)."""
        return self._closed

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Add bytes read from the stream; return every message and event they complete.

        Args:
            data: the next bytes from the server, of any length (empty is allowed).

        Returns:
            In stream order: ``str`` for a text message, ``bytes`` for a binary message,
            :class:`Ping`, :class:`Pong`, :class:`Close`. Empty when no message completed,
            and always empty once a :class:`Close` was returned.

        Raises:
            FrameError: the server broke RFC 6455 (see the module docstring for each code
                and reason); its ``events`` carry what came before in this chunk. Raised
                again, with the same code and reason, by every later call.
        """
        if self._error is not None:
            raise FrameError(self._error.code, self._error.reason)
        if self._closed:
            return []
        buf: bytes | bytearray
        if not self._buf and type(data) is bytes:
            # Nothing pending (a paced feed: whole frames per read): parse the caller's
            # bytes in place and keep only an unfinished tail.
            buf = data
            n = len(buf)
            if n < self._need:
                self._buf += data
                return []
        else:
            buf = self._buf
            buf += data
            n = len(buf)
            if n < self._need:
                return []
        out: list[Message] = []
        append = out.append
        limit = self._max
        pos = 0
        try:
            while n - pos >= 2:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                # Fast branch: FIN, no RSV, TEXT or BINARY, unmasked, minimal 7- or
                # 16-bit length, no fragmented message open, within the size limit.
                if b1 < 126:
                    start = pos + 2
                    length = b1
                elif b1 == 126:
                    if n - pos < 4:
                        self._need = 4
                        break
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                    start = pos + 4
                    if length < 126:
                        length = -1
                else:
                    length = -1
                if (b0 == 0x81 or b0 == 0x82) and 0 <= length <= limit and not self._opcode:
                    end = start + length
                    if end > n:
                        self._need = end - pos
                        break
                    if b0 == 0x81:
                        try:
                            append(buf[start:end].decode())
                        except UnicodeDecodeError as exc:
                            raise FrameError(
                                INVALID_PAYLOAD,
                                f"invalid UTF-8 in a text message at byte {exc.start}",
                            ) from None
                    else:
                        append(bytes(buf[start:end]))
                    pos = end
                    continue
                end = self._frame(buf, pos, n, out)
                if end < 0:
                    break
                pos = end
                if self._closed:
                    self._buf.clear()
                    return out
            else:
                self._need = 2
        except FrameError as exc:
            exc.events = out
            self._error = exc
            self._buf.clear()
            raise
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < n:
            self._buf += buf[pos:]
        return out

    def _frame(self, buf: bytes | bytearray, pos: int, n: int, out: list[Message]) -> int:
        """Parse one frame at ``pos`` on the general path.

        Returns:
            The offset after the frame, or -1 (and ``_need`` set) when it is incomplete.
        """
        avail = n - pos
        b0 = buf[pos]
        b1 = buf[pos + 1]
        opcode = b0 & 0x0F
        if opcode not in _OPCODES:
            raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        fin = b0 & 0x80
        control = opcode >= 8
        if control and not fin:
            raise FrameError(PROTOCOL_ERROR, f"fragmented control frame (opcode {opcode:#x})")
        length = b1 & 0x7F
        if control and length > MAX_CONTROL_PAYLOAD:
            raise FrameError(
                PROTOCOL_ERROR, f"control frame (opcode {opcode:#x}) longer than 125 bytes"
            )
        header = 2
        if length == 126:
            if avail < 4:
                self._need = 4
                return -1
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            header = 4
            if length < 126:
                raise FrameError(PROTOCOL_ERROR, f"length {length} sent in 16 bits")
        elif length == 127:
            if avail < 10:
                self._need = 10
                return -1
            length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            header = 10
            if length < 65536:
                raise FrameError(PROTOCOL_ERROR, f"length {length} sent in 64 bits")
            if length >> 63:
                raise FrameError(PROTOCOL_ERROR, "64-bit length with the top bit set")
        if b0 & 0x70:
            raise FrameError(
                PROTOCOL_ERROR, f"reserved bits {b0 & 0x70:#x} set, no extension negotiated"
            )
        if b1 & 0x80:
            raise FrameError(PROTOCOL_ERROR, "masked frame from the server")
        if not control:
            if opcode == 0:
                if not self._opcode:
                    raise FrameError(PROTOCOL_ERROR, "continuation frame with no message started")
            elif self._opcode:
                raise FrameError(PROTOCOL_ERROR, f"opcode {opcode:#x} inside a fragmented message")
            if self._size + length > self._max:
                raise FrameError(
                    MESSAGE_TOO_BIG,
                    f"message of at least {self._size + length} bytes, limit {self._max}",
                )
        end = pos + header + length
        if end > n:
            self._need = end - pos
            return -1
        payload = buf[pos + header : end]
        if opcode == 9:
            out.append(Ping(payload=bytes(payload)))
        elif opcode == 10:
            out.append(Pong(payload=bytes(payload)))
        elif opcode == 8:
            out.append(_parse_close(payload))
            self._closed = True
        else:
            self._data(opcode, fin, payload, out)
        return end

    def _data(self, opcode: int, fin: int, payload: bytes | bytearray, out: list[Message]) -> None:
        """Add a text, binary or continuation frame to the message it belongs to."""
        if opcode:
            self._opcode = opcode
            self._size = 0
            self._decoder = _new_utf8_decoder() if opcode == 1 else None
        self._size += len(payload)
        decoder = self._decoder
        if decoder is not None:
            try:
                text = decoder.decode(payload, bool(fin))
            except UnicodeDecodeError as exc:
                # exc.start counts from the bytes the decoder held back from the last
                # frame (an unfinished sequence); they are still held after the error.
                held = len(decoder.getstate()[0])
                at = self._size - len(payload) - held + exc.start
                raise FrameError(
                    INVALID_PAYLOAD, f"invalid UTF-8 in a text message at byte {at}"
                ) from None
            self._texts.append(text)
            if fin:
                out.append("".join(self._texts))
                self._texts = []
        else:
            self._blobs.append(bytes(payload))
            if fin:
                out.append(b"".join(self._blobs))
                self._blobs = []
        if fin:
            self._opcode = 0
            self._size = 0
            self._decoder = None


_OPCODES: Final = frozenset(int(op) for op in Opcode)


def _parse_close(payload: bytes | bytearray) -> Close:
    """The :class:`Close` a close frame's payload says (RFC 6455 section 5.5.1)."""
    if not payload:
        return Close(code=None, reason="")
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = (payload[0] << 8) | payload[1]
    if not _close_code_allowed(code):
        raise FrameError(PROTOCOL_ERROR, f"close code {code} may not be sent")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError as exc:
        raise FrameError(
            INVALID_PAYLOAD, f"invalid UTF-8 in the close reason at byte {exc.start}"
        ) from None
    return Close(code=code, reason=reason)


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a Close frame: the code in two bytes, then the reason in UTF-8.

    Args:
        code: a close code a peer may send (1000-1003, 1007-1013, 3000-4999).
        reason: why, at most 123 bytes once encoded.

    Returns:
        The payload for ``encode_frame(Opcode.CLOSE, ...)``.

    Raises:
        ValueError: ``code`` may not be sent, or ``reason`` is longer than 123 bytes.
    """
    if not _close_code_allowed(code):
        raise ValueError(f"close code {code!r} may not be sent (RFC 6455 section 7.4)")
    encoded = reason.encode()
    if len(encoded) > MAX_CONTROL_PAYLOAD - 2:
        raise ValueError(
            f"close reason is {len(encoded)} bytes in UTF-8, at most 123 fit: {reason!r}"
        )
    return code.to_bytes(2, "big") + encoded


def encode_frame(opcode: Opcode, payload: bytes, *, mask: bytes, fin: bool = True) -> bytes:
    """One client frame, masked (RFC 6455 sections 5.2 and 5.3).

    Args:
        opcode: the frame type.
        payload: the unmasked payload (text already encoded as UTF-8).
        mask: the 4-byte masking key; pass ``os.urandom(4)``, fresh for each frame.
        fin: whether this is the last frame of its message (``False`` for all but the
            last fragment; control frames are never fragmented).

    Returns:
        The frame's bytes, ready to write.

    Raises:
        ValueError: ``mask`` is not 4 bytes, or a control frame's payload is longer than
            125 bytes or ``fin`` is false for it.
    """
    if len(mask) != 4:
        raise ValueError(f"mask must be 4 bytes, got {len(mask)}: {mask!r}")
    length = len(payload)
    if opcode >= 8:
        if length > MAX_CONTROL_PAYLOAD:
            raise ValueError(f"{opcode.name} payload is {length} bytes, at most 125 allowed")
        if not fin:
            raise ValueError(f"{opcode.name} frames cannot be fragmented (fin=False)")
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        header = bytes((first, 0x80 | length))
    elif length < 65536:
        header = bytes((first, 0xFE)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, 0xFF)) + length.to_bytes(8, "big")
    if not length:
        return header + mask
    key = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
    return header + mask + masked
