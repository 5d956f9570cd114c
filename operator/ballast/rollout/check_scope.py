"""What a contract check measured: the canary, step, weights and step start in force when it began.

A verdict counts only for what it measured. A check still running when its step ends (a promote,
a step whose pause ran out after an earlier pass) or when a kill switch froze the step and let it
go again hands over a verdict about traffic that is no longer served: it is stale, and ignored.
"""

from __future__ import annotations

from ballast.api.status import Analysis, ModelDeploymentStatus

SHADOW_STEP = -1  # the mirror-only phase before the first step


def judged_step(status: ModelDeploymentStatus) -> int:
    return SHADOW_STEP if status.current_step is None else status.current_step


def began_in(analysis: Analysis, status: ModelDeploymentStatus) -> Analysis:
    """`analysis`, bound to the status in force when its check began."""
    return analysis.model_copy(
        update={
            "step": judged_step(status),
            "canary_weight": status.weights.canary,
            "step_started_at": status.step_started_at,
        }
    )


def measured_now(analysis: Analysis, status: ModelDeploymentStatus) -> bool:
    """Whether `analysis` measured the canary as it stands in `status`: same revision, step, weight, step start."""
    return (
        analysis.revision == status.canary_revision
        and analysis.step == judged_step(status)
        and analysis.canary_weight == status.weights.canary
        and analysis.step_started_at == status.step_started_at
    )
