"""Executors side by side: inline, 2 local worker processes, Ray with 2 CPUs.

Each executor runs the same two grids, each mode in a fresh Python process
(so each pays its own start-up), through :func:`lrkit.bench.runner.run_grid`
with a fresh SQLite store:

- ``instant``: a user task (a file written to a temporary folder) that logs
  one loss and returns at once: what is measured is the executor's own cost
  per run (sending the config, running the task's wrapper, sending the
  result back, storing it).
- ``real``: a small grid of built-in runs (``quadratic`` and ``rosenbrock``,
  sgd and adam, 3 lrs, 2 seeds at ``--budget``).

Reported per grid and executor:

- ``start s``: making the executor (for Ray: a new local Ray, ``ray.init``);
- ``total s``: start plus the whole grid (workers' start-up, torch import);
- ``runs/s``: runs finished per second once the first result is back;
- ``overhead ms``: per run and slot, the time between results not spent in
  the runs themselves, once running: ``(span * slots - sum(run s)) / runs``;
- whether every run's numbers equal the inline executor's.

Run:  python benchmarks/executors.py [--instant-runs 200] [--budget 0.5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lrkit.bench.grid import expand_grid
from lrkit.bench.run import RunConfig

INSTANT = """
import lrkit


@lrkit.task(metric="loss", steps=1)
def instant(trial):
    trial.log(0, loss=1.0)
    return trial.lr * (trial.seed + 1)
"""

MODES = ("inline", "local-2", "ray-2")


def grid(kind: str, folder: Path, runs: int, budget: float) -> list[RunConfig]:
    if kind == "instant":
        path = folder / "instant_task.py"
        path.write_text(INSTANT)
        return expand_grid(
            tasks=[f"{path}:instant"],
            optimizers=["sgd"],
            schedules=["constant()"],
            lrs=[0.1],
            seeds=runs,
        )
    return expand_grid(
        tasks=["quadratic", "rosenbrock"],
        optimizers=["sgd", "adam"],
        schedules=["constant()"],
        lrs=[0.001, 0.01, 0.1],
        seeds=2,
        budget=budget,
    )


class _Clock:
    """A progress sink noting when each result reaches the driver."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.run_times: list[float] = []

    def start(self, total: int, done: int, workers: int) -> None:
        pass

    def update(self, result: Any) -> None:
        self.arrivals.append(time.perf_counter())
        self.run_times.append(result.wall_time)

    def finish(self) -> None:
        pass


def child(mode: str, kind: str, runs: int, budget: float) -> None:
    """Run one grid on one executor in this process; print its figures as JSON."""
    from lrkit.bench.runner import InlineExecutor, ProcessExecutor, run_grid
    from lrkit.bench.store import RunStore

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        configs = grid(kind, folder, runs, budget)
        begin = time.perf_counter()
        executor: Any
        if mode == "inline":
            executor, slots = InlineExecutor(), 1
        elif mode == "local-2":
            executor, slots = ProcessExecutor(2), 2
        else:
            from lrkit.bench.ray_executor import RayExecutor

            executor, slots = RayExecutor(2, tasks=sorted({c.task for c in configs})), 2
        started = time.perf_counter()
        clock = _Clock()
        with RunStore(folder / "runs.sqlite") as store:
            try:
                report = run_grid(configs, store, executor=executor, progress=clock)
            finally:
                executor.shutdown()
            end = time.perf_counter()
            results = store.results()
    assert report.ran == len(configs) and not report.errors, report
    span = clock.arrivals[-1] - clock.arrivals[0]
    after_first = len(results) - 1
    data = [r.to_dict() for r in results]  # non-finite numbers as None: comparable
    print(
        json.dumps(
            {
                "start": started - begin,
                "total": end - begin,
                "rate": after_first / span,
                "overhead": (span * slots - sum(clock.run_times[1:])) / after_first,
                "numbers": {d["key"]: [d["final"], d["loss"], d["evals"]] for d in data},
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instant-runs", type=int, default=200)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.instant_runs, args.budget)
        return
    for kind in ("instant", "real"):
        figures: dict[str, dict[str, Any]] = {}
        for mode in MODES:
            command = [sys.executable, __file__, "--child", mode, kind]
            command += ["--instant-runs", str(args.instant_runs), "--budget", str(args.budget)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"{mode} on {kind} failed:\n{done.stderr[-3000:]}")
            figures[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        runs = len(figures["inline"]["numbers"])
        what = "a task that returns at once" if kind == "instant" else "built-in runs"
        print(f"\n{kind}: {runs} runs of {what}")
        print(f"{'':<14}" + "".join(f"{mode:>10}" for mode in MODES))
        for label, key, fmt in (
            ("start s", "start", "{:10.2f}"),
            ("total s", "total", "{:10.2f}"),
            ("runs/s", "rate", "{:10.1f}"),
            ("overhead ms", "overhead", "{:10.1f}"),
        ):
            scale = 1000.0 if key == "overhead" else 1.0
            row = "".join(fmt.format(figures[mode][key] * scale) for mode in MODES)
            print(f"{label:<14}{row}")
        same = "".join(
            f"{'yes' if figures[mode]['numbers'] == figures['inline']['numbers'] else 'NO':>10}"
            for mode in MODES
        )
        print(f"{'same numbers':<14}{same}")


if __name__ == "__main__":
    main()
