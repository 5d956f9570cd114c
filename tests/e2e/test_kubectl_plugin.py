"""`kubectl ballast` run through the real kubectl (found on PATH as a plugin) against the local control plane,
the operator and real traffic: wait, approve, status of a real rollback, kill and unkill."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ballast.api.annotations import APPROVED_BY_ANNOTATION, PROMOTE_ANNOTATION
from ballast.devstack.cluster import Cluster, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.kubectl.outcome import Outcome
from tests.e2e.helpers import (
    Plugin,
    apply,
    change_template,
    model_deployment,
    plugin_command,
    send,
    status,
    wait_serving,
    wait_status,
)
from tests.e2e.test_analysis import LATENCY, analysed, deploy_then_change
from tests.e2e.test_killswitch import SWITCH_BOUND, kill_switch, rules_service, with_fallbacks
from tests.e2e.test_roles import APPROVER, EDITOR, people  # noqa: F401  (the fixture binding the chart's roles)


def start_wait(cluster: Cluster, namespace: str, name: str, timeout: str = "3m") -> subprocess.Popen[str]:
    command, env = plugin_command(cluster, "wait", name, "-n", namespace, "--timeout", timeout)
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out + err


@pytest.mark.usefixtures("people", "operator")
def test_wait_exits_0_on_promotion_only_and_approve_records_the_approver(
    cluster: Cluster, kubectl_ballast: Plugin, namespace: str
) -> None:
    apply(cluster, model_deployment("bot", namespace))
    wait_status(cluster, namespace, "bot", "Stable", lambda s: s.get("phase") == "Stable")
    first = kubectl_ballast("wait", "bot", "--timeout", "30s")
    assert first.returncode == 0, first.stdout + first.stderr

    change_template(cluster, namespace, "bot", "0.02")
    waiting = start_wait(cluster, namespace, "bot")  # asked right after the change: the old revision is Stable
    at_step = wait_status(
        cluster, namespace, "bot", "waiting for approval", lambda s: "waiting for a manual promote" in s["message"]
    )
    assert at_step["currentStep"] == 0
    assert waiting.poll() is None  # still waiting: the Stable status of the old revision did not count

    refused = kubectl_ballast("approve", "bot", f"--as={EDITOR}")
    assert refused.returncode == 1
    assert f"{EDITOR} may not approve ModelDeployment {namespace}/bot" in refused.stderr
    claims = (f"{PROMOTE_ANNOTATION}=t1", f"{APPROVED_BY_ANNOTATION}=ceo@example.com")
    forged = cluster.kubectl(
        "annotate", "mdep", "bot", "-n", namespace, f"--as={APPROVER}", "--overwrite", *claims, check=False
    )
    assert forged.returncode != 0
    assert f"it says ceo@example.com but the request is from {APPROVER}" in forged.stderr
    assert waiting.poll() is None

    approved = kubectl_ballast("approve", "bot", f"--as={APPROVER}")
    assert approved.returncode == 0, approved.stderr
    assert f"step 1 approved by {APPROVER}" in approved.stdout
    code, output = finished(waiting, 60)
    assert code == Outcome.PROMOTED, output
    record = next(h for h in status(cluster, namespace, "bot")["history"] if h["action"] == "approve")
    assert record["message"] == f"Step 1/2 approved by {APPROVER}"
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "reason=Approved", "-o", "json")
    assert [e["message"] for e in json.loads(events.stdout)["items"]] == [record["message"]]
    not_waiting = kubectl_ballast("approve", "bot")
    assert not_waiting.returncode == 1
    assert "is not waiting for an approval (phase Stable" in not_waiting.stderr


@pytest.mark.usefixtures("operator")
def test_wait_exits_2_on_a_real_rollback_and_status_shows_its_numbers(
    cluster: Cluster, data_plane: DataPlane, kubectl_ballast: Plugin, namespace: str
) -> None:
    manifest = analysed("slow", namespace, [LATENCY], {"SIM_LATENCY": "0.02"})
    _, load = deploy_then_change(cluster, data_plane, manifest, {"SIM_LATENCY": "0.6"})
    try:
        code, output = finished(start_wait(cluster, namespace, "slow"), 150)
    finally:
        load.stop()
    assert code == Outcome.ROLLED_BACK, output
    assert "rolled back: Rolled back canary" in output

    shown = kubectl_ballast("status", "slow")
    assert shown.returncode == 0, shown.stderr
    checked = status(cluster, namespace, "slow")["lastAnalysis"]
    p95 = next(o for o in checked["objectives"] if o["name"] == "p95-latency")
    assert "Phase:       RolledBack" in shown.stdout
    row = next(line for line in shown.stdout.splitlines() if line.strip().startswith("p95-latency"))
    assert row.split()[:4] == ["p95-latency", f"{p95['value']:.4g}", "<=", "0.3"]
    assert p95["value"] > 0.3
    history = json.loads(kubectl_ballast("history", "slow", "-o", "json").stdout)
    assert history[-1]["action"] == "rollback"
    assert any(line.split()[1:2] == ["rollback"] for line in shown.stdout.splitlines())


def serving(data_plane: DataPlane, host: str, prefix: str) -> bool:
    report = send(data_plane, host, 40)
    return report.sent > 0 and bool(report.by_backend) and all(b.startswith(prefix) for b in report.by_backend)


@pytest.mark.usefixtures("operator")
def test_kill_moves_real_traffic_to_the_fallback_and_unkill_moves_it_back(
    cluster: Cluster, data_plane: DataPlane, kubectl_ballast: Plugin, namespace: str
) -> None:
    rules_service(cluster, namespace)
    manifest = with_fallbacks(
        model_deployment("bot", namespace), [{"name": "rules", "service": {"name": "rules", "port": 8000}}]
    )
    apply(cluster, manifest)
    stable = wait_status(cluster, namespace, "bot", "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    host = f"bot.{namespace}.test"
    wait_serving(data_plane, host, f"bot-{stable}")

    assert kubectl_ballast("kill", "bot").returncode == 2  # argparse: --reason is required
    killed = kubectl_ballast("kill", "bot", "--reason", "leaking prompts")
    assert killed.returncode == 0, killed.stderr
    assert "engaged: users of bot go to rules" in killed.stdout
    wait_until(lambda: serving(data_plane, host, "rules-"), SWITCH_BOUND, "users served by the fallback")
    switches = json.loads(cluster.kubectl("get", "killswitches", "-n", namespace, "-o", "json").stdout)["items"]
    whoami = json.loads(cluster.kubectl("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]["username"]
    assert [(s["spec"]["reason"], s["spec"]["requestedBy"]) for s in switches] == [("leaking prompts", whoami)]

    # Someone else's switch on the same deployment: unkill leaves it and says so; users stay on the fallback.
    apply(cluster, kill_switch("incident", namespace, modelDeployments=["bot"]))
    wait_status(cluster, namespace, "bot", "two sources", lambda s: len(s["killSwitch"]["sources"]) == 2)
    held = kubectl_ballast("unkill", "bot")
    assert held.returncode == 0, held.stderr
    assert f"bot is still held by: KillSwitch {namespace}/incident (answers cite a withdrawn policy)" in held.stdout
    assert serving(data_plane, host, "rules-")

    cluster.kubectl("delete", "killswitch", "incident", "-n", namespace)
    wait_until(lambda: serving(data_plane, host, f"bot-{stable}"), SWITCH_BOUND, "users back on the model")
    again = kubectl_ballast("unkill", "bot")
    assert again.returncode == 1
    assert "no switch created by kubectl ballast holds bot" in again.stdout


def test_status_and_completion_through_kubectl(cluster: Cluster, kubectl_ballast: Plugin, namespace: str) -> None:
    apply(cluster, model_deployment("bot", namespace))
    listed = kubectl_ballast("status")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == [
        "NAMESPACE",
        "NAME",
        "PHASE",
        "STABLE",
        "CANARY",
        "SPLIT",
        "SWITCH",
    ]
    assert any(line.split()[:2] == [namespace, "bot"] for line in listed.stdout.splitlines())
    raw: dict[str, Any] = json.loads(kubectl_ballast("status", "bot", "-o", "json").stdout)
    assert raw["metadata"]["name"] == "bot"
    missing = kubectl_ballast("status", "nobody")
    assert missing.returncode == 1
    assert 'Error from server (NotFound): modeldeployments.ballast.dev "nobody" not found' in missing.stderr
    _, env = plugin_command(cluster)
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "kubectl_complete-ballast"), "wait", "-n", namespace, "b"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert completed.stdout.splitlines() == ["bot", ":4"]
