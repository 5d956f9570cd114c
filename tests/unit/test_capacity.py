"""Capacity: the replica arithmetic (properties), and the core sizing, gating and reporting on it (examples)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ballast.api.modeldeployment import Capacity, ModelDeploymentSpec
from ballast.rollout.capacity import (
    canary_replicas,
    missing_resources,
    previous_replicas,
    ready_needed,
    stable_replicas,
)
from ballast.rollout.observations import Commands, RevisionObservation
from ballast.shell.observe import observe_revisions
from ballast.workloads.render import gpus_per_pod
from tests.unit.test_killswitch import RULES_OK
from tests.unit.test_killswitch_hold import stopping_spec
from tests.unit.test_rollout_core import SWITCH, Run

TOTALS = st.integers(min_value=0, max_value=1000)
WEIGHTS = st.integers(min_value=0, max_value=100)
NO_GPU = "0/4 nodes are available: 1 Insufficient nvidia.com/gpu, 3 node(s) didn't match Pod's node affinity/selector."

# ------------------------------------------------------------------------------------------ arithmetic


@given(TOTALS, WEIGHTS)
def test_a_weighted_canary_has_the_fewest_replicas_that_carry_its_share_and_at_least_one(total: int, w: int) -> None:
    replicas = canary_replicas(total, w, "weighted")
    if total == 0:
        assert replicas == 0
        return
    assert 1 <= replicas <= total
    assert replicas * 100 >= total * w  # carries its share
    assert replicas == 1 or (replicas - 1) * 100 < total * w  # and not one more than that


@given(TOTALS, WEIGHTS, WEIGHTS)
def test_canary_replicas_never_shrink_as_the_weight_grows(total: int, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert canary_replicas(total, low, "weighted") <= canary_replicas(total, high, "weighted")
    assert canary_replicas(total, low, "full") == canary_replicas(total, high, "full") == total


@given(TOTALS, WEIGHTS, st.integers(min_value=0, max_value=1000))
def test_a_shrinking_stable_leaves_the_canary_its_replicas_and_keeps_one_while_it_serves(
    total: int, stable_weight: int, canary: int
) -> None:
    canary = min(canary, total)
    stable = stable_replicas(total, stable_weight, canary, "shrink")
    assert 0 <= stable <= total
    if stable_weight > 0 and total > 0:
        assert stable >= 1
    if stable > 1 or stable_weight == 0:
        assert stable + canary <= total  # no surge beyond the one replica a serving stable keeps
    assert stable_replicas(total, stable_weight, canary, "full") == total


@given(TOTALS, WEIGHTS, WEIGHTS, st.sampled_from(["weighted", "full"]))
def test_what_a_weight_needs_ready_fits_beside_a_shrinking_stable_without_surge(
    total: int, w: int, stable_weight: int, canary_mode: str
) -> None:
    surge = ready_needed(total, w, Capacity(canary=canary_mode, stable="full"), stable_weight)  # type: ignore[arg-type]
    assert surge == canary_replicas(total, w, canary_mode)
    shrink = ready_needed(total, w, Capacity(canary=canary_mode, stable="shrink"), stable_weight)  # type: ignore[arg-type]
    assert shrink <= surge
    if total > 0:
        left = stable_replicas(total, stable_weight, surge, "shrink")
        assert shrink >= 1
        assert shrink + left <= max(total, left + 1)  # never waits for a GPU the shrunk stable still holds


@given(st.integers(min_value=0, max_value=1000) | st.none(), TOTALS, TOTALS)
def test_a_warm_previous_revision_keeps_its_declared_size_and_never_grows(
    declared: int | None, total: int, current: int
) -> None:
    kept = previous_replicas(declared, total, current)
    assert kept <= current
    assert kept <= (total if declared is None else declared)


def test_the_scheduler_message_names_the_missing_resources() -> None:
    assert missing_resources(NO_GPU) == ["nvidia.com/gpu"]
    both = "0/3 nodes are available: 2 Insufficient cpu, 3 Insufficient nvidia.com/gpu."
    assert missing_resources(both) == ["cpu", "nvidia.com/gpu"]
    assert missing_resources("0/3 nodes are available: 3 node(s) had untolerated taint") == []


# ---------------------------------------------------------------------------------------- observing


def test_gpus_per_pod_count_every_container_s_gpu_limits_or_requests() -> None:
    pod = {
        "spec": {
            "containers": [
                {"name": "a", "resources": {"limits": {"nvidia.com/gpu": "2", "cpu": "4"}}},
                {"name": "b", "resources": {"requests": {"amd.com/gpu": 1}}},
                {"name": "c"},
            ]
        }
    }
    assert gpus_per_pod(pod) == 3
    assert gpus_per_pod({"spec": {"containers": [{"name": "a"}]}}) == 0


def test_unschedulable_pods_are_counted_per_revision_with_the_scheduler_s_message() -> None:
    labels = {"ballast.dev/revision": "bbb"}
    deployment = {"metadata": {"name": "bot-bbb", "labels": labels, "generation": 1}, "status": {"readyReplicas": 1}}
    pending = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": NO_GPU}
    pods = [
        {"metadata": {"labels": labels}, "status": {"conditions": [pending]}},
        {"metadata": {"labels": labels}, "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}},
    ]
    seen = observe_revisions([deployment], pods, gpus={"bbb": 1})["bbb"]
    assert (seen.unschedulable, seen.unschedulable_reason, seen.gpus_per_pod, seen.ready_replicas) == (
        1, NO_GPU, 1, 1,
    )  # fmt: skip


# -------------------------------------------------------------------------------------------- the core


def gpu_spec(**capacity: Any) -> ModelDeploymentSpec:
    """Four replicas, steps 25% (10s), 50% (10s), 100%."""
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "m", "image": "i", "replicas": 4},
            "traffic": {"parentRefs": [{"name": "gw"}]},
            "rollout": {
                "interval": "10s",
                "progressDeadline": "5m",
                "scaleDownDelay": "10m",
                "steps": [{"weight": 25, "pause": "10s"}, {"weight": 50, "pause": "10s"}, {"weight": 100}],
                "capacity": capacity,
            },
        }
    )


def ready(n: int, *, unschedulable: int = 0, gpus: int = 1) -> RevisionObservation:
    reason = NO_GPU if unschedulable else ""
    return RevisionObservation(
        available=n > 0, ready_replicas=n, unschedulable=unschedulable, unschedulable_reason=reason, gpus_per_pod=gpus
    )


def sizes(run: Run) -> dict[str, int]:
    return {r.name: r.replicas for r in run.status.revisions}


def canary_at_first_step(model_spec: ModelDeploymentSpec, canary_ready: int = 1) -> Run:
    run = Run(model_spec)
    run.observed = {"aaa": ready(4)}
    run.step("aaa")
    run.step("bbb")
    run.observed = {"aaa": ready(4), "bbb": ready(canary_ready)}
    run.step("bbb", 1)
    assert run.status.current_step == 0
    return run


def test_a_canary_runs_in_proportion_to_its_weight_beside_a_full_stable() -> None:
    run = Run(gpu_spec())
    run.observed = {"aaa": ready(4), "bbb": ready(0)}
    run.step("aaa")
    run.step("bbb")
    assert sizes(run) == {"aaa": 4, "bbb": 1}  # sized for its first step (25% of 4) before it serves
    assert run.status.capacity.requested_gpus == 5
    run.observed = {"aaa": ready(4), "bbb": ready(1)}
    run.step("bbb", 1)
    assert (run.status.current_step, run.status.weights.canary) == (0, 25)


def test_a_full_size_canary_when_asked() -> None:
    run = Run(gpu_spec(canary="full"))
    run.observed = {"aaa": ready(4)}
    run.step("aaa")
    run.step("bbb")
    assert sizes(run) == {"aaa": 4, "bbb": 4}
    run.observed = {"aaa": ready(4), "bbb": ready(3)}
    assert run.step("bbb", 1).status.current_step is None  # 3 of its 4 are not enough to start
    run.observed = {"aaa": ready(4), "bbb": ready(4)}
    assert run.step("bbb", 1).status.current_step == 0


def test_a_step_s_weight_moves_only_once_the_canary_has_the_replicas_for_it() -> None:
    run = canary_at_first_step(gpu_spec())
    waiting = run.step("bbb", 10)
    assert (waiting.status.weights.canary, waiting.status.current_step) == (25, 0)  # still 25%
    assert sizes(run) == {"aaa": 4, "bbb": 2}  # scaled up for 50% first
    assert waiting.status.scaling is not None
    assert (waiting.status.scaling.weight, waiting.status.scaling.replicas) == (50, 2)
    assert [e.reason for e in waiting.events] == ["ScalingUp"]
    assert waiting.status.history[-1].values == {"weight": 50.0, "readyReplicas": 1.0, "neededReplicas": 2.0}
    assert "waiting for capacity: 1/2 canary replicas ready for 50%" in waiting.status.message
    assert waiting.status.next_check_at == "2026-11-24T12:05:11Z"  # the scale-up's progressDeadline
    assert run.step("bbb", 30).events == ()  # holding is one decision, not one per reconcile
    run.observed = {"aaa": ready(4), "bbb": ready(2)}
    moved = run.step("bbb", 1)
    assert (moved.status.weights.canary, moved.status.current_step, moved.status.scaling) == (50, 1, None)


def test_a_scale_up_that_cannot_be_scheduled_holds_with_the_condition_then_rolls_back_at_its_deadline() -> None:
    run = canary_at_first_step(gpu_spec())
    run.step("bbb", 10)
    run.observed = {"aaa": ready(4), "bbb": ready(1, unschedulable=1)}
    held = run.step("bbb", 1)
    capacity = next(c for c in held.status.conditions if c.type == "CapacityAvailable")
    assert (capacity.status, capacity.reason) == ("False", "Unschedulable")
    assert "canary bbb: 1 of 2 pods unschedulable (missing nvidia.com/gpu; 1 GPUs per pod)" in capacity.message
    assert [e.reason for e in held.events] == ["Unschedulable"]
    assert held.status.history[-1].values == {
        "unschedulable": 1.0, "replicas": 2.0, "readyReplicas": 1.0, "gpusPerPod": 1.0,
    }  # fmt: skip
    assert "1 of its pods cannot be scheduled (missing nvidia.com/gpu)" in held.status.message
    assert run.step("bbb", 200).status.phase == "Progressing"
    rolled = run.step("bbb", 100)
    assert rolled.status.phase == "RolledBack"
    assert rolled.status.history[-1].reason == "ProgressDeadlineExceeded"
    assert "1/2 ready replicas for 50% after 5m; 1 of its pods cannot be scheduled" in rolled.status.history[-1].message
    assert (rolled.status.weights.stable, rolled.status.weights.canary) == (100, 0)
    assert sizes(run) == {"aaa": 4, "bbb": 0}


def test_a_first_step_that_cannot_be_scheduled_holds_and_rolls_back_at_its_deadline() -> None:
    run = Run(gpu_spec())
    run.observed = {"aaa": ready(4)}
    run.step("aaa")
    run.step("bbb")
    run.observed = {"aaa": ready(4), "bbb": ready(0, unschedulable=1)}
    held = run.step("bbb", 1)
    assert held.status.current_step is None
    assert "1 of its pods cannot be scheduled (missing nvidia.com/gpu)" in held.status.message
    assert run.step("bbb", 300).status.history[-1].reason == "ProgressDeadlineExceeded"


def test_every_pod_placed_again_is_an_event_and_the_condition_recovers() -> None:
    run = canary_at_first_step(gpu_spec())
    run.step("bbb", 10)
    run.observed = {"aaa": ready(4), "bbb": ready(1, unschedulable=1)}
    run.step("bbb", 1)
    run.observed = {"aaa": ready(4), "bbb": ready(1)}
    placed = run.step("bbb", 1)
    assert [e.reason for e in placed.events] == ["Scheduled"]
    capacity = next(c for c in placed.status.conditions if c.type == "CapacityAvailable")
    assert (capacity.status, capacity.reason) == ("True", "Scheduled")


def test_a_shrinking_stable_gives_the_canary_its_replicas_and_its_last_one_after_the_weight_moves() -> None:
    run = canary_at_first_step(gpu_spec(stable="shrink"))
    assert sizes(run) == {"aaa": 3, "bbb": 1}  # four GPUs in all, no surge
    run.step("bbb", 10)
    assert sizes(run) == {"aaa": 2, "bbb": 2}
    run.observed = {"aaa": ready(2), "bbb": ready(2)}
    run.step("bbb", 1)
    assert run.status.weights.canary == 50
    run.step("bbb", 10)  # to 100%: the stable keeps one replica while it serves, so the canary needs three
    assert sizes(run) == {"aaa": 1, "bbb": 4}
    assert run.status.scaling is not None
    assert run.status.scaling.replicas == 3
    run.observed = {"aaa": ready(1), "bbb": ready(3, unschedulable=1)}
    at_full = run.step("bbb", 1)
    assert (at_full.status.weights.canary, at_full.status.current_step) == (100, 2)
    assert sizes(run) == {"aaa": 0, "bbb": 4}  # the stable's last GPU goes to the canary's fourth replica


def test_a_rollback_moves_traffic_back_as_the_stable_s_replicas_become_ready() -> None:
    run = canary_at_first_step(gpu_spec(stable="shrink"))
    run.step("bbb", 10)
    run.observed = {"aaa": ready(2), "bbb": ready(2)}
    run.step("bbb", 1)
    assert (run.status.weights.stable, run.status.weights.canary) == (50, 50)
    run.commands = Commands(abort="now")
    aborted = run.step("bbb", 1)
    assert (aborted.status.weights.stable, aborted.status.weights.canary) == (50, 50)  # as the stable's 2/4 allow
    assert sizes(run) == {"aaa": 4, "bbb": 2}  # the stable scales back up first
    assert "stable aaa serves 50% as its 2/4 ready replicas allow" in aborted.status.history[-1].message
    run.observed = {"aaa": ready(3), "bbb": ready(2)}
    assert (run.step("bbb", 1).status.weights.stable, run.status.weights.canary) == (75, 25)
    run.observed = {"aaa": ready(4), "bbb": ready(2)}
    done = run.step("bbb", 1)
    assert (done.status.weights.stable, done.status.weights.canary) == (100, 0)
    assert [e.reason for e in done.events] == ["RollbackCompleted"]
    assert sizes(run) == {"aaa": 4, "bbb": 0}


def test_a_rollback_never_leaves_users_on_a_canary_with_no_ready_pod() -> None:
    run = canary_at_first_step(gpu_spec(stable="shrink"))
    run.observed = {"aaa": ready(2), "bbb": ready(0)}
    rolled = run.step("bbb", 400)
    assert rolled.status.phase == "RolledBack"
    assert (rolled.status.weights.stable, rolled.status.weights.canary) == (100, 0)


def test_the_previous_revision_stays_warm_at_its_declared_size_then_scales_down() -> None:
    run = canary_at_first_step(gpu_spec(previousReplicas=1), canary_ready=4)
    run.step("bbb", 10)
    run.step("bbb", 10)
    run.step("bbb", 10)
    assert run.status.stable_revision == "bbb"
    assert sizes(run) == {"aaa": 1, "bbb": 4}
    run.step("bbb", 600)
    assert sizes(run) == {"aaa": 0, "bbb": 4}


def test_a_kill_switch_holds_the_split_and_the_scale_up_s_deadline_while_it_holds_users() -> None:
    fallbacks = {"fallbacks": [{"name": "rules", "service": {"name": "faq", "port": 80}}]}
    model_spec = ModelDeploymentSpec.model_validate(
        {**gpu_spec().model_dump(by_alias=True, exclude_none=True), **fallbacks, "killSwitch": {"fallback": "rules"}}
    )
    run = canary_at_first_step(model_spec)
    run.fallbacks = {"rules": RULES_OK}
    run.step("bbb", 10)
    assert run.status.scaling is not None
    run.switches = (SWITCH,)
    run.step("bbb", 1)
    held = run.step("bbb", 3600)  # far past progressDeadline: frozen, not rolled back
    assert held.status.phase == "Progressing"
    assert held.status.kill_switch.resume is not None
    assert held.status.kill_switch.resume.weights.canary == 25
    assert sizes(run) == {"aaa": 4, "bbb": 2}  # the sizes it had: no scaling past them while held
    run.switches = ()
    released = run.step("bbb", 1)
    assert released.status.scaling is not None
    assert released.status.scaling.since == "2026-11-24T13:00:13Z"  # its deadline starts again
    assert (released.status.weights.canary, released.status.phase) == (25, "Progressing")


def test_ready_replica_hours_are_counted_and_a_decision_that_changes_nothing_writes_nothing() -> None:
    run = Run(gpu_spec())
    run.observed = {"aaa": ready(4, gpus=2)}
    run.step("aaa")
    assert run.status.revisions[0].ready_replicas == 4
    same = run.step("aaa", 3600)
    assert same.status == run.decisions[-2].status  # an hour later with nothing new: nothing to write
    run.observed = {"aaa": ready(3, gpus=2)}
    later = run.step("aaa", 0)
    assert later.status.revisions[0].replica_hours == pytest.approx(4.0)
    assert (later.status.capacity.replica_hours, later.status.capacity.gpu_hours) == (
        pytest.approx(4.0), pytest.approx(8.0),
    )  # fmt: skip
    assert later.status.capacity.requested_gpus == 8
    run.observed = {"aaa": ready(4, gpus=2)}
    assert run.step("aaa", 1800).status.capacity.replica_hours == pytest.approx(5.5)


def test_capacity_totals_add_up_over_revisions() -> None:
    run = canary_at_first_step(gpu_spec())
    totals = run.status.capacity
    assert (totals.replicas, totals.ready_replicas, totals.requested_gpus) == (5, 5, 5)
    assert math.isclose(totals.replica_hours, 0.0, abs_tol=0.01)


def test_a_stopped_model_restarts_at_its_sizes_and_users_return_once_its_ready_replicas_carry_their_shares() -> None:
    run = Run(stopping_spec(drain="1s"))
    run.fallbacks = {"rules": RULES_OK}
    run.to_first_step()  # stable aaa 90% on 2 replicas, canary bbb 10% on 1
    run.switches = (SWITCH,)
    run.step("bbb", 1)
    run.step("bbb", 1)
    assert sizes(run) == {"aaa": 0, "bbb": 0}
    run.observed = {"aaa": RevisionObservation(), "bbb": RevisionObservation()}
    run.switches = ()
    run.step("bbb", 1)
    assert sizes(run) == {"aaa": 2, "bbb": 1}  # the sizes it had, not a full-size canary
    run.observed = {"aaa": ready(1), "bbb": ready(1)}
    assert run.step("bbb", 1).status.weights.fallback == 100  # one stable replica cannot carry 90%
    run.observed = {"aaa": ready(2), "bbb": ready(1)}
    back = run.step("bbb", 1)
    assert (back.status.weights.stable, back.status.weights.canary, back.status.weights.fallback) == (90, 10, 0)
