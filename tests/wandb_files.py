"""W&B in the tests: quiet offline settings, and reading a run's ``.wandb`` file.

:data:`QUIET` holds the environment that keeps W&B from the network, git,
the package list and the console.

wandb 0.31 has no Python reader of its ``.wandb`` files left: the framing (a
header, then LevelDB-log records with CRC-32 checksums) is read here, and each
record is parsed with wandb's ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Environment for a W&B run with no account, network, git or package scan, and no output.
QUIET = {
    "WANDB_SILENT": "true",
    "WANDB_CONSOLE": "off",
    "WANDB_ERROR_REPORTING": "false",
    "WANDB_DISABLE_CODE": "true",
    "WANDB_DISABLE_GIT": "true",
    "WANDB__DISABLE_STATS": "true",
    "WANDB__DISABLE_META": "true",
    "WANDB__DISABLE_MACHINE_INFO": "true",
    "WANDB__SAVE_REQUIREMENTS": "false",  # no scan of the installed packages (seconds)
}


def wandb_records(path: Path) -> Iterator[Any]:
    """The ``Record`` protos of a ``.wandb`` file: a header, then LevelDB-log framing."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0)
    block = 32768
    seeds = {kind: zlib.crc32(bytes([kind])) for kind in (1, 2, 3, 4)}  # FULL FIRST MIDDLE LAST
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header: padding
            pos += block - pos % block
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        if len(chunk) < length:
            return  # still being written
        assert zlib.crc32(chunk, seeds[kind]) == checksum
        pos += 7 + length
        parts += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record
