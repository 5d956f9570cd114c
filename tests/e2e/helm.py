"""The real `helm` against a local cluster, with its own configuration folders (nothing of the user's is read)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from ballast.devstack.binaries import Binaries

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ballast"
KUBE_VERSION = "1.36.3"


@dataclass(frozen=True)
class Helm:
    binaries: Binaries
    home: Path  # HELM_CACHE_HOME, HELM_CONFIG_HOME and HELM_DATA_HOME live here
    kubeconfig: Path | None = None

    def command(self, *args: str) -> list[str]:
        target = [f"--kubeconfig={self.kubeconfig}"] if self.kubeconfig else []
        return [str(self.binaries.helm), *args, *target]

    def environment(self) -> dict[str, str]:
        homes = {f"HELM_{kind}_HOME": str(self.home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
        return {**{k: v for k, v in os.environ.items() if k != "KUBECONFIG"}, **homes}

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args), env=self.environment(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def start(self, *args: str) -> subprocess.Popen[str]:
        """A helm command in the background (the test acts while it runs)."""
        return subprocess.Popen(
            self.command(*args), env=self.environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def template(self, *args: str, chart: Path = CHART) -> list[dict[str, object]]:
        """The chart's manifests as `helm template` renders them (Kubernetes KUBE_VERSION)."""
        rendered = self.run("template", "ballast", str(chart), f"--kube-version={KUBE_VERSION}", *args).stdout
        return [d for d in yaml.safe_load_all(rendered) if d]
