"""Custom PromQL templates: only the documented variables, and every selector scoped to a revision.

A custom objective is judged per revision, so its query must tell the canary from the stable
revision: every selector (`{...}`) names `{{revision}}` or `{{service}}`. The rules read the
template as text; PromQL itself is checked by Prometheus when the query runs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from ballast.api.base import Rule, checked_by

TEMPLATE_VARIABLES = ("namespace", "name", "revision", "service", "window")
SCOPE_VARIABLES = ("revision", "service")


def _without(variables: tuple[str, ...]) -> str:
    """CEL: the template with the given variables removed."""
    return "self" + "".join(f".replace('{{{{{v}}}}}', '')" for v in variables)


_ALL_REMOVED = _without(TEMPLATE_VARIABLES)
_SCOPE_KEPT = _without(tuple(v for v in TEMPLATE_VARIABLES if v not in SCOPE_VARIABLES))
_KNOWN_ONLY = f"!{_ALL_REMOVED}.contains('{{{{') && !{_ALL_REMOVED}.contains('}}}}')"
# Selectors open and close in turn and never nest (label values with braces have no place here).
_BALANCED = f"{_ALL_REMOVED}.matches('^[^{{}}]*([{{][^{{}}]*[}}][^{{}}]*)*$')"
_SCOPE = "[{][{](" + "|".join(SCOPE_VARIABLES) + ")[}][}]"
_SELECTOR_PART = f"([^{{}}]|{_SCOPE})"
_SCOPED = f"{_SCOPE_KEPT}.matches('^[^{{}}]*([{{]{_SELECTOR_PART}*{_SCOPE}{_SELECTOR_PART}*[}}][^{{}}]*)+$')"
# '#' starts a comment to the end of the line, outside string literals: it can hide the rest of a selector.
_NO_COMMENT = r"""^([^"'`#]|"([^"\\]|\\.)*"|'([^'\\]|\\.)*'|`[^`]*`)*$"""

QUERY_RULES = (
    Rule(
        _KNOWN_ONLY,
        "a query may use only the variables {{namespace}}, {{name}}, {{revision}}, {{service}} and {{window}}, "
        "written exactly so",
    ),
    Rule(
        f"!({_KNOWN_ONLY}) || {_BALANCED}",
        "a query's selector braces must open and close in turn: a stray or nested { or } is refused",
    ),
    Rule(
        f"self.matches(r'''{_NO_COMMENT}''')",
        "a query may not contain a # comment outside a string: it would hide the rest of the query",
    ),
    Rule(
        f"!({_KNOWN_ONLY}) || !({_BALANCED}) || {_SCOPED}",
        "every selector of a query must name {{revision}} or {{service}} (for example "
        '{revision="{{revision}}"}), or the query cannot tell the canary from the stable revision',
    ),
)

QueryTemplate = Annotated[str, StringConstraints(min_length=1, max_length=4096), checked_by(*QUERY_RULES)]
