"""lrkit.keras callbacks and find_lr, on the jax and torch backends.

Keras fixes its backend when first imported, so every check runs as a *job*
(a function below returning plain data) on each backend: the jobs for this
process's backend run here, those for the other backend all in one fresh
process (this file run as a script with ``KERAS_BACKEND`` set), so each
backend costs one import of Keras. The tests then compare the reports with
the pure schedules and controllers, and with torch's ReduceLROnPlateau.

The lr an update really used is measured, not read back: SGD without
momentum on ``loss = |w * 1 + 1000|`` (a gradient of exactly 1) moves ``w``
by exactly the lr, up to ``w``'s float32 rounding.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lrkit
import lrkit.finder
import lrkit.keras  # before keras: picks a backend if unset
from lrkit.controllers import Diverged
from lrkit.controllers import Plateau as PurePlateau

import keras  # isort: skip

BACKENDS = ("jax", "torch")
STEPS_PER_EPOCH = 4
X_TRAIN = np.ones((4 * STEPS_PER_EPOCH, 1), "float32")
Y_TRAIN = np.full((4 * STEPS_PER_EPOCH, 1), -1000.0, "float32")
VALIDATION = (np.zeros((4, 1), "float32"), np.ones((4, 1), "float32"))  # val_loss is always 1

FLAT = "warmup(cosine(lr=0.1, steps=40, min_lr=0.01), steps=4)"
RESUMED = "warmup(cosine(lr=0.1, steps=30, min_lr=0.01), steps=2)"
RESUME_PLATEAU = {"patience": 0, "cooldown": 1, "factor": 0.5}
SEQUENCE = [0.5, 0.6, 0.6, 0.55, 0.7, 0.7, 0.69, 0.7, 0.7, 0.71, 0.72, 0.72]
SEQUENCE_PLATEAU = {
    "mode": "max",
    "factor": 0.3,
    "patience": 1,
    "threshold": 0.015,
    "threshold_mode": "abs",
    "cooldown": 1,
    "min_lr": 0.01,
}


# -- the jobs (run on each backend) --------------------------------------------


def unit_gradient_model(optimizer: Any) -> Any:
    """``loss = mean |w * x + 1000|`` with x = 1: SGD moves ``w`` by exactly the lr."""
    layer = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
    model = keras.Sequential([keras.Input((1,)), layer])
    model.compile(optimizer=optimizer, loss="mean_absolute_error")
    return model


class Recorder(keras.callbacks.Callback):
    """Per update: the iteration, the lr the optimizer reports, and how far ``w`` moved."""

    def __init__(self) -> None:
        super().__init__()
        self.iterations: list[int] = []
        self.reported: list[float] = []
        self.moved: list[float] = []
        self.after: list[float] = []
        self._w = 0.0

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        model = self.model
        self._w = float(model.get_weights()[0].ravel()[0])
        self.iterations.append(int(keras.ops.convert_to_numpy(model.optimizer.iterations)))
        self.reported.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        w = float(self.model.get_weights()[0].ravel()[0])
        self.after.append(w)
        self.moved.append(self._w - w)

    def report(self) -> dict[str, list]:
        return {
            "iterations": self.iterations,
            "reported": self.reported,
            "moved": self.moved,
            "after": self.after,
        }


class EventFileLogger(keras.callbacks.Callback):
    """Writes every epoch log to a TensorBoard event file with tensorboard's own writer.

    Keras' ``TensorBoard`` callback writes through ``tensorflow.summary``, and
    tensorflow is not installed here; this stands in for it, reading ``logs``
    at the same point (epoch end, after the callbacks before it).
    """

    def __init__(self, logdir: str) -> None:
        super().__init__()
        from tensorboard.summary import Writer

        self.writer = Writer(logdir)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        for name, value in (logs or {}).items():
            self.writer.add_scalar(f"epoch_{name}", float(value), step=epoch)
        self.writer.flush()

    def on_train_end(self, logs: Any = None) -> None:
        self.writer.close()


def fit_flat(optimizer: Any, epochs: int, callbacks: list, **fit: Any) -> tuple[Any, Any]:
    model = fit.pop("model", None) or unit_gradient_model(optimizer)
    history = model.fit(
        X_TRAIN,
        Y_TRAIN,
        batch_size=len(X_TRAIN) // STEPS_PER_EPOCH,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        validation_data=VALIDATION,
        callbacks=callbacks,
        **fit,
    )
    return model, history


def job_flat_plateau(tmp: str) -> dict:
    """Adam and SGD over warmup(cosine) with Plateau(patience=2, factor=0.5), and
    Keras' own ReduceLROnPlateau on the same optimizer."""
    out: dict[str, Any] = {}
    for name, make in (("adam", keras.optimizers.Adam), ("sgd", keras.optimizers.SGD)):
        recorder = Recorder()
        loggers = [
            keras.callbacks.CSVLogger(f"{tmp}/{name}.csv"),
            EventFileLogger(f"{tmp}/{name}_events"),
        ]
        plateau = lrkit.keras.Plateau(patience=2, factor=0.5)
        model, history = fit_flat(
            make(learning_rate=lrkit.keras.to_keras(FLAT)), 9, [plateau, recorder, *loggers]
        )
        out[name] = {
            **recorder.report(),
            "history_lr": history.history["learning_rate"],
            "val_loss": history.history["val_loss"],
            "multiplier": model.optimizer._learning_rate.multiplier,
        }
    model = unit_gradient_model(keras.optimizers.Adam(learning_rate=lrkit.keras.to_keras(FLAT)))
    try:
        fit_flat(None, 9, [keras.callbacks.ReduceLROnPlateau(patience=2, factor=0.5)], model=model)
        out["keras_reduce_lr_on_plateau"] = "no error"
    except TypeError as exc:
        out["keras_reduce_lr_on_plateau"] = f"TypeError: {exc}"
    return out


def job_resume(tmp: str) -> dict:
    """5 epochs in one go, against 3 epochs + save + load + 2 more epochs."""
    out: dict[str, Any] = {}
    recorder = Recorder()
    opt = keras.optimizers.SGD(learning_rate=lrkit.keras.to_keras(RESUMED))
    _, history = fit_flat(opt, 5, [lrkit.keras.Plateau(**RESUME_PLATEAU), recorder])
    out["whole"] = {**recorder.report(), "history_lr": history.history["learning_rate"]}

    first = Recorder()
    opt = keras.optimizers.SGD(learning_rate=lrkit.keras.to_keras(RESUMED))
    model, h1 = fit_flat(opt, 3, [lrkit.keras.Plateau(**RESUME_PLATEAU), first])
    model.save(f"{tmp}/resume.keras")
    out["saved_multiplier"] = model.optimizer._learning_rate.multiplier
    loaded = keras.saving.load_model(f"{tmp}/resume.keras")
    out["loaded_multiplier"] = loaded.optimizer._learning_rate.multiplier
    out["loaded_state"] = loaded.optimizer._learning_rate.state
    second = Recorder()
    _, h2 = fit_flat(
        None, 5, [lrkit.keras.Plateau(**RESUME_PLATEAU), second], model=loaded, initial_epoch=3
    )
    out["pieces"] = {key: first.report()[key] + second.report()[key] for key in first.report()} | {
        "history_lr": h1.history["learning_rate"] + h2.history["learning_rate"]
    }
    return out


class FeedMetric(keras.callbacks.Callback):
    """Puts ``SEQUENCE[epoch]`` into ``logs["val_score"]`` (runs before the Plateau)."""

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logs["val_score"] = SEQUENCE[epoch]


def job_float_lr_against_torch(tmp: str) -> dict:
    """A float lr (Keras' own Variable) under Plateau, driven by a given metric sequence."""
    opt = keras.optimizers.SGD(learning_rate=0.1)
    recorder = Recorder()
    plateau = lrkit.keras.Plateau(monitor="val_score", **SEQUENCE_PLATEAU)
    model, history = fit_flat(opt, len(SEQUENCE), [FeedMetric(), plateau, recorder])
    model.save(f"{tmp}/float.keras")
    loaded = keras.saving.load_model(f"{tmp}/float.keras")
    return {
        **recorder.report(),
        "history_lr": history.history["learning_rate"],
        "optimizer_variables": len(model.optimizer.variables),
        "loaded_variables": len(loaded.optimizer.variables),
        "loaded_lr": float(keras.ops.convert_to_numpy(loaded.optimizer.learning_rate)),
        "same_iterations": int(keras.ops.convert_to_numpy(loaded.optimizer.iterations))
        == int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
    }


def job_guard(tmp: str) -> dict:
    out: dict[str, Any] = {}
    # A NaN batch (the 6th of 8 per epoch), SGD on a float lr and Adam on a schedule.
    x = np.ones((32, 1), "float32")
    x[20:24] = np.nan
    y = np.full((32, 1), -1000.0, "float32")
    for name, opt in (
        ("sgd", keras.optimizers.SGD(learning_rate=0.1)),
        ("adam", keras.optimizers.Adam(learning_rate=lrkit.keras.to_keras("constant(lr=0.1)"))),
    ):
        model = unit_gradient_model(opt)
        recorder = Recorder()
        guard = lrkit.keras.Guard(factor=0.5, snapshot_every=1)
        history = model.fit(
            x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=[guard, recorder]
        )
        optimizer = model.optimizer
        out[name] = {
            **recorder.report(),
            "rollbacks": guard.rollbacks,
            "loss": history.history["loss"],
            "finite": bool(
                all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in model.variables)
                and all(
                    np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in optimizer.variables
                )
            ),
            "multiplier": optimizer._learning_rate.multiplier,
            "state": optimizer._learning_rate.state,
        }
    # Too high an lr on a linear regression: rollbacks halve it until training is stable.
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(64, 4)).astype("float32")
    ys = xs @ rng.normal(size=(4, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate=3.0), "mse")
    first = float(model.evaluate(xs, ys, verbose=0))
    guard = lrkit.keras.Guard(window=5, snapshot_every=1000, max_rollbacks=3)
    history = model.fit(xs, ys, batch_size=8, epochs=6, shuffle=False, verbose=0, callbacks=[guard])
    out["spike"] = {
        "first": first,
        "last": float(model.evaluate(xs, ys, verbose=0)),
        "losses": history.history["loss"],
        "rollbacks": guard.rollbacks,
        "lr": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
    }
    # Past max_rollbacks: a clear error, and the model holds the last good snapshot.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate=1e6), "mse")
    try:
        model.fit(
            xs,
            ys,
            batch_size=8,
            epochs=3,
            verbose=0,
            callbacks=[lrkit.keras.Guard(window=3, max_rollbacks=1, snapshot_every=1)],
        )
        out["too_high"] = {"error": None}
    except Diverged as exc:
        out["too_high"] = {
            "error": str(exc),
            "rollbacks": exc.rollbacks,
            "finite": bool(all(np.isfinite(w).all() for w in model.get_weights())),
        }
    return out


def snapshot(model: Any) -> list[np.ndarray]:
    every = [*model.variables, *model.optimizer.variables, *model.metrics_variables]
    return [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in every]


def job_find_lr(tmp: str) -> dict:
    out: dict[str, Any] = {}
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(256, 4)).astype("float32")
    ys = (xs @ rng.normal(size=(4, 1)) + 0.1 * rng.normal(size=(256, 1))).astype("float32")
    keras.utils.set_random_seed(1)
    for name, opt in (
        ("adam_schedule", keras.optimizers.Adam(lrkit.keras.to_keras("cosine(lr=0.01, steps=50)"))),
        ("sgd_float", keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)),
        ("mixed_precision", keras.optimizers.Adam(0.01)),  # a LossScaleOptimizer around it
    ):
        if name == "mixed_precision":
            keras.config.set_dtype_policy("mixed_float16")
        model = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1, dtype="float32")]
        )
        model.compile(opt, "mse", metrics=["mae"])
        model.fit(xs, ys, batch_size=32, epochs=1, verbose=0)  # moments, iterations, metrics
        inner = getattr(model.optimizer, "inner_optimizer", model.optimizer)
        lr_object = inner._learning_rate
        before = snapshot(model)  # a LossScaleOptimizer's own scale and counter included
        result = lrkit.keras.find_lr(model, xs, ys, min_lr=1e-4, max_lr=10.0, num_steps=50)
        after = snapshot(model)
        keras.config.set_dtype_policy("float32")
        path = Path(tmp) / f"{name}.png"
        result.plot(path)
        out[name] = {
            "type": f"{type(result).__module__}.{type(result).__qualname__}",
            "same": len(before) == len(after)
            and all(
                a.dtype == b.dtype and np.array_equal(a, b)
                for a, b in zip(before, after, strict=True)
            ),
            "same_lr_object": inner._learning_rate is lr_object,
            "optimizer": type(model.optimizer).__name__,
            "suggestion": result.suggestion,
            "n": len(result.lrs),
            "lrs": result.lrs.tolist(),
            "losses": [x if math.isfinite(x) else None for x in result.losses.tolist()],
            "png": path.stat().st_size if path.exists() else 0,
        }
    # A model not built yet (no Input): refused before anything changes; it fits after.
    unbuilt = keras.Sequential([keras.layers.Dense(1)])
    unbuilt.compile(keras.optimizers.SGD(0.01), "mse")
    try:
        lrkit.keras.find_lr(unbuilt, xs, ys, num_steps=10)
        out["unbuilt"] = "no error"
    except ValueError as err:
        out["unbuilt"] = str(err)
    out["unbuilt_fits"] = bool(
        np.isfinite(unbuilt.fit(xs, ys, epochs=1, verbose=0).history["loss"][-1])
    )
    # The next update uses the optimizer's own schedule again (the compiled step is rebuilt).
    schedule = lrkit.parse("cosine(lr=0.1, steps=20)")
    model = unit_gradient_model(keras.optimizers.SGD(lrkit.keras.to_keras(schedule)))
    model.fit(X_TRAIN, Y_TRAIN, batch_size=4, epochs=1, verbose=0)
    lrkit.keras.find_lr(model, X_TRAIN, Y_TRAIN, batch_size=4, num_steps=10)
    recorder = Recorder()
    model.fit(X_TRAIN, Y_TRAIN, batch_size=4, epochs=1, verbose=0, callbacks=[recorder])
    out["after"] = recorder.report()
    return out


JOBS = {
    "flat_plateau": job_flat_plateau,
    "resume": job_resume,
    "float_lr": job_float_lr_against_torch,
    "guard": job_guard,
    "find_lr": job_find_lr,
}


def run_jobs(tmp: str) -> dict:
    report: dict[str, Any] = {"backend": keras.backend.backend()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, job in JOBS.items():
            folder = Path(tmp) / name
            folder.mkdir(parents=True, exist_ok=True)
            report[name] = job(str(folder))
    return report


# -- running the jobs per backend ------------------------------------------------

_REPORTS: dict[str, dict] = {}


def backend_report(backend: str, tmp_path_factory: Any) -> dict:
    """The jobs' report on ``backend``, computed once per test session.

    Under pytest-xdist the workers share the parent of their temporary
    folders: the first worker that needs a backend's report computes it there
    (holding a file lock) and the others read it, as pytest-xdist recommends
    for once-per-session work.
    """
    if backend in _REPORTS:
        return _REPORTS[backend]
    from filelock import FileLock  # a dependency of torch

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # this session's folder, shared by the workers
        root = root.parent
    saved = root / f"lrkit_keras_callbacks_{backend}.json"
    with FileLock(str(saved) + ".lock"):
        if saved.exists():
            report = json.loads(saved.read_text())
        else:
            tmp = root / f"lrkit_keras_callbacks_{backend}"
            tmp.mkdir(exist_ok=True)
            report = compute_report(backend, str(tmp))
            report["tmp"] = str(tmp)
            saved.write_text(json.dumps(report))
    assert report["backend"] == backend
    _REPORTS[backend] = report
    return report


def compute_report(backend: str, tmp: str) -> dict:
    """Run the jobs here when this process runs ``backend``, else in a fresh process."""
    if backend == keras.backend.backend():
        return run_jobs(tmp)
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, __file__, tmp], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-4000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("REPORT"))
    return json.loads(line[len("REPORT") :])


# -- the tests -------------------------------------------------------------------


def expected_plateau_run(spec: str, epochs: int, **settings: Any) -> tuple[np.ndarray, list[float]]:
    """The pure controller on a flat metric: the lr of every step, and after each epoch."""
    s = lrkit.parse(spec)
    pure = PurePlateau(s, **settings)
    per_step, per_epoch = [], []
    for epoch in range(epochs):
        steps = range(epoch * STEPS_PER_EPOCH, (epoch + 1) * STEPS_PER_EPOCH)
        per_step += [s(i) * pure.factor_now for i in steps]
        pure.observe(1.0, steps[-1])
        per_epoch.append(s(steps[-1] + 1) * pure.factor_now)
    return np.array(per_step), per_epoch


@pytest.fixture(params=BACKENDS)
def report(request: Any, tmp_path_factory: Any) -> dict:
    return backend_report(request.param, tmp_path_factory)


def test_plateau_multiplies_a_warmup_cosine_and_the_update_uses_that_lr(report: dict):
    flat = report["flat_plateau"]
    want, want_epochs = expected_plateau_run(FLAT, 9, factor=0.5, patience=2)
    assert flat["sgd"]["val_loss"] == [1.0] * 9
    assert want[-1] == pytest.approx(lrkit.parse(FLAT)(35) * 0.25)  # two cuts made
    for name in ("adam", "sgd"):
        run = flat[name]
        assert run["iterations"] == list(range(36))
        np.testing.assert_allclose(run["reported"], want, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(run["history_lr"], want_epochs, rtol=1e-6)
        assert run["multiplier"] == 0.25
    # SGD on a gradient of 1: the update really used the reported lr, after each cut too.
    np.testing.assert_allclose(flat["sgd"]["moved"], want, rtol=1e-4, atol=1e-6)


def test_keras_own_reduce_lr_on_plateau_raises_on_a_schedule(report: dict):
    # The reference behaviour lrkit.keras.Plateau replaces: Keras cannot cut a schedule.
    got = report["flat_plateau"]["keras_reduce_lr_on_plateau"]
    assert got.startswith("TypeError") and "LearningRateSchedule" in got


def test_learning_rate_reaches_the_csv_and_tensorboard_loggers(report: dict):
    folder = Path(report["tmp"]) / "flat_plateau"
    with open(folder / "sgd.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    _, want_epochs = expected_plateau_run(FLAT, 9, factor=0.5, patience=2)
    assert [int(r["epoch"]) for r in rows] == list(range(9))
    np.testing.assert_allclose([float(r["learning_rate"]) for r in rows], want_epochs, rtol=1e-6)
    # A TensorBoard event file written from the same logs holds the scalar.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    events = EventAccumulator(str(folder / "sgd_events"))
    events.Reload()
    assert "epoch_learning_rate" in events.Tags()["tensors"]
    scalars = [
        (e.step, float(np.asarray(tensor_util.make_ndarray(e.tensor_proto))))
        for e in events.Tensors("epoch_learning_rate")
    ]
    assert [step for step, _ in scalars] == list(range(9))
    np.testing.assert_allclose([v for _, v in scalars], want_epochs, rtol=1e-6)


def test_resume_after_save_and_load_continues_the_same_lrs(report: dict):
    resume = report["resume"]
    whole, pieces = resume["whole"], resume["pieces"]
    want, want_epochs = expected_plateau_run(RESUMED, 5, **RESUME_PLATEAU)
    # A cut before the save (epoch 1) and one after the load that needs the saved counters
    # (epoch 3: a fresh detector would take that observation as its first best).
    assert resume["saved_multiplier"] == resume["loaded_multiplier"] == 0.5
    assert resume["loaded_state"]["plateau"]["best"] == 1.0
    assert want[-1] == pytest.approx(lrkit.parse(RESUMED)(19) * 0.25)
    assert pieces["iterations"] == whole["iterations"] == list(range(20))
    for run in (whole, pieces):
        np.testing.assert_allclose(run["reported"], want, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(run["moved"], want, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(run["history_lr"], want_epochs, rtol=1e-6)
    np.testing.assert_allclose(pieces["reported"], whole["reported"], rtol=1e-7)
    np.testing.assert_allclose(pieces["after"], whole["after"], rtol=1e-7)


def test_plateau_on_a_float_lr_matches_torch_reduce_lr_on_plateau(report: dict):
    import torch

    run = report["float_lr"]
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    torch_plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **SEQUENCE_PLATEAU)
    per_step, per_epoch = [], []
    for value in SEQUENCE:
        per_step += [optimizer.param_groups[0]["lr"]] * STEPS_PER_EPOCH
        torch_plateau.step(value)
        per_epoch.append(optimizer.param_groups[0]["lr"])
    assert len(set(per_epoch)) == 3  # two cuts, the second stopped by min_lr
    np.testing.assert_allclose(run["history_lr"], per_epoch, rtol=1e-6)
    np.testing.assert_allclose(run["reported"], per_step, rtol=1e-6)
    np.testing.assert_allclose(run["moved"], per_step, rtol=1e-4, atol=1e-6)
    # The float lr became to_keras(constant(lr)): Keras drops its lr Variable, so the
    # saved model loads its optimizer state (the same variables) and the cut lr.
    assert run["optimizer_variables"] == run["loaded_variables"] == 1
    assert run["loaded_lr"] == pytest.approx(per_epoch[-1], rel=1e-6)
    assert run["same_iterations"]


def test_guard_rolls_back_a_nan_batch_and_halves_the_lr(report: dict):
    guard = report["guard"]
    sgd = guard["sgd"]
    assert sgd["iterations"] == list(range(16))  # the step counter kept moving
    # The 6th batch of each epoch is NaN: no move there (rolled back), then half the lr.
    want = [0.1] * 5 + [0.0] + [0.05] * 7 + [0.0] + [0.025] * 2
    np.testing.assert_allclose(sgd["moved"], want, rtol=1e-4, atol=1e-6)
    for name in ("sgd", "adam"):
        run = guard[name]
        assert run["rollbacks"] == 2 and run["multiplier"] == 0.25
        assert run["finite"]  # weights and Adam's moments came back from the snapshot
        assert run["state"]["guard"]["rollbacks"] == 2
        assert all(math.isfinite(x) for x in run["loss"])  # the NaN left the loss metric


def test_guard_recovers_from_too_high_an_lr_and_gives_up_clearly(report: dict):
    spike = report["guard"]["spike"]
    assert 1 <= spike["rollbacks"] <= 3
    assert spike["lr"] == pytest.approx(3.0 * 0.5 ** spike["rollbacks"])
    assert all(math.isfinite(x) for x in spike["losses"])
    assert spike["last"] < 1e-3 * spike["first"]  # it trained, at the lr it settled on
    too_high = report["guard"]["too_high"]
    assert too_high["error"] is not None and "max_rollbacks=1" in too_high["error"]
    assert too_high["rollbacks"] == 1 and too_high["finite"]


def test_find_lr_leaves_every_variable_bit_for_bit_and_suggests(report: dict):
    found = report["find_lr"]
    assert found["mixed_precision"]["optimizer"] == "LossScaleOptimizer"
    assert found["unbuilt"].startswith("find_lr: the model is not built yet")
    assert found["unbuilt_fits"]
    for name in ("adam_schedule", "sgd_float", "mixed_precision"):
        run = found[name]
        assert run["type"] == "lrkit.finder.FinderResult"
        assert run["same"] and run["same_lr_object"]
        assert 2 <= run["n"] <= 50 and run["png"] > 0
        np.testing.assert_allclose(run["lrs"], lrkit.finder.ramp(1e-4, 10.0, 50)[: run["n"]])
    assert 1e-4 < found["adam_schedule"]["suggestion"] < 10.0
    # The next fit uses the optimizer's own schedule, compiled step included.
    after = found["after"]
    want = lrkit.parse("cosine(lr=0.1, steps=20)").values(np.arange(4, 8))
    assert after["iterations"] == [4, 5, 6, 7]
    np.testing.assert_allclose(after["reported"], want, rtol=1e-6)
    np.testing.assert_allclose(after["moved"], want, rtol=1e-4, atol=1e-6)


def test_the_finder_result_is_the_torch_one():
    import lrkit.torch

    assert lrkit.keras.FinderResult is lrkit.torch.FinderResult is lrkit.finder.FinderResult


# -- in this process, on its backend ----------------------------------------------


def test_schedule_config_keeps_multiplier_and_state():
    lr = lrkit.keras.KerasSchedule("cosine(lr=1.0, steps=10)", multiplier=0.5, state={"a": 1})
    config = lr.get_config()
    assert config["multiplier"] == 0.5 and config["state"] == {"a": 1}
    data = json.loads(json.dumps(keras.optimizers.schedules.serialize(lr)))
    back = keras.optimizers.schedules.deserialize(data)
    assert back == lr and back.multiplier == 0.5
    assert float(back(5)) == pytest.approx(0.25)
    assert "multiplier" not in lrkit.keras.to_keras("constant(lr=0.1)").get_config()
    with pytest.raises(ValueError, match="multiplier must be a finite number >= 0, got -1"):
        lrkit.keras.KerasSchedule("constant(lr=0.1)", multiplier=-1)


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="factor must be in \\[0, 1\\), got 2"):
        lrkit.keras.Plateau(factor=2)
    with pytest.raises(ValueError, match="mode must be one of"):
        lrkit.keras.Plateau(mode="auto")
    with pytest.raises(ValueError, match="guard: factor must be a number in \\(0, 1\\], got 0"):
        lrkit.keras.Guard(factor=0)
    with pytest.raises(ValueError, match="guard: spike must be a number > 1, got 1"):
        lrkit.keras.Guard(spike=1)
    with pytest.raises(ValueError, match="snapshot_every must be an integer >= 1, got 0"):
        lrkit.keras.Guard(snapshot_every=0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="must be compiled"):
        lrkit.keras.find_lr(model, X_TRAIN, Y_TRAIN)
    model.compile(keras.optimizers.SGD(0.1), "mse")
    with pytest.raises(ValueError, match="num_steps must be an integer >= 2, got 1"):
        lrkit.keras.find_lr(model, X_TRAIN, Y_TRAIN, num_steps=1)
    decay = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    model.compile(keras.optimizers.SGD(decay), "mse")
    with pytest.raises(TypeError, match=r"float or an lrkit schedule.*ExponentialDecay"):
        model.fit(X_TRAIN, X_TRAIN, epochs=1, verbose=0, callbacks=[lrkit.keras.Plateau()])


if __name__ == "__main__":
    print("REPORT" + json.dumps(run_jobs(sys.argv[1])))
