"""One webhook call: outbound checks at connect time, the token's audience, timeouts, size limits, outcomes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from ballast.api.modeldeployment import Webhook
from ballast.hooks.caller import CallResult, WebhookCaller, judge_answer
from ballast.hooks.outbound import OutboundPolicy, refused_range
from ballast.hooks.tokens import ServiceAccountTokens
from ballast.kube.resources import Resource


class Spy:
    """A transport that records every connection attempt and answers as told."""

    def __init__(self, answer: Any = None) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = answer or (lambda request: httpx.Response(200, json={"verdict": "pass"}))

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answer(request)
        if asyncio.iscoroutine(answer):
            answer = await answer
        return answer  # type: ignore[no-any-return]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


def resolving(*answers: list[str]) -> Any:
    """A resolver answering each lookup with the next list of addresses (the last one repeats)."""
    queue = list(answers)

    async def resolve(host: str, port: int) -> list[str]:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return resolve


def gate(url: str = "https://gate.example.com:8443/check", **extra: Any) -> Webhook:
    return Webhook.model_validate({"name": "g", "type": "rollout", "url": url, **extra})


def caller(spy: Spy, resolver: Any, allow: tuple[str, ...] = (), **extra: Any) -> WebhookCaller:
    return WebhookCaller(OutboundPolicy.allowing(allow, resolver), None, spy.transport(), **extra)


@pytest.mark.parametrize("address", ["169.254.169.254", "127.0.0.1", "::1", "::ffff:127.0.0.1", "0.0.0.0",
                                     "100.100.100.200", "fe80::1"])  # fmt: skip
async def test_a_host_resolving_to_a_refused_address_is_never_connected_to(address: str) -> None:
    spy = Spy()
    result = await caller(spy, resolving([address])).call(gate(), {})
    assert spy.requests == []
    assert result.outcome == "Error"
    assert f"host gate.example.com resolves to {address}, a" in result.message
    assert "--webhook-allow-host" in result.message


async def test_one_refused_address_among_several_refuses_the_host() -> None:
    spy = Spy()
    result = await caller(spy, resolving(["203.0.113.7", "169.254.169.254"])).call(gate(), {})
    assert spy.requests == []
    assert result.outcome == "Error"


async def test_a_host_that_resolves_first_to_an_allowed_then_to_a_refused_address_is_refused_then() -> None:
    spy = Spy()
    client = caller(spy, resolving(["203.0.113.7"], ["169.254.169.254"]))
    first = await client.call(gate(), {})
    second = await client.call(gate(), {})
    assert (first.outcome, second.outcome) == ("Passed", "Error")
    assert [r.url.host for r in spy.requests] == ["203.0.113.7"]  # one connection, to the first, checked address


async def test_the_connection_goes_to_the_checked_address_with_the_hosts_name_in_host_and_sni() -> None:
    spy = Spy()
    await caller(spy, resolving(["203.0.113.7"])).call(gate(), {"kind": "WebhookCall"})
    (request,) = spy.requests
    assert (request.url.scheme, request.url.host, request.url.port, request.url.path) == (
        "https",
        "203.0.113.7",
        8443,
        "/check",
    )
    assert request.headers["host"] == "gate.example.com:8443"
    assert request.extensions["sni_hostname"] == "gate.example.com"
    assert json.loads(request.content) == {"kind": "WebhookCall"}


async def test_an_allowed_host_name_may_reach_a_loopback_address() -> None:
    spy = Spy()
    result = await caller(spy, resolving(["127.0.0.1"]), allow=("Gate.Example.com.",)).call(gate(), {})
    assert result.outcome == "Passed"
    assert [r.url.host for r in spy.requests] == ["127.0.0.1"]


async def test_a_redirect_is_not_followed_and_counts_as_a_refusal() -> None:
    spy = Spy(lambda request: httpx.Response(302, headers={"Location": "http://169.254.169.254/"}))
    result = await caller(spy, resolving(["203.0.113.7"])).call(gate(), {})
    assert len(spy.requests) == 1
    assert (result.outcome, result.code) == ("Refused", 302)


async def test_a_gate_that_hangs_is_an_error_at_its_timeout() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    spy = Spy(hang)
    started = time.monotonic()
    result = await caller(spy, resolving(["203.0.113.7"])).call(gate(timeout="200ms"), {})
    assert result.outcome == "Error"
    assert result.message == "no answer within 200ms"
    assert 0.2 <= time.monotonic() - started < 5
    assert result.latency_seconds is not None
    assert result.latency_seconds >= 0.2


async def test_an_answer_over_the_size_limit_is_an_error() -> None:
    spy = Spy(lambda request: httpx.Response(200, content=b"x" * 5000))
    result = await caller(spy, resolving(["203.0.113.7"]), max_answer_bytes=4096).call(gate(), {})
    assert (result.outcome, result.message) == ("Error", "the answer is larger than 4096 bytes")
    small = await caller(Spy(lambda r: httpx.Response(200, content=b"x" * 4096)), resolving(["203.0.113.7"]),
                         max_answer_bytes=4096).call(gate(), {})  # fmt: skip
    assert small.outcome == "Passed"


async def test_an_unreachable_gate_is_an_error_not_a_refusal() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    result = await caller(Spy(refuse), resolving(["203.0.113.7"])).call(gate(), {})
    assert result.outcome == "Error"
    assert result.message.startswith("unreachable: ConnectError")


@pytest.mark.parametrize(
    ("code", "body", "expected"),
    [
        (200, b"", CallResult("Passed", 200)),
        (204, b"not json", CallResult("Passed", 204, message="not json")),
        (200, b'{"verdict": "fail", "message": "41/50", "scores": {"accuracy": 0.82, "bad": "x", "inf": 1e999}}',
         CallResult("Refused", 200, scores={"accuracy": 0.82}, message="41/50")),
        (200, b'{"verdict": "pass", "scores": {"accuracy": 0.97, "flag": true}}',
         CallResult("Passed", 200, scores={"accuracy": 0.97})),
        (403, b'{"message": "no"}', CallResult("Refused", 403, message="no")),
        (503, b"", CallResult("Error", 503, message="the gate failed (5xx)")),
    ],
)  # fmt: skip
def test_an_answer_is_judged_by_its_code_then_its_verdict(code: int, body: bytes, expected: CallResult) -> None:
    assert judge_answer(code, body) == expected


def test_refused_ranges_cover_loopback_link_local_metadata_and_mapped_addresses() -> None:
    assert refused_range("10.0.0.8") is None
    assert refused_range("2001:db8::1") is None
    assert refused_range("::ffff:169.254.169.254") == "link-local (cloud metadata)"
    assert refused_range("fd00:ec2::254") == "cloud metadata"


class FakeTokenApi:
    """The two API calls minting a token takes, recorded."""

    def __init__(self, username: str = "system:serviceaccount:ballast-system:ballast") -> None:
        self.username = username
        self.requests: list[tuple[str, Any]] = []

    async def create(self, resource: Resource, namespace: str, body: Any) -> Any:
        self.requests.append((resource.plural, body))
        return {"status": {"userInfo": {"username": self.username}}}

    async def create_subresource(self, resource: Resource, namespace: str, name: str, sub: str, body: Any) -> Any:
        self.requests.append((f"{namespace}/{resource.plural}/{name}/{sub}", body))
        return {"status": {"token": f"token-for-{body['spec']['audiences'][0]}"}}


async def test_each_call_carries_a_token_of_the_operators_account_whose_audience_is_the_url() -> None:
    api = FakeTokenApi()
    spy = Spy()
    client = WebhookCaller(OutboundPolicy(resolving(["203.0.113.7"])), ServiceAccountTokens(api), spy.transport())  # type: ignore[arg-type]
    await client.call(gate(), {})
    await client.call(gate(), {})
    await client.call(gate("https://other.example.com/"), {})
    assert [r.headers["authorization"] for r in spy.requests] == [
        "Bearer token-for-https://gate.example.com:8443/check",
        "Bearer token-for-https://gate.example.com:8443/check",
        "Bearer token-for-https://other.example.com/",
    ]
    minted = [(path, body["spec"]["audiences"]) for path, body in api.requests if path.endswith("/token")]
    assert minted == [  # kept per audience; the account asked once
        ("ballast-system/serviceaccounts/ballast/token", ["https://gate.example.com:8443/check"]),
        ("ballast-system/serviceaccounts/ballast/token", ["https://other.example.com/"]),
    ]
    assert [path for path, _ in api.requests].count("selfsubjectreviews") == 1


async def test_an_operator_not_running_as_a_service_account_makes_no_call() -> None:
    spy = Spy()
    tokens = ServiceAccountTokens(FakeTokenApi(username="kubernetes-admin"))  # type: ignore[arg-type]
    result = await WebhookCaller(OutboundPolicy(resolving(["203.0.113.7"])), tokens, spy.transport()).call(gate(), {})
    assert spy.requests == []
    assert result.outcome == "Error"
    assert "runs as 'kubernetes-admin', not a ServiceAccount" in result.message
