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


OWNER_TEAM_ANNOTATION = "ballast.dev/owner-team"
OWNER_ESCALATION_ANNOTATION = "ballast.dev/owner-escalation"
MESSAGE_LIMIT = 1024


def owner_of(obj: dict[str, Any]) -> dict[str, str]:
    """spec.owner of a ModelDeployment as Event annotations ({} when none is declared)."""
    owner = (obj.get("spec") or {}).get("owner") or {} if obj.get("kind") == "ModelDeployment" else {}
    found = {OWNER_TEAM_ANNOTATION: owner.get("team"), OWNER_ESCALATION_ANNOTATION: owner.get("escalation")}
    return {key: str(value) for key, value in found.items() if value}


def _message(event: Event, owner: dict[str, str]) -> str:
    """The Event's sentence; with an owner, who answers for it, kept whole when the sentence is cut."""
    if not owner:
        return event.message[:MESSAGE_LIMIT]
    whom = owner[OWNER_TEAM_ANNOTATION]
    if OWNER_ESCALATION_ANNOTATION in owner:
        whom += f", escalation {owner[OWNER_ESCALATION_ANNOTATION]}"
    suffix = f" [owner {whom}]"
    return event.message[: max(0, MESSAGE_LIMIT - len(suffix))] + suffix


def event_manifest(obj: dict[str, Any], event: Event, now: datetime) -> dict[str, Any]:
    """An Event about `obj` (a ModelDeployment or a switch; cluster-scoped objects have no namespace). A
    ModelDeployment's names its owner (spec.owner) in the message and in annotations alert routers can read."""
    metadata = obj["metadata"]
    owner = owner_of(obj)
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
        "metadata": {
            "generateName": f"{metadata['name']}.",
            "namespace": _events_namespace(obj),
            **({"annotations": owner} if owner else {}),
        },
        "involvedObject": involved,
        "reason": event.reason,
        "message": _message(event, owner),
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
