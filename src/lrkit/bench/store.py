"""The run store of ``lrkit compare``: one SQLite row per finished run.

A :class:`RunStore` is a SQLite file (stdlib :mod:`sqlite3`, WAL journal)
with one row per run, keyed by :meth:`lrkit.bench.run.RunConfig.key`: the
config as JSON, the status, the whole :class:`~lrkit.bench.run.RunResult` as
JSON (curves and final metrics), the wall time and when the row was written.
A few columns (task, optimizer, schedule, lr, seed, final metric) are copied
out of the JSON so that the file can be queried with any SQLite client.

Only finished runs are written, each in one transaction: a row is either
absent or complete, whatever moment the writing process is killed at. One
process writes (the main process of the runner); readers may come and go.
A table ``meta`` holds the schema version; a store written by an
incompatible version is refused with a message saying so.

Examples:
    >>> import tempfile, pathlib
    >>> from lrkit.bench.run import RunResult
    >>> folder = tempfile.mkdtemp()
    >>> with RunStore(pathlib.Path(folder) / "runs.sqlite") as store:
    ...     result = RunResult(key="k1", config={"task": "quadratic"}, identity={},
    ...                        status="ok", metric="loss", mode="min", target=0.1, steps=3)
    ...     store.put(result)
    ...     sorted(store.done_keys()), store.get("k1").status, len(store)
    (['k1'], 'ok', 1)
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from lrkit.bench.run import RunResult

__all__ = ["SCHEMA_VERSION", "RunStore", "StoreError"]

#: The layout of the tables; bumped when it changes incompatibly.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    key        TEXT PRIMARY KEY,
    task       TEXT NOT NULL,
    optimizer  TEXT NOT NULL,
    schedule   TEXT NOT NULL,
    lr         REAL NOT NULL,
    seed       INTEGER NOT NULL,
    budget     REAL NOT NULL,
    status     TEXT NOT NULL,
    final      REAL,
    wall_time  REAL NOT NULL,
    created    REAL NOT NULL,
    pid        INTEGER,
    config     TEXT NOT NULL,
    result     TEXT NOT NULL
);
"""


class StoreError(ValueError):
    """The file is not a usable run store; the message says which and why."""


class RunStore:
    """A SQLite file of finished runs, keyed by the run config's key.

    Args:
        path: The SQLite file; created (with missing folders) if absent.

    Raises:
        StoreError: If the path is a folder, is not a SQLite database, or
            holds a store of another schema version.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"store {str(self.path)!r} is a folder; give a file path")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30.0)
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"cannot open store {str(self.path)!r}: {err}") from None
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL keeps every committed transaction through a
            # crash or kill of this process (only a power cut may lose the last).
            self._conn.execute("PRAGMA synchronous=NORMAL")
            with self._conn:
                self._conn.executescript(_SCHEMA)
                row = self._conn.execute(
                    "SELECT value FROM meta WHERE name = 'schema_version'"
                ).fetchone()
                if row is None:
                    self._conn.execute(
                        "INSERT INTO meta (name, value) VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
        except sqlite3.DatabaseError as err:
            self._conn.close()
            raise StoreError(
                f"store {str(self.path)!r} is not an lrkit run store (SQLite says: {err})"
            ) from None
        if row is not None and row[0] != str(SCHEMA_VERSION):
            self._conn.close()
            raise StoreError(
                f"store {str(self.path)!r} has schema version {row[0]}; this lrkit reads "
                f"version {SCHEMA_VERSION}: use another --store path"
            )

    # -- context manager ---------------------------------------------------

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    # -- writing -----------------------------------------------------------

    def put(self, result: RunResult, *, pid: int | None = None) -> None:
        """Write one finished run in a single transaction (replacing its key).

        Args:
            result: The run's result; ``result.key`` is the row's key.
            pid: The process that ran it (for diagnostics), if known.

        Raises:
            ValueError: If the result has no key (its config was invalid).
        """
        if not result.key:
            raise ValueError("store: a result without a key cannot be stored")
        config = result.config
        data = result.to_dict()
        row = (
            result.key,
            str(config.get("task", "")),
            str(config.get("optimizer", "")),
            str(config.get("schedule", "")),
            float(config.get("lr", 0.0)),
            int(config.get("seed", 0)),
            float(config.get("budget", 1.0)),
            result.status,
            data["final"],
            float(result.wall_time),
            time.time(),
            pid,
            json.dumps(config, sort_keys=True),
            json.dumps(data, allow_nan=False),
        )
        with self._conn:  # one transaction: the row is written whole or not at all
            self._conn.execute(
                "INSERT OR REPLACE INTO runs (key, task, optimizer, schedule, lr, seed, "
                "budget, status, final, wall_time, created, pid, config, result) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

    # -- reading -----------------------------------------------------------

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def __contains__(self, key: object) -> bool:
        return self._conn.execute("SELECT 1 FROM runs WHERE key = ?", (key,)).fetchone() is not None

    def done_keys(self) -> set[str]:
        """Return the keys of the stored runs that need not run again.

        Every status but ``"error"``: a run whose task raised runs again on
        the next call (after a fix, or a transient failure); its row is
        replaced then.
        """
        return {
            row[0] for row in self._conn.execute("SELECT key FROM runs WHERE status != 'error'")
        }

    def get(self, key: str) -> RunResult | None:
        """Return the stored result of ``key``, or ``None`` if there is none."""
        row = self._conn.execute("SELECT result FROM runs WHERE key = ?", (key,)).fetchone()
        return None if row is None else RunResult.from_dict(json.loads(row[0]))

    def results(self, keys: Iterable[str] | None = None) -> list[RunResult]:
        """Return stored results, oldest first.

        Args:
            keys: Only these keys (those not stored are skipped); ``None``
                for every row.
        """
        rows = self._conn.execute("SELECT key, result FROM runs ORDER BY created, key").fetchall()
        wanted = None if keys is None else set(keys)
        return [
            RunResult.from_dict(json.loads(text))
            for key, text in rows
            if wanted is None or key in wanted
        ]

    def rows(self) -> list[dict[str, Any]]:
        """Return the queryable columns of every row (no curves), oldest first."""
        cursor = self._conn.execute(
            "SELECT key, task, optimizer, schedule, lr, seed, budget, status, final, "
            "wall_time, created, pid FROM runs ORDER BY created, key"
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def schema_version(self) -> int:
        """Return the schema version recorded in the file."""
        row = self._conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        return int(row[0])
