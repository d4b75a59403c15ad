"""Where the best lr goes when the batch size changes, measured on the built-in tasks.

For each task x optimizer (SGD, Adam; ``cosine()``), a grid of lrs a third of a
decade apart is run at several batch sizes, 2 seeds each, in two ways:

- **same steps**: ``lrkit compare --batch-sizes`` as it is (every batch size
  trains the task's step budget, so a bigger batch sees more samples);
- **same samples**: each batch size trains the task's own number of samples
  (``--budget own_batch / batch``: the setting the linear and square-root
  rules were stated for).

It prints, per task x optimizer, the best lr at each batch size, the lr each
rule predicts from the smallest batch size's best lr, and the slope of log
best-lr against log batch size (1 is the linear rule, 0.5 the square-root
rule, 0 "the batch size does not matter"). A best lr at the edge of the lrs
tried is marked ``*`` (the true best lies beyond it; the slope then leaves
that batch size out).

Run:  python benchmarks/batch_size.py [--workers 2] [--store /tmp/lrkit-batch/runs.sqlite]
(about 15 minutes on 2 CPU cores the first time; a rerun reads the store).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import lrkit
from lrkit.bench.grid import SettingSummary
from lrkit.bench.tasks import get_task

TASKS = ("digits", "signals", "quadratic")
OPTIMIZERS = ("sgd", "adam")
BATCH_SIZES = (16, 64, 256)
LRS = [float(f"{10 ** (k / 3):.3g}") for k in range(-12, 4)]  # 1e-4 .. 10, thirds of a decade
SEEDS = 2


def _slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log lr against log batch size (None under 2 points)."""
    if len(points) < 2:
        return None
    xs = [math.log(b) for b, _ in points]
    ys = [math.log(lr) for _, lr in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def _edge(row: SettingSummary) -> bool:
    return len(row.lrs) > 1 and row.lr in (min(row.lrs), max(row.lrs))


def measure(view: str, store: Path, workers: int) -> dict[tuple[str, str], list[SettingSummary]]:
    """Best settings per (task, optimizer), one row per batch size."""
    rows: dict[tuple[str, str], list[SettingSummary]] = {}
    for task in TASKS:
        own = get_task(task).batch_size or 1
        calls = (
            [(1.0, list(BATCH_SIZES))]
            if view == "same steps"
            else [(own / b, [b]) for b in BATCH_SIZES]
        )
        for budget, sizes in calls:
            results = lrkit.compare(
                task,
                optimizers=list(OPTIMIZERS),
                schedules=["cosine()"],
                lrs=LRS,
                seeds=SEEDS,
                budget=budget,
                batch_sizes=sizes,
                workers=workers,
                out=None,
                store=store,
            )
            for row in results.summary[task]:
                rows.setdefault((task, row.optimizer), []).append(row)
    return rows


def show(view: str, rows: dict[tuple[str, str], list[SettingSummary]]) -> None:
    print(f"\n== {view} ==")
    print(
        f"{'task':10} {'optimizer':9} "
        + " ".join(f"{'bs ' + str(b):>9}" for b in BATCH_SIZES)
        + f"  {'linear rule':>24}  {'sqrt rule':>24}  slope"
    )
    for (task, optimizer), found in rows.items():
        found = sorted(found, key=lambda r: r.batch_size or 0)
        cells = [f"{r.lr:g}{'*' if _edge(r) else ''}" for r in found]
        base = found[0]
        b0 = base.batch_size or 1
        linear = ", ".join(f"{lrkit.scale_lr(base.lr, b0, b):.2g}" for b in BATCH_SIZES[1:])
        sqrt = ", ".join(
            f"{lrkit.scale_lr(base.lr, b0, b, rule='sqrt'):.2g}" for b in BATCH_SIZES[1:]
        )
        slope = _slope([(r.batch_size or 1, r.lr) for r in found if not _edge(r)])
        print(
            f"{task:10} {optimizer:9} "
            + " ".join(f"{c:>9}" for c in cells)
            + f"  {linear:>24}  {sqrt:>24}  {'-' if slope is None else f'{slope:.2f}'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", type=Path, default=Path("/tmp/lrkit-batch/runs.sqlite"))
    args = parser.parse_args()
    args.store.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"tasks {', '.join(TASKS)}; optimizers {', '.join(OPTIMIZERS)} + cosine(); "
        f"lrs {LRS[0]:g}..{LRS[-1]:g} ({len(LRS)}, a third of a decade apart); "
        f"batch sizes {', '.join(map(str, BATCH_SIZES))}; {SEEDS} seeds. "
        "Best lr per batch size (* = the edge of the lrs tried), the rules' predictions "
        "from the smallest batch size, and the log-log slope."
    )
    for view in ("same steps", "same samples"):
        show(view, measure(view, args.store, args.workers))


if __name__ == "__main__":
    main()
