"""A lab's network topology and its bookkeeping on disk.

    pn-<lab>-u        the underlay: one bridge, br0, the "switch" every node plugs into
    pn-<lab>-<node>   a node: eth0 on the underlay (192.168.200.11, .12, ...)
    pn-<lab>-ext      the external host: eth0 on the underlay (192.168.200.100),
                      standing for the internet and the nodes' router (their
                      default route, their resolver); it has no route to pod
                      networks
    pn-<lab>-p-<uid>  a pod's namespace (made by the node agent)

Everything a lab owns is recognisable by its exact prefix "pn-<lab>-", and
every process it starts is recorded with its PID and start time in
<state>/procs.json, so `lab down` stops exactly what the lab started (a PID
reused by some other program does not match the recorded start time), plus
anything still running inside the lab's namespaces, and deletes exactly the
lab's namespaces. State lives in /var/lib/podnet/labs/<lab>.
"""

import ipaddress
import json
import os
import re
import shutil
import signal
import time

from podnet.kernel import links, netns, nft, routes

STATE_ROOT = os.environ.get("PODNET_STATE_ROOT", "/var/lib/podnet/labs")
UNDERLAY = ipaddress.ip_network("192.168.200.0/24")
EXTERNAL_IP = "192.168.200.100"
CONTROL_PLANE_IP = "192.168.200.1"
_NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")


class LabError(Exception):
    pass


def check_name(name):
    if not _NAME.match(name or ""):
        raise LabError("lab name %r: 1-10 lowercase letters and digits, starting with a letter" % name)
    return name


def state_dir(lab):
    return os.path.join(STATE_ROOT, lab)


def prefix(lab):
    return "pn-%s-" % lab


def ns_name(lab, what):
    return prefix(lab) + what


def node_ip(index):
    return str(UNDERLAY.network_address + 11 + index)


def existing_labs():
    try:
        return sorted(d for d in os.listdir(STATE_ROOT) if os.path.exists(os.path.join(STATE_ROOT, d, "lab.json")))
    except FileNotFoundError:
        return []


def pick_lab(name=None):
    """--lab, else $PODNET_LAB, else the only lab there is."""
    name = name or os.environ.get("PODNET_LAB")
    if name:
        if name not in existing_labs():
            raise LabError(
                "no lab named %r (labs: %s); create it with 'podnet lab up --name %s'"
                % (name, ", ".join(existing_labs()) or "none", name)
            )
        return name
    labs = existing_labs()
    if not labs:
        raise LabError("no lab is running; start one with 'podnet lab up'")
    if len(labs) > 1:
        raise LabError("several labs exist (%s): choose one with --lab NAME or PODNET_LAB" % ", ".join(labs))
    return labs[0]


def load(lab):
    try:
        with open(os.path.join(state_dir(lab), "lab.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        raise LabError("no lab named %r" % lab) from None


def save(lab, doc):
    path = os.path.join(state_dir(lab), "lab.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def _plug(lab, what, ip, port_name):
    """eth0 of namespace `what` on the underlay bridge, idempotently."""
    ns, under = ns_name(lab, what), ns_name(lab, "u")
    netns.create(ns)
    try:
        links.ensure_veth(under, port_name, ns, "eth0", master="br0")
        links.ensure_addr(ns, "eth0", "%s/%d" % (ip, UNDERLAY.prefixlen))
    except links.LinkError as exc:
        raise LabError("plug %s into the underlay of lab %s: %s" % (what, lab, exc)) from None


# The external host answers a packet it has no route for with "network
# unreachable" at once, as the internet's routers do, so a client in the lab
# fails fast rather than waiting for its timeout. Not through the kernel's own
# no-route error: that one is rate-limited per source host (1/s, a burst of 5,
# net.ipv4.route.error_cost/error_burst, which are not per namespace), so a
# client's second connection in a second would hang. An nft reject in
# prerouting is limited only by the namespace's own icmp_ratelimit, set to 0.
# (A local destination has no oif for fib: it is accepted first.)
ROUTER_RULES = """add table inet podnet-lab-router
delete table inet podnet-lab-router
add table inet podnet-lab-router
add chain inet podnet-lab-router prerouting { type filter hook prerouting priority 0; policy accept; }
add rule inet podnet-lab-router prerouting fib daddr type { local, broadcast, multicast } accept
add rule inet podnet-lab-router prerouting fib daddr oif missing reject with icmp type net-unreachable
"""


def _router(ext):
    links.write_sysctl(ext, "net.ipv4.ip_forward", 1)
    links.write_sysctl(ext, "net.ipv4.icmp_ratelimit", 0)
    nft.apply(ROUTER_RULES, ns=ext, what="the lab router's table")


def build(lab, nodes, external=True, ips=None):
    """Create (or complete) the underlay, the node namespaces and the external host.

    A node is a host on a real network: its default route goes through the
    external host, the lab's router and "internet" (which routes, and answers
    an address it has no route for with ICMP unreachable, as a router does)."""
    under = ns_name(lab, "u")
    netns.create(under)
    try:
        links.ensure_bridge(under, "br0")
        # the control plane host's address: the API server listens here (see control.py)
        links.ensure_addr(under, "br0", "%s/%d" % (CONTROL_PLANE_IP, UNDERLAY.prefixlen))
    except links.LinkError as exc:
        raise LabError("underlay of lab %s: %s" % (lab, exc)) from None
    if external:
        _plug(lab, "ext", EXTERNAL_IP, "ext")
        try:
            with netns.Netns(ns_name(lab, "ext")) as ext:
                _router(ext)
        except (links.LinkError, nft.NftError) as exc:
            raise LabError("external host of lab %s: %s" % (lab, exc)) from None
    for i, node in enumerate(nodes):
        _plug(lab, node, (ips or {}).get(node) or node_ip(i), "n-" + node[:13])
        if external:
            try:
                routes.ensure_default_route(ns_name(lab, node), EXTERNAL_IP, "eth0")
            except links.LinkError as exc:
                raise LabError("default route of %s in lab %s: %s" % (node, lab, exc)) from None


def node_resolv_conf(lab, node):
    """The node's resolver file (its /etc/resolv.conf as a host would have
    it: the lab's resolver on the external host); the lab writes it."""
    return os.path.join(state_dir(lab), "nodes", node, "resolv.conf")


def exec_argv(lab, target, netns_name, cmd):
    """argv running `cmd` in a node's (or the external host's) namespace,
    seeing the node's resolv.conf as /etc/resolv.conf (in a mount namespace
    of its own, as `ip netns exec` does with /etc/netns/NAME), so a lookup on
    a node asks the lab's resolver, never this machine's, which the lab
    cannot reach. On a node with WireGuard, /run/wireguard shows the node's
    own socket directory in that mount namespace, so `wg` works there."""
    argv = ["nsenter", "--net=/run/netns/" + netns_name, "--"]
    conf = node_resolv_conf(lab, target)
    binds = []
    if os.path.exists(conf):
        binds.append('mount --bind "$0" /etc/resolv.conf || exit 126')
    run_root = os.path.join(state_dir(lab), "nodes", target, "wireguard")
    if cmd and os.path.basename(cmd[0]) == "wg" and os.path.isdir(run_root):
        # `wg` sees the node's own run directory as /run, as the agent's wg and
        # wireguard-go do (podnet/kernel/wireguard.py), so it finds this node's
        # socket; nothing is made in the machine's /run (a /run/wireguard made
        # there would outlive the lab), and wg needs nothing else of /run
        binds = ['mount --bind "%s" /run || exit 126' % run_root]
    if not binds:
        return argv + list(cmd)
    script = "; ".join(binds) + '; exec "$@"'
    return argv + ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, conf, *cmd]


# ---- processes -------------------------------------------------------------


def _start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # a zombie (exited, not yet reaped: slow on this machine's PID 1) is dead
        return None if fields[0] == "Z" else fields[19]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return None


def record(lab, role, pid):
    path = os.path.join(state_dir(lab), "procs.json")
    procs = _procs(lab)
    procs[role] = {"pid": pid, "start": _start_time(pid)}
    with open(path + ".tmp", "w") as f:
        json.dump(procs, f)
    os.replace(path + ".tmp", path)


def _procs(lab):
    try:
        with open(os.path.join(state_dir(lab), "procs.json")) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {}


def alive(lab, role):
    p = _procs(lab).get(role)
    return bool(p) and _start_time(p["pid"]) == p["start"]


def processes(lab):
    return {role: dict(p, alive=_start_time(p["pid"]) == p["start"]) for role, p in _procs(lab).items()}


def stop_recorded(lab, roles=None, grace=5.0):
    """SIGTERM the recorded processes that are still the ones we started."""
    targets = [
        (r, p) for r, p in _procs(lab).items() if (roles is None or r in roles) and _start_time(p["pid"]) == p["start"]
    ]
    for _, p in targets:
        try:
            os.killpg(p["pid"], signal.SIGTERM)  # each was started in its own session
        except ProcessLookupError:
            pass
    deadline = time.time() + grace
    for _, p in targets:
        while _start_time(p["pid"]) == p["start"] and time.time() < deadline:
            time.sleep(0.05)
        if _start_time(p["pid"]) == p["start"]:
            try:
                os.killpg(p["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


def lab_namespaces(lab):
    return [n for n in netns.list_names() if n.startswith(prefix(lab))]


def kill_inside(lab):
    """Pods left by a crashed agent are found by where they live."""
    return netns.kill_processes_in(lab_namespaces(lab))


def destroy(lab):
    """Everything of the lab: processes, namespaces, state. Safe after a crash."""
    from podnet.image.store import cleanup_lab

    stop_recorded(lab)
    kill_inside(lab)
    cleanup_lab(state_dir(lab))  # image containers (no agent left to restart them), conmon, overlay mounts
    for name in sorted(lab_namespaces(lab), reverse=True):
        netns.delete(name)
    shutil.rmtree(state_dir(lab), ignore_errors=True)
