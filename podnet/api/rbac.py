"""Validation of the RBAC kinds (rbac.authorization.k8s.io/v1): Role,
ClusterRole, RoleBinding, ClusterRoleBinding; and of ServiceAccount.

The API server enforces what these say (podnet/apiserver/authz.py), so a
field it would not act on is refused rather than stored: aggregationRule
(ClusterRole aggregation is not done), a subject kind other than User,
Group or ServiceAccount, a roleRef to another kind.
"""

from podnet.api.fields import opt_maps, opt_str, str_list
from podnet.api.meta import fail
from podnet.api.types import Obj

GROUP = "rbac.authorization.k8s.io"
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "*")


def _only(obj: Obj, keys: tuple[str, ...], base: str = "") -> None:
    for key in obj:
        if key not in keys:
            fail((base + "." if base else "") + key, "unknown field")


def _rules(obj: Obj) -> None:
    for rule, p in opt_maps(obj, "rules", ""):
        _only(rule, ("apiGroups", "resources", "resourceNames", "verbs", "nonResourceURLs"), p)
        verbs = str_list(rule, "verbs", p, required=True, nonempty=True)
        for i, v in enumerate(verbs):
            if v not in VERBS and not v.islower():
                fail("%s.verbs[%d]" % (p, i), "not a verb: %r" % v)
        urls = str_list(rule, "nonResourceURLs", p) or []
        res = str_list(rule, "resources", p) or []
        groups = str_list(rule, "apiGroups", p)
        str_list(rule, "resourceNames", p)
        if urls and res:
            fail(p, "rules cannot apply to both regular resources and non-resource URLs")
        if not urls and not res:
            fail(p + ".resources", "Required value: resource rules must supply at least one resource")
        if res and groups is None:
            fail(p + ".apiGroups", "Required value: resource rules must supply at least one api group")


def role(obj: Obj) -> Obj:
    _only(obj, ("apiVersion", "kind", "metadata", "rules"))
    obj.setdefault("rules", [])
    _rules(obj)
    return obj


def cluster_role(obj: Obj) -> Obj:
    if "aggregationRule" in obj:
        fail("aggregationRule", "not supported: podnet does not aggregate ClusterRoles; list the rules")
    return role(obj)


def binding(obj: Obj) -> Obj:
    _only(obj, ("apiVersion", "kind", "metadata", "subjects", "roleRef"))
    cluster = obj.get("kind") == "ClusterRoleBinding"
    ref_kinds = ("ClusterRole",) if cluster else ("Role", "ClusterRole")
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        fail("roleRef", "Required value")
    _only(ref, ("apiGroup", "kind", "name"), "roleRef")
    if ref.get("apiGroup", GROUP) != GROUP:
        fail("roleRef.apiGroup", "Unsupported value: %r: supported values: %r" % (ref.get("apiGroup"), GROUP))
    ref["apiGroup"] = GROUP
    if ref.get("kind") not in ref_kinds:
        fail("roleRef.kind", "Unsupported value: %r: supported values: %s" % (ref.get("kind"), ", ".join(ref_kinds)))
    opt_str(ref, "name", "roleRef", required=True, nonempty=True)
    for s, p in opt_maps(obj, "subjects", ""):
        _only(s, ("kind", "name", "namespace", "apiGroup"), p)
        kind = opt_str(s, "kind", p, required=True)
        opt_str(s, "name", p, required=True, nonempty=True)
        if kind == "ServiceAccount":
            if cluster and not s.get("namespace"):
                fail(p + ".namespace", "Required value")
            s.setdefault("apiGroup", "")
        elif kind in ("User", "Group"):
            s.setdefault("apiGroup", GROUP)
        else:
            fail(p + ".kind", "Unsupported value: %r: supported values: ServiceAccount, User, Group" % kind)
    return obj


def service_account(obj: Obj) -> Obj:
    # Tokens are not minted from ServiceAccounts (no TokenRequest): a
    # ServiceAccount names an identity that bindings refer to.
    _only(obj, ("apiVersion", "kind", "metadata", "automountServiceAccountToken"))
    if "automountServiceAccountToken" in obj and not isinstance(obj["automountServiceAccountToken"], bool):
        fail("automountServiceAccountToken", "must be a boolean")
    return obj


def path_segment_name(value: object) -> str | None:
    """RBAC names are path segments (kube's ValidatePathSegmentName): "system:node" is fine."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if value in (".", "..") or "/" in value or "%" in value:
        return "may not be '.' or '..' and may not contain '/' or '%%': %r" % value
    return None
