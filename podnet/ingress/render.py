"""Cluster state -> one nginx.conf (pure): the entry point of the ingress controller.

Inputs are plain object lists as the API returns them. Ingresses of podnet's
IngressClass (or of no class, when the default class is podnet's) and the
HTTPRoutes attached to Gateways of podnet's GatewayClass become servers and
locations (model.py, gateway.py); upstreams are the Services' ready endpoints
(backends.py); the text comes from nginxconf.py. `without` leaves objects out,
which is how the controller finds the object behind a configuration nginx
rejects: render without each candidate until `nginx -t` passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from podnet.ingress import gateway as gw
from podnet.ingress.backends import Index
from podnet.ingress.model import Model, Problem, add_ingress, creation, is_ours, our_classes
from podnet.ingress.nginxconf import Renderer

Obj = dict[str, Any]
KINDS = ("IngressClass", "Ingress", "GatewayClass", "Gateway", "HTTPRoute", "Service", "EndpointSlice", "Secret")


@dataclass
class Inputs:
    ingress_classes: list[Obj] = field(default_factory=list)
    ingresses: list[Obj] = field(default_factory=list)
    gateway_classes: list[Obj] = field(default_factory=list)
    gateways: list[Obj] = field(default_factory=list)
    httproutes: list[Obj] = field(default_factory=list)
    services: list[Obj] = field(default_factory=list)
    slices: list[Obj] = field(default_factory=list)
    secrets: list[Obj] = field(default_factory=list)


@dataclass
class Rendered:
    text: str
    files: dict[str, bytes]  # certificate file name -> key + chain (PEM)
    problems: list[Problem]
    ingresses: list[Obj]  # the Ingresses of our class (status.loadBalancer is set on these)
    gateways: dict[tuple[str, str], gw.GatewayResult]
    routes: dict[tuple[str, str], gw.RouteResult]
    served: list[tuple[str, str, str]]  # (kind, namespace, name) of what is in the text


def ours(inp: Inputs) -> tuple[list[Obj], list[Obj]]:
    """-> (our Ingresses, our Gateways), oldest first."""
    classes, default_ours = our_classes(inp.ingress_classes)
    ings = sorted((i for i in inp.ingresses if is_ours(i, classes, default_ours)), key=creation)
    gclasses = gw.our_gateway_classes(inp.gateway_classes)
    gws = sorted((g for g in inp.gateways if (g.get("spec") or {}).get("gatewayClassName") in gclasses), key=creation)
    return ings, gws


def render(
    inp: Inputs, run_dir: str, cert_dir: str, without: frozenset[tuple[str, str, str]] = frozenset(), workers: int = 1
) -> Rendered:
    index = Index(inp.services, inp.slices)
    model = Model(index, inp.secrets)
    ings, gws = ours(inp)
    served = []
    for ing in ings:
        key = ("Ingress", ing["metadata"].get("namespace") or "default", ing["metadata"]["name"])
        if key in without:
            continue
        before = len(model.problems)
        add_ingress(model, ing)
        if len(model.problems) == before:
            served.append(key)
    routes = sorted(
        (
            r
            for r in inp.httproutes
            if ("HTTPRoute", r["metadata"].get("namespace") or "default", r["metadata"]["name"]) not in without
        ),
        key=creation,
    )
    route_results: dict[tuple[str, str], gw.RouteResult] = {}
    gw_results = {}
    for g in gws:
        key = ("Gateway", g["metadata"].get("namespace") or "default", g["metadata"]["name"])
        if key in without:
            continue
        gw_results[key[1:]] = gw.add_gateway(model, g, routes, route_results)
        served.append(key)
    for (ns, name), res in route_results.items():
        if any(p.accepted for p in res.parents):
            served.append(("HTTPRoute", ns, name))
    servers = [model.servers[k] for k in sorted(model.servers)]
    upstreams = [index.upstreams[k] for k in sorted(index.upstreams)]
    text = Renderer(run_dir, cert_dir, workers).render(servers, upstreams, model.default_backend)
    return Rendered(
        text,
        dict(sorted(model.files.items())),
        model.problems,
        ings,
        gw_results,
        route_results,
        sorted(served),
    )
