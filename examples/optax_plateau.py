"""A plateau controller in optax's update loop: lr = schedule(count) * factor.

``optax.inject_hyperparams`` makes ``factor`` a value in the optimizer state
rather than a constant of the jitted step: the host changes it between
epochs and the compiled step reads the new value (no re-jit). The factor
comes from :class:`lrkit.controllers.Plateau`, which observes the validation
loss once per epoch with torch's ReduceLROnPlateau rules (observations during
the schedule's warmup are ignored). The schedule itself runs inside the step,
from optax's own count, as :func:`lrkit.optax.to_optax` builds it.

Run: ``python examples/optax_plateau.py`` (a few seconds on a CPU).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lrkit
from lrkit.controllers import Plateau
from lrkit.optax import to_optax

SPEC = "warmup(cosine(lr=0.1, steps=380, min_lr=0.01), steps=20)"
EPOCHS, STEPS_PER_EPOCH = 20, 20


def sgd_times_factor(factor: float) -> optax.GradientTransformation:
    """SGD at ``schedule(count) * factor``; ``factor`` is injected, ``count`` is optax's."""
    schedule = to_optax(SPEC)
    return optax.sgd(learning_rate=lambda count: schedule(count) * factor)


def make_data(seed: int = 0) -> tuple[jax.Array, ...]:
    """A noisy linear regression: the validation loss stalls at the noise level."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(8, 1))
    x = rng.normal(size=(1200, 8))
    y = x @ w + 0.5 * rng.normal(size=(1200, 1))
    as32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return as32(x[:1000]), as32(y[:1000]), as32(x[1000:]), as32(y[1000:])


@jax.jit
def loss_fn(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def main() -> dict:
    x, y, x_val, y_val = make_data()
    optimizer = optax.inject_hyperparams(sgd_times_factor)(factor=1.0)
    params = {"w": jnp.zeros((8, 1)), "b": jnp.zeros(1)}
    state = optimizer.init(params)

    @jax.jit
    def train_step(params, state, xb, yb):
        grads = jax.grad(loss_fn)(params, xb, yb)
        lr = to_optax(SPEC)(state.count) * state.hyperparams["factor"]  # what this update uses
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, lr

    schedule = lrkit.parse(SPEC)
    plateau = Plateau(schedule, factor=0.5, patience=2, threshold=1e-3)
    batch = len(x) // STEPS_PER_EPOCH
    used, want, cuts = [], [], []
    for epoch in range(EPOCHS):
        for i in range(STEPS_PER_EPOCH):
            step = int(state.count)
            sl = slice(i * batch, (i + 1) * batch)
            params, state, lr = train_step(params, state, x[sl], y[sl])
            used.append(float(lr))
            want.append(plateau.lr(step))  # the pure controller's lr for this step
        val = float(loss_fn(params, x_val, y_val))
        if plateau.observe(val, int(state.count) - 1):  # measured after the last update
            state.hyperparams["factor"] = jnp.asarray(plateau.factor_now, jnp.float32)
            cuts.append(epoch + 1)
            print(f"epoch {epoch + 1:2d}  val_loss {val:.4f}  cut: factor {plateau.factor_now:g}")
    worst = float(np.max(np.abs(np.array(used) - want) / np.maximum(want, 1e-12)))
    print(f"cuts after epochs {cuts}; final val_loss {val:.4f}")
    print(f"{len(used)} updates; max relative difference from lrkit's Plateau: {worst:.1e}")
    return {"cuts": cuts, "used": used, "want": want, "worst": worst, "val_loss": val}


if __name__ == "__main__":
    main()
