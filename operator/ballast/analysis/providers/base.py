"""The metrics-provider protocol: run a query (within a bounded time), say whether the backend answers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


class ProviderError(RuntimeError):
    """The backend could not answer (unreachable, timed out, refused the query)."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


def by_revision(samples: list[Sample]) -> dict[str, float]:
    """A result grouped `by (revision)`, as revision -> value."""
    return {s.labels.get("revision", ""): s.value for s in samples}


def first_value(samples: list[Sample]) -> float:
    """The value of a one-sample result; NaN for an empty one."""
    return samples[0].value if samples else math.nan


class MetricsProvider(Protocol):
    async def query(self, promql: str) -> list[Sample]:
        """An instant query; the result vector (a scalar comes back as one sample without labels)."""

    async def online(self) -> bool:
        """True when the backend answers a trivial query (the provider probe: `ballast_metrics_provider_up`)."""

    async def close(self) -> None:
        """Release connections (the operator is stopping)."""
