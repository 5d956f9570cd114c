"""The base model every Ballast resource field inherits from, and the CEL rule attachment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


@dataclass(frozen=True)
class Rule:
    """A CEL rule, evaluated by the API server at admission and by `ballast validate` offline.

    `rule` is the expression with `self` bound to the object the rule is attached to; `message`
    is what a person sees. `field_path` (a JSONPath-like `.a.b`) narrows where the error points.
    """

    rule: str
    message: str
    field_path: str | None = None

    def to_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


def checked_by(*rules: Rule) -> Any:
    """Field metadata that carries CEL rules on a scalar, list or map field (inside `Annotated`).

    All of a field's rules must be given in one call: pydantic keeps only the last `json_schema_extra`.
    """
    validations: list[Any] = [r.to_schema() for r in rules]
    return Field(json_schema_extra={"x-kubernetes-validations": validations})


def _attach_rules(schema: dict[str, Any], model: type[BaseModel]) -> None:
    rules: tuple[Rule, ...] = getattr(model, "__cel_rules__", ())
    if rules:
        schema["x-kubernetes-validations"] = [r.to_schema() for r in rules]


def _wire_config(extra: Literal["forbid", "ignore"]) -> ConfigDict:
    """camelCase on the wire, snake_case in Python, CEL rules carried into the schema."""
    return ConfigDict(alias_generator=to_camel, populate_by_name=True, extra=extra, json_schema_extra=_attach_rules)


class SpecModel(BaseModel):
    """Fields written by people: unknown fields refused."""

    model_config = _wire_config("forbid")
    __cel_rules__: ClassVar[tuple[Rule, ...]] = ()


class OpenModel(SpecModel):
    """Kubernetes-owned shapes (pod templates) where only some fields are modelled."""

    model_config = ConfigDict(extra="allow")


class StatusModel(BaseModel):
    """Fields written by the operator: tolerant of fields a newer operator wrote."""

    model_config = _wire_config("ignore")
    __cel_rules__: ClassVar[tuple[Rule, ...]] = ()


def merge_patch(before: BaseModel, after: BaseModel) -> dict[str, Any]:
    """A JSON merge patch from `before` to `after`: explicit nulls remove fields that became empty."""
    new = after.model_dump(by_alias=True, exclude_none=True, mode="json")
    old = before.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {**{key: None for key in old if key not in new}, **new}
