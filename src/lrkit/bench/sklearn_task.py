"""The built-in task on a scikit-learn estimator: ``digits_sgd``.

sklearn's bundled 8x8 digits (the same data and train/validation split as the
torch task ``digits``) classified by a linear ``SGDClassifier`` (log loss, L2
``alpha=1e-4``), trained with ``partial_fit`` on minibatches: each step is
one ``partial_fit`` call on ``trial.batch_size`` (default 32) samples, the
estimator's lr (``eta0``, with ``learning_rate="constant"``) set to the
schedule's lr at that step first (:func:`lrkit.sklearn.set_lr`). Inside a
step sklearn updates once per sample, all at that lr; so sklearn's own rules
at this granularity are ``invscaling(eta0, power_t, batch_size=32)`` and
``optimal(alpha=1e-4, batch_size=32)`` (each step takes the lr sklearn gives
the first sample of its batch).

The estimator follows the schedule with its own SGD, so the task takes the
optimizer ``sgd`` only (:attr:`lrkit.Task.optimizers`): ``lrkit compare
--tasks digits_sgd --optimizers adam`` is an error, and without
``--optimizers`` it runs ``sgd``. The seed orders the batches (shuffled
epochs, without replacement; the weights start at zero).

Examples:
    >>> from lrkit.bench.tasks import get_task
    >>> task = get_task("digits_sgd")
    >>> task.metric, task.mode, task.optimizers, task.batch_size
    ('val_loss', 'min', ('sgd',), 32)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lrkit.bench.trial import Task, Trial

__all__ = ["ALPHA", "digits_sgd_task", "train_digits_sgd"]

#: The SGDClassifier's L2 strength (sklearn's default): ``optimal(alpha=ALPHA)`` is its rule.
ALPHA = 1e-4
_BATCH = 32
_CLASSES = 10


def _proba(estimator: Any, x: np.ndarray) -> np.ndarray:
    """Class probabilities; before the first step the weights are zero: uniform."""
    if not hasattr(estimator, "coef_"):
        return np.full((x.shape[0], _CLASSES), 1.0 / _CLASSES)
    return np.asarray(estimator.predict_proba(x))


def _log_loss(proba: np.ndarray, y: np.ndarray) -> float:
    """The mean negative log-likelihood of the labels (probabilities clipped as sklearn's)."""
    eps = np.finfo(np.float64).eps
    picked = np.clip(proba[np.arange(y.shape[0]), y], eps, 1.0)
    return float(-np.mean(np.log(picked)))


def train_digits_sgd(trial: Trial) -> float:
    """``digits_sgd``'s training: ``trial.steps`` ``partial_fit`` steps on the schedule.

    Logs each step's training loss (the log loss of the batch before its
    update), reports ``val_loss`` at :func:`lrkit.bench.run.eval_steps` and
    logs ``val_acc`` beside it. A ``plateau(...)`` or ``adaptive(...)``
    schedule observes the mean training loss of each block of
    :func:`~lrkit.bench.run.observe_every` steps, as on the torch tasks.

    Only a NaN/inf loss counts as a divergence: the model is linear, the loss
    convex with a gradient of at most 1, and the L2 shrinking bounds the
    weights, so no lr makes them overflow in a run; a too-high lr shows as a
    poor ``val_loss``. (The torch
    tasks' spike rule would call lr 1, the best here, diverged: per-sample
    steps on a batch make its minibatch loss jump by 4x while the model is
    fine.)
    """
    from sklearn.linear_model import SGDClassifier

    from lrkit.bench.run import eval_steps, observe_every
    from lrkit.bench.tasks import _DIGITS_VAL, _digits_arrays, _split
    from lrkit.controllers import Adaptive, Plateau
    from lrkit.sklearn import check_schedule, lr_at, set_lr

    task, steps, schedule = trial.task, trial.steps, trial.schedule
    check_schedule(schedule, f"task {task.name!r}")  # no guard(...), no swa(...)
    x, y = _digits_arrays()
    train, val = _split(len(y), _DIGITS_VAL, seed=0)
    x_train, y_train = x[train].astype(np.float64), y[train]
    x_val, y_val = x[val].astype(np.float64), y[val]
    n = y_train.shape[0]
    batch = trial.batch_size or task.batch_size or _BATCH
    if batch > n:
        raise ValueError(f"batch size {batch} is more than task {task.name!r}'s {n} samples")
    classes = np.arange(_CLASSES)
    estimator = SGDClassifier(
        loss="log_loss", alpha=ALPHA, learning_rate="constant", shuffle=False, random_state=0
    )
    rng = np.random.default_rng(trial.seed)
    per_epoch = n // batch  # full batches only: every step sees `batch` samples
    order = rng.permutation(n)
    block = observe_every(steps) if isinstance(schedule, Plateau | Adaptive) else 0
    block_losses: list[float] = []
    points = set(eval_steps(steps))

    def evaluate(step: int) -> float:
        proba = _proba(estimator, x_val)
        accuracy = float(np.mean(classes[np.argmax(proba, axis=1)] == y_val))
        trial.log(step, val_acc=accuracy)
        value = _log_loss(proba, y_val)
        trial.report(step, value)
        return value

    last = evaluate(0)
    for step in range(steps):
        k = step % per_epoch
        if k == 0 and step > 0:
            order = rng.permutation(n)
        index = order[k * batch : (k + 1) * batch]
        xb, yb = x_train[index], y_train[index]
        value = _log_loss(_proba(estimator, xb), yb)
        trial.log(step, loss=value)
        set_lr(estimator, lr_at(schedule, step), "sgd")
        estimator.partial_fit(xb, yb, classes=classes)
        if block:
            block_losses.append(value)
            if (step + 1) % block == 0:
                metric = sum(block_losses) / len(block_losses)
                block_losses.clear()
                schedule.observe(metric, step + 1)
        if step + 1 in points:
            last = evaluate(step + 1)
    return last


def digits_sgd_task() -> Task:
    """The ``digits_sgd`` :class:`~lrkit.bench.trial.Task` (registered in ``TASKS``)."""
    return Task(
        name="digits_sgd",
        fn=train_digits_sgd,
        metric="val_loss",
        mode="min",
        steps=300,
        ref="digits_sgd",
        target=0.15,
        description="sklearn's 8x8 digits, SGDClassifier by partial_fit (--optimizers sgd only)",
        version="1",
        batch_size=_BATCH,
        batched=True,
        builtin=True,
        divergence=None,  # NaN/inf only (see train_digits_sgd)
        report_feeds_schedule=False,
        optimizers=("sgd",),
    )
