"""``lrkit tune`` / ``lrkit.tune``: real Optuna, real processes, tiny built-in tasks."""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lrkit
from lrkit.bench.store import RunStore
from lrkit.bench.tune import TuneError, mask_url, tune
from lrkit.cli import app

#: Small budgets keep every tune call to a few seconds.
QUICK = ["--budget", "0.1"]

SLOW_TASK = """
import time
import lrkit

@lrkit.task(metric="loss", steps=40)
def slow(trial):
    x = 3.0
    for step in range(trial.steps):
        x -= trial.schedule(step) * 2 * x
        trial.log(step, loss=x * x)
        time.sleep(0.01)
        if (step + 1) % 10 == 0:
            trial.report(step + 1, x * x)
    return x * x
"""

RAISING_TASK = """
import lrkit

@lrkit.task(metric="loss", steps=10)
def broken(trial):
    raise RuntimeError("boom in the user's task")
"""


def _states(db: Path, study: str = "lrkit") -> dict[str, int]:
    """Trial states in an Optuna SQLite storage, read with plain sqlite3."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT t.state, COUNT(*) FROM trials t JOIN studies s ON t.study_id = s.study_id "
            "WHERE s.study_name = ? GROUP BY t.state",
            (study,),
        ).fetchall()
    return {state: n for state, n in rows}


def _counted(db: Path) -> int:
    states = _states(db)
    return states.get("COMPLETE", 0) + states.get("PRUNED", 0)


def _tune_cli(*args: str) -> object:
    return CliRunner().invoke(app, ["tune", *args])


def test_cli_resumes_to_the_total_and_prints_a_spec_that_parses(tmp_path: Path) -> None:
    out = tmp_path / "t"
    base = ["--tasks", "quadratic", "--optimizers", "sgd,adam", "--schedules", "cosine()"]
    base += ["--schedules", "constant()", "--lr-range", "1e-3,0.5", "--out", str(out), *QUICK]
    first = _tune_cli(*base, "--trials", "3")
    assert first.exit_code == 0, first.output
    assert _counted(out / "tune.sqlite") == 3
    again = _tune_cli(*base, "--trials", "5")
    assert again.exit_code == 0, again.output
    assert "5 trials, 3 already in the study, 2 to run in this process" in again.output
    assert _counted(out / "tune.sqlite") == 5
    done = _tune_cli(*base, "--trials", "5")
    assert "nothing to run" in done.output and "0 trial(s) run now" in done.output
    assert _counted(out / "tune.sqlite") == 5
    # The printed best: "OPTIMIZER  SPEC", then the compare command that confirms it.
    lines = done.output.splitlines()
    spec_line = lines[next(i for i, x in enumerate(lines) if x.startswith("best: trial")) + 1]
    optimizer, spec = spec_line.split("  ", 1)
    assert optimizer in ("sgd", "adam")
    schedule = lrkit.parse(spec)
    assert schedule.lr == float(f"{schedule.lr:.2g}")
    assert str(schedule) == spec
    command = next(x for x in lines if x.startswith("confirm it: "))[len("confirm it: ") :]
    argv = shlex.split(command)
    assert argv[:2] == ["lrkit", "compare"] and argv[argv.index("--optimizers") + 1] == optimizer
    # results.json: every trial with its state, params, value and summary; the best.
    doc = json.loads((out / "results.json").read_text())
    assert doc["study"] == "lrkit" and doc["storage"].startswith("sqlite:///")
    assert [t["number"] for t in doc["trials"]] == [0, 1, 2, 3, 4]
    for t in doc["trials"]:
        assert set(t["params"]) == {"lr", "optimizer", "schedule"}
        assert {"status", "steps_done", "run_key", "host", "pid"} <= set(t["user_attrs"])
    assert doc["best"]["optimizer"] == optimizer and doc["best"]["spec"] == spec
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3
    assert "http" not in page and "<script" not in page  # self-contained
    with RunStore(out / "runs.sqlite") as store:
        assert len(store) == 5


def test_library_call_returns_best_and_prunes_bad_lrs(tmp_path: Path) -> None:
    results = lrkit.tune(
        "quadratic",
        optimizers=["sgd"],
        schedules=["constant()"],
        lr_range=(1e-5, 0.3),  # sgd at 1e-5 barely moves: the median pruner stops those
        trials=12,
        search="random",
        pruner="median",
        budget=0.25,
        out=tmp_path / "p",
    )
    counts = results.counts()
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 12
    assert counts.get("PRUNED", 0) >= 1, counts
    for t in results.trials:
        if t["state"] == "PRUNED":
            attrs = t["user_attrs"]
            assert attrs["status"] == "pruned" and attrs["steps_done"] < attrs["steps"]
            assert t["intermediate_values"]  # the pruner saw the reports
    pruned_runs = [r for r in results.runs if r.status == "pruned"]
    assert len(pruned_runs) == counts["PRUNED"] and len(results) == 12
    best = results.best
    assert best is not None and best.optimizer == "sgd" and best.schedule == "constant()"
    completed = [t["value"] for t in results.trials if t["state"] == "COMPLETE"]
    assert best.value == min(v for v in completed if v is not None)
    assert 1e-5 <= best.lr <= 0.3 and lrkit.parse(best.spec).lr == float(f"{best.lr:.2g}")


def test_random_search_is_reproducible(tmp_path: Path) -> None:
    kwargs = dict(optimizers=["sgd", "adam"], schedules=["constant()"], trials=3, budget=0.1)
    a = tune("quadratic", search="random", out=tmp_path / "a", **kwargs)
    b = tune("quadratic", search="random", out=tmp_path / "b", **kwargs)
    assert [t["params"] for t in a.trials] == [t["params"] for t in b.trials]


def test_diverged_trial_is_complete_with_the_worst_value(tmp_path: Path) -> None:
    import optuna

    out = tmp_path / "d"
    done = _tune_cli(
        "--tasks", "quadratic", "--optimizers", "sgd", "--schedules", "constant()",
        "--lr-range", "50,100", "--trials", "2", "--out", str(out), *QUICK,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "no trial finished with a finite value" in done.output
    study = optuna.load_study(study_name="lrkit", storage=f"sqlite:///{out / 'tune.sqlite'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all(t.value == math.inf for t in study.trials)
    assert all(t.user_attrs["status"] == "diverged" for t in study.trials)
    doc = json.loads((out / "results.json").read_text())
    assert doc["best"] is None and all(t["value"] is None for t in doc["trials"])


def test_raising_task_fails_trials_and_stops_after_five(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text(RAISING_TASK)
    out = tmp_path / "r"
    done = _tune_cli(
        "--tasks", f"{tmp_path / 'broken.py'}:broken", "--optimizers", "sgd",
        "--schedules", "constant()", "--trials", "20", "--out", str(out),
    )  # fmt: skip
    assert done.exit_code == 1, done.output
    assert "5 failed trials in a row" in done.output
    assert "Traceback" not in done.output
    assert _states(out / "tune.sqlite") == {"FAIL": 5}
    doc = json.loads((out / "results.json").read_text())
    reasons = {t["user_attrs"]["reason"] for t in doc["trials"]}
    assert reasons == {"RuntimeError: boom in the user's task"}
    with RunStore(out / "runs.sqlite") as store:
        runs = store.results()
    assert len(runs) == 5 and all("boom" in (r.traceback or "") for r in runs)


def test_workers_two_run_trials_in_worker_processes(tmp_path: Path) -> None:
    results = tune(
        "rosenbrock",
        optimizers=["adam"],
        schedules=["cosine()", "constant()"],
        lr_range=(1e-3, 0.1),
        trials=4,
        workers=2,
        budget=0.05,
        out=tmp_path / "w",
    )
    counts = results.counts()
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 4
    assert "RUNNING" not in counts
    pids = {r.env["pid"] for r in results.runs}
    assert str(os.getpid()) not in pids and 1 <= len(pids) <= 2
    assert all(t["user_attrs"]["pid"] == os.getpid() for t in results.trials)


def test_seeds_mean_and_storage_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "elsewhere" / "optuna.db"
    monkeypatch.setenv("LRKIT_STORAGE", f"sqlite:///{db}")
    results = tune(
        "quadratic",
        optimizers=["adam"],
        schedules=["constant()"],
        lr_range=(0.01, 0.1),
        trials=2,
        seeds=2,
        pruner="none",
        budget=0.1,
        study="two-seeds",
        out=tmp_path / "s",
    )
    assert db.is_file() and not (tmp_path / "s" / "tune.sqlite").exists()
    assert len(results) == 4  # two runs (seeds 0 and 1) per trial
    by_key = {r.key: r for r in results.runs}
    for t in results.trials:
        finals = [by_key[k].final for k in t["user_attrs"]["run_keys"]]
        assert [by_key[k].config["seed"] for k in t["user_attrs"]["run_keys"]] == [0, 1]
        assert t["value"] == pytest.approx(sum(finals) / 2)


def test_kill_9_mid_study_then_rerun_counts_each_trial_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "slow.py").write_text(SLOW_TASK)
    out = tmp_path / "k"
    args = ["tune", "--tasks", "slow.py:slow", "--optimizers", "sgd", "--schedules",
            "constant()", "--lr-range", "0.01,0.4", "--trials", "8", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrkit.cli", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = out / "tune.sqlite"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                states = _states(db) if db.exists() else {}
            except sqlite3.OperationalError:  # tables not created yet
                states = {}
            if states.get("RUNNING") and states.get("COMPLETE", 0) + states.get("PRUNED", 0) >= 2:
                break
            time.sleep(0.02)
        else:
            pytest.fail("lrkit tune never had 2 finished trials and a running one")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = _states(db)
    assert killed.get("RUNNING") == 1, killed
    done_before = _counted(db)
    monkeypatch.chdir(tmp_path)
    rerun = _tune_cli(*args[1:])
    assert rerun.exit_code == 0, rerun.output
    assert "1 trial(s) left RUNNING by a process that died: marked FAIL" in rerun.output
    after = _states(db)
    assert after.get("COMPLETE", 0) + after.get("PRUNED", 0) == 8
    assert "RUNNING" not in after and after.get("FAIL") == 1
    assert f"{8 - done_before} to run" in rerun.output
    doc = json.loads((out / "results.json").read_text())
    (dead,) = [t for t in doc["trials"] if t["state"] == "FAIL"]
    assert "died" in dead["user_attrs"]["reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "quadratic,rosenbrock"], "one task at a time"),
        (["--tasks", "nope"], "unknown task 'nope'"),
        (["--tasks", "missing.py:task"], "does not exist"),
        (["--tasks", "quadratic", "--lr-range", "1,0.1"], "0 < LOW < HIGH"),
        (["--tasks", "quadratic", "--search", "grid"], "--search must be one of"),
        (["--tasks", "quadratic", "--pruner", "sometimes"], "--pruner must be one of"),
        (["--tasks", "quadratic", "--optimizers", "adamm"], "unknown optimizer 'adamm'"),
        (["--tasks", "quadratic", "--storage", "nodb://x"], "--storage 'nodb://x'"),
    ],
)
def test_bad_input_exits_2_with_one_message(tmp_path: Path, args: list[str], message: str) -> None:
    done = _tune_cli(*args, "--out", str(tmp_path / "bad"))
    assert done.exit_code == 2, done.output
    assert message in done.output and "Traceback" not in done.output


def test_a_study_of_another_space_is_refused(tmp_path: Path) -> None:
    kwargs = dict(schedules=["constant()"], trials=1, budget=0.1, out=tmp_path / "x")
    tune("quadratic", optimizers=["sgd"], **kwargs)
    with pytest.raises(TuneError, match="differs in: optimizers"):
        tune("quadratic", optimizers=["adam"], **kwargs)


def test_a_study_of_an_edited_task_is_refused_and_one_made_before_task_code_resumes(
    tmp_path: Path,
) -> None:
    import optuna

    task = tmp_path / "train.py"
    body = (
        "import lrkit\n\n@lrkit.task(metric='loss', steps=5)\ndef fit(trial):\n"
        "    for step in range(trial.steps):\n        trial.log(step, loss=1.0)\n"
        "    return trial.lr * SCALE\n"
    )
    task.write_text("SCALE = 1\n" + body)
    kwargs = dict(optimizers=["sgd"], schedules=["constant()"], budget=1.0, workers=0)
    tune(f"{task}:fit", trials=2, out=tmp_path / "t", **kwargs)
    task.write_text("SCALE = 3\n" + body)  # the trials so far ran other code
    with pytest.raises(TuneError, match=r"differs in: task_code\) \(the task's code changed"):
        tune(f"{task}:fit", trials=4, out=tmp_path / "t", **kwargs)
    # A study whose stored space predates task_code resumes as before.
    study = optuna.load_study(
        study_name="lrkit", storage=f"sqlite:///{tmp_path / 't' / 'tune.sqlite'}"
    )
    space = dict(study.user_attrs["lrkit_space"])
    del space["task_code"]
    study.set_user_attr("lrkit_space", space)
    again = tune(f"{task}:fit", trials=4, out=tmp_path / "t", **kwargs)
    assert len(again.trials) == 4


def test_mask_url_hides_the_password() -> None:
    assert mask_url("mysql+pymysql://u:p%40ss@h/db") == "mysql+pymysql://u:***@h/db"


def test_docs_tune_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/tune.md's task file and command, exactly as written."""
    page = (Path(__file__).parents[1] / "docs" / "tune.md").read_text(encoding="utf-8")
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    (line,) = [x for x in page.splitlines() if x.startswith("lrkit tune --tasks train.py:")]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(textwrap.dedent(code))
    done = CliRunner().invoke(app, shlex.split(line)[1:])
    assert done.exit_code == 0, done.output
    assert "confirm it: lrkit compare --tasks train.py:fit_line" in done.output
    assert (tmp_path / "tune-demo" / "report.html").is_file()
