"""The metrics the chart's alerts and dashboard read: what each says, and that stale series go."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from ballast.analysis.providers.base import Sample
from ballast.api.modeldeployment import Objective
from ballast.api.status import Analysis, ObjectiveResult
from ballast.observability import metrics
from ballast.shell.per_key_runner import PerKeyRunner
from ballast.shell.provider_probe import probe_once


def value(metric: str, /, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


def objective(name: str, revision: str) -> float | None:
    return value("ballast_objective_value", namespace="apps", name="obj", objective=name, revision=revision)


def analysis(revision: str, *results: ObjectiveResult) -> Analysis:
    return Analysis(at="2026-01-01T00:00:00Z", revision=revision, verdict="Passed", objectives=list(results))


OBJECTIVES = [
    Objective(name="latency", preset="e2e-latency-p95", max=1.2),
    Objective(name="errors", preset="error-rate", relativeToStable=1.5),
]


def test_objective_values_and_bounds_follow_the_last_check_and_stale_series_go() -> None:
    first = analysis(
        "canary1",
        ObjectiveResult(name="latency", verdict="Passed", value=0.8),
        ObjectiveResult(name="errors", verdict="Passed", value=0.02, stable_value=0.02),
    )
    metrics.record_analysis("apps", "obj", first, "stable1", OBJECTIVES)
    assert objective("latency", "canary1") == 0.8
    assert objective("errors", "stable1") == 0.02
    assert value("ballast_objective_bound", namespace="apps", name="obj", objective="latency", kind="max") == 1.2
    # A relative bound is exported as the limit it set: the factor times the stable value.
    relative = value("ballast_objective_bound", namespace="apps", name="obj", objective="errors", kind="relative")
    assert relative is not None
    assert abs(relative - 0.03) < 1e-9

    metrics.record_analysis("apps", "obj", analysis("canary2"), "stable1", OBJECTIVES)
    assert objective("latency", "canary1") is None
    assert value("ballast_objective_bound", namespace="apps", name="obj", objective="latency", kind="max") is None


def test_the_kill_switch_age_series_exists_only_while_engaged_and_a_rollback_counts_from_zero() -> None:
    metrics.record_state("apps", "ks", "Stable", 0, 0, 100, True, 1_700_000_000.0)
    assert value("ballast_kill_switch_engaged_since_timestamp_seconds", namespace="apps", name="ks") == 1.7e9
    assert value("ballast_decisions_total", namespace="apps", name="ks", action="rollback") == 0
    assert value("ballast_reconcile_errors_total", namespace="apps", name="ks") == 0
    metrics.record_state("apps", "ks", "Stable", 100, 0, 0, False)
    assert value("ballast_kill_switch_engaged_since_timestamp_seconds", namespace="apps", name="ks") is None


def test_an_owner_change_replaces_the_info_series_and_a_standby_exports_no_deployment() -> None:
    metrics.record_owner("apps", "owned", "team-a")
    metrics.record_owner("apps", "owned", "team-b")
    assert value("ballast_modeldeployment_info", namespace="apps", name="owned", owner="team-a") is None
    assert value("ballast_modeldeployment_info", namespace="apps", name="owned", owner="team-b") == 1
    metrics.forget_all()
    assert value("ballast_modeldeployment_info", namespace="apps", name="owned", owner="team-b") is None


async def test_reconcile_lag_is_how_long_the_oldest_request_has_waited_to_start() -> None:
    release = asyncio.Event()

    async def work(_: str) -> None:
        await release.wait()

    runner: PerKeyRunner[str] = PerKeyRunner(work, lambda *_: None)
    assert runner.oldest_wait() == 0
    runner.notify("a")
    await asyncio.sleep(0)  # "a" starts and blocks
    runner.notify("a")  # waits behind the running one
    await asyncio.sleep(0.05)
    assert runner.oldest_wait() >= 0.05
    release.set()
    await asyncio.gather(*runner.tasks)
    assert runner.oldest_wait() == 0


class Provider:
    def __init__(self, answers: bool) -> None:
        self.answers = answers

    async def query(self, promql: str) -> list[Sample]:
        return []

    async def online(self) -> bool:
        return self.answers

    async def close(self) -> None:
        pass


async def test_the_probe_says_whether_the_provider_answers_and_counts_failures() -> None:
    before = value("ballast_metrics_provider_probe_failures_total", provider="probed") or 0
    assert await probe_once(Provider(answers=False), "probed") is False
    assert value("ballast_metrics_provider_up", provider="probed") == 0
    assert value("ballast_metrics_provider_probe_failures_total", provider="probed") == before + 1
    assert await probe_once(Provider(answers=True), "probed") is True
    assert value("ballast_metrics_provider_up", provider="probed") == 1
