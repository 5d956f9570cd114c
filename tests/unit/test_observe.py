"""What observe() reads from a revision's Deployment."""

from __future__ import annotations

from typing import Any

from ballast.shell.observe import observe_revisions, pods_refused
from ballast.workloads.render import REVISION_LABEL

REFUSAL = 'pods "m-bbb-1" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false'


def _deployment(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "m-bbb", "generation": 1, "labels": {REVISION_LABEL: "bbb"}},
        "status": {"observedGeneration": 1, "conditions": conditions},
    }


def test_a_replica_failure_is_read_as_refused_pods_with_the_api_servers_reason() -> None:
    deployment = _deployment(
        [
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": REFUSAL},
        ]
    )
    assert pods_refused(deployment) == REFUSAL
    assert observe_revisions([deployment], [])["bbb"].refused == REFUSAL


def test_a_resolved_or_absent_replica_failure_is_not_a_refusal() -> None:
    resolved = {"type": "ReplicaFailure", "status": "False", "reason": "FailedCreate", "message": REFUSAL}
    assert pods_refused(_deployment([resolved])) == ""
    assert pods_refused(_deployment([])) == ""
    assert pods_refused({"metadata": {"name": "new"}}) == ""
