"""Leader election on a coordination.k8s.io/v1 Lease: of all the operator's replicas, one writes.

The numbers (`LeaseTimings`): the Lease lasts 15 s; the leader renews it every 2 s and writes only
while its last successful renewal *started* less than 10 s ago (the fence, on this process's
monotonic clock); a standby reads the Lease every 2 s and takes it over once it has seen the same
record unchanged for 15 s on its own monotonic clock. No wall clocks are compared across machines
(the approach of client-go's leader election), so clock skew cannot shorten a lease.

Why this is safe: a renewal reaches the API server after it started, and a standby starts counting
only once it has read that renewal, so a standby takes over no earlier than 15 s after the start of
the leader's last renewal; the leader stops writing 10 s after it. The 5 s between them cover a
write already in flight and a slow event loop. Renewals and take-overs are PUTs guarded by
resourceVersion: of two candidates racing for one record, one gets 409 Conflict.

Failover bound: a leader that crashed is replaced at most 17 s (lease 15 s + one 2 s check) after its
last renewal, hence at most 17 s after the crash, plus one API round trip. A leader that stops
gracefully releases the Lease: a standby takes over at its next check (at most 2 s).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ballast import __version__
from ballast.kube.client import ApiError
from ballast.kube.resources import LEASES, Resource

log = logging.getLogger("ballast.leader")
Object = dict[str, Any]


def default_identity() -> str:
    """The pod's name (POD_NAME, else the hostname a pod gets) and the process id: unique per replica, and the
    same after a container restart (pid 1 again), so a restarted leader takes its own lease back at once."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}-{os.getpid()}"


def user_agent(identity: str) -> str:
    """What the API server's audit log records for every call of this replica."""
    return f"ballast/{__version__} ({identity})"


@dataclass(frozen=True)
class LeaseTimings:
    duration: float = 15.0  # spec.leaseDurationSeconds: how long a standby waits on an unchanged record
    renew_deadline: float = 10.0  # the leader writes only this long after its last successful renewal started
    retry_period: float = 2.0  # the leader renews, and a standby checks, this often

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError(
                "lease timings must satisfy 0 < retry period < renew deadline < duration, got "
                f"{self.retry_period} s, {self.renew_deadline} s, {self.duration} s"
            )

    @property
    def failover_bound(self) -> float:
        """Seconds from a crashed leader's last renewal to a standby's take-over (plus one round trip)."""
        return self.duration + self.retry_period


@dataclass(frozen=True)
class ElectionConfig:
    identity: str  # unique per replica (the pod name); the same identity after a restart takes its own lease back
    namespace: str = "ballast-system"
    name: str = "ballast-operator"
    timings: LeaseTimings = field(default_factory=LeaseTimings)

    @property
    def lease(self) -> str:
        return f"{self.namespace}/{self.name}"


class LeaseStore(Protocol):
    """The three calls an election makes (kube.client.KubeApi has them)."""

    async def get(self, resource: Resource, namespace: str | None, name: str) -> Object | None: ...

    async def create(self, resource: Resource, namespace: str, body: Object) -> Object: ...

    async def replace(self, resource: Resource, namespace: str, name: str, body: Object) -> Object: ...


class NotLeader(RuntimeError):
    """A write refused because this process does not hold a fresh lease."""


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339, microseconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Record:
    """What a Lease says, and the resourceVersion that changes with any write to it."""

    holder: str
    duration: float
    transitions: int
    acquired: str | None
    version: str

    @classmethod
    def of(cls, body: Object) -> Record:
        spec = body.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            duration=float(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
            acquired=spec.get("acquireTime"),
            version=str(body["metadata"].get("resourceVersion", "")),
        )


class LeaderElector:
    """One replica's side of the election: `attempt()` is one round, `run()` keeps going and reports changes."""

    def __init__(
        self,
        store: LeaseStore,
        config: ElectionConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.config = config
        self.timings = config.timings
        self.monotonic = monotonic
        self.wall = wall
        self.sleep = sleep
        self.renewed_at: float | None = None  # when the last successful acquire or renewal was sent
        self.seen: Record | None = None  # the Lease as last read or written
        self.seen_at = 0.0  # when `seen` was first read in this form: a standby's lease clock starts here

    # ----------------------------------------------------------------------------- the fence

    def leading(self) -> bool:
        return self.renewed_at is not None and self.monotonic() < self.renewed_at + self.timings.renew_deadline

    def fence(self) -> None:
        """Refuse a write unless this process holds a fresh lease (KubeApi calls it before every write)."""
        if not self.leading():
            raise NotLeader(
                f"{self.config.identity} does not hold a fresh lease {self.config.lease} "
                f"(holder: {self.holder or 'none'}); the write was not sent"
            )

    @property
    def holder(self) -> str | None:
        return self.seen.holder or None if self.seen else None

    def report(self) -> dict[str, Any]:
        """Readiness: leader or standby, and who leads."""
        return {
            "role": "leader" if self.leading() else "standby",
            "identity": self.config.identity,
            "holder": self.holder,
            "lease": self.config.lease,
        }

    # ------------------------------------------------------------------------------- a round

    async def attempt(self) -> None:
        """Read the Lease; acquire or renew it if this process may; step down if another holds it."""
        namespace, name = self.config.namespace, self.config.name
        try:
            body = await self.store.get(LEASES, namespace, name)
            if body is None:
                sent = self.monotonic()
                self._won(await self.store.create(LEASES, namespace, self._lease(None)), sent)
                return
            record = self._observe(body)
            if record.holder and record.holder != self.config.identity and not self._expired(record):
                self.renewed_at = None  # another holds it: stop writing now, not at the deadline
                return
            sent = self.monotonic()
            self._won(await self.store.replace(LEASES, namespace, name, self._lease(body)), sent)
        except ApiError as error:
            if error.status != 409:
                log.warning("lease %s: %s", self.config.lease, error)
                return  # the fence closes on its own if this lasts
            self.renewed_at = None  # another candidate wrote first: it holds the lease
            log.info("lease %s: another replica wrote it first", self.config.lease)
        except Exception as error:  # any failure of one round (timeouts, connections): the fence closes by time
            log.warning("lease %s: %s: %s", self.config.lease, type(error).__name__, error)

    def _observe(self, body: Object) -> Record:
        record = Record.of(body)
        if self.seen is None or record.version != self.seen.version:
            self.seen, self.seen_at = record, self.monotonic()
        return record

    def _expired(self, record: Record) -> bool:
        return self.monotonic() - self.seen_at >= record.duration

    def _lease(self, current: Object | None) -> Object:
        now = micro_time(self.wall())
        before = Record.of(current) if current is not None else None
        kept = before is not None and before.holder == self.config.identity
        spec = {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": int(self.timings.duration),
            "acquireTime": before.acquired if kept and before else now,
            "renewTime": now,
            "leaseTransitions": (before.transitions + (0 if kept else 1)) if before else 0,
        }
        metadata: Object = {"name": self.config.name, "namespace": self.config.namespace}
        if current is not None:
            metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    def _won(self, body: Object, sent: float) -> None:
        previous = self.holder
        self.renewed_at = sent
        self.seen, self.seen_at = Record.of(body), self.monotonic()
        if previous != self.config.identity:
            log.info("%s holds lease %s (previous holder: %s)", self.config.identity, self.config.lease, previous)

    # --------------------------------------------------------------------------- the loop

    def pause(self) -> float:
        """Seconds until the next round: a renewal before the fence closes, a check when a lease may expire."""
        period = self.timings.retry_period
        if self.leading():
            assert self.renewed_at is not None
            return min(period, self.renewed_at + self.timings.renew_deadline - self.monotonic())
        if self.seen is not None and self.seen.holder not in ("", self.config.identity):
            expires_in = self.seen_at + self.seen.duration - self.monotonic()
            if 0 < expires_in < period:
                return expires_in
        return period

    async def run(self, took_over: Callable[[], Awaitable[None]], stepped_down: Callable[[], Awaitable[None]]) -> None:
        """Campaign forever; `took_over` runs when this process starts leading, `stepped_down` when it stops."""
        leading = False
        while True:
            if leading and not self.leading():  # the fence closed: stop before trying again
                leading, self.renewed_at = False, None
                log.warning("%s lost lease %s; standing by", self.config.identity, self.config.lease)
                await stepped_down()
            await self.attempt()
            if self.leading() != leading:
                leading = not leading
                if not leading:
                    log.warning("%s lost lease %s to %s", self.config.identity, self.config.lease, self.holder)
                await (took_over if leading else stepped_down)()
            await self.sleep(self.pause())

    async def release(self) -> None:
        """Graceful stop: close the fence, then hand the lease back so a standby takes over at its next check."""
        if self.renewed_at is None:
            return
        self.renewed_at = None
        try:
            current = await self.store.get(LEASES, self.config.namespace, self.config.name)
            if current is None or Record.of(current).holder != self.config.identity:
                return
            released = self._lease(current)
            released["spec"].update(holderIdentity=None, leaseDurationSeconds=1)
            await self.store.replace(LEASES, self.config.namespace, self.config.name, released)
            log.info("%s released lease %s", self.config.identity, self.config.lease)
        except Exception as error:  # the lease then expires on its own
            log.warning("lease %s not released (%s); it expires in %.0f s", self.config.lease, error,
                        self.timings.duration)  # fmt: skip
