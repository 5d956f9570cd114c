"""Usage and cost on real traffic: tokens counted by the model servers, scraped by Prometheus, priced in status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ballast.api.timestamps import parse_time
from ballast.devstack import loadgen
from ballast.devstack.cluster import Cluster, wait_until
from ballast.devstack.dataplane import DataPlane
from ballast.devstack.operator_process import Operator
from tests.e2e.helpers import apply, model_deployment, wait_status
from tests.e2e.test_analysis import analysed, outcome_under_load, rolled_back

PROMPT, COMPLETION = "0.0005", "0.0015"  # per 1k tokens
COST = {"perHour": "50", "currency": "EUR", "per1kPromptTokens": PROMPT, "per1kCompletionTokens": COMPLETION}
# Prompts of different lengths, so prompt tokens are not one number times the request count.
PROMPTS = ["Say hello.", "Summarise the refund policy for a customer in two sentences, politely.",
           "What is the capital of France?"]  # fmt: skip
TOLERANCE = 0.05


def budgeted(name: str, namespace: str) -> dict[str, Any]:
    manifest = model_deployment(name, namespace, latency="0.02")
    manifest["spec"]["model"]["env"].append({"name": "SIM_COMPLETION_TOKENS", "value": "24"})
    # 240 answers of about 30 tokens in a minute's window: about 7400 tokens a minute, over this budget.
    manifest["spec"]["budgets"] = {"tokensPerMinute": 5000, "window": "1m", "cost": COST}
    return manifest


def test_tokens_and_cost_in_status_match_the_usage_the_load_generator_received(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    apply(cluster, budgeted("metered", namespace))
    stable = wait_status(cluster, namespace, "metered", "Stable", lambda s: s.get("phase") == "Stable")[
        "stableRevision"
    ]
    # Both pods' counters scraped at zero for a whole window before the first request, as for pods that have
    # served a while: increase() extrapolates to the window's edges, over-counting a series younger than its window.
    scraped = f'count_over_time(vllm:prompt_tokens_total{{namespace="{namespace}",revision="{stable}"}}[1m])'
    wait_until(lambda: [float(r["value"][1]) >= 58 for r in data_plane.query(scraped)] == [True, True], 90,
               "both pods' token counters scraped for a whole window")  # fmt: skip
    host = f"metered.{namespace}.test"
    url = f"{data_plane.gateway_url}/v1/chat/completions"
    report = loadgen.LoadReport()
    for index in range(3):  # 80 requests of each prompt, 240 in all
        body = {"model": "sim-model", "messages": [{"role": "user", "content": PROMPTS[index]}]}
        loadgen.run(url, total=80, rate=40, concurrency=16, host=host, body=body, report=report, max_seconds=30)
    answered = datetime.now(UTC)
    assert report.by_status[200] == 240, report.summary()
    sent_prompt, sent_completion = report.tokens()
    # A measurement begun two scrapes (1s each) after the last answer, its 1m window still holding the first.
    finished = wait_status(cluster, namespace, "metered", "a measurement after the load",
                           lambda s: _measured_after(s, answered + timedelta(seconds=3)), timeout=40)  # fmt: skip
    budget = finished["budget"]
    (row,) = budget["revisions"]
    measured_prompt, measured_completion = row["promptTokens"], row["completionTokens"]
    expected_cost = (
        (Decimal(sent_prompt) * Decimal(PROMPT) + Decimal(sent_completion) * Decimal(COMPLETION)) / 1000 * 60
    )
    print(f"load generator received {sent_prompt} prompt + {sent_completion} completion tokens in "
          f"{report.by_status[200]} answers; status: {measured_prompt:.1f} + {measured_completion:.1f} "
          f"({_off(measured_prompt, sent_prompt)}, {_off(measured_completion, sent_completion)}); cost "
          f"{budget['costPerHour']} {budget['currency']}/h, from the answers {expected_cost:.4f} "
          f"({_off(float(budget['costPerHour']), float(expected_cost))})")  # fmt: skip
    assert abs(measured_prompt - sent_prompt) <= TOLERANCE * sent_prompt
    assert abs(measured_completion - sent_completion) <= TOLERANCE * sent_completion
    assert abs(Decimal(budget["costPerHour"]) - expected_cost) <= Decimal(TOLERANCE) * expected_cost
    assert (budget["currency"], budget["pricing"], budget["costPerHourBudget"]) == ("EUR", "per-token", "50")
    assert budget["tokensPerMinute"] == round(measured_prompt + measured_completion, 3)  # a 1m window
    assert row["successfulRequests"] >= 240 * (1 - TOLERANCE)
    assert row["costPerRequest"] is not None
    assert finished["budget"]["exceeded"]
    assert [h["action"] for h in finished["history"]][-1] == "budget-exceeded"
    wait_until(lambda: "tokens per minute of 5000" in cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=BudgetExceeded", "-o",
        "jsonpath={.items[*].message}").stdout, 10, "the BudgetExceeded Event")  # fmt: skip
    conditions = {c["type"]: c for c in finished["conditions"]}
    assert conditions["UsageMeasured"]["status"] == "True"
    assert (conditions["BudgetActionActive"]["status"], conditions["BudgetActionActive"]["reason"]) == (
        "True", "AlertOnly")  # fmt: skip


def _measured_after(status: dict[str, Any], since: datetime) -> bool:
    measured = (status.get("budget") or {}).get("measuredAt")
    return measured is not None and parse_time(measured) >= since


def _off(measured: float, sent: float) -> str:
    return f"{(measured - sent) / sent * 100:+.1f}%" if sent else "n/a"


def test_a_canary_with_longer_answers_fails_a_relative_cost_per_request_objective_and_is_rolled_back(
    cluster: Cluster, data_plane: DataPlane, operator: Operator, namespace: str
) -> None:
    objective = {"name": "cost-per-answer", "preset": "cost-per-request", "relativeToStable": 1.4}
    env = {"SIM_LATENCY": "0.02", "SIM_COMPLETION_TOKENS": "16"}
    manifest = analysed("pricier", namespace, [objective], env)
    manifest["spec"]["budgets"] = {"cost": COST, "window": "1m"}
    # Same latency, same errors: only the answers are longer (32 tokens instead of 16).
    stable, rolled = outcome_under_load(cluster, data_plane, manifest, {**env, "SIM_COMPLETION_TOKENS": "32"},
                                        rolled_back)  # fmt: skip
    assert rolled["stableRevision"] == stable
    assert rolled["weights"]["stable"] == 100
    last = rolled["history"][-1]
    assert last["reason"] == "AnalysisFailed"
    assert "cost-per-answer" in last["message"]
    (cost,) = rolled["lastAnalysis"]["objectives"]
    print(f"rolled back: {last['message']}; canary {cost['value']:.6g} EUR per answer, stable "
          f"{cost['stableValue']:.6g}")  # fmt: skip
    assert cost["value"] > 1.4 * cost["stableValue"]
    assert cost["verdict"] == "Failed"
