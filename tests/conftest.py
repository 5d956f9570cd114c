"""Shared test configuration: a marker per test folder, and the project's paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI explores a fixed set of examples (the same on every run); developers' runs keep exploring.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
_MARKER_BY_FOLDER = {"unit": pytest.mark.unit, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        marker = _MARKER_BY_FOLDER.get(folder)
        if marker is not None:
            item.add_marker(marker)
