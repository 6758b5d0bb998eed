"""validate(obj) and parse_manifests(text): the one door objects come in by.

validate returns a normalized deep copy (defaults filled, nulls dropped where
podnet reads the field) or raises FieldError '<path>: <what is allowed>'.
parse_manifests reads a YAML stream, validates every document first and only
then returns them all, so a caller changes nothing when any one is bad:

    web.yaml: document 2 (Deployment/web): spec.template.spec.containers[0].ports[1].containerPort: must be 1-65535
"""

from collections.abc import Callable

import yaml

from podnet.api.daemonset import daemon_set
from podnet.api.events import endpoints, event
from podnet.api.fields import Check, join, opt_map, opt_str, shown, str_map, typename
from podnet.api.gateway import gateway, gateway_class, http_route
from podnet.api.ingress import ingress, ingress_class, secret
from podnet.api.kinds import KINDS, Kind, resolve_kind
from podnet.api.lease import lease
from podnet.api.meta import ApiError, FieldError, ManifestError, dns1035_label, dns_label, dns_subdomain, fail
from podnet.api.network import endpoint_slice, network_policy, node, service
from podnet.api.podspec import pod_spec, workload
from podnet.api.rbac import binding, cluster_role, path_segment_name, role, service_account
from podnet.api.types import JSON, Obj

# Object names: Kubernetes' ValidateObjectMeta name function per kind.
_NAME_RULES: dict[str, Check] = {
    "Namespace": dns_label,
    "Service": dns1035_label,
    "Role": path_segment_name,
    "ClusterRole": path_segment_name,
    "RoleBinding": path_segment_name,
    "ClusterRoleBinding": path_segment_name,
}


def _copy(v: object, path: str = "", depth: int = 0) -> JSON:
    """A JSON-shaped deep copy: no shared sub-objects (YAML aliases), no
    non-JSON values (dates, bytes, sets), no endless nesting."""
    if depth > 64:
        fail(path, "nested too deeply (a recursive YAML alias?)")
    if isinstance(v, dict):
        out: Obj = {}
        for k, x in v.items():
            if not isinstance(k, str):
                fail(join(path, str(k)), "keys must be strings, got %s %s (quote it)" % (typename(k), shown(k)))
            out[k] = _copy(x, join(path, k), depth + 1)
        return out
    if isinstance(v, list):
        return [_copy(x, "%s[%d]" % (path, i), depth + 1) for i, x in enumerate(v)]
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    fail(path, "must be a JSON value (string, number, boolean, list or mapping), got %s" % typename(v))


def _metadata(obj: Obj, kind: Kind) -> Obj:
    meta = opt_map(obj, "metadata", "", required=True)
    opt_str(meta, "name", "metadata", required=True, check=_NAME_RULES.get(kind.kind, dns_subdomain))
    if kind.namespaced:
        if not meta.get("namespace"):
            meta["namespace"] = "default"
        opt_str(meta, "namespace", "metadata", check=dns_label)
    else:
        # Kubernetes ignores a namespace on cluster-scoped objects: drop it.
        meta.pop("namespace", None)
    str_map(meta, "labels", "metadata")
    str_map(meta, "annotations", "metadata", labels=False)
    return meta


def _pod(obj: Obj) -> Obj:
    pod_spec(opt_map(obj, "spec", "", required=True), "spec")
    return obj


_BY_KIND: dict[str, Callable[[Obj], Obj]] = {
    "Namespace": lambda o: o,
    "Node": node,
    "Pod": _pod,
    "Deployment": lambda o: workload(o, "Deployment"),
    "ReplicaSet": lambda o: workload(o, "ReplicaSet"),
    "Service": service,
    "EndpointSlice": endpoint_slice,
    "NetworkPolicy": network_policy,
    "Endpoints": endpoints,
    "Event": event,
    "Secret": secret,
    "IngressClass": ingress_class,
    "Ingress": ingress,
    "GatewayClass": gateway_class,
    "Gateway": gateway,
    "HTTPRoute": http_route,
    "Lease": lease,
    "Role": role,
    "ClusterRole": cluster_role,
    "RoleBinding": binding,
    "ClusterRoleBinding": binding,
    "ServiceAccount": service_account,
    "DaemonSet": daemon_set,
}


def validate(obj: object) -> Obj:
    """A validated, defaulted deep copy of obj; raises FieldError (an ApiError)."""
    if not isinstance(obj, dict):
        raise FieldError("", "must be a mapping (a Kubernetes object), got %s" % typename(obj))
    return _validate(_copy(obj))


def _validate(obj: Obj) -> Obj:
    k = obj.get("kind")
    if k is None:
        fail("kind", "required")
    if not isinstance(k, str) or k not in KINDS:
        hint = ""
        try:
            guess = resolve_kind(k) if isinstance(k, str) else None
        except ApiError:
            guess = None
        if guess is not None:
            hint = " (did you mean %s?)" % guess.kind
        fail("kind", "unknown kind %s%s; podnet knows %s" % (shown(k), hint, ", ".join(sorted(KINDS))))
    kind = KINDS[k]
    v = obj.get("apiVersion")
    if v is None:
        fail("apiVersion", "required (%s for %s)" % (kind.api_version, k))
    if v != kind.api_version:
        fail("apiVersion", "must be %s for %s, got %s" % (kind.api_version, k, shown(v)))
    _metadata(obj, kind)
    return _BY_KIND[k](obj)


# ---- YAML ---------------------------------------------------------------------

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class _Loader(_BaseLoader):
    """Safe YAML as Kubernetes reads it: timestamps stay strings, a mapping
    may not repeat a key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for knode, _ in node.value:
                if isinstance(knode, yaml.ScalarNode) and knode.tag != "tag:yaml.org,2002:merge":
                    if knode.value in seen:
                        raise yaml.constructor.ConstructorError(
                            None,
                            None,
                            "duplicate key '%s' (first on line %d)" % (knode.value, seen[knode.value] + 1),
                            knode.start_mark,
                        )
                    seen[knode.value] = knode.start_mark.line
        return super().construct_mapping(node, deep)


# No implicit timestamps (creationTimestamp stays a string) and no '=' value
# tag (PyYAML cannot construct it: a bare '=' is just a string).
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str | bytes, source: str = "<stdin>") -> list[JSON]:
    """All documents of a YAML stream (None for empty ones), or ManifestError
    naming source, line and column."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ManifestError("%s: not UTF-8 text (byte %d)" % (source, e.start), source) from None
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = "line %d, column %d: " % (mark.line + 1, mark.column + 1) if mark else ""
        what = e.problem or e.context or "invalid YAML"
        if e.problem and e.context:
            what += " (%s%s)" % (e.context, " started on line %d" % (e.context_mark.line + 1) if e.context_mark else "")
        raise ManifestError("%s: %s%s" % (source, where, what), source) from None
    except yaml.YAMLError as e:
        raise ManifestError("%s: invalid YAML: %s" % (source, e), source) from None


def _ref(doc: object) -> str:
    if not isinstance(doc, dict):
        return ""
    kind, meta = doc.get("kind"), doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if isinstance(kind, str) and isinstance(name, str):
        return " (%s/%s)" % (kind, name)
    if isinstance(kind, str):
        return " (%s)" % kind
    return ""


def _is_list(doc: object) -> bool:
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        return False
    k = doc["kind"]
    return k == "List" or (k.endswith("List") and k[:-4] in KINDS)


def parse_manifests(text: str | bytes, source: str = "<stdin>") -> list[Obj]:
    """Every object in a YAML stream (several documents, kind: List expanded),
    each validated and defaulted. Raises ManifestError for the first bad one
    before returning anything."""
    out: list[Obj] = []
    for n, doc in enumerate(load_yaml(text, source), 1):
        if doc is None:
            continue
        where = "document %d" % n
        if _is_list(doc):
            items = doc.get("items")
            if items is not None and not isinstance(items, list):
                raise ManifestError(
                    "%s: %s%s: items: must be a list, got %s" % (source, where, _ref(doc), typename(items)),
                    source,
                    n,
                    "items",
                )
            todo = [("%s item %d" % (where, i + 1), item) for i, item in enumerate(items or [])]
        else:
            todo = [(where, doc)]
        for label, item in todo:
            try:
                out.append(validate(item))
            except ApiError as e:
                raise ManifestError(
                    "%s: %s%s: %s" % (source, label, _ref(item), e), source, n, getattr(e, "path", None)
                ) from None
    return out
