"""``lrkit compare`` on the user's own task files, as a user sees it: exit codes, messages,
statuses in results.json, resuming, and the example in docs/compare.md.

Task files are written into ``tmp_path``. Cases that need a fresh process (a
file edited between two commands, PYTHONPATH, worker processes, messages
printed by the real script) run the ``lrkit`` console script; the others
run the command in this process through typer's ``CliRunner`` with
``--workers 0``. In-process references are absolute paths: a process caches
loaded tasks by their reference.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lrkit.cli import app

LRKIT = str(Path(sys.executable).with_name("lrkit"))
DOCS = Path(__file__).resolve().parents[1] / "docs" / "compare.md"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def invoke(*args: str) -> Any:
    """``lrkit ARGS`` in this process."""
    return CliRunner().invoke(app, list(args))


def lrkit_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """``lrkit ARGS`` through the console script, in ``cwd``."""
    return subprocess.run(
        [LRKIT, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def results(out: Path) -> list[dict[str, Any]]:
    return json.loads((out / "results.json").read_text())["runs"]


#: A task with no framework: gradient descent on x**2 with the trial's schedule.
SHRINK = """
    import math

    import lrkit

    @lrkit.task(metric="loss", steps=10)
    def shrink(trial):
        x = 3.0
        for step in range(trial.steps):
            x -= trial.schedule(step) * 2 * x
            trial.log(step, loss=x * x, lr_seen=trial.lr)
        return x * x
"""

GRID = ["--optimizers", "sgd", "--schedules", "constant()", "--seeds", "1"]


# --------------------------------------------------------------------------
# (a) A task that raises: its runs are errors, the others run, exit 1
# --------------------------------------------------------------------------


def test_a_raising_task_is_stored_as_error_and_the_others_still_run(tmp_path: Path) -> None:
    task = write(
        tmp_path / "flaky.py",
        """
        import lrkit

        @lrkit.task(metric="loss", steps=10)
        def flaky(trial):
            x = 1.0
            for step in range(trial.steps):
                x -= trial.schedule(step) * x
                trial.log(step, loss=x)
                if trial.lr > 0.5 and step == 3:
                    raise RuntimeError(f"boom at lr {trial.lr:g}")
            return x
        """,
    )
    out = tmp_path / "out"
    done = invoke(
        "compare", "--tasks", f"{task}:flaky", "--optimizers", "sgd",
        "--schedules", "constant()", "--lrs", "0.1,1", "--seeds", "2",
        "--workers", "0", "--out", str(out),
    )  # fmt: skip
    assert done.exit_code == 1, done.output
    assert "2 run(s) failed with an error" in done.stderr
    assert "RuntimeError: boom at lr 1" in done.stderr
    runs = results(out)
    assert len(runs) == 4
    by_lr = {lr: [r for r in runs if r["config"]["lr"] == lr] for lr in (0.1, 1.0)}
    for run in by_lr[1.0]:
        assert run["status"] == "error"
        assert run["reason"] == "RuntimeError: boom at lr 1"
        assert run["traceback"].startswith("Traceback (most recent call last)")
        assert 'raise RuntimeError(f"boom at lr {trial.lr:g}")' in run["traceback"]
        assert run["final"] is None
        assert run["steps_done"] == 4  # what it logged before raising is kept
    for run in by_lr[0.1]:
        assert run["status"] == "ok" and math.isfinite(run["final"]) and run["traceback"] is None


# --------------------------------------------------------------------------
# (b) NaN: diverged, not an error
# --------------------------------------------------------------------------


def test_nan_final_metric_and_nan_loss_are_diverged_with_exit_0(tmp_path: Path) -> None:
    task = write(
        tmp_path / "nans.py",
        """
        import lrkit

        @lrkit.task(metric="loss", steps=10)
        def nan_final(trial):
            for step in range(trial.steps):
                trial.log(step, loss=1.0)
            return float("nan")

        @lrkit.task(metric="loss", steps=10)
        def nan_loss(trial):
            for step in range(trial.steps):
                trial.log(step, loss=float("nan") if step == 5 else 1.0)
            return 1.0
        """,
    )
    out = tmp_path / "out"
    done = invoke(
        "compare", "--tasks", f"{task}:nan_final,{task}:nan_loss", *GRID, "--lrs", "0.1",
        "--workers", "0", "--out", str(out),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "failed with an error" not in done.output  # diverged is not an error
    final, loss = results(out)
    assert (final["task"], final["status"], final["final"]) == ("nan_final", "diverged", None)
    assert final["reason"] == "the final loss is nan"
    assert final["traceback"] is None
    assert (loss["task"], loss["status"], loss["diverged_at"]) == ("nan_loss", "diverged", 5)
    assert loss["reason"] == "loss is nan at step 5"
    assert loss["loss"] == [1.0] * 5  # the steps before it
    assert loss["final"] is None and loss["traceback"] is None


# --------------------------------------------------------------------------
# (c) References that cannot be loaded: exit 2 before any run, one line
# --------------------------------------------------------------------------

LOAD_CASES = [
    ("missing.py:train", "file 'missing.py' does not exist"),
    ("syntax.py:train", "syntax.py' failed to import: SyntaxError: "),
    ("raises.py:train", "raises.py' failed to import (line 2): ValueError: no data here"),
    ("tasks.py:trian", "file 'tasks.py' has no 'trian'; tasks there: other, train"),
    ("tasks.py:helper", "'helper' in file 'tasks.py' is not an lrkit task"),
    ("digts", "unknown task 'digts'; built-in tasks: "),
    ("nopkg.train:train", "cannot import module 'nopkg.train'"),
]


def test_unloadable_references_exit_2_before_any_run_with_one_line(tmp_path: Path) -> None:
    write(tmp_path / "syntax.py", "import lrkit\ndef train(trial:\n")
    write(tmp_path / "raises.py", "import lrkit\nraise ValueError('no data here')\n")
    write(
        tmp_path / "tasks.py",
        """
        import lrkit

        def helper(trial):
            return 0.0

        @lrkit.task(metric="loss", steps=5)
        def train(trial):
            return 0.0

        other = lrkit.task(helper, metric="loss", steps=5, name="other")
        """,
    )
    for ref, message in LOAD_CASES:
        out = tmp_path / f"out-{ref.split(':')[0]}"
        # A good task first: the bad reference stops the whole command before any run.
        done = lrkit_cli(
            tmp_path, "compare", "--tasks", f"tasks.py:train,{ref}", *GRID, "--lrs", "0.1",
            "--workers", "0", "--out", str(out),
        )  # fmt: skip
        text = done.stdout + done.stderr
        assert done.returncode == 2, (ref, text)
        lines = [line for line in text.splitlines() if line.strip()]
        assert len(lines) == 1, (ref, text)
        assert message in lines[0], (ref, lines[0])
        assert ref.split(":")[0] in lines[0]  # it names the reference (or its file)
        assert "Traceback" not in text
        assert not (out / "runs.sqlite").exists() and not (out / "results.json").exists()


# --------------------------------------------------------------------------
# (d) Editing the task file re-runs its runs; an unchanged rerun runs nothing
# --------------------------------------------------------------------------


def test_editing_the_task_file_reruns_and_an_unchanged_rerun_runs_nothing(tmp_path: Path) -> None:
    task = write(tmp_path / "train.py", SHRINK)
    args = ["compare", "--tasks", f"{task}:shrink", *GRID, "--lrs", "0.1,0.2"]
    args += ["--workers", "0", "--out", str(tmp_path / "out")]

    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "2 runs: 2 run now, 0 from the store" in first.stdout
    keys = {r["key"] for r in results(tmp_path / "out")}

    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "2 runs: 0 run now, 2 from the store" in again.stdout
    assert {r["key"] for r in results(tmp_path / "out")} == keys

    # The code changed; a new process (this one has the file imported already).
    task.write_text(task.read_text().replace("x = 3.0", "x = 2.0"))
    edited = lrkit_cli(tmp_path, *args)
    assert edited.returncode == 0, edited.stderr
    assert "2 runs: 2 run now, 0 from the store" in edited.stdout
    runs = results(tmp_path / "out")
    assert not {r["key"] for r in runs} & keys
    assert all(
        r["loss"][0] == pytest.approx((2.0 * (1 - 2 * r["config"]["lr"])) ** 2) for r in runs
    )


# --------------------------------------------------------------------------
# (e) A spec that sets its own lr: --lrs does not apply to it
# --------------------------------------------------------------------------


def test_a_spec_with_its_own_lr_runs_once_per_seed_at_that_lr(tmp_path: Path) -> None:
    task = write(tmp_path / "pinned.py", SHRINK)
    out = tmp_path / "out"
    done = invoke(
        "compare", "--tasks", f"{task}:shrink", "--optimizers", "sgd",
        "--schedules", "cosine()", "--schedules", "warmup(cosine(lr=0.05), steps=2)",
        "--lrs", "0.1,0.2,0.3", "--seeds", "2", "--workers", "0", "--out", str(out),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    said = "--lrs does not apply to 'warmup(cosine(lr=0.05), steps=2)': it sets its own lr (0.05)"
    assert done.output.count(said) == 1
    assert done.output.count("does not apply") == 1
    assert "8 runs: 8 run now" in done.output  # 3 lrs x 2 seeds + 2 seeds, not 3 lrs x 2
    pinned = [r for r in results(out) if r["config"]["schedule"].startswith("warmup")]
    assert sorted(r["config"]["seed"] for r in pinned) == [0, 1]
    for run in pinned:
        assert run["config"]["lr"] == 0.05
        assert run["identity"]["schedule"] == "warmup(cosine(lr=0.05, steps=8), steps=2)"
        assert max(run["lr"]) == 0.05
        assert {v for _, v in run["scalars"]["lr_seen"]} == {0.05}  # trial.lr in the task


# --------------------------------------------------------------------------
# (f, g) package.module:name, and a task file importing a sibling, in workers
# --------------------------------------------------------------------------


def test_module_references_and_sibling_imports_work_in_worker_processes(tmp_path: Path) -> None:
    write(tmp_path / "lib" / "mypkg" / "__init__.py", "")
    write(
        tmp_path / "lib" / "mypkg" / "training.py",
        """
        import lrkit

        @lrkit.task(metric="loss", steps=8)
        def fit(trial):
            x = 1.0
            for step in range(trial.steps):
                x -= trial.schedule(step) * x
                trial.log(step, loss=x)
            return x
        """,
    )
    write(
        tmp_path / "proj" / "helpers.py",
        """
        def make_data(seed):
            return [float(seed + k) for k in range(4)]
        """,
    )
    write(
        tmp_path / "proj" / "train.py",
        """
        import lrkit
        from helpers import make_data  # beside this file

        @lrkit.task(metric="loss", steps=8)
        def fit_data(trial):
            data = make_data(trial.seed)
            w = 0.0
            for step in range(trial.steps):
                grad = sum(2 * (w - d) for d in data) / len(data)
                w -= trial.schedule(step) * grad
                trial.log(step, loss=sum((w - d) ** 2 for d in data) / len(data), w=w)
            return sum((w - d) ** 2 for d in data) / len(data)
        """,
    )
    done = lrkit_cli(
        tmp_path, "compare", "--tasks", "mypkg.training:fit,proj/train.py:fit_data",
        "--optimizers", "sgd", "--schedules", "constant()", "--lrs", "0.1,0.5", "--seeds", "2",
        "--workers", "2", "--out", "out",
        env={"PYTHONPATH": str(tmp_path / "lib")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8 runs: 8 run now, 0 from the store" in done.stdout
    assert "on 2 worker(s)" in done.stdout
    runs = results(tmp_path / "out")
    assert {r["config"]["task"] for r in runs} == {"mypkg.training:fit", "proj/train.py:fit_data"}
    assert all(r["status"] == "ok" and math.isfinite(r["final"]) for r in runs), runs
    # helpers.make_data(seed) really fed the task: w moves toward the data's mean, seed + 1.5.
    for run in runs:
        if run["task"] == "fit_data" and run["config"]["lr"] == 0.5:
            assert run["scalars"]["w"][-1][1] == pytest.approx(run["config"]["seed"] + 1.5)


# --------------------------------------------------------------------------
# docs/compare.md: "Your own training" runs as written
# --------------------------------------------------------------------------


def doc_blocks(marker: str) -> list[str]:
    """The fenced code blocks right after ``<!-- marker -->`` lines in docs/compare.md
    (another comment, the site build's ``<!-- run -->``, may stand between)."""
    page = DOCS.read_text(encoding="utf-8")
    pattern = rf"<!-- {re.escape(marker)} -->\s*(?:<!--[^>]*-->\s*)?```[a-z]*\n(.*?)```"
    return re.findall(pattern, page, flags=re.DOTALL)


def test_the_docs_user_task_example_runs_as_written(tmp_path: Path) -> None:
    (source,) = doc_blocks("user-task-file: my_train.py")
    (command,) = doc_blocks("user-task-command")
    write(tmp_path / "my_train.py", source)
    args = shlex.split(command.strip())
    assert args[:4] == ["lrkit", "compare", "--tasks", "my_train.py:fit_line"]
    done = lrkit_cli(tmp_path, *args[1:])
    assert done.returncode == 0, done.stdout + done.stderr
    runs = results(tmp_path / "lrkit-report")
    assert runs and all(r["status"] == "ok" for r in runs)
    assert {r["config"]["optimizer"] for r in runs} == {"sgd", "adam"}


def test_find_lr_takes_a_user_task_file(tmp_path: Path) -> None:
    task = write(
        tmp_path / "ls.py",
        """
        import torch
        import lrkit

        @lrkit.task(metric="loss", steps=50)
        def least_squares(trial):
            torch.manual_seed(trial.seed)
            x = torch.randn(128, 4)
            y = x.sum(dim=1, keepdim=True)
            model = torch.nn.Linear(4, 1)
            opt = trial.optimizer(model.parameters())
            sched = trial.scheduler(opt)
            for step in range(trial.steps):
                loss = torch.nn.functional.mse_loss(model(x), y)
                opt.zero_grad(); loss.backward(); opt.step(); sched.step()
                trial.log(step, loss=loss)
            return float(loss)
        """,
    )
    out = tmp_path / "find"
    done = invoke(
        "find-lr", "--task", f"{task}:least_squares", "--optimizer", "sgd", "--out", str(out)
    )
    assert done.exit_code == 0, done.output
    assert "suggestion" in done.output and "(loss diverged)" in done.output
    doc = json.loads((out / "least_squares-sgd.json").read_text())
    assert 1e-3 < doc["suggestion"] < 2.0 and (out / "least_squares-sgd.png").is_file()
