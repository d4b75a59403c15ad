"""The lr finder on the built-in tasks: ``lrkit find-lr`` and ``compare --lrs auto``.

:func:`suggest_lr` runs :func:`lrkit.torch.find_lr` on the very model,
optimizer and batch stream that :func:`lrkit.bench.run.execute` would train
for that task, optimizer and seed: Python's and torch's generators seeded
with ``seed``, ``task.build(seed)``, the optimizer from its registry entry,
and ``problem.batches(task.batch_size, Generator().manual_seed(seed))``, each
batch's loss being ``problem.loss(model, batch)``. The caller's global RNG
states are left as they were.

:func:`centred_lrs` turns a suggestion into the grid of ``compare --lrs
auto`` (5 learning rates half a decade apart, the suggestion in the middle),
and :class:`FinderCache` keeps the suggestions next to a compare's run store,
so that a resumed compare reuses them and so runs the very same grid.

Examples:
    >>> centred_lrs(0.01)
    [0.001, 0.00316, 0.01, 0.0316, 0.1]
    >>> centred_lrs(0.0123, points=3, spacing=1.0)
    [0.00123, 0.0123, 0.123]
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrkit.bench.optimizers import get_optimizer
from lrkit.bench.trial import load_task, register_task

if TYPE_CHECKING:
    from lrkit.torch.finder import FinderResult

__all__ = [
    "AUTO_POINTS",
    "AUTO_SPACING",
    "FINDER_FORMAT",
    "FinderCache",
    "FinderSettings",
    "LrFreeError",
    "auto_lrs",
    "centred_lrs",
    "result_to_dict",
    "suggest_lr",
]

#: ``compare --lrs auto``: learning rates per (task, optimizer) ...
AUTO_POINTS = 5

#: ... this many decades apart, centred on the suggestion (2 decades in all).
AUTO_SPACING = 0.5

#: Bumped whenever :func:`suggest_lr` changes what it computes, so that a
#: cached suggestion of an older version is never reused.
FINDER_FORMAT = 1


class LrFreeError(ValueError):
    """The optimizer sets its own lr: a range test over its lr means nothing."""


@dataclass(frozen=True)
class FinderSettings:
    """How :func:`suggest_lr` sweeps (the arguments of ``find_lr`` it passes on).

    Attributes:
        seed: Model initialisation and batch order, as in a run with that seed.
        min_lr, max_lr: The ramp's ends.
        num_steps: Optimizer updates per sweep.
        repeats: Sweeps over different batch orders (their mean is analysed).
        method: One of :data:`lrkit.finder.METHODS`.
    """

    seed: int = 0
    min_lr: float = 1e-7
    max_lr: float = 10.0
    num_steps: int = 100
    repeats: int = 1
    method: str = "default"

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-ready data."""
        return asdict(self)


def _check_optimizer(optimizer: str) -> None:
    spec = get_optimizer(optimizer)
    if spec.lr_free:
        raise LrFreeError(
            f"optimizer {optimizer!r} is learning-rate free (its lr is a multiplier of its "
            "own rule): the lr finder does not apply; pick a torch optimizer such as "
            "sgd, momentum, adam or adamw"
        )
    if spec.needs_closure:
        raise ValueError(
            f"optimizer {spec.name!r} takes two gradients a step (opt.step(closure)); the lr "
            f"range test takes one: run it on {spec.base!r}, whose lr {spec.name} steps at"
        )


def suggest_lr(
    task: str,
    optimizer: str,
    *,
    seed: int = 0,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int = 100,
    repeats: int = 1,
    method: str = "default",
) -> FinderResult:
    """Run an lr range test on a task, as a run of ``execute`` would train it.

    A built-in task's model, optimizer and batches go to
    :func:`lrkit.torch.find_lr`. A user task (``file.py:name``), and a
    built-in one without a torch model (``digits_sgd``), runs itself
    (:func:`sweep_task`): its trial's schedule is the exponential ramp, and
    the sweep stops once the loss it logs diverges.

    Args:
        task: A built-in name, ``path/to/file.py:name`` or ``package.module:name``.
        optimizer: A name from :data:`lrkit.bench.optimizers.OPTIMIZERS`, not
            an LR-free one.
        seed: The run seed whose model and batch order are swept, >= 0.
        min_lr: The first lr of the ramp, > 0.
        max_lr: The last lr, > ``min_lr``.
        num_steps: Updates per sweep, >= 2.
        repeats: Sweeps over different batch orders, >= 1 (each one continues
            the seed's batch stream).
        method: The suggestion rule, one of :data:`lrkit.finder.METHODS`.

    Returns:
        The :class:`lrkit.torch.FinderResult` (its ``updates`` are the
        training steps spent).

    Raises:
        ValueError: If a name is unknown, a number out of range, or the
            task does not take the optimizer (``digits_sgd``: sgd only).
        LrFreeError: If the optimizer is learning-rate free.

    Examples:
        >>> result = suggest_lr("quadratic", "sgd", num_steps=40)
        >>> result.updates <= 40, len(result.lrs) == len(result.losses)
        (True, True)
    """
    import torch

    from lrkit.torch.finder import find_lr

    spec = get_optimizer(optimizer)
    _check_optimizer(optimizer)
    info = load_task(task)
    info.check_optimizer(optimizer)
    if not info.builtin or info.builder is None:  # no torch model to hand find_lr: the sweep
        return sweep_task(
            info,
            optimizer,
            seed=seed,
            min_lr=min_lr,
            max_lr=max_lr,
            num_steps=num_steps,
            repeats=repeats,
            method=method,
        )
    python_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            problem = info.build(seed)
            params = [p for p in problem.model.parameters() if p.requires_grad]
            opt = spec.create(params, spec.group_lr(min_lr))
            batches = problem.batches(info.batch_size, torch.Generator().manual_seed(seed))
            return find_lr(
                problem.model,
                opt,
                None,
                batches,
                min_lr=min_lr,
                max_lr=max_lr,
                num_steps=num_steps,
                repeats=repeats,
                method=method,
                step_fn=problem.loss,
            )
        finally:
            random.setstate(python_state)


class _Ramp:
    """The range test's lr: ``min_lr`` rising exponentially to ``max_lr`` at ``steps - 1``.

    A controller-shaped object (``lr(step)``, ``observe``), so
    :class:`lrkit.torch.Scheduler` drives an optimizer with it; calling it
    gives the lr too, for tasks that read ``trial.schedule(step)``.
    """

    def __init__(self, min_lr: float, max_lr: float, steps: int) -> None:
        self.min_lr, self.max_lr, self.steps = min_lr, max_lr, steps

    def lr(self, step: int) -> float:
        frac = min(step, self.steps - 1) / max(self.steps - 1, 1)
        return float(self.min_lr * (self.max_lr / self.min_lr) ** frac)

    __call__ = lr

    def values(self) -> Any:
        import numpy as np

        return np.array([self.lr(t) for t in range(self.steps)])

    def observe(self, metric: float, step: int) -> bool:
        return False

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def __str__(self) -> str:
        return f"range_test(min_lr={self.min_lr:g}, max_lr={self.max_lr:g}, steps={self.steps})"


def sweep_task(
    task: Any,
    optimizer: str,
    *,
    seed: int = 0,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int = 100,
    repeats: int = 1,
    method: str = "default",
    beta: float = 0.98,
    diverge: float = 5.0,
) -> FinderResult:
    """An lr range test of a user task: the task trains on the ramp and logs its loss.

    The task runs ``num_steps`` steps (its ``trial.steps``) with
    ``trial.schedule`` rising exponentially from ``min_lr`` to ``max_lr``
    (a torch task gets it through ``trial.scheduler``); each
    ``trial.log(step, loss=...)`` is a point of the curve, and the run is
    stopped (as a tuner prunes) once the smoothed loss exceeds ``diverge``
    times its best, or goes NaN/inf. Repeat ``i`` runs seed ``seed + i``.

    Raises:
        ValueError: The task logged fewer than 2 losses (it must call
            ``trial.log(step, loss=...)`` every step), or raised.
    """
    from lrkit import finder
    from lrkit.bench.run import RunConfig, RunResult, _seed_everything
    from lrkit.bench.trial import Pruned, Trial
    from lrkit.controllers import Diverged
    from lrkit.finder import FinderResult

    info = load_task(task)
    register_task(info)  # a function handed in from Python: found by its reference
    ramp = _Ramp(min_lr, max_lr, num_steps)
    runs = []
    updates = 0
    for repeat in range(repeats):
        config = RunConfig(
            info.ref,
            optimizer,
            "constant()",
            lr=min_lr,
            seed=seed + repeat,
            budget=num_steps / info.steps,
        )
        result = RunResult(
            key="",
            config=config.to_dict(),
            identity={},
            status="ok",
            metric=info.metric,
            mode=info.mode,
            target=None,
            steps=num_steps,
        )
        _seed_everything(config.seed)
        trial = Trial(config, result)
        trial.schedule = ramp
        trial._rule = None  # the sweep's own stop rule instead

        def stop(step: int, value: float, result: RunResult = result) -> bool:
            import numpy as np

            curve = np.asarray(result.loss, dtype=float)
            return finder.divergence_index(curve, beta=beta, diverge=diverge) is not None

        trial._on_loss = stop
        try:
            info(trial)
        except (Pruned, Diverged):
            pass
        except Exception as exc:
            raise ValueError(
                f"range test of task {info.name!r}: the task raised {type(exc).__name__}: {exc}"
            ) from exc
        losses = [v for v in result.loss[:num_steps]]
        if len(losses) < 2:
            raise ValueError(
                f"range test of task {info.name!r}: it logged {len(losses)} loss(es); a task "
                "must call trial.log(step, loss=...) at every step for the lr finder"
            )
        updates += len(losses)
        import numpy as np

        runs.append(np.asarray(losses, dtype=float))
    return FinderResult.from_runs(
        ramp.values(), runs, method=method, beta=beta, diverge=diverge, updates=updates
    )


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def result_to_dict(result: FinderResult) -> dict[str, Any]:
    """A :class:`~lrkit.torch.FinderResult` as strict-JSON data (NaN/inf -> ``None``).

    Keys: ``suggestion``, ``interval``, ``confidence``, ``reason``, ``method``,
    ``stopped``, ``updates``, ``run_suggestions``, ``lrs``, ``losses``,
    ``smoothed``.
    """
    return {
        "suggestion": _finite(result.suggestion),
        "interval": [_finite(x) for x in result.interval],
        "confidence": float(result.confidence),
        "reason": result.reason,
        "method": result.method,
        "stopped": result.stopped,
        "updates": int(result.updates),
        "run_suggestions": [_finite(x) for x in result.run_suggestions],
        "lrs": [_finite(x) for x in result.lrs.tolist()],
        "losses": [_finite(x) for x in result.losses.tolist()],
        "smoothed": [_finite(x) for x in result.smoothed.tolist()],
    }


def centred_lrs(
    suggestion: float, points: int = AUTO_POINTS, spacing: float = AUTO_SPACING
) -> list[float]:
    """``points`` learning rates ``spacing`` decades apart, centred on ``suggestion``.

    Each is rounded to 3 significant digits, so grids print and key cleanly.

    Args:
        suggestion: The centre, a finite number > 0.
        points: How many, >= 1 (odd counts put the suggestion itself in).
        spacing: Decades between neighbours, > 0.

    Returns:
        The increasing learning rates.

    Raises:
        ValueError: If an argument is out of range.
    """
    if not (isinstance(suggestion, int | float) and math.isfinite(suggestion) and suggestion > 0):
        raise ValueError(f"centred_lrs: suggestion must be a finite number > 0, got {suggestion!r}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise ValueError(f"centred_lrs: points must be an integer >= 1, got {points!r}")
    if not (isinstance(spacing, int | float) and math.isfinite(spacing) and spacing > 0):
        raise ValueError(f"centred_lrs: spacing must be a finite number > 0, got {spacing!r}")
    centre = math.log10(suggestion)
    half = (points - 1) / 2
    return [float(f"{10 ** (centre + spacing * (i - half)):.3g}") for i in range(points)]


# --------------------------------------------------------------------------
# compare --lrs auto: one suggestion per (task, optimizer), cached
# --------------------------------------------------------------------------


class FinderCache:
    """Suggestions of :func:`suggest_lr` kept in a JSON file, one per (task, optimizer).

    An entry is reused only if the task's identity (name, version, text hash),
    the settings and :data:`FINDER_FORMAT` are the same, so a resumed
    ``compare --lrs auto`` centres its grids where the first call did and
    finds its runs in the store. The file is rewritten whole (through a
    temporary file) after each new suggestion.

    Args:
        path: The JSON file (created when the first suggestion is made).
        settings: How to sweep.
    """

    def __init__(self, path: str | Path, settings: FinderSettings | None = None) -> None:
        self.path = Path(path)
        self.settings = settings if settings is not None else FinderSettings()
        self.computed = 0
        self._entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            entries = data.get("entries") if isinstance(data, dict) else None
            if isinstance(entries, dict):
                self._entries = entries

    def _identity(self, task: str, optimizer: str) -> dict[str, Any]:
        return {
            "format": FINDER_FORMAT,
            "task": load_task(task).identity(),
            "optimizer": optimizer,
            "settings": self.settings.to_dict(),
        }

    def get(
        self,
        task: str,
        optimizer: str,
        compute: Callable[..., FinderResult] = suggest_lr,
    ) -> dict[str, Any]:
        """Return the entry of (task, optimizer), computing and saving it if missing.

        Returns:
            ``{"identity", "suggestion", "interval", "confidence", "reason",
            "updates"}`` (``suggestion`` is ``None`` when the sweep gave none).

        Raises:
            LrFreeError: If the optimizer is learning-rate free.
            OSError: If the file cannot be written.
        """
        _check_optimizer(optimizer)
        key = f"{task}/{optimizer}"
        identity = self._identity(task, optimizer)
        entry = self._entries.get(key)
        if isinstance(entry, dict) and entry.get("identity") == identity:
            return entry
        result = compute(task, optimizer, **self.settings.to_dict())
        full = result_to_dict(result)
        entry = {
            "identity": identity,
            **{k: full[k] for k in ("suggestion", "interval", "confidence", "reason", "updates")},
        }
        self._entries[key] = entry
        self.computed += 1
        self._save()
        return entry

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        doc = {"format": FINDER_FORMAT, "entries": self._entries}
        tmp.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def auto_lrs(
    pairs: Iterable[tuple[str, str]],
    cache: FinderCache,
    *,
    points: int = AUTO_POINTS,
    spacing: float = AUTO_SPACING,
    on_entry: Callable[[str, str, dict[str, Any], list[float]], None] | None = None,
) -> dict[tuple[str, str], tuple[float, ...]]:
    """The ``--lrs auto`` grid of each (task, optimizer), LR-free optimizers left out.

    Args:
        pairs: The (task, optimizer) pairs of the grid.
        cache: Where suggestions are read from and saved to.
        points, spacing: See :func:`centred_lrs`.
        on_entry: Called with ``(task, optimizer, entry, lrs)`` after each pair.

    Returns:
        ``{(task, optimizer): lrs}``.

    Raises:
        ValueError: If the finder gives no suggestion for a pair (the message
            says why and suggests explicit ``--lrs``).
    """
    grids: dict[tuple[str, str], tuple[float, ...]] = {}
    for task, optimizer in pairs:
        if get_optimizer(optimizer).lr_free:
            continue
        entry = cache.get(task, optimizer)
        suggestion = entry.get("suggestion")
        if suggestion is None:
            raise ValueError(
                f"--lrs auto: the lr finder gave no suggestion for task {task!r} with "
                f"optimizer {optimizer!r} ({entry.get('reason')}); give --lrs explicitly"
            )
        lrs = centred_lrs(float(suggestion), points, spacing)
        grids[(task, optimizer)] = tuple(lrs)
        if on_entry is not None:
            on_entry(task, optimizer, entry, lrs)
    return grids
