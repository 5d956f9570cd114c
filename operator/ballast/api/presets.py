"""Which objective presets each serving runtime can supply.

The table is the single source for the admission rule that refuses a preset a runtime cannot
supply, and for the PromQL the analysis layer renders for each preset.
"""

from __future__ import annotations

from typing import Literal, get_args

Runtime = Literal["vllm", "tgi", "triton", "openai-compatible", "custom"]
Preset = Literal[
    "e2e-latency-p50",
    "e2e-latency-p95",
    "e2e-latency-p99",
    "e2e-latency-mean",
    "ttft-p50",
    "ttft-p95",
    "ttft-p99",
    "inter-token-latency-p95",
    "inter-token-latency-p99",
    "error-rate",
    "cost-per-request",
]

_LATENCY_PERCENTILES: tuple[Preset, ...] = ("e2e-latency-p50", "e2e-latency-p95", "e2e-latency-p99")
_TTFT: tuple[Preset, ...] = ("ttft-p50", "ttft-p95", "ttft-p99")
_INTER_TOKEN: tuple[Preset, ...] = ("inter-token-latency-p95", "inter-token-latency-p99")
# Runtimes whose own metrics count prompt and completion tokens; others need budgets.tokenQueries.
TOKEN_COUNTING_RUNTIMES: tuple[Runtime, ...] = ("vllm", "tgi")
# Presets priced from token counters: any runtime can have them once the spec gives token queries.
TOKEN_PRESETS: tuple[Preset, ...] = ("cost-per-request",)

PRESETS_BY_RUNTIME: dict[Runtime, tuple[Preset, ...]] = {
    # vLLM exports histograms for end-to-end latency, time to first token and inter-token latency.
    "vllm": (*_LATENCY_PERCENTILES, "e2e-latency-mean", *_TTFT, *_INTER_TOKEN, "error-rate", *TOKEN_PRESETS),
    # TGI has no time-to-first-token histogram.
    "tgi": (*_LATENCY_PERCENTILES, "e2e-latency-mean", *_INTER_TOKEN, "error-rate", *TOKEN_PRESETS),
    # Triton's default metrics are cumulative microsecond counters: means only.
    "triton": ("e2e-latency-mean", "error-rate"),
    "openai-compatible": (*_LATENCY_PERCENTILES, "e2e-latency-mean", "error-rate"),
    # A custom runtime has no known metric names: objectives must be PromQL queries.
    "custom": (),
}

ALL_RUNTIMES: tuple[Runtime, ...] = get_args(Runtime)
ALL_PRESETS: tuple[Preset, ...] = get_args(Preset)


def presets_cel_condition(runtime_expr: str, preset_expr: str) -> str:
    """A CEL expression that is true when `preset_expr` is supplied by `runtime_expr`."""
    clauses = []
    for runtime in ALL_RUNTIMES:
        supported = ", ".join(f"'{p}'" for p in PRESETS_BY_RUNTIME[runtime])
        clauses.append(f"({runtime_expr} == '{runtime}' && {preset_expr} in [{supported}])")
    return " || ".join(clauses)


def presets_table_text() -> str:
    """The capability table, one runtime a line, for messages and docs."""
    return (
        "; ".join(
            f"{runtime}: {', '.join(PRESETS_BY_RUNTIME[runtime]) or 'none (use query)'}" for runtime in ALL_RUNTIMES
        )
        + f" ({', '.join(TOKEN_PRESETS)} on any runtime with budgets.tokenQueries)"
    )
