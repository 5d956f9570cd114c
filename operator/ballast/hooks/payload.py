"""What a webhook receives: one documented JSON document (docs/gates.md), built from the object and its status."""

from __future__ import annotations

from typing import Any

from ballast.api.modeldeployment import ModelDeploymentSpec, Webhook
from ballast.api.status import HistoryEntry, ModelDeploymentStatus
from ballast.workloads import render

PAYLOAD_KIND = "WebhookCall"


def canary_address(md: dict[str, Any], spec: ModelDeploymentSpec, revision: str | None) -> str | None:
    if revision is None:
        return None
    metadata = md["metadata"]
    service = render.workload_name(metadata["name"], revision)
    return f"http://{service}.{metadata['namespace']}.svc:{spec.traffic.port}"


def webhook_payload(
    md: dict[str, Any],
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    hook: Webhook,
    step: int | None,
    event: HistoryEntry | None = None,
) -> dict[str, Any]:
    metadata = md["metadata"]
    steps = spec.rollout.effective_steps()
    return {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": PAYLOAD_KIND,
        "webhook": {"name": hook.name, "type": hook.type, "metadata": dict(hook.metadata)},
        "modelDeployment": {
            "namespace": metadata["namespace"],
            "name": metadata["name"],
            "uid": metadata.get("uid"),
            "generation": metadata.get("generation"),
            "model": spec.model.name,
        },
        # Who answers for the model: a notification reaches the person who can act (spec.owner).
        "owner": None if spec.owner is None else spec.owner.model_dump(by_alias=True, exclude_none=True),
        "phase": status.phase,
        "step": step,
        "steps": len(steps),
        "weight": None if step is None else steps[step].weight,
        "stableRevision": status.stable_revision,
        "canaryRevision": status.canary_revision,
        "canaryAddress": canary_address(md, spec, status.canary_revision),
        "event": None if event is None else event.model_dump(by_alias=True, exclude_none=True),
    }
