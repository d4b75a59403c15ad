"""The drop-ins with a rule of their own: torch's names, signatures and values.

See :mod:`lrkit.torch` for where their values come from; the composites
(SequentialLR, ChainedScheduler) are in :mod:`lrkit.torch.composites` and
ReduceLROnPlateau in :mod:`lrkit.torch.plateau`.
"""

from __future__ import annotations

import abc
import bisect
import math
import types
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lrkit import schedules as _core
from lrkit.torch._common import (
    _EPOCH_WARNING,
    _as_float,
    _check_group_count,
    _check_optimizer,
    _go_on_from,
    _load_lambda_state,
    _lrs_in_force,
    _per_group,
    _plain_lambda_state,
    _put_lrs,
    _restore_others_writes,
    _set,
    _stepped_out_of_order_or_replaced,
    _warn_order,
    _watch,
)

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

    ``prev`` is the scheduler's own last values (or, inside ChainedScheduler /
    SequentialLR, the values the composite keeps), except in a group whose
    ``group["lr"]`` another writer changed since this scheduler's last write
    (``_written``, what the group held right after it): there ``prev`` is
    that writer's value, as in torch's chainable rules (docs/torch.md, "Several
    schedulers on one optimizer").
    """

    #: keys of ``__dict__`` that are not state (the optimizer, callables, derived objects)
    _not_state: tuple[str, ...] = ("optimizer", "_core", "_written")

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
        self._written: list[float] = start
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
        values = self._last_lr
        for group, lr in zip(self.optimizer.param_groups, values, strict=False):
            if type(group["lr"]) is not float:  # a tensor lr (or an int): the general way
                self._written = _put_lrs(self.optimizer, values)
                break
            group["lr"] = lr
        else:
            self._written = values  # lists of values are replaced, never changed in place
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
        prev = self._last_lr
        if [g["lr"] for g in self.optimizer.param_groups] != self._written:
            # someone else wrote group["lr"], or added a group: go on from there, as torch
            prev = _go_on_from(self.optimizer, prev, self._written)
            if prev is not self._last_lr:
                self._closed = False  # torch's rules continue from group["lr"]
        if epoch is not None:
            warnings.warn(_EPOCH_WARNING, UserWarning, stacklevel=2)
            self._jump(epoch, prev)
            _check_group_count(self, self._last_lr)
            self._write()
            return
        t = self.last_epoch + 1
        if self._closed and t <= self._closed_limit:
            values = self._closed_values(t)
        else:
            values = self._relative(prev, t, False)
            if len(values) != len(prev):  # a group added since, and a rule that cannot take it
                _check_group_count(self, values)
        self._last_lr = values
        self.last_epoch = t
        self._write()

    def get_last_lr(self) -> list[float]:  # type: ignore[override]  # torch types lrs as float | Tensor; lrkit's are floats
        """The lrs this scheduler set last, one per param group."""
        return list(self._last_lr)

    def get_lr(self) -> list[float]:  # type: ignore[override]  # torch types lrs as float | Tensor; lrkit's are floats
        """The lrs for the current step (the same as :meth:`get_last_lr`)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state as plain data (no optimizer, no user functions).

        Besides the scheduler's own values it keeps ``_lr_in_force``, the
        groups' lrs now: where another writer (a second scheduler, user code)
        changed them, that is what the run goes on from after a resume.
        """
        out = {}
        for key, value in self.__dict__.items():
            if key in self._not_state:
                continue
            out[key] = list(value) if isinstance(value, list) else value
        out["_lr_in_force"] = _lrs_in_force(self.optimizer)
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
        in_force = state.pop("_lr_in_force", None)
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
            _restore_others_writes(self.optimizer, in_force)
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
        hs = height * scale
        return [b + (m - b) * hs for b, m in zip(self.base_lrs, self.max_lrs, strict=False)]

    def _momentum(self) -> list[float] | None:
        if not self.cycle_momentum:
            return None
        height, scale = self._shape(self.last_epoch)
        hs = height * scale
        return [
            mx - (mx - bs) * hs
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

    _not_state = ("optimizer", "_core", "_lr_pts", "_m_pts", "_memo", "_written")
    _cycles_momentum = True

    def _build(self) -> None:
        self._core = None
        self._memo: tuple[float, int, float] = (-1.0, 0, 0.0)
        groups = range(len(self.max_lrs))
        # per phase, each group's (start, end): one phase lookup serves every group
        by_group = [self._lr_points(g) for g in groups]
        self._lr_pts = [list(phase) for phase in zip(*by_group, strict=True)]
        by_group = [self._momentum_points(g) for g in groups] if self.cycle_momentum else []
        self._m_pts = [list(phase) for phase in zip(*by_group, strict=True)]

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
        if self.anneal_strategy == "linear":  # torch's (end - start) * pct + start, as written
            return [(end - start) * pct + start for start, end in self._lr_pts[i]]
        w = (math.cos(math.pi * pct) + 1) / 2.0
        return [end + (start - end) * w for start, end in self._lr_pts[i]]

    def _momentum(self) -> list[float] | None:
        if not self.cycle_momentum:
            return None
        i, pct = self._phase(self.last_epoch)
        if self.anneal_strategy == "linear":
            return [(end - start) * pct + start for start, end in self._m_pts[i]]
        w = (math.cos(math.pi * pct) + 1) / 2.0
        return [end + (start - end) * w for start, end in self._m_pts[i]]

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
        _check_group_count(self, self._last_lr)
        self._write()
