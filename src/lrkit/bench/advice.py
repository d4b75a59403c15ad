"""What to pick from a compare, and how sure to be: :func:`advise` (pure).

Per task, from the summary rows of :func:`~lrkit.bench.grid.summarize`
(best first, each optimizer x schedule at its best lr, with the lrs it ran):

- **The winner** is the first row with a finished run.
- **Ties.** Another setting is *within noise* of the winner when both have at
  least :data:`MIN_SEEDS` finished seeds, both finished all their seeds or
  both did not, and their means differ by no more than the larger of the two
  standard deviations shown in the table (the population std over seeds)::

      |mean_a - mean_b| <= max(std_a, std_b)

  A rule to check by eye in the table, not a significance test: with 2 seeds
  a std is half the gap between them, so "tied" reads "the two settings
  differ by no more than one setting's seeds differ from each other". With
  one seed there is no measure of noise: nothing is called a tie and the
  verdict says "uncertain: 1 seed".
- **Edge of the grid.** When the winner's best lr is the lowest or the
  highest lr its setting ran (of at least two), the optimum may lie outside
  the grid: the advice says so and suggests the next lrs, the edge lr and two
  more steps beyond it at the grid's own spacing (the geometric mean ratio of
  the lrs tried, kept between :data:`MIN_SPACING` and a decade).
- **Verdict**, one line: ``pick adam + cosine() at lr 0.001 (clear winner)``,
  ``... (tied with 2 others within noise: ...)``, ``... (uncertain: 1 seed)``.

Nothing here imports torch or matplotlib.

Examples:
    >>> from lrkit.bench.grid import SettingSummary
    >>> def row(opt, lr, mean, std, seeds=2):
    ...     return SettingSummary("digits", opt, "cosine()", lr, "val_acc", "max", mean, std,
    ...                           seeds, seeds, None, 0, 6, 0, lrs=[0.001, 0.01, 0.1])
    >>> advise("digits", [row("adam", 0.01, 0.97, 0.002), row("sgd", 0.1, 0.93, 0.004)]).verdict
    'pick adam + cosine() at lr 0.01 (clear winner)'
    >>> advice = advise("digits", [row("adam", 0.1, 0.97, 0.01), row("sgd", 0.1, 0.965, 0.004)])
    >>> advice.verdict
    'pick adam + cosine() at lr 0.1 (tied with 1 other within noise: sgd + cosine() at lr 0.1)'
    >>> print(advice.notes[0])
    lr 0.1 is the highest lr tried (0.001 to 0.1), the edge of the grid: try higher lrs,
    e.g. --lrs 0.1,1,10
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lrkit.bench.grid import SettingSummary, names_batch

__all__ = [
    "MAX_SPACING",
    "MIN_SEEDS",
    "MIN_SPACING",
    "Advice",
    "Pick",
    "advise",
    "advise_all",
    "next_lrs",
    "within_noise",
]

#: Finished seeds a setting needs before it can be called tied (one seed measures no noise).
MIN_SEEDS = 2

#: The smallest ratio between suggested lrs, however dense the grid.
MIN_SPACING = 2.0

#: The largest ratio between suggested lrs (a decade), however sparse the grid.
MAX_SPACING = 10.0


def _lr_free(optimizer: str) -> bool:
    from lrkit.bench.optimizers import get_optimizer

    try:
        return get_optimizer(optimizer).lr_free
    except ValueError:
        return False


@dataclass(frozen=True)
class Pick:
    """One optimizer x schedule at its best lr, as the advice names it."""

    optimizer: str
    schedule: str
    lr: float
    mean: float | None
    std: float | None
    lr_free: bool = False
    #: Set when the task ran several batch sizes (``--batch-sizes``).
    batch_size: int | None = None

    @property
    def label(self) -> str:
        """``adam + cosine() at lr 0.001`` (``at multiplier 1`` for LR-free optimizers).

        ``..., batch 64`` is added when the task ran several batch sizes.
        """
        what = "multiplier" if self.lr_free else "lr"
        batch = "" if self.batch_size is None else f", batch {self.batch_size}"
        return f"{self.optimizer} + {self.schedule} at {what} {self.lr:g}{batch}"

    def to_dict(self) -> dict[str, Any]:
        """Return the pick as JSON-ready data."""
        return {
            "optimizer": self.optimizer,
            "schedule": self.schedule,
            "lr": self.lr,
            "mean": self.mean,
            "std": self.std,
            **({} if self.batch_size is None else {"batch_size": self.batch_size}),
        }


@dataclass(frozen=True)
class Advice:
    """What to pick on one task, and how sure to be.

    Attributes:
        task: The task.
        verdict: One line: what to pick and how sure (see the module docstring).
        headline: The verdict without the names of the tied settings (a
            terminal lists them one a line under it).
        confidence: ``"clear"`` (a clear winner), ``"tied"`` (others within
            noise), ``"uncertain"`` (too few finished seeds to tell),
            ``"only"`` (a single setting was run) or ``"none"`` (no finished run).
        winner: The setting to pick (``None`` when no run finished).
        ties: The other settings within noise of the winner, best first.
        edge: ``"lowest"`` or ``"highest"`` when the winner's best lr is that
            end of the lrs its setting ran, else ``None``.
        next_lrs: At an edge, the lrs to try next (ascending, the edge lr
            included), else empty.
        notes: Lines that go under the verdict: the edge, a single lr or seed.
    """

    task: str
    verdict: str
    headline: str
    confidence: str
    winner: Pick | None = None
    ties: tuple[Pick, ...] = ()
    edge: str | None = None
    next_lrs: tuple[float, ...] = ()
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The verdict, then the notes: what the CLI prints under a task's table."""
        return [self.verdict, *self.notes]

    def to_dict(self) -> dict[str, Any]:
        """Return the advice as JSON-ready data."""
        return {
            "verdict": self.verdict,
            "headline": self.headline,
            "confidence": self.confidence,
            "winner": None if self.winner is None else self.winner.to_dict(),
            "ties": [t.to_dict() for t in self.ties],
            "edge": self.edge,
            "next_lrs": list(self.next_lrs),
            "notes": list(self.notes),
        }


def _pick(row: SettingSummary, batches: bool) -> Pick:
    batch = row.batch_size if batches else None
    return Pick(
        row.optimizer, row.schedule, row.lr, row.mean, row.std, _lr_free(row.optimizer), batch
    )


def within_noise(a: SettingSummary, b: SettingSummary) -> bool:
    """Whether two settings are tied by the rule of the module docstring (symmetric)."""
    if a.mean is None or b.mean is None or min(a.finished, b.finished) < MIN_SEEDS:
        return False
    if (a.finished < a.seeds) != (b.finished < b.seeds):
        return False
    noise = max(a.std or 0.0, b.std or 0.0)
    return abs(a.mean - b.mean) <= noise


def next_lrs(lrs: Sequence[float], edge: str) -> tuple[float, ...]:
    """The edge lr and two more steps beyond it, at the grid's spacing (ascending).

    Args:
        lrs: The lrs tried, at least two distinct values > 0.
        edge: ``"lowest"`` or ``"highest"``.

    Examples:
        >>> next_lrs([1e-3, 1e-2, 1e-1, 1.0], "highest")
        (1.0, 10.0, 100.0)
        >>> next_lrs([0.01, 0.03, 0.1], "lowest")
        (0.001, 0.00316, 0.01)
    """
    low, high = min(lrs), max(lrs)
    steps = len(set(lrs)) - 1
    if steps < 1 or not low > 0:
        raise ValueError(f"next_lrs: need at least two distinct lrs > 0, got {list(lrs)}")
    ratio = min(max((high / low) ** (1.0 / steps), MIN_SPACING), MAX_SPACING)
    # Rounded to 3 significant digits: the values are meant to be typed on a command line.
    if edge == "highest":
        return tuple(float(f"{high * ratio**k:.3g}") for k in range(3))
    if edge == "lowest":
        return tuple(float(f"{low / ratio**k:.3g}") for k in (2, 1, 0))
    raise ValueError(f"next_lrs: edge must be 'lowest' or 'highest', got {edge!r}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def advise(task: str, rows: Sequence[SettingSummary]) -> Advice:
    """What to pick on one task, from its summary rows (best first), and how sure to be.

    Args:
        task: The task's name.
        rows: The task's :class:`~lrkit.bench.grid.SettingSummary` rows in
            :func:`~lrkit.bench.grid.summarize`'s order (best first).

    Returns:
        The :class:`Advice`; the rule is in the module docstring.
    """
    finished = [row for row in rows if row.mean is not None]
    if not finished:
        nothing = "nothing to pick: no setting finished a run (every run diverged or failed)"
        return Advice(task, nothing, nothing, "none")
    best = finished[0]
    batches = names_batch(rows)  # --batch-sizes: name the batch
    winner = _pick(best, batches)
    ties = tuple(_pick(row, batches) for row in finished[1:] if within_noise(best, row))
    what = "multiplier" if winner.lr_free else "lr"

    notes: list[str] = []
    doubts: list[str] = []
    if best.finished < MIN_SEEDS:
        doubts.append(
            "1 seed" if best.seeds == 1 else f"{best.finished} of {best.seeds} seeds finished"
        )
        rerun = (
            "rerun with --seeds 2 or more"
            if best.seeds < MIN_SEEDS
            else f"the others did not finish; rerun with more --seeds than {best.seeds}"
        )
        notes.append(
            f"with {_plural(best.finished, 'finished seed')} there is no measure of noise, "
            f"so no setting can be called tied with it: {rerun}"
        )
    elif best.finished < best.seeds:
        doubts.append(f"{best.seeds - best.finished} of {best.seeds} seeds did not finish")

    edge: str | None = None
    suggested: tuple[float, ...] = ()
    lrs = sorted(set(best.lrs))
    if len(lrs) == 1:
        notes.append(
            f"only one {what} was run for this setting: no telling whether another is better"
        )
    elif len(lrs) > 1 and best.lr in (lrs[0], lrs[-1]):
        edge = "highest" if best.lr == lrs[-1] else "lowest"
        suggested = next_lrs(lrs, edge)
        option = "--multipliers" if winner.lr_free else "--lrs"
        notes.append(
            f"{what} {best.lr:g} is the {edge} {what} tried ({lrs[0]:g} to {lrs[-1]:g}), "
            f"the edge of the grid: try {'higher' if edge == 'highest' else 'lower'} {what}s, "
            f"e.g. {option} {','.join(f'{x:g}' for x in suggested)}"
        )

    if doubts:
        confidence = "uncertain"
    elif ties:
        confidence = "tied"
    elif len(rows) == 1:
        confidence = "only"
    else:
        confidence = "clear"
    tied = f"tied with {_plural(len(ties), 'other')} within noise" if ties else ""
    doubt = "uncertain: " + ", ".join(doubts) if doubts else ""
    alone = "the only setting run" if confidence == "only" else "clear winner"

    def line(tied: str) -> str:
        return f"pick {winner.label} ({'; '.join(p for p in (tied, doubt) if p) or alone})"

    named = f"{tied}: {', '.join(t.label for t in ties)}" if ties else ""
    return Advice(
        task, line(named), line(tied), confidence, winner, ties, edge, suggested, tuple(notes)
    )


def advise_all(summary: Mapping[str, Sequence[SettingSummary]]) -> dict[str, Advice]:
    """:func:`advise` for every task of a :func:`~lrkit.bench.grid.summarize` result."""
    return {task: advise(task, rows) for task, rows in summary.items()}
