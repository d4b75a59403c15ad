"""Headless Chromium for the tests that check what a browser shows (the report, the docs site).

:func:`probe` opens a copy of a page with a script appended before
``</body>``. Once the page has loaded, the script writes what the browser
laid out as JSON into ``<pre id="probe">``. Chromium's ``--dump-dom`` then
prints the DOM, and :func:`probe` returns that JSON.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

#: Headless, no GPU, no background traffic of Chromium's own.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,900",
    "--virtual-time-budget=10000",
)

#: Every host name fails to resolve: a page that needs the network shows it.
OFFLINE = ("--allow-file-access-from-files", "--host-resolver-rules=MAP * ~NOTFOUND")


def chromium(what: str) -> str:
    """The Chromium executable, or a failure saying how to install it (``what``: why)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        f"headless Chromium is needed to check {what}: `make test` installs "
        "Debian's chromium package (apt-get install chromium) when it is missing"
    )


def probe(
    page: Path, script: str, profile: Path, *, what: str, flags: Sequence[str] = ()
) -> dict[str, Any]:
    """Open ``page`` with ``script`` appended in headless Chromium; return what it wrote."""
    copy = page.with_name(f"probe-{page.name}")
    text = page.read_text(encoding="utf-8")
    assert text.count("</body>") == 1
    copy.write_text(text.replace("</body>", script + "</body>"), encoding="utf-8")
    command = [chromium(what), *FLAGS, *flags, f"--user-data-dir={profile}", "--dump-dom"]
    try:
        done = subprocess.run(
            [*command, copy.as_uri()], capture_output=True, text=True, timeout=120, check=False
        )
    finally:
        copy.unlink()
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stdout[-2000:]
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result
