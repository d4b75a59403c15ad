"""Built-in benchmark tasks: registry, deterministic builds, shapes, data."""

from __future__ import annotations

import hashlib
import math
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from lrkit.bench.tasks import (
    CHARLM_FILES,
    TASKS,
    Problem,
    Task,
    charlm_text,
    get_task,
    scales_arrays,
    signals_arrays,
)

NAMES = ["digits", "signals", "scales", "charlm", "quadratic", "rosenbrock", "digits_sgd"]
#: The tasks that build a torch model (a Problem); digits_sgd trains a scikit-learn estimator.
TORCH_NAMES = [name for name in NAMES if get_task(name).builder is not None]

# task -> (train shapes, val shapes)
SHAPES = {
    "digits": ([(1437, 64), (1437,)], [(360, 64), (360,)]),
    "signals": ([(4000, 1, 40), (4000,)], [(1000, 1, 40), (1000,)]),
    "scales": ([(2000, 16), (2000, 1)], [(500, 16), (500, 1)]),
    "quadratic": ([(1024, 20)], []),
    "rosenbrock": ([], []),
}


def params(problem: Problem) -> list[torch.Tensor]:
    return [p.detach().clone() for p in problem.model.parameters()]


def test_registry_has_every_task() -> None:
    assert sorted(TASKS) == sorted(NAMES)
    assert [n for n in NAMES if n not in TORCH_NAMES] == ["digits_sgd"]


@pytest.mark.parametrize("name", NAMES)
def test_task_fields_are_sane(name: str) -> None:
    task = get_task(name)
    assert isinstance(task, Task)
    assert task.name == name
    assert task.description and "\n" not in task.description and len(task.description) < 100
    assert isinstance(task.version, str) and task.version
    assert task.steps >= 1 and task.batch_size >= 1
    assert task.mode in ("max", "min")
    assert math.isfinite(task.target)
    assert task.identity()["name"] == name
    assert task.identity()["version"] == task.version


def test_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'mnist'; known tasks: charlm, digits"):
        get_task("mnist")


@pytest.mark.parametrize(
    ("scale", "steps"), [(1.0, 300), (0.5, 150), (2, 600), (1e-9, 1), (1.001, 300)]
)
def test_budget_scales_the_step_count(scale: float, steps: int) -> None:
    assert get_task("digits").budget(scale) == steps


@pytest.mark.parametrize("scale", [0, -1.0, math.nan, math.inf, "1", True])
def test_bad_budget_scale_is_rejected(scale: object) -> None:
    with pytest.raises(ValueError, match=r"digits: budget scale must be"):
        get_task("digits").budget(scale)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed_is_rejected(seed: object) -> None:
    with pytest.raises(ValueError, match=r"quadratic: seed must be an integer >= 0"):
        get_task("quadratic").build(seed)  # type: ignore[arg-type]


def test_reached_and_better_follow_the_mode() -> None:
    digits, scales = get_task("digits"), get_task("scales")
    assert digits.reached(0.95) and not digits.reached(0.9499)
    assert scales.reached(scales.target) and not scales.reached(scales.target * 1.01)
    assert not digits.reached(math.nan) and not scales.reached(math.nan)
    assert digits.better(0.9, 0.8) and scales.better(0.1, 0.2)


@pytest.mark.parametrize("name", list(SHAPES))
def test_data_shapes(name: str) -> None:
    problem = get_task(name).build(0)
    train, val = SHAPES[name]
    assert [tuple(t.shape) for t in problem.train] == train
    assert [tuple(t.shape) for t in problem.val] == val
    assert problem.n_train == (train[0][0] if train else 0)


def test_charlm_data_shapes() -> None:
    problem = get_task("charlm").build(0)
    (starts,) = problem.train
    (windows,) = problem.val
    assert starts.ndim == 1 and len(starts) > 150_000
    assert tuple(windows.shape) == (128, 33)
    assert int(windows.max()) < 128 and int(windows.min()) >= 0
    logits = problem.model(windows[:2, :-1])
    assert tuple(logits.shape) == (2, 32, 128)


@pytest.mark.parametrize("name", TORCH_NAMES)
def test_build_is_deterministic(name: str) -> None:
    task = get_task(name)
    a, b, c = task.build(0), task.build(0), task.build(1)
    for x, y in zip(params(a), params(b), strict=True):
        assert torch.equal(x, y)
    assert any(not torch.equal(x, y) for x, y in zip(params(a), params(c), strict=True))
    # The data is the task's, not the seed's.
    for x, y in zip(a.train + a.val, c.train + c.val, strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("name", TORCH_NAMES)
def test_loss_and_evaluate_work_on_a_fresh_model(name: str) -> None:
    task = get_task(name)
    problem = task.build(0)
    batch = next(problem.batches(task.batch_size, torch.Generator().manual_seed(0)))
    loss = problem.loss(problem.model, batch)
    assert loss.ndim == 0 and math.isfinite(loss.item())
    loss.backward()
    assert all(p.grad is not None for p in problem.model.parameters())
    with torch.no_grad():
        values = problem.evaluate(problem.model)
    assert task.metric in values
    assert all(isinstance(v, float) and math.isfinite(v) for v in values.values())
    # A fresh model is far from the target.
    assert not task.reached(values[task.metric])


def test_classification_reports_accuracy_and_loss() -> None:
    for name in ("digits", "signals"):
        problem = get_task(name).build(0)
        with torch.no_grad():
            values = problem.evaluate(problem.model)
        assert set(values) == {"val_acc", "val_loss"}
        assert 0.0 <= values["val_acc"] <= 0.3  # about chance for 10 classes


def test_batches_follow_the_generator() -> None:
    problem = get_task("digits").build(0)
    stream = problem.batches(64, torch.Generator().manual_seed(3))
    x, y = next(stream)
    assert x.shape == (64, 64) and y.shape == (64,)
    # Same generator seed, same batches; another seed, another order.
    again = problem.batches(64, torch.Generator().manual_seed(3))
    other = problem.batches(64, torch.Generator().manual_seed(4))
    first = next(problem.batches(64, torch.Generator().manual_seed(3)))[0]
    assert torch.equal(next(again)[0], first)
    assert not torch.equal(next(other)[0], first)


def test_one_epoch_uses_each_sample_at_most_once() -> None:
    problem = get_task("quadratic").build(0)
    (noise,) = problem.train
    stream = problem.batches(16, torch.Generator().manual_seed(0))
    rows = torch.cat([next(stream)[0] for _ in range(1024 // 16)])
    assert torch.equal(rows[rows[:, 0].argsort()], noise[noise[:, 0].argsort()])


def test_data_free_tasks_yield_empty_batches() -> None:
    problem = get_task("rosenbrock").build(0)
    stream = problem.batches(1, torch.Generator())
    assert next(stream) == () and next(stream) == ()


def test_digits_is_sklearns_bundled_data() -> None:
    problem = get_task("digits").build(0)
    x = torch.cat([problem.train[0], problem.val[0]])
    y = torch.cat([problem.train[1], problem.val[1]])
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert sorted(torch.unique(y).tolist()) == list(range(10))
    counts = torch.bincount(y)
    assert int(counts.min()) >= 170  # the 1797 samples are near-balanced


def test_signals_generation() -> None:
    x, y = signals_arrays(500, seed=11)
    x2, y2 = signals_arrays(500, seed=11)
    x3, _ = signals_arrays(500, seed=12)
    assert x.shape == (500, 1, 40) and x.dtype == np.float32
    assert y.shape == (500,) and y.dtype == np.int64
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, x3)
    assert np.isfinite(x).all()
    assert set(np.unique(y)) == set(range(10))
    assert 0.5 < float(np.abs(x).max()) < 5.0


def test_scales_features_span_orders_of_magnitude() -> None:
    x, y = scales_arrays(4000, seed=1)
    assert x.shape == (4000, 16) and y.shape == (4000, 1)
    std = x.std(axis=0)
    assert std.max() / std.min() > 500  # 0.03 .. 30
    assert abs(float(y.var()) - 1.0) < 0.15  # standardised target


def test_charlm_text_comes_from_the_installed_stdlib() -> None:
    text, digest = charlm_text()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    expected = b"\n\n".join((stdlib / name).read_bytes() for name in CHARLM_FILES)
    assert text == expected
    assert digest == hashlib.sha256(text).hexdigest()
    assert get_task("charlm").identity()["text_sha256"] == digest
    assert 100_000 < len(text) < 1_000_000


def test_only_charlm_has_a_fingerprint() -> None:
    for name in NAMES:
        keys = set(get_task(name).identity())
        extra = {"text_sha256"} if name == "charlm" else set()
        assert keys == {"name", "version"} | extra


def test_cached_arrays_cannot_be_changed_by_a_build() -> None:
    a = get_task("signals").build(0)
    a.train[0].add_(1.0)  # a caller scribbling on its tensors
    b = get_task("signals").build(0)
    assert not torch.equal(a.train[0], b.train[0])


@pytest.mark.parametrize("name", TORCH_NAMES)
def test_models_have_no_batchnorm_or_dropout(name: str) -> None:
    # Schedule-Free's eval() swaps in averaged weights; BatchNorm statistics
    # would then need recalibrating and dropout would make evaluation noisy.
    # The tasks avoid both, so evaluation is exact for every optimizer.
    model = get_task(name).build(0).model
    banned = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout)
    assert not any(isinstance(m, banned) for m in model.modules())
