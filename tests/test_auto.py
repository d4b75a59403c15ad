"""``lrkit auto`` and the lockstep race under it (:mod:`lrkit.bench.race`, :mod:`lrkit.bench.auto`).

What must hold whatever the policy: the run ``auto`` keeps is an ordinary
run of the spec it returns (``execute`` of that spec and seed gives the same
metric, bit for bit, although it trained interleaved with other runs that
drew from the same global generators); the steps it reports are every
update it caused and stay within ``max_cost`` runs; bad settings and tasks
give one clear error.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import lrkit
from lrkit.bench.auto import LADDER, AutoError, AutoFailed, auto, plan_rungs
from lrkit.bench.race import Race
from lrkit.bench.run import RunConfig, execute
from lrkit.cli import app
from lrkit.spec import parse

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# A user task that draws from all three global generators while it trains
# (dropout: torch; the noise: numpy; the batch order: Python), so that any
# leak of random state between raced runs changes its numbers.
NOISY_TASK = """
import random

import numpy as np
import torch
from torch import nn

import lrkit

X = torch.linspace(-2, 2, 64).unsqueeze(1)
Y = torch.sin(2 * X)


@lrkit.task(metric="val_loss", mode="min", steps=120)
def noisy(trial):
    torch.manual_seed(trial.seed)
    model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Dropout(0.1), nn.Linear(32, 1))
    opt = trial.optimizer(model.parameters())
    sched = trial.scheduler(opt)
    for step in range(trial.steps):
        index = torch.tensor(random.sample(range(64), 16))
        noise = torch.tensor(np.random.normal(0, 0.05, (16, 1)), dtype=torch.float32)
        loss = ((model(X[index]) - Y[index] - noise) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        trial.log(step, loss=loss.item())
    model.eval()
    with torch.no_grad():
        return ((model(X) - Y) ** 2).mean().item()


@lrkit.task(metric="val_loss", mode="min", steps=120)
def silent(trial):
    for _ in range(trial.steps):
        pass
    return 1.0


@lrkit.task(metric="val_loss", mode="min", steps=120)
def broken(trial):
    trial.log(0, loss=1.0)
    raise RuntimeError("no data here")


def _descend(trial, every=1):
    for step in range(trial.steps):
        if step % every == 0:
            trial.log(step, loss=1.0 / (1.0 + trial.lr * step))
    return 1.0 / (1.0 + trial.lr * trial.steps)


@lrkit.task(metric="val_loss", mode="min", steps=300)
def every_third(trial):
    return _descend(trial, every=3)


@lrkit.task(metric="val_loss", mode="min", steps=120)
def fails_at_the_end(trial):
    _descend(trial)
    raise ValueError("the evaluation set is missing")


@lrkit.task(metric="val_loss", mode="min", steps=120)
def fast_then_blows_up(trial):
    # lr >= 0.1 leads at the first rung, then every one of them diverges
    for step in range(trial.steps):
        if trial.lr >= 0.1:
            trial.log(step, loss=float("nan") if step >= 12 else 1.0 / (step + 1))
        else:
            trial.log(step, loss=2.0 - step * trial.lr)
    return 1.0


@lrkit.task(metric="val_loss", mode="min", steps=120)
def blows_up_late(trial):
    for step in range(trial.steps):
        trial.log(step, loss=float("nan") if step >= 100 else 1.0 / (1.0 + trial.lr * step))
    return 1.0


@lrkit.task(metric="val_loss", mode="min", steps=120)
def exits_at_high_lrs(trial):
    import sys

    if trial.lr >= 1:
        sys.exit("lr too high for this model")
    return _descend(trial)
"""


@pytest.fixture(scope="module")
def task_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auto") / "user_tasks.py"
    path.write_text(textwrap.dedent(NOISY_TASK))
    return path


# -- the race -----------------------------------------------------------------------


def test_a_raced_run_gives_the_numbers_it_gives_alone(task_file: Path) -> None:
    configs = [
        RunConfig(f"{task_file}:noisy", "adamw", "cosine()", lr=lr, seed=3)
        for lr in (0.003, 0.01, 0.03)
    ]
    with Race() as race:
        lanes = [race.add(config) for config in configs]
        race.advance(7)
        race.advance(31)
        race.stop(lanes[0])
        race.advance(60)
        race.finish()
    assert [lane.result.status for lane in lanes] == ["pruned", "ok", "ok"]
    assert lanes[0].steps_spent == 31 and lanes[0].stopped_at == 31
    for lane in lanes[1:]:
        alone = execute(lane.config)
        assert lane.result.final == alone.final  # bit for bit
        assert lane.result.loss == alone.loss
        assert lane.steps_spent == 120


def test_leaving_the_race_stops_every_paused_lane() -> None:
    with Race() as race:
        lanes = [race.add(RunConfig("quadratic", "momentum", lr=lr)) for lr in (0.01, 0.1)]
        race.advance(10)
    assert [lane.result.status for lane in lanes] == ["pruned", "pruned"]
    assert all(lane._thread is not None and not lane._thread.is_alive() for lane in lanes)


def test_a_lane_that_diverges_is_done_and_scores_inf() -> None:
    with Race() as race:
        low, high = (race.add(RunConfig("quadratic", "momentum", lr=lr)) for lr in (0.01, 50.0))
        race.advance(40)
        assert high.done and high.result.status == "diverged"
        assert high.window() == math.inf and math.isfinite(low.window())
        assert not low.done


# -- auto ---------------------------------------------------------------------------


def test_auto_keeps_a_run_that_its_spec_reproduces(task_file: Path) -> None:
    result = lrkit.auto(f"{task_file}:noisy", optimizer="momentum", seed=1)
    assert result.lr in LADDER and result.status == "ok" and result.seed == 1
    schedule = parse(result.schedule)
    assert schedule(0) == pytest.approx(result.lr)
    assert schedule(120) == 0.0
    again = execute(
        RunConfig(f"{task_file}:noisy", "momentum", result.schedule, lr=result.lr, seed=1)
    )
    assert again.final == result.metric
    # every update counted, within the budget
    assert result.steps_spent == sum(probe.steps for probe in result.probes)
    assert result.steps_spent <= 1.5 * 120
    (kept,) = [p for p in result.probes if p.status == "ok"]
    assert kept.steps == 120 and kept.lr == result.lr
    assert sorted(p.lr for p in result.probes) == list(LADDER)


@pytest.mark.parametrize("max_cost", [1.3, 1.5, 3.0])
def test_auto_stays_within_its_budget(max_cost: float) -> None:
    result = auto("quadratic", optimizer="adam", max_cost=max_cost)
    assert result.steps_spent <= max_cost * result.steps
    assert result.cost == result.steps_spent / 200
    assert [r.keep for r in result.rungs] == [3, 2, 1]
    pruned = [p for p in result.probes if p.status == "pruned"]
    assert len(pruned) + sum(p.status == "diverged" for p in result.probes) == len(LADDER) - 1


def test_the_chosen_lr_beats_the_lanes_it_stopped_at_the_last_rung() -> None:
    result = auto("quadratic", optimizer="momentum")
    last = result.rungs[-1].step
    at_last = {p.lr: p.scores[last] for p in result.probes if last in p.scores}
    assert min(at_last, key=at_last.get) == result.lr
    assert len(at_last) == 2


def test_auto_result_as_json_and_plot(tmp_path: Path) -> None:
    result = auto("quadratic", optimizer="adamw")
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["lr"] == result.lr and data["schedule"] == result.schedule
    assert data["steps_spent"] == result.steps_spent
    assert len(data["probes"]) == len(LADDER) and data["run"]["final"] == result.metric
    assert "AutoResult(lr=" in repr(result) and "runs)" in repr(result)
    png = result.plot(tmp_path / "auto.png")
    assert png.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimizer": "prodigy"}, "sets its own lr"),
        ({"max_cost": 1.0}, "max_cost must be > 1"),
        ({"max_cost": float("nan")}, "max_cost must be > 1"),
        ({"max_cost": "2"}, "max_cost must be a number"),
        ({"max_cost": 1.05}, "too few to compare 7 lrs"),
        ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*32 - 1\], got -1"),
        ({"seed": 2**32}, r"seed must be an integer in \[0, 2\*\*32 - 1\], got 4294967296"),
    ],
)
def test_bad_settings_are_one_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(AutoError, match=message):
        auto("quadratic", **kwargs)


def test_a_task_that_never_logs_its_loss_is_refused(task_file: Path) -> None:
    with pytest.raises(AutoError, match=r"trial.log\(step, loss=...\)"):
        auto(f"{task_file}:silent")


def test_a_task_that_always_fails_says_why(task_file: Path) -> None:
    with pytest.raises(AutoFailed, match="RuntimeError: no data here"):
        auto(f"{task_file}:broken")


def test_a_task_that_logs_every_few_steps_is_refused_at_the_first_rung(task_file: Path) -> None:
    # rungs count logged losses and the budget counts steps: it would overspend
    with pytest.raises(AutoError, match=r"logged \d+ training loss\(es\) over \d+ steps"):
        auto(f"{task_file}:every_third")


def test_a_kept_run_that_fails_after_the_race_is_an_error_not_a_choice(task_file: Path) -> None:
    with pytest.raises(AutoFailed, match=r"run kept .* failed after the race, at step 120 of 120: "
                       r"ValueError: the evaluation set is missing"):  # fmt: skip
        auto(f"{task_file}:fails_at_the_end")


def test_when_the_leaders_all_fail_the_message_says_the_others_were_stopped(
    task_file: Path,
) -> None:
    with pytest.raises(AutoFailed, match=r"still racing at step \d+ all diverged or failed "
                       r"\(lrs .*; the other lrs had been stopped at an earlier rung"):  # fmt: skip
        auto(f"{task_file}:fast_then_blows_up")


def test_cli_auto_exit_1_when_the_kept_run_diverges(task_file: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["auto", "--tasks", f"{task_file}:blows_up_late", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1, result.output
    assert "diverged after the race" in result.stderr
    assert (tmp_path / "auto.json").is_file() and (tmp_path / "auto.png").is_file()


def test_a_task_that_exits_in_a_lane_exits_as_it_would_alone(task_file: Path) -> None:
    # sys.exit() inside a raced run reaches the caller (it hung the race before)
    with pytest.raises(SystemExit, match="lr too high for this model"):
        auto(f"{task_file}:exits_at_high_lrs")


@settings(max_examples=200, deadline=None)
@given(
    steps=st.integers(min_value=1000, max_value=10**7),
    max_cost=st.floats(min_value=1.2, max_value=10.0),
)
def test_the_rungs_fit_the_budget(steps: int, max_cost: float) -> None:
    rungs = plan_rungs(steps, max_cost)
    spent, alive = 0, len(LADDER)
    for rung in rungs:
        spent += (alive - rung.keep) * rung.step
        alive = rung.keep
    assert spent <= (max_cost - 1) * steps
    assert [r.step for r in rungs] == sorted({r.step for r in rungs})
    assert rungs[-1].step <= 0.5 * steps + 1


def test_a_task_too_short_for_the_race_is_refused() -> None:
    plan_rungs(100, 1.5)
    with pytest.raises(AutoError, match="raise max_cost or give the task more steps"):
        plan_rungs(90, 1.5)
    with pytest.raises(AutoError, match=r"after 2 step\(s\); give the task more steps$"):
        plan_rungs(49, 1e9)  # past the last rung's cap a larger max_cost changes nothing


# -- the command --------------------------------------------------------------------


def test_cli_auto_prints_the_choice_and_writes_its_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "auto",
            "--tasks",
            "quadratic",
            "--optimizer",
            "momentum",
            "--seed",
            "2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "auto.json").read_text())
    assert f"lr           {data['lr']:g}" in result.stdout
    assert f"schedule     {data['schedule']}" in result.stdout
    assert "loss " in result.stdout and "(seed 2)" in result.stdout
    assert f"steps spent  {data['steps_spent']}" in result.stdout
    assert "step 6/200: kept lr" in result.stderr  # the race as it goes
    assert f"step 180/200: lr {data['lr']:g}, loss " in result.stderr  # then the kept run
    assert (out / "auto.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--tasks", "quadratic,digits"], 2, "auto takes one task, got 2"),
        (["--tasks", "nope"], 2, "unknown task 'nope'"),
        (["--tasks", "quadratic", "--optimizer", "schedulefree"], 2, "sets its own lr"),
        (["--tasks", "quadratic", "--optimizer", "lion"], 2, "--optimizer"),
        (["--tasks", "quadratic", "--max-cost", "1"], 2, "max_cost must be > 1"),
    ],
)
def test_cli_auto_errors(args: list[str], code: int, message: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["auto", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_cli_auto_exit_1_when_every_run_fails(task_file: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["auto", "--tasks", f"{task_file}:broken", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "diverged or failed" in result.stderr


def test_the_docs_example_runs_as_written(tmp_path: Path) -> None:
    page = (Path(__file__).parents[1] / "docs" / "auto.md").read_text(encoding="utf-8")
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "fit_sine.py").write_text(code)
    done = subprocess.run(
        [sys.executable, "fit_sine.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    lr, spec = first.split(" ", 1)
    assert float(lr) in LADDER and parse(spec)(0) == float(lr)
    steps = int(second.split(" after ")[1].split(" steps")[0])
    cost = float(second.rsplit("(", 1)[1].split(" runs")[0])
    assert steps <= 1.5 * 200 and cost == pytest.approx(steps / 200, abs=0.005)


def test_stopping_a_race_while_a_lane_trains_does_not_hang(task_file: Path) -> None:
    """As on Ctrl-C: the caller leaves while a lane is between two pauses."""
    import threading

    race = Race()
    lane = race.add(RunConfig(f"{task_file}:noisy", "adamw", "cosine()", lr=0.01))
    caller = threading.Thread(target=race.advance, args=(100,), daemon=True)
    caller.start()
    deadline = time.monotonic() + 60
    while lane.logged < 5 and time.monotonic() < deadline:  # the lane is training
        time.sleep(0.001)
    race.__exit__(None, None, None)  # what leaving the with block does
    caller.join(timeout=60)
    assert not caller.is_alive()
    assert lane.result is not None and lane.result.status == "pruned"
    assert lane.logged < 100


KERAS_CHECK = """
import lrkit
from lrkit.bench.run import RunConfig, execute

task = "{root}/examples/task_keras.py:digits_keras"
result = lrkit.auto(task, optimizer="adamw", seed=1)
again = execute(RunConfig(task, "adamw", result.schedule, lr=result.lr, seed=1))
print(result.lr, result.metric, again.final, result.steps_spent)
"""


def test_auto_on_a_keras_task_on_jax() -> None:
    """A Keras task (trial.schedule through to_keras) races in threads too, and reproduces."""
    root = Path(__file__).parents[1]
    done = subprocess.run(
        [sys.executable, "-c", KERAS_CHECK.format(root=root)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lr, metric, again, spent = done.stdout.split()[-4:]
    assert float(lr) in LADDER and metric == again and int(spent) <= 450
