"""Names people migrate from: transformers' ``get_scheduler`` and timm's schedulers on lrkit.

``lrkit.torch.get_scheduler`` takes the arguments of ``transformers.get_scheduler``
(the name, or transformers' ``SchedulerType``; ``num_warmup_steps``,
``num_training_steps``; ``scheduler_specific_kwargs`` with transformers' own
argument names) and returns an :class:`lrkit.torch.Scheduler` with
transformers' values at every step, quirks included: the warmup starts at 0
at step 0, ``polynomial``'s ``lr_end`` and the cosines' ``min_lr`` are read
against ``optimizer.defaults["lr"]``, the cosine climbs back after
``num_training_steps``, ``cosine_warmup_with_min_lr`` runs one step ahead.

Where an lrkit schedule has the same values, the scheduler drives that
schedule, so ``repr()`` shows a spec that :func:`lrkit.parse` reads back. A
few argument sets have values no lrkit family can give (a cosine whose turns
fall between steps, hard restarts at fractional steps, ``inverse_sqrt`` with
a ``timescale`` other than the warmup, ...); these run
:class:`TransformersFormula`, a schedule that evaluates transformers' formula
itself and shows as ``transformers('name', ...)``. ``reduce_lr_on_plateau``
returns the drop-in :class:`lrkit.torch.ReduceLROnPlateau`, as transformers
returns torch's class. transformers is never imported.

``lrkit.torch.create_scheduler_v2`` does the same for timm's
``create_scheduler_v2`` (its names, arguments and defaults; ``(scheduler,
num_epochs)`` back): the plan is an lrkit spec where one has timm's values,
else :class:`TimmFormula`. timm is never imported either.

Examples:
    >>> import torch
    >>> from lrkit.torch import get_scheduler
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> s = get_scheduler("linear", opt, num_warmup_steps=2, num_training_steps=6)
    >>> s
    Scheduler(SGD, 'warmup(linear(start_lr=1.0, end_lr=0.0, steps=4), steps=2)', step=0, lr=[0.0])
    >>> lrs = [s.get_last_lr()[0]]
    >>> for _ in range(6):
    ...     opt.step(); s.step(); lrs.append(s.get_last_lr()[0])
    >>> lrs
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
"""

from __future__ import annotations

import bisect
import difflib
import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from torch.optim import Optimizer

from lrkit import schedules as _core
from lrkit.torch._common import _as_float, _check_optimizer
from lrkit.torch.driver import Scheduler
from lrkit.torch.plateau import ReduceLROnPlateau

__all__ = [
    "NAMES",
    "TIMM_NAMES",
    "TimmFormula",
    "TransformersFormula",
    "create_scheduler_v2",
    "get_scheduler",
]

#: transformers' scheduler names that :func:`get_scheduler` accepts.
NAMES = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
)

_REQUIRED = object()

#: For each name, the ``scheduler_specific_kwargs`` it takes and their defaults
#: (transformers' names and defaults). None: transformers ignores them.
_OPTIONS: dict[str, dict[str, Any] | None] = {
    "linear": {},
    "cosine": {"num_cycles": 0.5},
    "cosine_with_restarts": {"num_cycles": 1},
    "polynomial": {"lr_end": 1e-7, "power": 1.0},
    "constant": None,
    "constant_with_warmup": None,
    "inverse_sqrt": {"timescale": None},
    "cosine_with_min_lr": {"num_cycles": 0.5, "min_lr": None, "min_lr_rate": None},
    "cosine_warmup_with_min_lr": {
        "num_cycles": 0.5,
        "min_lr": None,
        "min_lr_rate": None,
        "warmup_lr_rate": None,
    },
    "warmup_stable_decay": {
        "num_decay_steps": _REQUIRED,
        "num_stable_steps": None,
        "warmup_type": "linear",
        "decay_type": "cosine",
        "min_lr_ratio": 0.0,
        "num_cycles": 0.5,
    },
}

_SHAPES = ("linear", "cosine", "1-sqrt")


# ---------------------------------------------------------------------------
# transformers' formulas, for the argument sets no lrkit schedule expresses
# ---------------------------------------------------------------------------


def _ramp(t: int, w: int) -> float:
    """The warmup of every transformers schedule: 0 at step 0, rising by 1/w a step."""
    return t / max(1, w)


def _wave(c: float, x: float) -> float:
    """``(1 + cos(2 pi c x)) / 2``: with ``c = 0.5``, 1 at x = 0 down to 0 at x = 1."""
    return 0.5 * (1.0 + math.cos(2.0 * math.pi * c * x))


def _cosine(t: int, w: int, n: int, o: Mapping[str, Any]) -> float:
    """cosine, cosine_with_min_lr: ramp, then the wave over ``n - w`` steps, for ever."""
    if t < w:
        return _ramp(t, w)
    m = o.get("min_lr_rate", 0.0)
    return max(0.0, m + (1.0 - m) * _wave(o["num_cycles"], (t - w) / max(1, n - w)))


def _cosine_ahead(t: int, w: int, n: int, o: Mapping[str, Any]) -> float:
    """cosine_warmup_with_min_lr: a ramp that reaches 1 at step w - 1, the wave one step ahead."""
    if t < w:
        r = o.get("warmup_lr_rate")
        if r is None:
            return (t + 1.0) / max(1.0, w)
        return r + (1.0 - r) * t / max(1, w - 1)
    m = o["min_lr_rate"]
    return max(0.0, m + (1.0 - m) * _wave(o["num_cycles"], (t - w + 1.0) / max(1.0, n - w)))


def _restarts(t: int, w: int, n: int, o: Mapping[str, Any]) -> float:
    """cosine_with_restarts: ``num_cycles`` half-cosines in ``n - w`` steps, then 0."""
    if t < w:
        return _ramp(t, w)
    done = (t - w) / max(1, n - w)
    if done >= 1.0:
        return 0.0
    into = (o["num_cycles"] * done) % 1.0  # float arithmetic, as transformers: see _restart_slips
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * into)))


def _inverse_sqrt(t: int, w: int, n: int, o: Mapping[str, Any]) -> float:
    """inverse_sqrt: ramp, then ``1 / sqrt((t - w + timescale) / timescale)``."""
    if t < w:
        return _ramp(t, w)
    tau = o["timescale"]
    return 1.0 / math.sqrt((t + (tau - w)) / tau)


def _shape(kind: str, x: float, c: float, rising: bool) -> float:
    """The wsd phases' shapes: the fraction of the way up (rising) or still to go (decay)."""
    if kind == "linear":
        return x if rising else 1.0 - x
    if kind == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * x)) if rising else _wave(c, x)
    return 1.0 - math.sqrt(1.0 - x) if rising else 1.0 - math.sqrt(x)  # "1-sqrt"


def _wsd(t: int, w: int, n: int, o: Mapping[str, Any]) -> float:
    """warmup_stable_decay: from min_lr_ratio up over w, flat, down over num_decay_steps."""
    m, stable, decay = o["min_lr_ratio"], o["num_stable_steps"], o["num_decay_steps"]
    if t < w:
        return max(0.0, m + (1.0 - m) * _shape(o["warmup_type"], _ramp(t, w), 0.5, True))
    if t < w + stable:
        return 1.0
    if t < w + stable + decay:
        x = (t - w - stable) / max(1, decay)
        return max(0.0, m + (1.0 - m) * _shape(o["decay_type"], x, o["num_cycles"], False))
    return m


# The same formulas on an int64 array of steps (each branch computed everywhere, then
# picked; arguments are clipped where a branch would take a root of a negative number).


def _wave_np(c: float, x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.cos(2.0 * math.pi * c * x))


def _cosine_np(t: np.ndarray, w: int, n: int, o: Mapping[str, Any]) -> np.ndarray:
    m = o.get("min_lr_rate", 0.0)
    wave = _wave_np(o["num_cycles"], (t - w) / max(1, n - w))
    return np.where(t < w, t / max(1, w), np.maximum(0.0, m + (1.0 - m) * wave))


def _cosine_ahead_np(t: np.ndarray, w: int, n: int, o: Mapping[str, Any]) -> np.ndarray:
    r, m = o.get("warmup_lr_rate"), o["min_lr_rate"]
    up = (t + 1.0) / max(1.0, w) if r is None else r + (1.0 - r) * t / max(1, w - 1)
    wave = _wave_np(o["num_cycles"], (t - w + 1.0) / max(1.0, n - w))
    return np.where(t < w, up, np.maximum(0.0, m + (1.0 - m) * wave))


def _restarts_np(t: np.ndarray, w: int, n: int, o: Mapping[str, Any]) -> np.ndarray:
    done = (t - w) / max(1, n - w)
    into = np.mod(o["num_cycles"] * done, 1.0)
    down = np.where(done >= 1.0, 0.0, np.maximum(0.0, 0.5 * (1.0 + np.cos(math.pi * into))))
    return np.where(t < w, t / max(1, w), down)


def _inverse_sqrt_np(t: np.ndarray, w: int, n: int, o: Mapping[str, Any]) -> np.ndarray:
    tau = o["timescale"]
    return np.where(t < w, t / max(1, w), 1.0 / np.sqrt((np.maximum(t, w) + (tau - w)) / tau))


def _shape_np(kind: str, x: np.ndarray, c: float, rising: bool) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    if kind == "linear":
        return x if rising else 1.0 - x
    if kind == "cosine":
        return 0.5 * (1.0 - np.cos(math.pi * x)) if rising else _wave_np(c, x)
    return 1.0 - np.sqrt(1.0 - x) if rising else 1.0 - np.sqrt(x)


def _wsd_np(t: np.ndarray, w: int, n: int, o: Mapping[str, Any]) -> np.ndarray:
    m, stable, decay = o["min_lr_ratio"], o["num_stable_steps"], o["num_decay_steps"]
    up = m + (1.0 - m) * _shape_np(o["warmup_type"], t / max(1, w), 0.5, True)
    x = (t - w - stable) / max(1, decay)
    down = m + (1.0 - m) * _shape_np(o["decay_type"], x, o["num_cycles"], False)
    phases = [t < w, t < w + stable, t < w + stable + decay]
    return np.select(phases, [np.maximum(0.0, up), 1.0, np.maximum(0.0, down)], m)


_Scalar = Callable[[int, int, int, Mapping[str, Any]], float]
_Vector = Callable[[np.ndarray, int, int, Mapping[str, Any]], np.ndarray]

#: Name -> (the factor at one step, the factors at an array of steps).
_FORMULAS: dict[str, tuple[_Scalar, _Vector]] = {
    "cosine": (_cosine, _cosine_np),
    "cosine_with_min_lr": (_cosine, _cosine_np),
    "cosine_warmup_with_min_lr": (_cosine_ahead, _cosine_ahead_np),
    "cosine_with_restarts": (_restarts, _restarts_np),
    "inverse_sqrt": (_inverse_sqrt, _inverse_sqrt_np),
    "warmup_stable_decay": (_wsd, _wsd_np),
}


@dataclass(frozen=True, eq=True, repr=False)
class TransformersFormula(_core.Schedule):
    """transformers' own formula for one scheduler name, as an lrkit schedule.

        lr(t) = lr * factor(t)

    with ``factor`` transformers' lambda for ``scheduler`` (computed in the
    same order of float operations, so the values are transformers' to the
    last bit or two). :func:`get_scheduler` uses it only where no lrkit
    family has the same values. It has no spec name: ``str()`` shows
    ``transformers('cosine', lr=..., ...)``, which :func:`lrkit.parse` does
    not read, and it cannot be replanned.

    Args:
        scheduler: one of cosine, cosine_with_min_lr, cosine_warmup_with_min_lr,
            cosine_with_restarts, inverse_sqrt, warmup_stable_decay.
        lr: the lr the factor multiplies (the first param group's).
        num_warmup_steps: the warmup's steps.
        num_training_steps: the run's steps (0 where the name has none).
        options: the formula's other arguments, as ``(name, value)`` pairs.

    Examples:
        >>> s = TransformersFormula("inverse_sqrt", 1.0, 0, 0, (("timescale", 4),))
        >>> s
        transformers('inverse_sqrt', lr=1.0, num_warmup_steps=0, timescale=4)
        >>> s(0), s(12)
        (1.0, 0.5)
    """

    scheduler: str
    lr: float
    num_warmup_steps: int
    num_training_steps: int
    options: tuple[tuple[str, Any], ...] = ()
    name: ClassVar[str] = "transformers"

    if TYPE_CHECKING:  # set in __post_init__; not dataclass fields at runtime
        _opts: dict[str, Any] = field(init=False, repr=False, compare=False)
        _pair: tuple[_Scalar, _Vector] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.scheduler not in _FORMULAS:
            raise _core._fail(self.name, "scheduler", f"one of {sorted(_FORMULAS)}", self.scheduler)
        object.__setattr__(self, "lr", _core._rate(self.name, "lr", self.lr))
        object.__setattr__(self, "options", tuple(self.options))
        # Worked out once for the scalar path (set like the fields, as lrkit's WSD does).
        object.__setattr__(self, "_opts", dict(self.options))
        object.__setattr__(self, "_pair", _FORMULAS[self.scheduler])

    @property
    def length(self) -> int | None:
        """The step from which the value holds: the end of restarts and wsd, else None."""
        o = self._opts
        if self.scheduler == "cosine_with_restarts":
            return max(self.num_training_steps, self.num_warmup_steps + 1)
        if self.scheduler == "warmup_stable_decay":
            return self.num_warmup_steps + o["num_stable_steps"] + o["num_decay_steps"]
        return None

    def __str__(self) -> str:
        args = [
            repr(self.scheduler),
            f"lr={self.lr!r}",
            f"num_warmup_steps={self.num_warmup_steps}",
        ]
        if self.num_training_steps:
            args.append(f"num_training_steps={self.num_training_steps}")
        args += [f"{k}={v!r}" for k, v in self.options]
        return f"{self.name}({', '.join(args)})"

    def _at(self, t: int) -> float:
        factor = self._pair[0](t, self.num_warmup_steps, self.num_training_steps, self._opts)
        return self.lr * factor

    def _values(self, t: np.ndarray) -> np.ndarray:
        factor = self._pair[1](t, self.num_warmup_steps, self.num_training_steps, self._opts)
        return self.lr * np.asarray(factor, dtype=np.float64)


# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------


def _scheduler_name(name: Any) -> str:
    """The name as a string: a str, or an enum (transformers' SchedulerType) with a str value."""
    value = getattr(name, "value", name)
    if not isinstance(value, str):
        raise TypeError(
            f"get_scheduler: name must be a string or transformers' SchedulerType, "
            f"got {type(name).__name__}: {name!r}"
        )
    if value in NAMES:
        return value
    listed = ", ".join(repr(n) for n in NAMES)
    if value == "greedy":
        raise ValueError(
            "get_scheduler: 'greedy' (transformers' GreedyLR, which adapts the lr to the "
            "loss) has no lrkit equivalent here; lrkit.Adaptive is the closest "
            "(Scheduler(optimizer, lrkit.Adaptive(lrkit.constant(lr))), step(metric=loss)). "
            f"Names: {listed}"
        )
    close = difflib.get_close_matches(value, NAMES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"get_scheduler: unknown scheduler name {value!r}{hint}; expected one of {listed}"
    )


def _steps(who: str, arg: str, value: Any, low: int) -> int:
    """A whole number of steps >= low (an integral float such as 1e3 is accepted)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value != int(value) or value < low:
        raise ValueError(f"{who}: {arg} must be an integer >= {low}, got {value!r}")
    return int(value)


def _number(
    who: str, arg: str, value: Any, low: float = -math.inf, high: float = math.inf
) -> float:
    """A finite number in [low, high]."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        where = "" if math.isinf(low) and math.isinf(high) else f" in [{low:g}, {high:g}]"
        raise ValueError(f"{who}: {arg} must be a finite number{where}, got {value!r}")
    return float(value)


_MEANING = {
    "num_warmup_steps": "W: the steps of the warmup from 0; 0 for none",
    "num_training_steps": "N: the run's total number of scheduler steps",
}


def _required(key: str, arg: str, value: Any, low: int) -> int:
    """A step count the name needs: a ValueError that says how to pass it when None."""
    who = f"get_scheduler({key!r})"
    if value is None:
        total = key in _DECAYING or key == "warmup_stable_decay"
        call = "num_warmup_steps=W" + (", num_training_steps=N" if total else "")
        raise ValueError(
            f"{who} needs {arg}; pass it: get_scheduler({key!r}, optimizer, {call}) "
            f"({_MEANING[arg]})"
        )
    return _steps(who, arg, value, low)


#: The names that need num_training_steps.
_DECAYING = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
)


def _options(key: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """transformers' defaults for ``key``, updated with ``given``; unknown keys are a TypeError."""
    accepted = _OPTIONS[key]
    if accepted is None:  # transformers does not pass them on for this name
        return {}
    given = dict(given or {})
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) if accepted else "none"
        extra = (
            "; to resume, use the scheduler's state_dict() and load_state_dict()"
            if "last_epoch" in unknown
            else ""
        )
        raise TypeError(
            f"get_scheduler({key!r}): unexpected scheduler_specific_kwargs {unknown}; "
            f"{key!r} takes: {takes}{extra}"
        )
    out = {**accepted, **given}
    missing = [k for k, v in out.items() if v is _REQUIRED]
    if missing:
        raise ValueError(
            f"get_scheduler({key!r}) needs {missing[0]}; pass it: "
            f"scheduler_specific_kwargs={{{missing[0]!r}: N}}"
        )
    return out


def _min_lr_rate(key: str, o: Mapping[str, Any], defaults_lr: float) -> float:
    """transformers' min_lr_rate: given, or min_lr / optimizer.defaults["lr"]."""
    who = f"get_scheduler({key!r})"
    if o["min_lr"] is not None and o["min_lr_rate"] is not None:
        raise ValueError(
            f"{who}: give min_lr or min_lr_rate in scheduler_specific_kwargs, not both"
        )
    if o["min_lr"] is not None:
        if defaults_lr <= 0:
            raise ValueError(f"{who}: min_lr needs an optimizer lr > 0, got {defaults_lr!r}")
        min_lr = _number(who, "min_lr", o["min_lr"], 0.0, defaults_lr)
        return min_lr / defaults_lr
    if o["min_lr_rate"] is None:
        raise ValueError(
            f"{who} needs min_lr or min_lr_rate; pass one: "
            "scheduler_specific_kwargs={'min_lr_rate': 0.1} (a fraction of the lr) or "
            "{'min_lr': 1e-6}"
        )
    return _number(who, "min_lr_rate", o["min_lr_rate"], 0.0, 1.0)


# ---------------------------------------------------------------------------
# Names -> lrkit schedules
# ---------------------------------------------------------------------------


def _after_warmup(schedule: _core.Schedule, w: int) -> _core.Schedule:
    """transformers' warmup (0 at step 0, ``lr * t / w``) in front of ``schedule``."""
    return schedule if w == 0 else _core.warmup(schedule, steps=w)


def _tidy(x: float) -> float:
    """``x``, or a shorter float within 1e-15 relative of it (0.1 * 0.1 -> 0.01), for the spec."""
    for digits in range(1, 17):
        y = float(f"{x:.{digits}g}")
        if abs(y - x) <= 1e-15 * abs(x):
            return y
    return x


def _cosine_and_back(lr: float, d: int, min_lr: float, w: int) -> _core.Schedule:
    """Warmup, down a half-cosine over d steps, then back up over d more (the wave goes on)."""
    back = _core.warmup(_core.constant(lr), steps=d, start_lr=min_lr, shape="cosine")
    return _after_warmup(_core.cosine(lr, d, min_lr=min_lr), w) | back


def _restart_slips(c: float, d: int, period: int) -> bool:
    """True when transformers' float ``(c * k*period/d) % 1`` misses 0 at a restart, which
    then shows the bottom of the cosine instead of the top (e.g. c=22: 15/22*22 < 15)."""
    cycles = -(-d // period)
    return any((c * ((k * period) / d)) % 1.0 != 0.0 for k in range(1, cycles))


def _formula(key: str, lr: float, w: int, n: int, **options: Any) -> TransformersFormula:
    given = tuple((k, v) for k, v in options.items() if v is not None)
    return TransformersFormula(key, lr, w, n, given)


def _schedule(
    key: str, lr: float, defaults_lr: float, w: int | None, n: int | None, o: dict[str, Any]
) -> _core.Schedule:
    """The lrkit schedule with transformers' values for ``key`` (the first group's lr ``lr``)."""
    who = f"get_scheduler({key!r})"
    if key == "constant":
        return _core.constant(lr)
    w = _required(key, "num_warmup_steps", w, 0)
    if key == "constant_with_warmup":
        return _after_warmup(_core.constant(lr), w)
    if key == "inverse_sqrt":
        tau = o["timescale"]
        if tau is None:
            tau = w or 10_000  # transformers' default
        elif _number(who, "timescale", tau) <= 0:
            raise ValueError(f"{who}: timescale must be > 0, got {tau!r}")
        if w >= 1 and tau == w:
            return _core.inverse_sqrt(lr, warmup_steps=w)
        return _formula(key, lr, w, 0, timescale=tau)
    if key == "warmup_stable_decay":
        return _wsd_schedule(lr, w, n, o)
    n = _required(key, "num_training_steps", n, 1)
    d = n - w
    if key == "linear":
        if d <= 0:  # warmup past the end: the ramp, then 0
            return _core.linear(0.0, lr, w) | _core.constant(0.0)
        return _after_warmup(_core.linear(lr, 0.0, d), w)
    if key == "polynomial":
        return _polynomial(lr, defaults_lr, w, n, o)
    c = _number(who, "num_cycles", o["num_cycles"])
    if key == "cosine_with_restarts":
        period = d / c if d > 0 and c > 0 else 0.0
        if period != int(period) or period < 1 or _restart_slips(c, d, int(period)):
            return _formula(key, lr, w, n, num_cycles=c)
        if int(period) == d:  # one cycle: a plain cosine, which holds 0 from its end
            return _after_warmup(_core.cosine(lr, d), w)
        restarts = _after_warmup(_core.cosine_restarts(lr, int(period)), w)
        return _core.join(restarts, _core.constant(0.0), boundaries=[n])
    m = 0.0 if key == "cosine" else _min_lr_rate(key, o, defaults_lr)
    min_lr = min(_tidy(lr * m), lr)
    if key == "cosine_warmup_with_min_lr":
        r = o["warmup_lr_rate"]
        r = None if r is None else _number(who, "warmup_lr_rate", r, 0.0)
        if c != 0.5 or d <= 0 or w == 0 or (w == 1 and r is not None):
            return _formula(key, lr, w, n, num_cycles=c, min_lr_rate=m, warmup_lr_rate=r)
        # The ramp ends at step w - 1 and the cosine starts there: one step ahead.
        tail = _cosine_and_back(lr, d, min_lr, 0)
        if w == 1:
            return tail
        return _core.linear(_tidy(lr / w if r is None else lr * r), lr, w - 1) | tail
    if c != 0.5 or d <= 0:
        options = {"num_cycles": c} if key == "cosine" else {"num_cycles": c, "min_lr_rate": m}
        return _formula(key, lr, w, n, **options)
    return _cosine_and_back(lr, d, min_lr, w)


def _polynomial(
    lr: float, defaults_lr: float, w: int, n: int, o: Mapping[str, Any]
) -> _core.Schedule:
    who = "get_scheduler('polynomial')"
    lr_end = _number(who, "lr_end", o["lr_end"], 0.0)
    power = _number(who, "power", o["power"])
    if power <= 0:
        raise ValueError(f"{who}: power must be > 0, got {o['power']!r}")
    if not defaults_lr > lr_end:
        raise ValueError(
            f"{who}: lr_end ({lr_end!r}) must be smaller than the optimizer's lr "
            f"(optimizer.defaults['lr'] = {defaults_lr!r})"
        )
    # transformers decays to lr_end / defaults["lr"] times each group's lr.
    end_lr = lr_end if lr == defaults_lr else _tidy(lr * lr_end / defaults_lr)
    if w == n:
        raise ValueError(
            f"{who}: num_training_steps must differ from num_warmup_steps (both {n}); "
            "transformers divides by their difference at that step"
        )
    if w > n:  # warmup past the end: the ramp, then lr_end
        return _core.linear(0.0, lr, w) | _core.constant(end_lr)
    return _after_warmup(_core.polynomial(lr, n - w, power=power, end_lr=end_lr), w)


def _wsd_schedule(lr: float, w: int, n: int | None, o: Mapping[str, Any]) -> _core.Schedule:
    who = "get_scheduler('warmup_stable_decay')"
    decay = _steps(who, "num_decay_steps", o["num_decay_steps"], 0)
    stable = o["num_stable_steps"]
    if stable is None:
        if n is None:
            raise ValueError(
                f"{who} needs num_training_steps, or num_stable_steps in "
                "scheduler_specific_kwargs; pass get_scheduler('warmup_stable_decay', "
                "optimizer, num_warmup_steps=W, num_training_steps=N, "
                "scheduler_specific_kwargs={'num_decay_steps': D})"
            )
        n = _steps(who, "num_training_steps", n, 0)
        if n < w + decay:
            raise ValueError(
                f"{who}: num_training_steps ({n}) must be >= num_warmup_steps + num_decay_steps "
                f"({w} + {decay} = {w + decay})"
            )
        stable = n - w - decay
    else:
        stable = _steps(who, "num_stable_steps", stable, 0)
        if n is not None and n != w + stable + decay:
            warnings.warn(
                f"{who}: num_training_steps ({n}) is not num_warmup_steps + num_stable_steps "
                f"+ num_decay_steps ({w} + {stable} + {decay}); num_stable_steps is used, "
                "as transformers does",
                UserWarning,
                stacklevel=4,
            )
    kinds = {}
    for arg in ("warmup_type", "decay_type"):
        if o[arg] not in _SHAPES:
            raise ValueError(f"{who}: {arg} must be one of {list(_SHAPES)}, got {o[arg]!r}")
        kinds[arg] = o[arg]
    m = _number(who, "min_lr_ratio", o["min_lr_ratio"], 0.0, 1.0)
    c = _number(who, "num_cycles", o["num_cycles"])
    warm, shape = kinds["warmup_type"], kinds["decay_type"]
    if warm == "1-sqrt" or (shape == "cosine" and c != 0.5) or decay == 0:
        return _formula(
            "warmup_stable_decay",
            lr,
            w,
            0,
            num_stable_steps=stable,
            num_decay_steps=decay,
            warmup_type=warm,
            decay_type=shape,
            min_lr_ratio=m,
            num_cycles=c,
        )
    min_lr = min(_tidy(lr * m), lr)
    if warm == "linear" and m == 0:  # wsd's own warmup is the same
        return _core.wsd(lr, w + stable + decay, w, decay, decay_shape=shape)
    body = _core.wsd(lr, stable + decay, decay_steps=decay, decay_shape=shape, min_lr=min_lr)
    if w == 0:
        return body
    return _core.warmup(body, steps=w, start_lr=min_lr, shape=warm)


# ---------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------


def get_scheduler(
    name: Any,
    optimizer: Optimizer,
    num_warmup_steps: int | None = None,
    num_training_steps: int | None = None,
    scheduler_specific_kwargs: Mapping[str, Any] | None = None,
) -> Scheduler | ReduceLROnPlateau:
    """transformers' ``get_scheduler``: the same names, arguments and values, on lrkit.

    Returns an :class:`lrkit.torch.Scheduler` whose lr at step ``t`` is
    transformers' at step ``t`` for every param group (the first group's
    ``initial_lr`` times transformers' factor; the other groups keep their
    ratio to it, which is what transformers' ``LambdaLR`` gives too). Its
    plan is an lrkit spec wherever one has the same values (``repr()``
    shows it), else :class:`TransformersFormula`; ``docs/torch.md`` has the
    table. Past ``num_training_steps`` the values stay transformers', with
    one exception: the cosines (``cosine``, ``cosine_with_min_lr``,
    ``cosine_warmup_with_min_lr``, default ``num_cycles``) climb back to the
    lr over ``num_training_steps - num_warmup_steps`` steps as transformers'
    do, and then hold it, where transformers' keep oscillating.

    As in transformers: ``constant`` ignores every argument but the
    optimizer; ``constant_with_warmup`` ignores ``scheduler_specific_kwargs``;
    ``inverse_sqrt`` ignores ``num_training_steps``; ``polynomial``'s
    ``lr_end`` and the cosines' ``min_lr`` are read against
    ``optimizer.defaults["lr"]``, and scale every group alike.

    Args:
        name: one of :data:`NAMES`, or transformers' ``SchedulerType`` (any
            object whose ``.value`` is such a string).
        optimizer: the torch optimizer.
        num_warmup_steps: the warmup's steps (every name but ``constant`` and
            ``reduce_lr_on_plateau``).
        num_training_steps: the run's steps (the decaying names; for
            ``warmup_stable_decay``, or ``num_stable_steps``).
        scheduler_specific_kwargs: transformers' other arguments by their
            names: ``num_cycles`` (cosines, restarts, wsd), ``lr_end`` and
            ``power`` (polynomial), ``timescale`` (inverse_sqrt), ``min_lr``
            or ``min_lr_rate`` (the min_lr cosines), ``warmup_lr_rate``
            (cosine_warmup_with_min_lr), ``num_decay_steps``,
            ``num_stable_steps``, ``warmup_type``, ``decay_type``,
            ``min_lr_ratio`` (warmup_stable_decay); for
            ``reduce_lr_on_plateau``, ReduceLROnPlateau's arguments.

    Returns:
        A :class:`lrkit.torch.Scheduler`; for ``reduce_lr_on_plateau`` the
        drop-in :class:`lrkit.torch.ReduceLROnPlateau` (a subclass of
        torch's, as transformers returns torch's: its per-group ``min_lr``
        and ``eps``, and frameworks that check for it pass it the metric).

    Raises:
        ValueError: an unknown name (the message lists the names); a missing
            ``num_warmup_steps`` or ``num_training_steps`` where the name needs
            it, or a missing required kwarg (the message says how to pass it);
            an argument out of range, naming it and its value.
        TypeError: a ``scheduler_specific_kwargs`` key the name does not take.

    Examples:
        >>> import torch
        >>> from lrkit.torch import get_scheduler
        >>> opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        >>> get_scheduler("cosine", opt, num_warmup_steps=100, num_training_steps=1000)
        Scheduler(AdamW, 'warmup(cosine(lr=0.001, steps=900), steps=100)
            | warmup(constant(lr=0.001), steps=900, shape='cosine')', step=0, lr=[0.0])
        >>> get_scheduler("polynomial", opt, 0, 10, {"power": 2.0, "lr_end": 1e-4})
        Scheduler(AdamW, 'polynomial(lr=0.001, steps=10, power=2.0, end_lr=0.0001)', step=0,
            lr=[0.001])
    """
    key = _scheduler_name(name)
    optimizer = _check_optimizer("get_scheduler", optimizer)
    if key == "reduce_lr_on_plateau":
        return ReduceLROnPlateau(optimizer, **dict(scheduler_specific_kwargs or {}))
    first = optimizer.param_groups[0]
    lr = float(_as_float(first.get("initial_lr", first["lr"])))
    defaults_lr = float(_as_float(optimizer.defaults.get("lr", lr)))
    options = _options(key, scheduler_specific_kwargs)
    schedule = _schedule(key, lr, defaults_lr, num_warmup_steps, num_training_steps, options)
    with warnings.catch_warnings():
        # The plan's lr is the optimizer's by construction; a ramp that never
        # reaches it (warmup past the end) is transformers' value, not a mistake.
        warnings.filterwarnings("ignore", "Scheduler: the schedule's lr is", UserWarning)
        return Scheduler(optimizer, schedule)


# ---------------------------------------------------------------------------
# timm's create_scheduler_v2
# ---------------------------------------------------------------------------

#: timm's scheduler names that :func:`create_scheduler_v2` accepts.
TIMM_NAMES = (
    "cosine",
    "tanh",
    "step",
    "multistep",
    "plateau",
    "poly",
    "wsd",
    "rsqrt",
    "constant",
    "none",
)

#: The names whose values TimmFormula computes (plateau follows metrics; none has no values).
_TIMM_FORMULAS = ("cosine", "tanh", "poly", "step", "multistep", "wsd", "rsqrt")
_TIMM_DECAYS = ("linear", "1-sqrt", "cosine", "power", "exp")
_TANH_LB, _TANH_UB = -7.0, 3.0  # create_scheduler_v2 leaves TanhLRScheduler's bounds alone


def _timm_cycle(u: float, o: Mapping[str, Any]) -> tuple[float, float, float]:
    """(cycle index, cycle length, steps into the cycle) at ``u`` steps past the warmup."""
    first, mul = o["t_initial"], o["cycle_mul"]
    if mul == 1:
        i = u // first
        return i, first, u - first * i
    inside = 1.0 - u / first * (1.0 - mul)
    if inside <= 0.0:  # past every cycle of a shrinking series (timm: a math domain error)
        return math.inf, first, 0.0
    i = math.floor(math.log(inside, mul))
    return i, mul**i * first, u - (1.0 - mul**i) / (1.0 - mul) * first


def _timm_decay(kind: str, frac: float) -> float:
    """WSDLRScheduler's decay factor: 1 at frac = 0 down to 0 at frac = 1."""
    if kind == "linear":
        return 1.0 - frac
    if kind == "1-sqrt":
        return 1.0 - math.sqrt(frac)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * frac))
    if kind == "power":
        return 1.0 - frac**0.5  # create_scheduler_v2 keeps decay_power at 0.5
    return (0.1**frac - 0.1) / 0.9  # exp, decay_ratio 0.1


def _timm_after_warmup(name: str, lr: float, t: int, o: Mapping[str, Any]) -> float:
    """timm's lr at step ``t`` (>= the warmup) for one param group whose base lr is ``lr``."""
    low, w = o["min_lr"], o["warmup_t"]
    if name in ("wsd", "rsqrt"):  # the warmup is always a prefix
        since = t - w
        scale = 1.0 if name == "wsd" else (1.0 + since / o["timescale"]) ** -0.5
        stable = max(lr * scale, low)
        into = since - (o["t_initial"] - o["decay_t"])
        if into <= 0:
            return stable
        frac = min(into / o["decay_t"], 1.0)
        return low + (stable - low) * _timm_decay(o["decay_fn"], frac)
    u = t - w if o["warmup_prefix"] else t
    if name == "step":
        return lr * o["decay_rate"] ** (u // o["decay_t"])
    if name == "multistep":
        return lr * o["decay_rate"] ** bisect.bisect_right(o["milestones"], u + 1)
    i, length, into = _timm_cycle(u, o)
    if i >= o["cycle_limit"]:
        return low
    peak = lr * o["cycle_decay"] ** i
    if name == "tanh":
        x = into / length
        return low + 0.5 * (peak - low) * (1.0 - math.tanh(_TANH_LB * (1.0 - x) + _TANH_UB * x))
    k = o["k_decay"]
    if name == "cosine":
        return low + 0.5 * (peak - low) * (1.0 + math.cos(math.pi * into**k / length**k))
    return low + (peak - low) * (1.0 - into**k / length**k) ** o["power"]  # poly


@dataclass(frozen=True, eq=True, repr=False)
class TimmFormula(_core.Schedule):
    """timm's own formula for one scheduler name and one param group, as an lrkit schedule.

        lr(0) = warmup_lr if warmup_t else lr        (what timm's constructor sets)
        lr(t) = warmup_lr + t * (target - warmup_lr) / warmup_t      1 <= t < warmup_t
                timm's _get_lr(t)                                    t >= warmup_t

    times ``lr_scale`` where given (timm's layer-wise decay), with ``target``
    the lr (``tanh`` without ``warmup_prefix``: its own value at
    ``warmup_t``). :func:`create_scheduler_v2` uses it only where no lrkit
    family has the same values; it has no spec name: ``str()`` shows
    ``timm('cosine', lr=..., ...)``, which :func:`lrkit.parse` does not read,
    and it cannot be replanned. Past the run it holds what timm holds
    (``min_lr`` after the last cycle), so it has no length.

    Args:
        scheduler: one of cosine, tanh, poly, step, multistep, wsd, rsqrt.
        lr: the group's base lr (its ``initial_lr``).
        options: the formula's arguments, as ``(name, value)`` pairs, in
            steps (epochs or updates): ``t_initial``, ``min_lr``,
            ``warmup_t``, ``warmup_lr``, ``warmup_prefix``, ``cycle_mul``,
            ``cycle_decay``, ``cycle_limit``, ``k_decay``, ``power`` (poly),
            ``decay_t``, ``decay_rate`` (step), ``milestones`` (multistep),
            ``decay_fn``, ``timescale`` (wsd, rsqrt), ``lr_scale``.

    Examples:
        >>> s = TimmFormula("tanh", 1.0, (("t_initial", 10), ("min_lr", 0.0)))
        >>> s
        timm('tanh', lr=1.0, t_initial=10, min_lr=0.0)
        >>> s(0), round(s(1), 6), round(s(10), 6)
        (1.0, 0.999994, 0.0)
    """

    scheduler: str
    lr: float
    options: tuple[tuple[str, Any], ...] = ()
    name: ClassVar[str] = "timm"

    if TYPE_CHECKING:  # set in __post_init__; not dataclass fields at runtime
        _opts: dict[str, Any] = field(init=False, repr=False, compare=False)
        _slope: float = field(init=False, repr=False, compare=False)

    _DEFAULTS: ClassVar[dict[str, Any]] = {
        "t_initial": 1,
        "min_lr": 0.0,
        "warmup_t": 0,
        "warmup_lr": 0.0,
        "warmup_prefix": False,
        "cycle_mul": 1.0,
        "cycle_decay": 1.0,
        "cycle_limit": 1,
        "k_decay": 1.0,
        "power": 1.0,
        "decay_t": 1,
        "decay_rate": 1.0,
        "milestones": (),
        "decay_fn": "linear",
        "timescale": 1.0,
        "lr_scale": 1.0,
    }

    def __post_init__(self) -> None:
        if self.scheduler not in _TIMM_FORMULAS:
            raise _core._fail(
                self.name, "scheduler", f"one of {list(_TIMM_FORMULAS)}", self.scheduler
            )
        object.__setattr__(self, "lr", _core._rate(self.name, "lr", self.lr))
        options = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in self.options)
        unknown = sorted(set(dict(options)) - set(self._DEFAULTS))
        if unknown:
            raise _core._fail(
                self.name, "options", f"names among {sorted(self._DEFAULTS)}", unknown
            )
        object.__setattr__(self, "options", options)
        o = {**self._DEFAULTS, **dict(options)}
        object.__setattr__(self, "_opts", o)
        w, start = o["warmup_t"], o["warmup_lr"]
        target = self.lr
        if w and self.scheduler == "tanh" and not o["warmup_prefix"]:
            target = _timm_after_warmup("tanh", self.lr, w, o)  # timm ramps to its value at w
        object.__setattr__(self, "_slope", (target - start) / w if w else 0.0)

    def __str__(self) -> str:
        args = [repr(self.scheduler), f"lr={self.lr!r}"]
        args += [f"{k}={list(v) if isinstance(v, tuple) else v!r}" for k, v in self.options]
        return f"{self.name}({', '.join(args)})"

    def _at(self, t: int) -> float:
        o = self._opts
        w = o["warmup_t"]
        if t < w:
            value = o["warmup_lr"] + t * self._slope
        elif t == 0:
            value = self.lr  # timm's constructor sets the base lr, not _get_lr(0)
        else:
            value = _timm_after_warmup(self.scheduler, self.lr, t, o)
        return value * o["lr_scale"]

    def _values(self, t: np.ndarray) -> np.ndarray:
        # timm's loops (cycles of varying length, bisect, floor of a log) one step at a time.
        return np.fromiter((self._at(int(x)) for x in t.ravel()), np.float64, t.size).reshape(
            t.shape
        )


# -- arguments -----------------------------------------------------------------


def _timm_name(sched: Any) -> str:
    if not isinstance(sched, str):
        raise TypeError(
            f"create_scheduler_v2: sched must be a string, got {type(sched).__name__}: {sched!r}"
        )
    if sched in TIMM_NAMES:
        return sched
    listed = ", ".join(repr(n) for n in TIMM_NAMES)
    close = difflib.get_close_matches(sched, TIMM_NAMES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"create_scheduler_v2: unknown scheduler name {sched!r}{hint}; expected one of {listed}"
    )


_WHO = "create_scheduler_v2"


def _timm_positive(arg: str, value: Any) -> float:
    x = _number(_WHO, arg, value)
    if x <= 0:
        raise ValueError(f"{_WHO}: {arg} must be > 0, got {value!r}")
    return x


def _timm_plan(key: str, lr: float, o: Mapping[str, Any]) -> _core.Schedule:
    """The lrkit schedule with timm's values for one group (base lr ``lr``, before lr_scale)."""
    w, start, low = o["warmup_t"], o["warmup_lr"], o["min_lr"]
    shifted = o["warmup_prefix"] or w == 0  # the part after the warmup starts at its step 0
    body: _core.Schedule | None = None
    if key == "constant":
        body = _core.constant(lr)
    elif key == "step":
        d = o["decay_t"]
        rate = o["decay_rate"]
        if shifted and d == int(d) and 0 < rate <= 1:
            body = _core.step_decay(lr, int(d), rate) if rate < 1 else _core.constant(lr)
    elif key == "multistep":
        ms, rate = o["milestones"], o["decay_rate"]
        if shifted and rate > 0 and all(m == int(m) and m >= 2 for m in ms):
            # timm counts the milestones <= u + 1: lrkit's, one step earlier.
            body = (
                _core.multistep(lr, tuple(int(m) - 1 for m in ms), rate)
                if ms
                else _core.constant(lr)
            )
    elif key in ("cosine", "poly"):
        first, limit, mul = o["t_initial"], o["cycle_limit"], o["cycle_mul"]
        plain = shifted and o["k_decay"] == 1 and mul == 1 and first == int(first)
        if plain and key == "cosine" and limit == 1 and low <= lr:
            body = _core.cosine(lr, int(first), min_lr=low)
        elif plain and key == "cosine" and limit > 1 and low == 0 and 0 < o["cycle_decay"] <= 1:
            restarts = _core.cosine_restarts(lr, int(first), decay=o["cycle_decay"])
            body = _core.join(restarts, _core.constant(0.0), boundaries=[int(first) * limit])
        elif plain and key == "poly" and limit == 1 and o["power"] > 0:
            body = _core.polynomial(lr, int(first), power=o["power"], end_lr=low)
    elif key == "wsd" and o["decay_fn"] in ("linear", "1-sqrt", "cosine") and low <= lr:
        shape = o["decay_fn"]
        body = _core.wsd(
            lr, o["t_initial"], decay_steps=o["decay_t"], decay_shape=shape, min_lr=low
        )
    if body is None:
        return _timm_formula(key, lr, o)
    return body if w == 0 else _core.warmup(body, steps=w, start_lr=start)


def _timm_formula(key: str, lr: float, o: Mapping[str, Any]) -> TimmFormula:
    """TimmFormula with the options that matter for ``key`` (defaults left out)."""
    wanted = {
        "cosine": ("t_initial", "min_lr", "cycle_mul", "cycle_decay", "cycle_limit", "k_decay"),
        "tanh": ("t_initial", "min_lr", "cycle_mul", "cycle_decay", "cycle_limit"),
        "poly": ("t_initial", "min_lr", "cycle_mul", "cycle_decay", "cycle_limit", "k_decay"),
        "step": ("decay_t", "decay_rate"),
        "multistep": ("milestones", "decay_rate"),
        "wsd": ("t_initial", "decay_t", "min_lr", "decay_fn"),
        "rsqrt": ("t_initial", "decay_t", "min_lr", "decay_fn", "timescale"),
    }[key]
    names = (*wanted, "power") if key == "poly" else wanted
    names = (*names, "warmup_t", "warmup_lr")
    if key not in ("wsd", "rsqrt"):
        names = (*names, "warmup_prefix")
    defaults = TimmFormula._DEFAULTS
    keep = [(k, o[k]) for k in names if k in wanted or o[k] != defaults[k]]
    return TimmFormula(key, lr, tuple(keep))


def _timm_cycle_length(key: str, o: Mapping[str, Any]) -> int | float:
    """timm's get_cycle_length(): the steps of all cycles (and a prefixed warmup)."""
    if key in ("wsd", "rsqrt"):
        return o["warmup_t"] + o["t_initial"]
    first, mul, cycles = o["t_initial"], o["cycle_mul"], max(1, o["cycle_limit"])
    t = first * cycles if mul == 1 else math.floor(-first * (mul**cycles - 1) / (1 - mul))
    return t + o["warmup_t"] if o["warmup_prefix"] else t


def _timm_plateau(
    optimizer: Optimizer, mode: str, patience: int, rate: float, low: float, w: int, start: float
) -> ReduceLROnPlateau:
    if w:
        raise ValueError(
            f"{_WHO}('plateau'): a warmup (warmup_epochs={w}) in front of a plateau has no "
            "lrkit equivalent here; warm up with Scheduler(optimizer, lrkit.Plateau("
            "'warmup(constant(lr), steps=W)', ...)), or pass warmup_epochs=0"
        )
    return ReduceLROnPlateau(
        optimizer, mode=mode, factor=rate, patience=patience, threshold=1e-4, min_lr=low
    )


def create_scheduler_v2(
    optimizer: Optimizer,
    sched: str = "cosine",
    num_epochs: int = 300,
    decay_epochs: float | None = None,
    decay_milestones: Sequence[int] = (90, 180, 270),
    cooldown_epochs: int = 0,
    patience_epochs: int = 10,
    decay_rate: float = 0.1,
    min_lr: float = 0.0,
    warmup_lr: float = 1e-5,
    warmup_epochs: int = 0,
    warmup_prefix: bool = False,
    noise: float | Sequence[float] | None = None,
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: int = 42,
    cycle_mul: float = 1.0,
    cycle_decay: float = 0.1,
    cycle_limit: int = 1,
    k_decay: float = 1.0,
    decay_fn: str | None = None,
    stable_timescale: float | None = None,
    plateau_mode: str = "max",
    step_on_epochs: bool = True,
    updates_per_epoch: int = 0,
) -> tuple[Scheduler | ReduceLROnPlateau | None, int]:
    """timm's ``create_scheduler_v2``: the same names, arguments and values, on lrkit.

    Returns ``(scheduler, num_epochs)`` as timm does. The scheduler is an
    :class:`lrkit.torch.Scheduler` whose lr at step ``t`` is timm's at
    epoch ``t`` (``step_on_epochs=True``) or at update ``t``
    (``step_on_epochs=False``), in every param group: each group runs its
    own plan from its own ``initial_lr`` (timm's ``min_lr`` and
    ``warmup_lr`` are absolute, the same for every group), times its
    ``lr_scale`` where it has one. The plan is an lrkit spec wherever one has
    the same values (``repr()`` shows it), else :class:`TimmFormula`;
    ``docs/torch.md`` has the table. ``num_epochs`` is timm's: the cycles
    plus ``cooldown_epochs`` for cosine, tanh, poly, wsd, rsqrt; else
    ``num_epochs``, plus ``warmup_epochs`` with ``warmup_prefix``.

    **Stepping.** timm's ``step(epoch)`` / ``step_update(num_updates)`` are
    both called by timm's loop and one of them does nothing; here there is
    one: call ``scheduler.step()`` once per epoch (``step_on_epochs=True``)
    or once per optimizer update (``False``), after the epoch or update,
    where timm's loop calls ``step(epoch + 1)`` or ``step_update(n)``.
    Resume with ``state_dict()`` / ``load_state_dict()``.

    Args:
        optimizer: the torch optimizer.
        sched: one of :data:`TIMM_NAMES`. ``"plateau"`` (deprecated in timm)
            returns the drop-in :class:`lrkit.torch.ReduceLROnPlateau` (torch's
            values, the class timm wraps; call ``step(metric)`` once per
            epoch); ``"none"`` returns ``None`` as timm does.
        num_epochs: the schedule's epochs (the stable + decay phases for wsd
            and rsqrt: with ``warmup_prefix=False`` the warmup is inside them).
        decay_epochs: step: epochs between decays (default 90); wsd, rsqrt:
            the decay phase, in epochs or, below 1, a fraction (default 0.2).
        decay_milestones: multistep: timm decays at step ``m - 1`` for each
            milestone ``m`` (it compares ``t + 1``).
        cooldown_epochs: epochs added to the returned ``num_epochs`` (the lr
            then holds ``min_lr``).
        patience_epochs: plateau: epochs without improvement before a cut.
        decay_rate: step, multistep, plateau: the factor; poly: the power.
        min_lr: the lr the decaying names end at (absolute).
        warmup_lr: the lr at step 0 of the warmup (absolute).
        warmup_epochs: the linear warmup's epochs.
        warmup_prefix: the warmup comes before ``num_epochs`` (the schedule
            starts after it) rather than inside them.
        noise: timm's lr noise. Not supported: other than None is a ValueError.
        noise_pct: timm's lr noise; ignored without ``noise``, as in timm.
        noise_std: timm's lr noise; ignored without ``noise``, as in timm.
        noise_seed: timm's lr noise; ignored without ``noise``, as in timm.
        cycle_mul: cosine, tanh, poly: each cycle's length factor.
        cycle_decay: cosine, tanh, poly: each cycle's peak factor.
        cycle_limit: cosine, tanh, poly: the number of cycles.
        k_decay: cosine, poly: timm's k-decay (``t ** k / T ** k``).
        decay_fn: wsd, rsqrt: ``'linear'``, ``'1-sqrt'``, ``'cosine'``,
            ``'power'`` or ``'exp'``; None: ``'1-sqrt'`` (wsd), ``'linear'``
            (rsqrt).
        stable_timescale: rsqrt: epochs of the ``(1 + t / timescale) ** -0.5``
            decline; None: ``warmup_epochs``.
        plateau_mode: plateau: ``'max'`` or ``'min'``.
        step_on_epochs: step per epoch, else per update.
        updates_per_epoch: updates per epoch (>= 1 when
            ``step_on_epochs=False``).

    Returns:
        ``(scheduler, num_epochs)``.

    Raises:
        ValueError: an unknown name (the message lists them); ``noise``; a
            missing ``updates_per_epoch``; an argument out of range, naming it
            and its value (where timm asserts or divides by zero).
        TypeError: a callable ``decay_fn`` (it has no spec), or a non-string name.

    Examples:
        >>> import torch
        >>> from lrkit.torch import create_scheduler_v2
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> create_scheduler_v2(opt, "cosine", num_epochs=100, warmup_epochs=5,
        ...                     warmup_prefix=True, min_lr=1e-5)
        (Scheduler(SGD, 'warmup(cosine(lr=0.1, steps=100, min_lr=1e-05), steps=5,
            start_lr=1e-05)', step=0, lr=[1e-05]), 105)
        >>> create_scheduler_v2(opt, "step", decay_epochs=30, decay_rate=0.5)
        (Scheduler(SGD, 'step_decay(lr=0.1, step_size=30)', step=0, lr=[0.1]), 300)
    """
    key = _timm_name(sched)
    optimizer = _check_optimizer(_WHO, optimizer)
    if noise is not None:
        raise ValueError(
            f"{_WHO}: noise={noise!r} is not supported: lrkit's lr is a function of the step "
            "alone; pass noise=None (timm's default)"
        )
    if not isinstance(step_on_epochs, bool):
        raise TypeError(f"{_WHO}: step_on_epochs must be a bool, got {step_on_epochs!r}")
    epochs = _steps(_WHO, "num_epochs", num_epochs, 1)
    warm = _steps(_WHO, "warmup_epochs", warmup_epochs, 0)
    cool = _steps(_WHO, "cooldown_epochs", cooldown_epochs, 0)
    per = 1
    if not step_on_epochs:
        if updates_per_epoch in (0, None):
            raise ValueError(
                f"{_WHO}: step_on_epochs=False needs updates_per_epoch (the number of optimizer "
                "updates per epoch, len(loader) // grad_accum_steps); got "
                f"{updates_per_epoch!r}"
            )
        per = _steps(_WHO, "updates_per_epoch", updates_per_epoch, 1)
    low = _number(_WHO, "min_lr", min_lr, 0.0)
    start = _number(_WHO, "warmup_lr", warmup_lr, 0.0)
    if key == "none":
        return None, epochs + warm if warmup_prefix else epochs
    if decay_epochs is None:
        decay_epochs = 0.2 if key in ("wsd", "rsqrt") else 90
    o: dict[str, Any] = {
        "t_initial": epochs * per,
        "min_lr": low,
        "warmup_t": warm * per,
        "warmup_lr": start,
        "warmup_prefix": bool(warmup_prefix),
        "cycle_mul": 1.0,
        "cycle_decay": 1.0,
        "cycle_limit": 1,
    }
    if key in ("cosine", "tanh", "poly"):
        o["cycle_mul"] = _timm_positive("cycle_mul", cycle_mul)
        o["cycle_decay"] = _number(_WHO, "cycle_decay", cycle_decay, 0.0)
        o["cycle_limit"] = _steps(_WHO, "cycle_limit", cycle_limit, 1)
        if key != "tanh":
            o["k_decay"] = _timm_positive("k_decay", k_decay)
        if key == "poly":
            o["power"] = _number(_WHO, "decay_rate", decay_rate, 0.0)
    elif key == "step":
        o["decay_t"] = _timm_positive("decay_epochs", decay_epochs) * per
        o["decay_rate"] = _number(_WHO, "decay_rate", decay_rate, 0.0)
    elif key == "constant":
        o["decay_t"], o["decay_rate"] = 1, 1.0
    elif key == "multistep":
        ms = [_number(_WHO, "decay_milestones", m, 0.0) for m in decay_milestones]
        if any(b < a for a, b in itertools.pairwise(ms)):
            raise ValueError(f"{_WHO}: decay_milestones must be increasing, got {list(ms)}")
        o["milestones"] = tuple(int(m) * per if m == int(m) else m * per for m in ms)
        o["decay_rate"] = _number(_WHO, "decay_rate", decay_rate, 0.0)
    elif key == "plateau":
        if not step_on_epochs:
            raise ValueError(f"{_WHO}('plateau') steps per epoch only: pass step_on_epochs=True")
        if plateau_mode not in ("min", "max"):
            raise ValueError(f"{_WHO}: plateau_mode must be 'min' or 'max', got {plateau_mode!r}")
        patience = _steps(_WHO, "patience_epochs", patience_epochs, 0)
        rate = _number(_WHO, "decay_rate", decay_rate, 0.0)
        if rate >= 1.0:
            raise ValueError(f"{_WHO}('plateau'): decay_rate must be < 1, got {decay_rate!r}")
        for group in optimizer.param_groups:  # timm's constructor applies lr_scale once
            group.setdefault("initial_lr", group["lr"])
            if "lr_scale" in group:
                group["lr"] = group["initial_lr"] * group["lr_scale"]
        return (
            _timm_plateau(optimizer, plateau_mode, patience, rate, low, warm, start),
            epochs + warm if warmup_prefix else epochs,
        )
    else:  # wsd, rsqrt: the warmup is always a prefix
        if decay_fn is not None and not isinstance(decay_fn, str):
            raise TypeError(
                f"{_WHO}: decay_fn must be one of {list(_TIMM_DECAYS)} or None here (a callable "
                f"has no lrkit spec), got {decay_fn!r}"
            )
        kind = decay_fn or ("linear" if key == "rsqrt" else "1-sqrt")
        if kind not in _TIMM_DECAYS:
            raise ValueError(f"{_WHO}: decay_fn must be one of {list(_TIMM_DECAYS)}, got {kind!r}")
        body = o["t_initial"] if warmup_prefix else o["t_initial"] - o["warmup_t"]
        d = _timm_positive("decay_epochs", decay_epochs)
        d = d * body if d < 1 else d * per
        d = round(d)
        if not 0 < d <= body:
            where = "num_epochs" if warmup_prefix else "num_epochs - warmup_epochs"
            raise ValueError(
                f"{_WHO}({key!r}): the decay ({d} steps) must be in [1, {where}] "
                f"({body} steps); decay_epochs={decay_epochs!r}"
            )
        o.update(t_initial=body, decay_t=d, decay_fn=kind, warmup_prefix=True)
        if key == "rsqrt":
            scale = o["warmup_t"] if stable_timescale is None else stable_timescale * per
            if _number(_WHO, "stable_timescale", scale) <= 0:
                raise ValueError(
                    f"{_WHO}('rsqrt'): stable_timescale must be > 0; it defaults to "
                    f"warmup_epochs ({warm}): give it when there is no warmup, got "
                    f"{stable_timescale!r}"
                )
            o["timescale"] = scale
    o = {**TimmFormula._DEFAULTS, **o}
    plans = []
    for group in optimizer.param_groups:
        lr = float(_as_float(group.get("initial_lr", group["lr"])))
        plan = _timm_plan(key, lr, o)
        scale = group.get("lr_scale")
        if scale is not None and scale != 1:
            if isinstance(plan, TimmFormula):
                plan = TimmFormula(key, lr, (*plan.options, ("lr_scale", float(scale))))
            else:
                plan = float(scale) * plan
        plans.append(plan)
    if key in ("cosine", "tanh", "poly", "wsd", "rsqrt"):
        total = _timm_cycle_length(key, o) + cool * per
        epochs = int(total if step_on_epochs else total // per)
    elif warmup_prefix:
        epochs += warm
    with warnings.catch_warnings():
        # Each plan's lr is its group's by construction; a warmup_lr above it is timm's.
        warnings.filterwarnings("ignore", "Scheduler: the schedule's lr is", UserWarning)
        return Scheduler(optimizer, plans[0] if len(plans) == 1 else plans), epochs
