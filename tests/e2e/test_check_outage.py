"""A Prometheus that accepts one deployment's queries and never answers them, for longer than the operator has
executor workers times the check timeout: Error verdicts on time, no thread held, a rollback at
inconclusiveDeadline, and another deployment's checks and kill switch unaffected meanwhile."""

from __future__ import annotations

import math
import time
from typing import Any

from ballast.api.timestamps import parse_time
from ballast.devstack.cluster import Cluster, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.loadgen import Background
from ballast.devstack.operator_process import Operator
from tests.e2e.conftest import CHECK_TIMEOUT_SECONDS
from tests.e2e.helpers import apply, route_weights, wait_status
from tests.e2e.stall import Stall
from tests.e2e.test_analysis import ERRORS, analysed, deploy_then_change, promoted
from tests.e2e.test_killswitch import SWITCH_BOUND, condition, kill_switch, with_fallbacks

HEALTHY = {"SIM_LATENCY": "0.02"}
CHANGED = {"SIM_LATENCY": "0.03"}
INTERVAL = 2


def passed_at_first_step(status: dict[str, Any]) -> bool:
    return status.get("currentStep") == 0 and (status.get("lastAnalysis") or {}).get("verdict") == "Passed"


def last_at(status: dict[str, Any], action: str) -> float:
    entry = next(h for h in reversed(status["history"]) if h["action"] == action)
    return parse_time(entry["at"]).timestamp()


def test_a_prometheus_that_never_answers_holds_no_thread_and_stalls_no_other_deployment(
    cluster: Cluster,
    data_plane: DataPlane,
    operator: Operator,
    prometheus_stall: Stall,
    namespace: str,
    other_namespace: str,
) -> None:
    workers = int(operator.metrics()["ballast_executor_workers"])
    outage = workers * CHECK_TIMEOUT_SECONDS  # what it takes to hold every worker, were checks run on threads
    deadline = math.ceil(outage) + 3 * INTERVAL
    stalled = analysed(
        "stalled", namespace, [ERRORS], HEALTHY, steps=[{"weight": 30, "approval": True}, {"weight": 100}],
        rollout={"interval": f"{INTERVAL}s", "inconclusiveDeadline": f"{deadline}s"},
    )  # fmt: skip
    healthy = with_fallbacks(
        analysed("healthy", other_namespace, [ERRORS], HEALTHY, rollout={"interval": f"{INTERVAL}s"},
                 steps=[{"weight": 30, "pause": "4s"}, {"weight": 60, "pause": "4s"}, {"weight": 100}]),
        [{"name": "sorry", "reject": {}}], {"fallback": "sorry"},
    )  # fmt: skip
    apply(cluster, healthy)
    healthy_stable = wait_status(cluster, other_namespace, "healthy", "Stable",
                                 lambda s: s.get("phase") == "Stable")["stableRevision"]  # fmt: skip
    healthy_load = Background(f"{data_plane.gateway_url}/v1/chat/completions", rate=30, concurrency=16,
                              host=f"healthy.{other_namespace}.test")  # fmt: skip
    stalled_stable, stalled_load = deploy_then_change(cluster, data_plane, stalled, CHANGED)
    samples: list[dict[str, float]] = []

    def sampled(check: Any) -> Any:
        """A wait's predicate that also samples the operator's metrics on every poll."""

        def predicate(status: dict[str, Any]) -> bool:
            samples.append(operator.metrics())
            return bool(check(status))

        return predicate

    try:
        wait_status(cluster, namespace, "stalled", "a passing check at 30%", passed_at_first_step, 90)
        wait_status(cluster, other_namespace, "healthy", "a usable fallback",
                    lambda s: condition(s, "FallbackAvailable").get("status") == "True", 60)  # fmt: skip
        threads_before = operator.metrics()["ballast_threads"]

        # Every query about the first namespace is accepted and never answered from here on.
        prometheus_stall.stall(lambda query: f'namespace="{namespace}"' in query)
        stalled_since = time.monotonic()
        erring = wait_status(cluster, namespace, "stalled", "an Error verdict",
                             sampled(lambda s: (s.get("lastAnalysis") or {}).get("verdict") == "Error"),
                             CHECK_TIMEOUT_SECONDS + 2 * INTERVAL + 5)  # fmt: skip
        assert f"did not answer within {CHECK_TIMEOUT_SECONDS}s" in erring["lastAnalysis"]["objectives"][0]["reason"]
        assert erring["weights"]["canary"] == 30
        # Enough checks left unanswered (two queries each: the request count and the objective) to hold every
        # executor worker, had each query waited on a thread.
        wait_status(cluster, namespace, "stalled", f"{workers // 2 + 1} checks without an answer",
                    sampled(lambda s: s.get("inconclusiveChecks", 0) > workers // 2), outage + 15)  # fmt: skip

        # Only now does the other deployment start a canary: its checks pass on time and walk it to promotion ...
        healthy["spec"]["model"]["env"] = [{"name": k, "value": v} for k, v in CHANGED.items()]
        apply(cluster, healthy)
        done = wait_status(cluster, other_namespace, "healthy", "promoted during the outage",
                           sampled(lambda s: promoted(s, healthy_stable)), 60)  # fmt: skip
        assert done["phase"] == "Stable"
        # ... and a kill switch on it acts on its event, as fast as ever.
        apply(cluster, kill_switch("drill", other_namespace, modelDeployments=["healthy"]))
        switched = time.monotonic()
        wait_until(lambda: route_weights(cluster, other_namespace, "healthy") == {"healthy-reject": 100},
                   SWITCH_BOUND, "the other deployment's route at its fallback")  # fmt: skip
        switch_seconds = time.monotonic() - switched

        rolled = wait_status(cluster, namespace, "stalled", "rolled back at inconclusiveDeadline",
                             sampled(lambda s: s.get("phase") == "RolledBack"), deadline + 20)  # fmt: skip
        outage_seconds = time.monotonic() - stalled_since
        threads_after = operator.metrics()["ballast_threads"]
    finally:
        prometheus_stall.release()
        stalled_load.stop()
        healthy_load.stop()

    print(
        f"outage {outage_seconds:.1f}s > {workers} workers x {CHECK_TIMEOUT_SECONDS}s; {prometheus_stall.stalled.value}"
        f" queries unanswered; switch {switch_seconds:.2f}s; threads {threads_before:.0f} -> {threads_after:.0f}"
    )
    assert outage_seconds > outage
    # No thread waited on the silent Prometheus: none was held longer than a query may take, none was added.
    held = max(s["ballast_executor_oldest_job_seconds"] for s in samples)
    assert held < CHECK_TIMEOUT_SECONDS, f"a thread was held {held:.1f}s"
    assert max(s["ballast_executor_jobs_waiting"] for s in samples) == 0
    assert threads_after <= threads_before
    # The rollback: MetricsUnavailable, at inconclusiveDeadline after the hold began, within one interval.
    assert rolled["stableRevision"] == stalled_stable
    assert rolled["history"][-1]["reason"] == "MetricsUnavailable"
    assert f"no conclusive check for {deadline}s" in rolled["history"][-1]["message"]
    held_for = last_at(rolled, "rollback") - last_at(rolled, "check-held")
    assert deadline <= held_for <= deadline + INTERVAL, f"rolled back {held_for:.0f}s after the hold began"
