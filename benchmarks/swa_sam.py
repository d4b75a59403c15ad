"""Plain vs SWA vs SAM on built-in tasks, each at its best lr: what it reaches, what it costs.

One ``lrkit.compare`` grid per run of this script: SGD with momentum 0.9
(``momentum``) and SAM around it (``sam(momentum)``, rho 0.05) x ``cosine()``
and ``swa(cosine(), start=0.75)`` (the cosine until 75 % of the steps, then
its lr held while the weights are averaged; the metric is the averaged
weights') x a small lr grid x 3 seeds, on ``digits`` and ``signals``. For
each of the four settings the table gives the best lr (best mean final
metric over the seeds), that mean ± std, the steps each run trained, the
mean seconds per run at that lr (what the report shows), and the median
seconds per run over all the setting's runs (every lr and seed: steadier on
a shared machine) with its ratio to the plain setting's: a SAM step takes
two forward-backward passes, so the same steps cost about twice the time
(the evaluations and the model's build do not double).

Runs go to a store (``--out``, default a fresh temporary folder); running
again with the same ``--out`` reads them back instead of training.
``--workers 1`` (the default) keeps the timings clean: runs in parallel on
a shared machine slow each other down.

Run:  python benchmarks/swa_sam.py [--tasks digits,signals] [--seeds 3]
      [--lrs 0.03,0.1,0.3,1] [--workers 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import lrkit
from lrkit.bench.grid import SettingSummary, parse_lrs, split_names
from lrkit.bench.run import RunResult

OPTIMIZERS = ("momentum", "sam(momentum)")
SCHEDULES = ("cosine()", "swa(cosine(), start=0.75)")
LABELS = {
    ("momentum", "cosine()"): "plain",
    ("momentum", "swa(cosine(), start=0.75)"): "SWA",
    ("sam(momentum)", "cosine()"): "SAM",
    ("sam(momentum)", "swa(cosine(), start=0.75)"): "SAM + SWA",
}


def table(task: str, rows: list[SettingSummary], runs: list[RunResult]) -> str:
    """One task's settings in a fixed order, the plain setting's time as the unit."""
    by_label = {LABELS[(r.optimizer, r.schedule)]: r for r in rows}
    medians = {
        label: statistics.median(
            r.wall_time
            for r in runs
            if r.task == task and (r.config["optimizer"], r.config["schedule"]) == key
        )
        for key, label in LABELS.items()
    }
    first = rows[0]
    better = "higher" if first.mode == "max" else "lower"
    lines = [
        f"{task}: final {first.metric} ({better} is better), mean ± std over seeds at the best lr",
        f"  {'setting':<10} {'optimizer':<14} {'best lr':>8} {'final':>17} {'seeds':>5} "
        f"{'steps':>6} {'s/run':>6} {'median':>7} {'x plain':>8}",
    ]
    for label in LABELS.values():
        r = by_label[label]
        final = "—" if r.mean is None else f"{r.mean:.4f} ± {r.std or 0.0:.4f}"
        seconds = r.wall_time or float("nan")
        ratio = medians[label] / medians["plain"]
        lines.append(
            f"  {label:<10} {r.optimizer:<14} {r.lr:>8g} {final:>17} "
            f"{r.finished}/{r.seeds:<3} {r.steps or 0:>6} {seconds:>6.2f} {medians[label]:>7.2f} "
            f"{ratio:>7.2f}x"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="digits,signals")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lrs", default="0.03,0.1,0.3,1")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="lrkit-swa-sam-"))
    started = time.perf_counter()
    results = lrkit.compare(
        split_names(args.tasks, "--tasks"),
        optimizers=list(OPTIMIZERS),
        schedules=list(SCHEDULES),
        lrs=parse_lrs([args.lrs]),
        seeds=args.seeds,
        budget=args.budget,
        workers=args.workers,
        out=out,
    )
    elapsed = time.perf_counter() - started
    ran = results.runner
    print(
        f"{len(results)} runs ({ran.ran} trained now, {ran.skipped} from the store {out}), "
        f"{elapsed:.0f} s wall; lrs {args.lrs}, {args.seeds} seeds, --workers {args.workers}"
    )
    for task, rows in results.summary.items():
        print()
        print(table(task, rows, results.runs))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print()
    print(
        f"s/run: mean seconds per run at the best lr (the report's figure); median: over all "
        f"the setting's runs; x plain: the medians' ratio. Load average at the end: {load:.2f} "
        f"on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
