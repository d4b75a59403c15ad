"""The documentation site (mkdocs.yml): it builds strict and offline, its examples ran, it renders.

One ``mkdocs build --strict`` into a temporary folder is shared by the module
(the ``site`` fixture; the module is one xdist group, so one worker builds
it once). The build runs every marked example of the guides
(docs/hooks/run_examples.py) and draws the schedule gallery
(docs/hooks/gallery.py); the tests then read what it wrote, and open the
built pages in headless Chromium with the network cut off.
"""

from __future__ import annotations

import ast
import html
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import browser

pytestmark = pytest.mark.xdist_group("docs_site")

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / "docs" / "hooks"


def _hook(name: str) -> ModuleType:
    """A hook module of docs/hooks, imported from its file (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", HOOKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Site:
    path: Path
    log: str


def mkdocs_build(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` in ``folder``, as ``make docs`` runs it."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("mkdocs")), "build", "--strict", *args],
        cwd=folder,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    out = tmp_path_factory.mktemp("site")
    done = mkdocs_build(ROOT, "--site-dir", str(out))
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    return Site(out, log)


def _pages(site: Site) -> list[Path]:
    return sorted(site.path.rglob("*.html"))


# --------------------------------------------------------------------------
# 1. The build: strict, no warnings, every example ran
# --------------------------------------------------------------------------


def test_the_build_is_strict_and_has_no_warnings(site: Site) -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^strict: true$", config, re.M)
    warnings = [line for line in site.log.splitlines() if re.match(r"^(WARNING|ERROR)\b", line)]
    assert warnings == []
    assert "Documentation built in" in site.log
    for page in ("index", "gallery", "guides/pytorch-loop", "migrate/torch", "api/torch"):
        assert (site.path / f"{page}.html").is_file(), page


def test_every_guide_ran_its_examples_during_the_build(site: Site) -> None:
    found = re.search(r"run_examples: (\d+) pages of examples ran", site.log)
    assert found, site.log[-3000:]
    hook = _hook("run_examples")
    marked = [
        page.relative_to(ROOT / "docs").as_posix()
        for page in sorted((ROOT / "docs").rglob("*.md"))
        if hook.examples(page.read_text(encoding="utf-8"))
    ]
    assert int(found.group(1)) == len(marked)
    # every guide in the nav's Guides section runs code, as do the migration pages
    for page in (
        "guides/choose-a-schedule.md",
        "guides/pytorch-loop.md",
        "controllers.md",
        "finder.md",
        "guides/own-training.md",
        "monitor.md",
        "frameworks.md",
        "guides/lightning.md",
        "migrate/torch.md",
        "migrate/transformers.md",
        "migrate/keras.md",
        "migrate/lr-finders.md",
    ):
        assert page in marked, page


def test_a_failing_or_misprinting_example_stops_the_build() -> None:
    from mkdocs.exceptions import PluginError

    hook = _hook("run_examples")
    good = "<!-- run -->\n```python\nx = 2\nprint(x * 3)\n```\n\n```text\n6\n```\n"
    assert hook.run_page(good, "good.md") == 1
    wrong = good.replace("```text\n6", "```text\n7")
    with pytest.raises(PluginError, match=r"wrong\.md, the example at line 2 printed"):
        hook.run_page(wrong, "wrong.md")
    raising = "text\n\n<!-- run -->\n```python\n1 / 0\n```\n"
    with pytest.raises(PluginError, match=r"line 4 raised ZeroDivisionError"):
        hook.run_page(raising, "raising.md")
    unshown = "<!-- run -->\n```python\nprint('hello')\n```\n"
    with pytest.raises(PluginError, match="does not show"):
        hook.run_page(unshown, "unshown.md")
    # blocks share a namespace; an unmarked block is not run; "output varies" is not compared
    shared = (
        "<!-- run -->\n```python\na = 5\n```\n"
        "```python\nraise SystemExit('not run')\n```\n"
        "<!-- run: output varies -->\n```python\nprint(a, 'anything')\n```\n"
        "```text\nsomething else\n```\n"
    )
    assert hook.run_page(shared, "shared.md") == 2


def test_a_real_build_aborts_on_a_misprinting_example(tmp_path: Path) -> None:
    """End to end: mkdocs with the hook, on a page whose example prints 2 but shows 3."""
    (tmp_path / "docs").mkdir()
    page = "# t\n\n<!-- run -->\n```python\nprint(1 + 1)\n```\n\n```text\n3\n```\n"
    (tmp_path / "docs" / "index.md").write_text(page, encoding="utf-8")
    hook = HOOKS / "run_examples.py"
    (tmp_path / "mkdocs.yml").write_text(f"site_name: t\nhooks:\n  - {hook}\n", encoding="utf-8")
    done = mkdocs_build(tmp_path)
    assert done.returncode == 1
    assert "index.md, the example at line 4 printed something else" in done.stderr
    assert "-3\n+2" in done.stderr
    (tmp_path / "docs" / "index.md").write_text(page.replace("\n3\n", "\n2\n"), encoding="utf-8")
    again = mkdocs_build(tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "run_examples: 1 pages of examples ran" in again.stderr


# --------------------------------------------------------------------------
# 2. Offline: nothing the browser loads comes from another host
# --------------------------------------------------------------------------

_REMOTE = re.compile(r"^\s*(?:https?:)?//", re.I)

#: Attributes through which a page makes the browser fetch something.
_LOADING = {"src", "srcset", "poster", "data", "background", "formaction", "manifest"}

#: Remote URLs in Material's JavaScript, each loaded only under a condition
#: this site never meets (checked in the test below).
_JS_CONDITIONAL = {
    "https://unpkg.com/resize-observer-polyfill": "a browser without ResizeObserver",
    "https://unpkg.com/mermaid@": "a page with a mermaid diagram",
    "https://api.github.com/": "repo_url set in mkdocs.yml",
    "https://${e}/api/v4/projects/": "repo_url set in mkdocs.yml (GitLab)",
}


class _Loads(HTMLParser):
    """Collects every URL a page would load: tags' src-like attributes, <link>s, styles."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.links: list[str] = []
        self.classes: set[str] = set()
        self._style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.classes.update(values.get("class", "").split())
        for name, value in values.items():
            if name in _LOADING:
                self.loads += [part.strip().split(" ")[0] for part in value.split(",")]
            if name == "style":
                self.loads += _css_urls(value)
        if tag == "link":
            self.loads.append(values.get("href", ""))
        if tag == "a":
            self.links.append(values.get("href", ""))
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            self.loads.append(values.get("content", "").partition("url=")[2])
        self._style = tag == "style"

    def handle_data(self, data: str) -> None:
        if self._style:
            self.loads += _css_urls(data)

    def handle_endtag(self, tag: str) -> None:
        self._style = False


def _css_urls(css: str) -> list[str]:
    urls = re.findall(r"url\(\s*['\"]?([^'\")]+)", css)
    urls += re.findall(r"@import\s+(?:url\()?\s*['\"]?([^'\");\s]+)", css)
    return urls


def test_nothing_the_browser_loads_is_remote(site: Site) -> None:
    pages = _pages(site)
    assert len(pages) >= 30
    remote: list[str] = []
    classes: set[str] = set()
    external_links = 0
    for page in pages:
        parser = _Loads()
        parser.feed(page.read_text(encoding="utf-8"))
        remote += [f"{page.name}: {url}" for url in parser.loads if _REMOTE.match(url)]
        external_links += sum(bool(_REMOTE.match(url)) for url in parser.links)
        classes |= parser.classes
    assert remote == []
    assert external_links > 0  # links in the text to upstream pages are fine (and are seen)
    for sheet in site.path.rglob("*.css"):
        urls = _css_urls(sheet.read_text(encoding="utf-8"))
        assert [u for u in urls if _REMOTE.match(u)] == [], sheet.name
    found_in_js: set[str] = set()
    for script in site.path.rglob("*.js"):
        for url in re.findall(r"[\"'`](https?://[^\"'`\s]+)", script.read_text(encoding="utf-8")):
            known = [prefix for prefix in _JS_CONDITIONAL if url.startswith(prefix)]
            assert known, f"{script.name} fetches {url}"
            found_in_js.update(known)
    # the conditions under which Material's scripts would fetch are not met
    assert "mermaid" not in classes
    assert "md-source" not in classes  # no repository widget
    assert not re.search(r"^repo_url:", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert "https://unpkg.com/resize-observer-polyfill" in found_in_js  # the scan sees bundles
    assert not any(font.suffix in {".woff", ".woff2", ".ttf"} for font in site.path.rglob("*.*"))
    text = "\n".join(p.read_text(encoding="utf-8") for p in pages[:5])
    assert "fonts.googleapis" not in text and "googletagmanager" not in text


# --------------------------------------------------------------------------
# 3. The gallery: every family and controller, drawn at build time
# --------------------------------------------------------------------------


def test_the_gallery_has_every_family_and_controller(site: Site) -> None:
    import lrkit.spec

    names = lrkit.spec.names()
    assert {"cosine", "wsd", "swa", "invscaling", "optimal", "plateau", "guard"} <= set(names)
    gallery = (site.path / "gallery.html").read_text(encoding="utf-8")
    for name in names:
        assert f'id="{name}"' in gallery, name
        image = site.path / "gallery" / f"{name}.png"
        data = image.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
        assert f'src="gallery/{name}.png"' in gallery, name
    hook = _hook("gallery")
    text = html.unescape(re.sub(r"<[^>]+>", "", gallery))  # as read, highlighting aside
    for name in names:  # each entry's spec string is shown
        assert f'lrkit.parse("{hook.EXAMPLES[name][0]}")' in text, name
    # the formula comes from the docstring: cosine's is there
    assert "lr(t) = min_lr + (lr - min_lr) * (1 + cos(pi * min(t, steps) / steps)) / 2" in text
    assert "CosineAnnealingLR" in gallery and "cosine_decay_schedule" in gallery


def test_every_registered_name_has_a_gallery_entry_and_an_equivalents_row() -> None:
    import lrkit
    import lrkit.spec

    hook = _hook("gallery")
    names = set(lrkit.spec.names())
    assert set(hook.EXAMPLES) == names
    assert set(hook.EQUIVALENTS) == names
    for name, (spec, steps, _) in hook.EXAMPLES.items():
        value = lrkit.parse(spec)
        assert name in spec, (name, spec)
        assert steps >= 100 and value is not None
    for name, row in hook.EQUIVALENTS.items():
        assert set(row) <= set(hook.LIBRARIES), name
    # a family registered without an entry stops the build, naming it
    from mkdocs.exceptions import PluginError

    lrkit.spec.register("gallery_probe", lrkit.schedules.Constant)
    try:
        assert hook.missing() == ["gallery_probe"]
        with pytest.raises(PluginError, match="gallery_probe"):
            hook.page()
    finally:
        lrkit.spec.unregister("gallery_probe")
    assert hook.missing() == []


# --------------------------------------------------------------------------
# 4. The API reference covers SPEC's public names
# --------------------------------------------------------------------------


def _public_names(module: str) -> list[str]:
    """A module's ``__all__``, read from its source (no import: keras and jax are slow)."""
    parts = module.split(".")
    path = ROOT / "src" / Path(*parts).with_suffix(".py")
    if not path.is_file():
        path = ROOT / "src" / Path(*parts) / "__init__.py"
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            names: list[str] = ast.literal_eval(node.value)
            return names
    raise AssertionError(f"{module} has no __all__")


def test_the_api_reference_documents_every_public_name(site: Site) -> None:
    ids: set[str] = set()
    for page in (site.path / "api").glob("*.html"):
        ids |= set(re.findall(r'id="(lrkit\.[\w.]+)"', page.read_text(encoding="utf-8")))

    def key(name: str) -> str:  # lrkit.cosine is the class lrkit.schedules.Cosine
        return name.replace("_", "").lower()

    documented = {key(i.rsplit(".", 1)[1]) for i in ids}
    modules = ["lrkit", "lrkit.torch", "lrkit.keras", "lrkit.optax", "lrkit.sinks"]
    modules += ["lrkit.diagnosis", "lrkit.sklearn", "lrkit.lightning", "lrkit.finder"]
    missing = []
    for module in modules:
        for name in _public_names(module):
            if name.isupper() and name != "FACTORIES":
                continue  # plain constants (thresholds, tables) are described in prose
            if key(name) not in documented:
                missing.append(f"{module}.{name}")
    assert missing == []
    for name in ("lrkit.torch.Scheduler", "lrkit.torch.get_scheduler", "lrkit.keras.to_keras"):
        assert name in ids, name
    torch_page = (site.path / "api" / "torch.html").read_text(encoding="utf-8")
    assert "num_warmup_steps" in torch_page  # signatures and arguments are rendered


# --------------------------------------------------------------------------
# 5. The pages render in a browser, from disk, with no network
# --------------------------------------------------------------------------

_PROBE = """<script>
window.addEventListener('load', () => {
  const header = document.querySelector('.md-header');
  const out = {
    title: document.title,
    h1: (document.querySelector('h1') || {}).textContent,
    nav: [...document.querySelectorAll('.md-nav__link')].map((a) => a.textContent.trim()),
    header: header ? getComputedStyle(header).position : null,
    fonts: getComputedStyle(document.body).fontFamily,
    code: document.querySelectorAll('pre code').length,
    images: [...document.images].map((i) => ({src: i.getAttribute('src'), w: i.naturalWidth})),
  };
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _render(page: Path, profile: Path) -> dict[str, Any]:
    return browser.probe(page, _PROBE, profile, what="the site renders", flags=browser.OFFLINE)


def test_the_index_and_a_guide_render_in_headless_chromium(site: Site, tmp_path: Path) -> None:
    index = _render(site.path / "index.html", tmp_path / "profile")
    assert index["title"].startswith("lrkit")
    assert "the learning rate, done once and done right" in index["h1"]
    for entry in ("Drive a PyTorch loop", "Schedule gallery", "From transformers", "lrkit.torch"):
        assert entry in index["nav"], entry
    assert index["header"] == "sticky"  # Material's stylesheet loaded from disk
    assert "Roboto" not in index["fonts"]  # the system fonts, no web font
    assert index["code"] >= 2

    guide = _render(site.path / "guides" / "pytorch-loop.html", tmp_path / "profile")
    assert guide["title"].startswith("Drive a PyTorch loop")
    assert guide["h1"].startswith("Drive a PyTorch loop")
    assert "React to metrics" in guide["nav"]
    assert guide["header"] == "sticky"
    assert guide["code"] >= 6

    gallery = _render(site.path / "gallery.html", tmp_path / "profile")
    drawn = [image for image in gallery["images"] if image["src"].startswith("gallery/")]
    assert len(drawn) == len(list((site.path / "gallery").glob("*.png")))
    assert all(image["w"] >= 400 for image in drawn), drawn  # each PNG decoded
