"""``lrkit.compare``: a grid of runs on any tasks, stored, resumable, reported.

:func:`compare` does the whole job that ``lrkit compare`` prints: it checks
the grid (tasks by name, ``file.py:name``, ``module:name`` or as
``@lrkit.task`` functions), centres the learning rates on the lr finder's
suggestion under ``lrs="auto"``, runs what the store does not hold yet on
an executor, ranks the settings, and writes ``results.json`` and
``report.html`` (with ``--tensorboard`` / ``--csv`` logs when asked). It
returns a :class:`CompareResults`.

Example (a user task, run in this process)::

    import lrkit

    @lrkit.task(metric="loss", steps=50)
    def shrink(trial):
        x = 5.0
        for step in range(trial.steps):
            x -= trial.schedule(step) * 2 * x       # gradient of x**2
            trial.log(step, loss=x * x)
        return x * x

    results = lrkit.compare(shrink, optimizers=["sgd"], schedules=["cosine()"],
                            lrs=[0.01, 0.1], seeds=1, workers=0, out="shrink-report")
    print(results.best)
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrkit.bench.grid import (
    Grid,
    GridError,
    SettingSummary,
    as_batch_sizes,
    expand_grid,
    is_auto,
    make_grid,
    parse_lrs,
    pinned_specs,
    split_names,
    split_tasks,
    summarize,
    task_items,
    with_pair_lrs,
)
from lrkit.bench.progress import Progress
from lrkit.bench.run import RunConfig, RunResult
from lrkit.bench.runner import Executor, RunnerReport, run_grid
from lrkit.bench.store import RunStore
from lrkit.bench.trial import Task, load_task

__all__ = [
    "DEFAULT_OUT",
    "STORE_NAME",
    "CompareResults",
    "compare",
    "finder_cache_path",
    "write_json_atomic",
    "write_outputs",
]

#: ``lrkit compare``'s default output folder.
DEFAULT_OUT = Path("lrkit-report")

#: The store's file name inside the output folder, unless ``store=`` says otherwise.
STORE_NAME = "runs.sqlite"


@dataclass
class CompareResults:
    """What :func:`compare` ran and found.

    Attributes:
        runs: Every run of the grid (stored before or now), in grid order.
        summary: Per task, each optimizer x schedule at its best lr, best first.
        grid: The grid's axes as JSON-ready data.
        runner: What the runner did (ran now, from the store, retried, errors).
        store: The run store's path.
        out: The output folder (``None`` when nothing was written).
        notes: What the user should know about the grid (said once each).
    """

    runs: list[RunResult]
    summary: dict[str, list[SettingSummary]]
    grid: dict[str, Any]
    runner: RunnerReport
    store: Path
    out: Path | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self) -> Any:
        return iter(self.runs)

    @property
    def best(self) -> SettingSummary | None:
        """The best setting of the first task (``best_by_task`` has every task's)."""
        for rows in self.summary.values():
            return rows[0] if rows and rows[0].mean is not None else None
        return None

    @property
    def best_by_task(self) -> dict[str, SettingSummary | None]:
        """Each task's best setting (``None`` where no run finished)."""
        return {
            task: rows[0] if rows and rows[0].mean is not None else None
            for task, rows in self.summary.items()
        }

    @property
    def errors(self) -> list[RunResult]:
        """The runs whose task raised (status ``error``)."""
        return [r for r in self.runs if r.status == "error"]

    def __repr__(self) -> str:
        best = self.best
        head = (
            "no finished run"
            if best is None
            else f"best {best.optimizer} {best.schedule} lr={best.lr:g} "
            f"{best.metric}={best.mean:.4g}"
        )
        return f"CompareResults({len(self.runs)} runs, {len(self.errors)} errors; {head})"


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON to ``path`` through a temporary file, so it is never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_outputs(
    out: Path,
    grid: dict[str, Any],
    store_path: Path,
    results: list[RunResult],
    summary: dict[str, list[SettingSummary]],
) -> Path:
    """Write ``OUT/results.json``, then the HTML report and its PNGs; return results.json's path.

    results.json holds every run, and per task the summary rows and the
    advice (what to pick, how sure: :func:`lrkit.bench.advice.advise`).

    Raises:
        OSError: If a file cannot be written.
    """
    import lrkit
    from lrkit.bench.advice import advise_all
    from lrkit.bench.report import write_report

    results_path = out / "results.json"
    doc = {
        "lrkit_version": lrkit.__version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "grid": grid,
        "store": str(store_path),
        "store_resolved": str(store_path.resolve()),
        "summary": {task: [row.to_dict() for row in rows] for task, rows in summary.items()},
        "advice": {task: advice.to_dict() for task, advice in advise_all(summary).items()},
        "runs": [_with_diagnosis(r) for r in results],
    }
    write_json_atomic(results_path, doc)
    write_report(results, out)
    return results_path


def _with_diagnosis(result: RunResult) -> dict[str, Any]:
    """A run's ``to_dict()`` with the Monitor's diagnosis of its curves (None without a loss)."""
    from lrkit.bench.report import run_diagnosis

    found = run_diagnosis(result)
    return {**result.to_dict(), "diagnosis": None if found is None else found.to_dict()}


def finder_cache_path(store_path: Path) -> Path:
    """Where ``lrs="auto"`` keeps its suggestions: ``runs.sqlite`` -> ``runs.finder.json``."""
    return store_path.with_name(store_path.stem + ".finder.json")


def _auto_grid(
    grid: Grid, store_path: Path, note: Callable[[str], None]
) -> tuple[Grid, dict[str, Any]]:
    """``lrs="auto"``: each (task, optimizer)'s lrs centred on the finder's suggestion."""
    from lrkit.bench.find import AUTO_POINTS, AUTO_SPACING, FinderCache, auto_lrs

    cache = FinderCache(finder_cache_path(store_path))
    found: dict[str, Any] = {}

    def show(task: str, optimizer: str, entry: dict[str, Any], lrs: list[float]) -> None:
        low, high = entry["interval"]
        found[f"{task}/{optimizer}"] = {
            **{k: v for k, v in entry.items() if k != "identity"},
            "lrs": lrs,
        }
        low_note = "" if entry["confidence"] >= 0.5 else f" (low: {entry['reason']})"
        note(
            f"lr finder {task} x {optimizer}: {entry['suggestion']:.3g} "
            f"(interval {_g(low)}..{_g(high)}, confidence {entry['confidence']:.2f}{low_note}) "
            f"-> lrs {', '.join(f'{x:g}' for x in lrs)}"
        )

    note(
        f"--lrs auto: {AUTO_POINTS} lrs {AUTO_SPACING:g} decades apart around the lr finder's "
        f"suggestion (suggestions kept in {str(cache.path)!r})"
    )
    # A sam(...) optimizer steps at its base optimizer's lr with two gradients a step;
    # the range test takes one: its lrs are centred on the base optimizer's suggestion.
    swept = {o: _swept_optimizer(o) for o in grid.optimizers}
    for optimizer, base in swept.items():
        if base != optimizer:
            note(f"--lrs auto: {optimizer} takes the lrs found for {base}, whose step it takes")
    pairs = list(dict.fromkeys((t, swept[o]) for t in grid.tasks for o in grid.optimizers))
    try:
        found_lrs = auto_lrs(pairs, cache, on_entry=show)
    except ValueError as err:
        raise GridError(str(err)) from None
    pair_lrs = {
        (t, o): found_lrs[(t, swept[o])]
        for t in grid.tasks
        for o in grid.optimizers
        if (t, swept[o]) in found_lrs
    }
    return with_pair_lrs(grid, pair_lrs), found


def _swept_optimizer(name: str) -> str:
    """The optimizer whose range test gives ``name``'s lrs: a ``sam(...)``'s base, else itself."""
    from lrkit.bench.optimizers import get_optimizer

    spec = get_optimizer(name)
    return spec.base if spec.needs_closure and spec.base is not None else name


def _g(value: float | None) -> str:
    return "—" if value is None else f"{value:.2g}"


def _lr_values(lrs: Sequence[float | str] | str | None) -> tuple[bool, list[float] | None]:
    """(auto?, lrs) from numbers, ``"0.1,0.01"``, ``"logspace(1e-4,1,5)"`` or ``"auto"``."""
    if lrs is None:
        return False, None
    items = [lrs] if isinstance(lrs, str) else list(lrs)
    texts = [str(x) for x in items]
    if is_auto(texts):
        return True, None
    return False, parse_lrs(texts) if texts else None


def _run(
    configs: list[RunConfig],
    store: RunStore,
    workers: int | None,
    executor: Executor | str,
    address: str | None,
    progress: Progress | None,
) -> RunnerReport:
    """:func:`run_grid` on the executor named; a Ray is started only when a run is pending."""
    if not isinstance(executor, str):
        return run_grid(configs, store, executor=executor, progress=progress)
    done = store.done_keys()
    if executor == "local" or all(config.key() in done for config in configs):
        return run_grid(configs, store, workers=workers, progress=progress)
    from lrkit.bench.ray_executor import RayExecutor

    ray = RayExecutor(workers, address=address, tasks=sorted({c.task for c in configs}))
    try:
        report = run_grid(configs, store, executor=ray, progress=progress)
    except BaseException:
        ray.shutdown(kill=True)
        raise
    ray.shutdown()
    return report


def compare(
    tasks: Sequence[str | Task] | str | Task | None = None,
    *,
    optimizers: Sequence[str] | str | None = None,
    schedules: Sequence[str] | str | None = None,
    lrs: Sequence[float | str] | str | None = None,
    multipliers: Sequence[float | str] | None = None,
    seeds: int = 2,
    budget: float = 1.0,
    batch_sizes: Sequence[int | str] | str | None = None,
    workers: int | None = None,
    out: str | Path | None = DEFAULT_OUT,
    store: str | Path | None = None,
    executor: Executor | str | None = None,
    address: str | None = None,
    progress: Progress | None = None,
    on_note: Callable[[str], None] | None = None,
    tensorboard: str | Path | None = None,
    csv: bool = False,
) -> CompareResults:
    """Run optimizer x schedule x lr x seed on tasks; store every run; write the report.

    Args:
        tasks: Task names (``lrkit tasks``), ``path/to/file.py:name``,
            ``package.module:name`` or ``@lrkit.task`` functions; default
            ``digits`` and ``scales``. A function defined at a module's top
            level runs in worker processes; one defined elsewhere needs
            ``workers=0``.
        optimizers: Names (``sgd``, ``momentum``, ``adam``, ``adamw``, ...,
            ``prodigy``, ``sam(adamw, rho=0.05)``); default sgd, momentum,
            adam, adamw. A string may list several: ``"sam(sgd, rho=0.1),adam"``
            (commas inside parentheses do not split).
        schedules: Specs, ``lr`` and ``steps`` may be left out (``"cosine()"``);
            a string may list several, as ``optimizers``.
        lrs: Learning rates (numbers, ``"0.1,0.01"``, ``"logspace(1e-4,1,5)"``)
            or ``"auto"`` (centred on the lr finder's suggestion; built-in tasks).
        multipliers: For LR-free optimizers, multipliers of their own lr.
        seeds: Seeds 0..seeds-1 per setting.
        budget: Scales every task's step budget.
        batch_sizes: Batch sizes (ints, or ``"32,64,128"``): one more axis of
            the grid, each run's ``trial.batch_size``, at the same step
            budget. The summary ranks each batch size apart and the report
            plots the best lr against the batch size. Default: none (each
            task trains at its own).
        workers: Worker processes (default: the CPU count); 0: this process.
        out: Output folder (results.json, report.html, PNGs; the store by
            default); ``None`` writes nothing but the store.
        store: The SQLite run store (default ``OUT/runs.sqlite``); a rerun resumes.
        executor: ``"local"`` (the default: worker processes, or this
            process with ``workers=0``), ``"ray"`` (each run a Ray task:
            :mod:`lrkit.bench.ray_executor`; ``workers`` is then the runs in
            flight, default the CPUs), or an :class:`Executor` to run on
            (the caller shuts it down).
        address: With ``executor="ray"``: ``None`` starts a new local Ray
            for this call and stops it at the end; ``"auto"``,
            ``"HOST:6379"`` or ``"ray://HOST:10001"`` joins that cluster.
        progress: Told about each finished run.
        on_note: Called with each note about the grid as it is found
            (e.g. a spec that sets its own lr).
        tensorboard: Also write every run as a TensorBoard run under this folder.
        csv: Also write ``OUT/steps.csv``.

    Returns:
        A :class:`CompareResults`.

    Raises:
        GridError: A bad axis: unknown name, a task that cannot be loaded, a
            spec that does not parse (nothing ran).
        lrkit.bench.store.StoreError: The store cannot be used.
        WorkersFailed: Worker processes keep dying at start-up.
        TaskChanged: A task's code changed while its runs ran (see
            :class:`lrkit.bench.runner.TaskChanged`).
        lrkit.bench.ray_executor.RayUnavailable: (a ``GridError``) Ray is
            not installed, does not start, or the cluster cannot be reached.
        OSError: An output cannot be written.
    """
    notes: list[str] = []

    def note(text: str) -> None:
        notes.append(text)
        if on_note is not None:
            on_note(text)

    out_path = None if out is None else Path(out)
    if store is not None:
        store_path = Path(store)
    elif out_path is not None:
        store_path = out_path / STORE_NAME
    else:
        raise GridError("compare: give out= or store= (where the runs are kept)")
    if out_path is not None and out_path.exists() and not out_path.is_dir():
        raise GridError(f"--out {str(out_path)!r} exists and is not a folder")
    auto, lr_values = _lr_values(lrs)
    grid = make_grid(
        tasks=task_items(tasks),
        optimizers=split_names(optimizers, "--optimizers"),
        schedules=split_names(schedules, "--schedules"),
        lrs=lr_values,
        multipliers=(
            parse_lrs([str(m) for m in multipliers], what="--multipliers") if multipliers else None
        ),
        seeds=seeds,
        budget=budget,
        batch_sizes=as_batch_sizes(batch_sizes),
    )
    if executor is None:
        executor = "local"
    if isinstance(executor, str) and executor not in ("local", "ray"):
        raise GridError(f"--executor must be 'local' or 'ray', got {executor!r}")
    if address is not None and executor != "ray":
        raise GridError("--address is for --executor ray (the Ray cluster to join)")
    if executor == "ray" and workers is not None and workers < 1:
        raise GridError(f"--workers must be >= 1 with --executor ray, got {workers}")
    local = [ref for ref in grid.tasks if "<locals>" in ref]
    if local and (executor == "ray" or (workers != 0 and executor == "local")):
        raise GridError(
            f"task {local[0]!r} is defined inside a function, so worker processes cannot "
            "import it: pass workers=0, or define it at a module's top level"
        )
    for spec, lr in pinned_specs(grid).items():
        note(f"--lrs does not apply to {spec!r}: it sets its own lr ({lr:g}), and runs at that")
    if not split_names(optimizers, "--optimizers"):
        for ref in grid.tasks:
            task = load_task(ref)
            if task.optimizers is not None:
                note(
                    f"task {task.name!r} takes only {', '.join(task.optimizers)} (no --optimizers "
                    "given): it runs with that"
                )
    found: dict[str, Any] = {}
    if auto:
        grid, found = _auto_grid(grid, store_path, note)
    configs = expand_grid(grid)
    with RunStore(store_path) as run_store:
        report = _run(configs, run_store, workers, executor, address, progress)
        results = run_store.results(report.keys)
    order = {key: i for i, key in enumerate(report.keys)}
    results.sort(key=lambda r: order[r.key])
    results, split = split_tasks(results)  # two task files that name their task alike
    for name, names in split.items():
        note(f"task {name!r} names runs of {len(names)} tasks: ranked apart, as {', '.join(names)}")
    summary = summarize(results)
    grid_doc = grid.to_dict()
    if found:
        grid_doc["finder"] = found
    outcome = CompareResults(
        runs=results,
        summary=summary,
        grid=grid_doc,
        runner=report,
        store=store_path,
        out=out_path,
        notes=notes,
    )
    if out_path is not None:
        write_outputs(out_path, grid_doc, store_path, results, summary)
        if csv:
            from lrkit.bench.export import write_csv

            write_csv(results, out_path / "steps.csv")
    if tensorboard is not None:
        from lrkit.bench.export import write_tensorboard

        write_tensorboard(results, tensorboard)
    return outcome
