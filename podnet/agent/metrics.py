"""The agent's Prometheus metrics (prometheus_client), served on the node's
address at METRICS_PORT (kube-proxy's metrics port) under /metrics.

One registry per agent process, so every reconciler in it (proxy, policy)
shows up on the same page."""

import logging

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger("podnet.agent")
METRICS_PORT = 10249
REGISTRY = CollectorRegistry(auto_describe=True)


def serve(addr, port=METRICS_PORT):
    """Start the /metrics server in a daemon thread; a busy port is logged,
    not fatal (metrics are for people, the dataplane does not need them)."""
    try:
        start_http_server(port, addr=addr, registry=REGISTRY)
        return True
    except OSError as exc:
        log.warning("metrics on %s:%d: %s", addr, port, exc)
        return False
