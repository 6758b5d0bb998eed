"""The NetworkPolicy truth-table cases, shared by two tiers:

* tests/unit/test_policy_truth.py runs them through the planner and the
  packet tracer (podnet.policy.trace): milliseconds, no root;
* tests/kernel/test_netpol.py runs them in a 3-node lab on the real kernel,
  probing every pod from every pod on 80 and 81, TCP and UDP.

As in the upstream e2e netpol suite: namespaces x, y, z, each with pods a, b,
c (label pod=<name>) serving TCP and UDP on 80 and 81 (container ports named
serve-80-tcp, serve-80-udp, ...). A case is a list of steps; each step changes
the cluster (apply manifests, delete objects) and gives the full expected
reachability. Expectations are written by hand (Reach), never computed by
the code under test. A pod always reaches itself (loopback never leaves it).
"""

import json

NAMESPACES = ("x", "y", "z")
NAMES = ("a", "b", "c")
PODS = tuple("%s/%s" % (ns, n) for ns in NAMESPACES for n in NAMES)
PORTS = ((80, "tcp"), (81, "tcp"), (80, "udp"), (81, "udp"))
NODES = ("node1", "node2", "node3")


def node_of(pod):
    """Spread: each node holds one pod of every namespace and one of every name,
    so every table mixes same-node (bridged) and cross-node (routed) pairs."""
    ns, name = pod.split("/")
    return NODES[(NAMESPACES.index(ns) + NAMES.index(name)) % 3]


# ---- manifests ----------------------------------------------------------------


def namespace(name, **labels):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(key, **extra_labels):
    ns, name = key.split("/")
    containers = [
        {
            "name": "serve-%d" % port,
            "image": "registry.k8s.io/e2e-test-images/agnhost:2.45",
            "args": ["serve-hostname", "--port=%d" % port, "--udp"],
            "ports": [
                {"name": "serve-%d-tcp" % port, "containerPort": port, "protocol": "TCP"},
                {"name": "serve-%d-udp" % port, "containerPort": port, "protocol": "UDP"},
            ],
        }
        for port in (80, 81)
    ]
    containers[0]["readinessProbe"] = {"tcpSocket": {"port": 80}, "periodSeconds": 1}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": dict({"pod": name}, **extra_labels)},
        "spec": {"nodeName": node_of(key), "containers": containers},
    }


def netpol(key, selector, ingress=None, egress=None, types=None):
    ns, name = key.split("/")
    spec = {"podSelector": selector}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types:
        spec["policyTypes"] = types
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def service(key, selector):
    ns, name = key.split("/")
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": selector,
            "ports": [
                {"name": "p%d-%s" % (p, proto), "port": p, "targetPort": p, "protocol": proto.upper()}
                for p, proto in PORTS
            ],
        },
    }


def lab_manifests():
    return [namespace(ns) for ns in NAMESPACES] + [pod(p) for p in PODS]


def to_yaml(docs):
    """JSON is YAML: one document per object."""
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"


# ---- expectations ---------------------------------------------------------------


def _hit(pattern, pod):
    ns, name = pod.split("/")
    pns, pname = pattern.split("/") if "/" in pattern else (pattern, "*")
    return pns in ("*", ns) and pname in ("*", name)


class Reach:
    """Expected reachability, built like upstream's Reachability: a default,
    then overrides (last one wins) by src/dst pattern ("x/a", "x/*", "*/b",
    "*") and optionally only for some (port, proto)."""

    def __init__(self, default=True):
        self.rules = [("*", "*", None, default)]
        # a pod reaching itself through a Service leaves its namespace (DNAT
        # back to itself, hairpin): then its own ingress policy applies
        self.hairpin = True

    def set(self, src, dst, ok, ports=None):
        self.rules.append((src, dst, None if ports is None else tuple(ports), ok))
        return self

    def deny_to(self, dst, ports=None):
        return self.set("*", dst, False, ports)

    def deny_from(self, src, ports=None):
        return self.set(src, "*", False, ports)

    def __call__(self, src, dst, port, proto):
        if src == dst:
            return True
        out = None
        for s, d, ports, ok in self.rules:
            if _hit(s, src) and _hit(d, dst) and (ports is None or (port, proto) in ports):
                out = ok
        return out


def render_tables(expected, observed):
    """Upstream-style: one 9x9 grid per port/protocol, X = blocked, . = open,
    and a mismatch shown as expected/observed."""

    def mark(v):
        return "." if v else "X"

    lines = []
    for port, proto in PORTS:
        lines.append("%d/%s  (rows: from, columns: to; mismatches as expected>observed)" % (port, proto.upper()))
        lines.append("      " + " ".join("%5s" % d for d in PODS))
        for s in PODS:
            cells = []
            for d in PODS:
                e, o = expected[(s, d, port, proto)], observed.get((s, d, port, proto))
                cells.append("%5s" % (mark(e) if e == o else "%s>%s" % (mark(e), "?" if o is None else mark(o))))
            lines.append("%5s " % s + " ".join(cells))
    return "\n".join(lines)


def expected_table(reach, via=()):
    """via: pods probed through a Service (their self cell is the hairpin one)."""
    return {
        (s, d, port, proto): reach.hairpin if s == d and d in via else reach(s, d, port, proto)
        for s in PODS
        for d in PODS
        for port, proto in PORTS
    }


class Step:
    def __init__(self, expect, apply=(), delete=(), note=""):
        self.expect, self.apply, self.delete, self.note = expect, list(apply), list(delete), note


TCP80, TCP81, UDP80, UDP81 = PORTS
TCP = (TCP80, TCP81)
UDP = (UDP80, UDP81)
ALL_NS = {"namespaceSelector": {}}


def ns_sel(name):
    return {"matchLabels": {"kubernetes.io/metadata.name": name}}


def pod_sel(name):
    return {"matchLabels": {"pod": name}}


def only_x_a_from(*srcs, ports=None):
    r = Reach().deny_to("x/a")
    for s in srcs:
        r.set(s, "x/a", True, ports)
    return r


# ---- the cases: name -> fn(ips) -> [Step]; ips: "x/a" -> pod IP ---------------------


def _cases():
    c = {}

    def case(fn):
        c[fn.__name__] = fn
        return fn

    @case
    def no_policy_allows_everything(ips):
        return [Step(Reach())]

    @case
    def default_deny_ingress(ips):
        return [Step(Reach().deny_to("x/*"), [netpol("x/deny-ingress", {}, types=["Ingress"])])]

    @case
    def default_deny_egress(ips):
        return [Step(Reach().deny_from("x/*"), [netpol("x/deny-egress", {}, types=["Egress"])])]

    @case
    def default_deny_all(ips):
        return [Step(Reach().deny_to("x/*").deny_from("x/*"), [netpol("x/deny-all", {}, types=["Ingress", "Egress"])])]

    @case
    def allow_all_ingress_beats_deny_all(ips):
        return [
            Step(Reach(), [netpol("x/deny-ingress", {}, types=["Ingress"]), netpol("x/allow-all", {}, ingress=[{}])])
        ]

    @case
    def deny_ingress_to_one_pod(ips):
        return [Step(Reach().deny_to("x/a"), [netpol("x/deny-a", pod_sel("a"), ingress=[])])]

    @case
    def pod_selector_same_namespace(ips):
        return [
            Step(
                only_x_a_from("x/b"),
                [netpol("x/a-from-b", pod_sel("a"), ingress=[{"from": [{"podSelector": pod_sel("b")}]}])],
            )
        ]

    @case
    def namespace_selector_match_labels(ips):
        return [
            Step(
                only_x_a_from("y/*"),
                [netpol("x/a-from-y", pod_sel("a"), ingress=[{"from": [{"namespaceSelector": ns_sel("y")}]}])],
            )
        ]

    @case
    def namespace_selector_not_in(ips):
        sel = {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["x"]}]}
        return [
            Step(
                only_x_a_from("y/*", "z/*"),
                [netpol("x/a-not-from-x", pod_sel("a"), ingress=[{"from": [{"namespaceSelector": sel}]}])],
            )
        ]

    @case
    def pod_selector_in_expression(ips):
        sel = {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b", "c"]}]}
        return [
            Step(
                only_x_a_from("x/b", "x/c"),
                [netpol("x/a-from-bc", pod_sel("a"), ingress=[{"from": [{"podSelector": sel}]}])],
            )
        ]

    @case
    def pod_selector_not_in_selects_targets(ips):
        # the policy applies to every pod of x but b; they admit only x's pods
        sel = {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["b"]}]}
        r = Reach().deny_to("x/a").deny_to("x/c").set("x/*", "x/a", True).set("x/*", "x/c", True)
        return [Step(r, [netpol("x/not-b", sel, ingress=[{"from": [{"podSelector": {}}]}])])]

    @case
    def exists_and_does_not_exist(ips):
        exists = {"matchExpressions": [{"key": "pod", "operator": "Exists"}]}
        missing = {"matchExpressions": [{"key": "pod", "operator": "DoesNotExist"}]}
        return [
            Step(
                only_x_a_from("*"),
                [
                    netpol(
                        "x/a-from", pod_sel("a"), ingress=[{"from": [{"namespaceSelector": {}, "podSelector": exists}]}]
                    )
                ],
            ),
            Step(
                only_x_a_from(),
                [
                    netpol(
                        "x/a-from",
                        pod_sel("a"),
                        ingress=[{"from": [{"namespaceSelector": {}, "podSelector": missing}]}],
                    )
                ],
            ),
        ]

    @case
    def namespace_and_pod_selector_in_one_peer_is_and(ips):
        return [
            Step(
                only_x_a_from("y/b"),
                [
                    netpol(
                        "x/a-from-yb",
                        pod_sel("a"),
                        ingress=[{"from": [{"namespaceSelector": ns_sel("y"), "podSelector": pod_sel("b")}]}],
                    )
                ],
            )
        ]

    @case
    def two_peers_are_or(ips):
        return [
            Step(
                only_x_a_from("y/*", "x/b"),
                [
                    netpol(
                        "x/a-from-y-or-b",
                        pod_sel("a"),
                        ingress=[{"from": [{"namespaceSelector": ns_sel("y")}, {"podSelector": pod_sel("b")}]}],
                    )
                ],
            )
        ]

    @case
    def pod_selector_in_every_namespace(ips):
        return [
            Step(
                only_x_a_from("*/b"),
                [
                    netpol(
                        "x/a-from-any-b",
                        pod_sel("a"),
                        ingress=[{"from": [{"namespaceSelector": {}, "podSelector": pod_sel("b")}]}],
                    )
                ],
            )
        ]

    @case
    def numeric_port(ips):
        return [
            Step(
                only_x_a_from("*", ports=[TCP81]), [netpol("x/a-81", pod_sel("a"), ingress=[{"ports": [{"port": 81}]}])]
            )
        ]

    @case
    def named_port_tcp(ips):
        return [
            Step(
                only_x_a_from("*", ports=[TCP80]),
                [netpol("x/a-serve-80", pod_sel("a"), ingress=[{"ports": [{"port": "serve-80-tcp"}]}])],
            )
        ]

    @case
    def named_port_udp(ips):
        return [
            Step(
                only_x_a_from("*", ports=[UDP81]),
                [
                    netpol(
                        "x/a-serve-81-udp",
                        pod_sel("a"),
                        ingress=[{"ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}],
                    )
                ],
            )
        ]

    @case
    def named_port_needs_its_protocol(ips):
        # serve-80-tcp is a TCP port: asked for as UDP it names nothing
        return [
            Step(
                only_x_a_from(),
                [
                    netpol(
                        "x/a-wrong-proto",
                        pod_sel("a"),
                        ingress=[{"ports": [{"port": "serve-80-tcp", "protocol": "UDP"}]}],
                    )
                ],
            )
        ]

    @case
    def end_port_range(ips):
        return [
            Step(
                only_x_a_from("*", ports=TCP),
                [netpol("x/a-80-81", pod_sel("a"), ingress=[{"ports": [{"port": 80, "endPort": 81}]}])],
            )
        ]

    @case
    def end_port_range_stops_before_81(ips):
        return [
            Step(
                only_x_a_from("*", ports=[TCP80]),
                [netpol("x/a-70-80", pod_sel("a"), ingress=[{"ports": [{"port": 70, "endPort": 80}]}])],
            )
        ]

    @case
    def udp_only_policy_leaves_tcp_denied(ips):
        return [
            Step(
                only_x_a_from("*", ports=UDP),
                [netpol("x/a-udp", pod_sel("a"), ingress=[{"ports": [{"protocol": "UDP"}]}])],
            )
        ]

    @case
    def ip_block_with_except(ips):
        return [
            Step(
                only_x_a_from("*").set("x/b", "x/a", False),
                [
                    netpol(
                        "x/a-from-block",
                        pod_sel("a"),
                        ingress=[{"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": [ips["x/b"] + "/32"]}}]}],
                    )
                ],
            )
        ]

    @case
    def egress_ip_block(ips):
        return [
            Step(
                Reach().deny_from("x/a").set("x/a", "y/b", True),
                [
                    netpol(
                        "x/a-to-yb",
                        pod_sel("a"),
                        egress=[{"to": [{"ipBlock": {"cidr": ips["y/b"] + "/32"}}]}],
                        types=["Egress"],
                    )
                ],
            )
        ]

    @case
    def egress_ip_block_with_except(ips):
        egress = [{"to": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": [ips["z/c"] + "/32"]}}]}]
        return [
            Step(
                Reach().set("x/a", "z/c", False),
                [netpol("x/a-not-to-zc", pod_sel("a"), egress=egress, types=["Egress"])],
            ),
            Step(
                Reach().set("x/a", "z/c", False).deny_to("x/a"),
                [netpol("x/a-not-to-zc", pod_sel("a"), egress=egress)],
                note="without policyTypes: Ingress is implied too, and there is no ingress rule",
            ),
        ]

    @case
    def egress_denied_while_the_server_allows(ips):
        return [
            Step(
                Reach().deny_from("x/a"),
                [netpol("x/a-no-egress", pod_sel("a"), types=["Egress"]), netpol("y/allow-all", {}, ingress=[{}])],
            )
        ]

    @case
    def stacked_policies_add_up(ips):
        return [
            Step(
                only_x_a_from("x/b", "y/c"),
                [
                    netpol("x/a-from-b", pod_sel("a"), ingress=[{"from": [{"podSelector": pod_sel("b")}]}]),
                    netpol(
                        "x/a-from-yc",
                        pod_sel("a"),
                        ingress=[{"from": [{"namespaceSelector": ns_sel("y"), "podSelector": pod_sel("c")}]}],
                    ),
                ],
            )
        ]

    @case
    def overlapping_policies_on_ports(ips):
        r = only_x_a_from().set("y/*", "x/a", True, [TCP80]).set("z/*", "x/a", True, [TCP81])
        return [
            Step(
                r,
                [
                    netpol(
                        "x/a-y-80",
                        pod_sel("a"),
                        ingress=[{"from": [{"namespaceSelector": ns_sel("y")}], "ports": [{"port": 80}]}],
                    ),
                    netpol(
                        "x/a-z-81",
                        pod_sel("a"),
                        ingress=[
                            {"from": [{"namespaceSelector": ns_sel("z")}], "ports": [{"port": 81, "protocol": "TCP"}]}
                        ],
                    ),
                ],
            )
        ]

    @case
    def ingress_and_egress_in_one_policy(ips):
        r = only_x_a_from("x/b").deny_from("x/a").set("x/a", "y/*", True)
        return [
            Step(
                r,
                [
                    netpol(
                        "x/a-both",
                        pod_sel("a"),
                        ingress=[{"from": [{"podSelector": pod_sel("b")}]}],
                        egress=[{"to": [{"namespaceSelector": ns_sel("y")}]}],
                    )
                ],
            )
        ]

    @case
    def egress_to_namespace_on_one_port(ips):
        r = Reach().deny_from("x/a").set("x/a", "z/*", True, [TCP80])
        return [
            Step(
                r,
                [
                    netpol(
                        "x/a-to-z-80",
                        pod_sel("a"),
                        egress=[
                            {"to": [{"namespaceSelector": ns_sel("z")}], "ports": [{"port": 80, "protocol": "TCP"}]}
                        ],
                        types=["Egress"],
                    )
                ],
            )
        ]

    @case
    def egress_named_port(ips):
        r = Reach().deny_from("x/a").set("x/a", "*", True, [TCP81])
        return [
            Step(
                r, [netpol("x/a-to-81", pod_sel("a"), egress=[{"ports": [{"port": "serve-81-tcp"}]}], types=["Egress"])]
            )
        ]

    @case
    def sender_egress_and_receiver_ingress(ips):
        # y/b may send nowhere; x/a admits everyone: y/b still cannot reach x/a
        return [
            Step(
                Reach().deny_from("y/b"),
                [
                    netpol("y/b-no-egress", pod_sel("b"), types=["Egress"]),
                    netpol("x/a-allow-all", pod_sel("a"), ingress=[{}]),
                ],
            )
        ]

    @case
    def update_policy(ips):
        def v(src):
            return netpol("x/a-from", pod_sel("a"), ingress=[{"from": [{"podSelector": pod_sel(src)}]}])

        return [
            Step(only_x_a_from("x/b"), [v("b")]),
            Step(only_x_a_from("x/c"), [v("c")], note="the same policy now admits c instead of b"),
            Step(Reach(), delete=[("NetworkPolicy", "x", "a-from")], note="deleted"),
        ]

    @case
    def update_pod_labels(ips):
        pol = netpol(
            "x/a-from-blue",
            pod_sel("a"),
            ingress=[{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"team": "blue"}}}]}],
        )
        return [
            Step(only_x_a_from(), [pol]),
            Step(only_x_a_from("y/c"), [pod("y/c", team="blue")], note="y/c labelled team=blue"),
            Step(only_x_a_from(), [pod("y/c")], note="label removed again"),
        ]

    @case
    def update_namespace_labels(ips):
        pol = netpol(
            "x/a-from-red", pod_sel("a"), ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "red"}}}]}]
        )
        return [
            Step(only_x_a_from(), [pol]),
            Step(only_x_a_from("z/*"), [namespace("z", team="red")], note="namespace z labelled team=red"),
            Step(only_x_a_from(), [namespace("z")], note="label removed again"),
        ]

    @case
    def update_selected_pods_by_label(ips):
        # the policy selects pods labelled locked=yes: relabelling a pod isolates it
        pol = netpol("y/lock", {"matchLabels": {"locked": "yes"}}, ingress=[])
        return [
            Step(Reach(), [pol]),
            Step(Reach().deny_to("y/b"), [pod("y/b", locked="yes")], note="y/b labelled locked=yes"),
            Step(Reach(), [pod("y/b")], note="label removed again"),
        ]

    @case
    def policy_deletion(ips):
        return [
            Step(
                Reach().deny_to("x/*").deny_to("y/*"),
                [netpol("x/deny", {}, ingress=[]), netpol("y/deny", {}, ingress=[])],
            ),
            Step(Reach().deny_to("y/*"), delete=[("NetworkPolicy", "x", "deny")], note="x's policy deleted"),
        ]

    @case
    def through_the_service_ip(ips):
        # probes to x/a go to a ClusterIP (kernel tier): the policy sees the pod IP after DNAT
        r = only_x_a_from("y/*").deny_from("z/b")
        r.hairpin = False  # x/a -> ClusterIP -> x/a: x/a is not in y
        return [
            Step(
                r,
                [
                    service("x/svc-a", {"pod": "a"}),
                    netpol("x/a-from-y", pod_sel("a"), ingress=[{"from": [{"namespaceSelector": ns_sel("y")}]}]),
                    netpol("z/b-no-egress", pod_sel("b"), types=["Egress"]),
                ],
            )
        ]

    return c


CASES = _cases()
SERVICE_CASES = {"through_the_service_ip": ("x/svc-a", "x/a")}  # probe x/a through this Service
