"""Closed-form learning-rate schedules.

A schedule is an immutable value that maps a step (an int >= 0) to a learning
rate. Every family here is a frozen dataclass whose class holds all of it: its
fields, its checks, its length, where its phases begin (``_phase_starts``, for
plots and controllers) and its formula. The formula is defined once, as
``_formula(ops, t)``: written against a small array API
(:class:`lrkit._formulas.Ops`), the same definition runs on numpy, ``keras.ops``
and ``jax.numpy``, and the Keras and optax adapters ask each schedule for it,
knowing no family. For speed, the built-in families also transcribe their
docstring formula with :mod:`math` (``_at``: one step, under 2 µs) and numpy
(``_values``: whole arrays); those two agree to 1e-12 relative, and the tensor
formula, written in forms that keep float32 precise, agrees with them to
float32 rounding (to about 1e-12 in float64).

Nothing here imports anything heavier than numpy. Composition (warmup, joins,
scaling) works by offsetting the step, never by mutating state, so the value
at any step depends on the step alone and a resume only needs the step.

Examples:
    >>> import lrkit
    >>> s = lrkit.warmup(lrkit.cosine(lr=0.1, steps=100), steps=10)
    >>> round(s(5), 6), round(s(10), 6), s(110), s(10**9)
    (0.05, 0.1, 0.0, 0.0)
    >>> str(s)
    'warmup(cosine(lr=0.1, steps=100), steps=10)'

Adding a family: one class. Subclass :class:`Schedule` as a frozen dataclass
with the family's fields and its spec ``name``, check the fields in
``__post_init__`` (a ``ValueError`` naming the argument, its value and what is
allowed), and define ``_formula(self, ops, t)``: the lr at an integer array of
steps ``t``, with the operations of ``ops`` (``ops.xp`` is numpy-like; no
Python ``if`` on ``t``: ``ops.before(t, n, early, late)`` picks a phase; use the
precise helpers such as ``ops.fraction_left`` and ``ops.half_cosine``).
Register the class with :func:`lrkit.spec.register`. It then works everywhere
a built-in does: ``parse``, ``str``, ``to_dict``/``from_dict``, ``s(t)``,
``values``, warmup, joins, scaling, plots, controllers, ``to_keras`` and
``to_optax``. Optional: ``length`` (a family that ends), ``_phase_starts``
(phases other than one, then ``"hold"`` from ``length``; a first phase named
``"warmup"`` is skipped by controllers), ``_at`` for a fast scalar call and
``_values`` for fast numpy (they default to the formula on numpy, 15 to 40 µs
a call). A registered class that defines no ``_formula`` but ``_at`` and
``_values`` works in lrkit itself; ``to_keras`` and ``to_optax`` refuse it
with a ``TypeError`` that names the method to define. No fallback: a host
callback would break ``jit`` and saved models.

    >>> from dataclasses import dataclass
    >>> from typing import ClassVar
    >>> import lrkit.spec
    >>> @dataclass(frozen=True, repr=False)
    ... class InverseTime(lrkit.Schedule):
    ...     '''lr(t) = lr / (1 + t / steps)'''
    ...     lr: float
    ...     steps: int
    ...     name: ClassVar[str] = "inverse_time"
    ...     def __post_init__(self):
    ...         if not self.steps >= 1:
    ...             raise ValueError(f"inverse_time: steps must be >= 1, got {self.steps!r}")
    ...     def _formula(self, ops, t):
    ...         return self.lr / (1.0 + ops.float_(t) / self.steps)
    >>> lrkit.spec.register("inverse_time", InverseTime)
    >>> s = lrkit.parse("warmup(inverse_time(lr=1.0, steps=10), steps=5)")
    >>> s(5), s(15), s.values([0, 25]).tolist(), str(s)
    (1.0, 0.5, [0.0, 0.3333333333333333], 'warmup(inverse_time(lr=1.0, steps=10), steps=5)')
    >>> lrkit.spec.unregister("inverse_time")
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from lrkit._formulas import NUMPY, Array, Ops, lr_at

__all__ = [
    "FACTORIES",
    "SWA",
    "WSD",
    "Constant",
    "Cosine",
    "CosineRestarts",
    "Cyclic",
    "Exponential",
    "InvScaling",
    "InverseSqrt",
    "Join",
    "Linear",
    "MultiStep",
    "OneCycle",
    "Optimal",
    "Polynomial",
    "Replanned",
    "Scaled",
    "Schedule",
    "StepDecay",
    "Warmup",
    "constant",
    "cosine",
    "cosine_restarts",
    "cyclic",
    "exponential",
    "inverse_sqrt",
    "invscaling",
    "join",
    "linear",
    "multistep",
    "one_cycle",
    "optimal",
    "polynomial",
    "replan",
    "sklearn_t0",
    "step_decay",
    "swa",
    "swa_start",
    "warmup",
    "wsd",
]

# --------------------------------------------------------------------------
# Argument checks. Errors say which family, which argument, what is allowed
# and what was given: ``cosine: steps must be an integer >= 1, got 0``.
# --------------------------------------------------------------------------


def _fail(family: str, name: str, allowed: str, value: Any) -> ValueError:
    return ValueError(f"{family}: {name} must be {allowed}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _rate(family: str, name: str, value: Any, *, positive: bool = False) -> float:
    """A learning rate: a finite float >= 0 (> 0 when ``positive``)."""
    allowed = "a finite number > 0" if positive else "a finite number >= 0"
    if not _is_number(value):
        raise _fail(family, name, allowed, value)
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise _fail(family, name, allowed, value)
    return value


#: The largest step count a schedule takes: steps are numpy int64 in ``values``.
MAX_STEPS = 2**62


def _count(family: str, name: str, value: Any, *, low: int = 1) -> int:
    """A whole number of steps in [``low``, 2**62] (an integral float such as 1e4 is accepted)."""
    allowed = f"an integer >= {low}"
    if not _is_number(value):
        raise _fail(family, name, allowed, value)
    if isinstance(value, (float, np.floating)) and (
        not math.isfinite(value) or value != math.floor(value)
    ):
        raise _fail(family, name, allowed, value)
    value = int(value)
    if value < low:
        raise _fail(family, name, allowed, value)
    if value > MAX_STEPS:
        raise _fail(family, name, "a step count <= 2**62", value)
    return value


def _real(
    family: str,
    name: str,
    value: Any,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = True,
    high_open: bool = False,
) -> float:
    """A finite float in an interval, e.g. a gamma in (0, 1]."""
    lb = "(" if low_open else "["
    rb = ")" if high_open else "]"
    hi = "inf)" if math.isinf(high) else f"{high:g}{rb}"
    allowed = f"a number in {lb}{low:g}, {hi}"
    if not _is_number(value):
        raise _fail(family, name, allowed, value)
    value = float(value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if not math.isfinite(value) or below or above:
        raise _fail(family, name, allowed, value)
    return value


def _choice(family: str, name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        allowed = "one of " + ", ".join(repr(o) for o in options)
        raise _fail(family, name, allowed, value)
    return str(value)


def _steps_array(steps: Any) -> np.ndarray:
    """``n`` -> ``arange(n)``; an array of steps -> int64 array, checked."""
    if _is_number(steps):  # a count n (an integral float such as 1e6 is one too)
        if not math.isfinite(steps) or steps != math.floor(steps) or steps < 0:
            raise ValueError(f"values: n must be an integer >= 0, got {steps!r}")
        return np.arange(int(steps), dtype=np.int64)
    arr = np.asarray(steps)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.floor(arr))
        if np.any(bad):
            raise ValueError(
                f"values: steps must be whole numbers >= 0, got {float(arr[bad].flat[0])!r}"
            )
    elif arr.dtype.kind not in "iu":
        raise ValueError(
            f"values: expected an int n or an array of integer steps, got {type(steps).__name__}"
            f" of dtype {arr.dtype}"
        )
    if arr.size and arr.min() < 0:
        raise ValueError(f"values: steps must be >= 0, got {arr.min()}")
    return arr.astype(np.int64, copy=False)


def _check_step(step: Any) -> int:
    if type(step) is int:  # the fast path
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return step
    if _is_number(step) and math.isfinite(step) and float(step) == math.floor(float(step)):
        return _check_step(int(step))
    raise ValueError(f"step must be an integer >= 0, got {step!r}")


# --------------------------------------------------------------------------
# The base class
# --------------------------------------------------------------------------


def _format_value(value: Any) -> str:
    if isinstance(value, Schedule):
        return str(value)
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return repr(value)


def _plain(value: Any) -> Any:
    """A field value as JSON types (schedules become nested dicts)."""
    if isinstance(value, Schedule):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


class Schedule:
    """An immutable map from a step (int >= 0) to a learning rate (float >= 0).

    Subclasses are frozen dataclasses (module docstring: "Adding a family")
    that define their formula once, as ``_formula(ops, t)``, and say how long
    they are and where their phases begin. ``_at`` (one step, plain Python) and
    ``_values`` (numpy) default to that formula; a family overrides them for
    speed. The base class gives the public API:

    * ``s(step)`` -> float, and ``s.values(n)`` / ``s.values(steps)`` -> array;
    * ``str(s)``: the canonical spec, which :func:`lrkit.parse` reads back;
    * ``s.to_dict()``: JSON types, which :func:`lrkit.from_dict` reads back;
    * ``a | b`` (join when ``a`` has a length) and ``0.5 * s`` (scale);
    * ``s.plot()`` (matplotlib, imported only then).
    """

    name: ClassVar[str] = ""

    # -- to implement ------------------------------------------------------

    def _formula(self, ops: Ops, t: Array) -> Array:
        """The lrs at an integer array of steps ``t`` (>= 0, ``ops.int_dtype``).

        The family's one definition: written with the array operations of
        ``ops`` (:class:`lrkit._formulas.Ops`: no Python branching on ``t``), it
        is what :func:`lrkit.keras.to_keras` and :func:`lrkit.optax.to_optax`
        compute, and ``values()`` unless the family defines ``_values``. Any
        shape broadcastable to ``t``'s will do (a constant may stay a scalar).
        """
        cls = type(self).__name__
        raise NotImplementedError(
            f"{self.name or cls}: class {cls} defines no formula: define "
            f"_formula(self, ops, t), the lr at an integer array of steps t written with "
            f"the array operations of ops (lrkit._formulas.Ops), or _at and _values; see "
            f"'Adding a family' in lrkit.schedules"
        )

    def _at(self, t: int) -> float:
        """The lr at step ``t`` (an int >= 0, already checked), in plain Python.

        By default ``_values`` at that one step (15 to 40 µs); families
        override it with a :mod:`math` transcription of their formula, some 50
        times faster.
        """
        return float(self._values(np.array([t], dtype=np.int64))[0])

    def _values(self, t: np.ndarray) -> np.ndarray:
        """The lrs at an int64 array of steps (>= 0, already checked), in numpy.

        By default ``_formula`` on numpy (float64); families override it with
        a direct numpy transcription where that is faster.
        """
        with np.errstate(all="ignore"):  # log(0) -> -inf and the like, as in JAX
            return np.array(lr_at(self, t, NUMPY), dtype=np.float64)

    @property
    def length(self) -> int | None:
        """Steps the schedule spans before it holds its end value (None: no end).

        ``a | b`` starts ``b`` at step ``a.length``.
        """
        return None

    def _phase_starts(self) -> list[tuple[int, str]]:
        """Where each phase begins: ``(step, phase name)`` pairs, by step, the first at 0.

        Plots and tables mark these steps (:func:`lrkit.plotting.key_steps`);
        a first phase named ``"warmup"`` is the schedule's warmup, which
        controllers ignore (:func:`lrkit.controllers.warmup_steps`). Other
        names are for people (``"decay"``, ``"hold"``: the end value from
        there on). Periodic families give their first few cycles only. By
        default: one phase named after the family, and ``"hold"`` from
        ``length`` on.
        """
        end = self.length
        return _phase_list((0, self.name), *([] if end is None else [(end, "hold")]))

    # -- public API --------------------------------------------------------

    def __call__(self, step: int) -> float:
        """The learning rate at ``step`` (an int >= 0)."""
        if type(step) is int and step >= 0:  # the fast path: one call fewer
            return self._at(step)
        return self._at(_check_step(step))

    def values(self, steps: int | Sequence[int] | np.ndarray) -> np.ndarray:
        """Learning rates for steps ``0..n-1`` (an int ``n``) or for an array of steps."""
        t = _steps_array(steps)
        return np.asarray(self._values(t), dtype=np.float64)

    def _params(self) -> list[tuple[str, Any, bool]]:
        """(name, value, is_default) for each field, in declaration order."""
        out = []
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            is_default = f.default is not MISSING and _same(value, f.default)
            out.append((f.name, value, is_default))
        return out

    def __str__(self) -> str:
        args = []
        for k, (name, value, is_default) in enumerate(self._params()):
            if k == 0 and isinstance(value, Schedule):
                args.append(str(value))  # the wrapped schedule reads best positionally
            elif not is_default:
                args.append(f"{name}={_format_value(value)}")
        return f"{self.name}({', '.join(args)})"

    def __repr__(self) -> str:
        return str(self)

    def to_dict(self) -> dict[str, Any]:
        """The schedule as JSON types: ``{"type": name, **fields}``."""
        out: dict[str, Any] = {"type": self.name}
        for name, value, _ in self._params():
            out[name] = _plain(value)
        return out

    def replan(self, steps: int, at: int) -> Schedule:
        """The same plan, changed at step ``at`` so that it ends at step ``steps``.

        For a run that turns out to need more (or fewer) steps than planned:
        the result equals ``self`` at every step before ``at`` (plots and
        resumes show the true history), keeps the value at ``at`` exactly, and
        from there runs what was left of the plan, stretched or shrunk, to
        reach the end value (``min_lr``, ``end_lr``) at step ``steps`` (one_cycle:
        at ``steps - 1``, its own convention) and hold it. A decaying plan
        never rises after ``at``.

        * cosine, linear, polynomial, one_cycle, and wsd once its decay has
          begun: the rest of the curve is remapped linearly. With ``E`` the
          old end step and ``E'`` the new one, for ``at <= t <= E'``::

              new(t) = old(at + (E - at) * (t - at) / (E' - at))

          so ``new(at) == old(at)`` and ``new(E') == old(E)``. The result is
          ``replan(old, steps=..., at=...)`` (:class:`Replanned`), or the
          family itself with ``steps`` changed when ``at == 0``.
        * wsd before its decay: the decay keeps its length and moves to end at
          ``steps`` (the result is a plain ``wsd(...)``); if it no longer fits
          after ``at``, what is left (stable part and decay) is remapped as above.
        * ``warmup(s, ...)``, ``factor * s`` and joins (``a | s``) replan the
          schedule ``s`` they wrap or end with, at shifted steps.
        * ``at`` at or past the old end: the plan is over, so the result holds
          the end value (the same values as ``self``) with length ``steps``.

        Replanning a replanned schedule nests: a run lengthened twice is
        ``replan(replan(s, ...), ...)``.

        Args:
            steps: the new end step, an int > ``at`` (one_cycle: >= ``at + 2``).
            at: the step where the plan changes, an int >= 0 (usually the
                current step: the first step the new plan decides).

        Returns:
            A new schedule; ``self`` is unchanged.

        Raises:
            ValueError: ``steps`` or ``at`` out of range, or a family that has
                no replan (the message lists those that have).

        Examples:
            >>> s = cosine(lr=1.0, steps=100)
            >>> r = s.replan(200, at=50)
            >>> r
            replan(cosine(lr=1.0, steps=100), steps=200, at=50)
            >>> r(49) == s(49), r(50) == s(50), r(125) == s(75), r(200), r.length
            (True, True, True, 0.0, 200)
            >>> wsd(1.0, steps=100, decay_steps=20).replan(150, at=30)
            wsd(lr=1.0, steps=150, decay_steps=20)
        """
        at = _count("replan", "at", at, low=0)
        steps = _count("replan", "steps", steps, low=at + 1)
        return self._replan(steps, at)

    def _replan(self, steps: int, at: int) -> Schedule:
        """:meth:`replan` with checked arguments; families that support it override this."""
        raise ValueError(
            f"replan: cannot replan {self.name}(...) schedules ({self}); replan works for "
            f"{_REPLANNABLE}"
        )

    def _formula_between(self, ops: Ops, u: Array, g: Array) -> Array:
        """``_formula`` at float positions ``u`` (between integer steps), ``g`` steps
        before the step where the plan ends (given apart, to full precision).

        What :class:`Replanned` computes its remapped rest with; the families
        it takes (cosine, linear, polynomial, one_cycle, wsd) define it.
        """
        raise TypeError(f"no replan formula for {type(self).__name__} ({self!r})")

    def __or__(self, other: Schedule) -> Schedule:
        if not isinstance(other, Schedule):
            return NotImplemented
        if self.length is None:
            raise ValueError(
                f"'a | b' needs 'a' to have a length, but {self} never ends; "
                "use join(a, b, boundaries=[step]) to say where 'b' starts"
            )
        return Join(schedules=(self, other), boundaries=(self.length,))

    def __mul__(self, factor: float) -> Schedule:
        if isinstance(factor, Schedule) or not _is_number(factor):
            return NotImplemented
        return Scaled(factor=factor, schedule=self)

    __rmul__ = __mul__

    def plot(
        self,
        steps: int | None = None,
        *,
        path: str | None = None,
        ax: Any = None,
        label: str | None = None,
        log: bool = False,
    ) -> Any:
        """Draw the schedule with matplotlib (imported only here).

        Args:
            steps: how many steps to draw (default: the length plus 10 %, or 1000).
            path: save the figure there (PNG, SVG, PDF by extension).
            ax: draw into this matplotlib Axes instead of a new figure.
            label: legend label (default: the spec).
            log: log-scaled lr axis.

        Returns:
            The matplotlib Axes.
        """
        from lrkit.plotting import plot_schedules

        return plot_schedules([self], steps=steps, path=path, ax=ax, labels=[label], log=log)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b) and not (_is_number(a) and _is_number(b)):
        return False
    return bool(a == b)


def _setfield(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _phase_list(*phases: tuple[int, str]) -> list[tuple[int, str]]:
    """``(step, name)`` phases sorted by step; of phases starting at one step, the
    last given wins (the ones before it last no step)."""
    starts: dict[int, str] = {}
    for step, name in sorted(phases, key=lambda phase: phase[0]):  # stable
        starts[step] = name
    return sorted(starts.items())


def _as_schedule(family: str, name: str, value: Any) -> Schedule:
    if not isinstance(value, Schedule):
        raise _fail(family, name, "an lrkit schedule", value)
    return value


# --------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=True, repr=False)
class Constant(Schedule):
    """The same learning rate at every step.

        lr(t) = lr

    Examples:
        >>> constant(0.01)(10**9)
        0.01
    """

    lr: float
    name: ClassVar[str] = "constant"

    def __post_init__(self) -> None:
        _setfield(self, "lr", _rate("constant", "lr", self.lr))

    def _at(self, t: int) -> float:
        return self.lr

    def _values(self, t: np.ndarray) -> np.ndarray:
        return np.full(t.shape, self.lr)

    def _formula(self, ops: Ops, t: Array) -> Array:
        return ops.float_(t) * 0.0 + self.lr


@dataclass(frozen=True, eq=True, repr=False)
class StepDecay(Schedule):
    """Multiply by ``gamma`` every ``step_size`` steps (torch's StepLR).

        lr(t) = lr * gamma ** floor(t / step_size)

    Examples:
        >>> s = step_decay(0.1, step_size=10, gamma=0.5)
        >>> s(9), s(10), s(25)
        (0.1, 0.05, 0.025)
    """

    lr: float
    step_size: int
    gamma: float = 0.5
    name: ClassVar[str] = "step_decay"

    def __post_init__(self) -> None:
        _setfield(self, "lr", _rate(self.name, "lr", self.lr))
        _setfield(self, "step_size", _count(self.name, "step_size", self.step_size))
        _setfield(self, "gamma", _real(self.name, "gamma", self.gamma, low=0.0, high=1.0))

    def _at(self, t: int) -> float:
        return self.lr * self.gamma ** (t // self.step_size)

    def _values(self, t: np.ndarray) -> np.ndarray:
        return self.lr * np.power(self.gamma, (t // self.step_size).astype(np.float64))

    def _formula(self, ops: Ops, t: Array) -> Array:
        k, _ = ops.divmod(t, self.step_size)
        return self.lr * ops.power(self.gamma, ops.float_(k))

    def _phase_starts(self) -> list[tuple[int, str]]:
        drops = ((k * self.step_size, "drop") for k in range(1, 9))  # the first eight
        return _phase_list((0, self.name), *drops)


@dataclass(frozen=True, eq=True, repr=False)
class MultiStep(Schedule):
    """Multiply by ``gamma`` at each milestone (torch's MultiStepLR).

        lr(t) = lr * gamma ** (number of milestones <= t)

    Examples:
        >>> s = multistep(1.0, milestones=[30, 80], gamma=0.1)
        >>> s(29), s(30), round(s(80), 12)
        (1.0, 0.1, 0.01)
    """

    lr: float
    milestones: tuple[int, ...]
    gamma: float = 0.1
    name: ClassVar[str] = "multistep"

    def __post_init__(self) -> None:
        _setfield(self, "lr", _rate(self.name, "lr", self.lr))
        if isinstance(self.milestones, (str, bytes)) or not isinstance(
            self.milestones, (Sequence, np.ndarray)
        ):
            raise _fail(self.name, "milestones", "a list of integers >= 1", self.milestones)
        ms = tuple(_count(self.name, "milestones", m) for m in self.milestones)
        if any(b <= a for a, b in itertools.pairwise(ms)):
            raise _fail(self.name, "milestones", "strictly increasing", list(ms))
        _setfield(self, "milestones", ms)
        # gamma > 1 is allowed: the milestones are finite, so the lr stays finite.
        _setfield(self, "gamma", _real(self.name, "gamma", self.gamma, low=0.0))

    def _at(self, t: int) -> float:
        return self.lr * self.gamma ** bisect.bisect_right(self.milestones, t)

    def _values(self, t: np.ndarray) -> np.ndarray:
        k = np.searchsorted(np.asarray(self.milestones, dtype=np.int64), t, side="right")
        return self.lr * np.power(self.gamma, k.astype(np.float64))

    def _formula(self, ops: Ops, t: Array) -> Array:
        reachable = [m for m in self.milestones if ops.fits(m)]
        if not reachable:
            return ops.float_(t) * 0.0 + self.lr
        k = ops.xp.searchsorted(ops.asarray(reachable, ops.int_dtype), t, side="right")
        return self.lr * ops.power(self.gamma, ops.float_(k))

    def _phase_starts(self) -> list[tuple[int, str]]:
        return _phase_list((0, self.name), *((m, "drop") for m in self.milestones))


@dataclass(frozen=True, eq=True, repr=False)
class Exponential(Schedule):
    """Multiply by ``gamma`` every step (torch's ExponentialLR).

        lr(t) = lr * gamma ** t,    0 < gamma <= 1

    Examples:
        >>> exponential(1.0, gamma=0.5)(3)
        0.125
    """

    lr: float
    gamma: float
    name: ClassVar[str] = "exponential"

    def __post_init__(self) -> None:
        _setfield(self, "lr", _rate(self.name, "lr", self.lr))
        _setfield(self, "gamma", _real(self.name, "gamma", self.gamma, low=0.0, high=1.0))

    def _at(self, t: int) -> float:
        return self.lr * self.gamma ** float(t)

    def _values(self, t: np.ndarray) -> np.ndarray:
        return self.lr * np.power(self.gamma, t.astype(np.float64))

    def _formula(self, ops: Ops, t: Array) -> Array:
        return self.lr * ops.power(self.gamma, ops.float_(t))


@dataclass(frozen=True, eq=True, repr=False)
class Linear(Schedule):
    """A straight line from ``start_lr`` to ``end_lr`` over ``steps``, then flat.

        lr(t) = start_lr + (end_lr - start_lr) * min(t, steps) / steps

    Reaches ``end_lr`` at step ``steps``. torch's LinearLR is
    ``linear(base * start_factor, base * end_factor, total_iters)``.

    Examples:
        >>> s = linear(0.0, 1.0, steps=4)
        >>> [s(t) for t in range(6)]
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """

    start_lr: float
    end_lr: float
    steps: int
    name: ClassVar[str] = "linear"

    def __post_init__(self) -> None:
        _setfield(self, "start_lr", _rate(self.name, "start_lr", self.start_lr))
        _setfield(self, "end_lr", _rate(self.name, "end_lr", self.end_lr))
        _setfield(self, "steps", _count(self.name, "steps", self.steps))

    @property
    def length(self) -> int:
        return self.steps

    def _at(self, t: int) -> float:
        if t >= self.steps:  # exactly end_lr: start + (end - start) * 1 can miss by an ulp
            return self.end_lr
        return self.start_lr + (self.end_lr - self.start_lr) * (t / self.steps)

    def _values(self, t: np.ndarray) -> np.ndarray:
        frac = np.minimum(t, self.steps) / self.steps
        out = self.start_lr + (self.end_lr - self.start_lr) * frac
        return np.where(t >= self.steps, self.end_lr, out)

    def _formula(self, ops: Ops, t: Array) -> Array:
        # start * (1 - x) + end * x: both terms >= 0, no cancellation, exact at x = 0.
        x = ops.float_(t) / self.steps
        moving = self.start_lr * ops.fraction_left(t, self.steps) + self.end_lr * x
        return ops.before(t, self.steps, moving, ops.float_(t) * 0.0 + self.end_lr)

    def _formula_between(self, ops: Ops, u: Array, g: Array) -> Array:
        return self.start_lr * (g / self.steps) + self.end_lr * ops.xp.minimum(u / self.steps, 1.0)

    def _replan(self, steps: int, at: int) -> Schedule:
        return _replan_family(self, steps, at)


def _half_cosine(frac: float) -> float:
    """1 at frac=0 down to 0 at frac=1: (1 + cos(pi * frac)) / 2."""
    return 0.5 * (1.0 + math.cos(math.pi * frac))


def _half_cosine_np(frac: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.cos(np.pi * frac))


@dataclass(frozen=True, eq=True, repr=False)
class Cosine(Schedule):
    """Half a cosine from ``lr`` down to ``min_lr`` over ``steps``, then flat.

        lr(t) = min_lr + (lr - min_lr) * (1 + cos(pi * min(t, steps) / steps)) / 2

    Reaches ``min_lr`` at step ``steps`` and holds it: unlike torch's
    CosineAnnealingLR it never rises again past the end (SGDR, Loshchilov &
    Hutter 2017, without restarts).

    Examples:
        >>> s = cosine(lr=1.0, steps=100, min_lr=0.1)
        >>> s(0), round(s(50), 12), s(100), s(10**9)
        (1.0, 0.55, 0.1, 0.1)
    """

    lr: float
    steps: int
    min_lr: float = 0.0
    name: ClassVar[str] = "cosine"

    def __post_init__(self) -> None:
        _setfield(self, "lr", _rate(self.name, "lr", self.lr))
        _setfield(self, "steps", _count(self.name, "steps", self.steps))
        min_lr = _rate(self.name, "min_lr", self.min_lr)
        if min_lr > self.lr:
            raise _fail(self.name, "min_lr", f"<= lr ({self.lr!r})", min_lr)
        _setfield(self, "min_lr", min_lr)

    @property
    def length(self) -> int:
        return self.steps

    def _at(self, t: int) -> float:
        steps = self.steps
        frac = (t if t < steps else steps) / steps  # not min(): slow in Python 3.11
        return self.min_lr + (self.lr - self.min_lr) * (0.5 * (1.0 + math.cos(math.pi * frac)))

    def _values(self, t: np.ndarray) -> np.ndarray:
        frac = np.minimum(t, self.steps) / self.steps
        return self.min_lr + (self.lr - self.min_lr) * _half_cosine_np(frac)

    def _formula(self, ops: Ops, t: Array) -> Array:
        return self.min_lr + (self.lr - self.min_lr) * ops.half_cosine(t, self.steps)

    def _formula_between(self, ops: Ops, u: Array, g: Array) -> Array:
        return self.min_lr + (self.lr - self.min_lr) * ops.half_cosine_rest(g / self.steps)

    def _replan(self, steps: int, at: int) -> Schedule:
        return _replan_family(self, steps, at)


#: Steps below this are looked up in CosineRestarts' table of cycles (period_mult > 1).
_FAR = 2**63


@dataclass(frozen=True, eq=True, repr=False)
class CosineRestarts(Schedule):
    """Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017).

    Cycle ``i`` (from 0) lasts ``T_i = period * period_mult ** i`` steps. At
    ``t_i`` steps into cycle ``i``:

        lr(t) = min_lr + (lr - min_lr) * decay ** i * (1 + cos(pi * t_i / T_i)) / 2

    With ``decay=1`` this is torch's CosineAnnealingWarmRestarts(T_0=period,
    T_mult=period_mult, eta_min=min_lr).

    Examples:
        >>> s = cosine_restarts(lr=1.0, period=10)
        >>> s(0), s(5) == 0.5, s(10)
        (1.0, True, 1.0)
    """

    lr: float
    period: int
    period_mult: int = 1
    min_lr: float = 0.0
    decay: float = 1.0
    name: ClassVar[str] = "cosine_restarts"
    if TYPE_CHECKING:  # set in __post_init__ (period_mult > 1); not dataclass fields at runtime
        _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
        _lengths: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _setfield(self, "lr", _rate(self.name, "lr", self.lr))
        _setfield(self, "period", _count(self.name, "period", self.period))
        _setfield(self, "period_mult", _count(self.name, "period_mult", self.period_mult))
        min_lr = _rate(self.name, "min_lr", self.min_lr)
        if min_lr > self.lr:
            raise _fail(self.name, "min_lr", f"<= lr ({self.lr!r})", min_lr)
        _setfield(self, "min_lr", min_lr)
        _setfield(self, "decay", _real(self.name, "decay", self.decay, low=0.0, high=1.0))
        if self.period_mult > 1:  # cycle starts and lengths up to step 2**63, for a bisect
            starts, lengths, start, length = [], [], 0, self.period
            while start < _FAR:
                starts.append(start)
                lengths.append(length)
                start, length = start + length, length * self.period_mult
            _setfield(self, "_starts", tuple(starts))
            _setfield(self, "_lengths", tuple(lengths))

    def _cycle(self, t: int) -> tuple[int, int, int]:
        """(cycle index, steps into the cycle, cycle length) for step t."""
        if self.period_mult == 1:
            i, into = divmod(t, self.period)
            return i, into, self.period
        if t < _FAR:  # the table covers it: a bisect, no loop
            i = bisect.bisect_right(self._starts, t) - 1
            return i, t - self._starts[i], self._lengths[i]
        i, start, length = 0, 0, self.period
        while t >= start + length:  # at most ~log2(t) rounds: cycles grow geometrically
            start += length
            length *= self.period_mult
            i += 1
        return i, t - start, length

    def _at(self, t: int) -> float:
        i, into, length = self._cycle(t)
        amplitude = (self.lr - self.min_lr) * self.decay ** float(i)
        return self.min_lr + amplitude * _half_cosine(into / length)

    def _values(self, t: np.ndarray) -> np.ndarray:
        if self.period_mult == 1:
            i = t // self.period
            into = t - i * self.period
            length = np.full(t.shape, float(self.period))
        else:
            top = int(t.max()) if t.size else 0
            starts, lengths = [0], [self.period]
            while starts[-1] + lengths[-1] <= top:
                starts.append(starts[-1] + lengths[-1])
                lengths.append(lengths[-1] * self.period_mult)
            i = np.searchsorted(np.asarray(starts, dtype=np.int64), t, side="right") - 1
            into = t - np.asarray(starts, dtype=np.int64)[i]
            length = np.asarray(lengths, dtype=np.float64)[i]
        amplitude = (self.lr - self.min_lr) * np.power(self.decay, i.astype(np.float64))
        return self.min_lr + amplitude * _half_cosine_np(into / length)

    def _formula(self, ops: Ops, t: Array) -> Array:
        xp = ops.xp
        if self.period_mult == 1:
            cycle, into = ops.divmod(t, self.period)
            rest = ops.fraction_left(into, self.period)
        else:
            # Cycle starts up to the largest step the integer type holds, for a lookup.
            starts, ends = [0], [self.period]
            while ends[-1] <= ops.int_max:
                length = ends[-1] - starts[-1]
                starts.append(ends[-1])
                ends.append(ends[-1] + length * self.period_mult)
            cycle = xp.searchsorted(ops.asarray(starts, ops.int_dtype), t, side="right") - 1
            begin = xp.take(ops.asarray(starts, ops.int_dtype), cycle)
            lengths = [float(e - b) for b, e in zip(starts, ends, strict=True)]
            span = xp.take(ops.asarray(lengths, ops.float_dtype), cycle)
            rest = (span - ops.float_(t - begin)) / span  # exact below 2**24 steps
        amplitude = (self.lr - self.min_lr) * ops.power(self.decay, ops.float_(cycle))
        return self.min_lr + amplitude * ops.half_cosine_rest(rest)

    def _phase_starts(self) -> list[tuple[int, str]]:
        starts, start, length = [(0, "cycle")], 0, self.period
        for _ in range(8):  # the first eight restarts
            start, length = start + length, length * self.period_mult
            starts.append((start, "cycle"))
        return starts


@dataclass(frozen=True, eq=True, repr=False)
class Polynomial(Schedule):
    """Polynomial decay from ``lr`` to ``end_lr`` over ``steps``, then flat.

        lr(t) = end_lr + (lr - end_lr) * (1 - min(t, steps) / steps) ** power

    Reaches ``end_lr`` at step ``steps``. torch's PolynomialLR is
    ``polynomial(base, total_iters, power)`` with ``end_lr=0``.

    Examples:
        >>> s = polynomial(1.0, steps=10, power=2.0)
        >>> round(s(5), 12), s(10)
        (0.25, 0.0)
    """

    lr: float
    steps: int
    power: float = 1.0
    end_lr: float = 0.0
    name: ClassVar[str] = "polynomial"

    def __post_init__(self) -> None:
        _setfield(self, "lr", _rate(self.name, "lr", self.lr))
        _setfield(self, "steps", _count(self.name, "steps", self.steps))
        _setfield(self, "power", _real(self.name, "power", self.power, low=0.0))
        _setfield(self, "end_lr", _rate(self.name, "end_lr", self.end_lr))

    @property
    def length(self) -> int:
        return self.steps

    def _at(self, t: int) -> float:
        steps = self.steps
        remaining = 1.0 - (t if t < steps else steps) / steps
        return self.end_lr + (self.lr - self.end_lr) * remaining**self.power

    def _values(self, t: np.ndarray) -> np.ndarray:
        remaining = 1.0 - np.minimum(t, self.steps) / self.steps
        return self.end_lr + (self.lr - self.end_lr) * np.power(remaining, self.power)

    def _formula(self, ops: Ops, t: Array) -> Array:
        # lr * L + end_lr * (1 - L) with L = (1 - x) ** power, both weights from
        # exp / expm1 so that neither cancels (exactly lr at x = 0, end_lr at x = 1).
        # 1 - x comes from the integer steps still to go: exactly 0 at the end even
        # where XLA turns the division into a multiplication by a rounded reciprocal.
        log_left = self.power * ops.xp.log(ops.fraction_left(t, self.steps))
        return self.lr * ops.xp.exp(log_left) - self.end_lr * ops.xp.expm1(log_left)

    def _formula_between(self, ops: Ops, u: Array, g: Array) -> Array:
        log_left = self.power * ops.xp.log(g / self.steps)
        return self.lr * ops.xp.exp(log_left) - self.end_lr * ops.xp.expm1(log_left)

    def _replan(self, steps: int, at: int) -> Schedule:
        return _replan_family(self, steps, at)


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


@dataclass(frozen=True, eq=True, repr=False)
class Cyclic(Schedule):
    """Triangular cycles between ``min_lr`` and ``max_lr`` (Smith 2017; torch's CyclicLR).

    A cycle rises for ``step_size_up`` steps and falls for ``step_size_down``
    (default: the same). With ``pos = t mod (up + down)``:

        height(t) = pos / up               if pos <= up
                    (up + down - pos) / down  otherwise
        lr(t) = min_lr + (max_lr - min_lr) * height(t) * scale(t)

    where ``scale`` is 1 (``"triangular"``), halves every cycle
    (``"triangular2"``: ``0.5 ** floor(t / (up + down))``) or is
    ``gamma ** t`` (``"exp_range"``).

    Examples:
        >>> s = cyclic(0.1, 1.0, step_size_up=2)
        >>> [round(s(t), 12) for t in range(5)]
        [0.1, 0.55, 1.0, 0.55, 0.1]
    """

    min_lr: float
    max_lr: float
    step_size_up: int
    step_size_down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    name: ClassVar[str] = "cyclic"

    def __post_init__(self) -> None:
        _setfield(self, "min_lr", _rate(self.name, "min_lr", self.min_lr))
        max_lr = _rate(self.name, "max_lr", self.max_lr)
        if max_lr < self.min_lr:
            raise _fail(self.name, "max_lr", f">= min_lr ({self.min_lr!r})", max_lr)
        _setfield(self, "max_lr", max_lr)
        _setfield(self, "step_size_up", _count(self.name, "step_size_up", self.step_size_up))
        if self.step_size_down is not None:
            down = _count(self.name, "step_size_down", self.step_size_down)
            _setfield(self, "step_size_down", down)
        _setfield(self, "mode", _choice(self.name, "mode", self.mode, _CYCLIC_MODES))
        _setfield(self, "gamma", _real(self.name, "gamma", self.gamma, low=0.0, high=1.0))

    @property
    def _down(self) -> int:
        return self.step_size_up if self.step_size_down is None else self.step_size_down

    def _at(self, t: int) -> float:
        up, down = self.step_size_up, self._down
        cycle, pos = divmod(t, up + down)
        height = pos / up if pos <= up else (up + down - pos) / down
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 0.5 ** float(cycle)
        else:
            scale = self.gamma ** float(t)
        return self.min_lr + (self.max_lr - self.min_lr) * height * scale

    def _values(self, t: np.ndarray) -> np.ndarray:
        up, down = self.step_size_up, self._down
        cycle, pos = np.divmod(t, up + down)
        height = np.where(pos <= up, pos / up, (up + down - pos) / down)
        if self.mode == "triangular":
            scale = np.ones(t.shape)
        elif self.mode == "triangular2":
            scale = np.power(0.5, cycle.astype(np.float64))
        else:
            scale = np.power(self.gamma, t.astype(np.float64))
        return self.min_lr + (self.max_lr - self.min_lr) * height * scale

    def _formula(self, ops: Ops, t: Array) -> Array:
        up, down = self.step_size_up, self._down
        cycle, pos = ops.divmod(t, up + down)
        pos_f = ops.float_(pos)
        rising = pos <= ops.int_(min(up, ops.int_max))
        height = ops.xp.where(rising, pos_f / up, (up + down - pos_f) / down)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = ops.power(0.5, ops.float_(cycle))
        else:
            scale = ops.power(self.gamma, ops.float_(t))
        return self.min_lr + (self.max_lr - self.min_lr) * height * scale

    def _phase_starts(self) -> list[tuple[int, str]]:
        up, cycle = self.step_size_up, self.step_size_up + self._down
        turns = ((c * cycle + up, "fall") for c in range(4))  # the first four cycles
        rises = ((c * cycle, "rise") for c in range(5))
        return _phase_list(*rises, *turns)


@dataclass(frozen=True, eq=True, repr=False)
class OneCycle(Schedule):
    """The 1cycle policy (Smith & Topin 2018), as torch's OneCycleLR.

    With ``start = max_lr / div_factor`` and ``end = start / final_div_factor``,
    phase boundaries ``p = pct_start * steps - 1`` and ``q = steps - 1``:

        two phases:   start -> max_lr over [0, p], max_lr -> end over [p, q]
        three_phase:  start -> max_lr over [0, p], max_lr -> start over
                      [p, 2p], start -> end over [2p, q]

    Each phase anneals with ``anneal="cos"`` (``b + (a - b) * (1 + cos(pi x)) / 2``)
    or ``"linear"`` (``a * (1 - x) + b * x``), ``x`` the fraction of the phase
    done. Reaches ``end`` at step ``steps - 1`` and holds it (torch raises
    past the end instead).

    Examples:
        >>> s = one_cycle(max_lr=1.0, steps=100)
        >>> round(s(0), 12), s(29), s(99)
        (0.04, 1.0, 4e-06)
    """

    max_lr: float
    steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal: str = "cos"
    three_phase: bool = False
    name: ClassVar[str] = "one_cycle"
    if TYPE_CHECKING:  # set in __post_init__; not a dataclass field at runtime
        _phase_table: tuple[tuple[float, float, float, float], ...] = field(
            init=False, repr=False, compare=False
        )

    def __post_init__(self) -> None:
        _setfield(self, "max_lr", _rate(self.name, "max_lr", self.max_lr))
        _setfield(self, "steps", _count(self.name, "steps", self.steps))
        high = 0.5 if self.three_phase is True else 1.0
        _setfield(
            self,
            "pct_start",
            _real(self.name, "pct_start", self.pct_start, low=0.0, high=high, high_open=True),
        )
        _setfield(self, "div_factor", _real(self.name, "div_factor", self.div_factor, low=0.0))
        _setfield(
            self,
            "final_div_factor",
            _real(self.name, "final_div_factor", self.final_div_factor, low=0.0),
        )
        _setfield(self, "anneal", _choice(self.name, "anneal", self.anneal, ("cos", "linear")))
        if not isinstance(self.three_phase, (bool, np.bool_)):
            raise _fail(self.name, "three_phase", "True or False", self.three_phase)
        _setfield(self, "three_phase", bool(self.three_phase))
        # (begin, end step, lr at the begin, lr at the end) per phase, built once for
        # the scalar path (set like a field: see WSD for why not cached_property).
        phases = self._phases()
        begins = (0.0, *(stop for stop, _, _ in phases[:-1]))
        table = tuple((begin, *phase) for begin, phase in zip(begins, phases, strict=True))
        _setfield(self, "_phase_table", table)

    @property
    def length(self) -> int:
        return self.steps

    def _phases(self) -> list[tuple[float, float, float]]:
        """(end step, lr at the phase's start, lr at its end) for each phase."""
        start = self.max_lr / self.div_factor
        end = start / self.final_div_factor
        p = self.pct_start * self.steps - 1
        last = float(self.steps - 1)
        if self.three_phase:
            return [(p, start, self.max_lr), (2 * p, self.max_lr, start), (last, start, end)]
        return [(p, start, self.max_lr), (last, self.max_lr, end)]

    def _at(self, t: int) -> float:
        last = self.steps - 1
        if t > last:
            t = last
        for phase in self._phase_table:
            if t <= phase[1]:
                break  # no break: t is in the last phase (t == steps - 1 past its stop)
        begin, stop, a, b = phase
        span = stop - begin
        x = (t - begin) / span if span > 0 else 1.0
        if self.anneal == "cos":
            return b + (a - b) * _half_cosine(x)
        return a * (1.0 - x) + b * x  # exact at x = 1

    def _values(self, t: np.ndarray) -> np.ndarray:
        t = np.minimum(t, self.steps - 1).astype(np.float64)
        out = np.empty(t.shape)
        done = np.zeros(t.shape, dtype=bool)
        phases = self._phases()
        begin = 0.0
        for k, (stop, a, b) in enumerate(phases):
            here = ~done if k == len(phases) - 1 else (~done & (t <= stop))
            span = stop - begin
            x = (t[here] - begin) / span if span > 0 else np.ones(int(here.sum()))
            if self.anneal == "cos":
                out[here] = b + (a - b) * _half_cosine_np(x)
            else:
                out[here] = a * (1.0 - x) + b * x
            done |= here
            begin = stop
        return out

    def _formula(self, ops: Ops, t: Array) -> Array:
        xp = ops.xp
        last = self.steps - 1
        t = ops.min_int(t, last)
        tf = ops.float_(t)
        phases = self._phases()
        values = self._phase_values(ops, phases, tf)
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
            out = xp.where(t == ops.int_(k), self._at(k), out)
        return out

    def _formula_between(self, ops: Ops, u: Array, g: Array) -> Array:
        xp = ops.xp
        u = xp.minimum(u, float(self.steps - 1))
        phases = self._phases()
        # The last phase ends where the plan does: its rest is g, to full precision.
        values = self._phase_values(ops, phases, u, last_rest=g)
        out = values[-1]
        for (stop, _, _), value in reversed(list(zip(phases[:-1], values[:-1], strict=True))):
            out = xp.where(u <= stop, value, out)
        return out

    def _phase_values(
        self,
        ops: Ops,
        phases: list[tuple[float, float, float]],
        u: Array,
        last_rest: Array | None = None,
    ) -> list[Array]:
        """Each phase's value at position ``u``, for ``_formula`` (which picks the phase).

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
            if self.anneal == "cos":
                values.append(a * ops.half_cosine_rest(rest) + b * ops.half_cosine_rest(x))
            else:
                values.append(a * rest + b * x)
            begin = stop
        return values

    def _phase_starts(self) -> list[tuple[int, str]]:
        peak = max(0, math.ceil(self.pct_start * self.steps - 1 - 1e-9))  # max_lr's step
        turns = [(peak, "fall"), (2 * peak, "anneal")] if self.three_phase else [(peak, "fall")]
        return _phase_list((0, "rise"), *turns, (self.steps - 1, "hold"))

    def _replan(self, steps: int, at: int) -> Schedule:
        return _replan_family(self, steps, at)


@dataclass(frozen=True, eq=True, repr=False)
class InverseSqrt(Schedule):
    """Linear warmup to ``lr``, then decay with the inverse square root of the step
    (Vaswani et al. 2017, "Attention is all you need").

        lr(t) = lr * t / warmup_steps                  for t < warmup_steps
                lr * sqrt(warmup_steps / t)            for t >= warmup_steps

    Examples:
        >>> s = inverse_sqrt(1.0, warmup_steps=4)
        >>> s(0), s(2), s(4), s(16)
        (0.0, 0.5, 1.0, 0.5)
    """

    lr: float
    warmup_steps: int
    name: ClassVar[str] = "inverse_sqrt"

    def __post_init__(self) -> None:
        _setfield(self, "lr", _rate(self.name, "lr", self.lr))
        _setfield(self, "warmup_steps", _count(self.name, "warmup_steps", self.warmup_steps))

    def _at(self, t: int) -> float:
        w = self.warmup_steps
        if t < w:
            return self.lr * t / w
        return self.lr * math.sqrt(w / t)

    def _values(self, t: np.ndarray) -> np.ndarray:
        w = self.warmup_steps
        tf = t.astype(np.float64)
        safe = np.maximum(tf, w)
        return np.where(t < w, self.lr * tf / w, self.lr * np.sqrt(w / safe))

    def _formula(self, ops: Ops, t: Array) -> Array:
        w = self.warmup_steps
        tf = ops.float_(t)
        rising = self.lr * tf / w
        falling = self.lr * ops.xp.sqrt(w / ops.xp.maximum(tf, float(w)))
        return ops.before(t, w, rising, falling)

    def _phase_starts(self) -> list[tuple[int, str]]:
        return _phase_list((0, "warmup"), (self.warmup_steps, "decay"))


def _samples(family: str, batch_size: Any) -> int:
    return _count(family, "batch_size", batch_size)


@dataclass(frozen=True, eq=True, repr=False)
class InvScaling(Schedule):
    """scikit-learn's ``learning_rate="invscaling"``: ``eta0`` over a power of the sample count.

        lr(t) = eta0 / (t * batch_size + 1) ** power_t

    sklearn's SGD estimators count samples from 1 (``t = 1`` for the first
    sample) and use ``eta0 / t ** power_t``: lrkit's step ``t`` is sklearn's
    sample ``t + 1``, and with ``batch_size`` samples a step, step ``t``
    takes the lr sklearn gives the first sample of its batch, ``t *
    batch_size + 1``. Equal to sklearn's own numbers at those samples (see
    :mod:`lrkit.sklearn`; the lr never reaches 0, and ``power_t=0`` is
    constant). sklearn's defaults: ``power_t=0.5`` (SGDClassifier, MLPs),
    ``0.25`` (SGDRegressor).

    Examples:
        >>> s = invscaling(eta0=0.1, power_t=0.5)
        >>> s(0), s(3), round(s(99), 12)
        (0.1, 0.05, 0.01)
        >>> invscaling(eta0=0.1, power_t=0.5, batch_size=4)(1) == s(4)
        True
    """

    eta0: float
    power_t: float
    batch_size: int = 1
    name: ClassVar[str] = "invscaling"

    def __post_init__(self) -> None:
        _setfield(self, "eta0", _rate(self.name, "eta0", self.eta0))
        power = _real(self.name, "power_t", self.power_t, low=0.0, low_open=False)
        _setfield(self, "power_t", power)
        _setfield(self, "batch_size", _samples(self.name, self.batch_size))

    def _at(self, t: int) -> float:
        # sklearn's own arithmetic: eta0 / pow(t, power_t) at its sample t (from 1).
        return self.eta0 / float(t * self.batch_size + 1) ** self.power_t

    def _values(self, t: np.ndarray) -> np.ndarray:
        samples = t.astype(np.float64) * self.batch_size + 1.0
        return self.eta0 / np.power(samples, self.power_t)

    def _formula(self, ops: Ops, t: Array) -> Array:
        samples = ops.float_(t) * float(self.batch_size) + 1.0
        return self.eta0 * ops.xp.exp(-self.power_t * ops.xp.log(samples))


def sklearn_t0(alpha: float) -> float:
    """The ``t0`` of sklearn's ``learning_rate="optimal"``, computed as sklearn does.

    sklearn's SGD (``_plain_sgd``) takes ``typw = sqrt(1 / sqrt(alpha))``, an
    initial lr ``eta0 = typw / max(1, dloss(y=1, p=-typw))`` and ``t0 = 1 /
    (eta0 * alpha)``, so that the first sample's lr is ``eta0``. The loss
    derivative at a positive target and a negative prediction is <= 0 for
    every loss sklearn has (hinge, log_loss, modified_huber, squared_hinge,
    perceptron, squared_error, huber, epsilon_insensitive,
    squared_epsilon_insensitive), so ``max(1, ...)`` is 1 whatever the loss:
    ``eta0 = typw`` and ``t0 = 1 / (typw * alpha) = alpha ** -0.75``.

    Examples:
        >>> round(sklearn_t0(1e-4), 6)
        1000.0
    """
    alpha = _rate("optimal", "alpha", alpha, positive=True)
    typw = math.sqrt(1.0 / math.sqrt(alpha))
    return 1.0 / (typw * alpha)


@dataclass(frozen=True, eq=True, repr=False)
class Optimal(Schedule):
    """scikit-learn's ``learning_rate="optimal"`` (Bottou's SGD schedule).

        lr(t) = 1 / (alpha * (t0 + t * batch_size))

    sklearn computes ``1 / (alpha * (t0 + t - 1))`` at its sample ``t``
    (from 1): lrkit's step ``t`` is sklearn's sample ``t + 1`` (with
    ``batch_size`` samples a step, the first sample of the batch, ``t *
    batch_size + 1``). ``t0=None`` takes sklearn's own, :func:`sklearn_t0`
    (``alpha ** -0.75``: the first lr is ``alpha ** -0.25``). ``alpha`` is
    the estimator's regularisation strength.

    Examples:
        >>> s = optimal(alpha=1e-4)
        >>> round(s(0), 9), round(s(1000), 9)
        (10.0, 5.0)
        >>> optimal(alpha=0.01, t0=100.0)(0)
        1.0
    """

    alpha: float
    t0: float | None = None
    batch_size: int = 1
    name: ClassVar[str] = "optimal"
    if TYPE_CHECKING:  # set in __post_init__; not a dataclass field at runtime
        _t0: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _setfield(self, "alpha", _rate(self.name, "alpha", self.alpha, positive=True))
        if self.t0 is not None:
            _setfield(self, "t0", _rate(self.name, "t0", self.t0, positive=True))
        _setfield(self, "batch_size", _samples(self.name, self.batch_size))
        t0 = sklearn_t0(self.alpha) if self.t0 is None else self.t0
        if not math.isfinite(1.0 / (self.alpha * t0)):
            raise _fail(self.name, "alpha * t0", "large enough for a finite first lr", t0)
        _setfield(self, "_t0", t0)

    def _at(self, t: int) -> float:
        # sklearn's own arithmetic: 1 / (alpha * (t0 + t - 1)) at its sample t (from 1).
        return 1.0 / (self.alpha * (self._t0 + float(t * self.batch_size + 1) - 1.0))

    def _values(self, t: np.ndarray) -> np.ndarray:
        samples = t.astype(np.float64) * self.batch_size + 1.0
        return 1.0 / (self.alpha * (self._t0 + samples - 1.0))

    def _formula(self, ops: Ops, t: Array) -> Array:
        return 1.0 / (self.alpha * (self._t0 + ops.float_(t) * float(self.batch_size)))


_WSD_SHAPES = ("1-sqrt", "linear", "cosine")


def _decay_shape(shape: str, x: float) -> float:
    """The fraction of the way still to go after a fraction ``x`` of the decay."""
    if shape == "1-sqrt":
        return 1.0 - math.sqrt(x)
    if shape == "linear":
        return 1.0 - x
    return _half_cosine(x)


def _decay_shape_np(shape: str, x: np.ndarray) -> np.ndarray:
    if shape == "1-sqrt":
        return 1.0 - np.sqrt(x)
    if shape == "linear":
        return 1.0 - x
    return _half_cosine_np(x)


@dataclass(frozen=True, eq=True, repr=False)
class WSD(Schedule):
    """Warmup-stable-decay (Hu et al. 2024, MiniCPM; Hägele et al. 2024).

    ``steps`` counts all three phases. With ``W = warmup_steps`` and ``D`` the
    decay length (``decay_steps`` when an int, ``ceil(decay_steps * steps)``
    when a float below 1, as sklearn's ``test_size``):

        lr(t) = lr * t / W                                    t < W
                lr                                            W <= t < steps - D
                min_lr + (lr - min_lr) * shape((t - steps + D) / D)
                                                              steps - D <= t <= steps
                min_lr                                        t > steps

    with ``shape(x)`` = ``1 - sqrt(x)`` ("1-sqrt"), ``1 - x`` ("linear") or
    ``(1 + cos(pi x)) / 2`` ("cosine"). Reaches ``min_lr`` at step ``steps``;
    with ``decay_steps=0`` there is no decay phase and ``lr`` holds for ever.

    Examples:
        >>> s = wsd(1.0, steps=100, warmup_steps=10, decay_steps=0.2, decay_shape="linear")
        >>> s(5), s(50), s(80), s(90), s(100)
        (0.5, 1.0, 1.0, 0.5, 0.0)
    """

    lr: float
    steps: int
    warmup_steps: int = 0
    decay_steps: int | float = 0.2
    decay_shape: str = "1-sqrt"
    min_lr: float = 0.0
    name: ClassVar[str] = "wsd"
    if TYPE_CHECKING:  # set in __post_init__; not a dataclass field at runtime
        _decay: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = self.name
        _setfield(self, "lr", _rate(name, "lr", self.lr))
        _setfield(self, "steps", _count(name, "steps", self.steps))
        _setfield(self, "warmup_steps", _count(name, "warmup_steps", self.warmup_steps, low=0))
        d = self.decay_steps
        allowed = "an integer >= 0 (a count) or a float in (0, 1) (a fraction of steps)"
        if not _is_number(d) or not math.isfinite(d) or d < 0:
            raise _fail(name, "decay_steps", allowed, d)
        if isinstance(d, (float, np.floating)) and not 0 < d < 1:
            if d != math.floor(d) or d == 0:
                raise _fail(name, "decay_steps", allowed, d)
            d = int(d)  # an integral float such as 1e3 is a count
        _setfield(self, "decay_steps", float(d) if isinstance(d, (float, np.floating)) else int(d))
        _setfield(self, "decay_shape", _choice(name, "decay_shape", self.decay_shape, _WSD_SHAPES))
        min_lr = _rate(name, "min_lr", self.min_lr)
        if min_lr > self.lr:
            raise _fail(name, "min_lr", f"<= lr ({self.lr!r})", min_lr)
        _setfield(self, "min_lr", min_lr)
        if self.warmup_steps + self.decay_count > self.steps:
            raise ValueError(
                f"wsd: warmup_steps + decay steps must be <= steps ({self.steps}), got "
                f"{self.warmup_steps} + {self.decay_count} = "
                f"{self.warmup_steps + self.decay_count}"
            )
        # Worked out once for the scalar path. Set like the fields, never through
        # __dict__ (as functools.cached_property does), which in CPython 3.11 makes
        # every attribute read on the instance about 3x slower.
        _setfield(self, "_decay", self.decay_count)

    @property
    def decay_count(self) -> int:
        """The number of decay steps ``D``."""
        d = self.decay_steps
        if isinstance(d, float):
            return math.ceil(d * self.steps - 1e-9)
        return d

    @property
    def length(self) -> int:
        return self.steps

    def _at(self, t: int) -> float:
        w, d = self.warmup_steps, self._decay
        if t < w:
            return self.lr * t / w
        decay_start = self.steps - d
        if t < decay_start or d == 0:  # d == 0: no decay phase, as in _values
            return self.lr
        into = t - decay_start
        x = (into if into < d else d) / d
        return self.min_lr + (self.lr - self.min_lr) * _decay_shape(self.decay_shape, x)

    def _values(self, t: np.ndarray) -> np.ndarray:
        w, d = self.warmup_steps, self.decay_count
        decay_start = self.steps - d
        out = np.full(t.shape, self.lr)
        if w:
            rising = t < w
            out[rising] = self.lr * t[rising] / w
        if d:
            late = t >= decay_start
            x = np.minimum(t[late] - decay_start, d) / d
            out[late] = self.min_lr + (self.lr - self.min_lr) * _decay_shape_np(self.decay_shape, x)
        return out

    def _formula(self, ops: Ops, t: Array) -> Array:
        xp = ops.xp
        w, d = self.warmup_steps, self.decay_count
        out = ops.float_(t) * 0.0 + self.lr
        if w:
            out = ops.before(t, w, self.lr * ops.float_(t) / w, out)
        start = self.steps - d
        if d and ops.fits(start):
            into = ops.offset(t, start)
            rest = ops.fraction_left(into, d)  # 1 - x, from the integer steps to go
            into = ops.min_int(into, d)
            if self.decay_shape == "1-sqrt":
                shape = rest / (1.0 + xp.sqrt(ops.float_(into) / d))
            elif self.decay_shape == "linear":
                shape = rest
            else:
                shape = ops.half_cosine_rest(rest)
            out = ops.before(t, start, out, self.min_lr + (self.lr - self.min_lr) * shape)
        return out

    def _formula_between(self, ops: Ops, u: Array, g: Array) -> Array:
        xp = ops.xp
        w, d = self.warmup_steps, self.decay_count
        out = u * 0.0 + self.lr
        if w:
            out = xp.where(u < w, self.lr * u / w, out)
        if d:
            rest = xp.minimum(g, float(d)) / d  # 1 - x, from the steps still to go
            if self.decay_shape == "1-sqrt":
                shape = rest / (1.0 + xp.sqrt(xp.maximum(1.0 - rest, 0.0)))
            elif self.decay_shape == "linear":
                shape = rest
            else:
                shape = ops.half_cosine_rest(rest)
            out = xp.where(u < self.steps - d, out, self.min_lr + (self.lr - self.min_lr) * shape)
        return out

    def _phase_starts(self) -> list[tuple[int, str]]:
        w, decay_start = self.warmup_steps, self.steps - self.decay_count
        return _phase_list(
            (0, "warmup"), (w, "stable"), (decay_start, "decay"), (self.steps, "hold")
        )

    def _replan(self, steps: int, at: int) -> Schedule:
        replanned = Replanned(self, steps, at)
        return replanned._tail or replanned  # before the decay: a plain wsd, moved


_WARMUP_SHAPES = ("linear", "cosine", "exponential")


@dataclass(frozen=True, eq=True, repr=False)
class Warmup(Schedule):
    """Ramp from ``start_lr`` to ``schedule(0)`` over ``steps``, then run ``schedule``.

        lr(i) = start_lr + (schedule(0) - start_lr) * shape(i / steps)    i < steps
                schedule(i - steps)                                       i >= steps

    ``shape(x)`` is ``x`` ("linear") or ``(1 - cos(pi x)) / 2`` ("cosine");
    ``"exponential"`` ramps geometrically, ``start_lr * (schedule(0) /
    start_lr) ** (i / steps)``, and needs ``start_lr > 0``. The wrapped
    schedule starts at its own step 0 once the warmup is over, so the total
    length is ``steps`` plus the wrapped schedule's.

    Examples:
        >>> s = warmup(constant(1.0), steps=4)
        >>> [s(t) for t in range(6)]
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """

    schedule: Schedule
    steps: int
    start_lr: float = 0.0
    shape: str = "linear"
    name: ClassVar[str] = "warmup"

    def __post_init__(self) -> None:
        _as_schedule(self.name, "schedule", self.schedule)
        _setfield(self, "steps", _count(self.name, "steps", self.steps))
        _setfield(self, "start_lr", _rate(self.name, "start_lr", self.start_lr))
        _setfield(self, "shape", _choice(self.name, "shape", self.shape, _WARMUP_SHAPES))
        if self.shape == "exponential":
            if self.start_lr <= 0:
                raise _fail(self.name, "start_lr", "> 0 with shape='exponential'", self.start_lr)
            if self.schedule._at(0) <= 0:
                raise ValueError(
                    "warmup: shape='exponential' needs the wrapped schedule to start above 0, "
                    f"but {self.schedule} starts at {self.schedule._at(0)!r}"
                )

    @property
    def length(self) -> int | None:
        inner = self.schedule.length
        return None if inner is None else self.steps + inner

    def _at(self, t: int) -> float:
        if t >= self.steps:
            return self.schedule._at(t - self.steps)
        x = t / self.steps
        target = self.schedule._at(0)
        if self.shape == "exponential":
            return self.start_lr * (target / self.start_lr) ** x
        ramp = x if self.shape == "linear" else 0.5 * (1.0 - math.cos(math.pi * x))
        return self.start_lr + (target - self.start_lr) * ramp

    def _values(self, t: np.ndarray) -> np.ndarray:
        out = np.empty(t.shape)
        late = t >= self.steps
        out[late] = self.schedule._values(t[late] - self.steps)
        x = t[~late] / self.steps
        target = self.schedule._at(0)
        if self.shape == "exponential":
            out[~late] = self.start_lr * np.power(target / self.start_lr, x)
        else:
            ramp = x if self.shape == "linear" else 0.5 * (1.0 - np.cos(np.pi * x))
            out[~late] = self.start_lr + (target - self.start_lr) * ramp
        return out

    def _formula(self, ops: Ops, t: Array) -> Array:
        inner = self.schedule._formula(ops, ops.offset(t, self.steps))
        x = ops.float_(ops.min_int(t, self.steps)) / self.steps
        rest = ops.fraction_left(t, self.steps)  # 1 - x, from the integer steps to go
        target = self.schedule._at(0)
        # Blends of start_lr and target with weights >= 0 summing to 1: no cancellation.
        if self.shape == "exponential":
            ramp = self.start_lr * ops.power(target / self.start_lr, x)
        elif self.shape == "linear":
            ramp = self.start_lr * rest + target * x
        else:  # (1 - cos(pi x)) / 2 = sin(pi x / 2) ** 2, and 1 minus it = sin(pi rest / 2) ** 2
            ramp = self.start_lr * ops.half_cosine_rest(rest) + target * ops.half_cosine_rest(x)
        return ops.before(t, self.steps, ramp, inner)

    def _phase_starts(self) -> list[tuple[int, str]]:
        inner = ((self.steps + b, name) for b, name in self.schedule._phase_starts())
        return _phase_list((0, "warmup"), *inner)

    def _replan(self, steps: int, at: int) -> Schedule:
        # The wrapped schedule starts at step self.steps. Replanned at (or, while the
        # warmup still runs, at its own step 0) it keeps its first value, so the
        # ramp, which only depends on that value, stays the same.
        w = self.steps
        if steps <= w:
            raise ValueError(
                f"replan: steps must be an integer > {w} (the warmup's steps: the wrapped "
                f"schedule needs at least one step to reach its end), got {steps}"
            )
        inner = _replan_inside(self.schedule, steps - w, max(at - w, 0), offset=w)
        return Warmup(inner, w, self.start_lr, self.shape)


@dataclass(frozen=True, eq=True, repr=False)
class Join(Schedule):
    """Schedules one after another; each part starts at its own step 0.

    Part ``k`` runs on ``[boundaries[k-1], boundaries[k])`` and is evaluated
    at ``t - boundaries[k-1]``; the last part runs for ever after the last
    boundary. ``a | b`` is ``join(a, b, boundaries=[a.length])``. Nested joins
    are flattened, so ``(a | b) | c == a | (b | c)``.

    Examples:
        >>> s = linear(0.0, 1.0, steps=2) | constant(0.5)
        >>> [s(t) for t in range(4)]
        [0.0, 0.5, 0.5, 0.5]
    """

    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]
    name: ClassVar[str] = "join"

    def __post_init__(self) -> None:
        parts = tuple(self.schedules) if isinstance(self.schedules, Sequence) else None
        if not parts or len(parts) < 2:
            raise _fail(self.name, "schedules", "two or more schedules", self.schedules)
        for p in parts:
            _as_schedule(self.name, "schedules", p)
        if isinstance(self.boundaries, (str, bytes)) or not isinstance(
            self.boundaries, (Sequence, np.ndarray)
        ):
            raise _fail(self.name, "boundaries", "a list of integers >= 1", self.boundaries)
        bounds = tuple(_count(self.name, "boundaries", b) for b in self.boundaries)
        if len(bounds) != len(parts) - 1:
            raise ValueError(
                f"join: boundaries must have one entry fewer than schedules "
                f"({len(parts) - 1}), got {len(bounds)}: {list(bounds)}"
            )
        if any(b <= a for a, b in itertools.pairwise(bounds)):
            raise _fail(self.name, "boundaries", "strictly increasing", list(bounds))
        # Flatten nested joins: a join inside part k is the same as its parts
        # spliced in at offset boundaries[k-1], minus parts it never reaches.
        flat: list[Schedule] = []
        flat_bounds: list[int] = []
        starts = (0, *bounds)
        ends = (*bounds, None)
        for part, begin, end in zip(parts, starts, ends, strict=True):
            if begin:
                flat_bounds.append(begin)
            if isinstance(part, Join):
                for sub, sub_begin in zip(part.schedules, (0, *part.boundaries), strict=True):
                    if end is not None and begin + sub_begin >= end:
                        break
                    if sub_begin:
                        flat_bounds.append(begin + sub_begin)
                    flat.append(sub)
            else:
                flat.append(part)
        _setfield(self, "schedules", tuple(flat))
        _setfield(self, "boundaries", tuple(flat_bounds))

    @property
    def length(self) -> int | None:
        last = self.schedules[-1].length
        return None if last is None else self.boundaries[-1] + last

    def _uses_pipes(self) -> bool:
        """True when each boundary is where the part before it ends (``a | b``)."""
        begin = 0
        for part, bound in zip(self.schedules, self.boundaries, strict=False):
            if part.length is None or begin + part.length != bound:
                return False
            begin = bound
        return True

    def __str__(self) -> str:
        if self._uses_pipes():
            return " | ".join(str(p) for p in self.schedules)
        parts = ", ".join(str(p) for p in self.schedules)
        return f"join({parts}, boundaries={_format_value(self.boundaries)})"

    def _at(self, t: int) -> float:
        k = bisect.bisect_right(self.boundaries, t)
        begin = self.boundaries[k - 1] if k else 0
        return self.schedules[k]._at(t - begin)

    def _values(self, t: np.ndarray) -> np.ndarray:
        bounds = np.asarray(self.boundaries, dtype=np.int64)
        k = np.searchsorted(bounds, t, side="right")
        out = np.empty(t.shape)
        for i, part in enumerate(self.schedules):
            here = k == i
            if here.any():
                begin = self.boundaries[i - 1] if i else 0
                out[here] = part._values(t[here] - begin)
        return out

    def _formula(self, ops: Ops, t: Array) -> Array:
        bounds = [b for b in self.boundaries if ops.fits(b)]
        parts = self.schedules[: len(bounds) + 1]  # parts past the integer range never run
        begins = (0, *bounds)
        out = parts[-1]._formula(ops, ops.offset(t, begins[-1]))
        for part, begin, end in reversed(list(zip(parts[:-1], begins[:-1], bounds, strict=True))):
            out = ops.before(t, end, part._formula(ops, ops.offset(t, begin)), out)
        return out

    def _phase_starts(self) -> list[tuple[int, str]]:
        phases: list[tuple[int, str]] = []
        ends = (*self.boundaries, None)
        for part, begin, end in zip(self.schedules, (0, *self.boundaries), ends, strict=True):
            shifted = ((begin + b, name) for b, name in part._phase_starts())
            phases += [(b, name) for b, name in shifted if end is None or b < end]
        return _phase_list(*phases)

    def _replan(self, steps: int, at: int) -> Schedule:
        # Only the last part changes: parts before it keep their steps.
        begin = self.boundaries[-1]
        if steps <= begin:
            raise ValueError(
                f"replan: steps must be an integer > {begin} (where the join's last part "
                f"starts: it needs at least one step to reach its end), got {steps}"
            )
        last = _replan_inside(self.schedules[-1], steps - begin, max(at - begin, 0), begin)
        return Join(schedules=(*self.schedules[:-1], last), boundaries=self.boundaries)


@dataclass(frozen=True, eq=True, repr=False)
class Scaled(Schedule):
    """A schedule multiplied by a constant: ``factor * schedule``.

        lr(t) = factor * schedule(t)

    Examples:
        >>> s = 0.5 * constant(0.2)
        >>> str(s), s(0)
        ('0.5 * constant(lr=0.2)', 0.1)
    """

    factor: float
    schedule: Schedule
    name: ClassVar[str] = "scale"

    def __post_init__(self) -> None:
        factor = _rate(self.name, "factor", self.factor)
        inner = _as_schedule(self.name, "schedule", self.schedule)
        if isinstance(inner, Scaled):  # 0.5 * (0.5 * s) is 0.25 * s
            factor *= inner.factor
            inner = inner.schedule
        _setfield(self, "factor", factor)
        _setfield(self, "schedule", inner)

    @property
    def length(self) -> int | None:
        return self.schedule.length

    def __str__(self) -> str:
        inner = str(self.schedule)
        if isinstance(self.schedule, Join) and self.schedule._uses_pipes():
            inner = f"({inner})"
        return f"{_format_value(self.factor)} * {inner}"

    def _at(self, t: int) -> float:
        return self.factor * self.schedule._at(t)

    def _values(self, t: np.ndarray) -> np.ndarray:
        return self.factor * self.schedule._values(t)

    def _formula(self, ops: Ops, t: Array) -> Array:
        return self.factor * self.schedule._formula(ops, t)

    def _phase_starts(self) -> list[tuple[int, str]]:
        return self.schedule._phase_starts()

    def _replan(self, steps: int, at: int) -> Schedule:
        return Scaled(factor=self.factor, schedule=self.schedule._replan(steps, at))


# --------------------------------------------------------------------------
# Stochastic weight averaging: the lr of torch's SWALR after a start step.
# --------------------------------------------------------------------------

_SWA_ANNEALS = ("cos", "linear")


def _count_or_fraction(family: str, name: str, value: Any, low: int) -> int | float:
    """A step count (an int >= ``low``) or a fraction in (0, 1), as wsd's ``decay_steps``."""
    allowed = (
        f"an integer >= {low} (a step count) or a float in (0, 1) (a fraction of the "
        "wrapped schedule's length)"
    )
    if not _is_number(value) or not math.isfinite(value):
        raise _fail(family, name, allowed, value)
    if isinstance(value, (float, np.floating)):
        if 0 < value < 1:
            return float(value)
        if value != math.floor(value):
            raise _fail(family, name, allowed, value)
        value = int(value)  # an integral float such as 1e3 is a count
    if value < low:
        raise _fail(family, name, allowed, value)
    return int(value)


def _steps_of(fraction: float, total: int) -> int:
    """The steps a fraction of ``total`` stands for: rounded up, as wsd's ``decay_steps``."""
    return math.ceil(fraction * total - 1e-9)


@dataclass(frozen=True, eq=True, repr=False)
class SWA(Schedule):
    """Stochastic weight averaging's lr: ``schedule`` until ``start``, then torch's SWALR.

    Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima and Better
    Generalization". With ``S`` the start step, ``L0 = schedule(S)`` the
    wrapped schedule's lr there, ``A`` the anneal steps and ``swa`` the SWA
    lr (``L0`` when ``swa_lr`` is None: the lr reached at ``S`` is held):

        lr(t) = schedule(t)                                          t < S
                L0 + (swa - L0) * anneal(min(t - S, A) / A)          t >= S   (A > 0)
                swa                                                  t >= S   (A = 0)

    with ``anneal(x) = (1 - cos(pi x)) / 2`` ("cos") or ``x`` ("linear"):
    the values torch's ``torch.optim.swa_utils.SWALR(optimizer, swa_lr,
    anneal_epochs=A, anneal_strategy=...)`` gives when it is built at step
    ``S`` (on an optimizer at ``L0``) and stepped once per step. ``start``
    and ``anneal_steps`` are step counts (ints), or fractions of the wrapped
    schedule's length ``T`` when floats below 1, rounded up as wsd's
    ``decay_steps``: ``S = ceil(start * T)``. The default ``anneal_steps`` is
    5 % of ``T`` (it matters only when ``swa_lr`` is set); a wrapped schedule
    that never ends (``constant``) takes counts, or fractions that a known
    total makes counts (``parse(spec, steps=N)``, ``lrkit compare``).

    The averaging itself (``torch.optim.swa_utils.AveragedModel``, updated
    after every optimizer update from step ``S`` on, evaluated after
    ``update_bn``) is the trainer's: ``lrkit compare`` and
    :class:`lrkit.Trial` do it; :func:`swa_start` says where it begins.

    Examples:
        >>> s = swa(cosine(lr=1.0, steps=100), start=0.5)
        >>> s(49) > s(50) == s(99) == 0.5
        True
        >>> s = swa(constant(1.0), start=4, swa_lr=0.5, anneal_steps=2, anneal="linear")
        >>> [s(t) for t in range(8)]
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.5]
        >>> str(s)
        "swa(constant(lr=1.0), start=4, swa_lr=0.5, anneal_steps=2, anneal='linear')"
    """

    schedule: Schedule
    start: int | float = 0.75
    swa_lr: float | None = None
    anneal_steps: int | float = 0.05
    anneal: str = "cos"
    name: ClassVar[str] = "swa"
    if TYPE_CHECKING:  # set in __post_init__; not dataclass fields at runtime
        _start: int = field(init=False, repr=False, compare=False)
        _anneal: int = field(init=False, repr=False, compare=False)
        _from: float = field(init=False, repr=False, compare=False)
        _to: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = self.name
        inner = _as_schedule(name, "schedule", self.schedule)
        start = _count_or_fraction(name, "start", self.start, low=1)
        anneal_steps = _count_or_fraction(name, "anneal_steps", self.anneal_steps, low=0)
        _setfield(self, "start", start)
        _setfield(self, "anneal_steps", anneal_steps)
        if self.swa_lr is not None:
            _setfield(self, "swa_lr", _rate(name, "swa_lr", self.swa_lr))
        _setfield(self, "anneal", _choice(name, "anneal", self.anneal, _SWA_ANNEALS))
        total = inner.length
        if isinstance(start, float):
            if total is None:
                raise ValueError(
                    f"swa: start={start!r} is a fraction of the wrapped schedule's length, "
                    f"but {inner} never ends; give start as a step count, or the total "
                    "(parse(spec, steps=N), Scheduler(optimizer, spec, total_steps=N))"
                )
            start = _steps_of(start, total)
        if total is not None and start > total:
            raise _fail(name, "start", f"<= the wrapped schedule's length ({total})", start)
        lr_from = inner._at(start)
        lr_to = lr_from if self.swa_lr is None else self.swa_lr
        anneal = anneal_steps
        if isinstance(anneal, float):
            if total is not None:
                anneal = _steps_of(anneal, total)
            elif lr_to == lr_from:
                anneal = 0  # nothing to anneal: the length does not matter
            else:
                raise ValueError(
                    f"swa: anneal_steps={anneal!r} is a fraction of the wrapped schedule's "
                    f"length, but {inner} never ends; give anneal_steps as a step count, or "
                    "the total (parse(spec, steps=N), Scheduler(optimizer, spec, total_steps=N))"
                )
        # Worked out once, set like the fields (see WSD).
        _setfield(self, "_start", start)
        _setfield(self, "_anneal", anneal)
        _setfield(self, "_from", lr_from)
        _setfield(self, "_to", lr_to)

    @property
    def start_step(self) -> int:
        """``S``: the first step of the SWA phase (the first update the average takes)."""
        return self._start

    @property
    def length(self) -> int | None:
        inner = self.schedule.length
        return None if inner is None else max(inner, self._start + self._anneal)

    def _at(self, t: int) -> float:
        start = self._start
        if t < start:
            return self.schedule._at(t)
        a, lr_from, lr_to = self._anneal, self._from, self._to
        into = t - start
        if into >= a or lr_to == lr_from:  # the target, exactly, from start + A on
            return lr_to
        x = into / a
        w = 0.5 * (1.0 - math.cos(math.pi * x)) if self.anneal == "cos" else x
        return lr_from + (lr_to - lr_from) * w

    def _values(self, t: np.ndarray) -> np.ndarray:
        start, a = self._start, self._anneal
        out = np.empty(t.shape)
        early = t < start
        out[early] = self.schedule._values(t[early])
        late = ~early
        if a == 0 or self._to == self._from:
            out[late] = self._to
        else:
            x = np.minimum(t[late] - start, a) / a
            w = 0.5 * (1.0 - np.cos(np.pi * x)) if self.anneal == "cos" else x
            out[late] = np.where(x < 1, self._from + (self._to - self._from) * w, self._to)
        return out

    def _formula(self, ops: Ops, t: Array) -> Array:
        inner = self.schedule._formula(ops, t)
        start, a, lr_from, lr_to = self._start, self._anneal, self._from, self._to
        if not ops.fits(start):
            return inner
        if a == 0 or lr_to == lr_from:
            late = ops.float_(t) * 0.0 + lr_to
        else:
            into = ops.offset(t, start)
            rest = ops.fraction_left(into, a)  # 1 - x, from the integer steps to go
            x = ops.float_(ops.min_int(into, a)) / a
            # A blend of L0 and swa with weights >= 0 summing to 1: no cancellation.
            if self.anneal == "cos":  # (1 - cos(pi x)) / 2 = sin(pi x / 2) ** 2
                late = lr_from * ops.half_cosine_rest(rest) + lr_to * ops.half_cosine_rest(x)
            else:
                late = lr_from * rest + lr_to * x
        return ops.before(t, start, inner, late)

    def _phase_starts(self) -> list[tuple[int, str]]:
        start, a = self._start, self._anneal
        inner = [(b, name) for b, name in self.schedule._phase_starts() if b < start]
        annealing = a > 0 and self._to != self._from
        tail = [(start, "swa"), *([(start + a, "hold")] if annealing else [])]
        return _phase_list(*inner, *tail)


def swa_start(schedule: Any) -> int | None:
    """The step from which a schedule's ``swa(...)`` averages the weights, else None.

    Looks inside ``factor * s``, ``warmup(s, ...)`` and joins (at their
    offsets; a join that leaves the ``swa(...)`` part before its start never
    averages) and inside controllers (their ``schedule``): the trainer keeps
    an ``AveragedModel`` from that step on. A spec string is parsed first.

    Examples:
        >>> swa_start(warmup(swa(cosine(lr=0.1, steps=100), start=0.75), steps=10))
        85
        >>> swa_start("swa(cosine(lr=0.1, steps=100), start=0.75)")
        75
        >>> swa_start(cosine(lr=0.1, steps=100)) is None
        True
    """
    if isinstance(schedule, str):
        from lrkit.spec import parse

        schedule = parse(schedule)
    if isinstance(schedule, SWA):
        return schedule.start_step
    if isinstance(schedule, Scaled):
        return swa_start(schedule.schedule)
    if isinstance(schedule, Warmup):
        inner = swa_start(schedule.schedule)
        return None if inner is None else schedule.steps + inner
    if isinstance(schedule, Join):
        ends = (*schedule.boundaries, None)
        for part, begin, end in zip(
            schedule.schedules, (0, *schedule.boundaries), ends, strict=True
        ):
            inner = swa_start(part)
            if inner is not None and (end is None or begin + inner < end):
                return begin + inner
        return None
    if isinstance(schedule, Schedule):
        return None
    inner_schedule = getattr(schedule, "schedule", None)  # a controller
    return None if inner_schedule is None else swa_start(inner_schedule)


# --------------------------------------------------------------------------
# Plans changed mid-run: Schedule.replan and the replan(...) spec form.
# --------------------------------------------------------------------------

_REPLANNABLE = (
    "cosine, linear, polynomial, one_cycle and wsd schedules, warmup(...) and "
    "'factor * s' of those, joins whose last part is one of those, and replanned ones"
)


def _end_step(s: Cosine | Linear | Polynomial | OneCycle | WSD | Replanned) -> int:
    """The step where a replannable schedule reaches its end value."""
    if isinstance(s, Replanned):
        return s._new_end
    if isinstance(s, OneCycle):
        return s.steps - 1  # torch's convention
    return s.steps


def _moved_wsd(w: WSD, steps: int, at: int) -> WSD | None:
    """``w`` with its decay moved to end at ``steps``, if the decay has not begun at
    ``at`` and still fits, whole, after it; else None."""
    d = w.decay_count
    if at < w.steps - d and steps - d > at and steps >= w.warmup_steps + d:
        return WSD(w.lr, steps, w.warmup_steps, d, w.decay_shape, w.min_lr)
    return None


@dataclass(frozen=True, eq=True, repr=False)
class Replanned(Schedule):
    """``schedule`` as planned before step ``at``; from ``at`` on, what was left of
    it, stretched or shrunk to end at ``steps``. Made by :meth:`Schedule.replan`.

    With ``E`` the step where ``schedule`` reaches its end value (its
    ``steps``; one_cycle's ``steps - 1``) and ``E'`` the new one (``steps``;
    ``steps - 1`` for a one_cycle):

        lr(t) = schedule(t)                                       t < at
                schedule(at + (E - at) * (t - at) / (E' - at))    at <= t < E'
                schedule(E)                                       t >= E'

    ``schedule`` is evaluated between its integer steps there, with its own
    formula. Two cases differ:

    * a wsd whose decay has not begun at ``at`` and fits whole after it keeps
      its decay length and moves it to end at ``steps``: the values are those
      of ``wsd(..., steps=steps, decay_steps=D)``;
    * ``at >= E``: the plan is over; the values are those of ``schedule``.

    ``schedule`` is a cosine, linear, polynomial, one_cycle, wsd or replanned
    schedule; ``replan(...)`` in a spec also takes warmup, scaled and joined
    ones, and replans the schedule they wrap (as :meth:`Schedule.replan` does).

    Examples:
        >>> s = Replanned(linear(1.0, 0.0, steps=10), steps=15, at=5)
        >>> s(4), s(5), s(10), s(15)
        (0.6, 0.5, 0.25, 0.0)
        >>> s
        replan(linear(start_lr=1.0, end_lr=0.0, steps=10), steps=15, at=5)
    """

    schedule: Schedule
    steps: int
    at: int
    name: ClassVar[str] = "replan"
    if TYPE_CHECKING:  # set in __post_init__; not dataclass fields at runtime
        _gap: int = field(init=False, repr=False, compare=False)
        _tail: WSD | None = field(init=False, repr=False, compare=False)
        _new_end: int = field(init=False, repr=False, compare=False)
        _old_end: int = field(init=False, repr=False, compare=False)
        _old_span: int = field(init=False, repr=False, compare=False)
        _new_span: int = field(init=False, repr=False, compare=False)
        _end_lr: float = field(init=False, repr=False, compare=False)
        _same: Schedule | None = field(init=False, repr=False, compare=False)
        # (start, new end, old span, new span, the schedule's _at, also taken at
        # float positions between its integer steps)
        _plan: tuple[float, int, int, int, Callable[[float], float]] = field(
            init=False, repr=False, compare=False
        )

    def __post_init__(self) -> None:
        name = self.name
        inner = _as_schedule(name, "schedule", self.schedule)
        if not isinstance(inner, _WARPABLE):
            raise _fail(
                name,
                "schedule",
                "a cosine, linear, polynomial, one_cycle, wsd or replan(...) schedule "
                "(for warmup, scaled and joined schedules call their .replan())",
                inner,
            )
        at = _count(name, "at", self.at, low=0)
        steps = _count(name, "steps", self.steps)
        # Where the new plan ends: one_cycle (and a replanned one) ends at steps - 1.
        gap = (
            1 if isinstance(inner, OneCycle) or (isinstance(inner, Replanned) and inner._gap) else 0
        )
        if steps - gap <= at:
            why = " (one_cycle ends at steps - 1, which must come after at)" if gap else ""
            raise ValueError(
                f"{name}: steps must be an integer >= at + {1 + gap} = {at + 1 + gap}{why}, "
                f"got {steps}"
            )
        _setfield(self, "at", at)
        _setfield(self, "steps", steps)
        old_end, new_end = _end_step(inner), steps - gap
        tail = _moved_wsd(inner, steps, at) if isinstance(inner, WSD) else None
        # Worked out once for the scalar path (set like fields: see WSD).
        _setfield(self, "_gap", gap)
        _setfield(self, "_tail", tail)
        _setfield(self, "_new_end", new_end)
        _setfield(self, "_old_end", old_end)
        _setfield(self, "_old_span", old_end - at)
        _setfield(self, "_new_span", new_end - at)
        _setfield(self, "_end_lr", inner._at(old_end))
        # A schedule with the same values at every step, when there is one.
        same = tail if tail is not None else inner if at >= old_end else None
        _setfield(self, "_same", same)
        # What the scalar path reads, in one tuple; with `same`, every step is "before at".
        start = math.inf if same is not None else at
        call = same._at if same is not None else inner._at
        _setfield(self, "_plan", (start, new_end, old_end - at, new_end - at, call))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from the fields (the bound method in _plan is derived, not state).
        return (Replanned, (self.schedule, self.steps, self.at))

    @property
    def length(self) -> int:
        return self.steps

    def _at(self, t: int) -> float:
        at, new_end, old_span, new_span, call = self._plan
        if t < at:
            return call(t)
        if t >= new_end:
            return self._end_lr
        # (E - at) * (t - at) is an exact int: one rounding, and exactly E at t = E'.
        return call(at + old_span * (t - at) / new_span)

    def _values(self, t: np.ndarray) -> np.ndarray:
        same = self._same
        if same is not None:
            return same._values(t)
        out = np.empty(t.shape)
        early = t < self.at
        out[early] = self.schedule._values(t[early])
        late_t = t[~early]
        moving = late_t < self._new_end
        late = np.full(late_t.shape, self._end_lr)
        u = self.at + self._old_span * (late_t[moving] - self.at) / self._new_span
        late[moving] = self.schedule._values(u)
        out[~early] = late
        return out

    def _formula(self, ops: Ops, t: Array) -> Array:
        # ``schedule`` before ``at``; after it, ``schedule`` at the remapped position,
        # carried as two floats: ``u`` (the old plan's step) and ``g`` (the old plan's
        # steps still to go before its end), ``g`` worked out from the integer count
        # of new steps still to go, so a decay keeps its relative precision near its
        # end as the integer formulas do.
        if self._same is not None:
            return self._same._formula(ops, t)
        head = self.schedule._formula(ops, t)
        if not ops.fits(self.at):
            return head  # the change lies past the largest step: never reached
        since = ops.offset(t, self.at)  # 0 before at, where the head is taken
        rest = ops.fraction_left(since, self._new_span)  # 1 - fraction of the new rest done
        done = ops.float_(ops.min_int(since, self._new_span)) / self._new_span
        u = self.at + self._old_span * done
        tail = self.schedule._formula_between(ops, u, self._old_span * rest)
        return ops.before(t, self.at, head, tail)

    def _formula_between(self, ops: Ops, u: Array, g: Array) -> Array:
        xp = ops.xp
        if self._tail is not None:  # a wsd with its decay moved: the same end step
            return self._tail._formula_between(ops, u, g)
        shift = float(self._new_end - self._old_end)  # its end step minus its schedule's
        if self._same is not None:  # the plan was over: the schedule itself, held
            held = xp.minimum(u, float(self._old_end))
            return self.schedule._formula_between(ops, held, xp.maximum(g - shift, 0.0))
        head = self.schedule._formula_between(ops, u, xp.maximum(g - shift, 0.0))
        done = xp.minimum(xp.maximum((u - self.at) / self._new_span, 0.0), 1.0)
        rest = xp.minimum(xp.maximum(g / self._new_span, 0.0), 1.0)
        position = self.at + self._old_span * done
        tail = self.schedule._formula_between(ops, position, self._old_span * rest)
        return xp.where(u < self.at, head, tail)

    def _phase_starts(self) -> list[tuple[int, str]]:
        # The plan's phases before ``at``; the one it was in at ``at`` goes on from
        # there; its later phases follow where the remapped rest reaches them.
        old = self.schedule._phase_starts()
        at = self.at
        now = [name for step, name in old if step <= at][-1]
        if self._same is not None:
            later = [(b, name) for b, name in self._same._phase_starts() if b > at]
        else:
            old_span, new_span = self._old_span, self._new_span
            later = [
                (at - (at - b) * new_span // old_span, name)  # ceil: the first step past b
                for b, name in old
                if at < b <= self._old_end
            ]
        return _phase_list(*(p for p in old if p[0] < at), (at, now), *later)

    def _replan(self, steps: int, at: int) -> Schedule:
        if self._tail is not None:  # the same values as a plain wsd: replan that
            return self._tail._replan(steps, at)
        return Replanned(self, steps, at)


_WARPABLE = (Cosine, Linear, Polynomial, OneCycle, WSD, Replanned)


def _replan_family(s: Schedule, steps: int, at: int) -> Schedule:
    """``Replanned(s, steps, at)``, or ``s`` with ``steps`` changed when ``at == 0``.

    Not when the plan is already over at step 0 (``one_cycle(steps=1)`` ends at
    step 0): there the result holds the end value, as for any ``at`` past the end.
    """
    replanned = Replanned(s, steps, at)
    if at == 0 and replanned._old_end > 0:
        moved = replace(s, steps=steps)  # type: ignore[type-var]
        if moved._at(0) == s._at(0):  # one_cycle's first phase can vanish for few steps
            return moved
    return replanned


def _replan_inside(inner: Schedule, steps: int, at: int, offset: int) -> Schedule:
    """``inner.replan(steps, at)`` for a schedule that starts at step ``offset``."""
    try:
        return inner._replan(steps, at)
    except ValueError as exc:
        raise ValueError(
            f"{exc} (in the schedule starting at step {offset}, replanned with "
            f"steps={steps}, at={at})"
        ) from None


def replan(schedule: Schedule, steps: int, at: int) -> Schedule:
    """The spec form of :meth:`Schedule.replan`: ``replan(schedule, steps=..., at=...)``.

    A cosine, linear, polynomial, one_cycle, wsd or replanned ``schedule``
    gives ``Replanned(schedule, steps, at)`` as written (what ``str()`` of one
    prints, so ``parse(str(r)) == r``); any other gives
    ``schedule.replan(steps, at)``.

    Examples:
        >>> import lrkit
        >>> lrkit.parse("replan(cosine(lr=0.1, steps=1000), steps=1500, at=400)").length
        1500
        >>> lrkit.parse("replan(warmup(cosine(lr=0.1, steps=900), steps=100), steps=1500, at=400)")
        warmup(replan(cosine(lr=0.1, steps=900), steps=1400, at=300), steps=100)
    """
    if isinstance(schedule, _WARPABLE):
        return Replanned(schedule, steps, at)
    return _as_schedule("replan", "schedule", schedule).replan(steps, at)


# --------------------------------------------------------------------------
# Factories: the public, lower-case names of SPEC §2.
# --------------------------------------------------------------------------

constant = Constant
step_decay = StepDecay
multistep = MultiStep
exponential = Exponential
linear = Linear
cosine = Cosine
cosine_restarts = CosineRestarts
polynomial = Polynomial
cyclic = Cyclic
one_cycle = OneCycle
inverse_sqrt = InverseSqrt
invscaling = InvScaling
optimal = Optimal
wsd = WSD
warmup = Warmup
swa = SWA


def join(*schedules: Schedule, boundaries: Sequence[int]) -> Join:
    """Run ``schedules`` one after another, switching at ``boundaries``.

    Each part starts at its own step 0. ``boundaries`` has one entry fewer
    than ``schedules`` and is strictly increasing.

        lr(t) = schedules[k](t - boundaries[k-1])   for boundaries[k-1] <= t < boundaries[k]

    Examples:
        >>> s = join(constant(1.0), cosine(lr=0.5, steps=10), boundaries=[5])
        >>> s(4), s(5), s(15)
        (1.0, 0.5, 0.0)
    """
    return Join(schedules=tuple(schedules), boundaries=tuple(boundaries))


#: Spec name -> factory, for the spec language and :func:`lrkit.from_dict`.
FACTORIES: dict[str, Any] = {
    cls.name: cls
    for cls in (
        Constant,
        StepDecay,
        MultiStep,
        Exponential,
        Linear,
        Cosine,
        CosineRestarts,
        Polynomial,
        Cyclic,
        OneCycle,
        InverseSqrt,
        InvScaling,
        Optimal,
        WSD,
        Warmup,
        SWA,
    )
}
FACTORIES["join"] = join
FACTORIES["replan"] = replan
