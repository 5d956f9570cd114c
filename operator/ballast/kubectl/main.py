"""kubectl ballast: status, history, manual control, kill switches and `wait` for CI.

Run as `kubectl ballast <command>` (kubectl finds the `kubectl-ballast` executable on PATH). It takes
kubectl's habits: `-n`, `-A`, `--context`, `--kubeconfig`, `--as`, `-o json|yaml`, and exits non-zero on
failure. It never edits a ModelDeployment's spec: manual control is annotations, kill switches are objects.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from ballast.api.annotations import ABORT_ANNOTATION, APPROVED_BY_ANNOTATION, PAUSE_ANNOTATION, PROMOTE_ANNOTATION
from ballast.api.types import parse_duration
from ballast.kube.cli_client import ClusterError, Connection, connect
from ballast.kube.resources import MODEL_DEPLOYMENTS
from ballast.kubectl import render, switches
from ballast.kubectl.outcome import Outcome, Target, judge

Object = dict[str, Any]
POLL_SECONDS = 1.0
EXIT_ERROR = 1


def duration(text: str) -> float:
    """A `--timeout` value in seconds; argparse names the flag when it is refused."""
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError:
        seconds = -1
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 10m or 1h")
    return seconds


def _connection(args: argparse.Namespace) -> Connection:
    return connect(args.kubeconfig, args.context, args.namespace, args.impersonate, args.impersonate_group)


def _print(args: argparse.Namespace, obj: object, text: Callable[[], str]) -> None:
    if args.output == "json":
        print(json.dumps(obj, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(obj, sort_keys=False), end="")
    else:
        print(text())


def cmd_status(args: argparse.Namespace) -> int:
    connection = _connection(args)
    if args.name and not args.all_namespaces:
        md = connection.get(MODEL_DEPLOYMENTS, args.name)
        _print(args, md, lambda: render.describe(md))
        return 0
    namespace = None if args.all_namespaces else connection.namespace
    mds = connection.list(MODEL_DEPLOYMENTS, namespace)
    if args.name:
        mds = [md for md in mds if md["metadata"]["name"] == args.name]
    if not mds and args.output is None:
        print(f"No ModelDeployments found{'' if namespace is None else f' in {namespace} namespace'}.")
        return 0
    _print(args, {"apiVersion": "v1", "kind": "List", "items": mds}, lambda: render.overview(mds))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    md = _connection(args).get(MODEL_DEPLOYMENTS, args.name)
    history = (md.get("status") or {}).get("history") or []
    _print(args, history, lambda: render.timeline(history) if history else "No decisions recorded yet.")
    return 0


def _annotate(args: argparse.Namespace, annotations: dict[str, str | None], done: str) -> int:
    connection = _connection(args)
    connection.get(MODEL_DEPLOYMENTS, args.name)  # a clear NotFound before any write
    connection.patch_annotations(MODEL_DEPLOYMENTS, args.name, annotations)
    print(f"modeldeployment.ballast.dev/{args.name} {done}")
    return 0


def _token() -> str:
    """A new value every time: the operator acts once per new token."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def cmd_promote(args: argparse.Namespace) -> int:
    connection = _connection(args)
    annotations: dict[str, str | None] = {PROMOTE_ANNOTATION: _token(), APPROVED_BY_ANNOTATION: connection.username()}
    connection.patch_annotations(MODEL_DEPLOYMENTS, args.name, annotations)
    print(f"modeldeployment.ballast.dev/{args.name} promote requested: the canary leaves its current step")
    return 0


def waiting_step(md: Object) -> int | None:
    """The index of the step waiting for an approval, or None when the deployment waits for none."""
    status = md.get("status") or {}
    step = status.get("currentStep")
    if status.get("phase") not in ("Progressing", "Paused") or step is None or not status.get("canaryRevision"):
        return None
    # The raw steps, not a validated spec: a field this plugin's version does not know must not stop an approval.
    steps = ((md.get("spec") or {}).get("rollout") or {}).get("steps") or []
    return step if step < len(steps) and (steps[step] or {}).get("approval") is True else None


def cmd_approve(args: argparse.Namespace) -> int:
    connection = _connection(args)
    md = connection.get(MODEL_DEPLOYMENTS, args.name)
    step = waiting_step(md)
    if step is None:
        status = md.get("status") or {}
        print(
            f"error: modeldeployment {args.name} is not waiting for an approval (phase {status.get('phase', 'Pending')}"
            f": {status.get('message') or 'no status yet'}); `kubectl ballast promote` leaves any step early",
            file=sys.stderr,
        )
        return EXIT_ERROR
    user = connection.username()
    connection.patch_annotations(
        MODEL_DEPLOYMENTS, args.name, {PROMOTE_ANNOTATION: _token(), APPROVED_BY_ANNOTATION: user}
    )
    print(f"modeldeployment.ballast.dev/{args.name} step {step + 1} approved by {user}")
    return 0


def cmd_abort(args: argparse.Namespace) -> int:
    return _annotate(args, {ABORT_ANNOTATION: _token()}, "abort requested: the canary rolls back")


def cmd_pause(args: argparse.Namespace) -> int:
    return _annotate(args, {PAUSE_ANNOTATION: "true"}, "paused: the canary holds at its step")


def cmd_resume(args: argparse.Namespace) -> int:
    return _annotate(args, {PAUSE_ANNOTATION: None}, "resumed")


def _poll(check: Callable[[], Any], timeout: float) -> Any:
    """`check()` until it returns something other than None, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None or time.monotonic() >= deadline:
            return result
        time.sleep(POLL_SECONDS)


def cmd_kill(args: argparse.Namespace) -> int:
    connection = _connection(args)
    connection.get(MODEL_DEPLOYMENTS, args.name)
    switch = switches.create(connection, args.name, args.reason)
    name = switch["metadata"]["name"]
    print(f"killswitch.ballast.dev/{name} created for modeldeployment {args.name}")

    def engaged() -> Object | None:
        md = connection.get(MODEL_DEPLOYMENTS, args.name)
        state = (md.get("status") or {}).get("killSwitch") or {}
        return state if state.get("engaged") else None

    state = _poll(engaged, args.timeout)
    if state is None:
        print(f"error: the switch is not engaged after {args.timeout:g}s (is the operator running?)", file=sys.stderr)
        return Outcome.TIMED_OUT
    print(f"engaged: users of {args.name} go to {state.get('fallback') or 'no usable fallback (held off the model)'}")
    return 0


def cmd_unkill(args: argparse.Namespace) -> int:
    connection = _connection(args)
    deleted = switches.delete_ours(connection, args.name)
    md = connection.get(MODEL_DEPLOYMENTS, args.name)
    for name in deleted:
        print(f"killswitch.ballast.dev/{name} deleted")
    others = switches.others_holding(md, deleted)
    if not deleted:
        print(f"no switch created by kubectl ballast holds {args.name}")
    if others:
        print(f"{args.name} is still held by: " + "; ".join(others))
        return EXIT_ERROR if not deleted else 0
    return 0 if deleted else EXIT_ERROR


def cmd_wait(args: argparse.Namespace) -> int:
    connection = _connection(args)
    md = connection.get(MODEL_DEPLOYMENTS, args.name)
    target = Target.of(md)
    if args.generation is not None and args.generation != target.generation:
        print(f"error: {args.name} is at generation {target.generation}, not {args.generation}", file=sys.stderr)
        return EXIT_ERROR
    print(f"waiting for revision {target.revision} (generation {target.generation}) of {args.name}", flush=True)
    verdict = _poll(lambda: judge(connection.get(MODEL_DEPLOYMENTS, args.name), target), args.timeout)
    if verdict is None:
        print(f"timed out after {args.timeout:g}s: revision {target.revision} neither promoted nor rolled back")
        return Outcome.TIMED_OUT
    outcome, message = verdict
    print(f"{outcome.name.lower().replace('_', ' ')}: {message}")
    return int(outcome)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    common.add_argument("--context", help="the kubeconfig context to use")
    common.add_argument("--kubeconfig", help="path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    common.add_argument("--as", dest="impersonate", help="the user to impersonate")
    common.add_argument("--as-group", dest="impersonate_group", action="append", help="a group to impersonate")
    return common


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "status": (cmd_status, "phase, split, contract, gates, budget, switches and the decisions' timeline"),
    "history": (cmd_history, "every decision kept in status, with its numbers"),
    "promote": (cmd_promote, "leave the current step now (needs the approve verb)"),
    "approve": (cmd_approve, "approve the step waiting for a person, recorded under your name"),
    "abort": (cmd_abort, "roll the canary back now"),
    "pause": (cmd_pause, "hold the canary at its step"),
    "resume": (cmd_resume, "let a paused canary go on"),
    "kill": (cmd_kill, "create a KillSwitch: users go to the fallback"),
    "unkill": (cmd_unkill, "delete the KillSwitches kubectl ballast created for it"),
    "wait": (cmd_wait, "wait for this generation's revision: 0 promoted, 2 rolled back, 3 timed out"),
}
NAMED = {"history", "promote", "approve", "abort", "pause", "resume", "kill", "unkill", "wait"}
OUTPUT = {"status", "history"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl ballast",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="wait exits 0 promoted, 1 error, 2 rolled back, 3 timed out, 4 superseded by a newer spec, 5 failed",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (func, summary) in COMMANDS.items():
        command = sub.add_parser(name, parents=[_common()], help=summary, description=summary)
        command.set_defaults(func=func, all_namespaces=False, output=None)
        command.add_argument("name", nargs=None if name in NAMED else "?", help="the ModelDeployment")
        if name == "status":
            command.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
        if name in OUTPUT:
            command.add_argument("-o", "--output", choices=("json", "yaml"), help="the raw object instead of text")
        if name == "kill":
            command.add_argument("--reason", required=True, help="why users must not get model answers")
        if name in ("kill", "wait"):
            command.add_argument(
                "--timeout", type=duration, default="30s" if name == "kill" else "10m", help="for example 90s, 10m"
            )
        if name == "wait":
            command.add_argument("--generation", type=int, help="fail unless the object is at this generation")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ClusterError as error:
        print(error, file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
