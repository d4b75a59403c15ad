"""The lr range test for PyTorch: :func:`find_lr` and its :class:`FinderResult`.

Re-exported by :mod:`lrkit.torch`, so ``from lrkit.torch import find_lr``. The
sweep is the usual one (train a few steps while the lr grows from ``min_lr`` to
``max_lr``, record the loss, stop when it diverges); the analysis is
:mod:`lrkit.finder`'s. What this module adds is the promise that nothing is
left behind: the model's parameters, gradients, buffers and train/eval flags,
the optimizer's state (Adam's moments, step counts) and param-group settings,
the data loaders' own generators, and the torch, numpy and ``random`` RNG
states are, afterwards, exactly what they were before, bit for bit. The copies
are kept in memory; no file is written.

Examples:
    >>> import torch
    >>> from lrkit.torch import find_lr
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(256, 8)
    >>> y = x @ torch.randn(8, 1)
    >>> batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]
    >>> model = torch.nn.Linear(8, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.01)
    >>> before = model.weight.clone()
    >>> result = find_lr(model, opt, torch.nn.functional.mse_loss, batches, num_steps=60)
    >>> bool(torch.equal(model.weight, before)), opt.param_groups[0]["lr"]
    (True, 0.01)
    >>> 1e-3 < result.suggestion < 2.0, len(result.lrs) == len(result.losses)
    (True, True)
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch.optim import Optimizer

from lrkit import finder
from lrkit.finder import FinderResult  # framework-neutral: lives in the pure core

__all__ = ["FinderResult", "find_lr"]


# ---------------------------------------------------------------------------
# Exact snapshots, kept in memory
# ---------------------------------------------------------------------------


def _clone(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)


def _put(current: Any, saved: Any) -> Any:
    """``saved`` written into ``current`` when both are same-shaped tensors, else ``saved``."""
    if (
        isinstance(current, torch.Tensor)
        and isinstance(saved, torch.Tensor)
        and current.shape == saved.shape
        and current.dtype == saved.dtype
        and current.device == saved.device
    ):
        with torch.no_grad():
            current.copy_(saved)
        return current
    return saved


class _Snapshot:
    """Everything :func:`find_lr` touches, copied now and written back by :meth:`restore`."""

    def __init__(
        self, model: torch.nn.Module, optimizer: Optimizer, loaders: list[Any], scaler: Any
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self.scaler_vars = (
            None if scaler is None else {k: _clone(v) for k, v in vars(scaler).items()}
        )
        self.params = [
            (p, p.detach().clone(), _clone(p.grad) if p.grad is not None else None)
            for p in _unique_params(model, optimizer)
        ]
        self.buffers = [
            (m, name, _clone(b))
            for m in model.modules()
            for name, b in m._buffers.items()
            if b is not None
        ]
        self.training = [(m, m.training) for m in model.modules()]
        self.state = {p: {k: _clone(v) for k, v in st.items()} for p, st in optimizer.state.items()}
        self.groups = [
            {k: _clone(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups
        ]
        self.flags = {
            k: v
            for k, v in vars(optimizer).items()
            if isinstance(v, bool | int | float | str | type(None))
        }
        self.torch_rng = torch.get_rng_state()
        self.cuda_rng = (
            torch.cuda.get_rng_state_all()
            if torch.cuda.is_available() and torch.cuda.is_initialized()
            else None
        )
        self.numpy_rng = np.random.get_state()
        self.python_rng = random.getstate()
        self.generators = [(g, g.get_state()) for g in _generators(loaders)]

    def restore_training(self) -> None:
        """Parameters, grads, buffers, flags and the optimizer: back to the snapshot."""
        with torch.no_grad():
            for p, value, grad in self.params:
                p.copy_(value)
                if grad is None:
                    p.grad = None
                elif p.grad is not None and p.grad.shape == grad.shape:
                    p.grad.copy_(grad)
                else:
                    p.grad = grad.clone()
        for m, name, value in self.buffers:
            m._buffers[name] = _put(m._buffers.get(name), value.clone())
        for m, flag in self.training:
            m.training = flag
        state = self.optimizer.state
        for p in list(state):
            if p not in self.state:
                del state[p]
        for p, saved in self.state.items():
            current = state[p]
            for k in list(current):
                if k not in saved:
                    del current[k]
            for k, v in saved.items():
                current[k] = _put(current.get(k), _clone(v))
        for group, saved in zip(self.optimizer.param_groups, self.groups, strict=True):
            for k in [k for k in group if k != "params" and k not in saved]:
                del group[k]
            for k, v in saved.items():
                group[k] = _put(group.get(k), _clone(v))
        attrs = vars(self.optimizer)
        for k in [
            k
            for k, v in attrs.items()
            if k not in self.flags and isinstance(v, bool | int | float | str | type(None))
        ]:
            del attrs[k]
        attrs.update(self.flags)
        if self.scaler is not None and self.scaler_vars is not None:
            scaler_attrs = vars(self.scaler)
            scaler_attrs.clear()
            scaler_attrs.update({k: _clone(v) for k, v in self.scaler_vars.items()})

    def restore_rng(self) -> None:
        """The torch, CUDA, numpy and python RNGs and the loaders' generators."""
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        np.random.set_state(self.numpy_rng)
        random.setstate(self.python_rng)
        for g, state in self.generators:
            g.set_state(state)


def _unique_params(model: torch.nn.Module, optimizer: Optimizer) -> list[torch.Tensor]:
    seen: dict[int, torch.Tensor] = {}
    for p in model.parameters():
        seen.setdefault(id(p), p)
    for group in optimizer.param_groups:
        for p in group["params"]:
            seen.setdefault(id(p), p)
    return list(seen.values())


def _generators(loaders: list[Any]) -> list[torch.Generator]:
    """The torch generators a loader draws from (its own, its sampler's)."""
    found: dict[int, torch.Generator] = {}
    for loader in loaders:
        for owner in (
            loader,
            getattr(loader, "sampler", None),
            getattr(loader, "batch_sampler", None),
            getattr(getattr(loader, "batch_sampler", None), "sampler", None),
        ):
            g = getattr(owner, "generator", None)
            if isinstance(g, torch.Generator):
                found.setdefault(id(g), g)
    return list(found.values())


# ---------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------


def _cycle(loader: Iterable[Any]) -> Generator[Any, None, None]:
    """Batches of ``loader`` for ever, restarting it (a new order if it shuffles)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("find_lr: train_loader yielded no batch")


def _default_step(loss_fn: Callable[..., torch.Tensor]) -> Callable[[Any, Any], torch.Tensor]:
    def step(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        if not isinstance(batch, list | tuple) or len(batch) != 2:
            raise ValueError(
                "find_lr: without step_fn each batch must be an (inputs, targets) pair, "
                f"got {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, list | tuple) else "")
                + "; pass step_fn=lambda model, batch: loss for other batches"
            )
        x, y = batch
        return loss_fn(model(x), y)

    return step


def _value(loss: Any) -> float:
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise ValueError(f"find_lr: the loss must be a scalar, got shape {tuple(loss.shape)}")
        return float(loss.detach().item())
    raise ValueError(f"find_lr: the loss must be a torch scalar tensor, got {type(loss).__name__}")


def _set_lr(group: dict[str, Any], lr: float) -> None:
    current = group.get("lr")
    if isinstance(current, torch.Tensor):
        current.fill_(lr)
    else:
        group["lr"] = lr


def _val_loss(
    model: torch.nn.Module, step: Callable[[Any, Any], torch.Tensor], loader: Iterable[Any]
) -> float:
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in loader:
            total += _value(step(model, batch))
            count += 1
    model.train(was_training)
    if count == 0:
        raise ValueError("find_lr: val_loader yielded no batch")
    return total / count


def _run(
    model: torch.nn.Module,
    optimizer: Optimizer,
    step: Callable[[Any, Any], torch.Tensor],
    batches: Iterator[Any],
    val_loader: Iterable[Any] | None,
    lrs: np.ndarray,
    ratios: list[float],
    accumulate: int,
    beta: float,
    diverge: float,
    scaler: Any,
) -> tuple[list[float], int]:
    """One range test from the current state; returns the losses and the updates made."""
    losses: list[float] = []
    updates = skipped = 0
    model.train()
    while len(losses) < len(lrs):
        lr = float(lrs[len(losses)])
        for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
            _set_lr(group, lr * ratio)
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(accumulate):
            loss = step(model, next(batches))
            value = _value(loss)
            total += value
            if not math.isfinite(value):
                break
            part = loss / accumulate
            (part if scaler is None else scaler.scale(part)).backward()
        mean = total / accumulate
        if math.isfinite(mean):
            if scaler is None:
                optimizer.step()
            else:
                scale = scaler.get_scale()
                scaler.step(optimizer)
                scaler.update()
                if scaler.get_scale() < scale:  # inf/NaN gradients: the scaler skipped the update
                    skipped += 1
                    if skipped > len(lrs):
                        break  # it never recovers: stop rather than loop for ever
                    continue  # no point recorded; the same lr again
            updates += 1
            if val_loader is not None:
                mean = _val_loss(model, step, val_loader)
        losses.append(mean)
        if finder.divergence_index(losses, beta=beta, diverge=diverge) is not None:
            break
    return losses, updates


def find_lr(
    model: torch.nn.Module,
    optimizer: Optimizer,
    loss_fn: Callable[..., torch.Tensor] | None,
    train_loader: Iterable[Any],
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int = 100,
    mode: str = "exp",
    accumulate: int = 1,
    val_loader: Iterable[Any] | None = None,
    step_fn: Callable[[torch.nn.Module, Any], torch.Tensor] | None = None,
    repeats: int = 1,
    smooth: float = 0.98,
    diverge: float = 5.0,
    method: str = "default",
    scaler: Any = None,
) -> FinderResult:
    """Run an lr range test and suggest an lr; leave everything as it was.

    Step ``i`` (0-based) sets the first param group's lr to ``ramp[i]`` (see
    :func:`lrkit.finder.ramp`: exponential from ``min_lr`` to ``max_lr``, or
    linear), the other groups keeping their ratio to the first group's lr,
    then averages the loss over ``accumulate`` batches, back-propagates
    ``loss / accumulate`` for each and makes one optimizer update: exactly
    ``num_steps`` updates per repeat unless the loss diverges first (NaN/inf,
    or the smoothed loss above ``diverge`` x its best; a non-finite loss makes
    no update). The loader is cycled when it runs out. With ``val_loader``
    the recorded loss is the mean validation loss after each update (model in
    eval mode, no gradients).

    Afterwards parameters, gradients, buffers (BatchNorm running statistics
    included) and train/eval flags, the optimizer's state and param groups,
    the generators of the loaders and the torch (CUDA too, if initialised),
    numpy and python RNG states are exactly what they were, also when the
    sweep raises. ``repeats`` runs restart from that state but keep drawing
    from the RNGs, so a shuffling loader gives each repeat its own data order.

    Args:
        model: The model, trained in place during the sweep.
        optimizer: Its optimizer (any torch optimizer).
        loss_fn: ``loss_fn(model(x), y)`` for ``(x, y)`` batches; may be
            ``None`` with ``step_fn``.
        train_loader: Any re-iterable of batches (a DataLoader, a list).
        min_lr: The first lr, > 0.
        max_lr: The last lr, > ``min_lr``.
        num_steps: Optimizer updates per repeat, >= 2.
        mode: ``"exp"`` or ``"linear"``.
        accumulate: Batches per update (gradient accumulation), >= 1.
        val_loader: Record the validation loss instead of the training loss.
        step_fn: ``step_fn(model, batch) -> loss``, for models whose loss is
            not ``loss_fn(model(x), y)``.
        repeats: Sweeps over different data orders, >= 1; ``.losses`` is
            their mean, ``.run_suggestions`` each one's pick.
        smooth: The ``beta`` of :func:`lrkit.finder.smooth`, in ``[0, 1)``.
        diverge: The stop factor, > 1.
        method: One of :data:`lrkit.finder.METHODS`.
        scaler: A ``torch.amp.GradScaler`` for mixed precision: the loss is
            scaled before ``backward``, the update goes through
            ``scaler.step`` / ``scaler.update``, and an update the scaler
            skips (inf/NaN gradients) records no point and is not counted:
            the same lr is tried again. Its state is restored too.

    Returns:
        A :class:`FinderResult`.

    Raises:
        ValueError: If an argument is out of range, or a batch or loss has
            the wrong form.
        TypeError: If ``model`` or ``optimizer`` has the wrong type.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"find_lr: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"find_lr: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    for name, value, low in (
        ("num_steps", num_steps, 2),
        ("accumulate", accumulate, 1),
        ("repeats", repeats, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"find_lr: {name} must be an integer >= {low}, got {value!r}")
    if method not in finder.METHODS:
        raise ValueError(f"find_lr: method must be one of {sorted(finder.METHODS)}, got {method!r}")
    if step_fn is None and loss_fn is None:
        raise ValueError("find_lr: give loss_fn, or step_fn(model, batch) -> loss")
    lrs = finder.ramp(min_lr, max_lr, num_steps, mode)
    if isinstance(smooth, bool) or not isinstance(smooth, int | float) or not 0 <= smooth < 1:
        raise ValueError(f"find_lr: smooth must be a number in [0, 1), got {smooth!r}")
    if isinstance(diverge, bool) or not isinstance(diverge, int | float) or not diverge > 1:
        raise ValueError(f"find_lr: diverge must be a number > 1, got {diverge!r}")
    first = float(optimizer.param_groups[0]["lr"])
    if not first > 0:
        raise ValueError(
            "find_lr: the first param group's lr must be > 0 (the other groups keep their "
            f"ratio to it), got {first!r}"
        )
    ratios = [float(g["lr"]) / first for g in optimizer.param_groups]
    step = step_fn if step_fn is not None else _default_step(loss_fn)  # type: ignore[arg-type]

    loaders = [train_loader] + ([val_loader] if val_loader is not None else [])
    snapshot = _Snapshot(model, optimizer, loaders, scaler)
    runs: list[np.ndarray] = []
    updates = 0
    try:
        for _ in range(repeats):
            # closing(): let go of the loader's iterator (and its workers) at once.
            with contextlib.closing(_cycle(train_loader)) as batches:
                losses, made = _run(
                    model,
                    optimizer,
                    step,
                    batches,
                    val_loader,
                    lrs,
                    ratios,
                    accumulate,
                    smooth,
                    diverge,
                    scaler,
                )
            snapshot.restore_training()
            runs.append(np.asarray(losses, dtype=np.float64))
            updates += made
    finally:
        snapshot.restore_training()
        snapshot.restore_rng()

    return FinderResult.from_runs(
        lrs, runs, method=method, beta=smooth, diverge=diverge, updates=updates
    )
