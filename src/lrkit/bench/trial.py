"""Tasks and trials: the user's own training as a run of ``lrkit compare`` / ``lrkit tune``.

A *task* is a training function decorated once with :func:`task`::

    @lrkit.task(metric="val_loss", mode="min", steps=500)
    def my_task(trial: lrkit.Trial) -> float:
        model = make_model(seed=trial.seed)
        opt = trial.optimizer(model.parameters())   # the grid's optimizer at trial.lr
        sched = trial.scheduler(opt)                # lrkit.torch.Scheduler on trial.schedule
        for step in range(trial.steps):
            loss = train_step(model, opt)
            sched.step()
            trial.log(step, loss=loss)              # NaN/inf: the run is "diverged"
            if (step + 1) % 50 == 0:
                trial.report(step + 1, evaluate(model))   # may raise lrkit.Pruned
        return evaluate(model)                      # the final metric

The runner calls it once per run with a :class:`Trial`: the run's lr, seed,
step budget and filled schedule, and helpers that build the grid's torch
optimizer and lrkit's driver. The built-in tasks (``lrkit tasks``) are tasks
of this same kind.

A task is found again in a worker process by its *reference*
(:attr:`Task.ref`): a built-in name, ``path/to/file.py:name`` or
``package.module:name``; :func:`load_task` turns any of them into the
:class:`Task`. A user task's identity (and so every run key in the store)
includes the sha256 of its source file: editing the file never reuses runs
of the old code. Its ``version=`` can be bumped for changes elsewhere (a
module it imports, the data).

This module imports neither torch nor any framework: a Keras or JAX task
takes ``trial.schedule`` to :func:`lrkit.keras.to_keras` or
:func:`lrkit.optax.to_optax` and never calls :meth:`Trial.optimizer`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrkit.controllers import Diverged
from lrkit.divergence import DivergenceRule

if TYPE_CHECKING:
    from lrkit.bench.run import RunConfig, RunResult

__all__ = [
    "Pruned",
    "Task",
    "TaskLoadError",
    "Trial",
    "load_task",
    "register_task",
    "task",
    "task_code",
]

#: Module-name prefix of task files imported by path.
_FILE_MODULE_PREFIX = "_lrkit_task_"


class Pruned(Exception):
    """Raised by :meth:`Trial.report` when the tuner stops this run early.

    Let it propagate: the runner records the run as ``pruned``.
    """


class TaskLoadError(ValueError):
    """A task reference cannot be loaded; the message names it and says why."""


# --------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------


def _check_mode(mode: Any, who: str) -> str:
    if mode not in ("min", "max"):
        raise ValueError(f"{who}: mode must be 'min' or 'max', got {mode!r}")
    return str(mode)


@dataclass(frozen=True)
class Task:
    """A training task: a function of a :class:`Trial` returning the final metric.

    Attributes:
        name: The task's name in tables (``digits``, ``my_task``).
        fn: ``fn(trial) -> float``, the final metric.
        metric: The metric's name (``"val_loss"``).
        mode: ``"min"`` if lower is better, ``"max"`` otherwise.
        steps: The step budget at ``--budget 1`` (``trial.steps`` scales it).
        ref: How a worker process loads it (:func:`load_task` reads it back).
        target: A value a good setting reaches; ``None`` if unknown.
        description: One line for ``lrkit tasks``.
        version: Bumped to invalidate stored runs (built-ins: whenever data,
            model or metric change).
        batch_size: Samples per step, if the task has one (run keys include it).
        batched: Whether the task trains on batches, so that ``--batch-sizes``
            applies (a built-in task with exact gradients has none).
        checkpoints: The task calls :meth:`Trial.checkpoint` / :meth:`Trial.restore`.
        source_sha256: The hash of the source file (user tasks).
        builtin: One of lrkit's own tasks.
        divergence: The rule ``trial.log(step, loss=...)`` applies;
            ``None``: NaN/inf only.
        report_feeds_schedule: Whether ``trial.report`` values go to a
            ``plateau(...)``/``adaptive(...)`` schedule (built-in tasks feed
            them block means of the training loss instead).
        builder: Built-in tasks: ``builder(seed)`` -> their data and model.
        fingerprint: Built-in tasks: extra identity fields read at run time.
        optimizers: The optimizer names the task takes (``("sgd",)`` for a
            scikit-learn task, which follows the schedule with its own SGD);
            ``None``: any torch optimizer.
    """

    name: str
    fn: Callable[[Trial], float] = field(repr=False, compare=False)
    metric: str
    mode: str
    steps: int
    ref: str
    target: float | None = None
    description: str = ""
    version: str | None = None
    batch_size: int | None = None
    batched: bool = True
    checkpoints: bool = False
    source_sha256: str | None = None
    builtin: bool = False
    divergence: DivergenceRule | None = field(default=None, repr=False)
    report_feeds_schedule: bool = True
    builder: Callable[[int], Any] | None = field(default=None, repr=False, compare=False)
    fingerprint: Callable[[], dict[str, str]] | None = field(
        default=None, repr=False, compare=False
    )
    optimizers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_mode(self.mode, f"task {self.name!r}")
        steps = self.steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"task {self.name!r}: steps must be an integer >= 1, got {steps!r}")
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(
                f"task {self.name!r}: metric must be a non-empty name, got {self.metric!r}"
            )

    def __call__(self, trial: Trial) -> float:
        """Run the task on ``trial`` (what the runner does)."""
        return self.fn(trial)

    def budget(self, scale: float = 1.0) -> int:
        """Return the step budget scaled by ``scale`` (at least 1 step).

        Raises:
            ValueError: If ``scale`` is not a finite number > 0.
        """
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            raise ValueError(f"{self.name}: budget scale must be a number > 0, got {scale!r}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"{self.name}: budget scale must be finite and > 0, got {scale!r}")
        return max(1, round(self.steps * scale))

    def identity(self) -> dict[str, Any]:
        """What identifies this task's runs: built-ins by name and version, user
        tasks by name, source hash and version."""
        if self.builtin:
            ident: dict[str, Any] = {"name": self.name, "version": self.version}
            if self.fingerprint is not None:
                ident.update(self.fingerprint())
            return ident
        return {
            "name": self.name,
            "user": True,
            "source_sha256": self.source_sha256,
            "version": self.version,
            "metric": self.metric,
            "mode": self.mode,
        }

    def reached(self, value: float) -> bool:
        """Whether a metric ``value`` meets the target (``False`` without one)."""
        if self.target is None or not math.isfinite(value):
            return False
        return value >= self.target if self.mode == "max" else value <= self.target

    def check_optimizer(self, optimizer: str) -> None:
        """Raise a ValueError if this task does not take ``optimizer`` (see ``optimizers``)."""
        if self.optimizers is not None and optimizer not in self.optimizers:
            raise ValueError(
                f"task {self.name!r} takes only the optimizer(s) {', '.join(self.optimizers)}, "
                f"got {optimizer!r}"
            )

    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` is strictly better than ``b``."""
        return a > b if self.mode == "max" else a < b

    def build(self, seed: int) -> Any:
        """Built-in tasks: the data and a fresh model initialised from ``seed``.

        Raises:
            ValueError: For a user task (it builds its own model), or a bad seed.
        """
        if self.builder is None:
            raise ValueError(f"task {self.name!r} is a user task: it builds its own model")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{self.name}: seed must be an integer >= 0, got {seed!r}")
        return self.builder(seed)


def _file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _ref_of(fn: Callable[..., Any]) -> tuple[str, str | None]:
    """(reference, source hash) of a decorated function, as a worker can load it."""
    module_name = getattr(fn, "__module__", None) or ""
    qualname = getattr(fn, "__qualname__", "")
    source = inspect.getsourcefile(fn) if inspect.isfunction(fn) else None
    digest = _file_sha256(source) if source and Path(source).is_file() else None
    by_path = (
        module_name in ("__main__", "__mp_main__")
        or module_name.startswith(_FILE_MODULE_PREFIX)
        or importlib.util.find_spec(module_name) is None
        if module_name
        else True
    )
    if "<locals>" in qualname or not source:
        return f"{module_name}:{qualname}", digest  # in-process only; load_task says so
    if by_path:
        path = Path(source).resolve()
        try:
            shown: str = str(path.relative_to(Path.cwd()))
        except ValueError:
            shown = str(path)
        return f"{shown}:{qualname}", digest
    return f"{module_name}:{qualname}", digest


def task(
    fn: Callable[[Trial], float] | None = None,
    *,
    metric: str,
    steps: int,
    mode: str = "min",
    target: float | None = None,
    name: str | None = None,
    version: str | None = None,
    checkpoints: bool = False,
    description: str | None = None,
) -> Any:
    """Declare a training function as an lrkit task.

    Args:
        fn: ``fn(trial: lrkit.Trial) -> float`` returning the final metric.
        metric: The metric's name (``"val_loss"``, ``"val_acc"``).
        steps: The step budget at ``--budget 1``: ``trial.steps``.
        mode: ``"min"`` if lower is better, ``"max"`` otherwise.
        target: Optional value a good run reaches (the report's "steps to target").
        name: The name in tables (default: the function's name).
        version: Bump it to make lrkit re-run stored runs after a change the
            source hash cannot see (a module the task imports, its data).
        checkpoints: The task calls ``trial.checkpoint`` / ``trial.restore``.
        description: One line for listings (default: the docstring's first line).

    Returns:
        A :class:`Task` (still callable as ``my_task(trial)``).

    Raises:
        ValueError: A bad ``mode``, ``steps`` or ``metric``.

    Examples:
        >>> import lrkit
        >>> @lrkit.task(metric="loss", steps=10)
        ... def halve(trial):
        ...     x = 1.0
        ...     for step in range(trial.steps):
        ...         x -= trial.lr * x
        ...         trial.log(step, loss=x)
        ...     return x
        >>> halve.name, halve.metric, halve.mode, halve.steps
        ('halve', 'loss', 'min', 10)
    """

    def wrap(function: Callable[[Trial], float]) -> Task:
        if not callable(function):
            raise TypeError(f"lrkit.task decorates a function, got {function!r}")
        ref, digest = _ref_of(function)
        doc = (inspect.getdoc(function) or "").strip().splitlines()
        return Task(
            name=str(name or getattr(function, "__name__", "task")),
            fn=function,
            metric=metric,
            mode=_check_mode(mode, "lrkit.task"),
            steps=steps,
            ref=ref,
            target=None if target is None else float(target),
            description=description if description is not None else (doc[0] if doc else ""),
            version=None if version is None else str(version),
            checkpoints=bool(checkpoints),
            source_sha256=digest,
        )

    if fn is not None:
        return wrap(fn)
    return wrap


# --------------------------------------------------------------------------
# Loading a task by reference
# --------------------------------------------------------------------------

_LOADED: dict[str, Task] = {}


def _import_file(path: Path) -> Any:
    """Import a task file as a module of its own (its folder goes on sys.path).

    Imported once per process while the file is unchanged; an edited file
    (another size or modification time) is imported again, so a long-lived
    session (a notebook) sees the new source and its new hash. Modules the
    file imports are Python's to cache: bump ``version=`` when they change.
    """
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_name = f"{_FILE_MODULE_PREFIX}{path.stem}_{digest}"
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    module = sys.modules.get(module_name)
    if module is not None and getattr(module, "__lrkit_stamp__", None) == stamp:
        return module
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)  # `from model import Net` beside the task file works
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise TaskLoadError(f"task file {str(path)!r} cannot be imported (not a Python file?)")
    module = importlib.util.module_from_spec(spec)
    module.__lrkit_stamp__ = stamp  # type: ignore[attr-defined]
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[module_name]
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        where = ""
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == str(path):
                where = f" (line {tb.tb_lineno})"
            tb = tb.tb_next
        raise TaskLoadError(
            f"task file {str(path)!r} failed to import{where}: {type(exc).__name__}: {exc}"
        ) from None
    return module


def _tasks_in(module: Any) -> list[str]:
    return sorted(k for k, v in vars(module).items() if isinstance(v, Task))


def _is_file_ref(left: str) -> bool:
    return left.endswith(".py") or "/" in left or os.sep in left


def task_code(identity: Mapping[str, Any]) -> str:
    """The code a task identity names: a user task's source hash, else a hash of the
    identity (a built-in's name and version). Two runs of one task with other codes ran
    other code."""
    code = identity.get("source_sha256")
    if code:
        return str(code)
    return hashlib.sha256(
        json.dumps(dict(identity), sort_keys=True, default=str).encode()
    ).hexdigest()


def _import_module(name: str) -> Any:
    """``importlib.import_module``, also from the working folder, as ``python -m`` finds it.

    ``lrkit`` is a console script, whose ``sys.path`` starts at its own folder,
    so ``--tasks train:fit`` next to ``train.py`` would not import (while
    ``python -c "import train"`` does); the working folder is put on
    ``sys.path`` only when the module is there and nowhere else.
    """
    import os

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        top = name.split(".")[0]
        here = os.getcwd()
        if exc.name != top or here in sys.path:
            raise
        if not (
            os.path.isfile(os.path.join(here, f"{top}.py"))
            or os.path.isdir(os.path.join(here, top))
        ):
            raise
        sys.path.insert(0, here)
        return importlib.import_module(name)


def load_task(ref: str | Task) -> Task:
    """Return the task a reference names: a built-in name, ``file.py:name`` or ``module:name``.

    A :class:`Task` is returned as it is. A task file is imported again when
    it changed since it was last imported in this process.

    Raises:
        TaskLoadError: The name is unknown, the file or module is missing or
            fails to import, or the name is not an ``@lrkit.task``; one line
            saying which.

    Examples:
        >>> load_task("quadratic").metric
        'loss'
        >>> load_task("nope")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        lrkit.bench.trial.TaskLoadError: unknown task 'nope'; built-in tasks: charlm, ...
    """
    if isinstance(ref, Task):
        return ref
    if not isinstance(ref, str) or not ref.strip():
        raise TaskLoadError(f"a task must be a name or an @lrkit.task function, got {ref!r}")
    ref = ref.strip()
    from lrkit.bench.tasks import TASKS

    if ref in TASKS:
        return TASKS[ref]
    registered = _LOADED.get(ref)
    if registered is not None:
        return registered  # a function handed in from Python (register_task)
    if ":" not in ref:
        raise TaskLoadError(
            f"unknown task {ref!r}; built-in tasks: {', '.join(sorted(TASKS))}; "
            "or give path/to/file.py:name or package.module:name"
        )
    left, _, attr = ref.rpartition(":")
    if not left or not attr:
        raise TaskLoadError(f"task {ref!r}: write path/to/file.py:name or package.module:name")
    if _is_file_ref(left):
        path = Path(left).expanduser().resolve()
        if not path.is_file():
            raise TaskLoadError(f"task {ref!r}: file {left!r} does not exist")
        module = _import_file(path)
        where = f"file {left!r}"
    else:
        try:
            module = _import_module(left)
        except ModuleNotFoundError as exc:
            raise TaskLoadError(f"task {ref!r}: cannot import module {left!r} ({exc})") from None
        except Exception as exc:
            raise TaskLoadError(
                f"task {ref!r}: module {left!r} failed to import: {type(exc).__name__}: {exc}"
            ) from None
        where = f"module {left!r}"
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            found = _tasks_in(module)
            listing = f"; tasks there: {', '.join(found)}" if found else "; it defines no task"
            raise TaskLoadError(f"task {ref!r}: {where} has no {attr!r}{listing}")
    if not isinstance(obj, Task):
        raise TaskLoadError(
            f"task {ref!r}: {attr!r} in {where} is not an lrkit task; decorate it with "
            "@lrkit.task(metric=..., steps=...)"
        )
    # The reference it was loaded by is how workers find it again.
    return obj if obj.ref == ref else _replace_ref(obj, ref)


def register_task(obj: Task) -> None:
    """Make ``obj`` loadable by its reference in this process (a function passed in Python)."""
    if not obj.builtin:
        _LOADED.setdefault(obj.ref, obj)


def _replace_ref(obj: Task, ref: str) -> Task:
    from dataclasses import replace

    return replace(obj, ref=ref)


# --------------------------------------------------------------------------
# The trial
# --------------------------------------------------------------------------


class Trial:
    """One run of a task: its settings, and helpers that wire them into training.

    Built by the runner (``lrkit compare``, ``lrkit tune``); a task reads it.

    Attributes:
        lr: The run's learning rate (the peak of :attr:`schedule`; for an
            LR-free optimizer, the multiplier of its own lr).
        seed: Seed your model initialisation and data order with it.
        steps: The step budget: the task's ``steps`` x ``--budget``.
        schedule: The filled lrkit schedule or controller (``lr`` and
            ``steps`` filled in); a Keras/JAX task takes it to
            :func:`lrkit.keras.to_keras` / :func:`lrkit.optax.to_optax`.
        optimizer_name: The grid's optimizer (``"adamw"``).
        config: The run's settings as plain data.
        batch_size: The run's batch size (``--batch-sizes``); ``None`` when the
            grid sets none: the task then uses its own. A task that takes
            ``--batch-sizes`` reads it to build its batches.
    """

    def __init__(
        self,
        config: RunConfig,
        result: RunResult,
        *,
        on_report: Callable[[int, float], bool] | None = None,
        started: float | None = None,
    ) -> None:
        self._started = time.perf_counter() if started is None else started
        self._config = config
        self._task = config.task_object
        self._result = result
        self._on_report = on_report
        self.lr: float = config.lr
        self.seed: int = config.seed
        self.steps: int = config.steps
        self._schedule: Any = config.schedule_object()
        self._schedule_read = False  # the task read trial.schedule (Keras, optax, own loop)
        self.optimizer_name: str = config.optimizer
        self.config: dict[str, Any] = config.to_dict()
        self.batch_size: int | None = config.batch_size
        self._rule = self._task.divergence
        self._rule_state = self._rule.initial() if self._rule is not None else None
        self._optimizers: list[Any] = []
        self._scheduler: Any = None
        self._averager: Any = None  # swa(...): lrkit.bench.torch_trial.Averager
        self._checkpoint: Any = None
        self._restore: Any = None
        self._measure = {k - 1 for k in _eval_points(self.steps) if k > 0}
        #: Called with each logged loss; True ends the run as pruned (the lr finder's stop).
        self._on_loss: Callable[[int, float], bool] | None = None

    @property
    def schedule(self) -> Any:
        """The run's lr schedule (a controller for ``plateau(...)``/``guard(...)`` specs):
        ``trial.scheduler(optimizer)`` drives a torch optimizer with it; Keras, optax or
        a loop of your own read it here."""
        self._schedule_read = True
        return self._schedule

    @schedule.setter
    def schedule(self, value: Any) -> None:
        self._schedule = value

    def ignored_schedule(self) -> str | None:
        """Why the run did not follow its schedule, or None: a task that builds its
        optimizer with ``trial.optimizer`` but neither ``trial.scheduler`` nor reads
        ``trial.schedule`` trains at a constant lr whatever the spec says."""
        from lrkit.schedules import Schedule

        if self._scheduler is not None or self._schedule_read or not self._optimizers:
            return None
        plan = self._schedule
        while not isinstance(plan, Schedule) and getattr(plan, "schedule", None) is not None:
            plan = plan.schedule  # a controller's plan
        if not isinstance(plan, Schedule):
            return None
        values = plan.values(max(1, min(self.steps, 100_000)))
        if float(values.max() - values.min()) <= 1e-12 * float(abs(values).max()):
            return None  # a constant plan: nothing lost
        return (
            f"the task never applied its schedule {self._schedule}: its optimizer ran at a "
            "constant lr. Build the scheduler with trial.scheduler(optimizer) and call "
            ".step() after each optimizer.step(), or read trial.schedule (Keras, optax, "
            "a loop of your own)"
        )

    def __repr__(self) -> str:
        return (
            f"Trial(task={self._task.name!r}, optimizer={self.optimizer_name!r}, "
            f"schedule='{self._schedule}', lr={self.lr:g}, seed={self.seed}, steps={self.steps})"
        )

    @property
    def task(self) -> Task:
        """The :class:`Task` this trial runs."""
        return self._task

    # -- torch helpers -------------------------------------------------------

    def optimizer(self, params: Any) -> Any:
        """The grid's torch optimizer over ``params`` at this run's lr.

        LR-free optimizers (Prodigy, D-Adaptation, Schedule-Free) are built
        with their lr multiplier. The runner watches its steps (the lr each
        update used, and the update-to-weight ratio at 16 points).
        """
        from lrkit.bench.torch_trial import make_optimizer

        optimizer = make_optimizer(self, params)
        self._optimizers.append(optimizer)
        return optimizer

    def scheduler(self, optimizer: Any, model: Any = None, **kwargs: Any) -> Any:
        """:class:`lrkit.torch.Scheduler` driving ``optimizer`` with :attr:`schedule`.

        With a ``swa(...)`` schedule it also starts stochastic weight
        averaging of ``model``: a ``torch.optim.swa_utils.AveragedModel``
        that takes the weights after every optimizer update from the
        schedule's start step on; evaluate :meth:`eval_model`.

        Args:
            optimizer: Usually from :meth:`optimizer`.
            model: The torch module a ``guard(...)`` schedule rolls back and a
                ``swa(...)`` schedule averages (needed then).
            **kwargs: Passed on to :class:`lrkit.torch.Scheduler` (e.g.
                ``snapshot_every``).

        Raises:
            ValueError: A guard or ``swa(...)`` schedule and no ``model``.
        """
        from lrkit.bench.torch_trial import make_scheduler

        self._scheduler = make_scheduler(self, optimizer, model, **kwargs)
        return self._scheduler

    def eval_model(self, model: Any, loader: Any = None) -> Any:
        """The module to evaluate: with ``swa(...)``, the averaged weights once averaging began.

        Without a ``swa(...)`` schedule, or before its start step, this is
        ``model`` itself. After it, it is the ``AveragedModel``'s module
        (the running mean of the weights since the start step), with its
        BatchNorm statistics recomputed by ``torch.optim.swa_utils.update_bn``
        over ``loader`` (batches whose first item is the model's input; not
        needed for a model without BatchNorm) and ``model``'s train/eval
        mode. Evaluate it, and return its metric, in place of ``model``'s::

            model.eval()
            with torch.no_grad():
                metric = evaluate(trial.eval_model(model, train_loader))

        Raises:
            ValueError: ``model`` is not the one given to :meth:`scheduler`,
                or it has BatchNorm and no ``loader`` was given.
        """
        averager = self._averager
        if averager is None:
            return model
        if model is not averager.model:
            raise ValueError(
                "trial.eval_model: give the model passed to trial.scheduler(optimizer, "
                "model=model): that is the one whose weights are averaged"
            )
        return averager.eval_module(loader)

    @property
    def needs_closure(self) -> bool:
        """Whether the grid's optimizer steps with ``opt.step(closure)`` (``sam(...)``).

        Pass a closure only then: a torch optimizer calls a closure it is
        given, which costs a pass and, if the closure does not zero the
        gradients first, adds a second gradient to the first::

            loss.backward()
            if trial.needs_closure:  # SAM: the gradient again, at perturbed weights
                opt.step(lambda: loss_fn(model(x), y).backward())
            else:
                opt.step()
        """
        from lrkit.bench.optimizers import get_optimizer

        return get_optimizer(self.optimizer_name).needs_closure

    @property
    def averaged_model(self) -> Any:
        """The ``torch.optim.swa_utils.AveragedModel`` of a ``swa(...)`` run, else None.

        For a task that checkpoints: save and load its ``state_dict()`` beside
        the model's (it holds the count of updates averaged).
        """
        return None if self._averager is None else self._averager.averaged

    # -- what the run records ------------------------------------------------

    def log(self, step: int, **scalars: Any) -> None:
        """Record scalars at ``step``; ``loss=`` is the training loss.

        A non-finite ``loss`` raises :class:`lrkit.Diverged` (the run is
        stored ``diverged``); with a ``guard(...)`` schedule the loss goes to
        the guard, which rolls model and optimizer back instead, until its
        ``max_rollbacks``.

        Raises:
            lrkit.Diverged: The loss diverged (and no guard could save it).
        """
        step = _check_step(step, "log")
        result = self._result
        if "loss" in scalars:
            value = _as_float(scalars.pop("loss"), "loss")
            if self._scheduler is not None and getattr(self._scheduler, "guard", None):
                self._scheduler._trial_loss(value, step)  # rolls back or raises Diverged
            elif self._rule is not None:
                state = self._rule_state if self._rule_state is not None else self._rule.initial()
                self._rule_state, found = self._rule.update(state, value)
                if found is not None:
                    raise Diverged(
                        f"{found.reason}: {found.message} at step {step}", found, step, 0
                    )
            elif not math.isfinite(value):
                raise Diverged(f"loss is {value} at step {step}", None, step, 0)
            result.loss.append(value)
            result.steps_done = max(result.steps_done, step + 1)
            if not self._optimizers:  # no torch optimizer watched: the schedule's lr
                result.lr.append(float(_lr_at(self._schedule, step)))
            if self._on_loss is not None and self._on_loss(step, value):
                raise Pruned(f"stopped at step {step}")
        for name, raw in scalars.items():
            result.scalars.setdefault(name, []).append([step, _as_float(raw, name)])

    def report(self, step: int, value: Any) -> None:
        """Report the task's metric measured after ``step`` updates.

        Reports make the learning curve in the report, feed a
        ``plateau(...)``/``adaptive(...)`` schedule, and let a tuner's pruner
        stop a poor run early.

        Raises:
            lrkit.Pruned: The tuner stops this run (let it propagate).
            lrkit.Diverged: The value is NaN or infinite.
        """
        step = _check_step(step, "report")
        metric = _as_float(value, "report value")
        result = self._result
        result.eval_steps.append(step)
        result.evals.setdefault(self._task.metric, []).append(metric)
        if not math.isfinite(metric):
            raise Diverged(
                f"reported {self._task.metric} is {metric} after {step} updates", None, step, 0
            )
        if result.best is None or self._task.better(metric, result.best):
            result.best = metric
        if result.steps_to_target is None and self._task.reached(metric):
            result.steps_to_target = step
        if self._task.report_feeds_schedule and self._scheduler is not None:
            self._scheduler.observe(metric)
        if self._on_report is not None and self._on_report(step, metric):
            result.pruned_at = step
            raise Pruned(f"pruned after {step} steps ({self._task.metric}={metric:.4g})")

    def report_final(self, step: int, value: float) -> None:
        """Record the final metric as the last point of the curve (the runner does)."""
        result = self._result
        result.eval_steps.append(step)
        result.evals.setdefault(self._task.metric, []).append(value)
        if result.best is None or self._task.better(value, result.best):
            result.best = value
        if result.steps_to_target is None and self._task.reached(value):
            result.steps_to_target = step

    # -- checkpoints (population-based training) -----------------------------

    def checkpoint(self, state: Any) -> None:
        """Keep ``state`` (any picklable object) with the next :meth:`report`.

        Call it just before ``trial.report(step, ...)`` with everything the
        task needs to continue after ``step`` updates (model, optimizer and
        scheduler ``state_dict()``, the step, RNG state). A population-based
        run pickles it at once (live tensors are fine); other runs keep it
        as it is and never read it. Declare the task with
        ``@lrkit.task(..., checkpoints=True)``.
        """
        self._checkpoint = state

    def restore(self) -> Any:
        """The state to continue from, else ``None`` (start from scratch).

        In a population-based run (``lrkit tune --search pbt``) a member that
        takes a stronger member's checkpoint (an *exploit*) is started again
        with the state that member passed to :meth:`checkpoint`, and with a
        new lr: :attr:`lr` and the schedule of :meth:`scheduler` give it, and
        loading the scheduler's saved ``state_dict`` keeps it (the saved step
        is restored, not the saved lr).
        """
        return self._restore


def _eval_points(steps: int) -> list[int]:
    from lrkit.bench.run import eval_steps

    return eval_steps(steps)


def _lr_at(schedule: Any, step: int) -> float:
    """The lr a schedule (a value) or a controller (``.lr(step)``) gives at ``step``."""
    from lrkit.schedules import Schedule

    return float(schedule(step) if isinstance(schedule, Schedule) else schedule.lr(step))


def _check_step(step: Any, what: str) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        try:
            as_int = int(step)
        except (TypeError, ValueError):
            as_int = -1
        if as_int < 0 or as_int != step:
            raise ValueError(f"trial.{what}: step must be an integer >= 0, got {step!r}")
        return as_int
    return step


def _as_float(value: Any, what: str) -> float:
    if hasattr(value, "item"):  # a tensor or numpy scalar
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"trial: {what} must be a number, got {value!r}") from None
