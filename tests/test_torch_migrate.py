"""lrkit.torch.get_scheduler against transformers.get_scheduler itself, side by side.

Each case builds two identical optimizers (SGD, two param groups with different
lrs), one driven by transformers' scheduler and one by lrkit's, steps both past
the end of the run and compares the lrs of both groups at every step: 1e-12
relative, or 1e-15 absolute near 0. Argument sets are drawn by hypothesis
(warmup, total, num_cycles, power, lr_end, min_lr, timescale, wsd phases); the
common configurations are pinned with their lrkit specs, which docs/torch.md
shows in its table.
"""

from __future__ import annotations

import io
import math
import pickle
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import SchedulerType

import lrkit
import lrkit.torch as L
from lrkit.torch.migrate import NAMES, TransformersFormula

REL, ABS = 1e-12, 1e-15
LRS = (0.1, 0.03)
EXTRA = 10  # steps compared past the end of the run

#: The cosines whose default num_cycles (0.5) runs as an lrkit spec: past the end
#: they climb back to the lr as transformers' do, then hold it (docs/torch.md).
WAVES = ("cosine", "cosine_with_min_lr", "cosine_warmup_with_min_lr")


@pytest.fixture(scope="module", autouse=True)
def fresh_interpreter() -> Any:
    """A fresh Python that imports lrkit.torch and uses get_scheduler, then says whether
    transformers got imported; started before this module's first test so that its
    imports (torch's: seconds) overlap with the other tests, read by the last test."""
    code = (
        "import sys, torch, lrkit.torch\n"
        "opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)\n"
        "lrkit.torch.get_scheduler('cosine', opt, 1, 10, {'num_cycles': 0.7})\n"
        "print('transformers' in sys.modules)\n"
    )
    pipe = subprocess.PIPE
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=pipe, stderr=pipe, text=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def optimizer(lrs: tuple[float, ...] = LRS, default: float | None = None) -> torch.optim.SGD:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0] if default is None else default)


def close(ours: float, theirs: float) -> bool:
    return abs(ours - theirs) <= max(REL * abs(theirs), ABS)


def side_by_side(
    name: str,
    w: int | None,
    n: int | None,
    kwargs: dict[str, Any] | None = None,
    *,
    lrs: tuple[float, ...] = LRS,
    default: float | None = None,
    steps: int | None = None,
) -> L.Scheduler:
    """Run transformers' and lrkit's schedulers together; assert equal lrs at every step."""
    theirs_opt, ours_opt = optimizer(lrs, default), optimizer(lrs, default)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # wsd: both num_training_steps and num_stable_steps
        theirs = transformers.get_scheduler(name, theirs_opt, w, n, dict(kwargs or {}) or None)
        ours = L.get_scheduler(name, ours_opt, w, n, dict(kwargs or {}) or None)
    assert isinstance(ours, L.Scheduler)
    plan = ours._schedules[0]
    if not isinstance(plan, TransformersFormula):  # a real lrkit spec
        assert lrkit.parse(str(plan)) == plan
    if steps is None:
        steps = (n or 0) + (w or 0) + EXTRA
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lrkit: "past the end of the plan"
        for t in range(steps + 1):
            pairs = zip(ours_opt.param_groups, theirs_opt.param_groups, strict=True)
            for g, (a, b) in enumerate(pairs):
                assert close(a["lr"], b["lr"]), (
                    f"{name} w={w} n={n} {kwargs} step {t} group {g}: lrkit {a['lr']!r} "
                    f"transformers {b['lr']!r}; plan {plan}"
                )
            assert ours.get_last_lr() == [g["lr"] for g in ours_opt.param_groups]
            theirs_opt.step()
            ours_opt.step()
            theirs.step()
            ours.step()
    return ours


def horizon(name: str, w: int, n: int, cycles: float = 0.5) -> int:
    """Steps to compare: the run plus EXTRA; for the lrkit-spec cosines, at most to
    where transformers' wave is back at the lr (2n - w; one step earlier for
    cosine_warmup_with_min_lr, whose cosine starts a step ahead)."""
    if name in WAVES and cycles == 0.5 and w < n:
        return min(n + EXTRA, 2 * n - w - (name == "cosine_warmup_with_min_lr"))
    return n + EXTRA


# ---------------------------------------------------------------------------
# 1. Pinned configurations: values and the lrkit spec shown (docs/torch.md's table)
# ---------------------------------------------------------------------------

PINNED = [
    ("constant", None, None, None, "constant(lr=0.1)"),
    ("constant_with_warmup", 10, None, None, "warmup(constant(lr=0.1), steps=10)"),
    ("linear", 10, 100, None, "warmup(linear(start_lr=0.1, end_lr=0.0, steps=90), steps=10)"),
    (
        "cosine",
        10,
        100,
        None,
        "warmup(cosine(lr=0.1, steps=90), steps=10)"
        " | warmup(constant(lr=0.1), steps=90, shape='cosine')",
    ),
    (
        "cosine_with_restarts",
        10,
        100,
        {"num_cycles": 3},
        "join(warmup(cosine_restarts(lr=0.1, period=30), steps=10), constant(lr=0.0),"
        " boundaries=[100])",
    ),
    ("cosine_with_restarts", 10, 100, None, "warmup(cosine(lr=0.1, steps=90), steps=10)"),
    (
        "polynomial",
        10,
        100,
        {"power": 2.0, "lr_end": 1e-4},
        "warmup(polynomial(lr=0.1, steps=90, power=2.0, end_lr=0.0001), steps=10)",
    ),
    ("inverse_sqrt", 10, None, None, "inverse_sqrt(lr=0.1, warmup_steps=10)"),
    (
        "cosine_with_min_lr",
        10,
        100,
        {"min_lr_rate": 0.1},
        "warmup(cosine(lr=0.1, steps=90, min_lr=0.01), steps=10)"
        " | warmup(constant(lr=0.1), steps=90, start_lr=0.01, shape='cosine')",
    ),
    (
        "cosine_warmup_with_min_lr",
        10,
        100,
        {"min_lr": 1e-3},
        "linear(start_lr=0.01, end_lr=0.1, steps=9) | cosine(lr=0.1, steps=90, min_lr=0.001)"
        " | warmup(constant(lr=0.1), steps=90, start_lr=0.001, shape='cosine')",
    ),
    (
        "warmup_stable_decay",
        10,
        100,
        {"num_decay_steps": 20},
        "wsd(lr=0.1, steps=100, warmup_steps=10, decay_steps=20, decay_shape='cosine')",
    ),
    (
        "warmup_stable_decay",
        10,
        None,
        {
            "num_decay_steps": 20,
            "num_stable_steps": 50,
            "decay_type": "1-sqrt",
            "min_lr_ratio": 0.1,
        },
        "warmup(wsd(lr=0.1, steps=70, decay_steps=20, min_lr=0.01), steps=10, start_lr=0.01)",
    ),
]


@pytest.mark.parametrize(("name", "w", "n", "kwargs", "spec"), PINNED)
def test_pinned_configurations_match_transformers_and_show_their_spec(
    name: str, w: int | None, n: int | None, kwargs: dict[str, Any] | None, spec: str
) -> None:
    steps = None if n is None else horizon(name, w or 0, n)
    ours = side_by_side(name, w, n, kwargs, steps=steps)
    assert str(ours._schedules[0]) == spec
    assert f"'{spec}'" in repr(ours)


# Argument sets no lrkit family expresses: transformers' formula runs, exactly.
FORMULAS = [
    ("cosine", 10, 100, {"num_cycles": 0.7}),
    ("cosine", 100, 100, None),  # warmup to the end: transformers alternates 1, 0, 1, ...
    ("cosine_with_restarts", 10, 101, {"num_cycles": 3}),  # restarts between steps
    ("cosine_with_restarts", 0, 66, {"num_cycles": 22}),  # 15/22*22 < 15: a restart slips
    ("inverse_sqrt", 0, None, None),  # timescale 10_000
    ("inverse_sqrt", 10, None, {"timescale": 25}),
    ("cosine_with_min_lr", 10, 100, {"min_lr": 1e-3, "num_cycles": 1.5}),
    ("cosine_warmup_with_min_lr", 0, 100, {"min_lr_rate": 0.1}),  # the cosine one step ahead
    ("cosine_warmup_with_min_lr", 1, 100, {"min_lr_rate": 0.1, "warmup_lr_rate": 0.5}),
    ("warmup_stable_decay", 10, 100, {"num_decay_steps": 20, "warmup_type": "1-sqrt"}),
    ("warmup_stable_decay", 10, 100, {"num_decay_steps": 20, "num_cycles": 1.0}),
    ("warmup_stable_decay", 10, 100, {"num_decay_steps": 0, "min_lr_ratio": 0.5}),
]


@pytest.mark.parametrize(("name", "w", "n", "kwargs"), FORMULAS)
def test_what_no_lrkit_spec_expresses_runs_transformers_formula(
    name: str, w: int, n: int | None, kwargs: dict[str, Any] | None
) -> None:
    ours = side_by_side(name, w, n, kwargs, steps=(n or 100) + 3 * EXTRA)
    plan = ours._schedules[0]
    assert isinstance(plan, TransformersFormula)
    assert str(plan).startswith(f"transformers({name!r}, lr=0.1, num_warmup_steps={w}")
    np.testing.assert_allclose(plan.values(150), [plan(t) for t in range(150)], rtol=1e-12)


def test_spec_cosines_climb_back_like_transformers_then_hold_the_lr() -> None:
    # transformers' cosine is a wave for ever; lrkit's spec follows it back up to the
    # lr at 2n - w, then holds it while transformers' goes down again (docs/torch.md).
    w, n = 5, 25
    ours = side_by_side("cosine", w, n, steps=2 * n - w)
    plan = ours._schedules[0]
    assert [plan(t) for t in range(2 * n - w, 3 * n)] == [0.1] * (n + w)
    theirs_opt = optimizer()
    theirs = transformers.get_scheduler("cosine", theirs_opt, w, n)
    for _ in range(2 * n - w + 5):
        theirs_opt.step()
        theirs.step()
    assert theirs.get_last_lr()[0] < 0.1


def test_polynomial_and_min_lr_read_the_optimizers_default_lr_as_transformers_does() -> None:
    # Group 0's lr (0.2) differs from optimizer.defaults["lr"] (0.1): transformers ends
    # every group at lr_end / 0.1 times its own lr, so group 0 ends at 2 * lr_end.
    side_by_side("polynomial", 3, 30, {"lr_end": 1e-3}, lrs=(0.2, 0.05), default=0.1)
    side_by_side("polynomial", 3, 30, {"lr_end": 1e-3, "power": 0.5}, lrs=(0.2, 0.05), default=0.1)
    for name in ("cosine_with_min_lr", "cosine_warmup_with_min_lr"):
        side_by_side(name, 3, 30, {"min_lr": 1e-3}, lrs=(0.2, 0.05), default=0.1, steps=50)
    ours = L.get_scheduler("polynomial", optimizer((0.2, 0.05), 0.1), 0, 30, {"lr_end": 1e-3})
    assert str(ours._schedules[0]) == "polynomial(lr=0.2, steps=30, end_lr=0.002)"


def test_edges_of_the_warmup_and_the_run() -> None:
    for w, n in [(0, 1), (1, 1), (0, 2), (1, 2), (7, 7), (9, 7), (6, 7)]:
        side_by_side("linear", w, n)
        side_by_side("cosine_with_restarts", w, n)
        side_by_side("cosine_with_restarts", w, n, {"num_cycles": 2})
        side_by_side("constant_with_warmup", w, None, steps=n + EXTRA)
        side_by_side("cosine", w, n, steps=horizon("cosine", w, n))
        side_by_side(
            "cosine_with_min_lr", w, n, {"min_lr_rate": 0.2}, steps=horizon("cosine", w, n)
        )
        side_by_side("inverse_sqrt", w, None, steps=n + EXTRA)
        if w != n:  # transformers divides by zero at step n when w == n
            side_by_side("polynomial", w, n, {"power": 3.0})
        if n >= w:
            side_by_side("warmup_stable_decay", w, n, {"num_decay_steps": n - w})
    for w in (0, 1, 2, 3):
        steps = horizon("cosine_warmup_with_min_lr", w, 8)
        side_by_side("cosine_warmup_with_min_lr", w, 8, {"min_lr_rate": 0.0}, steps=steps)
        kwargs = {"min_lr_rate": 0.3, "warmup_lr_rate": 0.0}
        side_by_side("cosine_warmup_with_min_lr", w, 8, kwargs, steps=steps)


# ---------------------------------------------------------------------------
# 2. Random argument sets (hypothesis)
# ---------------------------------------------------------------------------

FAST = settings(max_examples=25)
warmups = st.integers(min_value=0, max_value=30)
totals = st.integers(min_value=1, max_value=60)
cycles = st.one_of(
    st.just(0.5),
    st.sampled_from([0.25, 1.0, 1.5, 2.0, 3.0]),
    st.floats(min_value=0.05, max_value=4.0),
)
fractions = st.floats(min_value=0.0, max_value=1.0)
group_lrs = st.sampled_from([LRS, (1.0, 0.25), (3e-4, 1e-3), (0.5, 0.5)])


@FAST
@given(w=warmups, n=totals, lrs=group_lrs)
def test_linear(w: int, n: int, lrs: tuple[float, ...]) -> None:
    side_by_side("linear", w, n, lrs=lrs)


@FAST
@given(w=warmups, n=totals, c=cycles, lrs=group_lrs)
def test_cosine(w: int, n: int, c: float, lrs: tuple[float, ...]) -> None:
    side_by_side("cosine", w, n, {"num_cycles": c}, lrs=lrs, steps=horizon("cosine", w, n, c))


@FAST
@given(
    w=warmups,
    n=totals,
    c=st.one_of(st.integers(min_value=1, max_value=30), st.floats(min_value=0.1, max_value=5.0)),
    lrs=group_lrs,
)
def test_cosine_with_restarts(w: int, n: int, c: float, lrs: tuple[float, ...]) -> None:
    side_by_side("cosine_with_restarts", w, n, {"num_cycles": c}, lrs=lrs)


@FAST
@given(
    w=warmups,
    n=totals,
    power=st.floats(min_value=0.1, max_value=4.0),
    end=st.floats(min_value=0.0, max_value=0.05),
    default=st.sampled_from([None, 0.1, 0.4]),
)
def test_polynomial(w: int, n: int, power: float, end: float, default: float | None) -> None:
    if w == n:
        w += 1
    kwargs = {"power": power, "lr_end": end}
    side_by_side("polynomial", w, n, kwargs, lrs=(0.2, 0.06), default=default)


@FAST
@given(w=warmups, n=totals, timescale=st.one_of(st.none(), st.integers(1, 50)), lrs=group_lrs)
def test_inverse_sqrt(w: int, n: int, timescale: int | None, lrs: tuple[float, ...]) -> None:
    kwargs = None if timescale is None else {"timescale": timescale}
    side_by_side("inverse_sqrt", w, None, kwargs, lrs=lrs, steps=n + EXTRA)


@FAST
@given(w=warmups, n=totals)
def test_constant_and_constant_with_warmup(w: int, n: int) -> None:
    side_by_side("constant", w, n, {"ignored": 1}, steps=n + EXTRA)  # transformers ignores all
    side_by_side("constant_with_warmup", w, n, {"ignored": 1}, steps=n + EXTRA)


@st.composite
def min_lr_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"num_cycles": draw(cycles)}
    if draw(st.booleans()):
        kwargs["min_lr_rate"] = draw(fractions)
    else:
        kwargs["min_lr"] = draw(st.floats(min_value=0.0, max_value=0.1))
    return kwargs


@FAST
@given(w=warmups, n=totals, kwargs=min_lr_kwargs(), default=st.sampled_from([None, 0.2]))
def test_cosine_with_min_lr(w: int, n: int, kwargs: dict[str, Any], default: float | None) -> None:
    steps = horizon("cosine_with_min_lr", w, n, kwargs["num_cycles"])
    side_by_side("cosine_with_min_lr", w, n, kwargs, default=default, steps=steps)


@FAST
@given(
    w=warmups,
    n=totals,
    kwargs=min_lr_kwargs(),
    rate=st.one_of(st.none(), fractions),
    default=st.sampled_from([None, 0.2]),
)
def test_cosine_warmup_with_min_lr(
    w: int, n: int, kwargs: dict[str, Any], rate: float | None, default: float | None
) -> None:
    if rate is not None:
        kwargs["warmup_lr_rate"] = rate
    steps = horizon("cosine_warmup_with_min_lr", w, n, kwargs["num_cycles"])
    side_by_side("cosine_warmup_with_min_lr", w, n, kwargs, default=default, steps=steps)


@FAST
@given(
    w=warmups,
    stable=st.integers(min_value=0, max_value=30),
    decay=st.integers(min_value=0, max_value=30),
    by_total=st.booleans(),
    warmup_type=st.sampled_from(["linear", "cosine", "1-sqrt"]),
    decay_type=st.sampled_from(["linear", "cosine", "1-sqrt"]),
    ratio=st.one_of(st.just(0.0), fractions),
    c=cycles,
    lrs=group_lrs,
)
def test_warmup_stable_decay(
    w: int,
    stable: int,
    decay: int,
    by_total: bool,
    warmup_type: str,
    decay_type: str,
    ratio: float,
    c: float,
    lrs: tuple[float, ...],
) -> None:
    kwargs: dict[str, Any] = {
        "num_decay_steps": decay,
        "warmup_type": warmup_type,
        "decay_type": decay_type,
        "min_lr_ratio": ratio,
        "num_cycles": c,
    }
    if by_total:
        n = w + stable + decay
    else:
        n, kwargs["num_stable_steps"] = None, stable
    side_by_side("warmup_stable_decay", w, n, kwargs, lrs=lrs, steps=w + stable + decay + EXTRA)


# ---------------------------------------------------------------------------
# 3. reduce_lr_on_plateau, the enum, errors
# ---------------------------------------------------------------------------


def test_reduce_lr_on_plateau_is_the_drop_in_with_torchs_values() -> None:
    kwargs = {"patience": 1, "factor": 0.5, "min_lr": [0.01, 0.02], "cooldown": 1}
    theirs_opt, ours_opt = optimizer(), optimizer()
    theirs = transformers.get_scheduler("reduce_lr_on_plateau", theirs_opt, 5, 50, kwargs)
    ours = L.get_scheduler("reduce_lr_on_plateau", ours_opt, 5, 50, kwargs)
    assert isinstance(ours, L.ReduceLROnPlateau)
    assert isinstance(ours, torch.optim.lr_scheduler.ReduceLROnPlateau)  # Trainer's check
    for metric in [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]:
        theirs_opt.step()
        ours_opt.step()
        theirs.step(metric)
        ours.step(metric)
        for a, b in zip(ours_opt.param_groups, theirs_opt.param_groups, strict=True):
            assert close(a["lr"], b["lr"])
    assert ours_opt.param_groups[1]["lr"] == 0.02  # torch's per-group min_lr


def test_transformers_scheduler_type_is_accepted() -> None:
    members = [m for m in SchedulerType if m.value in NAMES]
    assert {m.value for m in members} == set(NAMES)  # every name transformers has but greedy
    needs = {
        "cosine_with_min_lr": {"min_lr_rate": 0.1},
        "cosine_warmup_with_min_lr": {"min_lr_rate": 0.1},
        "warmup_stable_decay": {"num_decay_steps": 5},
    }
    for member in members:
        ours = L.get_scheduler(member, optimizer(), 2, 20, needs.get(member.value))
        by_name = L.get_scheduler(member.value, optimizer(), 2, 20, needs.get(member.value))
        assert type(ours) is type(by_name)
        if isinstance(ours, L.Scheduler):
            assert repr(ours) == repr(by_name)

    class Named:  # any object with a string .value, as an enum member
        value = "linear"

    assert isinstance(L.get_scheduler(Named(), optimizer(), 0, 5), L.Scheduler)


def test_missing_step_counts_say_which_and_how_to_pass_them() -> None:
    for name in ("linear", "cosine", "polynomial", "constant_with_warmup", "inverse_sqrt"):
        with pytest.raises(ValueError, match="num_warmup_steps"):
            transformers.get_scheduler(name, optimizer())
        with pytest.raises(ValueError, match=f"get_scheduler\\('{name}'\\) needs num_warmup_steps"):
            L.get_scheduler(name, optimizer())
    with pytest.raises(ValueError) as err:
        L.get_scheduler("cosine", optimizer(), num_warmup_steps=10)
    assert "get_scheduler('cosine') needs num_training_steps" in str(err.value)
    assert "get_scheduler('cosine', optimizer, num_warmup_steps=W, num_training_steps=N)" in str(
        err.value
    )
    with pytest.raises(ValueError, match="num_training_steps"):
        transformers.get_scheduler("cosine", optimizer(), num_warmup_steps=10)
    with pytest.raises(ValueError, match="num_training_steps, or num_stable_steps"):
        L.get_scheduler("warmup_stable_decay", optimizer(), 10, None, {"num_decay_steps": 5})
    with pytest.raises(ValueError, match=r"scheduler_specific_kwargs=\{'num_decay_steps': N\}"):
        L.get_scheduler("warmup_stable_decay", optimizer(), 10, 100)
    with pytest.raises(ValueError, match="min_lr or min_lr_rate"):
        L.get_scheduler("cosine_with_min_lr", optimizer(), 10, 100)
    with pytest.raises(ValueError, match="not both"):
        L.get_scheduler("cosine_with_min_lr", optimizer(), 10, 100, {"min_lr": 0, "min_lr_rate": 0})
    # Neither needs anything: transformers ignores the step counts.
    assert isinstance(L.get_scheduler("constant", optimizer()), L.Scheduler)
    assert isinstance(L.get_scheduler("reduce_lr_on_plateau", optimizer()), L.ReduceLROnPlateau)


def test_unknown_names_and_arguments() -> None:
    with pytest.raises(ValueError) as err:
        L.get_scheduler("cosine_annealing", optimizer(), 0, 10)
    message = str(err.value)
    assert "unknown scheduler name 'cosine_annealing'" in message
    assert all(repr(name) in message for name in NAMES)
    with pytest.raises(ValueError, match="did you mean 'cosine'"):
        L.get_scheduler("cosin", optimizer(), 0, 10)
    with pytest.raises(ValueError, match=r"GreedyLR.*lrkit\.Adaptive"):
        L.get_scheduler("greedy", optimizer())
    with pytest.raises(TypeError, match="name must be a string"):
        L.get_scheduler(3, optimizer())
    with pytest.raises(TypeError, match=r"unexpected scheduler_specific_kwargs \['power'\]"):
        L.get_scheduler("cosine", optimizer(), 0, 10, {"power": 2.0})
    with pytest.raises(TypeError):  # transformers: a TypeError too
        transformers.get_scheduler("cosine", optimizer(), 0, 10, {"power": 2.0})
    with pytest.raises(TypeError, match="state_dict"):
        L.get_scheduler("linear", optimizer(), 0, 10, {"last_epoch": 4})
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        L.get_scheduler("linear", "adam", 0, 10)


def test_bad_values_name_the_argument() -> None:
    opt = optimizer()
    cases = [
        ("linear", -1, 10, None, "num_warmup_steps must be an integer >= 0, got -1"),
        ("linear", 0, 0, None, "num_training_steps must be an integer >= 1, got 0"),
        ("linear", 2.5, 10, None, "num_warmup_steps must be an integer >= 0, got 2.5"),
        ("polynomial", 0, 10, {"lr_end": 0.5}, r"lr_end \(0.5\) must be smaller"),
        ("polynomial", 0, 10, {"power": 0.0}, "power must be > 0"),
        ("polynomial", 10, 10, None, "must differ from num_warmup_steps"),
        ("cosine_with_min_lr", 0, 10, {"min_lr_rate": 1.5}, r"min_lr_rate must be .* \[0, 1\]"),
        ("cosine_with_min_lr", 0, 10, {"min_lr": 0.5}, r"min_lr must be .* \[0, 0.1\]"),
        ("cosine", 0, 10, {"num_cycles": math.nan}, "num_cycles must be a finite number"),
        ("inverse_sqrt", 5, None, {"timescale": 0}, "timescale must be > 0, got 0"),
        ("warmup_stable_decay", 5, 8, {"num_decay_steps": 5}, r"must be >= num_warmup_steps"),
        ("warmup_stable_decay", 0, 8, {"num_decay_steps": 5, "decay_type": "exp"}, "decay_type"),
        ("warmup_stable_decay", 0, 8, {"num_decay_steps": 5, "min_lr_ratio": -0.1}, "min_lr_ratio"),
    ]
    for name, w, n, kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            L.get_scheduler(name, opt, w, n, kwargs)


def test_wsd_warns_when_the_total_disagrees_with_its_phases() -> None:
    kwargs = {"num_decay_steps": 5, "num_stable_steps": 10}
    with pytest.warns(UserWarning, match="num_stable_steps is used"):
        L.get_scheduler("warmup_stable_decay", optimizer(), 5, 100, kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.get_scheduler("warmup_stable_decay", optimizer(), 5, 20, kwargs)  # consistent: silent


def test_no_spurious_lr_warning_at_build() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.get_scheduler("linear", optimizer(), 20, 10)  # the ramp never reaches the lr
        L.get_scheduler("cosine_warmup_with_min_lr", optimizer(), 0, 10, {"min_lr_rate": 0.1})


# ---------------------------------------------------------------------------
# 4. Resume, pickling, imports
# ---------------------------------------------------------------------------

RESUMED = [
    ("cosine", 10, 60, None),
    ("cosine", 10, 60, {"num_cycles": 1.3}),
    ("cosine_with_restarts", 5, 65, {"num_cycles": 3}),
    ("warmup_stable_decay", 5, 60, {"num_decay_steps": 20, "warmup_type": "1-sqrt"}),
    ("inverse_sqrt", 0, None, None),
]


@pytest.mark.parametrize(("name", "w", "n", "kwargs"), RESUMED)
def test_state_dict_resumes_the_same_sequence(
    name: str, w: int, n: int | None, kwargs: dict[str, Any] | None
) -> None:
    def run(sched: Any, opt: torch.optim.Optimizer, steps: int) -> list[list[float]]:
        out = []
        for _ in range(steps):
            opt.step()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # lrkit: "past the end of the plan"
                sched.step()
            out.append([g["lr"] for g in opt.param_groups])
        return out

    opt = optimizer()
    straight = L.get_scheduler(name, opt, w, n, kwargs)
    want = run(straight, opt, 70)

    opt = optimizer()
    first = L.get_scheduler(name, opt, w, n, kwargs)
    head = run(first, opt, 30)
    buffer = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    opt = optimizer()
    opt.load_state_dict(saved["optimizer"])
    second = L.get_scheduler(name, opt, w, n, kwargs)  # built after loading the optimizer
    second.load_state_dict(saved["scheduler"])
    assert second.last_epoch == 30
    tail = run(second, opt, 40)
    assert head + tail == want


def test_transformers_formula_pickles_and_compares() -> None:
    plan = L.get_scheduler("cosine", optimizer(), 10, 100, {"num_cycles": 0.7})._schedules[0]
    again = pickle.loads(pickle.dumps(plan))
    assert again == plan and again(37) == plan(37)
    assert plan.length is None
    with pytest.raises(ValueError, match="cannot replan"):
        plan.replan(200, at=10)
    with pytest.raises(ValueError, match="scheduler must be one of"):
        TransformersFormula("linear", 0.1, 0, 10)


def test_import_lrkit_torch_does_not_import_transformers(
    fresh_interpreter: subprocess.Popen[str],
) -> None:
    out, err = fresh_interpreter.communicate(timeout=300)
    assert fresh_interpreter.returncode == 0, err
    assert out.strip() == "False"
