"""Durations, defaults of the models, and the preset capability table."""

from __future__ import annotations

from datetime import timedelta

import celpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ballast.api.killswitch import ClusterKillSwitchSpec, KillSwitchSpec
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.presets import ALL_PRESETS, ALL_RUNTIMES, PRESETS_BY_RUNTIME
from ballast.api.types import parse_duration

_cel = celpy.Environment()

duration_parts = st.lists(
    st.tuples(st.integers(min_value=0, max_value=500), st.sampled_from(["ms", "s", "m", "h"])), min_size=1, max_size=3
)


@given(duration_parts)
def test_parse_duration_agrees_with_cel(parts: list[tuple[int, str]]) -> None:
    """The operator reads durations exactly as the API server's CEL `duration()` does."""
    text = "".join(f"{n}{unit}" for n, unit in parts)
    program = _cel.program(_cel.compile(f"duration('{text}')"))
    cel_seconds = program.evaluate({})
    assert parse_duration(text) == timedelta(seconds=cel_seconds.total_seconds())


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("2m", 120), ("1h30m", 5400), ("250ms", 0.25), ("1.5h", 5400)]
)
def test_parse_duration_examples(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "30", "5 m", "1d", "-1s", "m5"])
def test_parse_duration_refuses_what_the_schema_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_model_deployment_defaults() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {"model": {"name": "m", "image": "i"}, "traffic": {"parentRefs": [{"name": "gw"}]}}
    )
    assert spec.model.runtime == "vllm"
    assert spec.model.replicas == 1
    assert spec.traffic.router == "gateway-api"
    assert spec.traffic.port == 8000
    assert spec.traffic.timeouts.request == "300s"
    assert spec.traffic.parent_refs is not None
    assert spec.traffic.parent_refs[0].kind == "Gateway"
    assert spec.contract.min_requests == 50
    assert spec.contract.window == "2m"
    assert spec.rollout.interval == "30s"
    assert spec.rollout.failure_limit == 2
    assert spec.rollout.progress_deadline == "15m"
    assert spec.rollout.scale_down_delay == "10m"
    assert [s.weight for s in spec.rollout.effective_steps()] == [10, 50, 100]
    assert spec.budgets is None
    assert spec.kill_switch is None
    assert spec.fallbacks == []


def test_after_promotion_defaults_follow_the_sre_workbook() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "m", "image": "i"},
            "traffic": {"parentRefs": [{"name": "gw"}]},
            "contract": {
                "objectives": [{"name": "errors", "preset": "error-rate", "max": 0.01}],
                "afterPromotion": {"objective": "errors", "target": 0.99},
            },
        }
    )
    guard = spec.contract.after_promotion
    assert guard is not None
    assert guard.action == "alert"
    assert [(w.long, w.short, w.burn_rate) for w in guard.windows] == [("1h", "5m", 14.4), ("6h", "30m", 6.0)]


def test_kill_switch_defaults_to_engaged() -> None:
    assert KillSwitchSpec.model_validate({"modelDeployments": ["a"], "reason": "r"}).engaged is True
    cluster = ClusterKillSwitchSpec.model_validate({"namespaces": ["a"], "reason": "r"})
    assert cluster.engaged is True
    assert cluster.all_namespaces is False


def test_capability_table_covers_every_runtime_and_only_known_presets() -> None:
    assert set(PRESETS_BY_RUNTIME) == set(ALL_RUNTIMES)
    assert set(PRESETS_BY_RUNTIME["vllm"]) == set(ALL_PRESETS)
    assert not any(p.startswith("ttft") for p in PRESETS_BY_RUNTIME["tgi"])
    assert PRESETS_BY_RUNTIME["custom"] == ()
