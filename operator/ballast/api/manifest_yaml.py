"""Read manifests as the API server reads them: duplicate keys, alias bombs, NaN and Infinity are errors.

PyYAML quietly keeps the last of two equal keys, expands aliases without bound and reads `.nan`
and `.inf` as floats. The API server refuses each in a YAML body (strict field validation refuses
a repeated key; JSON has no NaN; Go's YAML decoder refuses excessive aliasing), and kubectl refuses
the last two before sending, so `ballast validate` refuses them too, in the API server's words.
(kubectl itself keeps the last of two equal keys without a word: a reason to run `ballast validate`.)
Aliases are bounded by expanded size, a little stricter than Go's ratio of aliases to nodes.
"""

from __future__ import annotations

import math
from typing import Any

import yaml


class ManifestYAMLError(ValueError):
    """A document the API server refuses before it looks at the object."""


# Go's YAML decoder refuses a document whose aliases expand to far more nodes than it holds;
# a bound well above any real manifest and far below a "billion laughs".
MAX_EXPANDED_NODES = 100_000


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and counts the nodes aliases expand to."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ManifestYAMLError(
                    f"strict decoding error: yaml: unmarshal errors:\n  line {key_node.start_mark.line + 1}: "
                    f'key "{key}" already set in map'
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes `node` stands for once every alias is copied out, as JSON conversion does."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive alias is counted once here; the constructor refuses it anyway
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(item, memo) for item in node.value)
    else:
        size = 1
    memo[id(node)] = size
    return size


def _non_finite(value: Any) -> float | None:
    if isinstance(value, float) and not math.isfinite(value):
        return value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        found = _non_finite(child)
        if found is not None:
            return found
    return None


def _go_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def load_documents(text: str) -> list[Any]:
    """Every non-empty document of a YAML stream, or ManifestYAMLError/yaml.YAMLError."""
    documents = []
    loader = _StrictLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            if _expanded_size(node, {}) > MAX_EXPANDED_NODES:
                raise ManifestYAMLError("yaml: document contains excessive aliasing")
            document = loader.construct_document(node)
            bad = _non_finite(document)
            if bad is not None:
                raise ManifestYAMLError(f"json: unsupported value: {_go_float(bad)}")
            if document is not None:
                documents.append(document)
    finally:
        loader.dispose()
    return documents
