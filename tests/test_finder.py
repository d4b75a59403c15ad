"""lrkit.finder: smoothing, the divergence stop, and the suggestion rules.

``steepest`` is checked against Lightning's own ``_LRFinder.suggestion`` (it
needs no Trainer: it reads ``results``), ``valley`` against fastai's rule
written out independently here (fastai is not installed), and ``default``
against synthetic curves whose knee is known.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrkit import finder as F

LOG3 = math.log10(3)


def knee_curve(seed: int, knee: float, *, noise: float = 0.05, n: int = 100) -> np.ndarray:
    """A range-test curve: flat, a sigmoid descent centred at ``knee``, then a blow-up."""
    rng = np.random.default_rng(seed)
    x = np.log10(F.ramp(1e-7, 10.0, n))
    xk = math.log10(knee)
    clean = 1.0 - 0.6 / (1 + np.exp(-(x - xk) / 0.4)) + np.exp(4 * (x - xk - 1.5))
    return clean * (1 + noise * rng.standard_normal(n))


# ---------------------------------------------------------------------------
# The sweep, smoothing, divergence
# ---------------------------------------------------------------------------


def test_ramp_ends_and_modes() -> None:
    lrs = F.ramp(1e-7, 10.0, 100)
    assert lrs[0] == 1e-7 and lrs[-1] == 10.0 and len(lrs) == 100
    assert np.allclose(np.diff(np.log(lrs)), math.log(1e8) / 99)
    lin = F.ramp(0.1, 1.0, 10, mode="linear")
    assert np.allclose(np.diff(lin), 0.1) and lin[-1] == 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.0, 1.0, 10), "min_lr must be a finite number > 0, got 0.0"),
        ((1.0, 1.0, 10), "max_lr must be a finite number > min_lr=1.0, got 1.0"),
        ((1e-3, 1.0, 1), "num_steps must be an integer >= 2, got 1"),
        ((1e-3, 1.0, 10, "cosine"), "mode must be 'exp' or 'linear', got 'cosine'"),
    ],
)
def test_ramp_errors(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        F.ramp(*args)


def test_smooth_is_the_debiased_moving_average() -> None:
    rng = np.random.default_rng(0)
    losses = rng.uniform(0.5, 2.0, 50)
    beta = 0.9
    avg, expected = 0.0, []
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        expected.append(avg / (1 - beta ** (i + 1)))
    assert np.allclose(F.smooth(losses, beta), expected, rtol=1e-14)
    assert F.smooth(losses, beta)[0] == losses[0]  # debiased: no pull towards 0
    assert np.array_equal(F.smooth(losses, 0.0), losses)
    assert np.allclose(F.smooth(np.full(30, 3.0)), 3.0, rtol=1e-12)


@pytest.mark.parametrize("beta", [-0.1, 1.0, 2, True])
def test_smooth_rejects_beta(beta: float) -> None:
    with pytest.raises(ValueError, match=r"beta must be a number in \[0, 1\)"):
        F.smooth([1.0], beta)


def test_divergence_stop() -> None:
    assert F.divergence_index([1.0, 0.9, 0.8]) is None
    assert F.divergence_index([1.0, 0.9, float("nan"), 0.5]) == 2
    assert F.divergence_index([1.0, float("inf")]) == 1
    # the ratio is on the smoothed curve against its best so far
    losses = [1.0, 0.5, 0.4, 1.9, 2.1]
    assert F.divergence_index(losses, beta=0.0, diverge=5.5) is None
    assert F.divergence_index(losses, beta=0.0, diverge=5.0) == 4  # 2.1 > 5 x 0.4
    assert F.divergence_index([1.0, 0.4, 1.5], beta=0.0, diverge=3.0) == 2
    # a best loss <= 0 switches the ratio test off (only NaN/inf count)
    assert F.divergence_index([0.0, 0.0, 5.0], beta=0.0) is None
    with pytest.raises(ValueError, match=r"diverge must be a number > 1, got 1\.0"):
        F.divergence_index([1.0], diverge=1.0)


def test_the_sweep_is_cut_after_the_diverging_point() -> None:
    lrs = F.ramp(1e-6, 1.0, 100)
    losses = knee_curve(0, 1e-3)
    losses[70:] = np.nan
    s = F.default(lrs, losses)
    assert math.isfinite(s.lr) and s.lr < lrs[70]


# ---------------------------------------------------------------------------
# steepest = Lightning's rule, run by Lightning itself
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lightning_suggestion():
    from lightning.pytorch.tuner.lr_finder import _LRFinder

    def run(lrs: np.ndarray, smoothed: np.ndarray) -> float | None:
        found = _LRFinder("exponential", float(lrs[0]), float(lrs[-1]), len(lrs))
        found.results = {"lr": [float(v) for v in lrs], "loss": [float(v) for v in smoothed]}
        return found.suggestion()

    return run


def histories() -> list[tuple[np.ndarray, np.ndarray]]:
    """Smoothed (lr, loss) histories: knees, noise levels, a NaN tail, ties, a linear ramp."""
    out = []
    for seed in range(12):
        knee = 10 ** np.random.default_rng(100 + seed).uniform(-5, -1)
        raw = knee_curve(seed, knee, noise=0.02 + 0.02 * (seed % 4))
        out.append((F.ramp(1e-7, 10.0, 100), F.smooth(raw)))
    lrs = F.ramp(1e-7, 10.0, 100)
    tail = F.smooth(knee_curve(3, 1e-3))
    tail[80:] = np.nan
    out.append((lrs, tail))
    out.append((lrs[:30], np.r_[np.full(15, 2.0), np.linspace(2.0, 1.0, 15)]))
    out.append((F.ramp(1e-4, 1.0, 60, mode="linear"), F.smooth(knee_curve(5, 0.2, n=60))))
    return out


@pytest.mark.parametrize("case", range(len(histories())))
def test_steepest_is_lightnings_rule(case: int, lightning_suggestion) -> None:
    lrs, smoothed = histories()[case]
    expected = lightning_suggestion(lrs, smoothed)
    got = F.steepest(lrs, smoothed, beta=0.0, diverge=math.inf)
    assert expected is not None
    assert got.lr == expected
    assert got.lr == lrs[got.index]


def test_steepest_with_too_few_points() -> None:
    s = F.steepest(F.ramp(1e-3, 1.0, 5), [1.0, 0.9, 0.8, 0.7, 0.6])
    assert math.isnan(s.lr) and s.confidence == 0.0 and s.reason.startswith("too few points")


# ---------------------------------------------------------------------------
# valley = fastai's rule, written out literally
# ---------------------------------------------------------------------------


def fastai_valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's ``valley`` as its source spells it (the loop and the index arithmetic)."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def fastai_lr_find_valley(lrs: np.ndarray, smoothed: np.ndarray, num_it: int) -> float:
    """What fastai's ``lr_find`` hands ``valley``: [num_it // 10 : -5], cut at the first NaN."""
    x, y = list(lrs[num_it // 10 : -5]), list(smoothed[num_it // 10 : -5])
    nan = [i for i, v in enumerate(y) if math.isnan(v)]
    if nan:
        x, y = x[: nan[0]], y[: nan[0]]
    return fastai_valley(x, y)


@pytest.mark.parametrize("case", range(len(histories())))
def test_valley_is_fastais_rule(case: int) -> None:
    lrs, smoothed = histories()[case]
    n = len(lrs)
    got = F.valley(lrs, smoothed, beta=0.0, diverge=math.inf)
    assert got.lr == fastai_lr_find_valley(lrs, smoothed, n)


def test_valley_on_random_walks() -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        n = int(rng.integers(12, 60))
        lrs = F.ramp(1e-5, 1.0, n)
        walk = np.cumsum(rng.standard_normal(n)) + 50
        got = F.valley(lrs, walk, beta=0.0, diverge=math.inf, skip_begin=0, skip_end=0)
        assert got.lr == fastai_valley(list(lrs), list(walk))


def test_minimum_is_a_tenth_of_the_lowest_point() -> None:
    lrs, smoothed = histories()[0]
    s = F.minimum(lrs, smoothed, beta=0.0, diverge=math.inf)
    window = smoothed[10:-5]
    assert s.lr == lrs[10 + int(np.argmin(window))] / 10
    assert s.index == 10 + int(np.argmin(window))


# ---------------------------------------------------------------------------
# default: near the knee; honest about bad curves
# ---------------------------------------------------------------------------


def test_default_lands_within_3x_of_the_knee() -> None:
    lrs = F.ramp(1e-7, 10.0, 100)
    hits = 0
    for seed in range(20):
        knee = 10 ** np.random.default_rng(seed).uniform(-5, -1.5)
        s = F.default(lrs, knee_curve(seed, knee, noise=0.05))
        hits += abs(math.log10(s.lr / knee)) <= LOG3
        assert s.interval[0] <= s.lr <= s.interval[1]
    assert hits >= 19


def test_default_is_confident_on_a_clear_curve() -> None:
    s = F.default(F.ramp(1e-7, 10.0, 100), knee_curve(1, 1e-3, noise=0.02))
    assert s.confidence >= 0.5, s.reason
    assert 1e-3 / 3 <= s.lr <= 3e-3
    assert s.interval[0] < s.lr < s.interval[1] or s.interval[0] <= s.lr <= s.interval[1]


@pytest.mark.parametrize("method", sorted(F.METHODS))
@pytest.mark.parametrize("kind", ["flat", "noise", "slight"])
def test_bad_curves_get_low_confidence_and_a_reason(method: str, kind: str) -> None:
    lrs = F.ramp(1e-7, 10.0, 100)
    rng = np.random.default_rng(3)
    if kind == "flat":
        losses = np.full(100, 2.3)
    elif kind == "noise":
        losses = 2.3 * (1 + 0.05 * rng.standard_normal(100))
    else:  # a descent of 1 %, inside 5 % noise
        losses = np.linspace(2.3, 2.277, 100) * (1 + 0.05 * rng.standard_normal(100))
    s = F.suggest(lrs, losses, method)
    assert s.confidence <= 0.1, (s.confidence, s.reason)
    assert s.reason.startswith("no clear descent"), s.reason
    assert s.method == method


def test_a_pure_noise_curve_is_never_confident() -> None:
    lrs = F.ramp(1e-7, 10.0, 100)
    for seed in range(10):
        losses = 1.0 + 0.1 * np.random.default_rng(seed).standard_normal(100)
        assert F.default(lrs, losses).confidence < 0.2


def test_a_loss_still_falling_at_max_lr_is_flagged() -> None:
    lrs = F.ramp(1e-7, 1e-2, 100)
    losses = 2.0 - np.linspace(0.0, 1.5, 100) ** 2  # falls ever faster up to the end
    s = F.minimum(lrs, losses, beta=0.0, skip_end=0)
    assert s.confidence <= 0.3 and "raise max_lr" in s.reason


def test_lightnings_steepest_is_flagged_when_it_picks_the_flat_start() -> None:
    lrs = F.ramp(1e-7, 10.0, 100)
    s = F.steepest(lrs, knee_curve(0, 1e-3))
    assert s.lr < 1e-5  # the derivative against lr favours the start of the sweep
    assert s.confidence <= 0.2 and "before the loss starts to fall" in s.reason


def test_too_short_a_sweep() -> None:
    lrs = F.ramp(1e-3, 1.0, 20)
    losses = np.r_[[1.0, 0.9, 0.8], np.full(17, np.nan)]
    s = F.default(lrs, losses)
    assert math.isnan(s.lr) and s.confidence == 0.0 and "too few points" in s.reason


def test_suggestions_are_deterministic() -> None:
    lrs, losses = F.ramp(1e-7, 10.0, 100), knee_curve(4, 1e-4)
    assert F.default(lrs, losses) == F.default(lrs, losses)


@pytest.mark.parametrize(
    ("lrs", "losses", "method", "message"),
    [
        ([1e-3, 1e-2], [1.0], "default", "same length, got shapes"),
        ([1e-2, 1e-3], [1.0, 1.0], "default", "lrs must be strictly increasing"),
        ([0.0, 1e-3], [1.0, 1.0], "default", "lrs must be finite and > 0"),
        ([1e-3, 1e-2], [1.0, 1.0], "best", r"method must be one of \['default', 'minimum'"),
    ],
)
def test_errors(lrs: list, losses: list, method: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        F.suggest(lrs, losses, method)
