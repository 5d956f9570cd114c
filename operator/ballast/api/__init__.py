"""The pydantic models of every Ballast resource: the single source of truth for the CRDs."""

from ballast.api.killswitch import ClusterKillSwitchSpec, KillSwitchSpec, KillSwitchStatus
from ballast.api.modeldeployment import ModelDeploymentSpec
from ballast.api.resources import BY_KIND, CLUSTER_KILL_SWITCH, KILL_SWITCH, MODEL_DEPLOYMENT, RESOURCES, Resource
from ballast.api.revision import revision_hash
from ballast.api.status import ModelDeploymentStatus

__all__ = [
    "BY_KIND",
    "CLUSTER_KILL_SWITCH",
    "KILL_SWITCH",
    "MODEL_DEPLOYMENT",
    "RESOURCES",
    "ClusterKillSwitchSpec",
    "KillSwitchSpec",
    "KillSwitchStatus",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "Resource",
    "revision_hash",
]
