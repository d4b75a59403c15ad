"""``lrkit diagnose PATH [--out DIR]``: every verdict, the errors, the plot, every input format.

Inputs: a Monitor CSV (``lrkit.sinks.CSV``'s layout, written here with the
``csv`` module), a TensorBoard folder written by ``lrkit.sinks.TensorBoard``,
one written by torch's ``SummaryWriter`` with the tags ``loss`` and ``lr``,
and ``lrkit compare``'s own TensorBoard export (``loss/train``, ``lr``,
``update_ratio``). The command prints what :func:`lrkit.diagnosis.diagnose`
finds in :func:`lrkit.monitor.read_record`'s record: the tests hold it to that.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lrkit.cli import app
from lrkit.diagnosis import Diagnosis, diagnose
from lrkit.monitor import Record, read_record

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LRKIT = str(Path(sys.executable).with_name("lrkit"))

T = np.arange(200)
COSINE = 0.1 * 0.5 * (1 + np.cos(np.pi * T / 200))
CONSTANT = np.full(200, 0.1)


def invoke(*args: str):
    return runner.invoke(app, ["diagnose", *args])


def printed(found: Diagnosis) -> str:
    """What the command prints for ``found``."""
    text = f"verdict:  {found.verdict}\nevidence: {found.evidence}\n"
    return text + (f"advice:   {found.advice}\n" if found.advice else "")


def healthy_loss() -> np.ndarray:
    return 2.0 / (1 + T / 10) * (1 + 0.05 * np.random.default_rng(0).standard_normal(200))


def plateau_loss() -> np.ndarray:
    """Down from 2 to 0.5 in 45 steps, then flat (noise 0.02)."""
    noise = 0.02 * np.random.default_rng(1).standard_normal(200)
    return np.maximum(2.0 - T / 30, 0.5) + noise


def write_csv(path: Path, loss: np.ndarray, lr: np.ndarray | None = None) -> Path:
    """A Monitor CSV: ``step``, ``lr/group0`` (if given), ``loss``; NaN as ``nan``."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", *(["lr/group0"] if lr is not None else []), "loss"])
        for t in T:
            writer.writerow([t, *([lr[t]] if lr is not None else []), loss[t]])
    return path


def nan_loss() -> np.ndarray:
    loss = healthy_loss()
    loss[150:] = np.nan
    return loss


def blowup_loss() -> np.ndarray:
    loss = healthy_loss()
    loss[120:] *= np.linspace(1, 50, 80)  # the lr became too high at step 120
    return loss


def flat_loss() -> np.ndarray:
    return 2.3 + 0.001 * np.random.default_rng(2).standard_normal(200)


CASES = {
    "healthy": (healthy_loss, COSINE, "ok", "the loss went from"),
    "nan": (nan_loss, COSINE, "too_high", "the loss is nan at step 150"),
    "blowup": (blowup_loss, CONSTANT, "too_high", "the loss rose from"),
    "flat": (flat_loss, np.full(200, 1e-5), "too_low", "the loss hardly moved"),
    "plateau": (plateau_loss, CONSTANT, "plateau", "has not improved over the last 50%"),
}


# --------------------------------------------------------------------------
# Every verdict exits 0
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_each_verdict_is_printed_with_its_evidence_and_exits_0(tmp_path: Path, case: str) -> None:
    make_loss, lr, verdict, evidence = CASES[case]
    path = write_csv(tmp_path / f"{case}.csv", make_loss(), lr)
    result = invoke(str(path))
    assert result.exit_code == 0, result.output
    found = diagnose(read_record(path))
    assert found.verdict == verdict and evidence in found.evidence
    assert result.stdout == printed(found)
    assert ("advice:" in result.stdout) == (verdict != "ok")


# --------------------------------------------------------------------------
# PATH cannot be read: exit 2, one line on stderr
# --------------------------------------------------------------------------


def _unreadable(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "empty").mkdir()
    no_step = tmp_path / "no_step.csv"
    no_step.write_text("epoch,loss\n0,2.0\n1,1.5\n")
    no_loss = tmp_path / "no_loss.csv"
    no_loss.write_text("step,lr/group0,grad_norm\n0,0.1,1.0\n1,0.1,0.9\n")
    bad_cell = tmp_path / "bad_cell.csv"
    bad_cell.write_text("step,loss\n0,2.0\n1,oops\n")
    huge = tmp_path / "huge_field.csv"
    huge.write_text("step,loss\n0," + "x" * 200_000 + "\n")
    return {
        "missing": (tmp_path / "nowhere.csv", "no such file or directory"),
        "empty folder": (tmp_path / "empty", "no TensorBoard scalars found"),
        "no step": (no_step, "not a Monitor CSV (no 'step' column in its header)"),
        "no loss": (no_loss, "no 'loss' values in it (tags found: grad_norm, lr/group0)"),
        "bad cell": (bad_cell, "line 3: could not convert string to float: 'oops'"),
        "huge field": (huge, "line 1: field larger than field limit"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "empty folder", "no step", "no loss", "bad cell", "huge field"]
)
def test_a_path_that_cannot_be_read_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    path, reason = _unreadable(tmp_path)[case]
    result = invoke(str(path))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: cannot read {str(path)!r}: ")
    assert reason in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback


def test_the_real_script_exits_2_without_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [LRKIT, "diagnose", str(tmp_path / "nowhere.csv")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("Error: cannot read ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------
# --out DIR: the plot and the JSON
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["blowup", "healthy"])
def test_out_writes_the_plot_and_the_json(tmp_path: Path, case: str) -> None:
    import matplotlib.image

    make_loss, lr, verdict, _ = CASES[case]
    path = write_csv(tmp_path / "run.csv", make_loss(), lr)
    out = tmp_path / "deep" / "diagnosis"  # folders created
    result = invoke(str(path), "--out", str(out))
    assert result.exit_code == 0, result.output
    png, doc = out / "diagnosis.png", out / "diagnosis.json"
    assert result.stdout.endswith(f"wrote {png} and {doc}\n")

    assert png.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(png)
    height, width = image.shape[:2]
    assert 300 <= width <= 4000 and 200 <= height <= 4000, image.shape
    assert image[..., :3].std() > 0.01  # something drawn

    found = diagnose(read_record(path))
    written = json.loads(doc.read_text())
    assert written["path"] == str(path)
    assert (written["verdict"], written["evidence"], written["advice"]) == (
        verdict,
        found.evidence,
        found.advice,
    )
    if verdict == "ok":
        assert written["stretch"] is None
    else:  # the bad stretch: where the loss left its best, to the end
        first, last = written["stretch"]
        assert 100 <= first <= 150 and last == 199
        assert [first, last] == list(found.stretch or ())


def test_out_that_cannot_be_written_exits_1(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "run.csv", healthy_loss(), COSINE)
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way\n")
    result = invoke(str(path), "--out", str(blocker))
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("verdict:  ok\n")  # the verdict came first
    assert result.stderr.startswith(f"Error: cannot write into {str(blocker)!r}")
    assert result.stderr.count("\n") == 1


# --------------------------------------------------------------------------
# TensorBoard folders
# --------------------------------------------------------------------------


def test_a_folder_written_by_the_tensorboard_sink(tmp_path: Path) -> None:
    from lrkit.sinks import CSV, TensorBoard

    loss = nan_loss()
    with CSV(tmp_path / "run.csv") as as_csv, TensorBoard(tmp_path / "tb") as as_tb:
        for t in T:
            scalars = {"lr/group0": COSINE[t], "loss": loss[t], "update_ratio/group0": 1e-3}
            as_csv.write(int(t), scalars)
            as_tb.write(int(t), scalars)
    from_tb, from_csv = invoke(str(tmp_path / "tb")), invoke(str(tmp_path / "run.csv"))
    assert from_tb.exit_code == 0, from_tb.output
    assert from_tb.stdout == from_csv.stdout == printed(diagnose(read_record(tmp_path / "tb")))
    assert from_tb.stdout.startswith("verdict:  too_high\nevidence: the loss is nan at step 150\n")
    # the event file itself works too
    (event_file,) = (tmp_path / "tb").iterdir()
    assert invoke(str(event_file)).stdout == from_tb.stdout


def test_a_folder_written_by_torch_summary_writer_reads_lr_as_group0(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    loss = plateau_loss()
    writer = SummaryWriter(str(tmp_path / "tb"))
    for t in T:
        writer.add_scalar("loss", loss[t], int(t))
        writer.add_scalar("lr", COSINE[t], int(t))
    writer.close()
    result = invoke(str(tmp_path / "tb"))
    assert result.exit_code == 0, result.output

    record = read_record(tmp_path / "tb")
    assert record.tags == ["loss", "lr"]
    as_monitor = Record.from_rows(
        (step, {"loss": values["loss"], "lr/group0": values["lr"]})
        for step, values in record.rows()
    )
    # The lr decayed while the loss stood still: converged (ok), not a plateau at a
    # kept lr, which is what the loss alone would say.
    assert result.stdout == printed(diagnose(as_monitor))
    assert result.stdout.startswith("verdict:  ok\n")
    loss_only = Record.from_rows((step, {"loss": v["loss"]}) for step, v in record.rows())
    assert diagnose(loss_only).verdict == "plateau"


@pytest.mark.parametrize(("loss_tag", "lr_tag"), [("train/loss", "train/lr"), ("Loss/train", "lr")])
def test_a_hand_written_summary_writer_loops_tags_are_read(
    tmp_path: Path, loss_tag: str, lr_tag: str
) -> None:
    from torch.utils.tensorboard import SummaryWriter

    loss = plateau_loss()
    writer = SummaryWriter(str(tmp_path / "tb"))
    for t in T:
        writer.add_scalar(loss_tag, loss[t], int(t))
        writer.add_scalar(lr_tag, COSINE[t], int(t))
    writer.close()
    result = invoke(str(tmp_path / "tb"))
    assert result.exit_code == 0, result.output
    as_monitor = Record.from_rows(
        (int(t), {"loss": float(loss[t]), "lr/group0": float(COSINE[t])}) for t in T
    )
    assert result.stdout == printed(diagnose(as_monitor))  # the lr read too: ok, not plateau


@pytest.fixture(scope="module")
def compare_export(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Diagnosis]]:
    """``lrkit compare``'s TensorBoard export (tags loss/train, lr, update_ratio) of three
    real runs on the instant quadratic task: an lr too low, a good one, one that diverges;
    each run's folder and compare's own diagnosis of it."""
    from lrkit.bench.export import run_folder, write_tensorboard
    from lrkit.bench.grid import expand_grid
    from lrkit.bench.run import execute

    configs = expand_grid(
        tasks=["quadratic"],
        optimizers=["sgd"],
        schedules=["cosine()"],
        lrs=[1e-3, 1e-1, 100.0],
        seeds=1,
        budget=0.2,
    )
    results = [execute(c) for c in configs]
    assert [r.status for r in results] == ["ok", "ok", "diverged"]
    folder = tmp_path_factory.mktemp("compare-tb")
    assert write_tensorboard(results, folder) == 3
    return [(folder / run_folder(r), diagnose(r.record())) for r in results]


def test_lrkit_compare_tensorboard_export_of_finished_runs(
    compare_export: list[tuple[Path, Diagnosis]],
) -> None:
    verdicts = []
    for folder, found in compare_export[:2]:
        assert {"loss/train", "lr", "update_ratio"} <= set(read_record(folder).tags)
        done = invoke(str(folder))
        assert done.exit_code == 0, done.output
        verdict = done.stdout.splitlines()[0].removeprefix("verdict:  ")
        assert verdict == found.verdict  # compare's own diagnosis
        verdicts.append(verdict)
    assert verdicts == ["too_low", "ok"]


def test_lrkit_compare_tensorboard_export_of_a_diverged_run(
    compare_export: list[tuple[Path, Diagnosis]],
) -> None:
    folder, found = compare_export[2]
    assert found.verdict == "too_high"  # compare's own: the loss was inf at step 10
    done = invoke(str(folder))
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("verdict:  too_high\n")


def test_a_lightning_tensorboard_log_with_its_learning_rate_monitor(tmp_path: Path) -> None:
    """Lightning's own logger: 'train_loss' from self.log, 'lr-RMSprop' from LearningRateMonitor."""
    import logging
    import warnings

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import LearningRateMonitor
    from torch import nn

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    class Regression(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))

        def training_step(self, batch, index):
            x, y = batch
            loss = ((self.net(x) - y) ** 2).mean()
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            opt = torch.optim.RMSprop(self.parameters(), lr=3e-3)
            decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 120)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": decay, "interval": "step"}}

    torch.manual_seed(0)
    x = torch.randn(1024, 4)
    data = torch.utils.data.TensorDataset(x, x[:, :2].sum(1, keepdim=True))
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True)
    trainer = L.Trainer(
        max_steps=120,
        log_every_n_steps=1,
        callbacks=[LearningRateMonitor("step")],
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Regression(), loader)
    run = tmp_path / "lightning_logs" / "version_0"
    record = read_record(run)
    assert {"train_loss", "lr-RMSprop"} <= set(record.tags)
    done = invoke(str(run), "--out", str(tmp_path / "out"))
    assert done.exit_code == 0, done.output
    as_monitor = Record.from_rows(
        (step, {"loss": v.get("train_loss"), "lr/group0": v.get("lr-RMSprop")})
        for step, v in record.rows()
    )
    assert done.stdout.startswith(printed(diagnose(as_monitor)))
    shown = json.loads((tmp_path / "out" / "diagnosis.json").read_text())
    assert shown["verdict"] == diagnose(as_monitor).verdict
    # the lr tag was read: the cumulative-lr rule had an lr to measure (without one: None)
    assert shown["numbers"]["late_share"] is not None
    loss_only = Record.from_rows((step, {"loss": v.get("train_loss")}) for step, v in record.rows())
    assert math.isnan(diagnose(loss_only).numbers["late_share"])


def test_a_monitor_csv_under_another_name_is_read_as_csv(tmp_path: Path) -> None:
    # lrkit.sinks.CSV takes any path: run.log is a CSV too
    path = tmp_path / "run.log"
    path.write_text(
        "step,loss,lr/group0\n" + "".join(f"{t},{1 / (t + 1)},0.1\n" for t in range(40))
    )
    result = invoke(str(path))
    assert result.exit_code == 0, result.output
    assert "verdict:  ok" in result.stdout
