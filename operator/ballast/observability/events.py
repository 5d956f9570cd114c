"""Kubernetes Events and one structured log line per decision."""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

from ballast.api.status import HistoryEntry
from ballast.kube.client import KubeApi
from ballast.kube.resources import EVENTS
from ballast.rollout.core import Event

log = logging.getLogger("ballast.decisions")
COMPONENT = "ballast-operator"
INSTANCE = os.environ.get("POD_NAME") or socket.gethostname()


# Events about a cluster-scoped object (a ClusterKillSwitch) live here, as kubectl describe expects.
CLUSTER_EVENTS_NAMESPACE = "default"


def _events_namespace(obj: dict[str, Any]) -> str:
    namespace: str = obj["metadata"].get("namespace") or CLUSTER_EVENTS_NAMESPACE
    return namespace


def event_manifest(obj: dict[str, Any], event: Event, now: datetime) -> dict[str, Any]:
    """An Event about `obj` (a ModelDeployment or a switch; cluster-scoped objects have no namespace)."""
    metadata = obj["metadata"]
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": metadata["name"],
        "uid": metadata["uid"],
        "resourceVersion": metadata.get("resourceVersion", ""),
    }
    if metadata.get("namespace"):
        involved["namespace"] = metadata["namespace"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": _events_namespace(obj)},
        "involvedObject": involved,
        "reason": event.reason,
        "message": event.message[:1024],
        "type": event.type,
        "source": {"component": COMPONENT},
        "reportingComponent": f"ballast.dev/{COMPONENT}",
        "reportingInstance": INSTANCE,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


async def post_events(api: KubeApi, obj: dict[str, Any], events: tuple[Event, ...], now: datetime) -> None:
    for event in events:
        await api.create(EVENTS, _events_namespace(obj), event_manifest(obj, event, now))


def log_decisions(md: dict[str, Any], entries: tuple[HistoryEntry, ...]) -> None:
    for entry in entries:
        log.info(
            json.dumps(
                {
                    "resource": f"{md['metadata']['namespace']}/{md['metadata']['name']}",
                    "decision": entry.id,
                    "action": entry.action,
                    "revision": entry.revision,
                    "step": entry.step,
                    "phase": entry.phase,
                    "reason": entry.reason,
                    "message": entry.message,
                    "values": entry.values,
                },
                sort_keys=True,
            )
        )
