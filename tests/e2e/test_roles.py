"""The chart's roles for people, asked of the real API server for real (impersonated) users.

The roles are the chart's own manifests (`helm template`); the API server's aggregation controller folds
them into view, edit and admin; `kubectl auth can-i` answers for each user, and the admission policies
(the same generated file the chart installs) judge their writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ballast.api.admission_policy import APPROVALS_POLICY_NAME, PROMOTE_ANNOTATION
from ballast.devstack.binaries import Binaries
from ballast.devstack.cluster import Cluster, wait_until
from tests.e2e.helm import Helm
from tests.e2e.helpers import model_deployment

VIEWER, EDITOR, ADMIN = "val@example.com", "eddie@example.com", "ada@example.com"
APPROVER, ON_CALL, PLATFORM = "april@example.com", "oscar@example.com", "pat@example.com"
NAMESPACED = {
    VIEWER: "view",
    EDITOR: "edit",
    ADMIN: "admin",
    APPROVER: "ballast-approver",
    ON_CALL: "ballast-kill-switch",
}


def binding(kind: str, role: str, user: str, namespace: str | None = None) -> dict[str, Any]:
    metadata = {"name": f"{role}-{user.split('@')[0]}", **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }


@pytest.fixture
def people(cluster: Cluster, binaries: Binaries, namespace: str, tmp_path: Path) -> Iterator[None]:
    """The chart's user roles, bound: five people in the namespace, and a platform engineer cluster-wide."""
    roles = Helm(binaries, tmp_path).template("--show-only=templates/user-roles.yaml")
    cluster.apply(roles)
    cluster.apply([binding("RoleBinding", role, user, namespace) for user, role in NAMESPACED.items()])
    platform = binding("ClusterRoleBinding", "ballast-cluster-kill-switch", PLATFORM)
    cluster.apply([platform])
    # Aggregation into view/edit/admin is the controller-manager's, a moment after the roles exist.
    wait_until(lambda: can(cluster, EDITOR, "create", "modeldeployments", namespace), 30, "ballast-editor in edit")
    wait_until(lambda: can(cluster, ADMIN, "approve", "modeldeployments", namespace), 30, "ballast-approver in admin")
    yield
    cluster.kubectl("delete", "clusterrolebinding", platform["metadata"]["name"], check=False)


def can(cluster: Cluster, user: str, verb: str, resource: str, namespace: str | None = None) -> bool:
    scope = ["-n", namespace] if namespace else []
    answer = cluster.kubectl("auth", "can-i", verb, f"{resource}.ballast.dev", f"--as={user}", *scope, check=False)
    return answer.stdout.strip() == "yes"


READ, WRITE = ("get", "list", "watch"), ("create", "update", "patch", "delete")
# user -> (verb, resource) -> allowed, in the test's namespace
EXPECTED: dict[str, dict[tuple[str, str], bool]] = {
    VIEWER: {
        **{(v, r): True for v in READ for r in ("modeldeployments", "killswitches")},
        **{(v, r): False for v in WRITE for r in ("modeldeployments", "killswitches")},
        ("approve", "modeldeployments"): False,
    },
    EDITOR: {
        **{(v, r): True for v in READ + WRITE for r in ("modeldeployments", "killswitches")},
        ("approve", "modeldeployments"): False,
    },
    ADMIN: {(v, "modeldeployments"): True for v in (*READ, *WRITE, "approve")},
    APPROVER: {
        **{(v, "modeldeployments"): True for v in (*READ, "patch", "approve")},
        **{(v, "modeldeployments"): False for v in ("create", "update", "delete")},
        ("create", "killswitches"): False,
    },
    ON_CALL: {
        **{(v, "killswitches"): True for v in READ + WRITE},
        **{(v, "modeldeployments"): True for v in READ},
        **{(v, "modeldeployments"): False for v in (*WRITE, "approve")},
        ("create", "clusterkillswitches"): False,
    },
    PLATFORM: {("create", "killswitches"): False, ("patch", "modeldeployments"): False},
}


@pytest.mark.usefixtures("people")
def test_each_role_grants_what_it_says_and_nothing_more(cluster: Cluster, namespace: str) -> None:
    wrong = [
        f"{user} {'may' if not allowed else 'may not'} {verb} {resource}"
        for user, answers in EXPECTED.items()
        for (verb, resource), allowed in answers.items()
        if can(cluster, user, verb, resource, namespace) != allowed
    ]
    assert wrong == []
    # Cluster-wide: only the platform engineer engages ClusterKillSwitches; nobody else reads beyond the namespace.
    assert can(cluster, PLATFORM, "create", "clusterkillswitches")
    assert can(cluster, PLATFORM, "delete", "clusterkillswitches")
    assert can(cluster, PLATFORM, "list", "modeldeployments")
    assert not can(cluster, ON_CALL, "create", "clusterkillswitches")
    assert not can(cluster, EDITOR, "list", "modeldeployments")


def annotate_as(cluster: Cluster, user: str, namespace: str, annotation: str) -> Any:
    return cluster.kubectl(
        "annotate", "mdep", "bot", annotation, "--overwrite", f"--as={user}", "-n", namespace, check=False
    )


@pytest.mark.usefixtures("people")
def test_only_approvers_promote_and_approvers_cannot_change_the_model(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(model_deployment("bot", namespace)))

    refused = annotate_as(cluster, EDITOR, namespace, f"{PROMOTE_ANNOTATION}=step-1")
    assert refused.returncode != 0
    assert f"ValidatingAdmissionPolicy '{APPROVALS_POLICY_NAME}'" in refused.stderr
    assert f"{EDITOR} may not approve ModelDeployment {namespace}/bot" in refused.stderr
    # Editors keep everything else: labels, and the protective commands (abort, pause).
    assert annotate_as(cluster, EDITOR, namespace, "ballast.dev/abort=1").returncode == 0
    labelled = cluster.kubectl("label", "mdep", "bot", "team=support", f"--as={EDITOR}", "-n", namespace, check=False)
    assert labelled.returncode == 0, labelled.stderr

    approved = annotate_as(cluster, APPROVER, namespace, f"{PROMOTE_ANNOTATION}=step-1")
    assert approved.returncode == 0, approved.stderr
    assert annotate_as(cluster, ADMIN, namespace, f"{PROMOTE_ANNOTATION}=step-2").returncode == 0
    # The same value again is no new approval; removing it approves nothing: neither is judged.
    assert annotate_as(cluster, EDITOR, namespace, f"{PROMOTE_ANNOTATION}=step-2").returncode == 0
    assert annotate_as(cluster, EDITOR, namespace, f"{PROMOTE_ANNOTATION}-").returncode == 0

    # An approver may not change what runs: the no-escalation policy asks for the rights Ballast would use.
    edited = cluster.kubectl("patch", "mdep", "bot", "--type=merge", "-p", '{"spec":{"model":{"replicas":3}}}',
                             f"--as={APPROVER}", "-n", namespace, check=False)  # fmt: skip
    assert edited.returncode != 0
    assert f"{APPROVER} may not create deployments.apps" in edited.stderr
