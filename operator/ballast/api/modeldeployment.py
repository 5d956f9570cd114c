"""ModelDeployment: the contract, budgets, rollout and fallbacks of one model deployment."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ballast.api.base import OpenModel, Rule, SpecModel, checked_by
from ballast.api.network import HeaderValue, WebhookURL, regular_expression_rule
from ballast.api.presets import (
    TOKEN_COUNTING_RUNTIMES,
    TOKEN_PRESETS,
    Preset,
    Runtime,
    presets_cel_condition,
    presets_table_text,
)
from ballast.api.promql import QueryTemplate
from ballast.api.types import (
    DURATION,
    DNSLabel,
    DNSSubdomain,
    GatewayDuration,
    Hostname,
    LabelValue,
    Money,
    Percent,
    Port,
    keyed_list,
    keys_are_qualified_names,
    within,
)

# Bounds of every duration field: nothing overflows date arithmetic, and where zero would be a busy
# loop or an empty measurement window, zero is refused.
CheckInterval = Annotated[str, DURATION, within("1s", "1h")]
MeasureWindow = Annotated[str, DURATION, within("10s", "24h")]
BurnWindow = Annotated[str, DURATION, within("10s", "720h")]
Deadline = Annotated[str, DURATION, within("1s", "168h")]
Hold = Annotated[str, DURATION, within("0s", "168h")]
CallTimeout = Annotated[str, DURATION, within("100ms", "5m")]
Drain = Annotated[str, DURATION, within("0s", "24h")]  # as long as a request may run (traffic.timeouts)

# What a pod allows: the Kubernetes limit on all annotations of one object, and a budget for
# command, args and env well inside the kernel's limit on a process's arguments and environment.
ANNOTATIONS_MAX_BYTES = 256 * 1024
PROCESS_INPUT_MAX_BYTES = 256 * 1024

# ---------------------------------------------------------------------------------------- model


class ContainerTemplate(OpenModel):
    """A container of the pod template; every Kubernetes container field is accepted."""

    name: DNSLabel = Field(description="Container name.")
    image: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = Field(
        default=None, description="Container image."
    )


class PodSpecTemplate(OpenModel):
    """The pod spec of a revision; every Kubernetes PodSpec field is accepted."""

    containers: list[ContainerTemplate] = Field(
        min_length=1, max_length=16, description="The containers; the first one serves the model."
    )


class TemplateMetadata(SpecModel):
    """Labels and annotations copied onto every pod of the revision."""

    labels: Annotated[
        dict[str, LabelValue], checked_by(*keys_are_qualified_names("template labels", reserved=True))
    ] = Field(default_factory=dict, max_length=64, description="Pod labels (keys under ballast.dev/ are reserved).")
    annotations: Annotated[
        dict[str, Annotated[str, StringConstraints(max_length=65536)]],
        checked_by(
            *keys_are_qualified_names("template annotations", reserved=True),
            Rule(
                f"self.map(k, size(bytes(k)) + size(bytes(self[k]))).sum() <= {ANNOTATIONS_MAX_BYTES}",
                f"template annotations must total at most {ANNOTATIONS_MAX_BYTES} bytes (keys and values), "
                "the Kubernetes limit for a pod",
            ),
        ),
    ] = Field(
        default_factory=dict, max_length=64, description="Pod annotations (keys under ballast.dev/ are reserved)."
    )


class PodTemplate(SpecModel):
    """A pod template. Any change here is a new revision."""

    metadata: TemplateMetadata | None = Field(default=None, description="Pod labels and annotations.")
    spec: PodSpecTemplate = Field(description="The pod spec (a Kubernetes PodSpec).")


class EnvVar(SpecModel):
    """An environment variable for the `image` shorthand."""

    # Kubernetes' rule for environment variable names (a C identifier that may also hold '-' and '.').
    name: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")] = (
        Field(description="Variable name: letters, digits, '_', '-' or '.', not starting with a digit.")
    )
    # No default: the API server would write it into stored objects and move the revision hash.
    value: Annotated[str, StringConstraints(max_length=32768)] | None = Field(default=None, description="Value.")


class Autoscaling(SpecModel):
    """A HorizontalPodAutoscaler per revision; replaces `replicas` when set."""

    __cel_rules__ = (
        Rule("self.minReplicas <= self.maxReplicas", "autoscaling.minReplicas must not exceed maxReplicas"),
    )

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Lower bound of replicas per revision.")
    max_replicas: int = Field(ge=1, le=1000, description="Upper bound of replicas per revision.")
    target_cpu_utilization: int | None = Field(
        alias="targetCPUUtilization",
        default=None,
        ge=1,
        le=100,
        description="Average CPU utilisation (percent) to aim for.",
    )


class ModelSpec(SpecModel):
    """What runs: the logical model, its serving runtime and the workload of each revision."""

    __cel_rules__ = (
        Rule(
            "has(self.template) != has(self.image)",
            "spec.model needs exactly one of template (a pod template) or image (with optional args and env)",
        ),
        Rule(
            "!has(self.template) || (!has(self.args) && !has(self.command) && !has(self.env))",
            "spec.model.args, command and env apply only with image; with a template, set them on its container",
        ),
        Rule(
            "(has(self.command) ? self.command.map(c, size(bytes(c))).sum() : 0)"
            " + (has(self.args) ? self.args.map(a, size(bytes(a))).sum() : 0)"
            " + (has(self.env) ? self.env.map(e, size(bytes(e.name)) + (has(e.value) ? size(bytes(e.value)) : 0))"
            f".sum() : 0) <= {PROCESS_INPUT_MAX_BYTES}",
            f"spec.model command, args and env together must stay within {PROCESS_INPUT_MAX_BYTES} bytes "
            "(what a container's process can be started with, with room to spare)",
        ),
    )

    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_./:]*$")] = (
        Field(description="The logical model name clients ask for (for example llama-3.1-8b-instruct).")
    )
    runtime: Runtime = Field(
        default="vllm", description="The serving runtime; selects the metric presets objectives may use."
    )
    replicas: int = Field(default=1, ge=0, le=1000, description="Replicas per revision (without autoscaling).")
    autoscaling: Autoscaling | None = Field(default=None, description="A HorizontalPodAutoscaler per revision.")
    template: PodTemplate | None = Field(default=None, description="The pod template of the model server.")
    image: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = Field(
        default=None, description="Shorthand for a one-container template: the server image."
    )
    command: list[Annotated[str, StringConstraints(max_length=4096)]] | None = Field(
        default=None, max_length=64, description="With image: the container command."
    )
    args: list[Annotated[str, StringConstraints(max_length=4096)]] | None = Field(
        default=None, max_length=256, description="With image: the container arguments."
    )
    env: list[EnvVar] | None = Field(default=None, max_length=128, description="With image: environment.")


# -------------------------------------------------------------------------------------- traffic


class ParentRef(SpecModel):
    """A Gateway the HTTPRoute attaches to."""

    group: DNSSubdomain = Field(default="gateway.networking.k8s.io", description="API group of the parent.")
    kind: Annotated[str, StringConstraints(min_length=1, max_length=63)] = Field(
        default="Gateway", description="Kind of the parent."
    )
    name: DNSSubdomain = Field(description="Name of the Gateway.")
    namespace: DNSLabel | None = Field(default=None, description="Namespace of the Gateway (default: local).")
    section_name: DNSLabel | None = Field(default=None, description="A listener of the Gateway.")
    port: Port | None = Field(default=None, description="A port of the Gateway.")


class RouteRef(SpecModel):
    """Your own HTTPRoute: Ballast edits only the backendRefs of the named rule."""

    name: DNSSubdomain = Field(description="Name of the HTTPRoute in the ModelDeployment's namespace.")
    rule: DNSLabel = Field(description="The `name` of the rule whose backendRefs Ballast owns.")


class HeaderMatch(SpecModel):
    """A request header that sends a request to the canary regardless of weights (an A/B slice)."""

    __cel_rules__ = (regular_expression_rule(),)

    name: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")] = (
        Field(description="Header name.")
    )
    value: HeaderValue = Field(description="Header value, or an RE2 regular expression with RegularExpression.")
    type: Literal["Exact", "RegularExpression"] = Field(default="Exact", description="How to match the value.")


class Timeouts(SpecModel):
    """HTTPRoute timeouts; generations take long, so the defaults are generous.

    The Gateway API's duration grammar (no fractions) and its rule between the two, since the
    HTTPRoute is what reads them; 0s means no timeout.
    """

    __cel_rules__ = (
        Rule(
            "duration(self.request) == duration('0s') || duration(self.backendRequest) <= duration(self.request)",
            "traffic.timeouts.backendRequest cannot be longer than request (unless request is 0s, no timeout)",
            field_path=".backendRequest",
        ),
    )

    request: Annotated[GatewayDuration, within("0s", "24h")] = Field(
        default="300s", description="Whole request, client to response (0s: none)."
    )
    backend_request: Annotated[GatewayDuration, within("0s", "24h")] = Field(
        default="300s", description="One request from the Gateway to a backend (0s: none)."
    )


class TrafficSpec(SpecModel):
    """How requests reach the revisions."""

    __cel_rules__ = (
        Rule(
            "self.router != 'gateway-api' || (has(self.parentRefs) != has(self.routeRef))",
            "the gateway-api router needs exactly one of parentRefs (Ballast owns the HTTPRoute) "
            "or routeRef (your own HTTPRoute)",
        ),
        Rule(
            "self.router != 'service' || (!has(self.parentRefs) && !has(self.hostnames) && !has(self.routeRef)"
            " && !has(self.canaryMatch))",
            "the service router splits by replica ratio: it cannot use parentRefs, hostnames, routeRef "
            "or canaryMatch (use router: gateway-api)",
        ),
        Rule(
            "!has(self.hostnames) || has(self.parentRefs)",
            "traffic.hostnames apply to the HTTPRoute Ballast owns: set parentRefs, or set hostnames on your own route",
        ),
    )

    router: Literal["gateway-api", "service"] = Field(
        default="gateway-api",
        description="gateway-api: weighted HTTPRoute backends; service: one Service split by replica ratio.",
    )
    parent_refs: list[ParentRef] | None = Field(
        default=None, min_length=1, max_length=8, description="Gateways the Ballast-owned HTTPRoute attaches to."
    )
    hostnames: list[Hostname] | None = Field(
        default=None, min_length=1, max_length=16, description="Hostnames of the HTTPRoute."
    )
    route_ref: RouteRef | None = Field(default=None, description="Bring your own HTTPRoute instead of parentRefs.")
    port: Port = Field(default=8000, description="The port the model server listens on and Services expose.")
    timeouts: Timeouts = Field(default_factory=Timeouts, description="HTTPRoute timeouts.")
    canary_match: list[HeaderMatch] | None = Field(
        default=None, min_length=1, max_length=8, description="Headers that always reach the canary (A/B slice)."
    )


# ------------------------------------------------------------------------------------- contract


class Objective(SpecModel):
    """One measurable promise: a preset of the runtime or a PromQL template, with its bounds."""

    __cel_rules__ = (
        Rule("has(self.preset) != has(self.query)", "an objective needs exactly one of preset or query"),
        Rule(
            "has(self.max) || has(self.min) || has(self.relativeToStable)",
            "an objective needs a bound: max, min or relativeToStable",
        ),
        Rule("!has(self.min) || !has(self.max) || self.min <= self.max", "objective min must not exceed max"),
    )

    name: DNSLabel = Field(description="Name of the objective, unique in the contract.")
    preset: Preset | None = Field(default=None, description="A metric preset of the runtime (see the table).")
    query: QueryTemplate | None = Field(
        default=None,
        description="A PromQL template returning one value; variables {{namespace}}, {{name}}, {{revision}}, "
        "{{service}}, {{window}}; every selector names {{revision}} or {{service}}.",
    )
    max: float | None = Field(default=None, description="Absolute upper bound (seconds for latencies, ratios 0-1).")
    min: float | None = Field(default=None, description="Absolute lower bound.")
    relative_to_stable: float | None = Field(
        default=None,
        ge=1.0,
        le=100.0,
        description="Upper bound relative to the stable revision over the same window (1.5 = 50% worse).",
    )


class BurnRateWindow(SpecModel):
    """A multiwindow burn-rate alert: both windows must burn faster than `burnRate`."""

    __cel_rules__ = (
        Rule(
            "duration(self.short) < duration(self.long)",
            "a burn-rate window's short window must be shorter than its long window",
            field_path=".short",
        ),
    )

    long: BurnWindow = Field(description="The long window, for example 1h.")
    short: BurnWindow = Field(description="The short window that confirms the breach is still happening.")
    burn_rate: float = Field(gt=0, le=1000, description="How many times faster than the SLO allows.")


def _default_burn_windows() -> list[BurnRateWindow]:
    # SRE workbook: page at 14.4x over 1h/5m (2% of a 30-day budget) and 6x over 6h/30m (5%).
    return [
        BurnRateWindow(long="1h", short="5m", burn_rate=14.4),
        BurnRateWindow(long="6h", short="30m", burn_rate=6.0),
    ]


class AfterPromotion(SpecModel):
    """Keeps the stable revision under watch once it serves everyone."""

    objective: DNSLabel = Field(
        description="A contract objective whose value is a bad-event ratio: preset error-rate or a custom query."
    )
    target: float = Field(gt=0, lt=1, description="The SLO target as a fraction of good events (0.99).")
    action: Literal["alert", "rollback", "killSwitch"] = Field(
        default="alert", description="What a sustained breach does."
    )
    windows: list[BurnRateWindow] = Field(
        default_factory=_default_burn_windows,
        min_length=1,
        max_length=4,
        description="Burn-rate windows; the defaults follow the SRE workbook.",
    )


class ContractSpec(SpecModel):
    """What the model must honour, judged on every step and after promotion."""

    min_requests: int = Field(
        default=50, ge=1, le=10_000_000, description="Below this many requests in the window a check is inconclusive."
    )
    window: MeasureWindow = Field(default="2m", description="The window each check measures over (10s to 24h).")
    objectives: list[Objective] = keyed_list(
        description="The objectives; every one must pass for a step to pass.", max_length=32
    )
    after_promotion: AfterPromotion | None = Field(
        default=None, description="Burn-rate watch over the stable revision."
    )


# -------------------------------------------------------------------------------------- budgets


class CostBudget(SpecModel):
    """Spend per hour: token prices (an API's or a chargeback's), a price per replica-hour (self-hosted), or both."""

    __cel_rules__ = (
        Rule(
            "has(self.per1kPromptTokens) == has(self.per1kCompletionTokens)",
            "budgets.cost: per1kPromptTokens and per1kCompletionTokens go together (set both, or neither)",
        ),
        Rule(
            "has(self.per1kPromptTokens) || has(self.perReplicaHour)",
            "budgets.cost needs a price: per1kPromptTokens with per1kCompletionTokens, perReplicaHour, or both",
        ),
    )

    per_hour: Money = Field(description='The budget per hour, a decimal string such as "12.50".')
    currency: Annotated[str, StringConstraints(max_length=3, pattern=r"^[A-Z]{3}$")] = Field(
        default="USD", description="ISO 4217 currency code; every price and figure of this budget is in it."
    )
    per_1k_prompt_tokens: Money | None = Field(
        alias="per1kPromptTokens", default=None, description="Price of 1000 prompt tokens."
    )
    per_1k_completion_tokens: Money | None = Field(
        alias="per1kCompletionTokens", default=None, description="Price of 1000 completion tokens."
    )
    per_replica_hour: Money | None = Field(
        default=None, description="Price of one ready replica for an hour (self-hosted serving)."
    )


class TokenQueries(SpecModel):
    """Token counts for a runtime whose metrics have none: PromQL templates, each one value for one revision."""

    prompt: QueryTemplate = Field(
        description="Prompt tokens of {{revision}} in {{window}}, for example "
        'sum(increase(app_prompt_tokens_total{revision="{{revision}}"}[{{window}}])).'
    )
    completion: QueryTemplate = Field(description="Completion tokens of {{revision}} in {{window}}.")
    successful_requests: QueryTemplate | None = Field(
        default=None,
        description="Successful requests of {{revision}} in {{window}} (default: the runtime's own counter; "
        "needed for cost-per-request with runtime custom).",
    )


class WhenExceeded(SpecModel):
    """What to do while a budget is exceeded."""

    __cel_rules__ = (
        Rule(
            "self.action == 'shift' ? has(self.to) && has(self.share) : !has(self.to) && !has(self.share)",
            "budgets.whenExceeded: action shift needs `to` (a fallback) and `share`; other actions take neither",
        ),
    )

    action: Literal["shift", "killSwitch", "alert"] = Field(
        default="alert",
        description="shift: move `share` percent to fallback `to`; killSwitch: engage the kill-switch policy; "
        "alert: Event and metric only.",
    )
    share: Annotated[int, Field(ge=1, le=100)] | None = Field(default=None, description="Percent of traffic to shift.")
    to: DNSLabel | None = Field(default=None, description="The fallback that takes the shifted share.")
    hysteresis: Percent = Field(
        default=10, description="Act again only once use falls this many percent below the budget."
    )
    cooldown: Hold = Field(default="5m", description="Minimum time between two budget actions.")


class BudgetsSpec(SpecModel):
    """What the deployment may spend."""

    __cel_rules__ = (
        Rule("has(self.tokensPerMinute) || has(self.cost)", "budgets need tokensPerMinute, cost, or both"),
    )

    tokens_per_minute: int | None = Field(
        default=None, ge=1, le=10**12, description="Prompt plus completion tokens per minute, all revisions."
    )
    cost: CostBudget | None = Field(default=None, description="Spend per hour.")
    window: MeasureWindow = Field(default="5m", description="The window use is measured over (10s to 24h).")
    token_queries: TokenQueries | None = Field(
        default=None, description="Token counts from your own metrics (needed on runtimes without token counters)."
    )
    count_captured: bool = Field(
        default=False,
        description="Whether mirrored requests (shadow phase, kill switch with captureTraffic) count against the "
        "budget; by default they are reported apart, as captured use, and do not.",
    )
    when_exceeded: WhenExceeded = Field(default_factory=WhenExceeded, description="The action on excess.")


# -------------------------------------------------------------------------------------- rollout


class ApprovalTimeout(SpecModel):
    """What happens when nobody approves a step in time."""

    after: Deadline = Field(description="How long the step waits for a person once it starts (1s to 168h).")
    action: Literal["rollback", "hold"] = Field(
        default="rollback",
        description="rollback: the canary is rolled back; hold: it keeps waiting, with a Warning Event and "
        "status.pendingApproval.overdue.",
    )


class Step(SpecModel):
    """One canary step."""

    __cel_rules__ = (
        Rule(
            "!has(self.approvalTimeout) || (has(self.approval) && self.approval)",
            "approvalTimeout needs approval: true on the same step (only a step that waits for a person can time out)",
            field_path=".approvalTimeout",
        ),
    )

    weight: Percent = Field(description="Percent of traffic the canary serves during this step.")
    pause: Hold | None = Field(default=None, description="Hold the step at least this long (at most 168h).")
    approval: bool = Field(default=False, description="Wait for a manual promote before leaving the step.")
    approval_timeout: ApprovalTimeout | None = Field(
        default=None, description="With approval: what happens when nobody approves in time (default: wait forever)."
    )
    analysis: bool = Field(default=True, description="Judge the contract before leaving the step.")


class Owner(SpecModel):
    """Who answers for this model: named in every automatic decision's Event and every webhook call."""

    team: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(description="The owning team.")
    escalation: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None, description="Whom to reach in an incident: a pager, an e-mail address or a channel."
    )


def _default_steps() -> list[Step]:
    return [Step(weight=10, pause="2m"), Step(weight=50, pause="2m"), Step(weight=100)]


class Capacity(SpecModel):
    """How many replicas each revision runs during a rollout: GPUs are scarce, a canary must not double them."""

    canary: Literal["weighted", "full"] = Field(
        default="weighted",
        description="weighted: the canary runs ceil(replicas x weight), at least one; full: spec.model.replicas.",
    )
    stable: Literal["full", "shrink"] = Field(
        default="full",
        description="full: the stable keeps spec.model.replicas until promotion (a surge of the canary's replicas); "
        "shrink: it gives the canary's replicas up as the canary grows (no surge; at least one while it serves).",
    )
    previous_replicas: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Replicas of the previous revision while it is kept warm for rollout.scaleDownDelay "
        "(default spec.model.replicas; 0 only where no previousRevision fallback needs it).",
    )


class Shadow(SpecModel):
    """Mirror traffic to the new revision before it serves any answer."""

    duration: Deadline = Field(description="How long the shadow phase lasts (1s to 168h).")
    analysis: bool = Field(default=True, description="Judge the contract on mirrored traffic.")


GATE_TYPES = ("pre-rollout", "rollout", "confirm-promotion")
NOTIFICATION_TYPES = ("post-rollout", "rollback", "event")
WebhookType = Literal["pre-rollout", "rollout", "confirm-promotion", "post-rollout", "rollback", "event"]


class Webhook(SpecModel):
    """A gate or notification called over HTTP."""

    __cel_rules__ = (
        Rule(
            "!has(self.onRefusal) || self.type in ['pre-rollout', 'rollout', 'confirm-promotion']",
            "onRefusal applies only to gates (type pre-rollout, rollout or confirm-promotion); "
            "post-rollout, rollback and event are notifications, which never hold a rollout",
            field_path=".onRefusal",
        ),
        Rule(
            "!has(self.deadline) || self.type in ['pre-rollout', 'rollout', 'confirm-promotion']",
            "deadline applies only to gates (type pre-rollout, rollout or confirm-promotion); "
            "a notification is called once and never holds a rollout",
            field_path=".deadline",
        ),
    )

    name: DNSLabel = Field(description="Name of the webhook.")
    type: WebhookType = Field(
        description="When it is called: the gates pre-rollout (before the canary takes any traffic or mirror), "
        "rollout (before each step advances) and confirm-promotion (before the last step) must pass to proceed; "
        "the notifications post-rollout, rollback and event never block anything."
    )
    url: WebhookURL = Field(
        description="http(s) URL; literal loopback, link-local (metadata) and unspecified addresses are refused."
    )
    timeout: CallTimeout = Field(default="10s", description="How long to wait for an answer (100ms to 5m).")
    metadata: dict[str, Annotated[str, StringConstraints(max_length=1024)]] = Field(
        default_factory=dict, max_length=32, description="Sent with each call."
    )
    on_refusal: Literal["rollback", "hold"] | None = Field(
        default=None,
        description="A gate's answer to a refusal (a 4xx or 3xx answer, or a body verdict of fail): rollback, or "
        "hold and ask again every rollout.interval (default: hold for confirm-promotion, rollback for the others).",
    )
    deadline: Deadline | None = Field(
        default=None,
        description="How long a gate that cannot answer (unreachable, timed out, a 5xx, an oversized answer) may hold "
        "the canary, asked again with backoff, before it is rolled back (1s to 168h; default 10m).",
    )

    def refusal_action(self) -> Literal["rollback", "hold"]:
        if self.on_refusal is not None:
            return self.on_refusal
        return "hold" if self.type == "confirm-promotion" else "rollback"

    def error_deadline(self) -> str:
        return self.deadline or "10m"


class RolloutSpec(SpecModel):
    """How a new revision reaches users."""

    __cel_rules__ = (
        Rule(
            "!has(self.steps) || self.steps.map(s, s.weight).isSorted()",
            "rollout.steps weights must never decrease",
        ),
        Rule(
            "!has(self.steps) || self.steps[size(self.steps) - 1].weight == 100",
            "the last rollout step must have weight 100 (the canary then serves everyone)",
        ),
    )

    interval: CheckInterval = Field(
        default="30s", description="How often a step is judged, and budget use measured (1s to 1h)."
    )
    failure_limit: int = Field(default=2, ge=0, le=100, description="Failed checks tolerated before rollback.")
    progress_deadline: Deadline = Field(
        default="15m", description="A canary not Available within this time is rolled back (1s to 168h)."
    )
    inconclusive_deadline: Deadline = Field(
        default="10m",
        description="How long no data, too few samples or an unreachable Prometheus may hold a step before rollback.",
    )
    inconclusive_limit: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Consecutive inconclusive or error checks tolerated before rollback (besides the deadline).",
    )
    scale_down_delay: Hold = Field(
        default="10m", description="How long the previous stable revision stays warm after promotion (at most 168h)."
    )
    revision_history_limit: int = Field(
        default=3, ge=0, le=32, description="Retired revisions kept (scaled to zero) for audit and rollback."
    )
    steps: list[Step] | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description="The canary steps; default 10% (2m), 50% (2m), 100%.",
    )
    shadow: Shadow | None = Field(default=None, description="A mirror-only phase before the first step.")
    capacity: Capacity = Field(
        default_factory=Capacity, description="Replicas per revision during a rollout (for scarce GPUs)."
    )
    webhooks: list[Webhook] = keyed_list(description="Gates and notifications.", max_length=16)

    def effective_steps(self) -> list[Step]:
        return self.steps if self.steps is not None else _default_steps()


# ------------------------------------------------------------------------------------ fallbacks


class ServiceRef(SpecModel):
    """A Service that answers in place of the model."""

    name: DNSLabel = Field(description="Service name.")
    namespace: DNSLabel | None = Field(
        default=None, description="Service namespace (another namespace needs a ReferenceGrant)."
    )
    port: Port = Field(description="Service port.")


class Reject(SpecModel):
    """Answer with an OpenAI-style JSON error instead of a model answer, from a responder Ballast runs."""

    status: int = Field(default=503, ge=500, le=599, description="HTTP status code.")
    message: Annotated[str, StringConstraints(max_length=1024)] = Field(
        default="the model is unavailable", description="The message in the JSON error body."
    )
    retry_after: int = Field(
        default=30, ge=0, le=86400, description="Seconds in the Retry-After header (0 leaves the header out)."
    )
    replicas: int = Field(
        default=2,
        ge=1,
        le=20,
        description="Responder pods; with 2 or more a PodDisruptionBudget keeps one serving through node drains.",
    )


class Fallback(SpecModel):
    """Where traffic goes when the model must not answer."""

    __cel_rules__ = (
        Rule(
            "(has(self.service) ? 1 : 0) + (has(self.previousRevision) && self.previousRevision ? 1 : 0)"
            " + (has(self.reject) ? 1 : 0) == 1",
            "a fallback needs exactly one of service, previousRevision: true, or reject",
        ),
    )

    name: DNSLabel = Field(description="Name of the fallback, unique in the list.")
    service: ServiceRef | None = Field(default=None, description="A Service (rules engine, cache, cheaper model).")
    previous_revision: bool | None = Field(
        default=None, description="The previous stable revision, kept warm by scaleDownDelay."
    )
    reject: Reject | None = Field(default=None, description="A deterministic error responder.")


class KillSwitchPolicy(SpecModel):
    """What happens while a KillSwitch or ClusterKillSwitch selects this deployment."""

    __cel_rules__ = (
        Rule(
            "!(has(self.captureTraffic) && self.captureTraffic && has(self.stopPods) && self.stopPods)",
            "spec.killSwitch: captureTraffic mirrors requests to the model's pods, which stopPods stops; choose one",
        ),
        Rule(
            "!has(self.drain) || (has(self.stopPods) && self.stopPods)",
            "spec.killSwitch.drain applies only with stopPods: true",
            field_path=".drain",
        ),
    )

    fallback: DNSLabel | None = Field(
        default=None,
        description="The fallback to try first; then the others in spec.fallbacks order, the first usable wins.",
    )
    capture_traffic: bool = Field(
        default=False,
        description="Keep mirroring requests to the stable revision while users get the fallback (needs a Gateway "
        "that supports HTTPRouteRequestMirror; without it users still get the fallback, uncaptured).",
    )
    stop_pods: bool = Field(
        default=False,
        description="Stop the model's pods (stable and canary scale to zero) once in-flight requests have drained, "
        "for a model that must not run at all; on release they start again and users return once they serve.",
    )
    drain: Drain | None = Field(
        default=None,
        description="With stopPods: how long in-flight requests may finish before the pods stop, 0s to 24h "
        "(default: traffic.timeouts.request, the longest a request may run through the Gateway; needed when that "
        "is 0s, no timeout).",
    )


# ------------------------------------------------------------------------------------ the spec


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


class ModelDeploymentSpec(SpecModel):
    """The desired state of a model deployment."""

    __cel_rules__ = (
        Rule(
            "!has(self.contract) || !has(self.contract.objectives) || self.contract.objectives.all(o, "
            "!has(o.preset) || "
            + presets_cel_condition("self.model.runtime", "o.preset")
            + f" || (o.preset in {_cel_list(TOKEN_PRESETS)} && has(self.budgets) && has(self.budgets.tokenQueries)))",
            "an objective uses a preset that spec.model.runtime cannot supply; presets per runtime: "
            + presets_table_text(),
            field_path=".contract.objectives",
        ),
        Rule(
            "!has(self.budgets) || self.model.runtime in "
            + _cel_list(TOKEN_COUNTING_RUNTIMES)
            + " || has(self.budgets.tokenQueries)",
            "spec.budgets on a runtime whose metrics count no tokens needs budgets.tokenQueries (prompt and "
            f"completion PromQL templates); runtimes with token counters: {', '.join(TOKEN_COUNTING_RUNTIMES)}",
            field_path=".budgets",
        ),
        Rule(
            "!has(self.contract) || !has(self.contract.objectives) || !self.contract.objectives.exists(o, "
            f"has(o.preset) && o.preset in {_cel_list(TOKEN_PRESETS)}) || "
            "(has(self.budgets) && has(self.budgets.cost))",
            "a cost-per-request objective is priced by spec.budgets.cost: set it (perHour and the prices)",
            field_path=".contract.objectives",
        ),
        Rule(
            "self.model.runtime != 'custom' || !has(self.contract) || !has(self.contract.objectives) || "
            f"!self.contract.objectives.exists(o, has(o.preset) && o.preset in {_cel_list(TOKEN_PRESETS)}) || "
            "(has(self.budgets) && has(self.budgets.tokenQueries) && "
            "has(self.budgets.tokenQueries.successfulRequests))",
            "a cost-per-request objective with runtime custom needs budgets.tokenQueries.successfulRequests "
            "(a custom runtime has no known request counter)",
            field_path=".contract.objectives",
        ),
        Rule(
            "!has(self.killSwitch) || (has(self.fallbacks) && size(self.fallbacks) > 0)",
            "spec.killSwitch needs at least one entry in spec.fallbacks to route users to",
            field_path=".killSwitch",
        ),
        Rule(
            "!has(self.killSwitch) || !has(self.killSwitch.fallback) || "
            "(has(self.fallbacks) && self.fallbacks.exists(f, f.name == self.killSwitch.fallback))",
            "spec.killSwitch.fallback must name an entry of spec.fallbacks",
            field_path=".killSwitch.fallback",
        ),
        Rule(
            "!has(self.budgets) || !has(self.budgets.whenExceeded) || !has(self.budgets.whenExceeded.to) || "
            "(has(self.fallbacks) && self.fallbacks.exists(f, f.name == self.budgets.whenExceeded.to))",
            "spec.budgets.whenExceeded.to must name an entry of spec.fallbacks",
            field_path=".budgets.whenExceeded.to",
        ),
        Rule(
            "!has(self.budgets) || !has(self.budgets.whenExceeded) || self.budgets.whenExceeded.action != "
            "'killSwitch' || (has(self.fallbacks) && size(self.fallbacks) > 0)",
            "spec.budgets.whenExceeded.action killSwitch needs at least one entry in spec.fallbacks",
            field_path=".budgets.whenExceeded.action",
        ),
        Rule(
            "self.traffic.router != 'service' || ((!has(self.fallbacks) || size(self.fallbacks) == 0) && "
            "!has(self.killSwitch))",
            "the service router cannot route to a fallback (one Service split by replica ratio, and the previous "
            "revision scales down at promotion): fallbacks and killSwitch need router: gateway-api",
            field_path=".fallbacks",
        ),
        Rule(
            "!has(self.killSwitch) || !has(self.killSwitch.stopPods) || !self.killSwitch.stopPods || "
            "has(self.killSwitch.drain) || !has(self.traffic.timeouts) || !has(self.traffic.timeouts.request) || "
            "duration(self.traffic.timeouts.request) != duration('0s')",
            "spec.killSwitch.stopPods with traffic.timeouts.request 0s (no timeout) needs killSwitch.drain: nothing "
            "else bounds how long in-flight requests run before the pods stop",
            field_path=".killSwitch.drain",
        ),
        Rule(
            "self.traffic.router != 'service' || !has(self.rollout) || !has(self.rollout.shadow)",
            "the service router cannot mirror traffic: rollout.shadow needs router: gateway-api",
            field_path=".rollout.shadow",
        ),
        Rule(
            "!has(self.fallbacks) || size(self.fallbacks.filter(f, has(f.reject))) <= 1",
            "spec.fallbacks may hold at most one reject entry (one responder answers for the deployment)",
            field_path=".fallbacks",
        ),
        Rule(
            "!has(self.fallbacks) || !self.fallbacks.exists(f, has(f.previousRevision) && f.previousRevision) || "
            "duration(self.rollout.scaleDownDelay) > duration('0s')",
            "a previousRevision fallback needs the previous revision kept warm: set "
            "spec.rollout.scaleDownDelay above 0s",
            field_path=".rollout.scaleDownDelay",
        ),
        Rule(
            "!has(self.fallbacks) || !self.fallbacks.exists(f, has(f.previousRevision) && f.previousRevision) || "
            "!has(self.rollout) || !has(self.rollout.capacity) || !has(self.rollout.capacity.previousReplicas) || "
            "self.rollout.capacity.previousReplicas > 0",
            "a previousRevision fallback needs the previous revision kept warm: set "
            "spec.rollout.capacity.previousReplicas above 0 (or leave it unset for spec.model.replicas)",
            field_path=".rollout.capacity.previousReplicas",
        ),
        Rule(
            "!has(self.fallbacks) || !self.fallbacks.exists(f, has(f.previousRevision) && f.previousRevision) || "
            "!has(self.rollout) || !has(self.rollout.capacity) || !has(self.rollout.capacity.stable) || "
            "self.rollout.capacity.stable != 'shrink'",
            "a previousRevision fallback needs the previous revision kept warm, and rollout.capacity.stable shrink "
            "gives its replicas to the canary: use stable full, or another fallback",
            field_path=".rollout.capacity.stable",
        ),
        Rule(
            "self.traffic.router != 'service' || !has(self.rollout) || !has(self.rollout.capacity) || "
            "((!has(self.rollout.capacity.canary) || self.rollout.capacity.canary == 'weighted') && "
            "(!has(self.rollout.capacity.stable) || self.rollout.capacity.stable == 'full') && "
            "!has(self.rollout.capacity.previousReplicas))",
            "the service router sizes every revision by its share of replicas and scales the previous revision "
            "down at promotion: rollout.capacity needs router: gateway-api",
            field_path=".rollout.capacity",
        ),
        Rule(
            "!has(self.contract) || !has(self.contract.afterPromotion) || (has(self.contract.objectives) && "
            "self.contract.objectives.exists(o, o.name == self.contract.afterPromotion.objective))",
            "spec.contract.afterPromotion.objective must name an entry of spec.contract.objectives",
            field_path=".contract.afterPromotion.objective",
        ),
        Rule(
            "!has(self.contract) || !has(self.contract.afterPromotion) || !has(self.contract.objectives) || "
            "self.contract.objectives.all(o, o.name != self.contract.afterPromotion.objective || "
            "(has(o.preset) && o.preset == 'error-rate') || has(o.query))",
            "spec.contract.afterPromotion.objective must name a ratio objective (preset error-rate or a custom "
            "query of a bad-event ratio); a latency has no error budget to burn",
            field_path=".contract.afterPromotion.objective",
        ),
        Rule(
            "!has(self.contract) || !has(self.contract.afterPromotion) || "
            "self.contract.afterPromotion.action != 'killSwitch' || (has(self.fallbacks) && size(self.fallbacks) > 0)",
            "spec.contract.afterPromotion.action killSwitch needs at least one entry in spec.fallbacks",
            field_path=".contract.afterPromotion.action",
        ),
    )

    owner: Owner | None = Field(default=None, description="Who answers for this model (team, escalation contact).")
    model: ModelSpec = Field(description="What runs.")
    traffic: TrafficSpec = Field(description="How requests reach the revisions.")
    contract: ContractSpec = Field(default_factory=ContractSpec, description="What the model must honour.")
    budgets: BudgetsSpec | None = Field(default=None, description="What the deployment may spend.")
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="How a new revision reaches users.")
    fallbacks: list[Fallback] = keyed_list(
        description="Ordered backends used when the model must not answer.", max_length=8
    )
    kill_switch: KillSwitchPolicy | None = Field(
        default=None, description="Policy only; engaging is a KillSwitch or ClusterKillSwitch object."
    )
