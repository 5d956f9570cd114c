"""Webhook gates end to end: the operator under its RBAC identity calls a receiver on this host, which checks
every call's token with a TokenReview against the real API server; traffic moves through the real Gateway."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ballast.devstack.cluster import Cluster, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.operator_process import NAMESPACE, SERVICE_ACCOUNT, Operator
from tests.e2e.conftest import OPERATOR_USER
from tests.e2e.gate_receiver import GateReceiver
from tests.e2e.helpers import apply, change_template, model_deployment, route_weights, status, wait_status
from tests.e2e.test_killswitch import (
    SWITCH_BOUND,
    kill_switch,
    rules_service,
    served_only_by_prefix,
    with_fallbacks,
)

STEPS = [{"weight": 30}, {"weight": 100}]


@pytest.fixture(scope="module")
def receiver(cluster: Cluster) -> Iterator[GateReceiver]:
    running = GateReceiver(cluster.kubeconfig)
    running.start()
    yield running
    running.stop()


def gated(name: str, namespace: str, *webhooks: dict[str, Any]) -> dict[str, Any]:
    return model_deployment(name, namespace, steps=STEPS, rollout={"webhooks": list(webhooks)})


def deploy_then_change(cluster: Cluster, namespace: str, name: str, manifest: dict[str, Any]) -> str:
    """Deploy, wait for Stable, change the template; returns the stable revision."""
    apply(cluster, manifest)
    stable = wait_status(cluster, namespace, name, "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    change_template(cluster, namespace, name, "0.02")
    return str(stable)


def events(cluster: Cluster, namespace: str, reason: str) -> list[str]:
    found = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    return [e["message"] for e in found if e["reason"] == reason]


def gate_entry(state: dict[str, Any], name: str) -> dict[str, Any]:
    return next((g for g in state.get("gates", []) if g["name"] == name), {})


def test_a_refusing_pre_rollout_gate_never_lets_the_canary_take_traffic_and_rolls_it_back(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str, receiver: GateReceiver
) -> None:
    path = f"/refuse/{namespace}"
    hook = {"name": "golden-set", "type": "pre-rollout", "url": receiver.url(path), "metadata": {"suite": "faq"}}
    stable = deploy_then_change(cluster, namespace, "bot", gated("bot", namespace, hook))
    done = wait_status(cluster, namespace, "bot", "RolledBack", lambda s: s.get("phase") == "RolledBack", 120)
    canary = done["history"][-1]["revision"]
    assert [h["action"] for h in done["history"] if h.get("revision") == canary] == ["canary", "rollback"]
    assert done["weights"]["canary"] == 0
    assert route_weights(cluster, namespace, "bot") == {f"bot-{stable}": 100}
    entry = gate_entry(done, "golden-set")
    assert (entry["outcome"], entry["code"], entry["revision"]) == ("Refused", 403, canary)
    (refused,) = events(cluster, namespace, "GateRefused")
    assert "gate golden-set (pre-rollout) refused: HTTP 403: golden set: 41/50 correct, 45 needed" in refused
    calls = receiver.calls_to(path)
    assert [c.user for c in calls] == [OPERATOR_USER]  # one call, its token good for this URL only
    payload = calls[0].payload
    assert (payload["kind"], payload["webhook"], payload["canaryRevision"], payload["stableRevision"]) == (
        "WebhookCall",
        {"name": "golden-set", "type": "pre-rollout", "metadata": {"suite": "faq"}},
        canary,
        stable,
    )
    assert payload["canaryAddress"] == f"http://bot-{canary}.{namespace}.svc:8000"


def test_a_passing_gate_lets_the_canary_proceed_and_confirm_promotion_holds_the_last_step_until_2xx(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str, receiver: GateReceiver
) -> None:
    receiver.confirm_code = 409
    smoke = {"name": "smoke", "type": "pre-rollout", "url": receiver.url(f"/pass/{namespace}")}
    confirm = {"name": "confirm", "type": "confirm-promotion", "url": receiver.url(f"/confirm/{namespace}")}
    deploy_then_change(cluster, namespace, "bot", gated("bot", namespace, smoke, confirm))
    at_step = wait_status(cluster, namespace, "bot", "the canary at 30%", lambda s: s["weights"]["canary"] == 30, 120)
    passed = next(h for h in at_step["history"] if h["action"] == "gate-passed")
    assert passed["values"]["httpStatus"] == 200
    assert passed["values"]["score:accuracy"] == 0.96
    assert passed["values"]["latencySeconds"] > 0
    held = wait_status(
        cluster, namespace, "bot", "confirm refused and asked again",
        lambda s: gate_entry(s, "confirm").get("attempts", 0) >= 2, 30,
    )  # fmt: skip
    assert (held["weights"]["canary"], held["phase"]) == (30, "Progressing")
    assert gate_entry(held, "confirm")["outcome"] == "Refused"
    assert "gate confirm (confirm-promotion: refused, asked again: waiting for on-call)" in held["message"]
    receiver.confirm_code = 200
    wait_status(
        cluster, namespace, "bot", "promoted", lambda s: s["phase"] == "Stable" and s.get("previousRevision"), 120
    )
    users = {c.user for path in (f"/pass/{namespace}", f"/confirm/{namespace}") for c in receiver.calls_to(path)}
    assert users == {OPERATOR_USER}


def test_a_hanging_gate_holds_the_canary_then_meets_its_deadline(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str, receiver: GateReceiver
) -> None:
    hook = {"name": "slow", "type": "pre-rollout", "url": receiver.url(f"/hang/{namespace}"), "timeout": "1s",
            "deadline": "8s"}  # fmt: skip
    deploy_then_change(cluster, namespace, "bot", gated("bot", namespace, hook))
    holding = wait_status(cluster, namespace, "bot", "the gate in error", lambda s: gate_entry(s, "slow").get(
        "outcome") == "Error", 120)  # fmt: skip
    assert (holding["phase"], holding["weights"]["canary"]) == ("Progressing", 0)
    assert "no answer within 1s" in gate_entry(holding, "slow")["message"]
    done = wait_status(cluster, namespace, "bot", "RolledBack", lambda s: s.get("phase") == "RolledBack", 30)
    rollback = done["history"][-1]
    assert rollback["reason"] == "GateDeadlineExceeded"
    assert "gate slow (pre-rollout) did not answer within 8s: no answer within 1s" in rollback["message"]
    assert gate_entry(done, "slow")["attempts"] >= 2  # asked again (after 1 s, then 2 s ...) while it held


def test_the_receiver_refuses_a_token_minted_for_another_audience(
    cluster: Cluster, receiver: GateReceiver, operator: Operator
) -> None:
    url = receiver.url("/pass/audience")

    def call_with_token_for(audience: str) -> int:
        token = cluster.kubectl("create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE, f"--audience={audience}")
        answer = httpx.post(url, json={}, headers={"Authorization": f"Bearer {token.stdout.strip()}"}, timeout=10)
        return answer.status_code

    assert call_with_token_for("https://elsewhere.example.com/gate") == 401
    assert call_with_token_for(url) == 200  # the same account's token for this URL passes: the audience decided


def test_a_hanging_notification_delays_neither_a_reconcile_nor_a_kill_switch(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str, receiver: GateReceiver
) -> None:
    rules_service(cluster, namespace)
    hanging = [{"name": f"audit-{kind}", "type": kind, "url": receiver.url(f"/hang/{namespace}/{kind}"),
                "timeout": "5m"} for kind in ("event", "rollback", "post-rollout")]  # fmt: skip
    manifest = with_fallbacks(gated("bot", namespace, *hanging), [{"name": "rules", "service": {"name": "rules",
                              "port": 8000}}], {"fallback": "rules"})  # fmt: skip
    hung_before = receiver.hanging
    deploy_then_change(cluster, namespace, "bot", manifest)
    started = time.monotonic()
    wait_status(cluster, namespace, "bot", "the canary at 30%", lambda s: s["weights"]["canary"] == 30, 120)
    print(f"template change to the first step {time.monotonic() - started:.2f}s, notifications hanging")
    # deploy, canary, step: an event notification each, all still held open by the receiver
    wait_until(lambda: receiver.hanging - hung_before >= 3, 15, "three notifications hanging")
    host = f"bot.{namespace}.test"
    started = time.monotonic()
    apply(cluster, kill_switch("incident", namespace, modelDeployments=["bot"]))
    wait_until(lambda: served_only_by_prefix(data_plane, host, "rules-"), SWITCH_BOUND, "users served by the fallback")
    print(f"kill switch with notifications hanging: every request at the fallback {time.monotonic() - started:.2f}s")
    assert status(cluster, namespace, "bot")["killSwitch"]["engaged"]
