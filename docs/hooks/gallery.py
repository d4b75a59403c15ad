"""MkDocs hook: the schedule gallery, generated from lrkit's registry at build time.

Every name :func:`lrkit.spec.names` knows (schedule families, joins and
controllers alike) gets a section on ``gallery.md``: the formula from its
docstring, a PNG of its curve drawn by lrkit itself, its spec string, and
what the other libraries call it (:data:`EQUIVALENTS`, written by hand).
A name the registry has and these tables lack stops the build, so a new
family cannot ship without its gallery entry.
"""

from __future__ import annotations

import inspect
import io
import math
import re
from collections.abc import Callable
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

#: name -> (spec drawn, steps drawn, the metric fed to a controller or None).
#: A controller observes ``metric(step)`` every ``EVERY`` steps.
Metric = Callable[[int], float]
EVERY = 10


def _stalls(t: int) -> float:
    """A validation loss that falls, then stalls at 0.5."""
    return max(2.0 - t / 50, 0.5)


def _spikes(t: int) -> float:
    """A training loss that falls slowly, with two spikes."""
    return 1.0 + 20.0 * (t in (120, 200)) - t / 1000


def _wobbles(t: int) -> float:
    """A loss that falls smoothly for 150 steps, then oscillates."""
    return 2.0 - t / 100 if t < 150 else 0.5 + 0.1 * ((t // EVERY) % 2)


EXAMPLES: dict[str, tuple[str, int, Metric | None]] = {
    "constant": ("constant(lr=0.1)", 300, None),
    "step_decay": ("step_decay(lr=0.1, step_size=75, gamma=0.5)", 300, None),
    "multistep": ("multistep(lr=0.1, milestones=[100, 200, 250])", 300, None),
    "exponential": ("exponential(lr=0.1, gamma=0.99)", 300, None),
    "linear": ("linear(start_lr=0.1, end_lr=0.01, steps=250)", 300, None),
    "cosine": ("cosine(lr=0.1, steps=250, min_lr=0.01)", 300, None),
    "cosine_restarts": (
        "cosine_restarts(lr=0.1, period=50, period_mult=2, decay=0.7)",
        300,
        None,
    ),
    "polynomial": ("polynomial(lr=0.1, steps=250, power=2.0)", 300, None),
    "cyclic": ("cyclic(min_lr=0.01, max_lr=0.1, step_size_up=40, mode='triangular2')", 300, None),
    "one_cycle": ("one_cycle(max_lr=0.1, steps=300)", 300, None),
    "inverse_sqrt": ("inverse_sqrt(lr=0.1, warmup_steps=30)", 300, None),
    "invscaling": ("invscaling(eta0=0.1, power_t=0.5)", 300, None),
    "optimal": ("optimal(alpha=0.1)", 300, None),
    "wsd": ("wsd(lr=0.1, steps=300, warmup_steps=30, decay_steps=0.2)", 300, None),
    "warmup": ("warmup(cosine(lr=0.1, steps=250), steps=50)", 300, None),
    "swa": ("swa(cosine(lr=0.1, steps=300), start=0.6, swa_lr=0.02)", 300, None),
    "join": (
        "join(linear(0.01, 0.1, steps=50), 0.5 * cosine(lr=0.2, steps=200), boundaries=[50])",
        300,
        None,
    ),
    "replan": ("replan(cosine(lr=0.1, steps=200), steps=300, at=100)", 300, None),
    "plateau": ("plateau(cosine(lr=0.1, steps=300), factor=0.5, patience=2)", 300, _stalls),
    "sklearn_adaptive": ("sklearn_adaptive(constant(0.1), n_iter_no_change=2)", 300, _stalls),
    "guard": ("guard(cosine(lr=0.1, steps=300), factor=0.5)", 300, _spikes),
    "adaptive": ("adaptive(constant(0.05), up=1.1, down=0.5)", 300, _wobbles),
}

#: The columns of the equivalents table, in order.
LIBRARIES = ("torch", "Keras", "optax", "timm", "transformers", "scikit-learn")

#: name -> {library: its equivalent}; a library left out has none.
EQUIVALENTS: dict[str, dict[str, str]] = {
    "constant": {
        "torch": "no scheduler (or `ConstantLR(factor=1.0)`)",
        "Keras": "a float `learning_rate`",
        "optax": "`constant_schedule(lr)`",
        "timm": "`sched='constant'`",
        "transformers": "`get_scheduler('constant')`",
        "scikit-learn": "`learning_rate='constant'`",
    },
    "step_decay": {
        "torch": "`StepLR(step_size, gamma)`",
        "Keras": "`ExponentialDecay(lr, decay_steps=step_size, decay_rate=gamma, staircase=True)`",
        "optax": "`exponential_decay(lr, transition_steps=step_size, decay_rate=gamma, "
        "staircase=True)`",
        "timm": "`StepLRScheduler(decay_t, decay_rate)` (`sched='step'`)",
    },
    "multistep": {
        "torch": "`MultiStepLR(milestones, gamma)`",
        "Keras": "`PiecewiseConstantDecay(boundaries=[m - 1, ...], values=[...])`",
        "optax": "`piecewise_constant_schedule(lr, {m: gamma, ...})`",
        "timm": "`MultiStepLRScheduler(decay_t, decay_rate)` (decays one step early)",
    },
    "exponential": {
        "torch": "`ExponentialLR(gamma)`",
        "Keras": "`ExponentialDecay(lr, decay_steps=1, decay_rate=gamma)`",
        "optax": "`exponential_decay(lr, transition_steps=1, decay_rate=gamma)`",
    },
    "linear": {
        "torch": "`LinearLR(start_factor, end_factor, total_iters)` (factors of the lr)",
        "Keras": "`PolynomialDecay(start_lr, steps, end_lr, power=1.0)`",
        "optax": "`linear_schedule(start_lr, end_lr, steps)`",
        "transformers": "`get_scheduler('linear')` (a warmup, then down to 0)",
    },
    "cosine": {
        "torch": "`CosineAnnealingLR(T_max, eta_min)` (rises again past `T_max`)",
        "Keras": "`CosineDecay(lr, decay_steps, alpha=min_lr / lr)`",
        "optax": "`cosine_decay_schedule(lr, steps, alpha=min_lr / lr)`",
        "timm": "`CosineLRScheduler(t_initial, lr_min)` (`sched='cosine'`)",
        "transformers": "`get_scheduler('cosine')`, `'cosine_with_min_lr'`",
    },
    "cosine_restarts": {
        "torch": "`CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)`",
        "Keras": "`CosineDecayRestarts(lr, first_decay_steps, t_mul, m_mul, alpha)`",
        "optax": "`sgdr_schedule([...])` (one dict per cycle)",
        "timm": "`CosineLRScheduler(cycle_mul, cycle_decay, cycle_limit)`",
        "transformers": "`get_scheduler('cosine_with_restarts')` (equal cycles)",
    },
    "polynomial": {
        "torch": "`PolynomialLR(total_iters, power)` (ends at 0)",
        "Keras": "`PolynomialDecay(lr, decay_steps, end_learning_rate, power)`",
        "optax": "`polynomial_schedule(lr, end_lr, power, transition_steps)`",
        "timm": "`PolyLRScheduler(power)` (`sched='poly'`)",
        "transformers": "`get_scheduler('polynomial')` (`lr_end`, `power`)",
    },
    "cyclic": {"torch": "`CyclicLR(base_lr, max_lr, step_size_up, step_size_down, mode, gamma)`"},
    "one_cycle": {
        "torch": "`OneCycleLR(max_lr, total_steps, pct_start, div_factor, final_div_factor, "
        "anneal_strategy, three_phase)`",
        "optax": "`cosine_onecycle_schedule(...)`, `linear_onecycle_schedule(...)`",
    },
    "inverse_sqrt": {"transformers": "`get_scheduler('inverse_sqrt')` (`timescale=W`)"},
    "invscaling": {"scikit-learn": "`learning_rate='invscaling'` (`eta0`, `power_t`)"},
    "optimal": {"scikit-learn": "`learning_rate='optimal'` (`alpha`)"},
    "wsd": {
        "timm": "`sched='wsd'`",
        "transformers": "`get_scheduler('warmup_stable_decay')`",
    },
    "warmup": {
        "torch": "`SequentialLR([LinearLR(...), ...], milestones=[W])`",
        "Keras": "`CosineDecay(warmup_target=..., warmup_steps=...)` (cosine only)",
        "optax": "`join_schedules([linear_schedule(...), ...], [W])`, "
        "`warmup_cosine_decay_schedule`",
        "timm": "`warmup_t`, `warmup_lr_init`, `warmup_prefix` of every scheduler",
        "transformers": "`num_warmup_steps` of every name",
    },
    "swa": {"torch": "`swa_utils.SWALR(swa_lr, anneal_epochs, anneal_strategy)` after the start"},
    "join": {
        "torch": "`SequentialLR(schedulers, milestones)`",
        "optax": "`join_schedules(schedules, boundaries)`",
    },
    "replan": {},
    "plateau": {
        "torch": "`ReduceLROnPlateau(mode, factor, patience, threshold, ...)` (a constant only)",
        "Keras": "`callbacks.ReduceLROnPlateau(monitor, factor, patience, min_delta, ...)`",
        "optax": "`contrib.reduce_on_plateau(factor, patience, rtol, atol, ...)`",
        "timm": "`PlateauLRScheduler` (`sched='plateau'`)",
        "transformers": "`get_scheduler('reduce_lr_on_plateau')`",
    },
    "sklearn_adaptive": {"scikit-learn": "MLP's `learning_rate='adaptive'`"},
    "guard": {},
    "adaptive": {},
}

#: The docstring's sections that are not the formula.
_SECTIONS = re.compile(
    r"^(Args|Arguments|Attributes|Returns|Raises|Examples|Example|Note|Notes|Yields):\s*$", re.M
)
_ROLE = re.compile(r":(?:class|func|meth|data|mod|attr):`~?([^`]+)`")


def formula(name: str, value: Any) -> str:
    """The description of ``name`` from its docstring, as Markdown (the sections dropped)."""
    factory = {"join": "join", "replan": "replan"}.get(name)
    import lrkit

    owner = lrkit.FACTORIES[factory] if factory else type(value)
    doc = inspect.getdoc(owner) or ""
    cut = _SECTIONS.search(doc)
    text = doc[: cut.start()] if cut else doc
    text = _ROLE.sub(lambda m: f"``{m.group(1).split('.')[-1]}``", text)
    text = text.replace("``", "`")
    return text.strip()


def curve(value: Any, steps: int, metric: Metric | None) -> list[float]:
    """The lr at steps ``0..steps-1``, feeding a controller ``metric`` every ``EVERY`` steps."""
    if metric is None:
        return [float(v) for v in value.values(steps)]
    every = 1 if metric is _spikes else EVERY  # a guard watches every training loss
    lrs = []
    for step in range(steps):
        lrs.append(float(value.lr(step)))
        if step % every == every - 1:
            value.observe(metric(step), step)
    return lrs


def png(lrs: list[float], title: str, metric: Metric | None) -> bytes:
    """The curve as a small PNG, drawn with matplotlib's Agg canvas (no display, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 2.6), dpi=90)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.plot(range(len(lrs)), lrs, color="#3f51b5", linewidth=1.8)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(bottom=0, top=max(lrs) * 1.1 if max(lrs) > 0 else 1)
    ax.grid(alpha=0.3)
    if metric is not None:
        twin = ax.twinx()
        values = [min(metric(t), 3.0) for t in range(len(lrs))]
        twin.plot(range(len(lrs)), values, color="#999999", linewidth=1, linestyle="--")
        twin.set_ylabel("metric fed (dashed)", color="#777777")
    figure.subplots_adjust(left=0.12, right=0.88, bottom=0.19, top=0.89)  # tight_layout is slow
    out = io.BytesIO()
    figure.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def missing() -> list[str]:
    """Names of the registry that the gallery's tables lack."""
    import lrkit.spec

    names = lrkit.spec.names()
    return [n for n in names if n not in EXAMPLES or n not in EQUIVALENTS]


def page() -> tuple[str, dict[str, bytes]]:
    """The gallery's Markdown and its images (path under docs -> PNG bytes)."""
    import lrkit
    import lrkit.spec

    lacking = missing()
    if lacking:
        raise PluginError(
            "gallery: no entry for " + ", ".join(lacking) + " in docs/hooks/gallery.py "
            "(EXAMPLES and EQUIVALENTS)"
        )
    images: dict[str, bytes] = {}
    schedules: list[str] = []
    controllers: list[str] = []
    for name in lrkit.spec.names():
        spec, steps, metric = EXAMPLES[name]
        (controllers if metric is not None else schedules).append(name)
    lines = [
        "# Schedule gallery",
        "",
        "Every schedule family and controller that `lrkit.parse` knows, drawn by lrkit "
        "itself when this site was built: its formula (from its docstring), its curve, "
        "the spec string that draws it, and what PyTorch, Keras, optax, timm, "
        "transformers and scikit-learn call it where they have it. "
        "A controller's curve depends on the metric it is fed: the dashed line is the "
        f"metric fed to it every {EVERY} steps (the guard's: every step).",
        "",
        "Schedules: " + ", ".join(f"[`{n}`](#{n})" for n in schedules) + ".",
        "",
        "Controllers: " + ", ".join(f"[`{n}`](#{n})" for n in controllers) + ".",
        "",
    ]
    for name in schedules + controllers:
        spec, steps, metric = EXAMPLES[name]
        value = lrkit.parse(spec)
        lrs = curve(value, steps, metric)
        if not all(math.isfinite(x) and x >= 0 for x in lrs):
            raise PluginError(f"gallery: {spec} gave a negative or non-finite lr")
        images[f"gallery/{name}.png"] = png(lrs, spec, metric)
        lines += [
            f"## `{name}` {{#{name}}}",
            "",
            formula(name, value),
            "",
            f"![{name}: {spec}](gallery/{name}.png)",
            "",
            "```python",
            f'lrkit.parse("{spec}")',
            "```",
            "",
        ]
        known = EQUIVALENTS[name]
        if known:
            lines += ["| library | equivalent |", "| --- | --- |"]
            lines += [f"| {lib} | {known[lib]} |" for lib in LIBRARIES if lib in known]
        else:
            lines.append("No other library has an equivalent.")
        lines.append("")
    return "\n".join(lines), images


def on_files(files: Files, config: Any) -> Files:
    markdown, images = page()
    files.append(File.generated(config, "gallery.md", content=markdown))
    for path, data in images.items():
        files.append(File.generated(config, path, content=data))
    return files
