"""Kill switch promises: every rule covered, never un-killed by accident, status tells the truth."""

from __future__ import annotations

from typing import Any

from ballast.api.modeldeployment import ModelDeploymentSpec, Reject
from ballast.rollout.observations import FallbackObservation
from ballast.shell.observe import observe_fallbacks
from ballast.traffic.backends import backends_for
from ballast.traffic.gateway_api import build_http_route
from ballast.workloads.responder_manifests import responder_deployment, responder_disruption_budget
from tests.unit.test_killswitch import RULES_OK, switched_spec
from tests.unit.test_rollout_core import READY, SWITCH, Run, spec

MD = {"metadata": {"name": "bot", "namespace": "apps", "uid": "u"}}
GONE = FallbackObservation(False, "Service apps/faq-rules not found")


def with_canary_match(model_spec: ModelDeploymentSpec) -> ModelDeploymentSpec:
    raw = model_spec.model_dump(by_alias=True, exclude_none=True)
    raw["traffic"]["canaryMatch"] = [{"name": "x-canary", "value": "yes"}]
    return ModelDeploymentSpec.model_validate(raw)


def route_services(model_spec: ModelDeploymentSpec, run: Run) -> list[list[str]]:
    backends = backends_for(MD, model_spec, run.status)
    assert backends is not None
    route = build_http_route(MD, model_spec, backends)
    return [[ref["name"] for ref in rule["backendRefs"]] for rule in route["spec"]["rules"]]


def test_a_switch_mid_canary_covers_the_header_matched_rule_too() -> None:
    model_spec = with_canary_match(switched_spec())
    run = Run(model_spec)
    run.fallbacks = {"rules": RULES_OK}
    run.to_first_step()
    assert route_services(model_spec, run) == [["bot-bbb"], ["bot-aaa", "bot-bbb"]]
    run.switches = (SWITCH,)
    run.step("bbb", 1)
    assert route_services(model_spec, run) == [["faq-rules"]]
    run.switches = ()
    run.step("bbb", 1)
    assert route_services(model_spec, run) == [["bot-bbb"], ["bot-aaa", "bot-bbb"]]


def test_an_engaged_switch_whose_fallbacks_all_fail_holds_users_on_the_last_one() -> None:
    run = Run(spec({"fallbacks": [{"name": "rules", "service": {"name": "faq-rules", "port": 8080}}]}))
    run.observed = {"aaa": READY}
    run.step("aaa")
    run.fallbacks = {"rules": RULES_OK}
    run.switches = (SWITCH,)
    run.step("aaa", 1)
    run.fallbacks = {"rules": GONE}
    held = run.step("aaa", 1)
    assert held.status.kill_switch.engaged is True
    assert (held.status.weights.fallback, held.status.weights.fallback_name) == (100, "rules")
    assert [e.reason for e in held.events] == ["KillSwitchHolding"]
    assert "users stay on rules" in held.events[0].message
    assert "rules: Service apps/faq-rules not found" in held.events[0].message
    engaged = next(c for c in held.status.conditions if c.type == "KillSwitchEngaged")
    assert (engaged.status, engaged.reason) == ("True", "Holding")
    assert run.step("aaa", 60).events == ()  # said once
    run.fallbacks = {"rules": RULES_OK}
    back = run.step("aaa", 1)
    assert [e.reason for e in back.events] == ["FallbackUsable"]
    assert back.status.kill_switch.holding is False


def test_a_reject_responder_runs_two_replicas_behind_a_disruption_budget() -> None:
    reject = switched_spec().fallbacks[2].reject
    assert reject is not None
    deployment = responder_deployment(MD, reject, "img")
    assert deployment["spec"]["replicas"] == 2
    budget = responder_disruption_budget(MD, reject)
    assert budget is not None
    assert budget["spec"] == {"minAvailable": 1, "selector": deployment["spec"]["selector"]}
    assert budget["metadata"]["name"] == deployment["metadata"]["name"] == "bot-reject"
    single = Reject(replicas=1)
    assert responder_deployment(MD, single, "img")["spec"]["replicas"] == 1
    assert responder_disruption_budget(MD, single) is None  # a budget would make its one pod undrainable


def test_a_responder_with_one_ready_pod_of_two_is_usable() -> None:
    responder: dict[str, Any] = {
        "metadata": {"name": "bot-reject", "generation": 1, "labels": {"ballast.dev/responder-for": "bot"}},
        "status": {"observedGeneration": 1, "readyReplicas": 1, "replicas": 2,
                   "conditions": [{"type": "Available", "status": "False"}]},
    }  # fmt: skip

    class NoView:
        pass

    model_spec = spec({"fallbacks": [{"name": "sorry", "reject": {}}]})
    found = observe_fallbacks(NoView(), MD, model_spec, [responder])  # type: ignore[arg-type]
    assert found["sorry"].usable


def test_since_is_when_this_deployment_was_switched_not_when_the_switch_was_created() -> None:
    run = Run(switched_spec())
    run.observed = {"aaa": READY}
    run.step("aaa")
    run.fallbacks = {"rules": RULES_OK}
    run.switches = (SWITCH.model_copy(update={"since": "2020-01-01T00:00:00Z"}),)
    engaged = run.step("aaa", 90).status
    assert engaged.kill_switch.sources[0].since == engaged.kill_switch.engaged_at == "2026-11-24T12:01:30Z"
