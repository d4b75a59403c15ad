"""The HTML report and PNG plots of a compare: :func:`write_report`.

:func:`write_report` takes the runs of a grid and writes, into one folder,
``report.html`` (self-contained: inline CSS, PNGs embedded as base64 data
URIs, no script and no external link, so it opens offline) and, per task,
four PNGs that are also embedded in the page:

- ``sensitivity_<task>.png``: final metric against learning rate (log x),
  one line per optimizer x schedule, mean over seeds, diverged points
  marked with a red cross;
- ``curves_<task>.png``: the validation metric against step for each
  optimizer x schedule at its best learning rate (mean over seeds);
- ``schedules_<task>.png``: the learning rate each of those best settings
  actually used, step by step;
- ``update_ratio_<task>.png``: the update-to-weight ratio
  ``||w_{t+1} - w_t|| / ||w_t||`` of those best settings against step (log
  y; median over seeds), with the band around 1e-3 that is a common rule of
  thumb for a healthy step size. The best-settings table gives its median
  over training too.
- ``batch_lr_<task>.png``, when the task ran several batch sizes
  (``--batch-sizes``): the best lr of each optimizer x schedule against the
  batch size (log-log), with the linear and square-root scaling rules
  (:func:`lrkit.scale_lr`) drawn from its smallest batch size's best lr. A
  best lr at the edge of the lrs tried is drawn hollow: the true best lies
  beyond it. Every other table and plot then names a setting with its batch
  size (``cosine() · batch 64``).

The best-settings table gives what each setting costs beside what it
reaches: the steps each run trained and its wall time (mean seconds per run
at the best lr), since a step is not the same work everywhere (a SAM step
takes two forward-backward passes). It also gives each optimizer's memory:
its state in copies of the weights (SGD 0, momentum 1, Adam 2), measured from the
optimizer's tensors during the run (:func:`lrkit.torch.optimizer_state_size`),
with the bytes and the split by state key on hover. Its last column is the
diagnosis each best-lr run gets from its own curves alone, the one
``lrkit.torch.Monitor`` and ``lrkit diagnose`` give (:func:`run_diagnosis`,
:mod:`lrkit.diagnosis`), with the evidence on hover.

Each task's section opens with what to pick and how sure to be
(:func:`lrkit.bench.advice.advise`: the winner, the settings within noise of
it, and whether its best lr is the edge of the lrs tried).

Diagnosis (:func:`diagnose_lrs`, pure): for one optimizer x schedule, each
learning rate gets one verdict, relative to the best lr chosen as in
:func:`~lrkit.bench.grid.summarize`:

- ``"best"``: the best lr.
- ``"too high"``: above the best lr and either some seed diverged, or its
  mean final metric is *far* from the best while the training loss
  *oscillated*.
- ``"too low"``: below the best lr, *far* from the best, and either still
  *improving* at the end or never reaching the task's target.
- ``"worse"``: far from the best for none of those reasons (e.g. a network
  that stopped learning without the loss blowing up).
- ``"ok"``: anything else (close to the best).

*Far* means worse than the best by more than :data:`FAR` of the best's
magnitude (``|m - best| > FAR * max(|best|, 1e-12)``, in the worse
direction). The loss *oscillated* when, over the last quarter of training,
its range is more than :data:`OSCILLATION` times its median. The metric is
still *improving* when the last evaluation is better than the one at 3/4 of
training by more than :data:`IMPROVING` of its magnitude.

matplotlib is imported inside the plotting helpers only, with the Agg
backend; every figure is closed after saving.
"""

from __future__ import annotations

import base64
import html
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lrkit.bench.advice import Advice, advise
from lrkit.bench.grid import SettingSummary, _batch_of, _schedule_run, summarize
from lrkit.bench.run import RunResult

__all__ = [
    "FAR",
    "IMPROVING",
    "OSCILLATION",
    "RATIO_BAND",
    "Diagnosis",
    "diagnose",
    "diagnose_lrs",
    "median_update_ratio",
    "run_diagnosis",
    "write_report",
]

#: A final metric this much (relative) worse than the best is "far" from it.
FAR = 0.1
#: Loss range / median over the last quarter above this: the loss oscillated.
OSCILLATION = 0.5
#: Relative improvement over the last quarter above this: still improving.
IMPROVING = 0.01


# --------------------------------------------------------------------------
# Diagnosis
# --------------------------------------------------------------------------


def _finals(runs: Sequence[RunResult]) -> list[float]:
    return [r.final for r in runs if r.finished and r.final is not None]


def _worse_by(value: float, best: float, mode: str) -> float:
    """How much ``value`` is worse than ``best``, relative to ``|best|`` (>= 0)."""
    gap = (value - best) if mode == "min" else (best - value)
    return max(gap, 0.0) / max(abs(best), 1e-12)


def _oscillated(run: RunResult) -> bool:
    tail = [x for x in run.loss[len(run.loss) * 3 // 4 :] if math.isfinite(x)]
    if len(tail) < 2:
        return False
    median = statistics.median(tail)
    return (max(tail) - min(tail)) > OSCILLATION * max(abs(median), 1e-12)


def _improving(run: RunResult) -> bool:
    values = [v for v in run.evals.get(run.metric, []) if math.isfinite(v)]
    if len(values) < 2:
        return False
    last, before = values[-1], values[(len(values) - 1) * 3 // 4]
    if last == before and len(values) > 2:
        before = values[len(values) // 2]
    gain = (before - last) if run.mode == "min" else (last - before)
    return gain > IMPROVING * max(abs(last), 1e-12)


def diagnose_lrs(by_lr: Mapping[float, Sequence[RunResult]]) -> dict[float, str]:
    """Give each learning rate of one optimizer x schedule a verdict.

    Pure: reads only the results given. The rule is in the module docstring.

    Args:
        by_lr: The runs (all seeds) of one task, optimizer and schedule,
            keyed by learning rate.

    Returns:
        ``{lr: "best" | "too high" | "too low" | "worse" | "ok"}``, ascending lr.
        Empty when no run finished.
    """
    scored = {lr: _finals(runs) for lr, runs in by_lr.items() if runs}
    if not any(scored.values()):
        return (
            {
                lr: ("too high" if any(r.status == "diverged" for r in by_lr[lr]) else "ok")
                for lr in sorted(by_lr)
            }
            if by_lr
            else {}
        )
    mode = next(r.mode for runs in by_lr.values() for r in runs)
    sign = 1.0 if mode == "min" else -1.0

    def rank(lr: float) -> tuple[float, float]:
        finals = scored.get(lr) or []
        if not finals:
            return (2.0, math.inf)
        return (float(len(finals) < len(by_lr[lr])), sign * statistics.fmean(finals))

    best_lr = min(scored, key=rank)
    best = statistics.fmean(scored[best_lr])
    verdicts: dict[float, str] = {}
    for lr in sorted(by_lr):
        runs = by_lr[lr]
        finals = scored.get(lr) or []
        far = not finals or _worse_by(statistics.fmean(finals), best, mode) > FAR
        if lr == best_lr:
            verdict = "best"
        elif lr > best_lr and (
            any(r.status == "diverged" for r in runs) or (far and any(_oscillated(r) for r in runs))
        ):
            verdict = "too high"
        elif (
            lr < best_lr
            and far
            and any(
                _improving(r) or (r.target is not None and r.steps_to_target is None)
                for r in runs
                if r.finished
            )
        ):
            verdict = "too low"
        elif far:
            verdict = "worse"
        else:
            verdict = "ok"
        verdicts[lr] = verdict
    return verdicts


@dataclass
class Diagnosis:
    """The verdicts for one task x optimizer x schedule.

    Attributes:
        task, optimizer, schedule: The setting.
        verdicts: ``{lr: verdict}``, see :func:`diagnose_lrs`.
    """

    task: str
    optimizer: str
    schedule: str
    verdicts: dict[float, str]

    def lrs(self, verdict: str) -> list[float]:
        """The learning rates with this verdict, ascending."""
        return [lr for lr, v in self.verdicts.items() if v == verdict]


def _named_batches(results: Iterable[RunResult]) -> set[str]:
    """The tasks whose settings are named with their batch size: the runs trained at
    more than one, or the grid set it (``--batch-sizes``, one size too)."""
    seen: dict[str, set[int | None]] = {}
    given: set[str] = set()
    for r in results:
        if r.config:
            seen.setdefault(r.task, set()).add(_batch_of(r))
            if r.config.get("batch_size") is not None:
                given.add(r.task)
    return {task for task, sizes in seen.items() if len(sizes) > 1} | given


def _label(schedule: str, batch: int | None, named: bool) -> str:
    """A setting's schedule as tables and legends show it: ``cosine() · batch 64`` if named."""
    return f"{schedule} · batch {batch}" if named and batch is not None else schedule


def _group(
    results: Iterable[RunResult],
) -> dict[tuple[str, str, str], dict[float, list[RunResult]]]:
    runs = list(results)
    batched = _named_batches(runs)
    groups: dict[tuple[str, str, str], dict[float, list[RunResult]]] = {}
    for r in runs:
        if not r.config:
            continue
        schedule = _label(_schedule_run(r), _batch_of(r), r.task in batched)
        head = (r.task, r.config["optimizer"], schedule)
        groups.setdefault(head, {}).setdefault(float(r.config["lr"]), []).append(r)
    return groups


def diagnose(results: Iterable[RunResult]) -> list[Diagnosis]:
    """Apply :func:`diagnose_lrs` to every task x optimizer x schedule of ``results``."""
    return [
        Diagnosis(task, optimizer, schedule, diagnose_lrs(by_lr))
        for (task, optimizer, schedule), by_lr in _group(results).items()
    ]


# --------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------


def _figure(width: float = 8.0, height: float = 4.8) -> Any:
    import logging

    import matplotlib

    matplotlib.use("Agg", force=False)
    # mathtext asks for STIX fonts first; the fallback to DejaVu Sans is fine, and
    # matplotlib would otherwise print one "findfont" line per glyph family
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _styles(settings: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """A colour per optimizer and a line style per schedule."""
    colors = [
        "tab:blue",
        "tab:orange",
        "tab:green",
        "tab:red",
        "tab:purple",
        "tab:brown",
        "tab:pink",
        "tab:gray",
        "tab:olive",
        "tab:cyan",
    ]
    dashes = ["-", "--", ":", "-."]
    opts = list(dict.fromkeys(o for o, _ in settings))
    scheds = list(dict.fromkeys(s for _, s in settings))
    return {
        (o, s): {
            "color": colors[opts.index(o) % len(colors)],
            "linestyle": dashes[scheds.index(s) % len(dashes)],
        }
        for o, s in settings
    }


def _legend(ax: Any) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, format="png")
    fig.clf()


def _plot_sensitivity(
    task: str,
    groups: Mapping[tuple[str, str], Mapping[float, Sequence[RunResult]]],
    metric: str,
    mode: str,
    path: Path,
) -> None:
    from matplotlib.transforms import blended_transform_factory

    fig = _figure()
    ax = fig.add_subplot()
    styles = _styles(list(groups))
    edge = blended_transform_factory(ax.transData, ax.transAxes)
    edge_y = 0.02 if mode == "max" else 0.98
    means: list[float] = []
    for (opt, sched), by_lr in groups.items():
        lrs = sorted(by_lr)
        xs, ys = [], []
        for lr in lrs:
            finals = _finals(by_lr[lr])
            if finals:
                xs.append(lr)
                ys.append(statistics.fmean(finals))
        style = styles[(opt, sched)]
        ax.plot(xs, ys, marker="o", markersize=4, label=f"{opt} · {sched}", **style)
        means.extend(ys)
        for lr in lrs:
            if any(r.status == "diverged" for r in by_lr[lr]):
                finals = _finals(by_lr[lr])
                if finals:
                    ax.plot([lr], [statistics.fmean(finals)], "x", color="red", markersize=9)
                else:
                    ax.plot(
                        [lr],
                        [edge_y],
                        "x",
                        color="red",
                        markersize=9,
                        transform=edge,
                        clip_on=False,
                    )
    ax.plot([], [], "x", color="red", label="diverged: some seeds (on a point), all (at the edge)")
    ax.set_xscale("log")
    positive = [m for m in means if m > 0]
    if mode == "min" and positive and max(positive) / min(positive) > 100:
        ax.set_yscale("log")
    ax.set_xlabel("learning rate (multiplier for LR-free optimizers)")
    ax.set_ylabel(f"final {metric} ({'higher' if mode == 'max' else 'lower'} is better)")
    fig.suptitle(f"{task}: final {metric} vs learning rate (mean over seeds)")
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax)
    _save(fig, path)


def run_diagnosis(result: RunResult) -> Any:
    """The Monitor's diagnosis of one run's own curves (:func:`lrkit.diagnosis.diagnose`).

    None for a run that logged no loss (an error before its first step).
    """
    from lrkit.diagnosis import diagnose

    if not result.loss:
        return None
    return diagnose(result.record())


def _run_verdicts_cell(runs: Sequence[RunResult]) -> str:
    """The per-run verdicts of a setting's best-lr runs, the first bad one's evidence on hover."""
    found = [d for d in map(run_diagnosis, runs) if d is not None]
    if not found:
        return "<td>—</td>"
    counts: dict[str, int] = {}
    for d in found:
        counts[d.verdict] = counts.get(d.verdict, 0) + 1
    text = ", ".join(
        f"{v.replace('_', ' ')}" + (f" {n}/{len(found)}" if len(counts) > 1 else "")
        for v, n in counts.items()
    )
    bad = next((d for d in found if d.bad), None)
    title = f"{bad.evidence}. {bad.advice}" if bad is not None else found[0].evidence
    return f'<td title="{html.escape(title)}">{html.escape(text)}</td>'


def _best_runs(
    row: SettingSummary, groups: Mapping[tuple[str, str], Mapping[float, Sequence[RunResult]]]
) -> list[RunResult]:
    return [r for r in groups[(row.optimizer, row.schedule)].get(row.lr, []) if r.finished]


def _mean_curve(runs: Sequence[RunResult], metric: str) -> tuple[list[int], list[float]]:
    first = runs[0]
    same = [r for r in runs if r.eval_steps == first.eval_steps and metric in r.evals]
    if not same:
        return [], []
    ys = [statistics.fmean(vs) for vs in zip(*(r.evals[metric] for r in same), strict=True)]
    return list(first.eval_steps), ys


def _plot_curves(
    task: str,
    rows: Sequence[SettingSummary],
    groups: Mapping[tuple[str, str], Mapping[float, Sequence[RunResult]]],
    metric: str,
    mode: str,
    path: Path,
) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    styles = _styles(list(groups))
    ys_all: list[float] = []
    for row in rows:
        runs = _best_runs(row, groups)
        if not runs:
            continue
        xs, ys = _mean_curve(runs, metric)
        ax.plot(
            xs,
            ys,
            label=f"{row.optimizer} · {row.schedule} · lr {row.lr:g}",
            **styles[(row.optimizer, row.schedule)],
        )
        ys_all.extend(y for y in ys if math.isfinite(y))
    positive = [y for y in ys_all if y > 0]
    all_positive = bool(positive) and len(positive) == len(ys_all)
    if mode == "min" and all_positive and max(positive) / min(positive) > 100:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"validation {metric}")
    fig.suptitle(f"{task}: learning curves at each setting's best lr (mean over seeds)")
    ax.grid(True, alpha=0.3)
    _legend(ax)
    _save(fig, path)


#: The band of update-to-weight ratios drawn as "usual" (a rule of thumb, not a law).
RATIO_BAND = (1e-4, 1e-2)


def _median_ratio_curve(runs: Sequence[RunResult]) -> tuple[list[int], list[float]]:
    """Per measured step, the median over seeds of the finite update-to-weight ratios."""
    first = runs[0]
    same = [r for r in runs if r.ratio_steps == first.ratio_steps and r.update_ratio]
    xs: list[int] = []
    ys: list[float] = []
    for i, step in enumerate(first.ratio_steps):
        values = [r.update_ratio[i] for r in same if math.isfinite(r.update_ratio[i])]
        if values:
            xs.append(step)
            ys.append(statistics.median(values))
    return xs, ys


def median_update_ratio(runs: Sequence[RunResult]) -> float | None:
    """The median of every finite, positive update-to-weight ratio the runs measured."""
    values = [v for r in runs for v in r.update_ratio if math.isfinite(v) and v > 0]
    return statistics.median(values) if values else None


def _plot_update_ratio(
    task: str,
    rows: Sequence[SettingSummary],
    groups: Mapping[tuple[str, str], Mapping[float, Sequence[RunResult]]],
    path: Path,
) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    styles = _styles(list(groups))
    low, high = RATIO_BAND
    ax.axhspan(low, high, color="#2ca02c", alpha=0.08, label=f"usual band {low:g}–{high:g}")
    ax.axhline(1e-3, color="#2ca02c", linewidth=0.8, linestyle=":")
    drawn = False
    for row in rows:
        runs = _best_runs(row, groups)
        if not runs:
            continue
        xs, ys = _median_ratio_curve(runs)
        points = [(x, y) for x, y in zip(xs, ys, strict=True) if y > 0]
        if not points:
            continue
        drawn = True
        ax.plot(
            [x for x, _ in points],
            [y for _, y in points],
            label=f"{row.optimizer} · {row.schedule} · lr {row.lr:g}",
            **styles[(row.optimizer, row.schedule)],
        )
    ax.set_yscale("log")
    if not drawn:
        ax.text(0.5, 0.5, "no finished run measured a ratio", ha="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("||Δw|| / ||w|| per update (log)")
    fig.suptitle(f"{task}: update-to-weight ratio at each setting's best lr (median over seeds)")
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax)
    _save(fig, path)


def _plot_schedules(
    task: str,
    rows: Sequence[SettingSummary],
    groups: Mapping[tuple[str, str], Mapping[float, Sequence[RunResult]]],
    path: Path,
) -> None:
    """One panel per schedule spec; in it, the lr each optimizer used at its best lr."""
    by_schedule: dict[str, list[tuple[SettingSummary, list[float]]]] = {}
    for row in rows:
        runs = _best_runs(row, groups) or list(groups[(row.optimizer, row.schedule)][row.lr])
        if runs and runs[0].lr:
            by_schedule.setdefault(row.schedule, []).append((row, list(runs[0].lr)))
    panels = max(len(by_schedule), 1)
    fig = _figure(min(4.0 * panels, 14.0), 3.8)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    styles = _styles(list(groups))
    for ax, (schedule, items) in zip(axes, by_schedule.items(), strict=False):
        peak = 0.0
        for i, (row, lrs) in enumerate(items):
            finite = [x for x in lrs if math.isfinite(x) and x > 0]
            peak = max([peak, *finite])
            style = dict(styles[(row.optimizer, row.schedule)], linestyle="-")
            # Later lines thinner, so equal schedules drawn on top of each other stay visible.
            width = max(3.6 - 0.8 * i, 1.0)
            ax.plot(
                range(len(lrs)),
                lrs,
                label=f"{row.optimizer} (lr {row.lr:g})",
                linewidth=width,
                **style,
            )
        ax.set_yscale("log")
        if peak > 0:
            ax.set_ylim(peak * 1e-4, peak * 3)
        ax.set_title(schedule, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("learning rate used (log)")
    fig.suptitle(f"{task}: the lr schedule of each optimizer at its best lr")
    _save(fig, path)


def _plot_batch_sizes(task: str, rows: Sequence[SettingSummary], path: Path) -> None:
    """Best lr against batch size per optimizer x schedule, with the two scaling rules."""
    from lrkit.scaling import scale_lr

    settings: dict[tuple[str, str], list[SettingSummary]] = {}
    for row in rows:
        if row.mean is not None and row.batch_size is not None:
            settings.setdefault((row.optimizer, row.schedule), []).append(row)
    fig = _figure()
    ax = fig.add_subplot()
    styles = _styles(list(settings))
    for (opt, sched), found in settings.items():
        found.sort(key=lambda r: r.batch_size or 0)
        style = styles[(opt, sched)]
        color = style["color"]
        xs = [r.batch_size or 0 for r in found]
        ys = [r.lr for r in found]
        ax.plot(xs, ys, marker=None, label=f"{opt} · {sched}: best lr", **style)
        for r in found:
            edge = len(r.lrs) > 1 and r.lr in (min(r.lrs), max(r.lrs))
            ax.plot(
                [r.batch_size],
                [r.lr],
                "o",
                markersize=6,
                color=color,
                markerfacecolor="white" if edge else color,
            )
        if len(found) > 1:
            base, lr0 = xs[0], ys[0]
            for rule, line in (("linear", (0, (5, 2))), ("sqrt", (0, (1, 2)))):
                ax.plot(
                    xs,
                    [scale_lr(lr0, base, b, rule) for b in xs],
                    color=color,
                    linestyle=line,
                    linewidth=1.0,
                    alpha=0.7,
                    label=f"{opt} · {sched}: {rule} rule from batch {base}",
                )
    ax.plot([], [], "o", color="gray", markerfacecolor="white", label="edge of the lrs tried")
    ax.set_xscale("log", base=2)
    sizes = sorted({r.batch_size for found in settings.values() for r in found if r.batch_size})
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("batch size (log)")
    ax.set_ylabel("best learning rate (log)")
    fig.suptitle(f"{task}: the best lr against the batch size (same number of steps)")
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax)
    _save(fig, path)


# --------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:70em;
color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f2f2f2}td.l,th.l{text-align:left}
tr.top td{background:#eef8ee;font-weight:600}
.high{color:#b00020}.low{color:#1f4e9c}.note{color:#555;font-size:.9em}
img{max-width:100%;height:auto;display:block;margin:.6em 0;border:1px solid #eee}
code{background:#f4f4f4;padding:0 .2em}
.advice{border-left:4px solid #2c7a2c;background:#f4faf4;padding:.3em .9em;margin:.8em 0}
.advice p{margin:.3em 0}.advice.doubt{border-color:#b07d00;background:#fdf8ec}
"""


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "task"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt_lrs(lrs: Sequence[float]) -> str:
    return ", ".join(f"{lr:g}" for lr in lrs) if lrs else "none"


def _fmt_bytes(n: int) -> str:
    """Bytes in decimal units, as :func:`lrkit.torch.memory.format_bytes` (no torch here)."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000.0
        if value < 999.95:
            return f"{value:.1f} {unit}"
    return f"{value / 1000.0:.1f} TB"


def _state_cell(row: SettingSummary, runs: Sequence[RunResult]) -> str:
    """The optimizer-state cell: copies of the weights; bytes and kinds in its tooltip."""
    if row.state_copies is None or not math.isfinite(row.state_copies):
        return "<td>—</td>"
    tip = []
    if row.state_bytes is not None:
        tip.append(_fmt_bytes(row.state_bytes))
        kinds = next((r.state_kinds for r in runs if r.state_kinds), {})
        if kinds and row.state_copies > 0:
            param_bytes = row.state_bytes / row.state_copies
            tip.extend(
                f"{name} {size / param_bytes:.2f}"
                for name, size in kinds.items()
                if size / param_bytes >= 0.005
            )
    title = f' title="{html.escape(", ".join(tip))}"' if tip else ""
    return f"<td{title}>{row.state_copies:.2f}</td>"


def _best_table(
    rows: Sequence[SettingSummary],
    groups: Mapping[tuple[str, str], Mapping[float, Sequence[RunResult]]],
) -> str:
    e = html.escape
    head = (
        "#",
        "optimizer",
        "schedule",
        "best lr",
        "final mean ± std",
        "seeds ok",
        "steps to target",
        "diverged (all lrs)",
        "steps",
        "wall time (s/run)",
        "‖Δw‖/‖w‖ (median)",
        "optimizer state (× weights)",
        "run diagnosis",
    )
    out = [
        "<table>",
        "<tr>"
        + "".join(
            f'<th class="l">{h}</th>' if h in ("optimizer", "schedule") else f"<th>{e(h)}</th>"
            for h in head
        )
        + "</tr>",
    ]
    for rank, row in enumerate(rows, 1):
        value = "—" if row.mean is None else f"{row.mean:.4g} ± {(row.std or 0.0):.2g}"
        if row.steps_to_target is not None:
            reach = f"{row.steps_to_target:.0f}"
        else:
            reach = "never" if row.target is not None else "— (no target)"
        rate = row.diverged / row.runs if row.runs else 0.0
        div = f"{row.diverged}/{row.runs} ({rate:.0%})"
        if row.rescued:
            div += f", {row.rescued} rescued"
        if row.errors:
            div += f", {row.errors} errors"
        best_runs = _best_runs(row, groups)
        ratio = median_update_ratio(best_runs)
        ratio_text = "—" if ratio is None else f"{ratio:.2g}"
        cls = ' class="top"' if rank == 1 and row.mean is not None else ""
        out.append(
            f'<tr{cls}><td>{rank}</td><td class="l">{e(row.optimizer)}</td>'
            f'<td class="l"><code>{e(row.schedule)}</code></td><td>{row.lr:g}</td>'
            f"<td>{value}</td><td>{row.finished}/{row.seeds}</td><td>{reach}</td>"
            f"<td>{div}</td><td>{'—' if row.steps is None else row.steps}</td>"
            f"<td>{'—' if row.wall_time is None else f'{row.wall_time:.3g}'}</td>"
            f"<td>{ratio_text}</td>"
            f"{_state_cell(row, best_runs or list(groups[(row.optimizer, row.schedule)][row.lr]))}"
            f"{_run_verdicts_cell(best_runs)}"
            "</tr>"
        )
    out.append("</table>")
    return "\n".join(out)


def _verdict_text(d: Diagnosis) -> str:
    """One sentence on where the best lr sits among those tried."""
    best, high, low = d.lrs("best"), d.lrs("too high"), d.lrs("too low")
    if not best:
        return "no finished run"
    if len(d.verdicts) == 1:
        return "one lr only"
    if best[0] == max(d.verdicts):
        return "the best lr is the highest tried: try higher ones"
    if best[0] == min(d.verdicts):
        return "the best lr is the lowest tried: try lower ones"
    if high and low:
        return "the best lr is bracketed: higher diverges or oscillates, lower is sluggish"
    if high:
        return "higher lrs diverge or oscillate"
    if low:
        return "lower lrs are sluggish"
    if d.lrs("worse"):
        return "some lrs are far worse, with no sign of divergence or sluggishness"
    return "insensitive over this range"


def _diagnosis_table(diagnoses: Sequence[Diagnosis]) -> str:
    e = html.escape
    out = [
        "<table>",
        '<tr><th class="l">optimizer</th><th class="l">schedule</th><th>best lr</th>'
        "<th>too high</th><th>too low</th><th>far worse, other</th>"
        '<th class="l">verdict</th></tr>',
    ]
    for d in diagnoses:
        out.append(
            f'<tr><td class="l">{e(d.optimizer)}</td><td class="l"><code>{e(d.schedule)}'
            f"</code></td><td>{_fmt_lrs(d.lrs('best'))}</td>"
            f'<td class="high">{_fmt_lrs(d.lrs("too high"))}</td>'
            f'<td class="low">{_fmt_lrs(d.lrs("too low"))}</td>'
            f"<td>{_fmt_lrs(d.lrs('worse'))}</td>"
            f'<td class="l">{e(_verdict_text(d))}</td></tr>'
        )
    out.append("</table>")
    return "\n".join(out)


def _advice_html(advice: Advice) -> str:
    """The advice box at the top of a task's section: the verdict, then its notes."""
    e = html.escape
    doubt = "" if advice.confidence in ("clear", "only") and advice.edge is None else " doubt"
    lines = [f'<div class="advice{doubt}"><p><strong>{e(advice.verdict)}</strong></p>']
    lines.extend(f"<p>{e(note)}</p>" for note in advice.notes)
    lines.append("</div>")
    return "\n".join(lines)


def _as_results(results: Iterable[RunResult | Mapping[str, Any]]) -> list[RunResult]:
    return [r if isinstance(r, RunResult) else RunResult.from_dict(dict(r)) for r in results]


def write_report(
    results: Iterable[RunResult | Mapping[str, Any]],
    out_dir: str | Path,
    *,
    title: str = "lrkit compare report",
) -> Path:
    """Write ``report.html`` and the per-task PNGs into ``out_dir``.

    Args:
        results: Every run of the grid, as :class:`RunResult` or its
            ``to_dict()`` form (e.g. ``results.json``'s ``"runs"``).
        out_dir: The folder (created if missing).
        title: The page's title.

    Returns:
        The path of ``report.html``.

    Raises:
        OSError: If the folder or a file cannot be written.
    """
    runs = _as_results(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(runs)
    groups = _group(runs)
    diagnoses = diagnose(runs)
    batched = _named_batches(runs)
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="note">{len(runs)} runs, {len(summary)} task(s). Settings are ranked by '
        "the final metric's mean over seeds at their best learning rate; an lr where every "
        "seed finished beats one where some diverged.</p>",
    ]
    used: set[str] = set()
    for task, rows in summary.items():
        slug = _slug(task)
        while slug in used:
            slug += "_"
        used.add(slug)
        metric, mode = rows[0].metric, rows[0].mode
        target = next((r.target for r in runs if r.task == task), None)
        task_groups = {(o, s): by_lr for (t, o, s), by_lr in groups.items() if t == task}
        goal = (
            ""
            if target is None
            else f" (target {metric} {'≥' if mode == 'max' else '≤'} {target:g})"
        )
        parts.append(f"<h2>{e(task)}</h2>")
        parts.append(_advice_html(advise(task, rows)))
        by_batch = list(rows)
        if task in batched:  # every table and legend names the batch size of a setting
            rows = [replace(r, schedule=_label(r.schedule, r.batch_size, True)) for r in rows]
        parts.append(
            f"<p>Final {e(metric)}, {'higher' if mode == 'max' else 'lower'} is better"
            f"{e(goal)}.</p>"
        )
        parts.append(_best_table(rows, task_groups))
        parts.append(
            '<p class="note">Optimizer state: the bytes of the tensors the optimizer keeps '
            "(momentum buffers, Adam's moments, step counters), measured from the optimizer's "
            "own tensors during the run, in copies of the weights it trains: plain SGD 0, "
            "momentum 1, Adam 2. Hover a cell for its bytes and their split.</p>"
        )
        parts.append("<h3>Which learning rates were too high or too low</h3>")
        parts.append(
            '<p class="note">Too high: diverged, or far (&gt;'
            f"{FAR:.0%}) worse than the best while the loss oscillated. Too low: far worse "
            "than the best and still improving at the end, or never reaching the target. "
            "Far worse, other: neither (e.g. training stalled without blowing up).</p>"
        )
        parts.append(_diagnosis_table([d for d in diagnoses if d.task == task]))
        _plot_sensitivity(task, task_groups, metric, mode, out / f"sensitivity_{slug}.png")
        _plot_curves(task, rows, task_groups, metric, mode, out / f"curves_{slug}.png")
        _plot_schedules(task, rows, task_groups, out / f"schedules_{slug}.png")
        _plot_update_ratio(task, rows, task_groups, out / f"update_ratio_{slug}.png")
        plots = [
            (f"sensitivity_{slug}.png", "lr sensitivity"),
            (f"curves_{slug}.png", "learning curves of the best settings"),
            (f"schedules_{slug}.png", "lr schedules used"),
            (f"update_ratio_{slug}.png", "update-to-weight ratio of the best settings"),
        ]
        if len({r.batch_size for r in by_batch}) > 1:  # a line needs two batch sizes
            _plot_batch_sizes(task, by_batch, out / f"batch_lr_{slug}.png")
            plots.insert(1, (f"batch_lr_{slug}.png", "the best lr against the batch size"))
        for name, caption in plots:
            path = out / name
            parts.append(f"<h3>{e(caption.capitalize())}</h3>")
            parts.append(_img(path.read_bytes(), f"{task}: {caption}"))
    parts.append("</body></html>")
    report = out / "report.html"
    report.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return report
