"""A revision is the pod template as written: defaults, key order and operator upgrades never move it."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field, create_model

from ballast.api.cel import apply_defaults
from ballast.api.crd import object_schema
from ballast.api.modeldeployment import ModelDeploymentSpec, ModelSpec
from ballast.api.resources import MODEL_DEPLOYMENT
from ballast.api.revision import canonical_json, revision_hash, revision_inputs
from ballast.api.schema import structural_schema
from tests.examples import valid_examples

TEMPLATE_SPEC: dict[str, Any] = {
    "model": {
        "name": "llama",
        "template": {"spec": {"containers": [{"name": "server", "image": "vllm:0.11", "args": ["--x"]}]}},
    },
    "traffic": {"parentRefs": [{"name": "gw"}]},
}


def test_hash_is_ten_hex_characters() -> None:
    digest = revision_hash(TEMPLATE_SPEC)
    assert len(digest) == 10
    assert int(digest, 16) >= 0


def test_hash_changes_with_the_template() -> None:
    changed = copy.deepcopy(TEMPLATE_SPEC)
    changed["model"]["template"]["spec"]["containers"][0]["image"] = "vllm:0.12"
    assert revision_hash(changed) != revision_hash(TEMPLATE_SPEC)


def test_hash_ignores_fields_outside_the_template() -> None:
    changed = copy.deepcopy(TEMPLATE_SPEC)
    changed["model"]["replicas"] = 7
    changed["rollout"] = {"interval": "1m"}
    assert revision_hash(changed) == revision_hash(TEMPLATE_SPEC)


def test_hash_ignores_key_order() -> None:
    reordered = {"traffic": TEMPLATE_SPEC["traffic"], "model": dict(reversed(list(TEMPLATE_SPEC["model"].items())))}
    assert revision_hash(reordered) == revision_hash(TEMPLATE_SPEC)


def test_image_shorthand_hashes_what_was_written_and_what_reaches_the_pod() -> None:
    spec = {"model": {"name": "m", "image": "i:1", "args": ["a"]}}
    assert revision_inputs(spec) == {"image": "i:1", "args": ["a"], "modelName": "m", "port": 8000}


def test_the_model_name_is_a_new_revision() -> None:
    """Pods carry the model name as a label (Prometheus reads it): a new name is a canary, not a restart."""
    renamed = copy.deepcopy(TEMPLATE_SPEC)
    renamed["model"]["name"] = "llama-2"
    assert revision_hash(renamed) != revision_hash(TEMPLATE_SPEC)


def test_the_traffic_port_is_a_new_revision() -> None:
    """The server listens on traffic.port (the shorthand's containerPort, every revision's Service target)."""
    for base in (TEMPLATE_SPEC, {"model": {"name": "m", "image": "i:1"}, "traffic": {"port": 8000}}):
        moved = copy.deepcopy(base)
        moved["traffic"]["port"] = 9000
        assert revision_hash(moved) != revision_hash(base)


def test_api_server_defaulting_does_not_move_any_example_revision() -> None:
    """The API server fills CRD defaults into stored objects; no default may reach the hashed fields."""
    schema = object_schema(MODEL_DEPLOYMENT)["properties"]["spec"]
    for _, manifest in valid_examples():
        if manifest["kind"] == "ModelDeployment":
            assert revision_hash(apply_defaults(manifest["spec"], schema)) == revision_hash(manifest["spec"])


def test_a_new_default_in_the_models_keeps_every_revision() -> None:
    """An operator upgrade that adds defaults (in spec.model and in spec) restarts no canary."""
    future_model = create_model("FutureModelSpec", __base__=ModelSpec, priority=(int, Field(default=5)))
    future_spec = create_model(
        "FutureModelDeploymentSpec",
        __base__=ModelDeploymentSpec,
        model=(future_model, Field(description="What runs.")),
        warmup=(str, Field(default="30s", max_length=8)),
    )
    raw = copy.deepcopy(TEMPLATE_SPEC)
    # What the API server stores after the upgrade: the raw spec plus the future schema's defaults.
    stored = apply_defaults(raw, structural_schema(future_spec))
    assert stored["warmup"] == "30s"
    assert stored["model"]["priority"] == 5
    assert revision_hash(stored) == revision_hash(raw)
    # The naive alternative, hashing a defaulted model dump, would have restarted every canary.
    dumped_before = ModelDeploymentSpec.model_validate(raw).model_dump(by_alias=True, mode="json")
    dumped_after = future_spec.model_validate(raw).model_dump(by_alias=True, mode="json")
    assert canonical_json(dumped_before) != canonical_json(dumped_after)


def test_no_schema_default_lives_inside_the_hashed_fields() -> None:
    """Structural guarantee behind the tests above: the hashed subtrees carry no defaults at all."""
    model = object_schema(MODEL_DEPLOYMENT)["properties"]["spec"]["properties"]["model"]["properties"]

    def defaults(node: Any) -> list[Any]:
        if not isinstance(node, dict):
            return []
        found = [node["default"]] if "default" in node else []
        return found + [d for value in node.values() for d in defaults(value)]

    for key in ("template", "image", "command", "args", "env"):
        assert defaults(model[key]) == [], key
