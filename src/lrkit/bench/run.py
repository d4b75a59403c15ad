"""One benchmark run: its configuration, its stable key, and its execution.

A :class:`RunConfig` names a task, an optimizer, a schedule spec, a learning
rate, a seed and a budget scale. Its :meth:`~RunConfig.key` is the sha256 of
a canonical JSON of what determines the run's numbers: the task's identity
(name, version, and for ``charlm`` the hash of the text it read), the
effective step budget and batch size, the optimizer, the schedule with ``lr``
and ``steps`` filled in, and the seed. Two configs that run the same thing
share a key; a changed task version or budget gives a new one.

:func:`execute` runs one config in the current process and returns a
:class:`RunResult` of plain, JSON-ready data: per-step lr (the effective step
size, ``d * lr`` for Prodigy / D-Adaptation) and train loss, the validation
metrics at 16 evenly spaced steps (step 0 included), the update-to-weight
ratio ``||w_{t+1} - w_t|| / ||w_t||`` at the updates just before those
points, the wall time and the status: ``"ok"``, ``"diverged"`` (the step and
the reason, from :class:`lrkit.divergence.DivergenceRule`), ``"rescued"``
(a ``guard(...)`` spec rolled the run back at least once and it finished;
its ``final`` counts like an ok run's) or ``"error"`` (the exception's
message). The same config gives the same numbers.

The loop is deliberately thin: each step it sets every param group's lr to
``s(step) * ratio`` (``ratio`` = the group's lr over the first group's at
creation) and trains one batch.

Controllers in a spec (``lrkit.parse`` names them):

- ``plateau(...)`` and ``adaptive(...)`` observe the mean training loss of
  each block of :func:`observe_every` steps (minibatch losses are too noisy
  for patience counted in steps), at the block's last step.
- ``guard(schedule, ...)`` turns on rollback: the train loss of each step
  goes to the guard *before* the update; a divergence skips that update,
  restores model and optimizer from the last good snapshot (taken before an
  update whose loss passed, every :data:`SNAPSHOT_EVERY` steps) and the lr
  is multiplied by the guard's factor; the step counter and the batches go
  on. A non-finite validation metric is a divergence too. A guarded run
  that needed a rollback and finished has status ``"rescued"`` and lists
  the steps in ``rollbacks``; one past ``max_rollbacks`` is ``"diverged"``.
  The guard's own rule replaces :data:`BENCH_RULE` (its default is the same:
  spike 4.0, window 20, above the starting level).

Examples:
    >>> from lrkit.bench.run import RunConfig
    >>> config = RunConfig("quadratic", "sgd", "constant()", lr=0.1, seed=0)
    >>> config.steps
    200
    >>> len(config.key())
    64
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from lrkit.bench.optimizers import OptimizerSpec, get_optimizer
from lrkit.bench.tasks import Task, get_task
from lrkit.controllers import Adaptive, Diverged, Guard, Plateau
from lrkit.divergence import DivergenceRule
from lrkit.schedules import Schedule
from lrkit.spec import parse

__all__ = [
    "BENCH_RULE",
    "RUN_FORMAT",
    "RunConfig",
    "RunResult",
    "eval_steps",
    "execute",
    "observe_every",
    "warm_up",
]

#: Bumped whenever :func:`execute` changes what it records or how it trains.
RUN_FORMAT = 1

#: How many validation points a run records (step 0 and the last included).
N_EVALS = 16

STATUSES = ("ok", "rescued", "diverged", "error")

#: Statuses of runs that trained to the end (a rescued run was saved by a guard).
FINISHED = ("ok", "rescued")

#: How often a ``guard(...)`` run keeps a snapshot of model and optimizer (steps).
SNAPSHOT_EVERY = 10

#: The benchmark's divergence rule: SPEC's spike 4.0 over a window of 20,
#: and a spike must also exceed the starting level, so minibatch noise near
#: zero loss is not mistaken for a blow-up.
BENCH_RULE = DivergenceRule(spike=4.0, window=20, above_start=True)


@dataclass(frozen=True)
class RunConfig:
    """What one run trains: task, optimizer, schedule, lr, seed, budget.

    Args:
        task: A task name from :data:`lrkit.bench.tasks.TASKS`.
        optimizer: An optimizer name from
            :data:`lrkit.bench.optimizers.OPTIMIZERS`.
        schedule: An lrkit schedule spec; ``lr`` and ``steps`` may be left
            out (``"cosine()"``): they are filled with the group lr and the
            budget. Ignored by optimizers with their own rule (Schedule-Free).
        lr: The grid's learning rate; for LR-free optimizers, the multiplier
            of their own default lr.
        seed: Seeds model initialisation and batch order.
        budget: Scales the task's step budget.

    Raises:
        ValueError: If a name is unknown or a number out of range.
    """

    task: str
    optimizer: str
    schedule: str = "constant()"
    lr: float = 1e-3
    seed: int = 0
    budget: float = 1.0

    def __post_init__(self) -> None:
        get_task(self.task)
        get_optimizer(self.optimizer)
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
        get_task(self.task).budget(self.budget)  # checks the scale
        object.__setattr__(self, "budget", float(self.budget))

    @property
    def steps(self) -> int:
        """The effective step budget: the task's budget times ``budget``."""
        return get_task(self.task).budget(self.budget)

    @property
    def group_lr(self) -> float:
        """The lr the schedule is filled with (multiplier x base for LR-free)."""
        return get_optimizer(self.optimizer).group_lr(self.lr)

    @property
    def schedule_spec(self) -> str:
        """The spec actually run: the optimizer's own rule, if it has one."""
        own = get_optimizer(self.optimizer).own_schedule
        return own if own is not None else self.schedule

    def schedule_object(self) -> Schedule:
        """Return the schedule with ``lr`` and ``steps`` filled in.

        Raises:
            ValueError: If the spec does not parse.
        """
        return parse(self.schedule_spec, lr=self.group_lr, steps=self.steps)

    def identity(self) -> dict[str, Any]:
        """Return what determines this run's numbers, as plain data.

        The grid's lr and the budget scale appear only through what they
        change: the filled schedule and the effective step count.
        """
        task = get_task(self.task)
        return {
            "format": RUN_FORMAT,
            "task": task.identity(),
            "steps": self.steps,
            "batch_size": task.batch_size,
            "optimizer": self.optimizer,
            "schedule": str(self.schedule_object()),
            "seed": self.seed,
        }

    def key(self) -> str:
        """Return the sha256 hex digest of the canonical JSON of :meth:`identity`."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """Return the config as JSON-ready plain data."""
        return asdict(self)

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
        status: ``"ok"``, ``"rescued"``, ``"diverged"`` or ``"error"``.
        metric: The task's metric name; ``mode`` its direction; ``target``
            the task's target.
        steps: The step budget; ``steps_done`` how many updates were made.
        lr: The effective step size used by each update.
        loss: The training loss of each update.
        eval_steps: Steps (updates done) at which the model was evaluated.
        evals: Validation values by name, one per entry of ``eval_steps``.
        ratio_steps: Updates at which ``||dw|| / ||w||`` was measured.
        update_ratio: Those ratios.
        final: The metric at the end (``None`` unless the status is ``"ok"``
            or ``"rescued"``).
        best: The best metric seen at any evaluation.
        steps_to_target: The first evaluated step that met the target.
        diverged_at: The update at which the divergence was found.
        reason: Why it diverged, or the error message.
        wall_time: Seconds for the whole run, build included.
        build_time: Seconds spent building task and optimizer.
        env: Versions of Python and torch.
        rollbacks: The steps at which a ``guard(...)`` rolled the run back.
    """

    key: str
    config: dict[str, Any]
    identity: dict[str, Any]
    status: str
    metric: str
    mode: str
    target: float
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

    @property
    def finished(self) -> bool:
        """Whether the run trained to the end (status ``"ok"`` or ``"rescued"``)."""
        return self.status in FINISHED

    def to_dict(self) -> dict[str, Any]:
        """Return the result as strict-JSON data (non-finite floats -> ``None``)."""
        data = asdict(self)
        data["lr"] = [_finite_or_none(v) for v in self.lr]
        data["loss"] = [_finite_or_none(v) for v in self.loss]
        data["evals"] = {k: [_finite_or_none(v) for v in vs] for k, vs in self.evals.items()}
        data["update_ratio"] = [_finite_or_none(v) for v in self.update_ratio]
        for name in ("final", "best"):
            data[name] = _finite_or_none(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """Rebuild a result from :meth:`to_dict`'s output (``None`` -> NaN in curves)."""
        data = dict(data)
        nan = math.nan
        data["lr"] = [nan if v is None else v for v in data.get("lr", [])]
        data["loss"] = [nan if v is None else v for v in data.get("loss", [])]
        data["evals"] = {
            k: [nan if v is None else v for v in vs] for k, vs in data.get("evals", {}).items()
        }
        data["update_ratio"] = [nan if v is None else v for v in data.get("update_ratio", [])]
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


def execute(config: RunConfig, *, rule: DivergenceRule | None = None) -> RunResult:
    """Train one run in this process and return what it recorded.

    Sets torch to one thread, seeds Python's and torch's generators with
    ``config.seed``, builds the task, and trains ``config.steps`` updates.
    Exceptions are caught and recorded as status ``"error"``; a divergence
    (NaN/inf or a spike in the train loss, or a non-finite validation metric)
    stops the run early with status ``"diverged"``, unless the spec is a
    ``guard(...)``: then it rolls back (see the module docstring).

    Args:
        config: The run.
        rule: The divergence rule. Default: :data:`BENCH_RULE` (spike 4.0,
            window 20, and a spike must also exceed the starting level).

    Returns:
        The :class:`RunResult`.
    """
    import torch

    start = time.perf_counter()
    torch.set_num_threads(1)
    rule = rule if rule is not None else BENCH_RULE
    task = get_task(config.task)
    spec = get_optimizer(config.optimizer)
    result = RunResult(
        key="",
        config=config.to_dict(),
        identity={},
        status="ok",
        metric=task.metric,
        mode=task.mode,
        target=task.target,
        steps=config.steps,
        env={"python": platform.python_version(), "torch": str(torch.__version__)},
    )
    try:
        result.identity = config.identity()
        result.key = config.key()
        _train(config, task, spec, rule, result, start)
    except Exception as exc:  # recorded, not raised: one bad run must not stop a grid
        result.status = "error"
        result.reason = f"{type(exc).__name__}: {exc}"
        result.final = None
    result.wall_time = time.perf_counter() - start
    return result


class _Snapshot:
    """The last good model and optimizer state of a guarded run, in memory."""

    def __init__(self, model: Any, optimizer: Any) -> None:
        self.model = model
        self.optimizer = optimizer
        self.data: tuple[dict[str, Any], dict[str, Any]] | None = None

    def take(self) -> None:
        self.data = (
            {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            copy.deepcopy(self.optimizer.state_dict()),
        )

    def restore(self) -> None:
        if self.data is None:  # taken before the first update: never happens
            raise RuntimeError("guard: no snapshot to roll back to")
        self.model.load_state_dict(self.data[0])
        self.optimizer.load_state_dict(copy.deepcopy(self.data[1]))


def _controllers(schedule: Any) -> tuple[Any, Guard | None, Any]:
    """(the step -> lr function, the guard or None, the controller that observes or None)."""
    guard = schedule if isinstance(schedule, Guard) else None
    inner = guard.schedule if guard is not None else schedule
    if guard is not None and inner is None:
        raise ValueError("run: a guard(...) spec needs a schedule, e.g. guard(cosine())")
    observer = inner if isinstance(inner, (Plateau, Adaptive)) else None
    lr_at = schedule if isinstance(schedule, Schedule) else schedule.lr
    return lr_at, guard, observer


def _train(
    config: RunConfig,
    task: Task,
    spec: OptimizerSpec,
    rule: DivergenceRule,
    result: RunResult,
    start: float,
) -> None:
    """The training loop of :func:`execute`; fills ``result`` in place."""
    import torch

    lr_at, guard, observer = _controllers(config.schedule_object())
    steps = config.steps
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    problem = task.build(config.seed)
    model = problem.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = spec.create(params, config.group_lr)
    base = optimizer.param_groups[0]["lr"]
    ratios = [g["lr"] / base if base else 1.0 for g in optimizer.param_groups]
    batches = problem.batches(task.batch_size, torch.Generator().manual_seed(config.seed))
    points = eval_steps(steps)
    point_set = set(points)
    measure = {k - 1 for k in points if k > 0}
    block = observe_every(steps)
    block_losses: list[float] = []
    snapshot = _Snapshot(model, optimizer) if guard is not None else None
    result.build_time = time.perf_counter() - start

    def rolled_back(step: int) -> bool:
        """A guarded run after a non-finite validation metric: roll back (True) or stop."""
        if guard is None or snapshot is None:
            return False
        try:
            guard.observe(math.nan, step)
        except Diverged:
            return False
        snapshot.restore()
        result.rollbacks.append(step)
        return True

    def evaluate(step: int) -> bool:
        """Record the validation metrics at ``step``; False if the run must stop."""
        model.eval()
        spec.eval_mode(optimizer)
        with torch.no_grad():
            values = problem.evaluate(model)
        spec.train_mode(optimizer)
        model.train()
        main = float(values[task.metric])
        if not math.isfinite(main):
            if rolled_back(step):
                return evaluate(step)  # the restored model
            _record_eval(result, step, values)
            result.status = "diverged"
            result.diverged_at = step
            result.reason = f"validation {task.metric} is {main} after {step} updates"
            if guard is not None:
                result.reason += f" ({guard.rollbacks} rollbacks, max_rollbacks reached)"
            return False
        _record_eval(result, step, values)
        if result.best is None or task.better(main, result.best):
            result.best = main
        if result.steps_to_target is None and task.reached(main):
            result.steps_to_target = step
        return True

    model.train()
    if snapshot is not None:
        snapshot.take()
    if not evaluate(0):
        return
    state = rule.initial()
    for step in range(steps):
        lr = lr_at(step)
        for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
            group["lr"] = lr * ratio
        effective = spec.effective_lr(optimizer)
        loss = problem.loss(model, next(batches))
        value = float(loss.item())
        skip = False
        if guard is not None and snapshot is not None:
            try:
                skip = guard.observe(value, step)
            except Diverged as exc:
                result.status, result.diverged_at, result.reason = "diverged", step, str(exc)
                return
            if skip:
                snapshot.restore()
                result.rollbacks.append(step)
            elif step % SNAPSHOT_EVERY == 0:
                snapshot.take()  # the weights this loss was computed with: good
        else:
            state, found = rule.update(state, value)
            if found is not None:
                result.status = "diverged"
                result.diverged_at = step
                result.reason = f"{found.reason}: {found.message} at step {step}"
                return
        if not skip:
            _update(loss, optimizer, params, result, step if step in measure else None)
        result.lr.append(effective)
        result.loss.append(value)
        result.steps_done = step + 1
        if observer is not None:
            block_losses.append(value)
            if (step + 1) % block == 0:
                finite = [v for v in block_losses if math.isfinite(v)]
                observer.observe(sum(finite) / len(finite) if finite else math.nan, step)
                block_losses = []
        if step + 1 in point_set and not evaluate(step + 1):
            return
    result.final = result.evals[task.metric][-1]
    if result.rollbacks:
        result.status = "rescued"
        result.reason = (
            f"rescued: {len(result.rollbacks)} rollback(s) at steps "
            f"{result.rollbacks}; lr x {guard.multiplier if guard else 1.0:g}"
        )


def _record_eval(result: RunResult, step: int, values: dict[str, Any]) -> None:
    result.eval_steps.append(step)
    for name, value in values.items():
        result.evals.setdefault(name, []).append(float(value))


def _update(
    loss: Any, optimizer: Any, params: list[Any], result: RunResult, at: int | None
) -> None:
    """Backward and one optimizer step; at ``at``, also record ``||dw|| / ||w||``."""
    import torch

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    before = [p.detach().clone() for p in params] if at is not None else None
    optimizer.step()
    if at is not None and before is not None:  # both or neither
        with torch.no_grad():
            delta = math.sqrt(
                sum(float((p - b).pow(2).sum()) for p, b in zip(params, before, strict=True))
            )
            norm = math.sqrt(sum(float(b.pow(2).sum()) for b in before))
        result.ratio_steps.append(at)
        result.update_ratio.append(delta / norm if norm > 0 else math.inf)
