"""`ballast dev build | up | demo | down | status`: the local stack for people (the e2e tests use the same code)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from ballast.devstack.binaries import BuildError, cache_dir, ensure_all, recorded_build_times
from ballast.devstack.cluster import Cluster, ClusterError, stop_process_groups
from ballast.devstack.dataplane import GATEWAY_NAME, GATEWAY_NAMESPACE, DataPlane
from ballast.devstack.demo import Scenario
from ballast.devstack.operator_process import Operator, operator_kubeconfig


def state_dir() -> Path:
    return Path(os.environ.get("BALLAST_DEV_DIR") or cache_dir() / "dev")


def _state_file() -> Path:
    return state_dir() / "state.json"


def _running_pids() -> list[int]:
    if not _state_file().exists():
        return []
    pids: list[int] = json.loads(_state_file().read_text())["pids"]
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive


def build(_: argparse.Namespace) -> int:
    try:
        binaries = ensure_all(progress=lambda line: print(line, file=sys.stderr))
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for name, value in vars(binaries).items():
        print(f"{name}: {value if isinstance(value, Path) else value[0].parent}")
    for component, record in recorded_build_times().items():
        print(f"cold build of {component}: {record['seconds']}s ({record['at']})")
    return 0


def _start_stack(args: argparse.Namespace) -> tuple[Cluster, DataPlane] | None:
    """A fresh control plane and data plane in the state folder; None (having said why) when it cannot start."""
    if _running_pids():
        print(f"the local stack is already running; see {_state_file()} or run `ballast dev down`", file=sys.stderr)
        return None
    try:
        binaries = ensure_all(progress=lambda line: print(line, file=sys.stderr))
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    shutil.rmtree(state_dir(), ignore_errors=True)
    cluster = Cluster(binaries, state_dir(), nodes=args.nodes)
    plane = DataPlane(cluster, scrape_interval=args.scrape_interval)
    try:
        cluster.start(progress=lambda line: print(line, file=sys.stderr))
        print("starting the data plane: simulator supervisor, Traefik, Prometheus", file=sys.stderr)
        plane.start()
    except ClusterError as error:
        cluster.stop()
        print(f"error: {error}", file=sys.stderr)
        return None
    return cluster, plane


def record(cluster: Cluster, plane: DataPlane, extra_pids: list[int]) -> None:
    # The processes run in their own sessions and outlive this command; `down` stops them.
    pids = [p.popen.pid for p in cluster.processes] + extra_pids
    _state_file().write_text(json.dumps({"pids": pids, "kubeconfig": str(cluster.kubeconfig)}, indent=2))
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print(f"# API server {cluster.server}; audit log {cluster.audit_log}; logs in {state_dir() / 'logs'}")
    print(f"# Gateway {GATEWAY_NAMESPACE}/{GATEWAY_NAME} at {plane.gateway_url}; Prometheus at {plane.prometheus_url}")


def up(args: argparse.Namespace) -> int:
    started = _start_stack(args)
    if started is None:
        return 1
    record(*started, [])
    return 0


def demo(args: argparse.Namespace) -> int:
    """A fresh stack, the operator under its RBAC identity, and the scenario; everything stays up to explore."""
    rbac = Path(__file__).resolve().parents[3] / "charts" / "ballast" / "files" / "rbac.yaml"
    if not rbac.is_file():
        print(f"error: the demo runs from a checkout (pip install -e .): {rbac} is missing", file=sys.stderr)
        return 1
    started = _start_stack(args)
    if started is None:
        return 1
    cluster, plane = started
    operator = Operator(cluster, operator_kubeconfig(cluster, rbac), plane.prometheus_url)
    operator.start()
    assert operator.process is not None
    record(cluster, plane, [operator.process.pid])
    print(f"# the operator runs as system:serviceaccount:ballast-system:ballast; its log: {operator.log}\n")
    try:
        Scenario(cluster, plane, "demo", print).run()
    except ClusterError as error:
        print(f"error: {error}; the stack keeps running for a look (`ballast dev down` stops it)", file=sys.stderr)
        return 1
    print(
        "\nExplore (the stack keeps running; `ballast dev down` stops it):\n"
        "  kubectl get mdep,ks -n demo\n"
        "  kubectl describe mdep support-bot -n demo\n"
        "  kubectl get mdep support-bot -n demo -o jsonpath='{.status.history}'\n"
        f"  curl -s -H 'Host: support-bot.demo.test' {plane.gateway_url}/v1/chat/completions -d '{{}}'"
    )
    return 0


def down(_: argparse.Namespace) -> int:
    pids = _running_pids()
    stop_process_groups(pids)
    _state_file().unlink(missing_ok=True)
    print(f"stopped {len(pids)} processes" if pids else "the local stack was not running")
    return 0


def status(_: argparse.Namespace) -> int:
    pids = _running_pids()
    if not pids:
        print("not running")
        return 1
    print(f"running ({len(pids)} processes); export KUBECONFIG={json.loads(_state_file().read_text())['kubeconfig']}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="the local stack: a real control plane built from Go modules")
    commands = dev.add_subparsers(dest="dev_command", required=True)
    commands.add_parser("build", help="build or locate every binary and report where").set_defaults(func=build)
    start = commands.add_parser("up", help="start the local control plane in the background")
    start.add_argument("--nodes", type=int, default=3, help="kwok fake nodes (default 3)")
    start.add_argument("--scrape-interval", default="5s", help="Prometheus scrape interval (default 5s)")
    start.set_defaults(func=up)
    show = commands.add_parser("demo", help="start the stack and the operator, then walk a canary, a kill switch "
                               "and a rollback on real traffic")  # fmt: skip
    show.add_argument("--nodes", type=int, default=3, help="kwok fake nodes (default 3)")
    show.add_argument("--scrape-interval", default="1s", help="Prometheus scrape interval (default 1s)")
    show.set_defaults(func=demo)
    commands.add_parser("down", help="stop everything `up` or `demo` started").set_defaults(func=down)
    commands.add_parser("status", help="say whether the stack runs").set_defaults(func=status)
