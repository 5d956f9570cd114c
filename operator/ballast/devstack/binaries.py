"""Obtain the local stack's binaries: built once from Go modules through the module proxy, then cached.

Nothing is downloaded from release pages. Every component is pinned; a binary named by
`KUBEBUILDER_ASSETS` (kube-apiserver, etcd) or found on PATH (servers and tools other than
kubectl, which must match the API server's version) is used as it is. The cache lives under
`~/.cache/ballast` (override with `BALLAST_CACHE_DIR`), and so do the Go module and build caches.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.19.5"
PROMETHEUS_VERSION = "v0.316.0"  # the Go module version of Prometheus 3.x
GATEWAY_API_VERSION = "v1.4.1"
TRAEFIK_VERSION = "v3.6.12"

# Kubernetes' staging modules: k8s.io/kubernetes replaces each with ./staging/..., so a wrapper
# module pins them to the matching v0.x.y instead. A replace for a module outside the build graph
# is harmless.
STAGING_MODULES = [
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "cri-streaming",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
    "streaming",
]
KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
KWOK_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)

Progress = Callable[[str], None]


class BuildError(RuntimeError):
    """A component could not be built; the message carries the command and its output."""


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    etcd: Path
    kwok: Path
    helm: Path
    prometheus: Path
    traefik: Path
    gateway_api_crds: tuple[Path, ...]
    kwok_stages: tuple[Path, ...]


def cache_dir() -> Path:
    return Path(os.environ.get("BALLAST_CACHE_DIR") or Path.home() / ".cache" / "ballast")


def go_environment() -> dict[str, str]:
    cache = cache_dir()
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(cache / "gomod"),
        GOFLAGS="-modcacherw",
        # Upstream builds these binaries static; the machine's own Go toolchain is the one to use.
        CGO_ENABLED="0",
        GOTOOLCHAIN="local",
    )
    env.setdefault("GOCACHE", str(Path.home() / ".cache" / "go-build"))
    return env


def _run(args: list[str], cwd: Path | None = None, **extra_env: str) -> str:
    if shutil.which("go") is None:
        raise BuildError("the Go toolchain is needed to build the local stack and is not on PATH")
    env = {**go_environment(), **extra_env}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"`{' '.join(args)}` failed in {cwd or '.'}:\n{result.stderr[-4000:]}")
    return result.stdout


def module_dir(module: str, version: str) -> Path:
    """The module's source folder in the module cache (downloaded through the proxy if needed)."""
    info = json.loads(_run(["go", "mod", "download", "-json", f"{module}@{version}"]))
    return Path(info["Dir"])


def _record_build_time(name: str, version: str, seconds: float) -> None:
    path = cache_dir() / "build-times.json"
    times = json.loads(path.read_text()) if path.exists() else {}
    times[f"{name}-{version}"] = {
        "seconds": round(seconds, 1),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.write_text(json.dumps(times, indent=2) + "\n")


def recorded_build_times() -> dict[str, dict[str, object]]:
    path = cache_dir() / "build-times.json"
    result: dict[str, dict[str, object]] = json.loads(path.read_text()) if path.exists() else {}
    return result


def _write_wrapper(folder: Path, go_mod: str, main_go: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "go.mod").write_text(go_mod)
    (folder / "main.go").write_text(main_go)


def _build_kubernetes(target: Path, progress: Progress) -> None:
    folder = cache_dir() / "src" / f"kubernetes-{KUBERNETES_VERSION}"
    staging = KUBERNETES_VERSION.replace("v1.", "v0.", 1)
    replaces = "\n".join(f"\tk8s.io/{m} => k8s.io/{m} {staging}" for m in STAGING_MODULES)
    imports = "\n".join(f'\t_ "k8s.io/kubernetes/cmd/{c}"' for c in KUBERNETES_COMMANDS)
    _write_wrapper(
        folder,
        f"module ballast.dev/devstack/kubernetes\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes {KUBERNETES_VERSION}\n\n"
        f"replace (\n{replaces}\n)\n",
        f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n",
    )
    progress(f"kubernetes {KUBERNETES_VERSION}: resolving modules (go mod tidy)")
    _run(["go", "mod", "tidy"], cwd=folder)
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={KUBERNETES_VERSION}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    progress(f"kubernetes {KUBERNETES_VERSION}: go build {', '.join(KUBERNETES_COMMANDS)} (tens of minutes cold)")
    packages = [f"k8s.io/kubernetes/cmd/{c}" for c in KUBERNETES_COMMANDS]
    _run(["go", "build", "-ldflags", " ".join(flags), "-o", f"{target}/", *packages], cwd=folder)


def _build_etcd(target: Path, progress: Progress) -> None:
    # etcd's server module has local replaces too: a tiny main of our own calls etcdmain.Main.
    folder = cache_dir() / "src" / f"etcd-{ETCD_VERSION}"
    _write_wrapper(
        folder,
        f"module ballast.dev/devstack/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n",
        'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n",
    )
    progress(f"etcd {ETCD_VERSION}: go build")
    _run(["go", "mod", "tidy"], cwd=folder)
    _run(["go", "build", "-ldflags", "-s -w", "-o", str(target / "etcd"), "."], cwd=folder)


def _build_traefik(target: Path, progress: Progress) -> None:
    # Traefik's go.mod replaces a few modules with forks, which `go install pkg@version` refuses:
    # a wrapper module carries the same replace and exclude directives.
    module = "github.com/traefik/traefik/v3"
    upstream = (module_dir(module, TRAEFIK_VERSION) / "go.mod").read_text()
    directives = "\n".join(_go_mod_blocks(upstream, ("replace", "exclude")))
    folder = cache_dir() / "src" / f"traefik-{TRAEFIK_VERSION}"
    _write_wrapper(
        folder,
        f"module ballast.dev/devstack/traefik\n\ngo 1.25.0\n\nrequire {module} {TRAEFIK_VERSION}\n\n{directives}\n",
        f'//go:build tools\n\npackage tools\n\nimport _ "{module}/cmd/traefik"\n',
    )
    progress(f"traefik {TRAEFIK_VERSION}: go build (several minutes cold)")
    _run(["go", "mod", "tidy"], cwd=folder)
    _run(["go", "build", "-ldflags", "-s -w", "-o", str(target / "traefik"), f"{module}/cmd/traefik"], cwd=folder)


def _go_mod_blocks(go_mod: str, keywords: tuple[str, ...]) -> list[str]:
    """The `replace (...)`/`exclude ...` directives of a go.mod, verbatim."""
    blocks, current = [], None
    for line in go_mod.splitlines():
        stripped = line.strip()
        if current is not None:
            current.append(line)
            if stripped == ")":
                blocks.append("\n".join(current))
                current = None
        elif stripped.split(" ", 1)[0] in keywords:
            if stripped.endswith("("):
                current = [line]
            else:
                blocks.append(line)
    return blocks


def _go_install(package: str) -> Callable[[Path, Progress], None]:
    def build(target: Path, progress: Progress) -> None:
        progress(f"go install {package}")
        _run(["go", "install", "-ldflags", "-s -w", package], GOBIN=str(target))

    return build


@dataclass(frozen=True)
class _Component:
    name: str
    version: str
    executables: tuple[str, ...]
    build: Callable[[Path, Progress], None]
    path_lookup: bool = True


_COMPONENTS = (
    _Component("kubernetes", KUBERNETES_VERSION, KUBERNETES_COMMANDS, _build_kubernetes, path_lookup=False),
    _Component("etcd", ETCD_VERSION, ("etcd",), _build_etcd),
    _Component("kwok", KWOK_VERSION, ("kwok",), _go_install(f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}")),
    _Component("helm", HELM_VERSION, ("helm",), _go_install(f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}")),
    _Component("traefik", TRAEFIK_VERSION, ("traefik",), _build_traefik),
    _Component(
        "prometheus",
        PROMETHEUS_VERSION,
        ("prometheus",),
        _go_install(f"github.com/prometheus/prometheus/cmd/prometheus@{PROMETHEUS_VERSION}"),
    ),
)


def _assets_override(executable: str) -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / executable).is_file():
        return Path(assets) / executable
    return None


def _ensure(component: _Component, progress: Progress) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for executable in component.executables:
        override = _assets_override(executable)
        on_path = shutil.which(executable) if component.path_lookup else None
        if override or on_path:
            found[executable] = override or Path(str(on_path))
    if len(found) == len(component.executables):
        return found
    target = cache_dir() / "bin" / f"{component.name}-{component.version}"
    missing = [e for e in component.executables if not (target / e).is_file()]
    if missing:
        progress(f"building {component.name} {component.version} into {target} (cold build; cached afterwards)")
        target.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        component.build(target, progress)
        _record_build_time(component.name, component.version, time.monotonic() - started)
        progress(f"built {component.name} {component.version} in {time.monotonic() - started:.0f}s")
    return {e: found.get(e, target / e) for e in component.executables}


def ensure_all(progress: Progress = print) -> Binaries:
    """Every binary of the local stack, building what is missing. Fast when warm: no go command runs.

    One build at a time per cache: a second process (another test session, `ballast dev up`) waits
    for the first and then finds the binaries built.
    """
    paths: dict[str, Path] = {}
    cache_dir().mkdir(parents=True, exist_ok=True)
    with (cache_dir() / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for component in _COMPONENTS:
            paths.update(_ensure(component, progress))
        crds, stages = _gateway_api_crds(progress), _kwok_stages()
    return Binaries(
        kube_apiserver=paths["kube-apiserver"],
        kube_controller_manager=paths["kube-controller-manager"],
        kube_scheduler=paths["kube-scheduler"],
        kubectl=paths["kubectl"],
        etcd=paths["etcd"],
        kwok=paths["kwok"],
        helm=paths["helm"],
        prometheus=paths["prometheus"],
        traefik=paths["traefik"],
        gateway_api_crds=crds,
        kwok_stages=stages,
    )


def _source_files(module: str, version: str, relative: tuple[str, ...], label: str) -> tuple[Path, ...]:
    """Files of a module, copied into the cache once so warm starts run no go command."""
    target = cache_dir() / "share" / f"{label}-{version}"
    copies = tuple(target / Path(r).name for r in relative)
    if not all(c.is_file() for c in copies):
        source = module_dir(module, version)
        target.mkdir(parents=True, exist_ok=True)
        for rel, copy in zip(relative, copies, strict=True):
            shutil.copyfile(source / rel, copy)
    return copies


def _gateway_api_crds(progress: Progress) -> tuple[Path, ...]:
    target = cache_dir() / "share" / f"gateway-api-{GATEWAY_API_VERSION}"
    if not target.is_dir() or not any(target.glob("*.yaml")):
        progress(f"gateway-api {GATEWAY_API_VERSION}: reading the standard channel CRDs from the module")
        source = module_dir("sigs.k8s.io/gateway-api", GATEWAY_API_VERSION) / "config" / "crd" / "standard"
        target.mkdir(parents=True, exist_ok=True)
        for crd in source.glob("*.yaml"):
            shutil.copyfile(crd, target / crd.name)
    return tuple(sorted(target.glob("*.yaml")))


def _kwok_stages() -> tuple[Path, ...]:
    return _source_files("sigs.k8s.io/kwok", KWOK_VERSION, KWOK_STAGES, "kwok-stages")
