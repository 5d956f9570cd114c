"""A revision's children are rendered from what was recorded with it, never from the spec as it is now."""

from __future__ import annotations

import copy
from typing import Any

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.revision import revision_hash, revision_inputs
from ballast.api.status import ModelDeploymentStatus, RevisionStatus, Weights
from ballast.traffic.backends import backends_for
from ballast.traffic.gateway_api import backend_refs
from ballast.traffic.service import build_service
from ballast.workloads import render

MD = {"metadata": {"name": "bot", "namespace": "apps", "uid": "u"}}
RAW: dict[str, Any] = {
    "model": {"name": "llama", "image": "sim:1", "replicas": 2},
    "traffic": {"parentRefs": [{"name": "gw"}], "port": 8000},
}


def moved(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(RAW)
    raw["model"]["name"] = changes.get("name", raw["model"]["name"])
    raw["traffic"]["port"] = changes.get("port", raw["traffic"]["port"])
    return raw


def children(raw: dict[str, Any], revision: str, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    spec = ModelDeploymentSpec.model_validate(raw)
    return [
        render.deployment(MD, spec, revision, "stable", 2, inputs),
        render.service(MD, spec, revision, "stable", inputs),
    ]


def test_the_stable_revision_renders_the_same_after_the_model_name_and_port_change() -> None:
    recorded = revision_inputs(RAW)
    stable = revision_hash(RAW)
    before = children(RAW, stable, recorded)
    after = children(moved(name="llama-2", port=9000), stable, recorded)
    assert after == before
    pod = before[0]["spec"]["template"]
    assert pod["metadata"]["labels"][render.MODEL_LABEL] == "llama"
    assert pod["spec"]["containers"][0]["ports"] == [{"name": "http", "containerPort": 8000}]


def test_the_new_revision_carries_the_new_model_name_and_port() -> None:
    raw = moved(name="llama-2", port=9000)
    deployment, service = children(raw, revision_hash(raw), revision_inputs(raw))
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"][render.MODEL_LABEL] == "llama-2"
    assert pod["spec"]["containers"][0]["ports"] == [{"name": "http", "containerPort": 9000}]
    assert service["spec"]["ports"] == [{"name": "http", "port": 9000, "targetPort": 9000}]


def canary_status(stable: str, canary: str) -> ModelDeploymentStatus:
    return ModelDeploymentStatus(
        stable_revision=stable,
        canary_revision=canary,
        current_step=0,
        revisions=[RevisionStatus(name=stable, role="stable"), RevisionStatus(name=canary, role="canary")],
        weights=Weights(stable=90, canary=10),
    )


def test_each_revision_is_reached_on_its_own_port() -> None:
    new = moved(port=9000)
    stable, canary = revision_hash(RAW), revision_hash(new)
    recorded = {stable: revision_inputs(RAW), canary: revision_inputs(new)}
    spec = ModelDeploymentSpec.model_validate(new)
    backends = backends_for(MD, spec, canary_status(stable, canary), recorded)
    assert backends is not None
    assert backend_refs(spec, backends) == [
        {"name": f"bot-{stable}", "port": 8000, "weight": 90},
        {"name": f"bot-{canary}", "port": 9000, "weight": 10},
    ]
    # One Service over both revisions' pods targets the port by the name both give it.
    service_spec = ModelDeploymentSpec.model_validate({**new, "traffic": {"router": "service", "port": 9000}})
    assert build_service(MD, service_spec, backends)["spec"]["ports"] == [
        {"name": "http", "port": 9000, "targetPort": "http"}
    ]


def test_a_revision_recorded_before_the_port_was_part_of_it_keeps_the_spec_port() -> None:
    legacy = {"image": "sim:1"}
    spec = ModelDeploymentSpec.model_validate(RAW)
    assert render.served_port(legacy, spec) == 8000
    assert render.model_name(legacy, spec) == "llama"
