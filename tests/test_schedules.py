"""Tests for the pure schedule core, ``lrkit.schedules``.

Five kinds of evidence, in this order:

1. parity with torch's own schedulers, step by step, over many random
   argument sets (torch is imported directly: it is the reference);
2. the families torch lacks, against formulas written out again here;
3. pinned boundary steps (0, w-1, w, T-1, T, T+100, 10**9);
4. hypothesis laws over random schedules from ``strategies.py``;
5. argument checks, join/scale algebra and import hygiene.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import subprocess
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from torch.optim import lr_scheduler as tls

import lrkit
from lrkit import Schedule
from strategies import (
    ENDING_FAMILIES,
    LEAF_FAMILIES,
    cosine_restarts,
    cosines,
    joins,
    one_cycles,
    replanned_schedules,
    schedules,
    wsds,
)

RTOL = 1e-9  # lrkit vs torch and vs the formulas written here
SELF_RTOL = 1e-12  # lrkit's scalar path vs its vectorized path
CASES = 100  # random argument sets per torch family
BIG = 10**9


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def assert_close(
    actual: Sequence[float] | np.ndarray,
    expected: Sequence[float] | np.ndarray,
    *,
    scale: float,
    rtol: float = RTOL,
    context: object = "",
) -> None:
    """Elementwise ``|a - e| <= rtol * |e| + 1e-12 * scale``.

    The absolute floor is tied to the lr scale: torch's recursive forms
    (``lr_t = lr_{t-1} * ratio``) pile up rounding error of order
    ``eps * base_lr`` that is large relative to values near zero.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, (a.shape, e.shape, context)
    atol = 1e-12 * scale
    bad = np.abs(a - e) > rtol * np.abs(e) + atol
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AssertionError(
            f"{context}: first mismatch at step {i}: lrkit {a[i]!r}, expected {e[i]!r} "
            f"({int(bad.sum())} of {bad.size} steps differ)"
        )


def torch_lrs(make: Callable[[torch.optim.Optimizer], Any], lr: float, n: int) -> list[float]:
    """The lr torch uses at steps 0..n-1 in an uninterrupted run.

    Step 0 is the lr set by the scheduler's constructor; step k is the lr
    after the k-th ``scheduler.step()``. One ``optimizer.step()`` before the
    first ``scheduler.step()`` keeps torch's call-order warning quiet; the
    parameter has no gradient, so it changes nothing (and calling it every
    step would only make the run slower).
    """
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr)
    sched = make(opt)
    out = [float(opt.param_groups[0]["lr"])]
    opt.step()
    for _ in range(n - 1):
        sched.step()
        out.append(float(opt.param_groups[0]["lr"]))
    return out


def lrkit_lrs(s: Schedule, n: int) -> np.ndarray:
    """Both of lrkit's paths, checked against each other, for steps 0..n-1."""
    vec = s.values(n)
    scalar = np.array([s(t) for t in range(n)])
    assert_close(vec, scalar, scale=0.0, rtol=SELF_RTOL, context=f"{s} values vs scalar")
    return vec


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def unit_gamma(rng: np.random.Generator, lo: float = 0.05) -> float:
    """A gamma in [lo, 1], exactly 1 now and then."""
    return 1.0 if rng.random() < 0.1 else float(rng.uniform(lo, 1.0))


def lr_floor(rng: np.random.Generator, lr: float) -> float:
    """A lower lr in [0, lr], exactly 0 now and then."""
    return 0.0 if rng.random() < 0.3 else lr * float(rng.uniform(0.0, 1.0))


# ---------------------------------------------------------------------------
# 1. parity with torch
# ---------------------------------------------------------------------------
#
# Each case function takes a seeded generator and returns
# (lrkit schedule, torch scheduler factory, base lr for the optimizer,
#  number of steps to compare, lr scale for the tolerance).

TorchCase = tuple[Schedule, Callable[[torch.optim.Optimizer], Any], float, int, float]


def case_step(rng: np.random.Generator) -> TorchCase:
    lr = log_uniform(rng, 1e-6, 10.0)
    step_size = int(rng.integers(1, 60))
    gamma = unit_gamma(rng)
    return (
        lrkit.step_decay(lr, step_size=step_size, gamma=gamma),
        lambda o: tls.StepLR(o, step_size=step_size, gamma=gamma),
        lr,
        400,
        lr,
    )


def case_multistep(rng: np.random.Generator) -> TorchCase:
    lr = log_uniform(rng, 1e-6, 10.0)
    count = int(rng.integers(0, 7))
    milestones = sorted({int(m) for m in rng.integers(1, 400, size=count)})
    gamma = float(rng.uniform(1.0, 2.0)) if rng.random() < 0.2 else unit_gamma(rng)
    return (
        lrkit.multistep(lr, milestones=milestones, gamma=gamma),
        lambda o: tls.MultiStepLR(o, milestones=milestones, gamma=gamma),
        lr,
        400,
        lr * max(1.0, gamma) ** len(milestones),
    )


def case_exponential(rng: np.random.Generator) -> TorchCase:
    lr = log_uniform(rng, 1e-6, 10.0)
    gamma = unit_gamma(rng, lo=0.9) if rng.random() < 0.8 else unit_gamma(rng, lo=0.1)
    return (
        lrkit.exponential(lr, gamma=gamma),
        lambda o: tls.ExponentialLR(o, gamma=gamma),
        lr,
        400,
        lr,
    )


def case_linear(rng: np.random.Generator) -> TorchCase:
    lr = log_uniform(rng, 1e-6, 10.0)
    start_factor = 1.0 if rng.random() < 0.1 else float(rng.uniform(1e-3, 1.0))
    end_factor = float(rng.choice([0.0, 1.0])) if rng.random() < 0.3 else float(rng.random())
    total = int(rng.integers(1, 400))
    return (
        lrkit.linear(lr * start_factor, lr * end_factor, steps=total),
        lambda o: tls.LinearLR(
            o, start_factor=start_factor, end_factor=end_factor, total_iters=total
        ),
        lr,
        total + 100,  # past the end: both hold end_lr
        lr,
    )


def case_polynomial(rng: np.random.Generator) -> TorchCase:
    lr = log_uniform(rng, 1e-6, 10.0)
    total = int(rng.integers(1, 400))
    power = float(rng.choice([1.0, 2.0])) if rng.random() < 0.3 else float(rng.uniform(0.1, 5))
    return (
        lrkit.polynomial(lr, steps=total, power=power),
        lambda o: tls.PolynomialLR(o, total_iters=total, power=power),
        lr,
        total + 100,  # past the end: both hold 0
        lr,
    )


def case_cosine(rng: np.random.Generator) -> TorchCase:
    lr = log_uniform(rng, 1e-6, 10.0)
    t_max = int(rng.integers(1, 500))
    min_lr = lr_floor(rng, lr)
    return (
        lrkit.cosine(lr, steps=t_max, min_lr=min_lr),
        lambda o: tls.CosineAnnealingLR(o, T_max=t_max, eta_min=min_lr),
        lr,
        t_max + 1,  # steps 0..T_max; past T_max torch rises again (tested apart)
        lr,
    )


def case_cosine_restarts(rng: np.random.Generator) -> TorchCase:
    lr = log_uniform(rng, 1e-6, 10.0)
    period = int(rng.integers(1, 80))
    mult = int(rng.integers(1, 4))
    min_lr = lr_floor(rng, lr)
    return (
        lrkit.cosine_restarts(lr, period=period, period_mult=mult, min_lr=min_lr),
        lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=period, T_mult=mult, eta_min=min_lr),
        lr,
        500,
        lr,
    )


def cyclic_case(mode: str) -> Callable[[np.random.Generator], TorchCase]:
    def case(rng: np.random.Generator) -> TorchCase:
        base = 0.0 if rng.random() < 0.2 else log_uniform(rng, 1e-6, 1.0)
        top = base * float(rng.uniform(1.0, 100.0)) if base else log_uniform(rng, 1e-6, 1.0)
        up = int(rng.integers(1, 100))
        down = None if rng.random() < 0.4 else int(rng.integers(1, 100))
        gamma = unit_gamma(rng, lo=0.99)
        return (
            lrkit.cyclic(base, top, step_size_up=up, step_size_down=down, mode=mode, gamma=gamma),
            lambda o: tls.CyclicLR(
                o,
                base_lr=base,
                max_lr=top,
                step_size_up=up,
                step_size_down=down,
                mode=mode,
                gamma=gamma,
                cycle_momentum=False,
            ),
            # torch overwrites the group's lr with base_lr: start it elsewhere to show that
            123.0,
            600,
            top,
        )

    return case


def one_cycle_args(rng: np.random.Generator) -> dict[str, Any]:
    """Random OneCycleLR arguments inside the region torch itself can evaluate.

    torch divides by zero when a phase is empty: ``pct_start * total_steps``
    equal to 1.0 exactly (the first phase ends at step 0); such draws are redrawn.
    """
    while True:
        three_phase = bool(rng.random() < 0.4)
        total = int(rng.integers(1, 8)) if rng.random() < 0.15 else int(rng.integers(8, 600))
        high = 0.5 if three_phase else 1.0
        pct_start = float(rng.uniform(0.01, high - 0.01))
        if float(pct_start * total) != 1.0:
            break
    return {
        "max_lr": log_uniform(rng, 1e-5, 10.0),
        "total": total,
        "pct_start": pct_start,
        "div_factor": log_uniform(rng, 1.0, 1e3),
        "final_div_factor": log_uniform(rng, 1.0, 1e5),
        "anneal": "linear" if rng.random() < 0.4 else "cos",
        "three_phase": three_phase,
    }


def lrkit_one_cycle(a: dict[str, Any]) -> Schedule:
    return lrkit.one_cycle(
        max_lr=a["max_lr"],
        steps=a["total"],
        pct_start=a["pct_start"],
        div_factor=a["div_factor"],
        final_div_factor=a["final_div_factor"],
        anneal=a["anneal"],
        three_phase=a["three_phase"],
    )


def torch_one_cycle(a: dict[str, Any]) -> Callable[[torch.optim.Optimizer], Any]:
    return lambda o: tls.OneCycleLR(
        o,
        max_lr=a["max_lr"],
        total_steps=a["total"],
        pct_start=a["pct_start"],
        div_factor=a["div_factor"],
        final_div_factor=a["final_div_factor"],
        anneal_strategy=a["anneal"],
        three_phase=a["three_phase"],
        cycle_momentum=False,
    )


def case_one_cycle(rng: np.random.Generator) -> TorchCase:
    a = one_cycle_args(rng)
    # torch evaluates steps 0..total (the last one past the plan), then raises
    return lrkit_one_cycle(a), torch_one_cycle(a), 1.0, a["total"], a["max_lr"]


TORCH_CASES: dict[str, Callable[[np.random.Generator], TorchCase]] = {
    "StepLR": case_step,
    "MultiStepLR": case_multistep,
    "ExponentialLR": case_exponential,
    "LinearLR": case_linear,
    "PolynomialLR": case_polynomial,
    "CosineAnnealingLR": case_cosine,
    "CosineAnnealingWarmRestarts": case_cosine_restarts,
    "CyclicLR-triangular": cyclic_case("triangular"),
    "CyclicLR-triangular2": cyclic_case("triangular2"),
    "CyclicLR-exp_range": cyclic_case("exp_range"),
    "OneCycleLR": case_one_cycle,
}


@pytest.mark.parametrize("family", list(TORCH_CASES))
def test_matches_torch_over_random_arguments(family: str) -> None:
    """CASES random argument sets per torch class, every step compared."""
    make_case = TORCH_CASES[family]
    for index in range(CASES):
        rng = np.random.default_rng([sorted(TORCH_CASES).index(family), index])
        schedule, make, base_lr, n, scale = make_case(rng)
        expected = torch_lrs(make, base_lr, n)
        assert_close(lrkit_lrs(schedule, n), expected, scale=scale, context=f"{family} {schedule}")


@pytest.mark.parametrize(
    ("three_phase", "anneal"),
    [(False, "cos"), (False, "linear"), (True, "cos"), (True, "linear")],
)
def test_one_cycle_matches_torch_each_variant(three_phase: bool, anneal: str) -> None:
    """Each OneCycleLR variant on its own, so none is left to chance."""
    for index in range(20):
        rng = np.random.default_rng([99, int(three_phase), len(anneal), index])
        a = one_cycle_args(rng)
        a.update(three_phase=three_phase, anneal=anneal)
        if three_phase and a["pct_start"] >= 0.5:
            a["pct_start"] = a["pct_start"] / 2
        if float(a["pct_start"] * a["total"]) == 1.0:
            continue
        n = a["total"]
        assert_close(
            lrkit_lrs(lrkit_one_cycle(a), n),
            torch_lrs(torch_one_cycle(a), 1.0, n),
            scale=a["max_lr"],
            context=str(a),
        )


def test_torch_cosine_rises_past_t_max_but_lrkit_holds() -> None:
    """torch's CosineAnnealingLR turns back up after T_max; lrkit holds min_lr."""
    lr, t_max, min_lr = 0.1, 50, 0.001
    theirs = torch_lrs(lambda o: tls.CosineAnnealingLR(o, T_max=t_max, eta_min=min_lr), lr, 151)
    ours = lrkit.cosine(lr, steps=t_max, min_lr=min_lr)
    assert theirs[t_max] == pytest.approx(min_lr, rel=1e-9)
    assert theirs[t_max + 1] > min_lr * 1.01  # torch starts rising again ...
    assert theirs[2 * t_max] == pytest.approx(lr, rel=1e-9)  # ... back to lr at 2 * T_max
    for t in (t_max, t_max + 1, 2 * t_max, 3 * t_max, BIG):
        assert ours(t) == min_lr
    assert np.all(ours.values(np.arange(t_max, 3 * t_max)) == min_lr)


def test_torch_one_cycle_raises_past_total_steps_but_lrkit_holds() -> None:
    """torch computes step ``total`` by stretching the last phase, then raises.

    lrkit reaches its end value at ``steps - 1`` and holds it for ever.
    """
    for anneal in ("cos", "linear"):
        total, max_lr = 100, 1.0
        param = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([param], lr=1.0)
        sched = tls.OneCycleLR(
            opt, max_lr=max_lr, total_steps=total, anneal_strategy=anneal, cycle_momentum=False
        )
        for _ in range(total):  # steps 1..total: the last one is past the plan
            opt.step()
            sched.step()
        past_end = float(opt.param_groups[0]["lr"])
        with pytest.raises(ValueError, match="Tried to step"):
            sched.step()
        s = lrkit.one_cycle(max_lr, steps=total, anneal=anneal)
        end = max_lr / 25.0 / 1e4
        assert s(total - 1) == pytest.approx(end, rel=1e-12)
        assert past_end != pytest.approx(end, rel=1e-6)  # torch's overshoot at step total
        if anneal == "linear":
            assert past_end < 0.0  # the stretched line crosses zero: a negative lr
        for t in (total, total + 1, total + 100, BIG):
            assert s(t) == s(total - 1)


def test_one_cycle_is_defined_where_torch_divides_by_zero() -> None:
    """pct_start * total_steps == 1 makes torch's first phase empty: 0 / 0 at step 0.

    lrkit treats an empty phase as already done, so step 0 is max_lr and the
    rest of the run is the ordinary second phase.
    """
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    with pytest.raises(ZeroDivisionError):
        tls.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=0.1)
    s = lrkit.one_cycle(1.0, steps=10, pct_start=0.1)
    assert s(0) == 1.0
    assert s(9) == s(BIG) == 1.0 / 25.0 / 1e4
    values = s.values(10)
    assert np.all(np.diff(values) < 0)
    assert np.all(np.isfinite(values))


def test_cyclic_ignores_the_optimizers_initial_lr_like_torch() -> None:
    """torch's CyclicLR writes base_lr into the group; the start lr plays no part."""
    for start in (1e-9, 0.5, 50.0):
        got = torch_lrs(
            lambda o: tls.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=5), start, 30
        )
        assert_close(lrkit.cyclic(0.01, 0.1, step_size_up=5).values(30), got, scale=0.1)


# ---------------------------------------------------------------------------
# 2. families torch lacks, against formulas written out here
# ---------------------------------------------------------------------------


def ref_inverse_sqrt(lr: float, w: int, t: int) -> float:
    return lr * t / w if t < w else lr / math.sqrt(t / w)


def ref_wsd(lr: float, steps: int, w: int, d: int, shape: str, min_lr: float, t: int) -> float:
    """SPEC §2's warmup-stable-decay: rise over w, hold, decay over the last d."""
    if t < w:
        return lr * t / w
    if d == 0 or t < steps - d:
        return lr
    x = min(1.0, (t - (steps - d)) / d)
    keep = {
        "linear": 1.0 - x,
        "1-sqrt": 1.0 - math.sqrt(x),
        "cosine": (1.0 + math.cos(math.pi * x)) / 2.0,
    }[shape]
    return min_lr + (lr - min_lr) * keep


def ref_warmup(inner: Callable[[int], float], w: int, start: float, shape: str, t: int) -> float:
    """SPEC §2: start + (inner(0) - start) * shape(t / w) for t < w, then inner(t - w)."""
    if t >= w:
        return inner(t - w)
    x = t / w
    top = inner(0)
    if shape == "exponential":
        return math.exp(math.log(start) + (math.log(top) - math.log(start)) * x)
    ramp = x if shape == "linear" else (1.0 - math.cos(math.pi * x)) / 2.0
    return start + (top - start) * ramp


def ref_cosine_restarts(
    lr: float, period: int, mult: int, min_lr: float, decay: float, t: int
) -> float:
    """Walk the cycles one by one (fixed-length cycles by division)."""
    cycle, begin, length = 0, 0, period
    if mult == 1:
        cycle = t // period
        begin = cycle * period
    while t >= begin + length:
        begin += length
        length *= mult
        cycle += 1
    peak = min_lr + (lr - min_lr) * decay**cycle
    return min_lr + (peak - min_lr) * (1.0 + math.cos(math.pi * (t - begin) / length)) / 2.0


def sample_steps(rng: np.random.Generator, end: int) -> np.ndarray:
    """Every step up to ``end`` + 50 plus some far ones."""
    far = rng.integers(0, 10 * end + 10, size=50)
    return np.unique(np.concatenate([np.arange(end + 50), far, [BIG]]))


def check_against(
    s: Schedule, ref: Callable[[int], float], steps: np.ndarray, scale: float
) -> None:
    expected = np.array([ref(int(t)) for t in steps])
    assert_close(s.values(steps), expected, scale=scale, context=str(s))
    assert_close([s(int(t)) for t in steps], expected, scale=scale, context=str(s))


def test_inverse_sqrt_formula() -> None:
    for index in range(80):
        rng = np.random.default_rng([1, index])
        lr = log_uniform(rng, 1e-6, 10.0)
        w = int(rng.integers(1, 300))
        s = lrkit.inverse_sqrt(lr, warmup_steps=w)
        check_against(s, partial(ref_inverse_sqrt, lr, w), sample_steps(rng, w), lr)


@pytest.mark.parametrize("shape", ["1-sqrt", "linear", "cosine"])
def test_wsd_formula(shape: str) -> None:
    for index in range(80):
        rng = np.random.default_rng([2, len(shape), index])
        lr = log_uniform(rng, 1e-6, 10.0)
        min_lr = lr_floor(rng, lr)
        steps = int(rng.integers(1, 400))
        w = int(rng.integers(0, steps + 1))
        if rng.random() < 0.5:
            d = int(rng.integers(0, steps - w + 1))
            decay_steps: int | float = d
        else:
            decay_steps = float(rng.uniform(0.01, 0.99))
            d = math.ceil(decay_steps * steps - 1e-9)
            if w + d > steps:
                w = steps - d
        s = lrkit.wsd(
            lr,
            steps=steps,
            warmup_steps=w,
            decay_steps=decay_steps,
            decay_shape=shape,
            min_lr=min_lr,
        )
        assert s.decay_count == d
        check_against(
            s, partial(ref_wsd, lr, steps, w, d, shape, min_lr), sample_steps(rng, steps), lr
        )


def test_wsd_decay_fraction_counts_like_sklearn_test_size() -> None:
    """A float below 1 is a fraction of ``steps`` (rounded up); 1.0 and up are counts."""
    assert lrkit.wsd(1.0, steps=1000, decay_steps=0.2).decay_count == 200
    assert lrkit.wsd(1.0, steps=10, decay_steps=0.25).decay_count == 3  # ceil(2.5)
    assert lrkit.wsd(1.0, steps=1000, decay_steps=0.1).decay_count == 100  # 0.1*1000 rounding
    assert lrkit.wsd(1.0, steps=1000, decay_steps=300).decay_count == 300
    assert lrkit.wsd(1.0, steps=1000, decay_steps=300.0).decay_count == 300


@pytest.mark.parametrize("shape", ["linear", "cosine", "exponential"])
def test_warmup_formula(shape: str) -> None:
    inner_makers: list[Callable[[np.random.Generator], Schedule]] = [
        lambda r: lrkit.cosine(log_uniform(r, 1e-5, 1.0), steps=int(r.integers(1, 300))),
        lambda r: lrkit.constant(log_uniform(r, 1e-5, 1.0)),
        lambda r: lrkit.exponential(log_uniform(r, 1e-5, 1.0), gamma=float(r.uniform(0.9, 1))),
        lambda r: lrkit.step_decay(log_uniform(r, 1e-5, 1.0), step_size=7),
    ]
    for index in range(80):
        rng = np.random.default_rng([3, len(shape), index])
        inner = inner_makers[index % len(inner_makers)](rng)
        w = int(rng.integers(1, 300))
        top = inner(0)
        start = (
            top * log_uniform(rng, 1e-4, 1.0)
            if shape == "exponential"
            else float(rng.choice([0.0, top * rng.uniform(0, 2)]))
        )
        s = lrkit.warmup(inner, steps=w, start_lr=start, shape=shape)
        check_against(
            s,
            partial(ref_warmup, inner, w, start, shape),
            sample_steps(rng, w + 300),
            max(top, start),
        )
        if inner.length is not None:
            assert s.length == w + inner.length


def test_cosine_restarts_with_decay_formula() -> None:
    for index in range(80):
        rng = np.random.default_rng([4, index])
        lr = log_uniform(rng, 1e-6, 10.0)
        min_lr = lr_floor(rng, lr)
        period = int(rng.integers(1, 60))
        mult = int(rng.integers(1, 4))
        decay = unit_gamma(rng, lo=0.1)
        s = lrkit.cosine_restarts(lr, period=period, period_mult=mult, min_lr=min_lr, decay=decay)
        check_against(
            s,
            partial(ref_cosine_restarts, lr, period, mult, min_lr, decay),
            sample_steps(rng, 400),
            lr,
        )


def test_constant_join_and_scaled_formulas() -> None:
    for index in range(50):
        rng = np.random.default_rng([5, index])
        a = lrkit.cosine(log_uniform(rng, 1e-4, 1.0), steps=int(rng.integers(1, 100)))
        b = lrkit.constant(log_uniform(rng, 1e-4, 1.0))
        c = lrkit.linear(0.0, log_uniform(rng, 1e-4, 1.0), steps=int(rng.integers(1, 100)))
        b1 = int(rng.integers(1, 150))
        b2 = b1 + int(rng.integers(1, 150))
        factor = float(rng.uniform(0, 3))
        joined = lrkit.join(a, b, c, boundaries=[b1, b2])

        def ref_join(
            t: int, a: Schedule = a, b: Schedule = b, c: Schedule = c, b1: int = b1, b2: int = b2
        ) -> float:
            if t < b1:
                return a(t)
            return b(t - b1) if t < b2 else c(t - b2)

        steps = sample_steps(rng, b2 + 100)
        check_against(joined, ref_join, steps, 1.0)
        check_against(factor * joined, lambda t, f=factor: f * ref_join(t), steps, 3.0)
        check_against(b, lambda t, b=b: b.lr, steps, 1.0)


# ---------------------------------------------------------------------------
# 3. pinned boundary steps
# ---------------------------------------------------------------------------


def test_pins_warmup() -> None:
    w, lr = 10, 0.5
    s = lrkit.warmup(lrkit.cosine(lr, steps=100, min_lr=0.05), steps=w)
    assert s(0) == 0.0
    assert s(w - 1) == pytest.approx(lr * (w - 1) / w, rel=1e-15)  # not yet at lr
    assert s(w) == lr  # the wrapped schedule's step 0, exactly
    assert s(w + 1) < lr
    total = w + 100
    assert s.length == total
    assert s(total - 1) > 0.05
    assert s(total) == 0.05
    assert s(total + 100) == 0.05
    assert s(BIG) == 0.05
    # a warmup that starts elsewhere, and the other shapes, also meet at step w
    for shape in ("linear", "cosine", "exponential"):
        s = lrkit.warmup(lrkit.constant(lr), steps=w, start_lr=0.01, shape=shape)
        assert s(0) == 0.01
        assert 0.01 < s(w - 1) < lr
        assert s(w) == lr
        assert s(BIG) == lr


def test_pins_wsd_phases() -> None:
    s = lrkit.wsd(1.0, steps=100, warmup_steps=10, decay_steps=20, decay_shape="linear", min_lr=0.1)
    assert s(0) == 0.0
    assert s(9) == pytest.approx(0.9, rel=1e-15)
    assert s(10) == 1.0  # warmup over
    assert s(79) == 1.0  # last stable step
    assert s(80) == 1.0  # the decay starts here, at x = 0
    assert s(81) == pytest.approx(1.0 - 0.9 * 1 / 20, rel=1e-15)
    assert s(99) == pytest.approx(0.1 + 0.9 * 1 / 20, rel=1e-12)
    assert s(100) == 0.1  # min_lr at step ``steps``
    assert s(200) == 0.1
    assert s(BIG) == 0.1
    one_minus_sqrt = lrkit.wsd(1.0, steps=100, decay_steps=0.2)  # the defaults
    assert one_minus_sqrt(0) == 1.0  # no warmup
    assert one_minus_sqrt(79) == 1.0
    assert one_minus_sqrt(85) == pytest.approx(1 - math.sqrt(0.25), rel=1e-15)
    assert one_minus_sqrt(100) == 0.0
    assert one_minus_sqrt(BIG) == 0.0


def test_pins_wsd_without_decay_holds_lr() -> None:
    """decay_steps=0: warmup then stable for ever (scalar and vector paths alike)."""
    s = lrkit.wsd(1.0, steps=50, warmup_steps=5, decay_steps=0, min_lr=0.5)
    for t in (5, 49, 50, 51, 150, BIG):
        assert s(t) == 1.0
    assert np.all(s.values([5, 49, 50, 51, 150, BIG]) == 1.0)


def test_pins_cosine() -> None:
    s = lrkit.cosine(1.0, steps=100, min_lr=0.1)
    assert s(0) == 1.0
    assert s(50) == pytest.approx(0.55, rel=1e-15)
    assert s(99) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * 0.99)) / 2, rel=1e-15)
    assert s(99) > 0.1
    assert s(100) == 0.1
    assert s(200) == 0.1
    assert s(BIG) == 0.1


def test_pins_linear_and_polynomial() -> None:
    lin = lrkit.linear(1.0, 0.2, steps=10)
    assert [lin(t) for t in (0, 9, 10, 110, BIG)] == pytest.approx([1.0, 0.28, 0.2, 0.2, 0.2])
    assert lin(10) == 0.2
    poly = lrkit.polynomial(1.0, steps=10, power=2.0, end_lr=0.1)
    assert poly(0) == 1.0
    assert poly(9) == pytest.approx(0.1 + 0.9 * 0.01, rel=1e-12)
    assert poly(10) == poly(110) == poly(BIG) == 0.1


@pytest.mark.parametrize("three_phase", [False, True])
def test_pins_one_cycle(three_phase: bool) -> None:
    steps, max_lr = 100, 1.0
    s = lrkit.one_cycle(max_lr, steps=steps, pct_start=0.3, three_phase=three_phase)
    start, end = max_lr / 25.0, max_lr / 25.0 / 1e4
    peak = 29  # pct_start * steps - 1
    assert s(0) == pytest.approx(start, rel=1e-14)
    assert s(peak - 1) < max_lr
    assert s(peak) == max_lr
    assert s(peak + 1) < max_lr
    if three_phase:
        assert s(2 * peak) == pytest.approx(start, rel=1e-12)  # back down to the start lr
    assert s(steps - 2) > end
    assert s(steps - 1) == pytest.approx(end, rel=1e-12)  # end value at steps - 1, as torch
    assert s(steps) == s(steps - 1)
    assert s(steps + 100) == s(steps - 1)
    assert s(BIG) == s(steps - 1)


def test_pins_join_boundaries() -> None:
    s = lrkit.join(
        lrkit.constant(1.0),
        lrkit.linear(0.5, 0.0, steps=10),
        lrkit.constant(3.0),
        boundaries=[5, 12],
    )
    assert s(0) == s(4) == 1.0
    assert s(5) == 0.5  # the second part's own step 0
    assert s(6) == pytest.approx(0.45)
    assert s(11) == pytest.approx(0.5 - 0.05 * 6)  # cut before the linear part ends
    assert s(12) == 3.0
    assert s(BIG) == 3.0
    pipe = lrkit.cosine(1.0, steps=10) | lrkit.constant(0.25)
    assert pipe.length is None
    assert pipe(9) > 0.0
    assert pipe(10) == 0.25  # the second part starts at the first one's length
    assert pipe(BIG) == 0.25


def test_pins_inverse_sqrt() -> None:
    s = lrkit.inverse_sqrt(2.0, warmup_steps=100)
    assert s(0) == 0.0
    assert s(99) == pytest.approx(1.98, rel=1e-15)
    assert s(100) == 2.0
    assert s(400) == 1.0
    assert s(BIG) == pytest.approx(2.0 * math.sqrt(100 / BIG), rel=1e-15)


# ---------------------------------------------------------------------------
# 4. laws, over random schedules
# ---------------------------------------------------------------------------

steps_anywhere = st.one_of(
    st.integers(min_value=0, max_value=1000),
    st.integers(min_value=0, max_value=BIG),
    st.sampled_from([0, 1, BIG - 1, BIG]),
)


@given(schedules(), st.lists(steps_anywhere, min_size=1, max_size=40))
def test_values_are_finite_non_negative_and_match_scalar_calls(
    s: Schedule, steps: list[int]
) -> None:
    vec = s.values(np.asarray(steps, dtype=np.int64))
    assert vec.dtype == np.float64
    assert vec.shape == (len(steps),)
    scalar = [s(t) for t in steps]
    assert all(isinstance(v, float) for v in scalar)
    assert all(math.isfinite(v) and v >= 0.0 for v in scalar), (s, steps, scalar)
    assert np.all(np.isfinite(vec)) and np.all(vec >= 0.0)
    assert_close(vec, scalar, scale=0.0, rtol=SELF_RTOL, context=str(s))
    # plain lists work too
    assert_close(s.values(steps), scalar, scale=0.0, rtol=SELF_RTOL, context=str(s))


@given(schedules(), st.integers(min_value=0, max_value=3000))
def test_values_n_is_values_of_arange(s: Schedule, n: int) -> None:
    first = s.values(n)
    assert first.shape == (n,)
    assert np.array_equal(first, s.values(np.arange(n)))


@pytest.mark.parametrize("family", list(LEAF_FAMILIES))
@given(data=st.data())
def test_every_family_is_finite_and_bounded_at_far_steps(family: str, data: st.DataObject) -> None:
    s = data.draw(LEAF_FAMILIES[family]())
    steps = data.draw(st.lists(steps_anywhere, min_size=1, max_size=20))
    vec = s.values(steps)
    assert np.all(np.isfinite(vec)) and np.all(vec >= 0.0)
    assert_close(vec, [s(t) for t in steps], scale=0.0, rtol=SELF_RTOL, context=str(s))


@pytest.mark.parametrize("family", list(ENDING_FAMILIES))
@given(data=st.data())
def test_ending_families_hold_their_end_value(family: str, data: st.DataObject) -> None:
    s = data.draw(ENDING_FAMILIES[family]())
    k = data.draw(st.integers(min_value=0, max_value=BIG))
    end = s.length
    assert end is not None
    if family == "one_cycle":
        assert s(end - 1 + k) == s(end - 1)  # one_cycle ends at steps - 1, as torch
    assert s(end + k) == s(end)
    assert s.values([end + k])[0] == s(end)


@given(schedules().filter(lambda s: s.length is not None), st.integers(0, BIG))
def test_any_schedule_with_a_length_holds_its_last_value(s: Schedule, k: int) -> None:
    end = s.length
    assert end is not None
    assert s(end + k) == s(end)


@given(cosines())
def test_cosine_end_values(s: Schedule) -> None:
    # the start can be an ulp off (min_lr + (lr - min_lr) * 1); the end is exact
    assert s(0) == pytest.approx(s.lr, rel=1e-15)
    assert s(s.steps) == s.min_lr


@given(wsds())
def test_wsd_end_value(s: Schedule) -> None:
    if s.decay_count:
        assert s(s.steps) == pytest.approx(s.min_lr, rel=1e-12, abs=1e-300)
    else:
        assert s(s.steps) == s.lr


@given(one_cycles())
def test_one_cycle_end_value(s: Schedule) -> None:
    end = s.max_lr / s.div_factor / s.final_div_factor
    assert s(s.steps - 1) == pytest.approx(end, rel=1e-12, abs=1e-300)


@given(schedules())
def test_rebuilt_schedules_are_equal_and_hash_equal(s: Schedule) -> None:
    twin = dataclasses.replace(s)  # runs the checks and normalization again
    assert twin == s
    assert hash(twin) == hash(s)
    assert twin is not s
    assert twin.values(50).tolist() == s.values(50).tolist()


@given(schedules())
def test_schedules_are_immutable(s: Schedule) -> None:
    for f in dataclasses.fields(s):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(s, f.name, getattr(s, f.name))


@given(schedules())
def test_pickle_round_trip(s: Schedule) -> None:
    back = pickle.loads(pickle.dumps(s))
    assert back == s
    assert hash(back) == hash(s)
    assert str(back) == str(s)
    assert back.values(20).tolist() == s.values(20).tolist()


@given(cosine_restarts(), st.integers(min_value=0, max_value=BIG))
def test_cosine_restarts_never_exceed_lr(s: Schedule, t: int) -> None:
    # cycle starts are min_lr + (lr - min_lr) * 1, which can overshoot lr by an ulp
    assert s.min_lr <= s(t) <= s.lr * (1 + 1e-15)


def test_unequal_schedules() -> None:
    assert lrkit.cosine(0.1, steps=10) != lrkit.cosine(0.1, steps=11)
    assert lrkit.cosine(0.1, steps=10) != lrkit.linear(0.1, 0.0, steps=10)
    assert lrkit.constant(1) == lrkit.constant(1.0)  # ints become floats
    assert hash(lrkit.constant(1)) == hash(lrkit.constant(1.0))
    assert lrkit.cosine(1.0, steps=1e4) == lrkit.cosine(1.0, steps=10_000)
    assert len({lrkit.constant(0.1), lrkit.constant(0.1), lrkit.constant(0.2)}) == 2


# ---------------------------------------------------------------------------
# 5. bad input: ValueError naming the argument, the value and what is allowed
# ---------------------------------------------------------------------------

BAD_ARGUMENTS: list[tuple[Callable[[], object], str]] = [
    (lambda: lrkit.constant(-0.1), r"constant: lr must be a finite number >= 0, got -0\.1"),
    (lambda: lrkit.constant(math.nan), r"lr must be a finite number >= 0, got nan"),
    (lambda: lrkit.constant(math.inf), r"lr must be a finite number >= 0, got inf"),
    (lambda: lrkit.constant("0.1"), r"lr must be a finite number >= 0, got '0\.1'"),
    (lambda: lrkit.cosine(-1.0, steps=10), r"cosine: lr must be .*>= 0, got -1\.0"),
    (lambda: lrkit.cosine(0.1, steps=0), r"cosine: steps must be an integer >= 1, got 0"),
    (lambda: lrkit.cosine(0.1, steps=-5), r"steps must be an integer >= 1, got -5"),
    (lambda: lrkit.cosine(0.1, steps=2.5), r"steps must be an integer >= 1, got 2\.5"),
    (lambda: lrkit.linear(0.1, 0.0, steps=0), r"linear: steps must be an integer >= 1, got 0"),
    (lambda: lrkit.polynomial(0.1, steps=0), r"polynomial: steps must be .*>= 1, got 0"),
    (lambda: lrkit.polynomial(0.1, steps=5, power=0), r"power must be a number in \(0, inf\)"),
    (lambda: lrkit.wsd(0.1, steps=0), r"wsd: steps must be an integer >= 1, got 0"),
    (lambda: lrkit.one_cycle(0.1, steps=0), r"one_cycle: steps must be .*>= 1, got 0"),
    (lambda: lrkit.cosine(0.1, steps=10, min_lr=0.2), r"min_lr must be <= lr \(0\.1\), got 0\.2"),
    (
        lambda: lrkit.cosine_restarts(0.1, period=10, min_lr=0.5),
        r"cosine_restarts: min_lr must be <= lr \(0\.1\), got 0\.5",
    ),
    (lambda: lrkit.wsd(0.1, steps=10, min_lr=1.0), r"wsd: min_lr must be <= lr \(0\.1\), got 1\.0"),
    (
        lambda: lrkit.cyclic(0.5, 0.1, step_size_up=5),
        r"cyclic: max_lr must be >= min_lr \(0\.5\), got 0\.1",
    ),
    (
        lambda: lrkit.step_decay(0.1, step_size=5, gamma=0),
        r"gamma must be a number in \(0, 1\], got 0\.0",
    ),
    (lambda: lrkit.step_decay(0.1, step_size=5, gamma=-0.5), r"gamma must be .*got -0\.5"),
    (
        lambda: lrkit.step_decay(0.1, step_size=5, gamma=1.5),
        r"gamma must be a number in \(0, 1\], got 1\.5",
    ),
    (lambda: lrkit.step_decay(0.1, step_size=0), r"step_decay: step_size must be .*>= 1, got 0"),
    (lambda: lrkit.exponential(0.1, gamma=0.0), r"exponential: gamma must be a number in \(0, 1\]"),
    (lambda: lrkit.exponential(0.1, gamma=1.01), r"gamma must be a number in \(0, 1\], got 1\.01"),
    (lambda: lrkit.exponential(0.1, gamma=math.nan), r"gamma must be .*got nan"),
    (
        lambda: lrkit.multistep(0.1, milestones=[5], gamma=0.0),
        r"multistep: gamma must be .*got 0\.0",
    ),
    (lambda: lrkit.multistep(0.1, milestones=[5, 5]), r"milestones must be strictly increasing"),
    (lambda: lrkit.multistep(0.1, milestones=[0]), r"milestones must be an integer >= 1, got 0"),
    (lambda: lrkit.cosine_restarts(0.1, period=10, decay=0), r"decay must be a number in \(0, 1\]"),
    (lambda: lrkit.cosine_restarts(0.1, period=0), r"period must be an integer >= 1, got 0"),
    (
        lambda: lrkit.cyclic(0.1, 1.0, step_size_up=5, mode="triangle"),
        r"cyclic: mode must be one of 'triangular', 'triangular2', 'exp_range', got 'triangle'",
    ),
    (lambda: lrkit.cyclic(0.1, 1.0, step_size_up=5, gamma=2.0), r"gamma must be .*got 2\.0"),
    (
        lambda: lrkit.one_cycle(0.1, steps=10, anneal="cosine"),
        r"one_cycle: anneal must be one of 'cos', 'linear', got 'cosine'",
    ),
    (
        lambda: lrkit.one_cycle(0.1, steps=10, pct_start=1.0),
        r"pct_start must be a number in \(0, 1\)",
    ),
    (
        lambda: lrkit.one_cycle(0.1, steps=10, pct_start=0.6, three_phase=True),
        r"pct_start must be a number in \(0, 0\.5\), got 0\.6",
    ),
    (lambda: lrkit.one_cycle(0.1, steps=10, div_factor=0), r"div_factor must be .*got 0\.0"),
    (
        lambda: lrkit.wsd(0.1, steps=10, decay_shape="sqrt"),
        r"wsd: decay_shape must be one of '1-sqrt', 'linear', 'cosine', got 'sqrt'",
    ),
    (
        lambda: lrkit.wsd(0.1, steps=100, warmup_steps=50, decay_steps=60),
        r"wsd: warmup_steps \+ decay steps must be <= steps \(100\), got 50 \+ 60 = 110",
    ),
    (
        lambda: lrkit.wsd(0.1, steps=100, warmup_steps=90, decay_steps=0.2),
        r"warmup_steps \+ decay steps must be <= steps \(100\), got 90 \+ 20 = 110",
    ),
    (lambda: lrkit.wsd(0.1, steps=100, decay_steps=-1), r"decay_steps must be .*got -1"),
    (lambda: lrkit.wsd(0.1, steps=100, decay_steps=2.5), r"decay_steps must be .*got 2\.5"),
    (lambda: lrkit.inverse_sqrt(0.1, warmup_steps=0), r"warmup_steps must be .*>= 1, got 0"),
    (
        lambda: lrkit.warmup(lrkit.constant(0.1), steps=10, shape="exponential"),
        r"warmup: start_lr must be > 0 with shape='exponential', got 0\.0",
    ),
    (
        lambda: lrkit.warmup(lrkit.constant(0.1), steps=10, shape="quadratic"),
        r"warmup: shape must be one of 'linear', 'cosine', 'exponential', got 'quadratic'",
    ),
    (lambda: lrkit.warmup(lrkit.constant(0.1), steps=0), r"warmup: steps must be .*>= 1, got 0"),
    (lambda: lrkit.warmup(0.1, steps=10), r"warmup: schedule must be an lrkit schedule, got 0\.1"),
    (
        lambda: lrkit.constant(0.1) | lrkit.cosine(0.1, steps=10),
        r"'a \| b' needs 'a' to have a length, but constant\(lr=0\.1\) never ends",
    ),
    (
        lambda: lrkit.join(lrkit.constant(0.1), lrkit.constant(0.2), boundaries=[5, 10]),
        r"join: boundaries must have one entry fewer than schedules \(1\), got 2: \[5, 10\]",
    ),
    (
        lambda: lrkit.join(lrkit.constant(0.1), lrkit.constant(0.2), boundaries=[]),
        r"boundaries must have one entry fewer than schedules \(1\), got 0",
    ),
    (
        lambda: lrkit.join(
            lrkit.constant(0.1), lrkit.constant(0.2), lrkit.constant(0.3), boundaries=[10, 5]
        ),
        r"join: boundaries must be strictly increasing, got \[10, 5\]",
    ),
    (
        lambda: lrkit.join(
            lrkit.constant(0.1), lrkit.constant(0.2), lrkit.constant(0.3), boundaries=[5, 5]
        ),
        r"boundaries must be strictly increasing, got \[5, 5\]",
    ),
    (
        lambda: lrkit.join(lrkit.constant(0.1), lrkit.constant(0.2), boundaries=[0]),
        r"join: boundaries must be an integer >= 1, got 0",
    ),
    (lambda: lrkit.join(lrkit.constant(0.1), boundaries=[]), r"schedules must be two or more"),
    (lambda: -1.0 * lrkit.constant(0.1), r"scale: factor must be a finite number >= 0, got -1\.0"),
    (lambda: math.nan * lrkit.constant(0.1), r"factor must be a finite number >= 0, got nan"),
]


@pytest.mark.parametrize(
    ("build", "message"), BAD_ARGUMENTS, ids=[m[:40] for _, m in BAD_ARGUMENTS]
)
def test_bad_arguments_raise_value_error(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


BAD_STEPS: list[tuple[Callable[[Schedule], object], str]] = [
    (lambda s: s(-1), r"step must be >= 0, got -1"),
    (lambda s: s(np.int64(-3)), r"step must be >= 0, got -3"),
    (lambda s: s(1.5), r"step must be an integer >= 0, got 1\.5"),
    (lambda s: s(math.nan), r"step must be an integer >= 0, got nan"),
    (lambda s: s(math.inf), r"step must be an integer >= 0, got inf"),
    (lambda s: s("3"), r"step must be an integer >= 0, got '3'"),
    (lambda s: s.values([-1]), r"values: steps must be >= 0, got -1"),
    (lambda s: s.values(np.array([3, -7, 2])), r"steps must be >= 0, got -7"),
    (lambda s: s.values(-2), r"values: n must be an integer >= 0, got -2"),
    (lambda s: s.values([1.0, 0.5]), r"values: steps must be whole numbers >= 0, got 0\.5"),
    (lambda s: s.values([1.0, math.nan]), r"values: steps must be whole numbers >= 0, got nan"),
    (lambda s: s.values([math.inf]), r"values: steps must be whole numbers >= 0, got inf"),
    (lambda s: s.values(["a"]), r"values: expected an int n or an array of integer steps"),
]


@pytest.mark.parametrize(("call", "message"), BAD_STEPS, ids=[m[:40] for _, m in BAD_STEPS])
def test_bad_steps_raise_value_error(call: Callable[[Schedule], object], message: str) -> None:
    for s in (lrkit.constant(0.1), lrkit.warmup(lrkit.cosine(0.1, steps=10), steps=3)):
        with pytest.raises(ValueError, match=message):
            call(s)


def test_integral_floats_are_accepted_as_steps() -> None:
    s = lrkit.cosine(1.0, steps=100)
    assert s(50.0) == s(50)
    assert s(np.int32(50)) == s(50)
    assert s.values(np.array([0.0, 50.0])).tolist() == [s(0), s(50)]
    assert s.values(np.array([0, 50], dtype=np.uint8)).tolist() == [s(0), s(50)]


# ---------------------------------------------------------------------------
# 6. join and scale algebra
# ---------------------------------------------------------------------------


@given(
    st.lists(st.one_of(*(make() for make in ENDING_FAMILIES.values())), min_size=3, max_size=3),
    st.lists(steps_anywhere, min_size=1, max_size=20),
)
def test_pipe_is_associative_and_lengths_add(parts: list[Schedule], steps: list[int]) -> None:
    a, b, c = parts
    left, right = (a | b) | c, a | (b | c)
    assert left == right
    assert hash(left) == hash(right)
    assert str(left) == str(right)
    assert left.length == a.length + b.length + c.length
    assert left.boundaries == (a.length, a.length + b.length)
    assert left.values(steps).tolist() == right.values(steps).tolist()

    def piecewise(t: int) -> float:
        if t < a.length:
            return a(t)
        if t < a.length + b.length:
            return b(t - a.length)
        return c(t - a.length - b.length)

    assert [left(t) for t in steps] == [piecewise(t) for t in steps]


@given(joins(), st.lists(steps_anywhere, min_size=1, max_size=30))
def test_join_matches_piecewise_evaluation(s: Schedule, steps: list[int]) -> None:
    bounds = (0, *s.boundaries)

    def piecewise(t: int) -> float:
        k = max(i for i, b in enumerate(bounds) if b <= t)
        return s.schedules[k](t - bounds[k])

    assert [s(t) for t in steps] == [piecewise(t) for t in steps]
    assert_close(s.values(steps), [piecewise(t) for t in steps], scale=0.0, rtol=SELF_RTOL)


@given(joins(), joins(), st.integers(1, 50_000), st.lists(steps_anywhere, max_size=30))
def test_nested_joins_flatten_without_changing_values(
    inner: Schedule, other: Schedule, at: int, steps: list[int]
) -> None:
    """A join inside a join gives the same values as evaluating it nested."""
    outer = lrkit.join(inner, other, boundaries=[at])
    for t in steps:
        expected = inner(t) if t < at else other(t - at)
        assert outer(t) == expected
    assert all(not isinstance(p, lrkit.schedules.Join) for p in outer.schedules)


@given(schedules(), st.floats(0, 10), st.floats(0, 10), st.lists(steps_anywhere, max_size=20))
def test_scaling_composes(s: Schedule, f: float, g: float, steps: list[int]) -> None:
    nested = f * (g * s)
    assert isinstance(nested, lrkit.schedules.Scaled)
    assert not isinstance(nested.schedule, lrkit.schedules.Scaled)  # flattened
    inner_factor = s.factor if isinstance(s, lrkit.schedules.Scaled) else 1.0
    assert nested.factor == pytest.approx(f * g * inner_factor, rel=1e-15)
    assert nested.length == s.length
    assert_close(nested.values(steps), [f * g * s(t) for t in steps], scale=0.0, rtol=SELF_RTOL)


def test_scaling_examples() -> None:
    s = lrkit.cosine(0.1, steps=100)
    assert 0.5 * (0.5 * s) == 0.25 * s
    assert hash(0.5 * (0.5 * s)) == hash(0.25 * s)
    assert s * 0.5 == 0.5 * s
    assert (0.5 * s)(0) == 0.05
    assert 0.5 * s != 0.25 * s
    with pytest.raises(TypeError):
        s * s
    with pytest.raises(TypeError):
        s | 0.5


def test_pipe_examples() -> None:
    a, b = lrkit.linear(0.0, 1.0, steps=10), lrkit.cosine(1.0, steps=90)
    c = lrkit.constant(0.01)
    s = a | b | c
    assert isinstance(s, lrkit.schedules.Join)
    assert s.boundaries == (10, 100)
    assert s.length is None
    assert (a | b).length == 100
    assert (a | b) | c == a | (b | c)
    assert lrkit.join(a, b, c, boundaries=[10, 100]) == s
    assert (0.5 * (a | b)).length == 100


@given(st.lists(st.integers(1, 100), min_size=2, max_size=5), st.integers(0, 1000))
def test_warmup_lengths_add(lengths: list[int], t: int) -> None:
    inner = lrkit.cosine(1.0, steps=lengths[0])
    s = inner
    for w in lengths[1:]:
        s = lrkit.warmup(s, steps=w)
    assert s.length == sum(lengths)
    assume(t >= sum(lengths[1:]))
    assert s(t) == inner(t - sum(lengths[1:]))


# ---------------------------------------------------------------------------
# phases: where each begins, from the family's class
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "phases"),
    [
        (lrkit.constant(0.1), [(0, "constant")]),
        (lrkit.cosine(lr=0.1, steps=100), [(0, "cosine"), (100, "hold")]),
        (
            lrkit.wsd(0.1, steps=1000, warmup_steps=50),
            [(0, "warmup"), (50, "stable"), (800, "decay"), (1000, "hold")],
        ),
        (lrkit.wsd(0.1, steps=100, decay_steps=100), [(0, "decay"), (100, "hold")]),
        (lrkit.one_cycle(max_lr=0.1, steps=1000), [(0, "rise"), (299, "fall"), (999, "hold")]),
        (lrkit.inverse_sqrt(0.1, warmup_steps=400), [(0, "warmup"), (400, "decay")]),
        (
            lrkit.multistep(0.1, milestones=[30, 80]),
            [(0, "multistep"), (30, "drop"), (80, "drop")],
        ),
        (
            lrkit.warmup(lrkit.cosine(lr=0.1, steps=90), steps=10),
            [(0, "warmup"), (10, "cosine"), (100, "hold")],
        ),
        (  # each part's phases end at the boundary where the next part starts
            lrkit.join(
                lrkit.wsd(0.1, steps=100, warmup_steps=10), lrkit.constant(0.01), boundaries=[50]
            ),
            [(0, "warmup"), (10, "stable"), (50, "constant")],
        ),
        (0.5 * lrkit.linear(0.0, 1.0, steps=10), [(0, "linear"), (10, "hold")]),
        (  # the plan's phases before at, the phase it was in at at, the rest remapped
            lrkit.cosine(lr=0.1, steps=100).replan(200, at=50),
            [(0, "cosine"), (50, "cosine"), (200, "hold")],
        ),
        (
            lrkit.wsd(0.1, steps=100, warmup_steps=10, decay_steps=40).replan(200, at=70),
            [(0, "warmup"), (10, "stable"), (60, "decay"), (70, "decay"), (200, "hold")],
        ),
    ],
)
def test_phase_starts_pin_where_each_phase_begins(
    schedule: Schedule, phases: list[tuple[int, str]]
) -> None:
    assert schedule._phase_starts() == phases


@given(st.one_of(schedules(), replanned_schedules()))
def test_phase_starts_are_increasing_from_zero(s: Schedule) -> None:
    steps = [step for step, _ in s._phase_starts()]
    assert steps[0] == 0
    assert steps == sorted(set(steps))
    if s.length is not None:  # past its length a schedule only holds its end value
        assert all(step <= s.length for step in steps)


# ---------------------------------------------------------------------------
# import hygiene
# ---------------------------------------------------------------------------


def test_import_lrkit_pulls_in_no_heavy_modules() -> None:
    code = (
        "import sys, lrkit\n"
        "s = lrkit.warmup(lrkit.cosine(lr=0.1, steps=10), steps=2)\n"
        "s(5); s.values(20)\n"
        "heavy = ['torch', 'typer', 'rich', 'matplotlib', 'jax', 'keras', 'tensorflow']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
