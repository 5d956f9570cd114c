"""One contract check of a canary: every objective queried (batched by revision) and judged."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime

from ballast.analysis.judge import error_result, judge, overall
from ballast.analysis.providers.base import MetricsProvider, ProviderError, Sample
from ballast.analysis.queries import Scope, TemplateError, preset_query, render_template, requests_query
from ballast.api.modeldeployment import ModelDeploymentSpec, Objective
from ballast.api.status import Analysis, ObjectiveResult
from ballast.api.timestamps import format_time

log = logging.getLogger("ballast.checks")


def by_revision(samples: list[Sample]) -> dict[str, float]:
    return {s.labels.get("revision", ""): s.value for s in samples}


def _first(samples: list[Sample]) -> float:
    return samples[0].value if samples else math.nan


async def _values(
    provider: MetricsProvider, spec: ModelDeploymentSpec, objective: Objective, scope: Scope, service_of: dict[str, str]
) -> dict[str, float]:
    if objective.preset is not None:
        return by_revision(await provider.query(preset_query(spec.model.runtime, objective.preset, scope)))
    assert objective.query is not None
    # A custom template names one revision: one query per revision (two at most: canary and stable).
    queries = {r: render_template(objective.query, scope, r, service_of[r]) for r in scope.revisions}
    answers = await asyncio.gather(*(provider.query(q) for q in queries.values()))
    return {r: _first(a) for r, a in zip(queries, answers, strict=True)}


async def run_check(
    provider: MetricsProvider,
    spec: ModelDeploymentSpec,
    namespace: str,
    name: str,
    canary: str,
    stable: str | None,
    services: dict[str, str],
    now: datetime,
) -> Analysis:
    """Judge `canary` (against `stable` for relative bounds) over the contract's window."""
    objectives = spec.contract.objectives
    results: list[ObjectiveResult]
    try:
        scope = Scope(namespace, name, tuple(r for r in (canary, stable) if r), spec.contract.window)
        samples, values = await asyncio.gather(
            provider.query(requests_query(spec.model.runtime, scope)),
            asyncio.gather(*(_values(provider, spec, o, scope, services) for o in objectives)),
        )
        counts = by_revision(samples)
        results = [
            judge(o, v.get(canary), v.get(stable) if stable else None, counts.get(canary), spec.contract.min_requests)
            for o, v in zip(objectives, values, strict=True)
        ]
    except ProviderError as error:
        results = [error_result(o, str(error)) for o in objectives]
    except TemplateError as error:
        results = [error_result(o, f"query template: {error}") for o in objectives]
    except Exception as error:  # a check never raises: whatever stops it is an Error verdict, counted and shown
        log.exception("contract check of %s/%s could not run", namespace, name)
        results = [error_result(o, f"the check could not run: {type(error).__name__}: {error}") for o in objectives]
    return Analysis(
        at=format_time(now), revision=canary, window=spec.contract.window, verdict=overall(results), objectives=results
    )
