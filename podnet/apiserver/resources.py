"""The resources the API server serves, and the discovery documents that
tell clients about them (kubectl's REST mapper reads these first).

Every stored kind of podnet.api is served under its group and version, with
the verbs kube-apiserver gives it; subresources are listed as
`pods/status` etc., as in kube-apiserver's APIResourceList. The legacy
(unaggregated) discovery format is served: kubectl 1.32 asks for the
aggregated one first and falls back when the answer is plain JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from podnet.api import KINDS, Kind

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
# kubectl get all: the kinds of the "all" category in kube-apiserver
_ALL = {"Pod", "Service", "Deployment", "ReplicaSet"}
_SUBRESOURCES: dict[str, tuple[str, ...]] = {
    "Pod": ("status", "log", "exec", "attach", "portforward", "binding"),
    "Node": ("status",),
    "Namespace": ("status",),
    "Service": ("status",),
    "Deployment": ("status", "scale"),
    "ReplicaSet": ("status", "scale"),
    "NetworkPolicy": (),
    "Ingress": ("status",),
    "GatewayClass": ("status",),
    "Gateway": ("status",),
    "HTTPRoute": ("status",),
}


@dataclass(frozen=True)
class Resource:
    kind: Kind
    subresources: tuple[str, ...] = field(default=())

    @property
    def plural(self) -> str:
        return self.kind.plural

    @property
    def group(self) -> str:
        return self.kind.group

    @property
    def version(self) -> str:
        return self.kind.version

    @property
    def namespaced(self) -> bool:
        return self.kind.namespaced

    def has_status(self) -> bool:
        return "status" in self.subresources


def _served() -> list[Resource]:
    out = [Resource(k, _SUBRESOURCES.get(k.kind, ())) for k in KINDS.values()]
    return sorted(out, key=lambda r: (r.group, r.plural))


RESOURCES: list[Resource] = _served()
# (group, version, plural) -> Resource
BY_PATH: dict[tuple[str, str, str], Resource] = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND: dict[str, Resource] = {r.kind.kind: r for r in RESOURCES}


def find(group: str, version: str, plural: str) -> Resource | None:
    return BY_PATH.get((group, version, plural))


def _versions() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for r in RESOURCES:
        vs = groups.setdefault(r.group, [])
        if r.version not in vs:
            vs.append(r.version)
    return groups


def api_versions() -> dict[str, Any]:
    """GET /api"""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }


def api_groups() -> dict[str, Any]:
    """GET /apis"""
    groups = []
    for g, vs in sorted(_versions().items()):
        if not g:
            continue
        gvs = [{"groupVersion": "%s/%s" % (g, v), "version": v} for v in vs]
        groups.append({"name": g, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict[str, Any] | None:
    """GET /apis/<group>"""
    vs = _versions().get(group)
    if not group or not vs:
        return None
    gvs = [{"groupVersion": "%s/%s" % (group, v), "version": v} for v in vs]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """GET /api/v1 or /apis/<group>/<version>: an APIResourceList."""
    items: list[dict[str, Any]] = []
    for r in RESOURCES:
        if (r.group, r.version) != (group, version):
            continue
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.kind.singular,
            "namespaced": r.namespaced,
            "kind": r.kind.kind,
            "verbs": VERBS,
        }
        if r.kind.short_names:
            entry["shortNames"] = list(r.kind.short_names)
        if r.kind.kind in _ALL:
            entry["categories"] = ["all"]
        items.append(entry)
        for sub in r.subresources:
            items.append(_subresource(r, sub))
    if not items:
        return None
    gv = version if not group else "%s/%s" % (group, version)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items}


def _subresource(r: Resource, sub: str) -> dict[str, Any]:
    kind, verbs = r.kind.kind, ["get", "patch", "update"]
    if sub == "scale":
        kind = "Scale"
        return {
            "name": "%s/scale" % r.plural,
            "singularName": "",
            "namespaced": r.namespaced,
            "group": "autoscaling",
            "version": "v1",
            "kind": kind,
            "verbs": verbs,
        }
    if sub in ("exec", "attach", "portforward"):
        kind, verbs = (
            {"exec": "PodExecOptions", "attach": "PodAttachOptions"}.get(sub, "PodPortForwardOptions"),
            [
                "create",
                "get",
            ],
        )
    elif sub == "log":
        kind, verbs = "Pod", ["get"]
    elif sub == "binding":
        kind, verbs = "Binding", ["create"]
    return {
        "name": "%s/%s" % (r.plural, sub),
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": kind,
        "verbs": verbs,
    }
