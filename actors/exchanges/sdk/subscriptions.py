"""The subscription book: every topic's state and the session's request ledger.

Rules of this file: pure bookkeeping, no I/O, no clock; it decides nothing about frames.

One :class:`SubscriptionBook` lives as long as its adapter:

- **Topic states** (``pending``, ``live``, ``silent``, ``failed: CODE MESSAGE``) are kept
  across sessions, for stats; a session that re-subscribes a topic sets it back to
  pending. ``silent`` is a confirmed topic that delivered no data for a while (the
  adapter base decides, see ``ExchangeProtocol``).
- **Requests** of the current session: each has an id (unique for the adapter's whole
  life, counting up from 1, as Binance and Deribit require for ``id``), the topics it
  asked for and how far the exchange answered it. :meth:`new_session` forgets them.
- **Acks** come in two modes, one per family of exchanges:

  * *per request* (Binance, Deribit, Bybit): the reply names the request id;
    :meth:`answer` pops the request and returns its topics; a refusal may *bisect* the
    request (Binance refuses a whole ``SUBSCRIBE`` for one invalid name):
    :meth:`refuse_request` then returns the two halves to send again.
  * *per argument, in order* (OKX): every topic is answered by its own frame, requests
    are answered in the order they were sent, and an error may not say which topic it
    refuses: :meth:`ack_in_order` / :meth:`error_in_order` settle them.

Every method that changes states returns :class:`Outcome` values in the order the
adapter must report them (``Subscribed`` / ``SubscriptionFailed`` events); the adapter
base turns them into events, so no adapter builds those events itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from actors.redact import redact_text

__all__ = ["Outcome", "Request", "SubscriptionBook", "batches"]


#: States of a topic the exchange confirmed.
_CONFIRMED = frozenset({"live", "silent"})


class Outcome(NamedTuple):
    """One answer to report: ``topics`` confirmed (``refusal`` None) or refused."""

    topics: tuple[str, ...]
    #: ``(code, message)`` of a refusal, or None for a confirmation.
    refusal: tuple[str, str] | None = None


class Request:
    """One request of the current session.

    Attributes:
        id: the request id written in the frame.
        topics: the topics it asks for (empty for requests that subscribe nothing, such
            as Deribit's ``public/set_heartbeat``).
        method: what it asks (``subscribe``, ``unsubscribe``, ``public/test``...); only
            subscribe requests confirm or refuse topics.
        answered: topics answered so far (acks and errors), for in-order acks.
        error: the last error that could not be tied to one topic: ``(code, message)``.
    """

    __slots__ = ("answered", "error", "id", "method", "topics")

    def __init__(self, request_id: int, topics: tuple[str, ...], method: str) -> None:
        self.id = request_id
        self.topics = topics
        self.method = method
        self.answered = 0
        self.error: tuple[str, str] | None = None


class SubscriptionBook:
    """Topic states across sessions and the current session's requests."""

    def __init__(self) -> None:
        #: Every topic's state by native name: ``pending``, ``live``, ``silent`` or
        #: ``failed: CODE MESSAGE``.
        self.states: dict[str, str] = {}
        self._pending: set[str] = set()
        #: This session's requests by id, in the order they were made (dicts keep it).
        self._requests: dict[int, Request] = {}
        #: topic -> the subscribe request that asked for it / the unsubscribe that ended it.
        self._request_of: dict[str, Request] = {}
        self._unsubscribe_of: dict[str, Request] = {}
        self._next_id = 1

    # -- session -------------------------------------------------------------------

    def new_session(self) -> None:
        """Forget the requests and outstanding acks of the previous session."""
        self._pending.clear()
        self._requests.clear()
        self._request_of.clear()
        self._unsubscribe_of.clear()

    def expect(self, topics: Iterable[str]) -> None:
        """``topics`` were (or will be) requested this session; acks outstanding."""
        for topic in topics:
            self._pending.add(topic)
            self.states[topic] = "pending"

    def forget(self, topics: Iterable[str]) -> None:
        """``topics`` are no longer wanted: drop their states and outstanding acks.

        Replies still on their way for them (a late ack, a refusal to bisect) then
        change nothing: :meth:`confirm`, :meth:`refuse` and :meth:`refuse_request` only
        act on topics that still have a state.
        """
        for topic in topics:
            self.states.pop(topic, None)
            self._pending.discard(topic)

    @property
    def settled(self) -> bool:
        """No ack is outstanding."""
        return not self._pending

    def pending(self) -> list[str]:
        """The topics whose acks are outstanding, in the order they were first planned."""
        outstanding = self._pending
        return [topic for topic in self.states if topic in outstanding]

    def live(self) -> list[str]:
        """The confirmed topics, ``silent`` ones included (they are still subscribed)."""
        return [topic for topic, state in self.states.items() if state in _CONFIRMED]

    def set_silent(self, topic: str, silent: bool) -> None:
        """Mark a confirmed ``topic`` ``silent`` (no data for a while) or ``live`` again."""
        if self.states.get(topic) in _CONFIRMED:
            self.states[topic] = "silent" if silent else "live"

    def request(self, topics: Sequence[str], method: str = "subscribe") -> Request:
        """Record a new request for ``topics`` and return it (with its fresh id)."""
        request = Request(self._next_id, tuple(topics), method)
        self._next_id += 1
        self._requests[request.id] = request
        index = self._unsubscribe_of if method == "unsubscribe" else self._request_of
        for topic in request.topics:
            index[topic] = request
        return request

    def extend(self, request: Request, topics: Sequence[str]) -> None:
        """Add ``topics`` to ``request``, not yet written (an adapter merging a later
        change into a request still waiting for its turn)."""
        request.topics = (*request.topics, *topics)
        index = self._unsubscribe_of if request.method == "unsubscribe" else self._request_of
        for topic in topics:
            index[topic] = request

    # -- per-request acks ----------------------------------------------------------

    def answer(self, request_id: object) -> Request | None:
        """Pop the request ``request_id`` answers, or None if it is not ours (any more)."""
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            return None
        request = self._requests.pop(request_id, None)
        if request is not None:
            for topic in request.topics:
                if self._request_of.get(topic) is request:
                    del self._request_of[topic]
        return request

    def confirm(self, topics: Sequence[str]) -> Outcome:
        """``topics`` are live (those still wanted; see :meth:`forget`)."""
        states = self.states
        wanted = tuple(topic for topic in topics if topic in states)
        for topic in wanted:
            self._pending.discard(topic)
            states[topic] = "live"
        return Outcome(wanted)

    def refuse(self, topic: str, code: str, message: str) -> Outcome:
        """``topic`` was refused with ``code`` and ``message`` (if it is still wanted)."""
        if topic not in self.states:
            return Outcome((), (code, message))
        self._pending.discard(topic)
        # The exchange's text, shown in stats: it may echo what we sent.
        self.states[topic] = f"failed: {code} {redact_text(message)}"
        return Outcome((topic,), (code, message))

    def refuse_request(
        self, request: Request, code: str, message: str, *, bisect: frozenset[str] = frozenset()
    ) -> tuple[list[Outcome], list[tuple[str, ...]]]:
        """A refused request: fail its topics, or split it when ``code`` is in ``bisect``.

        Returns:
            ``(outcomes, resend)``: the refusals to report, and the halves to request
            again (each a new request the caller sends) when the request was bisected.
        """
        topics = tuple(topic for topic in request.topics if topic in self.states)
        if code in bisect and len(topics) > 1:
            half = len(topics) // 2
            return [], [topics[:half], topics[half:]]
        return [self.refuse(topic, code, message) for topic in topics], []

    # -- per-argument acks, answered in order (OKX) --------------------------------

    def ack_in_order(self, topic: str) -> list[Outcome]:
        """One topic's subscribe ack; an answer to a request settles every earlier one.

        Unknown or repeated acks change nothing (empty list); the ack of a topic dropped
        since (:meth:`forget`) counts as an answer and confirms nothing.
        """
        request = self._request_of.get(topic)
        if request is None or (topic not in self._pending and topic in self.states):
            return []
        return self._answered_in_order(request, self.confirm((topic,)))

    def unsubscribed_in_order(self, topic: str) -> list[Outcome]:
        """One topic's unsubscribe ack: it counts as an answer, in order."""
        request = self._unsubscribe_of.pop(topic, None)
        if request is None:
            return []
        return self._answered_in_order(request, Outcome(()))

    def _answered_in_order(self, request: Request, outcome: Outcome) -> list[Outcome]:
        request.answered += 1
        out: list[Outcome] = []
        for earlier in self._requests.values():
            if earlier is request:
                break
            out.extend(self._fail_rest(earlier))
        out.append(outcome)
        out.extend(self._settle(request))
        return out

    def refuse_named(self, topic: str, code: str, message: str) -> list[Outcome] | None:
        """An error that names its topic; None if ``topic`` is not outstanding."""
        request = self._request_of.get(topic)
        if request is None or topic not in self._pending:
            return None
        request.answered += 1
        return [self.refuse(topic, code, message), *self._settle(request)]

    def error_in_order(
        self, code: str, message: str, *, whole_request: bool
    ) -> tuple[Request, list[Outcome]] | None:
        """An error that does not say which topic it refuses.

        It answers the oldest request with unanswered topics (a subscribe request with
        topics still pending, or an unsubscribe not fully acknowledged).
        ``whole_request`` errors fail all of that request's outstanding topics at once;
        any other error counts as one answer, and the request's topics still unacked
        once it is fully answered (or a later request is answered) fail with it.

        Returns:
            The request it answers and the outcomes to report, or None when no request
            is outstanding. An unsubscribe's error fails no topic (the caller reports it).
        """
        request = next((r for r in self._requests.values() if self._unanswered(r)), None)
        if request is None:
            return None
        request.error = (code, message)
        if whole_request:
            request.answered = len(request.topics)
            return request, self._fail_rest(request)
        request.answered += 1
        return request, self._settle(request)

    def _unanswered(self, request: Request) -> bool:
        if request.method == "unsubscribe":
            return request.answered < len(request.topics)
        return any(topic in self._pending for topic in request.topics)

    def _settle(self, request: Request) -> list[Outcome]:
        if request.answered >= len(request.topics):
            return self._fail_rest(request)
        return []

    def _fail_rest(self, request: Request) -> list[Outcome]:
        """Refuse the request's unacked topics with its unattributed error, if any."""
        if request.error is None:
            return []
        code, message = request.error
        return [
            self.refuse(topic, code, message) for topic in request.topics if topic in self._pending
        ]


def batches(
    items: Sequence[tuple[str, int]],
    *,
    max_items: int | None = None,
    max_bytes: int | None = None,
    overhead: int = 0,
    separator: int = 0,
) -> list[list[str]]:
    """Pack ``(topic, size)`` items greedily, in order, into requests.

    Args:
        items: each topic with the bytes its argument takes in the request.
        max_items: most topics per request (Binance 200, Bybit 10), or None.
        max_bytes: largest request in bytes (OKX 64 KiB), or None.
        overhead: bytes of a request without arguments.
        separator: bytes between two arguments.

    Returns:
        The topics of each request, in order; an item too big for ``max_bytes`` on its
        own still gets a request of its own (``check()`` should have refused it).
    """
    out: list[list[str]] = []
    current: list[str] = []
    size = overhead
    for topic, length in items:
        extra = length + (separator if current else 0)
        full = max_items is not None and len(current) >= max_items
        too_big = max_bytes is not None and size + extra > max_bytes
        if current and (full or too_big):
            out.append(current)
            current, size, extra = [], overhead, length
        current.append(topic)
        size += extra
    if current:
        out.append(current)
    return out
