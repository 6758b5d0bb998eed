"""`podnet lab ...`: up (with progress), down, status, exec, rotate-keys."""

import os
import subprocess
import time

from rich.console import Console
from rich.table import Table

from podnet.lab import lab as labmod
from podnet.lab import topology as topo

console = Console(highlight=False, stderr=True)


def run(args):
    if args.lab_cmd == "up":
        return _up(args)
    if args.lab_cmd == "down":
        name = args.name or args.lab or os.environ.get("PODNET_LAB")
        if not name:
            name = topo.pick_lab(None)
        topo.check_name(name)
        if not os.path.exists(topo.state_dir(name)) and not topo.lab_namespaces(name):
            raise topo.LabError("no lab named %r" % name)
        with console.status("removing lab %s" % name):
            labmod.down(name)
        console.print("lab %s removed" % name)
        return 0
    if args.lab_cmd == "status":
        return _status(topo.pick_lab(args.lab))
    if args.lab_cmd == "exec":
        return _exec(args)
    if args.lab_cmd == "add-node":
        lab = topo.pick_lab(args.lab)
        with console.status("adding a node to %s" % lab):
            name = labmod.add_node(lab)
        console.print("node %s joined lab %s" % (name, lab))
        return 0
    if args.lab_cmd == "remove-node":
        lab = topo.pick_lab(args.lab)
        with console.status("removing %s from %s" % (args.node, lab)):
            labmod.remove_node(lab, args.node)
        console.print("node %s removed from lab %s" % (args.node, lab))
        return 0
    if args.lab_cmd == "rotate-keys":
        lab = topo.pick_lab(args.lab)
        with console.status("new WireGuard keys for %s" % args.node):
            old, new = labmod.rotate_keys(lab, args.node)
        console.print("node %s: public key %s (was %s); the other nodes follow" % (args.node, new, old))
        return 0
    if args.lab_cmd == "kubeconfig":
        from podnet.lab import control

        print(control.kubeconfig_path(topo.pick_lab(args.lab)))
        return 0
    if args.lab_cmd == "controllers":
        labmod.run_controllers(topo.pick_lab(args.lab))
        return 0
    return 2


def _up(args):
    from podnet.api import parse_manifests
    from podnet.cli.kube import _sources

    if args.nodes < 1 or args.nodes > 50:
        raise topo.LabError("--nodes: must be 1-50")
    topo.check_name(args.name)
    sources = _sources(args.filename)
    for text, src in sources:  # a bad manifest stops us before anything is built
        parse_manifests(text, src)
    t0 = time.monotonic()
    with console.status("lab %s" % args.name) as status:

        def progress(msg):
            status.update("lab %s: %s" % (args.name, msg))
            console.print("[dim]%5.1fs[/dim] %s" % (time.monotonic() - t0, msg))

        doc, applied = labmod.up(
            args.name,
            args.nodes,
            sources,
            progress,
            args.timeout,
            routing=args.routing or (None if os.path.exists(topo.state_dir(args.name)) else "vxlan"),
            direct_routing=args.direct_routing,
            route_reflector=args.route_reflector,
            lb_pool=args.lb_pool,
            store=args.store,
            encryption=args.encryption,
            node_grace=args.node_grace,
            pod_toleration=args.pod_toleration,
            etcd_members=args.etcd_members,
        )
    for obj, what in applied:
        print("%s/%s %s" % (obj["kind"].lower(), obj["metadata"]["name"], what))
    console.print(
        "lab [bold]%s[/bold] is up in %.1f s: %d nodes, external host %s. Try: podnet get pods -o wide"
        % (args.name, time.monotonic() - t0, len(doc["nodes"]), doc["external"]["ip"])
    )
    from podnet.lab import control

    console.print("kubectl works against it: [bold]export KUBECONFIG=%s[/bold]" % control.kubeconfig_path(args.name))
    return 0


def _status(lab):
    doc, procs = labmod.status(lab)
    t = Table("component", "pid", "state", title="lab %s (%s)" % (lab, doc["store"]))
    for role, p in sorted(procs.items()):
        t.add_row(role, str(p["pid"]), "[green]running[/green]" if p["alive"] else "[red]dead[/red]")
    Console(highlight=False).print(t)
    n = Table("node", "netns", "IP")
    for node in doc["nodes"]:
        n.add_row(node["name"], node["netns"], node["ip"])
    n.add_row("external", doc["external"]["netns"], doc["external"]["ip"])
    Console(highlight=False).print(n)
    return 0 if all(p["alive"] for p in procs.values()) else 1


def _exec(args):
    lab = topo.pick_lab(args.lab)
    doc = topo.load(lab)
    targets = {n["name"]: n["netns"] for n in doc["nodes"]}
    targets["external"] = doc["external"]["netns"]
    if args.target not in targets:
        raise topo.LabError("no node %r in lab %s (nodes: %s)" % (args.target, lab, ", ".join(sorted(targets))))
    cmd = [c for c in args.command if c != "--"] if args.command[:1] == ["--"] else args.command
    if not cmd:
        raise topo.LabError("give a command after --")
    return subprocess.call(topo.exec_argv(lab, args.target, targets[args.target], cmd))
