"""Per-host request budgets and holds: when the next REST request may go (pure).

Theory of operation
-------------------
Exchanges count REST usage per IP, so the budget belongs to a *host as reached through
one route* (a proxy changes the IP): one :class:`HostLimiter` per (venue, host, route),
shared by every client and bot that calls that host that way. Before a request is
written the client asks :meth:`HostLimiter.reserve` for a slot; the answer is a time
(never a refusal), so a request that would exceed the budget waits instead of being
sent and counted against the IP. After the answer the client reports it
(:meth:`HostLimiter.observe`): the venue's used-weight header reconciles the local
count (other processes on the same IP count too), and a 429/418 (Bybit: 403) or a
rate-limit code in the body *holds the whole host*: every request, the ones already
waiting included, waits until the hold ends. Nothing here reads a clock or sleeps: the
caller passes ``now`` (the Trio clock) and sleeps itself.

Three kinds of budget, one per venue, each behind the same two calls (``reserve``,
``release``):

- :class:`WeightWindow`: weight per fixed window aligned to the venue's clock (Binance:
  ``REQUEST_WEIGHT`` 6,000 per minute spot, 2,400 USD-M; observed to be the clock
  minute, not sliding), reconciled with ``X-MBX-USED-WEIGHT-1M``.
- the SDK's :class:`~actors.exchanges.sdk.pacing.WindowPacer` (a count per sliding
  window): OKX's per-endpoint limits ("40 requests per 2 seconds"), Bybit's 600
  requests per 5 s per IP.
- the SDK's :class:`~actors.exchanges.sdk.pacing.Pacer` (GCRA): Deribit's credits, a
  leaky bucket of 50,000 credits refilled at 10,000 per second, 500 per request: a
  burst of 100 requests, then one per 50 ms.

A request has one budget key and a cost. ``weight=`` on a call overrides the table's
cost (an endpoint the table does not know costs its venue's default).

Sources: ``../shared/reference/exchanges.md`` (Binance §1.6, USD-M §2) and

- Binance spot: https://developers.binance.com/docs/binance-spot-api-docs/rest-api
  (LIMITS; ping/time weight 1, exchangeInfo 20, depth 5/25/50/250 by limit,
  ticker/price and ticker/bookTicker 2 for one symbol, 4 otherwise; ticker/24hr 2 for
  1-20 symbols, 40 for 21-100, 80 for more or all);
- Binance USD-M: https://developers.binance.com/docs/derivatives/usds-margined-futures
  (ping/time/exchangeInfo 1; depth 2 up to limit 50, 5 at 100, 10 at 500, 20 at 1000;
  2,400 weight per minute);
- OKX: https://www.okx.com/docs-v5/en/ (market/books 40 per 2 s, books-full 10,
  public/time 10, public/instruments 20 per instType, market/ticker(s) 20,
  market/candles 40; rule: IP; 429 body code ``50011``);
- Deribit: https://docs.deribit.com/articles/rate-limits (non-matching-engine request
  500 credits, pool 50,000, refill 10,000/s; ``too_many_requests`` 10028);
- Bybit: https://bybit-exchange.github.io/docs/v5/rate-limit (600 requests per 5 s
  per IP; "403, access too frequent": stop and wait at least 10 minutes; ``retCode``
  10006 "Too many visits!").
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
from collections.abc import Callable, Mapping
from typing import Final, Protocol, final

from actors.exchanges.sdk.pacing import Pacer, WindowPacer

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "VENUES",
    "Budget",
    "HostLimiter",
    "Params",
    "Reservation",
    "VenueLimits",
    "WeightWindow",
    "retry_after",
]

#: Query parameters as the client passes them.
Params = Mapping[str, str | int | float]

#: Seconds to hold a host after a 429 without a usable ``Retry-After``, when the venue
#: table names no hold of its own: Binance's window is one minute (rest-api.md, LIMITS).
DEFAULT_RETRY_AFTER: Final = 60.0


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Reservation:
    """One request's slot in its host's budget.

    Attributes:
        at: when the request may be written (Trio clock).
        key: the budget it was taken from.
        cost: what it costs there.
        token: the budget's own bookkeeping for :meth:`Budget.release`.
    """

    at: float
    key: str
    cost: int
    token: tuple[float, ...]


class Budget(Protocol):
    """One budget of a host: when a request of a given cost may go."""

    def reserve(self, cost: int, now: float) -> tuple[float, tuple[float, ...]]:
        """The earliest time at or after ``now`` and a token for :meth:`release`."""
        ...

    def release(
        self, cost: int, token: tuple[float, ...], *, sent: bool, used: int | None, now: float
    ) -> None:
        """The request is over: it was ``sent`` or not; the venue reported ``used``."""
        ...


@final
class WeightWindow:
    """At most ``limit`` weight per fixed window of ``window`` seconds.

    Windows are aligned to the venue's clock: window ``k`` covers
    ``[k * window - offset, (k + 1) * window - offset)`` on the Trio clock, where
    ``offset`` is the venue clock minus the Trio clock (0 on a test's MockClock, so
    windows start at multiples of ``window``). A request that does not fit in the
    window of its time goes at the start of the next window with room; requests keep
    their order (a small one never overtakes a large one that is waiting).

    Reconciliation: the venue's count for the current window (``used``) includes other
    users of the same IP and every request of ours it has answered; requests of ours
    still in flight are added to it. The local count only ever grows from it, so a
    stale or low header never lets more through.

    Args:
        limit: weight allowed per window.
        window: the window's length in seconds.
        offset: venue clock minus Trio clock, in seconds.

    Raises:
        ValueError: ``limit`` below 1 or ``window`` not positive.
    """

    def __init__(self, limit: int, window: float, *, offset: float = 0.0) -> None:
        if limit < 1 or not window > 0:
            raise ValueError(
                f"WeightWindow needs limit >= 1 and window > 0, got {limit!r}, {window!r}"
            )
        self.limit = limit
        self.window = window
        self.offset = offset
        #: The latest window anything was reserved in, and the weight counted there.
        self.frontier = -math.inf
        self.used = 0
        #: Weight reserved per window whose answer has not arrived yet.
        self._in_flight: dict[float, int] = {}

    def index(self, now: float) -> float:
        """The window ``now`` falls in (an integer, as a float)."""
        return math.floor((now + self.offset) / self.window)

    def start(self, index: float) -> float:
        """When window ``index`` starts on the Trio clock."""
        return index * self.window - self.offset

    def reserve(self, cost: int, now: float) -> tuple[float, tuple[float, ...]]:
        """The time a request of weight ``cost`` may go, at or after ``now``.

        Raises:
            ValueError: ``cost`` exceeds ``limit`` (it could never go).
        """
        if cost > self.limit:
            raise ValueError(f"a request of weight {cost} can never fit a budget of {self.limit}")
        current = self.index(now)
        if current > self.frontier:
            self.frontier, self.used = current, 0
        if self.used + cost > self.limit:
            self.frontier, self.used = self.frontier + 1, 0
        self.used += cost
        self._in_flight[self.frontier] = self._in_flight.get(self.frontier, 0) + cost
        return max(now, self.start(self.frontier)), (self.frontier,)

    def release(
        self, cost: int, token: tuple[float, ...], *, sent: bool, used: int | None, now: float
    ) -> None:
        """Settle a reservation: give it back if never sent; reconcile with ``used``."""
        (index,) = token
        left = self._in_flight.get(index, 0) - cost
        if left > 0:
            self._in_flight[index] = left
        else:
            self._in_flight.pop(index, None)
        if not sent:
            if index == self.frontier:
                self.used = max(0, self.used - cost)
            return
        # The header counts the window the venue answered in; it is ours only if the
        # request went and came back within one window.
        if used is not None and index == self.index(now) == self.frontier:
            self.used = max(self.used, used + self._in_flight.get(index, 0))


@final
class _Gcra:
    """The SDK's GCRA :class:`Pacer` as a budget: ``cost`` units in a row."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer

    def reserve(self, cost: int, now: float) -> tuple[float, tuple[float, ...]]:
        at, before = self.pacer.reserve(now)
        for _ in range(cost - 1):
            at, _ = self.pacer.reserve(now)
        return at, (before, self.pacer.tat)

    def release(
        self, cost: int, token: tuple[float, ...], *, sent: bool, used: int | None, now: float
    ) -> None:
        if not sent:
            before, after = token
            self.pacer.give_back(before, after)


@final
class _Windowed:
    """The SDK's :class:`WindowPacer` as a budget (a count per sliding window).

    Unsent reservations are not given back: the pacer keeps only send times, and a
    slot kept for nothing only makes the pacing stricter.
    """

    def __init__(self, pacer: WindowPacer) -> None:
        self.pacer = pacer

    def reserve(self, cost: int, now: float) -> tuple[float, tuple[float, ...]]:
        at = now
        for _ in range(cost):
            at = self.pacer.reserve(now)
        return at, ()

    def release(
        self, cost: int, token: tuple[float, ...], *, sent: bool, used: int | None, now: float
    ) -> None:
        return None


#: ``(method, path, params) -> (budget key, cost)``, ``None`` if the table has no entry.
CostRule = Callable[[str, str, Params], "tuple[str, int] | None"]


@final
@dataclasses.dataclass(frozen=True, slots=True)
class VenueLimits:
    """One venue's REST rules.

    Attributes:
        venue: the adapter name (``binance``, ``binance_usdm``, ``okx``, ...).
        cost: the endpoint table; ``None`` for an endpoint it does not know.
        default: budget key and cost of an endpoint the table does not know.
        budget: builds the budget for a key.
        used_header: the response header with the venue's count, if any.
        hold_statuses: statuses that hold the host (429, 418; Bybit 403).
        banned_statuses: those of them that mean the IP is banned.
        default_hold: seconds to hold per status when ``Retry-After`` is missing.
        limit_codes: body codes that mean "rate limited" (they hold like a 429).
        errors_in_ok: whether a 2xx body may carry an error code (OKX, Bybit).
    """

    venue: str
    cost: CostRule
    default: tuple[str, int]
    budget: Callable[[str], Budget]
    used_header: str | None = None
    hold_statuses: frozenset[int] = frozenset({429, 418})
    banned_statuses: frozenset[int] = frozenset({418})
    default_hold: Mapping[int, float] = dataclasses.field(default_factory=dict)
    limit_codes: frozenset[int | str] = frozenset()
    errors_in_ok: bool = False

    def plan(self, method: str, path: str, params: Params) -> tuple[str, int]:
        """The budget key and cost of one request (the table's, else the default)."""
        return self.cost(method, path, params) or self.default


def _int(params: Params, name: str, default: int) -> int:
    value = params.get(name)
    try:
        return default if value is None else int(value)
    except ValueError:
        return default


def _symbols(params: Params) -> int | None:
    """How many symbols a Binance ``symbols=["A","B"]`` parameter names, if present."""
    value = params.get("symbols")
    return None if value is None else str(value).count(",") + 1


def _binance_spot(method: str, path: str, params: Params) -> tuple[str, int] | None:
    if path in ("/api/v3/ping", "/api/v3/time"):
        return "weight", 1
    if path == "/api/v3/exchangeInfo":
        return "weight", 20
    if path == "/api/v3/depth":
        limit = _int(params, "limit", 100)
        return "weight", 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    if path in ("/api/v3/ticker/price", "/api/v3/ticker/bookTicker"):
        return "weight", 2 if "symbol" in params else 4
    if path == "/api/v3/ticker/24hr":
        if "symbol" in params:
            return "weight", 2
        count = _symbols(params)
        if count is None:
            return "weight", 80
        return "weight", 2 if count <= 20 else 40 if count <= 100 else 80
    return None


def _binance_usdm(method: str, path: str, params: Params) -> tuple[str, int] | None:
    if path in ("/fapi/v1/ping", "/fapi/v1/time", "/fapi/v1/exchangeInfo"):
        return "weight", 1
    if path == "/fapi/v1/depth":
        # Without limit the venue answers 500 levels; charged as such here (the header
        # corrects it if the venue charges less).
        limit = _int(params, "limit", 500)
        return "weight", 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
    return None


#: OKX limits per endpoint: (requests, per seconds); rule "IP" unless noted.
_OKX_LIMITS: Final[Mapping[str, tuple[int, float]]] = {
    "/api/v5/market/books": (40, 2.0),
    "/api/v5/market/books-full": (10, 2.0),
    "/api/v5/market/ticker": (20, 2.0),
    "/api/v5/market/tickers": (20, 2.0),
    "/api/v5/market/candles": (40, 2.0),
    "/api/v5/public/time": (10, 2.0),
    # Rule "IP + Instrument Type": one budget per instType.
    "/api/v5/public/instruments": (20, 2.0),
}
#: An OKX endpoint missing from the table: the smallest public limit (10 per 2 s).
_OKX_DEFAULT: Final = (10, 2.0)


def _okx(method: str, path: str, params: Params) -> tuple[str, int] | None:
    if path == "/api/v5/public/instruments":
        return f"{path}?instType={params.get('instType', '')}", 1
    return (path, 1) if path in _OKX_LIMITS else None


def _okx_budget(key: str) -> Budget:
    limit, window = _OKX_LIMITS.get(key.partition("?")[0], _OKX_DEFAULT)
    return _Windowed(WindowPacer(limit, window))


VENUES: Final[Mapping[str, VenueLimits]] = {
    "binance": VenueLimits(
        venue="binance",
        cost=_binance_spot,
        default=("weight", 1),
        budget=lambda key: WeightWindow(6000, 60.0),
        used_header="x-mbx-used-weight-1m",
        default_hold={429: 60.0, 418: 120.0},
        limit_codes=frozenset({-1003}),
    ),
    "binance_usdm": VenueLimits(
        venue="binance_usdm",
        cost=_binance_usdm,
        default=("weight", 1),
        budget=lambda key: WeightWindow(2400, 60.0),
        used_header="x-mbx-used-weight-1m",
        default_hold={429: 60.0, 418: 120.0},
        limit_codes=frozenset({-1003}),
    ),
    "okx": VenueLimits(
        venue="okx",
        cost=_okx,
        default=("other", 1),
        budget=_okx_budget,
        default_hold={429: 2.0},
        limit_codes=frozenset({"50011"}),
        errors_in_ok=True,
    ),
    "deribit": VenueLimits(
        venue="deribit",
        cost=lambda method, path, params: None,
        default=("credits", 1),
        budget=lambda key: _Gcra(Pacer(100, 0.05)),
        default_hold={429: 1.0},
        limit_codes=frozenset({10028}),
    ),
    "bybit": VenueLimits(
        venue="bybit",
        cost=lambda method, path, params: None,
        default=("ip", 1),
        budget=lambda key: _Windowed(WindowPacer(600, 5.0)),
        hold_statuses=frozenset({429, 403}),
        banned_statuses=frozenset({403}),
        default_hold={429: 1.0, 403: 600.0},
        limit_codes=frozenset({10006}),
        errors_in_ok=True,
    ),
}


def retry_after(value: str | None, date: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (RFC 9110 §10.2.3).

    Args:
        value: the header: delay-seconds (``"120"``) or an HTTP-date.
        date: the response's ``Date`` header, the reference for an HTTP-date (so the
            wait does not depend on our wall clock being right).

    Returns:
        The wait in seconds (never negative), or ``None`` when the header is missing or
        unreadable, or is a date without a ``Date`` to measure it from.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    if date is None:
        return None
    try:
        until = email.utils.parsedate_to_datetime(text)
        since = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    return max(0.0, (until - since).total_seconds())


@final
class HostLimiter:
    """The budgets and the hold of one host (as reached through one route).

    Args:
        limits: the venue's rules.
        host: the host's name, for messages.

    Attributes:
        hold_until: requests wait until this Trio time (``-inf``: no hold).
        hold_reason: why the host is held, for :class:`RateLimited`.
        hold_status: the status that caused the hold.
    """

    def __init__(self, limits: VenueLimits, host: str) -> None:
        self.limits = limits
        self.host = host
        self.hold_until = -math.inf
        self.hold_reason = ""
        self.hold_status: int | None = None
        self._budgets: dict[str, Budget] = {}

    def budget(self, key: str) -> Budget:
        """The budget for ``key``, created on first use."""
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = self.limits.budget(key)
        return budget

    def reserve(
        self, method: str, path: str, params: Params, weight: int | None, now: float
    ) -> Reservation:
        """Reserve a slot for one request; it may go at ``Reservation.at``.

        The slot is taken at or after the end of any hold. If a hold starts while the
        request waits, the caller releases the slot unsent and reserves again.

        Args:
            method: the HTTP method.
            path: the request path.
            params: its query parameters (some costs depend on them).
            weight: the caller's cost, overriding the table.
            now: the Trio clock.

        Raises:
            ValueError: the cost can never fit the budget.
        """
        key, cost = self.limits.plan(method, path, params)
        if weight is not None:
            cost = weight
        at, token = self.budget(key).reserve(cost, max(now, self.hold_until))
        return Reservation(at=at, key=key, cost=cost, token=token)

    def release(
        self, reservation: Reservation, *, sent: bool, used: int | None, now: float
    ) -> None:
        """Settle a reservation (see :meth:`Budget.release`)."""
        self.budget(reservation.key).release(
            reservation.cost, reservation.token, sent=sent, used=used, now=now
        )

    def hold(self, seconds: float, now: float, *, status: int | None, reason: str) -> None:
        """Hold the host for ``seconds`` from ``now`` (a longer hold already set stays)."""
        if now + seconds > self.hold_until:
            self.hold_until = now + seconds
            self.hold_status = status
            self.hold_reason = reason

    def observe(
        self,
        reservation: Reservation,
        status: int,
        headers: Mapping[str, str],
        venue_code: int | str | None,
        now: float,
    ) -> float | None:
        """Account for an answer; hold the host if the venue said "too many".

        Args:
            reservation: the request's slot (released here).
            status: the HTTP status.
            headers: the response headers (lower-case names).
            venue_code: the venue's error code from the body, if any.
            now: the Trio clock when the answer arrived.

        Returns:
            The hold in seconds if this answer started one, else ``None``.
        """
        used: int | None = None
        name = self.limits.used_header
        if name is not None and name in headers:
            try:
                used = int(headers[name])
            except ValueError:
                used = None
        self.release(reservation, sent=True, used=used, now=now)
        limited = venue_code is not None and venue_code in self.limits.limit_codes
        if status not in self.limits.hold_statuses and not limited:
            return None
        key = status if status in self.limits.hold_statuses else 429
        wait = retry_after(headers.get("retry-after"), headers.get("date"))
        if wait is None:
            wait = self.limits.default_hold.get(key, DEFAULT_RETRY_AFTER)
        banned = status in self.limits.banned_statuses
        reason = f"IP banned (HTTP {status})" if banned else f"held after HTTP {status}"
        if limited and status not in self.limits.hold_statuses:
            reason = f"held after venue code {venue_code!r}"
        self.hold(wait, now, status=status, reason=reason)
        return wait
