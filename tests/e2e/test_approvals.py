"""Approvals a person can be held to, on the real API server with real (impersonated) identities: the record
names who acted, a switch's requester is its writer, a wait shows in `kubectl get`, a deadline acts, and every
Event names the owner."""

from __future__ import annotations

import json

import pytest

from ballast.devstack.cluster import Cluster
from tests.e2e.helpers import Plugin, apply, change_template, model_deployment, status, wait_status
from tests.e2e.test_roles import APPROVER, ON_CALL, binding, people  # noqa: F401  (the roles fixture)

OWNER = {"team": "assistants", "escalation": "pager:assistants-oncall"}


def events_of(cluster: Cluster, namespace: str, reason: str) -> list[dict[str, object]]:
    found = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", f"reason={reason}", "-o", "json")
    items: list[dict[str, object]] = json.loads(found.stdout)["items"]
    return items


@pytest.mark.usefixtures("people", "operator")
def test_a_service_account_approval_is_recorded_as_the_service_account_and_events_name_the_owner(
    cluster: Cluster, kubectl_ballast: Plugin, namespace: str
) -> None:
    cluster.kubectl("create", "serviceaccount", "release-bot", "-n", namespace)
    account = f"system:serviceaccount:{namespace}:release-bot"
    robot = binding("RoleBinding", "ballast-approver", "release-bot", namespace)
    robot["subjects"] = [{"kind": "ServiceAccount", "name": "release-bot", "namespace": namespace}]
    cluster.apply([robot])
    manifest = model_deployment("bot", namespace)
    manifest["spec"]["owner"] = OWNER
    apply(cluster, manifest)
    wait_status(cluster, namespace, "bot", "Stable", lambda s: s.get("phase") == "Stable")
    change_template(cluster, namespace, "bot", "0.02")
    wait_status(cluster, namespace, "bot", "a pending approval", lambda s: s.get("pendingApproval", {}).get("step"))
    table = cluster.kubectl("get", "mdep", "bot", "-n", namespace).stdout.splitlines()
    assert table[0].split()[:6] == ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "APPROVAL"]
    assert table[1].split()[5] == "1"

    approved = kubectl_ballast("approve", "bot", f"--as={account}")
    assert approved.returncode == 0, approved.stderr
    done = wait_status(cluster, namespace, "bot", "promoted", lambda s: s.get("phase") == "Stable", 60)
    assert "pendingApproval" not in done
    record = next(h for h in done["history"] if h["action"] == "approve")
    assert record["message"] == f"Step 1/2 approved by {account}"
    # Every decision's Event names who answers for the model, in the message and in annotations.
    events = events_of(cluster, namespace, "Approved") + events_of(cluster, namespace, "Promoted")
    assert len(events) == 2
    for event in events:
        assert str(event["message"]).endswith("[owner assistants, escalation pager:assistants-oncall]")
        assert event["metadata"]["annotations"]["ballast.dev/owner-team"] == "assistants"  # type: ignore[index]


def switch(namespace: str, requested_by: str) -> str:
    return json.dumps({
        "apiVersion": "ballast.dev/v1alpha1", "kind": "KillSwitch",
        "metadata": {"name": f"by-{requested_by.split('@')[0]}", "namespace": namespace},
        "spec": {"modelDeployments": ["bot"], "reason": "incident 4711", "requestedBy": requested_by},
    })  # fmt: skip


@pytest.mark.usefixtures("people")
def test_a_switch_names_its_writer_as_requester_or_is_refused(cluster: Cluster, namespace: str) -> None:
    claimed = cluster.kubectl("create", "-f", "-", f"--as={ON_CALL}", stdin=switch(namespace, "ceo@example.com"),
                              check=False)  # fmt: skip
    assert claimed.returncode != 0
    assert f"it says ceo@example.com but the request is from {ON_CALL}" in claimed.stderr
    own = cluster.kubectl("create", "-f", "-", f"--as={ON_CALL}", stdin=switch(namespace, ON_CALL), check=False)
    assert own.returncode == 0, own.stderr
    # Editing another field keeps the original requester: only a new requestedBy is judged.
    edited = cluster.kubectl("patch", "killswitch", "by-oscar", "-n", namespace, "--type=merge",
                             "-p", '{"spec":{"reason":"incident 4711, still open"}}', check=False)  # fmt: skip
    assert edited.returncode == 0, edited.stderr


@pytest.mark.usefixtures("operator")
def test_an_unapproved_step_is_rolled_back_at_its_deadline(cluster: Cluster, namespace: str) -> None:
    steps = [{"weight": 30, "approval": True, "approvalTimeout": {"after": "5s"}}, {"weight": 100}]
    apply(cluster, model_deployment("late", namespace, steps=steps))
    wait_status(cluster, namespace, "late", "Stable", lambda s: s.get("phase") == "Stable")
    change_template(cluster, namespace, "late", "0.02")
    waiting = wait_status(cluster, namespace, "late", "waiting", lambda s: s.get("pendingApproval", {}).get("deadline"))
    assert waiting["pendingApproval"]["onTimeout"] == "rollback"
    rolled = wait_status(cluster, namespace, "late", "RolledBack", lambda s: s.get("phase") == "RolledBack", 60)
    # (A later entry may record the stable's replicas carrying everyone again: the rollback's own entry says why.)
    timed_out = [h for h in rolled["history"] if h["action"] == "rollback"]
    assert [h["reason"] for h in timed_out] == ["ApprovalTimedOut"]
    assert "step 1 was not approved within 5s" in timed_out[0]["message"]
    assert status(cluster, namespace, "late").get("pendingApproval") is None
