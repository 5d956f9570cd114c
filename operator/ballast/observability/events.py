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


def event_manifest(md: dict[str, Any], event: Event, now: datetime) -> dict[str, Any]:
    metadata = md["metadata"]
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
        "involvedObject": {
            "apiVersion": md["apiVersion"],
            "kind": md["kind"],
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
            "resourceVersion": metadata.get("resourceVersion", ""),
        },
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


async def post_events(api: KubeApi, md: dict[str, Any], events: tuple[Event, ...], now: datetime) -> None:
    for event in events:
        await api.create(EVENTS, md["metadata"]["namespace"], event_manifest(md, event, now))


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
