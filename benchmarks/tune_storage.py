"""``lrkit tune`` throughput with SQLite vs PostgreSQL storage, 1 and 2 processes.

The same tiny task (a 10-step quadratic written as a user task: the trials
cost almost nothing but the storage round trips), ``--search random
--pruner none``, ``--trials`` per study (default 40). For each storage and
process count: a fresh study, the processes started at once (``lrkit tune``
commands sharing ``--storage`` and ``--study``, each with its own ``--out``),
then the trials per second from the study itself: finished trials over the
span from the first trial's start to the last one's end (process start-up,
torch import and report writing are outside the span). Also printed: the
wall time of the commands, and that the study holds exactly ``--trials``
finished trials (the total is the study's, across processes).

The PostgreSQL server is a throwaway one (``scripts/pg_server.py``: Debian's
binaries, a temporary folder, 127.0.0.1, ``fsync=off``); the SQLite file is
in a temporary folder (WAL, ``synchronous=NORMAL``, as lrkit sets it).

Run::

    python benchmarks/tune_storage.py
    python benchmarks/tune_storage.py --trials 100
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

TASK = """
import lrkit

@lrkit.task(metric="loss", steps=10)
def tiny(trial):
    x = 3.0
    for step in range(trial.steps):
        x -= trial.schedule(step) * 2 * x
        trial.log(step, loss=x * x)
    return x * x
"""


def _server_module() -> Any:
    spec = importlib.util.spec_from_file_location("pg_server", ROOT / "scripts" / "pg_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(url: str, processes: int, trials: int, folder: Path) -> dict[str, float]:
    """Run ``processes`` ``lrkit tune`` commands at once on ``url``; the study's throughput."""
    import optuna

    lrkit = str(Path(sys.executable).with_name("lrkit"))
    task = folder / "tiny_task.py"
    task.write_text(TASK)
    argv = [lrkit, "tune", "--tasks", f"{task}:tiny", "--optimizers", "sgd,adam"]
    argv += ["--schedules", "constant()", "--schedules", "cosine()", "--lr-range", "1e-3,0.4"]
    argv += ["--search", "random", "--pruner", "none", "--trials", str(trials)]
    argv += ["--storage", url, "--study", "bench"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*argv, "--out", str(folder / f"out{i}")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"lrkit tune failed ({p.returncode}): {err[-2000:]}")
    wall = time.perf_counter() - start
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="bench", storage=url)
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    first = min(t.datetime_start for t in done if t.datetime_start is not None)
    last = max(t.datetime_complete for t in done if t.datetime_complete is not None)
    span = (last - first).total_seconds()
    return {"finished": len(done), "span": span, "per_s": len(done) / span, "wall": wall}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="trials per study (default 40)")
    args = parser.parse_args(argv)
    figures: dict[tuple[str, int], dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="lrkit-bench-") as tmp,
        _server_module().PostgresServer() as server,
    ):
        for processes in (1, 2):
            for storage in ("sqlite", "postgresql"):
                folder = Path(tmp) / f"{storage}-{processes}"
                folder.mkdir()
                url = (
                    f"sqlite:///{folder / 'tune.sqlite'}"
                    if storage == "sqlite"
                    else server.database(f"bench{processes}")
                )
                figures[storage, processes] = measure(url, processes, args.trials, folder)
                print(f"  done: {storage}, {processes} process(es)", file=sys.stderr)
    print(f"lrkit tune, {args.trials} trials of a 10-step task (random search, no pruner)")
    head = "trials/s  span s  wall s  n"
    print(f"{'':>9}  {'SQLite':^28}    {'PostgreSQL':^28}")
    print(f"{'processes':>9}  {head:^28}    {head:^28}")
    for processes in (1, 2):
        cells = []
        for storage in ("sqlite", "postgresql"):
            f = figures[storage, processes]
            cells.append(
                f"{f['per_s']:8.1f}  {f['span']:6.1f}  {f['wall']:6.1f}  {int(f['finished']):2d}"
            )
        print(f"{processes:>9}  {cells[0]:^28}    {cells[1]:^28}")
    print(f"({os.cpu_count()} cores; n: the study's finished trials, which must equal --trials)")


if __name__ == "__main__":
    main()
