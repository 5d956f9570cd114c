"""The generated CRDs are structural, bounded for the CEL cost budget, and their defaults valid."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ballast.api.cel import apply_defaults
from ballast.api.crd import crd_manifest, object_schema
from ballast.api.resources import MODEL_DEPLOYMENT, RESOURCES, Resource
from ballast.api.schema import Schema, structural_schema

FORBIDDEN_KEYS = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "const", "propertyNames"}


def walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_schema_is_structural(resource: Resource) -> None:
    """Every node has a type, no $ref or unions, and properties only on objects (Kubernetes' rules)."""
    for path, node in walk(object_schema(resource)):
        assert not FORBIDDEN_KEYS & node.keys(), f"{path}: {FORBIDDEN_KEYS & node.keys()}"
        assert "type" in node, f"{path} has no type"
        if "properties" in node or "additionalProperties" in node:
            assert node["type"] == "object", path
        if "items" in node:
            assert node["type"] == "array", path
        assert not ("properties" in node and "additionalProperties" in node), path
        # The API server types .metadata itself; a bare `type: object` there is the convention.
        if (
            path != ".metadata"
            and node["type"] == "object"
            and "properties" not in node
            and "additionalProperties" not in node
        ):
            assert node.get("x-kubernetes-preserve-unknown-fields") is True, f"{path}: untyped object"


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_spec_collections_and_strings_are_bounded(resource: Resource) -> None:
    """The API server estimates CEL cost from maxItems/maxLength: unbounded fields would be refused."""
    spec = object_schema(resource)["properties"]["spec"]
    for path, node in walk(spec, "spec"):
        if node["type"] == "array":
            assert "maxItems" in node, f"{path} needs maxItems"
        if node["type"] == "string":
            assert "maxLength" in node or "enum" in node, f"{path} needs maxLength"
        if node["type"] == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{path} needs maxProperties"


def test_optional_fields_are_omitted_properties_not_required() -> None:
    spec = object_schema(MODEL_DEPLOYMENT)["properties"]["spec"]
    assert set(spec["required"]) == {"model", "traffic"}
    budgets = spec["properties"]["budgets"]
    assert budgets["type"] == "object"
    assert "default" not in budgets


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_defaults_are_what_the_models_default_to(resource: Resource) -> None:
    """The API server's defaulting of an empty object equals pydantic's defaults for every scalar."""
    spec_schema = object_schema(resource)["properties"]["spec"]
    for path, node in walk(spec_schema, "spec"):
        if "default" in node and isinstance(node["default"], dict):
            assert node["default"] == apply_defaults({}, node), f"{path}: default is not fully expanded"


def test_model_deployment_defaults_match_the_model() -> None:
    from ballast.api.modeldeployment import ModelDeploymentSpec

    raw = {"model": {"name": "m", "image": "i"}, "traffic": {"parentRefs": [{"name": "gw"}]}}
    server_defaulted = apply_defaults(raw, object_schema(MODEL_DEPLOYMENT)["properties"]["spec"])
    model_defaulted = ModelDeploymentSpec.model_validate(raw).model_dump(by_alias=True, exclude_none=True, mode="json")

    def scalars(value: Any, path: str = "") -> dict[str, Any]:
        if isinstance(value, dict):
            return {k: v for key, sub in value.items() for k, v in scalars(sub, f"{path}.{key}").items()}
        if isinstance(value, list):
            return {k: v for i, sub in enumerate(value) for k, v in scalars(sub, f"{path}[{i}]").items()}
        return {path: value}

    # Every value the API server fills in, pydantic fills in identically.
    server, model = scalars(server_defaulted), scalars(model_defaulted)
    assert {k: model.get(k) for k in server} == server
    assert model[".rollout.interval"] == "30s"


def test_crd_metadata() -> None:
    crd = crd_manifest(MODEL_DEPLOYMENT)
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["mdep"]
    assert names["categories"] == ["ballast"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Stable", "Canary", "Weight", "Approval", "Killed", "GPUs", "Capacity", "Age"]
    assert crd["spec"]["scope"] == "Namespaced"


def test_cluster_kill_switch_is_cluster_scoped() -> None:
    scopes = {r.kind: crd_manifest(r)["spec"]["scope"] for r in RESOURCES}
    assert scopes == {"ModelDeployment": "Namespaced", "KillSwitch": "Namespaced", "ClusterKillSwitch": "Cluster"}


def test_extra_allow_models_preserve_unknown_fields() -> None:
    spec = object_schema(MODEL_DEPLOYMENT)["properties"]["spec"]
    pod_spec = spec["properties"]["model"]["properties"]["template"]["properties"]["spec"]
    assert pod_spec["x-kubernetes-preserve-unknown-fields"] is True
    assert pod_spec["properties"]["containers"]["items"]["x-kubernetes-preserve-unknown-fields"] is True


def test_status_schema_carries_no_defaults() -> None:
    from ballast.api.status import ModelDeploymentStatus

    assert all("default" not in node for _, node in walk(structural_schema(ModelDeploymentStatus, defaults=False)))
