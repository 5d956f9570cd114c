"""The example manifests shipped in crds/examples, read once for the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ballast.api.manifest_yaml import ManifestYAMLError, load_documents
from ballast.api.validation import validate_manifest

EXAMPLES = Path(__file__).resolve().parents[1] / "crds" / "examples"
# Unusual spellings that are nevertheless valid: both the API server and `ballast validate` accept them.
UNUSUAL = EXAMPLES / "unusual"
EXPECT_PREFIX = "# expect: "


@dataclass(frozen=True)
class InvalidExample:
    path: Path
    expected: str
    text: str
    # None where kubectl itself refuses the text (duplicate keys, NaN, alias bombs): `load_error` says why.
    manifest: dict[str, Any] | None
    load_error: str | None

    def offline_errors(self) -> list[str]:
        """What `ballast validate` reports for this example."""
        if self.manifest is None:
            return [str(self.load_error)]
        return validate_manifest(self.manifest)


def _documents(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    return [(path, document) for path in sorted(folder.glob("*.yaml")) for document in load_documents(path.read_text())]


def valid_examples() -> list[tuple[Path, dict[str, Any]]]:
    return _documents(EXAMPLES)


def unusual_examples() -> list[tuple[Path, dict[str, Any]]]:
    return _documents(UNUSUAL)


def invalid_examples() -> list[InvalidExample]:
    found = []
    for path in sorted((EXAMPLES / "invalid").glob("*.yaml")):
        text = path.read_text()
        first = text.splitlines()[0]
        assert first.startswith(EXPECT_PREFIX), f"{path} must start with '{EXPECT_PREFIX}<message>'"
        try:
            (manifest,) = load_documents(text)
            error = None
        except (ManifestYAMLError, yaml.YAMLError) as refused:
            manifest, error = None, str(refused)
        found.append(InvalidExample(path, first.removeprefix(EXPECT_PREFIX), text, manifest, error))
    return found
