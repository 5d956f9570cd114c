"""The API client: in-cluster credentials, a rotated service-account token picked up, memory of deleted objects
dropped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from kubernetes.config import ConfigException

from ballast.handlers.startup import login
from ballast.kube.client import (
    IN_FLIGHT,
    IN_SWITCH_LANE,
    SERVICE_ACCOUNT_DIR_VARIABLE,
    THROTTLED_RETRIES,
    THROTTLED_WAIT_CAP,
    ApiError,
    KubeApi,
    TokenFile,
    in_cluster_configuration,
    service_account_dir,
)
from ballast.kube.resources import SERVICES


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def api_accepting(accepted: set[str], auth: httpx.Auth, seen: list[str]) -> KubeApi:
    def answer(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("Authorization", "")
        seen.append(token)
        if token.removeprefix("Bearer ") not in accepted:
            return httpx.Response(401, json={"kind": "Status", "message": "Unauthorized"})
        return httpx.Response(200, json={"metadata": {"name": "x"}})

    return KubeApi(httpx.AsyncClient(base_url="https://api", transport=httpx.MockTransport(answer), auth=auth))


async def test_a_rotated_token_is_used_at_once_when_the_old_one_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    accepted, seen = {"first"}, []
    api = api_accepting(accepted, TokenFile(token, clock=Clock()), seen)
    assert await api.get(SERVICES, "ns", "x") is not None
    token.write_text("second\n")  # the kubelet rotates the projected token; the old one stops working
    accepted.clear()
    accepted.add("second")
    assert await api.get(SERVICES, "ns", "x") is not None
    assert seen == ["Bearer first", "Bearer first", "Bearer second"]


async def test_the_token_file_is_read_again_once_a_minute(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first")
    clock = Clock()
    seen: list[str] = []
    api = api_accepting({"first", "second"}, TokenFile(token, clock=clock), seen)
    await api.get(SERVICES, "ns", "x")
    token.write_text("second")
    clock.now = 59
    await api.get(SERVICES, "ns", "x")
    clock.now = 60
    await api.get(SERVICES, "ns", "x")
    assert seen == ["Bearer first", "Bearer first", "Bearer second"]


async def test_a_401_with_an_unchanged_token_is_not_retried(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("revoked")
    seen: list[str] = []
    api = api_accepting(set(), TokenFile(token, clock=Clock()), seen)
    with pytest.raises(ApiError) as refused:
        await api.get(SERVICES, "ns", "x")
    assert refused.value.status == 401
    assert seen == ["Bearer revoked"]


def service_account_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text("pod-token\n")
    (folder / "ca.crt").write_text("CA")
    (folder / "namespace").write_text("ballast-system")
    return folder


def test_the_service_account_folder_is_the_pods_unless_the_environment_names_another(tmp_path: Path) -> None:
    assert service_account_dir({}) == Path("/var/run/secrets/kubernetes.io/serviceaccount")
    assert service_account_dir({SERVICE_ACCOUNT_DIR_VARIABLE: str(tmp_path)}) == tmp_path


def test_in_cluster_reads_the_api_server_and_ca_from_the_pods_environment(tmp_path: Path) -> None:
    folder = service_account_folder(tmp_path)
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443",
               SERVICE_ACCOUNT_DIR_VARIABLE: str(folder)}  # fmt: skip
    configuration = in_cluster_configuration(environ=environ)
    assert (configuration.host, configuration.ssl_ca_cert) == ("https://127.0.0.1:6443", str(folder / "ca.crt"))
    with pytest.raises(ConfigException):
        in_cluster_configuration(environ={SERVICE_ACCOUNT_DIR_VARIABLE: str(folder)})  # not in a pod


def test_kopf_logs_in_with_the_same_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = service_account_folder(tmp_path)
    for name, value in {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443",
                        SERVICE_ACCOUNT_DIR_VARIABLE: str(folder)}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    info = login()
    assert info is not None
    assert (info.server, info.ca_path, info.token) == ("https://127.0.0.1:6443", str(folder / "ca.crt"), "pod-token")
    assert info.default_namespace == "ballast-system"


class HeldServer:
    """Answers the switch lane's requests at once and holds every routine one until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.held = 0
        self.throttle: list[str] = []  # Retry-After values of 429s to answer first

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.throttle:
            return httpx.Response(429, headers={"Retry-After": self.throttle.pop(0)}, json={"message": "slow down"})
        if request.url.path.endswith("/routine"):
            self.held += 1
            await self.release.wait()
        return httpx.Response(200, json={"metadata": {"name": request.url.path.rsplit("/", 1)[-1]}})


async def test_a_switch_write_goes_out_while_routine_calls_fill_every_slot_of_their_lane() -> None:
    server = HeldServer()
    api = KubeApi(httpx.AsyncClient(base_url="https://api", transport=httpx.MockTransport(server)))
    routine = [asyncio.create_task(api.get(SERVICES, "ns", "routine")) for _ in range(3 * IN_FLIGHT)]
    while server.held < IN_FLIGHT:
        await asyncio.sleep(0.001)
    token = IN_SWITCH_LANE.set(lambda: True)
    try:
        switched = await asyncio.wait_for(api.get(SERVICES, "ns", "switch"), timeout=5)
    finally:
        IN_SWITCH_LANE.reset(token)
    assert switched == {"metadata": {"name": "switch"}}
    assert server.held == IN_FLIGHT  # routine calls beyond their slots still wait their turn
    server.release.set()
    await asyncio.gather(*routine)
    await api.close()


async def test_a_throttled_request_is_sent_again_after_the_servers_retry_after_capped() -> None:
    server = HeldServer()
    server.release.set()
    server.throttle = ["2", "600"]
    api = KubeApi(httpx.AsyncClient(base_url="https://api", transport=httpx.MockTransport(server)))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    api.sleep = sleep
    assert await api.get(SERVICES, "ns", "x") == {"metadata": {"name": "x"}}
    assert waits == [2.0, THROTTLED_WAIT_CAP]
    server.throttle = ["0"] * THROTTLED_RETRIES
    with pytest.raises(ApiError) as refused:
        await api.get(SERVICES, "ns", "x")
    assert refused.value.status == 429
    await api.close()
