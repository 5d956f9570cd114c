"""Capacity in the decision core: replicas per revision, what a weight needs ready, what serving costs.

GPUs are scarce, so a canary runs in proportion to its weight (or at full size when asked), the
stable may give the canary's replicas up as it grows (no surge), and the previous revision is kept
warm at a declared size. A weight moves to a revision only once its ready replicas can carry it.
Pods the scheduler cannot place are reported (a condition and an Event with the numbers), and the
ready replica-hours every revision spent are counted in status.

The arithmetic (`canary_replicas`, `stable_replicas`, `ready_needed`) is plain functions of
numbers, property-tested on its own.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from ballast.api.modeldeployment import Capacity
from ballast.api.status import ModelDeploymentStatus, RevisionStatus
from ballast.api.timestamps import parse_time
from ballast.api.types import Condition
from ballast.rollout.conditions import condition
from ballast.rollout.context import Context
from ballast.rollout.observations import Observations

_HOUR = 3600.0


def canary_replicas(total: int, weight: int, mode: str) -> int:
    """Replicas a canary runs at `weight` percent: ceil(total x weight), at least one; `full`: all of them."""
    if total <= 0:
        return 0
    if mode == "full":
        return total
    return max(1, math.ceil(total * weight / 100))


def stable_replicas(total: int, stable_weight: int, canary: int, mode: str) -> int:
    """Replicas of the stable while a canary runs `canary` replicas: all (`full`), or what the canary leaves of
    `total` (`shrink`), never below one while the stable still serves."""
    if mode == "full":
        return total
    floor = 1 if stable_weight > 0 and total > 0 else 0
    return min(total, max(floor, total - canary))


def ready_needed(total: int, weight: int, capacity: Capacity, stable_weight: int) -> int:
    """Ready canary replicas before the canary may serve `weight` percent (the stable serving `stable_weight` now).

    A shrinking stable keeps one replica while it serves, and that one stops only after the weight has moved,
    so the canary cannot count on its GPU: it needs at most what the stable leaves of `total`.
    """
    wanted = canary_replicas(total, weight, capacity.canary)
    if capacity.stable == "shrink":
        left = stable_replicas(total, stable_weight, wanted, "shrink")
        wanted = min(wanted, max(1, total - left))
    return wanted


def previous_replicas(declared: int | None, total: int, current: int) -> int:
    """A warm previous revision keeps at most its declared size, and never grows (it keeps what it has)."""
    wanted = total if declared is None else declared
    return min(wanted, current)


def missing_resources(message: str) -> list[str]:
    """The resources a scheduler message names as insufficient ('0/3 nodes are available: 3 Insufficient
    nvidia.com/gpu.' -> ['nvidia.com/gpu'])."""
    found: list[str] = []
    words = message.split()
    for before, word in itertools.pairwise(words):
        name = word.rstrip(",.;")
        if before == "Insufficient" and name and name not in found:
            found.append(name)
    return found


def _shortage(role: str, revision: RevisionStatus, observations: Observations) -> str:
    seen = observations.of(revision.name)
    missing = ", ".join(missing_resources(seen.unschedulable_reason)) or "no node fits"
    return (
        f"{role} {revision.name}: {revision.unschedulable} of {revision.replicas} pods unschedulable "
        f"(missing {missing}; {seen.gpus_per_pod} GPUs per pod): {seen.unschedulable_reason}"
    )


def report(ctx: Context, before: ModelDeploymentStatus) -> None:
    """Each revision's ready, unschedulable and GPU numbers in status; an Event when pods become unschedulable
    and when they are all placed again."""
    s, observations = ctx.status, ctx.observations
    earlier = {r.name: r.unschedulable for r in before.revisions}
    for revision in s.revisions:
        seen = observations.of(revision.name)
        revision.ready_replicas = seen.ready_replicas
        revision.unschedulable = seen.unschedulable if revision.replicas > 0 else 0
        revision.requested_gpus = seen.gpus_per_pod * revision.replicas
        was = earlier.get(revision.name, 0)
        values = {
            "unschedulable": float(revision.unschedulable),
            "replicas": float(revision.replicas),
            "readyReplicas": float(revision.ready_replicas),
            "gpusPerPod": float(seen.gpus_per_pod),
        }
        if revision.unschedulable and not was:
            shortage = _shortage(revision.role, revision, observations)
            ctx.record(
                "capacity", "Unschedulable", f"Pods cannot be scheduled: {shortage}",
                revision=revision.name, step=s.current_step, warning=True, values=values,
            )  # fmt: skip
        elif was and not revision.unschedulable and revision.replicas > 0:  # not merely scaled to zero
            ctx.record(
                "capacity", "Scheduled", f"Every pod of {revision.role} {revision.name} is scheduled again",
                revision=revision.name, step=s.current_step, values=values,
            )  # fmt: skip
    totals = s.capacity
    totals.replicas = sum(r.replicas for r in s.revisions)
    totals.ready_replicas = sum(r.ready_replicas for r in s.revisions)
    totals.unschedulable = sum(r.unschedulable for r in s.revisions)
    totals.requested_gpus = sum(r.requested_gpus for r in s.revisions)


def capacity_condition(status: ModelDeploymentStatus, observations: Observations) -> Condition:
    short = [_shortage(r.role, r, observations) for r in status.revisions if r.unschedulable]
    if short:
        return condition("CapacityAvailable", False, "Unschedulable", "; ".join(short)[:1000])
    totals = status.capacity
    return condition(
        "CapacityAvailable", True, "Scheduled",
        f"every desired pod is scheduled: {totals.ready_replicas}/{totals.replicas} ready, "
        f"{totals.requested_gpus} GPUs requested",
    )  # fmt: skip


def _without_accounting(status: ModelDeploymentStatus) -> dict[str, Any]:
    dumped = status.model_dump()
    dumped.pop("capacity")
    for revision in dumped["revisions"]:
        revision.pop("replica_hours")
    return dumped


def account(ctx: Context, before: ModelDeploymentStatus) -> None:
    """Add the ready replica-hours since the last count. Ready counts are in status, and status changes whenever
    they do, so counting only at decisions that change something else is exact, and a decision that changes
    nothing still writes nothing."""
    s = ctx.status
    if s.capacity.accounted_at is not None and _without_accounting(s) == _without_accounting(before):
        s.capacity = before.capacity.model_copy()
        return
    hours = 0.0
    if before.capacity.accounted_at is not None:
        hours = max(0.0, (ctx.now - parse_time(before.capacity.accounted_at)).total_seconds() / _HOUR)
    ready_before = {r.name: r.ready_replicas for r in before.revisions}
    replica_hours = gpu_hours = 0.0
    for revision in s.revisions:
        spent = ready_before.get(revision.name, 0) * hours
        revision.replica_hours += spent
        replica_hours += spent
        gpu_hours += spent * ctx.observations.of(revision.name).gpus_per_pod
    s.capacity = s.capacity.model_copy(
        update={
            "replica_hours": before.capacity.replica_hours + replica_hours,
            "gpu_hours": before.capacity.gpu_hours + gpu_hours,
            "accounted_at": ctx.now_text,
        }
    )
