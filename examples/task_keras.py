"""A Keras 3 model as an lrkit task: the run's schedule through ``lrkit.keras.to_keras``.

A Keras task never calls ``trial.optimizer`` (that builds a torch optimizer):
it builds the Keras optimizer named by ``trial.optimizer_name`` itself, with
``learning_rate=to_keras(trial.schedule)``, so the update made at
``optimizer.iterations == t`` uses ``trial.schedule(t)``. A callback logs each
step's training loss to the trial (NaN/inf: the run is ``diverged``) and
reports the validation accuracy at the end of every "epoch" of
``EVAL_EVERY`` steps; the task returns the final validation accuracy.

Any Keras backend works; this file picks jax unless ``KERAS_BACKEND`` is set.
The data is scikit-learn's bundled 8x8 digits: nothing is downloaded.

Run a small grid:   ``python examples/task_keras.py``  (about 40 s on 2 cores)
or from the shell:
``lrkit compare --tasks examples/task_keras.py:digits_keras --optimizers sgd,adam``
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported; yours wins

import keras
import numpy as np
from sklearn.datasets import load_digits

import lrkit
from lrkit.bench.compare import CompareResults
from lrkit.keras import to_keras

BATCH = 64
EVAL_EVERY = 25  # steps per Keras "epoch": one validation pass each

#: lrkit's optimizer names -> the Keras optimizer with torch's defaults for them.
#: (Keras' momentum is applied to lr * gradient, torch's to the gradient: the
#: two agree at a constant lr and differ slightly while the lr changes.)
KERAS_OPTIMIZERS: dict[str, tuple[type, dict[str, Any]]] = {
    "sgd": (keras.optimizers.SGD, {}),
    "momentum": (keras.optimizers.SGD, {"momentum": 0.9}),
    "adam": (keras.optimizers.Adam, {"epsilon": 1e-8}),
    "adamw": (keras.optimizers.AdamW, {"weight_decay": 0.01, "epsilon": 1e-8}),
}


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits (1797 images of 8x8 pixels, 10 classes): a fixed 80/20 split, standardised."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))  # the same split for every run
    x, y = x[order].astype(np.float32), y[order].astype(np.int32)
    n_train = int(0.8 * len(x))
    x = (x - x[:n_train].mean(0)) / (x[:n_train].std(0) + 1e-6)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def batches(x: np.ndarray, y: np.ndarray, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Random minibatches, forever, in an order fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    while True:
        idx = rng.integers(0, len(x), BATCH)
        yield x[idx], y[idx]


def make_optimizer(trial: lrkit.Trial) -> keras.optimizers.Optimizer:
    """The Keras optimizer named by the grid, its lr driven by the run's lrkit schedule."""
    if trial.optimizer_name not in KERAS_OPTIMIZERS:
        raise ValueError(
            f"task_keras: optimizer {trial.optimizer_name!r} has no Keras counterpart here; "
            f"use one of {', '.join(KERAS_OPTIMIZERS)}"
        )
    cls, options = KERAS_OPTIMIZERS[trial.optimizer_name]
    return cls(learning_rate=to_keras(trial.schedule), **options)


class TrialLogger(keras.callbacks.Callback):
    """Logs each step's loss (and the lr the optimizer used) to the trial; reports per epoch."""

    def __init__(self, trial: lrkit.Trial) -> None:
        super().__init__()
        self.trial = trial
        self.step = 0  # updates done so far, across epochs
        self.lr = 0.0
        self.loss_sum = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.loss_sum = 0.0

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        # The lr this batch's update uses: the schedule at optimizer.iterations.
        self.lr = float(self.model.optimizer.learning_rate)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        # Keras 3 passes the mean loss since the epoch began; this batch's own loss:
        loss_sum = float(logs["loss"]) * (batch + 1)
        loss, self.loss_sum = loss_sum - self.loss_sum, loss_sum
        self.trial.log(self.step, loss=loss, lr_used=self.lr)  # raises lrkit.Diverged on NaN
        self.step += 1
        if self.step >= self.trial.steps:  # the budget may end inside an epoch
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        # After self.step updates; may raise lrkit.Pruned under `lrkit tune` (let it go).
        self.trial.report(self.step, float(logs["val_accuracy"]))


@lrkit.task(metric="val_acc", mode="max", steps=300, target=0.95)
def digits_keras(trial: lrkit.Trial) -> float:
    """sklearn's digits with a Keras MLP; the final validation accuracy."""
    keras.utils.set_random_seed(trial.seed)  # weights (Python, numpy and backend seeds)
    x_train, y_train, x_val, y_val = load_data()
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)]
    )
    model.compile(
        optimizer=make_optimizer(trial),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(
        batches(x_train, y_train, trial.seed),
        steps_per_epoch=EVAL_EVERY,
        shuffle=False,  # the generator shuffles, by the seed
        epochs=math.ceil(trial.steps / EVAL_EVERY),  # the callback stops at trial.steps
        validation_data=(x_val, y_val),
        validation_batch_size=len(x_val),
        callbacks=[TrialLogger(trial)],
        verbose=0,
    )
    scores = model.evaluate(x_val, y_val, batch_size=len(x_val), verbose=0, return_dict=True)
    return float(scores["accuracy"])


def main(out: str = "task-keras-report", workers: int = 2) -> CompareResults:
    """A small grid on the task: 2 optimizers x 2 lrs x cosine, one seed."""
    results = lrkit.compare(
        digits_keras,
        optimizers=["sgd", "adam"],
        schedules=["warmup(cosine(), steps=30)"],
        lrs=[0.01, 0.1],
        seeds=1,
        workers=workers,  # worker processes import this file again by its path
        out=out,
    )
    for run in results.runs:
        config = run.config
        final = "-" if run.final is None else f"{run.final:.3f}"
        print(f"{config['optimizer']:<5} lr={config['lr']:<5g} {run.status:<8} val_acc={final}")
    print(f"report: {out}/report.html")
    return results


if __name__ == "__main__":  # workers import this file too: only the main process runs the grid
    main()
