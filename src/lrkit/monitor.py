"""What a watched run records, and the live diagnosis: :class:`Record`, :class:`Recorder` (pure).

Every monitor (``lrkit.torch.Monitor``, ``lrkit.lightning.Monitor``,
``lrkit.keras.Monitor``) measures what its framework shows it and hands the
numbers of one step to a :class:`Recorder`, which keeps them in a
:class:`Record`, writes them to the sinks (``lrkit.sinks``) and watches the
diagnosis (:mod:`lrkit.diagnosis`) as the run goes. One record, one set of
tags, one diagnosis for every framework and for ``lrkit compare``'s runs.

Tags (SPEC §9): ``lr/group{i}``, ``momentum/group{i}`` (momentum, or Adam's
beta1), ``loss``, ``grad_norm``, ``update_ratio/group{i}``
(``||w_{t+1} - w_t|| / ||w_t||`` of the group's parameters at that update).
Step ``k`` is the ``k``-th optimizer update, from 0: its lr is the lr that
update used, its loss the training loss the update was computed from.

Memory: a record keeps every value it is given, 16 bytes per value (an
``array`` of steps and one of values per tag): a million steps of six tags
is about 100 MB, so long runs record ``every=10`` or more.

Live diagnosis: a NaN/inf loss is seen at once; the full rules run again
whenever the record has grown by :data:`LIVE_GROWTH` of its length (and by
:data:`LIVE_MIN` records at least), so a verdict turns within a few percent
of the run's length after the evidence appears, and all the checks of a run
together cost about ``1 / LIVE_GROWTH`` = 50 passes over its final record.
The first time the verdict turns bad (``too_high``, ``too_low``, ``plateau``)
it is logged once as a warning on the ``lrkit.monitor`` logger, and handed to
``on_bad`` when given.

Examples:
    >>> rec = Recorder()
    >>> for step in range(3):
    ...     rec.add(step, {"lr/group0": 0.1, "loss": 2.0 - step * 0.5})
    >>> rec.record.tags
    ['loss', 'lr/group0']
    >>> rec.record.series("loss")[1].tolist()
    [2.0, 1.5, 1.0]
"""

from __future__ import annotations

import csv
import logging
import math
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from lrkit.diagnosis import Diagnosis

__all__ = [
    "LIVE_GROWTH",
    "LIVE_MIN",
    "Record",
    "Recorder",
    "Sink",
    "group_tag",
    "read_record",
]

#: The live diagnosis runs again once the record has grown by this fraction.
LIVE_GROWTH = 0.02
#: ... and by this many records at least.
LIVE_MIN = 25

_GROUP = re.compile(r"^(?P<name>[a-z_]+)/group(?P<index>\d+)$")

log = logging.getLogger("lrkit.monitor")


def group_tag(name: str, group: int) -> str:
    """The tag of a per-group value: ``group_tag("lr", 0) == "lr/group0"``."""
    return f"{name}/group{group}"


@runtime_checkable
class Sink(Protocol):
    """Where a recorder writes: ``write`` each step's scalars, ``close`` at the end.

    ``summary`` at close holds the final verdict and other end-of-run
    values (strings and numbers) for sinks that keep them (MLflow tags,
    W&B's run summary); a sink may ignore it.
    """

    def write(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def close(self, summary: Mapping[str, Any] | None = None) -> None: ...


class Record:
    """Scalars by tag, each a series of ``(step, value)`` in the order added.

    Tags may come and go: ``update_ratio/group0`` at every tenth step only,
    a group added mid-run. ``None`` values are skipped; NaN and inf are kept
    (a loss that went NaN is evidence).
    """

    def __init__(self) -> None:
        self._steps: dict[str, array[int]] = {}
        self._values: dict[str, array[float]] = {}
        self._last_step = -1

    def add(self, step: int, scalars: Mapping[str, float | None]) -> None:
        """Append the scalars of ``step`` (an int >= 0)."""
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        step = int(step)
        for tag, value in scalars.items():
            if value is None:
                continue
            steps = self._steps.get(tag)
            if steps is None:
                steps = self._steps[tag] = array("q")
                self._values[tag] = array("d")
            steps.append(step)
            self._values[tag].append(float(value))
        self._last_step = max(self._last_step, step)

    @property
    def tags(self) -> list[str]:
        """The tags seen, sorted."""
        return sorted(self._steps)

    @property
    def last_step(self) -> int:
        """The largest step added (-1 when empty)."""
        return self._last_step

    def __contains__(self, tag: object) -> bool:
        return tag in self._steps

    def __len__(self) -> int:
        """The number of values of the longest series."""
        return max((len(s) for s in self._steps.values()), default=0)

    def series(self, tag: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of ``tag`` as int64 and float64 arrays (empty if never added)."""
        if tag not in self._steps:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        return (
            np.frombuffer(self._steps[tag], dtype=np.int64).copy(),
            np.frombuffer(self._values[tag], dtype=np.float64).copy(),
        )

    def groups(self, name: str) -> list[str]:
        """The per-group tags of ``name`` (``"lr"`` -> ``["lr/group0", ...]``) by group index."""
        found = []
        for tag in self._steps:
            m = _GROUP.match(tag)
            if m and m["name"] == name:
                found.append((int(m["index"]), tag))
        return [tag for _, tag in sorted(found)]

    def rows(self) -> Iterator[tuple[int, dict[str, float]]]:
        """``(step, {tag: value})`` in step order, one per step that has a value."""
        by_step: dict[int, dict[str, float]] = {}
        for tag in self._steps:
            for s, v in zip(self._steps[tag], self._values[tag], strict=True):
                by_step.setdefault(s, {})[tag] = v
        for step in sorted(by_step):
            yield step, by_step[step]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, Mapping[str, float | None]]]) -> Record:
        """A record of ``(step, scalars)`` pairs."""
        record = cls()
        for step, scalars in rows:
            record.add(step, scalars)
        return record

    def __repr__(self) -> str:
        return f"Record(tags={self.tags}, last_step={self._last_step})"


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, float | None]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        try:
            fields = reader.fieldnames
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a Monitor CSV ({exc})") from None
        if fields is None or "step" not in fields:
            raise ValueError(f"{path}: not a Monitor CSV (no 'step' column in its header)")
        try:
            for row in reader:
                step = int(row.pop("step"))
                values = {k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
                yield step, values
        except (TypeError, ValueError, csv.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}, line {reader.line_num}: {exc}") from None


def _is_csv(path: Path) -> bool:
    """A Monitor CSV: named ``.csv``, or any other name whose first line has a step column
    (``lrkit.sinks.CSV`` takes any path)."""
    if path.suffix.lower() == ".csv":
        return True
    if "tfevents" in path.name:
        return False
    try:
        with path.open("rb") as f:
            first = f.readline(4096)
    except OSError:
        return False
    return b"step" in first.split(b"\n")[0].replace(b"\r", b"").split(b",")


def read_record(path: str | Path) -> Record:
    """Read a Monitor CSV file or a TensorBoard log directory (or event file) into a Record.

    A TensorBoard folder is read with :func:`lrkit.logs.read_scalars`
    (standard library only): one run's folder, its event files merged (a
    resumed run's later file wins at a step both hold). A folder holding
    several runs (event files in more than one folder) is refused: their
    steps would mix.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is neither a CSV with a ``step`` column nor
            TensorBoard events with scalars of one run.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_file() and _is_csv(path):
        return Record.from_rows(_csv_rows(path))
    from lrkit.logs import read_scalars

    if path.is_dir():
        runs = sorted({f.parent for f in path.rglob("*tfevents*") if f.is_file()})
        if len(runs) > 1:
            shown = ", ".join(str(r.relative_to(path)) or "." for r in runs[:5])
            more = f" and {len(runs) - 5} more" if len(runs) > 5 else ""
            raise ValueError(
                f"{path} holds {len(runs)} runs (folders with event files: {shown}{more}); "
                "give one run's folder"
            )
    by_step: dict[int, dict[str, float | None]] = {}
    for tag, step, value in read_scalars(path):
        by_step.setdefault(step, {})[tag] = value
    if not by_step:
        raise ValueError(f"{path}: no TensorBoard scalars found (and not a .csv file)")
    return Record.from_rows(sorted(by_step.items()))


class Recorder:
    """Keep a run's record, write it to the sinks, and watch the diagnosis live.

    The framework monitors are thin: they measure, then call :meth:`add`.

    Args:
        sinks: Where each step's scalars also go (``lrkit.sinks``), written
            as they come.
        every: Record one step in ``every`` (the monitors ask :meth:`due`
            before they measure anything costly).
        live: Run the diagnosis as the run goes and warn once when it turns bad.
        on_bad: Called with the :class:`~lrkit.diagnosis.Diagnosis` when the
            live verdict first turns bad (after the warning).

    Raises:
        ValueError: ``every`` is not an integer >= 1.
        TypeError: a sink has no ``write``/``close``.
    """

    def __init__(
        self,
        sinks: Sequence[Sink] = (),
        *,
        every: int = 1,
        live: bool = True,
        on_bad: Callable[[Diagnosis], None] | None = None,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        for sink in sinks:
            if not isinstance(sink, Sink):
                raise TypeError(
                    f"sinks: {sink!r} is not a sink (it needs write(step, scalars) and "
                    "close(summary)); see lrkit.sinks"
                )
        self.sinks = list(sinks)
        self.every = every
        self.live = live
        self.on_bad = on_bad
        self.record = Record()
        #: End-of-run values beside the verdict (e.g. the optimizer state's size).
        self.summary: dict[str, Any] = {}
        #: The first bad live diagnosis, once there is one.
        self.first_bad: Diagnosis | None = None
        self._checked_at = 0
        self._count = 0
        self._closed: Diagnosis | None = None

    def due(self, step: int) -> bool:
        """Whether ``step`` is one to record (``step % every == 0``)."""
        return step % self.every == 0

    def add(self, step: int, scalars: Mapping[str, float | None]) -> None:
        """Record the scalars of ``step``, write them to the sinks, and check the diagnosis."""
        if self._closed is not None:
            raise RuntimeError("Monitor: step() after close()")
        values = {k: float(v) for k, v in scalars.items() if v is not None}
        self.record.add(step, values)
        for sink in self.sinks:
            sink.write(step, values)
        self._count += 1
        if self.live and self.first_bad is None and self._check_due(values):
            self._check()

    def _check_due(self, values: Mapping[str, float]) -> bool:
        loss = values.get("loss")
        if loss is not None and not math.isfinite(loss):
            return True
        grown = self._count - self._checked_at
        return grown >= max(LIVE_MIN, LIVE_GROWTH * self._count)

    def _check(self) -> None:
        from lrkit.diagnosis import diagnose

        self._checked_at = self._count
        found = diagnose(self.record, final=False)
        if found.verdict == "ok":
            return
        self.first_bad = found
        log.warning(
            "lr looks %s at step %d: %s. %s", found.label, found.step, found.evidence, found.advice
        )
        if self.on_bad is not None:
            self.on_bad(found)

    def diagnosis(self) -> Diagnosis:
        """The diagnosis of the record so far (the final one after :meth:`close`)."""
        if self._closed is not None:
            return self._closed
        from lrkit.diagnosis import diagnose

        return diagnose(self.record)

    def close(self) -> Diagnosis:
        """Flush and close the sinks (with the verdict in their summary); return the diagnosis.

        Idempotent: a second call returns the same diagnosis and writes nothing.
        """
        if self._closed is not None:
            return self._closed
        found = self.diagnosis()
        summary = {
            **self.summary,
            "verdict": found.verdict,
            "evidence": found.evidence,
            "advice": found.advice,
        }
        self._closed = found
        errors = []
        for sink in self.sinks:
            try:
                sink.close(summary)
            except Exception as exc:  # close the others, then say which failed
                errors.append(f"{type(sink).__name__}: {exc}")
        if errors:
            raise RuntimeError("Monitor.close: " + "; ".join(errors))
        return found
