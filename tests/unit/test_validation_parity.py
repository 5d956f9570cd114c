"""`ballast validate` reaches the API server's verdicts: its CEL library, YAML reading and ObjectMeta checks."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ballast.api.cel import evaluate_rules
from ballast.api.manifest_yaml import ManifestYAMLError, load_documents
from ballast.api.objectmeta import metadata_errors
from ballast.api.validation import validate_manifest


def _rule(rule: str, message: str = "") -> dict[str, Any]:
    return {"type": "object", "x-kubernetes-validations": [{"rule": rule, "message": message}]}


@pytest.mark.parametrize(
    ("pattern", "go_error"),
    [
        ("(a", "missing closing ): `(a`"),
        ("a)", "unexpected ): `a)`"),
        ("[a", "missing closing ]: `[a`"),
        ("a**", "invalid nested repetition operator: `**`"),
        ("*a", "missing argument to repetition operator: `*`"),
        ("a{1001}", "invalid repeat count: `{1001}`"),
        (r"\q", r"invalid escape sequence: `\q`"),
        ("[z-a]", "invalid character class range: `z-a`"),
        ("(?=a)", "invalid or unsupported Perl syntax: `(?=`"),
        ("a\\", "trailing backslash at end of expression: ``"),
    ],
)
def test_a_pattern_that_does_not_compile_is_reported_in_gos_words(pattern: str, go_error: str) -> None:
    (failure,) = evaluate_rules({"p": pattern}, _rule("''.matches(self.p) || !''.matches(self.p)", "must be RE2"), "x")
    assert str(failure) == f'x: Invalid value: "object": error parsing regexp: {go_error} evaluating rule: must be RE2'


def test_an_evaluation_error_never_shows_python_internals() -> None:
    (failure,) = evaluate_rules({}, _rule("self.missing == 'x'"), "spec")
    assert "<class" not in str(failure)
    assert "evaluating rule: self.missing == 'x'" in str(failure)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("gates.example.com", True),
        ("203.0.113.9", True),
        ("[2001:db8::1]", True),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("[::1]", False),
        ("[fe80::1]", False),
        ("[::ffff:127.0.0.1]", False),
        ("[::ffff:7f00:1]", False),
        ("0.0.0.0", False),
        ("0.1.2.3", False),
        ("[::]", False),
        ("224.0.0.251", False),
        ("[ff02::1]", False),
        ("100.100.100.200", False),
        ("[fd00:ec2::254]", False),
        ("127.000.000.001", False),
        ("2130706433", False),
        ("0x7f000001", False),
        ("127.1", False),
    ],
)
def test_webhook_hosts(host: str, allowed: bool) -> None:
    manifest = {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "hooks", "namespace": "assistants"},
        "spec": {
            "model": {"name": "m", "image": "i"},
            "traffic": {"parentRefs": [{"name": "gw"}]},
            "rollout": {"webhooks": [{"name": "gate", "type": "rollout", "url": f"http://{host}:8080/gate"}]},
        },
    }
    assert (validate_manifest(manifest) == []) == allowed


def test_duplicate_keys_are_refused_with_kubectls_words() -> None:
    with pytest.raises(ManifestYAMLError, match='line 3: key "a" already set in map'):
        load_documents("a: 1\nb: 2\na: 3\n")


def test_an_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    started = time.monotonic()
    with pytest.raises(ManifestYAMLError, match="excessive aliasing"):
        load_documents("\n".join(lines))
    assert time.monotonic() - started < 2


def test_modest_aliases_are_read() -> None:
    assert load_documents("base: &b {x: 1}\nuse: *b\n") == [{"base": {"x": 1}, "use": {"x": 1}}]


@pytest.mark.parametrize(("text", "shown"), [("max: .nan", "NaN"), ("max: .inf", "+Inf"), ("max: [-.inf]", "-Inf")])
def test_non_finite_numbers_are_refused(text: str, shown: str) -> None:
    with pytest.raises(ManifestYAMLError, match=f"json: unsupported value: {shown.replace('+', '[+]')}"):
        load_documents(text)


def test_object_metadata_is_checked_as_the_api_server_does() -> None:
    assert list(metadata_errors({"name": "ok.name", "labels": {"a/b": "c"}}, namespaced=True)) == []
    assert any("metadata.name" in e for e in metadata_errors({"name": "x" * 254}, namespaced=True))
    assert any("metadata.namespace" in e for e in metadata_errors({"name": "x", "namespace": "A"}, namespaced=True))
    assert list(metadata_errors({"generateName": "incident-"}, namespaced=True)) == []
    assert any("metadata.generateName" in e for e in metadata_errors({"generateName": "Bad-"}, namespaced=True))
    big = {"name": "x", "annotations": {"note": "x" * (256 * 1024)}}
    assert any("metadata.annotations: Too long" in e for e in metadata_errors(big, namespaced=True))


def test_a_generated_name_is_judged_by_the_rules_that_read_metadata_name() -> None:
    manifest = {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"generateName": "m" * 50, "namespace": "assistants"},
        "spec": {"model": {"name": "m", "image": "i"}, "traffic": {"parentRefs": [{"name": "gw"}]}},
    }
    errors = validate_manifest(manifest)
    assert any("at most 52 characters" in e for e in errors), errors
    assert not any("evaluating rule" in e for e in errors), errors
