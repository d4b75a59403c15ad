"""The SQLite run store: round trips, keys, one row per run, refusals."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from lrkit.bench.run import RunConfig, RunResult, execute
from lrkit.bench.store import SCHEMA_VERSION, RunStore, StoreError


def fake(key: str, status: str = "ok", final: float | None = 0.5, seed: int = 0) -> RunResult:
    """A small result that needs no training."""
    return RunResult(
        key=key,
        config={"task": "quadratic", "optimizer": "sgd", "schedule": "constant()", "lr": 0.1,
                "seed": seed, "budget": 1.0},
        identity={"seed": seed},
        status=status,
        metric="loss",
        mode="min",
        target=0.15,
        steps=3,
        steps_done=3,
        lr=[0.1, 0.1, 0.1],
        loss=[3.0, 2.0, 1.0],
        eval_steps=[0, 3],
        evals={"loss": [3.0, 1.0]},
        final=final,
        best=final,
        wall_time=0.25,
    )  # fmt: skip


def test_a_real_result_round_trips(tmp_path: Path) -> None:
    result = execute(RunConfig("quadratic", "adam", "cosine()", 0.05, seed=1, budget=0.1))
    assert result.status == "ok"
    with RunStore(tmp_path / "runs.sqlite") as store:
        store.put(result)
        back = store.get(result.key)
    assert back is not None
    assert back.to_dict() == result.to_dict()
    assert RunConfig.from_dict(back.config).key() == result.key


def test_keys_rows_and_queries(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "runs.sqlite"  # missing folders are created
    with RunStore(path) as store:
        assert len(store) == 0 and store.done_keys() == set()
        store.put(fake("a"), pid=123)
        store.put(fake("b", status="diverged", final=None, seed=1))
        assert store.done_keys() == {"a", "b"}
        assert "a" in store and "c" not in store
        assert store.get("c") is None
        assert [r.key for r in store.results(["b", "c"])] == ["b"]
        rows = {row["key"]: row for row in store.rows()}
        assert rows["a"]["status"] == "ok" and rows["a"]["final"] == 0.5
        assert rows["a"]["pid"] == 123 and rows["a"]["wall_time"] == 0.25
        assert rows["b"]["status"] == "diverged" and rows["b"]["final"] is None
        assert rows["b"]["seed"] == 1 and rows["b"]["task"] == "quadratic"
        assert store.schema_version() == SCHEMA_VERSION
    # The file is plain SQLite: any client can read it.
    with sqlite3.connect(path) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        (config,) = conn.execute("SELECT config FROM runs WHERE key = 'a'").fetchone()
    assert mode == "wal"
    assert json.loads(config)["optimizer"] == "sgd"


def test_put_replaces_a_key_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    with RunStore(path) as store:
        store.put(fake("a", final=0.5))
        store.put(fake("a", final=0.25))
    with RunStore(path) as store:
        assert len(store) == 1
        result = store.get("a")
        assert result is not None and result.final == 0.25


def test_non_finite_numbers_are_stored_as_strict_json(tmp_path: Path) -> None:
    result = fake("nan")
    result.loss = [1.0, math.nan, math.inf]
    with RunStore(tmp_path / "runs.sqlite") as store:
        store.put(result)
        (text,) = store._conn.execute("SELECT result FROM runs").fetchone()
        back = store.get("nan")
    assert json.loads(text)["loss"] == [1.0, None, None]
    assert back is not None and back.loss[0] == 1.0 and math.isnan(back.loss[2])


def test_a_result_without_key_is_refused(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.sqlite") as store, pytest.raises(ValueError, match="key"):
        store.put(fake(""))


def test_refuses_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a database " * 100)
    with pytest.raises(StoreError, match=r"notes.txt' is not an lrkit run store"):
        RunStore(path)


def test_refuses_a_folder(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a folder"):
        RunStore(tmp_path)


def test_refuses_another_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    RunStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(
        StoreError, match=f"schema version 99; this lrkit reads version {SCHEMA_VERSION}"
    ):
        RunStore(path)
