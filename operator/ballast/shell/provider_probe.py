"""Whether the metrics provider answers, known before a check needs it: `ballast_metrics_provider_up`.

Checks run only while a canary is judged, so their errors alone would leave an unreachable Prometheus
unseen between rollouts, until the next canary holds on it. A trivial query every `period` seconds
(bounded by the provider's own timeout) keeps the answer current on every replica: a standby that
cannot reach Prometheus would hold every canary the moment it takes over.
"""

from __future__ import annotations

import asyncio

from ballast.analysis.providers.base import MetricsProvider
from ballast.observability import metrics

PROBE_PERIOD = 5.0


async def probe_once(provider: MetricsProvider, kind: str) -> bool:
    answered = await provider.online()
    metrics.provider_up.labels(kind).set(1 if answered else 0)
    if not answered:
        metrics.provider_failures.labels(kind).inc()
    return answered


async def probe_forever(provider: MetricsProvider, kind: str, period: float = PROBE_PERIOD) -> None:
    while True:
        await probe_once(provider, kind)
        await asyncio.sleep(period)
