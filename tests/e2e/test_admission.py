"""No escalation through Ballast: the admission policy judges the requester, as a real user."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from ballast.api.admission_policy import POLICY_NAME
from ballast.devstack.cluster import Cluster
from tests.e2e.helpers import model_deployment

AUTHOR = "alice@example.com"  # may create ModelDeployments, not Deployments
OPERATOR_OF_WORKLOADS = "bob@example.com"  # may create both


def _role(name: str, namespace: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": rules,
    }


def _binding(role: str, user: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{role}-{user.split('@')[0]}", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }


@pytest.fixture
def people(cluster: Cluster, namespace: str) -> None:
    """Two users known to the API server only by name (impersonated, as an authenticating proxy would)."""
    author_rules = [
        {"apiGroups": ["ballast.dev"], "resources": ["modeldeployments"], "verbs": ["create", "get", "patch"]}
    ]
    workload_rules = [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["create"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": ["create"]},
    ]
    cluster.apply(
        [
            _role("mdep-author", namespace, author_rules),
            _role("workloads", namespace, workload_rules),
            _binding("mdep-author", AUTHOR, namespace),
            _binding("mdep-author", OPERATOR_OF_WORKLOADS, namespace),
            _binding("workloads", OPERATOR_OF_WORKLOADS, namespace),
        ]
    )


def _create_as(cluster: Cluster, user: str, manifest: dict[str, Any]) -> Any:
    return cluster.kubectl("create", f"--as={user}", "-f", "-", stdin=yaml.safe_dump(manifest), check=False)


@pytest.mark.usefixtures("people")
def test_a_user_who_may_not_create_deployments_cannot_have_ballast_create_them(
    cluster: Cluster, namespace: str
) -> None:
    refused = _create_as(cluster, AUTHOR, model_deployment("by-alice", namespace))
    assert refused.returncode != 0
    assert f"ValidatingAdmissionPolicy '{POLICY_NAME}'" in refused.stderr
    assert f"{AUTHOR} may not create deployments.apps in namespace {namespace}" in refused.stderr
    assert cluster.kubectl("get", "mdep", "by-alice", "-n", namespace, check=False).returncode != 0


@pytest.mark.usefixtures("people")
def test_a_user_who_may_create_what_ballast_creates_is_accepted(cluster: Cluster, namespace: str) -> None:
    accepted = _create_as(cluster, OPERATOR_OF_WORKLOADS, model_deployment("by-bob", namespace))
    assert accepted.returncode == 0, accepted.stderr


@pytest.mark.usefixtures("people")
def test_a_reject_responder_of_two_pods_needs_the_right_to_its_disruption_budget(
    cluster: Cluster, namespace: str
) -> None:
    """A PodDisruptionBudget can hold up node drains: Ballast writes one only for whom may write it."""
    manifest = model_deployment("with-reject", namespace)
    manifest["spec"]["fallbacks"] = [{"name": "sorry", "reject": {}}]
    refused = _create_as(cluster, OPERATOR_OF_WORKLOADS, manifest)
    assert refused.returncode != 0
    assert f"{OPERATOR_OF_WORKLOADS} may not create poddisruptionbudgets.policy" in refused.stderr
    manifest["spec"]["fallbacks"] = [{"name": "sorry", "reject": {"replicas": 1}}]  # no budget for one pod
    accepted = _create_as(cluster, OPERATOR_OF_WORKLOADS, manifest)
    assert accepted.returncode == 0, accepted.stderr


@pytest.mark.usefixtures("people")
def test_only_a_new_spec_is_judged_so_labels_stay_editable(cluster: Cluster, namespace: str) -> None:
    assert _create_as(cluster, OPERATOR_OF_WORKLOADS, model_deployment("shared", namespace)).returncode == 0
    labelled = cluster.kubectl(
        "label", "mdep", "shared", "team=support", f"--as={AUTHOR}", "-n", namespace, check=False
    )
    assert labelled.returncode == 0, labelled.stderr
    patch = '{"spec":{"model":{"replicas":3}}}'
    edited = cluster.kubectl(
        "patch", "mdep", "shared", "--type=merge", "-p", patch, f"--as={AUTHOR}", "-n", namespace, check=False
    )
    assert edited.returncode != 0
    assert f"{AUTHOR} may not create deployments.apps" in edited.stderr
