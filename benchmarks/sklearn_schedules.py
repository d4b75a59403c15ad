"""sklearn's own lr rules against lrkit's cosine and one-cycle, on the ``digits_sgd`` task.

``digits_sgd`` trains sklearn's ``SGDClassifier(loss="log_loss",
alpha=1e-4)`` on the 8x8 digits with one ``partial_fit`` of 32 samples a
step, 300 steps, the lr set by the schedule at every step
(:mod:`lrkit.bench.sklearn_task`). sklearn's rules at that granularity are
lrkit values (:mod:`lrkit.sklearn`): ``invscaling(eta0, power_t=0.5,
batch_size=32)`` (sklearn's classifier default power_t; eta0 is the grid's
lr) and ``optimal(alpha=0.0001, batch_size=32)`` (its lr comes from alpha:
the grid's lr does not apply; step ``i`` takes the lr sklearn gives sample
``32 i + 1``). Against them: ``constant()``, ``cosine()`` and
``one_cycle()`` at the same lrs.

Every run is ``lrkit.bench.run.execute`` of a :class:`RunConfig`, as
``lrkit compare`` runs it; the metric is the final validation log loss
(lower is better), mean ± std over the seeds (the seed orders the batches),
and the validation accuracy at the end beside it. Deterministic; 75 runs,
about a minute on an idle CPU core (3 minutes on a shared 2-core machine).

Run:  python benchmarks/sklearn_schedules.py [--seeds 3] [--lrs 0.1,0.3,1,3,10,30]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from lrkit.bench.run import RunConfig, RunResult, execute

TASK = "digits_sgd"
SCHEDULES = [
    ("sklearn invscaling", "invscaling(power_t=0.5, batch_size=32)"),
    ("sklearn optimal", "optimal(alpha=0.0001, batch_size=32)"),
    ("lrkit constant", "constant()"),
    ("lrkit cosine", "cosine()"),
    ("lrkit one_cycle", "one_cycle()"),
]


def pinned(spec: str) -> bool:
    """A spec that sets its own lr (sklearn's optimal: from alpha)."""
    return spec.startswith("optimal(")


def summary(results: list[RunResult]) -> tuple[float, float, float, int]:
    """(mean final val_loss, its std, mean final val_acc, runs ok) over seeds."""
    finals = [r.final for r in results if r.status == "ok" and r.final is not None]
    accs = [r.scalars["val_acc"][-1][1] for r in results if r.status == "ok"]
    if not finals:
        return math.nan, math.nan, math.nan, 0
    std = statistics.stdev(finals) if len(finals) > 1 else 0.0
    return statistics.fmean(finals), std, statistics.fmean(accs), len(finals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lrs", default="0.1,0.3,1,3,10,30")
    args = parser.parse_args()
    lrs = [float(x) for x in args.lrs.split(",")]
    seeds = range(args.seeds)
    start = time.perf_counter()
    table: dict[str, dict[float, tuple[float, float, float, int]]] = {}
    for label, spec in SCHEDULES:
        row = {}
        for lr in [lrs[0]] if pinned(spec) else lrs:
            runs = [execute(RunConfig(TASK, "sgd", spec, lr=lr, seed=s)) for s in seeds]
            row[lr] = summary(runs)
        table[label] = row
    took = time.perf_counter() - start

    print(f"{TASK}: final val_loss (mean over {args.seeds} seeds; lower is better), 300 steps")
    print(f"{'schedule':<20}" + "".join(f"{'lr ' + format(lr, 'g'):>12}" for lr in lrs))
    for label, spec in SCHEDULES:
        row = table[label]
        if pinned(spec):
            mean = row[lrs[0]][0]
            cells = f"{'(its own lr: ' + format(mean, '.4f') + ')':>{12 * len(lrs)}}"
        else:
            cells = "".join(
                f"{row[lr][0]:>12.4f}" if row[lr][3] else f"{'diverged':>12}" for lr in lrs
            )
        print(f"{label:<20}{cells}")
    print()
    print(f"{'schedule':<20}{'best lr':>9}  {'val_loss mean ± std':>22}  {'val_acc':>8}  spec")
    for label, spec in SCHEDULES:
        row = table[label]
        ok = {lr: v for lr, v in row.items() if v[3]}
        if not ok:
            print(f"{label:<20}{'-':>9}  {'all diverged':>22}  {'':>8}  {spec}")
            continue
        lr = min(ok, key=lambda k: ok[k][0])
        mean, std, acc, _ = ok[lr]
        shown = "alpha" if pinned(spec) else format(lr, "g")
        print(f"{label:<20}{shown:>9}  {mean:>13.4f} ± {std:<6.4f}  {acc:>8.3f}  {spec}")
    print(f"\n{sum(len(r) for r in table.values()) * args.seeds} runs in {took:.0f}s")


if __name__ == "__main__":
    main()
