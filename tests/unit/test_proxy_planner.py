"""The Service planner (podnet.proxy.planner): pure tests on the generated
`nft -f` script, plus one kernel test that nft accepts the script."""

import re

import pytest

from podnet.proxy.planner import Planner, chain_name, plan_ruleset
from tests.conftest import sh

T = "ip podnet-proxy"


def svc(name, ip, ports, ns="default", **spec):
    return {"metadata": {"namespace": ns, "name": name}, "spec": dict(clusterIP=ip, ports=ports, **spec)}


def eps_slice(svc_name, endpoints, ports, ns="default", suffix="a"):
    return {
        "metadata": {
            "namespace": ns,
            "name": "%s-%s" % (svc_name, suffix),
            "labels": {"kubernetes.io/service-name": svc_name},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }


def ep(ip, ready=True, serving=None, terminating=False, node="n1"):
    cond = {"ready": ready, "serving": ready if serving is None else serving, "terminating": terminating}
    return {"addresses": [ip], "conditions": cond, "nodeName": node}


def plan(services, slices, node="n1", node_ips=("192.168.1.10",)):
    return plan_ruleset(services, slices, node, list(node_ips))


def rules_of(script, prefix):
    """{chain: [rule bodies]} for chains whose name starts with prefix."""
    out = {}
    for m in re.finditer(r"^add rule %s (\S+) (.*)$" % T, script, re.M):
        if m.group(1).startswith(prefix):
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def cascade(rules):
    """The endpoint choice at the end of a chain: [target] in order, checking
    that rule i is `numgen random mod (N-i) == 0` (uniform) and the last has
    no condition. A target is `ip:port` for a dnat, the chain name for a goto."""
    picks = [r for r in rules if "dnat to" in r or "goto ep-" in r]
    picks = [r for r in picks if not r.startswith("ip saddr @")]
    out = []
    for i, r in enumerate(picks):
        m = re.fullmatch(r"(?:numgen random mod (\d+) == 0 )?(?:meta l4proto \w+ dnat to (\S+)|goto (ep-\S+))", r)
        assert m, r
        if i < len(picks) - 1:
            assert m.group(1) == str(len(picks) - i), (i, r)
        else:
            assert m.group(1) is None, r
        out.append(m.group(2) or m.group(3))
    return out


def dnats(script):
    return sorted(re.findall(r"dnat to (\S+)$", script, re.M))


WEB_PORT = [{"name": "http", "port": 80, "protocol": "TCP"}]
WEB_SLICE_PORT = [{"name": "http", "port": 8080, "protocol": "TCP"}]


def test_clusterip_three_ready_endpoints():
    s = plan(
        [svc("web", "10.96.0.10", WEB_PORT)],
        [eps_slice("web", [ep("10.244.1.%d" % i) for i in (4, 2, 3)], WEB_SLICE_PORT)],
    )
    assert s.startswith("add table %s\ndelete table %s\n" % (T, T))
    chain = chain_name("svc", "default/web/tcp/80")
    assert "add element %s service-ips { 10.96.0.10 . tcp . 80 : goto %s }" % (T, chain) in s
    (rules,) = rules_of(s, "svc-").values()
    assert cascade(rules) == ["10.244.1.2:8080", "10.244.1.3:8080", "10.244.1.4:8080"]
    assert not rules_of(s, "ep-")  # no affinity: no per-endpoint chains
    for ip in ("10.244.1.2", "10.244.1.3", "10.244.1.4"):  # hairpin: a pod DNATed to itself is masqueraded
        assert "add element %s hairpin { %s . %s }" % (T, ip, ip) in s
    assert "add rule %s nat-postrouting ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random" % T in s
    assert "add rule %s nat-postrouting meta mark & 0x4000 == 0x4000 masquerade fully-random" % T in s
    assert "add element %s cluster-ips { 10.96.0.10 }" % T in s
    assert "add rule %s services ip daddr . meta l4proto . th dport vmap @service-ips" % T in s
    assert (
        'add rule %s cluster-ips-check ip daddr @cluster-ips log prefix "pn:rej:unknown-port" group 100 reject' % T in s
    )
    # off-cluster clients of the ClusterIP are masqueraded
    assert rules[0] == "ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x4000"


def test_not_ready_excluded_and_terminating_fallback():
    s = plan(
        [svc("web", "10.96.0.10", WEB_PORT)],
        [
            eps_slice(
                "web",
                [
                    ep("10.244.1.2"),
                    ep("10.244.1.3", ready=False),
                    ep("10.244.1.4", ready=False, serving=True, terminating=True),
                ],
                WEB_SLICE_PORT,
            )
        ],
    )
    assert dnats(s) == ["10.244.1.2:8080"]
    assert "numgen" not in s  # one endpoint: no choice to make
    # nothing ready: the serving terminating one is used, the not-serving one is not
    s = plan(
        [svc("web", "10.96.0.10", WEB_PORT)],
        [
            eps_slice(
                "web",
                [
                    ep("10.244.1.3", ready=False),
                    ep("10.244.1.4", ready=False, serving=True, terminating=True),
                    ep("10.244.1.5", ready=False, serving=False, terminating=True),
                ],
                WEB_SLICE_PORT,
            )
        ],
    )
    assert dnats(s) == ["10.244.1.4:8080"]
    # missing conditions mean ready (EndpointSlice API semantics)
    s = plan([svc("web", "10.96.0.10", WEB_PORT)], [eps_slice("web", [{"addresses": ["10.244.1.9"]}], WEB_SLICE_PORT)])
    assert dnats(s) == ["10.244.1.9:8080"]


def test_no_endpoints_rejected():
    for slices in ([], [eps_slice("web", [], [])], [eps_slice("web", [ep("10.244.1.3", ready=False)], WEB_SLICE_PORT)]):
        s = plan([svc("web", "10.96.0.10", WEB_PORT)], slices)
        assert "add element %s no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-chain }" % T in s
        assert "service-ips {" not in s.replace("add map %s service-ips {" % T, "")
        assert not rules_of(s, "svc-") and not rules_of(s, "ep-")
        assert 'add rule %s reject-chain log prefix "pn:rej:no-endpoints" group 100' % T in s
        assert "add rule %s reject-chain reject" % T in s
        assert (
            "add rule %s service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services" % T in s
        )
        # a connection's first packet only (nat chains), from outside and from the node
        assert "add rule %s nat-output jump service-endpoints-check" % T in s
        assert "add rule %s nat-prerouting jump service-endpoints-check" % T in s


def test_named_target_port_and_protocol():
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        {"name": "metrics", "port": 9153, "protocol": "TCP"},
    ]
    slices = [
        eps_slice(
            "dns",
            [ep("10.244.1.2")],
            [{"name": "dns", "port": 5353, "protocol": "UDP"}, {"name": "dns-tcp", "port": 5354, "protocol": "TCP"}],
        ),
        # another slice for the same service: only metrics, resolved differently
        eps_slice("dns", [ep("10.244.1.3")], [{"name": "metrics", "port": 9100, "protocol": "TCP"}], suffix="b"),
    ]
    s = plan([svc("dns", "10.96.0.10", ports)], slices)
    assert "meta l4proto udp dnat to 10.244.1.2:5353" in s
    assert "meta l4proto tcp dnat to 10.244.1.2:5354" in s
    assert "meta l4proto tcp dnat to 10.244.1.3:9100" in s
    assert dnats(s) == ["10.244.1.2:5353", "10.244.1.2:5354", "10.244.1.3:9100"]
    for key in ("udp . 53", "tcp . 53", "tcp . 9153"):
        assert "service-ips { 10.96.0.10 . %s : goto svc-" % key in s
    # a slice from another namespace or another service is ignored
    s = plan(
        [svc("dns", "10.96.0.10", ports)],
        [
            eps_slice("dns", [ep("10.244.1.2")], [{"name": "dns", "port": 5353, "protocol": "UDP"}], ns="other"),
            eps_slice("dnsx", [ep("10.244.1.2")], [{"name": "dns", "port": 5353, "protocol": "UDP"}]),
        ],
    )
    assert dnats(s) == []


def test_service_without_selector_uses_manual_slice():
    s = plan(
        [svc("ext-db", "10.96.0.20", [{"port": 5432}])],  # no selector, unnamed TCP port
        [eps_slice("ext-db", [{"addresses": ["192.168.5.5"]}], [{"port": 5432}], suffix="manual")],
    )
    assert dnats(s) == ["192.168.5.5:5432"]


def test_nodeport_cluster_policy():
    s = plan(
        [svc("web", "10.96.0.10", [dict(WEB_PORT[0], nodePort=30080)], type="NodePort")],
        [eps_slice("web", [ep("10.244.1.2", node="n1"), ep("10.244.2.2", node="n2")], WEB_SLICE_PORT)],
    )
    ext = chain_name("ext", "default/web/tcp/80")
    assert "add element %s service-nodeports { tcp . 30080 : goto %s }" % (T, ext) in s
    assert rules_of(s, "ext-")[ext] == [
        "meta mark set meta mark | 0x4000",
        "goto " + chain_name("svc", "default/web/tcp/80"),
    ]
    assert (
        "add rule %s services fib daddr type local ip daddr != 127.0.0.0/8 ip daddr @nodeport-ips "
        "meta l4proto . th dport vmap @service-nodeports" % T
    ) in s
    assert "add element %s nodeport-ips { 192.168.1.10 }" % T in s
    # without node addresses: every local address (but loopback)
    s = plan(
        [svc("web", "10.96.0.10", [dict(WEB_PORT[0], nodePort=30080)], type="NodePort")],
        [eps_slice("web", [ep("10.244.1.2")], WEB_SLICE_PORT)],
        node_ips=(),
    )
    assert (
        "services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"
    ) in s
    # a nodePort on a ClusterIP-type service is ignored
    s = plan(
        [svc("web", "10.96.0.10", [dict(WEB_PORT[0], nodePort=30080)])],
        [eps_slice("web", [ep("10.244.1.2")], WEB_SLICE_PORT)],
    )
    assert "30080" not in s


def test_nodeport_local_policy():
    service = svc(
        "web", "10.96.0.10", [dict(WEB_PORT[0], nodePort=30080)], type="NodePort", externalTrafficPolicy="Local"
    )
    both = [eps_slice("web", [ep("10.244.1.2", node="n1"), ep("10.244.2.2", node="n2")], WEB_SLICE_PORT)]
    s = plan([service], both, node="n1")
    ext = chain_name("ext", "default/web/tcp/80")
    rules = rules_of(s, "ext-")[ext]
    assert not any(r == "meta mark set meta mark | 0x4000" for r in rules)  # client address kept
    assert "fib saddr type local meta mark set meta mark | 0x4000" in rules  # the node itself: masquerade
    assert rules[-1] == "meta l4proto tcp dnat to 10.244.1.2:8080"
    # the ClusterIP still balances over every endpoint
    (svc_rules,) = rules_of(s, "svc-").values()
    assert cascade(svc_rules) == ["10.244.1.2:8080", "10.244.2.2:8080"]
    # on a node without a local endpoint: pods and the node still reach every
    # endpoint, outside clients are dropped (not rejected: the LB's health check
    # steers them away)
    s = plan([service], both, node="n3")
    rules = rules_of(s, "ext-")[ext]
    assert rules[0] == "ip saddr 10.244.0.0/16 goto " + chain_name("svc", "default/web/tcp/80")
    assert rules[-1] == "drop"
    assert "no-endpoint-nodeports { tcp" not in s
    # no endpoints at all: rejected
    s = plan([service], [], node="n1")
    assert "add element %s no-endpoint-nodeports { tcp . 30080 : goto reject-chain }" % T in s


def test_internal_traffic_policy_local():
    service = svc("web", "10.96.0.10", WEB_PORT, internalTrafficPolicy="Local")
    sl = [eps_slice("web", [ep("10.244.1.2", node="n1"), ep("10.244.2.2", node="n2")], WEB_SLICE_PORT)]
    assert dnats(plan([service], sl, node="n1")) == ["10.244.1.2:8080"]
    s = plan([service], sl, node="n3")
    assert "add element %s no-endpoint-services { 10.96.0.10 . tcp . 80 : drop }" % T in s


def test_headless_and_externalname_produce_nothing():
    empty = plan([], [])
    services = [
        svc("headless", "None", WEB_PORT),
        {
            "metadata": {"namespace": "default", "name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "example.com", "ports": WEB_PORT},
        },
    ]
    slices = [
        eps_slice("headless", [ep("10.244.1.2")], WEB_SLICE_PORT),
        eps_slice("ext", [ep("10.244.1.3")], WEB_SLICE_PORT),
    ]
    assert plan(services, slices) == empty
    assert "element" not in empty.replace("add element %s nodeport-ips" % T, "")


def test_client_ip_affinity():
    service = svc(
        "web",
        "10.96.0.10",
        WEB_PORT,
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 300}},
    )
    s = plan([service], [eps_slice("web", [ep("10.244.1.2"), ep("10.244.1.3")], WEB_SLICE_PORT)])
    sets = re.findall(
        r"^add set %s (affinity-\S+) \{ type ipv4_addr; flags dynamic,timeout; timeout 300s; \}$" % T, s, re.M
    )
    assert len(sets) == 2
    (svc_rules,) = rules_of(s, "svc-").values()
    for aff in sets:
        epc = "ep-" + aff[len("affinity-") :]
        assert "ip saddr @%s goto %s" % (aff, epc) in svc_rules[:-1]  # checked before numgen
        assert "update @%s { ip saddr }" % aff in rules_of(s, epc)[epc]
    assert len(cascade(svc_rules)) == 2 and all(t.startswith("ep-") for t in cascade(svc_rules))
    # default timeout
    service["spec"].pop("sessionAffinityConfig")
    s = plan([service], [eps_slice("web", [ep("10.244.1.2")], WEB_SLICE_PORT)])
    assert "timeout 10800s;" in s
    # no affinity: no sets
    s = plan([svc("web", "10.96.0.10", WEB_PORT)], [eps_slice("web", [ep("10.244.1.2")], WEB_SLICE_PORT)])
    assert "affinity-" not in s


def test_chain_names_are_identifiers():
    name = chain_name("svc", 'weird ns/na:me"x/tcp/80')
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_./-]*", name)
    assert chain_name("svc", "a" * 500) != chain_name("svc", "a" * 499) and len(chain_name("ep", "a" * 500)) < 128


def _lb(name, ip, lb_ips, ports, **spec):
    service = svc(name, ip, ports, type="LoadBalancer", **spec)
    service["status"] = {"loadBalancer": {"ingress": [{"ip": x} for x in lb_ips]}}
    return service


LB_PORTS = [dict(WEB_PORT[0], nodePort=30080), {"name": "alt", "port": 8000, "protocol": "TCP", "nodePort": 30081}]
LB_SLICE_PORTS = WEB_SLICE_PORT + [{"name": "alt", "port": 8080, "protocol": "TCP"}]


def test_load_balancer_source_ranges_drop_other_sources_at_the_lb_ip_only():
    service = _lb(
        "web",
        "10.96.0.10",
        ["192.168.200.241"],
        LB_PORTS,
        externalIPs=["192.168.201.7"],
        # padded, host bits, IPv6 and garbage: trimmed, masked, skipped as kube-proxy does
        loadBalancerSourceRanges=[" 192.168.200.100/32", "10.1.2.3/8", "fd00::/64", "nonsense"],
    )
    sl = [eps_slice("web", [ep("10.244.1.2")], LB_SLICE_PORTS)]
    s = plan([service], sl, node_ips=("192.168.1.10",))
    fw, fw2 = chain_name("fw", "default/web/tcp/80"), chain_name("fw", "default/web/tcp/8000")
    want = ["ip saddr 192.168.200.100/32 return", "ip saddr 10.0.0.0/8 return", "drop"]
    assert rules_of(s, "fw-") == {fw: want, fw2: want}
    # only the LoadBalancer IP is checked, on each port; not the NodePort, the externalIP or the ClusterIP
    els = sorted(re.findall(r"^add element %s firewall-ips \{ (.*) \}$" % T, s, re.M))
    assert els == ["192.168.200.241 . tcp . 80 : goto " + fw, "192.168.200.241 . tcp . 8000 : goto " + fw2]
    # before DNAT, new connections only, from outside (prerouting) and from the node (output)
    assert "add rule %s nat-prerouting jump firewall-check" % T in s
    assert "add rule %s nat-output jump firewall-check" % T in s
    assert "add rule %s firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips" % T in s
    assert "add chain %s nat-prerouting { type nat hook prerouting priority dstnat; policy accept; }" % T in s
    # the node inside a range: its own connections to the LB IP it holds (source = that IP) too
    s = plan([service], sl, node_ips=("10.9.9.9",))
    assert rules_of(s, "fw-")[fw] == [
        "ip saddr 192.168.200.100/32 return",
        "ip saddr 10.0.0.0/8 return",
        "ip saddr 192.168.200.241 return",
        "drop",
    ]
    # no ranges, no LoadBalancer IP yet, or not a LoadBalancer: no check
    for other in (
        _lb("web", "10.96.0.10", ["192.168.200.241"], LB_PORTS),
        _lb("web", "10.96.0.10", [], LB_PORTS, loadBalancerSourceRanges=["192.168.200.100/32"]),
        svc("web", "10.96.0.10", LB_PORTS, type="NodePort", loadBalancerSourceRanges=["192.168.200.100/32"]),
        _lb("web", "10.96.0.10", ["192.168.200.241"], LB_PORTS, loadBalancerSourceRanges=["fd00::/64"]),
    ):
        s = plan([other], sl)
        assert "fw-" not in s and "firewall-ips {" not in s.replace("add map %s firewall-ips {" % T, "")


def test_node_addresses_replan_only_the_services_that_use_them():
    p = Planner("n1")
    ranged = _lb("a", "10.96.0.10", ["192.168.200.241"], LB_PORTS, loadBalancerSourceRanges=["10.0.0.0/8"])
    plain = _lb("b", "10.96.0.11", ["192.168.200.242"], LB_PORTS)
    sl = [eps_slice("a", [ep("10.244.1.2")], LB_SLICE_PORTS), eps_slice("b", [ep("10.244.1.3")], LB_SLICE_PORTS)]
    p.replan_all([ranged, plain], sl)
    first = p.plan(["192.168.1.10"])
    fw = chain_name("fw", "default/a/tcp/80")
    assert first["default/a"].chains[fw] == ("ip saddr 10.0.0.0/8 return", "drop")
    assert p.plan(["192.168.1.10"])["default/a"] is first["default/a"]  # same addresses: nothing planned again
    second = p.plan(["10.0.0.5"])
    assert second["default/a"].chains[fw] == ("ip saddr 10.0.0.0/8 return", "ip saddr 192.168.200.241 return", "drop")
    assert second["default/b"] is first["default/b"]
    # a later update of the Service plans with the addresses seen last
    p.update("default/a", ranged, sl[:1])
    assert p.plan(["10.0.0.5"])["default/a"].chains[fw] == second["default/a"].chains[fw]
    p.update("default/a", None, [])
    assert "default/a" not in p.plan(["192.168.1.10"])


def test_pods_reach_the_external_address_of_a_local_local_service_anywhere():
    service = _lb(
        "web",
        "10.96.0.10",
        ["192.168.200.241"],
        [dict(WEB_PORT[0], nodePort=30080)],
        externalIPs=["192.168.201.7"],
        externalTrafficPolicy="Local",
        internalTrafficPolicy="Local",
    )
    both = [eps_slice("web", [ep("10.244.1.2", node="n1"), ep("10.244.2.2", node="n2")], WEB_SLICE_PORT)]
    ext, wide = chain_name("ext", "default/web/tcp/80"), chain_name("all", "default/web/tcp/80")
    # a node without an endpoint: the ClusterIP is dropped (internalTrafficPolicy Local), outside
    # clients are dropped (externalTrafficPolicy Local), pods and the node use every endpoint
    s = plan([service], both, node="n3")
    assert "add element %s no-endpoint-services { 10.96.0.10 . tcp . 80 : drop }" % T in s
    rules = rules_of(s, "ext-")[ext]
    assert rules == [
        "ip saddr 10.244.0.0/16 goto " + wide,
        "fib saddr type local meta mark set meta mark | 0x4000",
        "fib saddr type local goto " + wide,
        "drop",
    ]
    assert cascade(rules_of(s, "all-")[wide]) == ["10.244.1.2:8080", "10.244.2.2:8080"]
    for front in ("192.168.200.241", "192.168.201.7"):
        assert "add element %s service-ips { %s . tcp . 80 : goto %s }" % (T, front, ext) in s
    # a node with one: the ClusterIP and outside clients use it alone, pods still every endpoint
    s = plan([service], both, node="n1")
    assert cascade(rules_of(s, "svc-")[chain_name("svc", "default/web/tcp/80")]) == ["10.244.1.2:8080"]
    rules = rules_of(s, "ext-")[ext]
    assert rules[0] == "ip saddr 10.244.0.0/16 goto " + wide and rules[-1] == "meta l4proto tcp dnat to 10.244.1.2:8080"
    assert cascade(rules_of(s, "all-")[wide]) == ["10.244.1.2:8080", "10.244.2.2:8080"]
    # every endpoint on this node: the ClusterIP's chain is the cluster-wide one, no second chain
    s = plan([service], [eps_slice("web", [ep("10.244.1.2", node="n1")], WEB_SLICE_PORT)], node="n1")
    assert rules_of(s, "ext-")[ext][0] == "ip saddr 10.244.0.0/16 goto " + chain_name("svc", "default/web/tcp/80")
    assert not rules_of(s, "all-")
    # with affinity the cluster-wide chain checks it too
    sticky = dict(service, spec=dict(service["spec"], sessionAffinity="ClientIP"))
    s = plan([sticky], both, node="n3")
    wide_rules = rules_of(s, "all-")[wide]
    assert len([r for r in wide_rules if r.startswith("ip saddr @affinity-")]) == 2
    assert len(rules_of(s, "ep-")) == 2


def _everything():
    services = [
        svc(
            "web",
            "10.96.0.10",
            [dict(WEB_PORT[0], nodePort=30080)],
            type="NodePort",
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        ),
        svc(
            "loc",
            "10.96.0.11",
            [{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}],
            type="LoadBalancer",
            externalTrafficPolicy="Local",
            sessionAffinity="ClientIP",
        ),
        svc("nolocal", "10.96.0.12", [{"port": 80, "nodePort": 30081}], type="NodePort", externalTrafficPolicy="Local"),
        svc("empty", "10.96.0.13", [{"port": 80, "nodePort": 30082}], type="NodePort"),
        svc("term", "10.96.0.14", WEB_PORT),
        svc("sctp", "10.96.0.15", [{"port": 3868, "protocol": "SCTP"}]),
        svc("itp", "10.96.0.16", WEB_PORT, internalTrafficPolicy="Local"),
        _lb(
            "both",
            "10.96.0.17",
            ["192.168.200.241"],
            [dict(WEB_PORT[0], nodePort=30083)],
            externalIPs=["192.168.201.7"],
            externalTrafficPolicy="Local",
            internalTrafficPolicy="Local",
            loadBalancerSourceRanges=["192.168.200.100/32", "192.168.1.0/24"],
        ),
        svc("headless", "None", WEB_PORT),
        {
            "metadata": {"namespace": "default", "name": "extname"},
            "spec": {"type": "ExternalName", "externalName": "x.y"},
        },
        svc("web", "10.96.1.10", WEB_PORT, ns="other-ns"),
    ]
    slices = [
        eps_slice(
            "web", [ep("10.244.1.2"), ep("10.244.2.2", node="n2"), ep("10.244.1.5", ready=False)], WEB_SLICE_PORT
        ),
        eps_slice(
            "loc", [ep("10.244.1.3"), ep("10.244.2.3", node="n2")], [{"name": "dns", "port": 5353, "protocol": "UDP"}]
        ),
        eps_slice("nolocal", [ep("10.244.2.4", node="n2")], [{"port": 8080}]),
        eps_slice("term", [ep("10.244.1.6", ready=False, serving=True, terminating=True)], WEB_SLICE_PORT),
        eps_slice("sctp", [ep("10.244.1.7")], [{"port": 3868, "protocol": "SCTP"}]),
        eps_slice("itp", [ep("10.244.2.8", node="n2")], WEB_SLICE_PORT),
        eps_slice("both", [ep("10.244.1.9"), ep("10.244.2.9", node="n2")], WEB_SLICE_PORT),
        eps_slice("web", [ep("10.244.3.9", node="n3")], WEB_SLICE_PORT, ns="other-ns"),
    ]
    return services, slices


def test_deterministic():
    services, slices = _everything()
    a = plan(services, slices)
    b = plan(list(reversed(services)), list(reversed(slices)))
    assert a == b
    assert a == plan(services, slices)


@pytest.mark.kernel
def test_nft_accepts_script(namespaces):
    ns = namespaces.new("proxy")
    services, slices = _everything()
    script = plan(services, slices)
    sh(ns, "nft", "-c", "-f", "-", input=script)
    sh(ns, "nft", "-c", "-f", "-", input=plan([], []))
    # and it really applies, twice (the second run replaces the first atomically)
    sh(ns, "nft", "-f", "-", input=script)
    sh(ns, "nft", "-f", "-", input=script)
    listing = sh(ns, "nft", "list", "table", "ip", "podnet-proxy").stdout
    assert "numgen random mod 2 0 " in listing and "masquerade fully-random" in listing
    sh(ns, "nft", "-f", "-", input=plan([], []))
    listing = sh(ns, "nft", "list", "table", "ip", "podnet-proxy").stdout
    assert "dnat to" not in listing and "goto svc-" not in listing


def test_hook_chains_only_nat():
    """A plain pod-to-pod packet crosses no chain of the table: its only base
    chains are nat chains (the kernel runs them for a connection's first
    packet), and the checks run there, around the Service dispatch, in the
    order kube-proxy's filter chains gave them (before DNAT, then unknown ports)."""
    s = plan([svc("web", "10.96.0.10", [{"name": "http", "port": 80}])], [], node_ips=("192.168.1.10",))
    hooks = re.findall(r"^add chain %s (\S+) \{ type (\w+) hook" % T, s, re.M)
    assert hooks == [("nat-prerouting", "nat"), ("nat-output", "nat"), ("nat-postrouting", "nat")]
    first = [
        "jump firewall-check",
        "jump service-endpoints-check",
        "jump nodeport-endpoints-check",
        "jump services",
        "jump cluster-ips-check",
    ]
    for chain in ("nat-prerouting", "nat-output"):
        assert re.findall(r"^add rule %s %s (.*)$" % (T, chain), s, re.M) == first
    assert "ct state new" not in s
