"""The guard's snapshots: what a divergence rolls the model and optimizer back to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.optim import Optimizer

if TYPE_CHECKING:
    from pathlib import Path

    from lrkit.torch.driver import Scheduler


class _Snapshots:
    """The guard's last good snapshot of model and optimizer, and the one awaiting its loss.

    A snapshot is taken just before an update (an optimizer step pre-hook), at
    every ``every``-th step and whenever there is none. It is *pending* until
    :meth:`confirm` (the loss of that step, computed with exactly those
    weights, was fine) makes it the *good* one. In memory (tensors cloned) or,
    with ``directory``, in two files there (``guard-pending.pt``,
    ``guard-good.pt``; one directory per scheduler).
    """

    def __init__(self, model: torch.nn.Module, every: int, directory: Any) -> None:
        import pathlib

        if not isinstance(model, torch.nn.Module):
            raise ValueError(
                f"Scheduler: a guard needs model= (the torch.nn.Module to roll back), got {model!r}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"Scheduler: snapshot_every must be an integer >= 1, got {every!r}")
        self.model = model
        self.every = every
        self.directory = None if directory is None else pathlib.Path(directory)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.pending: Any = None
        self.good: Any = None
        self.pending_step: int | None = None
        self.good_step: int | None = None

    def due(self, step: int) -> bool:
        return self.pending is None and (self.good is None or step % self.every == 0)

    def take(self, optimizer: Optimizer, step: int) -> None:
        import copy

        data: dict[str, Any] | Path = {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(optimizer.state_dict()),
        }
        if self.directory is not None:
            path = self.directory / "guard-pending.pt"
            torch.save(data, path)
            data = path
        self.pending, self.pending_step = data, step

    def drop_pending(self) -> None:
        self.pending, self.pending_step = None, None

    def confirm(self) -> None:
        if self.pending is None:
            return
        data = self.pending
        if self.directory is not None:
            import os

            good = self.directory / "guard-good.pt"
            os.replace(self.pending, good)
            data = good
        self.good, self.good_step = data, self.pending_step
        self.drop_pending()

    def restore(self, optimizer: Optimizer) -> int:
        """Load the good snapshot (else the pending one) into model and optimizer; its step."""
        import copy

        data, step = (
            (self.good, self.good_step)
            if self.good is not None
            else (self.pending, self.pending_step)
        )
        if data is None:
            raise RuntimeError("Scheduler: the guard has no snapshot to roll back to")
        if not isinstance(data, dict):
            data = torch.load(data, weights_only=True)
        self.model.load_state_dict(data["model"])
        # the optimizer keeps the tensors it is given: hand it a copy
        optimizer.load_state_dict(copy.deepcopy(data["optimizer"]))
        self.drop_pending()
        return int(step or 0)

    def clear(self) -> None:
        self.drop_pending()
        self.good, self.good_step = None, None


class _BeforeUpdate:
    """Optimizer step pre-hook: lets the scheduler snapshot the weights an update starts from."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def __call__(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        self.scheduler._before_update()
