"""One webhook call and its outcome: Passed, Refused (the gate said no) or Error (the gate could not answer).

The outcomes are distinct because they call for different answers: a refusal is the gate's verdict (a
3xx or 4xx answer, or a 2xx whose JSON body says `"verdict": "fail"`), while a gate unreachable, timed
out, answering 5xx or more than `MAX_ANSWER_BYTES` is an error that holds and is asked again. Redirects
are never followed (a redirect is a refusal), so no answer can send a call to an address not checked.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from ballast.api.modeldeployment import Webhook
from ballast.api.types import parse_duration
from ballast.hooks.outbound import OutboundPolicy, OutboundRefused
from ballast.hooks.tokens import ServiceAccountTokens, TokenError

MAX_ANSWER_BYTES = 64 * 1024
MAX_SCORES = 32


@dataclass(frozen=True)
class CallResult:
    outcome: str  # Passed, Refused or Error
    code: int | None = None
    latency_seconds: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    message: str = ""


class AnswerTooLarge(Exception):
    pass


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():  # decoded: a compressed answer is limited by its real size
        body.extend(chunk)
        if len(body) > limit:
            raise AnswerTooLarge(f"the answer is larger than {limit} bytes")
    return bytes(body)


def judge_answer(code: int, body: bytes) -> CallResult:
    """The outcome of an answer: its status code, then an optional JSON body {verdict, message, scores}."""
    message, scores, verdict = "", {}, None
    try:
        document: Any = json.loads(body) if body.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        document = None
        message = body[:512].decode("utf-8", "replace").strip()
    if isinstance(document, dict):
        message = str(document.get("message", ""))[:1024]
        verdict = document.get("verdict")
        raw = document.get("scores")
        if isinstance(raw, dict):
            scores = {
                str(k)[:63]: float(v) for k, v in list(raw.items())[:MAX_SCORES]
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            }  # fmt: skip
    if code >= 500:
        return CallResult("Error", code, scores=scores, message=message or "the gate failed (5xx)")
    if code >= 300 or verdict == "fail":
        return CallResult("Refused", code, scores=scores, message=message)
    return CallResult("Passed", code, scores=scores, message=message)


class WebhookCaller:
    def __init__(
        self,
        policy: OutboundPolicy,
        tokens: ServiceAccountTokens | None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.policy = policy
        self.tokens = tokens
        self.max_answer_bytes = max_answer_bytes
        # No proxies from the environment, no redirects: the connection goes to the address checked.
        self.http = httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, hook: Webhook, payload: dict[str, Any]) -> CallResult:
        timeout = parse_duration(hook.timeout).total_seconds()
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                code, body = await self._send(hook, payload, timeout)
        except OutboundRefused as error:
            return CallResult("Error", message=f"not called: {error}")
        except TokenError as error:
            return CallResult("Error", message=f"not called: {error}")
        except TimeoutError:
            return CallResult("Error", latency_seconds=time.monotonic() - started,
                              message=f"no answer within {hook.timeout}")  # fmt: skip
        except AnswerTooLarge as error:
            return CallResult("Error", latency_seconds=time.monotonic() - started, message=str(error))
        except httpx.HTTPError as error:
            return CallResult("Error", latency_seconds=time.monotonic() - started,
                              message=f"unreachable: {type(error).__name__}: {error}"[:1024])  # fmt: skip
        result = judge_answer(code, body)
        return CallResult(result.outcome, code, time.monotonic() - started, result.scores, result.message)

    async def _send(self, hook: Webhook, payload: dict[str, Any], timeout: float) -> tuple[int, bytes]:
        url = httpx.URL(hook.url)
        port = url.port or (443 if url.scheme == "https" else 80)
        address = await self.policy.checked_address(url.scheme, url.host, port)
        headers = {"Host": url.netloc.decode("ascii"), "Content-Type": "application/json"}
        if self.tokens is not None:
            headers["Authorization"] = f"Bearer {await self.tokens.token(hook.url)}"
        request = self.http.build_request(
            "POST", url.copy_with(host=address), content=json.dumps(payload).encode(), headers=headers,
            timeout=timeout, extensions={"sni_hostname": url.host},
        )  # fmt: skip
        response = await self.http.send(request, stream=True)
        try:
            return response.status_code, await _read_limited(response, self.max_answer_bytes)
        finally:
            await response.aclose()
