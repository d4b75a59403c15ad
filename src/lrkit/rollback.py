"""Rollback: the guard's snapshots, one protocol for every framework.

The guard (:class:`lrkit.Guard`, :mod:`lrkit.divergence`) decides *when* a run
diverged; :class:`Snapshots` decides *what* a rollback brings back, the same
way for every framework. The framework's part is a *binding* that only copies
state out and in:

- ``capture() -> data``: a copy of the model's and the optimizer's state that
  later training does not change;
- ``apply(data)``: write ``data`` back into model and optimizer, leaving
  ``data`` itself reusable (a second rollback to it is the same);
- for snapshots kept in files (``directory=``), also ``suffix`` (e.g.
  ``".pt"``), ``save(data, path)`` and ``load(path) -> data``.

The policy, written once here:

- ``take(step)`` captures a *pending* snapshot of the state the update of
  ``step`` starts from; ``confirm()`` makes it the *good* one once the loss
  computed with exactly that state passed the guard. ``keep(step)`` does both
  at once, for a state known to be good.
- ``due(step)``: a snapshot is due when none is pending and there is no good
  one yet, or ``step`` is a multiple of ``every``.
- ``restore()`` applies the good snapshot (the pending one while none is
  good yet), drops the pending one (its loss diverged or was never checked),
  keeps the good one for a later rollback, and returns the step it was taken
  at. The caller's step counter and data move on; only the state goes back.
- ``drop_pending()`` forgets a snapshot whose loss will never be checked;
  ``clear()`` forgets both (a resume starts them again).

What a snapshot holds: for :class:`lrkit.torch.Scheduler`, the model's and the
optimizer's state dicts (tensors cloned), or one ``torch.save`` file per kind
(``guard-pending.pt``, ``guard-good.pt``) in ``snapshot_dir``; it is taken by
an optimizer step pre-hook every ``snapshot_every`` steps and confirmed by
``step(loss=...)``. For :class:`lrkit.keras.Guard`, numpy copies of the
model's variables and of the optimizer's variables but its step counter
(``iterations`` keeps counting); it is kept (good at once) when training
begins and after every ``snapshot_every`` good batches.

Examples:
    >>> from lrkit.rollback import Snapshots
    >>> class Box:  # a binding: the "model" is one number
    ...     def __init__(self): self.w = 1.0
    ...     def capture(self): return self.w
    ...     def apply(self, data): self.w = data
    >>> box = Box()
    >>> snaps = Snapshots(box, every=2)
    >>> snaps.due(0)
    True
    >>> snaps.take(0); box.w = 2.0; snaps.confirm()  # step 0's loss was fine
    >>> snaps.due(1), snaps.due(2)
    (False, True)
    >>> snaps.take(2); box.w = float("nan")  # step 2's loss diverged
    >>> snaps.restore(), box.w
    (0, 1.0)
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["Binding", "FileBinding", "Snapshot", "Snapshots"]


@runtime_checkable
class Binding(Protocol):
    """What a framework gives :class:`Snapshots`: a copy of its state out, and back in."""

    def capture(self) -> Any:
        """A copy of model and optimizer state that later training leaves unchanged."""
        ...

    def apply(self, data: Any) -> None:
        """Write ``data`` (from :meth:`capture`) back; ``data`` stays reusable."""
        ...


@runtime_checkable
class FileBinding(Binding, Protocol):
    """A :class:`Binding` that can also keep its snapshots in files."""

    #: The snapshot files' extension, e.g. ``".pt"``.
    suffix: str

    def save(self, data: Any, path: pathlib.Path) -> None:
        """Write ``data`` to ``path``."""
        ...

    def load(self, path: pathlib.Path) -> Any:
        """Read what :meth:`save` wrote."""
        ...


@dataclass(frozen=True)
class Snapshot:
    """One snapshot: the step whose update it precedes, and the binding's data (or its file)."""

    step: int
    data: Any


class Snapshots:
    """The guard's last good snapshot and the one awaiting its loss (see the module docstring).

    Args:
        binding: the framework's :class:`Binding` (a :class:`FileBinding`
            with ``directory``).
        every: steps between snapshots (>= 1).
        directory: keep the snapshots in files there (``guard-pending`` and
            ``guard-good`` plus the binding's suffix; one directory per run),
            not in memory.
        who: the name error messages start with.

    Raises:
        ValueError: ``every`` is not an integer >= 1.
        TypeError: ``directory`` with a binding that has no ``save``/``load``.
    """

    def __init__(
        self, binding: Binding, every: int, directory: Any = None, *, who: str = "rollback"
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"{who}: snapshot_every must be an integer >= 1, got {every!r}")
        self.binding = binding
        self.every = every
        self.who = who
        self.directory = None if directory is None else pathlib.Path(directory)
        #: The directory and the binding that writes files there (file mode only).
        self._files: tuple[pathlib.Path, FileBinding] | None = None
        if self.directory is not None:
            if not isinstance(binding, FileBinding):
                raise TypeError(
                    f"{who}: snapshots in a directory need a binding with suffix, save(data, "
                    f"path) and load(path), got {type(binding).__name__}"
                )
            self.directory.mkdir(parents=True, exist_ok=True)
            self._files = (self.directory, binding)
        self.pending: Snapshot | None = None
        self.good: Snapshot | None = None

    def __repr__(self) -> str:
        where = "memory" if self.directory is None else str(self.directory)
        return (
            f"Snapshots(every={self.every}, good={_step_of(self.good)}, "
            f"pending={_step_of(self.pending)}, in={where!r})"
        )

    @property
    def ready(self) -> bool:
        """Whether there is a snapshot to roll back to."""
        return self.good is not None or self.pending is not None

    def due(self, step: int) -> bool:
        """Whether :meth:`take` should run before the update of ``step``."""
        return self.pending is None and (self.good is None or step % self.every == 0)

    def take(self, step: int) -> None:
        """Capture the state the update of ``step`` starts from, as the pending snapshot."""
        data = self.binding.capture()
        if self._files is not None:
            directory, files = self._files
            path = directory / f"guard-pending{files.suffix}"
            files.save(data, path)
            data = path
        self.pending = Snapshot(step, data)

    def confirm(self) -> None:
        """The pending snapshot's loss passed the guard: it becomes the good one."""
        if self.pending is None:
            return
        snapshot = self.pending
        if self._files is not None:
            directory, files = self._files
            good = directory / f"guard-good{files.suffix}"
            os.replace(snapshot.data, good)
            snapshot = Snapshot(snapshot.step, good)
        self.good, self.pending = snapshot, None

    def keep(self, step: int) -> None:
        """Take a snapshot at ``step`` and confirm it at once (a state known to be good)."""
        self.take(step)
        self.confirm()

    def drop_pending(self) -> None:
        """Forget the pending snapshot (its loss will never be checked)."""
        self.pending = None

    def restore(self) -> int:
        """Apply the good snapshot (else the pending one) and drop the pending; its step.

        Raises:
            RuntimeError: there is no snapshot at all.
        """
        snapshot = self.good if self.good is not None else self.pending
        if snapshot is None:
            raise RuntimeError(f"{self.who}: the guard has no snapshot to roll back to")
        data = snapshot.data if self._files is None else self._files[1].load(snapshot.data)
        self.binding.apply(data)
        self.drop_pending()
        return snapshot.step

    def clear(self) -> None:
        """Forget both snapshots (the next :meth:`due` is True)."""
        self.pending = self.good = None


def _step_of(snapshot: Snapshot | None) -> int | None:
    return None if snapshot is None else snapshot.step
