"""The contract after promotion in the decision core: a burn-rate breach alerts, rolls back or kills."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from ballast.analysis.burn_rate import read_pair
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import Analysis, BurnReading, KillSwitchSource
from ballast.api.timestamps import format_time
from ballast.rollout.contract_watch import switch_name
from ballast.rollout.core import Decision
from ballast.rollout.killswitch import previous_revision_problem
from ballast.rollout.observations import FallbackObservation, Observations
from tests.unit.test_rollout_core import READY, Run

WINDOWS = [{"long": "40s", "short": "10s", "burnRate": 2}]


def watched_spec(action: str, steps: list[dict[str, Any]] | None = None, **extra: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "m", "image": "i", "replicas": 2},
            "traffic": {"parentRefs": [{"name": "gw"}]},
            "rollout": {
                "interval": "5s",
                "scaleDownDelay": "10m",
                "steps": steps or [{"weight": 100, "analysis": False}],
            },
            "contract": {
                "objectives": [{"name": "errors", "preset": "error-rate", "max": 0.5}],
                "afterPromotion": {"objective": "errors", "target": 0.9, "action": action, "windows": WINDOWS},
            },
            **extra,
        }
    )


class WatchedRun(Run):
    burn: BurnReading | None = None

    def observations(self, analysis: Analysis | None = None) -> Observations:
        return replace(super().observations(analysis), burn=self.burn, deployment_name="bot")

    def read(self, long: float, short: float, seconds: float = 5) -> Decision:
        """A burn-rate reading of the stable revision arrives."""
        stable = self.status.stable_revision
        assert stable is not None
        pairs = [read_pair(w, {w.long: long, w.short: short}, 0.9) for w in self.spec.contract.after_promotion.windows]  # type: ignore[union-attr]
        verdict = "Breached" if any(p.breached for p in pairs) else "Healthy"
        self.burn = BurnReading(at=format_time(self.now), revision=stable, objective="errors", target=0.9,
                                verdict=verdict, source="recorded", windows=pairs)  # fmt: skip
        decision = self.step(self.desired, seconds)
        self.burn = None
        return decision

    def promoted(self) -> None:
        """Stable aaa, then bbb promoted through its one step; aaa is kept warm as the previous revision."""
        self.desired = "aaa"
        self.step("aaa")
        self.observed = {"aaa": READY, "bbb": READY}
        self.desired = "bbb"
        self.step("bbb")
        self.step("bbb", 1)
        self.step("bbb", 6)
        assert (self.status.phase, self.status.stable_revision, self.status.previous_revision) == (
            "Stable",
            "bbb",
            "aaa",
        )


def condition(run: Run, kind: str) -> tuple[str, str]:
    found = next(c for c in run.status.conditions if c.type == kind)
    return found.status, found.reason


def test_a_breach_rolls_back_to_the_previous_revision_as_it_becomes_ready() -> None:
    run = WatchedRun(watched_spec("rollback"))
    run.promoted()
    run.observed = {"aaa": replace(READY, available=False, ready_replicas=0), "bbb": READY}
    decision = run.read(0.3, 0.5, seconds=11)  # 3x and 5x, both above 2x, the short window after promotion
    s = run.status
    assert (s.phase, s.stable_revision, s.canary_revision) == ("RolledBack", "aaa", "bbb")
    assert (s.weights.stable, s.weights.canary) == (0, 100)  # nobody moves before aaa has a ready pod
    assert next(r for r in s.revisions if r.name == "aaa").replicas == 2  # scaled up first
    (entry,) = decision.history
    assert entry.reason == "BurnRateRollback"
    assert entry.values["longBurn"] == pytest.approx(3.0)
    assert entry.values["shortBurn"] == pytest.approx(5.0)
    assert entry.values["burnRate"] == 2.0
    assert entry.values["longWindowSeconds"] == 40.0
    assert "3x over 40s and 5x over 10s" in entry.message
    assert decision.events[0].type == "Warning"
    run.observed = {"aaa": replace(READY, available=False, ready_replicas=1), "bbb": READY}
    run.step("bbb", 1)
    assert (s := run.status).weights.stable == 50
    run.observed = {"aaa": READY, "bbb": READY}
    done = run.step("bbb", 1)
    assert (run.status.weights.stable, run.status.weights.canary) == (100, 0)
    assert [h.reason for h in done.history] == ["RollbackComplete"]
    assert next(r for r in run.status.revisions if r.name == "bbb").role == "retired"
    # The template still names bbb: it is never deployed again automatically.
    run.step("bbb", 30)
    assert (run.status.stable_revision, run.status.weights.stable, run.status.phase) == ("aaa", 100, "RolledBack")
    assert "bbb" in run.status.after_promotion.rolled_back


def test_nothing_acts_before_the_short_window_has_measured_the_promoted_revision() -> None:
    run = WatchedRun(watched_spec("rollback"))
    run.promoted()
    decision = run.read(0.3, 0.5, seconds=4)  # 4s after promotion: the 10s window still holds canary traffic
    assert decision.history == ()
    assert run.status.stable_revision == "bbb"


def test_a_pair_with_one_window_burning_does_nothing() -> None:
    run = WatchedRun(watched_spec("rollback"))
    run.promoted()
    assert run.read(0.1, 0.5, seconds=20).history == ()  # a spike the long window does not confirm
    assert run.read(0.3, 0.1).history == ()  # over: the short window no longer burns
    assert condition(run, "ContractWatch") == ("True", "Healthy")
    assert condition(run, "RecordingRules") == ("True", "Loaded")


def test_alert_acts_once_per_breach_and_records_recovery() -> None:
    run = WatchedRun(watched_spec("alert"))
    run.promoted()
    first = run.read(0.3, 0.5, seconds=20)
    assert [h.reason for h in first.history] == ["BurnRateBreached"]
    assert run.read(0.4, 0.6).history == ()  # the breach stands: no second alert
    assert condition(run, "ContractWatch") == ("False", "Breached")
    assert run.status.stable_revision == "bbb"
    assert [h.reason for h in run.read(0.1, 0.0).history] == ["BurnRateRecovered"]


def test_kill_switch_action_asks_for_a_switch_then_reports_no_traffic_and_resumes_on_release() -> None:
    run = WatchedRun(watched_spec("killSwitch", fallbacks=[{"name": "rules", "service": {"name": "r", "port": 80}}]))
    run.fallbacks = {"rules": FallbackObservation(usable=True)}
    run.promoted()
    decision = run.read(0.3, 0.5, seconds=20)
    assert [h.reason for h in decision.history] == ["BurnRateKillSwitch"]
    wanted = run.status.after_promotion.switch
    assert wanted is not None
    assert wanted.name == switch_name("bot") == "bot-burn-rate"
    assert "3x over 40s" in wanted.reason
    # The shell creates it; its watch event brings it back as an engaged switch.
    run.switches = (KillSwitchSource(kind="KillSwitch", name="bot-burn-rate", namespace="ns", reason=wanted.reason),)
    run.step("bbb", 1)
    assert run.status.kill_switch.engaged
    assert run.status.after_promotion.switch.engaged  # type: ignore[union-attr]
    assert condition(run, "ContractWatch") == ("False", "NoUserTraffic")
    held = run.status.after_promotion
    run.step("bbb", 5)
    assert run.status.after_promotion == held  # killed, a reconcile leaves the watch's state as it is
    # A person deletes it: released, and the watch starts again on the traffic users get from now.
    run.switches = ()
    released = run.step("bbb", 30)
    assert {"BurnRateKillSwitchReleased", "KillSwitchReleased"} <= {h.reason for h in released.history}
    assert run.status.after_promotion.switch is None
    assert run.read(0.3, 0.5, seconds=5).history == ()  # old evidence: the short window is not past the release


def test_rollback_without_a_previous_revision_engages_the_kill_switch_policy_or_alerts() -> None:
    fallbacks = [{"name": "rules", "service": {"name": "r", "port": 80}}]
    for extra, reason, said in (
        ({"fallbacks": fallbacks, "killSwitch": {"fallback": "rules"}}, "BurnRateKillSwitch", "kill-switch policy"),
        ({}, "BurnRateBreached", "only alerts"),
    ):
        run = WatchedRun(watched_spec("rollback", **extra))
        run.desired = "aaa"
        run.observed = {"aaa": READY}
        run.step("aaa")
        decision = run.read(0.3, 0.5, seconds=20)
        (entry,) = decision.history
        assert entry.reason == reason
        assert "no previous revision" in entry.message
        assert said in entry.message


def test_a_stable_breach_holds_a_canary_at_its_step() -> None:
    model = watched_spec("alert", steps=[{"weight": 50, "pause": "10s", "analysis": False}, {"weight": 100}])
    run = WatchedRun(model)
    run.desired = "aaa"
    run.observed = {"aaa": READY, "bbb": READY}
    run.step("aaa")
    run.read(0.3, 0.5, seconds=20)  # breach of the stable aaa
    run.desired = "bbb"
    run.step("bbb")
    run.step("bbb", 1)
    assert run.status.current_step == 0
    run.step("bbb", 60)
    assert run.status.current_step == 0  # held: an incident is no reason to promote
    assert "breaches its burn-rate windows" in run.status.message


def test_a_rollback_target_that_never_serves_engages_the_kill_switch_policy_at_the_deadline() -> None:
    fallbacks = [{"name": "rules", "service": {"name": "r", "port": 80}}]
    run = WatchedRun(watched_spec("rollback", fallbacks=fallbacks, killSwitch={"fallback": "rules"}))
    run.fallbacks = {"rules": FallbackObservation(usable=True)}
    run.promoted()
    pending = replace(READY, available=False, ready_replicas=0)  # its pods never schedule
    run.observed = {"aaa": pending, "bbb": READY}
    run.read(0.3, 0.5, seconds=11)
    assert run.step("bbb", 60).history == ()  # within rollout.progressDeadline (15m by default): it waits
    overdue = run.step("bbb", 15 * 60)
    (entry,) = overdue.history
    assert entry.reason == "BurnRateKillSwitch"
    assert "serves 0% of users 15m after the rollback of bbb began" in entry.message
    assert run.status.after_promotion.switch is not None
    assert run.step("bbb", 60).history == ()  # once


def test_a_revision_rolled_back_for_a_breach_is_never_a_fallback() -> None:
    run = WatchedRun(watched_spec("rollback"))
    run.promoted()
    status = run.status.model_copy(deep=True)
    status.after_promotion.rolled_back = ["aaa"]
    assert "rolled back for a burn-rate breach" in previous_revision_problem(status, run.observations())


def test_a_reading_that_changes_nothing_a_person_reads_writes_no_status() -> None:
    run = WatchedRun(watched_spec("alert"))
    run.promoted()
    run.read(0.0101, 0.0102, seconds=20)
    before = run.status
    run.read(0.01011, 0.01021)  # the same to two significant digits, a later check
    assert run.status == before
    run.read(0.05, 0.06)
    assert run.status != before
    assert run.status.after_promotion.last is not None
    assert run.status.after_promotion.last.windows[0].long_burn == pytest.approx(0.5)
