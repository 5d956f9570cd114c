"""The kill-switch path in the shell: a switch event reconciles every ModelDeployment it selects, at once.

The dispatcher also keeps each switch's status (what it holds, which deployment uses which fallback,
which cannot be switched), computed from memory and written only when it changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ballast.api.base import merge_patch
from ballast.api.killswitch import KillSwitchStatus
from ballast.api.timestamps import format_time
from ballast.kube.client import ApiError, KubeApi
from ballast.kube.resources import CLUSTER_KILL_SWITCHES, KILL_SWITCHES
from ballast.observability.events import post_events
from ballast.rollout.switch_status import switch_events, switch_status
from ballast.shell.cluster_view import ClusterView, switch_of
from ballast.shell.per_key_runner import PerKeyRunner
from ballast.shell.reconciler import Reconciler

log = logging.getLogger("ballast.switches")
SwitchKey = tuple[str, str, str]  # kind, namespace ('' for cluster-scoped), name
Key = tuple[str, str]


def switch_key(body: Mapping[str, Any]) -> SwitchKey:
    metadata = body["metadata"]
    return (body["kind"], metadata.get("namespace") or "", metadata["name"])


class KillSwitchDispatcher:
    def __init__(
        self,
        api: KubeApi,
        view: ClusterView,
        reconciler: Reconciler,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.view = view
        self.reconciler = reconciler
        self.clock = clock
        self.runner: PerKeyRunner[SwitchKey] = PerKeyRunner(self._write, self._failed)
        self.selected: dict[SwitchKey, set[Key]] = {}
        self.generations: dict[SwitchKey, int] = {}

    def switch_changed(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Act on the watch event: every deployment selected before or now reconciles right away."""
        key = switch_key(body)
        before = self.selected.get(key, set())
        if event_type == "DELETED":
            self.selected.pop(key, None)
            self.generations.pop(key, None)
            now: set[Key] = set()
        else:
            try:
                switch = switch_of(body)
            except ValidationError:
                return  # the index refused it too, and said why; it selects nothing
            now = {(d.namespace, d.name) for d in self.view.selected_by(switch)}
            self.selected[key] = now
            generation = int(body["metadata"].get("generation", 0))
            if self.generations.get(key) == generation and before == now:
                return  # our own status write, or a resync: nothing to switch
            self.generations[key] = generation
        for namespace, name in before | now:
            self.reconciler.switch(namespace, name)
        if event_type != "DELETED":
            self.runner.notify(key)  # after the reconciles: the switch's own status is paperwork, routes go first

    def deployment_changed(self, namespace: str, name: str) -> None:
        """A ModelDeployment's labels or kill-switch state changed: refresh the switches that select it."""
        entry = self.view.deployment(namespace, name)
        labels = self.view.namespace_labels(namespace)
        for switch in self.view.switches_for(namespace):
            selected = self.selected.setdefault(switch.key, set())
            selects = entry is not None and switch.selects(namespace, name, entry.labels, labels)
            if selects or (namespace, name) in selected:
                (selected.add if selects else selected.discard)((namespace, name))
                self.runner.notify(switch.key)

    def namespace_changed(self, namespace: str) -> None:
        """Namespace labels decide what a ClusterKillSwitch's namespaceSelector selects."""
        if not self.view.has_cluster_switches():
            return
        for entry in self.view.deployments_in(namespace):
            self.reconciler.switch(namespace, entry.name)
            self.deployment_changed(namespace, entry.name)

    async def _write(self, key: SwitchKey) -> None:
        kind, namespace, name = key
        switch = self.view.switch(key)
        if switch is None:
            return
        resource = KILL_SWITCHES if kind == "KillSwitch" else CLUSTER_KILL_SWITCHES
        body = await self.api.get(resource, namespace or None, name)
        if body is None:
            return
        before = KillSwitchStatus.model_validate(body.get("status") or {})
        selected = self.view.selected_by(switch)
        now = self.clock()
        after = switch_status(switch, body["metadata"].get("generation"), before, selected, format_time(now))
        if after == before:  # transition times are kept while nothing changes: no write
            return
        patch = merge_patch(before, after)
        await self.api.patch_status(resource, namespace or None, name, patch, body["metadata"]["resourceVersion"])
        # After the write, so a conflict (retried on fresh state) never posts the same warning twice.
        await post_events(self.api, body, tuple(switch_events(before, selected)), now)

    def _failed(self, key: SwitchKey, error: Exception) -> None:
        if isinstance(error, ApiError) and error.status == 409:
            self.runner.notify(key)  # written in between: compute again on fresh state
            return
        log.warning("status of %s %s/%s not written (%s); retrying on the next event", *key, error)
