"""A small MLP in pure JAX, trained with an lrkit schedule through optax.

The schedule is a spec string; :func:`lrkit.optax.to_optax` turns it into a
``step -> lr`` function of jnp ops that optax calls with its own update count,
inside the jitted train step. ``optax.inject_hyperparams`` keeps the lr of
each update in the optimizer state, so the loop can print it.

Run: ``python examples/jax_mlp.py`` (a few seconds on a CPU).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lrkit
from lrkit.optax import to_optax

SPEC = "warmup(cosine(lr=0.02, steps=140, min_lr=0.001), steps=10)"
EPOCHS, BATCH = 15, 100


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half-moons: 1000 points, labels 0/1."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi, 1000)
    label = rng.integers(0, 2, 1000)
    x = np.stack([np.cos(angle), np.sin(angle)], 1)
    x[label == 1] = [1.0, 0.5] - x[label == 1]
    x += 0.1 * rng.normal(size=x.shape)
    return x.astype(np.float32), label.astype(np.int32)


def init_mlp(seed: int = 0, sizes: tuple[int, ...] = (2, 32, 32, 2)) -> list[dict]:
    """He-initialised dense layers (numpy's generator: no compilation for the init)."""
    rng = np.random.default_rng(seed)
    return [
        {
            "w": jnp.asarray(rng.normal(size=(n_in, n_out)) * np.sqrt(2.0 / n_in), jnp.float32),
            "b": jnp.zeros(n_out),
        }
        for n_in, n_out in itertools.pairwise(sizes)
    ]


def mlp(params: list[dict], x: jax.Array) -> jax.Array:
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


@jax.jit
def loss_fn(params: list[dict], x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(mlp(params, x), y).mean()


@jax.jit
def accuracy_of(params: list[dict], x: jax.Array, y: jax.Array) -> jax.Array:
    return (mlp(params, x).argmax(1) == y).mean()


def main() -> dict:
    x, y = make_data()
    params = init_mlp()
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=to_optax(SPEC))
    state = optimizer.init(params)

    @jax.jit
    def train_step(params, state, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    schedule = lrkit.parse(SPEC)
    steps_per_epoch = len(x) // BATCH
    first = float(loss_fn(params, x, y))
    used = []
    order = np.random.default_rng(1)
    for epoch in range(EPOCHS):
        perm = order.permutation(len(x))
        for i in range(steps_per_epoch):
            index = perm[i * BATCH : (i + 1) * BATCH]
            params, state, _ = train_step(params, state, x[index], y[index])
            used.append(float(state.hyperparams["learning_rate"]))  # the lr of this update
        if epoch % 5 == 4:
            loss = float(loss_fn(params, x, y))
            print(f"epoch {epoch + 1:2d}  loss {loss:.4f}  lr {used[-1]:.6f}")
    accuracy = float(accuracy_of(params, x, y))
    last = float(loss_fn(params, x, y))
    want = schedule.values(len(used))
    worst = float(np.max(np.abs(np.array(used) - want) / np.maximum(want, 1e-12)))
    print(f"loss {first:.4f} -> {last:.4f}, accuracy {accuracy:.3f}")
    print(f"{len(used)} updates; max relative difference from lrkit's schedule: {worst:.1e}")
    return {"first": first, "last": last, "accuracy": accuracy, "used": used, "worst": worst}


if __name__ == "__main__":
    main()
