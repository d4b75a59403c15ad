"""The main job: ``lrkit compare`` and ``lrkit tune`` on built-in tasks or the user's own.

- :mod:`lrkit.bench.trial`: ``@lrkit.task``, :class:`~lrkit.bench.trial.Trial`,
  :func:`~lrkit.bench.trial.load_task` (a built-in name, ``file.py:name``,
  ``module:name``); :mod:`lrkit.bench.torch_trial`: the trial's torch
  optimizer (watched) and driver.
- :mod:`lrkit.bench.tasks`: the built-in offline tasks (``digits``,
  ``signals``, ``scales``, ``charlm``, ``quadratic``, ``rosenbrock``), tasks
  of the same kind as the user's; :mod:`lrkit.bench.optimizers`: the
  optimizers (torch.optim and the learning-rate-free extras).
- :mod:`lrkit.bench.run`: :class:`~lrkit.bench.run.RunConfig` (its key
  computed once), :class:`~lrkit.bench.run.RunResult` and
  :func:`~lrkit.bench.run.execute`, one run in this process.
- :mod:`lrkit.bench.runner`: executors (processes, inline) and
  :func:`~lrkit.bench.runner.run_grid`; :mod:`lrkit.bench.store`: the SQLite
  run store; :mod:`lrkit.bench.progress`: progress bar and lines.
- :mod:`lrkit.bench.grid`, :mod:`lrkit.bench.compare`: grids and
  :func:`lrkit.compare`; :mod:`lrkit.bench.tune`: :func:`lrkit.tune` (Optuna).
- :mod:`lrkit.bench.report`, :mod:`lrkit.bench.export`: report.html, PNGs,
  TensorBoard and CSV; :mod:`lrkit.bench.find`: the lr finder on built-in tasks.

Importing this package does not import torch; executing a run does.
"""

from __future__ import annotations

__all__: list[str] = []
