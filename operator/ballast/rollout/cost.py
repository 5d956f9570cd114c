"""Usage and cost arithmetic: token counts of a window -> tokens per minute, cost per hour, cost per request.

Pure, and in `decimal.Decimal` from the first multiplication on: prices are decimal strings, and a
float never stands for money. Counts come from Prometheus as floats (an `increase()` is
extrapolated, so it need not be whole); a missing, NaN or negative count (no series yet, a custom
query over a counter that reset) is zero use, never negative spend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from ballast.api.modeldeployment import CostBudget

# Digits after the decimal point of ISO 4217 currencies that do not use two; every other code uses two.
_ZERO_DIGITS = ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV",
                "XAF", "XOF", "XPF")  # fmt: skip
MINOR_UNITS: Mapping[str, int] = {
    **dict.fromkeys(_ZERO_DIGITS, 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
# Figures are shown finer than the currency's smallest coin: an hour to 1/100 of it, a request to 1/10^6.
HOURLY_EXTRA_DIGITS = 2
PER_REQUEST_EXTRA_DIGITS = 6
THOUSAND = Decimal(1000)
SECONDS_PER_HOUR = Decimal(3600)


@dataclass(frozen=True)
class Counts:
    """What one revision did in the window, as its runtime counted it."""

    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    successful_requests: float = 0.0

    @property
    def tokens(self) -> Decimal:
        return amount(self.prompt_tokens) + amount(self.completion_tokens)


@dataclass(frozen=True)
class Usage:
    """A measurement of every revision over `window`, at `at` (RFC 3339), or why there is none."""

    at: str
    window: str
    revisions: Mapping[str, Counts] = field(default_factory=dict)
    error: str | None = None


def amount(value: float | None) -> Decimal:
    """A count from Prometheus as a Decimal: missing, NaN, infinite or negative is zero."""
    if value is None or math.isnan(value) or math.isinf(value) or value <= 0:
        return Decimal(0)
    return Decimal(repr(value))


def decimal_places(currency: str, extra: int) -> Decimal:
    return Decimal(1).scaleb(-(MINOR_UNITS.get(currency, 2) + extra))


def money(value: Decimal, currency: str, extra: int = HOURLY_EXTRA_DIGITS) -> str:
    """`value` as a decimal string, rounded half-even to `extra` digits below the currency's minor unit."""
    return str(value.quantize(decimal_places(currency, extra), rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True)
class Prices:
    currency: str
    per_1k_prompt_tokens: Decimal | None = None
    per_1k_completion_tokens: Decimal | None = None
    per_replica_hour: Decimal | None = None

    @classmethod
    def of(cls, cost: CostBudget) -> Prices:
        def price(text: str | None) -> Decimal | None:
            return Decimal(text) if text is not None else None

        return cls(cost.currency, price(cost.per_1k_prompt_tokens), price(cost.per_1k_completion_tokens),
                   price(cost.per_replica_hour))  # fmt: skip

    @property
    def pricing(self) -> str:
        """Which prices apply: per-token, per-replica-hour, or both."""
        parts = [
            *(["per-token"] if self.per_1k_prompt_tokens is not None else []),
            *(["per-replica-hour"] if self.per_replica_hour is not None else []),
        ]
        return "+".join(parts)

    def tokens_cost(self, counts: Counts) -> Decimal:
        """The price of the tokens counted (zero without token prices)."""
        if self.per_1k_prompt_tokens is None or self.per_1k_completion_tokens is None:
            return Decimal(0)
        return (
            amount(counts.prompt_tokens) * self.per_1k_prompt_tokens
            + amount(counts.completion_tokens) * self.per_1k_completion_tokens
        ) / THOUSAND

    def replicas_cost_per_hour(self, replicas: int) -> Decimal:
        return Decimal(max(replicas, 0)) * (self.per_replica_hour or Decimal(0))


def per_hour(value: Decimal, window: timedelta) -> Decimal:
    """An amount over `window` as a rate per hour."""
    return value * SECONDS_PER_HOUR / Decimal(repr(window.total_seconds()))


def tokens_per_minute(counts: Counts, window: timedelta) -> Decimal:
    return per_hour(counts.tokens, window) / 60


def cost_per_hour(counts: Counts, prices: Prices, window: timedelta, replicas: int) -> Decimal:
    """A revision's spend per hour: its tokens over the window, and its ready replicas now."""
    return per_hour(prices.tokens_cost(counts), window) + prices.replicas_cost_per_hour(replicas)


def cost_per_request(counts: Counts, prices: Prices, window: timedelta, replicas: int) -> Decimal | None:
    """Spend per successful request; None without a success in the window (nothing to divide by)."""
    successes = amount(counts.successful_requests)
    if successes == 0:
        return None
    return cost_per_hour(counts, prices, window, replicas) / per_hour(successes, window)
