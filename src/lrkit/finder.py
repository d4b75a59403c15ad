"""Range-test analysis: smoothing, the divergence stop, and lr suggestions (pure).

An lr range test trains for a few steps while the lr grows from ``min_lr`` to
``max_lr`` (:func:`ramp`) and records one loss per step. This module turns the
recorded ``(lr, loss)`` pairs into a :class:`Suggestion`; it needs numpy only,
so every rule is testable without a framework (``lrkit.torch.find_lr`` runs the
sweep and calls :func:`suggest`).

The pipeline, shared by every method:

1. :func:`smooth`: the debiased exponential moving average used by fastai and
   Lightning, ``avg_i = beta * avg_{i-1} + (1 - beta) * loss_i`` and
   ``smoothed_i = avg_i / (1 - beta ** (i + 1))``.
2. :func:`divergence_index`: the sweep is cut after the first point whose raw
   loss is NaN/inf or whose smoothed loss is above ``diverge`` x the best
   smoothed loss before it (that point is kept, as both upstream recorders
   keep it).
3. A rule picks the lr: :func:`steepest` (Lightning's), :func:`valley`
   (fastai's), :func:`minimum` (fastai's: the minimum / 10) or :func:`default`.
4. The same rule is re-run on resampled curves (the trend plus shuffled
   residuals, a fixed seed): the spread of those picks is the interval, and
   it sets the confidence together with a descent test. A curve whose loss
   does not clearly fall, or falls by less than its noise, gets a low
   confidence and a reason that says so.

Examples:
    >>> import numpy as np
    >>> lrs = ramp(1e-6, 1.0, 100)
    >>> x = np.log10(lrs)
    >>> losses = 2.0 - 1.2 / (1 + np.exp(-(x + 3) / 0.4)) + np.exp(3 * (x + 0.5))
    >>> s = default(lrs, losses)
    >>> 1e-4 < s.lr < 1e-2, s.confidence > 0.5
    (True, True)
    >>> flat = np.full(100, 2.0)
    >>> s = default(lrs, flat)
    >>> s.confidence, s.reason.startswith("no clear descent")
    (0.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "METHODS",
    "FinderResult",
    "Suggestion",
    "default",
    "divergence_index",
    "minimum",
    "ramp",
    "smooth",
    "steepest",
    "suggest",
    "valley",
]

#: Resampled curves per suggestion (the interval and the confidence).
RESAMPLES = 48

#: A descent counts when the smoothed loss falls by at least this fraction of
#: its starting level ...
MIN_DROP = 0.02

#: ... and by at least this many times the noise of that comparison.
MIN_SNR = 4.0

#: Fewer usable points than this cannot give a suggestion.
MIN_POINTS = 8


@dataclass(frozen=True)
class Suggestion:
    """A suggested lr with its interval, a confidence and the reason for it.

    Attributes:
        lr: The suggested learning rate (``nan`` when the curve is too short
            to give one).
        interval: ``(low, high)``: the lrs the same rule picks on resampled
            curves (10th to 90th percentile, the suggestion included).
        confidence: In ``[0, 1]``; below 0.5 means "do not trust the number
            without looking at the plot".
        reason: One line: what limits the confidence, or why it is high.
        method: The rule that picked ``lr``.
        index: The index into the sweep of the point picked (``None`` for no
            pick; ``default`` interpolates and gives the nearest point).
    """

    lr: float
    interval: tuple[float, float]
    confidence: float
    reason: str
    method: str
    index: int | None = None


# ---------------------------------------------------------------------------
# The sweep and its curve
# ---------------------------------------------------------------------------


def ramp(min_lr: float, max_lr: float, num_steps: int, mode: str = "exp") -> np.ndarray:
    """The lrs of a range test: ``num_steps`` values from ``min_lr`` to ``max_lr``.

    ``exp``: ``min_lr * (max_lr / min_lr) ** (i / (num_steps - 1))``;
    ``linear``: ``min_lr + (max_lr - min_lr) * i / (num_steps - 1)``. Both
    start at ``min_lr`` and end exactly at ``max_lr``.

    Args:
        min_lr: The first lr, > 0.
        max_lr: The last lr, > ``min_lr``.
        num_steps: How many lrs, >= 2.
        mode: ``"exp"`` or ``"linear"``.

    Returns:
        A float64 array of ``num_steps`` increasing lrs.

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> ramp(1e-3, 1.0, 4).round(6).tolist()
        [0.001, 0.01, 0.1, 1.0]
        >>> ramp(0.1, 0.4, 4, mode="linear").round(6).tolist()
        [0.1, 0.2, 0.3, 0.4]
    """
    if not (isinstance(min_lr, int | float) and math.isfinite(min_lr) and min_lr > 0):
        raise ValueError(f"ramp: min_lr must be a finite number > 0, got {min_lr!r}")
    if not (isinstance(max_lr, int | float) and math.isfinite(max_lr) and max_lr > min_lr):
        raise ValueError(
            f"ramp: max_lr must be a finite number > min_lr={min_lr!r}, got {max_lr!r}"
        )
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"ramp: num_steps must be an integer >= 2, got {num_steps!r}")
    frac = np.arange(num_steps, dtype=np.float64) / (num_steps - 1)
    if mode == "exp":
        out = min_lr * (max_lr / min_lr) ** frac
    elif mode == "linear":
        out = min_lr + (max_lr - min_lr) * frac
    else:
        raise ValueError(f"ramp: mode must be 'exp' or 'linear', got {mode!r}")
    out[-1] = max_lr
    return out


def _check_beta(name: str, beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0.0 <= beta < 1.0:
        raise ValueError(f"{name}: beta must be a number in [0, 1), got {beta!r}")
    return float(beta)


def smooth(losses: Sequence[float] | np.ndarray, beta: float = 0.98) -> np.ndarray:
    """The debiased exponential moving average of the losses (fastai's, Lightning's).

        avg_i = beta * avg_{i-1} + (1 - beta) * loss_i,   avg_{-1} = 0
        smoothed_i = avg_i / (1 - beta ** (i + 1))

    The division removes the pull towards the initial 0, so ``smoothed_0`` is
    ``loss_0``. A NaN or inf makes every later value NaN/inf, as upstream.
    ``beta=0`` returns the losses unchanged.

    Args:
        losses: The raw losses, in sweep order.
        beta: The forget factor in ``[0, 1)``.

    Returns:
        A float64 array as long as ``losses``.

    Raises:
        ValueError: If ``beta`` is outside ``[0, 1)``.

    Examples:
        >>> smooth([1.0, 3.0], beta=0.5).round(6).tolist()
        [1.0, 2.333333]
        >>> smooth([4.0, 4.0, 4.0]).round(12).tolist()
        [4.0, 4.0, 4.0]
    """
    beta = _check_beta("smooth", beta)
    x = np.asarray(losses, dtype=np.float64)
    out = np.empty_like(x)
    avg = 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        for i, loss in enumerate(x):
            avg = beta * avg + (1.0 - beta) * loss
            out[i] = avg / (1.0 - beta ** (i + 1))
    return out


def divergence_index(
    losses: Sequence[float] | np.ndarray, *, beta: float = 0.98, diverge: float = 5.0
) -> int | None:
    """The index of the first diverging point of a sweep, or ``None``.

    Point ``i`` diverges when its raw loss is NaN or inf, or when ``i >= 1``
    and its smoothed loss (:func:`smooth`) is above ``diverge`` times the
    smallest smoothed loss before it (Lightning's and fastai's stop, on the
    debiased curve). The ratio test needs that best loss to be > 0; a sweep
    whose loss reaches 0 or below stops only at NaN/inf.

    Args:
        losses: The raw losses.
        beta: The smoothing factor.
        diverge: The factor over the best smoothed loss, > 1.

    Returns:
        The index, or ``None`` if no point diverges.

    Raises:
        ValueError: If ``beta`` or ``diverge`` is out of range.

    Examples:
        >>> divergence_index([1.0, 0.8, 0.6, 9.0], beta=0.0, diverge=5.0)
        3
        >>> divergence_index([1.0, float("nan")]), divergence_index([1.0, 0.9])
        (1, None)
    """
    beta = _check_beta("divergence_index", beta)
    if isinstance(diverge, bool) or not isinstance(diverge, int | float) or not diverge > 1.0:
        raise ValueError(f"divergence_index: diverge must be a number > 1, got {diverge!r}")
    raw = np.asarray(losses, dtype=np.float64)
    curve = smooth(raw, beta)
    best = math.inf
    for i, (loss, value) in enumerate(zip(raw, curve, strict=True)):
        if not math.isfinite(loss):
            return i
        if i >= 1 and best > 0.0 and value > diverge * best:
            return i
        best = min(best, value)
    return None


# ---------------------------------------------------------------------------
# The rules: index of the picked point on a given curve
# ---------------------------------------------------------------------------


def _window(n: int, skip_begin: int, skip_end: int) -> tuple[int, int]:
    """``[begin, end)`` after the skips (``skip_end=0`` skips nothing at the end)."""
    return skip_begin, n - skip_end


def _steepest_index(
    lrs: np.ndarray, curve: np.ndarray, skip_begin: int, skip_end: int
) -> int | None:
    """Lightning's rule: the most negative d(curve)/d(lr) between the skips.

    The gradient is against the lr itself (not its log), by second-order
    central differences on the uneven lr grid (first-order at both ends of
    the window), after dropping non-finite points; the first minimum wins.
    """
    begin, end = _window(len(curve), skip_begin, skip_end)
    idx = np.arange(len(curve))[begin:end]
    keep = np.isfinite(curve[begin:end])
    idx = idx[keep]
    if len(idx) < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = np.gradient(curve[idx], lrs[idx])
    if not np.isfinite(grad).any():
        return None
    return int(idx[int(np.nanargmin(grad))])


def _valley_index(curve: np.ndarray, skip_begin: int, skip_end: int) -> int | None:
    """fastai's rule: the middle of the longest valley.

    Followed from fastai's ``valley`` (``fastai/callback/schedule.py``) and its
    description, "a learning rate from the longest valley": the longest
    strictly decreasing subsequence of the curve (not necessarily contiguous)
    is found by the O(n^2) dynamic programme ``run[i] = 1 + max(run[j])`` over
    ``j < i`` with ``curve[j] > curve[i]``; the earliest point where the
    longest run ends is ``end``, the valley is taken as the ``run[end]``
    indices before it, ``start = end - run[end]``, and the pick is
    ``start + floor(L / 3) + floor(L / 6)`` with ``L = end - start``, about
    halfway down. The window is cut at the first NaN, as fastai does.
    """
    begin, end = _window(len(curve), skip_begin, skip_end)
    seg = curve[begin:end]
    bad = np.flatnonzero(~np.isfinite(seg))
    if len(bad):
        seg = seg[: bad[0]]
    n = len(seg)
    if n == 0:
        return None
    run = np.ones(n, dtype=np.int64)
    for i in range(1, n):
        higher = seg[:i] > seg[i]
        if higher.any():
            run[i] = 1 + int(run[:i][higher].max())
    last = int(np.argmax(run))  # the earliest end of a longest run
    first = last - int(run[last])
    third = (last - first) / 3
    return begin + first + int(third) + int(third / 2)


def _minimum_index(curve: np.ndarray, skip_begin: int, skip_end: int) -> int | None:
    """fastai's ``minimum``: the point of the lowest finite loss (first if tied)."""
    begin, end = _window(len(curve), skip_begin, skip_end)
    seg = curve[begin:end]
    if not np.isfinite(seg).any():
        return None
    return begin + int(np.nanargmin(np.where(np.isfinite(seg), seg, np.nan)))


def _centered(raw: np.ndarray, width: float) -> np.ndarray:
    """A lag-free trend: a Gaussian-weighted mean over neighbouring indices.

    ``width`` is the kernel's standard deviation in points; near the ends the
    weights are renormalised over the points that exist. Unlike the causal
    moving average, its descent sits where the raw descent is.
    """
    n = len(raw)
    offsets = np.arange(n)[:, None] - np.arange(n)[None, :]
    weights = np.exp(-0.5 * (offsets / width) ** 2)
    return (weights @ raw) / weights.sum(axis=1)


# ---------------------------------------------------------------------------
# The pipeline: checks, cut, rule, resampling, confidence
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Curve:
    lrs: np.ndarray  # the analysed points (up to and including the diverging one)
    raw: np.ndarray
    smoothed: np.ndarray
    stopped: int | None  # the diverging index, if any


def _prepare(
    name: str,
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    beta: float,
    diverge: float,
) -> _Curve:
    x = np.asarray(lrs, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    if x.ndim != 1 or y.shape != x.shape:
        raise ValueError(
            f"{name}: lrs and losses must be 1-d and of the same length, "
            f"got shapes {x.shape} and {y.shape}"
        )
    if len(x) and (not np.isfinite(x).all() or (x <= 0).any()):
        raise ValueError(f"{name}: lrs must be finite and > 0, got {x.tolist()!r}")
    if len(x) > 1 and (np.diff(x) <= 0).any():
        raise ValueError(f"{name}: lrs must be strictly increasing, got {x.tolist()!r}")
    stop = divergence_index(y, beta=beta, diverge=diverge)
    cut = len(y) if stop is None else stop + 1
    return _Curve(x[:cut], y[:cut], smooth(y[:cut], beta), stop)


Rule = Callable[[np.ndarray, np.ndarray, np.ndarray], "float | None"]


def _noise(raw: np.ndarray) -> float:
    """The raw losses' noise: a robust scale of successive differences / sqrt(2)."""
    d = np.diff(raw[np.isfinite(raw)])
    if len(d) == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def _analyse(name: str, curve: _Curve, rule: Rule, beta: float, *, seed: int = 0) -> Suggestion:
    """Run ``rule(lrs, raw, smoothed) -> lr`` and rate it: descent test + resampling."""
    n = len(curve.raw)
    usable = curve.raw[np.isfinite(curve.raw)]
    if len(usable) < MIN_POINTS:
        return Suggestion(
            math.nan,
            (math.nan, math.nan),
            0.0,
            f"too few points: {len(usable)} finite losses before the stop, need >= {MIN_POINTS}; "
            "lower min_lr or raise num_steps",
            name,
        )
    lr = rule(curve.lrs, curve.raw, curve.smoothed)
    if lr is None or not math.isfinite(lr):
        return Suggestion(
            math.nan, (math.nan, math.nan), 0.0, "the rule found no point on this curve", name
        )
    index = int(np.argmin(np.abs(np.log(curve.lrs) - math.log(lr))))

    # Descent test: does the loss fall clearly, compared with its own noise?
    # The diverging point is left out of the trend (its loss is no descent).
    finite = np.isfinite(curve.raw)
    if curve.stopped is not None:
        finite[-1] = False
    lrs_f, raw_f = curve.lrs[finite], curve.raw[finite]
    trend, start, head = _trend(raw_f)
    low = float(trend[head:].min()) if len(trend) > head else start
    drop = start - low
    sigma = _noise(raw_f)
    spread = sigma * math.sqrt(1.0 / head + 1.0 / (2.0 * math.sqrt(math.pi) * max(1.0, n / 30)))
    snr = drop / spread if spread > 0 else (math.inf if drop > 0 else 0.0)
    rel = drop / abs(start) if start != 0 else (math.inf if drop > 0 else 0.0)

    # Resampling: the lag-free trend times shuffled residual ratios (plus
    # shuffled residuals where the loss is not positive), the rule re-run.
    # The diverging point stays as it is: its residual is no noise.
    rng = np.random.default_rng(seed)
    ratio = bool((trend > 0).all())
    resid = raw_f / trend if ratio else raw_f - trend
    if len(resid):  # where the trend lags a sharp turn its residuals are no noise: clip them
        mid = float(np.median(resid))
        scale = 1.4826 * float(np.median(np.abs(resid - mid)))
        resid = np.clip(resid, mid - 3 * scale, mid + 3 * scale)
    picks = [math.log(lr)]
    keep = np.flatnonzero(finite)  # the resampled sweep: the finite points before the stop ...
    if curve.stopped is not None:
        keep = np.append(keep, len(curve.raw) - 1)
    for _ in range(RESAMPLES):
        shuffled = rng.permutation(resid)
        fake = curve.raw[keep].copy()  # ... the diverging one kept as it is
        fake[: len(raw_f)] = trend * shuffled if ratio else trend + shuffled
        again = rule(curve.lrs[keep], fake, smooth(fake, beta))
        if again is not None and math.isfinite(again):
            picks.append(math.log(again))
    q_lo, q_hi = np.quantile(picks, [0.1, 0.9])
    interval = (float(min(math.exp(q_lo), lr)), float(max(math.exp(q_hi), lr)))
    decades = math.log10(interval[1] / interval[0])

    if rel < MIN_DROP or snr < MIN_SNR:
        return Suggestion(
            lr,
            interval,
            0.0,
            f"no clear descent: the loss falls by {100 * rel:.2g}% of its start "
            f"({snr:.2g}x its noise; need {100 * MIN_DROP:g}% and {MIN_SNR:g}x)",
            name,
            index,
        )
    c_descent = min(1.0, (snr - MIN_SNR) / (3 * MIN_SNR))
    c_spread = max(0.0, 1.0 - decades / 1.5)
    confidence = round(min(c_descent, c_spread), 3)
    if c_spread <= c_descent:
        reason = (
            f"resampled curves put this rule's pick within {decades:.2g} decades "
            f"({10**decades:.2g}x)" + ("" if c_spread >= 0.5 else ": too noisy to trust one number")
        )
    else:
        reason = f"the loss falls by {100 * rel:.2g}% ({snr:.2g}x its noise)" + (
            "" if c_descent >= 0.5 else ": a weak descent"
        )
    # Where is the pick? Before the trend has made a tenth of its descent (less
    # a factor 3 of slack), or past its lowest point, it is no place to train.
    lowest = head + int(np.argmin(trend[head:])) if len(trend) > head else int(np.argmin(trend))
    still_high = np.flatnonzero(trend[: lowest + 1] > start - 0.1 * drop)
    first = float(lrs_f[min(int(still_high[-1]) + 1, lowest)]) if len(still_high) else lrs_f[0]
    if lr < first / 3:
        confidence = round(min(confidence, 0.2), 3)
        reason = f"the pick lies before the loss starts to fall (about {first:.2g}): " + reason
    elif lr > float(lrs_f[lowest]) * 1.000001:
        confidence = round(min(confidence, 0.2), 3)
        reason = f"the pick lies past the lowest loss (at {lrs_f[lowest]:.2g}): " + reason
    if curve.stopped is None and lowest >= len(trend) - 3:
        confidence = round(min(confidence, 0.3), 3)
        reason = "the loss is still falling at max_lr: raise max_lr; " + reason
    return Suggestion(lr, interval, confidence, reason, name, index)


def _skips(n: int, skip_begin: int | None, skip_end: int) -> tuple[int, int]:
    begin = n // 10 if skip_begin is None else skip_begin
    for label, value in (("skip_begin", begin), ("skip_end", skip_end)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{label} must be an integer >= 0, got {value!r}")
    return begin, skip_end


def steepest(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    *,
    beta: float = 0.98,
    diverge: float = 5.0,
    skip_begin: int = 10,
    skip_end: int = 1,
) -> Suggestion:
    """Lightning's rule: the lr where the smoothed loss falls fastest against the lr.

    Followed from ``lightning.pytorch.tuner.lr_finder._LRFinder.suggestion``
    (2.6): drop ``skip_begin`` points at the start and ``skip_end`` at the end,
    drop non-finite ones, and take the first point of most negative
    ``d smoothed / d lr``. The derivative is against the lr itself, not its
    log (central differences on the uneven grid, ``np.gradient(loss, lr)``,
    like ``torch.gradient(loss, spacing=[lr])``), which leans towards small
    lrs on an exponential ramp. ``skip_end=0`` skips nothing (Lightning's
    slice would then be empty).

    Args:
        lrs: The sweep's lrs, increasing.
        losses: The raw losses (``beta=0`` to pass an already smoothed curve).
        beta: The smoothing factor of :func:`smooth`.
        diverge: The stop factor of :func:`divergence_index`.
        skip_begin: Points left out at the start (Lightning: 10).
        skip_end: Points left out at the end (Lightning: 1).

    Returns:
        The :class:`Suggestion`.

    Examples:
        >>> import numpy as np
        >>> lrs = ramp(1e-4, 1.0, 40)
        >>> curve = 1.0 - 0.5 * np.tanh(np.log10(lrs) + 2)
        >>> s = steepest(lrs, curve, beta=0.0, skip_begin=0)
        >>> round(s.lr, 6)  # against the lr, not log lr: the start, not the 1e-2 descent
        0.0001
        >>> s.confidence < 0.5, "the pick lies before the loss starts to fall" in s.reason
        (True, True)
    """
    curve = _prepare("steepest", lrs, losses, beta, diverge)
    begin, end = _skips(len(curve.raw), skip_begin, skip_end)

    def rule(x: np.ndarray, raw: np.ndarray, sm: np.ndarray) -> float | None:
        i = _steepest_index(x, sm, begin, end)
        return None if i is None else float(x[i])

    return _analyse("steepest", curve, rule, beta)


def valley(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    *,
    beta: float = 0.98,
    diverge: float = 5.0,
    skip_begin: int | None = None,
    skip_end: int = 5,
) -> Suggestion:
    """fastai's rule: about halfway down the longest valley of the smoothed loss.

    See ``_valley_index`` for the rule in full (the longest strictly
    decreasing subsequence, found by O(n^2) dynamic programming, and the
    point ``floor(L/3) + floor(L/6)`` past its start). fastai's ``lr_find``
    hands the rule its recorded (smoothed) losses without the first
    ``num_it // 10`` and the last 5 points; here ``skip_begin=None`` means a
    tenth of the analysed points (the same when the sweep ran to the end).

    Args:
        lrs: The sweep's lrs, increasing.
        losses: The raw losses (``beta=0`` to pass an already smoothed curve).
        beta: The smoothing factor of :func:`smooth`.
        diverge: The stop factor of :func:`divergence_index`.
        skip_begin: Points left out at the start (default: a tenth).
        skip_end: Points left out at the end (fastai: 5).

    Returns:
        The :class:`Suggestion`.

    Examples:
        >>> lrs = ramp(1e-3, 1.0, 10)
        >>> losses = [5, 5, 4, 3, 2, 1, 0.5, 2, 9, 9]
        >>> bool(valley(lrs, losses, beta=0.0, skip_begin=0, skip_end=0).lr == lrs[3])
        True
    """
    curve = _prepare("valley", lrs, losses, beta, diverge)
    begin, end = _skips(len(curve.raw), skip_begin, skip_end)

    def rule(x: np.ndarray, raw: np.ndarray, sm: np.ndarray) -> float | None:
        i = _valley_index(sm, begin, end)
        return None if i is None else float(x[i])

    return _analyse("valley", curve, rule, beta)


def minimum(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    *,
    beta: float = 0.98,
    diverge: float = 5.0,
    skip_begin: int | None = None,
    skip_end: int = 5,
) -> Suggestion:
    """fastai's ``minimum``: the lr of the lowest smoothed loss, divided by 10.

    Args:
        lrs: The sweep's lrs, increasing.
        losses: The raw losses (``beta=0`` to pass an already smoothed curve).
        beta: The smoothing factor of :func:`smooth`.
        diverge: The stop factor of :func:`divergence_index`.
        skip_begin: Points left out at the start (default: a tenth, as fastai).
        skip_end: Points left out at the end (fastai: 5).

    Returns:
        The :class:`Suggestion` (its ``index`` is the minimum's point).

    Examples:
        >>> lrs = ramp(1e-3, 1.0, 10)
        >>> losses = [5, 5, 4, 3, 2, 1, 0.5, 2, 9, 9]
        >>> bool(minimum(lrs, losses, beta=0.0, skip_begin=0, skip_end=0).lr == lrs[6] / 10)
        True
    """
    curve = _prepare("minimum", lrs, losses, beta, diverge)
    begin, end = _skips(len(curve.raw), skip_begin, skip_end)

    def rule(x: np.ndarray, raw: np.ndarray, sm: np.ndarray) -> float | None:
        i = _minimum_index(sm, begin, end)
        return None if i is None else float(x[i]) / 10.0

    out = _analyse("minimum", curve, rule, beta)
    if out.index is not None:  # point at the minimum itself, not at lr / 10
        out = Suggestion(
            out.lr,
            out.interval,
            out.confidence,
            out.reason,
            out.method,
            _minimum_index(curve.smoothed, begin, end),
        )
    return out


def default(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    *,
    beta: float = 0.98,
    diverge: float = 5.0,
) -> Suggestion:
    """lrkit's rule: between the steep part of the descent and a decade below its end.

    Two estimates, combined by their geometric mean (the middle in log lr):

    1. **descent**: where a lag-free trend has made 60 % of its descent. The
       trend is a centred Gaussian-weighted mean of the raw losses (standard
       deviation ``n / 30`` points), so unlike the causal moving average its
       descent sits where the losses fell. From the start level (the median
       of the first tenth of the raw losses) to the trend's lowest point (the
       diverging point excluded), it is the lr, interpolated in log lr, where
       the trend last crosses 60 % of the way down before that lowest point.
    2. **edge**: fastai's ``minimum``, the lr of the lowest point of the
       (lagged) moving average divided by 10: a decade below where the loss
       stops improving, close to the edge of stability. It is used only when
       the sweep saw the loss turn up (it diverged, or the trend's lowest
       point is before the last tenth); otherwise the pick is the descent
       point alone.

    The descent point alone is what a sweep's shape says best (the knee of
    a clean curve); but the lr that trains best over a full budget sits
    higher, nearer the edge of stability, and on curves whose descent is slow
    or noisy (a regression with badly scaled features, the Rosenbrock valley)
    the trend misplaces it while the edge stays put. The two err in
    different directions, so their mean in log lr errs less than either.

    Evidence 1, synthetic sweeps with a known knee: 200 curves, 100 points
    from 1e-7 to 10, loss ``(1 - drop * sigmoid((log10 lr - log10 knee) / w) +
    exp(4 (log10 lr - log10 knee - gap))) * (1 + noise * N(0, 1))`` with
    ``knee`` log-uniform in [1e-5, 3e-2], ``w`` in [0.25, 0.6] decades,
    ``drop`` in [0.4, 0.8], ``gap`` in [1, 2] decades; the share of picks
    within 3x / 2x of the knee and the mean |log10(pick / knee)|:

    ==================  =============  =============  =============
    rule                5 % noise      10 % noise     mean |e|, 5 %
    ==================  =============  =============  =============
    steepest (Lightn.)  0.5 % / 0 %    0.5 % / 0 %    2.70 decades
    valley (fastai)     62 % / 33 %    75 % / 49 %    0.43
    minimum / 10        80 % / 62 %    80 % / 60 %    0.27
    descent alone       99.5 % / 88 %  97 % / 84 %    0.15
    default (chosen)    100 % / 88 %   99.5 % / 88 %  0.17
    ==================  =============  =============  =============

    (``python benchmarks/finder_synthetic.py [--noise 0.1]`` prints them.)

    Evidence 2, the built-in tasks (``benchmarks/finder_quality.py``): for
    each of the 6 tasks x {momentum, adamw}, the best constant lr of a
    full-budget grid (a quarter decade apart, 3 seeds) against the pick on
    the sweeps of seeds 0, 1 and 2; mean |log10(pick / best)| over the 36
    sweeps: descent alone 0.79, minimum / 10 0.43, descent at 80 % 0.57,
    valley 1.14, default (chosen) 0.50; on seed 0's sweeps (the benchmark's
    table) 0.92, 0.46, 0.69, 1.17 and 0.56, and 6 of 12 picks within 2x of
    the grid's best (descent alone: 4). ``minimum / 10`` alone does as well on
    the tasks but lands within 3x of a synthetic knee only 80 % of the time;
    the default keeps both. Twelve cases are few: treat the combination as
    the best-supported rule so far, not a law.

    Lightning's derivative against the lr (not its log) picks the noisy start
    of the sweep; fastai's rules see the lagged moving average (about 50
    points of lag at ``beta=0.98``).

    Args:
        lrs: The sweep's lrs, increasing.
        losses: The raw losses.
        beta: The smoothing factor of :func:`smooth` (divergence stop only:
            the trend is lag-free).
        diverge: The stop factor of :func:`divergence_index`.

    Returns:
        The :class:`Suggestion`; ``index`` is the sweep point nearest ``lr``.

    Examples:
        >>> import numpy as np
        >>> lrs = ramp(1e-6, 1.0, 61)
        >>> curve = 2.0 - np.tanh(np.log10(lrs) + 3)  # the descent is centred at 1e-3
        >>> s = default(lrs, curve)
        >>> bool(5e-4 < s.lr < 3e-3)
        True
    """
    curve = _prepare("default", lrs, losses, beta, diverge)
    stopped = curve.stopped is not None

    def rule(x: np.ndarray, raw: np.ndarray, sm: np.ndarray) -> float | None:
        descent = _descent_point(x, raw, stopped)
        edge = _edge_point(x, raw, sm, stopped)
        if descent is None or edge is None:
            return descent
        return math.sqrt(descent * edge)

    return _analyse("default", curve, rule, beta)


def _edge_point(x: np.ndarray, raw: np.ndarray, sm: np.ndarray, stopped: bool) -> float | None:
    """fastai's ``minimum`` pick (the lagged curve's lowest point / 10), if the loss turned up.

    It counts only when the sweep saw the end of the descent: it stopped at a
    divergence, or the lag-free trend's lowest point lies before the last
    tenth of the sweep. Otherwise (the loss still falling at ``max_lr``) the
    lowest point is merely the last one, and ``None`` is returned.
    """
    if not stopped:
        finite = np.isfinite(raw)
        if finite.sum() < 2:
            return None
        trend, _, head = _trend(raw[finite])
        n = len(trend)
        lowest = head + int(np.argmin(trend[head:])) if n > head else int(np.argmin(trend))
        if lowest >= n - max(1, n // 10):
            return None
    i = _minimum_index(sm, len(sm) // 10, 5)
    return None if i is None else float(x[i]) / 10.0


def _trend(raw: np.ndarray) -> tuple[np.ndarray, float, int]:
    """The lag-free trend of finite losses, the start level and the head length.

    The start level is the median of the first tenth (at least 3 points).
    Before smoothing, losses more than the whole descent above the start are
    clipped there, so a blow-up does not bleed into the points before it.
    """
    n = len(raw)
    head = max(3, n // 10)
    start = float(np.median(raw[:head]))
    cap = start + max(start - float(raw.min()), 0.0)
    return _centered(np.minimum(raw, cap), max(1.0, n / 30)), start, head


def _descent_point(
    x: np.ndarray, raw: np.ndarray, stopped: bool, frac: float = 0.6
) -> float | None:
    """The lr where the lag-free trend of ``raw`` has made ``frac`` of its descent.

    ``stopped``: the last point is the diverging one, left out.
    """
    if stopped:
        x, raw = x[:-1], raw[:-1]
    finite = np.isfinite(raw)
    x, raw = x[finite], raw[finite]
    n = len(raw)
    if n < 2:
        return None
    trend, start, head = _trend(raw)
    lowest = head + int(np.argmin(trend[head:])) if n > head else int(np.argmin(trend))
    level = start - frac * (start - trend[lowest])
    above = np.flatnonzero(trend[: lowest + 1] > level)
    i = int(above[-1]) if len(above) else 0
    if i >= lowest:
        return float(x[i])
    t = (trend[i] - level) / (trend[i] - trend[i + 1])
    lo, hi = math.log(x[i]), math.log(x[i + 1])
    return math.exp(lo + t * (hi - lo))


#: The methods by name, for :func:`suggest` and ``find_lr(method=...)``.
METHODS: dict[str, Callable[..., Suggestion]] = {
    "default": default,
    "steepest": steepest,
    "valley": valley,
    "minimum": minimum,
}


def suggest(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    method: str = "default",
    *,
    beta: float = 0.98,
    diverge: float = 5.0,
) -> Suggestion:
    """Run the method named ``method`` (one of :data:`METHODS`) on a sweep.

    Raises:
        ValueError: If ``method`` is unknown, or an argument is out of range.

    Examples:
        >>> lrs = ramp(1e-3, 1.0, 10)
        >>> suggest(lrs, [5, 5, 4, 3, 2, 1, 0.5, 2, 9, 9], "minimum", beta=0.0).method
        'minimum'
    """
    if method not in METHODS:
        raise ValueError(f"suggest: method must be one of {sorted(METHODS)}, got {method!r}")
    return METHODS[method](lrs, losses, beta=beta, diverge=diverge)


@dataclass(frozen=True, eq=False)  # arrays inside: no field-wise ==
class FinderResult:
    """What an lr range test found.

    Attributes:
        suggestion: The suggested lr (``nan`` when the sweep was too short).
        lrs: The first param group's lr at each recorded step.
        losses: The loss at each step (the validation loss with a
            ``val_loader``; with ``repeats > 1`` the mean over the repeats of
            the steps they all reached).
        smoothed: :func:`lrkit.finder.smooth` of ``losses``.
        interval: ``(low, high)``, see :class:`lrkit.finder.Suggestion`.
        confidence: In ``[0, 1]``; below 0.5, look at the plot.
        reason: One line on what limits the confidence.
        method: The suggestion rule used.
        stopped: The index of the step where the loss diverged, or ``None``.
        updates: Optimizer updates made, all repeats together.
        runs: The losses of each repeat.
        run_suggestions: Each repeat's own suggestion (one entry when
            ``repeats=1``); their spread shows how much the data order matters.
    """

    suggestion: float
    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    interval: tuple[float, float]
    confidence: float
    reason: str
    method: str
    stopped: int | None
    updates: int
    runs: tuple[np.ndarray, ...] = field(default=())
    run_suggestions: tuple[float, ...] = field(default=())

    def __repr__(self) -> str:
        low, high = self.interval
        return (
            f"FinderResult(suggestion={self.suggestion:.3g}, interval=({low:.3g}, {high:.3g}), "
            f"confidence={self.confidence:.2f}, method={self.method!r}, "
            f"points={len(self.lrs)}, updates={self.updates})"
        )

    @classmethod
    def from_runs(
        cls,
        lrs: np.ndarray,
        runs: Sequence[np.ndarray],
        *,
        method: str,
        beta: float,
        diverge: float,
        updates: int,
    ) -> FinderResult:
        """The result of one or more sweeps over ``lrs``: their mean curve's suggestion.

        Args:
            lrs: The lr of each step of the ramp.
            runs: Each repeat's losses (a sweep stopped at divergence is shorter);
                the mean is taken over the steps every repeat reached.
            method: As :func:`suggest`.
            beta: As :func:`suggest`.
            diverge: As :func:`suggest`.
            updates: Optimizer updates made, all repeats together.
        """
        reached = min(len(r) for r in runs)
        losses = np.mean([r[:reached] for r in runs], axis=0) if len(runs) > 1 else runs[0]
        swept = np.asarray(lrs[: len(losses)])
        pick = suggest(swept, losses, method, beta=beta, diverge=diverge)
        own = (
            tuple(suggest(lrs[: len(r)], r, method, beta=beta, diverge=diverge).lr for r in runs)
            if len(runs) > 1
            else (pick.lr,)
        )
        return cls(
            suggestion=pick.lr,
            lrs=swept,
            losses=losses,
            smoothed=smooth(losses, beta),
            interval=pick.interval,
            confidence=pick.confidence,
            reason=pick.reason,
            method=method,
            stopped=divergence_index(losses, beta=beta, diverge=diverge),
            updates=updates,
            runs=tuple(runs),
            run_suggestions=own,
        )

    @property
    def spread(self) -> float:
        """The largest over the smallest of :attr:`run_suggestions` (1.0 for one run)."""
        finite = [s for s in self.run_suggestions if math.isfinite(s) and s > 0]
        return max(finite) / min(finite) if len(finite) > 1 else 1.0

    def plot(self, path: str | Path | None = None, *, ax: Any = None) -> Any:
        """Draw loss against lr (log axis): raw and smoothed, the suggestion and its interval.

        matplotlib is imported here. With ``path`` and no ``ax`` the figure is
        a bare ``matplotlib.figure.Figure`` (no pyplot, no display, nothing
        left open) saved there, its format following the extension; with
        ``ax`` the curves go there; with neither a pyplot figure is made.

        Args:
            path: Where to save the figure (parent folders are created).
            ax: A matplotlib Axes to draw into.

        Returns:
            The matplotlib Axes.
        """
        if ax is None:
            if path is not None:
                from matplotlib.figure import Figure

                fig = Figure(figsize=(7.0, 4.5), dpi=120, layout="constrained")
            else:
                import matplotlib.pyplot as plt

                fig = plt.figure(figsize=(7.0, 4.5), dpi=120, layout="constrained")
            ax = fig.add_subplot()
        finite = np.isfinite(self.losses)
        ax.plot(self.lrs[finite], self.losses[finite], color="0.6", linewidth=0.9, label="loss")
        ax.plot(self.lrs, self.smoothed, color="C0", linewidth=1.8, label="smoothed")
        if math.isfinite(self.suggestion):
            low, high = self.interval
            ax.axvspan(low, high, color="C2", alpha=0.15, label=f"interval {low:.3g}-{high:.3g}")
            ax.axvline(
                self.suggestion,
                color="C2",
                linewidth=1.5,
                label=f"{self.method}: {self.suggestion:.3g}",
            )
        if self.stopped is not None:
            ax.axvline(self.lrs[self.stopped], color="C3", linestyle=":", label="diverged")
        end = len(self.losses) if self.stopped is None else self.stopped
        pool = np.concatenate([self.losses[:end], self.smoothed[:end]])
        pool = pool[np.isfinite(pool)]
        if len(pool):  # keep the blow-up from flattening the interesting part
            bottom = float(pool.min())
            raw = self.losses[:end][np.isfinite(self.losses[:end])]
            start = float(np.median(raw[: max(3, len(raw) // 10)])) if len(raw) else bottom
            top = min(float(np.quantile(pool, 0.98)), start + max(start - bottom, 0.0))
            pad = 0.05 * (top - bottom) if top > bottom else 0.05 * max(abs(top), 1.0)
            ax.set_ylim(bottom - pad, top + pad)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.set_title(
            f"lr range test: {self.suggestion:.3g} (confidence {self.confidence:.2f})\n"
            f"{self.reason}",
            fontsize=8,
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            root: Any = getattr(ax.figure, "figure", ax.figure)
            root.savefig(path)
        return ax
