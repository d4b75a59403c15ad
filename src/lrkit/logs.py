"""Training logs without extra dependencies: TensorBoard event files and CSV.

:class:`TensorBoardWriter` writes scalars in TensorBoard's event-file format
with the standard library only (no ``tensorboard``, ``tensorflow`` or
``protobuf`` needed to *write*; TensorBoard itself reads the files). The
format is a sequence of TFRecords, each ``uint64 length, uint32
masked-crc32c(length), payload, uint32 masked-crc32c(payload)``, whose
payloads are ``Event`` protocol-buffer messages; the few fields a scalar
needs are encoded here by hand:

- ``Event``: ``wall_time`` (1, double), ``step`` (2, int64),
  ``file_version`` (3, string; the first record, ``"brain.Event:2"``),
  ``summary`` (5, message);
- ``Summary``: ``value`` (1, repeated message);
- ``Summary.Value``: ``tag`` (1, string), ``simple_value`` (2, float32).

Several scalars of one step share one event, so a run of ``n`` steps is
``n`` records, not one per tag.

:func:`read_scalars` reads the scalars back, again with the standard library
only, from the files of any writer: lrkit's, ``torch.utils.tensorboard``
(old and ``new_style``), tensorboardX, ``tf.summary`` and Keras'
``TensorBoard`` callback. Besides ``simple_value`` it reads a
``Summary.Value.tensor`` (8, ``TensorProto``) holding one float:

- ``TensorProto``: ``dtype`` (1, enum: ``DT_FLOAT`` 1, ``DT_DOUBLE`` 2,
  ``DT_HALF`` 19), ``tensor_shape`` (2: ``dim`` (2, repeated) ``.size`` (1)),
  ``tensor_content`` (4, raw little-endian bytes), ``float_val`` (5),
  ``double_val`` (6), ``half_val`` (13, the float16 bits in an int32);
- ``Summary.Value.metadata`` (9) ``.plugin_data`` (1) ``.plugin_name`` (1):
  a one-float tensor is a scalar when its tag's plugin is ``"scalars"`` or
  when no plugin was named for it (``tf.summary`` names it with a tag's
  first value only); the tensors of other plugins (histograms, text, ...)
  are left out.

Examples:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with TensorBoardWriter(folder) as tb:
    ...         tb.add_scalars({"lr": 0.1, "loss": 2.3}, step=0)
    ...         tb.add_scalar("lr", 0.05, step=1)
    ...     print(tb.path.name.startswith("events.out.tfevents."))
    ...     for tag, step, value in read_scalars(folder):
    ...         print(tag, step, round(value, 6))  # simple_value is a float32
    True
    lr 0 0.1
    loss 0 2.3
    lr 1 0.05
    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import struct
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType

__all__ = ["TensorBoardWriter", "crc32c", "read_scalars"]


def _crc32c_table() -> tuple[int, ...]:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """The CRC-32C (Castagnoli) checksum of ``data``, as TFRecord framing uses."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 as protobuf encodes it: ten bytes, two's complement
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _scalar_value(tag: str, value: float) -> bytes:
    # Summary.Value: tag (1, string), simple_value (2, float32: wire type 5).
    return _field(1, tag.encode("utf-8")) + b"\x15" + struct.pack("<f", value)


def _event(wall_time: float, step: int, body: bytes) -> bytes:
    # Event: wall_time (1, double: wire type 1), step (2, varint), then the body.
    return b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(step) + body


def _record(payload: bytes) -> bytes:
    header = struct.pack("<Q", len(payload))
    return (
        header
        + struct.pack("<I", _masked_crc(header))
        + payload
        + struct.pack("<I", _masked_crc(payload))
    )


class TensorBoardWriter:
    """Scalars into one TensorBoard event file in ``logdir`` (created if missing).

    Args:
        logdir: The run's folder; TensorBoard shows each folder under its
            ``--logdir`` as one run.
        flush_every: Records kept in memory before they are written.

    Raises:
        OSError: If the folder or the file cannot be created.
    """

    def __init__(self, logdir: str | os.PathLike[str], *, flush_every: int = 512) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every!r}")
        folder = Path(logdir)
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}"
        for copy in itertools.count():  # another writer here this second: {pid}.1.lrkit, ...
            self.path = folder / (f"{name}.{copy}.lrkit" if copy else f"{name}.lrkit")
            try:
                self._file = self.path.open("xb")
                break
            except FileExistsError:
                continue
        self._pending: list[bytes] = []
        self._flush_every = flush_every
        self._pending.append(_record(_event(now, 0, _field(3, b"brain.Event:2"))))
        self.flush()

    def add_scalar(self, tag: str, value: float, step: int, wall_time: float | None = None) -> None:
        """Record one scalar ``value`` under ``tag`` at ``step``."""
        self.add_scalars({tag: value}, step, wall_time)

    def add_scalars(
        self, values: Mapping[str, float], step: int, wall_time: float | None = None
    ) -> None:
        """Record several scalars of one ``step`` in one event.

        Non-finite values are written as they are (TensorBoard shows NaN and
        inf); ``None`` values are left out.

        Raises:
            ValueError: If ``step`` is negative or a tag is empty.
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        parts = []
        for tag, value in values.items():
            if not tag:
                raise ValueError("a scalar's tag must not be empty")
            if value is not None:
                parts.append(_field(1, _scalar_value(tag, float(value))))
        if not parts:
            return
        when = time.time() if wall_time is None else float(wall_time)
        if not math.isfinite(when):
            raise ValueError(f"wall_time must be finite, got {wall_time!r}")
        self._pending.append(_record(_event(when, step, _field(5, b"".join(parts)))))
        if len(self._pending) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        """Write what is pending to the file."""
        if self._pending:
            self._file.write(b"".join(self._pending))
            self._pending.clear()
        self._file.flush()

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        if not self._file.closed:
            self.flush()
            self._file.close()

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------
# Reading: TFRecord framing, then the few Event fields a scalar needs
# --------------------------------------------------------------------------

_DT_FLOAT, _DT_DOUBLE, _DT_HALF = 1, 2, 19
#: dtype -> (struct format of one element, its size in bytes)
_FLOAT_TYPES = {_DT_FLOAT: ("<f", 4), _DT_DOUBLE: ("<d", 8), _DT_HALF: ("<e", 2)}


class _Malformed(ValueError):
    """A payload that does not decode as the protocol buffer expected."""


def read_scalars(path: str | os.PathLike[str]) -> Iterator[tuple[str, int, float]]:
    """The scalars of a TensorBoard event file, or of every event file under a folder.

    Yields ``(tag, step, value)`` in the order written. A folder is searched
    recursively for event files (names containing ``tfevents``, as
    TensorBoard finds them), read one after the other in the order they were
    started (their names begin with the time, so a resumed run's file comes
    after the first run's), each record in order: a step written twice
    (a run resumed from a checkpoint) is yielded twice, the later last.
    Tags are yielded as written, so two runs' folders under ``path`` with
    the same tags (``train/`` and ``validation/`` of Keras' callback) are
    merged into one series each.

    ``simple_value`` scalars are float32, so ``0.1`` reads back as
    ``0.10000000149011612``; tensor scalars keep their own precision
    (float64 from ``tf.summary`` with a double or torch's
    ``double_precision=True``). NaN and inf are yielded as they are.

    Every record's two checksums are verified. A record cut short at the end
    of a file (a writer killed mid-write, or still writing) is skipped
    silently; the records before it are read.

    Args:
        path: An event file (any name) or a folder.

    Returns:
        An iterator of ``(tag, step, value)``; the files are read as it is
        consumed.

    Raises:
        FileNotFoundError: ``path`` does not exist (at the call).
        ValueError: a checksum does not match, or a record is not an
            ``Event``, while iterating (the message names the file and the
            byte offset).

    Examples:
        >>> list(read_scalars("no/such/folder"))
        Traceback (most recent call last):
        ...
        FileNotFoundError: no/such/folder: no such file or folder
    """
    files = _event_files(Path(path))
    return _scalars(files)


def _event_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    found = [p for p in path.rglob("*tfevents*") if p.is_file()]
    return sorted(found, key=lambda p: (_named_second(p), _started(p), p.name, str(p)))


def _named_second(path: Path) -> int:
    """The second a file's name says it was started (``events.out.tfevents.{ts}....``)."""
    parts = path.name.split(".")
    return int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0


def _started(path: Path) -> float:
    """The wall time of a file's first event (its writer's start): within one named
    second it orders two writers, which names alone misorder (``{pid}.1.lrkit`` sorts
    before ``{pid}.lrkit``). Unreadable or empty files count as oldest."""
    try:
        for _, payload in _records(path):
            for number, wire, value in _fields(payload):
                if number == 1 and wire == 1 and isinstance(value, bytes):
                    return float(struct.unpack("<d", value)[0])
            return 0.0
    except (OSError, ValueError, _Malformed):
        return 0.0
    return 0.0


def _scalars(files: Iterable[Path]) -> Iterator[tuple[str, int, float]]:
    plugins: dict[str, str] = {}  # tag -> plugin, from the first value that named one
    for path in files:
        for offset, payload in _records(path):
            try:
                yield from _event_scalars(payload, plugins)
            except _Malformed as exc:
                raise ValueError(
                    f"{path}: the record at byte {offset} is not a TensorBoard event ({exc})"
                ) from None


def _records(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(offset, payload)`` of each whole TFRecord in ``path``, checksums verified."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while True:
            header = f.read(12)
            if len(header) < 12:
                return  # the end, or a header cut short
            length, length_crc = struct.unpack("<QI", header)
            if _masked_crc(header[:8]) != length_crc:
                raise ValueError(
                    f"{path}: corrupt record at byte {offset}: its length's checksum "
                    "does not match (not an event file, or damaged)"
                )
            if offset + 16 + length > size:
                return  # a record cut short: a writer killed mid-write
            body = f.read(length + 4)
            if len(body) < length + 4:
                return
            payload = body[:length]
            (payload_crc,) = struct.unpack("<I", body[length:])
            if _masked_crc(payload) != payload_crc:
                raise ValueError(
                    f"{path}: corrupt record at byte {offset}: its data's checksum does not match"
                )
            yield offset, payload
            offset += 16 + length


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    if pos < len(buf) and buf[pos] < 0x80:  # one byte: most keys and lengths
        return buf[pos], pos + 1
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed("a varint runs past its end")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` of a message: an int for varints, else bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise _Malformed(f"field {number} has wire type {wire}")
        if pos > end:
            raise _Malformed(f"field {number} runs past the message's end")
        yield number, wire, value


def _event_scalars(payload: bytes, plugins: dict[str, str]) -> Iterator[tuple[str, int, float]]:
    step = 0
    summaries = []
    for field in _fields(payload):
        match field:
            case (2, 0, int(value)):  # Event.step, int64
                step = value - (1 << 64) if value >= 1 << 63 else value
            case (5, 2, bytes(value)):  # Event.summary
                summaries.append(value)
    for summary in summaries:
        for field in _fields(summary):
            match field:
                case (1, 2, bytes(value)):  # Summary.value
                    found = _value_scalar(value, plugins)
                    if found is not None:
                        yield found[0], step, found[1]


def _value_scalar(buf: bytes, plugins: dict[str, str]) -> tuple[str, float] | None:
    """``(tag, value)`` of a ``Summary.Value`` holding a scalar, else None."""
    # The common case first: a short tag (1) and a simple_value (2), nothing else.
    n = len(buf) - 7
    if 0 < n < 0x80 and buf[0] == 0x0A and buf[1] == n and buf[2 + n] == 0x15:
        return buf[2 : 2 + n].decode("utf-8", errors="replace"), struct.unpack_from(
            "<f", buf, 3 + n
        )[0]
    tag = node_name = ""
    simple: float | None = None
    tensor: bytes | None = None
    plugin: str | None = None
    for field in _fields(buf):
        match field:
            case (1, 2, bytes(value)):
                tag = value.decode("utf-8", errors="replace")
            case (7, 2, bytes(value)):
                node_name = value.decode("utf-8", errors="replace")
            case (2, 5, bytes(value)):  # simple_value: one of the `value` oneof
                simple, tensor = struct.unpack("<f", value)[0], None
            case (8, 2, bytes(value)):  # tensor: one of the `value` oneof
                simple, tensor = None, value
            case (9, 2, bytes(value)):  # metadata
                plugin = _plugin_name(value)
    tag = tag or node_name  # old tensor summaries name themselves by their node
    if plugin:
        plugins.setdefault(tag, plugin)
    if simple is not None:
        return tag, simple
    if tensor is not None and plugins.get(tag, "scalars") == "scalars":
        number = _tensor_scalar(tensor)
        if number is not None:
            return tag, number
    return None


def _plugin_name(metadata: bytes) -> str | None:
    """``SummaryMetadata.plugin_data.plugin_name``, if set."""
    for field in _fields(metadata):
        match field:
            case (1, 2, bytes(plugin_data)):
                for inner in _fields(plugin_data):
                    match inner:
                        case (1, 2, bytes(name)):
                            return name.decode("utf-8", errors="replace")
    return None


def _tensor_scalar(buf: bytes) -> float | None:
    """The value of a ``TensorProto`` of one float16/32/64 element, else None."""
    dtype = 0
    elements = 1
    content = b""
    listed: dict[int, list[float]] = {}
    for field in _fields(buf):
        match field:
            case (1, 0, int(value)):
                dtype = value
            case (2, 2, bytes(shape)):
                dims = _dims(shape)
                if dims is None:
                    return None
                elements = math.prod(dims)
            case (4, 2, bytes(value)):
                content = value
            case (5 | 6 | 13 as number, wire, value):  # float_val, double_val, half_val
                listed.setdefault(number, []).extend(_listed(number, wire, value))
    if dtype not in _FLOAT_TYPES or elements != 1:
        return None
    fmt, itemsize = _FLOAT_TYPES[dtype]
    if content:
        return float(struct.unpack(fmt, content)[0]) if len(content) == itemsize else None
    # A value listed once stands for every element (TensorFlow's convention).
    values = listed.get({_DT_FLOAT: 5, _DT_DOUBLE: 6, _DT_HALF: 13}[dtype], [])
    return values[0] if len(values) == 1 else None


def _dims(shape: bytes) -> list[int] | None:
    """The sizes of a ``TensorShapeProto``'s dims; None when its rank is unknown."""
    dims = []
    for field in _fields(shape):
        match field:
            case (3, 0, int(unknown_rank)) if unknown_rank:
                return None
            case (2, 2, bytes(dim)):
                size = 0
                for inner in _fields(dim):
                    match inner:
                        case (1, 0, int(value)):
                            size = value
                dims.append(size)
    return dims


def _listed(number: int, wire: int, value: int | bytes) -> list[float]:
    """The floats of a ``float_val`` (5), ``double_val`` (6) or ``half_val`` (13) field."""
    if isinstance(value, int):  # half_val, one unpacked varint
        return [_half(value)] if number == 13 else []
    if wire == 2:  # packed
        if number == 13:
            halves, pos = [], 0
            while pos < len(value):
                bits, pos = _read_varint(value, pos)
                halves.append(_half(bits))
            return halves
        size = 4 if number == 5 else 8
        if len(value) % size:
            raise _Malformed(f"a packed field {number} of {len(value)} bytes")
        return list(struct.unpack(f"<{len(value) // size}{'f' if size == 4 else 'd'}", value))
    if number == 5 and wire == 5:
        return [struct.unpack("<f", value)[0]]
    if number == 6 and wire == 1:
        return [struct.unpack("<d", value)[0]]
    return []


def _half(bits: int) -> float:
    return float(struct.unpack("<e", struct.pack("<H", bits & 0xFFFF))[0])
