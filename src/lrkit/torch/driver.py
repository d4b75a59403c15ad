"""The driver: :class:`Scheduler` runs any lrkit schedule or controller on a torch optimizer."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any, SupportsFloat

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lrkit import schedules as _core
from lrkit.rollback import Snapshots
from lrkit.torch._common import (
    _as_float,
    _check_optimizer,
    _set,
    _stepped_out_of_order_or_replaced,
    _warn_order,
    _watch,
)
from lrkit.torch.rollback import _BeforeUpdate, _snapshots

# ---------------------------------------------------------------------------
# The driver for lrkit schedules
# ---------------------------------------------------------------------------


def _resolve(name: str, value: Any, fill: Mapping[str, Any] | None = None) -> Any:
    """An lrkit schedule, a spec string (parsed, ``fill`` filling what it leaves out), or a
    controller (``lr`` + ``observe``)."""
    if isinstance(value, str):
        import lrkit

        try:
            return lrkit.parse(value, **(fill or {}))
        except ValueError as err:
            if "missing required argument 'steps'" in str(err) and "steps" not in (fill or {}):
                raise ValueError(
                    f"{err}\nScheduler: give the run's length to fill a missing steps: "
                    "Scheduler(optimizer, spec, total_steps=N) (N = epochs x batches per epoch "
                    "when you step per batch)"
                ) from None
            raise
    if isinstance(value, _core.Schedule):
        return value
    if callable(getattr(value, "lr", None)) and callable(getattr(value, "observe", None)):
        return value
    raise TypeError(
        f"Scheduler: {name} must be an lrkit schedule, a spec string such as "
        f"'cosine(lr=0.1, steps=1000)' or a controller, got {type(value).__name__}: {value!r}"
    )


def _group_names(optimizer: Optimizer) -> list[Any]:
    return [g.get("name") for g in optimizer.param_groups]


def _per_group_schedules(
    name: str, optimizer: Optimizer, value: Any, fills: list[dict[str, Any]] | None = None
) -> list[Any] | None:
    """A list with one schedule per group (list, or dict by group name); None for one shared."""
    n = len(optimizer.param_groups)
    fills = fills if fills is not None else [{}] * n
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(
                f"Scheduler: {name} must have one schedule per param group ({n}), got {len(value)}"
            )
        return [_resolve(f"{name}[{i}]", v, fills[i]) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        names = _group_names(optimizer)
        if any(g is None for g in names):
            missing = [i for i, g in enumerate(names) if g is None]
            raise ValueError(
                f"Scheduler: {name} is a dict by group name, but param_groups {missing} have no "
                "'name'; add {'name': ...} to each param group, or pass a list"
            )
        unknown = sorted(set(map(str, value)) - set(map(str, names)))
        absent = [g for g in names if g not in value]
        if unknown or absent:
            raise ValueError(
                f"Scheduler: {name} must have one entry per param group name {names}; "
                f"unknown: {unknown}, missing: {absent}"
            )
        return [_resolve(f"{name}[{g!r}]", value[g], fills[i]) for i, g in enumerate(names)]
    return None


def _plan_of(schedule: Any) -> Any:
    """The lrkit schedule under a controller (a Plateau's, a guard's), or the schedule itself."""
    while not isinstance(schedule, _core.Schedule):
        inner = getattr(schedule, "schedule", None)
        if inner is None:
            return None
        schedule = inner
    return schedule


def _peak(schedule: Any) -> float | None:
    """The highest lr of a schedule's plan: every step of its first 100,000, then 100,000
    steps spread over the rest of its length (up to 10**9 steps for one that never ends)."""
    import numpy as np

    plan = _plan_of(schedule)
    if plan is None:
        return None
    end = plan.length if plan.length is not None else 10**9  # the end value included
    first = plan.values(min(end + 1, 100_000))
    if end < 100_000:
        return float(first.max())
    rest = np.unique(np.linspace(100_000, end, 100_000).astype(np.int64))
    return float(max(first.max(), plan.values(rest).max()))


def _takes_optimizer_lr(schedule: Any, fill: Mapping[str, Any]) -> bool:
    """Whether a spec string leaves its lr out (so it runs at the optimizer's): filled with
    another lr, it parses to another schedule."""
    if not isinstance(schedule, str):
        return False
    import lrkit

    other = {**fill, "lr": 2 * fill["lr"] if fill.get("lr") else 1.0}
    try:
        return bool(lrkit.parse(schedule, **other) != lrkit.parse(schedule, **fill))
    except ValueError:
        return False


def _warn_longer_than_run(schedules: list[Any], total_steps: int) -> None:
    """Say once when a plan ends after the run's ``total_steps``: the run would end mid-plan
    (a warmup as long as the run, say, leaves the schedule it wraps all its steps)."""
    for schedule in schedules:
        plan = _plan_of(schedule)
        if plan is not None and plan.length is not None and plan.length > total_steps:
            warmup = " (its warmup takes the whole run)" if "warmup(" in str(plan) else ""
            warnings.warn(
                f"Scheduler: {plan} ends at step {plan.length}, after the run's "
                f"total_steps={total_steps}{warmup}: the run stops before the plan does",
                UserWarning,
                stacklevel=3,
            )
            return


def _as_loss(loss: Any) -> float:
    """A loss as a float; a tensor is detached first (no autograd warning)."""
    detach = getattr(loss, "detach", None)
    return float(detach() if callable(detach) else loss)


def _warn_lr_differs(schedule: Any, optimizer_lr: float) -> None:
    """Say once when the schedule's lr is not the lr the optimizer was built with."""
    peak = _peak(schedule)
    # 1e-3: a peak between two sampled steps of a long plan is found to within that
    if peak is None or optimizer_lr == 0 or math.isclose(peak, optimizer_lr, rel_tol=1e-3):
        return
    warnings.warn(
        f"Scheduler: the schedule's lr is {peak:g} (its peak), but param group 0 was built "
        f"with lr {optimizer_lr:g}; the schedule's lr is the one used (leave lr out of the "
        "spec to take the optimizer's)",
        UserWarning,
        stacklevel=3,
    )


def _value_at(schedule: Any, step: int) -> float:
    if isinstance(schedule, _core.Schedule):
        return schedule(step)
    return float(schedule.lr(step))


def _find_guard(schedules: list[Any], shared: bool) -> Any:
    """The ``guard(schedule, ...)`` among the schedules, if any (only as the one shared)."""
    from lrkit.controllers import Guard

    guards = [s for s in schedules if isinstance(s, Guard)]
    if not guards:
        return None
    if not shared:
        raise ValueError(
            "Scheduler: a guard(...) schedule must drive all param groups; with one schedule "
            "per group, pass the guard as Scheduler(..., guard=lrkit.Guard(...), model=model)"
        )
    if guards[0].schedule is None:
        raise ValueError(
            "Scheduler: this guard has no schedule; write guard(cosine(...), ...) or pass "
            "Scheduler(optimizer, schedule, guard=lrkit.Guard(...), model=model)"
        )
    return guards[0]


class Scheduler(LRScheduler):
    """Drive a torch optimizer with any lrkit schedule: the lr at step t is ``schedule(t)``.

    The update made when the scheduler has taken ``t`` steps uses
    ``schedule(t)``: the constructor sets ``schedule(0)``, each ``step()``
    moves to the next step. Everything is computed from the step count, so a
    resume restores a number and is exact whether the optimizer's state is
    loaded before or after the scheduler is built.

    ``schedule`` is an lrkit schedule, a spec string (``lrkit.parse``), a
    controller (:class:`lrkit.Plateau`, :class:`lrkit.Adaptive`, a
    :class:`lrkit.Guard` with a schedule, or any object with ``lr(step)`` and
    ``observe(metric, step)``), or one of those per param group: a list, or
    a dict by each group's ``"name"``. With one schedule for all groups, its
    value is the first group's lr and every other group keeps its ratio to
    the first, taken from the groups' ``initial_lr`` and kept in the state.

    **Metrics**: ``step(metric)`` passes the metric, measured at the step
    just finished, to the Plateau/Adaptive controllers.

    **Guard** (rollback on divergence): pass ``guard=lrkit.Guard(...)`` and
    ``model=model``, or a ``guard(schedule, ...)`` spec as the schedule (then
    ``model=`` too), and call ``step(loss=loss.item())`` with the training
    loss of the step just finished. Just before an update the driver keeps a
    snapshot of model and optimizer (every ``snapshot_every`` steps, in
    memory, or on disk under ``snapshot_dir``); a snapshot becomes the *last
    good* one once the loss computed with those weights passed the guard.
    When the guard finds a divergence (NaN/inf, or a spike), the driver
    restores the last good snapshot into model and optimizer, the lr is
    multiplied by ``factor`` (``factor ** rollbacks`` in all), and the run
    goes on: the step counter moves forward and the next batch is the
    caller's next batch. The ``max_rollbacks + 1``-th divergence raises
    :class:`lrkit.Diverged`. A metric passed in the same call as a
    diverging loss is not observed. Build the scheduler after loading the
    model's weights, or call :meth:`snapshot`.

    **Replanning**: :meth:`replan` stretches or shrinks the lr schedule
    mid-run (``schedule.replan(steps, at)``: continuous at ``at``, ending
    where asked); the state keeps the new plan, so a resume runs it.

    Args:
        optimizer: the torch optimizer.
        schedule: the lr schedule (see above).
        momentum: optional schedule (or spec, list, dict) of the momentum, or
            of ``betas[0]`` for Adam-like optimizers (``betas[1]`` is left alone);
            its value is absolute and the same for every group.
        weight_decay: optional schedule of the weight decay: its value is the
            weight decay of the first group with a nonzero one, other nonzero
            groups keep their ratio to it, and groups with ``weight_decay=0``
            are never touched.
        guard: an :class:`lrkit.Guard` without a schedule (or its spec, e.g.
            ``"guard(factor=0.5)"``); it multiplies whatever ``schedule`` gives.
        model: the module the guard rolls back (required with a guard).
        snapshot_every: steps between snapshots (>= 1).
        snapshot_dir: keep the snapshots on disk in this directory instead of
            in memory.

    Raises:
        ValueError: the first group's lr is 0 while other groups need a ratio
            to it; a list or dict does not match the groups; ``momentum`` for
            an optimizer without momentum or betas (e.g. Adagrad);
            ``weight_decay`` when no group has a nonzero weight decay; a guard
            without ``model``, or two guards.
        TypeError: a schedule that is none of the above.

    Examples:
        >>> import torch, lrkit
        >>> from lrkit.torch import Scheduler
        >>> p = torch.nn.Parameter(torch.zeros(1))
        >>> opt = torch.optim.SGD([{"params": [p], "lr": 1.0}], lr=1.0, momentum=0.9)
        >>> s = Scheduler(opt, "warmup(cosine(lr=0.1, steps=4), steps=2)")
        >>> lrs = [s.get_last_lr()[0]]
        >>> for _ in range(4):
        ...     opt.step(); s.step(); lrs.append(round(s.get_last_lr()[0], 6))
        >>> lrs
        [0.0, 0.05, 0.1, 0.085355, 0.05]
    """

    base_lrs: list[float]  # type: ignore[assignment]  # torch types lrs as float | Tensor; lrkit's are floats
    #: A subclass that receives a step's loss after step() keeps its snapshot pending.
    _keep_unchecked = False
    _last_lr: list[float]  # type: ignore[assignment]  # torch types lrs as float | Tensor; lrkit's are floats

    def __init__(
        self,
        optimizer: Optimizer,
        schedule: Any,
        *,
        momentum: Any = None,
        weight_decay: Any = None,
        guard: Any = None,
        model: torch.nn.Module | None = None,
        snapshot_every: int = 100,
        snapshot_dir: Any = None,
        total_steps: int | None = None,
    ) -> None:
        self.optimizer = _check_optimizer("Scheduler", optimizer)
        groups = optimizer.param_groups
        n = len(groups)
        for group in groups:
            group.setdefault("initial_lr", _as_float(group["lr"]))
        self.base_lrs = [float(_as_float(g["initial_lr"])) for g in groups]
        if total_steps is not None and (
            isinstance(total_steps, bool)
            or not isinstance(total_steps, numbers.Integral)
            or total_steps < 1
        ):
            raise ValueError(f"Scheduler: total_steps must be an integer >= 1, got {total_steps!r}")
        total_steps = None if total_steps is None else int(total_steps)
        fills = [
            {"lr": lr, **({} if total_steps is None else {"steps": total_steps})}
            for lr in self.base_lrs
        ]
        per_group = _per_group_schedules("schedule", optimizer, schedule, fills)
        self._schedules: list[Any] = (
            per_group if per_group is not None else [_resolve("schedule", schedule, fills[0])]
        )
        self._end_warned = False
        self._end = self._first_end()
        if total_steps is not None:
            _warn_longer_than_run(self._schedules, total_steps)
        if per_group is None and not _takes_optimizer_lr(schedule, fills[0]):
            _warn_lr_differs(self._schedules[0], self.base_lrs[0])
        if per_group is None:
            first = self.base_lrs[0]
            if first == 0 and n > 1:
                raise ValueError(
                    "Scheduler: param_groups[0] has lr 0 (its initial_lr), so the other "
                    f"{n - 1} group(s) cannot keep their lr as a ratio to it; give group 0 a "
                    "nonzero lr, or pass one schedule per group (a list, or a dict by group name)"
                )
            self.ratios: list[float] | None = [1.0] + [b / first for b in self.base_lrs[1:]]
        else:
            self.ratios = None
        self._momentum_schedules: list[Any] | None = None
        self.use_beta1 = False
        if momentum is not None:
            defaults = optimizer.defaults
            if "momentum" not in defaults and "betas" not in defaults:
                raise ValueError(
                    f"Scheduler: momentum= was given, but {type(optimizer).__name__} has no "
                    "'momentum' or 'betas' hyperparameter; pass momentum=None, or use an "
                    "optimizer that has one (SGD(momentum=0.9), RMSprop(momentum=0.9), Adam, "
                    "AdamW)"
                )
            self.use_beta1 = "betas" in defaults
            length: list[dict[str, Any]] = [
                {} if total_steps is None else {"steps": total_steps}
            ] * n
            per = _per_group_schedules("momentum", optimizer, momentum, length)
            self._momentum_schedules = per or [_resolve("momentum", momentum, length[0])] * n
        self._wd_schedule: Any = None
        self.wd_ratios: list[float] | None = None
        if weight_decay is not None:
            if "weight_decay" not in optimizer.defaults:
                raise ValueError(
                    f"Scheduler: weight_decay= was given, but {type(optimizer).__name__} has no "
                    "'weight_decay' hyperparameter; pass weight_decay=None"
                )
            for group in groups:
                group.setdefault("initial_weight_decay", float(group["weight_decay"]))
            wds = [float(g["initial_weight_decay"]) for g in groups]
            nonzero = [w for w in wds if w != 0]
            if not nonzero:
                raise ValueError(
                    "Scheduler: weight_decay= was given, but every param group has "
                    "weight_decay 0 (groups with 0 are never touched); set weight_decay on "
                    "the groups to decay, or pass weight_decay=None"
                )
            length_fill = None if total_steps is None else {"steps": total_steps}
            self._wd_schedule = _resolve("weight_decay", weight_decay, length_fill)
            self.wd_ratios = [w / nonzero[0] for w in wds]
        self._setup_guard(guard, model, snapshot_every, snapshot_dir)
        self.last_epoch = 0
        self._step_count = 1
        self._last_lr = []
        _watch(optimizer)
        self._apply()

    def _setup_guard(self, guard: Any, model: Any, every: int, directory: Any) -> None:
        from lrkit.controllers import Guard

        inner = _find_guard(self._schedules, self.ratios is not None)
        if isinstance(guard, str):
            import lrkit

            guard = lrkit.parse(guard)
        if guard is not None:
            if not isinstance(guard, Guard):
                raise TypeError(
                    f"Scheduler: guard must be an lrkit.Guard or a 'guard(...)' spec, "
                    f"got {type(guard).__name__}: {guard!r}"
                )
            if guard.schedule is not None:
                raise ValueError(
                    f"Scheduler: guard= takes a guard without a schedule, got {guard}; "
                    "pass the schedule as the schedule argument"
                )
            if inner is not None:
                raise ValueError(
                    "Scheduler: the schedule is already a guard(...); do not pass guard= too"
                )
        self.guard: Any = guard if guard is not None else inner
        self._guard_outside = guard is not None
        self._snapshots: Snapshots | None = None
        #: ``(step, snapshot step)`` of each rollback this object made.
        self.rollback_steps: list[tuple[int, int]] = []
        if self.guard is None:
            if model is not None or directory is not None:
                raise ValueError(
                    "Scheduler: model= and snapshot_dir= are for a guard; pass "
                    "guard=lrkit.Guard(...) or a guard(...) schedule, or leave them out"
                )
            return
        if model is None:
            raise ValueError(
                "Scheduler: a guard needs model= (the torch.nn.Module it rolls back when the "
                "loss diverges)"
            )
        self._snapshots = _snapshots(model, self.optimizer, every, directory)
        self.optimizer.register_step_pre_hook(_BeforeUpdate(self))

    # -- values ----------------------------------------------------------------

    def _lrs(self, t: int) -> list[float]:
        scale = self.guard.multiplier if self._guard_outside else 1.0
        if self.ratios is not None:
            value = _value_at(self._schedules[0], t) * scale
            return [value * r for r in self.ratios]
        return [_value_at(s, t) * scale for s in self._schedules]

    def _apply(self) -> None:
        t = self.last_epoch
        self._last_lr = self._lrs(t)
        groups = self.optimizer.param_groups
        for group, lr in zip(groups, self._last_lr, strict=True):
            _set(group, "lr", lr)
        if self._momentum_schedules is not None:
            for group, s in zip(groups, self._momentum_schedules, strict=True):
                m = _value_at(s, t)
                if self.use_beta1:
                    group["betas"] = (m, *group["betas"][1:])
                else:
                    _set(group, "momentum", m)
        if self._wd_schedule is not None and self.wd_ratios is not None:
            wd = _value_at(self._wd_schedule, t)
            for group, r in zip(groups, self.wd_ratios, strict=True):
                if r != 0:
                    _set(group, "weight_decay", wd * r)

    def _controllers(self) -> list[Any]:
        out = []
        for s in [*self._schedules, *(self._momentum_schedules or []), self._wd_schedule]:
            if s is not None and not isinstance(s, _core.Schedule) and s not in out:
                out.append(s)
        return out

    def _metric_controllers(self) -> list[Any]:
        """The controllers a metric goes to: all but guards (a guard's inner controller does)."""
        from lrkit.controllers import Guard

        out = []
        for c in self._controllers():
            if isinstance(c, Guard):
                c = c.schedule
                if isinstance(c, _core.Schedule):
                    continue
            out.append(c)
        return out

    # -- the guard ---------------------------------------------------------------

    def _before_update(self) -> None:
        snaps = self._snapshots
        if snaps is not None and snaps.due(self.last_epoch):
            snaps.take(self.last_epoch)

    def snapshot(self) -> None:
        """Take a snapshot of model and optimizer now and keep it as the last good one."""
        if self._snapshots is None:
            raise ValueError("Scheduler: snapshot() needs a guard (guard= or a guard(...) spec)")
        self._snapshots.keep(self.last_epoch)

    def cut(self) -> bool:
        """Cut the lr by the guard's factor now, as a rollback does, but keep the weights.

        What :class:`lrkit.torch.Monitor` asks for when its live diagnosis
        says the lr is too high. The cut counts as one of the guard's
        rollbacks (the multiplier is ``factor ** rollbacks``) and is kept in
        :meth:`state_dict`.

        Returns:
            True, or False when the guard has no rollback left (nothing changes).

        Raises:
            ValueError: this scheduler has no guard.
        """
        if self.guard is None:
            raise ValueError("Scheduler: cut() needs a guard (guard= or a guard(...) spec)")
        if self.guard.rollbacks >= self.guard.max_rollbacks:
            return False
        self.guard.rollbacks += 1
        self._apply()
        return True

    def _watch_loss(self, loss: float, t: int) -> bool:
        """Feed the guard; on a divergence roll back and return True."""
        snaps = self._snapshots
        if snaps is None:
            return False
        if not self.guard.observe(loss, t):
            snaps.confirm()
            return False
        self.rollback_steps.append((t, snaps.restore()))
        return True

    # -- public API ------------------------------------------------------------

    def step(  # type: ignore[override]
        self, metric: SupportsFloat | None = None, *, loss: SupportsFloat | None = None
    ) -> None:
        """Move to the next step.

        Args:
            metric: goes to the Plateau/Adaptive controllers, measured at the
                step just finished (also positional, as Lightning passes it).
            loss: the training loss of the step just finished, for the guard
                (ignored without one). On a divergence model and optimizer
                are rolled back and the lr cut (see the class docstring).

        Raises:
            lrkit.Diverged: the guard found more than ``max_rollbacks`` divergences.
        """
        if len(self.optimizer.param_groups) != len(self.base_lrs):
            raise ValueError(
                f"Scheduler: the optimizer has {len(self.optimizer.param_groups)} param groups, "
                f"{len(self.base_lrs)} when this Scheduler was built: a group was added with "
                "add_param_group() since; build the Scheduler after adding every group (its "
                "load_state_dict() carries the step over)"
            )
        if self._step_count == 1 and _stepped_out_of_order_or_replaced(self.optimizer):
            _warn_order(self)
        t = self.last_epoch
        rolled_back = False
        if self._snapshots is not None:
            if loss is None:
                if not self._keep_unchecked:
                    self._snapshots.drop_pending()  # its weights' loss was never checked
            else:
                rolled_back = self._watch_loss(_as_loss(loss), t)
        if metric is not None and not rolled_back:
            for c in self._metric_controllers():
                c.observe(float(metric), t)
        self._step_count += 1
        self.last_epoch += 1
        self._apply()
        if not self._end_warned and self._end is not None and self.last_epoch > self._end:
            self._warn_past_end()

    def _first_end(self) -> int | None:
        """The earliest end among the lr plans that end (kept, so step() compares one int)."""
        ends = [p.length for p in map(_plan_of, self._schedules) if p is not None]
        known = [e for e in ends if e is not None]
        return min(known) if known else None

    def _warn_past_end(self) -> None:
        """Say once when the step passes the end of a schedule that ends (its lr then stays)."""
        for s in self._schedules:
            plan = _plan_of(s)
            end = None if plan is None else plan.length
            if end is not None and self.last_epoch > end:
                self._end_warned = True
                warnings.warn(
                    f"Scheduler: step {self.last_epoch} is past the end of {plan} (it ends at "
                    f"step {end}); the lr stays at its last value {_value_at(s, end):g}. "
                    "Stepping per batch a plan made per epoch? Give the schedule the number of "
                    "steps you take: Scheduler(optimizer, spec, total_steps=epochs * "
                    "len(loader))",
                    UserWarning,
                    stacklevel=3,
                )
                return

    def __repr__(self) -> str:
        plans = ", ".join(f"'{s}'" for s in self._schedules)
        return (
            f"Scheduler({type(self.optimizer).__name__}, {plans}, step={self.last_epoch}, "
            f"lr={[float(f'{x:.6g}') for x in self._last_lr]})"
        )

    def observe(self, metric: SupportsFloat) -> None:
        """Hand ``metric`` to the Plateau/Adaptive controllers at the current step.

        Unlike ``step(metric)`` the step does not advance; a cut applies at
        once (e.g. a validation loss measured at an epoch's end).
        """
        for c in self._metric_controllers():
            c.observe(float(metric), self.last_epoch)
        self._apply()

    def replan(self, steps: int, at: int | None = None) -> None:
        """Change the lr plan mid-run: every lr schedule becomes ``schedule.replan(steps, at)``.

        The lr is continuous at ``at`` and the plan ends where asked; a
        controller (Plateau, Adaptive, a guard's schedule) replans the
        schedule it wraps and keeps its factor. :meth:`state_dict` keeps the
        new plan, so a resume runs it. Momentum and weight-decay schedules
        are left as they are.

        Args:
            steps: where the new plan ends (its total length).
            at: the step from which it changes (default: the current step).

        Raises:
            ValueError: ``at`` is negative, or the schedule cannot be replanned
                there (the schedule's own message).
        """
        at = self.last_epoch if at is None else at
        if isinstance(at, bool) or not isinstance(at, int) or at < 0:
            raise ValueError(f"Scheduler.replan: at must be an integer >= 0, got {at!r}")
        for i, s in enumerate(self._schedules):
            if not callable(getattr(s, "replan", None)):
                raise TypeError(f"Scheduler.replan: {s!r} cannot be replanned (no replan method)")
            if isinstance(s, _core.Schedule):
                self._schedules[i] = s.replan(steps, at)
            else:
                s.replan(steps, at)
        self._end = self._first_end()
        self._apply()

    def get_last_lr(self) -> list[float]:  # type: ignore[override]  # torch types lrs as float | Tensor; lrkit's are floats
        """The lrs set last, one per param group."""
        return list(self._last_lr)

    def get_lr(self) -> list[float]:  # type: ignore[override]  # torch types lrs as float | Tensor; lrkit's are floats
        """The lrs for the current step (the same as :meth:`get_last_lr`)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the step count, the group ratios, the plans, controllers' and guard's states.

        Only numbers, strings, lists and dicts, so ``torch.load(weights_only=True)``
        reads it; the guard's snapshots are not part of it.
        """
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "base_lrs": list(self.base_lrs),
            "ratios": None if self.ratios is None else list(self.ratios),
            "wd_ratios": None if self.wd_ratios is None else list(self.wd_ratios),
            "_last_lr": list(self._last_lr),
            "schedules": [str(s) for s in self._schedules],
            "controllers": [c.state_dict() for c in self._controllers()],
            "guard": self.guard.state_dict() if self._guard_outside else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the plans included) and write that step's values.

        A guard's snapshots are dropped: the next one is taken before the next update.

        Raises:
            ValueError: A state this class did not save (a torch scheduler's, say), or
                one saved for other groups, controllers or guard.
        """
        if not isinstance(state_dict, dict) or "schedules" not in state_dict:
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict)
            raise ValueError(
                f"Scheduler: this state was not saved by lrkit.torch.Scheduler (keys: {keys}); "
                "a torch scheduler's state loads into lrkit's drop-in of the same name "
                "(lrkit.torch.CosineAnnealingLR, ...), not into the driver"
            )
        n = len(self.optimizer.param_groups)
        ratios = state_dict.get("ratios")
        if (ratios is None) != (self.ratios is None) or (ratios is not None and len(ratios) != n):
            raise ValueError(
                "Scheduler: the state was saved with "
                f"{'one schedule per group' if ratios is None else f'{len(ratios)} group ratios'}"
                f", this scheduler has {'one per group' if self.ratios is None else n}"
            )
        controllers = self._controllers()
        saved = state_dict.get("controllers", [])
        if len(saved) != len(controllers):
            raise ValueError(
                f"Scheduler: the state has {len(saved)} controller states, "
                f"this scheduler has {len(controllers)} controllers"
            )
        guard_state = state_dict.get("guard")
        if (guard_state is not None) != self._guard_outside:
            raise ValueError(
                "Scheduler: the state was saved "
                f"{'with' if guard_state is not None else 'without'} guard=, this scheduler "
                f"has {'one' if self._guard_outside else 'none'}"
            )
        self._load_plans(state_dict.get("schedules"))
        for c, s in zip(controllers, saved, strict=True):
            c.load_state_dict(s)
        if guard_state is not None:
            self.guard.load_state_dict(guard_state)
        if self._snapshots is not None:
            self._snapshots.clear()
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", 2))
        self.base_lrs = [float(v) for v in state_dict.get("base_lrs", self.base_lrs)]
        self.ratios = None if ratios is None else [float(r) for r in ratios]
        wd = state_dict.get("wd_ratios")
        if wd is not None and self.wd_ratios is not None:
            self.wd_ratios = [float(r) for r in wd]
        self._apply()

    def _load_plans(self, specs: Any) -> None:
        """Take the saved lr schedules (a replanned run resumes on its new plan)."""
        if specs is None:
            return
        if len(specs) != len(self._schedules):
            raise ValueError(
                f"Scheduler: the state has {len(specs)} schedules, "
                f"this scheduler has {len(self._schedules)}"
            )
        import lrkit

        for i, (s, spec) in enumerate(zip(self._schedules, specs, strict=True)):
            if isinstance(s, _core.Schedule) and spec != str(s):
                self._schedules[i] = lrkit.parse(spec)
        self._end = self._first_end()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_end" not in state:  # pickled by an lrkit without the end-of-plan warning
            self._end_warned = False
            self._end = self._first_end()
        _watch(self.optimizer)
