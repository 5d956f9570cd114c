"""`ballast rules`: the burn-rate watch's recording rules, as a PrometheusRule or a plain rules file."""

from __future__ import annotations

import argparse

import yaml

from ballast.analysis.rules import DEFAULT_BASE_WINDOW, prometheus_rule, rules_file
from ballast.api.types import parse_duration


def _base_window(text: str) -> str:
    try:
        if parse_duration(text).total_seconds() < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration of at least 1s, such as 30s or 1m") from None
    return text


def run(args: argparse.Namespace) -> int:
    if args.format == "prometheusrule":
        document = prometheus_rule(args.base_window, args.namespace)
    else:
        document = rules_file(args.base_window)
    print(yaml.safe_dump(document, sort_keys=False), end="")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "rules", help="print the recording rules of the burn-rate watch (one set serves every deployment)"
    )
    parser.add_argument(
        "--format", choices=("prometheusrule", "file"), default="prometheusrule",
        help="a PrometheusRule (Prometheus Operator) or a plain rules file for rule_files (default: prometheusrule)",
    )  # fmt: skip
    parser.add_argument(
        "--base-window", type=_base_window, default=DEFAULT_BASE_WINDOW,
        help="the window each recorded rate covers: at least four scrape intervals (default: 1m); a burn-rate "
        "window shorter than this reads the raw counters",
    )  # fmt: skip
    parser.add_argument("--namespace", default=None, help="the PrometheusRule's namespace")
    parser.set_defaults(func=run)
