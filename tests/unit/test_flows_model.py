"""The flow log's pure parts: netlink parsing of conntrack events and NFLOG
packets (messages built here as the kernel lays them out), the records the
FlowLog makes of them, filters and the HTTP query."""

import socket
import struct

import pytest

from podnet.flows import http, model, netlink


def attr(kind, payload, nested=False):
    pad = (4 - len(payload) % 4) % 4
    return struct.pack("=HH", 4 + len(payload), kind | (0x8000 if nested else 0)) + payload + b"\0" * pad


def tuple_attr(kind, src, dst, proto, sport, dport):
    ip = attr(1, attr(1, socket.inet_aton(src)) + attr(2, socket.inet_aton(dst)), True)
    pr = attr(2, attr(1, bytes([proto])) + attr(2, struct.pack(">H", sport)) + attr(3, struct.pack(">H", dport)), True)
    return attr(kind, ip + pr, True)


def ct_message(kind, flags, orig, reply, ct_id=7, counters=None):
    body = (
        struct.pack("=BBH", 2, 0, 0) + tuple_attr(1, *orig) + tuple_attr(2, *reply) + attr(12, struct.pack(">I", ct_id))
    )
    if counters:
        for k, (p, b) in zip((9, 10), counters, strict=True):
            body += attr(k, attr(1, struct.pack(">Q", p)) + attr(2, struct.pack(">Q", b)), True)
    return struct.pack("=IHHII", 16 + len(body), (1 << 8) | kind, flags, 0, 0) + body


def ipv4(src, dst, proto, sport, dport, length=60):
    hdr = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, length, 0, 0, 64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst)
    )
    return hdr + struct.pack(">HH", sport, dport) + b"\0" * 16


def nflog_message(prefix, packet):
    body = struct.pack("=BBH", 2, 0, socket.htons(100)) + attr(10, prefix.encode() + b"\0") + attr(9, packet)
    return struct.pack("=IHHII", 16 + len(body), (4 << 8) | 0, 0, 0, 0) + body


def one(data):
    msgs = list(netlink.messages(data))
    assert len(msgs) == 1
    return msgs[0]


@pytest.fixture
def flowlog():
    fl = model.FlowLog("node2", clock=iter(range(1000, 2000)).__next__)
    fl.names.update(
        pods=[
            {
                "metadata": {"name": "client", "namespace": "default"},
                "spec": {"nodeName": "node2"},
                "status": {"podIP": "10.244.1.2"},
            },
            {
                "metadata": {"name": "web-1", "namespace": "default"},
                "spec": {"nodeName": "node1"},
                "status": {"podIP": "10.244.0.3"},
            },
        ],
        services=[{"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": "10.96.0.20"}}],
        nodes=[
            {
                "metadata": {"name": "node1"},
                "spec": {"podCIDR": "10.244.0.0/24"},
                "status": {"addresses": [{"type": "InternalIP", "address": "192.168.200.11"}]},
            }
        ],
    )
    return fl


def test_a_connection_through_a_service_is_one_record_named_and_counted_at_its_end(flowlog):
    orig = ("10.244.1.2", "10.96.0.20", 6, 40000, 80)
    reply = ("10.244.0.3", "10.244.1.2", 6, 8080, 40000)
    ev = netlink.conntrack_event(*one(ct_message(0, 0x600, orig, reply)))
    assert ev["event"] == "new" and ev["orig"]["dport"] == 80 and ev["reply"]["src"] == "10.244.0.3"
    rec = flowlog.conntrack(ev)
    assert rec["src"]["pod"] == "client" and rec["service"] == {"namespace": "default", "name": "web"}
    assert rec["endpoint"] == {
        "ip": "10.244.0.3",
        "port": 8080,
        "pod": "web-1",
        "namespace": "default",
        "node": "node1",
    }
    assert rec["verdict"] == "forwarded" and rec["state"] == "open" and rec["bytes"] is None
    end = netlink.conntrack_event(*one(ct_message(2, 0, orig, reply, counters=[(5, 1300), (4, 400)])))
    assert end["event"] == "destroy" and end["orig_counters"] == (5, 1300)
    flowlog.conntrack(end)
    last, recs = flowlog.query()
    assert len(recs) == 1 and recs[0]["bytes"] == {"orig": 1300, "reply": 400} and recs[0]["state"] == "ended"
    assert recs[0]["packets"] == {"orig": 5, "reply": 4} and last == recs[0]["seq"] == 2
    assert recs[0]["id"] == "node2/1"  # the record's id stays while its seq moves on


def test_the_bridge_gateway_is_its_node(flowlog):
    assert flowlog.names.end("10.244.0.1", 5) == {"ip": "10.244.0.1", "port": 5, "node": "node1"}


def test_a_connection_from_another_nodes_pod_is_left_to_that_node(flowlog):
    orig = ("10.244.0.3", "10.244.1.2", 6, 40000, 80)  # web-1 runs on node1
    ev = netlink.conntrack_event(*one(ct_message(0, 0x600, orig, ("10.244.1.2", "10.244.0.3", 6, 80, 40000))))
    assert flowlog.conntrack(ev) is None and flowlog.query()[1] == []


def test_a_policy_drop_is_one_record_however_often_the_syn_comes_again(flowlog):
    pkt = ipv4("10.244.1.2", "10.244.0.3", 6, 41000, 8080)
    for _ in range(3):
        got = netlink.nflog_packet(*one(nflog_message("pn:np:ingress:default/deny-web", pkt))[::2])
        assert got["prefix"] == "pn:np:ingress:default/deny-web" and got["packet"]["sport"] == 41000
        flowlog.nflog(got)
    _, recs = flowlog.query(verdict="dropped")
    assert len(recs) == 1 and recs[0]["packets"]["orig"] == 3 and recs[0]["policies"] == ["default/deny-web"]
    assert recs[0]["reason"] == "NetworkPolicy ingress default/deny-web" and recs[0]["dst"]["pod"] == "web-1"
    assert flowlog.query(verdict="forwarded")[1] == []


def test_a_reject_names_its_reason_and_the_service():
    fl = model.FlowLog("node1")
    fl.names.update(services=[{"metadata": {"name": "none", "namespace": "x"}, "spec": {"clusterIP": "10.96.0.9"}}])
    rec = fl.nflog(
        {
            "prefix": "pn:rej:no-endpoints",
            "ts": None,
            "packet": netlink.ip_packet(ipv4("1.2.3.4", "10.96.0.9", 6, 1, 80)),
        }
    )
    assert rec["verdict"] == "rejected" and rec["reason"] == "no endpoints" and rec["service"]["name"] == "none"
    assert fl.nflog({"prefix": "someone else's", "ts": None, "packet": rec}) is None


def test_the_ring_is_bounded():
    fl = model.FlowLog("n", size=5)
    for i in range(20):
        fl.nflog({"prefix": "pn:rej:unknown-port", "packet": netlink.ip_packet(ipv4("1.2.3.4", "5.6.7.8", 17, i, 53))})
    last, recs = fl.query()
    assert last == 20 and [r["src"]["port"] for r in recs] == [15, 16, 17, 18, 19]


def test_filters_and_query_parameters(flowlog):
    rec = flowlog.nflog(
        {"prefix": "pn:np:egress:default/a", "packet": netlink.ip_packet(ipv4("10.244.1.2", "8.8.8.8", 17, 5, 53))}
    )
    assert (
        model.matches(rec, pod="client")
        and model.matches(rec, pod="default/client")
        and not model.matches(rec, pod="x/client")
    )
    assert model.matches(rec, namespace="default") and not model.matches(rec, namespace="kube-system")
    assert http.parse_query("since=3&wait=99&verdict=dropped&pod=a") == (
        3,
        http.WAIT_MAX,
        0,
        {"verdict": "dropped", "pod": "a"},
    )
    with pytest.raises(ValueError, match="bad verdict"):
        http.parse_query("verdict=lost")
    with pytest.raises(ValueError, match="since"):
        http.parse_query("since=x")


def test_pod_series_end_with_their_pod_and_bytes_count_both_ends():
    from prometheus_client import CollectorRegistry

    from podnet.flows.collector import Metrics

    reg = CollectorRegistry()
    m = Metrics(reg)
    rec = {
        "verdict": "forwarded",
        "state": "ended",
        "node": "node2",
        "src": {"ip": "10.244.1.2", "port": 1, "pod": "client", "namespace": "default"},
        "dst": {"ip": "10.96.0.20", "port": 80},
        "endpoint": {"ip": "10.244.0.3", "port": 8080, "pod": "web-1", "namespace": "default"},
        "bytes": {"orig": 1300, "reply": 400},
        "packets": {"orig": 5, "reply": 4},
    }
    m.on_record(rec, False)

    def val(pod, direction):
        return reg.get_sample_value(
            "podnet_flow_pod_bytes_total", {"namespace": "default", "pod": pod, "direction": direction}
        )

    assert (val("client", "sent"), val("client", "received"), val("web-1", "sent"), val("web-1", "received")) == (
        1300,
        400,
        400,
        1300,
    )
    m.prune({("default", "web-1")})
    assert val("client", "sent") is None and val("web-1", "sent") == 400


def test_a_long_poll_answers_with_the_first_new_record():
    import threading

    fl = model.FlowLog("node1")
    pkt = netlink.ip_packet(ipv4("1.2.3.4", "10.96.0.9", 6, 1, 80))
    fl.nflog({"prefix": "pn:rej:no-endpoints", "packet": pkt})
    first = http.answer(fl, "")
    assert first["node"] == "node1" and first["last"] == 1 and len(first["flows"]) == 1
    other = netlink.ip_packet(ipv4("1.2.3.4", "10.96.0.9", 6, 2, 81))
    later = threading.Timer(0.2, fl.nflog, [{"prefix": "pn:rej:unknown-port", "packet": other}])
    later.start()
    got = http.answer(fl, "since=1&wait=30")  # returns when the record comes, not after 30 s
    later.join()
    assert got["last"] == 2 and [r["reason"] for r in got["flows"]] == ["unknown port"]


def test_the_agents_own_endpoints_are_not_recorded(flowlog):
    """A reader of the flow log (or of /metrics) is no lab traffic: its
    connection would wake its own long poll with a record of itself."""
    flowlog.ignore = {("192.168.200.12", 10262)}
    orig = ("10.244.1.2", "192.168.200.12", 6, 40000, 10262)
    ev = netlink.conntrack_event(*one(ct_message(0, 0x600, orig, orig[1::-1] + (6, 10262, 40000))))
    assert flowlog.conntrack(ev) is None and list(flowlog.ring) == []
    other = ("10.244.1.2", "192.168.200.12", 6, 40001, 10250)
    ev = netlink.conntrack_event(*one(ct_message(0, 0x600, other, other[1::-1] + (6, 10250, 40001), ct_id=8)))
    assert flowlog.conntrack(ev) is not None
