"""Observe, decide, act: the one reconcile path of a ModelDeployment, serialised per object.

Event handlers and the tick only call `notify()`; reconciles of one object never overlap, events
that arrive during a reconcile coalesce into one more, and due times kept in status drive the tick.
Contract checks run beside the reconcile, never inside it, so a slow Prometheus never delays a
kill switch: a finished check asks for a reconcile, which reads its verdict.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError

from ballast.analysis.check import run_check
from ballast.analysis.judge import error_result
from ballast.analysis.providers.base import MetricsProvider
from ballast.api.base import merge_patch
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.revision import revision_hash, revision_inputs
from ballast.api.status import Analysis, ModelDeploymentStatus
from ballast.api.types import Condition, parse_duration
from ballast.children import Children, ChildSet
from ballast.keyed import KeyedRunner
from ballast.kubeapi import CONTROLLER_REVISIONS, DEPLOYMENTS, HPAS, MODEL_DEPLOYMENTS, SERVICES, ApiError, KubeApi
from ballast.observability import metrics
from ballast.observability.events import log_decisions, post_events
from ballast.observe import commands_of, fallback_service, observe_fallbacks, observe_revisions, revision_of
from ballast.rollout.core import Event, decide
from ballast.rollout.observations import Observations
from ballast.rollout.timestamps import format_time, parse_time
from ballast.switchboard import Switchboard
from ballast.traffic.backends import backends_for
from ballast.traffic.router import router_for
from ballast.workloads import render
from ballast.workloads.responder import DEFAULT_IMAGE, responder_deployment, responder_name, responder_service

log = logging.getLogger("ballast.reconciler")
Key = tuple[str, str]
Manifest = dict[str, Any]

RETRY_AFTER_ERROR = timedelta(seconds=5)


def _judged(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> bool:
    """A canary is under contract checks from its shadow phase or first step until it leaves (or a switch holds it)."""
    active = status.current_step is not None or status.mirror_revision is not None
    return (
        bool(spec.contract.objectives)
        and status.canary_revision is not None
        and active
        and status.phase in ("Progressing", "Promoting", "Paused")
        and not status.kill_switch.sources
    )


def _may_mirror(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, switched: bool) -> bool:
    """Whether this decision may write a mirror (a canary before its first step with a shadow phase, or a
    switch capturing traffic): only then are the Gateways' features read."""
    shadow = spec.rollout.shadow is not None and status.canary_revision is not None and status.current_step is None
    return shadow or (switched and bool(spec.kill_switch and spec.kill_switch.capture_traffic))


class Reconciler:
    def __init__(
        self,
        api: KubeApi,
        provider: MetricsProvider | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        switchboard: Switchboard,
        children: Children,
        responder_image: str = DEFAULT_IMAGE,
    ) -> None:
        self.api = api
        self.children = children
        self.provider = provider
        self.clock = clock
        self.switchboard = switchboard
        self.responder_image = responder_image
        self.runner: KeyedRunner[Key] = KeyedRunner(self._reconcile_timed, self._failed)
        # When each canary was last checked, and finished checks not yet read: memory only, so checks
        # never rewrite status by themselves (a restart simply checks again).
        self.last_check: dict[Key, datetime] = {}
        self.checks: dict[Key, asyncio.Task[None]] = {}
        self.verdicts: dict[Key, Analysis] = {}
        self.due: dict[Key, datetime] = {}
        self.written: dict[Key, str] = {}  # the resourceVersion of the last status this reconciler wrote
        # Which deployments route to a Service or read grants of a namespace: their events reconcile them.
        self.fallback_services: dict[Key, set[Key]] = {}
        self.grant_namespaces: dict[str, set[Key]] = {}

    # ------------------------------------------------------------------------------ scheduling

    def notify(self, namespace: str, name: str) -> None:
        """Ask for a reconcile; coalesces with one already waiting."""
        self.runner.notify((namespace, name))

    def changed(self, namespace: str, name: str, resource_version: str) -> None:
        """A watch event of the ModelDeployment: reconcile, unless it is the echo of this reconciler's own write."""
        if self.written.get((namespace, name)) != resource_version:
            self.notify(namespace, name)

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self.due.pop(key, None)
        self.last_check.pop(key, None)
        self.verdicts.pop(key, None)
        self.written.pop(key, None)
        self._watch_references(key, set(), set())
        self.runner.forget(key)
        metrics.forget(namespace, name)

    async def stop(self) -> None:
        for check in list(self.checks.values()):
            check.cancel()
        await self.runner.stop()

    def service_changed(self, namespace: str, name: str) -> None:
        for key in list(self.fallback_services.get((namespace, name), ())):
            self.notify(*key)

    def grants_changed(self, namespace: str) -> None:
        for key in list(self.grant_namespaces.get(namespace, ())):
            self.notify(*key)

    async def tick_forever(self, period: float = 1.0) -> None:
        while True:
            await asyncio.sleep(period)
            now = self.clock()
            for key, due in list(self.due.items()):
                if due <= now:
                    self.due.pop(key, None)
                    self.notify(*key)

    async def _reconcile_timed(self, key: Key) -> None:
        started = time.monotonic()
        try:
            await self.reconcile(*key)
        except ApiError as error:
            if error.namespace_terminating:
                log.debug("%s/%s: its namespace is being deleted; not retrying", *key)
                return
            if error.status != 409:
                raise
            self.notify(*key)  # someone wrote in between: decide again on fresh state
        finally:
            metrics.reconcile_seconds.observe(time.monotonic() - started)

    def _failed(self, key: Key, error: Exception) -> None:
        log.error("reconcile of %s/%s failed; retrying", *key, exc_info=error)
        metrics.reconcile_errors.labels(*key).inc()
        self.due[key] = self.clock() + RETRY_AFTER_ERROR

    def _watch_references(self, key: Key, services: set[Key], namespaces: set[str]) -> None:
        _reindex(self.fallback_services, key, services)
        _reindex(self.grant_namespaces, key, namespaces)

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
        key = (namespace, name)
        children = self.children.of(namespace, name)
        services = {ref[:2] for f in spec.fallbacks if (ref := fallback_service(md, f))}
        self._watch_references(key, services, {ns for ns, _ in services if ns != namespace})
        switches = self.switchboard.sources_for(namespace, name, md["metadata"].get("labels") or {})
        mirror_supported = True
        if _may_mirror(spec, status, bool(switches)):
            mirror_supported = await router_for(spec.traffic.router).can_mirror(self.api, md, spec)
        desired = revision_hash(md["spec"])
        now = self.clock()
        observations = Observations(
            revisions=observe_revisions(children.deployments, children.pods),
            commands=commands_of(md),
            analysis=self._check_if_due(key, spec, status, now),
            switches=switches,
            fallbacks=observe_fallbacks(self.switchboard, md, spec, children.deployments),
            mirror_supported=mirror_supported,
        )
        decision = decide(spec, desired, md["metadata"].get("generation", 1), status, observations, now)

        if decision.status != status:
            md = await self.api.patch_status(
                MODEL_DEPLOYMENTS, namespace, name, merge_patch(status, decision.status),
                md["metadata"]["resourceVersion"],
            )  # fmt: skip
            self.written[key] = md["metadata"]["resourceVersion"]
        # Events go out beside the act step: a person reads them, traffic must not wait for them.
        events = asyncio.create_task(post_events(self.api, md, decision.events, now))
        try:
            log_decisions(md, decision.history)
            for entry in decision.history:
                metrics.decisions.labels(namespace, name, entry.action).inc()
            weights = decision.status.weights
            metrics.record_state(namespace, name, decision.status.phase, weights.stable, weights.canary,
                                 weights.fallback, decision.status.kill_switch.engaged)  # fmt: skip
            templates = {r["metadata"]["labels"][render.REVISION_LABEL]: r["data"] for r in children.revisions}
            # A kill switch moving users touches only the route: it goes first, before any workload write.
            rerouted = (status.weights.fallback, status.weights.fallback_name) != (
                weights.fallback,
                weights.fallback_name,
            )
            if rerouted:
                await self._route(md, spec, decision.status, children)
            await self._act(md, spec, decision.status, desired, templates, children)
            if not rerouted:
                await self._route(md, spec, decision.status, children)
        finally:
            await events
        self._schedule(key, spec, decision.status, now)

    def _schedule(self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> None:
        due = [parse_time(status.next_check_at)] if status.next_check_at else []
        if _judged(spec, status) and key not in self.checks:
            last = self.last_check.get(key, now)
            due.append(last + parse_duration(spec.rollout.interval))
        if due:
            self.due[key] = min(due)
        else:
            self.due.pop(key, None)

    def _check_if_due(
        self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime
    ) -> Analysis | None:
        """The verdict of a finished check, if any; starts the next check at most once per rollout.interval."""
        if not _judged(spec, status):
            self.last_check.pop(key, None)
            self.verdicts.pop(key, None)
            return None
        verdict = self.verdicts.pop(key, None)
        last = self.last_check.get(key)
        if key not in self.checks and (last is None or now - last >= parse_duration(spec.rollout.interval)):
            self.last_check[key] = now
            task = asyncio.get_running_loop().create_task(self._check(key, spec, status, now))
            self.checks[key] = task
            task.add_done_callback(lambda done: self._check_done(key, done))
        return verdict

    async def _check(self, key: Key, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> None:
        canary = status.canary_revision
        assert canary is not None
        if self.provider is None:
            results = [error_result(o, "no metrics provider: run the operator with --prometheus-url") for o in
                       spec.contract.objectives]  # fmt: skip
            verdict = Analysis(at=format_time(now), revision=canary, verdict="Error", objectives=results)
        else:
            services = {r: render.workload_name(key[1], r) for r in (canary, status.stable_revision) if r}
            verdict = await run_check(
                self.provider, spec, key[0], key[1], canary, status.stable_revision, services, now
            )
        self.verdicts[key] = verdict
        self.notify(*key)

    def _check_done(self, key: Key, task: asyncio.Task[None]) -> None:
        self.checks.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("contract check of %s/%s failed", *key, exc_info=task.exception())

    async def _act(
        self,
        md: Manifest,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        desired: str,
        templates: dict[str, Any],
        children: ChildSet,
    ) -> None:
        """Make the workloads match the status: one per revision, the reject responder, garbage removed.

        Each write is skipped when the observed child is what this process last wrote and nobody changed it.
        """
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
            workload = render.workload_name(name, revision.name)
            await self.api.apply(
                DEPLOYMENTS, render.deployment(md, spec, revision.name, revision.role, revision.replicas, template),
                children.named(DEPLOYMENTS, workload),
            )  # fmt: skip
            await self.api.apply(
                SERVICES, render.service(md, spec, revision.name, revision.role), children.named(SERVICES, workload)
            )
            scaler = render.autoscaler(md, spec, revision.name)
            if scaler is not None and revision.role in ("stable", "canary"):
                await self.api.apply(HPAS, scaler)
            elif spec.model.autoscaling is not None:
                await self.api.delete(HPAS, namespace, render.workload_name(name, revision.name))
        await self._act_responder(md, spec, children)
        for deployment in children.deployments:
            revision_name = revision_of(deployment)
            if revision_name is not None and revision_name not in kept:
                workload = render.workload_name(name, revision_name)
                for resource in (DEPLOYMENTS, SERVICES, HPAS, CONTROLLER_REVISIONS):
                    await self.api.delete(resource, namespace, workload)

    async def _act_responder(self, md: Manifest, spec: ModelDeploymentSpec, children: ChildSet) -> None:
        """The reject responder runs while the spec has a reject fallback, so a kill switch finds it warm."""
        reject = next((f.reject for f in spec.fallbacks if f.reject is not None), None)
        responder = responder_name(md["metadata"]["name"])
        if reject is not None:
            deployment = responder_deployment(md, reject, self.responder_image)
            await self.api.apply(DEPLOYMENTS, deployment, children.named(DEPLOYMENTS, responder))
            await self.api.apply(SERVICES, responder_service(md), children.named(SERVICES, responder))
            return
        if children.named(DEPLOYMENTS, responder) or children.named(SERVICES, responder):
            for resource in (DEPLOYMENTS, SERVICES):
                await self.api.delete(resource, md["metadata"]["namespace"], responder)

    async def _route(
        self, md: Manifest, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, children: ChildSet
    ) -> None:
        backends = backends_for(md, spec, status)
        if backends is None:
            return
        router = router_for(spec.traffic.router)
        await router.reconcile(self.api, md, spec, backends, children.named(*router.owned(md)))
        # A router switch leaves the other router's objects behind: remove them.
        other = router_for("service" if spec.traffic.router == "gateway-api" else "gateway-api")
        if spec.traffic.route_ref is None and children.named(*other.owned(md)) is not None:
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
            MODEL_DEPLOYMENTS, metadata["namespace"], metadata["name"], merge_patch(status, after),
            metadata["resourceVersion"],
        )  # fmt: skip
        await post_events(self.api, md, (Event("Warning", "InvalidSpec", message),), self.clock())


Ref = TypeVar("Ref", bound=Hashable)


def _reindex(index: dict[Ref, set[Key]], key: Key, wanted: set[Ref]) -> None:
    """Make `key` listed under exactly the references in `wanted`."""
    for ref in list(index):
        if ref not in wanted:
            index[ref].discard(key)
            if not index[ref]:
                del index[ref]
    for ref in wanted:
        index.setdefault(ref, set()).add(key)
