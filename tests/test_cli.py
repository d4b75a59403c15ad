"""The ``lrkit`` command line: outputs, errors and help, through typer and the real script."""

from __future__ import annotations

import csv
import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import lrkit
from lrkit.bench.tasks import get_task
from lrkit.cli import MAX_STEPS, app

WARMUP_COSINE = "warmup(cosine(lr=3e-4, steps=10000, min_lr=3e-5), steps=500)"
MULTISTEP = "multistep(lr=0.1, milestones=[300, 600, 900])"
ONE_CYCLE = "one_cycle(max_lr=0.1, steps=1000)"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# -- help and version --------------------------------------------------------


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "schedule" in result.stdout
    assert "--version" in result.stdout


def test_no_arguments_shows_help() -> None:
    result = invoke()
    assert "schedule" in result.output


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"lrkit {lrkit.__version__}"


def test_schedule_help_shows_examples_with_brackets_intact() -> None:
    result = invoke("schedule", "--help")
    assert result.exit_code == 0
    out = result.stdout
    assert "Examples" in out
    assert 'lrkit schedule "cosine(lr=0.1, steps=1000, min_lr=0.001)"' in out
    # rich markup must not eat the list in a spec
    assert "milestones=[300, 600]" in out
    for fmt in ("table", "csv", "json", "png"):
        assert fmt in out


def test_schedule_shows_a_controllers_plan_and_says_so() -> None:
    result = invoke("schedule", "plateau(constant(0.1), patience=1)", "-n", "20", "-f", "csv")
    assert result.exit_code == 0, result.output
    assert "is a controller: shown is its plan, constant(lr=0.1)" in result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert len(rows) == 21 and all(float(r[1]) == 0.1 for r in rows[1:])


# -- table -------------------------------------------------------------------


def test_table_shows_spec_sparkline_key_steps_and_summary() -> None:
    s = lrkit.parse(WARMUP_COSINE)
    result = invoke("schedule", WARMUP_COSINE, "--steps", "11000")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert str(s) in out
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█")
    steps_shown = {int(line.split()[0]) for line in out.splitlines() if line[:6].strip().isdigit()}
    # start, the warmup's end, the schedule's end and the last step are pinned
    assert {0, 500, 10500, 10999} <= steps_shown
    assert len(steps_shown) <= 10
    assert "min 0 (step 0)" in out
    assert "max 0.0003 (step 500)" in out
    assert "final 3e-05 (step 10999)" in out


def test_table_default_steps_cover_the_end() -> None:
    result = invoke("schedule", "cosine(lr=0.1, steps=1000)")
    assert result.exit_code == 0, result.output
    assert "steps 0..1099" in result.stdout
    assert "end: held from here" in result.stdout


def test_table_shows_each_of_several_specs() -> None:
    result = invoke("schedule", WARMUP_COSINE, MULTISTEP, ONE_CYCLE, "--steps", "1000")
    assert result.exit_code == 0, result.output
    for spec in (WARMUP_COSINE, MULTISTEP, ONE_CYCLE):
        assert str(lrkit.parse(spec)) in result.stdout
    assert result.stdout.count("final ") == 3


def test_table_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "table.txt"
    result = invoke("schedule", MULTISTEP, "--steps", "1000", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    text = out.read_text()
    assert str(lrkit.parse(MULTISTEP)) in text
    assert "\x1b[" not in text  # no colour codes in a file


# -- csv ---------------------------------------------------------------------


def test_csv_values_equal_the_library() -> None:
    s = lrkit.parse(WARMUP_COSINE)
    result = invoke("schedule", WARMUP_COSINE, "--steps", "2000", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["step", "lr"]
    steps = np.array([int(r[0]) for r in rows[1:]])
    lrs = np.array([float(r[1]) for r in rows[1:]])
    np.testing.assert_array_equal(steps, np.arange(2000))
    np.testing.assert_array_equal(lrs, s.values(2000))  # exact: floats are printed with repr


def test_csv_several_specs_one_column_each() -> None:
    specs = [WARMUP_COSINE, MULTISTEP, "0.5 * constant(0.1)"]
    result = invoke("schedule", *specs, "-n", "1200", "-f", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    scheds = [lrkit.parse(spec) for spec in specs]
    assert rows[0] == ["step", *(str(s) for s in scheds)]  # specs with commas are quoted
    assert len(rows) == 1 + 1200
    table = np.array([[float(x) for x in row[1:]] for row in rows[1:]])
    for k, s in enumerate(scheds):
        np.testing.assert_array_equal(table[:, k], s.values(1200))


def test_csv_to_a_file_matches_stdout(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "er" / "lr.csv"
    to_stdout = invoke("schedule", ONE_CYCLE, "-f", "csv")
    to_file = invoke("schedule", ONE_CYCLE, "-f", "csv", "--out", str(out))
    assert to_file.exit_code == 0, to_file.output
    assert to_file.stdout.strip() == str(out)
    assert out.read_text() == to_stdout.stdout


# -- json --------------------------------------------------------------------


def test_json_round_trips_through_from_dict() -> None:
    result = invoke("schedule", WARMUP_COSINE, MULTISTEP, "--steps", "1500", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["steps"] == 1500
    assert len(doc["schedules"]) == 2
    for entry, spec in zip(doc["schedules"], (WARMUP_COSINE, MULTISTEP), strict=True):
        s = lrkit.parse(spec)
        assert entry["spec"] == str(s)
        assert entry["schedule"] == s.to_dict()
        assert lrkit.from_dict(entry["schedule"]) == s
        np.testing.assert_array_equal(np.array(entry["values"]), s.values(1500))


def test_json_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "lr.json"
    result = invoke("schedule", ONE_CYCLE, "-f", "json", "-o", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["schedules"][0]["spec"] == str(lrkit.parse(ONE_CYCLE))
    assert len(doc["schedules"][0]["values"]) == doc["steps"] == 1100


# -- png ---------------------------------------------------------------------


def test_png_overlays_several_specs_in_one_file(tmp_path: Path) -> None:
    out = tmp_path / "gallery" / "schedules.png"  # the folder is created
    specs = [WARMUP_COSINE, MULTISTEP, ONE_CYCLE]
    result = invoke("schedule", *specs, "--steps", "1000", "-f", "png", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    width, height = png_size(out)
    assert width >= 600 and height >= 300
    assert out.stat().st_size > 20_000
    assert list(tmp_path.rglob("*.png")) == [out]


def test_png_default_path_and_log_axis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("schedule", "exponential(0.1, gamma=0.99)", "--format", "png", "--log")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "schedule.png"
    png_size(tmp_path / "schedule.png")


# -- errors: exit 2, one message, no traceback -------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "cosine(lr=0.1, stps=10)",  # unknown argument
        "cosin(lr=0.1, steps=10)",  # unknown factory
        "cosine(lr=0.1, steps=10",  # unbalanced
        "cosine(lr=-1.0, steps=10)",  # a bad value
        "cosine(lr=0.1, steps=0)",
        "__import__('os').system('true')",  # never evaluated
        "",
    ],
)
def test_bad_spec_exits_2_with_one_message(spec: str) -> None:
    result = invoke("schedule", spec, "--steps", "10")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    assert isinstance(result.exception, SystemExit)


def test_bad_spec_among_several_says_which() -> None:
    result = invoke("schedule", "constant(0.1)", "cosin(lr=0.1, steps=10)")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: spec 2 of 2: ")


@pytest.mark.parametrize("steps", ["0", "-5", str(MAX_STEPS + 1)])
def test_steps_out_of_range_exits_2_naming_value_and_range(steps: str) -> None:
    result = invoke("schedule", "constant(0.1)", "--steps", steps)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.strip() == (
        f"Error: --steps must be an integer in [1, {MAX_STEPS}], got {steps}"
    )


@pytest.mark.parametrize("args", [["--steps", "ten"], ["--format", "xml"], []])
def test_malformed_options_exit_2(args: list[str]) -> None:
    spec = [] if not args else ["constant(0.1)"]
    result = invoke("schedule", *spec, *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_unwritable_out_exits_1_without_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke("schedule", "constant(0.1)", "-f", "csv", "-o", str(blocker / "lr.csv"))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Error: cannot write")


# -- the installed console script ---------------------------------------------


def test_console_script_runs() -> None:
    script = Path(sys.executable).with_name("lrkit")
    ok = subprocess.run(
        [str(script), "schedule", "cosine(lr=0.1, steps=4)", "--steps", "5", "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    expected = lrkit.cosine(lr=0.1, steps=4).values(5).tolist()
    assert ok.stdout == "step,lr\n" + "".join(f"{t},{v!r}\n" for t, v in enumerate(expected))

    bad = subprocess.run(
        [str(script), "schedule", "cosine(lr=0.1, stps=4)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.startswith("Error: ")
    assert "Traceback" not in bad.stderr


# -- lrkit tasks ----------------------------------------------------------------


def test_help_lists_compare_and_tasks() -> None:
    result = invoke("--help")
    assert "compare" in result.stdout and "tasks" in result.stdout


def test_tasks_lists_one_line_per_task_without_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from lrkit.cli import app\n"
        "result = CliRunner().invoke(app, ['tasks'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'torch' not in sys.modules, 'lrkit tasks imported torch'\n"
        "sys.stdout.write(result.stdout)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    table, hint = done.stdout.split("\n\n")
    lines = table.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == [
        "digits", "signals", "scales", "charlm", "quadratic", "rosenbrock", "digits_sgd"
    ]  # fmt: skip
    assert "sgd only" in lines[-1]  # digits_sgd: a scikit-learn estimator
    assert "--tasks path/to/file.py:name" in hint
    digits = lines[0].split()
    assert digits[1:5] == ["300", "steps", "val_acc", ">="] and digits[5] == "0.95"
    assert "8x8" in lines[0]


# -- lrkit compare --------------------------------------------------------------

QUICK = ["--tasks", "quadratic", "--optimizers", "sgd,adam", "--lrs", "0.01,0.1"]
QUICK += ["--schedules", "cosine()", "--seeds", "2", "--budget", "0.2", "--workers", "0"]


def test_compare_writes_results_and_a_summary_then_resumes(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = invoke("compare", *QUICK, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "8 runs: 8 run now, 0 from the store" in result.stdout
    assert "quadratic: final loss, lower is better" in result.stdout
    assert "[8/8] quadratic " in result.stdout  # plain progress lines off a terminal
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["runs"]) == 8
    assert {run["status"] for run in doc["runs"]} <= {"ok", "diverged"}
    assert doc["grid"]["optimizers"] == ["sgd", "adam"] and doc["grid"]["seeds"] == 2
    rows = doc["summary"]["quadratic"]
    assert {row["optimizer"] for row in rows} == {"sgd", "adam"}
    assert all(row["seeds"] == 2 for row in rows)
    assert (out / "runs.sqlite").is_file()
    # Under the table: what to pick, also in results.json.
    advice = doc["advice"]["quadratic"]
    assert advice["verdict"].startswith("pick ") and advice["confidence"] in ("clear", "tied")
    assert f"→ {advice['headline']}" in result.stdout
    assert "diverged (all lrs)" in result.stdout

    again = invoke("compare", *QUICK, "--out", str(out))
    assert again.exit_code == 0, again.output
    assert "8 runs: 0 run now, 8 from the store" in again.stdout
    redo = json.loads((out / "results.json").read_text())
    assert [r["loss"] for r in redo["runs"]] == [r["loss"] for r in doc["runs"]]


def test_compare_store_option(tmp_path: Path) -> None:
    store = tmp_path / "elsewhere" / "mine.sqlite"
    result = invoke(
        "compare", *QUICK, "--seeds", "1", "--out", str(tmp_path / "o"), "--store", str(store)
    )
    assert result.exit_code == 0, result.output
    assert store.is_file() and not (tmp_path / "o" / "runs.sqlite").exists()
    assert f"store: {store}" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "mnist"], "--tasks: unknown task 'mnist'; built-in tasks: charlm, digits"),
        (["--optimizers", "sgd,lion"], "--optimizers: unknown optimizer 'lion'"),
        (["--lrs", "0.1,fast"], "--lrs: 'fast' is not a number"),
        (["--lrs", "logspace(1,2)"], "--lrs: logspace takes 3 arguments"),
        (["--schedules", "cosine(lr=)"], "--schedules 'cosine(lr=)': "),
        (["--seeds", "0"], "--seeds must be an integer in [1, 1000], got 0"),
        (["--budget", "-1"], "--budget must be a finite number > 0, got -1.0"),
        (["--workers", "-2"], "--workers must be an integer >= 0, got -2"),
    ],
)
def test_compare_bad_input_exits_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = invoke("compare", *args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {message}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # nothing written before the grid is checked


def test_compare_refuses_a_store_that_is_not_sqlite(tmp_path: Path) -> None:
    bad = tmp_path / "runs.sqlite"
    bad.write_text("not a database " * 200)
    result = invoke("compare", *QUICK, "--store", str(bad), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert (
        result.stderr.startswith("Error: store ") and "is not an lrkit run store" in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1


# -- the summary in a terminal ---------------------------------------------------

SPECS = (
    "one_cycle()",
    "warmup(cosine(min_lr=1e-5), steps=30)",
    "wsd(decay_fraction=0.2, min_lr=0.0)",
    "cosine()",
)


def _summary_rows() -> list:
    """quadratic: sgd and adam x 4 specs, the best at the top lr, 2 seeds."""
    from lrkit.bench.grid import SettingSummary

    rows = []
    for k, (optimizer, spec) in enumerate((o, s) for o in ("sgd", "adamw") for s in SPECS):
        mean = 0.2 if k == 1 else 0.18 + 0.05 * k
        rows.append(
            SettingSummary(
                "quadratic", optimizer, spec, 1.0 if k < 4 else 0.01, "loss", "min",
                mean, 0.00051 if k == 7 else 0.03, 2, 2, 48.0 if k < 3 else None,
                6 if optimizer == "sgd" else 0, 8, 0, lrs=[0.001, 0.01, 0.1, 1.0],
            )
        )  # fmt: skip
    return rows


@pytest.mark.parametrize("width", [80, 100, 120])
def test_summary_cuts_no_spec_and_no_number_at_any_usual_width(width: int) -> None:
    from rich.console import Console

    from lrkit.cli import _print_summary

    rows = _summary_rows()
    console = Console(width=width, record=True, file=io.StringIO(), highlight=False)
    _print_summary(console, {"quadratic": rows})
    text = console.export_text()
    lines = [line.rstrip() for line in text.splitlines()]
    assert max(map(len, lines)) <= width
    assert "…" not in text
    for spec in SPECS:  # each spec whole on one line: in the table or under it as "S1 = spec"
        assert any(spec in line for line in lines), spec
    for row in rows:  # mean ± std never wraps
        assert any(f"{row.mean:.4g} ± {row.std:.2g}" in line for line in lines)
    assert "(all lrs)" in text  # the divergence counts are over all lrs, not the best one
    verdict = "→ pick sgd + one_cycle() at lr 1 (tied with 1 other within noise)"
    assert verdict in lines
    assert "≈ sgd + warmup(cosine(min_lr=1e-5), steps=30) at lr 1" in text
    note = "the edge of the grid: try higher lrs, e.g. --lrs 1,10,100"
    assert note in " ".join(line.strip() for line in lines)


def test_summary_at_80_columns_labels_only_the_specs_that_do_not_fit() -> None:
    from rich.console import Console

    from lrkit.cli import _print_summary

    console = Console(width=80, record=True, file=io.StringIO(), highlight=False)
    _print_summary(console, {"quadratic": _summary_rows()})
    lines = console.export_text().splitlines()
    legend = [line.strip().split(" = ", 1) for line in lines if line.startswith("  S")]
    assert legend == [["S1", SPECS[1]], ["S2", SPECS[2]]]
    table = [line for line in lines if line[:1].isdigit()]
    assert len(table) == 8
    assert sum("one_cycle()" in line for line in table) == 2
    assert sum(" S1 " in line for line in table) == 2


_EDITS_ITSELF = """
from pathlib import Path

import lrkit


@lrkit.task(metric="loss", steps=5)
def edits_itself(trial):
    for step in range(trial.steps):
        trial.log(step, loss=1.0 / (step + 1))
    if trial.seed == 0:  # the user saves an edit while the compare runs
        path = Path(__file__)
        path.write_text(path.read_text() + "# edited\\n")
    return trial.lr
"""


def test_a_task_edited_while_compare_runs_stops_it_and_a_rerun_finishes(tmp_path: Path) -> None:
    task = tmp_path / "edits.py"
    task.write_text(_EDITS_ITSELF)
    args = ("compare", "--tasks", f"{task}:edits_itself", "--optimizers", "sgd", "--schedules",
            "constant()", "--lrs", "0.1", "--seeds", "3", "--workers", "0",
            "--out", str(tmp_path / "out"))  # fmt: skip
    first = invoke(*args)
    assert first.exit_code == 1, first.output
    assert "changed while the runs ran" in first.stderr and "run the same command again" in (
        first.stderr
    )
    task.write_text(task.read_text().replace("if trial.seed == 0:", "if False:"))
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(doc["runs"]) == 3  # one version's runs only
    assert len({run["identity"]["task"]["source_sha256"] for run in doc["runs"]}) == 1


def test_a_module_task_beside_the_working_folder_loads_from_the_console_script(
    tmp_path: Path,
) -> None:
    # lrkit tune prints `--tasks train:fit` for a task imported as a module
    (tmp_path / "train.py").write_text(
        "import lrkit\n\n@lrkit.task(metric='loss', steps=3)\ndef fit(trial):\n"
        "    for step in range(trial.steps):\n        trial.log(step, loss=1.0)\n"
        "    return trial.lr\n"
    )
    lrkit_bin = Path(sys.executable).with_name("lrkit")
    done = subprocess.run(
        [str(lrkit_bin), "compare", "--tasks", "train:fit", "--optimizers", "sgd",
         "--schedules", "constant()", "--lrs", "0.1", "--seeds", "1", "--workers", "0",
         "--out", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 runs: 1 run now" in done.stdout


_FIT = """
import lrkit


@lrkit.task(metric="loss", steps=3)
def fit(trial):
    for step in range(trial.steps):
        trial.log(step, loss=1.0)
    return trial.lr + OFFSET
"""


def test_runs_of_two_tasks_or_two_code_versions_under_one_name_are_ranked_apart(
    tmp_path: Path,
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "train.py").write_text("OFFSET = 0\n" + _FIT)
    (b / "train.py").write_text("OFFSET = 100\n" + _FIT)
    common = ("--optimizers", "sgd", "--schedules", "constant()", "--lrs", "0.1", "--seeds",
              "1", "--workers", "0")  # fmt: skip
    both = invoke("compare", "--tasks", f"{a}/train.py:fit,{b}/train.py:fit", *common,
                  "--out", str(tmp_path / "both"))  # fmt: skip
    assert both.exit_code == 0, both.output
    doc = json.loads((tmp_path / "both" / "results.json").read_text())
    assert sorted(doc["summary"]) == [f"{a}/train.py:fit", f"{b}/train.py:fit"]
    assert all(rows[0]["seeds"] == 1 for rows in doc["summary"].values())
    # One file, edited between two compares into one store: the report keeps them apart.
    out = tmp_path / "edit"
    assert (
        invoke("compare", "--tasks", f"{a}/train.py:fit", *common, "--out", str(out)).exit_code == 0
    )
    (a / "train.py").write_text("OFFSET = 5\n" + _FIT)
    assert (
        invoke("compare", "--tasks", f"{a}/train.py:fit", *common, "--out", str(out)).exit_code == 0
    )
    report = invoke("report", str(out / "runs.sqlite"))
    assert report.exit_code == 0, report.output
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert len(summary) == 2 and all(" [code " in name for name in summary)
    assert sorted(rows[0]["mean"] for rows in summary.values()) == [0.1, 5.1]


# -- lrkit report ------------------------------------------------------------------


def _quick_compare(out: Path, *extra: str) -> Path:
    """A 4-run compare into ``out``; returns its store."""
    result = invoke("compare", *QUICK, "--seeds", "1", "--out", str(out), *extra)
    assert result.exit_code == 0, result.output
    return out / "runs.sqlite"


def test_report_defaults_to_the_stores_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _quick_compare(tmp_path / "mine")
    (tmp_path / "mine" / "report.html").unlink()
    monkeypatch.chdir(tmp_path)
    result = invoke("report", "mine/runs.sqlite")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mine" / "report.html").is_file()
    assert not (tmp_path / "lrkit-report").exists()
    doc = json.loads((tmp_path / "mine" / "results.json").read_text())
    assert Path(doc["store_resolved"]) == store.resolve()


def test_report_refuses_to_overwrite_another_stores_report(tmp_path: Path) -> None:
    first = _quick_compare(tmp_path / "a")
    second = _quick_compare(tmp_path / "b", "--lrs", "0.05")
    before = (tmp_path / "a" / "results.json").read_text()

    refused = invoke("report", str(second), "--out", str(tmp_path / "a"))
    assert refused.exit_code == 2
    (line,) = refused.stderr.strip().splitlines()
    assert str(first) in line and str(second) in line
    assert "--out" in line and "--force" in line
    assert (tmp_path / "a" / "results.json").read_text() == before

    forced = invoke("report", str(second), "--out", str(tmp_path / "a"), "--force")
    assert forced.exit_code == 0, forced.output
    doc = json.loads((tmp_path / "a" / "results.json").read_text())
    assert doc["store"] == str(second)


def test_report_rerenders_its_own_store_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _quick_compare(Path("lrkit-report"))
    again = invoke("report", "lrkit-report/runs.sqlite", "--out", "lrkit-report")
    assert again.exit_code == 0, again.output
    # A results.json of an older lrkit (a relative store path only), read from elsewhere.
    path = tmp_path / "lrkit-report" / "results.json"
    doc = json.loads(path.read_text())
    del doc["store_resolved"]
    path.write_text(json.dumps(doc))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = invoke("report", "../lrkit-report/runs.sqlite")
    assert result.exit_code == 0, result.output


def test_report_ranks_each_step_budget_of_a_task_apart(tmp_path: Path) -> None:
    store = _quick_compare(tmp_path / "a")  # --budget 0.2
    again = invoke("compare", *QUICK, "--seeds", "1", "--budget", "0.4", "--store", str(store))
    assert again.exit_code == 0, again.output
    result = invoke("report", str(store), "--out", str(tmp_path / "both"))
    assert result.exit_code == 0, result.output
    steps = (get_task("quadratic").budget(0.2), get_task("quadratic").budget(0.4))
    names = [f"quadratic@{n}" for n in steps]
    assert (
        "has runs of 2 kinds (task files, code versions or step budgets): ranked apart, as "
        + (f"quadratic@{steps[0]}, quadratic@{steps[1]}")
        in result.output
    )
    doc = json.loads((tmp_path / "both" / "results.json").read_text())
    assert list(doc["summary"]) == names
    for name, n in zip(names, steps, strict=True):
        rows = doc["summary"][name]
        assert len(rows) == 2 and all(row["seeds"] == 1 and row["steps"] == n for row in rows)
    html = (tmp_path / "both" / "report.html").read_text()
    assert all(name in html for name in names)
    # One budget only: the task keeps its name.
    alone = invoke("report", str(_quick_compare(tmp_path / "b")), "--out", str(tmp_path / "b"))
    assert alone.exit_code == 0, alone.output
    assert list(json.loads((tmp_path / "b" / "results.json").read_text())["summary"]) == [
        "quadratic"
    ]


# -- lrkit find-lr ----------------------------------------------------------------


def test_find_lr_prints_the_suggestion_and_writes_the_plot_and_json(tmp_path: Path) -> None:
    from lrkit.bench.find import suggest_lr

    out = tmp_path / "found"
    args = ["--task", "quadratic", "--optimizer", "momentum", "--steps", "60"]
    result = invoke("find-lr", *args, "--out", str(out))
    assert result.exit_code == 0, result.output
    direct = suggest_lr("quadratic", "momentum", num_steps=60)
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["suggestion"].split()[0] == f"{direct.suggestion:.3g}"
    assert lines["interval"] == f"{direct.interval[0]:.3g} .. {direct.interval[1]:.3g}"
    assert lines["confidence"].startswith(f"{direct.confidence:.2f}")
    assert lines["reason"] == direct.reason
    assert lines["cost"].startswith(f"{direct.updates} training steps in ")
    # a progress line on stderr, before the sweep
    assert result.stderr.startswith("lr range test: quadratic with momentum, 60 steps from 1e-07")
    png_size(out / "quadratic-momentum.png")
    doc = json.loads((out / "quadratic-momentum.json").read_text())
    assert doc["task"] == "quadratic" and doc["optimizer"] == "momentum"
    assert doc["settings"]["num_steps"] == 60 and doc["settings"]["seed"] == 0
    assert doc["suggestion"] == direct.suggestion
    assert doc["interval"] == list(direct.interval)
    assert doc["losses"] == direct.losses.tolist() and doc["lrs"] == direct.lrs.tolist()
    assert sorted(p.name for p in out.iterdir()) == [
        "quadratic-momentum.json",
        "quadratic-momentum.png",
    ]


def test_find_lr_flags_a_low_confidence_with_its_reason(tmp_path: Path) -> None:
    # A ramp that ends far below where the quadratic starts to move: no descent to see.
    result = invoke(
        "find-lr", "--task", "quadratic", "--optimizer", "sgd", "--steps", "30",
        "--min-lr", "1e-9", "--max-lr", "1e-7", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "LOW: look at the plot" in result.stdout
    assert "reason      no clear descent" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "mnist"], "--task: unknown task 'mnist'; built-in tasks: charlm, digits"),
        (["--task", "digits", "--optimizer", "lion"], "--optimizer: unknown optimizer 'lion'"),
        (
            ["--task", "digits", "--optimizer", "prodigy"],
            "--optimizer: 'prodigy' is learning-rate free",
        ),
        (["--task", "digits", "--steps", "1"], "--steps must be an integer >= 2, got 1"),
        (["--task", "digits", "--repeats", "0"], "--repeats must be an integer >= 1, got 0"),
        (["--task", "digits", "--min-lr", "0"], "--min-lr must be a finite number > 0, got 0"),
        (["--task", "digits", "--max-lr", "1e-8"], "--max-lr must be a finite number > --min-lr"),
        (["--task", "digits", "--method", "best"], "--method must be one of default, steepest"),
    ],
)
def test_find_lr_bad_input_exits_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = invoke("find-lr", *args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {message}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_find_lr_out_must_be_a_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke("find-lr", "--task", "quadratic", "--out", str(blocker))
    assert result.exit_code == 2
    assert result.stderr == f"Error: --out {str(blocker)!r} exists and is not a folder\n"


def test_help_lists_find_lr_and_compare_documents_auto() -> None:
    assert "find-lr" in invoke("--help").stdout
    text = " ".join(invoke("compare", "--help").stdout.replace("│", " ").split())
    assert "auto" in text and "half a decade apart" in text


# -- lrkit compare --lrs auto -----------------------------------------------------------

AUTO_ARGS = ["--tasks", "quadratic,rosenbrock", "--optimizers", "sgd,adam,schedulefree"]
AUTO_ARGS += ["--schedules", "constant()", "--seeds", "1", "--budget", "0.1", "--workers", "1"]
AUTO_ARGS += ["--lrs", "auto", "--multipliers", "0.5,1"]


def test_compare_lrs_auto_centres_each_grid_on_the_finder_and_resumes(tmp_path: Path) -> None:
    from lrkit.bench.find import centred_lrs, suggest_lr

    out = tmp_path / "report"
    result = invoke("compare", *AUTO_ARGS, "--out", str(out))
    assert result.exit_code == 0, result.output
    expected = {}
    for task in ("quadratic", "rosenbrock"):
        for opt in ("sgd", "adam"):
            s = suggest_lr(task, opt).suggestion
            expected[(task, opt)] = centred_lrs(s)
            assert f"lr finder {task} x {opt}: {s:.3g} " in result.stdout
            assert f"-> lrs {', '.join(f'{x:g}' for x in expected[(task, opt)])}" in result.stdout
    assert "lr finder quadratic x schedulefree" not in result.stdout
    # 2 tasks x (2 optimizers x 5 lrs + schedulefree x 2 multipliers) x 1 seed
    assert "24 runs: 24 run now, 0 from the store" in result.stdout
    doc = json.loads((out / "results.json").read_text())
    assert doc["grid"]["lrs"] == "auto"
    assert {(p["task"], p["optimizer"]): p["lrs"] for p in doc["grid"]["pair_lrs"]} == expected
    assert doc["grid"]["finder"]["quadratic/sgd"]["lrs"] == expected[("quadratic", "sgd")]
    assert doc["grid"]["finder"]["quadratic/sgd"]["updates"] <= 100
    ran: dict[tuple[str, str], set[float]] = {}
    for run in doc["runs"]:
        config = run["config"]
        ran.setdefault((config["task"], config["optimizer"]), set()).add(config["lr"])
    for pair, lrs in expected.items():
        assert ran[pair] == set(lrs)
    assert ran[("quadratic", "schedulefree")] == {0.5, 1.0}
    cache = out / "runs.finder.json"
    assert cache.is_file()

    # A re-run reads the suggestions back: the same grid, every run from the store.
    again = invoke("compare", *AUTO_ARGS, "--out", str(out))
    assert again.exit_code == 0, again.output
    assert "24 runs: 0 run now, 24 from the store" in again.stdout

    # The kept suggestion is what counts (it is not recomputed): move one, see its grid move.
    data = json.loads(cache.read_text())
    data["entries"]["quadratic/sgd"]["suggestion"] = 0.01
    cache.write_text(json.dumps(data))
    moved = invoke("compare", *AUTO_ARGS, "--workers", "0", "--out", str(out))  # the last wins
    assert moved.exit_code == 0, moved.output
    assert "lr finder quadratic x sgd: 0.01 " in moved.stdout
    assert "-> lrs 0.001, 0.00316, 0.01, 0.0316, 0.1" in moved.stdout
    assert "24 runs: 5 run now, 19 from the store" in moved.stdout


def test_compare_lrs_auto_mixed_with_values_exits_2(tmp_path: Path) -> None:
    result = invoke("compare", "--lrs", "auto", "--lrs", "0.1", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --lrs: 'auto' cannot be combined with other values")
    assert not (tmp_path / "o").exists()
