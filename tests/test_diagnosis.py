"""lrkit.diagnosis: each rule on a run made to show it, and the laws every verdict keeps."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lrkit.diagnosis import (
    BLOWUP,
    MIN_POINTS,
    RATIO_HIGH,
    RATIO_LOW,
    RISE,
    VERDICTS,
    Diagnosis,
    diagnose,
)
from lrkit.monitor import Record


def _record(loss, lr=None, ratio=None, ratio_every=10):
    record = Record()
    for t, value in enumerate(loss):
        row = {"loss": float(value)}
        if lr is not None:
            row["lr/group0"] = float(lr[t] if np.ndim(lr) else lr)
        if ratio is not None and t % ratio_every == 0:
            row["update_ratio/group0"] = float(ratio[t] if np.ndim(ratio) else ratio)
        record.add(t, row)
    return record


def _noisy(curve, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    return curve * np.exp(noise * rng.standard_normal(len(curve)))


T = np.arange(400)
HEALTHY = 0.1 + 2.0 * np.exp(-T / 40)  # fast descent, then it slows near its floor


def test_a_healthy_run_with_a_decaying_lr_is_ok():
    lr = 0.1 * 0.5 * (1 + np.cos(np.pi * T / 400))
    found = diagnose(_record(_noisy(HEALTHY), lr, 1e-3))
    assert found.verdict == "ok" and found.advice == "" and not found.bad
    assert f"from {found.numbers['start_loss']:.3g} to" in found.evidence  # in numbers


def test_nan_is_too_high_at_its_step():
    loss = _noisy(HEALTHY)
    loss[250] = math.nan
    found = diagnose(_record(loss, 0.1))
    assert (found.verdict, found.rule, found.step, found.stretch) == (
        "too_high",
        "nan",
        250,
        (250, 399),
    )
    assert "cut the lr" in found.advice


def test_a_blow_up_early_also_suggests_warmup():
    loss = np.concatenate([_noisy(HEALTHY[:20]), 30 * np.ones(380)])
    found = diagnose(_record(loss, 0.1))
    assert found.verdict == "too_high" and found.rule == "rise"
    assert found.numbers["rise"] > RISE
    assert "warmup" in found.advice
    assert found.stretch is not None and found.stretch[0] <= 25


def test_a_mid_run_blow_up_is_too_high_from_where_it_rose():
    loss = _noisy(HEALTHY)
    loss[300:] = loss[299] * np.exp((T[300:] - 300) / 8)
    found = diagnose(_record(loss, 0.1))
    assert found.verdict == "too_high" and found.rule == "rise"
    assert 300 <= found.step <= 340  # where it passes 3x its start
    assert "warmup" not in found.advice


def test_a_jump_back_above_the_start_after_a_low_is_a_blow_up():
    """Not 3x the start, but 3x the lowest stretch and above the start: blowup."""
    loss = _noisy(HEALTHY)
    loss[300:] = 2.5  # the start is about 2.1, the low about 0.1
    found = diagnose(_record(loss, 0.1))
    assert found.verdict == "too_high" and found.rule == "blowup"
    assert found.step == 300
    assert found.numbers["risen_to"] > BLOWUP * found.numbers["lowest"]


def test_frequent_spikes_above_the_start_are_too_high():
    loss = _noisy(HEALTHY)
    loss[100::25] = 5.0  # above the start (2.1) and far above the median
    found = diagnose(_record(loss, 0.1))
    assert found.verdict == "too_high" and found.rule == "spikes"
    assert found.step == 100


def test_spikes_that_stay_below_the_start_are_noise():
    loss = _noisy(HEALTHY)
    loss[100::25] = 1.0  # 8x the median there, but below the start level
    assert diagnose(_record(loss, 0.1 * 0.5 * (1 + np.cos(np.pi * T / 400)))).verdict == "ok"


def test_huge_updates_without_progress_are_too_high():
    loss = _noisy(np.full(400, 2.0), 0.02)
    found = diagnose(_record(loss, 1.0, ratio=0.5))
    assert found.verdict == "too_high" and found.rule == "large_updates"
    assert found.numbers["update_ratio"] > RATIO_HIGH


def test_tiny_updates_are_too_low():
    found = diagnose(_record(_noisy(HEALTHY), 1e-6, ratio=1e-7))
    assert found.verdict == "too_low" and found.rule == "tiny_updates"
    assert found.numbers["update_ratio_early"] < RATIO_LOW
    assert "x10" in found.advice


def test_a_loss_that_hardly_moves_is_too_low():
    loss = _noisy(2.0 - 0.0001 * T, 0.002)
    found = diagnose(_record(loss, 1e-4))
    assert found.verdict == "too_low" and found.rule == "no_progress"


def test_a_loss_still_falling_straight_at_the_end_is_too_low():
    loss = _noisy(2.0 - 0.004 * T, 0.005)  # 2.0 -> 0.4, a straight line: far from done
    found = diagnose(_record(loss, 1e-3))
    assert found.verdict == "too_low" and found.rule == "sluggish"
    assert found.numbers["late_share"] > 0.4
    assert "x3" in found.advice


def test_straight_in_cumulative_lr_is_sluggish_whatever_the_schedule():
    """A cosine lr makes a too-low run's loss bend in steps; in cumulative lr it stays straight."""
    lr = 1e-3 * 0.5 * (1 + np.cos(np.pi * T / 400))
    loss = _noisy(2.0 - 1.6 * np.cumsum(lr) / np.sum(lr), 0.005)
    assert diagnose(_record(loss, lr)).rule == "sluggish"


def test_a_stall_at_a_constant_lr_is_a_plateau_and_after_decay_is_ok():
    loss = _noisy(0.5 + 2.0 * np.exp(-T / 30))  # flat from about step 150
    found = diagnose(_record(loss, 0.1))
    assert found.verdict == "plateau"
    assert found.stretch is not None and found.stretch[0] == 199  # the last half of steps 0..399
    assert "decay" in found.advice
    decayed = 0.1 * 0.5 * (1 + np.cos(np.pi * T / 400))
    assert diagnose(_record(loss, decayed)).verdict == "ok"


def test_too_few_points_are_ok_unless_nan():
    short = _record([2.0, 1.0, 0.5] * (MIN_POINTS // 3))
    found = diagnose(short)
    assert found.verdict == "ok" and found.rule == "too_few"
    short.add(100, {"loss": math.inf})
    assert diagnose(short).verdict == "too_high"
    exploding = _record([6.0 * 10.0**k for k in range(10)])
    found = diagnose(exploding)
    assert (found.verdict, found.rule, found.step) == ("too_high", "rise", 1)
    assert "10 losses recorded" in found.evidence
    assert "only 1 loss recorded" in diagnose(_record([1.0])).evidence


def test_live_checks_leave_sluggishness_and_plateaus_to_the_end():
    loss = _noisy(2.0 - 0.004 * T, 0.005)
    assert diagnose(_record(loss, 1e-3), final=False).verdict == "ok"
    stalled = _noisy(0.5 + 2.0 * np.exp(-T / 30))
    assert diagnose(_record(stalled, 0.1), final=False).verdict == "ok"


def test_to_dict_is_json_and_str_reads():
    loss = _noisy(HEALTHY)
    loss[300] = math.inf
    found = diagnose(_record(loss, 0.1))
    data = json.loads(json.dumps(found.to_dict(), allow_nan=False))
    assert data["verdict"] == "too_high" and data["stretch"] == [300, 399]
    assert str(found).startswith("too_high: the loss is inf at step 300\ncut the lr")
    assert Diagnosis("ok", "fine").label == "ok" and found.label == "too high"


curves = st.builds(
    lambda kind, scale, noise, seed, n: (
        _noisy(
            {
                "healthy": 0.1 + 2.0 * np.exp(-np.arange(n) / (n / 10)),
                "straight": 2.0 - 1.5 * np.arange(n) / n,
                "flat": np.full(n, 2.0),
                "stall": 0.5 + 2.0 * np.exp(-np.arange(n) / (n / 12)),
                "rise": 0.2 + np.arange(n) / n * 3,
            }[kind],
            noise,
            seed,
        )
        * scale
    ),
    st.sampled_from(["healthy", "straight", "flat", "stall", "rise"]),
    st.floats(1e-3, 1e3),
    st.floats(0.0, 0.3),
    st.integers(0, 2**16),
    st.integers(MIN_POINTS, 600),
)


@settings(max_examples=80, deadline=None)
@given(curves, st.floats(1e-3, 1e3), st.floats(1e-6, 1.0))
def test_verdicts_do_not_depend_on_the_units_of_loss_or_lr(loss, loss_scale, lr):
    """Every threshold is relative: scaling the loss or the lr changes no verdict."""
    n = len(loss)
    schedule = lr * 0.5 * (1 + np.cos(np.pi * np.arange(n) / n))
    base = diagnose(_record(loss, schedule))
    assert base.verdict in VERDICTS
    scaled = diagnose(_record(loss * loss_scale, schedule * 7.0))
    assert (scaled.verdict, scaled.rule) == (base.verdict, base.rule)
    assert abs(scaled.step - base.step) <= 1  # a threshold met exactly may round either way


@settings(max_examples=60, deadline=None)
@given(curves, st.data())
def test_a_nan_anywhere_is_too_high_at_the_first_one(loss, data):
    at = data.draw(st.integers(0, len(loss) - 1))
    loss = loss.copy()
    loss[at:] = math.nan
    found = diagnose(_record(loss, 0.1))
    assert (found.verdict, found.step) == ("too_high", at)


@settings(max_examples=40, deadline=None)
@given(curves)
def test_the_live_check_says_too_high_only_where_the_final_one_does(loss):
    """Mid-run rules are a subset: a live too_high is the final too_high (same evidence)."""
    record = _record(loss, 0.1, ratio=np.full(len(loss), 1e-3))
    live, final = diagnose(record, final=False), diagnose(record)
    assert live.verdict in ("ok", "too_high", "too_low")
    if live.bad:
        assert (live.verdict, live.rule) == (final.verdict, final.rule)


def test_a_loss_that_falls_fast_at_first_is_not_a_rise():
    # the first medians are padded with the first loss: a fall from 10 to 2 is no rise
    loss = [10.0, 2.0] + [1 / (1 + t / 50) for t in range(298)]
    found = diagnose(_record(loss))
    assert found.verdict == "ok", found
