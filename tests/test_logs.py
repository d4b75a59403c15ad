"""Tests of lrkit.logs: TensorBoard event files written with the standard library only."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c as reference_crc32c

from lrkit.logs import TensorBoardWriter, crc32c


def _read(folder: Path) -> EventAccumulator:
    """TensorBoard's own reader (it checks every record's checksums)."""
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


@given(st.binary(max_size=300))
def test_crc32c_matches_tensorboards(data: bytes) -> None:
    assert crc32c(data) == reference_crc32c(data)


def test_crc32c_known_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


def test_tensorboard_reads_back_every_scalar(tmp_path: Path) -> None:
    with TensorBoardWriter(tmp_path, flush_every=7) as tb:
        for step in range(50):
            tb.add_scalars({"lr": 0.1 / (step + 1), "loss/train": 3.0 - step / 25}, step)
        tb.add_scalar("accuracy/validation", 0.97, 50, wall_time=1234.5)
        tb.add_scalars({"lr": None}, 51)  # nothing to write: no event
    acc = _read(tmp_path)
    assert sorted(acc.Tags()["scalars"]) == ["accuracy/validation", "loss/train", "lr"]
    lrs = acc.Scalars("lr")
    assert [e.step for e in lrs] == list(range(50))
    assert [e.value for e in lrs] == [
        struct.unpack("<f", struct.pack("<f", 0.1 / (s + 1)))[0] for s in range(50)
    ]
    (acc_event,) = acc.Scalars("accuracy/validation")
    assert (acc_event.step, acc_event.wall_time) == (50, 1234.5)
    assert acc_event.value == pytest.approx(0.97, rel=1e-7)


def test_non_finite_values_and_large_steps(tmp_path: Path) -> None:
    with TensorBoardWriter(tmp_path) as tb:
        tb.add_scalars({"loss": math.nan}, 0)
        tb.add_scalars({"loss": math.inf}, 2**40)
    values = _read(tmp_path).Scalars("loss")
    assert math.isnan(values[0].value)
    assert values[1].value == math.inf and values[1].step == 2**40


@given(
    st.lists(st.integers(0, 2**62), min_size=1, max_size=20, unique=True),
    st.data(),
)
def test_float32_values_round_trip(steps: list[int], data: st.DataObject) -> None:
    import tempfile

    # Increasing steps: TensorBoard's reader drops events after a step goes back
    # (it takes that for a restarted run).
    values = data.draw(
        st.lists(st.floats(width=32, allow_nan=False), min_size=len(steps), max_size=len(steps))
    )
    points = list(zip(sorted(steps), values, strict=True))

    with tempfile.TemporaryDirectory() as folder:
        with TensorBoardWriter(folder) as tb:
            for step, value in points:
                tb.add_scalar("x", value, step)
        events = _read(Path(folder)).Scalars("x")
    assert [(e.step, e.value) for e in events] == points


def test_bad_input_is_refused(tmp_path: Path) -> None:
    with TensorBoardWriter(tmp_path) as tb:
        with pytest.raises(ValueError, match="step"):
            tb.add_scalar("lr", 0.1, -1)
        with pytest.raises(ValueError, match="tag"):
            tb.add_scalar("", 0.1, 0)
    with pytest.raises(ValueError, match="flush_every"):
        TensorBoardWriter(tmp_path / "x", flush_every=0)


def test_close_is_idempotent_and_flushes(tmp_path: Path) -> None:
    tb = TensorBoardWriter(tmp_path, flush_every=1000)
    tb.add_scalar("lr", 0.5, 3)
    tb.close()
    tb.close()
    assert [e.step for e in _read(tmp_path).Scalars("lr")] == [3]
