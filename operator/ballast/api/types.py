"""Shared field types: names, durations, money, labels, label selectors and conditions."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from ballast.api.base import Rule, SpecModel, StatusModel, checked_by

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Go-style durations as the API server's CEL `duration()` reads them: 30s, 2m, 1h30m, 500ms, 1.5h.
# At most four parts of at most five integer digits, so no spelling can overflow Go's int64 of
# nanoseconds (CEL) or Python's date arithmetic; each field adds its own bounds (`within`).
DURATION_PATTERN = r"^([0-9]{1,5}([.][0-9]{1,9})?(ms|s|m|h)){1,4}$"
# The Gateway API's own duration grammar (HTTPRoute timeouts): no fractions.
GATEWAY_DURATION_PATTERN = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"
MONEY_PATTERN = r"^[0-9]{1,9}(\.[0-9]{1,6})?$"
HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A Kubernetes qualified name (label and annotation keys): an optional DNS subdomain prefix and
# '/', then a name of at most 63 characters. The prefix length is checked by QUALIFIED_NAME_LENGTHS.
_SUBDOMAIN_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/"
QUALIFIED_NAME_PATTERN = rf"^({_SUBDOMAIN_PREFIX})?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$"
QUALIFIED_NAME_LENGTHS = r"^([^/]{1,253}/)?[^/]{1,63}$"
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
# Reserved for the labels and annotations Ballast itself writes on the pods it runs.
RESERVED_KEY_PATTERN = r"^([^/]*[.])?ballast[.]dev/"

QUALIFIED_NAME_TEXT = (
    "a qualified name: an optional DNS subdomain prefix of at most 253 characters and '/', then at most "
    "63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
)
LABEL_VALUE_TEXT = "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"


def within(minimum: str, maximum: str) -> Any:
    """CEL bounds of one duration field; a spelling the pattern refuses is left to the pattern's error."""
    return checked_by(
        Rule(
            f"!self.matches('{DURATION_PATTERN}') || "
            f"(duration(self) >= duration('{minimum}') && duration(self) <= duration('{maximum}'))",
            f"must be a duration from {minimum} to {maximum}, such as 30s, 1m30s or 1.5h",
        )
    )


def _qualified_name_rule(*, subject: str) -> Rule:
    return Rule(
        f"self.matches('{QUALIFIED_NAME_LENGTHS}')",
        f"{subject} must be {QUALIFIED_NAME_TEXT}",
    )


def keys_are_qualified_names(subject: str, *, reserved: bool = False) -> list[Rule]:
    """Rules on a map whose keys are label or annotation keys (a schema cannot constrain map keys)."""
    rules = [
        Rule(
            f"self.all(k, k.matches('{QUALIFIED_NAME_PATTERN}') && k.matches('{QUALIFIED_NAME_LENGTHS}'))",
            f"every key of {subject} must be {QUALIFIED_NAME_TEXT}",
        )
    ]
    if reserved:
        rules.append(
            Rule(
                f"!self.exists(k, k.matches('{RESERVED_KEY_PATTERN}'))",
                f"keys of {subject} may not use the ballast.dev/ prefix: Ballast sets those to select "
                "and tell apart the pods of each revision",
            )
        )
    return rules


# Four parts of five digits, a nine-digit fraction and a unit each.
DURATION = StringConstraints(min_length=2, max_length=68, pattern=DURATION_PATTERN)

DNSLabel = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
DNSSubdomain = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
Duration = Annotated[str, DURATION]
GatewayDuration = Annotated[str, StringConstraints(min_length=2, max_length=32, pattern=GATEWAY_DURATION_PATTERN)]
Money = Annotated[str, StringConstraints(max_length=17, pattern=MONEY_PATTERN)]
Hostname = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=HOSTNAME_PATTERN)]
LabelKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=317, pattern=QUALIFIED_NAME_PATTERN),
    checked_by(_qualified_name_rule(subject="a label key")),
]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE_PATTERN)]
Percent = Annotated[int, Field(ge=0, le=100)]
Port = Annotated[int, Field(ge=1, le=65535)]


def keyed_list(*, description: str, key: str = "name", max_length: int | None = None) -> Any:
    """A list field merged by `key` (server-side apply, Argo CD) whose keys the API server keeps unique."""
    return Field(
        default_factory=list,
        max_length=max_length,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]},
        description=description,
    )


_MICROSECONDS = {"ms": Decimal(1_000), "s": Decimal(1_000_000), "m": Decimal(60_000_000), "h": Decimal(3_600_000_000)}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_WHOLE_UNITS = (("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1))


def parse_duration(text: str) -> timedelta:
    """Read a Go-style duration (`1h30m`, `1.5m`, `250ms`) as the API server's CEL does, exactly to the microsecond
    (decimal arithmetic: `0.1s` three times is `0.3s`, as it is to the API server)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 1h30m")
    microseconds = sum(Decimal(number) * _MICROSECONDS[unit] for number, unit in _DURATION_PART.findall(text))
    return timedelta(microseconds=int(microseconds))


def whole_units(duration: timedelta) -> str:
    """`duration` in whole hours, minutes, seconds and milliseconds, longest first (`1.5m` -> `1m30s`): the form
    PromQL and the Gateway API read, neither of which takes fractions.

    A part of a millisecond rounds up, so a window or a timeout is never shorter than written and is `0s` only
    when written as zero.
    """
    remaining = -(-duration // timedelta(microseconds=1) // 1000)  # ceiling division: whole milliseconds
    parts = []
    for unit, size in _WHOLE_UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


class LabelSelectorRequirement(SpecModel):
    """One `key operator values` term of a label selector."""

    __cel_rules__ = (
        Rule(
            "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0"
            " : !has(self.values) || size(self.values) == 0",
            "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
        ),
    )

    key: LabelKey = Field(description="The label key the selector applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="How the key relates to the values.")
    values: list[LabelValue] = Field(
        default_factory=list, max_length=64, description="Values for In and NotIn; empty otherwise."
    )


class LabelSelector(SpecModel):
    """A Kubernetes label selector. An empty selector is refused: say what you mean to select."""

    __cel_rules__ = (
        Rule(
            "(has(self.matchLabels) && size(self.matchLabels) > 0)"
            " || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",
            "a selector needs matchLabels or matchExpressions; an empty selector never means everything",
        ),
    )

    match_labels: Annotated[dict[str, LabelValue], checked_by(*keys_are_qualified_names("matchLabels"))] = Field(
        default_factory=dict,
        max_length=64,
        description="Labels that must all match exactly.",
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=16, description="Set-based requirements that must all hold."
    )


class Condition(StatusModel):
    """A standard Kubernetes condition (the shape of metav1.Condition)."""

    type: str = Field(max_length=316, description="Condition type, for example Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", max_length=1024, description="A CamelCase machine-readable reason.")
    message: str = Field(default="", max_length=32768, description="A human-readable explanation.")
    last_transition_time: str | None = Field(default=None, description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the condition was computed from."
    )
