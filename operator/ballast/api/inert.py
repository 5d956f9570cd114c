"""Spec fields the CRD accepts that nothing acts on yet: one table, read by the status and the field reference.

A field listed here that is set on an object raises the `FieldsNotActedOn` condition naming it, and the
README field reference marks it, so nobody believes a budget, a gate or a watch protects them while it
does not run. The change that gives a field behaviour deletes its line (and its tests prove the behaviour).
"""

from __future__ import annotations

from typing import Any

from ballast.api.modeldeployment import ModelDeploymentSpec

CONDITION = "FieldsNotActedOn"

# Path in the spec (camelCase, as written) -> what is missing, in words a user can act on.
INERT_FIELDS: dict[str, str] = {}

REFERENCE_MARK = f"**Not acted on yet** (status condition {CONDITION})."


def _value_at(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for key in path.split(".")[1:]:  # the leading "spec"
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def inert_fields_set(spec: ModelDeploymentSpec, table: dict[str, str] = INERT_FIELDS) -> dict[str, str]:
    """The listed fields this spec sets (an empty list or map sets nothing), with what each lacks."""
    written = spec.model_dump(by_alias=True, exclude_none=True)
    return {path: missing for path, missing in table.items() if _value_at(written, path) not in (None, [], {})}


def reference_mark(path: str, table: dict[str, str] = INERT_FIELDS) -> str:
    """The mark of a field reference row: on a listed field, and briefly on every field under it; else ""."""
    if path in table:
        return REFERENCE_MARK
    return "*Not acted on yet.*" if any(path.startswith((f + ".", f + "[]")) for f in table) else ""
