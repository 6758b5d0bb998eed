"""The web view's pure parts: the picture's document, the bounded feed and
per-browser queues, flow records as the page draws them, trace requests."""

import asyncio

import pytest

from podnet.ui import feed, flowsrc, model, server


def node(name, ip, cidr, ann=None, ready=True):
    return {
        "metadata": {"name": name, "annotations": ann or {}},
        "spec": {"podCIDR": cidr},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pod(name, node_name, ip, labels, ready=True, ns="default", phase="Running"):
    return {
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node_name},
        "status": {"podIP": ip, "phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}]},
    }


LAB = {
    "name": "x",
    "routing": {"mode": "bgp"},
    "underlay": {"cidr": "192.168.200.0/24"},
    "external": {"ip": "192.168.200.100"},
}


def test_snapshot_places_pods_on_nodes_with_policies_services_and_bgp():
    nodes = [
        node("node2", "192.168.200.12", "10.244.1.0/24", {model.ANN_BGP: "192.168.200.11=Established,external=Active"}),
        node("node1", "192.168.200.11", "10.244.0.0/24", {model.ANN_BACKEND: "bgp"}),
    ]
    pods = [
        pod("web-1", "node1", "10.244.0.3", {"app": "web"}),
        pod("client", "node2", "10.244.1.2", {"app": "client"}, ready=False),
        pod("web-9", "node1", "10.244.0.9", {"app": "web"}, ns="other"),
        pod("pending", None, None, {"app": "web"}, phase="Pending"),
        pod("done", "node1", "10.244.0.7", {}, phase="Succeeded"),
    ]
    svc = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.3", "ports": [{"port": 80}]},
    }
    sl = {
        "metadata": {"name": "web-a", "namespace": "default", "labels": {model.SERVICE_NAME_LABEL: "web"}},
        "endpoints": [{"addresses": ["10.244.0.3"], "conditions": {"ready": True}, "nodeName": "node1"}],
    }
    pol = {
        "metadata": {"name": "deny-web", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}},
    }
    snap = model.snapshot(LAB, nodes, pods, [svc], [sl], [pol])
    assert [n["name"] for n in snap["nodes"]] == ["node1", "node2"]
    n1, n2 = snap["nodes"]
    assert [p["key"] for p in n1["pods"]] == ["default/web-1", "other/web-9"]  # not the Succeeded one
    assert (
        n1["pods"][0]["policies"] == ["default/deny-web"] and n1["pods"][1]["policies"] == []
    )  # its own namespace only
    assert n2["pods"][0]["ready"] is False and n1["gateway"] == "10.244.0.1"
    assert n2["bgp"] == [{"peer": "192.168.200.11", "state": "Established"}, {"peer": "external", "state": "Active"}]
    assert [p["key"] for p in snap["unscheduled"]] == ["default/pending"]
    assert snap["services"][0]["endpoints"] == [
        {"ip": "10.244.0.3", "ready": True, "pod": "default/web-1", "node": "node1"}
    ]
    assert snap["policies"][0]["pods"] == ["default/pending", "default/web-1"]
    assert snap["routing"] == "bgp" and snap["external"]["ip"] == "192.168.200.100"


def test_bgp_text_that_is_not_a_session_list_is_shown_as_it_is():
    assert model.bgp_sessions("unknown (birdc: no socket)") == [{"peer": "", "state": "unknown (birdc: no socket)"}]
    assert model.bgp_sessions(None) == []


def test_feed_is_bounded_and_an_ended_connection_replaces_its_record():
    f = feed.Feed(size=3)
    for i in range(5):
        f.add({"id": "c%d" % i})
    assert [i["id"] for i in f.since(0)] == ["c2", "c3", "c4"]
    f.add({"id": "c3", "bytes": 10})
    assert [(i["id"], i["seq"]) for i in f.since(0)] == [("c2", 3), ("c4", 5), ("c3", 6)]
    assert [i["id"] for i in f.since(5)] == ["c3"]


def test_a_browser_that_falls_behind_gets_one_state_not_a_backlog():
    async def go():
        hub = feed.Hub(queue_size=2)
        slow, other = hub.subscribe(), hub.subscribe()
        for i in range(3):
            hub.publish("flow", i)
        other.get_nowait()
        assert slow.qsize() == 1 and slow.get_nowait() == ("state", None) and hub.overflows == 2
        hub.unsubscribe(slow)
        hub.publish("flow", 9)
        assert slow.empty()

    asyncio.run(go())


def test_flow_view_names_ends_as_the_picture_does():
    rec = {
        "seq": 4,
        "time": 0.0,
        "node": "node1",
        "proto": "tcp",
        "verdict": "dropped",
        "reason": "NetworkPolicy ingress default/deny-web",
        "policies": ["default/deny-web"],
        "src": {"ip": "10.244.1.2", "port": 40000, "pod": "client", "namespace": "default", "node": "node2"},
        "dst": {"ip": "10.96.0.3", "port": 80, "service": "default/web"},
        "endpoint": {"ip": "10.244.0.3", "port": 8080, "pod": "web-1", "namespace": "default", "node": "node1"},
        "service": {"namespace": "default", "name": "web"},
        "packets": {"orig": 2, "reply": 0},
        "bytes": {"orig": 120, "reply": 0},
    }
    v = flowsrc.flow_view(rec)
    assert v["src"] == {"kind": "pod", "name": "default/client", "ip": "10.244.1.2", "port": 40000}
    assert v["dst"]["name"] == "svc/default/web" and v["endpoint"]["name"] == "default/web-1"
    assert v["dropAt"] == "dst" and v["packets"] == 2 and v["bytes"] == 120 and v["service"] == "default/web"
    assert v["time"] == "1970-01-01T00:00:00Z"
    assert flowsrc.own_traffic({"dst": {"ip": "192.168.200.11", "port": 10262, "node": "node1"}}, 10262)
    assert not flowsrc.own_traffic(rec, 10262)


def test_trace_requests_are_checked_field_by_field():
    assert server.trace_request({"from": "client", "to": "svc/web:80"}) == ("client", "svc/web:80", "tcp", "default")
    for body, field in (
        ([], "object"),
        ({"to": "x:1"}, "from"),
        ({"from": "a", "to": "b", "protocol": "sctp"}, "protocol"),
    ):
        with pytest.raises(ValueError, match=field):
            server.trace_request(body)
