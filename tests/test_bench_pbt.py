"""``lrkit tune --search pbt``: population-based training with Ray Tune, and its record.

One small population (4 members on ``quadratic`` at budget 0.1: 20 steps, 15
reports) runs once through the CLI on the session's local Ray; the tests
read what it wrote. The pure parts (histories, the member's lr) and the
built-in tasks' checkpoints are tested without Ray.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import lrkit
from lrkit.bench.pbt import MemberLr, continue_history, history_spec, start_lrs
from lrkit.bench.run import RunConfig, RunResult, execute
from lrkit.bench.trial import Trial
from lrkit.cli import app
from lrkit.torch import Scheduler

#: One xdist worker runs the module: the population fixture and the session's Ray stay single.
pytestmark = pytest.mark.xdist_group("ray")

LR_RANGE = (0.01, 1.0)
POPULATION = 4


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


# --------------------------------------------------------------------------
# One population, run once
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def population(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("pbt")
    done = invoke(
        "tune",
        "--tasks", "quadratic",
        "--optimizers", "sgd",
        "--search", "pbt",
        "--trials", str(POPULATION),
        "--lr-range", f"{LR_RANGE[0]},{LR_RANGE[1]}",
        "--budget", "0.1",
        "--workers", "2",
        "--out", str(out),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    doc = json.loads((out / "results.json").read_text())
    return {"doc": doc, "output": done.output}


def _history_lrs(history: list[list[Any]], steps: int) -> list[float]:
    """The lr of each update 0..steps-1 that a history of (start_step, lr) pieces gives."""
    lrs = []
    for t in range(steps):
        lrs.append(next(lr for start, lr in reversed(history) if start <= t))
    return lrs


def test_population_completes_and_prints_its_schedule(population: dict[str, Any]) -> None:
    doc, output = population["doc"], population["output"]
    members = doc["members"]
    assert len(members) == POPULATION
    assert [m["status"] for m in members] == ["ok"] * POPULATION
    assert all(math.isfinite(m["final"]) for m in members)
    assert sorted(m["start_lr"] for m in members) == start_lrs(POPULATION, *LR_RANGE)
    best = doc["best"]
    assert best["value"] == min(m["final"] for m in members)
    assert doc["pbt_schedule"] == members[best["trial"]]["schedule"] == best["spec"]
    assert f"pbt_schedule: sgd  {doc['pbt_schedule']}" in output
    assert "--schedules" in best["command"]


def test_members_exploit(population: dict[str, Any]) -> None:
    doc = population["doc"]
    assert sum(m["exploits"] for m in doc["members"]) >= 1
    assert doc["exploits"], "no exploit recorded"
    for event in doc["exploits"]:
        assert event["member"] != event["from"]
        assert LR_RANGE[0] <= event["lr"] <= LR_RANGE[1]
        assert 0 < event["step"] < doc["space"]["steps"]


def test_pbt_schedule_parses_stays_in_range_and_replays(population: dict[str, Any]) -> None:
    doc = population["doc"]
    steps = doc["space"]["steps"]
    best = doc["members"][doc["best"]["trial"]]
    spec = lrkit.parse(doc["pbt_schedule"])
    assert str(spec) == doc["pbt_schedule"]
    expected = _history_lrs(best["history"], steps)
    assert all(LR_RANGE[0] <= lr <= LR_RANGE[1] for lr in expected)
    assert [spec(t) for t in range(steps)] == expected
    # lrkit.torch.Scheduler replays exactly those lrs at those steps.
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=max(expected))  # the spec's peak
    scheduler = Scheduler(optimizer, doc["pbt_schedule"])
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == expected


def test_replaying_a_members_schedule_retraces_it(population: dict[str, Any]) -> None:
    # Members share the seed and restore the batch stream by step, so a
    # member's lineage is one run on its schedule: a replay from scratch gives
    # its final metric, exploits included.
    doc = population["doc"]
    replay = execute(RunConfig("quadratic", "sgd", doc["pbt_schedule"], 0.1, 0, 0.1))
    assert replay.status == "ok", replay.reason
    assert replay.final == doc["best"]["value"]
    for m in doc["members"]:
        again = execute(RunConfig("quadratic", "sgd", m["schedule"], 0.1, 0, 0.1))
        assert again.final == m["final"], m


# --------------------------------------------------------------------------
# Input the population refuses (exit 2, before Ray)
# --------------------------------------------------------------------------


def test_task_without_checkpoints_exits_2_naming_it(tmp_path: Path) -> None:
    task_file = tmp_path / "plain_task.py"
    task_file.write_text(
        "import lrkit\n\n@lrkit.task(metric='loss', steps=10)\ndef plain(trial):\n    return 1.0\n"
    )
    done = invoke(
        "tune", "--tasks", f"{task_file}:plain", "--search", "pbt", "--trials", "4",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.exit_code == 2, done.output
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert len(lines) == 1, done.output
    assert "plain_task.py:plain" in lines[0]
    assert "checkpoints=True" in lines[0]
    assert "Traceback" not in done.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"schedules": "cosine()"}, "constant()"),
        ({"population": 1}, ">= 2"),
        ({"seeds": 2}, "--seeds must be 1"),
        ({"optimizers": "prodigy"}, "sets its own step size"),
    ],
)
def test_bad_pbt_input_is_a_tune_error(
    tmp_path: Path, options: dict[str, Any], needle: str
) -> None:
    from lrkit.bench.pbt import tune_pbt
    from lrkit.bench.tune import TuneError

    kwargs: dict[str, Any] = {"optimizers": "sgd", "out": tmp_path, **options}
    with pytest.raises(TuneError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        tune_pbt("quadratic", **kwargs)


# --------------------------------------------------------------------------
# Pure parts
# --------------------------------------------------------------------------


def test_histories_continue_and_write_as_specs() -> None:
    history = continue_history([(0, 0.1)], 0, 0.1)
    assert history == [(0, 0.1)]
    history = continue_history(history, 40, 0.2)
    history = continue_history(history, 80, 0.05)
    # A restore before the last change drops what the restored state never used.
    assert continue_history(history, 60, 0.3) == [(0, 0.1), (40, 0.2), (60, 0.3)]
    assert continue_history(history, 40, 0.1) == [(0, 0.1)]
    spec = history_spec(history)
    assert spec == (
        "join(constant(lr=0.1), constant(lr=0.2), constant(lr=0.05), boundaries=[40, 80])"
    )
    schedule = lrkit.parse(spec)
    assert [schedule(t) for t in (0, 39, 40, 79, 80, 10**9)] == [0.1, 0.1, 0.2, 0.2, 0.05, 0.05]
    with pytest.raises(ValueError, match="starts at step 0"):
        history_spec([(5, 0.1)])


def test_member_lr_survives_a_scheduler_state_of_another_lr() -> None:
    weight = torch.nn.Parameter(torch.zeros(1))
    donor = Scheduler(torch.optim.SGD([weight], lr=0.1), MemberLr(0.1))
    for _ in range(7):
        donor.optimizer.step()
        donor.step()
    optimizer = torch.optim.SGD([weight], lr=0.4)
    member = Scheduler(optimizer, MemberLr(0.4))
    member.load_state_dict(donor.state_dict())
    assert member.last_epoch == 7
    assert optimizer.param_groups[0]["lr"] == 0.4


# --------------------------------------------------------------------------
# Built-in tasks: checkpoint and restore
# --------------------------------------------------------------------------


class _Keeping(Trial):
    """A trial that keeps a deep copy of every checkpoint, by the step reported next."""

    kept: dict[int, Any]

    def checkpoint(self, state: Any) -> None:
        self._pending = copy.deepcopy(state)

    def report(self, step: int, value: Any) -> None:
        super().report(step, value)
        type(self).kept[step] = self._pending


class _Restoring(Trial):
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._restore = type(self).state


@pytest.mark.parametrize(
    ("task", "optimizer", "schedule"),
    [
        ("digits", "adam", "warmup(cosine(), steps=10)"),
        ("quadratic", "sgd", "plateau(constant(), patience=1, factor=0.5)"),
    ],
)
def test_builtin_restore_continues_like_an_unbroken_run(
    task: str, optimizer: str, schedule: str
) -> None:
    config = RunConfig(task, optimizer, schedule, 0.05, seed=3, budget=0.2)
    assert config.task_object.checkpoints
    _Keeping.kept = {}
    whole = execute(config, make_trial=_Keeping)
    assert whole.status == "ok", whole.reason
    at = sorted(_Keeping.kept)[len(_Keeping.kept) // 2]
    assert 0 < at < config.steps
    _Restoring.state = _Keeping.kept[at]
    resumed = execute(config, make_trial=_Restoring)
    assert resumed.status == "ok", resumed.reason
    assert resumed.final == whole.final
    assert resumed.loss == whole.loss[at:]
    assert resumed.lr == whole.lr[at:]
    metric = whole.metric
    after = [i for i, s in enumerate(whole.eval_steps) if s > at]
    assert resumed.eval_steps == [whole.eval_steps[i] for i in after]
    assert resumed.evals[metric] == [whole.evals[metric][i] for i in after]


def test_checkpoints_do_not_change_a_plain_run() -> None:
    config = RunConfig("digits", "sgd", "cosine()", 0.1, seed=0, budget=0.1)
    plain = execute(config)
    keeping = execute(config, make_trial=_Keeping)
    assert isinstance(plain, RunResult)
    assert plain.loss == keeping.loss
    assert plain.final == keeping.final
