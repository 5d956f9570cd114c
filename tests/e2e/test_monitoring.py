"""The chart's alerts and dashboard on a real Prometheus scraping the real operator.

A Prometheus of the test's own loads the rules `helm template` renders from the chart (with short `for`
durations and windows, so a story takes seconds) and scrapes the session's operator as the chart's
ServiceMonitor would (job `ballast-metrics`, the metrics' own labels kept). Each alert is provoked the
way it happens in production, fires with the labels that route it to its owner, and resolves.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from ballast.devstack.binaries import Binaries
from ballast.devstack.cluster import Cluster, free_port, stop_process_groups, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.operator_process import NAMESPACE as OPERATOR_NAMESPACE
from ballast.devstack.operator_process import Operator
from ballast.shell.leader import micro_time
from tests.e2e.helm import CHART, Helm
from tests.e2e.helpers import apply, wait_status
from tests.e2e.switch import Switch
from tests.e2e.test_analysis import ERRORS, analysed, deploy_then_change
from tests.e2e.test_killswitch import kill_switch, with_fallbacks

JOB = "ballast-metrics"  # what a ServiceMonitor names the job of release `ballast`'s metrics Service
OWNER, OPERATOR_OWNER = "team-models", "team-platform"
ROLLBACK_WINDOW = 30  # seconds
SHORT_RULES = [
    f"metrics.prometheusRule.rollbackWindow={ROLLBACK_WINDOW}s",
    f"metrics.prometheusRule.operatorOwner={OPERATOR_OWNER}",
    *(f"metrics.prometheusRule.for.{name}=0s" for name in (
        "rollback", "killSwitch", "budgetExceeded", "noLeader", "prometheusUnreachable", "reconcileLag",
    )),
    "metrics.prometheusRule.for.operatorDown=5s",  # longer than one scrape that a loaded machine makes late
]  # fmt: skip


class AlertingPrometheus:
    def __init__(self, url: str, rules: list[dict[str, Any]]) -> None:
        self.url = url
        self.rules = rules

    def get(self, path: str, **params: Any) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(params)}", timeout=10) as answer:
            return json.loads(answer.read())["data"]

    def rule_health(self) -> set[str]:
        rules = [rule for group in self.get("/api/v1/rules")["groups"] for rule in group["rules"]]
        errors = [f"{rule['name']}: {rule['lastError']}" for rule in rules if rule["health"] == "err"]
        assert errors == []
        return {rule["health"] for rule in rules}

    def alerts(self, state: str = "firing") -> list[dict[str, Any]]:
        return [a for a in self.get("/api/v1/alerts")["alerts"] if a["state"] == state]

    def firing(self, name: str) -> list[dict[str, str]]:
        return [a["labels"] for a in self.alerts() if a["labels"]["alertname"] == name]

    def fired(self, name: str, since: float) -> list[dict[str, str]]:
        """Every alert `name` that has fired since then (Prometheus keeps them as ALERTS series), with its labels;
        so a short firing on a loaded machine is not missed between two polls."""
        query = f'ALERTS{{alertname="{name}", alertstate="firing"}}'
        answer = self.get("/api/v1/query_range", query=query, start=since, end=time.time(), step=1)
        return [{k: v for k, v in series["metric"].items() if k not in ("__name__", "alertstate")}
                for series in answer["result"]]  # fmt: skip

    def wait_fired(self, name: str, since: float, timeout: float) -> dict[str, str]:
        try:
            wait_until(lambda: bool(self.fired(name, since)), timeout, f"{name} to fire")
        except Exception as error:
            targets = [(t["health"], t["lastError"]) for t in self.get("/api/v1/targets")["activeTargets"]]
            raise AssertionError(f"{error}; scrape targets: {targets}") from error
        (labels,) = self.fired(name, since)
        return labels

    def wait_resolved(self, name: str, timeout: float) -> None:
        wait_until(lambda: not self.firing(name), timeout, f"{name} to resolve")


def chart_rules(helm: Helm) -> list[dict[str, Any]]:
    sets = [arg for value in ["metrics.prometheusRule.enabled=true", *SHORT_RULES] for arg in ("--set", value)]
    (rule,) = helm.template("--namespace", OPERATOR_NAMESPACE, *sets, "--show-only=templates/prometheusrule.yaml")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]  # type: ignore[index]
    return groups


@pytest.fixture(scope="module")
def alerting(
    binaries: Binaries, cluster: Cluster, operator: Operator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AlertingPrometheus]:
    folder = tmp_path_factory.mktemp("alerting-prometheus")
    groups = chart_rules(Helm(binaries, folder / "helm"))
    (folder / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    config = {
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "1s"},
        "rule_files": [str(folder / "rules.yml")],
        "scrape_configs": [
            {
                "job_name": JOB,
                "honor_labels": True,  # as the chart's ServiceMonitor: `namespace` stays the deployment's
                "static_configs": [
                    {"targets": [f"127.0.0.1:{operator.metrics_port}"], "labels": {"namespace": OPERATOR_NAMESPACE}}
                ],
            }
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (folder / "prometheus.log").open("ab") as log:
        process = subprocess.Popen(
            [str(binaries.prometheus), f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        prometheus = AlertingPrometheus(f"http://127.0.0.1:{port}", groups)
        wait_until(lambda: _answers(prometheus), 60, "the alerting Prometheus to load its rules")
        yield prometheus
    finally:
        stop_process_groups([process.pid])
        process.wait()


def _answers(prometheus: AlertingPrometheus) -> bool:
    try:
        return bool(prometheus.get("/api/v1/rules")["groups"])
    except OSError:
        return False


def take_lease(cluster: Cluster, seconds: int) -> None:
    """Another identity writes the operator's Lease: the operator stands by until it has seen it unchanged."""
    read = cluster.kubectl("get", "lease", "ballast-operator", "-n", OPERATOR_NAMESPACE, "-o", "json")
    lease = json.loads(read.stdout)
    now = micro_time(datetime.now(UTC))
    lease["spec"].update(holderIdentity="intruder", leaseDurationSeconds=seconds, renewTime=now)
    cluster.kubectl("replace", "-f", "-", stdin=json.dumps(lease))


def panel_queries(dashboard: dict[str, Any], namespace: str, name: str) -> dict[str, str]:
    """Every query of the dashboard (panels and annotations), with its variables as a user picks them."""
    values = {"$namespace": namespace, "$deployment": name, "$job": JOB, "$__rate_interval": "1m"}

    def filled(expr: str) -> str:
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        return expr

    queries = {f"{p['title']} / {t['refId']}": filled(t["expr"]) for p in dashboard["panels"] for t in p["targets"]}
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            queries[f"annotation {annotation['name']}"] = filled(annotation["expr"])
    return queries


def test_every_alert_fires_when_provoked_routed_to_its_owner_and_resolves(
    cluster: Cluster,
    data_plane: DataPlane,
    operator: Operator,
    prometheus_switch: Switch,
    alerting: AlertingPrometheus,
    namespace: str,
) -> None:
    started = time.time()
    # Every rule of the chart loaded and evaluates without error (`unknown` until its first evaluation).
    wait_until(lambda: alerting.rule_health() == {"ok"}, 15, "every rule evaluated")
    manifest = with_fallbacks(
        analysed("watched", namespace, [ERRORS], {"SIM_LATENCY": "0.02"}), [{"name": "sorry", "reject": {}}],
        {"fallback": "sorry"},
    )  # fmt: skip
    manifest["spec"]["owner"] = {"team": OWNER}
    # A budget far above use: its metrics reach the dashboard's budget panel without tripping the alert.
    manifest["spec"]["budgets"] = {"tokensPerMinute": 10**9, "window": "10s"}

    # A healthy deployment, scraped for a while: nothing pending, nothing firing.
    apply(cluster, manifest)
    wait_status(cluster, namespace, "watched", "Stable", lambda s: s.get("phase") == "Stable")
    owned = f'ballast_modeldeployment_info{{namespace="{namespace}", name="watched", owner="{OWNER}"}}'
    wait_until(lambda: bool(alerting.get("/api/v1/query", query=owned)["result"]), 30, "the owner scraped")
    # (A Prometheus that has just started has no samples yet: what fired before its first scrape resolves first.)
    wait_until(lambda: alerting.get("/api/v1/alerts")["alerts"] == [], 30, "no alert before the story starts")
    healthy_until = time.monotonic() + 10
    while time.monotonic() < healthy_until:
        assert alerting.get("/api/v1/alerts")["alerts"] == []
        time.sleep(0.5)

    # A rollback: the canary fails half its requests.
    story = time.time()
    _, load = deploy_then_change(cluster, data_plane, manifest, {"SIM_LATENCY": "0.02", "SIM_ERROR_RATE": "0.5"})
    try:
        wait_status(cluster, namespace, "watched", "RolledBack", lambda s: s.get("phase") == "RolledBack", 120)
    finally:
        load.stop()
    rollback = alerting.wait_fired("BallastRollback", story, 20)
    assert (rollback["namespace"], rollback["name"], rollback["owner"], rollback["severity"]) == (
        namespace, "watched", OWNER, "warning")  # fmt: skip

    # A kill switch: fires at once with how long it has held; deleting it resolves it.
    engaged = time.time()
    apply(cluster, kill_switch("drill", namespace, modelDeployments=["watched"]))
    switched = alerting.wait_fired("BallastKillSwitchEngaged", engaged, 20)
    assert (switched["name"], switched["owner"]) == ("watched", OWNER)
    assert alerting.firing("BallastKillSwitchEngagedLong") == []  # an hour has not passed
    cluster.kubectl("delete", "killswitch", "drill", "-n", namespace)
    alerting.wait_resolved("BallastKillSwitchEngaged", 20)
    alerting.wait_resolved("BallastRollback", ROLLBACK_WINDOW + 20)
    # A series is seen from its first sample until its staleness marker a scrape later: longer than a 1 s step.
    ended = time.time()
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())

    # Every dashboard query had data during the story, the budget panel's too.
    empty = []
    for title, expr in panel_queries(dashboard, namespace, "watched").items():
        answer = alerting.get("/api/v1/query_range", query=expr, start=started, end=ended, step=1)
        if not answer["result"]:
            empty.append(title)
    assert empty == []

    # Prometheus out of the operator's reach.
    cut = time.time()
    prometheus_switch.off()
    try:
        unreachable = alerting.wait_fired("BallastMetricsProviderUnreachable", cut, 30)
        assert (unreachable["owner"], unreachable["severity"]) == (OPERATOR_OWNER, "critical")
    finally:
        prometheus_switch.on()
    alerting.wait_resolved("BallastMetricsProviderUnreachable", 30)

    # No leader: another identity holds the Lease for 8 s; then the operator takes it back.
    taken = time.time()
    take_lease(cluster, 8)
    assert alerting.wait_fired("BallastNoLeader", taken, 20)["owner"] == OPERATOR_OWNER
    alerting.wait_resolved("BallastNoLeader", 30)

    # The operator stopped, then started again.
    stopped = time.time()
    operator.stop()
    try:
        assert alerting.wait_fired("BallastOperatorDown", stopped, 30)["owner"] == OPERATOR_OWNER
    finally:
        operator.start()
    alerting.wait_resolved("BallastOperatorDown", 20)
    # A restarted replica stands by until it has read the cluster and taken the Lease (production waits 1m).
    wait_until(lambda: alerting.get("/api/v1/alerts")["alerts"] == [], 30, "every alert resolved")
