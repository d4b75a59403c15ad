"""One spec, three frameworks: the lr each one's own update really used, overlaid.

PyTorch (``lrkit.torch.Scheduler``), Keras 3 (``lrkit.keras.to_keras``, on the
backend Keras picked) and optax (``lrkit.optax.to_optax`` through
``optax.inject_hyperparams``) each step plain SGD for N steps on a single
float32 weight that is set to 0 before every update and has a gradient of 1,
so the weight after the update is exactly ``-lr`` as that framework applied
it (rounded to float32, as every float32 update is). The script prints each
framework's largest relative difference from lrkit's float64 schedule and
from the others, and draws the three curves in one PNG.

Run:  python benchmarks/framework_agreement.py [--steps 1000] [--out PNG]
(default: docs/img/frameworks_overlay.png, the picture in docs/frameworks.md)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SPEC = "warmup(cosine_restarts(lr=0.1, period=150, period_mult=2, min_lr=0.005), steps=50)"
OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "frameworks_overlay.png"

#: One float32 rounding, relative: what "equal up to float32 rounding" allows per value.
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def torch_lrs(spec: str, steps: int) -> np.ndarray:
    import torch

    from lrkit.torch import Scheduler

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    scheduler = Scheduler(optimizer, spec)
    used = np.empty(steps)
    for i in range(steps):
        with torch.no_grad():
            weight.zero_()
        weight.grad = torch.ones(1)
        optimizer.step()
        used[i] = -float(weight.item())
        scheduler.step()
    return used


def keras_lrs(spec: str, steps: int) -> np.ndarray:
    import lrkit.keras  # before keras: picks a backend if none is set
    import keras  # isort: skip

    weight = keras.Variable(np.zeros(1, "float32"))
    optimizer = keras.optimizers.SGD(learning_rate=lrkit.keras.to_keras(spec))
    optimizer.build([weight])
    grad = keras.ops.ones(1)
    used = np.empty(steps)
    for i in range(steps):
        weight.assign(np.zeros(1, "float32"))
        optimizer.apply([grad], [weight])  # uses s(optimizer.iterations), then counts
        used[i] = -float(keras.ops.convert_to_numpy(weight)[0])
    return used


def optax_lrs(spec: str, steps: int) -> np.ndarray:
    import jax
    import jax.numpy as jnp
    import optax

    from lrkit.optax import to_optax

    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=to_optax(spec))
    zero = jnp.zeros(1, jnp.float32)
    state = optimizer.init(zero)

    @jax.jit
    def step(state):
        updates, state = optimizer.update(jnp.ones(1, jnp.float32), state, zero)
        return optax.apply_updates(zero, updates), state

    used = np.empty(steps)
    for i in range(steps):
        weight, state = step(state)
        used[i] = -float(weight[0])
    return used


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """The largest ``|a - b| / |b|`` (0 where both are 0)."""
    scale = np.maximum(np.abs(b), np.finfo(np.float64).tiny)
    return float(np.max(np.where(a == b, 0.0, np.abs(a - b) / scale)))


def measure(spec: str = SPEC, steps: int = 1000) -> dict:
    """The lrs each framework used, lrkit's own values, and the differences."""
    import lrkit.keras
    import keras  # isort: skip

    used = {
        "PyTorch": torch_lrs(spec, steps),
        f"Keras ({keras.backend.backend()})": keras_lrs(spec, steps),
        "optax": optax_lrs(spec, steps),
    }
    want = lrkit.parse(spec).values(steps)
    names = list(used)
    return {
        "spec": spec,
        "steps": steps,
        "want": want,
        "used": used,
        "vs_lrkit": {name: relative(used[name], want) for name in names},
        "between": max(relative(used[a], used[b]) for a in names for b in names if a != b),
    }


def plot(result: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 5.2), dpi=100, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.3])
    steps = np.arange(result["steps"])
    styles = [("C0", "-", 5.0), ("C1", "--", 2.2), ("k", ":", 1.6)]
    for (name, lrs), (color, style, width) in zip(result["used"].items(), styles, strict=True):
        top.plot(steps, lrs, color=color, linestyle=style, linewidth=width, label=name)
        diff = np.abs(lrs - result["want"]) / np.maximum(result["want"], 1e-30)
        shown = diff > 0  # exact values have no place on a log axis
        bottom.scatter(steps[shown], diff[shown], color=color, s=2, label=name)
    top.set_ylabel("lr used by the update")
    top.set_title(result["spec"], fontsize=9)
    top.legend(loc="upper right")
    top.grid(alpha=0.3)
    bottom.axhline(FLOAT32_EPS / 2, color="C3", linewidth=0.8, label="float32 rounding (2^-24)")
    bottom.set_yscale("log")
    bottom.set_ylim(1e-10, 1e-6)
    bottom.set_ylabel("rel. diff. vs lrkit")
    bottom.set_xlabel("step (the optimizer's counter before the update)")
    bottom.legend(loc="lower right", fontsize=7, ncols=4, markerscale=4)
    bottom.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--spec", default=SPEC)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    result = measure(args.spec, args.steps)
    print(f"{args.spec}, {args.steps} steps: the lr each update used")
    for name, diff in result["vs_lrkit"].items():
        print(f"  {name:<14} max relative difference from lrkit: {diff:.2e}")
    print(f"  between the three frameworks: {result['between']:.2e}")
    print(f"  float32 machine epsilon:      {FLOAT32_EPS:.2e}")
    plot(result, args.out)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
