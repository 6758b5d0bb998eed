"""The informers' lists and resumed watches on the agent's /metrics
(podnet_informer_lists_total, podnet_informer_watch_resumes_total): after
an API server restart the watches resume and the lists stay where they were."""

from prometheus_client.core import CounterMetricFamily

from podnet.agent.metrics import REGISTRY
from podnet.client.informer import WATCHES


class WatchCollector:
    def collect(self):  # type: ignore[no-untyped-def]
        lists = CounterMetricFamily("podnet_informer_lists", "Full lists an informer made", labels=["resource"])
        resumes = CounterMetricFamily(
            "podnet_informer_watch_resumes",
            "Watches an informer resumed from its last resourceVersion, without a list",
            labels=["resource"],
        )
        for key, n in WATCHES.items():
            what, _, resource = key.partition("/")
            (lists if what == "list" else resumes).add_metric([resource], n)
        yield lists
        yield resumes


REGISTRY.register(WatchCollector())
