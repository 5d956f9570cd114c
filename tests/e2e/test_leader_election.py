"""Two operator replicas against one API server: one Lease, one writer, a take-over within the bound.

Writes are counted in the API server's audit log: both replicas run under the chart's ServiceAccount
and each sends its identity in its user agent (kopf's own calls say `kopf/...`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ballast.api.timestamps import parse_time
from ballast.devstack.cluster import Cluster, ClusterError, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.operator_process import NAMESPACE, Operator
from ballast.shell.leader import LeaseTimings, user_agent
from tests.e2e.conftest import OPERATOR_USER
from tests.e2e.helpers import annotate, model_deployment, route_weights, start_canary, status, wait_status
from tests.e2e.switch import Switch
from tests.e2e.test_killswitch import condition, kill_switch, with_fallbacks

TIMINGS = LeaseTimings()
LEASE = "ballast-operator"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
# The bound holds from the decision to take over; the API call that carries it, and a busy shared CPU, add this much.
ROUND_TRIP = 1.0
# A take-over reconciles everything at once: the route is written within one reconcile of the lease changing hands.
ONE_RECONCILE = 2.0
# From SIGTERM to kopf running the cleanup handler that releases the lease (measured: 0.13 s).
SHUTDOWN = 1.0
# kopf refreshes probe results at most every 10 s.
PROBE_REFRESH = 12.0


def lease(cluster: Cluster) -> dict[str, Any]:
    body = json.loads(cluster.kubectl("get", "lease", LEASE, "-n", NAMESPACE, "-o", "json").stdout)
    spec: dict[str, Any] = body["spec"]
    return spec


def holder(cluster: Cluster) -> str | None:
    found = cluster.kubectl("get", "lease", LEASE, "-n", NAMESPACE, "-o", "json", check=False)
    return json.loads(found.stdout)["spec"].get("holderIdentity") if found.returncode == 0 else None


def role(replica: Operator) -> str:
    report: dict[str, str] = replica.probes()["leadership"]
    return f"{report['role']} (holder {report['holder']})"


class AuditLog:
    """The operator identity's writes in the audit log, from a byte offset on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = path.stat().st_size

    def writes(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """The operator identity's writes the API server received in [since, until)."""
        with self.path.open("rb") as log:
            log.seek(self.start)
            entries = [json.loads(line) for line in log.read().splitlines()]
        return [
            e
            for e in entries
            if e["user"]["username"] == OPERATOR_USER
            and e["verb"] in WRITES
            and since <= parse_time(e["requestReceivedTimestamp"]) < until
        ]


def by_agent(entries: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    """user agent -> how many writes of each resource."""
    found: dict[str, Counter[str]] = {}
    for e in entries:
        found.setdefault(e.get("userAgent", ""), Counter())[e["objectRef"]["resource"]] += 1
    return found


@dataclass
class Replicas:
    leader: Operator
    standby: Operator
    since: datetime  # before the standby started: the audit log counts its whole life
    audit: AuditLog


@pytest.fixture
def replicas(
    cluster: Cluster, data_plane: DataPlane, operator_kubeconfig: Path, prometheus_switch: Switch, operator: Operator
) -> Iterator[Replicas]:
    """The session's operator leading and a second replica; afterwards the session's operator leads again."""
    wait_until(lambda: holder(cluster) == operator.identity, TIMINGS.failover_bound, "the session operator to lead")
    pair = Replicas(operator, Operator(cluster, operator_kubeconfig, prometheus_switch.url, identity="ballast-1"),
                    datetime.now(UTC), AuditLog(cluster.audit_log))  # fmt: skip
    pair.standby.start()
    yield pair
    if operator.process is None:
        operator.start()
    pair.standby.stop()
    wait_until(lambda: holder(cluster) == operator.identity, TIMINGS.failover_bound, "the session operator to lead")


def test_one_replica_writes_and_a_standby_takes_over_a_killed_leader_mid_canary_within_the_bound(
    cluster: Cluster, data_plane: DataPlane, replicas: Replicas, namespace: str
) -> None:
    leader, standby = replicas.leader, replicas.standby
    wait_until(lambda: role(standby) == f"standby (holder {leader.identity})", PROBE_REFRESH, "the standby's probe")
    assert role(leader) == f"leader (holder {leader.identity})"

    manifest = with_fallbacks(model_deployment("bot", namespace), [{"name": "sorry", "reject": {}}])
    stable, canary = start_canary(cluster, data_plane, namespace, "bot", manifest)
    split = {f"bot-{stable}": 70, f"bot-{canary}": 30}
    wait_until(lambda: route_weights(cluster, namespace, "bot") == split, 30, "the canary split on the route")
    wait_status(cluster, namespace, "bot", "the reject fallback usable",
                lambda s: condition(s, "FallbackAvailable").get("status") == "True")  # fmt: skip

    # The leader dies mid-canary; a person engages a kill switch while nobody leads.
    killed = datetime.now(UTC)
    started = time.monotonic()
    leader.kill()
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(kill_switch("incident", namespace, modelDeployments=["bot"])))
    bound = TIMINGS.failover_bound + ROUND_TRIP + ONE_RECONCILE
    wait_until(lambda: route_weights(cluster, namespace, "bot") == {"bot-reject": 100}, bound, "the switch honoured")
    switched = time.monotonic() - started
    taken = lease(cluster)
    took_over = (parse_time(taken["acquireTime"]) - killed).total_seconds()
    print(f"take-over {took_over:.2f}s after the SIGKILL (bound {TIMINGS.failover_bound:.0f}s); "
          f"switch on the route {switched:.2f}s after it")  # fmt: skip
    assert taken["holderIdentity"] == standby.identity
    assert took_over <= TIMINGS.failover_bound + ROUND_TRIP
    assert switched - took_over <= ONE_RECONCILE
    wait_until(lambda: role(standby) == f"leader (holder {standby.identity})", PROBE_REFRESH, "the new leader's probe")

    # Released, the canary resumes at its step; approved, it promotes.
    cluster.kubectl("delete", "killswitch", "incident", "-n", namespace)
    wait_until(lambda: route_weights(cluster, namespace, "bot") == split, 10, "the canary split restored")
    resumed = status(cluster, namespace, "bot")
    assert (resumed["phase"], resumed["currentStep"], resumed["canaryRevision"]) == ("Progressing", 0, canary)
    annotate(cluster, namespace, "bot", "ballast.dev/promote=step-1")
    done = wait_status(cluster, namespace, "bot", "promoted",
                       lambda s: s.get("phase") == "Stable" and s.get("stableRevision") == canary)  # fmt: skip
    finished = datetime.now(UTC)

    # No decision twice: the new leader read where the rollout stood from status.
    ids = [h["id"] for h in done["history"]]
    assert len(ids) == len(set(ids)), ids
    assert [h["action"] for h in done["history"]] == [
        "deploy", "canary", "step", "kill", "release", "approve", "scale-up", "step", "promote",
    ]  # fmt: skip
    # Events go out beside the act step, after the status write that says Stable: the last may still be on its way.
    expected = Counter({"Deployed": 1, "CanaryStarted": 1, "StepStarted": 2, "KillSwitchEngaged": 1,
                        "KillSwitchReleased": 1, "Approved": 1, "ScalingUp": 1, "Promoted": 1})  # fmt: skip
    events: list[dict[str, Any]] = []

    def every_event_posted() -> bool:
        events[:] = json.loads(cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                                               "involvedObject.kind=ModelDeployment,involvedObject.name=bot",
                                               "-o", "json").stdout)["items"]  # fmt: skip
        return Counter(e["reason"] for e in events) == expected

    with contextlib.suppress(ClusterError):  # then the assertion shows what was posted
        wait_until(every_event_posted, 10, "every decision's Event")
    reasons = Counter(e["reason"] for e in events)
    assert reasons == expected, reasons
    instances = {e["reason"]: e["reportingInstance"] for e in events}
    assert (instances["CanaryStarted"], instances["KillSwitchEngaged"]) == (leader.identity, standby.identity)

    # One writer at a time, counted by the API server.
    audit = replicas.audit
    before, after = by_agent(audit.writes(replicas.since, killed)), by_agent(audit.writes(killed, finished))
    print(f"writes before the kill: {dict(before)}\nwrites after it: {dict(after)}")
    assert set(before) == {user_agent(leader.identity)}, before
    assert {"modeldeployments", "httproutes", "leases"} <= set(before[user_agent(leader.identity)])
    assert set(after) == {user_agent(standby.identity)}, after
    assert {"modeldeployments", "httproutes", "killswitches", "leases"} <= set(after[user_agent(standby.identity)])


def test_a_stopped_leader_hands_the_lease_over_at_the_standbys_next_check(cluster: Cluster, replicas: Replicas) -> None:
    leader, standby = replicas.leader, replicas.standby
    wait_until(lambda: role(standby) == f"standby (holder {leader.identity})", PROBE_REFRESH, "the standby's probe")
    stopped = datetime.now(UTC)
    leader.stop()  # SIGTERM, as a rolling upgrade does: its cleanup releases the lease
    wait_until(lambda: holder(cluster) == standby.identity, TIMINGS.retry_period, "the standby to lead")
    handed_over = (parse_time(lease(cluster)["acquireTime"]) - stopped).total_seconds()
    print(f"graceful hand-over: the standby acquired the lease {handed_over:.2f}s after the SIGTERM")
    # Far below the 15 s lease: the release, then the standby's next check.
    assert handed_over <= SHUTDOWN + TIMINGS.retry_period
