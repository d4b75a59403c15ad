"""Optimizers for ``lrkit compare``: torch.optim and learning-rate-free methods.

Each entry is an :class:`OptimizerSpec`. ``spec.create(params, lr)`` builds
the torch optimizer; ``spec.effective_lr(optimizer)`` reads the step size it
is about to use (for Prodigy and D-Adaptation ``d * lr``, their estimate of
the distance to the solution times the multiplier).

Learning-rate-free methods (``lr_free=True``) take the grid's lr as a
*multiplier* of their own default lr (``base_lr``): 1.0 for Prodigy and
D-Adaptation, 0.0025 for Schedule-Free AdamW, whose lr is not adapted.
Schedule-Free runs its own rule, a constant (``own_schedule``); Prodigy and
D-Adaptation follow the grid's schedule shape applied to their multiplier,
as their authors recommend (e.g. cosine). Their packages are imported only
when such an optimizer is created, with an error naming the ``lrfree``
extra if they are missing.

==========  ===========================================================
name        torch optimizer
==========  ===========================================================
sgd         SGD
momentum    SGD(momentum=0.9)
nesterov    SGD(momentum=0.9, nesterov=True)
adagrad     Adagrad
rmsprop     RMSprop
adam        Adam
adamw       AdamW (weight_decay=0.01)
amsgrad     Adam(amsgrad=True)
schedulefree  schedulefree.AdamWScheduleFree (lr = multiplier x 0.0025)
prodigy     prodigyopt.Prodigy (lr = multiplier)
dadapt      dadaptation.DAdaptAdam (lr = multiplier)
==========  ===========================================================

Examples:
    >>> from lrkit.bench.optimizers import OPTIMIZERS, get_optimizer
    >>> get_optimizer("prodigy").lr_free, get_optimizer("adam").lr_free
    (True, False)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["OPTIMIZERS", "OptimizerSpec", "get_optimizer"]


def _lrfree_import(optimizer: str, module: str, package: str) -> Any:
    """Import ``module`` for ``optimizer`` or explain how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"optimizer {optimizer!r} needs the {package!r} package, which is not "
            f"installed; install the extra with: pip install 'lrkit[lrfree]'"
        ) from exc


def _sgd(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(params, lr=lr)


def _momentum(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def _nesterov(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)


def _adagrad(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adagrad(params, lr=lr)


def _rmsprop(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.RMSprop(params, lr=lr)


def _adam(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adam(params, lr=lr)


def _adamw(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)


def _amsgrad(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adam(params, lr=lr, amsgrad=True)


def _schedulefree(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    module = _lrfree_import("schedulefree", "schedulefree", "schedulefree")
    return module.AdamWScheduleFree(params, lr=lr)


def _prodigy(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    module = _lrfree_import("prodigy", "prodigyopt", "prodigyopt")
    return module.Prodigy(params, lr=lr)


def _dadapt(params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    module = _lrfree_import("dadapt", "dadaptation", "dadaptation")
    return module.DAdaptAdam(params, lr=lr)


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer of the benchmark.

    Attributes:
        name: Registry name (``"adam"``).
        description: One line for listings.
        factory: ``factory(params, lr)`` -> a torch optimizer.
        lr_free: Whether the grid's lr is a multiplier of ``base_lr``.
        base_lr: The lr at multiplier 1 (LR-free methods only; 1.0 otherwise).
        own_schedule: A schedule spec the optimizer always runs, whatever the
            grid's schedule (Schedule-Free: ``"constant()"``); ``None`` when
            it follows the grid's schedule.
        uses_d: Whether its step size is ``d * lr`` with ``d`` in the param
            group (Prodigy, D-Adaptation).
        switches_mode: Whether it has ``train()`` / ``eval()`` modes that
            must be switched around evaluation (Schedule-Free).
    """

    name: str
    description: str
    factory: Callable[[Iterable[Any], float], torch.optim.Optimizer] = field(
        repr=False, compare=False
    )
    lr_free: bool = False
    base_lr: float = 1.0
    own_schedule: str | None = None
    uses_d: bool = False
    switches_mode: bool = False

    def group_lr(self, lr: float) -> float:
        """Return the param-group lr for a grid ``lr`` (multiplier x base_lr)."""
        return lr * self.base_lr if self.lr_free else lr

    def create(self, params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
        """Build the optimizer with param-group lr ``lr`` (already a group lr).

        Raises:
            ImportError: For an LR-free method whose package is missing.
        """
        optimizer = self.factory(params, lr)
        if self.switches_mode:
            optimizer.train()  # type: ignore[attr-defined]
        return optimizer

    def effective_lr(self, optimizer: torch.optim.Optimizer) -> float:
        """Return the step size the next ``step()`` uses (first param group).

        For Prodigy and D-Adaptation this is ``d * lr`` read before the step
        (both compute their update with the ``d`` they hold when the step
        starts); for the others it is the group's ``lr``.
        """
        group = optimizer.param_groups[0]
        lr = float(group["lr"])
        if self.uses_d:
            return float(group["d"]) * lr
        return lr

    def eval_mode(self, optimizer: torch.optim.Optimizer) -> None:
        """Switch to evaluation weights (Schedule-Free's averaged iterate)."""
        if self.switches_mode:
            optimizer.eval()  # type: ignore[attr-defined]

    def train_mode(self, optimizer: torch.optim.Optimizer) -> None:
        """Switch back to training weights after :meth:`eval_mode`."""
        if self.switches_mode:
            optimizer.train()  # type: ignore[attr-defined]


OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in (
        OptimizerSpec("sgd", "plain SGD", _sgd),
        OptimizerSpec("momentum", "SGD with heavy-ball momentum 0.9", _momentum),
        OptimizerSpec("nesterov", "SGD with Nesterov momentum 0.9", _nesterov),
        OptimizerSpec("adagrad", "Adagrad", _adagrad),
        OptimizerSpec("rmsprop", "RMSprop (alpha 0.99)", _rmsprop),
        OptimizerSpec("adam", "Adam (betas 0.9, 0.999)", _adam),
        OptimizerSpec("adamw", "AdamW, decoupled weight decay 0.01", _adamw),
        OptimizerSpec("amsgrad", "Adam with the AMSGrad max of second moments", _amsgrad),
        OptimizerSpec(
            "schedulefree",
            "Schedule-Free AdamW (lr = multiplier x 0.0025, constant)",
            _schedulefree,
            lr_free=True,
            base_lr=0.0025,
            own_schedule="constant()",
            switches_mode=True,
        ),
        OptimizerSpec(
            "prodigy",
            "Prodigy, distance-adaptive Adam (lr = multiplier, effective d x lr)",
            _prodigy,
            lr_free=True,
            uses_d=True,
        ),
        OptimizerSpec(
            "dadapt",
            "D-Adaptation Adam (lr = multiplier, effective d x lr)",
            _dadapt,
            lr_free=True,
            uses_d=True,
        ),
    )
}


def get_optimizer(name: str) -> OptimizerSpec:
    """Return the registered optimizer called ``name``.

    Raises:
        ValueError: If no optimizer has that name (the message lists them).
    """
    try:
        return OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown optimizer {name!r}; known optimizers: {', '.join(OPTIMIZERS)}"
        ) from None
