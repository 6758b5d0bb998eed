"""Validation and defaults of Endpoints and Event (core/v1).

Endpoints are the legacy view of a Service's backends; podnet's controllers
mirror each Service's EndpointSlices into one (kubectl get endpoints and
describe svc read it). Events are what components report for a user to see
(kubectl describe, kubectl get events): scheduling, CNI failures, probes.
"""

from podnet.api.fields import ip_error, join, opt_int, opt_map, opt_maps, opt_str, protocol
from podnet.api.meta import dns_label, dns_subdomain, fail
from podnet.api.types import Obj

EVENT_TYPES = ("Normal", "Warning")


def endpoints(obj: Obj) -> Obj:
    for key in obj:
        if key not in ("apiVersion", "kind", "metadata", "subsets"):
            fail(key, "unknown field (Endpoints have subsets)")
    for subset, p in opt_maps(obj, "subsets", ""):
        for key in ("addresses", "notReadyAddresses"):
            for addr, ap in opt_maps(subset, key, p):
                opt_str(addr, "ip", ap, required=True, check=ip_error)
                opt_str(addr, "hostname", ap, check=dns_label)
                opt_str(addr, "nodeName", ap, check=dns_subdomain)
                opt_map(addr, "targetRef", ap)
        for port, pp in opt_maps(subset, "ports", p):
            opt_str(port, "name", pp, check=lambda v: v and dns_label(v))
            opt_int(port, "port", pp, 1, 65535, required=True)
            protocol(port, pp)
            opt_str(port, "appProtocol", pp)
    return obj


def event(obj: Obj) -> Obj:
    inv = opt_map(obj, "involvedObject", "", required=True)
    assert inv is not None
    for key in ("kind", "name"):
        opt_str(inv, key, "involvedObject", required=True)
    for key in ("namespace", "uid", "apiVersion", "resourceVersion", "fieldPath"):
        opt_str(inv, key, "involvedObject")
    opt_str(obj, "reason", "")
    opt_str(obj, "message", "")
    kind = obj.get("type") or "Normal"
    if kind not in EVENT_TYPES:
        fail("type", "must be Normal or Warning, got %r" % (kind,))
    obj["type"] = kind
    count = opt_int(obj, "count", "", 0, None)
    if count is None:
        obj["count"] = 1
    for key in ("firstTimestamp", "lastTimestamp", "eventTime", "action", "reportingComponent", "reportingInstance"):
        opt_str(obj, key, "")
    src = opt_map(obj, "source", "")
    if src is not None:
        opt_str(src, "component", "source")
        opt_str(src, "host", "source")
    ns = obj["metadata"].get("namespace")
    if inv.get("namespace") and ns and inv["namespace"] != ns and ns != "default":
        fail(join("involvedObject", "namespace"), "does not match the event's namespace %r" % ns)
    return obj
