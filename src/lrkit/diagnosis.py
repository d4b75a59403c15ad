"""Is the learning rate too high, too low, or fine? :func:`diagnose` (pure, numpy only).

One run's record (:class:`lrkit.monitor.Record`: the training loss, the lr,
the update-to-weight ratio where measured) gets one verdict, with the
numbers behind it and what to try. No other run is needed: this is the
diagnosis a single training loop can have, live or at its end (``lrkit
compare`` compares lrs against each other in its report as well).

The rules, in the order they are tried (the first that fires decides):

**too_high**

1. *Divergence*: a loss that is NaN or infinite.
2. *Blow-up*: after the loss came down, a stretch of it (the median of one
   of 20 blocks of the run) rose above :data:`BLOWUP` x its lowest block
   median so far and above the start level. The start level is the median
   of the first 2 % of the losses (3 at least).
3. *Spikes*: single losses above :data:`SPIKE` x the median of the
   :data:`SPIKE_WINDOW` losses before them *and* above the start level, in
   more than :data:`SPIKES` of the steps after the first tenth. Minibatch
   noise near a small loss makes 4x jumps (one misclassified sample), so a
   spike must also leave the start level behind.
4. *Large updates*: the median update-to-weight ratio of the second half
   above :data:`RATIO_HIGH` (the common band for a healthy step is
   1e-4 .. 1e-2: a ratio of 0.1 rewrites a tenth of the weights every
   step) while the loss ended no lower than :data:`NO_PROGRESS` of its start.

**too_low**

5. *Tiny updates*: the median update ratio below :data:`RATIO_LOW`.
6. *Sluggish descent* (at the end only): the loss fell by less than
   :data:`NO_PROGRESS` of its start level, smoothly; or it was still falling
   as steeply at the end as at the start. The second is measured against
   the cumulative lr ``x(t) = lr(0) + ... + lr(t)`` (so warmup and decay do
   not count as a change of pace): the share of the loss's total descent
   made in the second half of ``x`` is above :data:`LATE_SHARE` (a descent
   straight in ``x`` makes 0.5, a run that got there and slowed makes
   little), and the last fifth still descends by more than its noise.

**plateau** (at the end only)

7. The loss came down from its start (by more than :data:`NO_PROGRESS`) but
   did not improve over the last :data:`PLATEAU_TAIL` of the run by more than
   its noise or :data:`PLATEAU_GAIN`, while the lr stayed above half its
   peak: a stretch spent at an lr that can no longer make progress. A run
   whose lr decayed and whose loss then stopped falling has converged:
   ``ok``.

**ok**: none of the above.

The live check (``final=False``, :class:`lrkit.monitor.Recorder` runs it as
the record grows) tries rules 1-5 only: a run still at its start is always
"still descending", so sluggishness and a plateau are judged at the end.

What the thresholds were judged on: ``benchmarks/diagnosis_labelled.py``
(labelled runs of the built-in tasks far above and below their best lr,
mid-run blow-ups, long constant runs; docs/monitor.md has the confusion
tables against a naive rule).

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
    "MIN_POINTS",
    "NO_PROGRESS",
    "PLATEAU_GAIN",
    "PLATEAU_TAIL",
    "RATIO_HIGH",
    "RATIO_LOW",
    "SPIKE",
    "SPIKES",
    "SPIKE_WINDOW",
    "VERDICTS",
    "WARMUP_SHARE",
    "Diagnosis",
    "diagnose",
]

VERDICTS = ("too_high", "too_low", "plateau", "ok")

#: Fewer losses than this: nothing but a NaN is judged.
MIN_POINTS = 20
#: A block median this many times the lowest before it (and above the start): a blow-up.
BLOWUP = 3.0
#: A loss this many times the median of the ones before it (and above the start): a spike.
SPIKE = 3.0
#: How many losses before a spike make its reference median.
SPIKE_WINDOW = 20
#: Spikes in more than this share of the steps (after the first tenth): too high.
SPIKES = 0.01
#: Median update ratio of the second half above this: updates far above the usual band.
RATIO_HIGH = 0.1
#: Median update ratio below this: updates far below the usual band.
RATIO_LOW = 1e-5
#: The loss fell by less than this share of its start level: no progress.
NO_PROGRESS = 0.05
#: Share of the descent made in the second half of the cumulative lr above this: sluggish.
LATE_SHARE = 0.35
#: The last this share of the run is where a plateau is looked for.
PLATEAU_TAIL = 0.4
#: ... improving by less than this (relative) there is no improvement.
PLATEAU_GAIN = 0.02
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


def _noise(loss: np.ndarray) -> float:
    """A robust spread of the loss around its local median (MAD of the detrended values)."""
    if len(loss) < 5:
        return 0.0
    k = 5
    pad = np.pad(loss, (k // 2, k // 2), mode="edge")
    local = np.median(np.lib.stride_tricks.sliding_window_view(pad, k), axis=1)
    return float(1.4826 * np.median(np.abs(loss - local)))


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
        return Diagnosis(
            "too_high",
            f"the loss is {loss[bad[0]]} at step {at}",
            _advice_high(run, at) + " (or keep the lr and add a guard: guard(..., factor=0.5))",
            at,
            (at, run.last),
            "nan",
            {"step": float(at)},
        )
    if len(loss) < MIN_POINTS:
        return Diagnosis(
            "ok",
            f"only {len(loss)} losses recorded; {MIN_POINTS} are needed to judge",
            "",
            run.last,
            None,
            "too_few",
        )
    head = max(3, len(loss) // 50)
    start_level = float(np.median(loss[:head]))
    spans, medians = _blocks(steps, loss)
    end = float(np.median(loss[-max(3, len(loss) // 10) :]))
    numbers = {"start_loss": start_level, "end_loss": end}

    # 2. blow-up
    lowest = np.minimum.accumulate(medians)
    for b in range(1, len(medians)):
        if medians[b] > BLOWUP * lowest[b - 1] and medians[b] > start_level and lowest[b - 1] > 0:
            low_block = int(np.argmin(medians[:b]))
            # the rise starts after the lowest block: the first loss above twice its median
            after = np.flatnonzero((steps > spans[low_block][1]) & (loss > 2 * medians[low_block]))
            at = int(steps[after[0]]) if len(after) else spans[b][0]
            numbers.update(lowest=float(lowest[b - 1]), risen_to=float(medians[b]))
            return Diagnosis(
                "too_high",
                f"the loss rose from {_fmt(lowest[b - 1])} (steps {spans[low_block][0]}-"
                f"{spans[low_block][1]}) to {_fmt(medians[b])} (steps {spans[b][0]}-"
                f"{spans[b][1]}), above its start {_fmt(start_level)}",
                _advice_high(run, at),
                at,
                (at, spans[-1][1]),
                "blowup",
                numbers,
            )

    # 3. spikes
    count, looked, first_spike = _spikes(run, start_level)
    if looked and count > SPIKES * looked and first_spike is not None:
        numbers.update(spikes=float(count), spike_share=count / looked)
        return Diagnosis(
            "too_high",
            f"{count} loss spikes in {looked} steps ({count / looked:.1%}; above {SPIKE:g}x the "
            f"median of the {SPIKE_WINDOW} before and above the start {_fmt(start_level)}), "
            f"the first at step {first_spike}",
            _advice_high(run, first_spike, "0.5"),
            first_spike,
            (first_spike, run.last),
            "spikes",
            numbers,
        )

    # 4. / 5. update ratios
    progress = (start_level - end) / abs(start_level) if start_level != 0 else math.nan
    numbers["progress"] = progress
    if len(run.ratio):
        half = run.ratio[run.ratio_steps >= run.at(0.5)]
        late = float(np.median(half if len(half) else run.ratio))
        overall = float(np.median(run.ratio))
        numbers.update(update_ratio=late, update_ratio_all=overall)
        if late > RATIO_HIGH and not progress > NO_PROGRESS:
            at = run.at(0.5)
            return Diagnosis(
                "too_high",
                f"the update-to-weight ratio is {_fmt(late)} (median of the second half; "
                f"the usual band is 1e-4..1e-2) and the loss went from {_fmt(start_level)} "
                f"to {_fmt(end)}",
                _advice_high(run, at, "0.1"),
                at,
                (at, run.last),
                "large_updates",
                numbers,
            )
        if overall < RATIO_LOW:
            return Diagnosis(
                "too_low",
                f"the update-to-weight ratio is {_fmt(overall)} (median; the usual band is "
                "1e-4..1e-2): the weights hardly move",
                "try the lr x10",
                run.first,
                (run.first, run.last),
                "tiny_updates",
                numbers,
            )
    if not final:
        return Diagnosis(
            "ok", _ok_evidence(start_level, end, run), "", run.last, None, "ok", numbers
        )

    # 6. sluggish
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
    share = _late_share(run, end, start_level)
    numbers["late_share"] = share
    tail = loss[int(len(loss) * 0.8) :]
    tail_drop = float(np.median(tail[: len(tail) // 2]) - np.median(tail[len(tail) // 2 :]))
    numbers["tail_drop"] = tail_drop
    if share > LATE_SHARE and tail_drop > noise:
        at = run.at(0.5)
        return Diagnosis(
            "too_low",
            f"the loss was still falling at the end: {share:.0%} of its descent "
            f"({_fmt(start_level)} to {_fmt(end)}) came in the second half of the run "
            f"(by cumulative lr), and the last fifth fell by {_fmt(tail_drop)} "
            f"(noise {_fmt(noise)})",
            "try the lr x3 (or train longer)",
            at,
            (at, run.last),
            "sluggish",
            numbers,
        )

    # 7. plateau
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
