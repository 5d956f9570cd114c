"""The status of a KillSwitch or ClusterKillSwitch: what it selects and how each selected deployment stands.

Pure: built from the switch and the ModelDeployments' own kill-switch status (as the index holds
them), so it is written only when something a person reads has changed. A deployment counts as
switched once the Gateway accepted the route that carries its fallback, not when it was written.
"""

from __future__ import annotations

from ballast.api.killswitch import KillSwitchStatus, SwitchedDeployment
from ballast.rollout.conditions import condition, keep_transition_times
from ballast.rollout.context import Event
from ballast.rollout.switch_selection import DeploymentEntry, Switch

LISTED = 500  # deployments named in status; `matched` counts them all
NAMED = 10  # deployments named in one condition message


def _names(entries: list[DeploymentEntry], why: dict[tuple[str, str], str]) -> str:
    return "; ".join(f"{d.namespace}/{d.name}: {why[(d.namespace, d.name)]}" for d in entries[:NAMED])


def problem(entry: DeploymentEntry) -> str | None:
    """Why a selected deployment is not switched, or holds without a usable fallback (None: nothing wrong)."""
    if not entry.engaged:
        return entry.refused or "not switched yet"
    if entry.holding:
        return entry.holding
    if not entry.accepted:
        return entry.not_accepted or "the route is written; the Gateway has not accepted it yet"
    return None


def switch_status(
    switch: Switch, generation: int | None, before: KillSwitchStatus, selected: list[DeploymentEntry], now: str
) -> KillSwitchStatus:
    engaged = switch.spec.engaged
    why = {(d.namespace, d.name): problem(d) or "" for d in selected}
    switched = [d for d in selected if d.engaged and d.accepted]
    refused = [d for d in selected if not d.engaged and d.refused]
    holding = [d for d in selected if d.engaged and d.holding]
    if not engaged:
        state = condition("Engaged", False, "Released", "spec.engaged is false: the switch holds nothing")
    elif not selected:
        state = condition("Engaged", False, "NothingSelected", "no ModelDeployment matches the selector")
    else:
        state = condition("Engaged", True, "Engaged", f"{len(switched)} of {len(selected)} selected ModelDeployments "
                          "serve their users from a fallback the Gateway accepted")  # fmt: skip
    if not engaged or not selected or len(switched) == len(selected):
        message = "every selected ModelDeployment is where the switch says"
        if engaged and holding:
            message += (
                f"; {len(holding)} hold their users off the model with no usable fallback: {_names(holding, why)}"
            )
        ready = condition("Ready", True, "AllSwitched", message)
    elif refused:
        ready = condition("Ready", False, "CannotSwitch", f"{len(refused)} cannot be switched: {_names(refused, why)}")
    else:
        waiting = [d for d in selected if not (d.engaged and d.accepted)]
        ready = condition("Ready", False, "Switching", f"{len(waiting)} not switched yet: {_names(waiting, why)}")
    return KillSwitchStatus(
        observed_generation=generation,
        engaged_at=(before.engaged_at or now) if engaged else None,
        matched=len(selected),
        deployments=[_listed(d, engaged) for d in selected[:LISTED]],
        conditions=keep_transition_times(before.conditions, [state, ready], now),
    )


def _listed(entry: DeploymentEntry, engaged: bool) -> SwitchedDeployment:
    return SwitchedDeployment(
        namespace=entry.namespace,
        name=entry.name,
        fallback=entry.fallback if entry.engaged else None,
        since=entry.since if entry.engaged else None,
        accepted=entry.engaged and entry.accepted,
        problem=problem(entry) if engaged else None,
    )


def switch_events(before: KillSwitchStatus, selected: list[DeploymentEntry]) -> list[Event]:
    """Warnings on the switch itself, once per change: each deployment it cannot switch, or that holds its
    users off the model with no usable fallback, by name."""
    known = {(d.namespace, d.name): d.problem for d in before.deployments}
    events = []
    for entry in selected[:LISTED]:
        key = (entry.namespace, entry.name)
        if not entry.engaged and entry.refused and known.get(key) != entry.refused:
            events.append(Event("Warning", "CannotSwitch", f"{entry.namespace}/{entry.name} cannot be switched: "
                                f"{entry.refused}"))  # fmt: skip
        elif entry.engaged and entry.holding and known.get(key) != entry.holding:
            events.append(Event("Warning", "KillSwitchHolding", f"{entry.namespace}/{entry.name}: {entry.holding}"))
    return events
