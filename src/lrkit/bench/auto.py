"""``lrkit auto``: the lr and the schedule chosen by lrkit, at a bounded cost.

How it decides (measured, see ``docs/auto.md`` and ``benchmarks/auto.py``):

1. **Lanes.** One run of the task per lr of a ladder a decade apart
   (:data:`LADDER`: 1e-5 ... 10), all with the same schedule shape: the lr held
   constant, then a cosine decay to 0 over the rest of the run
   (``wsd(..., decay_shape="cosine")``). The lanes race in lockstep
   (:class:`lrkit.bench.race.Race`): only one trains at a time, and a lane
   paused at a rung waits with its model in memory.
2. **Rungs.** At :data:`RUNGS` (fractions of the task's steps) the lanes are
   ranked by their mean training loss over the last quarter of the steps so
   far; the worst are stopped, until one is left at the last rung. A run
   that diverged or failed ranks last.
3. **The kept run.** The last lane standing simply goes on: its lr is held
   until just after the last rung, then decays. Its probing steps are part
   of it, so the whole cost is one run plus what the stopped lanes spent.

The rungs scale with the budget: ``max_cost - 1`` runs' worth of steps are
left for the stopped lanes, and the plan never spends more than that.

Why not the lr finder: its suggestion sat 0.007x to 1.8x from the best lr
of a cosine grid, and its curve's minimum 0.23x to 39x (9 tasks, Adam and
momentum, a sweep of a third of a run); and short full runs (cosine over an
eighth or a quarter of the steps) chose worse than the first quarter of
constant-lr runs. See ``docs/auto.md``.

Examples:
    >>> plan = plan_rungs(300, max_cost=1.5)
    >>> [(rung.step, rung.keep) for rung in plan]
    [(9, 3), (30, 2), (75, 1)]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lrkit.bench.optimizers import get_optimizer
from lrkit.bench.race import Lane, Race
from lrkit.bench.run import RunConfig, RunResult
from lrkit.bench.trial import Task, load_task, register_task

__all__ = [
    "LADDER",
    "RUNGS",
    "AutoError",
    "AutoFailed",
    "AutoResult",
    "Probe",
    "Rung",
    "auto",
    "plan_rungs",
]

#: The lanes' learning rates: a decade apart, wide enough for SGD and Adam alike.
LADDER = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)

#: ``(fraction of the task's steps, lanes kept)`` at ``max_cost=1.5``.
RUNGS = ((0.03, 3), (0.10, 2), (0.25, 1))

#: :data:`RUNGS` are set for this ``max_cost - 1``; they scale with it.
_BASE_EXTRA = 0.5

#: The last rung comes no later than this fraction of the run (the decay needs room).
MAX_LAST_RUNG = 0.5

#: The first rung compares the lanes after at least this many logged losses.
MIN_FIRST_RUNG = 3

#: The decay starts this many steps after the last rung: whatever order a task
#: logs and steps its scheduler in, the lr it already set is still the constant one.
DECAY_MARGIN = 2


class AutoError(ValueError):
    """``auto`` cannot run on this task or with these settings; the message says why."""


class AutoFailed(AutoError):
    """Every run ``auto`` started diverged or failed; the message gives their reasons."""


@dataclass(frozen=True)
class Rung:
    """A point of the race: after ``step`` logged losses, keep the best ``keep`` lanes."""

    step: int
    keep: int


@dataclass(frozen=True)
class Probe:
    """One lane of the race, as plain data.

    Attributes:
        lr: Its lr.
        status: ``"ok"`` (the kept run), ``"pruned"`` (stopped at a rung),
            ``"diverged"`` or ``"error"``.
        steps: Optimizer updates it made.
        scores: ``{rung step: mean training loss of the last quarter}``
            (``inf`` when diverged), at each rung it reached.
        reason: Why it ended early (diverged, failed), else ``""``.
        losses: Every training loss it logged.
    """

    lr: float
    status: str
    steps: int
    scores: dict[int, float] = field(default_factory=dict)
    reason: str = ""
    losses: list[float] = field(default_factory=list)


@dataclass
class AutoResult:
    """What :func:`auto` chose and what it cost.

    Attributes:
        lr: The chosen peak lr.
        schedule: The whole run's schedule as an lrkit spec, from step 0.
        metric: The task's final metric for the kept run (``None`` when it
            diverged); re-running the task with ``schedule`` and ``seed``
            gives it again.
        seed: The seed of every run.
        steps_spent: Every optimizer update ``auto`` caused, the kept run's
            included.
        task: The task's name; ``metric_name`` and ``mode`` its metric.
        optimizer: The optimizer name.
        steps: The task's steps (one run); ``cost`` is ``steps_spent / steps``.
        max_cost: The budget, in runs.
        status: The kept run's status (``"ok"``, ``"rescued"``, ``"diverged"``).
        edge: True when the chosen lr is an end of the ladder (the best may
            lie beyond it).
        probes: Every lane, the kept one included.
        rungs: The race's rungs.
        run: The kept run's :class:`~lrkit.bench.run.RunResult` (curves).
        wall_time: Seconds in all.
    """

    lr: float
    schedule: str
    metric: float | None
    seed: int
    steps_spent: int
    task: str
    metric_name: str
    mode: str
    optimizer: str
    steps: int
    max_cost: float
    status: str
    edge: bool
    probes: list[Probe]
    rungs: list[Rung]
    run: RunResult
    wall_time: float

    @property
    def cost(self) -> float:
        """Steps spent, in runs of the task."""
        return self.steps_spent / self.steps

    def __repr__(self) -> str:
        metric = "None" if self.metric is None else f"{self.metric:.4g}"
        return (
            f"AutoResult(lr={self.lr:g}, schedule='{self.schedule}', "
            f"{self.metric_name}={metric}, seed={self.seed}, steps_spent={self.steps_spent} "
            f"({self.cost:.2f} runs))"
        )

    def plot(self, path: str | Path) -> Path:
        """Write a PNG of the race: each lane's loss, where it stopped, and the chosen lr.

        See :func:`lrkit.plotting.plot_auto`.
        """
        from lrkit.plotting import plot_auto

        return plot_auto(self, path)

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON data (non-finite scores as ``None``), the kept run's curves included."""
        data = {
            name: getattr(self, name)
            for name in (
                "task",
                "optimizer",
                "lr",
                "schedule",
                "metric",
                "metric_name",
                "mode",
                "seed",
                "steps",
                "steps_spent",
                "max_cost",
                "status",
                "edge",
                "wall_time",
            )
        }
        data["cost"] = self.cost
        data["rungs"] = [asdict(rung) for rung in self.rungs]
        data["probes"] = [
            {
                **asdict(probe),
                "scores": {
                    str(k): (v if math.isfinite(v) else None) for k, v in probe.scores.items()
                },
                "losses": [v if math.isfinite(v) else None for v in probe.losses],
            }
            for probe in self.probes
        ]
        data["run"] = self.run.to_dict()
        return data


def plan_rungs(steps: int, max_cost: float, lanes: int = len(LADDER)) -> list[Rung]:
    """The race's rungs for a task of ``steps`` and a budget of ``max_cost`` runs.

    :data:`RUNGS`' fractions scaled by ``(max_cost - 1) / 0.5`` (the last no
    later than :data:`MAX_LAST_RUNG`), in steps, each at least one more than
    the one before; scaled down further while the stopped lanes could spend
    more than ``(max_cost - 1) * steps``.

    Raises:
        AutoError: If the stopped lanes could overspend the budget (too few
            steps, or ``max_cost`` too close to 1).
    """
    extra = max_cost - 1.0
    nominal = _worst_fraction(RUNGS, lanes)
    scale = min(extra / max(nominal, _BASE_EXTRA), MAX_LAST_RUNG / RUNGS[-1][0])
    while True:  # shrink until the worst case fits (rounding matters on short tasks)
        rungs: list[Rung] = []
        previous = 0
        for fraction, keep in RUNGS:
            step = max(previous + 1, math.floor(fraction * scale * steps))
            rungs.append(Rung(step, keep))
            previous = step
        if _worst_extra(rungs, lanes) <= extra * steps:
            break
        if rungs[0].step <= MIN_FIRST_RUNG:
            raise AutoError(
                f"auto: max_cost={max_cost:g} leaves {extra * steps:.0f} steps beside the kept "
                f"run of {steps}: too few to compare {lanes} lrs; raise max_cost or give "
                "the task more steps"
            )
        scale *= 0.95
    if rungs[0].step < MIN_FIRST_RUNG:
        # past MAX_LAST_RUNG a larger max_cost no longer moves the rungs
        capped = extra / max(nominal, _BASE_EXTRA) >= MAX_LAST_RUNG / RUNGS[-1][0]
        fix = "give the task more steps" if capped else "raise max_cost or give the task more steps"
        raise AutoError(
            f"auto: a task of {steps} steps with max_cost={max_cost:g} would compare the lrs "
            f"after {rungs[0].step} step(s); {fix}"
        )
    return rungs


def _worst_fraction(rungs: tuple[tuple[float, int], ...], lanes: int) -> float:
    """What ``rungs`` (as fractions) let the stopped lanes spend, in runs."""
    spent, alive = 0.0, lanes
    for fraction, keep in rungs:
        spent += (alive - keep) * fraction
        alive = keep
    return spent


def _worst_extra(rungs: list[Rung], lanes: int) -> int:
    """Updates the stopped lanes make at most: a lane stops at its ``step``-th logged loss."""
    spent, alive = 0, lanes
    for rung in rungs:
        spent += (alive - rung.keep) * rung.step
        alive = rung.keep
    return spent


def _check(task: Any, optimizer: str, max_cost: Any, seed: Any) -> Task:
    info = load_task(task)
    spec = get_optimizer(optimizer)
    if spec.lr_free:
        raise AutoError(
            f"auto: optimizer {optimizer!r} sets its own lr (lrkit's lr is only its multiplier); "
            "auto chooses the lr of sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw "
            "or amsgrad"
        )
    try:
        info.check_optimizer(optimizer)  # digits_sgd (a scikit-learn estimator): sgd only
    except ValueError as err:
        raise AutoError(f"auto: {err}") from None
    if isinstance(max_cost, bool) or not isinstance(max_cost, int | float):
        raise AutoError(f"auto: max_cost must be a number > 1 (runs), got {max_cost!r}")
    if not (math.isfinite(max_cost) and max_cost > 1):
        raise AutoError(
            f"auto: max_cost must be > 1 (the kept run alone costs one run), got {max_cost!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        # numpy's global generator, seeded for every run, takes seeds below 2**32
        raise AutoError(f"auto: seed must be an integer in [0, 2**32 - 1], got {seed!r}")
    return info


def _probe(lane: Lane, scores: dict[int, float]) -> Probe:
    result = lane.result
    assert result is not None
    reason = "" if result.status in ("ok", "rescued", "pruned") else (result.reason or "")
    return Probe(lane.config.lr, result.status, lane.steps_spent, scores, reason, lane.losses)


def auto(
    task: str | Task,
    *,
    optimizer: str = "adamw",
    max_cost: float = 1.5,
    seed: int = 0,
    on_event: Callable[[str], None] | None = None,
) -> AutoResult:
    """Choose the lr and the schedule of ``task`` by itself, at most ``max_cost`` runs' steps.

    Every lr of :data:`LADDER` starts a run of the task (``trial.steps`` is
    the task's own steps; ``trial.schedule`` is ``wsd(lr, steps,
    decay_steps=..., decay_shape="cosine")``). They race in lockstep and
    the worse ones are stopped at the rungs of :func:`plan_rungs`; the last
    one trains to the end and is the run returned. See the module docstring.

    The task must log its training loss at every step
    (``trial.log(step, loss=...)``) and train ``trial.steps`` steps.

    Args:
        task: A task reference (built-in name, ``file.py:name``,
            ``module:name``) or an ``@lrkit.task`` function.
        optimizer: An optimizer of ``lrkit compare`` that takes an lr.
        max_cost: The budget in runs of the task: every optimizer update
            counts, the kept run's included.
        seed: The seed of every run (model initialisation, batch order).
        on_event: Called with a line of text at each rung, every tenth of
            the kept run's steps, and at the end.

    Returns:
        The :class:`AutoResult`.

    Raises:
        AutoError: Bad settings, or a task that never logs its loss.
        AutoFailed: Every lane diverged or failed.
        lrkit.bench.trial.TaskLoadError: If the task cannot be loaded.
    """
    started = time.perf_counter()
    info = _check(task, optimizer, max_cost, seed)
    optimizer = get_optimizer(optimizer).name  # sam(...) forms as the runs name them
    register_task(info)
    steps = info.steps
    rungs = plan_rungs(steps, float(max_cost))
    decay_from = rungs[-1].step + DECAY_MARGIN
    shape = f"wsd(decay_steps={steps - decay_from}, decay_shape='cosine')"
    tell = on_event or (lambda line: None)
    scores: dict[int, dict[int, float]] = {}
    ranked: list[Lane] = []
    with Race() as race:
        lanes = [race.add(RunConfig(info.ref, optimizer, shape, lr=lr, seed=seed)) for lr in LADDER]
        for rung in rungs:
            contenders = race.live
            race.advance(rung.step)
            _check_logging(lanes, rung, info)
            ranked = sorted(contenders, key=_score)
            for lane in ranked:
                scores.setdefault(id(lane), {})[rung.step] = _score(lane)
            if not math.isfinite(_score(ranked[0])):
                raise AutoFailed(_all_failed(race.lanes, info, rung, ranked))
            for lane in ranked[rung.keep :]:
                race.stop(lane)
            tell(
                f"step {rung.step}/{steps}: kept lr "
                + ", ".join(f"{lane.config.lr:g}" for lane in ranked[: rung.keep])
                + " (mean loss "
                + ", ".join(f"{_score(lane):.4g}" for lane in ranked[: rung.keep])
                + ")"
            )
        kept = ranked[0]
        for tenth in range(1, 10):  # the rest of the kept run, told every tenth of the steps
            target = steps * tenth // 10
            if target > kept.logged and not kept.done:
                race.advance(target, [kept])
                if not kept.done:
                    tell(f"step {target}/{steps}: lr {kept.config.lr:g}, loss {_score(kept):.4g}")
        race.finish([kept])
    result = kept.result
    assert result is not None
    if result.status in ("error", "pruned"):  # the task's own failure, not the lr's
        raise AutoFailed(
            f"auto: the run kept for task {info.name!r} (lr {kept.config.lr:g}) "
            f"{'failed' if result.status == 'error' else 'pruned itself'} after the race, at "
            f"step {result.steps_done} of {steps}: {result.reason}"
        )
    probes = [_probe(lane, scores.get(id(lane), {})) for lane in race.lanes]
    spent = sum(probe.steps for probe in probes)
    out = AutoResult(
        lr=kept.config.lr,
        schedule=kept.config.filled_schedule,
        metric=result.final,
        seed=seed,
        steps_spent=spent,
        task=info.name,
        metric_name=info.metric,
        mode=info.mode,
        optimizer=optimizer,
        steps=steps,
        max_cost=float(max_cost),
        status=result.status,
        edge=kept.config.lr in (LADDER[0], LADDER[-1]),
        probes=probes,
        rungs=rungs,
        run=result,
        wall_time=time.perf_counter() - started,
    )
    tell(
        f"chose lr {out.lr:g}: {out.schedule}; {info.metric}="
        f"{'diverged' if out.metric is None else f'{out.metric:.4g}'}, "
        f"{spent} steps ({out.cost:.2f} runs)"
    )
    return out


def _score(lane: Lane) -> float:
    """What the lanes are ranked by: the mean training loss over the last quarter so far."""
    return lane.window(0.25)


def _check_logging(lanes: list[Lane], rung: Rung, info: Task) -> None:
    """A task that does not log its loss at every step: refused at the first rung.

    The rungs count logged losses while the budget counts steps: a task that
    logs every few steps would be compared late and overspend.
    """
    for lane in lanes:
        result = lane.result
        if result is not None and result.status == "error":
            continue
        if lane.logged and lane.last_step + 1 > 1.5 * lane.logged + 1:
            raise AutoError(
                f"auto: task {info.name!r} logged {lane.logged} training loss(es) over "
                f"{lane.last_step + 1} steps; auto compares runs by the loss of every step "
                "and counts its budget in steps: call trial.log(step, loss=...) at every step"
            )
        if lane.done and lane.logged < rung.step and result is not None and result.finished:
            raise AutoError(
                f"auto: task {info.name!r} finished a run after logging {lane.logged} training "
                f"loss(es); auto compares runs by their loss: call trial.log(step, loss=...) "
                "at every step and train trial.steps steps"
            )


def _all_failed(lanes: list[Lane], info: Task, rung: Rung, contenders: list[Lane]) -> str:
    reasons = sorted(
        {
            f"{lane.result.status}: {lane.result.reason}"
            for lane in contenders
            if lane.result is not None and lane.result.status in ("error", "diverged")
        }
    )
    lrs = ", ".join(f"{lane.config.lr:g}" for lane in contenders)
    if len(contenders) == len(lanes):
        head = f"auto: every run of task {info.name!r} diverged or failed by step {rung.step}"
    else:  # the ones still racing failed; the others were stopped at an earlier rung
        head = (
            f"auto: the runs of task {info.name!r} still racing at step {rung.step} all "
            f"diverged or failed (lrs {lrs}; the other lrs had been stopped at an earlier "
            "rung, ranked by their loss then)"
        )
        return f"{head}: " + "; ".join(reasons[:3])
    return f"{head} (lrs {lrs}): " + "; ".join(reasons[:3])
