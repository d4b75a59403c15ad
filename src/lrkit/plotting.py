"""Pictures of schedules: matplotlib plots and plain-text summaries.

:func:`plot_schedules` draws one or more schedules into a labelled matplotlib
figure; :func:`sparkline` and :func:`key_steps` summarise a curve as text for
terminals (``lrkit schedule --format table`` uses them). matplotlib is
imported inside :func:`plot_schedules` only, so importing this module, like
importing :mod:`lrkit`, stays cheap.

Examples:
    >>> import lrkit
    >>> from lrkit.plotting import default_steps, key_steps, sparkline
    >>> s = lrkit.warmup(lrkit.cosine(lr=1.0, steps=80), steps=20)
    >>> default_steps([s])
    110
    >>> key_steps(s, 110)
    [0, 14, 20, 27, 54, 82, 100, 109]
    >>> sparkline(s.values(110), width=11)
    '▃▆█▇▇▅▄▃▂▁▁'
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrkit.schedules import Schedule

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = [
    "default_steps",
    "key_steps",
    "plot_auto",
    "plot_diagnosis",
    "plot_schedules",
    "sparkline",
]

#: Steps drawn when no schedule ends (every one runs for ever).
FALLBACK_STEPS = 1000

#: At most this many points per curve are drawn; longer runs are subsampled
#: evenly (a figure is about a thousand pixels wide).
MAX_POINTS = 50_000

_BARS = "▁▂▃▄▅▆▇█"


def default_steps(schedules: Sequence[Schedule]) -> int:
    """How many steps to show: the longest length plus 10 %, or 1000 if none ends.

    Args:
        schedules: the schedules to be shown together.

    Returns:
        The number of steps, an int >= 1.

    Examples:
        >>> import lrkit
        >>> default_steps([lrkit.cosine(lr=0.1, steps=10000), lrkit.constant(0.1)])
        11000
        >>> default_steps([lrkit.constant(0.1)])
        1000
    """
    lengths = [s.length for s in schedules if s.length is not None]
    if not lengths:
        return FALLBACK_STEPS
    longest = max(lengths)
    return longest + (longest + 9) // 10  # integer ceil of 10 %: no float round-up


def _as_schedule(item: Any) -> Schedule:
    """A schedule, or a spec string parsed into one."""
    if isinstance(item, Schedule):
        return item
    if isinstance(item, str):
        from lrkit.spec import parse

        return parse(item)
    raise ValueError(
        f"plot_schedules: each schedule must be an lrkit schedule or a spec string, "
        f"got {type(item).__name__}: {item!r}"
    )


def _sample_steps(steps: int) -> np.ndarray:
    """All steps ``0..steps-1``, or ``MAX_POINTS`` of them evenly spread (ends kept)."""
    if steps <= MAX_POINTS:
        return np.arange(steps, dtype=np.int64)
    return np.unique(np.linspace(0, steps - 1, MAX_POINTS).round().astype(np.int64))


def plot_schedules(
    schedules: Schedule | str | Sequence[Schedule | str],
    steps: int | None = None,
    *,
    path: str | None = None,
    ax: Axes | None = None,
    labels: Sequence[str | None] | None = None,
    log: bool = False,
) -> Axes:
    """Draw schedules overlaid in one labelled plot, and save it if asked.

    The plot has ``step`` on the x axis, ``learning rate`` on the y axis, a
    title and a legend naming each curve by its spec (or its label).

    matplotlib is imported here, not before. With ``path`` and no ``ax`` the
    figure is a bare :class:`matplotlib.figure.Figure` rendered by the Agg
    canvas: pyplot is never touched, so this works without a display and
    leaves no open figure behind. With ``ax``, the curves go into that Axes
    (and its figure is saved when ``path`` is given, but not closed: it is
    the caller's). With neither, a new pyplot figure is made for interactive
    use (``plt.show()``, notebooks).

    Args:
        schedules: a schedule, a spec string, or a sequence of them.
        steps: how many steps to draw, ``0..steps-1`` (default: the longest
            length plus 10 %, or 1000 if no schedule ends). Runs longer than
            50 000 steps are drawn from 50 000 evenly spread steps.
        path: save the figure there; the format follows the extension (PNG,
            SVG, PDF). Missing parent folders are created.
        ax: a matplotlib Axes to draw into instead of a new figure.
        labels: one legend label per schedule; ``None`` entries (or no list)
            use the schedule's spec string.
        log: log-scaled learning-rate axis (steps where the lr is 0 are left out).

    Returns:
        The matplotlib Axes drawn into.

    Raises:
        ValueError: no schedules, a label list of the wrong length, or
            ``steps`` not an integer >= 1.

    Examples:
        >>> import lrkit, tempfile, os
        >>> s = lrkit.warmup(lrkit.cosine(lr=0.1, steps=900), steps=100)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     ax = plot_schedules([s, lrkit.constant(0.05)], path=os.path.join(d, "lr.png"))
        ...     os.path.getsize(os.path.join(d, "lr.png")) > 10_000
        True
        >>> ax.get_xlabel(), ax.get_ylabel(), len(ax.get_lines())
        ('step', 'learning rate', 2)
    """
    items = [schedules] if isinstance(schedules, (Schedule, str)) else list(schedules)
    if not items:
        raise ValueError("plot_schedules: schedules must hold at least one schedule, got none")
    scheds = [_as_schedule(item) for item in items]
    if labels is None:
        labels = [None] * len(scheds)
    if isinstance(labels, str) or len(labels) != len(scheds):
        raise ValueError(
            f"plot_schedules: labels must be a list with one entry per schedule "
            f"({len(scheds)}), got {labels!r}"
        )
    if steps is None:
        steps = default_steps(scheds)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"plot_schedules: steps must be an integer >= 1, got {steps!r}")
    steps = int(steps)

    if ax is None:
        size = (8.0, 4.5 + 0.2 * max(0, len(scheds) - 3))  # room for a legend underneath
        if path is not None:
            from matplotlib.figure import Figure  # no pyplot: no display, nothing to close

            fig = Figure(figsize=size, dpi=120, layout="constrained")
        else:
            import matplotlib.pyplot as plt

            fig = plt.figure(figsize=size, dpi=120, layout="constrained")
        ax = fig.add_subplot()

    x = _sample_steps(steps)
    pairs = zip(scheds, labels, strict=True)
    names = [str(s) if label is None else str(label) for s, label in pairs]
    for sched, name in zip(scheds, names, strict=True):
        y = sched.values(x)
        if log:
            y = np.where(y > 0, y, np.nan)  # zeros have no place on a log axis
        ax.plot(x, y, label=textwrap.fill(name, 60), linewidth=1.6)

    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_xlim(0, max(steps - 1, 1))
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    title = names[0] if len(names) == 1 else f"{len(names)} learning-rate schedules"
    ax.set_title(textwrap.fill(title, 70), fontsize=10)
    if len(names) <= 3:
        ax.legend(fontsize=8, loc="best")
    else:  # many curves: the legend goes under the plot, where it hides none of them
        ax.legend(
            fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False
        )

    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        root: Any = getattr(ax.figure, "figure", ax.figure)  # a subfigure saves via its figure
        root.savefig(path)
    return ax


def sparkline(values: np.ndarray, width: int = 60, *, log: bool = False) -> str:
    """The curve as one line of block characters (``▁`` lowest to ``█`` highest).

    The values are cut into ``width`` equal runs of steps; each character
    shows the mean of its run, scaled between the smallest and largest mean.

    Args:
        values: the learning rates, one per step.
        width: characters in the line (fewer if there are fewer values).
        log: scale by ``log10`` (zeros draw as the lowest bar).

    Returns:
        The sparkline; a flat schedule is a flat line of ``▄``.

    Raises:
        ValueError: ``width`` below 1.

    Examples:
        >>> sparkline(np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]))
        '▁▂▃▄▅▆▇█'
        >>> sparkline(np.ones(100), width=5)
        '▄▄▄▄▄'
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"sparkline: width must be an integer >= 1, got {width!r}")
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return ""
    width = min(width, v.size)
    edges = np.linspace(0, v.size, width + 1).round().astype(np.int64)
    means = np.add.reduceat(v, edges[:-1]) / np.diff(edges)
    if log:
        positive = means[means > 0]
        floor = positive.min() if positive.size else 1.0
        means = np.log10(np.maximum(means, floor))
    lo, hi = float(means.min()), float(means.max())
    if not hi - lo > 1e-12 * max(abs(hi), abs(lo), 1e-300):
        return _BARS[3] * width
    levels = np.rint((means - lo) / (hi - lo) * (len(_BARS) - 1)).astype(np.int64)
    return "".join(_BARS[k] for k in levels)


def key_steps(schedule: Schedule, n: int, *, rows: int = 8) -> list[int]:
    """A few steps in ``[0, n)`` that tell the story of a schedule, for a compact table.

    Step 0 and the last step ``n - 1``; the steps where a phase begins (a
    warmup's end, a decay's start, a milestone, the schedule's end: as the
    schedule's class gives them), earliest first; the step of the peak; then
    evenly spread steps until there are ``rows``.

    Args:
        schedule: the schedule.
        n: the number of steps shown, ``0..n-1``.
        rows: about how many steps to return (phase steps may add a few more:
            0, n - 1, the end and the peak are always there).

    Returns:
        Sorted, distinct steps in ``[0, n-1]``.

    Examples:
        >>> import lrkit
        >>> key_steps(lrkit.step_decay(1.0, step_size=30), 100, rows=6)
        [0, 30, 50, 60, 90, 99]
        >>> key_steps(lrkit.warmup(lrkit.cosine(lr=1.0, steps=80), steps=20), 110)
        [0, 14, 20, 27, 54, 82, 100, 109]
    """
    if n < 1:
        return []
    picks = {0, n - 1}
    length = schedule.length
    if length is not None and length < n:
        picks.add(length)
    top = int(np.argmax(schedule.values(_sample_steps(n))))
    picks.add(int(_sample_steps(n)[top]))
    for step, _ in schedule._phase_starts():  # by step
        if len(picks) >= rows:
            break
        if 0 < step < n:
            picks.add(step)
    near = max(1, n // 20)  # evenly spread steps this close to a pick say nothing new
    for frac in (0.5, 0.25, 0.75, 0.125, 0.375, 0.625, 0.875):
        if len(picks) >= rows:
            break
        step = round(frac * (n - 1))
        if all(abs(step - p) > near for p in picks):
            picks.add(step)
    return sorted(picks)


def plot_diagnosis(record: Any, diagnosis: Any, path: str | Path) -> Path:
    """Draw a run's loss, lr and update ratio on one step axis, the bad stretch marked.

    Three panels sharing the step axis: the training loss (log scale when
    positive, a median-smoothed line over the raw points), the lr of every
    param group, and the update-to-weight ratio per group with the usual
    1e-4..1e-2 band shaded. The stretch the diagnosis points at is shaded red
    in every panel, and the title carries the verdict.

    Args:
        record: An :class:`lrkit.monitor.Record`.
        diagnosis: Its :class:`lrkit.diagnosis.Diagnosis`.
        path: The PNG to write (folders are created).

    Returns:
        The path written.
    """
    import logging

    from matplotlib.figure import Figure

    from lrkit.diagnosis import rolling_median  # no pyplot: an interactive session's backend stays

    # matplotlib would otherwise print one "findfont" line per mathtext font family
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = [("loss", ["loss"]), ("lr", record.groups("lr"))]
    ratios = record.groups("update_ratio")
    if ratios:
        panels.append(("update ratio", ratios))
    fig = Figure(figsize=(8, 2.3 * len(panels) + 0.6))
    axes = fig.subplots(len(panels), 1, sharex=True)
    colors = {"ok": "tab:green", "plateau": "tab:orange"}
    fig.suptitle(
        textwrap.fill(f"{diagnosis.verdict}: {diagnosis.evidence}", 100),
        fontsize=9,
        color=colors.get(diagnosis.verdict, "tab:red"),
    )
    for ax, (name, tags) in zip(np.atleast_1d(axes), panels, strict=True):
        for tag in tags:
            steps, values = record.series(tag)
            keep = np.isfinite(values)
            steps, values = steps[keep], values[keep]
            if len(values) > MAX_POINTS:
                pick = np.linspace(0, len(values) - 1, MAX_POINTS).astype(int)
                steps, values = steps[pick], values[pick]
            if name == "loss" and len(values) >= 9:
                ax.plot(steps, values, ".", ms=1.5, alpha=0.35, color="tab:blue")
                smooth = rolling_median(values, max(len(values) // 50, 3) | 1)
                ax.plot(steps, smooth, lw=1.4, color="tab:blue", label="loss (median)")
            else:
                ax.plot(steps, values, lw=1.2, marker="." if len(values) < 40 else None, label=tag)
            if len(values) and name != "lr":
                if np.all(values > 0):
                    ax.set_yscale("log")
                elif np.any(values > 0):  # a loss that touched 0: log above a small linear part
                    ax.set_yscale("symlog", linthresh=float(np.min(values[values > 0])))
        if name == "update ratio":
            ax.axhspan(1e-4, 1e-2, color="tab:green", alpha=0.08, label="usual band")
        if diagnosis.stretch is not None:
            ax.axvspan(*diagnosis.stretch, color="tab:red", alpha=0.12)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if len(tags) > 1 or name == "update ratio":
            ax.legend(fontsize=7, loc="best")
    np.atleast_1d(axes)[-1].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_auto(result: Any, path: str | Path) -> Path:
    """Draw an :class:`lrkit.bench.auto.AutoResult`: the race and the chosen schedule.

    Top: every lane's training loss against the step (a running median,
    log scale when positive), one colour per lr, the rungs as dotted lines,
    a cross where a lane was stopped and the kept run in bold. Bottom: the
    chosen schedule's lr over the whole run.

    Returns:
        The path written.
    """
    import logging

    from matplotlib.figure import Figure

    from lrkit.diagnosis import rolling_median
    from lrkit.spec import parse

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(8, 6))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
    fig.suptitle(
        f"lrkit auto: {result.task} with {result.optimizer}: lr {result.lr:g}, "
        f"{result.metric_name}={'diverged' if result.metric is None else f'{result.metric:.4g}'}"
        f", {result.cost:.2f} runs",
        fontsize=10,
    )
    positive = True
    for index, probe in enumerate(sorted(result.probes, key=lambda p: p.lr)):
        values = np.asarray(probe.losses, dtype=float)
        if not len(values):
            continue
        steps = np.arange(len(values))
        keep = np.isfinite(values)
        smooth = values.copy()
        if keep.sum() >= 5:
            smooth[keep] = rolling_median(values[keep], max(int(keep.sum()) // 40, 3) | 1)
        positive &= bool(np.all(values[keep] > 0))
        kept = probe.lr == result.lr and probe.status != "pruned"
        color = f"C{index % 10}"
        top.plot(
            steps[keep],
            smooth[keep],
            color=color,
            lw=2.2 if kept else 1.0,
            label=f"lr {probe.lr:g}" + (" (kept)" if kept else f" ({probe.status})"),
        )
        if not kept and keep.any():
            last = int(steps[keep][-1])
            top.plot([last], [smooth[keep][-1]], "x", color=color, ms=7)
    for rung in result.rungs:
        for ax in (top, bottom):
            ax.axvline(rung.step, color="grey", ls=":", lw=0.8)
    if positive:
        top.set_yscale("log")
    top.set_ylabel("training loss")
    top.legend(fontsize=7, loc="best")
    top.grid(alpha=0.3)
    schedule = parse(result.schedule)
    grid = np.arange(result.steps)
    bottom.plot(grid, schedule.values(grid), color="tab:blue", lw=1.4)
    bottom.set_ylabel("lr")
    bottom.set_xlabel("step")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
