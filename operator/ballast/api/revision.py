"""A revision's identity: a hash of the pod template exactly as the user wrote it.

The hash reads the raw spec, never a defaulted model dump, and the hashed fields carry no schema
defaults, so an operator upgrade that adds a default restarts no canary anywhere.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# With `image`, these fields are the template; with `template`, the template alone is.
SHORTHAND_FIELDS = ("image", "command", "args", "env")
REVISION_LENGTH = 10


def revision_inputs(spec: dict[str, Any]) -> dict[str, Any]:
    """The part of a raw ModelDeployment spec that defines a revision."""
    model = spec.get("model") or {}
    if "template" in model:
        return {"template": model["template"]}
    return {key: model[key] for key in SHORTHAND_FIELDS if key in model}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def revision_hash(spec: dict[str, Any]) -> str:
    """Ten lowercase hex characters: safe in object names and labels, stable across upgrades."""
    digest = hashlib.sha256(canonical_json(revision_inputs(spec)).encode("utf-8")).hexdigest()
    return digest[:REVISION_LENGTH]
