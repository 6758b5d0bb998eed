"""The routing model -> nginx.conf text. Pure and deterministic: the same
model gives the same bytes, so the controller reloads only on a real change.

Locations use nginx's own matching, which is the Ingress precedence:
`location = /p` (exact) wins, then the longest prefix `location /p/`. A
Prefix route /p becomes `= /p` and `/p/` (element-wise matching: /p and
/p/x, not /px). nginx picks one location per request, so each location
carries every route that matches its paths, in precedence order: routes
with conditions (headers, query parameters, method) are `if` tests that jump
to the route's named location (`return 46x` + `error_page 46x = @name`; an
`if` has one test, so several conditions count up a variable); the first
route without conditions is the location's own body; no route left: 404.

Weighted backends are a split_clients on $request_id per route; a share with
no upstream is a sentinel value answered with 503 (no ready endpoint) or
500 (an invalid backendRef).
"""

from __future__ import annotations

from podnet.ingress.backends import Upstream
from podnet.ingress.model import Backend, Route, Server

FIRST_JUMP = 460  # return codes nginx never sends itself, one per conditional route
MAX_JUMPS = 90

PROXY_HEADERS = (
    ("Host", "$host"),
    ("X-Real-IP", "$remote_addr"),
    ("X-Forwarded-For", "$proxy_add_x_forwarded_for"),
    ("X-Forwarded-Proto", "$scheme"),
    ("X-Forwarded-Host", "$host"),
    ("Connection", '""'),
)


def q(text: str) -> str:
    """An nginx string argument (validated text: no quote or backslash of its own)."""
    return '"%s"' % text


class Renderer:
    def __init__(self, run_dir: str, cert_dir: str, workers: int = 1):
        self.run_dir, self.cert_dir, self.workers = run_dir, cert_dir, workers
        self.http: list[str] = []  # http-level blocks (split_clients, maps) made while rendering servers
        self.named: list[str] = []  # named locations of the current server
        self.seq = 0

    # ---- the whole file ------------------------------------------------------

    def render(self, servers: list[Server], upstreams: list[Upstream], default_backend: Backend | None) -> str:
        body = []
        ports = sorted({(s.port, s.tls) for s in servers} | {(80, False), (443, True)})
        by_key = {(s.port, s.tls, s.host): s for s in servers}
        for port, tls in ports:
            default = by_key.get((port, tls, "")) or Server(port, tls, "")
            fallback = default_backend if port in (80, 443) else None
            body += self.server(default, default_server=True, fallback=fallback)
            for s in sorted(servers, key=lambda s: (s.port, s.tls, s.host)):
                if (s.port, s.tls) == (port, tls) and s.host:
                    # the Ingress spec: defaultBackend takes every request no rule
                    # matches, a known host's unmatched path too; a Gateway's
                    # host answers 404 (the Gateway API has no default backend)
                    ingress_host = any(r.source[0] == "Ingress" for r in s.routes)
                    body += self.server(s, default_server=False, fallback=fallback if ingress_host else None)
        head = [
            "# rendered by podnet's ingress controller: do not edit (it is rewritten on every change)",
            "worker_processes %d;" % self.workers,
            "daemon off;",
            "pid %s/nginx.pid;" % self.run_dir,
            "error_log stderr warn;",
            "events { worker_connections 4096; }",
            "http {",
            "  access_log off;",
            "  server_tokens off;",
            "  server_names_hash_bucket_size 128;",
            "  server_names_hash_max_size 8192;",
            "  variables_hash_bucket_size 128;",
            "  keepalive_requests 10000;",
        ]
        for what in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            head.append("  %s_temp_path %s/tmp/%s;" % (what, self.run_dir, what))
        head += [
            "  proxy_http_version 1.1;",
            "  proxy_connect_timeout 5s;",
            "  proxy_next_upstream error timeout;",
        ]
        for up in upstreams:
            head.append("  upstream %s {" % up.name)
            head += ["    server %s max_fails=0;" % s for s in up.servers]
            head += ["    keepalive 32;", "  }"]
        return "\n".join(head + ["  " + x for x in self.http] + body + ["}", ""])

    # ---- servers -------------------------------------------------------------

    def server(self, s: Server, default_server: bool, fallback: Backend | None) -> list[str]:
        self.named = []
        listen = "listen %d%s%s;" % (s.port, " ssl" if s.tls else "", " default_server" if default_server else "")
        out = ["  server {", "    " + listen, "    server_name %s;" % _server_name(s.host)]
        if s.tls:
            if s.cert:
                path = "%s/%s" % (self.cert_dir, s.cert)
                out += ["    ssl_certificate %s;" % path, "    ssl_certificate_key %s;" % path]
            else:  # no certificate for this name (the default server): no handshake at all
                out.append("    ssl_reject_handshake on;")
        if s.redirect_https:
            out += ["    location / {", "      return 308 https://$host$request_uri;", "    }", "  }"]
            return out
        routes = sorted(s.routes, key=Route.precedence)
        for kind, path in _locations(routes):
            cands = [r for r in routes if _covers(r, kind, path)]
            out += self.location(kind, path, cands, fallback if kind == "prefix" and path == "/" else None)
        if not any(k == "prefix" and p == "/" for k, p in _locations(routes)):
            out += self.location("prefix", "/", [], fallback)
        return out + ["    " + x for x in self.named] + ["  }"]

    def location(self, kind: str, path: str, cands: list[Route], fallback: Backend | None) -> list[str]:
        head = "location = %s {" % q(path) if kind == "exact" else "location %s {" % q(path)
        out = ["    " + head]
        jumps: list[int] = []
        body: list[str] | None = None
        for r in cands:
            if not r.conditions:
                body = self.route_body(r)
                break
            if len(jumps) >= MAX_JUMPS:
                continue  # more conditional routes on one path than return codes to jump with
            name = self.named_route(r)
            code = FIRST_JUMP + len(jumps)
            jumps.append(code)
            out.append("      error_page %d = %s;" % (code, name))
            if len(r.conditions) == 1:
                var, value = r.conditions[0]
                out.append("      if (%s = %s) { return %d; }" % (var, q(value), code))
            else:
                out.append('      set $pn_c "";')
                for var, value in r.conditions:
                    out.append('      if (%s = %s) { set $pn_c "${pn_c}1"; }' % (var, q(value)))
                out.append("      if ($pn_c = %s) { return %d; }" % (q("1" * len(r.conditions)), code))
        if body is None:
            body = self.backend_body(fallback) if fallback else ["return 404;"]
        return out + ["      " + x for x in body] + ["    }"]

    def named_route(self, r: Route) -> str:
        self.seq += 1
        name = "@pn_r%d" % self.seq
        self.named += ["location %s {" % name] + ["  " + x for x in self.route_body(r)] + ["}"]
        return name

    # ---- what a route does ---------------------------------------------------------

    def route_body(self, r: Route) -> list[str]:
        out = []
        if r.rewrite:
            out.append("rewrite %s %s break;" % (q(r.rewrite[0]), q(r.rewrite[1])))
        if r.redirect:
            return out + ["return %d %s;" % (r.redirect[0], q(r.redirect[1]))]
        headers = dict(PROXY_HEADERS)
        if r.host_rewrite:
            headers["Host"] = r.host_rewrite
        for name, value in r.add_headers:
            var = "$pn_add%d" % self._next()
            self.http.append(
                "map $http_%s %s { %s %s; default %s; }"
                % (
                    name.lower().replace("-", "_"),
                    var,
                    q(""),
                    q(value),
                    q("$http_%s,%s" % (name.lower().replace("-", "_"), value)),
                )
            )
            headers[name] = var
        for name, value in r.set_headers:
            headers[name] = q(value)
        for name in r.remove_headers:
            headers[name] = '""'
        for name in sorted(headers, key=str.lower):
            out.append("proxy_set_header %s %s;" % (name, headers[name]))
        return out + self.proxy(r.backends)

    def backend_body(self, b: Backend) -> list[str]:
        return ["proxy_set_header %s %s;" % h for h in PROXY_HEADERS] + self.proxy([b])

    def proxy(self, backends: list[Backend]) -> list[str]:
        live = [b for b in backends if b.weight > 0]
        if not live:
            return ["return 500;"]  # the Gateway API: every backend weighted 0
        if len(live) == 1:
            b = live[0]
            return ["proxy_pass http://%s;" % b.upstream] if b.upstream else ["return %d;" % b.status]
        var = "$pn_split%d" % self._next()
        total = sum(b.weight for b in live)
        lines, given = [], 0.0
        for i, b in enumerate(live):
            value = b.upstream or "-%d" % b.status
            if i == len(live) - 1:
                lines.append("* %s;" % value)
            else:
                share = int(b.weight * 10000 / total) / 100.0
                given += share
                if share > 0:
                    lines.append("%.2f%% %s;" % (share, value))
        self.http.append('split_clients "${request_id}" %s { %s }' % (var, " ".join(lines)))
        out = ['if (%s = "-%d") { return %d; }' % (var, code, code) for code in (500, 503)]
        return out + ["proxy_pass http://%s;" % var]

    def _next(self) -> int:
        self.seq += 1
        return self.seq


def _server_name(host: str) -> str:
    if not host:
        return '""'
    if host.startswith("*."):
        # the Ingress and Gateway wildcard covers exactly one label; nginx's
        # `*.example.com` would take any number, so a regex says it exactly
        return '"~^[^.]+%s$"' % host[1:].replace(".", "\\.")
    return host


def _locations(routes: list[Route]) -> list[tuple[str, str]]:
    """The nginx locations the routes need: ("exact", path) | ("prefix", "/p/" or "/")."""
    locs = set()
    for r in routes:
        if r.match == "Exact":
            locs.add(("exact", r.path))
        elif r.path:
            locs.add(("exact", r.path))
            locs.add(("prefix", r.path + "/"))
        else:
            locs.add(("prefix", "/"))
    return sorted(locs)


def _covers(r: Route, kind: str, path: str) -> bool:
    """Does route r match every request path that reaches this location?"""
    if r.match == "Exact":
        return kind == "exact" and path == r.path
    if not r.path:
        return True
    if kind == "exact":
        return path == r.path or path.startswith(r.path + "/")
    return path.startswith(r.path + "/")
