"""Property tests: whatever admission lets through, the decision core and the query builder survive.

Durations, label values and query templates are generated (not picked), judged by the same rules
the API server runs (`validate_manifest`), and what passes is fed to the core and the query builder.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import celpy
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ballast.analysis.queries import Scope, escape_label_value, render_template
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.objectmeta import metadata_errors
from ballast.api.status import ModelDeploymentStatus
from ballast.api.types import parse_duration
from ballast.api.validation import validate_manifest
from ballast.rollout.core import decide
from ballast.rollout.observations import Observations, RevisionObservation

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_cel = celpy.Environment()

duration_part = st.tuples(
    st.integers(min_value=0, max_value=99999),
    st.one_of(st.none(), st.integers(min_value=0, max_value=999_999_999).map(str)),
    st.sampled_from(["ms", "s", "m", "h"]),
)
# Every spelling the CRD's duration grammar admits: up to four parts of up to five digits, fractions.
durations = st.lists(duration_part, min_size=1, max_size=4).map(
    lambda parts: "".join(f"{n}{'.' + f if f else ''}{u}" for n, f, u in parts)
)


def _manifest(spec: dict[str, Any], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "prop", "namespace": "assistants", **(metadata or {})},
        "spec": {
            "model": {"name": "m", "image": "i"},
            "traffic": {"parentRefs": [{"name": "gw"}]},
            **spec,
        },
    }


@given(durations)
def test_every_admitted_spelling_parses_as_cel_reads_it_and_fits_date_arithmetic(text: str) -> None:
    parsed = parse_duration(text)
    cel = _cel.program(_cel.compile(f"duration('{text}')")).evaluate({})
    assert abs(parsed.total_seconds() - cel.total_seconds()) < 1e-3
    assert T0 + parsed > T0 - timedelta(seconds=1)  # no OverflowError, even at the grammar's largest


@SLOW
@given(durations)
def test_admission_bounds_the_interval_exactly_between_one_second_and_one_hour(text: str) -> None:
    errors = validate_manifest(_manifest({"rollout": {"interval": text}}))
    within = timedelta(seconds=1) <= parse_duration(text) <= timedelta(hours=1)
    assert (errors == []) == within, errors


def _walk_a_canary(spec: ModelDeploymentSpec, jumps: list[float]) -> None:
    status = ModelDeploymentStatus()
    now = T0
    ready = RevisionObservation(available=True, ready_replicas=1)
    for revision, seconds in [("aaa", 0.0), ("bbb", 0.0), *(("bbb", j) for j in jumps)]:
        now += timedelta(seconds=seconds)
        observations = Observations(revisions={"aaa": ready, "bbb": ready})
        status = decide(spec, revision, 1, status, observations, now).status
        assert status.phase in ("Stable", "Progressing", "Promoting", "Paused", "RolledBack")


@SLOW
@given(
    st.fixed_dictionaries(
        {
            "interval": durations,
            "progressDeadline": durations,
            "inconclusiveDeadline": durations,
            "scaleDownDelay": durations,
            "pause": durations,
        }
    ),
    st.lists(st.floats(min_value=0, max_value=4e6), min_size=1, max_size=6),
)
def test_the_core_never_crashes_on_any_duration_the_grammar_admits(values: dict[str, str], jumps: list[float]) -> None:
    # Even beyond the fields' bounds: the grammar alone must keep the core's date arithmetic safe.
    pause = values.pop("pause")
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "m", "image": "i"},
            "traffic": {"parentRefs": [{"name": "gw"}]},
            "rollout": {**values, "steps": [{"weight": 10, "pause": pause}, {"weight": 100}]},
        }
    )
    _walk_a_canary(spec, jumps)


@SLOW
@given(st.text(max_size=70))
def test_a_label_value_admission_accepts_is_one_kubernetes_accepts(value: str) -> None:
    template = {"metadata": {"labels": {"team": value}}, "spec": {"containers": [{"name": "s", "image": "i"}]}}
    manifest = _manifest({})
    manifest["spec"]["model"] = {"name": "m", "template": template}
    errors = validate_manifest(manifest)
    kubernetes = list(metadata_errors({"name": "x", "labels": {"team": value}}, namespaced=False))
    if errors == []:
        assert kubernetes == []


# Query templates built from the pieces people write, and some they should not.
query_piece = st.sampled_from(
    [
        "sum(rate(",
        "x",
        "{",
        "}",
        "{{revision}}",
        "{{service}}",
        "{{namespace}}",
        "{{window}}",
        "{{ revision }}",
        "{{pod}}",
        'revision="',
        '"',
        ",",
        "[",
        "]",
        "))",
        " / ",
        "#",
        "\n",
        "'",
        "`",
        "\\",
    ]
)
templates = st.one_of(st.lists(query_piece, min_size=1, max_size=24).map("".join), st.text(min_size=1, max_size=60))
label_values = st.text(min_size=1, max_size=40)


@SLOW
@given(templates, label_values, label_values)
@example('sum(rate(x{revision="{{revision}}"}[{{window}}])) / sum(rate(y{service="{{service}}"}[5m]))', 'a"b', "s\\")
def test_a_template_admission_accepts_renders_and_every_selector_names_the_revision(
    template: str, revision: str, service: str
) -> None:
    manifest = _manifest({"contract": {"objectives": [{"name": "custom", "query": template, "max": 1}]}})
    if validate_manifest(manifest):
        return
    rendered = render_template(template, Scope("ns", "name", (revision,), "2m"), revision, service)
    scoped = (escape_label_value(revision), escape_label_value(service))
    marked = template.replace("{{revision}}", "\0").replace("{{service}}", "\0")
    for variable in ("{{namespace}}", "{{name}}", "{{window}}"):
        marked = marked.replace(variable, "")
    selectors = re.findall(r"\{[^{}]*\}", marked)
    assert selectors
    for selector in selectors:
        assert "\0" in selector, selector
    assert any(value in rendered for value in scoped)
