"""The examples in examples/ run as written and do what they print."""

from __future__ import annotations

import json
import math
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, capsys) -> tuple[dict, str]:
    """Load ``examples/<name>`` (not as __main__), call its ``main()``; its result and output."""
    namespace = runpy.run_path(str(EXAMPLES / name), run_name="example")
    result = namespace["main"]()
    return result, capsys.readouterr().out


def test_jax_mlp_trains_with_the_lrkit_schedule(capsys):
    import lrkit

    result, printed = run_example("jax_mlp.py", capsys)
    assert result["accuracy"] >= 0.97
    assert result["last"] < result["first"] / 10
    # Every update used s(count), up to float32 rounding.
    want = lrkit.parse("warmup(cosine(lr=0.02, steps=140, min_lr=0.001), steps=10)").values(150)
    np.testing.assert_allclose(result["used"], want, rtol=1e-6, atol=1e-9)
    assert result["worst"] < 1e-6
    assert f"accuracy {result['accuracy']:.3f}" in printed
    assert "150 updates; max relative difference from lrkit's schedule" in printed


def test_optax_plateau_cuts_through_inject_hyperparams(capsys):
    import lrkit

    result, printed = run_example("optax_plateau.py", capsys)
    assert len(result["cuts"]) >= 2
    np.testing.assert_allclose(result["used"], result["want"], rtol=1e-6, atol=1e-9)
    # The controller's lr is s(step) * 0.5**k, k the cuts made before that step's epoch.
    s = lrkit.parse("warmup(cosine(lr=0.1, steps=380, min_lr=0.01), steps=20)")
    epoch_of_step = np.arange(400) // 20
    k = np.array([sum(c <= e for c in result["cuts"]) for e in epoch_of_step])
    np.testing.assert_allclose(result["used"], s.values(400) * 0.5**k, rtol=1e-6, atol=1e-9)
    shown = [int(m) for m in re.findall(r"epoch\s+(\d+)\s+val_loss [\d.]+\s+cut", printed)]
    assert shown == result["cuts"]
    assert "max relative difference from lrkit's Plateau" in printed


# -- task files run by `lrkit compare` -----------------------------------------

LRKIT = str(Path(sys.executable).with_name("lrkit"))


def compare_example(tmp_path: Path, ref: str, *grid: str) -> list[dict]:
    """``lrkit compare --tasks examples/<ref> GRID --seeds 1 --workers 1``: its runs, all ok."""
    out = tmp_path / "out"
    command = [LRKIT, "compare", "--tasks", f"{EXAMPLES / ref}", *grid]
    command += ["--seeds", "1", "--workers", "1", "--out", str(out)]
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    runs = json.loads((out / "results.json").read_text())["runs"]
    for run in runs:
        assert run["status"] == "ok", (run["reason"], run["traceback"])
        assert math.isfinite(run["final"])
        assert len(run["loss"]) == run["steps"] and all(map(math.isfinite, run["loss"]))
    return runs


def assert_follows_the_schedule(run: dict) -> np.ndarray:
    """The run's lr curve is lrkit's filled schedule, step by step (1e-9 relative)."""
    import lrkit

    want = lrkit.parse(run["identity"]["schedule"]).values(run["steps"])
    assert len(run["lr"]) == run["steps"]
    np.testing.assert_allclose(run["lr"], want, rtol=1e-9, atol=0)
    return want


GRID = ["--optimizers", "sgd,adam", "--schedules", "warmup(cosine(), steps=10)", "--lrs", "0.1"]
GRID += ["--budget", "0.2"]  # 60 of the tasks' 300 steps


def test_task_torch_runs_under_compare_and_follows_the_schedule(tmp_path: Path) -> None:
    runs = compare_example(tmp_path, "task_torch.py:digits_mlp", *GRID)
    assert [r["config"]["optimizer"] for r in runs] == ["sgd", "adam"]
    for run in runs:
        assert run["identity"]["schedule"] == "warmup(cosine(lr=0.1, steps=50), steps=10)"
        want = assert_follows_the_schedule(run)  # the lr each optimizer step really used
        assert want[0] == 0.0 and want[10] == 0.1
        assert run["eval_steps"] == [25, 50, 60]  # reports every 25 steps, then the final
        assert run["final"] == run["evals"]["val_acc"][-1]
    assert runs[1]["final"] > 0.9  # adam at 0.1 learns digits in 60 steps


def test_task_lightning_steps_the_lrkit_scheduler_every_step(tmp_path: Path) -> None:
    runs = compare_example(tmp_path, "task_lightning.py:digits_lightning", *GRID)
    for run in runs:
        # The lr of every update Lightning made (read by the optimizer's step hook)
        # is the schedule's: Lightning stepped the scheduler once per update.
        assert_follows_the_schedule(run)
        assert run["eval_steps"] == [25, 50, 60]  # the validation loop every 25 steps
    assert runs[1]["final"] > 0.9


def test_task_keras_optimizer_uses_the_schedule_to_float32(tmp_path: Path) -> None:
    runs = compare_example(tmp_path, "task_keras.py:digits_keras", *GRID)
    for run in runs:
        want = assert_follows_the_schedule(run)
        # What the Keras optimizer used at each update: to_keras's float32 values.
        steps, used = zip(*run["scalars"]["lr_used"], strict=True)
        assert list(steps) == list(range(run["steps"]))
        np.testing.assert_allclose(used, want, rtol=1e-6, atol=1e-9)
        assert run["eval_steps"] == [25, 50, 60]
    assert runs[1]["final"] > 0.9
