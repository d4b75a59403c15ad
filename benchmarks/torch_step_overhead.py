"""The cost of ``scheduler.step()``: each lrkit.torch drop-in against torch's class.

Both schedulers drive the same optimizer (SGD with momentum, 4 param groups),
built the same way; only ``scheduler.step()`` is timed (no optimizer work).
Each figure is the best of several rounds, torch and lrkit interleaved so
that drifts in machine load hit both. The driver ``lrkit.torch.Scheduler``
is compared with torch's LambdaLR computing the same schedule.

Run:  python benchmarks/torch_step_overhead.py [--steps 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import lr_scheduler as T

import lrkit
import lrkit.torch as L

GROUPS = 4


def warm_cos(t: int) -> float:
    """warmup(cosine(lr=1, steps=10**7), steps=100) written out, for torch's LambdaLR."""
    if t < 100:
        return t / 100
    return 0.5 * (1 + math.cos(math.pi * min(t - 100, 10**7) / 10**7))


def make_opt() -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(4))], "lr": 0.1} for _ in range(GROUPS)]
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


def time_steps(build: Callable[[torch.optim.Optimizer], Any], steps: int, metric: bool) -> float:
    """Seconds per ``step()``, over ``steps`` calls on a fresh scheduler."""
    sched = build(make_opt())
    step = sched.step
    start = time.perf_counter()
    if metric:
        for i in range(steps):
            step(1.0 + (i % 7 == 0))
    else:
        for _ in range(steps):
            step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000, help="step() calls per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; the best one counts")
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

    print(f"torch {torch.__version__}, {GROUPS} param groups, SGD(momentum=0.9)")
    print(f"{args.steps} step() calls per round, best of {args.rounds} rounds\n")
    print(f"{'scheduler':<30}{'torch us/step':>15}{'lrkit us/step':>15}{'lrkit/torch':>13}")
    worst = 0.0
    for name, torch_build, lrkit_build, metric in pairs:
        best_t, best_l = math.inf, math.inf
        for _ in range(args.rounds):
            best_t = min(best_t, time_steps(torch_build, args.steps, metric))
            best_l = min(best_l, time_steps(lrkit_build, args.steps, metric))
        ratio = best_l / best_t
        worst = max(worst, ratio)
        print(f"{name:<30}{best_t * 1e6:>15.2f}{best_l * 1e6:>15.2f}{ratio:>12.2f}x")
    print(f"\nworst ratio: {worst:.2f}x (goal: <= 1.00x)")


if __name__ == "__main__":
    main()
