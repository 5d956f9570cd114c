"""Observe, decide, act: the one reconcile path of a ModelDeployment, serialised per object.

Event handlers and the tick only call `notify()`; reconciles of one object never overlap, events
that arrive during a reconcile coalesce into one more, and due times kept in status drive the tick.
Contract checks run beside the reconcile (`contract_checks.py`), never inside it, so a slow
Prometheus never delays a kill switch: the tick starts due checks, and a finished check asks for a
reconcile, which reads its verdict. Someone writing first (a 409 on the status, a failed `test` in
a route's JSON patch) is a lost race: decided again at once, on fresh state, with nothing dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError

from ballast.analysis.providers.base import MetricsProvider
from ballast.api.base import merge_patch
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.revision import revision_hash
from ballast.api.status import ModelDeploymentStatus
from ballast.api.timestamps import format_time, parse_time
from ballast.api.types import Condition
from ballast.hooks.caller import WebhookCaller
from ballast.kube.client import ApiError, KubeApi
from ballast.kube.resources import MODEL_DEPLOYMENTS
from ballast.observability import metrics
from ballast.observability.events import log_decisions, post_events
from ballast.rollout.conditions import keep_transition_times
from ballast.rollout.core import Event, decide
from ballast.shell.act import apply_responder, apply_route, apply_workloads
from ballast.shell.burn_watch import BurnWatch
from ballast.shell.children import Children
from ballast.shell.cluster_view import ClusterView
from ballast.shell.contract_checks import ContractChecks
from ballast.shell.gate_calls import GateCalls
from ballast.shell.observe import Observed, fallback_service, observe
from ballast.shell.operator_switch import apply_operator_switch
from ballast.shell.per_key_runner import PerKeyRunner
from ballast.shell.references import ReferenceView
from ballast.shell.switch_lane import SwitchLane
from ballast.shell.usage_meter import UsageMeter
from ballast.traffic.acceptance import not_written, parents_digest
from ballast.traffic.backends import backends_for
from ballast.traffic.routers import router_for
from ballast.workloads import render
from ballast.workloads.responder_manifests import DEFAULT_IMAGE

log = logging.getLogger("ballast.shell.reconciler")
Key = tuple[str, str]
Manifest = dict[str, Any]

RETRY_AFTER_ERROR = timedelta(seconds=5)
RETRY_REFUSED = timedelta(seconds=15)
# Lost races retried at once, in a row, before a key waits like any failure (a race lost every time is a bug).
IMMEDIATE_RETRIES = 5


class Reconciler:
    def __init__(
        self,
        api: KubeApi,
        provider: MetricsProvider | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        view: ClusterView,
        references: ReferenceView,
        children: Children,
        responder_image: str = DEFAULT_IMAGE,
        webhooks: WebhookCaller | None = None,
    ) -> None:
        self.api = api
        self.children = children
        self.clock = clock
        self.view = view
        self.references = references
        self.responder_image = responder_image
        self.runner: PerKeyRunner[Key] = PerKeyRunner(self._reconcile_timed, self._failed)
        self.lane = SwitchLane()
        self.checks = ContractChecks(provider, self.notify)
        self.usage = UsageMeter(provider, self.notify)
        self.watch = BurnWatch(provider, self.notify)
        self.gates = GateCalls(webhooks, self.notify, clock)
        self.due: dict[Key, datetime] = {}
        self.races: dict[Key, int] = {}  # lost races in a row, per key
        self.written: dict[Key, str] = {}  # the resourceVersion of the last status this reconciler wrote
        # Which deployments route to a Service or read grants of a namespace: their events reconcile them.
        self.fallback_services: dict[Key, set[Key]] = {}
        self.grant_namespaces: dict[str, set[Key]] = {}
        # Which deployments each HTTPRoute carries, and its Gateways' reports as the last reconcile read them:
        # a new report (Accepted, ResolvedRefs) reconciles them, so status says what the Gateway accepted.
        self.route_users: dict[Key, set[Key]] = {}
        self.route_reports: dict[Key, str] = {}

    # ------------------------------------------------------------------------------ scheduling

    def notify(self, namespace: str, name: str) -> None:
        """Ask for a reconcile; coalesces with one already waiting."""
        self.runner.notify((namespace, name))

    def switch(self, namespace: str, name: str) -> None:
        """A kill switch may have engaged or released: reconcile with this deployment's calls in the switch lane
        until its route is written."""
        self.lane.request((namespace, name))
        self.notify(namespace, name)

    def changed(self, namespace: str, name: str, resource_version: str) -> None:
        """A watch event of the ModelDeployment: reconcile, unless it is the echo of this reconciler's own write.
        Deployments whose fallbacks lead to it reconcile too: a fallback cycle may have closed or opened."""
        if self.written.get((namespace, name)) != resource_version:
            self.notify(namespace, name)
            for refs in self.references.falling_back_to(namespace, name):
                self.notify(refs.namespace, refs.name)

    def route_changed(self, namespace: str, name: str) -> None:
        """An HTTPRoute that is not a child changed: a routeRef route (opt-in, rules) or one taking a route's name."""
        for refs in self.references.claiming(namespace, name):
            self.notify(refs.namespace, refs.name)

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self.due.pop(key, None)
        self.races.pop(key, None)
        self.lane.forget(key)
        self.checks.forget(key)
        self.usage.forget(key)
        self.watch.forget(key)
        self.gates.forget(key)
        self.written.pop(key, None)
        self._watch_references(key, set(), set(), set())
        metrics.forget(namespace, name)

    async def stop(self) -> None:
        await self.runner.stop()
        await self.gates.stop()
        await self.usage.stop()
        await self.watch.stop()
        await self.checks.stop()  # last: it closes the provider all three use

    def service_changed(self, namespace: str, name: str, child_of: str | None = None) -> None:
        """A Service a deployment routes to as a fallback, or one that may hold another's child's name, changed
        (`child_of`: the deployment whose child it is, which its own child events reconcile)."""
        for key in list(self.fallback_services.get((namespace, name), ())):
            self.notify(*key)
        for refs in self.references.deriving(namespace, name):
            if refs.name != child_of:
                self.notify(refs.namespace, refs.name)

    def grants_changed(self, namespace: str) -> None:
        for key in list(self.grant_namespaces.get(namespace, ())):
            self.notify(*key)

    def route_reported(self, namespace: str, name: str, report: str) -> None:
        """An HTTPRoute changed; the deployments it carries reconcile when its Gateways' report is new to them."""
        route = (namespace, name)
        if self.route_reports.get(route) != report:
            for key in list(self.route_users.get(route, ())):
                self.notify(*key)

    async def tick_forever(self, period: float = 1.0) -> None:
        while True:
            await asyncio.sleep(period)
            now = self.clock()
            self.checks.start_due(now)
            self.usage.start_due(now)
            self.watch.start_due(now)
            for key, due in list(self.due.items()):
                if due <= now:
                    self.due.pop(key, None)
                    self.notify(*key)

    async def _reconcile_timed(self, key: Key) -> None:
        started = time.monotonic()
        lane = self.lane.bind(key)
        claimed = self.lane.claim(key)
        try:
            await self.reconcile(*key, claimed=claimed)
            self.lane.route_written(key, claimed)  # a pass that wrote no route: nothing was to switch
            self.races.pop(key, None)
        except ApiError as error:
            if error.namespace_terminating:
                log.debug("%s/%s: its namespace is being deleted; not retrying", *key)
                return
            races = self.races.get(key, 0) + 1
            if not error.lost_race or races > IMMEDIATE_RETRIES:
                self.races.pop(key, None)
                raise
            self.races[key] = races
            self.notify(*key)  # someone wrote in between: decide again, at once, on fresh state
        finally:
            self.lane.unbind(lane)
            metrics.reconcile_seconds.observe(time.monotonic() - started)

    def _failed(self, key: Key, error: Exception) -> None:
        log.error("reconcile of %s/%s failed; retrying", *key, exc_info=error)
        metrics.reconcile_errors.labels(*key).inc()
        self.due[key] = self.clock() + RETRY_AFTER_ERROR

    def _watch_references(self, key: Key, services: set[Key], namespaces: set[str], routes: set[Key]) -> None:
        _reindex(self.fallback_services, key, services)
        _reindex(self.grant_namespaces, key, namespaces)
        for route in _reindex(self.route_users, key, routes):
            self.route_reports.pop(route, None)  # no deployment serves through it any more

    def _schedule(self, key: Key, status: ModelDeploymentStatus, now: datetime, refused: bool) -> None:
        """Wake at the core's next due time; checks start from the tick, and their verdicts wake it themselves."""
        due = [parse_time(status.next_check_at)] if status.next_check_at else []
        if refused:  # objects of a child's name, or a route, that are not Ballast's: look again while they last
            due.append(now + RETRY_REFUSED)
        if due:
            self.due[key] = min(due)
        else:
            self.due.pop(key, None)

    # -------------------------------------------------------------------------- one reconcile

    async def reconcile(self, namespace: str, name: str, claimed: int | None = None) -> None:
        """One pass; `claimed` is the switch request it carries (`SwitchLane.claim`), released once the route is
        written."""
        md = await self.api.get(MODEL_DEPLOYMENTS, namespace, name)
        if md is None or md["metadata"].get("deletionTimestamp"):
            self.forget(namespace, name)
            return  # children go with it: ownerReferences, no finalizer
        status = ModelDeploymentStatus.model_validate(md.get("status") or {})
        try:
            spec = ModelDeploymentSpec.model_validate(md["spec"])
        except ValidationError as error:
            self.checks.forget((namespace, name))
            self.usage.forget((namespace, name))
            self.watch.forget((namespace, name))
            await self._report_invalid(md, status, error)
            return
        key = (namespace, name)
        children = self.children.of(namespace, name)
        services = {ref[:2] for f in spec.fallbacks if (ref := fallback_service(md, f))}
        route = router_for(spec.traffic.router).watched_route(md, spec)
        routes = {(namespace, route)} if route else set()
        self._watch_references(key, services, {ns for ns, _ in services if ns != namespace}, routes)
        desired = revision_hash(md["spec"])
        now = self.clock()
        verdict, burn = self.checks.verdict(key), self.watch.verdict(key)
        seen = await observe(self.api, self.view, self.references, md, spec, status, desired, children, verdict,
                             self.usage.usage(key), burn)  # fmt: skip
        answered = self.gates.results(key)
        observations = dataclasses.replace(seen.observations, gate_results=answered)
        decision = decide(spec, desired, md["metadata"].get("generation", 1), status, observations, now)
        templates = {r["metadata"]["labels"][render.REVISION_LABEL]: r["data"] for r in children.revisions}
        self._report_acceptance(md, spec, status, decision.status, templates, seen, format_time(now))
        # A kill switch moving users touches only the route: it goes first, before status, Events or workloads.
        rerouted = (status.weights.fallback, status.weights.fallback_name) != (
            decision.status.weights.fallback,
            decision.status.weights.fallback_name,
        )
        if rerouted:
            await apply_route(self.api, md, spec, decision.status, templates, children, seen)
        self.lane.route_written(key, claimed)

        if decision.status != status:
            md = await self.api.patch_status(
                MODEL_DEPLOYMENTS, namespace, name, merge_patch(status, decision.status),
                md["metadata"]["resourceVersion"],
            )  # fmt: skip
            self.written[key] = md["metadata"]["resourceVersion"]
        self.checks.written(key, verdict)  # only now: a conflict above retries with the verdict
        self.watch.written(key, burn)
        self.checks.track(key, spec, decision.status, now)
        self.usage.track(key, spec, decision.status, now)
        self.watch.track(key, spec, decision.status, now)
        self.gates.written(key, answered)
        self.gates.track(key, md, spec, decision.status, now)
        self.gates.announce(key, md, spec, decision.status, decision.history)
        # Events go out beside the act step: a person reads them, traffic must not wait for them.
        events = asyncio.create_task(post_events(self.api, md, decision.events, now))
        try:
            log_decisions(md, decision.history)
            if burn is not None:
                metrics.record_burn(namespace, name, burn)
            for entry in decision.history:
                metrics.decisions.labels(namespace, name, entry.action).inc()
            self._record_metrics(md, spec, decision.status)
            metrics.record_budget(namespace, name, decision.status.budget)
            await apply_workloads(self.api, md, spec, decision.status, desired, templates, children, seen)
            await apply_responder(self.api, md, spec, children, self.responder_image, seen)
            await apply_operator_switch(self.api, md, decision.status, self.view)
            if not rerouted:
                await apply_route(self.api, md, spec, decision.status, templates, children, seen)
        finally:
            await events
        refused = bool(observations.conflicts) or observations.route_refused is not None
        self._schedule(key, decision.status, now, refused)

    @staticmethod
    def _record_metrics(md: Manifest, spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> None:
        metadata = md["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        weights, switch = status.weights, status.kill_switch
        since = parse_time(switch.engaged_at).timestamp() if switch.engaged_at else None
        metrics.record_state(namespace, name, status.phase, weights.stable, weights.canary, weights.fallback,
                             switch.engaged, since)  # fmt: skip
        # spec.owner is who answers for the model; the label serves deployments written before it existed.
        owner = spec.owner.team if spec.owner else (metadata.get("labels") or {}).get(metrics.OWNER_LABEL, "")
        metrics.record_owner(namespace, name, owner)
        metrics.record_analysis(namespace, name, status.last_analysis, status.stable_revision, spec.contract.objectives)

    def _report_acceptance(
        self,
        md: Manifest,
        spec: ModelDeploymentSpec,
        before: ModelDeploymentStatus,
        after: ModelDeploymentStatus,
        templates: dict[str, Any],
        seen: Observed,
        now: str,
    ) -> None:
        """GatewayAccepted: whether the Gateway accepted the route carrying what `after` asks for (read from
        memory); Unknown while Ballast may not write the route at all (RouteAccepted False)."""
        router = router_for(spec.traffic.router)
        name = router.watched_route(md, spec)
        if name is None:
            return
        namespace = md["metadata"]["namespace"]
        route = self.view.route(namespace, name)
        self.route_reports[(namespace, name)] = parents_digest(route)
        backends = backends_for(md, spec, after, templates)
        if seen.observations.route_refused is not None:
            accepted: Condition | None = not_written(name)
        elif backends is not None:
            accepted = router.acceptance(md, spec, backends, route)
        else:
            return  # nothing deployed yet, so nothing routed
        if accepted is None:
            return
        accepted.observed_generation = after.observed_generation
        (accepted,) = keep_transition_times(before.conditions, [accepted], now)
        after.conditions = [*(c for c in after.conditions if c.type != accepted.type), accepted]

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


def _reindex(index: dict[Ref, set[Key]], key: Key, wanted: set[Ref]) -> list[Ref]:
    """Make `key` listed under exactly the references in `wanted`; returns the references nobody is listed under
    any more."""
    dropped = []
    for ref in list(index):
        if ref not in wanted:
            index[ref].discard(key)
            if not index[ref]:
                del index[ref]
                dropped.append(ref)
    for ref in wanted:
        index.setdefault(ref, set()).add(key)
    return dropped
