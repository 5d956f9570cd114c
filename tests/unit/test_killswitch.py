"""Kill switches and fallbacks: the core's overlay, selectors, grants, routes and the reject responder."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ballast.api.killswitch import ClusterKillSwitchSpec, KillSwitchSpec, KillSwitchStatus
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import HistoryEntry
from ballast.api.types import LabelSelector
from ballast.rollout.observations import FallbackObservation, RevisionObservation
from ballast.rollout.switch_selection import DeploymentEntry, Switch, engaged_sources, selector_matches
from ballast.rollout.switch_status import switch_status
from ballast.servers.reject_responder import handler_for
from ballast.traffic.backends import backends_for
from ballast.traffic.gateway_api import backend_refs, build_http_route, supported_features
from ballast.traffic.grants import Grant, GrantFrom, GrantTo, cross_namespace_problem
from tests.unit.test_rollout_core import EVENTS, READY, SWITCH, Run, replay, spec

RULES_OK = FallbackObservation(usable=True)


def switched_spec(**kill_switch: Any) -> ModelDeploymentSpec:
    fallbacks = [
        {"name": "rules", "service": {"name": "faq-rules", "port": 8080}},
        {"name": "previous", "previousRevision": True},
        {"name": "sorry", "reject": {}},
    ]
    return spec({"fallbacks": fallbacks, "killSwitch": kill_switch or {"fallback": "rules"}})


# ----------------------------------------------------------------------------------- the core


def test_engaging_routes_everyone_to_the_fallback_and_records_why() -> None:
    run = Run(switched_spec())
    run.observed = {"aaa": READY}
    run.step("aaa")
    run.fallbacks = {"rules": RULES_OK}
    run.switches = (SWITCH,)
    decision = run.step("aaa", 1)
    state = decision.status.kill_switch
    assert decision.status.weights.model_dump() == {"stable": 0, "canary": 0, "fallback": 100, "fallback_name": "rules"}
    assert (state.engaged, state.fallback, state.episode) == (True, "rules", 1)
    assert state.sources == [SWITCH.model_copy(update={"since": "2026-11-24T12:00:01Z"})]
    assert [e.reason for e in decision.events] == ["KillSwitchEngaged"]
    assert "KillSwitch ns/incident (withdrawn policy)" in decision.events[0].message
    entry = decision.status.history[-1]
    assert entry.action == "kill"
    assert (entry.values["stableWeight"], entry.values["canaryWeight"], entry.values["fallbackWeight"]) == (0, 0, 100)
    conditions = {c.type: (c.status, c.reason) for c in decision.status.conditions}
    assert conditions["KillSwitchEngaged"] == ("True", "Engaged")
    # Deciding again changes nothing and records nothing.
    again = run.step("aaa", 1)
    assert again.events == ()
    assert again.status.weights == decision.status.weights


def test_releasing_mid_canary_resumes_the_same_step_with_its_pause_restarted() -> None:
    run = Run(switched_spec())
    run.fallbacks = {"rules": RULES_OK}
    run.to_first_step()
    run.switches = (SWITCH,)
    assert run.step("bbb", 5).status.weights.fallback == 100
    assert run.step("bbb", 3600).status.current_step == 0  # frozen: an hour of kill switch is no step
    run.switches = ()
    released = run.step("bbb", 1)
    assert (released.status.current_step, released.status.weights.canary, released.status.weights.stable) == (0, 10, 90)
    assert released.status.kill_switch.engaged is False
    assert released.status.kill_switch.resume is None
    assert [e.reason for e in released.events] == ["KillSwitchReleased"]
    assert run.step("bbb", 30).status.current_step == 0  # the 1m pause starts again
    assert run.step("bbb", 31).status.current_step == 1


def test_the_policy_fallback_comes_first_then_the_list_order() -> None:
    run = Run(switched_spec(fallback="sorry"))
    run.observed = {"aaa": READY}
    run.step("aaa")
    run.fallbacks = {"rules": RULES_OK, "sorry": FallbackObservation(False, "the responder is not Available yet")}
    run.switches = (SWITCH,)
    assert run.step("aaa").status.kill_switch.fallback == "rules"
    run.fallbacks = {"rules": RULES_OK, "sorry": RULES_OK}
    changed = run.step("aaa", 1)
    assert changed.status.kill_switch.fallback == "sorry"
    assert [e.reason for e in changed.events] == ["FallbackChanged"]


def test_no_usable_fallback_leaves_traffic_unchanged_and_names_every_problem() -> None:
    run = Run(spec({"fallbacks": [{"name": "rules", "service": {"name": "faq-rules", "port": 8080}},
                                  {"name": "previous", "previousRevision": True}]}))  # fmt: skip
    run.fallbacks = {"rules": FallbackObservation(False, "Service ns/faq-rules not found")}
    run.to_first_step()
    run.switches = (SWITCH,)
    refused = run.step("bbb", 1)
    weights = refused.status.weights
    assert (weights.stable, weights.canary, weights.fallback) == (90, 10, 0)
    assert [e.reason for e in refused.events] == ["NoUsableFallback"]
    message = refused.events[0].message
    assert "rules: Service ns/faq-rules not found" in message
    assert "previous: there is no previous revision yet" in message
    condition = next(c for c in refused.status.conditions if c.type == "KillSwitchEngaged")
    assert (condition.status, condition.reason) == ("False", "NoUsableFallback")
    assert refused.status.kill_switch.sources[0].since is None  # not switched, so not switched since anything
    assert run.step("bbb", 120).status.current_step == 0  # still frozen: someone asked the model to stop
    assert run.step("bbb", 1).events == ()  # refused once per episode


def test_a_switch_with_a_reject_fallback_engages_even_before_the_responder_serves() -> None:
    run = Run(switched_spec())
    run.fallbacks = {"rules": FallbackObservation(False, "gone"), "sorry": FallbackObservation(False, "no ready pod")}
    run.to_first_step()
    run.switches = (SWITCH,)
    held = run.step("bbb", 1)
    assert (held.status.weights.fallback, held.status.weights.fallback_name) == (100, "sorry")
    assert held.status.kill_switch.holding
    assert [e.reason for e in held.events] == ["KillSwitchEngaged"]
    assert "users get sorry anyway" in held.events[0].message


def test_a_revoked_fallback_moves_users_on_and_holds_them_off_the_model_when_none_is_left() -> None:
    run = Run(switched_spec())
    run.observed = {"aaa": READY}
    run.step("aaa")
    run.fallbacks = {"rules": RULES_OK, "sorry": FallbackObservation(False, "not ready")}
    run.switches = (SWITCH,)
    run.step("aaa", 1)
    run.fallbacks = {"rules": FallbackObservation(False, "no ReferenceGrant"), "sorry": FallbackObservation(False, "x")}
    held = run.step("aaa", 1)
    assert (held.status.weights.fallback, held.status.weights.stable) == (100, 0)
    assert held.status.kill_switch.fallback == "rules"
    assert [e.reason for e in held.events] == ["KillSwitchHolding"]
    # The fallback in force leaves the spec: the reject responder takes over, still holding.
    run.spec = spec({"fallbacks": [f.model_dump(by_alias=True, exclude_none=True) for f in run.spec.fallbacks[1:]]})
    moved = run.step("aaa", 1)
    assert (moved.status.weights.fallback_name, moved.status.kill_switch.holding) == ("sorry", True)
    assert [e.reason for e in moved.events] == ["FallbackChanged"]
    # No fallback declared at all: no backend, and the route names none of the model's revisions.
    run.spec = spec()
    bare = run.step("aaa", 1)
    assert (bare.status.weights.fallback, bare.status.weights.fallback_name) == (100, None)
    assert "the Gateway answers every request with an error" in bare.events[0].message
    backends = backends_for({"metadata": {"name": "bot", "namespace": "ns", "uid": "u"}}, run.spec, bare.status)
    assert backends is not None
    assert backend_refs(run.spec, backends) == []
    run.switches = ()
    assert [e.reason for e in run.step("aaa", 1).events] == ["KillSwitchReleased"]
    assert run.status.weights.stable == 100


def test_the_previous_revision_as_fallback_stays_warm_while_it_serves() -> None:
    run = Run(switched_spec(fallback="previous"))
    run.step("aaa")
    run.observed = {"aaa": READY, "bbb": READY}
    run.spec = ModelDeploymentSpec.model_validate(
        {**run.spec.model_dump(by_alias=True, exclude_none=True), "rollout": {"steps": [{"weight": 100}],
                                                                               "scaleDownDelay": "10m"}}
    )  # fmt: skip
    run.step("bbb")
    run.step("bbb", 1)
    run.step("bbb", 31)
    assert (run.status.stable_revision, run.status.previous_revision) == ("bbb", "aaa")
    run.switches = (SWITCH,)
    assert run.step("bbb", 1).status.kill_switch.fallback == "previous"
    later = run.step("bbb", 3600).status  # far past scaleDownDelay
    roles = {r.name: (r.role, r.replicas) for r in later.revisions}
    assert roles["aaa"] == ("previous", 2)
    assert later.next_check_at is None  # no due time for a scale-down that must wait
    run.switches = ()
    run.step("bbb", 1)
    assert {r.name: r.role for r in run.step("bbb", 1).status.revisions}["aaa"] == "retired"


def test_capture_mirrors_to_stable_only_when_the_gateway_can_mirror() -> None:
    md = {"metadata": {"name": "bot", "namespace": "ns", "uid": "u"}}
    for supported in (True, False):
        run = Run(switched_spec(fallback="rules", captureTraffic=True))
        run.observed = {"aaa": READY}
        run.mirror_supported = supported
        run.step("aaa")
        run.fallbacks = {"rules": RULES_OK}
        run.switches = (SWITCH,)
        decision = run.step("aaa", 1)
        backends = backends_for(md, run.spec, decision.status)
        assert backends is not None
        assert backends.mirror == ("bot-aaa" if supported else None)
        assert decision.status.kill_switch.captured is supported
        assert ("not captured" in decision.events[0].message) is not supported


def test_a_shadow_phase_is_skipped_when_the_gateway_cannot_mirror() -> None:
    run = Run(switched_spec())
    run.spec = ModelDeploymentSpec.model_validate(
        {**run.spec.model_dump(by_alias=True, exclude_none=True),
         "rollout": {"shadow": {"duration": "2m"}, "steps": [{"weight": 10}, {"weight": 100}]}}
    )  # fmt: skip
    run.mirror_supported = False
    run.step("aaa")
    run.observed = {"aaa": READY, "bbb": READY}
    run.step("bbb")
    skipped = run.step("bbb", 1)
    assert (skipped.status.mirror_revision, skipped.status.current_step) == (None, 0)
    assert [e.reason for e in skipped.events] == ["ShadowUnsupported", "StepStarted"]


KILL_EVENTS = st.lists(
    st.one_of(
        EVENTS.filter(bool).map(lambda events: events[0]),
        st.tuples(st.just("switch"), st.booleans()),
        st.tuples(st.just("fallback"), st.sampled_from(["rules", "sorry"]), st.booleans()),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(KILL_EVENTS)
def test_invariants_hold_with_switches_and_fallbacks_coming_and_going(events: list[tuple[Any, ...]]) -> None:
    run = replay(events, switched_spec())
    ids = [h.id for h in run.status.history]
    assert len(ids) == len(set(ids))


WEIGHT_KEYS = ("stableWeight", "canaryWeight", "fallbackWeight")


def split_problem(entry: HistoryEntry) -> str | None:
    """Why an entry's traffic split is not one (some shares recorded, or not summing to 100); None if it is."""
    shares = [entry.values[key] for key in WEIGHT_KEYS if key in entry.values]
    if not shares:
        return None
    if len(shares) != len(WEIGHT_KEYS):
        return f"{entry.action}: a partial split {entry.values}"
    if sum(shares) != 100:
        return f"{entry.action}: weights sum to {sum(shares)}: {entry.values}"
    return None


@settings(max_examples=300, deadline=None)
@given(KILL_EVENTS)
def test_history_weights_always_sum_to_100(events: list[tuple[Any, ...]]) -> None:
    run = replay(events, switched_spec())
    entries = [entry for decision in run.decisions for entry in decision.history]
    assert [problem for entry in entries if (problem := split_problem(entry))] == []


def test_the_split_check_fails_on_a_kill_entry_that_adds_the_fallback_to_the_old_split() -> None:
    """The broken variant this issue found: stable 100 (before) and fallback 100 (after) in one entry."""
    broken = HistoryEntry(id="1", at="t", action="kill", phase="Stable",
                          values={"stableWeight": 100.0, "canaryWeight": 0.0, "fallbackWeight": 100.0})  # fmt: skip
    assert split_problem(broken) == f"kill: weights sum to 200.0: {broken.values}"
    assert split_problem(broken.model_copy(update={"values": {"fallbackWeight": 100.0}})) is not None


# ----------------------------------------------------------------------------------- selectors


def selector(**raw: Any) -> LabelSelector:
    return LabelSelector.model_validate(raw)


@pytest.mark.parametrize(
    ("raw", "labels", "expected"),
    [
        ({"matchLabels": {"team": "a"}}, {"team": "a", "x": "y"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["x", "y"]}]}, {"tier": "y"}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["x"]}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]}, {}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]}, {"tier": "x"}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"tier": ""}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": ""}, False),
    ],
)
def test_label_selectors_follow_kubernetes_semantics(raw: Any, labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(selector(**raw), labels) is expected


def test_a_kill_switch_selects_only_in_its_namespace_by_name_or_labels() -> None:
    by_name = Switch("KillSwitch", "s", "a", KillSwitchSpec(model_deployments=["bot"], reason="r"))
    assert by_name.selects("a", "bot", {}, {})
    assert not by_name.selects("b", "bot", {}, {})
    by_label = Switch("KillSwitch", "s", "a", KillSwitchSpec(selector=selector(matchLabels={"t": "1"}), reason="r"))
    assert by_label.selects("a", "x", {"t": "1"}, {})
    assert not by_label.selects("a", "x", {}, {})


def test_a_cluster_kill_switch_scopes_by_namespace_then_labels() -> None:
    spec = ClusterKillSwitchSpec(
        namespace_selector=selector(matchLabels={"env": "prod"}), selector=selector(matchLabels={"t": "x"}), reason="r"
    )
    switch = Switch("ClusterKillSwitch", "s", None, spec)
    assert switch.selects("n1", "bot", {"t": "x"}, {"env": "prod"})
    assert not switch.selects("n1", "bot", {"t": "x"}, {"env": "dev"})
    assert not switch.selects("n1", "bot", {}, {"env": "prod"})
    everywhere = Switch("ClusterKillSwitch", "s", None, ClusterKillSwitchSpec(all_namespaces=True, reason="r"))
    assert everywhere.selects("any", "bot", {}, {})
    listed = Switch("ClusterKillSwitch", "s", None, ClusterKillSwitchSpec(namespaces=["a", "b"], reason="r"))
    assert listed.selects("b", "bot", {}, {})
    assert not listed.selects("c", "bot", {}, {})


def test_only_engaged_switches_are_sources_in_a_stable_order() -> None:
    switches = [
        Switch("KillSwitch", "z", "a", KillSwitchSpec(model_deployments=["bot"], reason="z", requested_by="p")),
        Switch("KillSwitch", "off", "a", KillSwitchSpec(model_deployments=["bot"], reason="o", engaged=False)),
        Switch(
            "ClusterKillSwitch", "c", None, ClusterKillSwitchSpec(all_namespaces=True, reason="c"), creator="kubectl"
        ),
    ]
    sources = engaged_sources(switches, "a", "bot", {}, {})
    assert [(s.kind, s.name, s.requested_by) for s in sources] == [("ClusterKillSwitch", "c", "kubectl"),
                                                                   ("KillSwitch", "z", "p")]  # fmt: skip


def test_switch_status_counts_routes_and_names_what_cannot_be_switched() -> None:
    switch = Switch("ClusterKillSwitch", "s", None, ClusterKillSwitchSpec(all_namespaces=True, reason="r"))
    selected = [
        DeploymentEntry("a", "one", engaged=True, fallback="rules", since="t1", accepted=True),
        DeploymentEntry("b", "two", refused="rules: Service b/faq not found"),
        DeploymentEntry("c", "three", engaged=True, fallback="sorry", since="t1", accepted=True, holding="sorry: gone"),
    ]
    status = switch_status(switch, 3, KillSwitchStatus(), selected, "t2")
    assert (status.matched, status.observed_generation, status.engaged_at) == (3, 3, "t2")
    assert [(d.name, d.fallback, d.accepted) for d in status.deployments] == [
        ("one", "rules", True), ("two", None, False), ("three", "sorry", True)]  # fmt: skip
    assert [d.problem for d in status.deployments] == [None, "rules: Service b/faq not found", "sorry: gone"]
    engaged = next(c for c in status.conditions if c.type == "Engaged")
    assert engaged.message.startswith("2 of 3 selected ModelDeployments serve their users from a fallback")
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "CannotSwitch")
    assert "b/two: rules: Service b/faq not found" in ready.message
    # Once the refused one is gone, the holding one is named in a Ready condition that holds.
    alone = switch_status(switch, 3, status, [selected[0], selected[2]], "t3")
    ready = next(c for c in alone.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("True", "AllSwitched")
    assert "1 hold their users off the model with no usable fallback: c/three: sorry: gone" in ready.message


# ----------------------------------------------------------------------------------- grants


def grant(*sources: tuple[str, str], service: str | None = None) -> Grant:
    return Grant("shared", "g", tuple(GrantFrom(g, k, "apps") for g, k in sources), (GrantTo("", "Service", service),))


MD_FROM = ("ballast.dev", "ModelDeployment")
ROUTE_FROM = ("gateway.networking.k8s.io", "HTTPRoute")


def test_a_cross_namespace_fallback_needs_a_grant_from_modeldeployment_and_httproute() -> None:
    assert cross_namespace_problem([grant(MD_FROM, ROUTE_FROM)], "apps", "shared", "faq") == ""
    assert cross_namespace_problem([grant(MD_FROM), grant(ROUTE_FROM)], "apps", "shared", "faq") == ""
    only_routes = cross_namespace_problem([grant(ROUTE_FROM)], "apps", "shared", "faq")
    assert "a grant to HTTPRoutes alone is not enough" in only_routes
    assert "needs one from HTTPRoute" in cross_namespace_problem([grant(MD_FROM)], "apps", "shared", "faq")
    assert cross_namespace_problem([grant(MD_FROM, ROUTE_FROM, service="other")], "apps", "shared", "faq") != ""
    assert cross_namespace_problem([], "apps", "shared", "faq").startswith("no ReferenceGrant in namespace shared")


# ----------------------------------------------------------------------------------- routes


def test_a_switched_route_names_only_its_fallback_and_keeps_the_mirror() -> None:
    md = {"metadata": {"name": "bot", "namespace": "apps", "uid": "u"}}
    spec = switched_spec(fallback="rules", captureTraffic=True)
    spec.fallbacks[0].service.namespace = "shared"  # type: ignore[union-attr]
    run = Run(spec)
    run.observed = {"aaa": READY}
    run.step("aaa")
    run.fallbacks = {"rules": RULES_OK}
    run.switches = (SWITCH,)
    status = run.step("aaa", 1).status
    backends = backends_for(md, spec, status)
    assert backends is not None
    assert backend_refs(spec, backends) == [{"name": "faq-rules", "port": 8080, "weight": 100, "namespace": "shared"}]
    split = build_http_route(md, spec, backends)["spec"]["rules"][-1]
    assert split["filters"][0]["requestMirror"]["backendRef"]["name"] == "bot-aaa"


def test_the_reject_fallback_routes_to_the_responder() -> None:
    md = {"metadata": {"name": "bot", "namespace": "apps", "uid": "u"}}
    run = Run(switched_spec(fallback="sorry"))
    run.observed = {"aaa": READY, "bbb": RevisionObservation(available=True)}
    run.step("aaa")
    run.fallbacks = {"sorry": RULES_OK}
    run.switches = (SWITCH,)
    backends = backends_for(md, run.spec, run.step("aaa", 1).status)
    assert backends is not None
    assert backends.fallback is not None
    assert (backends.fallback.name, backends.fallback.port) == ("bot-reject", 8080)


def test_supported_features_read_both_shapes_and_unknown() -> None:
    assert supported_features({"status": {"supportedFeatures": [{"name": "HTTPRouteRequestMirror"}]}}) == {
        "HTTPRouteRequestMirror"
    }
    assert supported_features({"status": {"supportedFeatures": ["Gateway"]}}) == {"Gateway"}
    assert supported_features({"status": {}}) is None


# ----------------------------------------------------------------------------------- responder


@pytest.fixture
def responder() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(503, 'the "bot" is off', 30, "bot-reject-1"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_responder_answers_an_openai_style_error_with_retry_after(responder: str) -> None:
    request = urllib.request.Request(f"{responder}/v1/chat/completions", data=b'{"model": "m"}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)
    error = raised.value
    assert error.code == 503
    assert error.headers["Retry-After"] == "30"
    assert error.headers["x-served-by"] == "bot-reject-1"
    assert json.loads(error.read())["error"] == {
        "message": 'the "bot" is off', "type": "service_unavailable", "param": None, "code": "model_unavailable",
    }  # fmt: skip
    with urllib.request.urlopen(f"{responder}/healthz", timeout=5) as health:
        assert health.status == 200
