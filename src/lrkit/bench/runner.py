"""Run a grid's pending runs on an executor, storing each result as it arrives.

:func:`run_grid` takes run configs and a :class:`~lrkit.bench.store.RunStore`,
skips the configs whose key the store already holds, and hands the rest to
an :class:`Executor`, a run being a plain function of its config
(:func:`~lrkit.bench.run.execute_dict`: a config dict in, a result dict out):

- :class:`ProcessExecutor` (``workers >= 1``): a
  :class:`concurrent.futures.ProcessPoolExecutor` of ``spawn``-ed processes,
  each of which imports torch once (:func:`~lrkit.bench.run.warm_up`), uses
  one torch thread and watches that the main process is alive;
- :class:`InlineExecutor` (``workers=0``): in this process, one run after
  another (for debugging, and for measuring the runner's own cost).

A cluster engine plugs in through the same :class:`Executor` interface
(:class:`lrkit.bench.ray_executor.RayExecutor`: each run a Ray task).

The main process is the store's only writer: each result is written in one
transaction as soon as it comes back, so a kill of the main process at any
moment loses no finished run and leaves no partial row, and the next call
runs only what is missing. A run that raises is data (status ``error``),
never a crash of the loop.

A worker process that dies mid-run (killed, out of memory) breaks the pool:
the pool is started again and every run that was in flight is run again,
from then on alone (nothing else in flight), so that a death can be blamed
on the run that caused it; a run whose worker died :data:`MAX_ATTEMPTS`
times while it ran alone is stored as ``error``. If the pool breaks
:data:`STARTUP_FAILURES` times in a row with no worker having started up, the runner stops with
:class:`WorkersFailed` (e.g. ``run_grid`` called from a script without a
``if __name__ == "__main__":`` guard). Workers never outlive the main
process, and Ctrl-C stops them and keeps what was stored.

The numbers of a run do not depend on which worker ran it, or on how many
there were: :func:`~lrkit.bench.run.execute` seeds everything from the config.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Protocol

from lrkit.bench.progress import (
    PlainProgress,
    Progress,
    RichProgress,
    _Silent,
    describe,
    make_progress,
)
from lrkit.bench.run import RunConfig, RunResult, execute_dict, warm_up
from lrkit.bench.store import RunStore

__all__ = [
    "MAX_ATTEMPTS",
    "Executor",
    "InlineExecutor",
    "PlainProgress",
    "ProcessExecutor",
    "Progress",
    "RichProgress",
    "RunnerReport",
    "TaskChanged",
    "WorkersFailed",
    "default_workers",
    "make_executor",
    "make_progress",
    "run_grid",
]

#: Seconds between a worker's checks that the main process is alive.
WATCHDOG_PERIOD = 0.2

#: A run whose worker died this many times while it ran alone is stored as ``error``.
MAX_ATTEMPTS = 3

#: Pool breaks in a row before any result came back: the runner gives up.
STARTUP_FAILURES = 3


class WorkersFailed(RuntimeError):
    """Worker processes keep dying before they return a single result."""


class TaskChanged(RuntimeError):
    """A task's code changed while its runs ran: a run came back under another key.

    Its runs are stored under the new code's keys (a later call with that
    code reads them); the grid's results would mix two versions, so the
    runner stops submitting and says so.
    """


# --------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------


class Executor(Protocol):
    """Where runs execute. ``submit`` returns a future of the result dict.

    A future that fails with ``BrokenExecutor`` means the worker died; the
    runner then calls :meth:`restart` and submits the lost runs again.
    """

    #: How many runs may be in flight at once.
    capacity: int

    def submit(self, config: dict[str, Any]) -> cf.Future[dict[str, Any]]:
        """Start one run (a :meth:`RunConfig.to_dict`)."""
        ...

    def restart(self) -> None:
        """Replace broken workers."""
        ...

    def pids(self) -> list[int]:
        """The worker processes' ids (empty when none)."""
        ...

    def started(self) -> int:
        """Workers of the current pool that finished starting up (0 after a restart)."""
        ...

    def shutdown(self, *, kill: bool = False) -> None:
        """Stop the workers; ``kill``: do not wait for busy ones."""
        ...


class InlineExecutor:
    """Runs each config in this process when it is submitted (``workers=0``)."""

    capacity = 1

    def __init__(self) -> None:
        self._warm = False

    def submit(self, config: dict[str, Any]) -> cf.Future[dict[str, Any]]:
        if not self._warm:  # torch's one-off start-up, kept out of the first run's wall time
            self._warm = True
            if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
                warm_up()
        future: cf.Future[dict[str, Any]] = cf.Future()
        future.set_result(execute_dict(config))
        return future

    def restart(self) -> None:
        pass

    def pids(self) -> list[int]:
        return []

    def started(self) -> int:
        return 1

    def shutdown(self, *, kill: bool = False) -> None:
        pass


def exit_with_parent(parent: int) -> None:
    """Exit this process at once when ``parent`` is no longer its parent."""
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(WATCHDOG_PERIOD)


def _init_worker(parent: int, ready: Any) -> None:
    """A worker's start: Ctrl-C is the main process's, watch the parent, warm torch up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=exit_with_parent, args=(parent,), daemon=True).start()
    warm_up()
    with ready.get_lock():
        ready.value += 1


class ProcessExecutor:
    """A pool of ``workers`` spawned processes (``concurrent.futures``)."""

    def __init__(self, workers: int) -> None:
        self.capacity = workers
        self._context = multiprocessing.get_context("spawn")
        self._seen: list[int] = []
        self._pool = self._start()

    def _start(self) -> cf.ProcessPoolExecutor:
        self._ready = self._context.Value("i", 0)
        return cf.ProcessPoolExecutor(
            max_workers=self.capacity,
            mp_context=self._context,
            initializer=_init_worker,
            initargs=(os.getpid(), self._ready),
        )

    def started(self) -> int:
        """Workers of the current pool that finished starting up."""
        return int(self._ready.value)

    def submit(self, config: dict[str, Any]) -> cf.Future[dict[str, Any]]:
        return self._pool.submit(execute_dict, config)

    def restart(self) -> None:
        self.shutdown(kill=True)
        self._pool = self._start()

    def pids(self) -> list[int]:
        processes = getattr(self._pool, "_processes", None) or {}
        for pid in processes:
            if pid not in self._seen:
                self._seen.append(pid)
        return list(self._seen)

    def shutdown(self, *, kill: bool = False) -> None:
        self.pids()
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        if kill:
            for process in processes:
                with contextlib.suppress(Exception):
                    process.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    """The default worker count: the number of CPU cores (at least 1)."""
    return max(1, os.cpu_count() or 1)


def make_executor(workers: int) -> Executor:
    """:class:`InlineExecutor` for 0 workers, else a :class:`ProcessExecutor`."""
    return InlineExecutor() if workers == 0 else ProcessExecutor(workers)


# --------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------


@dataclass
class RunnerReport:
    """What :func:`run_grid` did.

    Attributes:
        total: Distinct runs in the grid.
        skipped: Runs already in the store, not run again.
        ran: Runs executed and stored now.
        retried: Runs started again because their worker died.
        errors: Runs stored now with status ``error``.
        workers: Runs in flight at once: worker processes, or Ray CPUs (0: in this process).
        wall_time: Seconds for the whole call.
        keys: The grid's keys, in grid order.
        worker_pids: The worker processes' ids.
    """

    total: int
    skipped: int
    ran: int = 0
    retried: int = 0
    errors: int = 0
    workers: int = 0
    wall_time: float = 0.0
    keys: list[str] = field(default_factory=list)
    worker_pids: list[int] = field(default_factory=list)


def _died(config: RunConfig, attempts: int) -> RunResult:
    """The ``error`` result of a run whose worker process died ``attempts`` times."""
    return _error(
        config,
        f"WorkerDied: the worker process running it died {attempts} times "
        "(killed, or out of memory?)",
    )


def _error(config: RunConfig, reason: str, trace: str | None = None) -> RunResult:
    """An ``error`` result made by the runner (the run could not be executed)."""
    task = config.task_object
    return RunResult(
        key=config.key(),
        config=config.to_dict(),
        identity=config.identity(),
        status="error",
        metric=task.metric,
        mode=task.mode,
        target=task.target,
        steps=config.steps,
        task=task.name,
        reason=reason,
        traceback=trace,
    )


def _trace(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc))


def run_grid(
    configs: Sequence[RunConfig],
    store: RunStore,
    *,
    workers: int | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> RunnerReport:
    """Run every config whose key is not yet in ``store``, storing each result.

    Configs with equal keys run once. Results are written as they arrive, so
    an interruption keeps every finished run.

    Args:
        configs: The runs (e.g. from :func:`lrkit.bench.grid.expand_grid`).
        store: Where results go; its keys say what is finished.
        workers: Worker processes (default: the CPU count; never more than
            the pending runs); ``0`` runs everything in this process.
        executor: Run on this executor instead (``workers`` is then ignored;
            the caller shuts it down).
        progress: Told about each finished run (default: silent).

    Returns:
        A :class:`RunnerReport`.

    Raises:
        ValueError: If ``workers`` is negative.
        WorkersFailed: If worker processes keep dying before any run returns.
    """
    start = time.perf_counter()
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    progress = progress if progress is not None else _Silent()
    unique: dict[str, RunConfig] = {}
    for config in configs:
        unique.setdefault(config.key(), config)
    done = store.done_keys()
    pending = [config for key, config in unique.items() if key not in done]
    report = RunnerReport(total=len(unique), skipped=len(unique) - len(pending), keys=list(unique))
    own = executor is None and bool(pending)
    if executor is None:
        executor = make_executor(min(workers, len(pending)) if pending else 0)
    report.workers = 0 if isinstance(executor, InlineExecutor) else executor.capacity
    progress.start(report.total, report.skipped, report.workers)
    try:
        _drive(pending, store, executor, report, progress)
    except BaseException:
        if own:
            executor.shutdown(kill=True)
            own = False
        raise
    finally:
        report.worker_pids = executor.pids()
        if own:
            executor.shutdown()
        progress.finish()
        report.wall_time = time.perf_counter() - start
    return report


def _drive(
    pending: list[RunConfig],
    store: RunStore,
    executor: Executor,
    report: RunnerReport,
    progress: Progress,
) -> None:
    """Keep the executor full, store results as they come, retry runs of dead workers."""
    queue = deque(pending)
    deaths: dict[str, int] = {}  # worker deaths while a run was alone in flight
    suspects: set[str] = set()  # in flight when a pool broke: from now on run alone
    flight: dict[cf.Future[dict[str, Any]], RunConfig] = {}
    breaks = 0  # pool breaks in a row in which no worker finished starting up

    changed: list[str] = []  # tasks whose runs came back under another key (code edited)

    def store_result(result: RunResult, config: RunConfig) -> None:
        pid = result.env.get("pid")
        store.put(result, pid=int(pid) if pid else None)
        report.ran += 1
        report.errors += result.status == "error"
        progress.update(result)
        if result.key and result.key != config.key() and config.task not in changed:
            changed.append(config.task)
            queue.clear()  # submit nothing more: finish what is in flight, then say why

    def may_submit() -> bool:
        if not queue or len(flight) >= executor.capacity:
            return False
        alone = any(c.key() in suspects for c in flight.values())
        return not alone and (not flight or queue[0].key() not in suspects)

    while queue or flight:
        while may_submit():
            config = queue.popleft()
            flight[executor.submit(config.to_dict())] = config
        finished, _ = cf.wait(list(flight), return_when=cf.FIRST_COMPLETED)
        broken: list[RunConfig] = []
        for future in finished:
            config = flight.pop(future)
            try:
                data = future.result()
            except (BrokenProcessPool, cf.BrokenExecutor):
                broken.append(config)
                continue
            except Exception as exc:  # the worker could not even start the run
                store_result(_error(config, f"{type(exc).__name__}: {exc}", _trace(exc)), config)
                continue
            store_result(RunResult.from_dict(data), config)
        if not broken:
            continue
        # Every run in flight went down with the pool: collect them all.
        for future, config in list(flight.items()):
            try:
                store_result(RunResult.from_dict(future.result()), config)
            except (BrokenProcessPool, cf.BrokenExecutor):
                broken.append(config)
        flight.clear()
        started = executor.started()
        breaks = 0 if started else breaks + 1
        if breaks >= STARTUP_FAILURES:
            raise WorkersFailed(
                f"{breaks} times in a row the worker processes died while starting up, before "
                "running anything (their errors are above). Nothing finished was lost. If you "
                "call run_grid or lrkit.compare from a script, put the call under "
                "`if __name__ == '__main__':` (workers are spawned and import your script)."
            )
        executor.restart()
        alone = len(broken) == 1 and started
        for config in reversed(broken):
            key = config.key()
            if alone:  # it ran alone: its own death
                deaths[key] = deaths.get(key, 0) + 1
            suspects.add(key)
            if deaths.get(key, 0) >= MAX_ATTEMPTS:
                store_result(_died(config, deaths[key]), config)
                continue
            report.retried += 1
            print(
                f"warning: a worker process died while running {describe(config.to_dict())};"
                " running it again, alone",
                file=sys.stderr,
                flush=True,
            )
            queue.appendleft(config)
    if changed:
        raise TaskChanged(
            f"the code of task(s) {', '.join(map(repr, changed))} changed while the runs ran: "
            "runs of the new code are kept in the store under its own keys, but this grid's "
            "results would mix the two versions, so the rest was not started; run the same "
            "command again to run the grid on the new code"
        )
