"""`ballast run`: start the operator through kopf."""

from __future__ import annotations

import argparse
import logging
import os


def run(args: argparse.Namespace) -> int:
    import kopf

    if args.prometheus_url:
        os.environ["BALLAST_PROMETHEUS_URL"] = args.prometheus_url
    os.environ["BALLAST_PROMETHEUS_TIMEOUT"] = args.prometheus_timeout
    if args.webhook_allow_host:
        os.environ["BALLAST_WEBHOOK_ALLOW_HOSTS"] = ",".join(args.webhook_allow_host)

    import ballast.handlers  # noqa: F401  (registers the handlers)
    from ballast.shell.leader import ElectionConfig, default_identity

    election = ElectionConfig(args.identity or default_identity(), args.lease_namespace, args.lease_name)

    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=args.metrics_address)

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON if args.log_json else kopf.LogFormat.FULL)
    if not args.verbose:
        # A line per API call (the Lease alone is one a second) would bury the decisions; the audit log has them.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(election=election),
    )
    return 0


def _duration(text: str) -> str:
    from ballast.api.types import parse_duration

    try:
        if parse_duration(text).total_seconds() > 0:
            return text
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration such as 10s or 2.5s")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "run",
        help="run the operator (kopf; of several replicas, the Lease holder acts)",
        epilog="Credentials: in a pod, its service account (KUBERNETES_SERVICE_HOST and the token in"
        " /var/run/secrets/kubernetes.io/serviceaccount, or the folder BALLAST_SERVICE_ACCOUNT_DIR names);"
        " elsewhere the kubeconfig (KUBECONFIG or ~/.kube/config).",
    )
    parser.add_argument(
        "-n", "--namespace", action="append", help="watch only this namespace (repeatable; default: all)"
    )
    parser.add_argument(
        "--liveness",
        default=None,
        help="liveness and readiness endpoint, e.g. http://0.0.0.0:8080/healthz (reports leader or standby)",
    )
    parser.add_argument(
        "--identity", default=None, help="this replica's name in the Lease (default: $POD_NAME or hostname, and pid)"
    )
    parser.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE") or "ballast-system",
        help="namespace of the leader-election Lease (default: $POD_NAMESPACE, else ballast-system)",
    )
    parser.add_argument(
        "--lease-name", default="ballast-operator", help="name of the leader-election Lease (default ballast-operator)"
    )
    parser.add_argument(
        "--prometheus-url",
        default=os.environ.get("BALLAST_PROMETHEUS_URL"),
        help="Prometheus that contract checks query (default: $BALLAST_PROMETHEUS_URL)",
    )
    parser.add_argument(
        "--prometheus-timeout",
        type=_duration,
        default=os.environ.get("BALLAST_PROMETHEUS_TIMEOUT", "10s"),
        help="longest wait for one Prometheus query, connection included (default 10s; a check errs after it)",
    )
    parser.add_argument(
        "--webhook-allow-host",
        action="append",
        default=[h for h in os.environ.get("BALLAST_WEBHOOK_ALLOW_HOSTS", "").split(",") if h],
        help="a webhook host name that may resolve to a loopback, link-local or metadata address (repeatable; "
        "default: $BALLAST_WEBHOOK_ALLOW_HOSTS, comma-separated; none)",
    )
    parser.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port")
    parser.add_argument("--metrics-address", default="127.0.0.1", help="metrics bind address (default 127.0.0.1)")
    parser.add_argument("--log-json", action="store_true", help="structured JSON logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="verbose logs")
    parser.set_defaults(func=run)
