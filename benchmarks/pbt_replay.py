"""PBT vs replaying its ``pbt_schedule`` vs the best fixed schedule of a grid of the same cost.

For each task: ``lrkit.tune(search="pbt")`` with a population of P members
(one local Ray, P x steps updates in all); then the schedule the best member
followed (``pbt_schedule``) replayed from scratch as one ordinary run; then
two grids of P runs each (the same P x steps updates): ``constant()`` and
``cosine()`` at P lrs log-evenly spread over the same range (PBT's start
lrs). Final metrics side by side.

    .venv/bin/python benchmarks/pbt_replay.py              # digits and signals, P = 4
    .venv/bin/python benchmarks/pbt_replay.py --tasks digits --population 6

A replay equal to PBT's best shows that the recorded lineage is exact (the
members share the seed, so the best member's weights are one run on that
schedule). A few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lrkit
from lrkit.bench.pbt import start_lrs
from lrkit.bench.run import RunConfig, RunResult, execute
from lrkit.bench.tasks import get_task

#: task -> (optimizer, lr range)
SETUPS = {
    "digits": ("sgd", (1e-3, 1.0)),
    "signals": ("adam", (1e-4, 1e-1)),
    "scales": ("adam", (1e-4, 1e-1)),
    "quadratic": ("sgd", (1e-2, 1.0)),
}


def _final(result: RunResult) -> float:
    return result.final if result.final is not None else float("nan")


def _best(results: list[RunResult], mode: str) -> RunResult:
    sign = -1.0 if mode == "max" else 1.0
    ok = [r for r in results if r.final is not None]
    return min(ok, key=lambda r: sign * _final(r)) if ok else results[0]


def bench(task: str, population: int, workers: int) -> list[tuple[str, str, float, str]]:
    optimizer, (low, high) = SETUPS[task]
    mode = get_task(task).mode
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        pbt = lrkit.tune(
            task,
            optimizers=optimizer,
            schedules="constant()",
            search="pbt",
            trials=population,
            lr_range=(low, high),
            workers=workers,
            out=Path(out),
        )
    pbt_time = time.perf_counter() - start
    members = pbt.members  # type: ignore[attr-defined]
    exploits = sum(m["exploits"] for m in members)
    spec = pbt.pbt_schedule  # type: ignore[attr-defined]
    best = pbt.best
    assert best is not None and spec is not None, "no member finished"
    rows.append(
        (
            f"PBT, best of {population} members",
            f"{exploits} exploits, {pbt_time:.0f}s",
            best.value,
            spec,
        )
    )
    replay = execute(RunConfig(task, optimizer, spec, best.lr, seed=0))
    same = "identical" if replay.final == best.value else "differs"
    rows.append(("replay of pbt_schedule, from scratch", same, _final(replay), "1 run"))
    lrs = start_lrs(population, low, high)
    for schedule in ("constant()", "cosine()"):
        runs = [execute(RunConfig(task, optimizer, schedule, lr, seed=0)) for lr in lrs]
        top = _best(runs, mode)
        rows.append(
            (
                f"grid {schedule} x {population} lrs, best",
                f"lr={top.config['lr']:g}",
                _final(top),
                f"{population} runs",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="digits,signals", help="comma-separated built-ins")
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for task in args.tasks.split(","):
        metric = get_task(task).metric
        mode = get_task(task).mode
        optimizer, (low, high) = SETUPS[task]
        better = "higher" if mode == "max" else "lower"
        print(f"\n{task} ({metric}, {better} is better; {optimizer}, lr range {low:g}..{high:g})")
        for name, note, value, extra in bench(task, args.population, args.workers):
            print(f"  {name:<40} {metric}={value:<10.4g} {note:<22} {extra}")


if __name__ == "__main__":
    main()
