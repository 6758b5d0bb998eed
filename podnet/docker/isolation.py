"""Isolation between a node's bridge networks: table `inet podnet-docker`.

Docker keeps its bridge networks apart with DOCKER-ISOLATION-STAGE-1/2
(iptables): a packet routed from one bridge into another is dropped. Ours
is the same rule, one per bridge, in the node's netns:

    table inet podnet-docker {
      set bridges { type ifname; elements = { "docker0", "pnd-red", ... } }
      chain forward { type filter hook forward priority filter; policy accept;
        iifname "pnd-red" oifname @bridges oifname != "pnd-red" drop
        ...
      }
    }

Traffic within one bridge (iif = oif = that bridge, seen here through
br_netfilter) and traffic to or from anything else (the node, the underlay,
NAT'd replies) is untouched. Dropped, as Docker does, so a connection attempt
across networks times out rather than being refused.

script() is pure; apply() rewrites the whole table in one `nft -f`
transaction (add, delete, add: works whether or not it existed), and deletes
it when no user-defined network is left.
"""

from podnet.kernel import nft
from podnet.kernel.netns import Netns

TABLE = "podnet-docker"
T = "inet " + TABLE


def script(bridges):
    """bridges: every bridge network of the node (docker0 included)."""
    bridges = sorted(set(bridges))
    lines = ["add table %s" % T, "delete table %s" % T]
    if len(bridges) < 2:
        return "\n".join(lines) + "\n"
    elems = ", ".join(nft.quote(b) for b in bridges)
    lines += [
        "add table %s" % T,
        "add set %s bridges { type ifname; elements = { %s }; }" % (T, elems),
        "add chain %s forward { type filter hook forward priority filter; policy accept; }" % T,
    ]
    for b in bridges:
        lines.append(
            "add rule %s forward iifname %s oifname @bridges oifname != %s drop" % (T, nft.quote(b), nft.quote(b))
        )
    return "\n".join(lines) + "\n"


def apply(node_netns_path, bridges):
    with Netns(node_netns_path) as ns:
        nft.apply(script(bridges), ns=ns, what="isolation of bridge networks (table %s)" % T)
