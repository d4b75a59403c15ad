"""lrkit.torch.Scheduler with controllers: plateau, guard (rollback), adaptive, replan.

Also the guard in ``lrkit compare`` (a ``guard(...)`` spec is rescued, not
diverged) and the examples of docs/controllers.md.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import pathlib
import re

import numpy as np
import pytest
import torch

import lrkit
from lrkit.torch import Scheduler

# -- a small regression problem, deterministic ---------------------------------

_gen = torch.Generator().manual_seed(0)
X = torch.randn(256, 8, generator=_gen)
Y = X @ torch.randn(8, 1, generator=_gen) + 0.1 * torch.randn(256, 1, generator=_gen)


def full_loss(model: torch.nn.Module) -> float:
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(model(X), Y))


def train(
    lr: float,
    steps: int = 150,
    *,
    guard: bool = True,
    nan_at: tuple[int, ...] = (),
    snapshot_dir: pathlib.Path | None = None,
    max_rollbacks: int = 4,
) -> tuple[torch.nn.Module, Scheduler]:
    """SGD with momentum on X, Y under cosine(lr, steps), optionally guarded."""
    torch.manual_seed(1)
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    kw = {}
    if guard:
        kw = {
            "guard": lrkit.Guard(window=5, max_rollbacks=max_rollbacks),
            "model": model,
            "snapshot_every": 10,
            "snapshot_dir": snapshot_dir,
        }
    sched = Scheduler(opt, lrkit.cosine(lr=lr, steps=steps), **kw)
    batches = torch.Generator().manual_seed(2)
    for t in range(steps):
        idx = torch.randint(0, 256, (32,), generator=batches)
        loss = torch.nn.functional.mse_loss(model(X[idx]), Y[idx])
        if t in nan_at:
            loss = loss * float("nan")  # a NaN batch
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss=loss.item())
    return model, sched


CLEAN = full_loss(train(0.05, guard=False)[0])


def test_a_nan_batch_is_rolled_back_and_the_run_ends_near_a_clean_run() -> None:
    unguarded = train(0.05, guard=False, nan_at=(50,))[0]
    assert math.isnan(full_loss(unguarded))  # the NaN spreads to the weights
    model, sched = train(0.05, nan_at=(50,))
    # back to the last snapshot whose loss passed (every 10 steps): step 40's
    assert sched.rollback_steps == [(50, 40)]
    assert sched.guard.rollbacks == 1 and sched.guard.multiplier == 0.5
    assert full_loss(model) == pytest.approx(CLEAN, rel=0.1)
    assert CLEAN < 0.012  # and clean means trained: the noise floor is 0.01


def test_a_too_high_lr_is_rolled_back_and_cut_until_the_run_recovers() -> None:
    wild = full_loss(train(1.0, guard=False)[0])
    assert not wild < 1e6  # without the guard: blown up (huge or NaN)
    model, sched = train(1.0)
    assert 1 <= sched.guard.rollbacks <= 4
    assert all(step > snap for step, snap in sched.rollback_steps)
    assert sched.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)  # the cosine still ends
    assert full_loss(model) == pytest.approx(CLEAN, rel=0.25)


def test_past_max_rollbacks_a_clear_error() -> None:
    with pytest.raises(lrkit.Diverged, match=r"loss is NaN at step 12, after 2 rollbacks"):
        train(0.05, nan_at=(3, 8, 12), max_rollbacks=2)


def test_snapshots_on_disk_give_the_same_run(tmp_path: pathlib.Path) -> None:
    in_memory = train(1.0)[0]
    on_disk, sched = train(1.0, snapshot_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["guard-good.pt"]
    for a, b in zip(in_memory.parameters(), on_disk.parameters(), strict=True):
        assert torch.equal(a, b)
    assert sched.guard.rollbacks >= 1


def test_guard_spec_as_the_schedule_and_argument_checks() -> None:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    s = Scheduler(opt, "guard(cosine(lr=0.1, steps=10), factor=0.25)", model=model)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    s.step(loss=float("inf"))
    assert s.get_last_lr() == [pytest.approx(0.25 * lrkit.cosine(lr=0.1, steps=10)(1))]
    with pytest.raises(ValueError, match="a guard needs model="):
        Scheduler(opt, "guard(constant(0.1))")
    with pytest.raises(ValueError, match="do not pass guard= too"):
        Scheduler(opt, "guard(constant(0.1))", guard=lrkit.Guard(), model=model)
    with pytest.raises(ValueError, match="guard= takes a guard without a schedule"):
        Scheduler(opt, "constant(0.1)", guard="guard(constant(0.1))", model=model)
    with pytest.raises(ValueError, match="snapshot_every must be an integer >= 1, got 0"):
        Scheduler(opt, "constant(0.1)", guard=lrkit.Guard(), model=model, snapshot_every=0)
    with pytest.raises(ValueError, match="model= and snapshot_dir= are for a guard"):
        Scheduler(opt, "constant(0.1)", model=model)


def test_metric_goes_to_plateau_and_loss_to_the_guard_only() -> None:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    plateau = lrkit.Plateau(lrkit.constant(1.0), patience=0, factor=0.5)
    guard = lrkit.Guard(window=2)
    s = Scheduler(opt, plateau, guard=guard, model=model)
    for _ in range(3):
        opt.step()
        s.step(loss=1.0)  # a flat loss: not a metric
    assert plateau.detector.best is None and guard.state.seen == 3
    for _ in range(3):
        opt.step()
        s.step(1.0)  # a flat metric: cuts from the 2nd observation
    assert guard.state.seen == 3 and plateau.factor_now == 0.25
    assert s.get_last_lr() == [0.25]


# -- resume ----------------------------------------------------------------------


def driver(schedule, guard=None):
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    kw = {"guard": guard, "model": model} if guard is not None else {}
    return opt, Scheduler(opt, schedule, **kw)


def run_driver(opt, sched, items) -> list[float]:
    out = []
    for metric, loss in items:
        opt.step()
        sched.step(metric, loss=loss)
        out.append(sched.get_last_lr()[0])
    return out


def roundtrip(state: dict) -> dict:
    """Through torch.save / torch.load(weights_only=True), as a checkpoint would go."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("cut_at", [3, 12, 25])  # mid-warmup, mid-plateau, after cuts
def test_resume_mid_plateau_is_exact(cut_at: int) -> None:
    def plateau():
        s = lrkit.warmup(lrkit.cosine(lr=0.1, steps=60), steps=5)
        return lrkit.Plateau(s, factor=0.5, patience=2, cooldown=1)

    rng = np.random.default_rng(5)
    items = [(float(v), None) for v in 1.0 + 0.01 * rng.integers(0, 2, 40)]
    expected = run_driver(*driver(plateau()), items)
    opt, sched = driver(plateau())
    head = run_driver(opt, sched, items[:cut_at])
    state = roundtrip(sched.state_dict())
    opt2, resumed = driver(plateau())
    resumed.load_state_dict(state)
    assert resumed.get_last_lr() == sched.get_last_lr()
    assert head + run_driver(opt2, resumed, items[cut_at:]) == expected
    assert min(expected) < 0.5 * max(expected)  # the plateau did cut


def test_resume_keeps_the_guards_rollbacks_and_window() -> None:
    items = [(None, v) for v in [1.0, 1.1, 0.9, float("nan"), 1.0, 0.95, 30.0, 1.0, 0.9]]
    make = lambda: driver("adaptive(cosine(lr=0.1, steps=20))", lrkit.Guard(window=3))  # noqa: E731
    expected = run_driver(*make(), items)
    opt, sched = make()
    head = run_driver(opt, sched, items[:5])
    state = roundtrip(sched.state_dict())
    assert json.loads(json.dumps(state)) == state  # plain data
    opt2, resumed = make()
    resumed.load_state_dict(state)
    assert resumed.guard.rollbacks == 1
    assert head + run_driver(opt2, resumed, items[5:]) == expected
    assert resumed.guard.rollbacks == 2


# -- replan ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "cosine(lr=0.1, steps=100)",
        "wsd(lr=0.1, steps=100, warmup_steps=10, decay_steps=20)",
        "linear(0.1, 0.0, steps=100)",
        "plateau(warmup(cosine(lr=0.1, steps=90), steps=10), factor=0.5, patience=1)",
    ],
)
@pytest.mark.parametrize("new_steps", [60, 250])
def test_replan_through_the_driver_is_continuous_and_survives_a_resume(
    spec: str, new_steps: int
) -> None:
    opt, sched = driver(spec)
    lrs = run_driver(opt, sched, [(1.0, None)] * 40)
    before = sched.get_last_lr()[0]
    sched.replan(new_steps)  # at the current step, 40
    assert abs(sched.get_last_lr()[0] - before) <= 1e-12
    state = roundtrip(sched.state_dict())
    rest = run_driver(opt, sched, [(1.0, None)] * (new_steps + 10 - 40))
    assert all(b <= a + 1e-15 for a, b in itertools.pairwise([before, *rest]))  # decays
    end = rest[new_steps - 41]  # the lr of step new_steps
    assert end == pytest.approx(0.0, abs=1e-12) and rest[-1] == end
    opt2, resumed = driver(spec)  # built with the old plan
    resumed.load_state_dict(state)
    assert resumed.get_last_lr()[0] == before
    assert run_driver(opt2, resumed, [(1.0, None)] * (new_steps + 10 - 40)) == rest
    assert lrs[:39] == run_driver(*driver(spec), [(1.0, None)] * 39)


def test_replan_argument_checks() -> None:
    _, sched = driver("cosine(lr=0.1, steps=10)")
    with pytest.raises(ValueError, match="at must be an integer >= 0, got -1"):
        sched.replan(20, at=-1)


# -- lrkit compare: guard(...) runs are rescued ----------------------------------------


def test_compare_guard_spec_rescues_a_run_that_diverges_without_it() -> None:
    from lrkit.bench.run import RunConfig, RunResult, execute

    plain = execute(RunConfig("quadratic", "sgd", "cosine()", lr=3.0))
    assert plain.status == "diverged" and plain.final is None
    guarded = execute(RunConfig("quadratic", "sgd", "guard(cosine())", lr=3.0))
    assert guarded.status == "rescued" and guarded.rollbacks
    assert guarded.final is not None and guarded.final < 1.0  # its start is ~6
    assert guarded.steps_done == guarded.steps
    assert RunResult.from_dict(json.loads(json.dumps(guarded.to_dict()))).rollbacks == (
        guarded.rollbacks
    )
    ok = execute(RunConfig("quadratic", "sgd", "guard(cosine())", lr=0.3))
    same = execute(RunConfig("quadratic", "sgd", "cosine()", lr=0.3))
    assert ok.status == "ok" and ok.loss == same.loss  # no divergence: the very same run


def test_compare_runs_plateau_and_adaptive_specs() -> None:
    from lrkit.bench.run import RunConfig, execute

    for spec in ["plateau(cosine(), patience=2, factor=0.5)", "adaptive(constant(), up=1.1)"]:
        config = RunConfig("quadratic", "sgd", spec, lr=0.3)
        result = execute(config)
        assert result.status == "ok", result.reason
        assert config.identity()["schedule"].startswith(spec.split("(")[0] + "(")
        assert len(set(result.lr)) > 2  # the controller moved the lr


# -- docs/controllers.md ----------------------------------------------------------------


def test_docs_examples_run_and_print_what_the_page_shows(capsys) -> None:
    page = pathlib.Path(__file__).resolve().parents[1] / "docs" / "controllers.md"
    text = page.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {"__name__": "docs_example"}
    for code in blocks:
        exec(compile(code, str(page), "exec"), namespace)
    printed = capsys.readouterr().out.strip()
    outputs = re.findall(r"Output:\n\n```text\n(.*?)```", text, flags=re.S)
    shown = "\n".join(o.strip() for o in outputs)
    assert printed == shown
