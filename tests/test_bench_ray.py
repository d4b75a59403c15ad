"""``--executor ray``: the same runs, the same numbers, the same store, on Ray tasks.

One local Ray (2 CPUs) serves the whole session (``ray_cluster``, in
conftest.py); the tests run in the xdist group ``ray``, so a test run never
starts two of them. The kill test's driver is a subprocess with a local Ray
of its own.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import lrkit
from lrkit.bench.grid import expand_grid
from lrkit.bench.ray_executor import RayExecutor, task_files
from lrkit.bench.run import RunResult
from lrkit.bench.runner import MAX_ATTEMPTS, run_grid
from lrkit.bench.store import RunStore
from lrkit.cli import app

pytestmark = pytest.mark.xdist_group("ray")

LRKIT = str(Path(sys.executable).with_name("lrkit"))

#: A small grid on a built-in task: 8 runs of a few hundredths of a second.
GRID: dict[str, Any] = {
    "tasks": ["quadratic"],
    "optimizers": ["sgd", "adam"],
    "schedules": ["constant()", "cosine()"],
    "lrs": [0.05],
    "seeds": 2,
    "budget": 0.25,
}


def numbers(result: RunResult) -> dict[str, Any]:
    """A result without its timings and process id: what must repeat exactly."""
    data = result.to_dict()
    for name in ("wall_time", "build_time"):
        data.pop(name)
    data["env"].pop("pid")
    return data


def stored(path: Path) -> int:
    """Rows in the store, read without writing."""
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def marked(mark: bytes) -> list[int]:
    """Processes whose environment holds ``mark`` (inherited from the driver)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if mark in Path(f"/proc/{name}/environ").read_bytes():
                pids.append(int(name))
        except OSError:
            pass
    return pids


# --------------------------------------------------------------------------
# The driver killed: nothing lost, nothing left behind (its own local Ray)
# --------------------------------------------------------------------------


def test_kill_9_of_the_driver_leaves_no_ray_process_and_a_rerun_completes(
    tmp_path: Path, ray_cluster: None
) -> None:
    out = tmp_path / "report"
    store_path = out / "runs.sqlite"
    args = [
        LRKIT, "compare", "--tasks", "quadratic", "--optimizers", "sgd,adam",
        "--schedules", "constant()", "--lrs", "0.001,0.01,0.1", "--seeds", "2",
        "--budget", "0.5", "--executor", "ray", "--workers", "2", "--out", str(out),
    ]  # fmt: skip
    total = 2 * 3 * 2
    mark = f"LRKIT_TEST_DRIVER={uuid.uuid4().hex}"
    env = {**os.environ, "LRKIT_TEST_DRIVER": mark.partition("=")[2]}
    log = (tmp_path / "driver.log").open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        # Generous: a new local Ray beside the session's on a loaded 2-core machine
        deadline = time.monotonic() + 300
        while stored(store_path) < 3:
            assert process.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no runs stored within 300 s"
            time.sleep(0.02)
        assert len(marked(mark.encode())) >= 4  # the driver, its Ray, Ray's workers
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()
    deadline = time.monotonic() + 15
    while marked(mark.encode()) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in marked(mark.encode())}
    assert not left, f"processes of the killed driver's Ray survived: {left}"

    with RunStore(store_path) as store:
        killed = {row["key"]: row["created"] for row in store.rows()}
    assert 3 <= len(killed) < total

    # The same command again (here on the session's Ray) runs only the rest.
    done = CliRunner().invoke(app, args[1:])
    assert done.exit_code == 0, done.output
    ran = total - len(killed)
    assert f"{total} runs: {ran} run now, {len(killed)} from the store" in done.output
    assert "on Ray, 2 at a time" in done.output
    with RunStore(store_path) as store:
        rows = {row["key"]: row for row in store.rows()}
    assert len(rows) == total
    assert all(rows[key]["created"] == created for key, created in killed.items())  # none twice


# --------------------------------------------------------------------------
# The same numbers; resume
# --------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_numbers_on_ray_as_inline_and_a_rerun_skips(
    tmp_path: Path, ray_cluster: None
) -> None:
    on_ray = lrkit.compare(**GRID, executor="ray", workers=2, out=None, store=tmp_path / "r.sqlite")
    assert on_ray.runner.ran == 8 and on_ray.runner.workers == 2 and not on_ray.errors
    assert os.getpid() not in on_ray.runner.worker_pids  # Ray's workers ran them
    inline = lrkit.compare(**GRID, workers=0, out=None, store=tmp_path / "i.sqlite")
    assert [r.key for r in on_ray.runs] == [r.key for r in inline.runs]
    assert [numbers(r) for r in on_ray.runs] == [numbers(r) for r in inline.runs]
    # Local worker processes give these numbers too (test_bench_runner's kill -9 test).

    again = lrkit.compare(**GRID, executor="ray", out=None, store=tmp_path / "r.sqlite")
    assert (again.runner.ran, again.runner.skipped) == (0, 8)
    assert [numbers(r) for r in again.runs] == [numbers(r) for r in on_ray.runs]


def test_sam_and_swa_give_the_same_numbers_on_ray_as_inline(
    tmp_path: Path, ray_cluster: None
) -> None:
    # SAM's optimizer comes from pytorch-optimizer, imported inside Ray's workers;
    # SWA keeps torch's AveragedModel: both must run there as they do inline.
    sam_swa = {
        **GRID,
        "optimizers": ["sam(sgd)", "sam(adam, rho=0.1)"],
        "schedules": ["swa(cosine(), start=0.5)"],
        "seeds": 1,
    }
    on_ray = lrkit.compare(
        **sam_swa, executor="ray", workers=2, out=None, store=tmp_path / "r.sqlite"
    )
    assert on_ray.runner.ran == 2 and not on_ray.errors
    assert all(r.status == "ok" for r in on_ray.runs), [r.reason for r in on_ray.runs]
    inline = lrkit.compare(**sam_swa, workers=0, out=None, store=tmp_path / "i.sqlite")
    assert [numbers(r) for r in on_ray.runs] == [numbers(r) for r in inline.runs]


# --------------------------------------------------------------------------
# User task files travel with the job
# --------------------------------------------------------------------------

_TASKS = """
import os
import signal
from pathlib import Path

import lrkit
from helper import scale  # a module beside the task file travels too

MARK = Path(MARKS) / "killed"


def _train(trial):
    for step in range(trial.steps):
        trial.log(step, loss=1.0 / (step + 1))
    return scale(trial.lr * (trial.seed + 1))


@lrkit.task(metric="loss", steps=5)
def copied(trial):
    # Ray loads this file from the job's working dir, not from where it was written.
    if "runtime_resources" not in __file__:
        raise RuntimeError(f"ran from {__file__}")
    return _train(trial)


@lrkit.task(metric="loss", steps=5)
def raises(trial):
    if trial.seed == 1:
        raise ValueError("boom")
    return _train(trial)


@lrkit.task(metric="loss", steps=5)
def once(trial):
    # Seed 1 kills its own worker process the first time it runs.
    if trial.seed == 1 and not MARK.exists():
        MARK.write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
    return _train(trial)


@lrkit.task(metric="loss", steps=5)
def always(trial):
    if trial.seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return _train(trial)
"""


@pytest.fixture(scope="module")
def task_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The task file, with a helper module beside it (one upload, Ray's workers reused)."""
    tmp_path = tmp_path_factory.mktemp("ray-tasks")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "helper.py").write_text("def scale(x):\n    return 10 * x\n")
    path = folder / "train.py"
    path.write_text(f"MARKS = {str(tmp_path)!r}\n{_TASKS}")
    return path


def grid(path: Path, name: str, seeds: int) -> list[Any]:
    return expand_grid(
        tasks=[f"{path}:{name}"],
        optimizers=["sgd"],
        schedules=["constant()"],
        lrs=[0.1],
        seeds=seeds,
    )


def test_task_files_map_to_the_working_dir(tmp_path: Path) -> None:
    a = tmp_path / "exp" / "train.py"
    b = tmp_path / "exp" / "more" / "other.py"
    root, files = task_files([f"{a}:net", f"{b}:mlp", "digits"])
    assert root == tmp_path / "exp"
    assert files == {f"{a}:net": "train.py:net", f"{b}:mlp": "more/other.py:mlp"}
    assert task_files(["digits", "lrkit.bench.tasks:quadratic"]) == (None, {})


def test_a_user_task_file_and_its_folder_travel_with_the_job(
    task_file: Path, ray_cluster: None, tmp_path: Path
) -> None:
    results = lrkit.compare(
        f"{task_file}:copied", optimizers=["sgd"], schedules=["constant()"], lrs=[0.1],
        seeds=2, executor="ray", out=None, store=tmp_path / "runs.sqlite",
    )  # fmt: skip
    assert [r.status for r in results.runs] == ["ok", "ok"], results.runs[0].reason
    assert [r.final for r in results.runs] == pytest.approx([1.0, 2.0])
    assert {r.config["task"] for r in results.runs} == {f"{task_file}:copied"}


def test_a_task_that_raises_is_an_error_at_once_and_the_others_run(
    task_file: Path, ray_cluster: None, tmp_path: Path
) -> None:
    with RunStore(tmp_path / "runs.sqlite") as store:
        executor = RayExecutor(2, tasks=[f"{task_file}:raises"])
        report = run_grid(grid(task_file, "raises", 3), store, executor=executor)
        results = {r.config["seed"]: r for r in store.results()}
    assert (report.ran, report.errors, report.retried) == (3, 1, 0)
    assert results[1].status == "error" and results[1].reason == "ValueError: boom"
    assert 'raise ValueError("boom")' in (results[1].traceback or "")
    assert results[0].status == results[2].status == "ok"


def test_a_worker_killed_mid_run_is_retried_and_its_run_stored_once(
    task_file: Path, ray_cluster: None, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    marker = task_file.parent.parent / "killed"
    with RunStore(tmp_path / "runs.sqlite") as store:
        executor = RayExecutor(2, tasks=[f"{task_file}:once"])
        report = run_grid(grid(task_file, "once", 4), store, executor=executor)
        assert marker.exists()  # it did die once
        assert report.ran == 4 == len(store) and report.errors == 0
        assert report.retried == 1  # Ray names the run whose worker died
        finals = sorted(r.final for r in store.results())
    assert finals == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert "a worker process died while running" in capfd.readouterr().err


def test_a_run_that_kills_its_worker_every_time_is_an_error_after_3_attempts(
    task_file: Path, ray_cluster: None, tmp_path: Path
) -> None:
    with RunStore(tmp_path / "runs.sqlite") as store:
        executor = RayExecutor(2, tasks=[f"{task_file}:always"])
        report = run_grid(grid(task_file, "always", 3), store, executor=executor)
        results = {r.config["seed"]: r for r in store.results()}
    assert (report.ran, report.errors, report.retried) == (3, 1, MAX_ATTEMPTS - 1)
    assert results[1].status == "error" and results[1].reason.startswith("WorkerDied:")
    assert f"died {MAX_ATTEMPTS} times" in results[1].reason
    assert results[0].status == results[2].status == "ok"


# --------------------------------------------------------------------------
# The command's errors
# --------------------------------------------------------------------------


def test_address_without_executor_ray_is_exit_2(tmp_path: Path) -> None:
    done = CliRunner().invoke(
        app, ["compare", "--tasks", "quadratic", "--address", "auto", "--out", str(tmp_path)]
    )
    assert done.exit_code == 2
    assert done.output.strip() == "Error: --address is for --executor ray (the Ray cluster to join)"


def test_ray_not_installed_is_exit_2_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    args = ["compare", "--tasks", "quadratic", "--optimizers", "sgd", "--schedules", "constant()"]
    done = CliRunner().invoke(app, [*args, "--executor", "ray", "--out", str(tmp_path)])
    assert done.exit_code == 2
    assert "pip install 'lrkit[ray]'" in done.output
    assert "Traceback" not in done.output
