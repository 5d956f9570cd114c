"""The chart and the image, checked with the real tools and no cluster: `helm lint`, `helm template`, hadolint.

What the chart deploys must be what the rest of the project proves: the RBAC the e2e tests run the
operator under, the CRDs and admission policies generated from the models, and the command the
Dockerfile's entry point runs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ballast.api.admission_policy import policy_manifests
from ballast.api.crd import crd_manifest
from ballast.api.resources import RESOURCES
from ballast.cli.main import build_parser
from ballast.devstack.binaries import Binaries
from ballast.devstack.pod_runtime import IMAGES, ImageConfig, repository
from tests.e2e.helm import CHART, KUBE_VERSION, ROOT, Helm

Manifest = dict[str, Any]
DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def helm(binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(binaries, tmp_path_factory.mktemp("helm"))


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def the(manifests: list[Manifest], kind: str) -> Manifest:
    found = by_kind(manifests, kind)
    assert len(found) == 1, f"{len(found)} {kind} rendered"
    return found[0]


def container(manifests: list[Manifest]) -> Manifest:
    spec: Manifest = the(manifests, "Deployment")["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    result: Manifest = spec["containers"][0]
    return result


def rbac_file() -> list[Manifest]:
    return [d for d in yaml.safe_load_all((CHART / "files" / "rbac.yaml").read_text()) if d]


# ------------------------------------------------------------------------------------------ lint and values


MONITORING = ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true",
              "--set", "metrics.dashboard.enabled=true"]  # fmt: skip


@pytest.mark.parametrize("values", [[], ["--set", "replicaCount=1"], ["--set", "crds.install=false"], MONITORING])
def test_helm_lint_strict_is_clean(helm: Helm, values: list[str]) -> None:
    result = helm.run("lint", "--strict", f"--kube-version={KUBE_VERSION}", str(CHART), *values, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


def _undocumented(lines: list[str]) -> list[str]:
    """Keys of values.yaml with no `# --` comment of their own or of a parent (helm-docs' rule)."""
    missing, documented_parents = [], []  # documented_parents: indents of documented open maps
    comment: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            comment = [*comment, stripped] if stripped.startswith("#") else comment
            continue
        key = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if key is None:  # a list item or a continuation of a value
            comment = []
            continue
        indent = len(key.group(1))
        documented_parents = [i for i in documented_parents if i < indent]
        own = any(c.startswith("# --") for c in comment)
        is_map = line.rstrip().endswith(":")
        if own and is_map:
            documented_parents.append(indent)
        elif not own and not is_map and not documented_parents:
            missing.append(key.group(2))
        comment = []
    return missing


def test_every_value_is_documented() -> None:
    assert _undocumented((CHART / "values.yaml").read_text().splitlines()) == []


def test_the_documentation_check_finds_an_undocumented_value() -> None:
    lines = ["image:", "  # -- The repository.", "  repository: x", "  tag: ''", "# -- Whole map.", "resources:",
             "  limits: {}"]  # fmt: skip
    assert _undocumented(lines) == ["tag"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["--set", "replicaCount=two"], "replicaCount"),
        (["--set", "replicas=2"], "replicas"),
        (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (["--set", "operator.prometheusUrl=prometheus:9090"], "prometheusUrl"),
        (["--set", "metrics.prometheusRule.for.operatorDown=soon"], "operatorDown"),
        (["--set", 'metrics.prometheusRule.operatorOwner=a\\"b'], "operatorOwner"),
    ],
)
def test_the_values_schema_refuses_what_the_chart_cannot_use(helm: Helm, values: list[str], expected: str) -> None:
    refused = helm.run("template", "ballast", str(CHART), *values, check=False)
    assert refused.returncode != 0
    assert "values don't meet the specifications of the schema" in refused.stderr
    assert expected in refused.stderr


# ------------------------------------------------------------------------------------ one source for each


def test_the_charts_rbac_is_the_rbac_the_e2e_tests_run_the_operator_under(helm: Helm) -> None:
    rendered = helm.template("--namespace=platform", "--set", "userRoles.create=false")
    source = rbac_file()
    for kind in ("ClusterRole", "Role"):
        assert [m["rules"] for m in by_kind(rendered, kind)] == [d["rules"] for d in by_kind(source, kind)], kind
    account = the(rendered, "ServiceAccount")["metadata"]
    assert (account["name"], account["namespace"]) == ("ballast", "platform")
    for binding in by_kind(rendered, "ClusterRoleBinding") + by_kind(rendered, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ballast", "namespace": "platform"}]
    lease_role = the(rendered, "Role")
    assert lease_role["metadata"]["namespace"] == "platform"
    # The operator's Lease is the one its Role names, in the release namespace (POD_NAMESPACE).
    arguments = build_parser().parse_args(container(rendered)["args"])
    assert lease_role["rules"][1]["resourceNames"] == [arguments.lease_name]
    # Webhook tokens are minted for the operator's own account, whatever the chart names it.
    renamed = the(helm.template("--set", "serviceAccount.name=gatekeeper", "--set", "userRoles.create=false"), "Role")
    assert renamed["rules"][2] == {"apiGroups": [""], "resources": ["serviceaccounts/token"],
                                   "resourceNames": ["gatekeeper"], "verbs": ["create"]}  # fmt: skip


def test_the_charts_crds_are_the_models_kept_on_uninstall_and_can_be_left_out(helm: Helm) -> None:
    rendered = {crd["metadata"]["name"]: crd for crd in by_kind(helm.template(), "CustomResourceDefinition")}
    assert set(rendered) == {r.crd_name for r in RESOURCES}
    for resource in RESOURCES:
        crd = rendered[resource.crd_name]
        assert crd["spec"] == crd_manifest(resource)["spec"], resource.kind
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ballast"
    assert by_kind(helm.template("--set", "crds.install=false"), "CustomResourceDefinition") == []


def test_the_charts_admission_policies_are_the_generated_ones(helm: Helm) -> None:
    rendered = [m for m in helm.template() if m["kind"].startswith("ValidatingAdmissionPolicy")]
    for manifest in rendered:
        assert manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        manifest["metadata"]["labels"] = {
            "app.kubernetes.io/part-of": manifest["metadata"]["labels"]["app.kubernetes.io/part-of"]
        }

    def key(manifest: Manifest) -> tuple[str, str]:
        return manifest["kind"], manifest["metadata"]["name"]

    assert sorted(rendered, key=key) == sorted(policy_manifests(), key=key)
    off = helm.template("--set", "admissionPolicies.enabled=false")
    assert [m for m in off if m["kind"].startswith("ValidatingAdmissionPolicy")] == []


# ------------------------------------------------------------------------------------------- the operator


def test_two_replicas_roll_one_at_a_time_and_a_budget_keeps_one(helm: Helm) -> None:
    rendered = helm.template()
    deployment = the(rendered, "Deployment")["spec"]
    assert deployment["replicas"] == 2
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    budget = the(rendered, "PodDisruptionBudget")["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"]["matchLabels"] == deployment["selector"]["matchLabels"]
    assert by_kind(helm.template("--set", "replicaCount=1"), "PodDisruptionBudget") == []


def test_the_operator_container_is_locked_down_and_probed_on_its_health_endpoint(helm: Helm) -> None:
    rendered = helm.template("--set", "health.port=8181")
    pod = the(rendered, "Deployment")["spec"]["template"]["spec"]
    operator = container(rendered)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert operator["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert set(operator["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(operator["resources"]["requests"]) & set(operator["resources"]["limits"])
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert ports == {"health": 8181, "metrics": 9090}
    assert "--liveness=http://0.0.0.0:8181/healthz" in operator["args"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe


def test_the_operator_knows_its_pod_and_the_responder_image(helm: Helm) -> None:
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container(helm.template())["env"]}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["BALLAST_RESPONDER_IMAGE"] == "ghcr.io/ballast-dev/ballast:0.1.0"
    digest = "sha256:" + "a" * 64
    pinned = container(helm.template("--set", f"image.digest={digest}", "--set", "responder.image=responder:1"))
    assert pinned["image"] == f"ghcr.io/ballast-dev/ballast@{digest}"
    assert {e["name"]: e.get("value") for e in pinned["env"]}["BALLAST_RESPONDER_IMAGE"] == "responder:1"


# -------------------------------------------------------------------------------------------------- image


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [
        (w.upper(), rest.strip()) for w, _, rest in (line.strip().partition(" ") for line in joined.splitlines()) if w
    ]


def exec_form(instructions: list[tuple[str, str]], name: str) -> list[str]:
    """The last ENTRYPOINT or CMD, which must be in exec form (JSON): a shell form would not get signals."""
    value = [args for word, args in instructions if word == name][-1]
    parsed = json.loads(value)
    assert isinstance(parsed, list), f"{name} {value} is not in exec form"
    return [str(p) for p in parsed]


def test_the_chart_runs_the_images_entry_point_with_arguments_ballast_accepts(helm: Helm) -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    entrypoint, cmd = exec_form(instructions, "ENTRYPOINT"), exec_form(instructions, "CMD")
    operator = container(helm.template("--set", "operator.prometheusUrl=http://prometheus:9090"))
    assert "command" not in operator, "the chart must run the image's ENTRYPOINT, not replace it"
    assert operator["args"][: len(cmd)] == cmd
    assert entrypoint == ["ballast"]
    parsed = build_parser().parse_args(operator["args"])  # what `ballast` makes of the chart's arguments
    assert (parsed.command, parsed.prometheus_url, parsed.metrics_port) == ("run", "http://prometheus:9090", 9090)
    # The local stack runs the chart's pods by the image's ENTRYPOINT and CMD: the same as the Dockerfile's.
    assert IMAGES[repository(operator["image"])] == ImageConfig(tuple(entrypoint), tuple(cmd))


def test_hadolint_passes_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is a dev dependency (pip install -e '.[dev]')"
    result = subprocess.run([hadolint, "--failure-threshold=info", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_root_image_with_an_unpinned_base(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install ballast\nUSER root\nCMD ballast run\n")
    hadolint = shutil.which("hadolint")
    assert hadolint
    found = subprocess.run([hadolint, "--format=json", str(bad)], capture_output=True, text=True)
    codes = {issue["code"] for issue in json.loads(found.stdout)}
    assert {"DL3007", "DL3002", "DL3025", "DL3013"} <= codes  # latest tag, root user, shell-form CMD, unpinned pip


def test_the_final_image_stage_builds_nothing_and_runs_as_a_numeric_non_root_user() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    stages = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    assert len(stages) >= 2, "multi-stage: the build tools stay in the first stage"
    final = instructions[stages[-1] :]
    assert not [args for word, args in final if word == "RUN"], "the final stage must not run installers"
    assert all("--from=" in args for word, args in final if word == "COPY"), "the final stage only copies built files"
    user = [args for word, args in final if word == "USER"][-1]
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user}: numeric, so runAsNonRoot can verify it without a passwd file"
    assert int(uid) != 0, f"USER {user} is root"
    chart_user = yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]["runAsUser"]
    assert int(uid) == chart_user


# ------------------------------------------------------------------------------------------------ monitoring

DASHBOARD = CHART / "files" / "dashboard.json"
# What Grafana needs of a dashboard it provisions, and of each panel it draws.
DASHBOARD_FIELDS = {"title", "uid", "schemaVersion", "panels", "time", "templating", "annotations", "version"}
PANEL_FIELDS = {"id", "type", "title", "gridPos", "datasource", "targets"}
GRID_FIELDS = {"h", "w", "x", "y"}
TARGET_FIELDS = {"refId", "expr", "datasource"}


def dashboard_problems(dashboard: Manifest) -> list[str]:
    """Fields Grafana requires that are missing, and datasources named by a fixed id instead of a variable."""
    problems = [f"dashboard: no {field}" for field in sorted(DASHBOARD_FIELDS - set(dashboard))]
    variables = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}

    def datasource(where: str, reference: Any) -> None:
        uid = reference.get("uid", "") if isinstance(reference, dict) else str(reference)
        if not (uid.startswith("${") and uid[2:-1] in variables):
            problems.append(f"{where}: datasource {reference!r} is not a dashboard variable")

    for panel in dashboard.get("panels", []):
        where = f"panel {panel.get('title', panel.get('id'))!r}"
        problems += [f"{where}: no {field}" for field in sorted(PANEL_FIELDS - set(panel))]
        grid = set(panel.get("gridPos", {}))
        problems += [f"{where}: gridPos has no {field}" for field in sorted(GRID_FIELDS - grid)]
        datasource(where, panel.get("datasource"))
        for target in panel.get("targets", []):
            problems += [f"{where}: a target has no {field}" for field in sorted(TARGET_FIELDS - set(target))]
            datasource(f"{where} target", target.get("datasource"))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            datasource(f"annotation {annotation['name']!r}", annotation.get("datasource"))
    ids = [panel.get("id") for panel in dashboard.get("panels", [])]
    if len(ids) != len(set(ids)):
        problems.append("panel ids repeat")
    return problems


def test_the_dashboard_has_every_field_grafana_requires_and_datasources_as_variables() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard_problems(dashboard) == []
    assert any(v["name"] == "datasource" and v["type"] == "datasource" for v in dashboard["templating"]["list"])


def test_the_dashboard_check_finds_a_missing_field_and_a_hard_coded_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    del dashboard["uid"]
    del dashboard["panels"][0]["gridPos"]["w"]
    dashboard["panels"][1]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    assert dashboard_problems(dashboard) == [
        "dashboard: no uid",
        f"panel {dashboard['panels'][0]['title']!r}: gridPos has no w",
        f"panel {dashboard['panels'][1]['title']!r} target: datasource "
        "{'type': 'prometheus', 'uid': 'P1809F7CD0C75ACF3'} is not a dashboard variable",
    ]


def test_the_dashboard_configmap_holds_the_dashboard_file_for_grafanas_sidecar(helm: Helm) -> None:
    assert by_kind(helm.template(), "ConfigMap") == []  # off by default
    (config_map,) = by_kind(helm.template(*MONITORING), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["ballast.json"]) == json.loads(DASHBOARD.read_text())


def test_alerts_page_a_models_owner_or_the_operators_team_and_the_service_monitor_keeps_the_metrics_labels(
    helm: Helm,
) -> None:
    rendered = helm.template("--namespace=ops", *MONITORING, "--set", "metrics.prometheusRule.operatorOwner=sre")
    assert by_kind(helm.template(), "PrometheusRule") == []  # off by default
    groups = {g["name"]: g["rules"] for g in the(rendered, "PrometheusRule")["spec"]["groups"]}
    about_models, about_operator = groups["ballast-deployments"], groups["ballast-operator"]
    assert {r["alert"] for r in about_models} == {
        "BallastRollback", "BallastKillSwitchEngaged", "BallastKillSwitchEngagedLong", "BallastBudgetExceeded"
    }  # fmt: skip
    assert {r["alert"] for r in about_operator} == {
        "BallastOperatorDown", "BallastNoLeader", "BallastMetricsProviderUnreachable", "BallastReconcileLagHigh"
    }  # fmt: skip
    for rule in about_models:  # the owner comes from the deployment's info series, platform when it has none
        assert "group_left (owner)" in rule["expr"]
        assert '"owner", "platform", "owner", ""' in rule["expr"]
        assert "owner" not in rule["labels"]
    assert {r["labels"]["owner"] for r in about_operator} == {"sre"}
    assert all(r["labels"]["severity"] in ("warning", "critical") for r in about_models + about_operator)
    assert all('job="ballast-metrics"' in r["expr"] for r in about_models + about_operator)
    (endpoint,) = the(rendered, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True  # the metrics' `namespace` is the deployment's, not the operator's
