"""Each family's one formula (``_formula``), asked by the adapters: on numpy it
equals ``values``, and a family added with ``spec.register`` runs everywhere."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lrkit
from lrkit._formulas import NUMPY, lr_at
from lrkit.controllers import Plateau, warmup_steps
from lrkit.keras import KerasSchedule, to_keras  # before keras: picks a backend if unset
from lrkit.optax import to_optax
from lrkit.plotting import key_steps
from lrkit.schedules import Schedule
from lrkit.spec import register, unregister
from strategies import replanned_schedules, schedules
from test_optax import assert_float32_close

import keras  # isort: skip


def check_steps(s: Schedule, extra: list[int]) -> np.ndarray:
    """A dense start, each phase start and its neighbours, the end, far steps."""
    steps = set(range(40)) | {10**6, 10**9, 2**40} | set(extra)
    for begin, _ in s._phase_starts():
        steps |= {begin - 1, begin, begin + 1}
    if s.length is not None:
        steps |= {s.length - 1, s.length, s.length + 1, 2 * s.length}
    return np.array(sorted(t for t in steps if t >= 0), dtype=np.int64)


@given(
    st.one_of(schedules(), replanned_schedules()),
    st.lists(st.integers(0, 2**62), max_size=10),
)
def test_the_formula_on_numpy_equals_values_for_every_family(s: Schedule, extra: list[int]):
    # The tensor formula is written in float32-safe forms, values() in the direct
    # float64 one: in float64 they agree to far below float32 rounding.
    t = check_steps(s, extra)
    want = s.values(t)
    with np.errstate(all="ignore"):  # log(0) in polynomial's formula, as in JAX
        got = lr_at(s, t, NUMPY)
    scale = max(float(np.max(want)), 1e-300)
    bad = ~(np.abs(got - want) <= 1e-9 * np.abs(want) + 1e-12 * scale)
    assert not bad.any(), f"{s}: at {t[bad][:5].tolist()} got {got[bad][:5]}, want {want[bad][:5]}"


# -- a family added by the user: one class -----------------------------------


@dataclass(frozen=True, repr=False)
class InverseTime(Schedule):
    """Linear warmup to ``lr``, then inverse-time decay (Keras's InverseTimeDecay).

    lr(t) = lr * t / warmup_steps                           t < warmup_steps
            lr / (1 + (t - warmup_steps) / steps)           t >= warmup_steps
    """

    lr: float
    steps: int
    warmup_steps: int = 0
    name: ClassVar[str] = "inverse_time"

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"inverse_time: steps must be an integer >= 1, got {self.steps!r}")

    def _formula(self, ops: Any, t: Any) -> Any:
        w = self.warmup_steps
        decaying = self.lr / (1.0 + ops.float_(ops.offset(t, w)) / self.steps)
        if not w:
            return decaying
        return ops.before(t, w, self.lr * ops.float_(t) / w, decaying)

    def _phase_starts(self) -> list[tuple[int, str]]:
        if not self.warmup_steps:
            return [(0, "decay")]
        return [(0, "warmup"), (self.warmup_steps, "decay")]


def inverse_time(t: int, lr: float, steps: int, warmup_steps: int = 0) -> float:
    """The reference, in plain Python."""
    if t < warmup_steps:
        return lr * t / warmup_steps
    return lr / (1 + (t - warmup_steps) / steps)


@dataclass(frozen=True, repr=False)
class NumpyOnly(Schedule):
    """A family written before ``_formula``: ``_at`` and ``_values`` only."""

    lr: float
    name: ClassVar[str] = "numpy_only"

    def _at(self, t: int) -> float:
        return self.lr / (1 + t)

    def _values(self, t: np.ndarray) -> np.ndarray:
        return self.lr / (1.0 + t)


@dataclass(frozen=True, repr=False)
class Nothing(Schedule):
    """A family that defines no formula at all."""

    lr: float
    name: ClassVar[str] = "nothing"


@pytest.fixture
def families() -> Iterator[None]:
    for name, cls in (("inverse_time", InverseTime), ("numpy_only", NumpyOnly)):
        register(name, cls)
    try:
        yield
    finally:
        for name in ("inverse_time", "numpy_only"):
            unregister(name)


SPEC = "inverse_time(lr=0.5, steps=20, warmup_steps=4)"
STEPS = np.array([0, 1, 3, 4, 5, 23, 24, 25, 100, 12345, 10**6, 2**31 - 1], dtype=np.int64)


def test_a_registered_family_parses_and_computes_with_only_its_formula(families: None):
    s = lrkit.parse(SPEC)
    assert s == InverseTime(lr=0.5, steps=20, warmup_steps=4)
    assert str(s) == SPEC and lrkit.parse(str(s)) == s
    assert lrkit.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    want = [inverse_time(int(t), 0.5, 20, 4) for t in STEPS]
    np.testing.assert_allclose(s.values(STEPS), want, rtol=1e-15)
    assert [s(int(t)) for t in STEPS] == s.values(STEPS).tolist()
    assert s.values(5).flags.writeable
    # Composed like any built-in family.
    c = lrkit.parse(f"0.5 * warmup({SPEC}, steps=10)")
    assert c.values(STEPS) == pytest.approx(
        [0.5 * (inverse_time(int(t) - 10, 0.5, 20, 4) if t >= 10 else 0.0) for t in STEPS]
    )
    joined = lrkit.join(s, lrkit.constant(0.1), boundaries=[30])
    assert joined(29) == s(29) and joined(30) == 0.1


def test_a_registered_family_runs_in_keras_and_optax_with_equal_values(families: None):
    s = lrkit.parse(SPEC)
    composite = lrkit.parse(f"warmup({SPEC}, steps=3, shape='cosine')")
    for sched in (s, composite, 2.0 * s):
        got_optax = np.asarray(jax.jit(to_optax(sched))(jnp.asarray(STEPS, dtype=jnp.int32)))
        assert_float32_close(got_optax, sched, STEPS)
        t = keras.ops.convert_to_tensor(STEPS.astype(np.int32))
        got_keras = keras.ops.convert_to_numpy(to_keras(sched)(t))
        assert_float32_close(got_keras, sched, STEPS)
    # Saved and loaded through Keras' own serialization (the name is registered).
    lr = to_keras(SPEC)
    data = json.loads(json.dumps(keras.optimizers.schedules.serialize(lr)))
    back = keras.optimizers.schedules.deserialize(data)
    assert isinstance(back, KerasSchedule) and back.schedule == s


def test_a_registered_family_gives_its_phases_to_plots_and_controllers(families: None):
    s = lrkit.parse(SPEC)
    assert warmup_steps(s) == 4 and Plateau(s).start == 4
    assert warmup_steps(lrkit.parse("inverse_time(lr=0.5, steps=20)")) == 0
    assert 4 in key_steps(s, 100)
    assert warmup_steps(lrkit.join(s, lrkit.constant(0.1), boundaries=[2])) == 2


def test_a_family_without_a_formula_is_refused_by_the_adapters_by_name(families: None):
    s = lrkit.parse("warmup(numpy_only(lr=1.0), steps=2)")
    assert s.values(4).tolist() == [0.0, 0.5, 1.0, 0.5]  # lrkit itself needs no formula
    for convert in (to_keras, to_optax):
        with pytest.raises(TypeError, match=r"numpy_only.*_formula\(self, ops, t\).*NumpyOnly"):
            convert(s)
        with pytest.raises(TypeError, match=r"_formula\(self, ops, t\) in class NumpyOnly"):
            convert(s.to_dict())


def test_a_family_that_defines_nothing_says_what_to_define():
    s = Nothing(lr=1.0)
    for call in (lambda: s(3), lambda: s.values(3)):
        with pytest.raises(NotImplementedError, match=r"nothing: .*_formula\(self, ops, t\)"):
            call()
    with pytest.raises(TypeError, match="class Nothing"):
        to_optax(s)


DOCS = Path(__file__).resolve().parents[1] / "docs" / "schedules.md"


def test_the_docs_example_of_a_new_family_runs_and_prints_what_the_page_shows(capsys):
    text = DOCS.read_text()
    section = text[text.index("## Adding a family: one class") :]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    # As a user's module runs it: without this module's `from __future__ import annotations`.
    exec(compile(code, str(DOCS), "exec", dont_inherit=True), namespace)  # registers it
    printed = capsys.readouterr().out.strip()
    try:
        s = namespace["s"]
        steps = np.array([0, 5, 10, 11, 110, 10**6], dtype=np.int64)
        assert_float32_close(np.asarray(to_optax(s)(steps.astype(np.int32))), s, steps)
        got = to_keras(s)(keras.ops.convert_to_tensor(steps.astype(np.int32)))
        assert_float32_close(keras.ops.convert_to_numpy(got), s, steps)
    finally:
        unregister("inverse_time")
    shown = re.search(r"Output:\n\n```text\n(.*?)```", section, flags=re.S)
    assert shown is not None
    assert printed == shown.group(1).strip()
