"""Docker's network modes: where a container's network namespace comes from.

  bridge (default)  a netns of its own, `eth0` on docker0 (172.17.0.0/16)
  NETWORK           a netns of its own, `eth0` on that network's bridge
                    (both through CNI ADD of podnet + podnet-portmap, with
                    -p as the portMappings capability, exactly as a runtime
                    calls the plugins)
  host              the node's own netns: nothing to set up
  container:NAME    NAME's netns: both share interfaces and localhost
  none              a netns of its own with only `lo`, configured by nobody

The plugins run from inside the node's netns, which is therefore their host
side, and go to the node agent's warm CNI daemon when it listens (the
conflist's daemonSocket), else run in-process. Their results are cached as
libcni caches them, so DEL gets its prevResult even from another process.

attach() returns the network part of a container record; detach() undoes it
and is idempotent (a second call, or one after a half-failed attach, is fine).
"""

import os

from podnet.cni import libcni
from podnet.docker import networks, proc, spec
from podnet.docker.spec import DockerError
from podnet.kernel import links, netns
from podnet.lab import topology as topo

IFNAME = "eth0"


def create_netns(name):
    """The container's namespace, `lo` up (podnet.kernel; no pyroute2 import)."""
    try:
        return links.create_namespace(name)
    except (links.LinkError, OSError) as exc:
        raise DockerError(str(exc)) from None


def runtime(store, lab):
    return libcni.Runtime(bin_dirs=[topo.state_dir(lab) + "/bin"], cache_dir=store.cache_dir())


def _network_list(store, lab, net):
    path = os.path.join(store.conf_dir(net["node"]), net["name"] + ".conflist")
    if net["name"] == spec.DEFAULT_NETWORK and not os.path.exists(path):
        networks.write_conflist(store, lab, net)
    return libcni.load_file(path)


def _port_owner(store, node, mappings, me):
    for c in store.containers():
        if c.get("node") != node or c["name"] == me:
            continue
        for m in mappings:
            for theirs in c.get("ports", []):
                if (theirs["hostPort"], theirs["protocol"]) == (m["hostPort"], m["protocol"]):
                    return c["name"], m
    return None


def plan(store, lab, node, name, mode_value, mappings):
    """Check everything a mode needs before anything is made -> (kind, target
    record or network doc). Raises DockerError naming what is wrong."""
    kind, target = spec.parse_network(mode_value)
    if mappings and kind in ("host", "none", "container"):
        raise DockerError(
            "conflicting options: port publishing (-p) and the %s network mode: "
            "%s"
            % (
                kind,
                "the container already uses the node's ports"
                if kind == "host"
                else "publish ports on the container that owns the network namespace"
                if kind == "container"
                else "it has no network to publish on",
            )
        )
    if kind == "container":
        other = store.container(target)
        if other is None:
            raise DockerError("--network container:%s: no such container" % target)
        if other["node"] != node:
            raise DockerError(
                "--network container:%s: that container runs on %s, not %s" % (target, other["node"], node)
            )
        if not proc.alive(other):
            raise DockerError(
                "--network container:%s: cannot join the network of a container that is not running" % target
            )
        return kind, other
    if kind in ("bridge", "user"):
        net = networks.find(store, node, target)
        owner = _port_owner(store, node, mappings, name)
        if owner:
            raise DockerError(
                "port is already allocated: host port %d/%s on %s is published by container %s"
                % (owner[1]["hostPort"], owner[1]["protocol"], node, owner[0])
            )
        return kind, net
    return kind, None


def attach(store, lab, rec, kind, target):
    """Make the container's network -> fields for its record."""
    node_path = networks.node_netns(lab, rec["node"])
    if kind == "host":
        return {"network": "host", "sandbox": node_path, "ownNetns": False}
    if kind == "container":
        return {
            "network": "container:" + target["name"],
            "sandbox": target["sandbox"],
            "ownNetns": False,
            "ip": target.get("ip"),
            "gateway": target.get("gateway"),
            "resolv": target.get("resolv"),
            "hostname": target.get("hostname"),
        }
    ns_name = spec.netns_name(lab, rec["id"])
    path = create_netns(ns_name)
    out = {"network": "none" if kind == "none" else target["name"], "sandbox": path, "ownNetns": True}
    if kind == "none":
        return out
    caps = {"portMappings": rec.get("ports", [])} if rec.get("ports") else None
    net = _network_list(store, lab, target)
    try:
        with netns.Netns(node_path) as node_ns, netns.entered(node_ns):
            result = runtime(store, lab).add(net, rec["id"], path, IFNAME, caps=caps)
    except (libcni.PluginError, libcni.ConfigError) as exc:
        netns.delete(ns_name)
        if getattr(exc, "code", None) == 103:  # podnet-portmap: the port has an owner outside podnet run
            raise DockerError("port is already allocated on %s: %s" % (rec["node"], exc)) from None
        raise DockerError("attach %s to network %s: %s" % (rec["name"], target["name"], exc)) from None
    except BaseException:
        netns.delete(ns_name)
        raise
    ip = result["ips"][0]
    mac = next((i.get("mac") for i in result.get("interfaces", []) if i.get("sandbox")), None)
    out.update(
        ip=ip["address"].split("/")[0],
        prefixLen=int(ip["address"].split("/")[1]),
        gateway=ip.get("gateway"),
        mac=mac,
        bridge=target["bridge"],
    )
    return out


def detach(store, lab, rec):
    """Undo attach: CNI DEL (best effort, idempotent), then the netns."""
    if not rec.get("ownNetns"):
        return
    net_name = rec.get("network")
    ns_name = spec.netns_name(lab, rec["id"])
    if net_name and net_name != "none":
        path = os.path.join(store.conf_dir(rec["node"]), net_name + ".conflist")
        if os.path.exists(path):
            net = libcni.load_file(path)
            node_path = networks.node_netns(lab, rec["node"])
            with netns.Netns(node_path) as node_ns, netns.entered(node_ns):
                runtime(store, lab).delete(net, rec["id"], netns.path_of(ns_name), IFNAME)
    netns.kill_processes_in([ns_name])  # children the container left behind
    netns.delete(ns_name)
