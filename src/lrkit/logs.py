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

Examples:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with TensorBoardWriter(folder) as tb:
    ...         tb.add_scalars({"lr": 0.1, "loss": 2.3}, step=0)
    ...         tb.add_scalar("lr", 0.05, step=1)
    ...     tb.path.name.startswith("events.out.tfevents.")
    True
    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
"""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

__all__ = ["TensorBoardWriter", "crc32c"]


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
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.lrkit"
        self.path = folder / name
        self._file = self.path.open("xb")
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
