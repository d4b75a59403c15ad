"""Sinks for a watched run: :class:`CSV`, :class:`TensorBoard`, :class:`MLflow`, :class:`WandB`.

Each class is a :class:`lrkit.monitor.Sink`: the monitors' recorder calls
``write(step, scalars)`` with each recorded step's scalars (tags
``lr/group{i}``, ``momentum/group{i}``, ``loss``, ``grad_norm``,
``update_ratio/group{i}``, SPEC §9) and ``close(summary)`` once at the end,
the summary holding the final ``verdict``, ``evidence`` and ``advice`` (and
end-of-run numbers such as ``optimizer_state_copies``). Each sink writes
what that tool's own reader reads back:

- :class:`CSV` (standard library): a wide CSV file, the summary beside it
  as ``<path>.summary.json``; NaN and inf as cells ``nan``, ``inf``.
- :class:`TensorBoard` (standard library): an event file, values as
  float32, NaN and inf kept; the summary is not written.
- :class:`MLflow` (``mlflow``): metrics in an MLflow run, the summary as
  run tags ``lrkit.verdict``, ``lrkit.evidence``, ``lrkit.advice``. MLflow's
  SQL store (SQLite, PostgreSQL, a tracking server on them) keeps NaN but
  stores +-inf as +-1.7976931348623157e308, the largest float: a loss that
  blew up to inf reads back as that number.
- :class:`WandB` (``wandb``): a W&B run's history, the summary in
  ``run.summary["lrkit.verdict"]`` ...; NaN and inf kept.

``mlflow`` and ``wandb`` are imported when such a sink is made, never when
this module is: ``pip install 'lrkit[monitor]'`` brings them (and
TensorBoard, to view the event files).

Common to all four: steps are integers >= 0; ``None`` values are left out;
:meth:`~CSV.close` flushes, is idempotent, and a ``write`` after it raises
``RuntimeError``; each is a context manager (``with CSV(path) as sink:``).
Nothing is written from another thread: the CSV, TensorBoard and MLflow
sinks keep what was written in memory until ``flush_every`` steps are
pending or ``flush_seconds`` have passed since the last flush (checked at
each write), at :meth:`~CSV.flush` and at close; a run that dies without
closing loses at most that much (the CSV and TensorBoard sinks also flush
when the interpreter exits, or when they are garbage-collected).

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from lrkit.monitor import read_record
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with CSV(Path(folder) / "run" / "monitor.csv") as sink:
    ...         sink.write(0, {"loss": 2.0, "lr/group0": 0.1})
    ...         sink.write(1, {"loss": 1.5, "lr/group0": 0.1, "update_ratio/group0": 1e-3})
    ...     print(sink.path.read_text(), end="")
    ...     read_record(sink.path).series("loss")[1].tolist()
    step,lr/group0,loss,update_ratio/group0
    0,0.1,2.0,
    1,0.1,1.5,0.001
    [2.0, 1.5]
"""

from __future__ import annotations

import abc
import csv
import importlib
import io
import json
import math
import os
import re
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from typing import IO, Any, Self

__all__ = ["CSV", "MLflow", "TensorBoard", "WandB"]

#: The order of the CSV's columns after ``step``; other tags follow, sorted.
CSV_ORDER = ("lr", "momentum", "loss", "grad_norm", "update_ratio")

_GROUP_TAG = re.compile(r"^(?P<name>.+)/group(?P<index>\d+)$")

#: MLflow's longest tag value (``mlflow.utils.validation.MAX_TAG_VAL_LENGTH``).
_MLFLOW_TAG_LENGTH = 8000
#: MLflow's most metrics in one ``log_batch`` call.
_MLFLOW_BATCH = 1000


def _require(module: str, sink: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"lrkit.sinks.{sink} needs {module}: pip install 'lrkit[monitor]' "
            f"(or pip install {module})"
        ) from exc


def _check_flush(flush_every: int, flush_seconds: float) -> None:
    if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
        raise ValueError(f"flush_every must be an integer >= 1, got {flush_every!r}")
    if not isinstance(flush_seconds, int | float) or not flush_seconds >= 0:
        raise ValueError(f"flush_seconds must be a number >= 0, got {flush_seconds!r}")


def _summary_key(key: str) -> str:
    return f"lrkit.{key}"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Sink(abc.ABC):
    """What the sinks share: step and value checks, close bookkeeping, ``with``."""

    _closed = False

    def _values(self, step: int, scalars: Mapping[str, float]) -> tuple[int, dict[str, float]]:
        """``(step, {tag: float})`` checked, ``None`` values left out."""
        if self._closed:
            raise RuntimeError(f"{self!r}: write() after close()")
        if isinstance(step, bool) or not hasattr(step, "__index__") or step < 0:
            raise ValueError(f"{type(self).__name__}: step must be an integer >= 0, got {step!r}")
        values = {}
        for tag, value in scalars.items():
            if value is None:
                continue
            if not isinstance(tag, str) or not tag:
                raise ValueError(
                    f"{type(self).__name__}: a tag must be a non-empty str, got {tag!r}"
                )
            try:
                values[tag] = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{type(self).__name__}: {tag!r} must be a number, got {value!r}"
                ) from None
        return int(step), values

    @abc.abstractmethod
    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record the scalars of ``step``."""

    @abc.abstractmethod
    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        """Flush, keep ``summary`` where the tool keeps one, and release the file or run."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _repr(self, *args: str) -> str:
        return f"{type(self).__name__}({', '.join([*args, *(['closed'] if self._closed else [])])})"


# --------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------


def _column_key(tag: str) -> tuple[int, str, int, str]:
    m = _GROUP_TAG.match(tag)
    name, index = (m["name"], int(m["index"])) if m else (tag, -1)
    if name in CSV_ORDER:
        return CSV_ORDER.index(name), "", index, tag
    return len(CSV_ORDER), name, index, tag


def _columns(tags: Iterable[str]) -> list[str]:
    """Tags in column order: :data:`CSV_ORDER`, then the others by name; groups by number."""
    return sorted(set(tags), key=_column_key)


class _Output:
    """The CSV's open file and the rows not yet in it (what the exit flush needs)."""

    def __init__(self, file: IO[str]) -> None:
        self.file = file
        self.pending = io.StringIO()

    def flush(self) -> None:
        if self.pending.tell():
            self.file.write(self.pending.getvalue())
            self.pending.seek(0)
            self.pending.truncate()
        self.file.flush()

    def close(self) -> None:
        if not self.file.closed:
            self.flush()
            self.file.close()


class CSV(_Sink):
    """A wide CSV file: ``step`` then one column per tag, one row per write.

    Columns: ``step``, then ``lr/group{i}``, ``momentum/group{i}``,
    ``loss``, ``grad_norm``, ``update_ratio/group{i}`` (groups by number:
    ``group2`` before ``group10``), then any other tag, sorted. A cell is
    empty where a tag has no value at that step (``update_ratio`` measured
    at some steps only); NaN and inf are written ``nan``, ``inf``, ``-inf``;
    floats are written exactly (shortest round-trip form). The file is
    :func:`lrkit.monitor.read_record`'s and ``lrkit diagnose``'s input, and
    any CSV reader's (``pandas.read_csv``).

    A tag first seen mid-run (a param group added, a metric measured late)
    widens the file: the rows so far are rewritten under the wider header
    into a new file that replaces the old one at once (``os.replace``), so
    a reader sees the old file or the new one, never half of either. The
    rewrite costs a pass over the file, once per new tag.

    The file holds only whole rows: the rows of a write go to memory and
    reach the file at a flush (``flush_every`` rows pending or
    ``flush_seconds`` since the last flush, at :meth:`flush`, at close, and
    at interpreter exit if never closed). After a flush the file can be
    read while the run goes on.

    At close with a summary, the summary is also written as JSON beside the
    file, ``<path>.summary.json`` (``run.csv.summary.json``), NaN and inf
    written as the strings ``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no
    such numbers).

    Args:
        path: The file; its folder is created if missing. An existing file
            is replaced (each run its own file).
        flush_every: Rows kept in memory before they are written.
        flush_seconds: Seconds after which the next write flushes all the same.

    Raises:
        ValueError: ``flush_every`` < 1 or ``flush_seconds`` < 0; at
            :meth:`write`, a negative step, a non-numeric value, or a tag
            named ``step``.
        OSError: the folder or the file cannot be created.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, flush_every: int = 100, flush_seconds: float = 5.0
    ) -> None:
        _check_flush(flush_every, flush_seconds)
        self.path = Path(path)
        self.flush_every = flush_every
        self.flush_seconds = float(flush_seconds)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = _Output(self._open("w"))
        self._finalizer = weakref.finalize(self, self._out.close)
        self._rows = csv.writer(self._out.pending, lineterminator="\n")
        self._tags: list[str] = []  # the columns after "step"
        self._index: dict[str, int] = {}
        self._header = False  # whether the header is written (to the file or pending)
        self._pending = 0
        self._flushed_at = time.monotonic()

    def _open(self, mode: str) -> IO[str]:
        return self.path.open(mode, newline="", encoding="utf-8")

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Append the row of ``step`` (widening the file first if a tag is new)."""
        step, values = self._values(step, scalars)
        if "step" in values:
            raise ValueError("CSV: a tag may not be named 'step' (the first column's name)")
        if not self._header or any(tag not in self._index for tag in values):
            self._widen(values)
        row: list[object] = [step, *([""] * len(self._tags))]
        for tag, value in values.items():
            row[self._index[tag]] = value
        self._rows.writerow(row)
        self._pending += 1
        if (
            self._pending >= self.flush_every
            or time.monotonic() - self._flushed_at >= self.flush_seconds
        ):
            self.flush()

    def _widen(self, values: Iterable[str]) -> None:
        tags = _columns([*self._tags, *values])
        if self._header:  # rows may be in the file: rewrite them under the wider header
            self.flush()
            self._out.file.close()
            self._rewrite(["step", *tags])
            self._out.file = self._open("a")
        else:
            self._rows.writerow(["step", *tags])
            self._header = True
        self._tags = tags
        self._index = {tag: i for i, tag in enumerate(tags, start=1)}

    def _rewrite(self, header: list[str]) -> None:
        partial = self.path.with_name(self.path.name + ".partial")
        with self._open("r") as old, partial.open("w", newline="", encoding="utf-8") as new:
            reader = csv.reader(old)
            where = {name: i for i, name in enumerate(next(reader))}
            writer = csv.writer(new, lineterminator="\n")
            writer.writerow(header)
            columns = [where.get(name) for name in header]
            for row in reader:
                writer.writerow(["" if i is None or i >= len(row) else row[i] for i in columns])
        os.replace(partial, self.path)

    def flush(self) -> None:
        """Write the pending rows to the file (and hand them to the operating system)."""
        if self._closed:
            return  # close flushed them
        self._out.flush()
        self._pending = 0
        self._flushed_at = time.monotonic()

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        """Flush and close the file; write ``summary`` (if any) to ``<path>.summary.json``."""
        if self._closed:
            return
        self._closed = True
        if not self._header:
            self._rows.writerow(["step"])  # no rows: a header all the same, an empty record
        self._finalizer()
        if summary:
            self._write_summary(summary)

    def _write_summary(self, summary: Mapping[str, Any]) -> None:
        def plain(value: Any) -> Any:
            if hasattr(value, "item") and callable(value.item):  # numpy scalars
                value = value.item()
            if isinstance(value, float) and not math.isfinite(value):
                return str(value)
            if isinstance(value, Mapping):
                return {str(k): plain(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [plain(v) for v in value]
            if value is None or isinstance(value, str | int | float):
                return value
            return str(value)

        target = self.summary_path
        partial = target.with_name(target.name + ".partial")
        partial.write_text(
            json.dumps(plain(dict(summary)), indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )
        os.replace(partial, target)

    @property
    def summary_path(self) -> Path:
        """Where :meth:`close` writes the summary: ``<path>.summary.json``."""
        return self.path.with_name(self.path.name + ".summary.json")

    def __repr__(self) -> str:
        return self._repr(repr(str(self.path)))


# --------------------------------------------------------------------------
# TensorBoard
# --------------------------------------------------------------------------


class TensorBoard(_Sink):
    """Scalars into a TensorBoard event file in ``log_dir``, standard library only.

    Written by :class:`lrkit.logs.TensorBoardWriter` (one event per step,
    every tag of the step in it, values as float32 ``simple_value``s, NaN
    and inf kept); read back by TensorBoard (``tensorboard --logdir``), its
    ``EventAccumulator``, :func:`lrkit.logs.read_scalars` and
    :func:`lrkit.monitor.read_record` (``lrkit diagnose log_dir``). Each
    sink writes its own new file in the folder. The summary at close is not
    written: the verdict is the diagnosis of the scalars, which ``lrkit
    diagnose`` recomputes.

    Args:
        log_dir: The run's folder (created if missing).
        flush_every: Steps kept in memory before they are written.
        flush_seconds: Seconds after which the next write flushes all the same.

    Raises:
        ValueError: ``flush_every`` < 1 or ``flush_seconds`` < 0; at
            :meth:`write`, a negative step or a non-numeric value.
        OSError: the folder or the file cannot be created.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        *,
        flush_every: int = 100,
        flush_seconds: float = 5.0,
    ) -> None:
        from lrkit.logs import TensorBoardWriter

        _check_flush(flush_every, flush_seconds)
        self.log_dir = Path(log_dir)
        self.flush_seconds = float(flush_seconds)
        self._writer = TensorBoardWriter(self.log_dir, flush_every=flush_every)
        self._finalizer = weakref.finalize(self, self._writer.close)
        self._flushed_at = time.monotonic()

    @property
    def path(self) -> Path:
        """The event file written."""
        return self._writer.path

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Add the scalars of ``step`` as one event."""
        step, values = self._values(step, scalars)
        self._writer.add_scalars(values, step)
        if time.monotonic() - self._flushed_at >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the pending events to the file."""
        if self._closed:
            return  # close flushed them
        self._writer.flush()
        self._flushed_at = time.monotonic()

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        """Flush and close the file (``summary`` is not written)."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()

    def __repr__(self) -> str:
        return self._repr(repr(str(self.log_dir)))


# --------------------------------------------------------------------------
# MLflow
# --------------------------------------------------------------------------


class MLflow(_Sink):
    """Scalars as MLflow metrics (``lr/group0``, ``loss``, ... at each step), the verdict as tags.

    The run: if an MLflow run is active in this thread (``mlflow.start_run``),
    the metrics go into it and it is left running at close (it is yours).
    Otherwise the sink starts its own run in the store at ``tracking_uri``
    (MLflow's own default when None: ``MLFLOW_TRACKING_URI``, or
    ``mlflow.set_tracking_uri``'s) in the experiment ``mlflow.start_run``
    would pick (``mlflow.set_experiment``, ``MLFLOW_EXPERIMENT_NAME`` or
    ``MLFLOW_EXPERIMENT_ID``, else the default one), named ``run_name``, and
    ends it at close (status ``FINISHED``). Its id is :attr:`run_id`. The
    sink's own run is made through an ``MlflowClient``: it never becomes
    the process's active run.

    Metrics are sent in batches (``MlflowClient.log_batch``, a thousand at
    most per call): every ``flush_every`` steps, ``flush_seconds`` after the
    last send (checked at each write), at :meth:`flush` and at close.

    The summary at close: its strings as run tags ``lrkit.verdict``,
    ``lrkit.evidence``, ``lrkit.advice`` (cut to MLflow's 8000 characters,
    ending ``...``), its numbers as metrics ``lrkit.<key>`` at the last step
    written; anything else as a tag, as text.

    Non-finite values are sent as they are: MLflow's SQL store keeps NaN,
    and stores +-inf as +-1.7976931348623157e308 (``sys.float_info.max``).

    Args:
        tracking_uri: Where the sink's own run goes (``sqlite:///mlflow.db``,
            ``http://host:5000``); must be None when a run is active.
        run_name: The name of the sink's own run; must be None when a run
            is active.
        flush_every: Steps kept in memory before they are sent.
        flush_seconds: Seconds after which the next write sends all the same.

    Raises:
        ImportError: ``mlflow`` is not installed.
        ValueError: ``tracking_uri`` or ``run_name`` given while a run is
            active (the metrics would go to that run, not where asked);
            ``flush_every`` < 1 or ``flush_seconds`` < 0.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        run_name: str | None = None,
        *,
        flush_every: int = 100,
        flush_seconds: float = 5.0,
    ) -> None:
        _check_flush(flush_every, flush_seconds)
        mlflow = _require("mlflow", "MLflow")
        self._metric = importlib.import_module("mlflow.entities").Metric
        client_class = importlib.import_module("mlflow.tracking").MlflowClient
        active = mlflow.active_run()
        if active is not None:
            if tracking_uri is not None or run_name is not None:
                raise ValueError(
                    f"MLflow: a run is active ({active.info.run_id}), and the metrics go into "
                    f"it; tracking_uri={tracking_uri!r} and run_name={run_name!r} must be left "
                    "out (or end that run first)"
                )
            self.client = client_class()
            self.run_id: str = active.info.run_id
            self._owns_run = False
        else:
            self.client = client_class(tracking_uri=tracking_uri)
            experiment_id = self._experiment_id(tracking_uri)
            self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
            self._owns_run = True
        self.tracking_uri = tracking_uri
        self.run_name = run_name
        self.flush_every = flush_every
        self.flush_seconds = float(flush_seconds)
        self._pending: list[Any] = []
        self._pending_steps = 0
        self._last_step = 0
        self._flushed_at = time.monotonic()

    def _experiment_id(self, tracking_uri: str | None) -> str:
        """The experiment ``mlflow.start_run`` would use, in the store at ``tracking_uri``."""
        if tracking_uri is None:  # the global store: mlflow's own rule
            fluent = importlib.import_module("mlflow.tracking.fluent")
            found = getattr(fluent, "_get_experiment_id", lambda: None)()
            if found is not None:
                return str(found)
        if experiment_id := os.environ.get("MLFLOW_EXPERIMENT_ID"):
            return str(self.client.get_experiment(experiment_id).experiment_id)
        if name := os.environ.get("MLFLOW_EXPERIMENT_NAME"):
            experiment = self.client.get_experiment_by_name(name)
            if experiment is not None:
                return str(experiment.experiment_id)
            return str(self.client.create_experiment(name))
        return "0"  # MLflow's default experiment

    @property
    def owns_run(self) -> bool:
        """Whether the sink started its run (and ends it at close)."""
        return self._owns_run

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Queue the scalars of ``step`` as metrics (sent in batches)."""
        step, values = self._values(step, scalars)
        now = int(time.time() * 1000)
        self._pending.extend(
            self._metric(key=tag, value=value, timestamp=now, step=step)
            for tag, value in values.items()
        )
        self._last_step = step
        self._pending_steps += 1
        if (
            self._pending_steps >= self.flush_every
            or time.monotonic() - self._flushed_at >= self.flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Send the queued metrics (``log_batch``, in batches of a thousand)."""
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), _MLFLOW_BATCH):
            self.client.log_batch(self.run_id, metrics=pending[start : start + _MLFLOW_BATCH])
        self._pending_steps = 0
        self._flushed_at = time.monotonic()

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        """Send what is queued and the summary; end the run if the sink started it."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
            if summary:
                self._log_summary(summary)
        finally:
            if self._owns_run:
                self.client.set_terminated(self.run_id, status="FINISHED")

    def _log_summary(self, summary: Mapping[str, Any]) -> None:
        now = int(time.time() * 1000)
        metrics = []
        tags = []
        tag_class = importlib.import_module("mlflow.entities").RunTag
        for key, value in summary.items():
            number = value.item() if hasattr(value, "item") and callable(value.item) else value
            if _is_number(number):
                metrics.append(
                    self._metric(
                        key=_summary_key(key),
                        value=float(number),
                        timestamp=now,
                        step=self._last_step,
                    )
                )
            else:
                text = str(value)
                if len(text) > _MLFLOW_TAG_LENGTH:
                    text = text[: _MLFLOW_TAG_LENGTH - 3] + "..."
                tags.append(tag_class(_summary_key(key), text))
        for start in range(0, len(tags), 100):  # MLflow: 100 tags a call at most
            self.client.log_batch(self.run_id, tags=tags[start : start + 100])
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def __repr__(self) -> str:
        return self._repr(f"run_id={self.run_id!r}")


# --------------------------------------------------------------------------
# Weights & Biases
# --------------------------------------------------------------------------


class WandB(_Sink):
    """Scalars into a Weights & Biases run's history (``run.log(scalars, step=step)``).

    The run: if a W&B run is active in the process (``wandb.run``), the
    scalars go into it and it is left running at close (it is yours).
    Otherwise the sink starts one, ``wandb.init(project=project, mode=mode,
    dir=dir)``, and finishes it at close. ``mode="offline"`` needs no
    account and no network: the run is kept under ``dir/wandb/`` until
    ``wandb sync``. The run is :attr:`run`.

    W&B's own rules apply: a step lower than one already logged to the run
    is dropped by W&B (with a warning), and a ``run.log`` without ``step``
    advances W&B's own counter: into your own run, log yours with
    ``step=`` the same counter as the monitor's (the optimizer step).
    Values are sent as they are; NaN and inf are kept (``NaN``,
    ``Infinity`` in the run's history). W&B batches and sends in its own
    process; :meth:`flush` has nothing to do.

    The summary at close goes into ``run.summary`` as ``lrkit.verdict``,
    ``lrkit.evidence``, ``lrkit.advice`` (and ``lrkit.<key>`` for the rest).

    Args:
        project: The W&B project of the sink's own run (W&B's default, or
            ``WANDB_PROJECT``, when None); must be None when a run is active.
        mode: ``"online"``, ``"offline"`` or ``"disabled"`` (W&B's default,
            or ``WANDB_MODE``, when None); must be None when a run is active.
        dir: The folder for W&B's files (created if missing; W&B's default,
            or ``WANDB_DIR``, when None); must be None when a run is active.

    Raises:
        ImportError: ``wandb`` is not installed.
        ValueError: ``project``, ``mode`` or ``dir`` given while a run is
            active (the scalars would go to that run, not where asked).
    """

    def __init__(
        self,
        project: str | None = None,
        mode: str | None = None,
        dir: str | os.PathLike[str] | None = None,
    ) -> None:
        wandb = _require("wandb", "WandB")
        if wandb.run is not None:
            if project is not None or mode is not None or dir is not None:
                raise ValueError(
                    f"WandB: a W&B run is active ({wandb.run.id}), and the scalars go into it; "
                    f"project={project!r}, mode={mode!r} and dir={dir!r} must be left out "
                    "(or finish that run first)"
                )
            self.run: Any = wandb.run
            self._owns_run = False
        else:
            if dir is not None:
                Path(dir).mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                project=project, mode=mode, dir=None if dir is None else os.fspath(dir)
            )
            self._owns_run = True

    @property
    def owns_run(self) -> bool:
        """Whether the sink started its run (and finishes it at close)."""
        return self._owns_run

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Log the scalars of ``step`` (``run.log(scalars, step=step)``)."""
        step, values = self._values(step, scalars)
        if values:
            self.run.log(values, step=step)

    def flush(self) -> None:
        """Nothing to do: W&B sends the history itself."""

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        """Put ``summary`` into the run's summary; finish the run if the sink started it."""
        if self._closed:
            return
        self._closed = True
        try:
            if summary:
                self.run.summary.update({_summary_key(k): v for k, v in summary.items()})
        finally:
            if self._owns_run:
                self.run.finish()

    def __repr__(self) -> str:
        return self._repr(f"run={getattr(self.run, 'id', None)!r}")
