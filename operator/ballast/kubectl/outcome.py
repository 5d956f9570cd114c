"""What `kubectl ballast wait` waits for: the fate of the revision that the asked-about generation declares.

Keyed on that revision and generation, never on the phase alone: right after a spec change the status
still says Stable for the old revision, and that must not read as success.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ballast.api.revision import revision_hash

Object = dict[str, Any]


class Outcome(enum.IntEnum):
    """Exit codes of `wait`: 1 is left to errors (bad arguments, not found, refused), as in kubectl."""

    PROMOTED = 0
    ROLLED_BACK = 2
    TIMED_OUT = 3
    SUPERSEDED = 4  # a newer spec replaced the revision before its rollout ended
    FAILED = 5  # the deployment failed (a refusal, a revision that cannot run)


@dataclass(frozen=True)
class Target:
    """The generation asked about, and the revision it declares."""

    generation: int
    revision: str

    @classmethod
    def of(cls, md: Object) -> Target:
        return cls(int(md["metadata"].get("generation", 0)), revision_hash(md.get("spec") or {}))


def _generation_of(entry: Object) -> int:
    """History ids are `<number>-<generation>-...`; an id of another shape counts as older."""
    parts = str(entry.get("id", "")).split("-")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else -1


def judge(md: Object, target: Target) -> tuple[Outcome, str] | None:
    """The outcome for `target` as this object shows it, or None while it is still undecided."""
    status = md.get("status") or {}
    if int(status.get("observedGeneration") or 0) < target.generation:
        return None  # the operator has not acted on the asked-about spec yet: any verdict would be an old one
    for entry in reversed(status.get("history") or []):
        if entry.get("revision") != target.revision or _generation_of(entry) < target.generation:
            continue
        if entry.get("action") == "rollback":
            return Outcome.ROLLED_BACK, str(entry.get("message") or f"revision {target.revision} rolled back")
        if entry.get("action") in ("promote", "deploy"):
            return Outcome.PROMOTED, str(entry.get("message") or f"revision {target.revision} promoted")
    phase = status.get("phase")
    if phase == "Stable" and status.get("stableRevision") == target.revision:
        return Outcome.PROMOTED, f"revision {target.revision} is stable and serves 100%"
    if phase == "RolledBack" and status.get("canaryRevision") == target.revision:
        return Outcome.ROLLED_BACK, f"revision {target.revision} rolled back: {status.get('message', '')}"
    if phase == "Failed":
        return Outcome.FAILED, f"deployment failed: {status.get('message', '')}"
    current = Target.of(md)
    if current.revision != target.revision and current.generation > target.generation:
        return Outcome.SUPERSEDED, (
            f"generation {current.generation} replaced revision {target.revision} with {current.revision}"
        )
    return None
