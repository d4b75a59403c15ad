"""The cost of ``scheduler.step()``: each lrkit.torch drop-in against torch's class.

Both schedulers drive the same kind of optimizer (SGD with momentum, 2 and
then 4 param groups), built the same way; only ``scheduler.step()`` is timed
(no optimizer work). One repetition runs ``--steps`` steps of each, in
alternating blocks of ``--block`` steps (torch, lrkit, torch, ...), so that a
drift in machine load hits both; a figure is the median over ``--reps``
repetitions. The driver ``lrkit.torch.Scheduler`` is compared with torch's
LambdaLR computing the same schedule.

Run:  python benchmarks/torch_step_overhead.py [--steps 20000] [--block 500] [--reps 5]
      [--groups 2,4]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import lr_scheduler as T

import lrkit
import lrkit.torch as L


def warm_cos(t: int) -> float:
    """warmup(cosine(lr=1, steps=10**7), steps=100) written out, for torch's LambdaLR."""
    if t < 100:
        return t / 100
    return 0.5 * (1 + math.cos(math.pi * min(t - 100, 10**7) / 10**7))


def make_opt(n_groups: int) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(4))], "lr": 0.1} for _ in range(n_groups)]
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    opt.step()  # so that neither library warns about the step order
    return opt


BIG = 10**7
SCHEDULERS: dict[str, Callable[[Any, torch.optim.Optimizer], Any]] = {
    "LambdaLR": lambda M, o: M.LambdaLR(o, warm_cos),
    "MultiplicativeLR": lambda M, o: M.MultiplicativeLR(o, lambda t: 0.99999),
    "StepLR": lambda M, o: M.StepLR(o, step_size=1000, gamma=0.9),
    "MultiStepLR": lambda M, o: M.MultiStepLR(o, milestones=[100, 5000, 9000], gamma=0.5),
    "ConstantLR": lambda M, o: M.ConstantLR(o, factor=0.5, total_iters=1000),
    "LinearLR": lambda M, o: M.LinearLR(o, start_factor=0.1, total_iters=BIG),
    "ExponentialLR": lambda M, o: M.ExponentialLR(o, gamma=0.99999),
    "SequentialLR": lambda M, o: M.SequentialLR(
        o,
        [M.LinearLR(o, start_factor=0.1, total_iters=100), M.CosineAnnealingLR(o, T_max=BIG)],
        milestones=[100],
    ),
    "PolynomialLR": lambda M, o: M.PolynomialLR(o, total_iters=BIG, power=2.0),
    "CosineAnnealingLR": lambda M, o: M.CosineAnnealingLR(o, T_max=BIG, eta_min=1e-5),
    "ChainedScheduler": lambda M, o: M.ChainedScheduler(
        [M.ConstantLR(o, factor=0.5, total_iters=100), M.ExponentialLR(o, gamma=0.99999)]
    ),
    "ReduceLROnPlateau": lambda M, o: M.ReduceLROnPlateau(o, patience=5, min_lr=1e-6),
    "CyclicLR": lambda M, o: M.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=500),
    "OneCycleLR": lambda M, o: M.OneCycleLR(o, max_lr=0.1, total_steps=BIG),
    "CosineAnnealingWarmRestarts": lambda M, o: M.CosineAnnealingWarmRestarts(o, T_0=1000),
}


def stepper(sched: Any, metric: bool) -> Callable[[int, int], float]:
    """``run(start, n)``: seconds for steps ``start .. start + n - 1`` of ``sched``."""
    step = sched.step
    if metric:

        def run(start: int, n: int) -> float:
            t0 = time.perf_counter()
            for i in range(start, start + n):
                step(1.0 + (i % 7 == 0))
            return time.perf_counter() - t0

    else:

        def run(start: int, n: int) -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                step()
            return time.perf_counter() - t0

    return run


def one_rep(
    torch_build: Callable,
    lrkit_build: Callable,
    n_groups: int,
    steps: int,
    block: int,
    metric: bool,
) -> tuple[float, float]:
    """Seconds per step of torch's and lrkit's scheduler, in alternating blocks."""
    theirs = stepper(torch_build(make_opt(n_groups)), metric)
    ours = stepper(lrkit_build(make_opt(n_groups)), metric)
    spent_t = spent_l = 0.0
    for start in range(0, steps, block):
        n = min(block, steps - start)
        spent_t += theirs(start, n)
        spent_l += ours(start, n)
    return spent_t / steps, spent_l / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000, help="step() calls per repetition")
    parser.add_argument("--block", type=int, default=500, help="steps per alternating block")
    parser.add_argument("--reps", type=int, default=5, help="repetitions; the median counts")
    parser.add_argument("--groups", default="2,4", help="param group counts, comma-separated")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)

    pairs: list[tuple[str, Callable, Callable, bool]] = [
        (name, (lambda o, b=b: b(T, o)), (lambda o, b=b: b(L, o)), name == "ReduceLROnPlateau")
        for name, b in SCHEDULERS.items()
    ]
    schedule = lrkit.warmup(lrkit.cosine(lr=0.1, steps=BIG), steps=100)
    pairs.append(
        (
            "Scheduler (vs LambdaLR)",
            lambda o: T.LambdaLR(o, warm_cos),
            lambda o: L.Scheduler(o, schedule),
            False,
        )
    )

    print(f"torch {torch.__version__}, SGD(momentum=0.9), torch.set_num_threads(1)")
    print(
        f"{args.steps} step() calls of each per repetition, in alternating blocks of "
        f"{args.block}; median of {args.reps} repetitions\n"
    )
    worst = 0.0
    for n_groups in [int(g) for g in args.groups.split(",")]:
        print(f"{n_groups} param groups")
        print(f"{'scheduler':<30}{'torch us/step':>15}{'lrkit us/step':>15}{'lrkit/torch':>13}")
        for name, torch_build, lrkit_build, metric in pairs:
            reps = [
                one_rep(torch_build, lrkit_build, n_groups, args.steps, args.block, metric)
                for _ in range(args.reps)
            ]
            t = statistics.median(r[0] for r in reps)
            lk = statistics.median(r[1] for r in reps)
            ratio = lk / t
            worst = max(worst, ratio)
            print(f"{name:<30}{t * 1e6:>15.2f}{lk * 1e6:>15.2f}{ratio:>12.2f}x")
        print()
    print(f"worst ratio: {worst:.2f}x (goal: <= 1.00x)")


if __name__ == "__main__":
    main()
