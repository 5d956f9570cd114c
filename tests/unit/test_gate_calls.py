"""Gate calls through the reconciler: a due gate is called after the status write that made it due, its answer
decides the next reconcile, and a notification that hangs holds no reconcile."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from ballast.hooks.caller import WebhookCaller
from ballast.hooks.outbound import OutboundPolicy
from ballast.rollout.check_scope import began_in
from tests.unit.test_reconciler import KEY, NAME, NS, Build, build, held_spec
from tests.unit.test_rollout_core import check

__all__ = ["build"]  # the fixture, shared with the reconciler's tests


async def public(host: str, port: int) -> list[str]:
    return ["203.0.113.7"]


def answering(code: int, calls: list[httpx.Request], hang_paths: tuple[str, ...] = ()) -> WebhookCaller:
    async def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if request.url.path in hang_paths:
            await asyncio.sleep(3600)
        return httpx.Response(code, json={"message": "not today"})

    return WebhookCaller(OutboundPolicy(public), None, httpx.MockTransport(answer))


async def settle(world: Any) -> None:
    for _ in range(200):
        await asyncio.sleep(0)
        busy = [*world.reconciler.runner.tasks, *world.reconciler.checks.running.values(),
                *(t for (key, slot), t in world.reconciler.gates.running.items() if "/" not in slot)]  # fmt: skip
        if not busy:
            return
        await asyncio.wait(busy, timeout=5)
    raise AssertionError("the reconciler never settled")


def gated_spec(*hooks: dict[str, Any]) -> dict[str, Any]:
    spec = held_spec()
    spec["rollout"]["webhooks"] = list(hooks)
    return spec


async def test_a_rollout_gate_is_called_after_the_write_that_made_it_due_and_its_refusal_rolls_back(
    build: Build,
) -> None:
    calls: list[httpx.Request] = []
    world = build(gated_spec({"name": "load", "type": "rollout", "url": "https://gate.example.com/load"}))
    world.reconciler.gates.caller = answering(403, calls)
    checks = world.reconciler.checks
    checks.verdicts[KEY] = began_in(check("Passed", 0.01, revision=world.canary), world.held)
    checks.last_check[KEY] = world.now[0]
    world.reconciler.notify(NS, NAME)
    await settle(world)
    assert [r.url.path for r in calls] == ["/load"]
    status = world.api.status()
    assert status.phase == "RolledBack"
    assert (status.gates[0].outcome, status.gates[0].code) == ("Refused", 403)
    reasons = [e["reason"] for e in world.api.events]
    assert reasons[-1] == "GateRefused"


async def test_a_hanging_notification_holds_no_reconcile(build: Build) -> None:
    calls: list[httpx.Request] = []
    world = build(gated_spec({"name": "audit", "type": "event", "url": "https://audit.example.com/hang"}))
    world.reconciler.gates.caller = answering(200, calls, hang_paths=("/hang",))
    checks = world.reconciler.checks
    checks.verdicts[KEY] = began_in(check("Passed", 0.01, revision=world.canary), world.held)
    checks.last_check[KEY] = world.now[0]
    world.reconciler.notify(NS, NAME)
    await asyncio.wait_for(settle(world), 10)  # the reconcile finished though its notification hangs
    assert world.api.status().current_step == 1
    assert [r.url.path for r in calls] == ["/hang"]  # the step's event notification, still open
    assert any("/" in slot for _, slot in world.reconciler.gates.running)
