"""The demo's scenario on the session's stack: what `ballast dev demo` shows must keep being true."""

from __future__ import annotations

from ballast.devstack.cluster import Cluster
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.demo import Scenario
from ballast.devstack.operator_process import Operator


def test_the_demo_walks_a_canary_a_kill_switch_and_a_rollback(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    lines: list[str] = []
    Scenario(cluster, data_plane, namespace, lines.append).run()
    told = "\n".join(lines)
    assert "is Stable" in told
    for step in ("at 25%", "at 50%", "at 100%"):
        assert step in told, told
    assert "promoted:" in told, told
    assert "users at fallback rules" in told, told
    assert "users back at the model" in told, told
    rollback = next(line for line in lines if "RolledBack:" in line)
    assert "error-rate" in rollback, told
