"""A kill switch goes ahead of routine work: its route is written while 50 other deployments are still reconciling.

An ordering check, not a timing one: one watch of the namespace's HTTPRoutes sees every change in the
order the API server stored it, and the switched route must change before the last of the 50 new
deployments has its route.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from kubernetes import client, config, watch

from ballast.devstack.cluster import Cluster, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.operator_process import Operator
from tests.e2e.helpers import model_deployment, wait_status
from tests.e2e.test_killswitch import kill_switch, rules_service, with_fallbacks

CROWD = 50


class RouteLog:
    """Every HTTPRoute event of one namespace, in the order the API server sent them: (route, its sole backend)."""

    def __init__(self, custom: Any, namespace: str) -> None:
        self.custom, self.namespace = custom, namespace
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.version = ""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():  # a watch that times out goes on from the last version it saw
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                self.custom.list_namespaced_custom_object, "gateway.networking.k8s.io", "v1", self.namespace,
                "httproutes", timeout_seconds=20, **({"resource_version": self.version} if self.version else {}),
            )  # fmt: skip
            for event in stream:
                route = event["object"]
                self.version = route["metadata"]["resourceVersion"]
                split: dict[str, Any] = next((r for r in route["spec"]["rules"] if r.get("name") == "split"), {})
                refs = split.get("backendRefs", [])
                with self.lock:
                    self.events.append((route["metadata"]["name"], refs[0]["name"] if len(refs) == 1 else ""))

    def snapshot(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.events)

    def stop(self) -> None:
        self.stopping.set()


def crowd_member(name: str, namespace: str) -> dict[str, Any]:
    # No pods: the reconciles are what is measured, not fifty simulators on a shared machine.
    return model_deployment(name, namespace, replicas=0, steps=[{"weight": 100}])


def stable(cluster: Cluster, namespace: str) -> set[str]:
    listed = json.loads(cluster.kubectl("get", "mdep", "-n", namespace, "-o", "json").stdout)
    return {md["metadata"]["name"] for md in listed["items"] if (md.get("status") or {}).get("phase") == "Stable"}


def test_a_switch_is_written_while_50_other_deployments_are_reconciling(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    rules_service(cluster, namespace)
    fallbacks = [{"name": "rules", "service": {"name": "rules", "port": 8000}}]
    cluster.apply([with_fallbacks(model_deployment("bot", namespace, replicas=0), fallbacks, {"fallback": "rules"})])
    wait_status(cluster, namespace, "bot", "Stable", lambda s: s.get("phase") == "Stable")
    custom = client.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig)))  # type: ignore[no-untyped-call]
    routes = RouteLog(custom, namespace)
    crowd = [f"crowd-{n:02d}" for n in range(CROWD)]
    try:
        cluster.apply([crowd_member(name, namespace) for name in crowd])
        switch = kill_switch("incident", namespace, modelDeployments=["bot"])
        custom.create_namespaced_custom_object("ballast.dev", "v1alpha1", namespace, "killswitches", switch)
        wait_until(lambda: ("bot", "rules") in routes.snapshot(), 120, "the switched route to carry the fallback")
        wait_until(lambda: {n for n, _ in routes.snapshot()} >= set(crowd), 300, f"all {CROWD} routes")
        # Every reconcile of the crowd went through too: the switch lane starved none of them.
        wait_until(lambda: stable(cluster, namespace) >= set(crowd), 300, f"all {CROWD} deployments Stable")
    finally:
        routes.stop()
    events = routes.snapshot()
    switched = events.index(("bot", "rules"))
    routed_before = {name for name, _ in events[:switched] if name in crowd}
    assert len(routed_before) < CROWD, f"the switch waited for all {CROWD} deployments' routes"
    print(f"{len(routed_before)} of {CROWD} routes were written before the switched one")
