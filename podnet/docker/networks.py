"""Networks of a node: the default `bridge` (docker0) and user-defined ones.

`bridge` exists on every node as soon as a container asks for it: its
conflist is written then, and the podnet plugin creates docker0 on the
first ADD. A user-defined network is made whole by `create`:

  1. the record (name, node, subnet, bridge),
  2. the bridge with its gateway address (the same stable MAC the podnet
     plugin would give it), so `ip link` shows it at once and the DNS can bind,
  3. its conflist (podnet + podnet-portmap, ipMasq, the node agent's CNI
     daemon socket for speed),
  4. its embedded DNS server (dns.py), a process in the node's netns,
  5. the isolation table rewritten with the new bridge.

A failure undoes the steps already done, so nothing is half-created. `rm`
refuses while containers use the network, then undoes all five.
"""

import json
import os
import shutil
import subprocess
import sys

from podnet.docker import isolation, proc, spec
from podnet.docker.spec import DockerError
from podnet.kernel import netns, nft
from podnet.lab import topology as topo


def node_netns(lab, node):
    doc = topo.load(lab)
    if node not in [n["name"] for n in doc["nodes"]]:
        raise DockerError("no node %r in lab %s (nodes: %s)" % (node, lab, ", ".join(n["name"] for n in doc["nodes"])))
    return netns.path_of(topo.ns_name(lab, node))


def daemon_socket(lab, node):
    return os.path.join(topo.state_dir(lab), "nodes", node, "cni.sock")


def default_network(store, node):
    return {
        "name": spec.DEFAULT_NETWORK,
        "node": node,
        "bridge": spec.DEFAULT_BRIDGE,
        "subnet": spec.DEFAULT_SUBNET,
        "gateway": str(spec.gateway(spec.DEFAULT_SUBNET)),
        "dns": False,
    }


def taken_subnets(store, node):
    out = {spec.DEFAULT_NETWORK: spec.DEFAULT_SUBNET}
    out.update({n["name"]: n["subnet"] for n in store.networks(node)})
    return out


def find(store, node, name):
    """The network `name` on `node` (the default bridge included) or a DockerError."""
    if name == spec.DEFAULT_NETWORK:
        return default_network(store, node)
    net = store.network(node, name)
    if net is None:
        raise DockerError("network %s not found on %s (podnet network create %s --node %s)" % (name, node, name, node))
    return net


def write_conflist(store, lab, net):
    conf = spec.conflist(
        net["name"], net["bridge"], net["subnet"], store.ipam_dir(net["node"]), daemon_socket(lab, net["node"])
    )
    d = store.conf_dir(net["node"])
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, net["name"] + ".conflist")
    with open(path + ".tmp", "w") as f:
        json.dump(conf, f, indent=1)
    os.replace(path + ".tmp", path)
    return path


def apply_isolation(store, lab, node):
    bridges = [spec.DEFAULT_BRIDGE] + [n["bridge"] for n in store.networks(node)]
    isolation.apply(node_netns(lab, node), bridges)


def _bridge_up(node_path, bridge, subnet):
    import ipaddress

    from podnet.cni.bridge import stable_mac
    from podnet.kernel import rtnl

    gw = ipaddress.ip_interface("%s/%d" % (spec.gateway(subnet), ipaddress.ip_network(subnet).prefixlen))
    with netns.Netns(node_path) as ns, rtnl.Rtnl(ns) as r:
        r.link_add_bridge(bridge, stable_mac("bridge", bridge))
        r.commit()
        link = r.get_link(bridge)
        r.addr_add(link.index, gw, "bridge " + bridge)
        r.link_set(link.index, bridge, up=True)
        r.commit()


def _bridge_del(node_path, bridge):
    from podnet.kernel import rtnl

    with netns.Netns(node_path) as ns, rtnl.Rtnl(ns) as r:
        r.link_del(bridge)
        r.commit()


def _start_dns(lab, node_path, net, log_path):
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "podnet.docker.dns",
        "--lab",
        lab,
        "--node",
        net["node"],
        "--network",
        net["name"],
        "--subnet",
        net["subnet"],
    ]
    with open(log_path, "ab") as out, netns.Netns(node_path) as ns, netns.entered(ns):
        p = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )  # no ./dns shadowing dnspython
    return {"pid": p.pid, "pidStart": proc.start_time(p.pid)}


def create(store, lab, node, name, subnet=None):
    spec.check_network_name(name)
    node_path = node_netns(lab, node)
    with store.lock():
        if store.network(node, name):
            raise DockerError("network with name %s already exists on %s" % (name, node))
        taken = taken_subnets(store, node)
        net_cidr = spec.check_subnet(subnet, taken) if subnet else spec.pick_subnet(taken)
        bridge = spec.bridge_name(name)
        clash = [n["name"] for n in store.networks(node) if n["bridge"] == bridge]
        if clash:
            raise DockerError(
                "network %s would share bridge %s with network %s: choose another name" % (name, bridge, clash[0])
            )
        net = {
            "name": name,
            "node": node,
            "bridge": bridge,
            "subnet": str(net_cidr),
            "gateway": str(spec.gateway(net_cidr)),
            "dns": True,
        }
        done = []
        try:
            store.save_network(net)
            done.append(lambda: store.delete_network(node, name))
            _bridge_up(node_path, bridge, net_cidr)
            done.append(lambda: _bridge_del(node_path, bridge))
            path = write_conflist(store, lab, net)
            done.append(lambda: os.unlink(path))
            net["dnsServer"] = _start_dns(lab, node_path, net, os.path.join(store.root, "dns", node, name + ".log"))
            done.append(lambda: proc.stop(net["dnsServer"], grace=2))
            store.save_network(net)
            apply_isolation(store, lab, node)
        except BaseException:
            for undo in reversed(done):
                try:
                    undo()
                except Exception:  # noqa: BLE001 - keep undoing the rest
                    pass
            try:
                apply_isolation(store, lab, node)
            except Exception:  # noqa: BLE001
                pass
            raise
    return net


def users(store, node, name):
    return [c["name"] for c in store.containers() if c.get("node") == node and c.get("network") == name]


def remove(store, lab, node, name):
    node_path = node_netns(lab, node)
    with store.lock():
        if name in spec.MODES:
            raise DockerError("%s is a predefined network and cannot be removed" % name)
        net = find(store, node, name)
        used = users(store, node, name)
        if used:
            raise DockerError(
                "network %s on %s has active endpoints (containers: %s): remove them first"
                % (name, node, ", ".join(used))
            )
        proc.stop(net.get("dnsServer") or {}, grace=2)
        _bridge_del(node_path, net["bridge"])
        try:
            os.unlink(os.path.join(store.conf_dir(node), name + ".conflist"))
        except FileNotFoundError:
            pass
        shutil.rmtree(os.path.join(store.ipam_dir(node), name), ignore_errors=True)
        _drop_masq_chain(node_path, net["subnet"])
        store.delete_network(node, name)
        try:
            os.unlink(os.path.join(store.root, "dns", node, name + ".log"))
        except FileNotFoundError:
            pass
        apply_isolation(store, lab, node)


def _drop_masq_chain(node_path, subnet):
    """The podnet plugin leaves its per-subnet masquerade chain (it cannot
    know a subnet's last user left); the network's owner removes it. Only
    when no element jumps to it any more, else the kernel refuses: fine."""
    import ipaddress

    from podnet.cni import masq

    chain = masq.sub_chain(ipaddress.ip_network(subnet))
    with netns.Netns(node_path) as ns:
        try:
            nft.apply("delete chain %s %s\n" % (masq.T, chain), ns=ns, what="drop masquerade chain")
        except nft.NftError:
            pass


def listing(store, lab, node=None):
    """[network doc] per node: bridge, host, none, then the user-defined ones."""
    nodes = [n["name"] for n in topo.load(lab)["nodes"]] if node is None else [node]
    out = []
    for n in nodes:
        out.append(dict(default_network(store, n), driver="bridge"))
        out.append({"name": "host", "node": n, "driver": "host", "subnet": "", "bridge": ""})
        out.append({"name": "none", "node": n, "driver": "null", "subnet": "", "bridge": ""})
        out += [dict(x, driver="bridge") for x in store.networks(n)]
    return out
