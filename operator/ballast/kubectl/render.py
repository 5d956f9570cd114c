"""What `status` and `history` print: read from the raw object, so a field added by a newer operator, or
missing from an older one, never breaks the view."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

Object = dict[str, Any]
TIMELINE_LENGTH = 12


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns padded like kubectl's, three spaces apart; empty cells as `-`."""
    cells = [list(header)] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["   ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def number(value: object) -> str:
    """A measured value as a person reads it: four significant digits, no exponent noise, `-` when absent."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN: nothing was measured
            return "-"
        return f"{value:.4g}"
    return str(value)


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    return number(value)


def values_text(values: Object | None) -> str:
    return ", ".join(f"{key}={number(value)}" for key, value in sorted((values or {}).items()))


def overview(mds: list[Object]) -> str:
    """One line per ModelDeployment (`status -A`, or `status` without a name)."""
    rows = []
    for md in mds:
        status = md.get("status") or {}
        weights = status.get("weights") or {}
        rows.append(
            (
                md["metadata"]["namespace"],
                md["metadata"]["name"],
                status.get("phase", "Pending"),
                status.get("stableRevision"),
                status.get("canaryRevision"),
                split_text(weights),
                "engaged" if (status.get("killSwitch") or {}).get("engaged") else "",
            )
        )
    return table(("NAMESPACE", "NAME", "PHASE", "STABLE", "CANARY", "SPLIT", "SWITCH"), rows)


def split_text(weights: Object) -> str:
    parts = [f"stable {weights.get('stable', 100)}%"]
    if weights.get("canary"):
        parts.append(f"canary {weights['canary']}%")
    if weights.get("fallback"):
        parts.append(f"fallback {weights.get('fallbackName') or ''} {weights['fallback']}%".replace("  ", " "))
    return ", ".join(parts)


def describe(md: Object) -> str:
    """The whole picture of one ModelDeployment: phase, split, contract, gates, budget, switches, timeline."""
    meta, status = md["metadata"], md.get("status") or {}
    observed = status.get("observedGeneration")
    lines = [
        f"Name:        {meta['namespace']}/{meta['name']}",
        f"Phase:       {status.get('phase', 'Pending')}"
        + (f" (generation {meta.get('generation')}, observed {observed})" if observed is not None else ""),
        f"Message:     {status.get('message') or '-'}",
        f"Split:       {split_text(status.get('weights') or {})}",
        f"Revisions:   stable {status.get('stableRevision') or '-'}, canary {status.get('canaryRevision') or '-'}"
        + (f", step {status['currentStep'] + 1}" if status.get("currentStep") is not None else ""),
    ]
    lines += _section("Contract", _contract(status.get("lastAnalysis")))
    lines += _section("Gates", _gates(status.get("gates")))
    lines += _section("Budget", _budget(status.get("budget")))
    lines += _section("Kill switch", _switch(status.get("killSwitch") or {}))
    lines += _section("Conditions", _conditions(status.get("conditions") or []))
    history = status.get("history") or []
    lines += _section(
        f"Timeline (last {min(len(history), TIMELINE_LENGTH)} of {status.get('decisions', len(history))} decisions)",
        timeline(history[-TIMELINE_LENGTH:]) if history else "",
    )
    return "\n".join(lines)


def timeline(history: list[Object]) -> str:
    rows = (
        (
            entry.get("at"),
            entry.get("action"),
            entry.get("reason"),
            entry.get("revision"),
            None if entry.get("step") is None else entry["step"] + 1,
            values_text(entry.get("values")),
            entry.get("message"),
        )
        for entry in history
    )
    return table(("AT", "ACTION", "REASON", "REVISION", "STEP", "NUMBERS", "MESSAGE"), rows)


def _section(title: str, body: str) -> list[str]:
    if not body:
        return [f"{title + ':':<13}-"]
    return [f"{title}:"] + ["  " + line for line in body.splitlines()]


def _contract(analysis: Object | None) -> str:
    if not analysis:
        return ""
    head = (
        f"last check {analysis.get('at')} on {analysis.get('revision') or '-'}"
        f" (window {analysis.get('window') or '-'}): {analysis.get('verdict')}"
    )
    rows = (
        (
            o.get("name"),
            number(o.get("value")),
            o.get("bound"),
            number(o.get("stableValue")),
            number(o.get("samples")),
            o.get("verdict"),
            o.get("reason"),
        )
        for o in analysis.get("objectives") or []
    )
    return head + "\n" + table(("OBJECTIVE", "VALUE", "BOUND", "STABLE", "SAMPLES", "VERDICT", "WHY"), rows)


def _gates(gates: object) -> str:
    if not isinstance(gates, list) or not gates:
        return ""
    keys = ("name", "phase", "verdict", "message")
    return table(tuple(k.upper() for k in keys), ([g.get(k) for k in keys] for g in gates if isinstance(g, dict)))


def _budget(budget: Object | None) -> str:
    if not budget:
        return ""
    return (
        f"tokens/min {number(budget.get('tokensPerMinute'))}, cost/hour {budget.get('costPerHour') or '-'}, "
        f"exceeded {'yes' if budget.get('exceeded') else 'no'}"
        + (f", action {budget['action']} since {budget.get('since')}" if budget.get("action") else "")
    )


def _switch(switch: Object) -> str:
    sources = switch.get("sources") or []
    if not switch.get("engaged") and not sources:
        return "not engaged" + (f" (released {switch['releasedAt']})" if switch.get("releasedAt") else "")
    state = (
        f"engaged since {switch.get('engagedAt')}, users on {switch.get('fallback') or 'no usable fallback'}"
        if switch.get("engaged")
        else "selected but not engaged"
    )
    rows = (
        (
            s.get("kind"),
            f"{s['namespace']}/{s['name']}" if s.get("namespace") else s.get("name"),
            s.get("requestedBy"),
            s.get("reason"),
        )
        for s in sources
    )
    return state + ("\n" + table(("KIND", "NAME", "BY", "REASON"), rows) if sources else "")


def _conditions(conditions: list[Object]) -> str:
    rows = ((c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in conditions)
    return table(("TYPE", "STATUS", "REASON", "MESSAGE"), rows) if conditions else ""
