"""``lrkit tune --search pbt``: population-based training of the lr with Ray Tune.

A *population* of ``population`` members trains the task at once, each with
its own constant lr (log-evenly spread over ``lr_range`` at the start; the
optimizers, if several, dealt round-robin). Members are compared at their
``trial.report`` values; every :data:`PERTURB_EVERY` reports Ray Tune's
:class:`~ray.tune.schedulers.PopulationBasedTraining` makes a member of the
bottom quarter continue from the checkpoint of one of the top quarter (an
*exploit*) with that member's lr perturbed (an *explore*: x2 or x0.5, or with
probability :data:`RESAMPLE_PROBABILITY` drawn log-uniformly from the range;
kept inside ``lr_range``; 3 significant digits).

**The task's side.** A task declared ``@lrkit.task(..., checkpoints=True)``
calls ``trial.checkpoint(state)`` just before a ``trial.report`` (the state
after that many updates, pickled at once) and starts with
``state = trial.restore()``: ``None`` for a fresh start, else the state to
continue from. After an exploit the member is started again with the new lr:
``trial.lr`` is it, and the schedule of ``trial.scheduler`` is a
:class:`MemberLr` whose saved state holds no lr, so loading the scheduler's
``state_dict`` restores the step and keeps the new lr. The built-in tasks do
all this (:func:`lrkit.bench.tasks.train_builtin`).

**The lineage.** Every checkpoint carries the lr history that produced it:
pieces ``(start_step, lr)`` (see :func:`continue_history`) and the exploits
along the way. A member restored at step ``s`` of a checkpoint keeps the
pieces that start before ``s`` and adds ``(s, lr)``. So when the population
is done, the best member's history is the lr schedule its weights actually
followed, inherited pieces included; :func:`history_spec` writes it as an
lrkit spec, a ``join`` of ``constant``'s, that :func:`lrkit.parse` reads and
:class:`lrkit.torch.Scheduler` replays (``pbt_schedule`` in results.json).
All members share the seed (initialisation and batch order), so a replay of
``pbt_schedule`` from scratch retraces the best member's updates.

**Ray.** With no Ray session in the process, a local one is started for the
call (``num_cpus`` = ``workers``, or 2 for ``workers=0``) and shut down at
the end; an existing session (e.g. a test's) is used as it is. Ray's own
files go to a temporary folder removed at the end: a PBT run does not
resume. Each member is a Ray Tune function trainable that runs the task
through :func:`lrkit.bench.run.execute`.

Example::

    lrkit tune --tasks digits --optimizers sgd --search pbt --trials 4 \\
        --lr-range 1e-3,1 --workers 2 --out digits-pbt
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import io
import json
import logging
import math
import os
import pickle
import random
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrkit.bench.run import RunConfig, RunResult, execute
from lrkit.bench.trial import Task, Trial

if TYPE_CHECKING:
    from lrkit.bench.tune import TuneProgress, TuneResults

__all__ = [
    "PERTURB_EVERY",
    "MemberLr",
    "PbtResults",
    "continue_history",
    "history_spec",
    "start_lrs",
    "tune_pbt",
]

#: Reports between two chances of a member to exploit / be explored.
PERTURB_EVERY = 4
#: The factors an explore multiplies the lr by (each with equal chance).
PERTURB_FACTORS = (2.0, 0.5)
#: The chance an explore draws a fresh lr log-uniformly from the range instead.
RESAMPLE_PROBABILITY = 0.25
#: The fraction of the population that exploits (bottom) / is copied (top).
QUANTILE_FRACTION = 0.25
#: The file inside a Ray checkpoint that holds a member's checkpoint.
CHECKPOINT_FILE = "lrkit_member.pkl"
#: Ray's loggers whose notes (checkpoint saved, restored, metrics not on disk) are not shown.
_RAY_LOGGERS = ("ray.tune", "ray.train", "ray.air")

History = list[tuple[int, float]]


# --------------------------------------------------------------------------
# The lr of a member, and its history (pure)
# --------------------------------------------------------------------------


class MemberLr:
    """The lr a population member runs with: a constant set when the member (re)starts.

    A controller for :class:`lrkit.torch.Scheduler` (``lr(step)`` and
    ``observe``) whose ``state_dict`` holds no lr: a member that loads a
    stronger member's scheduler state after an exploit continues at that
    state's step with its own, perturbed lr.

    Examples:
        >>> m = MemberLr(0.1)
        >>> m.lr(0), m.lr(500), m.state_dict()
        (0.1, 0.1, {})
    """

    def __init__(self, lr: float) -> None:
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
            raise ValueError(f"pbt: lr must be a number > 0, got {lr!r}")
        self.value = float(lr)

    def lr(self, step: int) -> float:
        """The member's lr (the same at every step)."""
        return self.value

    def observe(self, metric: float, step: int) -> bool:
        """Metrics do not change the lr here (the population does)."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """Nothing: the lr comes from the population, not from a saved state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep the member's lr whatever the state says."""

    def __str__(self) -> str:
        return f"pbt member lr {self.value!r}"

    def __repr__(self) -> str:
        return f"MemberLr({self.value!r})"


def continue_history(history: Sequence[Sequence[Any]], step: int, lr: float) -> History:
    """The lr history of a run restored after ``step`` updates and going on at ``lr``.

    Pieces are ``(start_step, lr)``, the first starting at 0. Pieces that
    start at or after ``step`` are dropped (they were not used by the
    restored state); ``(step, lr)`` is added unless the lr does not change.

    Examples:
        >>> continue_history([(0, 0.1)], 40, 0.2)
        [(0, 0.1), (40, 0.2)]
        >>> continue_history([(0, 0.1), (40, 0.2)], 40, 0.05)
        [(0, 0.1), (40, 0.05)]
        >>> continue_history([(0, 0.1), (40, 0.2)], 60, 0.2)
        [(0, 0.1), (40, 0.2)]
        >>> continue_history([], 0, 0.3)
        [(0, 0.3)]
    """
    kept = [(int(s), float(v)) for s, v in history if int(s) < step]
    if kept and kept[-1][1] == lr:
        return kept
    return [*kept, (int(step), float(lr))]


def history_spec(history: Sequence[Sequence[Any]]) -> str:
    """An lr history as an lrkit spec: ``constant``'s joined at the steps the lr changed.

    Raises:
        ValueError: An empty history, or one whose first piece does not start at 0.

    Examples:
        >>> history_spec([(0, 0.1)])
        'constant(lr=0.1)'
        >>> history_spec([(0, 0.1), (40, 0.2), (80, 0.05)])
        'join(constant(lr=0.1), constant(lr=0.2), constant(lr=0.05), boundaries=[40, 80])'
    """
    from lrkit.schedules import constant, join

    pieces = [(int(s), float(v)) for s, v in history]
    if not pieces or pieces[0][0] != 0:
        raise ValueError(f"pbt: an lr history starts at step 0, got {pieces}")
    parts = [constant(v) for _, v in pieces]
    if len(parts) == 1:
        return str(parts[0])
    return str(join(*parts, boundaries=[s for s, _ in pieces[1:]]))


def _round_lr(lr: float, low: float, high: float) -> float:
    """``lr`` inside ``[low, high]`` with 3 significant digits (the ends kept exact)."""
    value = float(f"{min(max(lr, low), high):.3g}")
    return min(max(value, low), high)


def start_lrs(n: int, low: float, high: float) -> list[float]:
    """``n`` lrs log-evenly spread over ``[low, high]`` (cell midpoints, 3 digits).

    Examples:
        >>> start_lrs(4, 1e-3, 1.0)
        [0.00237, 0.0133, 0.075, 0.422]
    """
    ratio = math.log(high / low)
    return [_round_lr(low * math.exp(ratio * (i + 0.5) / n), low, high) for i in range(n)]


@dataclass
class _Explore:
    """Ray PBT's ``custom_explore_fn``: perturb the lr of a copied config, inside the range."""

    low: float
    high: float
    seed: int
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        lr = float(config["lr"])
        if self.rng.random() < RESAMPLE_PROBABILITY:
            lr = self.low * math.exp(self.rng.random() * math.log(self.high / self.low))
        else:
            lr *= self.rng.choice(PERTURB_FACTORS)
        return {**config, "lr": _round_lr(lr, self.low, self.high)}


# --------------------------------------------------------------------------
# A member (runs in a Ray worker)
# --------------------------------------------------------------------------


@dataclass
class _Lineage:
    """What a member's checkpoints carry besides the task's state."""

    member: str
    history: History
    events: list[dict[str, Any]]
    reports: int = 0
    restored_step: int | None = None

    @classmethod
    def begin(cls, member: str, lr: float, payload: dict[str, Any] | None) -> _Lineage:
        if payload is None:
            return cls(member, [(0, lr)], [])
        step = int(payload["step"])
        events = list(payload["events"])
        if payload["member"] != member:  # an exploit: another member's checkpoint
            events.append(
                {
                    "member": member,
                    "from": payload["member"],
                    "step": step,
                    "from_lr": float(payload["lr"]),
                    "lr": lr,
                }
            )
        history = continue_history(payload["history"], step, lr)
        return cls(member, history, events, int(payload["reports"]), step)

    def payload(self, step: int, lr: float, state: bytes) -> dict[str, Any]:
        return {
            "member": self.member,
            "step": step,
            "lr": lr,
            "history": list(self.history),
            "events": list(self.events),
            "reports": self.reports,
            "state": state,
        }

    def metrics(self) -> dict[str, Any]:
        return {
            "reports": self.reports,
            "history": json.dumps(self.history),
            "events": json.dumps(self.events),
        }


class _MemberTrial(Trial):
    """A :class:`Trial` whose reports go to Ray Tune with the pending checkpoint."""

    def __init__(self, *args: Any, lineage: _Lineage, restored: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.schedule = MemberLr(self._config.group_lr)
        self._lineage = lineage
        self._restore = restored
        self._pending: bytes | None = None

    def checkpoint(self, state: Any) -> None:
        self._pending = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def report(self, step: int, value: Any) -> None:
        super().report(step, value)
        if step >= self.steps:
            return  # the last report goes with the final metric, after the task returns
        from ray import tune

        lineage = self._lineage
        lineage.reports += 1
        metrics = {
            "metric": float(self._result.evals[self._task.metric][-1]),
            "step": step,
            "lr": self.schedule.value,
            **lineage.metrics(),
        }
        pending, self._pending = self._pending, None
        if pending is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="lrkit-pbt-") as folder:
            data = lineage.payload(step, self.schedule.value, pending)
            (Path(folder) / CHECKPOINT_FILE).write_bytes(
                pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
            )
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _member(config: dict[str, Any]) -> None:
    """One member of the population: a Ray Tune function trainable."""
    from ray import tune

    for folder in config["path"]:
        if folder not in sys.path:
            sys.path.append(folder)
    for name in _RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)  # this worker's, not the caller's
    member = tune.get_context().get_trial_id()
    payload: dict[str, Any] | None = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            payload = pickle.loads((Path(folder) / CHECKPOINT_FILE).read_bytes())
    run = RunConfig(
        config["task"],
        config["optimizer"],
        "constant()",
        config["lr"],
        config["seed"],
        config["budget"],
    )
    lineage = _Lineage.begin(member, run.group_lr, payload)
    restored = None if payload is None else pickle.loads(payload["state"])
    make = functools.partial(_MemberTrial, lineage=lineage, restored=restored)
    result = execute(run, make_trial=make)
    worst = -math.inf if result.mode == "max" else math.inf
    final = result.final if result.finished and result.final is not None else worst
    tune.report(
        {
            "metric": final,
            "step": result.steps,
            "lr": run.group_lr,
            "final": result.final,
            "status": result.status,
            "reason": result.reason or "",
            "restored_step": -1 if lineage.restored_step is None else lineage.restored_step,
            **lineage.metrics(),
        }
    )


# --------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------


@dataclass(repr=False)
class PbtResults:
    """What :func:`tune_pbt` ran and found (the fields :class:`~lrkit.bench.tune.TuneResults`
    has, plus the population's).

    Attributes:
        pbt_schedule: The lr schedule the best member followed, as a spec
            (``None`` if no member finished).
        members: One dict per member: ``member``, ``trial_id``,
            ``optimizer``, ``start_lr``, ``lr`` (at the end), ``status``,
            ``final``, ``history`` (``[[start_step, lr], ...]``), ``schedule``
            (its spec), ``exploits`` (how many times it took another's
            checkpoint; counted along its lineage).
        exploits: Every exploit found along the members' lineages:
            ``member`` took ``from``'s checkpoint at ``step`` and went on at
            ``lr`` (``from_lr`` before).
    """

    runs: list[RunResult]
    trials: list[dict[str, Any]]
    best: Any
    study: str
    storage: str
    out: Path
    ran: int = 0
    failed: int = 0
    stopped: str | None = None
    notes: list[str] = field(default_factory=list)
    pbt_schedule: str | None = None
    members: list[dict[str, Any]] = field(default_factory=list)
    exploits: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Any:
        return iter(self.members)

    def counts(self) -> dict[str, int]:
        """Members by status (``ok``, ``diverged``, ``error``, ...)."""
        out: dict[str, int] = {}
        for m in self.members:
            out[m["status"]] = out.get(m["status"], 0) + 1
        return out

    def __repr__(self) -> str:
        best = self.best
        head = "no member finished" if best is None else f"best {best.metric}={best.value:.4g}"
        return (
            f"PbtResults({len(self.members)} members, {len(self.exploits)} exploits; {head}; "
            f"pbt_schedule={self.pbt_schedule!r})"
        )


@contextlib.contextmanager
def _ray_session(num_cpus: int) -> Iterator[None]:
    """A new local Ray for this call (stopped at the end, see
    :func:`~lrkit.bench.ray_executor.start_local_ray`), or the session already running."""
    import ray

    from lrkit.bench.ray_executor import RayUnavailable, start_local_ray
    from lrkit.bench.tune import TuneError

    if ray.is_initialized():
        yield
        return
    try:
        local = start_local_ray(num_cpus)
    except RayUnavailable as err:
        raise TuneError(f"--search pbt: {err}") from None
    try:
        yield
    finally:
        local.stop()


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Ray Tune without its console tables, notes, and CSV/JSON/TensorBoard result files."""
    key = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
    before = os.environ.get(key)
    os.environ[key] = "1"
    loggers = [logging.getLogger(name) for name in _RAY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _worker_path(task: Task) -> list[str]:
    """Folders a Ray worker needs on ``sys.path`` to load the task like this process."""
    folders = [os.getcwd()]
    left = task.ref.rpartition(":")[0]
    if left.endswith(".py"):
        folders.append(str(Path(left).resolve().parent))
    return folders


def _absolute_ref(ref: str) -> str:
    """A file reference made absolute (Ray workers run in other folders)."""
    left, _, name = ref.rpartition(":")
    if left.endswith(".py") or "/" in left or os.sep in left:
        return f"{Path(left).resolve()}:{name}"
    return ref


def tune_pbt(
    task: Sequence[str | Task] | str | Task,
    *,
    optimizers: Sequence[str] | str,
    schedules: Sequence[str] | str = "constant()",
    lr_range: Sequence[float] | str = (1e-5, 1.0),
    population: int = 8,
    seeds: int = 1,
    workers: int = 2,
    storage: str | None = None,
    out: str | Path = "lrkit-tune",
    budget: float = 1.0,
    seed: int = 0,
    progress: TuneProgress | None = None,
    on_note: Callable[[str], None] | None = None,
) -> TuneResults:
    """Population-based training of the lr of one task (``lrkit.tune(..., search="pbt")``).

    Args:
        task: One task declared ``@lrkit.task(..., checkpoints=True)``.
        optimizers: Optimizer names, dealt to the members round-robin (an
            exploit copies the stronger member's optimizer with its state).
        schedules: Only ``"constant()"``: PBT moves a constant lr.
        lr_range: ``(low, high)`` or ``"LOW,HIGH"``: start lrs and perturbed
            lrs stay inside it.
        population: Members (``--trials``), >= 2.
        seeds: Must be 1 (members share seed 0).
        workers: Members training at once: the local Ray's CPUs (0: 2).
        storage: Not used (a PBT run does not resume); a note says so.
        out: Output folder: ``results.json``.
        budget: Scales the task's step budget.
        seed: Seeds the explore step's draws.
        progress: Not used (Ray trains the members; the result lists them).
        on_note: Called with each note.

    Returns:
        A :class:`PbtResults` (typed as the :class:`~lrkit.bench.tune.TuneResults`
        it extends).

    Raises:
        TuneError: Bad input, a task without ``checkpoints=True``, an
            LR-free optimizer, Ray Tune not installed; nothing ran.
        OSError: ``results.json`` cannot be written.
    """
    from lrkit.bench.grid import GridError, make_grid, split_names
    from lrkit.bench.optimizers import get_optimizer
    from lrkit.bench.trial import load_task
    from lrkit.bench.tune import TuneError, _int_option, _lr_range, _one_task

    def note(text: str) -> None:
        if on_note is not None:
            on_note(text)

    # -- the input ---------------------------------------------------------
    low, high = _lr_range(lr_range)
    size = _int_option(population, "--trials (the population of --search pbt)", 2)
    workers = _int_option(workers, "--workers", 0)
    seed = _int_option(seed, "seed", 0)
    if seeds != 1:
        raise TuneError(
            f"--search pbt: members share one seed (they swap checkpoints); --seeds must be 1, "
            f"got {seeds!r}"
        )
    one = _one_task(task)
    try:
        optimizer_names = split_names(optimizers, "--optimizers")
        specs = split_names(schedules, "--schedules")
    except GridError as err:
        raise TuneError(str(err)) from None
    if [s.replace(" ", "") for s in specs] != ["constant()"]:
        raise TuneError(
            "--search pbt moves a constant lr (the schedule it finds is a join of constants); "
            f"give --schedules 'constant()' or leave it out, got {', '.join(specs) or 'none'}"
        )
    if not optimizer_names:
        raise TuneError("--optimizers: give at least one optimizer (e.g. adam)")
    try:
        grid = make_grid(
            tasks=[one],  # type: ignore[list-item]
            optimizers=optimizer_names,
            schedules=["constant()"],
            lrs=[low, high],
            seeds=1,
            budget=budget,
        )
    except GridError as err:
        raise TuneError(str(err)) from None
    task_obj = load_task(grid.tasks[0])
    if not task_obj.checkpoints:
        raise TuneError(
            f"--search pbt: task {task_obj.ref!r} does not declare checkpoints; members "
            "exchange checkpoints, so declare it @lrkit.task(..., checkpoints=True), call "
            "trial.checkpoint(state) before each trial.report and continue from "
            "trial.restore() when it is not None"
        )
    if "<locals>" in task_obj.ref:
        raise TuneError(
            f"task {task_obj.ref!r} is defined inside a function: Ray workers cannot load it; "
            "define it at a module's top level"
        )
    for name in grid.optimizers:
        spec = get_optimizer(name)
        if spec.lr_free or spec.own_schedule is not None:
            raise TuneError(
                f"--search pbt moves the lr; optimizer {name!r} sets its own step size, "
                "choose optimizers with an lr (adam, adamw, sgd, ...)"
            )
    try:
        import ray  # noqa: F401
        from ray import tune as ray_tune
    except ImportError:
        raise TuneError("--search pbt needs Ray Tune: pip install 'lrkit[ray]'") from None
    if storage:
        note("--storage and --study are not used by --search pbt (a PBT run does not resume)")
    out_path = Path(out)
    if out_path.exists() and not out_path.is_dir():
        raise TuneError(f"--out {str(out_path)!r} exists and is not a folder")
    steps = task_obj.budget(grid.budget)
    ref = _absolute_ref(task_obj.ref)
    lrs = start_lrs(size, low, high)
    starts = [
        {"lr": lr, "optimizer": grid.optimizers[i % len(grid.optimizers)]}
        for i, lr in enumerate(lrs)
    ]
    constants = {
        "task": ref,
        "seed": 0,
        "budget": grid.budget,
        "path": _worker_path(task_obj),
    }
    space = {
        "task": task_obj.ref,
        "metric": task_obj.metric,
        "mode": task_obj.mode,
        "optimizers": list(grid.optimizers),
        "schedules": ["constant()"],
        "lr_range": [low, high],
        "seeds": 1,
        "budget": grid.budget,
        "population": size,
        "perturb_every": PERTURB_EVERY,
        "steps": steps,
    }

    # -- the population ----------------------------------------------------
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.search.basic_variant import BasicVariantGenerator

    scheduler = PopulationBasedTraining(
        time_attr="reports",
        metric="metric",
        mode=task_obj.mode,
        perturbation_interval=PERTURB_EVERY,
        quantile_fraction=QUANTILE_FRACTION,
        custom_explore_fn=_Explore(low, high, seed),
        log_config=False,
    )
    param_space = {
        "lr": ray_tune.loguniform(low, high),
        "optimizer": ray_tune.choice(list(grid.optimizers)),
        **constants,
    }
    out_path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lrkit-pbt-ray-") as ray_dir:
        with _ray_session(workers or 2):
            tuner = ray_tune.Tuner(
                ray_tune.with_resources(_member, {"cpu": 1}),
                param_space=param_space,
                tune_config=ray_tune.TuneConfig(
                    scheduler=scheduler,
                    search_alg=BasicVariantGenerator(points_to_evaluate=starts),
                    num_samples=size,
                    reuse_actors=True,
                ),
                run_config=ray_tune.RunConfig(
                    name="pbt", storage_path=ray_dir, verbose=0, log_to_file=False
                ),
            )
            with _quiet_tune():
                grid_results = tuner.fit()
        rows = [
            (r.metrics or {}, r.error, r.config or {})
            for r in (grid_results[i] for i in range(len(grid_results)))
        ]
    members = _members(rows, starts)
    results = _results(members, task_obj, grid.budget, space, out_path)
    _write_results(results, space, seed)
    return results  # type: ignore[return-value]


def _state(status: str) -> str:
    return "FAIL" if status == "error" else "COMPLETE"


def _members(
    rows: list[tuple[dict[str, Any], Any, dict[str, Any]]], starts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One plain dict per member, numbered in the order Ray created them."""
    ordered = sorted(rows, key=lambda row: str(row[0].get("trial_id", "")))
    members = []
    for number, (metrics, error, config) in enumerate(ordered):
        history = [(int(s), float(v)) for s, v in json.loads(metrics.get("history", "[]"))]
        events = json.loads(metrics.get("events", "[]"))
        trial_id = str(metrics.get("trial_id", ""))
        status = str(metrics.get("status") or "error")
        reason = metrics.get("reason") or None
        if error is not None:
            status, reason = "error", f"{type(error).__name__}: {error}"
        final = metrics.get("final") if status in ("ok", "rescued") else None
        members.append(
            {
                "member": number,
                "trial_id": trial_id,
                "optimizer": config.get("optimizer"),
                "start_lr": starts[number]["lr"] if number < len(starts) else None,
                "lr": history[-1][1] if history else config.get("lr"),
                "status": status,
                "reason": reason,
                "final": None if final is None else float(final),
                "history": [list(p) for p in history],
                "schedule": history_spec(history) if history else None,
                "exploits": sum(1 for e in events if e.get("member") == trial_id),
                "events": events,
            }
        )
    return members


def _results(
    members: list[dict[str, Any]], task: Task, budget: float, space: dict[str, Any], out: Path
) -> PbtResults:
    import shlex

    from lrkit.bench.tune import TuneBest

    done = [m for m in members if m["final"] is not None and math.isfinite(m["final"])]
    sign = -1.0 if task.mode == "max" else 1.0
    best_member = min(done, key=lambda m: (sign * m["final"], m["member"])) if done else None
    best = None
    schedule = None
    if best_member is not None:
        schedule = best_member["schedule"]
        command = (
            f"lrkit compare --tasks {shlex.quote(task.ref)} "
            f"--optimizers {shlex.quote(best_member['optimizer'])} "
            f"--schedules {shlex.quote(schedule)} --seeds 1"
        )
        if budget != 1.0:
            command += f" --budget {budget:g}"
        best = TuneBest(
            trial=best_member["member"],
            task=task.ref,
            optimizer=best_member["optimizer"],
            schedule=schedule,
            lr=float(best_member["lr"]),
            value=float(best_member["final"]),
            metric=task.metric,
            mode=task.mode,
            spec=schedule,
            command=command,
        )
    seen: dict[tuple[str, str, int], dict[str, Any]] = {}
    for m in members:
        for e in m["events"]:
            seen.setdefault((e["member"], e["from"], e["step"]), e)
    ids = {m["trial_id"]: m["member"] for m in members}
    exploits = [
        {**e, "member": ids.get(e["member"], e["member"]), "from": ids.get(e["from"], e["from"])}
        for e in sorted(seen.values(), key=lambda e: (e["step"], e["member"]))
    ]
    trials = [
        {"number": m["member"], "state": _state(m["status"]), "value": m["final"], **m}
        for m in members
    ]
    return PbtResults(
        runs=[],
        trials=trials,
        best=best,
        study="pbt",
        storage="",
        out=out,
        ran=len(members),
        failed=sum(1 for m in members if m["status"] == "error"),
        pbt_schedule=schedule,
        members=members,
        exploits=exploits,
    )


def _write_results(results: PbtResults, space: dict[str, Any], seed: int) -> None:
    """Write ``OUT/results.json``."""
    import lrkit
    from lrkit.bench.compare import write_json_atomic

    doc = {
        "lrkit_version": lrkit.__version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "search": "pbt",
        "direction": "maximize" if space["mode"] == "max" else "minimize",
        "space": space,
        "seed": seed,
        "counts": results.counts(),
        "best": None if results.best is None else results.best.to_dict(),
        "pbt_schedule": results.pbt_schedule,
        "members": results.members,
        "exploits": results.exploits,
    }
    write_json_atomic(results.out / "results.json", doc)
