"""Controllers side by side on the built-in tasks, in one run.

Three comparisons, each on ``lrkit.bench.run.execute`` (the same runs as
``lrkit compare``; ``lr`` and ``steps`` filled from the grid and the task):

1. **Guard on vs off at too-high learning rates**: ``cosine()`` against
   ``guard(cosine())`` (and a stronger ``guard(cosine(), factor=0.25,
   max_rollbacks=5)``) at learning rates where plain runs blow up. Per
   task x lr: how many seeds diverged without the guard, how many the guard
   rescued, and the final metric of the rescued runs, next to the best final
   of ``cosine()`` at a good lr on the same task (the "clean" reference).
2. **Plateau + cosine vs cosine vs torch's plateau alone**: ``cosine()``,
   ``plateau(cosine(), patience=3, factor=0.5)`` and ``plateau(constant(),
   patience=3, factor=0.5)`` (over a constant, lrkit's Plateau *is* torch's
   ReduceLROnPlateau), plus ``constant()``; the final metric at each lr of a
   small grid, mean over seeds, and the best.
3. **Adaptive vs a tuned constant**: ``constant()`` over an lr grid (its
   best lr is the tuned constant) against ``adaptive(constant(), up=1.1)``
   started at the lowest, the tuned and the highest lr of that grid.

Controllers in compare observe the mean training loss of blocks of
``steps // 30`` steps (see ``lrkit.bench.run``). Everything is deterministic
(seeded); the wall time depends on the machine (about 3-4 minutes on 2 CPU
cores with ``--workers 1``).

Run:  python benchmarks/controllers.py [--seeds 2] [--workers 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor

from lrkit.bench.run import RunConfig, RunResult, execute, warm_up
from lrkit.bench.tasks import get_task

GUARD_SPECS = ["cosine()", "guard(cosine())", "guard(cosine(), factor=0.25, max_rollbacks=5)"]
#: task, optimizer, a good lr (the clean reference), too-high lrs
GUARD_CASES = [
    ("quadratic", "sgd", 1.0, [3.0, 5.0, 8.0]),
    ("rosenbrock", "sgd", 0.003, [0.01, 0.02, 0.05]),
    ("scales", "sgd", 0.01, [0.05, 0.1]),
    ("digits", "adam", 0.01, [0.5, 1.0]),
]

PLATEAU_SPECS = [
    "constant()",
    "cosine()",
    "plateau(constant(), patience=3, factor=0.5)",
    "plateau(cosine(), patience=3, factor=0.5)",
]
PLATEAU_CASES = [
    ("digits", "sgd", [0.1, 0.3, 1.0]),
    ("signals", "adam", [0.003, 0.01, 0.03]),
    ("scales", "adam", [0.01, 0.03, 0.1]),
]

ADAPTIVE_CASES = [
    ("digits", "sgd", [0.03, 0.1, 0.3, 1.0, 3.0]),
    ("scales", "adam", [0.003, 0.01, 0.03, 0.1, 0.3]),
    ("quadratic", "sgd", [0.1, 0.3, 1.0, 2.0, 3.0]),
]
ADAPTIVE_SPEC = "adaptive(constant(), up=1.1)"


def run_all(configs: list[RunConfig], workers: int) -> dict[RunConfig, RunResult]:
    """Execute every config (in ``workers`` processes); results by config."""
    unique = list(dict.fromkeys(configs))
    if workers <= 1:
        warm_up()
        return {c: execute(c) for c in unique}
    with ProcessPoolExecutor(workers, initializer=warm_up) as pool:
        return dict(zip(unique, pool.map(execute, unique, chunksize=4), strict=True))


def configs_for(
    task: str, opt: str, specs: Iterable[str], lrs: Iterable[float], seeds: int
) -> list[RunConfig]:
    return [
        RunConfig(task, opt, spec, lr=lr, seed=seed)
        for spec in specs
        for lr in lrs
        for seed in range(seeds)
    ]


def finals(results: list[RunResult]) -> list[float]:
    return [r.final for r in results if r.final is not None and math.isfinite(r.final)]


def fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4g}"


def mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        + [line(r) for r in rows]
    )


def guard_table(res: dict[RunConfig, RunResult], seeds: int) -> str:
    rows = []
    for task, opt, good, lrs in GUARD_CASES:
        t = get_task(task)
        clean = [res[c] for c in configs_for(task, opt, ["cosine()"], [good], seeds)]
        for lr in lrs:
            row = [f"{task}/{opt}", f"{t.metric} {'max' if t.mode == 'max' else 'min'}", f"{lr:g}"]
            for spec in GUARD_SPECS:
                runs = [res[c] for c in configs_for(task, opt, [spec], [lr], seeds)]
                div = sum(r.status == "diverged" for r in runs)
                resc = [r for r in runs if r.status == "rescued"]
                ok = [r for r in runs if r.status == "ok"]
                if spec == "cosine()":
                    row.append(f"{div}/{len(runs)} div, final {fmt(mean(finals(ok)))}")
                else:
                    rb = mean([len(r.rollbacks) for r in resc])
                    row.append(
                        f"{len(resc)} rescued ({'-' if rb is None else f'{rb:.1f}'} rb), "
                        f"{div} div, final {fmt(mean(finals(resc + ok)))}"
                    )
            row.append(fmt(mean(finals(clean))) + f" @ lr {good:g}")
            rows.append(row)
    return table(
        [
            "task/opt",
            "metric",
            "lr",
            "cosine() (guard off)",
            "guard(cosine())",
            "guard(..., factor=0.25, max_rollbacks=5)",
            "clean cosine()",
        ],
        rows,
    )


def plateau_table(res: dict[RunConfig, RunResult], seeds: int) -> str:
    rows = []
    for task, opt, lrs in PLATEAU_CASES:
        t = get_task(task)
        for spec in PLATEAU_SPECS:
            cells = []
            per_lr = []
            for lr in lrs:
                runs = [res[c] for c in configs_for(task, opt, [spec], [lr], seeds)]
                f = finals([r for r in runs if r.status in ("ok", "rescued")])
                m = mean(f) if len(f) == len(runs) else None  # a diverged seed: no mean
                per_lr.append(m)
                cells.append(fmt(m))
            valid = [m for m in per_lr if m is not None]
            best = (max if t.mode == "max" else min)(valid) if valid else None
            rows.append([f"{task}/{opt}", t.metric, spec, *cells, fmt(best)])
    lr_cols = [f"lr #{i + 1}" for i in range(3)]
    note = "; ".join(f"{task}/{opt}: lrs {lrs}" for task, opt, lrs in PLATEAU_CASES)
    return table(["task/opt", "metric", "schedule", *lr_cols, "best"], rows) + f"\n({note})"


def adaptive_table(res: dict[RunConfig, RunResult], seeds: int) -> str:
    rows = []
    for task, opt, lrs in ADAPTIVE_CASES:
        t = get_task(task)
        better = max if t.mode == "max" else min
        by_lr = {}
        for lr in lrs:
            runs = [res[c] for c in configs_for(task, opt, ["constant()"], [lr], seeds)]
            f = finals([r for r in runs if r.status == "ok"])
            by_lr[lr] = mean(f) if len(f) == len(runs) else None
        valid = {lr: m for lr, m in by_lr.items() if m is not None}
        tuned = better(valid, key=valid.__getitem__)
        starts = [lrs[0], tuned, lrs[-1]]
        cells = []
        for lr in starts:
            runs = [res[c] for c in configs_for(task, opt, [ADAPTIVE_SPEC], [lr], seeds)]
            f = finals([r for r in runs if r.status == "ok"])
            last_lr = mean([r.lr[-1] for r in runs if r.lr and r.status == "ok"])
            cells.append(
                f"{fmt(mean(f)) if len(f) == len(runs) else 'diverged'} "
                f"(from {lr:g}, ends at lr {fmt(last_lr)})"
            )
        rows.append(
            [
                f"{task}/{opt}",
                t.metric,
                f"{fmt(valid[tuned])} @ lr {tuned:g}",
                fmt(by_lr[lrs[0]]),
                fmt(by_lr[lrs[-1]]),
                *cells,
            ]
        )
    return table(
        [
            "task/opt",
            "metric",
            "tuned constant()",
            "constant @ lowest",
            "constant @ highest",
            "adaptive from lowest",
            "adaptive from tuned",
            "adaptive from highest",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write every result here")
    args = parser.parse_args()
    seeds = args.seeds
    guard_seeds = seeds + 1  # divergence depends on the seed: one more
    configs = []
    for task, opt, good, lrs in GUARD_CASES:
        configs += configs_for(task, opt, GUARD_SPECS, lrs, guard_seeds)
        configs += configs_for(task, opt, ["cosine()"], [good], guard_seeds)
    for task, opt, lrs in PLATEAU_CASES:
        configs += configs_for(task, opt, PLATEAU_SPECS, lrs, seeds)
    for task, opt, lrs in ADAPTIVE_CASES:
        configs += configs_for(task, opt, ["constant()", ADAPTIVE_SPEC], lrs, seeds)
    start = time.perf_counter()
    res = run_all(configs, args.workers)
    wall = time.perf_counter() - start
    errors = [r for r in res.values() if r.status == "error"]
    print(
        f"# lrkit controllers benchmark: {len(res)} runs in {wall:.0f} s "
        f"({args.workers} worker(s)); errors: {len(errors)}"
    )
    for r in errors[:5]:
        print("error:", r.config, r.reason)
    print(
        f"\n## 1. Guard on vs off at too-high lrs ({guard_seeds} seeds; rb = rollbacks, "
        "div = diverged; final = mean over seeds that finished)\n"
    )
    print(guard_table(res, guard_seeds))
    print(
        f"\n## 2. Plateau + cosine vs cosine vs torch's plateau alone (final metric, mean of "
        f"{seeds} seeds; '-' = a seed diverged)\n"
    )
    print(plateau_table(res, seeds))
    print(
        f"\n## 3. Adaptive ({ADAPTIVE_SPEC}) vs a tuned constant (final metric, mean of "
        f"{seeds} seeds)\n"
    )
    print(adaptive_table(res, seeds))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([r.to_dict() for r in res.values()], fh)


if __name__ == "__main__":
    main()
