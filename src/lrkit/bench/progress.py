"""What the runner tells while it works: a rich progress bar or one line per run.

:func:`make_progress` picks a :class:`RichProgress` bar on a terminal and
:class:`PlainProgress` lines otherwise; both show the best final metric so far
per task.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol, TextIO

from lrkit.bench.run import RunResult

__all__ = ["PlainProgress", "Progress", "RichProgress", "describe", "make_progress"]


# --------------------------------------------------------------------------


class Progress(Protocol):
    """What the runner tells about its progress."""

    def start(self, total: int, done: int, workers: int) -> None:
        """``total`` runs in the grid, ``done`` of them already stored."""

    def update(self, result: RunResult) -> None:
        """One run finished (and was stored)."""

    def finish(self) -> None:
        """The runner is done (also called after an interruption)."""


def describe(config: dict[str, Any]) -> str:
    """A short label of a run: ``digits adam cosine() lr=0.001 seed=0`` (``batch=64`` if set)."""
    batch = config.get("batch_size")
    return (
        f"{_task_name(config['task'])} {config['optimizer']} {config['schedule']} "
        f"lr={config['lr']:g}{'' if batch is None else f' batch={batch}'} seed={config['seed']}"
    )


def _task_name(ref: str) -> str:
    """A task reference as shown: ``path/to/train.py:my_task`` -> ``train.py:my_task``."""
    left, sep, name = ref.rpartition(":")
    return f"{left.replace(chr(92), '/').rsplit('/', 1)[-1]}:{name}" if sep else ref


class _Best:
    """The best final metric so far, per task."""

    def __init__(self) -> None:
        self.best: dict[str, tuple[float, str]] = {}

    def update(self, result: RunResult) -> str:
        """Record ``result``; return ``"task: best metric=value (setting)"``."""
        task = result.task
        final = result.final
        if result.finished and final is not None:
            current = self.best.get(task)
            if current is None or (
                final > current[0] if result.mode == "max" else final < current[0]
            ):
                batch = result.config.get("batch_size")
                setting = (
                    f"{result.config['optimizer']} {result.config['schedule']} "
                    f"lr={result.config['lr']:g}{'' if batch is None else f' batch={batch}'}"
                )
                self.best[task] = (final, setting)
        if task not in self.best:
            return f"{task}: no finished run yet"
        value, setting = self.best[task]
        return f"{task}: best {result.metric}={value:.4g} ({setting})"


class PlainProgress:
    """One line per finished run, for logs and pipes.

    Args:
        stream: Where the lines go (default ``sys.stdout``).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.total = 0
        self.done = 0
        self._best = _Best()

    def start(self, total: int, done: int, workers: int) -> None:
        self.total, self.done = total, done
        todo = total - done
        if todo == 0:
            plan = "nothing to run"
        elif workers == 0:
            plan = f"{todo} to run in this process"
        else:
            plan = f"{todo} to run on {workers} worker(s)"
        print(f"{total} runs, {done} already stored, {plan}", file=self.stream, flush=True)

    def update(self, result: RunResult) -> None:
        self.done += 1
        best = self._best.update(result)
        if result.finished and result.final is not None:
            outcome = f"{result.metric}={result.final:.4g}"
            if result.status == "rescued":
                outcome += f" ({result.reason})"
        elif result.status == "diverged":
            outcome = f"diverged at step {result.diverged_at}"
        else:
            outcome = f"error: {result.reason}"
        print(
            f"[{self.done}/{self.total}] {describe(result.config)}: {outcome} "
            f"({result.wall_time:.1f}s) | {best}",
            file=self.stream,
            flush=True,
        )

    def finish(self) -> None:
        pass


class RichProgress:
    """A rich progress bar: runs done/total, elapsed, ETA, best so far.

    The counts and times keep their width in any terminal; the best-so-far
    text takes what is left and is cut with "…" (or left out) when the
    terminal is narrow.

    Args:
        console: Where the bar is drawn (default: rich's console on stdout).
    """

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar
        from rich.table import Column
        from rich.text import Text

        class BestColumn(ProgressColumn):
            """The best so far: one line, the only column that gives way."""

            def render(self, task: Any) -> Text:
                return Text(task.fields.get("best", ""), no_wrap=True, overflow="ellipsis")

        def fixed(width: int = 0) -> Column:
            # no_wrap: rich never narrows this column to make room (it would show "…").
            return Column(no_wrap=True, min_width=width)

        console = console if console is not None else Console()
        self._bar = Bar(
            TextColumn("[bold]runs", table_column=fixed()),
            BarColumn(bar_width=40 if console.width >= 120 else 15, table_column=fixed()),
            MofNCompleteColumn(table_column=fixed()),
            TimeElapsedColumn(table_column=fixed(7)),
            TextColumn("ETA", table_column=fixed()),
            TimeRemainingColumn(table_column=fixed(7)),
            BestColumn(table_column=Column(no_wrap=False, min_width=0)),
            console=console,
        )
        self._task: Any = None
        self._best = _Best()

    def start(self, total: int, done: int, workers: int) -> None:
        self._bar.start()
        self._task = self._bar.add_task("runs", total=total, completed=done, best="")

    def update(self, result: RunResult) -> None:
        self._bar.update(self._task, advance=1, best=self._best.update(result))

    def finish(self) -> None:
        self._bar.stop()


def make_progress(stream: TextIO | None = None) -> Progress:
    """A :class:`RichProgress` when ``stream`` (stdout) is a terminal, else plain lines."""
    stream = stream if stream is not None else sys.stdout
    if stream.isatty():
        return RichProgress()
    return PlainProgress(stream)


class _Silent:
    def start(self, total: int, done: int, workers: int) -> None:
        pass

    def update(self, result: RunResult) -> None:
        pass

    def finish(self) -> None:
        pass
