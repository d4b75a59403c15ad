"""The torch side of :class:`lrkit.Trial`: the grid's optimizer, watched, and lrkit's driver.

:func:`make_optimizer` builds the grid's optimizer and registers two step
hooks on it, so that any training loop, the user's or a built-in task's,
records the same things without calling anything: before each update the
step size it uses (``d * lr`` for Prodigy / D-Adaptation), at the 16
evaluation points the update-to-weight ratio ``||w_{t+1} - w_t|| / ||w_t||``,
and the size of the optimizer's state in copies of the weights
(:func:`lrkit.torch.optimizer_state_size`), measured after the first update
and again at those points (state created later, for a parameter whose first
gradient came late, is counted too; the last measure is kept).

:func:`make_scheduler` returns a :class:`lrkit.torch.Scheduler` that also
takes the training loss from ``trial.log(step, loss=...)`` for a
``guard(...)`` schedule, whether the task logs before or after
``scheduler.step()``.

With a ``swa(...)`` schedule (stochastic weight averaging), :func:`make_scheduler`
also keeps a ``torch.optim.swa_utils.AveragedModel`` of the model
(:class:`Averager`): a step post-hook on the optimizer folds the weights into
the average after every update from the schedule's start step on (one SAM
step is one update), and :meth:`Averager.eval_module` hands out the averaged
module, after ``update_bn``, for evaluation (``trial.eval_model``).
"""

from __future__ import annotations

import math
import time
import warnings
from typing import TYPE_CHECKING, Any

import torch

from lrkit.bench.optimizers import get_optimizer
from lrkit.torch import Scheduler, optimizer_state_size

if TYPE_CHECKING:
    from lrkit.bench.trial import Trial

__all__ = ["Averager", "TrialScheduler", "make_optimizer", "make_scheduler"]


class _Watch:
    """Step hooks: the lr of each update; ``||dw|| / ||w||`` and the state's size at some."""

    def __init__(self, trial: Trial, optimizer: torch.optim.Optimizer) -> None:
        self.result = trial._result
        self.started = trial._started
        self.measure = trial._measure
        self.spec = get_optimizer(trial.optimizer_name)
        self.optimizer = optimizer
        self.updates = 0
        self.before: list[torch.Tensor] | None = None

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.updates == 0:
            self.result.build_time = time.perf_counter() - self.started
        self.result.lr.append(self.spec.effective_lr(self.optimizer))
        if self.updates in self.measure:
            self.before = [p.detach().clone() for p in self._params()]

    def post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        before, self.before = self.before, None
        if before is not None:
            with torch.no_grad():
                params = self._params()
                delta = math.sqrt(
                    sum(float((p - b).pow(2).sum()) for p, b in zip(params, before, strict=True))
                )
                norm = math.sqrt(sum(float(b.pow(2).sum()) for b in before))
            self.result.ratio_steps.append(self.updates)
            self.result.update_ratio.append(delta / norm if norm > 0 else math.inf)
        if self.updates == 0 or self.updates in self.measure:
            size = optimizer_state_size(self.optimizer)
            self.result.state_copies = size.copies
            self.result.state_bytes = size.state_bytes
            self.result.state_kinds = dict(size.per_kind)
        self.updates += 1


def make_optimizer(trial: Trial, params: Any) -> torch.optim.Optimizer:
    """The grid's optimizer over ``params`` at the trial's group lr, watched by the run."""
    spec = get_optimizer(trial.optimizer_name)
    optimizer = spec.create(params, trial._config.group_lr)
    if not trial._optimizers:  # the first optimizer is the one the run records
        watch = _Watch(trial, optimizer)
        optimizer.register_step_pre_hook(watch.pre)
        optimizer.register_step_post_hook(watch.post)
    return optimizer


class TrialScheduler(Scheduler):
    """:class:`lrkit.torch.Scheduler` that takes a guard's loss from ``trial.log``.

    A loss logged *before* ``step()`` is used by that ``step()``; one logged
    *after* it (for the step just finished) is checked at once, and a
    rollback then re-applies the cut lr.
    """

    _keep_unchecked = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._logged_loss: float | None = None
        # A spec shorter than the run holds its end value: the report's lr plot shows it,
        # a warning from each worker would only scroll the progress away.
        self._end_warned = True

    def step(  # type: ignore[override]
        self, metric: Any = None, *, loss: Any = None
    ) -> None:
        if loss is None and self._logged_loss is not None:
            loss, self._logged_loss = self._logged_loss, None
        super().step(metric, loss=loss)

    def _trial_loss(self, loss: float, step: int) -> None:
        if step == self.last_epoch:
            self._logged_loss = loss
        elif step == self.last_epoch - 1:
            if self._watch_loss(loss, step):
                self._apply()
        else:
            raise ValueError(
                f"trial.log: loss of step {step} arrived while the scheduler is at step "
                f"{self.last_epoch}; log each step's loss just before or just after "
                "scheduler.step()"
            )


class Averager:
    """Stochastic weight averaging of ``model`` from update ``start`` on (torch's own classes).

    Keeps a ``torch.optim.swa_utils.AveragedModel`` (an equal-weight running
    mean of the weights; buffers are not averaged, ``update_bn`` recomputes
    BatchNorm statistics) and, as a step post-hook of the optimizer, folds
    the model into it after each update whose step (the scheduler's, so a
    resumed run goes on right) is ``start`` or later. :func:`make_scheduler`
    builds the ``AveragedModel``; under a guard its snapshots hold the average
    too, so a rollback takes the average back with the weights.

    Attributes:
        model: The module trained.
        averaged: The ``AveragedModel``; ``averaged.n_averaged`` counts the
            updates averaged.
        start: The first update averaged.
    """

    def __init__(
        self, model: torch.nn.Module, averaged: Any, start: int, scheduler: Scheduler
    ) -> None:
        self.model = model
        self.averaged = averaged
        self.start = start
        self._scheduler = scheduler
        # (n_averaged, step) when update_bn last ran: a guard's rollback can take the
        # average back to an earlier count, so the count alone does not name it
        self._bn_done: tuple[int, int] | None = None

    @property
    def n_averaged(self) -> int:
        """How many updates the average holds (0 before ``start``)."""
        return int(self.averaged.n_averaged)

    def post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """The optimizer's step post-hook: average the weights of the update just made."""
        if self._scheduler.last_epoch >= self.start:  # the step of the update just made
            self.averaged.update_parameters(self.model)

    def eval_module(self, loader: Any = None) -> torch.nn.Module:
        """The module to evaluate: the averaged one once averaging began, else ``model``.

        The averaged module gets ``torch.optim.swa_utils.update_bn(loader,
        ...)`` first (once per new average; it returns at once for a model
        without BatchNorm) and the training mode of ``model``.

        Raises:
            ValueError: The model has BatchNorm and no ``loader`` was given.
        """
        from torch.optim.swa_utils import update_bn

        n = self.n_averaged
        if n == 0:
            return self.model
        module: torch.nn.Module = self.averaged.module
        done = (n, self._scheduler.last_epoch)
        if self._bn_done != done:
            norms = torch.nn.modules.batchnorm._BatchNorm
            if loader is None and any(isinstance(m, norms) for m in module.modules()):
                raise ValueError(
                    "trial.eval_model: the model has BatchNorm, whose statistics must be "
                    "recomputed for the averaged weights: pass the training data, "
                    "trial.eval_model(model, loader) (batches whose first item is the input)"
                )
            update_bn(() if loader is None else loader, self.averaged)
            self._bn_done = done
        module.train(self.model.training)
        return module


def make_scheduler(
    trial: Trial, optimizer: torch.optim.Optimizer, model: Any = None, **kwargs: Any
) -> Scheduler:
    """The driver of ``optimizer`` on ``trial.schedule``.

    ``model`` is needed for a guard (it rolls the model back) and for
    ``swa(...)`` (it averages the model's weights: :class:`Averager`, kept
    as ``trial._averager``).
    """
    from lrkit.controllers import Guard
    from lrkit.schedules import swa_start

    schedule = trial._schedule
    guarded = isinstance(schedule, Guard)
    if guarded and model is None:
        raise ValueError(
            f"trial.scheduler: the schedule {schedule} has a guard, which rolls the "
            "model back: call trial.scheduler(optimizer, model=model)"
        )
    start = swa_start(schedule)
    if start is not None and not isinstance(model, torch.nn.Module):
        raise ValueError(
            f"trial.scheduler: the schedule {schedule} averages the weights (SWA) from "
            f"step {start} on: call trial.scheduler(optimizer, model=model) with the "
            f"torch module trained, got model={model!r}, and evaluate "
            "trial.eval_model(model)"
        )
    averaged = None
    rolled_back = model
    if start is not None:
        from torch.optim.swa_utils import AveragedModel

        averaged = AveragedModel(model)
        if guarded:
            # A rollback restores the average with the weights: the updates it undoes
            # leave the average too, and a diverged update's NaN never stays in it.
            rolled_back = torch.nn.ModuleList([model, averaged])
    with warnings.catch_warnings():
        # The trial built the optimizer at the run's lr: the schedule is the truth here.
        warnings.filterwarnings("ignore", message="Scheduler: the schedule's lr is")
        scheduler = TrialScheduler(
            optimizer, schedule, model=rolled_back if guarded else None, **kwargs
        )
    if start is not None:
        averager = Averager(model, averaged, start, scheduler)
        optimizer.register_step_post_hook(averager.post)
        trial._averager = averager
    return scheduler
