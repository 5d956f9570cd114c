"""The example manifests shipped in crds/examples, read once for the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "crds" / "examples"
EXPECT_PREFIX = "# expect: "


@dataclass(frozen=True)
class InvalidExample:
    path: Path
    expected: str
    manifest: dict[str, Any]


def valid_examples() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, document)
        for path in sorted(EXAMPLES.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def invalid_examples() -> list[InvalidExample]:
    found = []
    for path in sorted((EXAMPLES / "invalid").glob("*.yaml")):
        text = path.read_text()
        first = text.splitlines()[0]
        assert first.startswith(EXPECT_PREFIX), f"{path} must start with '{EXPECT_PREFIX}<message>'"
        found.append(InvalidExample(path, first.removeprefix(EXPECT_PREFIX), yaml.safe_load(text)))
    return found
