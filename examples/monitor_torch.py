"""Watch your own PyTorch loop: ``lrkit.torch.Monitor`` logging to CSV, TensorBoard, MLflow, W&B.

An ordinary training loop (an MLP on scikit-learn's bundled 8x8 digits:
nothing is downloaded) with three monitor lines in it: make the monitor on
the optimizer and the model, call ``monitor.step(loss)`` after each
``optimizer.step()``, and ``monitor.close()`` at the end for the verdict.

It trains twice: Adam at lr=0.003 (a good lr) and at lr=1.0 (far too high).
Each run logs the lr, momentum (Adam's beta1), loss, gradient norm and
update-to-weight ratio of every step to all four sinks: a CSV file, a
TensorBoard folder, an MLflow store (SQLite, no server) and an offline W&B
run (no account, no network). The monitor warns as soon as a run goes bad,
and each run ends with a diagnosis: the verdict, the numbers behind it and
what to try.

Run it:   ``python examples/monitor_torch.py``  (about 20 s on 2 cores,
most of it start-up: torch, MLflow's new database, W&B's service)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# W&B quiet: no banner, no scan of the installed packages (mode="offline" below: no account).
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB__SAVE_REQUIREMENTS", "false")

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

import lrkit.torch
from lrkit.sinks import CSV, MLflow, TensorBoard, WandB

STEPS = 300
BATCH = 64
RUNS = {"good": 0.003, "too_high": 1.0}  # run name -> Adam's lr


def all_sinks(out: Path, run: str) -> list:
    """The four sinks of one run, all under ``out``."""
    shutil.rmtree(out / "tb" / run, ignore_errors=True)  # a rerun's events replace the last's
    return [
        CSV(out / f"{run}.csv"),
        TensorBoard(out / "tb" / run),
        MLflow(tracking_uri=f"sqlite:///{out / 'mlflow.db'}", run_name=run),
        WandB(project="lrkit-examples", mode="offline", dir=out),
    ]


def train(lr: float, sinks: list) -> lrkit.torch.Monitor:
    """Your loop: 300 Adam steps on a cosine schedule, watched by the monitor."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / (x.std(0) + 1e-6), dtype=torch.float32)
    y = torch.tensor(y)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=STEPS)
    monitor = lrkit.torch.Monitor(optimizer, model, sinks=sinks)  # <- lrkit
    for _ in range(STEPS):
        idx = torch.randint(len(x), (BATCH,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        monitor.step(loss)  # <- lrkit: after the optimizer's step
    return monitor


def main(out: str = "monitor-out") -> dict:
    """Train both runs; print each diagnosis and where its logs are."""
    folder = Path(out)
    results = {}
    for run, lr in RUNS.items():
        sinks = all_sinks(folder, run)
        monitor = train(lr, sinks)
        found = monitor.close()  # <- lrkit: closes the sinks, returns the final diagnosis
        print(f"\n{run} (Adam, lr={lr:g}, cosine decay): {found.verdict}")
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
