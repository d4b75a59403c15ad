"""Runs on Ray: each run a Ray task, the store staying on the driver.

:class:`RayExecutor` is an :class:`~lrkit.bench.runner.Executor`: it submits
:func:`~lrkit.bench.run.execute_dict` as a Ray task per run and hands back a
:class:`concurrent.futures.Future` of the result dict, so
:func:`~lrkit.bench.runner.run_grid` drives it exactly as it drives local
worker processes: the driver is the store's only writer (resume, no run lost
or run twice), a run whose worker died is retried (then ``error`` after
:data:`~lrkit.bench.runner.MAX_ATTEMPTS`), a run that raises is ``error`` at
once. The numbers do not depend on where a run ran: :func:`execute` seeds
everything from the config.

Where Ray comes from:

- ``address=None``: a new local Ray, for this executor only (``ray.init(
  address="local")``: never some other cluster already running), stopped by
  :meth:`RayExecutor.shutdown`. A watchdog process stops every process of it
  when the driver dies (``kill -9``), which Ray alone does not: its agents
  outlive the driver. Every process of that Ray carries the environment
  variable :data:`OWNER_VARIABLE`, so the watchdog finds them all.
- ``address="auto"``, ``"HOST:6379"`` or ``"ray://HOST:10001"``: joins that
  cluster (left running at the end).
- Ray already initialised in this process (``ray.init`` called by the
  caller, e.g. a notebook or a test session): that Ray is used and left as it is.

Task files (``path/to/train.py:name``) travel with the job: their folder
(the deepest folder holding all of them) is the job's Ray ``working_dir``,
uploaded to every node; a worker loads the file from its copy there and
registers it under the reference the grid uses, so a run's key is the same
on every node (a user task's key depends on its source, not its path).
Tasks given as ``package.module:name`` must be importable on every node.

Ray is imported here only, and only when an executor is made.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lrkit.bench.grid import GridError

__all__ = ["OWNER_VARIABLE", "RayExecutor", "RayUnavailable", "WorkerDied", "start_local_ray"]

#: Set in every process of a local Ray started by lrkit; its value names that Ray.
OWNER_VARIABLE = "LRKIT_RAY_OWNER"

#: Seconds the driver waits for the watchdog to finish stopping a local Ray.
STOP_TIMEOUT = 20.0

#: Files of a task's folder that are not uploaded with the job.
EXCLUDES = [".git", ".venv", "venv", "__pycache__", "*.sqlite", "*.sqlite-*", "lrkit-report"]

INSTALL_HINT = "pip install 'lrkit[ray]'"

#: Ray's switch for token authentication (set by ``ray.init`` for a local cluster).
AUTH_MODE = "RAY_AUTH_MODE"


class RayUnavailable(GridError):
    """Ray is not installed, or the cluster cannot be reached or used."""


class WorkerDied(cf.BrokenExecutor):
    """The Ray worker (or node) running a run died; the runner runs it again."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailable(
            f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}"
        ) from None
    return ray


# --------------------------------------------------------------------------
# A local Ray that dies with its driver
# --------------------------------------------------------------------------

# Runs in its own process and session (stdlib only, so it starts at once).
# Until its stdin closes (the driver closes it after ray.shutdown(); the
# kernel closes it when the driver dies) it notes, twice a second, every
# process below the driver's children that run Ray's own programs (gcs_server,
# raylet, ... under RAY_DIR): Ray's agents and workers start below those, and
# outlive the driver when it is killed. Then it SIGKILLs each noted process
# still alive (same start time: not a reused pid), its descendants, and any
# process whose environment carries the owner entry, until none is left.
_WATCHDOG = r"""
import os, select, signal, sys, time
entry = ("\0" + sys.argv[1] + "\0").encode()
driver, me, ray_dir = int(sys.argv[2]), os.getpid(), sys.argv[3].encode()
signal.signal(signal.SIGINT, signal.SIG_IGN)


def table():
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as file:
                    fields = file.read().rsplit(b")", 1)[1].split()
                if fields[0] != b"Z":  # a zombie is dead already
                    procs[int(name)] = (int(fields[1]), fields[19])  # parent, start time
            except (OSError, IndexError, ValueError):
                pass
    return procs


def read(pid, what):
    try:
        with open(f"/proc/{pid}/{what}", "rb") as file:
            return file.read()
    except OSError:
        return b""


known = {}  # pid -> start time: Ray's processes seen so far


def note(procs):
    roots = [p for p, (ppid, _) in procs.items() if ppid == driver and p not in known]
    roots = [p for p in roots if p != me and ray_dir in read(p, "cmdline")]
    children = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    stack = roots + [p for p, t in known.items() if procs.get(p, (0, None))[1] == t]
    while stack:
        pid = stack.pop()
        if pid not in known and pid in procs:
            known[pid] = procs[pid][1]
        stack.extend(c for c in children.get(pid, []) if c not in known and c != me)


while True:
    if select.select([sys.stdin], [], [], 0.5)[0] and not os.read(0, 65536):
        break
    note(table())

quiet, deadline = 0, time.monotonic() + float(sys.argv[4])
while quiet < 3 and time.monotonic() < deadline:
    procs = table()
    note(procs)
    victims = [p for p, t in known.items() if procs.get(p, (0, None))[1] == t]
    victims += [p for p in procs if p not in known and entry in b"\0" + read(p, "environ")]
    victims = [p for p in victims if p not in (me, driver)]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    quiet = 0 if victims else quiet + 1
    time.sleep(0.1)
"""


class LocalRay:
    """A local Ray started by :func:`start_local_ray`; :meth:`stop` ends every process of it."""

    def __init__(self, token: str, watchdog: subprocess.Popen[bytes] | None) -> None:
        self.token = token
        self._watchdog = watchdog
        # ray.init sets RAY_AUTH_MODE for its local cluster in os.environ: undone at stop
        self._auth_mode = os.environ.get(AUTH_MODE)

    def stop(self) -> None:
        """Shut Ray down, then have the watchdog kill whatever of it is left."""
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            with contextlib.suppress(Exception):
                ray.shutdown()
        if self._auth_mode is None:
            os.environ.pop(AUTH_MODE, None)
        else:
            os.environ[AUTH_MODE] = self._auth_mode
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            with contextlib.suppress(OSError):
                watchdog.stdin.close()  # type: ignore[union-attr]
            try:
                watchdog.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()


def start_local_ray(num_cpus: int, runtime_env: dict[str, Any] | None = None) -> LocalRay:
    """Start a new local Ray of ``num_cpus`` CPUs in this process; it dies with this process.

    Raises:
        RayUnavailable: Ray is missing or does not start.
    """
    ray = _import_ray()
    token = uuid.uuid4().hex
    entry = f"{OWNER_VARIABLE}={token}"
    ray_dir = os.path.dirname(ray.__file__)
    watchdog: subprocess.Popen[bytes] | None = None
    if os.path.isdir("/proc"):
        watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, entry, str(os.getpid()), ray_dir, str(STOP_TIMEOUT)],
            stdin=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the terminal does not stop it
        )
    local = LocalRay(token, watchdog)
    previous = os.environ.get(OWNER_VARIABLE)
    os.environ[OWNER_VARIABLE] = token  # inherited by every process of this Ray
    try:
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.WARNING,
            runtime_env=runtime_env,
        )
    except BaseException as exc:
        local.stop()
        if isinstance(exc, Exception):
            reason = f"{type(exc).__name__}: {exc}"
            raise RayUnavailable(f"a local Ray did not start: {reason}") from None
        raise
    finally:
        if previous is None:
            os.environ.pop(OWNER_VARIABLE, None)
        else:
            os.environ[OWNER_VARIABLE] = previous
    return local


# --------------------------------------------------------------------------
# Task files travel with the job
# --------------------------------------------------------------------------


def task_files(tasks: Sequence[str]) -> tuple[Path | None, dict[str, str]]:
    """The job's working dir and, per file task reference, its reference inside it.

    ``["/home/me/exp/train.py:net", "digits"]`` -> ``(/home/me/exp, {"/home/me/exp/train.py:net":
    "train.py:net"})``; ``(None, {})`` when no task is a file.
    """
    from lrkit.bench.trial import _is_file_ref

    paths: dict[str, tuple[Path, str]] = {}
    for ref in tasks:
        left, sep, name = ref.strip().rpartition(":")
        if sep and left and _is_file_ref(left):
            paths[ref] = (Path(left).expanduser().resolve(), name)
    if not paths:
        return None, {}
    root = Path(os.path.commonpath([str(path.parent) for path, _ in paths.values()]))
    inside = {ref: f"{p.relative_to(root).as_posix()}:{name}" for ref, (p, name) in paths.items()}
    return root, inside


def run_on_worker(config: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    """A Ray task: load the job's task files from the working dir, run ``config``.

    Each file is loaded from the worker's copy (the current folder) and
    registered under the reference the driver used, so the config resolves
    to it unchanged.
    """
    import dataclasses
    import importlib.util

    from lrkit.bench.run import execute_dict, warm_up
    from lrkit.bench.trial import load_task, register_task

    for ref, local in files.items():
        register_task(dataclasses.replace(load_task(local), ref=ref))
    if "torch" not in sys.modules and importlib.util.find_spec("torch") is not None:
        warm_up()  # once per worker: no run's wall time pays torch's start-up
    return execute_dict(config)


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast on a ``HOST:PORT`` or ``ray://HOST:PORT`` nobody answers at.

    ``ray.init`` itself keeps retrying an unreachable address for many minutes.
    """
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return  # "auto": Ray finds the cluster on this machine, or says there is none
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayUnavailable(
            f"cannot reach the Ray cluster at {address!r} ({exc}); is `ray start --head` "
            "running there, and the port open?"
        ) from None


def _upload(env: dict[str, Any]) -> dict[str, Any]:
    """Upload a local ``working_dir`` to the Ray this process is connected to; return its URI.

    Ray takes a local folder only in ``ray.init``'s runtime_env; a Ray that the
    caller initialised gets it through the upload ``ray.init`` itself uses.
    """
    try:
        from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

        uploaded = upload_working_dir_if_needed(
            dict(env),
            include_gitignore=os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1",
            logger=logging.getLogger("lrkit"),
        )
    except (ImportError, TypeError) as exc:
        raise RayUnavailable(
            "task files go with the job as Ray's working_dir, which this Ray version takes only "
            f"in ray.init ({type(exc).__name__}: {exc}): call ray.init(runtime_env="
            f"{{'working_dir': {env['working_dir']!r}}}) yourself, or leave Ray to lrkit"
        ) from None
    uploaded.pop("excludes", None)
    return dict(uploaded)


# --------------------------------------------------------------------------
# The executor
# --------------------------------------------------------------------------


class RayExecutor:
    """Runs each config as a Ray task (see the module docstring).

    Args:
        workers: Runs in flight at once; for a new local Ray also its CPUs
            (default: the CPU count; on a cluster, the cluster's CPUs).
        address: ``None`` for a new local Ray; ``"auto"``, ``"HOST:PORT"``
            or ``"ray://HOST:PORT"`` to join a cluster.
        tasks: The grid's task references (task files go with the job).

    Raises:
        RayUnavailable: Ray is not installed, does not start, or the cluster
            cannot be reached.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        address: str | None = None,
        tasks: Sequence[str] = (),
    ) -> None:
        if workers is not None and (isinstance(workers, bool) or workers < 1):
            raise GridError(f"--workers must be >= 1 with --executor ray, got {workers!r}")
        ray = _import_ray()
        self._ray = ray
        self._local: LocalRay | None = None
        self._joined = False
        root, self._files = task_files(tasks)
        env: dict[str, Any] | None = None
        if root is not None:
            env = {"working_dir": str(root), "excludes": EXCLUDES}
        options: dict[str, Any] = {"num_cpus": 1, "max_retries": 0}
        if ray.is_initialized():
            if env is not None:  # the caller's Ray: the folder goes with each task
                options["runtime_env"] = _upload(env)
        elif address is None:
            self._local = start_local_ray(workers or os.cpu_count() or 1, env)
        else:
            _check_reachable(address)
            try:
                ray.init(address=address, runtime_env=env, logging_level=logging.WARNING)
            except Exception as exc:
                raise RayUnavailable(
                    f"cannot join the Ray cluster at {address!r}: {type(exc).__name__}: {exc}"
                ) from None
            self._joined = True
        if workers is not None:
            self.capacity = workers
        elif self._local is not None:
            self.capacity = os.cpu_count() or 1
        else:  # the cluster's CPUs
            self.capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(run_on_worker).options(**options)
        self._flight: dict[Any, cf.Future[dict[str, Any]]] = {}
        self._seen: list[int] = []

    def submit(self, config: dict[str, Any]) -> cf.Future[dict[str, Any]]:
        """Start ``config`` as a Ray task; its future fails with :class:`WorkerDied` if it dies."""
        ref = self._remote.remote(config, self._files)
        future: cf.Future[dict[str, Any]] = cf.Future()
        self._flight[ref] = future
        ref.future().add_done_callback(lambda done: self._settle(ref, future, done))
        return future

    def _settle(self, ref: Any, future: cf.Future[dict[str, Any]], done: cf.Future[Any]) -> None:
        self._flight.pop(ref, None)
        exceptions = self._ray.exceptions
        died = (
            exceptions.WorkerCrashedError,
            exceptions.NodeDiedError,
            exceptions.LocalRayletDiedError,
            exceptions.OutOfMemoryError,
            exceptions.ObjectLostError,
        )
        try:
            data = done.result()
        except died as exc:
            future.set_exception(WorkerDied(f"{type(exc).__name__}: {exc}"))
        except BaseException as exc:
            future.set_exception(exc)
        else:
            pid = data.get("env", {}).get("pid")
            if pid and int(pid) not in self._seen:
                self._seen.append(int(pid))
            future.set_result(data)

    def restart(self) -> None:
        """Nothing to do: Ray replaces a dead worker itself."""

    def pids(self) -> list[int]:
        """The processes that returned a result (on a cluster, on several hosts)."""
        return list(self._seen)

    def started(self) -> int:
        return 1

    def shutdown(self, *, kill: bool = False) -> None:
        """Stop in-flight runs (``kill``) and the Ray this executor started or joined."""
        if kill:
            for ref in list(self._flight):
                with contextlib.suppress(Exception):
                    self._ray.cancel(ref, force=True)
        if self._local is not None:
            self._local.stop()
            self._local = None
        elif self._joined:
            self._joined = False
            with contextlib.suppress(Exception):
                self._ray.shutdown()
