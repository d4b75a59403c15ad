"""lrkit.optax: the jnp formulas equal the pure schedules, under jit, vmap and optax."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lrkit
from lrkit.controllers import Plateau
from lrkit.optax import OptaxSchedule, to_optax
from strategies import schedules

INT32_MAX = 2**31 - 1

#: One schedule per family (and composite), for the jit/vmap/optax checks.
ONE_PER_FAMILY = [
    "constant(lr=0.1)",
    "step_decay(lr=0.1, step_size=7, gamma=0.5)",
    "multistep(lr=1.0, milestones=[3, 9, 20], gamma=0.3)",
    "exponential(lr=1.0, gamma=0.9)",
    "linear(start_lr=0.0, end_lr=1.0, steps=17)",
    "cosine(lr=1.0, steps=25, min_lr=0.1)",
    "cosine_restarts(lr=1.0, period=3, period_mult=2, decay=0.8)",
    "cosine_restarts(lr=1.0, period=5, min_lr=0.01)",
    "polynomial(lr=1.0, steps=20, power=2.0, end_lr=0.01)",
    "cyclic(min_lr=0.1, max_lr=1.0, step_size_up=4, step_size_down=6, mode='triangular2')",
    "cyclic(min_lr=0.1, max_lr=1.0, step_size_up=4, mode='exp_range', gamma=0.95)",
    "one_cycle(max_lr=1.0, steps=30)",
    "one_cycle(max_lr=1.0, steps=30, anneal='linear', three_phase=True)",
    "inverse_sqrt(lr=1.0, warmup_steps=5)",
    "wsd(lr=1.0, steps=40, warmup_steps=5, decay_steps=0.25)",
    "wsd(lr=1.0, steps=40, decay_steps=10, decay_shape='cosine', min_lr=0.1)",
    "warmup(cosine(lr=1.0, steps=20), steps=5, shape='cosine')",
    "warmup(constant(lr=1.0), steps=5, start_lr=0.01, shape='exponential')",
    "swa(cosine(lr=1.0, steps=40), start=0.5, swa_lr=0.2, anneal_steps=5)",
    "swa(constant(lr=1.0), start=9, swa_lr=0.1, anneal_steps=4, anneal='linear')",
    "linear(start_lr=0.0, end_lr=1.0, steps=5) | 0.5 * cosine(lr=1.0, steps=10) | constant(lr=0.1)",
    "join(constant(lr=1.0), exponential(lr=0.5, gamma=0.8), boundaries=[6])",
]


def boundary_steps(s: lrkit.Schedule, offset: int = 0) -> set[int]:
    """Steps where ``s`` changes phase (shifted by ``offset``), and their neighbours."""
    edges: set[int] = {0}
    fields = s.to_dict()
    for name in ("steps", "step_size", "warmup_steps", "period", "step_size_up"):
        value = fields.get(name)
        if isinstance(value, int):
            edges |= {value, 2 * value, 3 * value}
    if isinstance(s, lrkit.schedules.MultiStep):
        edges |= set(s.milestones)
    if isinstance(s, lrkit.schedules.WSD):
        edges.add(s.steps - s.decay_count)
    if isinstance(s, lrkit.schedules.Cyclic):
        edges |= {s.step_size_up + s._down, 2 * s.step_size_up + s._down}
    if isinstance(s, lrkit.schedules.CosineRestarts):
        start, length = 0, s.period
        for _ in range(6):
            start, length = start + length, length * s.period_mult
            edges.add(start)
    if isinstance(s, lrkit.schedules.OneCycle):
        edges |= {int(stop) for stop, _, _ in s._phases()}
    out = {offset + e + d for e in edges for d in (-1, 0, 1) if e + d >= 0}
    if isinstance(s, lrkit.schedules.Warmup):
        out |= boundary_steps(s.schedule, offset + s.steps)
    if isinstance(s, lrkit.schedules.Join):
        for part, begin in zip(s.schedules, (0, *s.boundaries), strict=True):
            out |= boundary_steps(part, offset + begin)
    if isinstance(s, lrkit.schedules.Scaled):
        out |= boundary_steps(s.schedule, offset)
    return out


def steps_to_check(
    s: lrkit.Schedule, extra: list[int] | None = None, size: int = 512
) -> np.ndarray:
    """Boundaries, a dense start, spread-out steps and far steps (int32 range).

    Always ``size`` steps (the sorted set, padded by repeating the last one), so
    eager jax reuses its compiled kernels from one example to the next.
    """
    steps = boundary_steps(s) | set(range(50)) | {10**5, 10**6, 10**9, INT32_MAX}
    steps |= {int(x) for x in np.geomspace(1, 10**8, 60)}
    steps |= set(extra or [])
    ordered = sorted(t for t in steps if 0 <= t <= INT32_MAX)[:size]
    ordered += [ordered[-1]] * (size - len(ordered))
    return np.array(ordered, dtype=np.int64)


def assert_float32_close(got: np.ndarray, s: lrkit.Schedule, steps: np.ndarray) -> None:
    """``got`` equals ``s`` at ``steps`` to float32 rounding (relative, plus a floor
    scaled by the schedule's largest value)."""
    want = s.values(steps)
    scale = max(float(np.max(want)), float(np.max(s.values(2000))), 1e-30)
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape
    bad = ~(np.abs(got - want) <= 1e-5 * np.abs(want) + 1e-6 * scale)
    assert not bad.any(), (
        f"{s}: at steps {steps[bad][:5].tolist()} got {got[bad][:5].tolist()}, "
        f"want {want[bad][:5].tolist()}"
    )


@given(schedules(), st.lists(st.integers(0, INT32_MAX), max_size=20))
def test_values_equal_the_pure_schedule_at_every_family(s: lrkit.Schedule, extra: list[int]):
    steps = steps_to_check(s, extra)
    got = to_optax(s)(jnp.asarray(steps, dtype=jnp.int32))
    assert got.dtype == jnp.float32
    assert_float32_close(got, s, steps)


def test_every_family_under_jit_and_vmap_and_from_python_ints():
    parsed = [lrkit.parse(spec) for spec in ONE_PER_FAMILY]
    fs = [to_optax(s) for s in parsed]
    # One jit over all families (two compilations: batched by vmap, and one step).
    at_all = jax.jit(lambda t: jnp.stack([f(t) for f in fs]))
    steps = np.arange(120, dtype=np.int32)
    batched = np.asarray(jax.vmap(at_all)(jnp.asarray(steps)))  # (steps, families)
    single = {t: np.asarray(at_all(jnp.int32(t))) for t in (0, 1, 7, 119)}
    for k, s in enumerate(parsed):
        assert_float32_close(batched[:, k], s, steps)
        got = np.array([single[t][k] for t in single])
        assert_float32_close(got, s, np.array(list(single)))
    for k in (0, 5, len(fs) - 1):  # a plain Python int, eagerly
        assert_float32_close(np.array([float(fs[k](7))]), parsed[k], np.array([7]))


def test_inject_hyperparams_uses_s_of_count_in_a_real_update_loop():
    s = lrkit.parse("warmup(cosine(lr=0.5, steps=20, min_lr=0.05), steps=5)")
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=to_optax(s))
    params = {"w": jnp.zeros(3)}
    state = opt.init(params)

    @jax.jit
    def train_step(params, state):
        grads = jax.grad(lambda p: jnp.sum(p["w"]))(params)  # gradient 1: w moves by -lr
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    used, reported = [], []
    for i in range(30):
        assert int(state.count) == i
        before = float(params["w"][0])
        params, state = train_step(params, state)
        used.append(before - float(params["w"][0]))
        reported.append(float(state.hyperparams["learning_rate"]))
    want = s.values(30)
    np.testing.assert_allclose(reported, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(used, want, rtol=1e-4, atol=1e-6)  # w's own float32 rounding


def test_plain_optax_optimizer_and_batched_schedules():
    # As a plain schedule argument (optax calls it with its own count), and vmapped
    # over a batch of steps inside jit: the same values.
    f = to_optax("cosine(lr=1.0, steps=10)")
    opt = optax.sgd(learning_rate=f)
    params = jnp.zeros(())
    state = opt.init(params)
    moved = []
    for _ in range(12):
        updates, state = opt.update(jnp.ones(()), state, params)
        moved.append(-float(updates))
    np.testing.assert_allclose(moved, lrkit.cosine(lr=1.0, steps=10).values(12), atol=1e-6)
    grid = jnp.arange(24, dtype=jnp.int32).reshape(4, 6)
    np.testing.assert_allclose(jax.jit(jax.vmap(f))(grid), f(grid), rtol=1e-6)


def test_spec_dict_and_schedule_inputs_give_equal_functions():
    s = lrkit.parse("warmup(cosine(lr=3e-4, steps=1000), steps=100)")
    assert to_optax(s) == to_optax(str(s)) == to_optax(s.to_dict())
    assert isinstance(to_optax(s), OptaxSchedule)
    assert repr(to_optax(s)) == f"to_optax({str(s)!r})"


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(TypeError, match="got float"):
        to_optax(0.1)
    with pytest.raises(TypeError, match=r"got Plateau.*controllers"):
        to_optax(Plateau(lrkit.constant(0.1)))
    with pytest.raises(ValueError, match="steps"):
        to_optax("cosine(lr=0.1, steps=0)")


def test_without_x64_steps_are_int32_and_optax_counts_saturate():
    assert not jax.config.jax_enable_x64
    f = to_optax(f"step_decay(lr=1.0, step_size={2**30}, gamma=0.5)")
    assert float(f(INT32_MAX)) == 0.5
    with pytest.raises(OverflowError):
        f(2**31)


X64_CHECK = """
import json, jax, jax.numpy as jnp, numpy as np, lrkit
from lrkit.optax import to_optax
assert jax.config.jax_enable_x64
specs = [
    f"step_decay(lr=1.0, step_size={2**31}, gamma=0.5)",
    "cosine_restarts(lr=1.0, period=3, period_mult=2, decay=0.99)",
    "cosine_restarts(lr=1.0, period=1000)",
    f"cosine(lr=1.0, steps={2**40}, min_lr=0.1)",
    f"join(constant(lr=1.0), linear(start_lr=1.0, end_lr=0.0, steps={2**33}), "
    f"boundaries=[{2**32}])",
    f"warmup(constant(lr=1.0), steps={3 * 2**31})",
    "exponential(lr=1.0, gamma=0.9999999999)",
    f"multistep(lr=1.0, milestones=[5, {2**31}, {2**35}])",
]
steps = np.array([0, 2**31 - 1, 2**31, 2**31 + 7, 2**32 + 1, 3 * 2**31 - 1, 2**34, 2**40,
                  10**15, 2**62], dtype=np.int64)
parsed = [lrkit.parse(spec) for spec in specs]
# One jit over every schedule: two compilations (an array of steps, one step).
all_at = jax.jit(lambda t: jnp.stack([to_optax(s)(t) for s in parsed]))
got = np.asarray(all_at(jnp.asarray(steps)))
one = [np.asarray(all_at(jnp.asarray(t))) for t in steps[:4]]
out = []
for k, (spec, s) in enumerate(zip(specs, parsed)):
    out.append({"spec": spec, "dtype": str(got.dtype), "got": got[k].tolist(),
                "want": s.values(steps).tolist(), "scalar": [float(v[k]) for v in one]})
print(json.dumps(out))
"""


def test_steps_beyond_2_to_the_31_with_x64_enabled():
    env = {**os.environ, "JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [sys.executable, "-c", X64_CHECK], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    for row in json.loads(run.stdout):
        assert row["dtype"] == "float64", row
        np.testing.assert_allclose(
            row["got"], row["want"], rtol=1e-9, atol=1e-12, err_msg=row["spec"]
        )
        np.testing.assert_allclose(row["scalar"], row["want"][:4], rtol=1e-9, err_msg=row["spec"])
