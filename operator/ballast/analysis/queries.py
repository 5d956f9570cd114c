"""PromQL for objectives: presets per serving runtime, batched `by (revision)`, and custom templates.

Preset queries ask once per objective for every revision of a ModelDeployment (`revision=~"a|b"`,
grouped `by (revision)`), so a check costs one query per objective whatever the revision count.
Custom templates get their variables escaped as PromQL string contents, so no field can inject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ballast.api.presets import Preset, Runtime
from ballast.api.types import parse_duration, whole_units

TEMPLATE_VARIABLES = ("namespace", "name", "revision", "service", "window")
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")


class TemplateError(ValueError):
    """A custom query uses an unknown variable, or the window cannot be a PromQL duration."""


def escape_label_value(value: str) -> str:
    """The contents of a double-quoted PromQL string: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_regex_literal(value: str) -> str:
    """A literal inside a PromQL regex matcher (then escaped as a string)."""
    return escape_label_value(re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", value))


@dataclass(frozen=True)
class Scope:
    """What a query is about: one ModelDeployment, some revisions, one window."""

    namespace: str
    name: str
    revisions: tuple[str, ...]
    window: str

    def __post_init__(self) -> None:
        try:
            length = parse_duration(self.window)
        except ValueError as error:
            raise TemplateError(f"window {self.window!r} is not a duration such as 2m or 1.5m") from error
        if whole_units(length) == "0s":
            raise TemplateError(f"window {self.window!r} is empty: a range needs at least 1ms")

    @property
    def range(self) -> str:
        """The window as PromQL reads it: whole units (`1.5m` -> `1m30s`), the CRD's Go durations allow fractions."""
        return whole_units(parse_duration(self.window))

    @property
    def selector(self) -> str:
        revisions = "|".join(escape_regex_literal(r) for r in self.revisions)
        return f'namespace="{escape_label_value(self.namespace)}",revision=~"{revisions}"'


def render_template(template: str, scope: Scope, revision: str, service: str) -> str:
    """A custom objective's query for one revision; every value is escaped, unknown variables refused."""
    values = {
        "namespace": escape_label_value(scope.namespace),
        "name": escape_label_value(scope.name),
        "revision": escape_label_value(revision),
        "service": escape_label_value(service),
        "window": scope.range,
    }

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise TemplateError(f"unknown variable {{{{{key}}}}}; known: {', '.join(TEMPLATE_VARIABLES)}")
        return values[key]

    return _VARIABLE.sub(substitute, template)


# ------------------------------------------------------------------------------------- presets


def _quantile(metric: str, q: float, scope: Scope) -> str:
    return f"histogram_quantile({q}, sum by (revision, le) (rate({metric}_bucket{{{scope.selector}}}[{scope.range}])))"


def _rate(metric: str, scope: Scope, extra: str = "") -> str:
    matchers = scope.selector + (f",{extra}" if extra else "")
    return f"sum by (revision) (rate({metric}{{{matchers}}}[{scope.range}]))"


def _ratio_or_zero(numerator: str, denominator: str) -> str:
    """numerator/denominator where a missing numerator series counts as zero (no errors yet)."""
    return f"(({numerator}) or ({denominator}) * 0) / ({denominator})"


def _mean(metric: str, scope: Scope, scale: float = 1.0) -> str:
    divisor = f" / {scale:g}" if scale != 1.0 else ""
    return f"{_rate(metric + '_sum', scope)}{divisor} / {_rate(metric + '_count', scope)}"


_HISTOGRAMS: dict[Runtime, dict[str, str]] = {
    "vllm": {
        "e2e-latency": "vllm:e2e_request_latency_seconds",
        "ttft": "vllm:time_to_first_token_seconds",
        "inter-token-latency": "vllm:inter_token_latency_seconds",
    },
    "tgi": {"e2e-latency": "tgi_request_duration", "inter-token-latency": "tgi_request_mean_time_per_token_duration"},
    "openai-compatible": {"e2e-latency": "http_request_duration_seconds"},
}


def _http_error_rate(scope: Scope) -> str:
    total = _rate("http_requests_total", scope)
    return _ratio_or_zero(_rate("http_requests_total", scope, 'status=~"5.."'), total)


def preset_query(runtime: Runtime, preset: Preset, scope: Scope) -> str:
    """The batched PromQL of a preset: one value per revision (cost-per-request is priced from usage instead)."""
    if preset == "error-rate":
        if runtime == "tgi":
            return _ratio_or_zero(_rate("tgi_request_failure", scope), _rate("tgi_request_count", scope))
        if runtime == "triton":
            failures = _rate("nv_inference_request_failure", scope)
            successes = _rate("nv_inference_request_success", scope)
            return _ratio_or_zero(failures, f"{successes} + ({failures} or {successes} * 0)")
        return _http_error_rate(scope)
    if runtime == "triton" and preset == "e2e-latency-mean":
        # Triton's cumulative microsecond counter: mean seconds per request.
        return f"{_rate('nv_inference_request_duration_us', scope)} / 1e6 / {_rate('nv_inference_count', scope)}"
    family, _, statistic = preset.rpartition("-")
    metric = _HISTOGRAMS.get(runtime, {}).get(family)
    if metric is None:
        raise TemplateError(f"runtime {runtime} has no preset {preset}")
    if statistic == "mean":
        return _mean(metric, scope)
    return _quantile(metric, int(statistic.removeprefix("p")) / 100, scope)


def _increase(metric: str, scope: Scope, extra: str = "") -> str:
    matchers = scope.selector + (f",{extra}" if extra else "")
    return f"sum by (revision) (increase({metric}{{{matchers}}}[{scope.range}]))"


def requests_query(runtime: Runtime, scope: Scope) -> str:
    """Requests per revision in the window: the sample size behind every verdict."""
    if runtime == "tgi":
        counter = "tgi_request_count"
    elif runtime == "triton":
        counter = "nv_inference_count"
    else:
        counter = "http_requests_total"
    return _increase(counter, scope)


# Prompt and completion token counters of the runtimes that have them (TGI's are histograms: their sums).
_TOKEN_COUNTERS: dict[Runtime, tuple[str, str]] = {
    "vllm": ("vllm:prompt_tokens_total", "vllm:generation_tokens_total"),
    "tgi": ("tgi_request_input_length_sum", "tgi_request_generated_tokens_sum"),
}
_SUCCESS_COUNTERS: dict[Runtime, tuple[str, str]] = {
    "vllm": ("http_requests_total", 'status=~"2.."'),
    "openai-compatible": ("http_requests_total", 'status=~"2.."'),
    "tgi": ("tgi_request_success", ""),
    "triton": ("nv_inference_request_success", ""),
}


def token_queries(runtime: Runtime, scope: Scope) -> tuple[str, str] | None:
    """(prompt, completion) tokens per revision in the window, batched; None for a runtime without counters."""
    counters = _TOKEN_COUNTERS.get(runtime)
    return None if counters is None else (_increase(counters[0], scope), _increase(counters[1], scope))


def successes_query(runtime: Runtime, scope: Scope) -> str | None:
    """Successful requests per revision in the window, batched; None for a runtime without a known counter."""
    counter = _SUCCESS_COUNTERS.get(runtime)
    return None if counter is None else _increase(counter[0], scope, counter[1])
