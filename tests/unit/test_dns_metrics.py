"""The DNS server's Prometheus page: `python -m podnet.dns serve --static`
on loopback with two workers (SO_REUSEPORT spreads the queries over both),
in both receive loops; the page sums the workers' shared counters, so the
totals equal what the test sent: queries, answers by rcode (the fast path's
table answers, the slow path's EDNS answers, a SERVFAIL for a name nobody
forwards) and a histogram holding every query."""

import os
import signal
import subprocess
import sys
import urllib.request

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.helpers import wait_for
from tests.unit.test_dns_forward import LOOPBACK, free_port

SENT = {"NOERROR": 20 + 2, "NXDOMAIN": 7, "SERVFAIL": 3}


def metrics(port):
    with urllib.request.urlopen("http://%s:%d/metrics" % (LOOPBACK, port), timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


@pytest.mark.parametrize("loop", ["batched", "single"])
def test_the_page_counts_every_query_by_rcode_and_latency(tmp_path, loop):
    zone = tmp_path / "zone"
    zone.write_text("cluster.local. SOA ns. host. 1 2 3 4 60\nweb.cluster.local. A 10.96.0.20\n")
    port, mport = free_port(), free_port()
    env = dict(os.environ, PODNET_DNS_NO_MMSG="1") if loop == "single" else None
    log = tmp_path / "dns.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "podnet.dns", "serve", "--static", str(zone), "--listen", LOOPBACK]
            + ["--port", str(port), "--no-forward", "--workers", "2", "--metrics-port", str(mport)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    try:
        wait_for("two workers", lambda: proc.poll() is None and log.read_text().count(" serving ") == 2, timeout=20)

        def ask(name, rcode, edns=False):
            q = dns.message.make_query(name, "A", use_edns=0 if edns else False)
            assert dns.query.udp(q, LOOPBACK, port=port, timeout=3).rcode() == rcode

        for _ in range(20):
            ask("web.cluster.local", dns.rcode.NOERROR)  # the table's answer
        for _ in range(2):
            ask("web.cluster.local", dns.rcode.NOERROR, edns=True)  # the slow path
        for _ in range(7):
            ask("nope.cluster.local", dns.rcode.NXDOMAIN)
        for _ in range(3):
            ask("www.example.com", dns.rcode.SERVFAIL)  # --no-forward
        total = sum(SENT.values())
        # a worker counts a batch after sending its answers: wait for the last
        m = wait_for("every query counted", lambda: (lambda m: m if m["podnet_dns_queries_total"] == total else None)(
            metrics(mport)), timeout=10)  # fmt: skip
        for rcode, n in SENT.items():
            assert m['podnet_dns_answers_total{rcode="%s"}' % rcode] == n, (rcode, m)
        assert m['podnet_dns_answer_seconds_bucket{le="+Inf"}'] == total
        assert m["podnet_dns_answer_seconds_count"] == total and m["podnet_dns_answer_seconds_sum"] > 0
        assert 0 < m['podnet_dns_answer_seconds_bucket{le="0.01"}'] <= total
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the PID we started is the group
            proc.wait(10)
