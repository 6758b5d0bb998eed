"""The routing model nginx.conf is rendered from, and Ingresses translated into it.

A Server is one (port, TLS, host) virtual server. Its Routes are the
candidates a request may match: a path match (Exact or Prefix), conditions
(header, query parameter, method: exact values) and what to do (proxy to
weighted backends with header changes and a rewrite, or redirect).

Ingress precedence (the Ingress spec): Exact before Prefix, the longest
prefix first, and a prefix matches by path element (/foo matches /foo and
/foo/bar, not /foobar; a trailing slash is ignored). ImplementationSpecific
is Prefix here. Between Ingresses with the same host and path the oldest
wins (creationTimestamp, then namespace/name), as in ingress-nginx.

A bad Ingress (a path that is not absolute, a character nginx would read
as syntax, a missing or malformed TLS Secret) is left out whole and named
in a Problem, so nginx keeps serving every other one.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from podnet.ingress.backends import Index

Obj = dict[str, Any]

INGRESS_CONTROLLER = "podnet.io/ingress-nginx"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"

# characters of paths, hosts and values that nginx would read as syntax
_UNSAFE = re.compile(r'[\s"\'\\$;{}#]|[\x00-\x1f\x7f]')
_HOST = re.compile(r"^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass
class Backend:
    upstream: str | None  # None: answer `status` (no endpoints: 503, an invalid ref: 500)
    weight: int = 1
    status: int = 503


@dataclass
class Route:
    match: str  # "Exact" | "Prefix"
    path: str  # Exact: as given; Prefix: without trailing slash ("" is the root)
    backends: list[Backend] = field(default_factory=list)
    conditions: list[tuple[str, str]] = field(default_factory=list)  # (nginx variable, exact value)
    methods: int = 0  # 1 when a method condition is among the conditions (precedence)
    headers: int = 0
    queries: int = 0
    set_headers: list[tuple[str, str]] = field(default_factory=list)
    add_headers: list[tuple[str, str]] = field(default_factory=list)
    remove_headers: list[str] = field(default_factory=list)
    host_rewrite: str | None = None
    rewrite: tuple[str, str] | None = None  # (regex, replacement), nginx `rewrite ... break`
    redirect: tuple[int, str] | None = None  # (status, target)
    order: tuple[Any, ...] = ()  # tie-break: (creation, namespace, name, rule, match)
    source: tuple[str, str, str] = ("", "", "")  # kind, namespace, name

    def precedence(self) -> tuple[Any, ...]:
        return (
            0 if self.match == "Exact" else 1,
            -len(self.path),
            -self.methods,
            -self.headers,
            -self.queries,
            self.order,
        )


@dataclass
class Server:
    port: int
    tls: bool
    host: str  # "" is the port's default server
    cert: str | None = None  # certificate file name (key and chain in one file)
    redirect_https: bool = False  # a TLS host's plain-HTTP server: 308 to https
    routes: list[Route] = field(default_factory=list)


@dataclass
class Problem:
    kind: str
    namespace: str
    name: str
    reason: str
    message: str


class Model:
    """What the renders collect: servers by (port, tls, host), certificate files, problems."""

    def __init__(self, index: Index, secrets: list[Obj]):
        self.index = index
        self.secrets = {(s["metadata"].get("namespace") or "default", s["metadata"]["name"]): s for s in secrets}
        self.servers: dict[tuple[int, bool, str], Server] = {}
        self.files: dict[str, bytes] = {}
        self.problems: list[Problem] = []
        self.default_backend: Backend | None = None

    def server(self, port: int, tls: bool, host: str) -> Server:
        key = (port, tls, host)
        if key not in self.servers:
            self.servers[key] = Server(port, tls, host)
        return self.servers[key]

    def certificate(self, ns: str, name: str) -> tuple[str | None, str | None]:
        """-> (file name, None) for a usable kubernetes.io/tls Secret, else (None, why)."""
        sec = self.secrets.get((ns, name))
        if sec is None:
            return None, "Secret %s/%s not found" % (ns, name)
        data = sec.get("data") or {}
        try:
            crt = base64.b64decode(data.get("tls.crt") or "", validate=True)
            key = base64.b64decode(data.get("tls.key") or "", validate=True)
        except ValueError:
            return None, "Secret %s/%s: tls.crt or tls.key is not base64" % (ns, name)
        if b"-----BEGIN CERTIFICATE-----" not in crt or b"PRIVATE KEY-----" not in key:
            return None, "Secret %s/%s: tls.crt and tls.key must hold a PEM certificate and key" % (ns, name)
        pem = key.rstrip(b"\n") + b"\n" + crt.rstrip(b"\n") + b"\n"
        # the content's hash in the name: a changed Secret is a new file, so the
        # file a live config (or a rejected new one) reads is never rewritten
        fname = "%s_%s-%s.pem" % (ns, name, hashlib.sha256(pem).hexdigest()[:12])
        self.files[fname] = pem
        return fname, None


def check_path(path: Any) -> str | None:
    if not isinstance(path, str) or not path.startswith("/"):
        return "must be an absolute path (start with '/'), got %r" % (path,)
    if _UNSAFE.search(path):
        return "must not hold whitespace, quotes, '\\', '$', ';', '{', '}' or '#': %r" % path
    return None


def check_host(host: Any) -> str | None:
    if not isinstance(host, str) or not _HOST.match(host):
        return "must be a lower-case DNS name, optionally starting with '*.': %r" % (host,)
    return None


def check_value(value: Any) -> str | None:
    if not isinstance(value, str) or _UNSAFE.sub("", value.replace(" ", "")) != value.replace(" ", ""):
        return "must not hold quotes, '\\', '$', ';', '{', '}', '#' or control characters: %r" % (value,)
    return None


def check_header_name(name: Any) -> str | None:
    if not isinstance(name, str) or not _HEADER_NAME.match(name):
        return "must be an HTTP header name (letters, digits, '-', '_'): %r" % (name,)
    return None


def creation(obj: Obj) -> tuple[str, str, str]:
    m = obj["metadata"]
    return (m.get("creationTimestamp") or "", m.get("namespace") or "", m["name"])


# ---- Ingress -----------------------------------------------------------------------


def our_classes(classes: list[Obj]) -> tuple[set[str], bool]:
    """-> (names of IngressClasses of podnet's controller, whether the default class is one)."""
    ours = {c["metadata"]["name"] for c in classes if (c.get("spec") or {}).get("controller") == INGRESS_CONTROLLER}
    defaults = [
        c["metadata"]["name"]
        for c in classes
        if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
    ]
    return ours, bool(defaults) and all(d in ours for d in defaults)


def is_ours(ing: Obj, ours: set[str], default_ours: bool) -> bool:
    cls = (ing.get("spec") or {}).get("ingressClassName") or (ing["metadata"].get("annotations") or {}).get(
        CLASS_ANNOTATION
    )
    return cls in ours if cls else default_ours


def _ingress_backend(model: Model, ns: str, b: Obj) -> Backend:
    svc = b.get("service") or {}
    port = svc.get("port") or {}
    want = port.get("number") if port.get("number") is not None else port.get("name")
    up = model.index.upstream(ns, svc.get("name") or "", want)
    return Backend(up.name if up else None)


def _ingress_problems(ing: Obj) -> list[tuple[str, str]]:
    """-> [(field path, message)] for what would make this Ingress unsafe to render."""
    out = []
    spec = ing.get("spec") or {}
    for i, rule in enumerate(spec.get("rules") or []):
        if rule.get("host"):
            why = check_host(rule["host"])
            if why:
                out.append(("spec.rules[%d].host" % i, why))
        for j, p in enumerate(((rule.get("http") or {}).get("paths")) or []):
            where = "spec.rules[%d].http.paths[%d]" % (i, j)
            why = check_path(p.get("path", "/"))
            if why:
                out.append((where + ".path", why))
            if (p.get("pathType") or "Prefix") not in ("Exact", "Prefix", "ImplementationSpecific"):
                out.append((where + ".pathType", "must be Exact, Prefix or ImplementationSpecific"))
    for i, t in enumerate(spec.get("tls") or []):
        for j, h in enumerate(t.get("hosts") or []):
            why = check_host(h)
            if why:
                out.append(("spec.tls[%d].hosts[%d]" % (i, j), why))
    return out


def add_ingress(model: Model, ing: Obj) -> None:
    """One Ingress of our class into the model (or a Problem, leaving it out)."""
    m = ing["metadata"]
    ns, name = m.get("namespace") or "default", m["name"]
    spec = ing.get("spec") or {}
    bad = _ingress_problems(ing)
    tls_hosts: dict[str, str] = {}
    for i, t in enumerate(spec.get("tls") or []):
        if not t.get("secretName"):
            continue
        fname, why = model.certificate(ns, t["secretName"])
        if why:
            bad.append(("spec.tls[%d].secretName" % i, why))
            continue
        for h in t.get("hosts") or []:
            tls_hosts.setdefault(h, fname or "")
    if bad:
        where, why = bad[0]
        model.problems.append(Problem("Ingress", ns, name, "Invalid", "%s: %s (not served)" % (where, why)))
        return
    order = creation(ing)
    if spec.get("defaultBackend") and model.default_backend is None:
        # the oldest Ingress's defaultBackend (the list comes sorted by creation)
        model.default_backend = _ingress_backend(model, ns, spec["defaultBackend"])
    for i, rule in enumerate(spec.get("rules") or []):
        host = rule.get("host") or ""
        for j, p in enumerate(((rule.get("http") or {}).get("paths")) or []):
            ptype = p.get("pathType") or "Prefix"
            path = p.get("path") or "/"
            match = "Exact" if ptype == "Exact" else "Prefix"
            route = Route(
                match,
                path if match == "Exact" else path.rstrip("/"),
                [_ingress_backend(model, ns, p.get("backend") or {})],
                order=order + (i, j),
                source=("Ingress", ns, name),
            )
            if host in tls_hosts:
                srv = model.server(443, True, host)
                srv.cert = tls_hosts[host]
                srv.routes.append(route)
                model.server(80, False, host).redirect_https = True
            else:
                model.server(80, False, host).routes.append(route)
