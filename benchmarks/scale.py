"""What grows with the number of runs: a grid of instant runs through ``lrkit.compare``.

Every run is a user task that returns at once, so what is measured is lrkit's
own cost per run: planning the grid, the executor's round trip, one store
write per run, and the report (results.json, report.html and its plots) at
the end. For each grid size it prints the wall time of the runs and of a
rerun that finds every run stored and writes the report, runs per second,
the store's and results.json's size on disk, and the driver's peak memory.

Run:  python benchmarks/scale.py [--sizes 1000,10000] [--workers 0,2]
"""

from __future__ import annotations

import argparse
import logging
import resource
import tempfile
import textwrap
import time
from pathlib import Path

import lrkit

TASK = textwrap.dedent(
    """
    import lrkit

    @lrkit.task(metric="loss", mode="min", steps=10)
    def instant(trial):
        return trial.lr * (1 + trial.seed % 7)
    """
)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(size: int, workers: int, folder: Path) -> dict[str, float]:
    seeds = 100
    lrs = f"logspace(1e-4,1,{size // seeds})"
    out = folder / f"n{size}-w{workers}"
    grid = {
        "optimizers": "sgd",
        "schedules": "constant()",
        "lrs": lrs,
        "seeds": seeds,
        "workers": workers,
        "store": out / "runs.sqlite",
    }
    task = f"{folder / 'instant.py'}:instant"
    start = time.perf_counter()
    results = lrkit.compare(task, out=None, **grid)  # type: ignore[arg-type]
    ran = time.perf_counter() - start
    # The same command again: every run is in the store, so this is the resume
    # check plus the report (results.json, report.html, plots).
    start = time.perf_counter()
    lrkit.compare(task, out=out, **grid)  # type: ignore[arg-type]
    reported = time.perf_counter() - start
    return {
        "runs": len(results.runs),
        "run_s": ran,
        "report_s": reported,
        "store_mib": (out / "runs.sqlite").stat().st_size / 2**20,
        "json_mib": (out / "results.json").stat().st_size / 2**20,
        "rss_mib": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="grid sizes (multiples of 100)")
    parser.add_argument("--workers", default="0,2", help="worker counts (0: this process)")
    args = parser.parse_args()
    logging.getLogger("matplotlib").setLevel(logging.ERROR)  # font fallbacks
    header = (
        f"{'runs':>7}{'workers':>9}{'runs s':>9}{'runs/s':>9}{'ms/run':>8}"
        f"{'report s':>10}{'store MiB':>11}{'json MiB':>10}{'peak RSS MiB':>14}"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "instant.py").write_text(TASK)
        for size in [int(s) for s in args.sizes.split(",")]:
            for workers in [int(w) for w in args.workers.split(",")]:
                r = one(size, workers, folder)
                print(
                    f"{r['runs']:>7}{workers:>9}{r['run_s']:>9.1f}{r['runs'] / r['run_s']:>9.0f}"
                    f"{1000 * r['run_s'] / r['runs']:>8.2f}{r['report_s']:>10.1f}"
                    f"{r['store_mib']:>11.2f}{r['json_mib']:>10.2f}{r['rss_mib']:>14.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
