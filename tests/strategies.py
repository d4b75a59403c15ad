"""Hypothesis strategies that build random, valid lrkit schedules.

Every family has its own strategy (``cosines()``, ``wsds()``, ...), and
``schedules()`` draws from all of them, including nested ``warmup``, joins
and scaled schedules; ``replans()`` draws a schedule with ``replan`` and a
valid ``(steps, at)`` for it. The arguments stay in ranges where every value is a
finite float >= 0 at any step up to 10**9, so properties can be checked
without special cases. Other test modules (the spec tests among them) import
from here.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st

import lrkit
import lrkit.sklearn
from lrkit import Schedule

__all__ = [
    "ENDING_FAMILIES",
    "LEAF_FAMILIES",
    "constants",
    "cosine_restarts",
    "cosines",
    "cyclics",
    "ending_schedules",
    "exponentials",
    "inverse_sqrts",
    "invscalings",
    "joins",
    "leaf_schedules",
    "linears",
    "lrs",
    "multisteps",
    "one_cycles",
    "optimals",
    "pipes",
    "polynomials",
    "positive_lrs",
    "replannable_schedules",
    "replanned_schedules",
    "replans",
    "scaleds",
    "schedules",
    "step_counts",
    "step_decays",
    "warmups",
    "wsds",
]

# -- building blocks ---------------------------------------------------------

#: A learning rate > 0, from tiny to large, on a roughly log-uniform scale.
positive_lrs: st.SearchStrategy[float] = st.one_of(
    st.floats(min_value=1e-8, max_value=10.0, allow_nan=False, allow_infinity=False),
    st.integers(min_value=-8, max_value=1).map(lambda e: 10.0**e),
    st.sampled_from([3e-4, 1e-3, 0.1, 1.0]),
)

#: A learning rate >= 0 (0 included).
lrs: st.SearchStrategy[float] = st.one_of(st.just(0.0), positive_lrs)

#: A schedule length in steps.
step_counts: st.SearchStrategy[int] = st.one_of(
    st.integers(min_value=1, max_value=20),
    st.integers(min_value=1, max_value=100_000),
)

#: A multiplier in (0, 1].
gammas: st.SearchStrategy[float] = st.one_of(
    st.floats(min_value=1e-3, max_value=1.0, allow_nan=False),
    st.just(1.0),
)

#: A fraction in [0, 1].
fractions: st.SearchStrategy[float] = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def _lr_pair(draw: st.DrawFn) -> tuple[float, float]:
    """(lr, min_lr) with 0 <= min_lr <= lr."""
    lr = draw(lrs)
    min_lr = min(lr, lr * draw(fractions))
    return lr, min_lr


# -- one strategy per family --------------------------------------------------


def constants() -> st.SearchStrategy[Schedule]:
    return st.builds(lrkit.constant, lr=lrs)


def step_decays() -> st.SearchStrategy[Schedule]:
    return st.builds(
        lrkit.step_decay,
        lr=lrs,
        step_size=st.integers(min_value=1, max_value=1000),
        gamma=gammas,
    )


@st.composite
def multisteps(draw: st.DrawFn) -> Schedule:
    milestones = sorted(
        draw(st.sets(st.integers(min_value=1, max_value=10_000), min_size=0, max_size=8))
    )
    # gamma > 1 is allowed for multistep; keep it modest so the lr stays sane.
    gamma = draw(st.one_of(gammas, st.floats(min_value=1.0, max_value=3.0)))
    return lrkit.multistep(draw(lrs), milestones=milestones, gamma=gamma)


def exponentials() -> st.SearchStrategy[Schedule]:
    return st.builds(lrkit.exponential, lr=lrs, gamma=gammas)


def linears() -> st.SearchStrategy[Schedule]:
    return st.builds(lrkit.linear, start_lr=lrs, end_lr=lrs, steps=step_counts)


@st.composite
def cosines(draw: st.DrawFn) -> Schedule:
    lr, min_lr = draw(_lr_pair())
    return lrkit.cosine(lr=lr, steps=draw(step_counts), min_lr=min_lr)


@st.composite
def cosine_restarts(draw: st.DrawFn) -> Schedule:
    lr, min_lr = draw(_lr_pair())
    return lrkit.cosine_restarts(
        lr=lr,
        period=draw(st.integers(min_value=1, max_value=5000)),
        period_mult=draw(st.integers(min_value=1, max_value=4)),
        min_lr=min_lr,
        decay=draw(gammas),
    )


@st.composite
def polynomials(draw: st.DrawFn) -> Schedule:
    return lrkit.polynomial(
        lr=draw(lrs),
        steps=draw(step_counts),
        power=draw(st.floats(min_value=0.05, max_value=5.0)),
        end_lr=draw(lrs),
    )


@st.composite
def cyclics(draw: st.DrawFn) -> Schedule:
    lo, hi = sorted([draw(lrs), draw(lrs)])
    return lrkit.cyclic(
        min_lr=lo,
        max_lr=hi,
        step_size_up=draw(st.integers(min_value=1, max_value=2000)),
        step_size_down=draw(st.none() | st.integers(min_value=1, max_value=2000)),
        mode=draw(st.sampled_from(["triangular", "triangular2", "exp_range"])),
        gamma=draw(gammas),
    )


@st.composite
def one_cycles(draw: st.DrawFn) -> Schedule:
    three_phase = draw(st.booleans())
    high = 0.5 if three_phase else 1.0
    pct_start = draw(st.floats(min_value=0.0, max_value=high, exclude_min=True, exclude_max=True))
    return lrkit.one_cycle(
        max_lr=draw(lrs),
        steps=draw(step_counts),
        pct_start=pct_start,
        div_factor=draw(st.floats(min_value=1.0, max_value=1e3)),
        final_div_factor=draw(st.floats(min_value=1.0, max_value=1e5)),
        anneal=draw(st.sampled_from(["cos", "linear"])),
        three_phase=three_phase,
    )


def inverse_sqrts() -> st.SearchStrategy[Schedule]:
    return st.builds(
        lrkit.inverse_sqrt, lr=lrs, warmup_steps=st.integers(min_value=1, max_value=10_000)
    )


@st.composite
def wsds(draw: st.DrawFn) -> Schedule:
    lr, min_lr = draw(_lr_pair())
    steps = draw(step_counts)
    warmup_steps = draw(st.integers(min_value=0, max_value=steps))
    room = steps - warmup_steps
    # decay_steps is either a count or a fraction of steps (a float in (0, 1)).
    as_count = st.integers(min_value=0, max_value=room)
    as_fraction = st.floats(min_value=0.0, max_value=1.0, exclude_min=True, exclude_max=True)
    decay_steps: int | float = draw(st.one_of(as_count, as_fraction))
    if isinstance(decay_steps, float) and warmup_steps + _ceil_frac(decay_steps, steps) > steps:
        decay_steps = room  # the fraction does not fit after the warmup: use a count
    return lrkit.wsd(
        lr=lr,
        steps=steps,
        warmup_steps=warmup_steps,
        decay_steps=decay_steps,
        decay_shape=draw(st.sampled_from(["1-sqrt", "linear", "cosine"])),
        min_lr=min_lr,
    )


def invscalings() -> st.SearchStrategy[Schedule]:
    """sklearn's ``invscaling`` (:mod:`lrkit.sklearn`), with a batch of samples a step."""
    return st.builds(
        lrkit.sklearn.invscaling,
        eta0=lrs,
        power_t=st.floats(min_value=0.0, max_value=2.0),
        batch_size=st.integers(min_value=1, max_value=1000),
    )


def optimals() -> st.SearchStrategy[Schedule]:
    """sklearn's ``optimal``: its own t0 (None) or a given one."""
    return st.builds(
        lrkit.sklearn.optimal,
        alpha=st.floats(min_value=1e-7, max_value=10.0),
        t0=st.none() | st.floats(min_value=1e-2, max_value=1e6),
        batch_size=st.integers(min_value=1, max_value=1000),
    )


def _ceil_frac(fraction: float, steps: int) -> int:
    """How many steps a decay fraction stands for (rounded up, as lrkit does)."""
    return lrkit.wsd(1.0, steps=steps, decay_steps=fraction).decay_count


#: Every leaf family, by spec name.
LEAF_FAMILIES: dict[str, Callable[[], st.SearchStrategy[Schedule]]] = {
    "constant": constants,
    "step_decay": step_decays,
    "multistep": multisteps,
    "exponential": exponentials,
    "linear": linears,
    "cosine": cosines,
    "cosine_restarts": cosine_restarts,
    "polynomial": polynomials,
    "cyclic": cyclics,
    "one_cycle": one_cycles,
    "inverse_sqrt": inverse_sqrts,
    "wsd": wsds,
    "invscaling": invscalings,
    "optimal": optimals,
}

#: Leaf families that end (have a length) and hold their end value afterwards.
ENDING_FAMILIES: dict[str, Callable[[], st.SearchStrategy[Schedule]]] = {
    "linear": linears,
    "cosine": cosines,
    "polynomial": polynomials,
    "one_cycle": one_cycles,
    "wsd": wsds,
}


def leaf_schedules() -> st.SearchStrategy[Schedule]:
    """Any non-composite schedule."""
    return st.one_of(*(make() for make in LEAF_FAMILIES.values()))


def ending_schedules() -> st.SearchStrategy[Schedule]:
    """Any non-composite schedule with a length."""
    return st.one_of(*(make() for make in ENDING_FAMILIES.values()))


# -- composites ---------------------------------------------------------------


@st.composite
def warmups(draw: st.DrawFn, inner: st.SearchStrategy[Schedule] | None = None) -> Schedule:
    schedule = draw(leaf_schedules() if inner is None else inner)
    shapes = ["linear", "cosine"]
    if schedule(0) > 0:
        shapes.append("exponential")
    shape = draw(st.sampled_from(shapes))
    start_lr = draw(positive_lrs if shape == "exponential" else lrs)
    return lrkit.warmup(
        schedule,
        steps=draw(st.integers(min_value=1, max_value=5000)),
        start_lr=start_lr,
        shape=shape,
    )


@st.composite
def joins(draw: st.DrawFn, parts: st.SearchStrategy[Schedule] | None = None) -> Schedule:
    """``join(*parts, boundaries=...)`` with 2-4 parts and random boundaries."""
    pieces = draw(st.lists(leaf_schedules() if parts is None else parts, min_size=2, max_size=4))
    bounds = sorted(
        draw(
            st.sets(
                st.integers(min_value=1, max_value=50_000),
                min_size=len(pieces) - 1,
                max_size=len(pieces) - 1,
            )
        )
    )
    return lrkit.join(*pieces, boundaries=bounds)


@st.composite
def pipes(draw: st.DrawFn, parts: st.SearchStrategy[Schedule] | None = None) -> Schedule:
    """``a | b | ...``: every part but the last has a length."""
    head = draw(st.lists(ending_schedules() if parts is None else parts, min_size=1, max_size=3))
    tail = draw(leaf_schedules())
    out = head[0]
    for part in [*head[1:], tail]:
        out = out | part
    return out


def scaleds(inner: st.SearchStrategy[Schedule] | None = None) -> st.SearchStrategy[Schedule]:
    factor = st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=10.0))
    return st.builds(lambda f, s: f * s, factor, leaf_schedules() if inner is None else inner)


@st.composite
def swas(draw: st.DrawFn, inner: st.SearchStrategy[Schedule] | None = None) -> Schedule:
    """``swa(s, ...)``: ``start`` and ``anneal_steps`` counts, or fractions when ``s`` ends."""
    schedule = draw(leaf_schedules() if inner is None else inner)
    end = schedule.length
    start_count = st.integers(min_value=1, max_value=5000 if end is None else end)
    anneal_count = st.integers(min_value=0, max_value=3000)
    fraction = st.floats(min_value=0.0, max_value=1.0, exclude_min=True, exclude_max=True)
    edges = st.sampled_from([1, 2] if end is None else [1, end - 1 or 1, end])
    return lrkit.swa(
        schedule,
        start=draw(st.one_of(start_count, edges, *([] if end is None else [fraction]))),
        swa_lr=draw(st.none() | lrs),
        anneal_steps=draw(anneal_count if end is None else st.one_of(anneal_count, fraction)),
        anneal=draw(st.sampled_from(["cos", "linear"])),
    )


def _extend(children: st.SearchStrategy[Schedule]) -> st.SearchStrategy[Schedule]:
    ending_children = children.filter(lambda s: s.length is not None)
    return st.one_of(
        warmups(children),
        joins(children),
        pipes(ending_children),
        scaleds(children),
        swas(children),
    )


def schedules() -> st.SearchStrategy[Schedule]:
    """Any valid schedule: every leaf family, plus nested warmup/join/|/scaled."""
    return st.one_of(leaf_schedules(), st.recursive(leaf_schedules(), _extend, max_leaves=6))


# -- replanned schedules ----------------------------------------------------------


@st.composite
def _ending_pipes(draw: st.DrawFn) -> Schedule:
    """``a | b`` with ``b`` a family that can be replanned (only the last part is)."""
    return draw(leaf_schedules().filter(lambda s: s.length is not None)) | draw(ending_schedules())


def replannable_schedules() -> st.SearchStrategy[Schedule]:
    """A schedule with ``replan``: an ending family, or a warmup, scaled or pipe of one."""
    leaf = ending_schedules()
    return st.one_of(leaf, warmups(leaf), scaleds(leaf), _ending_pipes())


def min_replan_steps(s: Schedule, at: int) -> int:
    """The smallest ``steps`` that ``s.replan(steps, at)`` accepts."""
    if isinstance(s, lrkit.schedules.Warmup):
        return s.steps + min_replan_steps(s.schedule, max(at - s.steps, 0))
    if isinstance(s, lrkit.schedules.Join):
        begin = s.boundaries[-1]
        return begin + min_replan_steps(s.schedules[-1], max(at - begin, 0))
    if isinstance(s, lrkit.schedules.Scaled):
        return min_replan_steps(s.schedule, at)
    if isinstance(s, lrkit.schedules.Replanned):
        return at + 1 + s._gap
    return at + (2 if isinstance(s, lrkit.schedules.OneCycle) else 1)


@st.composite
def replans(
    draw: st.DrawFn, schedule: st.SearchStrategy[Schedule] | None = None
) -> tuple[Schedule, int, int]:
    """``(s, steps, at)`` for a valid ``s.replan(steps, at)``: ``at`` anywhere from 0
    to a little past the end (phase edges likely), ``steps`` lengthening or shortening
    the plan, down to the smallest allowed."""
    s = draw(replannable_schedules() if schedule is None else schedule)
    end = s.length
    assert end is not None
    edges = [0, 1, end - 1, end, end + 1, end // 2]
    at = draw(st.one_of(st.sampled_from(edges), st.integers(0, end + 20)))
    at = max(at, 0)
    low = min_replan_steps(s, at)
    steps = draw(
        st.one_of(
            st.just(low),
            st.integers(low, low + 30),
            st.integers(low, max(low, 2 * end + 10)),
        )
    )
    return s, steps, at


@st.composite
def replanned_schedules(draw: st.DrawFn) -> Schedule:
    """A schedule replanned once or twice (a run lengthened or shortened twice)."""
    s, steps, at = draw(replans())
    out = s.replan(steps, at)
    if draw(st.booleans()):
        again, steps, at = draw(replans(st.just(out)))
        out = again.replan(steps, at)
    return out
