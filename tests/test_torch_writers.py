"""Other writers of ``group["lr"]``: stacked drop-ins, user code, torch's own schedulers.

torch's schedulers are chainable: each step goes on from ``group["lr"]``, so
several schedulers on one optimizer multiply their effects and a value written
by user code mid-run is where the run goes on from. lrkit's drop-ins keep
their own values and go on from a group's lr only where someone else changed
it since their own last write. Here both are run side by side with torch
(hypothesis draws the stacks, the user writes and the step at which a run is
saved) and compared at every step: every group's lr, momentum / beta1, and
each scheduler's ``get_last_lr()``.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as T

import lrkit.torch as L
from test_torch import (
    NAMES,
    assert_same,
    make_opt,
    random_case,
    simple_child,
    snapshot,
)

Build = Callable[[Any, torch.optim.Optimizer], Any]


def plateau_child(rng: np.random.Generator) -> Build:
    factor = float(rng.uniform(0.2, 0.9))
    patience = int(rng.integers(0, 3))
    return lambda M, o: M.ReduceLROnPlateau(o, factor=factor, patience=patience)


def metric(t: int) -> float:
    """A validation loss that improves, then stalls (so plateau cuts happen)."""
    return max(1.0, 5.0 - t) + 0.01 * (t % 3)


def step_all(scheds: list[Any], opt: torch.optim.Optimizer, t: int) -> None:
    opt.step()
    for s in scheds:
        if isinstance(s, T.ReduceLROnPlateau):
            s.step(metric(t))
        else:
            s.step()


def state_of(opt: torch.optim.Optimizer, scheds: list[Any]) -> list:
    return [snapshot(opt)] + [list(s.get_last_lr()) for s in scheds]


def same(ours: list, theirs: list, where: str) -> None:
    assert_same(ours[0], theirs[0], where)
    for i, (a, b) in enumerate(zip(ours[1:], theirs[1:], strict=True)):
        assert_same(a, b, f"{where}, scheduler {i} get_last_lr")


def roundtrip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# ---------------------------------------------------------------------------
# Stacks: several schedulers stepped on one optimizer, as torch users write them
# ---------------------------------------------------------------------------


@st.composite
def stacks(draw: st.DrawFn) -> dict[str, Any]:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    k = draw(st.integers(2, 3))
    children = [simple_child(rng) for _ in range(k)]
    if draw(st.booleans()):  # a plateau cut on top of the others
        children.insert(draw(st.integers(0, k)), plateau_child(rng))
    n_groups = draw(st.integers(1, 3))
    steps = draw(st.integers(5, 30))
    writes = draw(
        st.dictionaries(
            st.integers(0, steps - 1),
            st.tuples(st.integers(0, n_groups - 1), st.floats(1e-4, 1.0)),
            max_size=3,
        )
    )
    return {
        "children": children,
        "kind": draw(st.sampled_from(["sgd", "adam"])),
        "lrs": [float(v) for v in rng.uniform(0.01, 1.0, n_groups)],
        "steps": steps,
        "writes": writes,
        # which of the stacked schedulers are torch's own (the rest lrkit's)
        "torch_own": [draw(st.booleans()) for _ in children],
    }


def run_stack(
    stack: dict[str, Any], modules: list[Any], steps: int | None = None
) -> tuple[list, torch.optim.Optimizer, list[Any]]:
    opt = make_opt(stack["kind"], stack["lrs"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scheds = [c(m, opt) for c, m in zip(stack["children"], modules, strict=True)]
        out = [state_of(opt, scheds)]
        for t in range(stack["steps"] if steps is None else steps):
            if t in stack["writes"]:
                g, lr = stack["writes"][t]
                opt.param_groups[g]["lr"] = lr  # user code writes the optimizer
            step_all(scheds, opt, t)
            out.append(state_of(opt, scheds))
    return out, opt, scheds


@settings(max_examples=60)
@given(stacks())
def test_stacked_drop_ins_match_torch_step_for_step(stack: dict[str, Any]) -> None:
    theirs, _, _ = run_stack(stack, [T] * len(stack["children"]))
    ours, _, _ = run_stack(stack, [L] * len(stack["children"]))
    for t, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        same(a, b, f"step {t}")


@settings(max_examples=40)
@given(stacks())
def test_drop_ins_stack_with_torchs_own_schedulers(stack: dict[str, Any]) -> None:
    theirs, _, _ = run_stack(stack, [T] * len(stack["children"]))
    mixed = [T if own else L for own in stack["torch_own"]]
    ours, _, _ = run_stack(stack, mixed)
    for t, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        same(a, b, f"step {t}")


ORDERS = ["optimizer first", "schedulers first", "optimizer last"]


def saved_and_resumed(
    stack: dict[str, Any], saved_by: Any, at: int, order: str
) -> tuple[list, list]:
    """(the run from ``at`` on uninterrupted, the same run resumed from ``at`` by lrkit).

    The run is saved at step ``at`` by ``saved_by``'s schedulers (T or L),
    then loaded into lrkit's with the optimizer's state loaded in ``order``.
    Each entry: the optimizer's snapshot, then each scheduler's get_last_lr().
    """
    modules = [saved_by] * len(stack["children"])
    straight, _, _ = run_stack(stack, modules)
    _, opt, scheds = run_stack(stack, modules, steps=at)
    opt_state = roundtrip(opt.state_dict())
    states = [roundtrip(s.state_dict()) for s in scheds]

    opt2 = make_opt(stack["kind"], stack["lrs"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if order == "optimizer first":
            opt2.load_state_dict(opt_state)
        scheds2 = [c(L, opt2) for c in stack["children"]]
        if order == "schedulers first":
            opt2.load_state_dict(opt_state)
        for s, state in zip(scheds2, states, strict=True):
            s.load_state_dict(copy.deepcopy(state))
        if order == "optimizer last":
            opt2.load_state_dict(opt_state)
        again = [state_of(opt2, scheds2)]
        for t in range(at, stack["steps"]):
            if t in stack["writes"]:
                g, lr = stack["writes"][t]
                opt2.param_groups[g]["lr"] = lr
            step_all(scheds2, opt2, t)
            again.append(state_of(opt2, scheds2))
    return straight[at:], again


@pytest.mark.parametrize("order", ORDERS)
@settings(max_examples=25)
@given(stack=stacks(), data=st.data())
def test_stacked_resume_is_exact_in_any_load_order(
    order: str, stack: dict[str, Any], data: st.DataObject
) -> None:
    """A stack saved mid-run (user writes included) goes on exactly as if never stopped."""
    at = data.draw(st.integers(0, stack["steps"]), label="saved at")
    straight, again = saved_and_resumed(stack, L, at, order)
    for t, (a, b) in enumerate(zip(again, straight, strict=True)):
        same(a, b, f"{order}, saved at {at}, step {at + t}")


@pytest.mark.parametrize("order", ORDERS)
@settings(max_examples=20)
@given(stack=stacks(), data=st.data())
def test_a_stack_saved_by_torch_goes_on_under_the_drop_ins(
    order: str, stack: dict[str, Any], data: st.DataObject
) -> None:
    """torch's states (no lrs in force kept) loaded in the order the schedulers step."""
    at = data.draw(st.integers(0, stack["steps"]), label="saved at")
    straight, again = saved_and_resumed(stack, T, at, order)
    for t, (a, b) in enumerate(zip(again, straight, strict=True)):
        assert_same(a[0], b[0], f"{order}, saved at {at}, step {at + t}")


def test_the_issues_examples() -> None:
    """StepLR + ExponentialLR, and a hand-stacked warmup + cosine, as torch gives them."""
    for M in (T, L):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        a, b = M.StepLR(opt, step_size=2, gamma=0.1), M.ExponentialLR(opt, gamma=0.1)
        for _ in range(3):
            opt.step()
            a.step()
            b.step()
        # step 3: 0.1 x 0.1 (one StepLR cut) x 0.1**3 (ExponentialLR)
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-5, rel=1e-12), M.__name__

    def warm_cosine(M: Any) -> list[float]:
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        warm = M.LinearLR(opt, start_factor=0.1, total_iters=5)
        cos = M.CosineAnnealingLR(opt, T_max=20)
        out = []
        for _ in range(25):
            opt.step()
            warm.step()
            cos.step()
            out.append(opt.param_groups[0]["lr"])
        return out

    assert warm_cosine(L) == pytest.approx(warm_cosine(T), rel=1e-9)


@pytest.mark.parametrize("with_warmup", [False, True])
def test_plateau_composes_with_a_warmup(with_warmup: bool) -> None:
    """The combination torch users reach for: LinearLR warmup + ReduceLROnPlateau."""

    def run(M: Any) -> list[float]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5, momentum=0.9)
        scheds = [M.LinearLR(opt, start_factor=0.01, total_iters=4)] if with_warmup else []
        scheds.append(M.ReduceLROnPlateau(opt, factor=0.5, patience=1))
        out = []
        for t in range(15):
            step_all(scheds, opt, t)
            out.append(opt.param_groups[0]["lr"])
        return out

    theirs = run(T)
    assert run(L) == pytest.approx(theirs, rel=1e-12)
    assert min(theirs) < 0.5 * max(theirs)  # a cut happened


# ---------------------------------------------------------------------------
# User code writing group["lr"] mid-run, one scheduler of each class
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_a_write_mid_run_goes_on_as_in_torch(name: str, seed: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    n_groups = int(rng.integers(1, 4))
    case = random_case(name, rng, n_groups)
    kind = data.draw(st.sampled_from(["sgd", "adam"]), label="optimizer")
    lrs = [float(v) for v in rng.uniform(0.01, 1.0, n_groups)]
    writes = data.draw(
        st.dictionaries(
            st.integers(0, case.steps - 1),
            st.tuples(st.integers(0, n_groups - 1), st.floats(1e-4, 1.0)),
            min_size=1,
            max_size=3,
        ),
        label="writes",
    )

    def run(M: Any) -> list:
        opt = make_opt(kind, lrs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            sched = case.build(M, opt)
            out = [state_of(opt, [sched])]
            for t in range(case.steps):
                if t in writes:
                    g, lr = writes[t]
                    opt.param_groups[g]["lr"] = lr
                case.advance(sched, opt, t)
                out.append(state_of(opt, [sched]))
        return out

    for t, (a, b) in enumerate(zip(run(L), run(T), strict=True)):
        same(a, b, f"{name} step {t}")


def test_a_tensor_lr_is_not_mistaken_for_another_writer() -> None:
    """A float32 tensor lr rounds what a drop-in writes; reading it back must not look foreign."""

    def run(M: Any) -> list[float]:
        p = torch.nn.Parameter(torch.zeros(2))
        opt = torch.optim.Adam([p], lr=torch.tensor(0.01))
        a = M.ExponentialLR(opt, gamma=0.9)
        b = M.StepLR(opt, step_size=3, gamma=0.3)
        out = []
        for _ in range(12):
            opt.step()
            a.step()
            b.step()
            out.append(float(opt.param_groups[0]["lr"]))
        return out

    assert run(L) == pytest.approx(run(T), rel=1e-6)


# ---------------------------------------------------------------------------
# add_param_group() mid-run (unfreezing layers)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_a_group_added_mid_run_goes_as_in_torch(name: str) -> None:
    """The chainable rules take the new group along; the others fail at the same step."""
    for seed in range(12):
        rng = np.random.default_rng(seed)
        case = random_case(name, rng, 2)
        add_at = int(rng.integers(0, 5))

        def run(M: Any, case: Any = case, add_at: int = add_at) -> list:
            opt = make_opt("sgd", [0.1, 0.3])
            out: list = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                sched = case.build(M, opt)
                for t in range(case.steps):
                    if t == add_at:
                        extra = torch.nn.Parameter(torch.zeros(2))
                        opt.add_param_group({"params": [extra], "lr": 0.05, "momentum": 0.5})
                    try:
                        case.advance(sched, opt, t)
                    except (ValueError, KeyError, RuntimeError) as err:  # torch fails there too
                        out.append(("fails", t, type(err) is not KeyError or name == "OneCycleLR"))
                        break
                    out.append(state_of(opt, [sched]))
            return out

        ours, theirs = run(L), run(T)
        assert len(ours) == len(theirs), f"{name} seed {seed}: {ours[-1]} vs {theirs[-1]}"
        for t, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            if a[0] == "fails" or b[0] == "fails":
                assert a == b, f"{name} seed {seed} step {t}: {a} vs {b}"
            else:
                same(a, b, f"{name} seed {seed} (group added at {add_at}) step {t}")


def test_a_rule_that_cannot_take_a_new_group_says_so() -> None:
    opt = make_opt("sgd", [0.1])
    sched = L.LambdaLR(opt, lambda t: 0.9**t)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.05})
    opt.step()
    with pytest.raises(ValueError, match=r"add_param_group\(\).*Build the scheduler after"):
        sched.step()
