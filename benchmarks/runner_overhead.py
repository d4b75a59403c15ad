"""The runner's cost: ``lrkit compare``'s runner against a bare loop, and 2 workers vs 1.

Every mode runs the same configs (one task, optimizer, schedule and lr;
seeds 0..N-1) in a fresh Python process, timed from the process's launch
to its exit, so each pays its own start-up (Python, torch import):

- ``bare``: ``for config in configs: execute(config)`` in the process itself;
  nothing stored.
- ``runner-1``: :func:`lrkit.bench.runner.run_grid` with 1 worker process
  and a fresh SQLite store: spawning the worker, sending configs and
  results through pipes, one store transaction per run.
- ``runner-2``: the same with 2 workers.
- ``bare-x2``: two ``bare`` processes side by side, each with half the
  configs: the speed-up the machine itself allows two independent
  processes (on VMs whose 2 vCPUs share a physical core this is far below
  2x, and no runner can beat it).

Reported: each mode's wall time (best of ``--rounds``, modes interleaved
so that drifts in machine load hit all), the runner's overhead over the bare
loop (1 worker), the speed-up of 2 workers over 1, and, inside the runner,
the mean run time the workers measured against the bare loop's.

Run:  python benchmarks/runner_overhead.py [--task digits] [--runs 40] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lrkit.bench.run import RunConfig


def configs(task: str, runs: int, first: int = 0) -> list[RunConfig]:
    """``runs`` seeds of one setting, from seed ``first``: adam, cosine(), lr 1e-3."""
    return [RunConfig(task, "adam", "cosine()", 1e-3, seed) for seed in range(first, first + runs)]


def child(mode: str, task: str, runs: int, first: int) -> None:
    """Run one mode in this process and print the runs' own times as JSON."""
    items = configs(task, runs, first)
    steady = None
    if mode == "bare":
        from lrkit.bench.run import execute

        times = [execute(config).wall_time for config in items]
    else:
        from lrkit.bench.runner import run_grid
        from lrkit.bench.store import RunStore

        workers = int(mode.split("-")[1])
        with (
            tempfile.TemporaryDirectory() as folder,
            RunStore(Path(folder) / "runs.sqlite") as store,
        ):
            clock = _Clock()
            report = run_grid(items, store, workers=workers, progress=clock)
            assert report.ran == runs, report
            times = [r.wall_time for r in store.results()]
            if workers == 1:  # time between results against the runs' own time
                gaps = clock.arrivals[-1] - clock.arrivals[0]
                steady = gaps / sum(clock.run_times[1:]) - 1
    print(json.dumps({"run_times": times, "steady": steady}))


class _Clock:
    """A progress sink that notes when each result reaches the main process."""

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


def launch(mode: str, task: str, runs: int) -> tuple[float, list[float], float | None]:
    """Time one mode in fresh processes: (wall s, per-run s, steady-state overhead)."""
    copies, child_mode = (2, "bare") if mode == "bare-x2" else (1, mode)
    start = time.perf_counter()
    share = runs // copies
    processes = []
    for k in range(copies):
        command = [sys.executable, __file__, "--child", child_mode, "--task", task]
        command += ["--runs", str(share), "--first", str(k * share)]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
    outputs = [p.communicate()[0] for p in processes]
    wall = time.perf_counter() - start
    if any(p.returncode for p in processes):
        raise SystemExit(f"mode {mode} failed")
    docs = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    return wall, [t for doc in docs for t in doc["run_times"]], docs[0]["steady"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.task, args.runs, args.first)
        return
    if args.runs < 2 or args.runs % 2:
        parser.error(f"--runs must be an even number >= 2, got {args.runs}")

    modes = ["bare", "runner-1", "runner-2", "bare-x2"]
    best: dict[str, float] = {}
    per_run: dict[str, list[float]] = {}
    steady = float("inf")
    for _ in range(args.rounds):
        for mode in modes:
            wall, times, overhead = launch(mode, args.task, args.runs)
            if wall < best.get(mode, float("inf")):
                best[mode], per_run[mode] = wall, times
            if overhead is not None:
                steady = min(steady, overhead)
    mean = {mode: sum(t) / len(t) for mode, t in per_run.items()}
    print(
        f"task {args.task}: {args.runs} runs of adam, cosine(), lr 1e-3 "
        f"(best of {args.rounds} rounds, {os.cpu_count()} CPUs)"
    )
    print(f"{'mode':<10} {'wall s':>8} {'mean run s':>11}")
    for mode in modes:
        print(f"{mode:<10} {best[mode]:8.2f} {mean[mode]:11.3f}")
    overhead = best["runner-1"] / best["bare"] - 1
    inner = mean["runner-1"] / mean["bare"] - 1
    print(f"runner overhead, 1 worker vs bare loop, end to end: {overhead:+.1%}")
    print(f"run time inside a worker vs in the bare loop:       {inner:+.1%}")
    print(f"runner overhead per run once started (1 worker):    {steady:+.1%}")
    speedup = best["runner-1"] / best["runner-2"]
    ceiling = best["bare"] / best["bare-x2"]
    print(f"speed-up, 2 workers vs 1:                           {speedup:.2f}x")
    print(f"machine ceiling, 2 bare processes vs 1:             {ceiling:.2f}x")


if __name__ == "__main__":
    main()
