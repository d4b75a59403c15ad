"""PlateauDetector: torch's ReduceLROnPlateau decisions, as plain JSON state."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrkit.controllers import PlateauDetector

settings_kw = {"max_examples": 60, "deadline": None}

metric_values = st.one_of(
    st.sampled_from([0.0, 1.0, 1.0, 2.0, 1e-4, float("inf"), float("-inf"), float("nan")]),
    st.floats(min_value=-10, max_value=10, allow_nan=False),
)
options = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["min", "max"]),
        "patience": st.integers(0, 4),
        "threshold": st.sampled_from([0.0, 1e-4, 0.1, 1.0]),
        "threshold_mode": st.sampled_from(["rel", "abs"]),
        "cooldown": st.integers(0, 3),
    }
)


def torch_decisions(opts: dict, metrics: list[float]) -> list[tuple[bool, float, int, int]]:
    """(cut?, best, num_bad_epochs, cooldown_counter) after each observation, by torch."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, eps=0.0, **opts)
    out = []
    for m in metrics:
        before = opt.param_groups[0]["lr"]
        sched.step(m)
        cut = opt.param_groups[0]["lr"] < before
        out.append((cut, sched.best, sched.num_bad_epochs, sched.cooldown_counter))
    return out


def ours(d: PlateauDetector, metrics: list[float]) -> list[tuple[bool, float, int, int]]:
    out = []
    for m in metrics:
        cut = d.observe(m)
        best = d.mode_worse if d.best is None else d.best
        out.append((cut, best, d.num_bad_epochs, d.cooldown_counter))
    return out


def same(a: list, b: list) -> bool:
    for x, y in zip(a, b, strict=True):
        if x[0] != y[0] or x[2:] != y[2:]:
            return False
        if not (x[1] == y[1] or (math.isnan(x[1]) and math.isnan(y[1]))):
            return False
    return True


@settings(**settings_kw)
@given(opts=options, metrics=st.lists(metric_values, min_size=1, max_size=40))
def test_decisions_equal_torchs(opts: dict, metrics: list[float]) -> None:
    assert same(ours(PlateauDetector(**opts), metrics), torch_decisions(opts, metrics))


def test_decisions_equal_torchs_on_noisy_plateaus() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        opts = {
            "mode": ["min", "max"][int(rng.integers(2))],
            "patience": int(rng.integers(0, 6)),
            "threshold": float(rng.choice([0.0, 1e-4, 0.01])),
            "threshold_mode": ["rel", "abs"][int(rng.integers(2))],
            "cooldown": int(rng.integers(0, 4)),
        }
        metrics = [float(v) for v in np.cumsum(rng.normal(0, 0.01, 60)) + 1.0]
        assert same(ours(PlateauDetector(**opts), metrics), torch_decisions(opts, metrics))


@settings(**settings_kw)
@given(
    opts=options,
    metrics=st.lists(metric_values, min_size=2, max_size=30),
    cut_at=st.integers(0, 29),
)
def test_json_round_trip_mid_run_continues_identically(
    opts: dict, metrics: list[float], cut_at: int
) -> None:
    cut_at = min(cut_at, len(metrics) - 1)
    straight = PlateauDetector(**opts)
    expected = ours(straight, metrics)
    first = PlateauDetector(**opts)
    head = ours(first, metrics[:cut_at])
    text = json.dumps(first.state_dict(), allow_nan=False)  # strict JSON
    second = PlateauDetector.from_state_dict(json.loads(text))
    assert second == first
    assert same(head + ours(second, metrics[cut_at:]), expected)


def test_patience_counts_observations_and_cooldown_skips_them() -> None:
    d = PlateauDetector(patience=2, cooldown=2)
    cuts = [d.observe(1.0) for _ in range(10)]
    # 1st is the best; 2nd-4th are bad: the 3rd bad one (> patience) cuts at observation 4;
    # 2 cooldown observations, then 3 more bad ones: the next cut is at observation 9.
    assert [i for i, c in enumerate(cuts, start=1) if c] == [4, 9]


def test_first_observation_is_better_and_nan_never_is() -> None:
    d = PlateauDetector(mode="max")
    assert d.is_better(-1e300)
    assert not d.is_better(float("nan"))
    assert not d.observe(float("nan"))
    assert d.best is None and d.num_bad_epochs == 1


def test_reset_keeps_settings() -> None:
    d = PlateauDetector(patience=0, cooldown=3)
    d.observe(1.0)
    d.observe(1.0)
    d.reset()
    assert (d.best, d.num_bad_epochs, d.cooldown_counter, d.cooldown) == (None, 0, 0, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "lowest"}, "mode must be one of 'min', 'max', got 'lowest'"),
        ({"threshold_mode": "pct"}, "threshold_mode must be one of 'rel', 'abs', got 'pct'"),
        ({"patience": -1}, "patience must be an integer >= 0, got -1"),
        ({"cooldown": 1.5}, "cooldown must be an integer >= 0, got 1.5"),
        ({"threshold": -0.1}, "threshold must be a finite number >= 0, got -0.1"),
        ({"threshold": float("nan")}, "threshold must be a finite number >= 0, got nan"),
    ],
)
def test_bad_settings_say_what_and_which_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PlateauDetector(**kwargs)


def test_unknown_state_keys_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"unknown state keys \['bogus'\]"):
        PlateauDetector().load_state_dict({"bogus": 1})


# ---------------------------------------------------------------------------
# Plateau: a schedule times a factor that torch's rules cut
# ---------------------------------------------------------------------------

import lrkit  # noqa: E402
from lrkit.controllers import Plateau, warmup_steps  # noqa: E402


def test_plateau_scales_the_schedule_and_floors_at_min_lr() -> None:
    s = lrkit.cosine(lr=1.0, steps=100)
    p = Plateau(s, factor=0.5, patience=0, min_lr=0.3)
    assert [p.observe(1.0, t) for t in range(4)] == [False, True, True, False]
    # cut 1 at step 1: f = 0.5; cut 2 at step 2 would give s(2) * 0.25 < 0.3, so it stops at
    # lr(2) = min_lr = 0.3; at step 3 the lr is already below min_lr: no cut
    assert p.factor_now == pytest.approx(0.3 / s(2), rel=1e-12)
    assert p.lr(50) == pytest.approx(s(50) * 0.3 / s(2), rel=1e-12)
    q = Plateau(lrkit.constant(1.0), factor=0.5, patience=0, min_lr=0.3)
    for t in range(6):
        q.observe(1.0, t)
    assert q.lr(10) == pytest.approx(0.3)  # never below min_lr at the cut's step


def test_plateau_skips_cuts_smaller_than_eps() -> None:
    p = Plateau(lrkit.constant(1e-9), factor=0.5, patience=0, eps=1e-8)
    assert [p.observe(1.0, t) for t in range(5)] == [False] * 5
    assert p.factor_now == 1.0


def test_plateau_ignores_observations_during_warmup() -> None:
    s = lrkit.warmup(lrkit.constant(1.0), steps=5)
    assert warmup_steps(s) == 5 and warmup_steps(lrkit.wsd(1.0, steps=10, warmup_steps=3)) == 3
    p = Plateau(s, factor=0.5, patience=0)
    assert [p.observe(1.0, t) for t in range(5)] == [False] * 5
    assert p.detector.best is None  # nothing was counted
    assert [p.observe(1.0, t) for t in range(5, 8)] == [False, True, True]
    assert Plateau(s, start=0, patience=0).start == 0


@settings(**settings_kw)
@given(
    opts=options,
    metrics=st.lists(st.floats(0, 10, allow_nan=False), min_size=2, max_size=30),
    cut_at=st.integers(0, 29),
)
def test_plateau_state_is_json_and_resumes_exactly(
    opts: dict, metrics: list[float], cut_at: int
) -> None:
    s = lrkit.warmup(lrkit.cosine(lr=0.1, steps=40), steps=3)
    cut_at = min(cut_at, len(metrics) - 1)
    straight = Plateau(s, factor=0.5, **opts)
    expected = [(straight.observe(m, t), straight.lr(t + 1)) for t, m in enumerate(metrics)]
    first = Plateau(s, factor=0.5, **opts)
    got = [(first.observe(m, t), first.lr(t + 1)) for t, m in enumerate(metrics[:cut_at])]
    second = Plateau.from_state_dict(json.loads(json.dumps(first.state_dict())), s)
    got += [(second.observe(m, t), second.lr(t + 1)) for t, m in enumerate(metrics) if t >= cut_at]
    assert got == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factor": 1.0}, r"factor must be in \[0, 1\), got 1.0"),
        ({"min_lr": -1.0}, "min_lr must be a finite number >= 0, got -1.0"),
        ({"eps": float("inf")}, "eps must be a finite number >= 0, got inf"),
        ({"start": -2}, "start must be an integer >= 0, got -2"),
        ({"mode": "up"}, "mode must be one of 'min', 'max', got 'up'"),
    ],
)
def test_plateau_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Plateau(lrkit.constant(0.1), **kwargs)
    with pytest.raises(ValueError, match="schedule must be an lrkit schedule"):
        Plateau(0.1)
