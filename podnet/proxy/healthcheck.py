"""healthCheckNodePort servers: what a cloud load balancer asks each node
for a Service with externalTrafficPolicy Local. 200 when this node has a
local endpoint (send traffic here), 503 when it has none (it would drop it),
with kube-proxy's JSON body. One small HTTP server per port, started and
stopped as Services come and go."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("podnet.proxy")


def wanted(services, slices, node_name):
    """{port: (namespace, name, local ready endpoints)} for this node. Pure."""
    from podnet.proxy.inputs import slices_by_service

    by_svc = slices_by_service(slices)
    out = {}
    for svc in services:
        spec = svc.get("spec") or {}
        port = spec.get("healthCheckNodePort")
        if spec.get("externalTrafficPolicy") != "Local" or not isinstance(port, int):
            continue
        m = svc["metadata"]
        local = set()
        for sl in by_svc.get((m.get("namespace"), m.get("name")), []):
            for ep in sl.get("endpoints") or []:
                if ep.get("nodeName") == node_name and (ep.get("conditions") or {}).get("ready", True):
                    local.add((ep.get("addresses") or [""])[0])
        out[port] = (m.get("namespace"), m.get("name"), len(local))
    return out


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        ns, name, n = self.server.state
        body = json.dumps(
            {"service": {"namespace": ns, "name": name}, "localEndpoints": n, "serviceProxyHealthy": True}
        ).encode()
        self.send_response(200 if n else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class HealthServers:
    def __init__(self, addr=""):
        self.addr = addr
        self.servers = {}  # port -> ThreadingHTTPServer

    def ensure(self, want):
        for port in sorted(set(self.servers) - set(want)):
            self._stop(port)
        for port, state in want.items():
            srv = self.servers.get(port)
            if srv is None:
                try:
                    srv = ThreadingHTTPServer((self.addr, port), _Handler)
                except OSError as exc:
                    log.warning("healthCheckNodePort %d: %s", port, exc)
                    continue
                srv.daemon_threads = True
                self.servers[port] = srv
                threading.Thread(
                    target=srv.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True, name="health-%d" % port
                ).start()
            srv.state = state

    def _stop(self, port):
        srv = self.servers.pop(port)
        srv.shutdown()
        srv.server_close()

    def close(self):
        for port in list(self.servers):
            self._stop(port)
