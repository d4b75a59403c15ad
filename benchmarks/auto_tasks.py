"""Held-out user tasks for ``benchmarks/auto.py``, next to those of ``diagnosis_tasks.py``.

``lrkit auto``'s rules were never tuned on these. Each is an ordinary
``@lrkit.task`` (SPEC §7) on data generated here from a fixed seed (nothing
is downloaded); a run takes one to two seconds on one CPU core.

===============  ===============================================  ========  =====
task             what                                             metric    steps
===============  ===============================================  ========  =====
spiral_mlp       3-class 2-D spirals, a 2-64-64-3 tanh MLP        val_acc   300
                 (classification; the error rate is compared)
===============  ===============================================  ========  =====

It logs the training loss at every step, reports the validation accuracy
every ``trial.steps // 20`` steps and returns the final one.

Run it once with a chosen lr::

    lrkit compare --tasks benchmarks/auto_tasks.py:spiral_mlp \\
        --optimizers adamw --lrs 0.01 --seeds 1 --out /tmp/spiral
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import lrkit

DATA_SEED = 20261207  # the data are the same for every run; the trial's seed sets the model
BATCH = 64


@functools.cache
def spiral_data() -> tuple[torch.Tensor, ...]:
    """``x_train, y_train, x_val, y_val``: 1500 / 600 points on three noisy spiral arms."""
    rng = np.random.default_rng(DATA_SEED)
    n = 700
    xs, ys = [], []
    for arm in range(3):
        r = rng.uniform(0.05, 1.0, n)
        theta = 5.0 * r + arm * 2 * np.pi / 3 + rng.normal(0, 0.5, n)
        xs.append(np.stack([r * np.cos(theta), r * np.sin(theta)], 1))
        ys.append(np.full(n, arm))
    x, y = np.concatenate(xs), np.concatenate(ys)
    order = rng.permutation(len(x))
    x_t = torch.tensor(x[order], dtype=torch.float32)
    y_t = torch.tensor(y[order], dtype=torch.long)
    return x_t[:1500], y_t[:1500], x_t[1500:], y_t[1500:]


@lrkit.task(metric="val_acc", mode="max", steps=300)
def spiral_mlp(trial: lrkit.Trial) -> float:
    """A tanh MLP separates three spiral arms; the validation accuracy."""
    x_train, y_train, x_val, y_val = spiral_data()
    model = nn.Sequential(
        nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 3)
    )
    opt = trial.optimizer(model.parameters())
    sched = trial.scheduler(opt)
    batches = torch.Generator().manual_seed(trial.seed)
    every = max(1, trial.steps // 20)

    def accuracy() -> float:
        with torch.no_grad():
            return (model(x_val).argmax(1) == y_val).float().mean().item()

    for step in range(trial.steps):
        index = torch.randint(len(x_train), (BATCH,), generator=batches)
        loss = F.cross_entropy(model(x_train[index]), y_train[index])
        trial.log(step, loss=loss.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % every == 0 and step + 1 < trial.steps:
            trial.report(step + 1, accuracy())
    return accuracy()
