"""The switch lane: a deployment a kill switch is waiting for sends its API calls ahead of routine reconciles.

A switch event marks the deployments it selects as waiting (`request`). Until the route of one of them
is written, every call made for it (the reconcile that carries the switch, and a routine one still under way
for the same deployment, which the switch must wait for) goes through the API client's switch lane, whose
in-flight slots routine work never holds. Once the route is written (`route_written`) the rest of that pass
(status, Events, workloads) goes back to the routine lane, so the switch lane carries routes, not paperwork.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import TypeVar

from ballast.kube.client import IN_SWITCH_LANE

Key = tuple[str, str]
T = TypeVar("T")


class SwitchLane:
    def __init__(self) -> None:
        self.requests: dict[Key, int] = {}  # per waiting deployment: the number of the latest switch request
        self.counter = 0

    def request(self, key: Key) -> None:
        """A switch wants this deployment's route: its calls go in the switch lane until the route is written."""
        self.counter += 1
        self.requests[key] = self.counter

    def waiting(self, key: Key) -> bool:
        return key in self.requests

    def claim(self, key: Key) -> int | None:
        """A pass of `key` starts: the request it carries (None: nothing waits), for `route_written`."""
        return self.requests.get(key)

    def route_written(self, key: Key, claimed: int | None) -> None:
        """The pass that claimed `claimed` wrote the route; a request that came after it keeps waiting."""
        if claimed is not None and self.requests.get(key) == claimed:
            del self.requests[key]

    def forget(self, key: Key) -> None:
        self.requests.pop(key, None)

    def bind(self, key: Key) -> contextvars.Token[Callable[[], bool]]:
        """Route the current task's API calls by whether a switch waits for `key`, asked at each call."""
        return IN_SWITCH_LANE.set(lambda: key in self.requests)

    @staticmethod
    def unbind(token: contextvars.Token[Callable[[], bool]]) -> None:
        IN_SWITCH_LANE.reset(token)
