"""lrkit.lightning.Monitor and lrkit.keras.Monitor against what really happened.

Every recorded number is checked against a value measured independently in
the same run: the lr the scheduler set (the pure schedule's value), the loss
``training_step`` returned or the loss of the batch recomputed from the
weights, the gradient norm Lightning's ``on_before_optimizer_step`` sees or
the analytic gradient of a linear regression, and the update ratio from the
weights before and after each update.

Keras fixes its backend when first imported, so the Keras checks run as a
job per backend, as in ``test_keras_callbacks.py``: here for this process's
backend, in a fresh process (this file run as a script) for the other.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lrkit
import lrkit.keras  # before keras: picks a backend if unset

import keras  # isort: skip

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*LeafSpec",
    "ignore:.*resuming from a checkpoint that ended before the epoch ended",
    "ignore:.*__array__ implementation.*:DeprecationWarning",
)

BACKENDS = ("jax", "torch")


class ListSink:
    """A sink keeping what it is given."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []
        self.summary: dict[str, Any] | None = None
        self.closed = 0

    def write(self, step: int, scalars: Any) -> None:
        self.rows.append((step, dict(scalars)))

    def close(self, summary: Any = None) -> None:
        self.closed += 1
        self.summary = dict(summary or {})


# =====================================================================================
# Keras: the jobs (run on each backend)
# =====================================================================================

K_BATCH = 8
K_BATCHES = 6  # per epoch
K_SCHEDULE = "warmup(cosine(lr=0.05, steps=24, min_lr=0.005), steps=3)"


def k_data() -> tuple[np.ndarray, np.ndarray]:
    """A linear regression whose batches have very different losses (targets x0.1 .. x30)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(K_BATCH * K_BATCHES, 4)).astype("float32")
    scale = np.repeat([1.0, 30.0, 0.1, 10.0, 3.0, 0.3], K_BATCH)[:, None]
    y = (x @ rng.normal(size=(4, 1)) * scale).astype("float32")
    return x, y


def k_model(optimizer: Any) -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer, "mse")
    return model


class Truth(keras.callbacks.Callback):
    """Per execution: the iteration, the lr, the weights before and after, the running loss,
    and from the weights before, the batch's mse loss and its gradient's norm (analytic)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__()
        self.x, self.y = x, y
        self.rows: list[dict[str, Any]] = []
        self._before: list[np.ndarray] = []

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        model = self.model
        optimizer = model.optimizer
        self._before = [np.array(w, np.float64) for w in model.get_weights()]
        kernel, bias = self._before
        xb = self.x[batch * K_BATCH : (batch + 1) * K_BATCH].astype(np.float64)
        yb = self.y[batch * K_BATCH : (batch + 1) * K_BATCH].astype(np.float64)
        r = xb @ kernel + bias - yb
        grads = [2 / len(r) * xb.T @ r, 2 / len(r) * r.sum(0)]
        lr = optimizer.learning_rate  # a Variable for a float lr, else the schedule's value
        self.rows.append(
            {
                "iteration": int(optimizer.iterations.value),
                "lr": float(lr.value if isinstance(lr, keras.Variable) else lr),
                "loss": float(np.mean(r**2)),
                "grad_norm": float(np.sqrt(sum(np.sum(g**2) for g in grads))),
            }
        )

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        after = [np.array(w, np.float64) for w in self.model.get_weights()]
        change = np.sqrt(
            sum(np.sum((a - b) ** 2) for a, b in zip(after, self._before, strict=True))
        )
        norm = np.sqrt(sum(np.sum(b**2) for b in self._before))
        self.rows[-1]["update_ratio"] = float(change / norm)
        self.rows[-1]["running_loss"] = float(logs["loss"])

    def report(self) -> dict[str, list]:
        return {key: [row[key] for row in self.rows] for key in self.rows[0]}


def series(monitor: Any) -> dict[str, Any]:
    record = monitor.record
    out: dict[str, Any] = {"tags": record.tags}
    for tag in record.tags:
        steps, values = record.series(tag)
        out[tag] = {"steps": steps.tolist(), "values": values.tolist()}
    return out


def job_sgd_schedule(tmp: str) -> dict:
    """SGD with momentum on a warmup-cosine schedule, two epochs, monitors every=1 and 3;
    then save, load, and one more epoch with a new monitor."""
    x, y = k_data()
    optimizer = keras.optimizers.SGD(lrkit.keras.to_keras(K_SCHEDULE), momentum=0.9)
    model = k_model(optimizer)
    every1, sink = lrkit.keras.Monitor(), ListSink()
    every3 = lrkit.keras.Monitor(every=3, sinks=[sink])
    truth = Truth(x, y)
    fit = {"batch_size": K_BATCH, "shuffle": False, "verbose": 0}
    model.fit(x, y, epochs=2, callbacks=[every1, every3, truth], **fit)
    out: dict[str, Any] = {
        "every1": series(every1),
        "every3": series(every3),
        "truth": truth.report(),
        "sink_steps": [step for step, _ in sink.rows],
        "sink_closed": sink.closed,
        "sink_verdict": (sink.summary or {}).get("verdict"),
        "final_verdict": every3.diagnosis().verdict,
        "wrapper_left": "apply" in model.optimizer.__dict__,
    }
    try:
        model.fit(x, y, epochs=1, callbacks=[every1], **fit)
        out["reused"] = None
    except RuntimeError as exc:
        out["reused"] = str(exc)
    model.save(f"{tmp}/model.keras")
    loaded = keras.saving.load_model(f"{tmp}/model.keras")
    after_load, truth = lrkit.keras.Monitor(), Truth(x, y)
    loaded.fit(x, y, epochs=1, callbacks=[after_load, truth], **fit)
    out["loaded"] = {"monitor": series(after_load), "truth": truth.report()}
    return out


def job_adam_and_executions(tmp: str) -> dict:
    """Adam(beta_1=0.8) on a float lr; and SGD with steps_per_execution=2."""
    x, y = k_data()
    fit = {"batch_size": K_BATCH, "shuffle": False, "verbose": 0, "epochs": 1}
    model = k_model(keras.optimizers.Adam(0.01, beta_1=0.8))
    monitor, truth = lrkit.keras.Monitor(), Truth(x, y)
    model.fit(x, y, callbacks=[monitor, truth], **fit)
    out: dict[str, Any] = {"adam": {"monitor": series(monitor), "truth": truth.report()}}
    if keras.backend.backend() == "torch":  # Keras' torch backend needs steps_per_execution=1
        return out
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse", steps_per_execution=2)
    monitor, truth = lrkit.keras.Monitor(), Truth(x, y)
    model.fit(x, y, callbacks=[monitor, truth], **fit)
    out["executions"] = {"monitor": series(monitor), "truth": truth.report()}
    return out


K_JOBS = {"sgd_schedule": job_sgd_schedule, "adam_and_executions": job_adam_and_executions}


def run_jobs(tmp: str) -> dict:
    report: dict[str, Any] = {"backend": keras.backend.backend()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, job in K_JOBS.items():
            folder = Path(tmp) / name
            folder.mkdir(parents=True, exist_ok=True)
            report[name] = job(str(folder))
    return report


_REPORTS: dict[str, dict] = {}


def keras_report(backend: str, tmp_path_factory: Any) -> dict:
    """The jobs' report on ``backend``, computed once per test session."""
    if backend not in _REPORTS:
        tmp = tmp_path_factory.mktemp(f"keras_monitor_{backend}")
        if backend == keras.backend.backend():
            _REPORTS[backend] = run_jobs(str(tmp))
        else:
            env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
            run = subprocess.run(
                [sys.executable, __file__, str(tmp)],
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
            )
            assert run.returncode == 0, run.stderr[-4000:]
            line = next(x for x in run.stdout.splitlines() if x.startswith("REPORT"))
            _REPORTS[backend] = json.loads(line[len("REPORT") :])
    assert _REPORTS[backend]["backend"] == backend
    return _REPORTS[backend]


@pytest.fixture(params=BACKENDS)
def report(request: Any, tmp_path_factory: Any) -> dict:
    return keras_report(request.param, tmp_path_factory)


# =====================================================================================
# Keras: the tests
# =====================================================================================


def test_keras_lr_is_the_schedule_at_the_iteration_each_update_used(report: dict):
    job = report["sgd_schedule"]
    got, truth = job["every1"], job["truth"]
    n = 2 * K_BATCHES
    assert truth["iteration"] == list(range(n))
    assert got["lr/group0"]["steps"] == list(range(n))
    want = lrkit.parse(K_SCHEDULE).values(np.arange(n))
    assert want[0] == 0.0 and want[3] == pytest.approx(0.05)  # warmup from 0, peak at 3
    np.testing.assert_allclose(got["lr/group0"]["values"], want, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got["lr/group0"]["values"], truth["lr"], rtol=1e-6)
    np.testing.assert_allclose(got["momentum/group0"]["values"], [0.9] * n, rtol=1e-6)


def test_keras_loss_is_the_batch_loss_not_the_running_mean(report: dict):
    job = report["sgd_schedule"]
    got, truth = job["every1"]["loss"]["values"], job["truth"]
    np.testing.assert_allclose(got, truth["loss"], rtol=1e-4)
    # logs["loss"] is the epoch's running mean: far from the batch losses here
    assert np.max(np.abs(np.array(truth["running_loss"]) / truth["loss"] - 1)) > 1
    every3 = job["every3"]["loss"]
    assert every3["steps"] == [0, 3, 6, 9]
    np.testing.assert_allclose(every3["values"], np.array(truth["loss"])[[0, 3, 6, 9]], rtol=1e-4)


def test_keras_grad_norm_and_update_ratio_match_the_weights(report: dict):
    job = report["sgd_schedule"]
    got, truth = job["every1"], job["truth"]
    assert got["tags"] == [
        "grad_norm",
        "loss",
        "lr/group0",
        "momentum/group0",
        "update_ratio/group0",
    ]
    np.testing.assert_allclose(got["grad_norm"]["values"], truth["grad_norm"], rtol=1e-4)
    ratio = got["update_ratio/group0"]["values"]
    assert ratio[0] == 0.0  # lr 0 at step 0: no move
    np.testing.assert_allclose(ratio, truth["update_ratio"], rtol=1e-3, atol=1e-9)
    every3 = job["every3"]
    for tag in ("grad_norm", "update_ratio/group0", "lr/group0"):
        assert every3[tag]["steps"] == [0, 3, 6, 9]
    np.testing.assert_allclose(
        every3["grad_norm"]["values"], np.array(truth["grad_norm"])[[0, 3, 6, 9]], rtol=1e-4
    )


def test_keras_adam_beta1_and_a_float_lr(report: dict):
    adam = report["adam_and_executions"]["adam"]
    got, truth = adam["monitor"], adam["truth"]
    np.testing.assert_allclose(got["momentum/group0"]["values"], [0.8] * K_BATCHES, rtol=1e-6)
    np.testing.assert_allclose(got["lr/group0"]["values"], [0.01] * K_BATCHES, rtol=1e-6)
    np.testing.assert_allclose(got["loss"]["values"], truth["loss"], rtol=1e-4)
    np.testing.assert_allclose(got["grad_norm"]["values"], truth["grad_norm"], rtol=1e-4)
    np.testing.assert_allclose(
        got["update_ratio/group0"]["values"], truth["update_ratio"], rtol=1e-3
    )


def test_keras_steps_per_execution_records_each_execution(tmp_path_factory: Any):
    run = keras_report("jax", tmp_path_factory)["adam_and_executions"]["executions"]
    got, truth = run["monitor"], run["truth"]
    assert truth["iteration"] == [0, 2, 4]
    assert got["lr/group0"]["steps"] == got["loss"]["steps"] == [0, 2, 4]
    assert "update_ratio/group0" not in got["tags"]  # one record spans two updates
    # the gradient of the execution's first update
    np.testing.assert_allclose(got["grad_norm"]["values"], truth["grad_norm"], rtol=1e-4)
    assert all(np.isfinite(got["loss"]["values"]))


def test_keras_monitor_closes_at_the_end_of_fit_and_leaves_the_model_alone(report: dict):
    job = report["sgd_schedule"]
    assert job["sink_steps"] == [0, 3, 6, 9] and job["sink_closed"] == 1
    assert job["sink_verdict"] == job["final_verdict"] in lrkit.diagnosis.VERDICTS
    assert job["wrapper_left"] is False
    assert job["reused"] is not None and "give each fit a new Monitor" in job["reused"]
    # A saved and loaded model goes on at its iteration, with its schedule.
    loaded = job["loaded"]
    steps = list(range(2 * K_BATCHES, 3 * K_BATCHES))
    assert loaded["truth"]["iteration"] == loaded["monitor"]["lr/group0"]["steps"] == steps
    want = lrkit.parse(K_SCHEDULE).values(np.array(steps))
    np.testing.assert_allclose(loaded["monitor"]["lr/group0"]["values"], want, rtol=1e-6)
    np.testing.assert_allclose(
        loaded["monitor"]["loss"]["values"], loaded["truth"]["loss"], rtol=1e-4
    )
    np.testing.assert_allclose(
        loaded["monitor"]["grad_norm"]["values"], loaded["truth"]["grad_norm"], rtol=1e-4
    )


def test_keras_monitor_checks_its_arguments():
    with pytest.raises(ValueError, match="every must be an integer >= 1, got 0"):
        lrkit.keras.Monitor(every=0)
    with pytest.raises(TypeError, match="is not a sink"):
        lrkit.keras.Monitor(sinks=[object()])


# =====================================================================================
# Lightning
# =====================================================================================

PL_SCHEDULES = (
    "warmup(cosine(lr=0.1, steps=40), steps=5)",
    "cosine(lr=0.05, steps=40, min_lr=0.005)",
)


@pytest.fixture(scope="module")
def digits() -> Any:
    import torch
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.utils.data.TensorDataset(
        torch.tensor(x / 16, dtype=torch.float32), torch.tensor(y)
    )


def lightning_module() -> Any:
    """A two-layer net on digits, SGD with two param groups (momentum 0.9 and 0.5), an
    lrkit.torch.Scheduler at interval "step"; it records what each update really used."""
    import lightning.pytorch as pl
    import torch

    import lrkit.torch

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.first = torch.nn.Linear(64, 32)
            self.second = torch.nn.Linear(32, 10)
            self.losses: list[float] = []
            self.updates: list[dict[str, Any]] = []
            self._before: list[list[torch.Tensor]] = []

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, t = batch
            loss = torch.nn.functional.cross_entropy(self.second(torch.relu(self.first(x))), t)
            self.losses.append(loss.item())
            return {"loss": loss}

        def on_before_optimizer_step(self, optimizer: Any) -> None:
            grads = [p.grad.double() for p in self.parameters()]
            self.updates.append(
                {
                    "lr": [g["lr"] for g in optimizer.param_groups],
                    "grad_norm": float(torch.sqrt(sum((g**2).sum() for g in grads))),
                }
            )

        def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, closure: Any) -> None:
            groups = [list(g["params"]) for g in optimizer.param_groups]
            before = [[p.detach().double().clone() for p in g] for g in groups]
            super().optimizer_step(epoch, batch_idx, optimizer, closure)
            ratios = []
            for params, old in zip(groups, before, strict=True):
                change = sum(
                    ((p.detach().double() - o) ** 2).sum() for p, o in zip(params, old, strict=True)
                )
                norm = sum((o**2).sum() for o in old)
                ratios.append(float(torch.sqrt(change / norm)))
            self.updates[-1]["update_ratio"] = ratios

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(
                [
                    {"params": self.first.parameters(), "momentum": 0.9},
                    {"params": self.second.parameters(), "momentum": 0.5},
                ],
                lr=0.1,
            )
            scheduler = lrkit.torch.Scheduler(optimizer, list(PL_SCHEDULES))
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
            }

    torch.manual_seed(0)
    return Net()


def lightning_fit(
    digits: Any, callbacks: list, max_steps: int, module: Any = None, **trainer: Any
) -> Any:
    import lightning.pytorch as pl
    import torch

    module = module if module is not None else lightning_module()
    loader = torch.utils.data.DataLoader(digits, batch_size=32, shuffle=False)
    settings: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_steps": max_steps,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": False,
    }
    settings.update(trainer)
    ckpt_path = settings.pop("ckpt_path", None)
    fit = pl.Trainer(callbacks=callbacks, **settings)
    fit.fit(module, loader, ckpt_path=ckpt_path)
    return module, fit


def values(monitor: Any, tag: str) -> tuple[list[int], np.ndarray]:
    steps, vals = monitor.record.series(tag)
    return steps.tolist(), vals


def test_lightning_records_what_each_update_used(digits: Any, tmp_path: Path, caplog: Any):
    import lightning.pytorch as pl

    import lrkit.lightning

    sink = ListSink()
    monitor = lrkit.lightning.Monitor(sinks=[sink])
    lr_monitor = pl.callbacks.LearningRateMonitor(logging_interval="step")
    n = 24
    with caplog.at_level(logging.INFO, logger="lrkit.monitor"):
        module, _ = lightning_fit(
            digits,
            [lr_monitor, monitor],
            n,
            logger=pl.loggers.CSVLogger(tmp_path, name="run"),
            log_every_n_steps=1,
        )
    updates = module.updates
    assert len(updates) == n
    for i, spec in enumerate(PL_SCHEDULES):
        steps, lrs = values(monitor, f"lr/group{i}")
        assert steps == list(range(n))
        np.testing.assert_allclose(lrs, lrkit.parse(spec).values(np.arange(n)), rtol=1e-12)
        np.testing.assert_allclose(lrs, [u["lr"][i] for u in updates], rtol=1e-12)
        _, momentum = values(monitor, f"momentum/group{i}")
        np.testing.assert_allclose(momentum, [(0.9, 0.5)[i]] * n)
        _, ratio = values(monitor, f"update_ratio/group{i}")
        np.testing.assert_allclose(ratio, [u["update_ratio"][i] for u in updates], rtol=1e-4)
    assert values(monitor, "lr/group0")[1][0] == 0.0  # the warmup's first update
    _, loss = values(monitor, "loss")
    np.testing.assert_allclose(loss, module.losses, rtol=1e-6)
    # the gradients of this update (Lightning runs the backward pass inside optimizer.step)
    _, grad_norm = values(monitor, "grad_norm")
    np.testing.assert_allclose(grad_norm, [u["grad_norm"] for u in updates], rtol=1e-5)
    # next to LearningRateMonitor, which logged the same lrs at the same steps
    with open(tmp_path / "run" / "version_0" / "metrics.csv", newline="") as f:
        logged = [row for row in csv.DictReader(f) if row.get("lr-SGD/pg1")]
    assert [int(row["step"]) for row in logged] == list(range(n))
    np.testing.assert_allclose(
        [float(r["lr-SGD/pg2"]) for r in logged], values(monitor, "lr/group1")[1], rtol=1e-6
    )
    # closed at the end: the sink got every step and the final verdict, which is logged
    assert [step for step, _ in sink.rows] == list(range(n)) and sink.closed == 1
    final = monitor.diagnosis()
    assert sink.summary is not None and sink.summary["verdict"] == final.verdict
    assert monitor.close() is final and sink.closed == 1
    assert any("final verdict" in r.getMessage() for r in caplog.records)
    assert not monitor.monitor.optimizer._optimizer_step_pre_hooks  # hooks removed


def test_lightning_accumulated_batches_average_into_their_update(digits: Any):
    import lrkit.lightning

    monitor = lrkit.lightning.Monitor()
    n = 12
    module, trainer = lightning_fit(digits, [monitor], n, accumulate_grad_batches=2)
    assert trainer.global_step == n and len(module.losses) == 2 * n
    steps, loss = values(monitor, "loss")
    assert steps == list(range(n))
    np.testing.assert_allclose(loss, np.reshape(module.losses, (n, 2)).mean(1), rtol=1e-6)
    for i, spec in enumerate(PL_SCHEDULES):
        np.testing.assert_allclose(
            values(monitor, f"lr/group{i}")[1], lrkit.parse(spec).values(np.arange(n)), rtol=1e-12
        )
    np.testing.assert_allclose(
        values(monitor, "grad_norm")[1], [u["grad_norm"] for u in module.updates], rtol=1e-5
    )


def test_lightning_every_and_a_resumed_fit_count_from_the_global_step(digits: Any, tmp_path: Path):
    import lrkit.lightning

    first = lrkit.lightning.Monitor(every=3)
    module, trainer = lightning_fit(digits, [first], 8)
    assert values(first, "loss")[0] == [0, 3, 6]
    np.testing.assert_allclose(values(first, "loss")[1], np.array(module.losses)[[0, 3, 6]])
    assert values(first, "update_ratio/group1")[0] == [0, 3, 6]
    trainer.save_checkpoint(tmp_path / "eight.ckpt")
    with pytest.raises(RuntimeError, match="give each fit a new Monitor"):
        lightning_fit(digits, [first], 10)

    resumed = lrkit.lightning.Monitor()
    module, _ = lightning_fit(digits, [resumed], 12, ckpt_path=tmp_path / "eight.ckpt")
    steps, lrs = values(resumed, "lr/group0")
    assert steps == [8, 9, 10, 11]
    np.testing.assert_allclose(lrs, lrkit.parse(PL_SCHEDULES[0]).values(np.arange(8, 12)))
    np.testing.assert_allclose(values(resumed, "loss")[1], module.losses)


def linear_module(lr: float) -> Any:
    """A linear regression to the one-hot digits, SGD at a constant ``lr``."""
    import lightning.pytorch as pl
    import torch

    class Linear(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(64, 10)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, t = batch
            target = torch.nn.functional.one_hot(t, 10).float()
            return torch.nn.functional.mse_loss(self.linear(x), target)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=lr)

    torch.manual_seed(0)
    return Linear()


def test_lightning_too_high_an_lr_is_diagnosed_too_high(digits: Any):
    import lrkit.lightning

    # lr 1.0 is above this regression's stability limit (about 2 / the Hessian's largest
    # eigenvalue): the loss grows geometrically, finite all along; lr 0.5 trains.
    fine, high = lrkit.lightning.Monitor(), lrkit.lightning.Monitor()
    lightning_fit(digits, [fine], 30, module=linear_module(0.5))
    lightning_fit(digits, [high], 30, module=linear_module(1.0))
    _, loss = values(high, "loss")
    assert np.isfinite(loss).all() and loss[-1] > 1e4 * loss[0]  # it diverged, never inf
    found = high.diagnosis()
    assert found.verdict == "too_high", str(found)
    assert found.advice
    assert fine.diagnosis().verdict != "too_high", str(fine.diagnosis())


def test_lightning_monitor_checks_its_arguments_and_keeps_lightning_out_of_lrkit():
    import lrkit.lightning

    with pytest.raises(ValueError, match="every must be an integer >= 1, got 0"):
        lrkit.lightning.Monitor(every=0)
    monitor = lrkit.lightning.Monitor()
    assert monitor.record.tags == [] and monitor.diagnosis().verdict == "ok"
    code = "import lrkit, sys; print('lightning' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.stdout.strip() == "False", run.stderr[-2000:]


if __name__ == "__main__":
    print("REPORT" + json.dumps(run_jobs(sys.argv[1])))
