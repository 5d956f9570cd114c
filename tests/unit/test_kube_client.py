"""The API client: a rotated service-account token is picked up, and memory of deleted objects is dropped."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ballast.kube.client import ApiError, KubeApi, TokenFile
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
