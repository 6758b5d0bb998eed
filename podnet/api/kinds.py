"""The kinds podnet knows, and kubectl's ways of naming them.

`KINDS` holds the stored kinds by their `kind` string. `resolve_kind` accepts
what kubectl accepts on its command line: the kind in any case, the plural,
the short names, and a group-qualified form ("deployments.apps",
"networkpolicies.networking.k8s.io").
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from podnet.api.meta import ApiError


@dataclass(frozen=True)
class Kind:
    kind: str  # "Deployment"
    plural: str  # "deployments" (also the store key segment)
    namespaced: bool
    api_version: str  # "apps/v1"
    short_names: Sequence[str] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "short_names", tuple(self.short_names))

    @property
    def group(self) -> str:
        """'' for the core group, else 'apps', 'networking.k8s.io', ..."""
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def stored(self) -> bool:
        return self.kind in KINDS and KINDS[self.kind] == self

    @property
    def qualified(self) -> str:
        """kubectl's output name: 'pod', 'deployment.apps',
        'networkpolicy.networking.k8s.io' (as in 'deployment.apps/web created')."""
        return self.singular if not self.group else "%s.%s" % (self.singular, self.group)


NAMESPACE = Kind("Namespace", "namespaces", False, "v1", ["ns"])
NODE = Kind("Node", "nodes", False, "v1", ["no"])
POD = Kind("Pod", "pods", True, "v1", ["po"])
DEPLOYMENT = Kind("Deployment", "deployments", True, "apps/v1", ["deploy"])
REPLICASET = Kind("ReplicaSet", "replicasets", True, "apps/v1", ["rs"])
SERVICE = Kind("Service", "services", True, "v1", ["svc"])
ENDPOINTSLICE = Kind("EndpointSlice", "endpointslices", True, "discovery.k8s.io/v1", [])
NETWORKPOLICY = Kind("NetworkPolicy", "networkpolicies", True, "networking.k8s.io/v1", ["netpol"])

# The legacy view of EndpointSlices, mirrored by the controllers (kubectl get endpoints).
ENDPOINTS = Kind("Endpoints", "endpoints", True, "v1", ["ep"])
EVENT = Kind("Event", "events", True, "v1", ["ev"])

# HTTP from outside (issue 14): certificates, Ingress and the Gateway API.
SECRET = Kind("Secret", "secrets", True, "v1", [])
INGRESSCLASS = Kind("IngressClass", "ingressclasses", False, "networking.k8s.io/v1", [])
INGRESS = Kind("Ingress", "ingresses", True, "networking.k8s.io/v1", ["ing"])
GATEWAY_API = "gateway.networking.k8s.io/v1"
GATEWAYCLASS = Kind("GatewayClass", "gatewayclasses", False, GATEWAY_API, ["gc"])
GATEWAY = Kind("Gateway", "gateways", True, GATEWAY_API, ["gtw"])
HTTPROUTE = Kind("HTTPRoute", "httproutes", True, GATEWAY_API, [])

# Node heartbeats (issue 12): each agent renews kube-node-lease/<node>, as kubelet does.
LEASE = Kind("Lease", "leases", True, "coordination.k8s.io/v1", [])

# Authorization (issue 12): RBAC, enforced by the API server; ServiceAccounts name identities.
RBAC_API = "rbac.authorization.k8s.io/v1"
ROLE = Kind("Role", "roles", True, RBAC_API, [])
CLUSTERROLE = Kind("ClusterRole", "clusterroles", False, RBAC_API, [])
ROLEBINDING = Kind("RoleBinding", "rolebindings", True, RBAC_API, [])
CLUSTERROLEBINDING = Kind("ClusterRoleBinding", "clusterrolebindings", False, RBAC_API, [])
SERVICEACCOUNT = Kind("ServiceAccount", "serviceaccounts", True, "v1", ["sa"])
# Served for deploy/kubernetes/'s --dry-run=server only (podnet/api/daemonset.py).
DAEMONSET = Kind("DaemonSet", "daemonsets", True, "apps/v1", ["ds"])

KINDS: dict[str, Kind] = {
    k.kind: k
    for k in (
        NAMESPACE,
        NODE,
        POD,
        DEPLOYMENT,
        REPLICASET,
        SERVICE,
        ENDPOINTSLICE,
        ENDPOINTS,
        NETWORKPOLICY,
        EVENT,
        SECRET,
        INGRESSCLASS,
        INGRESS,
        GATEWAYCLASS,
        GATEWAY,
        HTTPROUTE,
        LEASE,
        ROLE,
        CLUSTERROLE,
        ROLEBINDING,
        CLUSTERROLEBINDING,
        SERVICEACCOUNT,
        DAEMONSET,
    )
}

_BY_NAME: dict[str, Kind] = {}
for _k in KINDS.values():
    for _n in (_k.singular, _k.plural, *_k.short_names):
        _BY_NAME[_n] = _k
del _k, _n


def _unknown(name: object) -> ApiError:
    return ApiError("unknown resource type '%s'" % name)


def resolve_kind(name: object) -> Kind:
    """'pods', 'pod', 'Pod', 'po', 'deployments.apps', 'ep', ... -> Kind;
    ApiError("unknown resource type 'x'") for anything else."""
    if isinstance(name, Kind):
        return name
    if not isinstance(name, str) or not name.strip():
        raise _unknown(name)
    low = name.strip().lower()
    k = _BY_NAME.get(low)
    if k is not None:
        return k
    base, _, qualifier = low.partition(".")
    k = _BY_NAME.get(base)
    # kubectl: <resource>.<group> or <resource>.<version>.<group>
    if k is not None and k.group and qualifier in (k.group, "%s.%s" % (k.version, k.group)):
        return k
    raise _unknown(name)


def stored_kind(name: object) -> Kind:
    """resolve_kind, refusing any kind that is not stored."""
    k = resolve_kind(name)
    if not k.stored:
        raise ApiError("%s are not stored" % k.kind)
    return k
