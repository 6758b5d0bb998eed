"""Fragments -> `nft -f` scripts for the `ip podnet-proxy` table. Pure.

full():  the whole table in one transaction (add, delete, add: replaces
         whatever is there, including drift and rules left by a crash).
diff():  only what changed between two plans: new chains and sets first,
         changed chains flushed and refilled, map elements deleted and added,
         then chains and sets nobody uses any more deleted, all in one
         transaction. None when the change cannot be expressed as a
         difference (a set whose declaration changed), so the caller does a
         full sync instead.
Output is sorted, so equal inputs give equal scripts. The agent sends a
diff() script as one netlink batch (podnet/kernel/nftnl.py compiles it line
by line); a line that compiler does not know sends the script to `nft -f`.
"""

from collections.abc import Mapping

from podnet.proxy.planner import BASE_CHAINS, FIXED_SETS, MAPS, Fragment


def _merge(frags):
    chains, sets, elements = {}, {}, {}
    for f in frags.values():
        chains.update(f.chains)
        sets.update(f.sets)
        for name, els in f.elements.items():
            elements.setdefault(name, {}).update(els)
    return chains, sets, elements


def _element(T, name, key, value):
    return "%s element %s %s { %s%s }" % ("%s", T, name, key, "" if value is None else " : " + value)


def full(frags: Mapping[str, Fragment], table: str = "podnet-proxy") -> str:
    T = "ip " + table
    chains, sets, elements = _merge(frags)
    out = ["add table %s" % T, "delete table %s" % T, "add table %s" % T]
    for name in BASE_CHAINS:
        out.append("add chain %s %s { %s }" % (T, name, BASE_CHAINS[name]))
    regular = sorted(n for n in chains if n not in BASE_CHAINS)
    out += ["add chain %s %s" % (T, n) for n in regular]
    out += ["add set %s %s { %s }" % (T, n, d) for n, d in sorted(FIXED_SETS.items())]
    out += ["add set %s %s { %s }" % (T, n, sets[n]) for n in sorted(sets)]
    out += ["add map %s %s { %s }" % (T, n, d) for n, d in sorted(MAPS.items())]
    for name in sorted(elements):
        els = elements[name]
        out += [_element(T, name, k, els[k]) % "add" for k in sorted(els)]
    for name in list(BASE_CHAINS) + regular:
        out += ["add rule %s %s %s" % (T, name, r) for r in chains.get(name, ())]
    return "\n".join(out) + "\n"


def diff(old, new, table="podnet-proxy", keys=None):
    """Script taking the table from plan `old` to plan `new` (both
    {key: Fragment}); "" when nothing changed; None when a full sync is needed.
    `keys`: the only fragments that may differ, when the caller knows them
    (comparing 10,000 fragments to find one costs ~10 ms, more than the rest
    of a one-Service change)."""
    T = "ip " + table
    candidates = set(old) | set(new) if keys is None else keys
    touched = [k for k in candidates if old.get(k) is not new.get(k)]
    if not touched:
        return ""
    o_chains, o_sets, o_elements = _merge({k: old[k] for k in touched if k in old})
    n_chains, n_sets, n_elements = _merge({k: new[k] for k in touched if k in new})
    for name in set(o_sets) & set(n_sets):
        if o_sets[name] != n_sets[name]:
            return None  # nft cannot change a set's declaration in place
    if any(n in BASE_CHAINS for n in set(o_chains) ^ set(n_chains)):
        return None

    head, body, tail = [], [], []
    for name in sorted(set(n_chains) - set(o_chains)):
        head.append("add chain %s %s" % (T, name))
        body += ["add rule %s %s %s" % (T, name, r) for r in n_chains[name]]
    for name in sorted(set(n_sets) - set(o_sets)):
        head.append("add set %s %s { %s }" % (T, name, n_sets[name]))
    for name in sorted(set(n_chains) & set(o_chains)):
        if n_chains[name] != o_chains[name]:
            body.append("flush chain %s %s" % (T, name))
            body += ["add rule %s %s %s" % (T, name, r) for r in n_chains[name]]
    for name in sorted(set(o_elements) | set(n_elements)):
        o_els, n_els = o_elements.get(name, {}), n_elements.get(name, {})
        for k in sorted(o_els):
            if k not in n_els or n_els[k] != o_els[k]:
                body.append(_element(T, name, k, None) % "delete")
        for k in sorted(n_els):
            if k not in o_els or n_els[k] != o_els[k]:
                body.append(_element(T, name, k, n_els[k]) % "add")
    # chains go after every reference to them is gone (rules flushed, elements deleted)
    for name in sorted(set(o_chains) - set(n_chains)):
        tail.append("flush chain %s %s" % (T, name))
    for name in sorted(set(o_chains) - set(n_chains)):
        tail.append("delete chain %s %s" % (T, name))
    for name in sorted(set(o_sets) - set(n_sets)):
        tail.append("delete set %s %s" % (T, name))
    out = head + body + tail
    return "\n".join(out) + "\n" if out else ""


def counts(frags):
    """(rules, chains, map/set elements, endpoints) of a plan, for metrics."""
    chains, _, elements = _merge(frags)
    return (
        sum(len(r) for r in chains.values()),
        len(chains),
        sum(len(e) for e in elements.values()),
        sum(f.endpoints for f in frags.values()),
    )
