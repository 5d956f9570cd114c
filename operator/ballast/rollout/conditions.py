"""Ready, Progressing and Degraded conditions, derived from status (transition times kept when unchanged)."""

from __future__ import annotations

from ballast.api import inert
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import ModelDeploymentStatus
from ballast.api.types import Condition
from ballast.rollout.observations import Observations


def condition(kind: str, holds: bool, reason: str, message: str) -> Condition:
    return Condition(type=kind, status="True" if holds else "False", reason=reason, message=message)


def set_conditions(
    status: ModelDeploymentStatus, observations: Observations, now: str, extra: list[Condition] | None = None
) -> None:
    """Ready, Progressing, Degraded, MetricsAvailable and `extra`, keeping transition times of unchanged ones."""
    stable = observations.of(status.stable_revision)
    ready_message = f"stable revision {status.stable_revision}: {stable.ready_replicas} ready replicas"
    if stable.available:
        ready_reason = "StableAvailable"
    elif stable.refused:
        ready_reason, ready_message = "PodsRefused", f"{ready_message}; its pods are refused: {stable.refused}"
    else:
        ready_reason = "StableUnavailable"
    desired = [
        condition("Ready", stable.available, ready_reason, ready_message),
        condition(
            "Progressing",
            status.phase in ("Progressing", "Paused", "Promoting"),
            status.phase,
            status.message,
        ),
        condition(
            "Degraded",
            status.phase in ("RolledBack", "Failed"),
            status.phase,
            status.message if status.phase in ("RolledBack", "Failed") else "",
        ),
    ]
    checked = status.last_analysis
    if checked is not None:
        unreachable = checked.verdict == "Error"
        reason = "; ".join(o.reason for o in checked.objectives if o.verdict == "Error")[:1000]
        desired.append(
            condition(
                "MetricsAvailable",
                not unreachable,
                "QueryFailed" if unreachable else "Answering",
                reason if unreachable else "the metrics provider answers contract checks",
            )
        )
    desired.extend(extra or [])
    for wanted in desired:
        wanted.observed_generation = status.observed_generation
    status.conditions = keep_transition_times(status.conditions, desired, now)


def not_acted_on(spec: ModelDeploymentSpec) -> list[Condition]:
    """FieldsNotActedOn, naming every field this spec sets that nothing acts on yet (`api/inert.py`); absent
    when there is none."""
    found = inert.inert_fields_set(spec)
    if not found:
        return []
    message = "; ".join(f"{path}: {missing}" for path, missing in found.items())
    return [condition(inert.CONDITION, True, "NoBehaviourYet", message)]


def keep_transition_times(before: list[Condition], after: list[Condition], now: str) -> list[Condition]:
    """`after`, each condition keeping its transition time while its status is unchanged, else `now`."""
    previous = {c.type: c for c in before}
    for wanted in after:
        old = previous.get(wanted.type)
        unchanged = old is not None and old.status == wanted.status
        wanted.last_transition_time = old.last_transition_time if unchanged and old else now
    return after
