"""Is the learning rate too high, too low, or fine? :func:`diagnose` (pure, numpy only).

One run's record (:class:`lrkit.monitor.Record`: the training loss, the lr,
the update-to-weight ratio where measured) gets one verdict, with the
numbers behind it and what to try. No other run is needed: this is the
diagnosis a single training loop can have, live or at its end (``lrkit
compare`` compares lrs against each other in its report as well).

The rules, in the order they are tried (the first that fires decides). The
*start* is the loss before training: the first loss (taken before any
update), or the median of the first three when that is lower. The *end* is
the median of the last tenth of the losses.

**too_high**

1. *Divergence*: a loss that is NaN or infinite.
2. *Rise*: the median of 5 consecutive losses above :data:`RISE` x the start.
   A run that blows up in its first steps and then sits at a poor loss (or
   at chance, its network dead) is caught here, whatever it does later.
3. *Blow-up*: after the loss came down, a stretch of it (the median of one
   of 20 blocks of the run) rose above :data:`BLOWUP` x its lowest block
   median so far and above the start: an lr that became too high mid-run.
4. *Spikes*: single losses above :data:`SPIKE` x the median of the
   :data:`SPIKE_WINDOW` losses before them *and* above the start, in more
   than :data:`SPIKES` of the steps after the first tenth. Minibatch noise
   near a small loss makes 4x jumps (one misclassified sample), so a spike
   must also leave the start behind.
5. *Large updates*: the median update-to-weight ratio of the second half
   above :data:`RATIO_HIGH` (the usual band for a healthy step is
   1e-4 .. 1e-2; 0.03 rewrites 3 % of the weights at every update).

**too_low**

6. *Tiny updates*: the median update ratio of the first half below
   :data:`RATIO_LOW`, the band's lower edge. The first half, because a run
   that converged has tiny gradients, hence tiny updates, at its end.

**too_high** again

7. *Moving without progress*: the loss fell by less than
   :data:`NO_PROGRESS` of its start while the update ratio of the second
   half is above :data:`RATIO_MOVING`: the weights move, the loss does not
   follow; the lr overshoots.

(The live check, ``final=False``, stops here: a run still young is always
"still descending", so the rest is judged at the end.) Rules 5-7 wait until
the run is :data:`RATIO_SPAN` steps long: the first updates of a network are
large next to its small initial weights.

**too_low**, at the end

8. *No progress*: the loss fell by less than :data:`NO_PROGRESS` of its
   start, smoothly (its noise below that too).
9. *Little progress*: the loss fell by less than :data:`LITTLE_PROGRESS` of
   its start (the advice says that a task whose loss cannot go lower is
   fine at this lr).
10. *Sluggish*: the loss was still falling as steeply at the end as at the
    start. Measured against the cumulative lr ``x(t) = lr(0) + ... + lr(t)``
    (so warmup and decay do not count as a change of pace): the share of
    the loss's descent made in the second half of ``x`` is above
    :data:`LATE_SHARE` (a descent straight in ``x`` makes 0.5, a run that
    got there and slowed makes little).

**plateau**, at the end

11. The loss came down from its start but did not improve over the last
    :data:`PLATEAU_TAIL` of the run by more than its noise or
    :data:`PLATEAU_GAIN`, while the lr stayed above half its peak: time
    spent at an lr that can no longer make progress; decaying it would. A
    run whose lr decayed and whose loss then stopped falling has converged:
    ``ok``.

**ok**: none of the above.

A record of fewer than :data:`MIN_POINTS` losses is judged on rules 1 and 2
only (a single loss above 3x the first, for want of a median), else ``ok``
with "too few losses" as its evidence.

Without update ratios (a record of the loss and lr only) rules 5-7 are
skipped; without an lr, rule 10 is, and rule 11 does not check the lr.

How the thresholds were chosen: on labelled runs
(``benchmarks/diagnosis_labelled.py``: the built-in tasks digits, scales and
quadratic at lrs far above and below their best, mid-run lr jumps, long
constant runs; the labels come from the validation metric, never from the
training loss the rules read), and checked on tasks held out of that work
(signals, rosenbrock, charlm and three generated tasks). docs/monitor.md has
the confusion tables against a naive rule.

Examples:
    >>> from lrkit.monitor import Record
    >>> rec = Record.from_rows((t, {"loss": 2.0 / (1 + t / 10), "lr/group0": 0.1})
    ...                        for t in range(200))
    >>> diagnose(rec).verdict
    'ok'
    >>> rec.add(200, {"loss": float("nan")})
    >>> found = diagnose(rec)
    >>> found.verdict, found.step
    ('too_high', 200)
    >>> print(found.advice)
    cut the lr x0.3 (or keep the lr and add a guard: guard(..., factor=0.5))
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lrkit.monitor import Record

__all__ = [
    "BLOWUP",
    "LATE_SHARE",
    "LITTLE_PROGRESS",
    "MIN_POINTS",
    "NO_PROGRESS",
    "PLATEAU_GAIN",
    "PLATEAU_TAIL",
    "RATIO_HIGH",
    "RATIO_LOW",
    "RATIO_MOVING",
    "RATIO_SPAN",
    "RISE",
    "SPIKE",
    "SPIKES",
    "SPIKE_WINDOW",
    "VERDICTS",
    "WARMUP_SHARE",
    "Diagnosis",
    "diagnose",
    "rolling_median",
]

VERDICTS = ("too_high", "too_low", "plateau", "ok")

#: Fewer losses than this: nothing but a NaN is judged.
MIN_POINTS = 20
#: The median of 5 consecutive losses above this many times the start: a rise.
RISE = 3.0
#: A block median this many times the lowest before it (and above the start): a blow-up.
BLOWUP = 3.0
#: A loss this many times the median of the ones before it (and above the start): a spike.
SPIKE = 3.0
#: How many losses before a spike make its reference median.
SPIKE_WINDOW = 20
#: Spikes in more than this share of the steps (after the first tenth): too high.
SPIKES = 0.01
#: Median update ratio of the second half above this: updates far above the usual band.
RATIO_HIGH = 0.03
#: Median update ratio of the first half below this: updates below the usual band.
RATIO_LOW = 1e-4
#: A loss without progress while the ratio is above this: the lr overshoots.
RATIO_MOVING = 1e-3
#: The loss fell by less than this share of its start level: no progress.
NO_PROGRESS = 0.05
#: The loss fell by less than this share of its start level: too little progress.
LITTLE_PROGRESS = 0.5
#: Share of the descent made in the second half of the cumulative lr above this: sluggish.
LATE_SHARE = 0.3
#: The last this share of the run is where a plateau is looked for.
PLATEAU_TAIL = 0.5
#: ... improving by less than this (relative) there is no improvement.
PLATEAU_GAIN = 0.02
#: Update ratios (rules 5-7) are judged once the run is this many steps long.
RATIO_SPAN = 100
#: A blow-up in the first this share of the run suggests warmup as well.
WARMUP_SHARE = 0.1

_BLOCKS = 20


@dataclass(frozen=True)
class Diagnosis:
    """One verdict on a run's learning rate, with its evidence and what to try.

    Attributes:
        verdict: ``"too_high" | "too_low" | "plateau" | "ok"``.
        evidence: One or two sentences with the numbers the verdict rests on.
        advice: What to try (``"cut the lr x0.3"``, ``"try x3"``, ...); empty for ``ok``.
        step: The step where the evidence starts, or the last step recorded for ``ok``.
        stretch: ``(first, last)`` step of the bad stretch, or None.
        rule: Which rule decided (``"nan"``, ``"blowup"``, ``"spikes"``,
            ``"large_updates"``, ``"tiny_updates"``, ``"no_progress"``,
            ``"sluggish"``, ``"plateau"``, ``"ok"``, ``"too_few"``).
        numbers: The measured values behind the verdict, by name.
    """

    verdict: str
    evidence: str
    advice: str = ""
    step: int = 0
    stretch: tuple[int, int] | None = None
    rule: str = "ok"
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The verdict in words: ``"too high"``."""
        return self.verdict.replace("_", " ")

    @property
    def bad(self) -> bool:
        """Whether the verdict is anything but ``ok``."""
        return self.verdict != "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "verdict": self.verdict,
            "evidence": self.evidence,
            "advice": self.advice,
            "step": self.step,
            "stretch": list(self.stretch) if self.stretch else None,
            "rule": self.rule,
            "numbers": {k: (v if math.isfinite(v) else None) for k, v in self.numbers.items()},
        }

    def __str__(self) -> str:
        text = f"{self.verdict}: {self.evidence}"
        return f"{text}\n{self.advice}" if self.advice else text


def _fmt(x: float) -> str:
    return f"{x:.3g}"


@dataclass
class _Run:
    """The series the rules read, aligned and cleaned."""

    steps: np.ndarray  # loss steps
    loss: np.ndarray
    lr: np.ndarray  # lr at each loss step (nan when unknown)
    ratio_steps: np.ndarray
    ratio: np.ndarray  # median over groups at each measured step
    first: int
    last: int

    @property
    def span(self) -> int:
        return max(self.last - self.first, 1)

    def at(self, share: float) -> int:
        """The step at ``share`` of the recorded run."""
        return int(self.first + share * self.span)


def _lr_series(record: Record, steps: np.ndarray) -> np.ndarray:
    tags = record.groups("lr")
    if not tags:
        return np.full(len(steps), np.nan)
    lr_steps, lr = record.series(tags[0])
    if len(lr_steps) == 0:
        return np.full(len(steps), np.nan)
    order = np.argsort(lr_steps, kind="stable")
    lr_steps, lr = lr_steps[order], lr[order]
    idx = np.clip(np.searchsorted(lr_steps, steps, side="right") - 1, 0, len(lr) - 1)
    return lr[idx]


def _ratio_series(record: Record) -> tuple[np.ndarray, np.ndarray]:
    """The update ratio at each measured step: the median over the groups measured there."""
    series = [record.series(tag) for tag in record.groups("update_ratio")]
    series = [(s[np.isfinite(v)], v[np.isfinite(v)]) for s, v in series]
    if not series:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    if len(series) == 1:
        return series[0]
    steps = np.unique(np.concatenate([s for s, _ in series]))
    table = np.full((len(steps), len(series)), np.nan)
    for j, (s, v) in enumerate(series):
        table[np.searchsorted(steps, s), j] = v
    return steps, np.nanmedian(table, axis=1)


def _run(record: Record) -> _Run:
    steps, loss = record.series("loss")
    order = np.argsort(steps, kind="stable")
    steps, loss = steps[order], loss[order]
    ratio_steps, ratio = _ratio_series(record)
    first = int(steps[0]) if len(steps) else 0
    last = max(int(record.last_step), first)
    return _Run(steps, loss, _lr_series(record, steps), ratio_steps, ratio, first, last)


def _too_high(
    run: _Run,
    at: int,
    rule: str,
    evidence: str,
    numbers: dict[str, float],
    *,
    factor: str = "0.3",
    also: str = "",
    until: int | None = None,
) -> Diagnosis:
    """A ``too_high`` verdict: it went wrong at ``at``, the stretch runs to ``until`` (the end)."""
    stretch = (at, run.last if until is None else until)
    return Diagnosis(
        "too_high", evidence, _advice_high(run, at, factor) + also, at, stretch, rule, numbers
    )


def _advice_high(run: _Run, step: int, factor: str = "0.3") -> str:
    text = f"cut the lr x{factor}"
    if step - run.first <= WARMUP_SHARE * run.span and run.span >= 10 * MIN_POINTS:
        text += f", or add warmup (it went wrong in the first {WARMUP_SHARE:.0%} of the steps)"
    return text


def _blocks(steps: np.ndarray, loss: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Split into up to :data:`_BLOCKS` blocks: their (first, last) steps and medians."""
    n = len(loss)
    count = min(_BLOCKS, max(n // 5, 1))
    edges = np.linspace(0, n, count + 1).astype(int)
    values, at = loss.tolist(), steps.tolist()  # statistics.median: far faster on short lists
    spans, medians = [], []
    for a, b in itertools.pairwise(edges.tolist()):
        if b > a:
            spans.append((at[a], at[b - 1]))
            medians.append(statistics.median(values[a:b]))
    return spans, np.array(medians)


def rolling_median(loss: np.ndarray, k: int) -> np.ndarray:
    """The median of the ``k`` values around each one (edges padded with the edge value)."""
    pad = np.pad(loss, (k // 2, k - 1 - k // 2), mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(pad, k), axis=1)


def _noise(loss: np.ndarray) -> float:
    """A robust spread of the loss around its local median (MAD of the detrended values)."""
    if len(loss) < 5:
        return 0.0
    return float(1.4826 * np.median(np.abs(loss - rolling_median(loss, 5))))


def _spikes(run: _Run, start_level: float) -> tuple[int, int, int | None]:
    """(spikes, steps looked at, first spike's step) after the first tenth of the run."""
    loss, steps = run.loss, run.steps
    begin = max(int(np.searchsorted(steps, run.at(0.1))), SPIKE_WINDOW)
    if begin >= len(loss):
        return 0, 0, None
    windows = np.lib.stride_tricks.sliding_window_view(loss[:-1], SPIKE_WINDOW)
    # windows[i] holds the SPIKE_WINDOW losses before loss[i + SPIKE_WINDOW]
    reference = np.median(windows[begin - SPIKE_WINDOW :], axis=1)
    values = loss[begin:]
    hits = (values > SPIKE * np.maximum(reference, 0)) & (values > start_level) & (reference > 0)
    found = np.flatnonzero(hits)
    first = int(steps[begin + found[0]]) if len(found) else None
    return len(found), len(values), first


def _late_share(run: _Run, end: float, start_level: float) -> float:
    """Share of the descent made in the second half of the cumulative lr (nan: no lr)."""
    lr = run.lr
    if np.isnan(lr).any() or len(lr) < MIN_POINTS:
        return math.nan
    x = np.cumsum(np.maximum(lr, 0.0))
    if x[-1] <= 0:
        return math.nan
    mid = int(np.searchsorted(x, x[-1] / 2))
    width = max(len(lr) // 20, 2)
    at_mid = float(np.median(run.loss[max(mid - width, 0) : mid + width]))
    total = start_level - end
    if total <= 0:
        return math.nan
    return (at_mid - end) / total


def diagnose(record: Record, *, final: bool = True) -> Diagnosis:
    """Judge the learning rate of the run in ``record`` (rules in the module docstring).

    Args:
        record: The run's scalars (tags of :mod:`lrkit.monitor`); only
            ``loss`` is required, ``lr/group{i}`` and ``update_ratio/group{i}``
            add rules.
        final: The run has ended (``False``: the live check mid-run, rules 1-5).

    Returns:
        The :class:`Diagnosis`.
    """
    run = _run(record)
    loss, steps = run.loss, run.steps
    bad = np.flatnonzero(~np.isfinite(loss))
    if len(bad):
        at = int(steps[bad[0]])
        return _too_high(
            run,
            at,
            "nan",
            f"the loss is {loss[bad[0]]} at step {at}",
            {"step": float(at)},
            also=" (or keep the lr and add a guard: guard(..., factor=0.5))",
        )
    if len(loss) < MIN_POINTS:
        start, top = (float(loss[0]), float(np.max(loss))) if len(loss) else (0.0, 0.0)
        if start > 0 and len(loss) >= 3 and top > RISE * start:
            at = int(steps[int(np.argmax(loss > RISE * start))])
            return _too_high(
                run,
                at,
                "rise",
                f"the loss rose to {_fmt(top)}, {top / start:.3g}x its start {_fmt(start)}, "
                f"from step {at} ({len(loss)} losses recorded)",
                {"start_loss": start, "peak": top, "rise": top / start},
            )
        return Diagnosis(
            "ok",
            f"only {len(loss)} loss{'' if len(loss) == 1 else 'es'} recorded; "
            f"{MIN_POINTS} are needed to judge",
            "",
            run.last,
            None,
            "too_few",
        )
    # the loss before training: the first loss (before any update), unless the median of
    # the first three is lower (a first minibatch that happened to be hard)
    start_level = min(float(loss[0]), float(np.median(loss[:3])))
    spans, medians = _blocks(steps, loss)
    end = float(np.median(loss[-max(3, len(loss) // 10) :]))
    numbers = {"start_loss": start_level, "end_loss": end}

    # 2. a rise above the start: the median of 5 consecutive losses above RISE x the start
    if start_level > 0:
        smooth = rolling_median(loss, 5)
        # the first two medians are padded with the first loss: a fall from it is no rise
        above = np.flatnonzero(smooth > RISE * start_level)
        above = above[above >= 2]
        if len(above):
            at = int(steps[above[0]])
            top = int(np.argmax(smooth))
            numbers.update(peak=float(smooth[top]), rise=float(smooth[top] / start_level))
            return _too_high(
                run,
                at,
                "rise",
                f"the loss rose to {_fmt(smooth[top])} at step {int(steps[top])} "
                f"(median of 5), {smooth[top] / start_level:.3g}x its start "
                f"{_fmt(start_level)}; above {RISE:g}x from step {at}",
                numbers,
            )

    # 3. blow-up
    lowest = np.minimum.accumulate(medians)
    for b in range(1, len(medians)):
        if medians[b] > BLOWUP * lowest[b - 1] and medians[b] > start_level and lowest[b - 1] > 0:
            low_block = int(np.argmin(medians[:b]))
            # the rise starts after the lowest block: the first loss above twice its median
            after = np.flatnonzero((steps > spans[low_block][1]) & (loss > 2 * medians[low_block]))
            at = int(steps[after[0]]) if len(after) else spans[b][0]
            numbers.update(lowest=float(lowest[b - 1]), risen_to=float(medians[b]))
            return _too_high(
                run,
                at,
                "blowup",
                f"the loss rose from {_fmt(lowest[b - 1])} (steps {spans[low_block][0]}-"
                f"{spans[low_block][1]}) to {_fmt(medians[b])} (steps {spans[b][0]}-"
                f"{spans[b][1]}), above its start {_fmt(start_level)}",
                numbers,
                until=spans[-1][1],
            )

    # 4. spikes
    count, looked, first_spike = _spikes(run, start_level)
    if looked and count > SPIKES * looked and first_spike is not None:
        numbers.update(spikes=float(count), spike_share=count / looked)
        return _too_high(
            run,
            first_spike,
            "spikes",
            f"{count} loss spikes in {looked} steps ({count / looked:.1%}; above {SPIKE:g}x the "
            f"median of the {SPIKE_WINDOW} before and above the start {_fmt(start_level)}), "
            f"the first at step {first_spike}",
            numbers,
            factor="0.5",
        )

    # 5.-7. update ratios
    progress = (start_level - end) / abs(start_level) if start_level != 0 else math.nan
    numbers["progress"] = progress
    # a young run's ratios are its first steps', large while the weights are small
    if len(run.ratio) and run.span >= RATIO_SPAN:
        second = run.ratio[run.ratio_steps >= run.at(0.5)]
        first = run.ratio[run.ratio_steps < run.at(0.5)]
        late = float(np.median(second if len(second) else run.ratio))
        early = float(np.median(first if len(first) else run.ratio))
        numbers.update(update_ratio=late, update_ratio_early=early)
        if late > RATIO_HIGH:
            at = run.at(0.5)
            return _too_high(
                run,
                at,
                "large_updates",
                f"the update-to-weight ratio is {_fmt(late)} (median of the second half; "
                f"the usual band is 1e-4..1e-2): each update rewrites "
                f"{late:.1%} of the weights",
                numbers,
            )
        if early < RATIO_LOW:
            return Diagnosis(
                "too_low",
                f"the update-to-weight ratio is {_fmt(early)} (median of the first half; the "
                "usual band is 1e-4..1e-2): the weights hardly move",
                "try the lr x10",
                run.first,
                (run.first, run.last),
                "tiny_updates",
                numbers,
            )
        if progress < NO_PROGRESS and late >= RATIO_MOVING and run.span >= 2 * MIN_POINTS:
            at = run.first
            return _too_high(
                run,
                at,
                "no_progress_moving",
                f"the weights move (update ratio {_fmt(late)}) but the loss does not fall: "
                f"{_fmt(start_level)} to {_fmt(end)} in {run.span} steps",
                numbers,
                factor="0.1",
            )
    if not final:
        return Diagnosis(
            "ok", _ok_evidence(start_level, end, run), "", run.last, None, "ok", numbers
        )

    # 8.-10. no progress, little progress, sluggish
    noise = _noise(loss[len(loss) * 3 // 4 :])
    numbers["noise"] = noise
    if progress < NO_PROGRESS and noise < NO_PROGRESS * abs(start_level):
        return Diagnosis(
            "too_low",
            f"the loss hardly moved: {_fmt(start_level)} to {_fmt(end)} "
            f"({-progress:+.1%}) in {run.span} steps, smoothly",
            "try the lr x10",
            run.first,
            (run.first, run.last),
            "no_progress",
            numbers,
        )
    if progress < LITTLE_PROGRESS and start_level > 0:
        return Diagnosis(
            "too_low",
            f"the loss fell by only {progress:.0%} ({_fmt(start_level)} to {_fmt(end)}) in "
            f"{run.span} steps",
            "try the lr x3 (if the loss cannot go much lower on this task, the lr is fine)",
            run.first,
            (run.first, run.last),
            "little_progress",
            numbers,
        )
    share = _late_share(run, end, start_level)
    numbers["late_share"] = share
    if share > LATE_SHARE:
        at = run.at(0.5)
        return Diagnosis(
            "too_low",
            f"the loss was still falling at the end: {share:.0%} of its descent "
            f"({_fmt(start_level)} to {_fmt(end)}) came in the second half of the run, "
            "counted in cumulative lr (a run that got there makes little)",
            "try the lr x3 (or train longer)",
            at,
            (at, run.last),
            "sluggish",
            numbers,
        )

    # 11. plateau
    if progress > NO_PROGRESS:
        at = run.at(1 - PLATEAU_TAIL)
        cut = int(np.searchsorted(steps, at))
        width = max(len(loss) // 20, 3)
        before = float(np.median(loss[max(cut - width, 0) : cut + width]))
        gain = before - end
        numbers.update(plateau_from=before, plateau_gain=gain)
        lr_known = ~np.isnan(run.lr)
        peak = float(np.max(run.lr[lr_known])) if lr_known.any() else math.nan
        lr_end = float(run.lr[-1]) if lr_known.any() else math.nan
        kept = not lr_known.any() or lr_end >= 0.5 * peak
        if kept and gain <= max(noise, PLATEAU_GAIN * abs(end)):
            lr_text = f" while the lr stayed at {_fmt(lr_end)}" if lr_known.any() else ""
            return Diagnosis(
                "plateau",
                f"the loss has not improved over the last {PLATEAU_TAIL:.0%} of the run "
                f"({_fmt(before)} at step {at}, {_fmt(end)} at the end; noise "
                f"{_fmt(noise)}){lr_text}",
                "decay the lr from here: a cosine or linear decay to the end, or "
                "plateau(factor=0.3); or stop early",
                at,
                (at, run.last),
                "plateau",
                numbers,
            )
    return Diagnosis("ok", _ok_evidence(start_level, end, run), "", run.last, None, "ok", numbers)


def _ok_evidence(start: float, end: float, run: _Run) -> str:
    return f"the loss went from {_fmt(start)} to {_fmt(end)} in {run.span} steps, steadily"


def verdict_counts(diagnoses: Sequence[Diagnosis]) -> dict[str, int]:
    """How many of each verdict, in :data:`VERDICTS` order."""
    return {v: sum(d.verdict == v for d in diagnoses) for v in VERDICTS}
