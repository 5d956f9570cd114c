"""Offline evaluation of the CRDs' CEL rules, as the API server evaluates them at admission.

Values are converted by their schema type (the API server treats every `number` as a double and
every `integer` as an int), defaults are applied first (the API server defaults before it
validates), and the Kubernetes library functions the rules call come from `cel_library`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from ballast.api.cel_library import FUNCTIONS, go_errors
from ballast.api.schema import Schema

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _go_quote(text: str) -> str:
    """A string as Go's %q prints it: printable Unicode kept, control characters escaped."""
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        elif not char.isprintable() and char != " ":
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def go_value(value: Any) -> str:
    """A value as the API server prints it in an error (Go's %v and %q: 1.0 prints as 1)."""
    if isinstance(value, str):
        return _go_quote(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class RuleFailure:
    path: str
    message: str
    # A scalar's value is shown before the message, as the API server shows it; objects and lists are not.
    value: Any = None

    def __str__(self) -> str:
        shown = "" if self.value is None or isinstance(self.value, dict | list) else f"{go_value(self.value)}: "
        return f"{self.path}: Invalid value: {shown}{self.message}"


_ENVIRONMENT = celpy.Environment()


@lru_cache(maxsize=512)
def _program(expression: str) -> celpy.Runner:
    return _ENVIRONMENT.program(_ENVIRONMENT.compile(expression), functions=cast(Any, FUNCTIONS))


def to_cel(value: Any, schema: Schema) -> Any:
    """Convert a JSON value to CEL types the way the API server types it from the schema."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return json_to_cel(value)
    kind = schema.get("type")
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        converted = {}
        for key, item in value.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else {})
            converted[celtypes.StringType(key)] = to_cel(item, sub) if sub else json_to_cel(item)
        return celtypes.MapType(converted)
    if kind == "array" and isinstance(value, list):
        return celtypes.ListType([to_cel(item, schema.get("items", {})) for item in value])
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return celtypes.DoubleType(float(value))
    return json_to_cel(value)


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Fill schema defaults into a copy of `value`, recursively, as the API server does."""
    value = copy.deepcopy(value)
    _default_in_place(value, schema)
    return value


def _default_in_place(value: Any, schema: Schema) -> None:
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _default_in_place(value[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for item in value.values():
                _default_in_place(item, extra)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _default_in_place(item, schema["items"])


def evaluate_rules(value: Any, schema: Schema, path: str) -> Iterator[RuleFailure]:
    """Every failing `x-kubernetes-validations` rule in `value`, depth first, as the API server reports."""
    for rule in schema.get("x-kubernetes-validations", ()):
        with go_errors() as errors:
            ok: Any
            try:
                ok = _program(rule["rule"]).evaluate({"self": to_cel(value, schema)})
            except CELEvalError as error:
                ok = error
        if isinstance(ok, CELEvalError):
            # The API server's words: `<Go error> evaluating rule: <message, or the rule without one>`.
            reason = errors[0] if errors else _reason(ok)
            yield RuleFailure(
                path, f"{_type_name(schema)}: {reason} evaluating rule: {rule.get('message') or rule['rule']}"
            )
            continue
        if ok != celtypes.BoolType(True):
            shown = None if rule.get("fieldPath") else value
            yield RuleFailure(path + rule.get("fieldPath", ""), rule["message"], shown)
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                yield from evaluate_rules(value[key], sub, f"{path}.{key}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                yield from evaluate_rules(item, extra, f"{path}[{key}]")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from evaluate_rules(item, schema["items"], f"{path}[{index}]")


def _type_name(schema: Schema) -> str:
    """How the API server names the value of a failed evaluation: its schema type, quoted."""
    return f'"{schema.get("type", "object")}"'


def _reason(error: CELEvalError) -> str:
    """A CEL error in plain words, never a Python class or repr."""
    first = error.args[0] if error.args else None
    if first in ("no such member", "no such key") and len(error.args) > 2:
        return f"no such key: {error.args[2][0] if error.args[2] else ''}"
    if isinstance(first, str) and "<class" not in first:
        return first
    return "evaluation error"
