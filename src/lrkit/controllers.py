"""Metric-driven controllers: plain state, pure decisions, any schedule inside.

A controller wraps an lrkit schedule and changes a multiplier from what it
observes; ``lr(t) = schedule(t) * multiplier``, so warmup and decay keep
working around it. Its state is a handful of numbers that convert to JSON
types, so a checkpoint restores numbers, not history; an adapter
(:class:`lrkit.torch.Scheduler`, ``lrkit compare``) owns the step counter
and feeds it.

- :class:`Plateau`: torch's ReduceLROnPlateau rules (:class:`PlateauDetector`)
  around any schedule; observations during the schedule's warmup are ignored.
- :class:`Guard`: NaN/inf or a loss spike is a divergence; the adapter rolls
  model and optimizer back to the last good snapshot and the lr is
  multiplied by ``factor`` per rollback; past ``max_rollbacks`` it raises
  :class:`Diverged`.
- :class:`Adaptive`: the "bold driver": raise while the loss falls
  smoothly, cut when it rises or oscillates.
- :class:`SklearnAdaptive`: scikit-learn MLP's ``learning_rate="adaptive"``
  (a :class:`Plateau` with sklearn's own bookkeeping, :class:`SklearnDetector`).

Each has a spec name (``plateau(...)``, ``guard(...)``, ``adaptive(...)``,
``sklearn_adaptive(...)``, registered with :func:`lrkit.spec.register`):
``str(c)`` is the spec of
its settings, and ``lrkit.parse(str(c))`` builds a fresh controller equal
to ``c`` before its first observation.

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
    >>> import lrkit
    >>> lrkit.parse("plateau(cosine(), patience=5)", lr=0.1, steps=1000)
    plateau(cosine(lr=0.1, steps=1000), patience=5)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

from lrkit.divergence import Divergence, DivergenceRule, DivergenceState

__all__ = [
    "Adaptive",
    "Diverged",
    "Guard",
    "Plateau",
    "PlateauDetector",
    "SklearnAdaptive",
    "SklearnDetector",
    "guard",
    "warmup_steps",
]

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

    The end of its first phase when that phase is a ``"warmup"``, as the
    schedule's class says (``Schedule._phase_starts``): ``warmup(...)`` counts
    its ``steps``; ``wsd`` and ``inverse_sqrt`` their ``warmup_steps``; scaling
    looks through, a join ends it at its first boundary at the latest, and a
    replanned schedule at its ``at`` (as planned before it). Anything that is
    not a schedule has none.

    Examples:
        >>> from lrkit.schedules import cosine, warmup
        >>> warmup_steps(0.5 * warmup(cosine(lr=0.1, steps=100), steps=10))
        10
    """
    from lrkit.schedules import Schedule

    if not isinstance(schedule, Schedule):
        return 0
    phases = schedule._phase_starts()
    if len(phases) < 2 or phases[0][1] != "warmup":
        return 0
    return phases[1][0]


# ---------------------------------------------------------------------------
# Shared pieces of the controllers
# ---------------------------------------------------------------------------


def _number(who: str, name: str, value: Any, low: float, high: float = math.inf) -> float:
    """``value`` as a float in ``[low, high]``, or a ValueError naming it."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if not ok or math.isnan(value) or not low <= value <= high:
        allowed = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"
        raise ValueError(f"{who}: {name} must be a number {allowed}, got {value!r}")
    return float(value)


def _nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"plateau: {name} must be a finite number >= 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"plateau: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _count(who: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{who}: {name} must be an integer >= 0, got {value!r}")
    return value


def _check_schedule(who: str, schedule: Any, controllers: bool = False) -> Any:
    """An lrkit schedule (or, with ``controllers``, a Plateau/Adaptive), else a ValueError."""
    from lrkit.schedules import Schedule

    if isinstance(schedule, Schedule) or (
        controllers and isinstance(schedule, (Plateau, Adaptive))
    ):
        return schedule
    what = (
        "an lrkit schedule or a plateau/adaptive controller" if controllers else "an lrkit schedule"
    )
    raise ValueError(f"{who}: schedule must be {what}, got {schedule!r}")


def _parse_plan(text: Any) -> Any:
    """A schedule from the spec string saved in a state (the plan a run used)."""
    from lrkit.spec import parse

    if not isinstance(text, str):
        raise ValueError(f"controller state: 'schedule' must be a spec string, got {text!r}")
    return parse(text)


class _Controller:
    """What every controller shares: its spec, its dict, equality and ``c(step)``.

    A subclass lists its settings in ``_SETTINGS`` as ``(name, default)`` in
    the order of its spec factory's signature (the wrapped schedule first);
    ``_setting(name)`` reads one. Equality compares the settings and the
    running state (``state_dict()``), so ``parse(str(c))`` equals a fresh
    controller with ``c``'s settings.
    """

    _NAME = ""
    _SETTINGS: tuple[tuple[str, Any], ...] = ()
    __hash__ = None  # type: ignore[assignment]  # mutable: counters change

    def _setting(self, name: str) -> Any:
        return getattr(self, name)

    def _default(self, name: str, default: Any) -> Any:
        return default

    def __str__(self) -> str:
        from lrkit.schedules import _format_value

        args = []
        for name, default in self._SETTINGS:
            value = self._setting(name)
            if name == "schedule":
                if value is not None:
                    args.append(str(value))
            elif value != self._default(name, default):
                args.append(f"{name}={_format_value(value)}")
        return f"{self._NAME}({', '.join(args)})"

    def __repr__(self) -> str:
        return str(self)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON types: ``{"type": name, **settings}`` (not the running state).

        :func:`lrkit.from_dict` reads it back into a fresh controller.
        """
        out: dict[str, Any] = {"type": self._NAME}
        for name, _ in self._SETTINGS:
            value = self._setting(name)
            out[name] = value.to_dict() if hasattr(value, "to_dict") else value
        return out

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return str(self) == str(other) and self.state_dict() == other.state_dict()  # type: ignore[attr-defined]

    def __call__(self, step: int) -> float:
        """The learning rate at ``step`` (the same as :meth:`lr`)."""
        return self.lr(step)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------
# Plateau
# ---------------------------------------------------------------------------


class Plateau(_Controller):
    """A schedule multiplied by a factor that drops when the metric stalls (torch's rules).

    ``lr(t) = schedule(t) * f``. ``f`` starts at 1. Each :meth:`observe` is
    one observation for :class:`PlateauDetector` (torch's counting: the
    first observation sets ``best``; an observation that does not beat
    ``best`` by ``threshold`` adds one to a counter; once the counter
    exceeds ``patience`` a cut is due and the counter restarts; ``cooldown``
    observations after a cut are not counted). A cut due at an observation
    made at step ``t`` sets ``f = max(s(t) * f * factor, min_lr) / s(t)``:
    the cut never takes ``s(t) * f`` below ``min_lr``, and it is skipped when
    it would change the lr by ``eps`` or less (so a constant schedule behaves
    exactly as torch's ReduceLROnPlateau). Afterwards the lr follows the
    schedule's shape, ``s(t') * f``: after a cut in a cosine the lr keeps
    decaying, scaled down.

    Observations made during the schedule's warmup (:func:`warmup_steps`,
    or ``start``) are ignored: the warmup runs as planned whatever the metric,
    and patience starts counting with the first observation at a step
    ``>= start``. With patience ``p`` and a flat metric, the first counted
    observation sets ``best``, and the cuts come at the ``p + 2``-th counted
    observation and then every ``p + 1 + cooldown`` observations.

    Args:
        schedule: the lrkit schedule to scale.
        mode: ``"min"`` (lower is better) or ``"max"``.
        factor: the cut, in [0, 1).
        patience: observations without improvement tolerated before a cut (>= 0).
        threshold: how much better counts as better (>= 0).
        threshold_mode: ``"rel"`` (a fraction of ``best``) or ``"abs"``.
        cooldown: observations ignored after a cut (>= 0).
        min_lr: the lr a cut never goes below (>= 0).
        eps: cuts smaller than this are skipped (>= 0).
        start: the first step whose observations count (default: the
            schedule's warmup length).

    Raises:
        ValueError: an argument outside its range, naming it and its value.

    Examples:
        >>> import lrkit
        >>> p = lrkit.Plateau(lrkit.constant(1.0), factor=0.5, patience=1)
        >>> [p.observe(loss, step) for step, loss in enumerate([3.0, 3.0, 3.0])]
        [False, False, True]
        >>> p.lr(3), p.factor_now
        (0.5, 0.5)
        >>> str(p)
        'plateau(constant(lr=1.0), factor=0.5, patience=1)'
        >>> Plateau.from_state_dict(p.state_dict(), lrkit.constant(1.0)).lr(3)
        0.5
    """

    _NAME = "plateau"
    _SETTINGS = (
        ("schedule", None),
        ("mode", "min"),
        ("factor", 0.1),
        ("patience", 10),
        ("threshold", 1e-4),
        ("threshold_mode", "rel"),
        ("cooldown", 0),
        ("min_lr", 0.0),
        ("eps", 1e-8),
        ("start", None),
    )

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
        self.schedule = _check_schedule("plateau", schedule)
        self.factor = _nonnegative("factor", factor)
        if self.factor >= 1:
            raise ValueError(f"plateau: factor must be in [0, 1), got {factor!r}")
        self.min_lr = _nonnegative("min_lr", min_lr)
        self.eps = _nonnegative("eps", eps)
        if start is None:
            start = warmup_steps(schedule)
        self.start = _count("plateau", "start", start)
        self.detector = PlateauDetector(
            mode=mode,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
        )
        self.factor_now = 1.0

    def _setting(self, name: str) -> Any:
        if name in ("mode", "patience", "threshold", "threshold_mode", "cooldown"):
            return getattr(self.detector, name)
        return getattr(self, name)

    def _default(self, name: str, default: Any) -> Any:
        return warmup_steps(self.schedule) if name == "start" else default

    @property
    def multiplier(self) -> float:
        """The factor the schedule is multiplied by now (the same as ``factor_now``)."""
        return self.factor_now

    def lr(self, step: int) -> float:
        """The learning rate at ``step``: ``schedule(step) * factor_now``."""
        return self.schedule(step) * self.factor_now

    def observe(self, metric: float, step: int) -> bool:
        """Record the metric measured at ``step``; True when the lr was cut.

        Args:
            metric: the observed value (anything ``float()`` accepts).
            step: the step it was measured at (observations before ``start``
                are ignored).

        Returns:
            True when this observation cut the lr.
        """
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

    def replan(self, steps: int, at: int) -> None:
        """Replace the wrapped schedule by ``schedule.replan(steps, at)`` (in place).

        The factor and the counters stay, so the lr is as continuous at
        ``at`` as the schedule's replan.
        """
        self.schedule = self.schedule.replan(steps, at)

    def state_dict(self) -> dict[str, Any]:
        """Settings, the plan, the current factor and the detector's counters, as JSON types."""
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
        """Restore :meth:`state_dict`, the plan (the wrapped schedule) included."""
        if "schedule" in state and state["schedule"] != str(self.schedule):
            self.schedule = _check_schedule("plateau", _parse_plan(state["schedule"]))
        self.factor = float(state["factor"])
        self.min_lr = float(state["min_lr"])
        self.eps = float(state["eps"])
        self.start = int(state["start"])
        self.factor_now = float(state["factor_now"])
        self.detector = PlateauDetector.from_state_dict(state["detector"])

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], schedule: Any = None) -> Plateau:
        """A Plateau in the state :meth:`state_dict` saved (its plan, or ``schedule``)."""
        if schedule is None:
            schedule = _parse_plan(state["schedule"])
        out = cls(schedule)
        out.load_state_dict(state)
        return out


# ---------------------------------------------------------------------------
# scikit-learn's adaptive rule: a Plateau that keeps sklearn's bookkeeping
# ---------------------------------------------------------------------------

#: sklearn's MLP divides its lr by 5 only while the lr is above this.
SKLEARN_MIN_CUT_LR = 1e-6


@dataclass
class SklearnDetector(PlateauDetector):
    """The decisions of scikit-learn's MLP ``learning_rate="adaptive"``, exactly.

    Two differences from torch's rules (:class:`PlateauDetector`), as
    sklearn's ``_update_no_improvement_count`` counts (absolute ``threshold``,
    its ``tol``; ``mode="max"`` mirrored):

    1. an observation is bad when ``metric > best - threshold`` (so one that
       improves by exactly ``threshold`` is good);
    2. ``best`` is the lowest value seen: an observation below it becomes the
       best even when it improves by less than ``threshold`` (and is bad).

    More than ``patience`` bad observations make a cut and restart the count;
    there is no cooldown. NaN counts as bad and never becomes the best.

    Examples:
        >>> d = SklearnDetector(patience=1, threshold=0.1, threshold_mode="abs")
        >>> [d.observe(x) for x in [1.0, 0.95, 0.9, 0.85]]
        [False, False, True, False]
        >>> d.best
        0.85
    """

    def observe(self, metric: float) -> bool:
        current = float(metric)
        best = self.best if self.best is not None else self.mode_worse
        if self.mode == "min":
            bad = not current <= best - self.threshold
            improved = current < best
        else:
            bad = not current >= best + self.threshold
            improved = current > best
        self.num_bad_epochs = self.num_bad_epochs + 1 if bad else 0
        if improved:
            self.best = current
        if self.num_bad_epochs > self.patience:
            self.num_bad_epochs = 0
            return True
        return False


class SklearnAdaptive(Plateau):
    """scikit-learn MLP's ``learning_rate="adaptive"`` around any schedule.

    sklearn's MLPs (``solver="sgd"``) watch one value per epoch: the training
    loss (``loss_curve_``), or with ``early_stopping`` the validation score.
    An epoch is bad when it does not beat the lowest loss so far by ``tol``
    (:class:`SklearnDetector`); once more than ``n_iter_no_change`` bad
    epochs are counted the lr is divided by 5 and the count restarts. Here
    ``lr(t) = schedule(t) * f``, and each cut multiplies ``f`` by 0.2 (a
    :class:`Plateau` with ``factor=0.2``, ``patience=n_iter_no_change``,
    ``threshold=tol``, ``threshold_mode="abs"``, and sklearn's bookkeeping).
    Feed it one observation per epoch.

    Where sklearn stops training (a cut due at an lr of 1e-6 or less), this
    skips the cut and keeps the lr (``eps=8e-7``: ``lr - lr / 5 <= 8e-7``
    exactly when ``lr <= 1e-6``). :func:`lrkit.sklearn.adaptive` builds one
    around ``constant(lr)``; the spec is ``sklearn_adaptive(schedule, tol=1e-4,
    n_iter_no_change=10, early_stopping=False)``.

    Args:
        schedule: the lrkit schedule to scale (sklearn's: ``constant(lr)``).
        tol: how much better counts as better (>= 0).
        n_iter_no_change: bad epochs tolerated before a cut (>= 1).
        early_stopping: watch a score (higher is better) instead of a loss.

    Raises:
        ValueError: an argument out of range, naming it.

    Examples:
        >>> import lrkit
        >>> a = SklearnAdaptive(lrkit.constant(0.1), tol=0.01, n_iter_no_change=1)
        >>> [a.observe(loss, step) for step, loss in enumerate([1.0, 0.995, 0.99, 0.985])]
        [False, False, True, False]
        >>> round(a.lr(4), 12), str(a)
        (0.02, 'sklearn_adaptive(constant(lr=0.1), tol=0.01, n_iter_no_change=1)')
    """

    _NAME = "sklearn_adaptive"
    _SETTINGS = (  # type: ignore[assignment]  # other settings than Plateau's
        ("schedule", None),
        ("tol", 1e-4),
        ("n_iter_no_change", 10),
        ("early_stopping", False),
    )

    def __init__(
        self,
        schedule: Any,
        tol: float = 1e-4,
        n_iter_no_change: int = 10,
        early_stopping: bool = False,
    ) -> None:
        n = n_iter_no_change
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(
                f"sklearn_adaptive: n_iter_no_change must be an integer >= 1, got {n!r}"
            )
        if not isinstance(early_stopping, bool):
            raise ValueError(
                f"sklearn_adaptive: early_stopping must be True or False, got {early_stopping!r}"
            )
        super().__init__(
            schedule,
            mode="max" if early_stopping else "min",
            factor=0.2,
            patience=n,
            threshold=tol,
            threshold_mode="abs",
            eps=0.8 * SKLEARN_MIN_CUT_LR,
        )
        self.detector = SklearnDetector(**asdict(self.detector))

    def _setting(self, name: str) -> Any:
        if name == "tol":
            return self.detector.threshold
        if name == "n_iter_no_change":
            return self.detector.patience
        if name == "early_stopping":
            return self.detector.mode == "max"
        return super()._setting(name)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (sklearn's bookkeeping kept)."""
        super().load_state_dict(state)
        self.detector = SklearnDetector(**asdict(self.detector))


# ---------------------------------------------------------------------------
# Guard
# ---------------------------------------------------------------------------


class Diverged(RuntimeError):
    """A run diverged more often than its :class:`Guard` may roll it back.

    Attributes:
        divergence: the last :class:`lrkit.divergence.Divergence` found.
        step: the step it was found at.
        rollbacks: how many rollbacks had been made before it.
    """

    def __init__(self, message: str, divergence: Divergence | None, step: int, rollbacks: int):
        super().__init__(message)
        self.divergence = divergence
        self.step = step
        self.rollbacks = rollbacks


class Guard(_Controller):
    """Watches the loss for a divergence; counts rollbacks and keeps the lr multiplier.

    A loss is a divergence when it is NaN or infinite, or a *spike*: above
    ``spike`` times the median of the last ``window`` accepted losses (the
    spike test starts once ``window`` losses were accepted) **and**, with
    ``above_start=True`` (the default), above the starting level, the median
    of the first ``window`` losses. See :class:`lrkit.divergence.DivergenceRule`.

    Why ``above_start`` defaults to True: SPEC's plain rule (``above_start=False``)
    flags ordinary minibatch noise once the loss is near zero. In a good run
    on the digits task a batch loss of 0.127 came after a running median of
    0.031: four times the median is a single misclassified sample there. A
    guard that rolls back and halves the lr at each such batch harms good
    runs and, past ``max_rollbacks``, stops them. A run that really blows up
    leaves its starting level behind (or goes NaN/inf, which is always
    caught), so requiring both costs little. Pass ``above_start=False`` for
    SPEC's literal rule.

    The guard itself is pure: :meth:`observe` says whether a loss is a
    divergence and, if so, counts a rollback; the lr multiplier is
    ``factor ** rollbacks``. The adapter (:class:`lrkit.torch.Scheduler`
    with ``guard=``, ``lrkit compare`` with a ``guard(...)`` spec) does the
    rollback: it restores the last good snapshot of model and optimizer,
    multiplies the lr by the multiplier and goes on, the step counter and
    the data moving forward. The ``max_rollbacks + 1``-th divergence raises
    :class:`Diverged`. A diverging loss never enters the median's window.

    With ``schedule`` the guard is also a schedule-like controller:
    ``lr(t) = schedule(t) * multiplier`` (the spec ``guard(cosine(...),
    factor=0.5)``; SPEC's Guard has no schedule, this is lrkit's extension so
    that a guarded run fits in one spec). ``schedule`` may be a Plateau or an
    Adaptive too: the driver then feeds it the metric.

    Args:
        factor: the lr multiplier applied at each rollback, in (0, 1].
        spike: a loss above ``spike`` x the running median is a divergence (> 1).
        window: how many recent losses make the median (>= 1).
        max_rollbacks: how many rollbacks are allowed (>= 0).
        above_start: a spike must also exceed the starting level (see above).
        schedule: an optional schedule (or Plateau/Adaptive) to multiply.

    Raises:
        ValueError: an argument outside its range, naming it and its value.

    Examples:
        >>> import lrkit
        >>> g = lrkit.Guard(factor=0.5, window=3, max_rollbacks=1)
        >>> [g.observe(x, t) for t, x in enumerate([1.0, 0.9, 0.8, 9.0])]
        [False, False, False, True]
        >>> g.rollbacks, g.multiplier
        (1, 0.5)
        >>> g.observe(float("nan"), 4)
        Traceback (most recent call last):
        ...
        lrkit.controllers.Diverged: guard: loss is NaN at step 4, after 1 rollback (max_rollbacks=1)
    """

    _NAME = "guard"
    _SETTINGS = (
        ("schedule", None),
        ("factor", 0.5),
        ("spike", 4.0),
        ("window", 20),
        ("max_rollbacks", 3),
        ("above_start", True),
    )

    def __init__(
        self,
        factor: float = 0.5,
        spike: float = 4.0,
        window: int = 20,
        max_rollbacks: int = 3,
        *,
        above_start: bool = True,
        schedule: Any = None,
    ) -> None:
        ok = not isinstance(factor, bool) and isinstance(factor, (int, float))
        if not ok or not 0 < factor <= 1:
            raise ValueError(f"guard: factor must be a number in (0, 1], got {factor!r}")
        self.factor = float(factor)
        try:
            self.rule = DivergenceRule(spike=spike, window=window, above_start=above_start)
        except ValueError as exc:
            raise ValueError(str(exc).replace("divergence:", "guard:", 1)) from None
        self.spike = float(spike)
        self.window = window
        self.above_start = above_start
        self.max_rollbacks = _count("guard", "max_rollbacks", max_rollbacks)
        self.schedule = None if schedule is None else _check_schedule("guard", schedule, True)
        self.state = self.rule.initial()
        self.rollbacks = 0
        self.last: Divergence | None = None

    @property
    def multiplier(self) -> float:
        """The lr multiplier: ``factor ** rollbacks``."""
        return self.factor**self.rollbacks

    def lr(self, step: int) -> float:
        """``schedule(step) * multiplier`` (only for a guard with a schedule).

        Raises:
            ValueError: the guard has no schedule.
        """
        if self.schedule is None:
            raise ValueError(
                "guard: this guard has no schedule, so it has no lr; use guard(schedule, ...) "
                "or pass it as Scheduler(optimizer, schedule, guard=...)"
            )
        inner = self.schedule
        base = inner(step)
        return base * self.multiplier

    def check(self, loss: float) -> Divergence | None:
        """The divergence ``loss`` would be, without changing anything."""
        return self.rule.check(self.state, loss)

    def observe(self, loss: float, step: int) -> bool:
        """Record the loss measured at ``step``; True when it is a divergence (a rollback is due).

        A good loss enters the median's window; a divergence counts a
        rollback (the multiplier drops by ``factor``) and is kept in
        :attr:`last`.

        Raises:
            Diverged: this divergence would be rollback ``max_rollbacks + 1``.
        """
        self.state, found = self.rule.update(self.state, loss)
        if found is None:
            return False
        self.last = found
        if self.rollbacks >= self.max_rollbacks:
            done = self.rollbacks
            raise Diverged(
                f"guard: {found.message} at step {step}, after {done} "
                f"rollback{'' if done == 1 else 's'} (max_rollbacks={self.max_rollbacks})",
                found,
                step,
                done,
            )
        self.rollbacks += 1
        return True

    def replan(self, steps: int, at: int) -> None:
        """Replan the wrapped schedule (see :meth:`Plateau.replan`)."""
        if self.schedule is None:
            raise ValueError("guard: this guard has no schedule to replan")
        if isinstance(self.schedule, (Plateau, Adaptive)):
            self.schedule.replan(steps, at)
        else:
            self.schedule = self.schedule.replan(steps, at)

    def state_dict(self) -> dict[str, Any]:
        """The rollback count, the rule's window and the wrapped plan, as JSON types."""
        inner = self.schedule
        return {
            "rollbacks": self.rollbacks,
            "window_state": self.state.to_dict(),
            "schedule": None if inner is None else str(inner),
            "inner": inner.state_dict() if isinstance(inner, (Plateau, Adaptive)) else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the wrapped plan and controller state included)."""
        self.rollbacks = _count("guard", "rollbacks", state["rollbacks"])
        self.state = DivergenceState.from_dict(state["window_state"])
        inner = state.get("inner")
        if isinstance(self.schedule, (Plateau, Adaptive)) and inner is not None:
            self.schedule.load_state_dict(inner)
        elif self.schedule is not None and state.get("schedule") not in (None, str(self.schedule)):
            self.schedule = _check_schedule("guard", _parse_plan(state["schedule"]))


def guard(
    schedule: Any = None,
    factor: float = 0.5,
    spike: float = 4.0,
    window: int = 20,
    max_rollbacks: int = 3,
    above_start: bool = True,
) -> Guard:
    """The spec factory ``guard(schedule, factor=..., ...)``: a :class:`Guard`, schedule first.

    Examples:
        >>> import lrkit
        >>> lrkit.parse("guard(cosine(lr=0.1, steps=100), factor=0.25)")
        guard(cosine(lr=0.1, steps=100), factor=0.25)
    """
    return Guard(factor, spike, window, max_rollbacks, above_start=above_start, schedule=schedule)


# ---------------------------------------------------------------------------
# Adaptive ("bold driver")
# ---------------------------------------------------------------------------


class Adaptive(_Controller):
    """The "bold driver": raise the lr while the loss falls smoothly, cut it on a rise or wobble.

    ``lr(t) = clamp(schedule(t) * m, min_lr, max_lr)``; the multiplier ``m``
    starts at 1 and changes at each :meth:`observe`. With ``x_k`` the
    ``k``-th observed loss and a *change* the sign of ``x_k - x_{k-1}``
    (down, up, or flat when equal), after each observation:

    1. a NaN/inf loss: **cut** (``m *= down``) and forget the history;
    2. the loss **rises** (``x_k > x_{k-1}``): **cut**;
    3. it **falls smoothly**: the last ``window`` changes are all down (so
       ``window + 1`` observations in a row, each lower than the one before):
       **raise** (``m *= up``);
    4. it **oscillates**: the last ``window`` changes alternate between down
       and up and the loss is no lower than ``window`` observations ago
       (``x_k >= x_{k-window}``): **cut**;
    5. otherwise: hold.

    After a change of ``m`` it is clamped so that ``schedule(t) * m`` at the
    observation's step stays within ``[min_lr, max_lr]`` (no wind-up at a
    bound). Observations during the schedule's warmup (or before ``start``)
    are ignored. Feed it a loss that is not minibatch noise: an epoch's
    mean, a validation loss, or a mean over a block of steps (as ``lrkit
    compare`` does).

    Args:
        schedule: the lrkit schedule to multiply.
        up: the raise, >= 1.
        down: the cut, in (0, 1].
        min_lr: the lowest lr (>= 0).
        max_lr: the highest lr (> 0, may be ``inf``), >= ``min_lr``.
        window: how many changes "smoothly" and "oscillates" look at (>= 2).
        start: the first step whose observations count (default: the
            schedule's warmup length).

    Raises:
        ValueError: an argument outside its range, naming it and its value.

    Examples:
        >>> import lrkit
        >>> a = lrkit.Adaptive(lrkit.constant(0.1), up=2.0, down=0.5, window=2)
        >>> [a.observe(x, t) for t, x in enumerate([4.0, 3.0, 2.0, 2.5])]
        ['hold', 'hold', 'raise', 'cut']
        >>> a.lr(4)
        0.1
    """

    _NAME = "adaptive"
    _SETTINGS = (
        ("schedule", None),
        ("up", 1.05),
        ("down", 0.5),
        ("min_lr", 0.0),
        ("max_lr", math.inf),
        ("window", 3),
        ("start", None),
    )

    def __init__(
        self,
        schedule: Any,
        up: float = 1.05,
        down: float = 0.5,
        min_lr: float = 0.0,
        max_lr: float = math.inf,
        window: int = 3,
        start: int | None = None,
    ) -> None:
        self.schedule = _check_schedule("adaptive", schedule)
        self.up = _number("adaptive", "up", up, 1.0)
        if not math.isfinite(self.up):
            raise ValueError(f"adaptive: up must be a finite number >= 1, got {up!r}")
        ok = not isinstance(down, bool) and isinstance(down, (int, float))
        if not ok or not 0 < down <= 1:
            raise ValueError(f"adaptive: down must be a number in (0, 1], got {down!r}")
        self.down = float(down)
        self.min_lr = _number("adaptive", "min_lr", min_lr, 0.0)
        if not math.isfinite(self.min_lr):
            raise ValueError(f"adaptive: min_lr must be a finite number >= 0, got {min_lr!r}")
        self.max_lr = _number("adaptive", "max_lr", max_lr, self.min_lr)
        if self.max_lr == 0:
            raise ValueError(f"adaptive: max_lr must be a number > 0, got {max_lr!r}")
        self.window = _count("adaptive", "window", window)
        if self.window < 2:
            raise ValueError(f"adaptive: window must be an integer >= 2, got {window!r}")
        self.start = _count("adaptive", "start", warmup_steps(schedule) if start is None else start)
        self.multiplier = 1.0
        self.history: list[float] = []

    def _default(self, name: str, default: Any) -> Any:
        return warmup_steps(self.schedule) if name == "start" else default

    def lr(self, step: int) -> float:
        """``clamp(schedule(step) * multiplier, min_lr, max_lr)``."""
        return min(max(self.schedule(step) * self.multiplier, self.min_lr), self.max_lr)

    def _decide(self) -> str:
        x = self.history
        if len(x) < 2:
            return "hold"
        if x[-1] > x[-2]:
            return "cut"
        if len(x) <= self.window:
            return "hold"
        tail = x[-self.window - 1 :]
        signs = [(b > a) - (b < a) for a, b in itertools.pairwise(tail)]
        if all(s < 0 for s in signs):
            return "raise"
        alternating = all(s != 0 for s in signs) and all(
            a == -b for a, b in itertools.pairwise(signs)
        )
        if alternating and tail[-1] >= tail[0]:
            return "cut"
        return "hold"

    def observe(self, loss: float, step: int) -> str:
        """Record the loss measured at ``step``; return ``"raise"``, ``"cut"`` or ``"hold"``."""
        if step < self.start:
            return "hold"
        value = float(loss)
        if math.isfinite(value):
            self.history = [*self.history, value][-(self.window + 1) :]
            action = self._decide()
        else:
            self.history = []
            action = "cut"
        if action != "hold":
            m = self.multiplier * (self.up if action == "raise" else self.down)
            base = self.schedule(step)
            if base > 0:
                m = min(max(m, self.min_lr / base), self.max_lr / base)
            self.multiplier = m
        return action

    def replan(self, steps: int, at: int) -> None:
        """Replace the wrapped schedule by ``schedule.replan(steps, at)`` (in place)."""
        self.schedule = self.schedule.replan(steps, at)

    def state_dict(self) -> dict[str, Any]:
        """The plan, the multiplier and the recent losses, as JSON types."""
        return {
            "schedule": str(self.schedule),
            "multiplier": self.multiplier,
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the plan included)."""
        if "schedule" in state and state["schedule"] != str(self.schedule):
            self.schedule = _check_schedule("adaptive", _parse_plan(state["schedule"]))
        self.multiplier = float(state["multiplier"])
        self.history = [float(x) for x in state["history"]]


def _register() -> None:
    """Make ``plateau(...)``, ``guard(...)``, ``adaptive(...)`` and ``sklearn_adaptive(...)``
    spec names."""
    from lrkit import spec

    for name, factory in (
        ("plateau", Plateau),
        ("guard", guard),
        ("adaptive", Adaptive),
        ("sklearn_adaptive", SklearnAdaptive),
    ):
        spec.register(name, factory, replace=True)


_register()
