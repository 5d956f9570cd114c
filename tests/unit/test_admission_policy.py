"""The no-escalation policy's messages are CEL the API server compiles: each one, quotes in its words too."""

from __future__ import annotations

import celpy
import pytest

from ballast.api.admission_policy import NEEDED, Needed

_cel = celpy.Environment()
BINDINGS = {
    "request": celpy.json_to_cel({"userInfo": {"username": "alice@example.com"}}),
    "object": celpy.json_to_cel({"metadata": {"name": "bot", "namespace": "apps"}}),
}


def message(needed: Needed) -> str:
    return str(_cel.program(_cel.compile(needed.message())).evaluate(BINDINGS))


@pytest.mark.parametrize("needed", NEEDED, ids=lambda n: f"{n.verb}-{n.resource}")
def test_every_refusal_message_compiles_and_names_who_what_and_why(needed: Needed) -> None:
    text = message(needed)
    assert text.startswith(f"alice@example.com may not {needed.verb} {needed.resource}")
    assert f"in namespace apps, which Ballast would do for ModelDeployment bot ({needed.why})" in text


def test_a_quote_in_the_reason_stays_text() -> None:
    quoted = Needed("policy", "poddisruptionbudgets", "create", "true", "the responder's budget, a \\ too")
    assert "(the responder's budget, a \\ too)" in message(quoted)
