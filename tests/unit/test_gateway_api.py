"""The Gateway API router writes only when something changed."""

from __future__ import annotations

from typing import Any

from ballast.traffic.gateway_api import owned_rule_patch

REFS = [{"name": "bot-aaa", "port": 8000, "weight": 90}, {"name": "bot-bbb", "port": 8000, "weight": 10}]


def route(refs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "mine", "resourceVersion": "7"},
        "spec": {"rules": [{"name": "docs", "backendRefs": []}, {"name": "model", "backendRefs": refs}]},
    }


def test_a_rule_as_the_api_server_stores_it_is_not_patched_again() -> None:
    """The API server defaults group and kind in every backendRef: the same refs compare equal."""
    stored = [{"group": "", "kind": "Service", **ref} for ref in REFS]
    assert owned_rule_patch(route(stored), "model", REFS) == []


def test_a_changed_weight_is_patched_with_a_version_guard() -> None:
    stored = [{"group": "", "kind": "Service", **ref} for ref in REFS]
    wanted = [{**REFS[0], "weight": 70}, {**REFS[1], "weight": 30}]
    assert owned_rule_patch(route(stored), "model", wanted) == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
        {"op": "replace", "path": "/spec/rules/1/backendRefs", "value": wanted},
    ]


def test_a_weight_left_to_its_default_is_the_same_as_weight_one() -> None:
    stored = [{"group": "", "kind": "Service", "name": "bot-aaa", "port": 8000}]
    assert owned_rule_patch(route(stored), "model", [{"name": "bot-aaa", "port": 8000, "weight": 1}]) == []
