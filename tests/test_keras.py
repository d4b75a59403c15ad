"""lrkit.keras: values, serialization, and save/load in a fresh process, per backend.

Keras fixes its backend when first imported, so the checks that must run on a
given backend (torch and jax) run in subprocesses with ``KERAS_BACKEND`` set:
one that computes values and trains a few steps and saves the models, then a
fresh one that loads them with no ``custom_objects`` and trains on. The rest
runs in this process, on whatever backend it got.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

import lrkit
from lrkit.keras import KerasSchedule, to_keras  # before keras: picks a backend if unset
from strategies import schedules
from test_optax import ONE_PER_FAMILY, assert_float32_close, steps_to_check

import keras  # isort: skip

BACKENDS = ("torch", "jax")
TRAINED = "warmup(cosine(lr=0.1, steps=20, min_lr=0.01), steps=4)"
FIRST_STEPS = 9  # trained before saving; the loaded model goes on from here


@settings(max_examples=50)  # the formulas are shared with lrkit.optax, tested at 100
@given(schedules())
def test_values_equal_the_pure_schedule(s: lrkit.Schedule):
    steps = steps_to_check(s)
    t = keras.ops.convert_to_tensor(steps.astype(np.int32))
    got = keras.ops.convert_to_numpy(to_keras(s)(t))
    assert got.dtype == np.float32
    assert_float32_close(got, s, steps)


def test_serialize_round_trip_and_config_is_the_spec_dict():
    s = lrkit.parse("warmup(cosine(lr=3e-4, steps=1000, min_lr=3e-5), steps=100)")
    lr = to_keras(s)
    assert lr.get_config() == {"schedule": s.to_dict()}
    data = keras.optimizers.schedules.serialize(lr)
    assert data["registered_name"] == "lrkit>KerasSchedule"
    back = keras.optimizers.schedules.deserialize(json.loads(json.dumps(data)))
    assert isinstance(back, KerasSchedule) and back.schedule == s
    assert KerasSchedule.from_config(lr.get_config()) == lr == to_keras(str(s))
    # Through an optimizer's own config, as model saving does it.
    opt = keras.optimizers.Adam(learning_rate=lr)
    restored = keras.optimizers.Adam.from_config(
        json.loads(json.dumps(keras.saving.serialize_keras_object(opt)["config"]))
    )
    assert restored.learning_rate is not None
    assert isinstance(restored._learning_rate, KerasSchedule)
    assert restored._learning_rate.schedule == s


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(TypeError, match="got int"):
        to_keras(3)
    with pytest.raises(ValueError, match="steps"):
        to_keras("cosine(lr=0.1, steps=0)")


# -- per backend, in subprocesses ---------------------------------------------

#: The per-backend job, run in a subprocess (``run_job`` from ``python -c``) or,
#: for this process's own backend, here. Its JSON argument says what to do:
#: check values (``specs``), train and save (``save_dir``), load and go on
#: (``load_dir``).
JOB = """
import json, sys
import numpy as np
import lrkit.keras  # registers the schedule: nothing else is needed to load a model
from lrkit.keras import to_keras
import keras
from keras import ops

X, Y = np.ones((1, 1), "float32"), np.full((1, 1), -1000.0, "float32")


def model_with(optimizer):
    # loss = |w * 1 - (-1000)| : its gradient in w is 1, so SGD moves w by exactly -lr.
    layer = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
    model = keras.Sequential([keras.Input((1,)), layer])
    model.compile(optimizer=optimizer, loss="mean_absolute_error")
    return model


def train(model, n):
    moved, reported = [], []
    for _ in range(n):
        w = float(model.get_weights()[0][0, 0])
        reported.append(float(model.optimizer.learning_rate))  # s(optimizer.iterations)
        model.train_on_batch(X, Y)
        moved.append(w - float(model.get_weights()[0][0, 0]))
    return {"moved": moved, "reported": reported,
            "iterations": int(ops.convert_to_numpy(model.optimizer.iterations))}


def run_job(job):
    trained = job["trained"]
    report = {"backend": keras.backend.backend(), "values": {}}
    steps = np.array(list(range(130)) + [99_999, 100_000, 100_001, 10**9, 2**31 - 1])
    report["steps"] = steps.tolist()
    for spec in job["specs"]:  # from int64 steps, as Keras passes them
        lr = to_keras(spec)
        t = ops.convert_to_tensor(steps.astype("int64"))
        report["values"][spec] = ops.convert_to_numpy(lr(t)).tolist()

    if job.get("save_dir"):
        # The step as Keras passes it: the optimizer's own iterations variable.
        opt = keras.optimizers.Adam(learning_rate=to_keras(trained))
        report["iterations_dtype"] = str(opt.iterations.dtype)
        far = []
        for t in (0, 3, 4, 23, 100_000):
            opt.iterations.assign(t)
            far.append(float(opt.learning_rate))
        report["through_iterations"] = far
        for name, make in (("sgd", keras.optimizers.SGD), ("adam", keras.optimizers.Adam)):
            model = model_with(make(learning_rate=to_keras(trained)))
            report["trained_" + name] = train(model, job["first_steps"])
            model.save(job["save_dir"] + f"/{name}.keras")

    if job.get("load_dir"):
        for name in ("sgd", "adam"):
            model = keras.saving.load_model(job["load_dir"] + f"/{name}.keras")  # no custom_objects
            start = int(ops.convert_to_numpy(model.optimizer.iterations))
            report["loaded_" + name] = {"schedule": str(model.optimizer._learning_rate.schedule),
                                        "start": start, **train(model, job["more_steps"])}
    return report


if __name__ == "__main__":
    print("REPORT" + json.dumps(run_job(json.loads(sys.argv[1]))))
"""


def _run(backend: str, *, fresh: bool, **job: object) -> dict:
    """Run JOB on ``backend``: here when it is this process's backend and ``fresh``
    is False, else in a new process with ``KERAS_BACKEND`` set."""
    job = {"trained": TRAINED, "first_steps": FIRST_STEPS, "more_steps": 6, "specs": [], **job}
    if not fresh and backend == keras.backend.backend():
        namespace: dict = {"__name__": "keras_job"}
        exec(compile(JOB, "keras_job", "exec"), namespace)
        return namespace["run_job"](job)
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", JOB, json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("REPORT"))
    report = json.loads(line[len("REPORT") :])
    assert report["backend"] == backend
    return report


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras' own
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_values_training_and_resume_in_a_fresh_process(backend: str, tmp_path: Path):
    """On each backend: every family's values from int64 steps (unless this
    process runs that backend: the hypothesis test above covers it), the lr each
    update used, and a saved model resumed in a fresh process that imports
    ``lrkit.keras`` and calls ``load_model`` without custom_objects."""
    s = lrkit.parse(TRAINED)
    specs = ONE_PER_FAMILY if backend != keras.backend.backend() else []
    report = _run(backend, fresh=False, specs=specs, save_dir=str(tmp_path))

    steps = np.array(report["steps"], dtype=np.int64)
    for spec, got in report["values"].items():  # up to 10**9 and 2**31 - 1: no drift
        assert_float32_close(np.array(got), lrkit.parse(spec), steps)

    # The optimizer's own iterations variable as the step.
    assert "int" in report["iterations_dtype"]
    want = [s(t) for t in (0, 3, 4, 23, 100_000)]
    np.testing.assert_allclose(report["through_iterations"], want, rtol=1e-6)

    # The update at iteration i used s(i) (SGD on a gradient of 1 moves w by the lr).
    want = s.values(FIRST_STEPS)
    for name in ("sgd", "adam"):
        assert report["trained_" + name]["iterations"] == FIRST_STEPS
        np.testing.assert_allclose(report["trained_" + name]["reported"], want, rtol=1e-6)
    np.testing.assert_allclose(report["trained_sgd"]["moved"], want, rtol=1e-4, atol=1e-6)

    # A fresh process loads the models and goes on from iteration FIRST_STEPS.
    resumed = _run(backend, fresh=True, load_dir=str(tmp_path))
    want = s.values(np.arange(FIRST_STEPS, FIRST_STEPS + 6))
    for name in ("sgd", "adam"):
        loaded = resumed["loaded_" + name]
        assert loaded["start"] == FIRST_STEPS
        assert loaded["schedule"] == str(s)
        np.testing.assert_allclose(loaded["reported"], want, rtol=1e-6)
    np.testing.assert_allclose(resumed["loaded_sgd"]["moved"], want, rtol=1e-4, atol=1e-6)


def test_frameworks_page_examples_run_and_agree(capsys):
    import re
    import warnings

    page = Path(__file__).resolve().parents[1] / "docs" / "frameworks.md"
    text = page.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 6
    namespace = {"__name__": "docs_example"}
    for code in blocks:  # one namespace: the saving example continues the Keras one
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(code, str(page), "exec"), namespace)
    printed = capsys.readouterr().out.strip()
    shown = re.findall(r"Output[^\n]*:\n\n```text\n(.*?)```", text, flags=re.S)
    assert len(shown) == 3
    assert printed == "\n".join(block.strip() for block in shown)
    curves = [
        line.split(" ", 1)[1]
        for line in printed.splitlines()
        if line.split(" ", 1)[0] in ("torch", "keras", "optax") and "[" in line
    ]
    assert len(curves) == 3 and len(set(curves)) == 1  # torch, keras and optax agree


def test_framework_agreement_script_measures_float32_rounding_only(tmp_path: Path):
    """benchmarks/framework_agreement.py: the lr each framework's update applied."""
    import runpy

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "framework_agreement.py"
    bench = runpy.run_path(str(script), run_name="framework_agreement")
    result = bench["measure"](steps=360)
    eps = float(np.finfo(np.float32).eps)
    assert len(result["used"]) == 3
    for name, used in result["used"].items():
        assert used.shape == (360,) and used.dtype == np.float64, name
    torch_diff, keras_diff, optax_diff = result["vs_lrkit"].values()
    assert torch_diff <= eps / 2  # lrkit's float64 value, rounded once to float32
    assert keras_diff <= 3 * eps and optax_diff <= 3 * eps
    assert result["between"] <= 3 * eps
    assert max(torch_diff, keras_diff, optax_diff) > 0  # float32 really was measured
    out = tmp_path / "overlay.png"
    bench["plot"](result, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
