"""lrkit.torch.create_scheduler_v2 against timm's create_scheduler_v2 itself, side by side.

timm is installed without its dependencies (``pip install --no-deps timm``): its
top-level ``__init__`` imports its models, which need torchvision, and
torchvision would replace the pinned torch. ``timm/scheduler/`` needs only
torch, so :func:`timm_scheduler` imports that subpackage from the installed
files under timm's real package spec with the top-level ``__init__`` left
unexecuted (no module is faked), then takes ``timm`` out of ``sys.modules``
again.

Each case builds two identical optimizers (SGD, two param groups with
different lrs, the second sometimes with timm's ``lr_scale``), one driven by
timm's scheduler (``step(epoch)`` or ``step_update(num_updates)``, as timm's
train loop) and one by lrkit's (``step()``), steps both past the end and
compares both groups' lrs at every step: 1e-12 relative, or 1e-15 absolute
near 0, and the ``num_epochs`` both return.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lrkit
import lrkit.torch as L
from lrkit.torch.migrate import TIMM_NAMES, TimmFormula

REL, ABS = 1e-12, 1e-15
EXTRA = 6  # steps compared past timm's num_epochs


def timm_scheduler() -> ModuleType:
    """timm.scheduler from the installed package, without timm's top-level __init__."""
    spec = importlib.util.find_spec("timm")
    assert spec is not None, "timm is not installed: pip install --no-deps timm"
    saved = {k: v for k, v in sys.modules.items() if k == "timm" or k.startswith("timm.")}
    sys.modules["timm"] = importlib.util.module_from_spec(spec)  # timm's own spec, unexecuted
    try:
        return importlib.import_module("timm.scheduler")
    finally:
        for k in [k for k in sys.modules if k == "timm" or k.startswith("timm.")]:
            del sys.modules[k]
        sys.modules.update(saved)


TIMM = timm_scheduler()


def optimizer(lrs: tuple[float, ...], scale: float | None) -> torch.optim.SGD:
    groups: list[dict[str, Any]] = [
        {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs
    ]
    if scale is not None:
        groups[-1]["lr_scale"] = scale
    return torch.optim.SGD(groups, lr=lrs[0])


def close(ours: float, theirs: float) -> bool:
    return abs(ours - theirs) <= max(REL * abs(theirs), ABS)


def side_by_side(
    kwargs: dict[str, Any], lrs: tuple[float, ...] = (0.1, 0.03), scale: float | None = None
) -> L.Scheduler:
    """Run timm's and lrkit's schedulers together; assert equal lrs at every step."""
    theirs_opt, ours_opt = optimizer(lrs, scale), optimizer(lrs, scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm: "will have no effect" for t_initial=1
        theirs, their_epochs = TIMM.create_scheduler_v2(theirs_opt, **kwargs)
    ours, our_epochs = L.create_scheduler_v2(ours_opt, **kwargs)
    assert our_epochs == their_epochs, kwargs
    assert isinstance(ours, L.Scheduler)
    for plan in ours._schedules:
        if not isinstance(plan, TimmFormula):  # a real lrkit spec
            assert lrkit.parse(str(plan)) == plan
    per_update = not kwargs.get("step_on_epochs", True)
    steps = their_epochs * (kwargs["updates_per_epoch"] if per_update else 1) + EXTRA
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lrkit: "past the end of the plan"
        for t in range(steps + 1):
            if t:
                theirs_opt.step()
                ours_opt.step()
                if per_update:
                    theirs.step_update(t)
                else:
                    theirs.step(t)
                ours.step()
            pairs = zip(ours_opt.param_groups, theirs_opt.param_groups, strict=True)
            for g, (a, b) in enumerate(pairs):
                assert close(a["lr"], b["lr"]), (
                    f"{kwargs} step {t} group {g}: lrkit {a['lr']!r} timm {b['lr']!r}; "
                    f"plan {ours._schedules[g]}"
                )
    return ours


# ---------------------------------------------------------------------------
# 1. Pinned configurations and the lrkit spec shown (docs/torch.md's table)
# ---------------------------------------------------------------------------

PINNED = [
    (
        {"sched": "cosine", "num_epochs": 30, "warmup_epochs": 3, "warmup_prefix": True},
        "warmup(cosine(lr=0.1, steps=30), steps=3, start_lr=1e-05)",
    ),
    (
        {"sched": "cosine", "num_epochs": 10, "cycle_limit": 3, "cycle_decay": 0.5},
        "join(cosine_restarts(lr=0.1, period=10, decay=0.5), constant(lr=0.0), boundaries=[30])",
    ),
    (
        {"sched": "poly", "num_epochs": 20, "decay_rate": 2.0, "min_lr": 1e-4},
        "polynomial(lr=0.1, steps=20, power=2.0, end_lr=0.0001)",
    ),
    (
        {"sched": "step", "decay_epochs": 5, "decay_rate": 0.5, "num_epochs": 20},
        "step_decay(lr=0.1, step_size=5)",
    ),
    (
        {"sched": "multistep", "decay_milestones": [5, 12], "num_epochs": 20},
        "multistep(lr=0.1, milestones=[4, 11])",
    ),
    (
        {"sched": "constant", "warmup_epochs": 4, "num_epochs": 10},
        "warmup(constant(lr=0.1), steps=4, start_lr=1e-05)",
    ),
    (
        {"sched": "wsd", "num_epochs": 25, "warmup_epochs": 5, "warmup_lr": 0.0},
        "warmup(wsd(lr=0.1, steps=20, decay_steps=4), steps=5)",
    ),
]


@pytest.mark.parametrize(("kwargs", "spec"), PINNED)
def test_pinned_configurations_match_timm_and_show_their_spec(
    kwargs: dict[str, Any], spec: str
) -> None:
    ours = side_by_side(kwargs, lrs=(0.1,))
    assert str(ours._schedules[0]) == spec


FORMULAS = [
    {"sched": "cosine", "num_epochs": 20, "warmup_epochs": 3},  # the cosine counts the warmup
    {"sched": "cosine", "num_epochs": 8, "cycle_limit": 3, "cycle_mul": 2.0, "min_lr": 0.01},
    {"sched": "cosine", "num_epochs": 20, "k_decay": 2.0},
    {"sched": "tanh", "num_epochs": 20, "warmup_epochs": 3},
    {"sched": "tanh", "num_epochs": 20, "warmup_epochs": 3, "warmup_prefix": True},
    {"sched": "step", "decay_epochs": 2.5, "decay_rate": 0.5, "num_epochs": 20},
    {"sched": "multistep", "decay_milestones": [1, 4], "num_epochs": 10},  # decays at step 0
    {"sched": "rsqrt", "num_epochs": 30, "warmup_epochs": 4},
    {"sched": "wsd", "num_epochs": 30, "decay_fn": "exp", "decay_epochs": 10},
]


@pytest.mark.parametrize("kwargs", FORMULAS)
def test_what_no_lrkit_spec_expresses_runs_timms_formula(kwargs: dict[str, Any]) -> None:
    ours = side_by_side(kwargs)
    plan = ours._schedules[0]
    assert isinstance(plan, TimmFormula)
    assert str(plan).startswith(f"timm({kwargs['sched']!r}, lr=0.1")
    assert [plan(t) for t in range(60)] == list(plan.values(60))


def test_step_zero_is_what_timms_constructor_sets() -> None:
    # tanh's formula at 0 is slightly below the lr; timm's constructor sets the lr itself.
    plan = side_by_side({"sched": "tanh", "num_epochs": 10}, lrs=(0.1,))._schedules[0]
    assert plan(0) == 0.1 > plan.values([0, 1])[1]


# ---------------------------------------------------------------------------
# 2. Random argument sets (hypothesis): every name, per epoch and per update
# ---------------------------------------------------------------------------

FAST = settings(max_examples=30, deadline=None)


@st.composite
def common(draw: st.DrawFn, sched: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "sched": sched,
        "num_epochs": draw(st.integers(1, 25)),
        "warmup_epochs": draw(st.integers(0, 6)),
        "warmup_prefix": draw(st.booleans()),
        "warmup_lr": draw(st.sampled_from([1e-5, 0.0, 0.05, 0.2])),
        "min_lr": draw(st.sampled_from([0.0, 1e-5, 0.02, 0.2])),
        "cooldown_epochs": draw(st.integers(0, 3)),
    }
    if not draw(st.booleans()):
        kwargs["step_on_epochs"] = False
        kwargs["updates_per_epoch"] = draw(st.integers(1, 4))
    return kwargs


groups = st.tuples(
    st.sampled_from([(0.1, 0.03), (1.0, 0.25), (3e-4, 1e-3)]),
    st.sampled_from([None, 0.5, 1.0]),
)


def cycles(draw: st.DrawFn, kwargs: dict[str, Any], k: bool) -> None:
    kwargs["cycle_mul"] = draw(st.sampled_from([1.0, 1.0, 2.0, 1.5]))
    kwargs["cycle_decay"] = draw(st.sampled_from([0.1, 0.5, 1.0]))
    kwargs["cycle_limit"] = draw(st.integers(1, 3))
    if k:
        kwargs["k_decay"] = draw(st.sampled_from([1.0, 1.0, 0.5, 2.0]))


@FAST
@given(data=st.data(), g=groups)
def test_cosine(data: st.DataObject, g: tuple[Any, Any]) -> None:
    kwargs = data.draw(common("cosine"))
    cycles(data.draw, kwargs, k=True)
    side_by_side(kwargs, *g)


@FAST
@given(data=st.data(), g=groups)
def test_tanh(data: st.DataObject, g: tuple[Any, Any]) -> None:
    kwargs = data.draw(common("tanh"))
    cycles(data.draw, kwargs, k=False)
    side_by_side(kwargs, *g)


@FAST
@given(data=st.data(), g=groups, power=st.sampled_from([0.1, 0.5, 1.0, 2.0]))
def test_poly(data: st.DataObject, g: tuple[Any, Any], power: float) -> None:
    kwargs = data.draw(common("poly"))
    cycles(data.draw, kwargs, k=True)
    if kwargs["cycle_mul"] != 1 and kwargs["k_decay"] != 1:
        kwargs["k_decay"] = 1.0  # timm: (1 - x) ** power of a float x just above 1 is complex
    side_by_side({**kwargs, "decay_rate": power}, *g)


@FAST
@given(
    data=st.data(),
    g=groups,
    every=st.sampled_from([1, 3, 7, 2.5, 90]),
    rate=st.sampled_from([0.1, 0.5, 1.0, 0.0]),
)
def test_step_and_constant(
    data: st.DataObject, g: tuple[Any, Any], every: float, rate: float
) -> None:
    kwargs = data.draw(common("step"))
    side_by_side({**kwargs, "decay_epochs": every, "decay_rate": rate}, *g)
    side_by_side({**kwargs, "sched": "constant"}, *g)


@FAST
@given(
    data=st.data(),
    g=groups,
    milestones=st.lists(st.integers(1, 30), max_size=4, unique=True).map(sorted),
    rate=st.sampled_from([0.1, 0.5, 2.0]),
)
def test_multistep(
    data: st.DataObject, g: tuple[Any, Any], milestones: list[int], rate: float
) -> None:
    kwargs = data.draw(common("multistep"))
    side_by_side({**kwargs, "decay_milestones": milestones, "decay_rate": rate}, *g)


@FAST
@given(
    data=st.data(),
    g=groups,
    sched=st.sampled_from(["wsd", "rsqrt"]),
    decay=st.sampled_from([None, 0.5, 0.3, 1, 3]),
    fn=st.sampled_from([None, "linear", "1-sqrt", "cosine", "power", "exp"]),
    timescale=st.sampled_from([None, 2, 5.5]),
)
def test_wsd_and_rsqrt(
    data: st.DataObject,
    g: tuple[Any, Any],
    sched: str,
    decay: float | None,
    fn: str | None,
    timescale: float | None,
) -> None:
    kwargs = data.draw(common(sched))
    kwargs["num_epochs"] += kwargs["warmup_epochs"] + 3  # room for the decay
    if timescale is None and kwargs["warmup_epochs"] == 0:
        timescale = 4
    extra = {"decay_epochs": decay, "decay_fn": fn, "stable_timescale": timescale}
    side_by_side({**kwargs, **extra}, *g)


def test_none_returns_none_and_timms_epochs() -> None:
    for prefix in (False, True):
        kwargs = {"sched": "none", "num_epochs": 12, "warmup_epochs": 3, "warmup_prefix": prefix}
        theirs = TIMM.create_scheduler_v2(optimizer((0.1,), None), **kwargs)
        assert L.create_scheduler_v2(optimizer((0.1,), None), **kwargs) == theirs


def test_plateau_is_the_drop_in_with_timms_values() -> None:
    kwargs = {"sched": "plateau", "patience_epochs": 1, "decay_rate": 0.5, "min_lr": 0.01}
    metrics = [0.1, 0.2, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    for mode in ("max", "min"):
        theirs_opt, ours_opt = optimizer((0.1, 0.03), 0.5), optimizer((0.1, 0.03), 0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # timm deprecates it
            theirs, n = TIMM.create_scheduler_v2(theirs_opt, plateau_mode=mode, **kwargs)
        ours, m = L.create_scheduler_v2(ours_opt, plateau_mode=mode, **kwargs)
        assert isinstance(ours, L.ReduceLROnPlateau) and n == m
        for epoch, metric in enumerate(metrics, 1):
            theirs_opt.step()
            ours_opt.step()
            theirs.step(epoch, metric)
            ours.step(metric)
            for a, b in zip(ours_opt.param_groups, theirs_opt.param_groups, strict=True):
                assert close(a["lr"], b["lr"]), (mode, epoch)


# ---------------------------------------------------------------------------
# 3. Signature, errors
# ---------------------------------------------------------------------------


def test_signature_and_defaults_are_timms() -> None:
    import inspect

    theirs = inspect.signature(TIMM.create_scheduler_v2).parameters
    ours = inspect.signature(L.create_scheduler_v2).parameters
    assert list(ours) == list(theirs)
    for name, p in theirs.items():
        assert ours[name].default == p.default, name
    assert set(TIMM_NAMES) >= {"cosine", "tanh", "step", "multistep", "plateau", "poly"}


def test_errors_name_the_argument() -> None:
    opt = optimizer((0.1,), None)
    with pytest.raises(ValueError, match=r"unknown scheduler name 'cosin' \(did you mean 'cosine'"):
        L.create_scheduler_v2(opt, "cosin")
    with pytest.raises(ValueError, match=r"noise=\[0.5\] is not supported"):
        L.create_scheduler_v2(opt, "cosine", noise=[0.5])
    with pytest.raises(ValueError, match="needs updates_per_epoch"):
        L.create_scheduler_v2(opt, "cosine", step_on_epochs=False)
    cases = [
        ({"num_epochs": 0}, "num_epochs must be an integer >= 1, got 0"),
        ({"warmup_epochs": -1}, "warmup_epochs must be an integer >= 0, got -1"),
        ({"min_lr": -1.0}, r"min_lr must be a finite number in \[0, inf\], got -1.0"),
        ({"cycle_mul": 0.0}, "cycle_mul must be > 0, got 0.0"),
        ({"sched": "step", "decay_epochs": 0}, "decay_epochs must be > 0, got 0"),
        ({"sched": "multistep", "decay_milestones": [5, 3]}, "must be increasing"),
        ({"sched": "wsd", "num_epochs": 10, "decay_epochs": 20}, r"decay \(20 steps\)"),
        ({"sched": "rsqrt"}, "stable_timescale must be > 0"),
        ({"sched": "wsd", "decay_fn": "sqrt"}, "decay_fn must be one of"),
        ({"sched": "plateau", "plateau_mode": "low"}, "plateau_mode must be 'min' or 'max'"),
        ({"sched": "plateau", "warmup_epochs": 2}, "warmup_epochs=2"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            L.create_scheduler_v2(opt, **{"sched": "cosine", **kwargs})
    with pytest.raises(TypeError, match="a callable has no lrkit spec"):
        L.create_scheduler_v2(opt, "wsd", decay_fn=lambda x: 1 - x)
    with pytest.raises(TypeError, match="sched must be a string"):
        L.create_scheduler_v2(opt, 3)  # type: ignore[arg-type]


def test_a_shrinking_cycle_series_holds_min_lr_where_timm_fails() -> None:
    # cycle_mul < 1: the cycles sum to t_initial / (1 - cycle_mul); past that timm takes
    # the log of a negative number (a math domain error), lrkit holds min_lr.
    kwargs = {"sched": "cosine", "num_epochs": 10, "cycle_mul": 0.5, "cycle_limit": 50}
    ours, _ = L.create_scheduler_v2(optimizer((0.1,), None), min_lr=0.01, **kwargs)
    assert ours._schedules[0](25) == 0.01
    theirs, _ = TIMM.create_scheduler_v2(optimizer((0.1,), None), min_lr=0.01, **kwargs)
    with pytest.raises(ValueError, match="math domain"):
        theirs.step(25)


def test_state_dict_resumes_and_timm_formula_pickles() -> None:
    import pickle

    kwargs = {"sched": "tanh", "num_epochs": 20, "warmup_epochs": 3, "min_lr": 1e-3}

    def run(sched: Any, opt: torch.optim.Optimizer, steps: int) -> list[list[float]]:
        out = []
        for _ in range(steps):
            opt.step()
            sched.step()
            out.append([g["lr"] for g in opt.param_groups])
        return out

    opt = optimizer((0.1, 0.03), 0.5)
    want = run(L.create_scheduler_v2(opt, **kwargs)[0], opt, 25)
    opt = optimizer((0.1, 0.03), 0.5)
    first = L.create_scheduler_v2(opt, **kwargs)[0]
    head = run(first, opt, 10)
    state = first.state_dict()
    opt = optimizer((0.1, 0.03), 0.5)
    second = L.create_scheduler_v2(opt, **kwargs)[0]
    second.load_state_dict(state)
    assert head + run(second, opt, 15) == want
    plan = second._schedules[1]
    assert isinstance(plan, TimmFormula)
    again = pickle.loads(pickle.dumps(plan))
    assert again == plan and again(7) == plan(7)
    with pytest.raises(ValueError, match="scheduler must be one of"):
        TimmFormula("plateau", 0.1)
