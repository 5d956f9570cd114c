"""`kill` and `unkill`: a KillSwitch object per request, so `kubectl get ks`, Argo CD and the audit log see
who switched what and why. `unkill` deletes only the switches this plugin created for that deployment."""

from __future__ import annotations

from typing import Any

from ballast.kube.cli_client import Connection
from ballast.kube.resources import KILL_SWITCHES

Object = dict[str, Any]
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubectl-ballast"
TARGET_LABEL = "ballast.dev/target"


def ours(target: str) -> str:
    """The label selector of the switches this plugin created for `target`."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{TARGET_LABEL}={target}"


def kill_switch(namespace: str, target: str, reason: str, requested_by: str) -> Object:
    return {
        "apiVersion": f"{KILL_SWITCHES.group}/{KILL_SWITCHES.version}",
        "kind": "KillSwitch",
        "metadata": {
            "generateName": f"{target}-kill-",
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, TARGET_LABEL: target},
        },
        "spec": {"modelDeployments": [target], "reason": reason, "requestedBy": requested_by},
    }


def create(connection: Connection, target: str, reason: str) -> Object:
    body = kill_switch(connection.namespace, target, reason, connection.username())
    created: Object = connection.request("POST", KILL_SWITCHES.path(connection.namespace), body)
    return created


def delete_ours(connection: Connection, target: str) -> list[str]:
    """Delete this plugin's switches for `target`; their names."""
    names = [s["metadata"]["name"] for s in connection.list(KILL_SWITCHES, connection.namespace, ours(target))]
    for name in names:
        connection.request("DELETE", KILL_SWITCHES.path(connection.namespace, name))
    return names


def others_holding(md: Object, deleted: list[str]) -> list[str]:
    """The switches other than `deleted` that the operator last saw selecting `md`, as `Kind namespace/name`."""
    sources = ((md.get("status") or {}).get("killSwitch") or {}).get("sources") or []
    namespace = md["metadata"]["namespace"]
    held = []
    for source in sources:
        if source.get("kind") == "KillSwitch" and source.get("namespace", namespace) == namespace:
            if source.get("name") in deleted:
                continue
            held.append(f"KillSwitch {namespace}/{source.get('name')} ({source.get('reason', '')})")
        else:
            held.append(f"{source.get('kind')} {source.get('name')} ({source.get('reason', '')})")
    return held
