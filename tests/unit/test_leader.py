"""Leader election on a Lease: the state machine on a virtual clock, the write fence, and what leading means."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ballast.kube.client import ApiError, KubeApi
from ballast.kube.resources import LEASES, MODEL_DEPLOYMENTS, Resource
from ballast.rollout.switch_selection import DeploymentEntry
from ballast.shell.children import Children
from ballast.shell.killswitch import KillSwitchDispatcher
from ballast.shell.leader import ElectionConfig, LeaderElector, LeaseTimings, NotLeader, Record
from ballast.shell.leadership import Leadership
from ballast.shell.per_key_runner import PerKeyRunner
from ballast.shell.reconciler import Reconciler
from ballast.shell.references import ReferenceView
from tests.unit.test_cluster_view import CLUSTER_SWITCH, FLEET, NAMESPACES, cluster_view

TIMINGS = LeaseTimings()  # 15 s lease, 10 s renew deadline, 2 s retry period
EPOCH = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
Object = dict[str, Any]


class VirtualTime:
    """A clock and a sleep for every elector: time moves only when the test says so, sleepers wake in order."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self.order = itertools.count()

    def monotonic(self, offset: float = 0.0) -> Any:
        return lambda: self.now + offset  # monotonic clocks of different processes start anywhere

    def wall(self) -> datetime:
        return EPOCH + timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self.sleepers, (self.now + max(0.0, seconds), next(self.order), future))
        await future

    async def settle(self) -> None:
        for _ in range(20):  # woken tasks run until they sleep again (the fake store never suspends)
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        until = self.now + seconds
        await self.settle()
        while self.sleepers and self.sleepers[0][0] <= until:
            wake, _, future = heapq.heappop(self.sleepers)
            self.now = wake
            if not future.done():
                future.set_result(None)
            await self.settle()
        self.now = until


class LeaseServer:
    """One Lease with the API server's rules: create refuses an existing object, update a stale resourceVersion."""

    def __init__(self, time: VirtualTime) -> None:
        self.time = time
        self.body: Object | None = None
        self.version = 0
        self.writes: dict[str, list[float]] = {}  # identity -> when its writes landed

    def client(self, identity: str) -> LeaseClient:
        return LeaseClient(self, identity)

    def land(self, identity: str, body: Object) -> Object:
        self.version += 1
        self.body = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}
        self.writes.setdefault(identity, []).append(self.time.now)
        return self.body

    @property
    def holder(self) -> str:
        return Record.of(self.body).holder if self.body else ""


class LeaseClient:
    """A replica's connection to the LeaseServer; `down` cuts it (the calls fail as a dead network does)."""

    def __init__(self, server: LeaseServer, identity: str) -> None:
        self.server = server
        self.identity = identity
        self.down = False

    def _reach(self, resource: Resource) -> None:
        assert resource == LEASES
        if self.down:
            raise httpx.ConnectError("connection refused")

    async def get(self, resource: Resource, namespace: str | None, name: str) -> Object | None:
        self._reach(resource)
        return self.server.body

    async def create(self, resource: Resource, namespace: str, body: Object) -> Object:
        self._reach(resource)
        if self.server.body is not None:
            raise ApiError(409, "leases.coordination.k8s.io already exists")
        return self.server.land(self.identity, body)

    async def replace(self, resource: Resource, namespace: str, name: str, body: Object) -> Object:
        self._reach(resource)
        assert self.server.body is not None
        if body["metadata"]["resourceVersion"] != self.server.body["metadata"]["resourceVersion"]:
            raise ApiError(409, "the object has been modified; please apply your changes to the latest version")
        return self.server.land(self.identity, body)


class Replica:
    """An elector running its loop, recording when it took over and stepped down."""

    def __init__(self, time: VirtualTime, server: LeaseServer, identity: str, offset: float = 0.0) -> None:
        self.time = time
        self.identity = identity
        self.client = server.client(identity)
        self.elector = LeaderElector(
            self.client, ElectionConfig(identity), monotonic=time.monotonic(offset), wall=time.wall, sleep=time.sleep
        )
        self.took_over: list[float] = []
        self.stepped_down: list[float] = []
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.elector.run(self._took_over, self._stepped_down))

    async def _took_over(self) -> None:
        self.took_over.append(self.time.now)

    async def _stepped_down(self) -> None:
        self.stepped_down.append(self.time.now)

    async def crash(self) -> None:
        """SIGKILL: the loop stops where it stands, nothing is released."""
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.task = None


@pytest.fixture
def time() -> VirtualTime:
    return VirtualTime()


@pytest.fixture
def server(time: VirtualTime) -> LeaseServer:
    return LeaseServer(time)


async def started(time: VirtualTime, server: LeaseServer, *identities: str) -> list[Replica]:
    replicas = [Replica(time, server, identity, offset=1000.0 * n) for n, identity in enumerate(identities)]
    for replica in replicas:
        replica.start()
        await time.settle()
    return replicas


async def test_the_first_replica_creates_the_lease_and_leads_and_a_second_stands_by_without_writing(
    time: VirtualTime, server: LeaseServer
) -> None:
    a, b = await started(time, server, "a", "b")
    assert (server.holder, a.took_over, b.took_over) == ("a", [0.0], [])
    lease = "ballast-system/ballast-operator"
    assert a.elector.report() == {"role": "leader", "identity": "a", "holder": "a", "lease": lease}
    assert b.elector.report()["role"] == "standby"
    spec = server.body["spec"] if server.body else {}
    assert (spec["leaseDurationSeconds"], spec["leaseTransitions"], spec["acquireTime"]) == (
        15, 0, "2026-11-27T10:00:00.000000Z"
    )  # fmt: skip

    await time.advance(60)
    assert server.holder == "a"
    assert "b" not in server.writes  # a standby only reads
    # Renewed every 2 s: 30 renewals in a minute, each a write of the holder.
    assert server.writes["a"] == [float(t) for t in range(0, 61, 2)]
    assert server.body is not None
    assert server.body["spec"]["renewTime"] == "2026-11-27T10:01:00.000000Z"
    assert server.body["spec"]["acquireTime"] == "2026-11-27T10:00:00.000000Z"  # kept while it renews
    assert (a.stepped_down, b.took_over) == ([], [])
    a.elector.fence()  # the leader writes
    with pytest.raises(NotLeader, match=re.escape(f"b does not hold a fresh lease {lease} (holder: a)")):
        b.elector.fence()


@pytest.mark.parametrize("standby_phase", [0.0, 0.7, 1.9])
@pytest.mark.parametrize("crash_after", [0.0, 0.5, 1.999, 7.3])
async def test_a_crashed_leader_is_replaced_within_the_failover_bound(
    time: VirtualTime, server: LeaseServer, crash_after: float, standby_phase: float
) -> None:
    (a,) = await started(time, server, "a")
    await time.advance(standby_phase)  # the standby's checks fall anywhere between the leader's renewals
    (b,) = await started(time, server, "b")
    await time.advance(20 + crash_after)
    last_renewal = server.writes["a"][-1]
    await a.crash()
    crashed_at = time.now
    await time.advance(30)
    assert len(b.took_over) == 1
    taken = b.took_over[0]
    # Never before the lease could expire, and never later than lease + one check after the last renewal.
    assert last_renewal + TIMINGS.duration <= taken <= last_renewal + TIMINGS.failover_bound
    assert taken - crashed_at <= TIMINGS.failover_bound == 17.0
    assert server.holder == "b"
    assert server.body is not None
    assert (server.body["spec"]["leaseTransitions"], server.body["spec"]["acquireTime"]) == (
        1, (EPOCH + timedelta(seconds=taken)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )  # fmt: skip


async def test_a_leader_that_reads_another_holder_stops_writing_at_once(time: VirtualTime, server: LeaseServer) -> None:
    (a,) = await started(time, server, "a")
    await time.advance(3)
    assert server.body is not None
    server.land("admin", {**server.body, "spec": {**server.body["spec"], "holderIdentity": "c"}})  # kubectl edit
    await time.advance(TIMINGS.retry_period)
    assert a.stepped_down == [4.0]  # its next renewal, 6 s before its fence would have closed
    with pytest.raises(NotLeader, match="holder: c"):
        a.elector.fence()


async def test_a_leader_that_cannot_renew_stops_writing_before_a_standby_may_take_over(
    time: VirtualTime, server: LeaseServer
) -> None:
    a, b = await started(time, server, "a", "b")
    await time.advance(21)
    a.client.down = True  # partitioned from the API server, still running
    last_renewal = server.writes["a"][-1]
    await time.advance(30)
    assert a.stepped_down == [last_renewal + TIMINGS.renew_deadline]  # exactly at its fence
    assert b.took_over[0] >= a.stepped_down[0] + (TIMINGS.duration - TIMINGS.renew_deadline)  # 5 s apart at least
    with pytest.raises(NotLeader):
        a.elector.fence()
    a.client.down = False  # back: it finds another holder and stays a standby
    await time.advance(10)
    assert (server.holder, a.took_over, a.elector.report()["holder"]) == ("b", [0.0], "b")


async def test_a_graceful_stop_hands_the_lease_over_at_the_next_check(time: VirtualTime, server: LeaseServer) -> None:
    a, b = await started(time, server, "a", "b")
    await time.advance(11)
    await a.crash()
    await a.elector.release()
    with pytest.raises(NotLeader):
        a.elector.fence()  # the fence closes before the lease is handed over
    assert server.holder == ""
    released_at = time.now
    await time.advance(5)
    assert len(b.took_over) == 1
    assert b.took_over[0] - released_at <= TIMINGS.retry_period


async def test_a_restarted_replica_takes_its_own_lease_back_at_once(time: VirtualTime, server: LeaseServer) -> None:
    (a,) = await started(time, server, "a")
    await time.advance(5)
    await a.crash()
    (again,) = await started(time, server, "a")  # a container restart keeps the pod's name
    assert again.took_over == [time.now]
    assert server.body is not None
    assert server.body["spec"]["leaseTransitions"] == 0


async def test_of_two_standbys_racing_for_an_expired_lease_one_wins(time: VirtualTime, server: LeaseServer) -> None:
    a = Replica(time, server, "a")
    await a.elector.attempt()
    b, c = Replica(time, server, "b"), Replica(time, server, "c")
    await b.elector.attempt()
    await c.elector.attempt()
    time.now += TIMINGS.duration
    stale = server.body
    await b.elector.attempt()
    # c read the same expired record; its update carries the old resourceVersion and is refused.
    c.client.get = lambda *_: _value(stale)  # type: ignore[method-assign]
    await c.elector.attempt()
    assert (b.elector.leading(), c.elector.leading(), server.holder) == (True, False, "b")


async def _value(body: Object | None) -> Object | None:
    return body


async def test_a_standby_counts_from_when_it_saw_the_record_not_from_the_wall_clock_in_it(
    time: VirtualTime, server: LeaseServer
) -> None:
    a = Replica(time, server, "a")
    await a.elector.attempt()
    time.now += 100  # the record's renewTime is long past, and a has crashed: b has not seen it age yet
    b = Replica(time, server, "b")
    await b.elector.attempt()
    assert not b.elector.leading()
    assert b.elector.pause() == TIMINGS.retry_period
    time.now += TIMINGS.duration - 0.5
    assert b.elector.pause() == pytest.approx(0.5)  # wakes exactly when the lease expires in its own view
    time.now += 0.5
    await b.elector.attempt()
    assert b.elector.leading()


def test_lease_timings_refuse_a_fence_that_outlives_the_lease() -> None:
    with pytest.raises(ValueError, match=re.escape("0 < retry period < renew deadline < duration, got 2.0 s, 15.0 s")):
        LeaseTimings(renew_deadline=15.0)


# Events a schedule is made of: which replica, and what happens to it.
ACTIONS = st.sampled_from(["crash", "restart", "cut", "mend", "release", "wait"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), ACTIONS, st.floats(0.01, 12.0)), min_size=1, max_size=25))
async def test_at_most_one_replica_may_write_at_any_moment_and_a_reachable_one_soon_leads(
    schedule: list[tuple[int, str, float]],
) -> None:
    time = VirtualTime()
    server = LeaseServer(time)
    replicas = await started(time, server, "a", "b", "c")

    async def advance_checking(seconds: float) -> None:
        # leading() only turns on at a write, so checking after each wake and step covers every moment.
        for _ in range(int(seconds / 0.25) + 1):
            await time.advance(min(0.25, seconds))
            assert sum(r.elector.leading() for r in replicas) <= 1, time.now

    for index, action, seconds in schedule:
        replica = replicas[index]
        if action == "crash" and replica.task:
            await replica.crash()
        elif action == "restart" and not replica.task:
            replica.start()
        elif action in ("cut", "mend"):
            replica.client.down = action == "cut"
        elif action == "release" and replica.task:
            await replica.crash()
            await replica.elector.release()
        await advance_checking(seconds)

    running = [r for r in replicas if r.task]
    for replica in running:
        replica.client.down = False
    await advance_checking(TIMINGS.failover_bound + TIMINGS.retry_period)
    if running:
        assert sum(r.elector.leading() for r in running) == 1
    for replica in running:
        await replica.crash()


# ---------------------------------------------------------------------------------- the write fence


def recording_api(seen: list[str]) -> KubeApi:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return httpx.Response(200, json={"metadata": {"name": "bot", "resourceVersion": "2"}})

    return KubeApi(httpx.AsyncClient(base_url="https://api.test", transport=httpx.MockTransport(handle)))


async def test_a_fenced_api_reads_but_sends_no_write() -> None:
    seen: list[str] = []
    api = recording_api(seen)
    time = VirtualTime()
    elector = LeaderElector(LeaseServer(time).client("a"), ElectionConfig("a"), monotonic=time.monotonic())
    api.write_fence = elector.fence
    assert await api.get(MODEL_DEPLOYMENTS, "ns", "bot") is not None
    with pytest.raises(NotLeader):
        await api.patch_status(MODEL_DEPLOYMENTS, "ns", "bot", {"phase": "Stable"}, "1")
    with pytest.raises(NotLeader):
        await api.create(MODEL_DEPLOYMENTS, "ns", {})
    assert seen == ["GET"]
    await elector.attempt()
    await api.patch_status(MODEL_DEPLOYMENTS, "ns", "bot", {"phase": "Stable"}, "1")
    time.now += TIMINGS.renew_deadline - 0.001
    await api.delete(MODEL_DEPLOYMENTS, "ns", "bot")
    time.now += 0.001  # 10 s after the renewal started: nothing more goes out
    with pytest.raises(NotLeader):
        await api.delete(MODEL_DEPLOYMENTS, "ns", "bot")
    assert seen == ["GET", "PATCH", "DELETE"]
    await api.close()


# ------------------------------------------------------------------------------ what leading means


async def test_a_paused_runner_drops_requests_and_cancels_its_runs_until_resumed() -> None:
    ran: list[str] = []
    started_run = asyncio.Event()

    async def work(key: str) -> None:
        started_run.set()
        await asyncio.sleep(3600)
        ran.append(key)

    runner: PerKeyRunner[str] = PerKeyRunner(work, lambda key, error: None)
    runner.notify("x")
    await started_run.wait()
    runner.notify("x")  # waits behind the run in flight
    await runner.pause()
    assert (runner.tasks, runner.pending, ran) == (set(), {}, [])
    runner.notify("y")
    assert runner.tasks == set()
    runner.resume()
    started_run.clear()
    runner.notify("x")  # the key cancelled while pending is not stuck
    await started_run.wait()
    await runner.stop()


@pytest.fixture
async def leadership() -> AsyncIterator[tuple[Leadership, list[Any], list[Any]]]:
    view = cluster_view([CLUSTER_SWITCH], [*FLEET, DeploymentEntry("other", "bot", {})], NAMESPACES)
    reconciler = Reconciler(
        recording_api([]), view=view, references=ReferenceView({}, {}), children=Children({}, {}, {}, {}, {}, {}, {})
    )
    dispatcher = KillSwitchDispatcher(reconciler.api, view, reconciler)
    reconciled: list[Any] = []
    written: list[Any] = []
    reconciler.runner.work = _recorder(reconciled)  # type: ignore[method-assign]
    dispatcher.runner.work = _recorder(written)  # type: ignore[method-assign]
    elector = LeaderElector(LeaseServer(VirtualTime()).client("a"), ElectionConfig("a"))
    yield Leadership(elector, reconciler, dispatcher, view), reconciled, written
    await reconciler.api.close()


def _recorder(into: list[Any]) -> Any:
    async def record(key: Any) -> None:
        into.append(key)

    return record


async def test_a_standby_acts_on_no_event_and_a_take_over_reconciles_everything_known(
    leadership: tuple[Leadership, list[Any], list[Any]],
) -> None:
    duty, reconciled, written = leadership
    await duty.stand_by()
    duty.reconciler.notify("prod-1", "bot")
    duty.dispatcher.switch_changed(None, CLUSTER_SWITCH)  # its memory of what the switch selects stays warm
    await asyncio.sleep(0)
    assert (reconciled, written) == ([], [])
    assert duty.dispatcher.selected[("ClusterKillSwitch", "", "outage")] == {("prod-1", "bot"), ("prod-2", "bot")}

    await duty.take_over()
    for _ in range(5):
        await asyncio.sleep(0)
    assert sorted(reconciled) == sorted({(e.namespace, e.name) for e in [*FLEET, DeploymentEntry("other", "bot", {})]})
    assert written == [("ClusterKillSwitch", "", "outage")]

    await duty.stand_by()
    duty.reconciler.notify("prod-1", "bot")
    await asyncio.sleep(0)
    assert len(reconciled) == len(FLEET) + 1


async def test_a_take_over_waits_for_the_indexes(leadership: tuple[Leadership, list[Any], list[Any]]) -> None:
    duty, reconciled, _ = leadership
    await duty.stand_by()
    campaign = asyncio.get_running_loop().create_task(duty.campaign())
    for _ in range(5):
        await asyncio.sleep(0)
    assert (duty.elector.leading(), reconciled) == (False, [])
    duty.indexes_filled()
    for _ in range(10):
        await asyncio.sleep(0)
    assert duty.elector.leading()
    assert len(reconciled) == len(FLEET) + 1
    campaign.cancel()
    await duty.stop()
    assert not duty.elector.leading()
