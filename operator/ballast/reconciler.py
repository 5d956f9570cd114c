"""Observe, decide, act: the one reconcile path of a ModelDeployment, serialised per object.

Event handlers and the tick only call `notify()`; reconciles of one object never overlap, events
that arrive during a reconcile coalesce into one more, and due times kept in status drive the tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from ballast.analysis.check import run_check
from ballast.analysis.judge import error_result
from ballast.analysis.providers.base import MetricsProvider
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.revision import revision_hash, revision_inputs
from ballast.api.status import Analysis, ModelDeploymentStatus
from ballast.api.types import Condition, parse_duration
from ballast.kubeapi import (
    CONTROLLER_REVISIONS,
    DEPLOYMENTS,
    HPAS,
    MODEL_DEPLOYMENTS,
    PODS,
    SERVICES,
    ApiError,
    KubeApi,
)
from ballast.observability import metrics
from ballast.observability.events import log_decisions, post_events
from ballast.rollout.core import Event, decide
from ballast.rollout.observations import Commands, Observations, RevisionObservation
from ballast.rollout.timestamps import format_time, parse_time
from ballast.traffic.router import Backends, router_for
from ballast.workloads import render

log = logging.getLogger("ballast.reconciler")
Key = tuple[str, str]
Manifest = dict[str, Any]

PROMOTE_ANNOTATION = "ballast.dev/promote"
ABORT_ANNOTATION = "ballast.dev/abort"
PAUSE_ANNOTATION = "ballast.dev/paused"
RETRY_AFTER_ERROR = timedelta(seconds=5)


def commands_of(md: Manifest) -> Commands:
    annotations = md["metadata"].get("annotations") or {}
    return Commands(
        promote=annotations.get(PROMOTE_ANNOTATION),
        abort=annotations.get(ABORT_ANNOTATION),
        paused=annotations.get(PAUSE_ANNOTATION, "").lower() == "true",
    )


def _available(deployment: Manifest) -> bool:
    status = deployment.get("status") or {}
    fresh = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return fresh and conditions.get("Available") == "True" and status.get("readyReplicas", 0) > 0


def observe_revisions(deployments: list[Manifest], pods: list[Manifest]) -> dict[str, RevisionObservation]:
    restarts: dict[str, int] = {}
    for pod in pods:
        revision = (pod["metadata"].get("labels") or {}).get(render.REVISION_LABEL)
        counts = [c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses") or []]
        if revision:
            restarts[revision] = max(restarts.get(revision, 0), *counts, 0)
    found = {}
    for deployment in deployments:
        revision = deployment["metadata"]["labels"][render.REVISION_LABEL]
        found[revision] = RevisionObservation(
            exists=True,
            available=_available(deployment),
            ready_replicas=int((deployment.get("status") or {}).get("readyReplicas", 0)),
            restarts=restarts.get(revision, 0),
        )
    return found


def _judged(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> bool:
    """A canary is under contract checks from its shadow phase or first step until it leaves."""
    active = status.current_step is not None or status.mirror_revision is not None
    return (
        bool(spec.contract.objectives)
        and status.canary_revision is not None
        and active
        and status.phase in ("Progressing", "Promoting", "Paused")
    )


def status_patch(before: ModelDeploymentStatus, after: ModelDeploymentStatus) -> Manifest:
    """A merge patch from `before` to `after`: explicit nulls remove fields that became empty."""
    new = after.model_dump(by_alias=True, exclude_none=True, mode="json")
    old = before.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {**{key: None for key in old if key not in new}, **new}


class Reconciler:
    def __init__(
        self,
        api: KubeApi,
        provider: MetricsProvider | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.provider = provider
        self.clock = clock
        # When each canary was last checked: kept in memory, so checks never rewrite status by themselves.
        self.last_check: dict[Key, datetime] = {}
        self.locks: dict[Key, asyncio.Lock] = {}
        self.pending: set[Key] = set()
        self.due: dict[Key, datetime] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------------------ scheduling

    def notify(self, namespace: str, name: str) -> None:
        """Ask for a reconcile; coalesces with one already waiting."""
        key = (namespace, name)
        if key in self.pending:
            return
        self.pending.add(key)
        task = asyncio.get_running_loop().create_task(self._run(key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def forget(self, namespace: str, name: str) -> None:
        self.due.pop((namespace, name), None)
        metrics.forget(namespace, name)

    async def tick_forever(self, period: float = 1.0) -> None:
        while True:
            await asyncio.sleep(period)
            now = self.clock()
            for key, due in list(self.due.items()):
                if due <= now:
                    self.due.pop(key, None)
                    self.notify(*key)

    async def _run(self, key: Key) -> None:
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            self.pending.discard(key)
            started = time.monotonic()
            try:
                await self.reconcile(*key)
            except ApiError as error:
                if error.status == 409:  # someone wrote in between: decide again on fresh state
                    self.notify(*key)
                else:
                    self._failed(key, error)
            except Exception as error:  # a failed reconcile is retried, never kills the operator
                self._failed(key, error)
            finally:
                metrics.reconcile_seconds.observe(time.monotonic() - started)

    def _failed(self, key: Key, error: Exception) -> None:
        log.exception("reconcile of %s/%s failed; retrying", *key, exc_info=error)
        metrics.reconcile_errors.labels(*key).inc()
        self.due[key] = self.clock() + RETRY_AFTER_ERROR

    # -------------------------------------------------------------------------- one reconcile

    async def reconcile(self, namespace: str, name: str) -> None:
        md = await self.api.get(MODEL_DEPLOYMENTS, namespace, name)
        if md is None or md["metadata"].get("deletionTimestamp"):
            self.forget(namespace, name)
            return  # children go with it: ownerReferences, no finalizer
        status = ModelDeploymentStatus.model_validate(md.get("status") or {})
        try:
            spec = ModelDeploymentSpec.model_validate(md["spec"])
        except ValidationError as error:
            await self._report_invalid(md, status, error)
            return
        selector = f"{render.DEPLOYMENT_LABEL}={name}"
        deployments, pods, revisions = await asyncio.gather(
            self.api.list_all(DEPLOYMENTS, namespace, selector),
            self.api.list_all(PODS, namespace, selector),
            self.api.list_all(CONTROLLER_REVISIONS, namespace, selector),
        )
        desired = revision_hash(md["spec"])
        now = self.clock()
        analysis = await self._check_if_due((namespace, name), spec, status, now)
        observations = Observations(observe_revisions(deployments, pods), commands_of(md), analysis)
        decision = decide(spec, desired, md["metadata"].get("generation", 1), status, observations, now)

        if decision.status != status:
            md = await self.api.patch_status(
                MODEL_DEPLOYMENTS, namespace, name, status_patch(status, decision.status),
                md["metadata"]["resourceVersion"],
            )  # fmt: skip
        await post_events(self.api, md, decision.events, now)
        log_decisions(md, decision.history)
        for entry in decision.history:
            metrics.decisions.labels(namespace, name, entry.action).inc()
        weights = decision.status.weights
        metrics.record_state(namespace, name, decision.status.phase, weights.stable, weights.canary, weights.fallback)

        templates = {r["metadata"]["labels"][render.REVISION_LABEL]: r["data"] for r in revisions}
        await self._act(md, spec, decision.status, desired, templates, deployments)
        due = [parse_time(decision.status.next_check_at)] if decision.status.next_check_at else []
        if _judged(spec, decision.status):
            last = self.last_check.get((namespace, name), now)
            due.append(last + parse_duration(spec.rollout.interval))
        if due:
            self.due[(namespace, name)] = min(due)
        else:
            self.due.pop((namespace, name), None)

    async def _check_if_due(
        self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime
    ) -> Analysis | None:
        """A contract check of the canary, at most once per rollout.interval."""
        if not _judged(spec, status):
            self.last_check.pop(key, None)
            return None
        last = self.last_check.get(key)
        if last is not None and now - last < parse_duration(spec.rollout.interval):
            return None
        self.last_check[key] = now
        canary = status.canary_revision
        assert canary is not None
        if self.provider is None:
            results = [error_result(o, "no metrics provider: run the operator with --prometheus-url") for o in
                       spec.contract.objectives]  # fmt: skip
            return Analysis(at=format_time(now), revision=canary, verdict="Error", objectives=results)
        services = {r: render.workload_name(key[1], r) for r in (canary, status.stable_revision) if r}
        return await run_check(self.provider, spec, key[0], key[1], canary, status.stable_revision, services, now)

    async def _act(
        self,
        md: Manifest,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        desired: str,
        templates: dict[str, Any],
        deployments: list[Manifest],
    ) -> None:
        """Make the children match the status: workloads per revision, garbage removed, then traffic."""
        namespace, name = md["metadata"]["namespace"], md["metadata"]["name"]
        if desired not in templates:
            record = render.controller_revision(md, desired, revision_inputs(md["spec"]), len(templates) + 1)
            await self.api.apply(CONTROLLER_REVISIONS, record)
            templates[desired] = record["data"]
        kept = {r.name for r in status.revisions}
        for revision in status.revisions:
            inputs = templates.get(revision.name)
            if inputs is None:
                log.warning(
                    "revision %s of %s/%s has no recorded template; cannot render it", revision.name, namespace, name
                )
                continue
            template = render.pod_template(inputs, spec)
            await self.api.apply(
                DEPLOYMENTS, render.deployment(md, spec, revision.name, revision.role, revision.replicas, template)
            )
            await self.api.apply(SERVICES, render.service(md, spec, revision.name, revision.role))
            scaler = render.autoscaler(md, spec, revision.name)
            if scaler is not None and revision.role in ("stable", "canary"):
                await self.api.apply(HPAS, scaler)
            elif spec.model.autoscaling is not None:
                await self.api.delete(HPAS, namespace, render.workload_name(name, revision.name))
        for deployment in deployments:
            revision_name = deployment["metadata"]["labels"][render.REVISION_LABEL]
            if revision_name not in kept:
                workload = render.workload_name(name, revision_name)
                for resource in (DEPLOYMENTS, SERVICES, HPAS, CONTROLLER_REVISIONS):
                    await self.api.delete(resource, namespace, workload)
        await self._route(md, spec, status)

    async def _route(self, md: Manifest, spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> None:
        if status.stable_revision is None:
            return
        name = md["metadata"]["name"]
        canary = next(
            (r.name for r in status.revisions if r.name == status.canary_revision and r.role == "canary"), None
        )
        backends = Backends(
            stable=render.workload_name(name, status.stable_revision),
            canary=render.workload_name(name, canary) if canary else None,
            weights=status.weights,
            mirror=render.workload_name(name, status.mirror_revision) if status.mirror_revision else None,
        )
        router = router_for(spec.traffic.router)
        await router.reconcile(self.api, md, spec, backends)
        # A router switch leaves the other router's objects behind: remove them.
        other = router_for("service" if spec.traffic.router == "gateway-api" else "gateway-api")
        if spec.traffic.route_ref is None:
            await other.finalize(self.api, md, spec)

    async def _report_invalid(self, md: Manifest, status: ModelDeploymentStatus, error: ValidationError) -> None:
        """A spec the models refuse (for example after an operator downgrade) never touches traffic."""
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())[:1000]
        if status.message == f"invalid spec: {message}":
            return
        after = status.model_copy(deep=True)
        after.phase = "Failed"  # traffic stays as it is; the next valid spec resumes from status
        after.message = f"invalid spec: {message}"
        ready = [c for c in after.conditions if c.type != "Ready"]
        after.conditions = [
            Condition(type="Ready", status="False", reason="InvalidSpec", message=message,
                      last_transition_time=format_time(self.clock())),
            *ready,
        ]  # fmt: skip
        metadata = md["metadata"]
        await self.api.patch_status(
            MODEL_DEPLOYMENTS, metadata["namespace"], metadata["name"], status_patch(status, after),
            metadata["resourceVersion"],
        )  # fmt: skip
        await post_events(self.api, md, (Event("Warning", "InvalidSpec", message),), self.clock())
