"""The kill switch in the decision core: an overlay on the rollout, never a change of it.

While an engaged switch selects the deployment, users get a fallback (100% of the route) and the
rollout freezes where it stands: no step advances, no check judges a canary that serves nobody.
`status.weights` then shows the split in force (the fallback) and `status.killSwitch.resume` the
rollout's own split, which is restored when the last switch lets go. A switch that no fallback can
honour leaves traffic as it is and says why.
"""

from __future__ import annotations

from ballast.api.modeldeployment import Fallback, ModelDeploymentSpec
from ballast.api.status import ModelDeploymentStatus, ResumeState, Weights
from ballast.api.types import Condition
from ballast.rollout.conditions import condition
from ballast.rollout.context import Context
from ballast.rollout.observations import Observations

MIRROR_UNSUPPORTED = "the Gateway cannot mirror requests (no HTTPRouteRequestMirror in its supported features)"


def requested(ctx: Context) -> bool:
    """Whether an engaged switch selects the deployment (the rollout freezes even if none can be honoured)."""
    return bool(ctx.observations.switches)


def begin(ctx: Context) -> None:
    """Before the rollout decides: its own split back in place (the overlay is laid again at the end), and a
    rollout the last switch just let go of wakes up with its step's pause restarted, since time without
    traffic proves nothing about the canary."""
    s, state = ctx.status, ctx.status.kill_switch
    if state.engaged and state.resume is not None:
        s.weights = state.resume.weights.model_copy()
    if state.sources and not requested(ctx) and s.canary_revision:
        s.step_started_at = ctx.now_text
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
    kept = next((r for r in status.revisions if r.name == previous), None)
    if kept is None or kept.role != "previous":
        return f"previous revision {previous} is no longer kept warm (rollout.scaleDownDelay has passed)"
    if not observations.of(previous).available:
        return f"previous revision {previous} is not Available"
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


def _switch_names(ctx: Context) -> str:
    return ", ".join(
        f"{s.kind} {s.namespace + '/' if s.namespace else ''}{s.name} ({s.reason})" for s in ctx.observations.switches
    )


def _capture(ctx: Context) -> bool:
    policy = ctx.spec.kill_switch
    return bool(policy and policy.capture_traffic and ctx.observations.mirror_supported)


def settle(ctx: Context) -> None:
    """Lay the overlay, change its fallback, or release it; each is an Event and a history entry."""
    s, state = ctx.status, ctx.status.kill_switch
    if not requested(ctx):
        if state.engaged:
            _release(ctx)
        state.sources, state.engaged, state.fallback, state.engaged_at = [], False, None, None
        state.resume, state.captured = None, False
        return
    # Refused on the last reconcile of this episode already: the refusal is one decision, not one per reconcile.
    refused_before = bool(state.sources) and not state.engaged
    if not state.sources:
        state.episode += 1
    state.sources = list(ctx.observations.switches)
    fallback, problems = choose_fallback(ctx.spec, s, ctx.observations)
    stable = s.stable_revision
    if fallback is None:
        if state.engaged:
            _release(ctx)
        state.engaged, state.fallback, state.engaged_at, state.resume, state.captured = False, None, None, None, False
        if refused_before:
            return
        reasons = "; ".join(problems) or "spec.fallbacks is empty"
        ctx.record(
            "kill-refused", "NoUsableFallback",
            f"Kill switch requested by {_switch_names(ctx)} but no fallback can take users, so traffic is "
            f"unchanged: {reasons}",
            revision=stable, warning=True, attempt=state.episode,
            values={"stableWeight": float(s.weights.stable), "canaryWeight": float(s.weights.canary),
                    "usableFallbacks": 0.0},
        )  # fmt: skip
        return
    capture = _capture(ctx)
    if not state.engaged:
        state.engaged, state.engaged_at = True, ctx.now_text
        wanted = ctx.spec.kill_switch is not None and ctx.spec.kill_switch.capture_traffic
        captured = (
            f"; the stable revision {stable} keeps receiving a mirror of every request"
            if capture
            else (f"; traffic is not captured: {MIRROR_UNSUPPORTED}" if wanted else "")
        )
        ctx.record(
            "kill", "KillSwitchEngaged",
            f"Kill switch engaged by {_switch_names(ctx)}: users get fallback {fallback}{captured}",
            revision=stable, warning=True, attempt=state.episode,
            values={"stableWeight": float(s.weights.stable), "canaryWeight": float(s.weights.canary),
                    "fallbackWeight": 100.0},
        )  # fmt: skip
    elif state.fallback != fallback:
        ctx.record(
            "kill-fallback", "FallbackChanged",
            f"Fallback {state.fallback} can no longer take users ({'; '.join(problems)}); users get {fallback}",
            revision=stable, warning=True, attempt=state.episode, values={"fallbackWeight": 100.0},
        )  # fmt: skip
    state.fallback, state.captured = fallback, capture
    state.resume = ResumeState(phase=s.phase, step=s.current_step, weights=s.weights.model_copy())
    s.weights = Weights(stable=0, canary=0, fallback=100, fallback_name=fallback)
    s.message = f"kill switch engaged: users get fallback {fallback}"


def _release(ctx: Context) -> None:
    s = ctx.status
    weights = s.weights
    split = f"stable {s.stable_revision} {weights.stable}%"
    if s.canary_revision:
        split += f", canary {s.canary_revision} {weights.canary}%"
    s.message = f"kill switch released: {split}"
    ctx.record(
        "release", "KillSwitchReleased", f"Kill switch released: traffic restored to {split}",
        revision=s.stable_revision, attempt=s.kill_switch.episode,
        values={"stableWeight": float(weights.stable), "canaryWeight": float(weights.canary)},
    )  # fmt: skip


def conditions(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, observations: Observations) -> list[Condition]:
    """KillSwitchEngaged always; FallbackAvailable when there are fallbacks, so a bad reference shows early."""
    state = status.kill_switch
    chosen, problems = choose_fallback(spec, status, observations)
    detail = "; ".join(problems)
    if state.engaged:
        capture = "; traffic captured by a mirror to the stable revision" if state.captured else ""
        engaged = condition("KillSwitchEngaged", True, "Engaged", f"users get fallback {state.fallback}{capture}")
    elif state.sources:
        engaged = condition("KillSwitchEngaged", False, "NoUsableFallback", detail or "spec.fallbacks is empty")
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
