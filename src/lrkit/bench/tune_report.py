"""The HTML report of ``lrkit tune``: :func:`write_tune_report`.

``OUT/report.html`` is self-contained like the compare report (inline CSS,
PNGs embedded as base64, no script, no external link) and shows:

- the best trial as a spec and the ``lrkit compare`` command that confirms it;
- ``history.png``: the value of each trial by trial number, with the best so
  far as a step line; pruned trials at their last reported value (grey x),
  diverged trials as red triangles on the top (worst) edge;
- ``metric_vs_lr.png``: the value against lr (log x), a colour per
  optimizer; pruned trials as hollow circles at their last reported value,
  their size showing how far they got (a full-size circle ran to the end);
- ``curves.png``: the reported metric against step for every trial's first
  seed; pruned trials dashed, ending where they were pruned;
- the table of every trial, best first.

Every run is also in ``OUT/runs.sqlite``, the store ``lrkit report`` turns
into the compare report.

matplotlib is imported inside the plotting helpers only (Agg backend).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrkit.bench.report import _CSS, _figure, _img, _legend, _save

if TYPE_CHECKING:
    from lrkit.bench.run import RunResult
    from lrkit.bench.tune import TuneResults

__all__ = ["write_tune_report"]

_COLORS = [
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
]


def _last_reported(trial: dict[str, Any]) -> float | None:
    values = trial.get("intermediate_values") or {}
    if not values:
        return None
    last = values[max(values, key=int)]
    return None if last is None else float(last)


def _points(trials: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Trials by kind: ``complete`` (finite value), ``diverged``, ``pruned``, ``fail``."""
    kinds: dict[str, list[dict[str, Any]]] = {
        "complete": [],
        "diverged": [],
        "pruned": [],
        "fail": [],
    }
    for t in trials:
        if t["state"] == "COMPLETE":
            kinds["complete" if t["value"] is not None else "diverged"].append(t)
        elif t["state"] == "PRUNED":
            kinds["pruned"].append(t)
        elif t["state"] == "FAIL":
            kinds["fail"].append(t)
    return kinds


def _log_y(values: list[float]) -> bool:
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 50


def _limit(ax: Any, values: list[float], mode: str) -> None:
    """Keep a few far-off values (a run blowing up before it was pruned) from
    squashing the rest: the worse axis end stops at 2 inter-quartile spans past
    the upper (lower) quartile; a note counts the points beyond it."""
    log = ax.get_yscale() == "log"
    finite = sorted(v for v in values if math.isfinite(v) and (v > 0 or not log))
    if len(finite) < 4:
        return
    xs = [math.log10(v) for v in finite] if log else finite
    if mode == "max":
        xs = [-x for x in reversed(xs)]
    best, q = xs[0], xs[(len(xs) - 1) * 3 // 4]
    cap = q + 2 * max(q - best, 0.5 if log else 1e-12 + abs(q) * 0.1)
    off = sum(x > cap for x in xs)
    if off == 0:
        return
    pad = 0.05 * (cap - best)
    lo, hi = best - pad, cap
    if mode == "max":
        lo, hi = -hi, -lo
    if log:
        lo, hi = 10**lo, 10**hi
    ax.set_ylim(lo, hi)
    ax.text(
        0.01,
        0.98 if mode == "min" else 0.02,
        f"{off} point(s) off the chart (far worse)",
        transform=ax.transAxes,
        fontsize=7,
        va="top" if mode == "min" else "bottom",
        color="0.4",
    )


def _mark_diverged(ax: Any, xs: list[Any], mode: str) -> None:
    """Diverged trials as red triangles on the plot's worst edge (their value is inf)."""
    if not xs:
        return
    low, high = ax.get_ylim()
    ax.scatter(
        xs,
        [high if mode == "min" else low] * len(xs),
        marker="^" if mode == "min" else "v",
        color="tab:red",
        label="diverged",
        clip_on=False,
        zorder=5,
    )


def _plot_history(trials: list[dict[str, Any]], metric: str, mode: str, path: Path) -> None:
    fig = _figure()
    ax = fig.subplots()
    kinds = _points(trials)
    done = kinds["complete"]
    pruned = [(t["number"], _last_reported(t)) for t in kinds["pruned"]]
    pruned = [(n, v) for n, v in pruned if v is not None]
    if done:
        ax.scatter(
            [t["number"] for t in done],
            [t["value"] for t in done],
            s=22,
            color="tab:blue",
            label="complete",
            zorder=3,
        )
    if pruned:
        ax.scatter(
            [n for n, _ in pruned],
            [v for _, v in pruned],
            marker="x",
            color="0.5",
            label="pruned (last report)",
            zorder=2,
        )
    best: float | None = None
    xs, ys = [], []
    for t in sorted(trials, key=lambda t: t["number"]):
        if t["state"] == "COMPLETE" and t["value"] is not None:
            v = float(t["value"])
            if best is None or (v < best if mode == "min" else v > best):
                best = v
        if best is not None:
            xs.append(t["number"])
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="tab:green", label="best so far", zorder=4)
    values = [t["value"] for t in done] + [v for _, v in pruned]
    if _log_y(values):
        ax.set_yscale("log")
    _limit(ax, values, mode)
    _mark_diverged(ax, [t["number"] for t in kinds["diverged"]], mode)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"final {metric} ({'lower' if mode == 'min' else 'higher'} is better)")
    ax.set_title("Search history")
    _legend(ax)
    _save(fig, path)


def _plot_lr(
    trials: list[dict[str, Any]], metric: str, mode: str, optimizers: list[str], path: Path
) -> None:
    fig = _figure()
    ax = fig.subplots()
    kinds = _points(trials)
    color = {o: _COLORS[i % len(_COLORS)] for i, o in enumerate(optimizers)}
    values: list[float] = []
    for optimizer in optimizers:
        done = [t for t in kinds["complete"] if t["params"].get("optimizer") == optimizer]
        if done:
            ax.scatter(
                [t["params"]["lr"] for t in done],
                [t["value"] for t in done],
                s=24,
                color=color[optimizer],
                label=optimizer,
                zorder=3,
            )
            values += [t["value"] for t in done]
        pruned: list[tuple[dict[str, Any], float]] = []
        for t in kinds["pruned"]:
            last = _last_reported(t)
            if t["params"].get("optimizer") == optimizer and last is not None:
                pruned.append((t, last))
        if pruned:
            sizes = []
            for t, _ in pruned:
                attrs = t["user_attrs"]
                far = (attrs.get("steps_done") or 0) / max(1, attrs.get("steps") or 1)
                sizes.append(16 + 60 * min(1.0, far))
            ax.scatter(
                [t["params"]["lr"] for t, _ in pruned],
                [v for _, v in pruned],
                s=sizes,
                facecolors="none",
                edgecolors=color[optimizer],
                label=f"{optimizer} pruned",
                zorder=2,
            )
            values += [v for _, v in pruned]
    ax.set_xscale("log")
    if _log_y(values):
        ax.set_yscale("log")
    _limit(ax, values, mode)
    _mark_diverged(ax, [t["params"]["lr"] for t in kinds["diverged"]], mode)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"final {metric}")
    ax.set_title(f"{metric} vs lr (hollow: pruned, size = how far it got)")
    _legend(ax)
    _save(fig, path)


def _plot_curves(
    trials: list[dict[str, Any]],
    runs: dict[str, RunResult],
    metric: str,
    mode: str,
    optimizers: list[str],
    best: int | None,
    path: Path,
) -> None:
    fig = _figure()
    ax = fig.subplots()
    color = {o: _COLORS[i % len(_COLORS)] for i, o in enumerate(optimizers)}
    values: list[float] = []
    labelled: set[str] = set()
    for t in trials:
        run = runs.get(t["user_attrs"].get("run_key") or "")
        if run is None:
            continue
        ys = run.evals.get(metric, [])
        xs = run.eval_steps[: len(ys)]
        if not xs:
            continue
        optimizer = t["params"].get("optimizer", "")
        label = optimizer if optimizer not in labelled else None
        labelled.add(optimizer)
        is_best = t["number"] == best
        ax.plot(
            xs,
            ys,
            color="black" if is_best else color.get(optimizer, "0.5"),
            linestyle="--" if t["state"] == "PRUNED" else "-",
            linewidth=2.2 if is_best else 0.9,
            alpha=1.0 if is_best else 0.6,
            label=f"best (trial {best})" if is_best else label,
            zorder=4 if is_best else 2,
        )
        values += [v for v in ys if math.isfinite(v)]
    if _log_y(values):
        ax.set_yscale("log")
    _limit(ax, values, mode)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title("Learning curves, first seed of each trial (dashed: pruned)")
    _legend(ax)
    _save(fig, path)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(trials: list[dict[str, Any]], mode: str, best: int | None) -> str:
    e = html.escape

    def order(t: dict[str, Any]) -> tuple[int, float, int]:
        rank = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2}.get(t["state"], 3)
        value = t["value"]
        if t["state"] == "COMPLETE" and value is None:
            rank = 1  # diverged: after the finite ones, before pruned
        v = math.inf if value is None else (value if mode == "min" else -value)
        return (rank, v, t["number"])

    batched = any(t["params"].get("batch_size") is not None for t in trials)  # --batch-sizes
    rows = [
        "<table><tr><th>trial</th><th>state</th><th class='l'>optimizer</th>"
        "<th class='l'>schedule</th><th>lr</th>"
        + ("<th>batch</th>" if batched else "")
        + "<th>value</th><th>steps done</th><th class='l'>note</th></tr>"
    ]
    for t in sorted(trials, key=order):
        p, a = t["params"], t["user_attrs"]
        state = t["state"]
        if state == "COMPLETE" and a.get("status") == "diverged":
            state = "COMPLETE (diverged)"
        note = a.get("reason") if t["state"] != "COMPLETE" or a.get("status") != "ok" else ""
        cls = " class='top'" if t["number"] == best else ""
        steps = f"{_fmt(a.get('steps_done'))}/{_fmt(a.get('steps'))}" if "steps" in a else "—"
        rows.append(
            f"<tr{cls}><td>{t['number']}</td><td>{e(state)}</td>"
            f"<td class='l'>{e(str(p.get('optimizer', '—')))}</td>"
            f"<td class='l'><code>{e(str(p.get('schedule', '—')))}</code></td>"
            f"<td>{_fmt(p.get('lr'))}</td>"
            + (f"<td>{_fmt(p.get('batch_size'))}</td>" if batched else "")
            + f"<td>{_fmt(t['value'])}</td><td>{steps}</td>"
            f"<td class='l'>{e(str(note or ''))}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def write_tune_report(results: TuneResults, space: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``report.html`` and its PNGs into ``out_dir``.

    Args:
        results: What :func:`lrkit.bench.tune.tune` found.
        space: The search space (task, metric, mode, optimizers, schedules,
            lr_range, seeds, budget).
        out_dir: The folder (created if missing).

    Returns:
        The path of ``report.html``.

    Raises:
        OSError: If a file cannot be written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trials = results.trials
    metric, mode = space["metric"], space["mode"]
    optimizers = list(space["optimizers"])
    best = results.best
    best_number = None if best is None else best.trial
    e = html.escape
    counts = results.counts()
    title = f"lrkit tune: {space['task']}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>Study <code>{e(results.study)}</code> in <code>{e(results.storage)}</code>: "
        + ", ".join(f"{n} {e(s)}" for s, n in sorted(counts.items()))
        + f". lr log-uniform in [{space['lr_range'][0]:g}, {space['lr_range'][1]:g}]; "
        f"optimizers {e(', '.join(optimizers))}; schedules "
        f"{e(', '.join(space['schedules']))}; "
        + (
            f"batch sizes {', '.join(map(str, space['batch_sizes']))}; "
            if space.get("batch_sizes")
            else ""
        )
        + f"{space['seeds']} seed(s) per trial; "
        f"budget x{space['budget']:g}. Final {e(metric)}, "
        f"{'lower' if mode == 'min' else 'higher'} is better.</p>",
    ]
    if results.stopped:
        parts.append(f'<p class="high">{e(results.stopped)}</p>')
    if best is None:
        parts.append("<p>No trial finished with a finite value.</p>")
    else:
        parts.append(
            f"<h2>Best: trial {best.trial}, {e(metric)} = {best.value:.4g}</h2>"
            f"<p><code>{e(best.optimizer)}  {e(best.spec)}</code>"
            + (f", batch {best.batch_size}" if best.batch_size is not None else "")
            + "</p>"
            f"<p>Confirm it: <code>{e(best.command)}</code></p>"
        )
    runs = {r.key: r for r in results.runs}
    plots = (
        ("history.png", "search history", lambda p: _plot_history(trials, metric, mode, p)),
        (
            "metric_vs_lr.png",
            f"{metric} vs learning rate",
            lambda p: _plot_lr(trials, metric, mode, optimizers, p),
        ),
        (
            "curves.png",
            "learning curves",
            lambda p: _plot_curves(trials, runs, metric, mode, optimizers, best_number, p),
        ),
    )
    for name, caption, plot in plots:
        path = out / name
        plot(path)
        parts.append(f"<h2>{e(caption.capitalize())}</h2>")
        parts.append(_img(path.read_bytes(), caption))
    if results.runs:
        parts.append(
            '<p class="note">Every run is in <code>runs.sqlite</code>: '
            "<code>lrkit report runs.sqlite --out runs</code> shows them through the compare "
            "report (sensitivity, curves, schedules).</p>"
        )
    parts.append("<h2>Trials</h2>")
    parts.append(_table(trials, mode, best_number))
    parts.append("</body></html>")
    report = out / "report.html"
    report.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return report
