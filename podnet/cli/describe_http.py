"""`podnet describe` for Ingress (kubectl's IngressDescriber layout) and
HTTPRoute (kubectl has only its generic CRD dump; this says the same in the
Ingress describer's terms: hosts, matches, filters, backends with their
endpoints, and each parent's conditions). Pure, like describe.py.

`related` carries what the describer would look up through the API:
  {"services": {name: Service}, "slices": [EndpointSlice, ...]} of the
  object's namespace, for each backend's endpoints.
"""

from podnet.apiserver.columns import list_with_more
from podnet.apiserver.httpcolumns import ingress_address
from podnet.cli.describe import _annotations, _events, _header, _labels

_SERVICE_NAME = "kubernetes.io/service-name"


def endpoints(related, name, port):
    """kubectl's describeBackend: the ready endpoints of Service `name` at
    its port `port` (number or name), "ip:port,..." (three, then "+ N
    more..."), or what went wrong, as `<error: ...>`."""
    svc = ((related or {}).get("services") or {}).get(name)
    if svc is None:
        return '<error: services "%s" not found>' % name
    sport = next(
        (p for p in (svc.get("spec") or {}).get("ports") or [] if port in (p.get("port"), p.get("name"))),
        None,
    )
    if sport is None:
        return "<error: port %s is not a port of Service %s>" % (port, name)
    addrs = []
    for s in (related or {}).get("slices") or []:
        if ((s.get("metadata") or {}).get("labels") or {}).get(_SERVICE_NAME) != name:
            continue
        nums = [p.get("port") for p in s.get("ports") or [] if (p.get("name") or "") == (sport.get("name") or "")]
        for e in s.get("endpoints") or []:
            if (e.get("conditions") or {}).get("ready") is False:
                continue
            addrs += ["%s:%s" % (a, n) for a in e.get("addresses") or [] for n in nums]
    return list_with_more(addrs, len(addrs)) or "<none>"


def _service_port(port):
    return port.get("name") if port.get("name") else port.get("number")


def _backend(b, related):
    svc = (b or {}).get("service") or {}
    port = _service_port(svc.get("port") or {})
    return "%s:%s (%s)" % (svc.get("name", ""), port, endpoints(related, svc.get("name"), port))


def describe_ingress(w, ing, events, related, now):
    spec, m = ing.get("spec") or {}, ing.get("metadata") or {}
    w(0, "Name:\t%s" % m.get("name", ""))
    _labels(w, "Labels", m.get("labels"))
    w(0, "Namespace:\t%s" % m.get("namespace", ""))
    w(0, "Address:\t%s" % ingress_address(ing, wide=True))
    w(0, "Ingress Class:\t%s" % (spec.get("ingressClassName") or "<none>"))
    default = spec.get("defaultBackend")
    w(0, "Default backend:\t%s" % (_backend(default, related) if default else "<default>"))
    if spec.get("tls"):
        w(0, "TLS:")
        for t in spec["tls"]:
            hosts = ",".join(t.get("hosts") or [])
            if t.get("secretName"):
                w(1, "%s terminates %s" % (t["secretName"], hosts))
            else:
                w(1, "SNI routes %s" % hosts)
    w(0, "Rules:")
    w(1, "Host\tPath\tBackends")
    w(1, "----\t----\t--------")
    for r in spec.get("rules") or []:
        w(1, "%s\t" % (r.get("host") or "*"))
        for p in (r.get("http") or {}).get("paths") or []:
            w(1, "\t%s\t%s" % (_path(p), _backend(p.get("backend"), related)))
    if not spec.get("rules"):
        w(1, "*\t*\t%s" % (_backend(default, related) if default else "<default>"))
    _annotations(w, "Annotations", m.get("annotations"))
    _events(w, events, now)


def _path(p):
    """The path and, where it is not Prefix (the common case), its type."""
    ptype = p.get("pathType") or ""
    if ptype == "Prefix":
        return p.get("path") or "/"
    return "%s (%s)" % (p.get("path") or "*", ptype)


def _match(m):
    path = m.get("path") or {}
    parts = ["%s %s" % (path.get("type", "PathPrefix"), path.get("value", "/"))]
    parts += ["header %s=%s" % (h.get("name"), h.get("value")) for h in m.get("headers") or []]
    parts += ["query %s=%s" % (q.get("name"), q.get("value")) for q in m.get("queryParams") or []]
    if m.get("method"):
        parts.append("method %s" % m["method"])
    return ", ".join(parts)


def _filter(f):
    t = f.get("type", "")
    if t == "RequestHeaderModifier":
        h = f.get("requestHeaderModifier") or {}
        ops = ["set %s=%s" % (x.get("name"), x.get("value")) for x in h.get("set") or []]
        ops += ["add %s=%s" % (x.get("name"), x.get("value")) for x in h.get("add") or []]
        ops += ["remove %s" % x for x in h.get("remove") or []]
        return "%s: %s" % (t, ", ".join(ops))
    if t == "URLRewrite":
        u = f.get("urlRewrite") or {}
        path = u.get("path") or {}
        ops = ["hostname %s" % u["hostname"]] if u.get("hostname") else []
        if path:
            value = (
                path.get("replaceFullPath") if path.get("type") == "ReplaceFullPath" else path.get("replacePrefixMatch")
            )
            ops.append("%s %s" % (path.get("type"), value))
        return "%s: %s" % (t, ", ".join(ops))
    if t == "RequestRedirect":
        r = f.get("requestRedirect") or {}
        ops = ["%s %s" % (k, r[k]) for k in ("scheme", "hostname", "port", "statusCode") if r.get(k) is not None]
        return "%s: %s" % (t, ", ".join(ops))
    return t


def describe_http_route(w, route, events, related, now):
    spec, m = route.get("spec") or {}, route.get("metadata") or {}
    _header(w, route)
    _labels(w, "Labels", m.get("labels"))
    _annotations(w, "Annotations", m.get("annotations"))
    w(0, "Hostnames:\t%s" % (", ".join(spec.get("hostnames") or []) or "*"))
    w(0, "Parent Refs:")
    for p in spec.get("parentRefs") or []:
        where = "%s/%s" % (p.get("namespace") or m.get("namespace", ""), p.get("name", ""))
        w(
            1,
            "%s %s%s"
            % (p.get("kind", "Gateway"), where, " (listener %s)" % p["sectionName"] if p.get("sectionName") else ""),
        )
    w(0, "Rules:")
    for i, r in enumerate(spec.get("rules") or []):
        w(1, "Rule %d:" % i)
        for mt in r.get("matches") or []:
            w(2, "Match:\t%s" % _match(mt))
        for f in r.get("filters") or []:
            w(2, "Filter:\t%s" % _filter(f))
        refs = r.get("backendRefs") or []
        total = sum(int(b.get("weight", 1)) for b in refs)
        for b in refs:
            share = " (%d%%)" % round(100 * int(b.get("weight", 1)) / total) if total and len(refs) > 1 else ""
            line = "%s:%s weight %s%s" % (b.get("name", ""), b.get("port"), b.get("weight", 1), share)
            w(2, "Backend:\t%s %s" % (line, endpoints(related, b.get("name"), b.get("port"))))
        if not refs:
            w(2, "Backend:\t<none>")
    w(0, "Status:")
    parents = (route.get("status") or {}).get("parents") or []
    if not parents:
        w(1, "Parents:\t<none> (no controller has taken the route yet)")
    for p in parents:
        ref = p.get("parentRef") or {}
        w(1, "Parent:\t%s/%s by %s" % (ref.get("kind", "Gateway"), ref.get("name", ""), p.get("controllerName", "")))
        for c in p.get("conditions") or []:
            w(2, "%s:\t%s\t%s\t%s" % (c.get("type"), c.get("status"), c.get("reason", ""), c.get("message", "")))
    _events(w, events, now)


DESCRIBERS = {"Ingress": describe_ingress, "HTTPRoute": describe_http_route}
