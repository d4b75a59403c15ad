"""One run: its typed configuration with its key, its result, and its execution.

A :class:`RunConfig` names a task (a built-in name, ``file.py:name`` or
``module:name``; see :func:`lrkit.bench.trial.load_task`), an optimizer, a
schedule spec, a learning rate, a seed and a budget scale. Everything derived
from it (the task, the step budget, the filled schedule, the identity and
the key) is computed once and cached. Its :meth:`~RunConfig.key` is the
sha256 of a canonical JSON of what determines the run's numbers: the task's
identity (built-ins: name and version, and for ``charlm`` the hash of the
text it read; user tasks: name, source file hash and version), the
effective step budget and batch size, the optimizer, the schedule with
``lr`` and ``steps`` filled in, and the seed. Two configs that run the same
thing share a key; a changed task or budget gives a new one.

:func:`execute` runs one config in the current process: it builds a
:class:`~lrkit.bench.trial.Trial`, calls the task with it and returns a
:class:`RunResult` of plain, JSON-ready data: per-update lr (the effective
step size, ``d * lr`` for Prodigy / D-Adaptation) and train loss, the
reported metric values, the update-to-weight ratio at 16 points, other
logged scalars, the wall time and the status:

- ``"ok"``: the task returned a finite metric;
- ``"rescued"``: a ``guard(...)`` schedule rolled the run back at least once
  and it finished (its ``final`` counts like an ok run's);
- ``"diverged"``: the training loss or a reported metric went NaN/inf (or,
  on the built-in tasks, spiked: :data:`BENCH_RULE`), a guard gave up, or
  the final metric is NaN/inf;
- ``"pruned"``: a tuner stopped it (:class:`lrkit.Pruned`);
- ``"error"``: the task raised; the type, message and traceback are kept.

The same config gives the same numbers.

Examples:
    >>> from lrkit.bench.run import RunConfig
    >>> config = RunConfig("quadratic", "sgd", "constant()", lr=0.1, seed=0)
    >>> config.steps, config.filled_schedule
    (200, 'constant(lr=0.1)')
    >>> len(config.key())
    64
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import os
import platform
import random
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lrkit.bench.optimizers import get_optimizer
from lrkit.bench.trial import Pruned, Task, Trial, load_task, register_task
from lrkit.controllers import Diverged, Guard
from lrkit.divergence import DivergenceRule
from lrkit.schedules import Schedule
from lrkit.spec import parse

if TYPE_CHECKING:
    from lrkit.monitor import Record

__all__ = [
    "BENCH_RULE",
    "FINISHED",
    "RUN_FORMAT",
    "STATUSES",
    "RunConfig",
    "RunResult",
    "eval_steps",
    "execute",
    "execute_dict",
    "observe_every",
    "warm_up",
]

#: Bumped whenever :func:`execute` changes what it records or how it trains.
RUN_FORMAT = 1

#: Guarded runs (a ``guard(...)`` spec) are driven by :class:`lrkit.torch.Scheduler`'s
#: guard since user tasks came; their keys carry this so older guarded runs are re-run.
GUARD_FORMAT = 2

#: How many validation points a run records (step 0 and the last included).
N_EVALS = 16

STATUSES = ("ok", "rescued", "diverged", "pruned", "error")

#: Statuses of runs that trained to the end (a rescued run was saved by a guard).
FINISHED = ("ok", "rescued")

#: How often a ``guard(...)`` run of a built-in task keeps a snapshot (steps).
SNAPSHOT_EVERY = 10

#: The built-in tasks' divergence rule: SPEC's spike 4.0 over a window of 20,
#: and a spike must also exceed the starting level, so minibatch noise near
#: zero loss is not mistaken for a blow-up.
BENCH_RULE = DivergenceRule(spike=4.0, window=20, above_start=True)


@dataclass(frozen=True)
class RunConfig:
    """What one run trains: task, optimizer, schedule, lr, seed, budget.

    Args:
        task: A task reference (a built-in name, ``path/to/file.py:name``,
            ``package.module:name``) or an ``@lrkit.task`` function (kept as
            its reference; a function defined inside another one runs only
            in this process).
        optimizer: An optimizer name from
            :data:`lrkit.bench.optimizers.OPTIMIZERS`, or ``sam(NAME, ...)``
            (kept in its canonical form).
        schedule: An lrkit schedule spec; ``lr`` and ``steps`` may be left
            out (``"cosine()"``): they are filled with the group lr and the
            budget. Ignored by optimizers with their own rule (Schedule-Free).
        lr: The lr the run uses (a spec that sets its own lr: that lr); for
            LR-free optimizers, the multiplier of their own default lr.
        seed: Seeds model initialisation and batch order.
        budget: Scales the task's step budget.
        batch_size: Samples per step (``--batch-sizes``): the task reads it
            as ``trial.batch_size``; ``None`` leaves the task's own (a
            built-in task's default, which is also what its key holds, so
            ``batch_size=64`` on ``digits`` is the default run).

    Raises:
        ValueError: If a name is unknown or a number out of range
            (:class:`~lrkit.bench.trial.TaskLoadError` for the task).
    """

    task: str
    optimizer: str
    schedule: str = "constant()"
    lr: float = 1e-3
    seed: int = 0
    budget: float = 1.0
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.task, Task):
            register_task(self.task)
            object.__setattr__(self, "task", self.task.ref)
        load_task(self.task)
        # The canonical name (sam(...) forms normalized): equal settings share a key.
        object.__setattr__(self, "optimizer", get_optimizer(self.optimizer).name)
        load_task(self.task).check_optimizer(self.optimizer)  # a sklearn task takes sgd only
        if not isinstance(self.schedule, str) or not self.schedule.strip():
            raise ValueError(
                f"run: schedule must be a non-empty spec string, got {self.schedule!r}"
            )
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, int | float):
            raise ValueError(f"run: lr must be a finite number > 0, got {lr!r}")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"run: lr must be a finite number > 0, got {lr!r}")
        object.__setattr__(self, "lr", float(lr))
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"run: seed must be an integer >= 0, got {seed!r}")
        self.task_object.budget(self.budget)  # checks the scale
        object.__setattr__(self, "budget", float(self.budget))
        batch = self.batch_size
        if batch is not None:
            if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
                raise ValueError(f"run: batch_size must be an integer >= 1, got {batch!r}")
            if not self.task_object.batched:
                raise ValueError(
                    f"run: task {self.task_object.name!r} has no batches (its gradient is "
                    "exact): it takes no batch size"
                )

    @functools.cached_property
    def task_object(self) -> Task:
        """The :class:`~lrkit.bench.trial.Task` the reference names."""
        return load_task(self.task)

    @functools.cached_property
    def steps(self) -> int:
        """The effective step budget: the task's budget times ``budget``."""
        return self.task_object.budget(self.budget)

    @property
    def effective_batch_size(self) -> int | None:
        """The batch size the run trains at: its own, else the task's (``None``: unknown)."""
        return self.batch_size if self.batch_size is not None else self.task_object.batch_size

    @property
    def group_lr(self) -> float:
        """The lr the schedule is filled with (multiplier x base for LR-free)."""
        return get_optimizer(self.optimizer).group_lr(self.lr)

    @property
    def schedule_spec(self) -> str:
        """The spec actually run: the optimizer's own rule, if it has one."""
        own = get_optimizer(self.optimizer).own_schedule
        return own if own is not None else self.schedule

    @functools.cached_property
    def filled_schedule(self) -> str:
        """The spec run, with ``lr`` and ``steps`` filled in (parsed once).

        Raises:
            ValueError: If the spec does not parse.
        """
        return str(parse(self.schedule_spec, lr=self.group_lr, steps=self.steps))

    def schedule_object(self) -> Schedule:
        """A fresh schedule or controller of :attr:`filled_schedule` (controllers keep state)."""
        return parse(self.filled_schedule)

    @functools.cached_property
    def _identity(self) -> dict[str, Any]:
        task = self.task_object
        ident: dict[str, Any] = {
            "format": RUN_FORMAT,
            "task": task.identity(),
            "steps": self.steps,
            "batch_size": self.effective_batch_size,
            "optimizer": self.optimizer,
            "schedule": self.filled_schedule,
            "seed": self.seed,
        }
        if self.filled_schedule.startswith("guard("):
            ident["guard_format"] = GUARD_FORMAT
        return ident

    def identity(self) -> dict[str, Any]:
        """Return what determines this run's numbers, as plain data.

        The grid's lr and the budget scale appear only through what they
        change: the filled schedule and the effective step count.
        """
        return dict(self._identity)

    @functools.cached_property
    def _key(self) -> str:
        text = json.dumps(self._identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def key(self) -> str:
        """Return the sha256 hex digest of the canonical JSON of :meth:`identity`."""
        return self._key

    def to_dict(self) -> dict[str, Any]:
        """Return the config as JSON-ready plain data (``batch_size`` only when set)."""
        data: dict[str, Any] = {
            "task": self.task,
            "optimizer": self.optimizer,
            "schedule": self.schedule,
            "lr": self.lr,
            "seed": self.seed,
            "budget": self.budget,
        }
        if self.batch_size is not None:
            data["batch_size"] = self.batch_size
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Rebuild a config from :meth:`to_dict`'s output."""
        return cls(**data)


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class RunResult:
    """What one run recorded; plain data, JSON-ready through :meth:`to_dict`.

    Attributes:
        key: The config's :meth:`RunConfig.key` (``""`` if it could not be made).
        config: The :class:`RunConfig` as a dict.
        identity: What the key hashes (empty if it could not be made).
        status: ``"ok"``, ``"rescued"``, ``"diverged"``, ``"pruned"`` or ``"error"``.
        metric: The task's metric name; ``mode`` its direction; ``target``
            the task's target (``None`` if it has none).
        steps: The step budget; ``steps_done`` how many steps were logged.
        lr: The effective step size used by each update.
        loss: The training loss of each step.
        eval_steps: Steps at which the metric was reported.
        evals: Reported values by metric name, one per entry of ``eval_steps``.
        ratio_steps: Updates at which ``||dw|| / ||w||`` was measured.
        update_ratio: Those ratios.
        final: The metric the task returned (``None`` unless the status is
            ``"ok"`` or ``"rescued"``).
        best: The best metric seen at any report.
        steps_to_target: The first reported step that met the target.
        diverged_at: The step at which the divergence was found.
        reason: Why it diverged, was pruned or failed (``Type: message``).
        wall_time: Seconds for the whole run, build included.
        build_time: Seconds before the first update.
        env: Versions of Python and torch.
        rollbacks: The steps at which a ``guard(...)`` rolled the run back.
        scalars: Other values given to ``trial.log``: name -> ``[[step, value], ...]``.
        traceback: The task's traceback, for ``"error"``.
        pruned_at: The step of the report at which a tuner pruned the run.
        task: The task's display name.
        state_copies: The optimizer's state in copies of the weights (its
            bytes / the parameters' bytes: SGD 0, momentum 1, Adam 2),
            measured from its tensors by :func:`lrkit.torch.optimizer_state_size`
            after the first update and at the evaluation points, the last
            measure kept; ``None`` for a run without a watched torch
            optimizer, or stored before lrkit recorded it.
        state_bytes: The optimizer state's bytes at that measure.
        state_kinds: Those bytes by state key (``exp_avg``, ``momentum_buffer``, ...).
    """

    key: str
    config: dict[str, Any]
    identity: dict[str, Any]
    status: str
    metric: str
    mode: str
    target: float | None
    steps: int
    steps_done: int = 0
    lr: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    evals: dict[str, list[float]] = field(default_factory=dict)
    ratio_steps: list[int] = field(default_factory=list)
    update_ratio: list[float] = field(default_factory=list)
    final: float | None = None
    best: float | None = None
    steps_to_target: int | None = None
    diverged_at: int | None = None
    reason: str | None = None
    wall_time: float = 0.0
    build_time: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    rollbacks: list[int] = field(default_factory=list)
    scalars: dict[str, list[list[float]]] = field(default_factory=dict)
    traceback: str | None = None
    pruned_at: int | None = None
    task: str = ""
    state_copies: float | None = None
    state_bytes: int | None = None
    state_kinds: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.task:
            self.task = str(self.config.get("task", ""))

    @property
    def finished(self) -> bool:
        """Whether the run trained to the end (status ``"ok"`` or ``"rescued"``)."""
        return self.status in FINISHED

    def record(self) -> Record:
        """The run as a Monitor record (:mod:`lrkit.monitor`), for :func:`lrkit.diagnosis.diagnose`.

        ``lr/group0`` and ``loss`` at every step, ``update_ratio/group0``
        (the whole model's ratio) where it was measured. The loss that made a
        run ``diverged`` is not among its stored losses (the run stopped
        there): the record gets it at ``diverged_at`` as NaN when the reason
        was a NaN, else as inf (an infinite loss, or a spike the bench rule
        caught).
        """
        from lrkit.monitor import Record

        record = Record()
        ratios = dict(zip(self.ratio_steps, self.update_ratio, strict=False))
        for step in range(max(len(self.lr), len(self.loss))):
            values: dict[str, float | None] = {}
            if step < len(self.lr):
                values["lr/group0"] = self.lr[step]
            if step < len(self.loss):
                values["loss"] = self.loss[step]
            values["update_ratio/group0"] = ratios.get(step)
            record.add(step, values)
        stopped = self.stopping_loss()
        if stopped is not None:
            record.add(stopped[0], {"loss": stopped[1]})
        return record

    def stopping_loss(self) -> tuple[int, float] | None:
        """``(diverged_at, NaN or inf)``: the loss that stopped a diverged run (not in ``loss``).

        NaN when the reason was a NaN, else inf (an infinite loss, or a spike
        the bench rule caught); None for a run that did not diverge, or whose
        curve already holds that step.
        """
        at = self.diverged_at
        if self.status != "diverged" or at is None or at < len(self.loss):
            return None
        return at, math.nan if (self.reason or "").startswith("nan") else math.inf

    def to_dict(self) -> dict[str, Any]:
        """Return the result as strict-JSON data (non-finite floats -> ``None``)."""
        data = asdict(self)
        data["lr"] = [_finite_or_none(v) for v in self.lr]
        data["loss"] = [_finite_or_none(v) for v in self.loss]
        data["evals"] = {k: [_finite_or_none(v) for v in vs] for k, vs in self.evals.items()}
        data["update_ratio"] = [_finite_or_none(v) for v in self.update_ratio]
        data["scalars"] = {
            k: [[s, _finite_or_none(v)] for s, v in vs] for k, vs in self.scalars.items()
        }
        for name in ("final", "best", "state_copies"):
            data[name] = _finite_or_none(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """Rebuild a result from :meth:`to_dict`'s output (``None`` -> NaN in curves)."""
        data = dict(data)
        data.pop("diagnosis", None)  # results.json adds it; it is made from the curves
        nan = math.nan
        data["lr"] = [nan if v is None else v for v in data.get("lr", [])]
        data["loss"] = [nan if v is None else v for v in data.get("loss", [])]
        data["evals"] = {
            k: [nan if v is None else v for v in vs] for k, vs in data.get("evals", {}).items()
        }
        data["update_ratio"] = [nan if v is None else v for v in data.get("update_ratio", [])]
        data["scalars"] = {
            k: [[s, nan if v is None else v] for s, v in vs]
            for k, vs in data.get("scalars", {}).items()
        }
        return cls(**data)


def warm_up() -> None:
    """Pay torch's one-off start-up costs now (import, first optimizer).

    The first ``torch.optim`` optimizer a process creates triggers seconds
    of lazy imports; a worker calls this once so that no run's wall time
    includes them.
    """
    import torch

    torch.set_num_threads(1)
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    weight.sum().backward()
    optimizer.step()


def eval_steps(steps: int, n: int = N_EVALS) -> list[int]:
    """Return up to ``n`` evenly spaced evaluation steps in ``[0, steps]``.

    Step ``k`` means "after ``k`` updates"; 0 and ``steps`` are always in.

    Examples:
        >>> eval_steps(300)[:4], eval_steps(300)[-1]
        ([0, 20, 40, 60], 300)
        >>> eval_steps(3)
        [0, 1, 2, 3]
    """
    if n < 2:
        raise ValueError(f"eval_steps: n must be >= 2, got {n}")
    return sorted({round(i * steps / (n - 1)) for i in range(n)})


def observe_every(steps: int) -> int:
    """Steps per observation for ``plateau``/``adaptive`` in a run of ``steps``: ~30 a run.

    Examples:
        >>> observe_every(300), observe_every(200), observe_every(10)
        (10, 6, 1)
    """
    return max(1, steps // 30)


def _seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and (when installed) torch's global generators."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)
        torch.manual_seed(seed)


def _torch_version() -> str:
    torch = sys.modules.get("torch")
    return str(torch.__version__) if torch is not None else ""


def execute(
    config: RunConfig,
    *,
    on_report: Callable[[int, float], bool] | None = None,
    make_trial: Callable[..., Trial] | None = None,
) -> RunResult:
    """Run one config in this process and return what it recorded.

    Seeds Python's, numpy's and torch's generators with ``config.seed`` (and
    uses one torch thread), builds a :class:`~lrkit.bench.trial.Trial` and
    calls the task. Nothing the task raises escapes: it is recorded in the
    status (see the module docstring).

    Args:
        config: The run.
        on_report: Called with ``(step, value)`` at each ``trial.report``;
            returning True prunes the run (a tuner's pruner).
        make_trial: Builds the trial instead of :class:`~lrkit.bench.trial.Trial`
            (same arguments); population-based training passes a subclass.

    Returns:
        The :class:`RunResult`.
    """
    # An optimizer's package (pytorch-optimizer's import takes seconds) is imported
    # before the clock starts, so that no run's wall time pays for it.
    get_optimizer(config.optimizer).import_package()
    start = time.perf_counter()
    result = RunResult(
        key="",
        config=config.to_dict(),
        identity={},
        status="ok",
        metric="",
        mode="min",
        target=None,
        steps=0,
    )
    trial: Trial | None = None
    try:
        task = config.task_object
        result.task, result.metric, result.mode = task.name, task.metric, task.mode
        result.target, result.steps = task.target, config.steps
        result.identity = config.identity()
        result.key = config.key()
        _seed_everything(config.seed)
        trial = (make_trial or Trial)(config, result, on_report=on_report, started=start)
        value = task(trial)
        ignored = trial.ignored_schedule()
        if ignored is not None:
            raise ValueError(ignored)
        _finish(result, trial, value)
    except Pruned as exc:
        result.status, result.reason = "pruned", str(exc)
    except Diverged as exc:
        result.status, result.diverged_at = "diverged", exc.step
        result.reason = str(exc)
        rollbacks = _rollbacks(trial)
        if rollbacks:
            result.rollbacks = rollbacks
            result.reason += f" ({len(rollbacks)} rollbacks before it)"
    except Exception as exc:  # recorded, not raised: one bad run must not stop a grid
        result.status = "error"
        result.reason = f"{type(exc).__name__}: {exc}"
        result.traceback = traceback.format_exc()
    result.final = result.final if result.finished else None
    result.env = {
        "python": platform.python_version(),
        "torch": _torch_version(),
        "pid": str(os.getpid()),
    }
    result.wall_time = time.perf_counter() - start
    return result


def _rollbacks(trial: Trial | None) -> list[int]:
    scheduler = None if trial is None else trial._scheduler
    return [int(t) for t, _ in getattr(scheduler, "rollback_steps", [])]


def _finish(result: RunResult, trial: Trial, value: Any) -> None:
    """Record the task's return value as the final metric and set the status."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"the task returned {value!r}; it must return its final metric "
            f"({result.metric}) as a number"
        )
    final = float(value)
    if not math.isfinite(final):
        result.status = "diverged"
        result.diverged_at = result.steps_done
        result.reason = f"the final {result.metric} is {final}"
        return
    result.final = final
    end = max(result.steps_done, trial.steps)
    if not result.eval_steps or result.eval_steps[-1] < end:
        trial.report_final(end, final)
    rollbacks = _rollbacks(trial)
    if rollbacks:
        result.status, result.rollbacks = "rescued", rollbacks
        guard = trial._schedule
        multiplier = guard.multiplier if isinstance(guard, Guard) else 1.0
        result.reason = (
            f"rescued: {len(rollbacks)} rollback(s) at steps {rollbacks}; lr x {multiplier:g}"
        )


def execute_dict(data: dict[str, Any]) -> dict[str, Any]:
    """:func:`execute` on plain data: a config dict in, a result dict out (for workers)."""
    return execute(RunConfig.from_dict(data)).to_dict()
