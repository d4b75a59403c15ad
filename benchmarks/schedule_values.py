"""How fast are lrkit schedules? Vectorized values against torch stepping, and scalar calls.

Two measurements, printed as tables with their goals beside them:

1. **A whole run's learning rates.** For pairs of equivalent schedules, lrkit's
   ``s.values(n)`` (one numpy call, the min of ``--repeats`` runs) against a torch
   scheduler stepped ``n`` times, the way a training loop drives it: an SGD
   optimizer on a single parameter, and per step the lr read from
   ``param_groups[0]["lr"]`` into a list, then ``scheduler.step()`` (one run:
   it is slow). The optimizer itself never steps, so only the scheduler is
   timed. Both give the lrs of steps ``0..n-1``; the largest difference,
   relative to the peak lr, shows the pair really is equivalent.
   Goal: vectorized at least 100x faster.

2. **One step.** ``s(step)`` for every family, timed with :mod:`timeit`
   (the min over repeats, in µs per call), at a step inside the family's
   costliest phase, and as a multiple of an empty Python function call timed
   the same way (a figure that survives a busy or slower machine).
   Goal: under 2 µs.

Run it with ``python benchmarks/schedule_values.py`` (``make bench``);
``--steps 100000`` makes the torch part ten times quicker. It needs torch
(the ``torch`` extra). pytest never collects this folder.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import timeit
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import lrkit
from lrkit import Schedule

VECTOR_GOAL = 100.0  # lrkit values(n) at least this many times faster than torch stepping
SCALAR_GOAL_US = 2.0  # one s(step) call under this many microseconds


@dataclass
class Pair:
    """An lrkit schedule and a factory for the torch scheduler that matches it."""

    name: str
    schedule: Schedule
    torch_name: str
    make_torch: Callable[[object], object]  # optimizer -> scheduler


def pairs(n: int) -> list[Pair]:
    """Equivalent (lrkit, torch) schedules over ``n`` steps, all peaking at lr 0.1."""
    from torch.optim import lr_scheduler as tl

    lr = 0.1
    warm = max(1, n // 100)
    decay = math.ceil(0.2 * n - 1e-9)
    stable_end = n - decay

    def wsd_factor(t: int) -> float:  # the same WSD, as a LambdaLR multiplier
        if t < warm:
            return t / warm
        if t < stable_end:
            return 1.0
        return 1.0 - math.sqrt(min(t - stable_end, decay) / decay)

    return [
        Pair(
            "cosine",
            lrkit.cosine(lr=lr, steps=n),
            "CosineAnnealingLR",
            lambda opt: tl.CosineAnnealingLR(opt, T_max=n),
        ),
        Pair(
            "step_decay",
            lrkit.step_decay(lr, step_size=max(1, n // 10), gamma=0.5),
            "StepLR",
            lambda opt: tl.StepLR(opt, step_size=max(1, n // 10), gamma=0.5),
        ),
        Pair(
            "exponential",
            lrkit.exponential(lr, gamma=1e-4 ** (1 / n)),
            "ExponentialLR",
            lambda opt: tl.ExponentialLR(opt, gamma=1e-4 ** (1 / n)),
        ),
        Pair(
            "one_cycle",
            lrkit.one_cycle(max_lr=lr, steps=n),
            "OneCycleLR (cycle_momentum=False)",
            lambda opt: tl.OneCycleLR(opt, max_lr=lr, total_steps=n, cycle_momentum=False),
        ),
        Pair(
            "warmup+cosine",
            lrkit.warmup(lrkit.cosine(lr=lr, steps=n - warm), steps=warm, start_lr=lr * 1e-3),
            "SequentialLR(LinearLR, CosineAnnealingLR)",
            lambda opt: tl.SequentialLR(
                opt,
                [
                    tl.LinearLR(opt, start_factor=1e-3, total_iters=warm),
                    tl.CosineAnnealingLR(opt, T_max=n - warm),
                ],
                milestones=[warm],
            ),
        ),
        Pair(
            "wsd",
            lrkit.wsd(lr=lr, steps=n, warmup_steps=warm, decay_steps=0.2),
            "LambdaLR(WSD formula)",
            lambda opt: tl.LambdaLR(opt, wsd_factor),
        ),
    ]


def time_torch(make: Callable[[object], object], n: int) -> tuple[float, np.ndarray]:
    """Seconds to step a fresh torch scheduler through ``n`` steps, and the lrs it gave."""
    import torch

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    opt.step()  # no gradient: a no-op that tells the scheduler the optimizer has stepped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's deprecated step(0) call
        sched = make(opt)
        group = opt.param_groups[0]
        lrs = [0.0] * n
        start = time.perf_counter()
        for i in range(n - 1):
            lrs[i] = group["lr"]
            sched.step()
        lrs[n - 1] = group["lr"]
        elapsed = time.perf_counter() - start
    return elapsed, np.asarray(lrs)


def time_values(s: Schedule, n: int, repeats: int) -> tuple[float, np.ndarray]:
    """The best of ``repeats`` timings of ``s.values(n)``, in seconds, and the values."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        values = s.values(n)
        best = min(best, time.perf_counter() - start)
    return best, values


def scalar_cases() -> list[tuple[str, Schedule, int]]:
    """(label, schedule, step) for every family, the step inside its costliest phase."""
    cos = lrkit.cosine(lr=0.1, steps=10_000)
    return [
        ("constant", lrkit.constant(0.1), 5_000),
        ("step_decay", lrkit.step_decay(0.1, step_size=1_000), 5_000),
        ("multistep (3 milestones)", lrkit.multistep(0.1, milestones=[3000, 6000, 9000]), 5_000),
        ("exponential", lrkit.exponential(0.1, gamma=0.9999), 5_000),
        ("linear", lrkit.linear(0.1, 0.0, steps=10_000), 5_000),
        ("cosine", cos, 5_000),
        ("cosine_restarts", lrkit.cosine_restarts(0.1, period=1_000), 5_500),
        (
            "cosine_restarts (period_mult=2)",
            lrkit.cosine_restarts(0.1, period=100, period_mult=2),
            10**9,
        ),
        ("polynomial", lrkit.polynomial(0.1, steps=10_000, power=2.0), 5_000),
        ("cyclic", lrkit.cyclic(0.01, 0.1, step_size_up=500), 5_250),
        (
            "cyclic (exp_range)",
            lrkit.cyclic(0.01, 0.1, step_size_up=500, mode="exp_range", gamma=0.9999),
            5_250,
        ),
        ("one_cycle", lrkit.one_cycle(max_lr=0.1, steps=10_000), 5_000),
        (
            "one_cycle (three_phase)",
            lrkit.one_cycle(max_lr=0.1, steps=10_000, three_phase=True),
            8_000,
        ),
        ("inverse_sqrt", lrkit.inverse_sqrt(0.1, warmup_steps=1_000), 5_000),
        ("wsd (in the decay)", lrkit.wsd(0.1, steps=10_000, warmup_steps=100), 9_000),
        ("warmup(cosine)", lrkit.warmup(cos, steps=500), 5_000),
        (
            "join (3 parts)",
            lrkit.join(lrkit.constant(0.1), cos, lrkit.constant(0.001), boundaries=[1_000, 11_000]),
            5_000,
        ),
        ("0.5 * cosine", 0.5 * cos, 5_000),
        ("cosine replanned (after at)", cos.replan(20_000, at=4_000), 15_000),
        (
            "cosine replanned twice",
            cos.replan(20_000, at=4_000).replan(25_000, at=12_000),
            15_000,
        ),
        (
            "wsd replanned (in the decay)",
            lrkit.wsd(0.1, steps=10_000, warmup_steps=100).replan(12_000, at=8_500),
            11_000,
        ),
        (
            "one_cycle replanned",
            lrkit.one_cycle(max_lr=0.1, steps=10_000).replan(15_000, at=2_000),
            9_000,
        ),
    ]


def time_scalar(fn: Callable[[int], float], step: int, repeats: int) -> float:
    """Microseconds per ``fn(step)`` call: the min over ``repeats`` timeit runs."""
    timer = timeit.Timer("fn(step)", globals={"fn": fn, "step": step})
    number, _ = timer.autorange()  # enough calls for ~0.2 s
    return min(timer.repeat(repeat=repeats, number=number)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=1_000_000, help="steps per run (default 1,000,000)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="repeats for the min (default 5)")
    parser.add_argument(
        "--skip-torch", action="store_true", help="only the scalar part (no torch needed)"
    )
    args = parser.parse_args()
    if args.steps < 10:
        parser.error(f"--steps must be an integer >= 10, got {args.steps}")
    if args.repeats < 1:
        parser.error(f"--repeats must be an integer >= 1, got {args.repeats}")
    n = args.steps

    versions = f"lrkit {lrkit.__version__}, numpy {np.__version__}"
    if not args.skip_torch:
        import torch

        torch.set_num_threads(1)
        versions += f", torch {torch.__version__}"
    print(f"Python {platform.python_version()} on {platform.machine()}; {versions}")
    cores, load = os.cpu_count(), os.getloadavg()[0]
    print(f"{cores} CPU cores, load average {load:.2f} at the start (other work skews the figures)")

    wall = time.perf_counter()
    if not args.skip_torch:
        print(
            f"\n1. The lrs of steps 0..{n - 1:_}: lrkit s.values(n) vs stepping a torch scheduler "
            f"n times\n   (torch: SGD on one parameter, lr read from param_groups[0] then "
            f"scheduler.step(), one run;\n    lrkit: min of {args.repeats} runs; "
            f"goal: lrkit >= {VECTOR_GOAL:.0f}x faster)\n"
        )
        header = (
            f"{'lrkit schedule':<15} {'torch scheduler':<42} {'lrkit ms':>9} {'torch s':>8} "
            f"{'speed-up':>9}  {'goal':<4} {'max diff/lr':>11}"
        )
        print(header)
        print("-" * len(header))
        for pair in pairs(n):
            t_torch, lrs_torch = time_torch(pair.make_torch, n)
            t_lrkit, lrs_lrkit = time_values(pair.schedule, n, args.repeats)
            ratio = t_torch / t_lrkit
            diff = float(np.max(np.abs(lrs_torch - lrs_lrkit)) / np.max(lrs_lrkit))
            mark = "ok" if ratio >= VECTOR_GOAL else "MISS"
            print(
                f"{pair.name:<15} {pair.torch_name:<42} {t_lrkit * 1e3:>9.2f} {t_torch:>8.2f} "
                f"{ratio:>8.0f}x  {mark:<4} {diff:>11.1e}",
                flush=True,
            )

    print(
        f"\n2. One step: s(step), µs per call (timeit, min of {args.repeats} repeats; "
        f"goal: < {SCALAR_GOAL_US:g} µs)\n"
    )

    def empty(step: int) -> float:
        return 0.0

    # The cost of an empty call, measured alongside, makes figures comparable
    # across machines and loads: "x empty" is the call in units of it.
    header = f"{'family':<32} {'step':>10} {'µs/call':>8} {'x empty':>8}  goal"
    print(header)
    print("-" * len(header))
    base = time_scalar(empty, 5_000, args.repeats)
    print(f"{'(an empty Python function)':<32} {5_000:>10} {base:>8.3f} {1:>8.1f}")
    for label, sched, step in scalar_cases():
        us = time_scalar(sched, step, args.repeats)
        mark = "ok" if us < SCALAR_GOAL_US else "ABOVE"
        print(f"{label:<32} {step:>10} {us:>8.3f} {us / base:>8.1f}  {mark}", flush=True)
    print(f"\nelapsed: {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
