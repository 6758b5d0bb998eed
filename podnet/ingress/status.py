"""Status of Ingresses, Gateways and HTTPRoutes (pure): what the controller writes.

* Ingress: status.loadBalancer.ingress = the addresses of the ingress-nginx
  LoadBalancer Service (as ingress-nginx's --publish-service does).
* Gateway: status.addresses (type IPAddress), conditions Accepted and
  Programmed, and per listener the routes attached.
* HTTPRoute: status.parents, one entry per parentRef to a Gateway of ours,
  with controllerName and the conditions Accepted and ResolvedRefs (False,
  reason BackendNotFound / InvalidKind / RefNotPermitted, when a backend
  reference cannot be resolved), as the Gateway API says. Entries of other
  controllers are kept.

Conditions keep their lastTransitionTime while their status stays, so a
status written again unchanged is equal and the controller skips the write.
"""

from __future__ import annotations

import copy
from typing import Any

from podnet.ingress.gateway import GATEWAY_CONTROLLER, GatewayResult, RouteResult

Obj = dict[str, Any]


def lb_addresses(service: Obj | None) -> list[str]:
    if not service:
        return []
    return [
        i["ip"] for i in (((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []) if i.get("ip")
    ]


def ingress_status(ing: Obj, ips: list[str]) -> Obj:
    st = copy.deepcopy(ing.get("status") or {})
    st["loadBalancer"] = {"ingress": [{"ip": ip} for ip in ips]} if ips else {}
    return st


def _condition(old: list[Obj], ctype: str, ok: bool, reason: str, message: str, generation: Any, now: str) -> Obj:
    status = "True" if ok else "False"
    prev = next((c for c in old if c.get("type") == ctype), None)
    since = prev.get("lastTransitionTime") if prev and prev.get("status") == status else now
    c = {"type": ctype, "status": status, "reason": reason, "message": message, "lastTransitionTime": since}
    if generation is not None:
        c["observedGeneration"] = generation
    return c


def gateway_status(gw: Obj, res: GatewayResult, ips: list[str], problem: str | None, now: str) -> Obj:
    """problem: why nginx does not serve the Gateway's config (nginx -t), or None."""
    st = copy.deepcopy(gw.get("status") or {})
    gen = gw["metadata"].get("generation")
    old = st.get("conditions") or []
    programmed = res.accepted and bool(ips) and problem is None
    why = problem or ("no address yet from the ingress-nginx Service" if not ips else res.message)
    st["addresses"] = [{"type": "IPAddress", "value": ip} for ip in ips]
    st["conditions"] = [
        _condition(old, "Accepted", res.accepted, res.reason, res.message, gen, now),
        _condition(
            old,
            "Programmed",
            programmed,
            "Programmed" if programmed else ("Invalid" if problem else "AddressNotAssigned"),
            "served by podnet's nginx" if programmed else why,
            gen,
            now,
        ),
    ]
    listeners = []
    old_l = {x.get("name"): x for x in st.get("listeners") or []}
    for lis in (gw.get("spec") or {}).get("listeners") or []:
        name = lis.get("name")
        lold = (old_l.get(name) or {}).get("conditions") or []
        listeners.append(
            {
                "name": name,
                "attachedRoutes": res.attached.get(name, 0),
                "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
                "conditions": _listener_conditions(lold, res.listeners.get(name), programmed, why, gen, now),
            }
        )
    st["listeners"] = listeners
    return st


def _listener_conditions(
    old: list[Obj], bad: tuple[str, str] | None, programmed: bool, why: str, gen: Any, now: str
) -> list[Obj]:
    if bad:
        return [
            _condition(old, "Accepted", False, bad[0], bad[1], gen, now),
            _condition(old, "Programmed", False, "Invalid", bad[1], gen, now),
        ]
    return [
        _condition(old, "Accepted", True, "Accepted", "accepted by podnet's nginx", gen, now),
        _condition(old, "Programmed", programmed, "Programmed" if programmed else "Invalid", why, gen, now),
    ]


def route_status(route: Obj, res: RouteResult, problem: str | None, now: str) -> Obj:
    st = copy.deepcopy(route.get("status") or {})
    gen = route["metadata"].get("generation")
    others = [p for p in st.get("parents") or [] if p.get("controllerName") != GATEWAY_CONTROLLER]
    mine_old = {
        _ref_key(p.get("parentRef") or {}): p
        for p in st.get("parents") or []
        if p.get("controllerName") == GATEWAY_CONTROLLER
    }
    parents = []
    for pr in res.parents:
        old = (mine_old.get(_ref_key(pr.ref)) or {}).get("conditions") or []
        accepted, reason, message = pr.accepted, pr.reason, pr.message
        if accepted and problem:
            accepted, reason, message = False, "UnsupportedValue", problem
        parents.append(
            {
                "parentRef": _full_ref(pr.ref, route),
                "controllerName": GATEWAY_CONTROLLER,
                "conditions": [
                    _condition(old, "Accepted", accepted, reason, message, gen, now),
                    _condition(old, "ResolvedRefs", res.resolved, res.resolved_reason, res.resolved_message, gen, now),
                ],
            }
        )
    st["parents"] = others + parents
    return st


def _full_ref(ref: Obj, route: Obj) -> Obj:
    out = {
        "group": ref.get("group") or "gateway.networking.k8s.io",
        "kind": ref.get("kind") or "Gateway",
        "namespace": ref.get("namespace") or route["metadata"].get("namespace") or "default",
        "name": ref.get("name"),
    }
    for k in ("sectionName", "port"):
        if ref.get(k) is not None:
            out[k] = ref[k]
    return out


def _ref_key(ref: Obj) -> tuple[Any, ...]:
    return (ref.get("namespace"), ref.get("name"), ref.get("sectionName"), ref.get("port"))
