"""Tests of lrkit.logs: TensorBoard event files written and read with the standard library only.

The reader is checked against TensorBoard's own ``EventAccumulator`` on files
written by lrkit, torch's ``SummaryWriter`` (old and new style) and tensorboardX,
and on TensorFlow-style tensor summaries made with TensorBoard's own protos.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c as reference_crc32c

from lrkit.logs import TensorBoardWriter, crc32c, read_scalars


def _read(folder: Path) -> EventAccumulator:
    """TensorBoard's own reader (it checks every record's checksums), keeping every value."""
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
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


def test_writers_in_one_folder_at_once_get_a_file_each(tmp_path: Path) -> None:
    writers = [TensorBoardWriter(tmp_path) for _ in range(3)]  # the same second, the same pid
    for i, tb in enumerate(writers):
        tb.add_scalar("x", float(i), i)
        tb.close()
    assert len({tb.path for tb in writers}) == 3
    assert sorted(v for _, _, v in read_scalars(tmp_path)) == [0.0, 1.0, 2.0]


def test_close_is_idempotent_and_flushes(tmp_path: Path) -> None:
    tb = TensorBoardWriter(tmp_path, flush_every=1000)
    tb.add_scalar("lr", 0.5, 3)
    tb.close()
    tb.close()
    assert [e.step for e in _read(tmp_path).Scalars("lr")] == [3]


# --------------------------------------------------------------------------
# read_scalars
# --------------------------------------------------------------------------


def _same(value: float) -> object:
    """A value comparable with ==, NaN included."""
    return "nan" if math.isnan(value) else value


def _by_tag(found: list[tuple[str, int, float]]) -> dict[str, list[tuple[int, object]]]:
    out: dict[str, list[tuple[int, object]]] = {}
    for tag, step, value in found:
        out.setdefault(tag, []).append((step, _same(value)))
    return out


def _reference(folder: Path) -> dict[str, list[tuple[int, object]]]:
    """TensorBoard's reading of a folder: simple values, and one-float tensors of "scalars"."""
    import numpy as np
    from tensorboard.util.tensor_util import make_ndarray

    acc = _read(folder)
    out = {
        tag: [(e.step, _same(e.value)) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
    }
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            continue
        out[tag] = [
            (e.step, _same(float(np.asarray(make_ndarray(e.tensor_proto)).item())))
            for e in acc.Tensors(tag)
        ]
    return out


def _event_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("events.out.tfevents.*"))


def test_reads_what_lrkit_writes_as_tensorboard_does(tmp_path: Path) -> None:
    with TensorBoardWriter(tmp_path, flush_every=5) as tb:
        for step in range(30):
            values = {"lr/group0": 0.1 / (step + 1), "loss": 3.0 - step / 10}
            if step % 5 == 0:
                values["update_ratio/group0"] = 1e-3 * (step + 1)
            if step == 7:
                values["loss"] = math.nan
            if step == 8:
                values["loss"] = -math.inf
            tb.add_scalars(values, step)
    found = list(read_scalars(tmp_path))
    assert _by_tag(found) == _reference(tmp_path)
    assert found[:3] == [
        ("lr/group0", 0, struct.unpack("<f", struct.pack("<f", 0.1))[0]),
        ("loss", 0, 3.0),
        ("update_ratio/group0", 0, struct.unpack("<f", struct.pack("<f", 1e-3))[0]),
    ]
    assert [s for tag, s, _ in found if tag == "update_ratio/group0"] == [0, 5, 10, 15, 20, 25]
    # the file alone reads the same as its folder
    assert _by_tag(list(read_scalars(_event_files(tmp_path)[0]))) == _by_tag(found)


def test_reads_torch_summary_writer_old_and_new_style(tmp_path: Path) -> None:
    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for step in range(12):
        writer.add_scalar("old", 0.1 * step, step)
        writer.add_scalar("new", 0.1 * step, step, new_style=True)
        writer.add_scalar("double", 0.1 * step, step, new_style=True, double_precision=True)
    writer.add_scalar("old", math.nan, 12)
    writer.add_scalar("new", math.inf, 12, new_style=True)
    writer.add_histogram("weights", np.array([1.0, 2.0, 3.0]), 0)
    writer.add_text("note", "a text summary is no scalar", 0)
    writer.close()
    found = _by_tag(list(read_scalars(tmp_path)))
    assert found == _reference(tmp_path)
    assert sorted(found) == ["double", "new", "old"]
    assert found["double"][3] == (3, 0.1 * 3)  # float64 kept
    assert found["new"][3] == (3, struct.unpack("<f", struct.pack("<f", 0.1 * 3))[0])
    assert found["old"][-1] == (12, "nan") and found["new"][-1] == (12, math.inf)


def test_reads_tensorboardx(tmp_path: Path) -> None:
    import numpy as np
    import tensorboardX

    writer = tensorboardX.SummaryWriter(str(tmp_path))
    for step in range(10):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    writer.add_scalars("pair", {"a": 1.5, "b": 2.5}, 3)  # one subfolder per key
    writer.add_histogram("w", np.arange(5.0), 0)
    writer.close()
    assert _by_tag(list(read_scalars(_event_files(tmp_path)[0]))) == _reference(tmp_path)
    for key, value in (("a", 1.5), ("b", 2.5)):
        (sub,) = (tmp_path / "pair" / key).iterdir()
        assert list(read_scalars(sub)) == [("pair", 3, value)]
        assert _reference(sub.parent) == {"pair": [(3, value)]}
    # the whole folder: every file, the subfolders' too
    whole = list(read_scalars(tmp_path))
    assert [t for t in whole if t[0] == "pair"] == [("pair", 3, 1.5), ("pair", 3, 2.5)]
    assert len(whole) == 12


def test_reads_tensorflow_style_tensor_summaries(tmp_path: Path) -> None:
    """tf.summary / Keras: tensor_content, metadata on a tag's first value only, other plugins."""
    import numpy as np
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    def metadata(plugin: str) -> summary_pb2.SummaryMetadata:
        return summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin)
        )

    def value(tag: str, tensor: tensor_pb2.TensorProto, plugin: str | None) -> object:
        v = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
        if plugin:
            v.metadata.CopyFrom(metadata(plugin))
        return v

    one = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)])
    writer = EventFileWriter(str(tmp_path))
    for step in range(6):
        first = step == 0
        values = [
            # tf.summary.scalar: float32 in tensor_content, the plugin named once
            value(
                "epoch_loss",
                tensor_pb2.TensorProto(
                    dtype=1, tensor_content=np.float32(2.0 - step / 7).tobytes()
                ),
                "scalars" if first else None,
            ),
            value(
                "epoch_lr",
                tensor_pb2.TensorProto(
                    dtype=2, tensor_content=np.float64(1e-3 / 3**step).tobytes()
                ),
                "scalars" if first else None,
            ),
            value(
                "half",
                tensor_pb2.TensorProto(
                    dtype=19, half_val=[int(np.float16(0.5 + step).view(np.uint16))]
                ),
                "scalars",
            ),
            value(
                "shaped",
                tensor_pb2.TensorProto(dtype=1, tensor_shape=one, float_val=[float(step)]),
                "scalars",
            ),
            # other plugins' tensors: not scalars, even of one float
            value(
                "histogram",
                tensor_pb2.TensorProto(dtype=2, double_val=[1.0]),
                "histograms" if first else None,
            ),
            value("text", tensor_pb2.TensorProto(dtype=7, string_val=[b"hi"]), "text"),
        ]
        writer.add_event(
            event_pb2.Event(
                step=step, wall_time=1.0 + step, summary=summary_pb2.Summary(value=values)
            )
        )
    writer.close()
    found = _by_tag(list(read_scalars(tmp_path)))
    assert sorted(found) == ["epoch_loss", "epoch_lr", "half", "shaped"]
    assert found == {k: v for k, v in _reference(tmp_path).items() if k in found}
    assert found["epoch_lr"][5] == (5, 1e-3 / 3**5)
    assert found["half"][2] == (2, 2.5)


def _lrkit_file(folder: Path, steps: int) -> Path:
    with TensorBoardWriter(folder) as tb:
        for step in range(steps):
            tb.add_scalars({"loss": float(step), "lr": 0.5}, step)
    (path,) = _event_files(folder)
    return path


def test_a_record_cut_short_at_the_end_is_skipped(tmp_path: Path) -> None:
    path = _lrkit_file(tmp_path, 4)
    data = path.read_bytes()
    whole = list(read_scalars(path))
    offsets = []
    pos = 0
    while pos < len(data):
        offsets.append(pos)
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        pos += 16 + length
    assert pos == len(data) and len(offsets) == 5  # file_version + 4 steps
    last = offsets[-1]
    for cut in range(last, len(data)):  # every way a killed writer could leave it
        path.write_bytes(data[:cut])
        assert list(read_scalars(path)) == whole[:-2]  # step 3's two values lost, no error
    path.write_bytes(data[: offsets[-2] + 5])
    assert list(read_scalars(tmp_path)) == whole[:-4]


def test_a_corrupt_record_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = _lrkit_file(tmp_path, 5)
    data = bytearray(path.read_bytes())
    payload_byte = len(data) // 2
    damaged = data.copy()
    damaged[payload_byte] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=rf"{path.name}: corrupt record at byte \d+"):
        list(read_scalars(tmp_path))
    damaged = data.copy()
    damaged[0] ^= 0x80  # the first record's length
    path.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"at byte 0: its length's checksum"):
        list(read_scalars(path))
    not_events = tmp_path / "notes.tfevents.txt"
    not_events.write_text("plain text, not TFRecords at all\n")
    with pytest.raises(ValueError, match=r"notes\.tfevents\.txt"):
        list(read_scalars(not_events))


def test_a_record_that_is_not_an_event_is_an_error(tmp_path: Path) -> None:
    from lrkit.logs import _record

    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(_record(b"\x2a\x05ab"))  # field 5 (summary), 5 bytes long, 2 given
    with pytest.raises(ValueError, match="not a TensorBoard event"):
        list(read_scalars(path))


def test_folders_are_read_recursively_oldest_file_first(tmp_path: Path) -> None:
    # Event files are named by the time they were started: older first, wherever they are.
    for when, folder, value in ((200, "b", 2.0), (100, "a/deep", 1.0), (300, ".", 3.0)):
        with TensorBoardWriter(tmp_path / "new") as tb:
            tb.add_scalar("loss", value, 0)
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        tb.path.rename(tmp_path / folder / f"events.out.tfevents.{when}.host.1.lrkit")
    (tmp_path / "new").rmdir()
    (tmp_path / "b" / "notes.txt").write_text("not an event file")
    assert list(read_scalars(tmp_path)) == [("loss", 0, 1.0), ("loss", 0, 2.0), ("loss", 0, 3.0)]
    assert list(read_scalars(tmp_path / "b")) == [("loss", 0, 2.0)]


def test_missing_path_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        read_scalars(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert list(read_scalars(tmp_path / "empty")) == []


@given(st.lists(st.tuples(st.integers(0, 2**62), st.floats(width=32)), min_size=1, max_size=15))
def test_read_scalars_round_trips_lrkit_files(points: list[tuple[int, float]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        with TensorBoardWriter(folder) as tb:
            for step, value in points:
                tb.add_scalar("x", value, step)
        found = list(read_scalars(folder))
    assert [(t, s, _same(v)) for t, s, v in found] == [("x", s, _same(v)) for s, v in points]


def test_of_two_writers_in_one_second_the_later_wins(tmp_path: Path) -> None:
    # the second is named {pid}.1.lrkit, which sorts before {pid}.lrkit by name
    from lrkit.monitor import read_record

    for value in (1.0, 2.0):
        with TensorBoardWriter(tmp_path) as tb:
            for step in range(3):
                tb.add_scalar("loss", value, step)
    names = sorted(p.name for p in tmp_path.iterdir())
    if len({n.split(".")[3] for n in names}) == 1:  # the same second, as almost always
        assert any(n.endswith(".1.lrkit") for n in names)
    assert list(read_record(tmp_path).series("loss")[1]) == [2.0, 2.0, 2.0]
