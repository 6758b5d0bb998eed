"""A lab's network topology and its bookkeeping on disk.

    pn-<lab>-u        the underlay: one bridge, br0, the "switch" every node plugs into
    pn-<lab>-<node>   a node: eth0 on the underlay (192.168.200.11, .12, ...)
    pn-<lab>-ext      the external host: eth0 on the underlay (192.168.200.100),
                      standing for the internet; it has no route to pod networks
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
import subprocess
import time

from podnet.kernel import netns

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


def _ip(*args):
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if res.returncode != 0 and "File exists" not in res.stderr and "already assigned" not in res.stderr:
        raise LabError("ip %s: %s" % (" ".join(args), res.stderr.strip()))


def _plug(lab, what, ip, port_name):
    """eth0 of namespace `what` on the underlay bridge, idempotently."""
    ns, under = ns_name(lab, what), ns_name(lab, "u")
    netns.create(ns)
    have = subprocess.run(["ip", "-n", ns, "-o", "link", "show", "eth0"], capture_output=True, text=True)
    if have.returncode != 0:
        _ip("-n", under, "link", "add", port_name, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _ip("-n", under, "link", "set", port_name, "master", "br0", "up")
    _ip("-n", ns, "addr", "add", "%s/%d" % (ip, UNDERLAY.prefixlen), "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")


def build(lab, nodes, external=True, ips=None):
    """Create (or complete) the underlay, the node namespaces and the external host."""
    under = ns_name(lab, "u")
    netns.create(under)
    _ip("-n", under, "link", "add", "br0", "type", "bridge")
    _ip("-n", under, "link", "set", "br0", "up")
    # the control plane host's address: the API server listens here (see control.py)
    _ip("-n", under, "addr", "add", "%s/%d" % (CONTROL_PLANE_IP, UNDERLAY.prefixlen), "dev", "br0")
    for i, node in enumerate(nodes):
        _plug(lab, node, (ips or {}).get(node) or node_ip(i), "n-" + node[:13])
    if external:
        _plug(lab, "ext", EXTERNAL_IP, "ext")


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
    stop_recorded(lab)
    kill_inside(lab)
    for name in sorted(lab_namespaces(lab), reverse=True):
        netns.delete(name)
    shutil.rmtree(state_dir(lab), ignore_errors=True)
