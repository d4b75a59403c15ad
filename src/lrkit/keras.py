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

The callbacks :class:`Plateau` (torch's ReduceLROnPlateau rules, on top of
any schedule) and :class:`Guard` (roll back to the last good weights on a
divergence) cut the lr through :attr:`KerasSchedule.multiplier`, which is
saved with the model; :func:`find_lr` runs the lr range test and leaves the
model and its optimizer exactly as they were. A float ``learning_rate`` is
turned into ``to_keras(constant(lr))`` the first time a callback needs it.
:class:`Monitor` records lr, momentum, loss, gradient norm and update ratio
per update (SPEC §9), as ``lrkit.torch.Monitor`` does.

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
import logging
import math
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


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

from lrkit import finder  # noqa: E402
from lrkit._formulas import Ops, as_schedule, lr_at  # noqa: E402
from lrkit.controllers import Diverged, PlateauDetector  # noqa: E402
from lrkit.controllers import Plateau as _Plateau  # noqa: E402
from lrkit.diagnosis import Diagnosis  # noqa: E402
from lrkit.divergence import DivergenceRule, DivergenceState  # noqa: E402
from lrkit.finder import FinderResult  # noqa: E402
from lrkit.monitor import Recorder, Sink, group_tag  # noqa: E402
from lrkit.rollback import Snapshots  # noqa: E402
from lrkit.schedules import Schedule, constant  # noqa: E402

__all__ = [
    "FinderResult",
    "Guard",
    "KerasSchedule",
    "Monitor",
    "Plateau",
    "find_lr",
    "to_keras",
]


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

    Called with the optimizer's iteration count (an integer variable, a tensor
    of any integer dtype, or a Python int), it returns ``s(step)`` as a
    float32 tensor of the same shape, computed with ``keras.ops`` from the
    integer step.

    The value is ``s(step) * multiplier``. The multiplier is 1 unless a
    callback (:class:`Plateau`, :class:`Guard`) has cut the lr; it and the
    callbacks' counters (``state``) are part of the config, so a saved model
    keeps its cuts.

    Args:
        schedule: an lrkit schedule, a spec string, or a schedule's ``to_dict()``.
        multiplier: the factor the schedule is multiplied by (a finite number >= 0).
        state: the callbacks' plain-data state, by callback name (JSON types).

    Attributes:
        schedule: the pure lrkit schedule.
        multiplier: the current factor; change it with a callback, which also
            rebuilds the model's compiled train step (see :class:`Plateau`).
        state: the callbacks' saved counters.

    Raises:
        ValueError: a multiplier that is negative or not finite.

    Examples:
        >>> import keras
        >>> lr = KerasSchedule("step_decay(lr=1.0, step_size=10)")
        >>> float(lr(25))
        0.25
        >>> keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(lr)) == lr
        True
    """

    def __init__(
        self,
        schedule: Schedule | str | Mapping[str, Any],
        multiplier: float = 1.0,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.schedule = as_schedule(schedule)
        self.multiplier = _check_multiplier(multiplier)
        self.state: dict[str, Any] = {} if state is None else json.loads(json.dumps(dict(state)))

    def __call__(self, step: Any) -> Any:
        step = ops.convert_to_tensor(step)
        dtype = keras.backend.standardize_dtype(step.dtype)
        if "int" not in dtype:
            if "float" not in dtype:
                raise TypeError(f"step must be an integer tensor, got dtype {dtype}")
            step = ops.floor(step)
        int_dtype = "int32" if dtype == "int32" else "int64"
        t = ops.maximum(ops.cast(step, int_dtype), 0)  # negative steps: step 0
        lr = lr_at(self.schedule, t, _KerasOps(int_dtype, keras.config.floatx()))
        if self.multiplier != 1.0:
            lr = ops.multiply(lr, self.multiplier)
        return lr

    def get_config(self) -> dict[str, Any]:
        """``{"schedule": schedule.to_dict()}``, plus ``"multiplier"`` and ``"state"``
        when a callback has set them: JSON types, read back by ``from_config``."""
        config: dict[str, Any] = {"schedule": self.schedule.to_dict()}
        if self.multiplier != 1.0:
            config["multiplier"] = self.multiplier
        if self.state:
            config["state"] = json.loads(json.dumps(self.state))
        return config

    def __repr__(self) -> str:
        if self.multiplier == 1.0:
            return f"to_keras({str(self.schedule)!r})"
        return f"KerasSchedule({str(self.schedule)!r}, multiplier={self.multiplier!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, KerasSchedule)
            and other.schedule == self.schedule
            and other.multiplier == self.multiplier
            and other.state == self.state
        )

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
        TypeError: for something that is not a schedule (a controller, a number),
            or a schedule of a family that defines no ``_formula`` (see
            :mod:`lrkit.schedules`, "Adding a family").
        ValueError: for an invalid spec, with the offending part.

    Examples:
        >>> import keras
        >>> optimizer = keras.optimizers.SGD(learning_rate=to_keras("cosine(lr=1.0, steps=4)"))
        >>> _ = optimizer.iterations.assign(2)
        >>> round(float(optimizer.learning_rate), 6)
        0.5
    """
    return KerasSchedule(schedule_or_spec)


def _check_multiplier(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"KerasSchedule: multiplier must be a finite number >= 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"KerasSchedule: multiplier must be a finite number >= 0, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------
# The optimizer's schedule, as the callbacks see it
# ---------------------------------------------------------------------------


def _optimizer(who: str, model: Any) -> Any:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError(f"{who}: the model has no optimizer; compile it first")
    return getattr(optimizer, "inner_optimizer", optimizer)  # through a LossScaleOptimizer


def _lr_object(optimizer: Any) -> Any:
    """What the optimizer was given as its learning rate (a schedule, or a Variable for a
    float). Keras keeps it in ``_learning_rate``; its ``learning_rate`` property is the value."""
    return optimizer._learning_rate


def _attach(who: str, model: Any) -> KerasSchedule:
    """The optimizer's :class:`KerasSchedule`; a constant float lr becomes ``constant(lr)``.

    Keras' setter replaces a float lr (a Variable among the optimizer's
    variables) with the schedule and drops that Variable, so a model saved
    afterwards loads with the same variables; the compiled train step is
    rebuilt, since it was traced with the old variables.

    Raises:
        TypeError: the lr is another kind of schedule or a callable.
    """
    optimizer = _optimizer(who, model)
    current = _lr_object(optimizer)
    if isinstance(current, KerasSchedule):
        return current
    if isinstance(current, keras.Variable):
        lr = float(ops.convert_to_numpy(current))
        schedule = KerasSchedule(constant(lr))
        optimizer.learning_rate = schedule
        _rebuild_train_step(model)
        return schedule
    raise TypeError(
        f"{who}: the optimizer's learning_rate must be a float or an lrkit schedule "
        f"(lrkit.keras.to_keras(...)), got {type(current).__name__}; wrap your schedule "
        "as an lrkit spec, e.g. to_keras('cosine(lr=1e-3, steps=1000)')"
    )


def _rebuild_train_step(model: Any) -> None:
    """Make Keras trace its train step again, so that it reads the new multiplier.

    A compiled train step (jax's ``jit``, tensorflow's ``tf.function``, torch
    with ``jit_compile=True``) holds the multiplier as a constant of its trace.
    A Keras Variable would not help: one that is not among the optimizer's
    variables is a constant of the jax trace too, and one that is changes the
    optimizer's variable count, so a saved model would no longer load its
    optimizer state. Cuts are rare (a plateau, a rollback), so one new trace
    per cut is cheap; in eager mode (torch's default) this costs nothing.
    """
    if getattr(model, "compiled", False):
        model.make_train_function(force=True)


def _set_multiplier(model: Any, schedule: KerasSchedule, value: float) -> None:
    if value != schedule.multiplier:
        schedule.multiplier = _check_multiplier(value)
        _rebuild_train_step(model)


def _current_lr(model: Any) -> float:
    return float(ops.convert_to_numpy(_optimizer("lrkit.keras", model).learning_rate))


def _iterations(model: Any) -> int:
    return int(ops.convert_to_numpy(_optimizer("lrkit.keras", model).iterations))


# ---------------------------------------------------------------------------
# Plateau
# ---------------------------------------------------------------------------


class Plateau(keras.callbacks.Callback):
    """Cut the lr when a metric stalls: SPEC §3's rules (torch's counting) as a Keras callback.

    Once per epoch, at its end, the callback observes ``logs[monitor]`` as
    :class:`lrkit.controllers.Plateau` does: an observation is better when it
    beats the best by more than ``threshold``; more than ``patience``
    observations in a row that are not better call for a cut, after which
    ``cooldown`` observations are not counted. A cut multiplies the
    schedule's multiplier ``f`` by ``factor``, never taking ``s(t) * f``
    below ``min_lr``, and is skipped when it would change the lr by ``eps``
    or less. Observations made during the schedule's warmup are ignored. The
    observation's step ``t`` is the last update made (``iterations - 1``),
    as :class:`lrkit.torch.Scheduler` counts it.

    It multiplies whatever lr the optimizer has: an lrkit schedule
    (:func:`to_keras`), whose :attr:`KerasSchedule.multiplier` it changes,
    or a float lr, which it turns into ``to_keras(constant(lr))`` first. So
    every update at iteration ``i`` uses ``s(i) * f``, schedule and cuts
    together (Keras' own ``ReduceLROnPlateau`` raises ``TypeError`` on an
    optimizer with a schedule). The train step is re-traced after a cut, so a
    compiled step (jax) uses the new lr too.

    The multiplier and the counters are saved with the model (they are in the
    schedule's config): after ``keras.saving.load_model`` a new ``Plateau``
    with the same settings goes on where the old one stopped. Put it before
    a ``ModelCheckpoint`` in the callback list, so a checkpoint sees this
    epoch's cut.

    ``logs["learning_rate"]`` is set at every epoch end to the lr of the next
    update (this epoch's cut included), for the callbacks that follow
    (``CSVLogger``, ``TensorBoard``, the ``History``).

    ``mode``, ``factor``, ``patience``, ``threshold``, ``threshold_mode``,
    ``cooldown``, ``min_lr``, ``eps`` and ``start`` are those of
    :class:`lrkit.controllers.Plateau` (``start`` overrides the schedule's
    warmup length).

    Args:
        monitor: the key of ``logs`` to watch (``"val_loss"``, ``"loss"``, ...).
        verbose: 1 prints a line at each cut.

    Raises:
        ValueError: an argument outside its range, naming it and its value.

    Examples:
        >>> import numpy as np, keras
        >>> import lrkit.keras
        >>> layer = keras.layers.Dense(1, use_bias=False)
        >>> model = keras.Sequential([keras.Input((1,)), layer])
        >>> model.compile(keras.optimizers.SGD(lrkit.keras.to_keras("constant(lr=0.1)")), "mse")
        >>> x = np.zeros((8, 1), "float32")  # the output stays 0: the loss cannot improve
        >>> cb = lrkit.keras.Plateau(monitor="loss", patience=0, factor=0.5)
        >>> history = model.fit(x, x + 1, epochs=3, verbose=0, callbacks=[cb])
        >>> [round(v, 4) for v in history.history["learning_rate"]]
        [0.1, 0.05, 0.025]
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
        start: int | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"plateau: monitor must be a non-empty string, got {monitor!r}")
        self.monitor = monitor
        self.settings: dict[str, Any] = {
            "mode": mode,
            "factor": factor,
            "patience": patience,
            "threshold": threshold,
            "threshold_mode": threshold_mode,
            "cooldown": cooldown,
            "min_lr": min_lr,
            "eps": eps,
            "start": start,
        }
        self.controller = _Plateau(constant(1.0), **self.settings)  # checks the settings
        self.verbose = verbose
        self._schedule: KerasSchedule | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        schedule = _attach("lrkit.keras.Plateau", self.model)
        self._schedule = schedule
        self.controller = _Plateau(schedule.schedule, **self.settings)
        saved = schedule.state.get("plateau")
        if saved is not None:  # a loaded model: go on with its counters
            counters = PlateauDetector.from_state_dict(saved)
            detector = self.controller.detector
            detector.best = counters.best
            detector.num_bad_epochs = counters.num_bad_epochs
            detector.cooldown_counter = counters.cooldown_counter

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._schedule is None:  # fit() calls on_train_begin first; a manual loop may not
            self.on_train_begin()
        schedule = _attach("lrkit.keras.Plateau", self.model)
        model = self.model
        logs = logs if logs is not None else {}
        current = logs.get(self.monitor)
        step = _iterations(model) - 1  # the update just made
        if current is None:
            warnings.warn(
                f"lrkit.keras.Plateau: logs has no {self.monitor!r} (it has "
                f"{sorted(logs)}); nothing observed this epoch",
                stacklevel=2,
            )
        elif step >= 0:
            self.controller.factor_now = schedule.multiplier
            if self.controller.observe(float(current), step):
                _set_multiplier(model, schedule, self.controller.factor_now)
                if self.verbose:
                    print(
                        f"\nEpoch {epoch + 1}: lrkit Plateau cut the lr to "
                        f"{_current_lr(model):.6g} (multiplier {schedule.multiplier:.6g})"
                    )
            schedule.state = {**schedule.state, "plateau": self.controller.detector.state_dict()}
        logs["learning_rate"] = _current_lr(model)


# ---------------------------------------------------------------------------
# Guard
# ---------------------------------------------------------------------------


def _values(variables: list[Any]) -> list[np.ndarray]:
    """Copies of the variables' values, in memory."""
    return [np.array(ops.convert_to_numpy(v), copy=True) for v in variables]


def _assign(variables: list[Any], values: list[np.ndarray]) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def _optimizer_state(optimizer: Any) -> list[Any]:
    """The optimizer's variables but its step counter (a rollback leaves it running on)."""
    counter = getattr(optimizer, "_iterations", None)
    return [v for v in optimizer.variables if v is not counter]


class _KerasState:
    """The Keras binding of :mod:`lrkit.rollback`: copies of the callback's model's state.

    :meth:`capture` copies the model's variables and the optimizer's but its
    step counter into numpy arrays, in memory; :meth:`apply` assigns them back.
    The model is the callback's at each call (Keras sets it; on jax, reading
    it syncs the variables from the compiled step).
    """

    def __init__(self, callback: keras.callbacks.Callback) -> None:
        self.callback = callback

    def capture(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        model = self.callback.model
        optimizer = _optimizer("lrkit.keras.Guard", model)
        return _values(model.variables), _values(_optimizer_state(optimizer))

    def apply(self, data: tuple[list[np.ndarray], list[np.ndarray]]) -> None:
        model = self.callback.model
        weights, opt_values = data
        _assign(model.variables, weights)
        _assign(_optimizer_state(_optimizer("lrkit.keras.Guard", model)), opt_values)


def _loss_tracker(model: Any) -> Any:
    """The ``Mean`` metric behind ``logs["loss"]`` (its ``total`` and ``count``)."""
    for metric in model.metrics:
        if metric.name == "loss" and hasattr(metric, "total") and hasattr(metric, "count"):
            return metric
    return None


class Guard(keras.callbacks.Callback):
    """Roll back to the last good weights and cut the lr when the loss diverges (SPEC §3).

    After every batch the callback takes that batch's loss (from the
    ``total`` and ``count`` of the ``loss`` metric, so the running mean in
    ``logs`` is not mistaken for it) and asks
    :class:`lrkit.divergence.DivergenceRule`: NaN or inf, or a loss above
    ``spike`` times the median of the last ``window`` good losses (and, with
    ``above_start``, above the median of the first ``window``, as
    :class:`lrkit.Guard`). On a divergence it writes back the last good
    snapshot of the model's variables and of the optimizer's variables (its
    moments; ``iterations`` keeps counting, and the data moves on), resets
    the loss metric (a NaN would stay in its mean), and multiplies the
    schedule's multiplier by ``factor``. The ``max_rollbacks + 1``-th
    divergence restores the snapshot and raises :class:`lrkit.controllers.Diverged`.

    A snapshot is taken when training begins and after every
    ``snapshot_every`` good batches; it is a copy in memory (the policy is
    :class:`lrkit.rollback.Snapshots`', as in the torch driver). The multiplier
    and the rollback count are saved with the model (in the schedule's
    config), and the lr cut works with a compiled train step, as for
    :class:`Plateau`; the two callbacks multiply the same multiplier.

    On the jax backend the callback reads the model's state after every batch
    (Keras then syncs it from the compiled step): cheap for small models, a
    copy per batch for large ones.

    Args:
        factor: the lr multiplier applied at each rollback, in (0, 1].
        spike: a loss above ``spike`` x the running median diverges (> 1).
        window: how many recent good losses make the median (>= 1).
        max_rollbacks: rollbacks allowed before :class:`Diverged` (>= 0).
        snapshot_every: good batches between snapshots (>= 1).
        above_start: a spike must also exceed the starting level (see
            :class:`lrkit.Guard`; ``False`` is SPEC's plain rule).
        verbose: 1 prints a line at each rollback.

    Raises:
        ValueError: an argument outside its range, naming it and its value.

    Examples:
        >>> import numpy as np, keras
        >>> import lrkit.keras
        >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.1), "mse")
        >>> x = np.ones((8, 1), "float32")
        >>> x[4] = np.nan  # one bad batch
        >>> guard = lrkit.keras.Guard(factor=0.5, snapshot_every=1)
        >>> _ = model.fit(x, x, batch_size=2, epochs=1, verbose=0, callbacks=[guard])
        >>> guard.rollbacks, bool(np.isfinite(model.get_weights()[0]).all())
        (1, True)
        >>> round(float(model.optimizer.learning_rate), 6)
        0.05
    """

    def __init__(
        self,
        factor: float = 0.5,
        spike: float = 4.0,
        window: int = 20,
        max_rollbacks: int = 3,
        snapshot_every: int = 10,
        *,
        above_start: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not 0 < factor <= 1:
            raise ValueError(f"guard: factor must be a number in (0, 1], got {factor!r}")
        for name, value, low in (
            ("max_rollbacks", max_rollbacks, 0),
            ("snapshot_every", snapshot_every, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"guard: {name} must be an integer >= {low}, got {value!r}")
        try:
            self.rule = DivergenceRule(spike=spike, window=window, above_start=above_start)
        except ValueError as exc:
            raise ValueError(str(exc).replace("divergence:", "guard:", 1)) from None
        self.factor = float(factor)
        self.max_rollbacks = max_rollbacks
        self.snapshot_every = snapshot_every
        self.verbose = verbose
        self.rollbacks = 0
        self.window_state = self.rule.initial()
        self._schedule: KerasSchedule | None = None
        #: The rollback policy (lrkit.rollback), kept every ``snapshot_every`` good batches.
        self._snapshots = Snapshots(_KerasState(self), snapshot_every, who="lrkit.keras.Guard")
        self._good = 0
        self._seen = (0.0, 0.0)

    # -- snapshots ---------------------------------------------------------

    def _take_snapshot(self) -> None:
        """Keep the state now as the good snapshot (at the optimizer's iteration)."""
        optimizer = _optimizer("lrkit.keras.Guard", self.model)
        self._snapshots.keep(int(ops.convert_to_numpy(optimizer.iterations)))

    def _restore_snapshot(self) -> None:
        if self._snapshots.ready:
            self._snapshots.restore()

    def _save_state(self) -> None:
        if self._schedule is not None:
            self._schedule.state = {
                **self._schedule.state,
                "guard": {"rollbacks": self.rollbacks, "window": self.window_state.to_dict()},
            }

    # -- the callback ------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._schedule = _attach("lrkit.keras.Guard", self.model)
        saved = self._schedule.state.get("guard")
        if saved is not None:  # a loaded model: go on with its count and window
            self.rollbacks = int(saved["rollbacks"])
            self.window_state = DivergenceState.from_dict(saved["window"])
        self._take_snapshot()
        self._good = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._seen = (0.0, 0.0)  # Keras resets its metrics at each epoch

    def _batch_loss(self, model: Any, logs: dict[str, Any]) -> float:
        tracker = _loss_tracker(model)
        if tracker is None:
            return float(logs.get("loss", math.nan))
        total = float(ops.convert_to_numpy(tracker.total))
        count = float(ops.convert_to_numpy(tracker.count))
        before_total, before_count = self._seen
        self._seen = (total, count)
        if count <= before_count:
            return float(logs.get("loss", math.nan))
        return (total - before_total) / (count - before_count)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        model = self.model  # on jax, this syncs the variables from the compiled step
        if self._schedule is None:
            self.on_train_begin()
        schedule = _attach("lrkit.keras.Guard", model)
        loss = self._batch_loss(model, logs or {})
        self.window_state, found = self.rule.update(self.window_state, loss)
        if found is None:
            self._good += 1
            if self._snapshots.due(self._good):  # every snapshot_every good batches
                self._take_snapshot()
            return
        step = _iterations(model) - 1
        self._restore_snapshot()
        tracker = _loss_tracker(model)
        if tracker is not None:
            tracker.reset_state()
        self._seen = (0.0, 0.0)
        if self.rollbacks >= self.max_rollbacks:
            done = self.rollbacks
            raise Diverged(
                f"lrkit.keras.Guard: {found.message} at step {step}, after {done} "
                f"rollback{'' if done == 1 else 's'} (max_rollbacks={self.max_rollbacks}); "
                "the model holds the last good snapshot",
                found,
                step,
                done,
            )
        self.rollbacks += 1
        _set_multiplier(model, schedule, schedule.multiplier * self.factor)
        self._save_state()
        if self.verbose:
            print(
                f"\nlrkit Guard: {found.message} at step {step}; rolled back, "
                f"lr multiplier now {schedule.multiplier:.6g}"
            )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._save_state()


# ---------------------------------------------------------------------------
# The lr range test
# ---------------------------------------------------------------------------


class _Ramp(keras.optimizers.schedules.LearningRateSchedule):
    """The range test's lrs by iteration: ``lrs[clip(iterations - start, 0, n - 1)]``."""

    def __init__(self, lrs: np.ndarray, start: int) -> None:
        super().__init__()
        self.lrs = np.asarray(lrs, dtype=keras.config.floatx())
        self.start = int(start)

    def __call__(self, step: Any) -> Any:
        index = ops.clip(ops.cast(step, "int32") - self.start, 0, len(self.lrs) - 1)
        return ops.take(ops.convert_to_tensor(self.lrs), index)

    def get_config(self) -> dict[str, Any]:
        return {"lrs": self.lrs.tolist(), "start": self.start}


def _batches(x: Any, y: Any, batch_size: int, seed: int) -> Any:
    """``(x, y)`` batches for ever, a new shuffled order at each pass."""
    n = len(keras.tree.flatten(x)[0])
    if n == 0:
        raise ValueError("find_lr: x has no samples")
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n)
        for begin in range(0, n, batch_size):
            index = order[begin : begin + batch_size]
            take = lambda a, i=index: np.asarray(a)[i]  # noqa: E731
            yield (
                keras.tree.map_structure(take, x),
                None if y is None else keras.tree.map_structure(take, y),
            )


def find_lr(
    model: Any,
    x: Any,
    y: Any = None,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int = 100,
    batch_size: int = 32,
    mode: str = "exp",
    smooth: float = 0.98,
    diverge: float = 5.0,
    method: str = "default",
    seed: int = 0,
) -> FinderResult:
    """Run an lr range test on a compiled Keras model and suggest an lr; leave it as it was.

    Step ``i`` trains one batch (``model.train_on_batch``, with the model's
    own optimizer and loss) at lr ``ramp[i]`` (:func:`lrkit.finder.ramp`,
    exponential from ``min_lr`` to ``max_lr``, or linear) and records its
    loss, until ``num_steps`` updates or a divergence (NaN/inf, or the
    smoothed loss above ``diverge`` x its best). Batches are drawn from
    ``x`` and ``y`` in a shuffled order (``seed``), cycling when they run
    out. The suggestion is :func:`lrkit.finder.suggest`'s, the result the
    same :class:`lrkit.finder.FinderResult` that ``lrkit.torch.find_lr``
    returns.

    Afterwards every variable of the model (weights, non-trainable state)
    and of the optimizer (its moments, ``iterations``, a float lr), the
    model's metric variables and the optimizer's lr schedule are exactly as
    before, bit for bit; the compiled train step is rebuilt so the next
    ``fit`` uses your schedule again.

    Args:
        model: A compiled Keras model (``model.compile(optimizer, loss)``).
        x: Inputs: an array, or a list/dict of arrays, of equal length.
        y: Targets, the same way (``None`` for a model that computes its loss).
        min_lr: The first lr, > 0.
        max_lr: The last lr, > ``min_lr``.
        num_steps: Updates in the sweep, >= 2.
        batch_size: Samples per update, >= 1.
        mode: ``"exp"`` or ``"linear"``.
        smooth: The ``beta`` of :func:`lrkit.finder.smooth`, in ``[0, 1)``.
        diverge: The stop factor, > 1.
        method: One of :data:`lrkit.finder.METHODS`.
        seed: The seed of the batch order.

    Returns:
        A :class:`lrkit.finder.FinderResult` (``.suggestion``, ``.lrs``,
        ``.losses``, ``.plot(path)``).

    Raises:
        ValueError: an argument out of range, or a model that is not compiled.
        TypeError: the optimizer's lr is neither a float nor a schedule.

    Examples:
        >>> import numpy as np, keras
        >>> import lrkit.keras
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(256, 4)).astype("float32")
        >>> y = x @ rng.normal(size=(4, 1)).astype("float32")
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.01), "mse")
        >>> before = model.get_weights()
        >>> result = lrkit.keras.find_lr(model, x, y, min_lr=1e-4, max_lr=10.0, num_steps=60)
        >>> all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        True
        >>> 1e-3 < result.suggestion < 2.0, len(result.lrs) == len(result.losses)
        (True, True)
    """
    for name, value, low in (("num_steps", num_steps, 2), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"find_lr: {name} must be an integer >= {low}, got {value!r}")
    if method not in finder.METHODS:
        raise ValueError(f"find_lr: method must be one of {sorted(finder.METHODS)}, got {method!r}")
    if isinstance(smooth, bool) or not isinstance(smooth, int | float) or not 0 <= smooth < 1:
        raise ValueError(f"find_lr: smooth must be a number in [0, 1), got {smooth!r}")
    if isinstance(diverge, bool) or not isinstance(diverge, int | float) or not diverge > 1:
        raise ValueError(f"find_lr: diverge must be a number > 1, got {diverge!r}")
    if not getattr(model, "compiled", False):
        raise ValueError("find_lr: the model must be compiled (model.compile(optimizer, loss))")
    if not model.built or not model.trainable_variables:
        raise ValueError(
            "find_lr: the model is not built yet (no weights to save and restore): give it "
            "an Input, call model.build(input_shape), or run it on a batch first"
        )
    lrs = finder.ramp(min_lr, max_lr, num_steps, mode)
    optimizer = _optimizer("find_lr", model)
    outer = model.optimizer  # a LossScaleOptimizer keeps its own scale and counter too
    if not outer.built:
        outer.build(model.trainable_variables)  # the inner one with it
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    lr_object = _lr_object(optimizer)
    if not isinstance(lr_object, keras.Variable | keras.optimizers.schedules.LearningRateSchedule):
        raise TypeError(
            "find_lr: the optimizer's learning_rate must be a float or a LearningRateSchedule, "
            f"got {type(lr_object).__name__}"
        )

    saved = (
        _values(model.variables),
        _values(optimizer.variables),
        _values(model.metrics_variables),
        _values(outer.variables) if outer is not optimizer else [],
    )
    ramp_schedule = None
    if not isinstance(lr_object, keras.Variable):  # a float lr is a Variable: set it per step
        ramp_schedule = _Ramp(lrs, _iterations(model))
        optimizer.learning_rate = ramp_schedule
        _rebuild_train_step(model)
    losses: list[float] = []
    batches = _batches(x, y, batch_size, seed)
    try:
        for lr in lrs:
            if ramp_schedule is None:
                lr_object.assign(float(lr))
            xb, yb = next(batches)
            loss = model.train_on_batch(xb, yb, return_dict=True)["loss"]
            losses.append(float(ops.convert_to_numpy(loss)))
            if finder.divergence_index(losses, beta=smooth, diverge=diverge) is not None:
                break
    finally:
        if ramp_schedule is not None:
            optimizer.learning_rate = lr_object
            _rebuild_train_step(model)  # the compiled step computed the ramp
        _assign(model.variables, saved[0])
        _assign(optimizer.variables, saved[1])
        _assign(model.metrics_variables, saved[2])
        if outer is not optimizer:
            _assign(outer.variables, saved[3])

    losses_all = np.asarray(losses, dtype=np.float64)
    return FinderResult.from_runs(
        lrs, [losses_all], method=method, beta=smooth, diverge=diverge, updates=len(losses_all)
    )


# ---------------------------------------------------------------------------
# Monitor
# ---------------------------------------------------------------------------

_log = logging.getLogger("lrkit.monitor")


def _global_norm(tensors: Sequence[Any]) -> Any:
    """``sqrt(sum ||t||^2)`` over the tensors (None skipped), a float32 scalar tensor, or None."""
    total = None
    for t in tensors:
        if t is None:
            continue
        squares = ops.sum(ops.square(ops.cast(t, "float32")))
        total = squares if total is None else total + squares
    return None if total is None else ops.sqrt(total)


def _no_grad() -> Any:
    """torch's ``no_grad`` on the torch backend (copies of weights need no graph), else nothing."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def _scalar(value: Any) -> float:
    """A one-element tensor or Variable as a float (``convert_to_numpy`` warns on numpy 2)."""
    if isinstance(value, keras.Variable):
        value = value.value
    return float(value)


def _momentum_of(optimizer: Any) -> float | None:
    """SGD's or RMSprop's ``momentum``, else Adam's (AdamW's, Nadam's, Lion's...) ``beta_1``."""
    for name in ("momentum", "beta_1"):
        value = getattr(optimizer, name, None)
        if value is None or isinstance(value, bool):
            continue
        if callable(value) and not isinstance(value, keras.Variable):
            value = value()
        try:
            return _scalar(value)
        except (TypeError, ValueError):
            return None
    return None


class _Apply:
    """An optimizer's ``apply`` that shows a :class:`Monitor` the gradients first.

    Set as the optimizer's instance attribute for one fit: ``apply`` is what
    the torch train step calls, and what ``stateless_apply`` calls inside
    jax's compiled step. :meth:`remove` takes it off again or, when another
    wrapper was put on top of it meanwhile, makes it pass through.
    """

    def __init__(self, monitor: Monitor, optimizer: Any) -> None:
        self.monitor: Monitor | None = monitor
        self.optimizer = optimizer
        self.original = optimizer.apply
        self.previous = optimizer.__dict__.get("apply")  # an instance attribute before ours

    def __call__(self, grads: Any, trainable_variables: Any = None) -> Any:
        if self.monitor is not None:
            self.monitor._measure_grads(self.optimizer, grads)
        return self.original(grads, trainable_variables)

    def remove(self) -> None:
        self.monitor = None
        attributes = self.optimizer.__dict__
        if attributes.get("apply") is not self:
            return  # another wrapper on top of ours: ours passes through from now on
        previous = self.previous
        while isinstance(previous, _Apply) and previous.monitor is None:
            previous = previous.previous  # skip wrappers already removed
        del attributes["apply"]
        if previous is not None:
            self.optimizer.apply = previous


class Monitor(keras.callbacks.Callback):
    """Record lr, momentum, loss, gradient norm and update ratio of a Keras fit (SPEC §9).

    The Keras twin of :class:`lrkit.torch.Monitor`: the same tags, the same
    :class:`lrkit.monitor.Record`, sinks and live diagnosis. Step ``i`` is the
    update made when ``optimizer.iterations`` is ``i`` (SPEC §5), so a model
    loaded from a save goes on counting where it stopped. Keras trains one
    set of variables with one optimizer: everything is ``group0``.

    What is measured, per recorded update (``iterations % every == 0``):

    - ``lr/group0``: the optimizer's ``learning_rate`` read just before the
      update (in ``on_train_batch_begin``): the schedule at the iteration the
      update uses, cuts by :class:`Plateau` or :class:`Guard` included. (Read
      in ``on_train_batch_end`` it would be the next update's: ``iterations``
      has moved on by then.)
    - ``momentum/group0``: the optimizer's ``momentum`` (SGD, RMSprop), else
      its ``beta_1`` (Adam, AdamW, Nadam, Lion, ...); absent for others.
    - ``loss``: the batch's training loss (what the optimizer minimized,
      regularization included). ``logs["loss"]`` is the running mean over
      the epoch, not the batch's loss, so the monitor reads the sum and count
      behind that mean (the ``loss`` metric's ``total`` and ``count``) before
      and after the batch and divides the increments. That is the batch's
      loss up to the float32 rounding of the running sum: an error of about
      ``3e-8 x`` the batches so far in the epoch ``x`` the epoch's mean loss.
    - ``update_ratio/group0``: ``||w_{i+1} - w_i|| / ||w_i||`` over all
      trainable variables, from a copy of them taken on the device before
      the update (two scalars come back to the host).
    - ``grad_norm``: the global norm of the gradients handed to the
      optimizer (before Keras' ``clipnorm``/``global_clipnorm``, the norm
      torch's ``clip_grad_norm_`` returns), without another forward or
      backward pass: for the fit, the monitor wraps the optimizer's
      ``apply``. On torch the norm is computed there, eagerly, for recorded
      updates only. On jax the compiled train step computes it and hands it
      out through ``jax.debug.callback`` under a ``lax.cond``, so the other
      updates transfer nothing; the train step is traced again at the start
      and at the end of the fit. Other backends (tensorflow, whose compiled
      step would need a ``tf.py_function``) record no ``grad_norm``.

    An update that is not recorded costs a counter increment: the model is
    not read (on jax, reading it syncs the whole state out of the compiled
    step). With ``steps_per_execution > 1`` (jax, tensorflow; Keras' torch
    backend allows only 1) a record is one execution, recorded when its
    first update is due: its step, lr and gradient norm are its first
    update's, its loss the mean of its batches, and it has no update ratio.
    Put the monitor before :class:`Guard` in the callbacks, so it sees the
    update the optimizer made rather than a rollback.

    One monitor watches one ``fit``. At its end (``on_train_end``) the
    monitor closes itself: it closes the sinks, keeps the final diagnosis
    and logs it on the ``lrkit.monitor`` logger (a warning when the verdict
    is bad, else info); a second ``fit`` with it raises. If ``fit`` raises,
    call :meth:`close`. Keras does not save callbacks, and the monitor keeps
    nothing in the model: a saved model loads as usual, and a new monitor on
    the loaded model goes on at its ``iterations``.

    Args:
        every: Record one update in ``every``.
        sinks: Where the record also goes as it grows (``lrkit.sinks``).
        live: Diagnose as the run goes; the first bad verdict is logged once
            as a warning on the ``lrkit.monitor`` logger.

    Raises:
        ValueError: ``every`` is not an integer >= 1.
        TypeError: a sink has no ``write``/``close``.

    Examples:
        >>> import numpy as np, keras
        >>> import lrkit.keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> lr = lrkit.keras.to_keras("cosine(lr=0.1, steps=8)")
        >>> model.compile(keras.optimizers.SGD(lr, momentum=0.9), "mse")
        >>> monitor = lrkit.keras.Monitor()
        >>> x = np.ones((16, 2), "float32")
        >>> _ = model.fit(x, x[:, :1], batch_size=2, epochs=1, verbose=0, callbacks=[monitor])
        >>> monitor.record.tags
        ['grad_norm', 'loss', 'lr/group0', 'momentum/group0', 'update_ratio/group0']
        >>> monitor.record.series("lr/group0")[1][:3].round(4).tolist()
        [0.1, 0.0962, 0.0854]
    """

    def __init__(self, every: int = 1, sinks: Sequence[Sink] = (), *, live: bool = True) -> None:
        super().__init__()
        #: The :class:`lrkit.monitor.Recorder` (record, sinks, live diagnosis).
        self.recorder = Recorder(sinks, every=every, live=live)
        self._next = 0  # the iteration of the next update
        self._begin = 0  # the first batch of the execution under way
        # the update being measured: step, numbers, the loss sum and count before, weights before
        self._pending: tuple[int, dict[str, float], tuple[float, float], list[Any]] | None = None
        self._wrapper: _Apply | None = None
        self._final: Diagnosis | None = None
        self._want_grad_norm = False
        self._grad_norm: Any = None  # torch: the norm tensor of the update being measured
        self._grad_norms: dict[int, float] = {}  # jax: by step, from the compiled step

    # -- grad_norm: the optimizer's apply, wrapped for the fit --------------------------

    def _measure_grads(self, optimizer: Any, grads: Any) -> None:
        """See every update's gradients (on jax, while the train step is traced)."""
        if keras.backend.backend() == "torch":
            if self._want_grad_norm:  # a recorded update: one norm, kept on the device
                self._want_grad_norm = False
                self._grad_norm = _global_norm(grads)
            return
        import jax

        norm = _global_norm(grads)
        if norm is None:
            return
        step = ops.convert_to_tensor(optimizer.iterations)  # the traced value, before the update
        jax.lax.cond(
            step % self.recorder.every == 0,
            lambda s, n: jax.debug.callback(self._receive_grad_norm, s, n),
            lambda s, n: None,
            step,
            norm,
        )

    def _receive_grad_norm(self, step: Any, norm: Any) -> None:
        if self._wrapper is not None:  # nothing once the fit has ended
            self._grad_norms[int(step)] = float(norm)

    def _take_grad_norm(self, step: int) -> float | None:
        if self._grad_norm is not None:
            norm, self._grad_norm = self._grad_norm, None
            return _scalar(norm)
        if self._wrapper is None:
            return None
        if step not in self._grad_norms and keras.backend.backend() == "jax":
            import jax

            jax.effects_barrier()  # wait for this update's callback
        found = self._grad_norms.pop(step, None)
        self._grad_norms.clear()  # older ones, if any (a record skipped)
        return found

    # -- the callback -----------------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._final is not None:
            raise RuntimeError(
                "lrkit.keras.Monitor: this monitor watched a fit that has ended (its sinks are "
                "closed); give each fit a new Monitor"
            )
        model = self.model
        optimizer = _optimizer("lrkit.keras.Monitor", model)
        if self._wrapper is not None:  # on_train_begin again without an end
            self._wrapper.remove()
            self._wrapper = None
        if keras.backend.backend() in ("torch", "jax"):
            self._wrapper = _Apply(self, optimizer)
            optimizer.apply = self._wrapper
        _rebuild_train_step(model)  # trace the step again, through the wrapper
        self._next = int(_scalar(optimizer.iterations))
        self._pending = None

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._begin = batch
        if not self.recorder.due(self._next):
            return
        model = self.model  # on jax, this syncs the variables out of the compiled step
        optimizer = _optimizer("lrkit.keras.Monitor", model)
        step = self._next = int(_scalar(optimizer.iterations))
        numbers = {group_tag("lr", 0): _scalar(optimizer.learning_rate)}
        momentum = _momentum_of(optimizer)
        if momentum is not None:
            numbers[group_tag("momentum", 0)] = momentum
        tracker = _loss_tracker(model)
        seen = (_scalar(tracker.total), _scalar(tracker.count)) if tracker else (0.0, 0.0)
        with _no_grad():
            before = [ops.copy(v.value) for v in model.trainable_variables]
        self._grad_norm = None
        self._want_grad_norm = True
        self._pending = (step, numbers, seen, before)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            self._next += max(batch - self._begin + 1, 1)
            return
        self._want_grad_norm = False
        step, numbers, (total_before, count_before), before = pending
        model = self.model
        self._next = now = int(_scalar(_optimizer("lrkit.keras.Monitor", model).iterations))
        tracker = _loss_tracker(model)
        if tracker is not None:
            total, count = _scalar(tracker.total), _scalar(tracker.count)
            if count > count_before:
                numbers["loss"] = (total - total_before) / (count - count_before)
        if "loss" not in numbers and logs and "loss" in logs:  # no sum, or reset (a rollback)
            numbers["loss"] = _scalar(logs["loss"])
        if now - step == 1 and before:
            with _no_grad():
                after = [v.value for v in model.trainable_variables]
                diff = [ops.subtract(a, b) for a, b in zip(after, before, strict=True)]
                norms = ops.stack([_global_norm(diff), _global_norm(before)]).tolist()
            change_norm, weight_norm = float(norms[0]), float(norms[1])
            numbers[group_tag("update_ratio", 0)] = (
                change_norm / weight_norm if weight_norm > 0 else math.inf
            )
        grad_norm = self._take_grad_norm(step)
        if grad_norm is not None:
            numbers["grad_norm"] = grad_norm
        self.recorder.add(step, numbers)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.close()

    # -- results ------------------------------------------------------------------------

    @property
    def record(self) -> Any:
        """The :class:`lrkit.monitor.Record` so far."""
        return self.recorder.record

    def diagnosis(self) -> Diagnosis:
        """The verdict on the lr so far (the final one once the fit has ended)."""
        return self._final if self._final is not None else self.recorder.diagnosis()

    def close(self) -> Diagnosis:
        """Unwrap the optimizer, close the sinks, log and return the final diagnosis.

        Called at the end of ``fit``; a second call returns the same diagnosis.
        """
        if self._final is not None:
            return self._final
        if self._wrapper is not None:
            self._wrapper.remove()
            self._wrapper = None
            self._grad_norms.clear()
            if getattr(self._model, "compiled", False):
                _rebuild_train_step(self._model)  # drop the trace that calls this monitor
        self._final = found = self.recorder.close()
        level = logging.WARNING if found.bad else logging.INFO
        _log.log(level, "lrkit.keras.Monitor: final verdict %s", found)
        return found

    def __repr__(self) -> str:
        return (
            f"Monitor(every={self.recorder.every}, records={len(self.recorder.record)}, "
            f"sinks={[type(s).__name__ for s in self.recorder.sinks]})"
        )
