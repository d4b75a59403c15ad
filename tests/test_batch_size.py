"""Batch size and the lr: ``lrkit.scale_lr``, ``--batch-sizes`` in compare and tune,
``trial.batch_size``, and the report's best-lr-against-batch-size plot.

The built-in tasks must really train at the batch size asked for: the test
rebuilds the first update of ``quadratic`` by hand from the task's own batch
stream and checks the loss the run recorded after it.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import lrkit
from lrkit.bench.advice import advise
from lrkit.bench.grid import (
    GridError,
    as_batch_sizes,
    expand_grid,
    make_grid,
    parse_batch_sizes,
    summarize,
)
from lrkit.bench.run import RunConfig, execute
from lrkit.bench.store import RunStore
from lrkit.bench.tasks import get_task
from lrkit.bench.trial import load_task
from lrkit.cli import app

# -- scale_lr -------------------------------------------------------------------


def test_scale_lr_applies_each_rule() -> None:
    assert lrkit.scale_lr(0.1, 256, 1024) == 0.4
    assert lrkit.scale_lr(0.1, 256, 1024, rule="linear") == 0.4
    assert lrkit.scale_lr(0.1, 256, 1024, rule="sqrt") == 0.2
    assert lrkit.scale_lr(0.4, 1024, 256) == 0.1
    assert lrkit.scale_lr(3e-4, 64, 64, rule="sqrt") == 3e-4


def test_numpy_numbers_are_numbers() -> None:
    assert lrkit.scale_lr(np.float32(0.25), np.int64(16), np.int32(64)) == 1.0
    sizes = list(np.array([16, 64]))
    grid = make_grid(tasks=["quadratic"], batch_sizes=sizes, lrs=[np.float32(0.5)])
    assert grid.batch_sizes == (16, 64) and all(type(b) is int for b in grid.batch_sizes)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((0.0, 32, 64), {}, "lr must be a finite number > 0, got 0.0"),
        ((math.inf, 32, 64), {}, "lr must be a finite number > 0, got inf"),
        (("0.1", 32, 64), {}, "lr must be a finite number > 0, got '0.1'"),
        ((0.1, 0, 64), {}, "from_batch must be an integer >= 1, got 0"),
        ((0.1, 32, 64.0), {}, "to_batch must be an integer >= 1, got 64.0"),
        ((0.1, True, 64), {}, "from_batch must be an integer >= 1, got True"),
        ((0.1, 32, 64), {"rule": "Linear"}, "rule must be one of 'linear', 'sqrt', got 'Linear'"),
        ((1e308, 1, 10), {}, r"1e\+308 scaled from batch 1 to 10 \(linear\) is inf, not a finite"),
    ],
)
def test_scale_lr_refuses_bad_input_naming_it(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^scale_lr: {message}"):
        lrkit.scale_lr(*args, **kwargs)


@given(
    lr=st.floats(1e-8, 10.0),
    a=st.integers(1, 1 << 16),
    b=st.integers(1, 1 << 16),
    rule=st.sampled_from(["linear", "sqrt"]),
)
def test_scale_lr_laws(lr: float, a: int, b: int, rule: str) -> None:
    there = lrkit.scale_lr(lr, a, b, rule)
    assert there == pytest.approx(lr * (b / a) ** (1.0 if rule == "linear" else 0.5), rel=1e-11)
    assert lrkit.scale_lr(there, b, a, rule) == pytest.approx(lr, rel=1e-10)  # there and back
    # the square-root rule moves the lr by the square root of the linear rule's factor
    linear, sqrt = lrkit.scale_lr(lr, a, b, "linear"), lrkit.scale_lr(lr, a, b, "sqrt")
    assert (sqrt / lr) ** 2 == pytest.approx(linear / lr, rel=1e-9)


# -- the run and its key -----------------------------------------------------------


def test_a_run_key_holds_the_batch_size_and_the_default_is_the_tasks_own() -> None:
    plain = RunConfig("digits", "sgd", "constant()", lr=0.1)
    own = RunConfig("digits", "sgd", "constant()", lr=0.1, batch_size=64)  # digits' own
    other = RunConfig("digits", "sgd", "constant()", lr=0.1, batch_size=32)
    assert plain.identity()["batch_size"] == get_task("digits").batch_size == 64
    assert own.key() == plain.key()
    assert other.key() != plain.key() and other.identity()["batch_size"] == 32
    assert "batch_size" not in plain.to_dict()  # stored configs of older runs still load
    assert RunConfig.from_dict(other.to_dict()) == other
    assert RunConfig.from_dict(plain.to_dict()) == plain


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "64"])
def test_a_run_refuses_a_bad_batch_size(bad: Any) -> None:
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        RunConfig("digits", "sgd", lr=0.1, batch_size=bad)


def test_a_task_without_batches_takes_no_batch_size() -> None:
    assert not load_task("rosenbrock").batched
    with pytest.raises(ValueError, match="'rosenbrock' has no batches"):
        RunConfig("rosenbrock", "sgd", lr=0.001, batch_size=4)
    with pytest.raises(GridError, match="--batch-sizes: task 'rosenbrock' has no batches"):
        make_grid(tasks=["quadratic", "rosenbrock"], batch_sizes=[4, 8])


@pytest.mark.parametrize("batch", [1, 4, 256])
def test_a_builtin_task_trains_at_the_batch_size_asked_for(batch: int) -> None:
    """The loss after the first update, rebuilt by hand from the task's own batch stream."""
    lr, seed = 0.05, 3
    result = execute(RunConfig("quadratic", "sgd", "constant()", lr, seed, batch_size=batch))
    assert result.status == "ok", result.reason
    problem = get_task("quadratic").build(seed)
    model = problem.model
    first = next(problem.batches(batch, torch.Generator().manual_seed(seed)))
    assert first[0].shape[0] == batch
    problem.loss(model, first).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
        expected = float(problem.loss(model, next(problem.batches(1, torch.Generator()))))
    assert result.loss[1] == pytest.approx(expected, rel=1e-6)
    # and not the loss another batch size would have given
    if batch != 16:
        default = execute(RunConfig("quadratic", "sgd", "constant()", lr, seed))
        assert default.loss[1] != pytest.approx(expected, rel=1e-6)


def test_a_batch_size_above_the_training_set_is_an_error_run_that_says_so() -> None:
    result = execute(RunConfig("digits", "sgd", "constant()", 0.1, 0, batch_size=5000))
    assert result.status == "error"
    assert "batch size 5000 is more than task 'digits'" in (result.reason or "")
    assert "1437 training samples" in (result.reason or "")


# -- the grid ------------------------------------------------------------------------


def test_parse_batch_sizes_takes_commas_and_repeats_and_refuses_junk() -> None:
    assert parse_batch_sizes(["16, 64", "256", "16"]) == [16, 64, 256]
    assert as_batch_sizes([8, "16,32"]) == [8, 16, 32]
    for bad in ("0", "1.5", "big", "-4", str(1 << 25)):
        with pytest.raises(GridError, match=f"--batch-sizes: '{bad}' must be an integer"):
            parse_batch_sizes([bad])
    with pytest.raises(GridError, match=r"--batch-sizes: 2\.5 must be an integer"):
        make_grid(tasks=["quadratic"], batch_sizes=[2.5])  # type: ignore[list-item]


def test_the_grid_gains_a_batch_axis_and_keeps_one_run_per_key() -> None:
    plain = expand_grid(tasks=["quadratic"], optimizers=["sgd"], lrs=[0.1, 0.01], seeds=2)
    grid = make_grid(
        tasks=["quadratic"], optimizers=["sgd"], lrs=[0.1, 0.01], seeds=2, batch_sizes=[4, 64]
    )
    runs = expand_grid(grid)
    assert len(runs) == 2 * len(plain)
    assert {r.batch_size for r in runs} == {4, 64}
    assert len({r.key() for r in runs}) == len(runs)
    assert grid.to_dict()["batch_sizes"] == [4, 64]
    assert "batch_sizes" not in make_grid(tasks=["quadratic"]).to_dict()


@lrkit.task(metric="loss", steps=30)
def noisy_mean(trial: lrkit.Trial) -> float:
    """Estimate 0 from noisy samples: SGD on (x - sample)^2 with a batch of trial.batch_size."""
    import numpy as np

    rng = np.random.default_rng(trial.seed)
    batch = trial.batch_size or 1
    x = 3.0
    for step in range(trial.steps):
        sample = rng.normal(size=batch).mean()
        x -= trial.schedule(step) * 2.0 * (x - sample)
        trial.log(step, loss=x * x)
    return x * x


def test_a_user_task_reads_trial_batch_size_and_the_summary_ranks_each_batch_apart(
    tmp_path: Path,
) -> None:
    seen: list[Any] = []

    @lrkit.task(metric="loss", steps=3)
    def spy(trial: lrkit.Trial) -> float:
        seen.append(trial.batch_size)
        for step in range(trial.steps):
            trial.log(step, loss=1.0)
        return float(trial.batch_size or 0)

    lrkit.compare(spy, optimizers=["sgd"], schedules=["constant()"], lrs=[0.1], seeds=1,
                  workers=0, out=None, store=tmp_path / "spy.sqlite")  # fmt: skip
    assert seen == [None]
    results = lrkit.compare(
        noisy_mean,
        optimizers=["sgd"],
        schedules=["constant()"],
        lrs=[0.01, 0.03, 0.1, 0.3],
        seeds=2,
        batch_sizes="1,16,256",
        workers=0,
        out=tmp_path / "out",
    )
    assert len(results) == 4 * 3 * 2
    rows = results.summary["noisy_mean"]
    assert sorted(r.batch_size for r in rows) == [1, 16, 256]
    for row in rows:  # each batch size's best lr is chosen among its own runs
        mine = [r for r in results.runs if r.config.get("batch_size") == row.batch_size]
        assert row.seeds == 2 and row.runs == len(mine) == 8
    # the mean of more samples is less noisy: the final loss falls with the batch
    means = {r.batch_size: r.mean for r in rows}
    assert means[256] < means[16] < means[1]
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["grid"]["batch_sizes"] == [1, 16, 256]
    assert {row["batch_size"] for row in data["summary"]["noisy_mean"]} == {1, 16, 256}
    assert (tmp_path / "out" / "batch_lr_noisy_mean.png").stat().st_size > 10_000
    html = (tmp_path / "out" / "report.html").read_text()
    assert "constant() · batch 256" in html and "The best lr against the batch size" in html
    advice = advise("noisy_mean", rows)
    assert advice.winner is not None and advice.winner.batch_size == 256
    assert advice.verdict.startswith(f"pick sgd + constant() at lr {advice.winner.lr:g}, batch 256")


def test_a_summary_without_batch_sizes_names_none() -> None:
    results = [execute(RunConfig("quadratic", "sgd", "constant()", lr, 0)) for lr in (0.01, 0.1)]
    (row,) = summarize(results)["quadratic"]
    assert row.batch_size == 16  # the task's own, from the runs' keys
    advice = advise("quadratic", [row])
    assert advice.winner is not None and advice.winner.batch_size is None
    assert "batch" not in advice.verdict


# -- the command line ----------------------------------------------------------------


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_compare_cli_batch_sizes_column_plot_and_errors(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = _invoke(
        "compare", "--tasks", "quadratic", "--optimizers", "sgd", "--schedules", "constant()",
        "--lrs", "0.01,0.1", "--batch-sizes", "4", "--batch-sizes", "64", "--seeds", "1",
        "--workers", "0", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "optimizer" in line)
    assert "batch" in header
    assert "8 runs" not in result.output and "4 runs" in result.output
    assert (out / "batch_lr_quadratic.png").is_file()
    for bad, message in (
        ("0", "--batch-sizes: '0' must be an integer"),
        ("lots", "--batch-sizes: 'lots' must be an integer"),
    ):
        result = _invoke("compare", "--tasks", "quadratic", "--batch-sizes", bad,
                         "--out", str(tmp_path / "x"))  # fmt: skip
        assert result.exit_code == 2 and message in result.output, result.output
    result = _invoke("compare", "--tasks", "rosenbrock", "--batch-sizes", "8",
                     "--out", str(tmp_path / "y"))  # fmt: skip
    assert result.exit_code == 2 and "has no batches" in result.output


def test_one_batch_size_given_is_named_in_the_table_the_advice_and_the_report(
    tmp_path: Path,
) -> None:
    # The command tune prints to confirm its best trial has one --batch-sizes value.
    out = tmp_path / "one"
    result = _invoke(
        "compare", "--tasks", "quadratic", "--optimizers", "sgd", "--schedules", "constant()",
        "--lrs", "0.01,0.1", "--batch-sizes", "4", "--seeds", "1", "--workers", "0",
        "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "optimizer" in line)
    assert "batch" in header
    assert re.search(r"→ pick sgd \+ constant\(\) at lr [0-9.]+, batch 4", result.output)
    html = (out / "report.html").read_text()
    assert "batch 4" in html
    assert not (out / "batch_lr_quadratic.png").exists()  # one point draws no line
    (row,) = json.loads((out / "results.json").read_text())["summary"]["quadratic"]
    assert row["batch_given"] is True and row["batch_size"] == 4


def test_tune_searches_the_batch_size_and_its_command_confirms_it(tmp_path: Path) -> None:
    task_file = tmp_path / "tasks.py"
    task_file.write_text(
        textwrap.dedent(
            """
            import lrkit
            import numpy as np

            @lrkit.task(metric="loss", steps=30)
            def noisy(trial):
                rng = np.random.default_rng(trial.seed)
                x = 3.0
                for step in range(trial.steps):
                    sample = rng.normal(size=trial.batch_size).mean()
                    x -= trial.schedule(step) * 2.0 * (x - sample)
                    trial.log(step, loss=x * x)
                return x * x
            """
        )
    )
    out = tmp_path / "tune"
    result = _invoke(
        "tune", "--tasks", f"{task_file}:noisy", "--optimizers", "sgd", "--schedules",
        "constant()", "--lr-range", "0.01,0.3", "--trials", "6", "--search", "random",
        "--pruner", "none", "--batch-sizes", "2,128", "--workers", "0", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    sizes = {t["params"]["batch_size"] for t in data["trials"]}
    assert sizes <= {2, 128} and sizes
    best = data["best"]
    assert best["batch_size"] in (2, 128)
    assert f"--batch-sizes {best['batch_size']}" in best["command"]
    assert f"--batch-sizes {best['batch_size']}" in result.output
    # Every trial's line, the report's trials table and its best line name the batch.
    trial_lines = [line for line in result.output.splitlines() if line.startswith("[")]
    assert len(trial_lines) == 6, result.output
    assert all(re.search(r"lr=\S+ batch (2|128)\b", line) for line in trial_lines), trial_lines
    html = (out / "report.html").read_text()
    assert "<th>batch</th>" in html and "batch sizes 2, 128;" in html
    assert f"</code>, batch {best['batch_size']}</p>" in html
    with RunStore(out / "runs.sqlite") as store:  # each trial ran at the batch size it drew
        batches = {r.key: r.config["batch_size"] for r in store.results()}
    assert {batches[t["user_attrs"]["run_key"]] for t in data["trials"]} == sizes
    for t in data["trials"]:
        assert batches[t["user_attrs"]["run_key"]] == t["params"]["batch_size"]
    again = _invoke(
        "tune", "--tasks", f"{task_file}:noisy", "--optimizers", "sgd", "--schedules",
        "constant()", "--lr-range", "0.01,0.3", "--trials", "6", "--search", "random",
        "--pruner", "none", "--batch-sizes", "2,256", "--workers", "0", "--out", str(out),
    )  # fmt: skip
    assert again.exit_code == 2 and "differs in: batch_sizes" in again.output
    pbt = _invoke("tune", "--tasks", "quadratic", "--search", "pbt", "--batch-sizes", "8",
                  "--out", str(tmp_path / "pbt"))  # fmt: skip
    assert pbt.exit_code == 2 and "not searched by --search pbt" in pbt.output


def test_the_docs_section_runs_as_written(tmp_path: Path) -> None:
    """docs/compare.md, "Batch size and the lr": its doctest, and its command on a small budget."""
    import doctest
    import shlex

    page = Path(__file__).resolve().parents[1] / "docs" / "compare.md"
    failures, tried = doctest.testfile(
        str(page), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert tried >= 3 and failures == 0
    text = page.read_text(encoding="utf-8")
    section = text[text.index("## Batch size and the lr") :]
    block = section[section.index("```bash") + len("```bash") : section.index("```\n", 10)]
    args = shlex.split(block.replace("\\\n", " "))
    assert args[:2] == ["lrkit", "compare"]
    out = tmp_path / "report"
    result = _invoke(*args[1:], "--budget", "0.05", "--seeds", "1", "--workers", "0",
                     "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "batch_lr_digits.png").is_file()
    data = json.loads((out / "results.json").read_text())
    assert data["grid"]["batch_sizes"] == [16, 64, 256]
    assert len(data["runs"]) == 2 * 12 * 3
