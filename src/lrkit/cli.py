"""The ``lrkit`` command line: parse the arguments, call the library, print.

Only the console script imports this module (``lrkit = lrkit.cli:main``), so
``import lrkit`` never pulls in typer or rich. Each command is one function
below that turns its arguments into library calls and prints the result;
anything worth testing without a terminal lives in the library.

Errors in what the user typed (a bad spec, ``--steps 0``) exit with code 2 and
one message on stderr, never a traceback.

Examples:
    >>> from typer.testing import CliRunner
    >>> result = CliRunner().invoke(app, ["schedule", "linear(1.0, 0.0, steps=2)", "-f", "csv"])
    >>> result.exit_code, result.stdout
    (0, 'step,lr\\n0,1.0\\n1,0.5\\n2,0.0\\n')
"""

from __future__ import annotations

import csv
import io
import json
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

import lrkit
from lrkit.plotting import default_steps, key_steps, plot_schedules, sparkline
from lrkit.schedules import Schedule

if TYPE_CHECKING:
    from lrkit.bench.advice import Advice
    from lrkit.bench.pbt import PbtResults

__all__ = ["app", "main"]

#: The most steps ``lrkit schedule`` evaluates (80 MB of float64 values).
MAX_STEPS = 10_000_000

#: Width of the sparkline in ``--format table``.
SPARK_WIDTH = 60

app = typer.Typer(
    name="lrkit",
    help="lrkit: learning-rate schedules, done once and done right. "
    "Run lrkit COMMAND --help for a command's options and examples.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class UsageError(Exception):
    """Something the user typed is wrong; the message says what (exit code 2)."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` on stderr and return the exit to raise (no traceback)."""
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lrkit {lrkit.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """lrkit: learning-rate schedules, done once and done right.

    Run [bold]lrkit COMMAND --help[/bold] for a command's options and examples.
    """


# --------------------------------------------------------------------------
# lrkit schedule
# --------------------------------------------------------------------------


class Format(StrEnum):
    """Output formats of ``lrkit schedule``."""

    table = "table"
    csv = "csv"
    json = "json"
    png = "png"


# Rich markup: "\[" is a literal "[" (a list in a spec), not the start of a tag.
_SCHEDULE_EXAMPLES = """\
[bold]Examples[/bold]

  lrkit schedule "cosine(lr=0.1, steps=1000, min_lr=0.001)"
  lrkit schedule "warmup(cosine(lr=3e-4, steps=10000), steps=500)" -n 11000
  lrkit schedule "multistep(lr=0.1, milestones=\\[300, 600])" -n 1000 -f csv
  lrkit schedule "one_cycle(max_lr=0.1, steps=1000)" -f json -o lr.json
  lrkit schedule "cosine(lr=0.1, steps=1000)" "wsd(lr=0.1, steps=1000)" \\
      "0.5 * constant(0.1)" --format png --out compare.png

A spec is a factory call (constant, step_decay, multistep, exponential,
linear, cosine, cosine_restarts, polynomial, cyclic, one_cycle,
inverse_sqrt, wsd, warmup, swa, invscaling, optimal, join); join schedules
with [bold]|[/bold], scale with [bold]*[/bold]. A controller (plateau, guard,
adaptive, sklearn_adaptive) shows its plan, the lrs before any metric:
  "linear(0.0, 0.1, steps=100) | cosine(lr=0.1, steps=900)"
Quote each spec for the shell."""


def _parse_specs(specs: list[str]) -> list[Schedule]:
    """Each spec parsed into a schedule; a bad one is a :class:`UsageError`.

    A controller (``plateau(...)``, ``guard(...)``, ``adaptive(...)``) gives
    its plan: the lrs it follows until a metric or a loss moves it.
    """
    schedules = []
    for k, spec in enumerate(specs):
        try:
            parsed = lrkit.parse(spec)
            controller = parsed
            while not isinstance(parsed, Schedule) and isinstance(
                getattr(parsed, "schedule", None), Schedule
            ):
                parsed = parsed.schedule  # a controller's plan
            if parsed is not controller:
                typer.echo(
                    f"{controller} is a controller: shown is its plan, {parsed}, the lrs "
                    "until a metric or a loss moves it",
                    err=True,
                )
            schedules.append(parsed)
        except ValueError as err:
            if len(specs) == 1:
                raise UsageError(str(err)) from None
            message = str(err).removeprefix("spec: ")
            raise UsageError(f"spec {k + 1} of {len(specs)}: {message}") from None
    return schedules


def _fmt(lr: float) -> str:
    return f"{lr:.6g}"


def _render_table(console: Console, schedules: list[Schedule], n: int, log: bool) -> None:
    """Per schedule: its spec, a sparkline of steps 0..n-1, a few key steps, min/max/final."""
    for k, sched in enumerate(schedules):
        values = sched.values(n)
        if k:
            console.print()
        console.print(Text(str(sched), style="bold cyan"))
        line = sparkline(values, SPARK_WIDTH, log=log)
        console.print(Text(line, style="green"), Text(f" steps 0..{n - 1}", style="dim"))
        peak = int(np.argmax(values))
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        table.add_column("step", justify="right")
        table.add_column("lr", justify="right")
        table.add_column("", style="dim")
        for step in key_steps(sched, n):
            notes = []
            if step == sched.length:
                notes.append("end: held from here")
            if step == peak and peak:
                notes.append("peak")
            table.add_row(str(step), _fmt(values[step]), ", ".join(notes))
        console.print(table)
        low = int(np.argmin(values))
        console.print(
            Text(
                f"min {_fmt(values[low])} (step {low})  max {_fmt(values[peak])} (step {peak})"
                f"  final {_fmt(values[-1])} (step {n - 1})",
                style="dim",
            )
        )


def _render_csv(schedules: list[Schedule], n: int) -> str:
    """``step,lr`` (one schedule) or ``step,<spec 1>,<spec 2>,...``, exact floats."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    columns = [s.values(n).tolist() for s in schedules]
    header = ["lr"] if len(schedules) == 1 else [str(s) for s in schedules]
    writer.writerow(["step", *header])
    writer.writerows([step, *map(repr, row)] for step, row in enumerate(zip(*columns, strict=True)))
    return buf.getvalue()


def _render_json(schedules: list[Schedule], n: int) -> str:
    """``{"steps": n, "schedules": [{"spec", "schedule" (to_dict), "values"}, ...]}``."""
    doc = {
        "steps": n,
        "schedules": [
            {"spec": str(s), "schedule": s.to_dict(), "values": s.values(n).tolist()}
            for s in schedules
        ],
    }
    return json.dumps(doc) + "\n"


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise _fail(f"cannot write {str(path)!r}: {err.strerror or err}", code=1) from None


@app.command("schedule", epilog=_SCHEDULE_EXAMPLES)
def schedule_cmd(
    specs: Annotated[
        list[str],
        typer.Argument(
            metavar="SPEC",
            help='One or more schedule specs, e.g. "cosine(lr=0.1, steps=1000)". '
            "Several are shown one after another (table) or together (csv, json, png).",
            show_default=False,
        ),
    ],
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps",
            "-n",
            help="Show steps 0..N-1. Default: the longest schedule's length plus 10 %, "
            "or 1000 if none ends.",
            metavar="N",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        Format,
        typer.Option("--format", "-f", case_sensitive=False, help="Output format."),
    ] = Format.table,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            dir_okay=False,
            help="Write to this file instead of stdout (png: default schedule.png). "
            "Missing folders are created; the path is printed.",
            show_default=False,
        ),
    ] = None,
    log: Annotated[
        bool, typer.Option("--log", help="Log-scaled lr (png axis and table sparkline).")
    ] = False,
) -> None:
    """Show learning-rate schedules as a table, CSV, JSON or a PNG plot.

    [bold]table[/bold]  per spec: a sparkline, the lr at key steps (start, warmup
           end, milestones, the schedule's end, last step), min/max/final
    [bold]csv[/bold]    step,lr rows (several specs: step,<spec 1>,<spec 2>,...)
    [bold]json[/bold]   each schedule's to_dict() (lrkit.from_dict reads it back)
           and its values
    [bold]png[/bold]    one labelled plot, several specs overlaid (default file
           schedule.png)
    """
    try:
        schedules = _parse_specs(specs)
    except UsageError as err:
        raise _fail(str(err)) from None
    if steps is not None and not 1 <= steps <= MAX_STEPS:
        raise _fail(f"--steps must be an integer in [1, {MAX_STEPS}], got {steps}")
    n = default_steps(schedules) if steps is None else steps
    if n > MAX_STEPS:  # the default for a very long schedule
        raise _fail(
            f"--steps defaults to {n} for these schedules, above the limit {MAX_STEPS}; "
            f"pass --steps N with N in [1, {MAX_STEPS}]"
        )

    if fmt is Format.png:
        path = out if out is not None else Path("schedule.png")
        try:
            plot_schedules(schedules, steps=n, path=str(path), log=log)
        except OSError as err:
            raise _fail(f"cannot write {str(path)!r}: {err.strerror or err}", code=1) from None
        typer.echo(str(path))
        return

    if fmt is Format.table:
        if out is None:
            _render_table(Console(highlight=False), schedules, n, log)
            return
        buf = io.StringIO()
        console = Console(file=buf, width=100, color_system=None, highlight=False)
        _render_table(console, schedules, n, log)
        text = buf.getvalue()
    elif fmt is Format.csv:
        text = _render_csv(schedules, n)
    else:
        text = _render_json(schedules, n)

    if out is None:
        typer.echo(text, nl=False)
    else:
        _write(out, text)
        typer.echo(str(out))


# --------------------------------------------------------------------------
# Later commands (compare, tasks, report, find-lr, tune) go here, one
# function each, registered with @app.command("name"); like `schedule`,
# each parses its arguments, calls the library and prints.
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# lrkit tasks
# --------------------------------------------------------------------------


@app.command("tasks")
def tasks_cmd() -> None:
    """List the built-in benchmark tasks: name, step budget, metric and target, what it is.

    All of them are offline (nothing is downloaded); pick some with
    [bold]lrkit compare --tasks NAME,NAME[/bold].
    """
    from lrkit.bench.tasks import TASKS

    width = max(len(name) for name in TASKS)
    for task in TASKS.values():
        goal = f"{task.metric} {'>=' if task.mode == 'max' else '<='} {task.target:g}"
        typer.echo(f"{task.name:<{width}}  {task.steps:>4} steps  {goal:<16}  {task.description}")
    typer.echo(
        "\nYour own training: decorate a function with @lrkit.task(metric=..., steps=...) and "
        "pass --tasks path/to/file.py:name (or package.module:name); see docs/compare.md"
    )


# --------------------------------------------------------------------------
# lrkit compare
# --------------------------------------------------------------------------

#: ``lrkit compare``'s default output folder.
DEFAULT_OUT = Path("lrkit-report")

#: The store's file name inside the output folder, unless --store says otherwise.
STORE_NAME = "runs.sqlite"

_COMPARE_EXAMPLES = """\
[bold]Examples[/bold]

  lrkit compare                                   the default grid (about 1-2 min)
  lrkit compare --tasks signals --optimizers adam,adamw --seeds 3
  lrkit compare --schedules "cosine()" --schedules "warmup(cosine(), steps=30)" \\
      --lrs "logspace(1e-4,1,9)" --budget 0.5 --workers 2
  lrkit compare --tasks quadratic,rosenbrock --optimizers prodigy --multipliers 0.5,1,2
  lrkit compare --tasks digits --optimizers sgd,adam --lrs auto
  lrkit compare --tasks digits --optimizers sgd,adam --batch-sizes 16,64,256 \\
      --schedules "cosine()" --lrs "logspace(1e-3,1,7)"    how the best lr moves with the batch
  lrkit compare --tasks train.py:my_task --executor ray --address auto   on a Ray cluster

Schedules are lrkit specs that may leave out lr and steps ("cosine()"): each
run fills them with its learning rate and the task's step budget. Run the
same command again to resume an interrupted compare: finished runs are read
from the store, never run twice."""


#: Below this many columns the summary tables use short headers.
NARROW = 100


def _summary_table(title: str, rows: list, shown: dict[str, str], narrow: bool) -> Table:
    """One task's table; ``shown`` maps each schedule spec to what its cell shows."""
    from lrkit.bench.grid import names_batch

    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=not narrow,
        pad_edge=not narrow,
        padding=(0, 1, 0, 0) if narrow else (0, 1),  # narrow: 2 columns apart, not 3
    )
    # Only the divergence counts may wrap; numbers stay on one line, specs are
    # never cut (a spec too long for the terminal shows as a label, see _print_summary).
    # The optimizer state's size (copies of the weights) shows when the runs measured it.
    state = any(row.state_copies is not None for row in rows)
    # The batch size shows when the grid set it (--batch-sizes).
    batches = names_batch(rows)
    # What a setting costs: seconds per run at its best lr (a SAM step is two passes),
    # and its steps where they differ (the same for all: the title says it).
    timed = any(row.wall_time is not None for row in rows)
    steps = timed and len({row.steps for row in rows}) > 1
    for wide, short, justify, no_wrap in (
        ("#", "#", "right", True),
        ("optimizer", "optimizer", "left", True),
        ("schedule", "schedule", "left", True),
        *([("batch", "batch", "right", True)] if batches else []),
        ("best lr", "best lr", "right", True),
        ("final mean ± std", "mean ± std", "right", True),
        ("seeds\nok", "ok", "right", True),
        ("steps to\ntarget", "to\ntarget", "right", True),
        ("diverged (all lrs)", "diverged\n(all lrs)", "right", False),
        *([("steps", "steps", "right", True)] if steps else []),
        *([("s/run", "s/run", "right", True)] if timed else []),
        *([("opt. state\n× weights", "state\n× w", "right", True)] if state else []),
    ):
        table.add_column(
            short if narrow else wide,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=no_wrap,
            overflow="fold",
        )
    for rank, row in enumerate(rows, 1):
        value = "—" if row.mean is None else f"{row.mean:.4g} ± {row.std:.2g}"
        reach = "—" if row.steps_to_target is None else f"{row.steps_to_target:.0f}"
        diverged = f"{row.diverged}/{row.runs}"
        if row.rescued:
            diverged += f", {row.rescued} rescued"
        if row.errors:
            diverged += f", {row.errors} errors"
        cells = [
            str(rank),
            shown.get(row.optimizer, row.optimizer),
            shown.get(row.schedule, row.schedule),
            *([str(row.batch_size)] if batches else []),
            f"{row.lr:g}",
            value,
            f"{row.finished}/{row.seeds}",
            reach,
            diverged,
        ]
        if steps:
            cells.append("—" if row.steps is None else str(row.steps))
        if timed:
            cells.append("—" if row.wall_time is None else f"{row.wall_time:.2g}")
        if state:
            cells.append("—" if row.state_copies is None else f"{row.state_copies:.2f}")
        table.add_row(*cells)
    return table


def _advice_grid(advice: Advice) -> Table:
    """The advice under a task's table: the verdict, the settings tied with it, the notes."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    grid.add_row("→", Text(advice.headline, style="bold"))
    for tie in advice.ties:
        grid.add_row("", Text(f"≈ {tie.label}"))
    for note in advice.notes:
        grid.add_row("", Text(note, style="yellow"))
    return grid


def _print_summary(console: Console, summary: dict[str, list]) -> None:
    """Per task: each optimizer x schedule at its best lr, best first, then what to pick.

    In a narrow terminal the headers get shorter; a schedule spec that does
    not fit beside the numbers is shown as ``S1``, ``S2``, ... with the full
    spec listed under the table (a long optimizer name, ``sam(...)``, as
    ``O1``, ...), so no spec, name or number is ever cut.
    """
    from rich.measure import Measurement

    from lrkit.bench.advice import advise

    narrow = console.width < NARROW
    unbounded = console.options.update_width(10_000)  # to measure a table's natural width
    for name, rows in summary.items():
        metric, mode, target = rows[0].metric, rows[0].mode, rows[0].target
        goal = (
            ""
            if target is None
            else f" (target {metric} {'>=' if mode == 'max' else '<='} {target:g})"
        )
        title = f"{name}: final {metric}, {'higher' if mode == 'max' else 'lower'} is better{goal}"
        budgets = {row.steps for row in rows}
        if len(budgets) == 1 and None not in budgets:  # s/run below is for this many steps
            title += f"; {budgets.pop()} steps a run"
        specs = list(dict.fromkeys(row.schedule for row in rows))
        names = list(dict.fromkeys(row.optimizer for row in rows))
        shown: dict[str, str] = {}  # a labelled spec or optimizer name -> its label
        short = narrow
        table = _summary_table(title, rows, shown, short)
        # Too wide for the terminal: label the longest specs and optimizer names, one at
        # a time, until it fits; then, if it still does not, take the short headers.
        longest = sorted(
            [*(s for s in specs if len(s) > len("schedule")), *(o for o in names if len(o) > 9)],
            key=len,
            reverse=True,
        )
        while Measurement.get(console, unbounded, table).maximum > console.width:
            if longest:
                labelled = {*shown, longest.pop(0)}
                shown = {
                    **{s: f"S{k + 1}" for k, s in enumerate(x for x in specs if x in labelled)},
                    **{o: f"O{k + 1}" for k, o in enumerate(x for x in names if x in labelled)},
                }
            elif not short:
                short = True
            else:
                break
            table = _summary_table(title, rows, shown, short)
        console.print(table)
        for full, label in sorted(shown.items(), key=lambda item: (item[1][0], int(item[1][1:]))):
            console.print(Text(f"  {label} = {full}", style="dim"), soft_wrap=True)
        console.print(_advice_grid(advise(name, rows)))
        console.print()


def _write_results(
    out: Path, grid: dict, store_path: Path, results: list, summary: dict[str, list]
) -> Path:
    """Write ``OUT/results.json`` then the HTML report and PNGs; exit 1 if it cannot."""
    from lrkit.bench.compare import write_outputs

    try:
        return write_outputs(out, grid, store_path, results, summary)
    except OSError as err:
        raise _fail(f"cannot write into {str(out)!r}: {err.strerror or err}", code=1) from None


_TensorBoardOption = Annotated[
    Path | None,
    typer.Option(
        "--tensorboard",
        file_okay=False,
        help="Also write every run as a TensorBoard run under DIR "
        "(DIR/TASK/OPTIMIZER/SCHEDULE/lr=LR/seed=N; view with tensorboard --logdir DIR).",
        metavar="DIR",
        show_default=False,
    ),
]
_CsvOption = Annotated[
    bool,
    typer.Option(
        "--csv",
        help="Also write OUT/steps.csv: one row per run and step "
        "(lr, loss, validation metrics where evaluated, update-to-weight ratio).",
    ),
]


def _write_logs(out: Path, results: list, tensorboard: Path | None, csv: bool) -> None:
    """``--tensorboard`` / ``--csv``: the runs' per-step logs, from their stored curves."""
    from lrkit.bench.export import write_csv, write_tensorboard

    try:
        if tensorboard is not None:
            count = write_tensorboard(results, tensorboard)
            typer.echo(f"wrote {count} TensorBoard runs under {tensorboard}")
        if csv:
            rows = write_csv(results, out / "steps.csv")
            typer.echo(f"wrote {out / 'steps.csv'} ({rows} rows)")
    except OSError as err:
        raise _fail(f"cannot write logs: {err}", code=1) from None


@app.command("compare", epilog=_COMPARE_EXAMPLES)
def compare_cmd(
    tasks: Annotated[
        list[str] | None,
        typer.Option(
            "--tasks",
            metavar="NAMES",
            help="Tasks: built-in names (see lrkit tasks), or your own: path/to/file.py:name or "
            "package.module:name (an @lrkit.task function). Repeat or comma-separate. "
            "Default: digits,scales.",
            show_default=False,
        ),
    ] = None,
    optimizers: Annotated[
        list[str] | None,
        typer.Option(
            "--optimizers",
            metavar="NAMES",
            help="Optimizers: sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw, amsgrad, "
            "schedulefree, prodigy, dadapt, and sam(NAME, rho=0.05) around any that takes an lr "
            "(commas inside parentheses do not split). Default: sgd,momentum,adam,adamw.",
            show_default=False,
        ),
    ] = None,
    schedules: Annotated[
        list[str] | None,
        typer.Option(
            "--schedules",
            metavar="SPEC",
            help="Schedule specs, lr and steps may be left out (repeat the option, or "
            "comma-separate: commas inside parentheses do not split). "
            'Default: "constant()", "cosine()", "one_cycle()".',
            show_default=False,
        ),
    ] = None,
    lrs: Annotated[
        list[str] | None,
        typer.Option(
            "--lrs",
            metavar="LRS",
            help='Learning rates: "0.1,0.01" or "logspace(1e-4,1,7)" (repeatable), or "auto": '
            "per task x optimizer, 5 lrs half a decade apart centred on the lr finder's "
            "suggestion (a 100-step range test, seed 0, computed once and kept next to the "
            "store; LR-free optimizers keep --multipliers). Default: 1e-4,1e-3,1e-2,0.1,1.",
            show_default=False,
        ),
    ] = None,
    multipliers: Annotated[
        list[str] | None,
        typer.Option(
            "--multipliers",
            metavar="XS",
            help="For LR-free optimizers (schedulefree, prodigy, dadapt): multipliers of "
            "their own lr, in place of --lrs. Default: 1.",
            show_default=False,
        ),
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Run seeds 0..N-1.", metavar="N")] = 2,
    budget: Annotated[
        float,
        typer.Option("--budget", help="Scale every task's step budget.", metavar="F"),
    ] = 1.0,
    batch_sizes: Annotated[
        list[str] | None,
        typer.Option(
            "--batch-sizes",
            metavar="NS",
            help='Batch sizes, one more axis of the grid ("32,64,128"; repeatable): each '
            "run's trial.batch_size, at the same step budget. The report plots the best lr "
            "against the batch size beside the linear and square-root rules. Default: each "
            "task's own.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Worker processes. Default: the CPU count. 0: run in this process. "
            "With --executor ray: runs at once (and a new local Ray's CPUs).",
            metavar="N",
            show_default=False,
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            metavar="local|ray",
            help="Where runs execute: local worker processes, or Ray tasks (needs "
            "pip install 'lrkit\\[ray]'; without --address, a new local Ray for this command).",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            metavar="ADDR",
            help="With --executor ray: the cluster to join (auto, HOST:6379 or ray://HOST:10001).",
            show_default=False,
        ),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store",
            dir_okay=False,
            help=f"The SQLite run store. Default: OUT/{STORE_NAME}, so the same command resumes.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Output folder (results.json, report.html, PNG plots, the store)."
        ),
    ] = DEFAULT_OUT,
    tensorboard: _TensorBoardOption = None,
    csv: _CsvOption = False,
) -> None:
    """Compare optimizers x schedules x learning rates x seeds on built-in tasks or your own.

    Runs every pending run of the grid in parallel worker processes (or as
    Ray tasks: --executor ray), stores each run as it finishes in a SQLite
    file (an interrupted compare resumes where it stopped), writes
    [bold]OUT/results.json[/bold] (every run: config, status, curves, final
    metrics) and prints, per task, each optimizer x schedule at its best
    learning rate.
    """
    import sys

    from lrkit.bench.compare import compare
    from lrkit.bench.grid import GridError
    from lrkit.bench.runner import TaskChanged, WorkersFailed, make_progress
    from lrkit.bench.store import StoreError

    if workers is not None and workers < 0:
        raise _fail(f"--workers must be an integer >= 0, got {workers}")
    if executor not in ("local", "ray"):
        raise _fail(f"--executor must be local or ray, got {executor!r}")
    if address is not None and executor != "ray":
        raise _fail("--address is for --executor ray (the Ray cluster to join)")
    try:
        results = compare(
            tasks or None,
            optimizers=optimizers,
            schedules=schedules,
            lrs=lrs,
            multipliers=multipliers,
            seeds=seeds,
            budget=budget,
            batch_sizes=batch_sizes,
            workers=workers,
            out=out,
            store=store,
            executor=executor,
            address=address,
            progress=make_progress(),
            on_note=typer.echo,
            tensorboard=tensorboard,
            csv=csv,
        )
    except (GridError, StoreError) as err:
        raise _fail(str(err)) from None
    except KeyboardInterrupt:
        where = store if store is not None else out / "runs.sqlite"
        typer.echo(
            f"interrupted: finished runs are kept in {str(where)!r}; "
            "run the same command again to resume",
            err=True,
        )
        raise typer.Exit(130) from None
    except (WorkersFailed, TaskChanged) as err:
        raise _fail(str(err), code=1) from None
    except OSError as err:
        raise _fail(f"cannot write the outputs: {err}", code=1) from None
    # Piped output is not cut at 80 columns: the tables stay one line a row.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    console.print()
    _print_summary(console, results.summary)
    report = results.runner
    retried = f", {report.retried} retried after a worker died" if report.retried else ""
    typer.echo(
        f"{report.total} runs: {report.ran} run now, {report.skipped} from the store{retried}; "
        f"{report.wall_time:.1f}s "
        + (
            f"on Ray, {report.workers} at a time"
            if executor == "ray" and report.ran
            else f"on {report.workers} worker(s)"
            if report.workers
            else "in this process"
        )
    )
    typer.echo(f"wrote {out / 'results.json'} and {out / 'report.html'} (store: {results.store})")
    if tensorboard is not None:
        typer.echo(f"wrote {len(results.runs)} TensorBoard runs under {tensorboard}")
    if csv:
        typer.echo(f"wrote {out / 'steps.csv'}")
    errors = results.errors
    if errors:
        _print_errors(errors, results.store)
        sys.exit(1)


def _print_errors(errors: list, store: Path) -> None:
    """The runs whose task raised: how many, and the first one's error."""
    first = errors[0]
    typer.echo(
        f"{len(errors)} run(s) failed with an error (status 'error' in the store); the first: "
        f"{first.task} {first.config['optimizer']} {first.config['schedule']} "
        f"lr={first.config['lr']:g} seed={first.config['seed']}: {first.reason}",
        err=True,
    )
    if first.traceback:
        lines = first.traceback.rstrip().splitlines()
        typer.echo("  " + "\n  ".join(lines[-6:]), err=True)
    typer.echo(
        f"every traceback is in {str(store)!r} (table runs, column result: 'traceback'); "
        "the same command again runs them again (and every run of a task file you changed)",
        err=True,
    )


# --------------------------------------------------------------------------
# lrkit tune
# --------------------------------------------------------------------------

_TUNE_EXAMPLES = """\
[bold]Examples[/bold]

  lrkit tune --tasks digits --optimizers adam,sgd --schedules "cosine()" --trials 30
  lrkit tune --tasks my_train.py:my_task --optimizers adamw \\
      --schedules "cosine()" --schedules "warmup(cosine(), steps=50)" --lr-range 1e-5,1e-1
  lrkit tune --tasks quadratic --optimizers sgd --schedules "constant()" --search random \\
      --pruner none --seeds 3 --workers 2

--trials N is the study's total of finished (COMPLETE + PRUNED) trials: the
same command again resumes and stops at N. A trial whose process died is
marked FAIL and does not count. Several lrkit tune commands (machines) with
one --storage postgresql://... and --study share the study: N is their total.
Keep the password off the command line: put the URL in $LRKIT_STORAGE, or
use PGPASSWORD or ~/.pgpass (see docs/tune.md)."""


@app.command("tune", epilog=_TUNE_EXAMPLES)
def tune_cmd(
    tasks: Annotated[
        list[str] | None,
        typer.Option(
            "--tasks",
            metavar="NAME",
            help="Required. One task: a built-in name (see lrkit tasks), path/to/file.py:name "
            "or package.module:name (an @lrkit.task function).",
            show_default=False,
        ),
    ] = None,
    optimizers: Annotated[
        list[str] | None,
        typer.Option(
            "--optimizers",
            metavar="NAMES",
            help="Optimizers to search (categorical), e.g. adam or sam(sgd, rho=0.1). Repeat "
            "or comma-separate (commas inside parentheses do not split). Default: adam "
            "(sgd for a task limited to it, such as digits_sgd).",
            show_default=False,
        ),
    ] = None,
    schedules: Annotated[
        list[str] | None,
        typer.Option(
            "--schedules",
            metavar="SPEC",
            help="Schedule specs to search (categorical), lr and steps left out (repeat the "
            'option, or comma-separate outside parentheses). Default: "cosine()".',
            show_default=False,
        ),
    ] = None,
    lr_range: Annotated[
        str,
        typer.Option(
            "--lr-range", metavar="LOW,HIGH", help="The lr is searched log-uniformly in it."
        ),
    ] = "1e-5,1",
    trials: Annotated[
        int,
        typer.Option(
            "--trials", metavar="N", help="The study's total of COMPLETE + PRUNED trials."
        ),
    ] = 20,
    search: Annotated[
        str,
        typer.Option(
            "--search",
            help="tpe, random, or pbt (Ray Tune's population-based training: the population "
            "is --trials, the schedule found goes to results.json as pbt_schedule).",
        ),
    ] = "tpe",
    pruner: Annotated[str, typer.Option("--pruner", help="median, hyperband or none.")] = "median",
    seeds: Annotated[
        int,
        typer.Option(
            "--seeds", metavar="N", help="Seeds per trial, run in turn; the value is their mean."
        ),
    ] = 1,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            metavar="N",
            help="Trials at once in worker processes; 0 or 1: in this process.",
        ),
    ] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            metavar="URL",
            help="An Optuna storage URL (sqlite:///..., postgresql://...). Default: "
            "$LRKIT_STORAGE, else sqlite:///OUT/tune.sqlite.",
            show_default=False,
        ),
    ] = None,
    study: Annotated[str, typer.Option("--study", help="The Optuna study's name.")] = "lrkit",
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Output folder (results.json, report.html, runs.sqlite, tune.sqlite)."
        ),
    ] = Path("lrkit-tune"),
    budget: Annotated[
        float, typer.Option("--budget", help="Scale the task's step budget.", metavar="F")
    ] = 1.0,
    batch_sizes: Annotated[
        list[str] | None,
        typer.Option(
            "--batch-sizes",
            metavar="NS",
            help='Batch sizes to search too ("32,64,128"): the categorical batch_size, each '
            "trial's trial.batch_size. Default: the task's own. Not with --search pbt.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Search lr, optimizer and schedule for one task with Optuna (resumable).

    The Optuna parameters are [bold]lr[/bold] (log-uniform in --lr-range),
    [bold]optimizer[/bold] and [bold]schedule[/bold] (categorical). A trial's
    value is the task's final metric (mean over seeds); a diverged trial is
    COMPLETE with the worst value, a trial whose task raised is FAIL (5 in a
    row stop the search, exit 1). Prints the best settings as a spec and
    writes OUT/results.json and OUT/report.html.
    """
    import sys

    from lrkit.bench.store import StoreError
    from lrkit.bench.tune import TuneError, make_tune_progress, tune

    if not tasks:
        raise _fail("--tasks: give one task (e.g. --tasks digits or --tasks train.py:my_task)")
    try:
        results = tune(
            tasks,
            optimizers=optimizers,  # none: adam, or what the task is limited to
            schedules=schedules or (["constant()"] if search == "pbt" else ["cosine()"]),
            lr_range=lr_range,
            trials=trials,
            search=search,
            pruner=pruner,
            seeds=seeds,
            workers=workers,
            storage=storage,
            study=study,
            out=out,
            budget=budget,
            progress=make_tune_progress(),
            on_note=typer.echo,
            batch_sizes=batch_sizes,
        )
    except (TuneError, StoreError) as err:
        raise _fail(str(err)) from None
    except KeyboardInterrupt:
        typer.echo(
            "interrupted: finished trials are kept in the study; run the same command again "
            "to resume",
            err=True,
        )
        raise typer.Exit(130) from None
    except RuntimeError as err:
        raise _fail(str(err), code=1) from None
    except OSError as err:
        raise _fail(f"cannot write the outputs: {err}", code=1) from None
    if search == "pbt":
        _print_pbt(results, out)  # type: ignore[arg-type]  # tune returns PbtResults then
        return
    counts = results.counts()
    typer.echo(
        f"study {results.study!r} ({results.storage}): "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"; {results.ran} trial(s) run now"
    )
    best = results.best
    if best is None:
        typer.echo("no trial finished with a finite value")
    else:
        typer.echo(f"best: trial {best.trial}, {best.metric}={best.value:.4g}")
        typer.echo(str(best))
        typer.echo(f"confirm it: {best.command}")
    typer.echo(f"wrote {out / 'results.json'} and {out / 'report.html'}")
    if results.stopped:
        typer.echo(f"Error: {results.stopped}", err=True)
        sys.exit(1)
    if results.failed:
        typer.echo(
            f"{results.failed} trial(s) failed with an error (state FAIL; the reasons are in "
            f"{out / 'results.json'}, the tracebacks in {out / 'runs.sqlite'})",
            err=True,
        )
        sys.exit(1)


def _print_pbt(results: PbtResults, out: Path) -> None:
    """Print a population-based run: its members, the best one's schedule, exit 1 on errors."""
    import sys

    for m in results.members:
        final = "-" if m["final"] is None else f"{m['final']:.4g}"
        typer.echo(
            f"member {m['member']}: {m['optimizer']} start lr={m['start_lr']:g}, "
            f"{m['status']} {final}, {m['exploits']} exploit(s): {m['schedule']}"
        )
    best = results.best
    if best is None:
        typer.echo("no member finished with a finite value")
    else:
        typer.echo(f"best: member {best.trial}, {best.metric}={best.value:.4g}")
        typer.echo(f"pbt_schedule: {best.optimizer}  {results.pbt_schedule}")
        typer.echo(f"replay it: {best.command}")
    typer.echo(f"wrote {out / 'results.json'}")
    if results.failed:
        typer.echo(
            f"{results.failed} member(s) failed with an error (the reasons are in "
            f"{out / 'results.json'})",
            err=True,
        )
        sys.exit(1)


# --------------------------------------------------------------------------
# lrkit report
# --------------------------------------------------------------------------


def _grid_of(results: list) -> dict:
    """The grid's axes as far as the stored runs tell them."""
    configs = [r.config for r in results if r.config]
    return {
        "tasks": list(dict.fromkeys(c["task"] for c in configs)),
        "optimizers": list(dict.fromkeys(c["optimizer"] for c in configs)),
        "schedules": list(dict.fromkeys(c["schedule"] for c in configs)),
        "lrs": sorted({float(c["lr"]) for c in configs}),
        "seeds": len({c["seed"] for c in configs}),
        "budget": sorted({c["budget"] for c in configs}),
    }


def _same_path(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (resolved; the same inode where both exist)."""
    import os

    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _other_store(out: Path, store: Path) -> str | None:
    """The store named by ``OUT/results.json`` when it is not ``store``, else ``None``.

    ``None`` too when there is no results.json, or it names no store (not
    one of ours to judge). A relative path recorded by an older lrkit (no
    ``"store_resolved"``) is taken from the current folder or from OUT's
    parent (where ``lrkit compare`` ran with its defaults).
    """
    try:
        doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    recorded = doc.get("store") if isinstance(doc, dict) else None
    if not isinstance(recorded, str) or not recorded:
        return None
    resolved = doc.get("store_resolved")
    if isinstance(resolved, str) and resolved:
        candidates = [Path(resolved)]
    elif Path(recorded).is_absolute():
        candidates = [Path(recorded)]
    else:
        candidates = [Path(recorded), out.parent / recorded]
    if any(_same_path(candidate, store) for candidate in candidates):
        return None
    return resolved if isinstance(resolved, str) and resolved else recorded


@app.command("report")
def report_cmd(
    store: Annotated[
        Path,
        typer.Argument(
            metavar="STORE", help="A run store written by lrkit compare.", show_default=False
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output folder (results.json, report.html, PNG plots). "
            "Default: the store's own folder.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Overwrite OUT's report even if another store's runs made it."
        ),
    ] = False,
    tensorboard: _TensorBoardOption = None,
    csv: _CsvOption = False,
) -> None:
    """Re-render results.json, report.html and the PNG plots from a run store.

    Every run in STORE is read (nothing is run); the per-task summary is
    printed as by [bold]lrkit compare[/bold]. The report goes next to the
    store unless [bold]--out[/bold] says otherwise; a report that another
    store made is never overwritten without [bold]--force[/bold]. A task
    whose runs are of several kinds (two task files with one name, two
    versions of its code, several [bold]--budget[/bold] values) is ranked per
    kind, e.g. TASK@STEPS.
    """
    import sys

    from lrkit.bench.grid import split_tasks, summarize
    from lrkit.bench.store import RunStore, StoreError

    if not store.is_file():
        raise _fail(f"store {str(store)!r} does not exist or is not a file")
    out = store.parent if out is None else out
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {str(out)!r} exists and is not a folder")
    other = None if force else _other_store(out, store)
    if other is not None:
        raise _fail(
            f"{str(out / 'results.json')!r} is the report of store {other!r}, not of "
            f"{str(store)!r}; pass another --out, or --force to overwrite it"
        )
    try:
        with RunStore(store) as run_store:
            results = run_store.results()
    except StoreError as err:
        raise _fail(str(err)) from None
    if not results:
        raise _fail(f"store {str(store)!r} holds no runs")
    results, split = split_tasks(results)
    for task, names in split.items():
        typer.echo(
            f"task {task!r} has runs of {len(names)} kinds (task files, code versions or step "
            f"budgets): ranked apart, as {', '.join(names)}"
        )
    summary = summarize(results)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    _print_summary(console, summary)
    results_path = _write_results(out, _grid_of(results), store, results, summary)
    typer.echo(f"{len(results)} runs; wrote {results_path} and {out / 'report.html'}")
    _write_logs(out, results, tensorboard, csv)


# --------------------------------------------------------------------------
# lrkit find-lr
# --------------------------------------------------------------------------

#: ``lrkit find-lr``'s default output folder.
DEFAULT_FIND_OUT = Path("lrkit-find-lr")


def _task_optimizer(task: Any) -> str:
    """The optimizer find-lr and auto use when none is given: adamw, or the task's own
    (a scikit-learn task such as digits_sgd takes sgd only)."""
    return task.optimizers[0] if task.optimizers else "adamw"


_FIND_EXAMPLES = """\
[bold]Examples[/bold]

  lrkit find-lr --task digits                       adamw, 100 steps from 1e-7 to 10
  lrkit find-lr --task charlm --optimizer momentum --repeats 3
  lrkit find-lr --task signals --optimizer sgd --out runs/signals-sgd

Writes OUT/TASK-OPTIMIZER.png (loss vs lr, raw and smoothed, the suggestion
and its interval) and OUT/TASK-OPTIMIZER.json (lrs, losses, smoothed, the
suggestion, its interval, confidence and reason, the settings). A confidence
below 0.5 means: look at the plot before trusting the number."""


def _check_find_options(
    steps: int, repeats: int, min_lr: float, max_lr: float, method: str
) -> None:
    """``find-lr``'s numbers and rule, checked before anything runs (exit 2 if wrong)."""
    import math

    from lrkit.finder import METHODS

    if steps < 2:
        raise _fail(f"--steps must be an integer >= 2, got {steps}")
    if repeats < 1:
        raise _fail(f"--repeats must be an integer >= 1, got {repeats}")
    if not (math.isfinite(min_lr) and min_lr > 0):
        raise _fail(f"--min-lr must be a finite number > 0, got {min_lr:g}")
    if not (math.isfinite(max_lr) and max_lr > min_lr):
        raise _fail(f"--max-lr must be a finite number > --min-lr ({min_lr:g}), got {max_lr:g}")
    if method not in METHODS:
        raise _fail(f"--method must be one of {', '.join(METHODS)}, got {method!r}")


@app.command("find-lr", epilog=_FIND_EXAMPLES)
def find_lr_cmd(
    task: Annotated[
        str,
        typer.Option(
            "--task",
            metavar="NAME",
            help="A built-in task (see lrkit tasks), or your own: path/to/file.py:name or "
            "package.module:name (it must log its loss every step: trial.log(step, loss=...)).",
            show_default=False,
        ),
    ],
    optimizer: Annotated[
        str | None,
        typer.Option(
            "--optimizer",
            metavar="NAME",
            help="sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw or amsgrad "
            "(LR-free optimizers set their own lr). Default: adamw (digits_sgd: sgd).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Output folder for the PNG plot and the JSON.")
    ] = DEFAULT_FIND_OUT,
    seed: Annotated[
        int, typer.Option("--seed", help="The run seed: model initialisation and batch order.")
    ] = 0,
    steps: Annotated[
        int, typer.Option("--steps", metavar="N", help="Optimizer updates per sweep (>= 2).")
    ] = 100,
    min_lr: Annotated[float, typer.Option("--min-lr", help="The first lr of the ramp.")] = 1e-7,
    max_lr: Annotated[float, typer.Option("--max-lr", help="The last lr of the ramp.")] = 10.0,
    repeats: Annotated[
        int, typer.Option("--repeats", metavar="N", help="Sweeps over different batch orders.")
    ] = 1,
    method: Annotated[
        str,
        typer.Option("--method", help="Suggestion rule: default, valley, minimum or steepest."),
    ] = "default",
) -> None:
    """Run an lr range test on a task (built-in or your own) and suggest a learning rate.

    Trains the task's model from the state a run with [bold]--seed[/bold]
    starts from, raising the lr exponentially from --min-lr to --max-lr over
    --steps updates and stopping when the loss diverges; prints the suggested
    lr, its interval (where the rule lands on resampled curves) and a
    confidence with its reason; writes the plot and the numbers into OUT.
    """
    import time

    from lrkit.bench.find import result_to_dict, suggest_lr
    from lrkit.bench.optimizers import get_optimizer
    from lrkit.bench.run import warm_up
    from lrkit.bench.trial import load_task

    try:
        info = load_task(task)
    except ValueError as err:
        raise _fail(f"--task: {err}") from None
    task_name = info.name
    optimizer = optimizer or _task_optimizer(info)
    try:
        get_optimizer(optimizer)
        info.check_optimizer(optimizer)
    except ValueError as err:
        raise _fail(f"--optimizer: {err}") from None
    if get_optimizer(optimizer).lr_free:
        raise _fail(
            f"--optimizer: {optimizer!r} is learning-rate free (its lr is a multiplier of its "
            "own rule), so an lr range test does not apply; pick sgd, momentum, adam, adamw, ..."
        )
    chosen = get_optimizer(optimizer)
    if chosen.needs_closure:
        raise _fail(
            f"--optimizer: {chosen.name!r} takes two gradients a step (opt.step(closure)), an "
            f"lr range test one: run it with --optimizer {chosen.base}, whose lr it steps at"
        )
    _check_find_options(steps, repeats, min_lr, max_lr, method)
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {str(out)!r} exists and is not a folder")
    typer.echo(
        f"lr range test: {task} with {optimizer}, {steps} steps from {min_lr:g} to {max_lr:g}"
        + (f" x {repeats} repeats" if repeats > 1 else "")
        + f", seed {seed} ...",
        err=True,
    )
    warm_up()  # torch's one-off start-up costs (seconds), kept out of the sweep's time
    start = time.perf_counter()
    try:
        result = suggest_lr(
            task,
            optimizer,
            seed=seed,
            min_lr=min_lr,
            max_lr=max_lr,
            num_steps=steps,
            repeats=repeats,
            method=method,
        )
    except ValueError as err:  # the options were checked: a task or batch problem
        raise _fail(str(err).splitlines()[0], code=1) from None
    elapsed = time.perf_counter() - start
    stop = (
        f", stopped at lr {result.lrs[result.stopped]:.2g} (loss diverged)"
        if result.stopped is not None
        else ""
    )
    low, high = result.interval
    typer.echo(f"suggestion  {result.suggestion:.3g}   ({result.method} rule)")
    typer.echo(f"interval    {low:.3g} .. {high:.3g}")
    verdict = "" if result.confidence >= 0.5 else "  LOW: look at the plot"
    typer.echo(f"confidence  {result.confidence:.2f}{verdict}")
    typer.echo(f"reason      {result.reason}")
    typer.echo(f"cost        {result.updates} training steps in {elapsed:.1f}s{stop}")
    stem = f"{task_name}-{optimizer}"
    png, doc_path = out / f"{stem}.png", out / f"{stem}.json"
    doc = {
        "lrkit_version": lrkit.__version__,
        "task": task,
        "optimizer": optimizer,
        "settings": {
            "seed": seed,
            "min_lr": min_lr,
            "max_lr": max_lr,
            "num_steps": steps,
            "repeats": repeats,
            "method": method,
        },
        **result_to_dict(result),
    }
    try:
        from lrkit.bench.compare import write_json_atomic

        write_json_atomic(doc_path, doc)
        result.plot(png)
    except OSError as err:
        raise _fail(f"cannot write into {str(out)!r}: {err.strerror or err}", code=1) from None
    typer.echo(f"wrote {png} and {doc_path}")


# --------------------------------------------------------------------------
# lrkit auto
# --------------------------------------------------------------------------

DEFAULT_AUTO_OUT = Path("lrkit-auto")

_AUTO_EXAMPLES = """\
[bold]Examples[/bold]

  lrkit auto --tasks digits                              AdamW on a built-in task
  lrkit auto --tasks train.py:my_task --optimizer momentum
  lrkit auto --tasks train.py:my_task --max-cost 2 --out auto/

Prints the race at each rung and the kept run every tenth of its steps,
then the lr, the schedule (a spec of the whole run: re-run your task with
it and that seed to get the same metric), the metric and the steps spent;
writes OUT/auto.json and OUT/auto.png. Exit 2 for bad options or a
task that cannot be loaded, 1 when every run diverged or failed, or the
run kept diverged or failed after the race."""


@app.command("auto", epilog=_AUTO_EXAMPLES)
def auto_cmd(
    tasks: Annotated[
        list[str],
        typer.Option(
            "--tasks",
            metavar="NAME",
            help="One task: a built-in name (see lrkit tasks), or your own: path/to/file.py:name "
            "or package.module:name. It must log its loss every step: trial.log(step, loss=...).",
            show_default=False,
        ),
    ],
    optimizer: Annotated[
        str | None,
        typer.Option(
            "--optimizer",
            metavar="NAME",
            help="sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw or amsgrad. "
            "Default: adamw (digits_sgd: sgd).",
            show_default=False,
        ),
    ] = None,
    max_cost: Annotated[
        float,
        typer.Option(
            "--max-cost",
            metavar="F",
            help="The budget in runs of the task (> 1): every optimizer step counts, the kept "
            "run's included.",
        ),
    ] = 1.5,
    seed: Annotated[
        int, typer.Option("--seed", help="The seed of every run: model initialisation, data order.")
    ] = 0,
    out: Annotated[
        Path, typer.Option("--out", help="Output folder for auto.json and auto.png.")
    ] = DEFAULT_AUTO_OUT,
) -> None:
    """Choose the learning rate and the schedule of a task by itself, at a bounded cost.

    Starts one run per lr a decade apart (1e-5 ... 10), each holding its lr
    and then decaying it with a cosine; races them in lockstep, stops the
    worse ones at 3 %, 10 % and 25 % of the steps (by their training loss),
    and lets the last one train to the end. See docs/auto.md.
    """
    from lrkit.bench.auto import AutoError, AutoFailed, auto
    from lrkit.bench.compare import write_json_atomic
    from lrkit.bench.grid import split_names
    from lrkit.bench.optimizers import get_optimizer
    from lrkit.bench.trial import load_task

    names = split_names(tasks)
    if len(names) != 1:
        raise _fail(f"--tasks: auto takes one task, got {len(names)}: {', '.join(names)}")
    try:
        info = load_task(names[0])
    except ValueError as err:
        raise _fail(f"--tasks: {err}") from None
    optimizer = optimizer or _task_optimizer(info)
    try:
        get_optimizer(optimizer)
        info.check_optimizer(optimizer)
    except ValueError as err:
        raise _fail(f"--optimizer: {err}") from None
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {str(out)!r} exists and is not a folder")
    typer.echo(
        f"auto: {info.name} with {optimizer}, {info.steps} steps a run, at most "
        f"{max_cost:g} runs, seed {seed} ...",
        err=True,
    )
    try:
        result = auto(
            names[0],
            optimizer=optimizer,
            max_cost=max_cost,
            seed=seed,
            on_event=lambda line: typer.echo(f"  {line}", err=True),
        )
    except AutoFailed as err:
        raise _fail(str(err), code=1) from None
    except AutoError as err:
        raise _fail(str(err)) from None
    metric = "diverged" if result.metric is None else f"{result.metric:.6g}"
    typer.echo(f"lr           {result.lr:g}")
    typer.echo(f"schedule     {result.schedule}")
    typer.echo(f"{result.metric_name:<12s} {metric}  (seed {result.seed})")
    typer.echo(f"steps spent  {result.steps_spent} ({result.cost:.2f} runs of {result.steps})")
    if result.edge:
        typer.echo(
            f"note: {result.lr:g} is an end of the lrs tried; the best lr may lie beyond it",
            err=True,
        )
    try:
        write_json_atomic(out / "auto.json", result.to_dict())
        result.plot(out / "auto.png")
    except OSError as err:
        raise _fail(f"cannot write into {str(out)!r}: {err.strerror or err}", code=1) from None
    typer.echo(f"wrote {out / 'auto.json'} and {out / 'auto.png'}")
    if result.metric is None:  # the kept run diverged after the race: no lr to give
        raise _fail(
            f"the run kept (lr {result.lr:g}) diverged after the race: "
            f"{result.run.reason}; see {out / 'auto.png'}",
            code=1,
        )


# --------------------------------------------------------------------------
# lrkit diagnose
# --------------------------------------------------------------------------

_DIAGNOSE_EXAMPLES = """\
[bold]Examples[/bold]

  lrkit diagnose run.csv                      a CSV written by lrkit.sinks.CSV
  lrkit diagnose runs/tb/                     a TensorBoard log directory
  lrkit diagnose run.csv --out diagnosis/     also diagnosis/diagnosis.png

Reads the tags loss, lr/group{i}, update_ratio/group{i}; other writers'
names too: loss/train, train_loss, train/loss, Loss/train, train_loss_step,
training_loss; lr, learning_rate, train/lr, lr-<Optimizer> (read as group 0). Exit 0 whatever the
verdict; 2 when PATH cannot be read."""


@app.command("diagnose", epilog=_DIAGNOSE_EXAMPLES)
def diagnose_cmd(
    path: Annotated[
        Path,
        typer.Argument(
            metavar="PATH",
            help="A Monitor CSV file, or a TensorBoard log directory or event file.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write OUT/diagnosis.png (loss, lr and update ratio on one step axis, "
            "the bad stretch marked) and OUT/diagnosis.json.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Say whether a run's learning rate was too high, too low, on a plateau, or ok.

    Prints the verdict, the numbers it rests on and what to try.
    """
    from lrkit.diagnosis import diagnose
    from lrkit.monitor import read_record

    try:
        record = read_record(path)
    except (OSError, ValueError) as err:
        raise _fail(f"cannot read {str(path)!r}: {err}") from None
    record = _aliased(record)
    if "loss" not in record:
        raise _fail(
            f"cannot read {str(path)!r}: no 'loss' values in it (tags found: "
            f"{', '.join(record.tags) or 'none'})"
        )
    found = diagnose(record)
    typer.echo(f"verdict:  {found.verdict}")
    typer.echo(f"evidence: {found.evidence}")
    if found.advice:
        typer.echo(f"advice:   {found.advice}")
    if out is not None:
        from lrkit.bench.compare import write_json_atomic
        from lrkit.plotting import plot_diagnosis

        try:
            png = plot_diagnosis(record, found, out / "diagnosis.png")
            write_json_atomic(out / "diagnosis.json", {"path": str(path), **found.to_dict()})
        except OSError as err:
            raise _fail(f"cannot write into {str(out)!r}: {err.strerror or err}", code=1) from None
        typer.echo(f"wrote {png} and {out / 'diagnosis.json'}")


#: Tags other writers use for what the Monitor calls loss, lr/group0, update_ratio/group0
#: (lrkit compare's TensorBoard export, Lightning's LearningRateMonitor and self.log,
#: Keras' TensorBoard, a hand-written SummaryWriter loop), the first found taken.
_ALIASES = {
    "loss": (
        "loss/train",
        "train_loss",
        "train/loss",
        "Loss/train",
        "train_loss_step",
        "training_loss",
        "epoch_loss",
        "batch_loss",
    ),
    "lr/group0": ("lr", "learning_rate", "train/lr", "train/learning_rate", "epoch_learning_rate"),
    "update_ratio/group0": ("update_ratio",),
}


def _aliased(record: Any) -> Any:
    """``record`` with the first alias found copied to each Monitor tag it lacks."""
    from lrkit.monitor import Record

    extra = {}
    for tag, names in _ALIASES.items():
        if tag in record:
            continue
        for name in names:
            if name in record:
                extra[tag] = name
                break
    if "lr/group0" not in record and "lr/group0" not in extra:
        # Lightning's LearningRateMonitor: lr-<OptimizerClass> (lr-<Class>/pg1, ... for more groups)
        lightning = sorted(t for t in record.tags if re.fullmatch(r"lr-[A-Za-z0-9_]+", t))
        if lightning:
            extra["lr/group0"] = lightning[0]
    if not extra:
        return record
    rows = []
    for step, values in record.rows():
        for tag, name in extra.items():
            if name in values:
                values[tag] = values[name]
        rows.append((step, values))
    return Record.from_rows(rows)


def main() -> None:
    """Entry point of the ``lrkit`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
