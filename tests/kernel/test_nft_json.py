"""nft's JSON read back (podnet.kernel.nft.list_table): `podnet rules` shows
every rule of the proxy's and the policy's tables exactly as nft's own text
listing does, and the policy agent finds the plan a table holds, without
parsing nft's text."""

import json

from podnet.cli.rules import parse_table
from podnet.kernel import nft
from podnet.kernel.netns import Netns
from podnet.policy import nftscript
from podnet.policy.planner import plan as policy_plan
from podnet.proxy.planner import Planner
from podnet.proxy.render import full
from tests.conftest import sh
from tests.unit.test_policy_planner import np, pod
from tests.unit.test_proxy_render import eps, svc, world


def proxy_script():
    services, slices = world(3)
    services.append(svc("np", "10.96.9.9", type="NodePort", sessionAffinity="ClientIP"))
    services[-1]["spec"]["ports"][0]["nodePort"] = 30080
    services.append(svc("noep", "10.96.9.10"))
    services.append(svc("lb", "10.96.9.11", type="LoadBalancer", loadBalancerSourceRanges=["10.99.0.0/16"]))
    services[-1]["spec"]["ports"][0]["nodePort"] = 30081
    services[-1]["status"] = {"loadBalancer": {"ingress": [{"ip": "192.168.200.240"}]}}
    slices += [eps("np", ["10.244.1.77"]), eps("lb", ["10.244.1.78"])]
    p = Planner("n1")
    p.replan_all(services, slices)
    return full(p.plan(["192.168.200.11"]))


def policy_script():
    pods = [pod("x", "a", "10.0.0.1"), pod("x", "b", "10.0.0.2")]
    pols = [
        np(
            "x",
            "web",
            {"matchLabels": {"pod": "a"}},
            ingress=[{"from": [{"podSelector": {}}], "ports": [{"port": 80}]}],
        ),
        np("x", "blk", {"matchLabels": {"pod": "a"}}, ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]),
    ]
    return nftscript.render(policy_plan(pols, pods, [], "n1", ["192.168.200.11"]))


def test_rules_from_json_read_as_nft_lists_them(namespaces):
    node = namespaces.new("node")
    with Netns(namespaces.path(node)) as ns:
        nft.apply(proxy_script(), ns=ns)
        nft.apply(policy_script(), ns=ns)
        for family, table in (("ip", "podnet-proxy"), ("inet", "podnet-policy")):
            chains, elements = parse_table(nft.list_table(family, table, ns=ns))
            text = {line.strip() for line in sh(node, "nft", "list", "table", family, table).stdout.splitlines()}
            rules = [r for rs in chains.values() for r in rs]
            assert rules and [r for r in rules if r not in text] == [], (family, table)
            for name, elems in elements.items():
                for e in elems:
                    assert e in " ".join(text), (name, e)
        assert nft.list_table("ip", "podnet-nothing", ns=ns) is None


def test_the_plan_a_policy_table_holds_is_read_from_json(namespaces):
    node = namespaces.new("node")
    script = policy_script()
    with Netns(namespaces.path(node)) as ns:
        assert nftscript.plan_in_table(nft.list_table("inet", "podnet-policy", ns=ns)) is None
        nft.apply(script, ns=ns)
        items = nft.list_table("inet", "podnet-policy", ns=ns, stateless=True)
        assert nftscript.plan_in_table(items) == nftscript.applied_plan(script) is not None
        assert json.dumps(items) == json.dumps(nft.list_table("inet", "podnet-policy", ns=ns, stateless=True))
