"""lrkit schedules as optax schedules: ``step -> lr`` functions built from jnp ops.

:func:`to_optax` turns any lrkit schedule (or a spec string, or its dict)
into a plain function of the step that optax accepts wherever it takes a
schedule. The function is built from ``jax.numpy`` operations only (no host
callbacks, no numpy on the step), so it works under :func:`jax.jit`,
:func:`jax.vmap` and inside ``optax.inject_hyperparams``. It follows SPEC §5's
step convention: the update made when optax's ``count`` is ``i`` uses ``s(i)``.

The value is computed from the integer step every time (no accumulation) and
agrees with the float64 pure schedule to a few float32 roundings (more for
``exponential`` and ``step_decay`` far into a run: ``exp(t log gamma)`` in
float32), or float64 when JAX's 64-bit mode is on.

Steps and 64-bit mode:
    With ``jax_enable_x64`` on, steps are int64 and every step up to 2**63 - 1
    gives ``s(step)``. With it off (JAX's default), steps are int32: optax's
    ``count`` stops at 2**31 - 1 (``optax.safe_increment``), so the lr holds
    ``s(2**31 - 1)`` from there on, and passing a Python int >= 2**31 raises
    JAX's ``OverflowError`` (a numpy int64 that large wraps around silently),
    and a schedule whose length, period or warmup is 2**31 steps or more
    raises ``OverflowError``: such schedules need 64-bit mode.

Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> from lrkit.optax import to_optax
    >>> f = to_optax("warmup(cosine(lr=0.1, steps=100), steps=10)")
    >>> round(float(f(5)), 6), round(float(f(10)), 6), float(f(110))
    (0.05, 0.1, 0.0)
    >>> [round(v, 6) for v in jax.jit(f)(jnp.arange(3)).tolist()]
    [0.0, 0.01, 0.02]
    >>> opt = optax.inject_hyperparams(optax.sgd)(learning_rate=f)
    >>> state = opt.init({"w": jnp.zeros(2)})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from lrkit._formulas import Ops, as_schedule, lr_at
from lrkit.schedules import Schedule

__all__ = ["OptaxSchedule", "to_optax"]


class _JaxOps(Ops):
    """:class:`lrkit._formulas.Ops` bound to ``jax.numpy``."""

    xp = jnp

    def asarray(self, value: Any, dtype: str) -> jax.Array:
        return jnp.asarray(value, dtype=dtype)

    def cast(self, x: Any, dtype: str) -> jax.Array:
        return jnp.asarray(x).astype(dtype)

    def shape(self, x: Any) -> tuple[int, ...]:
        return jnp.shape(x)


class OptaxSchedule:
    """A ``step -> lr`` function for optax, made by :func:`to_optax`.

    Calling it with an integer step (a Python int, a numpy or jax integer
    array of any shape, traced or not) returns the learning rates as a jax
    float array of the same shape. It is a value: ``repr`` shows the spec and
    two are equal when their schedules are.

    Attributes:
        schedule: the pure lrkit schedule it computes.
    """

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def __call__(self, step: Any) -> jax.Array:
        step = jnp.asarray(step)
        if not jnp.issubdtype(step.dtype, jnp.integer):
            if jnp.issubdtype(step.dtype, jnp.floating):
                step = jnp.floor(step)  # optax counts are ints; a float count is floored
            else:
                raise TypeError(f"step must be an integer array, got dtype {step.dtype}")
        int_dtype = str(jax.dtypes.canonicalize_dtype(jnp.int64))
        float_dtype = str(jax.dtypes.canonicalize_dtype(jnp.float64))
        # Negative steps (never produced by optax) are treated as step 0.
        t = jnp.maximum(step.astype(int_dtype), 0)
        return lr_at(self.schedule, t, _JaxOps(int_dtype, float_dtype))

    def __repr__(self) -> str:
        return f"to_optax({str(self.schedule)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OptaxSchedule) and other.schedule == self.schedule

    def __hash__(self) -> int:
        return hash(("OptaxSchedule", self.schedule))


def to_optax(
    schedule_or_spec: Schedule | str | Mapping[str, Any],
) -> Callable[[Any], jax.Array]:
    """An optax schedule (``step -> lr``) computing an lrkit schedule with jnp ops.

    Args:
        schedule_or_spec: an lrkit schedule, a spec string such as
            ``"cosine(lr=1e-3, steps=1000)"``, or a schedule's ``to_dict()``.

    Returns:
        An :class:`OptaxSchedule`: pass it as ``learning_rate`` to any optax
        optimizer, or to ``optax.inject_hyperparams(opt)(learning_rate=f)`` to
        keep the current lr in the optimizer state.

    Raises:
        TypeError: for something that is not a schedule (a controller, a number),
            or a schedule of a family that defines no ``_formula`` (see
            :mod:`lrkit.schedules`, "Adding a family").
        ValueError: for an invalid spec, with the offending part.

    Examples:
        >>> import jax.numpy as jnp, optax
        >>> f = to_optax("cosine(lr=1.0, steps=4)")
        >>> [round(v, 6) for v in f(jnp.arange(6)).tolist()]
        [1.0, 0.853553, 0.5, 0.146447, 0.0, 0.0]
        >>> opt = optax.inject_hyperparams(optax.adam)(learning_rate=f)
        >>> params = {"w": jnp.ones(3)}
        >>> state = opt.init(params)
        >>> _, state = opt.update({"w": jnp.ones(3)}, state, params)
        >>> float(state.hyperparams["learning_rate"])  # the update at count 0 used s(0)
        1.0
    """
    return OptaxSchedule(as_schedule(schedule_or_spec))
