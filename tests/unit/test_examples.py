"""Every shipped example: the valid ones pass, each invalid one fails with its documented message."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ballast.api.crd import object_schema
from ballast.api.resources import RESOURCES
from ballast.api.validation import validate_manifest
from tests.examples import InvalidExample, invalid_examples, unusual_examples, valid_examples

INVALID = invalid_examples()


@pytest.mark.parametrize(
    ("path", "manifest"), valid_examples() + unusual_examples(), ids=lambda v: v.name if isinstance(v, Path) else ""
)
def test_valid_example_passes(path: Path, manifest: dict[str, Any]) -> None:
    assert validate_manifest(manifest) == []


@pytest.mark.parametrize("example", INVALID, ids=lambda e: e.path.stem)
def test_invalid_example_fails_with_its_message(example: InvalidExample) -> None:
    errors = example.offline_errors()
    assert any(example.expected in error for error in errors), errors
    # Every message names the field at fault, or is kubectl's own refusal of the text.
    if example.manifest is not None:
        assert all(re.search(r"\b(spec|metadata)\b", error) for error in errors), errors
    # No evaluation error reaches a person as Python internals.
    assert not any("<class" in error or "Error(" in error for error in errors), errors


def test_there_are_at_least_sixty_invalid_examples() -> None:
    assert len(INVALID) >= 60


def _rule_messages(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        found.update(rule["message"] for rule in node.get("x-kubernetes-validations", ()))
        for value in node.values():
            found |= _rule_messages(value)
    elif isinstance(node, list):
        for value in node:
            found |= _rule_messages(value)
    return found


def test_every_cel_rule_is_exercised_by_an_invalid_example() -> None:
    """Each cross-field rule has an example that breaks it, so no rule is dead or untested."""
    messages = set().union(*(_rule_messages(object_schema(r)) for r in RESOURCES))
    reported = {error for example in INVALID for error in example.offline_errors()}
    untested = sorted(m for m in messages if not any(m in error for error in reported))
    assert untested == []
