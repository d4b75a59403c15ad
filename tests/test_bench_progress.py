"""Tests of lrkit.bench.progress: the rich bar keeps its counts whole in a narrow terminal."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from lrkit.bench.progress import RichProgress
from lrkit.bench.run import RunResult

LONG = "warmup(cosine(min_lr=1e-5), steps=30)"


def _result(k: int) -> RunResult:
    return RunResult(
        key=str(k),
        config={
            "task": "digits",
            "optimizer": "adamw",
            "schedule": LONG,
            "lr": 0.001,
            "seed": k,
            "budget": 1.0,
        },
        identity={},
        status="ok",
        metric="val_acc",
        mode="max",
        target=0.95,
        steps=300,
        loss=[1.0],
        eval_steps=[0],
        evals={"val_acc": [0.9]},
        final=0.9611 + k * 1e-4,
        best=0.97,
        steps_to_target=None,
        diverged_at=None,
        wall_time=0.5,
    )


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_rich_bar_keeps_count_and_times_whole_and_cuts_only_the_best_text(width: int) -> None:
    # Off a terminal, rich draws the bar once, when it stops: its last state.
    console = Console(width=width, record=True, file=io.StringIO(), force_terminal=False)
    bar = RichProgress(console=console)
    bar.start(240, 7, 2)
    for k in range(3):
        bar.update(_result(k))
    bar.finish()
    (line,) = console.export_text().splitlines()
    assert len(line) <= width
    found = re.search(r" 10/240 (\d:\d\d:\d\d) ETA (\d:\d\d:\d\d|-:--:--) (.*)$", line)
    assert found, line
    best = found.group(3)
    assert best.startswith("digits") or best == ""
    full = f"digits: best val_acc=0.9613 (adamw {LONG} lr=0.001)"
    assert best == full or (best.endswith("…") and full.startswith(best[:-1]))
    if width >= 80:
        assert "val_acc=0.96" in best


def test_rich_bar_shows_the_whole_best_text_when_there_is_room() -> None:
    console = Console(width=200, record=True, file=io.StringIO(), force_terminal=False)
    bar = RichProgress(console=console)
    bar.start(3, 0, 0)
    bar.update(_result(0))
    bar.finish()
    assert f"(adamw {LONG} lr=0.001)" in console.export_text()
