"""run, stop, rm, exec, ps, inspect: a container's life.

create  check everything (name free, node, mode, -p, command), then under
        the store's lock: the record, the network (modes.attach), the
        resolv.conf of a user-defined network. A failure leaves nothing.
start   foreground: the `podnet run` process is the container's parent and
        prints its output; detached (-d): a shim (shim.py) in the node's
        netns is the parent. The parent records the PID when it starts
        and the exit code when it ends, then removes the container when
        it was started with --rm.
stop    SIGTERM to the container's process group, SIGKILL after the grace
        period; the network stays until rm (as a stopped Docker container
        keeps its configuration).
rm      refuses a running container (unless -f) and one whose network
        namespace others joined (container:NAME); then CNI DEL, the
        netns, the record and its files.
"""

import os
import secrets
import shutil
import subprocess
import sys
import time

from podnet.docker import modes, networks, proc, spec
from podnet.docker.spec import DockerError


def node_resolv_conf(lab, node):
    """The lab node's own resolver config (the lab writes it; see podnet.lab.lab)."""
    from podnet.lab import topology as topo

    return os.path.join(topo.state_dir(lab), "nodes", node, "resolv.conf")


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def find(store, name):
    rec = store.container(name)
    if rec is None:
        raise DockerError("no such container: %s" % name)
    return rec


def status_of(rec):
    """'running' | 'exited' | 'created', from the record and the live process."""
    if rec.get("state") == "running" and not proc.alive(rec):
        return "exited"
    return rec.get("state", "created")


def create(store, lab, node, name, network, publish, cmd, auto_remove=False, env=None):
    networks.node_netns(lab, node)
    mappings = spec.check_publish([spec.parse_publish(p) for p in publish or []])
    proc.check_runnable(cmd)
    cid = secrets.token_hex(32)
    name = spec.check_container_name(name) if name else cid[:12]
    with store.lock():
        have = store.container(name)
        if have:
            raise DockerError(
                'the container name "%s" is already in use by container %s (on %s): '
                "remove it (podnet rm %s) or choose another name" % (name, have["id"][:12], have["node"], name)
            )
        kind, target = modes.plan(store, lab, node, name, network, mappings)
        rdir = store.run_dir(name)
        rec = {
            "id": cid,
            "name": name,
            "node": node,
            "cmd": list(cmd),
            "ports": mappings,
            "autoRemove": bool(auto_remove),
            "state": "created",
            "created": now(),
            "hostname": None if kind == "host" else name,
            "env": env or {},
            "log": os.path.join(rdir, "output.log"),
        }
        rec.update(modes.attach(store, lab, rec, kind, target))
        try:
            os.makedirs(rdir, exist_ok=True)
            if kind == "user":
                rec["resolv"] = os.path.join(rdir, "resolv.conf")
                with open(rec["resolv"], "w") as f:
                    f.write(spec.resolv_conf(target["gateway"]))
            elif kind in ("bridge", "host") and os.path.exists(node_resolv_conf(lab, node)):
                # as Docker copies the host's: the node's resolver (the lab's, on
                # the external host), never this machine's, which the lab cannot reach
                rec["resolv"] = os.path.join(rdir, "resolv.conf")
                shutil.copyfile(node_resolv_conf(lab, node), rec["resolv"])
            store.save_container(rec)
        except BaseException:
            modes.detach(store, lab, rec)
            store.delete_container(name)
            raise
    return rec


def started(store, name, p):
    return store.update_container(name, state="running", pid=p.pid, pidStart=proc.start_time(p.pid), startedAt=now())


def finish(store, lab, name, code):
    """The parent saw the container exit: record it, and --rm removes it."""
    rec = store.update_container(name, state="exited", exitCode=code, finishedAt=now())
    if rec is not None and rec.get("autoRemove"):
        destroy(store, lab, name)


def run_foreground(store, lab, rec, interactive=False):
    """Start, print the container's output here, wait. -> its exit code."""
    p = proc.start(rec, stdin=None if interactive else subprocess.DEVNULL)
    started(store, rec["name"], p)
    try:
        rc = p.wait()
    except KeyboardInterrupt:  # the container runs in its own session: stop it as `podnet stop` would
        proc.stop(dict(rec, pid=p.pid, pidStart=proc.start_time(p.pid)), grace=10)
        rc = p.wait()
    code = proc.exit_code(rc)
    finish(store, lab, rec["name"], code)
    return code


def run_detached(store, lab, rec, timeout=30):
    """Start under a shim in the node's netns (so `lab down` finds it there
    and stops it); wait until the shim reports the start."""
    from podnet.kernel import netns

    os.makedirs(os.path.dirname(rec["log"]), exist_ok=True)
    node_path = networks.node_netns(lab, rec["node"])
    argv = [sys.executable, "-m", "podnet.docker.shim", "--lab", lab, "--name", rec["name"]]
    with open(rec["log"], "ab") as out, netns.Netns(node_path) as ns, netns.entered(ns):
        shim = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
    store.update_container(rec["name"], shim={"pid": shim.pid, "pidStart": proc.start_time(shim.pid)})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur = store.container(rec["name"])
        if cur is None or cur.get("state") != "created":
            return cur
        if shim.poll() is not None:
            break
        time.sleep(0.02)
    raise DockerError("container %s did not start: see %s" % (rec["name"], rec["log"]))


def stop(store, lab, name, grace=10.0):
    rec = find(store, name)
    if not proc.stop(rec, grace):
        return rec
    deadline = time.monotonic() + 5  # its parent records the exit (and removes it with --rm)
    while time.monotonic() < deadline:
        cur = store.container(name)
        if cur is None or cur.get("state") != "running":
            return cur
        time.sleep(0.02)
    return store.update_container(name, state="exited", finishedAt=now())  # the parent is gone


def remove(store, lab, name, force=False):
    with store.lock():
        rec = find(store, name)
        joined = [c["name"] for c in store.containers() if c.get("network") == "container:" + name]
        if joined:
            raise DockerError(
                "container %s shares its network namespace with %s (--network container:%s): "
                "remove %s first" % (name, ", ".join(joined), name, "them" if len(joined) > 1 else "it")
            )
        if proc.alive(rec) and not force:
            raise DockerError(
                "cannot remove container %s: it is running; stop it first or force the removal (-f)" % name
            )
    if proc.alive(rec):
        proc.stop(rec, grace=0)
    destroy(store, lab, name)


def destroy(store, lab, name):
    """The network, the record, its files. Idempotent (the shim of an --rm
    container and `podnet rm -f` may both get here)."""
    with store.lock():
        rec = store.container(name)
        if rec is None:
            return
        modes.detach(store, lab, rec)
        store.delete_container(name)


def exec_argv(store, name, argv):
    rec = find(store, name)
    if not proc.alive(rec):
        raise DockerError("container %s is not running" % name)
    if not argv:
        raise DockerError("give a command after --")
    return proc.enter_argv(rec, argv)


# ---- views -----------------------------------------------------------------------


def live(sandbox, what):
    """`ip -j addr|route` inside a container's netns (what `podnet inspect` shows)."""
    from podnet.kernel import links

    return links.show_json(sandbox, what)


def inspect(rec):
    st = status_of(rec)
    ports = {}
    for m in rec.get("ports", []):
        ports.setdefault("%d/%s" % (m["containerPort"], m["protocol"]), []).append(
            {"HostIp": m.get("hostIP", ""), "HostPort": str(m["hostPort"])}
        )
    net = {
        "IPAddress": rec.get("ip") or "",
        "IPPrefixLen": rec.get("prefixLen") or 0,
        "Gateway": rec.get("gateway") or "",
        "MacAddress": rec.get("mac") or "",
    }
    interfaces = live(rec["sandbox"], "addr")
    return {
        "Id": rec["id"],
        "Name": rec["name"],
        "Node": rec["node"],
        "Created": rec.get("created"),
        "Path": rec["cmd"][0],
        "Args": rec["cmd"][1:],
        "State": {
            "Status": st,
            "Running": st == "running",
            "Pid": rec.get("pid") if st == "running" else 0,
            "ExitCode": rec.get("exitCode"),
            "StartedAt": rec.get("startedAt"),
            "FinishedAt": rec.get("finishedAt"),
        },
        "LogPath": rec.get("log"),
        "ResolvConfPath": rec.get("resolv") or "/etc/resolv.conf",
        "HostConfig": {"NetworkMode": rec["network"], "PortBindings": ports, "AutoRemove": rec.get("autoRemove")},
        "NetworkSettings": dict(
            net,
            SandboxKey=rec["sandbox"],
            Bridge=rec.get("bridge") or "",
            Ports=ports,
            Networks=({rec["network"]: net} if rec.get("ownNetns") and rec["network"] != "none" else {}),
            Interfaces=interfaces,
            Routes=live(rec["sandbox"], "route"),
        ),
    }
