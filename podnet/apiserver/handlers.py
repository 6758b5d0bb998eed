"""The REST surface: URL -> resource, verb -> registry call, object -> JSON
or Table, as kube-apiserver lays it out:

    /api/v1/<plural>                                  cluster-wide list/watch
    /api/v1/namespaces/<ns>/<plural>[/<name>[/<sub>]]  namespaced kinds
    /api/v1/<plural>/<name>[/<sub>]                    cluster-scoped kinds
    /apis/<group>/<version>/...                        the same for groups
"""

from __future__ import annotations

import json
import logging
from typing import Any

import yaml
from aiohttp import web

from podnet.apiserver import errors, openapi, query, resources, watch
from podnet.apiserver.errors import StatusError
from podnet.apiserver.registry import Registry
from podnet.apiserver.resources import Resource

log = logging.getLogger("podnet.apiserver")
Obj = dict[str, Any]


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(obj, separators=(",", ":")).encode(), content_type="application/json"
    )


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


class Target:
    """What a URL names."""

    def __init__(self, res: Resource, ns: str | None, name: str | None, sub: str):
        self.res, self.ns, self.name, self.sub = res, ns, name, sub


def parse(group: str, version: str, parts: list[str]) -> Target:
    def res_of(plural: str) -> Resource:
        r = resources.find(group, version, plural)
        if r is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        return r

    if not parts:
        raise StatusError(404, "NotFound", "the server could not find the requested resource")
    if parts[0] == "namespaces" and len(parts) >= 3 and resources.find(group, version, parts[2]):
        ns, rest = parts[1], parts[2:]
        r = res_of(rest[0])
        if not r.namespaced:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        return Target(r, ns, rest[1] if len(rest) > 1 else None, "/".join(rest[2:]))
    r = res_of(parts[0])
    if r.namespaced and len(parts) > 1:
        raise StatusError(404, "NotFound", "the server could not find the requested resource")
    return Target(r, None, parts[1] if len(parts) > 1 else None, "/".join(parts[2:]))


class Handlers:
    def __init__(self, registry: Registry, table: Any = None, streams: Any = None):
        self.registry = registry
        self.cache = registry.cache
        self.table = table  # module with to_table(kind, objects, include_object=...)
        self.streams = streams  # subresource handlers: log, exec, attach, portforward

    # ---- discovery ------------------------------------------------------------

    async def discovery(self, request: web.Request) -> web.Response:
        path = request.path.rstrip("/")
        if path == "/api":
            return json_response(resources.api_versions())
        if path == "/apis":
            return json_response(resources.api_groups())
        if path == "/api/v1":
            doc = resources.resource_list("", "v1")
        else:
            parts = path.split("/")[2:]
            doc = resources.api_group(parts[0]) if len(parts) == 1 else resources.resource_list(parts[0], parts[1])
        if doc is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        return json_response(doc)

    # ---- entry ----------------------------------------------------------------

    async def core(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.match_info["tail"].split("/") if p]
        if len(parts) <= 1:
            return await self.discovery(request)
        if parts[0] != "v1":
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        return await self._dispatch(request, "", "v1", parts[1:])

    async def grouped(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.match_info["tail"].split("/") if p]
        if len(parts) < 3:
            return await self.discovery(request)
        return await self._dispatch(request, parts[0], parts[1], parts[2:])

    async def _dispatch(self, request: web.Request, group: str, version: str, parts: list[str]) -> web.StreamResponse:
        t = parse(group, version, parts)
        m = request.method
        q = request.query
        dry = q.get("dryRun") == "All"
        if t.sub:
            return await self._subresource(request, t)
        if t.name is None:
            if m == "GET":
                if query.bool_param(q.get("watch")):
                    return await self._watch(request, t)
                return self._list(request, t)
            if m == "POST":
                raw = await self._body(request)
                request["warnings"] = openapi.check_object(raw, t.res, q.get("fieldValidation"))
                body = self._managed(request, None, raw, t)
                obj = self.registry.create(t.res, t.ns, body, dry_run=dry)
                return self._out(request, obj, 201)
            if m == "DELETE":
                return self._delete_collection(request, t)
            raise errors.method_not_allowed()
        if m == "GET":
            if query.bool_param(q.get("watch")):  # the old per-object watch path
                return await self._watch(request, t)
            return self._out(request, self.registry.get(t.res, t.ns, t.name))
        if m == "PUT":
            raw = await self._body(request)
            request["warnings"] = openapi.check_object(raw, t.res, q.get("fieldValidation"))
            body = self._managed(request, self.registry.get(t.res, t.ns, t.name), raw, t)
            obj = self.registry.update(t.res, t.ns, t.name, body, dry_run=dry)
            return self._out(request, obj)
        if m == "PATCH":
            obj, created = await self._patch(request, t)
            return self._out(request, obj, 201 if created else 200)
        if m == "DELETE":
            return await self._delete(request, t)
        raise errors.method_not_allowed()

    # ---- bodies and output ----------------------------------------------------

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf":  # kubectl's typed commands (create, run)
            from podnet.apiserver import protobuf

            return protobuf.request_body(raw)
        if "protobuf" in ctype or "cbor" in ctype:
            # client-go falls back to JSON on 415
            raise StatusError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - "
                "accepted media types include: application/json, application/yaml",
            )
        try:
            if ctype.endswith("yaml"):
                return yaml.safe_load(raw.decode() or "{}")
            return json.loads(raw or b"{}")
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request("the request body is not valid %s: %s" % (ctype, exc)) from None

    def _out(self, request: web.Request, obj: Obj, status: int = 200) -> web.Response:
        if wants_table(request) and self.table is not None:
            resp = json_response(self._table(request, obj["kind"], [obj]), status)
        else:
            resp = json_response(obj, status)
        openapi.add_warnings(resp, request.get("warnings", []))  # fieldValidation=Warn (the default)
        return resp

    def _table(self, request: web.Request, kind: str, items: list[Obj]) -> Obj:
        include = request.query.get("includeObject", "Metadata")
        try:
            tab: Obj = self.table.to_table(kind, items, include_object=include)
        except ValueError as exc:  # an includeObject kube-apiserver does not know
            raise errors.bad_request(str(exc)) from None
        tab.setdefault("metadata", {})["resourceVersion"] = str(self.cache.rev)
        return tab

    # ---- list and watch -------------------------------------------------------

    def _items(self, request: web.Request, t: Target) -> list[Obj]:
        pred = query.predicate(request.query.get("labelSelector"), request.query.get("fieldSelector"))
        return [o for o in self.registry.list(t.res, t.ns) if pred(o)]

    def _list(self, request: web.Request, t: Target) -> web.Response:
        items = self._items(request, t)
        q = request.query
        meta: Obj = {"resourceVersion": str(self.cache.rev)}
        if q.get("continue"):
            after = query.decode_continue(q["continue"])
            items = [o for o in items if _sort_key(o) > after]
        limit = query.int_param(q.get("limit"), "limit")
        if limit and limit > 0 and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            meta["continue"] = query.encode_continue(_sort_key(items[-1]), self.cache.rev)
            meta["remainingItemCount"] = rest
        if wants_table(request) and self.table is not None:
            tab = self._table(request, t.res.kind.kind, items)
            tab["metadata"].update(meta)
            return json_response(tab)
        k = t.res.kind
        return json_response({"kind": k.kind + "List", "apiVersion": k.api_version, "metadata": meta, "items": items})

    async def _watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        fields = q.get("fieldSelector")
        if t.name:
            fields = ",".join(f for f in (fields, "metadata.name=" + t.name) if f)
        pred = query.predicate(q.get("labelSelector"), fields)
        from podnet.api import prefix_for

        prefix = prefix_for(t.res.kind, t.ns if t.res.namespaced else None)
        timeout = query.int_param(q.get("timeoutSeconds"), "timeoutSeconds")
        table = wants_table(request) and self.table is not None

        def render(_etype: str, obj: Obj) -> Obj:
            return self._table(request, t.res.kind.kind, [obj])

        return await watch.serve(
            request,
            self.cache,
            t.res,
            prefix,
            pred,
            q.get("resourceVersion"),
            float(timeout) if timeout else None,
            query.bool_param(q.get("allowWatchBookmarks")),
            render if table else None,
        )

    def _managed(self, request: web.Request, old: Obj | None, new: Any, t: Target, sub: str = "") -> Any:
        """managedFields for a create or update by the request's field manager."""
        manager = request.query.get("fieldManager") or _manager(request)
        if not manager or not isinstance(new, dict):
            return new
        from podnet.apiserver import patch

        return patch.record_update(old, new, manager, t.res.kind.kind, _now(), subresource=sub)

    # ---- patch ----------------------------------------------------------------

    async def _patch(self, request: web.Request, t: Target, sub: str = "") -> tuple[Obj, bool]:
        assert t.name is not None
        from podnet.apiserver import patch

        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        body = await self._body(request)
        q = request.query
        manager = q.get("fieldManager") or _manager(request)
        dry = q.get("dryRun") == "All"
        reg = self.registry
        now = _now()
        if ctype == "application/apply-patch+yaml":
            if not manager:
                raise errors.bad_request("PATCH with application/apply-patch+yaml requires a fieldManager")
            live = reg.cache.get(reg.key(t.res, t.ns, t.name))
            force = query.bool_param(q.get("force"))
            openapi.check_applied(body, t.res, t.ns, t.name)
            try:
                applied = reg._check_kind(t.res, body, t.ns)
                result = patch.server_side_apply(live, applied, manager, force, t.res.kind.kind, now)
            except patch.ApplyConflict as exc:
                raise _apply_conflict(exc) from None
            except patch.PatchError as exc:
                raise errors.StatusError(422, "Invalid", str(exc)) from None
            if live is None:
                result["metadata"]["name"] = t.name
                return reg.create(t.res, t.ns, result, dry_run=dry), True
            return reg.replace(t.res, live, result, sub, dry_run=dry), False
        current = reg.get(t.res, t.ns, t.name)
        try:
            if ctype == "application/merge-patch+json":
                new = patch.merge_patch(current, body)
            elif ctype == "application/json-patch+json":
                new = patch.json_patch(current, body)
            elif ctype == "application/strategic-merge-patch+json":
                new = patch.strategic_merge_patch(current, body, t.res.kind.kind)
            else:
                raise errors.StatusError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown "
                    "format - accepted media types include: application/json-patch+json, "
                    "application/merge-patch+json, application/apply-patch+yaml, "
                    "application/strategic-merge-patch+json",
                )
        except patch.PatchError as exc:
            raise errors.StatusError(422, "Invalid", str(exc)) from None
        request["warnings"] = openapi.check_patched(new, body, t.res, q.get("fieldValidation"))
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if rv and rv != current["metadata"].get("resourceVersion"):
            raise errors.modified(t.res.group, t.res.plural, t.name)
        if manager:
            new = patch.record_update(current, new, manager, t.res.kind.kind, now, subresource=sub)
        return reg.replace(t.res, current, new, sub, dry_run=dry), False

    # ---- delete ---------------------------------------------------------------

    async def _delete_opts(self, request: web.Request) -> Obj:
        opts: Obj = {}
        if request.can_read_body:
            body = await self._body(request)
            if isinstance(body, dict):
                opts = body
        q = request.query
        if "gracePeriodSeconds" in q:
            opts["gracePeriodSeconds"] = query.int_param(q["gracePeriodSeconds"], "gracePeriodSeconds")
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if opts.get("propagationPolicy") not in (None, "Orphan", "Background", "Foreground"):
            raise errors.bad_request(
                "propagationPolicy: must be Orphan, Background or Foreground, got %r" % opts["propagationPolicy"]
            )
        if opts.get("orphanDependents") is True:
            opts["propagationPolicy"] = "Orphan"
        return opts

    async def _delete(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        opts = await self._delete_opts(request)
        obj = self.registry.delete(
            t.res,
            t.ns,
            t.name,
            opts.get("gracePeriodSeconds"),
            opts.get("propagationPolicy"),
            opts.get("preconditions"),
            dry_run=request.query.get("dryRun") == "All",
        )
        return json_response(obj)

    def _delete_collection(self, request: web.Request, t: Target) -> web.Response:
        items = self._items(request, t)
        q = request.query
        grace = query.int_param(q.get("gracePeriodSeconds"), "gracePeriodSeconds")
        out = []
        for o in items:
            try:
                out.append(
                    self.registry.delete(
                        t.res, o["metadata"].get("namespace"), o["metadata"]["name"], grace, q.get("propagationPolicy")
                    )
                )
            except StatusError as exc:
                if exc.code != 404:
                    raise
        k = t.res.kind
        return json_response(
            {
                "kind": k.kind + "List",
                "apiVersion": k.api_version,
                "metadata": {"resourceVersion": str(self.cache.rev)},
                "items": out,
            }
        )

    # ---- subresources ---------------------------------------------------------

    async def _subresource(self, request: web.Request, t: Target) -> web.StreamResponse:
        assert t.name is not None
        m, sub, reg = request.method, t.sub, self.registry
        if sub == "status" and t.res.has_status():
            if m == "GET":
                return self._out(request, reg.get(t.res, t.ns, t.name))
            if m == "PUT":
                body = self._managed(request, reg.get(t.res, t.ns, t.name), await self._body(request), t, "status")
                return json_response(reg.update(t.res, t.ns, t.name, body, subresource="status"))
            if m == "PATCH":
                return json_response((await self._patch(request, t, "status"))[0])
            raise errors.method_not_allowed()
        if sub == "scale" and "scale" in t.res.subresources:
            from podnet.apiserver import scale

            return await scale.handle(request, self, t)
        if sub == "binding" and "binding" in t.res.subresources and m == "POST":
            return await self._bind(request, t)
        if sub in ("log", "exec", "attach", "portforward") and sub in t.res.subresources and self.streams is not None:
            pod = reg.get(t.res, t.ns, t.name)
            stream: web.StreamResponse = await self.streams.handle(request, sub, pod)
            return stream
        raise StatusError(404, "NotFound", "the server could not find the requested resource")

    async def _bind(self, request: web.Request, t: Target) -> web.Response:
        body = await self._body(request)
        node = ((body or {}).get("target") or {}).get("name")
        if not node:
            raise errors.invalid("Binding", "", "bindings", str(t.name), [("target.name", "Required value")])
        pod = self.registry.get(t.res, t.ns, str(t.name))
        if pod["spec"].get("nodeName"):
            raise errors.conflict(
                "", "pods", str(t.name), 'pod %s is already assigned to node "%s"' % (t.name, pod["spec"]["nodeName"])
            )
        self.registry.bind(t.res, pod, node, _now())
        return json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )


def _sort_key(o: Obj) -> str:
    m = o["metadata"]
    return "%s/%s" % (m.get("namespace") or "", m["name"])


def _manager(request: web.Request) -> str:
    ua = request.headers.get("User-Agent", "")
    return ua.split("/")[0] if ua else ""


def _now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _apply_conflict(exc: Any) -> StatusError:
    # the message is already Kubernetes' own ("Apply failed with 1 conflict: ...")
    return StatusError(409, "Conflict", str(exc), {"causes": list(getattr(exc, "causes", []))})
