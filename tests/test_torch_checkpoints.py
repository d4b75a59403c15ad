"""A checkpoint written by torch's own scheduler continues exactly under lrkit's drop-in.

For each of the 15 classes: torch's class runs k steps on an optimizer with two
param groups (different lrs; momentum / betas where the class cycles them);
its ``state_dict()`` and the optimizer's are loaded into a fresh optimizer and
lrkit's drop-in built with the same arguments (the optimizer's state loaded
before the drop-in is built, after it, or after the scheduler's state); then
both continue, and every group's lr (and momentum / beta1) agree at every step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as T

import lrkit.torch as L

REL = 1e-9
MORE = 25  # steps taken after the resume


class Decay:
    """A callable object: torch saves its ``__dict__`` in the state."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, t: int) -> float:
        return self.rate**t


class Factor:
    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, t: int) -> float:
        return self.factor if t % 2 else 1.0


class Scale:
    def __init__(self, base: float) -> None:
        self.base = base

    def __call__(self, x: float) -> float:
        return self.base**x


def make_opt(kind: str) -> torch.optim.Optimizer:
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(3))
    b = torch.nn.Parameter(torch.randn(2))
    groups: list[dict[str, Any]] = [{"params": [a]}, {"params": [b], "lr": 0.02}]
    if kind == "adam":
        return torch.optim.Adam(groups, lr=0.1, betas=(0.9, 0.99))
    return torch.optim.SGD(groups, lr=0.1, momentum=0.9)


def train_step(opt: torch.optim.Optimizer) -> None:
    opt.zero_grad()
    loss = sum((p**2).sum() for g in opt.param_groups for p in g["params"])
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    opt.step()


def metric(i: int) -> float:
    """Improves now and then, flat in between: cuts, patience and cooldown all happen."""
    return 1.0 / (1 + i // 6)


Build = Callable[[Any, torch.optim.Optimizer], Any]

CASES: dict[str, tuple[str, Build]] = {
    "LambdaLR": ("sgd", lambda M, o: M.LambdaLR(o, [lambda t: 0.95**t, lambda t: 1 / (1 + t)])),
    "LambdaLR-object": ("sgd", lambda M, o: M.LambdaLR(o, [Decay(0.9), Decay(0.8)])),
    "MultiplicativeLR": ("sgd", lambda M, o: M.MultiplicativeLR(o, lambda t: 0.97)),
    "MultiplicativeLR-object": ("sgd", lambda M, o: M.MultiplicativeLR(o, Factor(0.9))),
    "StepLR": ("sgd", lambda M, o: M.StepLR(o, step_size=4, gamma=0.5)),
    "MultiStepLR": ("sgd", lambda M, o: M.MultiStepLR(o, milestones=[2, 9, 9, 20], gamma=0.5)),
    "ConstantLR": ("sgd", lambda M, o: M.ConstantLR(o, factor=0.4, total_iters=10)),
    "LinearLR": ("sgd", lambda M, o: M.LinearLR(o, start_factor=0.2, total_iters=12)),
    "ExponentialLR": ("sgd", lambda M, o: M.ExponentialLR(o, gamma=0.9)),
    "SequentialLR": (
        "sgd",
        lambda M, o: M.SequentialLR(
            o,
            [
                M.LinearLR(o, start_factor=0.25, total_iters=5),
                M.CosineAnnealingLR(o, T_max=8, eta_min=0.001),
                M.ExponentialLR(o, gamma=0.9),
            ],
            milestones=[5, 14],
        ),
    ),
    "PolynomialLR": ("sgd", lambda M, o: M.PolynomialLR(o, total_iters=30, power=2.0)),
    "CosineAnnealingLR": ("sgd", lambda M, o: M.CosineAnnealingLR(o, T_max=7, eta_min=0.001)),
    "ChainedScheduler": (
        "sgd",
        lambda M, o: M.ChainedScheduler(
            [M.ConstantLR(o, factor=0.5, total_iters=6), M.ExponentialLR(o, gamma=0.93)]
        ),
    ),
    "ReduceLROnPlateau": (
        "sgd",
        lambda M, o: M.ReduceLROnPlateau(o, factor=0.5, patience=2, cooldown=2, min_lr=[0, 1e-4]),
    ),
    "CyclicLR": (
        "sgd",
        lambda M, o: M.CyclicLR(
            o,
            base_lr=[0.01, 0.002],
            max_lr=[0.1, 0.05],
            step_size_up=4,
            step_size_down=6,
            mode="triangular2",
        ),
    ),
    "CyclicLR-adam": (
        "adam",
        lambda M, o: M.CyclicLR(
            o,
            base_lr=0.01,
            max_lr=[0.1, 0.05],
            step_size_up=5,
            mode="exp_range",
            gamma=0.97,
            base_momentum=0.85,
            max_momentum=0.95,
        ),
    ),
    "CyclicLR-scale_fn": (
        "sgd",
        lambda M, o: M.CyclicLR(
            o,
            base_lr=0.01,
            max_lr=0.1,
            step_size_up=3,
            scale_fn=Scale(0.9),
            scale_mode="iterations",
        ),
    ),
    "OneCycleLR": ("sgd", lambda M, o: M.OneCycleLR(o, max_lr=[1.0, 0.3], total_steps=50)),
    "OneCycleLR-adam": (
        "adam",
        lambda M, o: M.OneCycleLR(
            o,
            max_lr=0.5,
            total_steps=60,
            pct_start=0.25,
            anneal_strategy="linear",
            three_phase=True,
        ),
    ),
    "CosineAnnealingWarmRestarts": (
        "sgd",
        lambda M, o: M.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.001),
    ),
}


def advance(sched: Any, opt: torch.optim.Optimizer, i: int) -> None:
    train_step(opt)
    if isinstance(sched, T.ReduceLROnPlateau):
        sched.step(metric(i))
    else:
        sched.step()


def snapshot(opt: torch.optim.Optimizer) -> list[tuple[float, float | None]]:
    out: list[tuple[float, float | None]] = []
    for g in opt.param_groups:
        if "betas" in g:
            m: float | None = float(g["betas"][0])
        else:
            m = float(g["momentum"]) if "momentum" in g else None
        out.append((float(g["lr"]), m))
    return out


def assert_same(ours: Any, theirs: Any, where: str) -> None:
    for g, ((lr, m), (lr_t, m_t)) in enumerate(zip(ours, theirs, strict=True)):
        assert math.isclose(lr, lr_t, rel_tol=REL, abs_tol=1e-15), f"{where}, group {g}: lr"
        if m_t is not None:
            assert m is not None
            assert math.isclose(m, m_t, rel_tol=REL), f"{where}, group {g}: momentum"


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("order", ["before", "after", "last"])
@pytest.mark.parametrize("k", [0, 3, 17])
@pytest.mark.parametrize("case", list(CASES))
def test_torch_state_continues_in_drop_in(case: str, k: int, order: str) -> None:
    kind, build = CASES[case]
    opt = make_opt(kind)
    theirs = build(T, opt)
    for i in range(k):
        advance(theirs, opt, i)
    opt_state = copy.deepcopy(opt.state_dict())
    sched_state = copy.deepcopy(theirs.state_dict())
    if case.endswith("-object"):  # the objects' own state travels in the checkpoint
        assert all(s is not None for s in sched_state["lr_lambdas"])

    opt2 = make_opt(kind)
    if order == "before":
        opt2.load_state_dict(opt_state)
    ours = build(L, opt2)
    if case.endswith("-object"):  # built with other parameters: the state restores them
        for fn in ours.lr_lambdas:
            fn.__dict__.update({key: 0.5 for key in fn.__dict__})
    if order == "after":
        opt2.load_state_dict(opt_state)
    ours.load_state_dict(copy.deepcopy(sched_state))
    if order == "last":
        opt2.load_state_dict(opt_state)
    assert_same(snapshot(opt2), snapshot(opt), f"{case} k={k} {order}: at the resume")
    assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=REL)

    for i in range(k, k + MORE):
        advance(theirs, opt, i)
        advance(ours, opt2, i)
        assert_same(snapshot(opt2), snapshot(opt), f"{case} k={k} {order}: step {i + 1}")
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=REL)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("k", [3, 8, 14, 17])
def test_plateau_checkpoint_is_mid_patience_or_cooldown(k: int) -> None:
    """The plateau cases above resume after a cut, mid-patience and in cooldown."""
    opt = make_opt("sgd")
    sched = CASES["ReduceLROnPlateau"][1](T, opt)
    for i in range(k):
        advance(sched, opt, i)
    state = sched.state_dict()
    if k >= 8:
        assert state["_last_lr"][0] < 0.1  # cut at least once
    assert state["num_bad_epochs"] > 0 or state["cooldown_counter"] > 0


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", list(CASES))
def test_own_round_trip_after_torch_state(case: str) -> None:
    """A drop-in loaded from torch's state saves its own state, which resumes exactly."""
    kind, build = CASES[case]
    opt = make_opt(kind)
    theirs = build(T, opt)
    for i in range(5):
        advance(theirs, opt, i)
    opt2 = make_opt(kind)
    ours = build(L, opt2)
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
    saved = ours.state_dict()
    for key in ("_is_initial", "_get_lr_called_within_step", "_schedule_phases"):
        assert key not in saved  # torch's bookkeeping is not carried into lrkit's state
    for i in range(5, 9):
        advance(theirs, opt, i)
        advance(ours, opt2, i)
    opt3 = make_opt(kind)
    opt3.load_state_dict(copy.deepcopy(opt2.state_dict()))
    again = build(L, opt3)
    again.load_state_dict(copy.deepcopy(ours.state_dict()))
    for i in range(9, 9 + MORE):
        advance(theirs, opt, i)
        advance(again, opt3, i)
        assert_same(snapshot(opt3), snapshot(opt), f"{case}: step {i + 1}")


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("k", [0, 5, 13])
def test_warm_restarts_state_with_fractional_epochs(k: int) -> None:
    """torch's SGDR stepped with ``step(epoch + i / n)``: a float T_cur resumes exactly."""

    def build(M: Any, o: torch.optim.Optimizer) -> Any:
        return M.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2, eta_min=0.001)

    opt = make_opt("sgd")
    theirs = build(T, opt)
    for i in range(k):
        train_step(opt)
        theirs.step(i / 4)
    opt2 = make_opt("sgd")
    ours = build(L, opt2)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
    for i in range(k, k + MORE):
        train_step(opt)
        train_step(opt2)
        theirs.step(i / 4)
        ours.step(i / 4)
        assert_same(snapshot(opt2), snapshot(opt), f"k={k}: epoch {i / 4}")
    for i in range(MORE):  # and plain steps after that
        train_step(opt)
        train_step(opt2)
        theirs.step()
        ours.step()
        assert_same(snapshot(opt2), snapshot(opt), f"k={k}: plain step {i}")
