"""The DNS server's counters, shared by its worker processes, and their
Prometheus page.

The workers are forked processes answering in a hot loop, so the counters
live in one anonymous shared mapping made before the fork: each worker owns a
row of unsigned 64-bit cells and only ever adds to its own row (no lock, no
system call per query); the page sums the rows when it is read.

A row: queries, answers by rcode (0-15), then the latency histogram, one
cell per bucket of BUCKETS plus +Inf, then the latency sum in microseconds.
A batched loop measures one service time per batch (from the moment
recvmmsg returned to the moment the answers were sent) and counts it once
for every query of the batch: each of them waited that long in the server.

Page (port 9153 by default, CoreDNS's): podnet_dns_queries_total,
podnet_dns_answers_total{rcode}, podnet_dns_answer_seconds (histogram).
"""

import mmap
import struct

RCODES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"]
BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
QUERIES, RC0, HIST0 = 0, 1, 17
SUM_US = HIST0 + len(BUCKETS) + 1
ROW = SUM_US + 1
CELL = struct.calcsize("Q")


class Stats:
    def __init__(self, workers):
        self.workers = workers
        self.mem = mmap.mmap(-1, workers * ROW * CELL)  # MAP_SHARED|MAP_ANONYMOUS: survives fork shared
        self.cells = memoryview(self.mem).cast("Q")
        self.row = 0

    def mine(self, worker):
        """This process is `worker`: its counts go to its own row."""
        self.row = worker * ROW

    def add(self, queries, rcodes, seconds):
        """`queries` answered in `seconds` each; rcodes: 16 counts (a local
        list the hot loop fills, emptied here)."""
        c, base = self.cells, self.row
        c[base + QUERIES] += queries
        for i in range(16):
            if rcodes[i]:
                c[base + RC0 + i] += rcodes[i]
                rcodes[i] = 0
        k = 0
        while k < len(BUCKETS) and seconds > BUCKETS[k]:
            k += 1
        c[base + HIST0 + k] += queries
        c[base + SUM_US] += int(seconds * 1e6 * queries)

    def totals(self):
        """The rows summed: [ROW cells]."""
        out = [0] * ROW
        for w in range(self.workers):
            for i in range(ROW):
                out[i] += self.cells[w * ROW + i]
        return out


def rcode_name(i):
    return RCODES[i] if i < len(RCODES) else str(i)


def collector(stats):
    """A prometheus_client collector reading the shared counters."""
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    class DnsCollector:
        def collect(self):
            t = stats.totals()
            q = CounterMetricFamily("podnet_dns_queries", "DNS queries answered over UDP")
            q.add_metric([], t[QUERIES])
            yield q
            a = CounterMetricFamily("podnet_dns_answers", "DNS answers over UDP by rcode", labels=["rcode"])
            for i in range(16):
                if t[RC0 + i]:
                    a.add_metric([rcode_name(i)], t[RC0 + i])
            yield a
            h = HistogramMetricFamily("podnet_dns_answer_seconds", "Time from receiving a query to answering it")
            running, buckets = 0, []
            for k, le in enumerate(list(BUCKETS) + [float("inf")]):
                running += t[HIST0 + k]
                buckets.append(("+Inf" if le == float("inf") else repr(le), running))
            h.add_metric([], buckets, t[SUM_US] / 1e6)
            yield h

    return DnsCollector()


def serve(stats, address, port):
    """The page on address:port, in a thread of the calling process. A port
    already taken costs the page, not the DNS service: -> False."""
    import logging

    from prometheus_client import CollectorRegistry, start_http_server

    reg = CollectorRegistry()
    reg.register(collector(stats))
    try:
        start_http_server(port, addr=address, registry=reg)
    except OSError as exc:
        logging.getLogger("podnet.dns").warning("metrics page on %s:%d: %s", address, port, exc)
        return False
    return True
