"""`ballast validate`: check manifests offline with the API server's own rules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from ballast.api.manifest_yaml import ManifestYAMLError, load_documents
from ballast.api.validation import ManifestError, resource_of, validate_manifest


def _describe(manifest: dict[str, Any]) -> str:
    metadata = manifest.get("metadata") or {}
    name = metadata.get("name") or metadata.get("generateName") or "<unnamed>"
    return f"{manifest.get('kind')}/{name}"


def validate_file(path: Path) -> tuple[int, list[str]]:
    """(Ballast documents checked, error lines) for one file."""
    try:
        documents = load_documents(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, ManifestYAMLError) as error:
        return 0, [f"{path}: cannot read: {error}"]
    checked, errors = 0, []
    for index, manifest in enumerate(documents):
        where = f"{path} (document {index + 1})"
        if not isinstance(manifest, dict):
            errors.append(f"{where}: not a mapping")
            continue
        try:
            if resource_of(manifest) is None:
                continue
            problems = validate_manifest(manifest)
        except ManifestError as error:
            errors.append(f"{where}: {error}")
            continue
        checked += 1
        errors.extend(f"{where} {_describe(manifest)} is invalid: {problem}" for problem in problems)
    return checked, errors


def run(args: argparse.Namespace) -> int:
    total, failed = 0, False
    for name in args.files:
        checked, errors = validate_file(Path(name))
        total += checked
        for line in errors:
            print(line, file=sys.stderr)
        failed = failed or bool(errors)
        if not errors and checked:
            print(f"{name}: {checked} valid")
    if total == 0 and not failed:
        print("no Ballast resources found", file=sys.stderr)
        return 1
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("validate", help="validate manifests offline (schema and CEL rules)")
    parser.add_argument("files", nargs="+", help="YAML files; other kinds in them are skipped")
    parser.set_defaults(func=run)
