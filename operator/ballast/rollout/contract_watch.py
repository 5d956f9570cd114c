"""The contract after promotion: a burn-rate breach of the stable revision alerts, rolls back or kills.

The shell reads every window pair of `contract.afterPromotion` for the stable revision
(`analysis/watch.py`) and hands the reading in; here it is judged and acted on. A pair counts only
once its short window lies after `status.afterPromotion.since` (promotion, the end of a rollback,
a kill-switch release), so the short window always measures the traffic users get now. A breach
acts once and stands until a reading is healthy again.

- `alert`: a Warning Event and a history entry with the numbers.
- `rollback`: the previous revision becomes stable again (scaled up if it was scaled down) and
  users move to it as its pods become ready; the breached revision is never promoted again
  automatically nor used as a fallback. Without a previous revision to return to (or one whose
  pods are refused) it engages the kill-switch policy when one is declared, else alerts, and says so.
- `killSwitch`: the shell creates a KillSwitch object (owned by the deployment, labelled with what
  engaged it, its reason carrying the numbers); a person releases it by deleting it.

While a canary rolls out the stable stays watched: a breach holds the canary at its step. While a
kill switch holds users off the model there is nothing to judge: the watch says so and resumes on
release.
"""

from __future__ import annotations

from ballast.api.status import BurnReading, BurnWindowReading, ContractRollback, OperatorSwitch, Weights
from ballast.api.timestamps import parse_time
from ballast.api.types import Condition, parse_duration
from ballast.rollout import killswitch
from ballast.rollout.conditions import condition
from ballast.rollout.context import Context, set_phase, significant

SWITCH_SUFFIX = "-burn-rate"


def switch_name(deployment: str) -> str:
    return f"{deployment[: 253 - len(SWITCH_SUFFIX)]}{SWITCH_SUFFIX}"


def _killed(ctx: Context) -> bool:
    return killswitch.requested(ctx) or ctx.status.kill_switch.engaged


def _ready(ctx: Context, pair: BurnWindowReading) -> bool:
    """Whether the pair's short window lies wholly after the watch began (its traffic is what users get now)."""
    since = ctx.status.after_promotion.since
    return since is None or ctx.now - parse_time(since) >= parse_duration(pair.short)


def _values(reading: BurnReading, pair: BurnWindowReading) -> dict[str, float]:
    numbers = {
        "longBurn": pair.long_burn,
        "shortBurn": pair.short_burn,
        "burnRate": pair.burn_rate,
        "longRatio": pair.long_ratio,
        "shortRatio": pair.short_ratio,
        "longWindowSeconds": parse_duration(pair.long).total_seconds(),
        "shortWindowSeconds": parse_duration(pair.short).total_seconds(),
        "target": reading.target,
    }
    return {k: float(v) for k, v in numbers.items() if v is not None}


def _describe(reading: BurnReading, pair: BurnWindowReading) -> str:
    return (
        f"{reading.objective} of revision {reading.revision} burns its error budget {pair.long_burn:.3g}x over "
        f"{pair.long} and {pair.short_burn:.3g}x over {pair.short}, both above {pair.burn_rate:g}x "
        f"(target {reading.target:g}, bad ratio {pair.long_ratio:.3g} over {pair.long}, "
        f"{pair.short_ratio:.3g} over {pair.short})"
    )


def _digest(reading: BurnReading | None) -> object:
    """What a person reads of a burn-rate check: its verdict, source and burn rates to two significant digits."""
    if reading is None:
        return None

    pairs = tuple(
        (p.long, p.short, significant(p.long_burn), significant(p.short_burn), p.breached) for p in reading.windows
    )
    return reading.revision, reading.verdict, reading.source, reading.reason, pairs


def begin(ctx: Context) -> None:
    """Before the rollout decides: the operator's own switch followed, the reading judged, a new breach acted on."""
    s, watch = ctx.status, ctx.spec.contract.after_promotion
    state = s.after_promotion
    _follow_switch(ctx)
    if watch is None:
        state.revision = state.since = None
        state.last, state.breached, state.rollback = None, False, None
        return
    if killswitch.requested(ctx):
        return  # no user traffic to judge
    if s.kill_switch.engaged or s.kill_switch.sources:
        state.since = ctx.now_text  # released (or the stopped model restarting): the watch resumes from here
        return
    reading = ctx.observations.burn
    if reading is None or reading.revision != s.stable_revision or state.rollback is not None:
        return
    if _digest(reading) != _digest(state.last):
        state.last = reading
    breaching = [p for p in reading.windows if p.breached and _ready(ctx, p)]
    if not breaching:
        if state.breached and reading.verdict == "Healthy":
            state.breached = False
            ctx.record(
                "burn-recovered", "BurnRateRecovered",
                f"{reading.objective} of revision {reading.revision} burns within every window pair again",
                revision=reading.revision,
                values={f"longBurn{i}": p.long_burn for i, p in enumerate(reading.windows) if p.long_burn is not None},
            )  # fmt: skip
        return
    if state.breached:
        return  # acted on already; the breach stands
    state.breached = True
    _act(ctx, reading, breaching[0])


def _act(ctx: Context, reading: BurnReading, pair: BurnWindowReading) -> None:
    watch = ctx.spec.contract.after_promotion
    assert watch is not None
    what, values = _describe(reading, pair), _values(reading, pair)
    if watch.action == "alert":
        _alert(ctx, what, values, "")
        return
    if watch.action == "killSwitch":
        _engage(ctx, what, values, "")
        return
    problem = _rollback_problem(ctx)
    if not problem:
        _start_rollback(ctx, what, values)
    elif ctx.spec.kill_switch is not None:
        _engage(ctx, what, values, f"; {problem}, so the kill-switch policy engages instead of a rollback")
    else:
        _alert(ctx, what, values, f"; {problem} and no kill-switch policy is declared, so this only alerts")


def _alert(ctx: Context, what: str, values: dict[str, float], why: str) -> None:
    ctx.record("burn-alert", "BurnRateBreached", f"Burn-rate breach: {what}{why}",
               revision=ctx.status.stable_revision, warning=True, values=values)  # fmt: skip


def _engage(ctx: Context, what: str, values: dict[str, float], why: str) -> None:
    name = switch_name(ctx.observations.deployment_name)
    reason = f"burn-rate breach: {what}"[:1024]
    ctx.status.after_promotion.switch = OperatorSwitch(name=name, reason=reason)
    ctx.record(
        "burn-kill", "BurnRateKillSwitch",
        f"Burn-rate breach: {what}{why}; KillSwitch {name} engages the kill switch (delete it to release)",
        revision=ctx.status.stable_revision, warning=True, values=values,
    )  # fmt: skip


def _rollback_problem(ctx: Context) -> str:
    """Why there is no revision to roll back to ('' when there is one)."""
    s = ctx.status
    previous = s.previous_revision
    if previous is None or not any(r.name == previous for r in s.revisions):
        return "there is no previous revision to roll back to"
    if previous in s.after_promotion.rolled_back:
        return f"previous revision {previous} was itself rolled back for a breach"
    refused = ctx.observations.of(previous).refused
    if refused:
        return f"the pods of previous revision {previous} cannot be scheduled: {refused}"
    return ""


def _start_rollback(ctx: Context, what: str, values: dict[str, float]) -> None:
    s, state = ctx.status, ctx.status.after_promotion
    bad, target, canary = s.stable_revision, s.previous_revision, s.canary_revision
    assert bad is not None
    assert target is not None
    withdrawn = ""
    for revision in s.revisions:
        if revision.name == target:
            revision.role, revision.retire_at = "stable", None
        elif revision.name == bad:
            revision.role, revision.retire_at = "canary", None  # serves what the target cannot take yet
        elif revision.name == canary:
            revision.role, revision.retire_at = "retired", None
            withdrawn = f"; canary {canary} is withdrawn with it"
    rolled_back = [bad, *([canary] if canary else [])]
    state.rolled_back = [r for r in state.rolled_back if r not in rolled_back][-30:] + rolled_back
    state.rollback = ContractRollback(revision=bad, to=target, since=ctx.now_text)
    s.stable_revision, s.canary_revision, s.previous_revision = target, bad, None
    s.current_step = s.step_started_at = s.mirror_revision = None
    s.weights = Weights(stable=0, canary=100)
    set_phase(ctx, "RolledBack", f"rolling back {bad} to {target} for a burn-rate breach")
    ctx.record(
        "burn-rollback", "BurnRateRollback",
        f"Burn-rate breach: {what}; rolling back to {target}: users move as its pods become ready{withdrawn}",
        revision=bad, warning=True, values=values,
    )  # fmt: skip


def holds_canary(ctx: Context) -> bool:
    """A breach of the stable stands: the canary holds at its step (an incident is no reason to promote)."""
    s = ctx.status
    if not s.after_promotion.breached:
        return False
    set_phase(ctx, s.phase, f"canary {s.canary_revision} holds: the stable revision breaches its burn-rate windows")
    return True


def refuses(ctx: Context, desired: str) -> bool:
    """A template that is a revision rolled back for a breach is not deployed again automatically."""
    if desired not in ctx.status.after_promotion.rolled_back:
        return False
    set_phase(ctx, "RolledBack", f"revision {desired} was rolled back for a burn-rate breach and is not deployed "
              "again automatically: change the template")  # fmt: skip
    return True


def settle(ctx: Context) -> None:
    """After the rollout decided: a rollback's users moved as the target becomes ready; the watch follows the
    stable revision."""
    s, state = ctx.status, ctx.status.after_promotion
    rollback = state.rollback
    if rollback is not None and (s.canary_revision != rollback.revision or s.stable_revision != rollback.to):
        state.rollback = rollback = None  # the template moved on: the rollout owns the traffic again
    if rollback is not None:
        _move_users(ctx, rollback)
    if ctx.spec.contract.after_promotion is not None and state.revision != s.stable_revision:
        state.revision, state.since, state.breached, state.last = s.stable_revision, ctx.now_text, False, None


def _move_users(ctx: Context, rollback: ContractRollback) -> None:
    s, state = ctx.status, ctx.status.after_promotion
    seen = ctx.observations.of(rollback.to)
    wanted = max(1, ctx.spec.model.replicas)
    share = 100 if seen.available and seen.ready_replicas >= wanted else min(99, 100 * seen.ready_replicas // wanted)
    s.weights = Weights(stable=share, canary=100 - share)
    if share < 100 and not rollback.overdue:
        _escalate_if_overdue(ctx, rollback, share)
    if share < 100:
        moved = f"{share}% of users moved ({seen.ready_replicas} ready)"
        s.message = f"rolling back {rollback.revision} to {rollback.to}: {moved}"
        return
    for revision in s.revisions:
        if revision.name == rollback.revision:
            revision.role = "retired"
    state.rollback = None
    state.revision, state.since, state.breached = rollback.to, ctx.now_text, False
    took = (ctx.now - parse_time(rollback.since)).total_seconds()
    set_phase(ctx, "RolledBack", f"rolled back {rollback.revision} for a burn-rate breach; {rollback.to} serves 100%")
    ctx.record(
        "burn-rollback-done", "RollbackComplete",
        f"Every user is back on {rollback.to} ({took:.1f}s after the rollback of {rollback.revision} began)",
        revision=rollback.to, values={"seconds": took, "readyReplicas": float(seen.ready_replicas)},
    )  # fmt: skip


def _escalate_if_overdue(ctx: Context, rollback: ContractRollback, share: int) -> None:
    """A rollback target that cannot serve everyone within rollout.progressDeadline (its pods do not schedule):
    the kill-switch policy engages when one is declared, else an alert; users keep moving as it becomes ready."""
    deadline = ctx.spec.rollout.progress_deadline
    if ctx.now - parse_time(rollback.since) < parse_duration(deadline):
        return
    rollback.overdue = True
    what = f"revision {rollback.to} serves {share}% of users {deadline} after the rollback of {rollback.revision} began"
    values = {"share": float(share), "deadlineSeconds": parse_duration(deadline).total_seconds()}
    if ctx.spec.kill_switch is not None:
        _engage(ctx, what, values, ", so the kill-switch policy engages")
    else:
        _alert(ctx, what, values, "; no kill-switch policy is declared, so this only alerts")


def _follow_switch(ctx: Context) -> None:
    """The watch's own KillSwitch: engaged once seen; deleted by a person, released and the watch resumes."""
    state = ctx.status.after_promotion
    own = state.switch
    if own is None:
        return
    seen = any(s.kind == "KillSwitch" and s.name == own.name for s in ctx.observations.switches)
    if seen and not own.engaged:
        own.engaged = True
    elif not seen and own.engaged:
        state.switch, state.breached, state.since = None, False, ctx.now_text
        ctx.record("burn-kill-released", "BurnRateKillSwitchReleased",
                   f"KillSwitch {own.name} was deleted: the burn-rate watch resumes on the traffic users get from now",
                   revision=ctx.status.stable_revision)  # fmt: skip


def conditions(ctx: Context) -> list[Condition]:
    """ContractWatch (what the watch sees) and RecordingRules (whether it reads Ballast's rules or raw counters)."""
    s, watch = ctx.status, ctx.spec.contract.after_promotion
    state = s.after_promotion
    if watch is None:
        return []
    last = state.last
    if _killed(ctx):
        found = condition("ContractWatch", False, "NoUserTraffic",
                          "a kill switch holds users off the model: the burn-rate watch has no user traffic to judge; "
                          "it resumes after release")  # fmt: skip
    elif state.rollback is not None:
        found = condition("ContractWatch", False, "RollingBack", s.message)
    elif last is None:
        found = Condition(type="ContractWatch", status="Unknown", reason="Waiting", message="no burn-rate check yet")
    elif state.breached:
        pairs = "; ".join(_describe(last, p) for p in last.windows if p.breached)
        found = condition("ContractWatch", False, "Breached", pairs or "the breach stands")
    elif last.verdict == "Error":
        found = condition("ContractWatch", False, "MetricsUnavailable", last.reason[:1000])
    elif last.verdict == "NoData":
        found = Condition(type="ContractWatch", status="Unknown", reason="NoData", message=last.reason)
    else:
        burns = ", ".join(f"{p.long_burn:.3g}x/{p.short_burn:.3g}x over {p.long}/{p.short} (max {p.burn_rate:g}x)"
                          for p in last.windows if p.long_burn is not None and p.short_burn is not None)  # fmt: skip
        found = condition("ContractWatch", True, "Healthy", f"revision {last.revision} burns {burns}")
    if last is None:
        return [found]
    loaded = last.source == "recorded"
    rules = condition(
        "RecordingRules", loaded, "Loaded" if loaded else "RawQueries",
        "the burn-rate watch reads Ballast's recording rules" if loaded else
        "Ballast's recording rules are not loaded in Prometheus (`ballast rules` prints them): each window is a raw "
        "query over the counters",
    )  # fmt: skip
    return [found, rules]
