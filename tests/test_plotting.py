"""Plots and text summaries of schedules: ``plot_schedules``, ``Schedule.plot``, sparklines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest

import lrkit
from lrkit.plotting import (
    MAX_POINTS,
    default_steps,
    key_steps,
    plot_schedules,
    sparkline,
)

matplotlib.use("Agg")  # tests never need a display

import matplotlib.pyplot as plt

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

WARM_COS = lrkit.warmup(lrkit.cosine(lr=0.1, steps=900), steps=100)
STEPS = lrkit.multistep(0.1, milestones=[300, 600])
FOREVER = lrkit.constant(0.05)


def legend_texts(ax) -> list[str]:
    return [t.get_text().replace("\n", " ") for t in ax.get_legend().get_texts()]


# -- plot_schedules ------------------------------------------------------------


def test_saves_a_labelled_png_and_leaves_no_figure_open(tmp_path: Path) -> None:
    path = tmp_path / "lr.png"
    before = plt.get_fignums()
    ax = plot_schedules([WARM_COS, STEPS], path=str(path))
    assert plt.get_fignums() == before
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000
    assert ax.get_xlabel() == "step"
    assert ax.get_ylabel() == "learning rate"
    assert ax.get_title()
    assert legend_texts(ax) == [str(WARM_COS), str(STEPS)]


def test_curves_are_the_schedule_values() -> None:
    ax = plot_schedules([WARM_COS, STEPS], steps=1200)
    try:
        lines = ax.get_lines()
        assert len(lines) == 2
        for line, s in zip(lines, (WARM_COS, STEPS), strict=True):
            np.testing.assert_array_equal(line.get_xdata(), np.arange(1200))
            np.testing.assert_array_equal(line.get_ydata(), s.values(1200))
    finally:
        plt.close(ax.figure)


def test_labels_replace_specs_and_none_keeps_the_spec() -> None:
    ax = plot_schedules([WARM_COS, STEPS], labels=["baseline", None], steps=10)
    try:
        assert legend_texts(ax) == ["baseline", str(STEPS)]
    finally:
        plt.close(ax.figure)


def test_a_single_schedule_is_titled_with_its_spec() -> None:
    ax = plot_schedules(STEPS, steps=10)
    try:
        assert ax.get_title().replace("\n", " ") == str(STEPS)
    finally:
        plt.close(ax.figure)


def test_spec_strings_are_parsed() -> None:
    spec = "warmup(cosine(lr=0.1, steps=900), steps=100)"
    ax = plot_schedules([spec], steps=50)
    try:
        np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), WARM_COS.values(50))
    finally:
        plt.close(ax.figure)


def test_default_steps_is_the_longest_length_plus_ten_percent() -> None:
    long_one = lrkit.cosine(lr=0.1, steps=10_000)
    assert default_steps([WARM_COS, long_one, FOREVER]) == 11_000
    assert default_steps([lrkit.linear(0.1, 0.0, steps=7)]) == 7 + 1  # the 10 % rounds up
    assert default_steps([FOREVER]) == 1000
    ax = plot_schedules([WARM_COS, FOREVER])
    try:
        assert ax.get_lines()[0].get_xdata()[-1] == 1099
    finally:
        plt.close(ax.figure)


def test_draws_into_a_given_axes(tmp_path: Path) -> None:
    fig, given = plt.subplots()
    try:
        ax = plot_schedules([WARM_COS], ax=given, path=str(tmp_path / "a.svg"))
        assert ax is given
        assert len(given.get_lines()) == 1
        assert plt.fignum_exists(fig.number)  # the caller's figure stays open
        assert (tmp_path / "a.svg").read_text().lstrip().startswith("<?xml")
    finally:
        plt.close(fig)


def test_log_axis_leaves_out_zeros() -> None:
    ax = plot_schedules([WARM_COS], steps=1100, log=True)
    try:
        assert ax.get_yscale() == "log"
        y = ax.get_lines()[0].get_ydata()
        assert np.isnan(y[0]) and np.isnan(y[1000])  # warmup starts at 0, cosine ends at 0
        assert np.all(y[1:1000] > 0)
    finally:
        plt.close(ax.figure)


def test_long_runs_are_subsampled_keeping_both_ends() -> None:
    ax = plot_schedules([lrkit.cosine(lr=0.1, steps=10**7)], steps=10**7)
    try:
        x = ax.get_lines()[0].get_xdata()
        assert len(x) <= MAX_POINTS
        assert x[0] == 0 and x[-1] == 10**7 - 1
    finally:
        plt.close(ax.figure)


def test_schedule_plot_method(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "one.png"  # the folder is created
    ax = WARM_COS.plot(path=str(path), label="mine", log=False)
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert legend_texts(ax) == ["mine"]
    ax = WARM_COS.plot(steps=20, path=str(tmp_path / "two.png"))
    assert legend_texts(ax) == [str(WARM_COS)]
    assert len(ax.get_lines()[0].get_xdata()) == 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedules": []}, "at least one schedule"),
        ({"schedules": [WARM_COS], "labels": ["a", "b"]}, "one entry per schedule"),
        ({"schedules": [WARM_COS], "steps": 0}, "steps must be an integer >= 1, got 0"),
        ({"schedules": [WARM_COS], "steps": 2.5}, "steps must be an integer >= 1, got 2.5"),
        ({"schedules": [42]}, "spec string, got int: 42"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        plot_schedules(**kwargs)


def test_bad_spec_string_is_the_parser_error() -> None:
    with pytest.raises(ValueError, match="cosin"):
        plot_schedules(["cosin(lr=0.1, steps=10)"])


def test_matplotlib_is_imported_only_when_plotting_and_pyplot_not_for_files(
    tmp_path: Path,
) -> None:
    code = (
        "import sys, lrkit, lrkit.plotting\n"
        "assert 'matplotlib' not in sys.modules\n"
        f"lrkit.constant(0.1).plot(path={str(tmp_path / 'x.png')!r})\n"
        "print('matplotlib' in sys.modules, 'matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.split() == ["True", "False"]


# -- text summaries --------------------------------------------------------------


def test_sparkline_spans_the_bars_and_respects_width() -> None:
    line = sparkline(WARM_COS.values(1100), width=40)
    assert len(line) == 40
    assert set(line) <= set("▁▂▃▄▅▆▇█")
    assert line[0] in "▁▂" and "█" in line[:6] and line[-1] == "▁"
    assert sparkline(np.arange(3.0), width=60) == "▁▅█"  # never wider than the data
    assert sparkline(np.full(10, 0.1)) == "▄" * 10
    assert sparkline(np.array([])) == ""


def test_sparkline_log_scale_spreads_a_decay() -> None:
    values = lrkit.exponential(1.0, gamma=0.5).values(40)
    assert sparkline(values, width=8).count("▁") >= 6  # linear: all but the start is ~0
    assert len(set(sparkline(values, width=8, log=True))) >= 6


def test_sparkline_rejects_a_bad_width() -> None:
    with pytest.raises(ValueError, match="width must be an integer >= 1, got 0"):
        sparkline(np.ones(3), width=0)


@pytest.mark.parametrize(
    ("schedule", "n", "pinned"),
    [
        (WARM_COS, 1100, {0, 100, 1000, 1099}),  # warmup end, schedule end, last step
        (STEPS, 1000, {0, 300, 600, 999}),  # milestones
        (lrkit.wsd(0.1, steps=1000, warmup_steps=50), 1000, {0, 50, 800, 999}),
        (lrkit.one_cycle(max_lr=0.1, steps=1000), 1000, {0, 299, 999}),  # the peak
        (lrkit.inverse_sqrt(0.1, warmup_steps=400), 1000, {0, 400, 999}),
        (lrkit.linear(0.0, 0.1, steps=100) | lrkit.cosine(lr=0.1, steps=900), 1000, {100}),
        (0.5 * lrkit.warmup(FOREVER, steps=10), 1000, {0, 10, 999}),
    ],
)
def test_key_steps_pin_the_boundaries(schedule, n: int, pinned: set[int]) -> None:
    steps = key_steps(schedule, n)
    assert pinned <= set(steps)
    assert steps == sorted(set(steps))
    assert all(0 <= t < n for t in steps)
    assert len(steps) <= 10


def test_key_steps_small_and_periodic() -> None:
    assert key_steps(FOREVER, 1) == [0]
    assert key_steps(FOREVER, 2) == [0, 1]
    cyc = key_steps(lrkit.cyclic(0.01, 0.1, step_size_up=10), 1000)
    assert {0, 10, 20, 999} <= set(cyc)
    assert len(cyc) <= 10
