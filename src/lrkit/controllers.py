"""Metric-driven controllers: plain state, pure decisions.

A controller watches a metric and decides when the learning rate should
change. Its state is a handful of numbers kept in a small dataclass that
converts to JSON types, so a checkpoint restores numbers, not history.

:class:`PlateauDetector` holds ReduceLROnPlateau's decision rules, exactly as
torch applies them: an observation is *better* when it beats the best so far
by more than ``threshold`` (relative or absolute); ``patience`` counts
observations that are not better; once more than ``patience`` of them have
piled up a cut is due, after which ``cooldown`` observations are not counted.
The drop-in :class:`lrkit.torch.ReduceLROnPlateau` is built on it.

Examples:
    >>> d = PlateauDetector(patience=1)
    >>> [d.observe(x) for x in [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]]
    [False, False, True, False, False, True]
    >>> d.best, d.num_bad_epochs
    (0.5, 0)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Plateau", "PlateauDetector", "warmup_steps"]

_MODES = ("min", "max")
_THRESHOLD_MODES = ("rel", "abs")


def _encode_float(value: float | None) -> float | str | None:
    """A float as a JSON value: non-finite numbers become the strings 'inf', '-inf', 'nan'."""
    if value is None or math.isfinite(value):
        return value
    return repr(float(value))


def _decode_float(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)


@dataclass
class PlateauDetector:
    """ReduceLROnPlateau's rules as a small state machine (torch's exact counting).

    Each call to :meth:`observe` is one observation of the metric:

    1. ``better(x, best)`` is, by ``mode`` and ``threshold_mode``:
       ``x < best * (1 - threshold)`` (min, rel), ``x < best - threshold``
       (min, abs), ``x > best * (1 + threshold)`` (max, rel) or
       ``x > best + threshold`` (max, abs). The first observation is always
       better (there is no best yet). NaN is never better.
    2. If better: ``best = x`` and ``num_bad_epochs = 0``; else
       ``num_bad_epochs += 1``.
    3. During a cooldown (``cooldown_counter > 0``) the counter goes down by
       one and ``num_bad_epochs`` is reset to 0.
    4. If ``num_bad_epochs > patience``: a cut is due (``observe`` returns
       True), ``cooldown_counter = cooldown`` and ``num_bad_epochs = 0``.

    Args:
        mode: ``"min"`` (lower is better) or ``"max"``.
        patience: observations without improvement tolerated before a cut (>= 0).
        threshold: how much better counts as better (>= 0).
        threshold_mode: ``"rel"`` (a fraction of ``best``) or ``"abs"``.
        cooldown: observations ignored after a cut (>= 0).

    Raises:
        ValueError: an argument outside its range, naming it and its value.

    Examples:
        >>> d = PlateauDetector(mode="max", patience=0, cooldown=1)
        >>> [d.observe(x) for x in [0.5, 0.4, 0.4, 0.4]]
        [False, True, False, True]
        >>> PlateauDetector.from_state_dict(d.state_dict()) == d
        True
    """

    mode: str = "min"
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    best: float | None = None
    num_bad_epochs: int = 0
    cooldown_counter: int = 0

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"plateau: mode must be one of 'min', 'max', got {self.mode!r}")
        if self.threshold_mode not in _THRESHOLD_MODES:
            raise ValueError(
                f"plateau: threshold_mode must be one of 'rel', 'abs', got {self.threshold_mode!r}"
            )
        for name in ("patience", "cooldown", "num_bad_epochs", "cooldown_counter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"plateau: {name} must be an integer >= 0, got {value!r}")
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ValueError(f"plateau: threshold must be a finite number >= 0, got {threshold!r}")
        if not math.isfinite(threshold) or threshold < 0:
            raise ValueError(f"plateau: threshold must be a finite number >= 0, got {threshold!r}")
        self.threshold = float(threshold)
        if self.best is not None:
            self.best = float(self.best)

    # -- the rules ---------------------------------------------------------

    @property
    def in_cooldown(self) -> bool:
        """True while observations are being ignored after a cut."""
        return self.cooldown_counter > 0

    @property
    def mode_worse(self) -> float:
        """The worst possible value for ``mode``: ``inf`` (min) or ``-inf`` (max)."""
        return math.inf if self.mode == "min" else -math.inf

    def is_better(self, value: float, best: float | None = None) -> bool:
        """Whether ``value`` improves on ``best`` (default: the best so far).

        Examples:
            >>> PlateauDetector(threshold=0.1).is_better(0.95, best=1.0)
            False
            >>> PlateauDetector(threshold=0.1, threshold_mode="abs").is_better(0.89, 1.0)
            True
        """
        if best is None:
            best = self.best if self.best is not None else self.mode_worse
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return value < best * (1.0 - self.threshold)
            return value < best - self.threshold
        if self.threshold_mode == "rel":
            return value > best * (self.threshold + 1.0)
        return value > best + self.threshold

    def observe(self, metric: float) -> bool:
        """Record one observation; True when the learning rate should be cut now.

        Args:
            metric: the observed value (anything ``float()`` accepts).

        Returns:
            True when more than ``patience`` observations in a row were not
            better (outside a cooldown).
        """
        current = float(metric)
        best = self.best
        if best is None:
            best = math.inf if self.mode == "min" else -math.inf
        # is_better(), inlined: this runs once per observation
        if self.mode == "min":
            if self.threshold_mode == "rel":
                better = current < best * (1.0 - self.threshold)
            else:
                better = current < best - self.threshold
        elif self.threshold_mode == "rel":
            better = current > best * (self.threshold + 1.0)
        else:
            better = current > best + self.threshold
        if better:
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
            return True
        return False

    def reset(self) -> None:
        """Forget the best value and the counters (the settings stay)."""
        self.best = None
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    # -- state ---------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Settings and counters as JSON types (a non-finite best as a string).

        Examples:
            >>> import json
            >>> d = PlateauDetector()
            >>> _ = d.observe(float("-inf"))
            >>> json.dumps(d.state_dict()["best"])
            '"-inf"'
        """
        out = asdict(self)
        out["best"] = _encode_float(self.best)
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (unknown keys are an error)."""
        unknown = set(state) - set(asdict(self))
        if unknown:
            raise ValueError(f"plateau: unknown state keys {sorted(unknown)}")
        fresh = PlateauDetector(
            **{**asdict(self), **state, "best": _decode_float(state.get("best"))}
        )
        self.__dict__.update(fresh.__dict__)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PlateauDetector:
        """A detector rebuilt from :meth:`state_dict`."""
        out = cls()
        out.load_state_dict(state)
        return out


def warmup_steps(schedule: Any) -> int:
    """How many steps of ``schedule`` are warmup (0 when it has none).

    Looks through scaling and into the first part of a join: ``warmup(...)``
    counts its ``steps``; ``wsd`` and ``inverse_sqrt`` their ``warmup_steps``.

    Examples:
        >>> from lrkit.schedules import cosine, warmup
        >>> warmup_steps(0.5 * warmup(cosine(lr=0.1, steps=100), steps=10))
        10
    """
    from lrkit.schedules import WSD, InverseSqrt, Join, Scaled, Warmup

    if isinstance(schedule, Scaled):
        return warmup_steps(schedule.schedule)
    if isinstance(schedule, Warmup):
        return schedule.steps
    if isinstance(schedule, (WSD, InverseSqrt)):
        return schedule.warmup_steps
    if isinstance(schedule, Join):
        return min(warmup_steps(schedule.schedules[0]), schedule.boundaries[0])
    return 0


def _nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"plateau: {name} must be a finite number >= 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"plateau: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


class Plateau:
    """A schedule multiplied by a factor that drops when the metric stalls (torch's rules).

    ``lr(t) = schedule(t) * f``. ``f`` starts at 1; when
    :class:`PlateauDetector` calls for a cut at an observation made at step
    ``t``, ``f`` becomes ``f * factor``, except that ``schedule(t) * f`` never
    goes below ``min_lr`` and a cut that would change the lr by ``eps`` or
    less is skipped (so a constant schedule behaves exactly as torch's
    ReduceLROnPlateau). Observations made during the schedule's warmup
    (:func:`warmup_steps`, or ``start``) are ignored. Patience counts
    observations.

    Args:
        schedule: the lrkit schedule to scale.
        mode, patience, threshold, threshold_mode, cooldown: as
            :class:`PlateauDetector`.
        factor: the cut, in [0, 1).
        min_lr: the lr a cut never goes below (>= 0).
        eps: cuts smaller than this are skipped (>= 0).
        start: the first step whose observations count (default: the
            schedule's warmup length).

    Examples:
        >>> import lrkit
        >>> p = Plateau(lrkit.constant(1.0), factor=0.5, patience=1)
        >>> [p.observe(loss, step) for step, loss in enumerate([3.0, 3.0, 3.0])]
        [False, False, True]
        >>> p.lr(3), p.factor_now
        (0.5, 0.5)
        >>> Plateau.from_state_dict(p.state_dict(), lrkit.constant(1.0)).lr(3)
        0.5
    """

    def __init__(
        self,
        schedule: Any,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
        start: int | None = None,
    ) -> None:
        from lrkit.schedules import Schedule

        if not isinstance(schedule, Schedule):
            raise ValueError(f"plateau: schedule must be an lrkit schedule, got {schedule!r}")
        self.schedule = schedule
        self.factor = _nonnegative("factor", factor)
        if self.factor >= 1:
            raise ValueError(f"plateau: factor must be in [0, 1), got {factor!r}")
        self.min_lr = _nonnegative("min_lr", min_lr)
        self.eps = _nonnegative("eps", eps)
        if start is None:
            start = warmup_steps(schedule)
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"plateau: start must be an integer >= 0, got {start!r}")
        self.start = start
        self.detector = PlateauDetector(
            mode=mode,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
        )
        self.factor_now = 1.0

    def lr(self, step: int) -> float:
        """The learning rate at ``step``: ``schedule(step) * factor_now``."""
        return self.schedule(step) * self.factor_now

    def observe(self, metric: float, step: int) -> bool:
        """Record the metric measured at ``step``; True when the lr was cut."""
        if step < self.start:
            return False
        if not self.detector.observe(metric):
            return False
        base = self.schedule(step)
        old = base * self.factor_now
        new = max(old * self.factor, self.min_lr)
        if base <= 0 or old - new <= self.eps:
            return False
        self.factor_now = new / base
        return True

    def state_dict(self) -> dict[str, Any]:
        """Settings, the current factor and the detector's counters, as JSON types."""
        return {
            "schedule": str(self.schedule),
            "factor": self.factor,
            "min_lr": self.min_lr,
            "eps": self.eps,
            "start": self.start,
            "factor_now": self.factor_now,
            "detector": self.detector.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the schedule stays the one given to the constructor)."""
        self.factor = float(state["factor"])
        self.min_lr = float(state["min_lr"])
        self.eps = float(state["eps"])
        self.start = int(state["start"])
        self.factor_now = float(state["factor_now"])
        self.detector = PlateauDetector.from_state_dict(state["detector"])

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], schedule: Any) -> Plateau:
        """A Plateau over ``schedule`` in the state :meth:`state_dict` saved."""
        out = cls(schedule)
        out.load_state_dict(state)
        return out

    def __repr__(self) -> str:
        d = self.detector
        return (
            f"Plateau({self.schedule}, mode={d.mode!r}, factor={self.factor!r}, "
            f"patience={d.patience!r}, factor_now={self.factor_now!r})"
        )
