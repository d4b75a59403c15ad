"""How good is the lr finder's suggestion on the built-in tasks? Against a grid and torch-lr-finder.

For each task x optimizer (default: every built-in task x momentum, adamw):

- **grid**: the best constant lr of a full-budget grid (``--per-decade`` points
  a decade, 4 by default: a quarter decade apart, from ``--min-lr`` to
  ``--max-lr``), each lr run with ``--seeds`` seeds (3) by
  :func:`lrkit.bench.runner.run_grid`; the best is the lr of the best mean
  final metric over the seeds, an lr where every seed finished being preferred
  (:func:`lrkit.bench.grid.summarize`, as ``lrkit compare`` ranks). Every run
  is kept in a SQLite store (``--store``), so a re-run resumes and an
  interrupted grid loses nothing.
- **lrkit**: :func:`lrkit.bench.find.suggest_lr` with its defaults (seed 0,
  100 steps from 1e-7 to 10, the ``default`` rule): its suggestion, interval
  and confidence, the ratio to the grid's best, and the other rules
  (``valley``, ``minimum``, ``steepest``) applied to the same sweep.
- **torch-lr-finder** (its PyPI package, a dev dependency): on the same fresh
  model, optimizer and batch stream, ``LRFinder(...).range_test(loader,
  start_lr=1e-7, end_lr=10, num_iter=100)`` then ``plot(ax=..., suggest_lr=True)``,
  which returns the lr of the steepest descent of its smoothed loss (a
  matplotlib Axes of a bare Figure is passed, so nothing is shown).

Printed: the table side by side, the mean |log10(suggestion / best)| of each
finder and each lrkit rule, how many cases fall within 2x and 3x, and the cost
of each (training steps; state copies).

Run (the full default takes tens of minutes on 2 cores; a re-run resumes)::

    nice -n 10 python benchmarks/finder_quality.py --workers 2
    python benchmarks/finder_quality.py --tasks digits,quadratic --seeds 1 --budget 0.5
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrkit import finder
from lrkit.bench.find import suggest_lr
from lrkit.bench.grid import parse_lrs, split_names, summarize
from lrkit.bench.run import RunConfig, RunResult
from lrkit.bench.runner import PlainProgress, run_grid
from lrkit.bench.store import RunStore
from lrkit.bench.tasks import TASKS, get_task

OTHER_RULES = ("valley", "minimum", "steepest")


@dataclass
class Case:
    """One task x optimizer: the grid's best and each finder's pick."""

    task: str
    optimizer: str
    best: float | None = None
    best_mean: float | None = None
    edge: bool = False
    by_lr: dict[float, float | None] = field(default_factory=dict)  # lr -> mean (all seeds ok)
    lrkit: float = math.nan
    interval: tuple[float, float] = (math.nan, math.nan)
    confidence: float = 0.0
    reason: str = ""
    lrkit_steps: int = 0
    rules: dict[str, float] = field(default_factory=dict)
    tlf: float = math.nan
    tlf_steps: int = 0
    grid_steps: int = 0


def grid_configs(args: argparse.Namespace) -> list[RunConfig]:
    decades = math.log10(args.max_lr / args.min_lr)
    count = round(decades * args.per_decade) + 1
    lrs = parse_lrs([f"logspace({args.min_lr}, {args.max_lr}, {count})"])
    return [
        RunConfig(task, optimizer, "constant()", lr, seed, args.budget)
        for task in args.tasks
        for optimizer in args.optimizers
        for lr in lrs
        for seed in range(args.seeds)
    ]


def grid_best(case: Case, results: list[RunResult]) -> None:
    mine = [
        r
        for r in results
        if r.config["task"] == case.task and r.config["optimizer"] == case.optimizer
    ]
    (row,) = summarize(mine)[case.task]
    lrs = sorted({float(r.config["lr"]) for r in mine})
    case.grid_steps = sum(r.steps_done for r in mine)
    if row.mean is not None:
        case.best, case.best_mean = row.lr, row.mean
        case.edge = row.lr in (lrs[0], lrs[-1])
    for lr in lrs:
        finals = [r.final for r in mine if float(r.config["lr"]) == lr]
        ok = all(f is not None for f in finals)
        case.by_lr[lr] = statistics.fmean(finals) if ok and finals else None  # type: ignore[arg-type]


def run_lrkit(case: Case) -> None:
    result = suggest_lr(case.task, case.optimizer)
    case.lrkit, case.interval = result.suggestion, result.interval
    case.confidence, case.reason = result.confidence, result.reason
    case.lrkit_steps = result.updates
    for rule in OTHER_RULES:
        case.rules[rule] = finder.suggest(result.lrs, result.losses, rule).lr


def run_torch_lr_finder(case: Case, seed: int = 0) -> None:
    """torch-lr-finder on the model, optimizer and batches suggest_lr sweeps."""
    import random

    import torch
    from matplotlib.figure import Figure
    from torch_lr_finder import LRFinder, TrainDataLoaderIter

    class Batches(TrainDataLoaderIter):
        def inputs_labels_from_batch(self, batch_data: Any) -> tuple[Any, None]:
            return batch_data, None

    class LossModule(torch.nn.Module):
        """``forward(batch)`` is the task's loss, so that any task fits ``criterion(out, y)``."""

        def __init__(self, model: torch.nn.Module, loss: Any) -> None:
            super().__init__()
            self.inner = model
            self.loss = loss

        def forward(self, batch: Any) -> torch.Tensor:
            return self.loss(self.inner, batch)

    task = get_task(case.task)
    from lrkit.bench.optimizers import get_optimizer

    spec = get_optimizer(case.optimizer)
    random.seed(seed)
    torch.manual_seed(seed)
    problem = task.build(seed)
    params = [p for p in problem.model.parameters() if p.requires_grad]
    optimizer = spec.create(params, spec.group_lr(1e-7))
    batches = problem.batches(task.batch_size, torch.Generator().manual_seed(seed))
    wrapped = LossModule(problem.model, problem.loss)
    lr_finder = LRFinder(wrapped, optimizer, lambda out, _labels: out, device="cpu")
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        lr_finder.range_test(Batches(batches), start_lr=1e-7, end_lr=10.0, num_iter=100)
        case.tlf_steps = len(lr_finder.history["lr"])
        try:
            _, case.tlf = lr_finder.plot(ax=Figure().add_subplot(), suggest_lr=True)
        except RuntimeError:  # too few points before the divergence stop
            case.tlf = math.nan
        lr_finder.reset()


def ratio(pick: float, best: float | None) -> float:
    if best is None or not (math.isfinite(pick) and pick > 0):
        return math.nan
    return pick / best


def err(pick: float, best: float | None) -> float:
    r = ratio(pick, best)
    return abs(math.log10(r)) if math.isfinite(r) else math.nan


def at(case: Case, pick: float) -> str:
    """The grid's mean final metric at the grid lr nearest ``pick``."""
    if not case.by_lr or not (math.isfinite(pick) and pick > 0):
        return "—"
    lr = min(case.by_lr, key=lambda x: abs(math.log10(x / pick)))
    value = case.by_lr[lr]
    return "div" if value is None else f"{value:.3g}"


def fmt(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.2g}"


def summary_line(name: str, errors: list[float], steps: str) -> str:
    good = [e for e in errors if math.isfinite(e)]
    n = len(errors)
    within2 = sum(e <= math.log10(2) for e in good)
    within3 = sum(e <= math.log10(3) for e in good)
    mean = statistics.fmean(good) if good else math.nan
    return (
        f"{name:<27s} {mean:13.2f} {within2:>3d}/{n:<3d} {within3:>3d}/{n:<3d}"
        f" {n - len(good):>5d}   {steps}"
    )


def print_table(cases: list[Case], args: argparse.Namespace) -> None:
    print()
    print(
        f"grid: constant lr, {args.per_decade} points a decade from {args.min_lr:g} to "
        f"{args.max_lr:g}, {args.seeds} seeds, budget x{args.budget:g}; "
        "finders: seed 0, 100 steps from 1e-7 to 10"
    )
    print("'at' columns: the grid's mean final metric at the grid lr nearest the pick")
    print()
    head = (
        f"{'task':<10s} {'opt':<8s} {'metric':<12s} {'grid best':>9s} {'at best':>7s} | "
        f"{'lrkit':>7s} {'interval':>15s} {'conf':>4s} {'ratio':>6s} {'at':>6s} | "
        f"{'tlf':>7s} {'ratio':>6s} {'at':>6s}"
    )
    print(head)
    print("-" * len(head))
    for c in cases:
        task = get_task(c.task)
        best = "—" if c.best is None else f"{c.best:.2g}" + ("*" if c.edge else "")
        interval = f"{fmt(c.interval[0])}..{fmt(c.interval[1])}"
        metric = task.metric + (" ↑" if task.mode == "max" else " ↓")
        best_mean = "—" if c.best_mean is None else f"{c.best_mean:.3g}"
        lrkit_part = (
            f"{fmt(c.lrkit):>7s} {interval:>15s} {c.confidence:4.2f} "
            f"{fmt(ratio(c.lrkit, c.best)):>6s} {at(c, c.lrkit):>6s}"
        )
        tlf_part = f"{fmt(c.tlf):>7s} {fmt(ratio(c.tlf, c.best)):>6s} {at(c, c.tlf):>6s}"
        print(
            f"{c.task:<10s} {c.optimizer:<8s} {metric:<12s} {best:>9s} {best_mean:>7s} | "
            f"{lrkit_part} | {tlf_part}"
        )
    print("(* the best lr is at the grid's edge; ratio = pick / grid best)")
    print()
    n = len(cases)
    lrkit_steps = sum(c.lrkit_steps for c in cases)
    tlf_steps = sum(c.tlf_steps for c in cases)
    grid_steps = sum(c.grid_steps for c in cases)
    print(f"{'finder':<27s} {'mean|log10 r|':>13s} {'≤2x':>7s} {'≤3x':>7s} {'none':>5s}   cost")
    print(
        summary_line(
            "lrkit (default)",
            [err(c.lrkit, c.best) for c in cases],
            f"{lrkit_steps} steps ({lrkit_steps / max(n, 1):.0f} a case), 1 state copy a case",
        )
    )
    print(
        summary_line(
            "torch-lr-finder",
            [err(c.tlf, c.best) for c in cases],
            f"{tlf_steps} steps ({tlf_steps / max(n, 1):.0f} a case), 1 state copy a case",
        )
    )
    for rule in OTHER_RULES:
        print(
            summary_line(
                f"lrkit {rule} (same sweep)",
                [err(c.rules.get(rule, math.nan), c.best) for c in cases],
                "",
            )
        )
    print(f"{'grid (reference)':<27s} {'':>13s} {'':>7s} {'':>7s} {'':>5s}   {grid_steps} steps")
    low = [c for c in cases if c.confidence < 0.5]
    if low:
        print()
        print("lrkit's low-confidence cases (confidence < 0.5) and why:")
        for c in low:
            print(f"  {c.task} x {c.optimizer}: {c.reason}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    parser.add_argument("--optimizers", default="momentum,adamw")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--min-lr", type=float, default=1e-6)
    parser.add_argument("--max-lr", type=float, default=10.0)
    parser.add_argument("--per-decade", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--store", type=Path, default=Path("lrkit-finder-quality/runs.sqlite"), help="run store"
    )
    parser.add_argument("--no-tlf", action="store_true", help="leave torch-lr-finder out")
    parser.add_argument(
        "--stored-only",
        action="store_true",
        help="run nothing: use the grid runs already in the store (a partial look)",
    )
    args = parser.parse_args(argv)
    args.tasks = split_names([args.tasks])
    args.optimizers = split_names([args.optimizers])

    configs = grid_configs(args)
    start = time.perf_counter()
    with RunStore(args.store) as store:
        if args.stored_only:
            keys = [c.key() for c in configs]
            results = store.results([k for k in keys if k in store])
            print(f"grid: {len(results)} of {len(keys)} runs in the store", file=sys.stderr)
        else:
            report = run_grid(
                configs, store, workers=args.workers, progress=PlainProgress(sys.stderr)
            )
            results = store.results(report.keys)
            print(
                f"grid: {report.total} runs ({report.ran} run now, {report.skipped} from "
                f"{args.store}) in {time.perf_counter() - start:.0f}s",
                file=sys.stderr,
            )
    cases = []
    for task in args.tasks:
        for optimizer in args.optimizers:
            case = Case(task, optimizer)
            grid_best(case, results)
            run_lrkit(case)
            if not args.no_tlf:
                run_torch_lr_finder(case)
            cases.append(case)
    print_table(cases, args)


if __name__ == "__main__":
    main()
