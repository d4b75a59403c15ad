"""Tests of lrkit.bench.advice: the winner, ties within noise, the edge of the grid."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrkit.bench.advice import (
    MAX_SPACING,
    MIN_SEEDS,
    MIN_SPACING,
    advise,
    advise_all,
    next_lrs,
    within_noise,
)
from lrkit.bench.grid import SettingSummary

LRS = [1e-3, 1e-2, 1e-1, 1.0]


def row(
    optimizer: str,
    mean: float | None,
    std: float | None = 0.0,
    *,
    lr: float = 1e-2,
    schedule: str = "cosine()",
    seeds: int = 2,
    finished: int | None = None,
    lrs: list[float] | None = None,
    mode: str = "min",
) -> SettingSummary:
    done = (seeds if mean is not None else 0) if finished is None else finished
    return SettingSummary(
        task="quadratic",
        optimizer=optimizer,
        schedule=schedule,
        lr=lr,
        metric="loss",
        mode=mode,
        mean=mean,
        std=std,
        finished=done,
        seeds=seeds,
        steps_to_target=None,
        diverged=0,
        runs=seeds * len(lrs or LRS),
        errors=0,
        lrs=list(LRS if lrs is None else lrs),
    )


# -- hand-made cases ---------------------------------------------------------------


def test_clear_winner_inside_the_grid() -> None:
    advice = advise("quadratic", [row("adam", 0.10, 0.01), row("sgd", 0.20, 0.02)])
    assert advice.verdict == "pick adam + cosine() at lr 0.01 (clear winner)"
    assert advice.confidence == "clear" and advice.ties == () and advice.edge is None
    assert advice.notes == ()


def test_settings_within_noise_are_tied_and_named() -> None:
    rows = [
        row("sgd", 0.1811, 0.037, lr=1.0, schedule="one_cycle()"),
        row("sgd", 0.1863, 0.048, lr=1.0, schedule="warmup(cosine(), steps=10)"),
        row("sgd", 0.2004, 0.075, lr=1.0),
        row("adam", 0.5406, 0.0005, lr=1.0),
    ]
    advice = advise("quadratic", rows)
    assert advice.confidence == "tied"
    assert [t.schedule for t in advice.ties] == ["warmup(cosine(), steps=10)", "cosine()"]
    assert advice.verdict == (
        "pick sgd + one_cycle() at lr 1 (tied with 2 others within noise: "
        "sgd + warmup(cosine(), steps=10) at lr 1, sgd + cosine() at lr 1)"
    )
    assert advice.headline == "pick sgd + one_cycle() at lr 1 (tied with 2 others within noise)"


def test_one_seed_is_uncertain_and_never_tied() -> None:
    rows = [row("adam", 0.10, 0.0, seeds=1), row("sgd", 0.10, 0.0, seeds=1)]
    advice = advise("quadratic", rows)
    assert advice.verdict == "pick adam + cosine() at lr 0.01 (uncertain: 1 seed)"
    assert advice.confidence == "uncertain" and advice.ties == ()
    assert any("no setting can be called tied" in note for note in advice.notes)


def test_a_winner_whose_seeds_partly_failed_is_uncertain() -> None:
    rows = [row("adam", 0.1, 0.01, seeds=3, finished=2), row("sgd", 0.5, 0.01, seeds=3, finished=1)]
    advice = advise("quadratic", rows)
    assert advice.confidence == "uncertain"
    assert advice.verdict.endswith("(uncertain: 1 of 3 seeds did not finish)")


@pytest.mark.parametrize(
    ("lr", "edge", "suggested", "words"),
    [
        (1.0, "highest", (1.0, 10.0, 100.0), "try higher lrs, e.g. --lrs 1,10,100"),
        (1e-3, "lowest", (1e-5, 1e-4, 1e-3), "try lower lrs, e.g. --lrs 1e-05,0.0001,0.001"),
    ],
)
def test_best_lr_at_the_edge_of_the_grid_says_where_to_look(
    lr: float, edge: str, suggested: tuple[float, ...], words: str
) -> None:
    advice = advise("quadratic", [row("sgd", 0.1, 0.01, lr=lr), row("adam", 0.5, 0.01)])
    assert advice.edge == edge and advice.next_lrs == suggested
    (note,) = advice.notes
    assert f"is the {edge} lr tried (0.001 to 1), the edge of the grid" in note
    assert note.endswith(words)
    assert advice.to_dict()["next_lrs"] == list(suggested)


def test_lr_free_optimizers_talk_about_multipliers() -> None:
    rows = [row("prodigy", 0.1, 0.01, lr=2.0, lrs=[0.5, 1.0, 2.0], schedule="constant()")]
    advice = advise("quadratic", rows)
    assert advice.verdict == "pick prodigy + constant() at multiplier 2 (the only setting run)"
    assert advice.notes[0].endswith("try higher multipliers, e.g. --multipliers 2,4,8")


def test_a_single_lr_is_said_and_gets_no_range() -> None:
    advice = advise("quadratic", [row("sgd", 0.1, 0.01, lrs=[1e-2]), row("adam", 0.5, 0.01)])
    assert advice.edge is None and advice.next_lrs == ()
    assert advice.notes == (
        "only one lr was run for this setting: no telling whether another is better",
    )


def test_nothing_finished() -> None:
    advice = advise("quadratic", [row("sgd", None, None), row("adam", None, None)])
    assert advice.confidence == "none" and advice.winner is None
    assert advice.verdict.startswith("nothing to pick")
    assert advice.to_dict()["winner"] is None


def test_advise_all_and_json() -> None:
    import json

    advice = advise_all({"a": [row("sgd", 0.1, 0.01)], "b": [row("adam", 0.2, 0.0, seeds=1)]})
    assert list(advice) == ["a", "b"]
    doc = json.loads(json.dumps({k: v.to_dict() for k, v in advice.items()}))
    assert doc["a"]["winner"]["optimizer"] == "sgd" and doc["b"]["confidence"] == "uncertain"


def test_imports_neither_torch_nor_matplotlib() -> None:
    code = (
        "import sys, lrkit.bench.advice\n"
        "bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# -- laws ---------------------------------------------------------------------------

means = st.floats(-1e6, 1e6, allow_nan=False)
stds = st.floats(0.0, 1e3, allow_nan=False)


@st.composite
def task_rows(draw: st.DrawFn) -> list[SettingSummary]:
    """1..6 settings of one task, in summarize's order (finished first, best first)."""
    mode = draw(st.sampled_from(["min", "max"]))
    seeds = draw(st.integers(1, 4))
    lrs = sorted(draw(st.sets(st.sampled_from([1e-4, 1e-3, 1e-2, 0.1, 1.0, 3.0]), min_size=1)))
    rows = []
    for k in range(draw(st.integers(1, 6))):
        finished = draw(st.integers(0, seeds))
        mean = draw(means) if finished else None
        rows.append(
            row(
                f"opt{k}",
                mean,
                draw(stds) if finished else None,
                lr=draw(st.sampled_from(lrs)),
                seeds=seeds,
                finished=finished,
                lrs=lrs,
                mode=mode,
            )
        )
    rows.sort(
        key=lambda s: (
            s.mean is None,
            s.finished < s.seeds,
            0.0 if s.mean is None else (s.mean if mode == "min" else -s.mean),
        )
    )
    return rows


@given(task_rows())
def test_law_the_winner_is_the_first_finished_row_and_the_verdict_names_it(
    rows: list[SettingSummary],
) -> None:
    advice = advise("t", rows)
    finished = [r for r in rows if r.mean is not None]
    if not finished:
        assert advice.winner is None and advice.confidence == "none"
        return
    assert advice.winner is not None and advice.winner.optimizer == finished[0].optimizer
    assert advice.verdict.startswith(f"pick {advice.winner.label} (")
    assert "\n" not in advice.verdict


@given(task_rows())
def test_law_ties_are_exactly_the_rows_within_noise(rows: list[SettingSummary]) -> None:
    advice = advise("t", rows)
    finished = [r for r in rows if r.mean is not None]
    tied = {t.optimizer for t in advice.ties}
    for other in finished[1:]:
        assert (other.optimizer in tied) == within_noise(finished[0], other)
        assert within_noise(finished[0], other) == within_noise(other, finished[0])
    assert (advice.confidence == "tied") == (bool(tied) and advice.confidence != "uncertain")


@given(task_rows())
def test_law_one_seed_is_never_a_tie_and_always_uncertain(rows: list[SettingSummary]) -> None:
    advice = advise("t", rows)
    if advice.winner is not None and rows[0].finished < MIN_SEEDS:
        assert advice.ties == () and advice.confidence == "uncertain"
        assert "uncertain" in advice.verdict


@given(task_rows(), st.floats(1e-3, 1e3))
def test_law_ties_do_not_depend_on_the_metrics_scale(
    rows: list[SettingSummary], scale: float
) -> None:
    from dataclasses import replace

    scaled = [
        replace(
            r,
            mean=None if r.mean is None else r.mean * scale,
            std=None if r.std is None else r.std * scale,
        )
        for r in rows
    ]
    # Exact ties (a gap equal to the std) may round either way once scaled.
    finished = [r for r in rows if r.mean is not None]
    if any(
        r.mean is not None
        and finished[0].mean is not None
        and abs(abs(r.mean - finished[0].mean) - max(r.std or 0, finished[0].std or 0))
        < 1e-9 * (1 + abs(r.mean))
        for r in finished[1:]
    ):
        return
    before = [t.optimizer for t in advise("t", rows).ties]
    assert [t.optimizer for t in advise("t", scaled).ties] == before


@given(task_rows())
def test_law_an_edge_is_flagged_exactly_at_the_ends_of_two_or_more_lrs(
    rows: list[SettingSummary],
) -> None:
    advice = advise("t", rows)
    if advice.winner is None:
        return
    lrs, lr = rows[0].lrs, advice.winner.lr
    if len(lrs) < 2 or lr not in (min(lrs), max(lrs)):
        assert advice.edge is None and advice.next_lrs == ()
        return
    assert advice.edge == ("highest" if lr == max(lrs) else "lowest")
    assert any("the edge of the grid" in note for note in advice.notes)
    new = advice.next_lrs
    assert list(new) == sorted(new) and len(new) == 3
    if advice.edge == "highest":
        assert new[0] == pytest.approx(lr, rel=1e-2) and new[-1] > max(lrs)
    else:
        assert new[-1] == pytest.approx(lr, rel=1e-2) and new[0] < min(lrs)


@given(
    st.lists(st.floats(1e-8, 1e3), min_size=2, max_size=12, unique=True),
    st.sampled_from(["lowest", "highest"]),
)
def test_law_next_lrs_step_beyond_the_edge_at_most_a_decade_apart(
    lrs: list[float], edge: str
) -> None:
    new = next_lrs(lrs, edge)
    assert len(new) == 3 and all(x > 0 for x in new)
    for a, b in itertools.pairwise(new):
        assert MIN_SPACING * 0.99 <= b / a <= MAX_SPACING * 1.01
    if edge == "highest":
        assert new[-1] > max(lrs)
    else:
        assert new[0] < min(lrs)


def test_next_lrs_rejects_a_single_lr_and_a_bad_edge() -> None:
    with pytest.raises(ValueError, match="at least two distinct lrs"):
        next_lrs([0.1, 0.1], "highest")
    with pytest.raises(ValueError, match="edge must be 'lowest' or 'highest', got 'top'"):
        next_lrs([0.1, 1.0], "top")


def test_one_finished_seed_asks_for_more_seeds_than_were_run() -> None:
    one = advise("quadratic", [row("adam", 0.1, None, seeds=1)])
    assert "rerun with --seeds 2 or more" in " ".join(one.notes)
    two = advise("quadratic", [row("adam", 0.1, None, seeds=2, finished=1)])
    said = " ".join(two.notes)
    assert "rerun with more --seeds than 2" in said and "--seeds 2 or more" not in said
