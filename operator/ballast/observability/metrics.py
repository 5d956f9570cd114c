"""The operator's own Prometheus metrics."""

from __future__ import annotations

import contextlib
import threading

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from ballast.api.modeldeployment import Objective
from ballast.api.status import Analysis, BudgetStatus, BurnReading, Phase

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
burn_rate = Gauge(
    "ballast_burn_rate",
    "The stable revision's error-budget burn rate per window of contract.afterPromotion (last check).",
    ["namespace", "name", "window"],
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
reconcile_lag = Gauge(
    "ballast_reconcile_lag_seconds", "How long the oldest reconcile asked for has waited to start (0: none waits)."
)
provider_up = Gauge(
    "ballast_metrics_provider_up",
    "1 while the metrics provider answers the operator's probe, 0 while not; no series before the first probe.",
    ["provider"],
)
provider_failures = Counter(
    "ballast_metrics_provider_probe_failures", "Probes of the metrics provider that failed.", ["provider"]
)
info = Gauge(
    "ballast_modeldeployment_info",
    "1 per ModelDeployment; `owner` is its spec.owner.team (else its ballast.dev/owner label), whom its alerts page.",
    ["namespace", "name", "owner"],
)
kill_switch_since = Gauge(
    "ballast_kill_switch_engaged_since_timestamp_seconds",
    "When users of a ModelDeployment were moved to a fallback (Unix time); no series while not engaged.",
    ["namespace", "name"],
)
objective_value = Gauge(
    "ballast_objective_value",
    "An objective's value in the last contract check, per revision measured (canary, and stable when compared).",
    ["namespace", "name", "objective", "revision"],
)
objective_bound = Gauge(
    "ballast_objective_bound",
    "An objective's bound in the last contract check: max, min, or relative (the factor times the stable value).",
    ["namespace", "name", "objective", "kind"],
)

OWNER_LABEL = "ballast.dev/owner"
# Decisions that alert: their series exist at 0 from the first reconcile, so the first one is an increase.
ALERTED_ACTIONS = ("rollback",)

usage_tokens = Gauge(
    "ballast_usage_tokens_per_minute", "Prompt plus completion tokens per minute per revision, over the budget window.",
    ["namespace", "name", "revision"],
)  # fmt: skip
usage_cost = Gauge(
    "ballast_usage_cost_per_hour", "Spend per hour per revision, in the budget's currency.",
    ["namespace", "name", "revision", "currency"],
)  # fmt: skip
usage_cost_per_request = Gauge(
    "ballast_usage_cost_per_request", "Spend per successful request per revision, in the budget's currency.",
    ["namespace", "name", "revision", "currency"],
)  # fmt: skip
budget_used = Gauge(
    "ballast_budget_used_percent", "Use counted against the budget, as a percent of the tightest budget.",
    ["namespace", "name"],
)  # fmt: skip
budget_exceeded = Gauge("ballast_budget_exceeded", "1 while a budget is exceeded.", ["namespace", "name"])
budget_projected = Gauge(
    "ballast_budget_projected_cost_per_hour", "Spend per hour of the current split at the current request rate.",
    ["namespace", "name", "currency"],
)  # fmt: skip


# The budget series last set per deployment, so a revision no longer measured loses its series.
_budget_series: dict[tuple[str, str], set[tuple[Gauge, tuple[str, ...]]]] = {}


def record_budget(namespace: str, name: str, budget: BudgetStatus | None) -> None:
    """The budget figures of status as gauges; series of revisions no longer measured go."""
    wanted: dict[tuple[Gauge, tuple[str, ...]], float] = {}
    if budget is not None and budget.measured_at is not None:
        currency = budget.currency or ""
        for row in budget.revisions:
            wanted[(usage_tokens, (row.revision,))] = row.tokens_per_minute
            if row.cost_per_hour is not None:
                wanted[(usage_cost, (row.revision, currency))] = float(row.cost_per_hour)
            if row.cost_per_request is not None:
                wanted[(usage_cost_per_request, (row.revision, currency))] = float(row.cost_per_request)
        if budget.used_percent is not None:
            wanted[(budget_used, ())] = budget.used_percent
        wanted[(budget_exceeded, ())] = 1 if budget.exceeded else 0
        if budget.projected_cost_per_hour is not None:
            wanted[(budget_projected, (currency,))] = float(budget.projected_cost_per_hour)
    for (gauge, labels), value in wanted.items():
        gauge.labels(namespace, name, *labels).set(value)
    for gauge, labels in _budget_series.pop((namespace, name), set()) - set(wanted):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name, *labels)
    if wanted:
        _budget_series[(namespace, name)] = set(wanted)


def record_state(
    namespace: str,
    name: str,
    current: Phase,
    stable: int,
    canary: int,
    fallback: int,
    killed: bool,
    killed_since: float | None = None,
) -> None:
    kill_switch.labels(namespace, name).set(1 if killed else 0)
    if killed and killed_since is not None:
        kill_switch_since.labels(namespace, name).set(killed_since)
    else:
        with contextlib.suppress(KeyError):
            kill_switch_since.remove(namespace, name)
    for action in ALERTED_ACTIONS:
        decisions.labels(namespace, name, action)
    reconcile_errors.labels(namespace, name)  # at 0: the first failure is an increase too
    for candidate in PHASES:
        phase.labels(namespace, name, candidate).set(1 if candidate == current else 0)
    for backend, value in (("stable", stable), ("canary", canary), ("fallback", fallback)):
        weight.labels(namespace, name, backend).set(value)


def record_burn(namespace: str, name: str, reading: BurnReading) -> None:
    for pair in reading.windows:
        for window, value in ((pair.long, pair.long_burn), (pair.short, pair.short_burn)):
            if value is not None:
                burn_rate.labels(namespace, name, window).set(value)


def record_owner(namespace: str, name: str, owner: str) -> None:
    """The one info series of a deployment, naming whom its alerts page (a changed owner replaces it)."""
    _replace(info, namespace, name, {(owner,): 1.0})


def _bounds(objective: Objective) -> dict[str, float]:
    kinds = {"max": objective.max, "min": objective.min, "relative": objective.relative_to_stable}
    return {kind: bound for kind, bound in kinds.items() if bound is not None}


def record_analysis(
    namespace: str, name: str, analysis: Analysis | None, stable: str | None, objectives: list[Objective]
) -> None:
    """Each objective's values (canary, and stable when measured) and bounds in the last check; series of
    objectives or revisions no longer there go. A relative bound is exported as the limit it set."""
    bounds = {objective.name: _bounds(objective) for objective in objectives}
    values: dict[tuple[str, ...], float] = {}
    limits: dict[tuple[str, ...], float] = {}
    for result in analysis.objectives if analysis is not None else ():
        assert analysis is not None
        if result.value is not None:
            values[(result.name, analysis.revision)] = result.value
        if result.stable_value is not None and stable:
            values[(result.name, stable)] = result.stable_value
        for kind, bound in bounds.get(result.name, {}).items():
            if kind != "relative":
                limits[(result.name, kind)] = bound
            elif result.stable_value is not None:
                limits[(result.name, kind)] = bound * result.stable_value
    _replace(objective_value, namespace, name, values)
    _replace(objective_bound, namespace, name, limits)


def _replace(metric: Gauge, namespace: str, name: str, wanted: dict[tuple[str, ...], float]) -> None:
    """Make a deployment's series of `metric` exactly `wanted` (labels after namespace and name -> value)."""
    for family in metric.collect():
        for sample in family.samples:
            labels = tuple(v for k, v in sample.labels.items() if k not in ("namespace", "name"))
            if (sample.labels["namespace"], sample.labels["name"]) == (namespace, name) and labels not in wanted:
                with contextlib.suppress(KeyError):
                    metric.remove(namespace, name, *labels)
    for labels, value in wanted.items():
        metric.labels(namespace, name, *labels).set(value)


# Every metric with series per ModelDeployment, and its labels after namespace and name.
PER_DEPLOYMENT: tuple[tuple[MetricWrapperBase, tuple[str, ...]], ...] = (
    (kill_switch, ()),
    (kill_switch_since, ()),
    (info, ("owner",)),
    (objective_value, ("objective", "revision")),
    (objective_bound, ("objective", "kind")),
    (phase, ("phase",)),
    (weight, ("backend",)),
    (decisions, ("action",)),
    (reconcile_errors, ()),
    (usage_tokens, ("revision",)),
    (usage_cost, ("revision", "currency")),
    (usage_cost_per_request, ("revision", "currency")),
    (budget_used, ()),
    (budget_exceeded, ()),
    (budget_projected, ("currency",)),
    (burn_rate, ("window",)),
)


def forget(namespace: str, name: str) -> None:
    """Drop every series of a deleted ModelDeployment (gauges, and counters such as its decisions and errors)."""
    _budget_series.pop((namespace, name), None)
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


def forget_all() -> None:
    """A standby exports no deployment's state: only the leader's series say what is true now."""
    for metric, _ in PER_DEPLOYMENT:
        metric.clear()
