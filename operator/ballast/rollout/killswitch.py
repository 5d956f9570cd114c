"""The kill switch in the decision core: an overlay on the rollout, never a change of it.

While an engaged switch selects the deployment, users get a fallback (100% of every rule Ballast
owns) and the rollout freezes where it stands: no step advances, no check judges a canary that
serves nobody. `status.weights` then shows the split in force (the fallback) and
`status.killSwitch.resume` the rollout's own split, which is restored when the last switch lets go.

Once engaged, only a release returns users to the model. When every fallback becomes unusable the
switch holds: users stay on the fallback in force, else go to the reject responder, else to no
backend at all (the Gateway answers with an error), with a condition and an Event. A switch that no fallback
can honour before it engages leaves traffic as it is and says why.

With `killSwitch.stopPods` the model's pods stop once in-flight requests have drained; on release
they start again at the sizes they had, and users return only once the revisions they return to have
the ready replicas to carry their shares.
"""

from __future__ import annotations

from datetime import datetime

from ballast.api.modeldeployment import Fallback, ModelDeploymentSpec
from ballast.api.status import KillSwitchSource, ModelDeploymentStatus, ResumeState, Weights
from ballast.api.timestamps import parse_time
from ballast.api.types import Condition, parse_duration
from ballast.rollout.capacity import canary_replicas
from ballast.rollout.conditions import condition
from ballast.rollout.context import Context, split_values
from ballast.rollout.observations import Observations

MIRROR_UNSUPPORTED = "the Gateway cannot mirror requests (no HTTPRouteRequestMirror in its supported features)"
SERVICE_ROUTER = (
    "the service router splits one Service by replica ratio and cannot route to a fallback, so this deployment "
    "cannot be switched (use router: gateway-api with spec.fallbacks)"
)
NO_BACKEND = "the route names no backend, so the Gateway answers every request with an error (Traefik: 503)"


def requested(ctx: Context) -> bool:
    """Whether an engaged switch selects the deployment (the rollout freezes even if none can be honoured)."""
    return bool(ctx.observations.switches)


def _serving(ctx: Context, revision: str | None, share: int = 1) -> bool:
    """Whether a revision's ready replicas carry `share` percent (restarted pods come back one by one)."""
    ready = ctx.observations.of(revision).ready_replicas
    needed = 1 if ctx.spec.model.autoscaling else canary_replicas(ctx.spec.model.replicas, share, "weighted")
    return ready > 0 and ready >= needed


def _shares(ctx: Context) -> list[tuple[str, int]]:
    """The revisions users return to on release, with the share the rollout's split gives each."""
    s = ctx.status
    # Once the overlay is laid, the rollout's own split is the one it keeps to restore.
    weights = s.kill_switch.resume.weights if s.weights.fallback and s.kill_switch.resume else s.weights
    shares = ((s.stable_revision, weights.stable), (s.canary_revision, weights.canary))
    return [(revision, weight) for revision, weight in shares if revision and weight > 0]


def _returning_to(ctx: Context) -> list[str]:
    return [revision for revision, _ in _shares(ctx)]


def _restart_deadline(ctx: Context) -> datetime | None:
    state = ctx.status.kill_switch
    if state.released_at is None:
        return None
    return parse_time(state.released_at) + parse_duration(ctx.spec.rollout.progress_deadline)


def restarting(ctx: Context) -> bool:
    """Released, but the model's stopped pods are not serving yet: users wait on the fallback (at most
    `rollout.progressDeadline`, after which they return anyway and an Event says so)."""
    state = ctx.status.kill_switch
    if not state.engaged or not state.stopped or requested(ctx):
        return False
    deadline = _restart_deadline(ctx)
    if deadline is not None and ctx.now >= deadline:
        return False
    return not all(_serving(ctx, revision, share) for revision, share in _shares(ctx))


def frozen(ctx: Context) -> bool:
    """Whether the overlay holds user traffic in this decision, so the rollout's clocks stand still."""
    return requested(ctx) or restarting(ctx)


def begin(ctx: Context) -> None:
    """Before the rollout decides: its own split back in place (the overlay is laid again at the end), and a
    rollout the overlay just let go of wakes up with its step's pause restarted, since time without
    traffic proves nothing about the canary."""
    s, state = ctx.status, ctx.status.kill_switch
    if state.engaged and state.resume is not None:
        s.weights = state.resume.weights.model_copy()
    held = state.engaged or bool(state.sources)
    if held and not frozen(ctx) and s.canary_revision:
        s.step_started_at = ctx.now_text
        if s.scaling is not None:  # its deadline, like the step's clocks, stood still while users were away
            s.scaling = s.scaling.model_copy(update={"since": ctx.now_text})
        s.inconclusive_since = None
        s.inconclusive_checks = 0


def _ordered(spec: ModelDeploymentSpec) -> list[Fallback]:
    preferred = spec.kill_switch.fallback if spec.kill_switch else None
    return sorted(spec.fallbacks, key=lambda f: f.name != preferred)  # stable: the rest keep their order


def previous_revision_problem(status: ModelDeploymentStatus, observations: Observations) -> str:
    """Why the previous revision cannot take users now ('' when it can)."""
    previous = status.previous_revision
    if previous is None:
        return "there is no previous revision yet"
    if previous in status.after_promotion.rolled_back:
        return f"previous revision {previous} was rolled back for a burn-rate breach"
    kept = next((r for r in status.revisions if r.name == previous), None)
    if kept is None or kept.role != "previous":
        return f"previous revision {previous} is no longer kept warm (rollout.scaleDownDelay has passed)"
    if observations.of(previous).ready_replicas == 0:
        return f"previous revision {previous} has no ready pod"
    return ""


def choose_fallback(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, observations: Observations
) -> tuple[str | None, list[str]]:
    """The first usable fallback (the policy's choice first), and the problems of those skipped."""
    problems: list[str] = []
    for fallback in _ordered(spec):
        if fallback.previous_revision:
            problem = previous_revision_problem(status, observations)
        else:
            seen = observations.fallbacks.get(fallback.name)
            problem = "not observed yet" if seen is None else ("" if seen.usable else seen.problem)
        if not problem:
            return fallback.name, problems
        problems.append(f"{fallback.name}: {problem}")
    return None, problems


def _routable(ctx: Context, name: str | None) -> bool:
    """Whether the route can still name this fallback (declared, and a previous revision still kept)."""
    fallback = next((f for f in ctx.spec.fallbacks if f.name == name), None)
    if fallback is None:
        return False
    previous = ctx.status.previous_revision
    return not fallback.previous_revision or any(r.name == previous for r in ctx.status.revisions)


def hold_target(ctx: Context) -> tuple[bool, str | None]:
    """Where users go when no fallback is usable: (holds, fallback name or None for no backend).

    The fallback in force, else the reject responder, else (once engaged) no backend at all. A switch
    not yet engaged with no reject fallback does not hold: it refuses and leaves traffic as it is.
    """
    state = ctx.status.kill_switch
    if state.engaged and _routable(ctx, state.fallback):
        return True, state.fallback
    reject = next((f.name for f in ctx.spec.fallbacks if f.reject is not None), None)
    if reject is not None:
        return True, reject
    return state.engaged, None


def refusal(spec: ModelDeploymentSpec, problems: list[str]) -> tuple[str, str]:
    """The reason and the words for a switch that cannot engage."""
    if spec.traffic.router == "service":
        return "CannotSwitch", SERVICE_ROUTER
    return "NoUsableFallback", "; ".join(problems) or "spec.fallbacks is empty"


def _switch_names(ctx: Context) -> str:
    return ", ".join(
        f"{s.kind} {s.namespace + '/' if s.namespace else ''}{s.name} ({s.reason})" for s in ctx.observations.switches
    )


def _capture(ctx: Context) -> bool:
    policy = ctx.spec.kill_switch
    return bool(policy and policy.capture_traffic and ctx.observations.mirror_supported)


def _sources(ctx: Context, engaging: bool) -> list[KillSwitchSource]:
    """The switches holding the deployment. `since` is when each began to hold its users: the engagement for
    those present then, its arrival for a later one; unset while the switch cannot engage."""
    state = ctx.status.kill_switch
    before = {(s.kind, s.namespace, s.name): s.since for s in state.sources}

    def since(source: KillSwitchSource) -> str | None:
        if engaging:
            return ctx.now_text
        if not state.engaged:
            return None
        return before.get((source.kind, source.namespace, source.name)) or ctx.now_text

    return [source.model_copy(update={"since": since(source)}) for source in ctx.observations.switches]


def hold_text(fallback: str | None, problems: list[str], staying: bool) -> str:
    reasons = "; ".join(problems) or "spec.fallbacks is empty"
    if fallback is None:
        return f"no fallback can take users ({reasons}) and none is left to name: {NO_BACKEND}"
    where = f"users stay on {fallback}" if staying else f"users get {fallback} anyway"
    return f"no fallback can take users ({reasons}); the switch holds: {where}, never back on the model"


def settle(ctx: Context) -> None:
    """Lay the overlay, change its fallback, hold it, or release it; each is an Event and a history entry."""
    s, state = ctx.status, ctx.status.kill_switch
    if not requested(ctx):
        if restarting(ctx):
            _await_model(ctx)
            return
        if state.engaged:
            _release(ctx)
        state.sources, state.engaged, state.fallback, state.engaged_at = [], False, None, None
        state.resume, state.captured, state.holding, state.stopped, state.released_at = None, False, False, False, None
        return
    # Refused on the last reconcile of this episode already: the refusal is one decision, not one per reconcile.
    refused_before = bool(state.sources) and not state.engaged
    if not state.sources and not state.engaged:
        state.episode += 1
    state.released_at = None
    fallback, problems = choose_fallback(ctx.spec, s, ctx.observations)
    holding = fallback is None
    if holding:
        holds, fallback = hold_target(ctx)
        if not holds:
            _refuse(ctx, problems, refused_before)
            return
    engaging = not state.engaged
    rejoined = state.engaged and not state.sources  # requested again while the stopped model was restarting
    state.sources = _sources(ctx, engaging)
    stable = s.stable_revision
    capture = _capture(ctx)
    staying = state.engaged and fallback == state.fallback
    switched = split_values(Weights(stable=0, canary=0, fallback=100))
    if engaging:
        state.engaged, state.engaged_at = True, ctx.now_text
        wanted = ctx.spec.kill_switch is not None and ctx.spec.kill_switch.capture_traffic
        captured = (
            f"; the stable revision {stable} keeps receiving a mirror of every request"
            if capture
            else (f"; traffic is not captured: {MIRROR_UNSUPPORTED}" if wanted else "")
        )
        where = hold_text(fallback, problems, False) if holding else f"users get fallback {fallback}"
        ctx.record(
            "kill", "KillSwitchEngaged", f"Kill switch engaged by {_switch_names(ctx)}: {where}{captured}",
            revision=stable, warning=True, attempt=state.episode,
            values={**switched, "usableFallbacks": 0.0 if holding else 1.0},
        )  # fmt: skip
    elif rejoined:
        ctx.record(
            "kill", "KillSwitchEngaged",
            f"Kill switch engaged again by {_switch_names(ctx)} before users returned: they stay on "
            f"{fallback or 'no backend'}",
            revision=stable, warning=True, attempt=state.episode, values=switched,
        )  # fmt: skip
    elif not staying:
        before = state.fallback or "no backend"
        where = hold_text(fallback, problems, False) if holding else f"users get {fallback}"
        ctx.record(
            "kill-fallback", "FallbackChanged",
            f"Fallback {before} can no longer take users ({'; '.join(problems)}); {where}",
            revision=stable, warning=True, attempt=state.episode, values=switched,
        )  # fmt: skip
    elif holding and not state.holding:
        ctx.record(
            "kill-hold", "KillSwitchHolding", f"Kill switch holds: {hold_text(fallback, problems, True)}",
            revision=stable, warning=True, attempt=state.episode,
            values={**switched, "usableFallbacks": 0.0},
        )  # fmt: skip
    elif not holding and state.holding:
        ctx.record(
            "kill-recovered", "FallbackUsable", f"Fallback {fallback} can take users again",
            revision=stable, attempt=state.episode, values=switched,
        )  # fmt: skip
    state.fallback, state.captured, state.holding = fallback, capture, holding
    state.resume = ResumeState(phase=s.phase, step=s.current_step, weights=s.weights.model_copy())
    _stop_model(ctx)
    s.weights = Weights(stable=0, canary=0, fallback=100, fallback_name=fallback)
    held = f"holds users off the model on {fallback or 'no backend'}" if holding else f"users get fallback {fallback}"
    s.message = f"kill switch engaged: {held}" + ("; the model's pods are stopped" if state.stopped else "")


def _refuse(ctx: Context, problems: list[str], refused_before: bool) -> None:
    s, state = ctx.status, ctx.status.kill_switch
    state.sources = _sources(ctx, False)
    if refused_before:
        return
    reason, text = refusal(ctx.spec, problems)
    ctx.record(
        "kill-refused", reason,
        f"Kill switch requested by {_switch_names(ctx)} but no fallback can take users, so traffic is "
        f"unchanged: {text}",
        revision=s.stable_revision, warning=True, attempt=state.episode,
        values={**split_values(s.weights), "usableFallbacks": 0.0},
    )  # fmt: skip


def drain_time(spec: ModelDeploymentSpec) -> str:
    policy = spec.kill_switch
    return (policy.drain if policy else None) or spec.traffic.timeouts.request


def stop_due(ctx: Context) -> datetime | None:
    """When the model's pods stop (killSwitch.stopPods): the drain after users moved; None if not pending."""
    state, policy = ctx.status.kill_switch, ctx.spec.kill_switch
    if not (policy and policy.stop_pods and state.engaged and state.engaged_at and requested(ctx)):
        return None
    if state.stopped:
        return None
    return parse_time(state.engaged_at) + parse_duration(drain_time(ctx.spec))


def _model_revisions(ctx: Context) -> list[str]:
    """Revisions that are the model (stable, canary, a warm previous one unless it is a declared fallback)."""
    keeps_previous = any(f.previous_revision for f in ctx.spec.fallbacks)
    return [
        r.name
        for r in ctx.status.revisions
        if r.role in ("stable", "canary") or (r.role == "previous" and not keeps_previous)
    ]


def _stop_model(ctx: Context) -> None:
    state = ctx.status.kill_switch
    due = stop_due(ctx)
    if due is not None and ctx.now >= due:
        state.stopped = True
        stopped = ", ".join(_model_revisions(ctx))
        ctx.record(
            "kill-stop", "ModelStopped",
            f"Model pods stopped after draining in-flight requests for {drain_time(ctx.spec)}: {stopped} scaled to "
            "zero; they start again on release",
            revision=ctx.status.stable_revision, warning=True, attempt=state.episode,
            values={"drainSeconds": parse_duration(drain_time(ctx.spec)).total_seconds()},
        )  # fmt: skip
    if state.stopped:
        stopping = set(_model_revisions(ctx))
        for revision in ctx.status.revisions:
            if revision.name in stopping:
                revision.replicas = 0


def _await_model(ctx: Context) -> None:
    """Released with the model's pods stopped: they start again; users stay on the fallback until they serve."""
    s, state = ctx.status, ctx.status.kill_switch
    state.sources = []
    if state.released_at is None:
        state.released_at = ctx.now_text
        waiting = ", ".join(_returning_to(ctx))
        ctx.record(
            "release-wait", "KillSwitchReleasing",
            f"Kill switch released: the model's pods start again; users stay on {state.fallback or 'no backend'} "
            f"until {waiting} serve (at most {ctx.spec.rollout.progress_deadline})",
            revision=s.stable_revision, attempt=state.episode,
        )  # fmt: skip
    state.resume = ResumeState(phase=s.phase, step=s.current_step, weights=s.weights.model_copy())
    s.weights = Weights(stable=0, canary=0, fallback=100, fallback_name=state.fallback)
    s.message = f"kill switch released: users stay on {state.fallback or 'no backend'} until the model's pods serve"


def restart_due(ctx: Context) -> datetime | None:
    return _restart_deadline(ctx) if restarting(ctx) else None


def _release(ctx: Context) -> None:
    s = ctx.status
    weights = s.weights
    split = f"stable {s.stable_revision} {weights.stable}%"
    if s.canary_revision:
        split += f", canary {s.canary_revision} {weights.canary}%"
    late = [r for r, share in _shares(ctx) if not _serving(ctx, r, share)] if s.kill_switch.stopped else []
    s.message = f"kill switch released: {split}"
    message = f"Kill switch released: traffic restored to {split}"
    if late:
        message += f" although {', '.join(late)} did not serve within {ctx.spec.rollout.progress_deadline}"
    ctx.record(
        "release", "KillSwitchReleased", message,
        revision=s.stable_revision, attempt=s.kill_switch.episode, warning=bool(late),
        values=split_values(weights),
    )  # fmt: skip


def conditions(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, observations: Observations) -> list[Condition]:
    """KillSwitchEngaged always; FallbackAvailable when there are fallbacks, so a bad reference shows early."""
    state = status.kill_switch
    chosen, problems = choose_fallback(spec, status, observations)
    detail = "; ".join(problems)
    target = state.fallback or "no backend"
    if state.engaged and not state.sources:
        engaged = condition("KillSwitchEngaged", True, "Releasing", status.message)
    elif state.engaged and state.holding:
        engaged = condition("KillSwitchEngaged", True, "Holding", hold_text(state.fallback, problems, True))
    elif state.engaged:
        capture = "; traffic captured by a mirror to the stable revision" if state.captured else ""
        stopped = "; the model's pods are stopped" if state.stopped else ""
        engaged = condition("KillSwitchEngaged", True, "Engaged", f"users get fallback {target}{capture}{stopped}")
    elif observations.switches and observations.route_refused is not None:
        # The core moves nothing while the route is refused (rollout/refusals.py); the switch waits, and says so.
        engaged = condition(
            "KillSwitchEngaged", False, "RouteRefused",
            f"a switch selects it, but Ballast may not write the route, so traffic is unchanged: "
            f"{observations.route_refused.message}",
        )  # fmt: skip
    elif state.sources:
        engaged = condition("KillSwitchEngaged", False, *refusal(spec, problems))
    else:
        engaged = condition(
            "KillSwitchEngaged", False, "NotRequested", "no engaged KillSwitch or ClusterKillSwitch selects this"
        )
    if not spec.fallbacks:
        return [engaged]
    if chosen is None:
        return [engaged, condition("FallbackAvailable", False, "NoUsableFallback", detail)]
    message = f"a kill switch would route users to {chosen}" + (f" (skipping {detail})" if detail else "")
    return [engaged, condition("FallbackAvailable", True, "Usable", message)]
