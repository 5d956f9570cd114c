"""What the core does about what Ballast may not touch: objects it did not create, a route it may not write.

Neither is an error to retry blindly. Traffic stays exactly as it is, a condition says why (always
present, so `kubectl wait --for=condition=...` works both ways), and each problem is one decision
(an Event and a history entry) when it appears, not one per reconcile while it lasts.
"""

from __future__ import annotations

from ballast.api.types import Condition
from ballast.rollout.conditions import condition
from ballast.rollout.context import Context, split_values
from ballast.rollout.observations import Observations

ADOPTION = "Ballast never adopts an object it did not create: rename or remove it"
HELD = "traffic is left exactly as it is, and rollout steps and kill switches wait until this is resolved"
# Condition type -> the history action of its refusal.
ACTIONS = {"ChildrenOwned": "refuse-adoption", "RouteAccepted": "refuse-route"}


def conditions(observations: Observations) -> list[Condition]:
    """ChildrenOwned (no object of a child's name belongs to anyone else) and RouteAccepted (the route is Ballast's
    to write)."""
    conflicts = observations.conflicts
    owned = condition(
        "ChildrenOwned",
        not conflicts,
        "NameTaken" if conflicts else "Owned",
        f"{'; '.join(conflicts)}. {ADOPTION}" if conflicts else "every object Ballast writes for it is its own",
    )
    refused = observations.route_refused
    route = condition(
        "RouteAccepted",
        refused is None,
        refused.reason if refused else "Accepted",
        f"{refused.message}; {HELD}" if refused else "the route is Ballast's to write",
    )
    return [owned, route]


def record_new(ctx: Context, before: list[Condition]) -> None:
    """A decision for each refusal that is new since the last reconcile (by its message)."""
    previous = {c.type: c for c in before}
    for wanted in conditions(ctx.observations):
        old = previous.get(wanted.type)
        if wanted.status == "True" or (old is not None and old.status == "False" and old.message == wanted.message):
            continue
        ctx.record(
            ACTIONS[wanted.type], wanted.reason, wanted.message,
            revision=ctx.status.stable_revision, step=ctx.status.current_step, warning=True,
            values=split_values(ctx.status.weights),
        )  # fmt: skip
