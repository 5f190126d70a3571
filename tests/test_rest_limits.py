"""The REST budgets, holds and error envelopes, as pure code with times passed in."""

from __future__ import annotations

import importlib
import math
import pathlib
from typing import Any

import msgspec
import pytest

from actors.net.rest import VENUES, HostLimiter, WeightWindow, retry_after
from actors.net.rest._errors import venue_error

DATA = pathlib.Path(__file__).parent / "data" / "rest"


def _fixture(name: str) -> Any:
    return msgspec.json.decode((DATA / name).read_bytes())


# --- WeightWindow: Binance's fixed one-minute window ------------------------------------


def test_weight_window_fills_to_the_limit_then_waits_for_the_next_window() -> None:
    window = WeightWindow(6000, 60.0)
    assert window.reserve(5990, 0.0)[0] == 0.0
    assert window.reserve(10, 1.0)[0] == 1.0  # exactly 6,000: allowed
    assert window.reserve(1, 2.0)[0] == 60.0  # 6,001 would exceed it
    assert window.reserve(5999, 3.0)[0] == 60.0  # the next window fills up too
    assert window.reserve(1, 4.0)[0] == 120.0


def test_weight_window_keeps_requests_in_order() -> None:
    window = WeightWindow(100, 60.0)
    assert window.reserve(90, 0.0)[0] == 0.0
    assert window.reserve(20, 0.0)[0] == 60.0
    # A small one would fit the first window, but it does not overtake the waiting one.
    assert window.reserve(5, 1.0)[0] == 60.0


def test_header_reconciles_the_count_upwards_only() -> None:
    window = WeightWindow(6000, 60.0)
    _, token = window.reserve(1, 0.0)
    window.release(1, token, sent=True, used=5990, now=0.5)  # other users of the IP
    assert window.used == 5990
    assert window.reserve(10, 1.0)[0] == 1.0
    low = window.reserve(1, 1.0)
    assert low[0] == 60.0
    fresh = WeightWindow(6000, 60.0)
    _, token = fresh.reserve(20, 0.0)
    fresh.release(20, token, sent=True, used=3, now=0.1)  # a low header changes nothing
    assert fresh.used == 20


def test_requests_in_flight_are_added_to_the_header() -> None:
    window = WeightWindow(6000, 60.0)
    _, first = window.reserve(5, 0.0)
    _, second = window.reserve(50, 0.0)
    window.release(5, first, sent=True, used=5900, now=0.2)
    assert window.used == 5950  # the venue has not counted the second one yet
    window.release(50, second, sent=True, used=5950, now=0.3)
    assert window.used == 5950


def test_a_header_from_another_window_is_ignored() -> None:
    window = WeightWindow(6000, 60.0)
    _, token = window.reserve(1, 59.5)
    window.release(1, token, sent=True, used=5999, now=60.2)
    assert window.reserve(100, 60.3)[0] == 60.3


def test_an_unsent_reservation_is_given_back() -> None:
    window = WeightWindow(100, 60.0)
    _, token = window.reserve(60, 0.0)
    window.release(60, token, sent=False, used=None, now=1.0)
    assert window.used == 0
    assert window.reserve(100, 1.0)[0] == 1.0


def test_windows_follow_the_venue_clock_offset() -> None:
    window = WeightWindow(10, 60.0, offset=15.0)  # the venue's minute starts at 45 s
    assert window.reserve(10, 0.0)[0] == 0.0
    assert window.reserve(1, 1.0)[0] == 45.0


def test_weight_window_rejects_impossible_requests_and_settings() -> None:
    with pytest.raises(
        ValueError, match=r"^a request of weight 6001 can never fit a budget of 6000$"
    ):
        WeightWindow(6000, 60.0).reserve(6001, 0.0)
    with pytest.raises(
        ValueError, match=r"^WeightWindow needs limit >= 1 and window > 0, got 0, 60.0$"
    ):
        WeightWindow(0, 60.0)


# --- venue tables -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "weight"),
    [
        (None, 5),
        (1, 5),
        (100, 5),
        (101, 25),
        (500, 25),
        (501, 50),
        (1000, 50),
        (1001, 250),
        (5000, 250),
    ],
)
def test_binance_spot_depth_weight_follows_limit(limit: int | None, weight: int) -> None:
    params = {"symbol": "BTCUSDT"} if limit is None else {"symbol": "BTCUSDT", "limit": limit}
    assert VENUES["binance"].plan("GET", "/api/v3/depth", params) == ("weight", weight)


@pytest.mark.parametrize(
    ("path", "params", "weight"),
    [
        ("/api/v3/ping", {}, 1),
        ("/api/v3/time", {}, 1),
        ("/api/v3/exchangeInfo", {}, 20),
        ("/api/v3/ticker/price", {"symbol": "BTCUSDT"}, 2),
        ("/api/v3/ticker/price", {}, 4),
        ("/api/v3/ticker/bookTicker", {"symbols": '["A","B"]'}, 4),
        ("/api/v3/ticker/24hr", {"symbol": "BTCUSDT"}, 2),
        ("/api/v3/ticker/24hr", {"symbols": ",".join(['"S"'] * 20)}, 2),
        ("/api/v3/ticker/24hr", {"symbols": ",".join(['"S"'] * 21)}, 40),
        ("/api/v3/ticker/24hr", {"symbols": ",".join(['"S"'] * 101)}, 80),
        ("/api/v3/ticker/24hr", {}, 80),
        ("/api/v3/somethingNew", {}, 1),
    ],
)
def test_binance_spot_weights(path: str, params: dict[str, str], weight: int) -> None:
    assert VENUES["binance"].plan("GET", path, params) == ("weight", weight)


@pytest.mark.parametrize(
    ("limit", "weight"),
    [(5, 2), (10, 2), (20, 2), (50, 2), (100, 5), (500, 10), (1000, 20), (None, 10)],
)
def test_binance_usdm_depth_weight(limit: int | None, weight: int) -> None:
    params = {} if limit is None else {"limit": limit}
    assert VENUES["binance_usdm"].plan("GET", "/fapi/v1/depth", params) == ("weight", weight)
    assert VENUES["binance_usdm"].plan("GET", "/fapi/v1/exchangeInfo", {}) == ("weight", 1)


def test_binance_usdm_budget_is_2400_per_minute() -> None:
    limiter = HostLimiter(VENUES["binance_usdm"], "fapi.binance.com")
    assert limiter.reserve("GET", "/fapi/v1/depth", {"limit": 1000}, 2400, 0.0).at == 0.0
    assert limiter.reserve("GET", "/fapi/v1/time", {}, None, 0.0).at == 60.0


def test_okx_books_allows_40_per_2_seconds_per_endpoint() -> None:
    limiter = HostLimiter(VENUES["okx"], "www.okx.com")
    times = [
        limiter.reserve("GET", "/api/v5/market/books", {"instId": "BTC-USDT"}, None, 0.0).at
        for _ in range(41)
    ]
    assert times == [0.0] * 40 + [2.0]
    # Another endpoint has its own budget: public/time, 10 per 2 s.
    times = [limiter.reserve("GET", "/api/v5/public/time", {}, None, 0.0).at for _ in range(11)]
    assert times == [0.0] * 10 + [2.0]


def test_okx_instruments_are_limited_per_instrument_type() -> None:
    limiter = HostLimiter(VENUES["okx"], "www.okx.com")
    spot = [
        limiter.reserve("GET", "/api/v5/public/instruments", {"instType": "SPOT"}, None, 0.0).at
        for _ in range(21)
    ]
    swap = limiter.reserve("GET", "/api/v5/public/instruments", {"instType": "SWAP"}, None, 0.0)
    assert spot == [0.0] * 20 + [2.0]
    assert swap.at == 0.0
    # An endpoint the table does not know gets the smallest public limit, 10 per 2 s.
    other = [limiter.reserve("GET", "/api/v5/market/x", {}, None, 0.0).at for _ in range(11)]
    assert other == [0.0] * 10 + [2.0]


def test_deribit_credits_allow_a_burst_of_100_then_one_per_50_ms() -> None:
    limiter = HostLimiter(VENUES["deribit"], "www.deribit.com")
    times = [
        limiter.reserve("GET", "/api/v2/public/get_time", {}, None, 0.0).at for _ in range(102)
    ]
    assert times[:100] == [0.0] * 100
    assert times[100:] == [pytest.approx(0.05), pytest.approx(0.10)]


def test_deribit_gives_back_an_unsent_credit() -> None:
    limiter = HostLimiter(VENUES["deribit"], "www.deribit.com")
    for _ in range(100):
        limiter.reserve("GET", "/api/v2/public/get_time", {}, None, 0.0)
    late = limiter.reserve("GET", "/api/v2/public/get_time", {}, None, 0.0)
    limiter.release(late, sent=False, used=None, now=0.0)
    assert limiter.reserve("GET", "/api/v2/public/get_time", {}, None, 0.0).at == late.at


def test_bybit_allows_600_per_5_seconds_per_ip() -> None:
    limiter = HostLimiter(VENUES["bybit"], "api.bybit.com")
    times = [limiter.reserve("GET", "/v5/market/time", {}, None, 0.0).at for _ in range(601)]
    assert times == [0.0] * 600 + [5.0]


# --- holds -------------------------------------------------------------------------


def test_429_holds_the_host_for_retry_after_and_every_request_waits() -> None:
    limiter = HostLimiter(VENUES["binance"], "api.binance.com")
    slot = limiter.reserve("GET", "/api/v3/time", {}, None, 0.0)
    hold = limiter.observe(slot, 429, {"retry-after": "7"}, -1003, 1.0)
    assert hold == 7.0
    assert (limiter.hold_until, limiter.hold_reason, limiter.hold_status) == (
        8.0,
        "held after HTTP 429",
        429,
    )
    assert limiter.reserve("GET", "/api/v3/exchangeInfo", {}, None, 2.0).at == 8.0


def test_418_is_a_ban_and_a_missing_retry_after_uses_the_venue_default() -> None:
    limiter = HostLimiter(VENUES["binance"], "api.binance.com")
    slot = limiter.reserve("GET", "/api/v3/time", {}, None, 0.0)
    assert limiter.observe(slot, 418, {}, None, 0.0) == 120.0
    assert limiter.hold_reason == "IP banned (HTTP 418)"
    # A shorter hold later does not shorten the ban.
    slot = limiter.reserve("GET", "/api/v3/time", {}, None, 0.0)
    limiter.observe(slot, 429, {"retry-after": "1"}, None, 0.0)
    assert (limiter.hold_until, limiter.hold_status) == (120.0, 418)


def test_bybit_403_holds_ten_minutes_and_rate_limit_codes_hold_like_429() -> None:
    bybit = HostLimiter(VENUES["bybit"], "api.bybit.com")
    slot = bybit.reserve("GET", "/v5/market/time", {}, None, 0.0)
    assert bybit.observe(slot, 403, {}, None, 0.0) == 600.0
    assert bybit.hold_reason == "IP banned (HTTP 403)"
    okx = HostLimiter(VENUES["okx"], "www.okx.com")
    slot = okx.reserve("GET", "/api/v5/market/books", {}, None, 0.0)
    assert okx.observe(slot, 429, {}, "50011", 0.0) == 2.0
    deribit = HostLimiter(VENUES["deribit"], "www.deribit.com")
    slot = deribit.reserve("GET", "/api/v2/public/get_time", {}, None, 0.0)
    assert deribit.observe(slot, 400, {}, 10028, 3.0) == 1.0
    assert (deribit.hold_until, deribit.hold_reason) == (4.0, "held after venue code 10028")
    # An ordinary error holds nothing.
    slot = deribit.reserve("GET", "/api/v2/public/get_time", {}, None, 5.0)
    assert deribit.observe(slot, 400, {}, -32602, 5.0) is None


@pytest.mark.parametrize(
    ("value", "date", "seconds"),
    [
        ("120", None, 120.0),
        (" 7 ", None, 7.0),
        ("Mon, 02 Nov 2026 00:02:00 GMT", "Mon, 02 Nov 2026 00:00:00 GMT", 120.0),
        ("Mon, 02 Nov 2026 00:00:00 GMT", "Mon, 02 Nov 2026 00:00:30 GMT", 0.0),
        ("Mon, 02 Nov 2026 00:02:00 GMT", None, None),
        ("soon", "Mon, 02 Nov 2026 00:00:00 GMT", None),
        ("-5", None, None),
        (None, None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(
    value: str | None, date: str | None, seconds: float | None
) -> None:
    assert retry_after(value, date) == seconds


# --- error envelopes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_fixture("binance_error_invalid_symbol.json"), (-1121, "Invalid symbol.")),
        (_fixture("binance_usdm_error_depth_limit.json"), (-4021, "7 is not valid depth limit")),
        (_fixture("okx_error_rate_limit.json"), ("50011", "Too Many Requests")),
        (_fixture("deribit_error_too_many_requests.json"), (10028, "too_many_requests")),
        (_fixture("deribit_error_invalid_params.json"), (-32602, "Invalid params")),
        (
            {"retCode": 10001, "retMsg": "params error: symbol invalid", "result": {}},
            (10001, "params error: symbol invalid"),
        ),
        (_fixture("binance_time.json"), None),
        (_fixture("binance_ping.json"), None),
        (_fixture("okx_time.json"), None),
        (_fixture("deribit_get_time.json"), None),
        ({"retCode": 0, "retMsg": "OK", "result": {"timeSecond": "1"}}, None),
        ([1, 2], None),
        (None, None),
    ],
)
def test_venue_error_reads_every_envelope(body: Any, expected: tuple[Any, str] | None) -> None:
    assert venue_error(body) == expected


# --- public surface -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["actors.net.rest", "supervisor.testing.fakes.rest"])
def test_rest_modules_export_exactly_their_public_names(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        key
        for key, value in vars(module).items()
        if not key.startswith("_")
        and getattr(value, "__module__", name).startswith(("actors", "supervisor"))
        and not isinstance(value, type(importlib))
    }
    public |= {key for key in vars(module) if key.isupper() and not key.startswith("_")}
    assert set(module.__all__) == public


def test_default_hold_when_a_venue_names_none_is_one_minute() -> None:
    limiter = HostLimiter(VENUES["okx"], "www.okx.com")
    slot = limiter.reserve("GET", "/api/v5/public/time", {}, None, 0.0)
    # OKX names no 418 hold; a 418 would fall back to the default minute.
    assert limiter.observe(slot, 418, {}, None, 0.0) == 60.0
    assert math.isfinite(limiter.hold_until)
