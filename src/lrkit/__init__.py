"""lrkit: the learning rate, done once and done right.

The pure core (schedules, the spec language) imports nothing heavier than
numpy. Framework adapters live in ``lrkit.torch``, ``lrkit.keras`` and
``lrkit.optax`` and import their framework only when imported themselves.
``lrkit.task``, ``lrkit.Trial``, ``lrkit.compare`` and ``lrkit.tune`` put
the user's own training into ``lrkit compare`` and ``lrkit tune``;
``lrkit.auto`` chooses its lr and schedule by itself.

Examples:
    >>> import lrkit
    >>> s = lrkit.parse("warmup(cosine(lr=3e-4, steps=10000, min_lr=3e-5), steps=500)")
    >>> s(0), s(500), s(10500)
    (0.0, 0.0003, 3e-05)
"""

from typing import Any

from lrkit.bench.trial import Pruned, Task, Trial, task
from lrkit.controllers import Adaptive, Diverged, Guard, Plateau
from lrkit.scaling import scale_lr
from lrkit.schedules import (
    FACTORIES,
    Schedule,
    constant,
    cosine,
    cosine_restarts,
    cyclic,
    exponential,
    inverse_sqrt,
    join,
    linear,
    multistep,
    one_cycle,
    polynomial,
    step_decay,
    swa,
    warmup,
    wsd,
)
from lrkit.spec import from_dict, parse

__version__ = "0.1.0"

__all__ = [
    "FACTORIES",
    "Adaptive",
    "Diverged",
    "Guard",
    "Plateau",
    "Pruned",
    "Schedule",
    "Task",
    "Trial",
    "auto",
    "compare",
    "constant",
    "cosine",
    "cosine_restarts",
    "cyclic",
    "exponential",
    "from_dict",
    "inverse_sqrt",
    "join",
    "linear",
    "multistep",
    "one_cycle",
    "parse",
    "polynomial",
    "scale_lr",
    "step_decay",
    "swa",
    "task",
    "tune",
    "warmup",
    "wsd",
]

#: Library entry points imported on first use (they pull in the runner).
_LAZY = {"auto": "lrkit.bench.auto", "compare": "lrkit.bench.compare", "tune": "lrkit.bench.tune"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lrkit' has no attribute {name!r}")
