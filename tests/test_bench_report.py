"""Tests of lrkit.bench.report: the HTML report, its PNGs, the lr diagnosis, ``lrkit report``."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import browser
from lrkit.bench.grid import expand_grid
from lrkit.bench.report import diagnose, diagnose_lrs, median_update_ratio, write_report
from lrkit.bench.run import RunResult
from lrkit.bench.runner import run_grid
from lrkit.bench.store import RunStore
from lrkit.cli import app

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMG = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished small real grid: 2 instant tasks x sgd, adam x 3 lrs (one diverges)."""
    path = tmp_path_factory.mktemp("grid") / "runs.sqlite"
    configs = expand_grid(
        tasks=["quadratic", "rosenbrock"],
        optimizers=["sgd", "adam"],
        schedules=["constant()", "cosine()"],
        lrs=[1e-4, 1e-2, 100.0],
        seeds=1,
        budget=0.2,
    )
    with RunStore(path) as store:
        run_grid(configs, store, workers=0)
    return path


def _results(path: Path) -> list[RunResult]:
    with RunStore(path) as store:
        return store.results()


def _check_html(text: str, tasks: list[str]) -> None:
    for task in tasks:
        assert f"<h2>{task}</h2>" in text
        # Each task's section opens with what to pick and how sure.
        section = text.split(f"<h2>{task}</h2>", 1)[1]
        assert re.match(r'\s*<div class="advice[^"]*"><p><strong>(pick |nothing to pick)', section)
    assert text.count("<table>") == 2 * len(tasks)  # best settings + diagnosis per task
    payloads = IMG.findall(text)
    assert len(payloads) == 4 * len(tasks)
    for payload in payloads:
        assert base64.b64decode(payload, validate=True).startswith(PNG_MAGIC)
    assert not re.search(r"https?://", text)
    assert "<script" not in text.lower() and "<link" not in text.lower()


def test_write_report_is_self_contained(store_path: Path, tmp_path: Path) -> None:
    results = _results(store_path)
    assert any(r.status == "diverged" for r in results)
    report = write_report(results, tmp_path / "out")
    assert report == tmp_path / "out" / "report.html"
    _check_html(report.read_text(encoding="utf-8"), ["quadratic", "rosenbrock"])
    for task in ("quadratic", "rosenbrock"):
        for kind in ("sensitivity", "curves", "schedules", "update_ratio"):
            assert (tmp_path / "out" / f"{kind}_{task}.png").read_bytes().startswith(PNG_MAGIC)


def test_write_report_takes_dicts(store_path: Path, tmp_path: Path) -> None:
    dicts = [r.to_dict() for r in _results(store_path) if r.config["task"] == "quadratic"]
    report = write_report(json.loads(json.dumps(dicts)), tmp_path)
    assert "too high" in report.read_text(encoding="utf-8")


def test_diagnosis_of_the_real_grid_flags_the_diverging_lr(store_path: Path) -> None:
    for d in diagnose(_results(store_path)):
        if any(v == "best" for v in d.verdicts.values()):
            assert d.verdicts[100.0] == "too high", d


# -- the diagnosis rule on hand-made results ------------------------------------


def _run(lr: float, status: str, curve: list[float], loss: list[float], seed: int = 0) -> RunResult:
    """A hand-made 'val_acc' run (higher is better, target 0.9) of sgd + constant()."""
    ok = status == "ok"
    reached = next((10 * i for i, v in enumerate(curve) if v >= 0.9), None)
    return RunResult(
        key=f"{lr}-{seed}",
        config={
            "task": "digits",
            "optimizer": "sgd",
            "schedule": "constant()",
            "lr": lr,
            "seed": seed,
            "budget": 1.0,
        },
        identity={},
        status=status,
        metric="val_acc",
        mode="max",
        target=0.9,
        steps=10 * (len(curve) - 1),
        loss=loss,
        eval_steps=[10 * i for i in range(len(curve))],
        evals={"val_acc": curve},
        final=curve[-1] if ok else None,
        best=max(curve),
        steps_to_target=reached if ok else None,
        diverged_at=None if ok else 5,
    )


def test_diagnose_lrs_flags_diverged_high_and_sluggish_low() -> None:
    smooth = [2.0, 1.5, 1.0, 0.8, 0.6, 0.5, 0.45, 0.4]
    by_lr = {
        1e-4: [_run(1e-4, "ok", [0.1, 0.15, 0.2, 0.25, 0.3], smooth)],  # still climbing
        1e-2: [_run(1e-2, "ok", [0.1, 0.6, 0.9, 0.95, 0.96], smooth)],  # the best
        1e-1: [_run(1e-1, "ok", [0.1, 0.7, 0.9, 0.94, 0.95], smooth)],  # close to best
        1.0: [_run(1.0, "ok", [0.1, 0.4, 0.5, 0.5, 0.5], [2, 1, 3, 0.5, 4, 0.6, 5, 0.4])],
        10.0: [_run(10.0, "diverged", [0.1, 0.1], [2.0, 50.0])],
    }
    assert diagnose_lrs(by_lr) == {
        1e-4: "too low",
        1e-2: "best",
        1e-1: "ok",
        1.0: "too high",  # far worse while the loss oscillated
        10.0: "too high",  # diverged
    }


def test_diagnose_lrs_worse_but_calm_is_not_too_high() -> None:
    smooth = [2.0, 1.0, 0.8, 0.6, 0.5, 0.45, 0.44, 0.43]
    by_lr = {
        0.01: [_run(0.01, "ok", [0.1, 0.9, 0.95], smooth)],
        0.1: [_run(0.1, "ok", [0.1, 0.5, 0.5], smooth)],  # far, flat, calm loss
    }
    assert diagnose_lrs(by_lr) == {0.01: "best", 0.1: "worse"}


def test_diagnose_lrs_without_finished_runs() -> None:
    assert diagnose_lrs({}) == {}
    assert diagnose_lrs({1.0: [_run(1.0, "diverged", [0.1], [9.0])]}) == {1.0: "too high"}


# -- the command line -----------------------------------------------------------

runner = CliRunner()


def test_cli_report_rerenders_from_a_store(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    result = runner.invoke(app, ["report", str(store_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "quadratic: final loss" in result.stdout
    doc = json.loads((out / "results.json").read_text())
    for task in ("quadratic", "rosenbrock"):
        assert f"→ {doc['advice'][task]['headline']}" in result.stdout
        # 1 seed: a winner, but nothing can be called tied with it.
        assert doc["advice"][task]["verdict"].endswith("(uncertain: 1 seed)")
    assert len(doc["runs"]) == len(_results(store_path))
    assert set(doc["summary"]) == {"quadratic", "rosenbrock"}
    _check_html((out / "report.html").read_text(encoding="utf-8"), ["quadratic", "rosenbrock"])


@pytest.mark.parametrize("make", ["missing", "not_a_store", "empty"])
def test_cli_report_errors_exit_2_with_one_line(tmp_path: Path, make: str) -> None:
    store = tmp_path / "x.sqlite"
    if make == "not_a_store":
        store.write_bytes(b"this is not sqlite at all, just some text" * 100)
    elif make == "empty":
        RunStore(store).close()
    result = runner.invoke(app, ["report", str(store), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_compare_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--tasks",
        "quadratic",
        "--optimizers",
        "sgd",
        "--lrs",
        "0.01,0.1",
        "--schedules",
        "cosine()",
        "--seeds",
        "1",
        "--budget",
        "0.2",
        "--workers",
        "0",
    ]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "results.json").is_file()
    _check_html((out / "report.html").read_text(encoding="utf-8"), ["quadratic"])
    assert (out / "sensitivity_quadratic.png").is_file()


def test_update_ratio_is_measured_and_reported(store_path: Path, tmp_path: Path) -> None:
    results = [r for r in _results(store_path) if r.status == "ok"]
    for r in results:
        assert len(r.ratio_steps) == len(r.update_ratio) > 0
        finite = [v for v in r.update_ratio if math.isfinite(v)]
        assert finite and all(v >= 0 for v in finite)

    # Same task and settings, 100x the lr: the updates are larger relative to the weights.
    def ratio(lr: float) -> float:
        runs = [
            r
            for r in results
            if r.config["task"] == "quadratic"
            and r.config["optimizer"] == "sgd"
            and r.config["schedule"] == "constant()"
            and r.config["lr"] == lr
        ]
        value = median_update_ratio(runs)
        assert value is not None
        return value

    assert ratio(1e-2) > 10 * ratio(1e-4)
    assert median_update_ratio([]) is None
    text = write_report(results, tmp_path).read_text(encoding="utf-8")
    assert "‖Δw‖/‖w‖ (median)" in text


# --------------------------------------------------------------------------
# The page as a browser shows it: headless Chromium (installed by `make test`)
# --------------------------------------------------------------------------

#: Appended to a copy of the report: once the page has loaded, write what the
#: browser laid out (each image decoded and its drawn width, each table's rows
#: and height) into the DOM, which ``--dump-dom`` then prints.
_PROBE = """<script>
window.addEventListener('load', () => {
  const box = (e) => e.getBoundingClientRect();
  const out = {
    images: [...document.images].map(
      (i) => ({complete: i.complete, w: i.naturalWidth, h: i.naturalHeight, drawn: box(i).width})),
    tables: [...document.querySelectorAll('table')].map(
      (t) => ({rows: t.rows.length, cells: t.rows[0].cells.length, height: box(t).height})),
    headings: [...document.querySelectorAll('h2')].map((h) => h.textContent),
    overflow: document.documentElement.scrollWidth > window.innerWidth + 1,
  };
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _render(page: Path, profile: Path) -> dict:
    return browser.probe(page, _PROBE, profile, what="the report renders")


def test_report_renders_in_headless_chromium(store_path: Path, tmp_path: Path) -> None:
    report = write_report(_results(store_path), tmp_path / "out")
    seen = _render(report, tmp_path / "profile")
    assert seen["headings"] == ["quadratic", "rosenbrock"]
    # Per task: best settings + diagnosis; each has its header row and one row per setting.
    assert len(seen["tables"]) == 4
    for table in seen["tables"]:
        assert table["rows"] == 1 + 4  # 2 optimizers x 2 schedules
        assert table["cells"] >= 7
        assert table["height"] > 50
    assert len(seen["images"]) == 8
    for image in seen["images"]:
        assert image["complete"] and image["w"] >= 600 and image["h"] >= 300, image
        assert image["drawn"] > 300, image  # laid out at a readable width
    assert not seen["overflow"]  # nothing wider than the window


def test_each_run_gets_the_monitors_diagnosis_in_results_json_and_the_report(tmp_path):
    """compare's runs are diagnosed from their own curves, as a Monitor record would be."""
    import json

    import lrkit
    from lrkit.diagnosis import diagnose

    results = lrkit.compare(
        ["quadratic"],
        optimizers=["sgd"],
        schedules=["constant()"],
        lrs=[0.01, 100.0],
        seeds=1,
        budget=0.5,
        workers=0,
        out=tmp_path,
    )
    doc = json.loads((tmp_path / "results.json").read_text())
    by_lr = {run["config"]["lr"]: run for run in doc["runs"]}
    assert by_lr[100.0]["status"] == "diverged"
    assert by_lr[100.0]["diagnosis"]["verdict"] == "too_high"
    for run in results.runs:
        want = diagnose(run.record()).to_dict()
        assert by_lr[run.config["lr"]]["diagnosis"] == json.loads(json.dumps(want))
    report = (tmp_path / "report.html").read_text()
    assert "<th>run diagnosis</th>" in report
