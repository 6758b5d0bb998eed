"""The policy table written change by change equals the table written whole.

Random sequences of changes (tests/unit/test_policy_incremental.py's
generator) go through the per-change planner; each step's nftscript.diff
transaction is applied to one scratch namespace, and a full render of the
same state to another; the two listings (nft's JSON: chains rule by rule in
order, set and map elements, the plan's name) must be equal after every
step."""

import random

import pytest

from podnet.cli.rules import parse_table
from podnet.kernel import nft
from podnet.kernel.netns import Netns
from podnet.policy import nftscript
from podnet.policy.incremental import Incremental
from tests.unit.test_policy_incremental import NODE, NODE_IPS, step

pytestmark = pytest.mark.kernel


def listing(ns):
    items = nft.list_table(nftscript.FAMILY, nftscript.TABLE, ns=ns, stateless=True)
    chains, elements = parse_table(items)
    return chains, {n: sorted(e) for n, e in elements.items()}, nftscript.plan_in_table(items)


@pytest.mark.parametrize("seed", [3, 7])
def test_partial_transactions_leave_the_table_a_full_apply_writes(namespaces, seed):
    rng = random.Random(seed)
    with Netns(namespaces.path(namespaces.new("part"))) as part, Netns(namespaces.path(namespaces.new("full"))) as full:
        world = ({}, {}, {})
        inc = Incremental(NODE)
        inc.set_node_ips(NODE_IPS)
        for _ in range(15):
            step(rng, world, inc)
        applied = inc.plan()
        script, hashes = nftscript.render_full(applied)
        nft.apply(script, ns=part)
        partial = 0
        for i in range(25):
            for _ in range(rng.choice([1, 1, 2])):
                step(rng, world, inc)
            p = inc.plan()
            script, hashes = nftscript.diff(applied, p, hashes)
            whole = nftscript.render(p)
            if script is None:
                script = whole
            partial += script != whole
            if script:
                nft.apply(script, ns=part, what="step %d" % i)
            nft.apply(whole, ns=full, what="step %d whole" % i)
            got, want = listing(part), listing(full)
            assert got == want, "seed %d step %d:\n%s" % (seed, i, script)
            assert got[2] == nftscript.applied_plan(whole)
            applied = p
        assert partial > 15


class Objects:
    """The informers' copies as the reconciler reads them (list, find,
    watch_dirty's callbacks); put() delivers a change as a watch event does."""

    def __init__(self, objs):
        self.items = {kind: {} for kind in ("Pod", "Namespace", "NetworkPolicy", "Node")}
        self.handlers = {kind: [] for kind in self.items}
        for o in objs:
            self.items[o["kind"]][self.key(o)] = o

    @staticmethod
    def key(o):
        return "%s/%s" % (o["metadata"].get("namespace") or "", o["metadata"]["name"])

    def watch_dirty(self, kind, dirty, on_change=None):
        self.handlers[kind].append(on_change)

    def list(self, kind):
        return [self.items[kind][k] for k in sorted(self.items[kind])]

    def find(self, kind, ns, name):
        return self.items[kind].get("%s/%s" % (ns or "", name))

    def put(self, obj, delete=False):
        kind, key = obj["kind"], self.key(obj)
        old = self.items[kind].pop(key, None)
        if not delete:
            self.items[kind][key] = obj
        for h in self.handlers[kind]:
            h(key, old, None if delete else obj)


def test_the_reconciler_syncs_per_change_and_in_full_after_a_failure(namespaces):
    from podnet.policy.planner import plan
    from podnet.policy.reconciler import PolicyReconciler
    from tests.unit.test_policy_planner import np, pod

    node = {"kind": "Node", "metadata": {"name": NODE}, "spec": {"podCIDR": "10.244.0.0/24"}}
    pods = [pod("x", n, "10.244.0.%d" % (10 + i), node=NODE, ports=[("http", 80, "TCP")]) for i, n in enumerate("abc")]
    pol = np(
        "x",
        "a-from-b",
        {"matchLabels": {"pod": "a"}},
        ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
    )
    objects = Objects([node, *pods, pol])
    with Netns(namespaces.path(namespaces.new("rnode"))) as ns, Netns(namespaces.path(namespaces.new("rfull"))) as ref:

        def same_as_full():
            want = plan(
                objects.list("NetworkPolicy"), objects.list("Pod"), objects.list("Namespace"), NODE, ["10.244.0.1"]
            )
            nft.apply(nftscript.render(want), ns=ref)
            return listing(ns) == listing(ref)

        r = PolicyReconciler(NODE, objects, "10.244.0.0/16", ns=ns)
        try:
            _reconcile(r, objects, pods, same_as_full)
        finally:
            r.close()  # the kept nf_tables context would keep the namespace alive


def _reconcile(r, objects, pods, same_as_full):
    from tests.unit.test_policy_planner import np, pod

    r.sync()
    assert r.syncs == {"full": 1, "partial": 0} and same_as_full()
    # a policy change, a pod relabelled, a new pod: each a partial sync
    pol2 = np(
        "x",
        "a-from-b",
        {"matchLabels": {"pod": "a"}},
        ingress=[{"from": [{"podSelector": {}}], "ports": [{"port": "http"}]}],
    )
    objects.put(pol2)
    r.sync()
    assert r.syncs == {"full": 1, "partial": 1} and same_as_full()
    c = dict(pods[2], metadata=dict(pods[2]["metadata"], labels={"pod": "a"}))
    objects.put(c)
    r.sync()
    objects.put(pod("x", "d", "10.244.0.20", node=NODE, labels={"pod": "a"}, ports=[("http", 8080, "TCP")]))
    r.sync()
    assert r.syncs == {"full": 1, "partial": 3} and same_as_full()
    r.sync()
    assert r.syncs == {"full": 1, "partial": 3}  # nothing changed: nothing written
    # the table deleted by hand: the next partial transaction fails, the pass after it is full
    nft.delete_table(nftscript.FAMILY, nftscript.TABLE, ns=r.ns)
    objects.put(pods[1], delete=True)
    with pytest.raises(nft.NftError):
        r.sync()
    assert r.applied is None
    r.sync()
    assert r.syncs == {"full": 2, "partial": 3} and same_as_full()
    # the periodic check: the listing is what the full sync left, nothing to write
    r.last_check = 0
    applies = r.applies
    r.sync()
    assert r.applies == applies and same_as_full()
