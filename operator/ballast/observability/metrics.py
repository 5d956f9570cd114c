"""The operator's own Prometheus metrics."""

from __future__ import annotations

import contextlib
import threading

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from ballast.api.status import Phase

PHASES: tuple[Phase, ...] = ("Pending", "Progressing", "Paused", "Promoting", "Stable", "RolledBack", "Failed")

phase = Gauge(
    "ballast_modeldeployment_phase", "1 for the phase a ModelDeployment is in.", ["namespace", "name", "phase"]
)
weight = Gauge("ballast_modeldeployment_weight_percent", "Traffic share per backend.", ["namespace", "name", "backend"])
decisions = Counter("ballast_decisions", "Automatic and manual decisions.", ["namespace", "name", "action"])
kill_switch = Gauge(
    "ballast_kill_switch_engaged", "1 while users of a ModelDeployment get a fallback.", ["namespace", "name"]
)
reconcile_seconds = Histogram(
    "ballast_reconcile_duration_seconds",
    "Wall time of one reconcile (observe, decide, act).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
webhook_calls = Counter("ballast_webhook_calls", "Webhook calls by type and outcome.", ["type", "outcome"])
leader = Gauge("ballast_leader", "1 while this replica holds the lease and writes; 0 on a standby.")
reconcile_errors = Counter(
    "ballast_reconcile_errors", "Reconciles that failed and will be retried.", ["namespace", "name"]
)
threads = Gauge("ballast_threads", "Live threads of the operator process.")
threads.set_function(threading.active_count)
executor_workers = Gauge("ballast_executor_workers", "Threads the event loop's default executor may run at once.")
executor_running = Gauge("ballast_executor_jobs_running", "Calls running on the default executor's threads now.")
executor_waiting = Gauge("ballast_executor_jobs_waiting", "Calls waiting for a free executor thread.")
executor_oldest_job = Gauge(
    "ballast_executor_oldest_job_seconds", "How long the longest-running call on an executor thread has run."
)


def record_state(
    namespace: str, name: str, current: Phase, stable: int, canary: int, fallback: int, killed: bool
) -> None:
    kill_switch.labels(namespace, name).set(1 if killed else 0)
    for candidate in PHASES:
        phase.labels(namespace, name, candidate).set(1 if candidate == current else 0)
    for backend, value in (("stable", stable), ("canary", canary), ("fallback", fallback)):
        weight.labels(namespace, name, backend).set(value)


# Every metric with series per ModelDeployment, and its labels after namespace and name.
PER_DEPLOYMENT: tuple[tuple[MetricWrapperBase, tuple[str, ...]], ...] = (
    (kill_switch, ()),
    (phase, ("phase",)),
    (weight, ("backend",)),
    (decisions, ("action",)),
    (reconcile_errors, ()),
)


def forget(namespace: str, name: str) -> None:
    """Drop every series of a deleted ModelDeployment (gauges, and counters such as its decisions and errors)."""
    for metric, rest in PER_DEPLOYMENT:
        found = {
            tuple(sample.labels[label] for label in rest)
            for family in metric.collect()
            for sample in family.samples
            if (sample.labels.get("namespace"), sample.labels.get("name")) == (namespace, name)
        }
        for values in found:
            with contextlib.suppress(KeyError):
                metric.remove(namespace, name, *values)
