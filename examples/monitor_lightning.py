"""Watch a Lightning fit: ``lrkit.lightning.Monitor`` logging to CSV, TensorBoard, MLflow, W&B.

One callback in ``Trainer(callbacks=[...])`` is all it takes: the monitor
watches the trainer's optimizer and records, at every update, the lr and
momentum the update used, the loss ``training_step`` returned, the gradient
norm and the update-to-weight ratio. The model is an MLP on scikit-learn's
bundled 8x8 digits (nothing is downloaded).

It trains twice with SGD (momentum 0.9): at lr=0.05 (a good lr) and at
lr=5.0 (far too high: the loss goes to inf, then NaN). Each run logs to all
four sinks: a CSV file, a TensorBoard folder, an MLflow store (SQLite, no
server) and an offline W&B run (no account, no network). The monitor warns
as soon as a run goes bad; each run ends with a diagnosis: the verdict, the
numbers behind it and what to try.

Run it:   ``python examples/monitor_lightning.py``  (about 20 s on 2 cores,
most of it start-up: Lightning, MLflow's new database, W&B's service)
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

# W&B quiet: no banner, no scan of the installed packages (mode="offline" below: no account).
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB__SAVE_REQUIREMENTS", "false")

import lightning as L
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import lrkit.lightning
from lrkit.sinks import CSV, MLflow, TensorBoard, WandB

# Lightning's start-up banner and its advice to use DataLoader workers are noise here.
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")

STEPS = 300
RUNS = {"good": 0.05, "too_high": 5.0}  # run name -> SGD's lr


def all_sinks(out: Path, run: str) -> list:
    """The four sinks of one run, all under ``out``."""
    shutil.rmtree(out / "tb" / run, ignore_errors=True)  # a rerun's events replace the last's
    return [
        CSV(out / f"{run}.csv"),
        TensorBoard(out / "tb" / run),
        MLflow(tracking_uri=f"sqlite:///{out / 'mlflow.db'}", run_name=run),
        WandB(project="lrkit-examples", mode="offline", dir=out),
    ]


class Digits(L.LightningModule):
    """A 64-64-10 MLP trained with SGD at a constant lr."""

    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def train(lr: float, sinks: list) -> lrkit.lightning.Monitor:
    """A plain Lightning fit of 300 steps, with the monitor among its callbacks."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / (x.std(0) + 1e-6), dtype=torch.float32)
    data = TensorDataset(x, torch.tensor(y))
    torch.manual_seed(0)
    model = Digits(lr)
    monitor = lrkit.lightning.Monitor(sinks=sinks)  # <- lrkit
    trainer = L.Trainer(
        max_steps=STEPS,
        callbacks=[monitor],  # <- lrkit
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(model, DataLoader(data, batch_size=64, shuffle=True))
    return monitor  # closed at the end of the fit: its sinks too


def main(out: str = "monitor-out") -> dict:
    """Train both runs; print each diagnosis and where its logs are."""
    folder = Path(out)
    results = {}
    for run, lr in RUNS.items():
        sinks = all_sinks(folder, run)
        found = train(lr, sinks).diagnosis()  # <- lrkit: the final diagnosis
        print(f"\n{run} (SGD with momentum, lr={lr:g}): {found.verdict}")
        print(f"  evidence: {found.evidence}")
        if found.advice:
            print(f"  advice:   {found.advice}")
        print(f"  look:     lrkit diagnose {folder / run}.csv --out {folder / run}")
        results[run] = {
            "verdict": found.verdict,
            "evidence": found.evidence,
            "advice": found.advice,
            "mlflow_run_id": sinks[2].run_id,
            "wandb_file": sinks[3].run.settings.sync_file,
        }
    print(f"\nlogs in {folder}/: one CSV per run, and")
    print(f"  tensorboard --logdir {folder / 'tb'}")
    print(f"  mlflow ui --backend-store-uri sqlite:///{folder / 'mlflow.db'}")
    print(f"  wandb sync {folder / 'wandb'}/offline-run-*")
    return results


if __name__ == "__main__":
    main()
