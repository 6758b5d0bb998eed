"""The API client every podnet component uses: HTTPS requests with
keep-alive, objects by kind and name, watches as iterators.

The verbs mirror what the components need (get, find, list, create,
update, update_status, mutate, patch, delete, watch) and speak only the
Kubernetes REST API, so the same code runs against podnet's API server or
a real kube-apiserver. One connection per thread (http.client connections
are not thread-safe), reused across requests; a watch gets its own.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from podnet.api import ApiError, Kind, stored_kind
from podnet.client.config import Config

Obj = dict[str, Any]


class StatusError(ApiError):
    """An error Status from the server; .code and .reason as sent."""

    def __init__(self, code: int, reason: str, message: str, status: Obj | None = None):
        super().__init__(message)
        self.code, self.reason, self.status = code, reason, status or {}


class NotFound(StatusError):
    pass


class AlreadyExists(StatusError):
    pass


class Conflict(StatusError):
    pass


class Gone(StatusError):
    pass


_BY_REASON = {"NotFound": NotFound, "AlreadyExists": AlreadyExists, "Conflict": Conflict, "Expired": Gone, "Gone": Gone}


def status_error(code: int, body: bytes) -> StatusError:
    try:
        st = json.loads(body)
    except ValueError:
        st = {}
    if not isinstance(st, dict):
        st = {}
    reason = st.get("reason") or {404: "NotFound", 409: "Conflict", 410: "Expired"}.get(code, "Unknown")
    msg = st.get("message") or body.decode(errors="replace").strip() or "HTTP %d" % code
    return _BY_REASON.get(reason, StatusError)(code, reason, msg, st)


def collection_path(kind: Kind, namespace: str | None) -> str:
    base = "/api/v1" if not kind.group else "/apis/" + kind.api_version
    if kind.namespaced and namespace:
        return "%s/namespaces/%s/%s" % (base, namespace, kind.plural)
    return "%s/%s" % (base, kind.plural)


def object_path(kind: Kind, namespace: str | None, name: str, sub: str = "") -> str:
    p = "%s/%s" % (collection_path(kind, (namespace or "default") if kind.namespaced else None), name)
    return p + "/" + sub if sub else p


class Client:
    def __init__(self, config: Config, user_agent: str = "podnet", timeout: float = 30.0):
        self.config = config
        u = urllib.parse.urlsplit(config.server)
        if u.scheme != "https":
            raise ApiError("API server %s: only https is supported" % config.server)
        self.host, self.port = u.hostname or "", u.port or 443
        self.ssl = config.ssl_context()
        self.user_agent, self.timeout = user_agent, timeout
        self._local = threading.local()

    # ---- transport ------------------------------------------------------------

    def _connect(self, timeout: float | None) -> http.client.HTTPSConnection:
        c = http.client.HTTPSConnection(self.host, self.port, context=self.ssl, timeout=timeout)
        c.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return c

    def _headers(self, ctype: str | None, accept: str = "application/json") -> dict[str, str]:
        h = {"Accept": accept, "User-Agent": self.user_agent}
        if self.config.token:
            h["Authorization"] = "Bearer " + self.config.token
        if ctype:
            h["Content-Type"] = ctype
        return h

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        ctype: str = "application/json",
        accept: str = "application/json",
        raw: bool = False,
    ) -> Any:
        if query:
            path += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        for attempt in range(2):
            conn = getattr(self._local, "conn", None)
            fresh = conn is None
            if conn is None:
                try:
                    conn = self._local.conn = self._connect(self.timeout)
                except (OSError, ssl.SSLError) as exc:
                    raise ApiError(
                        "%s %s: cannot reach the API server %s: %s" % (method, path, self.config.server, exc)
                    ) from None
            try:
                conn.request(
                    method, path, body=data, headers=self._headers(ctype if data is not None else None, accept)
                )
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
                conn.close()
                self._local.conn = None
                if fresh or attempt:  # a new connection failed: the server is down
                    raise ApiError("%s %s: %s" % (method, path, exc)) from None
                continue  # a kept-alive connection the server closed: once more
            if resp.status >= 400:
                raise status_error(resp.status, payload)
            if raw:
                return payload
            return json.loads(payload) if payload else None
        raise ApiError("%s %s: failed" % (method, path))

    def wait_ready(self, stop: threading.Event | None = None, timeout: float = 60.0) -> None:
        """Until the server answers /readyz (a component started beside it)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.request("GET", "/readyz", raw=True)
                return
            except ApiError as exc:
                if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                    raise ApiError(
                        "API server %s not ready after %d s: %s" % (self.config.server, timeout, exc)
                    ) from None
            time.sleep(0.05)

    # ---- objects --------------------------------------------------------------

    def get(self, kind: str | Kind, namespace: str | None, name: str) -> Obj:
        k = stored_kind(kind)
        got: Obj = self.request("GET", object_path(k, namespace, name))
        return got

    def find(self, kind: str | Kind, namespace: str | None, name: str) -> Obj | None:
        try:
            return self.get(kind, namespace, name)
        except NotFound:
            return None

    def list_rev(
        self, kind: str | Kind, namespace: str | None = None, labels: str | None = None, fields: str | None = None
    ) -> tuple[list[Obj], str]:
        k = stored_kind(kind)
        got = self.request(
            "GET", collection_path(k, namespace), query={"labelSelector": labels, "fieldSelector": fields}
        )
        items = got.get("items") or []
        for o in items:  # a List's items omit kind and apiVersion on the wire
            o.setdefault("kind", k.kind)
            o.setdefault("apiVersion", k.api_version)
        return items, str(got.get("metadata", {}).get("resourceVersion", ""))

    def list(
        self, kind: str | Kind, namespace: str | None = None, labels: str | None = None, fields: str | None = None
    ) -> list[Obj]:
        return self.list_rev(kind, namespace, labels, fields)[0]

    def create(self, obj: Obj, dry_run: bool = False) -> Obj:
        k = stored_kind(obj["kind"])
        ns = (obj.get("metadata") or {}).get("namespace") or "default"
        got: Obj = self.request("POST", collection_path(k, ns), obj, query={"dryRun": "All" if dry_run else None})
        return got

    def update(self, obj: Obj, status: bool = False) -> Obj:
        """PUT; Conflict when the object changed since obj was read."""
        k = stored_kind(obj["kind"])
        m = obj["metadata"]
        got: Obj = self.request("PUT", object_path(k, m.get("namespace"), m["name"], "status" if status else ""), obj)
        return got

    def update_status(self, obj: Obj) -> Obj:
        return self.update(obj, status=True)

    def patch(
        self,
        kind: str | Kind,
        namespace: str | None,
        name: str,
        patch: Any,
        ptype: str = "merge",
        sub: str = "",
        manager: str | None = None,
        force: bool = False,
    ) -> Obj:
        k = stored_kind(kind)
        ctype = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "apply": "application/apply-patch+yaml",
        }[ptype]
        q = {
            "fieldManager": manager or (self.user_agent if ptype == "apply" else None),
            "force": "true" if force else None,
        }
        got: Obj = self.request("PATCH", object_path(k, namespace, name, sub), patch, query=q, ctype=ctype)
        return got

    def mutate(
        self,
        kind: str | Kind,
        namespace: str | None,
        name: str,
        fn: Callable[[Obj], Any],
        status: bool = False,
        attempts: int = 20,
    ) -> Obj | None:
        """Read-modify-write with retries on conflict; fn(obj) changes obj in
        place (returns False to skip the write). -> the object, None if absent."""
        for _ in range(attempts):
            obj = self.find(kind, namespace, name)
            if obj is None:
                return None
            if fn(obj) is False:
                return obj
            try:
                return self.update(obj, status=status)
            except Conflict:
                time.sleep(0.01)
            except NotFound:
                return None
        raise Conflict(409, "Conflict", "%s %s/%s kept changing under us" % (kind, namespace, name))

    def delete(
        self,
        kind: str | Kind,
        namespace: str | None,
        name: str,
        grace: int | None = None,
        propagation: str | None = None,
        uid: str | None = None,
    ) -> Obj:
        k = stored_kind(kind)
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        if propagation:
            body["propagationPolicy"] = propagation
        if uid:
            body["preconditions"] = {"uid": uid}
        got: Obj = self.request("DELETE", object_path(k, namespace, name), body)
        return got

    # ---- watch ----------------------------------------------------------------

    def watch(
        self,
        kind: str | Kind,
        namespace: str | None = None,
        resource_version: str | None = None,
        timeout: int = 300,
        labels: str | None = None,
        fields: str | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[tuple[str, Obj]]:
        """(type, object) per event, BOOKMARKs included (the caller keeps
        their resourceVersion). Ends when the server ends the watch or stop
        is set; raises Gone for a resourceVersion the server no longer has."""
        k = stored_kind(kind)
        q = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout),
            "resourceVersion": resource_version or None,
            "labelSelector": labels,
            "fieldSelector": fields,
        }
        path = collection_path(k, namespace) + "?" + urllib.parse.urlencode({a: b for a, b in q.items() if b})
        # bookmarks come every few seconds, so a silent connection is a dead one
        conn = self._connect(timeout=60)
        try:
            conn.request("GET", path, headers=self._headers(None))
            resp = conn.getresponse()
            if resp.status >= 400:
                raise status_error(resp.status, resp.read())
            while stop is None or not stop.is_set():
                line = resp.readline()
                if not line:
                    return
                ev = json.loads(line)
                etype, obj = ev.get("type"), ev.get("object") or {}
                if etype == "ERROR":
                    raise status_error(int(obj.get("code") or 500), line and json.dumps(obj).encode())
                yield etype, obj
        finally:
            conn.close()
