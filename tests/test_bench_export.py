"""Tests of lrkit.bench.export: a compare's runs as TensorBoard event files and a per-step CSV."""

from __future__ import annotations

import csv
import math
import struct
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lrkit.bench.export import run_folder, val_column, write_csv, write_tensorboard
from lrkit.bench.grid import expand_grid
from lrkit.bench.run import RunResult, execute


@pytest.fixture(scope="module")
def results() -> list[RunResult]:
    """Real runs: two lrs that finish and one that diverges, on an instant task."""
    configs = expand_grid(
        tasks=["quadratic"],
        optimizers=["sgd"],
        schedules=["cosine()"],
        lrs=[1e-3, 1e-1, 100.0],
        seeds=1,
        budget=0.2,
    )
    out = [execute(c) for c in configs]
    assert sorted(r.status for r in out) == ["diverged", "ok", "ok"]
    return out


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def test_tensorboard_has_each_runs_curves(results: list[RunResult], tmp_path: Path) -> None:
    assert write_tensorboard(results, tmp_path) == 3
    for result in results:
        folder = tmp_path / run_folder(result)
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        assert {"lr", "loss/train", "update_ratio"} <= tags
        assert {f"{name}/validation" for name in result.evals} <= tags
        lr = acc.Scalars("lr")
        assert [e.step for e in lr] == list(range(len(result.lr)))
        assert [e.value for e in lr] == [_f32(v) for v in result.lr]
        metric = acc.Scalars(f"{result.metric}/validation")
        assert [e.step for e in metric] == result.eval_steps
        for event, value in zip(metric, result.evals[result.metric], strict=True):
            assert event.value == _f32(value) or (math.isnan(value) and math.isnan(event.value))


def test_tensorboard_reexport_replaces_its_files(results: list[RunResult], tmp_path: Path) -> None:
    write_tensorboard(results, tmp_path)
    write_tensorboard(results, tmp_path)
    for result in results:
        files = list((tmp_path / run_folder(result)).glob("events.out.tfevents.*"))
        assert len(files) == 1


def test_run_folders_are_distinct_and_safe(results: list[RunResult]) -> None:
    folders = [run_folder(r) for r in results]
    assert len(set(folders)) == len(folders)
    for folder in folders:
        assert not folder.is_absolute() and ".." not in folder.parts
        assert all("(" not in part and " " not in part for part in folder.parts)


def test_csv_has_a_row_per_run_and_step(results: list[RunResult], tmp_path: Path) -> None:
    path = tmp_path / "deep" / "steps.csv"
    rows = write_csv(results, path)
    with path.open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == rows
    stops = {r.key: r.stopping_loss() for r in results}
    assert any(stops.values())  # a diverged run: the loss that stopped it is a row too
    expected = sum(
        len(
            set(range(len(r.lr)))
            | set(r.eval_steps)
            | set(r.ratio_steps)
            | ({stops[r.key][0]} if stops[r.key] else set())
        )
        for r in results
    )
    assert rows == expected
    for key, stop in stops.items():
        if stop is not None:
            (row,) = [x for x in table if x["key"] == key and x["step"] == str(stop[0])]
            assert row["loss"].lower() == str(stop[1]).lower()
    assert not path.with_name("steps.csv.partial").exists()
    for result in results:
        mine = [row for row in table if row["key"] == result.key]
        assert {row["status"] for row in mine} == {result.status}
        assert [float(row["lr"]) for row in mine if row["lr"]] == result.lr
        finals = [row for row in mine if row["step"] == str(result.eval_steps[-1])]
        (final,) = finals
        last = result.evals[result.metric][-1]
        cell = final[val_column(result.metric)]
        assert not val_column(result.metric).startswith("val_val_")
        assert (math.isnan(last) and cell.lower() == "nan") or float(cell) == last
        assert (
            mine[0]["schedule"] == "cosine()" and float(mine[0]["grid_lr"]) == result.config["lr"]
        )


def test_docs_compare_command_writes_csv_and_tensorboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/compare.md's small grid, exactly as written, then ``lrkit report`` rebuilds the logs."""
    import shlex

    from typer.testing import CliRunner

    from lrkit.cli import app

    page = (Path(__file__).parents[1] / "docs" / "compare.md").read_text(encoding="utf-8")
    (line,) = [x for x in page.splitlines() if x.startswith("lrkit compare --tasks quadratic")]
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    done = runner.invoke(app, shlex.split(line)[1:])
    assert done.exit_code == 0, done.output
    assert "wrote 64 TensorBoard runs under demo-tb" in done.output  # 2 tasks x 2 x 2 x 4 lrs x 2
    with (tmp_path / "demo-report" / "steps.csv").open(newline="", encoding="utf-8") as handle:
        first = list(csv.DictReader(handle))
    assert {row["task"] for row in first} == {"quadratic", "rosenbrock"}
    assert len({row["key"] for row in first}) == 64
    # Re-render from the store into a fresh place: the same rows, the same runs.
    again = runner.invoke(
        app,
        ["report", "demo-report/runs.sqlite", "--out", "again", "--csv", "--tensorboard", "tb2"],
    )
    assert again.exit_code == 0, again.output
    with (tmp_path / "again" / "steps.csv").open(newline="", encoding="utf-8") as handle:
        second = list(csv.DictReader(handle))
    key = lambda row: (row["key"], int(row["step"]))  # noqa: E731
    assert sorted(first, key=key) == sorted(second, key=key)
    assert len(list((tmp_path / "tb2").rglob("events.out.tfevents.*"))) == 64
