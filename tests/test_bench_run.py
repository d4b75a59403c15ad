"""One benchmark run: configs and keys, execution, targets, divergence, errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

import numpy as np
import pytest
import torch

import lrkit
from lrkit.bench import optimizers as optimizers_module
from lrkit.bench import tasks as tasks_module
from lrkit.bench.optimizers import OPTIMIZERS, get_optimizer
from lrkit.bench.run import (
    BENCH_RULE,
    RUN_FORMAT,
    RunConfig,
    RunResult,
    eval_steps,
    execute,
    warm_up,
)

TIMING_FIELDS = ("wall_time", "build_time")


def numbers(result: RunResult) -> dict[str, Any]:
    """The result without its timings: what must repeat exactly."""
    data = result.to_dict()
    for name in TIMING_FIELDS:
        data.pop(name)
    return data


# --------------------------------------------------------------------------
# Configs and keys
# --------------------------------------------------------------------------


def test_config_defaults_and_steps() -> None:
    config = RunConfig("digits", "adam")
    assert (config.schedule, config.lr, config.seed, config.budget) == ("constant()", 1e-3, 0, 1.0)
    assert config.steps == 300
    assert RunConfig("digits", "adam", budget=0.5).steps == 150


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "mnist"}, r"unknown task 'mnist'; built-in tasks: charlm, digits"),
        ({"optimizer": "lion"}, r"unknown optimizer 'lion'; known optimizers: sgd, momentum"),
        ({"lr": 0.0}, r"run: lr must be a finite number > 0, got 0.0"),
        ({"lr": -1e-3}, r"run: lr must be a finite number > 0, got -0.001"),
        ({"lr": math.nan}, r"run: lr must be a finite number > 0, got nan"),
        ({"lr": "0.1"}, r"run: lr must be a finite number > 0, got '0.1'"),
        ({"seed": -1}, r"run: seed must be an integer >= 0, got -1"),
        ({"seed": 1.0}, r"run: seed must be an integer >= 0, got 1.0"),
        ({"budget": 0}, r"digits: budget scale must be finite and > 0, got 0"),
        ({"schedule": " "}, r"run: schedule must be a non-empty spec string, got ' '"),
    ],
)
def test_bad_config_names_the_value(kwargs: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"task": "digits", "optimizer": "adam"}
    with pytest.raises(ValueError, match=message):
        RunConfig(**{**base, **kwargs})


def test_config_round_trips_through_json() -> None:
    config = RunConfig("signals", "nesterov", "cosine(min_lr=1e-4)", 0.05, 3, 0.25)
    data = json.loads(json.dumps(config.to_dict()))
    assert RunConfig.from_dict(data) == config
    assert RunConfig.from_dict(data).key() == config.key()


def test_key_is_the_sha256_of_the_canonical_identity() -> None:
    config = RunConfig("quadratic", "sgd", "cosine()", lr=0.1, seed=2)
    identity = config.identity()
    assert identity == {
        "format": RUN_FORMAT,
        "task": {"name": "quadratic", "version": "1"},
        "steps": 200,
        "batch_size": 16,
        "optimizer": "sgd",
        "schedule": "cosine(lr=0.1, steps=200)",
        "seed": 2,
    }
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    assert config.key() == hashlib.sha256(canonical.encode()).hexdigest()
    assert config.key() == RunConfig("quadratic", "sgd", "cosine()", lr=0.1, seed=2).key()


def test_key_changes_with_what_changes_the_run() -> None:
    base = RunConfig("digits", "adam", "cosine()", lr=1e-3, seed=0, budget=1.0)
    variants = [
        dataclasses.replace(base, budget=0.5),
        dataclasses.replace(base, seed=1),
        dataclasses.replace(base, lr=2e-3),
        dataclasses.replace(base, optimizer="adamw"),
        dataclasses.replace(base, schedule="constant()"),
        dataclasses.replace(base, schedule="cosine(min_lr=1e-5)"),
        dataclasses.replace(base, task="signals"),
    ]
    keys = {base.key()} | {v.key() for v in variants}
    assert len(keys) == len(variants) + 1


def test_key_ignores_what_does_not_change_the_run() -> None:
    base = RunConfig("digits", "adam", "cosine()", lr=1e-3, seed=0, budget=1.0)
    # A budget scale that rounds to the same step count.
    assert dataclasses.replace(base, budget=1.001).key() == base.key()
    # Spelling the filled-in values out, or spacing the spec differently.
    assert dataclasses.replace(base, schedule="cosine(lr=0.001, steps=300)").key() == base.key()
    assert dataclasses.replace(base, schedule=" cosine( ) ").key() == base.key()
    # A spec that fixes its own lr does not depend on the grid's lr.
    fixed = dataclasses.replace(base, schedule="constant(lr=0.01)")
    assert dataclasses.replace(fixed, lr=0.5).key() == fixed.key()
    # Schedule-Free runs its own constant rule whatever the grid's schedule.
    free = RunConfig("digits", "schedulefree", "cosine()", lr=1.0)
    assert dataclasses.replace(free, schedule="one_cycle()").key() == free.key()
    assert dataclasses.replace(free, lr=2.0).key() != free.key()


def test_key_changes_with_the_task_version(monkeypatch: pytest.MonkeyPatch) -> None:
    config = RunConfig("digits", "adam", "cosine()", lr=1e-3)
    before = config.key()
    bumped = dataclasses.replace(tasks_module.TASKS["digits"], version="2")
    monkeypatch.setitem(tasks_module.TASKS, "digits", bumped)
    again = RunConfig("digits", "adam", "cosine()", lr=1e-3)  # a config's key is computed once
    assert again.identity()["task"]["version"] == "2"
    assert again.key() != before and config.key() == before


def test_charlm_key_includes_the_text_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    config = RunConfig("charlm", "adam", "cosine()", lr=1e-3)
    digest = tasks_module.charlm_text()[1]
    assert config.identity()["task"]["text_sha256"] == digest
    before = config.key()
    other_python = dataclasses.replace(
        tasks_module.TASKS["charlm"], fingerprint=lambda: {"text_sha256": "0" * 64}
    )
    monkeypatch.setitem(tasks_module.TASKS, "charlm", other_python)
    assert RunConfig("charlm", "adam", "cosine()", lr=1e-3).key() != before


def test_lr_free_grid_lr_is_a_multiplier() -> None:
    assert RunConfig("digits", "prodigy", lr=0.5).schedule_object() == lrkit.constant(0.5)
    assert RunConfig("digits", "schedulefree", "cosine()", lr=2.0).schedule_object() == (
        lrkit.constant(0.005)
    )
    assert RunConfig("digits", "dadapt", "cosine()", lr=1.0).schedule_object() == lrkit.cosine(
        1.0, 300
    )
    assert RunConfig("digits", "adam", "one_cycle()", lr=0.1).schedule_object() == (
        lrkit.one_cycle(max_lr=0.1, steps=300)
    )


def test_eval_steps_are_evenly_spaced_with_both_ends() -> None:
    points = eval_steps(300)
    assert len(points) == 16 and points[0] == 0 and points[-1] == 300
    assert set(np.diff(points)) == {20}
    assert eval_steps(1) == [0, 1]
    assert eval_steps(150)[:3] == [0, 10, 20]
    with pytest.raises(ValueError, match="n must be >= 2, got 1"):
        eval_steps(10, n=1)


# --------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------


def test_warm_up_runs() -> None:
    warm_up()
    assert torch.get_num_threads() == 1


def test_quadratic_run_records_everything() -> None:
    config = RunConfig("quadratic", "sgd", "cosine()", lr=0.5, seed=0)
    result = execute(config)
    assert result.status == "ok", result.reason
    assert result.key == config.key()
    assert result.identity == config.identity()
    assert result.config == config.to_dict()
    assert (result.metric, result.mode, result.target) == ("loss", "min", 0.15)
    assert result.steps == result.steps_done == 200
    # The lr of every update is the schedule's value at that step.
    np.testing.assert_array_equal(result.lr, lrkit.cosine(0.5, 200).values(200))
    assert len(result.loss) == 200 and all(math.isfinite(v) for v in result.loss)
    assert result.eval_steps == eval_steps(200)
    assert len(result.evals["loss"]) == 16
    assert result.evals["loss"][-1] < result.evals["loss"][0] / 10
    # Update-to-weight ratios at the update before each evaluation.
    assert result.ratio_steps == [k - 1 for k in result.eval_steps[1:]]
    assert all(0 < r < 1 for r in result.update_ratio)
    assert result.update_ratio[-1] < result.update_ratio[0]  # the lr decayed to ~0
    assert result.final == result.evals["loss"][-1]
    assert result.best == min(result.evals["loss"])
    assert result.steps_to_target is not None and result.steps_to_target <= 200
    assert result.diverged_at is None and result.reason is None
    assert result.wall_time >= result.build_time > 0
    assert result.env["torch"] == torch.__version__


def test_same_seed_gives_identical_numbers() -> None:
    config = RunConfig("digits", "adam", "one_cycle()", lr=1e-2, seed=3, budget=0.2)
    first, second = execute(config), execute(config)
    assert first.status == "ok"
    assert numbers(first) == numbers(second)
    other = execute(dataclasses.replace(config, seed=4))
    assert other.loss != first.loss


def test_same_seed_identical_for_lr_free_and_cnn() -> None:
    config = RunConfig("signals", "prodigy", "cosine()", lr=1.0, seed=1, budget=0.1)
    first, second = execute(config), execute(config)
    assert first.status == "ok"
    assert numbers(first) == numbers(second)


def test_result_is_strict_json_and_round_trips() -> None:
    result = execute(RunConfig("quadratic", "sgd", lr=100.0))
    assert result.status == "diverged"
    text = json.dumps(result.to_dict(), allow_nan=False)
    back = RunResult.from_dict(json.loads(text))
    assert numbers(back) == numbers(result)


def test_too_high_lr_on_quadratic_diverges_with_the_step() -> None:
    # lr 100 on curvature 1: |1 - 100| = 99x per step, inf within a few steps.
    result = execute(RunConfig("quadratic", "sgd", "constant()", lr=100.0))
    assert result.status == "diverged"
    assert result.diverged_at == result.steps_done == len(result.loss) == 10
    assert result.reason is not None and result.reason.startswith("inf:")
    assert "at step 10" in result.reason
    assert result.final is None
    # lr 3: the loss grows 4x per step, caught as a spike once the window is full.
    spike = execute(RunConfig("quadratic", "sgd", "constant()", lr=3.0))
    assert spike.status == "diverged"
    assert spike.diverged_at == BENCH_RULE.window
    assert spike.reason is not None and spike.reason.startswith("spike:")
    # A safe lr does not diverge.
    assert execute(RunConfig("quadratic", "sgd", "constant()", lr=1.0)).status == "ok"


def test_minibatch_noise_near_zero_loss_is_not_a_divergence() -> None:
    # Digits with a good setting drives the train loss near 0, where single
    # batches swing far more than 4x the median: the run must stay "ok".
    result = execute(RunConfig("digits", "momentum", "cosine()", lr=0.1, seed=0))
    assert result.status == "ok", result.reason
    assert result.final is not None and result.final >= 0.95


def test_non_finite_metric_is_a_divergence(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tasks_module.TASKS["rosenbrock"]

    def builder(seed: int) -> tasks_module.Problem:
        problem = real.builder(seed)
        problem.evaluate = lambda model: {"loss": math.nan}
        return problem

    monkeypatch.setitem(
        tasks_module.TASKS, "rosenbrock", dataclasses.replace(real, builder=builder)
    )
    result = execute(RunConfig("rosenbrock", "adam", budget=0.1))
    assert result.status == "diverged"
    assert result.diverged_at == 0
    assert result.reason == "reported loss is nan after 0 updates"


def test_errors_are_recorded_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    bad_spec = execute(RunConfig("quadratic", "sgd", "nonsense()", lr=0.1))
    assert bad_spec.status == "error"
    assert bad_spec.reason is not None and bad_spec.reason.startswith("ValueError:")
    assert "nonsense" in bad_spec.reason

    def missing(name: str) -> None:
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(optimizers_module.importlib, "import_module", missing)
    result = execute(RunConfig("quadratic", "prodigy", lr=1.0))
    assert result.status == "error"
    assert result.reason is not None
    assert "optimizer 'prodigy' needs the 'prodigyopt' package" in result.reason
    assert "pip install 'lrkit[lrfree]'" in result.reason
    json.dumps(result.to_dict(), allow_nan=False)


# --------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------


def test_optimizer_registry() -> None:
    assert list(OPTIMIZERS) == [
        "sgd",
        "momentum",
        "nesterov",
        "adagrad",
        "rmsprop",
        "adam",
        "adamw",
        "amsgrad",
        "schedulefree",
        "prodigy",
        "dadapt",
    ]
    assert [n for n, o in OPTIMIZERS.items() if o.lr_free] == ["schedulefree", "prodigy", "dadapt"]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_trains_quadratic(name: str) -> None:
    lr = 1.0 if get_optimizer(name).lr_free else 0.05
    result = execute(RunConfig("quadratic", name, "cosine()", lr=lr, seed=0, budget=0.5))
    assert result.status == "ok", result.reason
    assert result.evals["loss"][-1] < result.evals["loss"][0]
    assert all(v > 0 and math.isfinite(v) for v in result.lr)


def test_torch_optimizer_settings() -> None:
    weight = torch.nn.Parameter(torch.zeros(2))
    nesterov = get_optimizer("nesterov").create([weight], 0.1).param_groups[0]
    assert (nesterov["momentum"], nesterov["nesterov"]) == (0.9, True)
    assert get_optimizer("amsgrad").create([weight], 0.1).param_groups[0]["amsgrad"] is True
    assert get_optimizer("adamw").create([weight], 0.1).param_groups[0]["weight_decay"] == 0.01


def test_prodigy_records_d_times_lr() -> None:
    result = execute(RunConfig("digits", "prodigy", "constant()", lr=1.0, budget=0.2))
    assert result.status == "ok", result.reason
    assert result.lr[0] == pytest.approx(1e-6)  # Prodigy's d0 times the multiplier 1.0
    assert max(result.lr) > 1e-4  # d grew: the effective lr is what Prodigy chose
    assert result.lr == sorted(result.lr)  # d never shrinks
    half = execute(RunConfig("digits", "prodigy", "constant()", lr=0.5, budget=0.2))
    assert half.lr[0] == pytest.approx(0.5e-6)


def test_dadapt_records_d_times_lr() -> None:
    result = execute(RunConfig("digits", "dadapt", "cosine()", lr=1.0, budget=0.2))
    assert result.status == "ok", result.reason
    assert result.lr[0] == pytest.approx(1e-6)
    assert max(result.lr) > 1e-5


def test_schedulefree_is_constant_and_evaluates_in_eval_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    modes: list[str] = []
    spec = get_optimizer("schedulefree")
    real_eval, real_train = spec.eval_mode, spec.train_mode

    def eval_mode(self: Any, optimizer: Any) -> None:
        modes.append("eval")
        real_eval(optimizer)
        assert optimizer.param_groups[0]["train_mode"] is False

    def train_mode(self: Any, optimizer: Any) -> None:
        modes.append("train")
        real_train(optimizer)
        assert optimizer.param_groups[0]["train_mode"] is True

    monkeypatch.setattr(optimizers_module.OptimizerSpec, "eval_mode", eval_mode)
    monkeypatch.setattr(optimizers_module.OptimizerSpec, "train_mode", train_mode)
    result = execute(RunConfig("digits", "schedulefree", "cosine()", lr=2.0, budget=0.2))
    assert result.status == "ok", result.reason
    assert set(result.lr) == {0.005}  # 2 x 0.0025, constant despite cosine()
    assert modes == ["eval", "train"] * len(result.eval_steps)


# --------------------------------------------------------------------------
# Targets: a good setting reaches each task's target within its budget
# --------------------------------------------------------------------------


def test_digits_reaches_95_percent() -> None:
    # Half the budget (150 steps) is enough for Adam at 1e-2.
    result = execute(RunConfig("digits", "adam", "cosine()", lr=1e-2, seed=0, budget=0.5))
    assert result.status == "ok", result.reason
    assert result.final is not None and result.final >= 0.95
    assert result.steps_to_target is not None


def test_signals_reaches_its_target() -> None:
    # The full budget: 200 steps.
    result = execute(RunConfig("signals", "adam", "constant()", lr=1e-2, seed=0))
    assert result.status == "ok", result.reason
    assert result.final is not None and result.final >= 0.85
    assert result.steps_to_target is not None and result.steps_to_target <= 200


def test_scales_adam_reaches_target_and_sgd_does_not() -> None:
    adam = execute(RunConfig("scales", "adam", "constant()", lr=3e-2, seed=0))
    assert adam.status == "ok", adam.reason
    assert adam.final is not None and adam.final <= 0.05
    for lr in (1e-4, 1e-3):
        sgd = execute(RunConfig("scales", "sgd", "constant()", lr=lr, seed=0))
        assert sgd.final is None or sgd.final > 0.3  # stuck, or diverged


def test_charlm_reaches_its_target() -> None:
    # Half the budget (150 steps) is enough for Adam at 1e-2.
    result = execute(RunConfig("charlm", "adam", "constant()", lr=1e-2, seed=0, budget=0.5))
    assert result.status == "ok", result.reason
    assert result.final is not None and result.final <= 2.5


def test_rosenbrock_reaches_its_target() -> None:
    result = execute(RunConfig("rosenbrock", "momentum", "constant()", lr=1e-3, seed=0))
    assert result.status == "ok", result.reason
    assert result.final is not None and result.final <= 0.01
