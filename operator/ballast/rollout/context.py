"""What one decision works on: the spec, the new status being built, and what it records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.status import HISTORY_LIMIT, HistoryEntry, ModelDeploymentStatus, Phase, Weights
from ballast.api.timestamps import format_time
from ballast.rollout.observations import Observations


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: ModelDeploymentStatus
    events: tuple[Event, ...] = ()
    history: tuple[HistoryEntry, ...] = ()


@dataclass
class Context:
    spec: ModelDeploymentSpec
    generation: int
    now: datetime
    status: ModelDeploymentStatus
    observations: Observations
    events: list[Event] = field(default_factory=list)
    new_history: list[HistoryEntry] = field(default_factory=list)

    @property
    def now_text(self) -> str:
        return format_time(self.now)

    def record(
        self,
        action: str,
        reason: str,
        message: str,
        *,
        revision: str | None,
        step: int | None = None,
        warning: bool = False,
        values: dict[str, float] | None = None,
        attempt: int | str | None = None,
    ) -> None:
        """An Event and a history entry, numbered from status: ids never repeat, however much history is kept.

        The number is the count of decisions so far, so a decision replayed on the same status (a lost status
        write) gets the same id, and every later one a new id. Callers record a decision once, on the
        transition that makes it (never on every reconcile while a condition holds).
        """
        number = self.status.decisions + 1
        decision_id = f"{number}-{self.generation}-{revision or 'none'}-{'x' if step is None else step}-{action}"
        if attempt is not None:
            decision_id += f"-{attempt}"
        self.status.decisions = number
        entry = HistoryEntry(
            id=decision_id,
            at=self.now_text,
            action=action,
            phase=self.status.phase,
            revision=revision,
            step=step,
            reason=reason,
            message=message,
            values=values or {},
        )
        self.status.history = [*self.status.history, entry][-HISTORY_LIMIT:]
        self.new_history.append(entry)
        self.events.append(Event("Warning" if warning else "Normal", reason, message))


SIGNIFICANT_DIGITS = 2  # noise below this does not rewrite status


def significant(value: float | None) -> float | None:
    """A measured value as status compares it: to SIGNIFICANT_DIGITS significant digits."""
    return None if value is None else float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def split_values(weights: Weights) -> dict[str, float]:
    """A history entry's numbers for a traffic split: every share, summing to 100, as it is after the decision."""
    return {
        "stableWeight": float(weights.stable),
        "canaryWeight": float(weights.canary),
        "fallbackWeight": float(weights.fallback),
    }


def set_phase(ctx: Context, phase: Phase, message: str) -> None:
    ctx.status.phase = phase
    ctx.status.message = message
