"""Gateways and HTTPRoutes into the routing model, with what their status says.

A Gateway of a GatewayClass whose controllerName is podnet's has listeners
(HTTP, or HTTPS with a kubernetes.io/tls Secret), each a port of the nginx
pod with an optional hostname. An HTTPRoute attaches through parentRefs (a
Gateway, optionally one listener by sectionName or port) when the listener
allows the route's namespace (Same, the default, or All) and their hostnames
intersect. Each match of each rule becomes a Route; precedence is the
Gateway API's: Exact path, longest prefix, method, most headers, most query
parameters, then the oldest route, namespace/name, rule order.

Backends: weighted Service refs in the route's namespace. A ref that cannot
be resolved (no such Service: BackendNotFound; another kind: InvalidKind;
another namespace without a ReferenceGrant, which podnet does not have:
RefNotPermitted) gets its share answered with 500, as the spec says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from podnet.ingress.model import (
    Backend,
    Model,
    Route,
    check_header_name,
    check_host,
    check_path,
    check_value,
    creation,
)

Obj = dict[str, Any]

GATEWAY_CONTROLLER = "podnet.io/gateway-nginx"
SERVED_PORTS = {"HTTP": (80,), "HTTPS": (443,)}
_ARG_NAME = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass
class ParentResult:
    """One parentRef of one route: its status entry's facts."""

    ref: Obj
    accepted: bool = True
    reason: str = "Accepted"
    message: str = "accepted by podnet's nginx"


@dataclass
class RouteResult:
    parents: list[ParentResult] = field(default_factory=list)
    resolved: bool = True
    resolved_reason: str = "ResolvedRefs"
    resolved_message: str = "all backend references resolved"


@dataclass
class GatewayResult:
    accepted: bool = True
    reason: str = "Accepted"
    message: str = "accepted by podnet's nginx"
    attached: dict[str, int] = field(default_factory=dict)  # listener name -> routes attached
    listeners: dict[str, tuple[str, str]] = field(default_factory=dict)  # listener name -> (reason, why not served)


def our_gateway_classes(classes: list[Obj]) -> set[str]:
    return {c["metadata"]["name"] for c in classes if (c.get("spec") or {}).get("controllerName") == GATEWAY_CONTROLLER}


def _hostnames(listener_host: str | None, route_hosts: list[str]) -> list[str]:
    """Listener hostname x route hostnames -> the hosts served ("" = any)."""
    if not route_hosts:
        return [listener_host or ""]
    if not listener_host:
        return list(route_hosts)
    out = []
    for h in route_hosts:
        if _covers(listener_host, h):
            out.append(h)
        elif _covers(h, listener_host):
            out.append(listener_host)
    return out


def _covers(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host.count(".") >= pattern.count(".")
    return False


def add_gateway(model: Model, gw: Obj, routes: list[Obj], results: dict[tuple[str, str], RouteResult]) -> GatewayResult:
    """One Gateway of our class with the HTTPRoutes attached to it."""
    gns, gname = gw["metadata"].get("namespace") or "default", gw["metadata"]["name"]
    res = GatewayResult()
    listeners = []
    for i, lis in enumerate((gw.get("spec") or {}).get("listeners") or []):
        name = lis.get("name") or str(i)
        res.attached[name] = 0
        why, cert = _listener(model, gns, lis)
        if why:
            res.listeners[name] = why
            res.reason, res.message = "ListenersNotValid", "listener %s: %s" % (name, why[1])
            continue
        listeners.append((lis, lis.get("protocol") == "HTTPS", cert))
    # the spec: ListenersNotValid with Accepted True while some listener is served
    res.accepted = bool(listeners)
    for route in routes:
        rns, rname = route["metadata"].get("namespace") or "default", route["metadata"]["name"]
        result = results.setdefault((rns, rname), RouteResult())
        for ref in (route.get("spec") or {}).get("parentRefs") or []:
            if (ref.get("kind") or "Gateway") != "Gateway" or ref.get("name") != gname:
                continue
            if (ref.get("namespace") or rns) != gns:
                continue
            pr = ParentResult(ref)
            result.parents.append(pr)
            chosen = [
                (lis, tls, cert)
                for lis, tls, cert in listeners
                if (not ref.get("sectionName") or lis.get("name") == ref["sectionName"])
                and (not ref.get("port") or lis.get("port") == ref["port"])
            ]
            allowed = [c for c in chosen if _allows(c[0], gns, rns)]
            if not allowed:
                pr.accepted, pr.reason = False, "NotAllowedByListeners" if chosen else "NoMatchingParent"
                pr.message = "no listener of Gateway %s/%s takes routes from namespace %s" % (gns, gname, rns)
                continue
            unsupported = _route_problem(route)
            if unsupported:
                pr.accepted, pr.reason, pr.message = False, "UnsupportedValue", unsupported
                continue
            hosts_any = False
            for lis, tls, cert in allowed:
                hosts = _hostnames(lis.get("hostname"), (route.get("spec") or {}).get("hostnames") or [])
                for host in hosts:
                    hosts_any = True
                    srv = model.server(int(lis.get("port") or (443 if tls else 80)), tls, host)
                    if tls:
                        srv.cert = cert
                    srv.routes.extend(_routes(model, route, result))
                if hosts:
                    res.attached[lis.get("name")] = res.attached.get(lis.get("name"), 0) + 1
            if not hosts_any:
                pr.accepted, pr.reason = False, "NoMatchingListenerHostname"
                pr.message = "no listener hostname matches the route's hostnames"
    return res


def _listener(model: Model, gns: str, lis: Obj) -> tuple[tuple[str, str] | None, str | None]:
    """-> ((reason, message) if podnet cannot serve this listener, certificate file)."""
    proto = lis.get("protocol") or "HTTP"
    if proto not in ("HTTP", "HTTPS"):
        return ("UnsupportedProtocol", "podnet serves HTTP and HTTPS listeners, not %s" % proto), None
    if lis.get("port") not in SERVED_PORTS.get(proto, ()):
        # the ingress-nginx Service publishes 80 and 443 only
        return ("PortUnavailable", "podnet's gateway publishes %s on port %d" % (proto, SERVED_PORTS[proto][0])), None
    if proto == "HTTP":
        return None, None
    refs = (lis.get("tls") or {}).get("certificateRefs") or []
    if not refs:
        return ("InvalidCertificateRef", "HTTPS needs tls.certificateRefs"), None
    ref = refs[0]
    if (ref.get("group") or "") != "" or (ref.get("kind") or "Secret") != "Secret":
        return ("InvalidCertificateRef", "certificateRefs[0]: podnet takes kubernetes.io/tls Secrets"), None
    if (ref.get("namespace") or gns) != gns:
        return ("RefNotPermitted", "certificateRefs[0]: a Secret in another namespace needs a ReferenceGrant"), None
    cert, why = model.certificate(gns, ref.get("name") or "")
    if why:
        return ("InvalidCertificateRef", why), None
    return None, cert


def _allows(lis: Obj, gns: str, rns: str) -> bool:
    frm = (((lis.get("allowedRoutes") or {}).get("namespaces")) or {}).get("from") or "Same"
    return frm == "All" or (frm == "Same" and gns == rns)


def _route_problem(route: Obj) -> str | None:
    spec = route.get("spec") or {}
    for h in spec.get("hostnames") or []:
        why = check_host(h)
        if why:
            return "hostname: " + why
    for i, rule in enumerate(spec.get("rules") or []):
        for j, m in enumerate(rule.get("matches") or []):
            where = "spec.rules[%d].matches[%d]" % (i, j)
            path = m.get("path") or {}
            if (path.get("type") or "PathPrefix") not in ("Exact", "PathPrefix"):
                return where + ".path.type: podnet supports Exact and PathPrefix"
            why = check_path(path.get("value") or "/")
            if why:
                return where + ".path.value: " + why
            for key in ("headers", "queryParams"):
                for k, h in enumerate(m.get(key) or []):
                    if (h.get("type") or "Exact") != "Exact":
                        return "%s.%s[%d].type: podnet supports Exact" % (where, key, k)
                    why = check_header_name(h.get("name")) or check_value(h.get("value"))
                    if key == "queryParams" and not why and not _ARG_NAME.match(h["name"]):
                        # nginx's $arg_<name> ends at the first character outside [A-Za-z0-9_]
                        why = "podnet matches query parameters named with letters, digits and '_': %r" % h["name"]
                    if why:
                        return "%s.%s[%d]: %s" % (where, key, k, why)
        for k, f in enumerate(rule.get("filters") or []):
            why = _filter_problem(f)
            if why:
                return "spec.rules[%d].filters[%d]: %s" % (i, k, why)
    return None


def _filter_problem(f: Obj) -> str | None:
    t = f.get("type")
    if t == "RequestHeaderModifier":
        mod = f.get("requestHeaderModifier") or {}
        for h in (mod.get("set") or []) + (mod.get("add") or []):
            why = check_header_name(h.get("name")) or check_value(h.get("value"))
            if why:
                return why
        for n in mod.get("remove") or []:
            why = check_header_name(n)
            if why:
                return why
        return None
    if t in ("URLRewrite", "RequestRedirect"):
        body = f.get("urlRewrite" if t == "URLRewrite" else "requestRedirect") or {}
        if body.get("hostname"):
            why = check_host(body["hostname"])
            if why:
                return why
        p = body.get("path") or {}
        v = p.get("replaceFullPath") if p.get("type") == "ReplaceFullPath" else p.get("replacePrefixMatch")
        if p and check_path(v):
            return "path: " + str(check_path(v))
        return None
    return "filter type %s: podnet supports RequestHeaderModifier, URLRewrite and RequestRedirect" % t


def _backends(model: Model, rns: str, refs: list[Obj], result: RouteResult) -> list[Backend]:
    out = []
    for ref in refs:
        weight = int(ref.get("weight", 1))
        kind = ref.get("kind") or "Service"
        if (ref.get("group") or "") != "" or kind != "Service":
            result.resolved, result.resolved_reason = False, "InvalidKind"
            result.resolved_message = "backendRef %s: podnet routes to Services only" % ref.get("name")
            out.append(Backend(None, weight, 500))
            continue
        if (ref.get("namespace") or rns) != rns:
            result.resolved, result.resolved_reason = False, "RefNotPermitted"
            result.resolved_message = "backendRef %s/%s: another namespace needs a ReferenceGrant" % (
                ref.get("namespace"),
                ref.get("name"),
            )
            out.append(Backend(None, weight, 500))
            continue
        if model.index.service(rns, ref.get("name") or "") is None or (
            model.index.service_port(rns, ref["name"], ref.get("port")) is None
        ):
            result.resolved, result.resolved_reason = False, "BackendNotFound"
            result.resolved_message = "backendRef %s port %s: Service %s/%s %s" % (
                ref.get("name"),
                ref.get("port"),
                rns,
                ref.get("name"),
                "has no such port" if model.index.service(rns, ref.get("name") or "") else "not found",
            )
            out.append(Backend(None, weight, 500))
            continue
        up = model.index.upstream(rns, ref["name"], ref.get("port"))
        out.append(Backend(up.name if up else None, weight, 503))
    return out


def _routes(model: Model, route: Obj, result: RouteResult) -> list[Route]:
    rns, rname = route["metadata"].get("namespace") or "default", route["metadata"]["name"]
    out = []
    for i, rule in enumerate((route.get("spec") or {}).get("rules") or []):
        backends = _backends(model, rns, rule.get("backendRefs") or [], result)
        for j, m in enumerate(rule.get("matches") or [{}]):
            path = m.get("path") or {}
            match = "Exact" if path.get("type") == "Exact" else "Prefix"
            value = path.get("value") or "/"
            r = Route(
                match,
                value if match == "Exact" else value.rstrip("/"),
                list(backends) if backends else [Backend(None, 1, 500)],
                order=creation(route) + (i, j),
                source=("HTTPRoute", rns, rname),
            )
            if m.get("method"):
                r.conditions.append(("$request_method", m["method"]))
                r.methods = 1
            for h in m.get("headers") or []:
                r.conditions.append(("$http_" + h["name"].lower().replace("-", "_"), h["value"]))
                r.headers += 1
            for q in m.get("queryParams") or []:
                r.conditions.append(("$arg_" + q["name"], q["value"]))
                r.queries += 1
            for f in rule.get("filters") or []:
                _apply_filter(r, f)
            out.append(r)
    return out


def _apply_filter(r: Route, f: Obj) -> None:
    t = f.get("type")
    if t == "RequestHeaderModifier":
        mod = f.get("requestHeaderModifier") or {}
        r.set_headers += [(h["name"], h["value"]) for h in mod.get("set") or []]
        r.add_headers += [(h["name"], h["value"]) for h in mod.get("add") or []]
        r.remove_headers += list(mod.get("remove") or [])
    elif t == "URLRewrite":
        body = f.get("urlRewrite") or {}
        r.host_rewrite = body.get("hostname") or None
        r.rewrite = _path_rewrite(r, body.get("path") or {})
    elif t == "RequestRedirect":
        body = f.get("requestRedirect") or {}
        scheme = body.get("scheme") or "$scheme"
        host = body.get("hostname") or "$host"
        port = body.get("port")
        if port is None and body.get("scheme"):
            port = {"http": 80, "https": 443}.get(body["scheme"])
            port = None if port in (80, 443) else port
        path = "$request_uri"
        p = body.get("path") or {}
        if p.get("type") == "ReplaceFullPath":
            path = p.get("replaceFullPath") or "/"
        elif p.get("type") == "ReplacePrefixMatch":
            path = "$uri$is_args$args"  # after the rewrite below
            r.rewrite = _path_rewrite(r, p)
        target = "%s://%s%s%s" % (scheme, host, ":%d" % port if port else "", path)
        r.redirect = (int(body.get("statusCode") or 302), target)


def _path_rewrite(r: Route, p: Obj) -> tuple[str, str] | None:
    if p.get("type") == "ReplaceFullPath":
        return ("^", p.get("replaceFullPath") or "/")
    if p.get("type") == "ReplacePrefixMatch" and r.match == "Prefix":
        new = (p.get("replacePrefixMatch") or "/").rstrip("/")
        # /foo -> /bar: /foo -> /bar, /foo/x -> /bar/x; /foo -> /: /foo -> /, /foo/x -> /x
        if new:
            return ("^%s(/.*)?$" % re.escape(r.path), new + "$1")
        return ("^%s/?(.*)$" % re.escape(r.path), "/$1")
    return None
