"""/openapi/v3 and /openapi/v2 as kube-apiserver serves them, and server-side
field validation (`fieldValidation=Strict|Warn|Ignore`).

`kubectl apply` (default validation) asks /openapi/v3 whether the PATCH
operation of the object's kind takes `fieldValidation` (cli-runtime's
query_param_verifier_v3.go; no document: "failed to download openapi"), and
then sends `fieldValidation=Strict`; client-side apply computes its strategic
merge patch from the schemas' `x-kubernetes-patch-*`; `kubectl explain` renders
them. One document per group-version (`/openapi/v3/apis/apps/v1`), listed with
a content hash in /openapi/v3. /openapi/v2 is all of it in Swagger 2.0, in JSON
or, as client-go reads it, gnostic protobuf: kubectl validates a `kind: List`
file (what `kubectl get -o yaml` writes) itself, against /openapi/v2.

The documents are built once, from podnet.apiserver.schema and the served
resources, in a worker thread started with the server (about 0.4 s, mostly
importing the Python client's models), and kept as serialized bytes.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import threading
from typing import Any

from aiohttp import web

from podnet.apiserver import errors, resources, schema
from podnet.apiserver.errors import StatusError
from podnet.apiserver.resources import Resource

log = logging.getLogger("podnet.apiserver")
Obj = dict[str, Any]
REF = schema.REF
# /openapi/v2 in protobuf, the only form client-go reads: the type kube-openapi answers with (it also takes the
# deprecated "...v2@v1.0+protobuf" that client-go asks for).
PB = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
PATCH_TYPES = "application/apply-patch+yaml application/json-patch+json application/merge-patch+json \
application/strategic-merge-patch+json".split()
# The query parameters that are not strings.
_NUMBERS, _FLAGS = {"gracePeriodSeconds", "limit", "timeoutSeconds"}, {"force", "orphanDependents", "watch"}
_FLAGS |= {"allowWatchBookmarks", "sendInitialEvents"}
# Parameter groups, and the operations of a resource: HTTP method, x-kubernetes-action, operationId verb
# (+ infix), description, what it returns, query parameters, request body, response codes.
_GROUPS = {
    "$select": "continue fieldSelector labelSelector limit resourceVersion resourceVersionMatch sendInitialEvents "
    "timeoutSeconds",
    "$write": "dryRun fieldManager fieldValidation",
    "$delete": "dryRun gracePeriodSeconds orphanDependents propagationPolicy",
}
_OPS = [
    line.split("|")
    for line in """\
get|list|list|list or watch objects of kind|list|allowWatchBookmarks $select watch|-|200
post|post|create|create a|obj|$write|obj|200 201 202
delete|deletecollection|delete Collection|delete collection of|status|$delete $select|delete|200
get|get|read|read the specified|obj||-|200
put|put|replace|replace the specified|obj|$write|obj|200 201
patch|patch|patch|partially update the specified|obj|$write force|patch|200 201
delete|delete|delete|delete a|status|$delete|delete|200 202""".splitlines()
]


def _param(name: str, where: str = "query", desc: str = "") -> Obj:
    typ = "integer" if name in _NUMBERS else "boolean" if name in _FLAGS else "string"
    p: Obj = {"in": where, "name": name, "schema": {"type": typ, "uniqueItems": True}}
    if desc:
        p["description"] = desc
    if where == "path":
        p["required"] = True
    return p


def _media(ref: str, media: list[str]) -> Obj:
    return {m: {"schema": {"$ref": REF + ref}} for m in media}


def _operations(ops: list[list[str]], refs: dict[str, str], gvk: Obj, names: tuple[str, str, str, str]) -> Obj:
    """The operations of one path; names: the operationId's group-version, scope and kind (+ subresource),
    and the tag."""
    gv, ns, kind, tag = names
    codes = {"200": "OK", "201": "Created", "202": "Accepted", "401": "Unauthorized"}
    bodies = {
        "obj": {"content": _media(refs["obj"], ["*/*"]), "required": True},
        "patch": {"content": _media(schema.META + "Patch", PATCH_TYPES), "required": True},
        "delete": {"content": _media(schema.META + "DeleteOptions", ["*/*"])},
    }
    out: Obj = {}
    for method, action, opverb, desc, returns, params, body, answers in ops:
        verb, _, infix = opverb.partition(" ")
        responses: Obj = {
            c: {"content": _media(refs[returns], ["application/json", "application/yaml"]), "description": codes[c]}
            for c in answers.split()
        }
        responses["401"] = {"description": codes["401"]}
        op: Obj = {"description": "%s %s" % (desc, gvk["kind"]), "operationId": verb + gv + infix + ns + kind}
        if params:
            op["parameters"] = [_param(p) for p in " ".join(_GROUPS.get(w, w) for w in params.split()).split()]
        if body != "-":
            op["requestBody"] = bodies[body]
        ext = {"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}
        out[method] = {**op, "responses": responses, "tags": [tag], **ext}
    return out


def resource_paths(r: Resource, kinds: dict[tuple[str, str, str], str]) -> Obj:
    """The REST paths of one resource and their operations, named as kube-apiserver names them."""
    g, v, k = r.group, r.version, r.kind.kind
    if (g, v, k) not in kinds:
        return {}  # a kind without a schema
    gvk = {"group": g, "kind": k, "version": v}
    refs = {"obj": kinds[(g, v, k)], "list": kinds.get((g, v, k + "List"), ""), "status": schema.META + "Status"}
    gv = ("Core" if not g else g.split(".")[0].capitalize()) + v.capitalize()
    tag = ("core" if not g else g.split(".")[0]) + "_" + v
    ns, scope = ("Namespaced", "/namespaces/{namespace}") if r.namespaced else ("", "")
    root = "/api/" + v if not g else "/apis/%s/%s" % (g, v)
    pretty = [_param("pretty")]
    ns_p = [_param("namespace", "path", "object name and auth scope, such as for teams and projects")] * r.namespaced
    name_p = [_param("name", "path", "name of the " + k)] + ns_p + pretty
    collection, item = root + scope + "/" + r.plural, root + scope + "/" + r.plural + "/{name}"
    paths: Obj = {
        collection: {**_operations(_OPS[:3], refs, gvk, (gv, ns, k, tag)), "parameters": ns_p + pretty},
        item: {**_operations(_OPS[3:], refs, gvk, (gv, ns, k, tag)), "parameters": name_p},
    }
    if r.namespaced:  # the list across all namespaces
        ops = _operations(_OPS[:1], refs, gvk, (gv, "", k + "ForAllNamespaces", tag))
        paths[root + "/" + r.plural] = {**ops, "parameters": pretty}
    for sub in ("status", "scale"):
        if sub in r.subresources:
            sgvk, sref = gvk, refs
            if sub == "scale":  # autoscaling/v1 Scale, as kube-apiserver serves it for apps/v1
                sgvk = {"group": "autoscaling", "kind": "Scale", "version": "v1"}
                sref = {"obj": kinds[("autoscaling", "v1", "Scale")]}
            ops = _operations(_OPS[3:6], sref, sgvk, (gv, ns, k + sub.capitalize(), tag))
            paths[item + "/" + sub] = {**ops, "parameters": name_p}
    return paths


# ---- the documents ------------------------------------------------------------------------------------------------


# URL path (/openapi/v2, /openapi/v3, /openapi/v3/apis/apps/v1; "/openapi/v2 protobuf") -> (bytes, sha512)
Documents = dict[str, tuple[bytes, str]]


def _to_v2(node: Any) -> Any:
    """An OpenAPI 3 schema as Swagger 2.0 has it: refs into #/definitions/, a lone allOf ref unwrapped."""
    if isinstance(node, list):
        return [_to_v2(v) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node.get("allOf", ())) == 1:
        node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
    return {k: v.replace(REF, "#/definitions/") if k == "$ref" else _to_v2(v) for k, v in node.items()}


def _v2_paths(paths: Obj) -> Obj:
    """The operations in Swagger 2.0 with what kubectl reads of them: the GVK and, for PATCH, the patch types
    (its v2 fallback for client-side apply picks strategic merge patch from them)."""
    out: Obj = {}
    for path, item in paths.items():
        for verb, op in item.items():
            if verb != "parameters":
                keep = ("description", "operationId", "tags", "x-kubernetes-action", "x-kubernetes-group-version-kind")
                o = {k: op[k] for k in keep}
                o["consumes"] = list(op.get("requestBody", {}).get("content", {}))
                o["responses"] = {code: {"description": r["description"]} for code, r in op["responses"].items()}
                out.setdefault(path, {})[verb] = o
    return out


def _pb(num: int, payload: bytes | str) -> bytes:
    """One length-delimited protobuf field (every field written here is a string or a message)."""
    data = payload.encode() if isinstance(payload, str) else payload
    out = bytearray()
    for n in (num << 3 | 2, len(data)):
        while n > 0x7F:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        out.append(n)
    return bytes(out) + data


def _pb_schema(s: Obj) -> bytes:
    """A Swagger 2.0 schema as gnostic's openapi_v2.Schema (field numbers of OpenAPIv2.proto)."""
    out = [_pb(n, s[k]) for n, k in ((1, "$ref"), (2, "format"), (4, "description")) if k in s]
    out += [_pb(19, r) for r in s.get("required", [])]
    if isinstance(s.get("additionalProperties"), dict):
        out.append(_pb(21, _pb(1, _pb_schema(s["additionalProperties"]))))
    out += [_pb(22, _pb(1, s["type"]))] if "type" in s else []
    out += [_pb(23, _pb(1, _pb_schema(s["items"])))] if "items" in s else []
    if "properties" in s:
        out.append(_pb(25, b"".join(_pb(1, _pb(1, k) + _pb(2, _pb_schema(v))) for k, v in s["properties"].items())))
    return b"".join(out) + _pb_extensions(31, s)


def _pb_extensions(num: int, node: Obj) -> bytes:
    """x-kubernetes-* as gnostic's NamedAny, the value as YAML (JSON is YAML)."""
    return b"".join(_pb(num, _pb(1, k) + _pb(2, _pb(2, json.dumps(v)))) for k, v in node.items() if k[:2] == "x-")


def _pb_document(v2: Obj) -> bytes:
    """/openapi/v2 as client-go reads it (protobuf only): gnostic's openapi_v2.Document. Of an operation only
    what kubectl reads: consumes and the extensions (the GVK)."""
    verbs = {"get": 2, "put": 3, "post": 4, "delete": 5, "patch": 8}  # PathItem's field numbers
    paths = b""
    for path, item in v2["paths"].items():
        ops = b"".join(
            _pb(verbs[v], b"".join(_pb(7, c) for c in o["consumes"]) + _pb_extensions(13, o)) for v, o in item.items()
        )
        paths += _pb(2, _pb(1, path) + _pb(2, ops))
    defs = b"".join(_pb(1, _pb(1, name) + _pb(2, _pb_schema(d))) for name, d in v2["definitions"].items())
    info = _pb(1, v2["info"]["title"]) + _pb(2, v2["info"]["version"])
    return _pb(1, v2["swagger"]) + _pb(2, info) + _pb(8, paths) + _pb(9, defs)


def _dump(doc: Obj | bytes) -> tuple[bytes, str]:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc, separators=(",", ":")).encode()
    return raw, hashlib.sha512(raw).hexdigest().upper()  # kube-apiserver's hash: sha512, upper-case hex


def build() -> Documents:
    s = schema.load()
    by_gv: dict[str, Obj] = {}
    for r in resources.RESOURCES:
        key = "api/" + r.version if not r.group else "apis/%s/%s" % (r.group, r.version)
        by_gv.setdefault(key, {}).update(resource_paths(r, s.kinds))
    info = {"title": "Kubernetes", "version": "unversioned"}
    bearer = {"BearerToken": {"description": "Bearer Token authentication", "in": "header", "type": "apiKey"}}
    bearer["BearerToken"]["name"] = "authorization"
    docs: Documents = {}
    all_paths: Obj = {}
    for key, paths in sorted(by_gv.items()):
        if paths:
            components = {"schemas": schema.closure(s.defs, paths), "securitySchemes": bearer}
            doc = {"components": components, "info": info, "openapi": "3.0.0", "paths": dict(sorted(paths.items()))}
            docs["/openapi/v3/" + key] = _dump(doc)
            all_paths.update(paths)
    root = {u[12:]: {"serverRelativeURL": "%s?hash=%s" % (u, h)} for u, (_, h) in docs.items()}  # 12: /openapi/v3/
    docs["/openapi/v3"] = _dump({"paths": root})
    v2 = {"definitions": _to_v2(schema.closure(s.defs, all_paths)), "info": info, "paths": _v2_paths(all_paths)}
    v2.update({"security": [{"BearerToken": []}], "securityDefinitions": bearer, "swagger": "2.0"})
    docs["/openapi/v2"] = _dump(v2)
    docs["/openapi/v2 protobuf"] = _dump(_pb_document(v2))
    return docs


_lock = threading.Lock()
_docs: Documents | None = None


def documents() -> Documents:
    """The documents, built on first use; thread-safe."""
    global _docs
    with _lock:
        if _docs is None:
            _docs = build()
        return _docs


# ---- field validation -------------------------------------------------------------------------------------------


def directive(value: str | None, options: str = "CreateOptions") -> str:
    """The request's fieldValidation: Warn when absent (kube-apiserver's default), 422 for anything unknown."""
    if not value:
        return "Warn"
    if value not in ("Ignore", "Warn", "Strict"):
        why = 'Unsupported value: "%s": supported values: "", "Ignore", "Strict", "Warn"' % value
        raise errors.invalid(options, "meta.k8s.io", "", "", [("fieldValidation", why)])
    return value


def _unknown(obj: Any, kind: str, api_version: str | None, prune: bool = False) -> list[str]:
    try:
        return schema.unknown_fields(obj, kind, api_version, prune) if isinstance(obj, dict) else []
    except ImportError as exc:  # no schema without the `kubernetes` package: nothing to check against
        _skipped(str(exc))
        return []


@functools.cache  # once per reason, not once per request
def _skipped(reason: str) -> None:
    log.warning("field validation skipped: %s", reason)


def _strict(paths: list[str]) -> str:
    return "strict decoding error: " + ", ".join('unknown field "%s"' % p for p in paths)


def check_object(obj: Any, res: Resource, validation: str | None) -> list[str]:
    """POST and PUT: fields the body's kind does not define. Strict: kube-apiserver's 400 (`Deployment in
    version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.foo"`). Warn (the
    default) and Ignore: removed from obj, as kube-apiserver's decoder drops them; Warn returns the warnings
    to send (add_warnings)."""
    mode = directive(validation)
    kind, av = res.kind.kind, res.kind.api_version
    paths = _unknown(obj, kind, av, prune=mode != "Strict")
    if paths and mode == "Strict":
        what = '%s in version "%s"' % (obj.get("kind") or kind, str(obj.get("apiVersion") or av).rpartition("/")[2])
        raise errors.bad_request("%s cannot be handled as a %s: %s" % (what, kind, _strict(paths)))
    return ['unknown field "%s"' % p for p in paths] if mode == "Warn" else []


def check_patched(patched: Obj, patch: Any, res: Resource, validation: str | None) -> list[str]:
    """PATCH (merge, JSON or strategic merge patch): as check_object, for the patched object; a Strict failure
    is kube-apiserver's 422 on the field `patch`."""
    mode = directive(validation, "PatchOptions")
    paths = _unknown(patched, res.kind.kind, res.kind.api_version, prune=mode != "Strict")
    if paths and mode == "Strict":
        why = "Invalid value: %s: %s" % (json.dumps(json.dumps(patch, separators=(",", ":"))), _strict(paths))
        details = {"causes": [{"reason": "FieldValueInvalid", "message": why, "field": "patch"}]}
        raise StatusError(422, "Invalid", ' "" is invalid: patch: ' + why, details)
    return ['unknown field "%s"' % p for p in paths] if mode == "Warn" else []


def check_applied(applied: Obj, res: Resource, namespace: str | None, name: str) -> None:
    """Server-side apply refuses unknown fields whatever fieldValidation says: kube-apiserver's field manager
    fails to type the applied configuration, an error without a reason (500)."""
    paths = _unknown(applied, res.kind.kind, res.kind.api_version)
    if paths:
        lines = ["." + p + ": field not declared in schema" for p in paths]
        text = lines[0] if len(lines) == 1 else "\n  ".join(["errors:"] + lines)
        where = "%s/%s; %s/%s, Kind=%s" % (namespace or "", name, res.group, res.version, res.kind.kind)
        raise StatusError(500, "", "failed to create typed patch object (%s): %s" % (where, text))


def add_warnings(response: web.StreamResponse, warnings: list[str]) -> None:
    """`Warning: 299 - "unknown field \\"spec.foo\\""`, one header each, as kube-apiserver sends them."""
    for w in warnings:
        response.headers.add("Warning", "299 - " + json.dumps(w))


# ---- HTTP -----------------------------------------------------------------------------------------------------------


async def _ready() -> Documents:
    if _docs is not None:
        return _docs
    try:
        return await asyncio.get_running_loop().run_in_executor(None, documents)
    except ImportError as exc:  # the `kubernetes` package is missing: kubectl then says "failed to download openapi"
        raise StatusError(503, "ServiceUnavailable", "the OpenAPI documents are unavailable: %s" % exc) from None


async def serve(request: web.Request) -> web.Response:
    """GET /openapi/v2, /openapi/v3 or /openapi/v3/<group-version>: JSON, with its hash as the ETag."""
    docs, path = await _ready(), request.path.rstrip("/")
    if path not in docs:
        raise StatusError(404, "NotFound", "the server could not find the requested resource")
    # the first of the Accept header's types that this document comes in
    offered = {"application/json": path, "application/*": path, "*/*": path, PB: path + " protobuf"}
    offered[PB.replace(".v1.0", "@v1.0")] = path + " protobuf"
    accept = [t.split(";")[0].strip() for t in request.headers.get("Accept", "*/*").split(",")]
    key = next((offered[t] for t in accept if offered.get(t) in docs), None)
    if key is None:
        raise StatusError(406, "NotAcceptable", "only the following media types are accepted: application/json")
    body, etag = docs[key]
    # a URL whose hash names exactly these bytes may be cached for good (kubectl's HTTP cache keeps them)
    cache = "public, immutable" if request.query.get("hash") == etag else "no-cache, private"
    headers = {"ETag": '"%s"' % etag, "Vary": "Accept", "Cache-Control": cache}
    if request.headers.get("If-None-Match") == headers["ETag"]:
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=body, content_type=PB if key.endswith(" protobuf") else "application/json", headers=headers
    )


_WARM = web.AppKey("openapi_warm", asyncio.Future)  # holds the build's future while it runs


async def warm(app: web.Application) -> None:
    """Start building the documents in a worker thread; requests that come first wait for it."""

    def build_quietly() -> None:
        try:
            documents()
        except Exception:  # and again to whoever asks for a document (503 without the `kubernetes` package)
            log.exception("building the OpenAPI documents")

    app[_WARM] = asyncio.get_running_loop().run_in_executor(None, build_quietly)


def add_routes(app: web.Application) -> None:
    for path in ("/openapi/v2", "/openapi/v3", "/openapi/v3/{path:.+}"):
        app.router.add_get(path, serve)
    app.on_startup.append(warm)
