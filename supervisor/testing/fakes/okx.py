"""A fake OKX v5 public WebSocket server that enforces OKX's rules.

Theory of operation
-------------------
:class:`FakeOkx` is a ``SessionHandler`` for ``open_fake_exchange(handler=...)``: the
generic fake owns the transport (so close, reset, stall, garbage, refuse... still
apply) and calls the handler once per accepted session. One handler instance serves
every session of the fake and keeps what tests inspect (:attr:`FakeOkx.closes`) and
what they inject (gaps, notices, muted topics, unanswered pings).

Each session runs three tasks in its own nursery:

- the request reader: answers ``ping`` with ``pong``, subscribe/unsubscribe requests
  with one ack or error per arg, and enforces the request rules;
- the data pusher: once the session has a subscription, every ``fake.interval`` seconds
  one frame per subscribed topic, shaped like OKX's 2025 frames (``books``: a snapshot
  right after the ack, then updates whose ``prevSeqId`` is the previous ``seqId``;
  without ``book_snapshots`` only the updates);
- the watchdog: closes the session when one of OKX's idle rules is broken.

Rules enforced, each constant a constructor parameter (defaults from OKX's docs,
https://www.okx.com/docs-v5/en/#overview-websocket and
https://www.okx.com/docs-v5/en/#error-code-websocket-public):

- no subscription within ``no_subscribe_timeout`` (30 s) of connecting: close 4004;
- nothing pushed for ``idle_timeout`` (30 s): close 4004 "No data received in 30s".
  Every frame the fake sends counts (data, acks, errors, ``pong``, and frames a test
  scripts through the generic fake, such as a garbage frame): a quiet channel survives
  only if the client pings;
- more than ``max_requests`` (480) subscribe/unsubscribe requests within
  ``request_window`` (3600 s): error 60014 "Requests too frequent." then close 4002
  (OKX documents the error, not the close code: 4002 "Invalid Request" is our choice);
- a request over ``max_request_bytes`` (65536) bytes of UTF-8: close 1009 "Request
  message exceeds the maximum frame length" (OKX's documented close frame);
- an unknown channel or instId: ``{"event":"error","code":"60018",...}`` naming both;
  invalid JSON 60012, unknown op 60019, missing/invalid args 60013.

The books are real (:mod:`supervisor.testing.fakes.venue_book`): one
:class:`VenueBook` per instId, shared by every session. A ``books`` snapshot is that
book as it stands (``seqId`` its sequence, ``prevSeqId`` -1), and each update is the
book's next change (``SEQ_STEP`` apart); a session behind another one reads the changes
the other one caused, so every session sees the same book under the same ``seqId``.
``checksum`` is 0, as OKX sends since 2026-06-23, or with ``checksums=True`` the real
CRC32 of the top 25 levels. :meth:`FakeOkx.books_body` is the REST
``GET /api/v5/market/books`` answer from the same book, and :meth:`FakeOkx.venue_book`
lets a test ask what the book was at any recent ``seqId``.

Numbered mode (``numbered=True``, for soaks that account for every message): the fake
models one market that every session watches, as the real venue does. Each topic's
count (trade ids) continues where the furthest session left it, instead
of starting again per session, so two sessions open at once send the same ids for the
same market events (what make-before-break must deduplicate: a session that subscribes
while another one streams the topic also gets the event on its way to that one) and a
reconnect sees the ids move on; trade ``n`` has tradeId ``1_000_000 + n`` in every
session, and a ticker's ``bidSz`` is its count plus one, so a normalized ticker can be
told apart from every other.
"""

from __future__ import annotations

import collections
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, Final, final

import msgspec
import trio
from trio_websocket import ConnectionClosed

from supervisor.testing.fake import SessionIO
from supervisor.testing.fakes.venue_book import OKX, VenueBook, okx_checksum_of

__all__ = [
    "BOOKS_MAX_SZ",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_INSTRUMENTS",
    "DEFAULT_MAX_REQUESTS",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_NO_SUBSCRIBE_TIMEOUT",
    "DEFAULT_REQUEST_WINDOW",
    "EPOCH_MS",
    "FAKE_CHANNELS",
    "FIRST_SEQ_ID",
    "IDLE_CLOSE_CODE",
    "NOTICE_MESSAGE",
    "OVERSIZED_CLOSE_CODE",
    "OVERSIZED_CLOSE_REASON",
    "RATE_CLOSE_CODE",
    "SEQ_STEP",
    "FakeOkx",
]

#: OKX closes a connection that subscribed to nothing within 30 s
#: (https://www.okx.com/docs-v5/en/#overview-websocket-connect).
DEFAULT_NO_SUBSCRIBE_TIMEOUT: Final = 30.0
#: OKX closes a connection to which nothing was pushed for 30 s (same page).
DEFAULT_IDLE_TIMEOUT: Final = 30.0
#: 480 subscribe/unsubscribe/login requests per hour per connection (same page).
DEFAULT_MAX_REQUESTS: Final = 480
#: The window of ``DEFAULT_MAX_REQUESTS``, in seconds.
DEFAULT_REQUEST_WINDOW: Final = 3600.0
#: "The total length of multiple channels cannot exceed 64 KB"
#: (https://www.okx.com/docs-v5/en/#overview-websocket-subscribe).
DEFAULT_MAX_REQUEST_BYTES: Final = 64 * 1024
#: Instruments the fake lists unless told otherwise.
DEFAULT_INSTRUMENTS: Final = (
    "BTC-USDT",
    "ETH-USDT",
    "BTC-USDT-SWAP",
    "ETH-USDT-SWAP",
    "BTC-USD-SWAP",
)
#: Channels the fake serves.
FAKE_CHANNELS: Final = frozenset({"trades", "tickers", "books", "bbo-tbt", "mark-price"})
#: OKX close frames (https://www.okx.com/docs-v5/en/#error-code-websocket-public).
IDLE_CLOSE_CODE: Final = 4004
OVERSIZED_CLOSE_CODE: Final = 1009
OVERSIZED_CLOSE_REASON: Final = "Request message exceeds the maximum frame length"
#: Our choice: OKX documents error 60014 but not the close code that follows it.
RATE_CLOSE_CODE: Final = 4002
#: The text of OKX's upgrade notice (64008).
NOTICE_MESSAGE: Final = (
    "The connection will soon be closed for a service upgrade. Please reconnect."
)
#: Exchange time of trio time 0 in the fake's frames: 2025-12-08, like the fixtures.
EPOCH_MS: Final = 1_765_201_257_000
#: First ``seqId`` of a book and the step between two updates (observed steps vary).
FIRST_SEQ_ID: Final = 1000
SEQ_STEP: Final = 2
#: ``GET /api/v5/market/books``: at most 400 levels a side (reference/exchanges.md §3.6).
BOOKS_MAX_SZ: Final = 400

_encode = msgspec.json.encode
_decode = msgspec.json.Decoder().decode


class _Book:
    """One book topic of one session: where it stands on the venue book's seqId line."""

    __slots__ = ("gap", "seq", "snapshot_sent")

    def __init__(self, seq: int, snapshot_sent: bool) -> None:
        self.snapshot_sent = snapshot_sent
        self.seq = seq
        self.gap = False


class _Session:
    """What the fake knows about one client session."""

    def __init__(self, io: SessionIO, opened: float) -> None:
        self.io = io
        self.index = io.session.index
        self.conn_id = f"{0x94D38800 + self.index:08x}"
        self.opened = opened
        self.last_push = opened
        self.subscribed = False
        #: (channel, instId) -> the arg as the client sent it, in subscription order.
        self.topics: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: collections.deque[float] = collections.deque()
        self.books: dict[str, _Book] = {}
        #: Data frames sent per topic (drives prices and ids).
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.changed = trio.Event()

    def poke(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def send(self, frame: str, *, data: bool) -> None:
        await self.io.send(frame, data=data)
        self.last_push = trio.current_time()
        self.poke()


@final
class FakeOkx:
    """OKX's public WebSocket server side, as a handler for ``open_fake_exchange``.

    Use: ``open_fake_exchange(transport="memory", handler=FakeOkx(...))``; data frames
    go out every ``FakeExchange.interval`` seconds.

    Args:
        instruments: the instIds that exist; anything else gets error 60018.
        no_subscribe_timeout: seconds a session may go without a subscription.
        idle_timeout: seconds a session may go without anything pushed to it.
        max_requests: subscribe/unsubscribe requests allowed per ``request_window``.
        request_window: seconds of that window.
        max_request_bytes: largest request, in UTF-8 bytes.
        numbered: one market for every session, and numbered tickers (module docstring).
        epoch_ms: exchange time (Unix ms) at trio time 0, stamped on trades
            (default :data:`EPOCH_MS`).
        book_snapshots: send a ``books`` snapshot after the subscribe ack (OKX until
            its announced change); False: no snapshot, the first ``books`` frame is an
            update, and a client syncs from :meth:`books_body` (REST).
        checksums: send the real CRC32 of the top 25 levels in every ``books`` frame;
            False sends 0, as OKX does since 2026-06-23.

    Attributes:
        answer_pings: answer ``ping`` with ``pong`` (set False to model a server that
            stopped answering).
        closes: every session the fake closed for breaking a rule:
            ``(trio time, session index, close code, reason)``.
        snapshot_lag: REST snapshots answer the book as of this many changes ago.
    """

    def __init__(
        self,
        *,
        instruments: Iterable[str] = DEFAULT_INSTRUMENTS,
        no_subscribe_timeout: float = DEFAULT_NO_SUBSCRIBE_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        request_window: float = DEFAULT_REQUEST_WINDOW,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        numbered: bool = False,
        epoch_ms: int = EPOCH_MS,
        book_snapshots: bool = True,
        checksums: bool = False,
    ) -> None:
        listed = list(dict.fromkeys(instruments))
        self._instruments = frozenset(listed)
        self._book_snapshots = book_snapshots
        self._checksums = checksums
        #: One true book per instId, shared by every session (BTC-USDT starts at 100.4).
        self._venue = {
            inst_id: VenueBook(
                seed=100 + i,
                price=1004 * (i + 1),
                sequence=FIRST_SEQ_ID,
                fmt=OKX,
                seq_step=SEQ_STEP,
            )
            for i, inst_id in enumerate(listed)
        }
        #: REST snapshots answer the book as of this many changes ago (a stale snapshot).
        self.snapshot_lag = 0
        self._numbered = numbered
        #: Exchange time (Unix ms) at trio time 0.
        self.epoch_ms = epoch_ms
        #: Numbered mode: per topic, the count the furthest session reached.
        self._market: collections.Counter[tuple[str, str]] = collections.Counter()
        self._no_subscribe_timeout = no_subscribe_timeout
        self._idle_timeout = idle_timeout
        self._max_requests = max_requests
        self._request_window = request_window
        self._max_request_bytes = max_request_bytes
        self._open: list[_Session] = []
        self._muted: set[str] = set()
        self._mute_all = False
        self.answer_pings = True
        self.closes: list[tuple[float, int, int, str]] = []

    # -- what tests see ------------------------------------------------------------

    def subscribed(self, index: int) -> frozenset[str]:
        """The topics (``channel:instId``) open session ``index`` subscribed and the fake
        acknowledged; empty once it closed."""
        for session in self._open:
            if session.index == index:
                return frozenset(f"{channel}:{inst_id}" for channel, inst_id in session.topics)
        return frozenset()

    def venue_book(self, inst_id: str) -> VenueBook:
        """The venue's true book of ``inst_id`` (shared by every session).

        Raises:
            ValueError: the fake does not list ``inst_id``.
        """
        book = self._venue.get(inst_id)
        if book is None:
            raise ValueError(f"venue_book({inst_id!r}): the fake lists only {sorted(self._venue)}")
        return book

    # -- REST ----------------------------------------------------------------------

    def books_body(self, inst_id: str, sz: int) -> dict[str, Any]:
        """The body of ``GET /api/v5/market/books?instId=&sz=``.

        ``{"code":"0","msg":"","data":[{"asks":[[px,sz,"0",n],...],"bids":[...],"ts":"ms",
        "seqId":N}]}`` with ``sz`` levels a side at most, best first, and ``seqId`` the
        book's (an int, as in OKX's REST sync procedure); with :attr:`snapshot_lag`
        ``K``, the book as of ``K`` changes ago (or the oldest one remembered). An
        unknown ``inst_id`` gets ``{"code":"51001","msg":"Instrument ID does not
        exist","data":[]}``.
        """
        venue = self._venue.get(inst_id)
        if venue is None:
            return {"code": "51001", "msg": "Instrument ID does not exist", "data": []}
        sequence = venue.sequence
        bids, asks = venue.snapshot()
        for _ in range(self.snapshot_lag):
            past = venue.at(sequence - venue.seq_step)
            if past is None:
                break
            sequence -= venue.seq_step
            bids, asks = past
        entry = {
            "asks": _okx_levels(asks[:sz]),
            "bids": _okx_levels(bids[:sz]),
            "ts": str(self.epoch_ms + round(trio.current_time() * 1000)),
            "seqId": sequence,
        }
        return {"code": "0", "msg": "", "data": [entry]}

    def books_request(self, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """The HTTP status and body OKX answers a books request's ``query`` with.

        ``sz`` defaults to 1 and is capped at 400 (OKX's docs); a missing ``instId`` gets
        50014, a ``sz`` that is not a number 51000, an unknown ``instId`` 51001 (all
        with HTTP 200 here; OKX's status for them is not recorded).
        """
        inst_id = query.get("instId", "")
        if not inst_id:
            return 200, {"code": "50014", "msg": "Parameter instId can not be empty.", "data": []}
        raw = query.get("sz", "1")
        if not raw.isdigit():
            return 200, {"code": "51000", "msg": "Parameter sz error", "data": []}
        return 200, self.books_body(inst_id, max(1, min(int(raw), BOOKS_MAX_SZ)))

    # -- what tests do -------------------------------------------------------------

    def mute(self, *topics: str) -> None:
        """Stop data frames for these topics (``trades:BTC-USDT``); all if none given.

        Acks, errors and ``pong`` still go out. A muted ``books`` topic sends its
        snapshot once unmuted.
        """
        if topics:
            self._muted.update(topics)
        else:
            self._mute_all = True

    def unmute(self, *topics: str) -> None:
        """Undo :meth:`mute` for these topics; with none given, for every topic."""
        if topics:
            self._muted.difference_update(topics)
        else:
            self._mute_all = False
            self._muted.clear()

    def inject_gap(self, inst_id: str) -> None:
        """Lose one book update of ``inst_id`` in every open session.

        The next ``books`` update skips a seqId: its ``prevSeqId`` names an update that
        was never sent, as when OKX drops a message.
        """
        for session in self._open:
            book = session.books.get(inst_id)
            if book is not None:
                book.gap = True

    async def notice(self, message: str = NOTICE_MESSAGE) -> None:
        """Send the upgrade notice (64008) to every open session.

        Cancellation: may be partial (some sessions got the notice).
        """
        for session in list(self._open):
            frame = _encode(
                {"event": "notice", "msg": message, "code": "64008", "connId": session.conn_id}
            ).decode()
            try:
                await session.send(frame, data=False)
            except ConnectionClosed:
                continue

    # -- the session program -------------------------------------------------------

    async def __call__(self, io: SessionIO) -> None:
        """Serve one session until the client leaves or a rule closes it.

        Cancellation: the session's tasks are cancelled; the generic fake closes the
        connection.
        """
        session = _Session(io, trio.current_time())
        self._open.append(session)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watchdog, session)
                nursery.start_soon(self._push, session, nursery.cancel_scope)
                await self._serve_requests(session)
                nursery.cancel_scope.cancel(reason="the client left")
        finally:
            self._open.remove(session)

    def _close(self, session: _Session, code: int, reason: str) -> None:
        self.closes.append((trio.current_time(), session.index, code, reason))
        session.io.close(code, reason)

    async def _watchdog(self, session: _Session) -> None:
        reason = f"No data received in {self._idle_timeout:g}s"
        while True:
            now = trio.current_time()
            pushed = max(session.last_push, session.io.session.last_written)
            deadline = pushed + self._idle_timeout
            if not session.subscribed:
                deadline = min(deadline, session.opened + self._no_subscribe_timeout)
            if now >= deadline:
                self._close(session, IDLE_CLOSE_CODE, reason)
                return
            with trio.move_on_at(deadline):
                await session.changed.wait()

    async def _serve_requests(self, session: _Session) -> None:
        while True:
            try:
                frame = await session.io.receive()
            except ConnectionClosed:
                return
            try:
                if frame == "ping":
                    if self.answer_pings:
                        await session.send("pong", data=False)
                    continue
                text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
                if not await self._request(session, text):
                    return
            except ConnectionClosed:
                return

    async def _error(self, session: _Session, code: str, message: str) -> None:
        frame = _encode(
            {"event": "error", "msg": message, "code": code, "connId": session.conn_id}
        ).decode()
        await session.send(frame, data=False)

    async def _request(self, session: _Session, text: str) -> bool:
        """Answer one request; False once the session is being closed."""
        if len(text.encode()) > self._max_request_bytes:
            self._close(session, OVERSIZED_CLOSE_CODE, OVERSIZED_CLOSE_REASON)
            return False
        try:
            request = _decode(text)
        except msgspec.DecodeError:
            await self._error(session, "60012", f"Invalid request: {text[:200]}")
            return True
        if not isinstance(request, dict) or "op" not in request:
            await self._error(session, "60012", f"Invalid request: {text[:200]}")
            return True
        op = request["op"]
        if op not in ("subscribe", "unsubscribe"):
            await self._error(session, "60019", f"Invalid op: {op}")
            return True
        now = trio.current_time()
        while session.requests and session.requests[0] <= now - self._request_window:
            session.requests.popleft()
        if len(session.requests) >= self._max_requests:
            await self._error(session, "60014", "Requests too frequent.")
            self._close(session, RATE_CLOSE_CODE, "Requests too frequent")
            return False
        session.requests.append(now)
        args = request.get("args")
        if (
            not isinstance(args, list)
            or not args
            or not all(isinstance(a, dict) and isinstance(a.get("channel"), str) for a in args)
        ):
            await self._error(session, "60013", "Invalid args")
            return True
        for arg in args:
            await self._answer(session, op, arg)
        return True

    async def _answer(self, session: _Session, op: str, arg: dict[str, Any]) -> None:
        channel: str = arg["channel"]
        inst_id = arg.get("instId")
        if channel not in FAKE_CHANNELS or inst_id not in self._instruments:
            await self._error(
                session,
                "60018",
                f"Wrong URL or channel:{channel}, instId:{inst_id} doesn't exist. Please use "
                "the correct URL, channel and parameters referring to API document.",
            )
            return
        assert isinstance(inst_id, str)
        key = (channel, inst_id)
        ack = _encode({"event": op, "arg": arg, "connId": session.conn_id}).decode()
        if op == "unsubscribe":
            session.topics.pop(key, None)
            if channel == "books":
                # A later subscribe starts the book afresh, with a snapshot (as OKX does).
                session.books.pop(inst_id, None)
            await session.send(ack, data=False)
            return
        session.topics[key] = arg
        if channel == "books" and inst_id not in session.books:
            # Without snapshots (OKX's announced mode) the first frame is the update
            # after the book as it stands now.
            session.books[inst_id] = _Book(
                self._venue[inst_id].sequence, snapshot_sent=not self._book_snapshots
            )
        session.subscribed = True
        await session.send(ack, data=False)
        if channel == "books" and self._book_snapshots and not self._is_muted(channel, inst_id):
            await session.send(self._frame(session, channel, inst_id), data=True)

    # -- data ----------------------------------------------------------------------

    def _is_muted(self, channel: str, inst_id: str) -> bool:
        return self._mute_all or f"{channel}:{inst_id}" in self._muted

    async def _push(self, session: _Session, scope: trio.CancelScope) -> None:
        while not session.subscribed:
            await session.changed.wait()
        due = trio.current_time()
        try:
            while True:
                due = await session.io.wait_interval(due)
                for channel, inst_id in list(session.topics):
                    if not self._is_muted(channel, inst_id):
                        await session.send(self._frame(session, channel, inst_id), data=True)
        except ConnectionClosed:
            scope.cancel(reason="the client left")

    def _frame(self, session: _Session, channel: str, inst_id: str) -> str:
        """The next data frame of one topic (values depend only on counts and time)."""
        key = (channel, inst_id)
        if self._numbered and key not in session.counts:
            start = self._market[key]  # join the market where it stands ...
            if any(
                other is not session and not other.io.stalled and key in other.counts
                for other in self._open
            ):
                start -= 1  # ... with the event on its way to the other session too
            session.counts[key] = start
        n = session.counts[key]
        session.counts[key] += 1
        if self._numbered:
            self._market[key] = max(self._market[key], n + 1)
        ts = str(self.epoch_ms + round(trio.current_time() * 1000))
        arg = {"channel": channel, "instId": inst_id}
        entry: dict[str, Any]
        if channel == "trades":
            entry = {
                "instId": inst_id,
                "tradeId": str(1_000_000 * (1 if self._numbered else session.index + 1) + n),
                "px": f"{100 + n}.5",
                "sz": "0.01",
                "side": "buy" if n % 2 == 0 else "sell",
                "ts": ts,
                "count": "1",
                "source": "0",
                "seqId": 279_183_506_666 + n,
            }
        elif channel == "tickers":
            entry = {
                "instType": "SWAP" if inst_id.endswith("-SWAP") else "SPOT",
                "instId": inst_id,
                "last": f"{100 + n}.5",
                "lastSz": "0.01",
                "askPx": f"{100 + n}.6",
                "askSz": "2.25",
                "bidPx": f"{100 + n}.4",
                "bidSz": str(n + 1) if self._numbered else "1.5",
                "open24h": "99",
                "high24h": "200",
                "low24h": "90",
                "sodUtc0": "99.5",
                "sodUtc8": "99.7",
                "volCcy24h": "123456.78",
                "vol24h": "1234.5",
                "ts": ts,
            }
        elif channel == "books":
            return self._book_entry(session, inst_id, ts)
        elif channel == "bbo-tbt":
            entry = {
                "asks": [[f"{100 + n}.6", "2", "0", "1"]],
                "bids": [[f"{100 + n}.4", "1", "0", "1"]],
                "ts": ts,
                "seqId": FIRST_SEQ_ID + n,
            }
        else:  # mark-price
            entry = {
                "instType": "SWAP" if inst_id.endswith("-SWAP") else "MARGIN",
                "instId": inst_id,
                "markPx": f"{100 + n}.5",
                "ts": ts,
            }
        return _encode({"arg": arg, "data": [entry]}).decode()

    def _book_entry(self, session: _Session, inst_id: str, ts: str) -> str:
        """The session's next ``books`` frame: the venue book's snapshot, or its next change."""
        book = session.books[inst_id]
        venue = self._venue[inst_id]
        arg = {"channel": "books", "instId": inst_id}
        if not book.snapshot_sent:
            book.snapshot_sent = True
            book.seq = venue.sequence
            bids, asks = venue.snapshot()
            entry: dict[str, Any] = {
                "asks": _okx_levels(asks),
                "bids": _okx_levels(bids),
                "ts": ts,
                "checksum": okx_checksum_of(bids, asks) if self._checksums else 0,
                "seqId": book.seq,
                "prevSeqId": -1,
            }
            return _encode({"arg": arg, "action": "snapshot", "data": [entry]}).decode()
        if book.gap:
            book.gap = False
            book.seq = venue.next_after(book.seq)  # this update is "lost"
        seq = venue.next_after(book.seq)
        change = venue.diff(book.seq, seq)
        if change is None:  # the session fell too far behind: a gap, honestly shown
            seq = venue.next_after(venue.sequence)
            book.seq = seq - venue.seq_step
            change = venue.diff(book.seq, seq)
            assert change is not None
        prev, book.seq = book.seq, seq
        checksum = 0
        if self._checksums:
            state = venue.at(seq)
            assert state is not None  # just made or read: within the history
            checksum = okx_checksum_of(*state)
        entry = {
            "asks": _okx_levels(change[1]),
            "bids": _okx_levels(change[0]),
            "ts": ts,
            "checksum": checksum,
            "seqId": seq,
            "prevSeqId": prev,
        }
        return _encode({"arg": arg, "action": "update", "data": [entry]}).decode()


def _okx_levels(levels: list[list[str]]) -> list[list[str]]:
    """``[px, sz]`` as OKX sends it: ``[px, sz, "0", orders]`` (0 orders for a removal).

    The order count is made up from the size, so that it is deterministic.
    """
    return [
        [px, sz, "0", "0" if sz == "0" else str(1 + zlib.crc32(sz.encode()) % 9)]
        for px, sz in levels
    ]
