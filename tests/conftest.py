"""Shared pytest setup: hypothesis profiles and the import path for helpers.

Profiles: "dev" (the default: random examples, for finding new cases) and
"ci" (derandomized, so a CI run is reproducible), loaded when the CI
environment variable is set. ``HYPOTHESIS_PROFILE=name`` picks one explicitly.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# pytest runs with --import-mode=importlib, which does not put tests/ on
# sys.path; add it so test modules can ``from strategies import schedules``.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

settings.register_profile(
    "dev",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)

_default = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray (2 CPUs) for the whole session; lrkit uses it (Ray already initialised).

    A Ray session already running in this process is used as it is. Tests that
    take it are marked ``@pytest.mark.xdist_group("ray")``, so one xdist worker
    holds the only one.
    """
    import ray

    from lrkit.bench.ray_executor import start_local_ray

    if ray.is_initialized():
        yield
        return
    local = start_local_ray(2)
    try:
        yield
    finally:
        local.stop()


# --------------------------------------------------------------------------
# --dist loadgroup on pytest 9
# --------------------------------------------------------------------------
# pytest-xdist (3.8) groups `@pytest.mark.xdist_group(NAME)` tests by adding
# "@NAME" to `item._nodeid` on the workers, which pytest 9 no longer reads: the
# groups are silently lost and two workers may each start a local Ray. Here the
# controller reads the marks from the test files' source instead (module
# `pytestmark` and top-level decorators); a node id that carries "@NAME" (a
# fixed xdist) is grouped by it as before.


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    root = config.rootpath

    class SourceGroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.rfind("@") > nodeid.rfind("]"):
                return str(super()._split_scope(nodeid))
            path, _, names = nodeid.partition("::")
            groups = _xdist_groups(root / path)
            top = names.split("::")[0].split("[")[0]
            return groups.get(top) or groups.get("") or nodeid

    return SourceGroupScheduling(config, log)


@functools.cache
def _xdist_groups(path: Path) -> dict[str, str]:
    """``{top-level name: group}`` of a test file's ``xdist_group`` marks ("" : the module's)."""
    import ast

    def group(node: ast.expr) -> str | None:
        for call in ast.walk(node):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "xdist_group"
            ):
                args = [*call.args, *(k.value for k in call.keywords if k.arg == "name")]
                if args and isinstance(args[0], ast.Constant):
                    return str(args[0].value)
        return None

    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}
    groups: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            found = group(node.value)
            if found:
                groups[""] = found
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for decorator in node.decorator_list:
                found = group(decorator)
                if found:
                    groups[node.name] = found
    return groups
