"""PyTorch adapters: drop-in schedulers with torch's names, and a driver for lrkit schedules.

This is the only lrkit module that imports torch; ``import lrkit`` does not.

**Drop-ins.** ``from lrkit.torch import StepLR`` instead of
``from torch.optim.lr_scheduler import StepLR``: the same class names,
signatures, defaults and values (quirks included, see ``docs/torch.md``).
What differs is where the values come from. torch's chainable form computes
the lr at step t from ``group["lr"]`` at step t-1, so anything else that
writes the optimizer's lrs (loading its state after the scheduler was built,
another scheduler, user code) changes every later value. lrkit's drop-ins
compute each value from their own state: the step count through a closed
form where that reproduces torch, and otherwise (multiplicative forms,
chains, sequences, plateau cuts) from the values they keep themselves. The
optimizer is only ever written, never read back as the truth, so a resume is
exact whether the optimizer's state is loaded before or after the scheduler
is built.

Examples:
    >>> import torch
    >>> from lrkit.torch import MultiStepLR
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> sched = MultiStepLR(opt, milestones=[2, 4], gamma=0.1)
    >>> lrs = []
    >>> for _ in range(5):
    ...     opt.step()
    ...     sched.step()
    ...     lrs.append(round(sched.get_last_lr()[0], 12))
    >>> lrs
    [0.1, 0.01, 0.01, 0.001, 0.001]
"""

from __future__ import annotations

import abc
import bisect
import math
import types
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, SupportsFloat

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import EPOCH_DEPRECATION_WARNING, LRScheduler
from torch.optim.lr_scheduler import ReduceLROnPlateau as _TorchReduceLROnPlateau

from lrkit import schedules as _core
from lrkit.controllers import PlateauDetector
from lrkit.torch_finder import FinderResult, find_lr

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "FinderResult",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "Scheduler",
    "SequentialLR",
    "StepLR",
    "find_lr",
]

# ---------------------------------------------------------------------------
# Small helpers: reading arguments, writing the optimizer, watching its steps.
# ---------------------------------------------------------------------------


def _check_optimizer(name: str, optimizer: Any) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"{name}: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    return optimizer


def _per_group(name: str, arg: str, optimizer: Optimizer, value: Any) -> list[Any]:
    """One value per param group: a list/tuple of the right length, or one value for all."""
    n = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(
                f"{name}: {arg} must have one entry per param group ({n}), "
                f"got {len(value)}: {list(value)!r}"
            )
        return [_as_float(v) for v in value]
    return [_as_float(value)] * n


def _as_float(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return float(value.item())
    return value


def _set(group: dict[str, Any], key: str, value: float) -> None:
    """Write ``group[key] = value`` (in place when the optimizer keeps a tensor there)."""
    current = group.get(key)
    if type(current) is not float and isinstance(current, torch.Tensor):
        current.fill_(value)
    else:
        group[key] = value


def _mark_stepped(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
    """Optimizer step post-hook: remember that ``optimizer.step()`` ran."""
    optimizer._lrkit_stepped = True  # type: ignore[attr-defined]


def _watch(optimizer: Optimizer) -> None:
    """Register (once per optimizer) the hook behind the 'step order' warning.

    Also note the optimizer's own ``step`` attribute then, so that a ``step``
    replaced afterwards (a wrapper that may never call the hooks) is said once,
    as torch says it.
    """
    if not getattr(optimizer, "_lrkit_watched", False):
        optimizer.register_step_post_hook(_mark_stepped)
        optimizer._lrkit_watched = True  # type: ignore[attr-defined]
        optimizer._lrkit_step_attr = optimizer.__dict__.get("step")  # type: ignore[attr-defined]


def _optimizer_stepped(optimizer: Optimizer) -> bool:
    # torch's own schedulers mark the optimizer with ``_opt_called``; accept either.
    return bool(
        getattr(optimizer, "_lrkit_stepped", False) or getattr(optimizer, "_opt_called", False)
    )


def _stepped_out_of_order(optimizer: Optimizer) -> bool:
    """True when ``optimizer.step()`` has not run yet and no GradScaler explains why.

    ``torch.amp.GradScaler.step`` skips ``optimizer.step()`` when the scaled
    gradients overflowed; it leaves non-finite gradients behind. Such a skip
    is not a mistake in the step order, so it does not warn (torch's own
    schedulers do). Checked once, at the first ``scheduler.step()``.
    """
    if _optimizer_stepped(optimizer):
        return False
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                return False
    return True


#: Where torch explains the order of optimizer.step() and scheduler.step(); its
#: warnings end with it, and users (and torch's tests) look for it.
_ORDER_DOCS = "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate"


def _warn_order(scheduler: Any) -> None:
    optimizer = scheduler.optimizer
    replaced = optimizer.__dict__.get("step") is not getattr(optimizer, "_lrkit_step_attr", None)
    if replaced:
        message = (
            "`optimizer.step()` has been overridden after the learning rate scheduler "
            f"({type(scheduler).__name__}) was built: make sure the new step still runs, and "
            f"before `lr_scheduler.step()`. See {_ORDER_DOCS}"
        )
    else:
        message = (
            f"{type(scheduler).__name__}.step() was called before optimizer.step(). Call "
            "optimizer.step() first and scheduler.step() after it; in this order the "
            f"schedule's first value (step 0) is never used for an update. See {_ORDER_DOCS}"
        )
    warnings.warn(message, UserWarning, stacklevel=3)


def _stepped_out_of_order_or_replaced(optimizer: Optimizer) -> bool:
    """The first scheduler step's check: out of order, or ``optimizer.step`` replaced since."""
    replaced = optimizer.__dict__.get("step") is not getattr(optimizer, "_lrkit_step_attr", None)
    return replaced or _stepped_out_of_order(optimizer)


#: torch's own text for ``scheduler.step(epoch)`` (the drop-ins say exactly what torch says).
_EPOCH_WARNING = EPOCH_DEPRECATION_WARNING


def _plain_lambda_state(fns: Sequence[Any]) -> list[dict[str, Any] | None]:
    """torch's rule for saving user callables: objects keep their __dict__, functions nothing."""
    out: list[dict[str, Any] | None] = []
    for fn in fns:
        out.append(None if isinstance(fn, types.FunctionType) else dict(fn.__dict__))
    return out


def _load_lambda_state(name: str, fns: Sequence[Any], saved: Any) -> None:
    if saved is None:
        return
    if len(saved) != len(fns):
        raise ValueError(
            f"{name}: the state has {len(saved)} lambda states, this scheduler has {len(fns)}"
        )
    for fn, state in zip(fns, saved, strict=False):
        if state is not None:
            fn.__dict__.update(state)


# ---------------------------------------------------------------------------
# The base of every drop-in.
# ---------------------------------------------------------------------------


class _DropIn(LRScheduler, metaclass=abc.ABCMeta):
    """Shared machinery: own values, the step counter, state and the optimizer writes.

    A subclass defines ``_relative(prev, t, initial)``: torch's rule for the
    lrs at step ``t`` given the lrs in force before it (``initial`` is True
    for the step the constructor takes). Where torch's values are a closed
    form of the step, it also defines ``_closed_values(t)`` (valid up to ``_closed_limit``);
    ``_torch_closed(t)`` is torch's ``_get_closed_form_lr`` (used by
    ``step(epoch)`` and by SequentialLR at a milestone).

    ``prev`` is always the scheduler's own last values (or, inside
    ChainedScheduler / SequentialLR, the values the composite keeps), never
    ``group["lr"]``.
    """

    #: keys of ``__dict__`` that are not state (the optimizer, callables, derived objects)
    _not_state: tuple[str, ...] = ("optimizer", "_core")

    # Declared only (no class attribute): subclasses with a closed form define
    # _closed_values (_has_closed checks for it); those that cycle momentum set use_beta1.
    _closed_values: Callable[[int], list[float]]
    use_beta1: bool

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        name = type(self).__name__
        self.optimizer = _check_optimizer(name, optimizer)
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, int) or last_epoch < -1:
            raise ValueError(f"{name}: last_epoch must be an integer >= -1, got {last_epoch!r}")
        groups = optimizer.param_groups
        if last_epoch == -1:
            for group in groups:
                lr = group["lr"]
                # as torch: a tensor lr is kept as its own copy, never aliased
                group.setdefault("initial_lr", lr.clone() if isinstance(lr, torch.Tensor) else lr)
        else:
            for i, group in enumerate(groups):
                if "initial_lr" not in group:
                    # torch's words first (code that matches them keeps working), then ours
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when resuming "
                        f"scheduler with last_epoch >= 0 ({name}: last_epoch={last_epoch}; load "
                        "the optimizer's state first, or pass last_epoch=-1 and load the "
                        "scheduler's state_dict() instead)"
                    )
        self.base_lrs: list[float] = [float(_as_float(g["initial_lr"])) for g in groups]  # type: ignore[assignment]  # torch types lrs as float | Tensor; lrkit's are floats
        self.last_epoch = last_epoch
        self._step_count = 0
        self._build()
        # torch starts from the optimizer's lrs as they are now; so do we, once.
        start = [float(_as_float(g["lr"])) for g in groups]
        self._closed = last_epoch == -1 and start == self.base_lrs and self._has_closed()
        _watch(optimizer)
        self._last_lr: list[float] = start  # type: ignore[assignment]  # torch types lrs as float | Tensor; lrkit's are floats
        self._restart(start)

    # -- to implement -------------------------------------------------------

    def _build(self) -> None:
        """Derive helper objects (e.g. lrkit schedules) from the arguments; not state."""
        self._core: Any = None

    def _has_closed(self) -> bool:
        """Whether ``_closed_values`` applies: by default, whether the class defines it."""
        return hasattr(self, "_closed_values")

    #: the last step at which ``_closed_values`` reproduces torch (set in ``_build``)
    _closed_limit: float = math.inf
    #: whether the class writes momentum / beta1
    _cycles_momentum: bool = False

    @abc.abstractmethod
    def _relative(self, prev: list[float], t: int, initial: bool) -> list[float]:
        """torch's rule for the lrs at step ``t`` given ``prev``, the lrs before it."""

    def _torch_closed(self, t: int) -> list[float] | None:
        return None

    def _momentum(self) -> list[float] | None:
        """Momentum / beta1 per group at ``last_epoch`` (None: not cycled)."""
        return None

    # -- the machinery --------------------------------------------------------

    def _values(self, prev: list[float], t: int, initial: bool) -> list[float]:
        if self._closed and t <= self._closed_limit:
            return self._closed_values(t)
        return self._relative(prev, t, initial)

    def _restart(self, prev: list[float]) -> list[float]:
        """The constructor's step (torch's ``_initial_step``), from ``prev``."""
        self._step_count = 1
        t = self.last_epoch + 1
        values = self._values(prev, t, initial=True)
        self.last_epoch = t
        self._last_lr = values
        self._write()
        return values

    def _advance(self, prev: list[float]) -> list[float]:
        """One ``step()`` from ``prev`` (used by ChainedScheduler / SequentialLR)."""
        self._step_count += 1
        t = self.last_epoch + 1
        values = self._relative(prev, t, initial=False)
        self.last_epoch = t
        self._last_lr = values
        self._write_momentum()
        return values

    def _jump(self, epoch: int, prev: list[float]) -> list[float]:
        """torch's ``_update_lr(epoch)``: the closed form at ``epoch`` where there is one."""
        self.last_epoch = epoch
        values = self._torch_closed(epoch)
        if values is None:
            values = self._relative(prev, epoch, initial=False)
        self._closed = False  # later steps continue from these values, as in torch
        self._last_lr = values
        self._write_momentum()
        return values

    def _write(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=False):
            current = group["lr"]
            if type(current) is not float and isinstance(current, torch.Tensor):
                current.fill_(lr)  # the optimizer keeps a tensor lr: update it in place
            else:
                group["lr"] = lr
        if self._cycles_momentum:
            self._write_momentum()

    def _write_momentum(self) -> None:
        momentum = self._momentum()
        if momentum is None:
            return
        groups = self.optimizer.param_groups
        if self.use_beta1:
            for group, m in zip(groups, momentum, strict=False):
                group["betas"] = (m, *group["betas"][1:])
        else:
            for group, m in zip(groups, momentum, strict=False):
                _set(group, "momentum", m)

    def _check_order(self) -> None:
        if self._step_count == 1 and _stepped_out_of_order_or_replaced(self.optimizer):
            _warn_order(self)

    # -- public API -----------------------------------------------------------

    def step(self, epoch: int | None = None) -> None:
        """Advance one step and write the new lrs (and momentum) into the optimizer.

        Args:
            epoch: deprecated in torch; jumps to ``epoch`` with torch's closed
                form where it has one (a warning says so).
        """
        if self._step_count == 1 and _stepped_out_of_order_or_replaced(self.optimizer):
            _warn_order(self)
        self._step_count += 1
        if epoch is not None:
            warnings.warn(_EPOCH_WARNING, UserWarning, stacklevel=2)
            self._jump(epoch, self._last_lr)
            self._write()
            return
        t = self.last_epoch + 1
        if self._closed and t <= self._closed_limit:
            self._last_lr = self._closed_values(t)
        else:
            self._last_lr = self._relative(self._last_lr, t, False)
        self.last_epoch = t
        self._write()

    def get_last_lr(self) -> list[float]:  # type: ignore[override]  # torch types lrs as float | Tensor; lrkit's are floats
        """The lrs this scheduler set last, one per param group."""
        return list(self._last_lr)

    def get_lr(self) -> list[float]:  # type: ignore[override]  # torch types lrs as float | Tensor; lrkit's are floats
        """The lrs for the current step (the same as :meth:`get_last_lr`)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state as plain data (no optimizer, no user functions)."""
        out = {}
        for key, value in self.__dict__.items():
            if key in self._not_state:
                continue
            out[key] = list(value) if isinstance(value, list) else value
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` and write its lrs (and momentum) into the optimizer.

        A state saved by torch's class of the same name is accepted too (a
        checkpoint migrates with one import). The rule: torch's fields that
        lrkit keeps under the same name (``last_epoch``, ``_step_count``,
        ``base_lrs``, ``_last_lr``, the arguments, ``T_cur`` / ``T_i``, ...)
        are taken as they are, and ``_last_lr`` becomes this scheduler's own
        values, from which it continues with torch's update rule (as torch
        continues from ``group["lr"]``, which equals it); class-specific fields
        are translated by ``_load_extra`` (e.g. OneCycleLR's phases); what
        torch does not save (values it keeps in the param groups) stays as
        this scheduler's constructor computed it from the same arguments; keys
        this scheduler does not keep (torch's bookkeeping such as
        ``_is_initial``) are dropped.
        """
        state = dict(state_dict)
        self._load_extra(state)
        for key in [k for k in state if k in self._not_state or k not in self.__dict__]:
            del state[key]
        n = len(self.optimizer.param_groups)
        last = state.get("_last_lr")
        if last is None or len(last) != n:
            raise ValueError(
                f"{type(self).__name__}: the state is for "
                f"{'?' if last is None else len(last)} param groups, the optimizer has {n}"
            )
        state["_last_lr"] = [float(_as_float(v)) for v in last]
        if "base_lrs" in state:
            state["base_lrs"] = [float(_as_float(v)) for v in state["base_lrs"]]
        state.setdefault("_closed", False)  # a torch state: continue from its values
        self.__dict__.update(state)
        self._build()
        if self.last_epoch >= 0:
            self._write()
        # else: a child of SequentialLR that has not started yet; it writes nothing

    def _load_extra(self, state: dict[str, Any]) -> None:
        """Class-specific conversion of a loaded state (in place)."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _watch(self.optimizer)


# ---------------------------------------------------------------------------
# Lambda forms
# ---------------------------------------------------------------------------


def _lambdas(name: str, optimizer: Optimizer, lr_lambda: Any) -> list[Callable[[int], float]]:
    n = len(optimizer.param_groups)
    if isinstance(lr_lambda, (list, tuple)):
        if len(lr_lambda) != n:
            raise ValueError(
                f"{name}: lr_lambda must be one function or one per param group ({n}), "
                f"got {len(lr_lambda)}"
            )
        fns = list(lr_lambda)
    else:
        fns = [lr_lambda] * n
    for fn in fns:
        if not callable(fn):
            raise TypeError(
                f"lr_lambda should be a function, but got {type(fn).__name__} ({name}: "
                "lr_lambda must be callable, one for all groups or one per group)"
            )
    return fns


class _WithLambdas(_DropIn):
    """A drop-in driven by user functions of the step (saved as torch saves them)."""

    _not_state = ("optimizer", "_core", "lr_lambdas")

    def __init__(
        self,
        optimizer: Optimizer,
        lr_lambda: Callable[[int], float] | list[Callable[[int], float]],
        last_epoch: int = -1,
    ) -> None:
        self.lr_lambdas = _lambdas(type(self).__name__, optimizer, lr_lambda)
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        out["lr_lambdas"] = _plain_lambda_state(self.lr_lambdas)
        return out

    def _load_extra(self, state: dict[str, Any]) -> None:
        _load_lambda_state(type(self).__name__, self.lr_lambdas, state.pop("lr_lambdas", None))


class LambdaLR(_WithLambdas):
    """torch's LambdaLR: ``lr = initial_lr * lr_lambda(step)``.

    Args:
        optimizer: the wrapped optimizer.
        lr_lambda: a function of the step, or a list with one per param group.
        last_epoch: the index of the last step taken (-1: a fresh start).

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> s = LambdaLR(opt, lambda t: 0.5**t)
        >>> opt.step(); s.step(); s.get_last_lr()
        [0.5]
    """

    def _relative(self, prev: list[float], t: int, initial: bool) -> list[float]:
        return [b * fn(t) for b, fn in zip(self.base_lrs, self.lr_lambdas, strict=False)]


class MultiplicativeLR(_WithLambdas):
    """torch's MultiplicativeLR: ``lr(t) = lr(t-1) * lr_lambda(t)``, from lrkit's own lr(t-1).

    Args:
        optimizer: the wrapped optimizer.
        lr_lambda: a function of the step giving the factor, or one per param group.
        last_epoch: the index of the last step taken; -1 (default) starts afresh.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> s = MultiplicativeLR(opt, lambda t: 0.5)
        >>> for _ in range(3):
        ...     opt.step(); s.step()
        >>> s.get_last_lr()
        [0.125]
    """

    def _relative(self, prev: list[float], t: int, initial: bool) -> list[float]:
        if initial:
            return list(prev)
        return [p * fn(t) for p, fn in zip(prev, self.lr_lambdas, strict=False)]


# ---------------------------------------------------------------------------
# Step decays
# ---------------------------------------------------------------------------


class StepLR(_DropIn):
    """torch's StepLR: ``lr = initial_lr * gamma ** (step // step_size)``.

    Args:
        optimizer: the wrapped optimizer.
        step_size: steps between two decays (>= 1).
        gamma: the factor applied at each decay.
        last_epoch: the index of the last step taken; -1 (default) starts afresh.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> s = StepLR(opt, step_size=2, gamma=0.5)
        >>> out = []
        >>> for _ in range(4):
        ...     opt.step(); s.step(); out.append(s.get_last_lr()[0])
        >>> out
        [1.0, 0.5, 0.5, 0.25]
    """

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be an integer >= 1, got {step_size!r}")
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _build(self) -> None:
        # lrkit's step_decay is torch's closed form for 0 < gamma <= 1.
        fits = isinstance(self.gamma, (int, float)) and 0 < self.gamma <= 1
        self._core = _core.step_decay(1.0, self.step_size, self.gamma) if fits else None

    def _closed_values(self, t: int) -> list[float]:
        f = self._core._at(t) if self._core is not None else self.gamma ** (t // self.step_size)
        return [b * f for b in self.base_lrs]

    def _relative(self, prev: list[float], t: int, initial: bool) -> list[float]:
        if t == 0 or t % self.step_size != 0:
            return list(prev)
        return [p * self.gamma for p in prev]

    def _torch_closed(self, t: int) -> list[float]:
        return [b * self.gamma ** (t // self.step_size) for b in self.base_lrs]


class MultiStepLR(_DropIn):
    """torch's MultiStepLR: ``lr = initial_lr * gamma ** (milestones reached)``.

    A milestone listed twice counts twice, as in torch.

    Args:
        optimizer: the wrapped optimizer.
        milestones: the steps at which to decay (any order; repeats count).
        gamma: the factor applied at each milestone.
        last_epoch: the index of the last step taken; -1 (default) starts afresh.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> s = MultiStepLR(opt, milestones=[1, 3], gamma=0.5)
        >>> out = []
        >>> for _ in range(4):
        ...     opt.step(); s.step(); out.append(s.get_last_lr()[0])
        >>> out
        [0.5, 0.5, 0.25, 0.25]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Iterable[int],
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        ms = sorted(int(m) for m in milestones)
        self.milestones = ms
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _build(self) -> None:
        self._counts = Counter(self.milestones)
        distinct = len(self._counts) == len(self.milestones)
        fits = (
            distinct
            and all(m >= 1 for m in self.milestones)
            and isinstance(self.gamma, (int, float))
            and self.gamma > 0
        )
        self._core = _core.multistep(1.0, tuple(self.milestones), self.gamma) if fits else None

    _not_state = ("optimizer", "_core", "_counts")

    def _closed_values(self, t: int) -> list[float]:
        if self._core is not None:
            f = self._core._at(t)
        else:
            reached = bisect.bisect_right(self.milestones, t) - bisect.bisect_left(
                self.milestones, 0
            )
            f = self.gamma**reached
        return [b * f for b in self.base_lrs]

    def _relative(self, prev: list[float], t: int, initial: bool) -> list[float]:
        k = self._counts.get(t, 0)
        if not k:
            return list(prev)
        return [p * self.gamma**k for p in prev]

    def _torch_closed(self, t: int) -> list[float]:
        k = bisect.bisect_right(self.milestones, t)
        return [b * self.gamma**k for b in self.base_lrs]

    def _load_extra(self, state: dict[str, Any]) -> None:
        ms = state.get("milestones")
        if isinstance(ms, Mapping):  # torch keeps a Counter
            state["milestones"] = sorted(int(m) for m, k in ms.items() for _ in range(k))


class ConstantLR(_DropIn):
    """torch's ConstantLR: ``initial_lr * factor`` until ``total_iters``, then ``initial_lr``.

    As torch: with ``total_iters=0`` the lr stays at ``initial_lr * factor``.

    Args:
        optimizer: the wrapped optimizer.
        factor: the multiplier before ``total_iters``, in [0, 1].
        total_iters: the step at which the lr goes back to ``initial_lr``.
        last_epoch: the index of the last step taken; -1 (default) starts afresh.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> s = ConstantLR(opt, factor=0.5, total_iters=2)
        >>> out = [s.get_last_lr()[0]]
        >>> for _ in range(3):
        ...     opt.step(); s.step(); out.append(s.get_last_lr()[0])
        >>> out
        [0.5, 0.5, 1.0, 1.0]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        factor: float = 1.0 / 3,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        if not 0 <= factor <= 1:
            raise ValueError(f"ConstantLR: factor must be in [0, 1], got {factor!r}")
        self.factor = factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _closed_values(self, t: int) -> list[float]:
        f = self.factor if (t < self.total_iters or self.total_iters == 0) else 1.0
        return [b * f for b in self.base_lrs]

    def _relative(self, prev: list[float], t: int, initial: bool) -> list[float]:
        if t == 0:
            return [p * self.factor for p in prev]
        if t != self.total_iters:
            return list(prev)
        if self.factor == 0:
            raise ZeroDivisionError(
                "ConstantLR: factor=0 cannot be undone at total_iters by dividing the current "
                "lr by the factor (torch's rule); use factor > 0"
            )
        return [p * (1.0 / self.factor) for p in prev]

    def _torch_closed(self, t: int) -> list[float]:
        f = self.factor + (t >= self.total_iters) * (1 - self.factor)
        return [b * f for b in self.base_lrs]


class LinearLR(_DropIn):
    """torch's LinearLR: the factor goes linearly from ``start_factor`` to ``end_factor``.

        lr(t) = initial_lr * (start + (end - start) * min(t, total_iters) / total_iters)

    Args:
        optimizer: the wrapped optimizer.
        start_factor: the multiplier at step 0, in (0, 1].
        end_factor: the multiplier from ``total_iters`` on, in [0, 1].
        total_iters: steps from start to end.
        last_epoch: the index of the last step taken; -1 (default) starts afresh.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> s = LinearLR(opt, start_factor=0.5, total_iters=2)
        >>> out = [s.get_last_lr()[0]]
        >>> for _ in range(3):
        ...     opt.step(); s.step(); out.append(s.get_last_lr()[0])
        >>> out
        [0.5, 0.75, 1.0, 1.0]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        if not 0 < start_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor!r}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor!r}")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _build(self) -> None:
        fits = isinstance(self.total_iters, int) and self.total_iters >= 1
        self._core = (
            _core.linear(self.start_factor, self.end_factor, self.total_iters) if fits else None
        )

    def _has_closed(self) -> bool:
        return self._core is not None

    def _closed_values(self, t: int) -> list[float]:
        f = self._core._at(t)
        return [b * f for b in self.base_lrs]

    def _relative(self, prev: list[float], t: int, initial: bool) -> list[float]:
        s, e, n = self.start_factor, self.end_factor, self.total_iters
        if t == 0:
            return [p * s for p in prev]
        if initial or t > n:
            return list(prev)
        ratio = 1.0 + (e - s) / (n * s + (t - 1) * (e - s))
        return [p * ratio for p in prev]

    def _torch_closed(self, t: int) -> list[float]:
        s, e, n = self.start_factor, self.end_factor, self.total_iters
        return [b * (s + (e - s) * min(n, t) / n) for b in self.base_lrs]


class ExponentialLR(_DropIn):
    """torch's ExponentialLR: ``lr = initial_lr * gamma ** step``.

    Args:
        optimizer: the wrapped optimizer.
        gamma: the factor applied at every step.
        last_epoch: the index of the last step taken; -1 (default) starts afresh.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> s = ExponentialLR(opt, gamma=0.5)
        >>> opt.step(); s.step(); opt.step(); s.step(); s.get_last_lr()
        [0.25]
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _build(self) -> None:
        fits = isinstance(self.gamma, (int, float)) and 0 < self.gamma <= 1
        self._core = _core.exponential(1.0, self.gamma) if fits else None

    def _closed_values(self, t: int) -> list[float]:
        f = self._core._at(t) if self._core is not None else self.gamma**t
        return [b * f for b in self.base_lrs]

    def _relative(self, prev: list[float], t: int, initial: bool) -> list[float]:
        if initial:
            return list(prev)
        return [p * self.gamma for p in prev]

    def _torch_closed(self, t: int) -> list[float]:
        return [b * self.gamma**t for b in self.base_lrs]


class PolynomialLR(_DropIn):
    """torch's PolynomialLR: ``initial_lr * (1 - min(t, total_iters) / total_iters) ** power``.

    Args:
        optimizer: the wrapped optimizer.
        total_iters: steps until the lr reaches 0.
        power: the polynomial's power.
        last_epoch: the index of the last step taken; -1 (default) starts afresh.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> s = PolynomialLR(opt, total_iters=2, power=2.0)
        >>> opt.step(); s.step(); s.get_last_lr()
        [0.25]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_iters: int = 5,
        power: float = 1.0,
        last_epoch: int = -1,
    ) -> None:
        self.total_iters = total_iters
        self.power = power
        super().__init__(optimizer, last_epoch)

    def _build(self) -> None:
        fits = (
            isinstance(self.total_iters, int)
            and self.total_iters >= 1
            and isinstance(self.power, (int, float))
            and self.power > 0
        )
        self._core = _core.polynomial(1.0, self.total_iters, self.power) if fits else None

    def _has_closed(self) -> bool:
        return self._core is not None

    def _closed_values(self, t: int) -> list[float]:
        f = self._core._at(t)
        return [b * f for b in self.base_lrs]

    def _relative(self, prev: list[float], t: int, initial: bool) -> list[float]:
        n = self.total_iters
        if initial or t > n:
            return list(prev)
        ratio = ((1.0 - t / n) / (1.0 - (t - 1) / n)) ** self.power
        return [p * ratio for p in prev]

    def _torch_closed(self, t: int) -> list[float]:
        n = self.total_iters
        return [b * (1.0 - min(n, t) / n) ** self.power for b in self.base_lrs]


class CosineAnnealingLR(_DropIn):
    """torch's CosineAnnealingLR, rising again past ``T_max`` as torch does.

        lr(t) = eta_min + (initial_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2

    for every t >= 0: after ``T_max`` the cosine keeps going and the lr climbs
    back to ``initial_lr`` at ``2 * T_max`` (use :func:`lrkit.cosine` for a
    schedule that holds ``eta_min``). Up to ``T_max`` the values are computed
    from the step; past it, from the previous value with torch's update.

    Args:
        optimizer: the wrapped optimizer.
        T_max: half the cosine's period, in steps.
        eta_min: the lr at the bottom.
        last_epoch: the index of the last step taken; -1 (default) starts afresh.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> s = CosineAnnealingLR(opt, T_max=2)
        >>> out = []
        >>> for _ in range(4):
        ...     opt.step(); s.step(); out.append(round(s.get_last_lr()[0], 12))
        >>> out
        [0.5, 0.0, 0.5, 1.0]
    """

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def _build(self) -> None:
        self._core = None
        self._closed_limit = self.T_max

    def _closed_values(self, t: int) -> list[float]:
        eta = self.eta_min
        c = (1 + math.cos(math.pi * t / self.T_max)) / 2
        return [eta + (b - eta) * c for b in self.base_lrs]

    def _relative(self, prev: list[float], t: int, initial: bool) -> list[float]:
        eta, n = self.eta_min, self.T_max
        if initial:
            return list(prev)
        if (t - 1 - n) % (2 * n) == 0:  # the bottom of the cosine: torch's additive step
            rise = (1 - math.cos(math.pi / n)) / 2
            return [p + (b - eta) * rise for p, b in zip(prev, self.base_lrs, strict=False)]
        ratio = (1 + math.cos(math.pi * t / n)) / (1 + math.cos(math.pi * (t - 1) / n))
        return [ratio * (p - eta) + eta for p in prev]

    def _torch_closed(self, t: int) -> list[float]:
        return self._closed_values(t)


# ---------------------------------------------------------------------------
# Cycles: CyclicLR, OneCycleLR, CosineAnnealingWarmRestarts
# ---------------------------------------------------------------------------


def _momentum_groups(name: str, optimizer: Optimizer) -> bool:
    """True for beta1 (Adam-like), False for momentum (SGD-like); ValueError otherwise."""
    defaults = optimizer.defaults
    if "momentum" not in defaults and "betas" not in defaults:
        raise ValueError(
            f"{name}: cycle_momentum=True needs an optimizer with 'momentum' or 'betas', but "
            f"{type(optimizer).__name__} has neither; pass cycle_momentum=False"
        )
    return "betas" in defaults


def _check_cycle_momentum(name: str, ours: bool, state: Mapping[str, Any]) -> None:
    saved = state.get("cycle_momentum", ours)
    if bool(saved) != bool(ours):
        raise ValueError(
            f"{name}: the state was saved with cycle_momentum={saved!r}, this scheduler has "
            f"cycle_momentum={ours!r}; build it with the same arguments as the saved one"
        )


def _scale_triangular(x: float) -> float:
    return 1.0


def _scale_triangular2(x: float) -> float:
    return 1 / (2.0 ** (x - 1))


def _scale_exp_range(x: float) -> float:  # the drop-in multiplies by gamma ** x itself
    return 1.0


#: CyclicLR's built-in modes as functions (torch exposes them as ``_scale_fn_ref``).
_MODE_SCALES: dict[str, Callable[[float], float]] = {
    "triangular": _scale_triangular,
    "triangular2": _scale_triangular2,
    "exp_range": _scale_exp_range,
}


class CyclicLR(_DropIn):
    """torch's CyclicLR (Smith 2017), with momentum / beta1 cycling and custom scale_fn.

    With ``total = step_size_up + step_size_down`` and ``x`` the position in
    the current cycle (``cycle = floor(1 + t / total)``):

        lr(t) = base_lr + (max_lr - base_lr) * height(x) * scale
        momentum(t) = max_momentum - (max_momentum - base_momentum) * height(x) * scale

    ``scale`` is ``scale_fn(cycle)`` or ``scale_fn(t)`` by ``scale_mode``;
    the modes ``triangular`` (1), ``triangular2`` (halves each cycle) and
    ``exp_range`` (``gamma ** t``) pick it for you.

    Args:
        optimizer: the wrapped optimizer.
        base_lr: the low end of the cycle (one value, or one per group).
        max_lr: the high end (one value, or one per group).
        step_size_up: steps from low to high.
        step_size_down: steps from high to low (default: ``step_size_up``).
        mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: ``exp_range``'s factor per step.
        scale_fn: a custom amplitude scale (overrides ``mode``).
        scale_mode: ``"cycle"`` or ``"iterations"``: what ``scale_fn`` receives.
        cycle_momentum: cycle momentum (or beta1) opposite to the lr.
        base_momentum: the momentum at the lr's peak.
        max_momentum: the momentum at the lr's low end.
        last_epoch: the index of the last step taken; -1 (default) starts afresh.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0, momentum=0.9)
        >>> s = CyclicLR(opt, base_lr=0.1, max_lr=1.0, step_size_up=2)
        >>> out = []
        >>> for _ in range(4):
        ...     opt.step(); s.step(); out.append(round(s.get_last_lr()[0], 12))
        >>> out
        [0.55, 1.0, 0.55, 0.1]
    """

    _not_state = ("optimizer", "_core", "_scale_fn_custom", "_memo")
    _cycles_momentum = True

    def __init__(
        self,
        optimizer: Optimizer,
        base_lr: float | list[float],
        max_lr: float | list[float],
        step_size_up: int = 2000,
        step_size_down: int | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        scale_fn: Callable[[float], float] | None = None,
        scale_mode: str = "cycle",
        cycle_momentum: bool = True,
        base_momentum: float = 0.8,
        max_momentum: float = 0.9,
        last_epoch: int = -1,
    ) -> None:
        name = "CyclicLR"
        _check_optimizer(name, optimizer)
        base_lrs = [float(v) for v in _per_group(name, "base_lr", optimizer, base_lr)]
        if last_epoch == -1:
            for lr, group in zip(base_lrs, optimizer.param_groups, strict=False):
                _set(group, "lr", lr)
        self.max_lrs = [float(v) for v in _per_group(name, "max_lr", optimizer, max_lr)]
        up = float(step_size_up)
        down = float(step_size_down) if step_size_down is not None else up
        if up <= 0 or down <= 0:
            raise ValueError(
                f"{name}: step_size_up and step_size_down must be > 0, got {up!r} and {down!r}"
            )
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        if mode not in ("triangular", "triangular2", "exp_range") and scale_fn is None:
            raise ValueError(
                f"{name}: mode must be one of 'triangular', 'triangular2', 'exp_range' "
                f"(or pass scale_fn), got {mode!r}"
            )
        if scale_mode not in ("cycle", "iterations"):
            raise ValueError(
                f"{name}: scale_mode must be 'cycle' or 'iterations', got {scale_mode!r}"
            )
        self.mode = mode
        self.gamma = gamma
        self._scale_fn_custom = scale_fn
        self.scale_mode = scale_mode
        self._fix_scale_mode()
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.use_beta1 = _momentum_groups(name, optimizer)
            self.base_momentums = _per_group(name, "base_momentum", optimizer, base_momentum)
            self.max_momentums = _per_group(name, "max_momentum", optimizer, max_momentum)
            if last_epoch == -1:
                for mx, bs, group in zip(
                    self.max_momentums, self.base_momentums, optimizer.param_groups, strict=False
                ):
                    if self.use_beta1:
                        group["betas"] = (mx, *group["betas"][1:])
                    else:
                        group["momentum"] = mx
                    group["max_momentum"] = mx
                    group["base_momentum"] = bs
        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs

    @property
    def _scale_fn_ref(self) -> Callable[[float], float] | None:
        """torch's name for the built-in mode's scale function (``None`` with a custom one)."""
        if self._scale_fn_custom is not None:
            return None
        return _MODE_SCALES[self.mode]

    def _fix_scale_mode(self) -> None:
        if self._scale_fn_custom is None:
            self.scale_mode = "iterations" if self.mode == "exp_range" else "cycle"

    def scale_fn(self, x: float) -> float:
        """The amplitude scale at ``x`` (a cycle number or a step, by ``scale_mode``)."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        return self.gamma**x

    def _shape(self, t: int) -> tuple[float, float]:
        """(height in [0, 1], amplitude scale) at step t (the last one is remembered)."""
        memo = self._memo
        if memo[0] == t:
            return memo[1], memo[2]
        cycle = math.floor(1 + t / self.total_size)
        x = 1.0 + t / self.total_size - cycle
        height = x / self.step_ratio if x <= self.step_ratio else (x - 1) / (self.step_ratio - 1)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else t)
        self._memo = (t, height, scale)
        return height, scale

    def _relative(self, prev: list[float], t: int, initial: bool) -> list[float]:
        height, scale = self._shape(t)
        return [
            b + (m - b) * height * scale for b, m in zip(self.base_lrs, self.max_lrs, strict=False)
        ]

    def _momentum(self) -> list[float] | None:
        if not self.cycle_momentum:
            return None
        height, scale = self._shape(self.last_epoch)
        return [
            mx - (mx - bs) * height * scale
            for bs, mx in zip(self.base_momentums, self.max_momentums, strict=False)
        ]

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        fn = self._scale_fn_custom
        out["_scale_fn_custom"] = (
            None if fn is None or isinstance(fn, types.FunctionType) else dict(fn.__dict__)
        )
        return out

    def _load_extra(self, state: dict[str, Any]) -> None:
        _check_cycle_momentum("CyclicLR", self.cycle_momentum, state)
        saved = state.pop("_scale_fn_custom", None)
        state.pop("_scale_fn_ref", None)
        if saved is not None and self._scale_fn_custom is not None:
            self._scale_fn_custom.__dict__.update(saved)

    #: (step, height, amplitude scale) from the last ``_shape`` call (set in ``_build``)
    _memo: tuple[float, float, float]

    def _build(self) -> None:
        self._core = None
        self._memo = (-1.0, 0.0, 0.0)


class OneCycleLR(_DropIn):
    """torch's OneCycleLR (Smith & Topin 2018), with momentum / beta1 cycling.

    The lr goes from ``max_lr / div_factor`` up to ``max_lr`` over the first
    ``pct_start * total_steps - 1`` steps and down to ``initial_lr /
    final_div_factor`` at step ``total_steps - 1`` (three phases when
    ``three_phase``); momentum moves the opposite way between
    ``max_momentum`` and ``base_momentum``. Each phase anneals by cosine or
    linearly. ``total_steps`` or ``epochs * steps_per_epoch`` sets the length;
    stepping past ``total_steps`` raises ValueError, as in torch.

    Args:
        optimizer: the wrapped optimizer.
        max_lr: the peak lr (one value, or one per group).
        total_steps: the cycle's length in steps; or give ``epochs`` and
            ``steps_per_epoch``.
        epochs: number of epochs (with ``steps_per_epoch``).
        steps_per_epoch: steps per epoch (with ``epochs``).
        pct_start: the fraction of the cycle spent rising, a float in [0, 1].
        anneal_strategy: ``"cos"`` or ``"linear"``.
        cycle_momentum: cycle momentum (or beta1) opposite to the lr.
        base_momentum: the momentum at the lr's peak.
        max_momentum: the momentum at the start and the end.
        div_factor: ``initial_lr = max_lr / div_factor``.
        final_div_factor: the last lr is ``initial_lr / final_div_factor``.
        three_phase: go back down to ``initial_lr`` before the final anneal.
        last_epoch: the index of the last step taken; -1 (default) starts afresh.

    Raises:
        ValueError: stepping past ``total_steps`` (as torch), or bad arguments.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
        >>> s = OneCycleLR(opt, max_lr=1.0, total_steps=10)
        >>> round(s.get_last_lr()[0], 12), opt.param_groups[0]["momentum"]
        (0.04, 0.95)
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | list[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        name = "OneCycleLR"
        _check_optimizer(name, optimizer)
        if total_steps is not None:
            if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
                raise ValueError(
                    f"{name}: total_steps must be an integer >= 1, got {total_steps!r}"
                )
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            for arg, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"{name}: {arg} must be an integer >= 1, got {value!r}")
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError(
                f"{name}: pass total_steps, or both epochs and steps_per_epoch "
                f"(got total_steps={total_steps!r}, epochs={epochs!r}, "
                f"steps_per_epoch={steps_per_epoch!r})"
            )
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"{name}: pct_start must be a float in [0, 1], got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"{name}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}"
            )
        self.pct_start = pct_start
        self.anneal_strategy = anneal_strategy
        self._anneal_func_type = anneal_strategy  # torch's name for it
        self.three_phase = bool(three_phase)
        n = self.total_steps
        if self.three_phase:
            self._ends = [float(pct_start * n) - 1, float(2 * pct_start * n) - 2, n - 1]
        else:
            self._ends = [float(pct_start * n) - 1, n - 1]
        max_lrs = [float(v) for v in _per_group(name, "max_lr", optimizer, max_lr)]
        if last_epoch == -1:
            for mx, group in zip(max_lrs, optimizer.param_groups, strict=False):
                group["initial_lr"] = mx / div_factor
                group["max_lr"] = mx
                group["min_lr"] = group["initial_lr"] / final_div_factor
        # torch reads these from the groups at every step; lrkit keeps its own copies.
        groups = optimizer.param_groups
        self._initial_lrs = [float(_as_float(g["initial_lr"])) for g in groups]
        self.max_lrs = [float(_as_float(g["max_lr"])) for g in groups]
        self.min_lrs = [float(_as_float(g["min_lr"])) for g in groups]
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.use_beta1 = _momentum_groups(name, optimizer)
            mxs = _per_group(name, "max_momentum", optimizer, max_momentum)
            bss = _per_group(name, "base_momentum", optimizer, base_momentum)
            if last_epoch == -1:
                for mx, bs, group in zip(mxs, bss, groups, strict=False):
                    if self.use_beta1:
                        group["betas"] = (mx, *group["betas"][1:])
                    else:
                        group["momentum"] = mx
                    group["max_momentum"] = mx
                    group["base_momentum"] = bs
            self.max_momentums = [float(g["max_momentum"]) for g in groups]
            self.base_momentums = [float(g["base_momentum"]) for g in groups]
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    _not_state = ("optimizer", "_core", "_lr_pts", "_m_pts", "_memo")
    _cycles_momentum = True

    def _build(self) -> None:
        self._core = None
        self._memo: tuple[float, int, float] = (-1.0, 0, 0.0)
        groups = range(len(self.max_lrs))
        self._lr_pts = [self._lr_points(g) for g in groups]
        self._m_pts = [self._momentum_points(g) for g in groups] if self.cycle_momentum else []

    def _check_total(self, t: float) -> None:
        if t > self.total_steps:
            raise ValueError(
                f"OneCycleLR: stepped to step {t}, past total_steps={self.total_steps} (the "
                f"last step allowed is {self.total_steps}); make total_steps (or epochs * "
                "steps_per_epoch) cover every scheduler.step() call"
            )

    def _phase(self, t: int) -> tuple[int, float]:
        """(phase index, fraction of it done) at step t."""
        memo = self._memo
        if memo[0] == t:
            return memo[1], memo[2]
        self._check_total(t)
        begin = 0.0
        last = len(self._ends) - 1
        for i, end in enumerate(self._ends):
            if t <= end or i == last:
                if end == begin:
                    raise ZeroDivisionError(
                        f"OneCycleLR: phase {i} has zero length (pct_start={self.pct_start}, "
                        f"total_steps={self.total_steps}); choose pct_start so that every "
                        "phase spans at least one step"
                    )
                pct = (t - begin) / (end - begin)
                self._memo = (t, i, pct)
                return i, pct
            begin = end
        raise AssertionError("unreachable")  # pragma: no cover

    def _lr_points(self, g: int) -> list[tuple[float, float]]:
        lo, hi, end = self._initial_lrs[g], self.max_lrs[g], self.min_lrs[g]
        if self.three_phase:
            return [(lo, hi), (hi, lo), (lo, end)]
        return [(lo, hi), (hi, end)]

    def _momentum_points(self, g: int) -> list[tuple[float, float]]:
        hi, lo = self.max_momentums[g], self.base_momentums[g]
        if self.three_phase:
            return [(hi, lo), (lo, hi), (hi, hi)]
        return [(hi, lo), (lo, hi)]

    def _relative(self, prev: list[float], t: int, initial: bool) -> list[float]:
        i, pct = self._phase(t)
        anneal = self._anneal
        return [anneal(*points[i], pct) for points in self._lr_pts]

    def _momentum(self) -> list[float] | None:
        if not self.cycle_momentum:
            return None
        i, pct = self._phase(self.last_epoch)
        anneal = self._anneal
        return [anneal(*points[i], pct) for points in self._m_pts]

    def step(self, epoch: int | None = None) -> None:
        """Advance one step; ValueError (torch's type) past ``total_steps``."""
        self._check_total(self.last_epoch + 1 if epoch is None else epoch)  # before any change
        super().step(epoch)

    @staticmethod
    def _annealing_cos(start: float, end: float, pct: float) -> float:
        """torch's cosine anneal from ``start`` to ``end`` as ``pct`` goes 0 -> 1."""
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    @staticmethod
    def _annealing_linear(start: float, end: float, pct: float) -> float:
        """torch's linear anneal from ``start`` to ``end`` as ``pct`` goes 0 -> 1."""
        return (end - start) * pct + start

    def _load_extra(self, state: dict[str, Any]) -> None:
        _check_cycle_momentum("OneCycleLR", self.cycle_momentum, state)
        legacy = state.pop("anneal_func", None)  # older torch pickled the function itself
        if legacy is not None and "_anneal_func_type" not in state:
            name = getattr(legacy, "__name__", "")
            if "cos" in name or "linear" in name:
                state["anneal_strategy"] = "cos" if "cos" in name else "linear"
                state["_anneal_func_type"] = state["anneal_strategy"]
        if "_initial_lrs" in state:  # lrkit's own state
            return
        # torch's state: its phases give the phase ends (and three_phase), its
        # _anneal_func_type the strategy; its base_lrs are the groups'
        # initial_lr (max_lr / div_factor). torch keeps max_lr, min_lr and the
        # momentum bounds in the param groups, not in its state: those stay as
        # this scheduler's constructor computed them from the same arguments.
        phases = state.pop("_schedule_phases", None)
        if phases is not None:
            state["_ends"] = [_as_float(p["end_step"]) for p in phases]
            state["three_phase"] = len(phases) == 3
        strategy = state.get("_anneal_func_type")
        if strategy is not None:
            state["anneal_strategy"] = strategy
        if "base_lrs" in state:
            state["_initial_lrs"] = [float(_as_float(v)) for v in state["base_lrs"]]
        n = len(self.max_lrs)
        if len(state.get("_initial_lrs", self._initial_lrs)) != n:
            raise ValueError(
                f"OneCycleLR: the state is for {len(state['_initial_lrs'])} param groups, "
                f"this scheduler has {n}"
            )


class CosineAnnealingWarmRestarts(_DropIn):
    """torch's CosineAnnealingWarmRestarts (SGDR), including fractional ``step(epoch)``.

        lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2

    ``T_cur`` counts steps since the last restart and ``T_i`` is the current
    period (``T_0``, then times ``T_mult`` after each restart). ``step(epoch)``
    accepts a float epoch, e.g. ``epoch + i / iters_per_epoch``.

    Args:
        optimizer: the wrapped optimizer.
        T_0: the first period, in steps (>= 1).
        T_mult: each period is this many times the previous one (>= 1).
        eta_min: the lr at the bottom.
        last_epoch: the index of the last step taken; -1 (default) starts afresh.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> s = CosineAnnealingWarmRestarts(opt, T_0=2)
        >>> out = []
        >>> for _ in range(3):
        ...     opt.step(); s.step(); out.append(round(s.get_last_lr()[0], 12))
        >>> out
        [0.5, 1.0, 0.5]
        >>> s.step(0.5); round(s.get_last_lr()[0], 6)
        0.853553
    """

    def __init__(
        self,
        optimizer: Optimizer,
        T_0: int,
        T_mult: int = 1,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        name = "CosineAnnealingWarmRestarts"
        if isinstance(T_0, bool) or not isinstance(T_0, int) or T_0 <= 0:
            raise ValueError(f"{name}: T_0 must be an integer >= 1, got {T_0!r}")
        if isinstance(T_mult, bool) or not isinstance(T_mult, int) or T_mult < 1:
            raise ValueError(f"{name}: T_mult must be an integer >= 1, got {T_mult!r}")
        if isinstance(eta_min, bool) or not isinstance(eta_min, (float, int)):
            raise ValueError(f"{name}: eta_min must be a number, got {eta_min!r}")
        self.T_0 = T_0
        self.T_i = T_0
        self.T_mult = T_mult
        self.eta_min = eta_min
        self.T_cur: float = last_epoch
        super().__init__(optimizer, last_epoch)

    def _lrs(self) -> list[float]:
        eta = self.eta_min
        c = (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
        return [eta + (b - eta) * c for b in self.base_lrs]

    def _move(self, epoch: float | None) -> None:
        """Update T_cur, T_i and last_epoch for one step (torch's rules)."""
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            if epoch < 0:
                raise ValueError(f"CosineAnnealingWarmRestarts: epoch must be >= 0, got {epoch!r}")
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    k = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult**k - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult**k
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)

    def _restart(self, prev: list[float]) -> list[float]:
        self._step_count = 1
        self._move(None)
        self._last_lr = self._lrs()
        self._write()
        return self._last_lr

    def _advance(self, prev: list[float]) -> list[float]:
        self._step_count += 1
        self._move(None)
        self._last_lr = self._lrs()
        return self._last_lr

    def _jump(self, epoch: int, prev: list[float]) -> list[float]:
        self.last_epoch = epoch  # torch's _update_lr(epoch) leaves T_cur and T_i alone
        self._last_lr = self._lrs()
        return self._last_lr

    def _relative(self, prev: list[float], t: int, initial: bool) -> list[float]:
        return self._lrs()

    def step(self, epoch: float | None = None) -> None:  # type: ignore[override]
        """Advance one step, or go to ``epoch`` (a float is allowed: a fraction of a period)."""
        self._check_order()
        self._step_count += 1
        self._move(epoch)
        self._last_lr = self._lrs()
        self._write()


# ---------------------------------------------------------------------------
# Composites: SequentialLR, ChainedScheduler
# ---------------------------------------------------------------------------


def _check_children(name: str, schedulers: Sequence[Any], optimizer: Optimizer | None) -> None:
    if len(schedulers) < 1:
        raise ValueError(f"{name}: schedulers must hold at least one scheduler, got none")
    for i, s in enumerate(schedulers):
        if isinstance(s, _TorchReduceLROnPlateau):
            raise ValueError(
                f"{name}: schedulers[{i}] is a ReduceLROnPlateau, which needs a metric at "
                "each step and cannot be sequenced or chained"
            )
        if not isinstance(s, (_DropIn, _Composite)):
            raise TypeError(
                f"{name}: schedulers[{i}] is {type(s).__module__}.{type(s).__name__}; "
                "lrkit's composites take lrkit.torch drop-ins (import it from lrkit.torch)"
            )
        if optimizer is not None and s.optimizer is not optimizer:
            raise ValueError(
                f"{name}: schedulers[{i}] ({type(s).__name__}) drives a different optimizer "
                "than the others; all must share one"
            )


class _Composite(LRScheduler):
    """Shared parts of SequentialLR and ChainedScheduler: own values, children's states."""

    _schedulers: list[Any]
    _last_lr: list[float]  # type: ignore[assignment]  # torch types lrs as float | Tensor; lrkit's are floats

    def get_last_lr(self) -> list[float]:  # type: ignore[override]  # torch types lrs as float | Tensor; lrkit's are floats
        """The lrs set last, one per param group."""
        return list(self._last_lr)

    def get_lr(self) -> list[float]:  # type: ignore[override]  # torch types lrs as float | Tensor; lrkit's are floats
        """The lrs for the current step (the same as :meth:`get_last_lr`)."""
        return list(self._last_lr)

    def _write(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=False):
            current = group["lr"]
            if type(current) is not float and isinstance(current, torch.Tensor):
                current.fill_(lr)  # the optimizer keeps a tensor lr: update it in place
            else:
                group["lr"] = lr

    def _check_order(self) -> None:
        if self._step_count == 0 and _stepped_out_of_order_or_replaced(self.optimizer):
            _warn_order(self)

    def state_dict(self) -> dict[str, Any]:
        """Own state plus each child's, as plain data."""
        out = {
            k: (list(v) if isinstance(v, list) else v)
            for k, v in self.__dict__.items()
            if k not in ("optimizer", "_schedulers")
        }
        out["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (children too) and write the lrs into the optimizer.

        torch's SequentialLR / ChainedScheduler states load too: their children's
        states go to the children (lrkit drop-ins, which accept torch's states),
        and keys this composite does not keep are dropped (see _DropIn.load_state_dict).
        """
        state = dict(state_dict)
        children = state.pop("_schedulers")
        for key in [k for k in state if k == "optimizer" or k not in self.__dict__]:
            del state[key]
        if len(children) != len(self._schedulers):
            raise ValueError(
                f"{type(self).__name__}: the state has {len(children)} schedulers, "
                f"this one has {len(self._schedulers)}"
            )
        for s, child in zip(self._schedulers, children, strict=False):
            s.load_state_dict(child)
        state["_last_lr"] = [float(_as_float(v)) for v in state["_last_lr"]]
        state.setdefault("_step_count", 1)
        self.__dict__.update(state)
        self._write()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _watch(self.optimizer)

    def _momentum(self) -> None:
        return None


def _undo(scheduler: Any) -> None:
    """torch's ``recursive_undo``: step every leaf scheduler's counter back by one."""
    if isinstance(scheduler, _Composite):
        for s in scheduler._schedulers:
            _undo(s)
    else:
        scheduler.last_epoch -= 1


class SequentialLR(_Composite):
    """torch's SequentialLR over lrkit drop-ins: each runs in turn, switching at ``milestones``.

    At a milestone the next scheduler starts at its own step 0 (torch's
    closed form where it has one), then continues from the values this
    SequentialLR keeps.

    Args:
        optimizer: the wrapped optimizer.
        schedulers: lrkit.torch drop-ins on ``optimizer``, run in turn.
        milestones: the steps at which the next one starts (one fewer).
        last_epoch: as in torch; leave at -1.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> warm = LinearLR(opt, start_factor=0.5, total_iters=2)
        >>> decay = ExponentialLR(opt, gamma=0.5)
        >>> s = SequentialLR(opt, [warm, decay], milestones=[2])
        >>> out = [s.get_last_lr()[0]]
        >>> for _ in range(4):
        ...     opt.step(); s.step(); out.append(s.get_last_lr()[0])
        >>> out
        [0.5, 0.75, 1.0, 0.5, 0.25]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedulers: list[Any],
        milestones: list[int],
        last_epoch: int = -1,
    ) -> None:
        name = "SequentialLR"
        _check_optimizer(name, optimizer)
        _check_children(name, schedulers, optimizer)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"{name}: milestones must have one entry fewer than schedulers "
                f"({len(schedulers) - 1}), got {len(milestones)}: {list(milestones)!r}"
            )
        self.optimizer = optimizer
        self._schedulers = list(schedulers)
        self._milestones = [int(m) for m in milestones]
        self.last_epoch = last_epoch + 1
        self._step_count = 0
        # torch restarts from each group's initial lr and rewinds the children by one.
        start = [float(_as_float(g["initial_lr"])) for g in optimizer.param_groups]
        for s in self._schedulers:
            _undo(s)
        idx = bisect.bisect_right(self._milestones, 0)
        self._last_lr = self._schedulers[idx]._restart(start)
        _watch(optimizer)
        self._write()

    def _restart(self, prev: list[float]) -> list[float]:
        idx = bisect.bisect_right(self._milestones, self.last_epoch)
        self._last_lr = self._schedulers[idx]._restart(prev)
        return self._last_lr

    def _advance(self, prev: list[float]) -> list[float]:
        self.last_epoch += 1
        self._step_count += 1
        idx = bisect.bisect_right(self._milestones, self.last_epoch)
        child = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            self._last_lr = child._jump(0, prev)
        else:
            self._last_lr = child._advance(prev)
        return self._last_lr

    def _jump(self, epoch: int, prev: list[float]) -> list[float]:
        raise TypeError(
            "SequentialLR: a SequentialLR cannot start at a milestone of another SequentialLR "
            "(torch fails there too); put its schedulers in the outer one instead"
        )

    def step(self) -> None:  # type: ignore[override]
        """Advance the active scheduler (or start the next one at a milestone)."""
        self._check_order()
        self._advance(self._last_lr)
        self._write()


class ChainedScheduler(_Composite):
    """torch's ChainedScheduler over lrkit drop-ins: every scheduler steps, in order.

    As in torch, each scheduler's update applies to the values the previous
    one left, so relative updates multiply (e.g. ConstantLR x ExponentialLR);
    the values are the chain's own, never read back from the optimizer.

    Args:
        schedulers: lrkit.torch drop-ins on one optimizer, stepped in order.
        optimizer: that optimizer (default: the first scheduler's).

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> a = ConstantLR(opt, factor=0.5, total_iters=2)
        >>> b = ExponentialLR(opt, gamma=0.5)
        >>> s = ChainedScheduler([a, b])
        >>> out = [s.get_last_lr()[0]]
        >>> for _ in range(3):
        ...     opt.step(); s.step(); out.append(s.get_last_lr()[0])
        >>> out
        [0.5, 0.25, 0.25, 0.125]
    """

    def __init__(self, schedulers: Sequence[Any], optimizer: Optimizer | None = None) -> None:
        name = "ChainedScheduler"
        if len(schedulers) < 1:
            raise ValueError(f"{name}: schedulers must hold at least one scheduler, got none")
        optimizer = optimizer or schedulers[0].optimizer
        _check_children(name, schedulers, optimizer)
        self.optimizer = optimizer
        self._schedulers = list(schedulers)
        self._step_count = 0
        self._last_lr = list(self._schedulers[-1]._last_lr)
        _watch(optimizer)

    def _restart(self, prev: list[float]) -> list[float]:
        values = prev
        for s in self._schedulers:
            values = s._advance(values)
        self._last_lr = values
        return values

    def _advance(self, prev: list[float]) -> list[float]:
        self._step_count += 1
        values = prev
        for s in self._schedulers:
            values = s._advance(values)
        self._last_lr = values
        return values

    def _jump(self, epoch: int, prev: list[float]) -> list[float]:
        return self._advance(prev)

    def step(self) -> None:  # type: ignore[override]
        """Step every scheduler in order, each from the values the previous one left."""
        self._check_order()
        self._advance(self._last_lr)
        self._write()


# ---------------------------------------------------------------------------
# ReduceLROnPlateau
# ---------------------------------------------------------------------------


class ReduceLROnPlateau(_TorchReduceLROnPlateau):
    """torch's ReduceLROnPlateau; the decisions are :class:`lrkit.controllers.PlateauDetector`'s.

    When more than ``patience`` observations in a row fail to improve on the
    best by ``threshold``, each group's lr becomes ``max(lr * factor,
    min_lr)`` (skipped when that changes it by ``eps`` or less), followed by
    ``cooldown`` ignored observations. The lrs are this scheduler's own:
    another writer to ``group["lr"]`` is overwritten at the next step.

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
        if len(self._last_lr) < n:  # a group added since starts from the lr it was given
            self._last_lr.extend(float(_as_float(g["lr"])) for g in groups[len(self._last_lr) :])
        for i, old in enumerate(self._last_lr):
            new = max(old * self.factor, self.min_lrs[i])
            if old - new > self.eps:
                self._last_lr[i] = new

    def _write(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=False):
            current = group["lr"]
            if type(current) is not float and isinstance(current, torch.Tensor):
                current.fill_(lr)  # the optimizer keeps a tensor lr: update it in place
            else:
                group["lr"] = lr

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

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _watch(self.optimizer)


# ---------------------------------------------------------------------------
# The driver for lrkit schedules
# ---------------------------------------------------------------------------


def _resolve(name: str, value: Any, fill: Mapping[str, Any] | None = None) -> Any:
    """An lrkit schedule, a spec string (parsed, ``fill`` filling what it leaves out), or a
    controller (``lr`` + ``observe``)."""
    if isinstance(value, str):
        import lrkit

        try:
            return lrkit.parse(value, **(fill or {}))
        except ValueError as err:
            if "missing required argument" in str(err) and "steps" not in (fill or {}):
                raise ValueError(
                    f"{err}\nScheduler: give the run's length to fill a missing steps: "
                    "Scheduler(optimizer, spec, total_steps=N) (N = epochs x batches per epoch "
                    "when you step per batch)"
                ) from None
            raise
    if isinstance(value, _core.Schedule):
        return value
    if callable(getattr(value, "lr", None)) and callable(getattr(value, "observe", None)):
        return value
    raise TypeError(
        f"Scheduler: {name} must be an lrkit schedule, a spec string such as "
        f"'cosine(lr=0.1, steps=1000)' or a controller, got {type(value).__name__}: {value!r}"
    )


def _group_names(optimizer: Optimizer) -> list[Any]:
    return [g.get("name") for g in optimizer.param_groups]


def _per_group_schedules(
    name: str, optimizer: Optimizer, value: Any, fills: list[dict[str, Any]] | None = None
) -> list[Any] | None:
    """A list with one schedule per group (list, or dict by group name); None for one shared."""
    n = len(optimizer.param_groups)
    fills = fills if fills is not None else [{}] * n
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(
                f"Scheduler: {name} must have one schedule per param group ({n}), got {len(value)}"
            )
        return [_resolve(f"{name}[{i}]", v, fills[i]) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        names = _group_names(optimizer)
        if any(g is None for g in names):
            missing = [i for i, g in enumerate(names) if g is None]
            raise ValueError(
                f"Scheduler: {name} is a dict by group name, but param_groups {missing} have no "
                "'name'; add {'name': ...} to each param group, or pass a list"
            )
        unknown = sorted(set(map(str, value)) - set(map(str, names)))
        absent = [g for g in names if g not in value]
        if unknown or absent:
            raise ValueError(
                f"Scheduler: {name} must have one entry per param group name {names}; "
                f"unknown: {unknown}, missing: {absent}"
            )
        return [_resolve(f"{name}[{g!r}]", value[g], fills[i]) for i, g in enumerate(names)]
    return None


def _plan_of(schedule: Any) -> Any:
    """The lrkit schedule under a controller (a Plateau's, a guard's), or the schedule itself."""
    while not isinstance(schedule, _core.Schedule):
        inner = getattr(schedule, "schedule", None)
        if inner is None:
            return None
        schedule = inner
    return schedule


def _peak(schedule: Any) -> float | None:
    """The highest lr of a schedule's plan (over its length, or its first 10,000 steps)."""
    plan = _plan_of(schedule)
    if plan is None:
        return None
    n = plan.length + 1 if plan.length is not None else 10_000  # the end value included
    return float(plan.values(min(n, 100_000)).max())


def _warn_lr_differs(schedule: Any, optimizer_lr: float) -> None:
    """Say once when the schedule's lr is not the lr the optimizer was built with."""
    peak = _peak(schedule)
    if peak is None or optimizer_lr == 0 or math.isclose(peak, optimizer_lr, rel_tol=1e-6):
        return
    warnings.warn(
        f"Scheduler: the schedule's lr is {peak:g} (its peak), but param group 0 was built "
        f"with lr {optimizer_lr:g}; the schedule's lr is the one used (leave lr out of the "
        "spec to take the optimizer's)",
        UserWarning,
        stacklevel=3,
    )


def _value_at(schedule: Any, step: int) -> float:
    if isinstance(schedule, _core.Schedule):
        return schedule(step)
    return float(schedule.lr(step))


class _Snapshots:
    """The guard's last good snapshot of model and optimizer, and the one awaiting its loss.

    A snapshot is taken just before an update (an optimizer step pre-hook), at
    every ``every``-th step and whenever there is none. It is *pending* until
    :meth:`confirm` (the loss of that step, computed with exactly those
    weights, was fine) makes it the *good* one. In memory (tensors cloned) or,
    with ``directory``, in two files there (``guard-pending.pt``,
    ``guard-good.pt``; one directory per scheduler).
    """

    def __init__(self, model: torch.nn.Module, every: int, directory: Any) -> None:
        import pathlib

        if not isinstance(model, torch.nn.Module):
            raise ValueError(
                f"Scheduler: a guard needs model= (the torch.nn.Module to roll back), got {model!r}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"Scheduler: snapshot_every must be an integer >= 1, got {every!r}")
        self.model = model
        self.every = every
        self.directory = None if directory is None else pathlib.Path(directory)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.pending: Any = None
        self.good: Any = None
        self.pending_step: int | None = None
        self.good_step: int | None = None

    def due(self, step: int) -> bool:
        return self.pending is None and (self.good is None or step % self.every == 0)

    def take(self, optimizer: Optimizer, step: int) -> None:
        import copy

        data: dict[str, Any] | Path = {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(optimizer.state_dict()),
        }
        if self.directory is not None:
            path = self.directory / "guard-pending.pt"
            torch.save(data, path)
            data = path
        self.pending, self.pending_step = data, step

    def drop_pending(self) -> None:
        self.pending, self.pending_step = None, None

    def confirm(self) -> None:
        if self.pending is None:
            return
        data = self.pending
        if self.directory is not None:
            import os

            good = self.directory / "guard-good.pt"
            os.replace(self.pending, good)
            data = good
        self.good, self.good_step = data, self.pending_step
        self.drop_pending()

    def restore(self, optimizer: Optimizer) -> int:
        """Load the good snapshot (else the pending one) into model and optimizer; its step."""
        import copy

        data, step = (
            (self.good, self.good_step)
            if self.good is not None
            else (self.pending, self.pending_step)
        )
        if data is None:
            raise RuntimeError("Scheduler: the guard has no snapshot to roll back to")
        if not isinstance(data, dict):
            data = torch.load(data, weights_only=True)
        self.model.load_state_dict(data["model"])
        # the optimizer keeps the tensors it is given: hand it a copy
        optimizer.load_state_dict(copy.deepcopy(data["optimizer"]))
        self.drop_pending()
        return int(step or 0)

    def clear(self) -> None:
        self.drop_pending()
        self.good, self.good_step = None, None


class _BeforeUpdate:
    """Optimizer step pre-hook: lets the scheduler snapshot the weights an update starts from."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def __call__(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        self.scheduler._before_update()


def _find_guard(schedules: list[Any], shared: bool) -> Any:
    """The ``guard(schedule, ...)`` among the schedules, if any (only as the one shared)."""
    from lrkit.controllers import Guard

    guards = [s for s in schedules if isinstance(s, Guard)]
    if not guards:
        return None
    if not shared:
        raise ValueError(
            "Scheduler: a guard(...) schedule must drive all param groups; with one schedule "
            "per group, pass the guard as Scheduler(..., guard=lrkit.Guard(...), model=model)"
        )
    if guards[0].schedule is None:
        raise ValueError(
            "Scheduler: this guard has no schedule; write guard(cosine(...), ...) or pass "
            "Scheduler(optimizer, schedule, guard=lrkit.Guard(...), model=model)"
        )
    return guards[0]


class Scheduler(LRScheduler):
    """Drive a torch optimizer with any lrkit schedule: the lr at step t is ``schedule(t)``.

    The update made when the scheduler has taken ``t`` steps uses
    ``schedule(t)``: the constructor sets ``schedule(0)``, each ``step()``
    moves to the next step. Everything is computed from the step count, so a
    resume restores a number and is exact whether the optimizer's state is
    loaded before or after the scheduler is built.

    ``schedule`` is an lrkit schedule, a spec string (``lrkit.parse``), a
    controller (:class:`lrkit.Plateau`, :class:`lrkit.Adaptive`, a
    :class:`lrkit.Guard` with a schedule, or any object with ``lr(step)`` and
    ``observe(metric, step)``), or one of those per param group: a list, or
    a dict by each group's ``"name"``. With one schedule for all groups, its
    value is the first group's lr and every other group keeps its ratio to
    the first, taken from the groups' ``initial_lr`` and kept in the state.

    **Metrics**: ``step(metric)`` passes the metric, measured at the step
    just finished, to the Plateau/Adaptive controllers.

    **Guard** (rollback on divergence): pass ``guard=lrkit.Guard(...)`` and
    ``model=model``, or a ``guard(schedule, ...)`` spec as the schedule (then
    ``model=`` too), and call ``step(loss=loss.item())`` with the training
    loss of the step just finished. Just before an update the driver keeps a
    snapshot of model and optimizer (every ``snapshot_every`` steps, in
    memory, or on disk under ``snapshot_dir``); a snapshot becomes the *last
    good* one once the loss computed with those weights passed the guard.
    When the guard finds a divergence (NaN/inf, or a spike), the driver
    restores the last good snapshot into model and optimizer, the lr is
    multiplied by ``factor`` (``factor ** rollbacks`` in all), and the run
    goes on: the step counter moves forward and the next batch is the
    caller's next batch. The ``max_rollbacks + 1``-th divergence raises
    :class:`lrkit.Diverged`. A metric passed in the same call as a
    diverging loss is not observed. Build the scheduler after loading the
    model's weights, or call :meth:`snapshot`.

    **Replanning**: :meth:`replan` stretches or shrinks the lr schedule
    mid-run (``schedule.replan(steps, at)``: continuous at ``at``, ending
    where asked); the state keeps the new plan, so a resume runs it.

    Args:
        optimizer: the torch optimizer.
        schedule: the lr schedule (see above).
        momentum: optional schedule (or spec, list, dict) of the momentum, or
            of ``betas[0]`` for Adam-like optimizers (``betas[1]`` is left alone);
            its value is absolute and the same for every group.
        weight_decay: optional schedule of the weight decay: its value is the
            weight decay of the first group with a nonzero one, other nonzero
            groups keep their ratio to it, and groups with ``weight_decay=0``
            are never touched.
        guard: an :class:`lrkit.Guard` without a schedule (or its spec, e.g.
            ``"guard(factor=0.5)"``); it multiplies whatever ``schedule`` gives.
        model: the module the guard rolls back (required with a guard).
        snapshot_every: steps between snapshots (>= 1).
        snapshot_dir: keep the snapshots on disk in this directory instead of
            in memory.

    Raises:
        ValueError: the first group's lr is 0 while other groups need a ratio
            to it; a list or dict does not match the groups; ``momentum`` for
            an optimizer without momentum or betas (e.g. Adagrad);
            ``weight_decay`` when no group has a nonzero weight decay; a guard
            without ``model``, or two guards.
        TypeError: a schedule that is none of the above.

    Examples:
        >>> import torch, lrkit
        >>> from lrkit.torch import Scheduler
        >>> p = torch.nn.Parameter(torch.zeros(1))
        >>> opt = torch.optim.SGD([{"params": [p], "lr": 1.0}], lr=1.0, momentum=0.9)
        >>> s = Scheduler(opt, "warmup(cosine(lr=0.1, steps=4), steps=2)")
        >>> lrs = [s.get_last_lr()[0]]
        >>> for _ in range(4):
        ...     opt.step(); s.step(); lrs.append(round(s.get_last_lr()[0], 6))
        >>> lrs
        [0.0, 0.05, 0.1, 0.085355, 0.05]
    """

    base_lrs: list[float]  # type: ignore[assignment]  # torch types lrs as float | Tensor; lrkit's are floats
    #: A subclass that receives a step's loss after step() keeps its snapshot pending.
    _keep_unchecked = False
    _last_lr: list[float]  # type: ignore[assignment]  # torch types lrs as float | Tensor; lrkit's are floats

    def __init__(
        self,
        optimizer: Optimizer,
        schedule: Any,
        *,
        momentum: Any = None,
        weight_decay: Any = None,
        guard: Any = None,
        model: torch.nn.Module | None = None,
        snapshot_every: int = 100,
        snapshot_dir: Any = None,
        total_steps: int | None = None,
    ) -> None:
        self.optimizer = _check_optimizer("Scheduler", optimizer)
        groups = optimizer.param_groups
        n = len(groups)
        for group in groups:
            group.setdefault("initial_lr", _as_float(group["lr"]))
        self.base_lrs = [float(_as_float(g["initial_lr"])) for g in groups]
        if total_steps is not None and (
            isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1
        ):
            raise ValueError(f"Scheduler: total_steps must be an integer >= 1, got {total_steps!r}")
        fills = [
            {"lr": lr, **({} if total_steps is None else {"steps": total_steps})}
            for lr in self.base_lrs
        ]
        per_group = _per_group_schedules("schedule", optimizer, schedule, fills)
        self._schedules: list[Any] = (
            per_group if per_group is not None else [_resolve("schedule", schedule, fills[0])]
        )
        self._end_warned = False
        self._end = self._first_end()
        if per_group is None:
            _warn_lr_differs(self._schedules[0], self.base_lrs[0])
        if per_group is None:
            first = self.base_lrs[0]
            if first == 0 and n > 1:
                raise ValueError(
                    "Scheduler: param_groups[0] has lr 0 (its initial_lr), so the other "
                    f"{n - 1} group(s) cannot keep their lr as a ratio to it; give group 0 a "
                    "nonzero lr, or pass one schedule per group (a list, or a dict by group name)"
                )
            self.ratios: list[float] | None = [1.0] + [b / first for b in self.base_lrs[1:]]
        else:
            self.ratios = None
        self._momentum_schedules: list[Any] | None = None
        self.use_beta1 = False
        if momentum is not None:
            defaults = optimizer.defaults
            if "momentum" not in defaults and "betas" not in defaults:
                raise ValueError(
                    f"Scheduler: momentum= was given, but {type(optimizer).__name__} has no "
                    "'momentum' or 'betas' hyperparameter; pass momentum=None, or use an "
                    "optimizer that has one (SGD(momentum=0.9), RMSprop(momentum=0.9), Adam, "
                    "AdamW)"
                )
            self.use_beta1 = "betas" in defaults
            per = _per_group_schedules("momentum", optimizer, momentum)
            self._momentum_schedules = per or [_resolve("momentum", momentum)] * n
        self._wd_schedule: Any = None
        self.wd_ratios: list[float] | None = None
        if weight_decay is not None:
            if "weight_decay" not in optimizer.defaults:
                raise ValueError(
                    f"Scheduler: weight_decay= was given, but {type(optimizer).__name__} has no "
                    "'weight_decay' hyperparameter; pass weight_decay=None"
                )
            for group in groups:
                group.setdefault("initial_weight_decay", float(group["weight_decay"]))
            wds = [float(g["initial_weight_decay"]) for g in groups]
            nonzero = [w for w in wds if w != 0]
            if not nonzero:
                raise ValueError(
                    "Scheduler: weight_decay= was given, but every param group has "
                    "weight_decay 0 (groups with 0 are never touched); set weight_decay on "
                    "the groups to decay, or pass weight_decay=None"
                )
            self._wd_schedule = _resolve("weight_decay", weight_decay)
            self.wd_ratios = [w / nonzero[0] for w in wds]
        self._setup_guard(guard, model, snapshot_every, snapshot_dir)
        self.last_epoch = 0
        self._step_count = 1
        self._last_lr = []
        _watch(optimizer)
        self._apply()

    def _setup_guard(self, guard: Any, model: Any, every: int, directory: Any) -> None:
        from lrkit.controllers import Guard

        inner = _find_guard(self._schedules, self.ratios is not None)
        if isinstance(guard, str):
            import lrkit

            guard = lrkit.parse(guard)
        if guard is not None:
            if not isinstance(guard, Guard):
                raise TypeError(
                    f"Scheduler: guard must be an lrkit.Guard or a 'guard(...)' spec, "
                    f"got {type(guard).__name__}: {guard!r}"
                )
            if guard.schedule is not None:
                raise ValueError(
                    f"Scheduler: guard= takes a guard without a schedule, got {guard}; "
                    "pass the schedule as the schedule argument"
                )
            if inner is not None:
                raise ValueError(
                    "Scheduler: the schedule is already a guard(...); do not pass guard= too"
                )
        self.guard: Any = guard if guard is not None else inner
        self._guard_outside = guard is not None
        self._snapshots: _Snapshots | None = None
        #: ``(step, snapshot step)`` of each rollback this object made.
        self.rollback_steps: list[tuple[int, int]] = []
        if self.guard is None:
            if model is not None or directory is not None:
                raise ValueError(
                    "Scheduler: model= and snapshot_dir= are for a guard; pass "
                    "guard=lrkit.Guard(...) or a guard(...) schedule, or leave them out"
                )
            return
        if model is None:
            raise ValueError(
                "Scheduler: a guard needs model= (the torch.nn.Module it rolls back when the "
                "loss diverges)"
            )
        self._snapshots = _Snapshots(model, every, directory)
        self.optimizer.register_step_pre_hook(_BeforeUpdate(self))

    # -- values ----------------------------------------------------------------

    def _lrs(self, t: int) -> list[float]:
        scale = self.guard.multiplier if self._guard_outside else 1.0
        if self.ratios is not None:
            value = _value_at(self._schedules[0], t) * scale
            return [value * r for r in self.ratios]
        return [_value_at(s, t) * scale for s in self._schedules]

    def _apply(self) -> None:
        t = self.last_epoch
        self._last_lr = self._lrs(t)
        groups = self.optimizer.param_groups
        for group, lr in zip(groups, self._last_lr, strict=True):
            _set(group, "lr", lr)
        if self._momentum_schedules is not None:
            for group, s in zip(groups, self._momentum_schedules, strict=True):
                m = _value_at(s, t)
                if self.use_beta1:
                    group["betas"] = (m, *group["betas"][1:])
                else:
                    _set(group, "momentum", m)
        if self._wd_schedule is not None and self.wd_ratios is not None:
            wd = _value_at(self._wd_schedule, t)
            for group, r in zip(groups, self.wd_ratios, strict=True):
                if r != 0:
                    _set(group, "weight_decay", wd * r)

    def _controllers(self) -> list[Any]:
        out = []
        for s in [*self._schedules, *(self._momentum_schedules or []), self._wd_schedule]:
            if s is not None and not isinstance(s, _core.Schedule) and s not in out:
                out.append(s)
        return out

    def _metric_controllers(self) -> list[Any]:
        """The controllers a metric goes to: all but guards (a guard's inner controller does)."""
        from lrkit.controllers import Guard

        out = []
        for c in self._controllers():
            if isinstance(c, Guard):
                c = c.schedule
                if isinstance(c, _core.Schedule):
                    continue
            out.append(c)
        return out

    # -- the guard ---------------------------------------------------------------

    def _before_update(self) -> None:
        snaps = self._snapshots
        if snaps is not None and snaps.due(self.last_epoch):
            snaps.take(self.optimizer, self.last_epoch)

    def snapshot(self) -> None:
        """Take a snapshot of model and optimizer now and keep it as the last good one."""
        if self._snapshots is None:
            raise ValueError("Scheduler: snapshot() needs a guard (guard= or a guard(...) spec)")
        self._snapshots.take(self.optimizer, self.last_epoch)
        self._snapshots.confirm()

    def _watch_loss(self, loss: float, t: int) -> bool:
        """Feed the guard; on a divergence roll back and return True."""
        snaps = self._snapshots
        if snaps is None:
            return False
        if not self.guard.observe(loss, t):
            snaps.confirm()
            return False
        self.rollback_steps.append((t, snaps.restore(self.optimizer)))
        return True

    # -- public API ------------------------------------------------------------

    def step(  # type: ignore[override]
        self, metric: SupportsFloat | None = None, *, loss: SupportsFloat | None = None
    ) -> None:
        """Move to the next step.

        Args:
            metric: goes to the Plateau/Adaptive controllers, measured at the
                step just finished (also positional, as Lightning passes it).
            loss: the training loss of the step just finished, for the guard
                (ignored without one). On a divergence model and optimizer
                are rolled back and the lr cut (see the class docstring).

        Raises:
            lrkit.Diverged: the guard found more than ``max_rollbacks`` divergences.
        """
        if self._step_count == 1 and _stepped_out_of_order_or_replaced(self.optimizer):
            _warn_order(self)
        t = self.last_epoch
        rolled_back = False
        if self._snapshots is not None:
            if loss is None:
                if not self._keep_unchecked:
                    self._snapshots.drop_pending()  # its weights' loss was never checked
            else:
                rolled_back = self._watch_loss(float(loss), t)
        if metric is not None and not rolled_back:
            for c in self._metric_controllers():
                c.observe(float(metric), t)
        self._step_count += 1
        self.last_epoch += 1
        self._apply()
        if not self._end_warned and self._end is not None and self.last_epoch > self._end:
            self._warn_past_end()

    def _first_end(self) -> int | None:
        """The earliest end among the lr plans that end (kept, so step() compares one int)."""
        ends = [p.length for p in map(_plan_of, self._schedules) if p is not None]
        known = [e for e in ends if e is not None]
        return min(known) if known else None

    def _warn_past_end(self) -> None:
        """Say once when the step passes the end of a schedule that ends (its lr then stays)."""
        for s in self._schedules:
            plan = _plan_of(s)
            end = None if plan is None else plan.length
            if end is not None and self.last_epoch > end:
                self._end_warned = True
                warnings.warn(
                    f"Scheduler: step {self.last_epoch} is past the end of {plan} (it ends at "
                    f"step {end}); the lr stays at its last value {_value_at(s, end):g}. "
                    "Stepping per batch a plan made per epoch? Give the schedule the number of "
                    "steps you take: Scheduler(optimizer, spec, total_steps=epochs * "
                    "len(loader))",
                    UserWarning,
                    stacklevel=3,
                )
                return

    def __repr__(self) -> str:
        plans = ", ".join(f"'{s}'" for s in self._schedules)
        return (
            f"Scheduler({type(self.optimizer).__name__}, {plans}, step={self.last_epoch}, "
            f"lr={[float(f'{x:.6g}') for x in self._last_lr]})"
        )

    def observe(self, metric: SupportsFloat) -> None:
        """Hand ``metric`` to the Plateau/Adaptive controllers at the current step.

        Unlike ``step(metric)`` the step does not advance; a cut applies at
        once (e.g. a validation loss measured at an epoch's end).
        """
        for c in self._metric_controllers():
            c.observe(float(metric), self.last_epoch)
        self._apply()

    def replan(self, steps: int, at: int | None = None) -> None:
        """Change the lr plan mid-run: every lr schedule becomes ``schedule.replan(steps, at)``.

        The lr is continuous at ``at`` and the plan ends where asked; a
        controller (Plateau, Adaptive, a guard's schedule) replans the
        schedule it wraps and keeps its factor. :meth:`state_dict` keeps the
        new plan, so a resume runs it. Momentum and weight-decay schedules
        are left as they are.

        Args:
            steps: where the new plan ends (its total length).
            at: the step from which it changes (default: the current step).

        Raises:
            ValueError: ``at`` is negative, or the schedule cannot be replanned
                there (the schedule's own message).
        """
        at = self.last_epoch if at is None else at
        if isinstance(at, bool) or not isinstance(at, int) or at < 0:
            raise ValueError(f"Scheduler.replan: at must be an integer >= 0, got {at!r}")
        for i, s in enumerate(self._schedules):
            if not callable(getattr(s, "replan", None)):
                raise TypeError(f"Scheduler.replan: {s!r} cannot be replanned (no replan method)")
            if isinstance(s, _core.Schedule):
                self._schedules[i] = s.replan(steps, at)
            else:
                s.replan(steps, at)
        self._end = self._first_end()
        self._apply()

    def get_last_lr(self) -> list[float]:  # type: ignore[override]  # torch types lrs as float | Tensor; lrkit's are floats
        """The lrs set last, one per param group."""
        return list(self._last_lr)

    def get_lr(self) -> list[float]:  # type: ignore[override]  # torch types lrs as float | Tensor; lrkit's are floats
        """The lrs for the current step (the same as :meth:`get_last_lr`)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the step count, the group ratios, the plans, controllers' and guard's states.

        Only numbers, strings, lists and dicts, so ``torch.load(weights_only=True)``
        reads it; the guard's snapshots are not part of it.
        """
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "base_lrs": list(self.base_lrs),
            "ratios": None if self.ratios is None else list(self.ratios),
            "wd_ratios": None if self.wd_ratios is None else list(self.wd_ratios),
            "_last_lr": list(self._last_lr),
            "schedules": [str(s) for s in self._schedules],
            "controllers": [c.state_dict() for c in self._controllers()],
            "guard": self.guard.state_dict() if self._guard_outside else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the plans included) and write that step's values.

        A guard's snapshots are dropped: the next one is taken before the next update.
        """
        n = len(self.optimizer.param_groups)
        ratios = state_dict.get("ratios")
        if (ratios is None) != (self.ratios is None) or (ratios is not None and len(ratios) != n):
            raise ValueError(
                "Scheduler: the state was saved with "
                f"{'one schedule per group' if ratios is None else f'{len(ratios)} group ratios'}"
                f", this scheduler has {'one per group' if self.ratios is None else n}"
            )
        controllers = self._controllers()
        saved = state_dict.get("controllers", [])
        if len(saved) != len(controllers):
            raise ValueError(
                f"Scheduler: the state has {len(saved)} controller states, "
                f"this scheduler has {len(controllers)} controllers"
            )
        guard_state = state_dict.get("guard")
        if (guard_state is not None) != self._guard_outside:
            raise ValueError(
                "Scheduler: the state was saved "
                f"{'with' if guard_state is not None else 'without'} guard=, this scheduler "
                f"has {'one' if self._guard_outside else 'none'}"
            )
        self._load_plans(state_dict.get("schedules"))
        for c, s in zip(controllers, saved, strict=True):
            c.load_state_dict(s)
        if guard_state is not None:
            self.guard.load_state_dict(guard_state)
        if self._snapshots is not None:
            self._snapshots.clear()
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", 2))
        self.base_lrs = [float(v) for v in state_dict.get("base_lrs", self.base_lrs)]
        self.ratios = None if ratios is None else [float(r) for r in ratios]
        wd = state_dict.get("wd_ratios")
        if wd is not None and self.wd_ratios is not None:
            self.wd_ratios = [float(r) for r in wd]
        self._apply()

    def _load_plans(self, specs: Any) -> None:
        """Take the saved lr schedules (a replanned run resumes on its new plan)."""
        if specs is None:
            return
        if len(specs) != len(self._schedules):
            raise ValueError(
                f"Scheduler: the state has {len(specs)} schedules, "
                f"this scheduler has {len(self._schedules)}"
            )
        import lrkit

        for i, (s, spec) in enumerate(zip(self._schedules, specs, strict=True)):
            if isinstance(s, _core.Schedule) and spec != str(s):
                self._schedules[i] = lrkit.parse(spec)
        self._end = self._first_end()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_end" not in state:  # pickled by an lrkit without the end-of-plan warning
            self._end_warned = False
            self._end = self._first_end()
        _watch(self.optimizer)
