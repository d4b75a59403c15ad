"""Watch a PyTorch Lightning fit: :class:`Monitor`, a ``lightning.pytorch.Callback``.

::

    import lightning.pytorch as pl
    import lrkit.lightning, lrkit.sinks

    monitor = lrkit.lightning.Monitor(every=10, sinks=[lrkit.sinks.CSV("run.csv")])
    trainer = pl.Trainer(max_steps=10_000, callbacks=[monitor])
    trainer.fit(model, loader)
    print(monitor.diagnosis())      # the final verdict, evidence and advice

The callback is :class:`lrkit.torch.Monitor` driven by Lightning's hooks, so
the numbers are measured as in a plain torch loop (SPEC §9): the same tags,
record, sinks and live diagnosis. This module imports Lightning; ``import
lrkit`` and ``import lrkit.torch`` do not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch

from lrkit.diagnosis import Diagnosis
from lrkit.monitor import Record, Recorder, Sink
from lrkit.torch.monitor import Monitor as TorchMonitor

__all__ = ["Monitor"]

log = logging.getLogger("lrkit.monitor")


class _TorchMonitor(TorchMonitor):
    """:class:`lrkit.torch.Monitor` with the two things Lightning needs from it.

    - :meth:`start_at`: count the steps from the trainer's ``global_step``,
      so a resumed fit goes on where the checkpoint stopped.
    - :meth:`set_grad_norm`: Lightning calls ``optimizer.step(closure)``, and
      the closure runs the forward and backward pass *inside* the step, after
      the step's pre-hook: the gradients the pre-hook sees are the last
      step's. ``on_before_optimizer_step`` runs after the closure, before the
      update, and hands the norm of the new ones here.
    """

    def start_at(self, step: int) -> None:
        self._updates = step
        self._recorded = step - 1

    def set_grad_norm(self, model: torch.nn.Module) -> None:
        if self.model is None or not self.recorder.due(self._updates):
            return
        with torch.no_grad():
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            if grads:
                norms = torch._foreach_norm(grads)
                self._grad_norm = torch.linalg.vector_norm(torch.stack(norms))


class Monitor(pl.Callback):
    """Record lr, momentum, loss, gradient norm and update ratio of a Lightning fit (SPEC §9).

    At ``on_train_start`` the callback builds an :class:`lrkit.torch.Monitor`
    on the trainer's first optimizer (``trainer.optimizers[0]``; a second
    optimizer is not watched) and the LightningModule as the model. Step
    ``k`` is the optimizer's update made at ``trainer.global_step == k``
    (a resumed fit goes on counting from the checkpoint's step; with several
    optimizers, whose steps ``global_step`` counts together, the record
    starts at ``global_step`` and counts the first optimizer's updates):

    - ``lr/group{i}``, ``momentum/group{i}`` (momentum, or Adam's beta1):
      read by the optimizer's step pre-hook, the values the update uses,
      whatever scheduler (``interval="step"`` or ``"epoch"``) set them;
    - ``grad_norm``: the norm over the module's gradients, taken in
      ``on_before_optimizer_step`` (after the backward pass, before
      Lightning's gradient clipping, the norm ``clip_grad_norm_`` returns);
    - ``update_ratio/group{i}``: ``||w_{t+1} - w_t|| / ||w_t||`` of each
      param group at the update, from a copy of its weights on the device;
    - ``loss``: the loss ``training_step`` returned (``outputs["loss"]`` in
      ``on_train_batch_end``, times ``accumulate_grad_batches``, since
      Lightning divides it by that factor with automatic optimization). With
      ``accumulate_grad_batches=n`` the losses of the batches of one update
      are averaged into that update's loss.

    It works next to ``LearningRateMonitor`` and any logger; it logs nothing
    through Lightning's loggers (give it ``sinks`` for that). On several
    processes (DDP) every rank records its own losses; only global rank 0
    writes to the sinks and diagnoses live.

    At ``on_train_end`` (or ``on_exception``) the callback closes itself: the
    optimizer's hooks are removed, the sinks closed, the final diagnosis kept
    for :meth:`diagnosis` and logged on the ``lrkit.monitor`` logger (a
    warning when the verdict is bad, else info). A second ``fit`` with the
    same callback raises: give each fit a new one.

    Args:
        every: Record one update in ``every``.
        sinks: Where the record also goes as it grows (``lrkit.sinks``).
        live: Diagnose as the run goes; the first bad verdict is logged once
            as a warning on the ``lrkit.monitor`` logger.

    Raises:
        ValueError: ``every`` is not an integer >= 1.
        TypeError: a sink has no ``write``/``close``.
    """

    def __init__(self, every: int = 1, sinks: Sequence[Sink] = (), *, live: bool = True) -> None:
        super().__init__()
        self._idle = Recorder(sinks, every=every, live=live)  # checks the arguments
        self.every = every
        self.sinks = list(sinks)
        self.live = live
        #: The :class:`lrkit.torch.Monitor` doing the measuring, once training started.
        self.monitor: _TorchMonitor | None = None
        self._final: Diagnosis | None = None
        self._zero = True

    # -- the callback -------------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._final is not None:
            raise RuntimeError(
                "lrkit.lightning.Monitor: this callback watched a fit that has ended (its sinks "
                "are closed); give each fit a new Monitor"
            )
        if not trainer.optimizers:
            log.warning("lrkit.lightning.Monitor: the trainer has no optimizer; nothing recorded")
            return
        self._zero = trainer.is_global_zero
        monitor = _TorchMonitor(
            trainer.optimizers[0],
            pl_module,
            every=self.every,
            sinks=self.sinks if self._zero else (),
            live=self.live and self._zero,
        )
        monitor.start_at(trainer.global_step)
        self.monitor = monitor

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        monitor = self.monitor
        if monitor is not None and getattr(optimizer, "_optimizer", optimizer) is monitor.optimizer:
            monitor.set_grad_norm(pl_module)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.monitor is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not (torch.is_tensor(loss) or isinstance(loss, float | int)):
            loss = None
        accumulate = trainer.accumulate_grad_batches
        if loss is not None and accumulate != 1 and pl_module.automatic_optimization:
            loss = loss * accumulate  # Lightning divided it for the backward pass
        self.monitor.step(loss)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.close()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self.monitor is None or self._final is not None:
            return
        try:
            self.close()
        except Exception as exc:  # do not hide the exception that stopped the fit
            log.warning("lrkit.lightning.Monitor: closing after %r failed: %s", exception, exc)

    # -- results ------------------------------------------------------------------

    @property
    def record(self) -> Record:
        """The :class:`lrkit.monitor.Record` so far (empty before training starts)."""
        return self.monitor.record if self.monitor is not None else self._idle.record

    def diagnosis(self) -> Diagnosis:
        """The verdict on the lr so far (the final one once the fit has ended)."""
        if self._final is not None:
            return self._final
        if self.monitor is not None:
            return self.monitor.diagnosis()
        return self._idle.diagnosis()

    def close(self) -> Diagnosis:
        """Remove the optimizer's hooks, close the sinks, log and return the final diagnosis.

        Called at the end of training; a second call returns the same diagnosis.
        """
        if self._final is not None:
            return self._final
        found = self.monitor.close() if self.monitor is not None else self._idle.close()
        self._final = found
        if self._zero:
            level = logging.WARNING if found.bad else logging.INFO
            log.log(level, "lrkit.lightning.Monitor: final verdict %s", found)
        return found

    def __repr__(self) -> str:
        return (
            f"Monitor(every={self.every}, records={len(self.record)}, "
            f"sinks={[type(s).__name__ for s in self.sinks]})"
        )
