"""SequentialLR and ChainedScheduler over lrkit's drop-ins."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.optim.lr_scheduler import ReduceLROnPlateau as _TorchReduceLROnPlateau

from lrkit.torch._common import (
    _as_float,
    _check_group_count,
    _check_optimizer,
    _go_on_from,
    _lrs_in_force,
    _put_lrs,
    _restore_others_writes,
    _stepped_out_of_order_or_replaced,
    _warn_order,
    _watch,
)
from lrkit.torch.dropins import _DropIn

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
    """Shared parts of SequentialLR and ChainedScheduler: own values, children's states.

    Each step goes on from the composite's own values, except in a group whose
    lr another writer changed since the composite's last write (see _DropIn).
    """

    _schedulers: list[Any]
    _last_lr: list[float]  # type: ignore[assignment]  # torch types lrs as float | Tensor; lrkit's are floats

    def get_last_lr(self) -> list[float]:  # type: ignore[override]  # torch types lrs as float | Tensor; lrkit's are floats
        """The lrs set last, one per param group."""
        return list(self._last_lr)

    def get_lr(self) -> list[float]:  # type: ignore[override]  # torch types lrs as float | Tensor; lrkit's are floats
        """The lrs for the current step (the same as :meth:`get_last_lr`)."""
        return list(self._last_lr)

    def _write(self) -> None:
        self._written = _put_lrs(self.optimizer, self._last_lr)

    def _in_force(self) -> list[float]:
        """Own values, or another writer's where one changed ``group["lr"]`` since our write."""
        if [g["lr"] for g in self.optimizer.param_groups] == self._written:
            return self._last_lr
        return _go_on_from(self.optimizer, self._last_lr, self._written)

    def _check_order(self) -> None:
        if self._step_count == 0 and _stepped_out_of_order_or_replaced(self.optimizer):
            _warn_order(self)

    def state_dict(self) -> dict[str, Any]:
        """Own state plus each child's, as plain data."""
        out = {
            k: (list(v) if isinstance(v, list) else v)
            for k, v in self.__dict__.items()
            if k not in ("optimizer", "_schedulers", "_written")
        }
        out["_schedulers"] = [s.state_dict() for s in self._schedulers]
        out["_lr_in_force"] = _lrs_in_force(self.optimizer)
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (children too) and write the lrs into the optimizer.

        torch's SequentialLR / ChainedScheduler states load too: their children's
        states go to the children (lrkit drop-ins, which accept torch's states),
        and keys this composite does not keep are dropped (see _DropIn.load_state_dict).
        """
        state = dict(state_dict)
        children = state.pop("_schedulers")
        in_force = state.pop("_lr_in_force", None)
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
        _restore_others_writes(self.optimizer, in_force)

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
        >>> from lrkit.torch import ExponentialLR, LinearLR, SequentialLR
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
        self._advance(self._in_force())
        _check_group_count(self, self._last_lr)
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
        >>> from lrkit.torch import ChainedScheduler, ConstantLR, ExponentialLR
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
        self._written = list(self._schedulers[-1]._written)
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
        self._advance(self._in_force())
        _check_group_count(self, self._last_lr)
        self._write()
