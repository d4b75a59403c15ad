"""The package as a user meets it: imports stay light, the tooling is wired up."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = (
    "torch", "typer", "rich", "matplotlib", "jax", "keras", "optax", "optuna", "tensorflow", "ray",
)  # fmt: skip


def test_import_lrkit_loads_nothing_heavier_than_numpy() -> None:
    code = (
        "import sys, lrkit\n"
        "s = lrkit.parse('warmup(cosine(lr=0.1, steps=10), steps=2)')\n"
        "s.values(20); s.to_dict(); lrkit.from_dict(s.to_dict())\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", out


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", readme, re.S)
    assert first_block is not None
    commands = [
        line.split("#")[0].strip()
        for line in first_block.group(1).splitlines()
        if line.split("#")[0].strip()
    ]
    assert commands == ["make demo", "make test"]
    # Nothing but the title and a sentence before the commands.
    assert readme.index("```") < 400
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_torch_extra_admits_the_pinned_cpu_build() -> None:
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = meta["project"]["optional-dependencies"]
    assert {"torch", "keras", "jax", "lrfree", "tune", "ray", "dev", "all"} <= set(extras)
    assert "ray" in extras["all"][0]
    (torch_req,) = [req for req in extras["torch"] if req.startswith("torch")]
    low, high = re.fullmatch(r"torch>=([\d.]+),<([\d.]+)", torch_req).groups()
    as_tuple = lambda v: tuple(int(p) for p in v.split("."))  # noqa: E731
    assert as_tuple(low) <= (2, 13, 0) < as_tuple(high)
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()


def test_source_is_ruff_clean() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), "check", "src", "tests", "benchmarks", "examples", "docs/hooks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_source_is_mypy_clean() -> None:
    # The cache lives in the system temp dir (one per checkout), never in the repo: a
    # first run takes ~45 s (torch's hints), later ones a few seconds.
    import hashlib
    import tempfile

    tag = hashlib.sha1(str(ROOT).encode()).hexdigest()[:12]
    cache = Path(tempfile.gettempdir()) / f"lrkit-mypy-cache-{tag}"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "src/lrkit", "--cache-dir", str(cache)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_py_typed_marker_ships() -> None:
    assert (ROOT / "src" / "lrkit" / "py.typed").exists()


def test_readme_examples_run_as_written() -> None:
    import doctest

    failures, tried = doctest.testfile(
        str(ROOT / "README.md"),
        module_relative=False,
        optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS,
    )
    assert tried > 5
    assert failures == 0
