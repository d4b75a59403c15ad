"""PlateauDetector: torch's ReduceLROnPlateau decisions, as plain JSON state."""

from __future__ import annotations

import itertools
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


# ---------------------------------------------------------------------------
# lrkit.Plateau: torch's ReduceLROnPlateau, every option, around any schedule
# ---------------------------------------------------------------------------

all_options = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["min", "max"]),
        "factor": st.sampled_from([0.0, 0.1, 0.5, 0.9]),
        "patience": st.integers(0, 4),
        "threshold": st.sampled_from([0.0, 1e-4, 0.1]),
        "threshold_mode": st.sampled_from(["rel", "abs"]),
        "cooldown": st.integers(0, 3),
        "min_lr": st.sampled_from([0.0, 1e-3, 0.05]),
        "eps": st.sampled_from([0.0, 1e-8, 1e-3]),
    }
)


def torch_lrs(lr: float, opts: dict, metrics: list[float]) -> list[float]:
    """The lr torch's ReduceLROnPlateau sets after each metric."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **opts)
    out = []
    for m in metrics:
        sched.step(m)
        out.append(opt.param_groups[0]["lr"])
    return out


@settings(**settings_kw)
@given(
    opts=all_options,
    lr=st.sampled_from([0.1, 1.0, 3e-4]),
    metrics=st.lists(metric_values, min_size=1, max_size=40),
)
def test_plateau_over_a_constant_is_torchs_reduce_lr_on_plateau(
    opts: dict, lr: float, metrics: list[float]
) -> None:
    p = lrkit.Plateau(lrkit.constant(lr), **opts)
    ours = []
    for t, m in enumerate(metrics):
        p.observe(m, t)
        ours.append(p.lr(t + 1))
    theirs = torch_lrs(lr, opts, metrics)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=0.0)


def test_plateau_over_a_constant_is_torchs_on_long_noisy_streams() -> None:
    rng = np.random.default_rng(3)
    for _ in range(100):
        opts = {
            "mode": ["min", "max"][int(rng.integers(2))],
            "factor": float(rng.uniform(0.05, 0.95)),
            "patience": int(rng.integers(0, 6)),
            "threshold": float(rng.choice([0.0, 1e-4, 0.01])),
            "threshold_mode": ["rel", "abs"][int(rng.integers(2))],
            "cooldown": int(rng.integers(0, 4)),
            "min_lr": float(rng.choice([0.0, 1e-4, 0.02])),
            "eps": float(rng.choice([0.0, 1e-8, 1e-3])),
        }
        metrics = [float(v) for v in np.cumsum(rng.normal(0, 0.01, 80)) + 1.0]
        p = lrkit.Plateau(lrkit.constant(0.1), **opts)
        ours = []
        for t, m in enumerate(metrics):
            p.observe(m, t)
            ours.append(p.lr(t + 1))
        assert ours == pytest.approx(torch_lrs(0.1, opts, metrics), rel=1e-12, abs=0.0)


WARM = lrkit.warmup(lrkit.constant(1.0), steps=5, start_lr=0.1)


def run_warm_plateau(p: lrkit.Plateau, metrics: list[float], first: int = 0) -> list[float]:
    """Observe ``metrics[t]`` at step t (from ``first``); the lr of each next step."""
    out = []
    for t in range(first, len(metrics)):
        p.observe(metrics[t], t)
        out.append(p.lr(t + 1))
    return out


@pytest.mark.parametrize(
    "early", [[1.0] * 5, [5.0, 4.0, 3.0, 2.0, 1.0], [float("nan")] * 5, [0.0, 9.0, 0.0, 9.0, 0.0]]
)
def test_warmup_then_plateau_follows_warmup_then_torchs_patience(early: list[float]) -> None:
    """Warmup 0.1 -> 1.0 over 5 steps, then plateau(patience=2, factor=0.5) on a flat metric."""
    p = lrkit.Plateau(WARM, patience=2, factor=0.5)
    assert [p.lr(t) for t in range(5)] == pytest.approx([0.1, 0.28, 0.46, 0.64, 0.82], rel=1e-12)
    metrics = early + [1.0] * 25
    lrs = run_warm_plateau(p, metrics)
    # steps 0-4 follow the warmup whatever the metric (the lr set for steps 1..5)
    assert lrs[:5] == pytest.approx([WARM(t) for t in range(1, 6)], rel=1e-12)
    # from step 5 on: torch's rule, counting from the first observation after warmup.
    # Step 5 sets best; 6, 7 are bad (patience 2); the 3rd bad one, at step 8, halves the lr,
    # and then every 3rd observation: cuts at steps 8, 11, 14, ...
    theirs = torch_lrs(1.0, {"factor": 0.5, "patience": 2}, metrics[5:])
    assert lrs[5:] == pytest.approx(theirs, rel=1e-12)
    cuts = [t for t in range(5, 30) if lrs[t] < lrs[t - 1]]
    assert cuts == [8, 11, 14, 17, 20, 23, 26, 29]
    assert lrs[8] == 0.5 and lrs[11] == 0.25  # the lr of steps 9 and 12


@pytest.mark.parametrize("cut_at", [2, 5, 10, 13])  # mid-warmup, at its end, mid-plateau
def test_warmup_then_plateau_state_round_trip_continues_exactly(cut_at: int) -> None:
    rng = np.random.default_rng(cut_at)
    metrics = [float(v) for v in 1.0 + 0.001 * rng.integers(0, 3, 30)]
    expected = run_warm_plateau(lrkit.Plateau(WARM, patience=2, factor=0.5), metrics)
    first = lrkit.Plateau(WARM, patience=2, factor=0.5)
    head = run_warm_plateau(first, metrics[:cut_at])
    text = json.dumps(first.state_dict(), allow_nan=False)
    second = lrkit.Plateau.from_state_dict(json.loads(text))  # the plan comes from the state
    assert second == first
    assert head + run_warm_plateau(second, metrics, first=cut_at) == expected


def test_plateau_around_cosine_keeps_the_shape_after_a_cut() -> None:
    s = lrkit.warmup(lrkit.cosine(lr=0.1, steps=100), steps=10)
    p = lrkit.Plateau(s, factor=0.5, patience=0)
    for t in range(10, 12):
        p.observe(1.0, t)
    assert p.factor_now == 0.5
    assert [p.lr(t) for t in (20, 50, 109)] == pytest.approx([0.5 * s(t) for t in (20, 50, 109)])


# ---------------------------------------------------------------------------
# Spec names: plateau(...), guard(...), adaptive(...)
# ---------------------------------------------------------------------------

CONTROLLERS = [
    lrkit.Plateau(lrkit.cosine(lr=0.1, steps=1000), patience=5),
    lrkit.Plateau(
        lrkit.warmup(lrkit.cosine(lr=0.1, steps=100), steps=10),
        mode="max",
        factor=0.5,
        threshold=0.01,
        threshold_mode="abs",
        cooldown=2,
        min_lr=1e-4,
        eps=0.0,
        start=3,
    ),
    lrkit.Guard(),
    lrkit.Guard(0.25, 3.0, 10, 5, above_start=False, schedule=lrkit.constant(0.1)),
    lrkit.Guard(schedule=lrkit.Plateau(lrkit.constant(0.1), patience=2)),
    lrkit.Adaptive(lrkit.constant(0.01)),
    lrkit.Adaptive(
        lrkit.wsd(0.1, steps=100, warmup_steps=5),
        up=1.1,
        down=0.7,
        min_lr=1e-3,
        max_lr=0.5,
        window=4,
        start=0,
    ),
]


@pytest.mark.parametrize("c", CONTROLLERS, ids=str)
def test_str_parses_back_to_an_equal_fresh_controller(c) -> None:
    assert lrkit.parse(str(c)) == c
    assert lrkit.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert repr(c) == str(c)


def test_spec_strings_read_as_documented() -> None:
    p = lrkit.parse("plateau(cosine(lr=0.1, steps=1000), patience=5)")
    assert p == lrkit.Plateau(lrkit.cosine(lr=0.1, steps=1000), patience=5)
    g = lrkit.parse("guard(cosine(lr=0.1, steps=100), factor=0.5, max_rollbacks=2)")
    assert isinstance(g, lrkit.Guard) and g.max_rollbacks == 2 and g.lr(0) == 0.1
    a = lrkit.parse("adaptive(constant(0.01), up=1.05)")
    assert a == lrkit.Adaptive(lrkit.constant(0.01))
    assert str(lrkit.parse("guard(factor=0.3)")) == "guard(factor=0.3)"


def test_compare_fill_reaches_the_wrapped_schedule() -> None:
    fill = {"lr": 0.1, "steps": 1000}
    assert lrkit.parse("plateau(cosine(), patience=5)", **fill) == lrkit.Plateau(
        lrkit.cosine(lr=0.1, steps=1000), patience=5
    )
    g = lrkit.parse("guard(warmup(cosine(), steps=100))", **fill)
    assert g.schedule == lrkit.warmup(lrkit.cosine(lr=0.1, steps=900), steps=100)
    assert lrkit.parse("adaptive(constant())", **fill).schedule == lrkit.constant(0.1)
    assert lrkit.parse("guard(plateau(one_cycle()))", **fill).schedule.schedule == (
        lrkit.one_cycle(max_lr=0.1, steps=1000)
    )


def test_bad_controller_specs_point_at_the_argument() -> None:
    with pytest.raises(ValueError, match="patience must be an integer >= 0, got -1"):
        lrkit.parse("plateau(constant(0.1), patience=-1)")
    with pytest.raises(ValueError, match="plateau\\(\\) has no argument 'patient'"):
        lrkit.parse("plateau(constant(0.1), patient=3)")
    with pytest.raises(ValueError, match="missing required argument 'schedule'"):
        lrkit.parse("adaptive(up=1.1)")
    with pytest.raises(ValueError, match="attribute access"):
        lrkit.parse("plateau(constant(0.1)).__class__")


# ---------------------------------------------------------------------------
# lrkit.Guard
# ---------------------------------------------------------------------------


def test_guard_flags_nan_inf_and_spikes_and_counts_rollbacks() -> None:
    g = lrkit.Guard(factor=0.5, window=4, max_rollbacks=3)
    assert g.observe(float("nan"), 0) and g.last.reason == "nan"
    assert g.observe(float("inf"), 1) and g.last.reason == "inf"
    losses = [2.0, 1.8, 1.9, 1.7]
    assert [g.observe(x, t) for t, x in enumerate(losses, start=2)] == [False] * 4
    assert not g.observe(7.2, 6)  # below 4 x the median 1.85 = 7.4
    assert g.observe(8.0, 7) and g.last.reason == "spike"
    assert (g.rollbacks, g.multiplier) == (3, 0.125)
    assert g.state.recent == (1.8, 1.9, 1.7, 7.2)  # diverging losses never enter the window


def test_guard_past_max_rollbacks_raises_diverged() -> None:
    g = lrkit.Guard(max_rollbacks=1)
    assert g.observe(float("nan"), 3)
    with pytest.raises(lrkit.Diverged, match=r"loss is NaN at step 9, after 1 rollback") as info:
        g.observe(float("nan"), 9)
    assert isinstance(info.value, RuntimeError)
    assert (info.value.step, info.value.rollbacks, info.value.divergence.reason) == (9, 1, "nan")
    with pytest.raises(lrkit.Diverged, match="max_rollbacks=0"):
        lrkit.Guard(max_rollbacks=0).observe(float("inf"), 0)


def digits_like_losses() -> list[float]:
    """A good run: from 2.3 down to ~0.03, then one misclassified sample gives 0.127."""
    head = [2.3 * 0.9**t for t in range(30)]
    tail = [0.024, 0.028, 0.031, 0.034, 0.038] * 8  # any 20 in a row: median 0.031
    return head + tail + [0.127]


def test_guard_default_ignores_noise_near_zero_loss_spec_rule_does_not() -> None:
    losses = digits_like_losses()
    assert float(np.median(losses[-21:-1])) == 0.031
    assert losses[-1] > 4 * 0.031  # SPEC's plain rule calls this a spike
    default = lrkit.Guard()
    assert not any(default.observe(x, t) for t, x in enumerate(losses))
    plain = lrkit.Guard(above_start=False)
    assert [t for t, x in enumerate(losses) if plain.observe(x, t)] == [len(losses) - 1]
    # a real blow-up leaves the starting level behind and is caught by both
    assert default.observe(50.0, len(losses))


@settings(**settings_kw)
@given(
    losses=st.lists(
        st.one_of(st.floats(0.01, 100.0), st.just(float("nan"))), min_size=2, max_size=40
    ),
    cut_at=st.integers(0, 39),
)
def test_guard_state_is_json_and_resumes_exactly(losses: list[float], cut_at: int) -> None:
    cut_at = min(cut_at, len(losses) - 1)

    def run(g: lrkit.Guard, items: list[tuple[int, float]]) -> list[tuple[bool, float]]:
        out = []
        for t, x in items:
            try:
                out.append((g.observe(x, t), g.multiplier))
            except lrkit.Diverged:
                out.append((True, -1.0))
                break
        return out

    kw = {"window": 3, "max_rollbacks": 50, "schedule": lrkit.constant(0.1)}
    items = list(enumerate(losses))
    expected = run(lrkit.Guard(**kw), items)
    first = lrkit.Guard(**kw)
    head = run(first, items[:cut_at])
    second = lrkit.Guard(**kw)
    second.load_state_dict(json.loads(json.dumps(first.state_dict(), allow_nan=False)))
    assert second == first
    assert head + run(second, items[cut_at:]) == expected


def test_guard_with_a_schedule_multiplies_it() -> None:
    g = lrkit.Guard(factor=0.5, schedule=lrkit.cosine(lr=0.1, steps=10))
    g.observe(float("nan"), 0)
    assert g.lr(5) == pytest.approx(0.5 * lrkit.cosine(lr=0.1, steps=10)(5))
    with pytest.raises(ValueError, match="this guard has no schedule"):
        lrkit.Guard().lr(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factor": 0.0}, r"factor must be a number in \(0, 1\], got 0.0"),
        ({"factor": 1.5}, r"factor must be a number in \(0, 1\], got 1.5"),
        ({"spike": 1.0}, "guard: spike must be a number > 1, got 1.0"),
        ({"window": 0}, "guard: window must be an integer >= 1, got 0"),
        ({"max_rollbacks": -1}, "max_rollbacks must be an integer >= 0, got -1"),
        ({"schedule": 0.1}, "guard: schedule must be an lrkit schedule"),
    ],
)
def test_guard_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lrkit.Guard(**kwargs)


# ---------------------------------------------------------------------------
# lrkit.Adaptive
# ---------------------------------------------------------------------------


def adapt(a: lrkit.Adaptive, losses: list[float]) -> list[str]:
    return [a.observe(x, t) for t, x in enumerate(losses)]


def test_adaptive_raises_on_a_smooth_fall_and_cuts_on_a_rise() -> None:
    a = lrkit.Adaptive(lrkit.constant(0.1), up=1.5, down=0.5, window=3)
    assert adapt(a, [5.0, 4.0, 3.0, 2.0, 1.5, 1.6]) == [
        "hold", "hold", "hold", "raise", "raise", "cut"
    ]  # fmt: skip
    assert a.multiplier == pytest.approx(1.5 * 1.5 * 0.5)
    assert a.lr(6) == pytest.approx(0.1 * 1.125)


def test_adaptive_cuts_an_oscillation_without_progress_and_holds_otherwise() -> None:
    a = lrkit.Adaptive(lrkit.constant(0.1), up=2.0, down=0.5, window=3)
    # changes: down, up (cut: a rise), down; down-up-down alternates and 1.0 >= 1.0: cut
    assert adapt(a, [1.0, 0.8, 1.1, 1.0]) == ["hold", "hold", "cut", "cut"]
    b = lrkit.Adaptive(lrkit.constant(0.1), up=2.0, down=0.5, window=3)
    # down-up-down but lower than 3 observations ago: progress, hold
    assert adapt(b, [1.0, 0.8, 0.9, 0.7]) == ["hold", "hold", "cut", "hold"]
    c = lrkit.Adaptive(lrkit.constant(0.1), window=3)
    # up, down, down: neither smooth nor alternating: hold; flat is not a fall
    assert adapt(c, [1.0, 1.2, 1.1, 1.0, 1.0]) == ["hold", "cut", "hold", "hold", "hold"]


def test_adaptive_clamps_to_min_and_max_lr_without_windup() -> None:
    a = lrkit.Adaptive(lrkit.constant(0.1), up=2.0, down=0.5, max_lr=0.3, window=2)
    adapt(a, [10.0 - t for t in range(8)])
    assert a.lr(8) == pytest.approx(0.3) and a.multiplier == pytest.approx(3.0)
    a.observe(100.0, 8)
    assert a.lr(9) == pytest.approx(0.15)
    b = lrkit.Adaptive(lrkit.constant(0.1), down=0.1, min_lr=0.02)
    adapt(b, [1.0, 2.0, 3.0, 4.0])
    assert b.lr(4) == pytest.approx(0.02)
    z = lrkit.Adaptive(lrkit.linear(0.1, 0.0, steps=10), min_lr=0.01)
    assert z.lr(10) == 0.01


def test_adaptive_nan_cuts_and_forgets_and_warmup_is_ignored() -> None:
    a = lrkit.Adaptive(lrkit.constant(0.1), down=0.5, window=2)
    assert adapt(a, [3.0, 2.0, float("nan"), 1.0]) == ["hold", "hold", "cut", "hold"]
    assert a.history == [1.0]
    w = lrkit.Adaptive(lrkit.warmup(lrkit.constant(0.1), steps=4), up=2.0, window=2)
    assert adapt(w, [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0]) == ["hold"] * 6 + ["raise"]


@settings(**settings_kw)
@given(
    losses=st.lists(st.one_of(st.floats(0.0, 10.0), st.just(float("nan"))), max_size=30),
    cut_at=st.integers(0, 30),
)
def test_adaptive_state_is_json_and_resumes_exactly(losses: list[float], cut_at: int) -> None:
    s = lrkit.cosine(lr=0.1, steps=40)
    kw = {"up": 1.2, "down": 0.6, "max_lr": 0.2, "min_lr": 0.001}
    straight = lrkit.Adaptive(s, **kw)
    expected = [(straight.observe(x, t), straight.lr(t + 1)) for t, x in enumerate(losses)]
    first = lrkit.Adaptive(s, **kw)
    got = [(first.observe(x, t), first.lr(t + 1)) for t, x in enumerate(losses[:cut_at])]
    second = lrkit.Adaptive(lrkit.constant(1.0), **kw)  # the plan comes from the state
    second.load_state_dict(json.loads(json.dumps(first.state_dict(), allow_nan=False)))
    assert second == first
    got += [(second.observe(x, t), second.lr(t + 1)) for t, x in enumerate(losses) if t >= cut_at]
    assert got == expected
    assert all(0.001 <= lr <= 0.2 for _, lr in got)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"up": 0.9}, "adaptive: up must be a number >= 1, got 0.9"),
        ({"up": float("inf")}, "adaptive: up must be a finite number >= 1, got inf"),
        ({"down": 0.0}, r"adaptive: down must be a number in \(0, 1\], got 0.0"),
        ({"min_lr": -0.1}, "adaptive: min_lr must be a number >= 0, got -0.1"),
        ({"min_lr": 0.5, "max_lr": 0.1}, "adaptive: max_lr must be a number >= 0.5, got 0.1"),
        ({"window": 1}, "adaptive: window must be an integer >= 2, got 1"),
    ],
)
def test_adaptive_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lrkit.Adaptive(lrkit.constant(0.1), **kwargs)


# ---------------------------------------------------------------------------
# Replanning a controller keeps its factor and stays continuous
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plateau", "adaptive", "guard"])
def test_controller_replan_is_continuous_and_resumes_on_the_new_plan(kind: str) -> None:
    s = lrkit.warmup(lrkit.cosine(lr=0.1, steps=90), steps=10)
    c = {
        "plateau": lambda: lrkit.Plateau(s, factor=0.5, patience=0),
        "adaptive": lambda: lrkit.Adaptive(s, down=0.5),
        "guard": lambda: lrkit.Guard(
            max_rollbacks=9, schedule=lrkit.Plateau(s, factor=0.5, patience=0)
        ),
    }[kind]()
    for t in range(10, 14):
        c.observe(1.0 if kind != "guard" else float("nan"), t)
    before = c.lr(40)
    c.replan(200, 40)
    assert abs(c.lr(40) - before) <= 1e-12
    assert c.lr(200) == pytest.approx(0.0, abs=1e-15)
    lrs = [c.lr(t) for t in range(40, 201)]
    assert all(b <= a + 1e-15 for a, b in itertools.pairwise(lrs))
    fresh = (
        type(c)(s) if kind != "guard" else lrkit.Guard(schedule=lrkit.Plateau(s), max_rollbacks=9)
    )
    fresh.load_state_dict(json.loads(json.dumps(c.state_dict())))
    assert [fresh.lr(t) for t in range(0, 220, 7)] == [c.lr(t) for t in range(0, 220, 7)]


def test_warmup_of_a_replanned_schedule_is_the_planned_one_before_at() -> None:
    w = lrkit.wsd(0.1, steps=100, warmup_steps=10, decay_steps=50)
    assert warmup_steps(w.replan(200, 60)) == 10
    c = lrkit.warmup(lrkit.cosine(lr=0.1, steps=90), steps=10)
    assert warmup_steps(c.replan(300, 50)) == 10
    assert lrkit.Plateau(c.replan(300, 50)).start == 10
