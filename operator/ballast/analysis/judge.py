"""Judges: an objective's measurement -> a verdict. Pure; no data and NaN are never a pass."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ballast.api.modeldeployment import Objective
from ballast.api.status import ObjectiveResult, Verdict


def _known(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and not math.isinf(value)


def _bound_text(objective: Objective, stable: float | None) -> str:
    parts = []
    if objective.max is not None:
        parts.append(f"<= {objective.max:g}")
    if objective.min is not None:
        parts.append(f">= {objective.min:g}")
    if objective.relative_to_stable is not None:
        reference = f" ({stable:.4g})" if _known(stable) else ""
        parts.append(f"<= {objective.relative_to_stable:g} x stable{reference}")
    return ", ".join(parts)


def judge(
    objective: Objective, value: float | None, stable: float | None, samples: float | None, min_requests: int
) -> ObjectiveResult:
    """One objective's verdict for the canary, against absolute bounds and the stable revision."""

    def result(verdict: Verdict, reason: str = "") -> ObjectiveResult:
        return ObjectiveResult(
            name=objective.name,
            verdict=verdict,
            value=value if _known(value) else None,
            stable_value=stable if _known(stable) else None,
            bound=_bound_text(objective, stable),
            samples=samples if _known(samples) else None,
            reason=reason,
        )

    if not _known(samples) or (samples or 0) < min_requests:
        count = f"{samples:.0f}" if _known(samples) else "no"
        return result("Inconclusive", f"{count} requests in the window, fewer than minRequests {min_requests}")
    if not _known(value):
        return result("Inconclusive", "no data for the canary")
    assert value is not None
    if objective.max is not None and value > objective.max:
        return result("Failed", f"{value:.4g} is above max {objective.max:g}")
    if objective.min is not None and value < objective.min:
        return result("Failed", f"{value:.4g} is below min {objective.min:g}")
    if objective.relative_to_stable is not None:
        if not _known(stable):
            return result("Inconclusive", "no data for the stable revision to compare with")
        assert stable is not None
        limit = stable * objective.relative_to_stable
        # Both at zero (no errors anywhere) is a pass; otherwise the canary may not exceed the factor.
        if value > limit and not (value == 0 and stable == 0):
            return result(
                "Failed", f"{value:.4g} is above {objective.relative_to_stable:g} x stable {stable:.4g} = {limit:.4g}"
            )
    return result("Passed")


def error_result(objective: Objective, reason: str) -> ObjectiveResult:
    return ObjectiveResult(name=objective.name, verdict="Error", bound=_bound_text(objective, None), reason=reason)


def overall(results: Sequence[ObjectiveResult]) -> Verdict:
    """Failed beats Error beats Inconclusive beats Passed; no objectives is a pass."""
    verdicts = {r.verdict for r in results}
    ranked: tuple[Verdict, ...] = ("Failed", "Error", "Inconclusive")
    return next((v for v in ranked if v in verdicts), "Passed")
