"""The files of the README's path for a cluster of one's own (kind) agree with what the local stack runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from ballast.devstack.dataplane import GATEWAY_NAME, GATEWAY_NAMESPACE, prometheus_config
from tests.conftest import ROOT

KIND = ROOT / "docs" / "kind"


def test_prometheus_relabels_model_servers_as_the_local_stacks_does() -> None:
    values = yaml.safe_load((KIND / "prometheus-values.yaml").read_text())
    (job,) = yaml.safe_load(values["extraScrapeConfigs"])
    local = prometheus_config(SimpleNamespace(workdir=Path("/x"), server="https://127.0.0.1:1"), "1s")  # type: ignore[arg-type]
    (expected,) = local["scrape_configs"]
    assert job["job_name"] == expected["job_name"]
    assert job["relabel_configs"] == expected["relabel_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]


def test_the_gateway_is_the_one_the_examples_name() -> None:
    documents: list[dict[str, Any]] = list(yaml.safe_load_all((KIND / "gateway.yaml").read_text()))
    gateway = next(d for d in documents if d["kind"] == "Gateway")
    assert (gateway["metadata"]["namespace"], gateway["metadata"]["name"]) == (GATEWAY_NAMESPACE, GATEWAY_NAME)
    example = yaml.safe_load((ROOT / "crds" / "examples" / "modeldeployment-simulated.yaml").read_text())
    assert example["spec"]["traffic"]["parentRefs"] == [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}]


def test_kind_maps_the_gateways_node_port_to_localhost() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    (mapping,) = config["nodes"][0]["extraPortMappings"]
    assert (mapping["containerPort"], mapping["hostPort"]) == (30080, 8080)
    assert [n["role"] for n in config["nodes"]].count("worker") >= 2  # two operator replicas on two nodes
