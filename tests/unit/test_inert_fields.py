"""Nothing declared and ignored: a set field nothing acts on yet raises FieldsNotActedOn naming it."""

from __future__ import annotations

from typing import Any

import pytest

from ballast.api import inert
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.reference import field_reference
from ballast.api.status import ModelDeploymentStatus
from tests.unit.test_rollout_core import READY, Run, spec

# A valid value for each field, listed or not: a field that gains behaviour leaves INERT_FIELDS, and its
# sample here then proves it no longer raises the condition.
SAMPLES: dict[str, Any] = {
    "spec.budgets": {"tokensPerMinute": 1000},
    "spec.rollout.webhooks": [{"name": "gate", "type": "confirm-promotion", "url": "https://gate.example.com/"}],
    "spec.contract.afterPromotion": {"objective": "errors", "target": 0.99},
    # Fields with behaviour, proven elsewhere:
    "spec.rollout.shadow": {"duration": "1m"},
    "spec.killSwitch": {"fallback": "rules"},
    "spec.model.autoscaling": {"maxReplicas": 3},
    "spec.traffic.canaryMatch": [{"name": "x-canary", "value": "1"}],
}
ACTED_ON = sorted(set(SAMPLES) - set(inert.INERT_FIELDS))


def with_field(path: str) -> ModelDeploymentSpec:
    """The test spec with one field set, and what it needs to be valid (an objective, a fallback)."""
    document = spec().model_dump(by_alias=True, exclude_none=True)
    document["contract"] = {"objectives": [{"name": "errors", "preset": "error-rate", "max": 0.05}]}
    document["fallbacks"] = [{"name": "rules", "service": {"name": "faq-rules", "port": 8080}}]
    parent = document
    *parents, leaf = path.split(".")[1:]
    for key in parents:
        parent = parent.setdefault(key, {})
    parent[leaf] = SAMPLES[path]
    return ModelDeploymentSpec.model_validate(document)


def reported(status: ModelDeploymentStatus) -> str | None:
    """The condition's message, or None when it is absent."""
    found = next((c for c in status.conditions if c.type == inert.CONDITION), None)
    if found is None:
        return None
    assert (found.status, found.reason) == ("True", "NoBehaviourYet")
    return found.message


def decided_status(model_spec: ModelDeploymentSpec) -> ModelDeploymentStatus:
    run = Run(model_spec)
    run.observed = {"aaa": READY}
    return run.step("aaa").status


def test_every_listed_field_has_a_sample() -> None:
    assert set(inert.INERT_FIELDS) <= set(SAMPLES)


@pytest.mark.parametrize("path", sorted(inert.INERT_FIELDS))
def test_a_listed_field_set_on_the_object_raises_the_condition_naming_it(path: str) -> None:
    message = reported(decided_status(with_field(path)))
    assert message is not None
    assert f"{path}: {inert.INERT_FIELDS[path]}" in message
    assert not any(other in message for other in inert.INERT_FIELDS if other != path)


@pytest.mark.parametrize("path", ACTED_ON)
def test_a_field_that_is_acted_on_raises_no_condition(path: str) -> None:
    assert reported(decided_status(with_field(path))) is None


def test_the_condition_names_every_listed_field_set_and_goes_when_they_go(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two fields listed for this test (the registry empties as features land; the mechanism must still hold).
    monkeypatch.setitem(inert.INERT_FIELDS, "spec.budgets", "nothing measures use")
    monkeypatch.setitem(inert.INERT_FIELDS, "spec.rollout.webhooks", "nothing calls them")
    document = with_field("spec.budgets").model_dump(by_alias=True, exclude_none=True)
    document["rollout"]["webhooks"] = SAMPLES["spec.rollout.webhooks"]
    run = Run(ModelDeploymentSpec.model_validate(document))
    run.observed = {"aaa": READY}
    message = reported(run.step("aaa").status)
    assert message is not None
    assert "spec.budgets: nothing measures use" in message
    assert "spec.rollout.webhooks: nothing calls them" in message
    del document["budgets"], document["rollout"]["webhooks"]
    run.spec = ModelDeploymentSpec.model_validate(document)
    assert reported(run.step("aaa", 1).status) is None


def test_an_empty_list_sets_nothing() -> None:
    document = spec().model_dump(by_alias=True, exclude_none=True)
    document["rollout"]["webhooks"] = []
    assert inert.inert_fields_set(ModelDeploymentSpec.model_validate(document)) == {}


def test_the_check_fails_against_a_registry_that_forgets_a_field() -> None:
    """The broken variant: a registry without budgets lets a budget pass silently, which the claim above catches."""
    table = {"spec.budgets": "nothing measures use"}
    assert "spec.budgets" in inert.inert_fields_set(with_field("spec.budgets"), table)
    assert "spec.budgets" not in inert.inert_fields_set(with_field("spec.budgets"), {})


def test_the_field_reference_marks_a_listed_field_and_what_is_under_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for path in {*inert.INERT_FIELDS, "spec.contract.afterPromotion"}:
        monkeypatch.setitem(inert.INERT_FIELDS, path, inert.INERT_FIELDS.get(path, "nothing watches it"))
        rows = [line for line in field_reference().splitlines() if line.startswith(f"| `{path}")]
        assert rows[0].startswith(f"| `{path}` ")
        assert inert.REFERENCE_MARK in rows[0]
        assert len(rows) > 1
        assert all("Not acted on yet" in row for row in rows)
