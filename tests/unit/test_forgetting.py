"""Memory of what is gone is dropped: remembered writes, per-key locks and metric series."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from ballast.api.status import BudgetStatus, RevisionUsage
from ballast.handlers.modeldeployment import child_changed, routing_changed
from ballast.kube.client import KubeApi
from ballast.kube.resources import CONTROLLER_REVISIONS, DEPLOYMENTS, HPAS, HTTP_ROUTES, SERVICES
from ballast.observability import metrics
from ballast.shell.per_key_runner import PerKeyRunner
from tests.unit.fake_kube import FakeKube


class Notified:
    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.keys: list[tuple[str, str]] = []

    def notify(self, namespace: str, name: str) -> None:
        self.keys.append((namespace, name))


def child(kind: str, name: str) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": "apps", "labels": {"ballast.dev/deployment": "bot"}}}


async def test_what_was_written_to_a_garbage_collected_child_is_forgotten() -> None:
    api = FakeKube().api()
    kinds = {"Deployment": DEPLOYMENTS, "Service": SERVICES, "HTTPRoute": HTTP_ROUTES,
             "ControllerRevision": CONTROLLER_REVISIONS, "HorizontalPodAutoscaler": HPAS}  # fmt: skip
    for resource in kinds.values():
        api.applied[(resource.plural, "apps", "bot-1")] = ("digest", "1")
    reconciler = Notified(api)
    memo = {"reconciler": reconciler}
    labels = {"ballast.dev/deployment": "bot"}
    for kind in kinds:
        handler = routing_changed if kind in ("Service", "HTTPRoute") else child_changed
        await handler(type="DELETED", body=child(kind, "bot-1"), labels=labels, namespace="apps", memo=memo)
    assert api.applied == {}
    assert reconciler.keys == [("apps", "bot")] * 5  # and each is recreated while its deployment lives


async def test_a_key_holds_no_lock_once_its_runs_are_done() -> None:
    runner: PerKeyRunner[str] = PerKeyRunner(lambda key: asyncio.sleep(0), lambda key, error: None)
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(key: str) -> None:
        started.set()
        await release.wait()

    runner.work = slow
    runner.notify("a")
    await started.wait()
    runner.notify("a")  # arrives during the run: one more run follows
    release.set()
    await asyncio.gather(*list(runner.tasks))
    assert runner.locks == {}


def test_every_series_of_a_deleted_deployment_is_dropped() -> None:
    metrics.record_state("apps", "gone", "Stable", 100, 0, 0, False)
    metrics.record_budget("apps", "gone", BUDGET)
    metrics.decisions.labels("apps", "gone", "deploy").inc()
    metrics.reconcile_errors.labels("apps", "gone").inc()
    metrics.decisions.labels("apps", "kept", "deploy").inc()
    metrics.forget("apps", "gone")
    names = {
        (sample.labels.get("namespace"), sample.labels.get("name"))
        for family in REGISTRY.collect()
        for sample in family.samples
    }
    assert ("apps", "gone") not in names
    assert ("apps", "kept") in names


BUDGET = BudgetStatus(
    measured_at="2026-11-24T12:00:00Z", currency="USD", used_percent=40, projected_cost_per_hour="1.2000",
    revisions=[RevisionUsage(revision="aaa", role="stable", tokens_per_minute=100, cost_per_hour="0.6000",
                             cost_per_request="0.00010000"),
               RevisionUsage(revision="bbb", role="canary", tokens_per_minute=50, cost_per_hour="0.3000")],
)  # fmt: skip


def _tokens(revision: str) -> float | None:
    labels = {"namespace": "apps", "name": "metered", "revision": revision}
    return REGISTRY.get_sample_value("ballast_usage_tokens_per_minute", labels)


def test_budget_series_of_a_revision_no_longer_measured_are_dropped() -> None:
    metrics.record_budget("apps", "metered", BUDGET)
    assert (_tokens("aaa"), _tokens("bbb")) == (100, 50)
    each = {"namespace": "apps", "name": "metered", "revision": "aaa", "currency": "USD"}
    assert REGISTRY.get_sample_value("ballast_usage_cost_per_request", each) == 0.0001
    metrics.record_budget("apps", "metered", BUDGET.model_copy(update={"revisions": BUDGET.revisions[:1]}))
    assert (_tokens("aaa"), _tokens("bbb")) == (100, None)
    metrics.record_budget("apps", "metered", None)  # budgets removed from the spec
    assert REGISTRY.get_sample_value("ballast_budget_used_percent", {"namespace": "apps", "name": "metered"}) is None
    assert _tokens("aaa") is None
