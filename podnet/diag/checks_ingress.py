"""The doctor's Ingress check: an Ingress's path end to end, from what the API
says and what a real request from the external host got.

For each Ingress in scope (`podnet doctor ing/NAME`, or all of them):
- its class: podnet serves the IngressClasses of its controller and, when the
  default class is one of them, Ingresses of no class; any other Ingress is
  left to a controller this cluster may not have (a warning);
- the controller: Service podnet-ingress/ingress-nginx with a ready endpoint,
  and an address in the Ingress's status.loadBalancer;
- each backend (rules and defaultBackend): the Service exists and has the
  port, by number or by name; an empty backend is the "endpoints" check's
  finding (the backends are in scope), so it is not said twice;
- each tls secretName: a Secret of type kubernetes.io/tls;
- a Rejected or Invalid Event from the controller newer than the Ingress's
  last change (nginx -t refused it, or it was left out before that);
- the probe: GET http://HOST/PATH through the ingress address from the
  external host, for each rule's first path (doctor.py sends it): no answer
  or a 5xx is an error (a 404 may be the application's own answer).
Pure, as every check: doctor.py gathers Facts.ingresses, .ingress_classes,
.secrets and .ingress_probes.
"""

from __future__ import annotations

from podnet.diag.checks_base import Facts, Finding, Obj, key_of
from podnet.ingress.model import is_ours, our_classes

CONTROLLER_SVC = "podnet-ingress/ingress-nginx"
TLS_TYPE = "kubernetes.io/tls"


def backends(ing: Obj) -> list[tuple[str, Obj]]:
    """[(where, IngressServiceBackend)] of an Ingress, defaultBackend first."""
    spec = ing.get("spec") or {}
    out = []
    if (spec.get("defaultBackend") or {}).get("service"):
        out.append(("defaultBackend", spec["defaultBackend"]["service"]))
    for i, rule in enumerate(spec.get("rules") or []):
        for j, p in enumerate((rule.get("http") or {}).get("paths") or []):
            svc = (p.get("backend") or {}).get("service")
            if svc:
                out.append(("rules[%d].http.paths[%d]" % (i, j), svc))
    return out


def _port_ok(svc: Obj, want: Obj) -> bool:
    ports = (svc.get("spec") or {}).get("ports") or []
    if want.get("number") is not None:
        return any(p.get("port") == want["number"] for p in ports)
    return any(p.get("name") == want.get("name") for p in ports)


def _changed_at(ing: Obj) -> str:
    """The last time the Ingress was written: its newest managedFields entry."""
    meta = ing["metadata"]
    times = [m.get("time") or "" for m in meta.get("managedFields") or []]
    return max(times + [meta.get("creationTimestamp") or ""])


def _rejections(f: Facts, ing: Obj) -> list[str]:
    meta, since = ing["metadata"], _changed_at(ing)
    out = []
    for e in f.events:
        obj = e.get("involvedObject") or {}
        if obj.get("kind") != "Ingress" or obj.get("name") != meta["name"]:
            continue
        if obj.get("namespace") != meta.get("namespace", "default") or e.get("reason") not in ("Rejected", "Invalid"):
            continue
        when = e.get("lastTimestamp") or e.get("eventTime") or ""
        if when >= since:
            out.append("%s: %s" % (e.get("reason"), e.get("message")))
    return out


def check_ingress(f: Facts) -> list[Finding]:
    out: list[Finding] = []
    ours, default_ours = our_classes(f.ingress_classes)
    controller_ready = bool(f.ready_endpoints(CONTROLLER_SVC))
    for ing in f.ingresses:
        key = key_of(ing)
        if not f.in_scope_ingress(key):
            continue
        ns, name = key.split("/", 1)
        describe = "podnet describe ingress %s -n %s" % (name, ns)
        if not is_ours(ing, ours, default_ours):
            cls = (ing.get("spec") or {}).get("ingressClassName") or "<none>"
            out.append(
                Finding(
                    "ingress",
                    "warning",
                    "Ingress %s has class %s, which podnet's controller does not serve: nothing routes it here"
                    % (key, cls),
                    ["podnet's classes: %s (default: %s)" % (", ".join(sorted(ours)) or "<none>", default_ours)],
                    "podnet get ingressclass",
                )
            )
            continue
        if not controller_ready:
            out.append(
                Finding(
                    "ingress",
                    "error",
                    "the ingress controller (Service %s) has no ready pod: Ingress %s is not served"
                    % (CONTROLLER_SVC, key),
                    ["Service %s: 0 ready endpoints" % CONTROLLER_SVC],
                    "podnet get pods -n podnet-ingress",
                )
            )
        for where, b in backends(ing):
            svc = f.service("%s/%s" % (ns, b.get("name")))
            want = b.get("port") or {}
            if svc is None:
                out.append(
                    Finding(
                        "ingress",
                        "error",
                        "Ingress %s: %s sends to Service %s/%s, which does not exist (nginx answers 503)"
                        % (key, where, ns, b.get("name")),
                        ["%s.backend.service.name: %s" % (where, b.get("name"))],
                        describe,
                    )
                )
            elif not _port_ok(svc, want):
                ports = ", ".join(
                    "%s%s" % (p.get("port"), "(%s)" % p["name"] if p.get("name") else "")
                    for p in svc["spec"].get("ports") or []
                )
                out.append(
                    Finding(
                        "ingress",
                        "error",
                        "Ingress %s: %s asks Service %s for port %s, which it does not have (its ports: %s)"
                        % (key, where, key_of(svc), want.get("number", want.get("name")), ports),
                        ["%s.backend.service.port: %s" % (where, want)],
                        describe,
                    )
                )
        for i, tls in enumerate((ing.get("spec") or {}).get("tls") or []):
            secret = f.secrets.get("%s/%s" % (ns, tls.get("secretName")))
            if secret != TLS_TYPE:
                what = "does not exist" if secret is None else "is of type %s, not %s" % (secret, TLS_TYPE)
                out.append(
                    Finding(
                        "ingress",
                        "error",
                        "Ingress %s: tls[%d] names Secret %s/%s, which %s" % (key, i, ns, tls.get("secretName"), what),
                        ["tls[%d].hosts: %s" % (i, ",".join(tls.get("hosts") or []))],
                        "podnet get secret -n %s" % ns,
                    )
                )
        for text in _rejections(f, ing):
            out.append(
                Finding("ingress", "error", "Ingress %s was left out of nginx: %s" % (key, text), [text], describe)
            )
        if controller_ready and not ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
            out.append(Finding("ingress", "warning", "Ingress %s has no address in its status yet" % key, [], describe))
        for probe in f.ingress_probes.get(key, []):
            if probe.get("status") is None or probe["status"] >= 500:
                out.append(
                    Finding(
                        "ingress",
                        "error",
                        "GET http://%s%s through the ingress address %s from the external host: %s"
                        % (probe["host"], probe["path"], probe["ip"], probe.get("detail")),
                        ["the rule for %s%s in Ingress %s" % (probe["host"], probe["path"], key)],
                        "podnet lab exec external -- curl -sv --resolve %s:80:%s http://%s%s"
                        % (probe["host"], probe["ip"], probe["host"], probe["path"]),
                    )
                )
    return out
