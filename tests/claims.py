"""The checks behind test names that claim something of the real stack, kept apart so that a companion test can
run each against a deliberately broken variant and see it fail (a check that cannot fail proves nothing)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------------------------- rollouts


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def rolled_back_at_deadline(history: list[Mapping[str, Any]], deadline: float, slack: float) -> None:
    """The last entry rolls the canary back for its progress deadline, no earlier than `deadline` seconds after the
    canary started and no later than `slack` seconds beyond it (history times are whole seconds: never early)."""
    last = history[-1]
    assert (last["action"], last["reason"]) == ("rollback", "ProgressDeadlineExceeded"), last
    started = next(h for h in reversed(history) if h["action"] == "canary")
    waited = (_at(last["at"]) - _at(started["at"])).total_seconds()
    assert waited >= deadline, f"rolled back {waited}s after the canary started, before its {deadline}s deadline"
    assert waited <= deadline + slack, f"rolled back {waited}s after the canary started: {deadline}s deadline"


def revisions_match_deployments(
    revisions: list[Mapping[str, Any]], deployments: Mapping[str, Mapping[str, Any]]
) -> None:
    """Every revision in status names its Deployment and carries its ready replicas; `deployments` by name."""
    assert revisions, "status lists no revision"
    for revision in revisions:
        workload = revision.get("workload", "")
        assert workload in deployments, f"revision {revision['name']}: workload {workload!r} is no Deployment"
        ready = int((deployments[workload].get("status") or {}).get("readyReplicas", 0))
        assert revision.get("readyReplicas", 0) == ready, f"revision {revision['name']}: {revision} vs {ready} ready"


# ---------------------------------------------------------------------------------------- pods


def not_ready_while_down(pod: Mapping[str, Any]) -> bool:
    """True when the pod's container is not running (crashed, backing off) and the pod says so: not Ready. Raises
    when a down container's pod claims to be Ready; False while the container runs (nothing to judge)."""
    status = pod.get("status") or {}
    container = (status.get("containerStatuses") or [{}])[0]
    if "running" in (container.get("state") or {"running": {}}):
        return False
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    assert container.get("ready") is False, f"a container that is down reports ready: {container}"
    assert conditions.get("Ready") == "False", f"a pod whose container is down is Ready: {conditions}"
    return True


# ----------------------------------------------------------------------------------- processes

Snapshot = frozenset[tuple[int, str]]  # (pid, start time): a pid reused later is another process


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent pid, start time) of a live process; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return fields[0], int(fields[1]), fields[19]


def process_tree(roots: Iterable[int]) -> Snapshot:
    """The processes `roots` and everything they started, now."""
    children: dict[int, list[int]] = {}
    stats: dict[int, tuple[str, int, str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            stats[int(entry)] = found
            children.setdefault(found[1], []).append(int(entry))
    tree: set[tuple[int, str]] = set()
    waiting = [pid for pid in roots if pid in stats]
    while waiting:
        pid = waiting.pop()
        tree.add((pid, stats[pid][2]))
        waiting.extend(children.get(pid, ()))
    return frozenset(tree)


def survivors(snapshot: Snapshot) -> list[int]:
    """The processes of `snapshot` still running (a zombie has exited: only its parent's wait is missing)."""
    left = []
    for pid, started in snapshot:
        found = _stat(pid)
        if found is not None and found[2] == started and found[0] != "Z":
            left.append(pid)
    return sorted(left)
