"""Moving a learning rate to another batch size: the linear and square-root rules.

A tuned lr belongs to the batch size it was tuned at. :func:`scale_lr`
carries it to another batch size by one of the two rules in use:

- ``"linear"``: ``lr * (to_batch / from_batch)``. For SGD (with or without
  momentum): k times the batch averages away k times the gradient noise, and
  one step at k x lr then travels about as far as k small steps did (Goyal
  et al. 2017, "Accurate, Large Minibatch SGD": ImageNet to batch 8k with a
  warmup). It holds while the step is limited by noise, not by curvature:
  past a task's *critical batch size* (McCandlish et al. 2018) the best lr
  stops growing and the rule overshoots, often into divergence.
- ``"sqrt"``: ``lr * sqrt(to_batch / from_batch)``. For Adam and its kin
  (Malladi et al. 2022, "On the SDEs and Scaling Rules for Adaptive Gradient
  Algorithms"): Adam divides by a running gradient scale, so its steps do
  not shrink with the noise as SGD's do. Also proposed for SGD to keep the
  noise's variance the same (Hoffer et al. 2017).

Both rules assume the same number of epochs (fewer steps at a larger batch)
and a warmup at large batch sizes. They are starting points, not answers:
``lrkit compare --batch-sizes`` measures where the best lr really goes on
your task (see docs/compare.md, "Batch size and the lr", for what the
measurement on the built-in tasks showed).

Examples:
    >>> from lrkit import scale_lr
    >>> scale_lr(0.1, 256, 1024)
    0.4
    >>> scale_lr(1e-3, 32, 512, rule="sqrt")
    0.004
"""

from __future__ import annotations

import math
import numbers

__all__ = ["RULES", "scale_lr"]

#: The rules :func:`scale_lr` knows, with the exponent of the batch ratio each applies.
RULES: dict[str, float] = {"linear": 1.0, "sqrt": 0.5}


def _batch(value: object, name: str) -> int:
    # numbers.Integral: numpy's integers too; a bool is not a batch size
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"scale_lr: {name} must be an integer >= 1, got {value!r}")
    return int(value)


def scale_lr(lr: float, from_batch: int, to_batch: int, rule: str = "linear") -> float:
    """Return the lr for ``to_batch``, given the lr tuned at ``from_batch``.

    Args:
        lr: The learning rate at ``from_batch`` (a finite number > 0).
        from_batch: The batch size ``lr`` was tuned at.
        to_batch: The batch size to train at.
        rule: ``"linear"`` (``lr * to/from``; SGD) or ``"sqrt"``
            (``lr * sqrt(to/from)``; Adam, AdamW).

    Returns:
        The scaled learning rate (rounded to 12 significant digits, so that
        ``scale_lr(0.1, 256, 1024)`` is ``0.4``, not ``0.4000000000000001``).

    Raises:
        ValueError: A batch size that is not an integer >= 1, an lr that is
            not a finite number > 0, or an unknown rule.

    Examples:
        >>> scale_lr(0.4, 1024, 256)
        0.1
        >>> scale_lr(0.1, 64, 128, rule="cubic")
        Traceback (most recent call last):
        ValueError: scale_lr: rule must be one of 'linear', 'sqrt', got 'cubic'
    """
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise ValueError(f"scale_lr: lr must be a finite number > 0, got {lr!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"scale_lr: lr must be a finite number > 0, got {lr!r}")
    a, b = _batch(from_batch, "from_batch"), _batch(to_batch, "to_batch")
    if rule not in RULES:
        known = ", ".join(repr(r) for r in RULES)
        raise ValueError(f"scale_lr: rule must be one of {known}, got {rule!r}")
    scaled = float(f"{float(lr) * (b / a) ** RULES[rule]:.12g}")
    if not (math.isfinite(scaled) and scaled > 0):
        raise ValueError(
            f"scale_lr: {lr!r} scaled from batch {a} to {b} ({rule}) is {scaled!r}, "
            "not a finite lr > 0"
        )
    return scaled
