"""``lrkit tune`` on a shared PostgreSQL study: a real throwaway server, real processes.

One server for the session (``scripts/pg_server.py``: Debian's PostgreSQL,
``initdb`` into a temporary folder, 127.0.0.1 on a free port); each test takes
new empty databases from it. The tests share the server, so they run on one
xdist worker (``--dist loadgroup``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lrkit.bench.tune import TuneError, _open_storage, mask_url

pytestmark = pytest.mark.xdist_group("postgres")

ROOT = Path(__file__).resolve().parents[1]
LRKIT = str(Path(sys.executable).with_name("lrkit"))

TINY_TASK = """
import lrkit

@lrkit.task(metric="loss", steps=10)
def tiny(trial):
    x = 3.0
    for step in range(trial.steps):
        x -= trial.schedule(step) * 2 * x       # gradient of x**2
        trial.log(step, loss=x * x)
    return x * x
"""


def _server_module() -> Any:
    spec = importlib.util.spec_from_file_location("pg_server", ROOT / "scripts" / "pg_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pg() -> Iterator[Any]:
    """A PostgreSQL server for the session; ``pg.database()`` gives a new empty one's URL."""
    with _server_module().PostgresServer() as server:
        yield server


def _tune_argv(task: Path, out: Path, *extra: str) -> list[str]:
    return [
        LRKIT,
        "tune",
        "--tasks",
        f"{task}:tiny",
        "--optimizers",
        "sgd",
        "--schedules",
        "constant()",
        "--schedules",
        "cosine()",
        "--lr-range",
        "1e-3,0.4",
        "--pruner",
        "none",
        "--study",
        "shared",
        "--out",
        str(out),
        *extra,
    ]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LRKIT_STORAGE", "PGPASSWORD")}
    return {**env, "MPLBACKEND": "Agg", **extra}


def _files_text(folder: Path) -> str:
    """Every file under ``folder`` as text (bytes decoded leniently: SQLite files too)."""
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in sorted(folder.rglob("*")) if p.is_file()
    )


def test_two_processes_share_one_study_to_the_exact_total(pg: Any, tmp_path: Path) -> None:
    import optuna

    url = pg.database()
    task = tmp_path / "tiny_task.py"
    task.write_text(TINY_TASK)
    outs = [tmp_path / "a", tmp_path / "b"]
    # Both start at once on an empty database: one with --storage, one with $LRKIT_STORAGE.
    procs = [
        subprocess.Popen(
            _tune_argv(task, outs[0], "--trials", "8", "--storage", url),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
        subprocess.Popen(
            _tune_argv(task, outs[1], "--trials", "8"),
            env=_env(LRKIT_STORAGE=url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
    ]
    streams = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, streams, strict=True):
        assert p.returncode == 0, out + err
        assert "Traceback" not in err
    study = optuna.load_study(study_name="shared", storage=url)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 8
    # A trial not needed (two processes asked for the last one at once) is FAIL, never run.
    for t in trials:
        if t not in finished:
            assert t.state.name == "FAIL" and t.user_attrs["status"] == "skipped", t
            assert not t.params
    assert len({t.number for t in trials}) == len(trials)
    assert len({t.user_attrs["run_key"] for t in finished}) == 8  # no run twice
    assert len({tuple(sorted(t.params.items())) for t in finished}) == 8  # own proposals
    pids = {t.user_attrs["pid"] for t in finished}
    assert pids == {p.pid for p in procs}, pids  # both did work
    assert {t.user_attrs["host"] for t in finished} == {socket.gethostname()}
    # Each process writes the whole study to its results.json; its runs to its own store.
    for out in outs:
        doc = json.loads((out / "results.json").read_text())
        assert doc["storage"] == mask_url(url) and "***" in doc["storage"]
        assert sum(doc["counts"].get(s, 0) for s in ("COMPLETE", "PRUNED")) == 8
    # The password is nowhere lrkit writes or prints.
    for out in outs:
        assert pg.password not in _files_text(out)
    for out, err in streams:
        assert pg.password not in out + err
        assert f"study 'shared' ({mask_url(url)})" in out


def _run_many(argvs: list[list[str]], env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(a, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for a in argvs
    ]
    done = []
    for a, p in zip(argvs, procs, strict=True):
        out, err = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(a, p.returncode, out, err))
    return done


def test_bad_storage_exits_2_with_one_line_and_the_password_masked(pg: Any, tmp_path: Path) -> None:
    task = tmp_path / "tiny_task.py"
    task.write_text(TINY_TASK)
    secret = "hunter2-Zq9"
    urls = {
        "unreachable": f"postgresql://nouser:{secret}@127.0.0.1:1/x",
        "port": f"postgresql://nouser:{secret}@127.0.0.1:notaport/x",
        "dialect": f"nosuchdb://nouser:{secret}@127.0.0.1/x",
        "password": pg.url("postgres").replace(pg.password, secret),
    }
    argvs = [
        _tune_argv(task, tmp_path / name, "--trials", "1", "--storage", url)
        for name, url in urls.items()
    ]
    env = _env(LRKIT_STORAGE=urls["port"])  # used where --storage is not given
    urls["env"] = urls["port"]
    argvs.append(_tune_argv(task, tmp_path / "env", "--trials", "1"))
    results = _run_many(argvs, env)
    for name, done in zip(urls, results, strict=True):
        shown = f"{done.stdout}{done.stderr}"
        assert done.returncode == 2, (name, shown)
        assert done.stdout == "", (name, shown)
        assert done.stderr.count("\n") == 1 and "Traceback" not in shown, (name, shown)
        assert done.stderr.startswith(f"Error: --storage {mask_url(urls[name])!r} cannot be used:")
        assert secret not in shown and "***" in shown, (name, shown)
    assert "failed" in results[0].stderr or "refused" in results[0].stderr
    assert "password authentication failed" in results[3].stderr


SCHEMA_CHILD = """
import sys
import optuna
from lrkit.bench.tune import _open_storage

optuna.logging.set_verbosity(optuna.logging.ERROR)
print("ready", flush=True)
for url in sys.stdin:                      # every process gets the line at once
    storage = _open_storage(url.strip())
    study = optuna.create_study(storage=storage, study_name="s", load_if_exists=True)
    print(len(study.get_trials()), flush=True)
"""


def test_processes_creating_the_schema_at_once_all_succeed(pg: Any) -> None:
    # Optuna alone fails here about one time in two ("duplicate key value violates
    # unique constraint", "relation already exists"): lrkit holds an advisory lock.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCHEMA_CHILD],
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        for _ in range(3):  # three empty databases, four processes at once on each
            url = pg.database()
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(url + "\n")
                p.stdin.flush()
            for p in procs:
                assert p.stdout is not None
                assert p.stdout.readline() == "0\n"
    finally:
        for p in procs:
            _, err = p.communicate(timeout=30)
            assert p.returncode == 0, err


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_password_from_pgpassword_or_pgpass(
    pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg.database()
    bare = pg.url(url.rsplit("/", 1)[1], password=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(TuneError, match="cannot be used"):
        _open_storage(bare)
    monkeypatch.setenv("PGPASSWORD", pg.password)
    _open_storage(bare).engine.dispose()
    monkeypatch.delenv("PGPASSWORD")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{pg.port}:*:{pg.user}:{pg.password}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    _open_storage(bare).engine.dispose()


def test_a_process_waits_for_trials_running_elsewhere_and_runs_the_failed_ones(
    pg: Any, tmp_path: Path
) -> None:
    """Total 2, one trial RUNNING on another machine: this process runs one, then waits
    for that one instead of starting another; it fails there, so this process runs it."""
    import threading

    import optuna

    import lrkit

    url = pg.database()
    task = tmp_path / "tiny_task.py"
    task.write_text(TINY_TASK)
    study = optuna.create_study(storage=url, study_name="w")
    elsewhere = study.ask()  # "another machine": another host, a live heartbeat
    elsewhere.set_user_attr("host", "elsewhere")
    elsewhere.set_user_attr("pid", 1)
    study._storage.record_heartbeat(elsewhere._trial_id)
    notes: list[str] = []

    def fail_it_once_waited_for() -> None:
        while not notes:
            time.sleep(0.05)
        time.sleep(0.5)
        study.tell(elsewhere, state=optuna.trial.TrialState.FAIL)

    thread = threading.Thread(target=fail_it_once_waited_for)
    thread.start()
    results = lrkit.tune(
        f"{task}:tiny",
        optimizers=["sgd"],
        schedules=["constant()"],
        lr_range=(1e-3, 0.4),
        trials=2,
        pruner="none",
        storage=url,
        study="w",
        out=tmp_path / "o",
        on_note=notes.append,
    )
    thread.join()
    assert notes == ["the study's last trials are running in other processes: waiting for them"]
    assert results.ran == 2
    assert results.counts() == {"COMPLETE": 2, "FAIL": 1}
    assert [t["user_attrs"]["host"] for t in results.trials] == ["elsewhere"] + 2 * [
        socket.gethostname()
    ]


def test_mask_url_masks_what_sqlalchemy_takes_for_the_password() -> None:
    from sqlalchemy.engine import make_url

    for url in (
        "postgresql://me:pa/ss:wd@db:5432/x",
        "postgresql://me:p%40ss@db/x",
        "postgresql+psycopg://me:pw@db/x?sslmode=require",
        "postgresql://me@db/x?password=pw&sslmode=require",
    ):
        parsed = make_url(url)
        secret = parsed.password or parsed.query["password"]
        shown = mask_url(url)
        assert str(secret) not in shown and "***" in shown, shown
        assert make_url(shown).host == parsed.host
    assert mask_url("sqlite:///a:b@c.db") == "sqlite:///a:b@c.db"


def test_a_killed_test_run_leaves_no_server_behind(tmp_path: Path) -> None:
    """pg_ctl detaches the server: a SIGKILLed owner is covered by the server's watchdog."""
    owner = tmp_path / "owner.py"
    script = str(ROOT / "scripts" / "pg_server.py")
    owner.write_text(
        "import importlib.util, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('pg', {script!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "s = m.PostgresServer().start()\n"
        "print(s.folder, flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, str(owner)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        folder = Path(process.stdout.readline().strip())
        pid = int((folder / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)  # the server runs
    finally:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 60
    while (folder.exists() or _alive(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the server outlived the process that started it"
    assert not folder.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
