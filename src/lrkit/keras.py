"""lrkit schedules as Keras 3 learning-rate schedules, on any Keras backend.

:func:`to_keras` wraps an lrkit schedule (or a spec string, or its dict) in
:class:`KerasSchedule`, a ``keras.optimizers.schedules.LearningRateSchedule``
built from ``keras.ops``, so the same code runs on the jax, torch and
tensorflow backends. It follows SPEC §5's step convention: the update made
when ``optimizer.iterations`` is ``i`` uses ``s(i)``, computed from the
integer step every time (no accumulated drift, exact resume).

Importing this module registers :class:`KerasSchedule` with Keras as
``"lrkit>KerasSchedule"``, so a model saved with it loads with
``keras.saving.load_model`` and no ``custom_objects`` in any process that has
imported ``lrkit.keras``. Its config is the schedule's ``to_dict()``.

Backend: Keras reads ``KERAS_BACKEND`` (or ``~/.keras/keras.json``) when it is
first imported, and defaults to tensorflow. When nothing was chosen and
tensorflow is not installed, importing this module before Keras picks jax,
else torch, instead of failing on a missing tensorflow; a backend you set is
never changed.

Examples:
    >>> import keras
    >>> from lrkit.keras import to_keras
    >>> lr = to_keras("warmup(cosine(lr=0.1, steps=100), steps=10)")
    >>> round(float(lr(5)), 6), round(float(lr(10)), 6), float(lr(110))
    (0.05, 0.1, 0.0)
    >>> lr.get_config()["schedule"]["type"]
    'warmup'
    >>> optimizer = keras.optimizers.Adam(learning_rate=lr)
    >>> round(float(optimizer.learning_rate), 6)  # s(optimizer.iterations) = s(0)
    0.0
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _choose_backend_if_unset() -> None:
    """Set ``KERAS_BACKEND`` to an installed backend when Keras' default is not installed."""
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND"):
        return
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    configured = "tensorflow"
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no or a bad config
        configured = json.loads((home / "keras.json").read_text()).get("backend", configured)
    if importlib.util.find_spec(configured) is not None:
        return
    for name in ("jax", "torch"):
        if importlib.util.find_spec(name) is not None:
            os.environ["KERAS_BACKEND"] = name
            return


_choose_backend_if_unset()

import keras  # noqa: E402  (after the backend choice above)
from keras import ops  # noqa: E402

from lrkit._formulas import Ops, as_schedule, lr_at  # noqa: E402
from lrkit.schedules import Schedule  # noqa: E402

__all__ = ["KerasSchedule", "to_keras"]


class _KerasOps(Ops):
    """:class:`lrkit._formulas.Ops` bound to ``keras.ops`` (any backend)."""

    xp = ops

    def asarray(self, value: Any, dtype: str) -> Any:
        return ops.convert_to_tensor(value, dtype=dtype)

    def cast(self, x: Any, dtype: str) -> Any:
        return ops.cast(x, dtype)

    def shape(self, x: Any) -> Any:
        return ops.shape(x)


@keras.saving.register_keras_serializable(package="lrkit")
class KerasSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """An lrkit schedule as a Keras ``LearningRateSchedule``.

    Called with the optimizer's iteration count (an int64 variable, a tensor
    of any integer dtype, or a Python int), it returns ``s(step)`` as a
    float32 tensor of the same shape, computed with ``keras.ops`` from the
    integer step.

    Args:
        schedule: an lrkit schedule, a spec string, or a schedule's ``to_dict()``.

    Attributes:
        schedule: the pure lrkit schedule.

    Examples:
        >>> import keras
        >>> lr = KerasSchedule("step_decay(lr=1.0, step_size=10)")
        >>> float(lr(25))
        0.25
        >>> keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(lr)) == lr
        True
    """

    def __init__(self, schedule: Schedule | str | Mapping[str, Any]) -> None:
        super().__init__()
        self.schedule = as_schedule(schedule)

    def __call__(self, step: Any) -> Any:
        step = ops.convert_to_tensor(step)
        dtype = keras.backend.standardize_dtype(step.dtype)
        if "int" not in dtype:
            if "float" not in dtype:
                raise TypeError(f"step must be an integer tensor, got dtype {dtype}")
            step = ops.floor(step)
        int_dtype = "int32" if dtype == "int32" else "int64"
        t = ops.maximum(ops.cast(step, int_dtype), 0)  # negative steps: step 0
        return lr_at(self.schedule, t, _KerasOps(int_dtype, keras.config.floatx()))

    def get_config(self) -> dict[str, Any]:
        """``{"schedule": schedule.to_dict()}``: JSON types, read back by ``from_config``."""
        return {"schedule": self.schedule.to_dict()}

    def __repr__(self) -> str:
        return f"to_keras({str(self.schedule)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KerasSchedule) and other.schedule == self.schedule

    def __hash__(self) -> int:
        return hash(("KerasSchedule", self.schedule))


def to_keras(schedule_or_spec: Schedule | str | Mapping[str, Any]) -> KerasSchedule:
    """A Keras ``LearningRateSchedule`` computing an lrkit schedule with ``keras.ops``.

    Args:
        schedule_or_spec: an lrkit schedule, a spec string such as
            ``"cosine(lr=1e-3, steps=1000)"``, or a schedule's ``to_dict()``.

    Returns:
        A :class:`KerasSchedule`; pass it as any Keras optimizer's ``learning_rate``.

    Raises:
        TypeError: for something that is not a schedule (a controller, a number).
        ValueError: for an invalid spec, with the offending part.

    Examples:
        >>> import keras
        >>> optimizer = keras.optimizers.SGD(learning_rate=to_keras("cosine(lr=1.0, steps=4)"))
        >>> _ = optimizer.iterations.assign(2)
        >>> round(float(optimizer.learning_rate), 6)
        0.5
    """
    return KerasSchedule(schedule_or_spec)
