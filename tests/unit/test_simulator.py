"""The model-server simulator: runtime-faithful metric names, behaviour from env, OpenAI-shaped answers."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ballast.devstack.loadgen import LoadReport, generate
from ballast.devstack.simulator import SERVED_BY_HEADER, Config, Simulator


def _config(runtime: str = "vllm", **env: str) -> Config:
    return Config.from_environment({"SIM_RUNTIME": runtime, "SIM_LATENCY": "0.001", **env}, ["--model", "m"], "pod-a")


@pytest.fixture
async def make_client() -> AsyncIterator[object]:
    clients: list[TestClient[object, object]] = []

    async def make(config: Config) -> TestClient[object, object]:
        client: TestClient[object, object] = TestClient(TestServer(Simulator(config, random.Random(7)).app()))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def _metrics(client: TestClient[object, object]) -> str:
    response = await client.get("/metrics")
    return await response.text()


async def test_vllm_names_and_no_revision_label(make_client: object) -> None:
    client = await make_client(_config())  # type: ignore[operator]
    response = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "a b c"}]})
    body = await response.json()
    assert response.headers[SERVED_BY_HEADER] == "pod-a"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 16, "total_tokens": 19}
    text = await _metrics(client)
    for name in (
        'vllm:e2e_request_latency_seconds_count{model_name="m"} 1.0',
        'vllm:time_to_first_token_seconds_count{model_name="m"} 1.0',
        'vllm:inter_token_latency_seconds_count{model_name="m"} 15.0',
        'vllm:prompt_tokens_total{model_name="m"} 3.0',
        'vllm:generation_tokens_total{model_name="m"} 16.0',
        'vllm:request_success_total{finished_reason="stop",model_name="m"} 1.0',
        'http_requests_total{handler="/v1/chat/completions",method="POST",status="2xx"} 1.0',
    ):
        assert name in text
    assert "revision" not in text


async def test_token_counts_follow_the_configuration_and_count_what_the_runtime_counts(make_client: object) -> None:
    client = await make_client(_config(SIM_COMPLETION_TOKENS="40", SIM_PROMPT_TOKENS="7"))  # type: ignore[operator]
    before = await _metrics(client)
    # The counters exist at zero before the first request, as vLLM exports them (increase() sees the first one).
    assert 'vllm:prompt_tokens_total{model_name="m"} 0.0' in before
    assert 'http_requests_total{handler="/v1/chat/completions",method="POST",status="2xx"} 0.0' in before
    long = await (await client.post("/v1/chat/completions", json={"messages": []})).json()
    cut = await (await client.post("/v1/chat/completions", json={"messages": [], "max_tokens": 8})).json()
    # The answer is as long as the model makes it; a client's max_tokens only cuts it short.
    assert (long["usage"]["completion_tokens"], cut["usage"]["completion_tokens"]) == (40, 8)
    text = await _metrics(client)
    assert 'vllm:prompt_tokens_total{model_name="m"} 14.0' in text
    assert 'vllm:generation_tokens_total{model_name="m"} 48.0' in text


async def test_a_failed_request_still_counts_its_prompt_tokens(make_client: object) -> None:
    client = await make_client(_config(SIM_ERROR_RATE="1", SIM_PROMPT_TOKENS="5"))  # type: ignore[operator]
    assert (await client.post("/v1/chat/completions", json={"messages": []})).status == 500
    text = await _metrics(client)
    assert 'vllm:prompt_tokens_total{model_name="m"} 5.0' in text  # read before it failed, as vLLM counts it
    assert 'vllm:generation_tokens_total{model_name="m"} 0.0' in text


async def test_tgi_counters_carry_no_total_suffix(make_client: object) -> None:
    client = await make_client(_config("tgi", SIM_ERROR_RATE="1"))  # type: ignore[operator]
    assert (await client.post("/v1/completions", json={"prompt": "x"})).status == 500
    text = await _metrics(client)
    assert "tgi_request_count 1.0" in text
    assert 'tgi_request_failure{err="generation"} 1.0' in text
    assert "# TYPE tgi_request_failure counter" in text
    assert "_total" not in text.replace("http_requests_total", "")


async def test_triton_reports_cumulative_microseconds(make_client: object) -> None:
    client = await make_client(_config("triton", SIM_LATENCY="0.02", SIM_JITTER="0"))  # type: ignore[operator]
    await client.post("/v1/completions", json={"prompt": "x"})
    text = await _metrics(client)
    line = next(row for row in text.splitlines() if row.startswith("nv_inference_request_duration_us{"))
    assert float(line.split()[-1]) >= 20_000
    assert 'nv_inference_request_success{model="m",version="1"} 1.0' in text


async def test_streaming_is_server_sent_events(make_client: object) -> None:
    client = await make_client(_config(SIM_COMPLETION_TOKENS="3"))  # type: ignore[operator]
    response = await client.post("/v1/chat/completions", json={"messages": [], "stream": True})
    assert response.headers["Content-Type"] == "text/event-stream"
    events = [line.removeprefix("data: ") for line in (await response.text()).splitlines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["token0 ", "token1 ", "token2 "]


def test_profile_changes_behaviour_over_time() -> None:
    config = _config(SIM_PROFILE='[{"after": "30s", "errorRate": 0.5}, {"after": "1m", "latency": 2}]')
    assert config.behaviour_at(10).error_rate == 0
    assert config.behaviour_at(45).error_rate == 0.5
    later = config.behaviour_at(61)
    assert (later.error_rate, later.latency) == (0.5, 2)


def test_bad_configuration_names_the_variable() -> None:
    with pytest.raises(ValueError, match="SIM_PROFILE: unknown keys"):
        _config(SIM_PROFILE='[{"after": "1s", "errRate": 1}]')
    with pytest.raises(ValueError, match="SIM_RUNTIME='llamacpp'"):
        _config("llamacpp")


def test_model_name_comes_from_args_unless_set() -> None:
    assert _config().model == "m"
    assert _config(SIM_MODEL="other").model == "other"


def test_load_report_shares_and_percentiles() -> None:
    report = LoadReport(sent=4, latencies=[0.1, 0.2, 0.3, 0.4])
    report.by_backend.update({"canary-1": 1, "stable-1": 2, "stable-2": 1})
    assert report.share("canary-") == 0.25
    assert report.percentile(50) == pytest.approx(0.25)
    assert "canary-1=1" in report.summary()


async def test_the_load_generator_sums_the_tokens_of_the_answers_it_received(make_client: object) -> None:
    client = await make_client(_config(SIM_COMPLETION_TOKENS="12"))  # type: ignore[operator]
    report = await generate(str(client.make_url("/v1/chat/completions")), total=5, rate=200, max_seconds=10)
    assert report.by_status[200] == 5
    # "Say hello." is two prompt tokens; no max_tokens is sent, so the model's 12 tokens arrive whole.
    assert report.tokens() == (10, 60)
    assert report.tokens("pod-a") == (10, 60)
    assert report.tokens("other") == (0, 0)
