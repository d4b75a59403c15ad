"""ReduceLROnPlateau: torch's class, decided by lrkit's PlateauDetector."""

from __future__ import annotations

import math
import warnings
from typing import Any, SupportsFloat

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau as _TorchReduceLROnPlateau

from lrkit.controllers import PlateauDetector
from lrkit.torch._common import (
    _EPOCH_WARNING,
    _as_float,
    _check_optimizer,
    _lrs_in_force,
    _others_writes,
    _per_group,
    _put_lrs,
    _restore_others_writes,
    _stepped_out_of_order_or_replaced,
    _warn_order,
    _watch,
)

# ---------------------------------------------------------------------------
# ReduceLROnPlateau
# ---------------------------------------------------------------------------


class ReduceLROnPlateau(_TorchReduceLROnPlateau):
    """torch's ReduceLROnPlateau; the decisions are :class:`lrkit.controllers.PlateauDetector`'s.

    When more than ``patience`` observations in a row fail to improve on the
    best by ``threshold``, each group's lr becomes ``max(lr * factor,
    min_lr)`` (skipped when that changes it by ``eps`` or less), followed by
    ``cooldown`` ignored observations. The lrs are this scheduler's own,
    except in a group whose ``group["lr"]`` another writer (a second scheduler,
    user code) changed since this scheduler's last write: there it goes on
    from that value, as torch does. It writes the optimizer only when it cuts
    (or loads a state).

    It is a subclass of torch's ReduceLROnPlateau (and so of LRScheduler), so
    frameworks that check for it (Lightning) pass it the monitored metric.

    Args:
        optimizer: the wrapped optimizer.
        mode: ``"min"`` (lower is better) or ``"max"``.
        factor: the cut, < 1.
        patience: observations without improvement tolerated before a cut.
        threshold: how much better counts as better.
        threshold_mode: ``"rel"`` or ``"abs"``.
        cooldown: observations ignored after a cut.
        min_lr: the lr a cut never goes below (one value, or one per group).
        eps: cuts smaller than this are skipped.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> s = ReduceLROnPlateau(opt, patience=1, factor=0.5)
        >>> for loss in [1.0, 1.0, 1.0]:
        ...     opt.step(); s.step(loss)
        >>> s.get_last_lr()
        [0.5]
    """

    _last_lr: list[float]  # type: ignore[assignment]  # torch types lrs as float | Tensor; lrkit's are floats

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: list[float] | float = 0,
        eps: float = 1e-8,
    ) -> None:
        name = "ReduceLROnPlateau"
        if factor >= 1.0:
            raise ValueError(f"{name}: factor must be < 1.0, got {factor!r}")
        self.factor = factor
        self.optimizer = _check_optimizer(name, optimizer)
        if isinstance(min_lr, (list, tuple)):
            self.default_min_lr: float | None = None
            self.min_lrs = _per_group(name, "min_lr", optimizer, list(min_lr))
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.eps = eps
        self.last_epoch = 0
        self._step_count = 0
        self._last_lr = [float(_as_float(g["lr"])) for g in optimizer.param_groups]
        self._written = list(self._last_lr)
        self._detector = PlateauDetector(
            mode=mode,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
        )
        _watch(optimizer)

    # torch's attribute names, read from the detector
    mode = property(lambda self: self._detector.mode)
    patience = property(lambda self: self._detector.patience)
    threshold = property(lambda self: self._detector.threshold)
    threshold_mode = property(lambda self: self._detector.threshold_mode)
    cooldown = property(lambda self: self._detector.cooldown)
    num_bad_epochs = property(lambda self: self._detector.num_bad_epochs)
    cooldown_counter = property(lambda self: self._detector.cooldown_counter)
    mode_worse = property(lambda self: self._detector.mode_worse)

    @property
    def best(self) -> float:  # type: ignore[override]  # read-only: the detector keeps it
        """The best metric so far (``inf`` / ``-inf`` before the first observation)."""
        b = self._detector.best
        return self._detector.mode_worse if b is None else b

    @property
    def in_cooldown(self) -> bool:
        return self._detector.in_cooldown

    def is_better(self, a: float, best: float) -> bool:
        """torch's comparison of ``a`` against ``best`` under mode and threshold."""
        return self._detector.is_better(a, best)

    _is_better = is_better

    def step(self, metrics: SupportsFloat, epoch: int | None = None) -> None:  # type: ignore[override]
        """Observe ``metrics`` and cut the lrs when the plateau rules say so."""
        if self._step_count == 0 and _stepped_out_of_order_or_replaced(self.optimizer):
            _warn_order(self)
        self._step_count += 1
        current = float(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(_EPOCH_WARNING, UserWarning, stacklevel=2)
        self.last_epoch = epoch
        groups = self.optimizer.param_groups
        if [g["lr"] for g in groups] != self._written:
            # someone else wrote group["lr"] (it is the lr in force, as in torch), or
            # add_param_group() added a group (it starts from the lr it was given)
            for i, lr in (_others_writes(self.optimizer, self._written) or {}).items():
                self._last_lr[i] = self._written[i] = lr
            if len(self._last_lr) < len(groups):
                self._last_lr.extend(_lrs_in_force(self.optimizer)[len(self._last_lr) :])
        if self._detector.observe(current):
            self._cut()
            self._write()

    def _cut(self) -> None:
        groups = self.optimizer.param_groups
        n = len(groups)
        if len(self.min_lrs) != n:  # add_param_group() since: as torch
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"The number of param groups in the `optimizer` ({n}) differs from when "
                    f"`ReduceLROnPlateau` was initialized ({len(self.min_lrs)}), usually due to "
                    "a new param group being added to the optimizer: give `min_lrs` one value "
                    "per param group (e.g. scheduler.min_lrs.append(...))"
                )
            self.min_lrs = [self.default_min_lr] * n
        for i, old in enumerate(self._last_lr):
            new = max(old * self.factor, self.min_lrs[i])
            if old - new > self.eps:
                self._last_lr[i] = new

    def _write(self) -> None:
        self._written = _put_lrs(self.optimizer, self._last_lr)

    def get_last_lr(self) -> list[float]:  # type: ignore[override]  # torch types lrs as float | Tensor; lrkit's are floats
        """The lrs in force, one per param group."""
        return list(self._last_lr)

    def get_lr(self) -> list[float]:  # type: ignore[override]  # torch types lrs as float | Tensor; lrkit's are floats
        """The lrs in force (the same as :meth:`get_last_lr`)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Plain data in torch's key names (``best`` is a float, possibly inf)."""
        d = self._detector
        return {
            "factor": self.factor,
            "min_lrs": list(self.min_lrs),
            "default_min_lr": self.default_min_lr,
            "eps": self.eps,
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "_last_lr": list(self._last_lr),
            "_lr_in_force": _lrs_in_force(self.optimizer),
            "mode": d.mode,
            "patience": d.patience,
            "threshold": d.threshold,
            "threshold_mode": d.threshold_mode,
            "cooldown": d.cooldown,
            "best": self.best,
            "num_bad_epochs": d.num_bad_epochs,
            "cooldown_counter": d.cooldown_counter,
            "mode_worse": d.mode_worse,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (torch's own ReduceLROnPlateau state too)."""
        s = dict(state_dict)
        n = len(self.optimizer.param_groups)
        last = s.get("_last_lr")
        if last is None or len(last) != n:
            raise ValueError(
                f"ReduceLROnPlateau: the state is for {'?' if last is None else len(last)} "
                f"param groups, the optimizer has {n}"
            )
        mode = s.get("mode", self.mode)
        best = s.get("best")
        worse = math.inf if mode == "min" else -math.inf
        self._detector = PlateauDetector(
            mode=mode,
            patience=s.get("patience", self.patience),
            threshold=s.get("threshold", self.threshold),
            threshold_mode=s.get("threshold_mode", self.threshold_mode),
            cooldown=s.get("cooldown", self.cooldown),
            best=None if best is None or best == worse else float(best),
            num_bad_epochs=s.get("num_bad_epochs", 0),
            cooldown_counter=s.get("cooldown_counter", 0),
        )
        self.factor = s.get("factor", self.factor)
        self.min_lrs = list(s.get("min_lrs", self.min_lrs))
        self.default_min_lr = s.get("default_min_lr", self.default_min_lr)
        self.eps = s.get("eps", self.eps)
        self.last_epoch = s.get("last_epoch", self.last_epoch)
        self._step_count = s.get("_step_count", 1)
        self._last_lr = [float(_as_float(v)) for v in last]
        self._write()
        _restore_others_writes(self.optimizer, s.get("_lr_in_force"))

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _watch(self.optimizer)
