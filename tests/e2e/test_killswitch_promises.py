"""What a kill switch promises, on real requests through Traefik: every user covered (header-matched ones too),
never un-killed when its fallback fails, status saying what the Gateway accepted, and a model that can be
stopped once its in-flight streams finish."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx

from ballast.devstack.cluster import Cluster, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.loadgen import Background
from ballast.devstack.operator_process import Operator
from tests.e2e.helpers import (
    apply,
    model_deployment,
    route_weights,
    send,
    start_canary,
    status,
    wait_available,
    wait_status,
)
from tests.e2e.test_killswitch import (
    SWITCH_BOUND,
    condition,
    kill_switch,
    rules_service,
    served_only_by_prefix,
    switch_status,
    with_fallbacks,
)

CANARY_HEADER = {"x-canary": "yes"}


def header_matched_only_by(data_plane: DataPlane, host: str, prefix: str, total: int = 20) -> bool:
    """Whether every request carrying the canary header was answered, by a pod whose name starts with `prefix`."""
    report = send(data_plane, host, total, headers=CANARY_HEADER)
    return report.by_status == {200: total} and all(b.startswith(prefix) for b in report.by_backend)


def rule_names(cluster: Cluster, namespace: str, route: str) -> list[str]:
    body = json.loads(cluster.kubectl("get", "httproute", route, "-n", namespace, "-o", "json").stdout)
    return [rule["name"] for rule in body["spec"]["rules"]]


def events(cluster: Cluster, namespace: str, name: str) -> list[str]:
    found = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
                            "-o", "json").stdout  # fmt: skip
    return [e["reason"] for e in json.loads(found)["items"]]


def test_a_switch_mid_canary_sends_header_matched_users_to_the_fallback_too(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    rules_service(cluster, namespace)
    manifest = with_fallbacks(
        model_deployment("bot", namespace, traffic={
            "parentRefs": [{"name": "ai-gateway", "namespace": "gateway-system"}],
            "hostnames": [f"bot.{namespace}.test"], "canaryMatch": [{"name": "x-canary", "value": "yes"}]}),
        [{"name": "rules", "service": {"name": "rules", "port": 8000}}],
    )  # fmt: skip
    _, canary = start_canary(cluster, data_plane, namespace, "bot", manifest)
    host = f"bot.{namespace}.test"
    wait_available(cluster, f"bot-{canary}", namespace)
    wait_until(
        lambda: header_matched_only_by(data_plane, host, f"bot-{canary}-"), 30, "header-matched users at the canary"
    )

    apply(cluster, kill_switch("incident", namespace, modelDeployments=["bot"]))
    wait_until(lambda: header_matched_only_by(data_plane, host, "rules-"), SWITCH_BOUND,
               "header-matched users at the fallback")  # fmt: skip
    report = send(data_plane, host, 40, headers=CANARY_HEADER)
    assert report.by_status == {200: 40}, report.summary()
    assert all(b.startswith("rules-") for b in report.by_backend), report.summary()
    assert rule_names(cluster, namespace, "bot") == ["split"]  # no rule left that names the canary
    assert served_only_by_prefix(data_plane, host, "rules-")
    # Status says what the Gateway accepted, and the switch counts the deployment only then.
    accepted = wait_status(cluster, namespace, "bot", "the Gateway to accept the switched route",
                           lambda s: condition(s, "GatewayAccepted").get("status") == "True")  # fmt: skip
    assert "ai-gateway accepted generation" in condition(accepted, "GatewayAccepted")["message"]
    wait_until(lambda: switch_status(cluster, "killswitch", "incident", namespace).get("deployments") == [
        {"namespace": namespace, "name": "bot", "fallback": "rules", "since": accepted["killSwitch"]["engagedAt"],
         "accepted": True}], 15, "the switch to count bot once the Gateway accepted its route")  # fmt: skip
    since = accepted["killSwitch"]["sources"][0]["since"]
    assert since == accepted["killSwitch"]["engagedAt"]

    cluster.kubectl("delete", "killswitch", "incident", "-n", namespace)
    wait_until(lambda: header_matched_only_by(data_plane, host, f"bot-{canary}-"), SWITCH_BOUND,
               "header-matched users back at the canary")  # fmt: skip
    assert rule_names(cluster, namespace, "bot") == ["canary-match", "split"]


def test_an_engaged_switch_holds_users_off_the_model_when_its_only_fallback_loses_every_pod(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    apply(cluster, with_fallbacks(model_deployment("bot", namespace), [{"name": "sorry", "reject": {}}]))
    stable = wait_status(cluster, namespace, "bot", "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    wait_available(cluster, "bot-reject", namespace)
    budget = json.loads(cluster.kubectl("get", "pdb", "bot-reject", "-n", namespace, "-o", "json").stdout)
    assert budget["spec"]["minAvailable"] == 1
    responder = json.loads(cluster.kubectl("get", "deployment", "bot-reject", "-n", namespace, "-o", "json").stdout)
    assert responder["spec"]["replicas"] == 2
    host = f"bot.{namespace}.test"
    apply(cluster, kill_switch("incident", namespace, modelDeployments=["bot"]))
    wait_until(lambda: send(data_plane, host, 20).by_status == {503: 20}, SWITCH_BOUND, "users at the responder")

    def pods() -> list[str]:
        found = cluster.kubectl("get", "pods", "-n", namespace, "-l", "ballast.dev/responder-for=bot", "-o",
                                "jsonpath={.items[*].metadata.name}").stdout  # fmt: skip
        return found.split()

    load = Background(f"{data_plane.gateway_url}/v1/chat/completions", rate=10, host=host, max_seconds=120)
    try:
        # One pod of two going away is no reason to move anybody: usable does not hinge on one pod.
        first, _ = pods()
        cluster.kubectl("delete", "pod", first, "-n", namespace, "--wait=false")
        wait_until(lambda: first not in pods() and len(pods()) == 2, 30, "the responder pod replaced")
        wait_available(cluster, "bot-reject", namespace)
        assert "KillSwitchHolding" not in events(cluster, namespace, "bot")
        # Every pod of the only fallback gone: the switch holds, it never hands users back to the model.
        cluster.kubectl("delete", "pods", "-n", namespace, "-l", "ballast.dev/responder-for=bot", "--wait=false")
        held = wait_status(cluster, namespace, "bot", "holding", lambda s: s["killSwitch"].get("holding"), 20)
        assert (held["killSwitch"]["engaged"], held["weights"]["fallback"]) == (True, 100)
        assert condition(held, "KillSwitchEngaged")["reason"] == "Holding"
        assert "users stay on sorry" in condition(held, "KillSwitchEngaged")["message"]
        assert route_weights(cluster, namespace, "bot") == {"bot-reject": 100}
        wait_status(cluster, namespace, "bot", "the responder serving again",
                    lambda s: not s["killSwitch"].get("holding"), 60)  # fmt: skip
        wait_until(lambda: {"KillSwitchHolding", "FallbackUsable"} <= set(events(cluster, namespace, "bot")), 15,
                   "the hold and the recovery as Events")  # fmt: skip
    finally:
        report = load.stop()
    assert report.sent > 0
    # Errors only (the responder's 503s, the Gateway's while no responder pod was left), never a model answer.
    assert 200 not in report.by_status, report.summary()
    assert not any(b.startswith(f"bot-{stable}") for b in report.by_backend), report.summary()
    actions = [h["action"] for h in status(cluster, namespace, "bot")["history"]]
    assert (actions.count("kill"), actions.count("release")) == (1, 0), actions


def test_stop_pods_lets_in_flight_streams_finish_then_stops_the_model_and_restores_it_on_release(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    rules_service(cluster, namespace)
    manifest = with_fallbacks(
        model_deployment("bot", namespace, latency="8"),
        [{"name": "rules", "service": {"name": "rules", "port": 8000}}],
        {"fallback": "rules", "stopPods": True, "drain": "12s"},
    )  # fmt: skip
    manifest["spec"]["model"]["env"].append({"name": "SIM_TTFT", "value": "0.05"})
    apply(cluster, manifest)
    stable = wait_status(cluster, namespace, "bot", "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    host = f"bot.{namespace}.test"
    wait_available(cluster, f"bot-{stable}", namespace)
    wait_until(lambda: served_only_by_prefix(data_plane, host, f"bot-{stable}-", 4), 40, "the model serving")

    # A stream the model has started answering before the switch.
    stream: dict[str, Any] = {}
    started = threading.Event()

    def read_stream() -> None:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with httpx.stream("POST", f"{data_plane.gateway_url}/v1/chat/completions", json=body,
                          headers={"Host": host}, timeout=30) as response:  # fmt: skip
            stream["served_by"] = response.headers.get("x-served-by", "")
            chunks = response.iter_text()
            stream["first"] = next(chunks)
            started.set()
            stream["rest"] = "".join(chunks)
            stream["status"], stream["ended"] = response.status_code, time.monotonic()

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    wait_until(started.is_set, 10, "the model streaming its first token")
    apply(cluster, kill_switch("incident", namespace, modelDeployments=["bot"]))
    # A request the model answers takes 8 s: wait for the route first, then see the Gateway serve it.
    wait_until(lambda: route_weights(cluster, namespace, "bot") == {"rules": 100}, SWITCH_BOUND, "the route at rules")
    switched_at = time.monotonic()
    wait_until(lambda: served_only_by_prefix(data_plane, host, "rules-", 10), 15, "new requests at rules")
    reader.join(timeout=30)
    assert stream["status"] == 200
    assert stream["served_by"].startswith(f"bot-{stable}-")
    assert stream["ended"] > switched_at  # still streaming from the model after the route moved new requests
    assert "[DONE]" in stream["rest"]

    def workload() -> dict[str, Any]:
        found: dict[str, Any] = json.loads(
            cluster.kubectl("get", "deployment", f"bot-{stable}", "-n", namespace, "-o", "json").stdout
        )
        return found

    stopped = wait_status(cluster, namespace, "bot", "the model stopped after the drain",
                          lambda s: s["killSwitch"].get("stopped"), 30)  # fmt: skip
    assert stopped["history"][-1]["reason"] == "ModelStopped"
    assert stopped["history"][-1]["values"] == {"drainSeconds": 12.0}
    wait_until(lambda: workload()["spec"]["replicas"] == 0 and not workload()["status"].get("replicas"), 30,
               "the model's pods gone")  # fmt: skip
    assert served_only_by_prefix(data_plane, host, "rules-", 10)

    # Light load: once back at the model each request takes 8 s, and stopping waits for those in flight.
    load = Background(f"{data_plane.gateway_url}/v1/chat/completions", rate=4, host=host, max_seconds=120)
    try:
        cluster.kubectl("delete", "killswitch", "incident", "-n", namespace)
        wait_until(lambda: workload()["spec"]["replicas"] == 2, 15, "the model's pods starting again")
        assert route_weights(cluster, namespace, "bot") == {"rules": 100}  # users wait until the model serves
        wait_until(lambda: route_weights(cluster, namespace, "bot") == {f"bot-{stable}": 100}, 60,
                   "the route back at the model once its pods serve")  # fmt: skip
        assert workload()["status"].get("readyReplicas")
    finally:
        report = load.stop()
    assert served_only_by_prefix(data_plane, host, f"bot-{stable}-", 2)
    # Nobody was sent to a model without pods: every answer came from rules or the restarted model.
    assert set(report.by_status) == {200}, report.summary()
    assert report.transport_errors == 0, report.summary()
    released = status(cluster, namespace, "bot")
    reasons = [h["reason"] for h in released["history"]]
    assert reasons[-2:] == ["KillSwitchReleasing", "KillSwitchReleased"], reasons
    assert not released["killSwitch"].get("stopped")
