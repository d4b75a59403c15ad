"""Grids of runs for ``lrkit compare``: parsing, expansion and a summary.

A grid is tasks x optimizers x schedules x learning rates x seeds, all at
one budget scale, and optionally x batch sizes (``--batch-sizes``: each
run's ``trial.batch_size``; the step budget stays the same at every batch
size). :func:`expand_grid` turns it into a list of distinct
:class:`~lrkit.bench.run.RunConfig` (two grid points that run the same thing,
e.g. Schedule-Free under two schedules it ignores, become one run).
Learning-rate-free optimizers do not take the grid's learning rates: they
take ``multipliers`` of their own default lr (default ``[1.0]``).

The default grid answers "which optimizer, schedule and learning rate?" on
the two fastest real tasks within 3 minutes on 2 CPU cores: sgd, momentum,
adam, adamw x constant, cosine, one-cycle x 5 learning rates one decade
apart (1e-4 .. 1, wide enough that plain SGD and Adam both find their best
and both diverge at the top) x 2 seeds on digits and scales: 240 runs of
about 0.5 s each.

With ``--lrs auto`` each (task, optimizer) runs its own learning rates,
centred on the lr finder's suggestion (:mod:`lrkit.bench.find`):
:func:`with_pair_lrs` puts them in the grid, :meth:`Grid.lrs_for` hands them
to :func:`expand_grid`.

:func:`summarize` ranks, per task, each optimizer x schedule at its best
learning rate by the final metric's mean over seeds.

Examples:
    >>> parse_lrs(["logspace(1e-4, 1, 5)"])
    [0.0001, 0.001, 0.01, 0.1, 1.0]
    >>> parse_lrs(["0.1,0.03", "0.01"])
    [0.1, 0.03, 0.01]
    >>> split_names(["digits,scales", "quadratic"])
    ['digits', 'scales', 'quadratic']
    >>> len(expand_grid())
    240
"""

from __future__ import annotations

import math
import numbers
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from lrkit.bench.optimizers import get_optimizer
from lrkit.bench.run import RunConfig, RunResult
from lrkit.bench.trial import Task, load_task, register_task, task_code
from lrkit.schedules import Schedule
from lrkit.spec import parse

__all__ = [
    "AUTO",
    "DEFAULT_LRS",
    "DEFAULT_MULTIPLIERS",
    "DEFAULT_OPTIMIZERS",
    "DEFAULT_SCHEDULES",
    "DEFAULT_SEEDS",
    "DEFAULT_TASKS",
    "Grid",
    "GridError",
    "SettingSummary",
    "as_batch_sizes",
    "expand_grid",
    "is_auto",
    "make_grid",
    "names_batch",
    "parse_batch_sizes",
    "parse_lrs",
    "pinned_lr",
    "pinned_specs",
    "split_names",
    "split_tasks",
    "summarize",
    "task_items",
    "with_pair_lrs",
]

DEFAULT_TASKS: tuple[str, ...] = ("digits", "scales")
DEFAULT_OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam", "adamw")
DEFAULT_SCHEDULES: tuple[str, ...] = ("constant()", "cosine()", "one_cycle()")
DEFAULT_LRS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
DEFAULT_MULTIPLIERS: tuple[float, ...] = (1.0,)
DEFAULT_SEEDS = 2

#: ``--lrs auto``: each (task, optimizer) gets a grid centred on the lr finder's
#: suggestion (see :mod:`lrkit.bench.find`).
AUTO = "auto"

#: The largest batch size ``--batch-sizes`` takes.
MAX_BATCH_SIZE = 1 << 24

#: The most learning rates one ``logspace(...)`` may produce.
MAX_LOGSPACE = 1000

_LOGSPACE = re.compile(r"^\s*logspace\s*\((?P<args>[^()]*)\)\s*$")


class GridError(ValueError):
    """A grid argument is wrong; the message names the value and what is allowed."""


def split_names(values: Iterable[str] | str | None, what: str = "a list") -> list[str]:
    """Split repeated, comma-separated names or specs into one list (blanks dropped).

    A comma inside parentheses, brackets or quotes does not split:
    ``"sam(adamw, rho=0.1),adam"`` is two optimizers and
    ``"cosine(),warmup(cosine(), steps=10)"`` two schedule specs. One string
    is one value; ``None`` is none.

    Args:
        values: The option's values (it may be repeated), or one string.
        what: The option's name, for error messages (``"--schedules"``).

    Raises:
        GridError: A value whose brackets or quotes do not balance.

    Examples:
        >>> split_names(["sgd, adam", "adamw"]), split_names("sgd,adam"), split_names(None)
        (['sgd', 'adam', 'adamw'], ['sgd', 'adam'], [])
        >>> split_names("sam(adamw, rho=0.1),adam")
        ['sam(adamw, rho=0.1)', 'adam']
        >>> split_names(["cosine(),warmup(cosine(), steps=10)"], "--schedules")
        ['cosine()', 'warmup(cosine(), steps=10)']
        >>> split_names("sam(sgd,adam", "--optimizers")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lrkit.bench.grid.GridError: --optimizers: unbalanced brackets in 'sam(sgd,adam': ...
    """
    if values is None:
        return []
    names: list[str] = []
    for value in [values] if isinstance(values, str) else values:
        names.extend(part.strip() for part in _split_top(value, what) if part.strip())
    return names


_OPEN = {"(": ")", "[": "]", "{": "}"}


def _split_top(value: str, what: str) -> list[str]:
    """``value`` split at its commas outside brackets and quotes."""
    parts: list[str] = []
    stack: list[tuple[str, int]] = []  # open brackets: (the closer it needs, position)
    quote: str | None = None
    begin = 0
    for i, ch in enumerate(value):
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in _OPEN:
            stack.append((_OPEN[ch], i))
        elif ch in ")]}":
            if not stack or stack[-1][0] != ch:
                raise GridError(
                    f"{what}: unbalanced brackets in {value!r}: {ch!r} at position {i + 1} "
                    "closes nothing" + (f" (expected {stack[-1][0]!r})" if stack else "")
                )
            stack.pop()
        elif ch == "," and not stack:
            parts.append(value[begin:i])
            begin = i + 1
    if quote is not None:
        raise GridError(f"{what}: unbalanced quotes in {value!r}: a {quote} is never closed")
    if stack:
        closer, at = stack[-1]
        opener = next(k for k, v in _OPEN.items() if v == closer)
        raise GridError(
            f"{what}: unbalanced brackets in {value!r}: {opener!r} at position {at + 1} "
            "is never closed"
        )
    parts.append(value[begin:])
    return parts


def task_items(tasks: Sequence[str | Task] | str | Task | None) -> list[str | Task]:
    """Tasks as given (one, or several; names may be comma-separated), one item each.

    Examples:
        >>> task_items("digits,scales"), task_items(["quadratic", "a.py:t"]), task_items(None)
        (['digits', 'scales'], ['quadratic', 'a.py:t'], [])
    """
    items = [tasks] if isinstance(tasks, str | Task) else list(tasks or [])
    return [
        t
        for item in items
        for t in ([item] if isinstance(item, Task) else split_names(item, "--tasks"))
    ]


def _first_line(err: BaseException) -> str:
    """The first line of an error's message (spec errors add a caret display)."""
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise GridError(f"{what}: {text.strip()!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise GridError(f"{what}: {text.strip()!r} must be a finite number > 0")
    return value


def _logspace(args: str, what: str) -> list[float]:
    parts = [p.strip() for p in args.split(",")]
    if len(parts) != 3:
        raise GridError(
            f"{what}: logspace takes 3 arguments (start, stop, count), got {len(parts)}: "
            f"'logspace({args})'"
        )
    start, stop = _number(parts[0], what), _number(parts[1], what)
    try:
        count = int(parts[2])
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_LOGSPACE:
        raise GridError(
            f"{what}: logspace count must be an integer in [1, {MAX_LOGSPACE}], got {parts[2]!r}"
        )
    if count == 1:
        return [start]
    a, b = math.log10(start), math.log10(stop)
    # Rounded to 12 significant digits so 1e-3 prints as 0.001, not 0.0010000000000000002.
    return [float(f"{10 ** (a + (b - a) * i / (count - 1)):.12g}") for i in range(count)]


def is_auto(values: Iterable[str]) -> bool:
    """Whether ``--lrs`` asks for finder-centred grids: exactly one value, ``auto``.

    Raises:
        GridError: If ``auto`` is mixed with other values.

    Examples:
        >>> is_auto(["auto"]), is_auto(["0.1,0.01"])
        (True, False)
    """
    items = [part.strip().lower() for value in values for part in value.split(",")]
    if AUTO not in items:
        return False
    if items != [AUTO]:
        raise GridError(
            f"--lrs: 'auto' cannot be combined with other values, got {', '.join(items)!r}"
        )
    return True


def parse_lrs(values: Iterable[str], what: str = "--lrs") -> list[float]:
    """Parse learning rates: comma lists and ``logspace(start, stop, count)``.

    Repeated values are kept once, in first-seen order.

    Args:
        values: Option values, each ``"0.1,0.01"`` or ``"logspace(1e-4,1,7)"``.
        what: The option's name, for error messages.

    Raises:
        GridError: If an item is not a finite number > 0 or a valid logspace.
    """
    lrs: list[float] = []
    for value in values:
        match = _LOGSPACE.match(value)
        if match is not None:
            items = _logspace(match.group("args"), what)
        else:
            texts = [t for t in value.split(",") if t.strip()]
            if not texts:
                raise GridError(f"{what}: empty value {value!r}; give e.g. 0.1,0.01")
            items = [_number(t, what) for t in texts]
        lrs.extend(x for x in items if x not in lrs)
    return lrs


def parse_batch_sizes(values: Iterable[str] | str | None) -> list[int]:
    """Parse ``--batch-sizes``: integers >= 1, comma-separated or repeated, each kept once.

    Raises:
        GridError: If an item is not an integer in [1, 2**24].

    Examples:
        >>> parse_batch_sizes(["32,64", "128"]), parse_batch_sizes(None)
        ([32, 64, 128], [])
    """
    sizes: list[int] = []
    for text in split_names(values):
        try:
            size = int(text)
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_BATCH_SIZE:
            raise GridError(f"--batch-sizes: {text!r} must be an integer in [1, {MAX_BATCH_SIZE}]")
        if size not in sizes:
            sizes.append(size)
    return sizes


def as_batch_sizes(values: Sequence[int | str] | str | int | None) -> list[int] | None:
    """``batch_sizes=`` as ints: numbers kept, strings parsed as ``--batch-sizes`` is.

    :func:`make_grid` checks the numbers.

    Examples:
        >>> as_batch_sizes("16,64"), as_batch_sizes([32, "128"]), as_batch_sizes(None)
        ([16, 64], [32, 128], None)
    """
    if values is None:
        return None
    items = [values] if isinstance(values, str | int) else list(values)
    sizes: list[int] = []
    for item in items:
        if isinstance(item, str):
            sizes.extend(parse_batch_sizes([item]))
        else:
            sizes.append(item)
    return sizes


@dataclass(frozen=True)
class Grid:
    """The axes of a grid, as the user gave them (after defaults).

    ``batch_sizes`` is ``(None,)`` when the grid sets none (each task uses its own).
    """

    tasks: tuple[str, ...]
    optimizers: tuple[str, ...]
    schedules: tuple[str, ...]
    lrs: tuple[float, ...]
    multipliers: tuple[float, ...]
    seeds: int
    budget: float
    #: ``--lrs auto``: each (task, optimizer)'s own lrs, in place of ``lrs``.
    pair_lrs: tuple[tuple[str, str, tuple[float, ...]], ...] = ()
    batch_sizes: tuple[int | None, ...] = (None,)

    def lrs_for(self, task: str, optimizer: str) -> tuple[float, ...]:
        """The grid lrs of one (task, optimizer): its own under ``--lrs auto``, else ``lrs``.

        LR-free optimizers take :attr:`multipliers` instead (see :func:`expand_grid`).
        """
        for t, o, lrs in self.pair_lrs:
            if (t, o) == (task, optimizer):
                return lrs
        return self.lrs

    def to_dict(self) -> dict[str, Any]:
        """Return the axes as JSON-ready data.

        Under ``--lrs auto`` ``"lrs"`` is ``"auto"`` and ``"pair_lrs"`` lists
        ``{"task", "optimizer", "lrs"}`` for each (task, optimizer).
        ``"batch_sizes"`` is there when the grid sets them.
        """
        data: dict[str, Any] = {
            "tasks": list(self.tasks),
            "optimizers": list(self.optimizers),
            "schedules": list(self.schedules),
            "lrs": list(self.lrs),
            "multipliers": list(self.multipliers),
            "seeds": self.seeds,
            "budget": self.budget,
        }
        if self.batch_sizes != (None,):
            data["batch_sizes"] = list(self.batch_sizes)
        if self.pair_lrs:
            data["lrs"] = AUTO
            data["pair_lrs"] = [
                {"task": t, "optimizer": o, "lrs": list(lrs)} for t, o, lrs in self.pair_lrs
            ]
        return data


def with_pair_lrs(grid: Grid, pair_lrs: Mapping[tuple[str, str], Sequence[float]]) -> Grid:
    """A copy of ``grid`` whose (task, optimizer) pairs run their own lrs (``--lrs auto``).

    Args:
        grid: The grid.
        pair_lrs: ``{(task, optimizer): lrs}``; pairs left out keep ``grid.lrs``.

    Raises:
        GridError: If a pair is not in the grid or an lr is not a finite number > 0.

    Examples:
        >>> grid = with_pair_lrs(make_grid(tasks=["quadratic"], optimizers=["sgd"]),
        ...                      {("quadratic", "sgd"): [0.01, 0.1]})
        >>> grid.lrs_for("quadratic", "sgd"), grid.to_dict()["lrs"]
        ((0.01, 0.1), 'auto')
    """
    rows = []
    for (task, optimizer), lrs in pair_lrs.items():
        if task not in grid.tasks or optimizer not in grid.optimizers:
            raise GridError(f"--lrs auto: ({task!r}, {optimizer!r}) is not in the grid")
        for value in lrs:
            real = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not (real and math.isfinite(value) and value > 0):
                raise GridError(f"--lrs auto: {value!r} must be a finite number > 0")
        if not lrs:
            raise GridError(f"--lrs auto: no lrs for ({task!r}, {optimizer!r})")
        rows.append((task, optimizer, tuple(float(x) for x in lrs)))
    return replace(grid, pair_lrs=tuple(rows))


def _default_optimizers(task_names: Sequence[str]) -> tuple[str, ...]:
    """The optimizers of a grid given none: the default ones, or, when every task
    takes only some (a scikit-learn task: ``sgd``), those."""
    allowed = [load_task(name).optimizers for name in task_names]
    if allowed and all(names is not None for names in allowed):
        return tuple(dict.fromkeys(o for names in allowed if names for o in names))
    return DEFAULT_OPTIMIZERS


def make_grid(
    tasks: Sequence[str | Task] | None = None,
    optimizers: Sequence[str] | None = None,
    schedules: Sequence[str] | None = None,
    lrs: Sequence[float] | None = None,
    multipliers: Sequence[float] | None = None,
    seeds: int = DEFAULT_SEEDS,
    budget: float = 1.0,
    batch_sizes: Sequence[int] | None = None,
) -> Grid:
    """Check the axes and fill the defaults (``None`` or empty -> default).

    ``batch_sizes`` (None or empty: none, each task uses its own) must suit
    every task: a built-in task without batches (``rosenbrock``) takes none.
    A task that takes only some optimizers (``digits_sgd``: ``sgd``, a
    scikit-learn estimator) refuses any other given in ``optimizers``;
    without ``optimizers``, a grid of such tasks only runs the ones they
    take, and a grid that mixes them with others runs the default optimizers,
    each task with those it takes (:func:`expand_grid`).

    Raises:
        GridError: If a name is unknown, a spec does not parse, a number is
            out of range; the message names the value.
    """
    refs: list[str] = []
    for item in tasks or DEFAULT_TASKS:
        if isinstance(item, Task):
            register_task(item)
            item = item.ref
        refs.append(item)
    task_names = tuple(dict.fromkeys(refs))
    specs = tuple(dict.fromkeys(s.strip() for s in (schedules or DEFAULT_SCHEDULES)))
    for name in task_names:
        try:
            load_task(name)
        except ValueError as err:
            raise GridError(f"--tasks: {err}") from None
    canonical: list[str] = []  # sam(...) forms as the runs name them
    for name in optimizers or _default_optimizers(task_names):
        try:
            canonical.append(get_optimizer(name).name)
        except ValueError as err:
            raise GridError(f"--optimizers: {err}") from None
    optimizer_names = tuple(dict.fromkeys(canonical))
    for name in task_names if optimizers else ():  # given: every task must take each one
        for optimizer in optimizer_names:
            try:
                load_task(name).check_optimizer(optimizer)
            except ValueError as err:
                raise GridError(f"--optimizers: {err}") from None
    if isinstance(seeds, bool) or not isinstance(seeds, numbers.Integral) or not 1 <= seeds <= 1000:
        raise GridError(f"--seeds must be an integer in [1, 1000], got {seeds!r}")
    seeds = int(seeds)
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real):
        raise GridError(f"--budget must be a finite number > 0, got {budget!r}")
    if not (math.isfinite(budget) and budget > 0):
        raise GridError(f"--budget must be a finite number > 0, got {budget!r}")
    for spec in specs:
        if not spec:
            raise GridError("--schedules: empty spec; give e.g. 'cosine()'")
        failures: dict[str, str] = {}
        for name in task_names:  # each task's budget fills `steps`
            steps = load_task(name).budget(budget)
            try:
                parse(spec, lr=0.1, steps=steps)
            except (ValueError, TypeError) as err:
                failures[f" on task {name!r} (steps={steps})"] = _first_line(err)
        if failures:
            where, message = next(iter(failures.items()))
            if len(failures) == len(task_names) and len(set(failures.values())) == 1:
                where = ""  # wrong whatever the task: a syntax error, an unknown name...
            raise GridError(f"--schedules {spec!r}{where}: {message}")
    sizes = list(batch_sizes or ())
    for size in sizes:
        integral = isinstance(size, numbers.Integral) and not isinstance(size, bool)
        if not integral or not 1 <= size <= MAX_BATCH_SIZE:
            raise GridError(f"--batch-sizes: {size!r} must be an integer in [1, {MAX_BATCH_SIZE}]")
    sizes = [int(size) for size in sizes]
    if sizes:
        for name in task_names:
            task = load_task(name)
            if not task.batched:
                raise GridError(
                    f"--batch-sizes: task {task.name!r} has no batches (its gradient is exact); "
                    "run it in a compare without --batch-sizes"
                )
    for what, values in (("--lrs", lrs), ("--multipliers", multipliers)):
        for value in values or ():
            real = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not (real and math.isfinite(value) and value > 0):
                raise GridError(f"{what}: {value!r} must be a finite number > 0")
    return Grid(
        tasks=task_names,
        optimizers=optimizer_names,
        schedules=specs,
        lrs=tuple(float(x) for x in (lrs or DEFAULT_LRS)),
        multipliers=tuple(float(x) for x in (multipliers or DEFAULT_MULTIPLIERS)),
        seeds=seeds,
        budget=float(budget),
        batch_sizes=tuple(dict.fromkeys(sizes)) or (None,),
    )


def expand_grid(grid: Grid | None = None, **axes: Any) -> list[RunConfig]:
    """Return the grid's distinct runs, task-major, seeds innermost.

    Args:
        grid: A :class:`Grid`; or give its axes as keywords (see
            :func:`make_grid`), ``expand_grid()`` being the default grid.

    Raises:
        GridError: If an axis is wrong, or a schedule fails for a task
            (e.g. a spec that cannot take the task's step budget).

    A task that takes only some optimizers (:attr:`Task.optimizers`) runs
    with those of the grid's that it takes.
    """
    if grid is None:
        grid = make_grid(**axes)
    elif axes:
        raise TypeError("expand_grid: give a Grid or axes as keywords, not both")
    configs: list[RunConfig] = []
    seen: set[str] = set()
    for task in grid.tasks:
        steps = load_task(task).budget(grid.budget)
        takes = load_task(task).optimizers
        for optimizer in grid.optimizers:
            if takes is not None and optimizer not in takes:
                continue  # a default optimizer a scikit-learn task does not take
            spec = get_optimizer(optimizer)
            lrs = grid.multipliers if spec.lr_free else grid.lrs_for(task, optimizer)
            for schedule in grid.schedules:
                own = pinned_lr(schedule, steps) if spec.own_schedule is None else None
                for batch in grid.batch_sizes:
                    for lr in lrs if own is None else [own / spec.group_lr(1.0)]:
                        for seed in range(grid.seeds):
                            config = RunConfig(
                                task, optimizer, schedule, lr, seed, grid.budget, batch
                            )
                            try:
                                key = config.key()
                            except ValueError as err:
                                raise GridError(
                                    f"--schedules {schedule!r} on task {task!r} "
                                    f"(lr={lr:g}, steps={config.steps}): {_first_line(err)}"
                                ) from None
                            if key not in seen:
                                seen.add(key)
                                configs.append(config)
    return configs


def pinned_lr(spec: str, steps: int) -> float | None:
    """The peak lr of a spec that sets its own ``lr`` (``--lrs`` does not apply), else ``None``.

    A spec pins its lr when filling a missing ``lr`` with two different values
    gives the same schedule.

    Examples:
        >>> pinned_lr("cosine()", 100) is None, pinned_lr("warmup(cosine(lr=0.05), steps=10)", 100)
        (True, 0.05)
    """
    a = parse(spec, lr=0.1, steps=steps)
    if str(a) != str(parse(spec, lr=0.2, steps=steps)):
        return None
    if isinstance(a, Schedule):
        return float(a.values(steps).max())
    return max(float(a.lr(t)) for t in range(min(steps, 100_000)))


def pinned_specs(grid: Grid) -> dict[str, float]:
    """The grid's specs that set their own lr, with that lr (on the first task's budget)."""
    steps = load_task(grid.tasks[0]).budget(grid.budget)
    out = {}
    for spec in grid.schedules:
        lr = pinned_lr(spec, steps)
        if lr is not None:
            out[spec] = lr
    return out


@dataclass
class SettingSummary:
    """One optimizer x schedule on one task, at its best learning rate.

    Attributes:
        task, optimizer, schedule: The setting (``schedule`` is the one run).
        lr: The best learning rate (multiplier for LR-free optimizers).
        metric, mode: The task's metric and its direction.
        mean, std: The final metric over the best lr's seeds (``None`` if
            no seed finished); ``std`` is 0 for one seed.
        finished: Seeds of the best lr that finished (status ok or rescued).
        seeds: Seeds of the best lr.
        steps_to_target: Mean steps to the task's target over the seeds
            that reached it (``None`` if none did).
        diverged: Runs of this setting that diverged, over all its lrs.
        runs: Runs of this setting, over all its lrs.
        errors: Runs of this setting that failed with an error.
        rescued: Runs of this setting a ``guard(...)`` saved, over all its lrs.
        lrs: The learning rates (multipliers) this setting ran, ascending.
        state_copies: The optimizer's state in copies of the weights
            (:attr:`~lrkit.bench.run.RunResult.state_copies`), median over
            the best lr's runs that measured it (any of the setting's runs
            if none did); ``None`` if no run measured it.
        state_bytes: The optimizer state's bytes, taken the same way.
        batch_size: The batch size the runs trained at (the task's own when
            the grid set none; ``None`` when unknown, e.g. a user task).
        batch_given: Whether the grid set the batch size (``--batch-sizes``):
            tables and advice then name it, even when there is only one.
        steps: The optimizer steps each run of the best lr trained (its
            budget; a SAM step takes two forward-backward passes).
        wall_time: Mean seconds per run at the best lr (its finished runs,
            else all of them), build and evaluations included: what the
            setting costs, beside what it reaches.
    """

    task: str
    optimizer: str
    schedule: str
    lr: float
    metric: str
    mode: str
    mean: float | None
    std: float | None
    finished: int
    seeds: int
    steps_to_target: float | None
    diverged: int
    runs: int
    errors: int
    rescued: int = 0
    target: float | None = None
    lrs: list[float] = field(default_factory=list)
    state_copies: float | None = None
    state_bytes: int | None = None
    batch_size: int | None = None
    steps: int | None = None
    wall_time: float | None = None
    batch_given: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-ready data."""
        data = {**self.__dict__, "lrs": list(self.lrs)}
        if data["state_copies"] is not None and not math.isfinite(data["state_copies"]):
            data["state_copies"] = None
        return data


def names_batch(rows: Iterable[SettingSummary]) -> bool:
    """Whether a task's tables and advice name each setting's batch size: the grid ran
    several, or set one with ``--batch-sizes`` (``--batch-sizes 128`` alone too)."""
    rows = list(rows)
    return len({row.batch_size for row in rows}) > 1 or any(row.batch_given for row in rows)


def _schedule_run(result: RunResult) -> str:
    """The schedule a run followed, as the user wrote it (or the optimizer's own)."""
    own = get_optimizer(result.config["optimizer"]).own_schedule
    return own if own is not None else str(result.config["schedule"])


def _batch_of(result: RunResult) -> int | None:
    """The batch size a run trained at, from its identity (its key's batch size)."""
    batch = result.identity.get("batch_size") if result.identity else None
    return int(batch) if isinstance(batch, int) else None


def _state_size(best: list[RunResult], others: list[RunResult]) -> tuple[float | None, int | None]:
    """Median state copies and bytes over ``best`` runs that measured them, else ``others``."""
    measured = [r for r in best if r.state_copies is not None] or [
        r for r in others if r.state_copies is not None
    ]
    if not measured:
        return None, None
    copies = statistics.median(r.state_copies for r in measured if r.state_copies is not None)
    sizes = [r.state_bytes for r in measured if r.state_bytes is not None]
    return copies, (round(statistics.median(sizes)) if sizes else None)


def split_tasks(results: Iterable[RunResult]) -> tuple[list[RunResult], dict[str, list[str]]]:
    """One task per distinct kind of run: a task name whose runs differ is split.

    Runs ranked under one task name must be runs of one thing. A store, or a
    grid, can hold under one name the runs of two task files that define the
    same function name, of two versions of a task's code (edited between
    compares), or of several step budgets (compares with other ``--budget``
    values into one ``--store``): ranked together, they would count as seeds
    of one setting. Each such name's runs are renamed by what tells them
    apart: the task reference (``a/train.py:fit``), the code's version
    (``fit [code 1a2b3c4d]``), the budget (``digits@150``). A task whose
    runs agree keeps its name.

    Returns:
        The runs (renamed copies where split) and ``{task: [new names]}`` of
        the tasks split.
    """
    results = list(results)
    kinds: dict[str, dict[tuple[str, str, int], None]] = {}
    for r in results:
        if r.config:
            kinds.setdefault(r.task, {})[_kind(r)] = None
    split: dict[str, list[str]] = {}
    names: dict[tuple[str, tuple[str, str, int]], str] = {}
    for task, found in kinds.items():
        if len(found) < 2:
            continue
        refs = len({ref for ref, _, _ in found}) > 1
        codes = len({(ref, code) for ref, code, _ in found}) > len({ref for ref, _, _ in found})
        budgets = len({steps for _, _, steps in found}) > 1
        for kind in found:
            ref, code, steps = kind
            name = ref if refs else task
            if codes:
                name += f" [code {code}]"
            if budgets:
                name += f"@{steps}"
            names[(task, kind)] = name
        split[task] = list(dict.fromkeys(names[(task, kind)] for kind in found))
    if not split:
        return results, {}
    renamed = [
        replace(r, task=names[(r.task, _kind(r))]) if r.config and r.task in split else r
        for r in results
    ]
    return renamed, split


def _kind(result: RunResult) -> tuple[str, str, int]:
    """What a run is a run of: its task reference, its task's code, its step budget."""
    task = dict(result.identity.get("task") or {}) if result.identity else {}
    return str(result.config.get("task")), task_code(task)[:8], int(result.steps)


def summarize(results: Iterable[RunResult]) -> dict[str, list[SettingSummary]]:
    """Rank each task's optimizer x schedule settings at their best lr.

    For each (task, optimizer, schedule, batch size) the lr whose seeds give
    the best mean final metric is chosen, an lr where every seed finished being
    preferred to one where some diverged. Settings are then sorted best
    first, those with no finished run last.

    Returns:
        ``{task: [SettingSummary, ...]}`` in the order tasks first appear.
    """
    groups: dict[tuple[str, str, str, int | None], dict[float, list[RunResult]]] = {}
    for result in results:
        if not result.config:
            continue
        head = (result.task, result.config["optimizer"], _schedule_run(result), _batch_of(result))
        groups.setdefault(head, {}).setdefault(float(result.config["lr"]), []).append(result)
    table: dict[str, list[SettingSummary]] = {}
    for (task, optimizer, schedule, batch), by_lr in groups.items():
        first = next(iter(by_lr.values()))[0]
        mode = first.mode
        sign = 1.0 if mode == "min" else -1.0
        all_runs = [r for runs in by_lr.values() for r in runs]

        def score(item: tuple[float, list[RunResult]], sign: float = sign) -> tuple[float, ...]:
            finals = [r.final for r in item[1] if r.finished and r.final is not None]
            if not finals:
                return (2.0, math.inf)
            return (float(len(finals) < len(item[1])), sign * statistics.fmean(finals))

        lr, runs = min(by_lr.items(), key=score)
        finals = [r.final for r in runs if r.finished and r.final is not None]
        reached = [r.steps_to_target for r in runs if r.steps_to_target is not None]
        state_copies, state_bytes = _state_size(runs, all_runs)
        timed = [r for r in runs if r.finished] or runs
        table.setdefault(task, []).append(
            SettingSummary(
                task=task,
                optimizer=optimizer,
                schedule=schedule,
                lr=lr,
                metric=first.metric,
                mode=mode,
                mean=statistics.fmean(finals) if finals else None,
                std=statistics.pstdev(finals) if finals else None,
                finished=len(finals),
                seeds=len(runs),
                steps_to_target=statistics.fmean(reached) if reached else None,
                diverged=sum(r.status == "diverged" for r in all_runs),
                runs=len(all_runs),
                errors=sum(r.status == "error" for r in all_runs),
                rescued=sum(r.status == "rescued" for r in all_runs),
                target=first.target,
                lrs=sorted(by_lr),
                state_copies=state_copies,
                state_bytes=state_bytes,
                batch_size=batch,
                batch_given=any(r.config.get("batch_size") is not None for r in all_runs),
                steps=max(r.steps for r in runs),
                wall_time=statistics.fmean(r.wall_time for r in timed),
            )
        )
    for rows in table.values():
        rows.sort(
            key=lambda s: (
                s.mean is None,
                s.finished < s.seeds,
                0.0 if s.mean is None else (s.mean if s.mode == "min" else -s.mean),
            )
        )
    return table
