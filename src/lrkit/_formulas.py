"""Every schedule family's formula, written once against a small array API.

The framework adapters (:mod:`lrkit.optax`, :mod:`lrkit.keras`) need the
learning rate as a tensor expression of a (possibly traced) integer step: no
Python branching on the step, no host callbacks, no numpy on traced values.
Rather than write each formula twice, once with ``jax.numpy`` and once with
``keras.ops``, the formulas here take an :class:`Ops` object, a thin binding of
the dozen operations they use to one array library. Each adapter subclasses it
in a few lines.

Precision: the step stays an integer for as long as it can (offsets, ``min``
with a length, ``divmod`` by a period), so converting it to float happens
after the exact part. A few rewrites keep float32 close to the float64 pure
schedules where a direct transcription would cancel:

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
import math
from collections.abc import Mapping
from typing import Any

from lrkit.schedules import (
    WSD,
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    Exponential,
    InverseSqrt,
    Join,
    Linear,
    MultiStep,
    OneCycle,
    Polynomial,
    Replanned,
    Scaled,
    Schedule,
    StepDecay,
    Warmup,
)
from lrkit.spec import from_dict, parse

__all__ = ["Ops", "as_schedule", "lr_at"]

Array = Any


def as_schedule(schedule_or_spec: Schedule | str | Mapping[str, Any]) -> Schedule:
    """A schedule, from itself, a spec string or its ``to_dict()`` form.

    Raises:
        TypeError: for anything else (a controller has no closed form here).
    """
    if isinstance(schedule_or_spec, Schedule):
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
    return parsed


class Ops(abc.ABC):
    """The array operations the formulas use, bound to one library.

    Subclasses set ``xp`` (a module with numpy-style ``where``, ``minimum``,
    ``maximum``, ``sin``, ``sqrt``, ``exp``, ``floor_divide``, ``searchsorted``,
    ``take`` and ``broadcast_to``) and implement :meth:`asarray`, :meth:`cast`
    and :meth:`shape`.

    Args:
        int_dtype: the integer dtype steps are computed in (``"int32"`` or ``"int64"``).
        float_dtype: the float dtype of the result.

    Examples:
        numpy has every operation, so a binding to it is four lines:

        >>> import numpy as np
        >>> import lrkit
        >>> class NumpyOps(Ops):
        ...     xp = np
        ...     def asarray(self, value, dtype): return np.asarray(value, dtype=dtype)
        ...     def cast(self, x, dtype): return np.asarray(x).astype(dtype)
        ...     def shape(self, x): return np.shape(x)
        >>> s = lrkit.warmup(lrkit.cosine(lr=1.0, steps=4), steps=2)
        >>> lr_at(s, np.arange(8), NumpyOps("int64", "float64")).round(6).tolist()
        [0.0, 0.5, 1.0, 0.853553, 0.5, 0.146447, 0.0, 0.0]
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


def _half_cosine(ops: Ops, t: Array, n: int) -> Array:
    """``(1 + cos(pi min(t, n) / n)) / 2`` from the integer steps still to go."""
    return ops.half_cosine_rest(_fraction_left(ops, t, n))


def _fraction_left(ops: Ops, t: Array, n: int) -> Array:
    """``1 - min(t, n) / n`` from the integer steps still to go."""
    if not ops.fits(n):
        return 1.0 - ops.float_(t) / n
    return ops.float_(ops.int_(n) - ops.min_int(t, n)) / n


def _divmod(ops: Ops, t: Array, n: int) -> tuple[Array, Array]:
    if not ops.fits(n):
        return t - t, t
    q = ops.xp.floor_divide(t, ops.int_(n))
    return q, t - q * ops.int_(n)


def lr_at(schedule: Schedule, t: Array, ops: Ops) -> Array:
    """The learning rate of ``schedule`` at the integer steps ``t``, as a float array.

    Args:
        schedule: any lrkit schedule (controllers are not schedules).
        t: integer array of steps (>= 0) of ``ops.int_dtype``, any shape.
        ops: the array library to build the expression with.

    Returns:
        A float array of ``t``'s shape.

    Raises:
        TypeError: for an object that is not a schedule of a known family.
    """
    out = ops.cast(_formula(schedule, t, ops), ops.float_dtype)
    # Every formula is >= 0 in exact arithmetic; keep float rounding from dipping below.
    return ops.xp.broadcast_to(ops.xp.maximum(out, 0.0), ops.shape(t))


def _formula(s: Schedule, t: Array, ops: Ops) -> Array:
    xp = ops.xp
    if isinstance(s, Constant):
        return ops.float_(t) * 0.0 + s.lr

    if isinstance(s, StepDecay):
        k, _ = _divmod(ops, t, s.step_size)
        return s.lr * ops.power(s.gamma, ops.float_(k))

    if isinstance(s, MultiStep):
        reachable = [m for m in s.milestones if ops.fits(m)]
        if not reachable:
            return ops.float_(t) * 0.0 + s.lr
        k = xp.searchsorted(ops.asarray(reachable, ops.int_dtype), t, side="right")
        return s.lr * ops.power(s.gamma, ops.float_(k))

    if isinstance(s, Exponential):
        return s.lr * ops.power(s.gamma, ops.float_(t))

    if isinstance(s, Linear):
        # start * (1 - x) + end * x: both terms >= 0, no cancellation, exact at x = 0.
        x = ops.float_(t) / s.steps
        moving = s.start_lr * _fraction_left(ops, t, s.steps) + s.end_lr * x
        return ops.before(t, s.steps, moving, ops.float_(t) * 0.0 + s.end_lr)

    if isinstance(s, Cosine):
        return s.min_lr + (s.lr - s.min_lr) * _half_cosine(ops, t, s.steps)

    if isinstance(s, CosineRestarts):
        return _cosine_restarts(s, t, ops)

    if isinstance(s, Polynomial):
        # lr * L + end_lr * (1 - L) with L = (1 - x) ** power, both weights from
        # exp / expm1 so that neither cancels (exactly lr at x = 0, end_lr at x = 1).
        # 1 - x comes from the integer steps still to go: exactly 0 at the end even
        # where XLA turns the division into a multiplication by a rounded reciprocal.
        log_left = s.power * xp.log(_fraction_left(ops, t, s.steps))
        return s.lr * xp.exp(log_left) - s.end_lr * xp.expm1(log_left)

    if isinstance(s, Cyclic):
        up, down = s.step_size_up, s._down
        cycle, pos = _divmod(ops, t, up + down)
        pos_f = ops.float_(pos)
        rising = pos <= ops.int_(min(up, ops.int_max))
        height = xp.where(rising, pos_f / up, (up + down - pos_f) / down)
        if s.mode == "triangular":
            scale = 1.0
        elif s.mode == "triangular2":
            scale = ops.power(0.5, ops.float_(cycle))
        else:
            scale = ops.power(s.gamma, ops.float_(t))
        return s.min_lr + (s.max_lr - s.min_lr) * height * scale

    if isinstance(s, OneCycle):
        return _one_cycle(s, t, ops)

    if isinstance(s, InverseSqrt):
        w = s.warmup_steps
        tf = ops.float_(t)
        rising = s.lr * tf / w
        falling = s.lr * xp.sqrt(w / xp.maximum(tf, float(w)))
        return ops.before(t, w, rising, falling)

    if isinstance(s, WSD):
        return _wsd(s, t, ops)

    if isinstance(s, Warmup):
        inner = _formula(s.schedule, ops.offset(t, s.steps), ops)
        x = ops.float_(ops.min_int(t, s.steps)) / s.steps
        rest = _fraction_left(ops, t, s.steps)  # 1 - x, from the integer steps to go
        target = s.schedule._at(0)
        # Blends of start_lr and target with weights >= 0 summing to 1: no cancellation.
        if s.shape == "exponential":
            ramp = s.start_lr * ops.power(target / s.start_lr, x)
        elif s.shape == "linear":
            ramp = s.start_lr * rest + target * x
        else:  # (1 - cos(pi x)) / 2 = sin(pi x / 2) ** 2, and 1 minus it = sin(pi rest / 2) ** 2
            ramp = s.start_lr * ops.half_cosine_rest(rest) + target * ops.half_cosine_rest(x)
        return ops.before(t, s.steps, ramp, inner)

    if isinstance(s, Join):
        bounds = [b for b in s.boundaries if ops.fits(b)]
        parts = s.schedules[: len(bounds) + 1]  # parts past the integer range never run
        begins = (0, *bounds)
        out = _formula(parts[-1], ops.offset(t, begins[-1]), ops)
        for part, begin, end in reversed(list(zip(parts[:-1], begins[:-1], bounds, strict=True))):
            out = ops.before(t, end, _formula(part, ops.offset(t, begin), ops), out)
        return out

    if isinstance(s, Scaled):
        return s.factor * _formula(s.schedule, t, ops)

    if isinstance(s, Replanned):
        return _replanned(s, t, ops)

    raise TypeError(
        f"no tensor formula for {type(s).__name__} ({s!r}); expected an lrkit schedule "
        "of one of the families in lrkit.FACTORIES, or a join or scaled schedule"
    )


def _cosine_restarts(s: CosineRestarts, t: Array, ops: Ops) -> Array:
    xp = ops.xp
    if s.period_mult == 1:
        cycle, into = _divmod(ops, t, s.period)
        rest = _fraction_left(ops, into, s.period)
    else:
        # Cycle starts up to the largest step the integer type holds, for a lookup.
        starts, ends = [0], [s.period]
        while ends[-1] <= ops.int_max:
            length = ends[-1] - starts[-1]
            starts.append(ends[-1])
            ends.append(ends[-1] + length * s.period_mult)
        cycle = xp.searchsorted(ops.asarray(starts, ops.int_dtype), t, side="right") - 1
        begin = xp.take(ops.asarray(starts, ops.int_dtype), cycle)
        lengths = [float(e - b) for b, e in zip(starts, ends, strict=True)]
        length = xp.take(ops.asarray(lengths, ops.float_dtype), cycle)
        rest = (length - ops.float_(t - begin)) / length  # exact below 2**24 steps
    amplitude = (s.lr - s.min_lr) * ops.power(s.decay, ops.float_(cycle))
    return s.min_lr + amplitude * ops.half_cosine_rest(rest)


def _phase_values(
    s: OneCycle,
    phases: list[tuple[float, float, float]],
    u: Array,
    ops: Ops,
    last_rest: Array | None = None,
) -> list[Array]:
    """Each one-cycle phase's value at position ``u`` (the caller picks the phase).

    ``last_rest``, when given, is the last phase's distance to its end, in
    steps, taken from integer counts by the caller (more precise than
    ``stop - u`` in float32).
    """
    begin = 0.0
    values = []
    for k, (stop, a, b) in enumerate(phases):
        span = stop - begin
        if span > 0:
            x = (u - begin) / span
            if last_rest is not None and k == len(phases) - 1:
                rest = last_rest / span
            else:
                rest = (stop - u) / span
        else:
            x = u * 0.0 + 1.0
            rest = u * 0.0
        # Blends of a and b with weights >= 0 summing to 1 (no cancellation when a << b):
        # b + (a - b) * (1 + cos(pi x)) / 2 = a * sin(pi rest / 2)**2 + b * sin(pi x / 2)**2.
        if s.anneal == "cos":
            values.append(a * ops.half_cosine_rest(rest) + b * ops.half_cosine_rest(x))
        else:
            values.append(a * rest + b * x)
        begin = stop
    return values


def _one_cycle(s: OneCycle, t: Array, ops: Ops) -> Array:
    xp = ops.xp
    last = s.steps - 1
    t = ops.min_int(t, last)
    tf = ops.float_(t)
    phases = s._phases()
    values = _phase_values(s, phases, tf, ops)
    # The first phase whose stop is >= t; for an integer t that is t <= floor(stop),
    # compared exactly in integers (a float32 stop could round across t).
    out = values[-1]
    for (stop, _, _), value in reversed(list(zip(phases[:-1], values[:-1], strict=True))):
        out = ops.before(t, math.floor(stop) + 1, value, out)
    # Phase stops are not integers, and a phase can be shorter than float32 can
    # resolve near a step (pct_start * steps - 1 a hair below an integer). The
    # steps next to each stop take the float64 value, worked out here.
    near = {math.floor(stop) + d for stop, _, _ in phases for d in (-1, 0, 1, 2)}
    for k in sorted(k for k in near if 0 <= k <= last and ops.fits(k)):
        out = xp.where(t == ops.int_(k), s._at(k), out)
    return out


def _wsd(s: WSD, t: Array, ops: Ops) -> Array:
    xp = ops.xp
    w, d = s.warmup_steps, s.decay_count
    out = ops.float_(t) * 0.0 + s.lr
    if w:
        out = ops.before(t, w, s.lr * ops.float_(t) / w, out)
    start = s.steps - d
    if d and ops.fits(start):
        into = ops.offset(t, start)
        rest = _fraction_left(ops, into, d)  # 1 - x, from the integer steps to go
        into = ops.min_int(into, d)
        if s.decay_shape == "1-sqrt":
            shape = rest / (1.0 + xp.sqrt(ops.float_(into) / d))
        elif s.decay_shape == "linear":
            shape = rest
        else:
            shape = ops.half_cosine_rest(rest)
        out = ops.before(t, start, out, s.min_lr + (s.lr - s.min_lr) * shape)
    return out


# --------------------------------------------------------------------------
# Replanned schedules: the old plan evaluated between its integer steps.
# --------------------------------------------------------------------------


def _replanned(s: Replanned, t: Array, ops: Ops) -> Array:
    """``s.schedule`` before ``s.at``; after it, ``s.schedule`` at the remapped position.

    The position is carried as two floats: ``u`` (the old plan's step) and ``g``
    (the old plan's steps still to go before its end), ``g`` worked out from the
    integer count of new steps still to go, so a decay keeps its relative
    precision near its end as the integer formulas do.
    """
    if s._same is not None:
        return _formula(s._same, t, ops)
    head = _formula(s.schedule, t, ops)
    if not ops.fits(s.at):
        return head  # the change lies past the largest step: never reached
    since = ops.offset(t, s.at)  # 0 before at, where the head is taken
    rest = _fraction_left(ops, since, s._new_span)  # 1 - fraction of the new remainder done
    done = ops.float_(ops.min_int(since, s._new_span)) / s._new_span
    u = s.at + s._old_span * done
    tail = _at_position(s.schedule, u, s._old_span * rest, ops)
    return ops.before(t, s.at, head, tail)


def _at_position(s: Schedule, u: Array, g: Array, ops: Ops) -> Array:
    """A replannable schedule at the float position ``u``, ``g`` steps before its end."""
    xp = ops.xp
    if isinstance(s, Cosine):
        return s.min_lr + (s.lr - s.min_lr) * ops.half_cosine_rest(g / s.steps)
    if isinstance(s, Linear):
        return s.start_lr * (g / s.steps) + s.end_lr * xp.minimum(u / s.steps, 1.0)
    if isinstance(s, Polynomial):
        log_left = s.power * xp.log(g / s.steps)
        return s.lr * xp.exp(log_left) - s.end_lr * xp.expm1(log_left)
    if isinstance(s, WSD):
        return _wsd_at_position(s, u, g, ops)
    if isinstance(s, OneCycle):
        return _one_cycle_at_position(s, u, g, ops)
    if isinstance(s, Replanned):
        if s._tail is not None:  # a wsd with its decay moved: the same end step
            return _at_position(s._tail, u, g, ops)
        shift = float(s._new_end - s._old_end)  # its end step minus its schedule's
        if s._same is not None:  # the plan was over: the schedule itself, held
            return _at_position(
                s.schedule, xp.minimum(u, float(s._old_end)), xp.maximum(g - shift, 0.0), ops
            )
        head = _at_position(s.schedule, u, xp.maximum(g - shift, 0.0), ops)
        done = xp.minimum(xp.maximum((u - s.at) / s._new_span, 0.0), 1.0)
        rest = xp.minimum(xp.maximum(g / s._new_span, 0.0), 1.0)
        tail = _at_position(s.schedule, s.at + s._old_span * done, s._old_span * rest, ops)
        return xp.where(u < s.at, head, tail)
    raise TypeError(f"no replan formula for {type(s).__name__} ({s!r})")


def _wsd_at_position(s: WSD, u: Array, g: Array, ops: Ops) -> Array:
    xp = ops.xp
    w, d = s.warmup_steps, s.decay_count
    out = u * 0.0 + s.lr
    if w:
        out = xp.where(u < w, s.lr * u / w, out)
    if d:
        rest = xp.minimum(g, float(d)) / d  # 1 - x, from the steps still to go
        if s.decay_shape == "1-sqrt":
            shape = rest / (1.0 + xp.sqrt(xp.maximum(1.0 - rest, 0.0)))
        elif s.decay_shape == "linear":
            shape = rest
        else:
            shape = ops.half_cosine_rest(rest)
        out = xp.where(u < s.steps - d, out, s.min_lr + (s.lr - s.min_lr) * shape)
    return out


def _one_cycle_at_position(s: OneCycle, u: Array, g: Array, ops: Ops) -> Array:
    xp = ops.xp
    u = xp.minimum(u, float(s.steps - 1))
    phases = s._phases()
    # The last phase ends where the plan does: its rest is g, to full precision.
    values = _phase_values(s, phases, u, ops, last_rest=g)
    out = values[-1]
    for (stop, _, _), value in reversed(list(zip(phases[:-1], values[:-1], strict=True))):
        out = xp.where(u <= stop, value, out)
    return out
