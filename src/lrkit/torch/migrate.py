"""Names people migrate from: transformers' ``get_scheduler`` on lrkit schedules.

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

import difflib
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from torch.optim import Optimizer

from lrkit import schedules as _core
from lrkit.torch._common import _as_float, _check_optimizer
from lrkit.torch.driver import Scheduler
from lrkit.torch.plateau import ReduceLROnPlateau

__all__ = ["NAMES", "TransformersFormula", "get_scheduler"]

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
