"""kubectl ballast's pure parts: what `wait` decides, what `status` prints, what completion offers, and the
arguments it refuses."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ballast.api.revision import revision_hash
from ballast.kubectl import completion, render
from ballast.kubectl.main import build_parser, waiting_step
from ballast.kubectl.outcome import Outcome, Target, judge

SPEC: dict[str, Any] = {
    "model": {"name": "bot", "image": "sim:v2"},
    "traffic": {"parentRefs": [{"name": "gw"}]},
    "rollout": {"steps": [{"weight": 10, "pause": "1m"}, {"weight": 50, "approval": True}, {"weight": 100}]},
}
NEW = revision_hash(SPEC)


def md(generation: int = 2, observed: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "bot", "namespace": "team", "generation": generation},
        "spec": copy.deepcopy(SPEC),
        "status": {"observedGeneration": observed, **status},
    }


def entry(number: int, generation: int, revision: str, action: str, message: str = "") -> dict[str, Any]:
    return {"id": f"{number}-{generation}-{revision}-x-{action}", "action": action, "revision": revision,
            "message": message}  # fmt: skip


def test_wait_does_not_accept_the_status_of_an_older_generation() -> None:
    """Right after a spec change the old revision is still Stable, observed at the old generation."""
    obj = md(generation=2, observed=1, phase="Stable", stableRevision="old1234567")
    assert judge(obj, Target.of(obj)) is None


def test_wait_does_not_accept_an_old_revision_stable_at_the_new_generation() -> None:
    obj = md(phase="Progressing", stableRevision="old1234567", canaryRevision=NEW)
    assert judge(obj, Target.of(obj)) is None


def test_wait_reports_promotion_of_its_revision() -> None:
    obj = md(phase="Stable", stableRevision=NEW, history=[entry(5, 2, NEW, "promote", "promoted")])
    assert judge(obj, Target.of(obj)) == (Outcome.PROMOTED, "promoted")


def test_wait_reports_a_rollback_of_its_revision_with_the_reason() -> None:
    obj = md(phase="RolledBack", stableRevision="old1234567",
             history=[entry(6, 2, NEW, "rollback", "p95 1.8 > 1.2")])  # fmt: skip
    outcome, message = judge(obj, Target.of(obj)) or (None, "")
    assert outcome is Outcome.ROLLED_BACK
    assert "p95 1.8 > 1.2" in message


def test_wait_ignores_a_rollback_of_the_same_revision_at_an_earlier_generation() -> None:
    """Template reverted then re-applied: the earlier rollback is not this rollout's outcome."""
    obj = md(generation=4, observed=4, phase="Progressing", stableRevision="old1234567", canaryRevision=NEW,
             history=[entry(6, 2, NEW, "rollback")])  # fmt: skip
    assert judge(obj, Target.of(obj)) is None


def test_wait_reports_a_newer_spec_that_replaced_its_revision() -> None:
    asked = md()
    target = Target.of(asked)
    newer = md(generation=3, observed=3, phase="Progressing", stableRevision="old1234567", canaryRevision="zzz")
    newer["spec"]["model"]["image"] = "sim:v3"
    assert judge(newer, target) is not None
    assert judge(newer, target)[0] is Outcome.SUPERSEDED  # type: ignore[index]


def test_wait_exit_codes_are_distinct_and_leave_one_to_errors() -> None:
    codes = [int(o) for o in Outcome]
    assert len(set(codes)) == len(codes)
    assert 1 not in codes
    assert Outcome.PROMOTED == 0


def test_approve_finds_the_step_waiting_for_a_person_and_only_that() -> None:
    assert waiting_step(md(phase="Progressing", canaryRevision=NEW, currentStep=1)) == 1
    assert waiting_step(md(phase="Progressing", canaryRevision=NEW, currentStep=0)) is None
    assert waiting_step(md(phase="Stable", stableRevision=NEW)) is None


def test_status_shows_each_objective_against_its_bound_and_the_decisions_numbers() -> None:
    obj = md(
        phase="RolledBack",
        message="p95 over bound",
        weights={"stable": 100},
        lastAnalysis={
            "at": "2026-11-29T01:00:00Z", "revision": NEW, "window": "1m", "verdict": "Failed",
            "objectives": [{"name": "p95-latency", "verdict": "Failed", "value": 1.8432, "bound": "<= 1.2",
                            "samples": 212.0, "reason": "above bound"}],
        },
        history=[{**entry(6, 2, NEW, "rollback", "Rolled back"), "at": "2026-11-29T01:00:01Z",
                  "values": {"p95-latency": 1.8432, "bound": 1.2}}],
        decisions=6,
    )  # fmt: skip
    text = render.describe(obj)
    assert "p95-latency   1.843   <= 1.2" in text
    assert "bound=1.2, p95-latency=1.843" in text
    assert "Timeline (last 1 of 6 decisions)" in text


def test_status_prints_nan_as_nothing_measured() -> None:
    assert render.number(float("nan")) == "-"
    assert render.number(None) == "-"


def test_completion_offers_commands_then_flags_then_output_formats() -> None:
    assert completion.candidates(["st"]) == ["status"]
    assert "--namespace" in completion.candidates(["status", "--"])
    assert completion.candidates(["history", "x", "-o", ""]) == ["json", "yaml"]
    assert completion.candidates(["kill", "x", "--reason", ""]) == []


def test_completion_prints_cobra_directive_last(capsys: pytest.CaptureFixture[str]) -> None:
    completion.main(["pro"])
    assert capsys.readouterr().out.splitlines() == ["promote", ":4"]


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["kill", "bot"], "--reason"),
        (["wait", "bot", "--timeout", "soon"], "--timeout"),
        (["history", "bot", "-o", "wide"], "--output"),
        (["promote"], "name"),
    ],
)
def test_bad_arguments_name_the_flag(argv: list[str], names: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert names in capsys.readouterr().err
