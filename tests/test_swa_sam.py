"""SWA and SAM (SPEC §11): the ``swa(...)`` schedule against torch's SWALR, the averaging
against torch's AveragedModel + update_bn, ``sam(...)`` optimizers against the SAM
update worked out by hand, and both in compare, tune and the docs."""

from __future__ import annotations

import copy
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn
from typer.testing import CliRunner

import lrkit
import lrkit.torch
from lrkit._formulas import NUMPY, lr_at
from lrkit.bench.grid import GridError, expand_grid, make_grid, split_names, summarize
from lrkit.bench.optimizers import get_optimizer
from lrkit.bench.run import RunConfig, execute
from lrkit.bench.tasks import get_task
from lrkit.cli import app
from lrkit.controllers import Plateau
from lrkit.schedules import SWA, swa_start
from strategies import cosines, leaf_schedules, swas

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------
# 1. swa(...) values: torch's SWALR after the start step
# ---------------------------------------------------------------------------


def swalr_reference(
    inner: lrkit.Schedule, start: int, swa_lr: float, anneal_steps: int, anneal: str, n: int
) -> list[float]:
    """The lr of each update: ``inner`` written into the group until ``start``, then
    torch's own SWALR, built at ``start`` and stepped once per update."""
    weight = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([weight], lr=inner(0))
    swalr = None
    lrs = []
    for t in range(n):
        if t <= start:
            opt.param_groups[0]["lr"] = inner(t)
        if t == start:
            swalr = SWALR(opt, swa_lr=swa_lr, anneal_epochs=anneal_steps, anneal_strategy=anneal)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if swalr is not None:
            swalr.step()
    return lrs


INNERS = [
    lrkit.cosine(lr=0.1, steps=100, min_lr=0.01),
    lrkit.constant(0.05),
    lrkit.warmup(lrkit.linear(0.2, 0.0, steps=80), steps=20),
]


@pytest.mark.parametrize("inner", INNERS, ids=str)
@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("anneal_steps", [0, 1, 7, 40])
@pytest.mark.parametrize("swa_lr", [None, 0.02, 0.0])
def test_swa_is_the_inner_schedule_then_torchs_swalr(
    inner: lrkit.Schedule, anneal: str, anneal_steps: int, swa_lr: float | None
) -> None:
    start = 60
    s = lrkit.swa(inner, start=start, swa_lr=swa_lr, anneal_steps=anneal_steps, anneal=anneal)
    target = inner(start) if swa_lr is None else swa_lr
    want = swalr_reference(inner, start, target, anneal_steps, anneal, 130)
    got = s.values(130)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert [s(t) for t in range(130)] == pytest.approx(want, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(lr_at(s, np.arange(130), NUMPY), want, rtol=1e-12, atol=1e-15)
    # Pinned edges: the inner schedule up to start - 1, L0 at start, the target from
    # start + anneal_steps on, for ever.
    assert s(start - 1) == inner(start - 1)
    assert s(start) == (target if anneal_steps == 0 else inner(start))
    assert s(start + anneal_steps) == pytest.approx(target, rel=1e-15, abs=0)
    assert s(start + anneal_steps + 1) == s(10**9) == s.values([10**9])[0]


def test_start_and_anneal_fractions_round_up_as_wsds_decay_steps() -> None:
    inner = lrkit.cosine(lr=1.0, steps=10)
    assert lrkit.swa(inner, start=0.75).start_step == 8  # ceil(7.5)
    assert lrkit.swa(inner, start=0.7).start_step == 7  # 0.7 * 10 = 7.000000000000001
    assert lrkit.swa(inner, start=1e0).start_step == 1  # an integral float is a count
    s = lrkit.swa(lrkit.cosine(lr=1.0, steps=1000), start=0.5, swa_lr=0.1, anneal_steps=0.05)
    assert s.start_step == 500 and s._anneal == 50
    assert s(500) == 0.5 and s(549) > s(550) == s(1000) == 0.1
    assert s.length == 1000 and s._phase_starts() == [(0, "cosine"), (500, "swa"), (550, "hold")]
    # The default: the lr reached at the start is held; nothing to anneal.
    inner = lrkit.cosine(lr=1.0, steps=100)
    held = lrkit.swa(inner)
    assert held.start_step == 75 and held(74) == inner(74)
    assert held(75) == held(99) == held(100) == held(10**9) == inner(75)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": 0}, "swa: start must be an integer >= 1 (a step count) or a float in (0, 1)"),
        ({"start": 0.0}, "swa: start must be an integer >= 1 (a step count) or a float in (0, 1)"),
        ({"start": -3}, "got -3"),
        ({"start": 2.5}, "got 2.5"),
        ({"start": math.nan}, "got nan"),
        ({"start": 101}, "swa: start must be <= the wrapped schedule's length (100), got 101"),
        ({"swa_lr": -0.1}, "swa: swa_lr must be a finite number >= 0, got -0.1"),
        ({"anneal_steps": -1}, "swa: anneal_steps must be an integer >= 0"),
        ({"anneal": "exp"}, "swa: anneal must be one of 'cos', 'linear', got 'exp'"),
        ({"schedule": 0.1}, "swa: schedule must be an lrkit schedule, got 0.1"),
    ],
)
def test_bad_arguments_say_which_value_and_what_is_allowed(
    kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"schedule": lrkit.cosine(lr=0.1, steps=100), **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        lrkit.swa(**args)


def test_a_fraction_of_a_schedule_that_never_ends_needs_the_total() -> None:
    with pytest.raises(ValueError, match=r"start=0\.75 is a fraction .* constant\(lr=0\.1\) never"):
        lrkit.swa(lrkit.constant(0.1))
    with pytest.raises(ValueError, match=r"anneal_steps=0\.05 is a fraction"):
        lrkit.swa(lrkit.constant(0.1), start=10, swa_lr=0.01)
    # Without swa_lr there is nothing to anneal, and counts need no total.
    assert lrkit.swa(lrkit.constant(0.1), start=10)(10**6) == 0.1
    # A known total makes the fractions counts: compare's budget, parse(..., steps=N).
    assert lrkit.parse("swa(constant(), start=0.75)", lr=0.1, steps=200) == lrkit.swa(
        lrkit.constant(0.1), start=150
    )
    filled = lrkit.parse("swa(constant(), swa_lr=0.01)", lr=0.1, steps=200)
    assert str(filled) == "swa(constant(lr=0.1), start=150, swa_lr=0.01, anneal_steps=10)"
    with pytest.raises(ValueError, match="never ends"):
        lrkit.parse("swa(constant(lr=0.1))")


def test_parse_fills_lr_and_steps_through_the_wrapper() -> None:
    s = lrkit.parse("swa(cosine(), start=0.75)", lr=0.1, steps=200)
    assert s == lrkit.swa(lrkit.cosine(lr=0.1, steps=200), start=0.75)
    assert str(s) == "swa(cosine(lr=0.1, steps=200))"  # start=0.75 is the default
    w = lrkit.parse("swa(warmup(cosine(), steps=0.1), start=0.5, swa_lr=0.01)", lr=0.1, steps=200)
    assert w == lrkit.swa(
        lrkit.warmup(lrkit.cosine(lr=0.1, steps=180), steps=20), start=0.5, swa_lr=0.01
    )
    assert w.start_step == 100 and w.length == 200 and swa_start(w) == 100


def test_the_torch_scheduler_fills_a_swa_spec_from_total_steps() -> None:
    weight = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([weight], lr=0.1)
    sched = lrkit.torch.Scheduler(opt, "swa(constant(), start=0.5, swa_lr=0.01)", total_steps=40)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:20] == [0.1] * 20 and lrs[-1] == pytest.approx(0.01, rel=1e-15)
    assert lrs == pytest.approx(
        swalr_reference(lrkit.constant(0.1), 20, 0.01, 2, "cos", 40), rel=1e-12
    )


def test_swa_start_looks_inside_wrappers_and_controllers() -> None:
    s = lrkit.swa(lrkit.cosine(lr=0.1, steps=100), start=30)
    assert swa_start(s) == 30
    assert swa_start(0.5 * s) == 30
    assert swa_start(lrkit.warmup(s, steps=10)) == 40
    assert swa_start(lrkit.join(lrkit.constant(0.1), s, boundaries=[7])) == 37
    assert swa_start(Plateau(s)) == 30
    assert swa_start(lrkit.cosine(lr=0.1, steps=100)) is None
    assert swa_start(Plateau(lrkit.constant(0.1))) is None
    assert swa_start(str(lrkit.warmup(s, steps=10))) == 40  # a spec, as Scheduler takes
    # A join that leaves the swa(...) part before its start never averages.
    assert swa_start(lrkit.join(s, lrkit.constant(0.5), boundaries=[30])) is None
    assert swa_start(lrkit.join(s, lrkit.constant(0.5), boundaries=[31])) == 30


# -- laws ----------------------------------------------------------------------


@given(swas(), st.lists(st.integers(0, 2**40), max_size=20))
def test_swa_laws(s: SWA, extra: list[int]) -> None:
    start = s.start_step
    steps = np.array(sorted({*range(min(start + 3, 60)), start - 1, start, start + 1, *extra}))
    steps = steps[steps >= 0]
    values = s.values(steps)
    assert np.all(np.isfinite(values)) and np.all(values >= 0)
    assert values.tolist() == pytest.approx([s(int(t)) for t in steps], rel=1e-12, abs=1e-300)
    # Before the start: the wrapped schedule, exactly.
    early = steps[steps < start]
    assert s.values(early).tolist() == s.schedule.values(early).tolist()
    # After it: between L0 and the target, which it reaches and holds.
    low, high = sorted((s._from, s._to))
    late = values[steps >= start]
    assert np.all(late >= low * (1 - 1e-12)) and np.all(late <= high * (1 + 1e-12))
    assert s(start + s._anneal) == s(start + s._anneal + 1) == s(2**50) == s._to
    assert s.values([start + s._anneal, 2**50]).tolist() == [s._to, s._to]
    # Round trips: the spec and JSON.
    assert lrkit.parse(str(s)) == s
    assert lrkit.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with np.errstate(all="ignore"):
        formula = lr_at(s, steps, NUMPY)
    np.testing.assert_allclose(formula, values, rtol=1e-9, atol=1e-12 * max(high, 1e-300))


@given(cosines(), st.floats(0.05, 0.95), st.integers(1, 200))
def test_fill_through_the_wrapper_is_the_filled_inner_schedule(
    inner: lrkit.schedules.Cosine, start: float, total: int
) -> None:
    spec = f"swa(cosine(min_lr={inner.min_lr!r}), start={start!r})"
    got = lrkit.parse(spec, lr=inner.lr, steps=total)
    assert got.schedule == lrkit.cosine(lr=inner.lr, steps=total, min_lr=inner.min_lr)
    assert got.start_step == math.ceil(start * total - 1e-9)


@given(leaf_schedules().filter(lambda s: s.length is None), st.integers(1, 10_000))
def test_a_count_start_needs_no_length(inner: lrkit.Schedule, start: int) -> None:
    s = lrkit.swa(inner, start=start)
    assert s.length is None and s(start + 5) == inner(start)


# ---------------------------------------------------------------------------
# 2. sam(...) names
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("sam(sgd)", "sam(sgd)"),
        ("  sam( sgd )", "sam(sgd)"),
        ("sam(adamw,rho=0.05)", "sam(adamw)"),
        ("sam(adamw, rho=5e-2, adaptive=False)", "sam(adamw)"),
        ("sam(adamw,  rho=0.1)", "sam(adamw, rho=0.1)"),
        ("sam(momentum, adaptive=True, rho=1)", "sam(momentum, rho=1.0, adaptive=True)"),
    ],
)
def test_sam_names_are_canonical(text: str, name: str) -> None:
    spec = get_optimizer(text)
    assert spec.name == name and spec.needs_closure and not spec.lr_free
    assert get_optimizer(name) == spec
    config = RunConfig("quadratic", text, "constant()", lr=0.1)
    assert config.optimizer == name
    assert config.key() == RunConfig("quadratic", name, "constant()", lr=0.1).key()


def test_registry_names_and_their_keys_are_unchanged() -> None:
    for name in ("sgd", "adamw", "prodigy"):
        assert get_optimizer(name).name == name and not get_optimizer(name).needs_closure
        assert RunConfig("quadratic", name, "cosine()").identity()["optimizer"] == name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sam(lion)", "sam(lion): unknown base optimizer 'lion'; known: sgd, momentum"),
        ("sam(schedulefree)", "sam(schedulefree): the base optimizer must take an lr"),
        ("sam(sam(sgd))", "sam(...) takes one base optimizer by name first, got sam(sgd)"),
        ("sam()", "sam(...) takes one base optimizer by name first, got nothing"),
        ("sam(sgd, rho=0)", "rho must be a finite number > 0, got 0"),
        ("sam(sgd, rho=-0.1)", "rho must be a finite number > 0, got -0.1"),
        ("sam(sgd, rho='big')", "rho must be a number, got 'big'"),
        ("sam(sgd, rho=__import__('os'))", "rho must be a number, got __import__('os')"),
        ("sam(sgd, adaptive=1)", "adaptive must be True or False, got 1"),
        ("sam(sgd, radius=0.1)", "unknown argument 'radius'; sam(...) takes rho and adaptive"),
        ("sam(sgd, rho=0.1, rho=0.2)", "rho is given twice"),
        ("sam(sgd", "not a sam(...) form"),
        ("lion(sgd)", "unknown optimizer 'lion(sgd)'; sam(...) is the only optimizer"),
        ("sam", "unknown optimizer 'sam'; known optimizers: sgd"),
    ],
)
def test_bad_sam_forms_name_the_bad_value(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        get_optimizer(text)


# ---------------------------------------------------------------------------
# 3. The SAM step: the base optimizer, at the scheduler's lr, on the perturbed gradient
# ---------------------------------------------------------------------------


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters()]


def _adamw(params: Any, lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)


def _momentum(params: Any, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def _sgd(params: Any, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr)


@pytest.mark.parametrize(
    ("name", "base", "rho", "adaptive"),
    [
        ("sam(adamw, rho=0.1)", _adamw, 0.1, False),
        ("sam(momentum)", _momentum, 0.05, False),
        ("sam(sgd, rho=0.5, adaptive=True)", _sgd, 0.5, True),
    ],
)
def test_a_sam_step_is_the_base_step_on_the_gradient_at_the_perturbed_weights(
    name: str, base: Any, rho: float, adaptive: bool
) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(32, 5), torch.randn(32, 1)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
    twin = copy.deepcopy(model)
    opt = get_optimizer(name).create(model.parameters(), 0.05)
    schedule = lrkit.cosine(lr=0.05, steps=6)
    sched = lrkit.torch.Scheduler(opt, schedule)
    reference = base(twin.parameters(), 0.05)

    def loss_of(m: nn.Module) -> torch.Tensor:
        return F.mse_loss(m(x), y)

    for t in range(6):
        assert opt.param_groups[0]["lr"] == schedule(t)
        opt.zero_grad()
        loss_of(model).backward()
        opt.step(lambda: loss_of(model).backward())
        sched.step()
        # By hand: the gradient g at w, the weights moved to w + rho g' / ||g'|| (g' = g,
        # or |w| * g for ASAM, times |w| once more in the move), the gradient there, and
        # the base optimizer's step with it from w at the schedule's lr.
        weights = _params(twin)
        grads = torch.autograd.grad(loss_of(twin), weights)
        with torch.no_grad():
            scaled = [g * w.abs() if adaptive else g for g, w in zip(grads, weights, strict=True)]
            norm = torch.sqrt(sum((s * s).sum() for s in scaled)) + 1e-12
            moved = copy.deepcopy(twin)
            for p, w, g in zip(_params(moved), weights, grads, strict=True):
                p.copy_(w + (w * w if adaptive else 1.0) * g * (rho / norm))
        second = torch.autograd.grad(loss_of(moved), _params(moved))
        for w, g in zip(weights, second, strict=True):
            w.grad = g.clone()
        reference.param_groups[0]["lr"] = schedule(t)
        reference.step()
        for got, want in zip(_params(model), weights, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_sam_without_a_closure_is_a_clear_error() -> None:
    model = nn.Linear(3, 1)
    opt = get_optimizer("sam(sgd)").create(model.parameters(), 0.1)
    model(torch.ones(2, 3)).sum().backward()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"sam\(sgd\) needs opt.step\(closure\)") as err:
        opt.step()
    example = str(err.value).split("\n")[1:]
    assert len(example) == 3 and "opt.step(lambda:" in example[2]
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


# ---------------------------------------------------------------------------
# 4. SAM and SWA in the built-in tasks' loop
# ---------------------------------------------------------------------------


def test_a_sam_run_records_the_schedules_lrs_and_one_update_per_step() -> None:
    config = RunConfig("quadratic", "sam(sgd, rho=0.1)", "cosine()", lr=0.1, budget=0.25)
    result = execute(config)
    assert result.status == "ok", result.reason
    assert result.lr == pytest.approx(lrkit.cosine(lr=0.1, steps=50).values(50), rel=1e-15)
    assert len(result.loss) == 50 and result.ratio_steps == [k - 1 for k in result.eval_steps[1:]]
    plain = execute(RunConfig("quadratic", "sgd", "cosine()", lr=0.1, budget=0.25))
    assert plain.final != result.final  # the perturbed gradient changed the path


def test_the_built_in_sam_loop_is_pytorch_optimizers_sam_stepped_by_hand() -> None:
    """digits with sam(sgd): the run's final val_loss is pytorch_optimizer.SAM's, stepped
    with a closure on the same batches at lrkit's cosine."""
    from pytorch_optimizer import SAM

    steps = 30
    config = RunConfig("digits", "sam(sgd)", "cosine()", lr=0.2, budget=steps / 300)
    result = execute(config)
    assert result.status == "ok", result.reason
    torch.manual_seed(0)
    problem = get_task("digits").build(0)
    model = problem.model
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.2)
    batches = problem.batches(64, torch.Generator().manual_seed(0))
    schedule = lrkit.cosine(lr=0.2, steps=steps)
    for t in range(steps):
        opt.param_groups[0]["lr"] = schedule(t)
        batch = next(batches)
        opt.zero_grad()
        problem.loss(model, batch).backward()
        opt.step(lambda batch=batch: problem.loss(model, batch).backward())
    with torch.no_grad():
        want = problem.evaluate(model.eval())
    assert result.scalars["val_loss"][-1][1] == pytest.approx(want["val_loss"], rel=1e-5)
    assert result.final == pytest.approx(want["val_acc"], abs=1e-9)


def test_a_built_in_swa_run_is_torchs_averaged_model_swalr_and_update_bn() -> None:
    """digits, 60 steps: cosine to step 30, then SWALR to 0.02 over 5 steps, averaging
    from update 30 on: the run's final metric is the averaged weights' one, by hand."""
    steps, start = 60, 30
    spec = "swa(cosine(), start=0.5, swa_lr=0.02, anneal_steps=5)"
    result = execute(RunConfig("digits", "sgd", spec, lr=0.2, budget=steps / 300))
    assert result.status == "ok", result.reason
    problem = get_task("digits").build(0)
    model = problem.model
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    averaged = AveragedModel(model)
    swalr = None
    batches = problem.batches(64, torch.Generator().manual_seed(0))
    lrs = []
    for t in range(steps):
        if t == start:
            swalr = SWALR(opt, swa_lr=0.02, anneal_epochs=5, anneal_strategy="cos")
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        problem.loss(model, next(batches)).backward()
        opt.step()
        if swalr is None:
            cosine.step()
        else:
            averaged.update_parameters(model)
            swalr.step()
    assert result.lr == pytest.approx(lrs, rel=1e-12)
    update_bn([(problem.train[0],)], averaged)
    with torch.no_grad():
        want = problem.evaluate(averaged.module.eval())
        last = problem.evaluate(model.eval())
    assert int(averaged.n_averaged) == steps - start
    assert result.scalars["val_loss"][-1][1] == pytest.approx(want["val_loss"], rel=1e-5)
    assert result.final == pytest.approx(want["val_acc"], abs=1e-9)
    assert want["val_loss"] != pytest.approx(last["val_loss"], rel=1e-4)  # it is an average
    # Before the start the reports are the trained weights' own (nothing averaged yet).
    plain = execute(RunConfig("digits", "sgd", spec.replace("start=0.5", "start=59"), lr=0.2,
                              budget=steps / 300))  # fmt: skip
    assert plain.evals["val_acc"][:8] == result.evals["val_acc"][:8]


# ---------------------------------------------------------------------------
# 5. User tasks: trial.scheduler(opt, model=model), trial.eval_model(model, loader)
# ---------------------------------------------------------------------------

BN_STEPS = 40


def _bn_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(256, 6, generator=g)
    return x, torch.tanh(2 * x[:, :1] - x[:, 1:2])


def _bn_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))


def _bn_loader() -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = _bn_data()
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]


def _bn_train(trial: lrkit.Trial, *, pass_model: bool = True, loader: bool = True) -> float:
    x, y = _bn_data()
    model = _bn_model(trial.seed)
    opt = trial.optimizer(model.parameters())
    sched = trial.scheduler(opt, model=model) if pass_model else trial.scheduler(opt)
    batches = _bn_loader()
    for step in range(trial.steps):
        xb, yb = batches[step % len(batches)]
        loss = F.mse_loss(model(xb), yb)
        trial.log(step, loss=loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        evaluated = trial.eval_model(model, batches if loader else None)
        return F.mse_loss(evaluated(x), y).item()


@lrkit.task(metric="loss", steps=BN_STEPS)
def bn_task(trial: lrkit.Trial) -> float:
    """A BatchNorm regression trained with the trial's optimizer and scheduler."""
    return _bn_train(trial)


@lrkit.task(metric="loss", steps=BN_STEPS)
def bn_task_without_model(trial: lrkit.Trial) -> float:
    """Forgets model= in trial.scheduler."""
    return _bn_train(trial, pass_model=False)


@lrkit.task(metric="loss", steps=BN_STEPS)
def bn_task_without_loader(trial: lrkit.Trial) -> float:
    """Evaluates a BatchNorm model's average without the data update_bn needs."""
    return _bn_train(trial, loader=False)


def test_a_user_task_evaluates_the_average_after_update_bn_as_torch_does() -> None:
    result = execute(RunConfig(bn_task, "sgd", "swa(cosine(), start=0.5)", lr=0.1))
    assert result.status == "ok", result.reason
    # By hand: cosine to update 20, its lr held after; the average of updates 20..39.
    x, y = _bn_data()
    model = _bn_model(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    averaged = AveragedModel(model)
    schedule = lrkit.cosine(lr=0.1, steps=BN_STEPS)
    batches = _bn_loader()
    for step in range(BN_STEPS):
        opt.param_groups[0]["lr"] = schedule(min(step, 20))
        xb, yb = batches[step % len(batches)]
        opt.zero_grad()
        F.mse_loss(model(xb), yb).backward()
        opt.step()
        if step >= 20:
            averaged.update_parameters(model)
    update_bn(batches, averaged)
    with torch.no_grad():
        want = F.mse_loss(averaged.module.eval()(x), y).item()
        plain = F.mse_loss(model.eval()(x), y).item()
    assert result.final == pytest.approx(want, rel=1e-5)
    assert want != pytest.approx(plain, rel=1e-3)
    # Without swa(...) eval_model is the model itself.
    alone = execute(RunConfig(bn_task, "sgd", "cosine()", lr=0.1))
    assert alone.status == "ok" and alone.final != pytest.approx(result.final, rel=1e-3)


#: What poisoned_swa_task saw: each update's weights and the scheduler's rollbacks.
_POISONED: dict[str, Any] = {}


@lrkit.task(metric="loss", steps=30)
def poisoned_swa_task(trial: lrkit.Trial) -> float:
    """A linear fit whose update 20 blows up (inf loss): the guard rolls it back.
    Returns the sum of the weights evaluated (the average's)."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = trial.optimizer(model.parameters())
    sched = trial.scheduler(opt, model=model, snapshot_every=1)
    x = torch.randn(32, 3)
    y = x.sum(dim=1, keepdim=True)
    after: list[torch.Tensor] = []
    for step in range(trial.steps):
        loss = F.mse_loss(model(x), y)
        if step == 20:
            loss = loss * math.inf
        trial.log(step, loss=loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
        after.append(torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone())
        sched.step()
    _POISONED.update(after=after, rollbacks=list(sched.rollback_steps))
    evaluated = trial.eval_model(model)
    return float(torch.nn.utils.parameters_to_vector(evaluated.parameters()).detach().sum())


def test_a_rollback_takes_the_average_back_with_the_weights() -> None:
    # guard(swa(...)): update 20 (after the start, 15) is rolled back; the average must
    # hold neither its NaN weights nor the updates the rollback undid.
    config = RunConfig(
        poisoned_swa_task, "sgd", "guard(swa(constant(), start=0.5), factor=0.5)", lr=0.05
    )
    result = execute(config)
    seen = _POISONED
    assert result.status == "rescued", result.reason
    ((at, back_to),) = seen["rollbacks"]
    assert at == 20 and back_to <= 20
    kept = [w for t, w in enumerate(seen["after"]) if t >= 15 and not back_to <= t <= at]
    assert not torch.isfinite(seen["after"][20]).all()  # the update the guard undid
    want = torch.stack(kept).mean(dim=0)
    assert result.final is not None and math.isfinite(result.final)
    assert result.final == pytest.approx(float(want.sum()), rel=1e-5)


def test_user_task_mistakes_are_error_runs_that_say_what_to_do() -> None:
    no_model = execute(RunConfig(bn_task_without_model, "sgd", "swa(cosine())", lr=0.1))
    assert no_model.status == "error"
    assert "averages the weights (SWA) from step 30 on" in (no_model.reason or "")
    assert "trial.scheduler(optimizer, model=model)" in (no_model.reason or "")
    no_loader = execute(RunConfig(bn_task_without_loader, "sgd", "swa(cosine())", lr=0.1))
    assert no_loader.status == "error"
    assert "the model has BatchNorm" in (no_loader.reason or "")
    no_closure = execute(RunConfig(bn_task, "sam(sgd)", "cosine()", lr=0.1))
    assert no_closure.status == "error"
    assert (no_closure.reason or "").startswith("ValueError: sam(sgd) needs opt.step(closure)")


# ---------------------------------------------------------------------------
# 6. Lists of optimizers and specs; compare and tune
# ---------------------------------------------------------------------------


def test_commas_inside_brackets_do_not_split() -> None:
    assert split_names("sam(adamw, rho=0.05),adam") == ["sam(adamw, rho=0.05)", "adam"]
    assert split_names(["cosine(),warmup(cosine(), steps=10)", "constant()"]) == [
        "cosine()",
        "warmup(cosine(), steps=10)",
        "constant()",
    ]
    assert split_names("multistep(milestones=[10, 20]), wsd(decay_shape='a,b')") == [
        "multistep(milestones=[10, 20])",
        "wsd(decay_shape='a,b')",
    ]
    assert split_names("digits, a.py:task ,,") == ["digits", "a.py:task"]
    for bad, message in [
        ("sam(adamw, rho=0.05", "'(' at position 4 is never closed"),
        ("cosine()),adam", "')' at position 9 closes nothing"),
        ("join(constant(0.1)]", "']' at position 19 closes nothing (expected ')')"),
        ("wsd(decay_shape='x)", "a ' is never closed"),
    ]:
        with pytest.raises(GridError, match=re.escape(message)):
            split_names(bad, "--schedules")


def test_the_grid_names_sam_settings_canonically() -> None:
    grid = make_grid(
        tasks=["quadratic"],
        optimizers=split_names("sam(adamw,rho=0.05),sam(adamw),adam"),
        schedules=split_names("cosine(),swa(cosine(), start=0.75)"),
        lrs=[0.1],
        seeds=1,
    )
    assert grid.optimizers == ("sam(adamw)", "adam")
    assert grid.schedules == ("cosine()", "swa(cosine(), start=0.75)")
    assert len(expand_grid(grid)) == 4


def test_compare_runs_swa_and_sam_and_reports_steps_and_wall_time(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "compare", "--tasks", "quadratic", "--optimizers", "sgd,sam(sgd, rho=0.1)",
            "--schedules", "cosine(),swa(cosine(), start=0.75)", "--lrs", "0.1",
            "--seeds", "1", "--budget", "0.25", "--workers", "0", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "4 runs: 4 run now" in result.stdout
    assert "s/run" in result.stdout and "50 steps a run" in result.stdout
    doc = json.loads((out / "results.json").read_text())
    assert doc["grid"]["optimizers"] == ["sgd", "sam(sgd, rho=0.1)"]
    assert doc["grid"]["schedules"] == ["cosine()", "swa(cosine(), start=0.75)"]
    rows = {(r["optimizer"], r["schedule"]): r for r in doc["summary"]["quadratic"]}
    settings = [(o, s) for o in ("sgd", "sam(sgd, rho=0.1)") for s in doc["grid"]["schedules"]]
    assert set(rows) == set(settings)
    runs = {(r["config"]["optimizer"], r["config"]["schedule"]): r for r in doc["runs"]}
    for key, row in rows.items():
        assert row["steps"] == 50 and row["wall_time"] == runs[key]["wall_time"] > 0
    assert {r["status"] for r in doc["runs"]} == {"ok"}
    page = (out / "report.html").read_text()
    assert "swa(cosine(), start=0.75)" in page and "sam(sgd, rho=0.1)" in page
    assert "wall time (s/run)" in page
    assert "<th>steps</th>" in page


@pytest.mark.parametrize("width", [80, 120])
def test_the_terminal_table_shows_each_settings_cost_whole(width: int) -> None:
    import io

    from rich.console import Console

    from lrkit.bench.grid import SettingSummary
    from lrkit.cli import _print_summary

    rows = [
        SettingSummary(
            "digits", optimizer, spec, 0.1, "val_acc", "max", 0.95, 0.004, 3, 3, 120.0, 1, 12,
            0, state_copies=1.0, steps=300, wall_time=seconds,
        )
        for optimizer, spec, seconds in [
            ("momentum", "cosine()", 0.6125),
            ("sam(momentum, rho=0.1)", "swa(cosine(), start=0.75)", 1.187),
        ]
    ]  # fmt: skip
    console = Console(width=width, record=True, file=io.StringIO(), highlight=False)
    _print_summary(console, {"digits": rows})
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    assert "…" not in text
    assert "300 steps a run" in text
    lines = text.splitlines()
    assert any("s/run" in line for line in lines[:6])  # in the header, short or not
    first, second = (next(line for line in lines if line.lstrip().startswith(k)) for k in "12")
    assert first.split()[-2:] == ["0.61", "1.00"] and second.split()[-2:] == ["1.2", "1.00"]
    # A long name that does not fit is labelled and written out whole under the table.
    assert "O1 = sam(momentum, rho=0.1)" in text or "sam(momentum, rho=0.1)" in second


def test_summary_wall_time_is_the_best_lrs_mean() -> None:
    runs = [
        execute(RunConfig("quadratic", "sgd", "constant()", lr=lr, seed=seed, budget=0.1))
        for lr in (0.01, 0.1)
        for seed in (0, 1)
    ]
    (row,) = summarize(runs)["quadratic"]
    best = [r for r in runs if r.config["lr"] == row.lr]
    assert row.steps == 20
    assert row.wall_time == pytest.approx(sum(r.wall_time for r in best) / 2, rel=1e-12)


def test_tune_and_the_python_api_split_lists_outside_parentheses(tmp_path: Path) -> None:
    from lrkit.bench.tune import TuneError

    results = lrkit.tune(
        "quadratic",
        optimizers="sam(sgd, rho=0.1),sgd",
        schedules="cosine(),swa(cosine(), start=0.5)",
        lr_range=(0.01, 0.1),
        trials=2,
        budget=0.1,
        workers=0,
        out=tmp_path / "tune",
        pruner="none",
    )
    space = json.loads((tmp_path / "tune" / "results.json").read_text())["space"]
    assert space["optimizers"] == ["sam(sgd, rho=0.1)", "sgd"]
    assert space["schedules"] == ["cosine()", "swa(cosine(), start=0.5)"]
    assert len(results.trials) == 2
    with pytest.raises(TuneError, match=r"--optimizers: unbalanced brackets"):
        lrkit.tune("quadratic", optimizers="sam(sgd", schedules="cosine()", lr_range=(0.01, 0.1),
                   trials=1, out=tmp_path / "t2")  # fmt: skip
    with pytest.raises(GridError, match=r"--schedules: unbalanced brackets"):
        lrkit.compare("quadratic", schedules="cosine(", out=tmp_path / "c")


def test_the_lr_finder_refuses_sam_and_compare_auto_takes_its_bases_lrs(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["find-lr", "--task", "quadratic", "--optimizer", "sam(sgd)"])
    assert done.exit_code == 2
    assert "'sam(sgd)' takes two gradients a step" in done.stderr
    assert "run it with --optimizer sgd" in done.stderr
    # compare --lrs auto: sam(adam) runs the lrs centred on adam's range test (run once).
    result = lrkit.compare(
        "quadratic", optimizers="adam,sam(adam, rho=0.1)", schedules="constant()", lrs="auto",
        seeds=1, budget=0.1, workers=0, out=tmp_path / "c",
    )  # fmt: skip
    assert "--lrs auto: sam(adam, rho=0.1) takes the lrs found for adam, whose step it takes" in (
        result.notes
    )
    assert list(result.grid["finder"]) == ["quadratic/adam"]
    lrs: dict[str, set[float]] = {}
    for run in result.runs:
        lrs.setdefault(run.config["optimizer"], set()).add(run.config["lr"])
    assert lrs["adam"] == lrs["sam(adam, rho=0.1)"] and len(lrs["adam"]) > 1
    assert not result.errors


def test_an_optimizers_package_can_be_imported_ahead_of_its_run() -> None:
    """execute() imports it before the run's clock starts (pytorch-optimizer takes seconds)."""
    import dataclasses
    import sys

    spec = get_optimizer("sam(sgd)")
    assert spec.package == "pytorch_optimizer" and get_optimizer("sgd").package is None
    spec.import_package()
    assert "pytorch_optimizer" in sys.modules
    missing = dataclasses.replace(spec, package="no_such_module_here")
    missing.import_package()  # a missing one is create()'s clear ImportError, not this
    assert "no_such_module_here" not in sys.modules
    from lrkit.bench.optimizers import _package_import

    with pytest.raises(ImportError, match=r"optimizer 'sam' needs the 'pytorch-optimizer' package"):
        _package_import("sam", "no_such_module_here", "pytorch-optimizer", "torch")
    with pytest.raises(ImportError, match=re.escape("pip install 'lrkit[torch]'")):
        _package_import("sam", "no_such_module_here", "pytorch-optimizer", "torch")


def test_auto_takes_a_sam_optimizer() -> None:
    found = lrkit.auto("quadratic", optimizer="sam(sgd)", max_cost=1.5)
    assert found.optimizer == "sam(sgd)" and found.status == "ok"
    assert found.run.config["optimizer"] == "sam(sgd)"


# ---------------------------------------------------------------------------
# 7. docs/swa_sam.md runs and prints what it shows
# ---------------------------------------------------------------------------


def test_the_docs_page_runs_and_prints_what_it_shows(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = ROOT / "docs" / "swa_sam.md"
    text = page.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)  # the examples write their reports here
    for code in blocks:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(code, str(page), "exec"), {"__name__": "docs_example"})
    printed = capsys.readouterr().out.strip()
    shown = re.findall(r"Output:\n\n```text\n(.*?)```", text, flags=re.S)
    assert shown
    assert printed == "\n".join(s.strip() for s in shown)
