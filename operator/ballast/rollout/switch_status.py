"""The status of a KillSwitch or ClusterKillSwitch: what it selects and how each selected deployment stands.

Pure: built from the switch and the ModelDeployments' own kill-switch status (as the index holds
them), so it is written only when something a person reads has changed.
"""

from __future__ import annotations

from ballast.api.killswitch import KillSwitchStatus, SwitchedDeployment
from ballast.rollout.conditions import condition, keep_transition_times
from ballast.rollout.switch_selection import DeploymentEntry, Switch

LISTED = 500  # deployments named in status; `matched` counts them all


def switch_status(
    switch: Switch, generation: int | None, before: KillSwitchStatus, selected: list[DeploymentEntry], now: str
) -> KillSwitchStatus:
    engaged = switch.spec.engaged
    routed = [d for d in selected if d.engaged]
    refused = [d for d in selected if not d.engaged and d.refused]
    if not engaged:
        state = condition("Engaged", False, "Released", "spec.engaged is false: the switch holds nothing")
    elif not selected:
        state = condition("Engaged", False, "NothingSelected", "no ModelDeployment matches the selector")
    else:
        state = condition("Engaged", True, "Engaged", f"{len(routed)} of {len(selected)} selected ModelDeployments "
                          "route their users to a fallback")  # fmt: skip
    if not engaged or not selected or len(routed) == len(selected):
        ready = condition("Ready", True, "AllSwitched", "every selected ModelDeployment is where the switch says")
    elif refused:
        names = "; ".join(f"{d.namespace}/{d.name}: {d.refused}" for d in refused[:10])
        ready = condition("Ready", False, "NoUsableFallback", f"{len(refused)} cannot be switched: {names}")
    else:
        ready = condition("Ready", False, "Switching", f"{len(selected) - len(routed)} not switched yet")
    return KillSwitchStatus(
        observed_generation=generation,
        engaged_at=(before.engaged_at or now) if engaged else None,
        matched=len(selected),
        deployments=[_listed(d) for d in selected[:LISTED]],
        conditions=keep_transition_times(before.conditions, [state, ready], now),
    )


def _listed(entry: DeploymentEntry) -> SwitchedDeployment:
    return SwitchedDeployment(
        namespace=entry.namespace,
        name=entry.name,
        fallback=entry.fallback if entry.engaged else None,
        since=entry.since if entry.engaged else None,
    )
