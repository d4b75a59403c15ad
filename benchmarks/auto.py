"""``lrkit auto`` against a tuned lr and the usual ways of not choosing one, side by side.

For each task and each of AdamW and SGD momentum, the score is the final
validation metric as a loss (the error rate ``1 - acc`` for accuracy tasks),
the mean over seeds 0..``--seeds``-1 (3), over that of the **tuned
reference**: the same optimizer with ``cosine()`` at the best lr of a grid a
third of a decade apart (AdamW 1e-5..1, momentum 1e-5..10), the best lr
being the one of the best mean over the seeds (a lr where a seed diverged
scores inf). Beside it, each with the same seeds:

- **auto**: ``lrkit.auto(task, optimizer=..., seed=s)`` once per seed, its
  metric and its cost in runs (every update, the kept run's included);
- **AdamW 1e-3**: ``constant()`` at the framework default;
- **Schedule-Free** (AdamW, its defaults) and **Prodigy + cosine()**;
- **finder + cosine**: :func:`lrkit.bench.find.suggest_lr` (seed s, its
  defaults) then ``cosine()`` at the suggestion; its cost is the sweep's
  updates plus one run.

Tasks: the built-in ones and generated user tasks. ``auto``'s rules were set
looking at digits, scales, quadratic and ``auto_tuning_tasks.py`` only
(marked ``*``); signals, rosenbrock, charlm and the tasks of
``diagnosis_tasks.py`` and ``auto_tasks.py`` are held out.

Goal (issue 16), for each optimizer against its own reference: geometric
mean of the ratios <= 1.10, worst <= 1.3, cost <= 1.5 runs.

Every grid and baseline run is kept in a SQLite run store (``--store``) and
every auto result in ``auto.json`` beside it, so a re-run resumes.

Run (about 35 min on 2 cores the first time)::

    nice -n 5 python benchmarks/auto.py --workers 2
    python benchmarks/auto.py --tasks digits,quadratic --seeds 1
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from lrkit.bench.grid import parse_lrs, split_names
from lrkit.bench.run import RunConfig, RunResult
from lrkit.bench.runner import PlainProgress, run_grid
from lrkit.bench.store import RunStore
from lrkit.bench.trial import load_task

HERE = Path(__file__).resolve().parent
TUNING_USER = [
    f"{HERE / 'auto_tuning_tasks.py'}:moons_mlp",
    f"{HERE / 'auto_tuning_tasks.py'}:deep_tanh",
    f"{HERE / 'auto_tuning_tasks.py'}:bag_of_words",
]
USER = [
    f"{HERE / 'diagnosis_tasks.py'}:teacher_mlp",
    f"{HERE / 'diagnosis_tasks.py'}:logistic_unscaled",
    f"{HERE / 'diagnosis_tasks.py'}:gru_sequence",
    f"{HERE / 'auto_tasks.py'}:spiral_mlp",
]
TASKS = ["digits", "scales", "quadratic", *TUNING_USER]
TASKS += ["signals", "rosenbrock", "charlm", *USER]
TUNING = {"digits", "scales", "quadratic", "moons_mlp", "deep_tanh", "bag_of_words"}
OPTIMIZERS = {"adamw": "logspace(1e-5,1,16)", "momentum": "logspace(1e-5,10,19)"}
BASELINES = {  # name -> (optimizer, schedule, lr or multiplier)
    "AdamW 1e-3": ("adamw", "constant()", 1e-3),
    "Schedule-Free": ("schedulefree", "constant()", 1.0),
    "Prodigy+cos": ("prodigy", "cosine()", 1.0),
}


def score(result: dict[str, Any] | RunResult, mode: str) -> float:
    """The final metric as a loss (error rate for ``max`` metrics); inf if none."""
    if isinstance(result, dict):  # an auto result ("metric") or a finder + cosine run ("final")
        final = result["metric"] if "metric" in result else result["final"]
    else:
        final = result.final
    if final is None or not math.isfinite(final):
        return math.inf
    return float(final) if mode == "min" else 1.0 - float(final)


def mean(values: list[float]) -> float:
    return math.inf if any(not math.isfinite(v) for v in values) else statistics.fmean(values)


# -- the auto runs, cached ------------------------------------------------------


def _auto_one(task: str, optimizer: str, seed: int) -> dict[str, Any]:
    from lrkit.bench.auto import auto

    result = auto(task, optimizer=optimizer, seed=seed)
    data = result.to_dict()
    data.pop("run")
    return data


def _finder_one(task: str, optimizer: str, seed: int) -> dict[str, Any]:
    from lrkit.bench.find import suggest_lr
    from lrkit.bench.run import execute

    found = suggest_lr(task, optimizer, seed=seed)
    lr = found.suggestion
    if not (math.isfinite(lr) and lr > 0):
        return {"lr": None, "final": None, "updates": found.updates}
    run = execute(RunConfig(task, optimizer, "cosine()", lr=lr, seed=seed))
    return {"lr": lr, "final": run.final, "updates": found.updates + len(run.lr)}


def cached(path: Path, jobs: list[tuple[str, str, str, int]], workers: int) -> dict[str, Any]:
    """Run ``(kind, task, optimizer, seed)`` jobs not yet in the JSON cache at ``path``."""
    done: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    todo = [job for job in jobs if "|".join(map(str, job)) not in done]
    if todo:
        print(f"{len(todo)} auto/finder jobs to run ...", file=sys.stderr)
        with ProcessPoolExecutor(max(1, workers)) as pool:
            futures = {
                job: pool.submit(_auto_one if job[0] == "auto" else _finder_one, *job[1:])
                for job in todo
            }
            for job, future in futures.items():
                data = future.result()
                done["|".join(map(str, job))] = data
                path.write_text(json.dumps(done, indent=1))
                name = job[1].rsplit(":", 1)[-1]
                print(f"  {job[0]} {name} {job[2]} seed {job[3]}: lr {data['lr']}", file=sys.stderr)
    return done


# -- the table ------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--optimizers", default="adamw,momentum")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", type=Path, default=Path("/tmp/lrkit-auto/runs.sqlite"))
    args = parser.parse_args(argv)
    tasks = split_names([args.tasks])
    optimizers = split_names([args.optimizers])
    seeds = range(args.seeds)

    configs = [
        RunConfig(task, opt, "cosine()", lr, seed)
        for task in tasks
        for opt in optimizers
        for lr in parse_lrs([OPTIMIZERS[opt]])
        for seed in seeds
    ]
    configs += [
        RunConfig(task, opt, schedule, lr, seed)
        for task in tasks
        for opt, schedule, lr in BASELINES.values()
        for seed in seeds
    ]
    start = time.perf_counter()
    with RunStore(args.store) as store:
        report = run_grid(configs, store, workers=args.workers, progress=PlainProgress(sys.stderr))
        by_key = {r.key: r for r in store.results(report.keys)}
    print(
        f"grid and baselines: {report.total} runs in {time.perf_counter() - start:.0f}s",
        file=sys.stderr,
    )
    jobs = [
        (kind, task, opt, seed)
        for kind in ("auto", "finder")
        for task in tasks
        for opt in optimizers
        for seed in seeds
    ]
    extra = cached(args.store.with_name("auto.json"), jobs, args.workers)

    for opt in optimizers:
        rows = []
        for task in tasks:
            info = load_task(task)
            mode = info.mode
            per_lr: dict[float, list[float]] = {}
            for config in configs:
                mine = config.task == task and config.optimizer == opt
                if mine and config.schedule == "cosine()":
                    per_lr.setdefault(config.lr, []).append(score(by_key[config.key()], mode))
            best_lr = min(per_lr, key=lambda lr: mean(per_lr[lr]))
            ref = mean(per_lr[best_lr])
            row: dict[str, Any] = {"task": info.name, "best_lr": best_lr, "ref": ref}
            autos = [extra[f"auto|{task}|{opt}|{s}"] for s in seeds]
            row["auto"] = mean([score(a, mode) for a in autos]) / ref
            row["auto_cost"] = max(a["cost"] for a in autos)
            row["auto_lrs"] = [a["lr"] for a in autos]
            for name, (bopt, schedule, lr) in BASELINES.items():
                values = [
                    score(by_key[RunConfig(task, bopt, schedule, lr, s).key()], mode) for s in seeds
                ]
                row[name] = mean(values) / ref
            finders = [extra[f"finder|{task}|{opt}|{s}"] for s in seeds]
            row["finder"] = mean([score(f, mode) for f in finders]) / ref
            row["finder_cost"] = max(f["updates"] for f in finders) / info.steps
            rows.append(row)
        print_table(opt, rows)


def geo(values: list[float]) -> float:
    finite = [min(v, 1e6) for v in values]
    return math.exp(statistics.fmean(math.log(v) for v in finite))


def print_table(opt: str, rows: list[dict[str, Any]]) -> None:
    cols = ["auto", "AdamW 1e-3", "Schedule-Free", "Prodigy+cos", "finder"]
    print()
    print(f"== {opt}: final score / tuned {opt} + cosine() (mean of seeds; lower is better)")
    head = f"{'task':<18s} {'best lr':>8s} {'tuned':>8s} | " + " ".join(f"{c:>13s}" for c in cols)
    head += f" | {'auto cost':>9s} {'finder cost':>11s}  auto lrs"
    print(head)
    print("-" * len(head))

    def cell(v: float) -> str:
        return f"{v:13.2f}" if math.isfinite(v) else f"{'div':>13s}"

    for row in rows:
        mark = "*" if row["task"] in TUNING else " "
        print(
            f"{row['task'] + mark:<18s} {row['best_lr']:8.2g} {row['ref']:8.3g} | "
            + " ".join(cell(row[c]) for c in cols)
            + f" | {row['auto_cost']:9.2f} {row['finder_cost']:11.2f}  "
            + ",".join(f"{lr:g}" for lr in row["auto_lrs"])
        )
    for label, subset in (
        ("all", rows),
        ("held out", [r for r in rows if r["task"] not in TUNING]),
        ("tuning*", [r for r in rows if r["task"] in TUNING]),
    ):
        if not subset:
            continue
        print(
            f"{'geo mean ' + label:<37s} | "
            + " ".join(f"{geo([r[c] for r in subset]):13.2f}" for c in cols)
        )
        print(
            f"{'worst ' + label:<37s} | " + " ".join(cell(max(r[c] for r in subset)) for c in cols)
        )


if __name__ == "__main__":
    main()
