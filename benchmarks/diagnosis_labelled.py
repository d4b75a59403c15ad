"""How often is ``lrkit.diagnosis.diagnose`` right? Labelled runs, a confusion table, a naive rule.

Generates runs whose learning rate is known to be too high, too low, fine, or
stuck on a plateau, labels them **from the validation metric only** (never
from the training loss the rules read), then asks
``lrkit.diagnosis.diagnose(result.record())`` and a naive rule for a verdict
on each, and prints both confusion tables side by side.

Tasks. Tuning tasks, which the rule author may look at: ``digits``,
``scales``, ``quadratic``. Held-out tasks, never looked at while tuning:
``signals``, ``rosenbrock``, ``charlm`` and three user tasks on generated data
in ``benchmarks/diagnosis_tasks.py`` (``teacher_mlp``, ``logistic_unscaled``,
``gru_sequence``). Optimizers ``momentum`` and ``adam``, seed 0.

Runs, all through ``lrkit.compare`` into one SQLite store (a re-run, or a run
after an interruption, runs only what is missing):

1. **grid**: ``constant()`` and ``cosine()`` at 22 lrs, ``logspace(1e-5, 100,
   22)`` (a third of a decade apart), the task's own budget.
2. **kick** (mid-run blow-ups): at the best lr ``L`` of the ``constant()``
   grid, ``join(constant(lr=L), constant(lr=K*L), boundaries=[b])`` for
   ``K`` in 30, 100 and ``b`` at 0.5 and 0.8 of the task's steps.
3. **long** (plateau candidates): ``constant()`` at ``L`` and its two grid
   neighbours (``L`` / 2.15, ``L`` x 2.15) with ``--budget 4``.

Labels. The *badness* of a run is its final validation loss (tasks whose
metric is a loss) or its error rate ``1 - accuracy`` (accuracy tasks); a run
that diverged has infinite badness. ``best`` is the grid lr of least badness
for that task x optimizer x schedule, ``b*`` that badness. "Far worse" means
badness > FAR x the reference (FAR = 1.5).

- grid, lr >= 10 x best, far worse than ``b*`` (or diverged): ``too_high``;
- grid, lr <= best / 10, far worse than ``b*``: ``too_low``;
- grid, best / 3 <= lr <= 3 x best (the best and its two neighbours),
  finished and not far worse than ``b*``: ``ok``;
- kick: diverged, or far worse at the end than its metric at the last
  report before the jump: ``too_high``;
- long: the metric at the end against the metric at the last report at or
  before half of the run (the lr was constant all along): diverged:
  ``too_high``; far worse but finite: ``ambiguous``; improved by less than
  STALL = 2 % (or got worse): ``plateau``; improved more: ``ok``;
- anything else (e.g. 10 x best but only slightly worse, a kick the run
  survived): ``ambiguous``, left out and counted.

The naive rule (:func:`naive`), on the same record: ``too_high`` when the
training loss is ever non-finite or ever above 3 x its first value;
``too_low`` when the mean loss of the last 10 % of the steps is above 0.5 x
the first value; else ``ok`` (it never says ``plateau``).

Printed, for the tuning tasks, the held-out tasks and all together: the
confusion tables (rows: true label, columns: verdict) of lrkit and of the
naive rule, accuracy, per-class recall and precision; the grid's best lr per
task x optimizer x schedule; the runs lrkit gets wrong (tuning tasks only
unless ``--list-held-out``) with the diagnosis's evidence. While tuning the
rules, use ``--tuning-only``: nothing of the held-out tasks is shown.

Records: each run is judged on ``result.record()`` (``lr/group0`` and
``loss`` at every step, ``update_ratio/group0`` at 16 points; for a diverged
run, the loss that diverged as NaN or inf at ``diverged_at``: the stored
losses stop the step before).

Cost: generation about 20 minutes with ``--workers 2`` on 2 CPU cores shared
with other work (918 runs, 32 core-minutes; charlm is 43 % of it, signals
19 %, gru_sequence 13 %); evaluation alone, every run cached, about 5
seconds. The rules are imported at evaluation time, so an edit of
``src/lrkit/diagnosis.py`` shows at the next ``--evaluate-only``.

``quadratic`` and ``rosenbrock`` have no validation set: their metric is the
exact objective (their training loss is a noisy minibatch estimate of it).

Run::

    nice -n 5 python benchmarks/diagnosis_labelled.py --workers 2   # generate + evaluate
    python benchmarks/diagnosis_labelled.py --evaluate-only --tuning-only   # while tuning
    python benchmarks/diagnosis_labelled.py --evaluate-only --markdown      # tables for docs
    python benchmarks/diagnosis_labelled.py --evaluate-only --json out.json
    python benchmarks/diagnosis_labelled.py --dump 3fa2c91b0e > run.csv      # one run's record
    lrkit diagnose run.csv

``--dump ID`` writes a run's record (the id is shown in the lists) as a
Monitor CSV (``step, loss, lr/group0, update_ratio/group0``) on stdout and its
label, reason and validation curve on stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrkit.bench.grid import parse_lrs, split_names
from lrkit.bench.run import RunConfig, RunResult
from lrkit.bench.store import RunStore
from lrkit.bench.tasks import TASKS

HERE = Path(__file__).resolve().parent
USER_FILE = HERE / "diagnosis_tasks.py"

TUNING = ("digits", "scales", "quadratic")
HELD_OUT = (
    "signals",
    "rosenbrock",
    "charlm",
    "teacher_mlp",
    "logistic_unscaled",
    "gru_sequence",
)
OPTIMIZERS = ("momentum", "adam")
SCHEDULES = ("constant()", "cosine()")
LRS_SPEC = "logspace(1e-5, 100, 22)"
LRS = parse_lrs([LRS_SPEC])
SEED = 0
#: (fraction of the steps where the lr jumps, factor of the jump)
KICKS = ((0.5, 30), (0.5, 100), (0.8, 30), (0.8, 100))
LONG_BUDGET = 4.0

FAR = 1.5  # "far worse": badness above FAR x the reference
STALL = 0.02  # a long run improving less than this in its second half is on a plateau
FAR_LR = 10.0  # too high / too low: lr at least this factor from the best
NEAR_LR = 3.0  # ok: lr within this factor of the best
NAIVE_HIGH = 3.0
NAIVE_LOW = 0.5

VERDICTS = ("too_high", "too_low", "plateau", "ok")
SECTIONS = ("tuning", "held-out", "all")
DEFAULT_STORE = Path("/tmp/lrkit-diagnosis/runs.sqlite")
_TOL = 1.001  # lrs from the grid are compared with this slack


def task_ref(name: str) -> str:
    """A built-in name as it is; a user task as ``/abs/path/diagnosis_tasks.py:name``."""
    return name if name in TASKS else f"{USER_FILE}:{name}"


def section_of(task: str) -> str:
    return "tuning" if task in TUNING else "held-out"


# --------------------------------------------------------------------------
# The plan: which runs, as RunConfigs (the same keys compare stores)
# --------------------------------------------------------------------------


def grid_configs(task: str) -> list[RunConfig]:
    return [
        RunConfig(task_ref(task), optimizer, schedule, lr, SEED)
        for optimizer in OPTIMIZERS
        for schedule in SCHEDULES
        for lr in LRS
    ]


def kick_spec(lr: float, factor: float, boundary: int) -> str:
    return f"join(constant(lr={lr:.6g}), constant(lr={lr * factor:.6g}), boundaries=[{boundary}])"


def kick_configs(task: str, optimizer: str, best: float) -> list[RunConfig]:
    steps = RunConfig(task_ref(task), optimizer, "constant()", best, SEED).steps
    return [
        RunConfig(
            task_ref(task),
            optimizer,
            kick_spec(best, factor, round(fraction * steps)),
            float(f"{best:.6g}"),
            SEED,
        )
        for fraction, factor in KICKS
    ]


def long_lrs(best: float) -> list[float]:
    i = min(range(len(LRS)), key=lambda k: abs(math.log(LRS[k] / best)))
    return LRS[max(i - 1, 0) : i + 2]


def long_configs(task: str, optimizer: str, best: float) -> list[RunConfig]:
    return [
        RunConfig(task_ref(task), optimizer, "constant()", lr, SEED, LONG_BUDGET)
        for lr in long_lrs(best)
    ]


# --------------------------------------------------------------------------
# Generation (lrkit.compare, one shared pool of workers)
# --------------------------------------------------------------------------


class Ticker:
    """A line every 25 runs (and at the end of each compare call) on stderr."""

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self.start_time = time.perf_counter()
        self.total = self.done = self.ran = 0
        self.statuses: Counter[str] = Counter()

    def start(self, total: int, done: int, workers: int) -> None:
        self.total += total
        self.done += done

    def update(self, result: RunResult) -> None:
        self.done += 1
        self.ran += 1
        self.statuses[result.status] += 1
        if self.ran % 25 == 0:
            self.say()

    def finish(self) -> None:
        pass

    def say(self) -> None:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        print(
            f"  {self.phase}: {self.done}/{self.total} ({self.ran} run now: {counts}) "
            f"{time.perf_counter() - self.start_time:.0f}s",
            file=sys.stderr,
            flush=True,
        )


def generate(tasks: Sequence[str], store: Path, workers: int) -> float:
    """Run every planned run the store lacks; return the wall time in seconds."""
    import lrkit
    from lrkit.bench.runner import make_executor

    start = time.perf_counter()
    executor = make_executor(workers)
    common: dict[str, Any] = {"seeds": 1, "out": None, "store": store, "executor": executor}
    try:
        ticker = Ticker("grid")
        lrkit.compare(
            [task_ref(t) for t in tasks],
            optimizers=list(OPTIMIZERS),
            schedules=list(SCHEDULES),
            lrs=LRS_SPEC,
            progress=ticker,
            **common,
        )
        ticker.say()
        with RunStore(store) as run_store:
            grid = {c.key(): run_store.get(c.key()) for t in tasks for c in grid_configs(t)}
        bests = best_lrs([r for r in grid.values() if r is not None])
        kicks, longs = Ticker("kick"), Ticker("long")
        for task in tasks:
            for optimizer in OPTIMIZERS:
                best = bests.get((task, optimizer, "constant()"))
                if best is None:
                    print(f"  {task} x {optimizer}: no finished constant() run", file=sys.stderr)
                    continue
                lrkit.compare(
                    task_ref(task),
                    optimizers=[optimizer],
                    schedules=[c.schedule for c in kick_configs(task, optimizer, best.lr)],
                    progress=kicks,
                    **common,
                )
                lrkit.compare(
                    task_ref(task),
                    optimizers=[optimizer],
                    schedules=["constant()"],
                    lrs=long_lrs(best.lr),
                    budget=LONG_BUDGET,
                    progress=longs,
                    **common,
                )
        kicks.say()
        longs.say()
    finally:
        executor.shutdown()
    return time.perf_counter() - start


# --------------------------------------------------------------------------
# Labels (validation metric only)
# --------------------------------------------------------------------------


def badness(value: float | None, mode: str) -> float:
    """Lower is better: the loss itself, or 1 - accuracy; inf for None/NaN."""
    if value is None or not math.isfinite(value):
        return math.inf
    return value if mode == "min" else 1.0 - value


def final_badness(result: RunResult) -> float:
    return badness(result.final if result.finished else None, result.mode)


def badness_at(result: RunResult, step: int) -> tuple[int, float] | None:
    """The last report at or before ``step``: (its step, its badness)."""
    values = result.evals.get(result.metric, [])
    found = None
    for s, v in zip(result.eval_steps, values, strict=False):
        if s <= step:
            found = (s, badness(v, result.mode))
    return found


@dataclass
class Best:
    lr: float
    badness: float
    lrs_low: int  # grid lrs <= best / 10
    lrs_high: int  # grid lrs >= 10 x best


def task_name(result: RunResult) -> str:
    return result.task or str(result.config.get("task", "")).rpartition(":")[2]


def best_lrs(results: Iterable[RunResult]) -> dict[tuple[str, str, str], Best]:
    """Per (task, optimizer, schedule) of the grid: the lr of least final badness."""
    groups: dict[tuple[str, str, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((task_name(r), r.config["optimizer"], r.config["schedule"]), []).append(r)
    out = {}
    for head, runs in groups.items():
        scored = [(final_badness(r), float(r.config["lr"])) for r in runs]
        b, lr = min(scored)
        if math.isfinite(b):
            lrs = [x for _, x in scored]
            out[head] = Best(
                lr,
                b,
                sum(x <= lr / FAR_LR * _TOL for x in lrs),
                sum(x >= lr * FAR_LR / _TOL for x in lrs),
            )
    return out


def far_worse(b: float, reference: float) -> bool:
    return b > FAR * reference


@dataclass
class Labelled:
    """One run with its label and both verdicts."""

    result: RunResult
    kind: str  # grid | kick | long
    label: str  # a verdict or "ambiguous"
    why: str
    lrkit: Any = None  # the Diagnosis
    naive: str = ""
    naive_why: str = ""

    @property
    def id(self) -> str:
        return self.result.key[:10]

    @property
    def task(self) -> str:
        return task_name(self.result)

    @property
    def section(self) -> str:
        return section_of(self.task)

    @property
    def optimizer(self) -> str:
        return str(self.result.config["optimizer"])

    @property
    def lr(self) -> float:
        """The run's lr; for a kick, the lr before the jump."""
        if self.kind == "kick":
            return float(self.result.config["schedule"].split("lr=")[1].split(")")[0])
        return float(self.result.config["lr"])

    @property
    def setting(self) -> str:
        """The schedule in short: ``cosine()``, ``constant() x4``, ``kick x30 @150``."""
        if self.kind == "kick":
            spec = self.result.config["schedule"]
            low, high = (float(x.split(")")[0]) for x in spec.split("lr=")[1:3])
            at = spec.rsplit("[", 1)[1].rstrip("])")
            return f"kick x{high / low:.0f} @{at}"
        if self.kind == "long":
            return f"constant() x{LONG_BUDGET:g}"
        return str(self.result.config["schedule"])

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "id": self.id,
            "key": r.key,
            "section": self.section,
            "task": self.task,
            "optimizer": self.optimizer,
            "schedule": r.config["schedule"],
            "setting": self.setting,
            "lr": self.lr,
            "budget": r.config.get("budget", 1.0),
            "kind": self.kind,
            "status": r.status,
            "final": r.final,
            "metric": r.metric,
            "label": self.label,
            "why": self.why,
            "lrkit": None if self.lrkit is None else self.lrkit.to_dict(),
            "naive": self.naive,
            "naive_why": self.naive_why,
        }


def _b(b: float) -> str:
    return "diverged" if not math.isfinite(b) else f"{b:.3g}"


def label_grid(result: RunResult, best: Best) -> tuple[str, str]:
    lr, b = float(result.config["lr"]), final_badness(result)
    ratio = lr / best.lr
    head = f"lr {ratio:.3g} x best ({best.lr:.3g}), badness {_b(b)} vs best {best.badness:.3g}"
    if ratio >= FAR_LR / _TOL:
        return ("too_high", head) if far_worse(b, best.badness) else ("ambiguous", head)
    if ratio <= _TOL / FAR_LR:
        return ("too_low", head) if far_worse(b, best.badness) else ("ambiguous", head)
    if 1 / NEAR_LR <= ratio <= NEAR_LR:
        return ("ok", head) if not far_worse(b, best.badness) else ("ambiguous", head)
    return "ambiguous", head


def label_kick(result: RunResult) -> tuple[str, str]:
    spec = result.config["schedule"]
    boundary = int(spec.rsplit("[", 1)[1].rstrip("])"))
    before = badness_at(result, boundary)
    b = final_badness(result)
    if before is None:
        return "ambiguous", "no report before the jump"
    why = f"badness {_b(b)} at the end vs {before[1]:.3g} at step {before[0]} (jump at {boundary})"
    return ("too_high", why) if far_worse(b, before[1]) else ("ambiguous", why)


def label_long(result: RunResult) -> tuple[str, str]:
    half = badness_at(result, result.steps // 2)
    b = final_badness(result)
    if half is None:
        return "ambiguous", "no report in the first half"
    why = f"badness {_b(b)} at the end vs {half[1]:.3g} at step {half[0]} of {result.steps}"
    if not math.isfinite(b):
        return "too_high", why
    if far_worse(b, half[1]):
        return "ambiguous", why + " (far worse, not a blow-up)"
    if b >= (1 - STALL) * half[1]:
        return "plateau", why
    return "ok", why


@dataclass
class Collected:
    runs: list[Labelled] = field(default_factory=list)
    bests: dict[tuple[str, str, str], Best] = field(default_factory=dict)
    missing: int = 0
    errors: list[RunResult] = field(default_factory=list)


def collect(tasks: Sequence[str], store: Path) -> Collected:
    """Label every planned run the store holds (nothing runs)."""
    out = Collected()
    if not store.exists():
        raise SystemExit(f"no store at {store}: run without --evaluate-only first")

    def fetch(configs: list[RunConfig]) -> list[RunResult]:
        found = []
        for config in configs:
            result = run_store.get(config.key())
            if result is None:
                out.missing += 1
            elif result.status == "error":
                out.errors.append(result)
            else:
                found.append(result)
        return found

    with RunStore(store) as run_store:
        for task in tasks:
            grid = fetch(grid_configs(task))
            bests = best_lrs(grid)
            out.bests.update(bests)
            for r in grid:
                best = bests.get((task_name(r), r.config["optimizer"], r.config["schedule"]))
                if best is not None:
                    out.runs.append(Labelled(r, "grid", *label_grid(r, best)))
            for optimizer in OPTIMIZERS:
                best = bests.get((task, optimizer, "constant()"))
                if best is None:
                    continue
                for r in fetch(kick_configs(task, optimizer, best.lr)):
                    out.runs.append(Labelled(r, "kick", *label_kick(r)))
                for r in fetch(long_configs(task, optimizer, best.lr)):
                    out.runs.append(Labelled(r, "long", *label_long(r)))
    return out


# --------------------------------------------------------------------------
# The two judges
# --------------------------------------------------------------------------


def naive(record: Any) -> tuple[str, str]:
    """The naive rule: blown up = too high; not halved by the end = too low; else ok.

    ``too_high`` when the loss is ever non-finite or above 3 x its first
    value; ``too_low`` when the mean loss of the last 10 % of the steps is
    above 0.5 x the first value; ``ok`` otherwise.
    """
    _, loss = record.series("loss")
    if len(loss) == 0:
        return "ok", "no loss recorded"
    first = float(loss[0])
    for step, value in enumerate(loss):
        if not math.isfinite(value):
            return "too_high", f"loss {value} at step {step}"
        if value > NAIVE_HIGH * first:
            return "too_high", f"loss {value:.3g} > {NAIVE_HIGH:g} x first {first:.3g} at {step}"
    tail = loss[-max(1, len(loss) // 10) :]
    mean = float(statistics.fmean(tail))
    if mean > NAIVE_LOW * first:
        return "too_low", f"last 10% mean {mean:.3g} > {NAIVE_LOW:g} x first {first:.3g}"
    return "ok", f"last 10% mean {mean:.3g}, first {first:.3g}"


def judge(runs: list[Labelled]) -> tuple[float, int]:
    """Fill both verdicts of every labelled run.

    Returns:
        The seconds lrkit's rules took, and how many diverged runs have no
        non-finite loss in their record (0 since ``RunResult.record()`` adds
        the loss that diverged; stored losses stop the step before).
    """
    from lrkit.diagnosis import diagnose  # imported now: the current rules

    spent, blind = 0.0, 0
    for run in runs:
        if run.label == "ambiguous":
            continue
        record = run.result.record()
        if run.result.status == "diverged":
            blind += all(math.isfinite(v) for v in record.series("loss")[1])
        start = time.perf_counter()
        run.lrkit = diagnose(record)
        spent += time.perf_counter() - start
        run.naive, run.naive_why = naive(record)
    return spent, blind


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------


def scores(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Confusion counts (true -> predicted -> n), accuracy, recall and precision per class."""
    confusion = {t: dict.fromkeys(VERDICTS, 0) for t in VERDICTS}
    for true, pred in pairs:
        confusion[true][pred if pred in VERDICTS else "ok"] += 1
    n = len(pairs)
    recall, precision = {}, {}
    for v in VERDICTS:
        row = sum(confusion[v].values())
        col = sum(confusion[t][v] for t in VERDICTS)
        recall[v] = confusion[v][v] / row if row else None
        precision[v] = confusion[v][v] / col if col else None
    correct = sum(confusion[v][v] for v in VERDICTS)
    return {
        "n": n,
        "accuracy": correct / n if n else None,
        "confusion": confusion,
        "recall": recall,
        "precision": precision,
    }


def section_runs(runs: list[Labelled], section: str) -> list[Labelled]:
    return [r for r in runs if section == "all" or r.section == section]


def figures(collected: Collected, sections: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section in sections:
        runs = section_runs(collected.runs, section)
        labelled = [r for r in runs if r.label != "ambiguous"]
        out[section] = {
            "tasks": sorted({r.task for r in runs}),
            "runs": len(runs),
            "ambiguous": sum(r.label == "ambiguous" for r in runs),
            "ambiguous_by_kind": dict(Counter(r.kind for r in runs if r.label == "ambiguous")),
            "labels": {v: sum(r.label == v for r in labelled) for v in VERDICTS},
            "labels_by_kind": {
                kind: dict(Counter(r.label for r in labelled if r.kind == kind))
                for kind in ("grid", "kick", "long")
            },
            "lrkit": scores([(r.label, r.lrkit.verdict) for r in labelled]),
            "naive": scores([(r.label, r.naive) for r in labelled]),
        }
    return out


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


SHORT = {"too_high": "high", "too_low": "low", "plateau": "plat", "ok": "ok"}


def text_tables(name: str, fig: dict[str, Any]) -> list[str]:
    a, b = fig["lrkit"], fig["naive"]
    lines = [
        f"{name}: {fig['runs']} runs, {a['n']} labelled, {fig['ambiguous']} ambiguous "
        f"(left out: {_kinds(fig['ambiguous_by_kind'])}); tasks {', '.join(fig['tasks'])}",
        "",
    ]
    cols = " ".join(f"{SHORT[v]:>5s}" for v in VERDICTS)
    head = "true \\ said"
    lines.append(f"{head:<14s} {'n':>4s} | lrkit {cols} recall | naive {cols} recall")
    for v in VERDICTS:
        n = sum(a["confusion"][v].values())
        left = " ".join(f"{a['confusion'][v][p]:>5d}" for p in VERDICTS)
        right = " ".join(f"{b['confusion'][v][p]:>5d}" for p in VERDICTS)
        lines.append(
            f"{v:<14s} {n:>4d} |       {left} {_pct(a['recall'][v]):>6s} |       "
            f"{right} {_pct(b['recall'][v]):>6s}"
        )
    left = " ".join(f"{_pct(a['precision'][p]):>5s}" for p in VERDICTS)
    right = " ".join(f"{_pct(b['precision'][p]):>5s}" for p in VERDICTS)
    lines.append(f"{'precision':<14s} {'':>4s} |       {left} {'':>6s} |       {right}")
    lines.append(
        f"accuracy: lrkit {_pct(a['accuracy'])}  naive {_pct(b['accuracy'])}  (n = {a['n']})"
    )
    return lines


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def markdown_tables(name: str, fig: dict[str, Any]) -> list[str]:
    lines = [
        f"**{name}** ({', '.join(fig['tasks'])}): {fig['lrkit']['n']} labelled runs "
        f"({', '.join(f'{v} {n}' for v, n in fig['labels'].items())}), "
        f"{fig['ambiguous']} ambiguous left out.",
        "",
    ]
    for judge_name in ("lrkit", "naive"):
        s = fig[judge_name]
        lines.append(
            f"| {judge_name}: true \\ verdict | " + " | ".join(VERDICTS) + " | n | recall |"
        )
        lines.append("|---|" + "---:|" * (len(VERDICTS) + 2))
        for v in VERDICTS:
            row = s["confusion"][v]
            lines.append(
                f"| {v} | "
                + " | ".join(str(row[p]) for p in VERDICTS)
                + f" | {sum(row.values())} | {_pct(s['recall'][v])} |"
            )
        lines.append(
            "| precision | " + " | ".join(_pct(s["precision"][p]) for p in VERDICTS) + " | | |"
        )
        lines.append("")
        lines.append(f"{judge_name} accuracy: {_pct(s['accuracy'])}")
        lines.append("")
    return lines


def best_table(collected: Collected, sections: Sequence[str]) -> list[str]:
    lines = [
        f"{'task':<18s} {'optimizer':<9s} {'schedule':<11s} {'best lr':>8s} "
        f"{'badness':>8s} {'lrs<=/10':>8s} {'lrs>=x10':>8s}"
    ]
    for (task, optimizer, schedule), best in sorted(collected.bests.items()):
        if section_of(task) not in sections and "all" not in sections:
            continue
        flag = "" if best.lrs_low >= 2 and best.lrs_high >= 2 else "  < 2 on a side"
        lines.append(
            f"{task:<18s} {optimizer:<9s} {schedule:<11s} {best.lr:>8.3g} {best.badness:>8.3g} "
            f"{best.lrs_low:>8d} {best.lrs_high:>8d}{flag}"
        )
    return lines


def misclassified(runs: list[Labelled], width: int = 110) -> list[str]:
    wrong = [r for r in runs if r.label != "ambiguous" and r.lrkit.verdict != r.label]
    lines = [f"{len(wrong)} runs lrkit gets wrong (id for --dump):"]
    for r in sorted(wrong, key=lambda r: (r.task, r.optimizer, r.kind, r.setting, r.lr)):
        evidence = " ".join(str(r.lrkit.evidence).split())
        if len(evidence) > width:
            evidence = evidence[: width - 1] + "…"
        lines.append(
            f"  {r.id} {r.task:<10s} {r.optimizer:<8s} {r.setting:<16s} lr={r.lr:<9.3g} "
            f"true {r.label:<8s} said {r.lrkit.verdict:<8s} (naive {r.naive})"
        )
        lines.append(f"      label: {r.why}")
        lines.append(f"      lrkit: {evidence}")
    return lines


# --------------------------------------------------------------------------
# One run's record
# --------------------------------------------------------------------------


def dump(run_id: str, store: Path) -> None:
    """Write the record of the run whose key starts with ``run_id`` as a Monitor CSV."""
    with RunStore(store) as run_store:
        matches = [k for k in run_store.done_keys() if k.startswith(run_id)]
        if len(matches) != 1:
            raise SystemExit(f"--dump {run_id!r}: {len(matches)} runs in {store} match")
        result = run_store.get(matches[0])
    if result is None:
        raise SystemExit(f"--dump {run_id!r}: run {matches[0]} cannot be read")
    record = result.record()
    tags = record.tags
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["step", *tags])
    for step, values in record.rows():
        writer.writerow([step, *(repr(values[t]) if t in values else "" for t in tags)])
    labelled = [r for r in collect(TUNING + HELD_OUT, store).runs if r.result.key == result.key]
    info = {
        "label": labelled[0].label if labelled else "(not a planned run)",
        "why": labelled[0].why if labelled else "",
        "kind": labelled[0].kind if labelled else "",
        "task": result.task,
        "config": result.config,
        "status": result.status,
        "reason": result.reason,
        "diverged_at": result.diverged_at,
        "steps": result.steps,
        "steps_done": result.steps_done,
        "final": result.final,
        "eval_steps": result.eval_steps,
        "evals": result.evals,
    }
    print(json.dumps(info, default=str), file=sys.stderr)


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE, help="the run store")
    parser.add_argument("--tasks", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--held-out-only", action="store_true", help="only the held-out tasks")
    parser.add_argument(
        "--tuning-only", action="store_true", help="only the tuning tasks (use while tuning)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--evaluate-only", action="store_true", help="run nothing")
    parser.add_argument("--json", type=Path, default=None, help="write every figure and run")
    parser.add_argument("--markdown", action="store_true", help="tables as Markdown")
    parser.add_argument(
        "--list-held-out", action="store_true", help="list held-out runs lrkit gets wrong too"
    )
    parser.add_argument("--dump", metavar="ID", default=None, help="one run's record as CSV")
    args = parser.parse_args(argv)

    if args.dump:
        dump(args.dump, args.store)
        return
    tasks = list(TUNING + HELD_OUT)
    if args.tasks:
        tasks = split_names([args.tasks])
        unknown = [t for t in tasks if t not in TUNING + HELD_OUT]
        if unknown:
            parser.error(f"--tasks: unknown {unknown}; known: {', '.join(TUNING + HELD_OUT)}")
    if args.held_out_only and args.tuning_only:
        parser.error("--held-out-only and --tuning-only exclude each other")
    if args.held_out_only:
        tasks = [t for t in tasks if t in HELD_OUT]
    if args.tuning_only:
        tasks = [t for t in tasks if t in TUNING]

    if not args.evaluate_only:
        args.store.parent.mkdir(parents=True, exist_ok=True)
        wall = generate(tasks, args.store, args.workers)
        print(f"generation: {wall:.0f}s with {args.workers} worker(s)", file=sys.stderr)

    start = time.perf_counter()
    collected = collect(tasks, args.store)
    rules_time, blind = judge(collected.runs)
    present = {section_of(t) for t in tasks}
    sections = [s for s in SECTIONS if s in present or (s == "all" and len(present) > 1)]
    figs = figures(collected, sections)

    print(
        f"# diagnosis on labelled runs: {len(collected.runs)} runs from {args.store} "
        f"({collected.missing} planned runs missing, {len(collected.errors)} errors)"
    )
    if collected.missing:
        print("  (runs missing: generate them first, without --evaluate-only)")
    for r in collected.errors[:5]:
        print(f"  error: {task_name(r)} {r.config['optimizer']} {r.config['schedule']}: {r.reason}")
    if blind:
        print(
            f"  note: {blind} labelled diverged runs have no non-finite loss in their record "
            "(this lrkit's RunResult.record() does not add the loss that diverged)"
        )
    print()
    print(
        f"labels: far worse = badness > {FAR:g} x reference; too high/low: lr >= {FAR_LR:g} x / "
        f"<= 1/{FAR_LR:g} x best; ok: within {NEAR_LR:g} x; plateau: < {100 * STALL:g} % "
        "better in the second half of a x4 constant run"
    )
    print()
    for section in sections:
        tables = markdown_tables if args.markdown else text_tables
        print("\n".join(tables(section, figs[section])))
        print()
    print("grid's best lr per task x optimizer x schedule (badness: loss or 1 - accuracy):")
    print("\n".join(best_table(collected, sections)))
    print()
    shown = [r for r in collected.runs if r.section == "tuning" or args.list_held_out]
    print("\n".join(misclassified(shown)))
    if not args.list_held_out and "held-out" in sections:
        print("  (held-out runs not listed: --list-held-out)")
    print()
    print(
        f"evaluation: {time.perf_counter() - start:.1f}s "
        f"(diagnose: {1000 * rules_time / max(1, len(collected.runs)):.2f} ms a run)"
    )
    if args.json:
        doc = {
            "store": str(args.store),
            "thresholds": {
                "far": FAR,
                "stall": STALL,
                "far_lr": FAR_LR,
                "near_lr": NEAR_LR,
                "naive_high": NAIVE_HIGH,
                "naive_low": NAIVE_LOW,
            },
            "lrs": LRS,
            "kicks": KICKS,
            "missing": collected.missing,
            "figures": figs,
            "best": {
                "/".join(k): vars(v)
                for k, v in sorted(collected.bests.items())
                if section_of(k[0]) in sections or "all" in sections
            },
            "runs": [r.to_dict() for r in collected.runs],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
