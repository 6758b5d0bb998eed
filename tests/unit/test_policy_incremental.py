"""Pure: the per-change policy planner (podnet.policy.incremental) and the
partial transactions (nftscript.diff) against a full plan from scratch.

Random sequences of changes (pods added, relabelled, moved to another IP or
node, deleted; namespaces relabelled, added, deleted; policies added,
changed, deleted); after every step the incremental plan must equal
planner.plan() over the same objects, and a model of the table (the kernel's
rules that matter here: a chain keeps its first comment, nothing in use can
be deleted, references must exist) that got the full script once and then
only the diff scripts must equal the model of a full script of the new plan."""

import copy
import random
import re

import pytest

from podnet.policy import nftscript
from podnet.policy.incremental import Incremental
from podnet.policy.planner import plan as full_plan
from tests.unit.test_policy_planner import np, pod

NODE = "n1"
NODE_IPS = ["192.168.200.11", "10.244.0.1"]
NSS = ["a", "b", "c"]
LABELS = {"app": ["web", "db", "cache"], "tier": ["front", "back"]}
PORTS = [("http", 80, "TCP"), ("dns", 53, "UDP"), ("alt", 8080, "TCP")]


class Model:
    """The table as the kernel keeps it, from our scripts' lines."""

    def __init__(self):
        self.chains, self.sets = {}, {}

    def apply(self, script):
        chains, sets = copy.deepcopy(self.chains), copy.deepcopy(self.sets)
        for line in script.splitlines():
            self._line(chains, sets, line)
        self.chains, self.sets = chains, sets  # one transaction: all or nothing

    @staticmethod
    def _refs(chains, sets):
        jumps = {m for c in chains.values() for r in c["rules"] for m in re.findall(r"(?:jump|goto) (\S+)", r)}
        jumps |= {v.split("goto ")[1] for s in sets.values() for v in s["elements"].values() if v}
        used = {m for c in chains.values() for r in c["rules"] for m in re.findall(r"@(\S+)", r)}
        return jumps, used

    def _line(self, chains, sets, line):
        words = line.split(" ")
        op, kind = words[0], words[1]
        if kind == "table":
            if op == "delete":
                chains.clear()
                sets.clear()
            return
        name = words[4]
        if (op, kind) == ("add", "chain"):
            chains.setdefault(name, {"decl": line, "rules": []})  # an existing chain keeps its comment
        elif (op, kind) == ("flush", "chain"):
            chains[name]["rules"] = []
        elif (op, kind) == ("delete", "chain"):
            assert not chains[name]["rules"] and name not in self._refs(chains, sets)[0], line
            del chains[name]
        elif (op, kind) == ("add", "rule"):
            rule = " ".join(words[5:])
            for ref in re.findall(r"(?:jump|goto) (\S+)", rule):
                assert ref in chains, line
            for ref in re.findall(r"@(\S+)", rule):
                assert ref in sets, line
            chains[name]["rules"].append(rule)
        elif op == "add" and kind in ("set", "map"):
            sets.setdefault(name, {"decl": line, "elements": {}})
        elif (op, kind) == ("delete", "set"):
            assert name not in self._refs(chains, sets)[1], line
            del sets[name]
        elif (op, kind) == ("flush", "set"):
            sets[name]["elements"] = {}
        elif kind == "element":
            els = sets[name]["elements"]
            for e in line.split("{ ", 1)[1].rsplit(" }", 1)[0].split(", "):
                key, _, value = e.partition(" : ")
                if op == "delete":
                    del els[key]  # KeyError: the kernel's ENOENT
                else:
                    assert els.get(key, value) == value, "%s: %s has another value" % (line, key)
                    if value:
                        assert value.split("goto ")[1] in chains, line
                    els[key] = value
        else:
            raise AssertionError("model does not know: " + line)


def random_pod(rng, ns, name):
    labels = {k: rng.choice(v) for k, v in LABELS.items() if rng.random() < 0.8}
    ports = rng.sample(PORTS, rng.randint(0, 2))
    ip = "10.244.%d.%d" % (rng.randint(0, 1), rng.randint(2, 12))  # few IPs: some get reused
    p = pod(ns, name, ip, node=rng.choice([NODE, NODE, "n2"]), labels=labels, ports=ports)
    if rng.random() < 0.1:
        p["metadata"]["deletionTimestamp"] = "2024-01-02T00:00:00Z"
    return p


def selector(rng):
    r = rng.random()
    if r < 0.2:
        return {}
    key = rng.choice(list(LABELS))
    if r < 0.7:
        return {"matchLabels": {key: rng.choice(LABELS[key])}}
    op = rng.choice(["In", "NotIn", "Exists", "DoesNotExist"])
    expr = {"key": key, "operator": op}
    if op in ("In", "NotIn"):
        expr["values"] = rng.sample(LABELS[key], 2)
    return {"matchExpressions": [expr]}


def peer(rng):
    r = rng.random()
    if r < 0.35:
        return {"podSelector": selector(rng)}
    if r < 0.7:
        out = {"namespaceSelector": rng.choice([{}, {"matchLabels": {"team": rng.choice("xy")}}])}
        if rng.random() < 0.7:
            out["podSelector"] = selector(rng)
        return out
    block = {"cidr": rng.choice(["10.244.0.0/24", "10.244.0.0/16", "10.244.1.8/29", "172.16.0.0/12"])}
    if rng.random() < 0.5:
        block["except"] = [rng.choice(["10.244.0.4/30", "10.244.1.10/32"])]
    return {"ipBlock": block}


def rules(rng):
    out = []
    for _ in range(rng.randint(0, 2)):
        rule = {}
        if rng.random() < 0.7:
            rule["peers"] = [peer(rng) for _ in range(rng.randint(1, 2))]
        if rng.random() < 0.7:
            rule["ports"] = rng.sample(
                [{"port": 80}, {"port": 8000, "endPort": 8100}, {"port": "http"}, {"port": "dns", "protocol": "UDP"}],
                rng.randint(1, 2),
            )
        out.append(rule)
    return out


def random_policy(rng, ns, name):
    ing = [dict({"from": r.pop("peers")} if "peers" in r else {}, **r) for r in rules(rng)]
    eg = [dict({"to": r.pop("peers")} if "peers" in r else {}, **r) for r in rules(rng)]
    types = rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"], None])
    spec = {"ingress": ing, "egress": eg}
    if types:
        spec["policyTypes"] = types
    return np(ns, name, selector(rng), **spec)


def namespace(rng, name):
    labels = {"team": rng.choice("xyz")} if rng.random() < 0.8 else {}
    return {"kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def step(rng, world, inc):
    """One random change, to the world and to the incremental planner."""
    pods, nss, pols = world
    r = rng.random()
    if r < 0.45:
        key = "%s/p%d" % (rng.choice(NSS), rng.randint(0, 7))
        if key in pods and rng.random() < 0.3:
            del pods[key]
            inc.pod(key, None)
        elif key in pods and rng.random() < 0.6:  # relabel only
            p = copy.deepcopy(pods[key])
            p["metadata"]["labels"] = random_pod(rng, "x", "y")["metadata"]["labels"]
            pods[key] = p
            inc.pod(key, p)
        else:
            pods[key] = random_pod(rng, *key.split("/"))
            inc.pod(key, pods[key])
    elif r < 0.6:
        name = rng.choice(NSS)
        if name in nss and rng.random() < 0.3:
            del nss[name]
            inc.namespace(name, None)
        else:
            nss[name] = namespace(rng, name)
            inc.namespace(name, nss[name])
    else:
        key = "%s/np%d" % (rng.choice(NSS), rng.randint(0, 9))
        if key in pols and rng.random() < 0.3:
            del pols[key]
            inc.policy(key, None)
        else:
            pols[key] = random_policy(rng, *key.split("/"))
            inc.policy(key, pols[key])


@pytest.mark.parametrize("seed", range(12))
def test_the_incremental_plan_and_the_partial_scripts_equal_a_full_plan(seed):
    rng = random.Random(seed)
    world = ({}, {}, {})
    inc = Incremental(NODE)
    inc.set_node_ips(NODE_IPS)
    for _ in range(15):  # a start: a full sync
        step(rng, world, inc)
    applied = inc.plan()
    script, hashes = nftscript.render_full(applied)
    table = Model()
    table.apply(script)
    partial = 0
    for i in range(120):
        for _ in range(rng.choice([1, 1, 1, 2, 3])):  # sometimes several changes before a sync
            step(rng, world, inc)
        pods, nss, pols = (list(d.values()) for d in world)
        want = full_plan(pols, pods, nss, NODE, NODE_IPS)
        got = inc.plan()
        assert got == want, "seed %d step %d" % (seed, i)
        assert list(got.chains) == list(want.chains) and list(got.sets) == list(want.sets)
        script, hashes = nftscript.diff(applied, got, hashes)
        full, full_hashes = nftscript.render_full(want)
        assert hashes == full_hashes
        if script is None:
            table = Model()
            table.apply(full)
        else:
            partial += bool(script)
            table.apply(script)
            if script:
                assert nftscript.applied_plan(script) == nftscript.applied_plan(full)
        fresh = Model()
        fresh.apply(full)
        assert table.chains == fresh.chains, "seed %d step %d" % (seed, i)
        assert table.sets == fresh.sets, "seed %d step %d" % (seed, i)
        applied = got
    assert partial > 50  # the sequences really went through diffs


def test_a_label_change_replans_only_the_policies_it_touches():
    pods = {"a/p%d" % i: pod("a", "p%d" % i, "10.244.0.%d" % (10 + i), labels={"app": "web"}) for i in range(5)}
    pods["a/c"] = pod("a", "c", "10.244.0.20", labels={"app": "cache"})
    pols = {
        "a/np%d" % i: np("a", "np%d" % i, {"matchLabels": {"app": "cache"}}, ingress=[{"from": [{"podSelector": {}}]}])
        for i in range(50)
    }
    pols["a/web"] = np("a", "web", {"matchLabels": {"app": "web"}}, ingress=[{"ports": [{"port": 80}]}])
    inc = Incremental(NODE)
    for k, p in pods.items():
        inc.pod(k, p)
    for k, p in pols.items():
        inc.policy(k, p)
    before = inc.plan()
    calls = []
    real = inc._replan
    inc._replan = lambda cluster, key: calls.append(key) or real(cluster, key)
    pods["a/p3"] = copy.deepcopy(pods["a/p3"])
    pods["a/p3"]["metadata"]["labels"] = {"app": "db"}
    inc.pod("a/p3", pods["a/p3"])
    after = inc.plan()
    assert after == full_plan(list(pols.values()), list(pods.values()), [], NODE)
    # web selected it: re-planned. The 50 others' peer (every pod of a) keeps
    # its shape, a set: they are not, and their chains are the same objects
    assert calls == ["a/web"]
    assert all(after.chains[n] is c for n, c in before.chains.items() if n.startswith("policy-") and "a/np" in n)
    script, _ = nftscript.diff(before, after, nftscript.render_full(before)[1])
    assert "policy-in" not in script and "ingress-" in script  # p3's chain goes, its map element too


def test_a_new_pod_changes_named_port_sets_without_replanning_their_policies():
    pods = {"a/p%d" % i: pod("a", "p%d" % i, "10.244.0.%d" % (10 + i), ports=[("dns", 53, "UDP")]) for i in range(3)}
    dns = [{"ports": [{"port": "dns", "protocol": "UDP"}]}]  # no `to`: the port on every pod
    pols = {
        "a/np%d" % i: np("a", "np%d" % i, {"matchLabels": {"pod": "p0"}}, policyTypes=["Egress"], egress=dns)
        for i in range(20)
    }
    inc = Incremental(NODE)
    for k, p in list(pods.items()) + list(pols.items()):
        (inc.pod if k.split("/")[1].startswith("p") else inc.policy)(k, p)
    before = inc.plan()
    calls = []
    real = inc._replan
    inc._replan = lambda cluster, key: calls.append(key) or real(cluster, key)
    pods["b/new"] = pod("b", "new", "10.244.0.50", node="n2", ports=[("dns", 53, "UDP")])
    inc.pod("b/new", pods["b/new"])
    after = inc.plan()
    assert after == full_plan(list(pols.values()), list(pods.values()), [], NODE)
    assert calls == []  # the 20 policies' rules name the same set; only its elements change
    script, _ = nftscript.diff(before, after, nftscript.render_full(before)[1])
    assert "add rule" not in script and "add element inet podnet-policy named-" in script


def test_a_pod_moving_between_selections_changes_set_elements_not_rules():
    """The bench's pod label change in small: a/p1, the only pod of app=one,
    moves to app=two, beside a/p2. The peer "app=one" becomes empty and the
    named port of the selection "app=two" gains a second pod: both are named
    sets whatever their size, so the chains of the policies that keep
    selecting pods stay as they are; only elements change."""
    web = [("http", 8080, "TCP")]
    pods = {
        "a/p0": pod("a", "p0", "10.244.0.10", labels={"app": "zero"}, ports=web),
        "a/p1": pod("a", "p1", "10.244.0.11", labels={"app": "one"}, ports=web),
        "a/p2": pod("a", "p2", "10.244.0.12", labels={"app": "two"}, ports=web),
    }
    pols = {
        "a/zero": np(
            "a",
            "zero",
            {"matchLabels": {"app": "zero"}},
            ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "one"}}}]}],
        ),
        "a/two": np("a", "two", {"matchLabels": {"app": "two"}}, ingress=[{"ports": [{"port": "http"}]}]),
    }
    inc = Incremental(NODE)
    for k, p in list(pods.items()) + list(pols.items()):
        (inc.pod if k.split("/")[1].startswith("p") else inc.policy)(k, p)
    before = inc.plan()
    old_hashes = nftscript.render_full(before)[1]
    pods["a/p1"] = pod("a", "p1", "10.244.0.11", labels={"app": "two"}, ports=web)
    inc.pod("a/p1", pods["a/p1"])
    after = inc.plan()
    want = full_plan(list(pols.values()), list(pods.values()), [], NODE)
    assert after == want
    assert all(after.chains[n] is c for n, c in before.chains.items() if n.startswith("policy-"))
    # the empty peer still has its rule (matching nothing), as in a full plan
    (rule,) = after.chains[next(n for n in after.chains if "a/zero" in n)].rules
    assert after.sets[rule.saddr].elements == ()
    script, _ = nftscript.diff(before, after, old_hashes)
    assert not re.search(r"add rule inet podnet-policy policy-|flush chain inet podnet-policy policy-", script)
    assert "delete element inet podnet-policy peers-" in script
    assert re.search(r"add element inet podnet-policy named-\S+ \{ 10.244.0.11 . 8080 \}", script)
