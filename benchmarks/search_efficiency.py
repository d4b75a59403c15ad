"""How many trials and training steps does ``lrkit.tune`` need to match a full grid?

The search space on each task (default: digits, scales, quadratic): optimizer
in {sgd, adam} x schedule in {constant(), cosine()} x lr log-uniform in
[1e-4, 1], one seed (0) per run, the task's step budget x ``--budget``.

1. **Reference grid**: :func:`lrkit.compare` over the same optimizers x
   schedules at ``--grid-points`` lrs (13 by default: ``logspace(1e-4, 1, 13)``,
   three a decade), seed 0, two workers. Its best final metric is the target;
   its cost is the sum of its runs' ``steps_done``.
2. **TPE vs random** (:func:`lrkit.tune`, ``pruner="none"``, ``workers=1``),
   once per search seed (``seed=0..--search-seeds-1``, a fresh study and out
   folder each), ``--trials`` trials at most: the number of trials, and the
   training steps (``steps_done`` summed over those trials), until the best
   value so far (COMPLETE trials only) is within ``--band`` (2 %) of the
   grid's best, relative to |grid best|: ``>= best - 2 % |best|`` for a metric
   to maximise (val_acc), ``<= best + 2 % |best|`` for one to minimise
   (losses). Printed: the median and the worst over search seeds (a seed
   that never gets there counts as worst: shown ``>N``), and how many never
   got there within the cap.
3. **Pruning's saving**: TPE with ``pruner="median"`` against the TPE runs of
   (2) (``pruner="none"``), same trial count and search seeds: the training
   steps the whole search spent, the best value reached (median and worst
   over search seeds), how many seeds ended in the band, and the median
   pruner's trials and steps to the band.

Wall times are printed but are not the measure (2 shared cores, SQLite and
report writing in every ``tune`` call); trials and steps are.

Run (the full default takes about 20-25 minutes on 2 idle cores; ``--quick``
about 3; ``--out DIR`` keeps the studies and the grid, and a re-run with the
same DIR resumes instead of running again)::

    nice -n 10 python benchmarks/search_efficiency.py
    python benchmarks/search_efficiency.py --quick
    python benchmarks/search_efficiency.py --tasks digits --trials 30 --search-seeds 3 --jobs 2
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import multiprocessing
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lrkit
from lrkit.bench.grid import split_names
from lrkit.bench.trial import load_task

OPTIMIZERS = ["sgd", "adam"]
SCHEDULES = ["constant()", "cosine()"]
LR_RANGE = (1e-4, 1.0)


# --------------------------------------------------------------------------
# One tune call (in this process or a worker) and what is kept of it
# --------------------------------------------------------------------------


@dataclass
class Search:
    """One ``lrkit.tune`` call: its trials in order, boiled down."""

    task: str
    search: str
    pruner: str
    seed: int
    states: list[str] = field(default_factory=list)
    values: list[float | None] = field(default_factory=list)  # COMPLETE, finite; else None
    steps: list[int] = field(default_factory=list)  # steps_done per trial
    params: list[tuple[Any, ...]] = field(default_factory=list)  # (optimizer, schedule, lr)
    run_steps: int = 0  # sum of results.runs' steps_done (a cross-check)
    best: float | None = None  # results.best.value
    wall: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        return sum(self.steps)

    def reach(self, ok: Any) -> tuple[int, int] | None:
        """(trials, steps) up to the first trial whose best-so-far is ``ok``, else None."""
        spent = 0
        for i, (value, steps) in enumerate(zip(self.values, self.steps, strict=True)):
            spent += steps
            if value is not None and ok(value):
                return i + 1, spent
        return None

    def best_value(self, mode: str) -> float | None:
        done = [v for v in self.values if v is not None]
        if not done:
            return None
        return max(done) if mode == "max" else min(done)


def run_search(
    task: str, search: str, pruner: str, seed: int, trials: int, budget: float, out: str
) -> Search:
    """Run one tune call into a fresh study under ``out``; boil its trials down."""
    start = time.perf_counter()
    results = lrkit.tune(
        task,
        optimizers=OPTIMIZERS,
        schedules=SCHEDULES,
        lr_range=LR_RANGE,
        trials=trials,
        search=search,
        pruner=pruner,
        seeds=1,
        workers=1,
        study="search-efficiency",
        out=out,
        budget=budget,
        seed=seed,
    )
    found = Search(task, search, pruner, seed, wall=time.perf_counter() - start)
    for t in sorted(results.trials, key=lambda t: t["number"]):
        if t["state"] not in ("COMPLETE", "PRUNED", "FAIL"):
            found.problems.append(f"trial {t['number']} left {t['state']}")
            continue
        value = t["value"]
        # A PRUNED trial carries its last intermediate value: not a final metric.
        usable = t["state"] == "COMPLETE" and value is not None and math.isfinite(value)
        found.states.append(t["state"])
        found.values.append(float(value) if usable else None)
        found.steps.append(int(t["user_attrs"].get("steps_done") or 0))
        p = t["params"]
        found.params.append((p.get("optimizer"), p.get("schedule"), p.get("lr")))
        if t["state"] == "FAIL":
            found.problems.append(f"trial {t['number']} FAIL: {t['user_attrs'].get('reason')}")
    counted = sum(s in ("COMPLETE", "PRUNED") for s in found.states)
    if counted != trials:
        found.problems.append(f"{counted} COMPLETE+PRUNED trials, asked for {trials}")
    found.run_steps = sum(r.steps_done for r in results.runs)
    if found.run_steps != found.total_steps:
        found.problems.append(
            f"steps: trials' steps_done sum {found.total_steps} != runs' {found.run_steps}"
        )
    found.best = None if results.best is None else results.best.value
    return found


def _run_search_job(job: tuple[Any, ...]) -> Search:
    return run_search(*job)


# --------------------------------------------------------------------------
# Per task: the grid and the searches
# --------------------------------------------------------------------------


@dataclass
class TaskCase:
    task: str
    metric: str
    mode: str
    grid_best: float | None = None
    grid_setting: str = ""
    grid_runs: int = 0
    grid_steps: int = 0
    grid_wall: float = 0.0
    searches: dict[tuple[str, str], list[Search]] = field(default_factory=dict)

    def ok(self, band: float) -> Any:
        best = self.grid_best
        assert best is not None
        if self.mode == "max":
            target = best - band * abs(best)
            return lambda v: v >= target
        target = best + band * abs(best)
        return lambda v: v <= target


def run_grid_reference(cases: list[TaskCase], args: argparse.Namespace, root: Path) -> None:
    start = time.perf_counter()
    results = lrkit.compare(
        [c.task for c in cases],
        optimizers=OPTIMIZERS,
        schedules=SCHEDULES,
        lrs=[f"logspace({LR_RANGE[0]:g}, {LR_RANGE[1]:g}, {args.grid_points})"],
        seeds=1,
        budget=args.budget,
        workers=args.grid_workers,
        out=root / "grid",
    )
    wall = time.perf_counter() - start
    for case in cases:
        mine = [r for r in results.runs if r.task == case.task]
        case.grid_runs = len(mine)
        case.grid_steps = sum(r.steps_done for r in mine)
        case.grid_wall = wall
        best = results.best_by_task.get(case.task)
        if best is not None and best.mean is not None:
            case.grid_best = float(best.mean)
            case.grid_setting = f"{best.optimizer} {best.schedule} lr={best.lr:.2g}"


# --------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def median_worst(values: list[float], cap: str) -> str:
    """``median/worst`` of values where ``inf`` is a miss (shown ``>cap``)."""

    def one(v: float) -> str:
        return f">{cap}" if math.isinf(v) else f"{v:.0f}"

    return f"{one(statistics.median(values))}/{one(max(values))}"


def reach_cells(case: TaskCase, searches: list[Search], args: argparse.Namespace) -> list[str]:
    ok = case.ok(args.band)
    reached = [s.reach(ok) for s in searches]
    trials = [math.inf if r is None else float(r[0]) for r in reached]
    steps = [math.inf if r is None else float(r[1]) for r in reached]
    misses = sum(r is None for r in reached)
    cap_steps = max((s.total_steps for s in searches), default=0)
    return [
        median_worst(trials, str(args.trials)),
        median_worst(steps, str(cap_steps)),
        f"{misses}/{len(searches)}",
    ]


def best_cell(case: TaskCase, searches: list[Search]) -> str:
    """Median and worst over seeds of the best value each search reached."""
    bests = [s.best_value(case.mode) for s in searches]
    finite = [b for b in bests if b is not None]
    if not finite:
        return "—"
    worst = (min if case.mode == "max" else max)(finite)
    worst_text = "—" if len(finite) < len(bests) else f"{worst:.4g}"
    return f"{statistics.median(finite):.4g}/{worst_text}"


def print_tables(cases: list[TaskCase], args: argparse.Namespace, wall: float) -> None:
    n = args.search_seeds
    print()
    print(
        f"space: {{{', '.join(OPTIMIZERS)}}} x {{{', '.join(SCHEDULES)}}} x lr log-uniform in "
        f"[{LR_RANGE[0]:g}, {LR_RANGE[1]:g}]; run seed 0; budget x{args.budget:g}; "
        f"searches: {n} search seeds, {args.trials} trials each; band: within "
        f"{args.band:.0%} of |grid best|"
    )

    print()
    print(f"1. Reference grid ({args.grid_points} lrs, logspace) x optimizers x schedules, seed 0")
    head = (
        f"{'task':<10s} {'metric':<10s} {'grid best':>9s} {'band':>12s} "
        f"{'setting':<32s} {'runs':>5s} {'steps':>7s}"
    )
    print(head)
    print("-" * len(head))
    for c in cases:
        metric = c.metric + (" ↑" if c.mode == "max" else " ↓")
        if c.grid_best is None:
            print(f"{c.task:<10s} {metric:<10s} {'—':>9s} (no grid run finished)")
            continue
        edge = c.grid_best - args.band * abs(c.grid_best) * (1 if c.mode == "max" else -1)
        band = (">= " if c.mode == "max" else "<= ") + f"{edge:.4g}"
        print(
            f"{c.task:<10s} {metric:<10s} {c.grid_best:>9.4g} {band:>12s} "
            f"{c.grid_setting:<32s} {c.grid_runs:>5d} {c.grid_steps:>7d}"
        )

    print()
    print(
        f"2. Trials and steps until the best so far is in the band: median/worst over {n} "
        f"search seeds (pruner none); miss = seeds never in the band within {args.trials} trials"
    )
    head = (
        f"{'task':<10s} {'grid best (steps)':>19s} | {'tpe trials':>10s} {'tpe steps':>13s} "
        f"{'miss':>4s} | {'rnd trials':>10s} {'rnd steps':>13s} {'miss':>4s}"
    )
    print(head)
    print("-" * len(head))
    for c in cases:
        if c.grid_best is None:
            continue
        ref = f"{c.grid_best:.4g} ({c.grid_steps})"
        tpe = reach_cells(c, c.searches[("tpe", "none")], args)
        rnd = reach_cells(c, c.searches[("random", "none")], args)
        print(
            f"{c.task:<10s} {ref:>19s} | {tpe[0]:>10s} {tpe[1]:>13s} {tpe[2]:>4s} | "
            f"{rnd[0]:>10s} {rnd[1]:>13s} {rnd[2]:>4s}"
        )

    print()
    print(
        f"3. Pruning: TPE, pruner none vs median, {args.trials} trials, {n} search seeds: "
        "steps spent (median over seeds; saving = 1 - median/none of the summed steps),"
    )
    print("   best value reached (median/worst over seeds), seeds ending in the band, and")
    print("   the median pruner's trials/steps to the band (median/worst)")
    head = (
        f"{'task':<10s} {'grid best (steps)':>19s} | {'steps none':>10s} {'steps med':>10s} "
        f"{'saving':>6s} | {'best none':>17s} {'best median':>17s} {'in band':>7s} | "
        f"{'med trials':>10s} {'med steps':>13s}"
    )
    print(head)
    print("-" * len(head))
    for c in cases:
        if c.grid_best is None:
            continue
        ok = c.ok(args.band)
        none, med = c.searches[("tpe", "none")], c.searches[("tpe", "median")]
        steps_none = statistics.median(s.total_steps for s in none)
        steps_med = statistics.median(s.total_steps for s in med)
        saving = 1 - sum(s.total_steps for s in med) / max(1, sum(s.total_steps for s in none))
        in_none = sum(s.reach(ok) is not None for s in none)
        in_med = sum(s.reach(ok) is not None for s in med)
        cells = reach_cells(c, med, args)
        ref = f"{c.grid_best:.4g} ({c.grid_steps})"
        print(
            f"{c.task:<10s} {ref:>19s} | {steps_none:>10.0f} {steps_med:>10.0f} "
            f"{saving:>6.0%} | {best_cell(c, none):>17s} {best_cell(c, med):>17s} "
            f"{f'{in_none}/{in_med}':>7s} | {cells[0]:>10s} {cells[1]:>13s}"
        )
    pruned = {
        c.task: statistics.median(
            sum(st == "PRUNED" for st in s.states) for s in c.searches[("tpe", "median")]
        )
        for c in cases
    }
    print(
        "(in band: none/median; pruned trials a search, median: "
        + ", ".join(f"{t} {v:.0f}" for t, v in pruned.items())
        + ")"
    )

    shared = []
    for c in cases:
        counts = []
        for by_tpe, by_rnd in zip(
            c.searches[("tpe", "none")], c.searches[("random", "none")], strict=True
        ):
            same = 0
            for a, b in zip(by_tpe.params, by_rnd.params, strict=False):
                if a != b:
                    break
                same += 1
            counts.append(str(same))
        shared.append(f"{c.task} {','.join(counts)}")
    print(
        "(tpe vs random with the same search seed: leading trials with identical settings, "
        "per seed: " + "; ".join(shared) + ")"
    )

    print()
    search_wall = {
        key: sum(s.wall for c in cases for s in c.searches.get(key, []))
        for key in (("tpe", "none"), ("random", "none"), ("tpe", "median"))
    }
    grid_wall = cases[0].grid_wall if cases else 0.0
    print(
        f"wall: {wall:.0f}s in all (grid {grid_wall:.0f}s on {args.grid_workers} workers; "
        + ", ".join(f"{k[0]}/{k[1]} {v:.0f}s" for k, v in search_wall.items())
        + f" summed over tune calls, {args.jobs} at a time)"
    )
    problems = [
        f"{s.task} {s.search}/{s.pruner} seed {s.seed}: {p}"
        for c in cases
        for group in c.searches.values()
        for s in group
        for p in s.problems
    ]
    if problems:
        print("problems seen in lrkit.tune's results:")
        for p in problems:
            print(f"  {p}")


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="digits,scales,quadratic", help="comma-separated")
    parser.add_argument("--trials", type=int, default=40, help="trial cap of each search")
    parser.add_argument("--search-seeds", type=int, default=5, help="tune seed=0..N-1")
    parser.add_argument("--budget", type=float, default=1.0, help="scales each task's steps")
    parser.add_argument("--band", type=float, default=0.02, help="relative to |grid best|")
    parser.add_argument("--grid-points", type=int, default=13, help="lrs in the grid")
    parser.add_argument("--grid-workers", type=int, default=2)
    parser.add_argument(
        "--jobs", type=int, default=1, help="tune calls at once (each in its own process)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="keep studies here (default: a temp folder)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="digits,quadratic, 20 trials, 3 search seeds, budget 0.5 (about 3 minutes)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.trials, args.search_seeds, args.budget = "digits,quadratic", 20, 3, 0.5
    tasks = split_names([args.tasks])

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lrkit-search-efficiency-") as tmp:
        root = args.out if args.out is not None else Path(tmp)
        print(f"studies and grid under {root}", file=sys.stderr)
        cases = []
        for name in tasks:
            task = load_task(name)
            cases.append(TaskCase(name, task.metric, task.mode))
        run_grid_reference(cases, args, root)
        print(f"grid done in {time.perf_counter() - start:.0f}s", file=sys.stderr)

        kinds = [("tpe", "none"), ("random", "none"), ("tpe", "median")]
        jobs = [
            (c.task, search, pruner, seed, args.trials, args.budget,
             str(root / c.task / f"{search}-{pruner}-seed{seed}"))
            for c in cases
            for search, pruner in kinds
            for seed in range(args.search_seeds)
        ]  # fmt: skip
        by_job: dict[tuple[str, str, str, int], Search] = {}

        def done(found: Search) -> None:
            by_job[(found.task, found.search, found.pruner, found.seed)] = found
            print(
                f"[{len(by_job)}/{len(jobs)}] {found.task} {found.search}/{found.pruner} "
                f"seed {found.seed}: best {fmt(found.best)}, {found.total_steps} steps, "
                f"{found.wall:.0f}s",
                file=sys.stderr,
                flush=True,
            )

        if args.jobs <= 1:
            for job in jobs:
                done(run_search(*job))
        else:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
                for future in concurrent.futures.as_completed(
                    [pool.submit(_run_search_job, job) for job in jobs]
                ):
                    done(future.result())
        for c in cases:
            for key in kinds:
                c.searches[key] = [
                    by_job[(c.task, *key, seed)] for seed in range(args.search_seeds)
                ]
    print_tables(cases, args, time.perf_counter() - start)


if __name__ == "__main__":
    main()
