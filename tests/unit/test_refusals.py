"""The decision core facing what Ballast may not touch: traffic unchanged, a condition, one decision each."""

from __future__ import annotations

from ballast.rollout.observations import Refusal
from tests.unit.test_killswitch import RULES_OK, SWITCH, switched_spec
from tests.unit.test_rollout_core import Run

REFUSED = Refusal("NotOptedIn", "traffic.routeRef: HTTPRoute apps/shared does not opt in to this ModelDeployment")


def conditions(run: Run) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in run.status.conditions}


def test_a_refused_route_moves_nothing_not_even_a_kill_switch() -> None:
    run = Run(switched_spec(fallback="rules"))
    run.to_first_step()
    before = run.status.model_copy(deep=True)
    run.route_refused = REFUSED
    run.fallbacks = {"rules": RULES_OK}
    run.switches = (SWITCH,)
    refused = run.step("bbb", 120)
    assert refused.status.weights == before.weights
    assert (refused.status.current_step, refused.status.kill_switch.engaged) == (0, False)
    assert refused.status.next_check_at is None  # nothing falls due while held: no step ends, no deadline passes
    assert conditions(run)["RouteAccepted"] == ("False", "NotOptedIn")
    # The switch is not ignored in silence: the deployment says why it is not switched (the switch lists it).
    assert conditions(run)["KillSwitchEngaged"] == ("False", "RouteRefused")
    assert "does not opt in" in next(c.message for c in run.status.conditions if c.type == "KillSwitchEngaged")
    assert [(h.action, h.reason) for h in refused.history] == [("refuse-route", "NotOptedIn")]
    assert "traffic is left exactly as it is" in refused.events[0].message
    assert run.step("bbb", 1).history == ()  # one decision while it lasts
    run.route_refused = None
    resumed = run.step("bbb", 1)
    assert resumed.status.kill_switch.engaged
    assert conditions(run)["RouteAccepted"] == ("True", "Accepted")


def test_objects_not_its_own_are_one_decision_each_time_they_change() -> None:
    run = Run()
    run.conflicts = ("Service bot-reject exists and was not created by Ballast",)
    first = run.step("aaa")
    assert conditions(run)["ChildrenOwned"] == ("False", "NameTaken")
    assert sorted(h.action for h in first.history) == ["deploy", "refuse-adoption"]
    assert run.step("aaa", 1).history == ()
    run.conflicts = (*run.conflicts, "Deployment bot-reject belongs to ModelDeployment other")
    assert [h.action for h in run.step("aaa", 1).history] == ["refuse-adoption"]
    run.conflicts = ()
    assert run.step("aaa", 1).history == ()
    assert conditions(run)["ChildrenOwned"] == ("True", "Owned")
