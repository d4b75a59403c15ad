"""Benchmarks for ``lrkit compare``: built-in tasks, optimizers and single runs.

- :mod:`lrkit.bench.tasks`: the registry of offline tasks (``digits``,
  ``signals``, ``scales``, ``charlm``, ``quadratic``, ``rosenbrock``).
- :mod:`lrkit.bench.optimizers`: the registry of optimizers (torch.optim and
  the learning-rate-free extras).
- :mod:`lrkit.bench.run`: :class:`~lrkit.bench.run.RunConfig`, its stable key,
  and :func:`~lrkit.bench.run.execute` for one run.

Importing this package does not import torch; building a task or executing a
run does.
"""

from __future__ import annotations

__all__: list[str] = []
