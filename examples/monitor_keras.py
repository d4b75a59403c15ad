"""Watch a Keras fit: ``lrkit.keras.Monitor`` logging to CSV, TensorBoard, MLflow, W&B.

One callback in ``model.fit(callbacks=[...])`` is all it takes: the monitor
records, at every update, the lr and beta1 the optimizer used, the batch's
loss (not Keras' running mean), the gradient norm (jax and torch backends)
and the update-to-weight ratio. The model is an MLP on scikit-learn's
bundled 8x8 digits (nothing is downloaded).

It trains twice with Adam: at lr=0.003 (a good lr), and on a schedule that
jumps from 0.003 to 0.9 halfway through (as a restart with the wrong lr, or
a typo in a schedule, would): the loss blows up mid-run. Each run logs to
all four sinks: a CSV file, a TensorBoard folder, an MLflow store (SQLite,
no server) and an offline W&B run (no account, no network). The monitor
warns as soon as a run goes bad; each run ends with a diagnosis: the
verdict, the numbers behind it and what to try.

Any Keras backend works; this file picks jax unless ``KERAS_BACKEND`` is set.

Run it:   ``python examples/monitor_keras.py``  (about 25 s on 2 cores,
most of it start-up: Keras, MLflow's new database, W&B's service)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported; yours wins
# W&B quiet: no banner, no scan of the installed packages (mode="offline" below: no account).
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB__SAVE_REQUIREMENTS", "false")

import keras
import numpy as np
from sklearn.datasets import load_digits

import lrkit.keras
from lrkit.sinks import CSV, MLflow, TensorBoard, WandB

EPOCHS = 10  # of 29 batches: 290 updates
RUNS = {  # run name -> Adam's lr schedule: x300 at step 145 for the bad one
    "good": "constant(lr=0.003)",
    "too_high": "multistep(lr=0.003, milestones=[145], gamma=300)",
}


def all_sinks(out: Path, run: str) -> list:
    """The four sinks of one run, all under ``out``."""
    shutil.rmtree(out / "tb" / run, ignore_errors=True)  # a rerun's events replace the last's
    return [
        CSV(out / f"{run}.csv"),
        TensorBoard(out / "tb" / run),
        MLflow(tracking_uri=f"sqlite:///{out / 'mlflow.db'}", run_name=run),
        WandB(project="lrkit-examples", mode="offline", dir=out),
    ]


def train(schedule: str, sinks: list) -> lrkit.keras.Monitor:
    """A plain Keras fit of 290 steps, with the monitor among its callbacks."""
    x, y = load_digits(return_X_y=True)
    x = ((x - x.mean(0)) / (x.std(0) + 1e-6)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)]
    )
    model.compile(
        keras.optimizers.Adam(lrkit.keras.to_keras(schedule)),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    monitor = lrkit.keras.Monitor(sinks=sinks)  # <- lrkit
    model.fit(x, y, batch_size=64, epochs=EPOCHS, callbacks=[monitor], verbose=0)  # <- lrkit
    return monitor  # closed at the end of the fit: its sinks too


def main(out: str = "monitor-out") -> dict:
    """Train both runs; print each diagnosis and where its logs are."""
    folder = Path(out)
    results = {}
    for run, schedule in RUNS.items():
        sinks = all_sinks(folder, run)
        found = train(schedule, sinks).diagnosis()  # <- lrkit: the final diagnosis
        print(f"\n{run} (Adam, {schedule}, Keras on {keras.backend.backend()}): {found.verdict}")
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
