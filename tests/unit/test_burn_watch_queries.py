"""One burn-rate check against recorded Prometheus answers: recording rules when loaded, raw counters otherwise."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ballast.analysis.rules import INFO_RECORD, prometheus_rule, rules_file
from ballast.analysis.watch import run_watch
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.cli.main import main
from ballast.observability import metrics
from tests.unit.test_analysis import RecordedProvider

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def spec(objective: dict[str, Any] | None = None) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "m", "image": "i"},
            "traffic": {"parentRefs": [{"name": "gw"}]},
            "contract": {
                "objectives": [objective or {"name": "errors", "preset": "error-rate", "max": 0.5}],
                "afterPromotion": {
                    "objective": "errors", "target": 0.9,
                    "windows": [{"long": "1m", "short": "10s", "burnRate": 2}],
                },
            },
        }
    )  # fmt: skip


def ratio(value: str) -> list[dict[str, Any]]:
    return [{"metric": {"revision": "aaa"}, "value": [0, value]}]


async def test_loaded_rules_serve_the_windows_at_least_as_long_as_their_base() -> None:
    provider = RecordedProvider(
        {
            INFO_RECORD: [{"metric": {"__name__": INFO_RECORD, "base_window": "15s"}, "value": [0, "1"]}],
            "[1m]": ratio("0.3"),
            "[10s]": ratio("0.5"),
        }
    )
    reading = await run_watch(provider, spec(), "ns", "bot", "aaa", "bot-aaa", NOW)
    assert (reading.verdict, reading.source) == ("Breached", "recorded")
    (pair,) = reading.windows
    assert (pair.long_ratio, pair.short_ratio, pair.breached) == (0.3, 0.5, True)
    long_query = next(q for q in provider.queries if "[1m]" in q)
    short_query = next(q for q in provider.queries if "[10s]" in q)
    assert "sum_over_time(ballast:http_errors:rate15s" in long_query
    assert "http_requests_total" in short_query  # shorter than the base window: raw counters
    assert "ballast:" not in short_query


async def test_without_rules_every_window_is_raw_and_the_reading_says_so() -> None:
    provider = RecordedProvider({INFO_RECORD: [], "[1m]": ratio("0.01"), "[10s]": ratio("0.02")})
    reading = await run_watch(provider, spec(), "ns", "bot", "aaa", "bot-aaa", NOW)
    assert (reading.verdict, reading.source) == ("Healthy", "raw")
    assert not any("ballast:http" in q for q in provider.queries)


async def test_no_requests_is_no_data_and_an_unreachable_prometheus_an_error() -> None:
    quiet = RecordedProvider({INFO_RECORD: [], "[1m]": [], "[10s]": []})
    reading = await run_watch(quiet, spec(), "ns", "bot", "aaa", "bot-aaa", NOW)
    assert reading.verdict == "NoData"
    assert not reading.windows[0].breached
    down = await run_watch(RecordedProvider({}, fail=True), spec(), "ns", "bot", "aaa", "bot-aaa", NOW)
    assert down.verdict == "Error"
    assert "did not answer" in down.reason


async def test_a_custom_ratio_query_reads_its_template_per_window() -> None:
    custom = {"name": "errors", "query": 'bad{revision="{{revision}}"}[{{window}}]', "max": 0.5}
    provider = RecordedProvider(
        {"[1m]": [{"metric": {}, "value": [0, "0.4"]}], "[10s]": [{"metric": {}, "value": [0, "0.4"]}]}
    )
    reading = await run_watch(provider, spec(custom), "ns", "bot", "aaa", "bot-aaa", NOW)
    assert (reading.verdict, reading.source) == ("Breached", "raw")
    assert provider.queries == ['bad{revision="aaa"}[1m]', 'bad{revision="aaa"}[10s]']


def test_ballast_rules_prints_one_rule_set_for_every_deployment(capsys: Any) -> None:
    assert main(["rules", "--format", "file", "--base-window", "30s"]) == 0
    printed = capsys.readouterr().out
    assert "record: ballast:http_errors:rate30s" in printed
    assert "sum by (namespace, deployment, revision)" in printed
    groups = rules_file("30s")["groups"]
    assert prometheus_rule("30s")["spec"]["groups"] == groups
    records = [r["record"] for r in groups[0]["rules"]]
    assert len(records) == len(set(records))  # vLLM and openai-compatible share one source, recorded once


async def test_the_burn_rates_are_operator_metrics_until_the_deployment_goes() -> None:
    provider = RecordedProvider({INFO_RECORD: [], "[1m]": ratio("0.3"), "[10s]": ratio("0.5")})
    reading = await run_watch(provider, spec(), "metered", "bot", "aaa", "bot-aaa", NOW)
    metrics.record_burn("metered", "bot", reading)
    assert metrics.burn_rate.labels("metered", "bot", "1m")._value.get() == pytest.approx(3.0)
    assert metrics.burn_rate.labels("metered", "bot", "10s")._value.get() == pytest.approx(5.0)
    metrics.forget("metered", "bot")
    left = [s for f in metrics.burn_rate.collect() for s in f.samples if s.labels["namespace"] == "metered"]
    assert left == []
