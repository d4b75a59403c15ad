"""The suggestion rules of lrkit.finder on synthetic range tests with a known knee.

Each curve: 100 lrs from 1e-7 to 10, loss
``(1 - drop * sigmoid((log10 lr - log10 knee) / w) + exp(4 (log10 lr - log10 knee - gap)))``
times ``1 + noise * N(0, 1)``, with the knee log-uniform in [1e-5, 3e-2], ``w`` in
[0.25, 0.6] decades, ``drop`` in [0.4, 0.8], ``gap`` in [1, 2] decades. Prints,
per rule, the share of picks within 3x and 2x of the knee, the mean
|log10(pick / knee)| and the mean confidence. The evidence behind
``lrkit.finder.default`` (see its docstring).

Run: ``python benchmarks/finder_synthetic.py [--curves 200] [--noise 0.05]``
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from lrkit import finder


def curve(rng: np.random.Generator, noise: float) -> tuple[float, np.ndarray, np.ndarray]:
    knee = 10 ** rng.uniform(-5, -1.5)
    lrs = finder.ramp(1e-7, 10.0, 100)
    x = np.log10(lrs) - math.log10(knee)
    w, drop, gap = rng.uniform(0.25, 0.6), rng.uniform(0.4, 0.8), rng.uniform(1.0, 2.0)
    clean = 1.0 - drop / (1 + np.exp(-x / w)) + np.exp(4 * (x - gap))
    return knee, lrs, clean * (1 + noise * rng.standard_normal(len(lrs)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    errors: dict[str, list[float]] = {name: [] for name in finder.METHODS}
    confidence: dict[str, list[float]] = {name: [] for name in finder.METHODS}
    for _ in range(args.curves):
        knee, lrs, losses = curve(rng, args.noise)
        for name, rule in finder.METHODS.items():
            s = rule(lrs, losses)
            errors[name].append(abs(math.log10(s.lr / knee)))
            confidence[name].append(s.confidence)
    print(f"{args.curves} curves, {100 * args.noise:g} % noise")
    print(f"{'rule':10s} {'within 3x':>10s} {'within 2x':>10s} {'mean |e|':>9s} {'conf':>6s}")
    for name in finder.METHODS:
        e = np.array(errors[name])
        print(
            f"{name:10s} {np.mean(e < math.log10(3)):10.1%} {np.mean(e < math.log10(2)):10.1%} "
            f"{e.mean():9.2f} {np.mean(confidence[name]):6.2f}"
        )


if __name__ == "__main__":
    main()
