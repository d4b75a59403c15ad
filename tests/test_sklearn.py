"""lrkit.sklearn against scikit-learn itself: its lr rules, its estimators, its MLP's adaptive.

Every comparison runs sklearn's own code. sklearn's per-sample lrs are read
from its own coefficients: with one-hot samples (``X = I``), no penalty, no
intercept and a target the prediction 0 misses by a known gradient ``g``,
sample ``t`` touches weight ``t`` alone, once, from 0, so
``coef_[t] = -g * eta(t)``: sklearn's sequence of lrs, bit for bit.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, SGDClassifier, SGDRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.neural_network._stochastic_optimizers import SGDOptimizer
from typer.testing import CliRunner

import lrkit
import lrkit.sklearn
from lrkit.bench.grid import GridError, expand_grid, make_grid
from lrkit.bench.run import RunConfig, eval_steps, execute
from lrkit.bench.tasks import TASKS, get_task
from lrkit.cli import app
from lrkit.controllers import SklearnAdaptive, SklearnDetector

ROOT = Path(__file__).resolve().parents[1]


def iris() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    order = np.random.default_rng(0).permutation(len(y))  # classes mixed, fixed order
    return x[order], y[order]


def diabetes() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_diabetes(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x[:200], (y[:200] - y.mean()) / y.std()


# --------------------------------------------------------------------------
# 1. invscaling and optimal are sklearn's numbers
# --------------------------------------------------------------------------

ONE_HOT = 400


def sklearn_lrs(estimator, n: int = ONE_HOT, *, classifier: bool = False) -> np.ndarray:
    """sklearn's lr at samples t = 1..n, read from its coefficients (see the module doc)."""
    x = np.eye(n)
    if classifier:  # every sample of the positive class; p = 0 misses it by -g
        estimator.partial_fit(x, np.ones(n), classes=np.array([0.0, 1.0]))
    else:
        estimator.partial_fit(x, np.ones(n))
    return np.asarray(estimator.coef_).ravel()


@pytest.mark.parametrize(
    ("eta0", "power_t"), [(0.1, 0.5), (0.01, 0.25), (1.0, 1.0), (0.3, 0.0), (2.5, 1.7)]
)
def test_invscaling_equals_sklearns_rule(eta0: float, power_t: float) -> None:
    est = SGDRegressor(
        learning_rate="invscaling",
        eta0=eta0,
        power_t=power_t,
        penalty=None,
        fit_intercept=False,
        shuffle=False,
    )
    theirs = sklearn_lrs(est)  # squared error: -g = y - p = 1
    ours = lrkit.sklearn.invscaling(eta0, power_t).values(ONE_HOT)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    # With B samples a step, step i is sklearn's sample i * B + 1.
    batched = lrkit.sklearn.invscaling(eta0, power_t, batch_size=8).values(ONE_HOT // 8)
    np.testing.assert_allclose(batched, theirs[::8], rtol=1e-12, atol=0)
    # lrkit's step i is sklearn's t = i + 1: the first lr is eta0 itself.
    assert ours[0] == theirs[0] == eta0


@pytest.mark.parametrize(
    ("kind", "loss", "factor"),
    [
        ("regressor", "squared_error", 1.0),
        ("regressor", "epsilon_insensitive", 1.0),
        ("classifier", "hinge", 1.0),
        ("classifier", "perceptron", 1.0),
        ("classifier", "log_loss", 0.5),
        ("classifier", "modified_huber", 2.0),
        ("classifier", "squared_hinge", 2.0),
    ],
)
@pytest.mark.parametrize("alpha", [1e-4, 0.01, 0.37])
def test_optimal_equals_sklearns_rule_and_t0_for_every_loss(
    kind: str, loss: str, factor: float, alpha: float
) -> None:
    cls = SGDRegressor if kind == "regressor" else SGDClassifier
    est = cls(
        loss=loss,
        learning_rate="optimal",
        alpha=alpha,
        penalty=None,
        fit_intercept=False,
        shuffle=False,
    )
    theirs = sklearn_lrs(est, classifier=kind == "classifier") / factor
    ours = lrkit.sklearn.optimal(alpha).values(ONE_HOT)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    # sklearn's t0: the first lr is typw = alpha ** -0.25, whatever the loss.
    assert ours[0] == pytest.approx(alpha**-0.25, rel=1e-12)
    assert lrkit.sklearn.sklearn_t0(alpha) == pytest.approx(alpha**-0.75, rel=1e-12)
    batched = lrkit.sklearn.optimal(alpha, batch_size=5).values(ONE_HOT // 5)
    np.testing.assert_allclose(batched, theirs[::5], rtol=1e-12, atol=0)


def test_an_explicit_t0_is_used_as_given() -> None:
    s = lrkit.sklearn.optimal(alpha=0.01, t0=50.0)
    assert s(0) == 1.0 / (0.01 * 50.0)
    assert s(10) == pytest.approx(1.0 / (0.01 * 60.0), rel=1e-15)
    assert s != lrkit.sklearn.optimal(alpha=0.01)


def test_the_families_are_spec_names_and_lrkit_sklearn_holds_the_same_classes() -> None:
    assert lrkit.sklearn.invscaling is lrkit.schedules.InvScaling
    assert lrkit.sklearn.optimal is lrkit.schedules.Optimal
    s = lrkit.parse("invscaling(eta0=0.01, power_t=0.25)")
    assert s == lrkit.sklearn.invscaling(0.01, 0.25)
    assert str(s) == "invscaling(eta0=0.01, power_t=0.25)"
    # compare fills eta0 with the grid's lr, as it fills one_cycle's max_lr
    assert lrkit.parse("invscaling(power_t=0.5)", lr=0.2, steps=10) == lrkit.sklearn.invscaling(
        0.2, 0.5
    )
    o = lrkit.parse("optimal(alpha=1e-4, batch_size=32)")
    assert o.to_dict() == {"type": "optimal", "alpha": 1e-4, "t0": None, "batch_size": 32}
    assert lrkit.from_dict(o.to_dict()) == o
    assert lrkit.parse(str(0.5 * o)) == 0.5 * o


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: lrkit.sklearn.invscaling(-0.1, 0.5),
            "invscaling: eta0 must be a finite number >= 0",
        ),
        (
            lambda: lrkit.sklearn.invscaling(0.1, -0.5),
            r"invscaling: power_t must be a number in \[0",
        ),
        (lambda: lrkit.sklearn.invscaling(0.1, 0.5, batch_size=0), "batch_size must be an integer"),
        (lambda: lrkit.sklearn.optimal(0.0), "optimal: alpha must be a finite number > 0"),
        (lambda: lrkit.sklearn.optimal(1e-4, t0=0.0), "optimal: t0 must be a finite number > 0"),
        (lambda: lrkit.sklearn.optimal(math.nan), "optimal: alpha must be a finite number > 0"),
    ],
)
def test_bad_arguments_are_named(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@given(
    st.one_of(
        st.builds(
            lrkit.sklearn.invscaling,
            eta0=st.floats(1e-6, 10.0),
            power_t=st.floats(0.0, 2.0),
            batch_size=st.integers(1, 512),
        ),
        st.builds(
            lrkit.sklearn.optimal,
            alpha=st.floats(1e-7, 10.0),
            t0=st.none() | st.floats(1e-2, 1e6),
            batch_size=st.integers(1, 512),
        ),
    ),
    st.lists(st.integers(0, 10**9), min_size=1, max_size=30),
)
def test_sklearn_families_never_rise_and_stay_positive(s, steps: list[int]) -> None:
    t = np.array(sorted(steps), dtype=np.int64)
    values = s.values(t)
    assert np.all(np.isfinite(values)) and np.all(values > 0)
    assert np.all(np.diff(values) <= 0)  # a decay: later steps never get a larger lr
    np.testing.assert_allclose(values, [s(int(k)) for k in t], rtol=1e-12, atol=0)
    assert lrkit.parse(str(s)) == s and lrkit.from_dict(s.to_dict()) == s


# --------------------------------------------------------------------------
# 2. fit() makes the updates sklearn's own rules make
# --------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["invscaling", "optimal"])
def test_per_sample_fit_is_sklearns_own_rule(rule: str) -> None:
    # shuffle=False and one sample a step: the same updates in the same order, each at
    # the lr sklearn's own rule gives that sample (t counts on across the epochs).
    x, y = iris()
    common = {"loss": "hinge", "alpha": 1e-3, "shuffle": False, "random_state": 0}
    settings_ = {"eta0": 0.05, "power_t": 0.5} if rule == "invscaling" else {}
    theirs = SGDClassifier(learning_rate=rule, max_iter=3, tol=None, **settings_, **common)
    theirs.fit(x, y)
    schedule = (
        lrkit.sklearn.invscaling(0.05, 0.5)
        if rule == "invscaling"
        else lrkit.sklearn.optimal(alpha=1e-3)
    )
    ours = SGDClassifier(learning_rate="constant", **common)
    result = lrkit.sklearn.fit(ours, x, y, schedule, epochs=3, batch_size=1)
    assert result.steps == 3 * len(y) and result.steps_per_epoch == len(y)
    np.testing.assert_allclose(result.lrs, schedule.values(3 * len(y)), rtol=0, atol=0)
    # sklearn keeps a scale factor beside the weights for its L2 shrinking: the same
    # arithmetic, rounded at other places, so equal to ~1e-13, not bit for bit.
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-9, atol=1e-12)
    # and the rule matters: a constant lr gives other weights
    other = SGDClassifier(learning_rate="constant", **common)
    lrkit.sklearn.fit(other, x, y, "constant(lr=0.05)", epochs=3, batch_size=1)
    assert not np.allclose(other.coef_, theirs.coef_, rtol=1e-3)


def test_per_sample_fit_of_a_regressor_is_sklearns_invscaling() -> None:
    x, y = diabetes()
    common = {"alpha": 1e-3, "shuffle": False, "random_state": 0}
    theirs = SGDRegressor(
        learning_rate="invscaling", eta0=0.02, power_t=0.25, max_iter=2, tol=None, **common
    )
    theirs.fit(x, y)
    ours = SGDRegressor(learning_rate="constant", **common)
    lrkit.sklearn.fit(ours, x, y, "invscaling(eta0=0.02, power_t=0.25)", epochs=2, batch_size=1)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-9, atol=1e-12)


def mlp(**kw) -> MLPClassifier:
    base = {
        "hidden_layer_sizes": (8,),
        "solver": "sgd",
        "momentum": 0.9,
        "batch_size": 30,
        "shuffle": False,
        "random_state": 0,
        "learning_rate": "constant",
    }
    return MLPClassifier(**{**base, **kw})


def partial_fits(est, x, y, epochs: int, classes=None) -> list[float]:
    """sklearn alone: ``epochs`` partial_fit calls; the optimizer's lr before each."""
    lrs = []
    for _ in range(epochs):
        opt = getattr(est, "_optimizer", None)
        lrs.append(est.learning_rate_init if opt is None else opt.learning_rate)
        est.partial_fit(x, y, classes=np.unique(y) if classes is None else classes)
    return lrs


def test_mlp_runs_at_the_lr_set_as_a_run_with_that_lr_from_the_start() -> None:
    # learning_rate_init is read once, when the first partial_fit builds the optimizer:
    # fit() sets the lr that the estimator really uses, whatever it was built with.
    x, y = iris()
    ours = mlp(learning_rate_init=0.5)
    lrkit.sklearn.fit(ours, x, y, lrkit.constant(0.03), epochs=4)
    fixed = mlp(learning_rate_init=0.03)
    partial_fits(fixed, x, y, 4)
    for a, b in zip(ours.coefs_ + ours.intercepts_, fixed.coefs_ + fixed.intercepts_, strict=True):
        np.testing.assert_array_equal(a, b)
    # Adam reads its base lr (learning_rate_init) at every update: set there too.
    ours_adam = mlp(solver="adam", learning_rate_init=0.5)
    lrkit.sklearn.fit(ours_adam, x, y, lrkit.constant(0.01), epochs=3, batch_size=50)
    fixed_adam = mlp(solver="adam", learning_rate_init=0.01)
    for _ in range(3):
        for start in range(0, len(y), 50):
            fixed_adam.partial_fit(x[start : start + 50], y[start : start + 50], classes=[0, 1, 2])
    for a, b in zip(ours_adam.coefs_, fixed_adam.coefs_, strict=True):
        np.testing.assert_array_equal(a, b)


def test_mlp_lr_changed_mid_run_is_the_one_used_as_sklearns_invscaling() -> None:
    # sklearn's MLP invscaling sets lr = init / (t_ + 1) ** power_t after each epoch
    # (t_ counts samples): one lrkit step an epoch is invscaling(batch_size=n). The
    # lr fit() writes into the optimizer after it exists makes the very same weights.
    x, y = iris()
    theirs = mlp(learning_rate="invscaling", learning_rate_init=0.2, power_t=0.5)
    their_lrs = partial_fits(theirs, x, y, 5)
    ours = mlp(learning_rate_init=0.2)
    schedule = lrkit.sklearn.invscaling(0.2, 0.5, batch_size=len(y))
    result = lrkit.sklearn.fit(ours, x, y, schedule, epochs=5)
    np.testing.assert_allclose(result.lrs, their_lrs, rtol=1e-15, atol=0)
    assert len(set(result.lrs)) == 5
    for a, b in zip(
        ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # sklearn's own running loss per epoch is what fit() reports for MLPs
    np.testing.assert_allclose(result.train_loss, theirs.loss_curve_, rtol=1e-12)


# --------------------------------------------------------------------------
# 3. adaptive: sklearn MLP's learning_rate="adaptive" as a Plateau
# --------------------------------------------------------------------------


def sklearn_adaptive_lrs(losses, lr: float, tol: float, n_iter_no_change: int) -> list[float]:
    """sklearn's own decisions on a sequence of epoch losses: the lr of each epoch.

    Its MLP's bookkeeping (``_update_no_improvement_count``) and its optimizer's
    cut (``SGDOptimizer.trigger_stopping``), called as ``_fit_stochastic`` calls them.
    """
    est = MLPClassifier(tol=tol, n_iter_no_change=n_iter_no_change)
    est.loss_curve_, est.best_loss_, est._no_improvement_count = [], np.inf, 0
    opt = SGDOptimizer([], learning_rate_init=lr, lr_schedule="adaptive")
    out = []
    for loss in losses:
        out.append(opt.learning_rate)
        est.loss_curve_.append(loss)
        est._update_no_improvement_count(False, None, None, None)
        if est._no_improvement_count > est.n_iter_no_change:
            if opt.trigger_stopping("", False):
                break  # sklearn stops training: a cut due at an lr <= 1e-6
            est._no_improvement_count = 0
    return out


def controller_lrs(controller, losses) -> list[float]:
    out = []
    for epoch, loss in enumerate(losses):
        out.append(controller.lr(epoch))
        controller.observe(loss, epoch + 1)
    return out


@st.composite
def epoch_losses(draw) -> tuple[list[float], float]:
    """Epoch losses that rise, stall, fall by less than tol, by exactly tol, or by more."""
    tol = draw(st.sampled_from([0.0, 1e-4, 1e-3, 0.05]))
    loss = draw(st.floats(0.5, 5.0))
    losses = [loss]
    for _ in range(draw(st.integers(1, 60))):
        move = draw(st.sampled_from(["up", "same", "small", "exact", "big"]))
        lowest = min(losses)
        if move == "up":
            loss = lowest + draw(st.floats(0.0, 1.0))
        elif move == "same":
            loss = lowest
        elif move == "small":
            loss = lowest - tol * draw(st.floats(0.0, 1.0, exclude_max=True))
        elif move == "exact":
            loss = lowest - tol
        else:
            loss = lowest - tol - draw(st.floats(1e-6, 0.1))
        losses.append(loss)
    return losses, tol


@settings(max_examples=300, deadline=None)
@given(epoch_losses(), st.integers(1, 6), st.floats(1e-3, 1.0))
def test_adaptive_cuts_where_sklearn_cuts(case, n: int, lr: float) -> None:
    losses, tol = case
    theirs = sklearn_adaptive_lrs(losses, lr, tol, n)
    ours = controller_lrs(lrkit.sklearn.adaptive(lr, tol=tol, n_iter_no_change=n), losses)
    np.testing.assert_allclose(ours[: len(theirs)], theirs, rtol=1e-12, atol=0)
    # sklearn stops training when a cut is due at an lr <= 1e-6; the controller holds it
    assert all(v == ours[len(theirs) - 1] for v in ours[len(theirs) :])


@given(epoch_losses(), st.integers(1, 6))
def test_early_stopping_mirrors_the_loss_rule_on_scores(case, n: int) -> None:
    losses, tol = case
    on_loss = lrkit.sklearn.adaptive(0.1, tol=tol, n_iter_no_change=n)
    on_score = lrkit.sklearn.adaptive(0.1, tol=tol, n_iter_no_change=n, early_stopping=True)
    assert on_score.detector.mode == "max"
    assert controller_lrs(on_loss, losses) == controller_lrs(on_score, [-x for x in losses])


def test_torchs_plateau_rule_is_not_sklearns_on_gains_smaller_than_tol() -> None:
    # Why adaptive() keeps sklearn's bookkeeping: on a loss falling by tol / 2 an epoch
    # every epoch is bad for both, but sklearn takes each as its new best and cuts after
    # n + 1 epochs, while torch's rule keeps the best of its last improvement by more
    # than tol, which the fall passes every 3 epochs: it never cuts.
    tol, n = 1e-3, 3
    losses = [1.0 - k * tol / 2 for k in range(12)]
    theirs = sklearn_adaptive_lrs(losses, 0.1, tol, n)
    assert theirs[: n + 2] == [0.1] * (n + 2) and theirs[n + 2] == pytest.approx(0.02)
    ours = controller_lrs(lrkit.sklearn.adaptive(0.1, tol=tol, n_iter_no_change=n), losses)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    torch_rule = lrkit.Plateau(
        lrkit.constant(0.1), factor=0.2, patience=n, threshold=tol, threshold_mode="abs"
    )
    assert controller_lrs(torch_rule, losses) == [0.1] * 12


def test_adaptive_is_a_plateau_with_a_spec_and_a_state() -> None:
    p = lrkit.sklearn.adaptive(0.1, tol=1e-3, n_iter_no_change=4, early_stopping=True)
    assert isinstance(p, lrkit.Plateau) and isinstance(p, SklearnAdaptive)
    assert str(p) == (
        "sklearn_adaptive(constant(lr=0.1), tol=0.001, n_iter_no_change=4, early_stopping=True)"
    )
    assert lrkit.parse(str(p)) == p and lrkit.from_dict(p.to_dict()) == p
    for score in [0.5, 0.5, 0.5005]:  # the last improves by less than tol: bad, but best
        p.observe(score, 1)
    state = json.loads(json.dumps(p.state_dict()))
    back = SklearnAdaptive.from_state_dict(state)
    assert back == p and isinstance(back.detector, SklearnDetector)
    assert back.detector.num_bad_epochs == p.detector.num_bad_epochs == 2
    assert back.detector.best == 0.5005
    # sklearn cuts only above 1e-6: a cut due from 1e-6 down is skipped
    low = lrkit.sklearn.adaptive(1e-6, n_iter_no_change=1)
    assert not any(low.observe(1.0, step) for step in range(6))
    with pytest.raises(ValueError, match="n_iter_no_change must be an integer >= 1"):
        lrkit.sklearn.adaptive(0.1, n_iter_no_change=0)
    with pytest.raises(ValueError, match="adaptive: lr must be a finite number > 0"):
        lrkit.sklearn.adaptive(0.0)


def test_adaptive_on_a_real_mlp_is_sklearns_adaptive() -> None:
    # sklearn's MLPClassifier(learning_rate="adaptive") epoch by epoch, and the same
    # network driven by lrkit.sklearn.fit with adaptive(): the same lr every epoch
    # (cuts included) and the same weights.
    x, y = iris()
    kw = {"learning_rate_init": 0.3, "tol": 0.02, "n_iter_no_change": 2}
    theirs = mlp(learning_rate="adaptive", **kw)
    their_lrs = partial_fits(theirs, x, y, 20)
    ours = mlp(learning_rate_init=0.3)
    schedule = lrkit.sklearn.adaptive(0.3, tol=0.02, n_iter_no_change=2)
    result = lrkit.sklearn.fit(ours, x, y, schedule, epochs=20)
    assert sum(b < a for a, b in itertools.pairwise(their_lrs)) >= 3  # sklearn cut
    np.testing.assert_allclose(result.lrs, their_lrs, rtol=1e-12, atol=0)
    np.testing.assert_allclose(result.train_loss, theirs.loss_curve_, rtol=1e-9)
    for a, b in zip(ours.coefs_, theirs.coefs_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # Validation data to watch changes nothing: sklearn's rule watches the training loss.
    watched = mlp(learning_rate_init=0.3)
    again = lrkit.sklearn.adaptive(0.3, tol=0.02, n_iter_no_change=2)
    seen = lrkit.sklearn.fit(watched, x, y, again, epochs=20, X_val=x[:50], y_val=y[:50])
    np.testing.assert_allclose(seen.lrs, their_lrs, rtol=1e-12, atol=0)
    assert seen.val_loss is not None and len(seen.val_loss) == 20


# --------------------------------------------------------------------------
# 4. fit(): steps, controllers, errors
# --------------------------------------------------------------------------


def test_steps_per_epoch_and_a_filled_spec() -> None:
    x, y = iris()
    est = SGDClassifier(learning_rate="constant", loss="log_loss", random_state=0)
    result = lrkit.sklearn.fit(est, x, y, "cosine(lr=0.1)", epochs=3, batch_size=40, seed=1)
    assert result.steps_per_epoch == 4 and result.steps == 12  # 150 = 3 x 40 + 30
    np.testing.assert_allclose(result.lrs, lrkit.cosine(0.1, steps=12).values(12), atol=0)
    assert len(result.train_loss) == 3 and result.val_loss is None and result.val_score is None
    assert "steps=12" in repr(result) and "SGDClassifier" in repr(result)


def test_one_step_an_epoch_is_one_partial_fit_over_the_data() -> None:
    x, y = iris()
    ours = SGDClassifier(learning_rate="constant", shuffle=False, random_state=0)
    result = lrkit.sklearn.fit(ours, x, y, "exponential(lr=0.1, gamma=0.5)", epochs=3)
    assert result.lrs == [0.1, 0.05, 0.025]
    theirs = SGDClassifier(learning_rate="constant", shuffle=False, random_state=0)
    for lr in (0.1, 0.05, 0.025):
        theirs.set_params(eta0=lr)
        theirs.partial_fit(x, y, classes=[0, 1, 2])
    np.testing.assert_array_equal(ours.coef_, theirs.coef_)


def test_the_first_batch_may_miss_classes() -> None:
    x, y = iris()
    order = np.argsort(y, kind="stable")  # the first batches hold class 0 only
    est = SGDClassifier(learning_rate="constant", random_state=0)
    lrkit.sklearn.fit(est, x[order], y[order], lrkit.constant(0.01), epochs=1, batch_size=10)
    assert est.classes_.tolist() == [0, 1, 2]


def test_controllers_observe_the_validation_score_or_the_loss() -> None:
    x, y = iris()
    xt, yt, xv, yv = x[:100], y[:100], x[100:], y[100:]
    watch = lrkit.Plateau(lrkit.constant(0.01), mode="max", threshold=0.0, threshold_mode="abs")
    est = SGDClassifier(learning_rate="constant", loss="log_loss", random_state=0)
    result = lrkit.sklearn.fit(est, xt, yt, watch, epochs=5, X_val=xv, y_val=yv)
    assert watch.detector.best == max(result.val_score)  # with threshold 0: the best score
    assert len(result.val_loss) == 5 and all(v > 0 for v in result.val_loss)
    low = lrkit.Plateau(lrkit.constant(0.01), threshold=0.0, threshold_mode="abs", patience=100)
    result = lrkit.sklearn.fit(
        SGDClassifier(learning_rate="constant", loss="log_loss", random_state=0),
        xt,
        yt,
        low,
        epochs=5,
    )
    assert low.detector.best == min(result.train_loss)


def test_a_step_at_lr_zero_changes_nothing() -> None:
    x, y = iris()
    est = SGDClassifier(learning_rate="constant", shuffle=False, random_state=0)
    result = lrkit.sklearn.fit(est, x, y, "linear(start_lr=0.0, end_lr=0.1, steps=2)", epochs=1)
    assert result.lrs == [0.0]
    assert np.all(np.abs(est.coef_) < 1e-300)  # sklearn needs eta0 > 0: the tiniest float


def test_a_multilabel_mlp_and_a_fitted_classifier_missing_a_label() -> None:
    x, y = iris()
    labels = np.c_[y == 0, y == 1, x[:, 0] > 0].astype(int)  # one 0/1 column per label
    multi = mlp()
    lrkit.sklearn.fit(multi, x, labels, "constant(lr=0.05)", epochs=2)
    assert list(multi.classes_) == [0, 1, 2] and multi.predict(x).shape == (150, 3)
    # Fitted on all three classes, then trained on two: partial_fit keeps its classes.
    for est in (SGDClassifier(learning_rate="constant", random_state=0), mlp()):
        est.fit(x, y)
        lrkit.sklearn.fit(est, x[y < 2], y[y < 2], "constant(lr=0.01)", epochs=1)
        assert list(est.classes_) == [0, 1, 2]


def test_a_dataframe_keeps_its_column_names() -> None:
    import pandas as pd

    x, y = iris()
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    est = SGDClassifier(learning_rate="constant", shuffle=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "X has feature names, but ... fitted without"
        lrkit.sklearn.fit(
            est, frame, pd.Series(y), "cosine(lr=0.1)", epochs=2, batch_size=40, seed=0,
            X_val=frame[:30], y_val=y[:30],
        )  # fmt: skip
        est.predict(frame)
    assert list(est.feature_names_in_) == ["a", "b", "c", "d"]
    plain = SGDClassifier(learning_rate="constant", shuffle=False, random_state=0)
    lrkit.sklearn.fit(plain, x, y, "cosine(lr=0.1)", epochs=2, batch_size=40, seed=0)
    np.testing.assert_array_equal(est.coef_, plain.coef_)  # the same rows in the same order


def test_fit_gives_the_estimators_hyperparameters_back() -> None:
    from sklearn.base import clone

    x, y = iris()
    for est, name in ((SGDClassifier(learning_rate="constant", eta0=0.1), "eta0"),
                      (mlp(learning_rate_init=0.1), "learning_rate_init")):  # fmt: skip
        lrkit.sklearn.fit(est, x, y, "cosine(lr=0.5)", epochs=3)
        assert getattr(est, name) == 0.1 and getattr(clone(est), name) == 0.1


def test_numpy_integers_are_integers_and_bad_shapes_are_named() -> None:
    x, y = iris()
    est = SGDClassifier(learning_rate="constant", random_state=0)
    result = lrkit.sklearn.fit(
        est, x, y, "cosine(lr=0.1)", epochs=np.int64(2), batch_size=np.int32(50)
    )
    assert result.steps == 6
    with pytest.raises(
        ValueError, match=r"X_val and y_val must have the same number .* got 6 and 5"
    ):
        lrkit.sklearn.fit(est, x, y, "constant(lr=0.1)", epochs=1, X_val=x[:6], y_val=y[:5])
    with pytest.raises(ValueError, match=r"y must hold one target .* got shape \(\)"):
        lrkit.sklearn.fit(est, x, 5, "constant(lr=0.1)", epochs=1)


@pytest.mark.parametrize(
    ("estimator", "error", "message"),
    [
        (LogisticRegression(), TypeError, "estimator must be one of SGDClassifier"),
        (SGDClassifier(), ValueError, r"learning_rate='optimal'\) changes its own lr.*"
         r"learning_rate='constant'.*lrkit.sklearn.optimal\(0.0001, batch_size=B\) "
         r"with fit\(..., batch_size=B\)"),
        (SGDRegressor(learning_rate="invscaling"), ValueError,
         r"lrkit.sklearn.invscaling\(0.01, 0.25, batch_size=B\) with fit\(..., batch_size=B\)"),
        # the SGD estimators cut when the count reaches n_iter_no_change: one less here
        (SGDRegressor(learning_rate="adaptive"), ValueError,
         r"lrkit.sklearn.adaptive\(0.01, tol=0.001, n_iter_no_change=4\) with fit\(..., "
         r"batch_size=None\)"),
        (MLPClassifier(solver="sgd", learning_rate="adaptive"), ValueError,
         r"learning_rate='constant'.*lrkit.sklearn.adaptive\(0.001, tol=0.0001, "
         r"n_iter_no_change=10\) with fit\(..., batch_size=None\)"),
        (MLPRegressor(solver="sgd", learning_rate="invscaling"), ValueError,
         r"lrkit.sklearn.invscaling\(0.001, 0.5, batch_size=n_samples\) with fit\(..., "
         r"batch_size=None\)"),
        (MLPClassifier(solver="lbfgs"), ValueError, "solver='lbfgs'.*no partial_fit"),
        (SGDClassifier(learning_rate="constant", early_stopping=True), ValueError,
         "pass X_val and y_val"),
    ],
)  # fmt: skip
def test_estimators_that_cannot_follow_a_schedule_are_refused(estimator, error, message) -> None:
    x, y = iris()
    with pytest.raises(error, match=message):
        lrkit.sklearn.fit(estimator, x, y, lrkit.constant(0.1), epochs=1)


def test_adam_mlps_are_taken_whatever_their_learning_rate() -> None:
    x, y = iris()
    est = MLPRegressor(solver="adam", learning_rate="adaptive", hidden_layer_sizes=(4,))
    result = lrkit.sklearn.fit(est, x, y.astype(float), "constant(lr=0.001)", epochs=2)
    assert result.steps == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"epochs": 1.5}, "epochs must be an integer >= 1"),
        ({"epochs": 1, "batch_size": 0}, r"batch_size must be None or an integer in \[1, 150\]"),
        ({"epochs": 1, "batch_size": 151}, "batch_size must be at most the 150 training samples"),
        ({"epochs": 1, "X_val": np.zeros((2, 4))}, "give both X_val and y_val"),
        ({"epochs": 1, "seed": -1}, "seed must be None or an integer >= 0"),
    ],
)
def test_bad_fit_arguments_are_named(kwargs, message: str) -> None:
    x, y = iris()
    est = SGDClassifier(learning_rate="constant")
    with pytest.raises(ValueError, match=message):
        lrkit.sklearn.fit(est, x, y, lrkit.constant(0.1), **kwargs)


def test_bad_schedules_are_refused() -> None:
    x, y = iris()
    est = SGDClassifier(learning_rate="constant")
    with pytest.raises(ValueError, match="guard"):
        lrkit.sklearn.fit(est, x, y, "guard(constant(lr=0.1))", epochs=1)
    with pytest.raises(ValueError, match=r"swa\(...\) averages a torch model's weights"):
        lrkit.sklearn.fit(est, x, y, "plateau(swa(cosine(lr=0.1), start=2))", epochs=5)
    with pytest.raises(TypeError, match="schedule must be an lrkit schedule"):
        lrkit.sklearn.fit(est, x, y, 0.1, epochs=1)
    with pytest.raises(ValueError, match="cosine"):
        lrkit.sklearn.fit(est, x, y, "cosine(steps=3)", epochs=1)  # no lr


def test_import_is_cheap() -> None:
    import subprocess
    import sys

    code = "import sys, lrkit.sklearn; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------
# 5. the built-in task digits_sgd
# --------------------------------------------------------------------------


def test_digits_sgd_is_a_builtin_task_that_takes_sgd_only() -> None:
    task = get_task("digits_sgd")
    assert "digits_sgd" in TASKS and task.builtin and task.optimizers == ("sgd",)
    assert task.builder is None  # no torch model
    with pytest.raises(ValueError, match=r"task 'digits_sgd' takes only the optimizer\(s\) sgd"):
        RunConfig("digits_sgd", "adam", "cosine()", lr=0.1)
    with pytest.raises(GridError, match=r"--optimizers: task 'digits_sgd' takes only"):
        make_grid(tasks=["digits_sgd"], optimizers=["sgd", "adamw"])
    assert make_grid(tasks=["digits_sgd"]).optimizers == ("sgd",)
    mixed = expand_grid(tasks=["digits_sgd", "quadratic"], schedules=["cosine()"], lrs=[0.1])
    pairs = {(c.task, c.optimizer) for c in mixed}
    assert {o for t, o in pairs if t == "digits_sgd"} == {"sgd"}
    assert {o for t, o in pairs if t == "quadratic"} == {"sgd", "momentum", "adam", "adamw"}


def test_a_run_follows_the_schedule_and_reports_at_eval_steps() -> None:
    config = RunConfig("digits_sgd", "sgd", "cosine()", lr=0.1, seed=0, budget=0.2)
    result = execute(config)
    assert result.status == "ok", result.reason
    steps = config.steps
    np.testing.assert_allclose(result.lr, lrkit.cosine(0.1, steps=steps).values(steps), atol=0)
    assert len(result.loss) == steps and result.loss[0] == pytest.approx(math.log(10))
    assert result.eval_steps == eval_steps(steps)
    assert result.final is not None and result.final < math.log(10)
    assert "val_acc" in result.scalars
    again = execute(config)
    assert again.final == result.final and again.loss == result.loss  # deterministic


def test_sklearns_rule_runs_on_the_task() -> None:
    spec = "optimal(alpha=0.0001, batch_size=32)"
    result = execute(RunConfig("digits_sgd", "sgd", spec, lr=0.1, budget=0.1))
    assert result.status in ("ok", "diverged"), result.reason
    steps = get_task("digits_sgd").budget(0.1)
    want = lrkit.sklearn.optimal(1e-4, batch_size=32).values(len(result.lr))
    np.testing.assert_allclose(result.lr, want, rtol=1e-15, atol=0)
    assert len(result.lr) <= steps


def test_guard_and_swa_runs_are_errors_that_say_why() -> None:
    for spec in ("guard(cosine())", "swa(cosine())"):
        result = execute(RunConfig("digits_sgd", "sgd", spec, lr=0.1, budget=0.1))
        assert result.status == "error"
        assert "task 'digits_sgd': " + spec[:4] in result.reason


def test_a_too_high_lr_shows_as_a_poor_metric_not_a_divergence() -> None:
    # A linear model on a convex loss, its weights bounded by the L2 shrinking: no lr
    # makes them overflow, so only NaN/inf would count as diverged.
    good = execute(RunConfig("digits_sgd", "sgd", "cosine()", lr=0.3, budget=0.2))
    high = execute(RunConfig("digits_sgd", "sgd", "cosine()", lr=1000.0, budget=0.2))
    assert good.status == high.status == "ok"
    assert high.final > 3 * good.final
    assert all(math.isfinite(v) for v in high.loss)


def test_cli_refuses_other_optimizers_and_lists_the_task(tmp_path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["compare", "--tasks", "digits_sgd", "--optimizers", "adam"])
    assert done.exit_code == 2
    assert "takes only the optimizer(s) sgd" in done.output
    listing = runner.invoke(app, ["tasks"])
    assert listing.exit_code == 0 and "digits_sgd" in listing.stdout
    done = runner.invoke(app, ["find-lr", "--task", "digits_sgd", "--optimizer", "adamw"])
    assert done.exit_code == 2 and "takes only" in done.output
    # without --optimizer, find-lr (and auto) take the task's own: sgd
    done = runner.invoke(
        app, ["find-lr", "--task", "digits_sgd", "--steps", "20", "--out", str(tmp_path)]
    )
    assert done.exit_code == 0, done.output
    assert "digits_sgd with sgd" in done.output and (tmp_path / "digits_sgd-sgd.json").is_file()


def test_find_lr_sweeps_the_sklearn_task_with_sgd(tmp_path) -> None:
    from lrkit.bench.find import suggest_lr

    result = suggest_lr("digits_sgd", "sgd", num_steps=40, min_lr=1e-4, max_lr=100.0)
    assert 1e-4 <= result.suggestion <= 100.0 and len(result.lrs) == len(result.losses)
    with pytest.raises(ValueError, match="takes only"):
        suggest_lr("digits_sgd", "adamw", num_steps=10)


def test_compare_without_optimizers_runs_sgd_and_says_so(tmp_path) -> None:
    results = lrkit.compare(
        ["digits_sgd"],
        schedules=["cosine()"],
        lrs=[0.1],
        seeds=1,
        budget=0.1,
        workers=0,
        out=tmp_path / "out",
    )
    assert [r.config["optimizer"] for r in results.runs] == ["sgd"]
    assert any("takes only sgd" in note for note in results.notes)


# --------------------------------------------------------------------------
# 6. docs/sklearn.md runs and prints what it shows
# --------------------------------------------------------------------------


def test_docs_page_runs_and_prints_what_it_shows(capsys) -> None:
    page = ROOT / "docs" / "sklearn.md"
    text = page.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {"__name__": "docs_example"}
    for code in blocks:
        exec(compile(code, str(page), "exec"), namespace)
    printed = capsys.readouterr().out.strip()
    outputs = re.findall(r"Output:\n\n```text\n(.*?)```", text, flags=re.S)
    shown = "\n".join(block.strip() for block in outputs)
    assert printed == shown
