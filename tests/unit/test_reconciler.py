"""The reconciler against an in-memory API server: verdicts survive conflicts, lost races retry at once,
a held canary is read once per check interval, and a check that cannot run is an Error verdict."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ballast.analysis.providers.base import Sample
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.revision import revision_hash
from ballast.api.status import ModelDeploymentStatus
from ballast.kube.client import IN_SWITCH_LANE, ApiError
from ballast.kube.resources import EVENTS, HTTP_ROUTES, MODEL_DEPLOYMENTS, Resource
from ballast.rollout.check_scope import began_in
from ballast.shell.children import Children
from ballast.shell.cluster_view import ClusterView, switch_of
from ballast.shell.reconciler import IMMEDIATE_RETRIES, RETRY_AFTER_ERROR, Reconciler
from ballast.shell.references import OPT_IN_ANNOTATION, ReferenceView, ServiceFacts
from ballast.shell.switch_lane import SwitchLane
from ballast.workloads.render import DEPLOYMENT_LABEL, REVISION_LABEL
from tests.unit.test_rollout_core import READY, Run, check

NS, NAME = "apps", "bot"
KEY = (NS, NAME)
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
# What the API server answers when a JSON patch cannot be applied (a failed `test` among them): no details.
PATCH_NOT_APPLICABLE = "the server rejected our request due to an error in our request"


def held_spec(**traffic: Any) -> dict[str, Any]:
    """A canary judged every 10s, whose first step's 30s pause passes long before any check passes."""
    return {
        "model": {"name": "m", "image": "i", "replicas": 2},
        "traffic": traffic or {"parentRefs": [{"name": "gw"}]},
        "contract": {"minRequests": 20, "objectives": [{"name": "errors", "preset": "error-rate", "max": 0.05}]},
        "rollout": {"interval": "10s", "inconclusiveDeadline": "1h",
                    "steps": [{"weight": 10, "pause": "30s"}, {"weight": 100}]},
    }  # fmt: skip


OWNER = {"apiVersion": "ballast.dev/v1alpha1", "kind": "ModelDeployment", "name": NAME, "uid": "u1", "controller": True}


def deployment(revision: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{NAME}-{revision}", "namespace": NS, "generation": 1,
                     "labels": {REVISION_LABEL: revision, DEPLOYMENT_LABEL: NAME}, "ownerReferences": [OWNER]},
        "status": {"observedGeneration": 1, "readyReplicas": 2,
                   "conditions": [{"type": "Available", "status": "True"}]},
    }  # fmt: skip


class FakeApi:
    """One ModelDeployment and, on request, a route of yours; conflicts and lost races on demand."""

    def __init__(self, md: dict[str, Any]) -> None:
        self.md = md
        self.reads = 0
        self.conflicts = 0  # status writes to refuse with a 409
        self.lost_races = 0  # route patches to refuse as a failed JSON-patch `test`
        self.route_patches: list[list[dict[str, Any]]] = []
        self.patch_attempts = 0
        self.events: list[dict[str, Any]] = []
        self.route = {"metadata": {"name": "yours", "namespace": NS, "resourceVersion": "5",
                                   "annotations": {OPT_IN_ANNOTATION: NAME}},
                      "spec": {"rules": [{"name": "split", "backendRefs": []}]}}  # fmt: skip

    def status(self) -> ModelDeploymentStatus:
        return ModelDeploymentStatus.model_validate(self.md.get("status") or {})

    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        if resource == MODEL_DEPLOYMENTS:
            self.reads += 1
            return copy.deepcopy(self.md)
        return copy.deepcopy(self.route) if (resource, name) == (HTTP_ROUTES, "yours") else None

    async def patch_status(
        self, resource: Resource, namespace: str | None, name: str, status: dict[str, Any], version: str
    ) -> dict[str, Any]:
        if self.conflicts or version != self.md["metadata"]["resourceVersion"]:
            self.conflicts = max(0, self.conflicts - 1)
            self.md["metadata"]["resourceVersion"] = str(int(self.md["metadata"]["resourceVersion"]) + 1)
            raise ApiError(409, "the object has been modified; please apply your changes to the latest version")
        merged = {**(self.md.get("status") or {}), **status}
        self.md["status"] = {k: v for k, v in merged.items() if v is not None}
        self.md["metadata"]["resourceVersion"] = str(int(self.md["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(self.md)

    async def json_patch(
        self, resource: Resource, namespace: str, name: str, operations: list[dict[str, Any]]
    ) -> dict[str, Any]:
        self.patch_attempts += 1
        if self.lost_races:
            self.lost_races -= 1
            raise ApiError(422, PATCH_NOT_APPLICABLE)
        self.route_patches.append(operations)
        return copy.deepcopy(self.route)

    async def apply(self, resource: Resource, body: dict[str, Any], current: Any = None) -> dict[str, Any]:
        return body

    async def create(self, resource: Resource, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if resource == EVENTS:
            self.events.append(body)
        return body

    async def delete(self, resource: Resource, namespace: str, name: str) -> None:
        return None

    def wrote(self, resource: Resource, body: Any) -> bool:
        return False


class TooFewRequests:
    """A Prometheus that answers every query with nothing: each check is Inconclusive."""

    def __init__(self) -> None:
        self.queries = 0

    async def query(self, promql: str) -> list[Sample]:
        self.queries += 1
        return []

    async def close(self) -> None:
        return None


@dataclass
class World:
    api: FakeApi
    reconciler: Reconciler
    held: ModelDeploymentStatus
    canary: str
    now: list[datetime] = field(default_factory=lambda: [T0])

    async def settle(self) -> None:
        """Until no reconcile or check is left running."""
        for _ in range(100):
            await asyncio.sleep(0)
            busy = [*self.reconciler.runner.tasks, *self.reconciler.checks.running.values(),
                    *self.reconciler.usage.running.values()]  # fmt: skip
            if not busy:
                return
            await asyncio.gather(*busy, return_exceptions=True)
        raise AssertionError("the reconciler never settled")


def held_world(spec: dict[str, Any], provider: Any = None) -> World:
    """The canary at its first step, its pause over, waiting for a passing check; status as the core wrote it."""
    canary = revision_hash(spec)
    run = Run(ModelDeploymentSpec.model_validate(spec))
    run.now = T0 - timedelta(seconds=60)
    run.observed = {"aaa": READY, canary: READY}
    run.step("aaa")
    run.step(canary)
    run.step(canary, 1)
    held = run.step(canary, 45).status
    assert held.current_step == 0
    assert "waiting for a passing contract check" in held.message
    md = {
        "apiVersion": "ballast.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NS, "uid": "u1", "generation": 1, "resourceVersion": "1"},
        "spec": spec, "status": held.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }  # fmt: skip
    api = FakeApi(md)
    none: dict[Any, list[Any]] = {}
    children = Children({KEY: [deployment("aaa"), deployment(canary)]}, none, none, none, none, none, none)
    view = ClusterView(none, none, none, none, none, none)
    world = World(api, None, held, canary)  # type: ignore[arg-type]
    world.reconciler = Reconciler(
        api,
        provider,
        lambda: world.now[0],
        view=view,
        references=ReferenceView(none, none),
        children=children,  # type: ignore[arg-type]
    )
    return world


Build = Callable[..., World]


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    """Builds held worlds and stops their reconcilers (ticks, checks, runs) when the test ends."""
    built: list[World] = []

    def make(spec: dict[str, Any] | None = None, provider: Any = None) -> World:
        built.append(held_world(spec or held_spec(), provider))
        return built[-1]

    yield make
    for world in built:
        await world.reconciler.stop()


async def test_a_verdict_survives_a_conflicting_status_write(build: Build) -> None:
    world = build()
    checks = world.reconciler.checks
    checks.verdicts[KEY] = began_in(check("Passed", 0.01, revision=world.canary), world.held)
    checks.last_check[KEY] = world.now[0]  # the check that gave it has just run: no other starts now
    world.api.conflicts = 1  # someone writes the object between our read and our status write
    world.reconciler.notify(NS, NAME)
    await world.settle()
    status = world.api.status()
    assert status.last_analysis is not None
    assert status.last_analysis.verdict == "Passed"
    assert status.current_step == 1  # the passing check moved the canary on, after the retry


async def test_a_route_patch_that_lost_its_race_is_retried_at_once(build: Build) -> None:
    world = build(held_spec(routeRef={"name": "yours", "rule": "split"}))
    world.reconciler.checks.last_check[KEY] = world.now[0]
    world.api.lost_races = 1  # the route changed between our read and our patch
    world.reconciler.notify(NS, NAME)
    await world.settle()
    assert len(world.api.route_patches) == 1
    assert world.api.route_patches[0][0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "5"}


async def test_a_race_lost_every_time_waits_like_any_failure(build: Build) -> None:
    world = build(held_spec(routeRef={"name": "yours", "rule": "split"}))
    world.reconciler.checks.last_check[KEY] = world.now[0]
    world.api.lost_races = 100  # a bug, not a race: it must not spin
    world.reconciler.notify(NS, NAME)
    await world.settle()
    assert world.api.patch_attempts == IMMEDIATE_RETRIES + 1
    assert world.reconciler.due[KEY] == world.now[0] + RETRY_AFTER_ERROR


async def test_a_held_canary_is_read_once_per_check_interval(build: Build) -> None:
    provider = TooFewRequests()
    world = build(provider=provider)
    ticker = asyncio.get_running_loop().create_task(world.reconciler.tick_forever(period=0.001))
    world.reconciler.notify(NS, NAME)
    await world.settle()
    reads, queries = world.api.reads, provider.queries
    for _ in range(60):  # a minute, a second at a time; every tick the reconciler could take is taken
        world.now[0] += timedelta(seconds=1)
        for _ in range(5):
            await asyncio.sleep(0.002)
        await world.settle()
    ticker.cancel()
    await asyncio.gather(ticker, return_exceptions=True)
    assert provider.queries - queries >= 2 * 5  # the checks kept running: about six, two queries each
    assert world.api.reads - reads <= 60 // 10 + 1
    assert world.api.status().inconclusive_checks >= 5


async def test_a_check_that_cannot_even_start_is_an_error_verdict_with_its_event(
    build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = build()

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("no route to the metrics backend")

    monkeypatch.setattr("ballast.shell.contract_checks.run_check", broken)
    world.reconciler.checks.provider = TooFewRequests()
    world.reconciler.notify(NS, NAME)
    await world.settle()  # the reconcile starts the check; its verdict asks for the next reconcile
    await world.settle()
    status = world.api.status()
    assert status.last_analysis is not None
    assert status.last_analysis.verdict == "Error"
    assert "no route to the metrics backend" in status.last_analysis.objectives[0].reason
    assert status.inconclusive_since is not None  # counted toward inconclusiveDeadline
    assert [e["reason"] for e in world.api.events] == ["MetricsUnavailable"]


class TokenCounters(TooFewRequests):
    """A Prometheus whose runtime counters say the stable revision used 600 + 1200 tokens in 30 answers."""

    async def query(self, promql: str) -> list[Sample]:
        self.queries += 1
        counts = {"vllm:prompt_tokens_total": 600.0, "vllm:generation_tokens_total": 1200.0, 'status=~"2.."': 30.0}
        value = next((v for fragment, v in counts.items() if fragment in promql), None)
        return [] if value is None else [Sample({"revision": "aaa"}, value)]


async def test_budget_use_is_measured_beside_the_reconcile_and_priced_into_status(build: Build) -> None:
    spec = held_spec()
    prices = {"perHour": "1", "per1kPromptTokens": "0.01", "per1kCompletionTokens": "0.02"}
    spec["budgets"] = {"tokensPerMinute": 300, "window": "5m", "cost": prices}
    provider = TokenCounters()
    world = build(spec, provider)
    world.reconciler.notify(NS, NAME)
    await world.settle()  # the reconcile starts a measurement; its result asks for another reconcile
    await world.settle()
    budget = world.api.status().budget
    assert budget is not None
    # 1800 tokens in 5m: 360 a minute, over the 300 budget; (600 x 0.01 + 1200 x 0.02) / 1000 = 0.03 in 5m.
    assert (budget.tokens_per_minute, budget.cost_per_hour, budget.used_percent) == (360, "0.3600", 120)
    assert budget.exceeded
    stable = next(r for r in budget.revisions if r.revision == "aaa")
    assert (stable.successful_requests, stable.cost_per_request) == (30, "0.00100000")
    assert world.api.status().history[-1].action == "budget-exceeded"
    assert provider.queries >= 3  # prompt, completion, successes: each one query for every revision
    world.reconciler.forget(NS, NAME)
    assert world.reconciler.usage.usage(KEY) is None


class LaneRecordingApi(FakeApi):
    """Records each write in order, with whether it was sent in the switch lane."""

    def __init__(self, md: dict[str, Any]) -> None:
        super().__init__(md)
        self.writes: list[tuple[str, bool]] = []

    def record(self, what: str) -> None:
        self.writes.append((what, IN_SWITCH_LANE.get()()))

    async def patch_status(self, *args: Any) -> dict[str, Any]:
        self.record("status")
        return await super().patch_status(*args)

    async def json_patch(self, *args: Any) -> dict[str, Any]:
        self.record("route")
        return await super().json_patch(*args)

    async def create(self, resource: Resource, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.record(resource.plural)
        return await super().create(resource, namespace, body)


def switched_world(build: Build) -> tuple[World, LaneRecordingApi]:
    spec = held_spec(routeRef={"name": "yours", "rule": "split"})
    spec["fallbacks"] = [{"name": "rules", "service": {"name": "faq-rules", "port": 8080}}]
    world = build(spec)
    api = LaneRecordingApi(world.api.md)
    world.api = world.reconciler.api = api  # type: ignore[assignment]
    switch = switch_of({"kind": "KillSwitch", "spec": {"reason": "incident", "modelDeployments": [NAME]},
                        "metadata": {"name": "incident", "namespace": NS, "generation": 1}})  # fmt: skip
    none: dict[Any, list[Any]] = {}
    services = {(NS, "faq-rules"): [ServiceFacts(ports=(8080,))]}
    world.reconciler.view = ClusterView({NS: [switch]}, none, none, none, none, services)
    world.reconciler.checks.last_check[KEY] = world.now[0]
    return world, api


async def test_a_switch_pass_writes_the_route_first_in_the_switch_lane_and_the_rest_in_the_routine_lane(
    build: Build,
) -> None:
    world, api = switched_world(build)
    world.reconciler.switch(NS, NAME)
    await world.settle()
    assert world.api.status().kill_switch.engaged is True
    assert api.writes[0] == ("route", True)
    assert {lane for what, lane in api.writes[1:]} == {False}
    assert {what for what, _ in api.writes[1:]} >= {"status", "events"}
    assert not world.reconciler.lane.waiting(KEY)


def test_calls_under_way_for_a_deployment_move_to_the_switch_lane_until_a_pass_carrying_the_switch_writes_it() -> None:
    lane = SwitchLane()
    bound = lane.bind(KEY)
    try:
        routine = lane.claim(KEY)  # a routine pass, started before any switch
        assert IN_SWITCH_LANE.get()() is False
        lane.request(KEY)  # a switch arrives while it runs: its next calls go in the switch lane
        assert IN_SWITCH_LANE.get()() is True
        lane.route_written(KEY, routine)  # it carried no switch: the switch still waits
        assert lane.waiting(KEY)
        first = lane.claim(KEY)
        lane.request(KEY)  # another switch event during the pass carrying the first
        lane.route_written(KEY, first)
        assert lane.waiting(KEY)
        lane.route_written(KEY, lane.claim(KEY))
        assert not lane.waiting(KEY)
        assert IN_SWITCH_LANE.get()() is False
    finally:
        lane.unbind(bound)
    assert IN_SWITCH_LANE.get()() is False  # the task's other calls were never touched
