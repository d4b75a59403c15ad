"""scikit-learn estimators on lrkit schedules, and sklearn's own lr rules as lrkit values.

Two directions:

- :func:`fit` drives ``SGDClassifier``, ``SGDRegressor``, ``MLPClassifier``
  and ``MLPRegressor`` through ``partial_fit`` with any lrkit schedule (a
  value or a spec string) or controller (``plateau(...)``, ``adaptive(...)``),
  setting the lr the estimator really uses before every step.
- sklearn's rules as lrkit values: :func:`invscaling` and :func:`optimal`
  (the SGD estimators' ``learning_rate="invscaling"`` / ``"optimal"``) are
  schedule families of the spec language (``lrkit.parse("optimal(alpha=1e-4)")``),
  equal to sklearn's own numbers; :func:`adaptive` is the MLPs'
  ``learning_rate="adaptive"`` as a :class:`lrkit.Plateau` that keeps
  sklearn's bookkeeping (``sklearn_adaptive(...)`` in specs).

Steps and sklearn's ``t``: sklearn's SGD counts samples from 1 (the first
sample is ``t = 1``, and ``t`` keeps counting across epochs). lrkit's step
``i`` is sklearn's ``t = i + 1``; with ``batch_size`` samples a step
(``invscaling(..., batch_size=B)``), step ``i`` takes the lr of the first
sample of its batch, ``t = i * B + 1``.

The schedules need nothing but numpy; scikit-learn is imported by
:func:`fit` only, so ``import lrkit.sklearn`` is cheap.

Examples:
    >>> import lrkit, lrkit.sklearn
    >>> lrkit.sklearn.invscaling is lrkit.schedules.InvScaling
    True
    >>> lrkit.parse("invscaling(eta0=0.1, power_t=0.5)")(3)
    0.05
    >>> lrkit.sklearn.adaptive(0.1, n_iter_no_change=5)
    sklearn_adaptive(constant(lr=0.1), n_iter_no_change=5)
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrkit.controllers import Adaptive, Guard, Plateau, SklearnAdaptive
from lrkit.schedules import InvScaling, Optimal, Schedule, constant, sklearn_t0

__all__ = [
    "ESTIMATORS",
    "FitResult",
    "adaptive",
    "check_estimator",
    "check_schedule",
    "fit",
    "invscaling",
    "loss_of",
    "lr_at",
    "optimal",
    "set_lr",
    "sklearn_t0",
]

#: sklearn's ``learning_rate="invscaling"`` (the same class as :class:`lrkit.schedules.InvScaling`).
invscaling = InvScaling
#: sklearn's ``learning_rate="optimal"`` (the same class as :class:`lrkit.schedules.Optimal`).
optimal = Optimal

#: The estimators :func:`fit` drives (and their subclasses).
ESTIMATORS = ("SGDClassifier", "SGDRegressor", "MLPClassifier", "MLPRegressor")

# sklearn requires eta0 > 0 and learning_rate_init > 0: a step at lr 0 runs at the
# smallest positive normal float, an update below the rounding of any weight.
_TINY = sys.float_info.min


# --------------------------------------------------------------------------
# adaptive: the MLPs' learning_rate="adaptive" as a Plateau setting
# --------------------------------------------------------------------------


def adaptive(
    lr: float, *, tol: float = 1e-4, n_iter_no_change: int = 10, early_stopping: bool = False
) -> SklearnAdaptive:
    """sklearn MLP's ``learning_rate="adaptive"``: ``sklearn_adaptive(constant(lr), ...)``.

    sklearn's MLPs (``solver="sgd"``) watch one value per epoch: the training
    loss (``loss_curve_``), or with ``early_stopping`` the validation score.
    An epoch is *bad* when it does not beat the best so far by ``tol``; the
    best is the lowest loss seen (an epoch that improves by less than
    ``tol`` is bad and still becomes the best); once more than
    ``n_iter_no_change`` bad epochs are counted the lr is divided by 5 and
    the count restarts.

    The result is a :class:`lrkit.Plateau` (``factor=0.2``,
    ``patience=n_iter_no_change``, ``threshold=tol``,
    ``threshold_mode="abs"``) that keeps sklearn's bookkeeping rather than
    torch's (:class:`lrkit.controllers.SklearnAdaptive`; torch's rules
    would keep the best of the last improvement by more than ``tol``, and cut
    later or never on a loss that falls slowly). Fed one observation per
    epoch (:func:`fit` does: the training loss, or the validation score with
    ``early_stopping``), it cuts at the epochs sklearn cuts at. One
    difference: a cut due at an lr of 1e-6 or less makes sklearn stop
    training; this keeps the lr and goes on.

    The SGD estimators' own ``learning_rate="adaptive"`` cuts when the count
    reaches ``n_iter_no_change`` (not past it) and watches its per-epoch
    objective: ``adaptive(lr, n_iter_no_change=n - 1, tol=tol)`` counts as it does.

    Args:
        lr: ``learning_rate_init``, the lr until the first cut (> 0).
        tol: the improvement that counts (sklearn's ``tol``, >= 0).
        n_iter_no_change: bad epochs tolerated before a cut (>= 1).
        early_stopping: watch a validation score (higher is better)
            instead of the training loss.

    Returns:
        A fresh controller; ``str()`` of it is its spec.

    Raises:
        ValueError: an argument out of range, naming it.

    Examples:
        >>> p = adaptive(0.1, n_iter_no_change=1)
        >>> [p.observe(loss, step) for step, loss in enumerate([1.0, 1.0, 1.0])]
        [False, False, True]
        >>> round(p.lr(3), 12), isinstance(p, Plateau)
        (0.02, True)
        >>> p
        sklearn_adaptive(constant(lr=0.1), n_iter_no_change=1)
    """
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not (0 < lr < math.inf):
        raise ValueError(f"adaptive: lr must be a finite number > 0, got {lr!r}")
    return SklearnAdaptive(
        constant(float(lr)),
        tol=tol,
        n_iter_no_change=n_iter_no_change,
        early_stopping=early_stopping,
    )


# --------------------------------------------------------------------------
# fit: any lrkit schedule through partial_fit
# --------------------------------------------------------------------------


@dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes:
        estimator: The estimator, trained in place.
        schedule: The schedule or controller that set the lrs (a controller
            in its state after the run).
        lrs: The lr of each step, in order (``epochs * steps_per_epoch``).
        steps_per_epoch: ``partial_fit`` calls an epoch.
        train_loss: One per epoch. MLPs: sklearn's own ``loss_`` averaged
            over the epoch's samples (the running loss during the epoch, its
            L2 penalty included, half the squared error for MLPRegressor:
            what sklearn's ``loss_curve_`` holds). SGD estimators: the loss
            of the predictions on the training data after the epoch.
        val_loss: One per epoch with ``X_val`` (else ``None``): the log loss
            of ``predict_proba`` (classifiers that have it), the hinge loss
            of ``decision_function`` (other classifiers) or the mean squared
            error (regressors).
        val_score: One per epoch with ``X_val`` (else ``None``):
            ``estimator.score`` (accuracy, or R²).
    """

    estimator: Any
    schedule: Any
    lrs: list[float] = field(default_factory=list)
    steps_per_epoch: int = 0
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] | None = None
    val_score: list[float] | None = None

    @property
    def steps(self) -> int:
        """The number of steps made (``partial_fit`` calls)."""
        return len(self.lrs)

    def __repr__(self) -> str:
        name = type(self.estimator).__name__
        last = f", train_loss={self.train_loss[-1]:.4g}" if self.train_loss else ""
        score = f", val_score={self.val_score[-1]:.4g}" if self.val_score else ""
        return f"FitResult({name}, schedule='{self.schedule}', steps={self.steps}{last}{score})"


def _estimator_kind(estimator: Any) -> tuple[str, bool]:
    """``("sgd" | "mlp", is_classifier)``, or a TypeError naming what is supported."""
    from sklearn.linear_model import SGDClassifier, SGDRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    for cls, kind, classifier in (
        (SGDClassifier, "sgd", True),
        (SGDRegressor, "sgd", False),
        (MLPClassifier, "mlp", True),
        (MLPRegressor, "mlp", False),
    ):
        if isinstance(estimator, cls):
            return kind, classifier
    raise TypeError(
        f"lrkit.sklearn.fit: estimator must be one of {', '.join(ESTIMATORS)} (their partial_fit "
        f"takes a learning rate lrkit can set), got {type(estimator).__name__}"
    )


def _own_rule_hint(kind: str, rule: str, params: dict[str, Any]) -> str | None:
    """sklearn's ``learning_rate=rule`` of this estimator as the lrkit value that equals it."""
    if kind == "sgd":
        eta0, power_t, patience = (
            params.get("eta0"),
            params.get("power_t"),
            params.get("n_iter_no_change"),
        )
        hints = {
            "invscaling": f"lrkit.sklearn.invscaling({eta0}, {power_t}, batch_size=B) "
            "with fit(..., batch_size=B)",
            "optimal": f"lrkit.sklearn.optimal({params.get('alpha')}, batch_size=B) "
            "with fit(..., batch_size=B)",
            # the SGD estimators cut when the count reaches n_iter_no_change, MLPs past it
            "adaptive": f"lrkit.sklearn.adaptive({eta0}, tol={params.get('tol')}, "
            f"n_iter_no_change={patience - 1 if isinstance(patience, int) else patience}) "
            "with fit(..., batch_size=None)",
        }
    else:  # an MLP with solver="sgd" changes its lr once an epoch
        lr, power_t = params.get("learning_rate_init"), params.get("power_t")
        hints = {
            "invscaling": f"lrkit.sklearn.invscaling({lr}, {power_t}, batch_size=n_samples) "
            "with fit(..., batch_size=None)",
            "adaptive": f"lrkit.sklearn.adaptive({lr}, tol={params.get('tol')}, "
            f"n_iter_no_change={params.get('n_iter_no_change')}) with fit(..., batch_size=None)",
        }
    return hints.get(rule)


def check_estimator(estimator: Any) -> tuple[str, bool]:
    """Check that ``estimator`` can follow an lrkit schedule; ``(kind, is_classifier)``.

    An estimator configured to change its own lr would fight the schedule,
    so it is refused with the setting to use, not silently changed: the SGD
    estimators need ``learning_rate="constant"`` (lrkit sets ``eta0`` every
    step), MLPs with ``solver="sgd"`` need ``learning_rate="constant"``
    (``solver="adam"`` ignores ``learning_rate``; ``"lbfgs"`` has no
    ``partial_fit``). ``early_stopping=True`` cannot work with
    ``partial_fit``: pass ``X_val``/``y_val`` to :func:`fit` instead.

    Raises:
        TypeError: not one of :data:`ESTIMATORS`.
        ValueError: a setting that fights the schedule, naming it and the fix.
    """
    kind, classifier = _estimator_kind(estimator)
    name = type(estimator).__name__
    params = estimator.get_params(deep=False)
    if kind == "mlp" and params.get("solver") not in ("sgd", "adam"):
        raise ValueError(
            f"lrkit.sklearn.fit: {name}(solver={params.get('solver')!r}) has no partial_fit "
            "steps to schedule; use solver='sgd' or solver='adam'"
        )
    own = params.get("learning_rate")
    if own != "constant" and (kind == "sgd" or params.get("solver") == "sgd"):
        hint = _own_rule_hint(kind, str(own), params)
        also = f"; sklearn's own rule as an lrkit schedule is {hint}" if hint else ""
        raise ValueError(
            f"lrkit.sklearn.fit: {name}(learning_rate={own!r}) changes its own lr and would fight "
            f"the schedule; build it with learning_rate='constant' (lrkit sets the lr every "
            f"step){also}"
        )
    if params.get("early_stopping"):
        raise ValueError(
            f"lrkit.sklearn.fit: {name}(early_stopping=True) does not work with partial_fit; "
            "pass X_val and y_val to fit() (and a plateau(mode='max') to watch the score)"
        )
    return kind, classifier


def set_lr(estimator: Any, lr: float, kind: str) -> None:
    """Make ``lr`` the lr of the estimator's next ``partial_fit`` call.

    SGD estimators: ``eta0`` (with ``learning_rate="constant"`` every sample
    of the call uses it). MLPs read ``learning_rate_init`` once, when the
    first ``partial_fit`` builds their optimizer; from then on the lr lives
    in that optimizer: ``_optimizer.learning_rate`` for ``solver="sgd"``
    and ``_optimizer.learning_rate_init`` for ``solver="adam"`` (Adam
    recomputes ``learning_rate`` from it each update, with its bias
    correction). sklearn requires a positive ``eta0``/``learning_rate_init``:
    an lr of 0 is set as the smallest positive float there.
    """
    if kind == "sgd":
        estimator.eta0 = max(lr, _TINY)
        return
    optimizer = getattr(estimator, "_optimizer", None)
    if optimizer is None:  # the first call builds it from learning_rate_init
        estimator.learning_rate_init = max(lr, _TINY)
    elif estimator.solver == "adam":
        optimizer.learning_rate_init = lr
    else:
        optimizer.learning_rate = lr


def lr_at(schedule: Any, step: int) -> float:
    """The lr a schedule (a value) or a controller (``.lr(step)``) gives at ``step``."""
    return float(schedule(step) if isinstance(schedule, Schedule) else schedule.lr(step))


def loss_of(estimator: Any, X: Any, y: Any, classifier: bool) -> float:
    """The estimator's loss on ``(X, y)``: log loss, hinge loss or mean squared error."""
    from sklearn import metrics

    if not classifier:
        return float(metrics.mean_squared_error(y, estimator.predict(X)))
    labels = estimator.classes_
    if hasattr(estimator, "predict_proba"):  # log_loss, modified_huber, MLPs
        return float(metrics.log_loss(y, estimator.predict_proba(X), labels=labels))
    return float(metrics.hinge_loss(y, estimator.decision_function(X), labels=labels))


def check_schedule(schedule: Any, who: str) -> None:
    """Refuse what an sklearn estimator cannot do: ``guard(...)`` and ``swa(...)``.

    Raises:
        ValueError: naming the part and what to use instead.
    """
    from lrkit.schedules import swa_start

    if isinstance(schedule, Guard):
        raise ValueError(
            f"{who}: guard(...) rolls the model back to a snapshot, which a scikit-learn "
            "estimator does not take; use a schedule, plateau(...) or adaptive(...)"
        )
    if swa_start(schedule) is not None:
        raise ValueError(
            f"{who}: swa(...) averages a torch model's weights; a scikit-learn estimator "
            "averages its own (SGDClassifier(average=True)): use the schedule inside swa(...)"
        )


def _as_schedule(schedule: Any, total: int) -> Any:
    if isinstance(schedule, str):
        from lrkit.spec import parse

        schedule = parse(schedule, steps=total)
    check_schedule(schedule, "lrkit.sklearn.fit")
    if not isinstance(schedule, Schedule | Plateau | Adaptive):
        raise TypeError(
            "lrkit.sklearn.fit: schedule must be an lrkit schedule, a spec string or a "
            f"plateau/adaptive controller, got {schedule!r}"
        )
    return schedule


def fit(
    estimator: Any,
    X: Any,
    y: Any,
    schedule: Any,
    *,
    epochs: int,
    batch_size: int | None = None,
    X_val: Any = None,
    y_val: Any = None,
    seed: int | None = None,
) -> FitResult:
    """Train an sklearn estimator with ``partial_fit``, its lr set by an lrkit schedule.

    Each step is one ``partial_fit`` call, after :func:`set_lr` has set the
    schedule's lr at that step as the lr the estimator uses:

    * ``batch_size=None``: one step an epoch, a ``partial_fit`` over all of
      ``(X, y)``. Inside it the estimator works as it does alone: the SGD
      estimators update per sample (all at the step's lr), MLPs per
      minibatch of their own ``batch_size`` (all at the step's lr). sklearn's
      MLP rules (``invscaling``, ``adaptive``) also change the lr once an
      epoch.
    * ``batch_size=B``: one step per ``B`` samples (the last batch of an
      epoch may be smaller), ``ceil(n / B)`` steps an epoch. ``B=1`` with an
      SGD estimator is sklearn's own per-sample rule: ``invscaling`` or
      ``optimal`` given here make the same updates as the estimator with that
      ``learning_rate`` and ``shuffle=False``.

    The data is used in its order, every epoch (inside a call, the
    estimator's own ``shuffle`` and ``random_state`` apply); with ``seed``,
    the samples are reshuffled every epoch by ``numpy.random.default_rng(seed)``.
    Classifiers get ``classes=np.unique(y)`` (``partial_fit`` needs all
    classes on the first call; a multilabel indicator ``y`` has one class per
    column; a classifier fitted before keeps its ``classes_``). The
    estimator is trained in place and goes on from its state: an estimator
    fitted before continues from its weights (the schedule still starts at
    its step 0); pass a fresh one (``sklearn.base.clone``) to start over.
    Its hyperparameters are as before afterwards: the lr is set through
    ``eta0`` / ``learning_rate_init`` while it trains and given back at the
    end. A pandas DataFrame is passed on as it is, so the estimator keeps its
    column names (``feature_names_in_``).

    A controller observes one value at the end of each epoch, at the step
    the next epoch starts from: a ``plateau`` with ``mode="min"`` the
    validation loss with ``X_val``, else the training loss; a ``plateau``
    with ``mode="max"`` the validation score with ``X_val``, else the score
    on the training data. ``adaptive`` (sklearn's rule) watches the training
    loss, as sklearn does, validation data or not; with ``early_stopping``
    the validation score.

    Args:
        estimator: an ``SGDClassifier``, ``SGDRegressor``, ``MLPClassifier``
            or ``MLPRegressor`` (see :func:`check_estimator` for the
            settings it needs).
        X: training features (an array, a scipy sparse matrix or a pandas DataFrame).
        y: training targets.
        schedule: an lrkit schedule, a spec string (a missing ``steps`` is
            filled with the run's total steps), or a ``plateau``/``adaptive``
            controller.
        epochs: passes over the data (>= 1).
        batch_size: samples per step; ``None``: one step an epoch.
        X_val: validation features, for ``val_loss`` and ``val_score``.
        y_val: validation targets (with ``X_val``).
        seed: reshuffle the samples every epoch with this seed; ``None``
            keeps their order.

    Returns:
        A :class:`FitResult`: the per-step lrs and the per-epoch losses and
        scores.

    Raises:
        TypeError: an unsupported estimator or schedule.
        ValueError: an estimator set to change its own lr (the message says
            which setting to use), bad ``epochs`` or ``batch_size``,
            mismatched data, or a schedule spec that does not parse.

    Examples:
        >>> import numpy as np
        >>> from sklearn.linear_model import SGDRegressor
        >>> import lrkit.sklearn
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 3))
        >>> y = X @ np.array([1.0, -2.0, 0.5])
        >>> est = SGDRegressor(learning_rate="constant", shuffle=False)
        >>> result = lrkit.sklearn.fit(est, X, y, "cosine(lr=0.05)", epochs=5, batch_size=50)
        >>> result.steps, result.lrs[0], result.lrs[-1] < 0.001
        (20, 0.05, True)
        >>> result.train_loss[-1] < 1e-3
        True
    """
    kind, classifier = check_estimator(estimator)
    if not _is_int(epochs) or epochs < 1:
        raise ValueError(f"lrkit.sklearn.fit: epochs must be an integer >= 1, got {epochs!r}")
    epochs = int(epochs)
    X, y = _data(X), _targets(y)
    n = X.shape[0]
    if n < 1 or y.shape[0] != n:
        raise ValueError(
            f"lrkit.sklearn.fit: X and y must have the same number (>= 1) of samples, got "
            f"{n} and {y.shape[0]}"
        )
    if batch_size is None:
        size = n
    elif not _is_int(batch_size) or batch_size < 1:
        raise ValueError(
            f"lrkit.sklearn.fit: batch_size must be None or an integer in [1, {n}], "
            f"got {batch_size!r}"
        )
    elif batch_size > n:
        raise ValueError(
            f"lrkit.sklearn.fit: batch_size must be at most the {n} training samples, "
            f"got {batch_size}"
        )
    else:
        size = int(batch_size)
    if (X_val is None) != (y_val is None):
        raise ValueError("lrkit.sklearn.fit: give both X_val and y_val, or neither")
    validate = X_val is not None
    if validate:
        X_val, y_val = _data(X_val, "X_val"), _targets(y_val, "y_val")
        if X_val.shape[0] < 1 or y_val.shape[0] != X_val.shape[0]:
            raise ValueError(
                "lrkit.sklearn.fit: X_val and y_val must have the same number (>= 1) of "
                f"samples, got {X_val.shape[0]} and {y_val.shape[0]}"
            )
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise ValueError(f"lrkit.sklearn.fit: seed must be None or an integer >= 0, got {seed!r}")
    per_epoch = math.ceil(n / size)
    schedule = _as_schedule(schedule, epochs * per_epoch)
    classes = _classes(estimator, y) if classifier else None
    rng = np.random.default_rng(seed) if seed is not None else None
    val_loss: list[float] = []
    val_score: list[float] = []
    result = FitResult(
        estimator=estimator,
        schedule=schedule,
        steps_per_epoch=per_epoch,
        val_loss=val_loss if validate else None,
        val_score=val_score if validate else None,
    )
    # The lr is set through eta0 / learning_rate_init while training; the estimator's
    # hyperparameters are given back afterwards (clone, get_params, a later fit see them).
    lr_param = "eta0" if kind == "sgd" else "learning_rate_init"
    own_lr = getattr(estimator, lr_param)
    try:
        _train(
            estimator,
            kind,
            classifier,
            X,
            y,
            schedule,
            epochs,
            size,
            classes,
            rng,
            X_val,
            y_val,
            result,
        )
    finally:
        setattr(estimator, lr_param, own_lr)
    return result


def _train(
    estimator: Any,
    kind: str,
    classifier: bool,
    X: Any,
    y: Any,
    schedule: Any,
    epochs: int,
    size: int,
    classes: Any,
    rng: Any,
    X_val: Any,
    y_val: Any,
    result: FitResult,
) -> None:
    """:func:`fit`'s loop over epochs and steps, filling ``result``."""
    n = X.shape[0]
    step = 0
    for _ in range(epochs):
        order = rng.permutation(n) if rng is not None else None
        running = 0.0
        for start in range(0, n, size):
            index: Any = (
                slice(start, start + size) if order is None else order[start : start + size]
            )
            xb, yb = _rows(X, index), y[index]
            lr = lr_at(schedule, step)
            set_lr(estimator, lr, kind)
            if classifier:
                estimator.partial_fit(xb, yb, classes=classes)
            else:
                estimator.partial_fit(xb, yb)
            if kind == "mlp":
                running += float(estimator.loss_) * yb.shape[0]
            result.lrs.append(lr)
            step += 1
        train_loss = running / n if kind == "mlp" else loss_of(estimator, X, y, classifier)
        result.train_loss.append(train_loss)
        if result.val_loss is not None and result.val_score is not None:
            result.val_loss.append(loss_of(estimator, X_val, y_val, classifier))
            result.val_score.append(float(estimator.score(X_val, y_val)))
        if isinstance(schedule, Plateau | Adaptive):
            schedule.observe(_observed(schedule, result, estimator, X, y), step)


def _observed(schedule: Any, result: FitResult, estimator: Any, X: Any, y: Any) -> float:
    """The value a controller observes at an epoch's end (see :func:`fit`)."""
    wants_score = isinstance(schedule, Plateau) and schedule.detector.mode == "max"
    if wants_score:
        if result.val_score is not None:
            return result.val_score[-1]
        return float(estimator.score(X, y))
    if isinstance(schedule, SklearnAdaptive):
        # sklearn's adaptive rule without early_stopping watches the training loss,
        # whether or not there is validation data to report
        return result.train_loss[-1]
    if result.val_loss is not None:
        return result.val_loss[-1]
    return result.train_loss[-1]


def _data(X: Any, name: str = "X") -> Any:
    """Features as a 2-D numpy array, a CSR matrix when sparse, or the pandas DataFrame
    itself (its column names reach the estimator: ``feature_names_in_``)."""
    if hasattr(X, "tocsr"):
        return X.tocsr()
    if hasattr(X, "iloc") and getattr(X, "ndim", 0) == 2:
        return X
    array = np.asarray(X)
    if array.ndim != 2:
        raise ValueError(
            f"lrkit.sklearn.fit: {name} must be 2-D (samples x features), got shape {array.shape}"
        )
    return array


def _targets(y: Any, name: str = "y") -> np.ndarray:
    """Targets as a numpy array of one value (or one row, multi-output) per sample."""
    array = np.asarray(y)
    if array.ndim not in (1, 2):
        raise ValueError(
            f"lrkit.sklearn.fit: {name} must hold one target (or one row of targets) per "
            f"sample, got shape {array.shape}"
        )
    return array


def _rows(X: Any, index: Any) -> Any:
    """The samples ``index`` (a slice or positions) of an array, sparse matrix or DataFrame."""
    return X.iloc[index] if hasattr(X, "iloc") else X[index]


def _classes(estimator: Any, y: np.ndarray) -> np.ndarray:
    """The ``classes`` a classifier's ``partial_fit`` takes.

    An estimator fitted before keeps its own (``partial_fit`` refuses others,
    and ``y`` may lack some); a multilabel indicator ``y`` (an MLP's) has one
    class per column; otherwise the labels in ``y``.
    """
    if hasattr(estimator, "classes_"):
        return np.asarray(estimator.classes_)
    if y.ndim == 2:
        return np.arange(y.shape[1])
    return np.unique(y)


def _is_int(value: Any) -> bool:
    """An integer (numpy's too), not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
