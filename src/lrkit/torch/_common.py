"""Helpers shared by the drop-ins and the driver: reading arguments, writing the
optimizer, watching its steps, torch's warnings.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import EPOCH_DEPRECATION_WARNING

if TYPE_CHECKING:
    from collections.abc import Iterable


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


def _put_lrs(optimizer: Optimizer, values: Iterable[float]) -> list[float]:
    """Write one lr per param group; return what each group holds afterwards.

    The value read back is what a drop-in remembers as its own write: a later
    ``group["lr"]`` that differs from it was written by someone else (another
    scheduler, user code). Reading back (rather than keeping ``values``)
    makes the comparison exact for a tensor lr, which rounds to its dtype.
    """
    out = []
    for group, lr in zip(optimizer.param_groups, values, strict=False):
        current = group["lr"]
        if type(current) is not float and isinstance(current, torch.Tensor):
            current.fill_(lr)  # the optimizer keeps a tensor lr: update it in place
            out.append(float(current))
        else:
            group["lr"] = lr
            out.append(lr)
    return out


def _others_writes(optimizer: Optimizer, written: Sequence[float]) -> dict[int, float] | None:
    """The groups whose lr is no longer what this scheduler wrote there: ``{index: lr}``.

    None (the usual case, no allocation) when every group still holds the
    scheduler's own last write. Groups added since that write are not
    looked at here (``written`` is shorter than the groups).
    """
    changed = None
    for i, (group, mine) in enumerate(zip(optimizer.param_groups, written, strict=False)):
        lr = group["lr"]
        if type(lr) is not float:
            lr = float(lr)
        if lr != mine:
            if changed is None:
                changed = {}
            changed[i] = lr
    return changed


def _with_others_writes(own: list[float], changed: dict[int, float] | None) -> list[float]:
    """``own`` with the other writers' values in place (``own`` itself when there are none)."""
    if not changed:
        return own
    out = list(own)
    for i, lr in changed.items():
        if i < len(out):
            out[i] = lr
    return out


def _restore_others_writes(optimizer: Optimizer, in_force: Sequence[Any] | None) -> None:
    """After a load: put back the groups' lrs saved with the state (``_lr_in_force``).

    Called right after the scheduler wrote its own values, so a group that
    held another writer's value at save time holds it again, and the next
    step, seeing it differ from the scheduler's own write, goes on from it.
    States without the key (torch's own, older lrkit ones) change nothing.
    """
    if in_force is None or len(in_force) != len(optimizer.param_groups):
        return
    _put_lrs(optimizer, [float(_as_float(v)) for v in in_force])


def _go_on_from(optimizer: Optimizer, own: list[float], written: Sequence[float]) -> list[float]:
    """The lrs a drop-in's next step goes on from (called when the groups differ from ``written``).

    Its own values, with another writer's value in each group where one
    changed it, and for groups added with ``add_param_group()`` since the
    last write, the lr each was given (torch's chainable rules read them the
    same way). Returns ``own`` itself when nothing changed.
    """
    prev = _with_others_writes(own, _others_writes(optimizer, written))
    groups = optimizer.param_groups
    if len(prev) < len(groups):
        prev = [*prev, *(float(_as_float(g["lr"])) for g in groups[len(prev) :])]
    return prev


def _check_group_count(scheduler: Any, values: Sequence[float]) -> None:
    """Raise (torch's ValueError) when a rule gives fewer lrs than the optimizer has groups."""
    n = len(scheduler.optimizer.param_groups)
    if len(values) != n:
        name = type(scheduler).__name__
        raise ValueError(
            f"{name}: the optimizer has {n} param groups but {name}'s rule gives "
            f"{len(values)} lrs: a group was added with add_param_group() after the scheduler "
            "was built, and this rule works from each group's initial values (torch's "
            f"{name} fails here too). Build the scheduler after adding the group."
        )


def _lrs_in_force(optimizer: Optimizer) -> list[float]:
    """Each group's lr as a float (what torch's chainable rules would continue from)."""
    return [float(g["lr"]) for g in optimizer.param_groups]


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
