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

One repetition builds every variant and steps them in turn, one update
each, in a rotating order, for ``--steps`` updates, timing each update
alone (and the monitor's ``close()``): a drift in machine load hits every
variant alike. A figure is the median over ``--reps`` repetitions of the
seconds per update, and the overhead is against ``bare`` of the same
repetition. Threads are pinned to 1.

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


class Loop:
    """One variant's model, optimizer, scheduler, data and monitor, stepped one update at a time."""

    def __init__(self, variant: str, width: int, batch: int, folder: Path) -> None:
        self.model, self.opt, self.sched = make(width)
        gen = torch.Generator().manual_seed(1)
        self.x = torch.randn(32, batch, 64, generator=gen)
        self.y = torch.randint(0, 10, (32, batch), generator=gen)
        self.loss_fn = nn.CrossEntropyLoss()
        self.monitor = None
        self.step = 0
        self.seconds = 0.0
        if variant != "bare":
            every = 10 if variant.startswith("every=10") else 1
            sinks = []
            if variant.endswith("CSV"):
                from lrkit.sinks import CSV

                sinks.append(CSV(folder / f"{variant}.csv"))
            self.monitor = L.Monitor(self.opt, self.model, every=every, sinks=sinks)

    def update(self) -> None:
        start = time.perf_counter()
        i = self.step % 32
        loss = self.loss_fn(self.model(self.x[i]), self.y[i])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        value = loss.item()
        if self.monitor is not None:
            self.monitor.step(value)
        self.step += 1
        self.seconds += time.perf_counter() - start

    def close(self) -> None:
        if self.monitor is not None:
            start = time.perf_counter()
            self.monitor.close()
            self.seconds += time.perf_counter() - start


def run(variants: list[str], steps: int, width: int, batch: int, folder: Path) -> dict[str, float]:
    """Seconds per step of each variant, their updates interleaved (the same load hits all)."""
    loops = {v: Loop(v, width, batch, folder) for v in variants}
    for step in range(steps):
        order = variants[step % len(variants) :] + variants[: step % len(variants)]
        for v in order:
            loops[v].update()
    for loop in loops.values():
        loop.close()
    return {v: loop.seconds / steps for v, loop in loops.items()}


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
        for _ in range(args.reps):
            got = run(variants, args.steps, args.width, args.batch, Path(tmp))
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
