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
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

import lrkit
from lrkit.plotting import default_steps, key_steps, plot_schedules, sparkline
from lrkit.schedules import Schedule

__all__ = ["app", "main"]

#: The most steps ``lrkit schedule`` evaluates (80 MB of float64 values).
MAX_STEPS = 10_000_000

#: Width of the sparkline in ``--format table``.
SPARK_WIDTH = 60

app = typer.Typer(
    name="lrkit",
    help="lrkit: learning-rate schedules, done once and done right.",
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
inverse_sqrt, wsd, warmup, join); join schedules with [bold]|[/bold], scale with [bold]*[/bold]:
  "linear(0.0, 0.1, steps=100) | cosine(lr=0.1, steps=900)"
Quote each spec for the shell."""


def _parse_specs(specs: list[str]) -> list[Schedule]:
    """Each spec parsed into a schedule; a bad one is a :class:`UsageError`."""
    schedules = []
    for k, spec in enumerate(specs):
        try:
            schedules.append(lrkit.parse(spec))
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


def main() -> None:
    """Entry point of the ``lrkit`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
