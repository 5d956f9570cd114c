"""Webhook gates in the decision core: each point holds until its gates pass; refusals and errors as declared."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from ballast.api.modeldeployment import ModelDeploymentSpec, Webhook
from ballast.api.timestamps import format_time
from ballast.rollout.core import Decision, decide
from ballast.rollout.gates import backoff, due_calls
from ballast.rollout.observations import Commands, GateResult
from tests.unit.test_rollout_core import READY, T0, Run, spec

STEPS = [{"weight": 10, "pause": "10s"}, {"weight": 50, "pause": "10s"}, {"weight": 100}]


def hook(name: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "url": f"https://{name}.example.com/gate", **extra}


class GatedRun(Run):
    """A Run whose gates answer when told to, like the shell's calls would."""

    def __init__(self, *hooks: dict[str, Any], steps: list[dict[str, Any]] | None = None) -> None:
        super().__init__(spec(steps=steps or STEPS, webhooks=list(hooks)))
        self.answers: dict[str, GateResult] = {}

    def step(self, revision: str, seconds: float = 0) -> Decision:
        self.now += timedelta(seconds=seconds)
        # A call finishes when its answer comes, which is when the shell hands it over.
        answers = {n: replace(a, at=format_time(self.now)) if a.at == "" else a for n, a in self.answers.items()}
        observations = replace(self.observations(), gate_results=answers)
        decision = decide(self.spec, revision, self.generation, self.status, observations, self.now)
        self.status = decision.status
        self.decisions.append(decision)
        self.answers = {}
        return decision

    def answer(self, name: str, outcome: str, code: int | None = 200, message: str = "", **scores: float) -> None:
        entry = next(e for e in self.status.gates if e.name == name)
        self.answers[name] = GateResult(
            name=name, type=entry.type, revision=entry.revision, step=entry.step, outcome=outcome,
            at="", code=code, latency_seconds=0.25, scores=scores, message=message,
        )  # fmt: skip

    def canary_waiting(self) -> None:
        self.step("aaa")
        self.observed = {"aaa": READY, "bbb": READY}
        self.step("bbb")


def test_a_pre_rollout_gate_holds_the_canary_at_no_traffic_until_it_passes() -> None:
    run = GatedRun(hook("smoke", "pre-rollout"))
    run.canary_waiting()
    run.step("bbb", 1)
    assert (run.status.weights.canary, run.status.current_step) == (0, None)
    assert [(e.name, e.outcome) for e in run.status.gates] == [("smoke", "Pending")]
    assert [e.name for e in due_calls(run.status, run.now)] == ["smoke"]
    assert "gate smoke (pre-rollout: called, no answer yet)" in run.status.message
    run.step("bbb", 30)
    assert run.status.weights.canary == 0  # time alone never opens a gate
    run.answer("smoke", "Passed", accuracy=0.93)
    decision = run.step("bbb")
    assert run.status.weights.canary == 10
    passed = next(h for h in decision.history if h.action == "gate-passed")
    assert passed.values == {"httpStatus": 200.0, "latencySeconds": 0.25, "attempts": 1.0, "score:accuracy": 0.93}
    assert [e.reason for e in decision.events] == ["GatePassed", "StepStarted"]
    assert due_calls(run.status, run.now) == []


def test_a_refusing_pre_rollout_gate_rolls_back_with_its_answer_and_the_canary_never_takes_traffic() -> None:
    run = GatedRun(hook("smoke", "pre-rollout"))
    run.canary_waiting()
    run.step("bbb", 1)
    run.answer("smoke", "Refused", code=403, message="golden set: 41/50 correct")
    decision = run.step("bbb")
    assert run.status.phase == "RolledBack"
    assert all(d.status.weights.canary == 0 for d in run.decisions)
    rollback = next(e for e in decision.events if e.reason == "GateRefused")
    assert "gate smoke (pre-rollout) refused: HTTP 403: golden set: 41/50 correct" in rollback.message
    assert run.status.gates[0].outcome == "Refused"
    assert due_calls(run.status, run.now) == []


def test_a_gate_that_cannot_answer_holds_is_asked_again_with_backoff_and_meets_its_deadline() -> None:
    run = GatedRun(hook("smoke", "pre-rollout", deadline="30s"))
    run.canary_waiting()
    run.step("bbb", 1)
    started = run.now
    run.answer("smoke", "Error", code=None, message="no answer within 10s")
    decision = run.step("bbb")
    assert [e.reason for e in decision.events] == ["GateUnavailable"]
    entry = run.status.gates[0]
    assert (entry.outcome, entry.attempts, entry.retry_at) == ("Error", 1, format_time(run.now + timedelta(seconds=1)))
    assert run.status.next_check_at == entry.retry_at
    run.answer("smoke", "Error", code=503, message="the gate failed (5xx)")
    assert run.step("bbb", 1).events == ()  # recorded once, on the transition
    assert run.status.gates[0].retry_at == format_time(run.now + timedelta(seconds=2))
    assert run.status.phase == "Progressing"
    assert run.status.weights.canary == 0
    run.now = started + timedelta(seconds=30)
    decision = run.step("bbb")
    assert run.status.phase == "RolledBack"
    assert [e.reason for e in decision.events] == ["GateDeadlineExceeded"]
    assert "did not answer within 30s: the gate failed (5xx)" in decision.events[0].message


def test_backoff_doubles_from_one_second_up_to_a_minute() -> None:
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 6, 7, 8, 1000)] == [1, 2, 4, 32, 60, 60, 60]


def test_a_gate_that_recovers_before_its_deadline_lets_the_canary_proceed() -> None:
    run = GatedRun(hook("smoke", "pre-rollout", deadline="1m"))
    run.canary_waiting()
    run.step("bbb", 1)
    run.answer("smoke", "Error", code=None, message="connection refused")
    run.step("bbb")
    run.answer("smoke", "Passed")
    run.step("bbb", 5)
    assert run.status.weights.canary == 10
    assert run.status.gates[0].error_since is None


def test_rollout_gates_guard_every_advance_and_each_step_is_a_new_point() -> None:
    run = GatedRun(hook("load", "rollout"))
    run.canary_waiting()
    run.step("bbb", 1)
    assert run.status.weights.canary == 10
    assert run.status.gates == []
    run.step("bbb", 10)
    assert run.status.weights.canary == 10
    assert [(e.step, e.outcome) for e in run.status.gates] == [(0, "Pending")]
    run.answer("load", "Passed")
    run.step("bbb")
    assert run.status.weights.canary == 50
    run.step("bbb", 10)
    assert [(e.step, e.outcome) for e in run.status.gates] == [(1, "Pending")]
    run.answer("load", "Passed")
    run.step("bbb")
    assert run.status.weights.canary == 100
    run.step("bbb", 10)
    assert run.status.phase == "Promoting"  # the promotion is an advance too
    run.answer("load", "Passed")
    run.step("bbb")
    assert run.status.phase == "Stable"


def test_a_confirm_promotion_gate_holds_the_last_step_and_asks_again_until_it_answers_2xx() -> None:
    run = GatedRun(hook("confirm", "confirm-promotion"))
    run.canary_waiting()
    run.step("bbb", 1)
    run.step("bbb", 10)
    assert run.status.weights.canary == 50  # not before the last step
    run.step("bbb", 10)
    assert run.status.weights.canary == 50
    run.answer("confirm", "Refused", code=409, message="waiting for the on-call")
    decision = run.step("bbb")
    assert run.status.phase == "Progressing"
    assert run.status.weights.canary == 50
    assert [e.reason for e in decision.events] == ["GateRefused"]
    assert run.status.gates[0].retry_at == format_time(run.now + timedelta(seconds=10))  # rollout.interval
    run.answer("confirm", "Refused", code=409)
    assert run.step("bbb", 10).events == ()
    run.answer("confirm", "Passed")
    run.step("bbb", 10)
    assert run.status.weights.canary == 100
    assert run.status.gates[0].attempts == 3


def test_a_gate_declared_hold_on_refusal_holds_and_one_declared_rollback_rolls_back() -> None:
    held = GatedRun(hook("smoke", "pre-rollout", onRefusal="hold"))
    held.canary_waiting()
    held.step("bbb", 1)
    held.answer("smoke", "Refused", code=400)
    held.step("bbb")
    assert held.status.phase == "Progressing"
    rolled = GatedRun(hook("confirm", "confirm-promotion", onRefusal="rollback"), steps=[{"weight": 100}])
    rolled.canary_waiting()
    rolled.step("bbb", 1)
    rolled.answer("confirm", "Refused", code=400)
    rolled.step("bbb")
    assert rolled.status.phase == "RolledBack"


def test_an_answer_for_another_point_or_handed_twice_counts_once() -> None:
    run = GatedRun(hook("load", "rollout"))
    run.canary_waiting()
    run.step("bbb", 1)
    run.step("bbb", 10)
    run.answer("load", "Passed")
    stale = replace(run.answers["load"], step=5)
    run.answers = {"load": stale}
    run.step("bbb")
    assert run.status.weights.canary == 10
    run.answer("load", "Error", code=None)
    kept = run.answers["load"]
    run.step("bbb")
    run.answers = {"load": kept}  # the same result again, as after a lost status write
    run.step("bbb")
    assert run.status.gates[0].attempts == 1


def test_gates_are_not_called_while_a_kill_switch_freezes_the_canary() -> None:
    from ballast.api.status import KillSwitchSource

    run = GatedRun(hook("smoke", "pre-rollout"))
    run.spec = spec({"fallbacks": [{"name": "rules", "service": {"name": "faq", "port": 80}}]}, steps=STEPS,
                    webhooks=[hook("smoke", "pre-rollout")])  # fmt: skip
    run.canary_waiting()
    run.step("bbb", 1)
    assert due_calls(run.status, run.now)
    run.switches = (KillSwitchSource(kind="KillSwitch", name="stop", namespace="ns"),)
    run.step("bbb", 1)
    assert due_calls(run.status, run.now + timedelta(hours=1)) == []


def test_a_failed_notification_is_a_warning_event_and_status_but_no_decision() -> None:
    run = GatedRun(hook("audit", "event"))
    run.step("aaa")
    run.answers = {"audit": GateResult(name="audit", type="event", revision="aaa", step=None, outcome="Error",
                                       at=format_time(run.now), code=500, message="disk full")}  # fmt: skip
    decisions_before = run.status.decisions
    decision = run.step("aaa", 1)
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "NotificationFailed")]
    assert decision.history == ()
    assert run.status.decisions == decisions_before
    assert (run.status.gates[0].outcome, run.status.gates[0].code) == ("Error", 500)


def test_a_webhook_removed_from_the_spec_leaves_status() -> None:
    run = GatedRun(hook("smoke", "pre-rollout"))
    run.canary_waiting()
    run.step("bbb", 1)
    run.spec = spec(steps=STEPS)
    run.step("bbb", 1)
    assert run.status.gates == []
    assert run.status.weights.canary == 10


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"type": "post-rollout", "onRefusal": "hold"}, "on_refusal"), ({"type": "event", "deadline": "1m"}, "deadline")],
)
def test_a_notification_with_gate_settings_is_refused_naming_the_field(extra: dict[str, Any], field: str) -> None:
    from ballast.api.validation import validate_manifest

    body = {"name": "n", "url": "https://n.example.com/", **extra}
    manifest = {
        "apiVersion": "ballast.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "m", "namespace": "ns"},
        "spec": {"model": {"name": "m", "image": "i"}, "traffic": {"parentRefs": [{"name": "gw"}]},
                 "rollout": {"webhooks": [body]}},
    }  # fmt: skip
    errors = validate_manifest(manifest)
    camel = "onRefusal" if field == "on_refusal" else field
    assert any(f"spec.rollout.webhooks[0].{camel}" in e and "applies only to gates" in e for e in errors), errors
    Webhook.model_validate(body)  # the model itself accepts it: the rule is the API server's, like every CEL rule


def test_the_default_refusal_action_holds_only_confirm_promotion() -> None:
    kinds = ("pre-rollout", "rollout", "confirm-promotion")
    actions = [Webhook.model_validate(hook("g", kind)).refusal_action() for kind in kinds]
    assert actions == ["rollback", "rollback", "hold"]
    with pytest.raises(ValidationError, match=r"on_refusal|onRefusal"):
        Webhook.model_validate(hook("g", "rollout", onRefusal="ignore"))
    assert (
        ModelDeploymentSpec.model_validate(
            {"model": {"name": "m", "image": "i"}, "traffic": {"parentRefs": [{"name": "gw"}]}}
        ).rollout.webhooks
        == []
    )
    assert T0  # the shared clock of the core's tests


def test_a_gate_whose_host_resolves_to_a_refused_address_holds_and_the_progressing_condition_says_why() -> None:
    run = GatedRun(hook("smoke", "pre-rollout"))
    run.canary_waiting()
    run.step("bbb", 1)
    why = "not called: host smoke.example.com resolves to 169.254.169.254, a link-local (cloud metadata) address"
    run.answer("smoke", "Error", code=None, message=why)
    run.step("bbb")
    progressing = next(c for c in run.status.conditions if c.type == "Progressing")
    assert progressing.status == "True"
    assert f"gate smoke (pre-rollout: no answer after 1 calls: {why})" in progressing.message
    assert run.status.weights.canary == 0


def test_an_approval_given_while_a_rollout_gate_holds_is_kept_until_the_gate_passes() -> None:
    """The promote token is taken only when the step is left: a gate that holds never swallows an approval."""
    steps = [{"weight": 10, "approval": True}, {"weight": 100}]
    run = GatedRun(hook("load", "rollout"), steps=steps)
    run.canary_waiting()
    run.step("bbb", 1)
    assert run.status.weights.canary == 10
    run.commands = Commands(promote="t1", approved_by="alice")
    run.step("bbb", 1)
    assert (run.status.weights.canary, [e.outcome for e in run.status.gates]) == (10, ["Pending"])
    run.answer("load", "Passed")
    decision = run.step("bbb", 1)
    assert run.status.weights.canary == 100
    assert [h.message for h in decision.history if h.action == "approve"] == ["Step 1/2 approved by alice"]
