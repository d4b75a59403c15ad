"""The lr finder on built-in tasks: what it sweeps, its cache, and --lrs auto grids."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lrkit.bench.find import (
    FINDER_FORMAT,
    FinderCache,
    FinderSettings,
    LrFreeError,
    auto_lrs,
    centred_lrs,
    result_to_dict,
    suggest_lr,
)
from lrkit.bench.grid import AUTO, GridError, expand_grid, is_auto, make_grid, with_pair_lrs
from lrkit.bench.run import RunConfig, execute
from lrkit.bench.tasks import get_task

# --------------------------------------------------------------------------
# suggest_lr: the very model, optimizer and batches of a run
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "optimizer"), [("digits", "momentum"), ("quadratic", "adamw")])
def test_the_sweep_trains_what_execute_trains(task: str, optimizer: str) -> None:
    # A ramp from lr to lr * (1 + 1e-12) is a constant lr: the sweep's losses are then
    # those of a constant-lr run of execute with the same seed, step for step.
    steps, lr, seed = 30, 1e-3, 1
    result = suggest_lr(
        task, optimizer, seed=seed, min_lr=lr, max_lr=lr * (1 + 1e-12), num_steps=steps
    )
    run = execute(
        RunConfig(
            task, optimizer, "constant()", lr=lr, seed=seed, budget=steps / get_task(task).steps
        )
    )
    assert run.status == "ok" and run.steps_done == steps
    assert result.updates == steps
    assert result.losses[0] == run.loss[0]  # the same initial model on the same first batch
    np.testing.assert_allclose(result.losses, run.loss, rtol=1e-5)
    # ... and another seed is another run
    other = suggest_lr(task, optimizer, seed=seed + 1, min_lr=lr, max_lr=lr * 2, num_steps=steps)
    assert other.losses[0] != result.losses[0]


def test_suggest_lr_is_deterministic_and_leaves_the_global_rngs_alone() -> None:
    torch.manual_seed(123)
    random.seed(456)
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    a = suggest_lr("quadratic", "momentum", num_steps=60)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == python_state
    b = suggest_lr("quadratic", "momentum", num_steps=60)
    assert a.suggestion == b.suggestion
    np.testing.assert_array_equal(a.losses, b.losses)
    assert 0 < a.updates <= 60
    assert math.isfinite(a.suggestion) and a.interval[0] <= a.suggestion <= a.interval[1]


def test_repeats_and_method_are_passed_on() -> None:
    result = suggest_lr("quadratic", "adamw", num_steps=40, repeats=2, method="minimum")
    assert result.method == "minimum"
    assert len(result.runs) == 2 and len(result.run_suggestions) == 2
    assert result.updates == sum(len(r) for r in result.runs) <= 80


def test_suggest_lr_errors() -> None:
    with pytest.raises(LrFreeError, match="'prodigy' is learning-rate free"):
        suggest_lr("quadratic", "prodigy")
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        suggest_lr("nope", "sgd")
    with pytest.raises(ValueError, match="unknown optimizer 'nope'"):
        suggest_lr("quadratic", "nope")
    with pytest.raises(ValueError, match="num_steps must be an integer >= 2, got 1"):
        suggest_lr("quadratic", "sgd", num_steps=1)


def test_result_to_dict_is_strict_json() -> None:
    result = suggest_lr("rosenbrock", "sgd", num_steps=30)
    data = result_to_dict(result)
    text = json.dumps(data, allow_nan=False)  # raises on NaN/inf
    back = json.loads(text)
    assert len(back["lrs"]) == len(back["losses"]) == len(result.losses)
    assert back["updates"] == result.updates
    assert back["suggestion"] == (result.suggestion if math.isfinite(result.suggestion) else None)


# --------------------------------------------------------------------------
# centred_lrs
# --------------------------------------------------------------------------


def test_centred_lrs_values() -> None:
    assert centred_lrs(0.01) == [0.001, 0.00316, 0.01, 0.0316, 0.1]
    assert centred_lrs(2e-4, points=4, spacing=1.0) == [6.32e-06, 6.32e-05, 0.000632, 0.00632]
    assert centred_lrs(0.5, points=1) == [0.5]


@given(
    st.floats(1e-9, 1e3),
    st.integers(1, 9),
    st.sampled_from([0.25, 0.5, 1.0]),
)
def test_centred_lrs_are_centred_and_evenly_spaced(s: float, points: int, spacing: float) -> None:
    lrs = centred_lrs(s, points, spacing)
    assert len(lrs) == points
    logs = np.log10(lrs)
    assert np.all(np.diff(logs) > 0)
    np.testing.assert_allclose(np.diff(logs), spacing, atol=0.005)  # 3 significant digits
    assert abs(logs.mean() - math.log10(s)) < 0.005


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.0,), "suggestion must be a finite number > 0, got 0.0"),
        ((math.nan,), "suggestion must be a finite number > 0, got nan"),
        ((0.1, 0), "points must be an integer >= 1, got 0"),
        ((0.1, 5, -0.5), "spacing must be a finite number > 0, got -0.5"),
    ],
)
def test_centred_lrs_errors(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        centred_lrs(*args)


# --------------------------------------------------------------------------
# FinderCache and auto_lrs
# --------------------------------------------------------------------------


class Fake:
    """A stand-in for suggest_lr that counts its calls and returns a fixed suggestion."""

    def __init__(self, suggestion: float = 0.02) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.suggestion = suggestion

    def __call__(self, task: str, optimizer: str, **settings: Any) -> Any:
        self.calls.append((task, optimizer, settings))
        return _fake_result(self.suggestion)


def _fake_result(suggestion: float) -> Any:
    from lrkit.torch import FinderResult

    lrs = np.array([1e-3, 1e-2])
    return FinderResult(
        suggestion=suggestion,
        lrs=lrs,
        losses=np.array([1.0, 0.5]),
        smoothed=np.array([1.0, 0.7]),
        interval=(suggestion / 2, suggestion),
        confidence=0.9 if math.isfinite(suggestion) else 0.0,
        reason="fake" if math.isfinite(suggestion) else "too few points: fake",
        method="default",
        stopped=None,
        updates=2,
    )


def test_the_cache_computes_once_and_a_new_cache_on_the_file_reuses_it(tmp_path: Path) -> None:
    path = tmp_path / "runs.finder.json"
    fake = Fake(0.02)
    cache = FinderCache(path)
    entry = cache.get("quadratic", "sgd", compute=fake)
    assert entry["suggestion"] == 0.02 and entry["interval"] == [0.01, 0.02]
    assert entry["identity"]["format"] == FINDER_FORMAT
    assert fake.calls == [("quadratic", "sgd", FinderSettings().to_dict())]
    assert cache.get("quadratic", "sgd", compute=fake) == entry and len(fake.calls) == 1
    # A fresh cache on the same file: nothing recomputed.
    again = FinderCache(path)
    assert again.get("quadratic", "sgd", compute=fake) == entry
    assert len(fake.calls) == 1 and again.computed == 0
    assert json.loads(path.read_text())["entries"]["quadratic/sgd"]["suggestion"] == 0.02
    # Other settings, another pair: computed.
    FinderCache(path, FinderSettings(num_steps=50)).get("quadratic", "sgd", compute=fake)
    FinderCache(path).get("quadratic", "adam", compute=fake)
    assert len(fake.calls) == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_a_corrupt_cache_file_is_recomputed(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_text("{not json")
    fake = Fake(0.3)
    assert FinderCache(path).get("quadratic", "sgd", compute=fake)["suggestion"] == 0.3
    assert len(fake.calls) == 1
    assert json.loads(path.read_text())["format"] == FINDER_FORMAT


def test_auto_lrs_centres_each_pair_and_skips_lr_free(tmp_path: Path) -> None:
    cache = FinderCache(tmp_path / "f.json")
    cache.get("quadratic", "sgd", compute=Fake(0.01))
    cache.get("quadratic", "adam", compute=Fake(0.1))
    seen: list[tuple[str, str]] = []
    grids = auto_lrs(
        [("quadratic", "sgd"), ("quadratic", "adam"), ("quadratic", "prodigy")],
        cache,
        on_entry=lambda t, o, entry, lrs: seen.append((t, o)),
    )
    assert grids == {
        ("quadratic", "sgd"): (0.001, 0.00316, 0.01, 0.0316, 0.1),
        ("quadratic", "adam"): (0.01, 0.0316, 0.1, 0.316, 1.0),
    }
    assert seen == [("quadratic", "sgd"), ("quadratic", "adam")]


def test_auto_lrs_without_a_suggestion_says_why(tmp_path: Path) -> None:
    cache = FinderCache(tmp_path / "f.json")
    cache.get("rosenbrock", "sgd", compute=Fake(math.nan))
    with pytest.raises(ValueError, match=r"no suggestion for task 'rosenbrock'.*too few points"):
        auto_lrs([("rosenbrock", "sgd")], cache)


def test_the_cache_refuses_lr_free_optimizers(tmp_path: Path) -> None:
    with pytest.raises(LrFreeError):
        FinderCache(tmp_path / "f.json").get("quadratic", "schedulefree", compute=Fake())


# --------------------------------------------------------------------------
# Grids with per-pair lrs
# --------------------------------------------------------------------------


def test_pair_lrs_replace_the_grid_lrs_for_their_pair_only() -> None:
    grid = make_grid(
        tasks=["quadratic"],
        optimizers=["sgd", "adam", "prodigy"],
        schedules=["constant()"],
        lrs=[0.5],
        multipliers=[1.0, 2.0],
        seeds=1,
    )
    grid = with_pair_lrs(grid, {("quadratic", "sgd"): [0.01, 0.1]})
    runs = {(c.optimizer, c.lr) for c in expand_grid(grid)}
    assert runs == {("sgd", 0.01), ("sgd", 0.1), ("adam", 0.5), ("prodigy", 1.0), ("prodigy", 2.0)}
    data = grid.to_dict()
    assert data["lrs"] == AUTO
    assert data["pair_lrs"] == [{"task": "quadratic", "optimizer": "sgd", "lrs": [0.01, 0.1]}]
    assert "pair_lrs" not in make_grid().to_dict()


def test_with_pair_lrs_errors() -> None:
    grid = make_grid(tasks=["quadratic"], optimizers=["sgd"])
    with pytest.raises(GridError, match=r"\('digits', 'sgd'\) is not in the grid"):
        with_pair_lrs(grid, {("digits", "sgd"): [0.1]})
    with pytest.raises(GridError, match=r"-0\.1 must be a finite number > 0"):
        with_pair_lrs(grid, {("quadratic", "sgd"): [-0.1]})
    with pytest.raises(GridError, match="no lrs for"):
        with_pair_lrs(grid, {("quadratic", "sgd"): []})


def test_is_auto() -> None:
    assert is_auto(["auto"]) and is_auto([" AUTO "])
    assert not is_auto([]) and not is_auto(["logspace(1e-4, 1, 5)", "0.1"])
    with pytest.raises(GridError, match="'auto' cannot be combined with other values"):
        is_auto(["auto", "0.1"])
    with pytest.raises(GridError, match="'auto' cannot be combined"):
        is_auto(["auto,0.1"])


# --------------------------------------------------------------------------
# The range test of a user task (find-lr --task file.py:name, --lrs auto)
# --------------------------------------------------------------------------

USER_TASK = """
import torch
import lrkit


@lrkit.task(metric="loss", steps=300)
def fit(trial):
    torch.manual_seed(trial.seed)
    x = torch.randn(256, 8)
    y = x @ torch.linspace(-2.0, 2.0, 8)[:, None]
    model = torch.nn.Linear(8, 1)
    opt = trial.optimizer(model.parameters())
    sched = trial.scheduler(opt)
    for step in range(trial.steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        trial.log(step, loss=loss)
    return float(loss)


@lrkit.task(metric="loss", steps=10)
def silent(trial):
    return 1.0
"""


def test_a_user_task_is_swept_on_the_ramp_until_its_loss_diverges(tmp_path: Path) -> None:
    from lrkit.bench.find import sweep_task

    path = tmp_path / "user.py"
    path.write_text(USER_TASK)
    result = suggest_lr(f"{path}:fit", "sgd", num_steps=60, min_lr=1e-4, max_lr=100.0)
    # The lrs are the exponential ramp; the sweep stopped once the loss blew up.
    expected = 1e-4 * (1e6 ** (np.arange(60) / 59))
    np.testing.assert_allclose(result.lrs, expected[: len(result.lrs)], rtol=1e-12)
    assert result.stopped is not None and result.updates == len(result.losses) < 60
    # Full-batch least squares with curvature <= 2 * max eigenvalue: it diverges past ~1.
    assert 1e-3 < result.suggestion < 1.0
    again = sweep_task(f"{path}:fit", "sgd", num_steps=60, min_lr=1e-4, max_lr=100.0)
    np.testing.assert_array_equal(again.losses, result.losses)  # seeded: the same sweep
    assert again.suggestion == result.suggestion
    with pytest.raises(ValueError, match=r"must call trial\.log"):
        suggest_lr(f"{path}:silent", "sgd", num_steps=20)
    # compare --lrs auto centres the user task's grid on it, through the cache.
    cache = FinderCache(tmp_path / "runs.finder.json")
    grids = auto_lrs([(f"{path}:fit", "sgd")], cache)
    assert cache.computed == 1 and len(grids[(f"{path}:fit", "sgd")]) == 5
