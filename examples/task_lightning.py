"""A PyTorch Lightning model as an lrkit task: the grid's optimizer and schedule, every step.

A ``LightningModule`` needs two lrkit lines, both in ``configure_optimizers``:
the optimizer is ``trial.optimizer(self.parameters())`` (the grid's optimizer
at the run's lr) and the scheduler ``trial.scheduler(opt, model=self)`` with
``"interval": "step"``, so that Lightning steps it after every update and the
lr of update t is ``trial.schedule(t)``. ``training_step`` logs the loss to
the trial (NaN/inf: the run is ``diverged``), the validation loop reports the
accuracy every ``EVAL_EVERY`` steps, and the task returns the final accuracy.

The data is scikit-learn's bundled 8x8 digits: nothing is downloaded.

Run a small grid:   ``python examples/task_lightning.py``  (about 30 s on 2 cores)
or from the shell:
``lrkit compare --tasks examples/task_lightning.py:digits_lightning --optimizers sgd,adam``
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import lrkit
from lrkit.bench.compare import CompareResults

BATCH = 64
EVAL_EVERY = 25  # training steps between two validation loops

# Lightning's start-up banner ("GPU available: ...") and its advice to use
# DataLoader workers (a 1437-sample tensor dataset needs none) are noise here.
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
# Lightning 2.6 on torch 2.13 warns about its own use of torch's pytree API.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def load_data() -> tuple[TensorDataset, TensorDataset]:
    """Digits: a fixed 80/20 split, standardised, as (train, validation) datasets."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))  # the same split for every run
    x, y = x[order].astype(np.float32), y[order]
    n_train = int(0.8 * len(x))
    x = (x - x[:n_train].mean(0)) / (x[:n_train].std(0) + 1e-6)
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y).long()
    return TensorDataset(x_t[:n_train], y_t[:n_train]), TensorDataset(x_t[n_train:], y_t[n_train:])


class DigitsClassifier(L.LightningModule):
    """A 64-64-10 MLP whose optimizer and lr schedule come from an lrkit trial."""

    def __init__(self, trial: lrkit.Trial) -> None:
        super().__init__()
        self.trial = trial
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        # global_step counts the updates done before this one: the step of this loss.
        self.trial.log(self.global_step, loss=loss.item())  # raises lrkit.Diverged on NaN/inf
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean())

    def on_validation_epoch_end(self) -> None:
        # After global_step updates; may raise lrkit.Pruned under `lrkit tune` (let it go).
        self.trial.report(self.global_step, self.trainer.callback_metrics["val_acc"].item())

    def configure_optimizers(self) -> Any:
        opt = self.trial.optimizer(self.parameters())  # the grid's optimizer, lr = trial.lr
        # lrkit.torch.Scheduler on trial.schedule (model=self: what a guard(...) rolls back)
        sched = self.trial.scheduler(opt, model=self)
        # "interval": "step": Lightning calls sched.step() after every optimizer step.
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@lrkit.task(metric="val_acc", mode="max", steps=300, target=0.95)
def digits_lightning(trial: lrkit.Trial) -> float:
    """sklearn's digits with a Lightning MLP; the final validation accuracy."""
    torch.manual_seed(trial.seed)  # model initialisation
    train, val = load_data()
    model = DigitsClassifier(trial)
    shuffle = torch.Generator().manual_seed(trial.seed)  # the batch order, per seed
    trainer = L.Trainer(
        max_steps=trial.steps,  # the run's budget: steps x --budget
        val_check_interval=EVAL_EVERY,  # validate every EVAL_EVERY steps ...
        check_val_every_n_epoch=None,  # ... counted across epochs
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(
        model,
        train_dataloaders=DataLoader(train, batch_size=BATCH, shuffle=True, generator=shuffle),
        val_dataloaders=DataLoader(val, batch_size=len(val)),
    )
    x_val, y_val = val.tensors
    with torch.no_grad():
        return (model.net(x_val).argmax(1) == y_val).float().mean().item()


def main(out: str = "task-lightning-report", workers: int = 2) -> CompareResults:
    """A small grid on the task: 2 optimizers x 2 lrs x cosine, one seed."""
    results = lrkit.compare(
        digits_lightning,
        optimizers=["sgd", "adam"],
        schedules=["cosine()"],
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
