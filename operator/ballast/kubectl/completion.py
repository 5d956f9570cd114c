"""Shell completion the kubectl way: kubectl (1.26+) runs `kubectl_complete-ballast <words...>` and reads one
candidate per line, then `:<directive>` (cobra's protocol; 4 = do not fall back to file names)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ballast.kube.cli_client import ClusterError, connect
from ballast.kube.resources import MODEL_DEPLOYMENTS, NAMESPACES
from ballast.kubectl.main import COMMANDS, NAMED, OUTPUT

NO_FILE_COMPLETION = 4
FLAGS = ("--namespace", "--context", "--kubeconfig", "--as", "--as-group")
VALUE_FLAGS = {"-n", "--namespace", "--context", "--kubeconfig", "--as", "--as-group", "-o", "--output", "--reason",
               "--timeout", "--generation"}  # fmt: skip


def _scope(words: Sequence[str]) -> argparse.Namespace:
    """The connection flags already typed, so names are listed where the command will look."""
    parser = argparse.ArgumentParser(add_help=False)
    for flag in ("-n", "--namespace"):
        parser.add_argument(flag, dest="namespace")
    parser.add_argument("--context")
    parser.add_argument("--kubeconfig")
    known, _ = parser.parse_known_args(list(words))
    return known


def _names(words: Sequence[str], namespaces: bool) -> list[str]:
    scope = _scope(words)
    try:
        connection = connect(scope.kubeconfig, scope.context, scope.namespace)
        items = connection.list(
            NAMESPACES if namespaces else MODEL_DEPLOYMENTS, None if namespaces else connection.namespace
        )
    except (ClusterError, OSError):
        return []
    return [item["metadata"]["name"] for item in items]


def candidates(words: Sequence[str]) -> list[str]:
    """What may come next after `kubectl ballast <words[:-1]>`, given the partial last word."""
    *before, partial = list(words) or [""]
    if not before:
        found = list(COMMANDS)
    elif before[-1] in ("-n", "--namespace"):
        found = _names(before, namespaces=True)
    elif before[-1] in ("-o", "--output"):
        found = ["json", "yaml"] if before[0] in OUTPUT else []
    elif before[-1] in VALUE_FLAGS:
        found = []
    elif partial.startswith("-"):
        found = list(FLAGS) + (["--output"] if before[0] in OUTPUT else [])
    else:
        positional = [
            w for i, w in enumerate(before[1:], 1) if not w.startswith("-") and before[i - 1] not in VALUE_FLAGS
        ]
        wants_name = before[0] in COMMANDS and not positional and (before[0] in NAMED or before[0] == "status")
        found = _names(before, namespaces=False) if wants_name else []
    return [c for c in found if c.startswith(partial)]


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    for candidate in candidates(words):
        print(candidate)
    print(f":{NO_FILE_COMPLETION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
