"""Held-out user tasks for ``benchmarks/diagnosis_labelled.py``: small trainings on generated data.

The diagnosis rules (:mod:`lrkit.diagnosis`) are not tuned on these: they
judge how the rules do on trainings their author never looked at. Each is an
ordinary ``@lrkit.task`` (SPEC §7) written as a user would write it, on data
generated here from a fixed seed (nothing is downloaded); a run takes
one to three seconds on one CPU core.

==================  ==============================================  ========  =====
task                what                                            metric    steps
==================  ==============================================  ========  =====
teacher_mlp         regression: a 16-64-64-1 ReLU MLP learns a      val_loss  300
                    random tanh teacher network (+ noise)
logistic_unscaled   binary logistic regression on 20 features with  val_loss  300
                    scales 0.1..10, left unscaled
gru_sequence        a GRU (hidden 24) predicts the next value of    val_loss  200
                    noisy sums of sines, 32 steps long
==================  ==============================================  ========  =====

Each logs the training loss at every step, reports its validation metric
every ``trial.steps // 20`` steps (so half of the run and 0.8 of it are
report points) and returns the final validation metric.

Run a small grid on one of them::

    lrkit compare --tasks benchmarks/diagnosis_tasks.py:teacher_mlp \\
        --optimizers adam --lrs 0.001,0.01 --seeds 1 --out /tmp/teacher
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import lrkit

DATA_SEED = 20240515  # the data are the same for every run; the trial's seed sets the model
BATCH = 64


def _report_every(steps: int) -> int:
    return max(1, steps // 20)


def _train(
    trial: lrkit.Trial,
    model: nn.Module,
    train: tuple[torch.Tensor, ...],
    loss_fn: Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor],
    evaluate: Callable[[nn.Module], float],
) -> float:
    """The loop the three tasks share: minibatches of ``train``, log, report every 1/20."""
    batches = torch.Generator().manual_seed(trial.seed)
    opt = trial.optimizer(model.parameters())
    sched = trial.scheduler(opt)
    every = _report_every(trial.steps)
    n = train[0].shape[0]

    def measure() -> float:
        model.eval()
        with torch.no_grad():
            value = evaluate(model)
        model.train()
        return value

    trial.report(0, measure())
    for step in range(trial.steps):
        index = torch.randint(n, (BATCH,), generator=batches)
        loss = loss_fn(model, tuple(t[index] for t in train))
        trial.log(step, loss=loss.item())  # NaN/inf: the run ends as diverged
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % every == 0 and step + 1 < trial.steps:
            trial.report(step + 1, measure())
    return measure()


# -- teacher_mlp: regression on a random teacher network ----------------------------


@functools.cache
def teacher_data() -> tuple[torch.Tensor, ...]:
    """``x_train, y_train, x_val, y_val``: 2000 / 500 samples of 16 features."""
    rng = np.random.default_rng(DATA_SEED)
    w1 = rng.normal(0, 1 / 4, (16, 32))
    w2 = rng.normal(0, 1, (32, 1))
    x = rng.normal(0, 1, (2500, 16))
    y = np.tanh(x @ w1) @ w2 + 0.1 * rng.normal(0, 1, (2500, 1))
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    return x[:2000], y[:2000], x[2000:], y[2000:]


@lrkit.task(metric="val_loss", mode="min", steps=300)
def teacher_mlp(trial: lrkit.Trial) -> float:
    """Regression MLP (16-64-64-1, ReLU) on a random tanh teacher; the validation MSE."""
    x_train, y_train, x_val, y_val = teacher_data()
    model = nn.Sequential(
        nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)
    )

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return F.mse_loss(m(batch[0]), batch[1])

    return _train(
        trial, model, (x_train, y_train), loss_fn, lambda m: F.mse_loss(m(x_val), y_val).item()
    )


# -- logistic_unscaled: logistic regression, features left unscaled -----------------


@functools.cache
def logistic_data() -> tuple[torch.Tensor, ...]:
    """``x_train, y_train, x_val, y_val``: 3000 / 1000 samples, 20 features of scales 0.1..10.

    The labels follow a linear rule on the standardised features (every
    feature matters equally), with 5 % of them flipped.
    """
    rng = np.random.default_rng(DATA_SEED + 1)
    z = rng.normal(0, 1, (4000, 20))
    w = rng.normal(0, 1, 20)
    y = (z @ w > 0).astype(np.float32)
    flip = rng.random(4000) < 0.05
    y[flip] = 1 - y[flip]
    scales = 10.0 ** rng.uniform(-1, 1, 20)
    x = torch.tensor(z * scales, dtype=torch.float32)
    y_t = torch.tensor(y)
    return x[:3000], y_t[:3000], x[3000:], y_t[3000:]


@lrkit.task(metric="val_loss", mode="min", steps=300)
def logistic_unscaled(trial: lrkit.Trial) -> float:
    """Logistic regression on unscaled features (scales 0.1..10); the validation log loss.

    (Not the accuracy: a linear classifier's accuracy ignores the scale of
    its weights, so with momentum it hardly suffers from any lr above the
    best, up to 100; the log loss does.)
    """
    x_train, y_train, x_val, y_val = logistic_data()
    model = nn.Linear(20, 1)

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(m(batch[0]).squeeze(1), batch[1])

    return _train(
        trial, model, (x_train, y_train), loss_fn, lambda m: loss_fn(m, (x_val, y_val)).item()
    )


# -- gru_sequence: next-value prediction with a small GRU ---------------------------

SEQ = 32


@functools.cache
def sequence_data() -> tuple[torch.Tensor, ...]:
    """``train, val``: 1500 / 300 sequences of SEQ + 1 values (sums of two noisy sines)."""
    rng = np.random.default_rng(DATA_SEED + 2)
    n = 1800
    t = np.arange(SEQ + 1)
    freq = rng.uniform(0.1, 0.6, (n, 2, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 2, 1))
    amp = rng.uniform(0.5, 1.5, (n, 2, 1))
    x = (amp * np.sin(freq * t + phase)).sum(1) + 0.05 * rng.normal(0, 1, (n, SEQ + 1))
    data = torch.tensor(x, dtype=torch.float32).unsqueeze(-1)
    return data[:1500], data[1500:]


class NextValue(nn.Module):
    """GRU(1 -> 24) and a linear head: the next value at every position."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(1, 24, batch_first=True)
        self.head = nn.Linear(24, 1)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(seq)
        return self.head(out)


@lrkit.task(metric="val_loss", mode="min", steps=200)
def gru_sequence(trial: lrkit.Trial) -> float:
    """A GRU predicts the next value of noisy sums of sines; the validation MSE."""
    train, val = sequence_data()
    model = NextValue()

    def mse(m: nn.Module, seq: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(m(seq[:, :-1]), seq[:, 1:])

    return _train(
        trial, model, (train,), lambda m, batch: mse(m, batch[0]), lambda m: mse(m, val).item()
    )
