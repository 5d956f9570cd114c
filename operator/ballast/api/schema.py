"""Structural OpenAPI v3 schemas for CRDs, generated from the pydantic models.

pydantic's JSON Schema is close but not structural: it uses `$ref`, expresses optional fields as
`anyOf [X, null]`, writes JSON Schema 2020-12 exclusive bounds and drops field descriptions and
defaults next to `$ref`. This module rewrites it into what the API server accepts, filling
descriptions and defaults from the models' fields.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

Schema = dict[str, Any]

_KEPT_KEYS = frozenset(
    {
        "type",
        "description",
        "enum",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "required",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-preserve-unknown-fields",
    }
)


# Marks which model a resolved node came from, so field descriptions and defaults can be read.
_MODEL_KEY = "x-ballast-model"


class NotStructuralError(ValueError):
    """The model uses a construct a structural schema cannot express."""


def models_by_name(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every model reachable from `root`, by class name (the key pydantic uses in `$defs`)."""
    found: dict[str, type[BaseModel]] = {}

    def visit(model: type[BaseModel]) -> None:
        if model.__name__ in found:
            return
        found[model.__name__] = model
        for field in model.model_fields.values():
            for candidate in _models_in_annotation(field.annotation):
                visit(candidate)

    visit(root)
    return found


def _models_in_annotation(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in_annotation(arg)]


def _field_default(field: FieldInfo) -> Any:
    """The default the API server should apply, or PydanticUndefined for none.

    Scalars are defaulted as written; a nested object whose default is its own empty model gets
    `{}` so the API server applies the nested defaults; collections and None are left absent.
    """
    if field.default_factory is not None:
        factory = field.default_factory
        if isinstance(factory, type) and issubclass(factory, BaseModel):
            return {}
        return PydanticUndefined
    if field.default is None or field.default is PydanticUndefined:
        return PydanticUndefined
    if isinstance(field.default, str | int | float | bool):
        return field.default
    raise NotStructuralError(f"unsupported default {field.default!r}")


class _Converter:
    def __init__(self, root: type[BaseModel], *, defaults: bool) -> None:
        raw = root.model_json_schema(by_alias=True, mode="validation")
        self.defs: dict[str, Schema] = raw.pop("$defs", {})
        self.raw_root = {**raw, _MODEL_KEY: root.__name__}
        self.models = models_by_name(root)
        self.defaults = defaults

    def convert_root(self) -> Schema:
        return self.convert(self.raw_root)

    def convert(self, node: Schema) -> Schema:
        node = self._resolve(node)
        out: Schema = {k: copy.deepcopy(v) for k, v in node.items() if k in _KEPT_KEYS}
        if "const" in node:
            out["enum"] = [node["const"]]
        if "exclusiveMinimum" in node:
            out["minimum"], out["exclusiveMinimum"] = node["exclusiveMinimum"], True
        if "exclusiveMaximum" in node:
            out["maximum"], out["exclusiveMaximum"] = node["exclusiveMaximum"], True
        if "enum" in out and "type" not in out:
            out["type"] = "string"
        kind = out.get("type")
        if kind == "object":
            self._convert_object(node, out)
        elif kind == "array":
            out["items"] = self.convert(node["items"])
        elif kind is None:
            raise NotStructuralError(f"schema without a type: {node}")
        return out

    def _resolve(self, node: Schema) -> Schema:
        """Inline `$ref` and collapse `anyOf [X, null]` into X, keeping sibling keys."""
        siblings = {k: v for k, v in node.items() if k not in ("$ref", "anyOf", "allOf")}
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            return {**self._resolve(self.defs[name]), **siblings, _MODEL_KEY: name}
        variants = node.get("anyOf") or node.get("allOf")
        if variants:
            concrete = [v for v in variants if v.get("type") != "null"]
            if len(concrete) != 1:
                raise NotStructuralError(f"a union of several types is not structural: {node}")
            return {**self._resolve(concrete[0]), **siblings}
        return node

    def _convert_object(self, node: Schema, out: Schema) -> None:
        extra = node.get("additionalProperties")
        if "properties" in node:
            model = self.models.get(node.get(_MODEL_KEY, ""))
            out["properties"] = {
                name: self._convert_property(model, name, prop) for name, prop in node["properties"].items()
            }
            if extra is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
        elif isinstance(extra, dict):
            out["additionalProperties"] = self.convert(extra)
        elif extra is True or not node.get("properties"):
            out["x-kubernetes-preserve-unknown-fields"] = True

    def _convert_property(self, model: type[BaseModel] | None, alias: str, prop: Schema) -> Schema:
        converted = self.convert(prop)
        field = _field_by_alias(model, alias) if model else None
        if field is not None:
            if field.description:
                converted["description"] = field.description
            default = _field_default(field)
            if self.defaults and default is not PydanticUndefined:
                # The API server validates a default as written, without nested defaults: expand them.
                converted["default"] = _expanded_default(converted) if default == {} else default
        return converted


def _expanded_default(schema: Schema) -> dict[str, Any]:
    """What the API server makes of `{}` for this object schema: every nested default filled in."""
    return {name: sub["default"] for name, sub in schema.get("properties", {}).items() if "default" in sub}


def _field_by_alias(model: type[BaseModel], alias: str) -> FieldInfo | None:
    for name, field in model.model_fields.items():
        if (field.alias or name) == alias:
            return field
    return None


def structural_schema(model: type[BaseModel], *, defaults: bool = True) -> Schema:
    """The structural OpenAPI v3 schema of `model` (spec models with defaults, status without)."""
    return _Converter(model, defaults=defaults).convert_root()
