"""Watch any PyTorch training loop: :class:`Monitor`.

::

    monitor = lrkit.torch.Monitor(optimizer, model, every=10,
                                  sinks=[lrkit.sinks.CSV("run.csv")])
    for batch in loader:
        loss = loss_fn(model(batch.x), batch.y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        monitor.step(loss)
    print(monitor.close())          # the final diagnosis

What is measured, and when: the monitor registers a pre- and a post-hook on
``optimizer.step``, so the numbers of an update are taken *at* that update,
whatever the loop does around it (``zero_grad`` right after the step, the
scheduler stepped before the monitor):

- before a recorded update: the lr and momentum (or Adam's beta1) of every
  param group, the lr the update uses; with ``model``, a copy of each
  group's weights, into buffers kept between updates;
- after it: with ``model``, the gradient norm over the model's parameters
  (listed when the monitor is made; the norm ``clip_grad_norm_``
  computes, of the gradients the update used:
  read after the step, so that an ``optimizer.step(closure)`` that runs the
  backward pass inside the step is measured too) and each group's
  update-to-weight ratio ``||w_{t+1} - w_t|| / ||w_t||``;
- :meth:`Monitor.step` adds the training loss and hands the step to the
  :class:`lrkit.monitor.Recorder` (sinks, live diagnosis).

Step ``k`` is the optimizer's ``k``-th update since the monitor was made.
Losses given between two updates (gradient accumulation) are averaged into
the next update's loss. With ``every=n`` only updates ``0, n, 2n, ...`` are
measured; the others cost one integer increment, and their loss is not read
(a loss tensor is not synchronised with the device).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch

from lrkit.diagnosis import Diagnosis
from lrkit.monitor import Recorder, Sink, group_tag

__all__ = ["Monitor"]

log = logging.getLogger("lrkit.monitor")


class Monitor:
    """Record lr, momentum, loss, gradient norm and update ratio of a torch training run.

    Args:
        optimizer: The ``torch.optim.Optimizer`` the loop steps.
        model: The ``torch.nn.Module`` trained; given, the gradient norm and
            the per-group update-to-weight ratio are measured too.
        every: Measure one update in ``every``.
        sinks: Where the record also goes as it grows (``lrkit.sinks``).
        live: Diagnose as the run goes; the first bad verdict is logged once
            as a warning on the ``lrkit.monitor`` logger.
        controller: An :class:`lrkit.torch.Scheduler` with a guard: when the
            live verdict turns ``too_high``, the monitor asks it to
            :meth:`~lrkit.torch.Scheduler.cut` the lr (by the guard's
            factor, as a rollback would, keeping the weights).

    Raises:
        TypeError: ``optimizer`` is not a torch optimizer, ``model`` not a
            module, or ``controller`` not a Scheduler with a guard.
        ValueError: ``every`` is not an integer >= 1.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        model: torch.nn.Module | None = None,
        every: int = 1,
        sinks: Sequence[Sink] = (),
        *,
        live: bool = True,
        controller: Any = None,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"Monitor: optimizer must be a torch.optim.Optimizer, got "
                f"{type(optimizer).__name__}"
            )
        if model is not None and not isinstance(model, torch.nn.Module):
            raise TypeError(f"Monitor: model must be a torch.nn.Module, got {type(model).__name__}")
        if controller is not None:
            from lrkit.torch.driver import Scheduler

            if not isinstance(controller, Scheduler) or controller.guard is None:
                raise TypeError(
                    "Monitor: controller must be an lrkit.torch.Scheduler with a guard "
                    "(guard=lrkit.Guard(...) or a guard(...) spec), got "
                    f"{type(controller).__name__}"
                )
        self.optimizer = optimizer
        self.model = model
        # the model's parameters, listed once (walking the modules at every update costs
        # more than the norms); a module added to the model later is not seen
        self._model_params = [] if model is None else list(model.parameters())
        self.controller = controller
        self.recorder = Recorder(sinks, every=every, live=live, on_bad=self._on_bad)
        self._updates = 0  # updates seen by the hooks
        self._measured: dict[str, float] | None = None  # the last measured update's numbers
        self._measured_step = -1
        self._recorded = -1  # the last step handed to the recorder
        self._losses: list[Any] = []
        self._before: list[list[torch.Tensor]] | None = None
        self._grad_norm: torch.Tensor | None = None
        self._handles = [
            optimizer.register_step_pre_hook(self._pre),
            optimizer.register_step_post_hook(self._post),
        ]

    # -- hooks ---------------------------------------------------------------------

    def _groups(self) -> list[list[torch.Tensor]]:
        return [list(g["params"]) for g in self.optimizer.param_groups]

    def _pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if not self.recorder.due(self._updates):
            return
        numbers: dict[str, float] = {}
        for i, group in enumerate(self.optimizer.param_groups):
            numbers[group_tag("lr", i)] = float(group["lr"])
            if "momentum" in group:
                numbers[group_tag("momentum", i)] = float(group["momentum"])
            elif "betas" in group:
                numbers[group_tag("momentum", i)] = float(group["betas"][0])
        self._measured = numbers
        if self.model is None:
            return
        with torch.no_grad():
            groups = self._groups()
            if self._before is None or [len(b) for b in self._before] != [len(g) for g in groups]:
                self._before = [[p.detach().clone() for p in g] for g in groups]
            else:
                for buffers, params in zip(self._before, groups, strict=True):
                    if buffers:
                        torch._foreach_copy_(buffers, [p.detach() for p in params])

    def _post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        step = self._updates
        self._updates += 1
        numbers = self._measured
        if numbers is None or not self.recorder.due(step):
            return
        self._measured_step = step
        if self.model is None or self._before is None:
            return
        before = self._before
        with torch.no_grad():
            grads: list[torch.Tensor] = []
            if self._grad_norm is None:
                # after the update: a closure (LBFGS, Lightning) runs backward inside step()
                grads = [p.grad for p in self._model_params if p.grad is not None]
            flat = [b for buffers in before for b in buffers]
            # one norm call for the gradients and the weights before, then the buffers
            # become w_t - w_{t+1} in place (the next recorded update copies over them)
            norms = torch._foreach_norm(grads + flat) if grads or flat else []
            for buffers, params in zip(before, self._groups(), strict=True):
                if buffers:
                    torch._foreach_sub_(buffers, [p.detach() for p in params])
            norms = [*norms, *(torch._foreach_norm(flat) if flat else [])]
            if self._grad_norm is not None:
                norms.append(self._grad_norm)
            # one transfer to the host for all of them
            got = torch.stack([n.float() if n.dtype != torch.float32 else n for n in norms])
            values = got.cpu().tolist()
        grad_part, values = values[: len(grads)], values[len(grads) :]
        weight_part, values = values[: len(flat)], values[len(flat) :]
        change_part = values[: len(flat)]
        start = 0
        for i, buffers in enumerate(before):
            end = start + len(buffers)
            norm = math.sqrt(sum(x * x for x in weight_part[start:end]))
            change = math.sqrt(sum(x * x for x in change_part[start:end]))
            numbers[group_tag("update_ratio", i)] = (
                change / norm if norm > 0 else (0.0 if change == 0 else math.inf)
            )
            start = end
        if grads:
            numbers["grad_norm"] = math.sqrt(sum(x * x for x in grad_part))
        elif self._grad_norm is not None:
            numbers["grad_norm"] = values[-1]
        self._grad_norm = None

    # -- the loop's side --------------------------------------------------------------

    def step(self, loss: Any = None) -> None:
        """Record the update just made, with its training ``loss`` (a float or a tensor).

        Call it once after each ``optimizer.step()``; the lr and the other
        numbers were taken at the update itself. Called before any update,
        or again before the next one, the loss waits and is averaged into
        the next update's.
        """
        latest = self._updates - 1
        if latest <= self._recorded:  # no update since the last record: the loss is the next's
            if loss is not None and self.recorder.due(latest + 1):
                self._losses.append(loss)
            return
        if loss is not None and self.recorder.due(latest):
            self._losses.append(loss)
        losses, self._losses = self._losses, []
        self._recorded = latest
        if self._measured_step != latest or self._measured is None:
            return
        numbers, self._measured = self._measured, None
        if losses:
            values = [
                float(x.detach().float().mean()) if torch.is_tensor(x) else float(x) for x in losses
            ]
            numbers["loss"] = sum(values) / len(values)
        self.recorder.add(latest, numbers)

    def _on_bad(self, found: Diagnosis) -> None:
        if self.controller is not None and found.verdict == "too_high":
            self.controller.cut()
            log.warning(
                "Monitor: cut the lr by the guard's factor (now x%g of the schedule)",
                self.controller.guard.multiplier,
            )

    # -- results ---------------------------------------------------------------

    @property
    def record(self) -> Any:
        """The :class:`lrkit.monitor.Record` so far."""
        return self.recorder.record

    def diagnosis(self) -> Diagnosis:
        """The verdict on the lr so far, with its evidence and advice."""
        return self.recorder.diagnosis()

    @property
    def summary(self) -> dict[str, Any]:
        """End-of-run values: the updates seen and the optimizer state's size, measured now.

        ``optimizer_state_copies`` is the optimizer state's size in copies of
        the weights (SGD 0, momentum 1, Adam 2, ...), ``optimizer_state_bytes``
        its bytes: see :func:`lrkit.torch.optimizer_state_size`. The sinks
        get these with the verdict when the monitor closes.
        """
        from lrkit.torch.memory import optimizer_state_size

        size = optimizer_state_size(self.optimizer)
        return {
            "updates": self._updates,
            "optimizer_state_copies": size.copies,
            "optimizer_state_bytes": size.state_bytes,
        }

    def close(self) -> Diagnosis:
        """Remove the hooks, flush and close the sinks, and return the final diagnosis.

        The sinks' summary holds the verdict, its evidence and advice, and
        :attr:`summary`. Idempotent.
        """
        if self._handles:
            self.recorder.summary.update(self.summary)
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return self.recorder.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Monitor({type(self.optimizer).__name__}, every={self.recorder.every}, "
            f"steps={self._updates}, sinks={[type(s).__name__ for s in self.recorder.sinks]})"
        )
