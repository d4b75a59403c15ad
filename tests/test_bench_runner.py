"""Grids and the runner: expansion, resume, worker processes, and a real ``kill -9``."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lrkit.bench.grid import (
    DEFAULT_LRS,
    DEFAULT_OPTIMIZERS,
    DEFAULT_SCHEDULES,
    DEFAULT_TASKS,
    GridError,
    expand_grid,
    make_grid,
    parse_lrs,
    split_names,
    summarize,
)
from lrkit.bench.run import STATUSES, RunConfig, RunResult, execute
from lrkit.bench.runner import MAX_ATTEMPTS, PlainProgress, run_grid
from lrkit.bench.store import RunStore

LRKIT = str(Path(sys.executable).with_name("lrkit"))


def numbers(result: RunResult) -> dict[str, Any]:
    """A result without its timings and process id: what must repeat exactly."""
    data = result.to_dict()
    data.pop("wall_time")
    data.pop("build_time")
    data["env"].pop("pid")
    return data


def small_grid() -> list[RunConfig]:
    """8 quick runs (a few tenths of a second in all)."""
    return expand_grid(
        tasks=["quadratic"],
        optimizers=["sgd", "adam"],
        schedules=["constant()", "cosine()"],
        lrs=[0.05],
        seeds=2,
        budget=0.25,
    )


# --------------------------------------------------------------------------
# Parsing and expansion
# --------------------------------------------------------------------------


def test_parse_lrs_lists_and_logspace() -> None:
    assert parse_lrs(["0.1,0.01", "1e-3"]) == [0.1, 0.01, 0.001]
    assert parse_lrs(["logspace(1e-4, 1, 5)"]) == [1e-4, 1e-3, 1e-2, 0.1, 1.0]
    assert parse_lrs(["logspace(1e-4,1,7)"])[1] == pytest.approx(10**-3.333333333333)
    assert parse_lrs(["logspace(0.1, 0.1, 1)", "0.1"]) == [0.1]  # repeats kept once


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0.1,abc", r"--lrs: 'abc' is not a number"),
        ("-0.1", r"--lrs: '-0.1' must be a finite number > 0"),
        ("0", r"--lrs: '0' must be a finite number > 0"),
        ("nan", r"--lrs: 'nan' must be a finite number > 0"),
        ("logspace(1e-4, 1)", r"logspace takes 3 arguments \(start, stop, count\), got 2"),
        ("logspace(1e-4, 1, 0)", r"logspace count must be an integer in \[1, 1000\], got '0'"),
        ("logspace(0, 1, 3)", r"--lrs: '0' must be a finite number > 0"),
        (",", r"--lrs: empty value"),
    ],
)
def test_parse_lrs_errors_name_the_value(value: str, message: str) -> None:
    with pytest.raises(GridError, match=message):
        parse_lrs([value])


def test_split_names() -> None:
    assert split_names(["digits,scales", " quadratic ", ""]) == ["digits", "scales", "quadratic"]


def test_default_grid() -> None:
    configs = expand_grid()
    assert len(configs) == 2 * 4 * 3 * 5 * 2 == 240
    assert {c.task for c in configs} == set(DEFAULT_TASKS)
    assert {c.optimizer for c in configs} == set(DEFAULT_OPTIMIZERS)
    assert {c.schedule for c in configs} == set(DEFAULT_SCHEDULES)
    assert {c.lr for c in configs} == set(DEFAULT_LRS)
    assert {c.seed for c in configs} == {0, 1}
    assert len({c.key() for c in configs}) == 240


def test_expansion_order_budget_and_lr_free_multipliers() -> None:
    configs = expand_grid(
        tasks=["quadratic", "rosenbrock"],
        optimizers=["adam", "prodigy", "schedulefree"],
        schedules=["constant()", "cosine()"],
        lrs=[0.1, 0.01],
        seeds=3,
        budget=0.5,
    )
    # adam: 2 schedules x 2 lrs x 3 seeds; prodigy: 2 schedules x multiplier 1 x 3 seeds;
    # schedulefree runs its own constant schedule: the two schedules are one run.
    assert len(configs) == 2 * (12 + 6 + 3)
    assert [c.seed for c in configs[:3]] == [0, 1, 2]  # seeds innermost, task-major
    assert configs[0].task == "quadratic" and configs[-1].task == "rosenbrock"
    assert {c.lr for c in configs if c.optimizer != "adam"} == {1.0}
    assert {c.steps for c in configs if c.task == "rosenbrock"} == {250}
    more = expand_grid(tasks=["quadratic"], optimizers=["prodigy"], multipliers=[0.5, 2.0])
    assert sorted({c.lr for c in more}) == [0.5, 2.0]


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({"tasks": ["mnist"]}, r"--tasks: unknown task 'mnist'; built-in tasks: charlm, digits"),
        ({"optimizers": ["lion"]}, r"--optimizers: unknown optimizer 'lion'; known optimizers"),
        ({"schedules": ["cosine(steps=)"]}, r"--schedules 'cosine\(steps=\)': "),
        ({"schedules": ["bogus()"]}, r"--schedules 'bogus\(\)': .*bogus"),
        ({"seeds": 0}, r"--seeds must be an integer in \[1, 1000\], got 0"),
        ({"budget": 0.0}, r"--budget must be a finite number > 0, got 0.0"),
        ({"lrs": [-1.0]}, r"--lrs: -1.0 must be a finite number > 0"),
    ],
)
def test_grid_errors_name_the_value(axes: dict[str, Any], message: str) -> None:
    with pytest.raises(GridError, match=message):
        make_grid(**axes)


def test_a_schedule_that_does_not_fit_a_task_is_named() -> None:
    # 90 warmup steps (+ 20 % decay) fit digits' 300 x 0.5 steps, not quadratic's 200 x 0.5.
    assert expand_grid(tasks=["digits"], schedules=["wsd(warmup_steps=90)"], seeds=1)
    with pytest.raises(
        GridError, match=r"--schedules 'wsd\(warmup_steps=90\)' on task 'quadratic' \(steps=100\)"
    ):
        make_grid(tasks=["digits", "quadratic"], schedules=["wsd(warmup_steps=90)"], budget=0.5)


# --------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------


def result(optimizer: str, lr: float, seed: int, status: str, final: float | None) -> RunResult:
    return RunResult(
        key=f"{optimizer}-{lr}-{seed}",
        config=RunConfig("quadratic", optimizer, "cosine()", lr, seed).to_dict(),
        identity={},
        status=status,
        metric="loss",
        mode="min",
        target=0.15,
        steps=200,
        final=final,
        steps_to_target=50 if final is not None and final <= 0.15 else None,
    )


def test_summary_picks_the_best_lr_and_counts_divergence() -> None:
    results = [
        result("sgd", 0.1, 0, "ok", 0.3),
        result("sgd", 0.1, 1, "ok", 0.5),
        result("sgd", 1.0, 0, "ok", 0.01),  # better, but one seed diverged:
        result("sgd", 1.0, 1, "diverged", None),  # an lr where all finished wins
        result("adam", 0.01, 0, "ok", 0.1),
        result("adam", 0.01, 1, "ok", 0.14),
        result("momentum", 0.1, 0, "diverged", None),
    ]
    (rows,) = summarize(results).values()
    assert [(r.optimizer, r.lr) for r in rows] == [("adam", 0.01), ("sgd", 0.1), ("momentum", 0.1)]
    adam, sgd, momentum = rows
    assert adam.mean == pytest.approx(0.12) and adam.std == pytest.approx(0.02)
    assert adam.steps_to_target == 50 and adam.finished == adam.seeds == 2
    assert sgd.mean == pytest.approx(0.4) and (sgd.diverged, sgd.runs) == (1, 4)
    assert momentum.mean is None and momentum.finished == 0 and momentum.diverged == 1


def test_rescued_runs_count_as_finished_and_are_counted() -> None:
    results = [
        result("sgd", 0.1, 0, "ok", 0.3),
        result("sgd", 0.1, 1, "ok", 0.5),
        result("sgd", 1.0, 0, "rescued", 0.05),  # a guard saved both seeds: they finished
        result("sgd", 1.0, 1, "rescued", 0.07),
    ]
    (rows,) = summarize(results).values()
    (sgd,) = rows
    assert sgd.lr == 1.0 and sgd.mean == pytest.approx(0.06) and sgd.finished == 2
    assert (sgd.rescued, sgd.diverged, sgd.runs) == (2, 0, 4)


# --------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------


def test_in_process_run_stores_everything_and_resume_skips(tmp_path: Path) -> None:
    configs = small_grid()
    with RunStore(tmp_path / "runs.sqlite") as store:
        first = run_grid(configs[:3], store, workers=0)
        assert (first.total, first.ran, first.skipped) == (3, 3, 0)
        before = {row["key"]: row["created"] for row in store.rows()}
        lines = io.StringIO()
        second = run_grid(configs, store, workers=0, progress=PlainProgress(lines))
        assert (second.total, second.ran, second.skipped) == (8, 5, 3)
        assert len(store) == 8 and store.done_keys() == {c.key() for c in configs}
        after = {row["key"]: row["created"] for row in store.rows()}
        assert all(after[key] == created for key, created in before.items())  # not rerun
        third = run_grid(configs + configs, store, workers=0)  # duplicates run once
        assert (third.total, third.ran) == (8, 0)
    text = lines.getvalue().splitlines()
    assert text[0] == "8 runs, 3 already stored, 5 to run in this process"
    assert text[1].startswith("[4/8] quadratic ") and "loss=" in text[1]
    assert len(text) == 6


def test_bad_worker_count(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.sqlite") as store, pytest.raises(ValueError, match="got -1"):
        run_grid(small_grid(), store, workers=-1)


# --------------------------------------------------------------------------
# kill -9 of the main process, then resume
# --------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(root: int) -> set[int]:
    """Every live process below ``root``, from /proc's parent links."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return {pid for pid in found if alive(pid)}


def stored(path: Path) -> int:
    """Rows in the store, read without writing (the runner is the only writer)."""
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_kill_9_loses_nothing_leaves_no_worker_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "report"
    store_path = out / "runs.sqlite"
    args = [
        LRKIT, "compare", "--tasks", "quadratic,rosenbrock", "--optimizers", "sgd,adam",
        "--schedules", "constant()", "--lrs", "0.001,0.01,0.1", "--seeds", "2",
        "--budget", "0.5", "--workers", "2", "--out", str(out),
    ]  # fmt: skip
    total = 2 * 2 * 3 * 2
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while stored(store_path) < 4:
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no runs stored within 60 s"
            time.sleep(0.02)
        children = descendants(process.pid)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert len(children) >= 2  # the two workers (and multiprocessing's resource tracker)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in children if alive(pid)], "orphaned workers survived the kill"

    # Every row that exists is complete, and the interrupted grid is not finished.
    with RunStore(store_path) as store:
        killed = {row["key"]: row["created"] for row in store.rows()}
        for result in store.results():
            assert result.status in STATUSES and result.key in killed
            assert result.key == RunConfig.from_dict(result.config).key()
            assert result.steps_done == len(result.loss) > 0
    assert 4 <= len(killed) < total

    # Resume with one worker: the keys do not depend on the worker count.
    resume = [*args[:-4], "--workers", "1", "--out", str(out)]
    done = subprocess.run(resume, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    ran = total - len(killed)
    assert f"{total} runs: {ran} run now, {len(killed)} from the store" in done.stdout
    with RunStore(store_path) as store:
        rows = {row["key"]: row for row in store.rows()}
        stored_results = {r.key: r for r in store.results()}
    assert len(rows) == total
    assert all(rows[key]["created"] == created for key, created in killed.items())  # none twice
    # Workers ran everything; those of the finished command have exited.
    pids = {row["pid"] for row in rows.values()}
    assert process.pid not in pids and len(pids) >= 2
    assert not [pid for pid in pids if alive(pid)]
    # The same numbers as in this process, whichever worker ran a config.
    configs = expand_grid(
        tasks=["quadratic", "rosenbrock"],
        optimizers=["sgd", "adam"],
        schedules=["constant()"],
        lrs=[0.001, 0.01, 0.1],
        seeds=2,
        budget=0.5,
    )
    assert {c.key() for c in configs} == set(rows)
    with RunStore(tmp_path / "serial.sqlite") as serial:
        run_grid(configs[::5], serial, workers=0)
        for result in serial.results():
            assert numbers(result) == numbers(stored_results[result.key])


# --------------------------------------------------------------------------
# A worker killed mid-run
# --------------------------------------------------------------------------


_SELF_KILLING = """
import os
import signal
from pathlib import Path

import lrkit

MARK = Path(__file__).with_suffix(".killed")


def _train(trial):
    for step in range(trial.steps):
        trial.log(step, loss=1.0 / (step + 1))
    return trial.lr * (trial.seed + 1)


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


def test_a_worker_killed_mid_run_is_replaced_and_its_run_retried(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "killer.py"
    path.write_text(_SELF_KILLING)
    configs = expand_grid(
        tasks=[f"{path}:once"], optimizers=["sgd"], schedules=["constant()"], lrs=[0.1], seeds=4
    )
    with RunStore(tmp_path / "runs.sqlite") as store:
        report = run_grid(configs, store, workers=2)
        assert (tmp_path / "killer.killed").exists()  # it did die once
        assert report.ran == 4 == len(store) and report.errors == 0
        assert 1 <= report.retried <= 2  # the killed run, and the run in flight beside it
        assert len(report.worker_pids) >= 3  # the dead pool was replaced
        assert not any(alive(pid) for pid in report.worker_pids)
        finals = sorted(r.final for r in store.results())
    assert finals == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert "a worker process died while running" in capfd.readouterr().err


def test_a_run_that_kills_its_worker_every_time_is_stored_as_an_error(tmp_path: Path) -> None:
    path = tmp_path / "killer.py"
    path.write_text(_SELF_KILLING)
    configs = expand_grid(
        tasks=[f"{path}:always"], optimizers=["sgd"], schedules=["constant()"], lrs=[0.1], seeds=3
    )
    with RunStore(tmp_path / "runs.sqlite") as store:
        report = run_grid(configs, store, workers=2)
        results = {r.config["seed"]: r for r in store.results()}
    assert report.ran == 3 and report.errors == 1
    assert results[1].status == "error" and results[1].reason.startswith("WorkerDied:")
    assert f"died {MAX_ATTEMPTS} times" in results[1].reason
    assert results[0].status == results[2].status == "ok"


def test_workers_dying_at_start_up_stop_the_runner_with_a_clear_error(tmp_path: Path) -> None:
    # The classic mistake: run_grid at a script's top level. Spawned workers import
    # the script, try to start workers of their own, and die before any run.
    script = tmp_path / "no_main_guard.py"
    script.write_text(
        "from lrkit.bench.grid import expand_grid\n"
        "from lrkit.bench.runner import run_grid\n"
        "from lrkit.bench.store import RunStore\n"
        "configs = expand_grid(tasks=['quadratic'], optimizers=['sgd'], "
        "schedules=['constant()'], lrs=[0.1], seeds=10, budget=0.1)\n"
        f"with RunStore({str(tmp_path / 'runs.sqlite')!r}) as store:\n"
        "    run_grid(configs, store, workers=1)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("lrkit.bench.runner.WorkersFailed: 3 times in a row the worker")
    assert "if __name__ == '__main__':" in done.stderr
    assert stored(tmp_path / "runs.sqlite") == 0


def test_results_are_plain_data_so_the_main_process_never_imports_torch(tmp_path: Path) -> None:
    # A torch object in a result (e.g. torch.__version__, a TorchVersion) made the main
    # process import torch while unpickling the first result: 2 s on the critical path.
    script = (
        "import sys\n"
        "from lrkit.bench.grid import expand_grid\n"
        "from lrkit.bench.runner import run_grid\n"
        "from lrkit.bench.store import RunStore\n"
        "if __name__ == '__main__':\n"
        "    configs = expand_grid(tasks=['quadratic'], optimizers=['adam'], "
        "schedules=['cosine()'], lrs=[0.1], seeds=2, budget=0.1)\n"
        f"    with RunStore({str(tmp_path / 'runs.sqlite')!r}) as store:\n"
        "        report = run_grid(configs, store, workers=1)\n"
        "        results = store.results()\n"
        "    assert report.ran == 2, report\n"
        "    print(sorted(m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules))\n"
    )
    path = tmp_path / "main.py"
    path.write_text(script)
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
    # And the result itself: built-in types only, exactly (no str/float subclasses).
    result = execute(small_grid()[0]).to_dict()

    def kinds(value: Any) -> set[type]:
        if isinstance(value, dict):
            return {dict}.union(*(kinds(v) for v in value.values()), *(kinds(k) for k in value))
        if isinstance(value, list | tuple):
            return {type(value)}.union(*(kinds(v) for v in value))
        return {type(value)}

    assert kinds(result) <= {dict, list, tuple, str, int, float, bool, type(None)}


def test_ctrl_c_stops_the_workers_keeps_the_runs_and_says_how_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = [
        LRKIT, "compare", "--tasks", "quadratic,rosenbrock", "--optimizers", "sgd,adam",
        "--schedules", "constant()", "--lrs", "0.001,0.01,0.1", "--seeds", "2",
        "--budget", "0.5", "--workers", "2", "--out", str(out),
    ]  # fmt: skip
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell without job control starts background jobs with SIGINT ignored, and
        # the command would inherit that: give it the default, as a terminal does
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while stored(out / "runs.sqlite") < 2:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    children = descendants(process.pid)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "interrupted: finished runs are kept in" in err and "Traceback" not in err
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in children if alive(pid)]
    kept = stored(out / "runs.sqlite")
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{kept} from the store" in done.stdout
