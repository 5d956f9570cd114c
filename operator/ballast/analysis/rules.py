"""Recording rules for the burn-rate watch: one rule set per error-rate preset source, not per deployment.

Each source (the counters a runtime's error-rate preset reads) gets two recorded series per
revision, grouped by namespace, deployment and revision: the rate of requests and the rate of bad
ones over a short base window. A burn-rate window of any length is then one cheap query over one
series per revision (`sum_over_time` of the recorded rates, whose ratio weighs every moment by its
traffic) instead of a range over every pod's raw counters. A marker series says the rules are
loaded and with which base window, so the operator finds them without configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ballast.analysis.queries import Scope, preset_query
from ballast.api.presets import Runtime
from ballast.api.types import parse_duration, whole_units

GROUP = "ballast-burn-rate"
INFO_RECORD = "ballast:recording_rules_info"
GROUPING = "namespace, deployment, revision"
DEFAULT_BASE_WINDOW = "1m"


@dataclass(frozen=True)
class Source:
    """The counters behind one runtime's error-rate preset."""

    name: str
    requests: str  # a selector body (metric name or name matcher) counting every request
    errors: str  # the same for bad requests

    def record(self, kind: str, base: str) -> str:
        return f"ballast:{self.name}_{kind}:rate{base}"


HTTP = Source("http", "http_requests_total", 'http_requests_total{status=~"5.."}')
SOURCES: dict[Runtime, Source] = {
    "vllm": HTTP,
    "openai-compatible": HTTP,
    "tgi": Source("tgi", "tgi_request_count", "tgi_request_failure"),
    # Triton counts successes and failures apart: every request is one or the other.
    "triton": Source(
        "triton",
        '{__name__=~"nv_inference_request_success|nv_inference_request_failure"}',
        "nv_inference_request_failure",
    ),
}


def base_window_text(base: str) -> str:
    return whole_units(parse_duration(base))


def _rate(selector: str, base: str) -> str:
    return f"sum by ({GROUPING}) (rate({selector}[{base}]))"


def rule_groups(base: str = DEFAULT_BASE_WINDOW) -> list[dict[str, Any]]:
    """The rule groups, as Prometheus' rules file and a PrometheusRule's spec both hold them."""
    base = base_window_text(base)
    rules: list[dict[str, Any]] = [{"record": INFO_RECORD, "expr": "vector(1)", "labels": {"base_window": base}}]
    for source in dict.fromkeys(SOURCES.values()):
        rules.append({"record": source.record("requests", base), "expr": _rate(source.requests, base)})
        rules.append({"record": source.record("errors", base), "expr": _rate(source.errors, base)})
    return [{"name": GROUP, "rules": rules}]


def rules_file(base: str = DEFAULT_BASE_WINDOW) -> dict[str, Any]:
    return {"groups": rule_groups(base)}


def prometheus_rule(base: str = DEFAULT_BASE_WINDOW, namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": GROUP, "labels": {"app.kubernetes.io/name": "ballast"}}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": {"groups": rule_groups(base)},
    }


def _ratio_or_zero(numerator: str, denominator: str) -> str:
    return f"(({numerator}) or ({denominator}) * 0) / ({denominator})"


def recorded_ratio_query(runtime: Runtime, scope: Scope, base: str) -> str:
    """The bad-event ratio per revision over the scope's window, from the recorded rates."""
    source = SOURCES[runtime]

    def summed(kind: str) -> str:
        return f"sum by (revision) (sum_over_time({source.record(kind, base)}{{{scope.selector}}}[{scope.range}]))"

    return _ratio_or_zero(summed("errors"), summed("requests"))


def raw_ratio_query(runtime: Runtime, scope: Scope) -> str:
    """The same ratio from the raw counters: the error-rate preset over the window."""
    return preset_query(runtime, "error-rate", scope)
