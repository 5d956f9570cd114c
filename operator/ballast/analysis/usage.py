"""Usage per revision from the serving runtime's own counters: prompt tokens, completion tokens, successes.

Batched like the contract checks: one query per quantity for every revision of a deployment
(`by (revision)`), so a measurement costs three queries whatever the revision count. A runtime
without token counters uses the spec's `budgets.tokenQueries` (a template per revision, as custom
objectives do). `increase()` is Prometheus' own answer to counter resets (a restarted server).
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime

from ballast.analysis.providers.base import MetricsProvider, ProviderError, by_revision, first_value
from ballast.analysis.queries import Scope, TemplateError, render_template, successes_query, token_queries
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.timestamps import format_time
from ballast.rollout.cost import Counts, Usage

log = logging.getLogger("ballast.usage")


async def _batched(provider: MetricsProvider, query: str | None) -> dict[str, float]:
    return {} if query is None else by_revision(await provider.query(query))


async def _per_revision(
    provider: MetricsProvider, template: str | None, scope: Scope, services: dict[str, str]
) -> dict[str, float]:
    if template is None:
        return {}
    queries = {r: render_template(template, scope, r, services[r]) for r in scope.revisions}
    answers = await asyncio.gather(*(provider.query(q) for q in queries.values()))
    return {r: first_value(a) for r, a in zip(queries, answers, strict=True)}


async def count_usage(
    provider: MetricsProvider, spec: ModelDeploymentSpec, scope: Scope, services: dict[str, str]
) -> dict[str, Counts]:
    """Counts of every revision in `scope` over its window; a revision without series counts nothing."""
    runtime = spec.model.runtime
    custom = spec.budgets.token_queries if spec.budgets else None
    if custom is not None:
        successes_template = custom.successful_requests
        prompt, completion = await asyncio.gather(
            _per_revision(provider, custom.prompt, scope, services),
            _per_revision(provider, custom.completion, scope, services),
        )
    else:
        successes_template = None
        batched = token_queries(runtime, scope)
        if batched is None:
            raise TemplateError(f"runtime {runtime} has no token counters: set spec.budgets.tokenQueries")
        prompt, completion = await asyncio.gather(*(_batched(provider, q) for q in batched))
    if successes_template is not None:
        successes = await _per_revision(provider, successes_template, scope, services)
    else:
        successes = await _batched(provider, successes_query(runtime, scope))
    return {
        r: Counts(_count(prompt.get(r)), _count(completion.get(r)), _count(successes.get(r))) for r in scope.revisions
    }


def _count(value: float | None) -> float:
    return 0.0 if value is None or math.isnan(value) else value


async def measure(
    provider: MetricsProvider,
    spec: ModelDeploymentSpec,
    namespace: str,
    name: str,
    services: dict[str, str],
    now: datetime,
) -> Usage:
    """Budget use of every revision in `services` over the budget window; errors become Usage.error."""
    assert spec.budgets is not None
    window = spec.budgets.window
    try:
        scope = Scope(namespace, name, tuple(services), window)
        counts = await count_usage(provider, spec, scope, services)
    except ProviderError as error:
        return Usage(format_time(now), window, error=str(error))
    except TemplateError as error:
        return Usage(format_time(now), window, error=f"query template: {error}")
    except Exception as error:  # a measurement never raises: whatever stops it is reported in status
        log.exception("usage of %s/%s could not be measured", namespace, name)
        return Usage(format_time(now), window, error=f"the measurement could not run: {type(error).__name__}: {error}")
    return Usage(format_time(now), window, counts)
