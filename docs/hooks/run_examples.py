"""MkDocs hook: run the marked Python examples of every page while the site builds.

The convention, in a page's Markdown:

- ``<!-- run -->`` on the line before a ```` ```python ```` fence: the block runs
  when the site builds. The blocks of one page share one namespace (a page
  reads as one session), and run in a fresh temporary folder (what they
  write is thrown away).
- What the run blocks print is checked against the page: the first fence
  after a run block, when it is a ```` ```text ```` fence, shows what the run
  blocks since the last such check printed, exactly (trailing whitespace
  aside). Output that no text fence shows fails the build too.
- ``<!-- run: output varies -->``: the block runs, and what it prints is not
  compared (machine-dependent numbers, shown as "on one machine this printed").

An example that raises, or prints something the page does not show, stops
the build with the page, the block's line and the difference. Blocks with
no marker are shown, not run (the long ones say so in the text).
"""

from __future__ import annotations

import contextlib
import difflib
import io
import logging
import os
import re
import tempfile
import time
import warnings
from typing import Any

from mkdocs.exceptions import PluginError

#: A fenced block: its opening line's info string, its body, and where it starts.
FENCE = re.compile(
    r"^(?P<fence>```+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)
MARKER = re.compile(r"<!--\s*run(?::\s*(?P<option>[\w -]+?))?\s*-->\s*\n\s*\Z")
OPTIONS = {None, "output varies"}

log = logging.getLogger("mkdocs.hooks.run_examples")

#: Seconds spent per page, kept for the build's last log line.
TIMINGS: dict[str, float] = {}


def examples(markdown: str) -> list[tuple[int, str, str | None, str | None]]:
    """The run blocks of a page: ``(line, code, option, shown_output)``, in page order.

    ``shown_output`` is the body of the text fence right after the block
    (``None`` when the next fence is not a text fence).
    """
    fences = list(FENCE.finditer(markdown))
    found = []
    for i, fence in enumerate(fences):
        before = markdown[: fence.start()]
        marker = MARKER.search(before[-200:])
        if marker is None:
            continue
        option = marker.group("option")
        line = before.count("\n") + 1
        if fence.group("info").strip() != "python":
            raise PluginError(f"line {line}: <!-- run --> must precede a ```python fence")
        if option not in OPTIONS:
            raise PluginError(f"line {line}: unknown run option {option!r}; known: output varies")
        following = fences[i + 1] if i + 1 < len(fences) else None
        shown = None
        if following is not None and following.group("info").strip() == "text":
            shown = following.group("body")
        found.append((line, fence.group("body"), option, shown))
    return found


def _difference(printed: str, shown: str) -> str:
    lines = difflib.unified_diff(
        shown.splitlines(),
        printed.splitlines(),
        "the page shows",
        "the example printed",
        lineterm="",
    )
    return "\n".join(lines)


def run_page(markdown: str, name: str) -> int:
    """Run the marked examples of one page; return how many ran.

    Raises:
        PluginError: an example raised, or printed something the page does not show.
    """
    blocks = examples(markdown)
    if not blocks:
        return 0
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    pending = ""  # printed since the last check
    pending_line = 0
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="lrkit-docs-") as folder:
        os.chdir(folder)
        try:
            for line, code, option, shown in blocks:
                out, err = io.StringIO(), io.StringIO()  # stderr: shown only on a failure
                try:
                    with (
                        warnings.catch_warnings(),
                        contextlib.redirect_stdout(out),
                        contextlib.redirect_stderr(err),
                    ):
                        warnings.simplefilter("ignore")
                        exec(compile(code, f"{name}:{line}", "exec"), namespace)
                except Exception as error:
                    raise PluginError(
                        f"{name}, the example at line {line} raised {type(error).__name__}: "
                        f"{error}\n{err.getvalue()[-2000:]}"
                    ) from error
                if option == "output varies":
                    continue
                if out.getvalue() and not pending:
                    pending_line = line
                pending += out.getvalue()
                if shown is not None:
                    printed = "\n".join(x.rstrip() for x in pending.strip().splitlines())
                    expected = "\n".join(x.rstrip() for x in shown.strip().splitlines())
                    if printed != expected:
                        raise PluginError(
                            f"{name}, the example at line {line} printed something else than "
                            f"the page shows:\n{_difference(printed, expected)}"
                        )
                    pending = ""
        finally:
            os.chdir(here)
    if pending.strip():
        raise PluginError(
            f"{name}, the example at line {pending_line} printed output that the page "
            f"does not show (add a ```text block after it):\n{pending}"
        )
    return len(blocks)


def on_config(config: Any) -> Any:
    os.environ.setdefault("MPLBACKEND", "Agg")
    # matplotlib's font search notes (not the examples' output) would flood the build log
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    TIMINGS.clear()
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    start = time.perf_counter()
    if run_page(markdown, page.file.src_uri):
        TIMINGS[page.file.src_uri] = time.perf_counter() - start
    return markdown


def on_post_build(config: Any) -> None:
    total = sum(TIMINGS.values())
    slowest = sorted(TIMINGS.items(), key=lambda item: -item[1])
    shown = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in slowest)
    log.info(f"run_examples: {len(TIMINGS)} pages of examples ran in {total:.1f} s ({shown})")
