"""PyTorch adapters: drop-in schedulers with torch's names, and a driver for lrkit schedules.

This is the only lrkit module that imports torch; ``import lrkit`` does not.

**Drop-ins.** ``from lrkit.torch import StepLR`` instead of
``from torch.optim.lr_scheduler import StepLR``: the same class names,
signatures, defaults and values (quirks included, see ``docs/torch.md``).
What differs is where the values come from. torch's chainable form computes
the lr at step t from ``group["lr"]`` at step t-1, so anything else that
writes the optimizer's lrs (loading its state after the scheduler was built,
another scheduler, user code) changes every later value. lrkit's drop-ins
compute each value from their own state: the step count through a closed
form where that reproduces torch, and otherwise (multiplicative forms,
chains, sequences, plateau cuts) from the values they keep themselves. The
optimizer is only ever written, never read back as the truth, so a resume is
exact whether the optimizer's state is loaded before or after the scheduler
is built.

Examples:
    >>> import torch
    >>> from lrkit.torch import MultiStepLR
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> sched = MultiStepLR(opt, milestones=[2, 4], gamma=0.1)
    >>> lrs = []
    >>> for _ in range(5):
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(round(sched.get_last_lr()[0], 12))
    >>> lrs
    [0.1, 0.01, 0.01, 0.001, 0.001]
"""

from lrkit.torch.composites import ChainedScheduler, SequentialLR
from lrkit.torch.driver import Scheduler
from lrkit.torch.dropins import (
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    CyclicLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    MultiplicativeLR,
    MultiStepLR,
    OneCycleLR,
    PolynomialLR,
    StepLR,
)
from lrkit.torch.finder import FinderResult, find_lr
from lrkit.torch.memory import StateSize, optimizer_state_size
from lrkit.torch.migrate import create_scheduler_v2, get_scheduler
from lrkit.torch.monitor import Monitor
from lrkit.torch.plateau import ReduceLROnPlateau

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "FinderResult",
    "LambdaLR",
    "LinearLR",
    "Monitor",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "Scheduler",
    "SequentialLR",
    "StateSize",
    "StepLR",
    "create_scheduler_v2",
    "find_lr",
    "get_scheduler",
    "optimizer_state_size",
]
