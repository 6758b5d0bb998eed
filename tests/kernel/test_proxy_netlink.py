"""The proxy's partial syncs through nf_tables netlink (podnet.kernel.nftnl),
on the real kernel, in namespaces the test creates.

Every kind of Service the planner knows goes through add, change and
delete, each step written as one netlink batch (and the test insists it was
netlink, not the nft fallback); after every step the table equals, chain by
chain and rule by rule in order, with sets, maps and their elements, what a
full `nft -f` render of the same state lists. Also: what the fast path
cannot compile (the base chains after a node address change) goes through
nft with the same result, and a batch the kernel refuses is written by nft
and makes the reconciler's next pass a full one."""

import errno

import pytest

from podnet.kernel import netns, nftnl
from podnet.proxy.planner import Planner
from podnet.proxy.render import diff, full
from tests.conftest import sh
from tests.unit.test_proxy_render import Informer, _listing, _nodes, svc

pytestmark = pytest.mark.kernel
NODE_IPS = ["192.168.1.10"]


def ep_slice(name, endpoints, rv, ports=(("p", 8080, "TCP"),)):
    """endpoints: [(ip, node name, ready)]."""
    return {
        "metadata": {
            "namespace": "default",
            "name": name + "-x",
            "resourceVersion": rv,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": ready}, "nodeName": node} for ip, node, ready in endpoints
        ],
    }


def lb(name, ip, rv, **spec):
    s = svc(name, ip, rv=rv, type="LoadBalancer", **spec)
    s["spec"]["ports"][0]["nodePort"] = 30100 + int(ip.rsplit(".", 1)[1])
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "192.168.200.%d" % (240 + int(ip.rsplit(".", 1)[1]) % 14)}]}}
    return s


LOCAL, REMOTE = "n1", "n2"
TWO = [("10.244.1.2", LOCAL, True), ("10.244.2.2", REMOTE, True)]
THREE = TWO + [("10.244.2.3", REMOTE, True)]


def steps():
    """(what, {name: (service or None, slice or None)}): each step's changes."""
    np = svc("np", "10.96.0.11", rv="2", type="NodePort")
    np["spec"]["ports"][0]["nodePort"] = 30080
    two_ports = svc("multi", "10.96.0.16", rv="2")
    two_ports["spec"]["ports"] = [
        {"name": "p", "port": 80, "protocol": "TCP"},
        {"name": "dns", "port": 53, "protocol": "UDP"},
    ]
    return [
        ("a ClusterIP Service with endpoints", {"a": (svc("a", "10.96.0.10"), ep_slice("a", TWO, "1"))}),
        ("its endpoints scaled up", {"a": (svc("a", "10.96.0.10"), ep_slice("a", THREE, "2"))}),
        ("its endpoints gone: rejected", {"a": (svc("a", "10.96.0.10"), ep_slice("a", [], "3"))}),
        ("endpoints back", {"a": (svc("a", "10.96.0.10"), ep_slice("a", TWO, "5"))}),
        ("a NodePort Service", {"np": (np, ep_slice("np", TWO, "1"))}),
        ("the NodePort without endpoints", {"np": (np, ep_slice("np", [], "2"))}),
        (
            "a LoadBalancer with externalIPs and source ranges",
            {
                "lb": (
                    lb(
                        "lb", "10.96.0.12", "1", externalIPs=["192.168.50.5"], loadBalancerSourceRanges=["10.99.0.0/16"]
                    ),
                    ep_slice("lb", TWO, "1"),
                )
            },
        ),
        (
            "its ranges changed (the node's own address in one)",
            {
                "lb": (
                    lb("lb", "10.96.0.12", "2", loadBalancerSourceRanges=["10.99.0.0/20", "192.168.1.0/24"]),
                    ep_slice("lb", THREE, "2"),
                )
            },
        ),
        (
            "externalTrafficPolicy Local, local and remote endpoints",
            {"loc": (lb("loc", "10.96.0.13", "1", externalTrafficPolicy="Local"), ep_slice("loc", THREE, "1"))},
        ),
        (
            "...with no local endpoint (outside clients dropped)",
            {"loc": (lb("loc", "10.96.0.13", "2", externalTrafficPolicy="Local"), ep_slice("loc", THREE[1:], "2"))},
        ),
        (
            "both traffic policies Local (the all- chain for pods and the node)",
            {
                "both": (
                    lb("both", "10.96.0.18", "1", externalTrafficPolicy="Local", internalTrafficPolicy="Local"),
                    ep_slice("both", THREE, "1"),
                )
            },
        ),
        (
            "internalTrafficPolicy Local",
            {"itp": (svc("itp", "10.96.0.14", internalTrafficPolicy="Local"), ep_slice("itp", TWO, "1"))},
        ),
        (
            "...with no local endpoint (dropped, not rejected)",
            {"itp": (svc("itp", "10.96.0.14", internalTrafficPolicy="Local"), ep_slice("itp", TWO[1:], "2"))},
        ),
        (
            "session affinity",
            {"aff": (svc("aff", "10.96.0.15", sessionAffinity="ClientIP"), ep_slice("aff", TWO, "1"))},
        ),
        (
            "affinity endpoints changed (sets added and deleted)",
            {"aff": (svc("aff", "10.96.0.15", sessionAffinity="ClientIP"), ep_slice("aff", THREE[1:], "2"))},
        ),
        (
            "a UDP Service and one of two ports",
            {
                "udp": (svc("udp", "10.96.0.17", proto="UDP"), ep_slice("udp", TWO, "1", (("p", 5353, "UDP"),))),
                "multi": (two_ports, ep_slice("multi", TWO, "1", (("p", 8080, "TCP"), ("dns", 53, "UDP")))),
            },
        ),
        ("the affinity Service deleted", {"aff": (None, None)}),
        ("the LoadBalancer and the NodePort deleted", {"lb": (None, None), "np": (None, None)}),
    ]


def test_every_kind_of_service_change_through_netlink_equals_a_full_render(namespaces):
    fast, whole = namespaces.new("nl"), namespaces.new("whole")
    state = {}  # name -> (service, slice)
    p = Planner("n1")
    p.replan_all([], [])
    applied = p.plan(NODE_IPS)
    transport = nftnl.NetlinkTransport()
    fell_back = []  # scripts the fast path handed to nft (none expected)
    sh(fast, "nft", "-f", "-", input=full(applied))
    try:
        for what, changes in steps():
            for name, (s, sl) in changes.items():
                state[name] = (s, sl)
                p.update("default/" + name, s, [sl] if sl else [])
            plan = p.plan(NODE_IPS)
            script = diff(applied, plan, keys={"default/" + n for n in changes} | {""})
            assert script, what
            fell_back.clear()
            with netns.Netns(fast) as ns, netns.entered(ns):
                path = nftnl.apply(script, what, transport, fallback=lambda s, w: fell_back.append(s))
            assert (path, fell_back) == (nftnl.FAST, []), "%s went through nft:\n%s" % (what, script)
            applied = plan
            fresh = Planner("n1")
            live = [v for v in state.values() if v[0] is not None]
            fresh.replan_all([s for s, _ in live], [sl for _, sl in live])
            sh(whole, "nft", "-f", "-", input=full(fresh.plan(NODE_IPS)))
            got, want = _listing(fast), _listing(whole)
            assert got[0].keys() == want[0].keys(), what  # (a partial sync appends new chains: order aside)
            for chain in want[0]:
                assert got[0][chain] == want[0][chain], "%s: chain %s differs" % (what, chain)
            assert got[1] == want[1], what
    finally:
        transport.close()


def test_what_netlink_cannot_compile_goes_through_nft(namespaces):
    """A node address change rewrites the base chains (vmap, fib daddr,
    log): nftnl says Unsupported, nft writes the same script."""
    fast, whole = namespaces.new("nl"), namespaces.new("whole")
    p = Planner("n1")
    p.replan_all([svc("a", "10.96.0.10")], [ep_slice("a", TWO, "1")])
    before = p.plan([])
    sh(fast, "nft", "-f", "-", input=full(before))
    after = p.plan(NODE_IPS)
    transport = nftnl.NetlinkTransport()
    try:
        with netns.Netns(fast) as ns, netns.entered(ns):
            path = nftnl.apply(diff(before, after), "node address", transport)
    finally:
        transport.close()
    assert path == nftnl.UNSUPPORTED
    sh(whole, "nft", "-f", "-", input=full(after))
    assert _listing(fast) == _listing(whole)


class Refusing(nftnl.FakeTransport):
    """Refuses every batch, as the kernel would one it cannot take."""

    def send(self, messages):
        self.fail = errno.EINVAL
        super().send(messages)


def test_a_refused_batch_is_written_by_nft_and_the_next_sync_is_full(namespaces, tmp_path):
    from podnet.proxy.reconciler import SVC_PREFIX, ProxyReconciler

    node = namespaces.new("node")
    rec = ProxyReconciler("n1", None, "10.244.0.0/16", str(tmp_path))
    rec.transport = Refusing()
    a = svc("a", "10.96.0.10")
    rec.services = Informer({SVC_PREFIX + "default/a": a})
    rec.slices = Informer({"/registry/endpointslices/default/a-x": ep_slice("a", TWO, "1")})
    rec.nodes = _nodes()
    key = "/registry/endpointslices/default/a-x"
    rec._slice_changed(key, None, rec.slices.objects[key])

    def sync():
        with netns.Netns(node) as ns, netns.entered(ns):
            rec.sync()

    sync()
    assert rec.syncs == {"full": 1, "partial": 0}
    new = ep_slice("a", THREE, "2")
    old, rec.slices.objects = rec.slices.objects, {key: new}
    rec._slice_changed(key, old[key], new)
    sync()
    assert rec.syncs == {"full": 1, "partial": 1}
    assert rec.full_next
    assert "10.244.2.3:8080" in sh(node, "nft", "list", "table", "ip", "podnet-proxy").stdout  # nft wrote it
    sync()
    assert rec.syncs == {"full": 2, "partial": 1} and not rec.full_next


def test_the_kernel_refuses_a_batch_whole_and_names_the_line(namespaces):
    node = namespaces.new("node")
    sh(node, "nft", "-f", "-", input="add table ip podnet-proxy\nadd chain ip podnet-proxy c\n")
    transport = nftnl.NetlinkTransport()
    try:
        with netns.Netns(node) as ns, netns.entered(ns):
            bad = nftnl.compile_script(
                "add chain ip podnet-proxy fresh\nadd rule ip podnet-proxy c drop\n"
                "add rule ip podnet-proxy missing drop\nadd rule ip podnet-proxy c accept\n"
            )
            with pytest.raises(nftnl.BatchError) as refused:
                transport.send(bad)
            assert refused.value.errno == errno.ENOENT
            assert refused.value.line == "add rule ip podnet-proxy missing drop"
            listing = sh(node, "nft", "list", "table", "ip", "podnet-proxy").stdout
            assert "fresh" not in listing and "drop" not in listing  # nothing of it was applied
            # the same socket carries on (the refused batch's late replies are not taken for this one's)
            transport.send(nftnl.compile_script("add rule ip podnet-proxy c drop\n"))
        assert "drop" in sh(node, "nft", "list", "chain", "ip", "podnet-proxy", "c").stdout
    finally:
        transport.close()


class Broken(Informer):
    def get(self, key):
        raise RuntimeError("an informer's bug")


def test_a_sync_that_fails_before_its_apply_makes_the_next_one_full(namespaces, tmp_path):
    """The changed keys of a failed pass are gone; only a full pass is sure
    to write what the planner already took from them."""
    from podnet.proxy.reconciler import SVC_PREFIX, ProxyReconciler

    node = namespaces.new("node")
    rec = ProxyReconciler("n1", None, "10.244.0.0/16", str(tmp_path))
    rec.services = Informer({SVC_PREFIX + "default/a": svc("a", "10.96.0.10")})
    rec.slices = Informer({"/registry/endpointslices/default/a-x": ep_slice("a", TWO, "1")})
    rec.nodes = _nodes()

    def sync():
        with netns.Netns(node) as ns, netns.entered(ns):
            rec.sync()

    sync()
    rec._service_changed(SVC_PREFIX + "default/a", None, None)
    good, rec.services = rec.services, Broken(rec.services.objects)
    with pytest.raises(RuntimeError):
        sync()
    assert rec.full_next
    rec.services = good
    sync()
    assert rec.syncs["full"] == 2 and not rec.full_next
