"""The cost of watching a run: a training loop bare and with ``lrkit.torch.Monitor``.

The loop trains a small MLP (``--width`` hidden units, 2 hidden layers, batch
``--batch``) with AdamW for ``--steps`` steps, and each variant does exactly
the same work otherwise: forward, backward, ``optimizer.step()``,
``scheduler.step()`` and ``loss.item()`` (a loop that prints or logs its
loss reads it anyway). Variants:

- ``bare``: no monitor;
- ``every=10`` / ``every=1``: ``Monitor(optimizer, model, every=...)``
  (lr, momentum, loss, gradient norm and the per-group update ratio of each
  recorded update, and the live diagnosis);
- ``every=10 + CSV``: the same with ``lrkit.sinks.CSV``, when it is there.

One repetition runs every variant for ``--steps`` steps, in a rotating
order; a figure is the median over ``--reps`` repetitions of the seconds per
step, and the overhead is against ``bare`` of the same repetition. Threads
are pinned to 1 so the figures do not depend on a busy neighbour's cores.

Run:  python benchmarks/monitor_overhead.py [--steps 2000] [--reps 7] [--width 256]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import lrkit.torch as L


def make(width: int, seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, opt, L.Scheduler(opt, "warmup(cosine(steps=100000), steps=100)")


def run(variant: str, steps: int, width: int, batch: int, folder: Path) -> float:
    """Seconds per step of ``variant``."""
    model, opt, sched = make(width)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, batch, 64, generator=gen)
    y = torch.randint(0, 10, (32, batch), generator=gen)
    monitor = None
    if variant != "bare":
        every = 10 if variant.startswith("every=10") else 1
        sinks = []
        if variant.endswith("CSV"):
            from lrkit.sinks import CSV

            sinks.append(CSV(folder / f"{variant}.csv"))
        monitor = L.Monitor(opt, model, every=every, sinks=sinks)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for step in range(steps):
        i = step % 32
        loss = loss_fn(model(x[i]), y[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        value = loss.item()
        if monitor is not None:
            monitor.step(value)
    if monitor is not None:
        monitor.close()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = ["bare", "every=10", "every=1"]
    try:
        import lrkit.sinks  # noqa: F401

        variants.append("every=10 + CSV")
    except ImportError:
        pass
    times: dict[str, list[float]] = {v: [] for v in variants}
    ratios: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
            got = {v: run(v, args.steps, args.width, args.batch, Path(tmp)) for v in order}
            for v in variants:
                times[v].append(got[v])
                ratios[v].append(got[v] / got["bare"])
    params = sum(p.numel() for p in make(args.width)[0].parameters())
    print(
        f"MLP 64-{args.width}-{args.width}-10 ({params:,} parameters), batch {args.batch}, "
        f"AdamW, {args.steps} steps x {args.reps} reps, 1 thread, torch {torch.__version__}"
    )
    print(f"{'variant':<16} {'ms/step':>9} {'overhead':>9}")
    for v in variants:
        ms = statistics.median(times[v]) * 1e3
        over = (statistics.median(ratios[v]) - 1) * 100
        print(f"{v:<16} {ms:>9.3f} {over:>+8.1f}%")


if __name__ == "__main__":
    main()
