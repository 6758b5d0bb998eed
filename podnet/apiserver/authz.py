"""Authorization with kube-apiserver's semantics: the Node authorizer, then RBAC.

Pure: a request becomes `Attrs` (what kube-apiserver's RequestInfoFactory
reads from the URL: verb, API group, resource, subresource, namespace, name),
and `decide` answers from the RBAC objects it is handed and, for node
credentials, from the pod -> node binding it is asked about. No I/O here;
server.py hands in the live Roles/Bindings from the watch cache, so a new
RoleBinding takes effect on the next request.

Order, as `--authorization-mode=Node,RBAC`: a node's credential
(user system:node:NAME, group system:nodes) is judged by the Node
authorizer alone -- it may write only its own Node, its own Lease and the
status of the pods bound to it, and read what an agent reads. Everyone else
is judged by RBAC: ClusterRoleBindings, then the RoleBindings of the
request's namespace. Group system:masters may do anything (kube-apiserver
hard-wires it too, so a broken policy cannot lock the admin out).

A refusal is a 403 whose message is kube-apiserver's own wording:
`pods "web-1" is forbidden: User "alice" cannot delete resource "pods" in
API group "" in the namespace "default"`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
MASTERS = "system:masters"
NODES = "system:nodes"
NODE_PREFIX = "system:node:"
LEASE_NS = "kube-node-lease"
READ = ("get", "list", "watch")


@dataclass(frozen=True)
class Attrs:
    user: str
    groups: tuple[str, ...]
    verb: str
    resource_request: bool = True
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = "/"

    @property
    def full_resource(self) -> str:
        return self.resource + ("/" + self.subresource if self.subresource else "")


@dataclass
class Decision:
    allowed: bool
    reason: str = ""


@dataclass
class Policy:
    """The RBAC objects in force (dicts as stored)."""

    cluster_roles: Mapping[str, Obj] = field(default_factory=dict)
    cluster_bindings: Iterable[Obj] = ()
    roles: Callable[[str], Mapping[str, Obj]] = lambda ns: {}
    bindings: Callable[[str], Iterable[Obj]] = lambda ns: ()


# ---- the request --------------------------------------------------------------


def request_attrs(method: str, path: str, query: Mapping[str, str], user: str, groups: Iterable[str]) -> Attrs:
    """kube-apiserver's RequestInfo for a URL (its verbs: get list watch create
    update patch delete deletecollection; anything else is a non-resource URL)."""
    groups = tuple(groups)
    parts = [p for p in path.split("/") if p]
    http_verb = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch"}.get(
        method.upper(), "delete" if method.upper() == "DELETE" else method.lower()
    )
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return Attrs(user, groups, http_verb, resource_request=False, path=path)
    ns = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        ns, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) == 2:
        # /api/v1/namespaces/NAME is the namespace itself, in the namespace NAME
        ns = rest[1]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = "/".join(rest[2:])
    verb = http_verb
    watch = str(query.get("watch", "")).lower() in ("1", "true")
    if verb == "get" and not name:
        verb = "watch" if watch else "list"
    elif verb == "get" and watch:
        verb = "watch"
    elif verb == "delete" and not name:
        verb = "deletecollection"
    return Attrs(user, groups, verb, True, group, resource, sub, ns, name, path)


# ---- RBAC rules ---------------------------------------------------------------


def _has(values: Iterable[str] | None, want: str) -> bool:
    vals = list(values or ())
    return "*" in vals or want in vals


def rule_allows(rule: Mapping[str, Any], a: Attrs) -> bool:
    if not _has(rule.get("verbs"), a.verb):
        return False
    if not a.resource_request:
        for url in rule.get("nonResourceURLs") or ():
            if url == a.path or url == "*" or (url.endswith("*") and a.path.startswith(url[:-1])):
                return True
        return False
    if not _has(rule.get("apiGroups"), a.api_group):
        return False
    res = list(rule.get("resources") or ())
    wanted = a.full_resource
    if not (
        "*" in res
        or wanted in res
        or (a.subresource and "*/" + a.subresource in res)
        or (a.subresource and a.resource + "/*" in res)
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def _subject_matches(s: Mapping[str, Any], a: Attrs, binding_ns: str) -> bool:
    kind, name = s.get("kind"), s.get("name")
    if kind == "User":
        return bool(name == a.user)
    if kind == "Group":
        return name in a.groups
    if kind == "ServiceAccount":
        return a.user == "system:serviceaccount:%s:%s" % (s.get("namespace") or binding_ns, name)
    return False


def rbac_allows(a: Attrs, policy: Policy) -> bool:
    for b in policy.cluster_bindings:
        ref = b.get("roleRef") or {}
        if ref.get("kind") != "ClusterRole":
            continue
        if not any(_subject_matches(s, a, "") for s in b.get("subjects") or ()):
            continue
        role = policy.cluster_roles.get(ref.get("name", ""))
        if role and any(rule_allows(r, a) for r in role.get("rules") or ()):
            return True
    if not a.namespace or not a.resource_request:
        return False
    roles = policy.roles(a.namespace)
    for b in policy.bindings(a.namespace):
        if not any(_subject_matches(s, a, a.namespace) for s in b.get("subjects") or ()):
            continue
        ref = b.get("roleRef") or {}
        role = (policy.cluster_roles if ref.get("kind") == "ClusterRole" else roles).get(ref.get("name", ""))
        if role and any(rule_allows(r, a) for r in role.get("rules") or ()):
            return True
    return False


# ---- the Node authorizer ------------------------------------------------------

# What every node may do regardless of the object (kube's system:node rules,
# cut to what podnet's agent does: it routes, proxies Services, enforces
# NetworkPolicy and runs pods).
NODE_RULES: list[Obj] = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": list(READ)},
    {"apiGroups": [""], "resources": ["pods"], "verbs": list(READ)},
    {"apiGroups": [""], "resources": ["services", "endpoints", "namespaces"], "verbs": list(READ)},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": list(READ)},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": list(READ)},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
]


def node_name(a: Attrs) -> str | None:
    if NODES in a.groups and a.user.startswith(NODE_PREFIX):
        return a.user[len(NODE_PREFIX) :]
    return None


def node_decide(a: Attrs, node: str, pod_node: Callable[[str, str], str | None], body_name: str = "") -> Decision:
    """The Node authorizer. `pod_node(ns, name)` -> the node a pod is bound to
    ("" unbound, None: no such pod); `body_name` is the object's name on a create."""
    if not a.resource_request:
        return Decision(a.verb == "get", "")
    target = a.name or body_name
    if a.api_group == "" and a.resource == "nodes":
        if a.verb in READ and not a.subresource:
            return Decision(True)
        if a.verb in ("create", "update", "patch", "delete") and a.subresource in ("", "status"):
            if target == node:
                return Decision(True)
            return Decision(False, "node '%s' cannot modify node '%s'" % (node, target))
        return Decision(False)
    if a.api_group == "coordination.k8s.io" and a.resource == "leases":
        if a.namespace != LEASE_NS or a.verb not in ("get", "create", "update", "patch", "delete"):
            return Decision(False, "can only access node lease with the same name as the requesting node")
        if target != node:
            return Decision(False, "can only access node lease with the same name as the requesting node")
        return Decision(True)
    if (
        a.api_group == ""
        and a.resource == "pods"
        and (a.subresource == "status" and a.verb in ("update", "patch") or a.verb == "delete" and not a.subresource)
    ):
        bound = pod_node(a.namespace, a.name)
        # No such pod: nothing to change, so the request goes on to its 404
        # (a kubelet's last delete of a pod already gone is not an error).
        if bound == node or bound is None:
            return Decision(True)
        return Decision(
            False, "node '%s' can only modify pods bound to it, not pod %s/%s" % (node, a.namespace, a.name)
        )
    if a.api_group == "" and a.resource == "pods" and a.subresource == "status" and a.verb == "get":
        return Decision(True)  # it reads every pod; kubectl patch reads before it writes
    if any(rule_allows(r, a) for r in NODE_RULES):
        return Decision(True)
    return Decision(False)


def decide(
    a: Attrs,
    policy: Policy | Callable[[], Policy],
    pod_node: Callable[[str, str], str | None] = lambda ns, n: "",
    body_name: str = "",
) -> Decision:
    """policy may be a function: the RBAC objects are then read only when
    the Node authorizer has not decided (most of an agent's requests)."""
    if MASTERS in a.groups:
        return Decision(True)
    node = node_name(a)
    if node is not None:
        d = node_decide(a, node, pod_node, body_name)
        if d.allowed or d.reason:
            return d
    return Decision(rbac_allows(a, policy if isinstance(policy, Policy) else policy()))


# ---- the refusal --------------------------------------------------------------


def forbidden_message(a: Attrs, reason: str = "") -> str:
    """kube-apiserver's words (staging/.../endpoints/handlers/responsewriters/errors.go)."""
    if not a.resource_request:
        msg = 'forbidden: User "%s" cannot %s path "%s"' % (a.user, a.verb, a.path)
    else:
        where = 'in the namespace "%s"' % a.namespace if a.namespace else "at the cluster scope"
        what = '%s "%s"' % (_qualified(a), a.name) if a.name else _qualified(a)
        msg = '%s is forbidden: User "%s" cannot %s resource "%s" in API group "%s" %s' % (
            what,
            a.user,
            a.verb,
            a.full_resource,
            a.api_group,
            where,
        )
    return msg + (": " + reason if reason else "")


def _qualified(a: Attrs) -> str:
    return a.resource + ("." + a.api_group if a.api_group else "")
