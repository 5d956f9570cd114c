"""Templating (with injection attempts), preset queries, parsing of recorded responses, and every judge."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings

from ballast.analysis.check import run_check
from ballast.analysis.judge import judge, overall
from ballast.analysis.providers.base import ProviderError, Sample
from ballast.analysis.providers.prometheus import parse_result
from ballast.analysis.queries import Scope, TemplateError, preset_query, render_template, requests_query
from ballast.api.modeldeployment import BudgetsSpec, ModelDeploymentSpec, Objective
from ballast.api.presets import ALL_RUNTIMES, PRESETS_BY_RUNTIME, TOKEN_PRESETS
from ballast.api.status import ObjectiveResult
from ballast.api.types import parse_duration
from tests.unit.test_durations import ANY_DURATION

SCOPE = Scope("team-a", "bot", ("canary1", "stable1"), "2m")


def objective(**fields: Any) -> Objective:
    return Objective.model_validate({"name": "o", "preset": "error-rate", **fields})


# ------------------------------------------------------------------------------------ templating


def test_template_variables_are_substituted() -> None:
    query = render_template(
        'sum(rate(x{namespace="{{namespace}}",service="{{ service }}",revision="{{revision}}"}[{{window}}]))',
        SCOPE,
        "canary1",
        "bot-canary1",
    )
    assert query == 'sum(rate(x{namespace="team-a",service="bot-canary1",revision="canary1"}[2m]))'


@pytest.mark.parametrize(
    "hostile",
    [
        '"} or vector(1) or x{a="',  # close the matcher and append an expression
        'a\\"} or vector(0)',  # an escaped quote followed by a break-out
        "line\n} or up",  # a newline
    ],
)
def test_values_cannot_break_out_of_their_string(hostile: str) -> None:
    query = render_template('x{revision="{{revision}}"}', SCOPE, hostile, "svc")
    # The value stays one string literal: every quote inside it is escaped.
    body = query.removeprefix('x{revision="').removesuffix('"}')
    unescaped_quotes = [i for i, c in enumerate(body) if c == '"' and (i == 0 or body[i - 1] != "\\")]
    assert unescaped_quotes == []
    assert "\n" not in query


def test_regex_matchers_escape_revision_names() -> None:
    scope = Scope("ns", "n", ("a.b", "c|d"), "1m")
    assert scope.selector == 'namespace="ns",revision=~"a\\\\.b|c\\\\|d"'


def test_unknown_variables_and_bad_windows_are_refused() -> None:
    with pytest.raises(TemplateError, match="unknown variable \\{\\{pod\\}\\}"):
        render_template("x{pod='{{pod}}'}", SCOPE, "r", "s")
    with pytest.raises(TemplateError, match="not a duration such as 2m"):
        Scope("ns", "n", ("r",), "5m]) or vector(1) #")


# ------------------------------------------------------------------------------ windows as durations

# A PromQL duration: whole units, longest first, each at most once (Prometheus' own grammar, without d/w/y).
PROMQL_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")


def promql_milliseconds(text: str) -> int:
    match = PROMQL_DURATION.fullmatch(text)
    assert text, "an empty PromQL duration"
    assert match is not None, f"{text!r} is not a PromQL duration"
    hours, minutes, seconds, millis = (int(part or 0) for part in match.groups())
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis


def test_a_window_with_a_fraction_is_queried_in_whole_units() -> None:
    scope = Scope("ns", "bot", ("c",), "1.5m")
    assert "[1m30s]" in preset_query("vllm", "error-rate", scope)
    assert "[1m30s]" in requests_query("vllm", scope)
    assert render_template("rate(x[{{window}}])", scope, "c", "svc") == "rate(x[1m30s])"


@settings(max_examples=300, deadline=None)
@given(ANY_DURATION)
def test_every_window_the_crd_accepts_is_a_promql_duration_or_a_clear_error(window: str) -> None:
    """The CRD takes Go durations (`1.5m`, `1h30m`, `250ms`); PromQL takes whole units: same length, to the ms
    (rounded up)."""
    wanted = math.ceil(parse_duration(window) / timedelta(milliseconds=1))  # never shorter than written
    if wanted == 0:
        with pytest.raises(TemplateError, match="is empty"):
            Scope("ns", "bot", ("c",), window)
        return
    scope = Scope("ns", "bot", ("c",), window)
    for query in (requests_query("tgi", scope), preset_query("vllm", "ttft-p95", scope)):
        rendered = re.findall(r"\[([^\]]+)\]", query)
        assert rendered
        assert all(promql_milliseconds(r) == wanted for r in rendered)


# -------------------------------------------------------------------------------------- presets


QUERIED = [(r, p) for r in ALL_RUNTIMES for p in PRESETS_BY_RUNTIME[r] if p not in TOKEN_PRESETS]


@pytest.mark.parametrize(("runtime", "preset"), QUERIED, ids=str)
def test_every_preset_is_one_batched_query_grouped_by_revision(runtime: Any, preset: Any) -> None:
    query = preset_query(runtime, preset, SCOPE)
    assert 'revision=~"canary1|stable1"' in query
    assert "by (revision" in query
    assert "[2m]" in query
    assert query.count("(") == query.count(")")


def test_presets_use_the_runtime_metric_names() -> None:
    assert "vllm:e2e_request_latency_seconds_bucket" in preset_query("vllm", "e2e-latency-p95", SCOPE)
    assert "histogram_quantile(0.95," in preset_query("vllm", "e2e-latency-p95", SCOPE)
    assert "vllm:time_to_first_token_seconds_bucket" in preset_query("vllm", "ttft-p99", SCOPE)
    assert 'http_requests_total{namespace="team-a",revision=~"canary1|stable1",status=~"5.."}' in preset_query(
        "vllm", "error-rate", SCOPE
    )
    assert "tgi_request_failure" in preset_query("tgi", "error-rate", SCOPE)
    assert "nv_inference_request_duration_us" in preset_query("triton", "e2e-latency-mean", SCOPE)
    assert "http_request_duration_seconds_bucket" in preset_query("openai-compatible", "e2e-latency-p50", SCOPE)
    assert "increase(tgi_request_count" in requests_query("tgi", SCOPE)


def test_a_preset_the_runtime_lacks_is_an_error() -> None:
    with pytest.raises(TemplateError, match="runtime tgi has no preset ttft-p95"):
        preset_query("tgi", "ttft-p95", SCOPE)


# ----------------------------------------------------------------------- recorded responses

# `data.result` of real Prometheus answers to a batched preset query, a scalar and a NaN.
RECORDED_VECTOR = [
    {"metric": {"revision": "canary1"}, "value": [1764000000.0, "0.4125"]},
    {"metric": {"revision": "stable1"}, "value": [1764000000.0, "0.212"]},
]
RECORDED_SCALAR = [1764000000.0, "1"]
RECORDED_NAN = [{"metric": {"revision": "canary1"}, "value": [1764000000.0, "NaN"]}]


def test_recorded_responses_parse() -> None:
    assert parse_result(RECORDED_VECTOR) == [
        Sample({"revision": "canary1"}, 0.4125),
        Sample({"revision": "stable1"}, 0.212),
    ]
    assert parse_result(RECORDED_SCALAR) == [Sample({}, 1.0)]
    assert math.isnan(parse_result(RECORDED_NAN)[0].value)
    assert parse_result([]) == []


class RecordedProvider:
    """Answers from recorded responses, keyed by a fragment of the query."""

    def __init__(self, answers: dict[str, Any], fail: bool = False) -> None:
        self.answers = answers
        self.fail = fail
        self.queries: list[str] = []

    async def query(self, promql: str) -> list[Sample]:
        self.queries.append(promql)
        if self.fail:
            raise ProviderError("Prometheus at http://127.0.0.1:9 did not answer within 10s")
        fragment = next((key for key in self.answers if key in promql), None)
        if fragment is None:
            raise ProviderError(f"no answer for {promql}")
        return parse_result(self.answers[fragment])


def _spec(*objectives: dict[str, Any]) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "m", "image": "i"},
            "traffic": {"parentRefs": [{"name": "gw"}]},
            "contract": {"minRequests": 20, "objectives": list(objectives)},
        }
    )


async def test_a_check_batches_one_query_per_objective_and_judges_against_stable() -> None:
    provider = RecordedProvider(
        {
            "increase(http_requests_total": [
                {"metric": {"revision": "canary1"}, "value": [0, "120"]},
                {"metric": {"revision": "stable1"}, "value": [0, "480"]},
            ],
            "vllm:e2e_request_latency_seconds_bucket": RECORDED_VECTOR,
            'status=~"5.."': [
                {"metric": {"revision": "canary1"}, "value": [0, "0.01"]},
                {"metric": {"revision": "stable1"}, "value": [0, "0.01"]},
            ],
        }
    )
    spec = _spec(
        {"name": "p95", "preset": "e2e-latency-p95", "max": 0.3},
        {"name": "errors", "preset": "error-rate", "max": 0.05, "relativeToStable": 1.5},
    )
    now = datetime(2026, 11, 24, tzinfo=UTC)
    analysis = await run_check(provider, spec, "team-a", "bot", "canary1", "stable1", {}, now)
    assert len(provider.queries) == 3  # samples + one per objective, whatever the revision count
    assert analysis.verdict == "Failed"
    p95, errors = analysis.objectives
    assert (p95.verdict, p95.value, p95.stable_value, p95.samples) == ("Failed", 0.4125, 0.212, 120.0)
    assert p95.reason == "0.4125 is above max 0.3"
    assert errors.verdict == "Passed"


def _answer(canary: float, stable: float) -> list[dict[str, Any]]:
    return [{"metric": {"revision": "canary1"}, "value": [0, str(canary)]},
            {"metric": {"revision": "stable1"}, "value": [0, str(stable)]}]  # fmt: skip


async def test_cost_per_request_is_priced_from_the_token_counters_and_judged_against_stable() -> None:
    # Over 2m: both answer 100 requests with 1000 prompt tokens; the canary writes 40% more completion tokens.
    provider = RecordedProvider({
        "vllm:prompt_tokens_total": _answer(1000, 1000),
        "vllm:generation_tokens_total": _answer(7000, 5000),
        'http_requests_total{namespace="team-a",revision=~"canary1|stable1",status=~"2.."}': _answer(100, 100),
        "increase(http_requests_total": _answer(100, 100),
    })  # fmt: skip
    spec = _spec({"name": "cost", "preset": "cost-per-request", "relativeToStable": 1.2})
    spec = spec.model_copy(update={"budgets": BudgetsSpec.model_validate({"cost": {
        "perHour": "10", "per1kPromptTokens": "0.001", "per1kCompletionTokens": "0.002"}})})  # fmt: skip
    analysis = await run_check(provider, spec, "team-a", "bot", "canary1", "stable1", {}, datetime.now(UTC))
    (cost,) = analysis.objectives
    # (1000 x 0.001 + 7000 x 0.002) / 1000 / 100 = 0.00015 per request; the stable's 0.00011.
    assert (cost.value, cost.stable_value) == (pytest.approx(0.00015), pytest.approx(0.00011))
    assert cost.verdict == "Failed"
    assert "above 1.2 x stable 0.00011" in cost.reason
    assert len(provider.queries) == 4  # requests, and prompt, completion, successes: each batched by revision


async def test_an_unreachable_prometheus_is_an_error_never_a_pass() -> None:
    spec = _spec({"name": "errors", "preset": "error-rate", "max": 0.05})
    analysis = await run_check(RecordedProvider({}, fail=True), spec, "ns", "bot", "c", "s", {}, datetime.now(UTC))
    assert analysis.verdict == "Error"
    assert "did not answer" in analysis.objectives[0].reason


class BrokenProvider(RecordedProvider):
    """A backend whose client fails in a way nobody planned for."""

    async def query(self, promql: str) -> list[Sample]:
        raise KeyError("data")


@pytest.mark.parametrize(
    ("provider", "window", "reason"),
    [
        (BrokenProvider({}), "2m", "KeyError"),
        (RecordedProvider({}, fail=True), "0s", "is empty"),
        (RecordedProvider({}), "1.5m", "no answer for"),
    ],
    ids=["unplanned-error", "empty-window", "fractional-window"],
)
async def test_any_error_building_or_running_a_check_is_an_error_verdict(
    provider: RecordedProvider, window: str, reason: str
) -> None:
    spec = _spec({"name": "errors", "preset": "error-rate", "max": 0.05})
    spec.contract.window = window
    analysis = await run_check(provider, spec, "ns", "bot", "c", "s", {}, datetime.now(UTC))
    assert analysis.verdict == "Error"
    assert reason in analysis.objectives[0].reason


# ---------------------------------------------------------------------------------------- judges


@pytest.mark.parametrize(
    ("fields", "value", "stable", "samples", "verdict", "reason"),
    [
        ({"max": 1.0}, 0.5, None, 100, "Passed", ""),
        ({"max": 1.0}, 1.5, None, 100, "Failed", "1.5 is above max 1"),
        ({"min": 0.9}, 0.8, None, 100, "Failed", "0.8 is below min 0.9"),
        ({"max": 1.0}, 0.5, None, 10, "Inconclusive", "10 requests in the window, fewer than minRequests 50"),
        ({"max": 1.0}, 0.5, None, None, "Inconclusive", "no requests in the window, fewer than minRequests 50"),
        ({"max": 1.0}, None, None, 100, "Inconclusive", "no data for the canary"),
        ({"max": 1.0}, math.nan, None, 100, "Inconclusive", "no data for the canary"),
        ({"max": 1.0}, math.inf, None, 100, "Inconclusive", "no data for the canary"),
        ({"relativeToStable": 1.5}, 0.03, 0.01, 100, "Failed", "0.03 is above 1.5 x stable 0.01 = 0.015"),
        ({"relativeToStable": 1.5}, 0.3, 0.25, 100, "Passed", ""),  # both degraded together
        ({"relativeToStable": 1.5}, 0.0, 0.0, 100, "Passed", ""),
        ({"relativeToStable": 1.5}, 0.01, None, 100, "Inconclusive", "no data for the stable revision to compare with"),
        ({"max": 0.5, "relativeToStable": 2}, 0.6, 0.5, 100, "Failed", "0.6 is above max 0.5"),
    ],
)
def test_judges(
    fields: dict[str, Any], value: float | None, stable: float | None, samples: float | None, verdict: str, reason: str
) -> None:
    result = judge(objective(**fields), value, stable, samples, 50)
    assert (result.verdict, result.reason) == (verdict, reason)


def test_bound_text_names_the_stable_reference() -> None:
    result = judge(objective(max=0.05, relativeToStable=1.5), 0.01, 0.02, 100, 50)
    assert result.bound == "<= 0.05, <= 1.5 x stable (0.02)"


def test_overall_verdict_ranks_failure_first() -> None:
    def r(verdict: Any) -> ObjectiveResult:
        return ObjectiveResult(name="x", verdict=verdict)

    assert overall([r("Passed"), r("Inconclusive"), r("Failed")]) == "Failed"
    assert overall([r("Passed"), r("Error"), r("Inconclusive")]) == "Error"
    assert overall([r("Passed")]) == "Passed"
    assert overall([]) == "Passed"
