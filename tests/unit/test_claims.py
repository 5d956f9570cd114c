"""The e2e tests' checks (`tests/claims.py`) fail on the broken variants their names rule out."""

from __future__ import annotations

from typing import Any

import pytest

from tests import claims


def history(rolled_back_after: int) -> list[dict[str, Any]]:
    return [
        {"action": "deploy", "reason": "Deployed", "at": "2026-11-24T12:00:00Z"},
        {"action": "canary", "reason": "CanaryStarted", "at": "2026-11-24T12:00:10Z"},
        {"action": "rollback", "reason": "ProgressDeadlineExceeded",
         "at": f"2026-11-24T12:00:{10 + rolled_back_after:02d}Z"},
    ]  # fmt: skip


def test_a_rollback_at_the_deadline_passes_the_deadline_check() -> None:
    claims.rolled_back_at_deadline(history(8), deadline=8, slack=20)
    claims.rolled_back_at_deadline(history(28), deadline=8, slack=20)


@pytest.mark.parametrize(("after", "says"), [(1, "before its 8s deadline"), (29, "8s deadline")])
def test_an_early_or_late_rollback_fails_the_deadline_check(after: int, says: str) -> None:
    with pytest.raises(AssertionError, match=says):
        claims.rolled_back_at_deadline(history(after), deadline=8, slack=20)


def test_a_rollback_for_another_reason_fails_the_deadline_check() -> None:
    crashed = history(9)
    crashed[-1]["reason"] = "CrashLoop"
    with pytest.raises(AssertionError):
        claims.rolled_back_at_deadline(crashed, deadline=8, slack=20)


def pod(state: str, ready: bool) -> dict[str, Any]:
    return {"status": {
        "conditions": [{"type": "Ready", "status": str(ready)}],
        "containerStatuses": [{"ready": ready, "restartCount": 2, "state": {state: {}}}],
    }}  # fmt: skip


def test_a_down_container_in_a_not_ready_pod_passes_the_readiness_check() -> None:
    assert claims.not_ready_while_down(pod("waiting", False)) is True
    assert claims.not_ready_while_down(pod("running", True)) is False  # running: nothing to judge yet


@pytest.mark.parametrize("state", ["waiting", "terminated"])
def test_a_down_container_whose_pod_says_ready_fails_the_readiness_check(state: str) -> None:
    with pytest.raises(AssertionError, match="ready"):
        claims.not_ready_while_down(pod(state, True))


DEPLOYMENTS = {"bot-aaa": {"status": {"readyReplicas": 2}}}


def test_revisions_that_name_their_deployment_and_its_ready_replicas_pass() -> None:
    claims.revisions_match_deployments([{"name": "aaa", "workload": "bot-aaa", "readyReplicas": 2}], DEPLOYMENTS)


@pytest.mark.parametrize(
    "revision",
    [
        {"name": "aaa", "workload": "", "readyReplicas": 0},  # what status said before: nothing
        {"name": "aaa", "workload": "bot-aaa", "readyReplicas": 0},
        {"name": "aaa", "workload": "bot-bbb", "readyReplicas": 2},
    ],
)
def test_revisions_that_misreport_their_deployment_fail(revision: dict[str, Any]) -> None:
    with pytest.raises(AssertionError):
        claims.revisions_match_deployments([revision], DEPLOYMENTS)
