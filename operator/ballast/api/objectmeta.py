"""The API server's checks of `metadata` (ObjectMeta), with its messages, for offline validation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ballast.api.cel import go_value
from ballast.api.types import LABEL_VALUE_PATTERN

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + ")*"
_QUALIFIED_NAME_PART = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = LABEL_VALUE_PATTERN.removeprefix("^").removesuffix("$").replace("{0,61}", "*")
# Kubernetes' limit on all annotations of one object, keys and values.
TOTAL_ANNOTATION_BYTES = 256 * 1024
# The API server appends five random characters to generateName, cutting the prefix to fit 63.
_GENERATED_SUFFIX = 5
_MAX_GENERATE_PREFIX = 63 - _GENERATED_SUFFIX


def _problems(value: str, limit: int, pattern: str, explanation: str) -> list[str]:
    """The API server's two checks of a name-like string: its length, then its shape."""
    problems = []
    if len(value) > limit:
        problems.append(f"must be no more than {limit} characters")
    if not re.fullmatch(pattern, value):
        problems.append(f"{explanation}, regex used for validation is '{pattern}')")
    return problems


_SUBDOMAIN_RULE = (
    253,
    _DNS1123_SUBDOMAIN,
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com'",
)


def _subdomain_problems(value: str) -> list[str]:
    return _problems(value, *_SUBDOMAIN_RULE)


_LABEL_RULE = (
    63,
    _DNS1123_LABEL,
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc'",
)


def _label_problems(value: str) -> list[str]:
    return _problems(value, *_LABEL_RULE)


def _qualified_name_problems(key: str) -> list[str]:
    prefix, slash, name = key.rpartition("/") if "/" in key else ("", "", key)
    problems = []
    if slash and prefix.count("/") > 0:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
            f"validation is '{_QUALIFIED_NAME_PART}') with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    if slash:
        if not prefix:
            problems.append("prefix part must be non-empty")
        else:
            problems.extend(f"prefix part {p}" for p in _subdomain_problems(prefix))
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    if name and not re.fullmatch(_QUALIFIED_NAME_PART, name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
            f"'{_QUALIFIED_NAME_PART}')"
        )
    return problems


_LABEL_VALUE_RULE = (
    63,
    _LABEL_VALUE,
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345'",
)


def _label_value_problems(value: str) -> list[str]:
    return _problems(value, *_LABEL_VALUE_RULE)


def _invalid(path: str, value: Any, problem: str) -> str:
    return f"{path}: Invalid value: {go_value(value)}: {problem}"


def metadata_errors(metadata: dict[str, Any], *, namespaced: bool) -> Iterator[str]:
    """ObjectMeta problems in the API server's words (name, generateName, namespace, labels, annotations)."""
    name, generate = metadata.get("name"), metadata.get("generateName")
    if isinstance(name, str) and name:
        yield from (_invalid("metadata.name", name, p) for p in _subdomain_problems(name))
    elif isinstance(generate, str) and generate:
        # The prefix is judged as a name once a trailing '-' is set aside, as the API server does.
        prefix = generate[:_MAX_GENERATE_PREFIX].removesuffix("-")
        yield from (_invalid("metadata.generateName", generate, p) for p in _subdomain_problems(prefix) if prefix)
    namespace = metadata.get("namespace")
    if namespaced and isinstance(namespace, str) and namespace:
        yield from (_invalid("metadata.namespace", namespace, p) for p in _label_problems(namespace))
    labels = metadata.get("labels") or {}
    for key, value in labels.items() if isinstance(labels, dict) else ():
        yield from (_invalid("metadata.labels", key, p) for p in _qualified_name_problems(str(key)))
        yield from (_invalid("metadata.labels", value, p) for p in _label_value_problems(str(value)))
    annotations = metadata.get("annotations") or {}
    if isinstance(annotations, dict):
        for key in annotations:
            yield from (_invalid("metadata.annotations", key, p) for p in _qualified_name_problems(str(key).lower()))
        size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
        if size > TOTAL_ANNOTATION_BYTES:
            yield f"metadata.annotations: Too long: may not be more than {TOTAL_ANNOTATION_BYTES} bytes"


def generated_name(metadata: dict[str, Any]) -> str:
    """A name the API server could generate from `generateName`, for rules that read metadata.name."""
    return str(metadata["generateName"])[:_MAX_GENERATE_PREFIX] + "x" * _GENERATED_SUFFIX
