"""The small array API each schedule family writes its tensor formula against.

The framework adapters (:mod:`lrkit.optax`, :mod:`lrkit.keras`) need the
learning rate as a tensor expression of a (possibly traced) integer step: no
Python branching on the step, no host callbacks, no numpy on traced values.
Rather than write each formula once with ``jax.numpy`` and once with
``keras.ops``, every family's class defines it once, as
``_formula(self, ops, t)`` (see :mod:`lrkit.schedules`), against an :class:`Ops`
object: a thin binding of the dozen operations the formulas use to one array
library, with the shared precision-preserving helpers below. Each adapter
subclasses it in a few lines and calls :func:`lr_at`; :data:`NUMPY` binds it
to numpy, which is how ``values()`` computes a family that defines nothing
else. Nothing here knows any family: the adapters ask the schedule.

Precision: the step stays an integer for as long as it can (offsets, ``min``
with a length, ``divmod`` by a period), so converting it to float happens
after the exact part. A few rewrites keep float32 close to the float64 pure
schedules where a direct transcription would cancel (the families' formulas
use them; a new family should too):

* ``(1 + cos(pi x)) / 2`` is computed as ``sin(pi r / 2) ** 2`` with
  ``r = 1 - x`` taken from the integer count of steps still to go, so the end
  of a long cosine keeps its relative precision;
* a move from ``a`` to ``b`` is a blend ``a * w(r) + b * w(x)`` with weights
  >= 0 rather than ``a + (b - a) * w(x)`` (linear, warmup ramps, one_cycle,
  and polynomial with ``log``/``expm1``), exact at both ends;
* ``gamma ** k`` is ``exp(k * log(gamma))`` with ``log(gamma)`` worked out in
  float64 (a float32 ``gamma`` close to 1 would be off by a lot after 10^7
  steps);
* ``1 - sqrt(x)`` is ``r / (1 + sqrt(x))``;
* one_cycle's phase stops are not integers: phases are chosen by integer
  comparisons, and the steps next to each stop take their float64 values.

Integer constants wider than the step's integer type (a boundary past 2**31
when JAX's 64-bit mode is off) are steps the counter can never reach, and are
dropped or treated as "not yet" rather than converted with an overflow.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # lrkit.schedules imports this module: no import at run time here
    from lrkit.schedules import Schedule

__all__ = ["NUMPY", "NumpyOps", "Ops", "as_schedule", "lr_at"]

Array = Any


def as_schedule(schedule_or_spec: Schedule | str | Mapping[str, Any]) -> Schedule:
    """A schedule, from itself, a spec string or its ``to_dict()`` form, checked to
    have a tensor formula (its class, and every schedule it wraps, define ``_formula``).

    Raises:
        TypeError: for anything else (a controller has no closed form here), or a
            schedule whose family defines no ``_formula`` (the message names it).
    """
    from lrkit.schedules import Schedule
    from lrkit.spec import from_dict, parse

    if isinstance(schedule_or_spec, Schedule):
        _check_formulas(schedule_or_spec)
        return schedule_or_spec
    if isinstance(schedule_or_spec, str):
        parsed = parse(schedule_or_spec)
    elif isinstance(schedule_or_spec, Mapping):
        parsed = from_dict(dict(schedule_or_spec))
    else:
        raise TypeError(
            "expected an lrkit schedule, a spec string or a schedule dict, got "
            f"{type(schedule_or_spec).__name__}: {schedule_or_spec!r} (controllers such as "
            "Plateau depend on metrics and have no closed-form step -> lr function)"
        )
    if not isinstance(parsed, Schedule):
        raise TypeError(
            f"expected a schedule, got {type(parsed).__name__} ({parsed!r}); controllers "
            "such as plateau(...) depend on metrics and have no step -> lr function"
        )
    _check_formulas(parsed)
    return parsed


def _parts(schedule: Schedule) -> Iterator[Schedule]:
    """The schedule and those it wraps (fields holding schedules, or tuples of them)."""
    from lrkit.schedules import Schedule

    yield schedule
    for f in dataclasses.fields(schedule):  # type: ignore[arg-type]
        value = getattr(schedule, f.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, Schedule):
                yield from _parts(item)


def _check_formulas(schedule: Schedule) -> None:
    """Raise now, not at the first step, if some part of ``schedule`` has no tensor formula."""
    from lrkit.schedules import Schedule

    for part in _parts(schedule):
        if type(part)._formula is Schedule._formula:
            cls = type(part).__name__
            raise TypeError(
                f"{part.name or cls}(...) has no tensor formula for Keras and optax: define "
                f"_formula(self, ops, t) in class {cls}, the lr at an integer array of steps "
                f"t written with the array operations of ops (lrkit._formulas.Ops); see "
                f"'Adding a family' in lrkit.schedules (in {schedule})"
            )


class Ops(abc.ABC):
    """The array operations the formulas use, bound to one library.

    Subclasses set ``xp`` (a module with numpy-style ``where``, ``minimum``,
    ``maximum``, ``sin``, ``sqrt``, ``exp``, ``log``, ``expm1``,
    ``floor_divide``, ``searchsorted``, ``take`` and ``broadcast_to``) and
    implement :meth:`asarray`, :meth:`cast` and :meth:`shape`. The derived
    methods are the shared pieces of the formulas, in their precise forms
    (module docstring).

    Args:
        int_dtype: the integer dtype steps are computed in (``"int32"`` or ``"int64"``).
        float_dtype: the float dtype of the result.

    Examples:
        numpy has every operation, so its binding (:class:`NumpyOps`) is four
        lines; :data:`NUMPY` is one in float64:

        >>> import numpy as np
        >>> import lrkit
        >>> s = lrkit.warmup(lrkit.cosine(lr=1.0, steps=4), steps=2)
        >>> lr_at(s, np.arange(8), NUMPY).round(6).tolist()
        [0.0, 0.5, 1.0, 0.853553, 0.5, 0.146447, 0.0, 0.0]
        >>> NUMPY.fraction_left(np.arange(6), 4).tolist()  # 1 - min(t, 4) / 4
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """

    xp: Any = None

    def __init__(self, int_dtype: str, float_dtype: str) -> None:
        self.int_dtype = int_dtype
        self.float_dtype = float_dtype
        self.int_max = 2**31 - 1 if int_dtype == "int32" else 2**63 - 1

    # -- to implement ------------------------------------------------------

    @abc.abstractmethod
    def asarray(self, value: Any, dtype: str) -> Array:
        """A constant array of ``dtype``."""

    @abc.abstractmethod
    def cast(self, x: Array, dtype: str) -> Array:
        """``x`` converted to ``dtype``."""

    @abc.abstractmethod
    def shape(self, x: Array) -> Any:
        """The shape of ``x``, in the form ``broadcast_to`` takes."""

    # -- derived -----------------------------------------------------------

    def int_(self, n: int) -> Array:
        """The integer constant ``n`` as a step."""
        return self.asarray(n, self.int_dtype)

    def float_(self, t: Array) -> Array:
        """``t`` in the float dtype."""
        return self.cast(t, self.float_dtype)

    def fits(self, n: int) -> bool:
        """Whether the integer ``n`` is representable as a step."""
        return n <= self.int_max

    def min_int(self, t: Array, n: int) -> Array:
        """``min(t, n)``; ``t`` itself when ``n`` is beyond the integer range."""
        return self.xp.minimum(t, self.int_(n)) if self.fits(n) else t

    def before(self, t: Array, n: int, early: Array, late: Array) -> Array:
        """``early`` where ``t < n``, else ``late`` (``early`` when ``n`` is out of range)."""
        if not self.fits(n):
            return early
        return self.xp.where(t < self.int_(n), early, late)

    def offset(self, t: Array, n: int) -> Array:
        """``max(t - n, 0)``: the step seen by a part starting at ``n``."""
        if n == 0:
            return t
        if not self.fits(n):
            return t - t  # never reached; any finite step will do
        return self.xp.maximum(t - self.int_(n), self.int_(0))

    def power(self, base: float, k: Array) -> Array:
        """``base ** k`` for a float ``k``, as ``exp(k * log(base))``, base > 0."""
        if base == 1.0:
            return k * 0.0 + 1.0
        return self.xp.exp(k * math.log(base))

    def half_cosine_rest(self, rest: Array) -> Array:
        """``(1 + cos(pi x)) / 2`` given ``rest = 1 - x``: ``sin(pi rest / 2) ** 2``."""
        s = self.xp.sin(rest * (math.pi / 2))
        return s * s

    def half_cosine(self, t: Array, n: int) -> Array:
        """``(1 + cos(pi min(t, n) / n)) / 2`` from the integer steps still to go."""
        return self.half_cosine_rest(self.fraction_left(t, n))

    def fraction_left(self, t: Array, n: int) -> Array:
        """``1 - min(t, n) / n`` from the integer steps still to go."""
        if not self.fits(n):
            return 1.0 - self.float_(t) / n
        return self.float_(self.int_(n) - self.min_int(t, n)) / n

    def divmod(self, t: Array, n: int) -> tuple[Array, Array]:
        """``(t // n, t % n)`` in integers (``(0, t)`` when ``n`` is beyond the range)."""
        if not self.fits(n):
            return t - t, t
        q = self.xp.floor_divide(t, self.int_(n))
        return q, t - q * self.int_(n)


class NumpyOps(Ops):
    """:class:`Ops` bound to numpy: the default ``values()`` of a family that
    defines only its ``_formula``, and a quick check of a formula without Keras or JAX."""

    xp = np

    def asarray(self, value: Any, dtype: str) -> np.ndarray:
        return np.asarray(value, dtype=dtype)

    def cast(self, x: Any, dtype: str) -> np.ndarray:
        return np.asarray(x).astype(dtype, copy=False)

    def shape(self, x: Any) -> tuple[int, ...]:
        return np.shape(x)


#: Ops on numpy int64 steps, in float64.
NUMPY = NumpyOps("int64", "float64")


def lr_at(schedule: Schedule, t: Array, ops: Ops) -> Array:
    """The learning rate of ``schedule`` at the integer steps ``t``, as a float array.

    The schedule's own ``_formula(ops, t)``, cast to ``ops.float_dtype``, kept
    from dipping below 0 by float rounding, and broadcast to ``t``'s shape.

    Args:
        schedule: any lrkit schedule (controllers are not schedules).
        t: integer array of steps (>= 0) of ``ops.int_dtype``, any shape.
        ops: the array library to build the expression with.

    Returns:
        A float array of ``t``'s shape.

    Raises:
        NotImplementedError: a schedule whose family defines no ``_formula``
            (:func:`as_schedule` says so before any step is computed).
    """
    out = ops.cast(schedule._formula(ops, t), ops.float_dtype)
    # Every formula is >= 0 in exact arithmetic; keep float rounding from dipping below.
    return ops.xp.broadcast_to(ops.xp.maximum(out, 0.0), ops.shape(t))
