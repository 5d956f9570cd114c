"""A model-server simulator: an OpenAI-compatible API with runtime-faithful Prometheus metrics.

It plays a pod's container on the local stack. Its behaviour comes from the pod's own env (so a
change to the model template is a change of behaviour, exactly like a new image):

    SIM_RUNTIME            vllm (default) | tgi | triton | openai   metric names and types
    SIM_MODEL              the model name it serves (default: the value after --model in args)
    SIM_LATENCY            mean seconds per request, end to end (default 0.05)
    SIM_TTFT               seconds to the first token (default: a fifth of SIM_LATENCY)
    SIM_JITTER             relative standard deviation of latencies (default 0.1)
    SIM_ERROR_RATE         share of requests answered 500 (default 0)
    SIM_PROMPT_TOKENS      prompt tokens counted per request (default: from the prompt's length)
    SIM_COMPLETION_TOKENS  completion tokens per answer (default 16)
    SIM_PROFILE            changes over time, JSON: [{"after": "60s", "errorRate": 0.3, "latency": 1.2}, ...]
    SIM_EXIT_AFTER         exit with status 1 after this long (a crash, for restart tests)

It never labels metrics with a revision: that comes from Prometheus relabelling pod labels.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ballast.api.types import parse_duration

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 30.0)
TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0)
SERVED_BY_HEADER = "x-served-by"


@dataclass(frozen=True)
class Behaviour:
    latency: float = 0.05
    ttft: float | None = None
    jitter: float = 0.1
    error_rate: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int = 16

    @property
    def first_token(self) -> float:
        return self.ttft if self.ttft is not None else self.latency / 5


_PROFILE_KEYS = {
    "latency": "latency",
    "ttft": "ttft",
    "jitter": "jitter",
    "errorRate": "error_rate",
    "promptTokens": "prompt_tokens",
    "completionTokens": "completion_tokens",
}


@dataclass(frozen=True)
class Config:
    name: str
    model: str
    runtime: str
    behaviour: Behaviour
    profile: tuple[tuple[float, dict[str, Any]], ...] = ()
    exit_after: float | None = None

    def behaviour_at(self, elapsed: float) -> Behaviour:
        """The behaviour in force `elapsed` seconds after start: later profile entries override earlier ones."""
        current = self.behaviour
        for after, changes in self.profile:
            if elapsed >= after:
                current = replace(current, **{_PROFILE_KEYS[k]: v for k, v in changes.items()})
        return current

    @classmethod
    def from_environment(cls, env: dict[str, str], args: list[str], name: str) -> Config:
        def number(key: str, default: float | None) -> float | None:
            return float(env[key]) if env.get(key) else default

        model = env.get("SIM_MODEL") or (args[args.index("--model") + 1] if "--model" in args[:-1] else "model")
        behaviour = Behaviour(
            latency=float(number("SIM_LATENCY", 0.05) or 0.05),
            ttft=number("SIM_TTFT", None),
            jitter=float(number("SIM_JITTER", 0.1) or 0.0),
            error_rate=float(number("SIM_ERROR_RATE", 0.0) or 0.0),
            prompt_tokens=int(env["SIM_PROMPT_TOKENS"]) if env.get("SIM_PROMPT_TOKENS") else None,
            completion_tokens=int(env.get("SIM_COMPLETION_TOKENS") or 16),
        )
        profile = tuple(
            (parse_duration(entry["after"]).total_seconds(), {k: v for k, v in entry.items() if k != "after"})
            for entry in json.loads(env.get("SIM_PROFILE") or "[]")
        )
        for _, changes in profile:
            unknown = set(changes) - set(_PROFILE_KEYS)
            if unknown:
                raise ValueError(f"SIM_PROFILE: unknown keys {sorted(unknown)}; allowed: {sorted(_PROFILE_KEYS)}")
        exit_after = parse_duration(env["SIM_EXIT_AFTER"]).total_seconds() if env.get("SIM_EXIT_AFTER") else None
        runtime = env.get("SIM_RUNTIME", "vllm")
        if runtime not in ("vllm", "tgi", "triton", "openai"):
            raise ValueError(f"SIM_RUNTIME={runtime!r}: allowed vllm, tgi, triton, openai")
        return cls(name, model, runtime, behaviour, profile, exit_after)


class PlainCounters:
    """Counters exposed under their exact names: TGI and Triton do not add prometheus_client's `_total`."""

    def __init__(self) -> None:
        self.values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}

    def declare(self, name: str) -> None:
        self.values.setdefault(name, {})

    def inc(self, name: str, labels: dict[str, str] | None = None, amount: float = 1.0) -> None:
        key = tuple(sorted((labels or {}).items()))
        self.values[name][key] = self.values[name].get(key, 0.0) + amount

    def render(self) -> str:
        lines = []
        for name, series in self.values.items():
            lines.append(f"# TYPE {name} counter")
            for key, value in series.items():
                labels = ",".join(f'{k}="{v}"' for k, v in key)
                lines.append(f"{name}{{{labels}}} {value}" if labels else f"{name} {value}")
        return "\n".join(lines) + "\n" if lines else ""


class Metrics:
    """The metric names and types of the runtime the simulator plays."""

    def __init__(self, runtime: str, model: str) -> None:
        self.plain = PlainCounters()
        self.registry = CollectorRegistry()
        self.runtime = runtime
        self.model = model
        r = self.registry
        # Every runtime sits behind an HTTP server that counts requests by status class.
        self.http_requests = Counter(
            "http_requests_total", "HTTP requests.", ["handler", "method", "status"], registry=r
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds", "HTTP latency.", ["handler", "method"], buckets=LATENCY_BUCKETS, registry=r
        )
        if runtime == "vllm":
            labels = ["model_name"]
            self.e2e = Histogram(
                "vllm:e2e_request_latency_seconds", "E2E latency.", labels, buckets=LATENCY_BUCKETS, registry=r
            )
            self.ttft = Histogram(
                "vllm:time_to_first_token_seconds", "TTFT.", labels, buckets=LATENCY_BUCKETS, registry=r
            )
            self.itl = Histogram("vllm:inter_token_latency_seconds", "ITL.", labels, buckets=TOKEN_BUCKETS, registry=r)
            self.prompt = Counter("vllm:prompt_tokens", "Prompt tokens.", labels, registry=r)
            self.generation = Counter("vllm:generation_tokens", "Generation tokens.", labels, registry=r)
            self.success = Counter(
                "vllm:request_success", "Finished requests.", [*labels, "finished_reason"], registry=r
            )
        elif runtime == "tgi":
            self.tgi_duration = Histogram("tgi_request_duration", "Latency.", buckets=LATENCY_BUCKETS, registry=r)
            self.tgi_per_token = Histogram(
                "tgi_request_mean_time_per_token_duration", "Per token.", buckets=TOKEN_BUCKETS, registry=r
            )
            self.tgi_generated = Histogram(
                "tgi_request_generated_tokens", "Generated.", buckets=(1, 8, 16, 32, 64, 128, 256, 512), registry=r
            )
            self.tgi_input = Histogram(
                "tgi_request_input_length", "Input.", buckets=(8, 32, 128, 512, 2048, 8192), registry=r
            )
            for name in ("tgi_request_count", "tgi_request_success", "tgi_request_failure"):
                self.plain.declare(name)
        elif runtime == "triton":
            for name in (
                "nv_inference_request_success",
                "nv_inference_request_failure",
                "nv_inference_count",
                "nv_inference_request_duration_us",
                "nv_inference_queue_duration_us",
            ):
                self.plain.declare(name)

    def declare_series(self) -> None:
        """Series that exist from the start at zero, as the runtimes export them: Prometheus' increase() then
        counts the first requests too (a series born at its first request loses them)."""
        for handler in ("/v1/chat/completions", "/v1/completions"):
            self.http_requests.labels(handler, "POST", "2xx")
        if self.runtime == "vllm":
            self.prompt.labels(self.model)
            self.generation.labels(self.model)
            self.success.labels(self.model, "stop")
        elif self.runtime == "tgi":
            for name in ("tgi_request_count", "tgi_request_success"):
                self.plain.inc(name, amount=0.0)
        elif self.runtime == "triton":
            for name in ("nv_inference_count", "nv_inference_request_success", "nv_inference_request_duration_us"):
                self.plain.inc(name, {"model": self.model, "version": "1"}, 0.0)

    def observe(
        self, handler: str, status: int, seconds: float, first_token: float, prompt: int, completion: int
    ) -> None:
        """One finished request. Tokens are counted as the runtime counts them: the prompt once it was read
        (a request that fails after prefill still used it), completion tokens as they were generated."""
        ok = status < 400
        self.http_requests.labels(handler, "POST", f"{status // 100}xx").inc()
        self.http_duration.labels(handler, "POST").observe(seconds)
        if self.runtime == "vllm":
            labels = (self.model,)
            self.prompt.labels(*labels).inc(prompt)
            self.generation.labels(*labels).inc(completion)
            if ok:
                self.e2e.labels(*labels).observe(seconds)
                self.ttft.labels(*labels).observe(first_token)
                per_token = (seconds - first_token) / max(completion - 1, 1)
                for _ in range(max(completion - 1, 0)):
                    self.itl.labels(*labels).observe(per_token)
                self.success.labels(self.model, "stop").inc()
        elif self.runtime == "tgi":
            self.plain.inc("tgi_request_count")
            self.tgi_input.observe(prompt)
            if ok:
                self.plain.inc("tgi_request_success")
                self.tgi_duration.observe(seconds)
                self.tgi_per_token.observe((seconds - first_token) / max(completion, 1))
                self.tgi_generated.observe(completion)
            else:
                self.plain.inc("tgi_request_failure", {"err": "generation"})
        elif self.runtime == "triton":
            triton = {"model": self.model, "version": "1"}
            self.plain.inc("nv_inference_count", triton)
            self.plain.inc("nv_inference_request_success" if ok else "nv_inference_request_failure", triton)
            self.plain.inc("nv_inference_request_duration_us", triton, seconds * 1e6)
            self.plain.inc("nv_inference_queue_duration_us", triton, 0.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry) + self.plain.render().encode()


def _prompt_tokens(body: dict[str, Any], behaviour: Behaviour) -> int:
    if behaviour.prompt_tokens is not None:
        return behaviour.prompt_tokens
    text = body.get("prompt") or " ".join(str(m.get("content", "")) for m in body.get("messages", []))
    return max(1, len(str(text).split()))


class Simulator:
    def __init__(self, config: Config, rng: random.Random | None = None) -> None:
        self.config = config
        self.metrics = Metrics(config.runtime, config.model)
        self.metrics.declare_series()
        self.started = time.monotonic()
        self.rng = rng or random.Random()

    def _jittered(self, seconds: float, jitter: float) -> float:
        return max(0.0, self.rng.gauss(seconds, seconds * jitter)) if jitter else seconds

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics_endpoint)
        return app

    def _headers(self) -> dict[str, str]:
        return {SERVED_BY_HEADER: self.config.name}

    async def health(self, _: web.Request) -> web.Response:
        return web.Response(text="ok", headers=self._headers())

    async def models(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.config.model, "object": "model"}]}, headers=self._headers()
        )

    async def metrics_endpoint(self, _: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        chat = request.path.endswith("chat/completions")
        handler = request.path
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": {"message": "body must be JSON"}}, status=400, headers=self._headers())
        behaviour = self.config.behaviour_at(started - self.started)
        prompt = _prompt_tokens(body, behaviour)
        # The answer's length is the model's (SIM_COMPLETION_TOKENS); a client's max_tokens only cuts it short.
        completion = behaviour.completion_tokens
        if body.get("max_tokens"):
            completion = min(completion, int(body["max_tokens"]))
        first = self._jittered(behaviour.first_token, behaviour.jitter)
        total = max(first, self._jittered(behaviour.latency, behaviour.jitter))
        failed = self.rng.random() < behaviour.error_rate
        if failed:
            await asyncio.sleep(first)
            self.metrics.observe(handler, 500, time.monotonic() - started, first, prompt, 0)
            return web.json_response(
                {"error": {"message": "simulated server error", "type": "server_error"}},
                status=500,
                headers=self._headers(),
            )
        if body.get("stream"):
            return await self._stream(request, chat, started, first, total, prompt, completion)
        await asyncio.sleep(total)
        self.metrics.observe(handler, 200, time.monotonic() - started, first, prompt, completion)
        text = " ".join(f"token{i}" for i in range(completion))
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            if chat
            else {"index": 0, "text": text, "finish_reason": "stop"}
        )
        return web.json_response(
            {
                "id": f"sim-{int(started * 1e6)}",
                "object": "chat.completion" if chat else "text_completion",
                "model": self.config.model,
                "choices": [choice],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            },
            headers=self._headers(),
        )

    async def _stream(
        self, request: web.Request, chat: bool, started: float, first: float, total: float, prompt: int, completion: int
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={**self._headers(), "Content-Type": "text/event-stream"})
        await response.prepare(request)
        per_token = (total - first) / max(completion - 1, 1)
        for index in range(completion):
            await asyncio.sleep(first if index == 0 else per_token)
            delta = {"delta": {"content": f"token{index} "}} if chat else {"text": f"token{index} "}
            chunk = {"object": "chat.completion.chunk" if chat else "text_completion", "model": self.config.model,
                     "choices": [{"index": 0, **delta, "finish_reason": None}]}  # fmt: skip
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        self.metrics.observe(request.path, 200, time.monotonic() - started, first, prompt, completion)
        return response


async def serve(config: Config, host: str, port: int) -> None:
    simulator = Simulator(config)
    runner = web.AppRunner(simulator.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        if config.exit_after is not None:
            await asyncio.sleep(config.exit_after)
            print(f"{config.name}: simulated crash after {config.exit_after}s", file=sys.stderr)
            raise SystemExit(1)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--name", default="simulator", help="served in the x-served-by header")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the container's args (for --model)")
    options = parser.parse_args(argv)
    config = Config.from_environment(dict(os.environ), options.args, options.name)
    try:
        asyncio.run(serve(config, options.host, options.port))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
