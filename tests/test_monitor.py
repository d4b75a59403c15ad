"""lrkit.monitor: the record, the recorder's sinks and live warning, and read_record."""

from __future__ import annotations

import csv
import logging
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrkit.monitor import LIVE_MIN, Record, Recorder, group_tag, read_record


class ListSink:
    """A sink keeping what it was given (the protocol is two methods)."""

    def __init__(self):
        self.rows = []
        self.summary = None
        self.closed = 0

    def write(self, step, scalars):
        self.rows.append((step, dict(scalars)))

    def close(self, summary=None):
        self.closed += 1
        self.summary = summary


class BrokenSink(ListSink):
    def close(self, summary=None):
        super().close(summary)
        raise OSError("disk full")


scalars = st.dictionaries(
    st.sampled_from(["loss", "lr/group0", "lr/group1", "update_ratio/group0", "grad_norm"]),
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), scalars), max_size=40))
def test_record_keeps_every_value_in_order(rows):
    record = Record.from_rows(rows)
    for tag in ["loss", "lr/group0", "lr/group1", "update_ratio/group0", "grad_norm"]:
        want = [
            (s, v) for s, values in rows for t, v in values.items() if t == tag and v is not None
        ]
        steps, values = record.series(tag)
        assert steps.tolist() == [s for s, _ in want]
        assert np.array_equal(values, np.array([v for _, v in want], dtype=float), equal_nan=True)
    assert record.last_step == max((s for s, _ in rows), default=-1)
    # rows() gives each step once, in order, with the last value given for a tag at that step
    back = list(record.rows())
    assert [s for s, _ in back] == sorted(
        {s for s, v in rows if any(x is not None for x in v.values())}
    )


def test_groups_are_ordered_by_index_not_text():
    record = Record()
    record.add(0, {group_tag("lr", i): 0.1 for i in (10, 2, 0, 1)})
    assert record.groups("lr") == ["lr/group0", "lr/group1", "lr/group2", "lr/group10"]
    assert record.groups("momentum") == []


@pytest.mark.parametrize("step", [-1, 1.5, True, "3"])
def test_record_rejects_bad_steps(step):
    with pytest.raises(ValueError, match="step must be an integer >= 0"):
        Record().add(step, {"loss": 1.0})


def test_recorder_writes_every_step_to_every_sink_and_closes_once():
    a, b = ListSink(), ListSink()
    rec = Recorder([a, b], live=False)
    rec.summary["optimizer_state_copies"] = 2.0
    for t in range(5):
        rec.add(t, {"loss": 1.0 / (t + 1), "lr/group0": 0.1, "grad_norm": None})
    assert a.rows == b.rows == [(t, {"loss": 1.0 / (t + 1), "lr/group0": 0.1}) for t in range(5)]
    found = rec.close()
    assert rec.close() is found and a.closed == b.closed == 1
    assert a.summary["verdict"] == found.verdict == "ok"
    assert a.summary["optimizer_state_copies"] == 2.0
    assert "5 losses recorded" in a.summary["evidence"]


def test_a_failing_sink_does_not_keep_the_others_open():
    good, broken = ListSink(), BrokenSink()
    rec = Recorder([broken, good], live=False)
    rec.add(0, {"loss": 1.0})
    with pytest.raises(RuntimeError, match="BrokenSink: disk full"):
        rec.close()
    assert good.closed == 1


def test_live_warning_is_logged_once_and_handed_on(caplog):
    caplog.set_level(logging.WARNING, logger="lrkit.monitor")
    handed = []
    rec = Recorder(on_bad=handed.append)
    for t in range(100):
        rec.add(t, {"loss": 1.0 if t < 60 else math.nan})
    assert len(handed) == 1 and handed[0].verdict == "too_high" and handed[0].step == 60
    messages = [r.getMessage() for r in caplog.records if r.name == "lrkit.monitor"]
    assert len(messages) == 1 and "too high at step 60" in messages[0]


def test_live_checks_are_spaced_by_growth():
    """A long healthy run is checked about every 2 % of its length, not every step."""
    rec = Recorder()
    checks = 0
    original = rec._check

    def counting():
        nonlocal checks
        checks += 1
        original()

    rec._check = counting
    for t in range(20_000):
        rec.add(t, {"loss": 1.0 / math.sqrt(t + 1)})
    assert rec.first_bad is None
    assert checks < 20_000 / LIVE_MIN
    assert checks < 300  # about 1 / 0.02 checks per doubling after the first LIVE_MIN steps


def test_every_and_arguments_are_checked():
    assert [t for t in range(25) if Recorder(every=10).due(t)] == [0, 10, 20]
    with pytest.raises(ValueError, match="every must be an integer >= 1, got 0"):
        Recorder(every=0)
    with pytest.raises(TypeError, match="is not a sink"):
        Recorder(sinks=[object()])


def test_read_record_reads_a_wide_csv(tmp_path):
    path = tmp_path / "run.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "lr/group0", "loss", "update_ratio/group0"])
        w.writerow([0, 0.1, 2.0, 0.001])
        w.writerow([1, 0.1, "nan", ""])
    record = read_record(path)
    assert record.series("update_ratio/group0")[0].tolist() == [0]
    assert math.isnan(record.series("loss")[1][1])


def test_read_record_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_record(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no 'step' column"):
        read_record(bad)
    worse = tmp_path / "worse.csv"
    worse.write_text("step,loss\n0,abc\n")
    with pytest.raises(ValueError, match=r"worse\.csv, line 2"):
        read_record(worse)


def test_read_record_refuses_a_folder_of_several_runs(tmp_path):
    from lrkit.logs import TensorBoardWriter

    for run in ("good", "bad"):
        with TensorBoardWriter(tmp_path / "tb" / run) as tb:
            tb.add_scalars({"loss": 1.0}, step=0)
    with pytest.raises(ValueError, match=r"holds 2 runs .*bad, good.*give one run's folder"):
        read_record(tmp_path / "tb")
    assert read_record(tmp_path / "tb" / "good").tags == ["loss"]
