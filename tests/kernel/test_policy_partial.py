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
