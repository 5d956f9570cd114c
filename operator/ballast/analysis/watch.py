"""One burn-rate check of the stable revision: every window's bad-event ratio, each pair read.

A preset objective reads Ballast's recording rules when Prometheus has them loaded (a window
shorter than their base window, and every custom query, reads the raw counters); without them
every window is a raw query, and the reading says so (`source: raw`), which a condition shows.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime

from ballast.analysis.burn_rate import read_pair
from ballast.analysis.providers.base import MetricsProvider, ProviderError
from ballast.analysis.queries import Scope, TemplateError, render_template
from ballast.analysis.rules import INFO_RECORD, SOURCES, raw_ratio_query, recorded_ratio_query
from ballast.api.modeldeployment import AfterPromotion, ModelDeploymentSpec, Objective
from ballast.api.status import BurnReading, RulesSource
from ballast.api.timestamps import format_time
from ballast.api.types import parse_duration

log = logging.getLogger("ballast.watch")


def windows_of(watch: AfterPromotion) -> list[str]:
    """Every distinct window of the pairs, each queried once."""
    return list(dict.fromkeys(w for pair in watch.windows for w in (pair.long, pair.short)))


async def recorded_base(provider: MetricsProvider) -> str | None:
    """The base window of Ballast's recording rules when Prometheus has them loaded, else None."""
    samples = await provider.query(INFO_RECORD)
    return next((s.labels["base_window"] for s in samples if s.labels.get("base_window")), None)


def _objective(spec: ModelDeploymentSpec, watch: AfterPromotion) -> Objective:
    return next(o for o in spec.contract.objectives if o.name == watch.objective)


async def _ratio(
    provider: MetricsProvider, spec: ModelDeploymentSpec, objective: Objective, scope: Scope, base: str | None,
    service: str,
) -> float | None:  # fmt: skip
    revision = scope.revisions[0]
    if objective.query is not None:
        samples = await provider.query(render_template(objective.query, scope, revision, service))
        value = samples[0].value if samples else math.nan
    else:
        runtime = spec.model.runtime
        if base is not None and parse_duration(scope.window) >= parse_duration(base):
            query = recorded_ratio_query(runtime, scope, base)
        else:
            query = raw_ratio_query(runtime, scope)
        samples = await provider.query(query)
        value = next((s.value for s in samples if s.labels.get("revision") == revision), math.nan)
    return None if math.isnan(value) or math.isinf(value) else value


async def run_watch(
    provider: MetricsProvider,
    spec: ModelDeploymentSpec,
    namespace: str,
    name: str,
    revision: str,
    service: str,
    now: datetime,
) -> BurnReading:
    """Read every window pair of `contract.afterPromotion` for `revision`; never raises."""
    watch = spec.contract.after_promotion
    assert watch is not None
    reading = BurnReading(at=format_time(now), revision=revision, objective=watch.objective, target=watch.target,
                          verdict="Error")  # fmt: skip
    try:
        objective = _objective(spec, watch)
        base = None
        if objective.preset is not None and spec.model.runtime in SOURCES:
            base = await recorded_base(provider)
        source: RulesSource = "recorded" if base is not None else "raw"
        windows = windows_of(watch)
        values = await asyncio.gather(
            *(_ratio(provider, spec, objective, Scope(namespace, name, (revision,), w), base, service) for w in windows)
        )
        ratios = dict(zip(windows, values, strict=True))
        pairs = [read_pair(pair, ratios, watch.target) for pair in watch.windows]
        missing = [w for w in windows if ratios[w] is None]
        if any(p.breached for p in pairs):
            verdict = "Breached"
        elif missing:
            verdict = "NoData"
        else:
            verdict = "Healthy"
        reason = f"no requests measured over {', '.join(missing)}" if missing else ""
        return reading.model_copy(update={"verdict": verdict, "source": source, "windows": pairs, "reason": reason})
    except (ProviderError, TemplateError) as error:
        return reading.model_copy(update={"reason": str(error)})
    except Exception as error:  # a check never raises: whatever stops it is an Error reading
        log.exception("burn-rate check of %s/%s could not run", namespace, name)
        return reading.model_copy(update={"reason": f"the check could not run: {type(error).__name__}: {error}"})
