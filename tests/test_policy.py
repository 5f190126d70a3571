"""Tests for ``supervisor.policy``: backoff delays and the restart-intensity window.

All pure and synchronous: the code under test takes ``now`` and a ``random.Random`` as
arguments, so exact values are asserted without a clock. Jittered sequences are pinned
by mirroring each draw with a second ``Random`` seeded the same way.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.policy import Backoff, BackoffPolicy, Jitter, RestartIntensity


def make_policy(**fields: Any) -> BackoffPolicy:
    """Build a policy through msgspec so its bounds are checked, as config would."""
    return msgspec.convert(fields, BackoffPolicy)


def take(backoff: Backoff, n: int) -> list[float]:
    return [backoff.next_delay() for _ in range(n)]


def uncapped(initial: float, multiplier: float, n: int) -> float:
    """``initial * multiplier**n`` with overflow mapped to infinity."""
    if initial == 0.0:
        return 0.0
    try:
        return initial * multiplier**n
    except OverflowError:
        return float("inf")


def capped(policy: BackoffPolicy, n: int) -> float:
    return min(policy.max, uncapped(policy.initial, policy.multiplier, n))


# ---------------------------------------------------------------------------
# Backoff: exact values
# ---------------------------------------------------------------------------


def test_fresh_backoff_state() -> None:
    policy = make_policy(jitter="none")
    backoff = Backoff(policy, random.Random(0))
    assert backoff.policy is policy
    assert backoff.attempt == 0
    assert backoff.last_delay == 0.0


def test_none_jitter_doubles_up_to_the_cap() -> None:
    backoff = Backoff(
        make_policy(initial=0.5, multiplier=2, max=30, jitter="none"), random.Random(0)
    )
    assert take(backoff, 8) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.attempt == 8
    assert backoff.last_delay == 30.0


def test_reset_starts_over_from_initial() -> None:
    backoff = Backoff(
        make_policy(initial=0.5, multiplier=2, max=30, jitter="none"), random.Random(0)
    )
    take(backoff, 5)
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.last_delay == 0.0
    assert take(backoff, 3) == [0.5, 1.0, 2.0]


def test_none_jitter_multiplier_one_is_constant() -> None:
    backoff = Backoff(
        make_policy(initial=1.5, multiplier=1, max=30, jitter="none"), random.Random(0)
    )
    assert take(backoff, 5) == [1.5] * 5


def test_none_jitter_initial_zero_is_always_zero() -> None:
    backoff = Backoff(make_policy(initial=0, multiplier=2, max=30, jitter="none"), random.Random(0))
    assert take(backoff, 5) == [0.0] * 5


def test_initial_above_max_gives_max() -> None:
    backoff = Backoff(make_policy(initial=10, multiplier=2, max=3, jitter="none"), random.Random(0))
    assert take(backoff, 3) == [3.0, 3.0, 3.0]
    decorrelated = Backoff(
        make_policy(initial=10, multiplier=2, max=3, jitter="decorrelated"), random.Random(0)
    )
    assert take(decorrelated, 3) == [3.0, 3.0, 3.0]


def test_none_jitter_draws_nothing_from_the_rng() -> None:
    rng = random.Random(7)
    backoff = Backoff(make_policy(jitter="none"), rng)
    take(backoff, 10)
    assert rng.random() == random.Random(7).random()


def test_full_jitter_sequence() -> None:
    policy = make_policy(initial=0.5, multiplier=2, max=30, jitter="full")
    backoff = Backoff(policy, random.Random(42))
    mirror = random.Random(42)
    expected = [mirror.uniform(0, min(30.0, 0.5 * 2**n)) for n in range(10)]
    assert take(backoff, 10) == expected


def test_equal_jitter_sequence() -> None:
    policy = make_policy(initial=0.5, multiplier=2, max=30, jitter="equal")
    backoff = Backoff(policy, random.Random(42))
    mirror = random.Random(42)
    expected = []
    for n in range(10):
        half = min(30.0, 0.5 * 2**n) / 2
        expected.append(half + mirror.uniform(0, half))
    assert take(backoff, 10) == expected


def test_decorrelated_jitter_sequence() -> None:
    policy = make_policy(initial=0.5, multiplier=3, max=30, jitter="decorrelated")
    backoff = Backoff(policy, random.Random(42))
    mirror = random.Random(42)
    expected = []
    prev = 0.5
    for _ in range(12):
        prev = min(30.0, mirror.uniform(0.5, max(0.5, prev * 3)))
        expected.append(prev)
    assert take(backoff, 12) == expected
    # The first delay is drawn from [initial, initial * multiplier].
    assert 0.5 <= expected[0] <= 1.5


def test_decorrelated_reset_forgets_the_previous_delay() -> None:
    policy = make_policy(initial=1, multiplier=2, max=30, jitter="decorrelated")
    backoff = Backoff(policy, random.Random(3))
    take(backoff, 6)
    backoff.reset()
    mirror = random.Random(3)
    for _ in range(6):
        mirror.uniform(0.0, 1.0)  # one draw per delay handed out before the reset
    # After reset the upper bound is again max(initial, initial * multiplier).
    assert backoff.next_delay() == min(30.0, mirror.uniform(1.0, 2.0))


# ---------------------------------------------------------------------------
# Backoff: properties
# ---------------------------------------------------------------------------

policies = st.builds(
    lambda initial, max_, multiplier, jitter: make_policy(
        initial=initial, max=max_, multiplier=multiplier, jitter=jitter.value
    ),
    st.one_of(st.just(0.0), st.floats(min_value=0, max_value=3600.0)),
    st.floats(min_value=0, max_value=86_400.0, exclude_min=True),
    st.one_of(st.just(1.0), st.floats(min_value=1.0, max_value=100.0)),
    st.sampled_from(Jitter),
)
seeds = st.integers(min_value=0, max_value=2**32 - 1)
steps = st.integers(min_value=1, max_value=60)


@given(policies, seeds, steps)
def test_delay_stays_within_zero_and_max(policy: BackoffPolicy, seed: int, n: int) -> None:
    for delay in take(Backoff(policy, random.Random(seed)), n):
        assert 0.0 <= delay <= policy.max


@given(policies, seeds, steps)
def test_attempt_and_last_delay_track_calls(policy: BackoffPolicy, seed: int, n: int) -> None:
    backoff = Backoff(policy, random.Random(seed))
    for i in range(n):
        delay = backoff.next_delay()
        assert backoff.attempt == i + 1
        assert backoff.last_delay == delay


@given(policies, seeds, steps)
def test_none_jitter_is_capped_exponential(policy: BackoffPolicy, seed: int, n: int) -> None:
    policy = msgspec.structs.replace(policy, jitter=Jitter.NONE)
    delays = take(Backoff(policy, random.Random(seed)), n)
    assert delays == sorted(delays)
    for i, delay in enumerate(delays):
        assert delay == capped(policy, i)
        if delay == policy.max:
            assert uncapped(policy.initial, policy.multiplier, i) >= policy.max


@given(policies, seeds, steps)
def test_equal_jitter_keeps_half_the_capped_delay(policy: BackoffPolicy, seed: int, n: int) -> None:
    policy = msgspec.structs.replace(policy, jitter=Jitter.EQUAL)
    for i, delay in enumerate(take(Backoff(policy, random.Random(seed)), n)):
        assert capped(policy, i) / 2 <= delay <= capped(policy, i)


@given(policies, seeds, steps)
def test_full_jitter_stays_under_the_capped_delay(policy: BackoffPolicy, seed: int, n: int) -> None:
    policy = msgspec.structs.replace(policy, jitter=Jitter.FULL)
    for i, delay in enumerate(take(Backoff(policy, random.Random(seed)), n)):
        assert 0.0 <= delay <= capped(policy, i)


@given(policies, seeds, steps)
def test_decorrelated_never_below_initial(policy: BackoffPolicy, seed: int, n: int) -> None:
    policy = msgspec.structs.replace(policy, jitter=Jitter.DECORRELATED)
    floor = min(policy.initial, policy.max)
    for delay in take(Backoff(policy, random.Random(seed)), n):
        assert floor <= delay <= policy.max


@given(policies, seeds, steps)
def test_same_seed_same_sequence(policy: BackoffPolicy, seed: int, n: int) -> None:
    first = take(Backoff(policy, random.Random(seed)), n)
    second = take(Backoff(policy, random.Random(seed)), n)
    assert first == second


@given(policies, seeds, steps, steps)
def test_reset_with_reseeded_rng_replays_the_sequence(
    policy: BackoffPolicy, seed: int, n: int, before: int
) -> None:
    rng = random.Random(seed)
    backoff = Backoff(policy, rng)
    first = take(backoff, n)
    take(backoff, before)
    backoff.reset()
    rng.seed(seed)
    assert backoff.attempt == 0
    assert backoff.last_delay == 0.0
    assert take(backoff, n) == first


@settings(max_examples=20, deadline=None)
@given(policies, seeds)
def test_ten_thousand_attempts_do_not_overflow(policy: BackoffPolicy, seed: int) -> None:
    backoff = Backoff(policy, random.Random(seed))
    take(backoff, 10_000)
    assert backoff.attempt == 10_000
    delay = backoff.next_delay()
    assert 0.0 <= delay <= policy.max
    if policy.jitter is Jitter.NONE:
        assert delay == capped(policy, 10_000)


@pytest.mark.parametrize("jitter", list(Jitter))
def test_steepest_growth_reaches_the_cap_without_overflow(jitter: Jitter) -> None:
    # 100.0**10_000 is far past the float range; the delay must simply sit at max.
    policy = make_policy(initial=3600.0, multiplier=100, max=86_400.0, jitter=jitter.value)
    backoff = Backoff(policy, random.Random(1))
    delays = take(backoff, 10_000)
    assert all(0.0 <= d <= 86_400.0 for d in delays)
    if jitter is Jitter.NONE:
        assert delays[-1] == 86_400.0


# ---------------------------------------------------------------------------
# RestartIntensity
# ---------------------------------------------------------------------------


def test_intensity_exceeds_on_the_fourth_restart_in_window() -> None:
    intensity = RestartIntensity(3, 10.0)
    assert [intensity.record(t) for t in (0.0, 1.0, 2.0)] == [False, False, False]
    assert intensity.record(3.0) is True
    assert intensity.count(3.0) == 4


def test_intensity_window_slides() -> None:
    intensity = RestartIntensity(3, 10.0)
    for t in (0.0, 1.0, 2.0):
        assert intensity.record(t) is False
    # Window (0, 10] holds 1, 2 and 10; the restart at 0 has left.
    assert intensity.record(10.0) is False
    assert intensity.count(10.0) == 3


def test_intensity_boundary_is_half_open() -> None:
    intensity = RestartIntensity(1, 5.0)
    assert intensity.record(0.0) is False
    assert intensity.count(4.999) == 1
    # Exactly `within` later, the first restart has left the window.
    assert intensity.count(5.0) == 0
    assert intensity.record(5.0) is False
    assert intensity.record(9.5) is True


def test_intensity_zero_max_restarts_exceeds_at_once() -> None:
    intensity = RestartIntensity(0, 60.0)
    assert intensity.record(0.0) is True
    assert intensity.record(100.0) is True


def test_intensity_count_on_empty_window() -> None:
    intensity = RestartIntensity(2, 1.0)
    assert intensity.count(0.0) == 0
    intensity.record(0.5)
    intensity.record(0.75)
    assert intensity.count(1.0) == 2
    assert intensity.count(1.5) == 1
    assert intensity.count(1.75) == 0


def test_intensity_keeps_at_most_max_restarts_plus_one() -> None:
    intensity = RestartIntensity(2, 100.0)
    for t in range(10):
        intensity.record(float(t))
    assert intensity.count(9.0) == 3


def test_intensity_record_rejects_time_going_backwards() -> None:
    intensity = RestartIntensity(3, 10.0)
    intensity.record(5.0)
    with pytest.raises(
        ValueError,
        match=(
            r"^RestartIntensity\.record\(\) got now=4\.0, earlier than the previous "
            r"now=5\.0; time must not go backwards \(pass trio\.current_time\(\)\)$"
        ),
    ):
        intensity.record(4.0)
    # The failed call changed nothing.
    assert intensity.count(5.0) == 1


def test_intensity_count_rejects_time_going_backwards() -> None:
    intensity = RestartIntensity(3, 10.0)
    intensity.count(2.5)
    with pytest.raises(
        ValueError,
        match=(
            r"^RestartIntensity\.count\(\) got now=1\.0, earlier than the previous "
            r"now=2\.5; time must not go backwards \(pass trio\.current_time\(\)\)$"
        ),
    ):
        intensity.count(1.0)


def test_intensity_rejects_negative_max_restarts() -> None:
    with pytest.raises(
        ValueError,
        match=r"^max_restarts must be >= 0, got -1; use 0 to escalate on the first restart$",
    ):
        RestartIntensity(-1, 10.0)


@pytest.mark.parametrize(("within", "shown"), [(0.0, "0.0"), (-1.0, "-1.0"), (float("nan"), "nan")])
def test_intensity_rejects_non_positive_window(within: float, shown: str) -> None:
    with pytest.raises(ValueError, match=rf"^within must be > 0 seconds, got {shown}$"):
        RestartIntensity(3, within)


@given(
    st.integers(min_value=0, max_value=6),
    st.floats(min_value=0.001, max_value=100.0),
    st.lists(
        st.tuples(st.booleans(), st.floats(min_value=0.0, max_value=20.0)),
        max_size=60,
    ),
)
def test_intensity_matches_brute_force(
    max_restarts: int, within: float, script: list[tuple[bool, float]]
) -> None:
    intensity = RestartIntensity(max_restarts, within)
    history: list[float] = []
    now = 0.0
    for is_restart, step in script:
        now += step
        if is_restart:
            history.append(now)
            in_window = sum(1 for t in history if t > now - within)
            assert intensity.record(now) is (in_window > max_restarts)
        else:
            in_window = sum(1 for t in history if t > now - within)
            assert intensity.count(now) == min(in_window, max_restarts + 1)
