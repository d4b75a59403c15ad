"""A compare's runs as per-step logs: TensorBoard event files and one CSV.

Both are written from finished :class:`~lrkit.bench.run.RunResult`s (the
store keeps every curve), so ``lrkit report STORE --tensorboard DIR --csv``
rebuilds them at any time and a crash mid-compare loses nothing.

Step convention (as in :mod:`lrkit.bench.run`): row / event ``step = k``
carries the lr and training loss of update ``k`` (the ``k``-th, from 0),
the validation values measured after ``k`` updates (so before update ``k``;
``k = steps`` is the end of training) and the update-to-weight ratio of
update ``k`` where it was measured.

- :func:`write_tensorboard`: one TensorBoard run per lrkit run, in
  ``DIR/<task>/<optimizer>/<schedule>/lr=<lr>/seed=<seed>`` (with
  ``batch=<n>/`` before the seed under ``--batch-sizes``), with the
  scalars ``lr``, ``loss/train``, ``<name>/validation`` for every evaluated
  value and ``update_ratio``. Event files lrkit wrote there before are
  replaced, so a re-export never shows a run twice.
- :func:`write_csv`: one row per (run, step) with the run's settings (its
  ``batch_size`` is the one it trained at, empty when unknown).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lrkit.bench.run import RunResult
from lrkit.logs import TensorBoardWriter

__all__ = ["run_folder", "step_rows", "val_column", "write_csv", "write_tensorboard"]

_SETTINGS = ("key", "task", "optimizer", "schedule", "grid_lr", "seed", "batch_size", "status")


def _safe(part: str) -> str:
    """A path component: the spec's characters that shells and file systems dislike dropped."""
    text = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", part).strip("_.")
    return text or "_"


def run_folder(result: RunResult) -> Path:
    """The run's folder under a TensorBoard log dir (relative).

    ``.../lr=0.1/seed=0``, with ``batch=64/`` before the seed when the grid
    set batch sizes (runs at two batch sizes never share a folder).
    """
    c = result.config
    batch = [f"batch={int(c['batch_size'])}"] if c.get("batch_size") is not None else []
    return Path(
        _safe(str(c.get("task", "task"))),
        _safe(str(c.get("optimizer", "optimizer"))),
        _safe(str(c.get("schedule", "schedule"))),
        f"lr={float(c.get('lr', math.nan)):g}",
        *batch,
        f"seed={c.get('seed', 0)}",
    )


def _steps(result: RunResult) -> dict[int, dict[str, float]]:
    """Per step, the scalars measured there (see the module's step convention)."""
    out: dict[int, dict[str, float]] = {}
    for step, (lr, loss) in enumerate(zip(result.lr, result.loss, strict=False)):
        out[step] = {"lr": lr, "loss/train": loss}
    for name, values in result.evals.items():
        for step, value in zip(result.eval_steps, values, strict=False):
            out.setdefault(step, {})[f"{name}/validation"] = value
    for step, value in zip(result.ratio_steps, result.update_ratio, strict=False):
        out.setdefault(step, {})["update_ratio"] = value
    stopped = result.stopping_loss()
    if stopped is not None:  # the loss that stopped a diverged run: what lrkit diagnose reads
        out.setdefault(stopped[0], {})["loss/train"] = stopped[1]
    return out


def write_tensorboard(results: Iterable[RunResult], folder: str | Path) -> int:
    """Write each run's curves as TensorBoard event files under ``folder``.

    Args:
        results: Finished runs (any status; a diverged run's loss curve ends
            with the loss that stopped it, NaN or inf: what ``lrkit diagnose``
            reads as a divergence).
        folder: The TensorBoard ``--logdir`` (created if missing).

    Returns:
        How many runs were written.

    Raises:
        OSError: If a folder or file cannot be written.
    """
    root = Path(folder)
    count = 0
    for result in results:
        target = root / run_folder(result)
        if target.is_dir():
            for old in target.glob("events.out.tfevents.*.lrkit"):
                old.unlink()
        with TensorBoardWriter(target) as tb:
            for step, scalars in sorted(_steps(result).items()):
                tb.add_scalars(scalars, step)
        count += 1
    return count


def _eval_names(results: Sequence[RunResult]) -> list[str]:
    names: dict[str, None] = {}
    for result in results:
        names.update(dict.fromkeys(result.evals))
    return list(names)


def val_column(name: str) -> str:
    """The CSV column of a reported metric: ``val_<name>``, or the name itself when it
    already says so (``val_loss``, not ``val_val_loss``)."""
    return name if name.startswith("val_") else f"val_{name}"


def _cell(value: float | None) -> str | float:
    return "" if value is None else value


def step_rows(result: RunResult, eval_names: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The run's rows for :func:`write_csv`: settings, step, then what was measured there."""
    c = result.config
    settings = {
        "key": result.key,
        "task": c.get("task"),
        "optimizer": c.get("optimizer"),
        "schedule": c.get("schedule"),
        "grid_lr": c.get("lr"),
        "seed": c.get("seed"),
        "batch_size": _cell(result.identity.get("batch_size")),
        "status": result.status,
    }
    for step, scalars in sorted(_steps(result).items()):
        row: dict[str, Any] = dict(settings, step=step)
        row["lr"] = _cell(scalars.get("lr"))
        row["loss"] = _cell(scalars.get("loss/train"))
        for name in eval_names:
            row[val_column(name)] = _cell(scalars.get(f"{name}/validation"))
        row["update_ratio"] = _cell(scalars.get("update_ratio"))
        yield row


def write_csv(results: Iterable[RunResult], path: str | Path) -> int:
    """Write every run's per-step rows to one CSV file (replaced atomically).

    Columns: ``key, task, optimizer, schedule, grid_lr, seed, status, step,
    lr, loss, val_<name>... , update_ratio``; a cell is empty where nothing
    was measured at that step.

    Returns:
        The number of rows written.

    Raises:
        OSError: If the file cannot be written.
    """
    runs = list(results)
    names = _eval_names(runs)
    columns = [*_SETTINGS, "step", "lr", "loss", *map(val_column, names), "update_ratio"]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    rows = 0
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for result in runs:
            for row in step_rows(result, names):
                writer.writerow(row)
                rows += 1
    partial.replace(target)
    return rows
