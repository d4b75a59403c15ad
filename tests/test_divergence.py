"""The divergence rule on hand-made loss sequences, its state and its checks."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrkit.divergence import Divergence, DivergenceRule, DivergenceState


def feed(rule: DivergenceRule, losses: list[float]) -> tuple[DivergenceState, list[int]]:
    """Feed ``losses``; return the final state and the indices that diverged."""
    state = rule.initial()
    found_at = []
    for i, loss in enumerate(losses):
        state, found = rule.update(state, loss)
        if found is not None:
            found_at.append(i)
    return state, found_at


def test_defaults_are_the_spec_values() -> None:
    rule = DivergenceRule()
    assert (rule.spike, rule.window, rule.above_start) == (4.0, 20, False)


@pytest.mark.parametrize("position", [0, 5, 25])
def test_nan_diverges_at_once(position: int) -> None:
    rule = DivergenceRule()
    state, _ = feed(rule, [1.0] * position)
    _, found = rule.update(state, math.nan)
    assert isinstance(found, Divergence)
    assert found.reason == "nan"
    assert "NaN" in found.message


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_inf_diverges_even_on_the_first_loss(value: float) -> None:
    rule = DivergenceRule()
    _, found = rule.update(rule.initial(), value)
    assert found is not None
    assert found.reason == "inf"
    assert math.isnan(found.median)  # no reference yet


def test_spike_above_four_times_the_median() -> None:
    rule = DivergenceRule(spike=4.0, window=20)
    state, found_at = feed(rule, [1.0] * 20)
    assert found_at == []
    _, found = rule.update(state, 4.01)
    assert found is not None
    assert found.reason == "spike"
    assert found.loss == 4.01
    assert found.median == 1.0
    assert "median" in found.message


def test_exactly_spike_times_median_is_not_a_spike() -> None:
    rule = DivergenceRule(spike=4.0, window=20)
    state, _ = feed(rule, [1.0] * 20)
    assert rule.check(state, 4.0) is None
    assert rule.check(state, 3.99) is None


def test_median_not_mean_one_outlier_does_not_move_the_reference() -> None:
    rule = DivergenceRule(spike=4.0, window=5)
    # 3.9 passes (below 4 x median 1.0) and stays in the window: the mean
    # would rise to ~1.6, the median stays 1.0, so 4.5 is still a spike.
    state, found_at = feed(rule, [1.0, 1.0, 1.0, 1.0, 1.0, 3.9])
    assert found_at == []
    assert rule.median(state) == 1.0
    assert rule.check(state, 4.5) is not None


def test_slow_rise_is_not_a_spike() -> None:
    rule = DivergenceRule()
    losses = [1.0 * 1.05**i for i in range(300)]  # grows 1.6e6-fold, 5% a step
    _, found_at = feed(rule, losses)
    assert found_at == []


def test_fast_exponential_blow_up_is_a_spike() -> None:
    rule = DivergenceRule()
    losses = [1.0] * 20 + [1.5**i for i in range(1, 40)]
    _, found_at = feed(rule, losses)
    assert found_at, "a 1.5x-per-step blow-up must be caught"
    first = found_at[0]
    assert losses[first] > 4.0  # caught once the loss is above 4 x the median


def test_window_warm_up_ignores_spikes_until_full() -> None:
    rule = DivergenceRule(spike=4.0, window=20)
    losses = [1.0] * 5 + [100.0] + [1.0] * 13  # 19 losses: the window is not full
    state, found_at = feed(rule, losses)
    assert found_at == []
    assert len(state.recent) == 19
    state, found = rule.update(state, 1.0)  # the 20th fills the window
    assert found is None
    assert rule.check(state, 100.0) is not None  # now the same value is a spike


def test_window_keeps_only_the_last_losses() -> None:
    rule = DivergenceRule(window=3)
    state, _ = feed(rule, [5.0, 4.0, 3.0, 2.0, 1.0])
    assert state.recent == (3.0, 2.0, 1.0)
    assert state.seen == 5
    assert rule.median(state) == 2.0


def test_even_window_median_averages_the_middle_pair() -> None:
    rule = DivergenceRule(window=4)
    state, _ = feed(rule, [1.0, 2.0, 3.0, 10.0])
    assert rule.median(state) == 2.5
    assert math.isnan(rule.median(rule.initial()))


def test_diverging_loss_leaves_the_state_unchanged() -> None:
    rule = DivergenceRule(window=3)
    state, _ = feed(rule, [1.0, 1.0, 1.0])
    after, found = rule.update(state, 50.0)
    assert found is not None
    assert after == state
    after_nan, found_nan = rule.update(state, math.nan)
    assert found_nan is not None
    assert after_nan == state


def test_non_positive_median_only_checks_nan_and_inf() -> None:
    rule = DivergenceRule(window=3)
    state, found_at = feed(rule, [-2.0, -1.0, -3.0, 0.0, 0.0, 0.0])
    assert found_at == []
    assert rule.check(state, 1e30) is None
    assert rule.check(state, math.nan) is not None


def test_above_start_ignores_near_zero_noise_but_catches_blow_ups() -> None:
    plain = DivergenceRule(window=4)
    guarded = DivergenceRule(window=4, above_start=True)
    losses = [2.3, 2.2, 2.1, 2.0] + [0.03] * 8  # starting level: median 2.15
    plain_state, _ = feed(plain, losses)
    guarded_state, _ = feed(guarded, losses)
    assert guarded_state.start == pytest.approx(2.15)
    # 0.15 is 5 x the recent median: a spike for the plain rule, noise here.
    assert plain.check(plain_state, 0.15) is not None
    assert guarded.check(guarded_state, 0.15) is None
    # A loss above the starting level and 4 x the median is a divergence.
    found = guarded.check(guarded_state, 3.0)
    assert found is not None
    assert found.reason == "spike"


def test_start_is_fixed_once_the_first_window_is_full() -> None:
    rule = DivergenceRule(window=3, above_start=True)
    state, _ = feed(rule, [3.0, 1.0])
    assert state.start is None
    state, _ = feed(rule, [3.0, 1.0, 2.0, 0.1, 0.1, 0.1])
    assert state.start == 2.0


def test_state_round_trips_through_json() -> None:
    rule = DivergenceRule(window=3, above_start=True)
    state, _ = feed(rule, [3.0, 2.0, 1.0, 0.5])
    data = json.loads(json.dumps(state.to_dict()))
    assert DivergenceState.from_dict(data) == state
    assert DivergenceState.from_dict(DivergenceState().to_dict()) == DivergenceState()


@pytest.mark.parametrize(
    "data",
    [{}, {"recent": [1.0]}, {"recent": "x", "seen": 1}, {"recent": [1.0, 2.0], "seen": 1}],
)
def test_bad_state_is_rejected(data: dict) -> None:
    with pytest.raises(ValueError, match="divergence state"):
        DivergenceState.from_dict(data)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spike": 1.0}, "spike must be a number > 1, got 1.0"),
        ({"spike": 0.5}, "spike must be a number > 1, got 0.5"),
        ({"spike": math.inf}, "spike must be finite, got inf"),
        ({"spike": math.nan}, "spike must be a number > 1, got nan"),
        ({"spike": "4"}, "spike must be a number > 1, got '4'"),
        ({"window": 0}, "window must be an integer >= 1, got 0"),
        ({"window": 2.5}, "window must be an integer >= 1, got 2.5"),
        ({"window": True}, "window must be an integer >= 1, got True"),
        ({"above_start": "yes"}, "above_start must be True or False, got 'yes'"),
    ],
)
def test_bad_arguments_name_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DivergenceRule(**kwargs)


@given(
    base=st.floats(min_value=1e-6, max_value=1e6),
    ratios=st.lists(st.floats(min_value=1.0, max_value=3.99), min_size=1, max_size=80),
)
def test_losses_within_spike_of_a_floor_never_diverge(base: float, ratios: list[float]) -> None:
    # Every loss lies in [base, 4 * base): the median is >= base, so no loss
    # can exceed 4 x the median.
    rule = DivergenceRule(window=5)
    _, found_at = feed(rule, [base * r for r in ratios])
    assert found_at == []


@given(losses=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=40))
def test_update_is_pure_and_check_agrees(losses: list[float]) -> None:
    rule = DivergenceRule(window=4)
    state = rule.initial()
    for loss in losses:
        expected = rule.check(state, loss)
        again = rule.update(state, loss)
        new_state, found = rule.update(state, loss)
        assert (new_state, found) == again or (
            found is not None and math.isnan(found.loss)  # nan != nan in the dataclass
        )
        assert (found is None) == (expected is None)
        assert len(new_state.recent) <= 4
        assert all(math.isfinite(x) for x in new_state.recent)
        state = new_state
