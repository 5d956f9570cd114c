"""The decision core: examples for every transition, and properties over random histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import (
    HISTORY_LIMIT,
    Analysis,
    HistoryEntry,
    KillSwitchSource,
    ModelDeploymentStatus,
    Weights,
)
from ballast.api.timestamps import parse_time
from ballast.api.types import parse_duration
from ballast.rollout.capacity import canary_replicas
from ballast.rollout.check_scope import began_in
from ballast.rollout.core import Decision, decide, replicas_for_share
from ballast.rollout.observations import Commands, FallbackObservation, Observations, Refusal, RevisionObservation
from tests.unit.test_durations import ANY_DURATION

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
READY = RevisionObservation(available=True, ready_replicas=2)


def spec(extra: dict[str, Any] | None = None, **rollout: Any) -> ModelDeploymentSpec:
    """Three steps (10% for 1m, 50% until approved, 100%); `extra` adds top-level spec fields."""
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "m", "image": "i", "replicas": 2},
            "traffic": {"parentRefs": [{"name": "gw"}]},
            "rollout": {
                "interval": "10s",
                "progressDeadline": "5m",
                "scaleDownDelay": "10m",
                "steps": [{"weight": 10, "pause": "1m"}, {"weight": 50, "approval": True}, {"weight": 100}],
                **rollout,
            },
            **(extra or {}),
        }
    )


class Run:
    """Drives decide() through time like the shell does, feeding back each new status."""

    def __init__(self, model_spec: ModelDeploymentSpec | None = None) -> None:
        self.spec = model_spec or spec()
        self.status = ModelDeploymentStatus()
        self.now = T0
        self.generation = 1
        self.observed: dict[str, RevisionObservation] = {}
        self.commands = Commands()
        self.switches: tuple[KillSwitchSource, ...] = ()
        self.fallbacks: dict[str, FallbackObservation] = {}
        self.mirror_supported = True
        self.conflicts: tuple[str, ...] = ()
        self.route_refused: Refusal | None = None
        self.decisions: list[Decision] = []

    def observations(self, analysis: Analysis | None = None) -> Observations:
        return Observations(
            self.observed,
            self.commands,
            analysis,
            self.switches,
            self.fallbacks,
            self.mirror_supported,
            self.conflicts,
            self.route_refused,
        )

    def step(self, revision: str, seconds: float = 0) -> Decision:
        self.now += timedelta(seconds=seconds)
        decision = decide(self.spec, revision, self.generation, self.status, self.observations(), self.now)
        self.status = decision.status
        self.decisions.append(decision)
        return decision

    def to_first_step(self) -> None:
        """Stable `aaa`, then canary `bbb` (both Available) at its first step."""
        self.step("aaa")
        self.observed = {"aaa": READY, "bbb": READY}
        self.step("bbb")
        self.step("bbb", 1)
        assert self.status.current_step == 0


def test_first_deploy_is_stable_at_once() -> None:
    run = Run()
    decision = run.step("aaa")
    assert decision.status.phase == "Stable"
    assert decision.status.stable_revision == "aaa"
    assert (decision.status.weights.stable, decision.status.weights.canary) == (100, 0)
    assert [e.reason for e in decision.events] == ["Deployed"]
    assert decision.status.revisions[0].replicas == 2


def test_a_template_change_walks_the_steps_and_promotes() -> None:
    run = Run()
    run.step("aaa")
    run.observed = {"aaa": READY}
    assert run.step("bbb").status.phase == "Progressing"
    assert run.status.weights.canary == 0  # not before the canary is Available
    run.observed["bbb"] = READY
    assert run.step("bbb", 5).status.weights.canary == 10
    assert run.step("bbb", 30).status.weights.canary == 10  # the 1m pause holds
    assert run.status.next_check_at == "2026-11-24T12:01:05Z"
    assert run.step("bbb", 30).status.weights.canary == 50
    assert run.step("bbb", 3600).status.weights.canary == 50  # approval: waits for a promote
    run.commands = Commands(promote="t1")
    assert run.step("bbb").status.weights.canary == 100
    assert run.step("bbb", 10).status.phase == "Stable"
    assert (run.status.stable_revision, run.status.previous_revision) == ("bbb", "aaa")
    roles = {r.name: r.role for r in run.status.revisions}
    assert roles == {"aaa": "previous", "bbb": "stable"}
    actions = [h.action for h in run.status.history]
    assert actions == ["deploy", "canary", "step", "step", "approve", "step", "promote"]


def test_an_approval_records_the_approver_named_with_it() -> None:
    run = Run()
    run.step("aaa")
    run.observed = {"aaa": READY, "bbb": READY}
    run.step("bbb")
    run.step("bbb", 5)
    run.step("bbb", 90)  # step 2 of 3 needs an approval
    run.commands = Commands(promote="t1", approved_by="alice")
    result = run.step("bbb")
    approval = next(h for h in result.history if h.action == "approve")
    assert approval.message == "Step 2/3 approved by alice"
    assert (approval.revision, approval.step, approval.reason) == ("bbb", 1, "Approved")
    assert any(e.reason == "Approved" and "alice" in e.message for e in result.events)


def test_a_promote_without_an_approver_says_nobody_was_recorded() -> None:
    run = Run()
    run.step("aaa")
    run.observed = {"aaa": READY, "bbb": READY}
    run.step("bbb")
    run.step("bbb", 5)  # step 1 of 3: a 1m pause, left early by hand
    run.commands = Commands(promote="t1")
    manual = next(h for h in run.step("bbb").history if h.action == "manual-promote")
    assert manual.message == "Step 1/3 left early by a promote annotation"
    assert run.status.weights.canary == 50


def test_the_previous_revision_scales_down_after_the_delay_and_old_ones_are_collected() -> None:
    run = Run(spec(steps=[{"weight": 100}], revisionHistoryLimit=1))
    run.step("r0")
    for n in range(1, 4):
        run.observed = {f"r{n - 1}": READY, f"r{n}": READY}
        run.step(f"r{n}")  # canary
        run.step(f"r{n}", 1)  # 100%
        run.step(f"r{n}", 11)  # promoted
        assert run.status.stable_revision == f"r{n}"
        run.step(f"r{n}", 601)  # scale-down delay over
    roles = {r.name: (r.role, r.replicas) for r in run.status.revisions}
    assert roles == {"r2": ("retired", 0), "r3": ("stable", 2)}


def test_a_canary_never_available_is_rolled_back_at_its_deadline() -> None:
    run = Run()
    run.step("aaa")
    run.observed = {"aaa": READY, "bbb": RevisionObservation(available=False)}
    run.step("bbb")
    assert run.status.next_check_at == "2026-11-24T12:05:00Z"
    assert run.step("bbb", 299).status.phase == "Progressing"
    decision = run.step("bbb", 1)
    assert decision.status.phase == "RolledBack"
    assert decision.events[-1].reason == "ProgressDeadlineExceeded"
    assert decision.events[-1].type == "Warning"
    assert {r.name: r.replicas for r in decision.status.revisions} == {"aaa": 2, "bbb": 0}
    # The same template is not retried; a new one is.
    assert run.step("bbb", 600).status.phase == "RolledBack"
    assert run.step("ccc").status.canary_revision == "ccc"


def test_crash_looping_pods_roll_back_at_once() -> None:
    run = Run()
    run.step("aaa")
    run.observed = {"aaa": READY, "bbb": RevisionObservation(available=True, restarts=3)}
    run.step("bbb")  # the canary starts
    run.step("bbb", 1)  # its pods are seen crash-looping
    assert run.status.phase == "RolledBack"
    assert run.status.weights.stable == 100


POD_SECURITY_REFUSAL = 'pods "m-bbb-x" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true'


def test_a_canary_whose_pods_are_refused_is_rolled_back_at_once_with_the_reason() -> None:
    run = Run()
    run.step("aaa")
    run.observed = {"aaa": READY, "bbb": RevisionObservation(available=False, refused=POD_SECURITY_REFUSAL)}
    run.step("bbb")  # the canary starts
    decision = run.step("bbb", 1)  # its ReplicaSet reports the refusal: no wait for the progress deadline
    assert decision.status.phase == "RolledBack"
    assert decision.events[-1].reason == "PodsRefused"
    assert POD_SECURITY_REFUSAL in decision.events[-1].message
    assert {r.name: r.replicas for r in decision.status.revisions} == {"aaa": 2, "bbb": 0}
    degraded = next(c for c in decision.status.conditions if c.type == "Degraded")
    assert degraded.status == "True"
    assert POD_SECURITY_REFUSAL in degraded.message
    # Not retried: the same template stays rolled back.
    assert run.step("bbb", 600).status.phase == "RolledBack"


def test_a_first_revision_whose_pods_are_refused_is_reported_not_ready_with_the_reason() -> None:
    run = Run()
    run.observed = {"aaa": RevisionObservation(available=False, refused=POD_SECURITY_REFUSAL)}
    decision = run.step("aaa")
    ready = next(c for c in decision.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "PodsRefused")
    assert POD_SECURITY_REFUSAL in ready.message


def test_abort_returns_everything_to_stable_once_per_token() -> None:
    run = Run()
    run.to_first_step()
    assert run.status.weights.canary == 10
    run.commands = Commands(abort="now")
    decision = run.step("bbb")
    assert (decision.status.phase, decision.status.weights.stable) == ("RolledBack", 100)
    assert decision.events[-1].reason == "Aborted"


def test_pause_and_resume() -> None:
    run = Run()
    run.to_first_step()
    run.commands = Commands(paused=True)
    assert run.step("bbb", 3600).status.phase == "Paused"
    assert run.status.weights.canary == 10
    run.commands = Commands()
    assert run.step("bbb").status.weights.canary == 50
    assert [h.action for h in run.status.history][-3:] == ["pause", "resume", "step"]


def test_a_change_mid_canary_supersedes_it_and_a_revert_withdraws_it() -> None:
    run = Run()
    run.step("aaa")
    run.observed = {"aaa": READY, "bbb": READY, "ccc": READY}
    run.step("bbb")
    run.step("bbb", 1)
    decision = run.step("ccc")
    assert decision.status.canary_revision == "ccc"
    assert decision.status.weights.canary == 0
    assert [e.reason for e in decision.events] == ["CanarySuperseded", "CanaryStarted"]
    reverted = run.step("aaa")
    assert (reverted.status.phase, reverted.status.canary_revision) == ("Stable", None)
    assert {r.name: r.role for r in reverted.status.revisions}["ccc"] == "retired"


def test_the_service_router_splits_replicas_by_weight() -> None:
    model_spec = ModelDeploymentSpec.model_validate(
        {"model": {"name": "m", "image": "i", "replicas": 4}, "traffic": {"router": "service"},
         "rollout": {"steps": [{"weight": 25}, {"weight": 100}]}}
    )  # fmt: skip
    run = Run(model_spec)
    run.step("aaa")
    run.observed = {"aaa": READY, "bbb": READY}
    run.step("bbb")
    # Before its first step the canary runs at that step's size so it can become Available.
    assert {r.name: r.replicas for r in run.status.revisions} == {"aaa": 4, "bbb": 1}
    run.step("bbb", 1)
    assert {r.name: r.replicas for r in run.status.revisions} == {"aaa": 3, "bbb": 1}
    assert replicas_for_share(4, 10) == 1


def test_revisions_report_their_deployment_and_its_ready_replicas_as_observed() -> None:
    run = Run()
    run.observed = {"aaa": RevisionObservation(workload="bot-aaa", available=True, ready_replicas=2)}
    reported = run.step("aaa").status.revisions[0]
    assert (reported.workload, reported.replicas, reported.ready_replicas) == ("bot-aaa", 2, 2)
    run.observed = {"aaa": RevisionObservation(workload="bot-aaa", available=True, ready_replicas=1)}
    assert run.step("aaa", 1).status.revisions[0].ready_replicas == 1  # a pod went away: said at once
    run.observed = {}  # the Deployment is gone
    reported = run.step("aaa", 1).status.revisions[0]
    assert (reported.workload, reported.ready_replicas) == ("", 0)


def test_conditions_follow_the_phase() -> None:
    run = Run()
    run.observed = {"aaa": READY}
    run.step("aaa")
    conditions = {c.type: c.status for c in run.status.conditions}
    assert conditions == {
        "Ready": "True",
        "Progressing": "False",
        "Degraded": "False",
        "KillSwitchEngaged": "False",
        "ChildrenOwned": "True",
        "RouteAccepted": "True",
        "CapacityAvailable": "True",
    }


# ------------------------------------------------------------------------------------ properties

EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("template"), st.sampled_from(["r1", "r2", "r3"])),
        st.tuples(st.just("wait"), st.integers(min_value=0, max_value=400)),
        st.tuples(st.just("available"), st.sampled_from(["r1", "r2", "r3"]), st.booleans()),
        st.tuples(st.just("ready"), st.sampled_from(["r0", "r1", "r2", "r3"]), st.integers(0, 2)),
        st.tuples(st.just("crash"), st.sampled_from(["r1", "r2", "r3"])),
        st.tuples(st.just("promote"), st.integers(0, 3)),
        st.tuples(st.just("abort"), st.integers(0, 3)),
        st.tuples(st.just("pause"), st.booleans()),
    ),
    max_size=40,
)


SWITCH = KillSwitchSource(kind="KillSwitch", name="incident", namespace="ns", reason="withdrawn policy")


def apply_event(run: Run, event: tuple[Any, ...], revision: str) -> str:
    """Change the world as one history event says; returns the template's revision after it."""
    kind = event[0]
    if kind == "template":
        return str(event[1])
    if kind == "wait":
        run.now += timedelta(seconds=event[1])
    elif kind == "available":
        run.observed[event[1]] = RevisionObservation(available=event[2], ready_replicas=2 if event[2] else 0)
    elif kind == "ready":
        run.observed[event[1]] = RevisionObservation(available=event[2] > 0, ready_replicas=event[2])
    elif kind == "crash":
        run.observed[event[1]] = RevisionObservation(available=False, restarts=5)
    elif kind == "promote":
        run.commands = Commands(promote=f"p{event[1]}", abort=run.commands.abort, paused=run.commands.paused)
    elif kind == "abort":
        run.commands = Commands(promote=run.commands.promote, abort=f"a{event[1]}", paused=run.commands.paused)
    elif kind == "pause":
        run.commands = Commands(promote=run.commands.promote, abort=run.commands.abort, paused=event[1])
    elif kind == "switch":
        run.switches = (SWITCH,) if event[1] else ()
    elif kind == "fallback":
        run.fallbacks = {event[1]: FallbackObservation(usable=event[2], problem="" if event[2] else "gone")}
    return revision


def replay(events: list[tuple[Any, ...]], model_spec: ModelDeploymentSpec | None = None) -> Run:
    run = Run(model_spec)
    revision = "r0"
    run.observed = {"r0": READY}
    run.step(revision)
    for event in events:
        revision = apply_event(run, event, revision)
        before = run.status
        decision = run.step(revision)
        check_transition(before, decision.status)
        check_capacity(run, before, decision.status)
    return run


def _rollout_weights(status: ModelDeploymentStatus) -> Weights:
    """The rollout's own split (under a kill switch, the one it restores)."""
    state = status.kill_switch
    return state.resume.weights if state.engaged and state.resume else status.weights


def check_capacity(run: Run, before: ModelDeploymentStatus, after: ModelDeploymentStatus) -> None:
    """A canary's weight grows only onto ready replicas that carry it; a rollback never gives it more."""
    total = run.spec.model.replicas
    was, now = _rollout_weights(before), _rollout_weights(after)
    canary = after.canary_revision
    if canary and canary == before.canary_revision and now.canary > was.canary:
        assert after.phase != "RolledBack"
        assert run.observed[canary].ready_replicas >= canary_replicas(total, now.canary, "weighted")
    if after.phase == "RolledBack" and before.phase != "RolledBack":
        assert now.canary <= was.canary
        if run.observed.get(before.stable_revision or "", RevisionObservation()).ready_replicas >= total:
            assert (now.stable, now.canary) == (100, 0)


def check_transition(before: ModelDeploymentStatus, after: ModelDeploymentStatus) -> None:
    weights = after.weights
    assert weights.stable + weights.canary + weights.fallback == 100
    state = after.kill_switch
    # A switch routes everything to one fallback (or, holding with none left, to no backend): never a partial split.
    assert weights.fallback == (100 if state.engaged else 0)
    assert state.engaged or weights.fallback_name is None
    if state.engaged:
        assert state.resume is not None
        assert state.fallback == weights.fallback_name
    resumed = before.kill_switch.resume
    same_rollout = after.phase != "RolledBack" and after.canary_revision == before.canary_revision
    if before.kill_switch.engaged and not state.engaged and resumed is not None and same_rollout:
        # Released: back where it stood. Its pause restarts, so only a canary that became Available meanwhile
        # (entering its first step) or a promote given meanwhile moves it, and by one step at most.
        held = resumed.step if resumed.step is not None else -1
        assert (after.current_step if after.current_step is not None else -1) - held in (0, 1)
        if after.current_step == resumed.step:
            assert (weights.stable, weights.canary) == (resumed.weights.stable, resumed.weights.canary)
    if before.kill_switch.sources and state.sources and same_rollout:
        assert after.current_step == before.current_step  # frozen while a switch holds it (abort aside)
    assert 0 <= weights.canary <= 100
    draining = any(r.name == after.canary_revision and r.role == "canary" for r in after.revisions)
    if after.canary_revision is None or after.phase == "Stable" or (after.phase == "RolledBack" and not draining):
        assert weights.canary == 0
    same_canary = before.canary_revision == after.canary_revision and after.canary_revision is not None
    if same_canary and before.current_step is not None and after.current_step is not None:
        # Steps never skip or reverse: they hold or advance by one.
        assert after.current_step - before.current_step in (0, 1)
    if after.phase == "RolledBack" and before.phase != "RolledBack":
        # Rollback restores the last stable, untouched, at full weight (behind the fallback while switched).
        assert after.stable_revision == before.stable_revision
    ids = [h.id for h in after.history]
    assert len(ids) == len(set(ids))
    serving = [r for r in after.revisions if r.role in ("stable", "canary")]
    assert len({r.role for r in serving}) == len(serving)  # at most one stable and one canary


@settings(max_examples=300, deadline=None)
@given(EVENTS)
def test_invariants_hold_over_any_history(events: list[tuple[Any, ...]]) -> None:
    replay(events)


@settings(max_examples=100, deadline=None)
@given(EVENTS)
def test_same_inputs_same_outputs(events: list[tuple[Any, ...]]) -> None:
    first, second = replay(events), replay(events)
    assert first.status == second.status
    assert [d.events for d in first.decisions] == [d.events for d in second.decisions]


@example(events=[("promote", 0), ("available", "r1", True), ("template", "r1")])
@settings(max_examples=150, deadline=None)
@given(EVENTS)
def test_deciding_again_on_its_own_output_converges_without_repeating(events: list[tuple[Any, ...]]) -> None:
    """A crash after writing status replays the reconcile from that status: it reaches a fixpoint within
    a few passes (a canary found Available enters its first step; a pending promote is consumed once),
    never moves a step on its own at the same instant, and never repeats a history entry."""
    run = replay(events)
    revision = run.status.canary_revision or run.status.stable_revision
    assert revision is not None
    observations = run.observations()
    status = run.status

    def what(entry: HistoryEntry) -> tuple[Any, ...]:
        return (entry.action, entry.revision, entry.step, entry.reason, entry.message)

    seen = {what(h) for h in run.decisions[-1].history}  # what the decision that wrote this status recorded
    # Availability enters step 1, a pending promote moves once, the hold refreshes its message: 4 at most.
    for _ in range(5):
        again = decide(run.spec, revision, run.generation, status, observations, run.now)
        new = [what(h) for h in again.history]
        assert not seen & set(new)
        seen |= set(new)
        if again.status == status:
            break
        if status.current_step is not None and again.status.current_step is not None:
            # Without time passing, only a not-yet-consumed promote annotation moves a step, once.
            moved = again.status.current_step - status.current_step
            assert moved == 0 or (moved == 1 and again.status.handled_commands != status.handled_commands)
        status = again.status
    else:
        raise AssertionError("no fixpoint after five passes at the same instant")


def test_the_last_step_is_promoting() -> None:
    run = Run(spec(steps=[{"weight": 50}, {"weight": 100}]))
    run.step("aaa")
    run.observed = {"aaa": READY, "bbb": READY}
    run.step("bbb")
    assert run.step("bbb", 1).status.phase == "Progressing"
    assert run.step("bbb", 11).status.phase == "Promoting"
    assert run.step("bbb", 11).status.phase == "Stable"


def test_shadow_mirrors_to_the_canary_before_the_first_step() -> None:
    run = Run(spec(shadow={"duration": "2m"}))
    run.step("aaa")
    run.observed = {"aaa": READY, "bbb": READY}
    run.step("bbb")
    shadow = run.step("bbb", 1).status
    assert (shadow.mirror_revision, shadow.weights.canary, shadow.current_step) == ("bbb", 0, None)
    assert shadow.next_check_at == "2026-11-24T12:02:01Z"
    assert run.step("bbb", 60).status.mirror_revision == "bbb"
    first = run.step("bbb", 61).status
    assert (first.mirror_revision, first.weights.canary, first.current_step) == (None, 10, 0)
    assert [h.action for h in first.history][-2:] == ["shadow", "step"]


def test_a_failed_phase_from_an_invalid_spec_recovers_with_a_valid_one() -> None:
    run = Run()
    run.observed = {"aaa": READY}
    run.step("aaa")
    run.status.phase = "Failed"  # what the shell writes when the spec cannot be parsed
    assert run.step("aaa", 1).status.phase == "Stable"


# ------------------------------------------------------------------------------------ analysis


def analysed_spec(**rollout: Any) -> ModelDeploymentSpec:
    raw = spec(**rollout).model_dump(by_alias=True, exclude_none=True)
    raw["contract"] = {"objectives": [{"name": "p95", "preset": "e2e-latency-p95", "max": 1.0}]}
    return ModelDeploymentSpec.model_validate(raw)


def check(verdict: str, value: float | None = None, revision: str = "bbb", reason: str = "") -> Any:
    from ballast.api.status import Analysis, ObjectiveResult

    return Analysis(
        at="2026-11-24T12:00:00Z", revision=revision, verdict=verdict,  # type: ignore[arg-type]
        objectives=[ObjectiveResult(name="p95", verdict=verdict, value=value, bound="<= 1", reason=reason)],  # type: ignore[arg-type]
    )  # fmt: skip


def judged(run: Run, revision: str, analysis: Any, seconds: float = 0, *, began: Any = None) -> Decision:
    """Decide with a verdict whose check began in `began` (by default the status in force when it is handed over)."""
    run.now += timedelta(seconds=seconds)
    measured = began_in(analysis, began or run.status)
    decision = decide(run.spec, revision, run.generation, run.status, run.observations(measured), run.now)
    run.status = decision.status
    return decision


def canary_at_first_step(model_spec: ModelDeploymentSpec) -> Run:
    run = Run(model_spec)
    run.to_first_step()
    return run


def test_a_step_waits_for_a_passing_check_as_well_as_its_pause() -> None:
    run = canary_at_first_step(analysed_spec(steps=[{"weight": 10, "pause": "30s"}, {"weight": 100}]))
    assert run.step("bbb", 60).status.current_step == 0  # pause over, but no check yet
    assert "waiting for a passing contract check" in run.status.message
    assert judged(run, "bbb", check("Passed", 0.4)).status.current_step == 1
    assert run.status.last_analysis is not None
    assert run.status.last_analysis.objectives[0].value == 0.4


def test_failed_checks_beyond_the_limit_roll_back_and_name_the_objective() -> None:
    run = canary_at_first_step(analysed_spec(failureLimit=1))
    first = judged(run, "bbb", check("Failed", 1.8, reason="1.8 is above max 1"), 10)
    assert first.status.phase == "Progressing"
    assert first.events[-1].reason == "CheckFailed"
    second = judged(run, "bbb", check("Failed", 1.9, reason="1.9 is above max 1"), 10)
    assert second.status.phase == "RolledBack"
    assert second.events[-1].reason == "AnalysisFailed"
    assert "p95 1.9 is above max 1" in second.events[-1].message
    assert second.status.history[-2].values == {"p95": 1.9}
    assert (second.status.weights.stable, second.status.weights.canary) == (100, 0)


def test_inconclusive_checks_hold_then_roll_back_at_the_deadline() -> None:
    run = canary_at_first_step(analysed_spec(inconclusiveDeadline="2m"))
    held = judged(run, "bbb", check("Inconclusive", reason="3 requests"), 10)
    assert (held.status.phase, held.status.weights.canary) == ("Progressing", 10)
    assert held.events[-1].reason == "CheckInconclusive"
    assert judged(run, "bbb", check("Inconclusive"), 100).status.phase == "Progressing"
    rolled = judged(run, "bbb", check("Error", reason="unreachable"), 20)
    assert rolled.status.phase == "RolledBack"
    assert rolled.events[-1].reason == "MetricsUnavailable"


def test_a_conclusive_check_clears_the_inconclusive_clock() -> None:
    run = canary_at_first_step(analysed_spec(inconclusiveDeadline="2m"))
    judged(run, "bbb", check("Inconclusive"), 10)
    judged(run, "bbb", check("Passed", 0.3), 100)
    assert run.status.inconclusive_since is None
    assert judged(run, "bbb", check("Inconclusive"), 100).status.phase == "Progressing"


def test_a_breach_rolls_back_while_paused_too() -> None:
    run = canary_at_first_step(analysed_spec(failureLimit=0))
    run.commands = Commands(paused=True)
    run.step("bbb", 1)
    assert run.status.phase == "Paused"
    assert judged(run, "bbb", check("Failed", 5.0, reason="5 is above max 1"), 10).status.phase == "RolledBack"


def test_status_is_not_rewritten_for_noise_in_a_passing_check() -> None:
    run = canary_at_first_step(analysed_spec(steps=[{"weight": 10, "approval": True}, {"weight": 100}]))
    judged(run, "bbb", check("Passed", 0.401), 10)
    before = run.status
    assert judged(run, "bbb", check("Passed", 0.402), 10).status == before


def test_consecutive_inconclusive_checks_beyond_the_limit_roll_back() -> None:
    run = canary_at_first_step(analysed_spec(inconclusiveLimit=2, inconclusiveDeadline="1h"))
    judged(run, "bbb", check("Inconclusive"), 5)
    judged(run, "bbb", check("Error", reason="unreachable"), 5)
    conditions = {c.type: c for c in run.status.conditions}
    assert conditions["MetricsAvailable"].status == "False"
    assert conditions["MetricsAvailable"].message == "unreachable"
    rolled = judged(run, "bbb", check("Inconclusive"), 5)
    assert rolled.status.phase == "RolledBack"
    assert "inconclusiveLimit 2" in rolled.events[-1].message


# -------------------------------------------------------------------- verdicts bound to their step


def test_a_check_begun_in_one_step_does_not_pass_the_next() -> None:
    run = canary_at_first_step(analysed_spec(steps=[{"weight": 10, "pause": "30s"}, {"weight": 50, "pause": "30s"},
                                                    {"weight": 100}]))  # fmt: skip
    judged(run, "bbb", check("Passed", 0.4), 10)
    step_one = run.status
    run.step("bbb", 30)
    assert run.status.current_step == 1
    # A check that began at 10% finishes now: it measured step 1, not step 2.
    judged(run, "bbb", check("Passed", 0.4), 1, began=step_one)
    assert run.step("bbb", 60).status.current_step == 1
    assert "waiting for a passing contract check" in run.status.message
    assert judged(run, "bbb", check("Passed", 0.4), 1).status.current_step == 2


def test_a_stale_verdict_changes_nothing_at_all() -> None:
    run = canary_at_first_step(analysed_spec(steps=[{"weight": 10, "pause": "30s"}, {"weight": 50, "pause": "30s"},
                                                    {"weight": 100}], failureLimit=0))  # fmt: skip
    step_one = run.status
    run.step("bbb", 10)
    judged(run, "bbb", check("Passed", 0.4), 0)
    run.step("bbb", 30)
    before = run.step("bbb").status  # what deciding again without a verdict gives
    for verdict in ("Passed", "Failed", "Inconclusive", "Error"):
        stale = judged(run, "bbb", check(verdict, 9.0, reason="x"), 0, began=step_one)
        assert stale.status == before
        assert stale.events == ()


def test_a_check_begun_before_a_switch_does_not_count_after_its_release() -> None:
    run = canary_at_first_step(analysed_spec(steps=[{"weight": 10, "pause": "30s"}, {"weight": 100}]))
    before_switch = run.status
    run.switches = (SWITCH,)
    run.fallbacks = {}
    run.step("bbb", 5)
    run.switches = ()
    run.step("bbb", 60)  # released: the step's pause starts again
    judged(run, "bbb", check("Passed", 0.4), 40, began=before_switch)
    assert run.status.passed_step is None
    assert run.status.current_step == 0


# ---------------------------------------------------------------------- due times never in the past


def test_a_held_step_whose_pause_passed_waits_for_the_check_not_the_clock() -> None:
    run = canary_at_first_step(analysed_spec(steps=[{"weight": 10, "pause": "30s"}, {"weight": 100}]))
    held = run.step("bbb", 45).status
    assert "waiting for a passing contract check" in held.message
    # Nothing in the core falls due before the next verdict: the shell wakes it when a check finishes.
    assert held.next_check_at is None or parse_time(held.next_check_at) > run.now


def test_a_sub_second_pause_is_due_after_it_ends_not_before() -> None:
    run = canary_at_first_step(spec(steps=[{"weight": 10, "pause": "1.5s"}, {"weight": 100}]))
    run.now += timedelta(milliseconds=300)
    run.step("bbb")
    assert run.status.next_check_at is not None
    due = parse_time(run.status.next_check_at)
    assert due > run.now
    run.now = due
    assert run.step("bbb").status.current_step == 1


def test_the_inconclusive_deadline_rolls_back_on_time_without_another_verdict() -> None:
    run = canary_at_first_step(
        analysed_spec(inconclusiveDeadline="1m", steps=[{"weight": 10, "approval": True}, {"weight": 100}])
    )
    judged(run, "bbb", check("Error", reason="Prometheus did not answer within 10s"), 5)
    due = parse_time(run.status.next_check_at or "")
    assert due == run.now + timedelta(minutes=1)
    run.now = due
    rolled = run.step("bbb")  # the tick at the deadline; the next check has not finished yet
    assert rolled.status.phase == "RolledBack"
    assert rolled.events[-1].reason == "MetricsUnavailable"
    assert "no conclusive check for 1m" in rolled.events[-1].message


# --------------------------------------------------------------- properties over verdicts and durations

VERDICTS = ("Passed", "Failed", "Inconclusive", "Error")
# A verdict whose check began `age` decisions ago: 0 is the status in force, older ones may be another step's.
VERDICT_EVENTS = st.tuples(st.just("verdict"), st.sampled_from(VERDICTS), st.integers(min_value=0, max_value=4))
HISTORIES = st.lists(
    st.one_of(
        VERDICT_EVENTS,
        VERDICT_EVENTS,
        st.tuples(st.just("template"), st.sampled_from(["r1", "r2"])),
        st.tuples(st.just("wait"), st.integers(min_value=0, max_value=90)),
        st.tuples(st.just("available"), st.sampled_from(["r1", "r2"]), st.booleans()),
        st.tuples(st.just("promote"), st.integers(0, 3)),
        st.tuples(st.just("pause"), st.booleans()),
        st.tuples(st.just("switch"), st.booleans()),
    ),
    max_size=50,
)


def binding(status: ModelDeploymentStatus) -> tuple[Any, ...]:
    step = -1 if status.current_step is None else status.current_step
    return status.canary_revision, step, status.weights.canary, status.step_started_at


def hand_over(run: Run, revision: str, analysis: Analysis, began: ModelDeploymentStatus) -> None:
    """Decide with a verdict, checking what a verdict may and may not do."""
    measured = began_in(analysis.model_copy(update={"revision": began.canary_revision or ""}), began)
    before = run.status
    decision = decide(run.spec, revision, run.generation, before, run.observations(measured), run.now)
    without = decide(run.spec, revision, run.generation, before, run.observations(), run.now)
    after = decision.status
    if binding(began) != binding(before) or began.canary_revision is None:
        # Stale: it measured another step, other weights or another revision; it changes nothing.
        assert (after, decision.events) == (without.status, without.events)
    if after.canary_revision == before.canary_revision and after.failed_checks > before.failed_checks:
        assert analysis.verdict == "Failed"
        assert binding(began) == binding(before)
        assert after.failed_checks == before.failed_checks + 1
    steps = run.spec.rollout.effective_steps()
    moved = before.current_step is not None and after.current_step == before.current_step + 1
    if moved and after.canary_revision == before.canary_revision and before.current_step is not None:
        passed_now = analysis.verdict == "Passed" and binding(began) == binding(before)
        promoted = after.handled_commands != before.handled_commands
        assert (
            passed_now
            or before.passed_step == before.current_step
            or promoted
            or not steps[before.current_step].analysis
        )
    run.status = decision.status
    run.decisions.append(decision)


def replay_with_verdicts(events: list[tuple[Any, ...]], model_spec: ModelDeploymentSpec) -> Run:
    run = Run(model_spec)
    revision = "r0"
    run.observed = {"r0": READY}
    run.step(revision)
    for event in events:
        kind = event[0]
        if kind == "verdict":
            statuses = [d.status for d in run.decisions]
            began = statuses[max(0, len(statuses) - 1 - event[2])]
            hand_over(run, revision, check(event[1], 2.0 if event[1] == "Failed" else 0.5, reason="r"), began)
        else:
            revision = apply_event(run, event, revision)
            before = run.status
            run.step(revision)
            check_transition(before, run.status)
            deadline_holds(run, before)
        # A due time already past would wake the shell every tick for nothing (zero durations are due now).
        due = run.status.next_check_at
        assert due is None or parse_time(due) >= run.now, f"due {due} is before {run.now}"
    return run


def deadline_holds(run: Run, before: ModelDeploymentStatus) -> None:
    """A hold that has lasted inconclusiveDeadline rolls back at the first decision after it, verdict or not.

    Not at a kill switch's release: the release restarts the hold's clock (a frozen canary serving nobody could
    gather no data), so the deadline counts from there."""
    s = run.status
    canary = before.canary_revision
    frozen = bool(run.switches) or before.kill_switch.engaged or bool(before.kill_switch.sources)
    if not (before.inconclusive_since and canary and s.canary_revision == canary and not frozen):
        return
    live = run.observed.get(canary, RevisionObservation(exists=False))
    if not live.available or before.phase not in ("Progressing", "Promoting", "Paused"):
        return
    over = run.now - parse_time(before.inconclusive_since) >= parse_duration(run.spec.rollout.inconclusive_deadline)
    if over:
        assert s.phase == "RolledBack"


HISTORY_SPECS_SHADOWED = analysed_spec(
    inconclusiveDeadline="45s", shadow={"duration": "20s"},
    steps=[{"weight": 20, "pause": "15s"}, {"weight": 60, "approval": True}, {"weight": 100}],
)  # fmt: skip
HISTORY_SPECS = st.sampled_from([analysed_spec(inconclusiveDeadline="2m", failureLimit=1), HISTORY_SPECS_SHADOWED])


@settings(max_examples=300, deadline=None)
@given(HISTORIES, HISTORY_SPECS)
@example(  # found by hypothesis: a hold across a kill switch; the release restarts its deadline
    [("template", "r1"), ("available", "r1", True), ("verdict", "Inconclusive", 0), ("switch", True), ("wait", 45),
     ("switch", False)],
    HISTORY_SPECS_SHADOWED,
)  # fmt: skip
def test_verdicts_count_only_for_the_step_they_measured_over_any_history(
    events: list[tuple[Any, ...]], model_spec: ModelDeploymentSpec
) -> None:
    replay_with_verdicts(events, model_spec)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "interval": ANY_DURATION,
            "progressDeadline": ANY_DURATION,
            "inconclusiveDeadline": ANY_DURATION,
            "scaleDownDelay": ANY_DURATION,
            "pause": ANY_DURATION,
            "shadow": ANY_DURATION,
        }
    ),
    HISTORIES,
)
def test_every_duration_the_crd_accepts_works_in_the_core(durations: dict[str, str], events: list[Any]) -> None:
    """Whatever the grammar allows (fractions, compounds, zero, centuries), the core decides and never
    names a due time that has already passed."""
    pause, shadow = durations.pop("pause"), durations.pop("shadow")
    model_spec = analysed_spec(
        **durations, shadow={"duration": shadow}, steps=[{"weight": 30, "pause": pause}, {"weight": 100}]
    )
    replay_with_verdicts(events, model_spec)


# ------------------------------------------------------------------------------- decisions kept


def test_every_hold_episode_is_a_decision_long_after_the_history_is_cut() -> None:
    """80 hold episodes at one step: 80 Events and 80 entries, each with an id never seen before,
    although status keeps only the last HISTORY_LIMIT entries."""
    run = canary_at_first_step(analysed_spec(steps=[{"weight": 10, "approval": True}, {"weight": 100}]))
    seen = [h.id for h in run.status.history]
    holds = 0
    for _ in range(80):
        held = judged(run, "bbb", check("Inconclusive", reason="3 requests"), 1)
        holds += sum(1 for e in held.events if e.reason == "CheckInconclusive")
        assert [h.action for h in held.history] == ["check-held"]
        seen += [h.id for h in held.history]
        judged(run, "bbb", check("Passed", 0.3), 1)
    assert holds == 80
    assert len(seen) == len(set(seen))
    assert len(run.status.history) == HISTORY_LIMIT
    assert run.status.decisions == len(seen)


def test_pausing_twice_at_one_step_is_two_decisions() -> None:
    run = canary_at_first_step(analysed_spec(steps=[{"weight": 10, "approval": True}, {"weight": 100}]))
    actions = []
    for paused in (True, False, True, False):
        run.commands = Commands(paused=paused)
        actions += [h.action for h in run.step("bbb", 1).history]
    assert actions == ["pause", "resume", "pause", "resume"]
