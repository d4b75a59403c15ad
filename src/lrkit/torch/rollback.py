"""The guard's snapshots in torch: the binding of :mod:`lrkit.rollback` to model and optimizer.

The policy (when a snapshot is due, pending and good, what a rollback
restores) is :class:`lrkit.rollback.Snapshots`'; here only what a snapshot
holds: the model's and the optimizer's state dicts, cloned in memory or in
``torch.save`` files.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch.optim import Optimizer

from lrkit.rollback import Snapshots

if TYPE_CHECKING:
    from pathlib import Path

    from lrkit.torch.driver import Scheduler


class _TorchState:
    """The torch binding (:class:`lrkit.rollback.FileBinding`): model and optimizer state dicts.

    :meth:`capture` clones the model's tensors and deep-copies the
    optimizer's state dict; :meth:`apply` loads them back (the optimizer a
    copy, as it keeps the tensors it is given). Files are ``torch.save``'d and
    read with ``weights_only=True``.
    """

    suffix = ".pt"

    def __init__(self, model: torch.nn.Module, optimizer: Optimizer) -> None:
        if not isinstance(model, torch.nn.Module):
            raise ValueError(
                f"Scheduler: a guard needs model= (the torch.nn.Module to roll back), got {model!r}"
            )
        self.model = model
        self.optimizer = optimizer

    def capture(self) -> dict[str, Any]:
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def apply(self, data: dict[str, Any]) -> None:
        self.model.load_state_dict(data["model"])
        # the optimizer keeps the tensors it is given: hand it a copy
        self.optimizer.load_state_dict(copy.deepcopy(data["optimizer"]))

    def save(self, data: dict[str, Any], path: Path) -> None:
        torch.save(data, path)

    def load(self, path: Path) -> dict[str, Any]:
        return torch.load(path, weights_only=True)  # type: ignore[no-any-return]


def _snapshots(
    model: torch.nn.Module, optimizer: Optimizer, every: int, directory: Any
) -> Snapshots:
    """The guard's snapshots of ``model`` and ``optimizer`` (in ``directory`` when given)."""
    return Snapshots(_TorchState(model, optimizer), every, directory, who="Scheduler")


class _BeforeUpdate:
    """Optimizer step pre-hook: lets the scheduler snapshot the weights an update starts from."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def __call__(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        self.scheduler._before_update()
