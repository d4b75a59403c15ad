"""MkDocs hook: links from a page to the repository's own files (``../examples/x.py``).

The pages in docs/ link to files beside docs/ (the examples), which GitHub
shows. For the site, each such file is copied in as ``source/<path>`` and the
link is pointed there, so it works offline and strict mode finds its target.
A link to a file that does not exist stays as it is (and strict mode fails).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

LINK = re.compile(r"\]\((?P<target>\.\./[^)#\s]+)\)")
FOLDER = "source"


def _outside(page_uri: str, target: str, docs: Path) -> str | None:
    """The repository path a page's relative link points to, when it is outside docs/."""
    joined = posixpath.normpath(posixpath.join("docs", posixpath.dirname(page_uri), target))
    if joined.startswith(("docs/", "../")) or joined == "docs":
        return None
    path = docs.parent / joined
    return joined if path.is_file() else None


def on_files(files: Files, config: Any) -> Files:
    docs = Path(config["docs_dir"])
    wanted: set[str] = set()
    for file in files.documentation_pages():
        if file.abs_src_path is None:
            continue
        text = Path(file.abs_src_path).read_text(encoding="utf-8")
        for link in LINK.finditer(text):
            found = _outside(file.src_uri, link.group("target"), docs)
            if found is not None:
                wanted.add(found)
    for path in sorted(wanted):
        data = (docs.parent / path).read_bytes()
        files.append(File.generated(config, f"{FOLDER}/{path}", content=data))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs = Path(config["docs_dir"])

    def point(link: re.Match[str]) -> str:
        found = _outside(page.file.src_uri, link.group("target"), docs)
        if found is None:
            return link.group(0)
        here = posixpath.dirname(page.file.src_uri) or "."
        return f"]({posixpath.relpath(f'{FOLDER}/{found}', here)})"

    return LINK.sub(point, markdown)
