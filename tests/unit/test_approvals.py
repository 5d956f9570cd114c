"""Steps that wait for a person: status shows the wait, a deadline rolls back or holds as declared, and every
Event of a deployment names its owner."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ballast.api.modeldeployment import ModelDeploymentSpec, Owner, Webhook
from ballast.api.status import ModelDeploymentStatus
from ballast.api.validation import validate_manifest
from ballast.hooks.payload import webhook_payload
from ballast.observability.events import OWNER_ESCALATION_ANNOTATION, OWNER_TEAM_ANNOTATION, event_manifest
from ballast.rollout.context import Event
from ballast.rollout.observations import Commands
from tests.unit.test_rollout_core import READY, Run, spec


def approval_spec(timeout: dict[str, Any] | None = None) -> ModelDeploymentSpec:
    """10% for 1m, then 50% waiting for a person (with `timeout`), then 100%."""
    waiting: dict[str, Any] = {"weight": 50, "approval": True, **({"approvalTimeout": timeout} if timeout else {})}
    return spec(steps=[{"weight": 10, "pause": "1m"}, waiting, {"weight": 100}])


def at_approval_step(run: Run) -> None:
    run.step("aaa")
    run.observed = {"aaa": READY, "bbb": READY}
    run.step("bbb")
    run.step("bbb", 5)
    run.step("bbb", 60)
    assert run.status.current_step == 1


def test_a_waiting_step_shows_in_status_until_approved() -> None:
    run = Run(approval_spec())
    at_approval_step(run)
    pending = run.status.pending_approval
    assert pending is not None
    assert (pending.step, pending.revision, pending.since) == (2, "bbb", run.status.step_started_at)
    assert (pending.deadline, pending.on_timeout, pending.overdue) == (None, None, False)
    run.commands = Commands(promote="t1", approved_by="alice")
    run.step("bbb")
    assert run.status.pending_approval is None


def test_a_step_without_approval_never_shows_a_wait() -> None:
    run = Run(spec(steps=[{"weight": 10, "pause": "1m"}, {"weight": 100}]))
    for seconds in (0, 1, 5, 30, 60, 61):
        run.observed = {"aaa": READY, "bbb": READY}
        run.step("aaa" if seconds == 0 else "bbb", seconds)
        assert run.status.pending_approval is None
    assert run.status.phase == "Stable"


def test_an_approval_deadline_rolls_back_at_the_deadline_and_not_before() -> None:
    run = Run(approval_spec({"after": "10m"}))
    at_approval_step(run)
    pending = run.status.pending_approval
    assert pending is not None
    assert (pending.deadline, pending.on_timeout) == ("2026-11-24T12:11:05Z", "rollback")
    assert run.status.next_check_at == pending.deadline  # woken at the deadline, no event needed
    run.step("bbb", 599)
    assert run.status.phase == "Progressing"
    decision = run.step("bbb", 1)
    assert run.status.phase == "RolledBack"
    assert run.status.pending_approval is None
    timed_out = [e.message for e in decision.events if e.reason == "ApprovalTimedOut"]
    assert len(timed_out) == 1
    assert timed_out[0].startswith("Rolled back canary bbb: step 2 was not approved within 10m")


def test_an_approval_deadline_with_hold_warns_once_and_keeps_waiting() -> None:
    run = Run(approval_spec({"after": "10m", "action": "hold"}))
    at_approval_step(run)
    overdue = [e for s in (600, 1, 60, 3600) for e in run.step("bbb", s).events if e.reason == "ApprovalOverdue"]
    assert len(overdue) == 1
    assert overdue[0].type == "Warning"
    assert run.status.phase == "Progressing"
    pending = run.status.pending_approval
    assert pending is not None
    assert pending.overdue
    run.commands = Commands(promote="t1", approved_by="alice")
    run.step("bbb")
    assert (run.status.current_step, run.status.pending_approval) == (2, None)


def test_an_approval_timeout_needs_approval_on_its_step() -> None:
    manifest = {
        "apiVersion": "ballast.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "m", "namespace": "n"},
        "spec": {"model": {"name": "m", "image": "i"}, "traffic": {"parentRefs": [{"name": "gw"}]},
                 "rollout": {"steps": [{"weight": 100, "approvalTimeout": {"after": "1h"}}]}},
    }  # fmt: skip
    problems = validate_manifest(manifest)
    assert any("approvalTimeout needs approval: true" in p for p in problems), problems


MD = {"apiVersion": "ballast.dev/v1alpha1", "kind": "ModelDeployment",
      "metadata": {"name": "bot", "namespace": "team", "uid": "u1"}}  # fmt: skip
NOW = datetime(2026, 11, 29, tzinfo=UTC)


def test_every_event_of_a_deployment_with_an_owner_names_it() -> None:
    md = {**MD, "spec": {"owner": {"team": "assistants", "escalation": "pager:assistants-oncall"}}}
    event = event_manifest(md, Event("Warning", "AnalysisFailed", "Rolled back canary bbb"), NOW)
    assert event["message"] == "Rolled back canary bbb [owner assistants, escalation pager:assistants-oncall]"
    assert event["metadata"]["annotations"] == {
        OWNER_TEAM_ANNOTATION: "assistants",
        OWNER_ESCALATION_ANNOTATION: "pager:assistants-oncall",
    }


@pytest.mark.parametrize("length", [10, 1024, 5000])
def test_a_long_message_keeps_the_owner_within_the_event_limit(length: int) -> None:
    md = {**MD, "spec": {"owner": {"team": "t"}}}
    message = event_manifest(md, Event("Normal", "R", "x" * length), NOW)["message"]
    assert len(message) <= 1024
    assert message.endswith(" [owner t]")


def test_an_event_without_an_owner_is_unchanged() -> None:
    event = event_manifest({**MD, "spec": {}}, Event("Normal", "Deployed", "First revision"), NOW)
    assert event["message"] == "First revision"
    assert "annotations" not in event["metadata"]


def test_every_webhook_call_names_the_owner() -> None:
    owned = approval_spec().model_copy(update={"owner": Owner(team="assistants", escalation="pager:oncall")})
    hook = Webhook(name="notify", type="event", url="https://hooks.example.com/")
    payload = webhook_payload({**MD, "metadata": {**MD["metadata"], "generation": 1}}, owned,
                              ModelDeploymentStatus(), hook, None)  # fmt: skip
    assert payload["owner"] == {"team": "assistants", "escalation": "pager:oncall"}
    assert webhook_payload(MD, approval_spec(), ModelDeploymentStatus(), hook, None)["owner"] is None
