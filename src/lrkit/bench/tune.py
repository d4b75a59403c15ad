"""``lrkit.tune``: an Optuna search over lr, optimizer and schedule on one task.

:func:`tune` does the whole job that ``lrkit tune`` prints. The Optuna study
has three parameters: ``lr`` (log-uniform in ``lr_range``), ``optimizer`` and
``schedule`` (categorical). A trial runs the task with those settings, once
per seed (seeds ``0..seeds-1``, in turn, in one process):

- its value is the mean of the seeds' final metrics; the study's direction
  is the task's ``mode``;
- the pruner sees the first seed's ``trial.report`` values (Optuna's
  ``trial.report`` and ``should_prune`` through
  :func:`~lrkit.bench.run.execute`'s ``on_report``); a pruned first seed makes
  the trial PRUNED and the other seeds do not run;
- a seed that diverged makes the trial COMPLETE with the worst value
  (``inf`` for ``min``, ``-inf`` for ``max``);
- a seed whose task raised makes the trial FAIL, with the reason in its
  user attributes; after :data:`MAX_FAILS_IN_A_ROW` FAIL trials in a row the
  search stops (:attr:`TuneResults.stopped`; ``lrkit tune`` exits 1).

Every run (each seed of each trial) is written to a
:class:`~lrkit.bench.store.RunStore` at ``OUT/runs.sqlite``, the store
``lrkit compare`` and ``lrkit report`` read; a trial's summary (status,
final, steps_done, run key, host, pid, reason) goes to its Optuna user
attributes.

**Design: one writer, trials in worker processes.** The calling process
owns the study: it asks Optuna for each trial (``study.ask``), hands the
trial's configs to a worker as plain data, makes every pruning decision
(a worker sends each first-seed report back, the main process calls
``trial.report`` and ``trial.should_prune`` and answers), and tells the
outcome (``study.tell``); only this process writes the Optuna storage and
the run store. Workers are ``spawn``-ed processes, each with a pipe to the
main process, that import torch once and run trials one after another;
they exit when the main process dies. ``workers=0`` and ``workers=1`` run
trials in the calling process, one at a time (no worker at all).

**Several processes, one study.** ``lrkit tune`` commands on several
machines (PostgreSQL) or on one (SQLite too) may share a study; ``trials``
is their total. A process starts a trial only while fewer than ``trials``
are finished or running anywhere, and waits while the last ones run
elsewhere (running a replacement if one fails). Two processes asking for
the last trial at once: trial numbers are given in order, and a trial with
``trials`` finished or running trials before it is told FAIL (``status``
``skipped``) without running. Every trial's user attributes ``host`` and
``pid`` name the process that ran it. Several processes may open an empty
PostgreSQL database at once (the tables are made under an advisory lock);
SQLite transactions take the write lock at their start. A password in the
storage URL is masked wherever the URL is printed or written.

**Resume and kill.** ``trials`` is the study's total of COMPLETE + PRUNED
trials: a rerun counts those first and runs only the missing ones. The
storage is an :class:`optuna.storages.RDBStorage` with a heartbeat: the main
process records one for every running trial each :data:`HEARTBEAT_INTERVAL`
seconds, and at start :func:`optuna.storages.fail_stale_trials` marks FAIL
the RUNNING trials whose heartbeat is older than :data:`GRACE_PERIOD`
seconds; RUNNING trials started on this host by a process that no longer
exists are marked FAIL at once. A trial is finished by one ``study.tell``
(one transaction), so ``kill -9`` at any moment loses no finished trial,
counts none twice, and leaves none RUNNING after the next start.

**Reproducible.** Each trial's proposal is drawn with the sampler seeded
``seed`` plus the trial's number, so the same command on a fresh study
proposes the same trials (with ``workers`` <= 1), a resume does not
propose the trials of the first call again, and processes sharing a study
do not propose the same trials.

Example (a user task, run in this process)::

    import lrkit

    @lrkit.task(metric="loss", steps=50)
    def shrink(trial):
        x = 5.0
        for step in range(trial.steps):
            x -= trial.schedule(step) * 2 * x       # gradient of x**2
            trial.log(step, loss=x * x)
            if (step + 1) % 10 == 0:
                trial.report(step + 1, x * x)       # the pruner watches these
        return x * x

    results = lrkit.tune(shrink, optimizers=["sgd"], schedules=["constant()", "cosine()"],
                         lr_range=(1e-3, 1.0), trials=10, out="shrink-tune")
    print(results.best.spec, results.best.value)
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import math
import multiprocessing
import os
import random
import re
import shlex
import signal
import socket
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO

from lrkit.bench.grid import (
    GridError,
    as_batch_sizes,
    make_grid,
    pinned_specs,
    split_names,
    task_items,
)
from lrkit.bench.run import RunConfig, RunResult, execute
from lrkit.bench.runner import exit_with_parent
from lrkit.bench.trial import Task, task_code

if TYPE_CHECKING:
    import optuna

__all__ = [
    "DEFAULT_OUT",
    "DEFAULT_STUDY",
    "GRACE_PERIOD",
    "HEARTBEAT_INTERVAL",
    "MAX_FAILS_IN_A_ROW",
    "PRUNERS",
    "SEARCHES",
    "STORAGE_ENV",
    "TuneBest",
    "TuneError",
    "TuneProgress",
    "TuneResults",
    "make_tune_progress",
    "mask_url",
    "tune",
]

#: ``lrkit tune``'s default output folder.
DEFAULT_OUT = Path("lrkit-tune")
#: The default study name.
DEFAULT_STUDY = "lrkit"
#: The environment variable that may hold the storage URL.
STORAGE_ENV = "LRKIT_STORAGE"
#: Samplers by ``search`` name.
SEARCHES = ("tpe", "random")
#: Pruners by ``pruner`` name.
PRUNERS = ("median", "hyperband", "none")
#: FAIL trials in a row after which the search stops.
MAX_FAILS_IN_A_ROW = 5
#: Seconds between heartbeats of a running trial.
HEARTBEAT_INTERVAL = 5
#: Seconds without a heartbeat after which a RUNNING trial is stale (marked FAIL).
GRACE_PERIOD = 30
#: Worker processes that die before starting up, in a row, before tune gives up.
STARTUP_FAILURES = 3
#: Tries at opening the storage when other processes create its tables at the same time.
OPEN_TRIES = 5
#: Seconds libpq waits for a PostgreSQL server (unless the URL sets ``connect_timeout``).
CONNECT_TIMEOUT = 10
#: The PostgreSQL advisory lock held while the storage's tables are made ("lrkit" in hex).
SCHEMA_LOCK_KEY = 0x6C726B6974
#: Seconds to wait for that lock.
SCHEMA_LOCK_TIMEOUT = 120
#: Seconds between looks at the study while trials of other processes finish it.
POLL_INTERVAL = 0.5
#: Median pruner: trials that complete before any is pruned.
MEDIAN_STARTUP_TRIALS = 3
#: Median pruner: the fraction of the step budget before which no trial is pruned.
WARMUP_FRACTION = 0.25


class TuneError(ValueError):
    """Bad input to :func:`tune` (nothing ran); the message says which and why."""


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass
class TuneBest:
    """The best trial, ready to paste.

    Attributes:
        trial: Its Optuna trial number.
        task: The task reference.
        optimizer: The optimizer's name.
        schedule: The schedule spec as searched (``"cosine()"``).
        lr: The trial's lr (exact).
        value: Its value (mean final metric over seeds).
        metric, mode: The task's metric and direction.
        spec: The filled schedule at the lr rounded to 2 significant digits
            (``"cosine(lr=0.0031, steps=300)"``).
        command: The ``lrkit compare`` command that confirms it.
        batch_size: Its batch size, when the search had ``--batch-sizes``.
    """

    trial: int
    task: str
    optimizer: str
    schedule: str
    lr: float
    value: float
    metric: str
    mode: str
    spec: str
    command: str
    batch_size: int | None = None

    def __str__(self) -> str:
        batch = "" if self.batch_size is None else f"  batch {self.batch_size}"
        return f"{self.optimizer}  {self.spec}{batch}"

    def to_dict(self) -> dict[str, Any]:
        """Return the best trial as JSON-ready data."""
        return dict(self.__dict__)


@dataclass
class TuneResults:
    """What :func:`tune` ran and found.

    Attributes:
        runs: Every stored run of the study's trials (each seed is a run),
            in trial order. ``len(results)`` counts them.
        trials: Every trial of the study as plain data (number, state,
            params, value, user_attrs), in number order.
        best: The best COMPLETE trial with a finite value (``None`` if none).
        study: The study's name.
        storage: The storage URL, password masked.
        out: The output folder.
        ran: Trials run by this call.
        failed: Trials of this call whose task raised (state FAIL).
        stopped: Why the search stopped before reaching ``trials``, else ``None``.
        notes: What the user should know (said once each).
    """

    runs: list[RunResult]
    trials: list[dict[str, Any]]
    best: TuneBest | None
    study: str
    storage: str
    out: Path
    ran: int = 0
    failed: int = 0
    stopped: str | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self) -> Any:
        return iter(self.runs)

    def counts(self) -> dict[str, int]:
        """Trials by Optuna state name (``COMPLETE``, ``PRUNED``, ``FAIL``, ...)."""
        out: dict[str, int] = {}
        for t in self.trials:
            out[t["state"]] = out.get(t["state"], 0) + 1
        return out

    def __repr__(self) -> str:
        best = self.best
        head = (
            "no finished trial" if best is None else f"best {best} {best.metric}={best.value:.4g}"
        )
        return f"TuneResults({len(self.trials)} trials, {len(self.runs)} runs; {head})"


# --------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------


class TuneProgress(Protocol):
    """What :func:`tune` tells about its progress."""

    def start(self, total: int, done: int, workers: int) -> None:
        """``total`` trials wanted, ``done`` already finished in the study."""

    def update(self, trial: dict[str, Any]) -> None:
        """One trial finished (its :attr:`TuneResults.trials` entry, plus ``best`` and
        ``done``: the study's finished trials, those of other processes included)."""

    def finish(self) -> None:
        """The search is over (also after an interruption)."""


def _outcome(trial: dict[str, Any]) -> str:
    attrs = trial["user_attrs"]
    metric = attrs.get("metric", "value")
    if trial["state"] == "PRUNED":
        return f"pruned at step {attrs.get('steps_done')}/{attrs.get('steps')}"
    if trial["state"] == "FAIL":
        return f"FAIL: {attrs.get('reason')}"
    if attrs.get("status") == "diverged":
        return f"diverged ({attrs.get('reason')})"
    value = trial["value"]
    return f"{metric}={value:.4g}" if value is not None else f"{metric}={value}"


def _label(trial: dict[str, Any]) -> str:
    p = trial["params"]
    batch = f" batch {p['batch_size']}" if p.get("batch_size") is not None else ""
    return (
        f"trial {trial['number']} {p.get('optimizer')} {p.get('schedule')} "
        f"lr={p.get('lr', 0):.3g}{batch}"
    )


class PlainTuneProgress:
    """One line per finished trial, for logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.total = self.done = 0

    def start(self, total: int, done: int, workers: int) -> None:
        self.total, self.done = total, done
        todo = max(0, total - done)
        where = "in this process" if workers <= 1 else f"on {workers} worker(s)"
        plan = "nothing to run" if todo == 0 else f"{todo} to run {where}"
        print(f"{total} trials, {done} already in the study, {plan}", file=self.stream, flush=True)

    def update(self, trial: dict[str, Any]) -> None:
        if trial["state"] in ("COMPLETE", "PRUNED"):
            self.done += 1
        self.done = trial.get("done", self.done)  # the study's count (other processes too)
        best = trial.get("best")
        tail = "" if best is None else f" | best {best}"
        print(
            f"[{self.done}/{self.total}] {_label(trial)}: {_outcome(trial)}{tail}",
            file=self.stream,
            flush=True,
        )

    def finish(self) -> None:
        pass


class RichTuneProgress:
    """A rich progress bar: trials done/total, elapsed, ETA, best so far."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[best]}"),
        )
        self._task: Any = None

    def start(self, total: int, done: int, workers: int) -> None:
        self._bar.start()
        self._task = self._bar.add_task("trials", total=total, completed=done, best="")

    def update(self, trial: dict[str, Any]) -> None:
        best = trial.get("best")
        shown = "" if best is None else f"best {best}"
        if "done" in trial:  # the study's count (other processes too)
            self._bar.update(self._task, completed=trial["done"], best=shown)
        else:
            advance = 1 if trial["state"] in ("COMPLETE", "PRUNED") else 0
            self._bar.update(self._task, advance=advance, best=shown)

    def finish(self) -> None:
        self._bar.stop()


class _SilentTune:
    def start(self, total: int, done: int, workers: int) -> None:
        pass

    def update(self, trial: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass


def make_tune_progress(stream: TextIO | None = None) -> TuneProgress:
    """A rich bar when ``stream`` (stdout) is a terminal, else one plain line per trial."""
    stream = stream if stream is not None else sys.stdout
    return RichTuneProgress() if stream.isatty() else PlainTuneProgress(stream)


# --------------------------------------------------------------------------
# Checking the input
# --------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """The storage URL with any password replaced by ``***``.

    The password is what SQLAlchemy takes for one: everything between the
    user's ``:`` and the ``@`` (``/`` and ``:`` included), and a
    ``password=`` query parameter.

    Examples:
        >>> mask_url("postgresql://me:secret@db:5432/optuna")
        'postgresql://me:***@db:5432/optuna'
        >>> mask_url("postgresql://me:se/cr:et@db/optuna?password=x&sslmode=require")
        'postgresql://me:***@db/optuna?password=***&sslmode=require'
        >>> mask_url("sqlite:///out/tune.sqlite")
        'sqlite:///out/tune.sqlite'
    """
    masked = re.sub(r"^([\w+]+://[^:/]*:)[^@]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", masked)


def _secrets(url: str) -> list[str]:
    """The password(s) in ``url``, as written and URL-decoded, longest first."""
    from urllib.parse import unquote, unquote_plus

    found = re.findall(r"^[\w+]+://[^:/]*:([^@]*)@", url)
    found += re.findall(r"[?&]password=([^&]*)", url)
    out = {v for raw in found for v in (raw, unquote(raw), unquote_plus(raw)) if v}
    return sorted(out, key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    """``text`` (an error message) with ``url`` masked and its password replaced by ``***``.

    Drivers and SQLAlchemy may put the URL or the password in their messages;
    everything lrkit prints about a storage goes through this.

    Examples:
        >>> _scrub("cannot reach postgresql://me:pw1@db/x (pw1)", "postgresql://me:pw1@db/x")
        'cannot reach postgresql://me:***@db/x (***)'
    """
    text = text.replace(url, mask_url(url))
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def _lr_range(value: Sequence[float] | str) -> tuple[float, float]:
    """``(low, high)`` from a pair or ``"LOW,HIGH"``."""
    text = value if isinstance(value, str) else None
    items: list[Any] = text.split(",") if text is not None else list(value)
    if len(items) != 2:
        raise TuneError(f"--lr-range must be LOW,HIGH (two numbers), got {value!r}")
    try:
        low, high = (float(x) for x in items)
    except (TypeError, ValueError):
        raise TuneError(f"--lr-range must be LOW,HIGH (two numbers), got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
        raise TuneError(f"--lr-range must satisfy 0 < LOW < HIGH (finite), got {low:g},{high:g}")
    return low, high


def _int_option(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise TuneError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _one_task(tasks: Sequence[str | Task] | str | Task) -> str | Task:
    names = task_items(tasks)
    if len(names) != 1:
        shown = ", ".join(t.name if isinstance(t, Task) else t for t in names) or "none"
        raise TuneError(f"--tasks: tune searches one task at a time, got {len(names)}: {shown}")
    return names[0]


def _default_optimizers(task: Sequence[str | Task] | str | Task) -> list[str]:
    """``adam``, or the optimizers the (first) task is limited to (a scikit-learn task)."""
    from lrkit.bench.trial import load_task

    items = task_items(task)
    try:
        allowed = load_task(items[0]).optimizers if items else None
    except ValueError:  # a task that does not load: the checks below say so
        allowed = None
    return list(allowed) if allowed else ["adam"]


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    """WAL journal, ``synchronous=NORMAL``: every commit survives a kill of the process
    (only a power cut may lose the last ones), without an fsync per commit.

    The driver's own transaction handling is off (:func:`_sqlite_begin` starts them)."""
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    """Start each transaction with the write lock (``BEGIN IMMEDIATE``).

    Python's sqlite3 otherwise starts a transaction only at the first write,
    after the reads: two processes sharing the file could both read a WAITING
    trial and both make it RUNNING (Optuna's check-then-set), then run it twice.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _storage_error(url: str, err: BaseException) -> TuneError:
    """One line about a storage that cannot be used, the password masked."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    first = re.sub(r"^\([\w.]+\) ", "", first)  # SQLAlchemy's "(psycopg.OperationalError) "
    if isinstance(err, ImportError):
        first += " (for postgresql://, pip install 'lrkit[tune]' installs psycopg)"
    return TuneError(f"--storage {mask_url(url)!r} cannot be used: {_scrub(first, url)}")


def _collided(err: BaseException) -> bool:
    """Whether ``err`` says that another process created the same table or row first."""
    text = str(err).lower()
    return any(
        words in text
        for words in ("already exists", "duplicate", "unique constraint", "database is locked")
    )


@contextlib.contextmanager
def _schema_lock(url: str, engine_kwargs: dict[str, Any]) -> Any:
    """Hold a PostgreSQL advisory lock (one connection) while the storage's tables are made."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, **engine_kwargs)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"SET lock_timeout = '{SCHEMA_LOCK_TIMEOUT}s'"))
            connection.execute(sqlalchemy.text(f"SELECT pg_advisory_lock({SCHEMA_LOCK_KEY})"))
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text(f"SELECT pg_advisory_unlock({SCHEMA_LOCK_KEY})"))
    finally:
        engine.dispose()


def _open_storage(url: str) -> Any:
    """Optuna's RDBStorage on ``url`` with a heartbeat; :class:`TuneError` if unusable.

    Several processes may start at once on an empty database. On PostgreSQL
    the tables are made under an advisory lock: one process creates them, the
    others wait and find them. On any database, a creation that collides
    with another process's (a table or row that already exists) is tried
    again, up to :data:`OPEN_TRIES` times, after a short random sleep.
    """
    import optuna
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
        postgres = parsed.get_backend_name() == "postgresql"
        driver = parsed.get_driver_name() if postgres else ""
    except Exception as err:  # SQLAlchemy raises a dozen kinds for a bad URL
        raise _storage_error(url, err) from None
    engine_kwargs: dict[str, Any] = {}
    if driver in ("psycopg", "psycopg2") and "connect_timeout" not in parsed.query:
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    for attempt in range(1, OPEN_TRIES + 1):
        try:
            lock = _schema_lock(url, engine_kwargs) if postgres else contextlib.nullcontext()
            with lock:
                storage = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs or None,
                    heartbeat_interval=HEARTBEAT_INTERVAL,
                    grace_period=GRACE_PERIOD,
                )
            break
        except Exception as err:
            if attempt < OPEN_TRIES and _collided(err):
                time.sleep(random.uniform(0.05, 0.5))
                continue
            raise _storage_error(url, err) from None
    if url.startswith("sqlite:"):
        import sqlalchemy

        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
        sqlalchemy.event.listen(storage.engine, "begin", _sqlite_begin)
        storage.engine.dispose()  # connections opened from now on get the pragmas
    return storage


def _sampler(search: str, seed: int) -> Any:
    import optuna

    if search == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _pruner(name: str, steps: int) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=MEDIAN_STARTUP_TRIALS,
            n_warmup_steps=int(steps * WARMUP_FRACTION),
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, steps // 16), max_resource=steps, reduction_factor=3
        )
    return optuna.pruners.NopPruner()


# --------------------------------------------------------------------------
# Running one trial (in this process or in a worker)
# --------------------------------------------------------------------------


def _run_trial(
    configs: Sequence[dict[str, Any]], judge: Callable[[int, float], bool] | None
) -> list[dict[str, Any]]:
    """Run a trial's seeds in turn; the first one's reports go to ``judge``.

    Stops at the first seed that did not finish (pruned, diverged, error).
    Returns the runs as result dicts.
    """
    results: list[dict[str, Any]] = []
    for i, data in enumerate(configs):
        result = execute(RunConfig.from_dict(data), on_report=judge if i == 0 else None)
        results.append(result.to_dict())
        if not result.finished:
            break
    return results


def _worker_main(conn: Any, parent: int) -> None:
    """A worker: warm torch up, then run each trial the main process sends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=exit_with_parent, args=(parent,), daemon=True).start()
    from lrkit.bench.run import warm_up

    warm_up()
    conn.send(("ready", os.getpid()))
    while True:
        job = conn.recv()
        if job is None:
            return
        number = job["number"]

        def judge(step: int, value: float, number: int = number) -> bool:
            conn.send(("report", number, step, value))
            return bool(conn.recv())

        conn.send(("done", number, _run_trial(job["configs"], judge)))


class _Worker:
    """A spawned worker process and its end of the pipe."""

    def __init__(self, context: Any) -> None:
        self.conn: Any
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, os.getpid()), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.trial: Any = None  # the optuna trial it runs

    def stop(self, *, kill: bool = False) -> None:
        """Stop the process: ask an idle one to exit, kill a busy one (or one that lingers).

        A worker holds nothing that needs saving (the main process writes
        everything), so one slow to tear torch down is killed after a moment.
        """
        with contextlib.suppress(Exception):
            if kill:
                self.process.kill()
            else:
                self.conn.send(None)
        self.process.join(timeout=0.5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


class _Heartbeat:
    """Records a heartbeat for every running trial of this process, from a thread."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def add(self, trial_id: int) -> None:
        with self._lock:
            self._ids.add(trial_id)
        self._storage.record_heartbeat(trial_id)

    def remove(self, trial_id: int) -> None:
        with self._lock:
            self._ids.discard(trial_id)

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_INTERVAL):
            with self._lock:
                ids = list(self._ids)
            for trial_id in ids:
                with contextlib.suppress(Exception):  # a missed beat is retried next time
                    self._storage.record_heartbeat(trial_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_INTERVAL + 1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _reap(study: optuna.Study) -> int:
    """Mark FAIL the RUNNING (and WAITING) trials whose process died; return how many.

    Counts only the trials this call marked (other processes may finish or
    reap trials at the same time).
    """
    import optuna
    from optuna.trial import TrialState

    live = (TrialState.RUNNING, TrialState.WAITING)
    storage, host = study._storage, socket.gethostname()
    marked = 0

    def mark(trial_id: int, reason: str) -> None:
        nonlocal marked
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if storage.get_trial(trial_id).state.is_finished():
                return
            storage.set_trial_user_attr(trial_id, "reason", reason)
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                marked += 1

    # What optuna.storages.fail_stale_trials does, counting the trials it marks.
    stale = getattr(storage, "_get_stale_trial_ids", None)
    for trial_id in stale(study._study_id) if stale is not None else []:
        mark(trial_id, f"its heartbeat stopped for over {GRACE_PERIOD} s (the process died)")
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=live):
        pid = t.user_attrs.get("pid")
        if not isinstance(pid, int):
            # Not lrkit's, or taken from a waiting trial by a process killed at once:
            # every lrkit process writes its pid within a second of `ask`.
            started = t.datetime_start
            if t.state != TrialState.RUNNING or started is None:
                continue
            if (now - started).total_seconds() < GRACE_PERIOD:
                continue
            reason = "its process never recorded itself"
        elif t.user_attrs.get("host") != host or pid == os.getpid() or _alive(pid):
            continue
        else:
            reason = f"process {pid} died"
        mark(t._trial_id, reason)
    return marked


# --------------------------------------------------------------------------
# The search
# --------------------------------------------------------------------------


def _trial_doc(t: Any) -> dict[str, Any]:
    value = t.value
    return {
        "number": t.number,
        "state": t.state.name,
        "params": dict(t.params),
        "value": value if value is not None and math.isfinite(value) else None,
        "user_attrs": dict(t.user_attrs),
        "intermediate_values": {
            str(k): (v if math.isfinite(v) else None) for k, v in t.intermediate_values.items()
        },
        "datetime_start": None if t.datetime_start is None else t.datetime_start.isoformat(),
        "datetime_complete": (
            None if t.datetime_complete is None else t.datetime_complete.isoformat()
        ),
    }


def _round_lr(lr: float) -> float:
    return float(f"{lr:.2g}")


def _best(study: optuna.Study, task: Task, budget: float, seeds: int) -> TuneBest | None:
    from optuna.trial import TrialState

    from lrkit.bench.optimizers import get_optimizer

    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]
    if not done:
        return None
    sign = -1.0 if task.mode == "max" else 1.0
    best = min(done, key=lambda t: (sign * float(t.value or 0.0), t.number))
    optimizer, schedule, lr = best.params["optimizer"], best.params["schedule"], best.params["lr"]
    batch = best.params.get("batch_size")
    shown = _round_lr(lr)
    spec = RunConfig(task.ref, optimizer, schedule, shown, 0, budget).filled_schedule
    lr_flag = "--multipliers" if get_optimizer(optimizer).lr_free else "--lrs"
    command = (
        f"lrkit compare --tasks {shlex.quote(task.ref)} --optimizers {shlex.quote(optimizer)} "
        f"--schedules {shlex.quote(schedule)} {lr_flag} {shown:g}"
    )
    if batch is not None:
        command += f" --batch-sizes {int(batch)}"
    if budget != 1.0:
        command += f" --budget {budget:g}"
    if seeds > 1:
        command += f" --seeds {seeds}"
    return TuneBest(
        trial=best.number,
        task=task.ref,
        optimizer=optimizer,
        schedule=schedule,
        lr=float(lr),
        value=float(best.value or 0.0),
        metric=task.metric,
        mode=task.mode,
        spec=spec,
        command=command,
        batch_size=None if batch is None else int(batch),
    )


def _space_doc(
    task: Task,
    optimizers: Sequence[str],
    schedules: Sequence[str],
    lr_range: tuple[float, float],
    seeds: int,
    budget: float,
    batch_sizes: Sequence[int | None] = (None,),
) -> dict[str, Any]:
    code = task_code(task.identity())
    space: dict[str, Any] = {
        "task": task.ref,
        "task_code": str(code)[:16],  # its trials must be runs of one version of the task
        "metric": task.metric,
        "mode": task.mode,
        "optimizers": list(optimizers),
        "schedules": list(schedules),
        "lr_range": list(lr_range),
        "seeds": seeds,
        "budget": budget,
    }
    if tuple(batch_sizes) != (None,):  # only then: a study made before keeps its space
        space["batch_sizes"] = list(batch_sizes)
    return space


def _outcome_of(runs: list[RunResult], mode: str) -> tuple[str, float | None, dict[str, Any]]:
    """(Optuna state name, value, user attrs) of a trial's runs."""
    first = runs[0]
    attrs: dict[str, Any] = {
        "run_key": first.key,
        "steps": first.steps,
        "steps_done": first.steps_done,
    }
    if len(runs) > 1:
        attrs["run_keys"] = [r.key for r in runs if r.key]
    worst = -math.inf if mode == "max" else math.inf
    errors = [r for r in runs if r.status == "error"]
    if errors:
        attrs.update(status="error", reason=errors[0].reason, final=None)
        return "FAIL", None, attrs
    if first.status == "pruned":
        attrs.update(status="pruned", reason=first.reason, final=None)
        return "PRUNED", None, attrs
    diverged = [r for r in runs if r.status == "diverged"]
    if diverged:
        attrs.update(status="diverged", reason=diverged[0].reason, final=None)
        return "COMPLETE", worst, attrs
    finals = [float(r.final) for r in runs if r.final is not None]
    value = statistics.fmean(finals)
    status = "rescued" if any(r.status == "rescued" for r in runs) else "ok"
    attrs.update(status=status, final=value)
    return "COMPLETE", value, attrs


def _quiet_optuna(fn: Callable[..., TuneResults]) -> Callable[..., TuneResults]:
    """Silence Optuna's notes on the heartbeat API used outside ``Study.optimize``.

    The heartbeat is recorded by this module's own thread (see the module
    docstring), which is what Optuna's ``optimize`` does too.
    """

    @functools.wraps(fn)
    def quiet(*args: Any, **kwargs: Any) -> TuneResults:
        import optuna

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            return fn(*args, **kwargs)

    return quiet


@_quiet_optuna
def tune(
    task: Sequence[str | Task] | str | Task,
    *,
    optimizers: Sequence[str] | str | None = None,
    schedules: Sequence[str] | str,
    lr_range: Sequence[float] | str = (1e-5, 1.0),
    trials: int = 20,
    search: str = "tpe",
    pruner: str = "median",
    seeds: int = 1,
    workers: int = 1,
    storage: str | None = None,
    study: str = DEFAULT_STUDY,
    out: str | Path = DEFAULT_OUT,
    budget: float = 1.0,
    seed: int = 0,
    progress: TuneProgress | None = None,
    on_note: Callable[[str], None] | None = None,
    batch_sizes: Sequence[int | str] | str | None = None,
) -> TuneResults:
    """Search lr (log-uniform), optimizer and schedule for one task with Optuna.

    Args:
        task: One task: a built-in name, ``path/to/file.py:name``,
            ``package.module:name`` or an ``@lrkit.task`` function (one
            defined inside a function needs ``workers`` <= 1).
        optimizers: Optimizer names (the categorical ``optimizer``); a string
            may list several (``"sam(sgd, rho=0.1),adam"``: commas inside
            parentheses do not split).
            Default: ``adam``, or the optimizers the task is limited to
            (``digits_sgd``: ``sgd``).
        schedules: Schedule specs, ``lr`` and ``steps`` left out (``"cosine()"``);
            a string may list several, as ``optimizers``.
        lr_range: ``(low, high)`` or ``"LOW,HIGH"``: ``lr`` is log-uniform in it.
        trials: The study's total of COMPLETE + PRUNED trials to reach, across
            every process sharing the study; a rerun resumes and runs only
            the missing ones.
        search: ``"tpe"`` or ``"random"``.
        pruner: ``"median"``, ``"hyperband"`` or ``"none"``.
        seeds: Seeds per trial (run in turn; the value is the mean).
        workers: Trials at once in worker processes; 0 or 1: in this process.
        storage: An Optuna storage URL; default ``$LRKIT_STORAGE`` or
            ``sqlite:///OUT/tune.sqlite``.
        study: The study's name.
        out: Output folder: ``runs.sqlite``, ``results.json``, ``report.html``.
        budget: Scales the task's step budget.
        seed: The sampler's seed (plus the trials already in the study).
        progress: Told about each finished trial.
        on_note: Called with each note (e.g. trials marked FAIL on resume).
        batch_sizes: Batch sizes to search too (the categorical
            ``batch_size``, each trial's ``trial.batch_size``); default none:
            the task trains at its own. Not with ``search="pbt"``.

    Returns:
        A :class:`TuneResults`.

    Raises:
        TuneError: Bad input (unknown name, bad range, a task that cannot
            be loaded, several tasks, an unusable storage, a study made for
            another search space); nothing ran.
        RuntimeError: Worker processes keep dying at start-up.
        OSError: An output cannot be written.
    """
    import optuna
    from optuna.trial import TrialState

    from lrkit.bench.store import RunStore

    notes: list[str] = []

    def note(text: str) -> None:
        notes.append(text)
        if on_note is not None:
            on_note(text)

    # -- the input ---------------------------------------------------------
    if not optimizers:
        optimizers = _default_optimizers(task)
    if search == "pbt":  # Ray Tune's PopulationBasedTraining: lrkit.bench.pbt
        from lrkit.bench.pbt import tune_pbt

        if batch_sizes:
            raise TuneError(
                "--batch-sizes is not searched by --search pbt (members train at the task's "
                "own batch size); use --search tpe or random"
            )

        return tune_pbt(
            task,
            optimizers=optimizers,
            schedules=schedules,
            lr_range=lr_range,
            population=trials,
            seeds=seeds,
            workers=workers,
            storage=storage,
            out=out,
            budget=budget,
            seed=seed,
            progress=progress,
            on_note=note,
        )
    if search not in SEARCHES:
        raise TuneError(f"--search must be one of {', '.join(SEARCHES)}, got {search!r}")
    if pruner not in PRUNERS:
        raise TuneError(f"--pruner must be one of {', '.join(PRUNERS)}, got {pruner!r}")
    low_high = _lr_range(lr_range)
    total = _int_option(trials, "--trials", 1)
    workers = _int_option(workers, "--workers", 0)
    seed = _int_option(seed, "seed", 0)
    if not isinstance(study, str) or not study.strip():
        raise TuneError(f"--study must be a non-empty name, got {study!r}")
    one = _one_task(task)
    try:
        optimizer_names = split_names(optimizers, "--optimizers")
        schedule_specs = split_names(schedules, "--schedules")
    except GridError as err:
        raise TuneError(str(err)) from None
    if not optimizer_names:
        raise TuneError("--optimizers: give at least one optimizer (e.g. adam)")
    if not schedule_specs:
        raise TuneError('--schedules: give at least one spec (e.g. "cosine()")')
    try:
        grid = make_grid(
            tasks=[one],  # type: ignore[list-item]
            optimizers=optimizer_names,
            schedules=schedule_specs,
            lrs=list(low_high),
            seeds=seeds,
            budget=budget,
            batch_sizes=as_batch_sizes(batch_sizes),
        )
    except GridError as err:
        raise TuneError(str(err)) from None
    from lrkit.bench.trial import load_task

    task_obj = load_task(grid.tasks[0])
    for spec, own_lr in pinned_specs(grid).items():
        note(f"the lr search does not apply to {spec!r}: it sets its own lr ({own_lr:g})")
    if workers >= 2 and "<locals>" in task_obj.ref:
        raise TuneError(
            f"task {task_obj.ref!r} is defined inside a function: worker processes cannot "
            "load it; define it at a module's top level or use workers=1"
        )
    steps = task_obj.budget(grid.budget)
    out_path = Path(out)
    if out_path.exists() and not out_path.is_dir():
        raise TuneError(f"--out {str(out_path)!r} exists and is not a folder")
    url = storage or os.environ.get(STORAGE_ENV) or f"sqlite:///{out_path / 'tune.sqlite'}"
    if url.startswith("sqlite:///"):
        folder = Path(url[len("sqlite:///") :]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TuneError(
                f"--storage {mask_url(url)!r}: cannot create folder {str(folder)!r}: "
                f"{err.strerror or err}"
            ) from None
    shown_url = mask_url(url)
    space = _space_doc(
        task_obj,
        grid.optimizers,
        grid.schedules,
        low_high,
        grid.seeds,
        grid.budget,
        grid.batch_sizes,
    )

    # -- the study ---------------------------------------------------------
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = _open_storage(url)
    direction: Literal["minimize", "maximize"] = (
        "maximize" if task_obj.mode == "max" else "minimize"
    )
    try:
        the_study = optuna.create_study(
            storage=rdb,
            study_name=study,
            direction=direction,
            load_if_exists=True,
            pruner=_pruner(pruner, steps),
        )
    except Exception as err:
        raise TuneError(
            f"--storage {shown_url!r}: cannot open study {study!r}: {_scrub(str(err), url)}"
        ) from None
    held = the_study.user_attrs.get("lrkit_space")
    if held is None:
        try:
            the_study.set_user_attr("lrkit_space", space)
        except Exception as err:  # another process started the same study at the same moment
            held = the_study.user_attrs.get("lrkit_space")
            if held is None:
                raise TuneError(
                    f"--storage {shown_url!r}: cannot write study {study!r}: "
                    f"{_scrub(str(err), url)}"
                ) from None
    # a study begun before lrkit stored the task's code has no task_code: not compared
    mine = {k: v for k, v in space.items() if k != "task_code" or held is None or k in held}
    if held is not None and held != mine:
        differ = ", ".join(k for k in mine if held.get(k) != mine[k])
        why = (
            " (the task's code changed since the study began: its trials would mix two "
            "versions of it)"
            if held.get("task_code") != mine.get("task_code")
            else ""
        )
        raise TuneError(
            f"study {study!r} in {shown_url} searches another space (differs in: {differ})"
            f"{why}; give another --study or --out to start a new one"
        )
    if the_study.direction.name.lower() != direction:
        raise TuneError(f"study {study!r} in {shown_url} does not {direction} {task_obj.metric}")
    reaped = _reap(the_study)
    if reaped:
        note(f"{reaped} trial(s) left RUNNING by a process that died: marked FAIL (not counted)")
    the_study.sampler = _sampler(search, seed + len(the_study.get_trials(deepcopy=False)))

    counted = (TrialState.COMPLETE, TrialState.PRUNED)
    taken = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)

    def n_counted() -> int:
        return len(the_study.get_trials(deepcopy=False, states=counted))

    show = progress if progress is not None else _SilentTune()
    host, pid = socket.gethostname(), os.getpid()
    ran = failed = fails_in_a_row = 0
    stopped: str | None = None
    best_text: str | None = None
    out_path.mkdir(parents=True, exist_ok=True)
    run_store = RunStore(out_path / "runs.sqlite")
    heart = _Heartbeat(rdb)

    owner = {"host": host, "pid": pid, "metric": task_obj.metric}

    def ask() -> tuple[Any, list[dict[str, Any]]] | None:
        """A new RUNNING trial and its configs; ``None`` if the study needs no more."""
        # The trial is created WAITING with its owner, then made RUNNING by
        # `ask` (one write each): no moment has a RUNNING trial without an owner.
        the_study.enqueue_trial({}, user_attrs=owner, skip_if_exists=False)
        otrial = the_study.ask()
        if otrial.user_attrs.get("pid") != pid:  # it took another process's waiting trial
            for name, value in owner.items():
                otrial.set_user_attr(name, value)
        heart.add(otrial._trial_id)
        # Several processes may ask at once for the study's last trial. Numbers
        # are given in order (Optuna locks the study row), so the trial runs only
        # if fewer than `total` trials before it are finished or running.
        others = the_study.get_trials(deepcopy=False, states=taken)
        if sum(t.number < otrial.number for t in others) >= total:
            heart.remove(otrial._trial_id)
            with contextlib.suppress(Exception):
                otrial.set_user_attr("status", "skipped")
                otrial.set_user_attr(
                    "reason",
                    f"not run: the study's {total} trials were already finished or running "
                    "(another process asked at the same moment)",
                )
                the_study.tell(otrial, state=TrialState.FAIL)
            return None
        # The proposal is drawn with a seed of its own (seed + trial number):
        # processes sharing the study do not propose the same trials.
        the_study.sampler = _sampler(search, seed + otrial.number)
        lr = otrial.suggest_float("lr", low_high[0], low_high[1], log=True)
        optimizer = str(otrial.suggest_categorical("optimizer", list(grid.optimizers)))
        schedule = str(otrial.suggest_categorical("schedule", list(grid.schedules)))
        batch: int | None = None
        sizes = [b for b in grid.batch_sizes if b is not None]
        if sizes:
            batch = int(otrial.suggest_categorical("batch_size", sizes))
        configs = [
            RunConfig(grid.tasks[0], optimizer, schedule, lr, s, grid.budget, batch)
            for s in range(grid.seeds)
        ]
        return otrial, [c.to_dict() for c in configs]

    def judge(otrial: Any, step: int, value: float) -> bool:
        otrial.report(value, step)
        return bool(otrial.should_prune())

    def finish(otrial: Any, results: list[dict[str, Any]], died: str | None = None) -> None:
        nonlocal ran, failed, fails_in_a_row, best_text
        ran += 1
        if died is not None:
            state_name, value = "FAIL", None
            attrs: dict[str, Any] = {"status": "error", "reason": died, "final": None}
        else:
            runs = [RunResult.from_dict(d) for d in results]
            for r in runs:
                if r.key:
                    run_store.put(r, pid=int(r.env.get("pid", "0") or 0) or None)
            state_name, value, attrs = _outcome_of(runs, task_obj.mode)
        for name, attr in attrs.items():
            otrial.set_user_attr(name, attr)
        state = TrialState[state_name]
        if state == TrialState.COMPLETE:
            the_study.tell(otrial, value)
        else:
            the_study.tell(otrial, state=state)
        heart.remove(otrial._trial_id)
        if state == TrialState.FAIL:
            failed += 1
            fails_in_a_row += 1
        else:
            fails_in_a_row = 0
        frozen = the_study._storage.get_trial(otrial._trial_id)
        doc = _trial_doc(frozen)
        best = _best(the_study, task_obj, grid.budget, grid.seeds)
        if best is not None:
            best_text = f"{task_obj.metric}={best.value:.4g} (trial {best.trial})"
        doc["best"] = best_text
        doc["done"] = n_counted()
        show.update(doc)

    def room() -> int:
        """Trials this process may start: ``total`` less those finished or running anywhere."""
        if stopped is not None:
            return 0
        return total - len(the_study.get_trials(deepcopy=False, states=taken))

    def reached() -> bool:
        """Whether the search is over: the study holds ``total`` finished trials, or stopped."""
        return stopped is not None or n_counted() >= total

    waiting_said = False

    def idle() -> None:
        """Wait for trials running in other processes (they may fail: then run more)."""
        nonlocal waiting_said
        if not waiting_said:
            waiting_said = True
            note("the study's last trials are running in other processes: waiting for them")
        time.sleep(POLL_INTERVAL)
        reaped = _reap(the_study)
        if reaped:
            note(f"{reaped} trial(s) left RUNNING by a process that died: marked FAIL")

    def check_fails() -> None:
        nonlocal stopped
        if fails_in_a_row >= MAX_FAILS_IN_A_ROW and stopped is None:
            stopped = (
                f"stopped after {fails_in_a_row} failed trials in a row (the task raised); "
                "the reasons are in results.json (user_attrs.reason)"
            )

    show.start(total, n_counted(), workers)
    try:
        if workers <= 1:
            while not reached():
                if room() <= 0:
                    idle()
                    continue
                got = ask()
                if got is None:
                    continue
                otrial, configs = got
                try:
                    results = _run_trial(configs, functools.partial(judge, otrial))
                except BaseException:
                    _tell_fail(the_study, otrial, "interrupted")
                    raise
                finish(otrial, results)
                check_fails()
        else:
            _run_parallel(workers, ask, judge, finish, room, reached, idle, check_fails, the_study)
    finally:
        heart.close()
        show.finish()
    try:
        trial_docs = [_trial_doc(t) for t in the_study.get_trials(deepcopy=False)]
        best = _best(the_study, task_obj, grid.budget, grid.seeds)
        keys = [k for t in trial_docs for k in _run_keys(t["user_attrs"])]
        runs = run_store.results(keys)
    finally:
        run_store.close()
    order = {k: i for i, k in enumerate(keys)}
    runs.sort(key=lambda r: order.get(r.key, 0))
    outcome = TuneResults(
        runs=runs,
        trials=trial_docs,
        best=best,
        study=study,
        storage=shown_url,
        out=out_path,
        ran=ran,
        failed=failed,
        stopped=stopped,
        notes=notes,
    )
    _write_outputs(outcome, space, search, pruner, total)
    return outcome


def _run_keys(attrs: dict[str, Any]) -> list[str]:
    keys = attrs.get("run_keys")
    if keys is None:
        keys = [attrs["run_key"]] if attrs.get("run_key") else []
    return list(keys)


def _tell_fail(the_study: Any, otrial: Any, reason: str) -> None:
    from optuna.trial import TrialState

    with contextlib.suppress(Exception):
        otrial.set_user_attr("status", "error")
        otrial.set_user_attr("reason", reason)
        the_study.tell(otrial, state=TrialState.FAIL)


def _run_parallel(
    workers: int,
    ask: Callable[[], tuple[Any, list[dict[str, Any]]] | None],
    judge: Callable[[Any, int, float], bool],
    finish: Callable[..., None],
    room: Callable[[], int],
    reached: Callable[[], bool],
    idle: Callable[[], None],
    check_fails: Callable[[], None],
    the_study: Any,
) -> None:
    """Trials on ``workers`` spawned processes; this process asks, judges and tells."""
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")
    pool = [_Worker(context) for _ in range(workers)]
    startup_deaths = 0
    try:
        while True:
            busy = [w for w in pool if w.trial is not None]
            for w in pool:
                if w.ready and w.trial is None and room() > 0:
                    got = ask()
                    if got is None:
                        break
                    w.trial, configs = got
                    w.conn.send({"number": w.trial.number, "configs": configs})
                    busy.append(w)
            if not busy and reached():
                return
            if not busy and room() <= 0:
                idle()  # the last trials run in other processes
                continue
            handles: list[Any] = [w.conn for w in pool] + [w.process.sentinel for w in pool]
            for handle in wait(handles, timeout=1.0):
                worker = next(w for w in pool if handle in (w.conn, w.process.sentinel))
                message: Any = None
                if handle is not worker.process.sentinel:
                    with contextlib.suppress(EOFError, OSError):
                        message = worker.conn.recv()
                if message is None:
                    worker.process.join(timeout=1.0)
                    if worker.process.is_alive() or worker not in pool:
                        continue
                    # The worker died: its trial is FAIL; start another worker.
                    if worker.trial is not None:
                        code = worker.process.exitcode
                        finish(worker.trial, [], died=f"worker process died (exit code {code})")
                        check_fails()
                    elif not worker.ready:
                        startup_deaths += 1
                        if startup_deaths >= STARTUP_FAILURES:
                            raise RuntimeError(
                                f"worker processes died {startup_deaths} times while starting "
                                "up; a script calling lrkit.tune(workers>=2) needs an "
                                "`if __name__ == '__main__':` guard"
                            )
                    worker.stop(kill=True)
                    pool[pool.index(worker)] = _Worker(context)
                    continue
                kind = message[0]
                if kind == "ready":
                    worker.ready = True
                    startup_deaths = 0
                elif kind == "report":
                    _, _, step, value = message
                    worker.conn.send(judge(worker.trial, step, value))
                elif kind == "done":
                    otrial, worker.trial = worker.trial, None
                    finish(otrial, message[2])
                    check_fails()
    finally:
        for w in pool:
            if w.trial is not None:
                _tell_fail(the_study, w.trial, "interrupted")
                w.stop(kill=True)
            else:
                w.stop()


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------


def _write_outputs(
    results: TuneResults, space: dict[str, Any], search: str, pruner: str, total: int
) -> None:
    """Write ``OUT/results.json`` and ``OUT/report.html`` (with ``OUT/runs/``)."""
    import lrkit
    from lrkit.bench.compare import write_json_atomic
    from lrkit.bench.tune_report import write_tune_report

    doc = {
        "lrkit_version": lrkit.__version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "study": results.study,
        "storage": results.storage,
        "direction": "maximize" if space["mode"] == "max" else "minimize",
        "space": space,
        "search": search,
        "pruner": pruner,
        "trials_wanted": total,
        "counts": results.counts(),
        "stopped": results.stopped,
        "best": None if results.best is None else results.best.to_dict(),
        "trials": results.trials,
        "store": str(results.out / "runs.sqlite"),
    }
    write_json_atomic(results.out / "results.json", doc)
    write_tune_report(results, space, results.out)
