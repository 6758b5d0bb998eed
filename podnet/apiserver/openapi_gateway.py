"""The OpenAPI schemas of the Gateway API kinds podnet serves (GatewayClass,
Gateway, HTTPRoute of gateway.networking.k8s.io/v1), written here because
the official Python client, where schema.py takes every other kind from,
has no models for them.

Each structure lists every field of the Gateway API v1 standard channel,
also those podnet refuses (podnet.api.support.UNSUPPORTED): a field missing
from the schema would be pruned by field validation (with only a warning)
before the validator could say that podnet does not do it. Names follow
kube-apiserver's for CRDs (`io.k8s.networking.gateway.v1.Gateway`).
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
GROUP, VERSION = "gateway.networking.k8s.io", "v1"
PREFIX = "io.k8s.networking.gateway.v1."
_REF = "#/components/schemas/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."

# Type: field:type ... ; types: s string, i integer, b boolean, o free-form object, m string map,
# [x] a list of x, anything else a structure here (or meta.X: apimachinery's).
_TYPES = """\
GatewayClass: apiVersion:s kind:s metadata:meta.ObjectMeta spec:GatewayClassSpec status:GatewayClassStatus
GatewayClassSpec: controllerName:s description:s parametersRef:ParametersReference
ParametersReference: group:s kind:s name:s namespace:s
GatewayClassStatus: conditions:[meta.Condition] supportedFeatures:[SupportedFeature]
SupportedFeature: name:s
Gateway: apiVersion:s kind:s metadata:meta.ObjectMeta spec:GatewaySpec status:GatewayStatus
GatewaySpec: gatewayClassName:s listeners:[Listener] addresses:[GatewaySpecAddress] infrastructure:o
    allowedListeners:o backendTLS:o tls:o
GatewaySpecAddress: type:s value:s
Listener: name:s hostname:s port:i protocol:s tls:GatewayTLSConfig allowedRoutes:AllowedRoutes
GatewayTLSConfig: mode:s certificateRefs:[SecretObjectReference] options:m
SecretObjectReference: group:s kind:s name:s namespace:s
AllowedRoutes: namespaces:RouteNamespaces kinds:[RouteGroupKind]
RouteNamespaces: from:s selector:meta.LabelSelector
RouteGroupKind: group:s kind:s
GatewayStatus: addresses:[GatewayStatusAddress] conditions:[meta.Condition] listeners:[ListenerStatus]
GatewayStatusAddress: type:s value:s
ListenerStatus: name:s supportedKinds:[RouteGroupKind] attachedRoutes:i conditions:[meta.Condition]
HTTPRoute: apiVersion:s kind:s metadata:meta.ObjectMeta spec:HTTPRouteSpec status:HTTPRouteStatus
HTTPRouteSpec: parentRefs:[ParentReference] hostnames:[s] rules:[HTTPRouteRule]
ParentReference: group:s kind:s namespace:s name:s sectionName:s port:i
HTTPRouteRule: name:s matches:[HTTPRouteMatch] filters:[HTTPRouteFilter] backendRefs:[HTTPBackendRef] timeouts:o
    retry:o sessionPersistence:o
HTTPRouteMatch: path:HTTPPathMatch headers:[HTTPHeaderMatch] queryParams:[HTTPQueryParamMatch] method:s
HTTPPathMatch: type:s value:s
HTTPHeaderMatch: type:s name:s value:s
HTTPQueryParamMatch: type:s name:s value:s
HTTPRouteFilter: type:s requestHeaderModifier:HTTPHeaderFilter responseHeaderModifier:HTTPHeaderFilter
    requestMirror:o requestRedirect:HTTPRequestRedirectFilter urlRewrite:HTTPURLRewriteFilter extensionRef:o cors:o
    externalAuth:o
HTTPHeaderFilter: set:[HTTPHeader] add:[HTTPHeader] remove:[s]
HTTPHeader: name:s value:s
HTTPURLRewriteFilter: hostname:s path:HTTPPathModifier
HTTPPathModifier: type:s replaceFullPath:s replacePrefixMatch:s
HTTPRequestRedirectFilter: scheme:s hostname:s path:HTTPPathModifier port:i statusCode:i
HTTPBackendRef: group:s kind:s name:s namespace:s port:i weight:i filters:[HTTPRouteFilter]
HTTPRouteStatus: parents:[RouteParentStatus]
RouteParentStatus: parentRef:ParentReference controllerName:s conditions:[meta.Condition]"""

_REQUIRED = {
    "GatewayClassSpec": ["controllerName"],
    "GatewayClass": ["spec"],
    "Gateway": ["spec"],
    "GatewaySpec": ["gatewayClassName", "listeners"],
    "Listener": ["name", "port", "protocol"],
    "SecretObjectReference": ["name"],
    "RouteGroupKind": ["kind"],
    "ParentReference": ["name"],
    "HTTPHeaderMatch": ["name", "value"],
    "HTTPQueryParamMatch": ["name", "value"],
    "HTTPRouteFilter": ["type"],
    "HTTPHeader": ["name", "value"],
    "HTTPPathModifier": ["type"],
    "HTTPBackendRef": ["name"],
    "HTTPRouteStatus": ["parents"],
}
_DOCS = {
    "GatewayClass": "GatewayClass describes a class of Gateways available to the user for creating Gateway "
    "resources; spec.controllerName names the controller that manages Gateways of this class.",
    "Gateway": "Gateway represents an instance of a service-traffic handling infrastructure by binding Listeners "
    "to a set of IP addresses.",
    "HTTPRoute": "HTTPRoute provides a way to route HTTP requests: it matches requests by hostname, path, header "
    "or query parameter and sends them to backends (Services).",
}
# Lists merged by a key, as the CRDs declare them (x-kubernetes-list-type map).
_MAP_LISTS = {("GatewaySpec", "listeners"): ["name"], ("GatewayStatus", "listeners"): ["name"]}
KINDS = ("GatewayClass", "Gateway", "HTTPRoute")


def table() -> dict[str, dict[str, str]]:
    """{structure: {field: type code}} from _TYPES."""
    out: dict[str, dict[str, str]] = {}
    for line in _TYPES.replace("\n    ", " ").splitlines():
        name, _, fields = line.partition(": ")
        out[name] = dict(f.split(":", 1) for f in fields.split())
    return out


def _schema(code: str) -> Obj:
    if code.startswith("["):
        return {"type": "array", "items": _schema(code[1:-1])}
    simple = {"s": {"type": "string"}, "i": {"type": "integer", "format": "int32"}, "b": {"type": "boolean"}}
    if code in simple:
        return dict(simple[code])
    if code == "o":
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if code == "m":
        return {"type": "object", "additionalProperties": {"type": "string"}}
    name = _META + code[5:] if code.startswith("meta.") else PREFIX + code
    return {"$ref": _REF + name}


def definitions() -> tuple[dict[str, Obj], dict[tuple[str, str, str], str]]:
    """-> (definitions by name, {(group, version, kind): definition name}) for the kinds and their Lists."""
    defs: dict[str, Obj] = {}
    kinds: dict[tuple[str, str, str], str] = {}
    for name, fields in table().items():
        props = {}
        for f, code in fields.items():
            props[f] = _schema(code)
            if (name, f) in _MAP_LISTS:
                props[f].update({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": _MAP_LISTS[(name, f)]})
        d: Obj = {"properties": props, "type": "object"}
        if name in _DOCS:
            d["description"] = _DOCS[name]
        if name in _REQUIRED:
            d["required"] = _REQUIRED[name]
        defs[PREFIX + name] = d
    for kind in KINDS:
        gvk = {"group": GROUP, "kind": kind, "version": VERSION}
        defs[PREFIX + kind]["x-kubernetes-group-version-kind"] = [gvk]
        defs[PREFIX + kind + "List"] = {
            "description": "%sList is a list of %s." % (kind, kind),
            "properties": {
                "apiVersion": {"type": "string"},
                "items": {"type": "array", "items": {"$ref": _REF + PREFIX + kind}},
                "kind": {"type": "string"},
                "metadata": {"$ref": _REF + _META + "ListMeta"},
            },
            "required": ["items"],
            "type": "object",
            "x-kubernetes-group-version-kind": [{**gvk, "kind": kind + "List"}],
        }
        kinds[(GROUP, VERSION, kind)] = PREFIX + kind
        kinds[(GROUP, VERSION, kind + "List")] = PREFIX + kind + "List"
    return defs, kinds
