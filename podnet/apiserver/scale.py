"""The scale subresource (autoscaling/v1 Scale) of Deployments and
ReplicaSets: what `kubectl scale` reads and patches."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from podnet.api import format_selector
from podnet.apiserver import errors

Obj = dict[str, Any]


def to_scale(obj: Obj) -> Obj:
    meta = obj["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
        },
        "spec": {"replicas": obj["spec"].get("replicas", 1)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": format_selector(obj["spec"].get("selector")),
        },
    }


async def handle(request: web.Request, h: Any, t: Any) -> web.Response:
    from podnet.apiserver.handlers import json_response

    reg = h.registry
    current = reg.get(t.res, t.ns, t.name)
    if request.method == "GET":
        return json_response(to_scale(current))
    if request.method not in ("PUT", "PATCH"):
        raise errors.method_not_allowed()
    from podnet.apiserver import patch

    body = await h._body(request)
    scale = to_scale(current)
    if request.method == "PUT":
        new_scale = body
    else:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            if ctype == "application/json-patch+json":
                new_scale = patch.json_patch(scale, body)
            else:  # merge and strategic merge are the same on a Scale
                new_scale = patch.merge_patch(scale, body)
        except patch.PatchError as exc:
            raise errors.StatusError(422, "Invalid", str(exc)) from None
    replicas = ((new_scale or {}).get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.invalid(
            "Scale",
            "autoscaling",
            t.res.plural,
            t.name,
            [("spec.replicas", "Invalid value: %r: must be greater than or equal to 0" % replicas)],
        )
    rv = ((new_scale or {}).get("metadata") or {}).get("resourceVersion")
    if rv and rv != current["metadata"].get("resourceVersion"):
        raise errors.modified(t.res.group, t.res.plural, t.name)
    new = copy.deepcopy(current)
    new["spec"]["replicas"] = replicas
    manager = request.query.get("fieldManager") or request.headers.get("User-Agent", "").split("/")[0]
    if manager:
        import time

        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        new = patch.record_update(current, new, manager, t.res.kind.kind, now, subresource="scale")
    return json_response(to_scale(reg.replace(t.res, current, new)))
