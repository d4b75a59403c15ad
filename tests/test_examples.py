"""The examples in examples/ run as written and do what they print."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, capsys) -> tuple[dict, str]:
    """Load ``examples/<name>`` (not as __main__), call its ``main()``; its result and output."""
    namespace = runpy.run_path(str(EXAMPLES / name), run_name="example")
    result = namespace["main"]()
    return result, capsys.readouterr().out


def test_jax_mlp_trains_with_the_lrkit_schedule(capsys):
    import lrkit

    result, printed = run_example("jax_mlp.py", capsys)
    assert result["accuracy"] >= 0.97
    assert result["last"] < result["first"] / 10
    # Every update used s(count), up to float32 rounding.
    want = lrkit.parse("warmup(cosine(lr=0.02, steps=140, min_lr=0.001), steps=10)").values(150)
    np.testing.assert_allclose(result["used"], want, rtol=1e-6, atol=1e-9)
    assert result["worst"] < 1e-6
    assert f"accuracy {result['accuracy']:.3f}" in printed
    assert "150 updates; max relative difference from lrkit's schedule" in printed


def test_optax_plateau_cuts_through_inject_hyperparams(capsys):
    import lrkit

    result, printed = run_example("optax_plateau.py", capsys)
    assert len(result["cuts"]) >= 2
    np.testing.assert_allclose(result["used"], result["want"], rtol=1e-6, atol=1e-9)
    # The controller's lr is s(step) * 0.5**k, k the cuts made before that step's epoch.
    s = lrkit.parse("warmup(cosine(lr=0.1, steps=380, min_lr=0.01), steps=20)")
    epoch_of_step = np.arange(400) // 20
    k = np.array([sum(c <= e for c in result["cuts"]) for e in epoch_of_step])
    np.testing.assert_allclose(result["used"], s.values(400) * 0.5**k, rtol=1e-6, atol=1e-9)
    shown = [int(m) for m in re.findall(r"epoch\s+(\d+)\s+val_loss [\d.]+\s+cut", printed)]
    assert shown == result["cuts"]
    assert "max relative difference from lrkit's Plateau" in printed
