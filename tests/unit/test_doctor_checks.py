"""Each doctor check on hand-made facts: a healthy case finds nothing, a
broken one finds the right check naming the right object. The ranking puts
a cause before its consequences."""

import copy

from podnet.diag import checks_node, checks_rules, checks_workload
from podnet.diag.checks_base import Facts, Finding, Path, rank

MACS = {"node1": "aa:00:00:00:00:01", "node2": "aa:00:00:00:00:02"}


def pod(name, ip, node, labels, ns="default", ready=True, ports=(), probe=None, phase="Running"):
    c = {"name": "c", "ports": [dict(p) for p in ports]}
    if probe:
        c["readinessProbe"] = probe
    return {
        "metadata": {"name": name, "namespace": ns, "labels": labels, "uid": name + "-uid"},
        "spec": {"nodeName": node, "containers": [c]},
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "c", "restartCount": 0}],
        },
    }


def service(name, selector, ports, ip, ns="default"):
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": selector, "ports": ports, "clusterIP": ip},
    }


def eps(svc, pods, ns="default", ready=True):
    return {
        "metadata": {"name": svc + "-x", "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "endpoints": [
            {
                "addresses": [p["status"]["podIP"]],
                "conditions": {"ready": ready},
                "targetRef": {"kind": "Pod", "name": p["metadata"]["name"], "namespace": ns},
            }
            for p in pods
        ],
    }


def node_kernel(me, other, other_cidr):
    return {
        "routes": [
            {"dst": "default", "gateway": "192.168.200.100", "dev": "eth0"},
            {"dst": other_cidr, "gateway": other_cidr.split("/")[0], "dev": "podnet.1", "protocol": "44"},
        ],
        "mtu": {"eth0": 1500, "podnet.1": 1450, "cni0": 1500},
        "sysctls": {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0"},
        "tables": list(checks_rules.OURS),
        "foreign_tables": {},
        "iptables": "",
        "conntrack": [],
        "fdb": {MACS[other]: "192.168.200.1%s" % other[-1]},
        "neigh": {other_cidr.split("/")[0]: MACS[other]},
    }


WEB_PORTS = [{"name": "http", "containerPort": 8080}, {"name": "udp", "containerPort": 8081, "protocol": "UDP"}]


def healthy():
    web1 = pod("web-1", "10.244.0.3", "node1", {"app": "web"}, ports=WEB_PORTS)
    web2 = pod("web-2", "10.244.1.3", "node2", {"app": "web"}, ports=WEB_PORTS)
    client = pod("client", "10.244.1.2", "node2", {"app": "client"})
    dns = pod("coredns-1", "10.244.0.2", "node1", {"k8s-app": "kube-dns"}, ns="kube-system")
    f = Facts(lab="t", mode="vxlan")
    f.nodes = {
        "node1": {"ip": "192.168.200.11", "podCIDR": "10.244.0.0/24", "vtep_mac": MACS["node1"], "netns": "n1"},
        "node2": {"ip": "192.168.200.12", "podCIDR": "10.244.1.0/24", "vtep_mac": MACS["node2"], "netns": "n2"},
    }
    f.kernel = {
        "node1": node_kernel("node1", "node2", "10.244.1.0/24"),
        "node2": node_kernel("node2", "node1", "10.244.0.0/24"),
    }
    f.procs = {"agent-node1": {"pid": 1, "alive": True}, "apiserver": {"pid": 2, "alive": True}}
    f.pods = [web1, web2, client, dns]
    f.services = [
        service(
            "web",
            {"app": "web"},
            [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": "udp", "protocol": "UDP"}],
            "10.96.0.2",
        ),
        service("kube-dns", {"k8s-app": "kube-dns"}, [{"port": 53, "protocol": "UDP"}], "10.96.0.10", ns="kube-system"),
    ]
    f.slices = [eps("web", [web1, web2]), eps("kube-dns", [dns], ns="kube-system")]
    listening = {"tcp": [("0.0.0.0", 8080)], "udp": [("0.0.0.0", 8081)]}
    resolv = "nameserver 10.96.0.10\nsearch default.svc.cluster.local\n"
    f.pod_kernel = {
        "default/web-1": {
            "mtu": 1500,
            "route_mtu": 1450,
            "listening": copy.deepcopy(listening),
            "resolv": resolv,
            "dns": {"ok": True, "detail": "ok"},
        },
        "default/web-2": {
            "mtu": 1500,
            "route_mtu": 1450,
            "listening": copy.deepcopy(listening),
            "resolv": resolv,
            "dns": {"ok": True, "detail": "ok"},
        },
        "default/client": {
            "mtu": 1500,
            "route_mtu": 1450,
            "listening": {"tcp": [], "udp": []},
            "resolv": resolv,
            "dns": {"ok": True, "detail": "ok"},
        },
    }
    f.path = Path(src="default/client", dst_pods=["default/web-1", "default/web-2"], port=8080, service="default/web")
    return f


ALL = [
    checks_node.check_processes,
    checks_node.check_node_routes,
    checks_node.check_vxlan_fdb,
    checks_node.check_bgp,
    checks_node.check_mtu,
    checks_node.check_sysctls,
    checks_workload.check_pod_status,
    checks_workload.check_service_selector,
    checks_workload.check_endpoints,
    checks_workload.check_target_port,
    checks_workload.check_dns,
    checks_rules.check_network_policy,
    checks_rules.check_conntrack,
    checks_rules.check_nft_tables,
    checks_rules.check_foreign_rules,
]


def run_all(f):
    out = []
    for check in ALL:
        out += check(f)
    return rank(out)


def only(findings, check):
    assert findings, "no finding"
    assert {x.check for x in findings} == {check}, findings
    return findings[0]


def test_a_healthy_lab_gives_no_finding_from_any_check():
    assert run_all(healthy()) == []


def test_processes():
    f = healthy()
    f.procs["apiserver"]["alive"] = False
    f.procs["agent-node1"]["alive"] = False
    got = checks_node.check_processes(f)
    assert [(x.severity, x.where) for x in rank(got)] == [("error", None), ("warning", "node1")]
    assert "apiserver" in rank(got)[0].summary


def test_node_routes():
    f = healthy()
    f.kernel["node1"]["routes"] = f.kernel["node1"]["routes"][:1]
    x = only(checks_node.check_node_routes(f), "node-routes")
    assert x.where == "node1" and "10.244.1.0/24" in x.summary and "node2" in x.summary


def test_node_routes_host_gw_wants_the_node_as_gateway():
    f = healthy()
    f.mode = "host-gw"
    assert len(checks_node.check_node_routes(f)) == 2  # routes via podnet.1 are wrong for host-gw
    for n, other in (("node1", "node2"), ("node2", "node1")):
        o = f.nodes[other]
        f.kernel[n]["routes"] = [{"dst": o["podCIDR"], "gateway": o["ip"], "dev": "eth0"}]
    assert checks_node.check_node_routes(f) == []


def test_vxlan_fdb():
    f = healthy()
    f.kernel["node1"]["fdb"] = {MACS["node2"]: "192.168.200.13"}
    x = only(checks_node.check_vxlan_fdb(f), "vxlan-fdb")
    assert x.where == "node1" and MACS["node2"] in x.summary and "192.168.200.13" in x.summary


def test_bgp():
    f = healthy()
    f.mode = "bgp"
    f.bird = {"node1": {"running": True, "sessions": [{"peer": "node2", "state": "Established"}]}}
    assert checks_node.check_bgp(f) == []
    f.bird["node1"]["sessions"][0]["state"] = "Active"
    f.bird["node2"] = {"running": False, "ctl": "/x/bird.ctl"}
    got = checks_node.check_bgp(f)
    assert [x.where for x in got] == ["node2", "node1"]  # the stopped BIRD first
    assert "BIRD is not running on node2" in got[0].summary


def test_mtu():
    f = healthy()
    assert checks_node.check_mtu(f) == []  # eth0 1500, the default route's 1450
    f.pod_kernel["default/web-1"]["route_mtu"] = None  # the route's MTU gone: eth0's 1500 applies
    x = only(checks_node.check_mtu(f), "mtu")
    assert x.where == "node1" and "default/web-1" in x.summary and "1450" in x.summary
    assert "sends up to 1500" in x.summary and "ip route show default" in x.command
    f = healthy()
    f.pod_kernel["default/web-2"]["route_mtu"] = 9000  # a route above eth0: eth0's 1500 caps it, still too big
    assert "sends up to 1500" in only(checks_node.check_mtu(f), "mtu").summary
    f.pod_kernel["default/web-2"].update(mtu=1450, route_mtu=None)  # flannel's shape: eth0 at the tunnel's
    assert checks_node.check_mtu(f) == []


def test_sysctls():
    f = healthy()
    f.kernel["node2"]["sysctls"]["net.ipv4.ip_forward"] = "0"
    x = only(checks_node.check_sysctls(f), "sysctls")
    assert x.where == "node2" and x.severity == "error" and "net.ipv4.ip_forward" in x.summary


def test_pod_status_names_the_failing_probe_and_ranks_before_endpoints():
    f = healthy()
    web1 = f.pod("default/web-1")
    web1["status"]["conditions"][0]["status"] = "False"
    web1["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/nothere", "port": 8080}}
    f.events = [
        {
            "involvedObject": {"name": "web-1", "namespace": "default"},
            "reason": "Unhealthy",
            "lastTimestamp": "2026-12-02T03:24:40Z",
            "message": "Readiness probe failed: HTTP probe failed with statuscode: 404",
        },
        {  # older, listed later: the newest failure is the news
            "involvedObject": {"name": "web-1", "namespace": "default"},
            "reason": "Unhealthy",
            "lastTimestamp": "2026-12-02T03:24:35Z",
            "message": "Readiness probe failed: connect: connection refused",
        },
    ]
    f.slices[0]["endpoints"] = []
    got = run_all(f)
    assert [x.check for x in got] == ["pod-status", "endpoints"]
    assert "default/web-1" in got[0].summary and "/nothere" in got[0].summary and "404" in got[0].summary


def test_service_selector_near_miss():
    f = healthy()
    f.services[0]["spec"]["selector"] = {"app": "wbe"}
    x = only(checks_workload.check_service_selector(f), "service-selector")
    assert "default/web" in x.summary and "app=web" in x.summary


def test_service_selector_pods_in_another_namespace():
    f = healthy()
    f.services[0]["metadata"]["namespace"] = "other"
    x = only(checks_workload.check_service_selector(f), "service-selector")
    assert "namespace default" in x.summary


def test_endpoints():
    f = healthy()
    f.slices[0]["endpoints"][0]["conditions"]["ready"] = False
    assert checks_workload.check_endpoints(f) == []  # one ready endpoint left is enough
    f.slices[0]["endpoints"][1]["conditions"]["ready"] = False
    x = only(checks_workload.check_endpoints(f), "endpoints")
    assert "default/web" in x.summary


def test_target_port_by_number_and_by_name():
    f = healthy()
    f.pod_kernel["default/web-2"]["listening"]["udp"] = []
    x = only(checks_workload.check_target_port(f), "target-port")
    assert "10.244.1.3:8081" in x.summary and x.where == "node2"
    f = healthy()
    f.services[0]["spec"]["ports"] = [{"port": 80, "targetPort": 9999}]
    got = checks_workload.check_target_port(f)
    assert {x.check for x in got} == {"target-port"} and all(":9999" in x.summary for x in got)


def test_dns():
    f = healthy()
    f.slices[1]["endpoints"] = []
    f.scope_pods = {"default/client"}
    x = only(checks_workload.check_dns(f), "dns")
    assert "kube-system/kube-dns" in x.summary and "default/client" in x.summary
    f = healthy()
    f.scope_pods = {"default/client"}
    f.pod_kernel["default/client"]["dns"] = {"ok": False, "detail": "no answer"}
    assert "failed" in only(checks_workload.check_dns(f), "dns").summary


DENY_WEB = {
    "metadata": {"name": "deny-web", "namespace": "default"},
    "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]},
}


def test_network_policy_names_the_policy_that_isolates_the_end():
    f = healthy()
    f.policies = [copy.deepcopy(DENY_WEB)]
    got = checks_rules.check_network_policy(f)
    assert got and {x.check for x in got} == {"network-policy"}
    assert "default/deny-web" in got[0].summary and got[0].where in ("node1", "node2")
    # a rule allowing the client on the http port opens the path again
    f.policies[0]["spec"]["ingress"] = [
        {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": "http"}]}
    ]
    assert checks_rules.check_network_policy(f) == []
    # ... but not another port
    f.path.port = 8081
    f.path.protocol = "UDP"
    assert checks_rules.check_network_policy(f)


def test_network_policy_egress():
    f = healthy()
    f.policies = [
        {
            "metadata": {"name": "deny-client-egress", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"]},
        }
    ]
    got = checks_rules.check_network_policy(f)
    # one finding per endpoint the client cannot reach, each on the client's node
    assert len(got) == 2 and all("default/deny-client-egress" in x.summary and x.where == "node2" for x in got)


STALE = (
    "ipv4     2 udp      17 29 src=10.244.1.2 dst=10.96.0.2 sport=40001 dport=81 "
    "src=10.244.2.99 dst=10.244.1.2 sport=8081 dport=40001 mark=0 use=1"
)


def test_conntrack():
    f = healthy()
    good = STALE.replace("10.244.2.99", "10.244.0.3")
    f.kernel["node2"]["conntrack"] = [good]
    assert checks_rules.check_conntrack(f) == []
    f.kernel["node2"]["conntrack"].append(STALE)
    x = only(checks_rules.check_conntrack(f), "conntrack")
    assert x.where == "node2" and "10.244.2.99" in x.summary and "default/web" in x.summary


def test_nft_tables():
    f = healthy()
    f.kernel["node1"]["tables"].remove("inet podnet-policy")
    x = only(checks_rules.check_nft_tables(f), "nft-tables")
    assert "inet podnet-policy" in x.summary and x.where == "node1"


FOREIGN = """table inet foreign {
	chain block {
		type filter hook forward priority filter; policy accept;
		tcp dport 8080 counter packets 0 bytes 0 drop comment "keep out"
		tcp dport 22 accept comment "no drop here"
	}
}
"""


def test_foreign_rules():
    f = healthy()
    f.kernel["node2"]["foreign_tables"] = {"inet quiet": "table inet quiet {\n\tchain c {\n\t\tcounter\n\t}\n}\n"}
    assert checks_rules.check_foreign_rules(f) == []
    f.kernel["node2"]["foreign_tables"]["inet foreign"] = FOREIGN
    f.kernel["node1"]["iptables"] = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp --dport 80 -j REJECT\nCOMMIT\n"
    got = checks_rules.check_foreign_rules(f)
    assert [x.where for x in got] == ["node1", "node2"]
    assert "iptables -t filter -A FORWARD" in got[0].summary
    assert "inet foreign block: tcp dport 8080" in got[1].summary


def test_rank_puts_errors_first_and_causes_before_consequences():
    got = rank(
        [
            Finding("endpoints", "error", "e"),
            Finding("processes", "warning", "w"),
            Finding("pod-status", "error", "p"),
            Finding("bgp", "error", "b"),
            Finding("node-routes", "error", "r"),
        ]
    )
    assert [x.check for x in got] == ["bgp", "node-routes", "pod-status", "endpoints", "processes"]
