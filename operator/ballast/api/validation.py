"""Offline validation of Ballast manifests, giving the messages the API server gives.

Schema-level errors come from the pydantic models (phrased as the API server phrases them),
cross-field errors from the same CEL rules the CRDs carry, evaluated on the defaulted object.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ballast.api.cel import apply_defaults, evaluate_rules, go_value
from ballast.api.crd import object_schema
from ballast.api.objectmeta import generated_name, metadata_errors
from ballast.api.resources import BY_KIND, Resource
from ballast.api.schema import Schema

_TOP_LEVEL_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


class ManifestError(ValueError):
    """A manifest that is not a Ballast resource at all."""


def resource_of(manifest: dict[str, Any]) -> Resource | None:
    """The Ballast resource a manifest declares, None for other kinds; wrong versions are errors."""
    kind = manifest.get("kind")
    api_version = manifest.get("apiVersion", "")
    if not isinstance(api_version, str) or not api_version.startswith("ballast.dev/"):
        return None
    resource = BY_KIND.get(str(kind))
    if resource is None:
        raise ManifestError(f'no kind "{kind}" is registered for version "{api_version}"')
    if api_version != resource.api_version:
        raise ManifestError(f'no kind "{kind}" is registered for version "{api_version}"')
    return resource


def validate_manifest(manifest: dict[str, Any]) -> list[str]:
    """Every error in one Ballast manifest, each starting with the field path; [] when valid."""
    resource = resource_of(manifest)
    if resource is None:
        raise ManifestError(f"not a Ballast resource: {manifest.get('apiVersion')}/{manifest.get('kind')}")
    errors = [f'unknown field "{key}"' for key in manifest if key not in _TOP_LEVEL_FIELDS]
    metadata = manifest.get("metadata")
    if not isinstance(metadata, dict) or not (metadata.get("name") or metadata.get("generateName")):
        errors.append("metadata.name: Required value: name or generateName is required")
    else:
        errors.extend(metadata_errors(metadata, namespaced=resource.scope == "Namespaced"))
    spec = manifest.get("spec")
    if spec is None:
        errors.append("spec: Required value")
    else:
        errors.extend(_schema_errors(resource, spec))
    if errors:
        return errors
    schema = object_schema(resource)
    # The status subresource ignores status on create and update of the main resource.
    candidate = {k: v for k, v in manifest.items() if k != "status"}
    if not candidate["metadata"].get("name"):
        # The API server names the object before it validates: rules read the generated name.
        candidate["metadata"] = {**candidate["metadata"], "name": generated_name(candidate["metadata"])}
    defaulted = apply_defaults(candidate, schema)
    errors.extend(_duplicate_keys(defaulted["spec"], schema["properties"]["spec"], "spec"))
    root_rules = {k: v for k, v in schema.items() if k == "x-kubernetes-validations"}
    errors.extend(str(f) for f in evaluate_rules(defaulted, root_rules, "<root>"))
    errors.extend(str(f) for f in evaluate_rules(defaulted["spec"], schema["properties"]["spec"], "spec"))
    return [e.replace("<root>: ", "", 1) for e in errors]


def _schema_errors(resource: Resource, spec: Any) -> list[str]:
    try:
        resource.spec_model.model_validate(spec, strict=True)
    except ValidationError as error:
        return [_kubernetes_message(detail) for detail in error.errors(include_url=False)]
    return []


def _path(loc: tuple[int | str, ...]) -> str:
    path = "spec"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
_EXPECTED_TYPES = {
    "int_type": "integer",
    "int_from_float": "integer",
    "int_parsing": "integer",
    "float_type": "number",
    "float_parsing": "number",
    "string_type": "string",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
    "list_type": "array",
}


_BOUNDS = {
    "less_than_equal": ("should be less than or equal to", "le"),
    "greater_than_equal": ("should be greater than or equal to", "ge"),
    "less_than": ("should be less than", "lt"),
    "greater_than": ("should be greater than", "gt"),
}


def _kubernetes_message(detail: ErrorDetails) -> str:
    """One pydantic error phrased as the API server phrases the same schema violation."""
    path = _path(detail["loc"])
    kind = detail["type"]
    ctx = detail.get("ctx", {})
    value = detail.get("input")
    invalid = f"{path}: Invalid value: {go_value(value)}: {path} in body"
    if kind == "missing":
        return f"{path}: Required value"
    if kind == "extra_forbidden":
        return f'unknown field "{path}"'
    if kind in _EXPECTED_TYPES:
        given = _JSON_TYPES.get(type(value), "null")
        return f'{path}: Invalid value: "{given}": {path} in body must be of type {_EXPECTED_TYPES[kind]}: "{given}"'
    if kind == "literal_error":
        return f"{path}: Unsupported value: {json.dumps(value)}: supported values: {_split_or(ctx)}"
    if kind in _BOUNDS:
        phrase, key = _BOUNDS[kind]
        return f"{invalid} {phrase} {go_value(ctx[key])}"
    if kind == "string_too_long":
        return f"{path}: Too long: may not be more than {ctx['max_length']} bytes"
    if kind == "string_too_short":
        return f"{invalid} should be at least {ctx['min_length']} chars long"
    if kind == "string_pattern_mismatch":
        return f"{invalid} should match '{ctx['pattern']}'"
    if kind == "too_long":
        return f"{path}: Too many: {ctx['actual_length']}: must have at most {ctx['max_length']} items"
    if kind == "too_short":
        length = ctx["actual_length"]
        return f"{path}: Invalid value: {length}: {path} in body should have at least {ctx['min_length']} items"
    return f"{path}: Invalid value: {go_value(value)}: {detail['msg']}"


def _split_or(ctx: dict[str, Any]) -> str:
    # pydantic's literal_error ctx reads "'a', 'b' or 'c'".
    expected = str(ctx.get("expected", ""))
    parts = [p.strip().strip("'") for chunk in expected.split(" or ") for p in chunk.split(",")]
    return ", ".join(json.dumps(p) for p in parts if p)


def _duplicate_keys(value: Any, schema: Schema, path: str) -> Iterator[str]:
    """`x-kubernetes-list-type: map` lists must not repeat a key, as the API server enforces."""
    if isinstance(value, list) and schema.get("x-kubernetes-list-type") == "map":
        keys = schema["x-kubernetes-list-map-keys"]
        seen: set[tuple[Any, ...]] = set()
        for index, item in enumerate(value):
            key = tuple(item.get(k) for k in keys)
            if key in seen:
                rendered = ",".join(f'"{k}":{json.dumps(v)}' for k, v in zip(keys, key, strict=True))
                yield f"{path}[{index}]: Duplicate value: {{{rendered}}}"
            seen.add(key)
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                yield from _duplicate_keys(value[key], sub, f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _duplicate_keys(item, schema["items"], f"{path}[{index}]")
