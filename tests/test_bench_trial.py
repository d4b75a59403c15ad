"""User tasks and trials: lrkit.task, lrkit.Trial, load_task, and one path for built-ins."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lrkit
from lrkit.bench.grid import expand_grid, pinned_lr
from lrkit.bench.run import RunConfig, execute
from lrkit.bench.trial import Task, TaskLoadError, load_task

DATA = Path(__file__).parent / "data" / "builtin_runs_eacaabd.json"


# --------------------------------------------------------------------------
# Built-in tasks are user-kind tasks: same keys, same numbers as before
# --------------------------------------------------------------------------


#: torch's CPU kernels, capped at the instruction set the stored runs were recorded with.
#: On an AVX-512 machine torch (ATen), oneDNN and MKL otherwise pick AVX-512 kernels,
#: whose float32 sums round differently in the last bit (seen: digits' second loss
#: 2.3070647716522217 there, 2.307065010070801 under AVX2).
AVX2 = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}

_RERUN = """
import json, sys
from lrkit.bench.run import RunConfig, execute
runs = json.load(open(sys.argv[1]))["runs"]
print(json.dumps([execute(RunConfig.from_dict(r["config"])).to_dict() for r in runs]))
"""


@pytest.fixture(scope="module")
def rerun_on_avx2() -> list[dict[str, Any]]:
    """Every stored run re-run in a fresh process whose torch kernels stop at AVX2."""
    done = subprocess.run(
        [sys.executable, "-c", _RERUN, str(DATA)],
        env={**os.environ, **AVX2},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "index", range(len(json.loads(DATA.read_text())["runs"])), ids=lambda i: f"run{i}"
)
def test_builtin_runs_keep_their_keys_and_numbers(
    index: int, rerun_on_avx2: list[dict[str, Any]]
) -> None:
    """Runs stored by the runner before user tasks (commit eacaabd) are reproduced exactly.

    So a store written then still resumes (same keys), and a re-run on a machine
    with the same kernels gives its numbers, bit for bit.
    """
    old = json.loads(DATA.read_text())["runs"][index]
    config = RunConfig.from_dict(old["config"])
    assert config.key() == old["key"]
    new = rerun_on_avx2[index]
    assert new["key"] == old["key"]
    for name in (
        "status",
        "final",
        "best",
        "loss",
        "lr",
        "eval_steps",
        "ratio_steps",
        "update_ratio",
        "diverged_at",
        "steps_to_target",
        "steps_done",
    ):
        assert new[name] == old[name], name
    assert new["evals"][old["metric"]] == old["evals"][old["metric"]]


def test_builtin_tasks_are_tasks() -> None:
    digits = load_task("digits")
    assert isinstance(digits, Task) and digits.builtin and digits.ref == "digits"
    assert (digits.metric, digits.mode, digits.steps) == ("val_acc", "max", 300)
    assert lrkit.Task is Task


# --------------------------------------------------------------------------
# The decorator and loading by reference
# --------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


TASK_FILE = """
import lrkit

@lrkit.task(metric="loss", steps=20, target=0.5)
def shrink(trial):
    \"\"\"Gradient descent on x**2 with the trial's schedule.\"\"\"
    x = 4.0
    for step in range(trial.steps):
        x -= trial.schedule(step) * 2 * x
        trial.log(step, loss=x * x, x=x)
        if (step + 1) % 5 == 0:
            trial.report(step + 1, x * x)
    return x * x

not_a_task = 3
"""


def test_decorator_and_file_reference(tmp_path: Path) -> None:
    path = _write(tmp_path / "mytask.py", TASK_FILE)
    task = load_task(f"{path}:shrink")
    assert (task.name, task.metric, task.mode, task.steps, task.target) == (
        "shrink",
        "loss",
        "min",
        20,
        0.5,
    )
    assert task.description == "Gradient descent on x**2 with the trial's schedule."
    assert task.ref == f"{path}:shrink" and not task.builtin
    assert len(task.source_sha256 or "") == 64
    identity = task.identity()
    assert identity["source_sha256"] == task.source_sha256 and identity["user"] is True


def test_a_user_task_runs_and_records_everything(tmp_path: Path) -> None:
    path = _write(tmp_path / "mytask.py", TASK_FILE)
    config = RunConfig(f"{path}:shrink", "sgd", "cosine()", lr=0.1, seed=3)
    result = execute(config)
    assert result.status == "ok", result.reason
    assert result.task == "shrink" and result.steps == result.steps_done == 20
    # No torch optimizer: the lr of each step is the schedule's.
    np.testing.assert_allclose(result.lr, lrkit.cosine(lr=0.1, steps=20).values(20), rtol=1e-12)
    assert result.eval_steps == [5, 10, 15, 20]
    assert result.final == result.evals["loss"][-1] == pytest.approx(result.loss[-1])
    assert result.best == min(result.evals["loss"]) and result.steps_to_target is not None
    assert [s for s, _ in result.scalars["x"]] == list(range(20))
    assert json.loads(json.dumps(result.to_dict()))  # plain data


def test_editing_the_task_file_changes_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "edit_me.py", TASK_FILE)
    before = RunConfig(f"{path}:shrink", "sgd", lr=0.1).key()
    _write(tmp_path / "edited.py", TASK_FILE.replace("x = 4.0", "x = 3.0"))
    after = RunConfig(f"{tmp_path / 'edited.py'}:shrink", "sgd", lr=0.1).key()
    assert before != after
    # Same source elsewhere: same runs (the key holds the source's hash, not its path).
    _write(tmp_path / "same_source.py", TASK_FILE)
    assert RunConfig(f"{tmp_path / 'same_source.py'}:shrink", "sgd", lr=0.1).key() == before


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nope", "unknown task 'nope'; built-in tasks: charlm, digits"),
        ("missing.py:t", "file 'missing.py' does not exist"),
        ("{dir}/mytask.py:other", "has no 'other'; tasks there: shrink"),
        ("{dir}/mytask.py:not_a_task", "is not an lrkit task; decorate it with @lrkit.task"),
        ("{dir}/broken.py:t", "failed to import (line 3): ZeroDivisionError: division by zero"),
        ("{dir}/syntax.py:t", "failed to import"),
        ("no_such_pkg_xyz.mod:t", "cannot import module 'no_such_pkg_xyz.mod'"),
    ],
)
def test_load_errors_say_what_is_wrong(tmp_path: Path, ref: str, message: str) -> None:
    _write(tmp_path / "mytask.py", TASK_FILE)
    _write(tmp_path / "broken.py", "import lrkit\n\n1 / 0\n")
    _write(tmp_path / "syntax.py", "def t(:\n")
    with pytest.raises(TaskLoadError, match=None) as info:
        load_task(ref.format(dir=tmp_path))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_task_function_passed_in_python_runs_in_process() -> None:
    @lrkit.task(metric="loss", steps=5)
    def local(trial: lrkit.Trial) -> float:
        for step in range(trial.steps):
            trial.log(step, loss=1.0)
        return trial.lr

    config = RunConfig(local, "adam", lr=0.25)
    assert "<locals>" in config.task and config.task_object is local
    assert execute(config).final == 0.25


# --------------------------------------------------------------------------
# What the trial does: statuses, guard, controllers, pruning
# --------------------------------------------------------------------------


def _linear_task(**kwargs: Any) -> Task:
    """A torch regression through trial.optimizer / trial.scheduler."""

    @lrkit.task(metric="val_loss", steps=kwargs.pop("steps", 60), **kwargs)
    def fit(trial: lrkit.Trial) -> float:
        torch.manual_seed(trial.seed)
        x = torch.randn(256, 4)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        model = torch.nn.Linear(4, 1)
        opt = trial.optimizer(model.parameters())
        guarded = isinstance(trial.schedule, lrkit.Guard)
        sched = trial.scheduler(opt, model=model if guarded else None, snapshot_every=1)
        for step in range(trial.steps):
            loss = torch.nn.functional.mse_loss(model(x), y)
            if trial.config.get("_poison") == step:
                loss = loss * math.nan
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            trial.log(step, loss=loss)  # after sched.step(), as in SPEC's example
            if (step + 1) % 10 == 0:
                with torch.no_grad():
                    trial.report(step + 1, float(torch.nn.functional.mse_loss(model(x), y)))
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(model(x), y))

    return fit


def test_trial_optimizer_and_scheduler_follow_the_schedule() -> None:
    task = _linear_task()
    result = execute(RunConfig(task, "momentum", "warmup(cosine(), steps=10)", lr=0.05))
    assert result.status == "ok"
    expected = lrkit.parse("warmup(cosine(lr=0.05, steps=50), steps=10)").values(60)
    np.testing.assert_allclose(result.lr, expected, rtol=1e-12)
    assert result.ratio_steps and all(r > 0 for r in result.update_ratio[1:])
    assert result.final is not None and result.final < 1.0


def test_nan_loss_is_diverged_and_a_raising_task_is_an_error() -> None:
    task = _linear_task()
    diverged = execute(RunConfig(task, "sgd", lr=10.0))  # blows up to inf/NaN
    assert diverged.status == "diverged" and diverged.final is None
    assert diverged.diverged_at is not None and "loss is" in (diverged.reason or "")

    @lrkit.task(metric="loss", steps=3)
    def buggy(trial: lrkit.Trial) -> float:
        raise KeyError("no such column")

    error = execute(RunConfig(buggy, "sgd", lr=0.1))
    assert error.status == "error" and error.reason == "KeyError: 'no such column'"
    assert error.traceback is not None and "in buggy" in error.traceback

    @lrkit.task(metric="loss", steps=3)
    def not_a_number(trial: lrkit.Trial) -> Any:
        return "0.1"

    wrong = execute(RunConfig(not_a_number, "sgd", lr=0.1))
    assert wrong.status == "error" and "must return its final metric" in (wrong.reason or "")


def test_a_nan_final_metric_is_diverged_not_an_error() -> None:
    @lrkit.task(metric="loss", steps=2)
    def nan_final(trial: lrkit.Trial) -> float:
        return math.nan

    result = execute(RunConfig(nan_final, "sgd", lr=0.1))
    assert result.status == "diverged" and result.reason == "the final loss is nan"


@pytest.mark.parametrize("log_first", [True, False])
def test_trial_log_feeds_the_guard_before_or_after_scheduler_step(log_first: bool) -> None:
    @lrkit.task(metric="loss", steps=30)
    def poisoned(trial: lrkit.Trial) -> float:
        torch.manual_seed(0)
        w = torch.nn.Linear(2, 1)
        opt = trial.optimizer(w.parameters())
        sched = trial.scheduler(opt, model=w, snapshot_every=1)
        x = torch.randn(32, 2)
        for step in range(trial.steps):
            loss = w(x).pow(2).mean()
            if step == 12:
                loss = loss * math.inf
            if log_first:
                trial.log(step, loss=loss)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if not log_first:
                trial.log(step, loss=loss)
        return float(w(x).pow(2).mean().detach())

    result = execute(RunConfig(poisoned, "sgd", "guard(constant(), factor=0.5)", lr=0.1))
    assert result.status == "rescued", result.reason
    assert result.rollbacks == [12] and result.final is not None and math.isfinite(result.final)
    assert result.lr[13] == pytest.approx(0.05)  # the cut lr from the next update on


@lrkit.task(metric="loss", steps=20)
def forgets_the_scheduler(trial: lrkit.Trial) -> float:
    """Builds its optimizer with trial.optimizer and never applies the schedule."""
    w = torch.nn.Parameter(torch.ones(2))
    opt = trial.optimizer([w])
    for step in range(trial.steps):
        loss = (w**2).sum()
        trial.log(step, loss=loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float((w**2).sum().detach())


@pytest.mark.parametrize(
    ("spec", "status"),
    [
        ("cosine()", "error"),
        ("plateau(warmup(constant(), steps=5))", "error"),
        ("constant()", "ok"),
    ],
)
def test_a_task_that_never_applies_its_schedule_is_an_error_that_says_so(
    spec: str, status: str
) -> None:
    # it trained at a constant lr: reporting it as `spec` would mislead the table
    result = execute(RunConfig(forgets_the_scheduler, "sgd", spec, lr=0.1))
    assert result.status == status, result.reason
    if status == "error":
        assert "never applied its schedule" in (result.reason or "")
        assert "trial.scheduler(optimizer)" in (result.reason or "")


def test_reports_feed_a_plateau_schedule() -> None:
    @lrkit.task(metric="loss", steps=40)
    def flat(trial: lrkit.Trial) -> float:
        w = torch.nn.Parameter(torch.zeros(1))
        opt = trial.optimizer([w])
        sched = trial.scheduler(opt)
        for step in range(trial.steps):
            opt.step()
            sched.step()
            trial.log(step, loss=1.0)
            trial.report(step + 1, 1.0)  # never improves
        return 1.0

    result = execute(RunConfig(flat, "sgd", "plateau(constant(), patience=2, factor=0.5)", lr=0.1))
    assert result.status == "ok"
    assert result.lr[0] == 0.1 and result.lr[-1] < 0.1 * 0.5**5


def test_on_report_prunes_the_run() -> None:
    task = _linear_task()
    seen: list[tuple[int, float]] = []

    def prune_at_30(step: int, value: float) -> bool:
        seen.append((step, value))
        return step >= 30

    result = execute(RunConfig(task, "adam", lr=0.01), on_report=prune_at_30)
    assert result.status == "pruned" and result.pruned_at == 30 and result.final is None
    assert [s for s, _ in seen] == [10, 20, 30] and result.steps_done == 30


def test_lrfree_optimizer_through_the_trial_records_d_times_lr() -> None:
    result = execute(RunConfig(_linear_task(), "prodigy", "cosine()", lr=1.0))
    assert result.status == "ok"
    assert result.lr[0] != result.lr[-1] and all(v >= 0 for v in result.lr)


# --------------------------------------------------------------------------
# Specs that set their own lr
# --------------------------------------------------------------------------


def test_a_spec_with_its_own_lr_runs_once_at_that_lr() -> None:
    assert pinned_lr("cosine()", 100) is None
    assert pinned_lr("warmup(cosine(lr=0.05), steps=10)", 100) == 0.05
    assert pinned_lr("plateau(cosine(lr=0.02))", 100) == pytest.approx(0.02)
    configs = expand_grid(
        tasks=["quadratic"],
        optimizers=["sgd", "prodigy"],
        schedules=["cosine()", "cosine(lr=0.05)"],
        lrs=[0.001, 0.01, 0.1],
        seeds=2,
    )
    pinned = [c for c in configs if c.schedule == "cosine(lr=0.05)"]
    assert {(c.optimizer, c.lr) for c in pinned} == {("sgd", 0.05), ("prodigy", 0.05)}
    assert len(pinned) == 4  # once per optimizer and seed, not once per grid lr
    for config in pinned:
        assert config.schedule_object()(0) == 0.05


def test_an_edited_task_file_is_imported_again_in_the_same_process(tmp_path: Path) -> None:
    path = _write(tmp_path / "live.py", TASK_FILE)
    first = load_task(f"{path}:shrink")
    assert load_task(f"{path}:shrink") is first  # unchanged: imported once
    before = RunConfig(f"{path}:shrink", "sgd", lr=0.1)
    _write(path, TASK_FILE.replace("x = 4.0", "x = 2.0") + "\n# edited\n")
    again = RunConfig(f"{path}:shrink", "sgd", lr=0.1)
    assert again.task_object.source_sha256 != first.source_sha256
    assert again.key() != before.key()
    assert execute(again).loss[0] < execute(before).loss[0]


def test_compare_says_a_function_defined_in_a_function_needs_workers_0(tmp_path: Path) -> None:
    from lrkit.bench.grid import GridError

    @lrkit.task(metric="loss", steps=3)
    def inner(trial: lrkit.Trial) -> float:
        return 1.0

    with pytest.raises(GridError, match="pass workers=0"):
        lrkit.compare(inner, optimizers="sgd", lrs=[0.1], seeds=1, workers=2, out=tmp_path)
    results = lrkit.compare(
        inner,
        optimizers="sgd",
        lrs=[0.1],
        seeds=1,
        workers=0,
        out=None,
        store=tmp_path / "runs.sqlite",
    )
    assert [r.status for r in results.runs] == ["ok"] * 3  # the 3 default schedules
