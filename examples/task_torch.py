"""Your own PyTorch training loop as an lrkit task: compared over optimizers x schedules x lrs.

The task is an ordinary training loop (an MLP on scikit-learn's bundled 8x8
digits: nothing is downloaded) with four lrkit calls in it:

- ``trial.optimizer(params)``: the grid's torch optimizer at the run's lr;
- ``trial.scheduler(opt, model=model)``: the lrkit driver that sets the lr of
  every update from the run's schedule (step it once after each
  ``opt.step()``; ``model`` is what a ``guard(...)`` schedule rolls back);
- ``trial.log(step, loss=...)``: the training loss (a NaN/inf loss ends the
  run as ``diverged``);
- ``trial.report(step, value)``: the validation metric every few steps (the
  learning curve in the report).

It returns the final validation accuracy: the number ``lrkit compare`` ranks.

Run the small grid below:   ``python examples/task_torch.py``  (about 20 s on 2 cores)
or any grid from the shell:
``lrkit compare --tasks examples/task_torch.py:digits_mlp --optimizers sgd,adam --lrs 0.01,0.1``
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

import lrkit
from lrkit.bench.compare import CompareResults

BATCH = 64
EVAL_EVERY = 25  # steps between two validation measurements


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits (1797 images of 8x8 pixels, 10 classes): a fixed 80/20 split, standardised."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))  # the same split for every run
    x, y = x[order].astype(np.float32), y[order]
    n_train = int(0.8 * len(x))
    mean, std = x[:n_train].mean(0), x[:n_train].std(0) + 1e-6
    x = (x - mean) / std
    as_x, as_y = torch.from_numpy, lambda a: torch.from_numpy(a).long()
    return as_x(x[:n_train]), as_y(y[:n_train]), as_x(x[n_train:]), as_y(y[n_train:])


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


# metric/mode: what the task returns and which way is better; steps: its budget
# (trial.steps is steps x --budget); target: the value a good setting reaches.
@lrkit.task(metric="val_acc", mode="max", steps=300, target=0.95)
def digits_mlp(trial: lrkit.Trial) -> float:
    """A 64-64-10 MLP on sklearn's digits; the final validation accuracy."""
    x_train, y_train, x_val, y_val = load_data()
    torch.manual_seed(trial.seed)  # the runner seeds torch too; saying it here costs nothing
    model = make_model()
    batches = torch.Generator().manual_seed(trial.seed)  # the batch order, per seed

    opt = trial.optimizer(model.parameters())  # e.g. torch.optim.Adam(..., lr=trial.lr)
    sched = trial.scheduler(opt, model=model)  # lr of update t: trial.schedule(t)
    # (model: what a guard(...) schedule rolls back on a loss spike; unused otherwise)

    for step in range(trial.steps):
        idx = torch.randint(len(x_train), (BATCH,), generator=batches)
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()  # after opt.step(), as with any torch scheduler
        trial.log(step, loss=loss.item())  # raises lrkit.Diverged on NaN/inf
        if (step + 1) % EVAL_EVERY == 0:
            trial.report(step + 1, accuracy(model, x_val, y_val))  # after step + 1 updates
    return accuracy(model, x_val, y_val)


def main(out: str = "task-torch-report", workers: int = 2) -> CompareResults:
    """A small grid on the task: 2 optimizers x 2 schedules x 2 lrs, one seed."""
    results = lrkit.compare(
        digits_mlp,
        optimizers=["sgd", "adam"],
        schedules=["cosine()", "warmup(cosine(), steps=30)"],
        lrs=[0.01, 0.1],
        seeds=1,
        workers=workers,  # worker processes import this file again by its path
        out=out,  # results.json, report.html and the run store (a rerun resumes)
    )
    for run in results.runs:
        config = run.config
        final = "-" if run.final is None else f"{run.final:.3f}"
        print(
            f"{config['optimizer']:<5} {config['schedule']:<28} lr={config['lr']:<5g} "
            f"{run.status:<8} val_acc={final}"
        )
    best = results.best
    if best is not None:
        print(f"best: {best.optimizer} {best.schedule} lr={best.lr:g} val_acc={best.mean:.3f}")
    print(f"report: {out}/report.html")
    return results


if __name__ == "__main__":  # workers import this file too: only the main process runs the grid
    main()
