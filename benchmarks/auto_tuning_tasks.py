"""Tuning tasks for ``lrkit auto``: what its rules were set on, beside digits, scales, quadratic.

``benchmarks/auto.py`` keeps these apart from the held-out tasks
(``diagnosis_tasks.py``, ``auto_tasks.py``, signals, rosenbrock, charlm). Each is
an ordinary ``@lrkit.task`` on data generated here from a fixed seed; a run
takes under two seconds on one CPU core.

===============  ====================================================  ========  =====
task             what                                                  metric    steps
===============  ====================================================  ========  =====
moons_mlp        two interleaved half-moons, noisy, a 2-32-32-2 ReLU    val_acc   300
                 MLP
deep_tanh        a 6-layer tanh MLP fits a smooth 4-D function          val_loss  300
bag_of_words     an EmbeddingBag classifier on generated documents      val_loss  300
                 (4 topics, 500-word vocabulary)
===============  ====================================================  ========  =====

Each logs the training loss at every step, reports its validation metric
every ``trial.steps // 20`` steps and returns the final one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import lrkit

DATA_SEED = 7070  # the data are the same for every run; the trial's seed sets the model
BATCH = 64


def _loop(
    trial: lrkit.Trial,
    model: nn.Module,
    n_train: int,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    evaluate: Callable[[], float],
) -> float:
    """Minibatches of indices into the training set; log every step, report every 1/20."""
    opt = trial.optimizer(model.parameters())
    sched = trial.scheduler(opt)
    batches = torch.Generator().manual_seed(trial.seed)
    every = max(1, trial.steps // 20)

    def measure() -> float:
        model.eval()
        with torch.no_grad():
            value = evaluate()
        model.train()
        return value

    for step in range(trial.steps):
        loss = batch_loss(torch.randint(n_train, (BATCH,), generator=batches))
        trial.log(step, loss=loss.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % every == 0 and step + 1 < trial.steps:
            trial.report(step + 1, measure())
    return measure()


@functools.cache
def moons_data() -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(DATA_SEED)
    n = 1200
    t = rng.uniform(0, np.pi, n)
    label = rng.integers(0, 2, n)
    x = np.where(
        label[:, None] == 0,
        np.stack([np.cos(t), np.sin(t)], 1),
        np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1),
    )
    x = x + rng.normal(0, 0.25, x.shape)
    xs, ys = torch.tensor(x, dtype=torch.float32), torch.tensor(label)
    return xs[:900], ys[:900], xs[900:], ys[900:]


@lrkit.task(metric="val_acc", mode="max", steps=300)
def moons_mlp(trial: lrkit.Trial) -> float:
    """Two noisy half-moons; the validation accuracy."""
    x, y, xv, yv = moons_data()
    torch.manual_seed(trial.seed)
    model = nn.Sequential(
        nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2)
    )
    return _loop(
        trial,
        model,
        len(x),
        lambda i: F.cross_entropy(model(x[i]), y[i]),
        lambda: (model(xv).argmax(1) == yv).float().mean().item(),
    )


@functools.cache
def deep_data() -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(DATA_SEED + 2)
    x = rng.uniform(-1, 1, (2500, 4))
    y = np.sin(2 * x[:, 0]) * np.cos(x[:, 1]) + x[:, 2] * x[:, 3] + 0.05 * rng.normal(0, 1, 2500)
    xs, ys = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    return xs[:2000], ys[:2000], xs[2000:], ys[2000:]


@lrkit.task(metric="val_loss", mode="min", steps=300)
def deep_tanh(trial: lrkit.Trial) -> float:
    """A deep narrow tanh MLP on a smooth function; the validation MSE."""
    x, y, xv, yv = deep_data()
    torch.manual_seed(trial.seed)
    layers: list[nn.Module] = [nn.Linear(4, 24), nn.Tanh()]
    for _ in range(4):
        layers += [nn.Linear(24, 24), nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(24, 1))
    return _loop(
        trial,
        model,
        len(x),
        lambda i: F.mse_loss(model(x[i]).squeeze(1), y[i]),
        lambda: F.mse_loss(model(xv).squeeze(1), yv).item(),
    )


@functools.cache
def bag_data() -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(DATA_SEED + 3)
    vocab, topics, length, n = 500, 4, 20, 3000
    weights = rng.dirichlet(np.full(vocab, 0.1), topics)
    label = rng.integers(0, topics, n)
    mixed = 0.6 * weights[label] + 0.4 * weights.mean(0)
    docs = np.stack([rng.choice(vocab, length, p=p) for p in mixed])
    xs, ys = torch.tensor(docs), torch.tensor(label)
    return xs[:2400], ys[:2400], xs[2400:], ys[2400:]


@lrkit.task(metric="val_loss", mode="min", steps=300)
def bag_of_words(trial: lrkit.Trial) -> float:
    """Topic classification with a bag of embeddings; the validation cross-entropy."""
    x, y, xv, yv = bag_data()
    torch.manual_seed(trial.seed)

    class Bag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.EmbeddingBag(500, 16, mode="mean")
            self.head = nn.Linear(16, 4)

        def forward(self, docs: torch.Tensor) -> torch.Tensor:
            return self.head(self.embed(docs))

    model = Bag()
    return _loop(
        trial,
        model,
        len(x),
        lambda i: F.cross_entropy(model(x[i]), y[i]),
        lambda: F.cross_entropy(model(xv), yv).item(),
    )
