"""Contract checks on real traffic, judged by a real Prometheus: promotion, rollback, holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ballast.devstack.cluster import Cluster
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.loadgen import Background
from ballast.devstack.operator_process import Operator
from tests.e2e.conftest import OPERATOR_USER
from tests.e2e.helpers import apply, audited_reads, model_deployment, status, wait_status
from tests.e2e.switch import Switch

# The window in Go's fractional form, as the CRD takes it: PromQL gets whole units (15s).
FAST_CONTRACT = {"minRequests": 20, "window": "0.25m"}


def analysed(
    name: str,
    namespace: str,
    objectives: list[dict[str, Any]],
    env: dict[str, str],
    *,
    steps: list[dict[str, Any]] | None = None,
    rollout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ModelDeployment under a fast contract: 3s checks, a 15s window, one failed check tolerated."""
    manifest = model_deployment(
        name, namespace, steps=steps or [{"weight": 30, "pause": "6s"}, {"weight": 60, "pause": "6s"}, {"weight": 100}],
        rollout={"interval": "3s", "failureLimit": 1, **(rollout or {})},
    )  # fmt: skip
    manifest["spec"]["model"]["env"] = [{"name": k, "value": v} for k, v in env.items()]
    manifest["spec"]["contract"] = {**FAST_CONTRACT, "objectives": objectives}
    return manifest


LATENCY = {"name": "p95-latency", "preset": "e2e-latency-p95", "max": 0.3}
ERRORS = {"name": "error-rate", "preset": "error-rate", "max": 0.05}


def deploy_then_change(
    cluster: Cluster, data_plane: DataPlane, manifest: dict[str, Any], new_env: dict[str, str]
) -> tuple[str, Background]:
    """Deploy, start steady load through the Gateway, change the template; return the stable revision."""
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    apply(cluster, manifest)
    stable = wait_status(cluster, namespace, name, "Stable", lambda s: s.get("phase") == "Stable")["stableRevision"]
    load = Background(
        f"{data_plane.gateway_url}/v1/chat/completions", rate=40, concurrency=32, host=f"{name}.{namespace}.test"
    )
    manifest["spec"]["model"]["env"] = [{"name": k, "value": v} for k, v in new_env.items()]
    apply(cluster, manifest)
    return stable, load


def outcome_under_load(
    cluster: Cluster, data_plane: DataPlane, manifest: dict[str, Any], new_env: dict[str, str], settled: Any
) -> tuple[str, dict[str, Any]]:
    """Change the template under steady load; wait until `settled(status, stable)`; (stable, final status)."""
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    stable, load = deploy_then_change(cluster, data_plane, manifest, new_env)
    try:
        final = wait_status(cluster, namespace, name, "the rollout to settle", lambda s: settled(s, stable), 120)
    finally:
        load.stop()
    return stable, final


def rolled_back(status: dict[str, Any], _: str) -> bool:
    return status.get("phase") == "RolledBack"


def regressed(
    cluster: Cluster,
    data_plane: DataPlane,
    namespace: str,
    objective: dict[str, Any],
    change: dict[str, str],
    stable_env: dict[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """A stable (healthy unless `stable_env` says otherwise), then a canary changed by `change` under load,
    judged by `objective` until rolled back."""
    env = {"SIM_LATENCY": "0.02", **(stable_env or {})}
    manifest = analysed(objective["name"], namespace, [objective], env)
    return outcome_under_load(cluster, data_plane, manifest, {**env, **change}, rolled_back)


def promoted(status: dict[str, Any], stable: str) -> bool:
    return status.get("phase") in ("Stable", "RolledBack") and status.get("stableRevision") != stable


def test_a_healthy_canary_is_promoted_through_every_step(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    manifest = analysed("healthy", namespace, [LATENCY, ERRORS], {"SIM_LATENCY": "0.02"})
    _, done = outcome_under_load(cluster, data_plane, manifest, {"SIM_LATENCY": "0.03"}, promoted)
    assert done["phase"] == "Stable"
    # A first check may hold (the canary's window is still filling up); the walk itself is complete.
    walk = [h["action"] for h in done["history"] if h["action"] != "check-held"]
    # One replica carries 30% of 2; the canary scales up to two before it serves 60%.
    assert walk == ["deploy", "canary", "step", "scale-up", "step", "step", "promote"]
    checked = done["lastAnalysis"]
    assert checked["verdict"] == "Passed"
    assert {o["name"] for o in checked["objectives"]} == {"p95-latency", "error-rate"}
    assert all(o["samples"] >= 20 for o in checked["objectives"])  # the 0.25m window, queried as 15s
    assert (checked["step"], checked["canaryWeight"]) == (2, 100)  # it measured the last step, at 100%


def test_a_latency_regression_is_rolled_back_and_the_event_names_p95(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    stable, rolled = regressed(cluster, data_plane, namespace, LATENCY, {"SIM_LATENCY": "0.8", "SIM_JITTER": "0.05"})
    assert rolled["stableRevision"] == stable
    assert rolled["weights"]["stable"] == 100
    last = rolled["history"][-1]
    assert last["reason"] == "AnalysisFailed"
    assert "p95-latency" in last["message"]
    value = next(o for o in rolled["lastAnalysis"]["objectives"] if o["name"] == "p95-latency")["value"]
    assert value > 0.3
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "reason=AnalysisFailed", "-o",
                             "jsonpath={.items[*].message}").stdout  # fmt: skip
    assert "p95-latency" in events
    assert "above max 0.3" in events


def test_an_error_spike_is_rolled_back(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    _, rolled = regressed(cluster, data_plane, namespace, ERRORS, {"SIM_ERROR_RATE": "0.5"})
    assert "error-rate" in rolled["history"][-1]["message"]


def test_a_canary_without_traffic_holds_inconclusive_and_is_read_once_per_check(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    manifest = analysed("quiet", namespace, [ERRORS], {"SIM_LATENCY": "0.02"})
    apply(cluster, manifest)
    wait_status(cluster, namespace, "quiet", "Stable", lambda s: s.get("phase") == "Stable")
    manifest["spec"]["model"]["env"] = [{"name": "SIM_LATENCY", "value": "0.03"}]
    apply(cluster, manifest)
    held = wait_status(
        cluster, namespace, "quiet", "an inconclusive check",
        lambda s: (s.get("lastAnalysis") or {}).get("verdict") == "Inconclusive", timeout=60,
    )  # fmt: skip
    assert "fewer than minRequests 20" in held["lastAnalysis"]["objectives"][0]["reason"]
    pause_over = wait_status(
        cluster, namespace, "quiet", "the step's pause to pass while held",
        lambda s: "waiting for a passing contract check" in s.get("message", ""), timeout=30,
    )  # fmt: skip
    assert pause_over["currentStep"] == 0
    assert pause_over["weights"]["canary"] == 30
    assert pause_over["phase"] == "Progressing"
    # Held with its pause over, it is read once per check and not in between (the API server's count).
    since, first = datetime.now(UTC), pause_over.get("inconclusiveChecks", 0)
    later = wait_status(cluster, namespace, "quiet", "four more checks",
                        lambda s: s.get("inconclusiveChecks", 0) >= first + 4, timeout=30)  # fmt: skip
    until = datetime.now(UTC)
    reads = audited_reads(cluster, OPERATOR_USER, namespace, since, until, name="quiet")
    everything = audited_reads(cluster, OPERATOR_USER, namespace, since, until)
    intervals = (until - since).total_seconds() / 3
    checks = later["inconclusiveChecks"] - first
    print(f"held canary: {reads} reads of it, {everything} in all; {intervals:.1f} intervals, {checks} checks")
    # n intervals hold at most n + 1 checks (one may fall at each end), and each check reads once.
    assert reads <= checks + 1
    assert reads <= intervals + 2
    assert everything <= intervals + 2


def test_prometheus_unreachable_holds_then_rolls_back_at_the_deadline(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, prometheus_switch: Switch, namespace: str
) -> None:
    manifest = analysed(
        "blind", namespace, [ERRORS], {"SIM_LATENCY": "0.02"},
        steps=[{"weight": 30, "approval": True}, {"weight": 100}], rollout={"inconclusiveDeadline": "10s"},
    )  # fmt: skip
    _, load = deploy_then_change(cluster, data_plane, manifest, {"SIM_LATENCY": "0.03"})
    try:
        wait_status(
            cluster, namespace, "blind", "a passing check",
            lambda s: (s.get("lastAnalysis") or {}).get("verdict") == "Passed", timeout=60,
        )  # fmt: skip
        prometheus_switch.off()
        held = wait_status(
            cluster, namespace, "blind", "held on metrics errors",
            lambda s: (s.get("lastAnalysis") or {}).get("verdict") == "Error", timeout=30,
        )  # fmt: skip
        assert held["weights"]["canary"] == 30
        assert held["phase"] == "Progressing"
        rolled = wait_status(cluster, namespace, "blind", "RolledBack", lambda s: s.get("phase") == "RolledBack", 30)
    finally:
        prometheus_switch.on()
        load.stop()
    assert rolled["history"][-1]["reason"] == "MetricsUnavailable"
    assert any(h["reason"] == "MetricsUnavailable" and h["action"] == "check-held" for h in rolled["history"])


RELATIVE = {"name": "error-rate", "preset": "error-rate", "relativeToStable": 1.5}  # no absolute bound at all


def test_under_a_relative_bound_stable_and_canary_degrading_together_do_not_roll_back(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    # Half the answers fail on both: sampling noise of the ratio stays far below the 1.5x bound even on the
    # few requests a check sees right after a step starts (at 20%, a noisy early check could fail it).
    upstream_outage = {"SIM_LATENCY": "0.02", "SIM_ERROR_RATE": "0.5"}
    manifest = analysed("shared", namespace, [RELATIVE], upstream_outage)
    _, done = outcome_under_load(cluster, data_plane, manifest, {**upstream_outage, "SIM_LATENCY": "0.03"}, promoted)
    assert done["phase"] == "Stable"
    assert all(h["action"] != "rollback" for h in done["history"])
    errors = done["lastAnalysis"]["objectives"][0]
    assert errors["verdict"] == "Passed"
    # Judged against the stable revision, measured over the same window: a pass without it would be Inconclusive.
    assert errors["stableValue"] is not None
    assert 0.3 < errors["stableValue"] < 0.7
    assert errors["value"] <= 1.5 * errors["stableValue"]
    assert errors["bound"] == f"<= 1.5 x stable ({errors['stableValue']:.4g})"
    assert status(cluster, namespace, "shared")["weights"]["stable"] == 100


def test_under_a_relative_bound_a_canary_worse_than_stable_is_rolled_back(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    """The bound is the only one: were it ignored, this canary (five times the stable's errors) would promote."""
    _, rolled = regressed(cluster, data_plane, namespace, {**RELATIVE, "name": "relative-errors"},
                          {"SIM_ERROR_RATE": "0.5"}, stable_env={"SIM_ERROR_RATE": "0.1"})  # fmt: skip
    assert rolled["history"][-1]["reason"] == "AnalysisFailed"
    errors = rolled["lastAnalysis"]["objectives"][0]
    assert errors["verdict"] == "Failed"
    assert errors["value"] > 1.5 * errors["stableValue"]
    assert "x stable" in rolled["history"][-1]["message"]
