"""Run a grid's pending runs in persistent worker processes, storing each result.

:func:`run_grid` takes run configs and a :class:`~lrkit.bench.store.RunStore`,
skips the configs whose key the store already holds, and runs the rest:

- in ``workers`` persistent processes (``multiprocessing``'s ``spawn``
  context), each of which imports torch once, calls
  :func:`~lrkit.bench.run.warm_up`, uses one torch thread, and then runs one
  config after another as the main process hands them out;
- with ``workers=0``, in this process, one after another (for debugging and
  for measuring the runner's own overhead).

Each result is sent back as soon as its run ends and written by the main
process, the store's only writer, in one transaction. So a kill of the main
process at any moment loses no finished run and leaves no partial row, and
the next call runs only what is missing.

Workers never outlive the main process: each blocks on its own pipe to the
main process (which it alone shares with it, so the pipe reports
end-of-file when the main process is gone), and a watchdog thread checks
every 0.2 s that its parent is still the main process, so a worker busy in
a run exits too. Ctrl-C stops the workers and keeps what was stored.

The numbers of a run do not depend on which worker ran it, or on how many
there were: :func:`~lrkit.bench.run.execute` seeds everything from the
config.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from lrkit.bench.progress import (
    PlainProgress,
    Progress,
    RichProgress,
    _Silent,
    describe,
    make_progress,
)
from lrkit.bench.run import RunConfig, RunResult, execute, warm_up
from lrkit.bench.store import RunStore

__all__ = [
    "PlainProgress",
    "Progress",
    "RichProgress",
    "RunnerReport",
    "WorkersFailed",
    "make_progress",
    "run_grid",
]

#: Seconds between a worker's checks that the main process is alive.
WATCHDOG_PERIOD = 0.2

#: Seconds a worker may take to exit after being asked, before it is killed.
STOP_GRACE = 5.0


# --------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------


def _watchdog(parent: int) -> None:
    """Exit this process at once when ``parent`` is no longer its parent."""
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(WATCHDOG_PERIOD)


def _worker_main(conn: Connection, parent: int) -> None:
    """A worker: warm up, then run each config received until told to stop.

    Receives config dicts, sends back ``(index, result dict)``; ``None``
    stops it. End-of-file on the pipe or a changed parent ends it too.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    threading.Thread(target=_watchdog, args=(parent,), daemon=True).start()
    warm_up()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        if message is None:  # done: skip the interpreter's slow teardown of torch
            conn.close()
            os._exit(0)
        index, data = message
        result = execute(RunConfig.from_dict(data))
        try:
            conn.send((index, result.to_dict()))
        except OSError:
            os._exit(0)


@dataclass
class _Worker:
    process: Any
    conn: Connection
    job: int | None = None
    results: int = 0


#: Workers in a row that die before returning any result: the runner gives up.
STARTUP_FAILURES = 3


class WorkersFailed(RuntimeError):
    """Worker processes keep dying before they return a single result."""


def _start_worker(context: Any) -> _Worker:
    parent_end, child_end = context.Pipe(duplex=True)
    process = context.Process(
        target=_worker_main, args=(child_end, os.getpid()), daemon=True, name="lrkit-worker"
    )
    process.start()
    child_end.close()  # only the worker holds its end: its exit means EOF here
    return _Worker(process=process, conn=parent_end)


def _stop_workers(workers: Sequence[_Worker]) -> None:
    for worker in workers:
        with contextlib.suppress(OSError):
            worker.conn.send(None)
    deadline = time.monotonic() + STOP_GRACE
    for worker in workers:
        if worker.job is not None:  # busy: do not wait for its run to end
            worker.process.terminate()
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()


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
        lost: Runs whose worker died; not stored (the next call retries them).
        workers: Worker processes used (0: in this process).
        wall_time: Seconds for the whole call.
        keys: The grid's keys, in grid order.
        worker_pids: The worker processes' ids.
    """

    total: int
    skipped: int
    ran: int = 0
    lost: list[str] = field(default_factory=list)
    workers: int = 0
    wall_time: float = 0.0
    keys: list[str] = field(default_factory=list)
    worker_pids: list[int] = field(default_factory=list)


def default_workers() -> int:
    """The default worker count: the number of CPU cores (at least 1)."""
    return max(1, os.cpu_count() or 1)


def run_grid(
    configs: Sequence[RunConfig],
    store: RunStore,
    *,
    workers: int | None = None,
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
        progress: Told about each finished run (default: silent).

    Returns:
        A :class:`RunnerReport`.

    Raises:
        ValueError: If ``workers`` is negative.
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
    pending = [(key, config) for key, config in unique.items() if key not in done]
    report = RunnerReport(total=len(unique), skipped=len(unique) - len(pending), keys=list(unique))
    report.workers = min(workers, len(pending))
    progress.start(report.total, report.skipped, report.workers)
    try:
        if report.workers == 0:
            for _key, config in pending:
                result = execute(config)
                store.put(result, pid=os.getpid())
                report.ran += 1
                progress.update(result)
        else:
            _run_in_workers(pending, store, report, progress)
    finally:
        progress.finish()
        report.wall_time = time.perf_counter() - start
    return report


def _run_in_workers(
    pending: list[tuple[str, RunConfig]],
    store: RunStore,
    report: RunnerReport,
    progress: Progress,
) -> None:
    context = multiprocessing.get_context("spawn")
    queue = deque(range(len(pending)))
    pool = [_start_worker(context) for _ in range(report.workers)]
    report.worker_pids = [w.process.pid for w in pool]
    failures = [0]  # workers in a row that died before returning a result

    def dispatch(worker: _Worker) -> None:
        if queue:
            index = queue.popleft()
            worker.job = index
            # A worker that died already shows as EOF in wait(), and is replaced there.
            with contextlib.suppress(OSError):
                worker.conn.send((index, pending[index][1].to_dict()))
        else:
            worker.job = None

    try:
        for worker in pool:
            dispatch(worker)
        while any(w.job is not None for w in pool):
            busy = {w.conn: w for w in pool if w.job is not None}
            for conn in wait(list(busy)):
                worker = busy[conn]  # type: ignore[index]
                try:
                    _index, data = worker.conn.recv()
                except (EOFError, OSError):
                    failures[0] = failures[0] + 1 if worker.results == 0 else 0
                    if failures[0] >= STARTUP_FAILURES:
                        _give_up(worker, pending, report)
                    _replace_dead(worker, pool, pending, report, context, dispatch, bool(queue))
                    continue
                worker.results += 1
                failures[0] = 0
                dispatch(worker)  # the worker starts its next run before we write
                result = RunResult.from_dict(data)
                store.put(result, pid=worker.process.pid)
                report.ran += 1
                progress.update(result)
    finally:
        _stop_workers(pool)


def _give_up(worker: _Worker, pending: list[tuple[str, RunConfig]], report: RunnerReport) -> None:
    assert worker.job is not None
    report.lost.append(pending[worker.job][0])
    worker.process.join(1.0)
    raise WorkersFailed(
        f"{STARTUP_FAILURES} worker processes in a row died before finishing a run "
        f"(last exit code {worker.process.exitcode}; their errors are above). Nothing "
        "finished was lost. If you call run_grid from a script, put the call under "
        "`if __name__ == '__main__':` (workers are spawned and import your script)."
    )


def _replace_dead(
    worker: _Worker,
    pool: list[_Worker],
    pending: list[tuple[str, RunConfig]],
    report: RunnerReport,
    context: Any,
    dispatch: Any,
    more: bool,
) -> None:
    """A worker died mid-run: give up its run (not stored); replace it if ``more`` runs wait."""
    assert worker.job is not None
    report.lost.append(pending[worker.job][0])
    worker.process.join(1.0)
    code = worker.process.exitcode
    print(
        f"warning: worker {worker.process.pid} died (exit code {code}) while running "
        f"{describe(pending[worker.job][1].to_dict())}; that run is not stored",
        file=sys.stderr,
        flush=True,
    )
    worker.conn.close()
    worker.job = None
    if not more:
        return
    replacement = _start_worker(context)
    pool[pool.index(worker)] = replacement
    report.worker_pids.append(replacement.process.pid)
    dispatch(replacement)
