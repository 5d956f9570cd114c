"""The local stack's kubelet: command lines by Kubernetes' rules, Ballast bound to the pod's address, probes,
and the projected service-account volume."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client

from ballast.devstack.pod_runtime import (
    Probe,
    ProbeState,
    ProbeVerdict,
    ballast_program,
    command_line,
    expand,
    repository,
    run_probes,
)
from ballast.devstack.supervisor import workload_of
from ballast.devstack.token_volume import SERVICE_ACCOUNT_PATH, TokenVolume, VolumeNotReady
from ballast.kube.client import SERVICE_ACCOUNT_DIR_VARIABLE

BALLAST = "ghcr.io/ballast-dev/ballast:0.1.0"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (BALLAST, "ghcr.io/ballast-dev/ballast"),
        ("localhost:5000/team/ballast@sha256:" + "a" * 64, "localhost:5000/team/ballast"),
        ("localhost:5000/ballast", "localhost:5000/ballast"),
        ("ballast", "ballast"),
    ],
)
def test_an_images_repository_drops_its_tag_or_digest_only(image: str, expected: str) -> None:
    assert repository(image) == expected


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ([], [], ["ballast", "run"]),  # ENTRYPOINT + CMD
        ([], ["run", "--log-json"], ["ballast", "run", "--log-json"]),  # args replace CMD
        (["ballast", "responder"], [], ["ballast", "responder"]),  # command replaces both
        (["ballast"], ["responder", "--port=8080"], ["ballast", "responder", "--port=8080"]),
    ],
)
def test_command_lines_follow_kubernetes_rules_over_the_images_entrypoint_and_cmd(
    command: list[str], args: list[str], expected: list[str]
) -> None:
    assert command_line(command, args, BALLAST, {}) == expected


def test_an_unknown_image_runs_its_args_alone() -> None:
    assert command_line([], ["--model", "m"], "vllm/vllm-openai:v0.11.0", {}) == ["--model", "m"]


def test_variables_expand_as_the_kubelet_expands_them() -> None:
    env = {"POD_NAME": "ballast-0", "PORT": "8080"}
    assert expand("--identity=$(POD_NAME):$(PORT)", env) == "--identity=ballast-0:8080"
    assert expand("$$(POD_NAME) $(UNKNOWN)", env) == "$(POD_NAME) $(UNKNOWN)"


def test_ballast_binds_its_pods_address_where_it_would_bind_all_interfaces() -> None:
    run = ballast_program(["ballast", "run", "--liveness=http://0.0.0.0:8080/healthz"], "127.8.0.3")
    assert run == [sys.executable, "-m", "ballast", "run", "--liveness=http://127.8.0.3:8080/healthz"]
    responder = ballast_program(["ballast", "responder", "--port=8080"], "127.8.0.4")
    assert responder == [sys.executable, "-m", "ballast", "responder", "--port=8080", "--host=127.8.0.4"]
    assert ballast_program(["ballast", "responder", "--host=10.0.0.1"], "127.8.0.4") == [
        sys.executable, "-m", "ballast", "responder", "--host=10.0.0.1"]  # fmt: skip
    assert ballast_program(["--model", "m"], "127.8.0.5") is None


def test_probes_resolve_named_ports_and_keep_the_kubelets_defaults() -> None:
    http = client.V1Probe(http_get=client.V1HTTPGetAction(path="/healthz", port="health"), period_seconds=5)
    assert Probe.of(http, {"health": 8080}) == Probe(port=8080, path="/healthz", period=5.0)
    tcp = client.V1Probe(tcp_socket=client.V1TCPSocketAction(port=9000), failure_threshold=6)
    assert Probe.of(tcp, {}) == Probe(port=9000, path=None, failure_threshold=6)
    assert Probe.of(client.V1Probe(_exec=client.V1ExecAction(command=["true"])), {}) is None
    assert Probe.of(http, {}) is None  # a named port the container does not have
    assert Probe.of(None, {}) is None


def test_a_probe_passes_and_fails_only_at_its_thresholds_and_waits_its_initial_delay() -> None:
    state = ProbeState(Probe(port=1, path="/", period=5, initial_delay=10, failure_threshold=2, success_threshold=2))
    assert not state.due(now=5, started=0)
    assert state.due(now=10, started=0)
    state.record(10, ok=True)
    assert not state.passed
    assert not state.due(now=12, started=0)
    state.record(15, ok=True)
    assert state.passed
    state.record(20, ok=False)
    assert (state.passed, state.failed) == (False, False)
    state.record(25, ok=False)
    assert state.failed


# ------------------------------------------------------------------------------------------------ probing


def probing(
    results: dict[str, list[bool]], monkeypatch: pytest.MonkeyPatch, rounds: int = 0, **probes: Probe
) -> list[ProbeVerdict]:
    """The verdicts of a probing round every 10 s while each probe answers `results[kind]` in turn."""
    answers = {kind: iter(values) for kind, values in results.items()}
    kinds = {probe: kind for kind, probe in probes.items()}
    monkeypatch.setattr(Probe, "succeeds", lambda self, address: next(answers[kinds[self]]))
    states = {kind: ProbeState(probe) for kind, probe in probes.items()}
    rounds = rounds or max(len(v) for v in results.values())
    return [run_probes(states, "127.8.0.2", started=0, now=10.0 * i) for i in range(rounds)]


def test_readiness_waits_for_the_startup_probe_and_follows_its_own_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    startup, readiness = Probe(port=8080, path="/s", period=1), Probe(port=8080, path="/r", period=1)
    answers = {"startup": [False, True], "readiness": [True, False, False, False, True]}
    verdicts = probing(answers, monkeypatch, rounds=6, startup=startup, readiness=readiness)
    # Startup fails, then passes and readiness runs in the same round: Ready; NotReady after three failures.
    assert [v.ready for v in verdicts] == [None, True, None, None, False, True]
    assert not any(v.restart for v in verdicts)


def test_a_container_without_a_readiness_probe_is_ready_once_started(monkeypatch: pytest.MonkeyPatch) -> None:
    verdicts = probing({"liveness": [True]}, monkeypatch, liveness=Probe(port=8080, path="/l", period=1))
    assert verdicts == [ProbeVerdict(ready=True)]


def test_a_failing_liveness_probe_restarts_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    verdicts = probing({"liveness": [True, False, False, False]}, monkeypatch,
                       liveness=Probe(port=8080, path="/l", period=1))  # fmt: skip
    assert [v.restart for v in verdicts] == ["", "", "", "liveness"]


def test_a_startup_probe_that_never_passes_restarts_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    verdicts = probing({"startup": [False, False]}, monkeypatch,
                       startup=Probe(port=8080, path="/s", period=1, failure_threshold=2))  # fmt: skip
    assert [v.restart for v in verdicts] == ["", "startup"]


# ------------------------------------------------------------------------------------ service-account volume


def pod(*, command: list[str] | None = None, image: str = BALLAST) -> client.V1Pod:
    projected = client.V1ProjectedVolumeSource(
        sources=[
            client.V1VolumeProjection(
                service_account_token=client.V1ServiceAccountTokenProjection(path="token", expiration_seconds=3607)
            ),
            client.V1VolumeProjection(
                config_map=client.V1ConfigMapProjection(
                    name="kube-root-ca.crt", items=[client.V1KeyToPath(key="ca.crt", path="ca.crt")]
                )
            ),
            client.V1VolumeProjection(
                downward_api=client.V1DownwardAPIProjection(
                    items=[
                        client.V1DownwardAPIVolumeFile(
                            path="namespace", field_ref=client.V1ObjectFieldSelector(field_path="metadata.namespace")
                        )
                    ]
                )
            ),
        ]
    )
    container = client.V1Container(
        name="operator",
        image=image,
        command=command,
        args=["run"],
        ports=[client.V1ContainerPort(container_port=8080, name="health")],
        volume_mounts=[client.V1VolumeMount(name="kube-api-access-x", mount_path=SERVICE_ACCOUNT_PATH)],
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name="ballast-abc", namespace="ballast-system", uid="u-1"),
        spec=client.V1PodSpec(
            containers=[container],
            service_account_name="ballast",
            volumes=[client.V1Volume(name="kube-api-access-x", projected=projected)],
        ),
        status=client.V1PodStatus(phase="Running", pod_ip="127.8.0.2"),
    )


class TokenCore:
    def __init__(self, ca_published: bool = True) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.ca_published = ca_published

    def create_namespaced_service_account_token(self, name: str, namespace: str, body: dict[str, Any]) -> Any:
        self.requests.append((name, namespace, body))
        return SimpleNamespace(status=SimpleNamespace(token=f"token-{len(self.requests)}"))

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        if not self.ca_published:
            raise client.ApiException(status=404)
        return SimpleNamespace(data={"ca.crt": "CA PEM"})


def test_a_ballast_pod_gets_its_projected_volume_with_a_token_bound_to_it(tmp_path: Path) -> None:
    workload = workload_of(pod(), tmp_path)
    assert workload is not None
    assert workload.token is not None
    volume, core = workload.token, TokenCore()
    now = [100.0]
    volume.clock = lambda: now[0]
    volume.write(core)
    assert {p.name: p.read_text() for p in volume.folder.iterdir()} == {
        "token": "token-1", "ca.crt": "CA PEM", "namespace": "ballast-system"}  # fmt: skip
    name, namespace, body = core.requests[0]
    assert (name, namespace) == ("ballast", "ballast-system")
    assert body["spec"]["boundObjectRef"] == {"apiVersion": "v1", "kind": "Pod", "name": "ballast-abc", "uid": "u-1"}
    assert volume.environment() == {SERVICE_ACCOUNT_DIR_VARIABLE: str(volume.folder)}
    # A fresh token once 80% of its lifetime has passed, as the kubelet rotates it.
    now[0] = 100 + 0.79 * 3607
    assert not volume.due()
    now[0] = 100 + 0.81 * 3607
    assert volume.due()
    volume.write(core)
    assert (volume.folder / "token").read_text() == "token-2"


def test_the_volume_waits_for_the_clusters_ca_to_be_published(tmp_path: Path) -> None:
    volume = TokenVolume.of(pod(), pod().spec.containers[0], tmp_path)
    assert volume is not None
    with pytest.raises(VolumeNotReady, match=r"kube-root-ca\.crt"):
        volume.write(TokenCore(ca_published=False))


def test_a_model_server_gets_no_token(tmp_path: Path) -> None:
    model = workload_of(pod(image="vllm/vllm-openai:v0.11.0"), tmp_path)
    assert model is not None
    assert model.token is None
    assert workload_of(pod(command=["ballast", "responder"]), tmp_path).token is not None  # type: ignore[union-attr]
