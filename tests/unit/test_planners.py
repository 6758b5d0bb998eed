"""Pure: what the controllers decide from cluster state."""

import pytest

from podnet.controllers import planners as P


def node(name, cidr=None, ready=True, labels=None):
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"podCIDR": cidr} if cidr else {},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def pod(name, node_name=None, labels=None, ip=None, ready=False, ns="default", owner=None, ports=None, **meta):
    p = {
        "metadata": dict({"name": name, "namespace": ns, "labels": labels or {}, "uid": "u-" + name}, **meta),
        "spec": {"containers": [{"name": "c", "ports": ports or []}]},
        "status": {},
    }
    if node_name:
        p["spec"]["nodeName"] = node_name
    if ip:
        p["status"]["podIP"] = ip
    p["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    if owner:
        p["metadata"]["ownerReferences"] = [{"kind": "Deployment", "uid": owner}]
    return p


def test_pod_cidrs_fill_gaps_and_exhaust():
    nodes = [node("b", "10.244.0.0/24"), node("a"), node("c")]
    assert P.plan_pod_cidrs(nodes) == {"a": "10.244.1.0/24", "c": "10.244.2.0/24"}
    with pytest.raises(P.Exhausted) as e:
        P.plan_pod_cidrs([node("a"), node("b")], "10.0.0.0/24", 24)
    assert "no free /24" in str(e.value) and "b" in str(e.value)


def test_placement_selector_readiness_and_least_loaded():
    nodes = [
        node("n1", "10.244.0.0/24"),
        node("n2", "10.244.1.0/24", labels={"disk": "ssd"}),
        node("n3", "10.244.2.0/24", ready=False),
        node("n4"),
    ]
    pods = [pod("x", "n1"), pod("y", "n1")]
    assert P.choose_node(pod("new"), nodes, pods) == "n2"
    assert P.choose_node(dict(pod("s"), spec={"nodeSelector": {"disk": "ssd"}, "containers": []}), nodes, []) == "n2"
    assert P.choose_node(dict(pod("s"), spec={"nodeSelector": {"disk": "hdd"}, "containers": []}), nodes, []) is None


def test_replicas_spread_over_nodes_before_load():
    nodes = [node("n1", "10.244.0.0/24"), node("n2", "10.244.1.0/24"), node("n3", "10.244.2.0/24")]
    # n1 is the busiest node, but it has no replica of d1 yet: spreading wins
    pods = [pod("client", "n1"), pod("other", "n1"), pod("w1", "n2", owner="d1"), pod("w2", "n3", owner="d1")]
    assert P.choose_node(pod("w3", owner="d1"), nodes, pods) == "n1"
    # a pod without an owner goes to the least-loaded node
    assert P.choose_node(pod("bare"), nodes, pods) == "n2"


def test_endpointslices_conditions_named_ports_and_nodes():
    svc = {
        "metadata": {"name": "web", "namespace": "default", "uid": "s1"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    ports = [{"name": "http", "containerPort": 8080}]
    pods = [
        pod("a", "n1", {"app": "web"}, "10.244.0.5", True, ports=ports),
        pod("b", "n2", {"app": "web"}, "10.244.1.5", False, ports=ports),
        pod("c", "n2", {"app": "web"}, "10.244.1.6", True, ports=ports, deletionTimestamp="x"),
        pod("d", "n1", {"app": "other"}, "10.244.0.9", True, ports=ports),
        pod("e", "n1", {"app": "web"}, None, False, ports=ports),
    ]
    (s,) = P.plan_endpointslices(svc, pods)
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    eps = {e["addresses"][0]: e for e in s["endpoints"]}
    assert set(eps) == {"10.244.0.5", "10.244.1.5", "10.244.1.6"}
    assert eps["10.244.0.5"]["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert eps["10.244.1.5"]["conditions"]["ready"] is False
    assert eps["10.244.1.6"]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert eps["10.244.1.5"]["nodeName"] == "n2"
    assert s["metadata"]["labels"]["kubernetes.io/service-name"] == "web"


def test_endpointslices_none_without_selector_and_empty_slice_without_pods():
    svc = {"metadata": {"name": "x", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}
    assert P.plan_endpointslices(svc, []) == []
    svc["spec"]["selector"] = {"app": "x"}
    (s,) = P.plan_endpointslices(svc, [])
    assert s["endpoints"] == []


def test_publish_not_ready_addresses_marks_every_endpoint_ready_as_kubernetes_does():
    # podToEndpoint: ready = publishNotReadyAddresses || (serving && !terminating)
    svc = {
        "metadata": {"name": "web", "namespace": "default", "uid": "s1"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    pods = [
        pod("a", "n1", {"app": "web"}, "10.244.0.5", False),
        pod("b", "n1", {"app": "web"}, "10.244.0.6", True, deletionTimestamp="x"),
    ]
    (s,) = P.plan_endpointslices(svc, pods)
    assert [e["conditions"]["ready"] for e in s["endpoints"]] == [False, False]
    svc["spec"]["publishNotReadyAddresses"] = True
    (s,) = P.plan_endpointslices(svc, pods)
    eps = {e["addresses"][0]: e["conditions"] for e in s["endpoints"]}
    assert eps["10.244.0.5"] == {"ready": True, "serving": False, "terminating": False}
    assert eps["10.244.0.6"] == {"ready": True, "serving": True, "terminating": True}
    (ep,) = P.plan_endpoints([s])
    assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["10.244.0.5", "10.244.0.6"]


def test_an_endpoint_gets_the_pods_hostname_only_when_its_subdomain_names_the_service():
    def svc(name, ns="default"):
        return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": "None", "selector": {"app": "db"}}}

    pods = [pod("db-0", "n1", {"app": "db"}, "10.244.0.5", True), pod("db-1", "n1", {"app": "db"}, "10.244.0.6", True)]
    pods[0]["spec"].update(hostname="db-0", subdomain="db")
    pods[1]["spec"].update(hostname="db-1")  # no subdomain: never named
    (s,) = P.plan_endpointslices(svc("db"), pods)
    assert [e.get("hostname") for e in s["endpoints"]] == ["db-0", None]
    (s,) = P.plan_endpointslices(svc("db-unready"), pods)  # selects db-0 too, but is not its subdomain
    assert [e.get("hostname") for e in s["endpoints"]] == [None, None]
    assert P.should_set_hostname(pods[0], svc("db")) and not P.should_set_hostname(pods[0], svc("db", "other"))
    pods[0]["spec"].pop("hostname")  # a subdomain without a hostname names nothing
    assert not P.should_set_hostname(pods[0], svc("db"))
