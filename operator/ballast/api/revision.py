"""A revision's identity: a hash of everything that reaches its pods, exactly as the user wrote it.

That is the pod template (or the image shorthand), the model name (a label on every pod, which
Prometheus reads) and the port the server listens on (the shorthand's containerPort and the
target of the revision's Service). Whatever changes a pod is a new revision, so it reaches users
through a canary; nothing else in the spec touches a revision's pods.

The hash reads the raw spec, never a defaulted model dump, and the hashed fields carry no schema
defaults (the port's default is folded in here, so a stored object the API server defaulted and
one it did not hash alike), so an operator upgrade that adds a default restarts no canary anywhere.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ballast.api.modeldeployment import TrafficSpec

# With `image`, these fields are the template; with `template`, the template alone is.
SHORTHAND_FIELDS = ("image", "command", "args", "env")
REVISION_LENGTH = 10
DEFAULT_PORT: int = TrafficSpec.model_fields["port"].default
# Keys of the recorded inputs beside the template (ControllerRevision data).
MODEL_NAME_KEY = "modelName"
PORT_KEY = "port"


def revision_inputs(spec: dict[str, Any]) -> dict[str, Any]:
    """The part of a raw ModelDeployment spec that defines a revision (and is recorded with it)."""
    model = spec.get("model") or {}
    if "template" in model:
        inputs = {"template": model["template"]}
    else:
        inputs = {key: model[key] for key in SHORTHAND_FIELDS if key in model}
    inputs[MODEL_NAME_KEY] = model.get("name")
    inputs[PORT_KEY] = (spec.get("traffic") or {}).get("port", DEFAULT_PORT)
    return inputs


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def revision_hash(spec: dict[str, Any]) -> str:
    """Ten lowercase hex characters: safe in object names and labels, stable across upgrades."""
    digest = hashlib.sha256(canonical_json(revision_inputs(spec)).encode("utf-8")).hexdigest()
    return digest[:REVISION_LENGTH]
