"""Kill switch promises: every rule covered, never un-killed by accident, status tells the truth."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ballast.api.modeldeployment import ModelDeploymentSpec, Reject
from ballast.rollout.observations import Commands, FallbackObservation, RevisionObservation
from ballast.shell.cluster_view import deployment_entry, route_summary
from ballast.shell.observe import observe_fallbacks
from ballast.shell.ownership import Claims
from ballast.shell.reconciler import Reconciler
from ballast.traffic.acceptance import parents_digest, route_acceptance
from ballast.traffic.backends import backends_for
from ballast.traffic.gateway_api import backend_refs, build_http_route
from ballast.workloads.render import workload_name
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
    found = observe_fallbacks(NoView(), NoView(), MD, model_spec, [responder], Claims())  # type: ignore[arg-type]
    assert found["sorry"].usable


def test_since_is_when_this_deployment_was_switched_not_when_the_switch_was_created() -> None:
    run = Run(switched_spec())
    run.observed = {"aaa": READY}
    run.step("aaa")
    run.fallbacks = {"rules": RULES_OK}
    run.switches = (SWITCH.model_copy(update={"since": "2020-01-01T00:00:00Z"}),)
    engaged = run.step("aaa", 90).status
    assert engaged.kill_switch.sources[0].since == engaged.kill_switch.engaged_at == "2026-11-24T12:01:30Z"


# ----------------------------------------------------------------------------------- stopPods


def stopping_spec(**policy: Any) -> ModelDeploymentSpec:
    fallbacks = [{"name": "rules", "service": {"name": "faq-rules", "port": 8080}}]
    return spec({"fallbacks": fallbacks, "killSwitch": {"fallback": "rules", "stopPods": True, **policy}})


def replicas(run: Run) -> dict[str, int]:
    return {r.name: r.replicas for r in run.status.revisions}


def test_stop_pods_stops_the_model_after_the_drain_and_restores_it_before_users_return() -> None:
    run = Run(stopping_spec(drain="30s"))
    run.fallbacks = {"rules": RULES_OK}
    run.to_first_step()
    run.switches = (SWITCH,)
    engaged = run.step("bbb", 1)
    assert replicas(run) == {"aaa": 2, "bbb": 1}  # in-flight requests drain first (the canary: 10% of 2)
    assert engaged.status.next_check_at == "2026-11-24T12:00:32Z"
    assert run.step("bbb", 29).events == ()
    stopped = run.step("bbb", 1)
    assert replicas(run) == {"aaa": 0, "bbb": 0}
    assert [e.reason for e in stopped.events] == ["ModelStopped"]
    assert stopped.status.history[-1].values == {"drainSeconds": 30.0}
    assert stopped.status.kill_switch.stopped
    run.observed = {"aaa": RevisionObservation(), "bbb": RevisionObservation()}  # the pods are gone
    assert replicas(run) == {"aaa": 0, "bbb": 0}
    # Released: the pods start again, users stay on the fallback until both revisions of the split serve.
    run.switches = ()
    waiting = run.step("bbb", 60)
    assert replicas(run) == {"aaa": 2, "bbb": 1}  # the sizes it had, never more than the weights need
    assert (waiting.status.weights.fallback, waiting.status.weights.fallback_name) == (100, "rules")
    assert [e.reason for e in waiting.events] == ["KillSwitchReleasing"]
    releasing = next(c for c in waiting.status.conditions if c.type == "KillSwitchEngaged")
    assert (releasing.status, releasing.reason) == ("True", "Releasing")
    assert waiting.status.next_check_at == "2026-11-24T12:06:32Z"  # progressDeadline bounds the wait
    run.observed = {"aaa": READY, "bbb": RevisionObservation()}
    assert run.step("bbb", 5).status.weights.fallback == 100  # the canary has a share: it must serve too
    run.observed = {"aaa": READY, "bbb": READY}
    back = run.step("bbb", 5)
    assert (back.status.weights.stable, back.status.weights.canary, back.status.weights.fallback) == (90, 10, 0)
    assert [e.reason for e in back.events] == ["KillSwitchReleased"]
    assert (back.status.current_step, back.status.kill_switch.stopped) == (0, False)


def stopped_then_released() -> Run:
    """A model stopped by a switch (drained for 1s), the switch then deleted while its pods are still down."""
    run = Run(stopping_spec(drain="1s"))
    run.observed = {"aaa": READY}
    run.step("aaa")
    run.fallbacks = {"rules": RULES_OK}
    run.switches = (SWITCH,)
    run.step("aaa", 1)
    run.step("aaa", 1)
    run.observed = {"aaa": RevisionObservation()}
    run.switches = ()
    return run


def test_a_stopped_model_that_never_serves_again_gets_its_users_back_at_the_deadline_with_a_warning() -> None:
    run = stopped_then_released()
    assert run.step("aaa", 1).status.weights.fallback == 100
    late = run.step("aaa", 300)
    assert late.status.weights.stable == 100
    assert [(e.type, e.reason) for e in late.events] == [("Warning", "KillSwitchReleased")]
    assert "did not serve within 5m" in late.events[0].message


def test_without_stop_pods_the_model_keeps_running_under_a_switch() -> None:
    run = Run(switched_spec())
    run.fallbacks = {"rules": RULES_OK}
    run.to_first_step()
    run.switches = (SWITCH,)
    run.step("bbb", 1)
    run.step("bbb", 3600)
    assert replicas(run) == {"aaa": 2, "bbb": 1}


# ----------------------------------------------------------------------------------- never un-killed

ROUTE_REF = {"routeRef": {"name": "shared", "rule": "bot"}}
MATCH = [{"name": "x-canary", "value": "yes"}]
SPECS = st.sampled_from(["match", "route-ref", "stop-pods"])
HOLD_EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("template"), st.sampled_from(["r1", "r2"])),
        st.tuples(st.just("wait"), st.integers(min_value=0, max_value=400)),
        st.tuples(st.just("available"), st.sampled_from(["r0", "r1", "r2"]), st.booleans()),
        st.tuples(st.just("promote"), st.integers(0, 3)),
        st.tuples(st.just("abort"), st.integers(0, 3)),
        st.tuples(st.just("switch"), st.booleans()),
        st.tuples(st.just("fallback"), st.sampled_from(["rules", "sorry"]), st.booleans()),
        st.tuples(st.just("declared"), st.sampled_from([("rules", "previous", "sorry"), ("previous",), ()])),
    ),
    max_size=40,
)


def property_spec(kind: str, declared: tuple[str, ...]) -> ModelDeploymentSpec:
    every: dict[str, Any] = {
        "rules": {"name": "rules", "service": {"name": "faq-rules", "port": 8080}},
        "previous": {"name": "previous", "previousRevision": True},
        "sorry": {"name": "sorry", "reject": {}},
    }
    traffic: dict[str, Any] = {"parentRefs": [{"name": "gw"}], "canaryMatch": MATCH}
    if kind == "route-ref":
        traffic = ROUTE_REF
    policy: dict[str, Any] = {"stopPods": True, "drain": "30s"} if kind == "stop-pods" else {}
    extra: dict[str, Any] = {"traffic": traffic, "fallbacks": [every[name] for name in declared]}
    if declared and policy:
        extra["killSwitch"] = policy
    return spec(extra, steps=[{"weight": 10, "pause": "1m"}, {"weight": 50}, {"weight": 100}])


def named_services(model_spec: ModelDeploymentSpec, run: Run) -> set[str]:
    """Every Service any rule Ballast owns sends users to."""
    backends = backends_for(MD, model_spec, run.status)
    assert backends is not None
    if model_spec.traffic.route_ref is not None:
        return {ref["name"] for ref in backend_refs(model_spec, backends)}
    rules = build_http_route(MD, model_spec, backends)["spec"]["rules"]
    return {ref["name"] for rule in rules for ref in rule["backendRefs"]}


@settings(max_examples=300, deadline=None)
@given(SPECS, HOLD_EVENTS)
def test_no_rule_of_an_engaged_deployment_names_a_model_revision(kind: str, events: list[tuple[Any, ...]]) -> None:
    declared: tuple[str, ...] = ("rules", "previous", "sorry")
    run = Run(property_spec(kind, declared))
    revision = "r0"
    run.observed = {"r0": READY}
    run.step(revision)
    for event in events:
        if event[0] == "template":
            revision = event[1]
        elif event[0] == "wait":
            run.now += timedelta(seconds=event[1])
        elif event[0] == "available":
            run.observed[event[1]] = READY if event[2] else RevisionObservation()
        elif event[0] == "promote":
            run.commands = Commands(promote=f"p{event[1]}")
        elif event[0] == "abort":
            run.commands = Commands(abort=f"a{event[1]}")
        elif event[0] == "switch":
            run.switches = (SWITCH,) if event[1] else ()
        elif event[0] == "fallback":
            run.fallbacks = {**run.fallbacks, event[1]: FallbackObservation(event[2], "" if event[2] else "gone")}
        elif event[0] == "declared":
            declared = event[1]
            run.spec = property_spec(kind, declared)
        was_engaged = run.status.kill_switch.engaged
        status = run.step(revision).status
        state = status.kill_switch
        if was_engaged and run.switches:
            assert state.engaged, "an engaged switch let go of users while it is still requested"
        if not state.engaged:
            continue
        assert status.weights.fallback == 100
        fallback = next((f for f in run.spec.fallbacks if f.name == state.fallback), None)
        allowed = (
            workload_name("bot", status.previous_revision or "") if fallback and fallback.previous_revision else None
        )
        model = {workload_name("bot", r.name) for r in status.revisions} - {allowed}
        assert not named_services(run.spec, run) & model, f"an engaged route names the model: {status.weights}"


# ----------------------------------------------------------------------------------- truth


def test_a_switch_on_the_service_router_says_by_name_that_it_cannot_switch() -> None:
    run = Run(spec({"traffic": {"router": "service"}}))
    run.observed = {"aaa": READY}
    run.step("aaa")
    run.switches = (SWITCH,)
    refused = run.step("aaa", 1)
    assert refused.status.weights.stable == 100
    assert [e.reason for e in refused.events] == ["CannotSwitch"]
    assert "the service router splits one Service by replica ratio" in refused.events[0].message
    engaged = next(c for c in refused.status.conditions if c.type == "KillSwitchEngaged")
    assert (engaged.status, engaged.reason) == ("False", "CannotSwitch")
    entry = deployment_entry({"metadata": {"namespace": "a", "name": "bot"},
                              "status": refused.status.model_dump(by_alias=True, exclude_none=True)})  # fmt: skip
    assert entry.refused is not None
    assert entry.refused.startswith("the service router")
    assert entry.accepted  # no route to accept: a Service serves as written


GATEWAY = {"name": "gw", "namespace": "gateway-system"}


def route(generation: int, refs: list[dict[str, Any]], *reports: tuple[str, str, int, str]) -> dict[str, Any]:
    """An HTTPRoute as the index keeps it; each report is (condition type, status, observedGeneration, reason)."""
    conditions = [{"type": k, "status": s, "observedGeneration": g, "reason": r, "message": f"{k} {r}"}
                  for k, s, g, r in reports]  # fmt: skip
    return route_summary({
        "metadata": {"name": "bot", "namespace": "apps", "generation": generation},
        "spec": {"parentRefs": [GATEWAY], "rules": [{"name": "split", "backendRefs": refs}]},
        "status": {"parents": [{"parentRef": GATEWAY, "controllerName": "traefik.io/gateway-controller",
                                "conditions": conditions}] if reports else []},
    })  # fmt: skip


RULES_REF = [{"group": "", "kind": "Service", "name": "faq-rules", "port": 8080, "weight": 100}]
WANTED = {"split": [{"name": "faq-rules", "port": 8080, "weight": 100}]}
BOTH_TRUE = (("Accepted", "True", 4, "Accepted"), ("ResolvedRefs", "True", 4, "ResolvedRefs"))


def test_route_acceptance_is_what_the_gateway_reported_for_the_route_carrying_the_wanted_backends() -> None:
    accepted = route_acceptance(route(4, RULES_REF, *BOTH_TRUE), "bot", WANTED)
    assert (accepted.status, accepted.reason) == ("True", "Accepted")
    assert "gateway-system/gw accepted generation 4" in accepted.message
    old = [{"name": "bot-aaa", "port": 8000, "weight": 100}]
    assert route_acceptance(route(4, old, *BOTH_TRUE), "bot", WANTED).reason == "Pending"  # not written yet
    stale = route_acceptance(route(5, RULES_REF, *BOTH_TRUE), "bot", WANTED)
    assert (stale.status, stale.reason) == ("Unknown", "Pending")
    assert "has not reported Accepted for generation 5" in stale.message
    unresolved = route(
        4, RULES_REF, ("Accepted", "True", 4, "Accepted"), ("ResolvedRefs", "False", 4, "RefNotPermitted")
    )
    refused = route_acceptance(unresolved, "bot", WANTED)
    assert (refused.status, refused.reason) == ("False", "RefNotPermitted")
    said = "Gateway gateway-system/gw: ResolvedRefs is False (RefNotPermitted): ResolvedRefs RefNotPermitted"
    assert refused.message == said
    assert route_acceptance(route(4, RULES_REF), "bot", WANTED).reason == "Pending"  # no report at all
    assert route_acceptance(None, "bot", WANTED).reason == "RouteMissing"


def test_a_gateway_report_reconciles_the_deployments_of_that_route_only_when_it_is_new() -> None:
    notified: list[tuple[str, str]] = []
    reconciler = Reconciler.__new__(Reconciler)
    reconciler.route_users, reconciler.route_reports = {("apps", "shared"): {("apps", "bot")}}, {}
    reconciler.notify = lambda namespace, name: notified.append((namespace, name))  # type: ignore[method-assign]
    report = parents_digest(route(4, RULES_REF, *BOTH_TRUE))
    reconciler.route_reported("apps", "shared", report)
    assert notified == [("apps", "bot")]
    reconciler.route_reports[("apps", "shared")] = report  # the reconcile read it
    reconciler.route_reported("apps", "shared", report)
    reconciler.route_reported("apps", "other", "x")
    assert notified == [("apps", "bot")]


def test_a_switch_requested_again_while_the_stopped_model_restarts_keeps_users_off_and_stops_it_again() -> None:
    run = stopped_then_released()
    run.step("aaa", 1)
    assert replicas(run) == {"aaa": 2}
    run.switches = (SWITCH,)
    again = run.step("aaa", 1)
    assert [e.reason for e in again.events] == ["KillSwitchEngaged"]
    assert "engaged again" in again.events[0].message
    assert replicas(run) == {"aaa": 0}  # users never returned: no second drain
    assert again.status.weights.fallback_name == "rules"
    assert len({h.id for h in again.status.history}) == len(again.status.history)
