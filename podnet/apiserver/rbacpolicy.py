"""The bootstrap RBAC policy and the authorizer the server calls per request.

As kube-apiserver does at start-up (its "bootstrap-roles" post-start hook),
the default ClusterRoles and ClusterRoleBindings are written to the store
when missing, and brought back to their built-in rules when they carry
`rbac.authorization.kubernetes.io/autoupdate: "true"` (the default), so an
upgrade that gives a component a new verb takes effect; an operator who sets
the annotation to "false" keeps their edit.

Each of podnet's components has its own identity with only the verbs it
uses (found by running the lab with every identity at zero and reading the
403s): the controllers (system:kube-controller-manager), the cluster DNS
(ServiceAccount kube-system/coredns), the ingress controller
(ServiceAccount podnet-ingress/ingress-nginx). Nodes are judged by the Node
authorizer (authz.py), not by a binding.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from aiohttp import web

from podnet.apiserver import authz, errors, resources
from podnet.apiserver.errors import StatusError

log = logging.getLogger("podnet.apiserver")
Obj = dict[str, Any]
RBAC = "rbac.authorization.k8s.io/v1"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
R = ["get", "list", "watch"]


def _rule(groups: list[str], res: list[str], verbs: list[str]) -> Obj:
    return {"apiGroups": groups, "resources": res, "verbs": verbs}


# Read from the API server's decisions while a lab ran examples/lab.yaml,
# a scale, a rollout, a deleted pod, a LoadBalancer Service, an Ingress and a
# Gateway (and from the code: the node lifecycle controller's writes). Every
# write is a read-modify-write (get + update), never a patch.
CONTROLLERS_RULES = [
    _rule([""], ["pods", "services", "nodes", "namespaces", "endpoints"], R),
    _rule([""], ["pods"], ["create", "update", "delete"]),
    _rule([""], ["pods/status", "nodes", "nodes/status", "services/status"], ["update"]),
    _rule([""], ["pods/binding", "namespaces"], ["create"]),
    # `podnet server`'s controllers install the `kubernetes` and `kube-dns`
    # Services (kube-apiserver makes `kubernetes` itself) with their slices
    _rule([""], ["services"], ["create", "update"]),
    _rule([""], ["endpoints"], ["create", "update", "delete"]),
    _rule([""], ["events"], ["get", "create", "update"]),
    _rule(["discovery.k8s.io"], ["endpointslices"], R + ["create", "update", "delete"]),
    _rule(["apps"], ["deployments", "replicasets"], R),
    _rule(["apps"], ["replicasets"], ["create", "update", "delete"]),
    _rule(["apps"], ["deployments", "deployments/status", "replicasets/status"], ["update"]),
    _rule(["coordination.k8s.io"], ["leases"], ["list", "watch"]),
]
DNS_RULES = [
    _rule([""], ["services"], ["list", "watch"]),
    _rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"]),
]
GATEWAYS = ["gatewayclasses", "gateways", "httproutes"]
INGRESS_RULES = [
    _rule([""], ["services", "secrets"], ["list", "watch"]),
    _rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"]),
    _rule(["networking.k8s.io"], ["ingresses", "ingressclasses"], ["list", "watch"]),
    _rule(["networking.k8s.io"], ["ingresses"], ["get"]),
    _rule(["networking.k8s.io"], ["ingresses/status"], ["update"]),
    _rule(["gateway.networking.k8s.io"], GATEWAYS, R),
    _rule(["gateway.networking.k8s.io"], [g + "/status" for g in GATEWAYS], ["update"]),
    _rule([""], ["events"], ["get", "create", "update"]),
]
DISCOVERY = [
    {
        "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/version", "/version/"],
        "verbs": ["get"],
    }
]
# kube's "view", less what it leaves out too (Secrets): a read-only user.
VIEW_RULES = [
    _rule(
        [""], ["pods", "services", "endpoints", "namespaces", "nodes", "events", "pods/status", "services/status"], R
    ),
    _rule(["apps"], ["deployments", "replicasets", "deployments/scale", "replicasets/scale"], R),
    _rule(["discovery.k8s.io"], ["endpointslices"], R),
    _rule(["networking.k8s.io"], ["networkpolicies", "ingresses", "ingressclasses"], R),
    _rule(["gateway.networking.k8s.io"], ["gatewayclasses", "gateways", "httproutes"], R),
    _rule(["coordination.k8s.io"], ["leases"], R),
]

CLUSTER_ROLES: dict[str, list[Obj]] = {
    "cluster-admin": [_rule(["*"], ["*"], ["*"]), {"nonResourceURLs": ["*"], "verbs": ["*"]}],
    "view": VIEW_RULES,
    "system:discovery": DISCOVERY,
    "system:kube-controller-manager": CONTROLLERS_RULES,
    "system:coredns": DNS_RULES,
    "podnet:ingress-nginx": INGRESS_RULES,
}
CLUSTER_BINDINGS: dict[str, tuple[str, list[Obj]]] = {
    "cluster-admin": ("cluster-admin", [{"kind": "Group", "name": authz.MASTERS}]),
    "system:discovery": ("system:discovery", [{"kind": "Group", "name": "system:authenticated"}]),
    "system:kube-controller-manager": (
        "system:kube-controller-manager",
        [{"kind": "User", "name": "system:kube-controller-manager"}],
    ),
    "system:coredns": ("system:coredns", [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]),
    "podnet:ingress-nginx": (
        "podnet:ingress-nginx",
        [{"kind": "ServiceAccount", "name": "ingress-nginx", "namespace": "podnet-ingress"}],
    ),
}


def bootstrap_objects() -> list[Obj]:
    def meta(name: str) -> Obj:  # fresh each time: the objects share nothing
        return {
            "name": name,
            "annotations": {AUTOUPDATE: "true"},
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        }

    out: list[Obj] = []
    for name, rules in CLUSTER_ROLES.items():
        out.append({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": meta(name), "rules": copy.deepcopy(rules)})
    for name, (role, subjects) in CLUSTER_BINDINGS.items():
        subjects = copy.deepcopy(subjects)
        for s in subjects:  # as validation defaults them, so a restart finds nothing to update
            s.setdefault("apiGroup", "" if s["kind"] == "ServiceAccount" else "rbac.authorization.k8s.io")
        out.append(
            {
                "apiVersion": RBAC,
                "kind": "ClusterRoleBinding",
                "metadata": meta(name),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": subjects,
            }
        )
    return out


def ensure_bootstrap(registry: Any) -> int:
    """Write the default policy where missing or auto-updated; -> objects written."""
    n = 0
    for obj in bootstrap_objects():
        res = resources.BY_KIND[obj["kind"]]
        name = obj["metadata"]["name"]
        try:
            live = registry.get(res, None, name)
        except StatusError as exc:
            if exc.code != 404:
                raise
            registry.create(res, None, obj)
            n += 1
            continue
        if (live["metadata"].get("annotations") or {}).get(AUTOUPDATE, "true") != "true":
            continue
        fields = ("rules",) if obj["kind"] == "ClusterRole" else ("roleRef", "subjects")
        if any(live.get(f) != obj[f] for f in fields):
            new = dict(live, **{f: obj[f] for f in fields})
            registry.update(res, None, name, new)
            n += 1
    return n


class Authorizer:
    """Per request: attributes from the URL, the live policy from the cache."""

    def __init__(self, registry: Any):
        self.registry = registry

    def _policy(self) -> authz.Policy:
        reg, by = self.registry, resources.BY_KIND

        def named(items: list[Obj]) -> dict[str, Obj]:
            return {o["metadata"]["name"]: o for o in items}

        return authz.Policy(
            cluster_roles=named(reg.list(by["ClusterRole"], None)),
            cluster_bindings=reg.list(by["ClusterRoleBinding"], None),
            roles=lambda ns: named(reg.list(by["Role"], ns)),
            bindings=lambda ns: reg.list(by["RoleBinding"], ns),
        )

    def _pod_node(self, ns: str, name: str) -> str | None:
        try:
            pod = self.registry.get(resources.BY_KIND["Pod"], ns, name)
        except StatusError:
            return None
        return str((pod.get("spec") or {}).get("nodeName") or "")  # "": not bound to any node

    async def check(self, request: web.Request, who: dict[str, Any]) -> None:
        groups = list(who.get("groups") or ()) + ["system:authenticated"]
        a = authz.request_attrs(request.method, request.path, request.query, str(who.get("user", "")), groups)
        if authz.MASTERS in a.groups:
            return
        body_name = ""
        if a.verb == "create" and a.resource_request and not a.name and authz.node_name(a) is not None:
            body_name = await _body_name(request)
        d = authz.decide(a, self._policy, self._pod_node, body_name)
        if d.allowed:
            return
        msg = authz.forbidden_message(a, d.reason)
        log.info("forbidden: %s", msg)
        raise StatusError(
            403, "Forbidden", msg, {"name": a.name or body_name, "group": a.api_group, "kind": a.resource}
        )


async def _body_name(request: web.Request) -> str:
    """The name in a create's body (aiohttp keeps the bytes: the handler reads them again)."""
    import json

    try:
        raw = await request.read()
        body = json.loads(raw or b"{}")
        return str(((body or {}).get("metadata") or {}).get("name") or "")
    except (ValueError, AttributeError):
        return ""


__all__ = ["Authorizer", "ensure_bootstrap", "bootstrap_objects", "errors"]
