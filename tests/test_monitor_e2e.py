"""The Monitor examples end to end: a PyTorch loop, a Lightning fit and a Keras fit.

Each example (``examples/monitor_{torch,lightning,keras}.py``) trains a good
run and a bad one, logging to all four sinks. Here every sink is read back
with that tool's own reader (the ``csv`` module and
:func:`lrkit.monitor.read_record`; TensorBoard's ``EventAccumulator``;
``MlflowClient`` on the SQLite store; the offline W&B run's ``.wandb`` file,
read with W&B's own record protos), and the four must agree, tag by tag and
step by step; the verdicts must be ``ok`` and ``too_high``, every sink's
summary must carry them, and ``lrkit diagnose`` on the CSV file and on the
TensorBoard folder must say what the monitor said.

The examples run in this process (as ``tests/test_examples.py`` runs its
examples), each once for the whole file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import runpy
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from lrkit.cli import app
from lrkit.monitor import read_record
from wandb_files import QUIET, wandb_records

# MLflow and W&B start services (a SQLite store, W&B's wandb-core process):
# keep this file on one xdist worker, with test_sinks.py.
pytestmark = [
    pytest.mark.xdist_group("sinks"),
    pytest.mark.filterwarnings(
        "ignore:.*does not have many workers:UserWarning",
        "ignore:.*LeafSpec",
        "ignore:.*__array__ implementation.*:DeprecationWarning",
        "ignore:.*noload.*loader strategy is deprecated:DeprecationWarning",  # mlflow's
    ),
]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FRAMEWORKS = ("torch", "lightning", "keras")
RUNS = ("good", "too_high")
#: What every framework's monitor records, in the CSV's column order.
TAGS = ["lr/group0", "momentum/group0", "loss", "grad_norm", "update_ratio/group0"]
STEPS = {"torch": 300, "lightning": 300, "keras": 290}

Series = dict[str, list[tuple[int, object]]]


# --------------------------------------------------------------------------
# Running the examples (once each)
# --------------------------------------------------------------------------


@dataclass
class Example:
    framework: str
    out: Path
    result: dict[str, dict[str, Any]]
    printed: str
    warnings: list[str]


@pytest.fixture(scope="module")
def quiet_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """W&B without an account, a network or files outside the tmp folder (the examples
    ask for an offline run themselves); the variables the examples set by default are
    set here first, and all of it is undone afterwards."""
    home = tmp_path_factory.mktemp("wandb-home")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
            mp.setenv(name, str(home))
        settings = {
            **QUIET,
            "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax"),  # the example's default
        }
        for name, value in settings.items():
            mp.setenv(name, value)
        mp.delenv("WANDB_DIR", raising=False)  # the examples' dir= decides
        mp.delenv("WANDB_MODE", raising=False)  # and their mode="offline"
        mp.delenv("WANDB_API_KEY", raising=False)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module", params=FRAMEWORKS)
def example(
    request: pytest.FixtureRequest, quiet_env: None, tmp_path_factory: pytest.TempPathFactory
) -> Example:
    """``examples/monitor_<framework>.py``'s ``main(out)`` run in a tmp folder."""
    framework = request.param
    out = tmp_path_factory.mktemp(f"monitor-{framework}") / "monitor-out"
    handler = _Warnings()
    logger = logging.getLogger("lrkit.monitor")
    logger.addHandler(handler)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            namespace = runpy.run_path(str(EXAMPLES / f"monitor_{framework}.py"), run_name="ex")
            result = namespace["main"](out=str(out))
    finally:
        logger.removeHandler(handler)
    return Example(framework, out, result, printed.getvalue(), handler.messages)


# --------------------------------------------------------------------------
# Each tool's own reader
# --------------------------------------------------------------------------


def _plain(value: float) -> object:
    """NaN as "nan", so that == compares it."""
    return "nan" if math.isnan(value) else float(value)


def csv_series(path: Path) -> Series:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["step", *TAGS]
        out: Series = {tag: [] for tag in TAGS}
        for row in reader:
            for tag in TAGS:
                if row[tag] != "":
                    out[tag].append((int(row["step"]), _plain(float(row[tag]))))
    return out


def record_series(record: Any) -> Series:
    out: Series = {}
    for tag in record.tags:
        steps, values = record.series(tag)
        out[tag] = [(int(s), _plain(v)) for s, v in zip(steps, values, strict=True)]
    return out


def as_float32(series: Series) -> Series:
    """What a float32 store keeps of each value (beyond its range: inf)."""
    out: Series = {}
    for tag, points in series.items():
        values = np.array([math.nan if v == "nan" else v for _, v in points], dtype=np.float64)
        with np.errstate(over="ignore"):
            kept = values.astype(np.float32).astype(np.float64)
        out[tag] = [(s, _plain(v)) for (s, _), v in zip(points, kept.tolist(), strict=True)]
    return out


def tensorboard_series(folder: Path) -> Series:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (event_file,) = folder.iterdir()  # one event file per run
    accumulator = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: [(e.step, _plain(e.value)) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def mlflow_series(client: Any, run_id: str) -> Series:
    """The run's metrics but the summary's (``lrkit.*``); MLflow's SQL store keeps inf as
    the largest float: read back as inf."""
    names = [k for k in client.get_run(run_id).data.metrics if not k.startswith("lrkit.")]
    out: Series = {}
    for name in names:
        history = sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)
        out[name] = [(m.step, _plain(_inf(m.value))) for m in history]
    return out


def _inf(value: float) -> float:
    return math.copysign(math.inf, value) if abs(value) == sys.float_info.max else value


def wandb_run(path: Path) -> tuple[Series, dict[str, Any]]:
    """``(history, summary)`` of a finished offline run (waiting for its exit record:
    ``run.finish()`` returns before wandb-core has written it; 30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        history: Series = {}
        summary: dict[str, Any] = {}
        finished = False
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                items = {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
                step = int(items["_step"])
                for key, value in items.items():
                    if not key.startswith("_"):
                        history.setdefault(key, []).append((step, _plain(value)))
            elif kind == "summary":
                for item in record.summary.update:
                    summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            elif kind == "exit":
                finished = True
        if finished:
            return history, summary
        assert time.monotonic() < deadline, f"{path}: no exit record after 30 s"
        time.sleep(0.05)


def diagnose_cli(path: Path, *options: str) -> str:
    result = CliRunner().invoke(app, ["diagnose", str(path), *options])
    assert result.exit_code == 0, result.output
    return result.stdout


# --------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------


def test_the_good_run_is_ok_and_the_bad_one_too_high(example: Example) -> None:
    good, bad = example.result["good"], example.result["too_high"]
    assert (good["verdict"], good["advice"]) == ("ok", "")
    assert bad["verdict"] == "too_high"
    assert "cut the lr" in bad["advice"]
    # warned live, once, about the bad run only (plus Lightning's and Keras' final word)
    live = [m for m in example.warnings if m.startswith("lr looks")]
    assert len(live) == 1 and live[0].startswith("lr looks too high"), example.warnings
    assert all("too high" in m or "too_high" in m for m in example.warnings)


def test_it_prints_each_diagnosis_and_where_to_look(example: Example) -> None:
    out, printed = example.out, example.printed
    for run, found in example.result.items():
        assert f"\n{run} (" in printed and f"): {found['verdict']}\n" in printed
        assert f"  evidence: {found['evidence']}\n" in printed
        assert (f"  advice:   {found['advice']}\n" in printed) == bool(found["advice"])
        assert f"lrkit diagnose {out / run}.csv --out {out / run}" in printed
    assert f"tensorboard --logdir {out / 'tb'}" in printed
    assert f"mlflow ui --backend-store-uri sqlite:///{out / 'mlflow.db'}" in printed
    assert f"wandb sync {out / 'wandb'}/offline-run-*" in printed


@pytest.mark.parametrize("run", RUNS)
def test_the_four_sinks_agree_step_by_step(example: Example, run: str) -> None:
    from mlflow.tracking import MlflowClient

    out = example.out
    want = csv_series(out / f"{run}.csv")
    steps = STEPS[example.framework]
    assert [s for s, _ in want["lr/group0"]] == list(range(steps))
    assert [s for s, _ in want["loss"]] == list(range(steps))
    for tag in TAGS:
        assert want[tag], tag  # every tag recorded, grad_norm included

    assert record_series(read_record(out / f"{run}.csv")) == want
    assert tensorboard_series(out / "tb" / run) == as_float32(want)

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    run_id = example.result[run]["mlflow_run_id"]
    info = client.get_run(run_id).info
    assert (info.run_name, info.status) == (run, "FINISHED")
    assert mlflow_series(client, run_id) == want

    wandb_file = Path(example.result[run]["wandb_file"])
    assert wandb_file in (out / "wandb").glob("offline-run-*/run-*.wandb")  # what it prints
    history, _ = wandb_run(wandb_file)
    assert history == want


@pytest.mark.parametrize("run", RUNS)
def test_every_sink_keeps_the_verdict(example: Example, run: str) -> None:
    from mlflow.tracking import MlflowClient

    found = example.result[run]
    keys = ("verdict", "evidence", "advice")
    summary = json.loads((example.out / f"{run}.csv.summary.json").read_text())
    assert {k: summary[k] for k in keys} == {k: found[k] for k in keys}

    client = MlflowClient(tracking_uri=f"sqlite:///{example.out / 'mlflow.db'}")
    tags = client.get_run(found["mlflow_run_id"]).data.tags
    assert {k: tags.get(f"lrkit.{k}") for k in keys} == {k: found[k] for k in keys}

    _, wandb_summary = wandb_run(Path(found["wandb_file"]))
    assert {k: wandb_summary.get(f"lrkit.{k}") for k in keys} == {k: found[k] for k in keys}


@pytest.mark.parametrize("run", RUNS)
def test_lrkit_diagnose_says_what_the_monitor_said(example: Example, run: str) -> None:
    found = example.result[run]
    from_csv = diagnose_cli(example.out / f"{run}.csv", "--out", str(example.out / run))
    # the CSV keeps every value exactly: the very same diagnosis
    assert from_csv.startswith(f"verdict:  {found['verdict']}\nevidence: {found['evidence']}\n")
    written = json.loads((example.out / run / "diagnosis.json").read_text())
    assert (written["verdict"], written["evidence"]) == (found["verdict"], found["evidence"])
    assert (example.out / run / "diagnosis.png").stat().st_size > 1000
    # TensorBoard keeps float32: the same verdict
    from_tensorboard = diagnose_cli(example.out / "tb" / run)
    assert from_tensorboard.startswith(f"verdict:  {found['verdict']}\n")
