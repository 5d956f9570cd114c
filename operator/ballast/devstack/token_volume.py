"""The kubelet's projected service-account volume, for pods the local stack runs as processes.

The ServiceAccount admission plugin gives every pod that automounts a token a projected volume at
/var/run/secrets/kubernetes.io/serviceaccount: a token from the TokenRequest API bound to the pod
(invalid once the pod is gone), the cluster's CA from the `kube-root-ca.crt` ConfigMap, and the
namespace. The supervisor writes those files into a folder of its own per pod, as the kubelet would,
requests a fresh token when 80% of its lifetime has passed, and names the folder in
`BALLAST_SERVICE_ACCOUNT_DIR` (processes share one file system here; that is the only difference).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ballast.kube.client import SERVICE_ACCOUNT_DIR_VARIABLE

SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_EXPIRATION = 3607  # what the admission plugin writes into the projection
REFRESH_AT = 0.8  # of the token's lifetime, as the kubelet does


class VolumeNotReady(RuntimeError):
    """A source of the volume is not there yet (a ConfigMap the controller-manager has not published): the
    container waits, as it would in ContainerCreating."""


@dataclass
class TokenVolume:
    folder: Path
    namespace: str
    pod: str
    uid: str
    service_account: str
    sources: list[Any]  # the projection's sources (kubernetes client models)
    refresh_at: float = 0.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @classmethod
    def of(cls, pod: Any, container: Any, root: Path) -> TokenVolume | None:
        """The pod's service-account volume as `container` mounts it; None when it mounts none."""
        mount = next((m for m in container.volume_mounts or [] if m.mount_path == SERVICE_ACCOUNT_PATH), None)
        volume = next((v for v in pod.spec.volumes or [] if mount and v.name == mount.name), None)
        if volume is None or volume.projected is None:
            return None
        meta = pod.metadata
        return cls(
            folder=root / f"{meta.namespace}_{meta.name}" / volume.name,
            namespace=meta.namespace,
            pod=meta.name,
            uid=meta.uid,
            service_account=pod.spec.service_account_name or "default",
            sources=list(volume.projected.sources or []),
        )

    def environment(self) -> dict[str, str]:
        return {SERVICE_ACCOUNT_DIR_VARIABLE: str(self.folder)}

    def due(self) -> bool:
        return self.clock() >= self.refresh_at

    def write(self, core: Any) -> None:
        """Write every file of the projection (the token freshly requested), each replaced atomically."""
        files: dict[str, str] = {}
        lifetime = DEFAULT_EXPIRATION
        for source in self.sources:
            if source.service_account_token is not None:
                projection = source.service_account_token
                lifetime = int(projection.expiration_seconds or DEFAULT_EXPIRATION)
                files[projection.path] = self._token(core, lifetime, projection.audience)
            if source.config_map is not None:
                files.update(self._config_map(core, source.config_map))
            if source.downward_api is not None:
                files.update(self._downward(source.downward_api))
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            staged = self.folder / f".{name}.tmp"
            staged.write_text(text)
            os.replace(staged, self.folder / name)
        self.refresh_at = self.clock() + REFRESH_AT * lifetime

    def _token(self, core: Any, lifetime: int, audience: str | None) -> str:
        spec: dict[str, Any] = {
            "expirationSeconds": lifetime,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.pod, "uid": self.uid},
        }
        if audience:
            spec["audiences"] = [audience]
        answer = core.create_namespaced_service_account_token(
            self.service_account, self.namespace, {"apiVersion": "authentication.k8s.io/v1", "spec": spec}
        )
        return str(answer.status.token)

    def _config_map(self, core: Any, projection: Any) -> dict[str, str]:
        from kubernetes import client

        try:
            data = core.read_namespaced_config_map(projection.name, self.namespace).data or {}
        except client.ApiException as error:
            if error.status == 404:
                raise VolumeNotReady(f"ConfigMap {self.namespace}/{projection.name} does not exist yet") from error
            raise
        pairs = [(item.key, item.path) for item in projection.items] if projection.items else [(k, k) for k in data]
        return {path: data[key] for key, path in pairs if key in data}

    def _downward(self, projection: Any) -> dict[str, str]:
        fields = {"metadata.namespace": self.namespace, "metadata.name": self.pod, "metadata.uid": self.uid}
        return {
            item.path: fields[item.field_ref.field_path]
            for item in projection.items or []
            if item.field_ref is not None and item.field_ref.field_path in fields
        }
