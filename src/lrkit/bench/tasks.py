"""Built-in benchmark tasks: small, offline, deterministic.

Every task is a :class:`Task`: a name, a one-line description, a ``version``
(bumped whenever the data, the model or the metric changes, so stored runs of
an older version are never reused), a step budget, a batch size, a validation
metric with its direction and a target value. ``task.build(seed)`` returns a
:class:`Problem`: the data (train / validation split), a fresh torch model
initialised from ``seed``, the training loss and the evaluation.

No task downloads anything. The data is fixed per task version; the seed only
changes the model's initialisation (and, in the runner, the batch order).

==========  ==================================================  ==========  =====
task        what                                                metric      steps
==========  ==================================================  ==========  =====
digits      sklearn's bundled 8x8 digits, MLP                   val_acc     300
signals     generated 1-D signal classes (MNIST-1D style), CNN  val_acc     200
scales      regression, feature scales 0.03..30, MLP            val_loss    300
charlm      character LM on stdlib sources, tiny transformer    val_loss    300
quadratic   ill-conditioned quadratic, noisy gradients          loss        200
rosenbrock  2-D Rosenbrock valley                               loss        500
digits_sgd  digits, sklearn SGDClassifier by partial_fit (sgd)  val_loss    300
==========  ==================================================  ==========  =====

``digits_sgd`` trains a scikit-learn estimator, not a torch model
(:mod:`lrkit.bench.sklearn_task`): it has no :class:`Problem`, and it takes
the optimizer ``sgd`` only (:attr:`Task.optimizers`).

Torch is imported only when a task is built, so listing tasks stays fast.

Examples:
    >>> from lrkit.bench.tasks import TASKS, get_task
    >>> sorted(TASKS)
    ['charlm', 'digits', 'digits_sgd', 'quadratic', 'rosenbrock', 'scales', 'signals']
    >>> get_task("digits").metric, get_task("digits").mode
    ('val_acc', 'max')
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrkit.bench.sklearn_task import digits_sgd_task
from lrkit.bench.trial import Task, Trial

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "CHARLM_FILES",
    "TASKS",
    "Problem",
    "Task",
    "charlm_text",
    "get_task",
]

Batch = tuple["torch.Tensor", ...]


@dataclass
class Problem:
    """A built task: data, a fresh model, its loss and its evaluation.

    Attributes:
        model: A freshly initialised torch module (no BatchNorm, no dropout).
        train: Training tensors sharing their first dimension (samples); empty
            for tasks without data (their gradient is exact).
        val: Validation tensors sharing their first dimension; may be empty.
        loss: ``loss(model, batch)`` -> the mean training loss on ``batch``
            (a tuple of tensors indexed from ``train``), a scalar tensor.
        evaluate: ``evaluate(model)`` -> validation metrics by name (plain
            floats); it always contains the task's ``metric``. Call it under
            ``torch.no_grad()`` with the model in eval mode.
    """

    model: nn.Module
    train: Batch
    val: Batch
    loss: Callable[[nn.Module, Batch], torch.Tensor]
    evaluate: Callable[[nn.Module], dict[str, float]]

    @property
    def n_train(self) -> int:
        """The number of training samples (0 for data-free tasks)."""
        return int(self.train[0].shape[0]) if self.train else 0

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """Yield training batches forever: shuffled epochs without replacement.

        Args:
            batch_size: Samples per batch (capped at the training set's size).
            generator: The torch generator that orders the samples.

        Yields:
            Tuples of tensors, one per entry of ``train`` (empty tuples for
            data-free tasks).
        """
        import torch

        n = self.n_train
        if n == 0:
            while True:
                yield ()
        size = min(batch_size, n)
        while True:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n - size + 1, size):
                index = order[start : start + size]
                yield tuple(t[index] for t in self.train)


def _builtin(
    name: str,
    description: str,
    *,
    version: str,
    steps: int,
    batch_size: int,
    metric: str,
    mode: str,
    target: float,
    builder: Callable[[int], Problem],
    fingerprint: Callable[[], dict[str, str]] | None = None,
    batched: bool = True,
) -> Task:
    """A built-in task: a :class:`Task` whose function is :func:`train_builtin`."""
    from lrkit.bench.run import BENCH_RULE

    return Task(
        name=name,
        fn=train_builtin,
        metric=metric,
        mode=mode,
        steps=steps,
        ref=name,
        target=target,
        description=description,
        version=version,
        batch_size=batch_size,
        batched=batched,
        checkpoints=True,
        builtin=True,
        divergence=BENCH_RULE,
        report_feeds_schedule=False,
        builder=builder,
        fingerprint=fingerprint,
    )


def train_builtin(trial: Trial) -> float:
    """The training loop of every built-in task, written as any user task is.

    Builds the task's :class:`Problem` from ``trial.seed``, trains
    ``trial.steps`` minibatch updates with ``trial.optimizer`` and
    ``trial.scheduler`` (at ``trial.batch_size`` samples a step when the grid
    sets batch sizes, else at the task's own), logs each step's training loss (the built-in
    divergence rule, :data:`lrkit.bench.run.BENCH_RULE`, or the spec's
    guard, watches it) and reports the metric at 16 evenly spaced steps
    (other validation values are logged beside it). A ``plateau(...)`` or
    ``adaptive(...)`` schedule observes the mean training loss of each block
    of :func:`~lrkit.bench.run.observe_every` steps (minibatch losses are too
    noisy for patience counted in steps).

    An optimizer that needs ``opt.step(closure)`` (``sam(...)``) gets one
    that recomputes the same batch's loss and gradient; the others are
    stepped without (a torch optimizer calls a closure it is given). With a
    ``swa(...)`` schedule the metric is measured on ``trial.eval_model``:
    the averaged weights once averaging began (``update_bn`` first).

    Before each report it hands ``trial.checkpoint`` its state after that
    many updates (model, optimizer and scheduler ``state_dict``, the step,
    torch's RNG state, the last metric, a plateau block's losses): plain
    references, nothing copied, so a run that never restores pays nothing.
    Given ``trial.restore()``, it loads that state, moves the batch stream
    on by the restored step (batches depend only on the seed and the step)
    and continues: the rest of the run is the same as without the break.
    """
    import torch

    from lrkit.bench.optimizers import get_optimizer
    from lrkit.bench.run import SNAPSHOT_EVERY, eval_steps, observe_every
    from lrkit.controllers import Adaptive, Guard, Plateau

    task = trial.task
    steps = trial.steps
    optimizer_spec = get_optimizer(trial.optimizer_name)
    problem = task.build(trial.seed)
    model = problem.model
    optimizer = trial.optimizer([p for p in model.parameters() if p.requires_grad])
    schedule = trial.schedule
    guarded = isinstance(schedule, Guard)
    # The model: a guard rolls it back, a swa(...) schedule averages it.
    scheduler = trial.scheduler(optimizer, model=model, snapshot_every=SNAPSHOT_EVERY)
    averaged = trial.averaged_model
    inner = schedule.schedule if guarded else schedule
    block = observe_every(steps) if isinstance(inner, Plateau | Adaptive) else 0
    block_losses: list[float] = []
    batch_size = trial.batch_size or task.batch_size or 1
    if problem.n_train and batch_size > problem.n_train:
        raise ValueError(
            f"batch size {batch_size} is more than task {task.name!r}'s "
            f"{problem.n_train} training samples"
        )
    batches = problem.batches(batch_size, torch.Generator().manual_seed(trial.seed))
    points = set(eval_steps(steps))

    def state(step: int, metric: float) -> dict[str, Any]:
        return {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "metric": metric,
            "block_losses": list(block_losses),
            **({} if averaged is None else {"averaged": averaged.state_dict()}),
        }

    def evaluate(step: int) -> float:
        model.eval()
        optimizer_spec.eval_mode(optimizer)
        with torch.no_grad():  # swa(...): the averaged weights once averaging began
            values = problem.evaluate(trial.eval_model(model, _one_epoch(problem.train)))
        optimizer_spec.train_mode(optimizer)
        model.train()
        main = float(values.pop(task.metric))
        trial.log(step, **{k: float(v) for k, v in values.items()})
        trial.checkpoint(state(step, main))
        trial.report(step, main)
        return main

    model.train()
    restored = trial.restore()
    if restored is None:
        start = 0
        last = evaluate(0)
    else:
        model.load_state_dict(restored["model"])
        optimizer.load_state_dict(restored["optimizer"])
        scheduler.load_state_dict(restored["scheduler"])
        torch.set_rng_state(restored["rng"])
        start, last = int(restored["step"]), float(restored["metric"])
        block_losses.extend(restored["block_losses"])
        if averaged is not None and "averaged" in restored:
            averaged.load_state_dict(restored["averaged"])
        for _ in range(start):
            next(batches)
    for step in range(start, steps):
        batch = next(batches)
        loss = problem.loss(model, batch)
        value = float(loss.item())
        trial.log(step, loss=value)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if optimizer_spec.needs_closure:  # SAM: a second gradient, at perturbed weights
            optimizer.step(functools.partial(_loss_backward, problem, model, batch))
        else:  # a closure given to a torch optimizer would be called again
            optimizer.step()
        metric = None
        if block:
            block_losses.append(value)
            if (step + 1) % block == 0:
                finite = [v for v in block_losses if math.isfinite(v)]
                metric = sum(finite) / len(finite) if finite else math.nan
                block_losses.clear()
        scheduler.step(metric)
        if step + 1 in points:
            last = evaluate(step + 1)
    return last


def _loss_backward(problem: Problem, model: nn.Module, batch: Batch) -> torch.Tensor:
    """SAM's closure: the loss on ``batch`` again (at the perturbed weights), backpropagated."""
    loss = problem.loss(model, batch)
    loss.backward()
    return loss


def _one_epoch(train: Batch, size: int = 256) -> Iterator[Batch]:
    """The training tensors in order, ``size`` samples at a time: ``update_bn``'s loader.

    A generator, so nothing is sliced unless it is read (``update_bn`` reads
    nothing for a model without BatchNorm, as the built-in models are).
    """
    n = int(train[0].shape[0]) if train else 0
    for begin in range(0, n, size):
        yield tuple(t[begin : begin + size] for t in train)


# --------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------


def _split(n: int, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random train/validation split of ``range(n)``."""
    order = np.random.default_rng(seed).permutation(n)
    return order[n_val:], order[:n_val]


def _classification(
    model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
) -> Problem:
    """A classification problem with cross-entropy loss; val_acc and val_loss."""
    import torch
    import torch.nn.functional as F

    xt = torch.tensor(x_train, dtype=torch.float32)
    yt = torch.tensor(y_train, dtype=torch.long)
    xv = torch.tensor(x_val, dtype=torch.float32)
    yv = torch.tensor(y_val, dtype=torch.long)

    def loss(m: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(m(x), y)

    def evaluate(m: nn.Module) -> dict[str, float]:
        logits = m(xv)
        return {
            "val_acc": float((logits.argmax(dim=1) == yv).float().mean()),
            "val_loss": float(F.cross_entropy(logits, yv)),
        }

    return Problem(model=model, train=(xt, yt), val=(xv, yv), loss=loss, evaluate=evaluate)


def _mlp(sizes: list[int]) -> nn.Module:
    from torch import nn

    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------
# digits: sklearn's bundled 8x8 handwritten digits
# --------------------------------------------------------------------------

_DIGITS_VAL = 360


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mark cached arrays read-only, so no caller can change them for the next."""
    for array in arrays:
        array.flags.writeable = False
    return arrays


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, ...]:
    """Return (X in [0, 1], shape (1797, 64); y) from sklearn's bundled file.

    Reads ``sklearn/datasets/data/digits.csv.gz`` directly (importing
    sklearn costs seconds per worker); falls back to ``load_digits``.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "task 'digits' needs scikit-learn (its bundled 8x8 digits data); "
            "install it with: pip install 'lrkit[torch]'"
        )
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if path.is_file():
        data = np.loadtxt(path, delimiter=",")
        x, y = data[:, :-1], data[:, -1]
    else:  # pragma: no cover - layout changed upstream
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
    return _frozen((x / 16.0).astype(np.float32), y.astype(np.int64))


def _build_digits(seed: int) -> Problem:
    import torch

    x, y = _digits_arrays()
    train, val = _split(len(y), _DIGITS_VAL, seed=0)
    torch.manual_seed(seed)
    model = _mlp([64, 128, 128, 10])
    return _classification(model, x[train], y[train], x[val], y[val])


# --------------------------------------------------------------------------
# signals: 1-D signal classes in the style of MNIST-1D, generated here
# --------------------------------------------------------------------------

SIGNAL_LENGTH = 40
_SIGNAL_CLASSES = 10
_SIGNAL_TEMPLATE = 12
_SIGNAL_TRAIN = 4000
_SIGNAL_VAL = 1000


def _signal_templates(rng: np.random.Generator) -> np.ndarray:
    """Ten smooth random patterns, 12 points each, scaled to peak 1."""
    t = np.linspace(0.0, 1.0, _SIGNAL_TEMPLATE)
    templates = np.zeros((_SIGNAL_CLASSES, _SIGNAL_TEMPLATE))
    for k in range(_SIGNAL_CLASSES):
        for _ in range(3):  # a few sine components of low frequency
            freq = rng.uniform(0.5, 3.0)
            phase = rng.uniform(0.0, 2 * np.pi)
            templates[k] += rng.normal() * np.sin(2 * np.pi * freq * t + phase)
        templates[k] /= np.abs(templates[k]).max()
    return templates


def signals_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` labelled 1-D signals of length 40.

    Each sample: a class template stretched by 0.8-1.2x, scaled by 0.6-1.4,
    placed at a random offset, then a random linear trend (shear), smooth
    correlated noise and white noise are added. The templates are fixed (they
    do not depend on ``seed``); ``seed`` draws the samples.

    Args:
        n: Number of samples.
        seed: Seed of the sample draws.

    Returns:
        ``(x, y)``: float32 array ``(n, 1, 40)`` and int64 labels ``(n,)``.
    """
    templates = _signal_templates(np.random.default_rng(1234))
    rng = np.random.default_rng(seed)
    length = SIGNAL_LENGTH
    y = rng.integers(0, _SIGNAL_CLASSES, size=n)
    grid = np.arange(length, dtype=float)
    stretch = rng.uniform(0.8, 1.2, size=(n, 1))
    amplitude = rng.uniform(0.6, 1.4, size=(n, 1))
    offset = rng.uniform(0.0, 1.0, size=(n, 1)) * (length - _SIGNAL_TEMPLATE * stretch)
    # Template coordinate of every output point; linear interpolation inside.
    pos = (grid[None, :] - offset) / stretch
    inside = (pos >= 0.0) & (pos <= _SIGNAL_TEMPLATE - 1)
    left = np.clip(np.floor(pos), 0, _SIGNAL_TEMPLATE - 2).astype(np.int64)
    frac = np.clip(pos - left, 0.0, 1.0)
    rows = templates[y]
    value = np.take_along_axis(rows, left, axis=1) * (1.0 - frac)
    value += np.take_along_axis(rows, left + 1, axis=1) * frac
    x = np.where(inside, amplitude * value, 0.0)
    slope = rng.uniform(-0.5, 0.5, size=(n, 1))
    x += slope * (grid / length - 0.5)
    smooth = np.cumsum(rng.normal(0.0, 0.05, size=(n, length)), axis=1)
    x += smooth - smooth.mean(axis=1, keepdims=True)
    x += rng.normal(0.0, 0.1, size=(n, length))
    return x[:, None, :].astype(np.float32), y.astype(np.int64)


def _signal_cnn() -> nn.Module:
    from torch import nn

    return nn.Sequential(
        nn.Conv1d(1, 16, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(16, 32, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Flatten(),
        nn.Linear(32 * (SIGNAL_LENGTH // 4), _SIGNAL_CLASSES),
    )


@functools.cache
def _signals_data() -> tuple[np.ndarray, ...]:
    return _frozen(*signals_arrays(_SIGNAL_TRAIN + _SIGNAL_VAL, seed=7))


def _build_signals(seed: int) -> Problem:
    import torch

    x, y = _signals_data()
    torch.manual_seed(seed)
    model = _signal_cnn()
    n = _SIGNAL_TRAIN
    return _classification(model, x[:n], y[:n], x[n:], y[n:])


# --------------------------------------------------------------------------
# scales: regression whose features differ in scale by orders of magnitude
# --------------------------------------------------------------------------

_SCALES_DIM = 16
_SCALES_TRAIN = 2000
_SCALES_VAL = 500


def scales_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` regression samples with feature scales 0.03 .. 30.

    ``z ~ N(0, I)`` are the hidden standardised features; the model sees
    ``x = z * scale`` with ``scale = logspace(-1.5, 1.5, 16)``: the loss's
    curvature spans six orders of magnitude, so plain SGD needs a tiny lr
    (and then barely moves the small-scale weights) while Adam's
    per-coordinate step sizes do not care. The target is a
    fixed linear function of ``z`` plus a mild interaction and noise,
    standardised to unit variance, so every feature matters equally whatever
    its scale.

    Returns:
        ``(x, y)``: float32 arrays ``(n, 16)`` and ``(n, 1)``.
    """
    scale = np.logspace(-1.5, 1.5, _SCALES_DIM)
    weights = np.random.default_rng(99).normal(size=_SCALES_DIM)
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, _SCALES_DIM))
    y = z @ weights + 0.5 * np.tanh(z[:, 0] * z[:, -1]) + 0.1 * rng.normal(size=n)
    y = y / np.sqrt(weights @ weights + 0.25)
    return (z * scale).astype(np.float32), y[:, None].astype(np.float32)


@functools.cache
def _scales_data() -> tuple[np.ndarray, ...]:
    return _frozen(*scales_arrays(_SCALES_TRAIN + _SCALES_VAL, seed=5))


def _build_scales(seed: int) -> Problem:
    import torch
    import torch.nn.functional as F

    x, y = _scales_data()
    n = _SCALES_TRAIN
    xt, yt = torch.tensor(x[:n]), torch.tensor(y[:n])
    xv, yv = torch.tensor(x[n:]), torch.tensor(y[n:])
    torch.manual_seed(seed)
    model = _mlp([_SCALES_DIM, 64, 64, 1])

    def loss(m: nn.Module, batch: Batch) -> torch.Tensor:
        xb, yb = batch
        return F.mse_loss(m(xb), yb)

    def evaluate(m: nn.Module) -> dict[str, float]:
        return {"val_loss": float(F.mse_loss(m(xv), yv))}

    return Problem(model=model, train=(xt, yt), val=(xv, yv), loss=loss, evaluate=evaluate)


# --------------------------------------------------------------------------
# charlm: a tiny character language model on the standard library's sources
# --------------------------------------------------------------------------

#: Files of the installed standard library that form charlm's text, in order.
CHARLM_FILES: tuple[str, ...] = (
    "textwrap.py",
    "heapq.py",
    "shlex.py",
    "fnmatch.py",
    "queue.py",
    "numbers.py",
    "colorsys.py",
    "sched.py",
    "graphlib.py",
    "bisect.py",
    "calendar.py",
    "difflib.py",
)
_CHARLM_CONTEXT = 32
_CHARLM_VOCAB = 128
_CHARLM_VAL_FRACTION = 0.1
_CHARLM_VAL_WINDOWS = 128


@functools.cache
def charlm_text() -> tuple[bytes, str]:
    """Read charlm's text from the installed standard library.

    Returns:
        ``(text, sha256_hex)``: the files of :data:`CHARLM_FILES` joined,
        and the text's hash (it differs between Python versions, so runs on
        different Pythons never share a key).

    Raises:
        RuntimeError: If a file is missing from this Python's stdlib.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for name in CHARLM_FILES:
        path = stdlib / name
        if not path.is_file():
            raise RuntimeError(
                f"task 'charlm' reads {name!r} from the standard library, "
                f"but {str(path)!r} does not exist in this Python installation"
            )
        parts.append(path.read_bytes())
    text = b"\n\n".join(parts)
    return text, hashlib.sha256(text).hexdigest()


def _charlm_fingerprint() -> dict[str, str]:
    return {"text_sha256": charlm_text()[1]}


def _tiny_transformer() -> nn.Module:
    import torch
    import torch.nn.functional as F
    from torch import nn

    dim, heads, context = 32, 4, _CHARLM_CONTEXT

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm(dim)
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)
            self.norm2 = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, _ = x.shape
            q, k, v = self.qkv(self.norm1(x)).split(dim, dim=2)
            q, k, v = (z.view(b, t, heads, dim // heads).transpose(1, 2) for z in (q, k, v))
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(att.transpose(1, 2).reshape(b, t, dim))
            return x + self.mlp(self.norm2(x))

    class TinyLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(_CHARLM_VOCAB, dim)
            self.pos = nn.Parameter(torch.zeros(context, dim))
            self.blocks = nn.Sequential(Block(), Block())
            self.norm = nn.LayerNorm(dim)
            self.head = nn.Linear(dim, _CHARLM_VOCAB)
            nn.init.normal_(self.pos, std=0.02)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            x = self.tok(idx) + self.pos[: idx.shape[1]]
            return self.head(self.norm(self.blocks(x)))

    return TinyLM()


def _build_charlm(seed: int) -> Problem:
    import torch
    import torch.nn.functional as F

    raw, _ = charlm_text()
    codes = np.frombuffer(raw, dtype=np.uint8).astype(np.int64)
    codes[codes >= _CHARLM_VOCAB] = ord("?")
    data = torch.from_numpy(codes)
    split = int(len(data) * (1.0 - _CHARLM_VAL_FRACTION))
    train_text, val_text = data[:split], data[split:]
    span = _CHARLM_CONTEXT + 1
    starts = torch.arange(len(train_text) - span)
    val_starts = torch.linspace(0, len(val_text) - span, _CHARLM_VAL_WINDOWS).long()
    offsets = torch.arange(span)
    val_windows = val_text[val_starts[:, None] + offsets]
    torch.manual_seed(seed)
    model = _tiny_transformer()

    def lm_loss(m: nn.Module, windows: torch.Tensor) -> torch.Tensor:
        logits = m(windows[:, :-1])
        return F.cross_entropy(logits.reshape(-1, _CHARLM_VOCAB), windows[:, 1:].reshape(-1))

    def loss(m: nn.Module, batch: Batch) -> torch.Tensor:
        (index,) = batch
        return lm_loss(m, train_text[index[:, None] + offsets])

    def evaluate(m: nn.Module) -> dict[str, float]:
        return {"val_loss": float(lm_loss(m, val_windows))}

    return Problem(model=model, train=(starts,), val=(val_windows,), loss=loss, evaluate=evaluate)


# --------------------------------------------------------------------------
# quadratic and rosenbrock: instant, for smoke tests
# --------------------------------------------------------------------------

_QUAD_DIM = 20
_QUAD_NOISE = 1024


def _point(init: np.ndarray) -> nn.Module:
    """A module holding one parameter vector ``x``."""
    import torch
    from torch import nn

    module = nn.Module()
    module.register_parameter("x", nn.Parameter(torch.as_tensor(init, dtype=torch.float32)))
    return module


def _build_quadratic(seed: int) -> Problem:
    import torch

    curvature = torch.logspace(0.0, -3.0, _QUAD_DIM)  # condition number 1e3
    optimum = torch.from_numpy(np.random.default_rng(3).normal(size=_QUAD_DIM).astype(np.float32))
    noise = torch.from_numpy(
        np.random.default_rng(4).normal(size=(_QUAD_NOISE, _QUAD_DIM)).astype(np.float32)
    )
    init = np.random.default_rng(seed).normal(size=_QUAD_DIM) * 2.0
    model = _point(init)

    def objective(m: nn.Module) -> torch.Tensor:
        return 0.5 * (curvature * (m.get_parameter("x") - optimum) ** 2).sum()

    def loss(m: nn.Module, batch: Batch) -> torch.Tensor:
        (eps,) = batch
        # The batch mean of zero-mean noise is added to the gradient but not
        # to the value (the tilt term is zero at the current point), so the
        # loss the run records is the exact objective while the gradient is
        # noisy and unbiased.
        x = m.get_parameter("x")
        tilt = (eps.mean(dim=0) * (x - x.detach())).sum()
        return objective(m) + tilt

    def evaluate(m: nn.Module) -> dict[str, float]:
        return {"loss": float(objective(m))}

    return Problem(model=model, train=(noise,), val=(), loss=loss, evaluate=evaluate)


def _build_rosenbrock(seed: int) -> Problem:
    init = np.array([-1.2, 1.0]) + np.random.default_rng(seed).normal(scale=0.1, size=2)
    model = _point(init)

    def objective(m: nn.Module) -> torch.Tensor:
        a, b = m.get_parameter("x")
        return (1.0 - a) ** 2 + 100.0 * (b - a * a) ** 2

    def loss(m: nn.Module, batch: Batch) -> torch.Tensor:
        return objective(m)

    def evaluate(m: nn.Module) -> dict[str, float]:
        return {"loss": float(objective(m))}

    return Problem(model=model, train=(), val=(), loss=loss, evaluate=evaluate)


# --------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        _builtin(
            "digits",
            description="sklearn's bundled 8x8 handwritten digits, 3-layer MLP (classification)",
            version="1",
            steps=300,
            batch_size=64,
            metric="val_acc",
            mode="max",
            target=0.95,
            builder=_build_digits,
        ),
        _builtin(
            "signals",
            description="generated 1-D signal classes in the style of MNIST-1D, small 1-D CNN",
            version="1",
            steps=200,
            batch_size=64,
            metric="val_acc",
            mode="max",
            target=0.85,
            builder=_build_signals,
        ),
        _builtin(
            "scales",
            description="regression with feature scales 0.03..30, MLP: plain SGD needs a tiny lr",
            version="1",
            steps=300,
            batch_size=64,
            metric="val_loss",
            mode="min",
            target=0.05,
            builder=_build_scales,
        ),
        _builtin(
            "charlm",
            description="character LM on Python stdlib sources read at run time, tiny transformer",
            version="1",
            steps=300,
            batch_size=16,
            metric="val_loss",
            mode="min",
            target=2.5,
            builder=_build_charlm,
            fingerprint=_charlm_fingerprint,
        ),
        _builtin(
            "quadratic",
            description="20-D quadratic, condition number 1e3, noisy gradients (instant)",
            version="1",
            steps=200,
            batch_size=16,
            metric="loss",
            mode="min",
            target=0.15,
            builder=_build_quadratic,
        ),
        _builtin(
            "rosenbrock",
            description="2-D Rosenbrock valley from (-1.2, 1), exact gradients (instant)",
            version="1",
            steps=500,
            batch_size=1,
            metric="loss",
            mode="min",
            target=0.01,
            builder=_build_rosenbrock,
            batched=False,
        ),
        digits_sgd_task(),
    )
}


def get_task(name: str) -> Task:
    """Return the registered task called ``name``.

    Raises:
        ValueError: If no task has that name (the message lists them).
    """
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}"
        ) from None
