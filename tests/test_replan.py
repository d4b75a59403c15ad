"""s.replan(steps, at): a plan changed mid-run, continuous, same history, new end.

The laws (SPEC §3, issue 7) are checked with hypothesis over every family that
has ``replan`` and the warmup, scaled and joined forms of them, lengthened and
shortened, once and twice; edge cases and the chosen shapes are pinned below.
"""

from __future__ import annotations

import math
import pathlib
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lrkit
from lrkit.schedules import OneCycle, Replanned, Scaled, Warmup
from strategies import (
    replannable_schedules,
    replanned_schedules,
    replans,
    schedules,
)

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "schedules.md"


def end_step(s: lrkit.Schedule) -> int:
    """Where ``s`` has reached the value it then holds (it holds it from its length on)."""
    assert s.length is not None
    return s.length


def probe_steps(s: lrkit.Schedule, steps: int, at: int) -> np.ndarray:
    """Steps around ``at`` and the new end, plus a spread between and far beyond."""
    picks = {0, at - 2, at - 1, at, at + 1, at + 2, steps - 2, steps - 1, steps, steps + 1}
    picks |= {steps + 100, 10**9}
    picks |= {int(x) for x in np.linspace(0, steps + 5, 200)}
    if s.length is not None:
        picks |= {s.length - 1, s.length, s.length + 1}
    return np.array(sorted(p for p in picks if p >= 0), dtype=np.int64)


def assert_scalar_equals_vectorized(s: lrkit.Schedule, steps: np.ndarray) -> None:
    scalar = np.array([s(int(t)) for t in steps])
    vector = s.values(steps)
    scale = max(float(np.max(np.abs(scalar))), 1e-300)
    bad = np.abs(scalar - vector) > 1e-12 * np.abs(scalar) + 1e-15 * scale
    assert not bad.any(), (str(s), steps[bad][:5], scalar[bad][:5], vector[bad][:5])


def decays_from(s: lrkit.Schedule, x: float) -> bool:
    """Whether the shape of ``s`` (between integer steps too) never rises from ``x`` on.

    Worked out from the families' parameters, not from samples: a one_cycle whose
    peak lies between two integer steps may look decaying at the steps around it.
    """
    S = lrkit.schedules
    if isinstance(s, (S.Cosine, S.Constant)):
        return True
    if isinstance(s, S.Linear):
        return s.end_lr <= s.start_lr
    if isinstance(s, S.Polynomial):
        return s.end_lr <= s.lr
    if isinstance(s, S.WSD):
        return x >= s.warmup_steps
    if isinstance(s, S.OneCycle):
        return x >= s._phases()[0][0] or x >= s.steps - 1  # past the peak, or the end
    if isinstance(s, S.Scaled):
        return decays_from(s.schedule, x)
    if isinstance(s, S.Warmup):
        return x >= s.steps and decays_from(s.schedule, x - s.steps)
    if isinstance(s, S.Join):
        begin = s.boundaries[-1]
        return x >= begin and decays_from(s.schedules[-1], x - begin)
    if isinstance(s, Replanned):
        if s._same is not None:
            return decays_from(s._same, x)
        if x < s.at:
            return decays_from(s.schedule, x)
        return decays_from(
            s.schedule, s.at + s._old_span * min(x - s.at, s._new_span) / s._new_span
        )
    return False


# ---------------------------------------------------------------------------
# 1. The laws, for every replannable schedule, lengthened or shortened
# ---------------------------------------------------------------------------


def check_replan(s: lrkit.Schedule, steps: int, at: int) -> lrkit.Schedule:
    r = s.replan(steps, at)
    t = probe_steps(s, steps, at)
    # The history before `at` is exactly the old plan's.
    before = np.arange(0, at)
    assert np.array_equal(r.values(before), s.values(before)), (str(s), str(r))
    for k in (0, at - 1, at // 2):
        if 0 <= k < at:
            assert r(k) == s(k)
    # No jump at `at`: the same float.
    assert r(at) == s(at), (str(s), str(r), r(at), s(at))
    # It ends where asked, at the old plan's end value, and holds it.
    end_lr = s(end_step(s))
    assert r.length == steps
    for k in (steps, steps + 1, steps + 1000, 10**9):
        assert r(k) == end_lr, (str(s), str(r), k, r(k), end_lr)
    if _ends_one_early(r):
        assert r(steps - 1) == end_lr
    # A decaying plan never rises after `at`.
    if decays_from(s, at):
        after = r.values(np.arange(at, steps + 3))
        # A linear one_cycle anneal between two equal lrs can wiggle by an ulp.
        ulps = 4e-16 * float(np.max(after))
        assert np.all(np.diff(after) <= ulps), (str(s), str(r))
        assert np.all(after >= end_lr - ulps)
    # Every value is finite and >= 0; scalar and vectorized agree.
    v = r.values(t)
    assert np.all(np.isfinite(v)) and np.all(v >= 0)
    assert_scalar_equals_vectorized(r, t)
    # An immutable value: spec and dict round trips.
    assert lrkit.parse(str(r)) == r
    assert lrkit.from_dict(r.to_dict()) == r
    assert hash(lrkit.parse(str(r))) == hash(r)
    return r


def _ends_one_early(s: lrkit.Schedule) -> bool:
    """one_cycle (inside whatever wraps it) ends at steps - 1."""
    while isinstance(s, (Warmup, Scaled, lrkit.schedules.Join)):
        s = s.schedules[-1] if isinstance(s, lrkit.schedules.Join) else s.schedule
    if isinstance(s, Replanned):
        return bool(s._gap)
    return isinstance(s, OneCycle)


@given(replans())
def test_replan_keeps_history_value_at_at_and_reaches_the_end(case) -> None:
    s, steps, at = case
    check_replan(s, steps, at)


@settings(max_examples=60)
@given(replans(replanned_schedules()))
def test_replanning_a_replanned_schedule_twice_or_three_times(case) -> None:
    s, steps, at = case
    check_replan(s, steps, at)


@settings(max_examples=50)
@given(replannable_schedules(), st.data())
def test_lengthened_twice_as_a_run_looks_at_its_curve(s, data) -> None:
    # At a third and at two thirds of the way, the run is given 50 % more steps.
    n = end_step(s)
    first = check_replan(s, max(n + n // 2, n // 3 + 3), n // 3)
    n2 = first.length
    assert n2 is not None
    at2 = data.draw(st.integers(n2 // 3, max(n2 // 3, 2 * n2 // 3)))
    second = check_replan(first, max(n2 + n2 // 2, at2 + 3), at2)
    assert second.values(n // 3).tolist() == s.values(n // 3).tolist()


# ---------------------------------------------------------------------------
# 2. The shapes chosen, pinned
# ---------------------------------------------------------------------------


def test_cosine_lengthened_is_the_rest_of_the_curve_stretched() -> None:
    c = lrkit.cosine(lr=1.0, steps=100, min_lr=0.1)
    r = c.replan(200, at=50)
    assert isinstance(r, Replanned)
    assert str(r) == "replan(cosine(lr=1.0, steps=100, min_lr=0.1), steps=200, at=50)"
    # Steps 50..200 run the cosine's steps 50..100 at a third of the speed.
    for t in (50, 53, 80, 125, 170, 200):
        assert r(t) == c(50 + (t - 50) / 3)
    assert r(125) == c(75)
    assert r(200) == 0.1 and r(199) > 0.1
    # Shortened: the rest runs three times as fast.
    short = c.replan(60, at=45)
    assert short(50) == c._at(45 + 55 * 5 / 15) and short(60) == 0.1


def test_linear_and_polynomial_replans_are_their_own_families_from_the_value_at_at() -> None:
    lin = lrkit.linear(1.0, 0.0, steps=10).replan(20, at=5)
    # From 0.5 at step 5 down to 0 at step 20, in a straight line.
    got = [lin(t) for t in (4, 5, 10, 15, 20, 25)]
    assert got == pytest.approx([0.6, 0.5, 1 / 3, 1 / 6, 0.0, 0.0], rel=1e-15)
    assert got[1] == 0.5 and got[4] == 0.0
    p = lrkit.polynomial(1.0, steps=100, power=2.0, end_lr=0.1)
    r = p.replan(300, at=50)
    tail = lrkit.polynomial(p(50), steps=250, power=2.0, end_lr=0.1)
    for t in range(50, 320, 7):
        assert r(t) == pytest.approx(tail(t - 50), rel=1e-13)


def test_replan_at_step_0_is_the_same_family_with_the_new_steps() -> None:
    assert lrkit.cosine(lr=0.1, steps=100).replan(250, at=0) == lrkit.cosine(lr=0.1, steps=250)
    assert lrkit.linear(1.0, 0.5, steps=10).replan(7, 0) == lrkit.linear(1.0, 0.5, steps=7)
    assert lrkit.one_cycle(1.0, steps=100).replan(300, 0) == lrkit.one_cycle(1.0, steps=300)
    w = lrkit.warmup(lrkit.cosine(lr=0.1, steps=900), steps=100)
    # Still in the warmup: the cosine after it gets the new length; the ramp is unchanged.
    assert w.replan(2000, at=40) == lrkit.warmup(lrkit.cosine(lr=0.1, steps=1900), steps=100)
    # one_cycle whose first phase vanishes with fewer steps: no plain one_cycle keeps
    # the first value, so the remap is used.
    o = lrkit.one_cycle(1.0, steps=10, pct_start=0.15)
    r = o.replan(3, at=0)
    assert isinstance(r, Replanned) and r(0) == o(0) and r(2) == o(9)


def test_wsd_before_its_decay_moves_the_decay_and_keeps_its_length() -> None:
    s = lrkit.wsd(1.0, steps=100, warmup_steps=10, decay_steps=0.2, min_lr=0.01)
    moved = lrkit.wsd(1.0, steps=300, warmup_steps=10, decay_steps=20, min_lr=0.01)
    assert s.replan(300, at=50) == moved
    assert s.replan(300, at=5) == moved  # in the warmup too
    assert s.replan(71, at=50) == lrkit.wsd(1.0, 71, warmup_steps=10, decay_steps=20, min_lr=0.01)
    # The decay no longer fits after `at`: the rest (stable and decay) is squeezed.
    r = s.replan(60, at=50)
    assert isinstance(r, Replanned)
    assert r(50) == 1.0 and r(60) == 0.01
    assert r(55) == s(50 + 50 * 5 / 10)
    # Already decaying: the rest of the decay is stretched.
    d = s.replan(200, at=90)
    assert str(d) == (
        "replan(wsd(lr=1.0, steps=100, warmup_steps=10, min_lr=0.01), steps=200, at=90)"
    )
    assert d(90) == s(90) and d(145) == s(95) and d(200) == 0.01
    # The same, written as a spec: the explicit form keeps the values of the plain wsd.
    spec = lrkit.parse("replan(wsd(lr=1.0, steps=100, decay_steps=20), steps=300, at=50)")
    assert isinstance(spec, Replanned)
    plain = lrkit.wsd(1.0, steps=300, decay_steps=20)
    assert spec.values(400).tolist() == plain.values(400).tolist()
    assert spec.replan(400, at=100) == plain.replan(400, at=100)


def test_one_cycle_replanned_on_its_way_up_peaks_later_and_ends_at_steps_minus_1() -> None:
    o = lrkit.one_cycle(1.0, steps=100)
    r = o.replan(200, at=10)
    values = r.values(200)
    assert int(np.argmax(values)) > int(np.argmax(o.values(100)))
    assert values.max() == pytest.approx(1.0, rel=1e-3)
    assert r(199) == o(99) == r(10**6)
    with pytest.raises(ValueError, match=r"steps must be an integer >= at \+ 2 = 12"):
        o.replan(11, at=10)
    assert o.replan(12, at=10)(11) == o(99)


def test_wrappers_delegate_with_shifted_steps() -> None:
    c = lrkit.cosine(lr=0.1, steps=900)
    w = lrkit.warmup(c, steps=100, start_lr=0.01, shape="cosine")
    assert w.replan(1500, at=400) == lrkit.warmup(
        c.replan(1400, at=300), steps=100, start_lr=0.01, shape="cosine"
    )
    assert (0.5 * w).replan(1500, at=400) == 0.5 * w.replan(1500, at=400)
    j = lrkit.linear(0.0, 0.1, steps=100) | c
    assert j.replan(1500, at=400) == lrkit.linear(0.0, 0.1, steps=100) | c.replan(1400, 300)
    assert str(j.replan(1500, at=400)) == (
        "linear(start_lr=0.0, end_lr=0.1, steps=100) | "
        "replan(cosine(lr=0.1, steps=900), steps=1400, at=300)"
    )
    # replan(...) in a spec takes wrapped schedules too, and replans what they wrap.
    assert lrkit.parse(f"replan({w}, steps=1500, at=400)") == w.replan(1500, 400)


def test_at_past_the_end_holds_the_end_value_for_the_new_length() -> None:
    c = lrkit.cosine(lr=1.0, steps=100, min_lr=0.1)
    r = c.replan(500, at=150)
    assert r.length == 500
    assert r.values(600).tolist() == c.values(600).tolist()
    assert str(r) == "replan(cosine(lr=1.0, steps=100, min_lr=0.1), steps=500, at=150)"
    # ...and it can be replanned again from there (nothing left to stretch).
    assert r.replan(800, at=300).values(900).tolist() == c.values(900).tolist()


def test_nested_replans_keep_every_earlier_history() -> None:
    c = lrkit.cosine(lr=1.0, steps=1000)
    r1 = c.replan(1500, at=300)
    r2 = r1.replan(2000, at=1200)
    r3 = r2.replan(1800, at=1700)  # then shortened
    assert str(r3) == (
        "replan(replan(replan(cosine(lr=1.0, steps=1000), steps=1500, at=300), "
        "steps=2000, at=1200), steps=1800, at=1700)"
    )
    assert r3.values(300).tolist() == c.values(300).tolist()
    assert r3.values(1200).tolist() == r1.values(1200).tolist()
    assert r3.values(1700).tolist() == r2.values(1700).tolist()
    assert r3(1800) == 0.0 and r3(1799) > 0.0
    # Replanning at an earlier step than the last replan is allowed: history up to it.
    back = r2.replan(3000, at=100)
    assert back.values(100).tolist() == c.values(100).tolist() and back(3000) == 0.0


def test_replan_leaves_the_schedule_unchanged_and_is_deterministic() -> None:
    c = lrkit.cosine(lr=1.0, steps=100)
    before = c.to_dict()
    assert c.replan(200, 50) == c.replan(200, 50)
    assert c.to_dict() == before and c.steps == 100
    assert c.replan(200, 50) != c.replan(200, 51)
    with pytest.raises(AttributeError):
        c.replan(200, 50).at = 3  # type: ignore[misc]


# ---------------------------------------------------------------------------
# 3. Bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "at", "message"),
    [
        (100, -1, r"replan: at must be an integer >= 0, got -1"),
        (100, 2.5, r"replan: at must be an integer >= 0, got 2.5"),
        (100, "3", r"replan: at must be an integer >= 0, got '3'"),
        (50, 50, r"replan: steps must be an integer >= 51, got 50"),
        (10, 50, r"replan: steps must be an integer >= 51, got 10"),
        (math.inf, 5, r"replan: steps must be an integer >= 6, got inf"),
        (None, 5, r"replan: steps must be an integer >= 6, got None"),
    ],
)
def test_bad_steps_or_at_name_the_argument_and_the_range(steps, at, message) -> None:
    with pytest.raises(ValueError, match=message):
        lrkit.cosine(lr=0.1, steps=100).replan(steps, at)


def test_integral_floats_are_accepted_as_steps_and_at() -> None:
    c = lrkit.cosine(lr=0.1, steps=100)
    assert c.replan(2e2, 5e1) == c.replan(200, 50)


@pytest.mark.parametrize(
    "spec",
    [
        "constant(lr=0.1)",
        "step_decay(lr=0.1, step_size=10)",
        "exponential(lr=0.1, gamma=0.9)",
        "cosine_restarts(lr=0.1, period=10)",
        "cyclic(min_lr=0.01, max_lr=0.1, step_size_up=5)",
        "inverse_sqrt(lr=0.1, warmup_steps=10)",
        "multistep(lr=0.1, milestones=[5])",
        "warmup(constant(lr=0.1), steps=10)",
        "0.5 * exponential(lr=0.1, gamma=0.9)",
        "cosine(lr=0.1, steps=10) | constant(lr=0.01)",
    ],
)
def test_families_without_replan_say_which_have_it(spec: str) -> None:
    with pytest.raises(ValueError, match=r"replan: cannot replan \w+\(\.\.\.\) schedules") as e:
        lrkit.parse(spec).replan(100, at=5)
    for name in ("cosine", "linear", "polynomial", "one_cycle", "wsd", "warmup"):
        assert name in str(e.value)


def test_wrappers_say_where_their_schedule_starts() -> None:
    w = lrkit.warmup(lrkit.cosine(lr=0.1, steps=900), steps=100)
    with pytest.raises(ValueError, match=r"steps must be an integer > 100 \(the warmup's"):
        w.replan(100, at=50)
    j = lrkit.linear(0.0, 0.1, steps=100) | lrkit.one_cycle(0.1, steps=900)
    with pytest.raises(ValueError, match=r">= at \+ 2 = 302.*starting at step 100"):
        j.replan(401, at=400)
    with pytest.raises(ValueError, match=r"steps must be an integer > 100 \(where the join"):
        j.replan(90, at=50)


def test_the_class_takes_only_families_it_can_remap() -> None:
    with pytest.raises(ValueError, match=r"replan: schedule must be a cosine, linear.*got warmup"):
        Replanned(lrkit.warmup(lrkit.cosine(lr=0.1, steps=10), steps=2), steps=20, at=5)
    with pytest.raises(ValueError, match=r"replan: schedule must be an lrkit schedule"):
        Replanned(0.1, steps=20, at=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"spec: invalid argument.*steps must be"):
        lrkit.parse("replan(cosine(lr=0.1, steps=100), steps=10, at=10)")
    with pytest.raises(ValueError, match=r"cannot replan constant"):
        lrkit.parse("replan(constant(lr=0.1), steps=10, at=5)")


# ---------------------------------------------------------------------------
# 4. Spec form, speed, adapters, docs
# ---------------------------------------------------------------------------


@given(replanned_schedules())
def test_replanned_schedules_round_trip_inside_other_composites(r) -> None:
    for s in (0.5 * r, lrkit.warmup(r, steps=7), r | lrkit.constant(0.01)):
        assert lrkit.parse(str(s)) == s
        assert lrkit.from_dict(r.to_dict()) == r
        t = probe_steps(s, r.length, 0)
        assert_scalar_equals_vectorized(s, t)


ADAPTER_SPECS = [
    "replan(cosine(lr=1.0, steps=100, min_lr=0.1), steps=250, at=40)",
    "replan(cosine(lr=1.0, steps=1000), steps=600, at=500)",
    "replan(linear(start_lr=1.0, end_lr=0.1, steps=100), steps=300, at=50)",
    "replan(polynomial(lr=1.0, steps=100, power=2.0, end_lr=0.01), steps=160, at=30)",
    "replan(wsd(lr=1.0, steps=100, warmup_steps=10, decay_steps=30), steps=200, at=80)",
    "replan(wsd(lr=1.0, steps=100, decay_steps=30, decay_shape='cosine'), steps=300, at=50)",
    "replan(wsd(lr=1.0, steps=100, warmup_steps=20, decay_steps=30), steps=40, at=10)",
    "replan(one_cycle(max_lr=1.0, steps=100), steps=180, at=20)",
    "replan(one_cycle(max_lr=1.0, steps=100, anneal='linear', three_phase=True), steps=150, at=35)",
    "replan(replan(cosine(lr=1.0, steps=100), steps=200, at=50), steps=260, at=20)",
    "replan(replan(cosine(lr=1.0, steps=100), steps=200, at=50), steps=300, at=120)",
    "replan(replan(one_cycle(max_lr=1.0, steps=100), steps=200, at=50), steps=300, at=60)",
    "replan(replan(linear(start_lr=1.0, end_lr=0.0, steps=100), steps=300, at=200), "
    "steps=400, at=100)",
    "warmup(replan(cosine(lr=1.0, steps=900), steps=1400, at=300), steps=100)",
    "0.5 * (linear(start_lr=0.0, end_lr=1.0, steps=10) | "
    "replan(polynomial(lr=1.0, steps=50), steps=90, at=20))",
]


def _adapter_steps(s: lrkit.Schedule) -> np.ndarray:
    """A fixed number of steps (one compilation): dense to past the end, then far."""
    n = 512
    dense = np.linspace(0, (s.length or 100) + 20, n - 4).astype(np.int64)
    return np.concatenate([dense, [10**5, 10**6, 10**9, 2**31 - 1]]).astype(np.int64)


def _assert_float32_close(got: np.ndarray, s: lrkit.Schedule, steps: np.ndarray) -> None:
    want = s.values(steps)
    scale = max(float(np.max(want)), 1e-30)
    got = np.asarray(got, dtype=np.float64)
    bad = ~(np.abs(got - want) <= 1e-5 * np.abs(want) + 1e-6 * scale)
    assert not bad.any(), (str(s), steps[bad][:5], got[bad][:5], want[bad][:5])


def test_optax_evaluates_replanned_schedules_like_the_pure_core() -> None:
    import jax
    import jax.numpy as jnp

    from lrkit.optax import to_optax

    parsed = [lrkit.parse(spec) for spec in ADAPTER_SPECS]
    fs = [to_optax(s) for s in parsed]
    for s, f in zip(parsed, fs, strict=True):
        steps = _adapter_steps(s)
        _assert_float32_close(jax.jit(f)(jnp.asarray(steps, dtype=jnp.int32)), s, steps)
        assert float(f(s.length)) == pytest.approx(s(s.length), rel=1e-6, abs=1e-12)


@settings(max_examples=25)
@given(replanned_schedules())
def test_optax_matches_random_replanned_schedules(r) -> None:
    import jax.numpy as jnp

    from lrkit.optax import to_optax

    steps = _adapter_steps(r)
    _assert_float32_close(to_optax(r)(jnp.asarray(steps, dtype=jnp.int32)), r, steps)


def test_keras_evaluates_replanned_schedules_like_the_pure_core() -> None:
    from lrkit.keras import to_keras  # before keras: picks a backend if unset

    import keras  # isort: skip

    for spec in ADAPTER_SPECS:
        s = lrkit.parse(spec)
        steps = _adapter_steps(s)
        t = keras.ops.convert_to_tensor(steps.astype(np.int32))
        got = keras.ops.convert_to_numpy(to_keras(spec)(t))
        assert got.dtype == np.float32
        _assert_float32_close(got, s, steps)


def _doc_section() -> str:
    text = DOCS.read_text()
    start = text.index("## Changing the plan mid-run")
    rest = text[start + 3 :]
    following = re.search(r"^## ", rest, flags=re.M)
    return rest[: following.start()] if following else rest


def test_docs_section_examples_run_and_print_what_the_page_shows(capsys) -> None:
    section = _doc_section()
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 1
    for code in blocks:
        exec(compile(code, str(DOCS), "exec"), {"__name__": "docs_example"})
    printed = capsys.readouterr().out.strip()
    shown = re.search(r"Output:\n\n```text\n(.*?)```", section, flags=re.S)
    assert shown is not None
    assert printed == shown.group(1).strip()


@settings(max_examples=30)
@given(schedules())
def test_any_schedule_either_replans_lawfully_or_says_it_cannot(s) -> None:
    end = s.length if s.length is not None else 100
    try:
        r = s.replan(end + 50, at=end // 2)
    except ValueError as e:
        assert "cannot replan" in str(e) or "steps must be" in str(e)
        return
    assert r(end // 2) == s(end // 2) and r.length == end + 50


def test_a_plan_over_at_step_0_holds_its_end_value_when_replanned_at_0() -> None:
    # one_cycle(steps=1) ends at step 0 (its own convention): nothing is left to
    # stretch, so a replan at 0 holds the end value instead of starting a new cycle.
    s = lrkit.one_cycle(max_lr=1.0, steps=1, pct_start=0.5, div_factor=2.0, final_div_factor=1.0)
    r = check_replan(s, 3, 0)
    assert [r(t) for t in range(5)] == [0.5] * 5
