"""Shared pytest setup: hypothesis profiles and the import path for helpers.

Profiles: "dev" (the default: random examples, for finding new cases) and
"ci" (derandomized, so a CI run is reproducible), loaded when the CI
environment variable is set. ``HYPOTHESIS_PROFILE=name`` picks one explicitly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

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
