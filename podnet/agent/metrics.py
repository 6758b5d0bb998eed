"""The agent's Prometheus metrics (prometheus_client), served on the node's
address at METRICS_PORT (kube-proxy's metrics port) under /metrics.

One registry per agent process, so every reconciler in it (proxy, policy)
shows up on the same page. podnet_thread_errors_total{component} counts the
exceptions informer, watch and reconcile threads logged and carried on from
(podnet.client.loop.THREAD_ERRORS): not zero means a bug or bad input to look at."""

import logging

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import CounterMetricFamily

from podnet.client.loop import SYNCS, THREAD_ERRORS
from podnet.cni.server import OPS

log = logging.getLogger("podnet.agent")
METRICS_PORT = 10249
REGISTRY = CollectorRegistry(auto_describe=True)


class ThreadErrorsCollector:
    """THREAD_ERRORS (a plain counter in podnet.client) as a Prometheus counter."""

    def collect(self):
        c = CounterMetricFamily(
            "podnet_thread_errors",
            "Exceptions an informer, watch or reconcile thread logged and carried on from",
            labels=["component"],
        )
        for component, n in THREAD_ERRORS.items():
            c.add_metric([component], n)
        yield c
        s = CounterMetricFamily(
            "podnet_reconciler_syncs", "Passes of a reconcile loop that ended well", labels=["component"]
        )
        for component, n in SYNCS.items():
            s.add_metric([component], n)
        yield s
        ops = CounterMetricFamily(
            "podnet_cni_operations", "CNI calls the agent's daemon served", labels=["command", "result"]
        )
        secs = CounterMetricFamily(
            "podnet_cni_operation_seconds", "Time spent serving CNI calls", labels=["command", "result"]
        )
        for (command, result), (n, seconds) in OPS.items():
            ops.add_metric([command, result], n)
            secs.add_metric([command, result], seconds)
        yield ops
        yield secs


REGISTRY.register(ThreadErrorsCollector())


def serve(addr, port=METRICS_PORT):
    """Start the /metrics server in a daemon thread; a busy port is logged,
    not fatal (metrics are for people, the dataplane does not need them)."""
    try:
        start_http_server(port, addr=addr, registry=REGISTRY)
        return True
    except OSError as exc:
        log.warning("metrics on %s:%d: %s", addr, port, exc)
        return False


# Passes of the agent's pod sync: a test shows that pods of other nodes cause none.
POD_SYNCS = Counter("podnet_agent_pod_syncs", "Passes of the node agent's pod sync", registry=REGISTRY)
POD_RESYNCS = Counter(
    "podnet_agent_pod_resyncs", "The node agent's periodic pod syncs (nothing woke it for RESYNC s)", registry=REGISTRY
)
