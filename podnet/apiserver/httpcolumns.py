"""`kubectl get` columns of the kinds that bring HTTP in from outside
(issue 14): Secret, IngressClass and Ingress as kube-apiserver prints them
(pkg/printers/internalversion/printers.go: printSecret, printIngressClass,
printIngress), and GatewayClass, Gateway and HTTPRoute as the Gateway API
CRDs' additionalPrinterColumns have them.

Pure: used by the server's Table (podnet.apiserver.table) and so by
`podnet get` and the real kubectl alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from podnet.api.types import JSON, Obj
from podnet.apiserver.columns import age, cond, meta

Column = tuple[str, str, int, str]
Cells = list[JSON]
_NAME: Column = ("Name", "string", 0, "Name must be unique within a namespace.")
_AGE: Column = ("Age", "string", 0, "The server time when this object was created.")
# printers.go loadBalancerWidth: a longer ADDRESS is cut (not with -o wide)
_LB_WIDTH = 16

COLUMNS: dict[str, list[Column]] = {
    "Secret": [
        _NAME,
        ("Type", "string", 0, "The type of the secret"),
        ("Data", "string", 0, "The number of entries in the data"),
        _AGE,
    ],
    "IngressClass": [
        _NAME,
        ("Controller", "string", 0, "Controller that is responsible for handling this class"),
        ("Parameters", "string", 0, "A reference to a resource with additional parameters"),
        _AGE,
    ],
    "Ingress": [
        _NAME,
        ("Class", "string", 0, "The name of the IngressClass resource that should be used for ingress class"),
        ("Hosts", "string", 0, "Hosts that incoming requests are matched against before the ingress rule"),
        ("Address", "string", 0, "Address is a list containing ingress points for the load-balancer"),
        ("Ports", "string", 0, "Ports of TLS configurations that open"),
        _AGE,
    ],
    "GatewayClass": [
        _NAME,
        ("Controller", "string", 0, ""),
        ("Accepted", "string", 0, ""),
        _AGE,
        ("Description", "string", 1, ""),
    ],
    "Gateway": [
        _NAME,
        ("Class", "string", 0, ""),
        ("Address", "string", 0, ""),
        ("Programmed", "string", 0, ""),
        _AGE,
    ],
    "HTTPRoute": [_NAME, ("Hostnames", "string", 0, ""), _AGE],
}


def ingress_hosts(rules: list[Obj] | None) -> str:
    """formatHosts: the first three hosts, '+ N more...', '*' when none names a host."""
    hosts: list[str] = []
    rules = rules or []
    more = len(rules) > 3
    for r in rules[:3]:
        if r.get("host"):
            hosts.append(str(r["host"]))
    if not hosts:
        return "*"
    text = ",".join(hosts)
    return "%s + %d more..." % (text, len(rules) - 3) if more else text


def ingress_address(o: Obj, wide: bool = False) -> str:
    """ingressLoadBalancerStatusStringer: IPs (else hostnames), cut to 16 characters unless wide."""
    lb = ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    text = ",".join(str(i.get("ip") or i.get("hostname") or "") for i in lb if i.get("ip") or i.get("hostname"))
    if not wide and len(text) > _LB_WIDTH:
        text = text[: _LB_WIDTH - 3] + "..."
    return text


def ingress_ports(spec: Obj) -> str:
    """formatIngressPorts: 443 is open when the Ingress has TLS."""
    return "80, 443" if spec.get("tls") else "80"


def _age(o: Obj, now: datetime | None) -> str:
    return age(meta(o).get("creationTimestamp"), now)


def _cond_status(o: Obj, ctype: str) -> JSON:
    c = cond((o.get("status") or {}).get("conditions"), ctype)
    return c.get("status") if c else None


def _secret(o: Obj, now: datetime | None) -> Cells:
    return [
        meta(o).get("name", ""),
        o.get("type") or "Opaque",
        len(o.get("data") or {}),
        _age(o, now),
    ]


def _ingress_class(o: Obj, now: datetime | None) -> Cells:
    spec = o.get("spec") or {}
    params = spec.get("parameters")
    shown = "<none>"
    if params:
        shown = str(params.get("kind") or "")
        if params.get("apiGroup"):
            shown += "." + str(params["apiGroup"])
        shown += "/" + str(params.get("name") or "")
    return [meta(o).get("name", ""), spec.get("controller") or "", shown, _age(o, now)]


def _ingress(o: Obj, now: datetime | None) -> Cells:
    spec = o.get("spec") or {}
    return [
        meta(o).get("name", ""),
        spec.get("ingressClassName") or "<none>",
        ingress_hosts(spec.get("rules")),
        ingress_address(o),
        ingress_ports(spec),
        _age(o, now),
    ]


def _gateway_class(o: Obj, now: datetime | None) -> Cells:
    spec = o.get("spec") or {}
    return [
        meta(o).get("name", ""),
        spec.get("controllerName"),
        _cond_status(o, "Accepted"),
        _age(o, now),
        spec.get("description"),
    ]


def _gateway(o: Obj, now: datetime | None) -> Cells:
    # a CRD column over `.status.addresses[*].value`: the values joined by a space, nothing when none
    addrs = [str(a.get("value")) for a in (o.get("status") or {}).get("addresses") or [] if a.get("value")]
    return [
        meta(o).get("name", ""),
        (o.get("spec") or {}).get("gatewayClassName"),
        " ".join(addrs) or None,
        _cond_status(o, "Programmed"),
        _age(o, now),
    ]


def _http_route(o: Obj, now: datetime | None) -> Cells:
    # a CRD column over a list prints it as JSON, as kube-apiserver does: ["a.example.com","b.example.com"]
    hosts = (o.get("spec") or {}).get("hostnames")
    return [
        meta(o).get("name", ""),
        json.dumps(hosts, separators=(",", ":")) if hosts else None,
        _age(o, now),
    ]


ROWS: dict[str, Callable[[Obj, datetime | None], Cells]] = {
    "Secret": _secret,
    "IngressClass": _ingress_class,
    "Ingress": _ingress,
    "GatewayClass": _gateway_class,
    "Gateway": _gateway,
    "HTTPRoute": _http_route,
}
