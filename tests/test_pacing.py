"""The shared request pacer (GCRA virtual scheduling)."""

from __future__ import annotations

import pytest

from actors.exchanges.sdk.pacing import Pacer, WindowPacer


def test_burst_then_spacing() -> None:
    pacer = Pacer(3, 0.5)
    assert [pacer.reserve(0.0)[0] for _ in range(6)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.5]
    assert pacer.reserve(10.0)[0] == 10.0  # idle long enough: back to a full burst
    assert pacer.reserve(10.0)[0] == 10.0


def test_give_back_only_when_nobody_reserved_since() -> None:
    pacer = Pacer(1, 1.0)
    pacer.reserve(0.0)
    at, before = pacer.reserve(0.0)
    assert at == 1.0
    pacer.give_back(before, pacer.tat)  # the last reservation was never used
    assert pacer.reserve(0.0)[0] == 1.0  # the slot came back
    _, before = pacer.reserve(0.0)
    mine_after = pacer.tat
    pacer.reserve(0.0)  # another connection reserved after us
    pacer.give_back(before, mine_after)
    assert pacer.tat == mine_after + 1.0  # unchanged: giving back would drop theirs


def test_rejects_bad_budgets() -> None:
    with pytest.raises(ValueError, match=r"^Pacer needs burst >= 1 and spacing > 0, got 0, 1.0$"):
        Pacer(0, 1.0)


def test_window_pacer_never_allows_more_than_its_limit_in_any_window() -> None:
    # OKX: N requests per hour per connection; nothing sent for two hours, then four.
    pacer = WindowPacer(2, 3600.0)
    pacer.reset()
    assert [pacer.reserve(7300.0) for _ in range(4)] == [7300.0, 7300.0, 10900.0, 10900.0]
    assert pacer.reserve(20000.0) == 20000.0
    pacer.reset()  # a new connection starts with its whole budget
    assert pacer.reserve(20000.0) == 20000.0
