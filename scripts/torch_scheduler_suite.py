"""Run PyTorch's own scheduler tests against lrkit's drop-in schedulers.

torch's test file for its learning-rate schedulers
(``test/optim/test_lrscheduler.py`` in the pytorch repository, at the version
matching the installed torch) is the acceptance suite of ``lrkit.torch``'s
drop-ins (SPEC §4). The file is not part of this repository: fetch it yourself
and pass its path.

Usage::

    python scripts/torch_scheduler_suite.py PATH/TO/test_lrscheduler.py [--torch] [-- PYTEST ARGS]

The script runs pytest on that file in a subprocess. Before pytest imports the
file, a small plugin (written to a temporary folder and loaded with ``-p``)
replaces torch's 15 scheduler classes in ``torch.optim.lr_scheduler`` (and in
``torch.optim``, where torch re-exports them) with ``lrkit.torch.<Name>``, so
the file's ``from torch.optim.lr_scheduler import StepLR`` and its
``torch.optim.lr_scheduler.StepLR(...)`` both build lrkit's classes. torch's
other classes (``LRScheduler``, ``SWALR``, ...) stay torch's. With
``--torch`` the file runs unpatched, for comparison.

It then prints a summary: passed / failed / errors / skipped, and the failing
test ids grouped by a short reason (the first line of the assertion error),
each with the last line of its message. Anything after ``--`` goes to pytest
(e.g. ``-- -k cyclic -x --tb=short`` for tracebacks). The exit status is
pytest's.

The file needs ``expecttest`` (in the ``dev`` extra) besides torch. This
script is not a test of the repository: CI cannot fetch torch's file.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

DROP_INS = (
    "LambdaLR",
    "MultiplicativeLR",
    "StepLR",
    "MultiStepLR",
    "ConstantLR",
    "LinearLR",
    "ExponentialLR",
    "SequentialLR",
    "PolynomialLR",
    "CosineAnnealingLR",
    "ChainedScheduler",
    "ReduceLROnPlateau",
    "CyclicLR",
    "OneCycleLR",
    "CosineAnnealingWarmRestarts",
)

PLUGIN_NAME = "_lrkit_torch_dropins"

# Loaded by pytest with ``-p`` before it collects (imports) the test file.
PLUGIN_SOURCE = textwrap.dedent(
    f'''\
    """pytest plugin: torch's scheduler classes replaced by lrkit's drop-ins."""

    import torch.optim
    import torch.optim.lr_scheduler

    import lrkit.torch

    NAMES = {DROP_INS!r}

    for _name in NAMES:
        _ours = getattr(lrkit.torch, _name)
        setattr(torch.optim.lr_scheduler, _name, _ours)
        if hasattr(torch.optim, _name):
            setattr(torch.optim, _name, _ours)


    def pytest_report_header(config):
        return "lrkit drop-ins patched into torch.optim.lr_scheduler: " + ", ".join(NAMES)
    '''
)

# Without an ini file of its own, pytest would look upwards from the test file
# and could pick up a project's configuration (addopts, doctest options).
INI_SOURCE = "[pytest]\n"


def _parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        cut = argv.index("--")
        ours, extra = argv[:cut], argv[cut + 1 :]
    else:
        ours, extra = argv, []
    parser = argparse.ArgumentParser(
        description="Run torch's test_lrscheduler.py against lrkit.torch's drop-ins.",
        usage="%(prog)s PATH/TO/test_lrscheduler.py [--torch] [-- PYTEST ARGS]",
    )
    parser.add_argument("test_file", type=Path, help="torch's test/optim/test_lrscheduler.py")
    parser.add_argument(
        "--torch", action="store_true", help="run the file against torch itself (unpatched)"
    )
    return parser.parse_args(ours), extra


_CLASS_NAMES = re.compile(r"\b(" + "|".join(DROP_INS) + r")\b")
# unittest elides long strings as 'first 40 characters[N chars]last 5': keep a
# short head only, so that the same text about different classes groups together.
_ELIDED = re.compile(r"""(["'])([^"']*?)\[\d+ chars\][^"']*\1""")


def _reason(message: str) -> str:
    """The first line of a failure message, with scheduler names and elided strings
    normalised so that one cause shared by several classes makes one group."""
    line = _CLASS_NAMES.sub("<Scheduler>", _first_line(message))
    return _ELIDED.sub(lambda m: f"{m[1]}{m[2][:20]}...{m[1]}", line)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line
    return "(no message)"


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line:
            return line
    return ""


def _short(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _summarise(junit: Path) -> tuple[dict[str, int], dict[str, list[tuple[str, str]]]]:
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    root = ET.parse(junit).getroot()
    for case in root.iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        failure = case.find("failure")
        error = case.find("error")
        if failure is not None or error is not None:
            node = failure if failure is not None else error
            assert node is not None
            counts["failed" if failure is not None else "errors"] += 1
            message = node.get("message") or node.text or ""
            reason = _reason(message)
            if error is not None:
                reason = "[error] " + reason
            detail = _last_line(message)
            if detail.startswith("[+") or detail == _first_line(message):
                detail = ""  # junit abbreviates multi-line messages; nothing to add
            groups[reason].append((test_id, detail))
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts, groups


def main(argv: list[str] | None = None) -> int:
    args, extra = _parse_args(sys.argv[1:] if argv is None else argv)
    test_file = args.test_file.resolve()
    if not test_file.is_file():
        print(f"no such file: {test_file}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="lrkit-torch-suite-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "pytest.ini").write_text(INI_SOURCE)
        junit = tmp / "junit.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(test_file),
            "-c",
            str(tmp / "pytest.ini"),
            "--rootdir",
            str(test_file.parent),
            "-p",
            "no:cacheprovider",
            "-q",
            "--tb=no",
            "-rN",
            f"--junitxml={junit}",
        ]
        # torch's TestCase appends a "repro" hint to each failure; keep messages short.
        env = dict(os.environ, PYTORCH_PRINT_REPRO_ON_FAILURE="0")
        if not args.torch:
            (tmp / f"{PLUGIN_NAME}.py").write_text(PLUGIN_SOURCE)
            command[3:3] = ["-p", PLUGIN_NAME]
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(tmp), env.get("PYTHONPATH", "")) if p
            )
        command += extra
        print("$", " ".join(command), flush=True)
        result = subprocess.run(command, cwd=test_file.parent, env=env, check=False)
        if not junit.is_file():
            print(f"pytest wrote no report (exit status {result.returncode})", file=sys.stderr)
            return result.returncode or 1
        counts, groups = _summarise(junit)

    target = "torch (unpatched)" if args.torch else "lrkit.torch drop-ins"
    print()
    print(f"=== torch's scheduler suite against {target} ===")
    print(
        f"passed {counts['passed']} / failed {counts['failed']} / errors {counts['errors']}"
        f" / skipped {counts['skipped']}  (of {sum(counts.values())})"
    )
    for reason, cases in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        print()
        print(f"[{len(cases)}] {_short(reason)}")
        for test_id, detail in sorted(cases):
            line = f"    {test_id}"
            if detail:
                line += f"  -- {_short(detail, 120)}"
            print(line)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
