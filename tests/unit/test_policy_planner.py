"""Pure: the policy planner's details (the semantics as a whole are in
test_policy_truth.py) and the script it renders."""

import ipaddress as ia

from podnet.policy import nftscript
from podnet.policy.cluster import NS_NAME_LABEL, node_addresses
from podnet.policy.planner import (
    chain_name,
    ip_block,
    live_pods,
    namespace_labels,
    plan,
    policy_types,
)
from podnet.policy.trace import node_verdict


def pod(ns, name, ip, node="n1", labels=None, ports=(), **spec):
    containers = [{"name": "c", "ports": [{"name": n, "containerPort": p, "protocol": pr} for n, p, pr in ports]}]
    return {
        "kind": "Pod",
        "metadata": {
            "namespace": ns,
            "name": name,
            "labels": labels or {"pod": name},
            "creationTimestamp": spec.pop("created", "2024-01-01T00:00:00Z"),
        },
        "spec": dict({"nodeName": node, "containers": containers}, **spec),
        "status": {"podIP": ip, "phase": spec.pop("phase", "Running")},
    }


def np(ns, name, selector=None, **spec):
    return {
        "kind": "NetworkPolicy",
        "metadata": {"namespace": ns, "name": name},
        "spec": dict({"podSelector": selector or {}}, **spec),
    }


def test_policy_types_default_as_the_api_does():
    assert policy_types({}) == ["Ingress"]
    assert policy_types({"egress": [{}]}) == ["Ingress", "Egress"]
    assert policy_types({"egress": [], "policyTypes": ["Egress"]}) == ["Egress"]


def test_chain_names_are_readable_hashed_and_valid():
    a = chain_name("ingress", "x/a")
    assert a.startswith("ingress-") and a.endswith("-x/a") and len(a.split("-")[1]) == 8
    assert chain_name("ingress", "x/a b") != chain_name("ingress", "x/a_b")  # the hash tells them apart
    assert " " not in chain_name("ingress", "x/a b") and len(chain_name("p", "n/" + "z" * 300)) < 120


def test_every_namespace_has_its_name_label_even_without_an_object():
    labels = namespace_labels(
        [{"metadata": {"name": "x", "labels": {"team": "red"}}}], [pod("y", "a", "10.0.0.1")], [np("z", "p")]
    )
    assert labels == {"x": {"team": "red", NS_NAME_LABEL: "x"}, "y": {NS_NAME_LABEL: "y"}, "z": {NS_NAME_LABEL: "z"}}


def test_live_pods_skip_host_network_finished_and_ipless_and_dedupe_a_reused_ip():
    old = pod("x", "old", "10.0.0.5", created="2024-01-01T00:00:00Z")
    old["metadata"]["deletionTimestamp"] = "2024-01-02T00:00:00Z"
    new = pod("x", "new", "10.0.0.5", created="2024-01-02T00:00:00Z")
    pods = [
        old,
        new,
        pod("x", "host", "192.168.200.11", hostNetwork=True),
        pod("x", "done", "10.0.0.6", phase="Succeeded"),
        pod("x", "pending", None),
    ]
    assert [p.name for p in live_pods(pods)] == ["new"]


def test_ip_block_subtracts_every_except():
    nets = ip_block({"cidr": "10.0.0.0/24", "except": ["10.0.0.0/26", "10.0.0.200/32"]})
    covered = {ip for n in nets for ip in n}
    assert ia.ip_address("10.0.0.63") not in covered and ia.ip_address("10.0.0.200") not in covered
    assert ia.ip_address("10.0.0.64") in covered and len(covered) == 256 - 64 - 1
    assert ip_block({"cidr": "fd00::/64"}) == []  # IPv4 only: an IPv6 block names nothing here


def test_ports_merge_ranges_and_a_bare_protocol_means_every_port():
    p = plan(
        [
            np(
                "x",
                "p",
                ingress=[
                    {
                        "ports": [
                            {"port": 80, "endPort": 90},
                            {"port": 85, "endPort": 100},
                            {"port": 102},
                            {"protocol": "UDP", "port": 53},
                            {"protocol": "UDP"},
                        ]
                    }
                ],
            )
        ],
        [pod("x", "a", "10.0.0.1")],
        [],
        "n1",
    )
    rules = next(c for n, c in p.chains.items() if n.startswith("policy-in")).rules
    assert [(r.proto, r.dports) for r in rules] == [("tcp", ((80, 100),)), ("tcp", ((102, 102),)), ("udp", None)]
    assert "meta l4proto tcp th dport 80-100 accept" in nftscript.rule_text(rules[0])
    assert "meta l4proto udp accept" in nftscript.rule_text(rules[2])


def test_a_named_port_resolves_per_selected_pod():
    pods = [
        pod("x", "a", "10.0.0.1", ports=[("web", 8080, "TCP")]),
        pod("x", "b", "10.0.0.2", ports=[("web", 9090, "TCP"), ("web-u", 9090, "UDP")]),
        pod("x", "c", "10.0.0.3"),
    ]
    p = plan([np("x", "web", ingress=[{"ports": [{"port": "web"}]}])], pods, [], "n1")
    for dst, port, ok in (
        ("10.0.0.1", 8080, True),
        ("10.0.0.1", 9090, False),
        ("10.0.0.2", 9090, True),
        ("10.0.0.3", 8080, False),
    ):
        assert (node_verdict(p, "10.9.9.9", dst, "tcp", port) == "accept") is ok, (dst, port)
    assert node_verdict(p, "10.9.9.9", "10.0.0.2", "udp", 9090) == "drop"


def test_egress_named_port_resolves_on_the_destination_pods():
    pods = [pod("x", "a", "10.0.0.1"), pod("y", "b", "10.0.1.2", node="n2", ports=[("dns", 5353, "UDP")])]
    p = plan(
        [
            np(
                "x",
                "out",
                {"matchLabels": {"pod": "a"}},
                policyTypes=["Egress"],
                egress=[{"ports": [{"port": "dns", "protocol": "UDP"}]}],
            )
        ],
        pods,
        [],
        "n1",
    )
    assert node_verdict(p, "10.0.0.1", "10.0.1.2", "udp", 5353) == "accept"
    assert node_verdict(p, "10.0.0.1", "10.0.1.2", "udp", 53) == "drop"
    assert node_verdict(p, "10.0.0.1", "8.8.8.8", "udp", 5353) == "drop"  # not a pod: no such name there


def test_only_local_pods_get_chains_and_the_node_always_gets_in():
    pods = [pod("x", "a", "10.0.0.1", node="n1"), pod("x", "b", "10.0.1.1", node="n2")]
    pols = [np("x", "deny", ingress=[], policyTypes=["Ingress", "Egress"])]
    p1 = plan(pols, pods, [], "n1", ["192.168.200.11", "10.0.0.1 bogus", "10.0.0.254"])
    assert [str(ip) for ip in p1.ingress_pods] == ["10.0.0.1"] and [str(ip) for ip in p1.egress_pods] == ["10.0.0.1"]
    assert p1.selected == {"x/deny": ["x/a"]}
    assert node_verdict(p1, "192.168.200.11", "10.0.0.1", "tcp", 80) == "accept"
    assert node_verdict(p1, "192.168.200.12", "10.0.0.1", "tcp", 80) == "drop"
    assert plan(pols, pods, [], "n3").chains == {}


def test_node_addresses_are_the_internal_ip_and_the_bridge_gateway():
    node = {
        "spec": {"podCIDR": "10.244.2.0/24"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "192.168.200.13"}, {"type": "Hostname", "address": "node3"}]
        },
    }
    assert node_addresses(node) == ["192.168.200.13", "10.244.2.1"]
    assert node_addresses(None) == []


def test_the_script_replaces_the_table_in_one_transaction_and_is_deterministic():
    pods = [pod("x", "a", "10.0.0.1"), pod("x", "b", "10.0.0.2")]
    pols = [
        np("x", "z-last", {"matchLabels": {"pod": "a"}}, ingress=[{"from": [{"podSelector": {}}]}]),
        np("x", "a-first", {"matchLabels": {"pod": "a"}}, ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]),
    ]
    s1 = nftscript.render(plan(pols, pods, [], "n1", ["192.168.200.11"]))
    s2 = nftscript.render(plan(list(reversed(pols)), list(reversed(pods)), [], "n1", ["192.168.200.11"]))
    assert s1 == s2
    lines = s1.splitlines()
    assert lines[:2] == ["add table inet podnet-policy", "delete table inet podnet-policy"]
    # the plan's name is the digest of its pieces, the same whichever way the table got there
    _, hashes = nftscript.render_full(plan(pols, pods, [], "n1", ["192.168.200.11"]))
    assert nftscript.applied_plan(s1) == nftscript.plan_digest(hashes)
    assert lines[nftscript.HEAD_LINES - 1].startswith("add set inet podnet-policy plan-id ")
    # the pod's chain tries its policies in name order, then drops and counts
    chain = [line for line in lines if line.startswith("add rule inet podnet-policy ingress-")]
    assert "jump policy-in-" in chain[0] and "x/a-first" in chain[0] and "x/z-last" in chain[1]
    assert chain[2].endswith(
        'counter log prefix "pn:np:ingress:x/a-first,x/z-last" group 100 drop'
        ' comment "x/a: no NetworkPolicy allows this ingress"'
    )
    # a peer with several addresses is a named set, shared by every rule naming that peer
    peers = next(line for line in lines if line.startswith("add set inet podnet-policy peers-"))
    name = peers.split()[4]
    assert name.endswith("-x_pods__") and 'comment "peers: x pods *"' in peers
    assert "add element inet podnet-policy %s { 10.0.0.1, 10.0.0.2 }" % name in s1
    assert 'ip saddr @%s accept comment "x/z-last ingress[0]"' % name in s1
    assert 'ip saddr 10.0.0.0/8 accept comment "x/a-first ingress[0]"' in s1
    assert "add element inet podnet-policy ingress-pods { 10.0.0.1 : goto ingress-" in s1


def test_a_peer_that_names_nobody_allows_nothing():
    pods = [pod("x", "a", "10.0.0.1"), pod("x", "b", "10.0.0.2")]
    p = plan(
        [
            np(
                "x",
                "p",
                {"matchLabels": {"pod": "a"}},
                ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "zz"}}}]}],
            )
        ],
        pods,
        [],
        "n1",
    )
    assert node_verdict(p, "10.0.0.2", "10.0.0.1", "tcp", 80) == "drop"
    # the peer is an empty named set (a pod taking the label later only adds
    # an element), so its rule is there and matches nothing
    (chain,) = [c for n, c in p.chains.items() if n.startswith("policy-in")]
    (rule,) = chain.rules
    assert isinstance(rule.saddr, str) and p.sets[rule.saddr].elements == ()
    assert "add set inet podnet-policy %s " % rule.saddr in nftscript.render(p)
    assert "add element inet podnet-policy %s " % rule.saddr not in nftscript.render(p)
