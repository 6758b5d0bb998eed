"""Validation and defaults of GatewayClass, Gateway and HTTPRoute
(gateway.networking.k8s.io/v1, issue 14).

The rules are the Gateway API CRDs' (OpenAPI constraints, defaults and CEL
rules of the standard channel), with their wording where it helps a search.
What podnet's data plane does not do (TCP, UDP and TLS listeners, mirrors,
extension filters, regular expressions, cross-namespace references without
ReferenceGrant, ...) is refused with its field path (support.py): nothing is
stored and then ignored.
"""

import re

from podnet.api import support
from podnet.api.fields import check_int, index, join, opt_enum, opt_int, opt_map, opt_maps, opt_str, shown, str_list
from podnet.api.ingress import controller_error, host_error, invalid
from podnet.api.meta import dns1035_label, dns_label, dns_subdomain, fail
from podnet.api.types import Obj

GROUP = "gateway.networking.k8s.io"
PROTOCOLS = ("HTTP", "HTTPS")
_OTHER_PROTOCOLS = ("TLS", "TCP", "UDP")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
FILTERS = ("RequestHeaderModifier", "URLRewrite", "RequestRedirect")
_OTHER_FILTERS = {
    "ResponseHeaderModifier": "podnet's HTTPRoute modifies request headers only",
    "RequestMirror": "podnet does not mirror requests",
    "ExtensionRef": "podnet has no filter extensions",
    "CORS": "podnet does not answer CORS requests",
    "ExternalAuth": "podnet has no external authorization",
}
# the field of HTTPRouteFilter that goes with each type
_FILTER_FIELD = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "ExtensionRef": "extensionRef",
    "CORS": "cors",
    "ExternalAuth": "externalAuth",
}
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
_BAD_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F", "#")
_BAD_SUFFIXES = ("/..", "/.")
_PENDING = "Waiting for controller"
_EPOCH = "1970-01-01T00:00:00Z"  # the CRDs' default lastTransitionTime


def _pending(*types: str) -> Obj:
    """The status the CRDs default a new GatewayClass or Gateway to."""
    return {
        "conditions": [
            {"type": t, "status": "Unknown", "reason": "Pending", "message": _PENDING, "lastTransitionTime": _EPOCH}
            for t in types
        ]
    }


def _max(items: list[tuple[Obj, str]], path: str, most: int) -> None:
    if len(items) > most:
        fail(path, "Too many: %d: must have at most %d items" % (len(items), most))


def _precise_host(d: Obj, key: str, base: str, wildcard: bool) -> str | None:
    host = opt_str(d, key, base)
    if host is not None:
        why = host_error(host, wildcard) if host else "must not be empty"
        if why:
            invalid(join(base, key), host, why)
    return host


def _group_kind(d: Obj, base: str, group: str, kind: str, what: str) -> None:
    """group and kind of a reference: defaulted, and only the one podnet serves."""
    g = opt_str(d, "group", base, default=group)
    k = opt_str(d, "kind", base, default=kind)
    if g != group:
        fail(join(base, "group"), "not supported by podnet: %s (got %s)" % (what, shown(g)))
    if k != kind:
        fail(join(base, "kind"), "not supported by podnet: %s (got %s)" % (what, shown(k)))


def _same_namespace(d: Obj, base: str, ns: str, what: str) -> None:
    other = opt_str(d, "namespace", base, check=dns_label)
    if other is not None and other != ns:
        fail(
            join(base, "namespace"),
            "not supported by podnet: %s in another namespace needs a ReferenceGrant, which podnet does not have"
            " (got %s)" % (what, shown(other)),
        )


def _namespace(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "default")


# ---- GatewayClass ---------------------------------------------------------------


def gateway_class(obj: Obj) -> Obj:
    spec = opt_map(obj, "spec", "", required=True)
    support.check(spec, "spec", "GatewayClassSpec")
    opt_str(spec, "controllerName", "spec", required=True, check=controller_error)
    desc = opt_str(spec, "description", "spec")
    if desc is not None and len(desc) > 64:
        fail("spec.description", "Too long: may not be more than 64 bytes")
    if obj.get("status") in (None, {}):
        obj["status"] = _pending("Accepted")
    return obj


# ---- Gateway --------------------------------------------------------------------


def _listener_tls(listener: Obj, lp: str, protocol: str, ns: str) -> None:
    tls = opt_map(listener, "tls", lp)
    if protocol == "HTTP":
        if tls is not None:
            fail(join(lp, "tls"), "Forbidden: tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']")
        return
    if tls is None:
        fail(join(lp, "tls"), "Required value: tls must be specified for protocols ['HTTPS', 'TLS']")
    tp = join(lp, "tls")
    support.check(tls, tp, "GatewayTLSConfig")
    mode = opt_enum(tls, "mode", tp, ("Terminate", "Passthrough"), default="Terminate")
    if mode == "Passthrough":
        fail(join(tp, "mode"), "not supported by podnet: its gateway terminates TLS (got 'Passthrough')")
    refs = opt_maps(tls, "certificateRefs", tp)
    if not refs:
        fail(join(tp, "certificateRefs"), "Required value: certificateRefs must be specified when mode is Terminate")
    _max(refs, join(tp, "certificateRefs"), 64)
    for ref, rp in refs:
        support.check(ref, rp, "SecretObjectReference")
        _group_kind(ref, rp, "", "Secret", "podnet's gateway takes certificates from Secrets (core group)")
        opt_str(ref, "name", rp, required=True, check=dns_subdomain)
        _same_namespace(ref, rp, ns, "a certificate")


def _allowed_routes(listener: Obj, lp: str) -> None:
    allowed = opt_map(listener, "allowedRoutes", lp)
    if allowed is None:
        allowed = listener["allowedRoutes"] = {}
    ap = join(lp, "allowedRoutes")
    support.check(allowed, ap, "AllowedRoutes")
    nss = opt_map(allowed, "namespaces", ap)
    if nss is None:
        nss = allowed["namespaces"] = {}
    np = join(ap, "namespaces")
    support.check(nss, np, "RouteNamespaces")
    frm = opt_enum(nss, "from", np, ("All", "Same", "Selector"), default="Same")
    if frm == "Selector":
        fail(join(np, "from"), "not supported by podnet: its gateway admits routes from Same or All namespaces")
    for kind, kp in opt_maps(allowed, "kinds", ap):
        support.check(kind, kp, "RouteGroupKind")
        _group_kind(kind, kp, GROUP, "HTTPRoute", "podnet's gateway serves HTTPRoutes only")


def gateway(obj: Obj) -> Obj:
    spec = opt_map(obj, "spec", "", required=True)
    support.check(spec, "spec", "GatewaySpec")
    opt_str(spec, "gatewayClassName", "spec", required=True, check=dns_subdomain)
    ns = _namespace(obj)
    listeners = opt_maps(spec, "listeners", "spec", required=True, nonempty=True)
    _max(listeners, "spec.listeners", 64)
    names: dict[str, str] = {}
    seen: dict[tuple[int, str, str], str] = {}
    for listener, lp in listeners:
        support.check(listener, lp, "Listener")
        name = opt_str(listener, "name", lp, required=True, check=dns_subdomain)
        if name in names:
            fail(
                join(lp, "name"),
                "Duplicate value: %s (also %s): listener names must be unique" % (shown(name), names[name]),
            )
        names[name] = lp
        host = _precise_host(listener, "hostname", lp, wildcard=True)
        port = opt_int(listener, "port", lp, 1, 65535, required=True)
        protocol = opt_str(listener, "protocol", lp, required=True)
        if protocol in _OTHER_PROTOCOLS:
            fail(
                join(lp, "protocol"),
                "not supported by podnet: its gateway serves HTTP and HTTPS (got %s)" % shown(protocol),
            )
        if protocol not in PROTOCOLS:
            fail(join(lp, "protocol"), 'Unsupported value: %s: supported values: "HTTP", "HTTPS"' % shown(protocol))
        combo = (port, protocol, host or "")
        if combo in seen:
            fail(
                lp,
                "Combination of port, protocol and hostname must be unique for each listener (also %s)" % seen[combo],
            )
        seen[combo] = lp
        _listener_tls(listener, lp, protocol, ns)
        _allowed_routes(listener, lp)
    if obj.get("status") in (None, {}):
        obj["status"] = _pending("Accepted", "Programmed")
    return obj


# ---- HTTPRoute ------------------------------------------------------------------


def _parent_ref(ref: Obj, rp: str) -> None:
    support.check(ref, rp, "ParentReference")
    _group_kind(ref, rp, GROUP, "Gateway", "podnet's routes attach to Gateways")
    opt_str(ref, "namespace", rp, check=dns_label)
    opt_str(ref, "name", rp, required=True, check=dns_subdomain)
    opt_str(ref, "sectionName", rp, check=dns_subdomain)


def _path_value(value: str, path: str) -> None:
    if not value.startswith("/"):
        invalid(
            path, value, "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']"
        )
    for seq in _BAD_SEQUENCES:
        if seq in value:
            invalid(path, value, "must not contain '%s'" % seq)
    for suffix in _BAD_SUFFIXES:
        if value.endswith(suffix):
            invalid(path, value, "must not end with '%s'" % suffix)


def _name_value_matches(match: Obj, key: str, mp: str, type_name: str, fold: bool) -> None:
    items = opt_maps(match, key, mp)
    _max(items, join(mp, key), 16)
    names: dict[str, str] = {}
    for m, p in items:
        support.check(m, p, type_name)
        t = opt_enum(m, "type", p, ("Exact", "RegularExpression"), default="Exact")
        if t == "RegularExpression":
            fail(
                join(p, "type"), "not supported by podnet: its HTTPRoute matches exact values (got 'RegularExpression')"
            )
        name = opt_str(m, "name", p, required=True, check=_header_error)
        opt_str(m, "value", p, required=True)
        k = name.lower() if fold else name
        if k in names:
            fail(join(p, "name"), "Duplicate value: %s (also %s)" % (shown(name), names[k]))
        names[k] = p


def _header_error(v: str) -> str | None:
    if not v or len(v) > 256 or not _HEADER_NAME.match(v):
        return "must be an HTTP header name (RFC 7230 token characters, 1-256), got %s" % shown(v)
    return None


def _match(match: Obj, mp: str) -> None:
    support.check(match, mp, "HTTPRouteMatch")
    path = opt_map(match, "path", mp)
    if path is None:
        path = match["path"] = {}
    pp = join(mp, "path")
    support.check(path, pp, "HTTPPathMatch")
    t = opt_enum(path, "type", pp, ("Exact", "PathPrefix", "RegularExpression"), default="PathPrefix")
    if t == "RegularExpression":
        fail(join(pp, "type"), "not supported by podnet: its HTTPRoute matches Exact and PathPrefix paths")
    value = opt_str(path, "value", pp, default="/")
    if len(value) > 1024:
        fail(join(pp, "value"), "Too long: may not be more than 1024 bytes")
    _path_value(value, join(pp, "value"))
    _name_value_matches(match, "headers", mp, "HTTPHeaderMatch", fold=True)
    _name_value_matches(match, "queryParams", mp, "HTTPQueryParamMatch", fold=False)
    opt_enum(match, "method", mp, METHODS)


def _header_filter(f: Obj, fp: str) -> None:
    support.check(f, fp, "HTTPHeaderFilter")
    names: dict[str, str] = {}
    for key in ("set", "add"):
        items = opt_maps(f, key, fp)
        _max(items, join(fp, key), 16)
        for h, hp in items:
            support.check(h, hp, "HTTPHeader")
            name = opt_str(h, "name", hp, required=True, check=_header_error)
            opt_str(h, "value", hp, required=True)
            if name.lower() in names:
                fail(join(hp, "name"), "Duplicate value: %s (also %s)" % (shown(name), names[name.lower()]))
            names[name.lower()] = hp
    removed = str_list(f, "remove", fp, check=_header_error) or []
    if len(removed) > 16:
        fail(join(fp, "remove"), "Too many: %d: must have at most 16 items" % len(removed))
    if len({r.lower() for r in removed}) != len(removed):
        fail(join(fp, "remove"), "Duplicate value: header names must be unique")


def _path_modifier(f: Obj, fp: str, matches: list[tuple[Obj, str]]) -> None:
    path = opt_map(f, "path", fp)
    if path is None:
        return
    pp = join(fp, "path")
    support.check(path, pp, "HTTPPathModifier")
    t = opt_enum(path, "type", pp, ("ReplaceFullPath", "ReplacePrefixMatch"), required=True)
    want = {"ReplaceFullPath": "replaceFullPath", "ReplacePrefixMatch": "replacePrefixMatch"}
    for kind, key in want.items():
        value = opt_str(path, key, pp)
        if kind == t and value is None:
            fail(join(pp, key), "Required value: %s must be specified when type is set to '%s'" % (key, t))
        if kind != t and value is not None:
            fail(join(pp, key), "Forbidden: %s must be nil if the type is not '%s'" % (key, kind))
        if value is not None and not value.startswith("/"):
            invalid(join(pp, key), value, "must be an absolute path")
    if t == "ReplacePrefixMatch":
        for m, mp in matches:
            if m["path"]["type"] != "PathPrefix":
                fail(
                    join(mp, "path.type"),
                    "with a URLRewrite filter's path.replacePrefixMatch the match's path type must be PathPrefix",
                )


def _filters(rule: Obj, rp: str, matches: list[tuple[Obj, str]]) -> None:
    filters = opt_maps(rule, "filters", rp)
    _max(filters, join(rp, "filters"), 16)
    types: dict[str, str] = {}
    for f, fp in filters:
        support.check(f, fp, "HTTPRouteFilter")
        t = opt_str(f, "type", fp, required=True)
        if t in _OTHER_FILTERS:
            fail(join(fp, "type"), "not supported by podnet: %s (got %s)" % (_OTHER_FILTERS[t], shown(t)))
        if t not in FILTERS:
            fail(join(fp, "type"), "Unsupported value: %s: supported values: %s" % (shown(t), ", ".join(FILTERS)))
        if t in types:
            fail(
                join(fp, "type"), "Duplicate value: %s may be specified at most once per rule (also %s)" % (t, types[t])
            )
        types[t] = fp
        key = _FILTER_FIELD[t]
        for other in FILTERS:
            if other != t and f.get(_FILTER_FIELD[other]) is not None:
                fail(join(fp, _FILTER_FIELD[other]), "Forbidden: must be nil if the filter.type is not %s" % other)
        body = opt_map(f, key, fp, required=True)
        bp = join(fp, key)
        if t == "RequestHeaderModifier":
            _header_filter(body, bp)
        elif t == "URLRewrite":
            support.check(body, bp, "HTTPURLRewriteFilter")
            _precise_host(body, "hostname", bp, wildcard=False)
            _path_modifier(body, bp, matches)
        else:
            support.check(body, bp, "HTTPRequestRedirectFilter")
            opt_enum(body, "scheme", bp, ("http", "https"))
            _precise_host(body, "hostname", bp, wildcard=False)
            opt_int(body, "port", bp, 1, 65535)
            code = body.get("statusCode")
            if code is None:
                body["statusCode"] = 302
            elif check_int(code, join(bp, "statusCode")) not in (301, 302):
                fail(join(bp, "statusCode"), "Unsupported value: %d: supported values: 301, 302" % code)
    if "RequestRedirect" in types and "URLRewrite" in types:
        fail(
            join(rp, "filters"),
            "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both",
        )


def _backend_ref(ref: Obj, bp: str, ns: str) -> None:
    support.check(ref, bp, "HTTPBackendRef")
    _group_kind(ref, bp, "", "Service", "podnet's routes send to Services")
    opt_str(ref, "name", bp, required=True, check=dns1035_label)
    _same_namespace(ref, bp, ns, "a backend")
    opt_int(ref, "port", bp, 1, 65535)
    if ref.get("port") is None:
        fail(join(bp, "port"), "Required value: Must have port for Service reference")
    opt_int(ref, "weight", bp, 0, 1000000, default=1)


def _rule(rule: Obj, rp: str, ns: str) -> None:
    support.check(rule, rp, "HTTPRouteRule")
    if rule.get("matches") in (None, []):
        rule["matches"] = [{"path": {"type": "PathPrefix", "value": "/"}}]
    matches = opt_maps(rule, "matches", rp)
    _max(matches, join(rp, "matches"), 64)
    for m, mp in matches:
        _match(m, mp)
    _filters(rule, rp, matches)
    refs = opt_maps(rule, "backendRefs", rp)
    _max(refs, join(rp, "backendRefs"), 16)
    for ref, bp in refs:
        _backend_ref(ref, bp, ns)


def http_route(obj: Obj) -> Obj:
    spec = opt_map(obj, "spec", "") or obj.setdefault("spec", {})
    support.check(spec, "spec", "HTTPRouteSpec")
    ns = _namespace(obj)
    parents = opt_maps(spec, "parentRefs", "spec")
    _max(parents, "spec.parentRefs", 32)
    for ref, rp in parents:
        _parent_ref(ref, rp)
    hosts = str_list(spec, "hostnames", "spec") or []
    if len(hosts) > 16:
        fail("spec.hostnames", "Too many: %d: must have at most 16 items" % len(hosts))
    for i, h in enumerate(hosts):
        why = host_error(h)
        if why:
            invalid(index("spec.hostnames", i), h, why)
    if spec.get("rules") in (None, []):
        spec["rules"] = [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]
    rules = opt_maps(spec, "rules", "spec")
    _max(rules, "spec.rules", 16)
    for rule, rp in rules:
        _rule(rule, rp, ns)
    if obj.get("status") in (None, {}):
        obj["status"] = {"parents": []}
    return obj
