"""Tests of lrkit.sinks: each sink's output read back with that tool's own reader.

CSV: the ``csv`` module and :func:`lrkit.monitor.read_record`; TensorBoard:
TensorBoard's ``EventAccumulator``; MLflow: ``MlflowClient`` on a local SQLite
store; W&B: an offline run's ``.wandb`` file, read with W&B's own record protos
(wandb 0.31 has no Python reader of its own left: the framing, LevelDB's log
format, is read here).
"""

from __future__ import annotations

import csv
import json
import math
import struct
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lrkit.monitor import Record, Recorder, Sink, read_record
from lrkit.sinks import CSV, MLflow, TensorBoard, WandB
from wandb_files import QUIET, wandb_records

# MLflow and W&B start services (a SQLite store, W&B's wandb-core process):
# keep this file on one xdist worker.
pytestmark = pytest.mark.xdist_group("sinks")

STEPS = 40
NAN_STEP = 17
INF_STEP = 18
NEW_GROUP_STEP = 25

SUMMARY = {
    "verdict": "too_high",
    "evidence": "the loss was NaN at step 17",
    "advice": "cut the lr x0.3",
    "optimizer_state_copies": 2,
}

Rows = list[tuple[int, dict[str, float]]]


def _run() -> Rows:
    """A realistic record: two groups (a third from step 25), update ratios every 5th step,
    a NaN loss at step 17 and an infinite gradient norm at step 18."""
    rows = []
    for step in range(STEPS):
        scalars = {
            "lr/group0": 0.1 * (1 - step / STEPS),
            "lr/group1": 0.01 * (1 - step / STEPS),
            "momentum/group0": 0.9,
            "momentum/group1": 0.95,
            "loss": 2.0 / (1 + step / 10),
            "grad_norm": 1.0 + 0.01 * step,
        }
        if step % 5 == 0:
            scalars["update_ratio/group0"] = 1e-3 * (1 + step / 10)
            scalars["update_ratio/group1"] = 3e-4 * (1 + step / 10)
        if step == NAN_STEP:
            scalars["loss"] = math.nan
        if step == INF_STEP:
            scalars["grad_norm"] = math.inf
        if step >= NEW_GROUP_STEP:
            scalars["lr/group2"] = 0.05
            scalars["momentum/group2"] = 0.8
        rows.append((step, scalars))
    return rows


def _series(rows: Rows, float32: bool = False) -> dict[str, list[tuple[int, object]]]:
    """``{tag: [(step, value)]}``, NaN as "nan" (so that == compares it)."""
    out: dict[str, list[tuple[int, object]]] = {}
    for step, scalars in rows:
        for tag, value in scalars.items():
            if float32:
                value = struct.unpack("<f", struct.pack("<f", value))[0]
            out.setdefault(tag, []).append((step, "nan" if math.isnan(value) else value))
    return out


def _record_series(record: Record) -> dict[str, list[tuple[int, object]]]:
    out = {}
    for tag in record.tags:
        steps, values = record.series(tag)
        out[tag] = [
            (int(s), "nan" if math.isnan(v) else float(v))
            for s, v in zip(steps, values, strict=True)
        ]
    return out


ALL_TAGS = [
    "lr/group0",
    "lr/group1",
    "lr/group2",
    "momentum/group0",
    "momentum/group1",
    "momentum/group2",
    "loss",
    "grad_norm",
    "update_ratio/group0",
    "update_ratio/group1",
]


# --------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------


def test_csv_reads_back_with_the_csv_module_and_read_record(tmp_path: Path) -> None:
    rows = _run()
    path = tmp_path / "runs" / "a" / "monitor.csv"  # folders created
    sink = CSV(path)
    for step, scalars in rows:
        sink.write(step, scalars)
    sink.close(SUMMARY)

    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["step", *ALL_TAGS]  # the wider header, in its order
        lines = list(reader)
    assert [int(line["step"]) for line in lines] == list(range(STEPS))
    for (step, scalars), line in zip(rows, lines, strict=True):
        for tag in ALL_TAGS:
            if tag in scalars:
                want = scalars[tag]
                got = float(line[tag])
                assert got == want or (math.isnan(got) and math.isnan(want)), (step, tag)
            else:
                assert line[tag] == "", (step, tag)  # empty where not measured
    assert lines[NAN_STEP]["loss"] == "nan" and lines[INF_STEP]["grad_norm"] == "inf"
    assert lines[NEW_GROUP_STEP - 1]["lr/group2"] == ""

    assert _record_series(read_record(path)) == _series(rows)
    summary = json.loads(sink.summary_path.read_text())
    assert sink.summary_path.name == "monitor.csv.summary.json"
    assert summary == SUMMARY


def test_csv_is_readable_while_the_run_goes(tmp_path: Path) -> None:
    rows = _run()
    path = tmp_path / "monitor.csv"
    sink = CSV(path, flush_every=10, flush_seconds=3600)
    for step, scalars in rows[:12]:
        sink.write(step, scalars)
    assert read_record(path).last_step == 9  # the first ten rows were flushed, whole
    for step, scalars in rows[12 : NEW_GROUP_STEP + 1]:  # the new group widens the file
        sink.write(step, scalars)
    partial = read_record(path)
    assert partial.last_step == NEW_GROUP_STEP - 1 and "lr/group2" not in partial
    sink.flush()
    partial = read_record(path)
    assert partial.last_step == NEW_GROUP_STEP
    assert _record_series(partial) == _series(rows[: NEW_GROUP_STEP + 1])
    assert not list(tmp_path.glob("*.partial"))  # the rewrite left nothing behind
    sink.close()
    assert not sink.summary_path.exists()  # no summary given, none written


def test_csv_flushes_by_time_and_at_exit(tmp_path: Path) -> None:
    sink = CSV(tmp_path / "timed.csv", flush_every=1000, flush_seconds=0)
    sink.write(0, {"loss": 1.0})
    assert read_record(sink.path).series("loss")[1].tolist() == [1.0]

    forgotten = CSV(tmp_path / "forgotten.csv", flush_every=1000, flush_seconds=3600)
    forgotten.write(0, {"loss": 2.0})
    forgotten.write(1, {"loss": 3.0})
    path = forgotten.path
    del forgotten  # never closed: its rows are written when it is collected
    import gc

    gc.collect()
    assert read_record(path).series("loss")[1].tolist() == [2.0, 3.0]


def test_csv_column_order_and_edge_cases(tmp_path: Path) -> None:
    sink = CSV(tmp_path / "order.csv")
    sink.write(2, {"loss": None})  # a row with nothing but its step
    sink.write(3, {"zeta": 1.0, "lr/group10": 0.1, "lr/group2": 0.2, "loss": 1, "acc/group1": 0.5})
    sink.write(4, {"loss": None, "grad_norm": 2.0})  # None left out; a new column
    sink.close()
    with sink.path.open(newline="") as f:
        lines = list(csv.reader(f))
    assert lines == [
        ["step", "lr/group2", "lr/group10", "loss", "grad_norm", "acc/group1", "zeta"],
        ["2", "", "", "", "", "", ""],
        ["3", "0.2", "0.1", "1.0", "", "0.5", "1.0"],
        ["4", "", "", "", "2.0", "", ""],
    ]
    empty = CSV(tmp_path / "empty.csv")
    empty.close()
    assert empty.path.read_text() == "step\n"
    assert read_record(empty.path).tags == []


def test_csv_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="flush_every must be an integer >= 1, got 0"):
        CSV(tmp_path / "x.csv", flush_every=0)
    with pytest.raises(ValueError, match="flush_seconds must be a number >= 0, got -1"):
        CSV(tmp_path / "x.csv", flush_seconds=-1)
    sink = CSV(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="step must be an integer >= 0, got -1"):
        sink.write(-1, {"loss": 1.0})
    with pytest.raises(ValueError, match=r"step must be an integer >= 0, got 1\.5"):
        sink.write(1.5, {"loss": 1.0})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'loss' must be a number, got 'high'"):
        sink.write(0, {"loss": "high"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="may not be named 'step'"):
        sink.write(0, {"step": 1.0})


@pytest.mark.parametrize("kind", ["csv", "tensorboard"])
def test_write_after_close_close_twice_and_repr(tmp_path: Path, kind: str) -> None:
    sink: CSV | TensorBoard = CSV(tmp_path / "r.csv") if kind == "csv" else TensorBoard(tmp_path)
    assert isinstance(sink, Sink)
    shown = repr(sink)
    assert shown.startswith(f"{type(sink).__name__}(") and str(tmp_path) in shown
    sink.write(0, {"loss": 1.0})
    sink.close(SUMMARY)
    sink.close(SUMMARY)  # idempotent
    sink.flush()  # nothing left to flush
    assert sink.closed and repr(sink).endswith(", closed)")
    with pytest.raises(RuntimeError, match=r"write\(\) after close\(\)"):
        sink.write(1, {"loss": 0.5})
    assert read_record(tmp_path / "r.csv" if kind == "csv" else tmp_path).last_step == 0


# --------------------------------------------------------------------------
# TensorBoard
# --------------------------------------------------------------------------


def test_tensorboard_reads_back_with_event_accumulator(tmp_path: Path) -> None:
    rows = _run()
    with TensorBoard(tmp_path / "tb", flush_every=7) as sink:
        for step, scalars in rows:
            sink.write(step, scalars)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == sorted(ALL_TAGS)
    want = _series(rows, float32=True)
    got = {
        tag: [(e.step, "nan" if math.isnan(e.value) else e.value) for e in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
    }
    assert got == want
    assert [s for s, _ in got["update_ratio/group0"]] == list(range(0, STEPS, 5))
    assert _record_series(read_record(tmp_path / "tb")) == want
    assert sink.path.parent == tmp_path / "tb"


def test_tensorboard_flushes_by_time(tmp_path: Path) -> None:
    sink = TensorBoard(tmp_path, flush_every=1000, flush_seconds=0)
    sink.write(0, {"loss": 1.5})
    assert read_record(tmp_path).series("loss")[1].tolist() == [1.5]  # before close
    sink.close()


# --------------------------------------------------------------------------
# MLflow
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One local SQLite store for this file's MLflow tests (no server)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _mlflow_series(client: Any, run_id: str, tags: list[str]) -> dict[str, list]:
    out = {}
    for tag in tags:
        history = sorted(client.get_metric_history(run_id, tag), key=lambda m: m.step)
        out[tag] = [(m.step, "nan" if math.isnan(m.value) else m.value) for m in history]
    return out


def test_mlflow_starts_its_own_run_and_logs_in_batches(mlflow_uri: str) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    rows = _run()
    sink = MLflow(tracking_uri=mlflow_uri, run_name="lrkit-sinks", flush_every=10)
    assert sink.owns_run and mlflow.active_run() is None  # not made the active run
    client = MlflowClient(tracking_uri=mlflow_uri)
    for step, scalars in rows[:15]:
        sink.write(step, scalars)
    assert len(client.get_metric_history(sink.run_id, "loss")) == 10  # one batch sent
    for step, scalars in rows[15:]:
        sink.write(step, scalars)
    sink.close(SUMMARY)
    sink.close(SUMMARY)

    run = client.get_run(sink.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "lrkit-sinks"
    want = _series(rows)
    want["grad_norm"][INF_STEP] = (INF_STEP, sys.float_info.max)  # MLflow's SQL store: inf
    assert _mlflow_series(client, sink.run_id, ALL_TAGS) == want
    assert want["loss"][NAN_STEP] == (NAN_STEP, "nan")  # NaN kept
    tags = run.data.tags
    assert tags["lrkit.verdict"] == "too_high"
    assert tags["lrkit.evidence"] == SUMMARY["evidence"]
    assert tags["lrkit.advice"] == SUMMARY["advice"]
    (copies,) = client.get_metric_history(sink.run_id, "lrkit.optimizer_state_copies")
    assert (copies.value, copies.step) == (2.0, STEPS - 1)
    assert repr(sink) == f"MLflow(run_id={sink.run_id!r}, closed)"
    with pytest.raises(RuntimeError, match="after close"):
        sink.write(STEPS, {"loss": 1.0})


def test_mlflow_logs_into_the_active_run_and_leaves_it_running(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    client = MlflowClient(tracking_uri=mlflow_uri)
    with mlflow.start_run(run_name="mine") as run:
        with pytest.raises(ValueError, match="a run is active"):
            MLflow(tracking_uri=mlflow_uri)
        with pytest.raises(ValueError, match="run_name='x' must be left out"):
            MLflow(run_name="x")
        sink = MLflow()
        assert sink.run_id == run.info.run_id and not sink.owns_run
        sink.write(0, {"loss": 1.0, "lr/group0": 0.1})
        sink.write(1, {"loss": 0.5, "lr/group0": 0.1})
        sink.close({"verdict": "ok", "evidence": "e", "advice": "a" * 9000})
        assert mlflow.active_run() is not None
        assert client.get_run(run.info.run_id).info.status == "RUNNING"
        mlflow.log_metric("mine", 3.0, step=2)  # the run is still the user's to use
    finished = client.get_run(run.info.run_id)
    assert finished.info.status == "FINISHED"
    assert _mlflow_series(client, run.info.run_id, ["loss", "mine"]) == {
        "loss": [(0, 1.0), (1, 0.5)],
        "mine": [(2, 3.0)],
    }
    advice = finished.data.tags["lrkit.advice"]
    assert len(advice) == 8000 and advice.endswith("...")  # MLflow's longest tag value


def test_missing_extras_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match=r"MLflow needs mlflow: pip install 'lrkit\[monitor\]'"):
        MLflow()
    with pytest.raises(ImportError, match=r"WandB needs wandb: pip install 'lrkit\[monitor\]'"):
        WandB(mode="offline")


# --------------------------------------------------------------------------
# Weights & Biases
# --------------------------------------------------------------------------


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B without an account, a network or files outside ``tmp_path``."""
    folder = tmp_path / "wandb-home"
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(folder))
    settings = {"WANDB_MODE": "offline", **QUIET}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    folder.mkdir()
    return folder


def _wandb_run(path: Path) -> tuple[dict[str, list[tuple[int, object]]], dict[str, Any]]:
    """``(history {key: [(step, value)]}, final summary)`` of a finished offline run.

    ``run.finish()`` returns before wandb-core has written the run's last
    records (its ``exit`` record last): wait for them, 30 s at most.
    """
    deadline = time.monotonic() + 30
    while True:
        history, summary, finished = _wandb_records_read(path)
        if finished:
            return history, summary
        assert time.monotonic() < deadline, f"{path}: no exit record after 30 s"
        time.sleep(0.05)


def _wandb_records_read(
    path: Path,
) -> tuple[dict[str, list[tuple[int, object]]], dict[str, Any], bool]:
    history: dict[str, list[tuple[int, object]]] = {}
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
            assert step == record.history.step.num
            for key, value in items.items():
                if not key.startswith("_"):
                    history.setdefault(key, []).append(
                        (step, "nan" if isinstance(value, float) and math.isnan(value) else value)
                    )
        elif kind == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "exit":
            finished = True
    return history, summary, finished


def test_wandb_offline_run_reads_back(wandb_offline: Path) -> None:
    import wandb

    rows = _run()
    sink = WandB(project="lrkit-sinks", mode="offline", dir=wandb_offline / "runs")
    assert sink.owns_run and wandb.run is sink.run
    for step, scalars in rows:
        sink.write(step, scalars)
    sink.close(SUMMARY)
    sink.close(SUMMARY)
    assert wandb.run is None  # finished
    path = Path(sink.run.settings.sync_file)
    assert path.is_file() and (wandb_offline / "runs") in path.parents
    history, summary = _wandb_run(path)
    assert history == _series(rows)
    assert history["loss"][NAN_STEP] == (NAN_STEP, "nan")
    assert history["grad_norm"][INF_STEP] == (INF_STEP, math.inf)
    for key, value in SUMMARY.items():
        assert summary[f"lrkit.{key}"] == value
    assert summary["loss"] == rows[-1][1]["loss"]  # W&B's own: the last values
    assert repr(sink) == f"WandB(run={sink.run.id!r}, closed)"
    with pytest.raises(RuntimeError, match="after close"):
        sink.write(STEPS, {"loss": 1.0})


def test_wandb_logs_into_the_active_run_and_leaves_it_running(wandb_offline: Path) -> None:
    import wandb

    run = wandb.init(project="lrkit-sinks", mode="offline", dir=str(wandb_offline))
    try:
        with pytest.raises(ValueError, match="a W&B run is active"):
            WandB(mode="offline")
        sink = WandB()
        assert sink.run is run and not sink.owns_run
        sink.write(0, {"loss": 1.0})
        sink.write(1, {"loss": 0.5, "lr/group0": 0.1})
        sink.close({"verdict": "ok"})
        assert wandb.run is run  # not finished: it is the user's
        run.log({"mine": 3.0}, step=2)
    finally:
        run.finish()
    history, summary = _wandb_run(Path(run.settings.sync_file))
    assert history == {"loss": [(0, 1.0), (1, 0.5)], "lr/group0": [(1, 0.1)], "mine": [(2, 3.0)]}
    assert summary["lrkit.verdict"] == "ok"


# --------------------------------------------------------------------------
# Through the monitors' recorder
# --------------------------------------------------------------------------


def test_recorder_writes_every_sink_end_to_end(
    tmp_path: Path, mlflow_uri: str, wandb_offline: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow.tracking import MlflowClient

    rows = _run()
    sinks = [
        CSV(tmp_path / "monitor.csv"),
        TensorBoard(tmp_path / "tb"),
        MLflow(tracking_uri=mlflow_uri, run_name="recorder"),
        WandB(mode="offline", dir=wandb_offline),
    ]
    recorder = Recorder(sinks)
    recorder.summary["optimizer_state_copies"] = 2
    with caplog.at_level("WARNING", logger="lrkit.monitor"):
        for step, scalars in rows:
            recorder.add(step, scalars)
    assert "too high" in caplog.text or "too_high" in caplog.text  # the NaN, seen live
    found = recorder.close()
    assert found.verdict == "too_high"
    assert all(sink.closed for sink in sinks)

    want = _series(rows)
    assert _record_series(recorder.record) == want
    assert _record_series(read_record(tmp_path / "monitor.csv")) == want
    assert json.loads((tmp_path / "monitor.csv.summary.json").read_text())["verdict"] == "too_high"
    assert _record_series(read_record(tmp_path / "tb")) == _series(rows, float32=True)

    client = MlflowClient(tracking_uri=mlflow_uri)
    mlflow_sink = sinks[2]
    assert isinstance(mlflow_sink, MLflow)
    run = client.get_run(mlflow_sink.run_id)
    assert run.data.tags["lrkit.verdict"] == "too_high"
    assert run.data.tags["lrkit.evidence"] == found.evidence
    assert _mlflow_series(client, mlflow_sink.run_id, ["loss"])["loss"] == want["loss"]

    wandb_sink = sinks[3]
    assert isinstance(wandb_sink, WandB)
    history, summary = _wandb_run(Path(wandb_sink.run.settings.sync_file))
    assert history == want
    assert summary["lrkit.verdict"] == "too_high"
    assert summary["lrkit.advice"] == found.advice
    assert summary["lrkit.optimizer_state_copies"] == 2
