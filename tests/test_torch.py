"""lrkit.torch against torch itself: values, momentum, resume in both orders, state, warnings.

Every drop-in is run next to torch's class of the same name, with the same
arguments (drawn at random from a seeded generator), on two identical
optimizers (SGD with momentum, Adam; several param groups), and compared at
every step: lr, momentum / beta1, ``get_last_lr()``.
"""

from __future__ import annotations

import copy
import io
import math
import pickle
import subprocess
import sys
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as T

import lrkit
import lrkit.torch as L

REL = 1e-9
ABS = 1e-15
NAMES = [
    "LambdaLR",
    "MultiplicativeLR",
    "StepLR",
    "MultiStepLR",
    "ConstantLR",
    "LinearLR",
    "ExponentialLR",
    "SequentialLR",
    "PolynomialLR",
    "CosineAnnealingLR",
    "ChainedScheduler",
    "ReduceLROnPlateau",
    "CyclicLR",
    "OneCycleLR",
    "CosineAnnealingWarmRestarts",
]


# ---------------------------------------------------------------------------
# User functions (module level, so that they pickle)
# ---------------------------------------------------------------------------


def lam_exp(t: int) -> float:
    return 0.93**t


def lam_warm(t: int) -> float:
    return min(1.0, (t + 1) / 6)


def mul_wobble(t: int) -> float:
    return 0.9 if t % 3 else 1.05


class HalfEvery:
    """A callable object as CyclicLR scale_fn (its __dict__ is saved, as in torch)."""

    def __init__(self, period: float) -> None:
        self.period = period

    def __call__(self, x: float) -> float:
        return 0.5 ** (x // self.period)


LAMBDAS = [lam_exp, lam_warm]


# ---------------------------------------------------------------------------
# Optimizers and comparison
# ---------------------------------------------------------------------------


def make_opt(kind: str, lrs: list[float]) -> torch.optim.Optimizer:
    torch.manual_seed(0)
    groups = [
        {"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr, "name": f"g{i}"}
        for i, lr in enumerate(lrs)
    ]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=1e-4)
    return torch.optim.Adam(groups, lr=0.1, betas=(0.9, 0.999))


def snapshot(opt: torch.optim.Optimizer) -> list[tuple[float, float | None]]:
    out = []
    for g in opt.param_groups:
        m = g["betas"][0] if "betas" in g else g.get("momentum")
        out.append((float(g["lr"]), None if m is None else float(m)))
    return out


def close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= REL * max(abs(a), abs(b)) + ABS


def assert_same(a: list, b: list, where: str) -> None:
    assert len(a) == len(b), f"{where}: {a} vs {b}"
    for x, y in zip(a, b, strict=True):
        if isinstance(x, tuple):
            assert close(x[0], y[0]), f"{where}: lr {x[0]!r} != {y[0]!r} ({a} vs {b})"
            if x[1] is None or y[1] is None:
                assert x[1] is None and y[1] is None, f"{where}: momentum {a} vs {b}"
            else:
                assert close(x[1], y[1]), f"{where}: momentum {x[1]!r} != {y[1]!r}"
        else:
            assert close(float(x), float(y)), f"{where}: {x!r} != {y!r} ({a} vs {b})"


@dataclass
class Case:
    """One scheduler configuration, built the same way from torch's module or lrkit's."""

    name: str
    build: Callable[[Any, torch.optim.Optimizer], Any]
    steps: int
    metrics: list[float] | None = None  # ReduceLROnPlateau
    epochs: list[float] | None = None  # step(epoch) calls (CosineAnnealingWarmRestarts)

    def advance(self, sched: Any, opt: torch.optim.Optimizer, t: int) -> None:
        opt.step()
        if self.metrics is not None:
            sched.step(self.metrics[t])
        elif self.epochs is not None:
            sched.step(self.epochs[t])
        else:
            sched.step()


def run(case: Case, module: Any, kind: str, lrs: list[float], steps: int | None = None):
    """The sequence [(snapshot, get_last_lr)] from construction through ``steps`` steps."""
    opt = make_opt(kind, lrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's step(epoch) deprecation
        sched = case.build(module, opt)
        out = [(snapshot(opt), list(sched.get_last_lr()))]
        for t in range(case.steps if steps is None else steps):
            case.advance(sched, opt, t)
            out.append((snapshot(opt), list(sched.get_last_lr())))
    return out


# ---------------------------------------------------------------------------
# Random argument sets, one generator per class
# ---------------------------------------------------------------------------


def pick(rng: np.random.Generator, options: list) -> Any:
    return options[int(rng.integers(len(options)))]


def per_group(rng: np.random.Generator, n: int, low: float, high: float) -> float | list[float]:
    if rng.random() < 0.5:
        return float(rng.uniform(low, high))
    return [float(v) for v in rng.uniform(low, high, n)]


def simple_child(rng: np.random.Generator, allow_absolute: bool = True) -> Callable:
    """A random child scheduler for SequentialLR / ChainedScheduler: (module, opt) -> sched."""
    kinds = ["Constant", "Linear", "Exponential", "Step", "MultiStep", "Cosine", "Poly", "Mul"]
    if allow_absolute:
        kinds += ["Lambda", "Cyclic", "CAWR"]
    k = pick(rng, kinds)
    f = float(rng.uniform(0.1, 1.0))
    n = int(rng.integers(1, 8))
    g = float(rng.uniform(0.5, 0.99))
    ms = sorted(int(m) for m in rng.integers(1, 12, 2))
    if k == "Constant":
        return lambda M, o: M.ConstantLR(o, factor=f, total_iters=n)
    if k == "Linear":
        return lambda M, o: M.LinearLR(o, start_factor=f, end_factor=g, total_iters=n)
    if k == "Exponential":
        return lambda M, o: M.ExponentialLR(o, gamma=g)
    if k == "Step":
        return lambda M, o: M.StepLR(o, step_size=n, gamma=g)
    if k == "MultiStep":
        return lambda M, o: M.MultiStepLR(o, milestones=ms, gamma=g)
    if k == "Cosine":
        return lambda M, o: M.CosineAnnealingLR(o, T_max=n, eta_min=1e-4 * f)
    if k == "Poly":
        return lambda M, o: M.PolynomialLR(o, total_iters=n + 3, power=1 + f)
    if k == "Mul":
        return lambda M, o: M.MultiplicativeLR(o, mul_wobble)
    if k == "Lambda":
        return lambda M, o: M.LambdaLR(o, lam_exp)
    if k == "Cyclic":
        cycle_m = bool(rng.random() < 0.5)
        return lambda M, o: M.CyclicLR(
            o, base_lr=1e-3, max_lr=0.05 + f, step_size_up=n, cycle_momentum=cycle_m
        )
    return lambda M, o: M.CosineAnnealingWarmRestarts(o, T_0=n, T_mult=1 + n % 2)


def random_case(name: str, rng: np.random.Generator, n_groups: int) -> Case:
    steps = int(rng.integers(15, 45))
    if name == "LambdaLR":
        lam = pick(rng, LAMBDAS) if rng.random() < 0.5 else [pick(rng, LAMBDAS)] * n_groups
        return Case(name, lambda M, o: M.LambdaLR(o, lam), steps)
    if name == "MultiplicativeLR":
        return Case(name, lambda M, o: M.MultiplicativeLR(o, mul_wobble), steps)
    if name == "StepLR":
        step_size = int(rng.integers(1, 8))
        gamma = float(rng.uniform(0.1, 1.0)) if rng.random() < 0.8 else 1.25
        return Case(name, lambda M, o: M.StepLR(o, step_size=step_size, gamma=gamma), steps)
    if name == "MultiStepLR":
        ms = [int(m) for m in rng.integers(0, 30, int(rng.integers(0, 5)))]
        gamma = float(rng.uniform(0.1, 1.0)) if rng.random() < 0.8 else 1.3
        return Case(name, lambda M, o: M.MultiStepLR(o, milestones=ms, gamma=gamma), steps)
    if name == "ConstantLR":
        factor = float(rng.uniform(0.05, 1.0))
        total = int(rng.integers(0, 12))
        return Case(name, lambda M, o: M.ConstantLR(o, factor=factor, total_iters=total), steps)
    if name == "LinearLR":
        s, e = float(rng.uniform(0.05, 1.0)), float(rng.uniform(0.0, 1.0))
        total = int(rng.integers(0, 14))
        return Case(
            name,
            lambda M, o: M.LinearLR(o, start_factor=s, end_factor=e, total_iters=total),
            steps,
        )
    if name == "ExponentialLR":
        gamma = float(rng.uniform(0.8, 1.0)) if rng.random() < 0.8 else 1.05
        return Case(name, lambda M, o: M.ExponentialLR(o, gamma=gamma), steps)
    if name == "PolynomialLR":
        total = int(rng.integers(0, 14))
        power = float(rng.uniform(0.3, 3.0))
        return Case(name, lambda M, o: M.PolynomialLR(o, total_iters=total, power=power), steps)
    if name == "CosineAnnealingLR":
        t_max = int(rng.integers(1, 12))
        eta = float(rng.uniform(0.0, 0.005)) if rng.random() < 0.7 else 0.0
        return Case(
            name,
            lambda M, o: M.CosineAnnealingLR(o, T_max=t_max, eta_min=eta),
            int(rng.integers(3, 6)) * t_max,  # well past T_max: torch's rise included
        )
    if name == "CyclicLR":
        base = per_group(rng, n_groups, 1e-4, 0.01)
        top = per_group(rng, n_groups, 0.02, 1.0)
        up = int(rng.integers(1, 7))
        down = None if rng.random() < 0.4 else int(rng.integers(1, 7))
        mode = pick(rng, ["triangular", "triangular2", "exp_range"])
        gamma = float(rng.uniform(0.9, 1.0))
        custom = rng.random() < 0.25
        scale_mode = pick(rng, ["cycle", "iterations"])
        cycle_m = bool(rng.random() < 0.7)
        bm, mm = per_group(rng, n_groups, 0.7, 0.85), per_group(rng, n_groups, 0.86, 0.99)

        def build(M: Any, o: torch.optim.Optimizer) -> Any:
            extra: dict[str, Any] = {}
            if custom:
                extra = {"scale_fn": HalfEvery(2.0), "scale_mode": scale_mode}
            return M.CyclicLR(
                o,
                base_lr=base,
                max_lr=top,
                step_size_up=up,
                step_size_down=down,
                mode=mode,
                gamma=gamma,
                cycle_momentum=cycle_m,
                base_momentum=bm,
                max_momentum=mm,
                **extra,
            )

        return Case(name, build, steps)
    if name == "OneCycleLR":
        total = int(rng.integers(8, 40))
        three = bool(rng.random() < 0.4)
        pct = float(rng.uniform(0.15, 0.45 if three else 0.8))
        anneal = pick(rng, ["cos", "linear"])
        cycle_m = bool(rng.random() < 0.8)
        top = per_group(rng, n_groups, 0.05, 1.0)
        div, final = float(rng.uniform(5, 30)), float(rng.uniform(1e2, 1e4))
        bm, mm = per_group(rng, n_groups, 0.7, 0.85), per_group(rng, n_groups, 0.86, 0.99)
        by_epochs = rng.random() < 0.3

        def build(M: Any, o: torch.optim.Optimizer) -> Any:
            length = {"epochs": total, "steps_per_epoch": 1} if by_epochs else {}
            return M.OneCycleLR(
                o,
                max_lr=top,
                total_steps=None if by_epochs else total,
                pct_start=pct,
                anneal_strategy=anneal,
                cycle_momentum=cycle_m,
                base_momentum=bm,
                max_momentum=mm,
                div_factor=div,
                final_div_factor=final,
                three_phase=three,
                **length,
            )

        return Case(name, build, total)  # torch allows stepping up to total_steps itself
    if name == "CosineAnnealingWarmRestarts":
        t0, tm = int(rng.integers(1, 8)), int(rng.integers(1, 4))
        eta = float(rng.uniform(0.0, 0.005))
        build = lambda M, o: M.CosineAnnealingWarmRestarts(o, T_0=t0, T_mult=tm, eta_min=eta)  # noqa: E731
        if rng.random() < 0.4:  # fractional step(epoch), as in the torch docs
            per_epoch = int(rng.integers(2, 6))
            epochs = [e + i / per_epoch for e in range(8) for i in range(per_epoch)]
            return Case(name, build, len(epochs), epochs=epochs)
        return Case(name, build, steps)
    if name == "ReduceLROnPlateau":
        mode = pick(rng, ["min", "max"])
        factor = float(rng.uniform(0.1, 0.9))
        patience = int(rng.integers(0, 4))
        threshold = pick(rng, [0.0, 1e-4, 0.05])
        tmode = pick(rng, ["rel", "abs"])
        cooldown = int(rng.integers(0, 3))
        min_lr = per_group(rng, n_groups, 0.0, 0.01)
        eps = pick(rng, [1e-8, 1e-3])
        values = np.round(np.cumsum(rng.choice([-0.1, 0.0, 0.0, 0.02], steps)), 3) + 5.0
        metrics = [float(v) for v in values]
        if rng.random() < 0.2:
            metrics[int(rng.integers(steps))] = float("nan")

        def build(M: Any, o: torch.optim.Optimizer) -> Any:
            return M.ReduceLROnPlateau(
                o,
                mode=mode,
                factor=factor,
                patience=patience,
                threshold=threshold,
                threshold_mode=tmode,
                cooldown=cooldown,
                min_lr=min_lr,
                eps=eps,
            )

        return Case(name, build, steps, metrics=metrics)
    if name == "SequentialLR":
        k = int(rng.integers(2, 4))
        children = [simple_child(rng) for _ in range(k)]
        ms = sorted(int(m) for m in rng.choice(np.arange(1, 25), k - 1, replace=False))

        def build(M: Any, o: torch.optim.Optimizer) -> Any:
            return M.SequentialLR(o, [c(M, o) for c in children], milestones=ms)

        return Case(name, build, steps)
    if name == "ChainedScheduler":
        k = int(rng.integers(2, 4))
        children = [simple_child(rng, allow_absolute=rng.random() < 0.3) for _ in range(k)]
        pass_opt = rng.random() < 0.5

        def build(M: Any, o: torch.optim.Optimizer) -> Any:
            scheds = [c(M, o) for c in children]
            return (
                M.ChainedScheduler(scheds, optimizer=o) if pass_opt else M.ChainedScheduler(scheds)
            )

        return Case(name, build, steps)
    raise AssertionError(name)


def cases(name: str, count: int, seed: int) -> list[tuple[Case, str, list[float]]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        n_groups = int(rng.integers(1, 4))
        lrs = [float(v) for v in rng.uniform(0.01, 1.0, n_groups)]
        out.append((random_case(name, rng, n_groups), ("sgd", "adam")[i % 2], lrs))
    return out


# ---------------------------------------------------------------------------
# 1. Values against torch
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_drop_in_matches_torch_step_for_step(name: str) -> None:
    for i, (case, kind, lrs) in enumerate(cases(name, 40, seed=NAMES.index(name))):
        ours = run(case, L, kind, lrs)
        theirs = run(case, T, kind, lrs)
        for t, ((snap_a, last_a), (snap_b, last_b)) in enumerate(zip(ours, theirs, strict=True)):
            where = f"{name} case {i} ({kind}, {len(lrs)} groups) step {t}"
            assert_same(snap_a, snap_b, where)
            assert_same(last_a, last_b, where + " get_last_lr")


@pytest.mark.parametrize("name", NAMES)
def test_every_drop_in_is_an_lr_scheduler_with_torchs_name(name: str) -> None:
    case, kind, lrs = cases(name, 1, seed=99)[0]
    sched = case.build(L, make_opt(kind, lrs))
    assert isinstance(sched, T.LRScheduler)
    assert type(sched).__name__ == name
    assert len(sched.get_last_lr()) == len(lrs)


def test_reduce_lr_on_plateau_is_torchs_type_too() -> None:
    sched = L.ReduceLROnPlateau(make_opt("sgd", [0.1]))
    assert isinstance(sched, T.ReduceLROnPlateau)


def test_long_runs_stay_within_tolerance() -> None:
    """Closed forms against torch's chained products over many steps."""
    builds = [
        lambda M, o: M.ExponentialLR(o, gamma=0.9995),
        lambda M, o: M.CosineAnnealingLR(o, T_max=800, eta_min=1e-4),
        lambda M, o: M.LinearLR(o, start_factor=0.01, end_factor=0.5, total_iters=1500),
        lambda M, o: M.PolynomialLR(o, total_iters=1500, power=2.0),
    ]
    for build in builds:
        case = Case("long", build, 2000)
        ours, theirs = run(case, L, "sgd", [0.3, 0.05]), run(case, T, "sgd", [0.3, 0.05])
        for t, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a[0], b[0], f"long run step {t}")


def test_last_epoch_resumes_like_torch() -> None:
    """Built with last_epoch=N on an optimizer holding a run's state, as torch documents."""
    rng = np.random.default_rng(7)
    for name in NAMES:
        if name in ("SequentialLR", "ChainedScheduler", "ReduceLROnPlateau"):
            continue  # no last_epoch argument (or none that resumes)
        for case, kind, lrs in cases(name, 6, seed=100 + NAMES.index(name)):
            if case.epochs is not None:
                continue
            n = int(rng.integers(1, max(2, case.steps // 2)))
            results = []
            for module in (L, T):
                opt = make_opt(kind, lrs)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    first = case.build(module, opt)
                    for t in range(n):
                        case.advance(first, opt, t)
                    state = copy.deepcopy(opt.state_dict())
                    opt2 = make_opt(kind, lrs)
                    opt2.load_state_dict(state)
                    sched = case.build(_with_last_epoch(module, n), opt2)
                    seq = [snapshot(opt2)]
                    for t in range(n + 1, case.steps):
                        case.advance(sched, opt2, t)
                        seq.append(snapshot(opt2))
                results.append(seq)
            for t, (a, b) in enumerate(zip(*results, strict=True)):
                assert_same(a, b, f"{name} last_epoch={n} step {n + t}")


def _with_last_epoch(module: Any, last_epoch: int) -> Any:
    """A stand-in for ``module`` whose classes get ``last_epoch=...``."""

    class Proxy:
        def __getattr__(self, attr: str) -> Any:
            cls = getattr(module, attr)
            return lambda *a, **k: cls(*a, **k, last_epoch=last_epoch)

    return Proxy()


def test_cosine_annealing_rises_past_t_max_like_torch() -> None:
    opt = make_opt("sgd", [1.0])
    sched = L.CosineAnnealingLR(opt, T_max=4)
    lrs = []
    for _ in range(8):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs[3] < 1e-15  # step 4 = T_max: the bottom
    assert lrs[7] == pytest.approx(1.0)  # step 8 = 2 * T_max: back at the top
    assert lrs == sorted(lrs[:4], reverse=True) + sorted(lrs[4:])


def test_chained_scheduler_multiplies() -> None:
    opt = make_opt("sgd", [1.0])
    a = L.ConstantLR(opt, factor=0.5, total_iters=3)
    b = L.ExponentialLR(opt, gamma=0.9)
    chain = L.ChainedScheduler([a, b])
    for t in range(1, 6):
        opt.step()
        chain.step()
        expected = (0.5 if t < 3 else 1.0) * 0.9**t
        assert chain.get_last_lr()[0] == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------
# 2. Resume: exact in both orders, whatever the optimizer holds
# ---------------------------------------------------------------------------


def roundtrip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def resumed(
    case: Case,
    module: Any,
    kind: str,
    lrs: list[float],
    at: int,
    order: str,
    corrupt: float | None = None,
) -> tuple[list, list]:
    """(uninterrupted snapshots from ``at`` on, resumed snapshots from ``at`` on)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        opt = make_opt(kind, lrs)
        sched = case.build(module, opt)
        for t in range(at):
            case.advance(sched, opt, t)
        opt_state = roundtrip(opt.state_dict())
        sched_state = roundtrip(sched.state_dict())
        straight = [snapshot(opt)]
        for t in range(at, case.steps):
            case.advance(sched, opt, t)
            straight.append(snapshot(opt))
        if corrupt is not None:
            for g in opt_state["param_groups"]:
                g["lr"] = corrupt
        opt2 = make_opt(kind, lrs)
        if order == "a":
            sched2 = case.build(module, opt2)
            opt2.load_state_dict(opt_state)
            sched2.load_state_dict(sched_state)
        else:
            opt2.load_state_dict(opt_state)
            sched2 = case.build(module, opt2)
            sched2.load_state_dict(sched_state)
        again = [snapshot(opt2)]
        for t in range(at, case.steps):
            case.advance(sched2, opt2, t)
            again.append(snapshot(opt2))
    return straight, again


@pytest.mark.parametrize("order", ["a", "b"])
@pytest.mark.parametrize("name", NAMES)
def test_resume_is_exact_in_both_orders(name: str, order: str) -> None:
    rng = np.random.default_rng(1000 + NAMES.index(name))
    for i, (case, kind, lrs) in enumerate(cases(name, 12, seed=200 + NAMES.index(name))):
        at = int(rng.integers(0, case.steps))
        corrupt = 1.0 if i % 3 == 2 else None  # the optimizer's lrs are never the truth
        straight, again = resumed(case, L, kind, lrs, at, order, corrupt)
        for t, (a, b) in enumerate(zip(straight, again, strict=True)):
            assert_same(b, a, f"{name} case {i} order ({order}) saved at {at}, step {at + t}")


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda M, o: M.ConstantLR(o, factor=0.5, total_iters=10), id="ConstantLR"),
        pytest.param(lambda M, o: M.LinearLR(o, start_factor=0.25, total_iters=10), id="LinearLR"),
        pytest.param(
            lambda M, o: M.SequentialLR(
                o, [M.ExponentialLR(o, gamma=0.5), M.StepLR(o, 3)], milestones=[10]
            ),
            id="SequentialLR",
        ),
        pytest.param(
            lambda M, o: M.ChainedScheduler(
                [M.ConstantLR(o, factor=0.5, total_iters=10), M.ExponentialLR(o, gamma=0.9)]
            ),
            id="ChainedScheduler",
        ),
    ],
)
def test_torch_jumps_when_the_optimizer_is_loaded_first_and_lrkit_does_not(build) -> None:
    case = Case("jump", build, 15)
    straight, again = resumed(case, T, "sgd", [0.1, 0.02], at=3, order="b")
    worst = max(abs(a[0][0] - b[0][0]) / a[0][0] for a, b in zip(straight, again, strict=True))
    assert worst > 0.1, "torch's order-(b) resume was expected to jump"
    straight, again = resumed(case, L, "sgd", [0.1, 0.02], at=3, order="b")
    for t, (a, b) in enumerate(zip(straight, again, strict=True)):
        assert_same(b, a, f"lrkit order (b) step {3 + t}")


@pytest.mark.parametrize("order", ["a", "b"])
def test_corrupted_optimizer_lrs_are_ignored(order: str) -> None:
    """MultiStepLR(milestones=[5], gamma=0.1) from base 0.1, optimizer lrs overwritten by 1.0."""
    case = Case("multistep", lambda M, o: M.MultiStepLR(o, milestones=[5], gamma=0.1), 10)
    truth = lrkit.multistep(0.1, milestones=[5], gamma=0.1)
    straight, again = resumed(case, L, "sgd", [0.1], at=3, order=order, corrupt=1.0)
    assert again == straight
    assert again[0][0][0] == pytest.approx(truth(3), rel=1e-12)  # restored at once, not 1.0
    assert again[-1][0][0] == pytest.approx(truth(10), rel=1e-12)  # 0.01 at step 10
    assert [s[0][0] for s in again] == pytest.approx([truth(t) for t in range(3, 11)], rel=1e-12)


def test_torch_state_dicts_load_into_drop_ins() -> None:
    """A checkpoint written by torch's scheduler continues exactly under lrkit's."""
    builds = {
        "StepLR": lambda M, o: M.StepLR(o, step_size=3, gamma=0.5),
        "MultiStepLR": lambda M, o: M.MultiStepLR(o, milestones=[2, 4, 4, 9], gamma=0.5),
        "CosineAnnealingLR": lambda M, o: M.CosineAnnealingLR(o, T_max=5, eta_min=0.001),
        "ExponentialLR": lambda M, o: M.ExponentialLR(o, gamma=0.8),
        "ReduceLROnPlateau": lambda M, o: M.ReduceLROnPlateau(o, patience=1, cooldown=1),
    }
    metrics = [5.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    for name, build in builds.items():
        case = Case(name, build, 15, metrics=metrics if name == "ReduceLROnPlateau" else None)
        opt = make_opt("sgd", [0.1, 0.3])
        sched = build(T, opt)
        for t in range(6):
            case.advance(sched, opt, t)
        opt_state, sched_state = copy.deepcopy(opt.state_dict()), sched.state_dict()
        opt2 = make_opt("sgd", [0.1, 0.3])
        ours = build(L, opt2)
        opt2.load_state_dict(opt_state)
        ours.load_state_dict(copy.deepcopy(sched_state))
        for t in range(6, 15):
            case.advance(sched, opt, t)
            case.advance(ours, opt2, t)
            assert_same(snapshot(opt2), snapshot(opt), f"{name} from torch's state, step {t}")


# ---------------------------------------------------------------------------
# 3. State, copies, pickling
# ---------------------------------------------------------------------------

PLAIN = (dict, list, tuple, str, int, float, bool, type(None))


def is_plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    return type(value) in PLAIN


@pytest.mark.parametrize("name", NAMES)
def test_state_dicts_are_plain_and_survive_weights_only_load(name: str) -> None:
    for case, kind, lrs in cases(name, 5, seed=300 + NAMES.index(name)):
        opt = make_opt(kind, lrs)
        sched = case.build(L, opt)
        for t in range(min(4, case.steps)):
            case.advance(sched, opt, t)
        state = sched.state_dict()
        assert is_plain(state), state
        loaded = roundtrip(state)
        assert loaded == state or math.isnan(state.get("best", 0.0))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_deepcopy_and_pickle_continue_the_same_sequence(name: str, how: str) -> None:
    for case, kind, lrs in cases(name, 4, seed=400 + NAMES.index(name)):
        opt = make_opt(kind, lrs)
        sched = case.build(L, opt)
        for t in range(case.steps // 2):
            case.advance(sched, opt, t)
        twin = copy.deepcopy(sched) if how == "deepcopy" else pickle.loads(pickle.dumps(sched))
        assert twin.optimizer is not opt
        for t in range(case.steps // 2, case.steps):
            case.advance(sched, opt, t)
            case.advance(twin, twin.optimizer, t)
            assert_same(snapshot(twin.optimizer), snapshot(opt), f"{name} {how} step {t}")


def test_user_lambdas_do_not_pickle_but_named_functions_do() -> None:
    opt = make_opt("sgd", [0.1])
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(L.LambdaLR(opt, lambda t: 0.5))
    sched = L.LambdaLR(make_opt("sgd", [0.1]), lam_exp)
    assert pickle.loads(pickle.dumps(sched)).lr_lambdas == [lam_exp]
    assert sched.state_dict()["lr_lambdas"] == [None]  # functions are not state, as in torch


def test_callable_objects_keep_their_state_as_in_torch() -> None:
    opt = make_opt("sgd", [0.1])
    sched = L.CyclicLR(opt, 0.01, 0.1, step_size_up=2, scale_fn=HalfEvery(3.0))
    state = sched.state_dict()
    assert state["_scale_fn_custom"] == {"period": 3.0}
    other = L.CyclicLR(make_opt("sgd", [0.1]), 0.01, 0.1, step_size_up=2, scale_fn=HalfEvery(1.0))
    other.load_state_dict(state)
    assert other._scale_fn_custom.period == 3.0


# ---------------------------------------------------------------------------
# 4. Errors and warnings
# ---------------------------------------------------------------------------


def test_one_cycle_past_total_steps_raises_value_error_like_torch() -> None:
    for module in (T, L):
        opt = make_opt("sgd", [0.1])
        sched = module.OneCycleLR(opt, max_lr=1.0, total_steps=5)
        for _ in range(5):
            opt.step()
            sched.step()
        with pytest.raises(ValueError) as info:
            opt.step()
            sched.step()
    assert "total_steps=5" in str(info.value)
    assert sched.last_epoch == 5  # lrkit checks before changing anything


def test_step_before_optimizer_step_warns_once_and_clearly() -> None:
    opt = make_opt("sgd", [0.1])
    sched = L.StepLR(opt, step_size=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sched.step()
        sched.step()
        opt.step()
        sched.step()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "StepLR.step() was called before optimizer.step()" in messages[0]


@pytest.mark.parametrize("name", NAMES)
def test_no_warning_in_the_right_order(name: str) -> None:
    case, kind, lrs = cases(name, 1, seed=500 + NAMES.index(name))[0]
    if case.epochs is not None:
        case.epochs = None
    opt = make_opt(kind, lrs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched = case.build(L, opt)
        for t in range(min(5, case.steps)):
            case.advance(sched, opt, t)


def test_step_before_optimizer_step_warns_for_composites_and_plateau() -> None:
    for build in (
        lambda o: L.SequentialLR(o, [L.ConstantLR(o), L.StepLR(o, 2)], milestones=[3]),
        lambda o: L.ChainedScheduler([L.ConstantLR(o), L.StepLR(o, 2)]),
    ):
        with pytest.warns(UserWarning, match="before optimizer.step"):
            build(make_opt("sgd", [0.1])).step()
    with pytest.warns(UserWarning, match="before optimizer.step"):
        L.ReduceLROnPlateau(make_opt("sgd", [0.1])).step(1.0)


def test_clear_errors() -> None:
    opt = make_opt("sgd", [0.1, 0.2])
    with pytest.raises(ValueError, match=r"one entry per param group \(2\), got 3"):
        L.CyclicLR(opt, base_lr=[0.1] * 3, max_lr=1.0)
    with pytest.raises(ValueError, match="cycle_momentum=False"):
        L.OneCycleLR(torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(1))]), 1.0, 10)
    with pytest.raises(TypeError, match=r"import it from lrkit\.torch"):
        L.SequentialLR(opt, [T.StepLR(opt, 2), L.StepLR(opt, 2)], milestones=[2])
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        L.ChainedScheduler([L.StepLR(opt, 2), L.ReduceLROnPlateau(opt)])
    with pytest.raises(KeyError, match="initial_lr"):
        L.StepLR(make_opt("sgd", [0.1]), 2, last_epoch=3)
    with pytest.raises(ValueError, match=r"factor must be < 1\.0, got 1\.5"):
        L.ReduceLROnPlateau(opt, factor=1.5)
    with pytest.raises(ValueError, match="pct_start must be a float in"):
        L.OneCycleLR(opt, 1.0, 10, pct_start=1.5)
    with pytest.raises(ValueError, match="T_0 must be an integer >= 1, got 0"):
        L.CosineAnnealingWarmRestarts(opt, T_0=0)


def test_import_lrkit_does_not_import_torch() -> None:
    code = "import sys, lrkit; raise SystemExit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ---------------------------------------------------------------------------
# 5. The driver: lrkit.torch.Scheduler
# ---------------------------------------------------------------------------

SPECS = [
    "warmup(cosine(lr=0.3, steps=40, min_lr=0.01), steps=5)",
    "multistep(lr=0.2, milestones=[5, 12], gamma=0.1)",
    "one_cycle(max_lr=0.5, steps=30)",
    "linear(0.0, 0.1, steps=10) | 0.5 * cosine(lr=0.2, steps=20)",
    "wsd(lr=0.1, steps=30, warmup_steps=3, decay_steps=0.3)",
]


def drive(opt: torch.optim.Optimizer, sched: Any, steps: int) -> list:
    out = [snapshot(opt)]
    for _ in range(steps):
        opt.step()
        sched.step()
        out.append(snapshot(opt))
    return out


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("spec", SPECS)
def test_driver_follows_the_schedule_with_group_ratios(spec: str, kind: str) -> None:
    schedule = lrkit.parse(spec)
    lrs = [0.1, 0.05, 0.3]
    opt = make_opt(kind, lrs)
    sched = L.Scheduler(opt, spec)
    assert isinstance(sched, T.LRScheduler)
    seen = drive(opt, sched, 45)
    for t, snap in enumerate(seen):
        for g, (lr, _) in enumerate(snap):
            expected = schedule(t) * lrs[g] / lrs[0]
            assert close(lr, expected), (spec, t, g, lr, expected)
    assert sched.get_last_lr() == [lr for lr, _ in seen[-1]]


def test_driver_takes_one_schedule_per_group_as_list_or_dict() -> None:
    a, b = lrkit.cosine(lr=0.1, steps=10), lrkit.constant(0.02)
    for spec in ([a, b], {"g0": a, "g1": str(b)}):
        opt = make_opt("sgd", [0.5, 0.5])
        seen = drive(opt, L.Scheduler(opt, spec), 12)
        assert [s[0][0] for s in seen] == pytest.approx([a(t) for t in range(13)], rel=1e-12)
        assert [s[1][0] for s in seen] == pytest.approx([0.02] * 13, rel=1e-12)


def test_driver_errors_say_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"param_groups\[0\] has lr 0"):
        L.Scheduler(make_opt("sgd", [0.0, 0.1]), lrkit.constant(0.1))
    L.Scheduler(make_opt("sgd", [0.0]), lrkit.constant(0.1))  # one group needs no ratio
    L.Scheduler(make_opt("sgd", [0.0, 0.1]), [lrkit.constant(0.1)] * 2)  # no ratio either
    with pytest.raises(ValueError, match="one schedule per param group \\(2\\), got 3"):
        L.Scheduler(make_opt("sgd", [0.1, 0.1]), [lrkit.constant(0.1)] * 3)
    with pytest.raises(ValueError, match=r"unknown: \['nope'\], missing: \['g1'\]"):
        L.Scheduler(make_opt("sgd", [0.1, 0.1]), {"g0": "constant(0.1)", "nope": "constant(1)"})
    adagrad = torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=r"Adagrad has no 'momentum' or 'betas'.*momentum=None"):
        L.Scheduler(adagrad, "constant(0.1)", momentum="constant(0.9)")
    with pytest.raises(TypeError, match="must be an lrkit schedule, a spec string"):
        L.Scheduler(make_opt("sgd", [0.1]), 0.1)
    with pytest.raises(ValueError, match="spec"):
        L.Scheduler(make_opt("sgd", [0.1]), "cosine(lr=0.1, steps=0)")


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_driver_schedules_momentum_or_beta1_only(kind: str) -> None:
    m = lrkit.linear(0.95, 0.85, steps=10)
    opt = make_opt(kind, [0.1, 0.2])
    sched = L.Scheduler(opt, "constant(0.1)", momentum=m)
    for t in range(12):
        for g in opt.param_groups:
            if kind == "adam":
                assert g["betas"] == (pytest.approx(m(t), rel=1e-12), 0.999)
            else:
                assert g["momentum"] == pytest.approx(m(t), rel=1e-12)
        opt.step()
        sched.step()


def test_driver_weight_decay_leaves_zero_groups_alone() -> None:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    opt = torch.optim.AdamW(
        [
            {"params": [params[0]], "weight_decay": 0.1},
            {"params": [params[1]], "weight_decay": 0.0},
            {"params": [params[2]], "weight_decay": 0.05},
        ],
        lr=0.1,
    )
    wd = lrkit.cosine(lr=0.1, steps=5)
    sched = L.Scheduler(opt, "constant(0.1)", weight_decay=wd)
    for t in range(7):
        got = [g["weight_decay"] for g in opt.param_groups]
        assert got == pytest.approx([wd(t), 0.0, wd(t) / 2], rel=1e-12, abs=1e-15)
        opt.step()
        sched.step()


def driver_case(spec: str, momentum: str | None) -> Case:
    def build(M: Any, o: torch.optim.Optimizer) -> Any:
        return L.Scheduler(o, spec, momentum=momentum)

    return Case("Scheduler", build, 40)


@pytest.mark.parametrize("order", ["a", "b"])
@pytest.mark.parametrize("spec", SPECS)
def test_driver_resume_is_exact_in_both_orders(spec: str, order: str) -> None:
    rng = np.random.default_rng(SPECS.index(spec))
    for i in range(6):
        kind = ("sgd", "adam")[i % 2]
        momentum = "linear(0.95, 0.85, steps=20)" if i % 3 else None
        case = driver_case(spec, momentum)
        at = int(rng.integers(0, 40))
        corrupt = 3.0 if i % 2 else None
        straight, again = resumed(case, L, kind, [0.1, 0.02, 0.4], at, order, corrupt)
        for t, (a, b) in enumerate(zip(straight, again, strict=True)):
            assert_same(b, a, f"{spec} order ({order}) saved at {at}, step {at + t}")


def test_driver_state_is_plain_and_copies_continue() -> None:
    opt = make_opt("adam", [0.1, 0.3])
    sched = L.Scheduler(opt, SPECS[0], momentum="constant(0.9)")
    drive(opt, sched, 5)
    state = sched.state_dict()
    assert is_plain(state) and roundtrip(state) == state
    assert state["ratios"] == pytest.approx([1.0, 3.0])
    reference = copy.deepcopy(sched)
    expected = drive(reference.optimizer, reference, 6)
    for twin in (copy.deepcopy(sched), pickle.loads(pickle.dumps(sched))):
        assert twin.optimizer is not opt
        assert drive(twin.optimizer, twin, 6) == expected


class CountingController:
    """A minimal controller (``lr`` + ``observe`` + state): halves the lr per bad metric."""

    def __init__(self) -> None:
        self.cuts = 0
        self.seen: list[tuple[float, int]] = []

    def observe(self, metric: float, step: int) -> None:
        self.seen.append((metric, step))
        self.cuts += metric > 1.0

    def lr(self, step: int) -> float:
        return 0.1 * 0.5**self.cuts

    def state_dict(self) -> dict:
        return {"cuts": self.cuts}

    def load_state_dict(self, state: dict) -> None:
        self.cuts = state["cuts"]


def test_driver_passes_metrics_to_controllers_positionally_or_by_name() -> None:
    ctrl = CountingController()
    opt = make_opt("sgd", [0.1])
    sched = L.Scheduler(opt, ctrl)
    opt.step()
    sched.step(2.0)
    sched.step(metric=0.5)
    sched.step()
    assert ctrl.seen == [(2.0, 0), (0.5, 1)]
    assert sched.get_last_lr() == [0.05]
    other = L.Scheduler(make_opt("sgd", [0.1]), CountingController())
    other.load_state_dict(sched.state_dict())
    assert other.get_last_lr() == [0.05] and other.last_epoch == 3


def test_driver_warns_once_when_stepped_before_the_optimizer() -> None:
    opt = make_opt("sgd", [0.1])
    sched = L.Scheduler(opt, "constant(0.1)")
    with pytest.warns(UserWarning, match="Scheduler.step\\(\\) was called before") as caught:
        sched.step()
        sched.step()
    assert len(caught) == 1


# ---------------------------------------------------------------------------
# 6. PyTorch Lightning, for real
# ---------------------------------------------------------------------------


def _lightning_fit(make_scheduler: Callable, config: dict, steps: int) -> list[float]:
    import lightning.pytorch as pl

    seen: list[float] = []

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            seen.append(self.optimizers().param_groups[0]["lr"])
            loss = self.layer(batch[0]).pow(2).mean()
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> dict:
            opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": make_scheduler(opt), **config}}

    data = torch.utils.data.TensorDataset(torch.randn(8, 2))
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Module(), loader)
    return seen


def test_lightning_accepts_the_driver_and_drop_ins() -> None:
    schedule = lrkit.warmup(lrkit.cosine(lr=0.1, steps=6), steps=4)
    seen = _lightning_fit(lambda o: L.Scheduler(o, schedule), {"interval": "step"}, 10)
    assert seen == pytest.approx([schedule(t) for t in range(10)], rel=1e-12)
    seen = _lightning_fit(lambda o: L.StepLR(o, step_size=3), {"interval": "step"}, 7)
    assert seen == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001], rel=1e-12)
    # ReduceLROnPlateau is recognised as one, so Lightning hands it the monitored metric.
    seen = _lightning_fit(
        lambda o: L.ReduceLROnPlateau(o, mode="max", patience=0),
        {"interval": "step", "monitor": "train_loss"},
        6,
    )
    assert seen[0] == 0.1 and seen[-1] < 0.1


# ---------------------------------------------------------------------------
# 7. Mixed precision: a step skipped by GradScaler is not a step-order mistake
# ---------------------------------------------------------------------------


def test_grad_scaler_skip_gives_no_false_warning_and_the_counter_advances() -> None:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    sched = L.Scheduler(opt, "step_decay(lr=0.1, step_size=1, gamma=0.5)")
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.full((1, 2), float("inf"))).sum()  # overflows: GradScaler skips
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()  # no "step() before optimizer.step()" warning
    # the scheduler counts its own steps: skipped or not, it moved on (as torch's do)
    assert sched.last_epoch == 1 and sched.get_last_lr() == [0.05]


def test_a_real_order_mistake_still_warns_with_gradients_present() -> None:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = L.StepLR(opt, step_size=1)
    model(torch.ones(1, 2)).sum().backward()
    with pytest.warns(UserWarning, match="before optimizer.step"):
        sched.step()


# ---------------------------------------------------------------------------
# 8. The examples in docs/torch.md run, and print what the page says
# ---------------------------------------------------------------------------


def test_docs_examples_run_and_print_what_the_page_shows(capsys) -> None:
    import pathlib
    import re

    page = pathlib.Path(__file__).resolve().parents[1] / "docs" / "torch.md"
    text = page.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    for code in blocks:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(code, str(page), "exec"), {"__name__": "docs_example"})
    printed = capsys.readouterr().out.strip()
    shown = re.search(r"Output:\n\n```text\n(.*?)```", text, flags=re.S)
    assert shown is not None
    assert printed == shown.group(1).strip()


def test_driver_with_plateau_over_a_constant_is_torchs_reduce_lr_on_plateau() -> None:
    from lrkit.controllers import Plateau

    rng = np.random.default_rng(11)
    for i in range(40):
        kw = {
            "mode": pick(rng, ["min", "max"]),
            "factor": float(rng.uniform(0.1, 0.9)),
            "patience": int(rng.integers(0, 4)),
            "threshold": pick(rng, [0.0, 1e-4, 0.05]),
            "threshold_mode": pick(rng, ["rel", "abs"]),
            "cooldown": int(rng.integers(0, 3)),
            "min_lr": float(rng.uniform(0, 0.05)) if i % 2 else 0.0,
            "eps": pick(rng, [1e-8, 1e-3]),
        }
        lrs = [0.2]
        if i % 4 == 0:  # several groups: torch's min_lr and eps act per group, so leave them out
            kw["min_lr"], kw["eps"], lrs = 0.0, 0.0, [0.2, 0.05, 0.7]
        metrics = [float(v) for v in np.cumsum(rng.choice([-0.1, 0.0, 0.0, 0.02], 40)) + 5]
        opt_t, opt_l = make_opt("sgd", lrs), make_opt("sgd", lrs)
        theirs = T.ReduceLROnPlateau(opt_t, **kw)
        ours = L.Scheduler(opt_l, Plateau(lrkit.constant(lrs[0]), **kw))
        for t, m in enumerate(metrics):
            opt_t.step()
            opt_l.step()
            theirs.step(m)
            ours.step(m)
            assert_same(snapshot(opt_l), snapshot(opt_t), f"plateau case {i} step {t}")


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda M, o: M.SequentialLR(
                o,
                [
                    M.ChainedScheduler([M.ConstantLR(o, 0.5, 4), M.ExponentialLR(o, 0.9)]),
                    M.StepLR(o, 3, 0.5),
                ],
                milestones=[6],
            ),
            id="sequential-of-chained",
        ),
        pytest.param(
            lambda M, o: M.ChainedScheduler(
                [
                    M.SequentialLR(
                        o,
                        [M.LinearLR(o, 0.2, total_iters=4), M.CosineAnnealingLR(o, 10)],
                        milestones=[4],
                    ),
                    M.ExponentialLR(o, 0.95),
                ]
            ),
            id="chained-of-sequential",
        ),
    ],
)
def test_nested_composites_match_torch(build) -> None:
    case = Case("nested", build, 20)
    for kind in ("sgd", "adam"):
        ours, theirs = run(case, L, kind, [0.1, 0.4]), run(case, T, kind, [0.1, 0.4])
        for t, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a[0], b[0], f"nested {kind} step {t}")
        for order in ("a", "b"):
            straight, again = resumed(case, L, kind, [0.1, 0.4], at=7, order=order)
            assert again == straight


# --------------------------------------------------------------------------
# The driver in a real training loop: total_steps, fractions, warnings, repr
# --------------------------------------------------------------------------


def test_total_steps_fills_a_spec_from_the_run_and_the_optimizer() -> None:
    import warnings as _warnings

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    with _warnings.catch_warnings():
        _warnings.simplefilter("error")  # nothing to say: the spec takes the optimizer's lr
        sched = L.Scheduler(opt, "warmup(cosine(), steps=0.05)", total_steps=1000)
    expected = lrkit.warmup(lrkit.cosine(lr=0.1, steps=950), steps=50)
    assert sched._schedules[0] == expected
    lrs = []
    for _ in range(1000):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(lrs, expected.values(1000), rtol=1e-12)
    assert "warmup(cosine(lr=0.1, steps=950), steps=50)" in repr(sched)


def test_a_missing_steps_error_points_at_total_steps() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=r"total_steps=N"):
        L.Scheduler(opt, "warmup(cosine(), steps=16)")
    with pytest.raises(ValueError, match="is a fraction of the total"):
        lrkit.parse("warmup(cosine(lr=0.1, steps=90), steps=0.1)")
    with pytest.raises(ValueError, match="total_steps must be an integer >= 1"):
        L.Scheduler(opt, "cosine()", total_steps=0)


def test_stepping_past_the_end_warns_once() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = L.Scheduler(opt, "cosine(lr=0.1, steps=10)")
    with pytest.warns(UserWarning, match=r"step 11 is past the end of cosine") as caught:
        for _ in range(320):  # the classic per-epoch plan stepped per batch
            opt.step()
            sched.step()
    assert len([w for w in caught if "past the end" in str(w.message)]) == 1
    assert opt.param_groups[0]["lr"] == 0.0


def test_a_spec_lr_unlike_the_optimizers_warns_once() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.warns(UserWarning, match=r"schedule's lr is 0.001 .* built with lr 0.1"):
        L.Scheduler(opt, "cosine(lr=1e-3, steps=100)")


def _sgd(lr: float = 0.1, **kw: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, **kw)


@pytest.mark.parametrize(
    "spec",
    [
        "warmup(cosine(steps=1000000), steps=200000)",  # peaks after 100,000 steps
        "cyclic(0.001, step_size_up=20000)",
        "inverse_sqrt(warmup_steps=20000)",
        "warmup(cosine(lr=0.1, steps=1000000), steps=200000)",  # the lr given, the same
    ],
)
def test_a_late_peak_at_the_optimizers_lr_is_not_called_different(spec: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.Scheduler(_sgd(), spec)


def test_a_warmup_as_long_as_the_run_warns_that_the_plan_outlasts_it() -> None:
    with pytest.warns(UserWarning, match=r"ends at step 200, after the run's total_steps=100 "
                      r"\(its warmup takes the whole run\)"):  # fmt: skip
        L.Scheduler(_sgd(), "warmup(cosine(), steps=100)", total_steps=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.Scheduler(_sgd(), "warmup(cosine(), steps=10)", total_steps=np.int64(100))


def test_a_group_added_after_the_scheduler_is_a_clear_error_that_changes_nothing() -> None:
    opt = _sgd()
    sched = L.Scheduler(opt, "cosine(steps=10)")
    opt.step()
    sched.step()
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.01})
    before = (sched.last_epoch, [g["lr"] for g in opt.param_groups])
    opt.step()
    with pytest.raises(ValueError, match=r"has 2 param groups, 1 when this Scheduler was built"):
        sched.step()
    assert (sched.last_epoch, [g["lr"] for g in opt.param_groups]) == before


def test_momentum_and_weight_decay_specs_take_the_runs_length() -> None:
    opt = _sgd(momentum=0.9, weight_decay=1e-4)
    sched = L.Scheduler(
        opt, "cosine()", momentum="cosine(lr=0.9)", weight_decay="linear(1.0, 0.0)",
        total_steps=10,
    )  # fmt: skip
    assert sched._momentum_schedules == [lrkit.cosine(lr=0.9, steps=10)]
    assert sched._wd_schedule == lrkit.linear(1.0, 0.0, steps=10)
    with pytest.raises(ValueError, match="missing required argument 'lr'") as caught:
        L.Scheduler(_sgd(momentum=0.9), "cosine(steps=10)", momentum="cosine(steps=10)")
    assert "total_steps" not in str(caught.value)  # the hint is for a missing steps only


def test_a_torch_schedulers_state_is_refused_by_the_driver_with_where_it_goes() -> None:
    opt = _sgd()
    torch_state = T.CosineAnnealingLR(opt, T_max=10).state_dict()
    with pytest.raises(ValueError, match=r"not saved by lrkit.torch.Scheduler .* drop-in"):
        L.Scheduler(_sgd(), "cosine(steps=10)").load_state_dict(torch_state)


def test_step_counts_past_int64_are_refused_and_a_tensor_loss_is_detached() -> None:
    with pytest.raises(ValueError, match=r"steps must be a step count <= 2\*\*62"):
        lrkit.parse("cosine(lr=0.1, steps=1e30)")
    w = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([w], lr=0.1)
    sched = L.Scheduler(opt, "guard(cosine(steps=10))", model=torch.nn.Linear(1, 1))
    loss = (w**2).sum()
    loss.backward()
    opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Converting a tensor with requires_grad=True"
        sched.step(loss=loss)


def test_finder_result_prints_its_suggestion_not_arrays() -> None:
    from lrkit.finder import FinderResult

    lrs = np.logspace(-5, 0, 60)
    losses = 1.0 / (1.0 + 100 * lrs) + np.where(lrs > 0.3, 50 * (lrs - 0.3), 0.0)
    text = repr(
        FinderResult.from_runs(lrs, [losses], method="default", beta=0.9, diverge=5.0, updates=60)
    )
    assert text.startswith("FinderResult(suggestion=") and "array" not in text and len(text) < 200


# --------------------------------------------------------------------------
# Warnings and errors in torch's words (torch's own scheduler tests match them)
# --------------------------------------------------------------------------


def _two_group_sgd() -> torch.optim.SGD:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    return torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.05)


def test_step_epoch_warns_with_torchs_own_text() -> None:
    from torch.optim.lr_scheduler import EPOCH_DEPRECATION_WARNING

    for make in (
        lambda o: L.StepLR(o, 2),
        lambda o: L.ExponentialLR(o, gamma=0.9),
        lambda o: L.ReduceLROnPlateau(o),
    ):
        opt = _two_group_sgd()
        sched = make(opt)
        opt.step()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if isinstance(sched, L.ReduceLROnPlateau):
                sched.step(1.0, 2)
            else:
                sched.step(2)
        assert [str(w.message) for w in caught] == [EPOCH_DEPRECATION_WARNING]


def _wrap_step(opt: torch.optim.Optimizer) -> None:
    """Replace ``opt.step`` by a wrapper that calls the original, as user code does."""
    old_step = opt.step

    def new_step(self: Any, *args: Any, **kwargs: Any) -> Any:
        return old_step(*args, **kwargs)

    opt.step = types.MethodType(new_step, opt)  # type: ignore[method-assign]


def test_order_warnings_point_at_torchs_page_and_notice_a_replaced_step() -> None:
    opt = _two_group_sgd()
    sched = L.StepLR(opt, gamma=0.1, step_size=3)
    with pytest.warns(UserWarning, match="how-to-adjust-learning-rate"):
        sched.step()  # before optimizer.step()
    opt = _two_group_sgd()
    sched = L.StepLR(opt, gamma=0.1, step_size=3)
    _wrap_step(opt)  # replaced after the scheduler was built
    opt.step()
    with pytest.warns(UserWarning, match=r"`optimizer.step\(\)` has been overridden"):
        sched.step()
    opt = _two_group_sgd()  # replaced before: nothing to say
    _wrap_step(opt)
    sched = L.StepLR(opt, gamma=0.1, step_size=3)
    opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()


def test_errors_start_with_torchs_words() -> None:
    opt = _two_group_sgd()
    with pytest.raises(KeyError, match=r"param 'initial_lr' is not specified in param_groups\[0\]"):
        L.StepLR(opt, step_size=3, last_epoch=1)
    with pytest.raises(TypeError, match="lr_lambda should be a function"):
        L.MultiplicativeLR(opt, lr_lambda=0.95)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name", ["StepLR", "ExponentialLR", "ConstantLR", "LinearLR", "PolynomialLR"]
)
def test_a_tensor_lr_is_copied_into_initial_lr_never_aliased(name: str) -> None:
    """As torch: ``initial_lr`` is the tensor lr's own copy; changing the lr leaves it alone."""
    lr = torch.as_tensor(0.1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.randn(1))], lr=lr)
    kwargs = {"StepLR": {"step_size": 2}, "ExponentialLR": {"gamma": 0.9}}.get(name, {})
    sched = getattr(L, name)(opt, **kwargs)
    group = opt.param_groups[0]
    assert isinstance(group["initial_lr"], torch.Tensor) and group["initial_lr"] is not lr
    for _ in range(2):
        opt.step()
        sched.step()
        lr.mul_(0.1)
        assert float(group["initial_lr"]) == pytest.approx(0.1)
        assert sched.base_lrs == [pytest.approx(0.1)]
        assert sched.base_lrs[0] is not group["initial_lr"]


@pytest.mark.parametrize("min_lr", [0.0, [1e-5, 1e-4]])
def test_reduce_lr_on_plateau_goes_on_after_add_param_group(min_lr: Any) -> None:
    """Unfreezing layers mid-run: the new group is cut from its own lr, as torch does."""
    pairs = []
    for make in (torch.optim.lr_scheduler.ReduceLROnPlateau, L.ReduceLROnPlateau):
        opt = _two_group_sgd()
        sched = make(opt, patience=1, factor=0.5, min_lr=min_lr)
        lrs = []
        for epoch, metric in enumerate([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]):
            if epoch == 2:
                opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.2})
                if isinstance(min_lr, list):
                    sched.min_lrs.append(1e-6)
            opt.step()
            sched.step(metric)
            lrs.append([float(g["lr"]) for g in opt.param_groups])
        pairs.append(lrs)
    assert pairs[0] == pairs[1]
    assert pairs[1][-1][2] < 0.2  # the added group was cut too


def test_reduce_lr_on_plateau_with_per_group_min_lrs_says_what_to_do_after_add_param_group() -> (
    None
):
    opt = _two_group_sgd()
    sched = L.ReduceLROnPlateau(opt, patience=0, min_lr=[1e-5, 1e-4])
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.05})
    opt.step()
    sched.step(1.0)
    with pytest.raises(RuntimeError, match=r"The number of param groups in the `optimizer` \(3\)"):
        opt.step()
        sched.step(1.3)


def test_private_names_torch_users_reach_for_exist_on_the_drop_ins() -> None:
    """CyclicLR._scale_fn_ref, OneCycleLR._anneal_func_type and a legacy anneal_func."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    cyclic = L.CyclicLR(opt, base_lr=1, max_lr=5, cycle_momentum=False, mode="triangular2")
    assert isinstance(cyclic._scale_fn_ref, types.FunctionType)
    state = cyclic.state_dict()
    assert "_scale_fn_ref" not in state and state["_scale_fn_custom"] is None
    custom = L.CyclicLR(opt, base_lr=1, max_lr=5, cycle_momentum=False, scale_fn=lambda x: 0.5)
    assert custom._scale_fn_ref is None

    def make() -> tuple[Any, Any]:
        o = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
        return o, L.OneCycleLR(o, max_lr=25, final_div_factor=2, total_steps=10)

    opt_a, reference = make()
    opt_b, legacy = make()
    assert legacy._anneal_func_type == "cos"
    del legacy._anneal_func_type  # a state saved by an older torch has no such field
    state = legacy.state_dict()
    state["anneal_func"] = L.OneCycleLR._annealing_cos
    legacy.load_state_dict(state)
    for _ in range(9):
        opt_a.step()
        reference.step()
        opt_b.step()
        legacy.step()
        assert legacy.get_last_lr() == pytest.approx(reference.get_last_lr(), rel=1e-12)


def test_a_replanned_schedule_warns_at_its_new_end_not_the_old_one() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = L.Scheduler(opt, "cosine(lr=0.1, steps=10)")
    for _ in range(5):
        opt.step()
        sched.step()
    sched.replan(20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(15):  # to step 20: the new end, nothing to say
            opt.step()
            sched.step()
    with pytest.warns(UserWarning, match=r"step 21 is past the end of replan"):
        opt.step()
        sched.step()
