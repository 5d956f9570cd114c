"""Webhook calls beside the reconcile, never inside it: a gate that hangs holds its canary, not the operator.

After each status write the reconciler hands over what it wrote: the gate entries due then
(`rollout/gates.py` `due_calls`) are called, one call per gate at a time, and the history entries
just recorded are announced to the notifications (`event` for each, `post-rollout` for a promotion,
`rollback` for a rollback), which nothing waits for. A finished call keeps its result, bound to the
point it was made for, and asks for a reconcile; the result is dropped once the status write that
carries it succeeds. Memory only: a restarted operator finds the gates still Pending in status and
calls them again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from ballast.api.modeldeployment import ModelDeploymentSpec, Webhook
from ballast.api.status import HistoryEntry, ModelDeploymentStatus
from ballast.api.timestamps import format_time
from ballast.hooks.caller import CallResult, WebhookCaller
from ballast.hooks.payload import webhook_payload
from ballast.observability import metrics
from ballast.rollout.gates import due_calls
from ballast.rollout.observations import GateResult

log = logging.getLogger("ballast.gates")
Key = tuple[str, str]
NOTIFIED_BY = {"promote": "post-rollout", "rollback": "rollback"}


class GateCalls:
    def __init__(
        self, caller: WebhookCaller | None, notify: Callable[[str, str], None], clock: Callable[[], datetime]
    ) -> None:
        self.caller = caller
        self.notify = notify
        self.clock = clock
        self.running: dict[tuple[Key, str], asyncio.Task[None]] = {}
        self.finished: dict[Key, dict[str, GateResult]] = {}

    def results(self, key: Key) -> dict[str, GateResult]:
        """Finished calls for the next decision; each stays until `written`."""
        return dict(self.finished.get(key, {}))

    def written(self, key: Key, handed: dict[str, GateResult]) -> None:
        kept = self.finished.get(key, {})
        for name, result in handed.items():
            if kept.get(name) is result:
                del kept[name]
        if not kept:
            self.finished.pop(key, None)

    def track(self, key: Key, md: dict[str, Any], spec: ModelDeploymentSpec, status: ModelDeploymentStatus,
              now: datetime) -> None:  # fmt: skip
        """After a status write: call every gate due in it."""
        hooks = {w.name: w for w in spec.rollout.webhooks}
        for entry in due_calls(status, now):
            hook = hooks.get(entry.name)
            if hook is None or (key, hook.name) in self.running:
                continue
            payload = webhook_payload(md, spec, status, hook, entry.step)
            self._start(key, hook, payload, entry.revision, entry.step)

    def announce(self, key: Key, md: dict[str, Any], spec: ModelDeploymentSpec, status: ModelDeploymentStatus,
                 history: Sequence[HistoryEntry]) -> None:  # fmt: skip
        """Tell the notifications about the decisions just written; nothing waits for them."""
        for entry in history:
            kinds = {"event", NOTIFIED_BY.get(entry.action, "event")}
            for hook in spec.rollout.webhooks:
                if hook.type in kinds:
                    payload = webhook_payload(md, spec, status, hook, entry.step, entry)
                    self._start(key, hook, payload, entry.revision, entry.step, task_name=f"{hook.name}/{entry.id}")

    def _start(self, key: Key, hook: Webhook, payload: dict[str, Any], revision: str | None, step: int | None,
               task_name: str | None = None) -> None:  # fmt: skip
        slot = (key, task_name or hook.name)
        task = asyncio.get_running_loop().create_task(self._call(key, hook, payload, revision, step))
        self.running[slot] = task
        task.add_done_callback(lambda done: self.running.pop(slot, None) if self.running.get(slot) is done else None)

    async def _call(self, key: Key, hook: Webhook, payload: dict[str, Any], revision: str | None,
                    step: int | None) -> None:  # fmt: skip
        if self.caller is None:
            outcome = CallResult("Error", message="webhooks are not configured in this operator")
        else:
            try:
                outcome = await self.caller.call(hook, payload)
            except Exception as error:  # whatever stops a call is the gate failing to answer: it holds, not crashes
                log.exception("webhook %s of %s/%s could not be called", hook.name, *key)
                outcome = CallResult("Error", message=f"the call could not be made: {error}")
        metrics.webhook_calls.labels(hook.type, outcome.outcome).inc()
        self.finished.setdefault(key, {})[hook.name] = GateResult(
            name=hook.name, type=hook.type, revision=revision, step=step, outcome=outcome.outcome,
            at=format_time(self.clock()), code=outcome.code, latency_seconds=outcome.latency_seconds,
            scores=outcome.scores, message=outcome.message,
        )  # fmt: skip
        self.notify(*key)

    def forget(self, key: Key) -> None:
        self.finished.pop(key, None)
        for slot in [s for s in self.running if s[0] == key]:
            self.running.pop(slot).cancel()

    def forget_all(self) -> None:
        """Standing by: no call runs, and no answer of an earlier term is handed on."""
        self.finished.clear()
        for task in self.running.values():
            task.cancel()
        self.running.clear()

    async def stop(self) -> None:
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.caller is not None:
            await self.caller.close()
