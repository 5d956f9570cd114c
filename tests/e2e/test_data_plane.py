"""Real requests through a real Gateway to simulated model servers, scraped by a real Prometheus."""

from __future__ import annotations

import json
import math
import urllib.request
from typing import Any

from ballast.devstack import loadgen
from ballast.devstack.cluster import Cluster, wait_until
from ballast.devstack.dataplane import DataPlane
from tests import claims
from tests.e2e.manifests import deployment, http_route, revision


def _route_live(cluster: Cluster, namespace: str, name: str) -> bool:
    route = json.loads(cluster.kubectl("get", "httproute", name, "-n", namespace, "-o", "json").stdout)
    for parent in route.get("status", {}).get("parents", []):
        status = {c["type"]: c["status"] for c in parent.get("conditions", [])}
        if status.get("Accepted") == "True" and status.get("ResolvedRefs") == "True":
            return True
    return False


def _answers(data_plane: DataPlane, host: str) -> bool:
    report = loadgen.run(f"{data_plane.gateway_url}/v1/chat/completions", total=1, rate=1, host=host, max_seconds=5)
    return report.by_status.get(200) == 1


def _deploy_split(cluster: Cluster, data_plane: DataPlane, namespace: str, weights: dict[str, int]) -> str:
    host = f"{namespace}.models.test"
    for name in weights:
        cluster.apply(revision(name, namespace, model="sim-model", replicas=2 if name == "stable" else 1))
    for name in weights:
        cluster.kubectl("wait", f"deployment/{name}", "-n", namespace, "--for=condition=Available", "--timeout=60s")
        # kwok reports pods Ready before their simulators listen: wait until the Service really answers.
        cluster_ip = cluster.kubectl("get", "service", name, "-n", namespace, "-o", "jsonpath={.spec.clusterIP}").stdout
        wait_until(lambda cluster_ip=cluster_ip: _health(cluster_ip), 30, f"Service {name} to answer")
    cluster.apply([http_route("split", namespace, host, weights)])
    wait_until(lambda: _route_live(cluster, namespace, "split"), 30, "the HTTPRoute to be Accepted and ResolvedRefs")
    wait_until(lambda: _answers(data_plane, host), 30, "the Gateway to serve the route")
    return host


def test_a_90_10_route_splits_real_requests_within_binomial_tolerance(
    cluster: Cluster, data_plane: DataPlane, namespace: str
) -> None:
    host = _deploy_split(cluster, data_plane, namespace, {"stable": 90, "canary": 10})
    total = 1000
    report = loadgen.run(
        f"{data_plane.gateway_url}/v1/chat/completions",
        total=total,
        rate=250,
        concurrency=16,
        host=host,
        max_seconds=60,
    )
    print(report.summary())
    assert report.by_status == {200: total}, report.summary()
    canary = sum(n for backend, n in report.by_backend.items() if backend.startswith("canary-"))
    # Binomial(n=1000, p=0.1): mean 100, sd 9.5; four standard deviations keeps flakes below 1e-4.
    sd = math.sqrt(total * 0.1 * 0.9)
    assert abs(canary - 100) <= 4 * sd, report.summary()
    # Requests reach every pod of the stable revision: the Gateway balances over EndpointSlices.
    assert len([b for b in report.by_backend if b.startswith("stable-")]) == 2


def _scraped(data_plane: DataPlane, namespace: str) -> dict[str, float]:
    result = data_plane.query(f'sum by (revision) (vllm:e2e_request_latency_seconds_count{{namespace="{namespace}"}})')
    return {sample["metric"].get("revision", ""): float(sample["value"][1]) for sample in result}


def test_prometheus_finds_the_pods_and_labels_them_by_revision(
    cluster: Cluster, data_plane: DataPlane, namespace: str
) -> None:
    host = _deploy_split(cluster, data_plane, namespace, {"stable": 50, "canary": 50})
    report = loadgen.run(
        f"{data_plane.gateway_url}/v1/chat/completions", total=200, rate=200, concurrency=8, host=host, max_seconds=30
    )
    served = {
        name: float(sum(n for backend, n in report.by_backend.items() if backend.startswith(f"{name}-")))
        for name in ("stable", "canary")
    }
    # The warm-up requests of _deploy_split count too: Prometheus must see at least what we sent.
    wait_until(
        lambda: all(_scraped(data_plane, namespace).get(rev, 0) >= n for rev, n in served.items()),
        30,
        f"Prometheus to scrape {served} by revision",
    )
    up = data_plane.query(f'up{{namespace="{namespace}"}}')
    assert {s["metric"]["revision"] for s in up} == {"stable", "canary"}
    assert {s["metric"]["model"] for s in up} == {"sim-model"}
    assert all(s["value"][1] == "1" for s in up)


def _pod(cluster: Cluster, namespace: str, app: str) -> dict[str, Any]:
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", f"app={app}", "-o", "json").stdout)["items"]
    return pods[0] if pods else {}


def test_a_crashing_simulator_is_a_not_ready_pod_with_growing_restarts(
    cluster: Cluster, data_plane: DataPlane, namespace: str
) -> None:
    cluster.apply([deployment("crashy", namespace, env={"SIM_EXIT_AFTER": "500ms"})])

    def restarts() -> int:
        statuses = _pod(cluster, namespace, "crashy").get("status", {}).get("containerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0))

    wait_until(lambda: restarts() >= 2, 60, "the crashing simulator's restart count to reach 2")
    pod = _pod(cluster, namespace, "crashy")
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 1
    # Between its runs (backing off, up to 10 s) the pod is seen down, and then it must not be Ready.
    wait_until(lambda: claims.not_ready_while_down(_pod(cluster, namespace, "crashy")), 30, "the pod seen down")


def _health(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}:8000/health", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_a_pod_change_is_a_behaviour_change_and_deleting_the_pod_stops_its_simulator(
    cluster: Cluster, data_plane: DataPlane, namespace: str
) -> None:
    cluster.apply([deployment("server", namespace, env={"SIM_ERROR_RATE": "1"})])
    cluster.kubectl("wait", "deployment/server", "-n", namespace, "--for=condition=Available", "--timeout=60s")
    address = _pod(cluster, namespace, "server")["status"]["podIP"]
    wait_until(lambda: _health(address), 30, f"the simulator on {address}:8000")
    failing = loadgen.run(f"http://{address}:8000/v1/completions", total=5, rate=50, max_seconds=10)
    assert failing.by_status == {500: 5}
    cluster.kubectl("scale", "deployment/server", "-n", namespace, "--replicas=0")
    wait_until(lambda: not _health(address), 30, f"the simulator on {address}:8000 to stop")


def test_every_preset_query_is_valid_promql_and_answers_per_revision(
    cluster: Cluster, data_plane: DataPlane, namespace: str
) -> None:
    """Each runtime's simulator flavour, real traffic, real Prometheus: every preset parses and answers."""
    from ballast.analysis.queries import Scope, preset_query, requests_query, successes_query, token_queries
    from ballast.api.presets import PRESETS_BY_RUNTIME, TOKEN_PRESETS

    flavours = {"vllm": "vllm", "tgi": "tgi", "triton": "triton", "openai-compatible": "openai"}
    for flavour in flavours.values():
        cluster.apply(revision(f"r-{flavour}", namespace, model="sim-model", replicas=1, env={"SIM_RUNTIME": flavour}))
    for flavour in flavours.values():
        cluster.kubectl(
            "wait", f"deployment/r-{flavour}", "-n", namespace, "--for=condition=Available", "--timeout=60s"
        )
        address = _pod(cluster, namespace, f"r-{flavour}")["status"]["podIP"]
        wait_until(lambda address=address: _health(address), 30, f"the {flavour} simulator")
        loadgen.run(f"http://{address}:8000/v1/completions", total=30, rate=100, max_seconds=10)
    for runtime, flavour in flavours.items():
        scope = Scope(namespace, "any", (f"r-{flavour}",), "1m")

        def answers(promql: str, flavour: str = flavour) -> bool:
            return [s["metric"].get("revision") for s in data_plane.query(promql)] == [f"r-{flavour}"]

        wait_until(
            lambda scope=scope, runtime=runtime: answers(requests_query(runtime, scope)), 30, f"{runtime} scraped"
        )
        queried = [p for p in PRESETS_BY_RUNTIME[runtime] if p not in TOKEN_PRESETS]  # type: ignore[index]
        queries = [preset_query(runtime, preset, scope) for preset in queried]  # type: ignore[arg-type]
        # The usage behind budgets and cost-per-request: token counters where the runtime has them, and successes.
        queries += [*(token_queries(runtime, scope) or ()), *filter(None, [successes_query(runtime, scope)])]  # type: ignore[arg-type]
        for query in queries:
            wait_until(lambda query=query: answers(query), 15, f"{runtime}: {query}")
